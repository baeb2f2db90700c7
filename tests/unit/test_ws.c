/* test_ws.c -- unit tests for emulator/ws: the :443 request sniff, the handshake responses, the server's
 * frame stream and the test/bench client side. Every sniff input is copied to the end of an mmap'd page
 * followed by a PROT_NONE page (style.md 12), so an overread crashes even without ASan. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "ws.h"

/* ---- guard-page harness ------------------------------------------------------------------------------- */

struct guarded {
    uint8_t *p; /* the copy, ending right before the PROT_NONE page */
    void *map;
    size_t map_len;
};

static struct guarded guard_copy(const void *data, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = len ? (len + pg - 1) / pg : 1;
    struct guarded g;
    g.map_len = (data_pages + 1) * pg;
    g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g.map != MAP_FAILED);
    uint8_t *guard = (uint8_t *)g.map + data_pages * pg;
    assert_int_equal(mprotect(guard, pg, PROT_NONE), 0);
    g.p = guard - len;
    if (len)
        memcpy(g.p, data, len);
    return g;
}

static void guard_free(struct guarded *g)
{
    munmap(g->map, g->map_len);
}

static int sniff_n(const void *data, size_t len, struct ws_upgrade *u, size_t *head_len)
{
    struct guarded g = guard_copy(data, len);
    int rc = ws_sniff(g.p, len, u, head_len);
    guard_free(&g);
    return rc;
}

static int sniff(const char *s, struct ws_upgrade *u, size_t *head_len)
{
    return sniff_n(s, strlen(s), u, head_len);
}

/* ---- requests ----------------------------------------------------------------------------------------- */

/* What mqtt.js 4 (through the ws package) sends for the Node SDK's MQTT-over-WebSocket transport. */
static const char NODE_REQ[] = "GET /$iothub/websocket HTTP/1.1\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Connection: Upgrade\r\n"
                               "Upgrade: websocket\r\n"
                               "Sec-WebSocket-Protocol: mqtt\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                               "Host: hub.azure-devices.net\r\n"
                               "\r\n";

/* What the C SDK's uws_client sends (sub-protocol "MQTT"). */
static const char CSDK_REQ[] = "GET /$iothub/websocket HTTP/1.1\r\n"
                               "Host: hub.azure-devices.net:443\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
                               "Sec-WebSocket-Protocol: MQTT\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "\r\n";

static const char QUERY_REQ[] = "GET /$iothub/websocket?iothub-no-client-cert=true HTTP/1.1\r\n"
                                "Host: hub\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: keep-alive, Upgrade\r\n"
                                "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
                                "Sec-WebSocket-Protocol: wamp, MqTt , mqtt\r\n"
                                "Sec-WebSocket-Version: 13\r\n"
                                "\r\n";

static const char ODD_CASE_REQ[] = "GET /$iothub/websocket HTTP/1.1\r\n"
                                   "hOST: hub\r\n"
                                   "UPGRADE:WebSocket\r\n"
                                   "cOnNeCtIoN: \tUPGRADE\t\r\n"
                                   "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
                                   "SEC-WEBSOCKET-VERSION: 13\r\n"
                                   "\r\n";

static const char REST_REQ[] = "POST /twins/d1/methods?api-version=2021-04-12 HTTP/1.1\r\n"
                               "Host: hub.azure-devices.net\r\n"
                               "Authorization: SharedAccessSignature sr=hub&sig=abc%3D&se=1&skn=iothubowner\r\n"
                               "Content-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 2\r\n"
                               "\r\n"
                               "{}";

/* ws_encode_binaryv({a, b}) is ws_encode_binary(a then b) at the 7-bit, 16-bit and 64-bit length forms. */
static void binary2_is_binary_of_joined(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    uint8_t *data = malloc(70000);
    assert_non_null(data);
    for (size_t i = 0; i < 70000; i++)
        data[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t split = 0; split <= lens[i]; split += lens[i] > 2 ? lens[i] / 2 : 1) {
            struct buf one, two;
            buf_init(&one, SIZE_MAX);
            buf_init(&two, SIZE_MAX);
            assert_int_equal(ws_encode_binary(&one, data, lens[i]), ERR_OK);
            struct iovec parts[2] = {{.iov_base = data, .iov_len = split}, {.iov_base = data + split, .iov_len = lens[i] - split}};
            assert_int_equal(ws_encode_binaryv(&two, parts, 2), ERR_OK);
            assert_int_equal(one.len, two.len);
            assert_memory_equal(one.data, two.data, one.len);
            buf_cleanup(&one);
            buf_cleanup(&two);
        }
    }
    free(data);
}

