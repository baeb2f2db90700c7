/* ws.c -- the :443 HTTP request-head sniff and RFC 6455 WebSocket framing (see ws.h for the contract and the
 * grammar decisions). Server side for the emulator, plus the small client side used by tests and benchmarks.
 * Pure: no sockets, no globals, no allocation beyond the caller's struct buf; OpenSSL only for the SHA-1 and
 * base64 of Sec-WebSocket-Accept. Tests: tests/unit/test_ws.c; fuzz: tests/fuzz/fuzz_ws.c. */
#include "ws.h"

#include <string.h>

#include <openssl/evp.h>

#include "err.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN 36
#define WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */
#define WS_PATH "/$iothub/websocket"
#define WS_PATH_LEN (sizeof WS_PATH - 1)
#define WS_KEY_CAP sizeof(((struct ws_upgrade *)0)->key)

/* ---- byte and text helpers ---------------------------------------------------------------------------- */

struct span {
    const uint8_t *p;
    size_t len;
};

static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && memchr("!#$%&'*+-.^_`|~", c, 15) != NULL;
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t to_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* s equals the lower-case literal lit, ignoring ASCII case. */
static bool span_eq_ci(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to_lower(s.p[i]) != (uint8_t)lit[i])
            return false;
    return true;
}

static bool span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

static struct span span_trim(struct span s)
{
    while (s.len && is_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len && is_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* Searches the comma list v for an element equal to tok (case-insensitive); *found gets the client's spelling. */
static bool list_find_ci(struct span v, const char *tok, struct span *found)
{
    size_t start = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i < v.len && v.p[i] != ',')
            continue;
        struct span e = span_trim((struct span){v.p + start, i - start});
        if (span_eq_ci(e, tok)) {
            if (found)
                *found = e;
            return true;
        }
        start = i + 1;
    }
    return false;
}

/* Copies s into dst[cap] as a NUL-terminated string; false (dst untouched) when it does not fit. */
static bool span_copy(struct span s, char *dst, size_t cap)
{
    if (s.len >= cap)
        return false;
    memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
    return true;
}

/* The NUL-terminated s has only bytes in 0x21..0x7e (0x20 too when allow_space). */
static bool str_is_printable(const char *s, bool allow_space)
{
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        if (c > 0x7e || c < 0x20 || (c == 0x20 && !allow_space))
            return false;
    }
    return true;
}

/* ---- HTTP head ---------------------------------------------------------------------------------------- */

/* Finds the blank line ending the head in p[0..len). Every CR must be followed by LF and every LF preceded by
 * CR; NUL is refused. ERR_OK with *head_len, ERR_NEED_MORE, ERR_TOO_BIG or ERR_MALFORMED. */
static int head_find_end(const uint8_t *p, size_t len, size_t *head_len)
{
    size_t lim = len < WS_MAX_REQUEST_HEAD ? len : WS_MAX_REQUEST_HEAD;
    for (size_t i = 0; i < lim; i++) {
        if (p[i] == '\0' || p[i] == '\n')
            return ERR_MALFORMED;
        if (p[i] != '\r')
            continue;
        if (i + 1 >= lim)
            break;
        if (p[i + 1] != '\n')
            return ERR_MALFORMED;
        if (i + 3 < lim && p[i + 2] == '\r' && p[i + 3] == '\n') {
            *head_len = i + 4;
            return ERR_OK;
        }
        i++; /* the LF */
    }
    return len > WS_MAX_REQUEST_HEAD ? ERR_TOO_BIG : ERR_NEED_MORE;
}

/* Matches the literal lit at p[*i..len), advancing *i. */
static int expect_lit(const uint8_t *p, size_t len, size_t *i, const char *lit)
{
    for (; *lit; lit++, (*i)++) {
        if (*i == len)
            return ERR_NEED_MORE;
        if (p[*i] != (uint8_t)*lit)
            return ERR_MALFORMED;
    }
    return ERR_OK;
}

struct request_line {
    struct span method;
    struct span target;
    uint8_t minor; /* HTTP/1.<minor> */
    size_t end;    /* offset just past the CRLF */
};

/* METHOD SP target SP HTTP/1.d CRLF over p[0..len), which may be a prefix: ERR_NEED_MORE when it runs out
 * of bytes before deciding. */
