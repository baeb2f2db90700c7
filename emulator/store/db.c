/* db.c -- the durable store on SQLite (see db.h): opening and checking the file, the numbered schema
 * migrations, a cache of prepared statements, nested transactions (BEGIN IMMEDIATE + savepoints) with hooks.
 * Durability choice: journal_mode=WAL with synchronous=NORMAL. A commit has written its WAL frames (write(2))
 * before it returns, so a process crash (kill -9, OOM, abort) loses nothing that was committed, and WAL never
 * leaves a store that fails to open. What NORMAL gives up is the fsync per commit: after a power loss or a
 * kernel crash the last commits (up to the last checkpoint's fsync) may be missing, the store still consistent.
 * FULL costs one fsync per change: 0.2 ms on an idle disk here but 2.5-3 ms on this shared one, which made a
 * PUT 100x slower than the commit itself; for a development hub that trade is not worth it (README says so).
 * Touches: libsqlite3 and the database file (+ its -wal and -shm files) it is given. Tests: tests/unit/test_db.c. */
#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

#define DB_MAX_DEPTH 16          /* nested transaction levels */
#define DB_BUSY_TIMEOUT_MS 2000  /* another process (sqlite3 CLI) holding the lock: wait this long, then fail */
#define DB_APPLICATION_ID 0x494f5448 /* "IOTH" in the file header: refuse other applications' databases */

/* The store's own schema: the meta table. Each module owns its tables the same way (registry.c: identities). */
static const struct db_migration db_store_steps[] = {
    {1, "meta: one-off markers", "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;",
     NULL},
};
static const struct db_schema db_store_schema = {"store", db_store_steps,
                                                 sizeof db_store_steps / sizeof db_store_steps[0]};

struct db_cached {
    const char *sql; /* the caller's constant */
    sqlite3_stmt *st;
};

struct db_hook {
    void (*on_commit)(void *arg);
    void (*on_rollback)(void *arg);
    void *arg;
};

struct db {
    sqlite3 *h;
    char *path;                 /* NULL: in memory */
    bool read_only;             /* the data dir is not writable: reads work, every write fails */
    int depth;                  /* 0: no transaction */
    size_t marks[DB_MAX_DEPTH]; /* hook count when each level began */
    struct db_hook *hooks;
    size_t nhooks, hookcap;
    struct db_cached *stmts;
    size_t nstmts, stmtcap;
};

static const char *db_name(const struct db *db)
{
    return db->path ? db->path : "in-memory store";
}

int db_result(struct db *db, int sqlite_rc, const char *what)
{
    switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return ERR_OK;
    case SQLITE_CONSTRAINT:
        log_debug("store: %s: %s", what, sqlite3_errmsg(db->h));
        return ERR_EXISTS;
    case SQLITE_NOMEM:
        log_error("store: %s: out of memory", what);
        return ERR_NOMEM;
    default:
        log_error("store: cannot %s in %s: %s (sqlite %d)", what, db_name(db), sqlite3_errmsg(db->h), sqlite_rc);
        return ERR_IO;
    }
}

/* Runs constant SQL text from our source (pragmas, migrations, transaction control). */
static int db_run(struct db *db, const char *sql, const char *what)
{
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? ERR_OK : db_result(db, rc, what);
}

/* ---- prepared statements ---- */

