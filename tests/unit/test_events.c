/* test_events.c -- unit tests for hub/events: ids in order, the ring keeps the newest EVENTS_RING events,
 * events_after walks them and skips what was overwritten, subscribers are told in order and can leave,
 * counts per kind, long strings are cut, and a NULL feed is a no-op. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "events.h"

static void note(struct events *e, int i)
{
    char what[16];
    snprintf(what, sizeof what, "m%d", i);
    events_note(e, EVENTS_METHOD, "dev", what, "answered", 200, i);
}

static void ids_and_ring(void **state)
{
    (void)state;
    struct events *e = events_new();
    assert_non_null(e);
    assert_null(events_after(e, 0));
    assert_int_equal(events_last_id(e), 0);
    for (int i = 1; i <= 3; i++)
        note(e, i);
    const struct events_event *ev = events_after(e, 0);
    assert_non_null(ev);
    assert_int_equal(ev->id, 1);
    assert_string_equal(ev->what, "m1");
    assert_int_equal(ev->latency_ms, 1);
    assert_int_equal(events_after(e, 1)->id, 2);
    assert_null(events_after(e, 3));
    assert_null(events_after(e, 99));
    /* Past the ring: the oldest kept is last - RING + 1, whatever was asked. */
    for (int i = 4; i <= EVENTS_RING + 10; i++)
        note(e, i);
    ev = events_after(e, 0);
    assert_int_equal(ev->id, 11);
    assert_string_equal(ev->what, "m11");
    size_t n = 0;
    uint64_t prev = 0;
    for (ev = events_after(e, 0); ev; ev = events_after(e, ev->id)) {
        assert_true(ev->id > prev);
        prev = ev->id;
        n++;
    }
    assert_int_equal(n, EVENTS_RING);
    assert_int_equal(prev, EVENTS_RING + 10);
    assert_int_equal(events_count(e, EVENTS_METHOD), EVENTS_RING + 10);
    assert_int_equal(events_count(e, EVENTS_TWIN), 0);
    events_free(e);
}

struct seen {
    int n;
    uint64_t last;
    char identity[EVENTS_IDENTITY_MAX];
};

static void on_event(void *ctx, const struct events_event *ev)
{
    struct seen *s = ctx;
    s->n++;
    s->last = ev->id;
    snprintf(s->identity, sizeof s->identity, "%s", ev->identity);
}

static void subscribers(void **state)
{
    (void)state;
    struct events *e = events_new();
    struct seen a = {0}, b = {0};
    assert_int_equal(events_subscribe(e, on_event, &a), ERR_OK);
    assert_int_equal(events_subscribe(e, on_event, &b), ERR_OK);
    assert_int_equal(events_subscribers(e), 2);
    events_note2(e, EVENTS_CONNECTION, "dev", "mod", "connected", NULL, 0, -1);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 1);
    assert_string_equal(a.identity, "dev/mod");
    events_unsubscribe(e, on_event, &a);
    events_unsubscribe(e, on_event, &a); /* unknown: no-op */
    events_note(e, EVENTS_TWIN, "dev", "desired", NULL, 2, -1);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.last, 2);
    events_unsubscribe(e, on_event, &b);
    for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++)
        assert_int_equal(events_subscribe(e, on_event, &a), ERR_OK);
    assert_int_equal(events_subscribe(e, on_event, &b), ERR_TOO_BIG);
    events_free(e);
}

static void strings_are_cut_and_null_is_a_no_op(void **state)
{
    (void)state;
    struct events *e = events_new();
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    events_note(e, EVENTS_C2D, big, big, big, 1, -1);
    const struct events_event *ev = events_after(e, 0);
    assert_int_equal(strlen(ev->identity), EVENTS_IDENTITY_MAX - 1);
    assert_int_equal(strlen(ev->what), EVENTS_TEXT_MAX - 1);
    assert_int_equal(strlen(ev->detail), EVENTS_TEXT_MAX - 1);
    events_note(e, EVENTS_C2D, NULL, NULL, NULL, 0, -1);
    ev = events_after(e, 1);
    assert_string_equal(ev->identity, "");
    events_note(e, EVENTS_KINDS, "x", "y", NULL, 0, -1); /* not a kind: ignored */
    assert_int_equal(events_last_id(e), 2);
    assert_string_equal(events_kind_name(EVENTS_C2D), "c2d");
    assert_string_equal(events_kind_name(EVENTS_KINDS), "unknown");
    events_free(e);
    events_note(NULL, EVENTS_METHOD, "d", "m", NULL, 0, 0);
    assert_null(events_after(NULL, 0));
    assert_int_equal(events_last_id(NULL), 0);
    assert_int_equal(events_count(NULL, EVENTS_METHOD), 0);
    events_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_and_ring),
        cmocka_unit_test(subscribers),
        cmocka_unit_test(strings_are_cut_and_null_is_a_no_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
