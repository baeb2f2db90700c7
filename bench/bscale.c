/* bscale.c -- the connection-scale scenario (see bscale.h). Devices connect through several loopback source
 * addresses (127.0.0.2, .3, ...) so that more connections than one ephemeral-port range fit; a cap bounds
 * the handshakes in progress, the same for both targets. */
#include "bscale.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bdev.h"
#include "bnet.h"
#include "bsetup.h"
#include "bstat.h"
#include "err.h"

#define BSCALE_MAX_SRC 32

struct bscale {
    const struct btarget *t;
    long devices;
    double connect_s, settle_s, idle_s;
    long rss_before, rss_after, bench_rss;
    double idle_cpu;
    size_t connected, lost;
    char error[160];
};

/* Keeps the devices' connections served (nothing is expected) for seconds. */
static void idle_for(struct bnet *n, double seconds)
{
    double end = bstat_now() + seconds;
    for (double left; (left = end - bstat_now()) > 0;)
        bnet_poll(n, (int)(left * 1000) + 1);
}

static void emit(const struct bscale *s, bool tls)
{
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    double per = s->connected ? (double)(s->rss_after - s->rss_before) / (double)s->connected : 0;
    fprintf(stderr, "%s %s: %zu/%ld devices in %.2f s, RSS %ld -> %ld KiB (%.2f KiB/device), idle CPU %.2f%%%s%s\n",
            s->t->name, tls ? "TLS" : "plain", s->connected, s->devices, s->connect_s, s->rss_before, s->rss_after, per,
            s->idle_cpu, s->error[0] ? " ERROR: " : "", s->error);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:s}", "kind", "scale",
                  "target", s->t->name, "transport", tls ? "tls" : "plain", "devices", (json_int_t)s->devices,
                  "connected", (json_int_t)s->connected, "lost", (json_int_t)s->lost, "connect_s", s->connect_s,
                  "connects_per_s", s->connect_s > 0 ? (double)s->connected / s->connect_s : 0.0, "rss_before_kib",
                  (json_int_t)s->rss_before, "rss_after_kib", (json_int_t)s->rss_after, "rss_per_device_kib", per,
                  "idle_cpu_pct", s->idle_cpu, "idle_s", s->idle_s, "bench_rss_kib", (json_int_t)s->bench_rss,
                  "nofile_limit", (json_int_t)rl.rlim_cur, "error", s->error);
    if (j) {
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
    }
}

static int measure(struct bscale *s, struct bnet *n, const struct bdev_config *dc, double timeout_s)
{
    struct bdev_set *d = bdev_set_new(n, dc);
    if (!d)
        return ERR_NOMEM;
    pid_t pid = s->t->pid;
    s->rss_before = bstat_rss_kib(pid);
    int rc = bdev_set_connect(d, timeout_s, &s->connect_s);
    if (!rc) {
        idle_for(n, s->settle_s); /* let late buffers settle before reading memory */
        s->rss_after = bstat_rss_kib(pid);
        double c0 = bstat_cpu_s(pid), t0 = bstat_now();
        idle_for(n, s->idle_s);
        double c1 = bstat_cpu_s(pid), t1 = bstat_now();
        s->idle_cpu = c0 >= 0 && c1 >= 0 ? 100.0 * (c1 - c0) / (t1 - t0) : -1;
        s->bench_rss = bstat_rss_kib(0);
    }
    s->connected = bdev_set_ready(d);
    s->lost = bdev_set_lost(d);
    snprintf(s->error, sizeof s->error, "%s", bdev_set_error(d));
    if (!rc && s->lost)
        rc = ERR_IO;
    bdev_set_free(d);
    return rc;
}

int bscale_main(struct bopt *o)
{
    struct bsetup b;
    char err[256];
    enum btarget_kind kind = BTARGET_EMULATOR;
    const char *transport = bopt_str(o, "transport", "tls");
    bool tls = strcmp(transport, "tls") == 0;
    struct bscale s = {.devices = bopt_long(o, "devices", 1000),
                       .settle_s = bopt_double(o, "settle", 1.0),
                       .idle_s = bopt_double(o, "idle", 5.0)};
    long n_src = bopt_long(o, "src-ips", 4), pending = bopt_long(o, "pending", 64);
    double timeout_s = bopt_double(o, "timeout", 600);
    if (bsetup_init(&b, o, err, sizeof err) || bsetup_kind(bopt_str(o, "target", NULL), &kind) ||
        !(s.t = bsetup_target(&b, kind, tls)) || s.devices < 1 || n_src < 1 || n_src > BSCALE_MAX_SRC || pending < 1 ||
        (!tls && strcmp(transport, "plain") != 0)) {
        fprintf(stderr, "iothub_bench scale: bad --target/--transport %s, ports, --devices or --src-ips (%s)\n",
                transport, o->bad ? o->why : err);
        bsetup_cleanup(&b);
        return ERR_INVALID;
    }
    uint32_t src[BSCALE_MAX_SRC];
    for (long i = 0; i < n_src; i++)
        src[i] = htonl(INADDR_LOOPBACK + 1 + (uint32_t)i); /* 127.0.0.2 ... */
    struct bdev_config dc = {.target = s.t,
                             .count = (size_t)s.devices,
                             .src_ips = src,
                             .n_src = (size_t)n_src,
                             .max_pending = (size_t)pending,
                             .keepalive_s = BDEV_KEEPALIVE_S};
    struct bnet *n = bnet_new();
    int rc = n ? measure(&s, n, &dc, timeout_s) : ERR_NOMEM;
    emit(&s, tls);
    bnet_free(n);
    bsetup_cleanup(&b);
    return rc;
}
