/* rest_device.c -- the device side over HTTPS, as the C SDK's HTTP_Protocol uses it (rest_internal.h):
 * POST /devices/{id}/messages/events (telemetry into the same log as MQTT's), GET .../messages/deviceBound
 * (a C2D message, locked), DELETE .../deviceBound/{lockToken}[?reject] and POST .../abandon (settle); and the
 * service's DELETE /devices/{id}/commands (purge the queue). C2D queues are c2d.h's.
 * Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "c2d.h"
#include "device_link.h"
#include "err.h"
#include "faults.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "telemetry.h"
#include "url.h"

struct app_props {
    struct buf *t;
    bool *first;
    int rc;
};

/* MHD header iterator: iothub-app-{name}: value -> &name=value (percent-encoded) in the topic's property bag. */
static enum MHD_Result collect_app_property(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct app_props *p = cls;
    static const char pre[] = "iothub-app-";
    if (p->rc || !key || !value || strncasecmp(key, pre, sizeof pre - 1) != 0 || !key[sizeof pre - 1])
        return MHD_YES;
    p->rc = url_bag_add_even_empty(p->t, p->first, key + sizeof pre - 1, value);
    return MHD_YES;
}

static void iso_ms(int64_t ms, char *out, size_t outlen)
{
    restapi_iso_ms(ms, out, outlen);
}

static void set_header(json_t *h, const char *name, const char *value)
{
    if (value && value[0])
        json_object_set_new(h, name, json_string(value));
}

/* GET /devices/{id}/messages/deviceBound: 204 when nothing waits; else 200 with the body, the lock token as
 * ETag, and the message's properties as iothub-* headers (application properties as iothub-app-{name}). */
void rest_route_c2d_receive(struct rest_req *q)
{
    if (!rest_device_prelude(q))
        return;
    const struct c2d_message *m =
        q->r->c2d ? c2d_lock(q->r->c2d, q->route.device_id, c2d_wall_ms(), C2D_LOCK_MS) : NULL;
    if (!m) {
        rest_answer_empty(q);
        return;
    }
    char *body = m->body_len ? malloc(m->body_len) : NULL;
    if (m->body_len && !body) {
        rest_answer_nomem(q);
        return;
    }
    if (body)
        memcpy(body, m->body, m->body_len);
    rest_answer_set(q, MHD_HTTP_OK, body, m->body_len, m->content_type[0] ? NULL : "application/octet-stream");
    json_t *h = json_object();
    char text[64];
    set_header(h, "iothub-messageid", m->message_id);
    set_header(h, "iothub-correlationid", m->correlation_id);
    set_header(h, "iothub-to", m->to);
    set_header(h, "iothub-userid", m->user_id);
    set_header(h, "Content-Type", m->content_type);
    set_header(h, "Content-Encoding", m->content_encoding);
    if (m->expiry_given) {
        iso_ms(m->expiry_ms, text, sizeof text);
        set_header(h, "iothub-expiry", text);
    }
    iso_ms(m->enqueued_ms, text, sizeof text);
    set_header(h, "iothub-enqueuedtime", text);
    snprintf(text, sizeof text, "%u", m->delivery_count);
    set_header(h, "iothub-deliverycount", text);
    snprintf(text, sizeof text, "%llu", (unsigned long long)m->seq);
    set_header(h, "iothub-sequencenumber", text);
    for (size_t i = 0; i < m->n_props; i++) {
        char name[C2D_MAX_KEY + 16];
        snprintf(name, sizeof name, "iothub-app-%s", m->props[i].key);
        set_header(h, name, m->props[i].value);
    }
    q->ans.headers = h;
    snprintf(q->ans.etag, sizeof q->ans.etag, "\"%llu\"", (unsigned long long)m->seq);
}

/* The lock token of C2D_LOCK / C2D_ABANDON as a seq; false (and a 412 answer) when it names none. */
static bool lock_seq(struct rest_req *q, uint64_t *seq)
{
    const char *t = q->route.lock_token;
    char *end = NULL;
    unsigned long long v = t && *t >= '0' && *t <= '9' ? strtoull(t, &end, 10) : 0;
    if (!end || *end || v == 0) {
        rest_answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A, "The lock token is not valid.");
        return false;
    }
    *seq = v;
    return true;
}

/* DELETE .../deviceBound/{lockToken}[?reject] completes (or rejects); POST .../abandon gives it back. 204. */
static void c2d_settle(struct rest_req *q, bool abandon)
{
    uint64_t seq;
    if (!rest_device_prelude(q) || !lock_seq(q, &seq))
        return;
    const char *dev = q->route.device_id;
    int rc = !q->r->c2d        ? ERR_NOT_FOUND
             : abandon         ? c2d_abandon(q->r->c2d, dev, seq)
             : q->route.reject ? c2d_reject(q->r->c2d, dev, seq)
                               : c2d_complete(q->r->c2d, dev, seq);
    if (rc != ERR_OK) {
        rest_answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                           "The message is no longer locked (completed, expired or its lock ran out).");
        return;
    }
    log_info("c2d: %s %s message %llu over HTTPS", dev,
             abandon           ? "abandoned"
             : q->route.reject ? "rejected"
                               : "completed",
             (unsigned long long)seq);
    rest_answer_empty(q);
}

void rest_route_c2d_complete(struct rest_req *q)
{
    c2d_settle(q, false);
}

void rest_route_c2d_abandon(struct rest_req *q)
{
    c2d_settle(q, true);
}

/* MHD header iterator: iothub-app-{name} headers into a fault request (faults_request_prop matches the
 * AzIoTHub_FaultOperation* names case-insensitively: header names reach us in whatever case the client wrote). */
