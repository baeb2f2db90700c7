/* rest.c -- the service REST API on libmicrohttpd, driven from the emulator's loop (see rest.h).
 * Layer: HTTP glue. Parsing/validation/rendering are in restapi.c; identities in registry, calls in hub,
 * tokens in auth. One struct rest_req per HTTP request, created by MHD's URI callback and freed by its
 * completion callback; a waiting method call keeps its MHD connection suspended until the hub answers.
 * Tests: tests/unit/test_rest_http.c. */
#include "rest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "bulk.h"
#include "c2d.h"
#include "dash.h"
#include "err.h"
#include "faults.h"
#include "hub.h"
#include "jobs.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "restapi.h"
#include "sas.h"
#include "eventlog.h"
#include "telemetry.h"
#include "url.h"
#include "query.h"
#include "twin.h"

#define REST_JSON "application/json; charset=utf-8"
#define REST_METHOD_BODY_MAX (1024u * 1024u)     /* raw method body; the payload itself is capped at 128 KiB */
#define REST_REGISTRY_BODY_MAX (64u * 1024u)
#define REST_TWIN_BODY_MAX (256u * 1024u)        /* a whole twin sent back (PUT): 8+32+32 KiB plus metadata */
#define REST_QUERY_BODY_MAX (64u * 1024u)        /* {"query": 8192 characters of up to 4 UTF-8 bytes} */
#define REST_BULK_BODY_MAX (1024u * 1024u)       /* POST /devices: up to 100 ExportImportDevice */
#define REST_OTHER_BODY_MAX (16u * 1024u)
#define REST_DROP_AFTER (8u * 1024u * 1024u)     /* a body this large closes the connection */
#define REST_CA_MAX (1024u * 1024u)
#define REST_URI_MAX 8192
#define REST_HEAD_TIMEOUT_S 30                   /* defaults of rest_config's timeouts */
#define REST_IDLE_TIMEOUT_S 240
#define REST_SWEEP_MS 250                        /* how often deadlines are checked while connections exist */
#define REST_CONN_MEMORY (16u * 1024u)        /* MHD pool: request head + I/O buffers; bodies go to rest_req.body */
#define REST_MAX_TIMER_MS 60000
#define REST_AUTH_CACHE 64                       /* verified Authorization values remembered */

/* The answer to one request, built before it is queued (possibly after a suspension). */
struct rest_answer {
    unsigned status;
    char *body; /* malloc'd; handed to MHD */
    size_t len;
    const char *ctype;
    const char *errorcode; /* iothub-errorcode header (static text) */
    const char *allow;
    char etag[80];
    int retry_after_s; /* Retry-After header when > 0 (throttling, injected faults) */
    json_t *headers; /* more response headers, name -> string (NULL: none) */
    char continuation[24]; /* x-ms-continuation of a query page ("" = last page: no header) */
    const char *item_type; /* x-ms-item-type of a query page */
};

struct rest_req {
    struct rest *r;
    struct MHD_Connection *conn;
    char *uri;
    char method[16];
    struct restapi_route route;
    int route_rc;
    size_t body_cap;
    size_t body_seen;
    struct buf body;
    bool started, handled, answered, suspended, gone;
    int64_t started_ms;
    /* direct-method call */
    struct restapi_method_call call;
    uint64_t call_id;
    int watch_fd; /* the connection's socket, watched for hang-up while suspended; -1 */
    struct rest_req *prev, *next; /* list of suspended requests */
    struct rest_answer ans;
};

/* An Authorization value that auth_check_service accepted, for the permission sets it was checked for. */
struct rest_verified {
    char *header;    /* malloc'd; NULL when the slot is free */
    size_t len;
    uint64_t hash;
    uint64_t expiry; /* the token's se */
    unsigned perms;  /* union of the need_perms it passed */
    uint64_t used;   /* for eviction: the least recently used goes first */
};

/* One MHD connection, tracked for its deadlines and for eviction at the connection limit. Slowloris: a
 * connection must deliver a request line and headers within head_timeout of its accept (or of the request
 * line, on a kept-alive connection); between requests it may idle for idle_timeout. BUSY (a request being
 * read, handled or answered, a suspended method call included) has only MHD's inactivity timeout. */
enum rest_conn_state { RC_NEW, RC_HEAD, RC_BUSY, RC_IDLE };

struct rest_conn {
    struct MHD_Connection *conn;
    int fd;
    enum rest_conn_state state;
    bool evicted;
    int64_t since_ms;
    struct rest_conn *prev, *next;
};

struct rest {
    struct rest_verified verified[REST_AUTH_CACHE];
    uint64_t verified_clock;
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    struct telemetry *telemetry;
    struct faults *faults;
    char *ca_pem_path;
    int64_t skew_s;
    struct MHD_Daemon *mhd;
    int epfd;
    struct loop_timer *timer;
    int64_t timer_due;
    bool shutting_down;
    struct rest_req *waiting;
    int amqps_port, amqp_port; /* for /health; <= 0 when not listening */
    struct c2d *c2d;
    struct jobs *jobs;
    struct rest_conn *conns;
    struct rest_conn **by_fd; /* indexed by socket fd, for rest_idle_since */
    size_t by_fd_len;
    int head_timeout_s, idle_timeout_s;
    struct loop_timer *sweep;
    struct dash *dash; /* the dashboard's page and routes (dash.h) */
};

/* ---- driving MHD from the loop ---- */

static void drive(struct rest *r);

static void on_timer(struct loop *l, void *ctx)
{
    struct rest *r = ctx;
    r->timer = NULL;
    drive(r);
}

/* Makes sure MHD runs within delay_ms (keeps an earlier armed timer). */
static void arm(struct rest *r, int64_t delay_ms)
{
    int64_t due = loop_now_ms(r->loop) + delay_ms;
    if (r->timer && r->timer_due <= due)
        return;
    loop_timer_cancel(r->loop, r->timer);
    r->timer = loop_timer_add(r->loop, delay_ms, on_timer, r);
    r->timer_due = due;
    if (!r->timer)
        log_error("rest: cannot arm the HTTP timer (out of memory)");
}

static void drive(struct rest *r)
{
    MHD_run(r->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(r->mhd, &ms) == MHD_YES)
        arm(r, ms > REST_MAX_TIMER_MS ? REST_MAX_TIMER_MS : (int64_t)ms);
}

static void on_mhd_fd(struct loop *l, int fd, uint32_t events, void *ctx)
{
    drive(ctx);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    log_debug("mhd: %s", line);
}

/* ---- connection deadlines and idle state ---- */

static struct rest_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_state(struct rest *r, struct MHD_Connection *conn, enum rest_conn_state state)
{
    struct rest_conn *rc = conn_of(conn);
    if (!rc)
        return;
    /* A new connection's head deadline runs from the accept; a kept-alive one's from its request line. */
    if (!(rc->state == RC_NEW && state == RC_HEAD))
        rc->since_ms = loop_now_ms(r->loop);
    rc->state = state;
}

/* Closes the connection's socket under MHD, which then sees end-of-file and closes it (there is no public
 * "close this connection" call). Over the TLS front end the fd is a socketpair end: net closes the client. */
static void evict(struct rest *r, struct rest_conn *rc, const char *why)
{
    log_debug("http: closing a connection: %s", why);
    rc->evicted = true;
    shutdown(rc->fd, SHUT_RDWR);
    arm(r, 0);
}

static void on_sweep(struct loop *l, void *ctx)
{
    struct rest *r = ctx;
    r->sweep = NULL;
    int64_t now = loop_now_ms(l);
    for (struct rest_conn *rc = r->conns; rc; rc = rc->next) {
        if (rc->evicted)
            continue;
        int64_t age = now - rc->since_ms;
        if ((rc->state == RC_NEW || rc->state == RC_HEAD) && age >= (int64_t)r->head_timeout_s * 1000)
            evict(r, rc, "no complete request head in time");
        else if (rc->state == RC_IDLE && age >= (int64_t)r->idle_timeout_s * 1000)
            evict(r, rc, "keep-alive idle timeout");
    }
    if (r->conns && !r->sweep)
        r->sweep = loop_timer_add(l, REST_SWEEP_MS, on_sweep, r);
}

