/* ws.h -- the HTTP/1.1 request-head sniff on :443 and RFC 6455 WebSocket framing for MQTT over WebSocket.
 * Pure: no sockets; decoding unmasks payloads in place in the caller's buffer. Output goes to a struct buf.
 * Tests: tests/unit/test_ws.c; fuzz: tests/fuzz/fuzz_ws.c. */
#ifndef IOTHUB_WS_H
#define IOTHUB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buf.h"

/* Largest request head the sniff accepts (larger: ERR_TOO_BIG, the connection is closed). */
#define WS_MAX_REQUEST_HEAD 16384
/* Largest reassembled message / single frame payload accepted. */
#define WS_MAX_MESSAGE (512u * 1024u)

/* Frame opcodes (RFC 6455 5.2). */
#define WS_OP_CONTINUATION 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

/* Close status codes this module sends (RFC 6455 7.4.1). */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_TOO_BIG 1009

/* The decision for the first request on a :443 connection. */
struct ws_upgrade {
    bool is_websocket;     /* GET /$iothub/websocket[?...] with Upgrade: websocket, Connection: upgrade,
                              Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key */
    bool path_matches;     /* the request is GET /$iothub/websocket[?query] or /$servicebus/websocket[/][?query]
                              (even if not a valid upgrade) */
    bool servicebus_path;  /* the path is one of the /$servicebus ones (AMQP clients) */
    char key[64];          /* Sec-WebSocket-Key, NUL-terminated */
    char protocol[32];     /* the client's spelling of the "mqtt" entry of Sec-WebSocket-Protocol, else of the
                              "AMQPWSB10" entry (matched case-insensitively), or "" when it offered neither */
    bool offered_protocols; /* the client sent Sec-WebSocket-Protocol at all */
};

/* Looks at buf[0..len) as the start of an HTTP/1.1 request.
 * ERR_NEED_MORE: no complete head yet (no CRLFCRLF) and len <= WS_MAX_REQUEST_HEAD.
 * ERR_TOO_BIG: no complete head within WS_MAX_REQUEST_HEAD bytes. ERR_MALFORMED: not an HTTP request line.
 * ERR_OK: *out filled, *head_len = bytes up to and including the blank line. Non-WebSocket requests are
 * ERR_OK with is_websocket false: the caller hands all bytes, unconsumed, to the REST server.
 * Grammar decisions (RFC 9112 strictness, since the bytes come straight from the network):
 * - lines end with CRLF; a bare LF, a CR not followed by LF, or a NUL byte anywhere in the head is
 *   ERR_MALFORMED, even before the head is complete. The request line is checked as it arrives, so non-HTTP
 *   bytes (an MQTT CONNECT, a TLS record, a leading empty line) are ERR_MALFORMED at once.
 * - header lines: a token name, ':' right after it (whitespace before ':' and obs-fold continuation lines
 *   are ERR_MALFORMED), optional whitespace around the value, no control bytes but HTAB in the value.
 *   A single line has no limit of its own: the whole head is capped at WS_MAX_REQUEST_HEAD.
 * - Upgrade and Connection are comma lists searched for a token (case-insensitive), so
 *   "Connection: keep-alive, Upgrade" is fine; headers may repeat. is_websocket also needs HTTP/1.1 or later
 *   (RFC 6455 4.1), exactly one Sec-WebSocket-Version equal to "13" and exactly one Sec-WebSocket-Key of
 *   printable bytes that fits key[]; anything else is ERR_OK with is_websocket false (the caller answers
 *   400 when path_matches). Host is not required. Extensions are ignored (none is ever negotiated).
 * - When offered_protocols is true but protocol is "" (no "mqtt" entry), the caller answers 400. */
int ws_sniff(const uint8_t *buf, size_t len, struct ws_upgrade *out, size_t *head_len);

/* Appends the 101 Switching Protocols response for u (Sec-WebSocket-Accept computed from u->key;
 * Sec-WebSocket-Protocol echoes u->protocol when not empty). ERR_INVALID when u->key is empty or unterminated
 * or u->protocol is not a token. Appends all or nothing, as every encoder here does. */
