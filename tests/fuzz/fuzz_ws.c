/* fuzz_ws.c -- libFuzzer harness for emulator/ws. The first byte picks a mode:
 *   0 sniff the rest as a request head (and check what an ERR_OK promises);
 *   1 stream-decode the rest as client frames, once whole and once in pseudo-random chunks as a connection's
 *     input buffer would see them, and require both to agree (byte 2 seeds the chunks and the buf caps);
 *   2 client-decode the rest as server frames;  3 parse the rest as a 101 reply, then its frames;
 *   4 round-trip the rest as a payload through the encoders and both decoders.
 * Inputs are copied to exact-size heap blocks so ASan sees any overread. Aborts on a broken invariant. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "ws.h"

#define CHECK(cond)                                                                                            \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            abort();                                                                                           \
    } while (0)

static uint8_t *dup_exact(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    CHECK(p);
    if (size)
        memcpy(p, data, size);
    return p;
}

static void run_sniff(const uint8_t *data, size_t size)
{
    struct ws_upgrade u;
    size_t head_len;
    uint8_t *p = dup_exact(data, size);
    int rc = ws_sniff(p, size, &u, &head_len);
    free(p);
    if (rc != ERR_OK) {
        CHECK(head_len == 0 && !u.is_websocket && !u.path_matches);
        return;
    }
    CHECK(head_len >= 4 && head_len <= size && head_len <= WS_MAX_REQUEST_HEAD);
    CHECK(!u.is_websocket || u.path_matches);
    struct ws_upgrade u2;
    size_t h2;
    p = dup_exact(data, head_len - 1);
    CHECK(ws_sniff(p, head_len - 1, &u2, &h2) == ERR_NEED_MORE);
    free(p);
    if (!u.is_websocket)
        return;
    struct buf b;
    buf_init(&b, 4096);
    CHECK(ws_encode_accept(&b, &u) == ERR_OK);
    CHECK(ws_client_parse_accept(b.data, b.len, u.key, &h2) == ERR_OK && h2 == b.len);
    buf_cleanup(&b);
}

static uint32_t rng_next(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

struct run {
    struct ws_stream s;
    struct buf app_in;
    struct buf wire_out;
    size_t consumed;
    int rc;
};

static void run_init(struct run *r, size_t cap)
{
    ws_stream_init(&r->s);
    buf_init(&r->app_in, cap);
    buf_init(&r->wire_out, cap);
    r->consumed = 0;
    r->rc = ERR_OK;
}

static void run_cleanup(struct run *r)
{
    buf_cleanup(&r->app_in);
    buf_cleanup(&r->wire_out);
}

/* Decodes q[0..len) on an exact-size copy; the bytes it did not consume must come back untouched. */
static int decode_step(struct run *r, const uint8_t *q, size_t len, size_t *c)
{
    uint8_t *p = dup_exact(q, len);
    int rc = ws_stream_decode(&r->s, p, len, c, &r->app_in, &r->wire_out);
    CHECK(*c <= len);
    CHECK(memcmp(p + *c, q + *c, len - *c) == 0);
    free(p);
    return rc;
}

static void run_chunked(struct run *r, const uint8_t *data, size_t size, uint32_t seed)
{
    struct buf inq;
    buf_init(&inq, size + 1);
    size_t pos = 0;
    while (pos < size) {
        uint32_t x = rng_next(&seed);
        size_t n = (x & 0x300) ? 1 + x % 17 : 1 + x % 4096;
        if (n > size - pos)
            n = size - pos;
        CHECK(buf_append(&inq, data + pos, n) == ERR_OK);
        pos += n;
        size_t c;
        r->rc = decode_step(r, inq.data, inq.len, &c);
        r->consumed += c;
        buf_consume(&inq, c);
        if (r->rc)
            break;
    }
    buf_cleanup(&inq);
}

static bool buf_same(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void run_stream(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    uint32_t seed = 0x9e3779b9u ^ data[0];
    size_t cap = (data[0] & 0x80) ? 64 : 2u * WS_MAX_MESSAGE;
    data++;
    size--;
    struct run whole, chunked;
    run_init(&whole, cap);
    run_init(&chunked, cap);
    whole.rc = decode_step(&whole, data, size, &whole.consumed);
    run_chunked(&chunked, data, size, seed);
    CHECK(whole.rc != ERR_NEED_MORE);
    CHECK(whole.rc == chunked.rc && whole.consumed == chunked.consumed);
    CHECK(buf_same(&whole.app_in, &chunked.app_in) && buf_same(&whole.wire_out, &chunked.wire_out));
    CHECK(whole.s.in_message == chunked.s.in_message && whole.s.message_len == chunked.s.message_len);
    CHECK(whole.s.close_sent == chunked.s.close_sent && whole.s.close_received == chunked.s.close_received);
    run_cleanup(&whole);
    run_cleanup(&chunked);
}

static void client_frames(const uint8_t *p, size_t size)
{
    size_t pos = 0;
    for (;;) {
        size_t c, plen;
        uint8_t op;
        bool fin;
        const uint8_t *pl;
        int rc = ws_client_decode(p + pos, size - pos, &c, &op, &fin, &pl, &plen);
        if (rc != ERR_OK) {
            CHECK(c == 0);
            return;
        }
        CHECK(c >= 2 && c <= size - pos && pl + plen == p + pos + c);
        pos += c;
    }
}

static void run_client(const uint8_t *data, size_t size)
{
    uint8_t *p = dup_exact(data, size);
    client_frames(p, size);
    free(p);
}

static void run_accept(const uint8_t *data, size_t size)
{
    uint8_t *p = dup_exact(data, size);
    size_t head_len;
    if (ws_client_parse_accept(p, size, "dGhlIHNhbXBsZSBub25jZQ==", &head_len) == ERR_OK) {
        CHECK(head_len <= size);
        client_frames(p + head_len, size - head_len);
    }
    free(p);
}

static void run_round_trip(const uint8_t *data, size_t size)
{
    static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
    struct buf wire, app, out;
    struct ws_stream s;
    size_t c;
    buf_init(&wire, 2u * WS_MAX_MESSAGE);
    buf_init(&app, 2u * WS_MAX_MESSAGE);
    buf_init(&out, 2u * WS_MAX_MESSAGE);
    ws_stream_init(&s);
    CHECK(ws_encode_client_frame(&wire, WS_OP_BINARY, true, data, size, mask) == ERR_OK);
    CHECK(ws_stream_decode(&s, wire.data, wire.len, &c, &app, &out) == ERR_OK && c == wire.len);
    CHECK(app.len == size && (size == 0 || memcmp(app.data, data, size) == 0) && out.len == 0);
    wire.len = 0;
    CHECK(ws_encode_binary(&wire, data, size) == ERR_OK);
    size_t plen;
    uint8_t op;
    bool fin;
    const uint8_t *pl;
    CHECK(ws_client_decode(wire.data, wire.len, &c, &op, &fin, &pl, &plen) == ERR_OK);
    CHECK(c == wire.len && op == WS_OP_BINARY && fin && plen == size);
    CHECK(size == 0 || memcmp(pl, data, size) == 0);
    buf_cleanup(&wire);
    buf_cleanup(&app);
    buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
        run_sniff(data + 1, size - 1);
        break;
    case 1:
        run_stream(data + 1, size - 1);
        break;
    case 2:
        run_client(data + 1, size - 1);
        break;
    case 3:
        run_accept(data + 1, size - 1);
        break;
    default:
        run_round_trip(data + 1, size - 1);
        break;
    }
    return 0;
}
