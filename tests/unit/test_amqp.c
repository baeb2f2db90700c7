/* test_amqp.c -- the AMQP front end (emulator/amqp/amqp.c) driven by a real Proton client in-process: a
 * client pn_connection_driver is pumped against amqp_input through a fake conn.h (this file defines conn_send,
 * conn_close, conn_established, conn_peer, conn_transport, so net.o is never linked). Covers bare AMQP and
 * SASL (ANONYMOUS, PLAIN good and bad), $cbs put-token (200/401, correlation-id type), links refused without
 * a token or to unknown nodes, the authentication deadline, token expiry closing links, malformed and
 * oversized frames, and C2D (accepted, unknown device, the 51st message). Everything the client decodes has
 * passed through the frame normaliser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "db.h"
#include "amqp.h"
#include "auth.h"
#include "buf.h"
#include "c2d.h"
#include "conn.h"
#include "err.h"
#include "frames.h"
#include "log.h"
#include "loop.h"
#include "db.h"
#include "registry.h"
#include "sas.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define SERVICE_KEY "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="
#define READ_KEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

/* ---- the fake connection ---- */

struct conn {
    struct buf out;
    bool closed;
    bool established;
    char reason[96];
};

int conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->closed)
        return ERR_CLOSED;
    return buf_append(&c->out, data, len);
}

static struct loop *stop_on_close;

void conn_close(struct conn *c, const char *reason)
{
    if (c->closed)
        return;
    c->closed = true;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
    if (stop_on_close)
        loop_stop(stop_on_close);
}

/* Fault injection's abrupt drop (KillTcp on a device link): here the same as a close. */
void conn_abort(struct conn *c, const char *reason)
{
    conn_close(c, reason);
}

void conn_established(struct conn *c)
{
    c->established = true;
}

const char *conn_peer(const struct conn *c)
{
    return "127.0.0.1:40000";
}

const char *conn_transport(const struct conn *c)
{
    return "amqp";
}

/* ---- environment ---- */

static struct {
    struct loop *loop;
    struct registry *reg;
    struct auth *auth;
    struct c2d *c2d;
    struct amqp_env env;
} E;

static int setup(void **state)
{
    char err[256];
    const char *hosts[] = {"localhost"};
    log_set_level(LOG_LEVEL_ERROR);
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    E.auth = auth_new(hosts, 1, OWNER_KEY);
    assert_int_equal(registry_ensure_device(E.reg, "device1", KEY1, KEY1), ERR_OK);
    E.c2d = c2d_new(E.reg, NULL, 0);
    E.env = (struct amqp_env){.loop = E.loop, .auth = E.auth, .c2d = E.c2d, .token_skew_s = 0, .auth_timeout_s = 30};
    return 0;
}

static int teardown(void **state)
{
    c2d_free(E.c2d);
    loop_free(E.loop);
    auth_free(E.auth);
    struct db *reg_db = registry_db(E.reg);
    registry_free(E.reg);
    db_close(reg_db);
    return 0;
}

static char *service_token(const char *policy, const char *key, int64_t expiry)
{
    char *tok = NULL;
    assert_int_equal(sas_build_raw("localhost", key, (uint64_t)expiry, policy, &tok), ERR_OK);
    return tok;
}

/* ---- a Proton client pumped against the server ---- */

struct client {
    pn_connection_driver_t d;
    struct conn conn;
    void *srv;
    struct buf in;
    struct buf transcript; /* every byte the client sent, for fuzz seeds (AMQP_SEED_DIR) */
    size_t rd;
    bool remote_open;
    bool remote_closed;
    char close_cond[64];
    pn_session_t *ssn;
    /* the last message received, decoded */
    int replies;
    int status;
    pn_type_t corr_type;
    uint64_t corr_ulong;
    char corr_str[64];
    char link_cond[64]; /* the condition of the last link the server closed */
    int mode;
    int link_closes;
};

