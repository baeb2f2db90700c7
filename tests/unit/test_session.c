/* test_session.c -- unit tests for emulator/session (the hub's MQTT rules) with a real loop, in-memory
 * registry, auth and hub, but no sockets: this file defines conn.h (conn_send, conn_close, conn_established,
 * conn_peer, conn_transport) over an in-memory output buffer, so net.o is never linked (a duplicate symbol
 * would fail the link). Covers CONNECT variants, SUBSCRIBE and PUBLISH rules, method calls and replies,
 * twin GET/PATCH, PINGREQ, DISCONNECT, wills, takeover, keep-alive and token expiry. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "conn.h"
#include "db.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "registry.h"
#include "sas.h"
#include "session.h"
#include "telemetry.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define KEY2 "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="
#define MODKEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define MAXP MQTT_MAX_PACKET_DEFAULT

/* ---- the fake connection (conn.h) ---- */

struct conn {
    struct buf out;
    size_t rd; /* bytes of out already looked at by the test */
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

int conn_send2(struct conn *c, const uint8_t *head, size_t hlen, const uint8_t *body, size_t blen)
{
    if (c->closed)
        return ERR_CLOSED;
    int rc = buf_reserve(&c->out, hlen + blen); /* all or nothing, as net's */
    if (rc == ERR_OK)
        rc = buf_append(&c->out, head, hlen);
    return rc == ERR_OK ? buf_append(&c->out, body, blen) : rc;
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->closed)
        return;
    c->closed = true;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
}

void conn_abort(struct conn *c, const char *reason)
{
    conn_close(c, reason);
}

void conn_expect(struct conn *c, size_t total)
{
    (void)c;
    (void)total; /* net's read sizing: nothing to do without sockets */
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
    return "mqtt";
}

/* ---- environment ---- */

static struct {
    struct loop *loop;
    struct registry *reg;
    struct auth *auth;
    struct hub *hub;
    struct telemetry *telemetry;
    struct session_env env;
} E;

struct dev {
    struct conn conn;
    struct session *s;
    struct buf in;
};

static void put_identity(const char *device_id, const char *module_id, const char *key, bool enabled)
{
    char body[512], err[256];
    snprintf(body, sizeof body,
             "{\"status\":\"%s\",\"authentication\":{\"type\":\"sas\",\"symmetricKey\":{\"primaryKey\":\"%s\","
             "\"secondaryKey\":\"%s\"}}}",
             enabled ? "enabled" : "disabled", key, KEY2);
    json_t *j = json_loads(body, 0, NULL);
    const struct identity *id = NULL;
    bool created = false;
    assert_int_equal(registry_put(E.reg, device_id, module_id, j, NULL, &id, &created, err, sizeof err), ERR_OK);
    json_decref(j);
}

static int setup(void **state)
{
    char err[256];
    const char *hosts[] = {"localhost"};
    log_set_level(LOG_LEVEL_ERROR);
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    E.auth = auth_new(hosts, 1, OWNER_KEY);
    E.hub = hub_new(E.loop, E.reg);
    E.telemetry = telemetry_new(100, 1u << 20);
    assert_non_null(E.hub);
    assert_non_null(E.telemetry);
    assert_int_equal(registry_ensure_device(E.reg, "device1", KEY1, KEY2), ERR_OK);
    assert_int_equal(registry_ensure_device(E.reg, "device2", KEY1, KEY2), ERR_OK);
    put_identity("device1", "mod1", MODKEY, true);
    put_identity("off", NULL, KEY1, false);
    E.env = (struct session_env){.loop = E.loop, .hub = E.hub, .reg = E.reg, .auth = E.auth,
                                 .token_skew_s = 0, .max_packet = MAXP, .telemetry = E.telemetry};
    return 0;
}

static int teardown(void **state)
{
    hub_free(E.hub);
    telemetry_free(E.telemetry);
    loop_free(E.loop);
    auth_free(E.auth);
    struct db *reg_db = registry_db(E.reg);
    registry_free(E.reg);
    db_close(reg_db);
    return 0;
}

static void dev_open(struct dev *d)
{
    memset(d, 0, sizeof *d);
    buf_init(&d->conn.out, 16u << 20);
    buf_init(&d->in, MAXP + 65536);
    d->s = session_new(&E.env, &d->conn);
    assert_non_null(d->s);
}

/* What net does when it reaps a closed connection. */
static void dev_free(struct dev *d)
{
    session_free(d->s);
    d->s = NULL;
    buf_cleanup(&d->conn.out);
    buf_cleanup(&d->in);
}

static int dev_feed(struct dev *d, const void *p, size_t len)
{
    assert_int_equal(buf_append(&d->in, p, len), ERR_OK);
    return session_on_input(d->s, &d->in);
}

static int dev_feed_buf(struct dev *d, struct buf *b)
{
    int rc = dev_feed(d, b->data, b->len);
    buf_cleanup(b);
    return rc;
}

/* The next packet the session sent; false when there is none. Fields point into d->conn.out: use them before
 * feeding more input. */
static bool next_packet(struct dev *d, struct mqtt_packet *pkt)
{
    size_t used = 0;
    if (d->conn.rd >= d->conn.out.len)
        return false;
    int rc = mqtt_decode(d->conn.out.data + d->conn.rd, d->conn.out.len - d->conn.rd, SIZE_MAX, pkt, &used);
    assert_int_equal(rc, ERR_OK);
    d->conn.rd += used;
    return true;
}

static void expect_nothing_sent(struct dev *d)
{
    struct mqtt_packet pkt;
    assert_false(next_packet(d, &pkt));
}

/* ---- packets ---- */

static char *make_token(const char *device_id, const char *module_id, const char *key, uint64_t expiry)
{
    char *uri = sas_resource_uri("localhost", device_id, module_id);
    char *tok = NULL;
    assert_int_equal(sas_build(uri, key, expiry, NULL, &tok), ERR_OK);
    free(uri);
    return tok;
}

struct connect_opts {
    const char *client_id;
    const char *username; /* NULL: none */
    const char *password; /* NULL: none */
    uint16_t keep_alive;
    const char *will_topic;
    const char *protocol; /* NULL: "MQTT" */
    uint8_t level;
};

