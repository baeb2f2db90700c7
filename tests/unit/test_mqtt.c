/* test_mqtt.c -- unit tests for emulator/mqtt (the MQTT 3.1.1 codec): byte-exact vectors from an Azure
 * SDK-style session, encode->decode round trips for every packet type, NEED_MORE at every truncation point,
 * TOO_BIG, one malformed case per decoder rule (each with a valid twin one edit away), remaining-length
 * boundaries, clean encoder failures, and a guard-page pass (style.md §12) so any over-read crashes. */
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
#include "mqtt.h"

#define MAXP MQTT_MAX_PACKET_DEFAULT
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1
#define BYTES(s) ((struct mqtt_bytes){(const uint8_t *)(s), sizeof(s) - 1})

/* ---- byte-exact vectors --------------------------------------------------------------------------------- */

#define AZ_USER                                                                                                \
    "localhost/device1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v18.19.0" \
    "%3B%20linux%3B%20x64)"
#define AZ_PASS                                                                                                \
    "SharedAccessSignature sr=localhost%2Fdevices%2Fdevice1&sig=KXnyxJ3%2BqDjWyFbZ2VsF8LPAbHDm4a%2F7wCv9g6T2wI0" \
    "%3D&se=1735689600"

/* CONNECT as the Node device SDK sends it: clean session 0, keep-alive 180, user name + SAS password. */
static const uint8_t v_connect[] = "\x10"
                                   "\x8e\x02" /* remaining length 270 */
                                   "\x00\x04"
                                   "MQTT"
                                   "\x04"     /* level */
                                   "\xc0"     /* user name + password */
                                   "\x00\xb4" /* keep-alive 180 */
                                   "\x00\x07"
                                   "device1"
                                   "\x00\x7c" AZ_USER "\x00\x7b" AZ_PASS;

static const uint8_t v_publish_q1[] = "\x32\x38"
                                      "\x00\x20"
                                      "devices/device1/messages/events/"
                                      "\x00\x2a"
                                      "{\"temperature\":21.5}";

static const uint8_t v_publish_q0[] = "\x30\x30"
                                      "\x00\x1f"
                                      "$iothub/methods/res/200/?$rid=1"
                                      "{\"status\":\"ok\"}";

static const uint8_t v_subscribe[] = "\x82\x59"
                                     "\x00\x01"
                                     "\x00\x16"
                                     "$iothub/methods/POST/#"
                                     "\x00"
                                     "\x00\x12"
                                     "$iothub/twin/res/#"
                                     "\x00"
                                     "\x00\x26"
                                     "devices/device1/messages/devicebound/#"
                                     "\x01";

struct vec {
    const char *name;
    const uint8_t *p;
    size_t len;
};

#define VEC(a) {#a, a, sizeof(a) - 1}
static const struct vec vectors[] = {VEC(v_connect), VEC(v_publish_q1), VEC(v_publish_q0), VEC(v_subscribe)};
#define NVECTORS (sizeof vectors / sizeof vectors[0])

static void assert_bytes(struct mqtt_bytes got, struct mqtt_bytes want)
{
    assert_int_equal(got.len, want.len);
    if (want.len)
        assert_memory_equal(got.p, want.p, want.len);
}

static void decode_ok(const uint8_t *p, size_t len, struct mqtt_packet *pkt)
{
    size_t used = 99;
    assert_int_equal(mqtt_decode(p, len, MAXP, pkt, &used), ERR_OK);
    assert_int_equal(used, len);
}

static void encode_matches(struct buf *b, const uint8_t *want, size_t len)
{
    assert_int_equal(b->len, len);
    assert_memory_equal(b->data, want, len);
    buf_cleanup(b);
}

static void azure_connect_vector(void **state)
{
    struct mqtt_packet pkt;
    decode_ok(LIT(v_connect), &pkt);
    const struct mqtt_connect *c = &pkt.u.connect;
    assert_int_equal(pkt.type, MQTT_CONNECT);
    assert_true(mqtt_bytes_eq(c->protocol_name, "MQTT"));
    assert_int_equal(c->level, 4);
    assert_false(c->clean_session);
    assert_int_equal(c->keep_alive, 180);
    assert_true(mqtt_bytes_eq(c->client_id, "device1"));
    assert_false(c->has_will);
    assert_true(c->has_username && mqtt_bytes_eq(c->username, AZ_USER));
    assert_true(c->has_password && mqtt_bytes_eq(c->password, AZ_PASS));

    struct mqtt_connect in = {.keep_alive = 180, .client_id = BYTES("device1"), .has_username = true,
                              .username = BYTES(AZ_USER), .has_password = true, .password = BYTES(AZ_PASS)};
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(mqtt_encode_connect(&b, &in), ERR_OK); /* empty name and level 0 default to MQTT/4 */
    encode_matches(&b, LIT(v_connect));
}

/* mqtt_encode_publish_head followed by the payload is the whole PUBLISH, byte for byte, at every
 * remaining-length size (1, 2 and 3 varint bytes) and QoS; a payload over the cap fails either way. */
static void publish_head_is_whole_packet_prefix(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 100, 127, 128, 16300, 16400, 200000};
    uint8_t *payload = malloc(200000);
    assert_non_null(payload);
    for (size_t i = 0; i < 200000; i++)
        payload[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (uint8_t qos = 0; qos <= 1; qos++) {
            struct mqtt_publish p = {.qos = qos, .packet_id = qos ? 9 : 0, .topic = {(const uint8_t *)"a/b", 3},
                                     .payload = {payload, lens[i]}};
            struct buf whole, head;
            buf_init(&whole, SIZE_MAX);
            buf_init(&head, SIZE_MAX);
            assert_int_equal(mqtt_encode_publish(&whole, &p), ERR_OK);
            assert_int_equal(mqtt_encode_publish_head(&head, &p), ERR_OK);
            assert_int_equal(head.len + lens[i], whole.len);
            assert_memory_equal(head.data, whole.data, head.len);
            if (lens[i])
                assert_memory_equal(whole.data + head.len, payload, lens[i]);
            buf_cleanup(&whole);
            buf_cleanup(&head);
        }
    }
    struct mqtt_publish big = {.topic = {(const uint8_t *)"a", 1}, .payload = {payload, 268435455u}};
    struct buf head;
    buf_init(&head, SIZE_MAX);
    assert_int_equal(mqtt_encode_publish_head(&head, &big), ERR_TOO_BIG);
    assert_int_equal(head.len, 0);
    buf_cleanup(&head);
    free(payload);
}

