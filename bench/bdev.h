/* bdev.h -- simulated MQTT devices for the benchmark: connect (TLS or plain, SAS-authenticated for the
 * emulator, anonymous for Mosquitto), subscribe to their method-request topic, and answer every request
 * with the request's own payload. Non-blocking on a shared bnet; a cap bounds handshakes in progress. */
#ifndef IOTHUB_BENCH_BDEV_H
#define IOTHUB_BENCH_BDEV_H

#include <stddef.h>
#include <stdint.h>

#include "bnet.h"
#include "btarget.h"

/* MQTT keep-alive of the benchmark's clients: IoT Hub's largest useful value (the hub times a connection out
 * after 1.5x, capped at 1767 s), so no PINGREQ is needed within a run and idle CPU sees no pings. */
#define BDEV_KEEPALIVE_S 1177
/* The MQTT packet cap the benchmark's clients accept. */
#define BDEV_MAX_PACKET (1024u * 1024u)

struct bdev_config {
    const struct btarget *target;
    size_t count;            /* devices bench-000000 ... */
    const uint32_t *src_ips; /* local addresses to spread connections over (network order); NULL: any */
    size_t n_src;
    size_t max_pending; /* connections in progress at once (TCP + TLS + CONNECT + SUBSCRIBE) */
    uint16_t keepalive_s;
};

struct bdev_set;

/* Returns NULL on ERR_NOMEM. The set keeps pointers to cfg->target and cfg->src_ips: they must outlive it. */
struct bdev_set *bdev_set_new(struct bnet *n, const struct bdev_config *cfg);
/* Closes every device and frees the set. Accepts NULL. */
void bdev_set_free(struct bdev_set *s);

/* Connects and subscribes every device, polling n until all are ready, one failed, or timeout_s passed.
 * Returns ERR_OK (all ready; *seconds = time from the first connect to the last SUBACK), ERR_IO (a device
 * failed; bdev_set_error says why) or ERR_TOO_BIG (timeout). */
int bdev_set_connect(struct bdev_set *s, double timeout_s, double *seconds);

size_t bdev_set_ready(const struct bdev_set *s);
/* Devices that were ready and then lost their connection. */
size_t bdev_set_lost(const struct bdev_set *s);
/* Method requests answered so far. */
uint64_t bdev_set_answered(const struct bdev_set *s);
/* The first failure ("" when none). */
const char *bdev_set_error(const struct bdev_set *s);
/* The TLS version and cipher the first device negotiated ("plain", or "" before any connected). */
const char *bdev_set_tls_desc(const struct bdev_set *s);

/* The id of device i: "bench-%06zu". */
void bdev_id(size_t i, char *out, size_t n);

#endif
