/* test_loop.c -- unit tests for emulator/loop (epoll + timer heap + hooks): timer order and ties, cancelling
 * from inside another timer's callback, cancelling the head, ten thousand timers with cancellations, a timer
 * that re-arms itself at 0 ms (must not starve the fds), huge delays, fd add/del from inside callbacks
 * (stale events of the iteration never reach a new registration), hook removal, and loop_poll_now. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "loop.h"

#define MANY 10000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stop_cb(struct loop *l, void *ctx)
{
    loop_stop(l);
}

/* Runs l until a stop timer fires after ms (the loop's own timers run meanwhile). */
static void run_for(struct loop *l, int64_t ms)
{
    assert_non_null(loop_timer_add(l, ms, stop_cb, NULL));
    assert_int_equal(loop_run(l), ERR_OK);
}

/* ---- timers ---- */

struct record {
    int order[64];
    int n;
};

struct rec_timer {
    struct record *rec;
    int id;
};

static void record_cb(struct loop *l, void *ctx)
{
    struct rec_timer *t = ctx;
    t->rec->order[t->rec->n++] = t->id;
}

static void timers_fire_in_order_with_ties_by_insertion(void **state)
{
    struct loop *l = loop_new();
    struct record rec = {.n = 0};
    int64_t delays[] = {30, 10, 20, 10, 0, -5};
    struct rec_timer t[6];
    for (int i = 0; i < 6; i++) {
        t[i] = (struct rec_timer){&rec, i};
        assert_non_null(loop_timer_add(l, delays[i], record_cb, &t[i]));
    }
    run_for(l, 60);
    int want[] = {4, 5, 1, 3, 2, 0}; /* 0 and -5 are both "now": insertion order */
    assert_int_equal(rec.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(rec.order[i], want[i]);
    loop_free(l);
}

struct canceller {
    struct loop_timer *victims[2];
    int fired;
};

static void cancel_others_cb(struct loop *l, void *ctx)
{
    struct canceller *c = ctx;
    c->fired++;
    for (int i = 0; i < 2; i++) {
        loop_timer_cancel(l, c->victims[i]);
        c->victims[i] = NULL;
    }
}

static void must_not_fire_cb(struct loop *l, void *ctx)
{
    fail_msg("a cancelled timer fired");
}

static void cancel_from_inside_another_timer(void **state)
{
    struct loop *l = loop_new();
    struct canceller c = {.fired = 0};
    assert_non_null(loop_timer_add(l, 5, cancel_others_cb, &c));
    /* due in the same pass as the canceller (same delay, added later) and one due much later */
    c.victims[0] = loop_timer_add(l, 5, must_not_fire_cb, NULL);
    c.victims[1] = loop_timer_add(l, 10000, must_not_fire_cb, NULL);
    usleep(20 * 1000); /* both 5 ms timers are due when the loop starts */
    run_for(l, 30);
    assert_int_equal(c.fired, 1);
    loop_free(l);
}

static void cancel_the_head(void **state)
{
    struct loop *l = loop_new();
    struct record rec = {.n = 0};
    struct rec_timer t[4];
    struct loop_timer *h[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct rec_timer){&rec, i};
        h[i] = loop_timer_add(l, 5 + 5 * i, record_cb, &t[i]);
        assert_non_null(h[i]);
    }
    loop_timer_cancel(l, h[0]); /* the head */
    loop_timer_cancel(l, NULL);
    run_for(l, 50);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.order[0], 1);
    assert_int_equal(rec.order[1], 2);
    assert_int_equal(rec.order[2], 3);
    loop_free(l);
}

struct many {
    int64_t when_min[MANY], when_max[MANY];
    int fired[MANY];
    int order[MANY];
    int n;
};

struct many_timer {
    struct many *m;
    int id;
};

static void many_cb(struct loop *l, void *ctx)
{
    struct many_timer *t = ctx;
    t->m->fired[t->id]++;
    t->m->order[t->m->n++] = t->id;
}

