/* amqp.c -- the AMQP 1.0 front end over Proton's connection driver (see amqp.h): SASL by sasl.c, then
 * Proton in server mode with no SASL layer of its own; every event handled here; output normalised by
 * frames.c and queued with conn_send; one loop timer per connection for pn_transport_tick, the
 * authentication deadline and token expiry. Links: `$cbs` (put-token), `/messages/devicebound` (C2D, when
 * the hub has C2D queues), `/messages/serviceBound/feedback`; anything else is amqp:not-found. */
#include "amqp.h"

#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "c2d.h"
#include "cbs.h"
#include "conn.h"
#include "delivery.h"
#include "devlinks.h"
#include "err.h"
#include "eventhub.h"
#include "frames.h"
#include "log.h"
#include "loop.h"
#include "sasl.h"

#define AMQP_CBS_CREDIT 16  /* put-token requests in flight per link */
#define AMQP_C2D_CREDIT 100 /* C2D messages in flight per link */
#define AMQP_MAX_QUEUED 64  /* replies waiting for credit on one link before the connection is closed */
#define AMQP_OUT_MAX (16u * 1024u * 1024u)
#define AMQP_IN_MAX (1u << 20) /* input held for Proton: partial frames, and what its read buffer could not take yet */
#define AMQP_MAX_LINKS 64   /* links open at once on one connection; more are refused */
#define AMQP_CHANNEL_MAX 15 /* sessions: channels 0..15 */

/* What a link is for; stored with the claim slot that authorised it in the link's context pointer. */
enum link_kind { LINK_UNKNOWN, LINK_CBS_IN, LINK_CBS_OUT, LINK_C2D_IN, LINK_FEEDBACK_OUT, LINK_EVENTHUB, LINK_DEVICE };

struct amqp {
    const struct amqp_env *env;
    struct conn *conn;
    struct sasl sasl;
    bool proton;              /* past SASL: bytes go to Proton */
    bool closing;             /* conn_close has been called */
    bool closed;              /* amqp_closed has run */
    bool authenticated;       /* a token has been accepted once */
    bool in_pump;             /* inside pump: close_with leaves the flush to it */
    const char *close_reason; /* set by close_with: close the connection once the AMQP close is flushed */
    pn_connection_driver_t d;
    struct buf pn_out;  /* Proton's output not yet cut into whole frames */
    struct buf out;     /* normalised frames / SASL answers, handed to conn_send */
    size_t header_left; /* bytes of Proton's protocol header still to pass through unnormalised */
    struct cbs_claims claims;
    struct loop_timer *timer;
    int64_t timer_at;    /* monotonic ms the timer fires at (0: none) */
    int64_t deadline;    /* monotonic ms by which a token must have been accepted */
    uint64_t tag;        /* delivery tags of what we send */
    pn_link_t *feedback; /* our sender on /messages/serviceBound/feedback (the hub's feedback sink), or NULL */
    char *rx;            /* incoming delivery bytes */
    size_t rx_cap;
    struct eventhub_conn *eh; /* the Event Hub-compatible endpoint's links on this connection (eventhub.h) */
    struct devlinks *dev;     /* the devices and modules authenticated on this connection (devlinks.h) */
    struct buf in;            /* AMQP input not yet whole frames (Proton gets only whole, checked frames) */
    size_t in_header_left;    /* bytes of the client's protocol header still to pass to Proton */
    bool in_raw;              /* a frame header Proton will refuse was seen: pass the rest unchecked */
    struct frames_guard guard; /* frames Proton would assert on (frames.h) */
};

static void pump(struct amqp *a);
static void feedback_stop(struct amqp *a);
static void close_with(struct amqp *a, const char *name, const char *desc);
static void close_now(struct amqp *a, const char *reason);

/* ---- the Event Hub-compatible endpoint's hooks (eventhub.h) ---- */

static void eh_wake(void *ctx)
{
    pump(ctx);
}

static struct eventhub_conn *eh_conn(struct amqp *a)
{
    if (!a->eh && a->env->eventhub)
        a->eh = eventhub_conn_new(a->env->eventhub, a->d.connection, eh_wake, a, conn_peer(a->conn));
    return a->eh;
}

/* ---- the device links' hooks (devlinks.h) ---- */

static void dev_close(void *ctx, const char *name, const char *desc)
{
    close_with(ctx, name, desc);
}

static void dev_abort(void *ctx, const char *reason)
{
    struct amqp *a = ctx;
    if (a->closing)
        return;
    a->closing = true;
    conn_abort(a->conn, reason);
}

static struct devlinks *dev_conn(struct amqp *a)
{
    if (!a->dev && a->env->hub) {
        struct devlinks_env env = {.loop = a->env->loop,
                                   .hub = a->env->hub,
                                   .reg = a->env->reg,
                                   .auth = a->env->auth,
                                   .c2d = a->env->c2d,
                                   .telemetry = a->env->telemetry,
                                   .faults = a->env->faults,
                                   .token_skew_s = a->env->token_skew_s,
                                   .max_message = AMQP_MAX_MESSAGE};
        struct devlinks_hooks h = {.wake = eh_wake, .close = dev_close, .abort = dev_abort, .ctx = a};
        a->dev = devlinks_new(&env, a->d.connection, &h, conn_peer(a->conn));
    }
    return a->dev;
}

/* ---- link context: kind | (claim slot + 1) << 8 ---- */

static void *link_ctx(enum link_kind k, int slot)
{
    return (void *)(uintptr_t)((unsigned)k | (unsigned)(slot + 1) << 8);
}

static enum link_kind link_kind_of(pn_link_t *l)
{
    return (enum link_kind)((uintptr_t)pn_link_get_context(l) & 0xff);
}

