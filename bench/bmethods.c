/* bmethods.c -- the method-call round-trip scenario: for each transport and device count, connect the
 * devices to every target; for each number of calls in flight, connect the callers; for each payload, run
 * one measured phase per target, alternating which target goes first (the machine is shared and noisy).
 * Prints one JSON object per phase on stdout; progress on stderr. */
#include "bmethods.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bcall.h"
#include "bdev.h"
#include "bnet.h"
#include "bsetup.h"
#include "err.h"

#define BMETH_CONNECT_TIMEOUT_S 300.0
#define BMETH_MAX_TARGETS 2

struct bmeth {
    struct bopt *o;
    struct bnet *n;
    const struct btarget *targets[BMETH_MAX_TARGETS];
    size_t n_targets;
    struct bdev_set *devs[BMETH_MAX_TARGETS];
    struct bcall_set *calls[BMETH_MAX_TARGETS];
    bool tls;
    long devices, inflight;
    double warmup, measure, drain;
    unsigned phase;
    int failures;
};

static void emit(json_t *j)
{
    if (j) {
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
    }
}

/* A JSON string of exactly len bytes (quotes included): "xxxx...". len >= 2. */
static char *make_payload(size_t len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    memset(p, 'x', len);
    p[0] = p[len - 1] = '"';
    p[len] = '\0';
    return p;
}

static void report(struct bmeth *m, size_t t, long payload, const struct bcall_result *r)
{
    const struct btarget *tg = m->targets[t];
    fprintf(stderr,
            "  %-9s %-5s dev=%-5ld inflight=%-3ld payload=%-6ld %8.0f calls/s p50=%.3f ms p99=%.3f ms "
            "cpu bench=%.2f server=%.2f (%.2f s/10k calls)%s%s\n",
            tg->name, m->tls ? "tls" : "plain", m->devices, m->inflight, payload, r->calls_per_s, r->p50 * 1e3,
            r->p99 * 1e3, r->bench_cpu, r->server_cpu, r->server_cpu_s_per_10k, r->errors ? " ERRORS: " : "", r->error);
    emit(json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:s}", "kind",
                   "method", "target", tg->name, "transport", m->tls ? "tls" : "plain", "devices",
                   (json_int_t)m->devices, "inflight", (json_int_t)m->inflight, "payload_bytes", (json_int_t)payload,
                   "calls", (json_int_t)r->calls, "errors", (json_int_t)r->errors, "seconds", r->seconds, "calls_per_s",
                   r->calls_per_s, "p50_ms", r->p50 * 1e3, "p90_ms", r->p90 * 1e3, "p99_ms", r->p99 * 1e3, "max_ms",
                   r->max * 1e3, "samples", (json_int_t)r->samples, "bench_cpu", r->bench_cpu, "server_cpu",
                   r->server_cpu, "server_cpu_s_per_10k", r->server_cpu_s_per_10k, "error", r->error));
}

static int run_payload(struct bmeth *m, long payload)
{
    char *json = make_payload((size_t)payload);
    if (!json)
        return ERR_NOMEM;
    int rc = ERR_OK;
    for (size_t i = 0; i < m->n_targets && !rc; i++) {
        size_t t = (i + m->phase) % m->n_targets; /* alternate who goes first */
        struct bcall_result r;
        rc = bcall_set_payload(m->calls[t], json, (size_t)payload);
        if (!rc)
            rc = bcall_set_run(m->calls[t], m->warmup, m->measure, m->drain, &r);
        if (rc == ERR_NOMEM)
            break;
        report(m, t, payload, &r);
        if (rc || r.errors || bdev_set_lost(m->devs[t]))
            rc = ERR_IO;
    }
    m->phase++;
    free(json);
    return rc;
}

static void free_callers(struct bmeth *m)
{
    for (size_t t = 0; t < m->n_targets; t++) {
        bcall_set_free(m->calls[t]);
        m->calls[t] = NULL;
    }
}

