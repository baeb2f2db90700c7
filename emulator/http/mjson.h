/* mjson.h -- the one-pass scanner of a direct-method request body (issue 20): finds methodName, payload,
 * responseTimeoutInSeconds and connectTimeoutInSeconds and validates the whole body without building a tree.
 * It answers only what it is sure of: "this is JSON jansson accepts, and here are the members, with the
 * payload's bytes being exactly jansson's compact dump of it (once whitespace is dropped)". Anything else
 * (escapes beyond \" \\ \b \f \n \r \t, reals, integers of 19+ digits, -0, duplicate keys in the payload or
 * of a known member, deep nesting, any error) is "not sure", and restapi.c takes its jansson path, which
 * also writes every error message. Pure: no allocation, no I/O. Fuzzed against jansson through
 * restapi_method_parse (tests/fuzz/fuzz_method_body.c); unit tests in tests/unit/test_restapi.c. */
#ifndef IOTHUB_MJSON_H
#define IOTHUB_MJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MJSON_MAX_DEPTH 64   /* nesting the fast path takes (jansson's own limit is 2048) */
#define MJSON_MAX_KEYS 256   /* keys of the payload's open objects held for the duplicate check */
#define MJSON_MAX_DIGITS 18  /* integers of at most this many digits fit int64 whatever they are */

enum mjson_kind {
    MJSON_ABSENT,  /* the member is not in the body */
    MJSON_NULL,    /* null */
    MJSON_STRING,  /* a string without escapes (its text: p + 1, len - 2) */
    MJSON_INTEGER, /* an integer of at most MJSON_MAX_DIGITS digits, in .integer */
    MJSON_OTHER,   /* anything else (the bytes of the value) */
};

struct mjson_member {
    enum mjson_kind kind;
    const uint8_t *p; /* the value's bytes, as in the body */
    size_t len;
    long long integer;
    bool spaced; /* whitespace inside the value (outside strings): the compact form is shorter */
};

struct mjson_method {
    struct mjson_member method_name, payload, response_timeout, connect_timeout;
};

/* Scans body[0..len). True when the body is one JSON object jansson (JSON_DECODE_ANY | JSON_ALLOW_NUL) accepts,
 * no known member appears twice, and the payload's compact form is its bytes without whitespace outside
 * strings (out filled). False: not sure; take the tree path. */
bool mjson_method_scan(const uint8_t *body, size_t len, struct mjson_method *out);

/* Copies a value's bytes to out without whitespace outside strings (out holds len bytes); returns the length. */
size_t mjson_compact(const uint8_t *p, size_t len, uint8_t *out);

/* Length of the run at p of bytes a JSON string holds as they are (0x20..0x7f but " and \\): 64 bytes a step
 * with AVX2, 16 with SSE2, then 8, then 1. */
size_t mjson_plain_run(const uint8_t *p, size_t len);

/* Length of the valid UTF-8 sequence at p (strict: no overlongs, surrogates or > U+10FFFF), 0 if invalid. */
size_t mjson_utf8_seq(const uint8_t *p, size_t len);

#endif
