/* restapi.c -- pure parts of the service REST surface: routes, method-body validation, error envelopes,
 * TimeSpan text, method-result body (see restapi.h). jansson for JSON; common/url for percent-decoding;
 * no I/O. Tests: tests/unit/test_restapi.c. */
#include "restapi.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "mjson.h"
#include "url.h"

#define RESTAPI_MAX_SEGS 6
#define RESTAPI_RESULT_MAX (16u * 1024u * 1024u) /* cap on a rendered method result */

/* ---- routes ---- */

struct seg {
    const char *p;
    size_t len;
};

static bool seg_is(const struct seg *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->p, lit, s->len) == 0;
}

/* Splits "/a/b/" into {"a","b",""}. Returns false for a path not starting with '/' or too many segments. */
static bool split_path(const char *path, size_t len, struct seg *segs, size_t *n)
{
    *n = 0;
    if (len == 0 || path[0] != '/')
        return false;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        if (*n == RESTAPI_MAX_SEGS)
            return false;
        segs[(*n)++] = (struct seg){path + start, i - start};
        start = i + 1;
    }
    return true;
}

static int decode_id(const struct seg *s, char **out)
{
    return url_decode(s->p, s->len, out, NULL);
}

/* Matches the segment shapes of restapi.h; ids are decoded into r. */
static int match_route(const struct seg *s, size_t n, struct restapi_route *r)
{
    enum restapi_route_kind k = RESTAPI_ROUTE_NONE;
    const struct seg *dev = NULL, *mod = NULL, *lock = NULL;
    if (n == 1 && seg_is(&s[0], "health"))
        k = RESTAPI_ROUTE_HEALTH;
    else if (n == 2 && seg_is(&s[0], "emulator") && seg_is(&s[1], "ca.pem"))
        k = RESTAPI_ROUTE_CA_PEM;
    else if (n == 2 && seg_is(&s[0], "emulator") && seg_is(&s[1], "telemetry"))
        k = RESTAPI_ROUTE_TELEMETRY;
    else if (n == 3 && seg_is(&s[0], "emulator") && seg_is(&s[1], "telemetry"))
        k = RESTAPI_ROUTE_TELEMETRY, dev = &s[2];
    else if (n == 2 && seg_is(&s[0], "emulator") && seg_is(&s[1], "consumergroups"))
        k = RESTAPI_ROUTE_CONSUMER_GROUPS;
    else if (n == 3 && seg_is(&s[0], "emulator") && seg_is(&s[1], "consumergroups"))
        k = RESTAPI_ROUTE_CONSUMER_GROUP, dev = &s[2];
    else if (n == 2 && seg_is(&s[0], "emulator") && seg_is(&s[1], "faults"))
        k = RESTAPI_ROUTE_FAULTS;
    else if (n == 3 && seg_is(&s[0], "emulator") && seg_is(&s[1], "faults"))
        k = RESTAPI_ROUTE_FAULTS, dev = &s[2];
    else if (n == 2 && seg_is(&s[0], "devices") && seg_is(&s[1], "query"))
        k = RESTAPI_ROUTE_QUERY, dev = &s[1];
    else if (n == 2 && seg_is(&s[0], "statistics") && seg_is(&s[1], "devices"))
        k = RESTAPI_ROUTE_STATS_DEVICES;
    else if (n == 2 && seg_is(&s[0], "statistics") && seg_is(&s[1], "service"))
        k = RESTAPI_ROUTE_STATS_SERVICE;
    else if (n == 3 && seg_is(&s[0], "jobs") && seg_is(&s[1], "v2") && seg_is(&s[2], "query"))
        k = RESTAPI_ROUTE_JOBS_QUERY;
    else if (n == 3 && seg_is(&s[0], "jobs") && seg_is(&s[1], "v2"))
        k = RESTAPI_ROUTE_JOB, dev = &s[2];
    else if (n == 4 && seg_is(&s[0], "jobs") && seg_is(&s[1], "v2") && seg_is(&s[3], "cancel"))
        k = RESTAPI_ROUTE_JOB_CANCEL, dev = &s[2];
    else if (n == 2 && seg_is(&s[0], "twins"))
        k = RESTAPI_ROUTE_TWIN, dev = &s[1];
    else if (n == 4 && seg_is(&s[0], "twins") && seg_is(&s[2], "modules"))
        k = RESTAPI_ROUTE_TWIN, dev = &s[1], mod = &s[3];
    else if (seg_is(&s[0], "devices") && (n == 1 || (n == 2 && s[1].len == 0)))
        k = RESTAPI_ROUTE_DEVICES;
    else if (n == 2 && seg_is(&s[0], "devices"))
        k = RESTAPI_ROUTE_DEVICE, dev = &s[1];
    else if (n == 3 && seg_is(&s[0], "twins") && seg_is(&s[2], "methods"))
        k = RESTAPI_ROUTE_METHOD, dev = &s[1];
    else if (n == 3 && seg_is(&s[0], "devices") && seg_is(&s[2], "commands"))
        k = RESTAPI_ROUTE_C2D_PURGE, dev = &s[1];
    else if (n == 4 && seg_is(&s[0], "devices") && seg_is(&s[2], "messages") && seg_is(&s[3], "events"))
        k = RESTAPI_ROUTE_D2C_EVENTS, dev = &s[1];
    else if (n >= 4 && n <= 6 && seg_is(&s[0], "devices") && seg_is(&s[2], "messages") &&
             (seg_is(&s[3], "deviceBound") || seg_is(&s[3], "devicebound"))) {
        if (n == 4)
            k = RESTAPI_ROUTE_C2D_RECEIVE;
        else if (n == 5 && s[4].len)
            k = RESTAPI_ROUTE_C2D_LOCK, lock = &s[4];
        else if (n == 6 && s[4].len && seg_is(&s[5], "abandon"))
            k = RESTAPI_ROUTE_C2D_ABANDON, lock = &s[4];
        dev = k != RESTAPI_ROUTE_NONE ? &s[1] : NULL;
    }
    else if (n >= 3 && n <= 4 && seg_is(&s[0], "devices") && seg_is(&s[2], "modules")) {
        dev = &s[1];
        mod = n == 4 && s[3].len ? &s[3] : NULL;
        k = mod ? RESTAPI_ROUTE_MODULE : RESTAPI_ROUTE_MODULES;
    } else if (n == 5 && seg_is(&s[0], "twins") && seg_is(&s[2], "modules") && seg_is(&s[4], "methods"))
        k = RESTAPI_ROUTE_METHOD, dev = &s[1], mod = &s[3];
    if ((dev && dev->len == 0) || (mod && mod->len == 0))
        return ERR_OK; /* an empty id: no route */
    int rc = ERR_OK;
    if (dev && (rc = decode_id(dev, &r->device_id)) != ERR_OK)
        return rc;
    if (mod && (rc = decode_id(mod, &r->module_id)) != ERR_OK)
        return rc;
    if (lock && (rc = decode_id(lock, &r->lock_token)) != ERR_OK)
        return rc;
    if (r->lock_token) { /* the ETag as sent back, with or without its quotes */
        size_t l = strlen(r->lock_token);
        if (l >= 2 && r->lock_token[0] == '"' && r->lock_token[l - 1] == '"') {
            memmove(r->lock_token, r->lock_token + 1, l - 2);
            r->lock_token[l - 2] = 0;
        }
    }
    r->kind = k;
    return ERR_OK;
}

