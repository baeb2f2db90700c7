/* session.c -- one device's MQTT session with the hub's rules (see session.h and iothub-protocol.md §1-§3):
 * CONNECT and SAS authentication (any failure: CONNACK 5, then close), keep-alive at 1.5x, the accepted
 * SUBSCRIBE filters and PUBLISH topics (anything else closes the connection, as the hub does), direct-method
 * requests and replies, twin GET / reported PATCH / desired push, telemetry, will, and disconnect when the SAS
 * token expires.
 * Tests: tests/unit/test_session.c (with a fake conn.h); fuzz: tests/fuzz/fuzz_session.c. */
#include "session.h"

#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "c2d.h"
#include "conn.h"
#include "device_link.h"
#include "err.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "registry.h"
#include "telemetry.h"
#include "url.h"

/* The hub disconnects after 1.5x the keep-alive, at most 1767 s (Azure load balancer idle timeout). */
#define SESSION_KEEPALIVE_CAP_S 1767
#define SESSION_MAX_TOPIC 1024
/* Token lifetimes past this are treated as this (about 68 years), so timer arithmetic cannot overflow. */
#define SESSION_MAX_TOKEN_LIFE_S ((int64_t)INT32_MAX)
#define SESSION_LOG_TEXT 200 /* bytes of a wire string quoted in a log line */
#define SESSION_RESERVE_MIN (16u * 1024u) /* a partial packet this long gets room for the whole of it */

enum session_state { SESSION_WAIT_CONNECT, SESSION_ONLINE, SESSION_CLOSED };

struct session {
    struct device_link link; /* what the hub sees of this session once it is online */
    const struct session_env *env;
    struct conn *conn;
    enum session_state state;
    bool closing; /* the session asked its conn to close: no further input is processed */
    bool hold_ack; /* the PUBLISH being handled asked for a disconnect fault: no PUBACK (faults.h) */
    char device_id[REGISTRY_MAX_ID + 1];
    char module_id[REGISTRY_MAX_ID + 1];
    char ident[2 * REGISTRY_MAX_ID + 2]; /* "device" or "device/module" */
    int64_t keepalive_ms;                /* 0 = none */
    int64_t last_rx_ms;
    struct loop_timer *keepalive_timer;
    struct loop_timer *expiry_timer;
    uint64_t rid_counter;
    bool clean;      /* CleanSession 1: nothing of this session outlives the connection */
    uint32_t subs;   /* accepted subscriptions, one bit per enum sub_kind */
    uint32_t qos1;   /* of those, granted QoS 1 */
    char *will_topic; /* NULL = no will */
    uint8_t *will_payload;
    size_t will_len;
    struct buf scratch; /* one encoded packet at a time */
    uint16_t last_pid;  /* packet ids of our QoS 1 PUBLISHes (C2D) */
    uint16_t c2d_pid;   /* the C2D message in flight, waiting for its PUBACK (0: none) */
    uint64_t c2d_seq;
    bool told_no_twin_res; /* the log said once that twin answers are dropped (no $iothub/twin/res/# subscription) */
};

static const struct device_link_ops session_link_ops;
static bool open_session(struct session *s, bool clean);
static void announce_subs(struct session *s, uint32_t before);

struct session *session_new(const struct session_env *env, struct conn *c)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->link.ops = &session_link_ops;
    s->link.identity = s->ident;
    s->env = env;
    s->conn = c;
    s->state = SESSION_WAIT_CONNECT;
    snprintf(s->ident, sizeof s->ident, "(unauthenticated %s)", conn_peer(c));
    buf_init(&s->scratch, env->max_packet + 16);
    return s;
}

const char *session_identity(const struct session *s)
{
    return s->ident;
}

static void clear_will(struct session *s)
{
    free(s->will_topic);
    free(s->will_payload);
    s->will_topic = NULL;
    s->will_payload = NULL;
    s->will_len = 0;
}

static int fail(struct session *s, const char *reason)
{
    if (s->state != SESSION_CLOSED && !s->closing)
        conn_close(s->conn, reason);
    s->closing = true;
    return ERR_CLOSED;
}

/* Copies wire bytes for a log line: at most SESSION_LOG_TEXT bytes, anything but printable ASCII as '?', so
 * a topic cannot break the one-line-per-event log. */
static const char *log_text(const uint8_t *p, size_t len, char out[SESSION_LOG_TEXT + 1])
{
    size_t n = len < SESSION_LOG_TEXT ? len : SESSION_LOG_TEXT;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = '\0';
    return out;
}

/* Encodes into scratch with fn's result, then hands it to the connection. The scratch storage is released
 * after each packet, so an idle session holds none. */
static int send_scratch(struct session *s, int rc)
{
    if (rc == ERR_OK)
        rc = conn_send(s->conn, s->scratch.data, s->scratch.len);
    buf_cleanup(&s->scratch);
    return rc;
}

/* The head is encoded into scratch and the body appended to the connection's queue behind it, not joined to
 * it first (issue 20: one copy of a method payload or patch less). */
static int send_publish(struct session *s, const char *topic, const uint8_t *body, size_t len)
{
    struct mqtt_publish p = {
        .qos = 0, .topic = {(const uint8_t *)topic, strlen(topic)}, .payload = {body, len}};
    int rc = mqtt_encode_publish_head(&s->scratch, &p);
    if (rc == ERR_OK && len > s->scratch.max - s->scratch.len)
        rc = ERR_TOO_BIG; /* as the whole packet in scratch was: over max_packet + 16 it is not sent */
    if (rc == ERR_OK)
        rc = conn_send2(s->conn, s->scratch.data, s->scratch.len, body, len);
    buf_cleanup(&s->scratch);
    return rc;
}