static int link_slot_of(pn_link_t *l)
{
    return (int)(((uintptr_t)pn_link_get_context(l) >> 8) & 0xff) - 1;
}

/* ---- closing ---- */

static void close_now(struct amqp *a, const char *reason)
{
    if (a->closing)
        return;
    a->closing = true;
    conn_close(a->conn, reason);
}

/* Sends an AMQP close with condition (name, description), flushes, and closes the connection. desc must be
 * a string literal (it is kept as the close reason). */
static void close_with(struct amqp *a, const char *name, const char *desc)
{
    if (a->closing || a->close_reason)
        return;
    log_info("amqp %s: closing: %s", conn_peer(a->conn), desc);
    if (!a->proton) {
        close_now(a, desc);
        return;
    }
    a->close_reason = desc;
    if (!(pn_connection_state(a->d.connection) & PN_LOCAL_CLOSED)) {
        if (name) { /* NULL: a clean close, no error condition */
            pn_condition_t *cond = pn_connection_condition(a->d.connection);
            pn_condition_set_name(cond, name);
            pn_condition_set_description(cond, desc);
        }
        if (pn_connection_state(a->d.connection) & PN_LOCAL_UNINIT)
            pn_connection_open(a->d.connection); /* a close needs an open before it */
        pn_connection_close(a->d.connection);
    }
    if (!a->in_pump)
        pump(a);
}

/* ---- output ---- */

static void send_out(struct amqp *a)
{
    if (a->out.len == 0 || a->closing)
        return;
    if (conn_send(a->conn, a->out.data, a->out.len) != ERR_OK) {
        a->out.len = 0;
        close_now(a, "output queue full");
        return;
    }
    a->out.len = 0;
}

/* Moves Proton's pending output through the normaliser to the connection. */
static void flush_proton(struct amqp *a)
{
    pn_bytes_t wb;
    while ((wb = pn_connection_driver_write_buffer(&a->d)).size > 0) {
        if (!a->closing && buf_append(&a->pn_out, wb.start, wb.size) != ERR_OK) {
            close_now(a, "output too big");
        }
        pn_connection_driver_write_done(&a->d, wb.size);
    }
    if (a->closing) {
        a->pn_out.len = 0;
        return;
    }
    size_t at = 0;
    if (a->header_left) {
        size_t n = a->pn_out.len < a->header_left ? a->pn_out.len : a->header_left;
        if (buf_append(&a->out, a->pn_out.data, n) != ERR_OK)
            goto fail;
        a->header_left -= n;
        at = n;
    }
    uint32_t max = pn_transport_get_remote_max_frame(a->d.transport);
    while (!a->header_left && a->pn_out.len - at >= 8) {
        struct frames_header h;
        if (frames_header_decode(a->pn_out.data + at, a->pn_out.len - at, &h) != ERR_OK)
            goto fail;
        if (a->pn_out.len - at < h.size)
            break;
        if (frames_normalise(a->pn_out.data + at, h.size, max, &a->out) != ERR_OK)
            goto fail;
        at += h.size;
    }
    buf_consume(&a->pn_out, at);
    send_out(a);
    return;
fail:
    a->pn_out.len = 0;
    close_now(a, "cannot frame output");
}

/* ---- timers ---- */

static void on_timer(struct loop *l, void *ctx);

/* Arms the connection's one timer for the earliest of: Proton's next tick (tick_at, 0 for none), the
 * authentication deadline, the first token expiry. */
static void schedule(struct amqp *a, int64_t tick_at)
{
    if (a->closing || a->closed)
        return;
    struct loop *l = a->env->loop;
    int64_t now = loop_now_ms(l);
    int64_t at = tick_at > 0 ? tick_at : INT64_MAX;
    if (!a->authenticated && a->deadline < at)
        at = a->deadline;
    int64_t exp = cbs_claims_next_expiry(&a->claims, a->env->token_skew_s);
    int64_t dexp = a->dev ? devlinks_next_expiry(a->dev) : INT64_MAX;
    exp = dexp < exp ? dexp : exp;
    if (exp != INT64_MAX) {
        int64_t wall = loop_wall_s(l);
        int64_t in_ms = exp >= wall ? (exp - wall + 1) * 1000 : 0;
        if (in_ms < at - now)
            at = now + in_ms;
    }
    if (at == INT64_MAX) {
        loop_timer_cancel(l, a->timer);
        a->timer = NULL;
        a->timer_at = 0;
        return;
    }
    if (a->timer && a->timer_at == at)
        return;
    loop_timer_cancel(l, a->timer);
    a->timer = loop_timer_add(l, at - now, on_timer, a);
    a->timer_at = a->timer ? at : 0;
    if (!a->timer)
        close_now(a, "out of memory");
}

/* Closes the links whose claim has expired. */
static void expire_claims(struct amqp *a)
{
    if (a->dev)
        devlinks_expire(a->dev, loop_wall_s(a->env->loop));
    unsigned dropped = cbs_claims_expire(&a->claims, loop_wall_s(a->env->loop), a->env->token_skew_s);
    if (!dropped || !a->proton)
        return;
    for (pn_link_t *l = pn_link_head(a->d.connection, PN_LOCAL_ACTIVE); l; l = pn_link_next(l, PN_LOCAL_ACTIVE)) {
        int slot = link_slot_of(l);
        if (slot >= 0 && (dropped & (1u << slot))) {
            if (l == a->feedback)
                feedback_stop(a);
            delivery_close_link(l, "amqp:unauthorized-access", "the token that authorised this link has expired");
            log_info("amqp %s: link %s closed: token expired", conn_peer(a->conn), pn_link_name(l));
        }
    }
}

