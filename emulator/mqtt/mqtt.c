/* mqtt.c -- MQTT 3.1.1 packet codec (OASIS mqtt-v3.1.1-os; see mqtt.h for the contract).
 * Pure: no I/O, no globals, no allocation in decode; decoded fields are views into the caller's bytes.
 * Encoders size the whole packet first and reserve it in one go, so a failure leaves the buf untouched.
 * Tests: tests/unit/test_mqtt.c; fuzz: tests/fuzz/fuzz_mqtt.c. */
#include "mqtt.h"

#include <assert.h>
#include <string.h>

#include "err.h"

#define MQTT_REMAINING_MAX 268435455u /* the most four varint bytes can say (§2.2.3) */
#define MQTT_FIELD_MAX 65535u         /* strings and binary fields carry a two-byte length (§1.5.3) */

/* CONNECT flag bits (§3.1.2.3). */
#define CF_RESERVED 0x01u
#define CF_CLEAN 0x02u
#define CF_WILL 0x04u
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20u
#define CF_PASSWORD 0x40u
#define CF_USERNAME 0x80u

/* ---------------------------------------------------------------------------------------------------------
 * Validation shared by the decoder
 * ------------------------------------------------------------------------------------------------------- */

/* For a UTF-8 lead byte: how many continuation bytes follow and the allowed range of the first one
 * (RFC 3629 table: excludes overlongs, surrogates and code points past U+10FFFF). 0 means invalid lead. */
static size_t utf8_lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 1;
    if (c == 0xE0)
        *lo = 0xA0;
    else if (c == 0xED)
        *hi = 0x9F;
    if (c >= 0xE0 && c <= 0xEF)
        return 2;
    if (c == 0xF0)
        *lo = 0x90;
    else if (c == 0xF4)
        *hi = 0x8F;
    if (c >= 0xF0 && c <= 0xF4)
        return 3;
    return 0;
}

/* Well-formed UTF-8 without U+0000, as §1.5.3 requires of every MQTT string. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        uint8_t lo, hi;
        size_t more = utf8_lead(c, &lo, &hi);
        if (more == 0 || n - i - 1 < more)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        }
        i += 1 + more;
    }
    return true;
}

/* A topic name (not a filter): at least one character and no wildcards (§4.7.1.1, §4.7.3). */
static bool topic_name_ok(struct mqtt_bytes t)
{
    return t.len > 0 && !memchr(t.p, '+', t.len) && !memchr(t.p, '#', t.len);
}

bool mqtt_bytes_eq(struct mqtt_bytes b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.p, s, n) == 0);
}

/* ---------------------------------------------------------------------------------------------------------
 * Decoding: a bounds-checked reader over one packet's variable header and payload
 * ------------------------------------------------------------------------------------------------------- */

struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

static bool rd_done(const struct rd *r)
{
    return r->pos == r->len;
}

static int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->len - r->pos < 1)
        return ERR_MALFORMED;
    *v = r->p[r->pos++];
    return ERR_OK;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
    if (r->len - r->pos < 2)
        return ERR_MALFORMED;
    *v = (uint16_t)((unsigned)r->p[r->pos] << 8 | r->p[r->pos + 1]);
    r->pos += 2;
    return ERR_OK;
}

/* Binary data: a two-byte length, then that many bytes (§1.5.3; password and will message). */
static int rd_bin(struct rd *r, struct mqtt_bytes *b)
{
    uint16_t n;
    if (rd_u16(r, &n) || r->len - r->pos < n)
        return ERR_MALFORMED;
    b->p = r->p + r->pos;
    b->len = n;
    r->pos += n;
    return ERR_OK;
}

/* A UTF-8 encoded string: binary data that must also be valid UTF-8 without U+0000. */
static int rd_str(struct rd *r, struct mqtt_bytes *b)
{
    if (rd_bin(r, b) || !utf8_ok(b->p, b->len))
        return ERR_MALFORMED;
    return ERR_OK;
}

/* Reserved flag bits of the fixed header (§2.2.2); PUBLISH carries DUP/QoS/RETAIN, and QoS 3 is malformed. */
static int check_type_flags(unsigned type, unsigned flags)
{
    switch (type) {
    case MQTT_PUBLISH:
        return ((flags >> 1) & 3u) == 3u ? ERR_MALFORMED : ERR_OK;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return flags == 2u ? ERR_OK : ERR_MALFORMED;
    case MQTT_CONNECT:
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        return flags == 0u ? ERR_OK : ERR_MALFORMED;
    default: /* 0 and 15 are reserved */
        return ERR_MALFORMED;
    }
}