/* ---- CONNECT ---- */

static int refuse_code(struct session *s, int code, const char *why)
{
    log_info("CONNECT from %s as %s refused (CONNACK %d): %s", conn_peer(s->conn), s->ident, code, why);
    send_scratch(s, mqtt_encode_connack(&s->scratch, false, (uint8_t)code));
    return fail(s, "connection refused");
}

static int refuse(struct session *s, const char *why)
{
    return refuse_code(s, 5, why);
}

/* Copies client id "device" or "device/module" into the session, validating both ids. */
static bool take_client_id(struct session *s, struct mqtt_bytes id)
{
    if (id.len == 0)
        return false;
    const uint8_t *slash = memchr(id.p, '/', id.len);
    size_t dlen = slash ? (size_t)(slash - id.p) : id.len;
    size_t mlen = slash ? id.len - dlen - 1 : 0;
    if (dlen == 0 || dlen > REGISTRY_MAX_ID || mlen > REGISTRY_MAX_ID || (slash && mlen == 0))
        return false;
    memcpy(s->device_id, id.p, dlen);
    s->device_id[dlen] = '\0';
    memcpy(s->module_id, slash ? slash + 1 : id.p, mlen);
    s->module_id[mlen] = '\0';
    if (!registry_id_is_valid(s->device_id) || (mlen && !registry_id_is_valid(s->module_id)))
        return false;
    snprintf(s->ident, sizeof s->ident, "%s%s%s", s->device_id, mlen ? "/" : "", s->module_id);
    return true;
}

/* The username is informational (SDKs differ); only a different device id in it is refused. */
static bool username_is_plausible(const struct session *s, struct mqtt_bytes user)
{
    const uint8_t *slash = user.len ? memchr(user.p, '/', user.len) : NULL;
    if (!slash)
        return true;
    size_t rest = user.len - (size_t)(slash + 1 - user.p);
    size_t dlen = strlen(s->device_id);
    return rest >= dlen && memcmp(slash + 1, s->device_id, dlen) == 0 &&
           (rest == dlen || slash[1 + dlen] == '/' || slash[1 + dlen] == '?');
}

static void telemetry_prefix(const struct session *s, char *out, size_t outlen)
{
    if (s->module_id[0])
        snprintf(out, outlen, "devices/%s/modules/%s/messages/events", s->device_id, s->module_id);
    else
        snprintf(out, outlen, "devices/%s/messages/events", s->device_id);
}

static bool is_telemetry_topic(const struct session *s, const uint8_t *topic, size_t len)
{
    char prefix[2 * REGISTRY_MAX_ID + 64];
    telemetry_prefix(s, prefix, sizeof prefix);
    size_t n = strlen(prefix);
    return len >= n && memcmp(topic, prefix, n) == 0 && (len == n || topic[n] == '/');
}

static bool take_will(struct session *s, const struct mqtt_connect *c)
{
    if (!c->has_will)
        return true;
    if (!is_telemetry_topic(s, c->will_topic.p, c->will_topic.len))
        return false;
    s->will_topic = strndup((const char *)c->will_topic.p, c->will_topic.len);
    s->will_payload = malloc(c->will_message.len ? c->will_message.len : 1);
    if (!s->will_topic || !s->will_payload) {
        clear_will(s);
        return false;
    }
    memcpy(s->will_payload, c->will_message.p, c->will_message.len);
    s->will_len = c->will_message.len;
    return true;
}

static void on_keepalive_timer(struct loop *l, void *ctx)
{
    struct session *s = ctx;
    s->keepalive_timer = NULL;
    int64_t idle = loop_now_ms(l) - s->last_rx_ms;
    if (idle >= s->keepalive_ms) {
        log_info("%s: keep-alive expired after %" PRId64 " ms of silence", s->ident, idle);
        fail(s, "keep-alive expired");
        return;
    }
    s->keepalive_timer = loop_timer_add(l, s->keepalive_ms - idle, on_keepalive_timer, s);
}

static void on_expiry_timer(struct loop *l, void *ctx)
{
    struct session *s = ctx;
    s->expiry_timer = NULL;
    log_info("%s: SAS token expired, closing the connection", s->ident);
    fail(s, "SAS token expired");
}

static int start_timers(struct session *s, uint16_t keep_alive, int64_t expiry)
{
    struct loop *l = s->env->loop;
    if (keep_alive) {
        int64_t t = (int64_t)keep_alive * 1500; /* 1.5 x, in ms */
        s->keepalive_ms = t > SESSION_KEEPALIVE_CAP_S * 1000 ? SESSION_KEEPALIVE_CAP_S * 1000 : t;
        s->keepalive_timer = loop_timer_add(l, s->keepalive_ms, on_keepalive_timer, s);
    }
    /* expiry is the token's se, up to INT64_MAX: clamp before adding, so nothing here can overflow. */
    int64_t now = loop_wall_s(l);
    int64_t left_s = expiry > now ? expiry - now : 0;
    left_s = left_s > SESSION_MAX_TOKEN_LIFE_S ? SESSION_MAX_TOKEN_LIFE_S : left_s;
    left_s += s->env->token_skew_s > 0 ? s->env->token_skew_s : 0;
    s->expiry_timer = loop_timer_add(l, left_s * 1000 + 999, on_expiry_timer, s);
    return (keep_alive && !s->keepalive_timer) || !s->expiry_timer ? ERR_NOMEM : ERR_OK;
}

