/* test_jobs.c -- hub/jobs.c and store/jobstore.c: times, validation and 409, twin and method jobs over a real
 * hub and registry on the event loop, statistics and per-device records, schedule, cancel, the store after a
 * restart (a running job is marked failed with every target, a scheduled one kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "db.h"
#include "err.h"
#include "hub.h"
#include "jobs.h"
#include "jobstore.h"
#include "log.h"
#include "loop.h"
#include "registry.h"

#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

static struct db *db;
static struct registry *reg;
static struct loop *lp;
static struct hub *hub;
static int64_t fake_now;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static void on_stop(struct loop *l, void *ctx)
{
    (void)ctx;
    loop_stop(l);
}

/* Runs the loop for ms milliseconds (the jobs' own timers fire meanwhile). */
static void spin(int64_t ms)
{
    loop_timer_add(lp, ms, on_stop, NULL);
    loop_run(lp);
}

static int setup(void **state)
{
    (void)state;
    char err[128];
    log_set_level(LOG_LEVEL_ERROR);
    db = db_open(NULL, err, sizeof err);
    reg = registry_new(db, NULL, err, sizeof err);
    assert_non_null(reg);
    assert_int_equal(registry_ensure_device(reg, "a", KEY1, KEY1), ERR_OK);
    assert_int_equal(registry_ensure_device(reg, "b", KEY1, KEY1), ERR_OK);
    assert_int_equal(registry_ensure_device(reg, "c", KEY1, KEY1), ERR_OK);
    lp = loop_new();
    hub = hub_new(lp, reg);
    assert_non_null(hub);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hub_free(hub);
    loop_free(lp);
    registry_free(reg);
    db_close(db);
    return 0;
}

static json_t *body(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static json_int_t stat(json_t *job, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(job, "deviceJobStatistics"), name));
}

static const char *status(json_t *job)
{
    return json_string_value(json_object_get(job, "status"));
}

static void test_times(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(jobs_parse_time("2026-12-01T11:30:05.123Z", &ms), ERR_OK);
    char out[40];
    jobs_format_time(ms, out, sizeof out);
    assert_string_equal(out, "2026-12-01T11:30:05.123Z");
    assert_int_equal(jobs_parse_time("2026-12-01T12:30:05+01:00", &ms), ERR_OK);
    jobs_format_time(ms, out, sizeof out);
    assert_string_equal(out, "2026-12-01T11:30:05.000Z");
    assert_int_equal(jobs_parse_time("2026-13-01T11:30:05Z", &ms), ERR_INVALID);
    assert_int_equal(jobs_parse_time("yesterday", &ms), ERR_INVALID);
    assert_int_equal(jobs_parse_time("2026-12-01T11:30:05Zjunk", &ms), ERR_INVALID);
}

static void test_validation_and_conflict(void **state)
{
    (void)state;
    struct jobs *js = jobs_new(lp, hub);
    struct jobs_error e;
    json_t *out = NULL;
    const char *bad[] = {
        "{\"type\":\"other\",\"queryCondition\":\"deviceId='a'\"}",
        "{\"type\":\"scheduleUpdateTwin\",\"queryCondition\":\"deviceId='a'\"}",
        "{\"type\":\"scheduleDeviceMethod\",\"queryCondition\":\"deviceId='a'\",\"cloudToDeviceMethod\":{}}",
        "{\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{}}",
        "{\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{},\"queryCondition\":\"deviceId = = 'a'\"}",
        "{\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{},\"queryCondition\":\"1=1\",\"startTime\":\"soon\"}",
        "{\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{},\"queryCondition\":\"1=1\",\"maxExecutionTimeInSeconds\":0}",
        "{\"jobId\":\"other\",\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{},\"queryCondition\":\"1=1\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = body(bad[i]);
        memset(&e, 0, sizeof e);
        assert_int_equal(jobs_create(js, "j1", b, &out, &e), ERR_INVALID);
        assert_int_equal(e.code, JOBS_ERR_ARGUMENT_INVALID);
        assert_true(e.message[0] != '\0');
        json_decref(b);
    }
    json_t *b = body("{\"type\":\"scheduleUpdateTwin\",\"updateTwin\":{},\"queryCondition\":\"1=1\","
                     "\"startTime\":\"2999-01-01T00:00:00Z\"}");
    assert_int_equal(jobs_create(js, "j1", b, &out, &e), ERR_OK);
    assert_string_equal(status(out), "scheduled");
    assert_int_equal(json_integer_value(json_object_get(out, "maxExecutionTimeInSeconds")), 3600);
    json_decref(out);
    assert_int_equal(jobs_create(js, "j1", b, &out, &e), ERR_EXISTS);
    assert_int_equal(e.code, JOBS_ERR_EXISTS);
    json_decref(b);
    assert_null(jobs_get(js, "nope"));
    assert_int_equal(jobs_cancel(js, "nope", &out), ERR_NOT_FOUND);
    assert_int_equal(jobs_cancel(js, "j1", &out), ERR_OK);
    assert_string_equal(status(out), "cancelled");
    json_decref(out);
    assert_int_equal(jobs_active(js), 0);
    jobs_free(js);
}