static int by_fd_put(struct rest *r, int fd, struct rest_conn *rc)
{
    if (fd < 0)
        return ERR_INVALID;
    if ((size_t)fd >= r->by_fd_len) {
        size_t n = r->by_fd_len ? r->by_fd_len : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct rest_conn **p = realloc(r->by_fd, n * sizeof *p);
        if (!p)
            return ERR_NOMEM;
        memset(p + r->by_fd_len, 0, (n - r->by_fd_len) * sizeof *p);
        r->by_fd = p;
        r->by_fd_len = n;
    }
    r->by_fd[fd] = rc;
    return ERR_OK;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct rest *r = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct rest_conn *rc = ci ? calloc(1, sizeof *rc) : NULL;
        if (!rc || by_fd_put(r, ci->connect_fd, rc) != ERR_OK) {
            free(rc); /* untracked: only MHD's own timeout applies */
            log_warn("http: cannot track a connection (out of memory)");
            return;
        }
        rc->conn = conn;
        rc->fd = ci->connect_fd;
        rc->state = RC_NEW;
        rc->since_ms = loop_now_ms(r->loop);
        rc->next = r->conns;
        if (r->conns)
            r->conns->prev = rc;
        r->conns = rc;
        *socket_context = rc;
        if (!r->sweep)
            r->sweep = loop_timer_add(r->loop, REST_SWEEP_MS, on_sweep, r);
        return;
    }
    struct rest_conn *rc = *socket_context;
    if (!rc)
        return;
    *socket_context = NULL;
    if (rc->prev)
        rc->prev->next = rc->next;
    else
        r->conns = rc->next;
    if (rc->next)
        rc->next->prev = rc->prev;
    if ((size_t)rc->fd < r->by_fd_len && r->by_fd[rc->fd] == rc)
        r->by_fd[rc->fd] = NULL;
    free(rc);
}

int64_t rest_idle_since(struct rest *r, int fd)
{
    if (!r || fd < 0 || (size_t)fd >= r->by_fd_len || !r->by_fd[fd])
        return -1;
    const struct rest_conn *rc = r->by_fd[fd];
    return rc->state == RC_BUSY || rc->evicted ? -1 : rc->since_ms;
}

/* ---- answers ---- */

static void tracking_id(char out[33])
{
    static uint64_t counter;
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        memset(raw, 0, sizeof raw);
        memcpy(raw, &(uint64_t){++counter}, sizeof counter);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static void answer_clear(struct rest_answer *a)
{
    free(a->body);
    json_decref(a->headers);
    memset(a, 0, sizeof *a);
}

/* Takes ownership of body (may be NULL with len 0). */
static void answer_set(struct rest_req *q, unsigned status, char *body, size_t len, const char *ctype)
{
    answer_clear(&q->ans);
    q->ans.status = status;
    q->ans.body = body;
    q->ans.len = len;
    q->ans.ctype = ctype;
    q->answered = true;
}

static void answer_error(struct rest_req *q, const struct restapi_error *e)
{
    char track[33];
    struct timespec now;
    tracking_id(track);
    clock_gettime(CLOCK_REALTIME, &now);
    char *body = restapi_error_render(e, track, &now);
    answer_set(q, body ? (unsigned)(e->code / 1000) : 500, body, body ? strlen(body) : 0, REST_JSON);
    q->ans.errorcode = restapi_code_name(e->code);
}

static void answer_errorf(struct rest_req *q, int code, enum restapi_envelope env, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void answer_errorf(struct rest_req *q, int code, enum restapi_envelope env, const char *fmt, ...)
{
    struct restapi_error e;
    restapi_error_set(&e, code, env, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    answer_error(q, &e);
}

/* 200/201 with a JSON document (stolen) and an optional ETag. */
static void answer_json(struct rest_req *q, unsigned status, json_t *j, const struct identity *etag_of)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        return;
    }
    answer_set(q, status, text, strlen(text), REST_JSON);
    if (etag_of)
        registry_etag(etag_of, q->ans.etag, sizeof q->ans.etag);
}

static bool add_retry_after(struct MHD_Response *resp, int seconds)
{
    char text[16];
    snprintf(text, sizeof text, "%d", seconds);
    return seconds <= 0 || MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, text) == MHD_YES;
}

/* The hub's throttling answer: 429 429001 ThrottlingException with Retry-After. */
static void answer_throttled(struct rest_req *q, enum restapi_envelope env, int retry_after_s)
{
    answer_errorf(q, RESTAPI_THROTTLED, env, "Request is throttled, retry after %d seconds.", retry_after_s);
    q->ans.retry_after_s = retry_after_s;
}

static enum MHD_Result queue_answer(struct rest_req *q)
{
    struct rest_answer *a = &q->ans;
    struct MHD_Response *resp = a->len ? MHD_create_response_from_buffer(a->len, a->body, MHD_RESPMEM_MUST_FREE)
                                       : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (a->len)
        a->body = NULL; /* now MHD's */
    if ((a->ctype && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->ctype) != MHD_YES) ||
        (a->errorcode && MHD_add_response_header(resp, "iothub-errorcode", a->errorcode) != MHD_YES) ||
        (a->etag[0] && MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, a->etag) != MHD_YES) ||
        (a->allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, a->allow) != MHD_YES) ||
        !add_retry_after(resp, a->retry_after_s) ||
        (a->continuation[0] && MHD_add_response_header(resp, "x-ms-continuation", a->continuation) != MHD_YES) ||
        (a->item_type && MHD_add_response_header(resp, "x-ms-item-type", a->item_type) != MHD_YES)) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    const char *hname;
    json_t *hval;
    json_object_foreach(a->headers, hname, hval)
    {
        if (MHD_add_response_header(resp, hname, json_string_value(hval)) != MHD_YES) {
            MHD_destroy_response(resp);
            return MHD_NO;
        }
    }
    enum MHD_Result ret = MHD_queue_response(q->conn, a->status, resp);
    MHD_destroy_response(resp);
    log_debug("http %s %.200s -> %u (%lld ms)", q->method, q->uri, a->status,
              (long long)(loop_now_ms(q->r->loop) - q->started_ms));
    return ret;
}

/* ---- suspension ---- */

static void unwatch(struct rest_req *q)
{
    if (q->watch_fd >= 0)
        loop_del_fd(q->r->loop, q->watch_fd);
    q->watch_fd = -1;
}

static void resume(struct rest_req *q)
{
    struct rest *r = q->r;
    if (!q->suspended)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->waiting = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    unwatch(q);
    q->suspended = false;
    MHD_resume_connection(q->conn);
    arm(r, 0);
}

/* Copies text for a log line, replacing anything but printable ASCII with '?'. */
static void printable(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen; i++)
        out[i] = in[i] > 0x20 && in[i] < 0x7f ? in[i] : '?';
    out[i] = '\0';
}

/* One info line per method call when it ends; code < 0 is left out. */
/* A device may answer any int status, negative ones too; LOG_NO_CODE means "no status to print". */
#define LOG_NO_CODE INT_MIN

static void log_call(const struct rest_req *q, const char *outcome, int code)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1], name[128];
    printable(q->route.device_id, dev, sizeof dev);
    printable(q->route.module_id, mod, sizeof mod);
    printable(q->call.method_name ? q->call.method_name : "-", name, sizeof name);
    char num[16] = "";
    if (code != LOG_NO_CODE)
        snprintf(num, sizeof num, " %d", code);
    log_info("method call %s%s%s %s: %s%s (%lld ms)", dev, mod[0] ? "/" : "", mod, name, outcome, num,
             (long long)(loop_now_ms(q->r->loop) - q->started_ms));
}

static void on_peer_gone(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct rest_req *q = ctx;
    if (q->call_id)
        hub_call_cancel(q->r->hub, q->call_id);
    q->call_id = 0;
    log_call(q, "caller went away", LOG_NO_CODE);
    q->gone = true;
    resume(q);
}

static void suspend(struct rest_req *q)
{
    struct rest *r = q->r;
    MHD_suspend_connection(q->conn);
    q->suspended = true;
    q->next = r->waiting;
    if (r->waiting)
        r->waiting->prev = q;
    r->waiting = q;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && loop_add_fd(r->loop, ci->connect_fd, EPOLLRDHUP, on_peer_gone, q) == ERR_OK)
        q->watch_fd = ci->connect_fd;
}

/* ---- direct methods ---- */

static void answer_not_found(struct rest_req *q, enum restapi_envelope env)
{
    const struct restapi_route *rt = &q->route;
    if (rt->module_id && registry_find(q->r->reg, rt->device_id, NULL))
        answer_errorf(q, RESTAPI_MODULE_NOT_FOUND, env, "%s/%s", rt->device_id, rt->module_id);
    else
        answer_errorf(q, RESTAPI_DEVICE_NOT_FOUND, env, "%s", rt->device_id ? rt->device_id : "");
}

static void answer_call_error(struct rest_req *q, int code, enum restapi_info info, int timeout_s, const char *msg)
{
    struct restapi_error e;
    restapi_error_set(&e, code, RESTAPI_ENVELOPE_B, "%s", msg);
    e.info = info;
    e.timeout_s = timeout_s;
    answer_error(q, &e);
}

