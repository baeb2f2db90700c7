/* jsoncheck.h -- a small strict JSON (RFC 8259) validator, so the device can refuse to send a response body
 * that the hub would reject, without linking a JSON library into the device client. Pure: no allocation,
 * no globals; nesting is limited to JSONCHECK_MAX_DEPTH. Internal to device/.
 * Tests: tests/unit/test_device_jsoncheck.c. */
#ifndef IOTHUB_JSONCHECK_H
#define IOTHUB_JSONCHECK_H

#include <stdbool.h>
#include <stddef.h>

#define JSONCHECK_MAX_DEPTH 64

/* True when text[0..len) is exactly one JSON value, optionally surrounded by whitespace. Strings must be
 * valid UTF-8 without raw control characters; numbers follow the RFC grammar. */
bool jsoncheck_is_valid(const char *text, size_t len);

#endif
