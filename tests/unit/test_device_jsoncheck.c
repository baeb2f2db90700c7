/* test_device_jsoncheck.c -- unit tests for device/jsoncheck: RFC 8259 values that must pass and near-misses
 * that must not, each checked on a guard-page copy so an overread crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "guard_page.h"
#include "jsoncheck.h"

static bool check(const char *text, size_t len)
{
    struct guard_page g;
    const char *copy = guard_page_copy(&g, text, len);
    assert_non_null(copy);
    bool ok = jsoncheck_is_valid(copy, len);
    guard_page_free(&g);
    return ok;
}

static void accepts_valid_json(void **state)
{
    static const char *const good[] = {
        "{\"Response\":\"This is the response from the device\"}",
        "{\"message\":\"method not found\"}",
        "null", "true", "false", "0", "-0", "12", "-3.25", "1e10", "1E-2", "6.02e+23",
        "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD83D\\uDE00\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "[]", "{}", " [ 1 , \"two\" , { \"three\" : [ null ] } ] ",
        "\t\r\n{\"a\":{\"b\":{\"c\":[true,false,null]}}}\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!check(good[i], strlen(good[i])))
            fail_msg("rejected: %s", good[i]);
    }
}

static void rejects_invalid_json(void **state)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{'a':1}",
        "'x'", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\u12G4\"", "tru", "nul", "True",
        "01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "1 2", "{} {}", "[1]]",
        "\"tab\there\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
        "{\"a\":1}x", "[\"a\" \"b\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (check(bad[i], strlen(bad[i])))
            fail_msg("accepted: %s", bad[i]);
    }
    assert_false(jsoncheck_is_valid(NULL, 0));
    const char nul_inside[] = "\"a\0b\"";
    assert_false(check(nul_inside, sizeof nul_inside - 1));
    const char nul_escape[] = "\"\\\0\""; /* a backslash, then a NUL byte: no escape (strchr finds the NUL) */
    assert_false(check(nul_escape, sizeof nul_escape - 1));
}

static void nesting_is_capped(void **state)
{
    char deep[2 * JSONCHECK_MAX_DEPTH + 4];
    size_t n = 0;
    for (int i = 0; i < JSONCHECK_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < JSONCHECK_MAX_DEPTH; i++)
        deep[n++] = ']';
    assert_true(check(deep, n));
    n = 0;
    for (int i = 0; i <= JSONCHECK_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i <= JSONCHECK_MAX_DEPTH; i++)
        deep[n++] = ']';
    assert_false(check(deep, n));
}

static void every_prefix_is_safe(void **state)
{
    const char *full = "{\"k\":[1,-2.5e3,\"s\\u0041\xc3\xa9\",true,null]}";
    size_t n = strlen(full);
    for (size_t len = 0; len < n; len++)
        assert_false(check(full, len));
    assert_true(check(full, n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_valid_json),
        cmocka_unit_test(rejects_invalid_json),
        cmocka_unit_test(nesting_is_capped),
        cmocka_unit_test(every_prefix_is_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