static void client_event(struct client *cl, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_CONNECTION_REMOTE_OPEN:
        cl->remote_open = true;
        break;
    case PN_CONNECTION_REMOTE_CLOSE: {
        cl->remote_closed = true;
        pn_condition_t *c = pn_connection_remote_condition(pn_event_connection(e));
        snprintf(cl->close_cond, sizeof cl->close_cond, "%s", pn_condition_get_name(c) ? pn_condition_get_name(c) : "");
        pn_connection_close(pn_event_connection(e));
        break;
    }
    case PN_LINK_REMOTE_CLOSE: {
        pn_link_t *l = pn_event_link(e);
        pn_condition_t *c = pn_link_remote_condition(l);
        snprintf(cl->link_cond, sizeof cl->link_cond, "%s", pn_condition_get_name(c) ? pn_condition_get_name(c) : "");
        cl->link_closes++;
        pn_link_close(l);
        break;
    }
    case PN_DELIVERY: {
        pn_delivery_t *d = pn_event_delivery(e);
        pn_link_t *l = pn_delivery_link(d);
        if (!pn_link_is_receiver(l) || pn_delivery_partial(d) || !pn_delivery_readable(d))
            break;
        char buf[4096];
        ssize_t n = pn_link_recv(l, buf, sizeof buf);
        pn_message_t *m = pn_message();
        assert_int_equal(pn_message_decode(m, buf, (size_t)n), 0);
        pn_msgid_t id = pn_message_get_correlation_id(m);
        cl->corr_type = id.type;
        if (id.type == PN_ULONG)
            cl->corr_ulong = id.u.as_ulong;
        if (id.type == PN_STRING)
            snprintf(cl->corr_str, sizeof cl->corr_str, "%.*s", (int)id.u.as_bytes.size, id.u.as_bytes.start);
        pn_data_t *ap = pn_message_properties(m);
        pn_data_rewind(ap);
        cl->status = -1;
        if (pn_data_next(ap) && pn_data_type(ap) == PN_MAP) {
            pn_data_enter(ap);
            while (pn_data_next(ap)) {
                pn_bytes_t k = pn_data_get_string(ap);
                pn_data_next(ap);
                if (k.size == 11 && memcmp(k.start, "status-code", 11) == 0) {
                    assert_int_equal(pn_data_type(ap), PN_INT); /* the SDKs need an AMQP int */
                    cl->status = pn_data_get_int(ap);
                }
            }
        }
        cl->replies++;
        pn_message_free(m);
        pn_delivery_update(d, PN_ACCEPTED);
        pn_delivery_settle(d);
        pn_link_advance(l);
        break;
    }
    default:
        break;
    }
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(struct client *cl)
{
    for (int round = 0; round < 200; round++) {
        bool progress = false;
        pn_event_t *e;
        while ((e = pn_connection_driver_next_event(&cl->d)))
            client_event(cl, e);
        pn_bytes_t wb = pn_connection_driver_write_buffer(&cl->d);
        if (wb.size && !cl->conn.closed) {
            assert_int_equal(buf_append(&cl->in, wb.start, wb.size), ERR_OK);
            assert_int_equal(buf_append(&cl->transcript, wb.start, wb.size), ERR_OK);
            pn_connection_driver_write_done(&cl->d, wb.size);
            amqp_input(cl->srv, &cl->in);
            progress = true;
        } else if (wb.size) {
            pn_connection_driver_write_done(&cl->d, wb.size);
        }
        if (cl->rd < cl->conn.out.len) {
            pn_rwbytes_t rb = pn_connection_driver_read_buffer(&cl->d);
            size_t n = cl->conn.out.len - cl->rd < rb.size ? cl->conn.out.len - cl->rd : rb.size;
            if (n) {
                memcpy(rb.start, cl->conn.out.data + cl->rd, n);
                pn_connection_driver_read_done(&cl->d, n);
                cl->rd += n;
                progress = true;
            }
        } else if (cl->conn.closed && !pn_connection_driver_read_closed(&cl->d)) {
            pn_connection_driver_read_close(&cl->d);
            progress = true;
        }
        if (!progress && !pn_connection_driver_has_event(&cl->d))
            return;
    }
}

