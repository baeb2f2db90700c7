/* test_restapi.c -- unit tests for emulator/restapi: routes (percent-decoding, query), direct-method body
 * validation (code + message), the two error envelopes byte for byte against iothub-protocol.md §4.3,
 * TimeSpan text, the method-result body and the JSON validator (vectors on guard pages, and differentially
 * against jansson). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "err.h"
#include "guard_page.h"
#include "restapi.h"
#include "mjson.h"

/* ---- routes ---- */

static void route_is(const char *uri, enum restapi_route_kind kind, const char *dev, const char *mod)
{
    struct restapi_route r;
    assert_int_equal(restapi_route_parse(uri, &r), ERR_OK);
    assert_int_equal(r.kind, kind);
    if (dev)
        assert_string_equal(r.device_id, dev);
    else
        assert_null(r.device_id);
    if (mod)
        assert_string_equal(r.module_id, mod);
    else
        assert_null(r.module_id);
    restapi_route_cleanup(&r);
}

static void routes_of_the_hub(void **state)
{
    route_is("/twins/device1/methods?api-version=2021-04-12", RESTAPI_ROUTE_METHOD, "device1", NULL);
    route_is("/twins/device1/modules/mod1/methods?api-version=2020-09-30", RESTAPI_ROUTE_METHOD, "device1", "mod1");
    route_is("/devices", RESTAPI_ROUTE_DEVICES, NULL, NULL);
    route_is("/devices/?api-version=2021-04-12", RESTAPI_ROUTE_DEVICES, NULL, NULL);
    route_is("/devices/d1?api-version=1", RESTAPI_ROUTE_DEVICE, "d1", NULL);
    route_is("/devices/d1/modules", RESTAPI_ROUTE_MODULES, "d1", NULL);
    route_is("/devices/d1/modules/", RESTAPI_ROUTE_MODULES, "d1", NULL);
    route_is("/devices/d1/modules/m1", RESTAPI_ROUTE_MODULE, "d1", "m1");
    route_is("/health", RESTAPI_ROUTE_HEALTH, NULL, NULL);
    route_is("/emulator/ca.pem", RESTAPI_ROUTE_CA_PEM, NULL, NULL);
    route_is("/devices/d1/commands?api-version=1", RESTAPI_ROUTE_C2D_PURGE, "d1", NULL);
    route_is("/devices/d1/messages/events?api-version=1", RESTAPI_ROUTE_D2C_EVENTS, "d1", NULL);
    route_is("/devices/d1/messages/deviceBound?api-version=1", RESTAPI_ROUTE_C2D_RECEIVE, "d1", NULL);
    route_is("/devices/d1/messages/devicebound", RESTAPI_ROUTE_C2D_RECEIVE, "d1", NULL);
    route_is("/devices/d1/messages/deviceBound/", RESTAPI_ROUTE_NONE, NULL, NULL);
    route_is("/devices/d1/messages/deviceBound/7/other", RESTAPI_ROUTE_NONE, NULL, NULL);
    route_is("/twins/d1?api-version=1", RESTAPI_ROUTE_TWIN, "d1", NULL);
    route_is("/twins/d%231/modules/m1", RESTAPI_ROUTE_TWIN, "d#1", "m1");
    /* /devices/query is the query route; rest.c serves its other verbs as the device named "query". */
    route_is("/devices/query?api-version=1", RESTAPI_ROUTE_QUERY, "query", NULL);
    route_is("/devices/query2", RESTAPI_ROUTE_DEVICE, "query2", NULL);
    route_is("/statistics/devices", RESTAPI_ROUTE_STATS_DEVICES, NULL, NULL);
    route_is("/statistics/service", RESTAPI_ROUTE_STATS_SERVICE, NULL, NULL);
}


/* The lock token of the C2D settle routes: decoded, quotes removed; ?reject noticed. */
static void c2d_lock_routes(void **state)
{
    struct restapi_route r;
    assert_int_equal(restapi_route_parse("/devices/d1/messages/deviceBound/%2242%22?api-version=1&reject", &r),
                     ERR_OK);
    assert_int_equal(r.kind, RESTAPI_ROUTE_C2D_LOCK);
    assert_string_equal(r.lock_token, "42");
    assert_true(r.reject);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/devices/d1/messages/deviceBound/42/abandon?api-version=1", &r), ERR_OK);
    assert_int_equal(r.kind, RESTAPI_ROUTE_C2D_ABANDON);
    assert_string_equal(r.lock_token, "42");
    assert_false(r.reject);
    restapi_route_cleanup(&r);
    assert_true(restapi_route_allows(RESTAPI_ROUTE_C2D_LOCK, "DELETE"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_C2D_LOCK, "GET"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_C2D_ABANDON, "POST"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_C2D_RECEIVE, "GET"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_D2C_EVENTS, "POST"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_C2D_PURGE, "DELETE"));
}