static int parse_request_line(const uint8_t *p, size_t len, struct request_line *rl)
{
    size_t i = 0;
    while (i < len && is_tchar(p[i]))
        i++;
    if (i == len)
        return ERR_NEED_MORE;
    if (i == 0 || p[i] != ' ')
        return ERR_MALFORMED;
    rl->method = (struct span){p, i};
    size_t t = ++i;
    while (i < len && p[i] > 0x20 && p[i] != 0x7f)
        i++;
    if (i == len)
        return ERR_NEED_MORE;
    if (i == t || p[i] != ' ')
        return ERR_MALFORMED;
    rl->target = (struct span){p + t, i - t};
    i++;
    int rc = expect_lit(p, len, &i, "HTTP/1.");
    if (rc)
        return rc;
    if (i == len)
        return ERR_NEED_MORE;
    if (p[i] < '0' || p[i] > '9')
        return ERR_MALFORMED;
    rl->minor = (uint8_t)(p[i++] - '0');
    rc = expect_lit(p, len, &i, "\r\n");
    if (rc)
        return rc;
    rl->end = i;
    return ERR_OK;
}

struct header {
    struct span name;
    struct span value; /* trimmed */
};

/* Parses the header line at p[*pos..) of a complete head (head_find_end guarantees a CRLF ahead) and moves
 * *pos past its CRLF. ERR_NOT_FOUND at the blank line ending the head. */
static int next_header(const uint8_t *p, size_t *pos, struct header *h)
{
    size_t i = *pos;
    if (p[i] == '\r')
        return ERR_NOT_FOUND;
    size_t eol = i;
    while (p[eol] != '\r')
        eol++;
    while (i < eol && is_tchar(p[i]))
        i++;
    if (i == *pos || i == eol || p[i] != ':')
        return ERR_MALFORMED; /* no name, no colon, whitespace before the colon, or obs-fold */
    h->name = (struct span){p + *pos, i - *pos};
    for (size_t k = i + 1; k < eol; k++)
        if ((p[k] < 0x20 && p[k] != '\t') || p[k] == 0x7f)
            return ERR_MALFORMED;
    h->value = span_trim((struct span){p + i + 1, eol - i - 1});
    *pos = eol + 2;
    return ERR_OK;
}

/* ---- the sniff ---------------------------------------------------------------------------------------- */

struct handshake {
    bool upgrade;    /* Upgrade lists websocket */
    bool connection; /* Connection lists upgrade */
    int versions;    /* Sec-WebSocket-Version headers seen */
    bool version_13;
    int keys; /* Sec-WebSocket-Key headers seen */
    bool key_ok;
};

static void sniff_key(struct span v, struct ws_upgrade *out, struct handshake *hs)
{
    hs->keys++;
    hs->key_ok = false;
    if (v.len == 0)
        return;
    for (size_t i = 0; i < v.len; i++)
        if (v.p[i] <= 0x20 || v.p[i] >= 0x7f)
            return;
    hs->key_ok = span_copy(v, out->key, sizeof out->key);
}

static void sniff_protocol(struct span v, struct ws_upgrade *out)
{
    struct span found;
    out->offered_protocols = true;
    if (out->protocol[0] == '\0' && list_find_ci(v, "mqtt", &found))
        span_copy(found, out->protocol, sizeof out->protocol);
    else if (out->protocol[0] == '\0' && list_find_ci(v, "amqpwsb10", &found))
        span_copy(found, out->protocol, sizeof out->protocol);
}

static void sniff_header(const struct header *h, struct ws_upgrade *out, struct handshake *hs)
{
    if (span_eq_ci(h->name, "upgrade")) {
        hs->upgrade = hs->upgrade || list_find_ci(h->value, "websocket", NULL);
    } else if (span_eq_ci(h->name, "connection")) {
        hs->connection = hs->connection || list_find_ci(h->value, "upgrade", NULL);
    } else if (span_eq_ci(h->name, "sec-websocket-version")) {
        hs->versions++;
        hs->version_13 = span_eq(h->value, "13");
    } else if (span_eq_ci(h->name, "sec-websocket-key")) {
        sniff_key(h->value, out, hs);
    } else if (span_eq_ci(h->name, "sec-websocket-protocol")) {
        sniff_protocol(h->value, out);
    }
}

