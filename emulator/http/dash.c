/* dash.c -- the live dashboard's HTTP side (see dash.h): static files, the session, the stats, the C2D send
 * and the Server-Sent Events streams. A stream is an MHD response from a content reader: with nothing to
 * send the reader suspends its connection, and a new event resumes it. The dash subscribes to the hub's feed
 * and to the event log only while a stream is open, so it costs nothing when nobody watches. */
#include "dash.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "auth.h"
#include "browser.h"
#include "buf.h"
#include "c2d.h"
#include "dashapi.h"
#include "err.h"
#include "eventlog.h"
#include "events.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "rest_internal.h" /* rest_error_text: the hub's error body, as the REST routes make it */
#include "restapi.h"
#include "sas.h"
#include "telemetry.h"
#include "url.h"

#define DASH_JSON "application/json; charset=utf-8"
#define DASH_STREAM_MAX (1024u * 1024u)  /* a stream's unsent text; past it the stream ends (the page reconnects) */
#define DASH_MAX_STREAMS 32
#define DASH_KEEPALIVE_MS 15000          /* an SSE comment this often: proxies keep the stream, dead peers show */
#define DASH_REPLAY_DEFAULT 100          /* events replayed to a new stream without ?since= */
#define DASH_TOKEN_S 3600                /* the session token's lifetime */

/* The page's files, generated at build time from emulator/dashboard/ (emulator/dashboard/CMakeLists.txt). */
int dashboard_asset(const char *name, const unsigned char **data, size_t *len);

struct dash_stream {
    struct dash *d;
    struct MHD_Connection *conn;
    struct buf out;
    bool suspended, ending;
    struct dash_stream *prev, *next;
};

struct dash {
    struct dash_config cfg;
    char *host_name, *hub_name;
    struct dash_stream *streams;
    size_t n_streams;
    bool subscribed, closing;
    struct loop_timer *keepalive;
};

struct dash *dash_new(const struct dash_config *cfg)
{
    struct dash *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cfg = *cfg;
    d->host_name = strdup(cfg->host_name ? cfg->host_name : "127.0.0.1");
    d->hub_name = strdup(cfg->hub_name ? cfg->hub_name : "iothub");
    if (!d->host_name || !d->hub_name) {
        dash_free(d);
        return NULL;
    }
    d->cfg.host_name = d->host_name;
    d->cfg.hub_name = d->hub_name;
    return d;
}

static struct eventlog *event_log(struct dash *d)
{
    return d->cfg.telemetry ? telemetry_log(d->cfg.telemetry) : NULL;
}

static void on_hub_event(void *ctx, const struct events_event *ev);
static void on_telemetry(void *ctx, int partition, const struct eventlog_event *ev);
static void on_keepalive(struct loop *l, void *ctx);

/* Listens to the hub and the event log while at least one stream is open. */
static void subscribe(struct dash *d, bool on)
{
    if (on == d->subscribed)
        return;
    d->subscribed = on;
    struct eventlog *log = event_log(d);
    if (on) {
        if (d->cfg.events && events_subscribe(d->cfg.events, on_hub_event, d) != ERR_OK)
            log_warn("dashboard: too many subscribers of the hub's events");
        if (log && eventlog_listen(log, on_telemetry, d) != ERR_OK)
            log_warn("dashboard: cannot listen to the event log");
        d->keepalive = loop_timer_add(d->cfg.loop, DASH_KEEPALIVE_MS, on_keepalive, d);
    } else {
        if (d->cfg.events)
            events_unsubscribe(d->cfg.events, on_hub_event, d);
        if (log)
            eventlog_unlisten(log, on_telemetry, d);
        loop_timer_cancel(d->cfg.loop, d->keepalive);
        d->keepalive = NULL;
    }
}

void dash_free(struct dash *d)
{
    if (!d)
        return;
    while (d->streams) { /* only when MHD never released them (it was not stopped first) */
        struct dash_stream *s = d->streams;
        d->streams = s->next;
        s->d = NULL;
    }
    subscribe(d, false);
    free(d->host_name);
    free(d->hub_name);
    free(d);
}

