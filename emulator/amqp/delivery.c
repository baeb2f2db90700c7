/* delivery.c -- one message on a sender link, closing a link with a condition, outcomes and ids (delivery.h). */
#include "delivery.h"

#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/error.h>
#include <proton/connection.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int delivery_send(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag, size_t taglen, bool settle,
                  pn_delivery_t **out)
{
    size_t cap = 1024;
    char *buf = NULL;
    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            return ERR_NOMEM;
        }
        buf = nb;
        size_t size = cap;
        int rc = pn_message_encode(m, buf, &size);
        if (rc == PN_OVERFLOW && cap < max_bytes) {
            cap *= 2;
            continue;
        }
        if (rc) {
            free(buf);
            return ERR_INVALID;
        }
        pn_delivery_t *d = pn_delivery(l, pn_dtag(tag, taglen));
        pn_link_send(l, buf, size);
        pn_link_advance(l);
        if (settle)
            pn_delivery_settle(d);
        if (out)
            *out = settle ? NULL : d;
        free(buf);
        return ERR_OK;
    }
}

int delivery_send_settled(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag_prefix,
                          uint64_t *counter)
{
    char tag[32];
    int tl = snprintf(tag, sizeof tag, "%s%llu", tag_prefix, (unsigned long long)++*counter);
    return delivery_send(l, m, max_bytes, tag, (size_t)tl, true, NULL);
}

void delivery_close_link(pn_link_t *l, const char *name, const char *desc)
{
    if (pn_link_state(l) & PN_LOCAL_UNINIT)
        pn_link_open(l);
    pn_condition_t *c = pn_link_condition(l);
    pn_condition_set_name(c, name);
    pn_condition_set_description(c, desc);
    pn_link_close(l);
}

void delivery_set_outcome(pn_delivery_t *d, uint64_t state, const char *cond, const char *desc)
{
    if (cond) {
        pn_condition_t *c = pn_disposition_condition(pn_delivery_local(d));
        pn_condition_set_name(c, cond);
        pn_condition_set_description(c, desc);
    }
    pn_delivery_update(d, state);
}

void delivery_id_text(pn_msgid_t id, char *out, size_t outlen)
{
    out[0] = 0;
    switch (id.type) {
    case PN_STRING:
    case PN_SYMBOL:
    case PN_BINARY:
        if (id.u.as_bytes.start && !memchr(id.u.as_bytes.start, 0, id.u.as_bytes.size))
            snprintf(out, outlen, "%.*s", (int)id.u.as_bytes.size, id.u.as_bytes.start);
        break;
    case PN_ULONG:
        snprintf(out, outlen, "%" PRIu64, id.u.as_ulong);
        break;
    case PN_UUID: {
        const unsigned char *b = (const unsigned char *)id.u.as_uuid.bytes;
        snprintf(out, outlen, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        break;
    }
    default:
        break;
    }
}
