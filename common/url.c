/* url.c -- percent-encoding as the IoT SDKs do it (strict, upper-case hex) and percent-decoding of wire
 * text (hex in either case, '+' left alone). Pure: no I/O, no globals. Tests: tests/unit/test_url.c. */
#include "url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

static int url_is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static int url_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *url_encode(const char *text, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if ((!text && len) || len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (url_is_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0x0f];
        }
    }
    out[o] = '\0';
    return out;
}

/* A raw NUL is refused like a decoded one: the result is a C string and must not be cut short. */
int url_decode(const char *text, size_t len, char **out, size_t *out_len)
{
    int rc = ERR_OK;
    char *res = NULL;
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out || (!text && len) || len == SIZE_MAX) {
        rc = ERR_INVALID;
        goto out;
    }
    res = malloc(len + 1);
    if (!res) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '%') {
            if (len - i < 3) {
                rc = ERR_MALFORMED;
                goto out;
            }
            int hi = url_hex_value((unsigned char)text[i + 1]);
            int lo = url_hex_value((unsigned char)text[i + 2]);
            if (hi < 0 || lo < 0) {
                rc = ERR_MALFORMED;
                goto out;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') {
            rc = ERR_MALFORMED;
            goto out;
        }
        res[o++] = (char)c;
    }
    res[o] = '\0';
    if (out_len)
        *out_len = o;
    *out = res;
    res = NULL;
out:
    free(res);
    return rc;
}

int url_bag_add(struct buf *t, bool *first, const char *key, const char *value)
{
    return value[0] ? url_bag_add_even_empty(t, first, key, value) : ERR_OK;
}

int url_bag_add_even_empty(struct buf *t, bool *first, const char *key, const char *value)
{
    char *k = url_encode(key, strlen(key)), *v = url_encode(value, strlen(value));
    int rc = k && v ? buf_printf(t, "%s%s=%s", *first ? "" : "&", k, v) : ERR_NOMEM;
    *first = false;
    free(k);
    free(v);
    return rc;
}