static bool count_rec(void *ctx, const json_t *doc)
{
    size_t *n = ctx;
    if (strcmp(json_string_value(json_object_get(doc, "status")), "completed") == 0)
        (*n)++;
    return true;
}

static void test_twin_job(void **state)
{
    (void)state;
    struct jobs *js = jobs_new(lp, hub);
    struct jobs_error e;
    json_t *out = NULL;
    json_t *b = body("{\"type\":\"scheduleUpdateTwin\",\"queryCondition\":\"deviceId IN ['a','b']\","
                     "\"updateTwin\":{\"etag\":\"*\",\"properties\":{\"desired\":{\"fw\":\"2.0\"}}}}");
    assert_int_equal(jobs_create(js, "twin", b, &out, &e), ERR_OK);
    json_decref(b);
    assert_string_equal(status(out), "queued");
    json_decref(out);
    spin(100);
    out = jobs_get(js, "twin");
    assert_string_equal(status(out), "completed");
    assert_int_equal(stat(out, "deviceCount"), 2);
    assert_int_equal(stat(out, "succeededCount"), 2);
    assert_int_equal(stat(out, "failedCount"), 0);
    assert_int_equal(stat(out, "pendingCount"), 0);
    assert_true(json_is_string(json_object_get(out, "endTime")));
    json_decref(out);
    size_t n = 0;
    jobs_each_device(js, count_rec, &n);
    assert_int_equal(n, 2);
    json_t *doc = NULL;
    assert_int_equal(hub_twin_get(hub, "a", NULL, &doc, NULL, 0), ERR_OK);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(doc, "properties"), "desired"), "fw")),
                        "2.0");
    json_decref(doc);
    assert_int_equal(hub_twin_get(hub, "c", NULL, &doc, NULL, 0), ERR_OK);
    assert_null(json_object_get(json_object_get(json_object_get(doc, "properties"), "desired"), "fw"));
    json_decref(doc);
    out = jobs_list(js, "scheduleUpdateTwin", "completed");
    assert_int_equal(json_array_size(out), 1);
    json_decref(out);
    out = jobs_list(js, "scheduleDeviceMethod", NULL);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    jobs_free(js);
}

static void test_method_job_offline_and_schedule(void **state)
{
    (void)state;
    struct jobs *js = jobs_new(lp, hub);
    fake_now = 1000;
    jobs_set_clock(js, fake_clock, NULL);
    struct jobs_error e;
    json_t *out = NULL;
    /* starts 100 ms after "now" */
    json_t *b = body("{\"type\":\"scheduleDeviceMethod\",\"queryCondition\":\"deviceId != 'c'\","
                     "\"cloudToDeviceMethod\":{\"methodName\":\"reboot\",\"payload\":{\"x\":1}},"
                     "\"startTime\":\"1970-01-01T00:00:01.100Z\"}");
    assert_int_equal(jobs_create(js, "m", b, &out, &e), ERR_OK);
    json_decref(b);
    assert_string_equal(status(out), "scheduled");
    json_decref(out);
    spin(20);
    out = jobs_get(js, "m");
    assert_string_equal(status(out), "scheduled");
    json_decref(out);
    spin(300);
    out = jobs_get(js, "m");
    assert_string_equal(status(out), "completed");
    assert_int_equal(stat(out, "deviceCount"), 2);
    assert_int_equal(stat(out, "failedCount"), 2); /* nobody is online */
    json_decref(out);
    jobs_free(js);
}

