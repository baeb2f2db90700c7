/* amqp.h -- the AMQP 1.0 front end: one Qpid Proton connection driver per connection inside our own event
 * loop (no proactor, no threads), fed plaintext by net (TLS and WebSocket are done outside). Our own SASL
 * step first (sasl.h), then Proton; Proton's output goes through the frame normaliser (frames.h) to
 * conn_send. Serves `$cbs` put-token (cbs.h) and the hub's service links; links need a valid token.
 * Timers: pn_transport_tick (idle timeout, heartbeats), the authentication deadline, token expiry.
 * The four functions below are the struct proto (io/proto.h) handler net drives. Tests:
 * tests/unit/test_amqp.c (a Proton client in-process), tests/integration/test_amqp.py; fuzz:
 * tests/fuzz/fuzz_amqp.c. */
#ifndef IOTHUB_AMQP_H
#define IOTHUB_AMQP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

struct auth;
struct c2d;
struct eventhub;
struct conn;
struct faults;
struct hub;
struct loop;
struct registry;
struct telemetry;

#define AMQP_MAX_FRAME 65536u           /* our max-frame-size; Proton closes a connection sending larger */
#define AMQP_MAX_MESSAGE (256u * 1024u) /* one incoming message (IoT Hub C2D messages are at most 64 KiB) */
#define AMQP_IDLE_TIMEOUT_MS 240000u    /* advertised in Open: the client must send something this often */

struct amqp_env {
    struct loop *loop;
    struct auth *auth;
    struct c2d *c2d;      /* cloud-to-device queues (NULL: /messages/devicebound is not found) */
    struct eventhub *eventhub; /* the Event Hub-compatible endpoint (NULL: none; eventhub.h) */
    int64_t token_skew_s; /* seconds a SAS token stays valid after its se */
    int auth_timeout_s;   /* from the first byte to an accepted token (SASL PLAIN or CBS); 0 means 30 */
    uint32_t idle_timeout_ms; /* advertised in Open; 0 means AMQP_IDLE_TIMEOUT_MS */
    /* Devices and modules over AMQP (devlinks.h); hub NULL: device put-tokens get 404, device links not-found. */
    struct hub *hub;
    struct registry *reg;
    struct telemetry *telemetry; /* may be NULL */
    struct faults *faults;       /* may be NULL */
};

/* struct proto handler (ctx is a struct amqp_env that outlives every connection). Returns NULL on
 * ERR_NOMEM. */
void *amqp_open(void *env, struct conn *c);
/* Consumes every byte of in (SASL frames whole; Proton buffers partial AMQP frames itself). Returns ERR_OK,
 * or ERR_CLOSED once the connection has been asked to close (bad input, failed SASL, deadline). */
int amqp_input(void *state, struct buf *in);
/* The transport is gone: stop Proton, cancel timers. Idempotent. */
void amqp_closed(void *state);
/* Frees the state (calls amqp_closed first if needed). Accepts NULL. */
void amqp_free(void *state);
/* The front as net sees it (name "amqp"); env must outlive it. */
void amqp_proto(struct proto *out, const struct amqp_env *env);

#endif