static void on_timer(struct loop *l, void *ctx)
{
    struct amqp *a = ctx;
    a->timer = NULL;
    a->timer_at = 0;
    if (a->closing || a->closed)
        return;
    if (!a->authenticated && loop_now_ms(l) >= a->deadline) {
        close_with(a, "amqp:unauthorized-access",
                   a->proton ? "no valid token was put on $cbs in time" : "SASL was not completed in time");
        return;
    }
    expire_claims(a);
    if (a->proton)
        pump(a); /* runs Proton's timers and re-arms */
    else
        schedule(a, 0);
}

/* ---- helpers over pn_data_t ---- */

/* The string or symbol value of key in the map held by data, copied into out (NUL-terminated). */
static bool map_get(pn_data_t *data, const char *key, char *out, size_t outlen)
{
    bool found = false;
    out[0] = 0;
    pn_data_rewind(data);
    if (!pn_data_next(data) || pn_data_type(data) != PN_MAP)
        return false;
    pn_data_enter(data);
    size_t klen = strlen(key);
    while (pn_data_next(data)) {
        pn_type_t kt = pn_data_type(data);
        pn_bytes_t k = kt == PN_STRING   ? pn_data_get_string(data)
                       : kt == PN_SYMBOL ? pn_data_get_symbol(data)
                                         : pn_bytes(0, NULL);
        bool match = k.size == klen && k.start && memcmp(k.start, key, klen) == 0;
        if (!pn_data_next(data))
            break;
        if (!match)
            continue;
        pn_type_t vt = pn_data_type(data);
        pn_bytes_t v = vt == PN_STRING   ? pn_data_get_string(data)
                       : vt == PN_SYMBOL ? pn_data_get_symbol(data)
                                         : pn_bytes(0, NULL);
        if ((vt == PN_STRING || vt == PN_SYMBOL) && v.size < outlen && !memchr(v.start, 0, v.size)) {
            memcpy(out, v.start, v.size);
            out[v.size] = 0;
            found = true;
        }
        break;
    }
    pn_data_exit(data);
    return found;
}

/* ---- sending ---- */

/* Encodes m and sends it pre-settled on sender link l (Proton holds it until the peer gives credit). */
static int send_message(struct amqp *a, pn_link_t *l, pn_message_t *m)
{
    if (pn_link_queued(l) >= AMQP_MAX_QUEUED) {
        close_with(a, "amqp:resource-limit-exceeded", "too many messages waiting for link credit");
        return ERR_TOO_BIG;
    }
    return delivery_send_settled(l, m, AMQP_MAX_MESSAGE, "", &a->tag);
}

/* The connection's sender link whose source is $cbs (where put-token answers go), or NULL. */
static pn_link_t *cbs_reply_link(struct amqp *a)
{
    for (pn_link_t *l = pn_link_head(a->d.connection, PN_LOCAL_ACTIVE); l; l = pn_link_next(l, PN_LOCAL_ACTIVE))
        if (link_kind_of(l) == LINK_CBS_OUT && pn_link_is_sender(l))
            return l;
    return NULL;
}

/* ---- $cbs put-token ---- */

static void cbs_request(struct amqp *a, pn_message_t *req)
{
    char op[32], name[CBS_MAX_AUDIENCE + 64], why[160];
    int status = 200;
    snprintf(why, sizeof why, "OK");
    pn_data_t *props = pn_message_properties(req);
    map_get(props, "name", name, sizeof name);
    if (!map_get(props, "operation", op, sizeof op) || strcmp(op, "put-token") != 0) {
        status = 400;
        snprintf(why, sizeof why, "unsupported operation (only put-token)");
    } else {
        pn_data_t *body = pn_message_body(req);
        pn_data_rewind(body);
        pn_bytes_t tok = pn_bytes(0, NULL);
        if (pn_data_next(body)) {
            if (pn_data_type(body) == PN_STRING)
                tok = pn_data_get_string(body);
            else if (pn_data_type(body) == PN_BINARY)
                tok = pn_data_get_binary(body);
        }
        int64_t expiry;
        char norm[CBS_MAX_AUDIENCE];
        int64_t now = loop_wall_s(a->env->loop);
        if (!name[0]) {
            status = 400;
            snprintf(why, sizeof why, "put-token without a name (the audience)");
        } else if (devlinks_is_audience(name)) {
            status = dev_conn(a) ? devlinks_put_token(a->dev, name, tok.start ? tok.start : "", tok.size, &expiry,
                                                      why, sizeof why)
                                 : 404;
            if (!a->dev)
                snprintf(why, sizeof why, "devices cannot connect over AMQP here");
            if (status == 200 && !a->authenticated) {
                a->authenticated = true;
                conn_established(a->conn);
            }
        } else if ((a->env->eventhub && eventhub_is_audience(a->env->eventhub, name)
                        ? eventhub_verify_token(a->env->eventhub, name, tok.start ? tok.start : "", tok.size, now,
                                                a->env->token_skew_s, &expiry, norm, why, sizeof why)
                        : cbs_verify(a->env->auth, name, strlen(name), tok.start ? tok.start : "", tok.size, now,
                                     a->env->token_skew_s, &expiry, norm, why, sizeof why)) != ERR_OK) {
            status = 401;
        } else if (cbs_claims_put(&a->claims, norm, expiry) < 0) {
            status = 401;
            snprintf(why, sizeof why, "too many audiences on one connection");
        } else {
            snprintf(why, sizeof why, "OK");
            if (!a->authenticated) {
                a->authenticated = true;
                conn_established(a->conn);
            }
        }
    }
    log_info("amqp %s: put-token %s: %d %s", conn_peer(a->conn), name, status, why);

    pn_link_t *out = cbs_reply_link(a);
    if (!out) {
        log_warn("amqp %s: put-token answer dropped: no receiver link on $cbs", conn_peer(a->conn));
        return;
    }
    pn_message_t *rep = pn_message();
    if (!rep) {
        close_now(a, "out of memory");
        return;
    }
    pn_message_set_correlation_id(rep, pn_message_get_id(req)); /* same AMQP type */
    const char *reply_to = pn_message_get_reply_to(req);
    if (reply_to)
        pn_message_set_address(rep, reply_to);
    pn_data_t *ap = pn_message_properties(rep);
    pn_data_put_map(ap);
    pn_data_enter(ap);
    pn_data_put_string(ap, pn_bytes(strlen("status-code"), "status-code"));
    pn_data_put_int(ap, status);
    pn_data_put_string(ap, pn_bytes(strlen("status-description"), "status-description"));
    pn_data_put_string(ap, pn_bytes(strlen(why), why));
    pn_data_exit(ap);
    send_message(a, out, rep);
    pn_message_free(rep);
}

