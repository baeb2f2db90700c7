/* bdev.c -- simulated MQTT devices (see bdev.h). A device: connect -> CONNECT -> CONNACK -> SUBSCRIBE ->
 * SUBACK (ready) -> answer each method request. Topics:
 *   emulator:  requests $iothub/methods/POST/{name}/?$rid={rid}, answers $iothub/methods/res/200/?$rid={rid}
 *   mosquitto: requests devices/{id}/methods/POST/{caller}/?$rid={rid}, answers callers/{caller}/res/200/?$rid={rid}
 * Both are QoS 0, as IoT Hub's method requests and the SDKs' answers are. */
#include "bdev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bstat.h"
#include "err.h"
#include "mqtt.h"
#include "sas.h"

#define BDEV_TOPIC_MAX 512
#define BDEV_TOKEN_LIFETIME_S (24 * 3600)

enum bdev_state { DEV_IDLE, DEV_CONNECTING, DEV_SUBSCRIBING, DEV_READY, DEV_DONE };

struct bdev {
    struct bdev_set *set;
    struct bconn *c;
    uint32_t index;
    uint8_t state;
};

struct bdev_set {
    struct bnet *n;
    struct bdev_config cfg;
    struct bdev *devs;
    size_t next;    /* next device to start */
    size_t pending; /* started, not yet ready or failed */
    size_t ready, failed, lost;
    uint64_t answered;
    char error[160];
    char tls_desc[96];
};

void bdev_id(size_t i, char *out, size_t n)
{
    snprintf(out, n, "bench-%06zu", i);
}

struct bdev_set *bdev_set_new(struct bnet *n, const struct bdev_config *cfg)
{
    struct bdev_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->devs = calloc(cfg->count ? cfg->count : 1, sizeof *s->devs);
    if (!s->devs) {
        free(s);
        return NULL;
    }
    s->n = n;
    s->cfg = *cfg;
    if (!s->cfg.max_pending)
        s->cfg.max_pending = 1;
    for (size_t i = 0; i < cfg->count; i++) {
        s->devs[i].set = s;
        s->devs[i].index = (uint32_t)i;
    }
    return s;
}

void bdev_set_free(struct bdev_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cfg.count; i++) {
        if (s->devs[i].c)
            bnet_close(s->devs[i].c);
    }
    free(s->devs);
    free(s);
}

static void set_error(struct bdev_set *s, size_t index, const char *why)
{
    if (!s->error[0])
        snprintf(s->error, sizeof s->error, "%s bench-%06zu: %s", s->cfg.target->name, index, why);
}

/* The device stops for good (failed during set-up, lost afterwards, or misbehaving server). */
static void dev_drop(struct bdev *d, const char *why, bool close_conn)
{
    struct bdev_set *s = d->set;
    if (d->state == DEV_READY)
        s->lost++;
    else if (d->state != DEV_DONE) {
        s->failed++;
        s->pending--;
    }
    set_error(s, d->index, why);
    if (close_conn && d->c)
        bnet_close(d->c);
    d->c = NULL;
    d->state = DEV_DONE;
}

static int encode_connect(struct bdev *d, struct buf *out)
{
    const struct btarget *t = d->set->cfg.target;
    char id[32], user[160];
    char *uri = NULL, *token = NULL;
    bdev_id(d->index, id, sizeof id);
    struct mqtt_connect c = {.clean_session = true, .keep_alive = d->set->cfg.keepalive_s};
    c.client_id = (struct mqtt_bytes){(const uint8_t *)id, strlen(id)};
    int rc = ERR_OK;
    if (t->kind == BTARGET_EMULATOR) {
        snprintf(user, sizeof user, "%s/%s/?api-version=2021-04-12", t->hub_host, id);
        uri = sas_resource_uri(t->hub_host, id, NULL);
        rc =
            uri ? sas_build(uri, t->device_key, (uint64_t)time(NULL) + BDEV_TOKEN_LIFETIME_S, NULL, &token) : ERR_NOMEM;
        c.has_username = c.has_password = true;
        c.username = (struct mqtt_bytes){(const uint8_t *)user, strlen(user)};
        c.password = (struct mqtt_bytes){(const uint8_t *)token, token ? strlen(token) : 0};
    }
    if (rc == ERR_OK)
        rc = mqtt_encode_connect(out, &c);
    free(uri);
    free(token);
    return rc;
}

static int encode_subscribe(struct bdev *d, struct buf *out)
{
    char filter[BDEV_TOPIC_MAX], id[32];
    bdev_id(d->index, id, sizeof id);
    if (d->set->cfg.target->kind == BTARGET_EMULATOR)
        snprintf(filter, sizeof filter, "$iothub/methods/POST/#");
    else
        snprintf(filter, sizeof filter, "devices/%s/methods/POST/#", id);
    struct mqtt_subscribe sub = {.packet_id = 1, .count = 1};
    sub.filters[0] = (struct mqtt_bytes){(const uint8_t *)filter, strlen(filter)};
    sub.qos[0] = 0;
    return mqtt_encode_subscribe(out, &sub);
}

/* The answer topic for a request topic; -1 when the topic is not a request. */
static int reply_topic(const struct bdev *d, struct mqtt_bytes topic, char *out, size_t n)
{
    static const char post[] = "/methods/POST/", rid[] = "/?$rid=";
    const char *t = (const char *)topic.p;
    const char *p = memmem(t, topic.len, post, sizeof post - 1);
    if (!p)
        return -1;
    const char *seg = p + sizeof post - 1;
    const char *q = memmem(seg, topic.len - (size_t)(seg - t), rid, sizeof rid - 1);
    if (!q)
        return -1;
    const char *r = q + sizeof rid - 1;
    int rlen = (int)(topic.len - (size_t)(r - t));
    int w;
    if (d->set->cfg.target->kind == BTARGET_EMULATOR)
        w = snprintf(out, n, "$iothub/methods/res/200/?$rid=%.*s", rlen, r);
    else
        w = snprintf(out, n, "callers/%.*s/res/200/?$rid=%.*s", (int)(q - seg), seg, rlen, r);
    return w > 0 && (size_t)w < n ? w : -1;
}