static void query_paging_headers(void **state)
{
    int n = 0;
    assert_int_equal(restapi_page_size(NULL, &n), ERR_OK);
    assert_int_equal(n, RESTAPI_QUERY_PAGE_DEFAULT);
    assert_int_equal(restapi_page_size("7", &n), ERR_OK);
    assert_int_equal(n, 7);
    assert_int_equal(restapi_page_size("5000", &n), ERR_OK);
    assert_int_equal(n, RESTAPI_QUERY_PAGE_MAX);
    const char *bad[] = {"", "0", "-1", "1x", " 1", "9999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(restapi_page_size(bad[i], &n), ERR_INVALID);
    size_t off = 9;
    assert_int_equal(restapi_continuation(NULL, &off), ERR_OK);
    assert_int_equal(off, 0);
    assert_int_equal(restapi_continuation("", &off), ERR_OK);
    assert_int_equal(off, 0);
    assert_int_equal(restapi_continuation("250", &off), ERR_OK);
    assert_int_equal(off, 250);
    assert_int_equal(restapi_continuation("abc", &off), ERR_INVALID);
}

static void routes_decode_ids(void **state)
{
    /* Node's encodeURIComponent: '#' %23, '?' %3F, '$' %24, '+' kept as '+' (it is an id character) */
    route_is("/twins/d%231%3F%24/modules/m%2a+1/methods?api-version=x", RESTAPI_ROUTE_METHOD, "d#1?$", "m*+1");
    route_is("/devices/a%25b", RESTAPI_ROUTE_DEVICE, "a%b", NULL);
    route_is("/devices/caf%C3%A9", RESTAPI_ROUTE_DEVICE, "caf\xc3\xa9", NULL);
    struct restapi_route r;
    assert_int_equal(restapi_route_parse("/devices/d%zz", &r), ERR_MALFORMED);
    assert_int_equal(r.kind, RESTAPI_ROUTE_NONE);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/devices/d%00", &r), ERR_MALFORMED);
    restapi_route_cleanup(&r);
}

static void unknown_routes(void **state)
{
    const char *uris[] = {"",
                          "/",
                          "/foo",
                          "twins/d/methods",
                          "/twins//methods",
                          "/twins/d/methods/",
                          "/twins/d/modules//methods",
                          "/twins/d/x",
                          "/twins//modules/m",
                          "/twins/d/modules/",
                          "/statistics",
                          "/statistics/x",
                          "/devices//modules",
                          "/devices/d1/x",
                          "/devices/d1/modules/m1/extra",
                          "/emulator/ca.pem/x",
                          "/a/b/c/d/e/f/g/h",
                          "/HEALTH"};
    for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++)
        route_is(uris[i], RESTAPI_ROUTE_NONE, NULL, NULL);
    struct restapi_route r;
    assert_int_equal(restapi_route_parse(NULL, &r), ERR_OK);
    assert_int_equal(r.kind, RESTAPI_ROUTE_NONE);
    restapi_route_cleanup(&r);
}

static void query_api_version_and_top(void **state)
{
    struct restapi_route r;
    assert_int_equal(restapi_route_parse("/twins/d/methods", &r), ERR_OK);
    assert_false(r.has_api_version);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/twins/d/methods?api-version=", &r), ERR_OK);
    assert_false(r.has_api_version);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/twins/d/methods?x=1&api-version=2021-04-12&y", &r), ERR_OK);
    assert_true(r.has_api_version);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/devices/?top=5&api-version=2020-09-30", &r), ERR_OK);
    assert_int_equal(r.kind, RESTAPI_ROUTE_DEVICES);
    assert_int_equal(r.top, 5);
    assert_false(r.top_invalid);
    assert_true(r.has_api_version);
    restapi_route_cleanup(&r);
    assert_int_equal(restapi_route_parse("/devices/", &r), ERR_OK);
    assert_int_equal(r.top, RESTAPI_TOP_DEFAULT);
    restapi_route_cleanup(&r);
    const char *bad[] = {"/devices?top=0", "/devices?top=1001", "/devices?top=abc", "/devices?top=", "/devices?top=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(restapi_route_parse(bad[i], &r), ERR_OK);
        assert_true(r.top_invalid);
        restapi_route_cleanup(&r);
    }
    assert_int_equal(restapi_route_parse("/devices?top=1000", &r), ERR_OK);
    assert_int_equal(r.top, 1000);
    assert_false(r.top_invalid);
    restapi_route_cleanup(&r);
}

static void allowed_methods(void **state)
{
    assert_true(restapi_route_allows(RESTAPI_ROUTE_METHOD, "POST"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_METHOD, "GET"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICE, "GET"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICE, "PUT"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICE, "DELETE"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_DEVICE, "POST"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICES, "GET"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICES, "POST"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_DEVICES, "PUT"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_DEVICE, "DEL"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_DEVICES, "GET"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_DEVICES, "PUT"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_NONE, "GET"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_HEALTH, ""));
    assert_string_equal(restapi_route_allow(RESTAPI_ROUTE_MODULE), "GET, PUT, DELETE");
    assert_string_equal(restapi_route_allow(RESTAPI_ROUTE_METHOD), "POST");
    assert_string_equal(restapi_route_allow(RESTAPI_ROUTE_TWIN), "GET, PATCH, PUT");
    assert_true(restapi_route_allows(RESTAPI_ROUTE_QUERY, "POST"));
    assert_false(restapi_route_allows(RESTAPI_ROUTE_TWIN, "DELETE"));
    assert_true(restapi_route_allows(RESTAPI_ROUTE_STATS_DEVICES, "GET"));
}

/* ---- method bodies ---- */

/* Both paths (the one-pass scanner and the jansson tree) give the same answer for body. */
static void both_paths_agree(const char *body, size_t len)
{
    struct restapi_method_call a, b;
    struct restapi_error ea, eb;
    memset(&ea, 0, sizeof ea);
    memset(&eb, 0, sizeof eb);
    int ra = restapi_method_parse(body, len, &a, &ea);
    assert_int_equal(ra, restapi_method_parse_tree(body, len, &b, &eb));
    if (ra == ERR_INVALID) {
        assert_int_equal(ea.code, eb.code);
        assert_string_equal(ea.message, eb.message);
    } else {
        assert_string_equal(a.method_name, b.method_name);
        assert_int_equal(a.payload_len, b.payload_len);
        if (a.payload_len)
            assert_memory_equal(a.payload, b.payload, a.payload_len);
        assert_int_equal(a.response_timeout_s, b.response_timeout_s);
        assert_int_equal(a.connect_timeout_s, b.connect_timeout_s);
    }
    restapi_method_cleanup(&a);
    restapi_method_cleanup(&b);
}

