/* jsoncheck.c -- strict JSON validation by recursive descent with a depth cap (see jsoncheck.h). */
#include "jsoncheck.h"

#include <stdint.h>
#include <string.h>

struct cursor {
    const unsigned char *p;
    const unsigned char *end;
};

static bool parse_value(struct cursor *c, int depth);

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool literal(struct cursor *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    c->p += n;
    return true;
}

static bool digits(struct cursor *c)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > start;
}

static bool number(struct cursor *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (!digits(c))
        return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c))
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!digits(c))
            return false;
    }
    return true;
}

static bool hex4(struct cursor *c)
{
    if (c->end - c->p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        unsigned char h = c->p[i];
        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
            return false;
    }
    c->p += 4;
    return true;
}

/* One UTF-8 sequence of 2..4 bytes starting at lead byte b (already known to be >= 0x80). */
static bool utf8_seq(struct cursor *c)
{
    unsigned char b = *c->p;
    int n;
    uint32_t cp;
    if (b >= 0xc2 && b <= 0xdf) {
        n = 1;
        cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 2;
        cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 3;
        cp = b & 0x07;
    } else {
        return false;
    }
    if (c->end - c->p <= n)
        return false;
    for (int i = 1; i <= n; i++) {
        if ((c->p[i] & 0xc0) != 0x80)
            return false;
        cp = (cp << 6) | (c->p[i] & 0x3f);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
        return false;
    c->p += n + 1;
    return true;
}

static bool string(struct cursor *c)
{
    c->p++; /* opening quote */
    while (c->p < c->end) {
        unsigned char b = *c->p;
        if (b == '"') {
            c->p++;
            return true;
        }
        if (b < 0x20)
            return false;
        if (b == '\\') {
            c->p++;
            if (c->p >= c->end)
                return false;
            unsigned char e = *c->p++;
            if (e == 'u' && !hex4(c))
                return false;
            if (e != 'u' && (e == 0 || !strchr("\"\\/bfnrt", e))) /* strchr would find a NUL */
                return false;
        } else if (b >= 0x80) {
            if (!utf8_seq(c))
                return false;
        } else {
            c->p++;
        }
    }
    return false;
}

/* Comma-separated members or elements up to `close`; object members are "string : value". */
static bool container(struct cursor *c, int depth, unsigned char close, bool object)
{
    c->p++; /* opening bracket */
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return true;
    }
    for (;;) {
        if (object) {
            skip_ws(c);
            if (c->p >= c->end || *c->p != '"' || !string(c))
                return false;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return false;
            c->p++;
        }
        if (!parse_value(c, depth + 1))
            return false;
        skip_ws(c);
        if (c->p >= c->end)
            return false;
        unsigned char b = *c->p++;
        if (b == close)
            return true;
        if (b != ',')
            return false;
    }
}

static bool parse_value(struct cursor *c, int depth)
{
    if (depth > JSONCHECK_MAX_DEPTH)
        return false;
    skip_ws(c);
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{': return container(c, depth, '}', true);
    case '[': return container(c, depth, ']', false);
    case '"': return string(c);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default: return number(c);
    }
}

bool jsoncheck_is_valid(const char *text, size_t len)
{
    if (!text)
        return false;
    struct cursor c = {(const unsigned char *)text, (const unsigned char *)text + len};
    if (!parse_value(&c, 1))
        return false;
    skip_ws(&c);
    return c.p == c.end;
}