/* Types whose remaining length is fixed: sets *n and returns true. */
static bool fixed_body_len(unsigned type, size_t *n)
{
    switch (type) {
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        *n = 2;
        return true;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        *n = 0;
        return true;
    default:
        return false;
    }
}

/* Fixed header (§2.2): the type/flags byte, then the remaining length in 1-4 bytes of 7 bits, low group
 * first (non-minimal encodings are accepted). Everything here is decided before the body arrives. */
static int decode_fixed(const uint8_t *buf, size_t len, size_t max_packet, size_t *hdr, size_t *rem)
{
    if (len < 1)
        return ERR_NEED_MORE;
    unsigned type = buf[0] >> 4;
    int rc = check_type_flags(type, buf[0] & 0x0Fu);
    if (rc)
        return rc;
    size_t v = 0;
    size_t i = 0;
    for (;;) {
        if (i == 4)
            return ERR_MALFORMED; /* a fifth length byte: a broken or hostile peer */
        if (len < 2 + i)
            return ERR_NEED_MORE;
        uint8_t b = buf[1 + i];
        v |= (size_t)(b & 0x7Fu) << (7 * i);
        i++;
        if (!(b & 0x80u))
            break;
    }
    if (v > max_packet || 1 + i > max_packet - v)
        return ERR_TOO_BIG;
    size_t want;
    if (fixed_body_len(type, &want) && v != want)
        return ERR_MALFORMED;
    *hdr = 1 + i;
    *rem = v;
    return ERR_OK;
}

static bool protocol_ok(struct mqtt_bytes name, uint8_t level)
{
    return (mqtt_bytes_eq(name, "MQTT") && level == 4) || (mqtt_bytes_eq(name, "MQIsdp") && level == 3);
}

/* §3.1.2.3-§3.1.2.9: reserved bit clear, will QoS/retain only with a will, will QoS < 3, no password
 * without a user name. */
static bool connect_flags_ok(uint8_t f)
{
    unsigned will_qos = (f >> CF_WILL_QOS_SHIFT) & 3u;
    if (f & CF_RESERVED)
        return false;
    if (!(f & CF_WILL) && (will_qos != 0 || (f & CF_WILL_RETAIN)))
        return false;
    if (will_qos == 3)
        return false;
    return !((f & CF_PASSWORD) && !(f & CF_USERNAME));
}

/* CONNECT payload (§3.1.3): client id, [will topic, will message], [user name], [password]. */
static int decode_connect_payload(struct rd *r, struct mqtt_connect *c)
{
    if (rd_str(r, &c->client_id))
        return ERR_MALFORMED;
    if (c->has_will) {
        if (rd_str(r, &c->will_topic) || !topic_name_ok(c->will_topic) || rd_bin(r, &c->will_message))
            return ERR_MALFORMED;
    }
    if (c->has_username && rd_str(r, &c->username))
        return ERR_MALFORMED;
    if (c->has_password && rd_bin(r, &c->password))
        return ERR_MALFORMED;
    return ERR_OK;
}

static int decode_connect(struct rd *r, struct mqtt_connect *c)
{
    uint8_t flags;
    if (rd_bin(r, &c->protocol_name) || rd_u8(r, &c->level) || !protocol_ok(c->protocol_name, c->level))
        return ERR_MALFORMED;
    if (rd_u8(r, &flags) || !connect_flags_ok(flags) || rd_u16(r, &c->keep_alive))
        return ERR_MALFORMED;
    c->clean_session = (flags & CF_CLEAN) != 0;
    c->has_will = (flags & CF_WILL) != 0;
    c->will_qos = (uint8_t)((flags >> CF_WILL_QOS_SHIFT) & 3u);
    c->will_retain = (flags & CF_WILL_RETAIN) != 0;
    c->has_username = (flags & CF_USERNAME) != 0;
    c->has_password = (flags & CF_PASSWORD) != 0;
    return decode_connect_payload(r, c);
}

static int decode_connack(struct rd *r, struct mqtt_connack *a)
{
    uint8_t flags;
    if (rd_u8(r, &flags) || (flags & 0xFEu) || rd_u8(r, &a->return_code))
        return ERR_MALFORMED;
    a->session_present = (flags & 1u) != 0;
    return ERR_OK;
}