static void many_timers_with_cancellations(void **state)
{
    struct loop *l = loop_new();
    struct many *m = calloc(1, sizeof *m);
    struct many_timer *t = calloc(MANY, sizeof *t);
    struct loop_timer **h = calloc(MANY, sizeof *h);
    srand(7);
    for (int i = 0; i < MANY; i++) {
        int64_t d = rand() % 40;
        t[i] = (struct many_timer){m, i};
        m->when_min[i] = now_ms() + d;
        h[i] = loop_timer_add(l, d, many_cb, &t[i]);
        m->when_max[i] = now_ms() + d;
        assert_non_null(h[i]);
    }
    bool cancelled[MANY] = {false};
    for (int i = 0; i < MANY; i += 3) {
        int k = rand() % MANY;
        if (!cancelled[k]) {
            loop_timer_cancel(l, h[k]);
            cancelled[k] = true;
        }
    }
    run_for(l, 200);
    int expected = 0;
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->fired[i], cancelled[i] ? 0 : 1);
        expected += !cancelled[i];
    }
    assert_int_equal(m->n, expected);
    /* heap order: a timer never fires before one that was surely due earlier */
    for (int k = 1; k < m->n; k++)
        assert_true(m->when_min[m->order[k - 1]] <= m->when_max[m->order[k]]);
    free(h);
    free(t);
    free(m);
    loop_free(l);
}

struct rearm {
    int count;
};

static void rearm_cb(struct loop *l, void *ctx)
{
    struct rearm *r = ctx;
    r->count++;
    assert_non_null(loop_timer_add(l, 0, rearm_cb, r));
}

static void on_readable_stop(struct loop *l, int fd, uint32_t events, void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    loop_stop(l);
}

/* A callback that re-arms itself at 0 ms used to keep run_timers busy forever: no fd was ever polled again. */
static void zero_delay_rearm_does_not_starve_fds(void **state)
{
    struct loop *l = loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    struct rearm r = {0};
    int calls = 0;
    assert_non_null(loop_timer_add(l, 0, rearm_cb, &r));
    assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_readable_stop, &calls), ERR_OK);
    alarm(10); /* the old loop hangs here: SIGALRM ends the test as failed */
    assert_int_equal(loop_run(l), ERR_OK);
    alarm(0);
    assert_int_equal(calls, 1);
    assert_true(r.count >= 1);
    loop_del_fd(l, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

static void huge_delays_are_clamped(void **state)
{
    struct loop *l = loop_new();
    /* now + INT64_MAX used to overflow (UBSan aborts on it) */
    struct loop_timer *a = loop_timer_add(l, INT64_MAX, must_not_fire_cb, NULL);
    struct loop_timer *b = loop_timer_add(l, INT64_MAX / 1000 * 999, must_not_fire_cb, NULL);
    assert_non_null(a);
    assert_non_null(b);
    run_for(l, 5);
    loop_timer_cancel(l, a);
    loop_free(l); /* frees b without calling it */
}

/* ---- fds ---- */

struct pair_ctx {
    int fds[2];     /* the read ends of two readable pipes */
    int calls[2];
    int replaced;   /* calls of the callback registered on a reused fd number */
    int spare[2];   /* the pipe whose read end took the freed number */
};

static void on_replaced(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct pair_ctx *p = ctx;
    p->replaced++;
}

/* Whichever runs first removes and closes the other, then registers a fresh, empty pipe on the freed number:
 * the other's event of this iteration must reach neither the old nor the new registration. */
static void on_pair(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct pair_ctx *p = ctx;
    int me = fd == p->fds[0] ? 0 : 1;
    p->calls[me]++;
    int other = p->fds[1 - me];
    if (other < 0)
        return;
    loop_del_fd(l, other);
    close(other);
    p->fds[1 - me] = -1;
    assert_int_equal(pipe(p->spare), 0);
    assert_int_equal(p->spare[0], other); /* lowest free number */
    assert_int_equal(loop_add_fd(l, p->spare[0], EPOLLIN, on_replaced, p), ERR_OK);
    loop_stop(l);
}

static void fd_del_and_reuse_inside_callbacks(void **state)
{
    struct loop *l = loop_new();
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    assert_int_equal(write(a[1], "a", 1), 1);
    assert_int_equal(write(b[1], "b", 1), 1);
    struct pair_ctx p = {.fds = {a[0], b[0]}};
    assert_int_equal(loop_add_fd(l, a[0], EPOLLIN, on_pair, &p), ERR_OK);
    assert_int_equal(loop_add_fd(l, b[0], EPOLLIN, on_pair, &p), ERR_OK);
    assert_int_equal(loop_run(l), ERR_OK);
    assert_int_equal(p.calls[0] + p.calls[1], 1);
    assert_int_equal(p.replaced, 0);
    int alive = p.fds[0] >= 0 ? p.fds[0] : p.fds[1];
    loop_del_fd(l, alive);
    loop_del_fd(l, p.spare[0]);
    close(alive);
    close(p.spare[0]);
    close(p.spare[1]);
    close(a[1]);
    close(b[1]);
    loop_free(l);
}

struct self_del {
    int calls;
    int fd;
};

static void on_self_del(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct self_del *s = ctx;
    s->calls++;
    loop_del_fd(l, fd); /* still readable: must not be called again */
}

static void fd_deletes_itself(void **state)
{
    struct loop *l = loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    struct self_del s = {0, p[0]};
    assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_self_del, &s), ERR_OK);
    run_for(l, 30);
    assert_int_equal(s.calls, 1);
    loop_del_fd(l, p[0]); /* twice is harmless */
    loop_del_fd(l, -1);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