static void sniff_node_request(void **state)
{
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(NODE_REQ, &u, &head_len), ERR_OK);
    assert_int_equal(head_len, strlen(NODE_REQ));
    assert_true(u.is_websocket);
    assert_true(u.path_matches);
    assert_true(u.offered_protocols);
    assert_string_equal(u.protocol, "mqtt");
    assert_string_equal(u.key, "dGhlIHNhbXBsZSBub25jZQ==");
}

static void sniff_csdk_request(void **state)
{
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(CSDK_REQ, &u, &head_len), ERR_OK);
    assert_int_equal(head_len, strlen(CSDK_REQ));
    assert_true(u.is_websocket);
    assert_string_equal(u.protocol, "MQTT");
    assert_string_equal(u.key, "x3JJHMbDL1EzLkh9GBhXDw==");
}

static void sniff_query_and_lists(void **state)
{
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(QUERY_REQ, &u, &head_len), ERR_OK);
    assert_true(u.is_websocket);
    assert_true(u.path_matches);
    assert_string_equal(u.protocol, "MqTt"); /* the first mqtt entry, in the client's spelling */
}

static void sniff_odd_case(void **state)
{
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(ODD_CASE_REQ, &u, &head_len), ERR_OK);
    assert_true(u.is_websocket);
    assert_string_equal(u.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_false(u.offered_protocols);
    assert_string_equal(u.protocol, "");
}

static void sniff_rest_request(void **state)
{
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(REST_REQ, &u, &head_len), ERR_OK);
    assert_int_equal(head_len, strlen(REST_REQ) - 2); /* the body is not part of the head */
    assert_false(u.is_websocket);
    assert_false(u.path_matches);
    assert_false(u.offered_protocols);
}