/* PUBLISH (§3.3): topic name, a non-zero packet id when QoS > 0, and the rest is the payload. */
static int decode_publish(struct rd *r, uint8_t flags, struct mqtt_publish *p)
{
    p->retain = (flags & 1u) != 0;
    p->qos = (uint8_t)((flags >> 1) & 3u); /* 3 was refused with the fixed header */
    p->dup = (flags & 8u) != 0;
    if (rd_str(r, &p->topic) || !topic_name_ok(p->topic))
        return ERR_MALFORMED;
    if (p->qos > 0 && (rd_u16(r, &p->packet_id) || p->packet_id == 0))
        return ERR_MALFORMED;
    p->payload.p = r->p + r->pos;
    p->payload.len = r->len - r->pos;
    r->pos = r->len;
    return ERR_OK;
}

/* SUBSCRIBE (§3.8, with a requested QoS byte per filter) and UNSUBSCRIBE (§3.10): a non-zero packet id,
 * then 1..MQTT_MAX_FILTERS non-empty filters. Filter syntax is the session's business. */
static int decode_filters(struct rd *r, struct mqtt_subscribe *s, bool with_qos)
{
    if (rd_u16(r, &s->packet_id) || s->packet_id == 0)
        return ERR_MALFORMED;
    while (!rd_done(r)) {
        struct mqtt_bytes f;
        uint8_t qos = 0;
        if (s->count == MQTT_MAX_FILTERS)
            return ERR_MALFORMED;
        if (rd_str(r, &f) || f.len == 0)
            return ERR_MALFORMED;
        if (with_qos && (rd_u8(r, &qos) || qos > 2))
            return ERR_MALFORMED; /* > 2 also covers the reserved upper six bits */
        s->filters[s->count] = f;
        s->qos[s->count] = qos;
        s->count++;
    }
    return s->count ? ERR_OK : ERR_MALFORMED;
}

static bool suback_code_ok(uint8_t c)
{
    return c <= 2 || c == 0x80;
}

/* SUBACK (§3.9): packet id, then one return code per filter (0, 1, 2 or 0x80 for failure). */
static int decode_suback(struct rd *r, struct mqtt_subscribe *s)
{
    if (rd_u16(r, &s->packet_id))
        return ERR_MALFORMED;
    while (!rd_done(r)) {
        uint8_t code;
        if (s->count == MQTT_MAX_FILTERS || rd_u8(r, &code) || !suback_code_ok(code))
            return ERR_MALFORMED;
        s->qos[s->count++] = code;
    }
    return s->count ? ERR_OK : ERR_MALFORMED;
}

static int decode_body(struct rd *r, struct mqtt_packet *out)
{
    switch (out->type) {
    case MQTT_CONNECT:
        return decode_connect(r, &out->u.connect);
    case MQTT_CONNACK:
        return decode_connack(r, &out->u.connack);
    case MQTT_PUBLISH:
        return decode_publish(r, out->flags, &out->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return rd_u16(r, &out->u.packet_id);
    case MQTT_SUBSCRIBE:
        return decode_filters(r, &out->u.subscribe, true);
    case MQTT_UNSUBSCRIBE:
        return decode_filters(r, &out->u.subscribe, false);
    case MQTT_SUBACK:
        return decode_suback(r, &out->u.subscribe);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        return ERR_OK; /* remaining length 0 was checked with the fixed header */
    }
    return ERR_MALFORMED;
}

int mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, struct mqtt_packet *out, size_t *consumed)
{
    memset(out, 0, sizeof *out);
    *consumed = 0;
    size_t hdr = 0;
    size_t rem = 0;
    int rc = decode_fixed(buf, len, max_packet, &hdr, &rem);
    if (rc)
        return rc;
    if (len - hdr < rem) {
        *consumed = hdr + rem; /* how long the packet will be */
        return ERR_NEED_MORE;
    }
    out->type = (enum mqtt_type)(buf[0] >> 4);
    out->flags = buf[0] & 0x0Fu;
    struct rd r = {buf + hdr, rem, 0};
    rc = decode_body(&r, out);
    if (rc == ERR_OK && !rd_done(&r))
        rc = ERR_MALFORMED; /* leftover bytes inside the packet */
    if (rc)
        return rc;
    *consumed = hdr + rem;
    return ERR_OK;
}

/* ---------------------------------------------------------------------------------------------------------
 * Encoding: size the packet, reserve it whole, then write without further checks
 * ------------------------------------------------------------------------------------------------------- */

struct wr {
    struct buf *out;
    uint8_t *p;
    uint8_t *end; /* where the reserved packet ends; every writer asserts it stays inside */
};

