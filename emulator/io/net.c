/* net.c -- listeners, accepted connections and their byte plumbing (see net.h and conn.h): TCP with optional
 * OpenSSL TLS, per-connection input buffer and output queue (written once per loop iteration), the :443
 * sniff (WebSocket upgrade -> the front its sub-protocol names, anything else -> REST over a socketpair), deadlines, and reaping
 * closed connections outside any callback. Idle connections keep no buffer storage (freed when empty).
 * Protocol fronts (proto.h) get the plaintext. Tests: tests/unit/test_net.c. */
#include "net.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "proto.h"
#include "ws.h"

#define NET_READ_CHUNK 16384
#define NET_OUT_MAX (8u * 1024u * 1024u)   /* queued bytes per connection before it is closed as too slow */
#define NET_OUT_PAUSE (1u * 1024u * 1024u) /* stop reading a client while this much waits to be sent */
#define NET_LINGER_MS 5000                 /* how long a closing connection may take to flush */
#define NET_DRAIN_MAX (256u * 1024u)       /* unread input discarded before close(), so it sends FIN, not RST */
#define NET_ACCEPT_RETRY_MS 250            /* out of fds: pause accepting this long instead of spinning */
/* Fairness (issue 23): a connection's turn (at most one per loop iteration) reads and processes input for
 * about NET_TURN_NS; then the other ready connections, the timers and the hooks run before it gets another.
 * A turn starts with a NET_TURN_FIRST read and sizes the next reads by the time the bytes so far took: small
 * packets (a QoS 0 flood) get ~2 KiB a turn, bulk bytes (a 100 KiB body) several 16 KiB reads. A fixed 2 KiB
 * turn cost 100 KiB method calls a third of their rate; fixed 16 KiB turns let a flood make every hop of a
 * neighbour's call wait ~0.3 ms. Level-triggered epoll reports a socket that still holds data again; input
 * OpenSSL already holds is not reported, so such a connection waits on the net's ready list (served once per
 * loop iteration) and the loop is told not to block. */
#define NET_TURN_NS 8000
#define NET_TURN_FIRST 2048u
#define NET_TURN_MIN 512u
#define NET_DIRECT_MIN 1024u /* free room in a partial frame's buffer worth a read straight into it */
/* A message this large for a plain connection with nothing queued is written at once from the sender's memory
 * (sendmsg), not copied into the queue first: a 100 KiB call or answer (issue 20). Smaller ones are queued
 * and written together once per loop iteration. Over TLS every message is queued: OpenSSL copies anyway. */
#define NET_WRITE_THROUGH 16384u
#define NET_SENDV_MAX 8
/* What a connection may send before it authenticates (MQTT CONNECT accepted): WebSocket control frames and
 * the upgrade request count. Past it the connection is closed: no credentials, no unbounded work. */
#define NET_PREAUTH_SLACK (64u * 1024u) /* on top of two of the front's largest frames */
/* After a burst: once the connection count has fallen this far below its peak (and to half of it), freed
 * memory goes back to the system. glibc keeps it otherwise: 2,000 half-open TLS handshakes (~45 KiB each in
 * OpenSSL, mostly its 21 KiB handshake buffer) left RSS at 98 MB after they closed (issue 23). */
#define NET_TRIM_DROP 512
#define NET_TRIM_DELAY_MS 200

enum conn_proto { PROTO_STREAM, PROTO_SNIFF, PROTO_WS, PROTO_PROXY }; /* STREAM: bytes straight to the front */

struct conn {
    struct net *net;
    int fd;
    SSL *ssl;
    bool handshaking;
    bool read_wants_write; /* the handshake or an SSL_read needs the socket writable */
    bool read_drained;     /* the last conn_read ended on "wait": OpenSSL holds at most a partial record */
    bool write_wants_read; /* an SSL_write needs the socket readable */
    bool ssl_fatal;        /* OpenSSL reported a fatal error: no SSL_shutdown */
    bool closing;
    bool dead;
    bool aborted; /* conn_abort: no flush, no close_notify, RST on close */
    bool flush_queued;
    bool ready_queued;     /* on the net's ready list: OpenSSL holds input its turn did not get to */
    bool established;      /* conn_established was called (authenticated, or handed to the REST server) */
    bool handoff;          /* the HTTP front asked to hand the connection to the REST server (conn_handoff_http) */
    bool reinput;          /* the front can take input again (conn_input_ready): process in on the ready list */
    bool held;             /* conn_hold_input: not read (only a hang-up is watched for) */
    size_t expect;         /* conn_expect: the length of the frame under way in in (0: none announced) */
    size_t preauth_bytes;  /* input read before established */
    uint64_t turn;         /* net.turn when it last read: at most one turn per loop iteration */
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
    const struct proto *front; /* the protocol carried (set when it is known: at accept, or after the sniff) */
    void *front_state;         /* front->open's result */
    int proxy_fd;
    int proxy_peer_fd;   /* the REST server's end (owned by it), to ask whether it is idle */
    uint32_t proxy_events;
    bool proxy_bulk;         /* the last read from MHD filled a whole chunk: a large answer is on its way */
    struct buf proxy_out;
    struct loop_timer *deadline;
    struct conn *prev, *next;       /* all connections */
    struct conn *next_flush;        /* connections with output to write this iteration */
    struct conn *next_ready;        /* connections with input waiting in OpenSSL (see NET_TURN_NS) */
};

