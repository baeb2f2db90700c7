/* frames.c -- AMQP 1.0 frame headers, value skipping, performative fields, SASL frames and the write-path
 * normaliser (see frames.h). Pure: no I/O, no globals. Tests: tests/unit/test_frames.c. */
#include "frames.h"

#include <stdbool.h>
#include <string.h>

#include "err.h"

#define FRAMES_MAX_DESCRIBED_DEPTH 4

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int frames_header_decode(const uint8_t *p, size_t len, struct frames_header *h)
{
    memset(h, 0, sizeof *h);
    if (len < 8)
        return ERR_NEED_MORE;
    h->size = get32(p);
    h->doff = p[4];
    h->type = p[5];
    h->channel = (uint16_t)(p[6] << 8 | p[7]);
    if (h->size < 8 || h->doff < 2 || (uint32_t)h->doff * 4 > h->size)
        return ERR_MALFORMED;
    return ERR_OK;
}

static int value_len(const uint8_t *p, size_t len, size_t *vlen, int depth)
{
    if (len < 1)
        return ERR_MALFORMED;
    uint8_t c = p[0];
    size_t n;
    if (c == 0x00) {
        if (depth >= FRAMES_MAX_DESCRIBED_DEPTH)
            return ERR_MALFORMED;
        size_t dlen, rlen;
        if (value_len(p + 1, len - 1, &dlen, depth + 1) || value_len(p + 1 + dlen, len - 1 - dlen, &rlen, depth + 1))
            return ERR_MALFORMED;
        *vlen = 1 + dlen + rlen;
        return ERR_OK;
    }
    switch (c >> 4) {
    case 0x4:
        n = 1;
        break;
    case 0x5:
        n = 2;
        break;
    case 0x6:
        n = 3;
        break;
    case 0x7:
        n = 5;
        break;
    case 0x8:
        n = 9;
        break;
    case 0x9:
        n = 17;
        break;
    case 0xA:
    case 0xC:
    case 0xE:
        if (len < 2)
            return ERR_MALFORMED;
        n = 2 + (size_t)p[1];
        break;
    case 0xB:
    case 0xD:
    case 0xF:
        if (len < 5)
            return ERR_MALFORMED;
        n = 5 + (size_t)get32(p + 1);
        if (n < 5) /* overflow on 32-bit size_t */
            return ERR_MALFORMED;
        break;
    default:
        return ERR_MALFORMED;
    }
    if (n > len)
        return ERR_MALFORMED;
    *vlen = n;
    return ERR_OK;
}

int frames_value_len(const uint8_t *p, size_t len, size_t *vlen)
{
    *vlen = 0;
    return value_len(p, len, vlen, 0);
}

int frames_perf_decode(const uint8_t *body, size_t len, struct frames_perf *out)
{
    memset(out, 0, sizeof *out);
    if (len < 2 || body[0] != 0x00)
        return ERR_MALFORMED;
    size_t pos = 1;
    if (body[pos] == 0x53) {
        if (len < pos + 2)
            return ERR_MALFORMED;
        out->code = body[pos + 1];
        pos += 2;
    } else if (body[pos] == 0x80) {
        if (len < pos + 9)
            return ERR_MALFORMED;
        out->code = (uint64_t)get32(body + pos + 1) << 32 | get32(body + pos + 5);
        pos += 9;
    } else if (body[pos] == 0x44) {
        out->code = 0;
        pos += 1;
    } else {
        return ERR_MALFORMED;
    }
    if (pos >= len)
        return ERR_MALFORMED;
    uint8_t c = body[pos];
    size_t content; /* bytes of fields */
    if (c == 0x45) {
        out->count = 0;
        content = 0;
        pos += 1;
    } else if (c == 0xc0) {
        if (len < pos + 3 || body[pos + 1] < 1)
            return ERR_MALFORMED;
        content = (size_t)body[pos + 1] - 1;
        out->count = body[pos + 2];
        pos += 3;
    } else if (c == 0xd0) {
        if (len < pos + 9)
            return ERR_MALFORMED;
        uint32_t size = get32(body + pos + 1);
        if (size < 4)
            return ERR_MALFORMED;
        content = (size_t)size - 4;
        out->count = get32(body + pos + 5);
        pos += 9;
    } else {
        return ERR_MALFORMED;
    }
    if (content > len - pos)
        return ERR_MALFORMED;
    /* The count must agree with the bytes: walk the fields. */
    size_t at = 0;
    for (uint32_t i = 0; i < out->count; i++) {
        size_t vlen;
        if (at >= content || frames_value_len(body + pos + at, content - at, &vlen))
            return ERR_MALFORMED;
        at += vlen;
    }
    if (at != content)
        return ERR_MALFORMED;
    out->fields.p = body + pos;
    out->fields.len = content;
    out->encoded_len = pos + content;
    return ERR_OK;
}

