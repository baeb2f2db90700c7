/* test_eventlog.c -- unit tests for emulator/hub/eventlog: partitioning, sequence numbers and offsets, the
 * property bag split, retention by count, bytes and age, lookups by sequence number / offset / time,
 * listeners, partition info of empty and emptied partitions, consumer groups. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "err.h"
#include "eventlog.h"

static struct eventlog *new_log(int partitions, size_t max_events, size_t max_bytes, int64_t max_age_ms)
{
    struct eventlog_limits lim = {partitions, max_events, max_bytes, max_age_ms};
    struct eventlog *l = eventlog_new(&lim, 1000);
    assert_non_null(l);
    return l;
}

static const struct eventlog_event *add(struct eventlog *l, const char *dev, const char *bag, const char *body,
                                        int64_t now)
{
    struct eventlog_input in = {.device_id = dev, .prop_bag = bag, .body = (const uint8_t *)body, .len = strlen(body)};
    const struct eventlog_event *e = NULL;
    assert_int_equal(eventlog_append(l, &in, now, &e), ERR_OK);
    return e;
}

static void numbers_offsets_and_properties(void **state)
{
    struct eventlog *l = new_log(4, 100, 1u << 20, 0);
    assert_int_equal(eventlog_partitions(l), 4);
    int p = eventlog_partition_of(l, "dev1");
    assert_int_equal(p, eventlog_partition_of(l, "dev1")); /* stable */
    struct eventlog_partition_info info;
    eventlog_partition_info(l, p, &info);
    assert_int_equal(info.last_seq, -1);
    assert_int_equal(info.last_offset, -1);
    assert_int_equal(info.begin_seq, 0);
    assert_true(info.empty);

    const struct eventlog_event *a = add(l, "dev1", "%24.mid=m1&%24.cid=c1&%24.ct=application%2Fjson&%24.ce=utf-8&"
                                                    "%24.uid=u&k=v%20w&flag",
                                         "{\"a\":1}", 5000);
    assert_int_equal(a->partition, p);
    assert_int_equal(a->seq, 0);
    assert_int_equal(a->offset, 0);
    assert_int_equal(a->enqueued_ms, 5000);
    assert_string_equal(a->message_id, "m1");
    assert_string_equal(a->correlation_id, "c1");
    assert_string_equal(a->content_type, "application/json");
    assert_string_equal(a->content_encoding, "utf-8");
    assert_string_equal(a->user_id, "u");
    assert_int_equal(a->n_props, 2);
    assert_string_equal(a->props[0].key, "k");
    assert_string_equal(a->props[0].value, "v w");
    assert_string_equal(a->props[1].key, "flag");
    assert_null(a->props[1].value);
    assert_string_equal(a->auth_scope, "device");
    int64_t a_off = a->offset;
    size_t a_size = a->size;
    /* The clock going back does not make enqueued times go back. */
    const struct eventlog_event *b = add(l, "dev1", NULL, "x", 4000);
    assert_int_equal(b->seq, 1);
    assert_int_equal(b->offset, a_off + (int64_t)a_size);
    assert_int_equal(b->enqueued_ms, 5000);
    const struct eventlog_event *c = add(l, "dev1", "%zz=bad&ok=1", "y", 6000); /* a bad pair is skipped */
    assert_int_equal(c->n_props, 1);
    assert_string_equal(c->props[0].key, "ok");

    eventlog_partition_info(l, p, &info);
    assert_int_equal(info.begin_seq, 0);
    assert_int_equal(info.last_seq, 2);
    assert_int_equal(info.last_offset, c->offset);
    assert_int_equal(info.last_ms, 6000);
    assert_false(info.empty);
    assert_ptr_equal(eventlog_get(l, p, 1), b);
    assert_null(eventlog_get(l, p, 3));
    assert_null(eventlog_get(l, (p + 1) % 4, 0));
    assert_int_equal(eventlog_seq_after_offset(l, p, -1, false), 0);
    assert_int_equal(eventlog_seq_after_offset(l, p, a_off, false), 1);
    assert_int_equal(eventlog_seq_after_offset(l, p, b->offset, true), 1);
    assert_int_equal(eventlog_seq_after_offset(l, p, c->offset, false), 3);
    assert_int_equal(eventlog_seq_after_time(l, p, 5000, false), 2);
    assert_int_equal(eventlog_seq_after_time(l, p, 5000, true), 0);

    /* Module events carry their module id and scope. */
    struct eventlog_input in = {.device_id = "dev2", .module_id = "m", .generation_id = "g", .body = NULL, .len = 0};
    const struct eventlog_event *m = NULL;
    assert_int_equal(eventlog_append(l, &in, 7000, &m), ERR_OK);
    assert_string_equal(m->module_id, "m");
    assert_string_equal(m->auth_scope, "module");
    assert_string_equal(m->generation_id, "g");
    struct eventlog_input bad = {.device_id = ""};
    assert_int_equal(eventlog_append(l, &bad, 7000, NULL), ERR_INVALID);
    assert_int_equal(eventlog_total(l), 4);
    eventlog_free(l);
}

static int appended;
static void count(void *ctx, int partition, const struct eventlog_event *ev)
{
    appended++;
    if (ctx)
        eventlog_unlisten(ctx, count, ctx); /* removing itself from inside is safe */
}

