/* ehfilter.h -- the Event Hubs start-position filter: the text of an `apache.org:selector-filter:string`
 * source filter, as the SDKs write it (iothub-amqp.md §B.1.5):
 *   amqp.annotation.x-opt-offset > '-1'          earliest
 *   amqp.annotation.x-opt-offset > '@latest'     only new events
 *   amqp.annotation.x-opt-offset >[=] 'N'
 *   amqp.annotation.x-opt-sequence-number >[=] 'N'
 *   amqp.annotation.x-opt-enqueued-time >[=] 'MS'   (ms since the epoch)
 * The "amqp.annotation." prefix is optional and case-insensitive, so are the field names; the value may be
 * quoted with ' or " or bare; blanks around tokens are ignored. Pure parsing of network input, no I/O.
 * Tests: tests/unit/test_ehfilter.c; fuzz: tests/fuzz/fuzz_ehfilter.c. */
#ifndef IOTHUB_EHFILTER_H
#define IOTHUB_EHFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EHFILTER_MAX_TEXT 512 /* longer filter text is refused */

enum ehfilter_field { EHFILTER_OFFSET, EHFILTER_SEQUENCE, EHFILTER_ENQUEUED_TIME };

struct ehfilter {
    enum ehfilter_field field;
    bool inclusive; /* >= rather than > */
    bool latest;    /* '@latest' (offset only) */
    int64_t value;  /* the number (-1 for the earliest offset) */
};

/* Parses text[0..len) (need not be NUL-terminated). Returns ERR_OK or ERR_MALFORMED with a short reason in
 * why (whylen may be 0). */
int ehfilter_parse(const char *text, size_t len, struct ehfilter *out, char *why, size_t whylen);

#endif