bool dash_owns(const char *uri)
{
    struct dashapi_route rt;
    dashapi_route_parse(uri, &rt);
    bool mine = rt.kind != DASHAPI_NONE;
    dashapi_route_cleanup(&rt);
    return mine;
}

size_t dash_body_max(void)
{
    return DASHAPI_C2D_BODY_MAX;
}

size_t dash_streams(const struct dash *d)
{
    return d ? d->n_streams : 0;
}

/* ---- answers ---- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                              const char *ctype, const char *errorcode, const char *allow)
{
    struct MHD_Response *resp = len ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
                                    : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (!len)
        free(body);
    bool ok = (!ctype || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) == MHD_YES) &&
              (!errorcode || MHD_add_response_header(resp, "iothub-errorcode", errorcode) == MHD_YES) &&
              (!allow || MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) == MHD_YES) &&
              MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
              MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES;
    enum MHD_Result ret = ok ? MHD_queue_response(conn, status, resp) : MHD_NO;
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result answer_json(struct MHD_Connection *conn, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text)
        return MHD_NO;
    return answer(conn, status, text, strlen(text), DASH_JSON, NULL, NULL);
}

/* The hub's error shape (Envelope A) with the iothub-errorcode header. */
static enum MHD_Result answer_error(struct MHD_Connection *conn, int code, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result answer_error(struct MHD_Connection *conn, int code, const char *allow, const char *fmt, ...)
{
    struct restapi_error e;
    va_list ap;
    va_start(ap, fmt);
    restapi_error_vset(&e, code, RESTAPI_ENVELOPE_A, fmt, ap);
    va_end(ap);
    char *body = rest_error_text(&e);
    if (!body)
        return MHD_NO;
    return answer(conn, (unsigned)(code / 1000), body, strlen(body), DASH_JSON, restapi_code_name(code), allow);
}

/* ---- access ---- */

static bool peer_is_loopback(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* A page on this machine, over a loopback-bound listener, from a same-origin request: no key needed. The Host
 * and Origin rule is browser.h's, with only the loopback names for the Host. */
static bool session_open(struct dash *d, struct MHD_Connection *conn, const char **why)
{
    struct browser_headers h;
    browser_headers_read(conn, &h);
    if (!d->cfg.open)
        *why = "the emulator listens beyond loopback (--bind), so the page needs the iothubowner key";
    else if (!peer_is_loopback(conn))
        *why = "the request does not come from this machine";
    else if (!browser_host_is_loopback(h.host))
        *why = "the page was not opened as localhost, 127.0.0.1 or [::1]";
    else if ((*why = browser_cross_site(&h)) == NULL)
        return true;
    return false;
}

static bool authorized(struct dash *d, struct MHD_Connection *conn, char *why, size_t whylen)
{
    const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return auth_check_service(d->cfg.auth, authz, AUTH_SERVICE_CONNECT, loop_wall_s(d->cfg.loop),
                              d->cfg.token_skew_s, why, whylen) == ERR_OK;
}

/* ---- routes ---- */

static const char *asset_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
                 {".png", "image/png"},                 {".ico", "image/x-icon"}};
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static enum MHD_Result route_asset(struct MHD_Connection *conn, const char *name)
{
    const unsigned char *data = NULL;
    size_t len = 0;
    if (!name[0] || dashboard_asset(name, &data, &len) != ERR_OK)
        return answer_error(conn, RESTAPI_NOT_FOUND, NULL, "No dashboard file '%s'.", name);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    /* No inline script or style, nothing from elsewhere: the page talks to this emulator only. */
    bool ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, asset_type(name)) == MHD_YES &&
              MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES &&
              MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES &&
              MHD_add_response_header(resp, "X-Frame-Options", "DENY") == MHD_YES &&
              MHD_add_response_header(resp, "Content-Security-Policy",
                                      "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                      "form-action 'self'; frame-ancestors 'none'") == MHD_YES &&
              MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") == MHD_YES;
    enum MHD_Result ret = ok ? MHD_queue_response(conn, MHD_HTTP_OK, resp) : MHD_NO;
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result route_session(struct dash *d, struct MHD_Connection *conn)
{
    const char *why = NULL;
    bool open = session_open(d, conn, &why);
    json_t *j = json_pack("{s:b,s:s,s:s}", "open", open, "hostName", d->host_name, "hubName", d->hub_name);
    if (!j)
        return MHD_NO;
    if (!open) {
        json_object_set_new(j, "reason", json_string(why));
        return answer_json(conn, MHD_HTTP_OK, j);
    }
    const char *key = auth_policy_key(d->cfg.auth, "iothubowner");
    uint64_t expiry = (uint64_t)loop_wall_s(d->cfg.loop) + DASH_TOKEN_S;
    char *token = NULL;
    if (!key || sas_build(d->host_name, key, expiry, "iothubowner", &token) != ERR_OK) {
        json_decref(j);
        return answer_error(conn, RESTAPI_SERVER_ERROR, NULL, "Cannot sign a session token.");
    }
    json_object_set_new(j, "policy", json_string("iothubowner"));
    json_object_set_new(j, "token", json_string(token));
    json_object_set_new(j, "expiresOn", json_integer((json_int_t)expiry));
    free(token);
    return answer_json(conn, MHD_HTTP_OK, j);
}

static json_t *partitions_json(struct eventlog *log)
{
    json_t *arr = json_array();
    for (int p = 0; arr && log && p < eventlog_partitions(log); p++) {
        struct eventlog_partition_info pi;
        eventlog_partition_info(log, p, &pi);
        json_array_append_new(arr, json_pack("{s:i,s:I,s:I,s:I,s:b}", "partition", p, "beginSequenceNumber",
                                             (json_int_t)pi.begin_seq, "lastSequenceNumber", (json_int_t)pi.last_seq,
                                             "lastEnqueuedTimeMs", (json_int_t)pi.last_ms, "empty", pi.empty));
    }
    return arr;
}

static enum MHD_Result route_stats(struct dash *d, struct MHD_Connection *conn)
{
    struct hub_stats st;
    memset(&st, 0, sizeof st);
    hub_get_stats(d->cfg.hub, &st);
    struct eventlog *log = event_log(d);
    json_t *groups = json_array();
    for (size_t i = 0; groups && log && i < eventlog_group_count(log); i++)
        json_array_append_new(groups, json_string(eventlog_group_at(log, i)));
    json_t *events = json_object();
    for (int k = 0; events && k < EVENTS_KINDS; k++)
        json_object_set_new(events, events_kind_name((enum events_kind)k),
                            json_integer((json_int_t)events_count(d->cfg.events, (enum events_kind)k)));
    json_t *j = json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:{s:s,s:i,s:I,s:I,s:o,s:o},s:I,s:I}", "hubName", d->hub_name,
        "hostName", d->host_name, "devices", (json_int_t)registry_device_count(d->cfg.reg), "connections",
        (json_int_t)st.connections, "devicesConnected", (json_int_t)st.devices_connected, "methodListeners",
        (json_int_t)st.method_listeners, "desiredListeners", (json_int_t)st.desired_listeners, "callsPending",
        (json_int_t)st.calls_pending, "callsTotal", (json_int_t)st.calls_total, "telemetryReceived",
        (json_int_t)(d->cfg.telemetry ? telemetry_total(d->cfg.telemetry) : 0), "events",
        events ? events : json_object(), "eventLog", "name", d->hub_name, "partitionCount",
        log ? eventlog_partitions(log) : 0, "retained", (json_int_t)(log ? eventlog_count(log) : 0), "bytes",
        (json_int_t)(log ? eventlog_bytes(log) : 0), "partitions", partitions_json(log), "consumerGroups",
        groups ? groups : json_array(), "streams", (json_int_t)d->n_streams, "lastEventId",
        (json_int_t)events_last_id(d->cfg.events));
    return j ? answer_json(conn, MHD_HTTP_OK, j) : answer_error(conn, RESTAPI_SERVER_ERROR, NULL, "Out of memory.");
}

