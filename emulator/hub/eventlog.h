/* eventlog.h -- the hub's event log (design.md §6 "Telemetry is an event log"): every device-to-cloud
 * message is appended to one of N partitions (chosen by a stable hash of the device id), gets that
 * partition's next sequence number (a new partition starts at 0, as Event Hubs does), an offset (the
 * partition's byte position before it, shown as a decimal string) and an enqueued time. Retention drops the
 * oldest events (all partitions together) past a count, a byte total or an age. Consumers register a
 * callback that is told after each append; readers look events up by sequence number, offset or time.
 * Consumer groups are a list of names ($Default always). Protocol-agnostic, single-threaded, memory only
 * (README "Event Hub-compatible endpoint" says why). Feeds the AMQP Event Hub endpoint (amqp/eventhub.c) and
 * GET /emulator/telemetry (hub/telemetry.c). Tests: tests/unit/test_eventlog.c. */
#ifndef IOTHUB_EVENTLOG_H
#define IOTHUB_EVENTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENTLOG_MAX_PARTITIONS 32   /* Event Hubs' standard tier allows 1 to 32 */
#define EVENTLOG_MAX_GROUPS 20       /* consumer groups besides none; the standard tier's limit */
#define EVENTLOG_MAX_GROUP_NAME 50   /* Event Hubs: up to 50 characters */
#define EVENTLOG_DEFAULT_GROUP "$Default"

struct eventlog;

/* One application or system property of a message, as the device sent it (decoded text). */
struct eventlog_prop {
    char *key;
    char *value; /* NULL: the key had no value */
};

/* One retained event. Everything is owned by the log and valid until the event is dropped (retention or
 * eventlog_clear): do not keep pointers across a return to the loop. */
struct eventlog_event {
    int partition;
    int64_t seq;         /* per partition, from 0 */
    int64_t offset;      /* per partition: bytes before this event */
    int64_t enqueued_ms; /* wall clock, ms since the epoch; never decreasing within a partition */
    uint64_t id;         /* global append order, from 1 */
    char *device_id;
    char *module_id;        /* NULL for a device */
    char *auth_scope;       /* "device" or "module" (iothub-connection-auth-method scope) */
    char *auth_type;        /* "sas", "symkey" or "x509" */
    char *generation_id;    /* the identity's generationId ("" when unknown) */
    char *message_id, *correlation_id, *content_type, *content_encoding, *user_id; /* $.mid ... (NULL: absent) */
    struct eventlog_prop *props; /* the other properties, in the order sent */
    size_t n_props;
    uint8_t *body;
    size_t len;
    size_t size; /* what retention counts: body + properties + a fixed overhead */
    struct eventlog_event *next; /* next in global append order */
};

/* What an append carries (copied). */
struct eventlog_input {
    const char *device_id;
    const char *module_id;     /* NULL or "" for a device */
    const char *auth_type;     /* NULL: "sas" */
    const char *generation_id; /* NULL: "" */
    const char *prop_bag;      /* the MQTT topic's property bag after .../messages/events/: URL-encoded
                                  k=v&k2=v2; "$.mid" "$.cid" "$.ct" "$.ce" "$.uid" become the AMQP
                                  properties, the rest application properties. NULL: none */
    const uint8_t *body;
    size_t len;
};

struct eventlog_limits {
    int partitions;     /* 1..EVENTLOG_MAX_PARTITIONS */
    size_t max_events;  /* all partitions together; 0 keeps nothing (events are still numbered) */
    size_t max_bytes;   /* sum of event sizes */
    int64_t max_age_ms; /* 0: no age limit */
};

/* What a partition looks like now (the $management READ "com.microsoft:partition" answer). An empty
 * partition (never written, or everything dropped) has begin_seq = last_seq + 1; one never written reports
 * last_seq -1, last_offset -1, last_ms 0. */
struct eventlog_partition_info {
    int64_t begin_seq;   /* oldest retained event (or the next sequence number when empty) */
    int64_t last_seq;    /* the last event ever appended (-1 if none) */
    int64_t last_offset; /* its offset (-1 if none) */
    int64_t last_ms;     /* its enqueued time (0 if none) */
    bool empty;          /* no retained event */
};