static void answer_call_result(struct rest_req *q, const struct hub_call_result *res)
{
    size_t len = 0;
    char *body;
    switch (res->outcome) {
    case HUB_CALL_ANSWERED:
        body = restapi_method_result(res->status, res->payload, res->payload_len, &len);
        if (body)
            answer_set(q, MHD_HTTP_OK, body, len, REST_JSON);
        else
            answer_call_error(q, RESTAPI_SERVER_ERROR, RESTAPI_INFO_EMPTY, 0, "Out of memory.");
        log_call(q, "answered, device status", res->status);
        return;
    case HUB_CALL_NOT_FOUND:
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        break;
    case HUB_CALL_NOT_ONLINE:
        answer_call_error(q, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_INFO_TIMEOUT, res->connect_timeout_s,
                          "Timed out waiting for device to connect.");
        break;
    case HUB_CALL_TIMEOUT:
        answer_call_error(q, RESTAPI_GATEWAY_TIMEOUT, RESTAPI_INFO_EMPTY, 0,
                          "Timed out waiting for the response from device.");
        break;
    case HUB_CALL_DISCONNECTED:
        answer_call_error(q, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_INFO_EMPTY, 0,
                          "The operation failed because the requested device isn't online or hasn't registered "
                          "the direct method callback.");
        break;
    default:
        answer_call_error(q, RESTAPI_SERVICE_UNAVAILABLE, RESTAPI_INFO_EMPTY, 0, "The emulator is shutting down.");
        break;
    }
    log_call(q, q->ans.errorcode, (int)q->ans.status);
}

static void on_hub_result(void *ctx, const struct hub_call_result *res)
{
    struct rest_req *q = ctx;
    q->call_id = 0;
    answer_call_result(q, res);
    resume(q);
}

/* ---- verified service tokens ----
 * An HMAC per request was 12% of a small method call. A token that passed auth_check_service is remembered
 * by its exact text; a later request with the same text skips the HMAC when it is still not expired
 * (se + skew >= now, checked on every use) and asks for permissions it already passed (policies do not
 * change while the emulator runs). Anything else goes through auth_check_service again. */

static uint64_t verified_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211u;
    return h;
}

/* se + skew < now, without overflow (as sas_verify decides). */
static bool verified_expired(const struct rest_verified *v, int64_t now, int64_t skew)
{
    if (skew < 0)
        skew = 0;
    return now > 0 && (uint64_t)now > v->expiry && (uint64_t)now - v->expiry > (uint64_t)skew;
}

static void verified_drop(struct rest_verified *v)
{
    free(v->header);
    memset(v, 0, sizeof *v);
}

static struct rest_verified *verified_find(struct rest *r, const char *authz, size_t len, uint64_t hash)
{
    for (size_t i = 0; i < REST_AUTH_CACHE; i++) {
        struct rest_verified *v = &r->verified[i];
        if (v->header && v->hash == hash && v->len == len && memcmp(v->header, authz, len) == 0)
            return v;
    }
    return NULL;
}

/* Remembers authz as verified for perms: in its own slot, a free or expired one, or the least recently used. */
static void verified_put(struct rest *r, struct rest_verified *v, const char *authz, size_t len, uint64_t hash,
                         unsigned perms, int64_t now)
{
    if (!v) {
        struct sas_token tok;
        if (sas_parse(authz, len, &tok) != ERR_OK)
            return;
        for (size_t i = 0; i < REST_AUTH_CACHE; i++) {
            struct rest_verified *c = &r->verified[i];
            if (c->header && verified_expired(c, now, r->skew_s))
                verified_drop(c);
            if (!v || !c->header || (v->header && c->used < v->used))
                v = c;
        }
        verified_drop(v);
        v->header = malloc(len + 1);
        if (!v->header)
            return;
        memcpy(v->header, authz, len + 1);
        v->len = len;
        v->hash = hash;
        v->expiry = tok.expiry;
    }
    v->perms |= perms;
    v->used = ++r->verified_clock;
}

/* auth_check_service, through the cache of verified tokens. */
static int check_service(struct rest *r, const char *authz, unsigned perms, char *why, size_t whylen)
{
    int64_t now = loop_wall_s(r->loop);
    size_t len = authz ? strlen(authz) : 0;
    uint64_t hash = verified_hash(authz ? authz : "", len);
    struct rest_verified *v = len ? verified_find(r, authz, len, hash) : NULL;
    if (v && verified_expired(v, now, r->skew_s)) {
        verified_drop(v);
        v = NULL;
    }
    if (v && (v->perms & perms) == perms) {
        v->used = ++r->verified_clock;
        return ERR_OK;
    }
    int rc = auth_check_service(r->auth, authz, perms, now, r->skew_s, why, whylen);
    if (rc == ERR_OK)
        verified_put(r, v, authz, len, hash, perms, now);
    return rc;
}

static void verified_cleanup(struct rest *r)
{
    for (size_t i = 0; i < REST_AUTH_CACHE; i++)
        verified_drop(&r->verified[i]);
}

/* Auth and api-version, common to the hub routes. False when an error answer was set. */
static bool service_prelude(struct rest_req *q, unsigned perms)
{
    struct rest *r = q->r;
    char why[96];
    const char *authz = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (check_service(r, authz, perms, why, sizeof why) != ERR_OK) {
        log_info("http %s %.200s: unauthorized (%s)", q->method, q->uri, why);
        answer_errorf(q, RESTAPI_UNAUTHORIZED, RESTAPI_ENVELOPE_A, "Unauthorized");
        return false;
    }
    if (!q->route.has_api_version) {
        answer_errorf(q, RESTAPI_INVALID_PROTOCOL_VERSION, RESTAPI_ENVELOPE_A,
                      "The api-version query parameter is required.");
        return false;
    }
    return true;
}

static void route_method(struct rest_req *q)
{
    struct rest *r = q->r;
    struct restapi_error e;
    if (!service_prelude(q, AUTH_SERVICE_CONNECT))
        return;
    if (q->body_seen > q->body_cap) {
        answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_B, "The request body is over %zu bytes.",
                      q->body_cap);
        log_call(q, "rejected", RESTAPI_MESSAGE_TOO_LARGE);
        return;
    }
    int rc = restapi_method_parse((const char *)q->body.data, q->body.len, &q->call, &e);
    if (rc != ERR_OK) {
        if (rc == ERR_INVALID)
            answer_error(q, &e);
        else
            answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_B, "Out of memory.");
        log_call(q, "rejected", rc == ERR_INVALID ? e.code : RESTAPI_SERVER_ERROR);
        return;
    }
    int retry = 0; /* --throttle: direct methods are metered in 4 KB blocks of payload */
    if (!faults_throttle_take(r->faults, FAULTS_OP_METHOD, (unsigned)(q->call.payload_len / 4096 + 1), &retry)) {
        answer_throttled(q, RESTAPI_ENVELOPE_B, retry);
        log_call(q, "throttled", RESTAPI_THROTTLED);
        return;
    }
    struct hub_call_request req = {
        .device_id = q->route.device_id,
        .module_id = q->route.module_id,
        .method_name = q->call.method_name,
        .payload = q->call.payload,
        .payload_len = q->call.payload_len,
        .response_timeout_s = q->call.response_timeout_s,
        .connect_timeout_s = q->call.connect_timeout_s,
    };
    struct hub_call_result now;
    memset(&now, 0, sizeof now);
    uint64_t id = hub_call_start(r->hub, &req, on_hub_result, q, &now);
    if (id == 0) {
        answer_call_result(q, &now);
        return;
    }
    q->call_id = id;
    suspend(q);
}

/* ---- registry ---- */

/* After the bulk commit: the same follow-ups as one PUT or DELETE. */
static void bulk_applied(void *arg, const char *device_id, const char *module_id, enum bulk_op op)
{
    struct rest *r = arg;
    log_info("registry: %s %s%s%s (bulk)", op == BULK_CREATE ? "created" : op == BULK_UPDATE ? "updated" : "deleted",
             device_id, module_id ? "/" : "", module_id ? module_id : "");
    if (op == BULK_DELETE) {
        hub_forget_identity(r->hub, device_id, module_id);
        return;
    }
    const struct identity *id = registry_find(r->reg, device_id, module_id);
    if (id && !id->enabled)
        hub_disconnect_identity(r->hub, device_id, module_id, "identity disabled");
}

/* POST /devices: the bulk registry operation (bulk.h). 200 with the BulkRegistryOperationResult when every
 * item was applied, 400 with it when some were not (the others are applied, as on the hub). */
static void devices_bulk(struct rest_req *q)
{
    if (!service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    if (q->body_seen > q->body_cap) {
        answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_A, "The request body is over %zu bytes.",
                      q->body_cap);
        return;
    }
    json_t *body = json_loadb(q->body.len ? (const char *)q->body.data : "", q->body.len, 0, NULL);
    if (!body) {
        answer_errorf(q, RESTAPI_FORMAT_ERROR, RESTAPI_ENVELOPE_A, "The request body is not JSON.");
        return;
    }
    json_t *result = NULL;
    char msg[256] = "";
    int rc = bulk_apply(q->r->reg, body, bulk_applied, q->r, &result, msg, sizeof msg);
    json_decref(body);
    if (rc == ERR_INVALID)
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", msg);
    else if (rc)
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "%s", msg);
    else
        answer_json(q, json_is_true(json_object_get(result, "isSuccessful")) ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST,
                    result, NULL);
}

