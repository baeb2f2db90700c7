/* service_amqp.c -- one C2D send (and its feedback) over AMQP 1.0 with Qpid Proton's proactor (see
 * service_amqp.h). One connection, one session, a sender on /messages/devicebound (unsettled: the hub's
 * disposition is the answer) and, for the feedback wait, a receiver on /messages/serviceBound/feedback
 * attached before the send so no record is missed. Errors become a struct service_client_result. */
#include "service_amqp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/ssl.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "err.h"
#include "log.h"

#define FEEDBACK_CREDIT 10
#define FEEDBACK_MAX_BYTES (1024 * 1024)

struct run {
    const struct service_amqp_target *t;
    const struct service_amqp_c2d *m;
    struct service_amqp_events ev;
    struct service_client_result *res;
    pn_connection_t *conn;
    pn_link_t *sender, *receiver;
    int sent, accepted, got_feedback, finished, rc;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Ends the exchange with this outcome (the first one counts) and closes the connection. */
static void finish(struct run *r, enum service_client_kind kind, enum service_client_net net, const char *name,
                   const char *message)
{
    if (r->finished)
        return;
    r->finished = 1;
    r->res->kind = kind;
    r->res->net = net;
    r->res->error_name = dup_or_null(name);
    r->res->message = dup_or_null(message && *message ? message : name);
    if (r->conn)
        pn_connection_close(r->conn);
}

static void finish_condition(struct run *r, pn_condition_t *c, const char *fallback)
{
    const char *name = c && pn_condition_is_set(c) ? pn_condition_get_name(c) : NULL;
    const char *desc = c && pn_condition_is_set(c) ? pn_condition_get_description(c) : NULL;
    finish(r, SERVICE_CLIENT_HUB_ERROR, SERVICE_CLIENT_NET_NONE, name ? name : "amqp:internal-error",
           desc && *desc ? desc : fallback);
}

/* A transport that ended before the exchange did: why, sorted as the REST client sorts it. */
static void finish_transport(struct run *r, pn_condition_t *c)
{
    const char *name = c && pn_condition_is_set(c) ? pn_condition_get_name(c) : "";
    const char *desc = c && pn_condition_is_set(c) ? pn_condition_get_description(c) : "";
    char text[512];
    snprintf(text, sizeof text, "%s%s%s", name ? name : "", desc && *desc ? ": " : "", desc ? desc : "");
    if (name && strcmp(name, "amqp:unauthorized-access") == 0) { /* SASL refused: a hub answer */
        finish(r, SERVICE_CLIENT_HUB_ERROR, SERVICE_CLIENT_NET_NONE, name, desc);
        return;
    }
    enum service_client_net net = SERVICE_CLIENT_NET_RESET;
    if (name && strcmp(name, "proton:io") == 0 && !r->sent)
        net = SERVICE_CLIENT_NET_CONNECT;
    if (strstr(text, "SSL") || strstr(text, "certificate") || strstr(text, "TLS"))
        net = SERVICE_CLIENT_NET_TLS;
    finish(r, SERVICE_CLIENT_TRANSPORT_ERROR, net, NULL, *text ? text : "the connection closed");
}

static int put_props(pn_message_t *msg, const struct service_amqp_c2d *m)
{
    pn_data_t *p = pn_message_properties(msg);
    int rc = pn_data_put_map(p);
    pn_data_enter(p);
    for (size_t i = 0; !rc && i < m->n_props; i++) {
        rc = pn_data_put_string(p, pn_bytes(strlen(m->keys[i]), m->keys[i]));
        rc = rc ? rc : pn_data_put_string(p, pn_bytes(strlen(m->values[i]), m->values[i]));
    }
    if (!rc && m->ack && *m->ack) {
        static const char key[] = "iothub-ack";
        rc = pn_data_put_string(p, pn_bytes(sizeof key - 1, key));
        rc = rc ? rc : pn_data_put_string(p, pn_bytes(strlen(m->ack), m->ack));
    }
    pn_data_exit(p);
    return rc;
}

static void send_message(struct run *r)
{
    const struct service_amqp_c2d *m = r->m;
    pn_message_t *msg = pn_message();
    if (!msg) {
        r->rc = ERR_NOMEM;
        finish(r, SERVICE_CLIENT_TRANSPORT_ERROR, SERVICE_CLIENT_NET_OTHER, NULL, "out of memory");
        return;
    }
    pn_msgid_t id = {.type = PN_STRING, .u.as_bytes = pn_bytes(strlen(m->message_id), m->message_id)};
    pn_message_set_id(msg, id);
    pn_message_set_address(msg, m->to);
    if (m->expiry_ms)
        pn_message_set_expiry_time(msg, (pn_timestamp_t)m->expiry_ms);
    pn_message_set_inferred(msg, true); /* the body as one data section, as the SDKs send it */
    int rc = pn_data_put_binary(pn_message_body(msg), pn_bytes(m->body_len, (const char *)m->body));
    rc = rc ? rc : put_props(msg, m);
    pn_delivery(r->sender, pn_dtag("c2d", 3));
    if (rc || pn_message_send(msg, r->sender, NULL) < 0) {
        finish(r, SERVICE_CLIENT_TRANSPORT_ERROR, SERVICE_CLIENT_NET_OTHER, NULL, "cannot encode the message");
    } else {
        r->sent = 1;
        log_debug("amqp: message %s sent to %s", m->message_id, m->to);
    }
    pn_message_free(msg);
}

static void on_open(struct run *r, pn_connection_t *c)
{
    pn_connection_open(c);
    pn_session_t *s = pn_session(c);
    pn_session_open(s);
    r->sender = pn_sender(s, "iothub-service-c2d");
    pn_terminus_set_address(pn_link_target(r->sender), "/messages/devicebound");
    pn_link_set_snd_settle_mode(r->sender, PN_SND_UNSETTLED);
    pn_link_open(r->sender);
    if (r->m->wait_feedback) {
        r->receiver = pn_receiver(s, "iothub-service-feedback");
        pn_terminus_set_address(pn_link_source(r->receiver), "/messages/serviceBound/feedback");
        pn_link_open(r->receiver);
        pn_link_flow(r->receiver, FEEDBACK_CREDIT);
    }
}

static void sender_settled(struct run *r, pn_delivery_t *d)
{
    uint64_t state = pn_delivery_remote_state(d);
    if (state == PN_ACCEPTED) {
        r->accepted = 1;
        log_debug("amqp: accepted by the hub");
        if (r->ev.accepted)
            r->ev.accepted(r->ev.ctx, r->m->message_id);
        if (!r->m->wait_feedback || r->got_feedback)
            finish(r, SERVICE_CLIENT_ANSWERED, SERVICE_CLIENT_NET_NONE, NULL, NULL);
    } else if (state == PN_REJECTED) {
        finish_condition(r, pn_disposition_condition(pn_delivery_remote(d)), "the hub rejected the message");
    } else if (state) {
        finish(r, SERVICE_CLIENT_HUB_ERROR, SERVICE_CLIENT_NET_NONE, "amqp:released",
               "the hub did not take the message (released)");
    }
    if (state)
        pn_delivery_settle(d);
}

/* One feedback delivery: a JSON array of records (a data section, or an amqp-value string). */
static void feedback_received(struct run *r, pn_delivery_t *d)
{
    size_t n = pn_delivery_pending(d);
    char *buf = n <= FEEDBACK_MAX_BYTES ? malloc(n ? n : 1) : NULL;
    ssize_t got = buf ? pn_link_recv(r->receiver, buf, n) : -1;
    pn_message_t *msg = got >= 0 ? pn_message() : NULL;
    json_t *records = NULL;
    if (msg && pn_message_decode(msg, buf, (size_t)got) == 0) {
        pn_data_t *body = pn_message_body(msg);
        pn_data_rewind(body);
        if (pn_data_next(body) && (pn_data_type(body) == PN_BINARY || pn_data_type(body) == PN_STRING)) {
            pn_bytes_t b = pn_data_type(body) == PN_BINARY ? pn_data_get_binary(body) : pn_data_get_string(body);
            records = json_loadb(b.start, b.size, 0, NULL);
        }
    }
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text && r->ev.feedback)
            r->ev.feedback(r->ev.ctx, text);
        free(text);
        const char *mid = json_string_value(json_object_get(rec, "originalMessageId"));
        if (mid && strcmp(mid, r->m->message_id) == 0)
            r->got_feedback = 1;
    }
    if (!json_is_array(records))
        log_warn("amqp: a feedback message that is not a JSON array of records; ignored");
    json_decref(records);
    pn_message_free(msg);
    free(buf);
    pn_delivery_update(d, PN_ACCEPTED);
    pn_delivery_settle(d);
    pn_link_flow(r->receiver, 1);
    if (r->got_feedback && r->accepted)
        finish(r, SERVICE_CLIENT_ANSWERED, SERVICE_CLIENT_NET_NONE, NULL, NULL);
}