struct net {
    struct loop *loop;
    struct net_config cfg;
    int listen_fd[NET_LISTENERS];
    int port[NET_LISTENERS];
    struct loop_timer *accept_retry; /* armed while accepting is paused (out of fds) */
    struct conn *conns;
    size_t nconns;
    size_t own_count;
    size_t *count; /* toward max_connections: own_count or cfg.shared_count */
    struct conn *flush_list;
    struct conn *ready_list;
    size_t peak_count; /* highest *count since the last trim */
    uint64_t turn;     /* loop iterations, counted in the before-wait hook */
    struct loop_timer *trim;
    bool has_dead;
    uint8_t rbuf[NET_READ_CHUNK]; /* every read lands here first, so idle connections own no input storage */
};

static void conn_update_events(struct conn *c);
static void ready_add(struct conn *c);

/* Gives c to front: its open makes the per-connection state. Returns false on ERR_NOMEM. */
static bool front_open(struct conn *c, const struct proto *front)
{
    c->front = front;
    c->front_state = front->open(front->ctx, c);
    return c->front_state != NULL;
}

static void front_free(struct conn *c)
{
    if (c->front_state)
        c->front->free(c->front_state);
    c->front_state = NULL;
}
static void conn_process(struct conn *c);

/* Frees a buffer's storage once it is empty: an idle connection then costs no buffer memory. */
static void buf_trim(struct buf *b)
{
    if (b->len == 0 && b->data)
        buf_cleanup(b);
}

static bool conn_paused(const struct conn *c)
{
    return c->out.len > NET_OUT_PAUSE || (c->proto == PROTO_PROXY && c->proxy_out.len > NET_OUT_PAUSE) || c->held;
}

/* ---- output ---- */

/* The net whose before-wait hook is running on this thread, or NULL. Work queued from it for another net (the
 * dual-stack localhost listeners are two nets: a caller on 127.0.0.1, its device on ::1) may land after that
 * net's hook has run this iteration: the loop must then poll instead of sleeping on it. */
static _Thread_local struct net *hook_running;

static void wake_if_other_net(struct net *n)
{
    if (hook_running && hook_running != n)
        loop_poll_now(n->loop);
}

