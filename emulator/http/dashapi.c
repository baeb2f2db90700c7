/* dashapi.c -- the dashboard's pure HTTP logic (see dashapi.h): route classification, the C2D send body,
 * and the SSE records. */
#include "dashapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "err.h"
#include "eventlog.h"
#include "restapi.h"
#include "url.h"

static bool asset_name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof ((struct dashapi_route *)0)->asset || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

static int decode(const char *s, size_t n, char **out, struct dashapi_route *r)
{
    if (n == 0) {
        r->malformed = true;
        return ERR_OK;
    }
    int rc = url_decode(s, n, out, NULL);
    if (rc == ERR_MALFORMED) {
        r->malformed = true;
        return ERR_OK;
    }
    return rc;
}

static void parse_since(const char *q, struct dashapi_route *r)
{
    while (q && *q) {
        size_t n = strcspn(q, "&");
        if (n > 6 && strncmp(q, "since=", 6) == 0) {
            uint64_t v = 0;
            size_t i = 6;
            for (; i < n && q[i] >= '0' && q[i] <= '9' && v < UINT64_MAX / 10 - 1; i++)
                v = v * 10 + (uint64_t)(q[i] - '0');
            if (i == n) {
                r->since = v;
                r->has_since = true;
            }
        }
        q += n;
        if (*q == '&')
            q++;
    }
}

/* /emulator/devices/{id}/messages or /emulator/devices/{id}/modules/{mid}/messages (p after "/emulator/devices/"). */
static int parse_c2d(const char *p, size_t plen, struct dashapi_route *r)
{
    const char *segs[5];
    size_t lens[5], n = 0, i = 0;
    for (;;) {
        size_t j = i;
        while (j < plen && p[j] != '/')
            j++;
        if (n == 5)
            return ERR_OK; /* too many segments: not ours */
        segs[n] = p + i;
        lens[n++] = j - i;
        if (j >= plen)
            break;
        i = j + 1;
    }
    bool dev = n == 2 && lens[1] == 8 && memcmp(segs[1], "messages", 8) == 0;
    bool mod = n == 4 && lens[1] == 7 && memcmp(segs[1], "modules", 7) == 0 && lens[3] == 8 &&
               memcmp(segs[3], "messages", 8) == 0;
    if (!dev && !mod)
        return ERR_OK;
    r->kind = DASHAPI_C2D;
    int rc = decode(segs[0], lens[0], &r->device_id, r);
    if (rc == ERR_OK && mod && !r->malformed)
        rc = decode(segs[2], lens[2], &r->module_id, r);
    return rc;
}

int dashapi_route_parse(const char *uri, struct dashapi_route *out)
{
    memset(out, 0, sizeof *out);
    if (!uri)
        return ERR_OK;
    size_t plen = strcspn(uri, "?#");
    const char *query = uri[plen] == '?' ? uri + plen + 1 : NULL;
    static const char dash_prefix[] = "/dashboard/", dev_prefix[] = "/emulator/devices/";
    if ((plen == 1 && uri[0] == '/') || (plen == 11 && strncmp(uri, "/index.html", 11) == 0) ||
        (plen == 10 && strncmp(uri, "/dashboard", 10) == 0)) {
        out->kind = DASHAPI_ASSET;
        snprintf(out->asset, sizeof out->asset, "index.html");
    } else if (plen > sizeof dash_prefix - 1 && strncmp(uri, dash_prefix, sizeof dash_prefix - 1) == 0) {
        const char *name = uri + sizeof dash_prefix - 1;
        size_t n = plen - (sizeof dash_prefix - 1);
        out->kind = DASHAPI_ASSET;
        if (asset_name_ok(name, n))
            snprintf(out->asset, sizeof out->asset, "%.*s", (int)n, name);
        /* else asset "" : 404 */
    } else if (plen == 17 && strncmp(uri, "/emulator/session", 17) == 0) {
        out->kind = DASHAPI_SESSION;
    } else if (plen == 15 && strncmp(uri, "/emulator/stats", 15) == 0) {
        out->kind = DASHAPI_STATS;
    } else if (plen == 16 && strncmp(uri, "/emulator/events", 16) == 0) {
        out->kind = DASHAPI_EVENTS;
        parse_since(query, out);
    } else if (plen > sizeof dev_prefix - 1 && strncmp(uri, dev_prefix, sizeof dev_prefix - 1) == 0) {
        int rc = parse_c2d(uri + sizeof dev_prefix - 1, plen - (sizeof dev_prefix - 1), out);
        if (rc != ERR_OK) {
            dashapi_route_cleanup(out);
            return rc;
        }
    }
    return ERR_OK;
}