/* Called after every append (the event is retained unless max_events is 0, then ev is NULL). */
typedef void (*eventlog_listener_fn)(void *ctx, int partition, const struct eventlog_event *ev);

/* Returns NULL on ERR_NOMEM or bad limits. created_ms is reported as the hub's created_at. */
struct eventlog *eventlog_new(const struct eventlog_limits *lim, int64_t created_ms);
void eventlog_free(struct eventlog *l);

int eventlog_partitions(const struct eventlog *l);
int64_t eventlog_created_ms(const struct eventlog *l);
/* The partition a device's events go to: FNV-1a (32-bit) of the device id, modulo the partition count. */
int eventlog_partition_of(const struct eventlog *l, const char *device_id);

/* Appends one event at now_ms (raised to the partition's last enqueued time if the clock went back), then
 * applies retention and tells the listeners. *out (may be NULL) is the event or NULL when nothing is kept.
 * A property pair that does not URL-decode is skipped. Returns ERR_OK, ERR_INVALID (no device id: nothing
 * appended) or ERR_NOMEM. */
int eventlog_append(struct eventlog *l, const struct eventlog_input *in, int64_t now_ms,
                    const struct eventlog_event **out);
/* Applies the age limit at now_ms (call it from time to time; appends apply every limit). */
void eventlog_expire(struct eventlog *l, int64_t now_ms);
/* Drops every retained event; sequence numbers and offsets continue. */
void eventlog_clear(struct eventlog *l);

/* Events appended since start, kept or not; events and bytes retained now. */
uint64_t eventlog_total(const struct eventlog *l);
size_t eventlog_count(const struct eventlog *l);
size_t eventlog_bytes(const struct eventlog *l);

void eventlog_partition_info(const struct eventlog *l, int partition, struct eventlog_partition_info *out);
/* The retained event with this sequence number, or NULL. */
const struct eventlog_event *eventlog_get(const struct eventlog *l, int partition, int64_t seq);
/* The sequence number of the first retained event of the partition whose offset is > (inclusive: >=) offset,
 * or the next sequence number when there is none. */
int64_t eventlog_seq_after_offset(const struct eventlog *l, int partition, int64_t offset, bool inclusive);
/* The same for the enqueued time. */
int64_t eventlog_seq_after_time(const struct eventlog *l, int partition, int64_t ms, bool inclusive);
/* The oldest retained event of all partitions (global order; follow ->next), or NULL. */
const struct eventlog_event *eventlog_oldest(const struct eventlog *l);

/* Listeners (at most 64; the AMQP endpoint registers one). Returns ERR_OK or ERR_NOMEM. Removing an unknown
 * pair is a no-op. Safe to call from inside a listener. */
int eventlog_listen(struct eventlog *l, eventlog_listener_fn fn, void *ctx);
void eventlog_unlisten(struct eventlog *l, eventlog_listener_fn fn, void *ctx);

/* Consumer groups: "$Default" always exists and cannot be deleted. Names are 1..50 characters of letters,
 * digits, '.', '_', '-' (and a leading '$' only for $Default), compared case-insensitively.
 * eventlog_group_add returns ERR_OK (also when it exists already: *created false), ERR_INVALID (bad name),
 * ERR_TOO_BIG (EVENTLOG_MAX_GROUPS reached) or ERR_NOMEM. eventlog_group_del returns ERR_OK, ERR_NOT_FOUND
 * or ERR_INVALID ($Default). */
bool eventlog_group_name_ok(const char *name);
int eventlog_group_add(struct eventlog *l, const char *name, bool *created);
int eventlog_group_del(struct eventlog *l, const char *name);
/* The group's canonical name (as created) or NULL when there is none. */
const char *eventlog_group_find(const struct eventlog *l, const char *name);
size_t eventlog_group_count(const struct eventlog *l);
const char *eventlog_group_at(const struct eventlog *l, size_t i);

#endif
