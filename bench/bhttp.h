/* bhttp.h -- the HTTP/1.1 bits the benchmark's method caller needs: a response-head parser. Pure: no I/O,
 * no allocation; input is untrusted bytes with a length. Used by bcall.c; the request is a fixed template. */
#ifndef IOTHUB_BENCH_BHTTP_H
#define IOTHUB_BENCH_BHTTP_H

#include <stddef.h>
#include <stdint.h>

#define BHTTP_MAX_HEAD 16384

/* Parses the response at in[0..len). ERR_OK: *status, *head_len (up to and including the blank line) and
 * *body_len (from Content-Length) are set; the whole response is head_len + body_len bytes, which may not all
 * be there yet. ERR_NEED_MORE: no complete head yet. ERR_MALFORMED: not an HTTP/1.x status line, a chunked
 * or length-less body, a bad Content-Length, or a head over BHTTP_MAX_HEAD. */
int bhttp_parse_response(const uint8_t *in, size_t len, int *status, size_t *head_len, size_t *body_len);

#endif
