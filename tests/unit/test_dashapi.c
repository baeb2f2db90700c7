/* test_dashapi.c -- unit tests for http/dashapi: which request-targets are the dashboard's (files, session,
 * stats, events with ?since=, the C2D send with percent-decoded ids), the C2D send body and its refusals, and
 * the text of the SSE records (hub events; telemetry as text or base64, cut at the preview size). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashapi.h"
#include "err.h"
#include "eventlog.h"

static enum dashapi_kind kind_of(const char *uri)
{
    struct dashapi_route rt;
    assert_int_equal(dashapi_route_parse(uri, &rt), ERR_OK);
    enum dashapi_kind k = rt.kind;
    dashapi_route_cleanup(&rt);
    return k;
}

static void routes(void **state)
{
    (void)state;
    struct dashapi_route rt;
    assert_int_equal(dashapi_route_parse("/", &rt), ERR_OK);
    assert_int_equal(rt.kind, DASHAPI_ASSET);
    assert_string_equal(rt.asset, "index.html");
    assert_int_equal(dashapi_route_parse("/dashboard/app.js?v=1", &rt), ERR_OK);
    assert_string_equal(rt.asset, "app.js");
    assert_int_equal(dashapi_route_parse("/dashboard/..%2f..%2fetc", &rt), ERR_OK);
    assert_int_equal(rt.kind, DASHAPI_ASSET);
    assert_string_equal(rt.asset, ""); /* answered 404 */
    assert_int_equal(dashapi_route_parse("/dashboard/.env", &rt), ERR_OK);
    assert_string_equal(rt.asset, "");
    assert_int_equal(kind_of("/emulator/session"), DASHAPI_SESSION);
    assert_int_equal(kind_of("/emulator/stats?x"), DASHAPI_STATS);
    assert_int_equal(dashapi_route_parse("/emulator/events?a=b&since=42", &rt), ERR_OK);
    assert_int_equal(rt.kind, DASHAPI_EVENTS);
    assert_true(rt.has_since);
    assert_int_equal(rt.since, 42);
    assert_int_equal(dashapi_route_parse("/emulator/events?since=4x", &rt), ERR_OK);
    assert_false(rt.has_since);
    /* Not the dashboard's: the REST routes go on. */
    assert_int_equal(kind_of("/emulator/telemetry"), DASHAPI_NONE);
    assert_int_equal(kind_of("/emulator/faults"), DASHAPI_NONE);
    assert_int_equal(kind_of("/devices/d1"), DASHAPI_NONE);
    assert_int_equal(kind_of("/health"), DASHAPI_NONE);
    assert_int_equal(kind_of("/emulator/sessions"), DASHAPI_NONE);
    assert_int_equal(kind_of("/emulator/devices/d1"), DASHAPI_NONE);
    assert_int_equal(kind_of("/emulator/devices/d1/messages/x"), DASHAPI_NONE);
    assert_int_equal(kind_of("/emulator/devices/d1/modules/m/messages/x/y"), DASHAPI_NONE);
    assert_int_equal(kind_of(NULL), DASHAPI_NONE);
}

static void c2d_routes(void **state)
{
    (void)state;
    struct dashapi_route rt;
    assert_int_equal(dashapi_route_parse("/emulator/devices/d%231/messages", &rt), ERR_OK);
    assert_int_equal(rt.kind, DASHAPI_C2D);
    assert_string_equal(rt.device_id, "d#1");
    assert_null(rt.module_id);
    assert_false(rt.malformed);
    dashapi_route_cleanup(&rt);
    assert_int_equal(dashapi_route_parse("/emulator/devices/d1/modules/m%2F1/messages", &rt), ERR_OK);
    assert_string_equal(rt.device_id, "d1");
    assert_string_equal(rt.module_id, "m/1");
    dashapi_route_cleanup(&rt);
    assert_int_equal(dashapi_route_parse("/emulator/devices/d%zz/messages", &rt), ERR_OK);
    assert_int_equal(rt.kind, DASHAPI_C2D);
    assert_true(rt.malformed);
    dashapi_route_cleanup(&rt);
    assert_int_equal(dashapi_route_parse("/emulator/devices//messages", &rt), ERR_OK);
    assert_true(rt.malformed);
    dashapi_route_cleanup(&rt);
    assert_string_equal(dashapi_allow(DASHAPI_C2D), "POST");
    assert_string_equal(dashapi_allow(DASHAPI_STATS), "GET");
}

static int parse(const char *json, struct c2d_message *m, json_t **holder, char *why)
{
    return dashapi_c2d_parse(json, strlen(json), m, holder, why, 256);
}