enum client_sasl { BARE, ANONYMOUS, PLAIN };

static void client_open(struct client *cl, enum client_sasl mode, const char *user, const char *password)
{
    memset(cl, 0, sizeof *cl);
    buf_init(&cl->conn.out, 16u << 20);
    buf_init(&cl->in, 16u << 20);
    buf_init(&cl->transcript, 16u << 20);
    cl->mode = mode;
    cl->srv = amqp_open(&E.env, &cl->conn);
    assert_non_null(cl->srv);
    assert_int_equal(pn_connection_driver_init(&cl->d, NULL, NULL), 0);
    if (mode != BARE) {
        pn_sasl_t *sasl = pn_sasl(cl->d.transport);
        pn_sasl_allowed_mechs(sasl, mode == PLAIN ? "PLAIN" : "ANONYMOUS");
        pn_sasl_set_allow_insecure_mechs(sasl, true);
        if (user) {
            pn_connection_set_user(cl->d.connection, user);
            pn_connection_set_password(cl->d.connection, password);
        }
    }
    pn_connection_set_hostname(cl->d.connection, "localhost");
    pn_connection_open(cl->d.connection);
    cl->ssn = pn_session(cl->d.connection);
    pn_session_open(cl->ssn);
    pump(cl);
}

/* Writes the client's bytes as a fuzz_amqp seed: byte 0 = 0 (no prefix), byte 1 = chunk seed. */
static void save_seed(struct client *cl)
{
    const char *dir = getenv("AMQP_SEED_DIR");
    if (!dir)
        return;
    static int n;
    char path[512];
    snprintf(path, sizeof path, "%s/client_%d_%d", dir, cl->mode, ++n);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fputc(0, f);
    fputc(7, f);
    fwrite(cl->transcript.data, 1, cl->transcript.len, f);
    fclose(f);
}

static void client_free(struct client *cl)
{
    save_seed(cl);
    buf_cleanup(&cl->transcript);
    amqp_free(cl->srv);
    pn_connection_driver_destroy(&cl->d);
    buf_cleanup(&cl->conn.out);
    buf_cleanup(&cl->in);
}

/* Opens the $cbs sender and receiver; returns the sender. */
static pn_link_t *cbs_links(struct client *cl)
{
    pn_link_t *s = pn_sender(cl->ssn, "cbs-sender");
    pn_terminus_set_address(pn_link_target(s), "$cbs");
    pn_link_open(s);
    pn_link_t *r = pn_receiver(cl->ssn, "cbs-receiver");
    pn_terminus_set_address(pn_link_source(r), "$cbs");
    pn_link_open(r);
    pn_link_flow(r, 10);
    pump(cl);
    return s;
}

static void send_msg(struct client *cl, pn_link_t *s, pn_message_t *m)
{
    static int tag;
    char buf[8192];
    size_t size = sizeof buf;
    assert_int_equal(pn_message_encode(m, buf, &size), 0);
    char t[16];
    int tl = snprintf(t, sizeof t, "t%d", ++tag);
    pn_delivery(s, pn_dtag(t, (size_t)tl));
    pn_link_send(s, buf, size);
    pn_link_advance(s);
    pump(cl);
}

static void put_prop(pn_data_t *ap, const char *k, const char *v)
{
    pn_data_put_string(ap, pn_bytes(strlen(k), k));
    pn_data_put_string(ap, pn_bytes(strlen(v), v));
}

/* Sends a put-token for name with token (message-id: ulong id, or the string sid when not NULL). */
static void put_token(struct client *cl, pn_link_t *s, const char *name, const char *token, uint64_t id,
                      const char *sid)
{
    pn_message_t *m = pn_message();
    pn_msgid_t mid;
    if (sid) {
        mid.type = PN_STRING;
        mid.u.as_bytes = pn_bytes(strlen(sid), sid);
    } else {
        mid.type = PN_ULONG;
        mid.u.as_ulong = id;
    }
    pn_message_set_id(m, mid);
    pn_message_set_reply_to(m, "cbs");
    pn_data_t *ap = pn_message_properties(m);
    pn_data_put_map(ap);
    pn_data_enter(ap);
    put_prop(ap, "operation", "put-token");
    put_prop(ap, "type", "servicebus.windows.net:sastoken");
    put_prop(ap, "name", name);
    pn_data_exit(ap);
    pn_data_put_string(pn_message_body(m), pn_bytes(strlen(token), token));
    send_msg(cl, s, m);
    pn_message_free(m);
}

