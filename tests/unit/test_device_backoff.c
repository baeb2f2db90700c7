/* test_device_backoff.c -- unit tests for device/backoff: the ceiling doubles and saturates without overflow,
 * and full jitter stays within [0, ceiling] for every random input (the random source is injected). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backoff.h"

static void ceiling_doubles_then_saturates(void **state)
{
    struct backoff b = {BACKOFF_DEFAULT_INITIAL_MS, BACKOFF_DEFAULT_MAX_MS};
    static const uint32_t want[] = {1000, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (unsigned attempt = 0; attempt < sizeof want / sizeof want[0]; attempt++)
        assert_int_equal(backoff_ceiling_ms(&b, attempt), want[attempt]);
    assert_int_equal(backoff_ceiling_ms(&b, 1000000), 30000);
    assert_int_equal(backoff_ceiling_ms(&b, UINT32_MAX), 30000);
}

static void ceiling_without_overflow_at_the_limit(void **state)
{
    struct backoff b = {BACKOFF_LIMIT_MS - 1, BACKOFF_LIMIT_MS};
    assert_int_equal(backoff_ceiling_ms(&b, 1), BACKOFF_LIMIT_MS - 1);
    assert_int_equal(backoff_ceiling_ms(&b, 2), BACKOFF_LIMIT_MS);
    assert_int_equal(backoff_ceiling_ms(&b, 64), BACKOFF_LIMIT_MS);
    struct backoff tiny = {1, 7};
    assert_int_equal(backoff_ceiling_ms(&tiny, 3), 4);
    assert_int_equal(backoff_ceiling_ms(&tiny, 4), 7);
    struct backoff flat = {500, 500};
    assert_int_equal(backoff_ceiling_ms(&flat, 10), 500);
}

static void jitter_spans_zero_to_ceiling(void **state)
{
    struct backoff b = {1000, 30000};
    assert_int_equal(backoff_delay_ms(&b, 1, 0), 0);
    assert_int_equal(backoff_delay_ms(&b, 1, 1000), 1000);
    assert_int_equal(backoff_delay_ms(&b, 1, 1001), 0);
    assert_int_equal(backoff_delay_ms(&b, 3, 3999), 3999);
    assert_int_equal(backoff_delay_ms(&b, 3, 4000), 4000);
    assert_int_equal(backoff_delay_ms(&b, 20, 30000), 30000);
    assert_int_equal(backoff_delay_ms(&b, 20, UINT32_MAX), UINT32_MAX % 30001u);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

static void jitter_bounds_hold_for_many_inputs(void **state)
{
    struct backoff b = {250, 10000};
    uint32_t seed = 12345;
    for (unsigned attempt = 1; attempt < 40; attempt++) {
        uint32_t ceiling = backoff_ceiling_ms(&b, attempt);
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            uint32_t d = backoff_delay_ms(&b, attempt, lcg(&seed));
            assert_true(d <= ceiling);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Full jitter really uses the range: small and large values both occur. */
        assert_true(lo < ceiling / 10 + 1);
        assert_true(hi > ceiling - ceiling / 10 - 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ceiling_doubles_then_saturates),
        cmocka_unit_test(ceiling_without_overflow_at_the_limit),
        cmocka_unit_test(jitter_spans_zero_to_ceiling),
        cmocka_unit_test(jitter_bounds_hold_for_many_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
