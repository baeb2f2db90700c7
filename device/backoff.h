/* backoff.h -- reconnect delays: exponential back-off with full jitter ("Exponential Backoff And Jitter",
 * AWS architecture blog): the ceiling doubles from `initial_ms` per consecutive failure up to `max_ms`, and
 * the delay is uniform in [0, ceiling]. Pure: the caller supplies the random number, so tests are
 * deterministic. Internal to device/. Tests: tests/unit/test_device_backoff.c. */
#ifndef IOTHUB_BACKOFF_H
#define IOTHUB_BACKOFF_H

#include <stdint.h>

#define BACKOFF_DEFAULT_INITIAL_MS 1000u
#define BACKOFF_DEFAULT_MAX_MS 30000u
#define BACKOFF_LIMIT_MS 86400000u /* one day: the largest max_ms accepted */

struct backoff {
    uint32_t initial_ms; /* ceiling of the first retry; > 0 */
    uint32_t max_ms;     /* ceiling never exceeds this; >= initial_ms and <= BACKOFF_LIMIT_MS */
};

/* The ceiling for the attempt-th consecutive failure (attempt >= 1; 0 is treated as 1):
 * min(max_ms, initial_ms * 2^(attempt-1)), without overflow for any attempt. */
uint32_t backoff_ceiling_ms(const struct backoff *b, unsigned attempt);
/* Full jitter: random % (ceiling + 1), so the result is in [0, ceiling]. */
uint32_t backoff_delay_ms(const struct backoff *b, unsigned attempt, uint32_t random);

#endif