static void on_delivery(struct run *r, pn_delivery_t *d)
{
    pn_link_t *l = pn_delivery_link(d);
    if (l == r->sender && pn_delivery_updated(d))
        sender_settled(r, d);
    else if (l == r->receiver && pn_delivery_readable(d) && !pn_delivery_partial(d))
        feedback_received(r, d);
}

/* Handles one event; returns 0 once the proactor has nothing left to do. */
static int handle(struct run *r, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_CONNECTION_INIT: on_open(r, pn_event_connection(e)); break;
    case PN_LINK_FLOW:
        if (pn_event_link(e) == r->sender && !r->sent && !r->finished && pn_link_credit(r->sender) > 0)
            send_message(r);
        break;
    case PN_DELIVERY: on_delivery(r, pn_event_delivery(e)); break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        finish_condition(r, pn_link_remote_condition(pn_event_link(e)), "the hub closed the link");
        break;
    case PN_CONNECTION_REMOTE_CLOSE:
        finish_condition(r, pn_connection_remote_condition(pn_event_connection(e)), "the hub closed the connection");
        pn_connection_close(pn_event_connection(e));
        break;
    case PN_TRANSPORT_CLOSED: /* our only connection is over; a pending timeout would keep the proactor active */
        finish_transport(r, pn_transport_condition(pn_event_transport(e)));
        pn_proactor_cancel_timeout(pn_event_proactor(e));
        break;
    case PN_PROACTOR_TIMEOUT:
        finish(r, SERVICE_CLIENT_TRANSPORT_ERROR, SERVICE_CLIENT_NET_TIMEOUT, NULL,
               r->accepted ? "the message was accepted; its feedback record did not come in time"
                           : "no answer from the hub in time");
        pn_proactor_disconnect(pn_event_proactor(e), NULL); /* a connection still connecting ends too */
        break;
    case PN_PROACTOR_INACTIVE: return 0;
    default: break;
    }
    return 1;
}