/* ---- hooks ---- */

static void count_hook(struct loop *l, void *ctx)
{
    (*(int *)ctx)++;
}

static void hooks_run_and_can_be_removed(void **state)
{
    struct loop *l = loop_new();
    int a = 0, b = 0;
    assert_int_equal(loop_add_hook(l, count_hook, &a), ERR_OK);
    assert_int_equal(loop_add_hook(l, count_hook, &b), ERR_OK);
    loop_del_hook(l, count_hook, &a);
    loop_del_hook(l, count_hook, &a); /* unknown now: ignored */
    run_for(l, 5);
    assert_int_equal(a, 0);
    assert_true(b >= 1);
    loop_free(l);
}

/* A hook asking loop_poll_now while it has work (its first `work` runs): the loop keeps iterating without
 * blocking while asked, then blocks again (the request is cleared by each wait). */
struct poll_hook {
    int runs, work;
};

static void poll_now_hook(struct loop *l, void *ctx)
{
    struct poll_hook *h = ctx;
    if (h->runs++ < h->work)
        loop_poll_now(l);
}

static void poll_now_skips_one_wait(void **state)
{
    struct loop *l = loop_new();
    struct poll_hook busy = {.work = 1000000}, brief = {.work = 3};
    assert_int_equal(loop_add_hook(l, poll_now_hook, &busy), ERR_OK);
    int64_t t0 = now_ms();
    run_for(l, 100);
    assert_true(busy.runs > 200); /* blocking waits would have given 1 or 2 iterations in 100 ms */
    assert_true(now_ms() - t0 < 1000);
    loop_del_hook(l, poll_now_hook, &busy);
    assert_int_equal(loop_add_hook(l, poll_now_hook, &brief), ERR_OK);
    run_for(l, 100);
    assert_true(brief.runs >= 4);
    assert_true(brief.runs <= 10); /* after the third no wait was skipped */
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_order_with_ties_by_insertion),
        cmocka_unit_test(cancel_from_inside_another_timer),
        cmocka_unit_test(cancel_the_head),
        cmocka_unit_test(many_timers_with_cancellations),
        cmocka_unit_test(zero_delay_rearm_does_not_starve_fds),
        cmocka_unit_test(huge_delays_are_clamped),
        cmocka_unit_test(fd_del_and_reuse_inside_callbacks),
        cmocka_unit_test(fd_deletes_itself),
        cmocka_unit_test(hooks_run_and_can_be_removed),
        cmocka_unit_test(poll_now_skips_one_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