/* top: decimal digits only, 1..RESTAPI_TOP_MAX. */
static void parse_top(const char *v, size_t len, struct restapi_route *r)
{
    long value = 0;
    r->top_invalid = true;
    if (len == 0 || len > 6)
        return;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return;
        value = value * 10 + (v[i] - '0');
    }
    if (value < 1 || value > RESTAPI_TOP_MAX)
        return;
    r->top = (int)value;
    r->top_invalid = false;
}

static void parse_query(const char *q, struct restapi_route *r)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = (size_t)(q + len - v);
        if (klen == strlen("api-version") && memcmp(q, "api-version", klen) == 0 && vlen > 0)
            r->has_api_version = true;
        else if (klen == 3 && memcmp(q, "top", 3) == 0)
            parse_top(v, vlen, r);
        else if (klen == 6 && memcmp(q, "reject", 6) == 0)
            r->reject = true;
        else if (klen == 7 && memcmp(q, "jobType", 7) == 0 && vlen < sizeof r->job_type)
            snprintf(r->job_type, sizeof r->job_type, "%.*s", (int)vlen, v);
        else if (klen == 9 && memcmp(q, "jobStatus", 9) == 0 && vlen < sizeof r->job_status)
            snprintf(r->job_status, sizeof r->job_status, "%.*s", (int)vlen, v);
        q += len;
        if (*q == '&')
            q++;
    }
}

