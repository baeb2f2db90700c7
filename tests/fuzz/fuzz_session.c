/* fuzz_session.c -- libFuzzer harness for emulator/session (the hub's MQTT rules) over a real loop, in-memory
 * registry, auth and hub, without sockets: like tests/unit/test_session.c it defines conn.h itself, so net.o
 * is not linked. Input: byte 0 picks the mode, byte 1 seeds the chunk sizes, the rest is MQTT bytes from the
 * client, fed in random chunks as reads would deliver them. Modes (byte 0 % 3): 0 the unauthenticated path
 * (the input brings its own CONNECT); 1 a valid CONNECT for device1 first; 2 a CONNECT whose identity, token,
 * will and username are chosen by byte 2. Bit 7 of byte 0 connects a second device1 at the end (takeover).
 * A method call waits for device1 from the start, so a fuzzed SUBSCRIBE gets rid 1 and a reply can end it.
 * Checks: every byte the session sends decodes as MQTT; ERR_CLOSED and conn_close always go together; after
 * closing, input is ignored and nothing more is sent. Seeds: tests/fuzz/corpus/fuzz_session/. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "auth.h"
#include "buf.h"
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
#define OTHER_KEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define MAXP MQTT_MAX_PACKET_DEFAULT

/* ---- the fake connection ---- */

struct conn {
    struct buf out;
    bool closed;
};

int conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->closed)
        return ERR_CLOSED;
    int rc = buf_append(&c->out, data, len);
    if (rc)
        c->closed = true; /* net closes a connection whose output queue overflows */
    return rc;
}

int conn_send2(struct conn *c, const uint8_t *head, size_t hlen, const uint8_t *body, size_t blen)
{
    if (c->closed)
        return ERR_CLOSED;
    int rc = buf_reserve(&c->out, hlen + blen); /* all or nothing, as net's */
    if (rc == ERR_OK)
        rc = buf_append(&c->out, head, hlen);
    if (rc == ERR_OK)
        rc = buf_append(&c->out, body, blen);
    if (rc)
        c->closed = true;
    return rc;
}

void conn_close(struct conn *c, const char *reason)
{
    c->closed = true;
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
}

const char *conn_peer(const struct conn *c)
{
    return "127.0.0.1:1";
}

const char *conn_transport(const struct conn *c)
{
    return "mqtt";
}

/* ---- environment, built once ---- */

static struct {
    struct loop *loop;
    struct registry *reg;
    struct auth *auth;
    struct hub *hub;
    struct telemetry *telemetry;
    struct session_env env;
    char *token[4]; /* device1 valid, device1 expired, device1 wrong key, device1/mod1 valid */
} E;

static char *token_for(const char *device_id, const char *module_id, const char *key, uint64_t expiry)
{
    char *uri = sas_resource_uri("localhost", device_id, module_id);
    char *tok = NULL;
    if (!uri || sas_build(uri, key, expiry, NULL, &tok))
        abort();
    free(uri);
    return tok;
}

static void add_module(void)
{
    char err[128];
    json_t *body = json_pack("{s:s, s:{s:s, s:{s:s, s:s}}}", "status", "enabled", "authentication", "type", "sas",
                             "symmetricKey", "primaryKey", KEY2, "secondaryKey", KEY1);
    const struct identity *id;
    bool created;
    if (!body || registry_put(E.reg, "device1", "mod1", body, NULL, &id, &created, err, sizeof err))
        abort();
    json_decref(body);
    body = json_pack("{s:s}", "status", "disabled");
    if (!body || registry_put(E.reg, "off", NULL, body, NULL, &id, &created, err, sizeof err))
        abort();
    json_decref(body);
}

static void env_init(void)
{
    char err[128];
    const char *hosts[] = {"localhost"};
    log_set_level(LOG_LEVEL_ERROR);
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    E.auth = auth_new(hosts, 1, OWNER_KEY);
    E.hub = E.loop && E.reg ? hub_new(E.loop, E.reg) : NULL;
    E.telemetry = telemetry_new(64, 1u << 20);
    if (!E.hub || !E.auth || !E.telemetry || registry_ensure_device(E.reg, "device1", KEY1, KEY2))
        abort();
    add_module();
    E.env = (struct session_env){.loop = E.loop, .hub = E.hub, .reg = E.reg, .auth = E.auth, .max_packet = MAXP,
                                 .telemetry = E.telemetry};
    uint64_t later = (uint64_t)time(NULL) + 10 * 365 * 86400;
    E.token[0] = token_for("device1", NULL, KEY1, later);
    E.token[1] = token_for("device1", NULL, KEY1, 1000);
    E.token[2] = token_for("device1", NULL, OTHER_KEY, later);
    E.token[3] = token_for("device1", "mod1", KEY2, later);
}

/* ---- one fuzzed connection ---- */

