/* bnet.c -- client connections on one epoll set, plain or TLS (see bnet.h). Reads until the socket and
 * OpenSSL are drained, handing each chunk to the owner; writes until EAGAIN and asks for EPOLLOUT only while
 * output is queued. Closed connections are freed at the end of the poll round that closed them. */
#include "bnet.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "tls.h"

#define BNET_READ_CHUNK (64u * 1024u)
#define BNET_IN_MAX (4u * 1024u * 1024u)
#define BNET_OUT_MAX (64u * 1024u * 1024u)
#define BNET_EVENTS 256
#define BNET_KEEP_IN 4096

enum bconn_state { BCONN_CONNECTING, BCONN_HANDSHAKE, BCONN_OPEN, BCONN_DEAD };

struct bconn {
    struct bnet *n;
    int fd;
    SSL *ssl;
    enum bconn_state state;
    uint32_t events; /* the mask registered with epoll */
    bool ssl_wants_write;
    struct buf in, out;
    bnet_fn fn;
    void *ctx;
    char reason[96];
    char tls_host[64];
    struct bconn *prev, *next; /* live list, or the dead list (next only) */
};

struct bnet {
    int epfd;
    size_t count;
    struct bconn *live;
    struct bconn *dead;
    uint8_t scratch[BNET_READ_CHUNK]; /* reads land here, so idle connections hold no big buffer */
};

struct bnet *bnet_new(void)
{
    struct bnet *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epfd < 0) {
        free(n);
        return NULL;
    }
    return n;
}

static void conn_release(struct bconn *c)
{
    buf_cleanup(&c->in);
    buf_cleanup(&c->out);
    free(c);
}

static void reap(struct bnet *n)
{
    while (n->dead) {
        struct bconn *c = n->dead;
        n->dead = c->next;
        conn_release(c);
    }
}

/* Closes the socket and moves c to the dead list; fn is not called here. */
static void conn_kill(struct bconn *c)
{
    if (c->state == BCONN_DEAD)
        return;
    struct bnet *n = c->n;
    if (c->ssl)
        SSL_free(c->ssl); /* no close_notify: the benchmark tears down by closing */
    c->ssl = NULL;
    close(c->fd);
    c->state = BCONN_DEAD;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = n->dead;
    n->dead = c;
    n->count--;
}

void bnet_free(struct bnet *n)
{
    if (!n)
        return;
    while (n->live)
        conn_kill(n->live);
    reap(n);
    close(n->epfd);
    free(n);
}

/* An error or EOF from the peer: tell the owner, then close. */
static void conn_fail(struct bconn *c, const char *why)
{
    if (c->state == BCONN_DEAD)
        return;
    if (!c->reason[0])
        snprintf(c->reason, sizeof c->reason, "%s", why);
    c->fn(c, BNET_CLOSED, c->ctx);
    conn_kill(c);
}

static int conn_watch(struct bconn *c, uint32_t want)
{
    if (want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->n->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -1;
    c->events = want;
    return 0;
}

static int open_socket(const struct sockaddr_in *dst, uint32_t src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (src_ip) {
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = src_ip};
        /* The port is chosen at connect time, per destination, so each source address has its own range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&src, sizeof src) < 0)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

struct bconn *bnet_connect(struct bnet *n, const struct sockaddr_in *dst, uint32_t src_ip, SSL_CTX *tls,
                           const char *tls_host, bnet_fn fn, void *ctx)
{
    struct bconn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = open_socket(dst, src_ip);
    if (c->fd < 0) {
        free(c);
        return NULL;
    }
    c->n = n;
    c->fn = fn;
    c->ctx = ctx;
    buf_init(&c->in, BNET_IN_MAX);
    buf_init(&c->out, BNET_OUT_MAX);
    if (tls) {
        c->ssl = SSL_new(tls);
        snprintf(c->tls_host, sizeof c->tls_host, "%s", tls_host ? tls_host : "localhost");
    }
    c->events = EPOLLOUT; /* connected (or refused) when writable */
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if ((tls && !c->ssl) || epoll_ctl(n->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        SSL_free(c->ssl);
        close(c->fd);
        free(c);
        return NULL;
    }
    c->next = n->live;
    if (n->live)
        n->live->prev = c;
    n->live = c;
    n->count++;
    return c;
}

struct buf *bnet_in(struct bconn *c)
{
    return &c->in;
}

struct buf *bnet_out(struct bconn *c)
{
    return &c->out;
}

const char *bnet_reason(const struct bconn *c)
{
    return c->reason;
}

const char *bnet_tls_desc(const struct bconn *c)
{
    static char desc[128];
    if (!c->ssl)
        return "plain";
    snprintf(desc, sizeof desc, "%s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
    return desc;
}

void bnet_close(struct bconn *c)
{
    conn_kill(c);
}

size_t bnet_count(const struct bnet *n)
{
    return n->count;
}

static void ssl_fail(struct bconn *c, const char *what, int r)
{
    char msg[96];
    int e = SSL_get_error(c->ssl, r);
    unsigned long code = ERR_peek_last_error();
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !code))
        snprintf(msg, sizeof msg, "%s: connection closed by peer", what);
    else
        snprintf(msg, sizeof msg, "%s: %s", what, code ? ERR_reason_error_string(code) : "TLS error");
    ERR_clear_error();
    conn_fail(c, msg);
}

/* Writes queued output until the socket is full. Returns -1 when the connection died. */
static int conn_write(struct bconn *c)
{
    c->ssl_wants_write = false;
    while (c->out.len) {
        if (c->ssl) {
            ERR_clear_error();
            int chunk = c->out.len > (1u << 30) ? (1 << 30) : (int)c->out.len;
            int r = SSL_write(c->ssl, c->out.data, chunk);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    c->ssl_wants_write = e == SSL_ERROR_WANT_WRITE;
                    return 0;
                }
                ssl_fail(c, "TLS write", r);
                return -1;
            }
            buf_consume(&c->out, (size_t)r);
        } else {
            ssize_t r = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (r < 0) {
                conn_fail(c, strerror(errno));
                return -1;
            }
            buf_consume(&c->out, (size_t)r);
        }
    }
    return 0;
}

