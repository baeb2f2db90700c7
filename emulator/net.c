/* net.c -- listeners, accepted connections and their byte plumbing (see net.h and conn.h): TCP with optional
 * OpenSSL TLS, per-connection input buffer and output queue (written once per loop iteration), the :443
 * sniff (WebSocket upgrade -> MQTT session, anything else -> REST over a socketpair), deadlines, and reaping
 * closed connections outside any callback. */
#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "ws.h"

#define NET_READ_CHUNK 16384
#define NET_OUT_MAX (8u * 1024u * 1024u)   /* queued bytes per connection before it is closed as too slow */
#define NET_OUT_PAUSE (1u * 1024u * 1024u) /* stop reading a client while this much waits to be sent */
#define NET_LINGER_MS 5000                 /* how long a closing connection may take to flush */

enum conn_proto { PROTO_MQTT, PROTO_SNIFF, PROTO_WS, PROTO_PROXY };

struct conn {
    struct net *net;
    int fd;
    SSL *ssl;
    bool handshaking;
    bool ssl_wants_write; /* an SSL_read/SSL_write needs the socket writable */
    bool closing;
    bool dead;
    bool flush_queued;
    enum conn_proto proto;
    const char *transport;
    char peer[64];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t events;
    struct buf in;
    struct buf out;
    struct ws_stream ws;
    struct buf ws_app;
    struct session *session;
    int proxy_fd;
    uint32_t proxy_events;
    struct buf proxy_out;
    struct loop_timer *deadline;
    struct conn *prev, *next;       /* all connections */
    struct conn *next_flush;        /* connections with output to write this iteration */
};

struct net {
    struct loop *loop;
    struct net_config cfg;
    int listen_fd[NET_LISTENERS];
    int port[NET_LISTENERS];
    struct conn *conns;
    size_t nconns;
    struct conn *flush_list;
    bool has_dead;
};

static void conn_update_events(struct conn *c);
static void conn_process(struct conn *c);

/* ---- output ---- */

static void queue_flush(struct conn *c)
{
    if (c->flush_queued || c->dead)
        return;
    c->flush_queued = true;
    c->next_flush = c->net->flush_list;
    c->net->flush_list = c;
}

static void mark_dead(struct conn *c)
{
    c->dead = true;
    c->closing = true;
    c->net->has_dead = true;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "connection reset";
}

/* Writes as much of out as the socket takes. */
static void conn_flush(struct conn *c)
{
    c->ssl_wants_write = false;
    while (c->out.len > 0 && !c->dead) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.data, (int)(c->out.len > 1 << 30 ? 1 << 30 : c->out.len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    c->ssl_wants_write = true;
                else if (e != SSL_ERROR_WANT_READ)
                    mark_dead(c);
                break;
            }
            n = r;
        } else {
            n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                    mark_dead(c);
                if (errno == EAGAIN)
                    c->ssl_wants_write = true; /* same meaning: wait for EPOLLOUT */
                break;
            }
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->closing && c->out.len == 0)
        mark_dead(c);
}

int conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return ERR_CLOSED;
    int rc = c->proto == PROTO_WS ? ws_encode_binary(&c->out, data, len) : buf_append(&c->out, data, len);
    if (rc) {
        log_warn("%s: output queue full (%zu bytes waiting); closing", c->peer, c->out.len);
        mark_dead(c);
        return rc;
    }
    queue_flush(c);
    return ERR_OK;
}

static void on_linger_timeout(struct loop *l, void *ctx)
{
    struct conn *c = ctx;
    c->deadline = NULL;
    mark_dead(c);
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    log_debug("%s: closing (%s)", c->peer, reason);
    if (c->deadline)
        loop_timer_cancel(c->net->loop, c->deadline);
    c->deadline = loop_timer_add(c->net->loop, NET_LINGER_MS, on_linger_timeout, c);
    if (c->out.len == 0 || !c->deadline)
        mark_dead(c);
    else
        queue_flush(c);
}