static int on_publish(struct bdev *d, const struct mqtt_publish *req)
{
    char topic[BDEV_TOPIC_MAX];
    int n = reply_topic(d, req->topic, topic, sizeof topic);
    if (n < 0)
        return 0; /* not a method request: ignored */
    struct mqtt_publish res = {.qos = 0, .payload = req->payload};
    res.topic = (struct mqtt_bytes){(const uint8_t *)topic, (size_t)n};
    if (mqtt_encode_publish(bnet_out(d->c), &res))
        return -1;
    d->set->answered++;
    return 0;
}

static void dev_ready(struct bdev *d)
{
    struct bdev_set *s = d->set;
    d->state = DEV_READY;
    s->ready++;
    s->pending--;
    if (!s->tls_desc[0])
        snprintf(s->tls_desc, sizeof s->tls_desc, "%s", bnet_tls_desc(d->c));
}

/* One decoded packet. Returns -1 (with the reason in *why) when the device must stop. */
static int on_packet(struct bdev *d, const struct mqtt_packet *p, const char **why)
{
    switch (p->type) {
    case MQTT_CONNACK:
        if (d->state != DEV_CONNECTING || p->u.connack.return_code != 0) {
            *why = "CONNACK refused";
            return -1;
        }
        d->state = DEV_SUBSCRIBING;
        *why = "cannot encode SUBSCRIBE";
        return encode_subscribe(d, bnet_out(d->c)) ? -1 : 0;
    case MQTT_SUBACK:
        if (d->state != DEV_SUBSCRIBING || p->u.subscribe.count != 1 || p->u.subscribe.qos[0] == 0x80) {
            *why = "SUBSCRIBE refused";
            return -1;
        }
        dev_ready(d);
        return 0;
    case MQTT_PUBLISH:
        *why = "cannot encode the answer";
        return on_publish(d, &p->u.publish);
    default:
        return 0; /* PINGRESP and the like */
    }
}

static void on_data(struct bdev *d)
{
    struct buf *in = bnet_in(d->c);
    size_t used = 0;
    const char *why = "malformed MQTT from the server";
    for (;;) {
        struct mqtt_packet p;
        size_t k = 0;
        int rc = mqtt_decode(in->data + used, in->len - used, BDEV_MAX_PACKET, &p, &k);
        if (rc == ERR_NEED_MORE)
            break;
        if (rc || on_packet(d, &p, &why)) {
            dev_drop(d, why, true);
            return;
        }
        used += k;
    }
    buf_consume(in, used);
    bnet_flush(d->c);
}

static void start_more(struct bdev_set *s);

static void on_event(struct bconn *c, enum bnet_event ev, void *ctx)
{
    struct bdev *d = ctx;
    struct bdev_set *s = d->set;
    switch (ev) {
    case BNET_OPEN:
        if (encode_connect(d, bnet_out(c)))
            dev_drop(d, "cannot encode CONNECT", true);
        break;
    case BNET_DATA:
        on_data(d);
        break;
    case BNET_CLOSED:
        dev_drop(d, bnet_reason(c), false);
        break;
    }
    start_more(s);
}

static void start_more(struct bdev_set *s)
{
    while (s->pending < s->cfg.max_pending && s->next < s->cfg.count && !s->failed) {
        struct bdev *d = &s->devs[s->next++];
        uint32_t src = s->cfg.n_src ? s->cfg.src_ips[d->index % s->cfg.n_src] : 0;
        const struct btarget *t = s->cfg.target;
        d->state = DEV_CONNECTING;
        s->pending++;
        d->c = bnet_connect(s->n, &t->mqtt, src, t->tls, t->tls_host, on_event, d);
        if (!d->c)
            dev_drop(d, strerror(errno), false);
    }
}

int bdev_set_connect(struct bdev_set *s, double timeout_s, double *seconds)
{
    double t0 = bstat_now();
    *seconds = 0;
    start_more(s);
    while (s->ready < s->cfg.count && !s->failed) {
        double left = t0 + timeout_s - bstat_now();
        if (left <= 0)
            break;
        if (bnet_poll(s->n, left > 0.1 ? 100 : (int)(left * 1000) + 1) < 0) {
            set_error(s, 0, "epoll_wait failed");
            return ERR_IO;
        }
    }
    *seconds = bstat_now() - t0;
    if (s->failed)
        return ERR_IO;
    if (s->ready < s->cfg.count) {
        snprintf(s->error, sizeof s->error, "%s: %zu of %zu devices ready after %.0f s", s->cfg.target->name, s->ready,
                 s->cfg.count, timeout_s);
        return ERR_TOO_BIG;
    }
    return ERR_OK;
}

size_t bdev_set_ready(const struct bdev_set *s)
{
    return s->ready - s->lost;
}

size_t bdev_set_lost(const struct bdev_set *s)
{
    return s->lost;
}

uint64_t bdev_set_answered(const struct bdev_set *s)
{
    return s->answered;
}

const char *bdev_set_error(const struct bdev_set *s)
{
    return s->error;
}

const char *bdev_set_tls_desc(const struct bdev_set *s)
{
    return s->tls_desc;
}