static enum MHD_Result route_c2d(struct dash *d, struct MHD_Connection *conn, const struct dashapi_route *rt,
                                 const uint8_t *body, size_t len)
{
    if (!d->cfg.c2d)
        return answer_error(conn, RESTAPI_NOT_FOUND, NULL, "Cloud-to-device messages are not available.");
    /* An id longer than the registry allows names no identity: answered as unknown here, before its encoded
     * form could outgrow the address buffer (a cut address would be refused as a bad 'to'). */
    if (strlen(rt->device_id) > REGISTRY_MAX_ID)
        return answer_error(conn, RESTAPI_DEVICE_NOT_FOUND, NULL, "%.*s...", 64, rt->device_id);
    if (rt->module_id && strlen(rt->module_id) > REGISTRY_MAX_ID)
        return registry_find(d->cfg.reg, rt->device_id, NULL)
                   ? answer_error(conn, RESTAPI_MODULE_NOT_FOUND, NULL, "%s/%.*s...", rt->device_id, 64, rt->module_id)
                   : answer_error(conn, RESTAPI_DEVICE_NOT_FOUND, NULL, "%s", rt->device_id);
    struct c2d_message m;
    json_t *holder = NULL;
    char why[256];
    int rc = dashapi_c2d_parse((const char *)body, len, &m, &holder, why, sizeof why);
    if (rc == ERR_TOO_BIG)
        return answer_error(conn, RESTAPI_MESSAGE_TOO_LARGE, NULL, "%s", why);
    if (rc != ERR_OK)
        return answer_error(conn, RESTAPI_ARGUMENT_INVALID, NULL, "%s", why);
    /* c2d_send takes the hub's address form; its ids are percent-encoded (3 bytes each at most). */
    char *dev = url_encode(rt->device_id, strlen(rt->device_id));
    char *mod = rt->module_id ? url_encode(rt->module_id, strlen(rt->module_id)) : NULL;
    char to[2 * 3 * REGISTRY_MAX_ID + 64];
    to[0] = '\0';
    if (dev && (!rt->module_id || mod))
        snprintf(to, sizeof to, "/devices/%s%s%s/messages/devicebound", dev, mod ? "/modules/" : "", mod ? mod : "");
    free(dev);
    free(mod);
    if (!to[0]) {
        json_decref(holder);
        return answer_error(conn, RESTAPI_SERVER_ERROR, NULL, "Out of memory.");
    }
    rc = c2d_send(d->cfg.c2d, to, &m, c2d_wall_ms(), why, sizeof why);
    json_t *ok = rc == ERR_OK ? json_pack("{s:s}", "messageId", m.message_id) : NULL;
    json_decref(holder);
    switch (rc) {
    case ERR_OK:
        return answer_json(conn, MHD_HTTP_CREATED, ok);
    case ERR_NOT_FOUND:
        return rt->module_id && registry_find(d->cfg.reg, rt->device_id, NULL)
                   ? answer_error(conn, RESTAPI_MODULE_NOT_FOUND, NULL, "%s/%s", rt->device_id, rt->module_id)
                   : answer_error(conn, RESTAPI_DEVICE_NOT_FOUND, NULL, "%s", rt->device_id);
    case ERR_TOO_BIG:
        return answer_error(conn, strstr(why, "queue") ? RESTAPI_QUEUE_DEPTH : RESTAPI_MESSAGE_TOO_LARGE, NULL, "%s",
                            why);
    case ERR_INVALID:
        return answer_error(conn, RESTAPI_ARGUMENT_INVALID, NULL, "%s", why);
    default:
        return answer_error(conn, RESTAPI_SERVER_ERROR, NULL, "%s", why);
    }
}

