/* bnet.h -- the benchmark's client-side network layer: one epoll set, non-blocking TCP connections with
 * optional OpenSSL TLS, an input buffer and an output queue per connection. Single-threaded, no timers:
 * the scenarios call bnet_poll with their own deadlines. Used by bdev.c and bcall.c. */
#ifndef IOTHUB_BENCH_BNET_H
#define IOTHUB_BENCH_BNET_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct bnet;
struct bconn;

enum bnet_event {
    BNET_OPEN,   /* TCP connected and, for TLS, the handshake is done: the owner may send */
    BNET_DATA,   /* bytes were appended to bnet_in(c): the owner consumes whole messages */
    BNET_CLOSED, /* the connection is gone (peer, error, or bnet_close); c is freed after this round */
};

/* Called for each event of a connection; ctx is the one given to bnet_connect. */
typedef void (*bnet_fn)(struct bconn *c, enum bnet_event ev, void *ctx);

/* Returns NULL on ERR_NOMEM or when epoll_create fails. */
struct bnet *bnet_new(void);
/* Closes every connection still held (without calling fn) and frees the set. Accepts NULL. */
void bnet_free(struct bnet *n);

/* Starts a non-blocking connect to dst; src_ip (network order, 0 for any) picks the local loopback address,
 * so more than one ephemeral-port range is available. tls NULL for plain TCP; tls_host is the name the
 * server certificate must match. fn is never called from inside bnet_connect. Returns NULL on failure
 * (errno set); the connection belongs to n, and stays valid until fn has seen BNET_CLOSED. */
struct bconn *bnet_connect(struct bnet *n, const struct sockaddr_in *dst, uint32_t src_ip, SSL_CTX *tls,
                           const char *tls_host, bnet_fn fn, void *ctx);
/* The input buffer (consume with buf_consume) and the output queue (append whole messages, then
 * bnet_flush). Valid until BNET_CLOSED. */
struct buf *bnet_in(struct bconn *c);
struct buf *bnet_out(struct bconn *c);
/* Writes as much of the output queue as the socket takes now; the rest goes when it is writable. */
void bnet_flush(struct bconn *c);
/* The owner closes the connection: fn is not called again, and c must not be used afterwards (its memory
 * lives until the end of the current bnet_poll round, so an owner may call this from inside fn). */
void bnet_close(struct bconn *c);
/* Why the connection closed (valid during BNET_CLOSED; "" while open). */
const char *bnet_reason(const struct bconn *c);
/* The negotiated TLS version and cipher ("plain" without TLS), for the record. */
const char *bnet_tls_desc(const struct bconn *c);

/* Waits up to timeout_ms for events and handles them; frees connections closed during the round.
 * Returns the number of events handled, or -1 when epoll_wait fails. */
int bnet_poll(struct bnet *n, int timeout_ms);
/* Connections currently held (open or in progress). */
size_t bnet_count(const struct bnet *n);

#endif