static enum MHD_Result collect_fault_property(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    static const char pre[] = "iothub-app-";
    if (key && strncasecmp(key, pre, sizeof pre - 1) == 0)
        faults_request_prop(cls, key + sizeof pre - 1, value);
    return MHD_YES;
}

/* The SDK fault protocol on an HTTPS D2C message (README "Testing failures"). Returns false when q was
 * refused (answered) or its connection is to close (q->gone), true to record and acknowledge it.
 * InvokeThrottling / InvokeMaxMessageQuota / InvokeAuthError open their window as on MQTT (faults_d2c); while
 * one is in force a message is answered 429 429001 (Retry-After: 1), 403 403002 or 401 401002, as the hub
 * answers HTTPS. KillTcp / ShutDownMqtt / KillAmqp*: HTTPS has no connection that outlives the request to drop
 * after the delay, so the message is recorded and this request's connection is closed at once, unanswered
 * (the SDK sees the request fail and retries); the delay and duration are not applied. */
static bool d2c_faults(struct rest_req *q)
{
    static const struct device_link_ops no_ops; /* an HTTPS "link" is the request itself: nothing to call */
    struct device_link link = {&no_ops, q->route.device_id};
    struct faults_request req;
    faults_request_init(&req);
    MHD_get_connection_values(q->conn, MHD_HEADER_KIND, collect_fault_property, &req);
    bool drop = faults_sdk_protocol(q->r->faults) &&
                (req.kind == FAULTS_KIND_KILL_TCP || req.kind == FAULTS_KIND_SHUTDOWN || req.kind == FAULTS_KIND_AMQP);
    bool timed = req.kind != FAULTS_KIND_NONE && req.kind != FAULTS_KIND_KILL_TCP && req.kind != FAULTS_KIND_SHUTDOWN &&
                 req.kind != FAULTS_KIND_AMQP; /* the kinds faults_d2c schedules without keeping the link */
    switch (faults_d2c(q->r->faults, &link, timed ? &req : NULL)) {
    case FAULTS_THROTTLED:
        rest_answer_throttled(q, RESTAPI_ENVELOPE_A, 1);
        return false;
    case FAULTS_QUOTA_EXCEEDED:
        rest_answer_errorf(q, RESTAPI_QUOTA_EXCEEDED, RESTAPI_ENVELOPE_A,
                           "Total number of messages on IotHub exceeded the allocated quota.");
        return false;
    case FAULTS_UNAUTHORIZED:
        rest_answer_errorf(q, RESTAPI_UNAUTHORIZED, RESTAPI_ENVELOPE_A, "Unauthorized");
        return false;
    default:
        break;
    }
    if (drop) {
        log_info("fault injection: %s asks for %s over HTTPS: the message is kept and this request's connection "
                 "closes now, unanswered",
                 q->route.device_id, req.type);
        q->gone = true;
    }
    return true;
}

/* POST /devices/{id}/messages/events: telemetry over HTTPS, into the same log as MQTT's; iothub-app-{name}
 * headers are its properties, iothub-messageid / iothub-correlationid its $.mid / $.cid. 204. The SDK fault
 * protocol applies (d2c_faults). */
void rest_route_d2c_events(struct rest_req *q)
{
    if (!rest_device_prelude(q) || !d2c_faults(q))
        return;
    struct buf topic;
    buf_init(&topic, 16384);
    int rc = buf_printf(&topic, "devices/%s/messages/events/", q->route.device_id);
    bool first = true;
    static const struct {
        const char *header, *prop;
    } sys[] = {{"iothub-messageid", "$.mid"},
               {"iothub-correlationid", "$.cid"},
               {"Content-Type", "$.ct"},
               {"Content-Encoding", "$.ce"}};
    for (size_t i = 0; !rc && i < sizeof sys / sizeof sys[0]; i++) {
        const char *v = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, sys[i].header);
        char *ev = v ? url_encode(v, strlen(v)) : NULL;
        if (ev)
            rc = buf_printf(&topic, "%s%s=%s", first ? "" : "&", sys[i].prop, ev), first = false;
        free(ev);
    }
    struct app_props ctx = {&topic, &first, rc};
    MHD_get_connection_values(q->conn, MHD_HEADER_KIND, collect_app_property, &ctx);
    rc = ctx.rc;
    if (!rc)
        rc = buf_append_byte(&topic, 0);
    if (!rc && q->r->telemetry)
        telemetry_add(q->r->telemetry, q->route.device_id, NULL, (const char *)topic.data, q->body.data, q->body.len,
                      loop_wall_s(q->r->loop));
    buf_cleanup(&topic);
    if (rc) {
        rest_answer_nomem(q);
        return;
    }
    log_debug("telemetry from %s over HTTPS (%zu bytes)", q->route.device_id, q->body.len);
    if (!q->gone)
        rest_answer_empty(q);
}

/* DELETE /devices/{id}/commands: drops every queued C2D message; {"totalMessagesPurged": n, "deviceId": id}. */
void rest_route_c2d_purge(struct rest_req *q)
{
    if (!rest_service_prelude(q, AUTH_SERVICE_CONNECT) || !rest_device_exists(q))
        return;
    size_t n = q->r->c2d ? c2d_purge(q->r->c2d, q->route.device_id) : 0;
    log_info("c2d: purged %zu messages of %s", n, q->route.device_id);
    rest_answer_json(q, MHD_HTTP_OK,
                     json_pack("{s:I,s:s}", "totalMessagesPurged", (json_int_t)n, "deviceId", q->route.device_id),
                     NULL);
}
