/* rest.c -- the service REST API on libmicrohttpd, driven from the emulator's loop (see rest.h).
 * Layer: HTTP glue. This file runs the daemon in our loop, tracks connections (deadlines, idle state for
 * eviction), owns the request lifecycle (on_uri, on_access, on_completed), suspends and resumes waiting
 * requests and dispatches each request to its route group: rest_answer.c (answers), rest_auth.c (tokens),
 * rest_methods.c, rest_registry.c, rest_twins.c, rest_jobs.c, rest_device.c, rest_emulator.c (routes), all
 * through rest_internal.h. Parsing/validation/rendering are in restapi.c. One struct rest_req per HTTP
 * request, created by MHD's URI callback and freed by its completion callback; a waiting method call keeps
 * its MHD connection suspended until the hub answers. Tests: tests/unit/test_rest_http.c. */
#include "rest.h"
#include "rest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dash.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"

#define REST_REGISTRY_BODY_MAX (64u * 1024u)
#define REST_TWIN_BODY_MAX (256u * 1024u)  /* a whole twin sent back (PUT): 8+32+32 KiB plus metadata */
#define REST_QUERY_BODY_MAX (64u * 1024u)  /* {"query": 8192 characters of up to 4 UTF-8 bytes} */
#define REST_BULK_BODY_MAX (1024u * 1024u) /* POST /devices: up to 100 ExportImportDevice */
#define REST_OTHER_BODY_MAX (16u * 1024u)
#define REST_DROP_AFTER (8u * 1024u * 1024u) /* a body this large closes the connection */
#define REST_URI_MAX 8192
#define REST_HEAD_TIMEOUT_S 30 /* defaults of rest_config's timeouts */
#define REST_IDLE_TIMEOUT_S 240
#define REST_SWEEP_MS 250              /* how often deadlines are checked while connections exist */
#define REST_CONN_MEMORY (16u * 1024u) /* MHD pool: request head + I/O buffers; bodies go to rest_req.body */
#define REST_MAX_TIMER_MS 60000

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
    bool watched;              /* fd is in the loop for EPOLLRDHUP (added at the first suspension, kept) */
    struct rest_req *waiting;  /* the suspended request the hang-up watch is for, or NULL */
    struct rest_conn *prev, *next;
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
    if (rc->watched)
        loop_del_fd(r->loop, rc->fd); /* MHD closes the socket after this notification */
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

/* ---- suspension of a waiting request ---- */

/* The tracked connection of fd, or NULL. */
static struct rest_conn *conn_of_fd(struct rest *r, int fd)
{
    return fd >= 0 && (size_t)fd < r->by_fd_len ? r->by_fd[fd] : NULL;
}

/* A tracked connection's hang-up watch stays in the loop for the connection's life (issue 20: an epoll_ctl
 * add and delete per method call were 2 of ~15 syscalls); only its request is cleared. An untracked
 * connection's watch (out of memory at its start) is per request. */
static void unwatch(struct rest_req *q)
{
    struct rest_conn *rc = conn_of_fd(q->r, q->watch_fd);
    if (rc && rc->watched && rc->waiting == q)
        rc->waiting = NULL;
    else if (q->watch_fd >= 0)
        loop_del_fd(q->r->loop, q->watch_fd);
    q->watch_fd = -1;
}

/* Takes q off the waiting list. */
static void waiting_remove(struct rest_req *q)
{
    struct rest *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->waiting = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    q->suspended = false;
}

void rest_unsuspend(struct rest_req *q)
{
    if (q->suspended)
        waiting_remove(q);
}

void rest_resume(struct rest_req *q)
{
    struct rest *r = q->r;
    if (!q->suspended)
        return;
    waiting_remove(q);
    if (q->front) {
        rest_front_resumed(q);
        return;
    }
    unwatch(q);
    MHD_resume_connection(q->conn);
    arm(r, 0);
}

static void on_peer_gone(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct rest_req *q = ctx;
    if (q->call_id)
        hub_call_cancel(q->r->hub, q->call_id);
    q->call_id = 0;
    rest_log_call(q, "caller went away", REST_LOG_NO_CODE);
    q->gone = true;
    rest_resume(q);
}

/* A hang-up on a tracked connection: the waiting request's caller went away; with none waiting MHD is serving
 * the connection and sees the hang-up itself, so the watch leaves the loop (level-triggered, it would fire
 * again) until the next suspension. */
static void on_conn_gone(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct rest_conn *rc = ctx;
    if (rc->waiting) {
        on_peer_gone(l, fd, events, rc->waiting);
        return;
    }
    loop_del_fd(l, fd);
    rc->watched = false;
}

