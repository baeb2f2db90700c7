/* httphead.c -- the HTTP/1.1 request-head parser of the direct-method front (see httphead.h): RFC 9112's
 * request line and field lines in their common shape only; whatever it is not sure of goes to MHD. */
#include "httphead.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_value_char(uint8_t c)
{
    return (c >= 0x20 && c <= 0x7e) || c == '\t';
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* One pass over the line feeds of p[0..len): the end of the head (just past CRLF CRLF), or NULL with *bare
 * set when an LF without its CR comes first. */
static const uint8_t *head_end(const uint8_t *p, size_t len, bool *bare)
{
    *bare = false;
    for (const uint8_t *lf = memchr(p, '\n', len); lf; lf = memchr(lf + 1, '\n', len - (size_t)(lf + 1 - p))) {
        if (lf == p || lf[-1] != '\r') {
            *bare = true;
            return NULL;
        }
        if (lf - p >= 3 && lf[-2] == '\n') /* its CR was checked with it */
            return lf + 1;
    }
    return NULL;
}

/* "close" and "keep-alive", comma-separated with optional whitespace; false for any other token, and for
 * two tokens with only whitespace between them ("keep-alive close" is one unknown element to MHD, which
 * would not close). */
static bool parse_connection(const char *v, size_t len, bool *close)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i == start)
            break;
        if (name_is(v + start, i - start, "close"))
            *close = true;
        else if (!name_is(v + start, i - start, "keep-alive"))
            return false;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < len && v[i] != ',')
            return false;
    }
    return true;
}

static bool parse_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0 || len > 10)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return true;
}

/* One field line's name and value (whitespace trimmed); false for the ones that make the head OTHER. */
static bool take_field(const char *name, size_t nlen, const char *v, size_t vlen, struct httphead *h, bool *seen_host,
                       bool *seen_length)
{
    if (name_is(name, nlen, "content-length")) {
        if (*seen_length || !parse_length(v, vlen, &h->content_length))
            return false;
        *seen_length = true;
    } else if (name_is(name, nlen, "authorization")) {
        if (h->authorization)
            return false;
        h->authorization = v;
        h->authorization_len = vlen;
    } else if (name_is(name, nlen, "host")) {
        if (*seen_host)
            return false;
        *seen_host = true;
    } else if (name_is(name, nlen, "expect")) {
        if (!name_is(v, vlen, "100-continue"))
            return false;
        h->expect_continue = true;
    } else if (name_is(name, nlen, "connection")) {
        return parse_connection(v, vlen, &h->close);
    } else if (name_is(name, nlen, "transfer-encoding") || name_is(name, nlen, "upgrade")) {
        return false;
    }
    return true;
}

/* "METHOD SP /target SP HTTP/1.1" ending at eol (the CR). */
static bool parse_request_line(const char *s, const char *eol, struct httphead *h)
{
    const char *p = s;
    while (p < eol && is_tchar((uint8_t)*p))
        p++;
    if (p == s || p >= eol || *p != ' ')
        return false;
    h->method = s;
    h->method_len = (size_t)(p - s);
    const char *t = ++p;
    while (p < eol && (uint8_t)*p > 0x20 && (uint8_t)*p < 0x7f)
        p++;
    if (p == t || *t != '/' || p >= eol || *p != ' ')
        return false;
    h->target = t;
    h->target_len = (size_t)(p - t);
    p++;
    return eol - p == 8 && memcmp(p, "HTTP/1.1", 8) == 0;
}

enum httphead_result httphead_parse(const uint8_t *p, size_t len, struct httphead *out)
{
    memset(out, 0, sizeof *out);
    size_t seen = len < HTTPHEAD_MAX ? len : HTTPHEAD_MAX; /* a head past it is not looked for */
    bool bare = false;
    const uint8_t *end = p && seen ? head_end(p, seen, &bare) : NULL;
    if (!end) {
        if (len >= HTTPHEAD_MAX || bare)
            return HTTPHEAD_OTHER;
        /* A whole request line is judged at once: a GET or an HTTP/1.0 goes to MHD without its headers. */
        const char *eol = seen >= 2 ? memmem(p, seen, "\r\n", 2) : NULL;
        if (eol && !parse_request_line((const char *)p, eol, out))
            return HTTPHEAD_OTHER;
        memset(out, 0, sizeof *out);
        return HTTPHEAD_NEED_MORE;
    }
    size_t head_len = (size_t)(end - p); /* at most HTTPHEAD_MAX; every LF in it has its CR */
    const char *s = (const char *)p, *stop = (const char *)end - 2; /* the final CRLF */
    const char *eol = memchr(s, '\r', (size_t)(stop - s));
    if (!eol || eol[1] != '\n' || !parse_request_line(s, eol, out))
        return HTTPHEAD_OTHER;
    bool seen_host = false, seen_length = false;
    for (s = eol + 2; s < stop; s = eol + 2) {
        eol = memchr(s, '\r', (size_t)(stop - s));
        if (!eol || eol[1] != '\n')
            return HTTPHEAD_OTHER; /* a lone CR */
        const char *colon = s;
        while (colon < eol && is_tchar((uint8_t)*colon))
            colon++;
        if (colon == s || colon >= eol || *colon != ':')
            return HTTPHEAD_OTHER; /* no name, whitespace before the colon, or a folded line */
        const char *v = colon + 1, *ve = eol;
        for (const char *q = v; q < ve; q++)
            if (!is_value_char((uint8_t)*q))
                return HTTPHEAD_OTHER;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (!take_field(s, (size_t)(colon - s), v, (size_t)(ve - v), out, &seen_host, &seen_length))
            return HTTPHEAD_OTHER;
    }
    if (!seen_host)
        return HTTPHEAD_OTHER;
    out->head_len = head_len;
    return HTTPHEAD_OK;
}

bool httphead_is_method_target(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    size_t path_len = q ? (size_t)(q - target) : len;
    return path_len > 7 + 8 && memcmp(target, "/twins/", 7) == 0 && memcmp(target + path_len - 8, "/methods", 8) == 0;
}