void conn_established(struct conn *c)
{
    if (c->deadline && !c->closing) {
        loop_timer_cancel(c->net->loop, c->deadline);
        c->deadline = NULL;
    }
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

const char *conn_transport(const struct conn *c)
{
    return c->transport;
}

/* ---- the REST proxy (plaintext over a socketpair to libmicrohttpd) ---- */

static void proxy_flush(struct conn *c)
{
    while (c->proxy_out.len > 0) {
        ssize_t n = send(c->proxy_fd, c->proxy_out.data, c->proxy_out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_close(c, "REST server closed");
            break;
        }
        buf_consume(&c->proxy_out, (size_t)n);
    }
}

static void proxy_update_events(struct conn *c)
{
    if (c->proxy_fd < 0)
        return;
    uint32_t want = (c->out.len < NET_OUT_PAUSE ? EPOLLIN : 0) | (c->proxy_out.len ? EPOLLOUT : 0);
    if (want != c->proxy_events && loop_mod_fd(c->net->loop, c->proxy_fd, want) == ERR_OK)
        c->proxy_events = want;
}

static void on_proxy_io(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct conn *c = ctx;
    if (c->dead)
        return;
    if (events & EPOLLOUT)
        proxy_flush(c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        uint8_t chunk[NET_READ_CHUNK];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            if (buf_append(&c->out, chunk, (size_t)n) == ERR_OK)
                queue_flush(c);
            else
                mark_dead(c);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            loop_del_fd(l, fd);
            close(fd);
            c->proxy_fd = -1;
            conn_close(c, "HTTP exchange finished");
            return;
        }
    }
    proxy_update_events(c);
    conn_update_events(c);
}

static bool start_proxy(struct conn *c)
{
    int sv[2];
    if (!c->net->cfg.http_handoff || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    if (c->net->cfg.http_handoff(c->net->cfg.http_ctx, sv[1], (struct sockaddr *)&c->addr, c->addrlen)) {
        close(sv[0]);
        close(sv[1]);
        return false;
    }
    if (loop_add_fd(c->net->loop, sv[0], EPOLLIN, on_proxy_io, c)) {
        close(sv[0]);
        return false;
    }
    c->proxy_fd = sv[0];
    c->proxy_events = EPOLLIN;
    c->proto = PROTO_PROXY;
    c->transport = "https";
    buf_init(&c->proxy_out, NET_OUT_MAX);
    c->out.max = NET_OUT_MAX;
    conn_established(c); /* libmicrohttpd applies its own timeouts from here */
    return true;
}

/* ---- input ---- */

static void reply_http_error(struct conn *c, int status, const char *reason)
{
    log_info("%s: HTTPS request refused: %d %s", c->peer, status, reason);
    ws_encode_http_error(&c->out, status, reason);
    queue_flush(c);
    conn_close(c, reason);
}

static void on_sniff(struct conn *c)
{
    struct ws_upgrade up;
    size_t head_len = 0;
    int rc = ws_sniff(c->in.data, c->in.len, &up, &head_len);
    if (rc == ERR_NEED_MORE)
        return;
    if (rc) {
        reply_http_error(c, 400, rc == ERR_TOO_BIG ? "request head too large" : "not an HTTP request");
        return;
    }
    if (up.is_websocket) {
        if (up.offered_protocols && up.protocol[0] == '\0') {
            reply_http_error(c, 400, "the only WebSocket sub-protocol is mqtt");
            return;
        }
        c->session = session_new(&c->net->cfg.session_env, c);
        if (!c->session || ws_encode_accept(&c->out, &up)) {
            conn_close(c, "out of memory");
            return;
        }
        buf_consume(&c->in, head_len);
        ws_stream_init(&c->ws);
        buf_init(&c->ws_app, c->in.max);
        c->proto = PROTO_WS;
        c->transport = "wss";
        queue_flush(c);
        conn_process(c);
        return;
    }
    if (up.path_matches) {
        reply_http_error(c, 400, "expected a WebSocket upgrade on /$iothub/websocket");
        return;
    }
    if (!start_proxy(c)) {
        reply_http_error(c, 503, "the REST server is not available");
        return;
    }
    conn_process(c);
}

static void on_ws_input(struct conn *c)
{
    size_t used = 0;
    int rc = ws_stream_decode(&c->ws, c->in.data, c->in.len, &used, &c->ws_app, &c->out);
    buf_consume(&c->in, used);
    if (c->out.len)
        queue_flush(c);
    if (c->ws_app.len && session_on_input(c->session, &c->ws_app) != ERR_OK)
        return;
    if (rc == ERR_CLOSED)
        conn_close(c, "WebSocket closed by the client");
    else if (rc)
        conn_close(c, rc == ERR_TOO_BIG ? "WebSocket message too large" : "WebSocket protocol error");
}

static void conn_process(struct conn *c)
{
    if (c->closing || c->in.len == 0)
        return;
    switch (c->proto) {
    case PROTO_MQTT:
        session_on_input(c->session, &c->in);
        break;
    case PROTO_SNIFF:
        on_sniff(c);
        break;
    case PROTO_WS:
        on_ws_input(c);
        break;
    case PROTO_PROXY:
        if (buf_append(&c->proxy_out, c->in.data, c->in.len)) {
            conn_close(c, "request too large");
            return;
        }
        c->in.len = 0;
        proxy_flush(c);
        proxy_update_events(c);
        break;
    }
}

/* Reads until the socket (and OpenSSL's buffer) is drained, processing as it goes. */
static void conn_read(struct conn *c)
{
    while (!c->closing) {
        if (buf_reserve(&c->in, NET_READ_CHUNK) && buf_reserve(&c->in, 1)) {
            conn_close(c, "input buffer full");
            return;
        }
        size_t room = c->in.cap - c->in.len;
        if (room > NET_READ_CHUNK)
            room = NET_READ_CHUNK;
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, c->in.data + c->in.len, (int)room);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    c->ssl_wants_write = true;
                else if (e != SSL_ERROR_WANT_READ)
                    mark_dead(c);
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, c->in.data + c->in.len, room, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                mark_dead(c);
                return;
            }
            if (n < 0)
                return;
        }
        c->in.len += (size_t)n;
        conn_process(c);
        if (c->out.len > NET_OUT_PAUSE || (c->proto == PROTO_PROXY && c->proxy_out.len > NET_OUT_PAUSE))
            return; /* back-pressure: resume when the peer has caught up */
    }
}