static int send_connect(struct dev *d, const struct connect_opts *o)
{
    struct mqtt_connect c = {.keep_alive = o->keep_alive, .clean_session = false, .level = o->level};
    c.client_id = (struct mqtt_bytes){(const uint8_t *)o->client_id, strlen(o->client_id)};
    if (o->protocol)
        c.protocol_name = (struct mqtt_bytes){(const uint8_t *)o->protocol, strlen(o->protocol)};
    c.has_username = o->username || o->password;
    const char *user = o->username ? o->username : "hub";
    c.username = (struct mqtt_bytes){(const uint8_t *)user, strlen(user)};
    c.has_password = o->password != NULL;
    if (o->password)
        c.password = (struct mqtt_bytes){(const uint8_t *)o->password, strlen(o->password)};
    c.has_will = o->will_topic != NULL;
    if (o->will_topic) {
        c.will_topic = (struct mqtt_bytes){(const uint8_t *)o->will_topic, strlen(o->will_topic)};
        c.will_message = (struct mqtt_bytes){(const uint8_t *)"gone", 4};
    }
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_connect(&b, &c), ERR_OK);
    return dev_feed_buf(d, &b);
}

static void expect_connack(struct dev *d, uint8_t code)
{
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_CONNACK);
    assert_int_equal(pkt.u.connack.return_code, code);
    assert_int_equal(d->conn.closed, code != 0);
    assert_int_equal(d->conn.established, code == 0);
}

/* CONNECTs d as device[/module] with a valid token and checks CONNACK 0. */
static void connect_as(struct dev *d, const char *device_id, const char *module_id, uint16_t keep_alive)
{
    char cid[300];
    snprintf(cid, sizeof cid, "%s%s%s", device_id, module_id ? "/" : "", module_id ? module_id : "");
    char *tok = make_token(device_id, module_id, module_id ? MODKEY : KEY1, (uint64_t)time(NULL) + 3600);
    struct connect_opts o = {.client_id = cid, .password = tok, .keep_alive = keep_alive};
    assert_int_equal(send_connect(d, &o), ERR_OK);
    free(tok);
    expect_connack(d, 0);
}

static int send_publish(struct dev *d, const char *topic, const char *body, uint8_t qos, uint16_t pid)
{
    struct mqtt_publish p = {.qos = qos, .packet_id = pid};
    p.topic = (struct mqtt_bytes){(const uint8_t *)topic, strlen(topic)};
    p.payload = (struct mqtt_bytes){(const uint8_t *)body, body ? strlen(body) : 0};
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_OK);
    return dev_feed_buf(d, &b);
}

/* SUBSCRIBE with filters[0..n) (NULL-terminated list), each at qos[i]. */
static int send_subscribe(struct dev *d, uint16_t pid, const char *const *filters, const uint8_t *qos)
{
    struct mqtt_subscribe s = {.packet_id = pid};
    for (; filters[s.count]; s.count++) {
        s.filters[s.count] = (struct mqtt_bytes){(const uint8_t *)filters[s.count], strlen(filters[s.count])};
        s.qos[s.count] = qos ? qos[s.count] : 0;
    }
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_OK);
    return dev_feed_buf(d, &b);
}

static int send_empty(struct dev *d, enum mqtt_type type)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_empty(&b, type), ERR_OK);
    return dev_feed_buf(d, &b);
}

static void subscribe_methods(struct dev *d)
{
    const char *f[] = {"$iothub/methods/POST/#", NULL};
    assert_int_equal(send_subscribe(d, 1, f, NULL), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_SUBACK);
}

/* Checks that the next packet is a QoS 0 PUBLISH on topic with body. */
static void expect_publish(struct dev *d, const char *topic, const char *body)
{
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_PUBLISH);
    assert_int_equal(pkt.u.publish.qos, 0);
    assert_int_equal(pkt.u.publish.topic.len, strlen(topic));
    assert_memory_equal(pkt.u.publish.topic.p, topic, strlen(topic));
    if (body) {
        assert_int_equal(pkt.u.publish.payload.len, strlen(body));
        assert_memory_equal(pkt.u.publish.payload.p, body, strlen(body));
    }
}

/* ---- CONNECT ---- */

static void connect_ok_marks_identity_connected(void **state)
{
    struct dev d;
    dev_open(&d);
    assert_string_equal(session_identity(d.s), "(unauthenticated 127.0.0.1:40000)");
    char *tok = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) + 3600);
    struct connect_opts o = {.client_id = "device1",
                             .username = "localhost/device1/?api-version=2021-04-12&DeviceClientType=x",
                             .password = tok,
                             .keep_alive = 60};
    assert_int_equal(send_connect(&d, &o), ERR_OK);
    free(tok);
    expect_connack(&d, 0);
    assert_string_equal(session_identity(d.s), "device1");
    assert_true(registry_find(E.reg, "device1", NULL)->connected);
    struct hub_stats st;
    hub_get_stats(E.hub, &st);
    assert_int_equal(st.connections, 1);
    dev_free(&d);
    assert_false(registry_find(E.reg, "device1", NULL)->connected);
    hub_get_stats(E.hub, &st);
    assert_int_equal(st.connections, 0);
}

/* Each case: CONNACK 5, then close, and the identity stays offline. */
static void refused(const struct connect_opts *o)
{
    struct dev d;
    dev_open(&d);
    assert_int_equal(send_connect(&d, o), ERR_CLOSED);
    expect_connack(&d, 5);
    expect_nothing_sent(&d);
    dev_free(&d);
    assert_false(registry_find(E.reg, "device1", NULL)->connected);
}