static void publish_vectors(void **state)
{
    struct mqtt_packet pkt;
    decode_ok(LIT(v_publish_q1), &pkt);
    assert_int_equal(pkt.type, MQTT_PUBLISH);
    assert_int_equal(pkt.flags, 2);
    assert_int_equal(pkt.u.publish.qos, 1);
    assert_int_equal(pkt.u.publish.packet_id, 42);
    assert_true(mqtt_bytes_eq(pkt.u.publish.topic, "devices/device1/messages/events/"));
    assert_true(mqtt_bytes_eq(pkt.u.publish.payload, "{\"temperature\":21.5}"));
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(mqtt_encode_publish(&b, &pkt.u.publish), ERR_OK);
    encode_matches(&b, LIT(v_publish_q1));

    decode_ok(LIT(v_publish_q0), &pkt);
    assert_int_equal(pkt.u.publish.qos, 0);
    assert_int_equal(pkt.u.publish.packet_id, 0);
    assert_false(pkt.u.publish.dup || pkt.u.publish.retain);
    assert_true(mqtt_bytes_eq(pkt.u.publish.topic, "$iothub/methods/res/200/?$rid=1"));
    assert_true(mqtt_bytes_eq(pkt.u.publish.payload, "{\"status\":\"ok\"}"));
    struct mqtt_publish in = {.topic = BYTES("$iothub/methods/res/200/?$rid=1"),
                              .payload = BYTES("{\"status\":\"ok\"}")};
    assert_int_equal(mqtt_encode_publish(&b, &in), ERR_OK);
    encode_matches(&b, LIT(v_publish_q0));
}

static void subscribe_vector(void **state)
{
    struct mqtt_packet pkt;
    decode_ok(LIT(v_subscribe), &pkt);
    const struct mqtt_subscribe *s = &pkt.u.subscribe;
    assert_int_equal(pkt.type, MQTT_SUBSCRIBE);
    assert_int_equal(s->packet_id, 1);
    assert_int_equal(s->count, 3);
    assert_true(mqtt_bytes_eq(s->filters[0], "$iothub/methods/POST/#"));
    assert_true(mqtt_bytes_eq(s->filters[1], "$iothub/twin/res/#"));
    assert_true(mqtt_bytes_eq(s->filters[2], "devices/device1/messages/devicebound/#"));
    assert_int_equal(s->qos[0], 0);
    assert_int_equal(s->qos[1], 0);
    assert_int_equal(s->qos[2], 1);

    struct mqtt_subscribe in = {.packet_id = 1, .count = 3,
                                .filters = {BYTES("$iothub/methods/POST/#"), BYTES("$iothub/twin/res/#"),
                                            BYTES("devices/device1/messages/devicebound/#")},
                                .qos = {0, 0, 1}};
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(mqtt_encode_subscribe(&b, &in), ERR_OK);
    encode_matches(&b, LIT(v_subscribe));
}

/* ---- round trips: every type through its encoder and back ------------------------------------------------ */

static void assert_connect_eq(const struct mqtt_connect *got, const struct mqtt_connect *want)
{
    assert_bytes(got->protocol_name, want->protocol_name);
    assert_int_equal(got->level, want->level);
    assert_int_equal(got->clean_session, want->clean_session);
    assert_int_equal(got->keep_alive, want->keep_alive);
    assert_bytes(got->client_id, want->client_id);
    assert_int_equal(got->has_will, want->has_will);
    assert_int_equal(got->will_qos, want->will_qos);
    assert_int_equal(got->will_retain, want->will_retain);
    assert_bytes(got->will_topic, want->will_topic);
    assert_bytes(got->will_message, want->will_message);
    assert_int_equal(got->has_username, want->has_username);
    assert_bytes(got->username, want->username);
    assert_int_equal(got->has_password, want->has_password);
    assert_bytes(got->password, want->password);
}

/* Decodes the single packet in b (which must be all of b) into pkt, then empties b. */
static void decode_buf(struct buf *b, struct mqtt_packet *pkt, enum mqtt_type type)
{
    decode_ok(b->data, b->len, pkt);
    assert_int_equal(pkt->type, type);
    b->len = 0;
}

static void roundtrip_connect(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    struct mqtt_packet pkt;
    const struct mqtt_connect full = {
        .protocol_name = BYTES("MQTT"), .level = 4, .clean_session = true, .keep_alive = 65535,
        .client_id = BYTES("dev\xc3\xa9/mod"), .has_will = true, .will_qos = 2, .will_retain = true,
        .will_topic = BYTES("last/will"), .will_message = BYTES("bye\0\xff"), .has_username = true,
        .username = BYTES("u"), .has_password = true, .password = BYTES("\x00\xff\xc0\x80")};
    assert_int_equal(mqtt_encode_connect(&b, &full), ERR_OK);
    decode_buf(&b, &pkt, MQTT_CONNECT);
    assert_connect_eq(&pkt.u.connect, &full);

    /* 3.1 name, empty client id, no will, user name without password */
    const struct mqtt_connect v31 = {.protocol_name = BYTES("MQIsdp"), .level = 3, .has_username = true,
                                     .username = BYTES("")};
    assert_int_equal(mqtt_encode_connect(&b, &v31), ERR_OK);
    decode_buf(&b, &pkt, MQTT_CONNECT);
    assert_connect_eq(&pkt.u.connect, &v31);
    buf_cleanup(&b);
}