static pn_link_t *attach_sender(struct client *cl, const char *target)
{
    pn_link_t *s = pn_sender(cl->ssn, target);
    pn_terminus_set_address(pn_link_target(s), target);
    pn_link_open(s);
    pump(cl);
    return s;
}

/* ---- tests ---- */

static void test_bare_amqp_and_cbs(void **state)
{
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    assert_true(cl.remote_open);
    assert_false(cl.conn.closed);
    assert_false(cl.conn.established);
    pn_link_t *s = cbs_links(&cl);
    char *tok = service_token("iothubowner", OWNER_KEY, time(NULL) + 3600);
    put_token(&cl, s, "localhost", tok, 7, NULL);
    assert_int_equal(cl.replies, 1);
    assert_int_equal(cl.status, 200);
    assert_int_equal(cl.corr_type, PN_ULONG);
    assert_int_equal(cl.corr_ulong, 7);
    assert_true(cl.conn.established);
    /* string message-id, Python-style audience */
    put_token(&cl, s, "https://localhost", tok, 0, "abc-1");
    assert_int_equal(cl.replies, 2);
    assert_int_equal(cl.status, 200);
    assert_int_equal(cl.corr_type, PN_STRING);
    assert_string_equal(cl.corr_str, "abc-1");
    free(tok);
    /* wrong key, wrong audience, no ServiceConnect: 401 */
    tok = service_token("iothubowner", SERVICE_KEY, time(NULL) + 3600);
    put_token(&cl, s, "localhost", tok, 8, NULL);
    assert_int_equal(cl.status, 401);
    free(tok);
    tok = service_token("iothubowner", OWNER_KEY, time(NULL) + 3600);
    put_token(&cl, s, "otherhub", tok, 9, NULL);
    assert_int_equal(cl.status, 401);
    free(tok);
    tok = service_token("registryRead", READ_KEY, time(NULL) + 3600);
    put_token(&cl, s, "localhost", tok, 10, NULL);
    assert_int_equal(cl.status, 401);
    free(tok);
    tok = service_token("service", SERVICE_KEY, time(NULL) - 10);
    put_token(&cl, s, "localhost", tok, 11, NULL);
    assert_int_equal(cl.status, 401);
    free(tok);
    put_token(&cl, s, "localhost", "Bearer abc", 12, NULL);
    assert_int_equal(cl.status, 401);
    assert_int_equal(cl.replies, 7);
    assert_false(cl.conn.closed);
    client_free(&cl);
}

static void test_links_need_a_token(void **state)
{
    struct client cl;
    client_open(&cl, ANONYMOUS, NULL, NULL);
    assert_true(cl.remote_open);
    attach_sender(&cl, "/messages/devicebound");
    assert_int_equal(cl.link_closes, 1);
    assert_string_equal(cl.link_cond, "amqp:unauthorized-access");
    attach_sender(&cl, "/no/such/node");
    assert_int_equal(cl.link_closes, 2);
    assert_string_equal(cl.link_cond, "amqp:not-found");
    pn_link_t *s = cbs_links(&cl);
    char *tok = service_token("service", SERVICE_KEY, time(NULL) + 3600);
    put_token(&cl, s, "localhost", tok, 1, NULL);
    free(tok);
    assert_int_equal(cl.status, 200);
    pn_link_t *c2d = attach_sender(&cl, "/messages/devicebound");
    assert_int_equal(cl.link_closes, 2);
    assert_true(pn_link_state(c2d) & PN_REMOTE_ACTIVE);
    assert_true(pn_link_credit(c2d) > 0);
    /* Python's full-URL target */
    pn_link_t *c2d2 = attach_sender(&cl, "amqps://localhost/messages/devicebound");
    assert_true(pn_link_state(c2d2) & PN_REMOTE_ACTIVE);
    assert_false(cl.conn.closed);
    client_free(&cl);
}