/* Requests that are HTTP but not a valid upgrade: ERR_OK, is_websocket false, path_matches as noted. */
static void sniff_not_websocket(void **state)
{
    static const struct {
        const char *req;
        bool path_matches;
    } v[] = {
        {"GET /$iothub/websocket HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: abc\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: \r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: 0123456789012345678901234567890123456789012345678901234567890123\r\n\r\n",
         true},
        {"GET /$iothub/websocket HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         true},
        {"GET /$iothub/websocketx HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         false},
        {"GET /$iothub/websocket/ HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         false},
        {"get /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
         false},
        {"POST /$iothub/websocket HTTP/1.1\r\n\r\n", false},
        {"GET / HTTP/1.1\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct ws_upgrade u;
        size_t head_len;
        print_message("vector %zu\n", i);
        assert_int_equal(sniff(v[i].req, &u, &head_len), ERR_OK);
        assert_int_equal(head_len, strlen(v[i].req));
        assert_false(u.is_websocket);
        assert_int_equal(u.path_matches, v[i].path_matches);
    }
}

static void sniff_protocols_without_mqtt(void **state)
{
    static const char req[] = "GET /$iothub/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n"
                              "Sec-WebSocket-Protocol: mqttv3.1, amqp\r\n\r\n";
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff(req, &u, &head_len), ERR_OK);
    assert_true(u.is_websocket);
    assert_true(u.offered_protocols);
    assert_string_equal(u.protocol, ""); /* the caller answers 400 */
}

static void sniff_need_more_at_every_prefix(void **state)
{
    const char *reqs[] = {NODE_REQ, CSDK_REQ, QUERY_REQ, ODD_CASE_REQ, REST_REQ};
    for (size_t r = 0; r < sizeof reqs / sizeof reqs[0]; r++) {
        size_t head = strstr(reqs[r], "\r\n\r\n") + 4 - reqs[r];
        for (size_t n = 0; n < head; n++) {
            struct ws_upgrade u;
            size_t head_len = 99;
            int rc = sniff_n(reqs[r], n, &u, &head_len);
            if (rc != ERR_NEED_MORE)
                fail_msg("request %zu prefix %zu: rc %d", r, n, rc);
            assert_int_equal(head_len, 0);
            assert_false(u.is_websocket);
        }
    }
}

static void sniff_too_big(void **state)
{
    size_t n = WS_MAX_REQUEST_HEAD + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', n - 19);
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff_n(big, n - 1, &u, &head_len), ERR_NEED_MORE);
    assert_int_equal(sniff_n(big, n, &u, &head_len), ERR_TOO_BIG);
    /* A head of exactly WS_MAX_REQUEST_HEAD bytes is accepted; one more byte is not. */
    memcpy(big + n - 5, "\r\n\r\n", 4);
    assert_int_equal(sniff_n(big, n - 1, &u, &head_len), ERR_OK);
    assert_int_equal(head_len, WS_MAX_REQUEST_HEAD);
    memcpy(big + n - 5, "a\r\n\r\n", 5);
    assert_int_equal(sniff_n(big, n, &u, &head_len), ERR_TOO_BIG);
    /* A garbage request line is reported as such even past the cap. */
    big[0] = 0x10;
    assert_int_equal(sniff_n(big, n, &u, &head_len), ERR_MALFORMED);
    free(big);
}

static void sniff_malformed(void **state)
{
    static const struct {
        const char *s;
        size_t len;
    } v[] = {
#define V(lit) {lit, sizeof lit - 1}
        V("\x10\x2a\x00\x04MQTT\x04\xc2"),      /* an MQTT CONNECT, refused at its first byte */
        V("\x16\x03\x01\x02\x00\x01\x00\x01"), /* a TLS ClientHello */
        V("\r\nGET / HTTP/1.1\r\n\r\n"),       /* a leading empty line */
        V("GET  / HTTP/1.1\r\n\r\n"),
        V("GET /\tx HTTP/1.1\r\n\r\n"),
        V("GET / HTTP/2.0\r\n\r\n"),
        V("GET / HTTP/1.x\r\n\r\n"),
        V("GET / HTTP/1.1 \r\n\r\n"),
        V("GET / HTTP/1.1\n\n"),             /* bare LF */
        V("GET / HTTP/1.1\r\nHost: h\n\r\n"), /* bare LF in a header */
        V("GET / HTTP/1.1\rX"),              /* CR without LF, before the head is complete */
        V("GET / HT\0TP/1.1"),               /* NUL */
        V("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
        V("GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
        V("GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        V("GET / HTTP/1.1\r\n: h\r\n\r\n"),
        V("GET / HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n"), /* obs-fold */
        V("GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n"),
        V("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n"),
        V("G\xc3\x89T / HTTP/1.1\r\n\r\n"),
#undef V
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct ws_upgrade u;
        size_t head_len = 99;
        print_message("vector %zu\n", i);
        assert_int_equal(sniff_n(v[i].s, v[i].len, &u, &head_len), ERR_MALFORMED);
        assert_int_equal(head_len, 0);
        assert_false(u.is_websocket);
        assert_false(u.path_matches);
    }
}

static void sniff_tolerates_obs_text_in_values(void **state)
{
    static const char req[] = "GET /$iothub/websocket HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\t1\r\n"
                              "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Key: abc\r\n\r\nbody bytes \0\n are not looked at";
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff_n(req, sizeof req - 1, &u, &head_len), ERR_OK);
    assert_true(u.is_websocket);
    assert_int_equal(head_len, strstr(req, "\r\n\r\n") + 4 - req);
}

/* ---- handshake responses ------------------------------------------------------------------------------ */

/* RFC 6455 section 1.3: SHA-1 b3 7a 4f 2c ... of key + GUID, base64 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". */
static void accept_rfc6455_vector(void **state)
{
    struct ws_upgrade u = {.is_websocket = true, .key = "dGhlIHNhbXBsZSBub25jZQ=="};
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(ws_encode_accept(&b, &u), ERR_OK);
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "\r\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    size_t head_len;
    assert_int_equal(ws_client_parse_accept(b.data, b.len, "dGhlIHNhbXBsZSBub25jZQ==", &head_len), ERR_OK);
    assert_int_equal(head_len, b.len);
    buf_cleanup(&b);
}

static void accept_echoes_protocol_spelling(void **state)
{
    const char *reqs[] = {NODE_REQ, CSDK_REQ};
    const char *want[] = {"Sec-WebSocket-Protocol: mqtt\r\n\r\n", "Sec-WebSocket-Protocol: MQTT\r\n\r\n"};
    for (size_t i = 0; i < 2; i++) {
        struct ws_upgrade u;
        size_t head_len;
        assert_int_equal(sniff(reqs[i], &u, &head_len), ERR_OK);
        struct buf b;
        buf_init(&b, 4096);
        assert_int_equal(ws_encode_accept(&b, &u), ERR_OK);
        size_t wl = strlen(want[i]);
        assert_true(b.len > wl);
        assert_memory_equal(b.data + b.len - wl, want[i], wl);
        assert_int_equal(ws_client_parse_accept(b.data, b.len, u.key, &head_len), ERR_OK);
        buf_cleanup(&b);
    }
}

static void accept_rejects_bad_input(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    struct ws_upgrade u = {0};
    assert_int_equal(ws_encode_accept(&b, &u), ERR_INVALID); /* no key */
    memcpy(u.key, "abc", 4);
    memcpy(u.protocol, "mq tt", 6);
    assert_int_equal(ws_encode_accept(&b, &u), ERR_INVALID);
    memset(u.key, 'k', sizeof u.key); /* unterminated */
    u.protocol[0] = '\0';
    assert_int_equal(ws_encode_accept(&b, &u), ERR_INVALID);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static void client_parse_accept_cases(void **state)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x82\x00";
    size_t head_len;
    size_t head = sizeof ok - 1 - 2;
    for (size_t n = 0; n < head; n++) {
        struct guarded g = guard_copy(ok, n);
        assert_int_equal(ws_client_parse_accept(g.p, n, key, &head_len), ERR_NEED_MORE);
        guard_free(&g);
    }
    struct guarded g = guard_copy(ok, sizeof ok - 1);
    assert_int_equal(ws_client_parse_accept(g.p, sizeof ok - 1, key, &head_len), ERR_OK);
    assert_int_equal(head_len, head);
    assert_int_equal(ws_client_parse_accept(g.p, sizeof ok - 1, "AAAAAAAAAAAAAAAAAAAAAA==", &head_len),
                     ERR_MALFORMED);
    assert_int_equal(ws_client_parse_accept(g.p, sizeof ok - 1, "", &head_len), ERR_INVALID);
    guard_free(&g);
    static const char *bad[] = {
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 1010 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g = guard_copy(bad[i], strlen(bad[i]));
        assert_int_equal(ws_client_parse_accept(g.p, strlen(bad[i]), key, &head_len), ERR_MALFORMED);
        assert_int_equal(head_len, 0);
        guard_free(&g);
    }
}

static void http_error_response(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(ws_encode_http_error(&b, 400, "Bad Request"), ERR_OK);
    static const char want[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: 12\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "Bad Request\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    assert_int_equal(ws_encode_http_error(&b, 200, "OK"), ERR_INVALID);
    assert_int_equal(ws_encode_http_error(&b, 400, "a\r\nb"), ERR_INVALID);
    assert_int_equal(b.len, sizeof want - 1);
    buf_cleanup(&b);
}

static void client_request_round_trip(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(ws_encode_client_request(&b, "localhost:443", "/$iothub/websocket?x=1",
                                              "dGhlIHNhbXBsZSBub25jZQ==", "MQTT"),
                     ERR_OK);
    struct ws_upgrade u;
    size_t head_len;
    assert_int_equal(sniff_n(b.data, b.len, &u, &head_len), ERR_OK);
    assert_int_equal(head_len, b.len);
    assert_true(u.is_websocket);
    assert_string_equal(u.protocol, "MQTT");
    b.len = 0;
    assert_int_equal(ws_encode_client_request(&b, "h", "/$iothub/websocket", "k", NULL), ERR_OK);
    assert_int_equal(sniff_n(b.data, b.len, &u, &head_len), ERR_OK);
    assert_true(u.is_websocket);
    assert_false(u.offered_protocols);
    b.len = 0;
    assert_int_equal(ws_encode_client_request(&b, "h\r\nX: y", "/", "k", NULL), ERR_INVALID);
    assert_int_equal(ws_encode_client_request(&b, "h", "/a b", "k", NULL), ERR_INVALID);
    assert_int_equal(ws_encode_client_request(&b, "h", "/", "", NULL), ERR_INVALID);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

/* ---- the server's frame stream ------------------------------------------------------------------------ */

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

struct fixture {
    struct ws_stream s;
    struct buf wire_in; /* what the client sent */
    struct buf app_in;
    struct buf wire_out;
};

static void fx_init(struct fixture *fx)
{
    ws_stream_init(&fx->s);
    buf_init(&fx->wire_in, 4u * WS_MAX_MESSAGE);
    buf_init(&fx->app_in, 4u * WS_MAX_MESSAGE);
    buf_init(&fx->wire_out, 4u * WS_MAX_MESSAGE);
}

static void fx_cleanup(struct fixture *fx)
{
    buf_cleanup(&fx->wire_in);
    buf_cleanup(&fx->app_in);
    buf_cleanup(&fx->wire_out);
}

static void fx_frame(struct fixture *fx, uint8_t opcode, bool fin, const void *data, size_t len)
{
    assert_int_equal(ws_encode_client_frame(&fx->wire_in, opcode, fin, data, len, MASK), ERR_OK);
}

/* Decodes all of wire_in in one call (on a guarded copy); returns rc and sets *consumed. */
static int fx_decode(struct fixture *fx, size_t *consumed)
{
    struct guarded g = guard_copy(fx->wire_in.data, fx->wire_in.len);
    int rc = ws_stream_decode(&fx->s, g.p, fx->wire_in.len, consumed, &fx->app_in, &fx->wire_out);
    guard_free(&g);
    return rc;
}

static void stream_single_binary(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    fx_frame(&fx, WS_OP_BINARY, true, "\x10\x0c\x00\x04MQTT", 8);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_OK);
    assert_int_equal(consumed, fx.wire_in.len);
    assert_int_equal(fx.app_in.len, 8);
    assert_memory_equal(fx.app_in.data, "\x10\x0c\x00\x04MQTT", 8);
    assert_int_equal(fx.wire_out.len, 0);
    assert_false(fx.s.in_message);
    fx_cleanup(&fx);
}

/* Three fragments, a ping between the second and the third, then a second message. */
static void build_fragmented(struct fixture *fx)
{
    fx_frame(fx, WS_OP_BINARY, false, "abc", 3);
    fx_frame(fx, WS_OP_CONTINUATION, false, "", 0);
    fx_frame(fx, WS_OP_PING, true, "hi", 2);
    fx_frame(fx, WS_OP_CONTINUATION, true, "defg", 4);
    fx_frame(fx, WS_OP_BINARY, true, "XY", 2);
    fx_frame(fx, WS_OP_PONG, true, "ignored", 7);
}

static void stream_fragmented(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    build_fragmented(&fx);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_OK);
    assert_int_equal(consumed, fx.wire_in.len);
    assert_int_equal(fx.app_in.len, 9);
    assert_memory_equal(fx.app_in.data, "abcdefgXY", 9);
    assert_int_equal(fx.wire_out.len, 4);
    assert_memory_equal(fx.wire_out.data, "\x8a\x02hi", 4);
    fx_cleanup(&fx);
}

/* Splits the stream at every offset k: the first call sees in[0..k), the second the rest (plus any bytes the
 * first left unconsumed), as a connection's input buffer would. */
static void stream_split_at_every_offset(void **state)
{
    struct fixture ref;
    fx_init(&ref);
    build_fragmented(&ref);
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    fx_frame(&ref, WS_OP_BINARY, true, big, sizeof big); /* a 16-bit length */
    size_t total = ref.wire_in.len;
    for (size_t k = 0; k <= total; k++) {
        struct fixture fx;
        fx_init(&fx);
        uint8_t *in = malloc(total);
        assert_non_null(in);
        memcpy(in, ref.wire_in.data, total);
        size_t c1, c2;
        assert_int_equal(ws_stream_decode(&fx.s, in, k, &c1, &fx.app_in, &fx.wire_out), ERR_OK);
        assert_true(c1 <= k);
        assert_int_equal(ws_stream_decode(&fx.s, in + c1, total - c1, &c2, &fx.app_in, &fx.wire_out), ERR_OK);
        assert_int_equal(c1 + c2, total);
        assert_int_equal(fx.app_in.len, 9 + sizeof big);
        assert_memory_equal(fx.app_in.data, "abcdefgXY", 9);
        assert_memory_equal(fx.app_in.data + 9, big, sizeof big);
        assert_int_equal(fx.wire_out.len, 4);
        assert_memory_equal(fx.wire_out.data, "\x8a\x02hi", 4);
        free(in);
        fx_cleanup(&fx);
    }
    fx_cleanup(&ref);
}

static void stream_byte_at_a_time(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    build_fragmented(&fx);
    uint8_t *in = fx.wire_in.data;
    size_t total = fx.wire_in.len, start = 0;
    for (size_t end = 1; end <= total; end++) {
        size_t c;
        assert_int_equal(ws_stream_decode(&fx.s, in + start, end - start, &c, &fx.app_in, &fx.wire_out), ERR_OK);
        start += c;
    }
    assert_int_equal(start, total);
    assert_int_equal(fx.app_in.len, 9);
    assert_memory_equal(fx.app_in.data, "abcdefgXY", 9);
    fx_cleanup(&fx);
}

static void stream_ping_pong(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    uint8_t payload[125];
    memset(payload, 0xa5, sizeof payload);
    fx_frame(&fx, WS_OP_PING, true, payload, sizeof payload);
    fx_frame(&fx, WS_OP_PING, true, NULL, 0);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_OK);
    assert_int_equal(consumed, fx.wire_in.len);
    assert_int_equal(fx.app_in.len, 0);
    assert_int_equal(fx.wire_out.len, 2 + 125 + 2);
    assert_memory_equal(fx.wire_out.data, "\x8a\x7d", 2);
    assert_memory_equal(fx.wire_out.data + 2, payload, sizeof payload);
    assert_memory_equal(fx.wire_out.data + 127, "\x8a\x00", 2);
    fx_cleanup(&fx);
}

static void stream_close_with_code(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    fx_frame(&fx, WS_OP_BINARY, true, "a", 1);
    size_t before = fx.wire_in.len;
    fx_frame(&fx, WS_OP_CLOSE, true, "\x03\xe8" "bye", 5);
    size_t close_end = fx.wire_in.len;
    fx_frame(&fx, WS_OP_BINARY, true, "after", 5);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_CLOSED);
    assert_true(consumed > before);
    assert_int_equal(consumed, close_end);
    assert_int_equal(fx.app_in.len, 1);
    assert_int_equal(fx.wire_out.len, 4);
    assert_memory_equal(fx.wire_out.data, "\x88\x02\x03\xe8", 4);
    assert_true(fx.s.close_received);
    assert_true(fx.s.close_sent);
    assert_int_equal(fx_decode(&fx, &consumed), ERR_CLOSED); /* and stays closed */
    assert_int_equal(consumed, 0);
    fx_cleanup(&fx);
}

static void stream_close_empty_and_after_our_close(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    fx_frame(&fx, WS_OP_CLOSE, true, NULL, 0);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_CLOSED);
    assert_int_equal(fx.wire_out.len, 2);
    assert_memory_equal(fx.wire_out.data, "\x88\x00", 2);
    fx_cleanup(&fx);

    fx_init(&fx);
    fx.s.close_sent = true; /* the server closed first: the client's close is the answer */
    fx_frame(&fx, WS_OP_CLOSE, true, "\x03\xe9", 2);
    assert_int_equal(fx_decode(&fx, &consumed), ERR_CLOSED);
    assert_int_equal(fx.wire_out.len, 0);
    fx_cleanup(&fx);
}

/* Each vector is one frame following a good binary frame; all are protocol errors answered with 1002. */
static void stream_protocol_errors(void **state)
{
    static const struct {
        uint8_t opcode;
        bool fin;
        size_t len;
        bool masked;
        bool open_message; /* sent after an unfinished binary fragment */
    } v[] = {
        {WS_OP_BINARY, true, 3, false, false},       /* unmasked */
        {WS_OP_TEXT, true, 3, true, false},          /* text */
        {0x3, true, 0, true, false},                 /* reserved data opcode */
        {0xb, true, 0, true, false},                 /* reserved control opcode */
        {WS_OP_PING, true, 126, true, false},        /* control frame too long */
        {WS_OP_PING, false, 1, true, false},         /* fragmented control frame */
        {WS_OP_CLOSE, true, 1, true, false},         /* 1-byte close payload */
        {WS_OP_CONTINUATION, true, 2, true, false},  /* continuation without a start */
        {WS_OP_BINARY, true, 2, true, true},         /* a new message inside one */
    };
    uint8_t payload[200] = {0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct fixture fx;
        fx_init(&fx);
        print_message("vector %zu\n", i);
        fx_frame(&fx, WS_OP_BINARY, !v[i].open_message, "ok", 2);
        size_t good = fx.wire_in.len;
        assert_int_equal(ws_encode_client_frame(&fx.wire_in, v[i].opcode, v[i].fin, payload, v[i].len,
                                                v[i].masked ? MASK : NULL),
                         ERR_OK);
        size_t consumed;
        assert_int_equal(fx_decode(&fx, &consumed), ERR_MALFORMED);
        assert_int_equal(consumed, good);
        assert_int_equal(fx.app_in.len, 2);
        assert_int_equal(fx.wire_out.len, 4);
        assert_memory_equal(fx.wire_out.data, "\x88\x02\x03\xea", 4);
        assert_true(fx.s.close_sent);
        fx_cleanup(&fx);
    }
}

static void stream_raw_header_errors(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        int rc;
        const char *close;
    } v[] = {
        {"\xc2\x80\x00\x00\x00\x00", 6, ERR_MALFORMED, "\x88\x02\x03\xea"}, /* RSV1 */
        {"\x92\x80\x00\x00\x00\x00", 6, ERR_MALFORMED, "\x88\x02\x03\xea"}, /* RSV3 */
        {"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14, ERR_MALFORMED,
         "\x88\x02\x03\xea"}, /* 64-bit length with its top bit set */
        {"\x88\x82\x00\x00\x00\x00\x03\xed", 8, ERR_MALFORMED, "\x88\x02\x03\xea"}, /* close code 1005 */
        {"\x88\x82\x00\x00\x00\x00\x00\x00", 8, ERR_MALFORMED, "\x88\x02\x03\xea"}, /* close code 0 */
        {"\x82\xff\x00\x00\x00\x00\x00\x08\x00\x01\x01\x02\x03\x04", 14, ERR_TOO_BIG,
         "\x88\x02\x03\xf1"}, /* 512 KiB + 1, refused before the payload arrives */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct fixture fx;
        fx_init(&fx);
        print_message("vector %zu\n", i);
        assert_int_equal(buf_append(&fx.wire_in, v[i].bytes, v[i].len), ERR_OK);
        size_t consumed = 99;
        assert_int_equal(fx_decode(&fx, &consumed), v[i].rc);
        assert_int_equal(consumed, 0);
        assert_int_equal(fx.wire_out.len, 4);
        assert_memory_equal(fx.wire_out.data, v[i].close, 4);
        fx_cleanup(&fx);
    }
}