/* The target is path, optionally followed by a query. */
static bool target_is(struct span t, const char *path)
{
    size_t n = strlen(path);
    return t.len >= n && memcmp(t.p, path, n) == 0 && (t.len == n || t.p[n] == '?');
}

/* GET /$iothub/websocket, or the Service Bus paths AMQP clients use: /$servicebus/websocket[/]. */
static bool path_matches(const struct request_line *rl, bool *servicebus)
{
    struct span t = rl->target;
    *servicebus = false;
    if (!span_eq(rl->method, "GET"))
        return false;
    if (target_is(t, WS_PATH))
        return true;
    *servicebus = target_is(t, "/$servicebus/websocket") || target_is(t, "/$servicebus/websocket/");
    return *servicebus;
}

/* Walks the headers of a complete head and fills *out. */
static int sniff_headers(const uint8_t *p, const struct request_line *rl, struct ws_upgrade *out)
{
    struct handshake hs = {0};
    struct header h;
    size_t pos = rl->end;
    int rc = next_header(p, &pos, &h);
    for (; rc == ERR_OK; rc = next_header(p, &pos, &h))
        sniff_header(&h, out, &hs);
    if (rc != ERR_NOT_FOUND)
        return rc;
    out->path_matches = path_matches(rl, &out->servicebus_path);
    out->is_websocket = out->path_matches && rl->minor >= 1 && hs.upgrade && hs.connection &&
                        hs.versions == 1 && hs.version_13 && hs.keys == 1 && hs.key_ok;
    if (!hs.key_ok)
        out->key[0] = '\0';
    return ERR_OK;
}

int ws_sniff(const uint8_t *buf, size_t len, struct ws_upgrade *out, size_t *head_len)
{
    memset(out, 0, sizeof *out);
    *head_len = 0;
    size_t end = 0;
    int rc = head_find_end(buf, len, &end);
    if (rc == ERR_MALFORMED)
        return rc;
    size_t scan = rc == ERR_OK ? end : (len < WS_MAX_REQUEST_HEAD ? len : WS_MAX_REQUEST_HEAD);
    struct request_line rl;
    int rl_rc = parse_request_line(buf, scan, &rl);
    if (rl_rc == ERR_MALFORMED)
        return rl_rc;
    if (rc)
        return rc; /* ERR_NEED_MORE or ERR_TOO_BIG */
    if (rl_rc)
        return ERR_MALFORMED; /* cannot happen: a complete head holds the request line's CRLF */
    rc = sniff_headers(buf, &rl, out);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    *head_len = end;
    return ERR_OK;
}

/* ---- handshake responses ------------------------------------------------------------------------------ */