static void connect_refusals(void **state)
{
    uint64_t later = (uint64_t)time(NULL) + 3600;
    char *good = make_token("device1", NULL, KEY1, later);
    char *wrong_key = make_token("device1", NULL, MODKEY, later);
    char *expired = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) - 10);
    char *other = make_token("device2", NULL, KEY1, later);
    char *off = make_token("off", NULL, KEY1, later);
    char *ghost = make_token("ghost", NULL, KEY1, later);
    char *nomod = make_token("device1", "nomod", MODKEY, later);
    struct connect_opts cases[] = {
        {.client_id = "device1", .password = good, .protocol = "MQIsdp", .level = 3}, /* MQTT 3.1 */
        {.client_id = "device1", .password = wrong_key},
        {.client_id = "device1", .password = expired},
        {.client_id = "device1", .password = other},            /* a token for another device */
        {.client_id = "off", .password = off},                  /* disabled */
        {.client_id = "ghost", .password = ghost},              /* unknown device */
        {.client_id = "device1/nomod", .password = nomod},      /* unknown module */
        {.client_id = "device1/", .password = good},            /* empty module id */
        {.client_id = "/mod1", .password = good},
        {.client_id = "dev ice1", .password = good},            /* not a valid id */
        {.client_id = "device1", .password = NULL},             /* no password (X.509) */
        {.client_id = "device1", .password = ""},
        {.client_id = "device1", .username = "localhost/device2/?api-version=2021-04-12", .password = good},
        {.client_id = "device1", .username = "localhost/device1x", .password = good},
        {.client_id = "device1", .password = good, .will_topic = "devices/device2/messages/events/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        refused(&cases[i]);
    free(good);
    free(wrong_key);
    free(expired);
    free(other);
    free(off);
    free(ghost);
    free(nomod);
}

static void connect_lenient_usernames(void **state)
{
    const char *users[] = {"anything", "localhost/device1", "localhost/device1/", "localhost/device1?x=1", ""};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        struct dev d;
        dev_open(&d);
        char *tok = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) + 3600);
        struct connect_opts o = {.client_id = "device1", .username = users[i], .password = tok};
        assert_int_equal(send_connect(&d, &o), ERR_OK);
        free(tok);
        expect_connack(&d, 0);
        dev_free(&d);
    }
}

static void connect_module(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", "mod1", 0);
    assert_string_equal(session_identity(d.s), "device1/mod1");
    assert_true(registry_find(E.reg, "device1", "mod1")->connected);
    assert_false(registry_find(E.reg, "device1", NULL)->connected);
    dev_free(&d);
    assert_false(registry_find(E.reg, "device1", "mod1")->connected);
}

/* MQTT 5 is not decodable as 3.1.1: closed without a CONNACK. */
/* An MQTT 5 client is told no (CONNACK 5, the hub's only refusal), not just dropped. */
static void connect_level_5_refused(void **state)
{
    struct dev d;
    dev_open(&d);
    struct connect_opts o = {.client_id = "device1", .password = "x", .level = 5};
    assert_int_equal(send_connect(&d, &o), ERR_CLOSED);
    assert_true(d.conn.closed);
    expect_connack(&d, 5);
    dev_free(&d);
}

static void packets_before_connect_close(void **state)
{
    enum mqtt_type types[] = {MQTT_PINGREQ, MQTT_DISCONNECT};
    for (size_t i = 0; i < 2; i++) {
        struct dev d;
        dev_open(&d);
        assert_int_equal(send_empty(&d, types[i]), ERR_CLOSED);
        assert_true(d.conn.closed);
        expect_nothing_sent(&d);
        dev_free(&d);
    }
    struct dev d;
    dev_open(&d);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events/", "{}", 1, 1), ERR_CLOSED);
    expect_nothing_sent(&d);
    dev_free(&d);
}

static void second_connect_closes(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    char *tok = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) + 3600);
    struct connect_opts o = {.client_id = "device1", .password = tok};
    assert_int_equal(send_connect(&d, &o), ERR_CLOSED);
    free(tok);
    expect_nothing_sent(&d);
    dev_free(&d);
}

/* A token valid until the end of time: the expiry timer arithmetic used to overflow (UBSan aborts). */
static void connect_with_far_future_token(void **state)
{
    uint64_t expiries[] = {UINT64_MAX, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX - 1, 9223372036854775ull};
    E.env.token_skew_s = 300;
    for (size_t i = 0; i < sizeof expiries / sizeof expiries[0]; i++) {
        struct dev d;
        dev_open(&d);
        char *tok = make_token("device1", NULL, KEY1, expiries[i]);
        struct connect_opts o = {.client_id = "device1", .password = tok};
        assert_int_equal(send_connect(&d, &o), ERR_OK);
        free(tok);
        expect_connack(&d, 0);
        dev_free(&d);
    }
}

/* ---- SUBSCRIBE ---- */

static void subscribe_allowed_filters(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    const char *f[] = {"$iothub/methods/POST/#", "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#",
                       "devices/device1/messages/devicebound/#", "devices/+/messages/devicebound/#", NULL};
    uint8_t qos[] = {0, 1, 2, 1, 0};
    assert_int_equal(send_subscribe(&d, 7, f, qos), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_SUBACK);
    assert_int_equal(pkt.u.subscribe.packet_id, 7);
    assert_int_equal(pkt.u.subscribe.count, 5);
    uint8_t want[] = {0, 1, 1, 1, 0}; /* min(requested, 1) */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(pkt.u.subscribe.qos[i], want[i]);
    assert_false(d.conn.closed);
    struct hub_stats st;
    hub_get_stats(E.hub, &st);
    assert_int_equal(st.method_listeners, 1);
    /* one at a time, too */
    for (size_t i = 0; f[i]; i++) {
        const char *one[] = {f[i], NULL};
        assert_int_equal(send_subscribe(&d, (uint16_t)(10 + i), one, NULL), ERR_OK);
        assert_true(next_packet(&d, &pkt));
        assert_int_equal(pkt.type, MQTT_SUBACK);
    }
    dev_free(&d);
}

static void subscribe_module_filters(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", "mod1", 0);
    const char *f[] = {"devices/device1/modules/mod1/inputs/#", "devices/device1/modules/mod1/#",
                       "$iothub/methods/POST/#", NULL};
    assert_int_equal(send_subscribe(&d, 3, f, NULL), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_SUBACK);
    assert_int_equal(pkt.u.subscribe.count, 3);
    const char *bad[] = {"devices/device1/messages/devicebound/#", NULL}; /* a device's filter, not a module's */
    assert_int_equal(send_subscribe(&d, 4, bad, NULL), ERR_CLOSED);
    dev_free(&d);
}