/* ---- cloud-to-device ---- */



static void c2d_message(struct amqp *a, pn_delivery_t *d, pn_message_t *m)
{
    struct c2d_message cm;
    memset(&cm, 0, sizeof cm);
    char why[160] = "";
    const char *to = pn_message_get_address(m);
    if (!to) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:invalid-field",
                    "the message has no 'to' (/devices/{id}/messages/devicebound)");
        return;
    }
    delivery_id_text(pn_message_get_id(m), cm.message_id, sizeof cm.message_id);
    delivery_id_text(pn_message_get_correlation_id(m), cm.correlation_id, sizeof cm.correlation_id);
    pn_bytes_t uid = pn_message_get_user_id(m);
    snprintf(cm.user_id, sizeof cm.user_id, "%.*s", (int)uid.size, uid.start ? uid.start : "");
    const char *ct = pn_message_get_content_type(m), *ce = pn_message_get_content_encoding(m);
    snprintf(cm.content_type, sizeof cm.content_type, "%s", ct ? ct : "");
    snprintf(cm.content_encoding, sizeof cm.content_encoding, "%s", ce ? ce : "");
    cm.expiry_ms = pn_message_get_expiry_time(m);
    /* application properties: strings (and other scalars as text) */
    pn_data_t *ap = pn_message_properties(m);
    pn_data_rewind(ap);
    if (pn_data_next(ap) && pn_data_type(ap) == PN_MAP) {
        pn_data_enter(ap);
        while (pn_data_next(ap) && cm.n_props < C2D_MAX_PROPS) {
            pn_type_t kt = pn_data_type(ap);
            pn_bytes_t k = kt == PN_STRING   ? pn_data_get_string(ap)
                           : kt == PN_SYMBOL ? pn_data_get_symbol(ap)
                                             : pn_bytes(0, NULL);
            if (!pn_data_next(ap))
                break;
            char val[C2D_MAX_VALUE];
            val[0] = 0;
            switch (pn_data_type(ap)) {
            case PN_STRING: {
                pn_bytes_t v = pn_data_get_string(ap);
                snprintf(val, sizeof val, "%.*s", (int)v.size, v.start);
                break;
            }
            case PN_SYMBOL: {
                pn_bytes_t v = pn_data_get_symbol(ap);
                snprintf(val, sizeof val, "%.*s", (int)v.size, v.start);
                break;
            }
            case PN_INT:
                snprintf(val, sizeof val, "%d", pn_data_get_int(ap));
                break;
            case PN_LONG:
                snprintf(val, sizeof val, "%lld", (long long)pn_data_get_long(ap));
                break;
            case PN_BOOL:
                snprintf(val, sizeof val, "%s", pn_data_get_bool(ap) ? "true" : "false");
                break;
            default:
                continue;
            }
            if (!k.start || k.size == 0 || k.size >= C2D_MAX_KEY)
                continue;
            if (k.size == strlen("iothub-ack") && memcmp(k.start, "iothub-ack", k.size) == 0) {
                snprintf(cm.ack, sizeof cm.ack, "%s", val);
                continue;
            }
            struct c2d_prop *p = &cm.props[cm.n_props++];
            snprintf(p->key, sizeof p->key, "%.*s", (int)k.size, k.start);
            snprintf(p->value, sizeof p->value, "%s", val);
        }
        pn_data_exit(ap);
    }
    /* body: a data section (binary), or an amqp-value string */
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    if (pn_data_next(body)) {
        pn_bytes_t b = pn_bytes(0, NULL);
        if (pn_data_type(body) == PN_BINARY)
            b = pn_data_get_binary(body);
        else if (pn_data_type(body) == PN_STRING)
            b = pn_data_get_string(body);
        cm.body = (const uint8_t *)b.start;
        cm.body_len = b.size;
    }
    int rc = c2d_send(a->env->c2d, to, &cm, c2d_wall_ms(), why, sizeof why);
    switch (rc) {
    case ERR_OK:
        delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
        break;
    case ERR_NOT_FOUND:
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-found", why);
        break;
    case ERR_TOO_BIG:
        delivery_set_outcome(d, PN_REJECTED, "amqp:resource-limit-exceeded", why);
        break;
    default:
        delivery_set_outcome(d, PN_REJECTED, "amqp:invalid-field", why);
        break;
    }
    log_info("amqp %s: C2D to %s: %s%s", conn_peer(a->conn), to, rc ? "rejected: " : "accepted", rc ? why : "");
}

/* ---- feedback (the hub's c2d feedback sink, while a feedback link is attached) ---- */

