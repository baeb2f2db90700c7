/* c2dstore.c -- the c2d_messages table (see c2dstore.h): prepared statements through db.h, no SQL built from
 * input. Tests: tests/unit/test_c2dstore.c. */
#include "c2dstore.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "log.h"

static const struct db_migration c2d_steps[] = {
    {1, "c2d: cloud-to-device queues",
     "CREATE TABLE c2d_messages ("
     " seq INTEGER PRIMARY KEY,"
     " device_id TEXT NOT NULL,"
     " module_id TEXT NOT NULL DEFAULT '',"
     " headers TEXT NOT NULL,"
     " body BLOB NOT NULL,"
     " FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE"
     ");"
     "CREATE INDEX c2d_messages_identity ON c2d_messages (device_id, module_id);",
     NULL},
};
static const struct db_schema c2d_schema = {"c2d", c2d_steps, sizeof c2d_steps / sizeof c2d_steps[0]};

#define SQL_INSERT "INSERT INTO c2d_messages (seq, device_id, module_id, headers, body) VALUES (?1, ?2, ?3, ?4, ?5)"
#define SQL_DELETE "DELETE FROM c2d_messages WHERE seq = ?1"
#define SQL_SELECT "SELECT seq, device_id, module_id, headers, body FROM c2d_messages ORDER BY seq"
#define SEQ_KEY "c2d.seq"

int c2dstore_migrate(struct db *db, char *err, size_t errlen)
{
    return db_migrate(db, &c2d_schema, err, errlen);
}

uint64_t c2dstore_last_seq(struct db *db)
{
    char text[32];
    if (db_meta_get(db, SEQ_KEY, text, sizeof text) != ERR_OK)
        return 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    return end && *end == 0 ? (uint64_t)v : 0;
}

int c2dstore_put(struct db *db, const char *device_id, const char *module_id, uint64_t seq, const char *headers,
                 const uint8_t *body, size_t body_len)
{
    if (seq > INT64_MAX || body_len > INT32_MAX)
        return ERR_INVALID;
    if (db_begin(db) != ERR_OK)
        return ERR_IO;
    sqlite3_stmt *st = db_stmt(db, SQL_INSERT);
    if (!st) {
        db_rollback(db);
        return ERR_IO;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, module_id ? module_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, body_len ? (const void *)body : "", (int)body_len, SQLITE_STATIC);
    int rc = db_exec(db, st);
    if (rc == ERR_EXISTS) /* the primary key or the foreign key: tell which */
        rc = c2dstore_last_seq(db) >= seq ? ERR_EXISTS : ERR_NOT_FOUND;
    if (rc == ERR_OK && seq > c2dstore_last_seq(db)) {
        char text[32];
        snprintf(text, sizeof text, "%" PRIu64, seq);
        rc = db_meta_set(db, SEQ_KEY, text);
    }
    if (rc != ERR_OK) {
        db_rollback(db);
        return rc;
    }
    return db_commit(db);
}

int c2dstore_del(struct db *db, uint64_t seq)
{
    sqlite3_stmt *st = db_stmt(db, SQL_DELETE);
    if (!st || seq > INT64_MAX)
        return ERR_IO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    return db_exec(db, st);
}

int c2dstore_load(struct db *db, c2dstore_fn fn, void *arg)
{
    sqlite3_stmt *st = db_stmt(db, SQL_SELECT);
    if (!st)
        return ERR_IO;
    int rc = ERR_OK, s = SQLITE_DONE;
    while (rc == ERR_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 seq = sqlite3_column_int64(st, 0);
        const char *dev = (const char *)sqlite3_column_text(st, 1);
        const char *mod = (const char *)sqlite3_column_text(st, 2);
        const char *headers = (const char *)sqlite3_column_text(st, 3);
        const uint8_t *body = sqlite3_column_blob(st, 4);
        int len = sqlite3_column_bytes(st, 4);
        if (seq <= 0 || !dev || !headers || len < 0) {
            log_warn("c2d store: message row %lld is damaged; skipped", (long long)seq);
            continue;
        }
        rc = fn(arg, dev, mod ? mod : "", (uint64_t)seq, headers, body, (size_t)len);
    }
    if (rc == ERR_OK && s != SQLITE_DONE)
        rc = db_result(db, s, "load the C2D queues");
    sqlite3_reset(st);
    return rc;
}