/* out[WS_ACCEPT_LEN + 1] = base64(SHA-1(key[0..klen) + GUID)). */
static int accept_value(const char *key, size_t klen, char *out)
{
    uint8_t in[WS_KEY_CAP + WS_GUID_LEN];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (klen == 0 || klen >= WS_KEY_CAP)
        return ERR_INVALID;
    memcpy(in, key, klen);
    memcpy(in + klen, WS_GUID, WS_GUID_LEN);
    if (!EVP_Digest(in, klen + WS_GUID_LEN, md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return ERR_NOMEM;
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* writes 28 characters and a NUL */
    return ERR_OK;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!is_tchar((uint8_t)*s))
            return false;
    return true;
}

int ws_encode_accept(struct buf *out, const struct ws_upgrade *u)
{
    char accept[WS_ACCEPT_LEN + 1];
    size_t klen = strnlen(u->key, sizeof u->key);
    size_t plen = strnlen(u->protocol, sizeof u->protocol);
    if (plen == sizeof u->protocol || (plen && !is_token(u->protocol)))
        return ERR_INVALID;
    int rc = accept_value(u->key, klen, accept);
    if (rc)
        return rc;
    return buf_printf(out,
                      "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n"
                      "%s%s%s"
                      "\r\n",
                      accept, plen ? "Sec-WebSocket-Protocol: " : "", plen ? u->protocol : "",
                      plen ? "\r\n" : "");
}

int ws_encode_http_error(struct buf *out, int status, const char *reason)
{
    if (status < 400 || status > 599 || !reason || !str_is_printable(reason, true))
        return ERR_INVALID;
    return buf_printf(out,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: %zu\r\n"
                      "Connection: close\r\n"
                      "\r\n"
                      "%s\n",
                      status, reason, strlen(reason) + 1, reason);
}

int ws_encode_client_request(struct buf *out, const char *host, const char *path, const char *key,
                             const char *protocol)
{
    bool has_proto = protocol && *protocol;
    if (!host || !path || !key || !*path || !*key || !str_is_printable(host, false) ||
        !str_is_printable(path, false) || !str_is_printable(key, false) ||
        (has_proto && !str_is_printable(protocol, true)))
        return ERR_INVALID;
    return buf_printf(out,
                      "GET %s HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "%s%s%s"
                      "\r\n",
                      path, host, key, has_proto ? "Sec-WebSocket-Protocol: " : "", has_proto ? protocol : "",
                      has_proto ? "\r\n" : "");
}

/* The status line of a 101 reply: HTTP/1.d SP 101 (SP reason)? CRLF. */
static bool is_status_101(const uint8_t *p, size_t *pos)
{
    size_t i = 0;
    if (expect_lit(p, SIZE_MAX, &i, "HTTP/1.") || p[i] < '0' || p[i] > '9')
        return false;
    i++;
    if (expect_lit(p, SIZE_MAX, &i, " 101") || (p[i] != ' ' && p[i] != '\r'))
        return false;
    while (p[i] != '\r')
        i++;
    *pos = i + 2;
    return true;
}

int ws_client_parse_accept(const uint8_t *in, size_t len, const char *key, size_t *head_len)
{
    char want[WS_ACCEPT_LEN + 1];
    struct header h;
    size_t end = 0, pos = 0;
    bool upgrade = false, connection = false, accepted = false;
    *head_len = 0;
    int rc = accept_value(key, strnlen(key, WS_KEY_CAP), want);
    if (rc)
        return rc;
    rc = head_find_end(in, len, &end);
    if (rc)
        return rc;
    if (!is_status_101(in, &pos))
        return ERR_MALFORMED;
    for (rc = next_header(in, &pos, &h); rc == ERR_OK; rc = next_header(in, &pos, &h)) {
        if (span_eq_ci(h.name, "upgrade"))
            upgrade = upgrade || list_find_ci(h.value, "websocket", NULL);
        else if (span_eq_ci(h.name, "connection"))
            connection = connection || list_find_ci(h.value, "upgrade", NULL);
        else if (span_eq_ci(h.name, "sec-websocket-accept"))
            accepted = span_eq(h.value, want);
    }
    if (rc != ERR_NOT_FOUND || !upgrade || !connection || !accepted)
        return ERR_MALFORMED;
    *head_len = end;
    return ERR_OK;
}

/* ---- frames ------------------------------------------------------------------------------------------- */

struct frame {
    bool fin;
    uint8_t rsv; /* the three RSV bits */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    size_t hdr_len;
    uint64_t payload_len;
};

static bool is_control(uint8_t opcode)
{
    return opcode >= 0x8;
}

/* Parses the frame header at in[0..len): ERR_OK, ERR_NEED_MORE, or ERR_MALFORMED (64-bit length with the top
 * bit set). Validating the fields is the caller's job. */
static int frame_parse_header(const uint8_t *in, size_t len, struct frame *f)
{
    if (len < 2)
        return ERR_NEED_MORE;
    f->fin = (in[0] & 0x80) != 0;
    f->rsv = (uint8_t)((in[0] >> 4) & 0x7);
    f->opcode = in[0] & 0x0f;
    f->masked = (in[1] & 0x80) != 0;
    uint8_t len7 = in[1] & 0x7f;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    f->hdr_len = 2 + ext + (f->masked ? 4 : 0);
    if (len < f->hdr_len)
        return ERR_NEED_MORE;
    f->payload_len = len7;
    if (ext) {
        f->payload_len = 0;
        for (size_t k = 0; k < ext; k++)
            f->payload_len = (f->payload_len << 8) | in[2 + k];
    }
    if (f->payload_len >> 63)
        return ERR_MALFORMED;
    if (f->masked)
        memcpy(f->mask, in + 2 + ext, 4);
    return ERR_OK;
}

static void unmask(uint8_t *p, size_t n, const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[i & 3];
}

/* Appends one frame whose payload is iov[0..n) in order, all or nothing; masked (client to server) when mask is
 * not NULL. */
static int encode_framev(struct buf *out, uint8_t opcode, bool fin, const struct iovec *iov, int n,
                         const uint8_t *mask)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len > SIZE_MAX - len)
            return ERR_TOO_BIG;
        len += iov[i].iov_len;
    }
    uint8_t h[14];
    size_t hl = 0;
    uint8_t mbit = mask ? 0x80 : 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        h[hl++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        h[hl++] = mbit | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = mbit | 127;
        for (int k = 7; k >= 0; k--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * k));
    }
    if (mask) {
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    if (len > SIZE_MAX - hl)
        return ERR_TOO_BIG;
    int rc = buf_reserve(out, hl + len);
    if (rc)
        return rc;
    buf_append(out, h, hl); /* cannot fail after the reserve */
    size_t at = out->len;
    for (int i = 0; i < n; i++)
        buf_append(out, iov[i].iov_base, iov[i].iov_len);
    if (mask)
        unmask(out->data + at, len, mask);
    return ERR_OK;
}

