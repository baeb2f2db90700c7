/* buf.h -- a growable byte buffer with a hard size cap (in the spirit of curl's dynbuf).
 * Used for connection input/output queues and by the encoders. The struct is visible so it can be embedded:
 * use the API; `data[0..len)` is the content, and `data` may be NULL while len is 0. */
#ifndef IOTHUB_BUF_H
#define IOTHUB_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* appends that would grow len past max fail with ERR_TOO_BIG */
};

void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buf is empty and reusable afterwards. Accepts a zeroed buf. */
void buf_cleanup(struct buf *b);
/* Ensures room for n more bytes. ERR_TOO_BIG past max, ERR_NOMEM. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_byte(struct buf *b, uint8_t c);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal (as "%lld"), without printf's cost on hot paths. */
int buf_append_int(struct buf *b, long long v);
/* Writes v in decimal into out (room for 20 characters; no NUL) and returns its length. */
size_t buf_format_int(char *out, long long v);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Hands the storage to the caller as a NUL-terminated string (caller frees); the buf is left empty.
 * Returns NULL on ERR_NOMEM/ERR_TOO_BIG (the buf is then left as it was). */
char *buf_take_str(struct buf *b);

#endif
