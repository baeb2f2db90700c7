/* test_twinstore.c -- unit tests for emulator/store/twinstore and the hub's use of it: a twin changed through
 * the hub survives closing and reopening the database (an emulator restart), reported and desired alike; a
 * twin is deleted with its identity (cascade); saving for an unknown identity fails; a corrupt row is skipped
 * at load; a store that fails to save undoes the change. Files go to a mkdtemp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "twinstore.h"

#define KEY_A "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

struct env {
    char dir[64];
    char path[128];
    struct db *db;
    struct registry *reg;
    struct loop *loop;
    struct hub *hub;
};

static void env_open(struct env *e)
{
    char err[256];
    e->db = db_open(e->path, err, sizeof err);
    if (!e->db)
        fail_msg("db_open: %s", err);
    e->reg = registry_new(e->db, NULL, err, sizeof err);
    assert_non_null(e->reg);
    e->loop = loop_new();
    e->hub = hub_new(e->loop, e->reg);
    assert_non_null(e->hub);
    assert_int_equal(hub_use_twin_store(e->hub, e->db), ERR_OK);
}

static void env_close(struct env *e)
{
    hub_free(e->hub);
    loop_free(e->loop);
    registry_free(e->reg);
    db_close(e->db);
}

static int setup(void **state)
{
    static struct env e;
    memset(&e, 0, sizeof e);
    log_set_level(LOG_LEVEL_ERROR);
    snprintf(e.dir, sizeof e.dir, "/tmp/test_twinstore_XXXXXX");
    assert_non_null(mkdtemp(e.dir));
    snprintf(e.path, sizeof e.path, "%s/" DB_FILE_NAME, e.dir);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char p[192];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", e->path, suffix[i]);
        unlink(p);
    }
    rmdir(e->dir);
    return 0;
}

static void add_identity(struct env *e, const char *dev, const char *mod)
{
    json_t *body = json_object();
    const struct identity *id = NULL;
    bool created = false;
    char err[128];
    assert_int_equal(registry_put(e->reg, dev, mod, body, NULL, &id, &created, err, sizeof err), ERR_OK);
    json_decref(body);
}

static json_t *twin_doc(struct env *e, const char *dev, const char *mod)
{
    json_t *doc = NULL;
    assert_int_equal(hub_twin_get(e->hub, dev, mod, &doc, NULL, 0), ERR_OK);
    return doc;
}

static json_t *at(json_t *j, const char *a, const char *b, const char *c)
{
    return json_object_get(json_object_get(json_object_get(j, a), b), c);
}

static void twins_survive_a_restart(void **state)
{
    struct env *e = *state;
    env_open(e);
    add_identity(e, "d1", NULL);
    add_identity(e, "d1", "m1");
    assert_int_equal(registry_ensure_device(e->reg, "d2", KEY_A, NULL), ERR_OK);
    json_t *body = json_loads("{\"tags\":{\"t\":1},\"properties\":{\"desired\":{\"x\":{\"y\":2}}}}", 0, NULL);
    struct hub_twin_update u = {.device_id = "d1", .body = body, .mode = TWIN_MERGE};
    json_t *doc = NULL;
    struct twin_error err;
    assert_int_equal(hub_twin_update(e->hub, &u, &doc, NULL, 0, &err), ERR_OK);
    json_decref(doc);
    u.module_id = "m1";
    assert_int_equal(hub_twin_update(e->hub, &u, &doc, NULL, 0, &err), ERR_OK);
    json_decref(doc);
    json_decref(body);
    json_t *before = twin_doc(e, "d1", NULL);
    env_close(e);

    env_open(e);
    json_t *after = twin_doc(e, "d1", NULL);
    assert_true(json_equal(at(before, "properties", "desired", "$metadata"), at(after, "properties", "desired", "$metadata")));
    assert_int_equal(json_integer_value(json_object_get(after, "version")), 2);
    assert_int_equal(json_integer_value(at(after, "properties", "desired", "$version")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(after, "tags"), "t")), 1);
    assert_string_equal(json_string_value(json_object_get(before, "etag")), json_string_value(json_object_get(after, "etag")));
    json_decref(before);
    json_decref(after);
    after = twin_doc(e, "d1", "m1");
    assert_int_equal(json_integer_value(at(after, "properties", "desired", "$version")), 2);
    json_decref(after);
    after = twin_doc(e, "d2", NULL); /* never changed: a fresh twin */
    assert_int_equal(json_integer_value(json_object_get(after, "version")), 1);
    json_decref(after);

    /* deleting the device deletes its twins, and its module's, in the store too */
    assert_int_equal(registry_delete(e->reg, "d1", NULL, NULL), ERR_OK);
    hub_forget_identity(e->hub, "d1", NULL);
    env_close(e);
    env_open(e);
    add_identity(e, "d1", NULL);
    after = twin_doc(e, "d1", NULL);
    assert_int_equal(json_integer_value(json_object_get(after, "version")), 1);
    assert_int_equal(json_object_size(json_object_get(after, "tags")), 0);
    json_decref(after);
    env_close(e);
}

