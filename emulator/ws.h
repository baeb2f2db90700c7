/* ws.h -- the HTTP/1.1 request-head sniff on :443 and RFC 6455 WebSocket framing for MQTT over WebSocket.
 * Pure: no sockets; decoding unmasks payloads in place in the caller's buffer. Output goes to a struct buf.
 * Tests: tests/unit/test_ws.c; fuzz: tests/fuzz/fuzz_ws.c. */
#ifndef IOTHUB_WS_H
#define IOTHUB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest request head the sniff accepts (larger: ERR_TOO_BIG, the connection is closed). */
#define WS_MAX_REQUEST_HEAD 16384
/* Largest reassembled message / single frame payload accepted. */
#define WS_MAX_MESSAGE (512u * 1024u)

/* The decision for the first request on a :443 connection. */
struct ws_upgrade {
    bool is_websocket;     /* GET /$iothub/websocket[?...] with Upgrade: websocket, Connection: upgrade,
                              Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key */
    bool path_matches;     /* the request is GET /$iothub/websocket[?query] (even if not a valid upgrade) */
    char key[64];          /* Sec-WebSocket-Key, NUL-terminated */
    char protocol[32];     /* the client's spelling of the "mqtt" entry of Sec-WebSocket-Protocol (matched
                              case-insensitively), or "" when the client offered none */
    bool offered_protocols; /* the client sent Sec-WebSocket-Protocol at all */
};

/* Looks at buf[0..len) as the start of an HTTP/1.1 request.
 * ERR_NEED_MORE: no complete head yet (no CRLFCRLF) and len <= WS_MAX_REQUEST_HEAD.
 * ERR_TOO_BIG: no complete head within WS_MAX_REQUEST_HEAD bytes. ERR_MALFORMED: not an HTTP request line.
 * ERR_OK: *out filled, *head_len = bytes up to and including the blank line. Non-WebSocket requests are
 * ERR_OK with is_websocket false: the caller hands all bytes, unconsumed, to the REST server. */
int ws_sniff(const uint8_t *buf, size_t len, struct ws_upgrade *out, size_t *head_len);

/* Appends the 101 Switching Protocols response for u (Sec-WebSocket-Accept computed from u->key;
 * Sec-WebSocket-Protocol echoes u->protocol when not empty). */
int ws_encode_accept(struct buf *out, const struct ws_upgrade *u);
/* Appends a plain HTTP error response (e.g. 400 for a bad upgrade on the WebSocket path) with a short body. */
int ws_encode_http_error(struct buf *out, int status, const char *reason);

/* A WebSocket stream as seen by the server: turns client frames into application bytes (MQTT is a byte
 * stream, so binary message payloads are simply concatenated) and answers control frames. */
struct ws_stream {
    bool in_message;   /* inside a fragmented data message */
    bool close_sent;
    bool close_received;
    size_t message_len; /* bytes of the current message so far (for WS_MAX_MESSAGE) */
};

void ws_stream_init(struct ws_stream *s);
/* Consumes whole frames from in[0..len) (unmasking in place) and stops at a partial frame.
 * Data goes to app_in; pongs and the close reply go to wire_out. *consumed = bytes used.
 * Returns ERR_OK (more may come), ERR_CLOSED (the close handshake is done or requested: flush wire_out,
 * then close), ERR_MALFORMED (protocol error: unmasked client frame, reserved bits, text frame,
 * bad opcode, control frame > 125 bytes or fragmented, continuation without a start; a close frame with
 * code 1002 is appended to wire_out), ERR_TOO_BIG (message over WS_MAX_MESSAGE; close 1009 appended),
 * or ERR_NOMEM / the buf's ERR_TOO_BIG from app_in / wire_out. */
int ws_stream_decode(struct ws_stream *s, uint8_t *in, size_t len, size_t *consumed, struct buf *app_in,
                     struct buf *wire_out);
/* Appends one unmasked binary frame carrying data (server to client). */
int ws_encode_binary(struct buf *out, const uint8_t *data, size_t len);
/* Appends a close frame with a status code (server to client). */
int ws_encode_close(struct buf *out, uint16_t code);

/* Client side, for tests and benchmarks: the upgrade request, and masked frames. */
int ws_encode_client_request(struct buf *out, const char *host, const char *path, const char *key,
                             const char *protocol);
int ws_encode_client_frame(struct buf *out, uint8_t opcode, bool fin, const uint8_t *data, size_t len,
                           const uint8_t mask[4]);

#endif
