/* err.h -- the one result enum shared by every module (0 is success, so callers write `if (rc) goto out;`).
 * Human-readable detail goes to the log or to an err buffer the caller supplies, never into this enum. */
#ifndef IOTHUB_ERR_H
#define IOTHUB_ERR_H

#include <stddef.h>

enum err {
    ERR_OK = 0,
    ERR_NOMEM,        /* an allocation failed */
    ERR_INVALID,      /* an argument or input is not acceptable */
    ERR_MALFORMED,    /* network input breaks its protocol's grammar */
    ERR_NEED_MORE,    /* a codec needs more bytes before it can decide */
    ERR_TOO_BIG,      /* input or output is over a configured cap */
    ERR_NOT_FOUND,
    ERR_EXISTS,
    ERR_PRECONDITION, /* an etag / If-Match did not match */
    ERR_IO,           /* a system call failed; errno was logged where it happened */
    ERR_AUTH,         /* credentials rejected */
    ERR_CLOSED,       /* the peer closed the connection */
};

/* A short, static, lower-case description of rc ("malformed input"). Never NULL. */
const char *err_str(enum err rc);
/* Writes a formatted one-line reason into a caller's err buffer (truncated to errlen); a no-op when err is NULL
 * or errlen 0. */
void err_setf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
