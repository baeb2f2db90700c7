/* eventhub.h -- the built-in Event Hub-compatible endpoint on the AMQP front (iothub-amqp.md §B.1, checklist
 * §B.3.8): `$management` READ (com.microsoft:eventhub, com.microsoft:partition), receiver links
 * {eh}/ConsumerGroups/{cg}/Partitions/{p} (with or without amqps://host/) with the selector filter
 * (ehfilter.h), events streamed from the hub's event log (hub/eventlog.h) within link credit, epoch receivers
 * (com.microsoft:epoch, amqp:link:stolen), runtime metrics in delivery annotations, and the IoT Hub-host
 * redirect (messages/events/... detached with amqp:link:redirect). Token checks are ehauth.h; amqp.c keeps
 * SASL, $cbs and the claims, and hands this module the links it does not serve itself through the
 * eventhub_conn_* hooks. Single-threaded. Tests: tests/integration/eventhub.test.js (Node), test_eventhub.py
 * (Python); fuzz: tests/fuzz/fuzz_amqp.c (the whole front), fuzz_ehfilter.c. */
#ifndef IOTHUB_EVENTHUB_H
#define IOTHUB_EVENTHUB_H

#include <proton/connection.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct eventlog;
struct loop;
struct eventhub;
struct eventhub_conn;

struct eventhub_config {
    struct loop *loop;
    struct eventlog *log;
    struct auth *auth;
    const char *hub_name;             /* the Event Hub-compatible name (EntityPath) */
    const char *const *aliases;       /* more names accepted for the entity (first labels of the host names) */
    size_t n_aliases;
    const char *const *hosts;         /* host names accepted in audiences and tokens */
    size_t n_hosts;
    const char *redirect_host;        /* where amqp:link:redirect points */
    int redirect_port;                /* the AMQPS port */
};

/* Copies the config (strings included). Returns NULL on ERR_NOMEM. */
struct eventhub *eventhub_new(const struct eventhub_config *cfg);
void eventhub_free(struct eventhub *eh);
const char *eventhub_name(const struct eventhub *eh);

/* $cbs hooks (amqp.c): whether a put-token name is an Event Hubs audience, and its check (ehauth_verify). */
bool eventhub_is_audience(const struct eventhub *eh, const char *audience);
int eventhub_verify_token(const struct eventhub *eh, const char *audience, const char *token, size_t tlen,
                          int64_t now_s, int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen);
/* SASL PLAIN hook: the redirect samples' IoT Hub token for {host}/messages/events. */
int eventhub_verify_plain(const struct eventhub *eh, const char *token, size_t tlen, int64_t now_s, int64_t skew_s,
                          int64_t *expiry, char *norm, char *why, size_t whylen);

/* Link attach hook: true when this endpoint serves addr (the address of the remote source when we send,
 * of the remote target when we receive): `$management`, {eh}/..., messages/events/... */
bool eventhub_claims(const struct eventhub *eh, const char *addr, bool we_receive);

/* Per AMQP connection. wake(ctx) must run the connection's Proton event loop and flush its output; it is
 * called (never re-entrantly) after events were queued on the connection from outside its own input. */
struct eventhub_conn *eventhub_conn_new(struct eventhub *eh, pn_connection_t *c, void (*wake)(void *), void *ctx,
                                        const char *peer);
/* Attaches (or refuses, or redirects) link l whose address eventhub_claims accepted. Termini and properties
 * have been echoed by the caller; this opens or closes the link. */
void eventhub_conn_attach(struct eventhub_conn *ec, pn_link_t *l, const char *addr);
/* A message arrived on one of our receiving links ($management requests); the caller settles it. */
void eventhub_conn_message(struct eventhub_conn *ec, pn_link_t *l, pn_message_t *m);
/* Every Proton event of the connection (flow, link close); others are ignored. */
void eventhub_conn_event(struct eventhub_conn *ec, pn_event_t *e);
/* The transport is gone: stop streaming to it (idempotent). */
void eventhub_conn_closed(struct eventhub_conn *ec);
/* Calls eventhub_conn_closed; accepts NULL. Before Proton's connection is destroyed. */
void eventhub_conn_free(struct eventhub_conn *ec);

#endif
