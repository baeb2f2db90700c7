/* test_c2dstore.c -- unit tests for emulator/store/c2dstore and hub/c2dpersist: C2D queues kept in a database
 * file come back after closing and reopening it (headers, properties, body, order, expiry), completed and
 * purged messages are gone from the store, sequence numbers continue after a restart even when the queues
 * were empty, a message for an identity the store does not have is refused, deleting a device deletes its
 * messages, and a damaged row is skipped instead of stopping the load. */
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

#include "c2d.h"
#include "c2dpersist.h"
#include "c2dstore.h"
#include "db.h"
#include "err.h"
#include "registry.h"

#define KEY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define TO "/devices/dev1/messages/devicebound"

struct world {
    char dir[64];
    char path[128];
    struct db *db;
    struct registry *reg;
    struct c2d *q;
};

static void open_world(struct world *w)
{
    char err[256];
    w->db = db_open(w->path, err, sizeof err);
    assert_non_null(w->db);
    w->reg = registry_new(w->db, NULL, err, sizeof err);
    assert_non_null(w->reg);
    assert_int_equal(registry_ensure_device(w->reg, "dev1", KEY, KEY), ERR_OK);
    struct c2d_store st;
    assert_int_equal(c2dpersist_init(&st, w->db, err, sizeof err), ERR_OK);
    w->q = c2d_new(w->reg, &st, 0);
    assert_non_null(w->q);
}

static void close_world(struct world *w)
{
    c2d_free(w->q);
    registry_free(w->reg);
    db_close(w->db);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/test-c2dstore-XXXXXX");
    if (!w || !mkdtemp(w->dir))
        return -1;
    snprintf(w->path, sizeof w->path, "%s/" DB_FILE_NAME, w->dir);
    open_world(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    close_world(w);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    int rc = system(cmd);
    free(w);
    return rc;
}

static void restart(struct world *w)
{
    close_world(w);
    open_world(w);
}

static int send(struct world *w, const char *to, const char *id, const char *body, int64_t expiry_ms)
{
    struct c2d_message *m = calloc(1, sizeof *m);
    assert_non_null(m);
    snprintf(m->message_id, sizeof m->message_id, "%s", id);
    snprintf(m->correlation_id, sizeof m->correlation_id, "corr-%s", id);
    snprintf(m->content_type, sizeof m->content_type, "application/json");
    snprintf(m->ack, sizeof m->ack, "full");
    snprintf(m->props[0].key, sizeof m->props[0].key, "k");
    snprintf(m->props[0].value, sizeof m->props[0].value, "v %s", id);
    snprintf(m->props[1].key, sizeof m->props[1].key, "empty");
    m->n_props = 2;
    m->body = (const uint8_t *)body;
    m->body_len = strlen(body);
    m->expiry_ms = expiry_ms;
    char why[128];
    int rc = c2d_send(w->q, to, m, c2d_wall_ms(), why, sizeof why);
    free(m);
    return rc;
}

static void queues_survive_a_restart(void **state)
{
    struct world *w = *state;
    int64_t exp = c2d_wall_ms() + 600000;
    assert_int_equal(send(w, TO, "m1", "one", 0), ERR_OK);
    assert_int_equal(send(w, TO, "m2", "two\0", exp), ERR_OK);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 2);
    const struct c2d_message *m = c2d_next(w->q, "dev1", c2d_wall_ms());
    assert_non_null(m);
    assert_string_equal(m->message_id, "m1");
    assert_string_equal(m->correlation_id, "corr-m1");
    assert_string_equal(m->content_type, "application/json");
    assert_string_equal(m->ack, "full");
    assert_string_equal(m->to, TO);
    assert_int_equal(m->n_props, 2);
    assert_string_equal(m->props[0].key, "k");
    assert_string_equal(m->props[0].value, "v m1");
    assert_string_equal(m->props[1].key, "empty");
    assert_string_equal(m->props[1].value, "");
    assert_int_equal(m->body_len, 3);
    assert_memory_equal(m->body, "one", 3);
    assert_false(m->expiry_given);
    assert_int_equal(m->seq, 1);
    assert_int_equal(c2d_complete(w->q, "dev1", m->seq), ERR_OK);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 1); /* the completed one is gone for good */
    m = c2d_next(w->q, "dev1", c2d_wall_ms());
    assert_non_null(m);
    assert_string_equal(m->message_id, "m2");
    assert_true(m->expiry_given);
    assert_true(m->expiry_ms == exp);
    assert_int_equal(m->seq, 2);
    assert_int_equal(c2d_purge(w->q, "dev1"), 1);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 0);
    /* the queues were empty: numbering continues anyway (lock tokens are never reused) */
    assert_int_equal(send(w, TO, "m3", "three", 0), ERR_OK);
    m = c2d_next(w->q, "dev1", c2d_wall_ms());
    assert_non_null(m);
    assert_int_equal(m->seq, 3);
}

static void expired_after_a_restart_are_dropped(void **state)
{
    struct world *w = *state;
    assert_int_equal(send(w, TO, "soon", "x", c2d_wall_ms() + 1), ERR_OK);
    usleep(5000); /* the expiry is a wall-clock time; nothing to await */
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 0);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 0); /* and deleted from the store */
}

static void unknown_identity_and_cascade(void **state)
{
    struct world *w = *state;
    assert_int_equal(c2dstore_put(w->db, "nobody", NULL, 99, "{}", NULL, 0), ERR_NOT_FOUND);
    assert_int_equal(c2dstore_put(w->db, "dev1", NULL, 99, "{}", NULL, 0), ERR_OK);
    assert_int_equal(c2dstore_put(w->db, "dev1", NULL, 99, "{}", NULL, 0), ERR_EXISTS);
    assert_int_equal(send(w, TO, "m1", "one", 0), ERR_OK);
    assert_int_equal(registry_delete(w->reg, "dev1", NULL, "*"), ERR_OK);
    assert_int_equal(c2d_purge(w->q, "dev1"), 1); /* what rest_registry.c does on a delete; the row went already */
    assert_int_equal(registry_ensure_device(w->reg, "dev1", KEY, KEY), ERR_OK);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 0);
}

static void damaged_rows_are_skipped(void **state)
{
    struct world *w = *state;
    assert_int_equal(c2dstore_put(w->db, "dev1", NULL, 7, "not json", (const uint8_t *)"b", 1), ERR_OK);
    assert_int_equal(c2dstore_put(w->db, "dev1", NULL, 8, "{\"messageId\":1}", NULL, 0), ERR_OK);
    restart(w); /* the load skips both; numbering continues after them */
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 0);
    assert_int_equal(send(w, TO, "good", "ok", 0), ERR_OK);
    restart(w);
    assert_int_equal(c2d_count(w->q, "dev1", c2d_wall_ms()), 1);
    const struct c2d_message *m = c2d_next(w->q, "dev1", c2d_wall_ms());
    assert_non_null(m);
    assert_string_equal(m->message_id, "good");
    assert_int_equal(m->seq, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(queues_survive_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_after_a_restart_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_identity_and_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_rows_are_skipped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