static void subscribe_forbidden_closes(void **state)
{
    const char *forbidden[] = {"#", "$iothub/#", "$iothub/methods/POST/reboot", "$iothub/methods/POST/+",
                               "devices/device2/messages/devicebound/#", "devices/device1/messages/events/#",
                               "devices/device1/modules/mod1/inputs/#", "$iothub/twin/res/200"};
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        struct dev d;
        dev_open(&d);
        connect_as(&d, "device1", NULL, 0);
        /* one allowed filter first: the whole SUBSCRIBE is refused, without a SUBACK */
        const char *f[] = {"$iothub/methods/POST/#", forbidden[i], NULL};
        assert_int_equal(send_subscribe(&d, 1, f, NULL), ERR_CLOSED);
        assert_true(d.conn.closed);
        expect_nothing_sent(&d);
        dev_free(&d);
    }
}

static void unsubscribe_methods_stops_calls(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe_methods(&d);
    struct mqtt_subscribe u = {.packet_id = 9, .count = 1};
    u.filters[0] = (struct mqtt_bytes){(const uint8_t *)"$iothub/methods/POST/#", 22};
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_unsubscribe(&b, &u), ERR_OK);
    assert_int_equal(dev_feed_buf(&d, &b), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_UNSUBACK);
    assert_int_equal(pkt.u.packet_id, 9);
    struct hub_call_request req = {.device_id = "device1", .method_name = "m", .response_timeout_s = 5};
    struct hub_call_result now;
    assert_int_equal(hub_call_start(E.hub, &req, NULL, NULL, &now), 0);
    assert_int_equal(now.outcome, HUB_CALL_NOT_ONLINE);
    dev_free(&d);
}

/* ---- PUBLISH ---- */

static void publish_telemetry(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    uint64_t before = telemetry_total(E.telemetry);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events/", "{\"t\":1}", 1, 42), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_PUBACK);
    assert_int_equal(pkt.u.packet_id, 42);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events/%24.ct=json&a=b", "x", 0, 0), ERR_OK);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events", "", 0, 0), ERR_OK);
    expect_nothing_sent(&d); /* QoS 0: no PUBACK */
    assert_int_equal(telemetry_total(E.telemetry), before + 3); /* and kept in the telemetry log */
    assert_false(d.conn.closed);
    dev_free(&d);
}

static void publish_module_telemetry(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", "mod1", 0);
    assert_int_equal(send_publish(&d, "devices/device1/modules/mod1/messages/events/", "{}", 0, 0), ERR_OK);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events/", "{}", 0, 0), ERR_CLOSED);
    dev_free(&d);
}

/* Each topic, published by a fresh device1 connection at qos, closes that connection, with nothing sent back
 * (no PUBACK). */
static void each_publish_closes(const char *const *topics, size_t n, int qos)
{
    for (size_t i = 0; i < n; i++) {
        struct dev d;
        dev_open(&d);
        connect_as(&d, "device1", NULL, 0);
        assert_int_equal(send_publish(&d, topics[i], "{}", qos, qos ? 5 : 0), ERR_CLOSED);
        assert_true(d.conn.closed);
        expect_nothing_sent(&d);
        dev_free(&d);
    }
}

static void publish_forbidden_closes(void **state)
{
    const char *topics[] = {"devices/device2/messages/events/", "devices/device1/messages/eventsX",
                            "devices/device1/messages/devicebound/", "$iothub/methods/POST/x/?$rid=1",
                            "$iothub/twin/PATCH/properties/desired/?$rid=1", "hello", "$iothub/twin/GET/",
                            "$iothub/twin/PATCH/properties/reported/?rid=1"};
    each_publish_closes(topics, sizeof topics / sizeof topics[0], 1);
}

static void publish_qos2_closes(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    assert_int_equal(send_publish(&d, "devices/device1/messages/events/", "{}", 2, 5), ERR_CLOSED);
    expect_nothing_sent(&d);
    dev_free(&d);
}

static void publish_topic_too_long_closes(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    char topic[1200];
    memset(topic, 'a', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    memcpy(topic, "devices/device1/messages/events/", 32);
    assert_int_equal(send_publish(&d, topic, "{}", 0, 0), ERR_CLOSED);
    dev_free(&d);
}

/* ---- direct methods ---- */

struct call_seen {
    int n;
    enum hub_call_outcome outcome;
    int status;
    char payload[64];
};

static void on_call(void *ctx, const struct hub_call_result *r)
{
    struct call_seen *c = ctx;
    c->n++;
    c->outcome = r->outcome;
    c->status = r->status;
    snprintf(c->payload, sizeof c->payload, "%.*s", (int)r->payload_len, (const char *)r->payload);
}

static uint64_t start_call(const char *method, const char *payload, struct call_seen *seen)
{
    struct hub_call_request req = {.device_id = "device1", .method_name = method, .payload = payload,
                                   .payload_len = payload ? strlen(payload) : 0, .response_timeout_s = 30,
                                   .connect_timeout_s = 30};
    struct hub_call_result now;
    return hub_call_start(E.hub, &req, on_call, seen, &now);
}

static void method_call_round_trip_and_hex_rids(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe_methods(&d);
    struct call_seen seen[11] = {{0}};
    char topic[64], reply[64];
    for (int i = 0; i < 11; i++) {
        assert_true(start_call("reboot", i ? "{\"a\":1}" : NULL, &seen[i]) > 0);
        snprintf(topic, sizeof topic, "$iothub/methods/POST/reboot/?$rid=%x", i + 1);
        expect_publish(&d, topic, i ? "{\"a\":1}" : "");
    }
    /* answer in reverse order; rid "a" is the tenth call */
    for (int i = 10; i >= 0; i--) {
        snprintf(reply, sizeof reply, "$iothub/methods/res/%d/?$rid=%x", 200 + i, i + 1);
        assert_int_equal(send_publish(&d, reply, "{\"ok\":true}", 0, 0), ERR_OK);
        assert_int_equal(seen[i].n, 1);
        assert_int_equal(seen[i].outcome, HUB_CALL_ANSWERED);
        assert_int_equal(seen[i].status, 200 + i);
        assert_string_equal(seen[i].payload, "{\"ok\":true}");
    }
    expect_nothing_sent(&d);
    dev_free(&d);
}

static void method_reply_unknown_rid_is_dropped(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe_methods(&d);
    assert_int_equal(send_publish(&d, "$iothub/methods/res/200/?$rid=99", "{}", 0, 0), ERR_OK);
    assert_int_equal(send_publish(&d, "$iothub/methods/res/200/?$rid=\x01\n", "{}", 1, 3), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt)); /* the QoS 1 reply is still acknowledged */
    assert_int_equal(pkt.type, MQTT_PUBACK);
    assert_false(d.conn.closed);
    dev_free(&d);
}