/* At most AMQP_MAX_LINKS links at once: the next is refused, the connection stays. */
static void test_link_limit(void **state)
{
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    for (int i = 0; i < 70; i++) {
        char name[32];
        snprintf(name, sizeof name, "r%d", i);
        pn_link_t *r = pn_receiver(cl.ssn, name);
        pn_terminus_set_address(pn_link_source(r), "$cbs");
        pn_link_open(r);
    }
    pump(&cl);
    assert_int_equal(cl.link_closes, 70 - 64);
    assert_string_equal(cl.link_cond, "amqp:resource-limit-exceeded");
    assert_false(cl.conn.closed);
    client_free(&cl);
}

static void test_sasl_plain(void **state)
{
    struct client cl;
    char *tok = service_token("service", SERVICE_KEY, time(NULL) + 3600);
    client_open(&cl, PLAIN, "service@sas.root.localhost", tok);
    assert_true(cl.remote_open);
    assert_true(cl.conn.established);
    pn_link_t *c2d = attach_sender(&cl, "/messages/devicebound");
    assert_true(pn_link_state(c2d) & PN_REMOTE_ACTIVE);
    client_free(&cl);

    /* a token of another policy than the user names */
    client_open(&cl, PLAIN, "iothubowner@sas.root.localhost", tok);
    assert_false(cl.remote_open);
    assert_true(cl.conn.closed);
    client_free(&cl);
    free(tok);

    tok = service_token("service", OWNER_KEY, time(NULL) + 3600); /* bad signature */
    client_open(&cl, PLAIN, "service@sas.root.localhost", tok);
    assert_false(cl.remote_open);
    assert_true(cl.conn.closed);
    pn_sasl_outcome_t o = pn_sasl_outcome(pn_sasl(cl.d.transport));
    assert_int_equal(o, PN_SASL_AUTH);
    client_free(&cl);
    free(tok);
}

static void test_c2d_send(void **state)
{
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    pn_link_t *s = cbs_links(&cl);
    char *tok = service_token("iothubowner", OWNER_KEY, time(NULL) + 3600);
    put_token(&cl, s, "localhost", tok, 1, NULL);
    free(tok);
    pn_link_t *c2d = attach_sender(&cl, "/messages/devicebound");
    assert_true(pn_link_state(c2d) & PN_REMOTE_ACTIVE);
    pn_message_t *m = pn_message();
    pn_message_set_address(m, "/devices/device1/messages/devicebound");
    pn_msgid_t mid = {.type = PN_STRING, .u.as_bytes = pn_bytes(3, "m-1")};
    pn_message_set_id(m, mid);
    pn_data_t *ap = pn_message_properties(m);
    pn_data_put_map(ap);
    pn_data_enter(ap);
    put_prop(ap, "iothub-ack", "full");
    put_prop(ap, "k1", "v1");
    pn_data_exit(ap);
    pn_data_put_binary(pn_message_body(m), pn_bytes(5, "hello"));
    for (int i = 0; i < C2D_MAX_QUEUE; i++) {
        send_msg(&cl, c2d, m);
        pn_delivery_t *d = pn_unsettled_head(c2d);
        assert_non_null(d);
        assert_int_equal(pn_delivery_remote_state(d), PN_ACCEPTED);
        pn_delivery_settle(d);
    }
    assert_int_equal(c2d_count(E.c2d, "device1", (int64_t)time(NULL) * 1000), C2D_MAX_QUEUE);
    const struct c2d_message *q = c2d_next(E.c2d, "device1", (int64_t)time(NULL) * 1000);
    assert_non_null(q);
    assert_string_equal(q->message_id, "m-1");
    assert_string_equal(q->ack, "full");
    assert_int_equal(q->n_props, 1);
    assert_string_equal(q->props[0].key, "k1");
    assert_int_equal(q->body_len, 5);
    assert_memory_equal(q->body, "hello", 5);
    /* the 51st */
    send_msg(&cl, c2d, m);
    pn_delivery_t *d = pn_unsettled_head(c2d);
    assert_int_equal(pn_delivery_remote_state(d), PN_REJECTED);
    assert_string_equal(pn_condition_get_name(pn_disposition_condition(pn_delivery_remote(d))),
                        "amqp:resource-limit-exceeded");
    pn_delivery_settle(d);
    /* unknown device */
    pn_message_set_address(m, "/devices/nobody/messages/devicebound");
    send_msg(&cl, c2d, m);
    d = pn_unsettled_head(c2d);
    assert_int_equal(pn_delivery_remote_state(d), PN_REJECTED);
    assert_string_equal(pn_condition_get_name(pn_disposition_condition(pn_delivery_remote(d))), "amqp:not-found");
    pn_delivery_settle(d);
    pn_message_free(m);
    assert_int_equal(c2d_purge(E.c2d, "device1"), C2D_MAX_QUEUE);
    assert_false(cl.conn.closed);
    client_free(&cl);
}