static void body_ok(const char *body, const char *name, const char *payload, int rto, int cto)
{
    struct restapi_method_call c;
    struct restapi_error e;
    both_paths_agree(body, strlen(body));
    assert_int_equal(restapi_method_parse(body, strlen(body), &c, &e), ERR_OK);
    assert_string_equal(c.method_name, name);
    if (payload) {
        assert_non_null(c.payload);
        assert_int_equal(c.payload_len, strlen(payload));
        assert_memory_equal(c.payload, payload, c.payload_len);
    } else {
        assert_null(c.payload);
        assert_int_equal(c.payload_len, 0);
    }
    assert_int_equal(c.response_timeout_s, rto);
    assert_int_equal(c.connect_timeout_s, cto);
    restapi_method_cleanup(&c);
}

static void body_err(const char *body, size_t len, int code, const char *message)
{
    struct restapi_method_call c;
    struct restapi_error e;
    both_paths_agree(body, len);
    assert_int_equal(restapi_method_parse(body, len, &c, &e), ERR_INVALID);
    assert_int_equal(e.code, code);
    assert_int_equal(e.envelope, RESTAPI_ENVELOPE_B);
    if (message)
        assert_string_equal(e.message, message);
    assert_null(c.method_name);
    assert_null(c.payload);
}

static void method_bodies_accepted(void **state)
{
    body_ok("{\"methodName\":\"DeviceMethod\",\"payload\":{\"method_number\":\"42\"},\"responseTimeoutInSeconds\":30,"
            "\"connectTimeoutInSeconds\":0}",
            "DeviceMethod", "{\"method_number\":\"42\"}", 30, 0);
    body_ok("{\"methodName\":\"m\"}", "m", NULL, 30, 0);
    body_ok("{\"methodName\":\"m\",\"payload\":null,\"responseTimeoutInSeconds\":null}", "m", NULL, 30, 0);
    body_ok("{\"methodName\":\"m\",\"payload\":\"str\"}", "m", "\"str\"", 30, 0);
    body_ok("{\"methodName\":\"m\",\"payload\": [ 1, 2 , {\"b\" : 0.1, \"a\": true}],"
            "\"responseTimeoutInSeconds\":5,\"connectTimeoutInSeconds\":300}",
            "m", "[1,2,{\"b\":0.1,\"a\":true}]", 5, 300);
    body_ok("{\"methodName\":\"m\",\"payload\":1.5e300,\"responseTimeoutInSeconds\":300.0,\"extra\":1}", "m",
            "1.5e300", 300, 0);
    body_ok("{\"methodName\":\"m\",\"payload\":0.30000000000000004}", "m", "0.30000000000000004", 30, 0);
    body_ok("{\"methodName\":\"a-b_c.d~!#%&'*+^`|\",\"payload\":false}", "a-b_c.d~!#%&'*+^`|", "false", 30, 0);
}

/* The one-pass scanner: which bodies it takes itself (the rest go to the jansson tree), and that both paths agree
 * on the edge cases: depth, duplicate keys, \u escapes, surrogates, numbers, whitespace, non-UTF-8. */
static bool scanned(const char *body)
{
    struct mjson_method m;
    return mjson_method_scan((const uint8_t *)body, strlen(body), &m);
}

static void scanner_takes_plain_bodies(void **state)
{
    (void)state;
    assert_true(scanned("{\"methodName\":\"m\",\"payload\":{\"a\":[1,-2,0,true,false,null,{},[]],\"b\":\"x\\\"\\n\"}}"));
    assert_true(scanned(" {\"methodName\" : \"m\" , \"payload\" : [ 1 , 2 ] , \"other\":[\"\"] }\r\n"));
    assert_true(scanned("{\"methodName\":\"m\",\"x\":1,\"x\":2}"));         /* duplicates of an unknown member */
    assert_true(scanned("{\"methodName\":\"m\",\"payload\":{\"a\":{\"a\":1},\"b\":{\"a\":2}}}")); /* per object */
    assert_true(scanned("{\"methodName\":\"m\",\"payload\":\"\xc3\xa9\xf0\x9f\x98\x80\x7f\"}"));
    assert_true(scanned("{\"methodName\":\"m\",\"payload\":-123456789012345678}"));
    /* Not sure: the tree decides. */
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":{\"a\":1,\"a\":2}}"));
    assert_false(scanned("{\"methodName\":\"m\",\"methodName\":\"n\"}"));
    assert_false(scanned("{\"method\\u004eame\":\"m\"}"));
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":\"\\u00e9\"}"));
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":\"\\/\"}"));
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":0.5}"));
    assert_false(scanned("{\"methodName\":\"m\",\"other\":1.5e300}")); /* reals anywhere: jansson's range */
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":-0}"));
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":1234567890123456789}"));
    assert_false(scanned("{\"methodName\":\"m\",\"payload\":\"\xc3\"}"));
    assert_false(scanned("{\"methodName\":\"m\"} x"));
    assert_false(scanned("[]"));
    assert_false(scanned(""));
}

/* The word- and vector-wide run finder against the byte rule, each stop byte at every offset of 200 (the
 * 64-, 16-, 8- and 1-byte steps all end somewhere in it). */
