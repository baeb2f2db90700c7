/* service_amqp.h -- the service side's AMQP 1.0 transport on Qpid Proton (its proactor, its TLS, its SASL):
 * send one cloud-to-device message to /messages/devicebound and, when asked, receive the feedback records on
 * /messages/serviceBound/feedback (iothub-amqp.md §B.2). Authenticates with SASL PLAIN
 * ({policy}@sas.root.{hub} and a SAS token as the password), which a real hub and the emulator both accept.
 * Below the client: knows nothing of connection strings or token signing (service_client.c does those).
 * Tests: tests/integration/test_service_send.py (against the emulator, end to end). */
#ifndef IOTHUB_SERVICE_AMQP_H
#define IOTHUB_SERVICE_AMQP_H

#include <stddef.h>
#include <stdint.h>

#include "service_result.h"

#define SERVICE_AMQP_MAX_PROPS 32

struct service_amqp_target {
    const char *host;    /* the TCP and TLS host name (SNI, certificate check); also the AMQP Open hostname */
    const char *port;    /* "5671" */
    int tls;             /* 0: plain AMQP (the emulator's --amqp-port, development only) */
    const char *ca_file; /* PEM of trusted CAs; NULL: the system store */
    const char *user;    /* SASL PLAIN authcid: {policy}@sas.root.{hub} */
    const char *password;/* the SAS token */
    int timeout_ms;      /* for the whole exchange (connect, send, and the feedback wait) */
};

struct service_amqp_c2d {
    const char *to;          /* /devices/{id}/messages/devicebound (id percent-encoded) */
    const char *message_id;  /* required: feedback names it */
    const char *ack;         /* NULL, "none", "positive", "negative", "full" (application property iothub-ack) */
    int64_t expiry_ms;       /* absolute wall-clock ms, 0: none (the hub's default TTL) */
    const char *const *keys; /* application properties */
    const char *const *values;
    size_t n_props;
    const uint8_t *body;
    size_t body_len;
    int wait_feedback;       /* keep a feedback receiver until a record for message_id arrives */
};

/* What happens while the exchange runs: accepted once the hub took the message (before any feedback), feedback
 * for each record received (a JSON object, compact text), in order. Either may be NULL. */
struct service_amqp_events {
    void (*accepted)(void *ctx, const char *message_id);
    void (*feedback)(void *ctx, const char *record_json);
    void *ctx;
};

/* Sends m and waits for the hub's disposition (and, with m->wait_feedback, for its feedback record). Returns
 * ERR_OK with *res filled: ANSWERED (accepted; with wait_feedback: and its record arrived), HUB_ERROR
 * (error_name is the AMQP condition, e.g. "amqp:not-found", "amqp:resource-limit-exceeded",
 * "amqp:unauthorized-access"; message its description) or TRANSPORT_ERROR (net says what; a feedback wait that
 * ran out is NET_TIMEOUT). ERR_NOMEM otherwise. Always clean up *res. */
int service_amqp_send_c2d(const struct service_amqp_target *t, const struct service_amqp_c2d *m,
                          const struct service_amqp_events *ev, struct service_client_result *res);

#endif