static void queue_flush(struct conn *c)
{
    if (c->flush_queued || c->dead)
        return;
    c->flush_queued = true;
    c->next_flush = c->net->flush_list;
    c->net->flush_list = c;
    wake_if_other_net(c->net);
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

/* Empties OpenSSL's error queue before an SSL_ call, so SSL_get_error reads only that call's errors. It is
 * almost always empty already: looking first is ~100 instructions, clearing ~400, and a 4 KiB call over TLS
 * made ~8 of them (issue 20). */
static void ssl_errors_reset(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

/* One SSL_write of p[0..len) (the unsent part of out): bytes written, or 0 when it must wait (or the connection
 * died). A retry may pass the same bytes from another address (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
static size_t flush_tls(struct conn *c, const uint8_t *p, size_t len)
{
    ssl_errors_reset();
    int r = SSL_write(c->ssl, p, (int)(len > 1 << 30 ? 1 << 30 : len));
    if (r > 0)
        return (size_t)r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->write_wants_read = true;
    } else if (e != SSL_ERROR_WANT_WRITE) {
        c->ssl_fatal = true;
        mark_dead(c);
    }
    return 0;
}

/* One send() of p[0..len) (the unsent part of out): bytes written, or 0 when it must wait (or the connection
 * died). */
static size_t flush_plain(struct conn *c, const uint8_t *p, size_t len)
{
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n > 0)
        return (size_t)n;
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        mark_dead(c);
    return 0;
}

/* Writes as much of out as the socket takes (EPOLLOUT is wanted while anything is left). */
static void conn_flush(struct conn *c)
{
    if (c->handshaking)
        return;
    c->write_wants_read = false;
    /* What was written is dropped from out once, at the end: SSL_write takes one 16 KiB record at a time, and
     * moving the rest down after each cost a 100 KiB call over TLS ~700k instructions (issue 20). */
    size_t done = 0;
    while (done < c->out.len && !c->dead) {
        size_t n = c->ssl ? flush_tls(c, c->out.data + done, c->out.len - done)
                          : flush_plain(c, c->out.data + done, c->out.len - done);
        if (n == 0)
            break;
        done += n;
    }
    buf_consume(&c->out, done);
    buf_trim(&c->out);
    if (c->closing && c->out.len == 0)
        mark_dead(c);
}

/* One sendmsg of iov[0..n) on a plain connection with nothing queued: bytes written (0 when it must wait; the
 * connection is marked dead on an error, as a failed flush would). */
static size_t write_through(struct conn *c, const struct iovec *iov, int n)
{
    struct iovec v[NET_SENDV_MAX];
    memcpy(v, iov, (size_t)n * sizeof *v);
    struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
    if (w > 0)
        return (size_t)w;
    if (w < 0 && errno != EAGAIN && errno != EINTR)
        mark_dead(c);
    return 0;
}

int conn_sendv(struct conn *c, const struct iovec *iov, int n)
{
    if (c->closing)
        return ERR_CLOSED;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total = iov[i].iov_len > SIZE_MAX - total ? SIZE_MAX : total + iov[i].iov_len;
    int rc;
    if (c->proto == PROTO_WS) {
        rc = ws_encode_binaryv(&c->out, iov, n);
    } else {
        size_t skip = 0;
        if (!c->ssl && c->out.len == 0 && total >= NET_WRITE_THROUGH && n <= NET_SENDV_MAX && !c->dead)
            skip = write_through(c, iov, n);
        if (c->dead)
            return ERR_CLOSED; /* the peer is gone: the sender should not go on (a pipelined call, say) */
        rc = total == SIZE_MAX ? ERR_TOO_BIG : buf_reserve(&c->out, total - skip);
        for (int i = 0; rc == ERR_OK && i < n; i++) { /* what the socket did not take, copied */
            size_t part = iov[i].iov_len;
            size_t from = skip < part ? skip : part;
            skip -= from;
            if (part > from) /* reserved above: cannot fail */
                buf_append(&c->out, (const uint8_t *)iov[i].iov_base + from, part - from);
        }
    }
    if (rc) {
        log_warn("%s: output queue full (%zu bytes waiting); closing", c->peer, c->out.len);
        mark_dead(c);
        return rc;
    }
    if (c->out.len)
        queue_flush(c);
    return ERR_OK;
}

int conn_send2(struct conn *c, const uint8_t *head, size_t hlen, const uint8_t *body, size_t blen)
{
    struct iovec iov[2] = {{.iov_base = (void *)head, .iov_len = hlen}, {.iov_base = (void *)body, .iov_len = blen}};
    return conn_sendv(c, iov, 2);
}

int conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    return conn_send2(c, data, len, NULL, 0);
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
    /* A WebSocket client is told with a close frame (1000), unless one was sent already. */
    if (c->proto == PROTO_WS && !c->ws.close_sent && ws_encode_close(&c->out, 1000) == ERR_OK)
        c->ws.close_sent = true;
    if (c->out.len == 0 || !c->deadline)
        mark_dead(c);
    else
        queue_flush(c);
}

void conn_abort(struct conn *c, const char *reason)
{
    if (c->aborted)
        return;
    log_debug("%s: dropping without a goodbye (%s)", c->peer, reason);
    c->aborted = true;
    buf_cleanup(&c->out);
    if (c->deadline) {
        loop_timer_cancel(c->net->loop, c->deadline);
        c->deadline = NULL;
    }
    mark_dead(c);
}

void conn_handoff_http(struct conn *c)
{
    c->handoff = true;
}

void conn_hold_input(struct conn *c, bool hold)
{
    c->held = hold;
}

void conn_expect(struct conn *c, size_t total)
{
    c->expect = total;
}

size_t conn_queued(const struct conn *c)
{
    return c->out.len;
}

void conn_input_ready(struct conn *c)
{
    c->reinput = true;
    ready_add(c);
}

