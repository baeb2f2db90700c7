/* fuzz_amqp.c -- libFuzzer harness for the AMQP front (emulator/amqp: sasl, frames, cbs, Proton's driver,
 * the normaliser) over a real loop, auth, in-memory registry and C2D queues, without sockets: it defines conn.h
 * itself, so net.o is not linked. Byte 0 picks a prefix: 0 none (the input brings its own protocol header),
 * 1 the bare AMQP header, 2 SASL ANONYMOUS then the AMQP header; bit 2 also puts a valid service token first
 * through SASL PLAIN instead (so links are authorised). Byte 1 seeds the chunk sizes; the rest is client bytes
 * fed in chunks as reads deliver them. Checks: what we send is our protocol header(s) followed by whole,
 * well-formed frames; ERR_CLOSED and conn_close always go together; after closing nothing more is sent.
 * Seeds: tests/fuzz/corpus/fuzz_amqp/ (client transcripts written by test_amqp with AMQP_SEED_DIR set; the
 * device_* ones are python3-qpid-proton device sessions -- put-token with device1's token valid until 2100,
 * telemetry, method, twin and C2D links -- recorded through a proxy). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "amqp.h"
#include "auth.h"
#include "buf.h"
#include "c2d.h"
#include "conn.h"
#include "db.h"
#include "err.h"
#include "eventhub.h"
#include "eventlog.h"
#include "faults.h"
#include "frames.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "sas.h"
#include "telemetry.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define SERVICE_KEY "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="
#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            abort();                                                                                                   \
    } while (0)

struct conn {
    struct buf out;
    bool closed;
};

int conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    CHECK(!c->closed);
    int rc = buf_append(&c->out, data, len);
    if (rc)
        c->closed = true;
    return rc;
}

void conn_close(struct conn *c, const char *reason)
{
    c->closed = true;
}

/* Fault injection's abrupt drop (KillTcp on a device link): here the same as a close. */
void conn_abort(struct conn *c, const char *reason)
{
    conn_close(c, reason);
}

void conn_established(struct conn *c)
{
}

const char *conn_peer(const struct conn *c)
{
    return "fuzz";
}

const char *conn_transport(const struct conn *c)
{
    return "amqp";
}

static struct {
    struct loop *loop;
    struct registry *reg;
    struct auth *auth;
    struct c2d *c2d;
    struct eventlog *log; /* the Event Hub-compatible endpoint (eventhub.c) is fuzzed too */
    struct eventhub *eh;
    struct hub *hub; /* device links (devlinks.c) */
    struct telemetry *telemetry;
    struct faults *faults;
    struct amqp_env env;
    char *plain; /* a SASL PLAIN initial response with a valid token */
    size_t plain_len;
} F;

static void init_once(void)
{
    if (F.loop)
        return;
    char err[256];
    const char *hosts[] = {"localhost"};
    log_set_level(LOG_LEVEL_ERROR);
    F.loop = loop_new();
    F.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    F.auth = auth_new(hosts, 1, OWNER_KEY);
    CHECK(F.loop && F.reg && F.auth);
    CHECK(registry_ensure_device(F.reg, "device1", KEY1, KEY1) == ERR_OK);
    F.c2d = c2d_new(F.reg, NULL, 0);
    CHECK(F.c2d);
    struct eventlog_limits lim = {.partitions = 2, .max_events = 16, .max_bytes = 1u << 20};
    F.log = eventlog_new(&lim, 0);
    CHECK(F.log && eventlog_group_add(F.log, "cg", NULL) == ERR_OK);
    for (int i = 0; i < 4; i++) {
        struct eventlog_input in = {.device_id = i % 2 ? "device1" : "device2", .prop_bag = "%24.mid=m&k=v",
                                    .body = (const uint8_t *)"{}", .len = 2};
        CHECK(eventlog_append(F.log, &in, 1000 + i, NULL) == ERR_OK);
    }
    const char *eh_hosts[] = {"localhost"}, *aliases[] = {"localhost"};
    struct eventhub_config ec = {.loop = F.loop, .log = F.log, .auth = F.auth, .hub_name = "myhub",
                                 .aliases = aliases, .n_aliases = 1, .hosts = eh_hosts, .n_hosts = 1,
                                 .redirect_host = "localhost", .redirect_port = 5671};
    F.eh = eventhub_new(&ec);
    CHECK(F.eh);
    F.hub = hub_new(F.loop, F.reg);
    F.telemetry = telemetry_new(16, 1u << 20);
    F.faults = F.hub ? faults_new(F.loop, F.hub) : NULL;
    CHECK(F.hub && F.telemetry && F.faults);
    F.env = (struct amqp_env){.loop = F.loop, .auth = F.auth, .c2d = F.c2d, .eventhub = F.eh, .auth_timeout_s = 30,
                              .hub = F.hub, .reg = F.reg, .telemetry = F.telemetry, .faults = F.faults};
    char *tok = NULL;
    CHECK(sas_build_raw("localhost", SERVICE_KEY, 4102444800u, "service", &tok) == ERR_OK); /* year 2100 */
    const char user[] = "service@sas.root.localhost";
    F.plain_len = 1 + sizeof user - 1 + 1 + strlen(tok);
    F.plain = malloc(F.plain_len);
    CHECK(F.plain);
    F.plain[0] = 0;
    memcpy(F.plain + 1, user, sizeof user - 1);
    F.plain[sizeof user] = 0;
    memcpy(F.plain + sizeof user + 1, tok, strlen(tok));
    free(tok);
}

