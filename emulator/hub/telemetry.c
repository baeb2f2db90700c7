/* telemetry.c -- device-to-cloud messages into the event log, and the GET /emulator/telemetry view of it
 * (see telemetry.h). */
#include "telemetry.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "err.h"
#include "eventlog.h"
#include "registry.h"

struct telemetry {
    struct eventlog *log;
    bool owned;
    const struct registry *reg;
    size_t list_limit; /* SIZE_MAX: none */
};

struct telemetry *telemetry_new_on(struct eventlog *log, const struct registry *reg)
{
    struct telemetry *t = log ? calloc(1, sizeof *t) : NULL;
    if (!t)
        return NULL;
    t->log = log;
    t->reg = reg;
    t->list_limit = SIZE_MAX;
    return t;
}

struct telemetry *telemetry_new(size_t max_messages, size_t max_bytes)
{
    struct eventlog_limits lim = {.partitions = 1, .max_events = max_messages, .max_bytes = max_bytes};
    struct eventlog *log = eventlog_new(&lim, 0);
    struct telemetry *t = telemetry_new_on(log, NULL);
    if (!t) {
        eventlog_free(log);
        return NULL;
    }
    t->owned = true;
    return t;
}

void telemetry_free(struct telemetry *t)
{
    if (!t)
        return;
    if (t->owned)
        eventlog_free(t->log);
    free(t);
}

void telemetry_set_list_limit(struct telemetry *t, size_t n)
{
    t->list_limit = n;
}

struct eventlog *telemetry_log(struct telemetry *t)
{
    return t->log;
}

/* The property bag of ".../messages/events/{bag}" ("" when there is none). */
static const char *property_bag(const char *topic)
{
    const char *p = strstr(topic, "/messages/events");
    if (!p)
        return "";
    p += strlen("/messages/events");
    return *p == '/' ? p + 1 : p;
}

static int64_t enqueued_ms(int64_t now_s)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && (int64_t)ts.tv_sec == now_s)
        return now_s * 1000 + ts.tv_nsec / 1000000;
    return now_s * 1000;
}

int telemetry_add(struct telemetry *t, const char *device_id, const char *module_id, const char *topic,
                  const uint8_t *body, size_t len, int64_t now_s)
{
    const struct identity *id = t->reg ? registry_find(t->reg, device_id, module_id ? module_id : "") : NULL;
    struct eventlog_input in = {.device_id = device_id,
                                .module_id = module_id,
                                .auth_type = "sas",
                                .generation_id = id ? id->generation_id : "",
                                .prop_bag = property_bag(topic),
                                .body = body,
                                .len = len};
    int rc = eventlog_append(t->log, &in, enqueued_ms(now_s), NULL);
    return rc == ERR_NOMEM ? ERR_NOMEM : ERR_OK;
}

uint64_t telemetry_total(const struct telemetry *t)
{
    return eventlog_total(t->log);
}

void telemetry_clear(struct telemetry *t)
{
    eventlog_clear(t->log);
}

static int set_text(json_t *o, const char *k, const char *v)
{
    return v ? json_object_set_new(o, k, json_string(v)) : 0;
}

static json_t *event_json(const struct eventlog_event *e)
{
    char when[40];
    time_t ts = (time_t)(e->enqueued_ms / 1000);
    struct tm tm;
    gmtime_r(&ts, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(e->enqueued_ms % 1000));
    char offset[24];
    snprintf(offset, sizeof offset, "%lld", (long long)e->offset);
    json_t *props = json_object();
    json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:s, s:o}", "deviceId", e->device_id, "enqueuedTimeUtc", when,
                          "partition", e->partition, "sequenceNumber", (json_int_t)e->seq, "offset", offset,
                          "properties", props);
    if (!o)
        return NULL;
    for (size_t i = 0; i < e->n_props; i++)
        json_object_set_new(props, e->props[i].key, e->props[i].value ? json_string(e->props[i].value) : json_null());
    set_text(props, "$.mid", e->message_id);
    set_text(props, "$.cid", e->correlation_id);
    set_text(props, "$.ct", e->content_type);
    set_text(props, "$.ce", e->content_encoding);
    set_text(props, "$.uid", e->user_id);
    if (e->module_id)
        json_object_set_new(o, "moduleId", json_string(e->module_id));
    json_t *text = json_stringn((const char *)e->body, e->len); /* NULL unless valid UTF-8 */
    if (text && !memchr(e->body, '\0', e->len)) {
        json_object_set_new(o, "body", text);
    } else {
        json_decref(text);
        char *b64 = base64_encode(e->body, e->len);
        json_object_set_new(o, "bodyBase64", b64 ? json_string(b64) : json_null());
        free(b64);
    }
    return o;
}

json_t *telemetry_json(const struct telemetry *t, const char *device_id, size_t top)
{
    json_t *arr = json_array();
    if (t->list_limit != SIZE_MAX && (top == 0 || top > t->list_limit)) {
        if (t->list_limit == 0)
            return arr;
        top = t->list_limit;
    }
    for (const struct eventlog_event *e = eventlog_oldest(t->log); arr && e; e = e->next) {
        if (device_id && strcmp(device_id, e->device_id) != 0)
            continue;
        if (json_array_append_new(arr, event_json(e))) {
            json_decref(arr);
            return NULL;
        }
    }
    while (arr && top && json_array_size(arr) > top)
        json_array_remove(arr, 0);
    return arr;
}