static void stream_lengths_16_and_64(void **state)
{
    static const size_t sizes[] = {125, 126, 65535, 65536, 70000, WS_MAX_MESSAGE};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct fixture fx;
        fx_init(&fx);
        uint8_t *p = malloc(sizes[i]);
        assert_non_null(p);
        for (size_t k = 0; k < sizes[i]; k++)
            p[k] = (uint8_t)(k * 7);
        fx_frame(&fx, WS_OP_BINARY, true, p, sizes[i]);
        size_t hdr = sizes[i] < 126 ? 6 : sizes[i] <= 65535 ? 8 : 14;
        assert_int_equal(fx.wire_in.len, hdr + sizes[i]);
        size_t consumed;
        assert_int_equal(fx_decode(&fx, &consumed), ERR_OK);
        assert_int_equal(consumed, fx.wire_in.len);
        assert_int_equal(fx.app_in.len, sizes[i]);
        assert_memory_equal(fx.app_in.data, p, sizes[i]);
        free(p);
        fx_cleanup(&fx);
    }
}

static void stream_too_big_message(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    size_t half = WS_MAX_MESSAGE / 2;
    uint8_t *p = calloc(1, half + 1);
    assert_non_null(p);
    fx_frame(&fx, WS_OP_BINARY, false, p, half);
    size_t first = fx.wire_in.len;
    fx_frame(&fx, WS_OP_CONTINUATION, true, p, half + 1);
    size_t consumed;
    assert_int_equal(fx_decode(&fx, &consumed), ERR_TOO_BIG);
    assert_int_equal(consumed, first);
    assert_int_equal(fx.app_in.len, half);
    assert_int_equal(fx.wire_out.len, 4);
    assert_memory_equal(fx.wire_out.data, "\x88\x02\x03\xf1", 4);
    free(p);
    fx_cleanup(&fx);
}

