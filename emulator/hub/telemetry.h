/* telemetry.h -- the bounded in-memory log of device-to-cloud messages, for inspection through
 * GET /emulator/telemetry (the emulator's stand-in for the hub's Event Hub-compatible endpoint). The oldest
 * messages go first when either cap (messages, bytes) is reached. Single-threaded. */
#ifndef IOTHUB_TELEMETRY_H
#define IOTHUB_TELEMETRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct telemetry;

/* max_messages 0 keeps nothing (messages are still counted). Returns NULL on ERR_NOMEM. */
struct telemetry *telemetry_new(size_t max_messages, size_t max_bytes);
void telemetry_free(struct telemetry *t);

/* Records one message: its identity, the topic's property bag (after .../messages/events/, URL-decoded
 * k=v&k2=v2 pairs; system properties keep their "$." names) and the body. Returns ERR_OK or ERR_NOMEM (the
 * message is then only counted). */
int telemetry_add(struct telemetry *t, const char *device_id, const char *module_id, const char *topic,
                  const uint8_t *body, size_t len, int64_t now_s);
/* Messages received since start, kept or not. */
uint64_t telemetry_total(const struct telemetry *t);
/* Forgets the kept messages (the total stays). */
void telemetry_clear(struct telemetry *t);
/* The kept messages, oldest first, at most top of the newest (0 = all), only device_id's when not NULL:
 * [{"deviceId","moduleId"?,"enqueuedTimeUtc","properties":{...},"body" (text) or "bodyBase64"}]. New reference,
 * NULL on ERR_NOMEM. */
json_t *telemetry_json(const struct telemetry *t, const char *device_id, size_t top);

#endif
