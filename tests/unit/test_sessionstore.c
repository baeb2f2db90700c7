/* test_sessionstore.c -- unit tests for emulator/store/sessionstore: put / get / replace / delete, a session
 * for an identity the store does not have is refused, devices' and modules' sessions are apart, deleting an
 * identity deletes its session (and a device's deletes its modules'), and the table survives closing and
 * reopening a database file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "err.h"
#include "registry.h"
#include "sessionstore.h"

#define KEY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

static struct registry *open_registry(const char *path, struct db **db)
{
    char err[256];
    *db = db_open(path, err, sizeof err);
    assert_non_null(*db);
    struct registry *r = registry_new(*db, NULL, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(sessionstore_migrate(*db, err, sizeof err), ERR_OK);
    return r;
}

static void assert_state(struct db *db, const char *dev, const char *mod, const char *want)
{
    char *got = sessionstore_get(db, dev, mod);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void put_get_replace_delete(void **state)
{
    struct db *db;
    struct registry *r = open_registry(NULL, &db);
    assert_int_equal(registry_ensure_device(r, "dev1", KEY, KEY), ERR_OK);
    assert_state(db, "dev1", NULL, NULL);
    assert_int_equal(sessionstore_put(db, "dev1", NULL, "methods:0"), ERR_OK);
    assert_state(db, "dev1", NULL, "methods:0");
    assert_state(db, "dev1", "", "methods:0"); /* "" and NULL both name the device */
    assert_int_equal(sessionstore_put(db, "dev1", "", ""), ERR_OK); /* an empty session is a session */
    assert_state(db, "dev1", NULL, "");
    assert_int_equal(sessionstore_delete(db, "dev1", NULL), ERR_OK);
    assert_state(db, "dev1", NULL, NULL);
    assert_int_equal(sessionstore_delete(db, "dev1", NULL), ERR_OK); /* nothing kept: a no-op */
    registry_free(r);
    db_close(db);
}

static void unknown_identity_is_refused(void **state)
{
    struct db *db;
    struct registry *r = open_registry(NULL, &db);
    assert_int_equal(sessionstore_put(db, "nobody", NULL, "methods:0"), ERR_NOT_FOUND);
    assert_state(db, "nobody", NULL, NULL);
    registry_free(r);
    db_close(db);
}

static void modules_are_apart_and_deletes_cascade(void **state)
{
    struct db *db;
    char err[256];
    const struct identity *out;
    bool created;
    struct registry *r = open_registry(NULL, &db);
    json_t *mod = json_pack("{s:s, s:s}", "deviceId", "dev1", "moduleId", "m1");
    assert_int_equal(registry_ensure_device(r, "dev1", KEY, KEY), ERR_OK);
    assert_int_equal(registry_ensure_device(r, "dev2", KEY, KEY), ERR_OK);
    assert_int_equal(registry_put(r, "dev1", "m1", mod, NULL, &out, &created, err, sizeof err), ERR_OK);
    assert_int_equal(sessionstore_put(db, "dev1", NULL, "methods:0"), ERR_OK);
    assert_int_equal(sessionstore_put(db, "dev1", "m1", "module-inputs:1"), ERR_OK);
    assert_int_equal(sessionstore_put(db, "dev2", NULL, "c2d:1"), ERR_OK);
    assert_state(db, "dev1", "m1", "module-inputs:1");
    assert_state(db, "dev1", NULL, "methods:0");
    assert_int_equal(registry_delete(r, "dev1", "m1", "*"), ERR_OK);
    assert_state(db, "dev1", "m1", NULL);
    assert_state(db, "dev1", NULL, "methods:0");
    assert_int_equal(registry_put(r, "dev1", "m1", mod, NULL, &out, &created, err, sizeof err), ERR_OK);
    assert_int_equal(sessionstore_put(db, "dev1", "m1", "module-inputs:1"), ERR_OK);
    assert_int_equal(registry_delete(r, "dev1", NULL, "*"), ERR_OK); /* the device and, with it, its modules */
    assert_state(db, "dev1", NULL, NULL);
    assert_state(db, "dev1", "m1", NULL);
    assert_state(db, "dev2", NULL, "c2d:1");
    json_decref(mod);
    registry_free(r);
    db_close(db);
}

static void survives_reopening_the_file(void **state)
{
    char dir[] = "/tmp/test-sessionstore-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/" DB_FILE_NAME, dir);
    struct db *db;
    struct registry *r = open_registry(path, &db);
    assert_int_equal(registry_ensure_device(r, "dev1", KEY, KEY), ERR_OK);
    assert_int_equal(sessionstore_put(db, "dev1", NULL, "methods:1,twin-desired:0"), ERR_OK);
    registry_free(r);
    db_close(db);
    r = open_registry(path, &db); /* migrating again is a no-op */
    assert_state(db, "dev1", NULL, "methods:1,twin-desired:0");
    registry_free(r);
    db_close(db);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_replace_delete),
        cmocka_unit_test(unknown_identity_is_refused),
        cmocka_unit_test(modules_are_apart_and_deletes_cascade),
        cmocka_unit_test(survives_reopening_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