static void route_devices(struct rest_req *q)
{
    if (strcmp(q->method, "POST") == 0) {
        devices_bulk(q);
        return;
    }
    if (!service_prelude(q, AUTH_REGISTRY_READ))
        return;
    if (q->route.top_invalid) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "top must be an integer within [1; %d].",
                      RESTAPI_TOP_MAX);
        return;
    }
    answer_json(q, MHD_HTTP_OK, registry_list_devices(q->r->reg, (size_t)q->route.top), NULL);
}

static void route_modules(struct rest_req *q)
{
    if (!service_prelude(q, AUTH_REGISTRY_READ))
        return;
    if (!registry_find(q->r->reg, q->route.device_id, NULL)) {
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    }
    answer_json(q, MHD_HTTP_OK, registry_list_modules(q->r->reg, q->route.device_id), NULL);
}

static void identity_get(struct rest_req *q)
{
    if (!service_prelude(q, AUTH_REGISTRY_READ))
        return;
    const struct identity *id = registry_find(q->r->reg, q->route.device_id, q->route.module_id);
    if (!id) {
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    }
    json_t *j = registry_identity_json(id);
    if (j && q->r->c2d && !id->module_id[0])
        json_object_set_new(j, "cloudToDeviceMessageCount",
                            json_integer((json_int_t)c2d_count(q->r->c2d, id->device_id, c2d_wall_ms())));
    answer_json(q, MHD_HTTP_OK, j, id);
}

/* ---- the device side over HTTPS (the C SDK's HTTP_Protocol) ---- */

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
    char *k = url_encode(key + sizeof pre - 1, strlen(key + sizeof pre - 1)), *v = url_encode(value, strlen(value));
    p->rc = k && v ? buf_printf(p->t, "%s%s=%s", *p->first ? "" : "&", k, v) : ERR_NOMEM;
    *p->first = false;
    free(k);
    free(v);
    return MHD_YES;
}

/* A device token for the route's device (or a policy token with DeviceConnect) and api-version. NULL when an
 * error answer was set. */
static const struct identity *device_prelude(struct rest_req *q)
{
    const char *authz = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const struct identity *id = registry_find(q->r->reg, q->route.device_id, NULL);
    char why[96] = "no such device";
    if (!id || !authz ||
        auth_check_device(q->r->auth, id, authz, strlen(authz), loop_wall_s(q->r->loop), q->r->skew_s, NULL, why,
                          sizeof why) != ERR_OK) {
        log_info("http %s %.200s: unauthorized (%s)", q->method, q->uri, authz ? why : "missing Authorization");
        answer_errorf(q, RESTAPI_UNAUTHORIZED, RESTAPI_ENVELOPE_A, "Unauthorized");
        return NULL;
    }
    if (!q->route.has_api_version) {
        answer_errorf(q, RESTAPI_INVALID_PROTOCOL_VERSION, RESTAPI_ENVELOPE_A,
                      "The api-version query parameter is required.");
        return NULL;
    }
    return id;
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
static void route_c2d_receive(struct rest_req *q)
{
    if (!device_prelude(q))
        return;
    const struct c2d_message *m =
        q->r->c2d ? c2d_lock(q->r->c2d, q->route.device_id, c2d_wall_ms(), C2D_LOCK_MS) : NULL;
    if (!m) {
        answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
        return;
    }
    char *body = m->body_len ? malloc(m->body_len) : NULL;
    if (m->body_len && !body) {
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        return;
    }
    if (body)
        memcpy(body, m->body, m->body_len);
    answer_set(q, MHD_HTTP_OK, body, m->body_len, m->content_type[0] ? NULL : "application/octet-stream");
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
        answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A, "The lock token is not valid.");
        return false;
    }
    *seq = v;
    return true;
}

/* DELETE .../deviceBound/{lockToken}[?reject] completes (or rejects); POST .../abandon gives it back. 204. */
static void route_c2d_settle(struct rest_req *q, bool abandon)
{
    uint64_t seq;
    if (!device_prelude(q) || !lock_seq(q, &seq))
        return;
    const char *dev = q->route.device_id;
    int rc = !q->r->c2d ? ERR_NOT_FOUND
             : abandon  ? c2d_abandon(q->r->c2d, dev, seq)
             : q->route.reject ? c2d_reject(q->r->c2d, dev, seq)
                               : c2d_complete(q->r->c2d, dev, seq);
    if (rc != ERR_OK) {
        answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                      "The message is no longer locked (completed, expired or its lock ran out).");
        return;
    }
    log_info("c2d: %s %s message %llu over HTTPS", dev, abandon ? "abandoned" : q->route.reject ? "rejected" : "completed",
             (unsigned long long)seq);
    answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
}

/* POST /devices/{id}/messages/events: telemetry over HTTPS, into the same log as MQTT's; iothub-app-{name}
 * headers are its properties, iothub-messageid / iothub-correlationid its $.mid / $.cid. 204. */
static void route_d2c_events(struct rest_req *q)
{
    if (!device_prelude(q))
        return;
    struct buf topic;
    buf_init(&topic, 16384);
    int rc = buf_printf(&topic, "devices/%s/messages/events/", q->route.device_id);
    bool first = true;
    static const struct {
        const char *header, *prop;
    } sys[] = {{"iothub-messageid", "$.mid"}, {"iothub-correlationid", "$.cid"}, {"Content-Type", "$.ct"},
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
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        return;
    }
    log_debug("telemetry from %s over HTTPS (%zu bytes)", q->route.device_id, q->body.len);
    answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
}

/* DELETE /devices/{id}/commands: drops every queued C2D message; {"totalMessagesPurged": n, "deviceId": id}. */
static void route_c2d_purge(struct rest_req *q)
{
    if (!service_prelude(q, AUTH_SERVICE_CONNECT))
        return;
    if (!registry_find(q->r->reg, q->route.device_id, NULL)) {
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    }
    size_t n = q->r->c2d ? c2d_purge(q->r->c2d, q->route.device_id) : 0;
    log_info("c2d: purged %zu messages of %s", n, q->route.device_id);
    answer_json(q, MHD_HTTP_OK,
                json_pack("{s:I,s:s}", "totalMessagesPurged", (json_int_t)n, "deviceId", q->route.device_id), NULL);
}

/* Answers a registry_put / registry_delete failure. */
static void answer_registry_error(struct rest_req *q, int rc, const char *msg)
{
    const struct restapi_route *rt = &q->route;
    switch (rc) {
    case ERR_EXISTS:
        if (rt->module_id)
            answer_errorf(q, RESTAPI_MODULE_EXISTS, RESTAPI_ENVELOPE_A,
                          "A module with ID '%s' is already registered on device '%s'.", rt->module_id, rt->device_id);
        else
            answer_errorf(q, RESTAPI_DEVICE_EXISTS, RESTAPI_ENVELOPE_A, "A device with ID '%s' is already registered.",
                          rt->device_id);
        break;
    case ERR_NOT_FOUND:
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        break;
    case ERR_PRECONDITION:
        answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                      "Precondition failed: the If-Match etag does not match the %s's etag.",
                      rt->module_id ? "module" : "device");
        break;
    case ERR_INVALID:
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", msg && *msg ? msg : "Invalid argument.");
        break;
    case ERR_IO:
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A,
                      "The store cannot save the change (disk full or read-only data dir? see the emulator's log); "
                      "nothing was changed.");
        break;
    default:
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Internal error: %s.", err_str(rc));
        break;
    }
}

static void identity_put(struct rest_req *q)
{
    struct rest *r = q->r;
    const struct restapi_route *rt = &q->route;
    if (!service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    if (q->body_seen > q->body_cap) {
        answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_A, "The request body is over %zu bytes.",
                      q->body_cap);
        return;
    }
    json_t *body = json_loadb(q->body.len ? (const char *)q->body.data : "", q->body.len, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        answer_errorf(q, RESTAPI_FORMAT_ERROR, RESTAPI_ENVELOPE_A, "The request body is not a JSON object.");
        return;
    }
    const char *if_match = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
    const struct identity *id = NULL;
    bool created = false;
    char msg[256] = "";
    int rc = registry_put(r->reg, rt->device_id, rt->module_id, body, if_match, &id, &created, msg, sizeof msg);
    json_decref(body);
    if (rc != ERR_OK) {
        answer_registry_error(q, rc, msg);
        return;
    }
    bool disabled = !id->enabled;
    answer_json(q, rt->module_id && created ? MHD_HTTP_CREATED : MHD_HTTP_OK, registry_identity_json(id), id);
    log_info("registry: %s %s%s%s", created ? "created" : "updated", rt->device_id, rt->module_id ? "/" : "",
             rt->module_id ? rt->module_id : "");
    if (disabled)
        hub_disconnect_identity(r->hub, rt->device_id, rt->module_id, "identity disabled");
}