static int count_rows(void *ctx, const char *dev, const char *mod, const char *text, size_t len)
{
    (*(int *)ctx)++;
    return strcmp(dev, "bad") == 0 ? ERR_MALFORMED : ERR_OK;
}

static void store_rows(void **state)
{
    struct env *e = *state;
    env_open(e);
    assert_int_equal(twinstore_save(e->db, "ghost", NULL, "{}"), ERR_NOT_FOUND);
    assert_int_equal(registry_ensure_device(e->reg, "bad", KEY_A, NULL), ERR_OK);
    assert_int_equal(twinstore_save(e->db, "bad", NULL, "not a twin"), ERR_OK);
    assert_int_equal(twinstore_save(e->db, "bad", "", "still not a twin"), ERR_OK); /* replaced, one row */
    int n = 0;
    assert_int_equal(twinstore_load(e->db, count_rows, &n), ERR_OK);
    env_close(e);
    /* a corrupt twin row is skipped at start (logged), the emulator still opens */
    env_open(e);
    json_t *doc = twin_doc(e, "bad", NULL);
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), 1);
    json_decref(doc);
    n = 0;
    assert_int_equal(twinstore_load(e->db, count_rows, &n), ERR_OK);
    assert_true(n >= 1);
    env_close(e);
}

static int failing_save(void *ctx, const char *dev, const char *mod, const char *text)
{
    (*(int *)ctx)++;
    return ERR_IO;
}

static int fake_push(struct device_link *l, const uint8_t *patch, size_t len, int64_t version)
{
    fail_msg("a change the store refused was pushed");
    return ERR_OK;
}

static void fake_kick(struct device_link *l, const char *reason)
{
}

static const struct device_link_ops fake_ops = {.push_desired = fake_push, .kick = fake_kick};

/* A store that cannot save: the change is refused with ERR_IO and undone, nothing is pushed, the device's
 * reported patch fails the same way. */
static void store_failure_undoes_the_change(void **state)
{
    struct env *e = *state;
    env_open(e);
    add_identity(e, "f1", NULL);
    int calls = 0;
    hub_set_twin_store(e->hub, failing_save, &calls);
    struct device_link link = {.ops = &fake_ops, .identity = "f1"};
    assert_int_equal(hub_link_online(e->hub, &link, "f1", NULL), ERR_OK);
    hub_link_desired_ready(e->hub, &link);
    json_t *before = twin_doc(e, "f1", NULL);
    json_t *body = json_loads("{\"tags\":{\"t\":1},\"properties\":{\"desired\":{\"x\":1}}}", 0, NULL);
    struct hub_twin_update u = {.device_id = "f1", .body = body, .mode = TWIN_MERGE};
    json_t *doc = NULL;
    struct twin_error err;
    assert_int_equal(hub_twin_update(e->hub, &u, &doc, NULL, 0, &err), ERR_IO);
    assert_null(doc);
    json_decref(body);
    int64_t version = 0;
    const char *patch = "{\"r\":1}";
    assert_int_equal(hub_link_twin_patch(e->hub, &link, (const uint8_t *)patch, strlen(patch), -1, &version, &err), ERR_IO);
    assert_int_equal(calls, 2);
    json_t *after = twin_doc(e, "f1", NULL);
    json_object_del(before, "connectionState");
    json_object_del(after, "connectionState");
    json_object_del(before, "lastActivityTime");
    json_object_del(after, "lastActivityTime");
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    hub_link_offline(e->hub, &link);
    env_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(twins_survive_a_restart),
        cmocka_unit_test(store_rows),
        cmocka_unit_test(store_failure_undoes_the_change),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
