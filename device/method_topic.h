/* method_topic.h -- direct-method topics on the device side (iothub-protocol.md §2): parse a request topic
 * "$iothub/methods/POST/{name}/?$rid={rid}" and build the response topic
 * "$iothub/methods/res/{status}/?$rid={rid}". Pure: no I/O, no globals; parsed fields are views into the
 * caller's text. Internal to device/ (not part of the public device_client.h).
 * Tests: tests/unit/test_device_method_topic.c. */
#ifndef IOTHUB_METHOD_TOPIC_H
#define IOTHUB_METHOD_TOPIC_H

#include <stddef.h>

#include "buf.h"

#define METHOD_TOPIC_SUBSCRIBE "$iothub/methods/POST/#"
#define METHOD_TOPIC_MAX_NAME 256 /* longer method names are refused (the hub's own names are short) */
#define METHOD_TOPIC_MAX_RID 128  /* the hub's rids are short hex counters */

/* A parsed request: name and rid point into the topic text and are not NUL-terminated. */
struct method_topic_request {
    const char *name;
    size_t name_len;
    const char *rid;
    size_t rid_len;
};

/* Parses topic[0..len). Accepts "$iothub/methods/POST/{name}/?$rid={rid}" and, like the Node SDK, the
 * variant without the '/' before '?'. The rid ends at the end of the topic or at a '&' (further query
 * parameters are ignored). name must be non-empty printable ASCII without '/', '?', '#', '+'; rid must be
 * non-empty printable ASCII without '/', '#', '+'. Returns ERR_OK (out filled) or ERR_MALFORMED (out
 * zeroed). */
int method_topic_parse(const char *topic, size_t len, struct method_topic_request *out);

/* Appends "$iothub/methods/res/{status}/?$rid={rid}" and a NUL to out (the NUL is not counted in out->len).
 * The rid is echoed verbatim and must pass the rules above. Returns ERR_OK, ERR_INVALID (bad rid),
 * ERR_NOMEM or ERR_TOO_BIG (out's cap). */
int method_topic_response(struct buf *out, int status, const char *rid, size_t rid_len);

#endif