static size_t varint_len(size_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

/* Reserves 1 + varint + rem - left_out bytes in out and writes the fixed header (left_out: trailing bytes of
 * the packet the caller sends from elsewhere). ERR_TOO_BIG past the remaining-length limit or out's cap,
 * ERR_NOMEM; out is unchanged on failure. */
static int wr_begin_part(struct wr *w, struct buf *out, uint8_t first, size_t rem, size_t left_out)
{
    if (rem > MQTT_REMAINING_MAX || left_out > rem)
        return ERR_TOO_BIG;
    size_t total = 1 + varint_len(rem) + rem - left_out;
    int rc = buf_reserve(out, total);
    if (rc)
        return rc;
    w->out = out;
    w->p = out->data + out->len;
    w->end = w->p + total;
    *w->p++ = first;
    do {
        uint8_t b = (uint8_t)(rem & 0x7Fu);
        rem >>= 7;
        *w->p++ = rem ? (uint8_t)(b | 0x80u) : b;
    } while (rem);
    return ERR_OK;
}

static int wr_begin(struct wr *w, struct buf *out, uint8_t first, size_t rem)
{
    return wr_begin_part(w, out, first, rem, 0);
}

static void wr_u8(struct wr *w, uint8_t v)
{
    assert(w->p < w->end);
    *w->p++ = v;
}

static void wr_u16(struct wr *w, uint16_t v)
{
    wr_u8(w, (uint8_t)(v >> 8));
    wr_u8(w, (uint8_t)(v & 0xFFu));
}

static void wr_raw(struct wr *w, struct mqtt_bytes b)
{
    assert(b.len <= (size_t)(w->end - w->p));
    if (b.len)
        memcpy(w->p, b.p, b.len);
    w->p += b.len;
}

/* A string or binary field: two-byte length, then the bytes (the caller checked len <= 65535). */
static void wr_field(struct wr *w, struct mqtt_bytes b)
{
    wr_u16(w, (uint16_t)b.len);
    wr_raw(w, b);
}

static int wr_end(struct wr *w)
{
    assert(w->p == w->end);
    w->out->len = (size_t)(w->p - w->out->data);
    return ERR_OK;
}

static bool too_long(struct mqtt_bytes b)
{
    return b.len > MQTT_FIELD_MAX;
}

static uint8_t connect_flags(const struct mqtt_connect *c)
{
    unsigned f = c->clean_session ? CF_CLEAN : 0u;
    if (c->has_will) {
        f |= CF_WILL | (unsigned)c->will_qos << CF_WILL_QOS_SHIFT;
        f |= c->will_retain ? CF_WILL_RETAIN : 0u;
    }
    f |= c->has_username ? CF_USERNAME : 0u;
    f |= c->has_password ? CF_PASSWORD : 0u;
    return (uint8_t)f;
}

/* Remaining length of a CONNECT, or ERR_TOO_BIG when a field is over 65535 bytes. */
static int connect_size(const struct mqtt_connect *c, struct mqtt_bytes name, size_t *rem)
{
    if (too_long(name) || too_long(c->client_id))
        return ERR_TOO_BIG;
    if (c->has_will && (too_long(c->will_topic) || too_long(c->will_message)))
        return ERR_TOO_BIG;
    if ((c->has_username && too_long(c->username)) || (c->has_password && too_long(c->password)))
        return ERR_TOO_BIG;
    size_t n = 2 + name.len + 4 + 2 + c->client_id.len; /* name, level, flags, keep-alive, client id */
    if (c->has_will)
        n += 2 + c->will_topic.len + 2 + c->will_message.len;
    if (c->has_username)
        n += 2 + c->username.len;
    if (c->has_password)
        n += 2 + c->password.len;
    *rem = n;
    return ERR_OK;
}

int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c)
{
    static const uint8_t mqtt_name[] = {'M', 'Q', 'T', 'T'};
    struct mqtt_bytes name = c->protocol_name.len ? c->protocol_name : (struct mqtt_bytes){mqtt_name, 4};
    uint8_t level = c->level ? c->level : 4;
    if ((c->has_will && c->will_qos > 2) || (c->has_password && !c->has_username))
        return ERR_INVALID;
    size_t rem = 0;
    struct wr w;
    int rc = connect_size(c, name, &rem);
    if (rc == ERR_OK)
        rc = wr_begin(&w, out, MQTT_CONNECT << 4, rem);
    if (rc)
        return rc;
    wr_field(&w, name);
    wr_u8(&w, level);
    wr_u8(&w, connect_flags(c));
    wr_u16(&w, c->keep_alive);
    wr_field(&w, c->client_id);
    if (c->has_will) {
        wr_field(&w, c->will_topic);
        wr_field(&w, c->will_message);
    }
    if (c->has_username)
        wr_field(&w, c->username);
    if (c->has_password)
        wr_field(&w, c->password);
    return wr_end(&w);
}