sqlite3_stmt *db_stmt(struct db *db, const char *sql)
{
    for (size_t i = 0; i < db->nstmts; i++) {
        if (db->stmts[i].sql == sql || strcmp(db->stmts[i].sql, sql) == 0) {
            sqlite3_reset(db->stmts[i].st);
            sqlite3_clear_bindings(db->stmts[i].st);
            return db->stmts[i].st;
        }
    }
    if (db->nstmts == db->stmtcap) {
        size_t cap = db->stmtcap ? db->stmtcap * 2 : 16;
        struct db_cached *n = realloc(db->stmts, cap * sizeof *n);
        if (!n)
            return NULL;
        db->stmts = n;
        db->stmtcap = cap;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        log_error("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db->h));
        sqlite3_finalize(st);
        return NULL;
    }
    db->stmts[db->nstmts++] = (struct db_cached){sql, st};
    return st;
}

int db_exec(struct db *db, sqlite3_stmt *st)
{
    int rc;
    do {
        rc = sqlite3_step(st);
    } while (rc == SQLITE_ROW);
    int out = db_result(db, rc, sqlite3_sql(st));
    sqlite3_reset(st);
    return out;
}

/* ---- transactions ---- */

bool db_in_transaction(const struct db *db)
{
    return db->depth > 0;
}

/* Runs and forgets the hooks from index from on, rollback hooks newest first. */
static void hooks_rollback(struct db *db, size_t from)
{
    while (db->nhooks > from) {
        struct db_hook *h = &db->hooks[--db->nhooks];
        if (h->on_rollback)
            h->on_rollback(h->arg);
    }
}

static void hooks_commit(struct db *db)
{
    /* Taken out of db first: a hook that used the store anyway could not move the array under this loop. */
    struct db_hook *h = db->hooks;
    size_t n = db->nhooks, cap = db->hookcap;
    db->hooks = NULL;
    db->nhooks = db->hookcap = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].on_commit)
            h[i].on_commit(h[i].arg);
    }
    if (!db->hooks) {
        db->hooks = h; /* keep the allocation for the next transaction */
        db->hookcap = cap;
    } else {
        free(h);
    }
}

int db_begin(struct db *db)
{
    char sql[32];
    if (db->depth >= DB_MAX_DEPTH)
        return ERR_TOO_BIG;
    if (db->depth == 0)
        snprintf(sql, sizeof sql, "BEGIN IMMEDIATE");
    else
        snprintf(sql, sizeof sql, "SAVEPOINT s%d", db->depth);
    int rc = db_run(db, sql, "begin a transaction");
    if (rc)
        return rc;
    db->marks[db->depth++] = db->nhooks;
    return ERR_OK;
}

void db_rollback(struct db *db)
{
    char sql[48];
    if (db->depth == 0)
        return;
    int level = --db->depth;
    if (level == 0) {
        if (!sqlite3_get_autocommit(db->h))
            db_run(db, "ROLLBACK", "roll back");
    } else {
        snprintf(sql, sizeof sql, "ROLLBACK TO s%d; RELEASE s%d", level, level);
        db_run(db, sql, "roll back to a savepoint");
    }
    hooks_rollback(db, db->marks[level]);
}

int db_commit(struct db *db)
{
    char sql[32];
    if (db->depth == 0)
        return ERR_INVALID;
    if (db->depth > 1) {
        snprintf(sql, sizeof sql, "RELEASE s%d", db->depth - 1);
        int rc = db_run(db, sql, "release a savepoint");
        if (rc) {
            db_rollback(db);
            return rc;
        }
        db->depth--;
        return ERR_OK;
    }
    int rc = db_run(db, "COMMIT", "commit");
    if (rc) {
        db_rollback(db); /* SQLite may have rolled back already; db_rollback checks */
        return rc == ERR_NOMEM ? rc : ERR_IO;
    }
    db->depth = 0;
    hooks_commit(db);
    return ERR_OK;
}

int db_defer(struct db *db, void (*on_commit)(void *arg), void (*on_rollback)(void *arg), void *arg)
{
    if (db->depth == 0)
        return ERR_INVALID;
    if (db->nhooks == db->hookcap) {
        size_t cap = db->hookcap ? db->hookcap * 2 : 16;
        struct db_hook *n = realloc(db->hooks, cap * sizeof *n);
        if (!n)
            return ERR_NOMEM;
        db->hooks = n;
        db->hookcap = cap;
    }
    db->hooks[db->nhooks++] = (struct db_hook){on_commit, on_rollback, arg};
    return ERR_OK;
}

/* ---- meta ---- */

int db_meta_get(struct db *db, const char *key, char *out, size_t outlen)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT value FROM meta WHERE key = ?1");
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        if (outlen > 0)
            snprintf(out, outlen, "%s", v ? (const char *)v : "");
        sqlite3_reset(st);
        return ERR_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? ERR_NOT_FOUND : db_result(db, rc, "read meta");
}

int db_meta_set(struct db *db, const char *key, const char *value)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)");
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return db_exec(db, st);
}

/* ---- opening and migrations ---- */

/* The single integer a query returns, or -1. */
static long long db_query_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int db_schema_version(struct db *db, const char *module)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE module = ?1");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_reset(st);
    return v;
}

