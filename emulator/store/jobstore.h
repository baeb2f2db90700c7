/* jobstore.h -- jobs in the durable store (db.h, tables jobs and job_devices): one row per job holding its
 * JobResponse JSON, one per (job, device) holding the device's job record JSON, both replaced whole on each
 * change. The store never looks inside the text (hub/jobs.c does). Tests: tests/unit/test_jobs.c. */
#ifndef IOTHUB_JOBSTORE_H
#define IOTHUB_JOBSTORE_H

#include <stddef.h>

struct db;

/* Brings the jobs tables up to date (db_migrate, module "jobs"). ERR_OK, ERR_INVALID or ERR_IO (err). */
int jobstore_migrate(struct db *db, char *err, size_t errlen);
/* Inserts or replaces a job's text. ERR_OK or ERR_IO (logged). */
int jobstore_save_job(struct db *db, const char *job_id, const char *text);
/* Inserts or replaces one device's record of a job (the job's row must exist). ERR_OK or ERR_IO. */
int jobstore_save_device(struct db *db, const char *job_id, const char *device_id, const char *text);
/* Calls job_fn for every job (in creation order), then dev_fn for every device record (by job, device).
 * A callback's error is logged and the row skipped. ERR_OK or ERR_IO. */
int jobstore_load(struct db *db, int (*job_fn)(void *ctx, const char *job_id, const char *text, size_t len),
                  int (*dev_fn)(void *ctx, const char *job_id, const char *device_id, const char *text, size_t len),
                  void *ctx);

#endif
