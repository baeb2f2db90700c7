/* backoff.c -- exponential back-off ceilings with full jitter (see backoff.h). */
#include "backoff.h"

uint32_t backoff_ceiling_ms(const struct backoff *b, unsigned attempt)
{
    uint64_t ceiling = b->initial_ms ? b->initial_ms : 1;
    for (unsigned i = 1; i < attempt && ceiling < b->max_ms; i++)
        ceiling *= 2;
    if (ceiling > b->max_ms)
        ceiling = b->max_ms;
    return (uint32_t)ceiling;
}

uint32_t backoff_delay_ms(const struct backoff *b, unsigned attempt, uint32_t random)
{
    uint64_t span = (uint64_t)backoff_ceiling_ms(b, attempt) + 1;
    return (uint32_t)(random % span);
}
