/* method_topic.c -- parse direct-method request topics and build response topics (see method_topic.h).
 * Pure functions over (text, length); the topic comes from the network and is never trusted to hold a NUL
 * where we stop reading. */
#include "method_topic.h"

#include <string.h>

#include "err.h"

#define REQUEST_PREFIX "$iothub/methods/POST/"
#define RID_KEY "?$rid="

static int is_printable(char c)
{
    return c > 0x20 && c < 0x7f;
}

static int name_char_ok(char c)
{
    return is_printable(c) && c != '/' && c != '?' && c != '#' && c != '+';
}

static int rid_char_ok(char c)
{
    return is_printable(c) && c != '/' && c != '#' && c != '+' && c != '&';
}

static int rid_is_valid(const char *rid, size_t len)
{
    if (len == 0 || len > METHOD_TOPIC_MAX_RID)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!rid_char_ok(rid[i]))
            return 0;
    }
    return 1;
}

int method_topic_parse(const char *topic, size_t len, struct method_topic_request *out)
{
    const size_t plen = sizeof REQUEST_PREFIX - 1;
    const size_t klen = sizeof RID_KEY - 1;
    memset(out, 0, sizeof *out);
    if (len < plen || memcmp(topic, REQUEST_PREFIX, plen) != 0)
        return ERR_MALFORMED;
    const char *name = topic + plen;
    const char *end = topic + len;
    size_t name_len = 0;
    while (name + name_len < end && name_char_ok(name[name_len]))
        name_len++;
    if (name_len == 0 || name_len > METHOD_TOPIC_MAX_NAME)
        return ERR_MALFORMED;
    const char *p = name + name_len;
    if (p < end && *p == '/')
        p++;
    if ((size_t)(end - p) < klen || memcmp(p, RID_KEY, klen) != 0)
        return ERR_MALFORMED;
    const char *rid = p + klen;
    size_t rid_len = 0;
    while (rid + rid_len < end && rid[rid_len] != '&')
        rid_len++;
    if (!rid_is_valid(rid, rid_len))
        return ERR_MALFORMED;
    out->name = name;
    out->name_len = name_len;
    out->rid = rid;
    out->rid_len = rid_len;
    return ERR_OK;
}

int method_topic_response(struct buf *out, int status, const char *rid, size_t rid_len)
{
    if (!rid || !rid_is_valid(rid, rid_len))
        return ERR_INVALID;
    size_t start = out->len;
    int rc = buf_printf(out, "$iothub/methods/res/%d/" RID_KEY, status);
    if (!rc)
        rc = buf_append(out, rid, rid_len);
    if (!rc)
        rc = buf_append_byte(out, 0);
    if (rc) {
        out->len = start;
        return rc;
    }
    out->len--; /* keep the NUL in the storage, not in the length */
    return ERR_OK;
}
