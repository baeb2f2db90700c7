/* telemetry.c -- bounded in-memory log of device-to-cloud messages (see telemetry.h): a ring of copies. */
#include "telemetry.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "err.h"
#include "url.h"

struct message {
    char *device_id;
    char *module_id; /* NULL for a device */
    char *props;     /* the topic's property bag, as received */
    uint8_t *body;
    size_t len;
    int64_t time_s;
};

struct telemetry {
    struct message *ring;
    size_t cap;   /* max messages */
    size_t head;  /* index of the oldest */
    size_t count;
    size_t bytes; /* bodies kept */
    size_t max_bytes;
    uint64_t total;
};

struct telemetry *telemetry_new(size_t max_messages, size_t max_bytes)
{
    struct telemetry *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cap = max_messages;
    t->max_bytes = max_bytes;
    if (max_messages && !(t->ring = calloc(max_messages, sizeof *t->ring))) {
        free(t);
        return NULL;
    }
    return t;
}

static void message_clear(struct message *m)
{
    free(m->device_id);
    free(m->module_id);
    free(m->props);
    free(m->body);
    memset(m, 0, sizeof *m);
}

static void drop_oldest(struct telemetry *t)
{
    struct message *m = &t->ring[t->head];
    t->bytes -= m->len;
    message_clear(m);
    t->head = (t->head + 1) % t->cap;
    t->count--;
}

void telemetry_clear(struct telemetry *t)
{
    while (t->count)
        drop_oldest(t);
}

void telemetry_free(struct telemetry *t)
{
    if (!t)
        return;
    telemetry_clear(t);
    free(t->ring);
    free(t);
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

int telemetry_add(struct telemetry *t, const char *device_id, const char *module_id, const char *topic,
                  const uint8_t *body, size_t len, int64_t now_s)
{
    t->total++;
    if (t->cap == 0 || len > t->max_bytes)
        return ERR_OK;
    while (t->count && (t->count == t->cap || t->bytes + len > t->max_bytes))
        drop_oldest(t);
    struct message m = {.device_id = strdup(device_id), .module_id = module_id ? strdup(module_id) : NULL,
                        .props = strdup(property_bag(topic)), .body = malloc(len ? len : 1), .len = len,
                        .time_s = now_s};
    if (!m.device_id || (module_id && !m.module_id) || !m.props || !m.body) {
        message_clear(&m);
        return ERR_NOMEM;
    }
    memcpy(m.body, body, len);
    t->ring[(t->head + t->count) % t->cap] = m;
    t->count++;
    t->bytes += len;
    return ERR_OK;
}

uint64_t telemetry_total(const struct telemetry *t)
{
    return t->total;
}

/* {"k":"v",...} from "k=v&k2=v2" (URL-decoded; a key without '=' has a null value, as the hub's rule). */
static json_t *properties_json(const char *bag)
{
    json_t *o = json_object();
    while (o && *bag) {
        size_t n = strcspn(bag, "&");
        const char *eq = memchr(bag, '=', n);
        size_t klen = eq ? (size_t)(eq - bag) : n;
        char *k = NULL, *v = NULL;
        if (klen && url_decode(bag, klen, &k, NULL) == ERR_OK) {
            if (eq && url_decode(eq + 1, n - klen - 1, &v, NULL) != ERR_OK)
                v = NULL;
            json_object_set_new(o, k, eq && v ? json_string(v) : json_null());
        }
        free(k);
        free(v);
        bag += n + (bag[n] == '&');
    }
    return o;
}

static json_t *message_json(const struct message *m)
{
    char when[32];
    time_t ts = (time_t)m->time_s;
    struct tm tm;
    gmtime_r(&ts, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{s:s, s:s, s:o}", "deviceId", m->device_id, "enqueuedTimeUtc", when, "properties",
                          properties_json(m->props));
    if (!o)
        return NULL;
    if (m->module_id)
        json_object_set_new(o, "moduleId", json_string(m->module_id));
    json_t *text = json_stringn((const char *)m->body, m->len); /* NULL unless valid UTF-8 */
    if (text && !memchr(m->body, '\0', m->len)) {
        json_object_set_new(o, "body", text);
    } else {
        json_decref(text);
        char *b64 = base64_encode(m->body, m->len);
        json_object_set_new(o, "bodyBase64", b64 ? json_string(b64) : json_null());
        free(b64);
    }
    return o;
}

json_t *telemetry_json(const struct telemetry *t, const char *device_id, size_t top)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < t->count; i++) {
        const struct message *m = &t->ring[(t->head + i) % t->cap];
        if (device_id && strcmp(device_id, m->device_id) != 0)
            continue;
        if (json_array_append_new(arr, message_json(m))) {
            json_decref(arr);
            return NULL;
        }
    }
    while (arr && top && json_array_size(arr) > top)
        json_array_remove(arr, 0);
    return arr;
}