/* ---- streams ---- */

static void stream_wake(struct dash_stream *s)
{
    if (!s->suspended)
        return;
    s->suspended = false;
    MHD_resume_connection(s->conn);
    if (s->d->cfg.wake)
        s->d->cfg.wake(s->d->cfg.wake_ctx);
}

/* Queues text on every stream; a stream that cannot take it ends (the page reconnects with Last-Event-ID). */
static void broadcast(struct dash *d, const struct buf *text)
{
    for (struct dash_stream *s = d->streams; s; s = s->next) {
        if (s->ending)
            continue;
        if (buf_append(&s->out, text->data, text->len) != ERR_OK) {
            log_info("dashboard: a stream fell %u bytes behind; it ends", DASH_STREAM_MAX);
            s->ending = true;
        }
        stream_wake(s);
    }
}

static void on_hub_event(void *ctx, const struct events_event *ev)
{
    struct dash *d = ctx;
    struct buf text;
    buf_init(&text, DASH_STREAM_MAX);
    if (dashapi_sse_event(&text, ev) == ERR_OK)
        broadcast(d, &text);
    buf_cleanup(&text);
}

static void on_telemetry(void *ctx, int partition, const struct eventlog_event *ev)
{
    struct dash *d = ctx;
    (void)partition;
    if (!ev)
        return;
    struct buf text;
    buf_init(&text, DASH_STREAM_MAX);
    if (dashapi_sse_telemetry(&text, ev) == ERR_OK)
        broadcast(d, &text);
    buf_cleanup(&text);
}

