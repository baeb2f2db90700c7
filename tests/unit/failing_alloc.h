/* failing_alloc.h -- test helper: a malloc that fails after fail_after successful allocations (SIZE_MAX:
 * never), to install with json_set_alloc_funcs(failing_malloc, free) in out-of-memory tests that walk every
 * allocation point in turn. Header-only, for tests/unit/test_*.c; not part of any library. */
#ifndef IOTHUB_TEST_FAILING_ALLOC_H
#define IOTHUB_TEST_FAILING_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static size_t fail_after = SIZE_MAX;

static void *failing_malloc(size_t n)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after != SIZE_MAX)
        fail_after--;
    return malloc(n);
}

#endif