static void c2d_body(void **state)
{
    (void)state;
    struct c2d_message m;
    json_t *holder;
    char why[256];
    assert_int_equal(parse("{\"body\":\"hi\",\"properties\":{\"a\":\"1\",\"b\":\"\"},\"messageId\":\"m1\","
                           "\"correlationId\":\"c\",\"contentType\":\"text/plain\",\"ack\":\"full\","
                           "\"expiryTimeUtc\":1700000000000}",
                           &m, &holder, why),
                     ERR_OK);
    assert_int_equal(m.body_len, 2);
    assert_memory_equal(m.body, "hi", 2);
    assert_int_equal(m.n_props, 2);
    assert_string_equal(m.props[0].key, "a");
    assert_string_equal(m.props[1].value, "");
    assert_string_equal(m.message_id, "m1");
    assert_string_equal(m.correlation_id, "c");
    assert_string_equal(m.content_type, "text/plain");
    assert_string_equal(m.ack, "full");
    assert_int_equal(m.expiry_ms, 1700000000000LL);
    json_decref(holder);
    /* Only the body is required; a message id is made up. */
    assert_int_equal(parse("{\"body\":\"\"}", &m, &holder, why), ERR_OK);
    assert_int_equal(m.body_len, 0);
    assert_true(strncmp(m.message_id, "dashboard-", 10) == 0);
    json_decref(holder);
    const char *bad[] = {
        "", "null", "[]", "{}", "{\"body\":1}", "{\"body\":\"x\",\"body\":\"y\"}",
        "{\"body\":\"x\",\"properties\":[]}", "{\"body\":\"x\",\"properties\":{\"a\":1}}",
        "{\"body\":\"x\",\"properties\":{\"\":\"1\"}}", "{\"body\":\"x\",\"properties\":{\"$.mid\":\"1\"}}",
        "{\"body\":\"x\",\"properties\":{\"IoTHub-ack\":\"1\"}}", "{\"body\":\"x\",\"ack\":\"maybe\"}",
        "{\"body\":\"x\",\"messageId\":5}", "{\"body\":\"x\",\"expiryTimeUtc\":\"soon\"}",
        "{\"body\":\"x\",\"expiryTimeUtc\":-1}", "{\"body\":\"x\",\"properties\":{\"a\":\"b\\u0000c\"}}",
        "{\"body\":\"x\",\"properties\":{\"a\\u0000b\":\"1\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(parse(bad[i], &m, &holder, why), ERR_INVALID);
        assert_null(holder);
        assert_true(why[0] != '\0');
    }
    /* Too many properties, a too long id, a too large body. */
    char big[C2D_MAX_BODY + 64];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"body\":\"x\",\"properties\":{");
    for (int i = 0; i <= C2D_MAX_PROPS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "}}");
    assert_int_equal(parse(big, &m, &holder, why), ERR_INVALID);
    n = (size_t)snprintf(big, sizeof big, "{\"body\":\"x\",\"messageId\":\"");
    memset(big + n, 'i', C2D_MAX_ID);
    snprintf(big + n + C2D_MAX_ID, sizeof big - n - C2D_MAX_ID, "\"}");
    assert_int_equal(parse(big, &m, &holder, why), ERR_INVALID);
    n = (size_t)snprintf(big, sizeof big, "{\"body\":\"");
    memset(big + n, 'b', C2D_MAX_BODY + 1);
    snprintf(big + n + C2D_MAX_BODY + 1, sizeof big - n - C2D_MAX_BODY - 1, "\"}");
    assert_int_equal(parse(big, &m, &holder, why), ERR_TOO_BIG);
    assert_null(holder);
}

static void sse_records(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out, 1 << 20);
    struct events_event ev = {.id = 7, .at_ms = 1700000000123, .kind = EVENTS_METHOD, .status = 200, .latency_ms = 12};
    snprintf(ev.identity, sizeof ev.identity, "dev\n1"); /* a newline must not break the record */
    snprintf(ev.what, sizeof ev.what, "DeviceMethod");
    snprintf(ev.detail, sizeof ev.detail, "answered");
    assert_int_equal(dashapi_sse_event(&out, &ev), ERR_OK);
    assert_int_equal(buf_append_byte(&out, 0), ERR_OK);
    assert_string_equal((char *)out.data,
                        "id: 7\nevent: hub\ndata: {\"id\":7,\"type\":\"method\",\"at\":\"2023-11-14T22:13:20.123Z\","
                        "\"identity\":\"dev\\n1\",\"what\":\"DeviceMethod\",\"detail\":\"answered\",\"status\":200,"
                        "\"latencyMs\":12}\n\n");
    buf_cleanup(&out);

    buf_init(&out, 1 << 20);
    struct eventlog_prop props[] = {{"k", "v"}, {"flag", NULL}};
    uint8_t body[DASHAPI_TELEMETRY_PREVIEW + 10];
    memset(body, 'a', sizeof body);
    struct eventlog_event tev = {.partition = 1, .seq = 5, .enqueued_ms = 1700000000000, .device_id = "d1",
                                 .message_id = "m", .props = props, .n_props = 2, .body = body, .len = 3};
    assert_int_equal(dashapi_sse_telemetry(&out, &tev), ERR_OK);
    assert_int_equal(buf_append_byte(&out, 0), ERR_OK);
    assert_non_null(strstr((char *)out.data, "event: telemetry\ndata: {\"deviceId\":\"d1\""));
    assert_non_null(strstr((char *)out.data, "\"properties\":{\"k\":\"v\",\"flag\":null},\"body\":\"aaa\"}"));
    buf_cleanup(&out);
    /* Not UTF-8: base64. Longer than the preview: cut, and said so. */
    buf_init(&out, 1 << 20);
    body[0] = 0xff;
    tev.len = 3;
    assert_int_equal(dashapi_sse_telemetry(&out, &tev), ERR_OK);
    assert_int_equal(buf_append_byte(&out, 0), ERR_OK);
    assert_non_null(strstr((char *)out.data, "\"bodyBase64\":\"/2Fh\""));
    buf_cleanup(&out);
    buf_init(&out, 1 << 20);
    body[0] = 'a';
    tev.len = sizeof body;
    assert_int_equal(dashapi_sse_telemetry(&out, &tev), ERR_OK);
    assert_int_equal(buf_append_byte(&out, 0), ERR_OK);
    assert_non_null(strstr((char *)out.data, "\"truncated\":true"));
    assert_null(strstr((char *)out.data, "bodyBase64"));
    buf_cleanup(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes),
        cmocka_unit_test(c2d_routes),
        cmocka_unit_test(c2d_body),
        cmocka_unit_test(sse_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
