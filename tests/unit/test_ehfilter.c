/* test_ehfilter.c -- unit tests for emulator/amqp/ehfilter: every filter the Node and Python Event Hubs
 * clients write (iothub-amqp.md §B.1.5), the lenient forms, and refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "ehfilter.h"
#include "err.h"

static struct ehfilter parse_ok(const char *text)
{
    struct ehfilter f;
    char why[128];
    assert_int_equal(ehfilter_parse(text, strlen(text), &f, why, sizeof why), ERR_OK);
    return f;
}

static void sdk_forms(void **state)
{
    struct ehfilter f = parse_ok("amqp.annotation.x-opt-offset > '-1'");
    assert_int_equal(f.field, EHFILTER_OFFSET);
    assert_false(f.inclusive);
    assert_false(f.latest);
    assert_int_equal(f.value, -1);
    f = parse_ok("amqp.annotation.x-opt-offset > '@latest'");
    assert_true(f.latest);
    f = parse_ok("amqp.annotation.x-opt-offset >= '4096'");
    assert_true(f.inclusive);
    assert_int_equal(f.value, 4096);
    f = parse_ok("amqp.annotation.x-opt-sequence-number > '41'");
    assert_int_equal(f.field, EHFILTER_SEQUENCE);
    assert_int_equal(f.value, 41);
    f = parse_ok("amqp.annotation.x-opt-sequence-number >= '0'");
    assert_true(f.inclusive);
    f = parse_ok("amqp.annotation.x-opt-enqueued-time > '1700000000123'");
    assert_int_equal(f.field, EHFILTER_ENQUEUED_TIME);
    assert_int_equal(f.value, 1700000000123);
}

static void lenient_forms(void **state)
{
    struct ehfilter f = parse_ok("  X-OPT-OFFSET>=\"12\"  ");
    assert_int_equal(f.field, EHFILTER_OFFSET);
    assert_true(f.inclusive);
    assert_int_equal(f.value, 12);
    f = parse_ok("amqp.annotation.x-opt-sequence-number > 9223372036854775807");
    assert_int_equal(f.value, INT64_MAX);
}

static void refusals(void **state)
{
    const char *bad[] = {
        "",
        "amqp.annotation.x-opt-offset",
        "amqp.annotation.x-opt-offset = '1'",
        "amqp.annotation.x-opt-offset < '1'",
        "amqp.annotation.x-opt-offset > '1",
        "amqp.annotation.x-opt-offset > 'abc'",
        "amqp.annotation.x-opt-offset > ''",
        "amqp.annotation.x-opt-offset > '1' AND x > 2",
        "amqp.annotation.x-opt-sequence-number > '@latest'",
        "amqp.annotation.x-opt-sequence-number > '9223372036854775808'",
        "amqp.annotation.x-opt-sequence-number > '99999999999999999999'",
        "amqp.annotation.x-opt-other > '1'",
        "amqp.annotation.x-opt-offset > '-'",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ehfilter f;
        char why[128] = "";
        assert_int_equal(ehfilter_parse(bad[i], strlen(bad[i]), &f, why, sizeof why), ERR_MALFORMED);
        assert_true(why[0] != 0);
    }
    struct ehfilter f;
    const char nul[] = "x-opt-offset > '1\0'";
    assert_int_equal(ehfilter_parse(nul, sizeof nul - 1, &f, NULL, 0), ERR_MALFORMED);
    char big[EHFILTER_MAX_TEXT + 2];
    memset(big, ' ', sizeof big);
    assert_int_equal(ehfilter_parse(big, sizeof big, &f, NULL, 0), ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sdk_forms),
        cmocka_unit_test(lenient_forms),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
