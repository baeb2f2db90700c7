/* delivery.h -- small Proton link helpers shared by the service links (amqp.c), the Event Hub endpoint
 * (eventhub.c) and the device links (devlinks.c): sending one AMQP message (encode with a buffer that grows up
 * to a cap, then a delivery with the caller's tag; Proton keeps the bytes until the peer gives credit),
 * refusing or closing a link with an error condition, an incoming delivery's outcome, and ids as text. */
#ifndef IOTHUB_DELIVERY_H
#define IOTHUB_DELIVERY_H

#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Encodes m (at most max_bytes) and sends it settled on l, tagged tag_prefix + ++*counter. Returns ERR_OK,
 * ERR_NOMEM, or ERR_INVALID when m does not encode (or is over max_bytes). */
int delivery_send_settled(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag_prefix,
                          uint64_t *counter);
/* The same with the tag tag[0..taglen), left unsettled when settle is false (the peer's disposition then
 * arrives as a PN_DELIVERY event); *out (may be NULL) gets the delivery. */
int delivery_send(pn_link_t *l, pn_message_t *m, size_t max_bytes, const char *tag, size_t taglen, bool settle,
                  pn_delivery_t **out);
/* Closes l with the error condition (name, desc), opening it first when it was never opened (a refused
 * attach: the peer then sees an attach followed by a detach carrying the condition). */
void delivery_close_link(pn_link_t *l, const char *name, const char *desc);

/* Sets our outcome of an incoming delivery (PN_ACCEPTED, PN_REJECTED...), with an error condition when cond is
 * not NULL; the caller settles. */
void delivery_set_outcome(pn_delivery_t *d, uint64_t state, const char *cond, const char *desc);
/* A message id or correlation id as text into out: strings, symbols and binaries as they are (a NUL inside
 * gives ""), ulongs in decimal, uuids in their 8-4-4-4-12 form; "" when absent. */
void delivery_id_text(pn_msgid_t id, char *out, size_t outlen);

#endif
