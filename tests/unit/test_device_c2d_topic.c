/* test_device_c2d_topic.c -- unit tests for device/c2d_topic: devicebound topics as the hub (and the emulator)
 * publish them, decoded property bags (system properties, %-escapes, keys without values, empty items), and
 * rejected topics (another device, another topic, bad escapes, empty keys, too many properties), each parsed
 * from a guard-page copy so an overread crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2d_topic.h"
#include "err.h"
#include "guard_page.h"

static int parse(const char *topic, struct c2d_topic_props *out)
{
    struct guard_page g;
    size_t len = strlen(topic);
    const char *copy = guard_page_copy(&g, topic, len);
    assert_non_null(copy);
    int rc = c2d_topic_parse(copy, len, "dev1", out);
    guard_page_free(&g);
    return rc;
}

static void bags(void **state)
{
    (void)state;
    struct c2d_topic_props p;
    assert_int_equal(parse("devices/dev1/messages/devicebound/", &p), ERR_OK);
    assert_int_equal(p.n, 0);
    assert_int_equal(parse("devices/dev1/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fdev1%2Fmessages"
                           "%2Fdevicebound&color=blue%20green&flag&&e=",
                           &p),
                     ERR_OK);
    assert_int_equal(p.n, 5);
    assert_string_equal(p.keys[0], "$.mid");
    assert_string_equal(p.values[0], "m-1");
    assert_string_equal(p.keys[1], "$.to");
    assert_string_equal(p.values[1], "/devices/dev1/messages/devicebound");
    assert_string_equal(p.keys[2], "color");
    assert_string_equal(p.values[2], "blue green");
    assert_string_equal(p.keys[3], "flag");
    assert_string_equal(p.values[3], "");
    assert_string_equal(p.keys[4], "e");
    assert_string_equal(p.values[4], "");
    c2d_topic_props_cleanup(&p);
    assert_int_equal(p.n, 0);
}

static void rejected(void **state)
{
    (void)state;
    struct c2d_topic_props p;
    const char *bad[] = {
        "devices/dev2/messages/devicebound/a=b",   /* another device */
        "devices/dev1x/messages/devicebound/a=b",  /* a longer id */
        "devices/dev1/messages/devicebound",       /* no bag separator */
        "devices/dev1/messages/events/a=b",        /* another topic */
        "$iothub/methods/POST/m/?$rid=1",
        "devices/dev1/messages/devicebound/a=%zz", /* bad escape */
        "devices/dev1/messages/devicebound/a=%2",
        "devices/dev1/messages/devicebound/a=%00", /* decoded NUL */
        "devices/dev1/messages/devicebound/=v",    /* empty key */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &p) != ERR_MALFORMED)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(p.n, 0);
    }
    char many[4096] = "devices/dev1/messages/devicebound/";
    for (int i = 0; i <= C2D_TOPIC_MAX_PROPS; i++) {
        size_t n = strlen(many);
        snprintf(many + n, sizeof many - n, "k%d=v&", i);
    }
    assert_int_equal(parse(many, &p), ERR_MALFORMED);
    assert_int_equal(p.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bags),
        cmocka_unit_test(rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
