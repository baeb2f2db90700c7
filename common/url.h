/* url.h -- percent-encoding as the IoT SDKs do it, and lenient percent-decoding of wire text. */
#ifndef IOTHUB_URL_H
#define IOTHUB_URL_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

/* Strict encoding: everything but A-Z a-z 0-9 - _ . ~ becomes %XX with upper-case hex (so '/' is %2F,
 * '=' %3D, '+' %2B). Returns a malloc'd string (caller frees) or NULL on ERR_NOMEM. */
char *url_encode(const char *text, size_t len);
/* Decodes %XX (hex in either case); '+' is kept as '+'. Rejects a '%' not followed by two hex digits and
 * a decoded NUL. On ERR_OK *out is malloc'd and NUL-terminated (caller frees), *out_len its length (may
 * be NULL). Returns ERR_OK, ERR_MALFORMED or ERR_NOMEM. */
int url_decode(const char *text, size_t len, char **out, size_t *out_len);

/* Appends one pair of a property bag ("k=v&k2=v2", as IoT Hub's MQTT topics carry them) to t: "&key=value"
 * (without the '&' while *first, which it then clears), both percent-encoded; nothing for an empty value.
 * Returns ERR_OK, ERR_NOMEM or an error of buf_printf. */
int url_bag_add(struct buf *t, bool *first, const char *key, const char *value);
/* The same, but an empty value is kept ("&key="): an application property's empty string is a value the
 * device sent (MQTT's "k=" and HTTPS's empty iothub-app-k header keep it too); system properties use
 * url_bag_add, where empty means unset. */
int url_bag_add_even_empty(struct buf *t, bool *first, const char *key, const char *value);

#endif