static void method_reply_malformed_topic_closes(void **state)
{
    const char *topics[] = {"$iothub/methods/res/abc/?$rid=1", "$iothub/methods/res/200",
                            "$iothub/methods/res/200/?rid=1", "$iothub/methods/res/200/?$rid=",
                            "$iothub/methods/res//?$rid=1", "$iothub/methods/res/99999999999/?$rid=1",
                            "$iothub/methods/res/200x/?$rid=1"};
    each_publish_closes(topics, sizeof topics / sizeof topics[0], 0);
}

/* A method name longer than the old fixed 256-byte topic buffer: it was reported as "not online". */
static void method_with_long_name_is_delivered(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe_methods(&d);
    char name[301], topic[400];
    memset(name, 'm', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    struct call_seen seen = {0};
    assert_true(start_call(name, "1", &seen) > 0);
    snprintf(topic, sizeof topic, "$iothub/methods/POST/%s/?$rid=1", name);
    expect_publish(&d, topic, "1");
    dev_free(&d);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.outcome, HUB_CALL_DISCONNECTED);
}

/* Calls waiting for the device are delivered after the SUBACK, in one go. */
static void waiting_calls_delivered_on_subscribe(void **state)
{
    struct call_seen seen[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_true(start_call("wait", NULL, &seen[i]) > 0);
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe_methods(&d);
    struct mqtt_packet pkt;
    for (int i = 0; i < 3; i++) {
        assert_true(next_packet(&d, &pkt));
        assert_int_equal(pkt.type, MQTT_PUBLISH);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen[i].n, 0);
    dev_free(&d); /* the device goes away before answering */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(seen[i].n, 1);
        assert_int_equal(seen[i].outcome, HUB_CALL_DISCONNECTED);
    }
}

/* ---- takeover ---- */

static void takeover_closes_the_first_connection(void **state)
{
    struct dev a, b;
    dev_open(&a);
    dev_open(&b);
    connect_as(&a, "device1", NULL, 0);
    subscribe_methods(&a);
    struct call_seen seen = {0};
    assert_true(start_call("m", NULL, &seen) > 0);
    expect_publish(&a, "$iothub/methods/POST/m/?$rid=1", NULL);
    connect_as(&b, "device1", NULL, 0);
    assert_true(a.conn.closed); /* kicked */
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.outcome, HUB_CALL_DISCONNECTED);
    /* the first connection's late input and its reaping change nothing for the second */
    assert_int_equal(send_publish(&a, "$iothub/methods/res/200/?$rid=1", "{}", 0, 0), ERR_CLOSED);
    dev_free(&a);
    assert_true(registry_find(E.reg, "device1", NULL)->connected);
    struct hub_stats st;
    hub_get_stats(E.hub, &st);
    assert_int_equal(st.connections, 1);
    subscribe_methods(&b);
    assert_true(start_call("m", NULL, &seen) > 0);
    expect_publish(&b, "$iothub/methods/POST/m/?$rid=1", NULL); /* per-connection counter */
    assert_int_equal(send_publish(&b, "$iothub/methods/res/201/?$rid=1", "{}", 0, 0), ERR_OK);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.status, 201);
    dev_free(&b);
}

static void disconnect_identity_kicks_device_and_modules(void **state)
{
    struct dev a, m;
    dev_open(&a);
    dev_open(&m);
    connect_as(&a, "device1", NULL, 0);
    connect_as(&m, "device1", "mod1", 0);
    hub_disconnect_identity(E.hub, "device1", NULL, "identity disabled");
    assert_true(a.conn.closed);
    assert_true(m.conn.closed);
    assert_false(registry_find(E.reg, "device1", NULL)->connected);
    dev_free(&a);
    dev_free(&m);
}

/* ---- twin ---- */

static void subscribe(struct dev *d, const char *filter)
{
    const char *f[] = {filter, NULL};
    assert_int_equal(send_subscribe(d, 3, f, NULL), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_SUBACK);
}

static void unsubscribe(struct dev *d, const char *filter)
{
    struct mqtt_subscribe u = {.packet_id = 4, .count = 1};
    u.filters[0] = (struct mqtt_bytes){(const uint8_t *)filter, strlen(filter)};
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_unsubscribe(&b, &u), ERR_OK);
    assert_int_equal(dev_feed_buf(d, &b), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_UNSUBACK);
}

/* A twin client as the SDKs are one: connected, and subscribed to the twin answers. */
static void connect_twin(struct dev *d, const char *device_id)
{
    connect_as(d, device_id, NULL, 0);
    subscribe(d, "$iothub/twin/res/#");
}

static json_t *publish_json(struct dev *d, const char *topic)
{
    struct mqtt_packet pkt;
    assert_true(next_packet(d, &pkt));
    assert_int_equal(pkt.type, MQTT_PUBLISH);
    assert_int_equal(pkt.u.publish.topic.len, strlen(topic));
    assert_memory_equal(pkt.u.publish.topic.p, topic, strlen(topic));
    if (pkt.u.publish.payload.len == 0)
        return NULL;
    json_t *j = json_loadb((const char *)pkt.u.publish.payload.p, pkt.u.publish.payload.len, 0, NULL);
    assert_non_null(j);
    return j;
}

static json_int_t section_version(json_t *doc, const char *part)
{
    return json_integer_value(json_object_get(json_object_get(doc, part), "$version"));
}

