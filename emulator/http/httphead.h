/* httphead.h -- the head of one HTTP/1.1 request, as the direct-method front (rest_front.h) needs it: request
 * line, Content-Length, Authorization, Expect: 100-continue and Connection: close. The parser only says
 * "sure" or "not mine": a head in the common well-formed shape is parsed; anything else (HTTP/1.0, chunked
 * bodies, folded or duplicate framing headers, bare LF, obs-text, an Upgrade, a head over the limit) is left,
 * byte for byte, to libmicrohttpd, so every unusual case keeps the answer it had. Pure; no allocation.
 * Fuzzed: tests/fuzz/fuzz_httphead.c. Tests: tests/unit/test_httphead.c. */
#ifndef IOTHUB_HTTPHEAD_H
#define IOTHUB_HTTPHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPHEAD_MAX 8192 /* a longer head goes to MHD (its pool is 16 KiB) */

enum httphead_result {
    HTTPHEAD_OK,        /* a whole head, parsed */
    HTTPHEAD_NEED_MORE, /* no verdict yet: the head is incomplete, its request line (when whole) is good, no bare
                         * LF so far and it is under HTTPHEAD_MAX; its headers are judged when it is complete */
    HTTPHEAD_OTHER,     /* not a head this parser is sure of: hand the bytes to MHD */
};

/* Views into the caller's bytes (not NUL-terminated). */
struct httphead {
    const char *method;
    size_t method_len;
    const char *target; /* the request target as sent: "/twins/d/methods?api-version=..." */
    size_t target_len;
    const char *authorization; /* the value without surrounding whitespace; NULL when absent */
    size_t authorization_len;
    uint64_t content_length; /* 0 when absent */
    bool expect_continue;    /* Expect: 100-continue */
    bool close;              /* Connection: close */
    size_t head_len;         /* bytes up to and including the empty line */
};

/* Parses the head at the start of p[0..len). Required for OK: "TOKEN SP /target SP HTTP/1.1" CRLF, header
 * lines "name: value" CRLF with a token name and a value of visible ASCII, space and tab, a Host header and
 * at most one each of Content-Length (digits, at most 10) and Authorization. OTHER for Transfer-Encoding,
 * Upgrade, an Expect other than 100-continue, a Connection token other than close / keep-alive, and
 * everything the grammar above does not cover. */
enum httphead_result httphead_parse(const uint8_t *p, size_t len, struct httphead *out);

/* True when target's path (before any '?') looks like a direct-method route: "/twins/" ... "/methods". */
bool httphead_is_method_target(const char *target, size_t len);

#endif