int frames_perf_field(const struct frames_perf *pf, uint32_t i, struct frames_view *out)
{
    out->p = NULL;
    out->len = 0;
    if (i >= pf->count)
        return ERR_NOT_FOUND;
    size_t at = 0, vlen = 0;
    for (uint32_t k = 0;; k++) {
        if (frames_value_len(pf->fields.p + at, pf->fields.len - at, &vlen))
            return ERR_MALFORMED;
        if (k == i)
            break;
        at += vlen;
    }
    if (pf->fields.p[at] == 0x40)
        return ERR_NOT_FOUND;
    out->p = pf->fields.p + at;
    out->len = vlen;
    return ERR_OK;
}

/* Content of a variable-width value whose constructor is small (0xAx) or large (0xBx) with low nibble lo. */
static int get_var(struct frames_view v, uint8_t lo, struct frames_view *out)
{
    out->p = NULL;
    out->len = 0;
    if (v.len < 1)
        return ERR_MALFORMED;
    if (v.p[0] == 0x40)
        return ERR_NOT_FOUND;
    size_t vlen;
    if (frames_value_len(v.p, v.len, &vlen))
        return ERR_MALFORMED;
    if (v.p[0] == (0xA0 | lo)) {
        out->p = v.p + 2;
        out->len = vlen - 2;
    } else if (v.p[0] == (0xB0 | lo)) {
        out->p = v.p + 5;
        out->len = vlen - 5;
    } else {
        return ERR_MALFORMED;
    }
    return ERR_OK;
}

int frames_get_symbol(struct frames_view v, struct frames_view *out)
{
    return get_var(v, 0x3, out);
}

int frames_get_binary(struct frames_view v, struct frames_view *out)
{
    return get_var(v, 0x0, out);
}

int frames_get_string(struct frames_view v, struct frames_view *out)
{
    return get_var(v, 0x1, out);
}

/* Appends a SASL frame (channel 0) whose body is descriptor code + a list8 of the given encoded fields. */
static int sasl_frame(struct buf *out, uint8_t code, const uint8_t *fields, size_t flen, uint8_t count)
{
    if (flen > 254)
        return ERR_TOO_BIG;
    uint8_t head[14];
    uint32_t size = (uint32_t)(8 + 3 + 3 + flen);
    put32(head, size);
    head[4] = 2;
    head[5] = FRAMES_TYPE_SASL;
    head[6] = 0;
    head[7] = 0;
    head[8] = 0x00;
    head[9] = 0x53;
    head[10] = code;
    head[11] = 0xc0;
    head[12] = (uint8_t)(flen + 1);
    head[13] = count;
    int rc = buf_append(out, head, sizeof head);
    return rc ? rc : buf_append(out, fields, flen);
}

int frames_sasl_mechanisms(struct buf *out, const char *const *mechs, size_t n)
{
    uint8_t f[254];
    size_t at = 3; /* 0xe0 size count */
    f[at++] = 0xa3;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(mechs[i]);
        if (l > 255 || at + 1 + l > sizeof f)
            return ERR_TOO_BIG;
        f[at++] = (uint8_t)l;
        memcpy(f + at, mechs[i], l);
        at += l;
    }
    f[0] = 0xe0;
    f[1] = (uint8_t)(at - 2);
    f[2] = (uint8_t)n;
    return sasl_frame(out, FRAMES_SASL_MECHANISMS, f, at, 1);
}

int frames_sasl_outcome(struct buf *out, uint8_t code)
{
    uint8_t f[2] = {0x50, code};
    return sasl_frame(out, FRAMES_SASL_OUTCOME, f, sizeof f, 1);
}