static int on_connect(struct session *s, const struct mqtt_connect *c)
{
    if (!mqtt_bytes_eq(c->protocol_name, "MQTT") || c->level != 4)
        return refuse(s, "only MQTT 3.1.1 (protocol level 4) is supported");
    if (!take_client_id(s, c->client_id))
        return refuse(s, "client id is not a valid deviceId or deviceId/moduleId");
    if (c->has_username && !username_is_plausible(s, c->username))
        return refuse(s, "the username names another device");
    if (!c->has_password || c->password.len == 0)
        return refuse(s, "no SAS token in the password (X.509 is not supported)");
    const struct identity *id = registry_find(s->env->reg, s->device_id, s->module_id);
    if (!id)
        return refuse(s, s->module_id[0] ? "unknown module" : "unknown device");
    if (!id->enabled)
        return refuse(s, "identity is disabled");
    char why[128] = "";
    int64_t expiry = 0;
    if (auth_check_device(s->env->auth, id, (const char *)c->password.p, c->password.len, loop_wall_s(s->env->loop),
                          s->env->token_skew_s, &expiry, why, sizeof why))
        return refuse(s, why);
    int refused = faults_connect(s->env->faults, s->ident, expiry, why, sizeof why);
    if (refused)
        return refuse_code(s, refused, why);
    if (!take_will(s, c))
        return refuse(s, "the will topic must be this identity's telemetry topic");
    if (hub_link_online(s->env->hub, &s->link, s->device_id, s->module_id[0] ? s->module_id : NULL))
        return fail(s, "out of memory");
    s->state = SESSION_ONLINE;
    conn_established(s->conn);
    if (start_timers(s, c->keep_alive, expiry))
        return fail(s, "out of memory");
    bool present = open_session(s, c->clean_session);
    log_info("%s connected over %s from %s (keep-alive %us, CleanSession %d, session present %d)", s->ident,
             conn_transport(s->conn), conn_peer(s->conn), (unsigned)c->keep_alive, c->clean_session ? 1 : 0,
             present ? 1 : 0);
    if (send_scratch(s, mqtt_encode_connack(&s->scratch, present, 0)))
        return ERR_CLOSED;
    announce_subs(s, 0);
    return ERR_OK;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE, and the persisted session ---- */

/* The filters IoT Hub accepts (iothub-protocol.md §1.7, §3), one kind each. A persisted session (CleanSession
 * 0) is the set of kinds subscribed with their granted QoS, so the hub keeps it as a short text such as
 * "methods:0,twin-desired:0" (see session_state_text): it never holds a filter the hub would refuse. */
enum sub_kind { SUB_METHODS, SUB_TWIN_RES, SUB_TWIN_DESIRED, SUB_C2D, SUB_C2D_ANY, SUB_INPUTS, SUB_MODULE, SUB_KINDS };
static const char *const sub_names[SUB_KINDS] = {"methods", "twin-responses", "twin-desired", "c2d",
                                                 "c2d-any-device", "module-inputs", "module-all"};
#define SESSION_STATE_MAX 160 /* every kind at once fits */

/* The kind of filter f, or -1 when the hub does not accept it from this identity. */
static int filter_kind(const struct session *s, struct mqtt_bytes f)
{
    if (mqtt_bytes_eq(f, "$iothub/methods/POST/#"))
        return SUB_METHODS;
    if (mqtt_bytes_eq(f, "$iothub/twin/res/#"))
        return SUB_TWIN_RES;
    if (mqtt_bytes_eq(f, "$iothub/twin/PATCH/properties/desired/#"))
        return SUB_TWIN_DESIRED;
    char want[2 * REGISTRY_MAX_ID + 64];
    if (s->module_id[0]) {
        snprintf(want, sizeof want, "devices/%s/modules/%s/inputs/#", s->device_id, s->module_id);
        if (mqtt_bytes_eq(f, want))
            return SUB_INPUTS;
        snprintf(want, sizeof want, "devices/%s/modules/%s/#", s->device_id, s->module_id);
        return mqtt_bytes_eq(f, want) ? SUB_MODULE : -1;
    }
    snprintf(want, sizeof want, "devices/%s/messages/devicebound/#", s->device_id);
    if (mqtt_bytes_eq(f, want))
        return SUB_C2D;
    return mqtt_bytes_eq(f, "devices/+/messages/devicebound/#") ? SUB_C2D_ANY : -1;
}

/* "methods:0,twin-desired:1": the kinds in subs with their QoS; "" for none. out has SESSION_STATE_MAX bytes. */
static void session_state_text(uint32_t subs, uint32_t qos1, char *out)
{
    size_t n = 0;
    out[0] = '\0';
    for (int k = 0; k < SUB_KINDS; k++)
        if (subs & (1u << k))
            n += (size_t)snprintf(out + n, SESSION_STATE_MAX - n, "%s%s:%d", n ? "," : "", sub_names[k],
                                  (qos1 >> k) & 1u ? 1 : 0);
}

/* Parses session_state_text's form; unknown kinds (a newer emulator's) are skipped. */
static void session_state_parse(const char *text, uint32_t *subs, uint32_t *qos1)
{
    *subs = *qos1 = 0;
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        for (int k = 0; k < SUB_KINDS; k++) {
            size_t nl = strlen(sub_names[k]);
            if (len == nl + 2 && memcmp(p, sub_names[k], nl) == 0 && p[nl] == ':' && (p[nl + 1] == '0' || p[nl + 1] == '1')) {
                *subs |= 1u << k;
                *qos1 |= (p[nl + 1] == '1' ? 1u : 0u) << k;
            }
        }
        p = end ? end + 1 : NULL;
    }
}

