/* test_dirs.c -- unit tests for common/dirs (mkdir -p). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dirs.h"
#include "err.h"

static void creates_missing_parents_and_accepts_existing(void **state)
{
    char base[] = "/tmp/test-dirs-XXXXXX";
    assert_non_null(mkdtemp(base));
    char dir[256], err[256];
    snprintf(dir, sizeof dir, "%s/a/b/c", base);
    assert_int_equal(dirs_make(dir, err, sizeof err), ERR_OK);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(dirs_make(dir, err, sizeof err), ERR_OK); /* again: nothing to do */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    assert_int_equal(system(cmd), 0);
}

static void a_file_in_the_way_is_an_error(void **state)
{
    char base[] = "/tmp/test-dirs-XXXXXX";
    assert_non_null(mkdtemp(base));
    char file[256], dir[300], err[512];
    snprintf(file, sizeof file, "%s/file", base);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(dirs_make(file, err, sizeof err), ERR_IO);
    assert_non_null(strstr(err, "exists and is not a directory"));
    snprintf(dir, sizeof dir, "%s/sub", file);
    assert_int_equal(dirs_make(dir, err, sizeof err), ERR_IO);
    assert_non_null(strstr(err, "cannot create directory"));
    unlink(file);
    rmdir(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(creates_missing_parents_and_accepts_existing),
        cmocka_unit_test(a_file_in_the_way_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