static void conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = false;
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->ssl_wants_write = e == SSL_ERROR_WANT_WRITE;
        return;
    }
    log_info("%s: TLS handshake failed: %s", c->peer, ssl_reason());
    mark_dead(c);
}

static void conn_update_events(struct conn *c)
{
    if (c->dead)
        return;
    bool paused = c->out.len > NET_OUT_PAUSE || (c->proto == PROTO_PROXY && c->proxy_out.len > NET_OUT_PAUSE);
    uint32_t want = (c->closing || paused ? 0 : EPOLLIN) | (c->out.len || c->ssl_wants_write ? EPOLLOUT : 0);
    if (want != c->events && loop_mod_fd(c->net->loop, c->fd, want) == ERR_OK)
        c->events = want;
}

static void on_conn_io(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct conn *c = ctx;
    if (c->dead)
        return;
    bool handshake_done = false;
    if (c->handshaking) {
        conn_handshake(c);
        if (c->handshaking || c->dead) {
            conn_update_events(c);
            return;
        }
        handshake_done = true; /* application data may already sit in OpenSSL's buffer */
    }
    if (handshake_done || (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_read(c);
    if (!c->dead && (c->out.len || (events & EPOLLOUT)))
        conn_flush(c);
    conn_update_events(c);
}

/* ---- accepting ---- */

static void on_connect_deadline(struct loop *l, void *ctx)
{
    struct conn *c = ctx;
    c->deadline = NULL;
    log_info("%s: no %s within %d s; closing", c->peer, c->proto == PROTO_SNIFF ? "request" : "MQTT CONNECT",
             c->net->cfg.connect_timeout_s);
    mark_dead(c);
}

static void format_peer(const struct sockaddr_storage *a, char *out, size_t outlen)
{
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    getnameinfo((const struct sockaddr *)a, sizeof *a, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, outlen, "%s:%s", host, port);
}

static struct conn *conn_new(struct net *n, int fd, enum net_listener kind)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->net = n;
    c->fd = fd;
    c->proxy_fd = -1;
    buf_init(&c->in, n->cfg.session_env.max_packet + 64 * 1024);
    buf_init(&c->out, NET_OUT_MAX);
    c->proto = kind == NET_HTTPS ? PROTO_SNIFF : PROTO_MQTT;
    c->transport = kind == NET_MQTTS ? "mqtts" : kind == NET_MQTT ? "mqtt" : "https";
    if (kind != NET_MQTT) {
        c->ssl = SSL_new(n->cfg.tls);
        if (!c->ssl || !SSL_set_fd(c->ssl, fd))
            goto fail;
        SSL_set_accept_state(c->ssl);
        c->handshaking = true;
    }
    if (c->proto == PROTO_MQTT && !(c->session = session_new(&n->cfg.session_env, c)))
        goto fail;
    c->deadline = loop_timer_add(n->loop, (int64_t)n->cfg.connect_timeout_s * 1000, on_connect_deadline, c);
    if (!c->deadline || loop_add_fd(n->loop, fd, EPOLLIN, on_conn_io, c))
        goto fail;
    c->events = EPOLLIN;
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->nconns++;
    return c;
fail:
    loop_timer_cancel(n->loop, c->deadline);
    session_free(c->session);
    SSL_free(c->ssl);
    buf_cleanup(&c->in);
    buf_cleanup(&c->out);
    free(c);
    return NULL;
}

static enum net_listener listener_kind(const struct net *n, int fd)
{
    for (int i = 0; i < NET_LISTENERS; i++)
        if (n->listen_fd[i] == fd)
            return (enum net_listener)i;
    return NET_MQTT;
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ctx)
{
    struct net *n = ctx;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (n->nconns >= n->cfg.max_connections) {
            log_warn("connection limit (%zu) reached; refusing a connection", n->cfg.max_connections);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = conn_new(n, fd, listener_kind(n, lfd));
        if (!c) {
            close(fd);
            continue;
        }
        memcpy(&c->addr, &addr, len);
        c->addrlen = len;
        format_peer(&addr, c->peer, sizeof c->peer);
        log_debug("%s: accepted on %s", c->peer, c->transport);
    }
}

/* ---- reaping and flushing (before each wait) ---- */

static void conn_free(struct net *n, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n->nconns--;
    session_free(c->session);
    loop_timer_cancel(n->loop, c->deadline);
    loop_del_fd(n->loop, c->fd);
    if (c->ssl && !c->handshaking) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* best effort close_notify */
    }
    SSL_free(c->ssl);
    close(c->fd);
    if (c->proxy_fd >= 0) {
        loop_del_fd(n->loop, c->proxy_fd);
        close(c->proxy_fd);
    }
    buf_cleanup(&c->in);
    buf_cleanup(&c->out);
    buf_cleanup(&c->ws_app);
    buf_cleanup(&c->proxy_out);
    free(c);
}

