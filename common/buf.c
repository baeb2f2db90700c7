/* buf.c -- growable byte buffer with a hard cap (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_cleanup(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return ERR_TOO_BIG;
    size_t need = b->len + n;
    if (need <= b->cap)
        return ERR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1; /* +1 leaves room for buf_take_str's NUL */
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return ERR_OK;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return ERR_OK;
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return ERR_OK;
}

int buf_append_byte(struct buf *b, uint8_t c)
{
    return buf_append(b, &c, 1);
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    /* One pass when the text fits the room there is (or 128 bytes made for it); a second only when not. */
    if (b->cap - b->len < 128 && b->len + 128 <= b->max)
        buf_reserve(b, 128); /* a failure here is met below */
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ERR_INVALID;
    if ((size_t)n >= b->max - b->len)
        return ERR_TOO_BIG; /* the text and its NUL must fit under max, as buf_reserve(n + 1) requires */
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return ERR_OK;
    }
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return ERR_OK;
}

size_t buf_format_int(char *out, long long v)
{
    char d[24];
    size_t i = sizeof d;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        d[--i] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        d[--i] = '-';
    memcpy(out, d + i, sizeof d - i);
    return sizeof d - i;
}

int buf_append_int(struct buf *b, long long v)
{
    char d[24];
    return buf_append(b, d, buf_format_int(d, v));
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

char *buf_take_str(struct buf *b)
{
    if (b->len == b->cap) {
        uint8_t *p = realloc(b->data, b->len + 1);
        if (!p)
            return NULL;
        b->data = p;
        b->cap = b->len + 1;
    }
    if (!b->data) {
        b->data = malloc(1);
        if (!b->data)
            return NULL;
        b->cap = 1;
    }
    b->data[b->len] = '\0';
    char *s = (char *)b->data;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}
