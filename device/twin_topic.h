/* twin_topic.h -- device twin topics on the device side (iothub-protocol.md §3): parse a desired-properties
 * push "$iothub/twin/PATCH/properties/desired/?$version={n}" and a twin response
 * "$iothub/twin/res/{status}/?$rid={rid}[&$version={n}]", build the reported-properties PATCH topic. Pure: no
 * I/O, no globals. Internal to device/. Tests: tests/unit/test_device_twin_topic.c. */
#ifndef IOTHUB_TWIN_TOPIC_H
#define IOTHUB_TWIN_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TWIN_TOPIC_RESPONSES "$iothub/twin/res/#"
#define TWIN_TOPIC_DESIRED "$iothub/twin/PATCH/properties/desired/#"

/* Parses topic[0..len) as a desired push; *version is its $version (-1 when the topic has none). Returns
 * ERR_OK or ERR_MALFORMED (another topic, or a $version that is not a decimal number). */
int twin_topic_parse_desired(const char *topic, size_t len, int64_t *version);

/* A parsed twin response; rid points into the topic and is not NUL-terminated. version is -1 when absent. */
struct twin_topic_response {
    int status;
    const char *rid;
    size_t rid_len;
    int64_t version;
};
/* Parses topic[0..len) as a twin response. Returns ERR_OK or ERR_MALFORMED (out zeroed, version -1). */
int twin_topic_parse_response(const char *topic, size_t len, struct twin_topic_response *out);

/* Appends "$iothub/twin/PATCH/properties/reported/?$rid={rid}" and a NUL (not counted) to out. rid must be
 * non-empty printable ASCII without '&', '/', '#', '+'. Returns ERR_OK, ERR_INVALID, ERR_NOMEM, ERR_TOO_BIG. */
int twin_topic_reported(struct buf *out, const char *rid);

#endif