static void twin_get_and_reported_patch(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_twin(&d, "device1");
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=42", " ", 0, 0), ERR_OK);
    json_t *doc = publish_json(&d, "$iothub/twin/res/200/?$rid=42");
    assert_int_equal(section_version(doc, "desired"), 1);
    assert_int_equal(section_version(doc, "reported"), 1);
    json_decref(doc);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=u-1", "{\"a\":{\"b\":1}}", 1, 8),
                     ERR_OK);
    assert_null(publish_json(&d, "$iothub/twin/res/204/?$rid=u-1&$version=2"));
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_PUBACK);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=7", "{\"a\":{\"b\":null},\"c\":2}",
                                  0, 0),
                     ERR_OK);
    assert_null(publish_json(&d, "$iothub/twin/res/204/?$rid=7&$version=3"));
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=8", "[1]", 0, 0), ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/400/?$rid=8");
    assert_int_equal(json_integer_value(json_object_get(doc, "errorCode")), 400004);
    json_decref(doc);
    /* The topic's $version (optimistic concurrency): the current reported version passes, another is 412. */
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=v1&$version=2", "{\"d\":1}", 0, 0),
                     ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/412/?$rid=v1");
    assert_int_equal(json_integer_value(json_object_get(doc, "errorCode")), 412001);
    json_decref(doc);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=v2&$version=x", "{\"d\":1}", 0, 0),
                     ERR_OK);
    json_decref(publish_json(&d, "$iothub/twin/res/400/?$rid=v2"));
    /* Not JSON at all: 400006 (IotHubFormatError). */
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=8b", "{", 0, 0), ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/400/?$rid=8b");
    assert_int_equal(json_integer_value(json_object_get(doc, "errorCode")), 400006);
    assert_non_null(json_string_value(json_object_get(doc, "message")));
    json_decref(doc);
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=9", NULL, 0, 0), ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/200/?$rid=9");
    assert_int_equal(section_version(doc, "reported"), 3);
    json_t *rep = json_object_get(doc, "reported");
    assert_int_equal(json_integer_value(json_object_get(rep, "c")), 2);
    assert_int_equal(json_object_size(json_object_get(rep, "a")), 0);
    json_decref(doc);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=v3&$version=3", "{\"d\":1}", 0, 0),
                     ERR_OK);
    assert_null(publish_json(&d, "$iothub/twin/res/204/?$rid=v3&$version=4"));
    dev_free(&d);
}

/* MQTT 3.1.1 §3.3.5: the hub publishes only to subscribed topics. Without $iothub/twin/res/# a twin request is
 * carried out (a reported PATCH applies) but nothing is sent back; subscribing later brings the answers. */
static void twin_answers_need_subscription(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    struct mqtt_packet pkt;
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=1", NULL, 0, 0), ERR_OK);
    assert_false(next_packet(&d, &pkt));
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=2", "{\"quiet\":1}", 1, 9),
                     ERR_OK);
    assert_true(next_packet(&d, &pkt)); /* only the PUBACK of the QoS 1 PUBLISH */
    assert_int_equal(pkt.type, MQTT_PUBACK);
    assert_false(next_packet(&d, &pkt));
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=3", "[1]", 0, 0), ERR_OK);
    assert_false(next_packet(&d, &pkt)); /* an error answer is not sent either */
    assert_false(d.conn.closed);
    /* The patch applied: the service sees it. */
    json_t *twin = NULL;
    assert_int_equal(hub_twin_get(E.hub, "device1", NULL, &twin, NULL, 0), ERR_OK);
    json_t *rep = json_object_get(json_object_get(twin, "properties"), "reported");
    assert_int_equal(json_integer_value(json_object_get(rep, "quiet")), 1);
    assert_int_equal(json_integer_value(json_object_get(rep, "$version")), 2);
    json_decref(twin);
    subscribe(&d, "$iothub/twin/res/#");
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=4", NULL, 0, 0), ERR_OK);
    json_t *doc = publish_json(&d, "$iothub/twin/res/200/?$rid=4");
    assert_int_equal(section_version(doc, "reported"), 2);
    json_decref(doc);
    unsubscribe(&d, "$iothub/twin/res/#");
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=5", NULL, 0, 0), ERR_OK);
    assert_false(next_packet(&d, &pkt));
    dev_free(&d);
}

/* Reported properties grew without bound (and past 64 KiB every twin GET failed with 500): 32 KiB is the cap,
 * answered 403 with the hub's DeviceModelMaxPropertiesExceeded, and the twin stays as it was. */
static void twin_reported_size_is_capped(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_twin(&d, "device1");
    static char body[40 * 1024];
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        body[n++] = '{';
        for (int k = 0; k < 6; k++) {
            n += (size_t)snprintf(body + n, sizeof body - n, "%s\"k%d_%d\":\"", k ? "," : "", i, k);
            memset(body + n, 'x', 3000);
            n += 3000;
            body[n++] = '"';
        }
        memcpy(body + n, "}", 2);
        assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=1", body, 0, 0), ERR_OK);
        json_t *reply = publish_json(&d, i == 0 ? "$iothub/twin/res/204/?$rid=1&$version=2" : "$iothub/twin/res/403/?$rid=1");
        if (i == 1)
            assert_int_equal(json_integer_value(json_object_get(reply, "errorCode")), 403100);
        json_decref(reply);
    }
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=2", NULL, 0, 0), ERR_OK);
    json_t *doc = publish_json(&d, "$iothub/twin/res/200/?$rid=2");
    assert_int_equal(section_version(doc, "reported"), 2);
    assert_null(json_object_get(json_object_get(doc, "reported"), "k1_0"));
    json_decref(doc);
    dev_free(&d);
}

/* A desired change from the service reaches the connection only once it subscribed to the desired topic, as
 * $iothub/twin/PATCH/properties/desired/?$version=N with the patch and its $version; unsubscribed, nothing. */