/* CleanSession 0: the subscriptions are the session, so every change is kept before it is acknowledged. When
 * the store cannot take it (disk full, read-only) the connection keeps its subscriptions all the same: only a
 * later reconnect loses them, and the log says so. */
static void save_session(struct session *s)
{
    if (s->clean)
        return;
    char text[SESSION_STATE_MAX];
    session_state_text(s->subs, s->qos1, text);
    int rc = hub_saved_session_put(s->env->hub, s->ident, text);
    if (rc)
        log_warn("%s: its session could not be kept (%s): a reconnect will not find it", s->ident, err_str(rc));
}

/* What the hub should know once subscriptions changed from before to s->subs (after the SUBACK, CONNACK or
 * UNSUBACK went out, so it precedes any request it causes). */
static void announce_subs(struct session *s, uint32_t before)
{
    uint32_t m = 1u << SUB_METHODS;
    if ((s->subs & m) && !(before & m))
        hub_link_methods_ready(s->env->hub, &s->link);
    else if (!(s->subs & m) && (before & m))
        hub_link_methods_stopped(s->env->hub, &s->link);
    uint32_t d = 1u << SUB_TWIN_DESIRED;
    if ((s->subs & d) && !(before & d))
        hub_link_desired_ready(s->env->hub, &s->link);
    else if (!(s->subs & d) && (before & d))
        hub_link_desired_stopped(s->env->hub, &s->link);
    /* C2D: a (restored) devicebound subscription starts delivery of what was queued meanwhile. */
    uint32_t c = 1u << SUB_C2D | 1u << SUB_C2D_ANY;
    if (s->env->c2d && (s->subs & c) && !(before & c))
        c2d_attach(s->env->c2d, &s->link, c2d_wall_ms());
    else if (s->env->c2d && !(s->subs & c) && (before & c))
        c2d_detach(s->env->c2d, &s->link);
}

static int on_subscribe(struct session *s, const struct mqtt_subscribe *sub)
{
    uint8_t codes[MQTT_MAX_FILTERS];
    uint32_t before = s->subs;
    char text[SESSION_LOG_TEXT + 1];
    for (size_t i = 0; i < sub->count; i++) {
        int kind = filter_kind(s, sub->filters[i]);
        if (kind < 0) {
            log_info("%s: subscription to '%s' is not allowed; closing", s->ident,
                     log_text(sub->filters[i].p, sub->filters[i].len, text));
            return fail(s, "forbidden subscription");
        }
        codes[i] = sub->qos[i] > 1 ? 1 : sub->qos[i];
        s->subs |= 1u << kind;
        s->qos1 = (s->qos1 & ~(1u << kind)) | ((uint32_t)codes[i] << kind);
        log_debug("%s: SUBSCRIBE '%s' granted QoS %u", s->ident,
                  log_text(sub->filters[i].p, sub->filters[i].len, text), (unsigned)codes[i]);
    }
    save_session(s);
    if (send_scratch(s, mqtt_encode_suback(&s->scratch, sub->packet_id, codes, sub->count)))
        return ERR_CLOSED;
    announce_subs(s, before);
    return ERR_OK;
}

static int on_unsubscribe(struct session *s, const struct mqtt_subscribe *unsub)
{
    uint32_t before = s->subs;
    char text[SESSION_LOG_TEXT + 1];
    for (size_t i = 0; i < unsub->count; i++) {
        int kind = filter_kind(s, unsub->filters[i]);
        if (kind >= 0)
            s->subs &= ~(1u << kind);
        log_debug("%s: UNSUBSCRIBE '%s'", s->ident, log_text(unsub->filters[i].p, unsub->filters[i].len, text));
    }
    if (s->subs != before)
        save_session(s);
    if (send_scratch(s, mqtt_encode_ack(&s->scratch, MQTT_UNSUBACK, unsub->packet_id)))
        return ERR_CLOSED;
    announce_subs(s, before);
    return ERR_OK;
}

/* At CONNECT: CleanSession 1 discards what was kept; CleanSession 0 restores it (or starts one, so the next
 * connect finds it). Returns whether a session was present. */
static bool open_session(struct session *s, bool clean)
{
    s->clean = clean;
    if (clean) {
        hub_saved_session_drop(s->env->hub, s->ident);
        return false;
    }
    char *kept = hub_saved_session_get(s->env->hub, s->ident);
    if (!kept) {
        save_session(s);
        return false;
    }
    session_state_parse(kept, &s->subs, &s->qos1);
    log_info("%s: session restored (CleanSession 0): %s", s->ident, *kept ? kept : "no subscriptions");
    free(kept);
    return true;
}

/* ---- PUBLISH ---- */