void conn_established(struct conn *c)
{
    c->established = true;
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
    if (c->proxy_fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        /* Within a large answer (issue 20) the bytes are read straight into the output queue, not through
         * rbuf and a copy; small answers still go through rbuf, so an idle connection keeps no queue storage. */
        bool direct = c->proxy_bulk && buf_reserve(&c->out, NET_READ_CHUNK) == ERR_OK;
        ssize_t n = direct ? recv(fd, c->out.data + c->out.len, NET_READ_CHUNK, 0)
                           : recv(fd, c->net->rbuf, sizeof c->net->rbuf, 0);
        c->proxy_bulk = n == NET_READ_CHUNK;
        if (n > 0 && direct) {
            c->out.len += (size_t)n;
            queue_flush(c);
        } else if (n > 0) {
            if (buf_append(&c->out, c->net->rbuf, (size_t)n) == ERR_OK)
                queue_flush(c);
            else
                mark_dead(c);
        } else {
            int err = errno;
            buf_trim(&c->out); /* the room reserved for a direct read */
            if (n == 0 || (err != EAGAIN && err != EINTR)) {
                loop_del_fd(l, fd);
                close(fd);
                c->proxy_fd = -1;
                conn_close(c, "HTTP exchange finished");
            }
        }
    }
    conn_update_events(c);
}