static int db_migrate_one(struct db *db, const char *module, const struct db_migration *m, char *err,
                          size_t errlen)
{
    int rc = db_begin(db);
    if (!rc && m->sql)
        rc = db_run(db, m->sql, m->name);
    if (!rc && m->apply)
        rc = m->apply(db, err, errlen);
    if (!rc) {
        sqlite3_stmt *st = db_stmt(db, "INSERT INTO schema_migrations (module, version, name, applied_at) "
                                       "VALUES (?1, ?2, ?3, strftime('%s', 'now'))");
        rc = st ? ERR_OK : ERR_IO;
        if (st) {
            sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 2, m->version);
            sqlite3_bind_text(st, 3, m->name, -1, SQLITE_STATIC);
            rc = db_exec(db, st);
        }
    }
    if (!rc)
        return db_commit(db);
    if (db_in_transaction(db))
        db_rollback(db);
    return rc;
}

int db_migrate(struct db *db, const struct db_schema *schema, char *err, size_t errlen)
{
    int have = db_schema_version(db, schema->module);
    int known = schema->nsteps ? schema->steps[schema->nsteps - 1].version : 0;
    if (have < 0) {
        err_setf(err, errlen, "%s: cannot read the schema version of %s: %s", db_name(db), schema->module,
                sqlite3_errmsg(db->h));
        return ERR_IO;
    }
    if (have > known) {
        err_setf(err, errlen,
                "%s has %s schema version %d, newer than this emulator knows (%d): run a newer emulator, or move "
                "the data dir away to start empty",
                db_name(db), schema->module, have, known);
        return ERR_INVALID;
    }
    if (have < known && db->read_only) {
        err_setf(err, errlen, "%s is read-only and its %s schema is at version %d, this emulator needs %d: start it "
                             "once with a writable data dir", db_name(db), schema->module, have, known);
        return ERR_INVALID;
    }
    for (size_t i = 0; i < schema->nsteps; i++) {
        const struct db_migration *m = &schema->steps[i];
        if (m->version <= have)
            continue;
        char why[200] = "";
        int rc = db_migrate_one(db, schema->module, m, why, sizeof why);
        if (rc) {
            err_setf(err, errlen, "%s: %s schema migration %d (%s) failed: %s", db_name(db), schema->module,
                    m->version, m->name, *why ? why : sqlite3_errmsg(db->h));
            return rc;
        }
        if (db->path)
            log_info("store: %s: applied %s schema migration %d (%s)", db->path, schema->module, m->version,
                     m->name);
    }
    return ERR_OK;
}

/* The migrations table itself, then the store's own schema. */
static int db_bootstrap(struct db *db, char *err, size_t errlen)
{
    if (!db->read_only) {
        int rc = db_run(db,
                        "CREATE TABLE IF NOT EXISTS schema_migrations (module TEXT NOT NULL, version INTEGER NOT "
                        "NULL, name TEXT NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (module, version)) "
                        "WITHOUT ROWID",
                        "create schema_migrations");
        if (rc) {
            err_setf(err, errlen, "%s: cannot write the schema table: %s", db_name(db), sqlite3_errmsg(db->h));
            return rc;
        }
    }
    return db_migrate(db, &db_store_schema, err, errlen);
}