static void twin_desired_push_needs_subscription(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_twin(&d, "device1");
    json_t *body = json_pack("{s:{s:{s:i}}}", "properties", "desired", "rate", 5);
    struct hub_twin_update u = {.device_id = "device1", .body = body, .mode = TWIN_MERGE};
    json_t *doc = NULL;
    struct twin_error e;
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK);
    json_decref(doc);
    struct mqtt_packet pkt;
    assert_false(next_packet(&d, &pkt)); /* not subscribed: nothing sent */
    subscribe(&d, "$iothub/twin/PATCH/properties/desired/#");
    json_object_set_new(json_object_get(json_object_get(body, "properties"), "desired"), "rate", json_integer(6));
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK);
    json_decref(doc);
    json_t *patch = publish_json(&d, "$iothub/twin/PATCH/properties/desired/?$version=3");
    assert_int_equal(json_integer_value(json_object_get(patch, "rate")), 6);
    assert_int_equal(json_integer_value(json_object_get(patch, "$version")), 3);
    json_decref(patch);
    /* The device's twin GET sees the same desired version. */
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=g", NULL, 0, 0), ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/200/?$rid=g");
    assert_int_equal(section_version(doc, "desired"), 3);
    json_decref(doc);
    unsubscribe(&d, "$iothub/twin/PATCH/properties/desired/#");
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK);
    json_decref(doc);
    assert_false(next_packet(&d, &pkt));
    json_decref(body);
    dev_free(&d);
}

/* CleanSession 0 keeps the desired subscription: the next connection gets pushes without subscribing again. */
static void twin_desired_subscription_survives_reconnect(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    subscribe(&d, "$iothub/twin/PATCH/properties/desired/#");
    dev_free(&d);
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    json_t *body = json_pack("{s:{s:{s:s}}}", "properties", "desired", "after", "reconnect");
    struct hub_twin_update u = {.device_id = "device1", .body = body, .mode = TWIN_MERGE};
    json_t *doc = NULL;
    struct twin_error e;
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK);
    json_int_t v = json_integer_value(json_object_get(json_object_get(json_object_get(doc, "properties"), "desired"),
                                                      "$version"));
    json_decref(doc);
    json_decref(body);
    char topic[96];
    snprintf(topic, sizeof topic, "$iothub/twin/PATCH/properties/desired/?$version=%lld", (long long)v);
    json_t *patch = publish_json(&d, topic);
    assert_string_equal(json_string_value(json_object_get(patch, "after")), "reconnect");
    json_decref(patch);
    unsubscribe(&d, "$iothub/twin/PATCH/properties/desired/#"); /* leave the kept session as other tests expect */
    dev_free(&d);
}

/* A twin with desired and reported both near their 32 KiB limits still answers a GET (the reply is over 64 KiB). */
static void twin_get_with_full_sections(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_twin(&d, "device2");
    json_t *desired = json_object(), *reported = json_object();
    char big[4001];
    memset(big, 'd', 4000);
    big[4000] = '\0';
    for (int i = 0; i < 8; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(desired, k, json_string(big));
        json_object_set_new(reported, k, json_string(big));
    }
    /* one more value that brings each section to exactly 32 KiB of compact JSON */
    json_object_set_new(desired, "p", json_string(""));
    size_t pad = TWIN_DESIRED_MAX - json_dumpb(desired, NULL, 0, JSON_COMPACT);
    assert_true(pad < sizeof big);
    big[pad] = '\0';
    json_object_set_new(desired, "p", json_string(big));
    json_object_set_new(reported, "p", json_string(big));
    assert_int_equal(json_dumpb(reported, NULL, 0, JSON_COMPACT), TWIN_REPORTED_MAX);
    json_t *body = json_pack("{s:{s:o}}", "properties", "desired", desired);
    struct hub_twin_update u = {.device_id = "device2", .body = body, .mode = TWIN_REPLACE};
    json_t *doc = NULL;
    struct twin_error e;
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK);
    json_decref(doc);
    json_decref(body);
    char *text = json_dumps(reported, JSON_COMPACT);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/reported/?$rid=f", text, 0, 0), ERR_OK);
    free(text);
    json_decref(reported);
    json_t *ok = publish_json(&d, "$iothub/twin/res/204/?$rid=f&$version=2");
    json_decref(ok);
    assert_int_equal(send_publish(&d, "$iothub/twin/GET/?$rid=g", NULL, 0, 0), ERR_OK);
    doc = publish_json(&d, "$iothub/twin/res/200/?$rid=g");
    assert_int_equal(json_object_size(json_object_get(doc, "desired")), 10); /* 9 + $version */
    assert_int_equal(json_object_size(json_object_get(doc, "reported")), 10);
    json_decref(doc);
    body = json_pack("{}");
    u.body = body;
    assert_int_equal(hub_twin_update(E.hub, &u, &doc, NULL, 0, &e), ERR_OK); /* leave device2's twin small */
    json_decref(doc);
    json_decref(body);
    dev_free(&d);
}

/* A device may not write desired properties: publishing to the desired topic closes the connection. */
static void twin_device_cannot_write_desired(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    assert_int_equal(send_publish(&d, "$iothub/twin/PATCH/properties/desired/?$rid=1", "{\"a\":1}", 0, 0), ERR_CLOSED);
    dev_free(&d);
}

static void twin_without_rid_closes(void **state)
{
    const char *topics[] = {"$iothub/twin/GET/", "$iothub/twin/GET/?x=1",
                            "$iothub/twin/PATCH/properties/reported/?$rid="};
    each_publish_closes(topics, sizeof topics / sizeof topics[0], 0);
}

/* ---- PINGREQ, DISCONNECT, wills ---- */

static void pingreq_and_stray_puback(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    assert_int_equal(send_empty(&d, MQTT_PINGREQ), ERR_OK);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_PINGRESP);
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 3), ERR_OK);
    assert_int_equal(dev_feed_buf(&d, &b), ERR_OK);
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBREL, 3), ERR_OK); /* QoS 2 flow: not supported */
    assert_int_equal(dev_feed_buf(&d, &b), ERR_CLOSED);
    dev_free(&d);
}

/* Messages the telemetry log has received. */
static uint64_t telemetry_count(void)
{
    return telemetry_total(E.telemetry);
}

static void connect_with_will(struct dev *d)
{
    char *tok = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) + 3600);
    struct connect_opts o = {.client_id = "device1", .password = tok, .will_topic = "devices/device1/messages/events/"};
    assert_int_equal(send_connect(d, &o), ERR_OK);
    free(tok);
    expect_connack(d, 0);
}

