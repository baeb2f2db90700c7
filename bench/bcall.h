/* bcall.h -- the benchmark's method callers, one call in flight per caller (closed loop). For the emulator
 * a caller is an HTTP/1.1 keep-alive connection posting /twins/{id}/methods; for Mosquitto it is an MQTT
 * requester that publishes to a device's request topic and waits on its own reply topic (same hops: caller
 * -> server -> device -> server -> caller). Calls go round-robin over the devices bench-000000... */
#ifndef IOTHUB_BENCH_BCALL_H
#define IOTHUB_BENCH_BCALL_H

#include <stddef.h>
#include <stdint.h>

#include "bnet.h"
#include "btarget.h"

struct bcall_config {
    const struct btarget *target;
    size_t callers; /* calls in flight */
    size_t devices; /* devices to spread the calls over */
};

struct bcall_result {
    uint64_t calls;  /* completed within the measuring window */
    uint64_t errors; /* wrong status, wrong payload, lost connection, or still unanswered after the drain */
    double seconds;  /* the measuring window */
    double calls_per_s;
    double p50, p90, p99, max; /* seconds, over calls started within the window */
    size_t samples;
    double bench_cpu;  /* CPU used by this process / wall time, over warm-up + window (1.0 = one core) */
    double server_cpu; /* the same for the server (target->pid), or -1 */
    double server_cpu_s_per_10k; /* the server's utime+stime (/proc) per 10,000 calls over the same span, or -1 */
    char error[160];   /* the first error */
};

struct bcall_set;

/* Returns NULL on ERR_NOMEM. cfg->target must outlive the set. */
struct bcall_set *bcall_set_new(struct bnet *n, const struct bcall_config *cfg);
void bcall_set_free(struct bcall_set *s);
/* Connects every caller (and subscribes the MQTT requesters). ERR_OK, ERR_IO (bcall_set_error) or
 * ERR_TOO_BIG after timeout_s. */
int bcall_set_connect(struct bcall_set *s, double timeout_s);
/* The JSON value sent as the method payload and expected back (copied). ERR_OK or ERR_NOMEM. */
int bcall_set_payload(struct bcall_set *s, const char *json, size_t len);
/* Runs calls for warmup_s, then measures for measure_s, then stops issuing and waits up to drain_s for
 * the calls still in flight. ERR_OK, or ERR_IO when a caller broke (out->error says why). */
int bcall_set_run(struct bcall_set *s, double warmup_s, double measure_s, double drain_s, struct bcall_result *out);
const char *bcall_set_error(const struct bcall_set *s);

#endif
