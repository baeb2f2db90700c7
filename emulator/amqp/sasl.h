/* sasl.h -- the server side of AMQP's SASL layer, done by the emulator before Proton sees the stream
 * (iothub-amqp.md §B.1.2, §B.3.3): the protocol header decides between SASL ("AMQP\x03") and bare AMQP
 * ("AMQP\x00", as Node azure-iothub sends); we offer MSSBCBS, PLAIN and ANONYMOUS as a symbol array, read one
 * sasl-init and answer one sasl-outcome. Deciding whether credentials are good is the caller's job.
 * Pure: bytes in, bytes out. Tests: tests/unit/test_sasl.c; fuzz: tests/fuzz/fuzz_amqp.c. */
#ifndef IOTHUB_SASL_H
#define IOTHUB_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "frames.h"

#define SASL_MAX_FRAME 8192 /* far above any PLAIN SAS token; a larger SASL frame closes the connection */

enum sasl_state { SASL_ST_HEADER, SASL_ST_INIT, SASL_ST_DECIDING, SASL_ST_DONE, SASL_ST_FAILED };

struct sasl {
    enum sasl_state state;
    bool used;       /* the client negotiated SASL (false: bare AMQP) */
    const char *why; /* after SASL_FAIL: a static reason for the log */
};

enum sasl_event {
    SASL_NEED_MORE, /* wait for more bytes (whatever was whole has been consumed) */
    SASL_AMQP,      /* the rest of in is AMQP for Proton, starting with its protocol header */
    SASL_INIT,      /* a sasl-init is in *init (views into in): decide, then call sasl_finish */
    SASL_FAIL,      /* protocol violation: out may hold our protocol header; close after flushing */
};

/* The client's sasl-init. mech is the mechanism name; for PLAIN, authcid and password are split out of the
 * initial response (authzid is ignored). Views into the input buffer, valid until sasl_finish. */
struct sasl_init {
    struct frames_view mech;
    struct frames_view response;
    struct frames_view hostname;
    struct frames_view authcid, password; /* PLAIN only; len 0 otherwise */
};

void sasl_start(struct sasl *s);
/* Reads the start of in; writes any answer (header, mechanisms) to out. See enum sasl_event. */
enum sasl_event sasl_step(struct sasl *s, struct buf *in, struct buf *out, struct sasl_init *init);
/* After SASL_INIT: consumes the sasl-init frame from in and appends sasl-outcome (ok, or auth failure) to
 * out. Returns ERR_OK or an error of buf_append. After ok, sasl_step returns SASL_AMQP once the client's AMQP
 * header starts; after a failure, SASL_FAIL. */
int sasl_finish(struct sasl *s, struct buf *in, struct buf *out, bool ok);
/* "PLAIN", "ANONYMOUS", "MSSBCBS" (the mechanisms we offer), matched exactly. */
bool sasl_mech_is(const struct sasl_init *init, const char *name);

#endif
