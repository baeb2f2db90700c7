/* telemetry.h -- how device-to-cloud messages enter the hub's event log (eventlog.h) and how
 * GET /emulator/telemetry shows them. One home for telemetry: the log also feeds the Event Hub-compatible
 * endpoint (amqp/eventhub.c). The fronts call telemetry_add with the MQTT topic; this module splits the
 * property bag, looks up the identity's generationId and appends. Single-threaded. */
#ifndef IOTHUB_TELEMETRY_H
#define IOTHUB_TELEMETRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct eventlog;
struct registry;
struct telemetry;

/* Over an existing log (not owned; it must outlive the telemetry). reg (may be NULL) gives generationIds.
 * Returns NULL on ERR_NOMEM. */
struct telemetry *telemetry_new_on(struct eventlog *log, const struct registry *reg);
/* A telemetry with its own one-partition log keeping at most max_messages events and max_bytes (bodies plus
 * properties plus 256 bytes per event), no age limit; max_messages 0 keeps nothing (messages are still
 * counted). For tests and tools. Returns NULL on ERR_NOMEM. */
struct telemetry *telemetry_new(size_t max_messages, size_t max_bytes);
void telemetry_free(struct telemetry *t);
/* telemetry_json lists at most n events (the newest); the default is no limit. */
void telemetry_set_list_limit(struct telemetry *t, size_t n);
/* The log appended to. */
struct eventlog *telemetry_log(struct telemetry *t);

/* Records one message: its identity, the topic's property bag (after .../messages/events/, URL-decoded
 * k=v&k2=v2 pairs; system properties keep their "$." names) and the body. now_s is the wall clock in
 * seconds; the enqueued time gets the current millisecond when the real clock is in that second. Returns
 * ERR_OK or ERR_NOMEM (the message is then only counted). */
int telemetry_add(struct telemetry *t, const char *device_id, const char *module_id, const char *topic,
                  const uint8_t *body, size_t len, int64_t now_s);
/* Messages received since start, kept or not. */
uint64_t telemetry_total(const struct telemetry *t);
/* Forgets the kept messages (the total stays; sequence numbers continue). */
void telemetry_clear(struct telemetry *t);
/* The kept messages, oldest first, at most top of the newest (0 = all), only device_id's when not NULL:
 * [{"deviceId","moduleId"?,"enqueuedTimeUtc","partition","sequenceNumber","offset","properties":{...},
 * "body" (text) or "bodyBase64"}]. New reference, NULL on ERR_NOMEM. */
json_t *telemetry_json(const struct telemetry *t, const char *device_id, size_t top);

#endif