static void identity_delete(struct rest_req *q)
{
    struct rest *r = q->r;
    const struct restapi_route *rt = &q->route;
    if (!service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    const char *if_match = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
    int rc = registry_delete(r->reg, rt->device_id, rt->module_id, if_match);
    if (rc != ERR_OK) {
        answer_registry_error(q, rc, NULL);
        return;
    }
    answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
    log_info("registry: deleted %s%s%s", rt->device_id, rt->module_id ? "/" : "", rt->module_id ? rt->module_id : "");
    hub_forget_identity(r->hub, rt->device_id, rt->module_id);
    if (r->c2d && !rt->module_id)
        c2d_purge(r->c2d, rt->device_id); /* a re-created device starts with an empty queue */
}

/* ---- twins, query, statistics ---- */

/* Auth with either of two permission sets (the hub lets several policies through some routes). */
static bool service_prelude_any(struct rest_req *q, unsigned perms_a, unsigned perms_b)
{
    char why[96];
    const char *authz = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (check_service(q->r, authz, perms_a, why, sizeof why) == ERR_OK)
        perms_b = perms_a;
    return service_prelude(q, perms_b);
}

/* The request body as a JSON object, or an error answer (false). Caller json_decref's *out. */
static bool body_object(struct rest_req *q, json_t **out)
{
    *out = NULL;
    if (q->body_seen > q->body_cap) {
        answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_A, "The request body is over %zu bytes.",
                      q->body_cap);
        return false;
    }
    json_t *body = json_loadb(q->body.len ? (const char *)q->body.data : "", q->body.len, JSON_REJECT_DUPLICATES,
                              NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        answer_errorf(q, RESTAPI_FORMAT_ERROR, RESTAPI_ENVELOPE_A, "The request body is not a JSON object.");
        return false;
    }
    *out = body;
    return true;
}

static void answer_twin(struct rest_req *q, json_t *doc, const char *etag)
{
    answer_json(q, MHD_HTTP_OK, doc, NULL);
    if (q->ans.status == MHD_HTTP_OK)
        snprintf(q->ans.etag, sizeof q->ans.etag, "%s", etag);
}

static void twin_update_route(struct rest_req *q, enum twin_mode mode)
{
    const struct restapi_route *rt = &q->route;
    json_t *body = NULL;
    if (!service_prelude_any(q, AUTH_SERVICE_CONNECT, AUTH_REGISTRY_WRITE) || !body_object(q, &body))
        return;
    struct hub_twin_update u = {
        .device_id = rt->device_id,
        .module_id = rt->module_id,
        .body = body,
        .mode = mode,
        .if_match = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH),
    };
    json_t *doc = NULL;
    char etag[40] = "";
    struct twin_error e = {0, ""};
    int rc = hub_twin_update(q->r->hub, &u, &doc, etag, sizeof etag, &e);
    json_decref(body);
    switch (rc) {
    case ERR_OK:
        answer_twin(q, doc, etag);
        log_info("twin: %s %s%s%s", mode == TWIN_MERGE ? "patched" : "replaced", rt->device_id,
                 rt->module_id ? "/" : "", rt->module_id ? rt->module_id : "");
        return;
    case ERR_NOT_FOUND:
        answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    case ERR_PRECONDITION:
        answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                      "Precondition failed: the If-Match etag does not match the twin's etag.");
        return;
    case ERR_INVALID:
        answer_errorf(q, e.code, RESTAPI_ENVELOPE_A, "%s", e.message);
        return;
    default:
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Internal error: %s.", err_str(rc));
        return;
    }
}

static void route_twin(struct rest_req *q)
{
    const struct restapi_route *rt = &q->route;
    if (strcmp(q->method, "PATCH") == 0) {
        twin_update_route(q, TWIN_MERGE);
        return;
    }
    if (strcmp(q->method, "PUT") == 0) {
        twin_update_route(q, TWIN_REPLACE);
        return;
    }
    if (!service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    json_t *doc = NULL;
    char etag[40] = "";
    int rc = hub_twin_get(q->r->hub, rt->device_id, rt->module_id, &doc, etag, sizeof etag);
    if (rc == ERR_NOT_FOUND)
        answer_not_found(q, RESTAPI_ENVELOPE_A);
    else if (rc != ERR_OK)
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
    else {
        if (q->r->c2d && !rt->module_id) /* the queue lives in the C2D module, not in the twin */
            json_object_set_new(doc, "cloudToDeviceMessageCount",
                                json_integer((json_int_t)c2d_count(q->r->c2d, rt->device_id, c2d_wall_ms())));
        answer_twin(q, doc, etag);
    }
}

/* GET /statistics/devices and /statistics/service (the registry's and the live connections' counts). */
static void route_statistics(struct rest_req *q)
{
    if (!service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    if (q->route.kind == RESTAPI_ROUTE_STATS_SERVICE) {
        struct hub_stats st;
        hub_get_stats(q->r->hub, &st);
        answer_json(q, MHD_HTTP_OK, json_pack("{s:I}", "connectedDeviceCount", (json_int_t)st.devices_connected),
                    NULL);
        return;
    }
    size_t total = 0, enabled = 0;
    json_t *devices = registry_list_devices(q->r->reg, SIZE_MAX);
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d) {
        const struct identity *id = registry_find(q->r->reg, json_string_value(json_object_get(d, "deviceId")), NULL);
        total += id != NULL;
        enabled += id && id->enabled;
    }
    json_decref(devices);
    if (!devices) {
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        return;
    }
    answer_json(q, MHD_HTTP_OK,
                json_pack("{s:I,s:I,s:I}", "totalDeviceCount", (json_int_t)total, "enabledDeviceCount",
                          (json_int_t)enabled, "disabledDeviceCount", (json_int_t)(total - enabled)),
                NULL);
}

/* One query's evaluation over the twins: the rows from the first one up to `want` (non-aggregate queries stop
 * there), or the accumulator of an aggregate query. */
struct query_run {
    const struct query *query;
    json_t *rows;
    struct query_agg *agg;
    size_t want;  /* rows needed: offset + page + 1 (one more says whether another page follows) */
    int rc;
};

static bool query_row(void *ctx, const json_t *doc)
{
    struct query_run *run = ctx;
    if (!query_match(run->query, doc))
        return true;
    if (run->agg) {
        run->rc = query_agg_add(run->agg, doc);
        return run->rc == ERR_OK;
    }
    json_t *row = query_project(run->query, doc);
    if (!row || json_array_append_new(run->rows, row)) {
        run->rc = ERR_NOMEM;
        return false;
    }
    return json_array_size(run->rows) < run->want;
}

/* The query's rows, at most want of them (all of an aggregate's). NULL with *rc set on failure. */
static json_t *query_rows(struct rest *r, const struct query *query, size_t want, int *rc)
{
    struct query_run run = {.query = query, .want = want, .rc = ERR_OK};
    long top = query_top(query);
    if (top >= 0 && (size_t)top < run.want)
        run.want = (size_t)top;
    run.rows = json_array();
    if (query_is_aggregate(query))
        run.agg = query_agg_new(query);
    if (!run.rows || (query_is_aggregate(query) && !run.agg)) {
        run.rc = ERR_NOMEM;
    } else if (run.want > 0 && query_source(query) == QUERY_JOBS) {
        if (r->jobs)
            jobs_each_device(r->jobs, query_row, &run);
    } else if (run.want > 0) {
        int each = hub_twin_each(r->hub, query_source(query) == QUERY_MODULES, query_row, &run);
        if (run.rc == ERR_OK)
            run.rc = each;
    }
    if (run.rc == ERR_OK && run.agg) {
        json_decref(run.rows);
        run.rows = query_agg_result(run.agg);
        if (!run.rows)
            run.rc = ERR_NOMEM;
        else if (top >= 0 && json_array_size(run.rows) > (size_t)top)
            while (json_array_size(run.rows) > (size_t)top)
                json_array_remove(run.rows, json_array_size(run.rows) - 1);
    }
    query_agg_free(run.agg);
    *rc = run.rc;
    if (run.rc) {
        json_decref(run.rows);
        return NULL;
    }
    return run.rows;
}

/* POST /devices/query: {"query":"SELECT ..."}; a page of x-ms-max-item-count rows from x-ms-continuation on.
 * The continuation is the offset of the next row; it is left out on the last page (the Node SDK pages while it
 * is present). Each page evaluates the query again over the current twins. */
static void route_query(struct rest_req *q)
{
    json_t *body = NULL;
    if (!service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT) || !body_object(q, &body))
        return;
    const char *text = json_string_value(json_object_get(body, "query"));
    int page = 0;
    size_t offset = 0;
    const char *hdr_page = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-max-item-count");
    const char *hdr_cont = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-continuation");
    if (!text) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "The body needs a \"query\" string.");
    } else if (restapi_page_size(hdr_page, &page) != ERR_OK) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                      "x-ms-max-item-count must be a positive integer.");
    } else if (restapi_continuation(hdr_cont, &offset) != ERR_OK) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "Invalid x-ms-continuation token.");
    } else {
        struct query *query = NULL;
        struct query_error qe;
        memset(&qe, 0, sizeof qe);
        int rc = query_parse(text, strlen(text), &query, &qe);
        if (rc == ERR_MALFORMED || rc == ERR_TOO_BIG) {
            answer_errorf(q, QUERY_HUB_ERROR_CODE, RESTAPI_ENVELOPE_A, "%s", qe.message);
        } else if (rc != ERR_OK) {
            answer_errorf(q, rc == ERR_INVALID ? RESTAPI_ARGUMENT_INVALID : RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A,
                          "The query could not be run.");
        } else {
            json_t *rows = query_rows(q->r, query, offset + (size_t)page + 1, &rc);
            if (!rows) {
                answer_errorf(q, rc == ERR_TOO_BIG ? RESTAPI_ARGUMENT_INVALID : RESTAPI_SERVER_ERROR,
                              RESTAPI_ENVELOPE_A, "%s",
                              rc == ERR_TOO_BIG ? "The query has too many groups." : "Out of memory.");
            } else {
                size_t total = json_array_size(rows);
                json_t *out = json_array();
                for (size_t i = offset; out && i < total && i < offset + (size_t)page; i++)
                    json_array_append(out, json_array_get(rows, i));
                json_decref(rows);
                answer_json(q, MHD_HTTP_OK, out, NULL);
                if (total > offset + (size_t)page)
                    snprintf(q->ans.continuation, sizeof q->ans.continuation, "%zu", offset + (size_t)page);
                q->ans.item_type = query_item_type(query);
            }
        }
        query_free(query);
    }
    json_decref(body);
}