static void scanner_plain_runs(void **state)
{
    (void)state;
    const uint8_t stops[] = {'"', '\\', 0x00, 0x1f, 0x80, 0xc3, 0xff};
    uint8_t buf[200];
    memset(buf, 'a', sizeof buf);
    buf[5] = 0x7f; /* DEL goes as it is */
    assert_int_equal(mjson_plain_run(buf, sizeof buf), sizeof buf);
    for (size_t s = 0; s < sizeof stops; s++)
        for (size_t at = 0; at < sizeof buf; at++) {
            uint8_t keep = buf[at];
            buf[at] = stops[s];
            assert_int_equal(mjson_plain_run(buf, sizeof buf), at);
            for (size_t len = 0; len <= at; len++)
                assert_int_equal(mjson_plain_run(buf, len), len);
            buf[at] = keep;
        }
}

static void scanner_payload_without_copy(void **state)
{
    (void)state;
    const char *body = "{\"methodName\":\"m\",\"payload\":{\"a\":[1,2]}}";
    struct restapi_method_call c;
    struct restapi_error e;
    assert_int_equal(restapi_method_parse(body, strlen(body), &c, &e), ERR_OK);
    assert_ptr_equal(c.payload, strstr(body, "{\"a\""));
    assert_null(c.payload_buf);
    assert_int_equal(c.payload_len, strlen("{\"a\":[1,2]}"));
    restapi_method_cleanup(&c);
    body_ok("{\"methodName\":\"m\",\"payload\": { \"a b\" : [ 1 ,\t2 ]\n, \"c\": \" \\\" \" } }", "m",
            "{\"a b\":[1,2],\"c\":\" \\\" \"}", 30, 0);
}

static void scanner_edge_cases(void **state)
{
    (void)state;
    /* duplicate keys: jansson keeps the last value at the first key's place */
    body_ok("{\"methodName\":\"m\",\"payload\":{\"a\":1,\"b\":2,\"a\":3}}", "m", "{\"a\":3,\"b\":2}", 30, 0);
    body_ok("{\"methodName\":\"x\",\"payload\":1,\"methodName\":\"m\",\"payload\":2}", "m", "2", 30, 0);
    /* \u escapes and surrogates: dumped as UTF-8; \/ as / */
    body_ok("{\"methodName\":\"m\",\"payload\":\"caf\\u00e9 \\ud83d\\ude00 \\/ \\u0001\"}", "m",
            "\"caf\xc3\xa9 \xf0\x9f\x98\x80 / \\u0001\"", 30, 0);
    body_ok("{\"method\\u004eame\":\"m\"}", "m", NULL, 30, 0);
    const char *lone = "{\"methodName\":\"m\",\"payload\":\"\\udc00\"}";
    body_err(lone, strlen(lone), RESTAPI_FORMAT_ERROR, NULL);
    const char *unpaired = "{\"methodName\":\"m\",\"payload\":\"\\ud83d x\"}";
    body_err(unpaired, strlen(unpaired), RESTAPI_FORMAT_ERROR, NULL);
    /* numbers */
    body_ok("{\"methodName\":\"m\",\"payload\":[-0,1E2,9223372036854775807,-9223372036854775808]}", "m",
            "[0,100.0,9223372036854775807,-9223372036854775808]", 30, 0);
    const char *big = "{\"methodName\":\"m\",\"payload\":9223372036854775808}";
    body_err(big, strlen(big), RESTAPI_FORMAT_ERROR, "The request body is not valid JSON.");
    const char *lead = "{\"methodName\":\"m\",\"payload\":01}";
    body_err(lead, strlen(lead), RESTAPI_FORMAT_ERROR, NULL);
    body_ok("{\"methodName\":\"m\",\"responseTimeoutInSeconds\":5.0,\"connectTimeoutInSeconds\":-0}", "m", NULL, 5, 0);
    /* whitespace: only the four of RFC 8259 */
    body_ok("\t\r\n {\"methodName\":\"m\",\"payload\":[ ]} \n", "m", "[]", 30, 0);
    const char *ff = "{\"methodName\":\"m\",\"payload\":\f1}";
    body_err(ff, strlen(ff), RESTAPI_FORMAT_ERROR, NULL);
    /* non-UTF-8, raw control bytes and NUL */
    const char *bad[] = {"\xc3\x28", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\x01", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"methodName\":\"m\",\"payload\":\"%s\"}", bad[i]);
        body_err(body, strlen(body), RESTAPI_FORMAT_ERROR, NULL);
    }
    const char nul[] = "{\"methodName\":\"m\",\"payload\":\"a\0b\"}";
    body_err(nul, sizeof nul - 1, RESTAPI_FORMAT_ERROR, NULL);
    const char nul2[] = "{\"methodName\":\"m\",\"payload\":1\0}";
    both_paths_agree(nul2, sizeof nul2 - 1);
}

/* [[[...1...]]] at depth n inside the payload. */
static void depth_body(size_t n, bool ok)
{
    size_t len = 64 + 2 * n;
    char *b = malloc(len);
    assert_non_null(b);
    size_t off = (size_t)snprintf(b, len, "{\"methodName\":\"m\",\"payload\":");
    memset(b + off, '[', n);
    b[off + n] = '1';
    memset(b + off + n + 1, ']', n);
    snprintf(b + off + 2 * n + 1, 3, "}");
    both_paths_agree(b, strlen(b));
    struct restapi_method_call c;
    struct restapi_error e;
    assert_int_equal(restapi_method_parse(b, strlen(b), &c, &e), ok ? ERR_OK : ERR_INVALID);
    if (ok)
        assert_int_equal(c.payload_len, 2 * n + 1);
    restapi_method_cleanup(&c);
    free(b);
}