int mqtt_encode_connack(struct buf *out, bool session_present, uint8_t return_code)
{
    struct wr w;
    int rc = wr_begin(&w, out, MQTT_CONNACK << 4, 2);
    if (rc)
        return rc;
    wr_u8(&w, session_present ? 1 : 0);
    wr_u8(&w, return_code);
    return wr_end(&w);
}

/* The PUBLISH up to its payload (head_only) or whole. */
static int encode_publish(struct buf *out, const struct mqtt_publish *p, bool head_only)
{
    if (p->qos > 2 || (p->qos > 0 && p->packet_id == 0))
        return ERR_INVALID;
    if (too_long(p->topic) || p->payload.len > MQTT_REMAINING_MAX)
        return ERR_TOO_BIG;
    size_t rem = 2 + p->topic.len + (p->qos ? 2 : 0) + p->payload.len;
    unsigned first = MQTT_PUBLISH << 4 | (p->dup ? 8u : 0u) | (unsigned)p->qos << 1 | (p->retain ? 1u : 0u);
    struct wr w;
    int rc = wr_begin_part(&w, out, (uint8_t)first, rem, head_only ? p->payload.len : 0);
    if (rc)
        return rc;
    wr_field(&w, p->topic);
    if (p->qos)
        wr_u16(&w, p->packet_id);
    if (!head_only)
        wr_raw(&w, p->payload);
    return wr_end(&w);
}

int mqtt_encode_publish(struct buf *out, const struct mqtt_publish *p)
{
    return encode_publish(out, p, false);
}

int mqtt_encode_publish_head(struct buf *out, const struct mqtt_publish *p)
{
    return encode_publish(out, p, true);
}

int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t packet_id)
{
    if (type != MQTT_PUBACK && type != MQTT_PUBREC && type != MQTT_PUBREL && type != MQTT_PUBCOMP &&
        type != MQTT_UNSUBACK)
        return ERR_INVALID;
    struct wr w;
    int rc = wr_begin(&w, out, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2u : 0u)), 2);
    if (rc)
        return rc;
    wr_u16(&w, packet_id);
    return wr_end(&w);
}

/* SUBSCRIBE and UNSUBSCRIBE: fixed-header flags 0x2, packet id, then the filters (with QoS for SUBSCRIBE). */
static int encode_filters(struct buf *out, enum mqtt_type type, const struct mqtt_subscribe *s, bool with_qos)
{
    if (s->count == 0 || s->count > MQTT_MAX_FILTERS || s->packet_id == 0)
        return ERR_INVALID;
    size_t rem = 2;
    for (size_t i = 0; i < s->count; i++) {
        if (with_qos && s->qos[i] > 2)
            return ERR_INVALID;
        if (too_long(s->filters[i]))
            return ERR_TOO_BIG;
        rem += 2 + s->filters[i].len + (with_qos ? 1 : 0);
    }
    struct wr w;
    int rc = wr_begin(&w, out, (uint8_t)(type << 4 | 2u), rem);
    if (rc)
        return rc;
    wr_u16(&w, s->packet_id);
    for (size_t i = 0; i < s->count; i++) {
        wr_field(&w, s->filters[i]);
        if (with_qos)
            wr_u8(&w, s->qos[i]);
    }
    return wr_end(&w);
}

int mqtt_encode_subscribe(struct buf *out, const struct mqtt_subscribe *s)
{
    return encode_filters(out, MQTT_SUBSCRIBE, s, true);
}

int mqtt_encode_unsubscribe(struct buf *out, const struct mqtt_subscribe *s)
{
    return encode_filters(out, MQTT_UNSUBSCRIBE, s, false);
}

int mqtt_encode_suback(struct buf *out, uint16_t packet_id, const uint8_t *codes, size_t count)
{
    if (count == 0 || count > MQTT_MAX_FILTERS)
        return ERR_INVALID;
    for (size_t i = 0; i < count; i++) {
        if (!suback_code_ok(codes[i]))
            return ERR_INVALID;
    }
    struct wr w;
    int rc = wr_begin(&w, out, MQTT_SUBACK << 4, 2 + count);
    if (rc)
        return rc;
    wr_u16(&w, packet_id);
    wr_raw(&w, (struct mqtt_bytes){codes, count});
    return wr_end(&w);
}

int mqtt_encode_empty(struct buf *out, enum mqtt_type type)
{
    if (type != MQTT_PINGREQ && type != MQTT_PINGRESP && type != MQTT_DISCONNECT)
        return ERR_INVALID;
    struct wr w;
    int rc = wr_begin(&w, out, (uint8_t)(type << 4), 0);
    if (rc)
        return rc;
    return wr_end(&w);
}