/* Raw bytes: our SASL answer, then garbage after the AMQP header: only this connection closes. */
static void test_malformed_and_oversized(void **state)
{
    struct conn c1 = {0};
    buf_init(&c1.out, 1u << 20);
    void *s1 = amqp_open(&E.env, &c1);
    struct buf in;
    buf_init(&in, 1u << 20);
    static const uint8_t hdr[8] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0};
    buf_append(&in, hdr, 8);
    static const uint8_t junk[16] = {0, 0, 0, 16, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0x99, 0x99, 0x99, 0x99, 0x99};
    buf_append(&in, junk, sizeof junk);
    assert_int_equal(amqp_input(s1, &in), ERR_CLOSED);
    assert_true(c1.closed);
    assert_true(c1.out.len >= 8);
    assert_memory_equal(c1.out.data, hdr, 8);
    amqp_free(s1);
    buf_cleanup(&c1.out);

    /* a frame announcing 1 MiB (our max-frame is 64 KiB) */
    struct conn c2 = {0};
    buf_init(&c2.out, 1u << 20);
    void *s2 = amqp_open(&E.env, &c2);
    buf_append(&in, hdr, 8);
    static const uint8_t big[8] = {0, 0x10, 0, 0, 2, 0, 0, 0};
    buf_append(&in, big, sizeof big);
    assert_int_equal(amqp_input(s2, &in), ERR_CLOSED);
    assert_true(c2.closed);
    amqp_free(s2);
    buf_cleanup(&c2.out);

    /* not AMQP at all; and AMQP-TLS (id 2): answered with our header, then closed */
    struct conn c3 = {0};
    buf_init(&c3.out, 1u << 20);
    void *s3 = amqp_open(&E.env, &c3);
    buf_append(&in, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(amqp_input(s3, &in), ERR_CLOSED);
    assert_int_equal(in.len, 0); /* a closed connection's input is dropped */
    amqp_free(s3);
    buf_cleanup(&c3.out);
    struct conn c4 = {0};
    buf_init(&c4.out, 1u << 20);
    void *s4 = amqp_open(&E.env, &c4);
    static const uint8_t tls[8] = {'A', 'M', 'Q', 'P', 2, 1, 0, 0};
    buf_append(&in, tls, 8);
    assert_int_equal(amqp_input(s4, &in), ERR_CLOSED);
    assert_int_equal(c4.out.len, 8);
    assert_memory_equal(c4.out.data, "AMQP\x03\x01\x00\x00", 8);
    amqp_free(s4);
    buf_cleanup(&c4.out);
    buf_cleanup(&in);

    /* meanwhile a good client is unaffected */
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    assert_true(cl.remote_open);
    client_free(&cl);
}

static void on_safety(struct loop *l, void *ctx)
{
    *(bool *)ctx = true;
    loop_stop(l);
}

