/* twinstore.c -- the twins table (see twinstore.h): prepared statements through db.h, no SQL built from input.
 * Tests: tests/unit/test_twinstore.c. */
#include "twinstore.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "log.h"

/* The twins module's schema steps (db.h: each module owns its tables). */
static const struct db_migration twinstore_steps[] = {
    {1, "twins",
     /* One row per identity that has a twin: the twin's own JSON text (hub/twin.c twin_save), written whole on
      * every acknowledged change (at most ~80 KiB). Deleting the identity deletes its twin. */
     "CREATE TABLE twins ("
     " device_id TEXT NOT NULL,"
     " module_id TEXT NOT NULL DEFAULT '',"
     " doc TEXT NOT NULL,"
     " PRIMARY KEY (device_id, module_id),"
     " FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE"
     ") WITHOUT ROWID;",
     NULL},
};

static const struct db_schema twinstore_schema = {"twins", twinstore_steps,
                                                  sizeof twinstore_steps / sizeof twinstore_steps[0]};

int twinstore_migrate(struct db *db, char *err, size_t errlen)
{
    return db_migrate(db, &twinstore_schema, err, errlen);
}

#define SQL_UPSERT "INSERT OR REPLACE INTO twins (device_id, module_id, doc) VALUES (?1, ?2, ?3)"
#define SQL_SELECT "SELECT device_id, module_id, doc FROM twins ORDER BY device_id, module_id"

int twinstore_save(struct db *db, const char *device_id, const char *module_id, const char *text)
{
    sqlite3_stmt *st = db_stmt(db, SQL_UPSERT);
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, module_id ? module_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    int rc = db_exec(db, st);
    return rc == ERR_EXISTS ? ERR_NOT_FOUND : rc; /* the foreign key: no such identity */
}

int twinstore_load(struct db *db,
                   int (*fn)(void *ctx, const char *device_id, const char *module_id, const char *text, size_t len),
                   void *ctx)
{
    sqlite3_stmt *st = db_stmt(db, SQL_SELECT);
    if (!st)
        return ERR_IO;
    int s;
    size_t n = 0;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dev = (const char *)sqlite3_column_text(st, 0);
        const char *mod = (const char *)sqlite3_column_text(st, 1);
        const char *doc = (const char *)sqlite3_column_text(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if (!dev || !doc)
            continue;
        int rc = fn(ctx, dev, mod && *mod ? mod : NULL, doc, len);
        if (rc)
            log_warn("twin of %s%s%s in the store is skipped: %s", dev, mod && *mod ? "/" : "", mod ? mod : "",
                     err_str(rc));
        else
            n++;
    }
    int rc = db_result(db, s, "load twins");
    sqlite3_reset(st);
    if (rc == ERR_OK)
        log_debug("store: %zu twins loaded", n);
    return rc;
}
