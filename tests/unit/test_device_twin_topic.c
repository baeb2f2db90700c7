/* test_device_twin_topic.c -- unit tests for device/twin_topic: desired pushes and twin responses as the hub
 * sends them, malformed topics (each on a guard-page copy, so an overread crashes), the reported topic. */
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
#include "twin_topic.h"

static int desired(const char *topic, int64_t *version)
{
    struct guard_page g;
    size_t len = strlen(topic);
    const char *copy = guard_page_copy(&g, topic, len);
    assert_non_null(copy);
    int rc = twin_topic_parse_desired(copy, len, version);
    guard_page_free(&g);
    return rc;
}

static int response(const char *topic, struct twin_topic_response *out, char *rid, size_t ridlen)
{
    struct guard_page g;
    size_t len = strlen(topic);
    const char *copy = guard_page_copy(&g, topic, len);
    assert_non_null(copy);
    int rc = twin_topic_parse_response(copy, len, out);
    if (rc == ERR_OK)
        snprintf(rid, ridlen, "%.*s", (int)out->rid_len, out->rid);
    guard_page_free(&g);
    return rc;
}

static void desired_topics(void **state)
{
    int64_t v = 0;
    assert_int_equal(desired("$iothub/twin/PATCH/properties/desired/?$version=12", &v), ERR_OK);
    assert_int_equal(v, 12);
    assert_int_equal(desired("$iothub/twin/PATCH/properties/desired/?x=1&$version=3", &v), ERR_OK);
    assert_int_equal(v, 3);
    assert_int_equal(desired("$iothub/twin/PATCH/properties/desired/", &v), ERR_OK);
    assert_int_equal(v, -1);
    const char *bad[] = {"$iothub/twin/PATCH/properties/desired", "$iothub/twin/PATCH/properties/desired/?$version=",
                         "$iothub/twin/PATCH/properties/desired/?$version=1x", "$iothub/twin/PATCH/properties/desired/x",
                         "$iothub/twin/res/200/?$rid=1", "",
                         "$iothub/twin/PATCH/properties/desired/?$version=1234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (desired(bad[i], &v) != ERR_MALFORMED)
            fail_msg("accepted: %s", bad[i]);
}

static void response_topics(void **state)
{
    struct twin_topic_response r;
    char rid[64];
    assert_int_equal(response("$iothub/twin/res/204/?$rid=r1&$version=5", &r, rid, sizeof rid), ERR_OK);
    assert_int_equal(r.status, 204);
    assert_string_equal(rid, "r1");
    assert_int_equal(r.version, 5);
    assert_int_equal(response("$iothub/twin/res/200/?$rid=abc", &r, rid, sizeof rid), ERR_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.version, -1);
    assert_int_equal(response("$iothub/twin/res/400?$rid=9", &r, rid, sizeof rid), ERR_OK);
    assert_int_equal(r.status, 400);
    const char *bad[] = {"$iothub/twin/res/", "$iothub/twin/res/204/", "$iothub/twin/res/204/?$rid=",
                         "$iothub/twin/res/x/?$rid=1", "$iothub/twin/res/2040/?$rid=1",
                         "$iothub/twin/res/204/?$rid=1&$version=z", "$iothub/methods/res/200/?$rid=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (response(bad[i], &r, rid, sizeof rid) != ERR_MALFORMED)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(r.version, -1);
        assert_null(r.rid);
    }
}

static void reported_topic(void **state)
{
    struct buf b;
    buf_init(&b, 256);
    assert_int_equal(twin_topic_reported(&b, "r7"), ERR_OK);
    assert_int_equal(b.len, strlen("$iothub/twin/PATCH/properties/reported/?$rid=r7"));
    assert_string_equal((const char *)b.data, "$iothub/twin/PATCH/properties/reported/?$rid=r7");
    buf_cleanup(&b);
    assert_int_equal(twin_topic_reported(&b, ""), ERR_INVALID);
    assert_int_equal(twin_topic_reported(&b, "a&b"), ERR_INVALID);
    assert_int_equal(twin_topic_reported(&b, "a b"), ERR_INVALID);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(desired_topics),
        cmocka_unit_test(response_topics),
        cmocka_unit_test(reported_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