/* No token within the deadline: the connection is closed with amqp:unauthorized-access. */
static void test_auth_deadline(void **state)
{
    E.env.auth_timeout_s = 1;
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    E.env.auth_timeout_s = 30;
    assert_true(cl.remote_open);
    bool timed_out = false;
    struct loop_timer *safety = loop_timer_add(E.loop, 5000, on_safety, &timed_out);
    stop_on_close = E.loop;
    assert_int_equal(loop_run(E.loop), ERR_OK);
    stop_on_close = NULL;
    assert_false(timed_out);
    loop_timer_cancel(E.loop, safety);
    assert_true(cl.conn.closed);
    pump(&cl);
    assert_true(cl.remote_closed);
    assert_string_equal(cl.close_cond, "amqp:unauthorized-access");
    client_free(&cl);
}

/* Every 50 ms: lets the client read what the server wrote; stops the loop once a link was closed. */
static struct loop_timer *poll_timer;

static void on_poll(struct loop *l, void *ctx)
{
    struct client *cl = ctx;
    poll_timer = NULL;
    pump(cl);
    if (cl->link_closes > 0)
        loop_stop(l);
    else
        poll_timer = loop_timer_add(l, 50, on_poll, cl);
}

/* A token that expires closes the link it authorised (and only that link). */
static void test_token_expiry_closes_links(void **state)
{
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    pn_link_t *s = cbs_links(&cl);
    char *tok = service_token("service", SERVICE_KEY, time(NULL) + 1);
    put_token(&cl, s, "localhost", tok, 1, NULL);
    free(tok);
    assert_int_equal(cl.status, 200);
    pn_link_t *c2d = attach_sender(&cl, "/messages/devicebound");
    assert_true(pn_link_state(c2d) & PN_REMOTE_ACTIVE);
    bool timed_out = false;
    struct loop_timer *safety = loop_timer_add(E.loop, 5000, on_safety, &timed_out);
    poll_timer = loop_timer_add(E.loop, 50, on_poll, &cl);
    assert_int_equal(loop_run(E.loop), ERR_OK);
    loop_timer_cancel(E.loop, poll_timer);
    poll_timer = NULL;
    assert_false(timed_out);
    loop_timer_cancel(E.loop, safety);
    pump(&cl);
    assert_int_equal(cl.link_closes, 1);
    assert_string_equal(cl.link_cond, "amqp:unauthorized-access");
    assert_true(pn_link_state(s) & PN_REMOTE_ACTIVE); /* $cbs stays */
    assert_false(cl.conn.closed);
    client_free(&cl);
}

/* A client that sends nothing for the idle timeout is closed by Proton's timer (driven from our loop), with
 * amqp:resource-limit-exceeded. */
static void test_idle_timeout(void **state)
{
    E.env.idle_timeout_ms = 300;
    struct client cl;
    client_open(&cl, BARE, NULL, NULL);
    E.env.idle_timeout_ms = 0;
    assert_true(cl.remote_open);
    uint32_t advertised = pn_transport_get_remote_idle_timeout(cl.d.transport); /* Proton sends half */
    assert_true(advertised > 0 && advertised <= 300);
    bool timed_out = false;
    struct loop_timer *safety = loop_timer_add(E.loop, 5000, on_safety, &timed_out);
    stop_on_close = E.loop;
    assert_int_equal(loop_run(E.loop), ERR_OK);
    stop_on_close = NULL;
    loop_timer_cancel(E.loop, safety);
    assert_false(timed_out);
    assert_true(cl.conn.closed);
    pump(&cl);
    assert_true(cl.remote_closed);
    assert_string_equal(cl.close_cond, "amqp:resource-limit-exceeded");
    client_free(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_amqp_and_cbs),
        cmocka_unit_test(test_links_need_a_token),
        cmocka_unit_test(test_link_limit),
        cmocka_unit_test(test_sasl_plain),
        cmocka_unit_test(test_c2d_send),
        cmocka_unit_test(test_malformed_and_oversized),
        cmocka_unit_test(test_auth_deadline),
        cmocka_unit_test(test_token_expiry_closes_links),
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
