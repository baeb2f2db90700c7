/* net.h -- listening sockets and accepted connections: plain MQTT and AMQP, both over TLS too, and TLS on the HTTPS port,
 * where the first request decides between a WebSocket (handed to the front its sub-protocol names) and HTTP
 * handed to the REST server, and plain HTTP (handed to the REST server the same way, so one connection limit
 * and its eviction of idle connections cover it). Byte streams only: each protocol is a struct proto (proto.h)
 * given in the config. net.c also implements conn.h, the narrow per-connection interface fronts use. Tests: tests/unit/test_net.c. */
#ifndef IOTHUB_NET_H
#define IOTHUB_NET_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto.h"

struct loop;
struct net;

/* Hands a plaintext HTTP connection (one end of a socketpair) to the REST server, which owns fd whatever it
 * returns (closing it on failure, as rest_add_connection does). */
typedef int (*net_http_handoff_fn)(void *ctx, int fd, const struct sockaddr *addr, socklen_t addrlen);
/* Whether the REST server's connection on fd (the handed-off end) is idle: the monotonic ms since when, or
 * -1 when it is busy (see rest_idle_since). */
typedef int64_t (*net_http_idle_fn)(void *ctx, int fd);

struct net_config {
    const char *bind;       /* address to listen on, e.g. "127.0.0.1", "0.0.0.0", "::" */
    int mqtts_port;         /* -1 = no listener; 0 = an ephemeral port */
    int https_port;
    int mqtt_port;
    int amqps_port;         /* AMQP over TLS (needs amqp) */
    int amqp_port;          /* plain AMQP, for development (needs amqp) */
    int http_port;          /* plain HTTP, every connection handed to the REST server */
    SSL_CTX *tls;           /* required for mqtts, https and amqps */
    const struct proto *mqtt; /* the MQTT listeners' front, and the WebSocket sub-protocol "mqtt" (required) */
    const struct proto *amqp; /* the AMQP listeners' front, and the WebSocket sub-protocol "AMQPWSB10" (NULL:
                                 no AMQP listeners, and AMQPWSB10 is refused) */
    /* HTTP connections' front (rest_front): it serves what it can and hands the connection to http_handoff
     * for anything else (conn_handoff_http). NULL: every HTTP connection goes to http_handoff at once. */
    const struct proto *http;
    net_http_handoff_fn http_handoff;
    void *http_ctx;
    net_http_idle_fn http_idle; /* NULL: idle HTTP connections are never evicted */
    /* Every port together. At the limit a new connection evicts the oldest idle HTTP connection (plain or
     * over TLS), else it is refused. shared_count (NULL: this net's own) lets nets share one limit. */
    size_t max_connections;
    size_t *shared_count;
    int connect_timeout_s;  /* to finish TLS and send CONNECT (or the first HTTP request) */
};

enum net_listener { NET_MQTTS, NET_HTTPS, NET_MQTT, NET_AMQPS, NET_AMQP, NET_HTTP, NET_LISTENERS };

/* Binds every configured listener. Returns NULL with a one-line reason in err (e.g. the port is in use, or
 * needs root / CAP_NET_BIND_SERVICE). */
struct net *net_new(struct loop *loop, const struct net_config *cfg, char *err, size_t errlen);
/* The actual port of a listener (after binding port 0), or -1 when it is not listening. */
int net_port(const struct net *n, enum net_listener which);
/* Stops accepting; existing connections stay. */
void net_stop_accepting(struct net *n);
size_t net_connection_count(const struct net *n);
/* Closes every connection and listener, and frees. Accepts NULL. */
void net_free(struct net *n);

#endif