void rest_suspend(struct rest_req *q)
{
    struct rest *r = q->r;
    q->suspended = true;
    q->next = r->waiting;
    if (r->waiting)
        r->waiting->prev = q;
    r->waiting = q;
    if (q->front)
        return; /* the front's connection is read by net, which reports a hang-up itself */
    MHD_suspend_connection(q->conn);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    struct rest_conn *rc = conn_of_fd(r, ci->connect_fd);
    if (rc && !rc->watched && loop_add_fd(r->loop, rc->fd, EPOLLRDHUP, on_conn_gone, rc) == ERR_OK)
        rc->watched = true;
    if (rc && rc->watched) {
        rc->waiting = q;
        q->watch_fd = rc->fd;
    } else if (!rc && loop_add_fd(r->loop, ci->connect_fd, EPOLLRDHUP, on_peer_gone, q) == ERR_OK) {
        q->watch_fd = ci->connect_fd;
    }
}

/* ---- request dispatch ---- */

typedef void rest_route_fn(struct rest_req *q);

/* The emulator's own routes: no injected faults, no throttling. */
static rest_route_fn *const emulator_routes[] = {
    [RESTAPI_ROUTE_HEALTH] = rest_route_health,
    [RESTAPI_ROUTE_CA_PEM] = rest_route_ca_pem,
    [RESTAPI_ROUTE_TELEMETRY] = rest_route_telemetry,
    [RESTAPI_ROUTE_CONSUMER_GROUPS] = rest_route_consumer_groups,
    [RESTAPI_ROUTE_CONSUMER_GROUP] = rest_route_consumer_groups,
    [RESTAPI_ROUTE_FAULTS] = rest_route_faults,
};

/* The hub's routes, after rest_faulted. */
static rest_route_fn *const hub_routes[] = {
    [RESTAPI_ROUTE_METHOD] = rest_route_method,
    [RESTAPI_ROUTE_DEVICES] = rest_route_devices,
    [RESTAPI_ROUTE_DEVICE] = rest_route_identity,
    [RESTAPI_ROUTE_MODULES] = rest_route_modules,
    [RESTAPI_ROUTE_MODULE] = rest_route_identity,
    [RESTAPI_ROUTE_C2D_PURGE] = rest_route_c2d_purge,
    [RESTAPI_ROUTE_D2C_EVENTS] = rest_route_d2c_events,
    [RESTAPI_ROUTE_C2D_RECEIVE] = rest_route_c2d_receive,
    [RESTAPI_ROUTE_C2D_LOCK] = rest_route_c2d_complete,
    [RESTAPI_ROUTE_C2D_ABANDON] = rest_route_c2d_abandon,
    [RESTAPI_ROUTE_TWIN] = rest_route_twin,
    [RESTAPI_ROUTE_QUERY] = rest_route_query,
    [RESTAPI_ROUTE_STATS_DEVICES] = rest_route_statistics,
    [RESTAPI_ROUTE_STATS_SERVICE] = rest_route_statistics,
    [RESTAPI_ROUTE_JOB] = rest_route_job,
    [RESTAPI_ROUTE_JOB_CANCEL] = rest_route_job_cancel,
    [RESTAPI_ROUTE_JOBS_QUERY] = rest_route_jobs_query,
};

#define ROUTE_OF(table, kind) ((size_t)(kind) < sizeof table / sizeof table[0] ? table[kind] : NULL)

void rest_dispatch(struct rest_req *q)
{
    struct restapi_route *rt = &q->route;
    if (rt->kind == RESTAPI_ROUTE_QUERY && strcmp(q->method, "POST") != 0)
        rt->kind = RESTAPI_ROUTE_DEVICE; /* GET/PUT/DELETE /devices/query: a device named "query" */
    if (q->r->shutting_down)
        rest_answer_errorf(q, RESTAPI_SERVICE_UNAVAILABLE, RESTAPI_ENVELOPE_A, "The emulator is shutting down.");
    else if (q->route_rc == ERR_MALFORMED)
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "Invalid percent-encoding in the path.");
    else if (q->route_rc != ERR_OK)
        rest_answer_nomem(q);
    else if (rt->kind == RESTAPI_ROUTE_NONE)
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No such resource.");
    else if (!restapi_route_allows(rt->kind, q->method)) {
        rest_answer_errorf(q, RESTAPI_METHOD_NOT_ALLOWED, RESTAPI_ENVELOPE_A, "The resource does not support %s.",
                           q->method);
        q->ans.allow = restapi_route_allow(rt->kind);
    } else if (ROUTE_OF(emulator_routes, rt->kind))
        ROUTE_OF(emulator_routes, rt->kind)(q);
    else if (!ROUTE_OF(hub_routes, rt->kind))
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No such resource."); /* a kind with no handler */
    else if (!rest_faulted(q))
        ROUTE_OF(hub_routes, rt->kind)(q);
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

