/* loop.h -- the emulator's single-threaded event loop: epoll for file descriptors, a timer heap, and hooks
 * run before each wait. No locks anywhere: everything happens on this one thread. */
#ifndef IOTHUB_LOOP_H
#define IOTHUB_LOOP_H

#include <stdint.h>

struct loop;
struct loop_timer;

typedef void (*loop_io_fn)(struct loop *l, int fd, uint32_t events, void *ctx);
typedef void (*loop_timer_fn)(struct loop *l, void *ctx);
typedef void (*loop_hook_fn)(struct loop *l, void *ctx);

/* Returns NULL on failure (logged). */
struct loop *loop_new(void);
/* Frees the loop and any timers still armed (their callbacks are not called). Accepts NULL. */
void loop_free(struct loop *l);

/* events are EPOLLIN / EPOLLOUT / EPOLLRDHUP (level-triggered). Returns ERR_OK or ERR_IO. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *ctx);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Safe to call from inside that fd's own callback: no further event of this iteration reaches it. */
void loop_del_fd(struct loop *l, int fd);

/* One-shot timer firing after delay_ms (negative counts as 0; over about 68 years is clamped). Returns NULL on
 * ERR_NOMEM. The handle is valid until the timer fires (the callback is the last use: clear your copy of the
 * handle there) or is cancelled. A timer armed from a timer callback fires at the next iteration at the
 * earliest, after the fds have been polled. */
struct loop_timer *loop_timer_add(struct loop *l, int64_t delay_ms, loop_timer_fn fn, void *ctx);
/* Cancels and frees an armed timer. Accepts NULL. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* Monotonic milliseconds, refreshed once per loop iteration. */
int64_t loop_now_ms(struct loop *l);
/* Wall-clock seconds since the epoch (for SAS expiry). */
int64_t loop_wall_s(struct loop *l);

/* Hooks run, in the order added, after event dispatch and before the next wait (reaping closed
 * connections, driving libmicrohttpd). At most 8. Returns ERR_OK or ERR_NOMEM. */
int loop_add_hook(struct loop *l, loop_hook_fn fn, void *ctx);
/* Removes the hook added with (fn, ctx); unknown pairs are ignored. Not from inside a hook. */
void loop_del_hook(struct loop *l, loop_hook_fn fn, void *ctx);

/* Makes the next wait return at once (the fds are still polled): there is work that no fd will report, such
 * as input OpenSSL already holds for a connection whose turn ended (see net.c). Call from a callback or a hook;
 * each wait clears it. */
void loop_poll_now(struct loop *l);

/* Runs until loop_stop. Returns ERR_OK, or ERR_IO when epoll_wait fails. */
int loop_run(struct loop *l);
/* Makes loop_run return after the current iteration. Async-signal-safe. */
void loop_stop(struct loop *l);

#endif
