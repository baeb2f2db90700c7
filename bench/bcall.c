/* bcall.c -- method callers for the benchmark (see bcall.h): HTTP/1.1 to the emulator's REST API, or MQTT
 * request/reply through Mosquitto. Every answer is checked (status 200, payload echoed byte for byte). */
#include "bcall.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev.h"
#include "bhttp.h"
#include "bstat.h"
#include "err.h"
#include "mqtt.h"

#define BCALL_MAX_SAMPLES (1024u * 1024u) /* more than a phase makes: 3 s at 300,000 calls/s */
#define BCALL_TOPIC_MAX 256
#define BCALL_KEEPALIVE_S BDEV_KEEPALIVE_S
#define BCALL_HTTP_PREFIX "{\"status\":200,\"payload\":"

enum caller_state { CALLER_CONNECTING, CALLER_SUBSCRIBING, CALLER_IDLE, CALLER_BUSY, CALLER_DEAD };

struct caller {
    struct bcall_set *set;
    struct bconn *c;
    size_t index;
    enum caller_state state;
    double started; /* when the call in flight was queued */
    uint32_t rid;   /* MQTT: the call in flight */
};

struct bcall_set {
    struct bnet *n;
    struct bcall_config cfg;
    struct caller *callers;
    size_t ready, busy, dead;
    uint64_t next_device;
    char *payload;
    size_t payload_len;
    char *body; /* HTTP request body around the payload */
    size_t body_len;
    /* the current run */
    bool stopping;
    double t_warm, t_end;
    uint64_t window_calls, errors;
    uint64_t run_calls; /* completed during warm-up + window: the span server_cpu is measured over */
    struct bstat_lat lat;
    char error[160];
};

static bool is_http(const struct bcall_set *s)
{
    return s->cfg.target->kind == BTARGET_EMULATOR;
}

struct bcall_set *bcall_set_new(struct bnet *n, const struct bcall_config *cfg)
{
    struct bcall_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    s->cfg = *cfg;
    s->callers = calloc(cfg->callers ? cfg->callers : 1, sizeof *s->callers);
    if (!s->callers || bstat_lat_init(&s->lat, BCALL_MAX_SAMPLES)) {
        free(s->callers);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < cfg->callers; i++) {
        s->callers[i].set = s;
        s->callers[i].index = i;
        s->callers[i].state = CALLER_DEAD;
    }
    return s;
}

void bcall_set_free(struct bcall_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cfg.callers; i++) {
        if (s->callers[i].c)
            bnet_close(s->callers[i].c);
    }
    bstat_lat_cleanup(&s->lat);
    free(s->callers);
    free(s->payload);
    free(s->body);
    free(s);
}

const char *bcall_set_error(const struct bcall_set *s)
{
    return s->error;
}

int bcall_set_payload(struct bcall_set *s, const char *json, size_t len)
{
    static const char head[] = "{\"methodName\":\"bench\",\"responseTimeoutInSeconds\":30,\"payload\":";
    char *p = malloc(len + 1), *b = malloc(sizeof head + len + 1);
    if (!p || !b) {
        free(p);
        free(b);
        return ERR_NOMEM;
    }
    memcpy(p, json, len);
    p[len] = '\0';
    memcpy(b, head, sizeof head - 1);
    memcpy(b + sizeof head - 1, json, len);
    b[sizeof head - 1 + len] = '}';
    free(s->payload);
    free(s->body);
    s->payload = p;
    s->payload_len = len;
    s->body = b;
    s->body_len = sizeof head + len; /* head without its NUL, payload, '}' */
    return ERR_OK;
}

static void call_error(struct bcall_set *s, const struct caller *k, const char *why)
{
    s->errors++;
    if (!s->error[0])
        snprintf(s->error, sizeof s->error, "%s caller %zu: %s", s->cfg.target->name, k->index, why);
}