/* ---- jobs (jobs.h) ---- */

static void answer_job_missing(struct rest_req *q)
{
    answer_errorf(q, RESTAPI_JOB_NOT_FOUND, RESTAPI_ENVELOPE_A, "The job %s does not exist.",
                  q->route.device_id ? q->route.device_id : "");
}

/* PUT /jobs/v2/{jobId} (create) and GET (read). The hub lets jobs through with RegistryWrite, or
 * ServiceConnect for method jobs (we take either for both, and RegistryRead for GET). */
static void route_job(struct rest_req *q)
{
    struct jobs *js = q->r->jobs;
    bool put = strcmp(q->method, "PUT") == 0;
    if (!(put ? service_prelude_any(q, AUTH_REGISTRY_WRITE, AUTH_SERVICE_CONNECT)
              : service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT)))
        return;
    if (!put) {
        json_t *doc = js ? jobs_get(js, q->route.device_id) : NULL;
        if (doc)
            answer_json(q, MHD_HTTP_OK, doc, NULL);
        else
            answer_job_missing(q);
        return;
    }
    json_t *body = NULL;
    if (!body_object(q, &body))
        return;
    json_t *out = NULL;
    struct jobs_error e = {0, ""};
    int rc = js ? jobs_create(js, q->route.device_id, body, &out, &e) : ERR_NOMEM;
    json_decref(body);
    if (rc == ERR_OK)
        answer_json(q, MHD_HTTP_OK, out, NULL);
    else if (rc == ERR_EXISTS)
        answer_errorf(q, RESTAPI_JOB_EXISTS, RESTAPI_ENVELOPE_A, "%s", e.message);
    else if (rc == ERR_INVALID)
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", e.message);
    else
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
}

static void route_job_cancel(struct rest_req *q)
{
    if (!service_prelude_any(q, AUTH_REGISTRY_WRITE, AUTH_SERVICE_CONNECT))
        return;
    json_t *out = NULL;
    int rc = q->r->jobs ? jobs_cancel(q->r->jobs, q->route.device_id, &out) : ERR_NOT_FOUND;
    if (rc == ERR_OK)
        answer_json(q, MHD_HTTP_OK, out, NULL);
    else if (rc == ERR_NOT_FOUND)
        answer_job_missing(q);
    else
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
}

/* GET /jobs/v2/query?jobType=&jobStatus=: a page of JobResponses (x-ms-max-item-count rows from
 * x-ms-continuation on; the continuation header is left out on the last page). */
static void route_jobs_query(struct rest_req *q)
{
    if (!service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    int page = 0;
    size_t offset = 0;
    const char *hdr_page = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-max-item-count");
    const char *hdr_cont = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-continuation");
    if (restapi_page_size(hdr_page, &page) != ERR_OK) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                      "x-ms-max-item-count must be a positive integer.");
        return;
    }
    if (restapi_continuation(hdr_cont, &offset) != ERR_OK) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "Invalid x-ms-continuation token.");
        return;
    }
    json_t *all = q->r->jobs ? jobs_list(q->r->jobs, q->route.job_type, q->route.job_status) : json_array();
    if (!all) {
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        return;
    }
    size_t total = json_array_size(all);
    json_t *out = json_array();
    for (size_t i = offset; out && i < total && i < offset + (size_t)page; i++)
        json_array_append(out, json_array_get(all, i));
    json_decref(all);
    answer_json(q, MHD_HTTP_OK, out, NULL);
    if (total > offset + (size_t)page)
        snprintf(q->ans.continuation, sizeof q->ans.continuation, "%zu", offset + (size_t)page);
    q->ans.item_type = "jobResponse";
}

/* ---- emulator routes ---- */

static void route_health(struct rest_req *q)
{
    struct hub_stats st;
    memset(&st, 0, sizeof st);
    hub_get_stats(q->r->hub, &st);
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "status", "ok", "devices",
                          (json_int_t)registry_device_count(q->r->reg), "connections", (json_int_t)st.connections,
                          "methodListeners", (json_int_t)st.method_listeners, "desiredListeners",
                          (json_int_t)st.desired_listeners, "callsPending",
                          (json_int_t)st.calls_pending, "telemetryReceived",
                          (json_int_t)(q->r->telemetry ? telemetry_total(q->r->telemetry) : 0));
    if (j && q->r->amqps_port > 0) /* the AMQP listeners, when there are any */
        json_object_set_new(j, "amqpsPort", json_integer(q->r->amqps_port));
    if (j && q->r->amqp_port > 0)
        json_object_set_new(j, "amqpPort", json_integer(q->r->amqp_port));
    answer_json(q, MHD_HTTP_OK, j, NULL);
}

/* GET /emulator/telemetry[/{deviceId}][?top=N]: the kept device-to-cloud messages, oldest first.
 * DELETE /emulator/telemetry forgets them. No authorization, like /health: a development aid. */
static void route_telemetry(struct rest_req *q)
{
    if (!q->r->telemetry) {
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No telemetry log.");
    } else if (strcmp(q->method, "DELETE") == 0) {
        if (q->route.device_id) {
            answer_errorf(q, RESTAPI_METHOD_NOT_ALLOWED, RESTAPI_ENVELOPE_A,
                          "DELETE /emulator/telemetry clears every device's messages.");
            return;
        }
        telemetry_clear(q->r->telemetry);
        answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
    } else if (q->route.top_invalid) {
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "top must be an integer within [1; %d].",
                      RESTAPI_TOP_MAX);
    } else {
        answer_json(q, MHD_HTTP_OK, telemetry_json(q->r->telemetry, q->route.device_id, (size_t)q->route.top), NULL);
    }
}

/* /emulator/consumergroups[/{name}]: the Event Hub-compatible endpoint's consumer groups (the real hub
 * creates them through ARM). GET lists ["$Default",...]; PUT creates (201, or 200 when it exists); DELETE
 * removes (204; $Default cannot be deleted). No authorization, like /health. */
static void route_consumer_groups(struct rest_req *q)
{
    struct eventlog *log = q->r->telemetry ? telemetry_log(q->r->telemetry) : NULL;
    const char *name = q->route.device_id;
    if (!log) {
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No event log.");
    } else if (!name) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < eventlog_group_count(log); i++)
            json_array_append_new(arr, json_string(eventlog_group_at(log, i)));
        answer_json(q, MHD_HTTP_OK, arr, NULL);
    } else if (strcmp(q->method, "PUT") == 0) {
        bool created = false;
        int rc = eventlog_group_add(log, name, &created);
        if (rc == ERR_INVALID)
            answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                          "A consumer group name is 1 to %d letters, digits, '.', '_' or '-'.", EVENTLOG_MAX_GROUP_NAME);
        else if (rc == ERR_TOO_BIG)
            answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "At most %d consumer groups besides $Default.",
                          EVENTLOG_MAX_GROUPS);
        else if (rc)
            answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
        else
            answer_json(q, created ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                        json_pack("{s:s}", "name", eventlog_group_find(log, name)), NULL);
    } else if (strcmp(q->method, "DELETE") == 0) {
        int rc = eventlog_group_del(log, name);
        if (rc == ERR_INVALID)
            answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "$Default cannot be deleted.");
        else if (rc)
            answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No consumer group '%s'.", name);
        else
            answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
    } else if (!eventlog_group_find(log, name)) {
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No consumer group '%s'.", name);
    } else {
        answer_json(q, MHD_HTTP_OK, json_pack("{s:s}", "name", eventlog_group_find(log, name)), NULL);
    }
}

