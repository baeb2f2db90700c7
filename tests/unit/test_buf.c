/* test_buf.c -- unit tests for common/buf (the capped growable buffer). */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

static void append_and_consume(void **state)
{
    struct buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, "hello", 5), ERR_OK);
    assert_int_equal(buf_printf(&b, " %d", 42), ERR_OK);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "hello 42", 8);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "42", 2);
    char *s = buf_take_str(&b);
    assert_string_equal(s, "42");
    assert_int_equal(b.len, 0);
    free(s);
    buf_cleanup(&b);
}

static void cap_is_enforced(void **state)
{
    struct buf b;
    buf_init(&b, 4);
    assert_int_equal(buf_append(&b, "abcd", 4), ERR_OK);
    assert_int_equal(buf_append(&b, "e", 1), ERR_TOO_BIG);
    assert_int_equal(b.len, 4);
    assert_int_equal(buf_printf(&b, "%s", "x"), ERR_TOO_BIG);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), ERR_TOO_BIG);
    buf_cleanup(&b);
}

static void take_str_of_empty(void **state)
{
    struct buf b;
    buf_init(&b, 4);
    char *s = buf_take_str(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

/* buf_printf writes in one pass when the text fits and in two when not; past max nothing changes. */
static void printf_one_and_two_passes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    char long_text[600];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s", "short"), ERR_OK);  /* fits the first 128 bytes made */
    assert_int_equal(buf_printf(&b, "%s!", long_text), ERR_OK); /* does not: measured, grown, written */
    assert_int_equal(b.len, 5 + 599 + 1);
    assert_memory_equal(b.data, "short", 5);
    assert_int_equal(b.data[5 + 599], '!');
    assert_int_equal(buf_printf(&b, "%s", long_text), ERR_TOO_BIG); /* 605 + 599 > 1000 */
    assert_int_equal(b.len, 605);
    buf_cleanup(&b);
    buf_init(&b, 3);
    assert_int_equal(buf_printf(&b, "%d", 123), ERR_TOO_BIG); /* the text and its NUL must fit under max */
    assert_int_equal(buf_printf(&b, "%d", 12), ERR_OK);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "12", 2);
    buf_cleanup(&b);
}

static void append_int_is_lld(void **state)
{
    (void)state;
    static const long long v[] = {0, 7, -1, 10, -10, 99999, 1234567890123LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct buf b;
        buf_init(&b, 64);
        char want[32];
        snprintf(want, sizeof want, "%lld", v[i]);
        assert_int_equal(buf_append_int(&b, v[i]), ERR_OK);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.data, want, b.len);
        buf_cleanup(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_consume),
        cmocka_unit_test(cap_is_enforced),
        cmocka_unit_test(take_str_of_empty),
        cmocka_unit_test(printf_one_and_two_passes),
        cmocka_unit_test(append_int_is_lld),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