/* The caller is unusable from now on (its connection is closed or being closed). */
static void caller_dead(struct caller *k, const char *why, bool close_conn)
{
    struct bcall_set *s = k->set;
    if (k->state == CALLER_DEAD)
        return;
    if (k->state == CALLER_BUSY)
        s->busy--;
    if (k->state == CALLER_IDLE || k->state == CALLER_BUSY)
        s->ready--;
    call_error(s, k, why);
    if (close_conn && k->c)
        bnet_close(k->c);
    k->c = NULL;
    k->state = CALLER_DEAD;
    s->dead++;
}

static int encode_http_call(struct caller *k, const char *dev)
{
    const struct btarget *t = k->set->cfg.target;
    struct buf *out = bnet_out(k->c);
    int rc = buf_printf(out,
                        "POST /twins/%s/methods?api-version=2021-04-12 HTTP/1.1\r\nHost: %s\r\n"
                        "Authorization: %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        dev, t->hub_host, t->owner_token, k->set->body_len);
    return rc ? rc : buf_append(out, k->set->body, k->set->body_len);
}

static int encode_mqtt_call(struct caller *k, const char *dev)
{
    char topic[BCALL_TOPIC_MAX];
    k->rid++;
    int n = snprintf(topic, sizeof topic, "devices/%s/methods/POST/caller-%03zu/?$rid=%x", dev, k->index, k->rid);
    struct mqtt_publish p = {.qos = 0};
    p.topic = (struct mqtt_bytes){(const uint8_t *)topic, (size_t)n};
    p.payload = (struct mqtt_bytes){(const uint8_t *)k->set->payload, k->set->payload_len};
    return mqtt_encode_publish(bnet_out(k->c), &p);
}

static void issue(struct caller *k)
{
    struct bcall_set *s = k->set;
    char dev[32];
    bdev_id((size_t)(s->next_device++ % (s->cfg.devices ? s->cfg.devices : 1)), dev, sizeof dev);
    k->started = bstat_now();
    int rc = is_http(s) ? encode_http_call(k, dev) : encode_mqtt_call(k, dev);
    if (rc) {
        caller_dead(k, "cannot encode the call", true);
        return;
    }
    k->state = CALLER_BUSY;
    s->busy++;
    bnet_flush(k->c);
}

/* A call finished (well or not); the caller is idle again and issues the next while the run goes on. */
static void completed(struct caller *k, bool ok, const char *why)
{
    struct bcall_set *s = k->set;
    double now = bstat_now();
    k->state = CALLER_IDLE;
    s->busy--;
    if (!ok)
        call_error(s, k, why);
    else {
        if (k->started >= s->t_warm && k->started < s->t_end)
            bstat_lat_add(&s->lat, now - k->started);
        if (now >= s->t_warm && now <= s->t_end)
            s->window_calls++;
        if (now <= s->t_end)
            s->run_calls++;
    }
    if (!s->stopping && now < s->t_end)
        issue(k);
}

/* Consumes whole HTTP responses. Returns -1 when the stream is broken. */
static int http_input(struct caller *k)
{
    struct buf *in = bnet_in(k->c);
    struct bcall_set *s = k->set;
    while (in->len) {
        int status;
        size_t head, body;
        int rc = bhttp_parse_response(in->data, in->len, &status, &head, &body);
        if (rc == ERR_NEED_MORE || (rc == ERR_OK && in->len - head < body))
            return 0;
        if (rc || k->state != CALLER_BUSY)
            return -1;
        const uint8_t *b = in->data + head;
        size_t pre = sizeof BCALL_HTTP_PREFIX - 1;
        bool ok = status == 200 && body == pre + s->payload_len + 1 && memcmp(b, BCALL_HTTP_PREFIX, pre) == 0 &&
                  memcmp(b + pre, s->payload, s->payload_len) == 0;
        char why[64];
        snprintf(why, sizeof why, "HTTP %d with %zu body bytes", status, body);
        buf_consume(in, head + body);
        completed(k, ok, why);
        if (k->state == CALLER_DEAD)
            return 0;
    }
    return 0;
}

static int mqtt_reply(struct caller *k, const struct mqtt_publish *p)
{
    char want[BCALL_TOPIC_MAX];
    struct bcall_set *s = k->set;
    int n = snprintf(want, sizeof want, "callers/caller-%03zu/res/200/?$rid=%x", k->index, k->rid);
    if (k->state != CALLER_BUSY)
        return -1;
    bool ok = p->topic.len == (size_t)n && memcmp(p->topic.p, want, (size_t)n) == 0 &&
              p->payload.len == s->payload_len && memcmp(p->payload.p, s->payload, s->payload_len) == 0;
    completed(k, ok, "wrong reply topic or payload");
    return 0;
}

static int mqtt_packet(struct caller *k, const struct mqtt_packet *p)
{
    switch (p->type) {
    case MQTT_CONNACK: {
        if (k->state != CALLER_CONNECTING || p->u.connack.return_code)
            return -1;
        char filter[BCALL_TOPIC_MAX];
        snprintf(filter, sizeof filter, "callers/caller-%03zu/res/#", k->index);
        struct mqtt_subscribe sub = {.packet_id = 1, .count = 1};
        sub.filters[0] = (struct mqtt_bytes){(const uint8_t *)filter, strlen(filter)};
        k->state = CALLER_SUBSCRIBING;
        return mqtt_encode_subscribe(bnet_out(k->c), &sub) ? -1 : 0;
    }
    case MQTT_SUBACK:
        if (k->state != CALLER_SUBSCRIBING || p->u.subscribe.qos[0] == 0x80)
            return -1;
        k->state = CALLER_IDLE;
        k->set->ready++;
        return 0;
    case MQTT_PUBLISH:
        return mqtt_reply(k, &p->u.publish);
    default:
        return 0;
    }
}

static int mqtt_input(struct caller *k)
{
    struct buf *in = bnet_in(k->c);
    for (;;) {
        struct mqtt_packet p;
        size_t used = 0;
        int rc = mqtt_decode(in->data, in->len, BDEV_MAX_PACKET, &p, &used);
        if (rc == ERR_NEED_MORE)
            return 0;
        if (rc || mqtt_packet(k, &p))
            return -1;
        buf_consume(in, used); /* after the packet is handled: p points into in */
        if (k->state == CALLER_DEAD)
            return 0;
    }
}

static int encode_requester_connect(struct caller *k)
{
    char id[32];
    snprintf(id, sizeof id, "caller-%03zu", k->index);
    struct mqtt_connect c = {.clean_session = true, .keep_alive = BCALL_KEEPALIVE_S};
    c.client_id = (struct mqtt_bytes){(const uint8_t *)id, strlen(id)};
    return mqtt_encode_connect(bnet_out(k->c), &c);
}

static void on_event(struct bconn *c, enum bnet_event ev, void *ctx)
{
    struct caller *k = ctx;
    switch (ev) {
    case BNET_OPEN:
        if (is_http(k->set)) {
            k->state = CALLER_IDLE;
            k->set->ready++;
        } else if (encode_requester_connect(k)) {
            caller_dead(k, "cannot encode CONNECT", true);
        }
        break;
    case BNET_DATA:
        if ((is_http(k->set) ? http_input(k) : mqtt_input(k)) < 0)
            caller_dead(k, "malformed or unexpected answer", true);
        else if (k->c)
            bnet_flush(k->c);
        break;
    case BNET_CLOSED:
        caller_dead(k, bnet_reason(c), false);
        break;
    }
}

int bcall_set_connect(struct bcall_set *s, double timeout_s)
{
    const struct btarget *t = s->cfg.target;
    const struct sockaddr_in *dst = is_http(s) ? &t->http : &t->mqtt;
    s->dead = 0;
    for (size_t i = 0; i < s->cfg.callers; i++) {
        struct caller *k = &s->callers[i];
        k->state = CALLER_CONNECTING;
        k->c = bnet_connect(s->n, dst, 0, t->tls, t->tls_host, on_event, k);
        if (!k->c)
            caller_dead(k, strerror(errno), false);
    }
    double deadline = bstat_now() + timeout_s;
    while (s->ready + s->dead < s->cfg.callers && bstat_now() < deadline) {
        if (bnet_poll(s->n, 50) < 0)
            return ERR_IO;
    }
    if (s->dead)
        return ERR_IO;
    if (s->ready < s->cfg.callers) {
        snprintf(s->error, sizeof s->error, "%s: %zu of %zu callers connected", t->name, s->ready, s->cfg.callers);
        return ERR_TOO_BIG;
    }
    return ERR_OK;
}

static void run_reset(struct bcall_set *s, double warmup_s, double measure_s)
{
    double t0 = bstat_now();
    s->t_warm = t0 + warmup_s;
    s->t_end = s->t_warm + measure_s;
    s->stopping = false;
    s->window_calls = s->errors = s->run_calls = 0;
    s->error[0] = '\0';
    bstat_lat_reset(&s->lat);
}

static void run_summary(struct bcall_set *s, double measure_s, struct bcall_result *out)
{
    out->calls = s->window_calls;
    out->errors = s->errors;
    out->seconds = measure_s;
    out->calls_per_s = measure_s > 0 ? (double)s->window_calls / measure_s : 0;
    out->samples = s->lat.n;
    out->p50 = bstat_lat_quantile(&s->lat, 0.50);
    out->p90 = bstat_lat_quantile(&s->lat, 0.90);
    out->p99 = bstat_lat_quantile(&s->lat, 0.99);
    out->max = bstat_lat_quantile(&s->lat, 1.0);
    snprintf(out->error, sizeof out->error, "%s", s->error);
}

int bcall_set_run(struct bcall_set *s, double warmup_s, double measure_s, double drain_s, struct bcall_result *out)
{
    memset(out, 0, sizeof *out);
    run_reset(s, warmup_s, measure_s);
    pid_t pid = s->cfg.target->pid;
    double t0 = bstat_now(), cpu0 = bstat_cpu_s(0), srv0 = pid ? bstat_cpu_s(pid) : -1;
    for (size_t i = 0; i < s->cfg.callers; i++) {
        if (s->callers[i].state == CALLER_IDLE)
            issue(&s->callers[i]);
    }
    double now = t0;
    while ((now = bstat_now()) < s->t_end && s->busy) {
        double left = s->t_end - now;
        if (bnet_poll(s->n, left > 0.05 ? 50 : (int)(left * 1000) + 1) < 0)
            return ERR_IO;
    }
    double wall = bstat_now() - t0, cpu1 = bstat_cpu_s(0), srv1 = pid ? bstat_cpu_s(pid) : -1;
    s->stopping = true;
    double deadline = bstat_now() + drain_s;
    while (s->busy && bstat_now() < deadline) {
        if (bnet_poll(s->n, 50) < 0)
            return ERR_IO;
    }
    if (s->busy) {
        s->errors += s->busy;
        if (!s->error[0])
            snprintf(s->error, sizeof s->error, "%zu calls unanswered %.0f s after the run", s->busy, drain_s);
    }
    run_summary(s, measure_s, out);
    out->bench_cpu = wall > 0 ? (cpu1 - cpu0) / wall : 0;
    out->server_cpu = pid && srv0 >= 0 && srv1 >= 0 && wall > 0 ? (srv1 - srv0) / wall : -1;
    out->server_cpu_s_per_10k = out->server_cpu >= 0 && s->run_calls ? (srv1 - srv0) / (double)s->run_calls * 1e4 : -1;
    return s->busy || s->dead ? ERR_IO : ERR_OK;
}