static void on_keepalive(struct loop *l, void *ctx)
{
    struct dash *d = ctx;
    struct buf text = {.data = (uint8_t *)": keep-alive\n\n", .len = 14};
    broadcast(d, &text);
    d->keepalive = loop_timer_add(l, DASH_KEEPALIVE_MS, on_keepalive, d);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct dash_stream *s = cls;
    (void)pos;
    if (s->out.len) {
        size_t n = s->out.len < max ? s->out.len : max;
        memcpy(buf, s->out.data, n);
        buf_consume(&s->out, n);
        return (ssize_t)n;
    }
    if (s->ending || !s->d || s->d->closing)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send: park the connection until an event (or the keep-alive) resumes it. */
    MHD_suspend_connection(s->conn);
    s->suspended = true;
    return 0;
}

static void stream_free(void *cls)
{
    struct dash_stream *s = cls;
    struct dash *d = s->d;
    if (d) {
        if (s->prev)
            s->prev->next = s->next;
        else
            d->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        d->n_streams--;
        if (!d->streams)
            subscribe(d, false);
    }
    buf_cleanup(&s->out);
    free(s);
}

static enum MHD_Result route_events(struct dash *d, struct MHD_Connection *conn, const struct dashapi_route *rt)
{
    if (d->closing)
        return answer_error(conn, RESTAPI_SERVICE_UNAVAILABLE, NULL, "The emulator is shutting down.");
    /* A suspended stream notices its reader left only at its next write (the keep-alive), so a page reloaded
     * many times leaves streams nobody reads for a while: past DASH_MAX_STREAMS the oldest one ends, so the
     * newest page always gets its stream. Ended streams that MHD has not let go yet are bounded too. */
    if (d->n_streams >= 2 * DASH_MAX_STREAMS)
        return answer_error(conn, RESTAPI_THROTTLED, NULL, "At most %d dashboard streams at a time.", DASH_MAX_STREAMS);
    struct dash_stream *oldest = NULL;
    size_t live = 0;
    for (struct dash_stream *o = d->streams; o; o = o->next)
        if (!o->ending) {
            live++;
            oldest = o; /* new streams go first: the last live one is the oldest */
        }
    if (live >= DASH_MAX_STREAMS) {
        log_info("dashboard: %d streams open; the oldest ends", DASH_MAX_STREAMS);
        oldest->ending = true;
        stream_wake(oldest);
    }
    uint64_t since = events_last_id(d->cfg.events) > DASH_REPLAY_DEFAULT
                         ? events_last_id(d->cfg.events) - DASH_REPLAY_DEFAULT
                         : 0;
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (rt->has_since)
        since = rt->since;
    else if (last && *last) {
        char *end = NULL;
        unsigned long long v = strtoull(last, &end, 10);
        if (end && !*end)
            since = v;
    }
    struct dash_stream *s = calloc(1, sizeof *s);
    if (!s)
        return MHD_NO;
    s->d = d;
    s->conn = conn;
    buf_init(&s->out, DASH_STREAM_MAX);
    /* "retry" tells EventSource-style readers how soon to come back; then the events kept since `since`. */
    int rc = buf_printf(&s->out, "retry: 2000\nevent: hello\ndata: {\"lastEventId\":%llu}\n\n",
                        (unsigned long long)events_last_id(d->cfg.events));
    for (const struct events_event *ev = events_after(d->cfg.events, since); rc == ERR_OK && ev;
         ev = events_after(d->cfg.events, ev->id))
        rc = dashapi_sse_event(&s->out, ev);
    struct MHD_Response *resp =
        rc == ERR_OK ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free)
                     : NULL;
    if (!resp) {
        buf_cleanup(&s->out);
        free(s);
        return MHD_NO;
    }
    s->next = d->streams;
    if (d->streams)
        d->streams->prev = s;
    d->streams = s;
    d->n_streams++;
    subscribe(d, true);
    bool ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8") ==
                  MHD_YES &&
              MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
              MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES &&
              MHD_add_response_header(resp, "X-Accel-Buffering", "no") == MHD_YES;
    enum MHD_Result ret = ok ? MHD_queue_response(conn, MHD_HTTP_OK, resp) : MHD_NO;
    MHD_destroy_response(resp); /* the stream is freed with the response (stream_free) */
    return ret;
}