void dashapi_route_cleanup(struct dashapi_route *r)
{
    if (!r)
        return;
    free(r->device_id);
    free(r->module_id);
    r->device_id = r->module_id = NULL;
}

const char *dashapi_allow(enum dashapi_kind kind)
{
    return kind == DASHAPI_C2D ? "POST" : "GET";
}

static int copy_string(json_t *obj, const char *name, char *dst, size_t cap, char *why, size_t whylen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return ERR_OK;
    if (!json_is_string(v) || json_string_length(v) >= cap || strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(why, whylen, "%s must be a string of fewer than %zu bytes.", name, cap);
        return ERR_INVALID;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return ERR_OK;
}

static int parse_props(json_t *props, struct c2d_message *m, char *why, size_t whylen)
{
    if (!props || json_is_null(props))
        return ERR_OK;
    if (!json_is_object(props)) {
        snprintf(why, whylen, "properties must be an object of strings.");
        return ERR_INVALID;
    }
    const char *k;
    size_t kl;
    json_t *v;
    json_object_keylen_foreach(props, k, kl, v)
    {
        if (m->n_props >= C2D_MAX_PROPS) {
            snprintf(why, whylen, "At most %d properties.", C2D_MAX_PROPS);
            return ERR_INVALID;
        }
        /* strlen(k) != kl: a "\u0000" in the name, which would otherwise be cut there */
        if (kl == 0 || kl >= C2D_MAX_KEY || strlen(k) != kl || k[0] == '$' || strncasecmp(k, "iothub-", 7) == 0) {
            snprintf(why, whylen, "A property name is 1 to %d bytes and not a system name ($..., iothub-...).",
                     C2D_MAX_KEY - 1);
            return ERR_INVALID;
        }
        if (!json_is_string(v) || json_string_length(v) >= C2D_MAX_VALUE ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(why, whylen, "The value of property '%.64s' must be a string of fewer than %d bytes.", k,
                     C2D_MAX_VALUE);
            return ERR_INVALID;
        }
        struct c2d_prop *p = &m->props[m->n_props++];
        memcpy(p->key, k, kl + 1);
        memcpy(p->value, json_string_value(v), json_string_length(v) + 1);
    }
    return ERR_OK;
}

static void random_id(char *out, size_t cap)
{
    static uint64_t n;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, cap, "dashboard-%lld-%llu", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
             (unsigned long long)++n);
}

int dashapi_c2d_parse(const char *text, size_t len, struct c2d_message *m, json_t **holder, char *why,
                      size_t whylen)
{
    memset(m, 0, sizeof *m);
    *holder = NULL;
    json_error_t jerr;
    json_t *j = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!j || !json_is_object(j)) {
        json_decref(j);
        snprintf(why, whylen, "The body must be a JSON object with a \"body\" string.");
        return ERR_INVALID;
    }
    json_t *body = json_object_get(j, "body");
    if (!json_is_string(body)) {
        json_decref(j);
        snprintf(why, whylen, "\"body\" (the message text) is required and must be a string.");
        return ERR_INVALID;
    }
    if (json_string_length(body) > C2D_MAX_BODY) {
        json_decref(j);
        snprintf(why, whylen, "The message body is over %d bytes.", C2D_MAX_BODY);
        return ERR_TOO_BIG;
    }
    int rc = parse_props(json_object_get(j, "properties"), m, why, whylen);
    static const struct {
        const char *name;
        size_t off, cap;
    } fields[] = {
        {"messageId", offsetof(struct c2d_message, message_id), C2D_MAX_ID},
        {"correlationId", offsetof(struct c2d_message, correlation_id), C2D_MAX_ID},
        {"contentType", offsetof(struct c2d_message, content_type), C2D_MAX_ID},
        {"contentEncoding", offsetof(struct c2d_message, content_encoding), C2D_MAX_ID},
        {"ack", offsetof(struct c2d_message, ack), sizeof m->ack},
    };
    for (size_t i = 0; rc == ERR_OK && i < sizeof fields / sizeof fields[0]; i++)
        rc = copy_string(j, fields[i].name, (char *)m + fields[i].off, fields[i].cap, why, whylen);
    if (rc == ERR_OK && m->ack[0] && strcmp(m->ack, "none") && strcmp(m->ack, "positive") &&
        strcmp(m->ack, "negative") && strcmp(m->ack, "full")) {
        snprintf(why, whylen, "ack is one of none, positive, negative, full.");
        rc = ERR_INVALID;
    }
    json_t *exp = json_object_get(j, "expiryTimeUtc");
    if (rc == ERR_OK && exp && !json_is_null(exp)) {
        if (!json_is_integer(exp) || json_integer_value(exp) <= 0) {
            snprintf(why, whylen, "expiryTimeUtc is milliseconds since the epoch.");
            rc = ERR_INVALID;
        } else {
            m->expiry_ms = json_integer_value(exp);
        }
    }
    if (rc != ERR_OK) {
        json_decref(j);
        return rc;
    }
    if (!m->message_id[0])
        random_id(m->message_id, sizeof m->message_id);
    m->body = (const uint8_t *)json_string_value(body);
    m->body_len = json_string_length(body);
    *holder = j;
    return ERR_OK;
}

