/* fuzz_mqtt.c -- libFuzzer harness for emulator/mqtt (the MQTT 3.1.1 codec). Decodes packets back to back
 * until the input runs out or is refused, as a session's read loop does; every decoded packet is re-encoded,
 * decoded again and compared field by field (abort on any difference). Seeds: tests/fuzz/corpus/fuzz_mqtt/.
 * Unit tests: tests/unit/test_mqtt.c. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "mqtt.h"

static bool bytes_same(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool connect_same(const struct mqtt_connect *a, const struct mqtt_connect *b)
{
    return bytes_same(a->protocol_name, b->protocol_name) && a->level == b->level &&
           a->clean_session == b->clean_session && a->keep_alive == b->keep_alive &&
           bytes_same(a->client_id, b->client_id) && a->has_will == b->has_will && a->will_qos == b->will_qos &&
           a->will_retain == b->will_retain && bytes_same(a->will_topic, b->will_topic) &&
           bytes_same(a->will_message, b->will_message) && a->has_username == b->has_username &&
           bytes_same(a->username, b->username) && a->has_password == b->has_password &&
           bytes_same(a->password, b->password);
}

static bool publish_same(const struct mqtt_publish *a, const struct mqtt_publish *b)
{
    return a->qos == b->qos && a->dup == b->dup && a->retain == b->retain && bytes_same(a->topic, b->topic) &&
           a->packet_id == b->packet_id && bytes_same(a->payload, b->payload);
}

static bool subscribe_same(const struct mqtt_subscribe *a, const struct mqtt_subscribe *b)
{
    if (a->packet_id != b->packet_id || a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        if (!bytes_same(a->filters[i], b->filters[i]) || a->qos[i] != b->qos[i])
            return false;
    }
    return true;
}

static bool packet_same(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
    if (a->type != b->type || a->flags != b->flags)
        return false;
    switch (a->type) {
    case MQTT_CONNECT:
        return connect_same(&a->u.connect, &b->u.connect);
    case MQTT_CONNACK:
        return a->u.connack.session_present == b->u.connack.session_present &&
               a->u.connack.return_code == b->u.connack.return_code;
    case MQTT_PUBLISH:
        return publish_same(&a->u.publish, &b->u.publish);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
    case MQTT_SUBACK:
        return subscribe_same(&a->u.subscribe, &b->u.subscribe);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return a->u.packet_id == b->u.packet_id;
    default:
        return true;
    }
}

static int encode(struct buf *out, const struct mqtt_packet *p)
{
    switch (p->type) {
    case MQTT_CONNECT:
        return mqtt_encode_connect(out, &p->u.connect);
    case MQTT_CONNACK:
        return mqtt_encode_connack(out, p->u.connack.session_present, p->u.connack.return_code);
    case MQTT_PUBLISH:
        return mqtt_encode_publish(out, &p->u.publish);
    case MQTT_SUBSCRIBE:
        return mqtt_encode_subscribe(out, &p->u.subscribe);
    case MQTT_UNSUBSCRIBE:
        return mqtt_encode_unsubscribe(out, &p->u.subscribe);
    case MQTT_SUBACK:
        return mqtt_encode_suback(out, p->u.subscribe.packet_id, p->u.subscribe.qos, p->u.subscribe.count);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        return mqtt_encode_empty(out, p->type);
    default:
        return mqtt_encode_ack(out, p->type, p->u.packet_id);
    }
}

/* Whatever decoded must encode, decode again to the same fields, and take exactly the encoded bytes. */
static void check_roundtrip(const struct mqtt_packet *pkt, size_t max_packet)
{
    struct buf b;
    buf_init(&b, max_packet);
    if (encode(&b, pkt) != ERR_OK)
        abort();
    struct mqtt_packet again;
    size_t used = 0;
    if (mqtt_decode(b.data, b.len, max_packet, &again, &used) != ERR_OK || used != b.len)
        abort();
    if (!packet_same(pkt, &again))
        abort();
    buf_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks a small or the default cap, so TOO_BIG is reached without huge inputs. */
    size_t max_packet = (size && (data[0] & 1)) ? 512 : MQTT_MAX_PACKET_DEFAULT;
    size_t pos = 0;
    for (;;) {
        struct mqtt_packet pkt;
        size_t used = 0;
        int rc = mqtt_decode(data + pos, size - pos, max_packet, &pkt, &used);
        if (rc != ERR_OK) {
            if (rc != ERR_NEED_MORE && rc != ERR_MALFORMED && rc != ERR_TOO_BIG)
                abort();
            /* NEED_MORE may announce the packet's whole length: more than is here, never over the cap */
            if (rc == ERR_NEED_MORE ? used != 0 && (used <= size - pos || used > max_packet) : used != 0)
                abort();
            break;
        }
        if (used < 2 || used > size - pos)
            abort();
        check_roundtrip(&pkt, max_packet);
        pos += used;
    }
    return 0;
}
