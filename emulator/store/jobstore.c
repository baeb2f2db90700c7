/* jobstore.c -- the jobs tables (see jobstore.h): prepared statements through db.h, no SQL built from input.
 * Tests: tests/unit/test_jobs.c. */
#include "jobstore.h"

#include <sqlite3.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "log.h"

/* The jobs module's schema steps (db.h: each module owns its tables). Device records do not reference the
 * identities table: a job's history outlives a deleted device, as on the hub. */
static const struct db_migration jobstore_steps[] = {
    {1, "jobs",
     "CREATE TABLE jobs ("
     " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
     " job_id TEXT NOT NULL UNIQUE,"
     " doc TEXT NOT NULL"
     ");"
     "CREATE TABLE job_devices ("
     " job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,"
     " device_id TEXT NOT NULL,"
     " doc TEXT NOT NULL,"
     " PRIMARY KEY (job_id, device_id)"
     ") WITHOUT ROWID;",
     NULL},
};

static const struct db_schema jobstore_schema = {"jobs", jobstore_steps,
                                                 sizeof jobstore_steps / sizeof jobstore_steps[0]};

int jobstore_migrate(struct db *db, char *err, size_t errlen)
{
    return db_migrate(db, &jobstore_schema, err, errlen);
}

#define SQL_JOB_UPSERT                                                                                         \
    "INSERT INTO jobs (job_id, doc) VALUES (?1, ?2) ON CONFLICT (job_id) DO UPDATE SET doc = excluded.doc"
#define SQL_DEV_UPSERT "INSERT OR REPLACE INTO job_devices (job_id, device_id, doc) VALUES (?1, ?2, ?3)"
#define SQL_JOB_SELECT "SELECT job_id, doc FROM jobs ORDER BY seq"
#define SQL_DEV_SELECT "SELECT job_id, device_id, doc FROM job_devices ORDER BY job_id, device_id"

int jobstore_save_job(struct db *db, const char *job_id, const char *text)
{
    sqlite3_stmt *st = db_stmt(db, SQL_JOB_UPSERT);
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    int rc = db_exec(db, st);
    return rc == ERR_EXISTS ? ERR_IO : rc;
}

int jobstore_save_device(struct db *db, const char *job_id, const char *device_id, const char *text)
{
    sqlite3_stmt *st = db_stmt(db, SQL_DEV_UPSERT);
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    int rc = db_exec(db, st);
    return rc == ERR_EXISTS ? ERR_IO : rc;
}

int jobstore_load(struct db *db, int (*job_fn)(void *ctx, const char *job_id, const char *text, size_t len),
                  int (*dev_fn)(void *ctx, const char *job_id, const char *device_id, const char *text, size_t len),
                  void *ctx)
{
    sqlite3_stmt *st = db_stmt(db, SQL_JOB_SELECT);
    if (!st)
        return ERR_IO;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *doc = (const char *)sqlite3_column_text(st, 1);
        if (id && doc && job_fn(ctx, id, doc, (size_t)sqlite3_column_bytes(st, 1)) != ERR_OK)
            log_warn("job %s in the store is skipped", id);
    }
    int rc = db_result(db, s, "load jobs");
    sqlite3_reset(st);
    if (rc)
        return rc;
    st = db_stmt(db, SQL_DEV_SELECT);
    if (!st)
        return ERR_IO;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *dev = (const char *)sqlite3_column_text(st, 1);
        const char *doc = (const char *)sqlite3_column_text(st, 2);
        if (id && dev && doc && dev_fn(ctx, id, dev, doc, (size_t)sqlite3_column_bytes(st, 2)) != ERR_OK)
            log_warn("device %s of job %s in the store is skipped", dev, id);
    }
    rc = db_result(db, s, "load job devices");
    sqlite3_reset(st);
    return rc;
}