static int append_record(struct buf *out, const char *head, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text)
        return ERR_NOMEM;
    /* json_dumps escapes newlines in strings, so the data is one line. */
    int rc = buf_printf(out, "%sdata: %s\n\n", head, text);
    free(text);
    return rc;
}

int dashapi_sse_event(struct buf *out, const struct events_event *ev)
{
    char at[40], head[64];
    restapi_iso_ms(ev->at_ms, at, sizeof at);
    json_t *j = json_pack("{s:I,s:s,s:s,s:s?,s:s}", "id", (json_int_t)ev->id, "type", events_kind_name(ev->kind),
                          "at", at, "identity", ev->identity, "what", ev->what);
    if (j && ev->detail[0])
        json_object_set_new(j, "detail", json_string(ev->detail));
    if (j && ev->kind != EVENTS_CONNECTION)
        json_object_set_new(j, "status", json_integer(ev->status));
    if (j && ev->latency_ms >= 0)
        json_object_set_new(j, "latencyMs", json_integer(ev->latency_ms));
    snprintf(head, sizeof head, "id: %llu\nevent: hub\n", (unsigned long long)ev->id);
    return append_record(out, head, j);
}

int dashapi_sse_telemetry(struct buf *out, const struct eventlog_event *ev)
{
    char at[40];
    restapi_iso_ms(ev->enqueued_ms, at, sizeof at);
    json_t *j = json_pack("{s:s?,s:s?,s:i,s:I,s:s,s:I}", "deviceId", ev->device_id, "moduleId", ev->module_id,
                          "partition", ev->partition, "sequenceNumber", (json_int_t)ev->seq, "enqueuedTimeUtc", at,
                          "size", (json_int_t)ev->len);
    if (!j)
        return ERR_NOMEM;
    const struct {
        const char *name, *value;
    } sys[] = {{"messageId", ev->message_id},     {"correlationId", ev->correlation_id},
               {"contentType", ev->content_type}, {"contentEncoding", ev->content_encoding},
               {"userId", ev->user_id}};
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
        if (sys[i].value)
            json_object_set_new(j, sys[i].name, json_string(sys[i].value));
    json_t *props = json_object();
    for (size_t i = 0; props && i < ev->n_props; i++)
        json_object_set_new(props, ev->props[i].key, ev->props[i].value ? json_string(ev->props[i].value) : json_null());
    json_object_set_new(j, "properties", props ? props : json_null());
    size_t n = ev->len > DASHAPI_TELEMETRY_PREVIEW ? DASHAPI_TELEMETRY_PREVIEW : ev->len;
    json_t *text = json_stringn((const char *)ev->body, n);
    if (!text && n == DASHAPI_TELEMETRY_PREVIEW) /* cut inside a UTF-8 sequence: back off up to 3 bytes */
        for (size_t k = 1; !text && k <= 3 && k < n; k++)
            text = json_stringn((const char *)ev->body, n - k);
    if (text) {
        json_object_set_new(j, "body", text);
    } else {
        char *b64 = base64_encode(ev->body, n);
        json_object_set_new(j, "bodyBase64", b64 ? json_string(b64) : json_null()); /* as /emulator/telemetry */
        free(b64);
    }
    if (n < ev->len)
        json_object_set_new(j, "truncated", json_true());
    return append_record(out, "event: telemetry\n", j);
}