struct dev {
    struct conn conn;
    struct session *s;
    struct buf in;
    bool net_closed; /* net would have closed it (input buffer full): nothing more is read */
};

/* Every packet the session sent must decode; then the output is dropped. */
static void check_output(struct dev *d)
{
    size_t off = 0;
    while (off < d->conn.out.len) {
        struct mqtt_packet pkt;
        size_t used = 0;
        if (mqtt_decode(d->conn.out.data + off, d->conn.out.len - off, SIZE_MAX, &pkt, &used) != ERR_OK)
            abort();
        off += used;
    }
    buf_cleanup(&d->conn.out);
}

/* Net stops reading a closing connection; input is still fed here, to check that the session ignores it. */
static void feed(struct dev *d, const uint8_t *p, size_t len)
{
    bool was_closed = d->conn.closed;
    if (d->net_closed || buf_append(&d->in, p, len)) {
        d->net_closed = true; /* net closes on "input buffer full" */
        return;
    }
    int rc = session_on_input(d->s, &d->in);
    if ((rc == ERR_CLOSED) != d->conn.closed || (was_closed && d->conn.out.len))
        abort();
    check_output(d);
}

static void dev_open(struct dev *d)
{
    memset(d, 0, sizeof *d);
    buf_init(&d->conn.out, 1u << 20);
    buf_init(&d->in, MAXP + 65536);
    d->s = session_new(&E.env, &d->conn);
    if (!d->s)
        abort();
}

static void dev_free(struct dev *d)
{
    session_free(d->s);
    buf_cleanup(&d->conn.out);
    buf_cleanup(&d->in);
}

/* A CONNECT from the harness: variant 0 is device1 with a valid token; others are picked by v's bits. */
static void send_connect(struct dev *d, uint8_t v)
{
    static const char *ids[] = {"device1", "device1/mod1", "off", "ghost"};
    static const char *users[] = {"hub", "localhost/device1/?api-version=2021-04-12", "localhost/device2", ""};
    const char *id = ids[v & 3];
    const char *tok = (v & 3) == 1 ? E.token[3] : E.token[(v >> 2) % 3];
    const char *user = users[(v >> 4) & 3];
    const char *will = "devices/device1/messages/events/";
    struct mqtt_connect c = {.client_id = {(const uint8_t *)id, strlen(id)},
                             .keep_alive = (uint16_t)(v & 0x40 ? 30 : 0),
                             .has_username = true,
                             .username = {(const uint8_t *)user, strlen(user)},
                             .has_password = true,
                             .password = {(const uint8_t *)tok, strlen(tok)},
                             .has_will = (v & 0x80) != 0,
                             .will_topic = {(const uint8_t *)will, strlen(will)},
                             .will_message = {(const uint8_t *)"bye", 3}};
    struct buf b;
    buf_init(&b, SIZE_MAX);
    if (mqtt_encode_connect(&b, &c))
        abort();
    feed(d, b.data, b.len);
    buf_cleanup(&b);
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Feeds data in chunks of 1 byte up to 4 KiB, as TCP reads might split it. */
static void feed_chunks(struct dev *d, const uint8_t *data, size_t len, uint8_t seed)
{
    uint32_t x = 0x9e3779b9u ^ seed;
    for (size_t off = 0; off < len;) {
        uint32_t r = next_rand(&x);
        size_t n = (r & 3) == 0 ? 1 : 1 + (r >> 8) % ((r & 1) ? 4096 : 64);
        if (n > len - off)
            n = len - off;
        feed(d, data + off, n);
        off += n;
    }
}

static void on_call(void *ctx, const struct hub_call_result *r)
{
    *(bool *)ctx = true;
}

static void takeover(void)
{
    struct dev t;
    dev_open(&t);
    send_connect(&t, 0);
    dev_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!E.hub)
        env_init();
    if (size < 3)
        return 0;
    bool call_done = false;
    struct hub_call_request req = {.device_id = "device1", .method_name = "m", .payload = "{}", .payload_len = 2,
                                   .response_timeout_s = 30, .connect_timeout_s = 30};
    struct hub_call_result now;
    uint64_t call = hub_call_start(E.hub, &req, on_call, &call_done, &now);
    struct dev d;
    dev_open(&d);
    if (data[0] % 3 == 1)
        send_connect(&d, 0);
    else if (data[0] % 3 == 2)
        send_connect(&d, data[2]);
    feed_chunks(&d, data + 3, size - 3, data[1]);
    if (data[0] & 0x80)
        takeover();
    dev_free(&d);
    if (call && !call_done)
        hub_call_cancel(E.hub, call);
    struct hub_stats st;
    hub_get_stats(E.hub, &st);
    if (st.connections != 0 || st.method_listeners != 0 || st.calls_pending != 0)
        abort(); /* every session left the hub */
    return 0;
}
