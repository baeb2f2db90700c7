/* c2d_topic.c -- the devicebound topic parser (see c2d_topic.h). */
#include "c2d_topic.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "url.h"

void c2d_topic_props_cleanup(struct c2d_topic_props *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->values[i]);
    }
    p->n = 0;
}

/* Decodes [s, s + n) into a malloc'd string; NULL on a bad escape, an embedded NUL or no memory (*rc says). */
static char *decoded(const char *s, size_t n, int *rc)
{
    char *out = NULL;
    size_t olen = 0;
    *rc = url_decode(s, n, &out, &olen);
    if (*rc == ERR_OK && memchr(out, 0, olen)) {
        free(out);
        *rc = ERR_MALFORMED;
        return NULL;
    }
    if (*rc != ERR_OK && *rc != ERR_NOMEM)
        *rc = ERR_MALFORMED;
    return *rc == ERR_OK ? out : NULL;
}

static int parse_bag(const char *p, const char *end, struct c2d_topic_props *out)
{
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *item_end = amp ? amp : end;
        if (item_end > p) { /* "a&&b": empty items are skipped */
            const char *eq = memchr(p, '=', (size_t)(item_end - p));
            const char *key_end = eq ? eq : item_end;
            if (key_end == p || out->n >= C2D_TOPIC_MAX_PROPS)
                return ERR_MALFORMED;
            int rc;
            char *k = decoded(p, (size_t)(key_end - p), &rc);
            if (!k)
                return rc;
            char *v = eq ? decoded(eq + 1, (size_t)(item_end - eq - 1), &rc) : strdup("");
            if (!v) {
                free(k);
                return eq ? rc : ERR_NOMEM;
            }
            out->keys[out->n] = k;
            out->values[out->n++] = v;
        }
        p = amp ? amp + 1 : end;
    }
    return ERR_OK;
}

int c2d_topic_parse(const char *topic, size_t len, const char *device_id, struct c2d_topic_props *out)
{
    static const char pre[] = "devices/", mid[] = "/messages/devicebound/";
    memset(out, 0, sizeof *out);
    size_t idlen = strlen(device_id);
    size_t head = sizeof pre - 1 + idlen + sizeof mid - 1;
    if (len < head || memcmp(topic, pre, sizeof pre - 1) != 0 ||
        memcmp(topic + sizeof pre - 1, device_id, idlen) != 0 ||
        memcmp(topic + sizeof pre - 1 + idlen, mid, sizeof mid - 1) != 0)
        return ERR_MALFORMED;
    int rc = parse_bag(topic + head, topic + len, out);
    if (rc)
        c2d_topic_props_cleanup(out);
    return rc;
}
