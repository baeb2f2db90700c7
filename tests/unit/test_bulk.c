/* test_bulk.c -- unit tests for emulator/store/bulk: each importMode, per-item errors beside applied items (the
 * hub's errorCode names), requests refused as a whole with nothing applied, the applied callback running after
 * the commit, and a store that cannot write failing the request with memory and disk unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bulk.h"
#include "db.h"
#include "err.h"
#include "registry.h"

struct applied_log {
    char text[1024];
};

static void on_applied(void *arg, const char *device_id, const char *module_id, enum bulk_op op)
{
    struct applied_log *l = arg;
    size_t n = strlen(l->text);
    static const char *ops[] = {"create", "update", "delete"};
    snprintf(l->text + n, sizeof l->text - n, "%s%s:%s%s%s", n ? " " : "", ops[op], device_id, module_id ? "/" : "",
             module_id ? module_id : "");
}

static struct registry *reg_new(void)
{
    char err[256];
    struct db *db = db_open(NULL, err, sizeof err);
    assert_non_null(db);
    struct registry *r = registry_new(db, NULL, err, sizeof err);
    assert_non_null(r);
    return r;
}

static void reg_free(struct registry *r)
{
    struct db *db = registry_db(r);
    registry_free(r);
    db_close(db);
}

/* Runs a bulk request given as JSON text; returns rc, *result for ERR_OK. */
static int run(struct registry *r, const char *text, json_t **result, struct applied_log *log, char *err,
               size_t errlen)
{
    json_error_t je;
    json_t *body = json_loads(text, JSON_DECODE_ANY, &je);
    assert_non_null(body);
    int rc = bulk_apply(r, body, on_applied, log, result, err, errlen);
    json_decref(body);
    return rc;
}

static json_t *run_ok(struct registry *r, const char *text, struct applied_log *log)
{
    char err[256] = "";
    json_t *res = NULL;
    int rc = run(r, text, &res, log, err, sizeof err);
    if (rc)
        fail_msg("bulk: %d %s", rc, err);
    assert_non_null(res);
    return res;
}

static void put_dev(struct registry *r, const char *id)
{
    char err[256];
    const struct identity *out;
    bool created;
    json_t *body = json_object();
    assert_int_equal(registry_put(r, id, NULL, body, NULL, &out, &created, err, sizeof err), ERR_OK);
    json_decref(body);
}

static const char *error_code(json_t *res, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(res, "errors"), i), "errorCode"));
}

static void creates_as_node_sends_them(void **state)
{
    struct registry *r = reg_new();
    struct applied_log log = {""};
    /* Registry.addDevices: deviceId renamed to id, importMode "create", keys given or not. */
    json_t *res = run_ok(r,
                         "[{\"id\":\"b1\",\"importMode\":\"create\"},"
                         "{\"id\":\"b2\",\"importMode\":\"create\",\"status\":\"disabled\",\"authentication\":"
                         "{\"type\":\"sas\",\"symmetricKey\":{\"primaryKey\":\"Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=\","
                         "\"secondaryKey\":null}}},"
                         "{\"id\":\"b3\",\"importMode\":\"create\",\"capabilities\":{\"iotEdge\":true}}]",
                         &log);
    assert_true(json_is_true(json_object_get(res, "isSuccessful")));
    assert_int_equal(json_array_size(json_object_get(res, "errors")), 0);
    assert_true(json_is_array(json_object_get(res, "warnings")));
    json_decref(res);
    assert_string_equal(log.text, "create:b1 create:b2 create:b3");
    assert_int_equal(registry_device_count(r), 3);
    assert_false(registry_find(r, "b2", NULL)->enabled);
    assert_string_equal(registry_find(r, "b2", NULL)->primary_key, "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=");
    assert_true(registry_find(r, "b3", NULL)->iot_edge);
    reg_free(r);
}

