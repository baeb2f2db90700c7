/* db.h -- the durable store: one SQLite database file (<data-dir>/iothub.db) or an in-memory one, its schema
 * migrations, cached prepared statements and nestable transactions with commit/rollback hooks.
 * Durability: WAL journal, synchronous=NORMAL: a commit that returned ERR_OK survives kill -9 (any process
 * crash); a power loss may drop the last commits but never breaks the store (db.c says why not FULL).
 * Other store modules (registry today; twins, sessions, C2D queues, jobs later) bind and step the statements
 * with the sqlite3 API; no SQL text is ever built from input. Tests: tests/unit/test_db.c. */
#ifndef IOTHUB_DB_H
#define IOTHUB_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#define DB_FILE_NAME "iothub.db"

struct db;

/* Opens (creating when absent) the database at path, or an in-memory one when path is NULL, and brings the
 * store's own schema (schema_migrations, meta) up to date; each module then migrates its tables (db_migrate). Returns NULL on failure with a one-line reason in err (not a
 * database, a schema newer than this build, unwritable directory...); the file is then left as it was.
 * An existing store in a read-only place (read-only mount or permissions) is opened read-only (logged): reads
 * work, every write fails with ERR_IO. */
struct db *db_open(const char *path, char *err, size_t errlen);
void db_close(struct db *db);
bool db_is_read_only(const struct db *db);

/* ---- schema migrations: each module owns its tables ----
 * A module (registry, and later twins, sessions, C2D queues, jobs) lists its schema steps, numbered 1, 2, ...
 * in order, and calls db_migrate before it reads its tables; schema_migrations records (module, version), so
 * modules developed in parallel never compete for numbers. Append steps; never edit one that has shipped (old
 * data dirs have applied it). A module whose tables reference another's (twins -> identities) migrates after
 * it: per-identity tables use FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id)
 * ON DELETE CASCADE, so deleting an identity deletes its rows (registry.c explains the identities table). */
struct db_migration {
    int version;     /* 1, 2, ... */
    const char *name;
    const char *sql; /* constant SQL, may hold several statements; NULL for none */
    int (*apply)(struct db *db, char *err, size_t errlen); /* data changes after sql; NULL for none */
};
struct db_schema {
    const char *module; /* "registry", "twins", ... */
    const struct db_migration *steps;
    size_t nsteps;
};

/* Applies the steps of schema the store has not applied yet, each in its own transaction with its record (a
 * failing step changes nothing). ERR_INVALID (err says why) when the store has a newer version of the module
 * than steps knows, or is read-only and behind; ERR_IO when a step fails. */
int db_migrate(struct db *db, const struct db_schema *schema, char *err, size_t errlen);
/* The module's version in the store (0: never migrated), -1 when it cannot be read. */
int db_schema_version(struct db *db, const char *module);

/* Transactions. db_begin opens the outermost transaction (BEGIN IMMEDIATE: the write lock is taken now) or,
 * inside one, a savepoint. db_commit of a savepoint releases it into the enclosing transaction; db_commit of
 * the outermost one commits it durably and then runs the commit hooks. When a COMMIT fails (disk full,
 * read-only, I/O error) everything is rolled back, the rollback hooks run, and ERR_IO is returned (logged).
 * db_rollback undoes the innermost level and runs the rollback hooks registered inside it, newest first.
 * Begin/commit/rollback must pair up; one REST request or one MQTT operation = one outermost transaction. */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);
bool db_in_transaction(const struct db *db);

/* Registers work to do when the current transaction ends: on_commit (may be NULL) after the outermost COMMIT
 * succeeded, in registration order; else on_rollback (may be NULL) when the level it was registered in, or
 * any enclosing one, is rolled back. Exactly one of the two runs, once. This is how in-memory indexes follow
 * the database: change the rows, register the in-memory change, commit. Hooks update memory only: they must
 * not use the store. ERR_INVALID outside a transaction, ERR_NOMEM (nothing registered) when out of memory. */
int db_defer(struct db *db, void (*on_commit)(void *arg), void (*on_rollback)(void *arg), void *arg);

/* A prepared statement for sql, which must be a string constant in our source (statements are cached by
 * it). Returned reset with its bindings cleared, ready to bind; owned by db, valid until db_close. NULL when
 * it cannot be prepared (logged: a bug in the SQL or an unusable database). One user at a time: while stepping
 * through its rows, do not call anything that asks for the same SQL (it would be reset under you). */
sqlite3_stmt *db_stmt(struct db *db, const char *sql);

/* Steps st to completion and resets it: ERR_OK, ERR_EXISTS for a constraint violation, ERR_IO otherwise
 * (logged with the reason, e.g. "database or disk is full"). For statements that return no rows. */
int db_exec(struct db *db, sqlite3_stmt *st);

/* Maps a sqlite3 result code of st's step on db to our enum, logging failures with what (e.g. "save device").
 * SQLITE_OK/DONE/ROW -> ERR_OK, SQLITE_CONSTRAINT* -> ERR_EXISTS, SQLITE_NOMEM -> ERR_NOMEM, else ERR_IO. */
int db_result(struct db *db, int sqlite_rc, const char *what);

/* A small key/value table (meta) for one-off markers such as "registry.json imported". db_meta_get copies the
 * value into out (truncated to outlen) and returns ERR_OK, or ERR_NOT_FOUND. db_meta_set inserts or replaces
 * (call it inside a transaction to tie it to other changes). */
int db_meta_get(struct db *db, const char *key, char *out, size_t outlen);
int db_meta_set(struct db *db, const char *key, const char *value);

#endif