static int feedback_deliver(void *ctx, uint64_t batch, const char *json, size_t len)
{
    struct amqp *a = ctx;
    if (!a->feedback || a->closing)
        return ERR_CLOSED;
    pn_message_t *m = pn_message();
    if (!m)
        return ERR_NOMEM;
    char id[40];
    snprintf(id, sizeof id, "feedback-%llu", (unsigned long long)batch);
    pn_msgid_t mid = {.type = PN_STRING, .u.as_bytes = pn_bytes(strlen(id), id)};
    pn_message_set_id(m, mid);
    pn_message_set_content_type(m, "application/vnd.microsoft.iothub.feedback.json");
    pn_message_set_inferred(m, true); /* a data section, as the C service SDK reads it */
    pn_data_put_binary(pn_message_body(m), pn_bytes(len, json));
    int rc = ERR_NOMEM;
    char *buf = malloc(len + 1024);
    size_t size = len + 1024;
    if (buf && pn_message_encode(m, buf, &size) == 0) {
        char tag[24];
        int tl = snprintf(tag, sizeof tag, "f%llu", (unsigned long long)batch);
        pn_delivery_t *d = pn_delivery(a->feedback, pn_dtag(tag, (size_t)tl));
        pn_delivery_set_context(d, (void *)(uintptr_t)batch);
        pn_link_send(a->feedback, buf, size);
        pn_link_advance(a->feedback);
        rc = ERR_OK;
    }
    free(buf);
    pn_message_free(m);
    pump(a); /* a no-op inside this connection's own pump, which flushes anyway */
    return rc;
}

static void feedback_stop(struct amqp *a)
{
    if (a->feedback && a->env->c2d)
        c2d_feedback_detach(a->env->c2d, a);
    a->feedback = NULL;
}

/* The feedback receiver settled a batch. */
static void feedback_disposition(struct amqp *a, pn_delivery_t *d)
{
    if (!pn_delivery_updated(d) || !a->env->c2d)
        return;
    uint64_t state = pn_delivery_remote_state(d);
    uint64_t batch = (uint64_t)(uintptr_t)pn_delivery_get_context(d);
    if (state == PN_ACCEPTED || state == PN_REJECTED)
        c2d_feedback_settled(a->env->c2d, batch, true);
    else if (state == PN_RELEASED || state == PN_MODIFIED)
        c2d_feedback_settled(a->env->c2d, batch, false);
    else
        return;
    pn_delivery_settle(d);
}

/* ---- deliveries ---- */

static char oversized_mark; /* the context of an incoming delivery found over AMQP_MAX_MESSAGE */

/* An incoming message over AMQP_MAX_MESSAGE (the hub's 256 KiB device-to-cloud limit; our receivers announce it
 * as their max-message-size): its bytes are read and thrown away as they arrive (never held), and once it is
 * complete it is rejected with amqp:link:message-size-exceeded (the Node SDK's MessageTooLargeError). Only that
 * delivery fails: the link, the connection and the other identities on it go on. */
static void drop_oversized(pn_link_t *l, pn_delivery_t *d)
{
    char scratch[16384];
    pn_delivery_set_context(d, &oversized_mark);
    if (pn_link_current(l) != d)
        return;
    while (pn_link_recv(l, scratch, sizeof scratch) > 0)
        ;
    if (pn_delivery_partial(d) && !pn_delivery_aborted(d))
        return;
    if (!pn_delivery_aborted(d))
        delivery_set_outcome(d, PN_REJECTED, "amqp:link:message-size-exceeded",
                             "the message is over the hub's limit of 262144 bytes (256 KiB) for one message");
    log_info("link %s: a message over %u bytes refused", pn_link_name(l), AMQP_MAX_MESSAGE);
    pn_link_advance(l);
    pn_delivery_settle(d);
    if (pn_link_state(l) & PN_LOCAL_ACTIVE)
        pn_link_flow(l, 1);
}

static void on_delivery(struct amqp *a, pn_delivery_t *d)
{
    pn_link_t *l = pn_delivery_link(d);
    if (!pn_link_is_receiver(l)) {
        if (link_kind_of(l) == LINK_FEEDBACK_OUT)
            feedback_disposition(a, d);
        return; /* device C2D dispositions reach devlinks_event; our other sends are pre-settled */
    }
    size_t pending = pn_delivery_pending(d);
    if (pn_delivery_get_context(d) == &oversized_mark || pending > AMQP_MAX_MESSAGE) {
        drop_oversized(l, d);
        return;
    }
    if (!pn_delivery_readable(d) || pn_delivery_partial(d))
        return;
    if (pending + 1 > a->rx_cap) {
        char *nb = realloc(a->rx, pending + 1);
        if (!nb) {
            close_now(a, "out of memory");
            return;
        }
        a->rx = nb;
        a->rx_cap = pending + 1;
    }
    ssize_t n = pn_link_recv(l, a->rx, pending);
    pn_message_t *m = pn_message();
    if (!m) {
        close_now(a, "out of memory");
        return;
    }
    enum link_kind k = link_kind_of(l);
    bool settle = true;
    if (n < 0 || pn_message_decode(m, a->rx, (size_t)n) != 0) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:decode-error", "the message does not decode");
    } else if (k == LINK_CBS_IN) {
        delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
        cbs_request(a, m);
    } else if (k == LINK_C2D_IN) {
        c2d_message(a, d, m);
    } else if (k == LINK_EVENTHUB && a->eh) {
        delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
        eventhub_conn_message(a->eh, l, m);
    } else if (k == LINK_DEVICE && a->dev) {
        settle = devlinks_message(a->dev, l, d, m, (const uint8_t *)a->rx, (size_t)n);
    } else {
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-allowed", "this link does not take messages");
    }
    pn_message_free(m);
    pn_link_advance(l);
    if (settle)
        pn_delivery_settle(d);
    if (pn_link_state(l) & PN_LOCAL_ACTIVE)
        pn_link_flow(l, 1);
}

/* ---- links ---- */