/* A full app_in refuses the frame without consuming or unmasking it: a retry after draining works. */
static void stream_app_buffer_full(void **state)
{
    struct fixture fx;
    fx_init(&fx);
    fx.app_in.max = 4;
    fx_frame(&fx, WS_OP_BINARY, true, "abc", 3);
    fx_frame(&fx, WS_OP_BINARY, true, "def", 3);
    uint8_t *in = fx.wire_in.data;
    size_t len = fx.wire_in.len, c;
    assert_int_equal(ws_stream_decode(&fx.s, in, len, &c, &fx.app_in, &fx.wire_out), ERR_TOO_BIG);
    assert_int_equal(c, 9);
    assert_int_equal(fx.wire_out.len, 0);
    buf_consume(&fx.app_in, fx.app_in.len);
    assert_int_equal(ws_stream_decode(&fx.s, in + c, len - c, &c, &fx.app_in, &fx.wire_out), ERR_OK);
    assert_int_equal(fx.app_in.len, 3);
    assert_memory_equal(fx.app_in.data, "def", 3);
    fx_cleanup(&fx);
}

/* ---- server frames and the client decoder ------------------------------------------------------------- */

static void server_frames_client_decode(void **state)
{
    struct buf b;
    buf_init(&b, 4u * WS_MAX_MESSAGE);
    uint8_t *p = malloc(70000);
    assert_non_null(p);
    memset(p, 0x5a, 70000);
    assert_int_equal(ws_encode_binary(&b, (const uint8_t *)"\x20\x02\x00\x00", 4), ERR_OK);
    assert_memory_equal(b.data, "\x82\x04\x20\x02\x00\x00", 6);
    assert_int_equal(ws_encode_binary(&b, p, 300), ERR_OK);
    assert_int_equal(ws_encode_binary(&b, p, 70000), ERR_OK);
    assert_int_equal(ws_encode_close(&b, WS_CLOSE_NORMAL), ERR_OK);
    static const size_t want_len[] = {4, 300, 70000, 2};
    static const uint8_t want_op[] = {WS_OP_BINARY, WS_OP_BINARY, WS_OP_BINARY, WS_OP_CLOSE};
    struct guarded g = guard_copy(b.data, b.len);
    size_t pos = 0;
    for (size_t i = 0; i < 4; i++) {
        size_t consumed, plen;
        uint8_t op;
        bool fin;
        const uint8_t *pl;
        assert_int_equal(ws_client_decode(g.p + pos, b.len - pos, &consumed, &op, &fin, &pl, &plen), ERR_OK);
        for (size_t n = 0; n < consumed; n = (n == 16 && consumed > 20) ? consumed - 3 : n + 1) {
            size_t c2, plen2;
            const uint8_t *pl2;
            int rc = ws_client_decode(g.p + b.len - n, n, &c2, &op, &fin, &pl2, &plen2);
            (void)rc; /* a suffix, only for the guard page */
            rc = ws_client_decode(g.p + pos, n, &c2, &op, &fin, &pl2, &plen2);
            assert_int_equal(rc, ERR_NEED_MORE);
        }
        assert_int_equal(ws_client_decode(g.p + pos, b.len - pos, &consumed, &op, &fin, &pl, &plen), ERR_OK);
        assert_int_equal(op, want_op[i]);
        assert_true(fin);
        assert_int_equal(plen, want_len[i]);
        pos += consumed;
    }
    assert_int_equal(pos, b.len);
    guard_free(&g);
    free(p);
    buf_cleanup(&b);
}

