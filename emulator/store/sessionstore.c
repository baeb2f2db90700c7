/* sessionstore.c -- the sessions table (see sessionstore.h): prepared statements through db.h, no SQL built
 * from input. Tests: tests/unit/test_sessionstore.c. */
#include "sessionstore.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "log.h"

static const struct db_migration sessions_steps[] = {
    {1, "sessions: persisted MQTT sessions (CleanSession 0)",
     "CREATE TABLE sessions ("
     " device_id TEXT NOT NULL,"
     " module_id TEXT NOT NULL DEFAULT '',"
     " state TEXT NOT NULL,"
     " PRIMARY KEY (device_id, module_id),"
     " FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE"
     ") WITHOUT ROWID;",
     NULL},
};
static const struct db_schema sessions_schema = {"sessions", sessions_steps,
                                                 sizeof sessions_steps / sizeof sessions_steps[0]};

#define SQL_UPSERT "INSERT OR REPLACE INTO sessions (device_id, module_id, state) VALUES (?1, ?2, ?3)"
#define SQL_SELECT "SELECT state FROM sessions WHERE device_id = ?1 AND module_id = ?2"
#define SQL_DELETE "DELETE FROM sessions WHERE device_id = ?1 AND module_id = ?2"

int sessionstore_migrate(struct db *db, char *err, size_t errlen)
{
    return db_migrate(db, &sessions_schema, err, errlen);
}

static sqlite3_stmt *bound(struct db *db, const char *sql, const char *device_id, const char *module_id)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    if (st) {
        sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, module_id ? module_id : "", -1, SQLITE_STATIC);
    }
    return st;
}

int sessionstore_put(struct db *db, const char *device_id, const char *module_id, const char *state)
{
    sqlite3_stmt *st = bound(db, SQL_UPSERT, device_id, module_id);
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    int rc = db_exec(db, st);
    return rc == ERR_EXISTS ? ERR_NOT_FOUND : rc; /* the foreign key: no such identity */
}

char *sessionstore_get(struct db *db, const char *device_id, const char *module_id)
{
    sqlite3_stmt *st = bound(db, SQL_SELECT, device_id, module_id);
    if (!st)
        return NULL;
    char *out = NULL;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        out = strdup(text ? text : "");
    } else {
        db_result(db, s, "load a session");
    }
    sqlite3_reset(st);
    return out;
}

int sessionstore_delete(struct db *db, const char *device_id, const char *module_id)
{
    sqlite3_stmt *st = bound(db, SQL_DELETE, device_id, module_id);
    return st ? db_exec(db, st) : ERR_IO;
}