static void conn_update(struct bconn *c)
{
    if (c->state != BCONN_OPEN)
        return;
    uint32_t want = EPOLLIN | (c->out.len || c->ssl_wants_write ? EPOLLOUT : 0);
    if (conn_watch(c, want) < 0)
        conn_fail(c, "epoll_ctl failed");
}

void bnet_flush(struct bconn *c)
{
    if (c->state != BCONN_OPEN)
        return; /* sent once the connection opens */
    if (conn_write(c) == 0)
        conn_update(c);
}

/* Reads one chunk into the scratch buffer. Returns >0 bytes, 0 when drained for now, -1 when the
 * connection died. */
static ssize_t read_chunk(struct bconn *c)
{
    uint8_t *room = c->n->scratch;
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, room, (int)sizeof c->n->scratch);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c->ssl_wants_write = c->ssl_wants_write || e == SSL_ERROR_WANT_WRITE;
            return 0;
        }
        ssl_fail(c, "TLS read", r);
        return -1;
    }
    ssize_t r = recv(c->fd, room, sizeof c->n->scratch, 0);
    if (r > 0)
        return r;
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    conn_fail(c, r == 0 ? "connection closed by peer" : strerror(errno));
    return -1;
}

/* Reads until drained (bytes OpenSSL already decrypted included), handing each chunk to the owner. */
static void conn_read(struct bconn *c)
{
    for (;;) {
        ssize_t r = read_chunk(c);
        if (r <= 0)
            return;
        if (buf_append(&c->in, c->n->scratch, (size_t)r)) {
            conn_fail(c, "input buffer full (the owner does not consume)");
            return;
        }
        c->fn(c, BNET_DATA, c->ctx);
        if (c->state != BCONN_OPEN)
            return; /* the owner closed it */
        if (c->in.len == 0 && c->in.cap > BNET_KEEP_IN)
            buf_cleanup(&c->in); /* a large message has passed: give the memory back */
    }
}

static void conn_opened(struct bconn *c)
{
    c->state = BCONN_OPEN;
    c->fn(c, BNET_OPEN, c->ctx);
    if (c->state == BCONN_OPEN)
        bnet_flush(c);
}

static void conn_handshake(struct bconn *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        conn_opened(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (conn_watch(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
            conn_fail(c, "epoll_ctl failed");
        return;
    }
    ssl_fail(c, "TLS handshake", r);
}

static void conn_connected(struct bconn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        conn_fail(c, strerror(err ? err : errno));
        return;
    }
    if (!c->ssl) {
        conn_opened(c);
        return;
    }
    c->state = BCONN_HANDSHAKE;
    SSL_set_mode(c->ssl,
                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_set_fd(c->ssl, c->fd) || tls_client_set_host(c->ssl, c->tls_host)) {
        conn_fail(c, "TLS setup failed");
        return;
    }
    conn_handshake(c);
}

static void conn_event(struct bconn *c, uint32_t events)
{
    switch (c->state) {
    case BCONN_CONNECTING:
        conn_connected(c);
        break;
    case BCONN_HANDSHAKE:
        conn_handshake(c);
        break;
    case BCONN_OPEN:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) || c->ssl_wants_write)
            conn_read(c);
        if (c->state == BCONN_OPEN)
            bnet_flush(c);
        break;
    case BCONN_DEAD:
        break;
    }
}

int bnet_poll(struct bnet *n, int timeout_ms)
{
    struct epoll_event evs[BNET_EVENTS];
    int k = epoll_wait(n->epfd, evs, BNET_EVENTS, timeout_ms);
    if (k < 0) {
        reap(n);
        return errno == EINTR ? 0 : -1;
    }
    for (int i = 0; i < k; i++)
        conn_event(evs[i].data.ptr, evs[i].events);
    reap(n);
    return k;
}