int ws_encode_accept(struct buf *out, const struct ws_upgrade *u);
/* Appends a plain HTTP error response (e.g. 400 for a bad upgrade on the WebSocket path): status 400..599,
 * Content-Type text/plain, Content-Length, Connection: close, body "<reason>\n". ERR_INVALID for another
 * status or a reason with bytes outside 0x20..0x7e. */
int ws_encode_http_error(struct buf *out, int status, const char *reason);

/* A WebSocket stream as seen by the server: turns client frames into application bytes (MQTT is a byte
 * stream, so binary message payloads are simply concatenated) and answers control frames. */
struct ws_stream {
    bool in_message;   /* inside a fragmented data message */
    bool close_sent;   /* set by the decoder; the caller sets it too when it sends its own ws_encode_close */
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
 * or ERR_NOMEM / the buf's ERR_TOO_BIG from app_in / wire_out (nothing appended; a retry after draining
 * app_in works). A frame that is refused, for any reason, is neither consumed nor unmasked.
 * Decisions: text frames are a protocol error (MQTT over WebSocket is binary only, MQTT 3.1.1 section 6);
 * header errors are reported as soon as the frame header is complete, before its payload arrives;
 * non-minimal length encodings are accepted; a 64-bit length with the top bit set, a close payload of
 * 1 byte or a close code that may not be sent on the wire (RFC 6455 7.4) is 1002; the close reason is not
 * checked for UTF-8; pongs are ignored; a close is answered with the same code (or an empty close when
 * it had none) unless close_sent is already set. After ERR_CLOSED further calls return ERR_CLOSED. */
int ws_stream_decode(struct ws_stream *s, uint8_t *in, size_t len, size_t *consumed, struct buf *app_in,
                     struct buf *wire_out);
/* Appends one unmasked binary frame carrying data (server to client). */
int ws_encode_binary(struct buf *out, const uint8_t *data, size_t len);
/* The same with a payload of iov[0..n) in order, not joined first (an MQTT head and a large body). */
int ws_encode_binaryv(struct buf *out, const struct iovec *iov, int n);
/* Appends a close frame with a status code (server to client). */
int ws_encode_close(struct buf *out, uint16_t code);

/* Client side, for tests and benchmarks: the upgrade request, and masked frames. */
/* GET path HTTP/1.1 with Host, Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version: 13 and, when
 * protocol is neither NULL nor "", Sec-WebSocket-Protocol. ERR_INVALID for CR/LF/control bytes in an argument
 * or an empty path/key. */
int ws_encode_client_request(struct buf *out, const char *host, const char *path, const char *key,
                             const char *protocol);
/* Appends one frame masked with mask (any opcode 0..15, so tests can build bad frames; mask NULL appends an
 * unmasked frame, which a server must reject). ERR_INVALID for an opcode over 15. */
int ws_encode_client_frame(struct buf *out, uint8_t opcode, bool fin, const uint8_t *data, size_t len,
                           const uint8_t mask[4]);
/* Decodes one unmasked server frame at in[0..len): outputs valid only on ERR_OK; *payload points into in.
 * ERR_NEED_MORE for a partial frame; ERR_MALFORMED for a masked frame, RSV bits, a reserved opcode, a
 * fragmented or > 125 byte control frame, or a 64-bit length with the top bit set. Stateless: the caller
 * tracks fragmentation. */
int ws_client_decode(const uint8_t *in, size_t len, size_t *consumed, uint8_t *opcode, bool *fin,
                     const uint8_t **payload, size_t *payload_len);
/* Checks in[0..len) for the server's reply to a request sent with key: ERR_OK when it is an
 * HTTP/1.x 101 with Upgrade: websocket, Connection: upgrade and the right Sec-WebSocket-Accept;
 * *head_len = bytes up to and including the blank line (frames may follow). ERR_NEED_MORE, ERR_TOO_BIG
 * (no head within WS_MAX_REQUEST_HEAD), ERR_INVALID (key empty or longer than 63 bytes), ERR_MALFORMED
 * (anything else: another status, a missing header, a wrong accept value, bad grammar). */
int ws_client_parse_accept(const uint8_t *in, size_t len, const char *key, size_t *head_len);

#endif