static void client_decode_rejects(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } v[] = {
        {"\x82\x81\x00\x00\x00\x00\x00", 7}, /* masked */
        {"\xa2\x00", 2},                     /* RSV2 */
        {"\x83\x00", 2},                     /* reserved opcode */
        {"\x09\x00", 2},                     /* fragmented ping */
        {"\x89\x7e\x00\x7e", 4},             /* long ping */
        {"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t consumed, plen;
        uint8_t op;
        bool fin;
        const uint8_t *pl;
        struct guarded g = guard_copy(v[i].bytes, v[i].len);
        assert_int_equal(ws_client_decode(g.p, v[i].len, &consumed, &op, &fin, &pl, &plen), ERR_MALFORMED);
        assert_int_equal(consumed, 0);
        guard_free(&g);
    }
}

static void encoders_all_or_nothing(void **state)
{
    struct buf b;
    buf_init(&b, 5);
    assert_int_equal(ws_encode_binary(&b, (const uint8_t *)"abcd", 4), ERR_TOO_BIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(ws_encode_binary(&b, (const uint8_t *)"abc", 3), ERR_OK);
    assert_int_equal(b.len, 5);
    assert_int_equal(ws_encode_client_frame(&b, 16, true, NULL, 0, MASK), ERR_INVALID);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(binary2_is_binary_of_joined),
        cmocka_unit_test(sniff_node_request),
        cmocka_unit_test(sniff_csdk_request),
        cmocka_unit_test(sniff_query_and_lists),
        cmocka_unit_test(sniff_odd_case),
        cmocka_unit_test(sniff_rest_request),
        cmocka_unit_test(sniff_not_websocket),
        cmocka_unit_test(sniff_protocols_without_mqtt),
        cmocka_unit_test(sniff_need_more_at_every_prefix),
        cmocka_unit_test(sniff_too_big),
        cmocka_unit_test(sniff_malformed),
        cmocka_unit_test(sniff_tolerates_obs_text_in_values),
        cmocka_unit_test(accept_rfc6455_vector),
        cmocka_unit_test(accept_echoes_protocol_spelling),
        cmocka_unit_test(accept_rejects_bad_input),
        cmocka_unit_test(client_parse_accept_cases),
        cmocka_unit_test(http_error_response),
        cmocka_unit_test(client_request_round_trip),
        cmocka_unit_test(stream_single_binary),
        cmocka_unit_test(stream_fragmented),
        cmocka_unit_test(stream_split_at_every_offset),
        cmocka_unit_test(stream_byte_at_a_time),
        cmocka_unit_test(stream_ping_pong),
        cmocka_unit_test(stream_close_with_code),
        cmocka_unit_test(stream_close_empty_and_after_our_close),
        cmocka_unit_test(stream_protocol_errors),
        cmocka_unit_test(stream_raw_header_errors),
        cmocka_unit_test(stream_lengths_16_and_64),
        cmocka_unit_test(stream_too_big_message),
        cmocka_unit_test(stream_app_buffer_full),
        cmocka_unit_test(server_frames_client_decode),
        cmocka_unit_test(client_decode_rejects),
        cmocka_unit_test(encoders_all_or_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