void dash_shutdown(struct dash *d)
{
    if (!d || d->closing)
        return;
    d->closing = true;
    for (struct dash_stream *s = d->streams; s; s = s->next)
        stream_wake(s);
}

enum MHD_Result dash_serve(struct dash *d, struct MHD_Connection *conn, const char *method, const char *uri,
                           const uint8_t *body, size_t len, size_t body_seen)
{
    struct dashapi_route rt;
    if (dashapi_route_parse(uri, &rt) != ERR_OK)
        return MHD_NO;
    enum MHD_Result ret;
    char why[96];
    const char *allow = dashapi_allow(rt.kind);
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, allow) != 0 && !(head && strcmp(allow, "GET") == 0))
        ret = answer_error(conn, RESTAPI_METHOD_NOT_ALLOWED, allow, "The resource does not support %s.", method);
    else if (rt.kind == DASHAPI_ASSET)
        ret = route_asset(conn, rt.asset);
    else if (rt.kind == DASHAPI_SESSION)
        ret = route_session(d, conn);
    else if (!authorized(d, conn, why, sizeof why)) {
        log_info("http %s %.200s: unauthorized (%s)", method, uri, why);
        ret = answer_error(conn, RESTAPI_UNAUTHORIZED, NULL, "Unauthorized");
    } else if (rt.malformed)
        ret = answer_error(conn, RESTAPI_ARGUMENT_INVALID, NULL, "Invalid device or module id in the path.");
    else if (rt.kind == DASHAPI_STATS)
        ret = route_stats(d, conn);
    else if (rt.kind == DASHAPI_EVENTS)
        ret = route_events(d, conn, &rt);
    else if (body_seen > len)
        ret = answer_error(conn, RESTAPI_MESSAGE_TOO_LARGE, NULL, "The request body is over %zu bytes.",
                           dash_body_max());
    else
        ret = route_c2d(d, conn, &rt, body, len);
    dashapi_route_cleanup(&rt);
    return ret;
}