/* The spec's field count of each AMQP performative, 0 for codes we leave alone. */
static uint32_t full_count(uint64_t code)
{
    switch (code) {
    case FRAMES_OPEN:
        return 10;
    case FRAMES_BEGIN:
        return 8;
    case FRAMES_ATTACH:
        return 14;
    case FRAMES_FLOW:
    case FRAMES_TRANSFER:
        return 11;
    case FRAMES_DISPOSITION:
        return 6;
    case FRAMES_DETACH:
        return 3;
    case FRAMES_END:
    case FRAMES_CLOSE:
        return 1;
    default:
        return 0;
    }
}

int frames_normalise(const uint8_t *frame, size_t len, uint32_t max_frame, struct buf *out)
{
    struct frames_header h;
    if (frames_header_decode(frame, len, &h) || h.size != len)
        return ERR_MALFORMED;
    size_t off = (size_t)h.doff * 4;
    struct frames_perf pf;
    if (h.type != FRAMES_TYPE_AMQP || len == off || frames_perf_decode(frame + off, len - off, &pf))
        return buf_append(out, frame, len);
    uint32_t want = full_count(pf.code);
    if (want == 0 || pf.count >= want)
        return buf_append(out, frame, len);

    uint8_t pad[16]; /* at most 14 nulls, or Begin's uint + nulls */
    size_t plen = 0;
    for (uint32_t i = pf.count; i < want; i++) {
        if (pf.code == FRAMES_BEGIN && i == 4) {
            pad[plen++] = 0x70;
            put32(pad + plen, FRAMES_HANDLE_MAX);
            plen += 4;
        } else {
            pad[plen++] = 0x40;
        }
    }
    size_t content = pf.fields.len + plen;
    size_t list_head = content + 1 <= 255 ? 3 : 9;
    const uint8_t *payload = frame + off + pf.encoded_len;
    size_t payload_len = len - off - pf.encoded_len;
    /* descriptor bytes: 0x00 + (0x53 code | 0x80 8 bytes | 0x44) */
    size_t dbytes = frame[off + 1] == 0x53 ? 3 : frame[off + 1] == 0x80 ? 10 : 2;
    size_t new_len = off + dbytes + list_head + content + payload_len;
    if (new_len > UINT32_MAX || (max_frame && new_len > max_frame))
        return buf_append(out, frame, len);
    int rc = buf_reserve(out, new_len);
    if (rc)
        return rc;
    uint8_t hdr[8];
    memcpy(hdr, frame, 8);
    put32(hdr, (uint32_t)new_len);
    uint8_t lh[9];
    if (list_head == 3) {
        lh[0] = 0xc0;
        lh[1] = (uint8_t)(content + 1);
        lh[2] = (uint8_t)want;
    } else {
        lh[0] = 0xd0;
        put32(lh + 1, (uint32_t)(content + 4));
        put32(lh + 5, want);
    }
    buf_append(out, hdr, 8);
    buf_append(out, frame + 8, off - 8); /* extended header */
    buf_append(out, frame + off, dbytes);
    buf_append(out, lh, list_head);
    buf_append(out, pf.fields.p, pf.fields.len);
    buf_append(out, pad, plen);
    buf_append(out, payload, payload_len);
    return ERR_OK;
}

/* ---- the input guard ---- */

/* A uint field (uint0, smalluint, uint); false for anything else. */
static bool get_uint(struct frames_view v, uint32_t *out)
{
    if (v.len == 1 && v.p[0] == 0x43) {
        *out = 0;
        return true;
    }
    if (v.len == 2 && v.p[0] == 0x52) {
        *out = v.p[1];
        return true;
    }
    if (v.len == 5 && v.p[0] == 0x70) {
        *out = (uint32_t)v.p[1] << 24 | (uint32_t)v.p[2] << 16 | (uint32_t)v.p[3] << 8 | v.p[4];
        return true;
    }
    return false;
}

/* A boolean field: true only for true (0x41, or 0x56 0x01); absent, null or anything else is false. */
static bool get_true(const struct frames_perf *pf, uint32_t i)
{
    struct frames_view v;
    if (frames_perf_field(pf, i, &v) != ERR_OK)
        return false;
    return (v.len == 1 && v.p[0] == 0x41) || (v.len == 2 && v.p[0] == 0x56 && v.p[1] == 0x01);
}

static int guard_find(const struct frames_guard *g, uint16_t channel, uint32_t handle)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (g->open[i].channel == channel && g->open[i].handle == handle)
            return (int)i;
    return -1;
}

