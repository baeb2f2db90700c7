/* fuzz_httphead.c -- libFuzzer harness for httphead_parse (emulator/http/httphead.h) and
 * httphead_is_method_target: besides never crashing or reading past the input, it aborts when a verdict breaks
 * the contract: OK's views lie inside the head, which ends with the first CRLF CRLF and is at most HTTPHEAD_MAX;
 * parsing only the head gives the same fields; no shorter prefix is OK; NEED_MORE only for an input shorter
 * than HTTPHEAD_MAX with no CRLF CRLF; OTHER at a prefix stays OTHER for the whole input. Prefixes are parsed
 * from exact-size copies (so ASan sees a read past them); a long input has a handful checked, not all.
 * Seed corpus: corpus/fuzz_httphead/. fuzz-max-len: 20000 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httphead.h"

static bool is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool inside(const char *v, size_t len, const uint8_t *p, size_t n)
{
    const uint8_t *u = (const uint8_t *)v;
    return u >= p && u <= p + n && len <= (size_t)(p + n - u);
}

static const uint8_t *find_end(const uint8_t *p, size_t n)
{
    return n >= 4 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
}

/* The fields of two OK parses of the same head (at p and at q, maybe different copies) agree. */
static bool same_fields(const struct httphead *a, const uint8_t *p, const struct httphead *b, const uint8_t *q)
{
    if (a->method_len != b->method_len || a->target_len != b->target_len ||
        a->authorization_len != b->authorization_len || a->content_length != b->content_length ||
        a->expect_continue != b->expect_continue || a->close != b->close || a->head_len != b->head_len ||
        !a->authorization != !b->authorization)
        return false;
    if ((const uint8_t *)a->method - p != (const uint8_t *)b->method - q ||
        (const uint8_t *)a->target - p != (const uint8_t *)b->target - q)
        return false;
    if (a->authorization && (const uint8_t *)a->authorization - p != (const uint8_t *)b->authorization - q)
        return false;
    return true;
}

/* Checks everything an OK verdict on p[0..n) promises; aborts if one fails. */
static void check_ok(const uint8_t *p, size_t n, const struct httphead *h)
{
    if (h->head_len > n || h->head_len > HTTPHEAD_MAX || h->head_len < 4 ||
        memcmp(p + h->head_len - 4, "\r\n\r\n", 4) != 0)
        abort();
    if (find_end(p, n) != p + h->head_len - 4) /* the head ends at the first CRLF CRLF */
        abort();
    if (!h->method_len || !inside(h->method, h->method_len, p, h->head_len))
        abort();
    for (size_t i = 0; i < h->method_len; i++)
        if (!is_tchar((uint8_t)h->method[i]))
            abort();
    if (!h->target_len || !inside(h->target, h->target_len, p, h->head_len) || h->target[0] != '/')
        abort();
    for (size_t i = 0; i < h->target_len; i++)
        if ((uint8_t)h->target[i] <= 0x20 || (uint8_t)h->target[i] >= 0x7f)
            abort();
    if (h->authorization ? !inside(h->authorization, h->authorization_len, p, h->head_len) : h->authorization_len != 0)
        abort();
    if (h->authorization_len &&
        (h->authorization[0] == ' ' || h->authorization[0] == '\t' ||
         h->authorization[h->authorization_len - 1] == ' ' || h->authorization[h->authorization_len - 1] == '\t'))
        abort(); /* trimmed */
    if (h->content_length > 9999999999ull)
        abort();
    (void)httphead_is_method_target(h->target, h->target_len);
}

/* Parses an exact-size copy of p[0..k). */
static enum httphead_result parse_copy(const uint8_t *p, size_t k, uint8_t **copy, struct httphead *h)
{
    *copy = malloc(k ? k : 1);
    if (!*copy)
        abort();
    if (k)
        memcpy(*copy, p, k);
    return httphead_parse(*copy, k, h);
}

/* One prefix p[0..k) of the whole input, whose verdict is whole (with fields wh when OK). */
static void check_prefix(const uint8_t *p, size_t n, size_t k, enum httphead_result whole, const struct httphead *wh)
{
    uint8_t *c;
    struct httphead h;
    enum httphead_result r = parse_copy(p, k, &c, &h);
    if (r == HTTPHEAD_OK) {
        check_ok(c, k, &h);
        /* a complete head stays what it is whatever follows it */
        if (whole != HTTPHEAD_OK || !same_fields(&h, c, wh, p))
            abort();
    }
    if (whole == HTTPHEAD_OK && k < wh->head_len && r == HTTPHEAD_OK)
        abort(); /* no shorter prefix is OK */
    if (r == HTTPHEAD_OTHER && whole != HTTPHEAD_OTHER)
        abort(); /* monotonic */
    if (r == HTTPHEAD_NEED_MORE && (k >= HTTPHEAD_MAX || find_end(c, k)))
        abort();
    (void)n;
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct httphead h;
    enum httphead_result r = httphead_parse(data, size, &h);
    if (r != HTTPHEAD_OK && r != HTTPHEAD_NEED_MORE && r != HTTPHEAD_OTHER)
        abort();
    if (r == HTTPHEAD_OK) {
        check_ok(data, size, &h);
        /* prefix independence: the head alone, in an exact-size copy, parses to the same fields */
        uint8_t *c;
        struct httphead hh;
        if (parse_copy(data, h.head_len, &c, &hh) != HTTPHEAD_OK || !same_fields(&hh, c, &h, data))
            abort();
        free(c);
    }
    if (r == HTTPHEAD_NEED_MORE && (size >= HTTPHEAD_MAX || find_end(data, size)))
        abort();

    /* Prefixes: all of them for a short input, else the ends, an even spread, and the head's last bytes. */
    if (size <= 64) {
        for (size_t k = 0; k < size; k++)
            check_prefix(data, size, k, r, &h);
    } else {
        for (size_t i = 0; i < 4; i++) {
            check_prefix(data, size, i, r, &h);
            check_prefix(data, size, size - 1 - i, r, &h);
        }
        for (size_t i = 1; i < 8; i++)
            check_prefix(data, size, size / 8 * i, r, &h);
        if (r == HTTPHEAD_OK)
            for (size_t i = 1; i <= 4 && i <= h.head_len; i++)
                check_prefix(data, size, h.head_len - i, r, &h);
    }
    (void)httphead_is_method_target((const char *)data, size);
    return 0;
}
