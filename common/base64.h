/* base64.h -- standard base64 (RFC 4648 §4, with padding) through OpenSSL's EVP encoder. Strict decoding. */
#ifndef IOTHUB_BASE64_H
#define IOTHUB_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encodes len bytes; returns a malloc'd NUL-terminated string (caller frees) or NULL on ERR_NOMEM. */
char *base64_encode(const uint8_t *data, size_t len);
/* Decodes text[0..len) strictly: only the standard alphabet, length a multiple of 4, '=' only as final
 * padding. On ERR_OK *out is malloc'd (caller frees) and *out_len set; otherwise *out is NULL.
 * Returns ERR_OK, ERR_MALFORMED or ERR_NOMEM. */
int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

#endif
