/* jobs.h -- IoT Hub jobs: a direct method or a twin update scheduled on every device matching a query
 * condition, now or at a start time, followed through its status and per-device results. Protocol-agnostic
 * (the REST layer parses and answers); runs on the event loop's timers, no threads. Method jobs go through
 * hub_call_start (at most JOBS_MAX_IN_FLIGHT calls of one job at a time), twin jobs through hub_twin_update
 * (JOBS_TWIN_BATCH devices per loop iteration), so a 10,000-device job never floods the loop.
 * Choices (README "Jobs"):
 *   - statuses: queued (start time reached, waiting for a slot), scheduled (start time ahead), running,
 *     completed, failed, cancelled; per device: pending, running, completed, failed, cancelled.
 *   - at most JOBS_MAX_RUNNING jobs run at once (the hub documents 1 concurrent job on F1/S1, 5 on S2, 10 on
 *     S3; we apply S3's 10; jobs beyond that wait "queued" instead of being refused).
 *   - a job still running when maxExecutionTimeInSeconds has passed since its start: its pending and running
 *     devices fail with error JobExpired and the job ends "failed" (failureReason says why).
 *   - a method answered by the device counts as succeeded whatever status it returned (the outcome carries
 *     it); an offline device fails with DeviceNotOnline (404103), unknown ones with DeviceNotFound.
 *   - after a restart (jobs_use_store), a job that was queued or running is marked failed ("the emulator
 *     stopped while the job was running"), its unfinished devices failed; scheduled jobs keep their schedule.
 * Tests: tests/unit/test_jobs.c; tests/integration/sdk_jobs.test.js. */
#ifndef IOTHUB_JOBS_H
#define IOTHUB_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct hub;
struct jobs;
struct loop;

#define JOBS_MAX_RUNNING 10      /* concurrent running jobs (the hub's S3 limit) */
#define JOBS_MAX_IN_FLIGHT 64    /* method calls one job has pending at once */
#define JOBS_TWIN_BATCH 64       /* twin updates one job applies per loop iteration */
#define JOBS_DEFAULT_MAX_EXEC_S 3600
#define JOBS_MAX_ID 128          /* bytes in a job id */

/* An error for the REST layer: http status (400, 404, 409, 500) and the hub's 6-digit code. */
#define JOBS_ERR_ARGUMENT_INVALID 400004
#define JOBS_ERR_NOT_FOUND 404002      /* JobNotFound */
#define JOBS_ERR_EXISTS 409007         /* JobAlreadyExists (a best guess at the hub's number) */
struct jobs_error {
    int code;
    char message[256];
};

/* Returns NULL on ERR_NOMEM. Does not own loop or hub; both must outlive it. */
struct jobs *jobs_new(struct loop *loop, struct hub *hub);
/* Cancels pending calls and timers (no persistence of that: a restart marks running jobs failed). NULL ok. */
void jobs_free(struct jobs *j);

/* Jobs in the durable store (store/jobstore.h): migrates, loads every kept job and its device results (a
 * queued/running one is marked failed, a scheduled one re-armed), then saves each change. Returns ERR_OK or
 * ERR_IO with a reason in err. */
int jobs_use_store(struct jobs *j, struct db *db, char *err, size_t errlen);

/* Wall-clock milliseconds used for job times; tests may override it (NULL restores the real clock). */
void jobs_set_clock(struct jobs *j, int64_t (*now_ms)(void *ctx), void *ctx);

/* PUT /jobs/v2/{jobId}: validates body (the JobRequest), creates the job and returns its JobResponse (new
 * reference) in *out. ERR_OK; ERR_INVALID (err: 400004), ERR_EXISTS (err: 409), ERR_NOMEM. */
int jobs_create(struct jobs *j, const char *job_id, const json_t *body, json_t **out, struct jobs_error *err);
/* The JobResponse of a job (new reference), or NULL when there is none (or ERR_NOMEM). */
json_t *jobs_get(struct jobs *j, const char *job_id);
/* Cancels a queued, scheduled or running job (a finished one is left as it is) and returns its JobResponse.
 * ERR_OK, ERR_NOT_FOUND, ERR_NOMEM. */
int jobs_cancel(struct jobs *j, const char *job_id, json_t **out);
/* The JobResponses, oldest first, filtered by type and status (NULL or "": any). New array or NULL. */
json_t *jobs_list(struct jobs *j, const char *type, const char *status);
/* Every per-device job record (the documents of FROM devices.jobs), by job then device. fn returns false
 * to stop; doc is borrowed. */
void jobs_each_device(struct jobs *j, bool (*fn)(void *ctx, const json_t *doc), void *ctx);
/* Jobs not yet finished (queued, scheduled, running). */
size_t jobs_active(const struct jobs *j);

/* ISO-8601 UTC "YYYY-MM-DDTHH:MM:SS[.fff...][Z|+hh:mm]" to epoch milliseconds. ERR_OK or ERR_INVALID. */
int jobs_parse_time(const char *text, int64_t *ms);
/* Epoch milliseconds to "YYYY-MM-DDTHH:MM:SS.mmmZ" (out at least 25 bytes). */
void jobs_format_time(int64_t ms, char *out, size_t outlen);

#endif