static int encode_frame(struct buf *out, uint8_t opcode, bool fin, const uint8_t *data, size_t len,
                        const uint8_t *mask)
{
    struct iovec one = {.iov_base = (void *)data, .iov_len = len};
    return encode_framev(out, opcode, fin, &one, 1, mask);
}

int ws_encode_binary(struct buf *out, const uint8_t *data, size_t len)
{
    return encode_frame(out, WS_OP_BINARY, true, data, len, NULL);
}

int ws_encode_binaryv(struct buf *out, const struct iovec *iov, int n)
{
    return encode_framev(out, WS_OP_BINARY, true, iov, n, NULL);
}

int ws_encode_close(struct buf *out, uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return encode_frame(out, WS_OP_CLOSE, true, p, 2, NULL);
}

int ws_encode_client_frame(struct buf *out, uint8_t opcode, bool fin, const uint8_t *data, size_t len,
                           const uint8_t mask[4])
{
    if (opcode > 0x0f)
        return ERR_INVALID;
    return encode_frame(out, opcode, fin, data, len, mask);
}

int ws_client_decode(const uint8_t *in, size_t len, size_t *consumed, uint8_t *opcode, bool *fin,
                     const uint8_t **payload, size_t *payload_len)
{
    struct frame f;
    *consumed = 0;
    *opcode = 0;
    *fin = false;
    *payload = NULL;
    *payload_len = 0;
    int rc = frame_parse_header(in, len, &f);
    if (rc)
        return rc;
    bool known = f.opcode <= WS_OP_BINARY || (f.opcode >= WS_OP_CLOSE && f.opcode <= WS_OP_PONG);
    if (f.rsv || f.masked || !known || (is_control(f.opcode) && (!f.fin || f.payload_len > 125)))
        return ERR_MALFORMED;
    if (f.payload_len > len - f.hdr_len)
        return ERR_NEED_MORE;
    *consumed = f.hdr_len + (size_t)f.payload_len;
    *opcode = f.opcode;
    *fin = f.fin;
    *payload = in + f.hdr_len;
    *payload_len = (size_t)f.payload_len;
    return ERR_OK;
}

/* ---- the server's stream ------------------------------------------------------------------------------ */

void ws_stream_init(struct ws_stream *s)
{
    memset(s, 0, sizeof *s);
}

/* Appends our close with code (once) and maps it to the result. */
static int stream_fail(struct ws_stream *s, struct buf *wire_out, uint16_t code)
{
    if (!s->close_sent && ws_encode_close(wire_out, code) == ERR_OK)
        s->close_sent = true;
    return code == WS_CLOSE_TOO_BIG ? ERR_TOO_BIG : ERR_MALFORMED;
}

/* The close code a client frame deserves, or 0 when its header is acceptable. */
static uint16_t frame_check(const struct ws_stream *s, const struct frame *f)
{
    if (f->rsv || !f->masked)
        return WS_CLOSE_PROTOCOL_ERROR;
    switch (f->opcode) {
    case WS_OP_CONTINUATION:
        if (!s->in_message)
            return WS_CLOSE_PROTOCOL_ERROR;
        break;
    case WS_OP_BINARY:
        if (s->in_message)
            return WS_CLOSE_PROTOCOL_ERROR;
        break;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return (!f->fin || f->payload_len > 125) ? WS_CLOSE_PROTOCOL_ERROR : 0;
    default: /* text (MQTT is binary) and the reserved opcodes */
        return WS_CLOSE_PROTOCOL_ERROR;
    }
    if (f->payload_len > WS_MAX_MESSAGE - s->message_len)
        return WS_CLOSE_TOO_BIG;
    return 0;
}

