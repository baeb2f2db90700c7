/* c2d_topic.h -- the cloud-to-device topic on the device side (iothub-protocol.md §3): parse a PUBLISH on
 * "devices/{id}/messages/devicebound/{property bag}" (the bag "k=v&k2&..." URL-encoded, system properties
 * $.mid $.cid $.to $.uid $.ct $.ce $.exp among them) into decoded key/value pairs. Pure: no I/O, no globals.
 * Internal to device/. Tests: tests/unit/test_device_c2d_topic.c; fuzz: tests/fuzz/fuzz_device_c2d_topic.c. */
#ifndef IOTHUB_C2D_TOPIC_H
#define IOTHUB_C2D_TOPIC_H

#include <stddef.h>

#define C2D_TOPIC_MAX_PROPS 64

/* The property bag, decoded: each key and value a malloc'd NUL-terminated string (a key without '=' has the
 * value ""). Free with c2d_topic_props_cleanup. */
struct c2d_topic_props {
    char *keys[C2D_TOPIC_MAX_PROPS];
    char *values[C2D_TOPIC_MAX_PROPS];
    size_t n;
};

/* Parses topic[0..len) as a C2D message for device_id (the topic's id must equal it). ERR_OK with *out
 * filled (call c2d_topic_props_cleanup), ERR_MALFORMED (another topic, a bad %-escape, an empty key, more
 * than C2D_TOPIC_MAX_PROPS properties; *out empty) or ERR_NOMEM. */
int c2d_topic_parse(const char *topic, size_t len, const char *device_id, struct c2d_topic_props *out);
void c2d_topic_props_cleanup(struct c2d_topic_props *p);

#endif