static void roundtrip_publish(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    struct mqtt_packet pkt;
    for (uint8_t qos = 0; qos <= 2; qos++) {
        for (unsigned bits = 0; bits < 4; bits++) {
            struct mqtt_publish in = {.qos = qos, .dup = bits & 1, .retain = bits & 2,
                                      .topic = BYTES("a/\xe2\x82\xac/b"), .packet_id = qos ? 65535 : 0,
                                      .payload = BYTES("p\0q")};
            assert_int_equal(mqtt_encode_publish(&b, &in), ERR_OK);
            decode_buf(&b, &pkt, MQTT_PUBLISH);
            const struct mqtt_publish *got = &pkt.u.publish;
            assert_int_equal(got->qos, qos);
            assert_int_equal(got->dup, in.dup);
            assert_int_equal(got->retain, in.retain);
            assert_int_equal(got->packet_id, in.packet_id);
            assert_bytes(got->topic, in.topic);
            assert_bytes(got->payload, in.payload);
            assert_int_equal(pkt.flags, (bits & 1) << 3 | qos << 1 | (bits & 2) >> 1);
        }
    }
    struct mqtt_publish empty = {.topic = BYTES("t")};
    assert_int_equal(mqtt_encode_publish(&b, &empty), ERR_OK);
    decode_buf(&b, &pkt, MQTT_PUBLISH);
    assert_int_equal(pkt.u.publish.payload.len, 0);
    buf_cleanup(&b);
}

static void assert_filters_eq(const struct mqtt_subscribe *got, const struct mqtt_subscribe *want, bool qos)
{
    assert_int_equal(got->packet_id, want->packet_id);
    assert_int_equal(got->count, want->count);
    for (size_t i = 0; i < want->count; i++) {
        assert_bytes(got->filters[i], want->filters[i]);
        assert_int_equal(got->qos[i], qos ? want->qos[i] : 0);
    }
}

static void roundtrip_subscriptions(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    struct mqtt_packet pkt;
    struct mqtt_subscribe s = {.packet_id = 7};
    for (size_t i = 0; i < MQTT_MAX_FILTERS; i++) {
        s.filters[i] = i % 2 ? BYTES("+/x/#") : BYTES("$iothub/methods/POST/#");
        s.qos[i] = (uint8_t)(i % 3);
    }
    for (s.count = 1; s.count <= MQTT_MAX_FILTERS; s.count++) {
        assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_OK);
        decode_buf(&b, &pkt, MQTT_SUBSCRIBE);
        assert_int_equal(pkt.flags, 2);
        assert_filters_eq(&pkt.u.subscribe, &s, true);

        assert_int_equal(mqtt_encode_unsubscribe(&b, &s), ERR_OK);
        decode_buf(&b, &pkt, MQTT_UNSUBSCRIBE);
        assert_int_equal(pkt.flags, 2);
        assert_filters_eq(&pkt.u.subscribe, &s, false);
    }
    const uint8_t codes[] = {0, 1, 2, 0x80};
    assert_int_equal(mqtt_encode_suback(&b, 0x1234, codes, 4), ERR_OK);
    decode_buf(&b, &pkt, MQTT_SUBACK);
    assert_int_equal(pkt.u.subscribe.packet_id, 0x1234);
    assert_int_equal(pkt.u.subscribe.count, 4);
    assert_memory_equal(pkt.u.subscribe.qos, codes, 4);
    buf_cleanup(&b);
}

static void roundtrip_small(void **state)
{
    struct buf b;
    buf_init(&b, 64);
    struct mqtt_packet pkt;
    for (int sp = 0; sp <= 1; sp++) {
        assert_int_equal(mqtt_encode_connack(&b, sp, (uint8_t)(5 * (1 - sp))), ERR_OK);
        decode_buf(&b, &pkt, MQTT_CONNACK);
        assert_int_equal(pkt.u.connack.session_present, sp);
        assert_int_equal(pkt.u.connack.return_code, 5 * (1 - sp));
    }
    const enum mqtt_type acks[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP, MQTT_UNSUBACK};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(mqtt_encode_ack(&b, acks[i], (uint16_t)(0xFF00 + i)), ERR_OK);
        assert_int_equal(b.len, 4);
        decode_buf(&b, &pkt, acks[i]);
        assert_int_equal(pkt.flags, acks[i] == MQTT_PUBREL ? 2 : 0);
        assert_int_equal(pkt.u.packet_id, 0xFF00 + i);
    }
    const enum mqtt_type empties[] = {MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mqtt_encode_empty(&b, empties[i]), ERR_OK);
        assert_int_equal(b.len, 2);
        decode_buf(&b, &pkt, empties[i]);
    }
    buf_cleanup(&b);
}

/* ---- malformed input: each rule, with a valid twin one edit away ----------------------------------------- */

struct twin {
    const char *rule;
    const uint8_t *bad;
    size_t bad_len;
    const uint8_t *good;
    size_t good_len;
};

#define TWIN(rule, bad, good) {rule, (const uint8_t *)(bad), sizeof(bad) - 1, (const uint8_t *)(good), sizeof(good) - 1}

/* CONNECT "MQTT" level 4, clean session, keep-alive 60, client id "c": remaining length 13. */
#define CONN_HEAD(rem, flags) "\x10" rem "\x00\x04" "MQTT" "\x04" flags "\x00\x3c"
#define CONN_OK CONN_HEAD("\x0d", "\x02") "\x00\x01" "c"
/* Will topic "t", will message "m". */
#define WILL "\x00\x01" "t" "\x00\x01" "m"
/* 16 and 17 one-character filters for SUBSCRIBE (with QoS) and UNSUBSCRIBE. */
#define SF "\x00\x01" "a" "\x00"
#define SF4 SF SF SF SF
#define SF16 SF4 SF4 SF4 SF4
#define UF "\x00\x01" "a"
#define UF4 UF UF UF UF
#define UF16 UF4 UF4 UF4 UF4
#define C4 "\x00\x01\x02\x80"
#define C16 C4 C4 C4 C4