int restapi_route_parse(const char *uri, struct restapi_route *out)
{
    memset(out, 0, sizeof *out);
    out->top = RESTAPI_TOP_DEFAULT;
    if (!uri)
        return ERR_OK;
    size_t plen = strcspn(uri, "?#");
    struct seg segs[RESTAPI_MAX_SEGS];
    size_t n;
    if (uri[plen] == '?')
        parse_query(uri + plen + 1, out);
    if (!split_path(uri, plen, segs, &n))
        return ERR_OK;
    int rc = match_route(segs, n, out);
    if (rc != ERR_OK)
        out->kind = RESTAPI_ROUTE_NONE;
    return rc;
}

void restapi_route_cleanup(struct restapi_route *r)
{
    if (!r)
        return;
    free(r->device_id);
    free(r->module_id);
    free(r->lock_token);
    r->device_id = r->module_id = r->lock_token = NULL;
}

const char *restapi_route_allow(enum restapi_route_kind kind)
{
    switch (kind) {
    case RESTAPI_ROUTE_HEALTH:
    case RESTAPI_ROUTE_CA_PEM:
    case RESTAPI_ROUTE_STATS_DEVICES:
    case RESTAPI_ROUTE_STATS_SERVICE:
    case RESTAPI_ROUTE_MODULES:
    case RESTAPI_ROUTE_JOBS_QUERY:
        return "GET";
    case RESTAPI_ROUTE_JOB:
        return "GET, PUT";
    case RESTAPI_ROUTE_JOB_CANCEL:
        return "POST";
    case RESTAPI_ROUTE_DEVICES:
        return "GET, POST"; /* POST: the bulk registry operation */
    case RESTAPI_ROUTE_METHOD:
    case RESTAPI_ROUTE_QUERY:
        return "POST";
    case RESTAPI_ROUTE_TWIN:
        return "GET, PATCH, PUT";
    case RESTAPI_ROUTE_DEVICE:
    case RESTAPI_ROUTE_MODULE:
        return "GET, PUT, DELETE";
    case RESTAPI_ROUTE_TELEMETRY:
        return "GET, DELETE";
    case RESTAPI_ROUTE_CONSUMER_GROUPS:
        return "GET";
    case RESTAPI_ROUTE_CONSUMER_GROUP:
        return "GET, PUT, DELETE";
    case RESTAPI_ROUTE_FAULTS:
        return "GET, POST, DELETE";
    case RESTAPI_ROUTE_C2D_PURGE:
    case RESTAPI_ROUTE_C2D_LOCK:
        return "DELETE";
    case RESTAPI_ROUTE_D2C_EVENTS:
    case RESTAPI_ROUTE_C2D_ABANDON:
        return "POST";
    case RESTAPI_ROUTE_C2D_RECEIVE:
        return "GET";
    default:
        return "";
    }
}

bool restapi_route_allows(enum restapi_route_kind kind, const char *method)
{
    if (!method || !*method)
        return false;
    const char *allow = restapi_route_allow(kind);
    size_t mlen = strlen(method);
    while (*allow) {
        size_t len = strcspn(allow, ",");
        if (len == mlen && memcmp(allow, method, len) == 0)
            return true;
        allow += len;
        while (*allow == ',' || *allow == ' ')
            allow++;
    }
    return false;
}

/* ---- errors ---- */