/* A jobs module on the test store with one job created from text. */
static struct jobs *stored_with_job(const char *id, const char *text)
{
    char err[128];
    struct jobs *js = jobs_new(lp, hub);
    assert_int_equal(jobs_use_store(js, db, err, sizeof err), ERR_OK);
    struct jobs_error e;
    json_t *out = NULL;
    json_t *b = body(text);
    assert_int_equal(jobs_create(js, id, b, &out, &e), ERR_OK);
    json_decref(out);
    json_decref(b);
    return js;
}

static void test_store_restart(void **state)
{
    (void)state;
    char err[128];
    jobs_free(stored_with_job("later", "{\"type\":\"scheduleUpdateTwin\",\"queryCondition\":\"1=1\","
                                       "\"updateTwin\":{},\"startTime\":\"2999-01-01T00:00:00Z\"}"));
    /* a job the store says was running when the emulator stopped */
    assert_int_equal(
        jobstore_save_job(db, "crashed",
                          "{\"jobId\":\"crashed\",\"type\":\"scheduleDeviceMethod\",\"status\":\"running\","
                          "\"queryCondition\":\"1=1\",\"cloudToDeviceMethod\":{\"methodName\":\"x\"},"
                          "\"startTime\":\"2026-01-01T00:00:00Z\",\"maxExecutionTimeInSeconds\":60}"),
        ERR_OK);
    assert_int_equal(
        jobstore_save_device(db, "crashed", "a", "{\"deviceId\":\"a\",\"jobId\":\"crashed\",\"status\":\"running\"}"),
        ERR_OK);
    struct jobs *js = jobs_new(lp, hub);
    assert_int_equal(jobs_use_store(js, db, err, sizeof err), ERR_OK);
    json_t *out = jobs_get(js, "later");
    assert_string_equal(status(out), "scheduled");
    json_decref(out);
    out = jobs_get(js, "crashed");
    assert_string_equal(status(out), "failed");
    assert_int_equal(stat(out, "failedCount"), 1);
    assert_non_null(json_object_get(out, "failureReason"));
    json_decref(out);
    jobs_free(js);
}

static int count_job(void *ctx, const char *job_id, const char *text, size_t len)
{
    (void)ctx, (void)job_id, (void)text, (void)len;
    return ERR_OK;
}

/* Counts the stored device records of job "live" that are not finished. */
static int count_live_dev(void *ctx, const char *job_id, const char *device_id, const char *text, size_t len)
{
    (void)device_id;
    json_t *rec = json_loadb(text, len, 0, NULL);
    const char *st = json_string_value(json_object_get(rec, "status"));
    if (strcmp(job_id, "live") == 0 && st && (strcmp(st, "pending") == 0 || strcmp(st, "running") == 0))
        ++*(int *)ctx;
    json_decref(rec);
    return ERR_OK;
}

/* A job that starts running saves its device records at once (pending), so that after a crash the restart
 * fails every target instead of forgetting them (sdk_jobs.test.js found the statistics empty). */
static void test_store_running_devices(void **state)
{
    (void)state;
    char err[128];
    struct jobs *js =
        stored_with_job("live", "{\"type\":\"scheduleDeviceMethod\",\"queryCondition\":\"1=1\","
                                "\"cloudToDeviceMethod\":{\"methodName\":\"x\",\"connectTimeoutInSeconds\":60}}");
    spin(50);
    json_t *out = jobs_get(js, "live");
    assert_string_equal(status(out), "running");
    json_decref(out);
    int live = 0;
    assert_int_equal(jobstore_load(db, count_job, count_live_dev, &live), ERR_OK);
    assert_int_equal(live, 3); /* a, b, c: all waiting for their device to connect */
    /* as after a crash: a fresh jobs on the same store fails the three */
    struct jobs *again = jobs_new(lp, hub);
    assert_int_equal(jobs_use_store(again, db, err, sizeof err), ERR_OK);
    out = jobs_get(again, "live");
    assert_string_equal(status(out), "failed");
    assert_int_equal(stat(out, "deviceCount"), 3);
    assert_int_equal(stat(out, "failedCount"), 3);
    json_decref(out);
    jobs_free(again);
    jobs_free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test_setup_teardown(test_validation_and_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twin_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_job_offline_and_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_running_devices, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