static bool start_proxy(struct conn *c, const char *transport)
{
    int sv[2];
    if (!c->net->cfg.http_handoff || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    /* The handoff owns sv[1] whatever it returns (rest_add_connection closes it on failure). */
    if (c->net->cfg.http_handoff(c->net->cfg.http_ctx, sv[1], (struct sockaddr *)&c->addr, c->addrlen)) {
        close(sv[0]);
        return false;
    }
    if (loop_add_fd(c->net->loop, sv[0], EPOLLIN, on_proxy_io, c)) {
        close(sv[0]);
        return false;
    }
    c->proxy_fd = sv[0];
    c->proxy_peer_fd = sv[1];
    c->proxy_events = EPOLLIN;
    c->proto = PROTO_PROXY;
    c->transport = transport;
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

/* The HTTP front (net_config.http) reads c from here on; it may hand c to the REST server later. */
static void start_http_front(struct conn *c, const char *transport)
{
    const struct proto *front = c->net->cfg.http;
    if (!front_open(c, front)) {
        conn_close(c, "out of memory");
        return;
    }
    if (c->in.max < front->max_frame + 64 * 1024)
        c->in.max = front->max_frame + 64 * 1024;
    c->proto = PROTO_STREAM;
    c->transport = transport;
    conn_process(c);
}

/* The front asked for it (conn_handoff_http): the REST server gets c and every byte still in c->in. */
static void hand_to_rest(struct conn *c)
{
    c->handoff = false;
    front_free(c);
    if (!start_proxy(c, c->transport)) {
        reply_http_error(c, 503, "the REST server is not available");
        return;
    }
    conn_process(c);
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
        bool amqp = strcasecmp(up.protocol, "AMQPWSB10") == 0;
        if ((up.offered_protocols && up.protocol[0] == '\0') || (amqp && !c->net->cfg.amqp) ||
            (up.servicebus_path && !amqp)) {
            reply_http_error(c, 400, up.servicebus_path ? "the WebSocket sub-protocol here is AMQPWSB10"
                                                        : "the WebSocket sub-protocols are mqtt and AMQPWSB10");
            return;
        }
        if (!front_open(c, amqp ? c->net->cfg.amqp : c->net->cfg.mqtt) || ws_encode_accept(&c->out, &up)) {
            conn_close(c, "out of memory");
            return;
        }
        buf_consume(&c->in, head_len);
        ws_stream_init(&c->ws);
        /* Room for one whole frame in in, and for a partial MQTT packet plus everything in decodes to. */
        if (c->in.max < WS_MAX_MESSAGE + 14)
            c->in.max = WS_MAX_MESSAGE + 14;
        buf_init(&c->ws_app, c->in.max + c->front->max_frame + 16);
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
    if (c->net->cfg.http) {
        start_http_front(c, "https");
        return;
    }
    if (!start_proxy(c, "https")) {
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
    if (c->ws_app.len && c->front->input(c->front_state, &c->ws_app) != ERR_OK)
        return;
    buf_trim(&c->ws_app);
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
    case PROTO_STREAM:
        c->expect = 0; /* announced again by the front if it still waits for it */
        c->front->input(c->front_state, &c->in);
        if (c->handoff)
            hand_to_rest(c);
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
        buf_trim(&c->proxy_out);
        proxy_update_events(c);
        break;
    }
}

/* The peer finished sending (TCP FIN or TLS close_notify): what is queued is still flushed, then close. An
 * MQTT client that half-closes is gone all the same (MQTT has no half-close); its will is published. */
static void conn_eof(struct conn *c)
{
    conn_close(c, "closed by the peer");
}

/* One SSL_read into buf: bytes read, or 0 when it must wait, the peer closed, or the connection died. */
static size_t read_tls(struct conn *c, uint8_t *buf, size_t room)
{
    ssl_errors_reset();
    int r = SSL_read(c->ssl, buf, (int)room);
    c->read_wants_write = false;
    if (r > 0)
        return (size_t)r;
    int e = SSL_get_error(c->ssl, r);
    c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
    if (e == SSL_ERROR_ZERO_RETURN) {
        conn_eof(c);
    } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        log_debug("%s: TLS read failed: %s", c->peer, ssl_reason());
        c->ssl_fatal = true;
        mark_dead(c);
    }
    return 0;
}

/* One recv into buf: bytes read, or 0 when it must wait, the peer closed, or the connection died. */
static size_t read_plain(struct conn *c, uint8_t *buf, size_t room)
{
    ssize_t n = recv(c->fd, buf, room, 0);
    if (n > 0)
        return (size_t)n;
    if (n == 0)
        conn_eof(c);
    else if (errno != EAGAIN && errno != EINTR)
        mark_dead(c);
    return 0;
}

static size_t preauth_max(const struct conn *c)
{
    const struct proto *front = c->front ? c->front : c->net->cfg.mqtt; /* :443 before the sniff: MQTT's size */
    return 2 * front->max_frame + NET_PREAUTH_SLACK;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The next read of a turn: what the rest of the turn's time should take at the pace of the bytes so far
 * (0: the turn is over). */
static size_t turn_next(size_t taken, int64_t spent_ns)
{
    if (spent_ns >= NET_TURN_NS)
        return 0;
    if (spent_ns <= 0)
        return NET_READ_CHUNK;
    double fit = (double)taken * (double)(NET_TURN_NS - spent_ns) / (double)spent_ns;
    return fit >= NET_READ_CHUNK ? NET_READ_CHUNK : fit <= NET_TURN_MIN ? NET_TURN_MIN : (size_t)fit;
}

/* One turn: reads until the socket (and OpenSSL's buffer) is drained, reading is paused, or the turn's time
 * (NET_TURN_NS) is used, processing as it goes. Bytes land in the net's shared buffer and only what the
 * protocol leaves unprocessed stays with the connection. */
static void conn_read(struct conn *c)
{
    uint8_t *rbuf = c->net->rbuf;
    size_t budget = NET_TURN_FIRST, taken = 0;
    int64_t start = mono_ns();
    if (c->turn == c->net->turn) {
        /* It had its turn this iteration (from the ready list, or an earlier event): wait for the next. */
        if (c->ssl)
            ready_add(c);
        return;
    }
    c->turn = c->net->turn;
    c->read_drained = false;
    while (!c->closing && !c->handshaking && !conn_paused(c) && budget > 0) {
        size_t room = c->in.max > c->in.len ? c->in.max - c->in.len : 0;
        if (room == 0) {
            conn_close(c, "input buffer full");
            break;
        }
        size_t want = room < NET_READ_CHUNK ? room : NET_READ_CHUNK;
        if (want > budget)
            want = budget;
        /* A frame under way whose room is already there (the front reserved it, or the storage is left from
         * earlier): read straight into it, not through rbuf and a copy. The rest of a frame its front announced
         * (conn_expect: a 100 KiB body or answer) comes in one read, past the turn's size (in 16 KiB reads it
         * was 25 recvfrom per call; issue 20); anything else keeps the turn's size (issue 23). */
        size_t spare = c->in.len ? c->in.cap - c->in.len : 0;
        bool direct = spare >= want || spare >= NET_DIRECT_MIN;
        if (direct) {
            size_t frame = c->proto == PROTO_STREAM && c->expect > c->in.len ? c->expect - c->in.len : 0;
            if (frame > want)
                want = frame < room ? frame : room;
            if (want > spare)
                want = spare;
        }
        uint8_t *to = direct ? c->in.data + c->in.len : rbuf;
        size_t n = c->ssl ? read_tls(c, to, want) : read_plain(c, to, want);
        if (n == 0) {
            c->read_drained = true;
            break;
        }
        taken += n;
        if (!c->established && (c->preauth_bytes += n) > preauth_max(c)) {
            log_info("%s: more than %zu bytes before authenticating; closing", c->peer, preauth_max(c));
            conn_close(c, "too much input before authentication");
            break;
        }
        if (direct) {
            c->in.len += n;
        } else if (buf_append(&c->in, rbuf, n)) {
            conn_close(c, "out of memory");
            break;
        }
        conn_process(c);
        if (conn_paused(c))
            break; /* back-pressure: resume when the peer has caught up */
        if (n < want && !(c->ssl && SSL_has_pending(c->ssl))) {
            /* A short read drained the socket (and OpenSSL holds nothing): the next read would only say
             * EAGAIN, one syscall in three of a small call (issue 20). Epoll reports what comes next. */
            c->read_drained = true;
            break;
        }
        budget = turn_next(taken, mono_ns() - start);
    }
    buf_trim(&c->in);
}

static void conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = false;
        c->read_wants_write = false;
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
        return;
    }
    log_info("%s: TLS handshake failed: %s", c->peer, ssl_reason());
    c->ssl_fatal = true;
    mark_dead(c);
}