static const struct {
    int code;
    const char *name;
} restapi_codes[] = {
    {RESTAPI_INVALID_PROTOCOL_VERSION, "InvalidProtocolVersion"},
    {RESTAPI_ARGUMENT_INVALID, "ArgumentInvalid"},
    {RESTAPI_FORMAT_ERROR, "IotHubFormatError"},
    {RESTAPI_UNAUTHORIZED, "IotHubUnauthorizedAccess"},
    {RESTAPI_FORBIDDEN, "Forbidden"},
    {RESTAPI_QUOTA_EXCEEDED, "IotHubQuotaExceeded"},
    {RESTAPI_QUEUE_DEPTH, "DeviceMaximumQueueDepthExceeded"},
    {RESTAPI_DEVICE_NOT_FOUND, "DeviceNotFound"},
    {RESTAPI_MODULE_NOT_FOUND, "ModuleNotFound"},
    {RESTAPI_DEVICE_NOT_ONLINE, "DeviceNotOnline"},
    {RESTAPI_NOT_FOUND, "NotFound"},
    {RESTAPI_METHOD_NOT_ALLOWED, "MethodNotAllowed"},
    {RESTAPI_DEVICE_EXISTS, "DeviceAlreadyExists"},
    {RESTAPI_JOB_NOT_FOUND, "JobNotFound"},
    {RESTAPI_JOB_EXISTS, "JobAlreadyExists"},
    {RESTAPI_MODULE_EXISTS, "ModuleAlreadyExistsOnDevice"},
    {RESTAPI_MAX_PROPERTIES, "DeviceModelMaxPropertiesExceeded"},
    {RESTAPI_PRECONDITION_FAILED, "PreconditionFailed"},
    {RESTAPI_THROTTLED, "ThrottlingException"},
    {RESTAPI_MESSAGE_TOO_LARGE, "MessageTooLarge"},
    {RESTAPI_SERVER_ERROR, "ServerError"},
    {RESTAPI_SERVICE_UNAVAILABLE, "ServiceUnavailable"},
    {RESTAPI_GATEWAY_TIMEOUT, "GatewayTimeout"},
};

/* Decimal digits only, at most 9 of them, into *out. */
static bool parse_decimal(const char *v, long *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > 9)
        return false;
    long value = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        value = value * 10 + (v[i] - '0');
    }
    *out = value;
    return true;
}

int restapi_page_size(const char *value, int *out)
{
    long n = RESTAPI_QUERY_PAGE_DEFAULT;
    if (value && (!parse_decimal(value, &n) || n < 1))
        return ERR_INVALID;
    if (n > RESTAPI_QUERY_PAGE_MAX)
        n = RESTAPI_QUERY_PAGE_MAX; /* larger pages are served at the maximum, as a cap, not an error */
    *out = (int)n;
    return ERR_OK;
}

int restapi_continuation(const char *value, size_t *out)
{
    long n = 0;
    if (value && *value && !parse_decimal(value, &n))
        return ERR_INVALID;
    *out = (size_t)n;
    return ERR_OK;
}

const char *restapi_code_name(int code)
{
    for (size_t i = 0; i < sizeof restapi_codes / sizeof restapi_codes[0]; i++)
        if (restapi_codes[i].code == code)
            return restapi_codes[i].name;
    return "ServerError";
}

void restapi_error_vset(struct restapi_error *e, int code, enum restapi_envelope env, const char *fmt, va_list ap)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->envelope = env;
    e->info = RESTAPI_INFO_OMIT;
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void restapi_error_set(struct restapi_error *e, int code, enum restapi_envelope env, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    restapi_error_vset(e, code, env, fmt, ap);
    va_end(ap);
}

int restapi_timespan(int64_t seconds, char *out, size_t outlen)
{
    if (seconds < 0 || !out)
        return ERR_INVALID;
    int64_t days = seconds / 86400, rest = seconds % 86400;
    int n;
    if (days)
        n = snprintf(out, outlen, "%lld.%02d:%02d:%02d", (long long)days, (int)(rest / 3600),
                     (int)(rest % 3600 / 60), (int)(rest % 60));
    else
        n = snprintf(out, outlen, "%02d:%02d:%02d", (int)(rest / 3600), (int)(rest % 3600 / 60), (int)(rest % 60));
    return n < 0 || (size_t)n >= outlen ? ERR_INVALID : ERR_OK;
}

/* "<tracking>-G:0-TimeStamp:MM/dd/yyyy HH:mm:ss" (the hub's tracking text). */
static void tracking_text(const char *tracking, const struct tm *tm, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s-G:0-TimeStamp:%02d/%02d/%04d %02d:%02d:%02d", tracking, tm->tm_mon + 1,
             tm->tm_mday, tm->tm_year + 1900, tm->tm_hour, tm->tm_min, tm->tm_sec);
}

/* Dumps {"Message":message,"ExceptionMessage":exception} compactly, in that order. */
static char *outer_envelope(const char *message, const char *exception)
{
    json_t *o = json_object();
    char *text = NULL;
    if (!o || json_object_set_new(o, "Message", json_string(message)) ||
        json_object_set_new(o, "ExceptionMessage", json_string(exception)))
        goto out;
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(o);
    return text;
}