static void guard_drop(struct frames_guard *g, uint32_t i)
{
    g->open[i] = g->open[--g->n];
}

int frames_guard_input(struct frames_guard *g, const uint8_t *frame, size_t len, const char **why)
{
    struct frames_header h;
    struct frames_perf pf;
    *why = NULL;
    if (frames_header_decode(frame, len, &h) != ERR_OK || h.type != FRAMES_TYPE_AMQP || h.size != len ||
        (size_t)h.doff * 4 >= len)
        return ERR_OK;
    const uint8_t *body = frame + (size_t)h.doff * 4;
    size_t blen = len - (size_t)h.doff * 4;
    if (frames_perf_decode(body, blen, &pf) != ERR_OK) {
        /* Proton's decoder is more lenient than ours (a list count larger than its items, say) and then reads
         * the fields it finds: a transfer we cannot decode is refused rather than guessed at. */
        static const uint8_t small[3] = {0x00, 0x53, FRAMES_TRANSFER};
        static const uint8_t wide[10] = {0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, FRAMES_TRANSFER};
        if ((blen >= 3 && memcmp(body, small, 3) == 0) || (blen >= 10 && memcmp(body, wide, 10) == 0)) {
            *why = "a transfer performative that does not decode";
            return ERR_MALFORMED;
        }
        return ERR_OK;
    }
    struct frames_view v;
    uint32_t handle = 0; /* as Proton reads it: a field that is not a uint counts as 0 */
    if (pf.code == FRAMES_END) {
        for (uint32_t i = g->n; i-- > 0;)
            if (g->open[i].channel == h.channel)
                guard_drop(g, i);
        return ERR_OK;
    }
    if (pf.code != FRAMES_TRANSFER && pf.code != FRAMES_DETACH)
        return ERR_OK;
    for (uint32_t i = 0; pf.code == FRAMES_TRANSFER && i < pf.count && i < 11; i++) {
        if (frames_perf_field(&pf, i, &v) == ERR_MALFORMED) {
            *why = "a transfer performative that does not decode";
            return ERR_MALFORMED;
        }
    }
    if (frames_perf_field(&pf, 0, &v) == ERR_OK && !get_uint(v, &handle))
        handle = 0;
    int at = guard_find(g, h.channel, handle);
    if (pf.code == FRAMES_DETACH) {
        if (at >= 0)
            guard_drop(g, (uint32_t)at);
        return ERR_OK;
    }
    bool more = get_true(&pf, 5), aborted = get_true(&pf, 9);
    uint32_t id;
    bool has_id = frames_perf_field(&pf, 1, &v) == ERR_OK && get_uint(v, &id); /* Proton: only a uint counts */
    if (at < 0 && more && !aborted && !has_id) {
        *why = "the first transfer of a multi-frame delivery has no delivery-id";
        return ERR_MALFORMED;
    }
    if (at >= 0 && (!more || aborted)) {
        guard_drop(g, (uint32_t)at);
    } else if (at < 0 && more && !aborted) {
        if (g->n == FRAMES_GUARD_MAX) {
            *why = "too many multi-frame deliveries in progress";
            return ERR_MALFORMED;
        }
        g->open[g->n].channel = h.channel;
        g->open[g->n].handle = handle;
        g->n++;
    }
    return ERR_OK;
}

/* ---- message sections ---- */

int frames_data_sections(const uint8_t *msg, size_t len, struct frames_view *out, size_t max, size_t *n)
{
    *n = 0;
    size_t at = 0;
    while (at < len) {
        size_t vlen = 0;
        if (len - at < 3 || msg[at] != 0x00 || frames_value_len(msg + at, len - at, &vlen) != ERR_OK)
            return ERR_MALFORMED;
        bool small = msg[at + 1] == 0x53;
        bool is_data = small ? msg[at + 2] == 0x75
                             : len - at >= 10 && msg[at + 1] == 0x80 && msg[at + 9] == 0x75 &&
                                   memcmp(msg + at + 2, "\0\0\0\0\0\0\0", 7) == 0;
        if (is_data) {
            size_t off = small ? 3 : 10;
            struct frames_view v = {msg + at + off, vlen - off}, content;
            if (frames_get_binary(v, &content) != ERR_OK)
                return ERR_MALFORMED;
            if (*n == max)
                return ERR_MALFORMED;
            out[(*n)++] = content;
        }
        at += vlen;
    }
    return ERR_OK;
}