static void conn_update_events(struct conn *c)
{
    if (c->dead)
        return;
    bool want_in = (!c->closing && !conn_paused(c)) || c->write_wants_read;
    /* Output queued for this iteration's flush is written first; EPOLLOUT only after a write fell short. */
    bool want_out = (c->out.len && !c->flush_queued) || c->read_wants_write;
    bool watch_hangup = c->held && !c->closing; /* level-triggered: once closing it would fire forever */
    uint32_t want = (want_in ? EPOLLIN : 0) | (want_out ? EPOLLOUT : 0) | (watch_hangup ? EPOLLRDHUP : 0);
    if (want != c->events && loop_mod_fd(c->net->loop, c->fd, want) == ERR_OK)
        c->events = want;
    proxy_update_events(c);
}

static void ready_add(struct conn *c)
{
    if (c->ready_queued || c->dead)
        return;
    c->ready_queued = true;
    c->next_ready = c->net->ready_list;
    c->net->ready_list = c;
    wake_if_other_net(c->net);
}

/* Flushes, then schedules a turn for what OpenSSL already holds (decrypted, or raw records read ahead): epoll
 * cannot report those bytes, so a connection whose turn ended on its budget, or whose reading was paused
 * (back-pressure) until its output drained, goes on the ready list. SSL_has_pending, not SSL_pending: with
 * read-ahead whole records can wait undecrypted. After a read that ended on "wait" only a partial record can
 * be left, and the socket will report the rest. */
static void conn_pump(struct conn *c)
{
    conn_flush(c);
    if (c->ssl && !c->dead && !c->closing && !c->handshaking && !conn_paused(c) && !c->read_drained &&
        SSL_has_pending(c->ssl))
        ready_add(c);
    conn_update_events(c);
}