/* DISCONNECT closes, drops the will, and nothing after it in the same read is processed. */
static void disconnect_then_more_data(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_with_will(&d);
    uint64_t before = telemetry_count();
    struct buf b;
    buf_init(&b, SIZE_MAX);
    struct mqtt_publish p = {.qos = 1, .packet_id = 4, .topic = {(const uint8_t *)"devices/device1/messages/events/", 32}};
    assert_int_equal(mqtt_encode_empty(&b, MQTT_DISCONNECT), ERR_OK);
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_OK);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_PINGREQ), ERR_OK);
    assert_int_equal(dev_feed_buf(&d, &b), ERR_CLOSED);
    assert_true(d.conn.closed);
    expect_nothing_sent(&d);
    assert_int_equal(d.in.len, 40); /* left unread: the connection is closing */
    assert_int_equal(session_on_input(d.s, &d.in), ERR_CLOSED); /* even if the transport feeds it again */
    assert_int_equal(d.in.len, 40);
    expect_nothing_sent(&d);
    dev_free(&d);
    assert_int_equal(telemetry_count(), before); /* no will */
}

static void connection_lost_publishes_will(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_with_will(&d);
    uint64_t before = telemetry_count();
    dev_free(&d); /* no DISCONNECT */
    assert_int_equal(telemetry_count(), before + 1);
}

/* ---- bad input ---- */

static void malformed_and_oversized_close(void **state)
{
    struct dev d;
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    const uint8_t bad[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}; /* 5-byte remaining length */
    assert_int_equal(dev_feed(&d, bad, sizeof bad), ERR_CLOSED);
    dev_free(&d);
    dev_open(&d);
    connect_as(&d, "device1", NULL, 0);
    const uint8_t big[] = {0x30, 0xff, 0xff, 0x7f}; /* 2 MiB announced */
    assert_int_equal(dev_feed(&d, big, sizeof big), ERR_CLOSED);
    dev_free(&d);
}

/* Input split anywhere, even one byte at a time, is decoded the same. */
static void input_split_byte_by_byte(void **state)
{
    struct dev d;
    dev_open(&d);
    char *tok = make_token("device1", NULL, KEY1, (uint64_t)time(NULL) + 3600);
    struct mqtt_connect c = {.client_id = {(const uint8_t *)"device1", 7}, .has_username = true,
                             .username = {(const uint8_t *)"u", 1}, .has_password = true,
                             .password = {(const uint8_t *)tok, strlen(tok)}};
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(mqtt_encode_connect(&b, &c), ERR_OK);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_PINGREQ), ERR_OK);
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(dev_feed(&d, b.data + i, 1), ERR_OK);
    buf_cleanup(&b);
    free(tok);
    expect_connack(&d, 0);
    struct mqtt_packet pkt;
    assert_true(next_packet(&d, &pkt));
    assert_int_equal(pkt.type, MQTT_PINGRESP);
    dev_free(&d);
}

/* ---- timers ---- */

static void stop_loop(struct loop *l, void *ctx)
{
    loop_stop(l);
}

static void keepalive_and_token_expiry_close(void **state)
{
    struct dev ka, tk, ok;
    dev_open(&ka);
    dev_open(&tk);
    dev_open(&ok);
    connect_as(&ka, "device1", NULL, 1); /* 1.5 s of silence closes */
    char *tok = make_token("device2", NULL, KEY1, (uint64_t)time(NULL) + 1);
    struct connect_opts o = {.client_id = "device2", .password = tok};
    assert_int_equal(send_connect(&tk, &o), ERR_OK);
    free(tok);
    expect_connack(&tk, 0);
    connect_as(&ok, "device1", "mod1", 0); /* no keep-alive, token valid for an hour */
    assert_non_null(loop_timer_add(E.loop, 1000, stop_loop, NULL));
    assert_int_equal(loop_run(E.loop), ERR_OK);
    assert_false(ka.conn.closed);
    assert_int_equal(send_empty(&ka, MQTT_PINGREQ), ERR_OK);
    assert_non_null(loop_timer_add(E.loop, 1200, stop_loop, NULL));
    assert_int_equal(loop_run(E.loop), ERR_OK);
    assert_false(ka.conn.closed); /* the PINGREQ restarted the 1.5 s */
    assert_true(tk.conn.closed);  /* se passed (plus the rounding second) */
    assert_string_equal(tk.conn.reason, "SAS token expired");
    assert_non_null(loop_timer_add(E.loop, 800, stop_loop, NULL));
    assert_int_equal(loop_run(E.loop), ERR_OK);
    assert_true(ka.conn.closed);
    assert_string_equal(ka.conn.reason, "keep-alive expired");
    assert_false(ok.conn.closed);
    dev_free(&ka);
    dev_free(&tk);
    dev_free(&ok);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(connect_ok_marks_identity_connected),
        T(connect_refusals),
        T(connect_lenient_usernames),
        T(connect_module),
        T(connect_level_5_refused),
        T(packets_before_connect_close),
        T(second_connect_closes),
        T(connect_with_far_future_token),
        T(subscribe_allowed_filters),
        T(subscribe_module_filters),
        T(subscribe_forbidden_closes),
        T(unsubscribe_methods_stops_calls),
        T(publish_telemetry),
        T(publish_module_telemetry),
        T(publish_forbidden_closes),
        T(publish_qos2_closes),
        T(publish_topic_too_long_closes),
        T(method_call_round_trip_and_hex_rids),
        T(method_reply_unknown_rid_is_dropped),
        T(method_reply_malformed_topic_closes),
        T(method_with_long_name_is_delivered),
        T(waiting_calls_delivered_on_subscribe),
        T(takeover_closes_the_first_connection),
        T(disconnect_identity_kicks_device_and_modules),
        T(twin_get_and_reported_patch),
        T(twin_answers_need_subscription),
        T(twin_reported_size_is_capped),
        T(twin_desired_push_needs_subscription),
        T(twin_device_cannot_write_desired),
        T(twin_desired_subscription_survives_reconnect),
        T(twin_get_with_full_sections),
        T(twin_without_rid_closes),
        T(pingreq_and_stray_puback),
        T(disconnect_then_more_data),
        T(connection_lost_publishes_will),
        T(malformed_and_oversized_close),
        T(input_split_byte_by_byte),
        T(keepalive_and_token_expiry_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
