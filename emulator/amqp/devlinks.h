/* devlinks.h -- devices and modules over AMQP (issue 22; wire facts in docs/iothub-amqp-devices.md): CBS
 * put-token with a device or module SAS token ({host}/devices/{id}[/modules/{mid}]), renewed in place; the
 * identity's links on the connection -- telemetry (/devices/{id}/messages/events), C2D
 * (/messages/devicebound, accept / reject / release = complete / reject / abandon), direct methods
 * (/methods/devicebound, a request and a response link, paired by com.microsoft:channel-correlation-id), twins (/twin: GET, reported PATCH, desired
 * notifications) -- each identity a struct device_link (hub/device_link.h), so presence, takeover, method
 * calls, twin pushes, C2D and fault injection go through the same hub code as MQTT. One connection may carry
 * several identities (the C SDK multiplexes). amqp.c keeps SASL, $cbs and the connection and hands this module
 * the device put-tokens and links through the devlinks_* hooks. Single-threaded.
 * Tests: tests/integration/sdk_amqp_devices.test.js (Node SDK Amqp/AmqpWs), test_amqp_devices.py (Proton,
 * malformed input); fuzz: tests/fuzz/fuzz_amqp.c (the whole front). */
#ifndef IOTHUB_DEVLINKS_H
#define IOTHUB_DEVLINKS_H

#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct c2d;
struct devlinks;
struct faults;
struct hub;
struct loop;
struct registry;
struct telemetry;

#define DEVLINKS_MAX_IDENTITIES 16 /* identities authenticated on one connection; a 17th put-token gets 403 */

struct devlinks_env {
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    struct c2d *c2d;             /* NULL: C2D links are refused */
    struct telemetry *telemetry; /* NULL: telemetry is accepted and dropped */
    struct faults *faults;       /* may be NULL */
    int64_t token_skew_s;
    size_t max_message; /* the largest message one of our links takes or sends (amqp.h AMQP_MAX_MESSAGE) */
};

/* What the connection does for this module. wake runs the connection's Proton loop and flushes (never
 * re-entrantly: a no-op inside it); close closes the whole connection with a condition (name NULL: a clean
 * close) -- desc must be a string literal; abort drops it without a goodbye. */
struct devlinks_hooks {
    void (*wake)(void *ctx);
    void (*close)(void *ctx, const char *name, const char *desc);
    void (*abort)(void *ctx, const char *reason);
    void *ctx;
};

/* Per connection; env and the hooks are copied (what they point to must outlive it). NULL on ERR_NOMEM. */
struct devlinks *devlinks_new(const struct devlinks_env *env, pn_connection_t *c, const struct devlinks_hooks *h,
                              const char *peer);
/* Calls devlinks_closed; accepts NULL. Before Proton's connection is destroyed. */
void devlinks_free(struct devlinks *dl);

/* Whether a put-token name names a device or module ({host}/devices/{id}[/modules/{mid}], percent-encoded or
 * not, with or without a scheme). */
bool devlinks_is_audience(const char *audience);
/* A put-token for such an audience: the token must be the identity's (auth_check_device), the identity
 * enabled, no refuse-connect fault in force. A first token brings the identity online (takeover of any
 * other connection of it); a later one renews its expiry, links untouched. Returns the CBS status (200, 401,
 * 403 when the connection holds DEVLINKS_MAX_IDENTITIES, 404 unknown identity, 503 refused by a fault) with
 * a reason in why. *expiry (on 200) is the token's se. */
int devlinks_put_token(struct devlinks *dl, const char *audience, const char *token, size_t tlen, int64_t *expiry,
                       char *why, size_t whylen);

/* Link attach hook: true when addr (a path, scheme and host stripped) is a device or module address. */
bool devlinks_claims(const char *addr);
/* Opens or refuses (amqp:not-found, amqp:unauthorized-access...) link l whose address devlinks_claims took.
 * Termini and properties have been echoed by the caller. */
void devlinks_attach(struct devlinks *dl, pn_link_t *l, const char *addr);
/* A whole message m (decoded from raw[0..rawlen)) arrived in delivery d on one of our receivers (telemetry,
 * batched or not; method responses; twin requests). Sets d's outcome; returns false when d must stay unsettled
 * (a fault message asking for a disconnect: the hub drops the connection before it acknowledges). */
bool devlinks_message(struct devlinks *dl, pn_link_t *l, pn_delivery_t *d, pn_message_t *m, const uint8_t *raw,
                      size_t rawlen);
/* Every Proton event of the connection: dispositions of our C2D deliveries, link detach/close. */
void devlinks_event(struct devlinks *dl, pn_event_t *e);

/* The earliest token expiry (se + skew, wall seconds) of the identities held, INT64_MAX when none. */
int64_t devlinks_next_expiry(const struct devlinks *dl);
/* Takes offline (links closed with amqp:unauthorized-access) every identity whose token expired at now_s. */
void devlinks_expire(struct devlinks *dl, int64_t now_s);
/* The transport is gone: every identity goes offline (idempotent). */
void devlinks_closed(struct devlinks *dl);

#endif
