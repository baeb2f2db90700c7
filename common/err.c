/* err.c -- text for the shared result enum (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

const char *err_str(enum err rc)
{
    switch (rc) {
    case ERR_OK: return "ok";
    case ERR_NOMEM: return "out of memory";
    case ERR_INVALID: return "invalid argument";
    case ERR_MALFORMED: return "malformed input";
    case ERR_NEED_MORE: return "incomplete input";
    case ERR_TOO_BIG: return "too large";
    case ERR_NOT_FOUND: return "not found";
    case ERR_EXISTS: return "already exists";
    case ERR_PRECONDITION: return "precondition failed";
    case ERR_IO: return "i/o error";
    case ERR_AUTH: return "not authorized";
    case ERR_CLOSED: return "connection closed";
    }
    return "unknown error";
}

void err_setf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