static int run_inflight(struct bmeth *m)
{
    long payloads[BOPT_LIST_MAX];
    size_t np = bopt_list(m->o, "payloads", "16,4096,102400", payloads);
    int rc = ERR_OK;
    for (size_t t = 0; t < m->n_targets && !rc; t++) {
        struct bcall_config cc = {
            .target = m->targets[t], .callers = (size_t)m->inflight, .devices = (size_t)m->devices};
        m->calls[t] = bcall_set_new(m->n, &cc);
        rc = m->calls[t] ? bcall_set_connect(m->calls[t], BMETH_CONNECT_TIMEOUT_S) : ERR_NOMEM;
        if (rc)
            fprintf(stderr, "iothub_bench: callers: %s\n", m->calls[t] ? bcall_set_error(m->calls[t]) : "no memory");
    }
    for (size_t i = 0; i < np && !rc; i++) {
        if (payloads[i] < 2 || payloads[i] > 128 * 1024) {
            fprintf(stderr, "iothub_bench: payload %ld out of range (2..131072)\n", payloads[i]);
            rc = ERR_INVALID;
        } else {
            rc = run_payload(m, payloads[i]);
        }
    }
    free_callers(m);
    return rc;
}

static void free_devices(struct bmeth *m)
{
    for (size_t t = 0; t < m->n_targets; t++) {
        bdev_set_free(m->devs[t]);
        m->devs[t] = NULL;
    }
}

static int connect_devices(struct bmeth *m)
{
    for (size_t t = 0; t < m->n_targets; t++) {
        struct bdev_config dc = {
            .target = m->targets[t], .count = (size_t)m->devices, .max_pending = 64, .keepalive_s = BDEV_KEEPALIVE_S};
        double secs = 0;
        m->devs[t] = bdev_set_new(m->n, &dc);
        int rc = m->devs[t] ? bdev_set_connect(m->devs[t], BMETH_CONNECT_TIMEOUT_S, &secs) : ERR_NOMEM;
        if (rc) {
            fprintf(stderr, "iothub_bench: devices: %s\n", m->devs[t] ? bdev_set_error(m->devs[t]) : "no memory");
            return rc;
        }
        fprintf(stderr, "%s: %ld %s devices connected in %.2f s (%s)\n", m->targets[t]->name, m->devices,
                m->tls ? "TLS" : "plain", secs, bdev_set_tls_desc(m->devs[t]));
    }
    return ERR_OK;
}

static int run_devices(struct bmeth *m)
{
    long inflight[BOPT_LIST_MAX];
    size_t ni = bopt_list(m->o, "inflight", "1,16,64", inflight);
    int rc = connect_devices(m);
    for (size_t i = 0; i < ni && !rc; i++) {
        m->inflight = inflight[i];
        rc = m->inflight > 0 && m->inflight <= 4096 ? run_inflight(m) : ERR_INVALID;
    }
    free_devices(m);
    return rc;
}

static int run_transport(struct bmeth *m, const struct bsetup *b)
{
    long devices[BOPT_LIST_MAX];
    size_t nd = bopt_list(m->o, "devices", "1,100,1000", devices);
    m->n_targets = 0;
    for (int k = BTARGET_EMULATOR; k <= BTARGET_MOSQUITTO; k++) {
        const struct btarget *t = bsetup_target(b, (enum btarget_kind)k, m->tls);
        if (t)
            m->targets[m->n_targets++] = t;
    }
    if (!m->n_targets) {
        fprintf(stderr, "iothub_bench: no %s target: give its ports (and CA file)\n", m->tls ? "TLS" : "plain");
        return ERR_INVALID;
    }
    int rc = ERR_OK;
    for (size_t i = 0; i < nd && !rc; i++) {
        m->devices = devices[i];
        rc = m->devices > 0 && m->devices <= 1000000 ? run_devices(m) : ERR_INVALID;
    }
    return rc;
}

int bmeth_main(struct bopt *o)
{
    struct bsetup b;
    char err[256];
    struct bmeth m = {.o = o};
    int rc = bsetup_init(&b, o, err, sizeof err) ? ERR_INVALID : ERR_OK;
    if (rc)
        fprintf(stderr, "iothub_bench: %s\n", err);
    m.warmup = bopt_double(o, "warmup", 0.5);
    m.measure = bopt_double(o, "measure", 3.0);
    m.drain = bopt_double(o, "drain", 30.0);
    m.n = rc ? NULL : bnet_new();
    if (!rc && !m.n)
        rc = ERR_NOMEM;
    const char *transports = bopt_str(o, "transports", "tls,plain");
    for (int tls = 1; tls >= 0 && !rc; tls--) {
        m.tls = tls;
        if (bopt_has(o, "transports", transports, tls ? "tls" : "plain"))
            rc = run_transport(&m, &b);
    }
    if (o->bad) {
        fprintf(stderr, "iothub_bench: %s\n", o->why);
        rc = ERR_INVALID;
    }
    bnet_free(m.n);
    bsetup_cleanup(&b);
    return rc;
}
