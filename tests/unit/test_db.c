/* test_db.c -- unit tests for emulator/store/db: opening (file and in-memory, WAL, refusing foreign, corrupt
 * and newer databases), per-module migrations (in order, once, a failing step changing nothing, newer refused),
 * the statement cache, nested transactions with their hooks (commit,
 * rollback, a savepoint rolled back inside a committed transaction, a failing COMMIT), a full database
 * (max_page_count) leaving the previous state readable, the identities foreign key, meta. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "registry.h"

struct tdir {
    char dir[64];
    char path[128];
};

static void tdir_make(struct tdir *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/test_db.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/" DB_FILE_NAME, t->dir);
}

static void tdir_remove(struct tdir *t)
{
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(t->dir), 0);
}

static void file_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* db_open, then the registry's tables (the identities table the tests below write). */
static struct db *open_db(const char *path, char *err, size_t errlen)
{
    struct db *db = db_open(path, err, errlen);
    if (db && db_migrate(db, registry_schema(), err, errlen) != ERR_OK) {
        db_close(db);
        return NULL;
    }
    return db;
}

/* Runs one statement that returns nothing. */
static int run(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    return db_exec(db, st);
}

static long long count(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

#define INSERT_DEV "INSERT INTO identities (device_id, primary_key, secondary_key, enabled, generation_id, version) " \
                   "VALUES (?1, 'k', 'k', 1, '1', 0)"
#define INSERT_MOD "INSERT INTO identities (device_id, module_id, parent_module, primary_key, secondary_key, "   \
                   "enabled, generation_id, version) VALUES (?1, ?2, '', 'k', 'k', 1, '1', 0)"

static int insert_dev(struct db *db, const char *id)
{
    sqlite3_stmt *st = db_stmt(db, INSERT_DEV);
    assert_non_null(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return db_exec(db, st);
}

static int insert_mod(struct db *db, const char *id, const char *mid)
{
    sqlite3_stmt *st = db_stmt(db, INSERT_MOD);
    assert_non_null(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, mid, -1, SQLITE_STATIC);
    return db_exec(db, st);
}

static long long devices(struct db *db)
{
    return count(db, "SELECT count(*) FROM identities");
}

/* Hooks write what ran into a log string. */
struct hook_log {
    char text[256];
};

struct hook_arg {
    struct hook_log *log;
    char name[8];
};

static void log_add(struct hook_log *l, const char *what, const char *name)
{
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s%s:%s", n ? " " : "", what, name);
}

static void on_commit(void *arg)
{
    struct hook_arg *a = arg;
    log_add(a->log, "c", a->name);
}

static void on_rollback(void *arg)
{
    struct hook_arg *a = arg;
    log_add(a->log, "r", a->name);
}

/* ---- tests ---- */

static void open_in_memory(void **state)
{
    char err[256];
    struct db *db = db_open(NULL, err, sizeof err);
    assert_non_null(db);
    assert_int_equal(db_schema_version(db, "store"), 1);
    assert_int_equal(db_schema_version(db, "registry"), 0);
    assert_int_equal(db_migrate(db, registry_schema(), err, sizeof err), ERR_OK);
    assert_int_equal(db_schema_version(db, "registry"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM schema_migrations"), 2);
    assert_int_equal(count(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(devices(db), 0);
    db_close(db);
}

static void file_round_trip_wal(void **state)
{
    struct tdir t;
    char err[256];
    tdir_make(&t);
    struct db *db = open_db(t.path, err, sizeof err);
    assert_non_null(db);
    sqlite3_stmt *st = db_stmt(db, "PRAGMA journal_mode");
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_reset(st);
    assert_int_equal(count(db, "PRAGMA synchronous"), 1); /* NORMAL: see db.c */
    assert_int_equal(insert_dev(db, "dev1"), ERR_OK);      /* autocommit */
    struct stat sb;
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", t.path);
    assert_int_equal(stat(t.path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0); /* keys inside: owner only */
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    db_close(db);

    db = open_db(t.path, err, sizeof err);
    assert_non_null(db);
    assert_int_equal(db_schema_version(db, "registry"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM schema_migrations"), 2); /* not applied twice */
    assert_int_equal(devices(db), 1);
    db_close(db);
    tdir_remove(&t);
}

static void refuses_bad_files(void **state)
{
    struct tdir t;
    char err[256];
    tdir_make(&t);
    file_write(t.path, "{\"version\":1,\"devices\":[]} this is not SQLite, and long enough to be a header......");
    assert_null(open_db(t.path, err, sizeof err));
    assert_non_null(strstr(err, "not a SQLite database"));
    unlink(t.path);

    /* Another program's SQLite database. */
    sqlite3 *h;
    assert_int_equal(sqlite3_open(t.path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE stuff (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_null(open_db(t.path, err, sizeof err));
    assert_non_null(strstr(err, "not an emulator store"));
    unlink(t.path);

    /* A store written by a newer emulator: a module's tables, then the store's own. */
    struct db *db = open_db(t.path, err, sizeof err);
    assert_non_null(db);
    assert_int_equal(run(db, "INSERT INTO schema_migrations VALUES ('registry', 99, 'future', 0)"), ERR_OK);
    db_close(db);
    db = db_open(t.path, err, sizeof err);
    assert_non_null(db);
    assert_int_equal(db_migrate(db, registry_schema(), err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "registry schema version 99, newer than this emulator"));
    assert_int_equal(run(db, "INSERT INTO schema_migrations VALUES ('store', 7, 'future', 0)"), ERR_OK);
    db_close(db);
    assert_null(db_open(t.path, err, sizeof err));
    assert_non_null(strstr(err, "newer than this emulator"));
    tdir_remove(&t);

    /* A directory that does not exist. */
    assert_null(db_open("/nonexistent-dir/" DB_FILE_NAME, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
}

static int failing_step(struct db *db, char *err, size_t errlen)
{
    snprintf(err, errlen, "no, not today");
    return ERR_INVALID;
}

static int filling_step(struct db *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO things (name) VALUES ('filled by step 2')");
    return st ? db_exec(db, st) : ERR_IO;
}

static void module_migrations(void **state)
{
    char err[256];
    static const struct db_migration steps[] = {
        {1, "things", "CREATE TABLE things (name TEXT NOT NULL)", NULL},
        {2, "things get a row", NULL, filling_step},
        {3, "things get a column, then fail", "ALTER TABLE things ADD COLUMN size INTEGER", failing_step},
    };
    struct db *db = db_open(NULL, err, sizeof err);
    struct db_schema one = {"things", steps, 1}, two = {"things", steps, 2}, three = {"things", steps, 3};
    assert_int_equal(db_migrate(db, &one, err, sizeof err), ERR_OK);
    assert_int_equal(db_schema_version(db, "things"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM things"), 0);
    assert_int_equal(db_migrate(db, &two, err, sizeof err), ERR_OK); /* only step 2 runs */
    assert_int_equal(db_migrate(db, &two, err, sizeof err), ERR_OK); /* nothing to do */
    assert_int_equal(count(db, "SELECT count(*) FROM things"), 1);
    assert_int_equal(db_migrate(db, &three, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "no, not today"));
    assert_int_equal(db_schema_version(db, "things"), 2);
    assert_null(db_stmt(db, "SELECT size FROM things")); /* the step's ALTER was rolled back */
    assert_int_equal(db_schema_version(db, "store"), 1); /* other modules untouched */
    assert_int_equal(db_migrate(db, &one, err, sizeof err), ERR_INVALID); /* a build that knows less */
    db_close(db);
}

static void statement_cache(void **state)
{
    char err[256];
    struct db *db = open_db(NULL, err, sizeof err);
    static const char sql[] = "SELECT count(*) FROM identities WHERE device_id = ?1";
    sqlite3_stmt *a = db_stmt(db, sql);
    assert_non_null(a);
    sqlite3_bind_text(a, 1, "x", -1, SQLITE_STATIC);
    sqlite3_step(a); /* left mid-way: the next db_stmt resets it */
    char copy[sizeof sql];
    memcpy(copy, sql, sizeof sql);
    assert_ptr_equal(db_stmt(db, copy), a); /* same text, other pointer */
    assert_int_equal(sqlite3_step(a), SQLITE_ROW); /* bindings were cleared: NULL matches nothing */
    assert_int_equal(sqlite3_column_int(a, 0), 0);
    sqlite3_reset(a);
    assert_null(db_stmt(db, "SELECT nonsense FROM nowhere"));
    db_close(db);
}

static void commit_runs_hooks_in_order(void **state)
{
    char err[256];
    struct hook_log log = {""};
    struct hook_arg a = {&log, "a"}, b = {&log, "b"};
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(db_defer(db, on_commit, on_rollback, &a), ERR_INVALID); /* no transaction */
    assert_int_equal(db_begin(db), ERR_OK);
    assert_true(db_in_transaction(db));
    assert_int_equal(insert_dev(db, "d1"), ERR_OK);
    assert_int_equal(db_defer(db, on_commit, on_rollback, &a), ERR_OK);
    assert_int_equal(insert_dev(db, "d2"), ERR_OK);
    assert_int_equal(db_defer(db, on_commit, on_rollback, &b), ERR_OK);
    assert_string_equal(log.text, "");
    assert_int_equal(db_commit(db), ERR_OK);
    assert_false(db_in_transaction(db));
    assert_string_equal(log.text, "c:a c:b");
    assert_int_equal(devices(db), 2);
    assert_int_equal(db_commit(db), ERR_INVALID);
    db_close(db);
}

static void rollback_runs_hooks_newest_first(void **state)
{
    char err[256];
    struct hook_log log = {""};
    struct hook_arg a = {&log, "a"}, b = {&log, "b"};
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(db_begin(db), ERR_OK);
    assert_int_equal(insert_dev(db, "d1"), ERR_OK);
    db_defer(db, on_commit, on_rollback, &a);
    db_defer(db, NULL, on_rollback, &b);
    db_rollback(db);
    assert_string_equal(log.text, "r:b r:a");
    assert_int_equal(devices(db), 0);
    db_close(db);
}

static void savepoint_rollback_inside_commit(void **state)
{
    char err[256];
    struct hook_log log = {""};
    struct hook_arg a = {&log, "a"}, b = {&log, "b"}, c = {&log, "c"};
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(db_begin(db), ERR_OK);
    assert_int_equal(insert_dev(db, "d1"), ERR_OK);
    db_defer(db, on_commit, on_rollback, &a);
    assert_int_equal(db_begin(db), ERR_OK); /* savepoint: a failed item of a bulk request */
    assert_int_equal(insert_dev(db, "d2"), ERR_OK);
    db_defer(db, on_commit, on_rollback, &b);
    db_rollback(db);
    assert_string_equal(log.text, "r:b");
    assert_true(db_in_transaction(db));
    assert_int_equal(db_begin(db), ERR_OK); /* a good item */
    assert_int_equal(insert_dev(db, "d3"), ERR_OK);
    db_defer(db, on_commit, on_rollback, &c);
    assert_int_equal(db_commit(db), ERR_OK);
    assert_string_equal(log.text, "r:b"); /* released into the outer transaction: not yet durable */
    assert_int_equal(db_commit(db), ERR_OK);
    assert_string_equal(log.text, "r:b c:a c:c");
    assert_int_equal(devices(db), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM identities WHERE device_id = 'd2'"), 0);
    db_close(db);
}

static void failing_commit_rolls_back(void **state)
{
    char err[256];
    struct hook_log log = {""};
    struct hook_arg a = {&log, "a"};
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(insert_dev(db, "keep"), ERR_OK);
    assert_int_equal(db_begin(db), ERR_OK);
    assert_int_equal(run(db, "PRAGMA defer_foreign_keys = ON"), ERR_OK);
    assert_int_equal(insert_mod(db, "ghost", "m"), ERR_OK); /* no device: checked at COMMIT */
    db_defer(db, on_commit, on_rollback, &a);
    assert_int_equal(db_commit(db), ERR_IO);
    assert_false(db_in_transaction(db));
    assert_string_equal(log.text, "r:a");
    assert_int_equal(devices(db), 1);
    assert_int_equal(db_begin(db), ERR_OK); /* usable afterwards */
    assert_int_equal(insert_dev(db, "next"), ERR_OK);
    assert_int_equal(db_commit(db), ERR_OK);
    assert_int_equal(devices(db), 2);
    db_close(db);
}

static void full_database_keeps_old_state(void **state)
{
    struct tdir t;
    char err[256], id[64];
    tdir_make(&t);
    struct db *db = open_db(t.path, err, sizeof err);
    assert_int_equal(insert_dev(db, "before"), ERR_OK);
    long long pages = count(db, "PRAGMA page_count");
    sqlite3_stmt *st = db_stmt(db, "PRAGMA max_page_count = 1"); /* clamps to the current size: "disk full" */
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_reset(st);
    assert_int_equal(count(db, "PRAGMA max_page_count"), pages);
    int rc = ERR_OK;
    assert_int_equal(db_begin(db), ERR_OK);
    for (int i = 0; i < 2000 && rc == ERR_OK; i++) {
        snprintf(id, sizeof id, "device-with-a-long-name-%06d", i);
        rc = insert_dev(db, id);
    }
    assert_int_equal(rc, ERR_IO);
    db_rollback(db);
    assert_int_equal(devices(db), 1);
    db_close(db);
    db = open_db(t.path, err, sizeof err); /* opens fine, the old row is there */
    assert_non_null(db);
    assert_int_equal(devices(db), 1);
    db_close(db);
    tdir_remove(&t);
}

static void identities_foreign_key(void **state)
{
    char err[256];
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(insert_mod(db, "nodev", "m1"), ERR_EXISTS); /* constraint: the device must exist */
    assert_int_equal(insert_dev(db, "d"), ERR_OK);
    assert_int_equal(insert_mod(db, "d", "m1"), ERR_OK);
    assert_int_equal(insert_mod(db, "d", "m2"), ERR_OK);
    assert_int_equal(insert_dev(db, "d"), ERR_EXISTS);
    assert_int_equal(devices(db), 3);
    assert_int_equal(run(db, "DELETE FROM identities WHERE device_id = 'd' AND module_id = ''"), ERR_OK);
    assert_int_equal(devices(db), 0); /* the modules went with it */
    db_close(db);
}

static void meta_values(void **state)
{
    char err[256], v[16];
    struct db *db = open_db(NULL, err, sizeof err);
    assert_int_equal(db_meta_get(db, "k", v, sizeof v), ERR_NOT_FOUND);
    assert_int_equal(db_meta_set(db, "k", "one"), ERR_OK);
    assert_int_equal(db_meta_set(db, "k", "a longer value"), ERR_OK);
    assert_int_equal(db_meta_get(db, "k", v, sizeof v), ERR_OK);
    assert_string_equal(v, "a longer value");
    assert_int_equal(db_meta_get(db, "k", v, 4), ERR_OK);
    assert_string_equal(v, "a l");
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_in_memory),
        cmocka_unit_test(file_round_trip_wal),
        cmocka_unit_test(refuses_bad_files),
        cmocka_unit_test(module_migrations),
        cmocka_unit_test(statement_cache),
        cmocka_unit_test(commit_runs_hooks_in_order),
        cmocka_unit_test(rollback_runs_hooks_newest_first),
        cmocka_unit_test(savepoint_rollback_inside_commit),
        cmocka_unit_test(failing_commit_rolls_back),
        cmocka_unit_test(full_database_keeps_old_state),
        cmocka_unit_test(identities_foreign_key),
        cmocka_unit_test(meta_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