static void per_item_errors_beside_applied_items(void **state)
{
    struct registry *r = reg_new();
    struct applied_log log = {""};
    put_dev(r, "exists");
    put_dev(r, "upd");
    char etag[48], text[1024];
    registry_etag(registry_find(r, "upd", NULL), etag, sizeof etag);
    memmove(etag, etag + 1, strlen(etag)); /* unquoted, as in the device JSON the SDKs send back */
    etag[strlen(etag) - 1] = '\0';
    snprintf(text, sizeof text,
             "[{\"id\":\"exists\",\"importMode\":\"Create\"},"
             "{\"id\":\"fresh\",\"importMode\":\"create\"},"
             "{\"id\":\"upd\",\"importMode\":\"UpdateIfMatchETag\",\"eTag\":\"bm9wZQ==\",\"status\":\"disabled\"},"
             "{\"id\":\"missing\",\"importMode\":\"Delete\"},"
             "{\"id\":\"missing2\",\"importMode\":\"update\"},"
             "{\"id\":\"bad id!\",\"importMode\":\"create\"},"
             "{\"id\":\"exists\",\"moduleId\":\"m1\",\"importMode\":\"create\"},"
             "{\"id\":\"nodev\",\"moduleId\":\"m1\",\"importMode\":\"create\"},"
             "{\"id\":\"upd\",\"moduleId\":\"nomod\",\"importMode\":\"delete\"}]");
    json_t *res = run_ok(r, text, &log);
    assert_false(json_is_true(json_object_get(res, "isSuccessful")));
    json_t *errors = json_object_get(res, "errors");
    assert_int_equal(json_array_size(errors), 7);
    assert_string_equal(error_code(res, 0), "DeviceAlreadyExists");
    assert_string_equal(error_code(res, 1), "PreconditionFailed");
    assert_string_equal(error_code(res, 2), "DeviceNotFound");
    assert_string_equal(error_code(res, 3), "DeviceNotFound");
    assert_string_equal(error_code(res, 4), "ArgumentInvalid");
    assert_string_equal(error_code(res, 5), "DeviceNotFound");
    assert_string_equal(error_code(res, 6), "ModuleNotFound");
    json_t *e0 = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "deviceId")), "exists");
    assert_string_equal(json_string_value(json_object_get(e0, "operation")), "create");
    assert_non_null(strstr(json_string_value(json_object_get(e0, "errorStatus")), "already registered"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 6), "moduleId")), "nomod");
    json_decref(res);
    assert_string_equal(log.text, "create:fresh create:exists/m1");
    assert_non_null(registry_find(r, "fresh", NULL));
    assert_non_null(registry_find(r, "exists", "m1"));
    assert_true(registry_find(r, "upd", NULL)->enabled); /* the stale etag changed nothing */

    /* With the right etag, and the other modes. */
    memset(&log, 0, sizeof log);
    snprintf(text, sizeof text,
             "[{\"id\":\"upd\",\"importMode\":\"updateIfMatchETag\",\"etag\":\"%s\",\"status\":\"disabled\"},"
             "{\"id\":\"exists\",\"importMode\":\"deleteIfMatchETag\",\"eTag\":\"*\"},"
             "{\"id\":\"fresh\",\"importMode\":\"update\",\"statusReason\":\"x\"},"
             "{\"id\":\"up1\"},"
             "{\"id\":\"fresh\",\"moduleId\":\"m\",\"importMode\":\"createOrUpdate\"}]",
             etag);
    res = run_ok(r, text, &log);
    assert_true(json_is_true(json_object_get(res, "isSuccessful")));
    json_decref(res);
    assert_string_equal(log.text, "update:upd delete:exists update:fresh create:up1 create:fresh/m");
    assert_false(registry_find(r, "upd", NULL)->enabled);
    assert_null(registry_find(r, "exists", NULL));
    assert_null(registry_find(r, "exists", "m1"));
    assert_string_equal(registry_find(r, "fresh", NULL)->status_reason, "x");
    reg_free(r);
}

static void refused_requests_apply_nothing(void **state)
{
    static const char *bad[] = {
        "{}",
        "[]",
        "[1]",
        "[{\"importMode\":\"create\"}]",
        "[{\"id\":7}]",
        "[{\"id\":\"a\",\"importMode\":\"frobnicate\"}]",
        "[{\"id\":\"a\",\"importMode\":\"updateTwin\"}]",
        "[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"a\",\"importMode\":\"delete\"}]",
        "[{\"id\":\"a\",\"moduleId\":5}]",
    };
    struct registry *r = reg_new();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        json_t *res = (json_t *)1;
        struct applied_log log = {""};
        if (run(r, bad[i], &res, &log, err, sizeof err) != ERR_INVALID)
            fail_msg("request %zu accepted", i);
        assert_null(res);
        assert_true(err[0] != '\0');
        assert_string_equal(log.text, "");
    }
    assert_int_equal(registry_device_count(r), 0);
    /* 100 is the limit, 101 is refused. */
    char text[8192] = "[";
    for (int i = 0; i < 101; i++) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof text - n, "%s{\"id\":\"d%03d\"}", i ? "," : "", i);
    }
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, "]");
    char err[256] = "";
    json_t *res = NULL;
    assert_int_equal(run(r, text, &res, NULL, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "101"));
    len = strlen(text) - strlen(",{\"id\":\"d100\"}]");
    snprintf(text + len, sizeof text - len, "]");
    struct applied_log log = {""};
    res = run_ok(r, text, &log);
    json_decref(res);
    assert_int_equal(registry_device_count(r), 100);
    reg_free(r);
}

static void store_failure_applies_nothing(void **state)
{
    struct registry *r = reg_new();
    put_dev(r, "a");
    sqlite3_stmt *st = db_stmt(registry_db(r), "PRAGMA query_only = ON");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    char err[256] = "";
    json_t *res = NULL;
    struct applied_log log = {""};
    assert_int_equal(run(r, "[{\"id\":\"b\"},{\"id\":\"a\",\"importMode\":\"delete\"}]", &res, &log, err, sizeof err),
                     ERR_IO);
    assert_null(res);
    assert_non_null(strstr(err, "nothing was applied"));
    assert_string_equal(log.text, "");
    assert_non_null(registry_find(r, "a", NULL));
    assert_null(registry_find(r, "b", NULL));
    reg_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(creates_as_node_sends_them),
        cmocka_unit_test(per_item_errors_beside_applied_items),
        cmocka_unit_test(refused_requests_apply_nothing),
        cmocka_unit_test(store_failure_applies_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
