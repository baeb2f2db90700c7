/* test_buf.c -- unit tests for common/buf (the capped growable buffer). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_consume),
        cmocka_unit_test(cap_is_enforced),
        cmocka_unit_test(take_str_of_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