static json_t *info_json(const struct restapi_error *e)
{
    json_t *info = json_object();
    char span[32];
    if (info && e->info == RESTAPI_INFO_TIMEOUT && restapi_timespan(e->timeout_s, span, sizeof span) == ERR_OK &&
        json_object_set_new(info, "timeout", json_string(span))) {
        json_decref(info);
        return NULL;
    }
    return info;
}

/* Envelope B's inner object: errorCode, trackingId, message, [info], timestampUtc. */
static char *inner_b(const struct restapi_error *e, const char *track, const struct tm *tm, long nsec)
{
    char stamp[96];
    long ticks = nsec >= 0 && nsec < 1000000000L ? nsec / 100 : 0; /* .NET ticks: 7 digits */
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ", tm->tm_year + 1900, tm->tm_mon + 1,
             tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec, ticks);
    json_t *o = json_object();
    char *text = NULL;
    if (!o || json_object_set_new(o, "errorCode", json_integer(e->code)) ||
        json_object_set_new(o, "trackingId", json_string(track)) ||
        json_object_set_new(o, "message", json_string(e->message)))
        goto out;
    if (e->info != RESTAPI_INFO_OMIT && json_object_set_new(o, "info", info_json(e)))
        goto out;
    if (json_object_set_new(o, "timestampUtc", json_string(stamp)))
        goto out;
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(o);
    return text;
}

char *restapi_error_render(const struct restapi_error *e, const char *tracking, const struct timespec *when)
{
    struct tm tm;
    time_t sec = when->tv_sec;
    if (!gmtime_r(&sec, &tm))
        memset(&tm, 0, sizeof tm);
    char track[160];
    tracking_text(tracking, &tm, track, sizeof track);
    if (e->envelope == RESTAPI_ENVELOPE_B) {
        char *inner = inner_b(e, track, &tm, when->tv_nsec);
        char *text = inner ? outer_envelope(inner, "") : NULL;
        free(inner);
        return text;
    }
    struct buf msg;
    buf_init(&msg, sizeof e->message + 64);
    char *text = NULL;
    if (buf_printf(&msg, "ErrorCode:%s;%s", restapi_code_name(e->code), e->message) == ERR_OK) {
        char exception[200];
        snprintf(exception, sizeof exception, "Tracking ID:%s", track);
        char *m = buf_take_str(&msg);
        text = m ? outer_envelope(m, exception) : NULL;
        free(m);
    }
    buf_cleanup(&msg);
    return text;
}

/* ---- direct methods ---- */

bool restapi_method_name_is_valid(const char *name)
{
    if (!name || !*name)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr("$()<>@,;:\\\"/[]?={}", *p))
            return false;
    }
    return true;
}

void restapi_method_cleanup(struct restapi_method_call *c)
{
    if (!c)
        return;
    free(c->method_name);
    free(c->payload_buf);
    memset(c, 0, sizeof *c);
}

/* An optional integer member in [lo, hi]; integral reals are accepted. ERR_INVALID fills err. */
static int timeout_member(const json_t *body, const char *key, int def, int lo, int hi, int *out,
                          struct restapi_error *err)
{
    const json_t *v = json_object_get(body, key);
    *out = def;
    if (!v || json_is_null(v))
        return ERR_OK;
    if (!json_is_number(v) || (json_is_real(v) && json_real_value(v) > -1e9 && json_real_value(v) < 1e9 &&
                                json_real_value(v) != (double)(long long)json_real_value(v))) {
        restapi_error_set(err, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_B, "%s must be an integer.", key);
        return ERR_INVALID;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        restapi_error_set(err, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_B, "%s must be within [%d; %d].", key, lo,
                          hi);
        return ERR_INVALID;
    }
    *out = (int)d;
    return ERR_OK;
}

/* True when v holds a real anywhere (jansson caps parse depth at 2048, so the recursion is bounded). */
static bool has_real(const json_t *v)
{
    if (json_is_real(v))
        return true;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (has_real(json_array_get(v, i)))
                return true;
    } else if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
            if (has_real(m))
                return true;
    }
    return false;
}

/* Compact JSON of any value, with the fewest real digits (15..17) that reproduce every number exactly,
 * so 0.1 stays 0.1 rather than jansson's default 0.10000000000000001. Without reals the first dump is
 * exact, and the reparse that checks the round trip is skipped. */
static char *dump_compact(const json_t *v)
{
    bool reals = has_real(v);
    for (int prec = 15; prec <= 17; prec++) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(prec));
        if (!s || !reals || prec == 17)
            return s;
        json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        bool same = back && json_equal(back, (json_t *)v);
        json_decref(back);
        if (same)
            return s;
        free(s);
    }
    return NULL;
}

