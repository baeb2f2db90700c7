/* test_strmap.c -- unit tests for common/strmap (insert, replace, remove with cluster repair, growth). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>

#include "err.h"
#include "strmap.h"

static void basic_operations(void **state)
{
    struct strmap *m = strmap_new();
    int a = 1, b = 2;
    assert_int_equal(strmap_set(m, "dev1", &a), ERR_OK);
    assert_int_equal(strmap_set(m, "dev2", &b), ERR_OK);
    assert_ptr_equal(strmap_get(m, "dev1"), &a);
    assert_ptr_equal(strmap_get(m, "dev2"), &b);
    assert_null(strmap_get(m, "dev10"));
    assert_int_equal(strmap_set(m, "dev1", &b), ERR_OK);
    assert_ptr_equal(strmap_get(m, "dev1"), &b);
    assert_int_equal(strmap_count(m), 2);
    assert_ptr_equal(strmap_remove(m, "dev1"), &b);
    assert_null(strmap_get(m, "dev1"));
    assert_null(strmap_remove(m, "dev1"));
    assert_int_equal(strmap_count(m), 1);
    strmap_free(m);
}

static void many_entries_survive_removals(void **state)
{
    struct strmap *m = strmap_new();
    static int values[20000];
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "device-%d", i);
        assert_int_equal(strmap_set(m, key, &values[i]), ERR_OK);
    }
    for (int i = 0; i < 20000; i += 3) {
        snprintf(key, sizeof key, "device-%d", i);
        assert_ptr_equal(strmap_remove(m, key), &values[i]);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "device-%d", i);
        if (i % 3 == 0)
            assert_null(strmap_get(m, key));
        else
            assert_ptr_equal(strmap_get(m, key), &values[i]);
    }
    assert_int_equal(strmap_count(m), 20000 - 6667);
    strmap_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basic_operations),
        cmocka_unit_test(many_entries_survive_removals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