/* Codes a peer may put in a close frame (RFC 6455 7.4.1 and the IANA registry; 3000-4999 are for
 * libraries and applications). */
static bool close_code_valid(uint16_t code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

/* A whole close frame; its payload p[0..n) is still masked and is unmasked only once accepted. */
static int stream_close(struct ws_stream *s, const struct frame *f, uint8_t *p, size_t n, struct buf *wire_out)
{
    uint16_t code = 0;
    if (n == 1)
        return stream_fail(s, wire_out, WS_CLOSE_PROTOCOL_ERROR);
    if (n >= 2) {
        code = (uint16_t)(((p[0] ^ f->mask[0]) << 8) | (p[1] ^ f->mask[1]));
        if (!close_code_valid(code))
            return stream_fail(s, wire_out, WS_CLOSE_PROTOCOL_ERROR);
    }
    if (!s->close_sent) {
        int rc = n ? ws_encode_close(wire_out, code) : encode_frame(wire_out, WS_OP_CLOSE, true, NULL, 0, NULL);
        if (rc)
            return rc;
        s->close_sent = true;
    }
    unmask(p, n, f->mask);
    s->close_received = true;
    return ERR_CLOSED;
}

/* A whole control frame; payload p[0..n) is still masked. */
static int stream_control(struct ws_stream *s, const struct frame *f, uint8_t *p, size_t n,
                          struct buf *wire_out)
{
    if (f->opcode == WS_OP_CLOSE)
        return stream_close(s, f, p, n, wire_out);
    if (f->opcode == WS_OP_PING) {
        int rc = buf_reserve(wire_out, 2 + n);
        if (rc)
            return rc;
        unmask(p, n, f->mask);
        return encode_frame(wire_out, WS_OP_PONG, true, p, n, NULL);
    }
    unmask(p, n, f->mask); /* a pong: nothing to do but keep the contract */
    return ERR_OK;
}

/* Decodes the frame at in[0..len); *used is its size when it was processed (ERR_OK or ERR_CLOSED). */
static int stream_frame(struct ws_stream *s, uint8_t *in, size_t len, size_t *used, struct buf *app_in,
                        struct buf *wire_out)
{
    struct frame f;
    int rc = frame_parse_header(in, len, &f);
    if (rc == ERR_NEED_MORE)
        return rc;
    uint16_t code = rc ? WS_CLOSE_PROTOCOL_ERROR : frame_check(s, &f);
    if (code)
        return stream_fail(s, wire_out, code);
    if (f.payload_len > len - f.hdr_len)
        return ERR_NEED_MORE;
    uint8_t *p = in + f.hdr_len;
    size_t n = (size_t)f.payload_len;
    if (is_control(f.opcode)) {
        rc = stream_control(s, &f, p, n, wire_out);
    } else {
        rc = buf_reserve(app_in, n);
        if (rc)
            return rc;
        unmask(p, n, f.mask);
        buf_append(app_in, p, n); /* cannot fail after the reserve */
        s->in_message = !f.fin;
        s->message_len = f.fin ? 0 : s->message_len + n;
    }
    if (rc == ERR_OK || rc == ERR_CLOSED)
        *used = f.hdr_len + n;
    return rc;
}

int ws_stream_decode(struct ws_stream *s, uint8_t *in, size_t len, size_t *consumed, struct buf *app_in,
                     struct buf *wire_out)
{
    size_t pos = 0;
    int rc = ERR_OK;
    *consumed = 0;
    if (s->close_received)
        return ERR_CLOSED;
    while (pos < len) {
        size_t used = 0;
        rc = stream_frame(s, in + pos, len - pos, &used, app_in, wire_out);
        pos += used;
        if (rc == ERR_NEED_MORE) {
            rc = ERR_OK;
            break;
        }
        if (rc)
            break;
    }
    *consumed = pos;
    return rc;
}
