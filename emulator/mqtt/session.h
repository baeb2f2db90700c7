/* session.h -- one device's MQTT session, as the hub behaves: CONNECT first (SAS authentication against the
 * registry), keep-alive at 1.5x, the hub's SUBSCRIBE and PUBLISH topic rules (anything else closes the
 * connection), method requests and replies, minimal twin GET / reported PATCH, telemetry, token expiry.
 * Transport-agnostic: bytes come in through session_on_input, go out through conn_send. To the hub, a session is
 * a struct device_link (device_link.h); to net, a struct proto (session_proto). */
#ifndef IOTHUB_SESSION_H
#define IOTHUB_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

struct auth;
struct c2d;
struct conn;
struct faults;
struct hub;
struct loop;
struct registry;
struct session;
struct telemetry;

struct session_env {
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    int64_t token_skew_s;
    size_t max_packet;
    struct telemetry *telemetry; /* device-to-cloud messages are kept here (NULL: only counted) */
    struct faults *faults;       /* fault injection and throttling (NULL: none) */
    struct c2d *c2d;             /* cloud-to-device queues (NULL: a devicebound subscription gets nothing) */
};

/* Returns NULL on ERR_NOMEM. env must outlive the session. */
struct session *session_new(const struct session_env *env, struct conn *c);
/* Decodes and handles every whole packet in in (consumed from it). Returns ERR_OK, or ERR_CLOSED when the
 * session has asked its conn to close (protocol violation, auth failure, DISCONNECT). */
int session_on_input(struct session *s, struct buf *in);
/* The connection is closing: leave the hub (pending calls fail), publish the will if any. Idempotent. */
void session_on_close(struct session *s);
/* Frees the session; calls session_on_close first if needed. Accepts NULL. */
void session_free(struct session *s);

/* Hub side: publishes $iothub/methods/POST/{method}/?$rid={rid} at QoS 0 with the payload (len 0 = empty
 * body). The rid comes from this connection's lowercase-hex counter; it is written to rid (>= 17 bytes).
 * Returns ERR_OK or an error from conn_send. */
int session_send_method(struct session *s, const char *method, const uint8_t *payload, size_t len, char *rid);
/* Hub side: closes the connection (takeover, identity disabled or deleted). */
void session_kick(struct session *s, const char *reason);
/* Hub side: publishes $iothub/twin/PATCH/properties/desired/?$version={version} at QoS 0 with the patch.
 * Returns ERR_OK or an error from conn_send. */
int session_push_desired(struct session *s, const uint8_t *patch, size_t len, int64_t version);
/* The MQTT protocol handler for net (every connection gets a session_new with env, which must outlive it). */
void session_proto(struct proto *out, const struct session_env *env);
/* "device1" or "device1/module1". */
const char *session_identity(const struct session *s);

#endif