static void scanner_depth(void **state)
{
    (void)state;
    depth_body(MJSON_MAX_DEPTH, true);     /* the scanner's own */
    depth_body(MJSON_MAX_DEPTH + 1, true); /* deeper: the tree path */
    depth_body(2046, true);                /* jansson refuses from 2048 levels (the outer object counts) */
    depth_body(2047, false);
}

static void method_timeouts_rejected(void **state)
{
    const char *rto = "responseTimeoutInSeconds must be within [5; 300].";
    const char *cto = "connectTimeoutInSeconds must be within [0; 300].";
    const char *b1 = "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":4}";
    const char *b2 = "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":301}";
    const char *b3 = "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":3000}";
    const char *b4 = "{\"methodName\":\"m\",\"connectTimeoutInSeconds\":-1}";
    const char *b5 = "{\"methodName\":\"m\",\"connectTimeoutInSeconds\":301}";
    const char *b6 = "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":\"30\"}";
    const char *b7 = "{\"methodName\":\"m\",\"connectTimeoutInSeconds\":1.5}";
    const char *b8 = "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":1e20}";
    body_err(b1, strlen(b1), RESTAPI_ARGUMENT_INVALID, rto);
    body_err(b2, strlen(b2), RESTAPI_ARGUMENT_INVALID, rto);
    body_err(b3, strlen(b3), RESTAPI_ARGUMENT_INVALID, rto);
    body_err(b4, strlen(b4), RESTAPI_ARGUMENT_INVALID, cto);
    body_err(b5, strlen(b5), RESTAPI_ARGUMENT_INVALID, cto);
    body_err(b6, strlen(b6), RESTAPI_ARGUMENT_INVALID, "responseTimeoutInSeconds must be an integer.");
    body_err(b7, strlen(b7), RESTAPI_ARGUMENT_INVALID, "connectTimeoutInSeconds must be an integer.");
    body_err(b8, strlen(b8), RESTAPI_ARGUMENT_INVALID, rto);
}

static void method_names_rejected(void **state)
{
    const char *none = "{\"payload\":1}";
    const char *null = "{\"methodName\":null}";
    body_err(none, strlen(none), RESTAPI_ARGUMENT_INVALID, "methodName is required.");
    body_err(null, strlen(null), RESTAPI_ARGUMENT_INVALID, "methodName is required.");
    const char *bad[] = {"\"\"", "42", "\"a b\"", "\"a\\tb\"", "\"caf\\u00e9\"", "\"a\\u0000b\"", "\"a\\u007fb\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"methodName\":%s}", bad[i]);
        body_err(body, strlen(body), RESTAPI_ARGUMENT_INVALID, NULL);
    }
    const char *excluded = "$()<>@,;:\\\"/[]?={}";
    for (const char *p = excluded; *p; p++) {
        char name[4] = {'a', *p, 'b', 0};
        assert_false(restapi_method_name_is_valid(name));
    }
    assert_true(restapi_method_name_is_valid("DeviceMethod"));
    assert_false(restapi_method_name_is_valid(""));
    assert_false(restapi_method_name_is_valid(NULL));
}

static void method_bodies_unparsable(void **state)
{
    const char *msg = "The request body is not valid JSON.";
    body_err("", 0, RESTAPI_FORMAT_ERROR, msg);
    body_err(NULL, 0, RESTAPI_FORMAT_ERROR, msg);
    body_err("{\"methodName\":", 14, RESTAPI_FORMAT_ERROR, msg);
    body_err("{\"methodName\":\"m\"} x", 21, RESTAPI_FORMAT_ERROR, msg);
    body_err("{\"methodName\":\"m\",\"payload\":123456789012345678901234}", 53, RESTAPI_FORMAT_ERROR, msg);
    body_err("[1]", 3, RESTAPI_FORMAT_ERROR, "The request body must be a JSON object.");
    body_err("\"x\"", 3, RESTAPI_FORMAT_ERROR, "The request body must be a JSON object.");
    /* a NUL inside the buffer is not JSON */
    body_err("{\"methodName\":\"m\"}\0", 19, RESTAPI_FORMAT_ERROR, msg);
}

/* {"methodName":"m","payload":"xxx..."} whose compact payload is payload_len bytes. */
static char *body_with_payload(size_t payload_len)
{
    size_t n = payload_len - 2;
    char *b = malloc(n + 64);
    assert_non_null(b);
    size_t off = (size_t)snprintf(b, 64, "{\"methodName\":\"m\",\"payload\":\"");
    memset(b + off, 'x', n);
    snprintf(b + off + n, 8, "\"}");
    return b;
}

static void payload_size_limit(void **state)
{
    char *ok = body_with_payload(RESTAPI_MAX_PAYLOAD);
    struct restapi_method_call c;
    struct restapi_error e;
    assert_int_equal(restapi_method_parse(ok, strlen(ok), &c, &e), ERR_OK);
    assert_int_equal(c.payload_len, RESTAPI_MAX_PAYLOAD);
    restapi_method_cleanup(&c);
    free(ok);
    char *big = body_with_payload(RESTAPI_MAX_PAYLOAD + 1);
    body_err(big, strlen(big), RESTAPI_MESSAGE_TOO_LARGE, NULL);
    free(big);
}

/* ---- envelopes ---- */

static struct timespec at(int y, int mo, int d, int h, int mi, int s, long nsec)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    struct timespec ts = {.tv_sec = timegm(&tm), .tv_nsec = nsec};
    return ts;
}