/* Strips "amqps://host" / "amqp://host" (Python azure-iot-hub uses full URLs as targets). */
static const char *address_path(const char *addr)
{
    if (!addr)
        return "";
    const char *s = strstr(addr, "://");
    if (s && (size_t)(s - addr) <= 8) {
        const char *slash = strchr(s + 3, '/');
        return slash ? slash : "";
    }
    return addr;
}

static enum link_kind classify(const char *addr, bool we_receive)
{
    const char *p = address_path(addr);
    if (strcmp(p, "$cbs") == 0 || strcmp(p, "/$cbs") == 0)
        return we_receive ? LINK_CBS_IN : LINK_CBS_OUT;
    if (we_receive && (strcasecmp(p, "/messages/devicebound") == 0 || strcasecmp(p, "/messages/devicebound/") == 0))
        return LINK_C2D_IN;
    if (!we_receive && strcasecmp(p, "/messages/serviceBound/feedback") == 0)
        return LINK_FEEDBACK_OUT;
    return LINK_UNKNOWN;
}

static void refuse_link(struct amqp *a, pn_link_t *l, const char *cond, const char *desc)
{
    delivery_close_link(l, cond, desc);
    log_info("amqp %s: link %s refused: %s", conn_peer(a->conn), pn_link_name(l), desc);
}

static void on_link_open(struct amqp *a, pn_link_t *l)
{
    if (!(pn_link_state(l) & PN_LOCAL_UNINIT))
        return;
    pn_terminus_copy(pn_link_source(l), pn_link_remote_source(l));
    pn_terminus_copy(pn_link_target(l), pn_link_remote_target(l));
    pn_data_t *rprops = pn_link_remote_properties(l), *props = pn_link_properties(l);
    if (rprops && props && pn_data_size(rprops) > 0)
        pn_data_copy(props, rprops); /* echoed, as pyamqp expects */
    bool we_receive = pn_link_is_receiver(l);
    const char *addr = pn_terminus_get_address(we_receive ? pn_link_remote_target(l) : pn_link_remote_source(l));
    enum link_kind k = classify(addr, we_receive);
    if ((k == LINK_C2D_IN || k == LINK_FEEDBACK_OUT) && !a->env->c2d)
        k = LINK_UNKNOWN;
    if (k == LINK_UNKNOWN && a->env->eventhub && eventhub_claims(a->env->eventhub, addr, we_receive) && eh_conn(a))
        k = LINK_EVENTHUB;
    if (k == LINK_UNKNOWN && devlinks_claims(address_path(addr)) && dev_conn(a))
        k = LINK_DEVICE;
    size_t open_links = 0;
    for (pn_link_t *o = pn_link_head(a->d.connection, PN_LOCAL_ACTIVE); o; o = pn_link_next(o, PN_LOCAL_ACTIVE))
        open_links++;
    if (open_links >= AMQP_MAX_LINKS) {
        refuse_link(a, l, "amqp:resource-limit-exceeded", "too many links on one connection");
        return;
    }
    if (k == LINK_UNKNOWN) {
        char desc[160];
        snprintf(desc, sizeof desc, "no such node: %.100s", addr ? addr : "(none)");
        refuse_link(a, l, "amqp:not-found", desc);
        return;
    }
    int slot = -1;
    if (k == LINK_DEVICE) { /* authorised per identity by devlinks */
        pn_link_set_context(l, link_ctx(k, -1));
        devlinks_attach(a->dev, l, address_path(addr));
        return;
    }
    if (k != LINK_CBS_IN && k != LINK_CBS_OUT) {
        slot = cbs_claims_valid(&a->claims, loop_wall_s(a->env->loop), a->env->token_skew_s);
        if (slot < 0) {
            refuse_link(a, l, "amqp:unauthorized-access",
                        "no valid token for this audience: put one on $cbs first (or use SASL PLAIN)");
            return;
        }
    }
    pn_link_set_context(l, link_ctx(k, slot));
    if (k == LINK_EVENTHUB) {
        eventhub_conn_attach(a->eh, l, addr);
        return;
    }
    if (we_receive)
        pn_link_set_max_message_size(l, AMQP_MAX_MESSAGE);
    pn_link_open(l);
    if (we_receive)
        pn_link_flow(l, k == LINK_CBS_IN ? AMQP_CBS_CREDIT : AMQP_C2D_CREDIT);
    if (k == LINK_FEEDBACK_OUT) {
        feedback_stop(a);
        a->feedback = l;
        struct c2d_feedback_sink sink = {.deliver = feedback_deliver, .ctx = a};
        c2d_feedback_attach(a->env->c2d, &sink);
    }
    log_debug("amqp %s: link %s attached to %s", conn_peer(a->conn), pn_link_name(l), addr);
}

/* ---- events ---- */

static void on_event(struct amqp *a, pn_event_t *e)
{
    if (a->eh)
        eventhub_conn_event(a->eh, e);
    if (a->dev)
        devlinks_event(a->dev, e);
    switch (pn_event_type(e)) {
    case PN_CONNECTION_REMOTE_OPEN: {
        pn_connection_t *c = pn_event_connection(e);
        if (pn_connection_state(c) & PN_LOCAL_UNINIT) {
            pn_connection_set_container(c, "iothub-emulator");
            pn_connection_open(c);
        }
        break;
    }
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *s = pn_event_session(e);
        if (pn_session_state(s) & PN_LOCAL_UNINIT)
            pn_session_open(s);
        break;
    }
    case PN_LINK_REMOTE_OPEN:
        on_link_open(a, pn_event_link(e));
        break;
    case PN_LINK_REMOTE_DETACH:
        if (pn_event_link(e) == a->feedback)
            feedback_stop(a);
        pn_link_detach(pn_event_link(e));
        break;
    case PN_LINK_REMOTE_CLOSE: {
        pn_link_t *l = pn_event_link(e);
        if (l == a->feedback)
            feedback_stop(a);
        if (!(pn_link_state(l) & PN_LOCAL_CLOSED))
            pn_link_close(l);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *s = pn_event_session(e);
        if (!(pn_session_state(s) & PN_LOCAL_CLOSED))
            pn_session_close(s);
        break;
    }
    case PN_CONNECTION_REMOTE_CLOSE: {
        pn_connection_t *c = pn_event_connection(e);
        if (!(pn_connection_state(c) & PN_LOCAL_CLOSED))
            pn_connection_close(c);
        break;
    }
    case PN_DELIVERY:
        on_delivery(a, pn_event_delivery(e));
        break;
    case PN_TRANSPORT_ERROR: {
        pn_condition_t *c = pn_transport_condition(pn_event_transport(e));
        log_info("amqp %s: %s: %s", conn_peer(a->conn), pn_condition_get_name(c) ? pn_condition_get_name(c) : "error",
                 pn_condition_get_description(c) ? pn_condition_get_description(c) : "");
        break;
    }
    default:
        break;
    }
}