static void on_conn_io(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct conn *c = ctx;
    if (c->dead)
        return;
    bool readable = (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || (c->read_wants_write && (events & EPOLLOUT));
    if (c->held && !c->closing && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        conn_close(c, "closed by the peer"); /* while its input is held: the front's waiting request is gone */
        conn_pump(c);
        return;
    }
    if (c->handshaking) {
        conn_handshake(c);
        if (c->handshaking || c->dead) {
            conn_update_events(c);
            return;
        }
        readable = true; /* application data may already sit in OpenSSL's buffer */
    }
    if (c->write_wants_read && (events & EPOLLIN))
        conn_flush(c);
    if (readable)
        conn_read(c);
    conn_pump(c);
}

/* ---- accepting ---- */

static void on_connect_deadline(struct loop *l, void *ctx)
{
    struct conn *c = ctx;
    c->deadline = NULL;
    const char *what = c->proto == PROTO_SNIFF || (c->front && c->front == c->net->cfg.http) ? "request"
                       : c->front && c->front == c->net->cfg.amqp ? "AMQP authentication"
                                                                  : "MQTT CONNECT";
    log_info("%s: no %s within %d s; closing", c->peer, what, c->net->cfg.connect_timeout_s);
    mark_dead(c);
}

static void format_peer(const struct sockaddr_storage *a, char *out, size_t outlen)
{
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    getnameinfo((const struct sockaddr *)a, sizeof *a, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, outlen, "%s:%s", host, port);
}

static struct conn *conn_new(struct net *n, int fd, enum net_listener kind, const struct sockaddr_storage *addr,
                             socklen_t addrlen)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->net = n;
    c->fd = fd;
    c->proxy_fd = -1;
    memcpy(&c->addr, addr, addrlen < sizeof c->addr ? addrlen : sizeof c->addr);
    c->addrlen = addrlen;
    format_peer(&c->addr, c->peer, sizeof c->peer); /* before front_open: a front names connections by it */
    static const char *const names[NET_LISTENERS] = {"mqtts", "https", "mqtt", "amqps", "amqp", "http"};
    const struct proto *front = kind == NET_AMQPS || kind == NET_AMQP ? n->cfg.amqp
                                : kind == NET_HTTP && n->cfg.http      ? n->cfg.http
                                                                       : n->cfg.mqtt;
    buf_init(&c->in, front->max_frame + 64 * 1024);
    buf_init(&c->out, NET_OUT_MAX);
    c->proto = kind == NET_HTTPS                  ? PROTO_SNIFF
               : kind == NET_HTTP && !n->cfg.http ? PROTO_PROXY
                                                  : PROTO_STREAM;
    c->transport = names[kind];
    if (kind == NET_MQTTS || kind == NET_HTTPS || kind == NET_AMQPS) {
        c->ssl = SSL_new(n->cfg.tls);
        if (!c->ssl || !SSL_set_fd(c->ssl, fd))
            goto fail;
        SSL_set_accept_state(c->ssl);
        c->handshaking = true;
    }
    if (c->proto == PROTO_STREAM && !front_open(c, front))
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
    if (++*n->count > n->peak_count)
        n->peak_count = *n->count;
    if (c->proto == PROTO_PROXY && !start_proxy(c, "http")) {
        log_warn("%s: the REST server is not available; closing", c->peer);
        mark_dead(c); /* freed (and fd closed) before the next wait */
    }
    return c;
fail:
    loop_timer_cancel(n->loop, c->deadline);
    front_free(c);
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

static void set_accepting(struct net *n, bool on)
{
    for (int i = 0; i < NET_LISTENERS; i++)
        if (n->listen_fd[i] >= 0)
            loop_mod_fd(n->loop, n->listen_fd[i], on ? EPOLLIN : 0);
}

static void on_accept_retry(struct loop *l, void *ctx)
{
    struct net *n = ctx;
    n->accept_retry = NULL;
    set_accepting(n, true);
}

/* accept failed. Out of fds or memory, the pending connection stays in the backlog and the listener stays
 * readable: stop polling the listeners for a while rather than spin (and log) at full speed. */
static void on_accept_error(struct net *n, int e)
{
    if (e == EAGAIN || e == EINTR || e == ECONNABORTED)
        return;
    log_warn("accept: %s%s", strerror(e), n->accept_retry ? "" : "; pausing new connections");
    if (n->accept_retry || (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM))
        return;
    n->accept_retry = loop_timer_add(n->loop, NET_ACCEPT_RETRY_MS, on_accept_retry, n);
    if (n->accept_retry)
        set_accepting(n, false);
}

static void conn_free(struct net *n, struct conn *c);

/* At the connection limit: closes the HTTP connection (plain or over TLS) that has been idle longest, so a
 * new client is served rather than refused. Idle keep-alive connections are the cheapest to lose: HTTP
 * clients reconnect on their own. Only this net's connections are candidates. */
static bool evict_idle_http(struct net *n)
{
    if (!n->cfg.http_idle)
        return false;
    struct conn *oldest = NULL;
    int64_t oldest_since = 0;
    for (struct conn *c = n->conns; c; c = c->next) {
        bool front = c->proto == PROTO_STREAM && c->front_state && c->front->idle_since;
        if ((!front && (c->proto != PROTO_PROXY || c->proxy_fd < 0)) || c->closing)
            continue;
        int64_t since = front ? c->front->idle_since(c->front_state)
                              : n->cfg.http_idle(n->cfg.http_ctx, c->proxy_peer_fd);
        if (since >= 0 && (!oldest || since < oldest_since)) {
            oldest = c;
            oldest_since = since;
        }
    }
    if (!oldest)
        return false;
    log_info("%s: connection limit (%zu) reached; closing this idle %s connection for a new one", oldest->peer,
             n->cfg.max_connections, oldest->transport);
    conn_free(n, oldest); /* now, so the count is exact; its events later in this iteration are dropped */
    return true;
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ctx)
{
    struct net *n = ctx;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            on_accept_error(n, errno);
            return;
        }
        if (*n->count >= n->cfg.max_connections && !evict_idle_http(n)) {
            log_warn("connection limit (%zu) reached; refusing a connection", n->cfg.max_connections);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = conn_new(n, fd, listener_kind(n, lfd), &addr, len);
        if (!c) {
            close(fd);
            continue;
        }
        log_debug("%s: accepted on %s", c->peer, c->transport);
    }
}

