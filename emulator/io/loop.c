/* loop.c -- epoll event loop with a binary-heap timer queue and before-wait hooks (see loop.h). */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_HOOKS 8
/* Longest timer delay (about 68 years): larger delays are clamped, so now + delay cannot overflow. */
#define LOOP_MAX_DELAY_MS ((int64_t)INT32_MAX * 1000)

struct loop_timer {
    int64_t when;
    uint64_t seq; /* ties broken by insertion order */
    size_t heap_idx;
    loop_timer_fn fn;
    void *ctx;
};

/* One registration per fd, indexed by fd. */
struct loop_fd {
    loop_io_fn fn;
    void *ctx;
    uint64_t gen; /* bumped on every add/del so stale events of this iteration are ignored */
};

struct loop {
    int epfd;
    volatile sig_atomic_t stop;
    bool poll_now; /* loop_poll_now: the next epoll_wait does not block */
    int64_t now_ms;
    struct loop_fd *fds;
    size_t nfds;
    struct loop_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    struct {
        loop_hook_fn fn;
        void *ctx;
    } hooks[LOOP_MAX_HOOKS];
    int nhooks;
};

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        log_error("epoll_create1: %s", strerror(errno));
        free(l);
        return NULL;
    }
    l->now_ms = monotonic_ms();
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->heap_len; i++)
        free(l->heap[i]);
    free(l->heap);
    free(l->fds);
    close(l->epfd);
    free(l);
}

static int grow_fds(struct loop *l, int fd)
{
    if ((size_t)fd < l->nfds)
        return ERR_OK;
    size_t n = l->nfds ? l->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct loop_fd *p = realloc(l->fds, n * sizeof *p);
    if (!p)
        return ERR_NOMEM;
    memset(p + l->nfds, 0, (n - l->nfds) * sizeof *p);
    l->fds = p;
    l->nfds = n;
    return ERR_OK;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *ctx)
{
    if (fd < 0 || grow_fds(l, fd))
        return ERR_NOMEM;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("epoll_ctl(ADD, %d): %s", fd, strerror(errno));
        return ERR_IO;
    }
    l->fds[fd].fn = fn;
    l->fds[fd].ctx = ctx;
    l->fds[fd].gen++;
    return ERR_OK;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        log_error("epoll_ctl(MOD, %d): %s", fd, strerror(errno));
        return ERR_IO;
    }
    return ERR_OK;
}

void loop_del_fd(struct loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->nfds)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->fds[fd].fn = NULL;
    l->fds[fd].ctx = NULL;
    l->fds[fd].gen++;
}

/* ---- timer heap ---- */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, l->heap[parent]))
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->heap_len)
            break;
        if (child + 1 < l->heap_len && timer_before(l->heap[child + 1], l->heap[child]))
            child++;
        if (!timer_before(l->heap[child], t))
            break;
        heap_set(l, i, l->heap[child]);
        i = child;
    }
    heap_set(l, i, t);
}

static void heap_remove(struct loop *l, size_t i)
{
    l->heap_len--;
    if (i == l->heap_len)
        return;
    struct loop_timer *moved = l->heap[l->heap_len];
    heap_set(l, i, moved);
    heap_down(l, i);
    heap_up(l, moved->heap_idx);
}

struct loop_timer *loop_timer_add(struct loop *l, int64_t delay_ms, loop_timer_fn fn, void *ctx)
{
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        struct loop_timer **p = realloc(l->heap, cap * sizeof *p);
        if (!p)
            return NULL;
        l->heap = p;
        l->heap_cap = cap;
    }
    struct loop_timer *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    if (delay_ms < 0)
        delay_ms = 0;
    else if (delay_ms > LOOP_MAX_DELAY_MS)
        delay_ms = LOOP_MAX_DELAY_MS;
    t->when = monotonic_ms() + delay_ms;
    t->seq = ++l->timer_seq;
    t->fn = fn;
    t->ctx = ctx;
    heap_set(l, l->heap_len++, t);
    heap_up(l, t->heap_idx);
    return t;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    if (!t)
        return;
    heap_remove(l, t->heap_idx);
    free(t);
}

int64_t loop_now_ms(struct loop *l)
{
    return l->now_ms;
}

int64_t loop_wall_s(struct loop *l)
{
    (void)l;
    return (int64_t)time(NULL);
}

int loop_add_hook(struct loop *l, loop_hook_fn fn, void *ctx)
{
    if (l->nhooks == LOOP_MAX_HOOKS)
        return ERR_NOMEM;
    l->hooks[l->nhooks].fn = fn;
    l->hooks[l->nhooks].ctx = ctx;
    l->nhooks++;
    return ERR_OK;
}

void loop_del_hook(struct loop *l, loop_hook_fn fn, void *ctx)
{
    for (int i = 0; i < l->nhooks; i++) {
        if (l->hooks[i].fn == fn && l->hooks[i].ctx == ctx) {
            memmove(&l->hooks[i], &l->hooks[i + 1], (size_t)(l->nhooks - i - 1) * sizeof l->hooks[0]);
            l->nhooks--;
            return;
        }
    }
}

/* Runs the timers that were due when it started. A timer armed by a callback waits for the next iteration
 * even when it is already due, so a callback that re-arms itself with delay 0 cannot starve the fds. */
static void run_timers(struct loop *l)
{
    uint64_t last_seq = l->timer_seq;
    int64_t now = l->now_ms;
    while (l->heap_len > 0 && l->heap[0]->when <= now && l->heap[0]->seq <= last_seq) {
        struct loop_timer *t = l->heap[0];
        heap_remove(l, 0);
        loop_timer_fn fn = t->fn;
        void *ctx = t->ctx;
        free(t);
        fn(l, ctx);
        l->now_ms = monotonic_ms();
    }
}

static int next_timeout(struct loop *l)
{
    if (l->heap_len == 0)
        return 1000;
    int64_t d = l->heap[0]->when - monotonic_ms();
    if (d < 0)
        return 0;
    return d > 1000 ? 1000 : (int)d;
}

int loop_run(struct loop *l)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    uint64_t gens[LOOP_MAX_EVENTS];
    l->stop = 0;
    while (!l->stop) {
        for (int i = 0; i < l->nhooks; i++)
            l->hooks[i].fn(l, l->hooks[i].ctx);
        int n = epoll_wait(l->epfd, events, LOOP_MAX_EVENTS, l->poll_now ? 0 : next_timeout(l));
        l->poll_now = false;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("epoll_wait: %s", strerror(errno));
            return ERR_IO;
        }
        l->now_ms = monotonic_ms();
        for (int i = 0; i < n; i++) {
            int fd = (int)events[i].data.u64;
            gens[i] = (size_t)fd < l->nfds ? l->fds[fd].gen : 0;
        }
        for (int i = 0; i < n; i++) {
            int fd = (int)events[i].data.u64;
            if ((size_t)fd >= l->nfds || l->fds[fd].gen != gens[i] || !l->fds[fd].fn)
                continue; /* removed (or replaced) earlier in this iteration */
            l->fds[fd].fn(l, fd, events[i].events, l->fds[fd].ctx);
        }
        run_timers(l);
    }
    return ERR_OK;
}

void loop_poll_now(struct loop *l)
{
    l->poll_now = true;
}

void loop_stop(struct loop *l)
{
    l->stop = 1;
}