static const struct twin twins[] = {
    /* fixed header */
    TWIN("type 0", "\x00\x00", "\xc0\x00"),
    TWIN("type 15", "\xf0\x00", "\xd0\x00"),
    TWIN("5-byte remaining length", "\xc0\x80\x80\x80\x80\x00", "\xc0\x80\x80\x80\x00"),
    TWIN("CONNECT flags", "\x11\x0d" "\x00\x04" "MQTT" "\x04\x02\x00\x3c\x00\x01" "c", CONN_OK),
    TWIN("CONNACK flags", "\x21\x02\x00\x00", "\x20\x02\x00\x00"),
    TWIN("PUBACK flags", "\x41\x02\x00\x01", "\x40\x02\x00\x01"),
    TWIN("PUBREC flags", "\x52\x02\x00\x01", "\x50\x02\x00\x01"),
    TWIN("PUBREL flags 0", "\x60\x02\x00\x01", "\x62\x02\x00\x01"),
    TWIN("PUBREL flags 3", "\x63\x02\x00\x01", "\x62\x02\x00\x01"),
    TWIN("PUBCOMP flags", "\x78\x02\x00\x01", "\x70\x02\x00\x01"),
    TWIN("SUBSCRIBE flags 0", "\x80\x06\x00\x01\x00\x01" "a" "\x01", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE flags 3", "\x83\x06\x00\x01\x00\x01" "a" "\x01", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBACK flags", "\x91\x03\x00\x01\x00", "\x90\x03\x00\x01\x00"),
    TWIN("UNSUBSCRIBE flags", "\xa0\x05\x00\x01\x00\x01" "a", "\xa2\x05\x00\x01\x00\x01" "a"),
    TWIN("UNSUBACK flags", "\xb2\x02\x00\x01", "\xb0\x02\x00\x01"),
    TWIN("PINGREQ flags", "\xc1\x00", "\xc0\x00"),
    TWIN("PINGRESP flags", "\xd4\x00", "\xd0\x00"),
    TWIN("DISCONNECT flags", "\xe2\x00", "\xe0\x00"),
    /* CONNECT */
    TWIN("empty protocol name", "\x10\x09\x00\x00" "\x04\x02\x00\x3c\x00\x01" "c", CONN_OK),
    TWIN("protocol name MQTX", "\x10\x0d\x00\x04" "MQTX" "\x04\x02\x00\x3c\x00\x01" "c", CONN_OK),
    TWIN("MQTT level 3", "\x10\x0d\x00\x04" "MQTT" "\x03\x02\x00\x3c\x00\x01" "c", CONN_OK),
    TWIN("MQTT level 5", "\x10\x0d\x00\x04" "MQTT" "\x05\x02\x00\x3c\x00\x01" "c", CONN_OK),
    TWIN("MQIsdp level 4", "\x10\x0f\x00\x06" "MQIsdp" "\x04\x02\x00\x3c\x00\x01" "c",
         "\x10\x0f\x00\x06" "MQIsdp" "\x03\x02\x00\x3c\x00\x01" "c"),
    TWIN("reserved connect flag", CONN_HEAD("\x0d", "\x03") "\x00\x01" "c", CONN_OK),
    TWIN("will QoS without will", CONN_HEAD("\x0d", "\x0a") "\x00\x01" "c",
         CONN_HEAD("\x13", "\x0e") "\x00\x01" "c" WILL),
    TWIN("will retain without will", CONN_HEAD("\x0d", "\x22") "\x00\x01" "c",
         CONN_HEAD("\x13", "\x26") "\x00\x01" "c" WILL),
    TWIN("will QoS 3", CONN_HEAD("\x13", "\x1e") "\x00\x01" "c" WILL,
         CONN_HEAD("\x13", "\x16") "\x00\x01" "c" WILL),
    TWIN("will topic with wildcard", CONN_HEAD("\x13", "\x06") "\x00\x01" "c" "\x00\x01" "#" "\x00\x01" "m",
         CONN_HEAD("\x13", "\x06") "\x00\x01" "c" WILL),
    TWIN("empty will topic", CONN_HEAD("\x12", "\x06") "\x00\x01" "c" "\x00\x00" "\x00\x01" "m",
         CONN_HEAD("\x13", "\x06") "\x00\x01" "c" WILL),
    TWIN("password without user name", CONN_HEAD("\x10", "\x42") "\x00\x01" "c" "\x00\x01" "p",
         CONN_HEAD("\x13", "\xc2") "\x00\x01" "c" "\x00\x01" "u" "\x00\x01" "p"),
    TWIN("client id runs past packet", CONN_HEAD("\x0d", "\x02") "\x00\x02" "c", CONN_OK),
    TWIN("keep-alive cut short", "\x10\x09\x00\x04" "MQTT" "\x04\x02\x00", CONN_OK),
    TWIN("client id missing", "\x10\x0a\x00\x04" "MQTT" "\x04\x02\x00\x3c", CONN_OK),
    TWIN("user name flag, no user name", CONN_HEAD("\x0d", "\x82") "\x00\x01" "c",
         CONN_HEAD("\x10", "\x82") "\x00\x01" "c" "\x00\x01" "u"),
    TWIN("CONNECT trailing byte", CONN_HEAD("\x0e", "\x02") "\x00\x01" "c" "x", CONN_OK),
    /* UTF-8 (in the client id; user name and will topic share the reader) */
    TWIN("UTF-8 overlong 2-byte", CONN_HEAD("\x0e", "\x02") "\x00\x02" "\xc0\x80",
         CONN_HEAD("\x0e", "\x02") "\x00\x02" "\xc3\xa9"),
    TWIN("UTF-8 overlong 2-byte C1", CONN_HEAD("\x0e", "\x02") "\x00\x02" "\xc1\xbf",
         CONN_HEAD("\x0e", "\x02") "\x00\x02" "\xc2\x80"),
    TWIN("UTF-8 overlong 3-byte", CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xe0\x9f\xbf",
         CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xe0\xa0\x80"),
    TWIN("UTF-8 overlong 4-byte", CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf0\x8f\xbf\xbf",
         CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf0\x90\x80\x80"),
    TWIN("UTF-8 surrogate D800", CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xed\xa0\x80",
         CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xed\x9f\xbf"),
    TWIN("UTF-8 surrogate DFFF", CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xed\xbf\xbf",
         CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xee\x80\x80"),
    TWIN("UTF-8 above U+10FFFF", CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf4\x90\x80\x80",
         CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf4\x8f\xbf\xbf"),
    TWIN("UTF-8 lead F5", CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf5\x80\x80\x80",
         CONN_HEAD("\x10", "\x02") "\x00\x04" "\xf3\xbf\xbf\xbf"),
    TWIN("UTF-8 byte FF", CONN_HEAD("\x0d", "\x02") "\x00\x01" "\xff", CONN_OK),
    TWIN("UTF-8 U+0000", CONN_HEAD("\x0d", "\x02") "\x00\x01" "\x00", CONN_HEAD("\x0d", "\x02") "\x00\x01" "\x01"),
    TWIN("UTF-8 lone continuation", CONN_HEAD("\x0d", "\x02") "\x00\x01" "\x80", CONN_OK),
    TWIN("UTF-8 truncated sequence", CONN_HEAD("\x0e", "\x02") "\x00\x02" "\xe2\x82",
         CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xe2\x82\xac"),
    TWIN("UTF-8 bad continuation", CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xe2\x82" "c",
         CONN_HEAD("\x0f", "\x02") "\x00\x03" "\xe2\x82\xac"),
    TWIN("user name with U+0000", CONN_HEAD("\x10", "\x82") "\x00\x01" "c" "\x00\x01" "\x00",
         CONN_HEAD("\x10", "\x82") "\x00\x01" "c" "\x00\x01" "u"),
    TWIN("will topic not UTF-8", CONN_HEAD("\x13", "\x06") "\x00\x01" "c" "\x00\x01" "\xfe" "\x00\x01" "m",
         CONN_HEAD("\x13", "\x06") "\x00\x01" "c" "\x00\x01" "\x7f" "\x00\x01" "m"),
    /* PUBLISH */
    TWIN("empty topic", "\x30\x04\x00\x00" "hi", "\x30\x05\x00\x01" "a" "hi"),
    TWIN("topic with +", "\x30\x07\x00\x03" "a/+" "hi", "\x30\x07\x00\x03" "a/b" "hi"),
    TWIN("topic with #", "\x30\x07\x00\x03" "a/#" "hi", "\x30\x07\x00\x03" "a/b" "hi"),
    TWIN("topic not UTF-8", "\x30\x05\x00\x01" "\xc3" "hi", "\x30\x05\x00\x01" "\x7e" "hi"),
    TWIN("PUBLISH QoS 3", "\x36\x07\x00\x01" "a" "\x00\x01" "hi", "\x34\x07\x00\x01" "a" "\x00\x01" "hi"),
    TWIN("QoS 1 packet id 0", "\x32\x07\x00\x01" "a" "\x00\x00" "hi", "\x32\x07\x00\x01" "a" "\x00\x01" "hi"),
    TWIN("QoS 2 packet id 0", "\x3c\x05\x00\x01" "a" "\x00\x00", "\x3c\x05\x00\x01" "a" "\x00\x05"),
    TWIN("QoS 1 packet id cut short", "\x32\x04\x00\x01" "a" "\x01", "\x32\x05\x00\x01" "a" "\x00\x01"),
    TWIN("topic runs past packet", "\x30\x05\x00\x04" "a" "hi", "\x30\x05\x00\x01" "a" "hi"),
    /* SUBSCRIBE */
    TWIN("SUBSCRIBE without filters", "\x82\x02\x00\x01", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE 17 filters", "\x82\x46\x00\x01" SF16 SF, "\x82\x42\x00\x01" SF16),
    TWIN("SUBSCRIBE empty filter", "\x82\x05\x00\x01\x00\x00" "\x01", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE QoS 3", "\x82\x06\x00\x01\x00\x01" "a" "\x03", "\x82\x06\x00\x01\x00\x01" "a" "\x02"),
    TWIN("SUBSCRIBE QoS upper bits", "\x82\x06\x00\x01\x00\x01" "a" "\x41", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE missing QoS", "\x82\x05\x00\x01\x00\x01" "a", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE packet id 0", "\x82\x06\x00\x00\x00\x01" "a" "\x01", "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    TWIN("SUBSCRIBE filter not UTF-8", "\x82\x06\x00\x01\x00\x01" "\xc0" "\x01",
         "\x82\x06\x00\x01\x00\x01" "+" "\x01"),
    TWIN("SUBSCRIBE filter runs past packet", "\x82\x06\x00\x01\x00\x02" "a" "\x01",
         "\x82\x06\x00\x01\x00\x01" "a" "\x01"),
    /* UNSUBSCRIBE */
    TWIN("UNSUBSCRIBE without filters", "\xa2\x02\x00\x01", "\xa2\x05\x00\x01\x00\x01" "a"),
    TWIN("UNSUBSCRIBE 17 filters", "\xa2\x35\x00\x01" UF16 UF, "\xa2\x32\x00\x01" UF16),
    TWIN("UNSUBSCRIBE empty filter", "\xa2\x04\x00\x01\x00\x00", "\xa2\x05\x00\x01\x00\x01" "a"),
    TWIN("UNSUBSCRIBE packet id 0", "\xa2\x05\x00\x00\x00\x01" "a", "\xa2\x05\x00\x01\x00\x01" "a"),
    TWIN("UNSUBSCRIBE trailing byte", "\xa2\x06\x00\x01\x00\x01" "a" "\x00", "\xa2\x05\x00\x01\x00\x01" "a"),
    /* SUBACK */
    TWIN("SUBACK code 3", "\x90\x03\x00\x01\x03", "\x90\x03\x00\x01\x02"),
    TWIN("SUBACK code 0x81", "\x90\x03\x00\x01\x81", "\x90\x03\x00\x01\x80"),
    TWIN("SUBACK without codes", "\x90\x02\x00\x01", "\x90\x03\x00\x01\x00"),
    TWIN("SUBACK 17 codes", "\x90\x13\x00\x01" C16 "\x00", "\x90\x12\x00\x01" C16),
    /* fixed-size packets */
    TWIN("CONNACK length 3", "\x20\x03\x00\x00\x00", "\x20\x02\x00\x00"),
    TWIN("CONNACK length 1", "\x20\x01\x00", "\x20\x02\x00\x00"),
    TWIN("CONNACK flags byte", "\x20\x02\x02\x00", "\x20\x02\x01\x00"),
    TWIN("PUBACK length 3", "\x40\x03\x00\x01\x00", "\x40\x02\x00\x01"),
    TWIN("PUBACK length 1", "\x40\x01\x00", "\x40\x02\x00\x01"),
    TWIN("PUBREC length 0", "\x50\x00", "\x50\x02\x00\x01"),
    TWIN("PUBREL length 3", "\x62\x03\x00\x01\x00", "\x62\x02\x00\x01"),
    TWIN("PUBCOMP length 4", "\x70\x04\x00\x01\x00\x01", "\x70\x02\x00\x01"),
    TWIN("UNSUBACK length 0", "\xb0\x00", "\xb0\x02\x00\x01"),
    TWIN("PINGREQ length 1", "\xc0\x01\x00", "\xc0\x00"),
    TWIN("PINGRESP length 1", "\xd0\x01\x00", "\xd0\x00"),
    TWIN("DISCONNECT length 1", "\xe0\x01\x00", "\xe0\x00"),
};
#define NTWINS (sizeof twins / sizeof twins[0])

static void malformed_rules(void **state)
{
    for (size_t i = 0; i < NTWINS; i++) {
        const struct twin *t = &twins[i];
        struct mqtt_packet pkt;
        size_t used = 99;
        int rc = mqtt_decode(t->good, t->good_len, MAXP, &pkt, &used);
        if (rc != ERR_OK || used != t->good_len)
            fail_msg("%s: valid twin gave %d (consumed %zu of %zu)", t->rule, rc, used, t->good_len);
        rc = mqtt_decode(t->bad, t->bad_len, MAXP, &pkt, &used);
        if (rc != ERR_MALFORMED || used != 0)
            fail_msg("%s: gave %d, want ERR_MALFORMED", t->rule, rc);
    }
}

/* ---- truncation, size caps, back-to-back packets --------------------------------------------------------- */

static void need_more_at_every_prefix(void **state)
{
    struct mqtt_packet pkt;
    size_t used;
    for (size_t v = 0; v < NVECTORS; v++) {
        for (size_t n = 0; n < vectors[v].len; n++) {
            if (mqtt_decode(vectors[v].p, n, MAXP, &pkt, &used) != ERR_NEED_MORE)
                fail_msg("%s: prefix %zu is not NEED_MORE", vectors[v].name, n);
            /* the packet's length, once its fixed header is whole (session.c reserves room for it) */
            if (used != 0 && used != vectors[v].len)
                fail_msg("%s: prefix %zu announces %zu bytes, not %zu", vectors[v].name, n, used, vectors[v].len);
        }
    }
    for (size_t i = 0; i < NTWINS; i++) {
        for (size_t n = 0; n < twins[i].good_len; n++) {
            if (mqtt_decode(twins[i].good, n, MAXP, &pkt, &used) != ERR_NEED_MORE)
                fail_msg("%s (valid twin): prefix %zu is not NEED_MORE", twins[i].rule, n);
        }
    }
}

static void too_big(void **state)
{
    struct mqtt_packet pkt;
    size_t used;
    /* v_connect is 273 bytes: 1 + 2 (varint) + 270 */
    assert_int_equal(mqtt_decode(LIT(v_connect), 273, &pkt, &used), ERR_OK);
    assert_int_equal(mqtt_decode(LIT(v_connect), 272, &pkt, &used), ERR_TOO_BIG);
    for (size_t n = 0; n < 3; n++) /* decided as soon as the fixed header is complete */
        assert_int_equal(mqtt_decode(v_connect, n, 272, &pkt, &used), ERR_NEED_MORE);
    assert_int_equal(mqtt_decode(v_connect, 3, 272, &pkt, &used), ERR_TOO_BIG);
    assert_int_equal(mqtt_decode(v_connect, 3, 273, &pkt, &used), ERR_NEED_MORE);
    assert_int_equal(used, 273);
    assert_int_equal(mqtt_decode(v_connect, 2, 273, &pkt, &used), ERR_NEED_MORE);
    assert_int_equal(used, 0); /* the remaining length is not whole yet */
    /* the default cap: one byte over 256 KiB + 4 KiB */
    const uint8_t big[] = {0x30, 0x80 | 0x7D, 0x80 | 0x1F, 0x10}; /* 0x7D + 0x1F*128 + 0x10*16384 = 266237 */
    assert_int_equal(1 + 3 + 266237, MAXP + 1);
    assert_int_equal(mqtt_decode(big, sizeof big, MAXP, &pkt, &used), ERR_TOO_BIG);
    assert_int_equal(mqtt_decode(big, sizeof big, MAXP + 1, &pkt, &used), ERR_NEED_MORE);
    assert_int_equal(mqtt_decode((const uint8_t *)"\xc0\x00", 2, 1, &pkt, &used), ERR_TOO_BIG);
}

static void back_to_back(void **state)
{
    uint8_t stream[sizeof v_publish_q1 - 1 + sizeof v_subscribe - 1 + 2];
    memcpy(stream, v_publish_q1, sizeof v_publish_q1 - 1);
    memcpy(stream + sizeof v_publish_q1 - 1, v_subscribe, sizeof v_subscribe - 1);
    memcpy(stream + sizeof stream - 2, "\xc0\x00", 2);
    struct mqtt_packet pkt;
    size_t used;
    size_t pos = 0;
    const enum mqtt_type want[] = {MQTT_PUBLISH, MQTT_SUBSCRIBE, MQTT_PINGREQ};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mqtt_decode(stream + pos, sizeof stream - pos, MAXP, &pkt, &used), ERR_OK);
        assert_int_equal(pkt.type, want[i]);
        pos += used;
    }
    assert_int_equal(pos, sizeof stream);
    assert_int_equal(mqtt_decode(stream + pos, 0, MAXP, &pkt, &used), ERR_NEED_MORE);
}

/* ---- remaining-length boundaries -------------------------------------------------------------------------- */

struct varint_case {
    size_t value;
    const char *bytes;
    size_t n;
};

static const struct varint_case varints[] = {
    {127, "\x7f", 1},           {128, "\x80\x01", 2},         {16383, "\xff\x7f", 2},
    {16384, "\x80\x80\x01", 3}, {2097151, "\xff\xff\x7f", 3}, {2097152, "\x80\x80\x80\x01", 4},
    {268435455, "\xff\xff\xff\x7f", 4},
};

static void varint_decode_boundaries(void **state)
{
    struct mqtt_packet pkt;
    size_t used;
    for (size_t i = 0; i < sizeof varints / sizeof varints[0]; i++) {
        uint8_t hdr[5] = {0x30};
        memcpy(hdr + 1, varints[i].bytes, varints[i].n);
        size_t total = 1 + varints[i].n + varints[i].value;
        assert_int_equal(mqtt_decode(hdr, 1 + varints[i].n, total, &pkt, &used), ERR_NEED_MORE);
        assert_int_equal(mqtt_decode(hdr, 1 + varints[i].n, total - 1, &pkt, &used), ERR_TOO_BIG);
    }
}

/* Encodes a QoS 0 PUBLISH with topic "t" whose remaining length is rem, checks the header bytes, decodes it. */
static void publish_of_remaining(size_t rem, const struct varint_case *vc, const uint8_t *zeros)
{
    struct mqtt_publish p = {.topic = BYTES("t"), .payload = {zeros, rem - 3}};
    size_t total = 1 + vc->n + rem;
    struct buf b;
    buf_init(&b, total);
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_OK);
    assert_int_equal(b.len, total);
    assert_int_equal(b.data[0], 0x30);
    assert_memory_equal(b.data + 1, vc->bytes, vc->n);
    struct mqtt_packet pkt;
    size_t used;
    assert_int_equal(mqtt_decode(b.data, b.len, total, &pkt, &used), ERR_OK);
    assert_int_equal(used, total);
    assert_int_equal(pkt.u.publish.payload.len, rem - 3);
    buf_cleanup(&b);
}

static void varint_encode_boundaries(void **state)
{
    size_t src_len = 268435456; /* zero pages, never written: cheap to map */
    uint8_t *zeros = mmap(NULL, src_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(zeros != MAP_FAILED);
    for (size_t i = 0; i < sizeof varints / sizeof varints[0]; i++)
        publish_of_remaining(varints[i].value, &varints[i], zeros);
    /* one past the largest remaining length: refused before anything is reserved or read */
    struct buf b;
    buf_init(&b, SIZE_MAX / 2); /* not SIZE_MAX: buf_reserve computes max + 1 */
    struct mqtt_publish p = {.topic = BYTES("t"), .payload = {zeros, 268435456 - 3}};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_BIG);
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    munmap(zeros, src_len);
}

/* ---- encoder failures leave the buffer as it was ---------------------------------------------------------- */

static void buf_pre(struct buf *b, size_t max)
{
    buf_init(b, max);
    assert_int_equal(buf_append(b, "pre", 3), ERR_OK);
}

static void assert_unchanged(const struct buf *b)
{
    assert_int_equal(b->len, 3);
    assert_memory_equal(b->data, "pre", 3);
}

static void encoders_fail_cleanly(void **state)
{
    static uint8_t huge[65536];
    memset(huge, 'x', sizeof huge);
    struct mqtt_bytes h = {huge, sizeof huge};
    struct buf b;
    buf_pre(&b, 6); /* room for 3 more bytes */

    struct mqtt_publish p = {.topic = BYTES("t"), .payload = BYTES("0123")};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_BIG);
    assert_unchanged(&b);
    assert_int_equal(mqtt_encode_connack(&b, false, 0), ERR_TOO_BIG);
    assert_unchanged(&b);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 1), ERR_TOO_BIG);
    assert_unchanged(&b);
    const uint8_t code = 0;
    assert_int_equal(mqtt_encode_suback(&b, 1, &code, 1), ERR_TOO_BIG);
    assert_unchanged(&b);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_PINGREQ), ERR_OK); /* 2 bytes fit */
    assert_memory_equal(b.data, "pre\xc0\x00", 5);
    buf_cleanup(&b);

    buf_pre(&b, SIZE_MAX / 2); /* from here only the 65535-byte field limit can fail */
    p.topic = h;
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_BIG);
    assert_unchanged(&b);
    struct mqtt_subscribe s = {.packet_id = 1, .count = 2, .filters = {BYTES("a"), h}};
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_TOO_BIG);
    assert_int_equal(mqtt_encode_unsubscribe(&b, &s), ERR_TOO_BIG);
    assert_unchanged(&b);
    struct mqtt_bytes *fields[] = {NULL, NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < 5; i++) {
        struct mqtt_connect c = {.client_id = BYTES("c"), .has_will = true, .will_topic = BYTES("t"),
                                 .has_username = true, .has_password = true};
        fields[0] = &c.client_id;
        fields[1] = &c.will_topic;
        fields[2] = &c.will_message;
        fields[3] = &c.username;
        fields[4] = &c.password;
        *fields[i] = h;
        assert_int_equal(mqtt_encode_connect(&b, &c), ERR_TOO_BIG);
        assert_unchanged(&b);
        h.len = 65535; /* the largest field is fine */
        *fields[i] = h;
        assert_int_equal(mqtt_encode_connect(&b, &c), ERR_OK);
        b.len = 3;
        h.len = 65536;
    }
    buf_cleanup(&b);
}

