/* mqtt.h -- MQTT 3.1.1 packet codec. Pure: no sockets, no OpenSSL, no globals; decoding does not allocate
 * and decoded fields point into the caller's buffer; encoders append whole packets to a struct buf.
 * Decodes both directions (the emulator's sessions and the test/bench clients use the same code).
 * Tests: tests/unit/test_mqtt.c; fuzz: tests/fuzz/fuzz_mqtt.c. */
#ifndef IOTHUB_MQTT_H
#define IOTHUB_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* IoT Hub's limit is 256 KiB of telemetry; this allows that plus topic and header room. */
#define MQTT_MAX_PACKET_DEFAULT (256u * 1024u + 4096u)
/* Topic filters accepted in one SUBSCRIBE/UNSUBSCRIBE (the hub allows few subscriptions per device). */
#define MQTT_MAX_FILTERS 16

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
};

struct mqtt_bytes {
    const uint8_t *p;
    size_t len;
};

struct mqtt_connect {
    struct mqtt_bytes protocol_name; /* "MQTT" for 3.1.1 ("MQIsdp" for 3.1 decodes too; the session refuses it) */
    uint8_t level;                   /* 4 for 3.1.1 */
    bool clean_session;
    uint16_t keep_alive;
    struct mqtt_bytes client_id;
    bool has_will;
    uint8_t will_qos;
    bool will_retain;
    struct mqtt_bytes will_topic;
    struct mqtt_bytes will_message;
    bool has_username;
    struct mqtt_bytes username;
    bool has_password;
    struct mqtt_bytes password;
};

struct mqtt_connack {
    bool session_present;
    uint8_t return_code;
};

struct mqtt_publish {
    uint8_t qos; /* 0, 1 or 2: the codec accepts 2 (the session decides what to do with it) */
    bool dup;
    bool retain;
    struct mqtt_bytes topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    struct mqtt_bytes payload;
};

/* SUBSCRIBE (with qos), UNSUBSCRIBE (qos unused) and SUBACK (codes in qos) share this shape. */
struct mqtt_subscribe {
    uint16_t packet_id;
    size_t count;
    struct mqtt_bytes filters[MQTT_MAX_FILTERS];
    uint8_t qos[MQTT_MAX_FILTERS];
};

struct mqtt_packet {
    enum mqtt_type type;
    uint8_t flags; /* low nibble of the fixed header */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_subscribe subscribe; /* SUBSCRIBE, UNSUBSCRIBE, SUBACK */
        uint16_t packet_id;              /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
    } u;
};

/* Decodes one packet from buf[0..len).
 * ERR_OK: *out filled, *consumed = bytes of that packet. ERR_NEED_MORE: nothing decided yet (the fixed
 * header so far is valid and under the cap); *consumed is then the whole packet's length once the fixed
 * header is complete, 0 before. ERR_TOO_BIG: the announced length is over max_packet (decided
 * from the fixed header alone). ERR_MALFORMED: anything else — bad remaining length (more than 4 bytes),
 * reserved flag bits wrong for the type, a field running past the packet, strings that are not valid UTF-8
 * or contain U+0000, a PUBLISH topic with '+' or '#', QoS 3, a zero packet id where one is required,
 * SUBSCRIBE with no filters or more than MQTT_MAX_FILTERS, trailing bytes. A remaining length that is wrong
 * for a fixed-size type (PUBACK, PINGREQ...) is MALFORMED from the fixed header too. CONNECT accepts only
 * ("MQTT", 4) and ("MQIsdp", 3); a will topic follows the PUBLISH topic rules. */
int mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, struct mqtt_packet *out, size_t *consumed);

/* Encoders append one whole packet to out. Return ERR_OK, ERR_TOO_BIG (out's cap, or a field over 65535
 * bytes) or ERR_NOMEM; on failure out is left as it was. They also return ERR_INVALID for arguments the
 * decoder would refuse and that are cheap to check (QoS > 2, a zero packet id where one is required, a filter
 * or code count of 0 or over MQTT_MAX_FILTERS, a SUBACK code not 0/1/2/0x80, a password without a user name,
 * a type the function does not encode); string contents (UTF-8, wildcards) are the caller's business.
 * mqtt_encode_connect sends "MQTT" when protocol_name is empty and level 4 when level is 0. */
int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c);
int mqtt_encode_connack(struct buf *out, bool session_present, uint8_t return_code);
int mqtt_encode_publish(struct buf *out, const struct mqtt_publish *p);
/* The same PUBLISH without its payload's bytes (the remaining length counts them): the head to send before
 * p->payload, so a large payload goes to the connection without being joined to its head first. */
int mqtt_encode_publish_head(struct buf *out, const struct mqtt_publish *p);
/* type is MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP or MQTT_UNSUBACK. */
int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t packet_id);
int mqtt_encode_subscribe(struct buf *out, const struct mqtt_subscribe *s);
/* UNSUBSCRIBE from the same shape (qos unused). */
int mqtt_encode_unsubscribe(struct buf *out, const struct mqtt_subscribe *s);
int mqtt_encode_suback(struct buf *out, uint16_t packet_id, const uint8_t *codes, size_t count);
/* type is MQTT_PINGREQ, MQTT_PINGRESP or MQTT_DISCONNECT. */
int mqtt_encode_empty(struct buf *out, enum mqtt_type type);

/* True when b equals the NUL-terminated s. */
bool mqtt_bytes_eq(struct mqtt_bytes b, const char *s);

#endif