static int method_name_member(const json_t *body, struct restapi_method_call *out, struct restapi_error *err)
{
    const json_t *v = json_object_get(body, "methodName");
    if (!v || json_is_null(v)) {
        restapi_error_set(err, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_B, "methodName is required.");
        return ERR_INVALID;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !restapi_method_name_is_valid(json_string_value(v))) {
        restapi_error_set(err, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_B,
                          "methodName must be a non-empty string of printable US-ASCII without $()<>@,;:\\\"/[]?={} "
                          "space or tab.");
        return ERR_INVALID;
    }
    out->method_name = strdup(json_string_value(v));
    return out->method_name ? ERR_OK : ERR_NOMEM;
}

static int payload_member(const json_t *body, struct restapi_method_call *out, struct restapi_error *err)
{
    const json_t *v = json_object_get(body, "payload");
    if (!v || json_is_null(v))
        return ERR_OK;
    out->payload = out->payload_buf = dump_compact(v);
    if (!out->payload)
        return ERR_NOMEM;
    out->payload_len = strlen(out->payload);
    if (out->payload_len > RESTAPI_MAX_PAYLOAD) {
        restapi_error_set(err, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_B,
                          "The method payload is %zu bytes; the maximum is %u bytes.", out->payload_len,
                          RESTAPI_MAX_PAYLOAD);
        return ERR_INVALID;
    }
    return ERR_OK;
}

int restapi_method_parse_tree(const char *body, size_t len, struct restapi_method_call *out, struct restapi_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    int rc = ERR_INVALID;
    if (!j || !json_is_object(j)) {
        restapi_error_set(err, RESTAPI_FORMAT_ERROR, RESTAPI_ENVELOPE_B, "%s",
                          j ? "The request body must be a JSON object." : "The request body is not valid JSON.");
        goto out;
    }
    if ((rc = method_name_member(j, out, err)) != ERR_OK)
        goto out;
    if ((rc = timeout_member(j, "responseTimeoutInSeconds", 30, 5, 300, &out->response_timeout_s, err)) != ERR_OK)
        goto out;
    if ((rc = timeout_member(j, "connectTimeoutInSeconds", 0, 0, 300, &out->connect_timeout_s, err)) != ERR_OK)
        goto out;
    rc = payload_member(j, out, err);
out:
    json_decref(j);
    if (rc != ERR_OK)
        restapi_method_cleanup(out);
    return rc;
}

/* The fast path's verdict on a body mjson_method_scan took: ERR_OK (out filled, the payload pointing into the
 * body when it is already compact), ERR_NOMEM, or ERR_NEED_MORE: not sure (a member to refuse, or a real,
 * or an escape), the tree path decides and writes the error. */
static int method_fast(const struct mjson_method *m, struct restapi_method_call *out)
{
    const struct mjson_member *rto = &m->response_timeout, *cto = &m->connect_timeout, *pl = &m->payload;
    if (m->method_name.kind != MJSON_STRING || (rto->kind != MJSON_ABSENT && rto->kind != MJSON_NULL &&
                                                (rto->kind != MJSON_INTEGER || rto->integer < 5 || rto->integer > 300)) ||
        (cto->kind != MJSON_ABSENT && cto->kind != MJSON_NULL &&
         (cto->kind != MJSON_INTEGER || cto->integer < 0 || cto->integer > 300)))
        return ERR_NEED_MORE;
    out->method_name = strndup((const char *)m->method_name.p + 1, m->method_name.len - 2);
    if (!out->method_name)
        return ERR_NOMEM;
    if (!restapi_method_name_is_valid(out->method_name))
        return ERR_NEED_MORE;
    out->response_timeout_s = rto->kind == MJSON_INTEGER ? (int)rto->integer : 30;
    out->connect_timeout_s = cto->kind == MJSON_INTEGER ? (int)cto->integer : 0;
    if (pl->kind == MJSON_ABSENT || pl->kind == MJSON_NULL)
        return ERR_OK;
    if (!pl->spaced) {
        out->payload = (const char *)pl->p; /* already jansson's compact form: no copy */
        out->payload_len = pl->len;
    } else {
        out->payload_buf = malloc(pl->len + 1);
        if (!out->payload_buf)
            return ERR_NOMEM;
        out->payload_len = mjson_compact(pl->p, pl->len, (uint8_t *)out->payload_buf);
        out->payload_buf[out->payload_len] = '\0';
        out->payload = out->payload_buf;
    }
    return out->payload_len > RESTAPI_MAX_PAYLOAD ? ERR_NEED_MORE : ERR_OK;
}