/* Pragmas and checks on a freshly opened handle. */
static int db_configure(struct db *db, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    long long app = db_query_int(db, "PRAGMA application_id");
    if (app < 0) {
        err_setf(err, errlen, "%s: cannot read it (%s): not a SQLite database? Move it away to start empty",
                db_name(db), sqlite3_errmsg(db->h));
        return ERR_INVALID;
    }
    if (app != 0 && app != DB_APPLICATION_ID) {
        err_setf(err, errlen, "%s is another application's SQLite database (application_id %lld)", db_name(db), app);
        return ERR_INVALID;
    }
    if (db->read_only) {
        if (app == 0) {
            err_setf(err, errlen, "%s is not an emulator store (or was never opened writable)", db_name(db));
            return ERR_INVALID;
        }
        return db_run(db, "PRAGMA foreign_keys=ON", "set pragmas");
    }
    if (db->path) {
        sqlite3_stmt *st = NULL;
        bool wal = false;
        if (sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            wal = sqlite3_column_text(st, 0) && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
        if (!wal) {
            err_setf(err, errlen, "%s: cannot switch to WAL mode: %s", db_name(db), sqlite3_errmsg(db->h));
            return ERR_IO;
        }
    }
    if (app == 0 && db_query_int(db, "SELECT count(*) FROM sqlite_master") != 0) {
        err_setf(err, errlen, "%s is a SQLite database but not an emulator store", db_name(db));
        return ERR_INVALID;
    }
    int rc = db_run(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", "set pragmas");
    if (!rc && app == 0) {
        char sql[48];
        snprintf(sql, sizeof sql, "PRAGMA application_id=%d", DB_APPLICATION_ID);
        rc = db_run(db, sql, "set the application id");
    }
    if (rc)
        err_setf(err, errlen, "%s: cannot configure it: %s", db_name(db), sqlite3_errmsg(db->h));
    return rc;
}

bool db_is_read_only(const struct db *db)
{
    return db->read_only;
}

/* True when path exists but it, or its directory, cannot be written (read-only mount, permissions). */
static bool path_is_read_only(const char *path)
{
    char dir[PATH_MAX];
    if (access(path, F_OK) != 0)
        return false;
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == path ? 1 : slash - path) : 1, slash ? path : ".");
    return access(path, W_OK) != 0 || access(dir, W_OK) != 0;
}

/* A "file:" URI for path with query, percent-encoding what a URI may not hold. */
static int file_uri(const char *path, const char *query, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "file:");
    const unsigned char *p = (const unsigned char *)path;
    for (; *p && n + 4 < outlen; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("/-._~", *p))
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, outlen - n, "%%%02X", *p);
    }
    /* A path that does not fit is an error, never a shorter path (which would open another file). */
    if (*p || n + strlen(query) + 2 >= outlen)
        return ERR_TOO_BIG;
    snprintf(out + n, outlen - n, "?%s", query);
    return ERR_OK;
}

/* Opens an existing store that cannot be written: through its WAL when one is there (committed changes not yet
 * checkpointed live in it), else as an immutable file (nothing to create beside it). */
static int db_open_read_only(struct db *db)
{
    char wal[PATH_MAX + 8], uri[3 * PATH_MAX + 32];
    snprintf(wal, sizeof wal, "%s-wal", db->path);
    bool has_wal = access(wal, F_OK) == 0;
    if (file_uri(db->path, has_wal ? "mode=ro" : "immutable=1", uri, sizeof uri))
        return SQLITE_CANTOPEN;
    return sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
}

struct db *db_open(const char *path, char *err, size_t errlen)
{
    err_setf(err, errlen, "%s", "");
    struct db *db = calloc(1, sizeof *db);
    if (!db || (path && !(db->path = strdup(path)))) {
        err_setf(err, errlen, "out of memory");
        free(db);
        return NULL;
    }
    db->read_only = path && path_is_read_only(path);
    /* The store holds keys: create it owner-only (SQLite gives its -wal and -shm files the same mode). */
    int fd = path && !db->read_only ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (fd >= 0)
        close(fd);
    else if (path && errno != EEXIST)
        log_debug("store: cannot create %s: %s (SQLite will say why)", path, strerror(errno));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (!path)
        flags |= SQLITE_OPEN_MEMORY;
    int rc = db->read_only ? db_open_read_only(db) : sqlite3_open_v2(path ? path : ":memory:", &db->h, flags, NULL);
    if (rc != SQLITE_OK) {
        err_setf(err, errlen, "%s: cannot open the store: %s", db_name(db), db->h ? sqlite3_errmsg(db->h) : "?");
        db_close(db);
        return NULL;
    }
    if (db_configure(db, err, errlen) || db_bootstrap(db, err, errlen)) {
        db_close(db);
        return NULL;
    }
    if (db->read_only)
        log_warn("store: %s is read-only: the registry is served as stored, and every change fails until the "
                 "data dir is writable again (restart then)", path);
    return db;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    while (db->depth > 0)
        db_rollback(db);
    for (size_t i = 0; i < db->nstmts; i++)
        sqlite3_finalize(db->stmts[i].st);
    free(db->stmts);
    free(db->hooks);
    if (db->h)
        sqlite3_close(db->h);
    free(db->path);
    free(db);
}