static void retention_and_listeners(void **state)
{
    struct eventlog *l = new_log(2, 3, 1u << 20, 10000);
    appended = 0;
    assert_int_equal(eventlog_listen(l, count, NULL), ERR_OK);
    assert_int_equal(eventlog_listen(l, count, l), ERR_OK);
    for (int i = 0; i < 5; i++) {
        char dev[8] = {'d', (char)('0' + i), 0};
        add(l, dev, NULL, "x", 1000 + i);
    }
    assert_int_equal(appended, 6); /* 5 + the self-removing one once */
    assert_int_equal(eventlog_count(l), 3);
    assert_int_equal(eventlog_total(l), 5);
    const struct eventlog_event *o = eventlog_oldest(l);
    assert_int_equal(o->enqueued_ms, 1002); /* the global oldest went first, whatever its partition */
    size_t n = 0;
    for (; o; o = o->next)
        n++;
    assert_int_equal(n, 3);
    /* Age: everything older than now - 10 s. */
    eventlog_expire(l, 11004); /* drops what is older than 1004 */
    assert_int_equal(eventlog_count(l), 1);
    eventlog_expire(l, 20000);
    assert_int_equal(eventlog_count(l), 0);
    /* An emptied partition keeps its numbers: begin = last + 1. */
    for (int p = 0; p < 2; p++) {
        struct eventlog_partition_info info;
        eventlog_partition_info(l, p, &info);
        assert_true(info.empty);
        assert_int_equal(info.begin_seq, info.last_seq + 1);
        assert_true(info.last_seq >= 0);
    }
    eventlog_unlisten(l, count, NULL);
    eventlog_free(l);

    /* Bytes: each event counts body + 256. */
    l = new_log(1, 100, 2 * 257, 0);
    add(l, "d", NULL, "1", 1);
    add(l, "d", NULL, "2", 2);
    add(l, "d", NULL, "3", 3);
    assert_int_equal(eventlog_count(l), 2);
    assert_int_equal(eventlog_bytes(l), 2 * 257);
    assert_int_equal(eventlog_oldest(l)->seq, 1);
    eventlog_clear(l);
    assert_int_equal(eventlog_count(l), 0);
    assert_int_equal(add(l, "d", NULL, "4", 4)->seq, 3); /* numbers continue after a clear */
    eventlog_free(l);

    /* max_events 0 keeps nothing but still numbers. */
    l = new_log(1, 0, 100, 0);
    struct eventlog_input in = {.device_id = "d", .body = (const uint8_t *)"x", .len = 1};
    const struct eventlog_event *e = (void *)1;
    assert_int_equal(eventlog_append(l, &in, 1, &e), ERR_OK);
    assert_null(e);
    struct eventlog_partition_info info;
    eventlog_partition_info(l, 0, &info);
    assert_int_equal(info.last_seq, 0);
    assert_true(info.empty);
    eventlog_free(l);
}

static void ring_growth(void **state)
{
    struct eventlog *l = new_log(1, 1000, 1u << 30, 0);
    for (int i = 0; i < 1000; i++)
        add(l, "d", NULL, "x", i);
    for (int i = 0; i < 500; i++)
        add(l, "d", NULL, "y", 1000 + i); /* wraps the ring while dropping */
    assert_int_equal(eventlog_count(l), 1000);
    assert_int_equal(eventlog_get(l, 0, 500)->seq, 500);
    assert_int_equal(eventlog_get(l, 0, 1499)->seq, 1499);
    assert_null(eventlog_get(l, 0, 499));
    assert_int_equal(eventlog_seq_after_time(l, 0, 1200, false), 1201);
    eventlog_free(l);
}

static void consumer_groups(void **state)
{
    struct eventlog *l = new_log(1, 1, 1000, 0);
    assert_int_equal(eventlog_group_count(l), 1);
    assert_string_equal(eventlog_group_at(l, 0), "$Default");
    assert_string_equal(eventlog_group_find(l, "$default"), "$Default");
    bool created = false;
    assert_int_equal(eventlog_group_add(l, "Alerts", &created), ERR_OK);
    assert_true(created);
    assert_int_equal(eventlog_group_add(l, "alerts", &created), ERR_OK);
    assert_false(created);
    assert_string_equal(eventlog_group_find(l, "ALERTS"), "Alerts");
    assert_int_equal(eventlog_group_add(l, "bad/name", NULL), ERR_INVALID);
    assert_int_equal(eventlog_group_add(l, "$other", NULL), ERR_INVALID);
    assert_int_equal(eventlog_group_add(l, "", NULL), ERR_INVALID);
    assert_int_equal(eventlog_group_del(l, "$Default"), ERR_INVALID);
    assert_int_equal(eventlog_group_del(l, "nope"), ERR_NOT_FOUND);
    assert_int_equal(eventlog_group_del(l, "ALERTS"), ERR_OK);
    assert_null(eventlog_group_find(l, "alerts"));
    for (int i = 0; i < EVENTLOG_MAX_GROUPS; i++) {
        char name[16] = {'g', (char)('a' + i), 0};
        assert_int_equal(eventlog_group_add(l, name, NULL), ERR_OK);
    }
    assert_int_equal(eventlog_group_add(l, "onemore", NULL), ERR_TOO_BIG);
    eventlog_free(l);
    struct eventlog_limits bad = {0, 1, 1, 0};
    assert_null(eventlog_new(&bad, 0));
    bad.partitions = EVENTLOG_MAX_PARTITIONS + 1;
    assert_null(eventlog_new(&bad, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_offsets_and_properties),
        cmocka_unit_test(retention_and_listeners),
        cmocka_unit_test(ring_growth),
        cmocka_unit_test(consumer_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