void rest_req_start(struct rest_req *q, const char *method)
{
    q->started = true;
    q->started_ms = loop_now_ms(q->r->loop);
    size_t mlen = method ? strnlen(method, sizeof q->method - 1) : 0;
    memcpy(q->method, method ? method : "", mlen);
    q->method[mlen] = '\0';
    q->route_rc = restapi_route_parse(q->uri, &q->route);
    q->body_cap = dash_owns(q->uri) ? dash_body_max() : body_cap_of(q->route.kind);
    buf_init(&q->body, q->body_cap);
}

static enum MHD_Result start_request(struct rest_req *q, struct MHD_Connection *conn, const char *method)
{
    set_state(q->r, conn, RC_BUSY); /* the head is complete */
    q->conn = conn;
    rest_req_start(q, method);
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
        rest_dispatch(q);
        if (q->suspended)
            return MHD_YES;
    }
    if (q->gone || !q->answered)
        return MHD_NO;
    return rest_queue_answer(q);
}

struct rest_req *rest_req_new(struct rest *r, const char *uri, size_t len)
{
    struct rest_req *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->r = r;
    q->watch_fd = -1;
    q->uri = strndup(uri ? uri : "", len < REST_URI_MAX ? len : REST_URI_MAX);
    if (!q->uri) {
        free(q);
        return NULL;
    }
    return q;
}

void rest_req_free(struct rest_req *q)
{
    restapi_route_cleanup(&q->route);
    restapi_method_cleanup(&q->call);
    buf_cleanup(&q->body);
    rest_answer_clear(&q->ans);
    free(q->authz);
    free(q->uri);
    free(q);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    set_state(cls, conn, RC_HEAD);
    return rest_req_new(cls, uri, uri ? strlen(uri) : 0);
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
        rest_log_call(q, "caller went away", REST_LOG_NO_CODE);
    }
    if (q->suspended) {
        q->suspended = false; /* only at daemon stop; the list is being torn down by rest_free */
        unwatch(q);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("http %s %.200s: ended early (%d)", q->method, q->uri, (int)toe);
    rest_req_free(q);
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
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, 0, NULL, NULL, on_access, r, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, r,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, r, MHD_OPTION_NOTIFY_COMPLETED, on_completed, r,
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, r, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                         (size_t)REST_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)r->idle_timeout_s,
                         MHD_OPTION_CONNECTION_LIMIT, limit, listening ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_END,
                         (struct sockaddr *)&ss, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
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

/* The --hostname names a browser's Host may use (rest_emulator.c, browser.h). */
static int copy_host_names(struct rest *r, const struct rest_config *cfg)
{
    const char *one[] = {cfg->host_name};
    const char *const *names = cfg->n_host_names ? cfg->host_names : one;
    size_t n = cfg->n_host_names ? cfg->n_host_names : (cfg->host_name ? 1 : 0);
    if (n == 0)
        return ERR_OK;
    if (!(r->host_names = calloc(n, sizeof *r->host_names)))
        return ERR_NOMEM;
    for (; r->n_host_names < n; r->n_host_names++)
        if (!(r->host_names[r->n_host_names] = strdup(names[r->n_host_names])))
            return ERR_NOMEM;
    return ERR_OK;
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
    rest_front_init(r);
    struct dash_config dc = {.loop = cfg->loop, .hub = cfg->hub, .reg = cfg->reg, .auth = cfg->auth,
                             .telemetry = cfg->telemetry, .c2d = cfg->c2d, .events = cfg->events,
                             .host_name = cfg->host_name, .hub_name = cfg->hub_name, .open = cfg->dashboard_open,
                             .token_skew_s = cfg->token_skew_s, .wake = dash_wake, .wake_ctx = r};
    if (!(r->dash = dash_new(&dc))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (copy_host_names(r, cfg) != ERR_OK) {
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

/* Cancels every waiting method call in the hub and resumes its request: answered 503 (answer), or dropped. */
static void end_waiting(struct rest *r, bool answer)
{
    while (r->waiting) {
        struct rest_req *q = r->waiting;
        if (q->call_id)
            hub_call_cancel(r->hub, q->call_id);
        q->call_id = 0;
        if (answer)
            rest_call_failed(q, RESTAPI_SERVICE_UNAVAILABLE, "The emulator is shutting down.");
        else
            q->gone = true;
        rest_resume(q);
    }
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
    end_waiting(r, true);
    arm(r, 0);
}

void rest_free(struct rest *r)
{
    if (!r)
        return;
    end_waiting(r, false);
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
    rest_front_cleanup(r);
    rest_auth_cleanup(r);
    free(r->ca_pem_path);
    for (size_t i = 0; i < r->n_host_names; i++)
        free(r->host_names[i]);
    free(r->host_names);
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