/* Finds "$rid=" in the query part of topic (after '?') and copies its value. */
static bool query_rid(const char *topic, char *rid, size_t ridlen)
{
    const char *q = strchr(topic, '?');
    while (q) {
        q++;
        if (strncmp(q, "$rid=", 5) == 0) {
            size_t n = strcspn(q + 5, "&");
            if (n == 0 || n >= ridlen)
                return false;
            memcpy(rid, q + 5, n);
            rid[n] = '\0';
            return true;
        }
        q = strchr(q, '&');
    }
    return false;
}

/* The "$version=N" parameter of a reported PATCH topic (optimistic concurrency, as the Java SDK sends it):
 * ERR_OK with *version (-1 when absent), or ERR_MALFORMED when present but not a decimal number. */
static int query_version(const char *topic, int64_t *version)
{
    *version = -1;
    const char *q = strchr(topic, '?');
    while (q) {
        q++;
        if (strncmp(q, "$version=", 9) == 0) {
            size_t n = strcspn(q + 9, "&");
            int64_t v = 0;
            if (n == 0 || n > 18)
                return ERR_MALFORMED;
            for (size_t i = 0; i < n; i++) {
                if (q[9 + i] < '0' || q[9 + i] > '9')
                    return ERR_MALFORMED;
                v = v * 10 + (q[9 + i] - '0');
            }
            *version = v;
            return ERR_OK;
        }
        q = strchr(q, '&');
    }
    return ERR_OK;
}

/* $iothub/methods/res/{status}/?$rid={rid} */
static int on_method_reply(struct session *s, const char *topic, struct mqtt_bytes body)
{
    const char *p = topic + strlen("$iothub/methods/res/");
    char *end = NULL;
    long status = strtol(p, &end, 10);
    char rid[64];
    if (end == p || (*end != '/' && *end != '?') || status < -2147483647L || status > 2147483647L ||
        !query_rid(end, rid, sizeof rid)) {
        char text[SESSION_LOG_TEXT + 1];
        log_info("%s: malformed method response topic '%s'", s->ident,
                 log_text((const uint8_t *)topic, strlen(topic), text));
        return fail(s, "malformed method response topic");
    }
    hub_link_method_reply(s->env->hub, &s->link, rid, (int)status, body.p, body.len);
    return ERR_OK;
}

/* A twin answer goes out only on a subscription to $iothub/twin/res/# (MQTT 3.1.1 §3.3.5: a server sends
 * PUBLISH for matching subscriptions only; IoT Hub does the same). Without it the request is still carried out
 * -- a reported PATCH applies -- and its answer is dropped; the log says so once per connection. */
static bool twin_answers_heard(struct session *s)
{
    if (s->subs & (1u << SUB_TWIN_RES))
        return true;
    if (!s->told_no_twin_res)
        log_info("%s: twin request without a subscription to $iothub/twin/res/#: carried out, not answered", s->ident);
    s->told_no_twin_res = true;
    return false;
}

static int send_twin_answer(struct session *s, const char *topic, const uint8_t *body, size_t len)
{
    if (!twin_answers_heard(s))
        return ERR_OK;
    return send_publish(s, topic, body, len) ? ERR_CLOSED : ERR_OK;
}

/* A twin error as the hub answers it on MQTT: the status in the topic, and a body with errorCode and message
 * (the Node SDK ignores the status and fails the request on a body with an errorCode). */
static int send_twin_error(struct session *s, const char *rid, const struct twin_error *e)
{
    char reply[160];
    int status = e->code >= 100000 ? e->code / 1000 : 500;
    snprintf(reply, sizeof reply, "$iothub/twin/res/%d/?$rid=%s", status, rid);
    json_t *body = json_pack("{s:i,s:s}", "errorCode", e->code >= 100000 ? e->code : 500001, "message", e->message);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    int rc = send_twin_answer(s, reply, (const uint8_t *)text, text ? strlen(text) : 0);
    free(text);
    return rc;
}

/* Over a --throttle limit, a twin request gets the hub's 429 on its response topic, with the errorCode body
 * every twin error carries (the Node SDK reads the body, not the status). */
static bool twin_throttled(struct session *s, enum faults_op op, const char *rid)
{
    int retry = 0;
    if (faults_throttle_take(s->env->faults, op, 1, &retry))
        return false;
    log_info("%s: twin %s throttled (429)", s->ident, op == FAULTS_OP_TWIN_READ ? "GET" : "PATCH");
    struct twin_error e = {429001, "ThrottlingException: the twin operations of this hub are over their limit."};
    send_twin_error(s, rid, &e);
    return true;
}

static int on_twin_get(struct session *s, const char *topic)
{
    char rid[64], reply[128];
    if (!query_rid(topic, rid, sizeof rid))
        return fail(s, "twin GET without $rid");
    if (twin_throttled(s, FAULTS_OP_TWIN_READ, rid) || !twin_answers_heard(s))
        return ERR_OK; /* a GET nobody hears the answer of is not even read */
    struct buf doc;
    buf_init(&doc, 128 * 1024); /* desired and reported at their 32 KiB limits, with $version, fit */
    int rc = hub_link_twin_get(s->env->hub, &s->link, &doc);
    if (rc) {
        buf_cleanup(&doc);
        struct twin_error e = {500001, "The twin could not be read."};
        return send_twin_error(s, rid, &e);
    }
    snprintf(reply, sizeof reply, "$iothub/twin/res/200/?$rid=%s", rid);
    rc = send_twin_answer(s, reply, doc.data, doc.len);
    buf_cleanup(&doc);
    return rc;
}