static void net_before_wait(struct loop *l, void *ctx)
{
    struct net *n = ctx;
    while (n->flush_list) {
        struct conn *c = n->flush_list;
        n->flush_list = c->next_flush;
        c->flush_queued = false;
        if (!c->dead) {
            conn_flush(c);
            conn_update_events(c);
        }
    }
    if (!n->has_dead)
        return;
    n->has_dead = false;
    struct conn *c = n->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->dead)
            conn_free(n, c);
        c = next;
    }
    /* Freeing sessions may have queued output or deaths elsewhere (takeover, failed calls). */
    if (n->flush_list || n->has_dead)
        net_before_wait(l, ctx);
}

/* ---- listeners ---- */

static int listen_on(const char *bind_addr, int port, int *actual_port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(bind_addr, portstr, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "--bind %s: %s", bind_addr, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s port %d: %s%s", bind_addr, port, strerror(e),
                 e == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : "");
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *actual_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                  : ((struct sockaddr_in *)&sa)->sin_port);
    return fd;
}

struct net *net_new(struct loop *loop, const struct net_config *cfg, char *err, size_t errlen)
{
    struct net *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->loop = loop;
    n->cfg = *cfg;
    int ports[NET_LISTENERS] = {cfg->mqtts_port, cfg->https_port, cfg->mqtt_port};
    for (int i = 0; i < NET_LISTENERS; i++) {
        n->listen_fd[i] = -1;
        n->port[i] = -1;
    }
    for (int i = 0; i < NET_LISTENERS; i++) {
        if (ports[i] < 0)
            continue;
        n->listen_fd[i] = listen_on(cfg->bind, ports[i], &n->port[i], err, errlen);
        if (n->listen_fd[i] < 0 || loop_add_fd(loop, n->listen_fd[i], EPOLLIN, on_accept, n)) {
            net_free(n);
            return NULL;
        }
    }
    if (loop_add_hook(loop, net_before_wait, n)) {
        snprintf(err, errlen, "out of memory");
        net_free(n);
        return NULL;
    }
    return n;
}

int net_port(const struct net *n, enum net_listener which)
{
    return n->port[which];
}

void net_stop_accepting(struct net *n)
{
    for (int i = 0; i < NET_LISTENERS; i++) {
        if (n->listen_fd[i] >= 0) {
            loop_del_fd(n->loop, n->listen_fd[i]);
            close(n->listen_fd[i]);
            n->listen_fd[i] = -1;
        }
    }
}

size_t net_connection_count(const struct net *n)
{
    return n->nconns;
}

void net_free(struct net *n)
{
    if (!n)
        return;
    net_stop_accepting(n);
    while (n->conns)
        conn_free(n, n->conns);
    free(n);
}