static void encoders_refuse_invalid(void **state)
{
    struct buf b;
    buf_init(&b, 1024);
    struct mqtt_publish p = {.topic = BYTES("t"), .qos = 3, .packet_id = 1};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_INVALID);
    p.qos = 1;
    p.packet_id = 0;
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_INVALID);
    struct mqtt_subscribe s = {.packet_id = 1, .count = 0, .filters = {BYTES("a")}};
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_INVALID);
    assert_int_equal(mqtt_encode_unsubscribe(&b, &s), ERR_INVALID);
    s.count = MQTT_MAX_FILTERS + 1;
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_INVALID);
    s.count = 1;
    s.qos[0] = 3;
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_INVALID);
    assert_int_equal(mqtt_encode_unsubscribe(&b, &s), ERR_OK); /* qos unused */
    b.len = 0;
    s.qos[0] = 0;
    s.packet_id = 0;
    assert_int_equal(mqtt_encode_subscribe(&b, &s), ERR_INVALID);
    const uint8_t codes[MQTT_MAX_FILTERS + 1] = {3};
    assert_int_equal(mqtt_encode_suback(&b, 1, codes, 1), ERR_INVALID);
    assert_int_equal(mqtt_encode_suback(&b, 1, codes + 1, 0), ERR_INVALID);
    assert_int_equal(mqtt_encode_suback(&b, 1, codes + 1, MQTT_MAX_FILTERS), ERR_OK);
    b.len = 0;
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBLISH, 1), ERR_INVALID);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PINGREQ, 1), ERR_INVALID);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_CONNECT), ERR_INVALID);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_PUBACK), ERR_INVALID);
    struct mqtt_connect c = {.has_password = true};
    assert_int_equal(mqtt_encode_connect(&b, &c), ERR_INVALID);
    struct mqtt_connect w = {.has_will = true, .will_qos = 3, .will_topic = BYTES("t")};
    assert_int_equal(mqtt_encode_connect(&b, &w), ERR_INVALID);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static void bytes_eq(void **state)
{
    assert_true(mqtt_bytes_eq((struct mqtt_bytes){NULL, 0}, ""));
    assert_true(mqtt_bytes_eq(BYTES("MQTT"), "MQTT"));
    assert_false(mqtt_bytes_eq(BYTES("MQTT"), "MQT"));
    assert_false(mqtt_bytes_eq(BYTES("MQT"), "MQTT"));
    assert_false(mqtt_bytes_eq(BYTES("MQTX"), "MQTT"));
    assert_false(mqtt_bytes_eq(BYTES("MQ\0T"), "MQ"));
}