/* ---- reaping and flushing (before each wait) ---- */

static void flush_list_remove(struct net *n, struct conn *c)
{
    for (struct conn **p = &n->flush_list; *p; p = &(*p)->next_flush) {
        if (*p == c) {
            *p = c->next_flush;
            break;
        }
    }
    c->flush_queued = false;
}

/* Discards input the kernel still holds: close() with unread data sends RST, which can destroy the last
 * replies (CONNACK 5, an HTTP error) before the peer reads them. */
static void drain_input(struct net *n, int fd)
{
    for (size_t total = 0; total < NET_DRAIN_MAX;) {
        ssize_t r = recv(fd, n->rbuf, sizeof n->rbuf, MSG_DONTWAIT);
        if (r <= 0)
            break;
        total += (size_t)r;
    }
}

static void ready_list_remove(struct net *n, struct conn *c)
{
    for (struct conn **p = &n->ready_list; *p; p = &(*p)->next_ready) {
        if (*p == c) {
            *p = c->next_ready;
            break;
        }
    }
    c->ready_queued = false;
}

static void conn_free(struct net *n, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n->nconns--;
    (*n->count)--;
    if (c->flush_queued)
        flush_list_remove(n, c);
    if (c->ready_queued)
        ready_list_remove(n, c);
    front_free(c);
    loop_timer_cancel(n->loop, c->deadline);
    loop_del_fd(n->loop, c->fd);
    if (c->ssl && !c->handshaking && !c->ssl_fatal && !c->aborted) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* best effort close_notify */
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    if (c->aborted) {
        struct linger rst = {.l_onoff = 1, .l_linger = 0}; /* close() then sends RST */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    } else {
        drain_input(n, c->fd);
    }
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

static void flush_and_reap(struct net *n);

static void on_trim(struct loop *l, void *ctx)
{
    struct net *n = ctx;
    n->trim = NULL;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    log_debug("%zu connections now, %zu at the peak: freed memory returned to the system", *n->count, n->peak_count);
    n->peak_count = *n->count;
}

/* Trims a moment after the drop begins, so the rest of the burst closing is included. */
static void trim_after_burst(struct net *n)
{
    size_t now = *n->count;
    if (n->trim || n->peak_count < now + NET_TRIM_DROP || now > n->peak_count / 2)
        return;
    n->trim = loop_timer_add(n->loop, NET_TRIM_DELAY_MS, on_trim, n);
}

/* Each connection on the ready list gets one turn; one that still has input waiting goes back on the list
 * for the next iteration, and the loop polls instead of blocking until then. */
static void net_before_wait(struct loop *l, void *ctx)
{
    struct net *n = ctx;
    hook_running = n;
    n->turn++;
    struct conn *ready = n->ready_list;
    n->ready_list = NULL;
    while (ready) {
        struct conn *c = ready;
        ready = c->next_ready;
        c->ready_queued = false;
        if (c->dead)
            continue;
        if (c->reinput) {
            c->reinput = false;
            conn_process(c);
        }
        conn_read(c);
        conn_pump(c);
    }
    flush_and_reap(n);
    if (n->ready_list)
        loop_poll_now(l);
    hook_running = NULL;
}

static void flush_and_reap(struct net *n)
{
    while (n->flush_list) {
        struct conn *c = n->flush_list;
        n->flush_list = c->next_flush;
        c->flush_queued = false;
        if (!c->dead)
            conn_pump(c);
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
    /* Freeing fronts' states may have queued output or deaths elsewhere (takeover, failed calls). */
    if (n->flush_list || n->has_dead)
        flush_and_reap(n);
    else
        trim_after_burst(n);
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
    n->count = cfg->shared_count ? cfg->shared_count : &n->own_count;
    int ports[NET_LISTENERS] = {cfg->mqtts_port, cfg->https_port, cfg->mqtt_port, cfg->amqp ? cfg->amqps_port : -1,
                                cfg->amqp ? cfg->amqp_port : -1, cfg->http_port};
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
    loop_timer_cancel(n->loop, n->accept_retry);
    n->accept_retry = NULL;
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
    loop_timer_cancel(n->loop, n->trim);
    loop_del_hook(n->loop, net_before_wait, n);
    while (n->conns)
        conn_free(n, n->conns);
    free(n);
}