/* /emulator/faults (README "Testing failures"): GET lists the active faults, POST adds one (JSON), DELETE
 * clears them all or /emulator/faults/{id} one. No authorization, like the other /emulator routes. */
static void route_faults(struct rest_req *q)
{
    struct faults *f = q->r->faults;
    char *end = NULL;
    unsigned long long id = q->route.device_id ? strtoull(q->route.device_id, &end, 10) : 0;
    if (!f) {
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "Fault injection is not available.");
    } else if (q->route.device_id && (strcmp(q->method, "DELETE") != 0 || !end || *end || id == 0)) {
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "Only DELETE /emulator/faults/{id} (a numeric id).");
    } else if (strcmp(q->method, "DELETE") == 0) {
        size_t n = faults_control_clear(f, id);
        if (id && n == 0)
            answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No active fault %llu.", id);
        else
            answer_json(q, MHD_HTTP_OK, json_pack("{s:I}", "cleared", (json_int_t)n), NULL);
    } else if (strcmp(q->method, "GET") == 0) {
        answer_json(q, MHD_HTTP_OK, faults_control_list(f), NULL);
    } else if (q->body_seen > q->body_cap) {
        answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, RESTAPI_ENVELOPE_A, "The request body is over %zu bytes.",
                      q->body_cap);
    } else {
        char err[256] = "";
        json_t *made = NULL;
        int rc = faults_control_add(f, (const char *)q->body.data, q->body.len, &made, err, sizeof err);
        if (rc == ERR_OK)
            answer_json(q, MHD_HTTP_CREATED, made, NULL);
        else if (rc == ERR_INVALID)
            answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", err);
        else
            answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
    }
}

/* Injected REST faults (POST /emulator/faults {"fault":"rest"}) and the --throttle registry limit, for the
 * hub's own routes. True when q was answered here. */
static bool rest_faulted(struct rest_req *q)
{
    enum restapi_route_kind k = q->route.kind;
    enum restapi_envelope env = k == RESTAPI_ROUTE_METHOD ? RESTAPI_ENVELOPE_B : RESTAPI_ENVELOPE_A;
    char path[512];
    size_t n = strcspn(q->uri, "?");
    snprintf(path, sizeof path, "%.*s", (int)(n < sizeof path ? n : sizeof path - 1), q->uri);
    int status = 0, retry = 0;
    if (faults_rest(q->r->faults, q->method, path, &status, &retry)) {
        if (status == 429)
            answer_throttled(q, env, retry);
        else
            answer_errorf(q, status == 500 ? RESTAPI_SERVER_ERROR : RESTAPI_SERVICE_UNAVAILABLE, env,
                          "%s (fault injection).", status == 500 ? "Internal server error" : "Service unavailable");
        q->ans.retry_after_s = retry;
        return true;
    }
    bool registry = k == RESTAPI_ROUTE_DEVICES || k == RESTAPI_ROUTE_DEVICE || k == RESTAPI_ROUTE_MODULES ||
                    k == RESTAPI_ROUTE_MODULE;
    if (registry && !faults_throttle_take(q->r->faults, FAULTS_OP_REGISTRY, 1, &retry)) {
        log_info("http %s %.200s: throttled (identity registry operations)", q->method, q->uri);
        answer_throttled(q, env, retry);
        return true;
    }
    return false;
}

/* Reads the CA file (at most REST_CA_MAX bytes). Returns malloc'd text or NULL. */
static char *read_ca(const char *path, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, REST_CA_MAX);
    char chunk[4096];
    size_t n;
    int rc = ERR_OK;
    while (rc == ERR_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(&b, chunk, n);
    bool failed = rc != ERR_OK || ferror(f);
    fclose(f);
    *len = b.len;
    char *text = failed ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    return text;
}

static void route_ca_pem(struct rest_req *q)
{
    size_t len = 0;
    char *pem = read_ca(q->r->ca_pem_path, &len);
    if (!pem || len == 0) {
        free(pem);
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No CA certificate is available.");
        return;
    }
    answer_set(q, MHD_HTTP_OK, pem, len, "application/x-pem-file");
}

/* ---- request dispatch ---- */

static void route_identity(struct rest_req *q)
{
    if (strcmp(q->method, "GET") == 0)
        identity_get(q);
    else if (strcmp(q->method, "PUT") == 0)
        identity_put(q);
    else
        identity_delete(q);
}

static void handle_request(struct rest_req *q)
{
    struct restapi_route *rt = &q->route;
    if (rt->kind == RESTAPI_ROUTE_QUERY && strcmp(q->method, "POST") != 0)
        rt->kind = RESTAPI_ROUTE_DEVICE; /* GET/PUT/DELETE /devices/query: a device named "query" */
    if (q->r->shutting_down)
        answer_errorf(q, RESTAPI_SERVICE_UNAVAILABLE, RESTAPI_ENVELOPE_A, "The emulator is shutting down.");
    else if (q->route_rc == ERR_MALFORMED)
        answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "Invalid percent-encoding in the path.");
    else if (q->route_rc != ERR_OK)
        answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
    else if (rt->kind == RESTAPI_ROUTE_NONE)
        answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No such resource.");
    else if (!restapi_route_allows(rt->kind, q->method)) {
        answer_errorf(q, RESTAPI_METHOD_NOT_ALLOWED, RESTAPI_ENVELOPE_A, "The resource does not support %s.",
                      q->method);
        q->ans.allow = restapi_route_allow(rt->kind);
    } else if (rt->kind == RESTAPI_ROUTE_HEALTH)
        route_health(q);
    else if (rt->kind == RESTAPI_ROUTE_CA_PEM)
        route_ca_pem(q);
    else if (rt->kind == RESTAPI_ROUTE_TELEMETRY)
        route_telemetry(q);
    else if (rt->kind == RESTAPI_ROUTE_CONSUMER_GROUPS || rt->kind == RESTAPI_ROUTE_CONSUMER_GROUP)
        route_consumer_groups(q);
    else if (rt->kind == RESTAPI_ROUTE_FAULTS)
        route_faults(q);
    else if (rest_faulted(q))
        return;
    else if (rt->kind == RESTAPI_ROUTE_METHOD)
        route_method(q);
    else if (rt->kind == RESTAPI_ROUTE_DEVICES)
        route_devices(q);
    else if (rt->kind == RESTAPI_ROUTE_MODULES)
        route_modules(q);
    else if (rt->kind == RESTAPI_ROUTE_C2D_PURGE)
        route_c2d_purge(q);
    else if (rt->kind == RESTAPI_ROUTE_C2D_RECEIVE)
        route_c2d_receive(q);
    else if (rt->kind == RESTAPI_ROUTE_C2D_LOCK || rt->kind == RESTAPI_ROUTE_C2D_ABANDON)
        route_c2d_settle(q, rt->kind == RESTAPI_ROUTE_C2D_ABANDON);
    else if (rt->kind == RESTAPI_ROUTE_D2C_EVENTS)
        route_d2c_events(q);
    else if (rt->kind == RESTAPI_ROUTE_TWIN)
        route_twin(q);
    else if (rt->kind == RESTAPI_ROUTE_QUERY)
        route_query(q);
    else if (rt->kind == RESTAPI_ROUTE_JOB)
        route_job(q);
    else if (rt->kind == RESTAPI_ROUTE_JOB_CANCEL)
        route_job_cancel(q);
    else if (rt->kind == RESTAPI_ROUTE_JOBS_QUERY)
        route_jobs_query(q);
    else if (rt->kind == RESTAPI_ROUTE_STATS_DEVICES || rt->kind == RESTAPI_ROUTE_STATS_SERVICE)
        route_statistics(q);
    else
        route_identity(q);
}

static size_t body_cap_of(enum restapi_route_kind kind)
{
    switch (kind) {
    case RESTAPI_ROUTE_METHOD:
        return REST_METHOD_BODY_MAX;
    case RESTAPI_ROUTE_DEVICE:
    case RESTAPI_ROUTE_MODULE:
        return REST_REGISTRY_BODY_MAX;
    case RESTAPI_ROUTE_TWIN:
        return REST_TWIN_BODY_MAX;
    case RESTAPI_ROUTE_QUERY:
        return REST_QUERY_BODY_MAX;
    case RESTAPI_ROUTE_JOB:
        return REST_TWIN_BODY_MAX; /* a twin patch or a method payload (128 KiB) */
    case RESTAPI_ROUTE_DEVICES:
        return REST_BULK_BODY_MAX;
    case RESTAPI_ROUTE_D2C_EVENTS:
        return 256u * 1024u; /* the hub's device-to-cloud message limit */
    default:
        return REST_OTHER_BODY_MAX;
    }
}