/* Handles every pending Proton event and moves the output to the connection. */
static void pump(struct amqp *a)
{
    if (!a->proton || a->closed || a->in_pump)
        return;
    a->in_pump = true;
    int64_t tick_at;
    do {
        /* Proton's timers first (idle timeout, heartbeats): what they produce is handled and flushed below. */
        tick_at = pn_transport_tick(a->d.transport, loop_now_ms(a->env->loop));
        pn_event_t *e;
        while (!a->closing && !a->close_reason && (e = pn_connection_driver_next_event(&a->d)))
            on_event(a, e);
        flush_proton(a);
    } while (!a->closing && !a->close_reason && pn_connection_driver_has_event(&a->d));
    a->in_pump = false;
    if (a->closing)
        return;
    if (a->close_reason) {
        close_now(a, a->close_reason);
        return;
    }
    if (pn_connection_driver_finished(&a->d)) {
        close_now(a, "AMQP connection closed");
        return;
    }
    schedule(a, tick_at);
}

/* ---- SASL ---- */

/* Decides a sasl-init: ANONYMOUS and MSSBCBS pass (CBS authenticates later); PLAIN must carry
 * {policy}@sas.root.{hub} and a valid service SAS token as the password. */
static bool sasl_accept(struct amqp *a, const struct sasl_init *init)
{
    if (sasl_mech_is(init, "ANONYMOUS") || sasl_mech_is(init, "MSSBCBS"))
        return true;
    if (!sasl_mech_is(init, "PLAIN")) {
        log_info("amqp %s: SASL mechanism %.*s not supported", conn_peer(a->conn), (int)init->mech.len,
                 (const char *)init->mech.p);
        return false;
    }
    const char *id = (const char *)init->authcid.p;
    size_t idlen = init->authcid.len;
    const char *at = id ? memchr(id, '@', idlen) : NULL;
    static const char marker[] = "@sas.root.";
    if (!at || (size_t)(id + idlen - at) <= sizeof marker - 1 || memcmp(at, marker, sizeof marker - 1) != 0) {
        log_info("amqp %s: SASL PLAIN user is not {policy}@sas.root.{hub}", conn_peer(a->conn));
        return false;
    }
    int64_t expiry;
    char norm[CBS_MAX_AUDIENCE], why[160];
    if (cbs_verify(a->env->auth, NULL, 0, (const char *)init->password.p, init->password.len, loop_wall_s(a->env->loop),
                   a->env->token_skew_s, &expiry, norm, why, sizeof why) != ERR_OK &&
        !(a->env->eventhub && eventhub_verify_plain(a->env->eventhub, (const char *)init->password.p,
                                                    init->password.len, loop_wall_s(a->env->loop),
                                                    a->env->token_skew_s, &expiry, norm, why, sizeof why) == ERR_OK)) {
        log_info("amqp %s: SASL PLAIN refused: %s", conn_peer(a->conn), why);
        return false;
    }
    /* The policy named in the user must be the token's (skn=...). */
    const char *pw = (const char *)init->password.p;
    size_t pwlen = init->password.len, plen = (size_t)(at - id);
    bool skn_ok = false;
    for (size_t i = 0; i + 4 + plen <= pwlen; i++) {
        if ((i == 0 || pw[i - 1] == '&' || pw[i - 1] == ' ') && memcmp(pw + i, "skn=", 4) == 0) {
            skn_ok = memcmp(pw + i + 4, id, plen) == 0 && (i + 4 + plen == pwlen || pw[i + 4 + plen] == '&');
            break;
        }
    }
    if (!skn_ok) {
        log_info("amqp %s: SASL PLAIN refused: the user's policy is not the token's skn", conn_peer(a->conn));
        return false;
    }
    if (cbs_claims_put(&a->claims, norm, expiry) < 0)
        return false;
    a->authenticated = true;
    conn_established(a->conn);
    log_info("amqp %s: SASL PLAIN as %.*s", conn_peer(a->conn), (int)plen, id);
    return true;
}

/* Runs the SASL layer over in; when it hands over, switches to Proton (in then holds AMQP bytes). */
static int sasl_input(struct amqp *a, struct buf *in)
{
    for (;;) {
        struct sasl_init init;
        enum sasl_event ev = sasl_step(&a->sasl, in, &a->out, &init);
        if (ev == SASL_NEED_MORE) {
            send_out(a);
            if (a->sasl.state == SASL_ST_INIT && in->len > SASL_MAX_FRAME) {
                close_now(a, "SASL frame too big");
                return ERR_CLOSED;
            }
            return a->closing ? ERR_CLOSED : ERR_OK;
        }
        if (ev == SASL_FAIL) {
            send_out(a);
            log_info("amqp %s: %s", conn_peer(a->conn), a->sasl.why ? a->sasl.why : "SASL failed");
            close_now(a, a->sasl.why ? a->sasl.why : "SASL failed");
            return ERR_CLOSED;
        }
        if (ev == SASL_INIT) {
            bool ok = sasl_accept(a, &init);
            if (sasl_finish(&a->sasl, in, &a->out, ok) != ERR_OK || !ok) {
                send_out(a);
                close_now(a, "SASL authentication failed");
                return ERR_CLOSED;
            }
            send_out(a);
            continue;
        }
        /* SASL_AMQP */
        a->proton = true;
        pump(a);
        return ERR_OK;
    }
}