static void render_is(const struct restapi_error *e, const char *tracking, struct timespec when, const char *want)
{
    char *text = restapi_error_render(e, tracking, &when);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
}

static void envelope_b_examples(void **state)
{
    struct restapi_error e;
    restapi_error_set(&e, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_ENVELOPE_B, "Timed out waiting for device to connect.");
    e.info = RESTAPI_INFO_TIMEOUT;
    e.timeout_s = 0;
    render_is(&e, "fe40f545", at(2019, 10, 10, 1, 48, 31, 92412900),
              "{\"Message\":\"{\\\"errorCode\\\":404103,\\\"trackingId\\\":\\\"fe40f545-G:0-TimeStamp:10/10/2019 "
              "01:48:31\\\",\\\"message\\\":\\\"Timed out waiting for device to connect.\\\",\\\"info\\\":{"
              "\\\"timeout\\\":\\\"00:00:00\\\"},\\\"timestampUtc\\\":\\\"2019-10-10T01:48:31.0924129Z\\\"}\","
              "\"ExceptionMessage\":\"\"}");
    restapi_error_set(&e, RESTAPI_GATEWAY_TIMEOUT, RESTAPI_ENVELOPE_B, "Timed out waiting for the response from device.");
    e.info = RESTAPI_INFO_EMPTY;
    render_is(&e, "40a7dd98", at(2019, 12, 3, 15, 0, 9, 8252300),
              "{\"Message\":\"{\\\"errorCode\\\":504101,\\\"trackingId\\\":\\\"40a7dd98-G:0-TimeStamp:12/03/2019 "
              "15:00:09\\\",\\\"message\\\":\\\"Timed out waiting for the response from device.\\\",\\\"info\\\":{},"
              "\\\"timestampUtc\\\":\\\"2019-12-03T15:00:09.0082523Z\\\"}\",\"ExceptionMessage\":\"\"}");
    restapi_error_set(&e, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_B, "%s must be within [%d; %d].",
                      "responseTimeoutInSeconds", 5, 300);
    render_is(&e, "ca2359", at(2018, 12, 4, 12, 33, 53, 209148900),
              "{\"Message\":\"{\\\"errorCode\\\":400004,\\\"trackingId\\\":\\\"ca2359-G:0-TimeStamp:12/04/2018 "
              "12:33:53\\\",\\\"message\\\":\\\"responseTimeoutInSeconds must be within [5; 300].\\\","
              "\\\"timestampUtc\\\":\\\"2018-12-04T12:33:53.2091489Z\\\"}\",\"ExceptionMessage\":\"\"}");
    restapi_error_set(&e, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_ENVELOPE_B, "Timed out waiting for device to connect.");
    e.info = RESTAPI_INFO_TIMEOUT;
    e.timeout_s = 10;
    char *text = restapi_error_render(&e, "ab", &(struct timespec){0, 0});
    assert_non_null(strstr(text, "\\\"info\\\":{\\\"timeout\\\":\\\"00:00:10\\\"}"));
    assert_non_null(strstr(text, "1970-01-01T00:00:00.0000000Z"));
    free(text);
}

static void envelope_a_examples(void **state)
{
    struct restapi_error e;
    restapi_error_set(&e, RESTAPI_DEVICE_NOT_FOUND, RESTAPI_ENVELOPE_A, "%s", "sensor-thl-001");
    render_is(&e, "06e0221675514160850421f0b3b787a9", at(2023, 10, 24, 16, 57, 0, 0),
              "{\"Message\":\"ErrorCode:DeviceNotFound;sensor-thl-001\",\"ExceptionMessage\":\"Tracking "
              "ID:06e0221675514160850421f0b3b787a9-G:0-TimeStamp:10/24/2023 16:57:00\"}");
    restapi_error_set(&e, RESTAPI_UNAUTHORIZED, RESTAPI_ENVELOPE_A, "Unauthorized");
    render_is(&e, "0123", at(2016, 12, 14, 3, 15, 17, 5),
              "{\"Message\":\"ErrorCode:IotHubUnauthorizedAccess;Unauthorized\",\"ExceptionMessage\":\"Tracking "
              "ID:0123-G:0-TimeStamp:12/14/2016 03:15:17\"}");
    restapi_error_set(&e, RESTAPI_DEVICE_EXISTS, RESTAPI_ENVELOPE_A, "A device with ID '%s' is already registered.",
                      "iotdevice1");
    render_is(&e, "1", at(2020, 1, 2, 3, 4, 5, 0),
              "{\"Message\":\"ErrorCode:DeviceAlreadyExists;A device with ID 'iotdevice1' is already registered.\","
              "\"ExceptionMessage\":\"Tracking ID:1-G:0-TimeStamp:01/02/2020 03:04:05\"}");
    /* quotes and control characters in a message are escaped, never break the JSON */
    restapi_error_set(&e, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "bad \"id\"\n");
    render_is(&e, "1", at(2020, 1, 2, 3, 4, 5, 0),
              "{\"Message\":\"ErrorCode:ArgumentInvalid;bad \\\"id\\\"\\n\",\"ExceptionMessage\":\"Tracking "
              "ID:1-G:0-TimeStamp:01/02/2020 03:04:05\"}");
}