/* ---- guard page: every vector and every prefix, ending right before a PROT_NONE page ---------------------- */

struct guard {
    uint8_t *map;
    size_t page;
};

static int guard_setup(void **state)
{
    static struct guard g;
    g.page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, 2 * g.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    g.map = m;
    if (mprotect(g.map + g.page, g.page, PROT_NONE) != 0)
        return -1;
    *state = &g;
    return 0;
}

static int guard_teardown(void **state)
{
    struct guard *g = *state;
    munmap(g->map, 2 * g->page);
    return 0;
}

/* Decodes every prefix of p from the end of the guarded page; results must match the unguarded decode. */
static void guarded_prefixes(const struct guard *g, const uint8_t *p, size_t len)
{
    assert_true(len <= g->page);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *copy = g->map + g->page - n;
        memcpy(copy, p, n);
        struct mqtt_packet a, b;
        size_t ua, ub;
        int rc = mqtt_decode(copy, n, MAXP, &a, &ua);
        assert_int_equal(rc, mqtt_decode(p, n, MAXP, &b, &ub));
        assert_int_equal(ua, ub);
    }
}

static void guard_page_overreads(void **state)
{
    const struct guard *g = *state;
    for (size_t v = 0; v < NVECTORS; v++)
        guarded_prefixes(g, vectors[v].p, vectors[v].len);
    for (size_t i = 0; i < NTWINS; i++) {
        guarded_prefixes(g, twins[i].good, twins[i].good_len);
        guarded_prefixes(g, twins[i].bad, twins[i].bad_len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(azure_connect_vector),
        cmocka_unit_test(publish_vectors),
        cmocka_unit_test(publish_head_is_whole_packet_prefix),
        cmocka_unit_test(subscribe_vector),
        cmocka_unit_test(roundtrip_connect),
        cmocka_unit_test(roundtrip_publish),
        cmocka_unit_test(roundtrip_subscriptions),
        cmocka_unit_test(roundtrip_small),
        cmocka_unit_test(malformed_rules),
        cmocka_unit_test(need_more_at_every_prefix),
        cmocka_unit_test(too_big),
        cmocka_unit_test(back_to_back),
        cmocka_unit_test(varint_decode_boundaries),
        cmocka_unit_test(varint_encode_boundaries),
        cmocka_unit_test(encoders_fail_cleanly),
        cmocka_unit_test(encoders_refuse_invalid),
        cmocka_unit_test(bytes_eq),
        cmocka_unit_test_setup_teardown(guard_page_overreads, guard_setup, guard_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
