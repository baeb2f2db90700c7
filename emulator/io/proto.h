/* proto.h -- what a protocol front gives net for the connections it carries: net knows bytes, TLS and the
 * :443 sniff, never MQTT (or AMQP). A listener, or a WebSocket sub-protocol on :443, is configured with one
 * struct proto; net calls open once per connection, input with every chunk of plaintext (application bytes
 * after WebSocket deframing), and free when the connection is gone. The front writes through conn.h. */
#ifndef IOTHUB_PROTO_H
#define IOTHUB_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct conn;

struct proto {
    const char *name;  /* "mqtt", for logs */
    size_t max_frame;  /* the largest frame input may need whole: net sizes its input buffers by it */
    /* A new connection. Returns the front's state for it, or NULL on ERR_NOMEM (net closes the conn). */
    void *(*open)(void *ctx, struct conn *c);
    /* Consumes every whole frame at the start of in. Returns ERR_OK, or ERR_CLOSED once the front has asked its
     * conn to close (net then stops feeding it). */
    int (*input)(void *state, struct buf *in);
    /* The connection is gone (or going): leave the hub, free everything. Never called inside input. */
    void (*free)(void *state);
    /* Optional (NULL: never): the monotonic ms (loop_now_ms) since which the connection has been idle, or -1
     * while it is busy. At the connection limit net closes the longest-idle such connection for a new one. */
    int64_t (*idle_since)(void *state);
    void *ctx;
};

#endif