static void code_names(void **state)
{
    assert_string_equal(restapi_code_name(RESTAPI_INVALID_PROTOCOL_VERSION), "InvalidProtocolVersion");
    assert_string_equal(restapi_code_name(RESTAPI_DEVICE_NOT_ONLINE), "DeviceNotOnline");
    assert_string_equal(restapi_code_name(RESTAPI_GATEWAY_TIMEOUT), "GatewayTimeout");
    assert_string_equal(restapi_code_name(RESTAPI_MODULE_EXISTS), "ModuleAlreadyExistsOnDevice");
    assert_string_equal(restapi_code_name(RESTAPI_PRECONDITION_FAILED), "PreconditionFailed");
    assert_string_equal(restapi_code_name(RESTAPI_MESSAGE_TOO_LARGE), "MessageTooLarge");
    assert_string_equal(restapi_code_name(RESTAPI_MAX_PROPERTIES), "DeviceModelMaxPropertiesExceeded");
    assert_string_equal(restapi_code_name(123), "ServerError");
}

static void timespans(void **state)
{
    const struct {
        int64_t s;
        const char *want;
    } v[] = {{0, "00:00:00"},         {10, "00:00:10"},         {300, "00:05:00"}, {3661, "01:01:01"},
             {86399, "23:59:59"},     {86400, "1.00:00:00"},    {90061, "1.01:01:01"}};
    char out[32];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(restapi_timespan(v[i].s, out, sizeof out), ERR_OK);
        assert_string_equal(out, v[i].want);
    }
    assert_int_equal(restapi_timespan(-1, out, sizeof out), ERR_INVALID);
    assert_int_equal(restapi_timespan(10, out, 8), ERR_INVALID);
    assert_int_equal(restapi_timespan(10, out, 9), ERR_OK);
}

/* ---- JSON validator ---- */

static bool json_ok(const char *text, size_t len)
{
    struct guard_page g;
    const char *copy = guard_page_copy(&g, text, len);
    assert_non_null(copy);
    bool ok = restapi_json_is_valid((const uint8_t *)copy, len);
    guard_page_free(&g);
    return ok;
}

/* jansson's verdict, with the flags restapi_method_result used before the validator. */
static bool jansson_ok(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_decref(j);
    return j != NULL;
}

static const char *const json_good[] = {
    "{\"Response\":\"This is the response from the device\"}", "null", "true", "false", "0", "-0", "12",
    "-3.25", "1e10", "1E-2", "6.02e+23", "0.5e-0", "-0.0E+00", "123456789012345678", "\"\"",
    "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD83D\\uDE00\\u0000\\uffff\"", "\"\\uDBFF\\uDFFF\"",
    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"", "\"\x7f\"", "[]", "{}",
    " [ 1 , \"two\" , { \"three\" : [ null ] } ] ", "\t\r\n{\"a\":{\"b\":{\"c\":[true,false,null]}}}\n",
    "[[],{},[[]],{\"\":{}}]", "{\"a\":1,\"a\":2}", "[-1,0.1,1e400]", "\"]\"", "{\"}\":\"{\"}",
};

static const char *const json_bad[] = {
    "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{a:1}",
    "{'a':1}", "{1:1}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "'x'", "\"unterminated", "\"bad \\x escape\"",
    "\"\\u12\"", "\"\\u12G4\"", "\"\\\"", "\"\\", "tru", "nul", "True", "nulll", "01", "-01", "1.", ".5", "-",
    "+1", "1e", "1e+", "1.e3", "0x10", "NaN", "Infinity", "-Infinity", "1 2", "{} {}", "[1]]", "[1}", "{\"a\":1]",
    "[[]", "\"tab\there\"", "\"nl\nhere\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\x80\"",
    "\"\xed\xa0\x80\"", "\"\xf0\x80\x80\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
    "\"\x80\"", "\"\\uD800\"", "\"\\uDC00\"", "\"\\uD800x\"", "\"\\uD800\\n\"", "\"\\uD800\\u0041\"",
    "\"\\uD800\\uD800\"", "\"\\uDBFF\\uE000\"", "{\"a\":1}x", "[\"a\" \"b\"]", "\xef\xbb\xbf{}", "/* c */ 1",
    "[1,/**/2]", "\x0c" "1", "\x0b" "1", "\xc2\xa0" "1",
};

static void json_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof json_good / sizeof json_good[0]; i++)
        if (!json_ok(json_good[i], strlen(json_good[i])))
            fail_msg("rejected: %s", json_good[i]);
    for (size_t i = 0; i < sizeof json_bad / sizeof json_bad[0]; i++)
        if (json_ok(json_bad[i], strlen(json_bad[i])))
            fail_msg("accepted: %s", json_bad[i]);
    assert_false(restapi_json_is_valid(NULL, 0));
    static const char nul_raw[] = "\"a\0b\"", nul_after[] = "1\0", nul_before[] = "\0" "1";
    assert_false(json_ok(nul_raw, sizeof nul_raw - 1));
    assert_false(json_ok(nul_after, sizeof nul_after - 1));
    assert_false(json_ok(nul_before, sizeof nul_before - 1));
    assert_true(json_ok("[1]xyz", 3)); /* only len bytes count */
}

/* Agrees with jansson on every vector, except the magnitudes jansson cannot hold (documented in restapi.h). */
static void json_matches_jansson(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof json_good / sizeof json_good[0]; i++)
        if (!strstr(json_good[i], "1e400") && !jansson_ok(json_good[i], strlen(json_good[i])))
            fail_msg("jansson rejects: %s", json_good[i]);
    for (size_t i = 0; i < sizeof json_bad / sizeof json_bad[0]; i++)
        if (jansson_ok(json_bad[i], strlen(json_bad[i])))
            fail_msg("jansson accepts: %s", json_bad[i]);
    assert_true(json_ok("99999999999999999999", 20));
    assert_false(jansson_ok("99999999999999999999", 20));
}