int restapi_method_parse(const char *body, size_t len, struct restapi_method_call *out, struct restapi_error *err)
{
    struct mjson_method m;
    memset(out, 0, sizeof *out);
    if (mjson_method_scan((const uint8_t *)body, len, &m)) {
        int rc = method_fast(&m, out);
        if (rc == ERR_OK)
            return ERR_OK;
        restapi_method_cleanup(out);
        if (rc == ERR_NOMEM)
            return rc;
    }
    return restapi_method_parse_tree(body, len, out, err);
}

/* ---- JSON validation (device answers; no tree, no allocation) ---- */

static size_t skip_ws(const uint8_t *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* The 4 hex digits at p[*i..] as a code unit, or -1. */
static long hex4(const uint8_t *p, size_t len, size_t *i)
{
    if (len - *i < 4)
        return -1;
    long v = 0;
    for (size_t k = 0; k < 4; k++) {
        uint8_t c = p[*i + k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    *i += 4;
    return v;
}

/* A \uXXXX escape after the 'u' at p[*i - 1]; a high surrogate must be followed by an escaped low one and a
 * lone low surrogate is refused (as jansson does). \u0000 is accepted. */
static bool scan_u_escape(const uint8_t *p, size_t len, size_t *i)
{
    long u = hex4(p, len, i);
    if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
        return false;
    if (u < 0xd800 || u > 0xdbff)
        return true;
    if (len - *i < 2 || p[*i] != '\\' || p[*i + 1] != 'u')
        return false;
    *i += 2;
    u = hex4(p, len, i);
    return u >= 0xdc00 && u <= 0xdfff;
}

/* A string starting at the quote p[*i]; on success *i is past the closing quote. */
static bool scan_string(const uint8_t *p, size_t len, size_t *i)
{
    size_t j = *i + 1;
    while (j < len) {
        j += mjson_plain_run(p + j, len - j);
        if (j == len)
            break;
        uint8_t c = p[j];
        if (c == '"') {
            *i = j + 1;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (++j == len)
                return false;
            c = p[j++];
            if (c == 'u') {
                if (!scan_u_escape(p, len, &j))
                    return false;
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return false;
            }
        } else if (c < 0x80) {
            j++;
        } else {
            size_t n = mjson_utf8_seq(p + j, len - j);
            if (!n)
                return false;
            j += n;
        }
    }
    return false;
}

static size_t scan_digits(const uint8_t *p, size_t len, size_t i)
{
    while (i < len && p[i] >= '0' && p[i] <= '9')
        i++;
    return i;
}

/* A number by the RFC 8259 grammar (any magnitude); on success *i is past it. */
static bool scan_number(const uint8_t *p, size_t len, size_t *i)
{
    size_t j = *i, k;
    if (j < len && p[j] == '-')
        j++;
    if (j < len && p[j] == '0')
        j++;
    else if ((k = scan_digits(p, len, j)) > j)
        j = k;
    else
        return false;
    if (j < len && p[j] == '.') {
        if ((k = scan_digits(p, len, j + 1)) == j + 1)
            return false;
        j = k;
    }
    if (j < len && (p[j] == 'e' || p[j] == 'E')) {
        j++;
        if (j < len && (p[j] == '+' || p[j] == '-'))
            j++;
        if ((k = scan_digits(p, len, j)) == j)
            return false;
        j = k;
    }
    *i = j;
    return true;
}

static bool scan_literal(const uint8_t *p, size_t len, size_t *i, const char *word, size_t n)
{
    if (len - *i < n || memcmp(p + *i, word, n) != 0)
        return false;
    *i += n;
    return true;
}

/* A scalar at p[*i] (not whitespace, not a bracket); on success *i is past it. */
static bool scan_scalar(const uint8_t *p, size_t len, size_t *i)
{
    switch (p[*i]) {
    case '"':
        return scan_string(p, len, i);
    case 't':
        return scan_literal(p, len, i, "true", 4);
    case 'f':
        return scan_literal(p, len, i, "false", 5);
    case 'n':
        return scan_literal(p, len, i, "null", 4);
    default:
        return scan_number(p, len, i);
    }
}

enum json_want { WANT_VALUE, WANT_KEY, WANT_AFTER };

bool restapi_json_is_valid(const uint8_t *p, size_t len)
{
    uint8_t is_object[RESTAPI_JSON_MAX_DEPTH / 8] = {0}; /* one bit per open container */
    size_t depth = 0, i = 0;
    enum json_want want = WANT_VALUE;
    if (!p)
        return false;
    for (;;) {
        i = skip_ws(p, len, i);
        if (want == WANT_AFTER && depth == 0)
            return i == len;
        if (i == len)
            return false;
        uint8_t c = p[i];
        if (want == WANT_KEY) {
            if (c != '"' || !scan_string(p, len, &i))
                return false;
            i = skip_ws(p, len, i);
            if (i == len || p[i] != ':')
                return false;
            i++;
            want = WANT_VALUE;
        } else if (want == WANT_AFTER) {
            bool obj = is_object[(depth - 1) / 8] >> ((depth - 1) % 8) & 1;
            i++;
            if (c == ',')
                want = obj ? WANT_KEY : WANT_VALUE;
            else if (c == (obj ? '}' : ']'))
                depth--;
            else
                return false;
        } else if (c == '{' || c == '[') {
            if (depth == RESTAPI_JSON_MAX_DEPTH)
                return false;
            uint8_t bit = (uint8_t)(1u << (depth % 8));
            is_object[depth / 8] = (uint8_t)(c == '{' ? is_object[depth / 8] | bit : is_object[depth / 8] & ~bit);
            depth++;
            i = skip_ws(p, len, i + 1);
            if (i < len && p[i] == (c == '{' ? '}' : ']')) {
                i++;
                depth--;
                want = WANT_AFTER;
            } else {
                want = c == '{' ? WANT_KEY : WANT_VALUE;
            }
        } else {
            if (!scan_scalar(p, len, &i))
                return false;
            want = WANT_AFTER;
        }
    }
}

/* The bytes as a JSON string literal, invalid UTF-8 replaced by U+FFFD. Malloc'd, or NULL. */
static char *json_string_lossy(const uint8_t *p, size_t len)
{
    struct buf b;
    buf_init(&b, RESTAPI_RESULT_MAX);
    char *text = NULL;
    /* Valid runs are copied whole (one append per run, not per character: this loop was a third of
     * fuzz_json_check's time); each invalid byte becomes U+FFFD. */
    for (size_t i = 0; i < len;) {
        size_t end = i, n = 0;
        while (end < len && (p[end] < 0x80 || (n = mjson_utf8_seq(p + end, len - end)) != 0))
            end += p[end] < 0x80 ? 1 : n;
        if (buf_append(&b, p + i, end - i) || (end < len && buf_append(&b, "\xef\xbf\xbd", 3)))
            goto out;
        i = end < len ? end + 1 : end;
    }
    json_t *s = json_stringn(b.len ? (const char *)b.data : "", b.len);
    if (s)
        text = json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(s);
out:
    buf_cleanup(&b);
    return text;
}

size_t restapi_method_result_prefix(int status, char out[RESTAPI_RESULT_PREFIX_MAX])
{
    memcpy(out, "{\"status\":", 10);
    size_t n = 10 + buf_format_int(out + 10, status);
    memcpy(out + n, ",\"payload\":", 11);
    return n + 11;
}

char *restapi_method_result(int status, const uint8_t *body, size_t len, size_t *out_len)
{
    struct buf b;
    buf_init(&b, RESTAPI_RESULT_MAX);
    char *lossy = NULL, *text = NULL;
    bool valid = len && restapi_json_is_valid(body, len);
    char prefix[RESTAPI_RESULT_PREFIX_MAX];
    if (buf_append(&b, prefix, restapi_method_result_prefix(status, prefix)))
        goto out;
    if (len == 0) {
        if (buf_append_str(&b, "null"))
            goto out;
    } else if (valid) {
        if (buf_append(&b, body, len))
            goto out;
    } else {
        lossy = json_string_lossy(body, len);
        if (!lossy || buf_append_str(&b, lossy))
            goto out;
    }
    if (buf_append_byte(&b, '}'))
        goto out;
    if (out_len)
        *out_len = b.len;
    text = buf_take_str(&b);
out:
    free(lossy);
    buf_cleanup(&b);
    return text;
}

void restapi_iso_ms(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03dZ", (int)(ms % 1000));
}