static int on_twin_patch(struct session *s, const char *topic, struct mqtt_bytes body)
{
    char rid[64], reply[160];
    if (!query_rid(topic, rid, sizeof rid))
        return fail(s, "twin PATCH without $rid");
    if (twin_throttled(s, FAULTS_OP_TWIN_UPDATE, rid))
        return ERR_OK;
    int64_t version = 0, expected = -1;
    struct twin_error e = {500001, "Internal error."};
    int rc = query_version(topic, &expected);
    if (rc)
        e = (struct twin_error){400004, "The $version of the topic is not a number."};
    else
        rc = hub_link_twin_patch(s->env->hub, &s->link, body.p, body.len, expected, &version, &e);
    if (rc != ERR_OK) {
        if (rc == ERR_PRECONDITION)
            e = (struct twin_error){412001, "Precondition failed: the $version of the topic is not the reported "
                                            "properties' version."};
        else if (rc != ERR_INVALID && rc != ERR_MALFORMED)
            e = (struct twin_error){500001, "The twin could not be saved."};
        log_info("%s: reported properties refused: %s", s->ident, e.message);
        return send_twin_error(s, rid, &e);
    }
    snprintf(reply, sizeof reply, "$iothub/twin/res/204/?$rid=%s&$version=%" PRId64, rid, version);
    return send_twin_answer(s, reply, NULL, 0);
}

/* A device-to-cloud message (or a will) goes to the telemetry log, when there is one. */
static void record_telemetry(struct session *s, const char *topic, const uint8_t *body, size_t len)
{
    if (s->env->telemetry)
        telemetry_add(s->env->telemetry, s->device_id, s->module_id[0] ? s->module_id : NULL, topic, body, len,
                      loop_wall_s(s->env->loop));
}

/* Telemetry: a message asking for a fault (AzIoTHub_FaultOperation* in its property bag) is kept but, for a
 * disconnect, not acknowledged -- the hub drops the connection before the PUBACK. While a throttling, quota or
 * auth fault (or the --throttle D2C limit) is in force the hub closes the connection instead: that is how it
 * surfaces them over MQTT. */
static int on_telemetry(struct session *s, const char *topic, const struct mqtt_publish *p)
{
    char prefix[2 * REGISTRY_MAX_ID + 64];
    telemetry_prefix(s, prefix, sizeof prefix);
    const char *bag = topic + strlen(prefix);
    bag += *bag == '/';
    struct faults_request req;
    bool asks = faults_request_from_bag(&req, bag, strlen(bag));
    switch (faults_d2c(s->env->faults, &s->link, asks ? &req : NULL)) {
    case FAULTS_THROTTLED:
        return fail(s, "throttled");
    case FAULTS_QUOTA_EXCEEDED:
        return fail(s, "daily message quota exceeded");
    case FAULTS_UNAUTHORIZED:
        return fail(s, "not authorized");
    case FAULTS_HOLD:
        s->hold_ack = true;
        break;
    case FAULTS_ACCEPT:
        break;
    }
    record_telemetry(s, topic, p->payload.p, p->payload.len);
    return ERR_OK;
}

static int route_publish(struct session *s, const char *topic, const struct mqtt_publish *p)
{
    if (strncmp(topic, "$iothub/methods/res/", 20) == 0)
        return on_method_reply(s, topic, p->payload);
    if (strncmp(topic, "$iothub/twin/GET/", 17) == 0)
        return on_twin_get(s, topic);
    if (strncmp(topic, "$iothub/twin/PATCH/properties/reported/", 39) == 0)
        return on_twin_patch(s, topic, p->payload);
    if (is_telemetry_topic(s, p->topic.p, p->topic.len))
        return on_telemetry(s, topic, p);
    char text[SESSION_LOG_TEXT + 1];
    log_info("%s: publish to '%s' is not allowed; closing", s->ident,
             log_text((const uint8_t *)topic, strlen(topic), text));
    return fail(s, "publish to a topic the hub does not accept");
}

static int on_publish(struct session *s, const struct mqtt_publish *p)
{
    if (p->qos > 1) {
        log_info("%s: QoS 2 publish; closing (IoT Hub does not support QoS 2)", s->ident);
        return fail(s, "QoS 2 is not supported");
    }
    if (p->topic.len > SESSION_MAX_TOPIC)
        return fail(s, "topic too long");
    char topic[SESSION_MAX_TOPIC + 1];
    memcpy(topic, p->topic.p, p->topic.len);
    topic[p->topic.len] = '\0';
    registry_touch(s->env->reg, s->device_id, s->module_id, loop_wall_s(s->env->loop));
    s->hold_ack = false;
    int rc = route_publish(s, topic, p);
    if (rc == ERR_OK && p->qos == 1 && !s->hold_ack)
        rc = send_scratch(s, mqtt_encode_ack(&s->scratch, MQTT_PUBACK, p->packet_id)) ? ERR_CLOSED : ERR_OK;
    return rc;
}

/* ---- dispatch ---- */

