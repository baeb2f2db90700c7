/* delivery.c -- one pre-settled message on a sender link (see delivery.h). */
#include "delivery.h"

#include <proton/delivery.h>
#include <proton/error.h>
#include <stdio.h>
#include <stdlib.h>

#include "err.h"

int delivery_send_settled(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag_prefix,
                          uint64_t *counter)
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
        char tag[32];
        int tl = snprintf(tag, sizeof tag, "%s%llu", tag_prefix, (unsigned long long)++*counter);
        pn_delivery_t *d = pn_delivery(l, pn_dtag(tag, (size_t)tl));
        pn_link_send(l, buf, size);
        pn_link_advance(l);
        pn_delivery_settle(d);
        free(buf);
        return ERR_OK;
    }
}
