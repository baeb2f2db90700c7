/* bhttp.c -- HTTP/1.1 response-head parsing for the benchmark's caller (see bhttp.h). */
#include "bhttp.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "err.h"

/* True when the header line [p, p+n) is "name:" (any case); *value points after the colon and spaces. */
static bool header_is(const char *p, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(p, name, k) != 0 || p[k] != ':')
        return false;
    size_t i = k + 1;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    *value = p + i;
    *vlen = n - i;
    while (*vlen && ((*value)[*vlen - 1] == ' ' || (*value)[*vlen - 1] == '\t'))
        (*vlen)--;
    return true;
}

static int parse_length(const char *v, size_t n, size_t *out)
{
    size_t x = 0;
    if (n == 0 || n > 12)
        return ERR_MALFORMED;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return ERR_MALFORMED;
        x = x * 10 + (size_t)(v[i] - '0');
    }
    *out = x;
    return ERR_OK;
}

/* Walks the header lines between the status line and the blank line for Content-Length. */
static int parse_headers(const char *p, const char *end, size_t *body_len)
{
    bool have_len = false;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        const char *v;
        size_t vn;
        if (header_is(p, (size_t)(eol - p), "Content-Length", &v, &vn)) {
            if (have_len || parse_length(v, vn, body_len))
                return ERR_MALFORMED;
            have_len = true;
        } else if (header_is(p, (size_t)(eol - p), "Transfer-Encoding", &v, &vn)) {
            return ERR_MALFORMED; /* the emulator answers with lengths; chunked is not expected */
        }
        p = eol + 2;
    }
    return have_len ? ERR_OK : ERR_MALFORMED;
}

int bhttp_parse_response(const uint8_t *in, size_t len, int *status, size_t *head_len, size_t *body_len)
{
    const char *s = (const char *)in;
    size_t scan = len > BHTTP_MAX_HEAD ? BHTTP_MAX_HEAD : len;
    const char *blank = memmem(s, scan, "\r\n\r\n", 4);
    if (!blank)
        return len >= BHTTP_MAX_HEAD ? ERR_MALFORMED : ERR_NEED_MORE;
    /* "HTTP/1.x NNN" */
    if (blank - s < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ')
        return ERR_MALFORMED;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_MALFORMED;
        code = code * 10 + (s[i] - '0');
    }
    const char *line2 = memmem(s, (size_t)(blank - s) + 2, "\r\n", 2);
    if (parse_headers(line2 + 2, blank + 2, body_len))
        return ERR_MALFORMED;
    *status = code;
    *head_len = (size_t)(blank - s) + 4;
    return ERR_OK;
}
