/* twin.h -- one identity's twin as IoT Hub keeps it (iothub-amqp.md §B.4.2, iothub-protocol.md §3): tags,
 * desired and reported properties with their $version and $metadata ($lastUpdated on every object and value,
 * $lastUpdatedVersion in desired), the twin version and etag; merge-patch (null deletes) and replace; the
 * hub's limits and key rules with its error codes. Pure: no I/O, no clock (callers pass the time), no hub
 * state. Persistence is one JSON text per twin (twin_save / twin_load) that a store keeps as it is.
 * Tests: tests/unit/test_twin.c. */
#ifndef IOTHUB_TWIN_H
#define IOTHUB_TWIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The hub's limits (iot-hub-devguide-device-twins: "Tags, properties, and device twin size"). Sizes are of
 * the section's compact JSON, without $metadata and $version. */
#define TWIN_TAGS_MAX (8u * 1024u)
#define TWIN_DESIRED_MAX (32u * 1024u)
#define TWIN_REPORTED_MAX (32u * 1024u)
#define TWIN_MAX_DEPTH 10          /* objects nested below a section's root */
#define TWIN_KEY_MAX 1024          /* bytes of UTF-8 in one key */
#define TWIN_STRING_MAX 4096       /* bytes of UTF-8 in one string value */
#define TWIN_INT_MAX 4503599627370495LL  /* 2^52 - 1 */
#define TWIN_INT_MIN (-4503599627370496LL) /* -2^52 */

/* The hub's error codes a twin change can fail with (HTTP status = code / 1000). */
#define TWIN_ERR_ARGUMENT_INVALID 400004      /* ArgumentInvalid: a rule below is broken */
#define TWIN_ERR_MAX_PROPERTIES 403100        /* DeviceModelMaxPropertiesExceeded: a section is too large */

struct twin;
struct identity;

/* Why a change was refused: the hub's code and its message. */
struct twin_error {
    int code;
    char message[256];
};

/* A fresh twin: version 1, no tags, desired and reported empty at $version 1. NULL on ERR_NOMEM. */
struct twin *twin_new(void);
/* Accepts NULL. */
void twin_free(struct twin *t);

/* ---- persistence: one JSON text per twin ---- */

/* The twin's persisted form (its own shape, not the REST document). malloc'd, caller frees; NULL on ERR_NOMEM. */
char *twin_save(const struct twin *t);
/* Rebuilds a twin from twin_save's text. Returns ERR_OK (*out set), ERR_MALFORMED (not such a text) or
 * ERR_NOMEM. */
int twin_load(const char *text, size_t len, struct twin **out);

/* ---- the service side (REST) ---- */

enum twin_mode {
    TWIN_MERGE,   /* PATCH /twins/{id}: tags and desired merge (RFC 7386: objects merge, null deletes) */
    TWIN_REPLACE, /* PUT /twins/{id}: tags and desired are replaced by the body's (absent = empty) */
};

/* Applies a service update: body is the twin JSON the SDKs send ({"tags":{...},"properties":{"desired":
 * {...}}}; other members such as deviceId or etag, $metadata and $version in desired, and
 * properties.reported (the device's, read-only here) are ignored, so a GET result can be sent back). Nothing
 * changes on failure. On ERR_OK, *push (may be NULL) is the
 * desired patch to send to the connected device ("$version" included) or NULL when desired did not change;
 * caller json_decref's it. Returns ERR_OK, ERR_INVALID (err filled) or ERR_NOMEM. now_ms: wall clock. */
int twin_update(struct twin *t, const json_t *body, enum twin_mode mode, int64_t now_ms, json_t **push,
                struct twin_error *err);
/* True when if_match is absent (NULL or ""), "*" (quoted or not) or the twin's etag (quoted or not). */
bool twin_etag_matches(const struct twin *t, const char *if_match);
/* The quoted etag ("\"AAAAAAAAAAE=\"": base64 of the twin version as 8 big-endian bytes) into out. */
void twin_etag(const struct twin *t, char *out, size_t outlen);
/* The twin document GET /twins/{id} answers: deviceId (and moduleId), etag, deviceEtag, version, the
 * identity's status, statusReason, statusUpdateTime, connectionState, lastActivityTime,
 * cloudToDeviceMessageCount, authenticationType, x509Thumbprint, then tags and properties with $metadata and
 * $version. New reference; NULL on ERR_NOMEM. */
json_t *twin_document(const struct twin *t, const struct identity *id);

/* ---- the device side (MQTT) ---- */

/* What a device's twin GET answers: {"desired":{...,"$version":n},"reported":{...,"$version":m}} (no
 * $metadata, as the hub). New reference; NULL on ERR_NOMEM. */
json_t *twin_properties(const struct twin *t);
/* Merges a device's reported-properties patch (a JSON object; null deletes; "$version" or any other key
 * breaking the rules is refused, as the hub does). Nothing changes on failure. Returns ERR_OK, ERR_INVALID (err filled) or ERR_NOMEM. */
int twin_report(struct twin *t, const json_t *patch, int64_t now_ms, struct twin_error *err);

int64_t twin_version(const struct twin *t);
int64_t twin_desired_version(const struct twin *t);
int64_t twin_reported_version(const struct twin *t);

#endif