static enum MHD_Result start_request(struct rest_req *q, struct MHD_Connection *conn, const char *method)
{
    set_state(q->r, conn, RC_BUSY); /* the head is complete */
    q->conn = conn;
    q->started = true;
    q->started_ms = loop_now_ms(q->r->loop);
    snprintf(q->method, sizeof q->method, "%s", method ? method : "");
    q->route_rc = restapi_route_parse(q->uri, &q->route);
    q->body_cap = dash_owns(q->uri) ? dash_body_max() : body_cap_of(q->route.kind);
    buf_init(&q->body, q->body_cap);
    return MHD_YES;
}

/* Appends upload data up to the cap; past it only counts. False when the connection should be dropped. */
static bool take_upload(struct rest_req *q, const char *data, size_t len)
{
    q->body_seen += len;
    if (q->body_seen <= q->body_cap && buf_append(&q->body, data, len) != ERR_OK)
        q->body_seen = q->body_cap + 1; /* out of memory: answered as too large */
    return q->body_seen <= REST_DROP_AFTER;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_size, void **req_cls)
{
    struct rest_req *q = *req_cls;
    if (!q)
        return MHD_NO;
    if (!q->started)
        return start_request(q, conn, method);
    if (!q->handled) {
        if (*upload_size) {
            bool keep = take_upload(q, upload_data, *upload_size);
            *upload_size = 0;
            return keep ? MHD_YES : MHD_NO;
        }
        q->handled = true;
        if (q->r->dash && dash_owns(q->uri)) /* the dashboard answers by itself (dash.c) */
            return dash_serve(q->r->dash, conn, q->method, q->uri, q->body.data, q->body.len, q->body_seen);
        handle_request(q);
        if (q->suspended)
            return MHD_YES;
    }
    if (q->gone || !q->answered)
        return MHD_NO;
    return queue_answer(q);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    set_state(cls, conn, RC_HEAD);
    struct rest_req *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->r = cls;
    q->watch_fd = -1;
    q->uri = strndup(uri ? uri : "", REST_URI_MAX);
    if (!q->uri) {
        free(q);
        return NULL;
    }
    return q;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    set_state(cls, conn, RC_IDLE);
    struct rest_req *q = *req_cls;
    if (!q)
        return;
    *req_cls = NULL;
    if (q->call_id) {
        hub_call_cancel(q->r->hub, q->call_id);
        log_call(q, "caller went away", LOG_NO_CODE);
    }
    if (q->suspended) {
        q->suspended = false; /* only at daemon stop; the list is being torn down by rest_free */
        unwatch(q);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("http %s %.200s: ended early (%d)", q->method, q->uri, (int)toe);
    restapi_route_cleanup(&q->route);
    restapi_method_cleanup(&q->call);
    buf_cleanup(&q->body);
    answer_clear(&q->ans);
    free(q->uri);
    free(q);
}

/* ---- lifecycle ---- */

/* Resolves bind:port for the dev listener. */
static int listen_addr(const char *bind, int port, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port < 0 ? 0 : port);
    int gai = getaddrinfo(bind ? bind : "127.0.0.1", service, &hints, &res);
    if (gai != 0 || !res) {
        snprintf(err, errlen, "cannot resolve bind address %s: %s", bind ? bind : "127.0.0.1", gai_strerror(gai));
        return ERR_INVALID;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return ERR_OK;
}

static struct MHD_Daemon *start_daemon(struct rest *r, const struct rest_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    bool listening = cfg->http_port != 0;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (!listening)
        flags |= MHD_USE_NO_LISTEN_SOCKET;
    else if (listen_addr(cfg->bind, cfg->http_port, &ss, err, errlen) != ERR_OK)
        return NULL;
    if (listening && ss.ss_family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK; /* "::" takes IPv4 too */
    /* The listener options come last: without a listener MHD_OPTION_END stops the list before them. */
    /* MHD's own limit (default about 1,020, which locked REST out: issue 23) sits above --max-connections,
     * which net enforces, with slack for connections net has closed and MHD has not yet noticed. Its
     * inactivity timeout is the idle timeout: it covers a request whose body or answer stalls. */
    unsigned limit = cfg->max_connections ? cfg->max_connections : 20000u;
    limit = limit > 1000000u ? 2000064u : limit * 2u + 64u;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, r, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, r, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, r, MHD_OPTION_NOTIFY_COMPLETED, on_completed, r, MHD_OPTION_NOTIFY_CONNECTION, on_connection, r,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)REST_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)r->idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT, limit,
        listening ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_END, (struct sockaddr *)&ss, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_END);
    if (!d)
        snprintf(err, errlen, "cannot start the HTTP server%s%s (port %d): %s", listening ? " on " : "",
                 listening ? (cfg->bind ? cfg->bind : "127.0.0.1") : "", cfg->http_port, strerror(errno));
    return d;
}

/* A dashboard stream was resumed: let MHD run soon. */
static void dash_wake(void *ctx)
{
    arm(ctx, 0);
}

struct rest *rest_new(const struct rest_config *cfg, char *err, size_t errlen)
{
    struct rest *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = cfg->loop;
    r->hub = cfg->hub;
    r->reg = cfg->reg;
    r->auth = cfg->auth;
    r->telemetry = cfg->telemetry;
    r->faults = cfg->faults;
    r->c2d = cfg->c2d;
    r->jobs = cfg->jobs;
    r->skew_s = cfg->token_skew_s;
    r->head_timeout_s = cfg->head_timeout_s > 0 ? cfg->head_timeout_s : REST_HEAD_TIMEOUT_S;
    r->idle_timeout_s = cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : REST_IDLE_TIMEOUT_S;
    r->epfd = -1;
    struct dash_config dc = {.loop = cfg->loop, .hub = cfg->hub, .reg = cfg->reg, .auth = cfg->auth,
                             .telemetry = cfg->telemetry, .c2d = cfg->c2d, .events = cfg->events,
                             .host_name = cfg->host_name, .hub_name = cfg->hub_name, .open = cfg->dashboard_open,
                             .token_skew_s = cfg->token_skew_s, .wake = dash_wake, .wake_ctx = r};
    if (!(r->dash = dash_new(&dc))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->ca_pem_path && !(r->ca_pem_path = strdup(cfg->ca_pem_path))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    r->mhd = start_daemon(r, cfg, err, errlen);
    if (!r->mhd)
        goto fail;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(r->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di || loop_add_fd(r->loop, di->epoll_fd, EPOLLIN, on_mhd_fd, r) != ERR_OK) {
        snprintf(err, errlen, "cannot register the HTTP server in the event loop");
        goto fail;
    }
    r->epfd = di->epoll_fd;
    arm(r, 0);
    return r;
fail:
    rest_free(r);
    return NULL;
}

int rest_add_connection(struct rest *r, int fd, const struct sockaddr *addr, socklen_t len)
{
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (r->shutting_down) {
        close(fd);
        return ERR_CLOSED;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (!addr) {
        addr = (const struct sockaddr *)&lo;
        len = sizeof lo;
    }
    if (MHD_add_connection(r->mhd, fd, addr, len) != MHD_YES) {
        log_warn("rest: cannot add a connection: %s", strerror(errno));
        return ERR_NOMEM;
    }
    arm(r, 0);
    return ERR_OK;
}

void rest_shutdown(struct rest *r)
{
    if (!r || r->shutting_down)
        return;
    r->shutting_down = true;
    dash_shutdown(r->dash);
    MHD_socket ls = MHD_quiesce_daemon(r->mhd);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    while (r->waiting) {
        struct rest_req *q = r->waiting;
        if (q->call_id)
            hub_call_cancel(r->hub, q->call_id);
        q->call_id = 0;
        answer_call_error(q, RESTAPI_SERVICE_UNAVAILABLE, RESTAPI_INFO_EMPTY, 0, "The emulator is shutting down.");
        log_call(q, q->ans.errorcode, (int)q->ans.status);
        resume(q);
    }
    arm(r, 0);
}

void rest_free(struct rest *r)
{
    if (!r)
        return;
    while (r->waiting) {
        struct rest_req *q = r->waiting;
        if (q->call_id)
            hub_call_cancel(r->hub, q->call_id);
        q->call_id = 0;
        q->gone = true;
        resume(q);
    }
    if (r->epfd >= 0)
        loop_del_fd(r->loop, r->epfd);
    loop_timer_cancel(r->loop, r->timer);
    r->timer = NULL;
    dash_shutdown(r->dash); /* its streams end, so none is left suspended */
    if (r->mhd) {
        MHD_run(r->mhd);
        MHD_stop_daemon(r->mhd); /* notifies every connection closed: r->conns empties */
    }
    dash_free(r->dash);
    loop_timer_cancel(r->loop, r->sweep);
    free(r->by_fd);
    verified_cleanup(r);
    free(r->ca_pem_path);
    free(r);
}

void rest_set_amqp_ports(struct rest *r, int amqps_port, int amqp_port)
{
    r->amqps_port = amqps_port;
    r->amqp_port = amqp_port;
}

int rest_actual_http_port(struct rest *r)
{
    if (!r || !r->mhd)
        return 0;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(r->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? (int)di->port : 0;
}