/* ---- the proto handler ---- */

void *amqp_open(void *envp, struct conn *c)
{
    const struct amqp_env *env = envp;
    struct amqp *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->env = env;
    a->conn = c;
    sasl_start(&a->sasl);
    buf_init(&a->pn_out, AMQP_OUT_MAX);
    buf_init(&a->out, AMQP_OUT_MAX);
    buf_init(&a->in, AMQP_IN_MAX);
    a->header_left = 8;
    a->in_header_left = 8;
    if (pn_connection_driver_init(&a->d, NULL, NULL) != 0 || !a->d.transport) {
        free(a);
        return NULL;
    }
    pn_transport_set_server(a->d.transport);
    pn_transport_set_max_frame(a->d.transport, AMQP_MAX_FRAME);
    pn_transport_set_idle_timeout(a->d.transport, env->idle_timeout_ms ? env->idle_timeout_ms : AMQP_IDLE_TIMEOUT_MS);
    pn_transport_set_channel_max(a->d.transport, AMQP_CHANNEL_MAX);
    int timeout = env->auth_timeout_s > 0 ? env->auth_timeout_s : 30;
    a->deadline = loop_now_ms(env->loop) + (int64_t)timeout * 1000;
    schedule(a, 0);
    return a;
}

int amqp_input(void *state, struct buf *in)
{
    struct amqp *a = state;
    if (a->closing || a->closed) {
        buf_consume(in, in->len);
        return ERR_CLOSED;
    }
    if (!a->proton) {
        int rc = sasl_input(a, in);
        if (rc)
            buf_consume(in, in->len);
        if (rc || !a->proton)
            return rc;
    }
    /* Proton gets whole frames only, each checked by the guard first (Proton 0.37 asserts on some malformed
     * transfers instead of refusing them), so an input split anywhere is held here until its frame is whole. */
    if (buf_append(&a->in, in->data, in->len) != ERR_OK) {
        buf_consume(in, in->len);
        close_with(a, "amqp:resource-limit-exceeded", "too much input waiting to be processed");
        return ERR_CLOSED;
    }
    size_t ready = 0;
    while (!a->closing && ready < a->in.len) {
        size_t avail = a->in.len - ready;
        if (a->in_raw) {
            ready = a->in.len;
            break;
        }
        if (a->in_header_left) {
            size_t n = avail < a->in_header_left ? avail : a->in_header_left;
            a->in_header_left -= n;
            ready += n;
            continue;
        }
        struct frames_header h;
        int hr = frames_header_decode(a->in.data + ready, avail, &h);
        if (hr == ERR_NEED_MORE)
            break;
        if (hr != ERR_OK || h.size > AMQP_MAX_FRAME) {
            a->in_raw = true; /* Proton closes the connection on it */
            continue;
        }
        if (avail < h.size)
            break;
        const char *why = NULL;
        if (frames_guard_input(&a->guard, a->in.data + ready, h.size, &why) != ERR_OK) {
            log_info("amqp %s: refused frame: %s", conn_peer(a->conn), why);
            buf_consume(in, in->len);
            close_with(a, "amqp:invalid-field", "a transfer the emulator cannot take (see its log)");
            return ERR_CLOSED;
        }
        ready += h.size;
    }
    size_t at = 0;
    while (at < ready && !a->closing) {
        if (pn_connection_driver_read_closed(&a->d))
            break;
        pn_rwbytes_t rb = pn_connection_driver_read_buffer(&a->d);
        if (rb.size == 0) {
            pump(a);
            rb = pn_connection_driver_read_buffer(&a->d);
            if (rb.size == 0)
                break;
        }
        size_t n = ready - at < rb.size ? ready - at : rb.size;
        memcpy(rb.start, a->in.data + at, n);
        pn_connection_driver_read_done(&a->d, n);
        at += n;
        pump(a);
    }
    buf_consume(&a->in, at);
    buf_consume(in, in->len);
    if (!a->closing && pn_connection_driver_read_closed(&a->d)) {
        pump(a);
        if (!a->closing)
            close_now(a, "AMQP input closed");
    }
    return a->closing ? ERR_CLOSED : ERR_OK;
}

void amqp_closed(void *state)
{
    struct amqp *a = state;
    if (!a || a->closed)
        return;
    a->closed = true;
    a->closing = true;
    eventhub_conn_closed(a->eh);
    devlinks_closed(a->dev);
    feedback_stop(a);
    loop_timer_cancel(a->env->loop, a->timer);
    a->timer = NULL;
}

void amqp_free(void *state)
{
    struct amqp *a = state;
    if (!a)
        return;
    amqp_closed(a);
    eventhub_conn_free(a->eh);
    devlinks_free(a->dev);
    pn_connection_driver_destroy(&a->d);
    buf_cleanup(&a->pn_out);
    buf_cleanup(&a->out);
    buf_cleanup(&a->in);
    free(a->rx);
    free(a);
}

void amqp_proto(struct proto *out, const struct amqp_env *env)
{
    *out = (struct proto){.name = "amqp",
                          .max_frame = SASL_MAX_FRAME,
                          .open = amqp_open,
                          .input = amqp_input,
                          .free = amqp_free,
                          .ctx = (void *)env};
}