static int on_packet(struct session *s, const struct mqtt_packet *pkt)
{
    if (s->state == SESSION_WAIT_CONNECT) {
        if (pkt->type != MQTT_CONNECT)
            return fail(s, "first packet was not CONNECT");
        return on_connect(s, &pkt->u.connect);
    }
    switch (pkt->type) {
    case MQTT_PUBLISH:
        return on_publish(s, &pkt->u.publish);
    case MQTT_SUBSCRIBE:
        return on_subscribe(s, &pkt->u.subscribe);
    case MQTT_UNSUBSCRIBE:
        return on_unsubscribe(s, &pkt->u.subscribe);
    case MQTT_PINGREQ:
        return send_scratch(s, mqtt_encode_empty(&s->scratch, MQTT_PINGRESP)) ? ERR_CLOSED : ERR_OK;
    case MQTT_PUBACK:
        if (s->c2d_pid && pkt->u.packet_id == s->c2d_pid) { /* the device completed its C2D message */
            s->c2d_pid = 0;
            c2d_complete(s->env->c2d, s->ident, s->c2d_seq);
        }
        return ERR_OK; /* other PUBACKs (a stray one) are harmless */
    case MQTT_DISCONNECT:
        clear_will(s);
        log_info("%s disconnected", s->ident);
        return fail(s, "client disconnected");
    default:
        log_info("%s: unexpected packet type %d; closing", s->ident, (int)pkt->type);
        return fail(s, "unexpected packet");
    }
}

/* An MQTT 5 CONNECT, which the 3.1.1 codec rejects: header 0x10, remaining length, "MQTT", level 5. */
static bool is_mqtt5_connect(const uint8_t *p, size_t len)
{
    static const uint8_t name_and_level[] = {0, 4, 'M', 'Q', 'T', 'T', 5};
    if (len < 2 || p[0] != 0x10)
        return false;
    size_t i = 1;
    while (i < len && i < 4 && (p[i] & 0x80))
        i++;
    i++; /* past the last byte of the remaining length */
    return len >= i + sizeof name_and_level && memcmp(p + i, name_and_level, sizeof name_and_level) == 0;
}

int session_on_input(struct session *s, struct buf *in)
{
    size_t off = 0, partial = 0;
    int rc = s->closing || s->state == SESSION_CLOSED ? ERR_CLOSED : ERR_OK;
    while (rc == ERR_OK && off < in->len) {
        struct mqtt_packet pkt;
        size_t used = 0;
        int d = mqtt_decode(in->data + off, in->len - off, s->env->max_packet, &pkt, &used);
        if (d == ERR_NEED_MORE) {
            partial = used;
            break;
        }
        if (d == ERR_MALFORMED && s->state == SESSION_WAIT_CONNECT && is_mqtt5_connect(in->data + off, in->len - off)) {
            rc = refuse(s, "MQTT 5 is not supported: IoT Hub speaks MQTT 3.1.1 (protocol level 4)");
            break;
        }
        if (d) {
            log_info("%s: %s packet from %s; closing", s->ident, d == ERR_TOO_BIG ? "oversized" : "malformed",
                     conn_peer(s->conn));
            rc = fail(s, d == ERR_TOO_BIG ? "packet too large" : "malformed packet");
            break;
        }
        s->last_rx_ms = loop_now_ms(s->env->loop);
        rc = on_packet(s, &pkt);
        off += used;
    }
    buf_consume(in, off);
    /* A large packet under way (a 100 KiB method answer): room for all of it now, so net reads the rest straight
     * into it (issue 20). Only once the device is authenticated (an anonymous fixed header must not make 256
     * KiB appear); small packets grow as they come; an idle connection keeps no storage. */
    if (s->state == SESSION_ONLINE && partial >= SESSION_RESERVE_MIN && partial > in->len &&
        buf_reserve(in, partial - in->len) == ERR_OK)
        conn_expect(s->conn, partial); /* net reads the rest at once (ignored under WebSocket framing) */
    return rc;
}

/* ---- lifetime ---- */

int session_send_method(struct session *s, const char *method, const uint8_t *payload, size_t len, char *rid)
{
    struct buf topic;
    buf_init(&topic, SESSION_MAX_TOPIC + 64); /* method names have no limit of their own in REST */
    /* The rid in hex, and the topic by appends: printf was a tenth of a small call (issue 20). */
    static const char hex[] = "0123456789abcdef";
    char d[16];
    size_t i = sizeof d;
    uint64_t v = ++s->rid_counter;
    do
        d[--i] = hex[v & 15];
    while ((v >>= 4) != 0);
    memcpy(rid, d + i, sizeof d - i);
    rid[sizeof d - i] = '\0';
    int rc = buf_append(&topic, "$iothub/methods/POST/", 21);
    if (rc == ERR_OK)
        rc = buf_append_str(&topic, method);
    if (rc == ERR_OK)
        rc = buf_append(&topic, "/?$rid=", 7);
    if (rc == ERR_OK)
        rc = buf_append_str(&topic, rid);
    if (rc == ERR_OK)
        rc = buf_append_byte(&topic, '\0'); /* send_publish takes a C string */
    if (rc == ERR_OK)
        rc = send_publish(s, (const char *)topic.data, payload, len);
    buf_cleanup(&topic);
    return rc;
}

void session_kick(struct session *s, const char *reason)
{
    log_info("%s: closing: %s", s->ident, reason);
    fail(s, reason);
}

int session_push_desired(struct session *s, const uint8_t *patch, size_t len, int64_t version)
{
    char topic[96];
    snprintf(topic, sizeof topic, "$iothub/twin/PATCH/properties/desired/?$version=%" PRId64, version);
    return send_publish(s, topic, patch, len);
}

/* ---- the hub's view of this session (device_link.h) ---- */

static struct session *link_session(struct device_link *l)
{
    return (struct session *)((char *)l - offsetof(struct session, link));
}