static int configure_tls(struct run *r, pn_transport_t *tr)
{
    pn_ssl_domain_t *dom = pn_ssl_domain(PN_SSL_MODE_CLIENT);
    int rc = dom ? 0 : -1;
    if (!rc && r->t->ca_file)
        rc = pn_ssl_domain_set_trusted_ca_db(dom, r->t->ca_file);
    if (!rc)
        rc = pn_ssl_domain_set_peer_authentication(dom, PN_SSL_VERIFY_PEER_NAME, NULL);
    pn_ssl_t *ssl = rc ? NULL : pn_ssl(tr);
    if (ssl)
        rc = pn_ssl_init(ssl, dom, NULL);
    if (!rc && ssl)
        rc = pn_ssl_set_peer_hostname(ssl, r->t->host);
    if (dom)
        pn_ssl_domain_free(dom); /* the transport keeps its own reference */
    return rc || !ssl ? -1 : 0;
}

int service_amqp_send_c2d(const struct service_amqp_target *t, const struct service_amqp_c2d *m,
                          const struct service_amqp_events *ev, struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    struct run r = {.t = t, .m = m, .res = res};
    if (ev)
        r.ev = *ev;
    pn_proactor_t *p = pn_proactor();
    r.conn = pn_connection();
    pn_transport_t *tr = pn_transport();
    if (!p || !r.conn || !tr) { /* each on its own: none owns the others yet */
        if (tr)
            pn_transport_free(tr);
        if (r.conn)
            pn_connection_free(r.conn);
        if (p)
            pn_proactor_free(p);
        return ERR_NOMEM;
    }
    pn_connection_set_container(r.conn, "iothub-service");
    pn_connection_set_hostname(r.conn, t->host);
    pn_connection_set_user(r.conn, t->user);
    pn_connection_set_password(r.conn, t->password);
    pn_sasl_t *sasl = pn_sasl(tr);
    pn_sasl_allowed_mechs(sasl, "PLAIN");
    pn_sasl_set_allow_insecure_mechs(sasl, !t->tls); /* plain AMQP is for the emulator's dev port */
    if (t->tls && configure_tls(&r, tr)) {
        finish(&r, SERVICE_CLIENT_TRANSPORT_ERROR, SERVICE_CLIENT_NET_TLS, NULL,
               t->ca_file ? "cannot use the CA file" : "cannot set up TLS");
        pn_transport_free(tr);
        pn_connection_free(r.conn);
        pn_proactor_free(p);
        return ERR_OK;
    }
    char addr[512];
    pn_proactor_addr(addr, sizeof addr, t->host, t->port);
    pn_proactor_connect2(p, r.conn, tr, addr);
    pn_proactor_set_timeout(p, (pn_millis_t)(t->timeout_ms > 0 ? t->timeout_ms : 60000));
    int more = 1;
    while (more) {
        pn_event_batch_t *batch = pn_proactor_wait(p);
        pn_event_t *e;
        while (more && (e = pn_event_batch_next(batch)))
            more = handle(&r, e);
        pn_proactor_done(p, batch);
    }
    if (!r.finished)
        finish(&r, SERVICE_CLIENT_TRANSPORT_ERROR, SERVICE_CLIENT_NET_RESET, NULL, "the connection closed");
    pn_proactor_free(p); /* frees the connection and the transport */
    return r.rc;
}
