/* sasl.c -- server SASL layer before Proton (see sasl.h): header sniff, sasl-mechanisms, sasl-init,
 * sasl-outcome. Pure state machine over the caller's buffers. Tests: tests/unit/test_sasl.c. */
#include "sasl.h"

#include <string.h>

#include "err.h"

static const uint8_t sasl_header[8] = {'A', 'M', 'Q', 'P', 3, 1, 0, 0};
static const uint8_t amqp_header[8] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0};
static const char *const sasl_mechs[] = {"MSSBCBS", "PLAIN", "ANONYMOUS"};

void sasl_start(struct sasl *s)
{
    memset(s, 0, sizeof *s);
    s->state = SASL_ST_HEADER;
}

static enum sasl_event fail(struct sasl *s, const char *why)
{
    s->state = SASL_ST_FAILED;
    s->why = why;
    return SASL_FAIL;
}

/* The PLAIN initial response: [authzid] NUL authcid NUL password. */
static void split_plain(struct sasl_init *init)
{
    const uint8_t *p = init->response.p;
    size_t n = init->response.len;
    const uint8_t *a = p ? memchr(p, 0, n) : NULL;
    if (!a)
        return;
    const uint8_t *b = memchr(a + 1, 0, n - (size_t)(a + 1 - p));
    if (!b)
        return;
    init->authcid.p = a + 1;
    init->authcid.len = (size_t)(b - (a + 1));
    init->password.p = b + 1;
    init->password.len = n - (size_t)(b + 1 - p);
}

static enum sasl_event read_init(struct sasl *s, struct buf *in, struct sasl_init *init)
{
    struct frames_header h;
    int rc = frames_header_decode(in->data, in->len, &h);
    if (rc == ERR_NEED_MORE)
        return SASL_NEED_MORE;
    if (rc)
        return fail(s, "malformed SASL frame header");
    if (h.size > SASL_MAX_FRAME)
        return fail(s, "SASL frame too big");
    if (h.type != FRAMES_TYPE_SASL)
        return fail(s, "expected a SASL frame");
    if (in->len < h.size)
        return SASL_NEED_MORE;
    size_t off = (size_t)h.doff * 4;
    struct frames_perf pf;
    if (frames_perf_decode(in->data + off, h.size - off, &pf))
        return fail(s, "malformed SASL frame");
    if (pf.code != FRAMES_SASL_INIT)
        return fail(s, "expected sasl-init");
    struct frames_view v;
    memset(init, 0, sizeof *init);
    if (frames_perf_field(&pf, 0, &v) || frames_get_symbol(v, &init->mech))
        return fail(s, "sasl-init without a mechanism");
    rc = frames_perf_field(&pf, 1, &v);
    if (rc == ERR_MALFORMED || (rc == ERR_OK && frames_get_binary(v, &init->response)))
        return fail(s, "malformed sasl-init response");
    rc = frames_perf_field(&pf, 2, &v);
    if (rc == ERR_MALFORMED || (rc == ERR_OK && frames_get_string(v, &init->hostname)))
        return fail(s, "malformed sasl-init hostname");
    if (sasl_mech_is(init, "PLAIN"))
        split_plain(init);
    s->state = SASL_ST_DECIDING;
    return SASL_INIT;
}

enum sasl_event sasl_step(struct sasl *s, struct buf *in, struct buf *out, struct sasl_init *init)
{
    switch (s->state) {
    case SASL_ST_HEADER: {
        if (in->len == 0)
            return SASL_NEED_MORE;
        size_t n = in->len < 4 ? in->len : 4;
        if (memcmp(in->data, "AMQP", n) != 0)
            return fail(s, "not AMQP");
        if (in->len < 8)
            return SASL_NEED_MORE;
        if (memcmp(in->data, amqp_header, 8) == 0) {
            s->state = SASL_ST_DONE;
            return SASL_AMQP;
        }
        if (memcmp(in->data, sasl_header, 8) != 0) {
            /* Unsupported protocol id or version (e.g. AMQP-TLS): answer with what we speak, then close. */
            buf_append(out, sasl_header, 8);
            return fail(s, "unsupported AMQP protocol header");
        }
        buf_consume(in, 8);
        s->used = true;
        if (buf_append(out, sasl_header, 8) ||
            frames_sasl_mechanisms(out, sasl_mechs, sizeof sasl_mechs / sizeof sasl_mechs[0]))
            return fail(s, "out of memory");
        s->state = SASL_ST_INIT;
        return read_init(s, in, init);
    }
    case SASL_ST_INIT:
        return read_init(s, in, init);
    case SASL_ST_DECIDING:
        return SASL_NEED_MORE; /* the caller has not called sasl_finish yet */
    case SASL_ST_DONE:
        /* Exactly the AMQP 1.0 header: anything else (a second SASL header, say) would reach Proton, whose own
         * SASL layer has no mechanisms configured and crashes on a sasl-init (found by fuzz_amqp). */
        if (memcmp(in->data, amqp_header, in->len < 8 ? in->len : 8) != 0)
            return fail(s, "expected the AMQP header after SASL");
        return in->len < 8 ? SASL_NEED_MORE : SASL_AMQP;
    default:
        return SASL_FAIL;
    }
}

int sasl_finish(struct sasl *s, struct buf *in, struct buf *out, bool ok)
{
    struct frames_header h;
    if (s->state != SASL_ST_DECIDING || frames_header_decode(in->data, in->len, &h) || in->len < h.size)
        return ERR_INVALID;
    buf_consume(in, h.size);
    int rc = frames_sasl_outcome(out, ok ? 0 : 1);
    if (ok) {
        s->state = SASL_ST_DONE;
    } else {
        s->state = SASL_ST_FAILED;
        s->why = "authentication failed";
    }
    return rc;
}

bool sasl_mech_is(const struct sasl_init *init, const char *name)
{
    size_t n = strlen(name);
    return init->mech.len == n && memcmp(init->mech.p, name, n) == 0;
}
