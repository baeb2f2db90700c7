/* delivery.h -- sending one AMQP message pre-settled on a sender link, shared by the service links (amqp.c) and
 * the Event Hub endpoint (eventhub.c): encode with a buffer that grows up to a cap, then a delivery with a tag
 * from the caller's counter. Proton keeps the bytes until the peer gives credit. */
#ifndef IOTHUB_DELIVERY_H
#define IOTHUB_DELIVERY_H

#include <proton/link.h>
#include <proton/message.h>
#include <stddef.h>
#include <stdint.h>

/* Encodes m (at most max_bytes) and sends it settled on l, tagged tag_prefix + ++*counter. Returns ERR_OK,
 * ERR_NOMEM, or ERR_INVALID when m does not encode (or is over max_bytes). */
int delivery_send_settled(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag_prefix,
                          uint64_t *counter);

#endif
