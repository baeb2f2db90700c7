/* conn.h -- one accepted client connection: TCP, optionally TLS (OpenSSL), with an input buffer and an output
 * queue, and what the first bytes decided it carries: MQTT (an MQTT session), MQTT over WebSocket, or HTTP
 * handed to the REST server through a socketpair. Listeners and accepting live in net.c. */
#ifndef IOTHUB_CONN_H
#define IOTHUB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct conn;

/* Queues application bytes for the peer (wrapped in a WebSocket binary frame on WebSocket connections).
 * Over the per-connection output cap the connection is closed and ERR_TOO_BIG returned. */
int conn_send(struct conn *c, const uint8_t *data, size_t len);
/* conn_send of iov[0..n) in order as one message (one WebSocket frame), without joining them first. The
 * bytes are copied (or written) before it returns. */
int conn_sendv(struct conn *c, const struct iovec *iov, int n);
/* conn_sendv of head then body. */
int conn_send2(struct conn *c, const uint8_t *head, size_t hlen, const uint8_t *body, size_t blen);
/* Flushes what is queued, then closes; idempotent. The conn is freed later by net (never inside a callback).
 * reason is logged. */
void conn_close(struct conn *c, const char *reason);
/* Drops the connection without a goodbye, as a network failure would: queued output is discarded, no TLS
 * close_notify or WebSocket close frame, and the socket is closed with SO_LINGER 0 (the peer sees a TCP RST).
 * For fault injection (KillTcp). Idempotent; also after conn_close. The conn is freed later by net. */
void conn_abort(struct conn *c, const char *reason);
/* HTTP connections only: hands c, with the input its front has not consumed, to the REST server
 * (net_config.http_handoff) for the rest of its life. The front's input must return ERR_CLOSED next; net
 * frees the front then and relays bytes from there on. Output already queued goes first. */
void conn_handoff_http(struct conn *c);
/* hold: stop reading c (TCP back-pressure holds its peer), as a front does while it has input it cannot
 * take yet (a pipelined request behind one waiting for its device). A hang-up while held closes c. */
void conn_hold_input(struct conn *c, bool hold);
/* The front held input back (waiting to answer the request before it) and can take it now: net calls its
 * input again with what is buffered, before the loop next waits. */
void conn_input_ready(struct conn *c);
/* From input: the frame at the start of the input buffer is total bytes long (more than have come). net then
 * reads the rest in one read, past a turn's size; each input call forgets it, so a front that still waits says
 * it again. For fronts that read net's buffer itself (not WebSocket-framed input). */
void conn_expect(struct conn *c, size_t total);
/* Bytes queued for the peer and not yet written. */
size_t conn_queued(const struct conn *c);
/* The client authenticated: cancels the CONNECT deadline. */
void conn_established(struct conn *c);
/* "1.2.3.4:5678", for logs. */
const char *conn_peer(const struct conn *c);
/* "mqtts", "mqtt" or "wss", for logs. */
const char *conn_transport(const struct conn *c);

#endif