static int link_deliver_method(struct device_link *l, const char *method, const uint8_t *payload, size_t len,
                               char *rid)
{
    return session_send_method(link_session(l), method, payload, len, rid);
}

static int link_push_desired(struct device_link *l, const uint8_t *patch, size_t len, int64_t version)
{
    return session_push_desired(link_session(l), patch, len, version);
}

static void link_kick(struct device_link *l, const char *reason)
{
    session_kick(link_session(l), reason);
}

/* Fault injection (KillTcp): no DISCONNECT, no flush, a TCP RST. */
static void link_abort(struct device_link *l, const char *reason)
{
    struct session *s = link_session(l);
    log_info("%s: dropping the connection: %s", s->ident, reason);
    if (s->state != SESSION_CLOSED)
        conn_abort(s->conn, reason);
    s->closing = true;
}

/* PUBLISH devices/{id}/messages/devicebound/{property bag}: system properties $.mid $.cid $.to $.uid $.ct $.ce
 * $.exp (ISO 8601, only when the sender set an expiry), then the application properties (iothub-protocol.md
 * §3). At the QoS granted for the subscription: QoS 1 waits for the PUBACK to complete the message. */
static int link_deliver_c2d(struct device_link *l, const struct c2d_message *m)
{
    struct session *s = link_session(l);
    if (s->state != SESSION_ONLINE || s->closing)
        return ERR_CLOSED;
    struct buf t;
    buf_init(&t, 16384);
    bool first = true;
    char exp[40] = "";
    if (m->expiry_given) {
        time_t secs = (time_t)(m->expiry_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        size_t n = strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(exp + n, sizeof exp - n, ".%03dZ", (int)(m->expiry_ms % 1000));
    }
    int rc = buf_printf(&t, "devices/%s/messages/devicebound/", s->device_id);
    if (!rc)
        rc = url_bag_add(&t, &first, "$.mid", m->message_id) || url_bag_add(&t, &first, "$.cid", m->correlation_id) ||
             url_bag_add(&t, &first, "$.to", m->to) || url_bag_add(&t, &first, "$.uid", m->user_id) ||
             url_bag_add(&t, &first, "$.ct", m->content_type) || url_bag_add(&t, &first, "$.ce", m->content_encoding) ||
             url_bag_add(&t, &first, "$.exp", exp);
    for (size_t i = 0; !rc && i < m->n_props; i++)
        rc = url_bag_add(&t, &first, m->props[i].key, m->props[i].value);
    if (!rc)
        rc = buf_append_byte(&t, 0);
    bool qos1 = s->qos1 & (1u << SUB_C2D | 1u << SUB_C2D_ANY);
    if (!rc) {
        if (++s->last_pid == 0)
            s->last_pid = 1;
        struct mqtt_publish p = {.qos = qos1 ? 1 : 0,
                                 .dup = m->delivery_count > 1,
                                 .topic = {t.data, t.len - 1},
                                 .packet_id = qos1 ? s->last_pid : 0,
                                 .payload = {m->body, m->body_len}};
        rc = send_scratch(s, mqtt_encode_publish(&s->scratch, &p));
    }
    buf_cleanup(&t);
    if (rc)
        return rc;
    log_info("%s: C2D message %s delivered (QoS %d)", s->ident, m->message_id[0] ? m->message_id : "-", qos1);
    if (qos1) {
        s->c2d_pid = s->last_pid;
        s->c2d_seq = m->seq;
    } else {
        c2d_complete(s->env->c2d, s->ident, m->seq); /* QoS 0: nothing will acknowledge it */
    }
    return ERR_OK;
}

static const struct device_link_ops session_link_ops = {
    .deliver_method = link_deliver_method,
    .push_desired = link_push_desired,
    .deliver_c2d = link_deliver_c2d,
    .kick = link_kick,
    .abort = link_abort,
};

void session_on_close(struct session *s)
{
    if (s->state == SESSION_CLOSED)
        return;
    bool was_online = s->state == SESSION_ONLINE;
    s->state = SESSION_CLOSED;
    loop_timer_cancel(s->env->loop, s->keepalive_timer);
    loop_timer_cancel(s->env->loop, s->expiry_timer);
    s->keepalive_timer = s->expiry_timer = NULL;
    if (!was_online)
        return;
    if (s->will_topic) {
        log_info("%s: connection lost; publishing its will as telemetry", s->ident);
        record_telemetry(s, s->will_topic, s->will_payload, s->will_len);
    }
    if (s->env->c2d)
        c2d_detach(s->env->c2d, &s->link); /* a C2D message not yet PUBACKed stays queued for the next connection */
    hub_link_offline(s->env->hub, &s->link);
    log_info("%s: connection from %s closed", s->ident, conn_peer(s->conn));
}

void session_free(struct session *s)
{
    if (!s)
        return;
    session_on_close(s);
    clear_will(s);
    buf_cleanup(&s->scratch);
    free(s);
}

/* ---- net's view: the MQTT protocol handler (proto.h) ---- */

static void *proto_open(void *ctx, struct conn *c)
{
    return session_new(ctx, c);
}

static int proto_input(void *state, struct buf *in)
{
    return session_on_input(state, in);
}

static void proto_free(void *state)
{
    session_free(state);
}

void session_proto(struct proto *out, const struct session_env *env)
{
    *out = (struct proto){.name = "mqtt", .max_frame = env->max_packet, .open = proto_open, .input = proto_input,
                          .free = proto_free, .ctx = (void *)env};
}