static void json_every_prefix_and_byte(void **state)
{
    (void)state;
    const char *full = "{\"k\":[1,-2.5e3,\"s\\u0041\\uD83D\\uDE00\xc3\xa9\",true,false,null,{}],\"m\":{\"n\":[]}}";
    size_t n = strlen(full);
    assert_true(json_ok(full, n));
    for (size_t len = 0; len < n; len++)
        if (json_ok(full, len))
            fail_msg("prefix of %zu bytes accepted", len);
    /* every single-byte change agrees with jansson */
    char mut[128];
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 256; b++) {
            memcpy(mut, full, n);
            mut[i] = (char)b;
            if (json_ok(mut, n) != jansson_ok(mut, n))
                fail_msg("byte %zu = 0x%02x: jansson disagrees", i, b);
        }
    }
}

static void json_depth_limit(void **state)
{
    (void)state;
    size_t max = RESTAPI_JSON_MAX_DEPTH;
    char *deep = malloc(2 * max + 8);
    assert_non_null(deep);
    /* {"":[{"":[ ... ]}]}: objects need keys */
    char *obj = malloc(8 * max + 8);
    assert_non_null(obj);
    size_t n = 0;
    for (size_t i = 0; i < max; i++) {
        const char *open = i % 2 ? "[" : "{\"\":";
        memcpy(obj + n, open, strlen(open));
        n += strlen(open);
    }
    for (size_t i = max; i-- > 0;)
        obj[n++] = i % 2 ? ']' : '}';
    assert_true(json_ok(obj, n));
    /* one more level is refused */
    memmove(obj + 1, obj, n);
    obj[0] = '[';
    obj[n + 1] = ']';
    assert_false(json_ok(obj, n + 2));
    /* arrays only, unbalanced at the end */
    memset(deep, '[', max);
    memset(deep + max, ']', max - 1);
    assert_false(json_ok(deep, 2 * max - 1));
    deep[2 * max - 1] = ']';
    assert_true(json_ok(deep, 2 * max));
    free(obj);
    free(deep);
}

/* ---- method results ---- */

static void result_is(int status, const char *body, size_t len, const char *want)
{
    size_t out_len = 0;
    char *text = restapi_method_result(status, (const uint8_t *)body, len, &out_len);
    assert_non_null(text);
    assert_string_equal(text, want);
    assert_int_equal(out_len, strlen(want));
    free(text);
}

static void method_results(void **state)
{
    result_is(200, "{\"a\":1}", 7, "{\"status\":200,\"payload\":{\"a\":1}}");
    result_is(200, "", 0, "{\"status\":200,\"payload\":null}");
    result_is(201, "null", 4, "{\"status\":201,\"payload\":null}");
    result_is(-1, "\"ok\"", 4, "{\"status\":-1,\"payload\":\"ok\"}");
    /* valid JSON passes through byte for byte, whitespace included */
    result_is(200, "{ \"b\" : [1, 2] }\n", 17, "{\"status\":200,\"payload\":{ \"b\" : [1, 2] }\n}");
    /* not JSON: a JSON string */
    result_is(500, "hello", 5, "{\"status\":500,\"payload\":\"hello\"}");
    result_is(200, "{'filename': 'logs.zip'}", 24, "{\"status\":200,\"payload\":\"{'filename': 'logs.zip'}\"}");
    result_is(200, "a\"b\n", 4, "{\"status\":200,\"payload\":\"a\\\"b\\n\"}");
    result_is(200, "x\xff\xc3\xa9", 4, "{\"status\":200,\"payload\":\"x\xef\xbf\xbd\xc3\xa9\"}");
    result_is(200, "\xed\xa0\x80", 3, "{\"status\":200,\"payload\":\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
    result_is(200, "\xff" "ab\xc3", 4, "{\"status\":200,\"payload\":\"\xef\xbf\xbd" "ab\xef\xbf\xbd\"}"); /* at both ends */
    /* near-misses of JSON stay strings */
    result_is(200, "[1,]", 4, "{\"status\":200,\"payload\":\"[1,]\"}");
    result_is(200, "\"\\uD800\"", 8, "{\"status\":200,\"payload\":\"\\\"\\\\uD800\\\"\"}");
    /* numbers beyond int64 are valid JSON: spliced as they are */
    result_is(200, "[1e400,18446744073709551616]", 28, "{\"status\":200,\"payload\":[1e400,18446744073709551616]}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_of_the_hub),
        cmocka_unit_test(c2d_lock_routes),
        cmocka_unit_test(routes_decode_ids),
        cmocka_unit_test(unknown_routes),
        cmocka_unit_test(query_paging_headers),
        cmocka_unit_test(query_api_version_and_top),
        cmocka_unit_test(allowed_methods),
        cmocka_unit_test(method_bodies_accepted),
        cmocka_unit_test(scanner_takes_plain_bodies),
        cmocka_unit_test(scanner_plain_runs),
        cmocka_unit_test(scanner_payload_without_copy),
        cmocka_unit_test(scanner_edge_cases),
        cmocka_unit_test(scanner_depth),
        cmocka_unit_test(method_timeouts_rejected),
        cmocka_unit_test(method_names_rejected),
        cmocka_unit_test(method_bodies_unparsable),
        cmocka_unit_test(payload_size_limit),
        cmocka_unit_test(envelope_b_examples),
        cmocka_unit_test(envelope_a_examples),
        cmocka_unit_test(code_names),
        cmocka_unit_test(timespans),
        cmocka_unit_test(json_vectors),
        cmocka_unit_test(json_matches_jansson),
        cmocka_unit_test(json_every_prefix_and_byte),
        cmocka_unit_test(json_depth_limit),
        cmocka_unit_test(method_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
