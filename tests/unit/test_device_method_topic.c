/* test_device_method_topic.c -- unit tests for device/method_topic: request topics the hub and the SDKs use,
 * malformed topics (each on a guard-page copy, so an overread crashes), and response topics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "guard_page.h"
#include "method_topic.h"

static int parse(const char *topic, struct method_topic_request *out)
{
    struct guard_page g;
    size_t len = strlen(topic);
    const char *copy = guard_page_copy(&g, topic, len);
    assert_non_null(copy);
    int rc = method_topic_parse(copy, len, out);
    /* Views must point inside the copy; turn them back into offsets into `topic` before the copy goes. */
    if (rc == ERR_OK) {
        out->name = topic + (out->name - copy);
        out->rid = topic + (out->rid - copy);
    }
    guard_page_free(&g);
    return rc;
}

static void expect_request(const char *topic, const char *name, const char *rid)
{
    struct method_topic_request r;
    assert_int_equal(parse(topic, &r), ERR_OK);
    assert_int_equal(r.name_len, strlen(name));
    assert_memory_equal(r.name, name, r.name_len);
    assert_int_equal(r.rid_len, strlen(rid));
    assert_memory_equal(r.rid, rid, r.rid_len);
}

static void parses_hub_topics(void **state)
{
    /* The documented shape, and the hub's hex rid counter. */
    expect_request("$iothub/methods/POST/DeviceMethod/?$rid=1", "DeviceMethod", "1");
    expect_request("$iothub/methods/POST/getCarVIN/?$rid=a", "getCarVIN", "a");
    expect_request("$iothub/methods/POST/reboot/?$rid=1f3", "reboot", "1f3");
    /* Node tolerates the form without '/' before '?'. */
    expect_request("$iothub/methods/POST/reboot?$rid=42", "reboot", "42");
    /* Extra query parameters end the rid. */
    expect_request("$iothub/methods/POST/m/?$rid=7&x=y", "m", "7");
    /* Opaque rids (UUIDs, other hubs) are echoed verbatim. */
    expect_request("$iothub/methods/POST/m/?$rid=0f8fad5b-d9cb-469f-a165-70867728950e", "m",
                   "0f8fad5b-d9cb-469f-a165-70867728950e");
    /* Characters the docs allow in method names. */
    expect_request("$iothub/methods/POST/set_Speed-2.v1/?$rid=3", "set_Speed-2.v1", "3");
}

static void rejects_malformed_topics(void **state)
{
    static const char *const bad[] = {
        "",
        "$iothub/methods/POST/",
        "$iothub/methods/POST",
        "$iothub/methods/POST//?$rid=1",        /* empty name */
        "$iothub/methods/POST/m/?$rid=",        /* empty rid */
        "$iothub/methods/POST/m/?$rid=&x=1",    /* empty rid before another parameter */
        "$iothub/methods/POST/m/",              /* no rid */
        "$iothub/methods/POST/m",               /* no rid */
        "$iothub/methods/POST/m/?rid=1",        /* wrong key */
        "$iothub/methods/POST/m/?$RID=1",       /* keys are case-sensitive */
        "$iothub/methods/POST/a/b/?$rid=1",     /* '/' in a name */
        "$iothub/methods/POST/a#/?$rid=1",      /* wildcard characters */
        "$iothub/methods/POST/a+/?$rid=1",
        "$iothub/methods/POST/a b/?$rid=1",     /* space */
        "$iothub/methods/POST/m/?$rid=1/2",     /* '/' in the rid */
        "$iothub/methods/POST/m/?$rid=1#",
        "$iothub/methods/POST/m/?$rid=1 2",
        "$iothub/methods/POST/m//?$rid=1",
        "$iothub/methods/res/200/?$rid=1",      /* a response topic */
        "$iothub/twin/PATCH/properties/desired/?$version=2",
        "$IOTHUB/methods/POST/m/?$rid=1",
        "devices/d1/messages/devicebound/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct method_topic_request r = {(const char *)1, 1, (const char *)1, 1};
        if (parse(bad[i], &r) != ERR_MALFORMED)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_null(r.name);
        assert_int_equal(r.rid_len, 0);
    }
}

