/* twin_topic.c -- device-side twin topics (see twin_topic.h). Pure. Tests: tests/unit/test_device_twin_topic.c. */
#include "twin_topic.h"

#include <string.h>

#include "err.h"

#define DESIRED_PREFIX "$iothub/twin/PATCH/properties/desired/"
#define RESPONSE_PREFIX "$iothub/twin/res/"

/* A decimal number p[0..n), at most 18 digits. */
static int parse_decimal(const char *p, size_t n, int64_t *out)
{
    if (n == 0 || n > 18)
        return ERR_MALFORMED;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ERR_MALFORMED;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return ERR_OK;
}

/* Finds key ("$version=") among the &-separated parameters of q[0..n); sets *val and *vlen. */
static int find_param(const char *q, size_t n, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        if (end - i >= klen && memcmp(q + i, key, klen) == 0) {
            *val = q + i + klen;
            *vlen = end - i - klen;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

int twin_topic_parse_desired(const char *topic, size_t len, int64_t *version)
{
    size_t plen = strlen(DESIRED_PREFIX);
    *version = -1;
    if (len < plen || memcmp(topic, DESIRED_PREFIX, plen) != 0)
        return ERR_MALFORMED;
    const char *q = topic + plen;
    size_t n = len - plen;
    if (n == 0)
        return ERR_OK;
    if (q[0] != '?')
        return ERR_MALFORMED;
    const char *v;
    size_t vlen;
    if (find_param(q + 1, n - 1, "$version=", &v, &vlen))
        return parse_decimal(v, vlen, version);
    return ERR_OK;
}

int twin_topic_parse_response(const char *topic, size_t len, struct twin_topic_response *out)
{
    memset(out, 0, sizeof *out);
    out->version = -1;
    size_t plen = strlen(RESPONSE_PREFIX);
    if (len < plen || memcmp(topic, RESPONSE_PREFIX, plen) != 0)
        return ERR_MALFORMED;
    size_t i = plen, start = plen;
    while (i < len && topic[i] >= '0' && topic[i] <= '9')
        i++;
    int64_t status = 0;
    if (parse_decimal(topic + start, i - start, &status) || status > 999)
        return ERR_MALFORMED;
    if (i < len && topic[i] == '/')
        i++;
    if (i >= len || topic[i] != '?')
        return ERR_MALFORMED;
    const char *q = topic + i + 1, *v;
    size_t n = len - i - 1, vlen;
    if (!find_param(q, n, "$rid=", &out->rid, &out->rid_len) || out->rid_len == 0) {
        memset(out, 0, sizeof *out);
        out->version = -1;
        return ERR_MALFORMED;
    }
    if (find_param(q, n, "$version=", &v, &vlen) && parse_decimal(v, vlen, &out->version)) {
        memset(out, 0, sizeof *out);
        out->version = -1;
        return ERR_MALFORMED;
    }
    out->status = (int)status;
    return ERR_OK;
}

int twin_topic_reported(struct buf *out, const char *rid)
{
    size_t n = rid ? strlen(rid) : 0;
    if (n == 0)
        return ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rid[i];
        if (c <= 0x20 || c >= 0x7f || c == '&' || c == '/' || c == '#' || c == '+')
            return ERR_INVALID;
    }
    int rc = buf_printf(out, "$iothub/twin/PATCH/properties/reported/?$rid=%s", rid);
    if (!rc)
        rc = buf_append_byte(out, '\0');
    if (!rc)
        out->len--;
    return rc;
}