static void put_init(struct buf *b, const char *mech, const char *resp, size_t rlen)
{
    size_t ml = strlen(mech);
    size_t body = 3 + 9 + 2 + ml + 5 + rlen;
    uint32_t size = (uint32_t)(8 + body);
    uint8_t h[8] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8), (uint8_t)size, 2, 1, 0, 0};
    buf_append(b, h, 8);
    uint32_t lsize = (uint32_t)(4 + 2 + ml + 5 + rlen);
    uint8_t d[12] = {
        0x00, 0x53, 0x41, 0xd0, (uint8_t)(lsize >> 24), (uint8_t)(lsize >> 16), (uint8_t)(lsize >> 8), (uint8_t)lsize,
        0,    0,    0,    2};
    buf_append(b, d, sizeof d);
    uint8_t m[2] = {0xa3, (uint8_t)ml};
    buf_append(b, m, 2);
    buf_append(b, mech, ml);
    uint8_t r[5] = {0xb0, (uint8_t)(rlen >> 24), (uint8_t)(rlen >> 16), (uint8_t)(rlen >> 8), (uint8_t)rlen};
    buf_append(b, r, 5);
    buf_append(b, resp, rlen);
}

/* Everything we sent: protocol headers ("AMQP" + id) where a header belongs, whole frames otherwise. */
static void check_output(const struct buf *out)
{
    size_t at = 0;
    bool header_next = true;
    while (at < out->len) {
        if (header_next || (out->len - at >= 4 && memcmp(out->data + at, "AMQP", 4) == 0)) {
            CHECK(out->len - at >= 8);
            CHECK(memcmp(out->data + at, "AMQP", 4) == 0);
            at += 8;
            header_next = false;
            continue;
        }
        struct frames_header h;
        CHECK(frames_header_decode(out->data + at, out->len - at, &h) == ERR_OK);
        CHECK(h.size <= out->len - at);
        size_t off = (size_t)h.doff * 4;
        if (h.size > off) {
            struct frames_perf pf;
            CHECK(frames_perf_decode(out->data + at + off, h.size - off, &pf) == ERR_OK);
        }
        at += h.size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;
    struct conn c = {0};
    buf_init(&c.out, 64u << 20);
    struct buf in;
    buf_init(&in, 1u << 20);
    void *s = amqp_open(&F.env, &c);
    CHECK(s);
    static const uint8_t amqp_hdr[8] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0};
    static const uint8_t sasl_hdr[8] = {'A', 'M', 'Q', 'P', 3, 1, 0, 0};
    switch (mode & 3) {
    case 1:
        buf_append(&in, amqp_hdr, 8);
        break;
    case 2:
    case 3:
        buf_append(&in, sasl_hdr, 8);
        if (mode & 4)
            put_init(&in, "PLAIN", F.plain, F.plain_len);
        else
            put_init(&in, "ANONYMOUS", "", 0);
        buf_append(&in, amqp_hdr, 8);
        break;
    default:
        break;
    }
    int rc = ERR_OK;
    size_t at = 0;
    while (at < size && rc == ERR_OK) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 512;
        if (n > size - at)
            n = size - at;
        CHECK(buf_append(&in, data + at, n) == ERR_OK);
        at += n;
        rc = amqp_input(s, &in);
        CHECK((rc == ERR_CLOSED) == c.closed);
    }
    if (in.len && rc == ERR_OK) {
        rc = amqp_input(s, &in);
        CHECK((rc == ERR_CLOSED) == c.closed);
    }
    check_output(&c.out);
    size_t sent = c.out.len;
    if (c.closed) {
        buf_append(&in, "AMQP", 4);
        CHECK(amqp_input(s, &in) == ERR_CLOSED);
        CHECK(c.out.len == sent);
    }
    amqp_closed(s);
    amqp_free(s);
    c2d_purge(F.c2d, "device1");
    buf_cleanup(&c.out);
    buf_cleanup(&in);
    return 0;
}