static void rejects_control_bytes_and_overlong_fields(void **state)
{
    struct method_topic_request r;
    const char with_nul[] = "$iothub/methods/POST/m\0x/?$rid=1";
    assert_int_equal(method_topic_parse(with_nul, sizeof with_nul - 1, &r), ERR_MALFORMED);
    assert_int_equal(parse("$iothub/methods/POST/m\x01/?$rid=1", &r), ERR_MALFORMED);
    assert_int_equal(parse("$iothub/methods/POST/m/?$rid=\x7f", &r), ERR_MALFORMED);
    assert_int_equal(parse("$iothub/methods/POST/caf\xc3\xa9/?$rid=1", &r), ERR_MALFORMED);

    char topic[1024];
    char name[METHOD_TOPIC_MAX_NAME + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    snprintf(topic, sizeof topic, "$iothub/methods/POST/%s/?$rid=1", name);
    assert_int_equal(parse(topic, &r), ERR_MALFORMED);
    name[METHOD_TOPIC_MAX_NAME] = 0; /* exactly the limit */
    snprintf(topic, sizeof topic, "$iothub/methods/POST/%s/?$rid=1", name);
    assert_int_equal(parse(topic, &r), ERR_OK);

    char rid[METHOD_TOPIC_MAX_RID + 2];
    memset(rid, 'r', sizeof rid - 1);
    rid[sizeof rid - 1] = 0;
    snprintf(topic, sizeof topic, "$iothub/methods/POST/m/?$rid=%s", rid);
    assert_int_equal(parse(topic, &r), ERR_MALFORMED);
    rid[METHOD_TOPIC_MAX_RID] = 0;
    snprintf(topic, sizeof topic, "$iothub/methods/POST/m/?$rid=%s", rid);
    assert_int_equal(parse(topic, &r), ERR_OK);
}

static void every_prefix_of_a_valid_topic_is_handled(void **state)
{
    /* Truncations at every length: never an overread (guard page), and only the full topic parses
     * (plus the truncation that still ends the rid cleanly, which is the topic itself). */
    const char *full = "$iothub/methods/POST/DeviceMethod/?$rid=1a";
    size_t n = strlen(full);
    for (size_t len = 0; len < n; len++) {
        struct guard_page g;
        const char *copy = guard_page_copy(&g, full, len);
        assert_non_null(copy);
        struct method_topic_request r;
        int rc = method_topic_parse(copy, len, &r);
        if (len == n - 1)
            assert_int_equal(rc, ERR_OK); /* rid "1" */
        else
            assert_int_equal(rc, ERR_MALFORMED);
        guard_page_free(&g);
    }
}

static void builds_response_topics(void **state)
{
    struct buf b;
    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, 200, "1", 1), ERR_OK);
    assert_string_equal((const char *)b.data, "$iothub/methods/res/200/?$rid=1");
    assert_int_equal(b.len, strlen("$iothub/methods/res/200/?$rid=1"));
    buf_cleanup(&b);

    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, 404, "a1f", 3), ERR_OK);
    assert_string_equal((const char *)b.data, "$iothub/methods/res/404/?$rid=a1f");
    buf_cleanup(&b);

    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, -1, "0f8fad5b-d9cb", 13), ERR_OK);
    assert_string_equal((const char *)b.data, "$iothub/methods/res/-1/?$rid=0f8fad5b-d9cb");
    buf_cleanup(&b);

    /* Only rid_len bytes of the rid are used (a view into a request topic). */
    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, 201, "7&x=y", 1), ERR_OK);
    assert_string_equal((const char *)b.data, "$iothub/methods/res/201/?$rid=7");
    buf_cleanup(&b);
}

static void response_round_trips_the_parsed_rid(void **state)
{
    struct method_topic_request r;
    assert_int_equal(parse("$iothub/methods/POST/m/?$rid=ff0", &r), ERR_OK);
    struct buf b;
    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, 200, r.rid, r.rid_len), ERR_OK);
    assert_string_equal((const char *)b.data, "$iothub/methods/res/200/?$rid=ff0");
    buf_cleanup(&b);
}

static void response_rejects_bad_rids_and_respects_the_cap(void **state)
{
    struct buf b;
    buf_init(&b, 256);
    assert_int_equal(method_topic_response(&b, 200, "", 0), ERR_INVALID);
    assert_int_equal(method_topic_response(&b, 200, NULL, 0), ERR_INVALID);
    assert_int_equal(method_topic_response(&b, 200, "a/b", 3), ERR_INVALID);
    assert_int_equal(method_topic_response(&b, 200, "a#", 2), ERR_INVALID);
    assert_int_equal(method_topic_response(&b, 200, "a+", 2), ERR_INVALID);
    assert_int_equal(method_topic_response(&b, 200, "a b", 3), ERR_INVALID);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);

    buf_init(&b, 20); /* too small for the topic: nothing is left behind */
    assert_int_equal(method_topic_response(&b, 200, "1", 1), ERR_TOO_BIG);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_hub_topics),
        cmocka_unit_test(rejects_malformed_topics),
        cmocka_unit_test(rejects_control_bytes_and_overlong_fields),
        cmocka_unit_test(every_prefix_of_a_valid_topic_is_handled),
        cmocka_unit_test(builds_response_topics),
        cmocka_unit_test(response_round_trips_the_parsed_rid),
        cmocka_unit_test(response_rejects_bad_rids_and_respects_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
