/* events.h -- the hub's live event feed for the dashboard (README "Dashboard"): a bounded ring of the most
 * recent hub events (connections, direct-method calls with status and latency, twin changes, C2D queue
 * activity) and a list of subscribers told of each new one. Hub code calls events_note at each event; with a
 * NULL feed (no dashboard) that is a no-op, and with no subscriber it is one small struct copy into the ring,
 * so the hot paths stay cheap. Telemetry is not copied here: the dashboard reads the event log (eventlog.h)
 * directly. Protocol-agnostic, single-threaded, memory only. Tests: tests/unit/test_events.c. */
#ifndef IOTHUB_EVENTS_H
#define IOTHUB_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define EVENTS_RING 512          /* events kept for a page that (re)connects */
#define EVENTS_MAX_SUBSCRIBERS 64
#define EVENTS_IDENTITY_MAX 260  /* "device/module" */
#define EVENTS_TEXT_MAX 128

enum events_kind {
    EVENTS_CONNECTION, /* what: "connected" | "disconnected" */
    EVENTS_METHOD,     /* what: the method name; status: the device's status (outcome "answered") */
    EVENTS_TWIN,       /* what: "desired" (service update) | "reported" (device patch); status: new version */
    EVENTS_C2D,        /* what: "queued" | "delivered" | "completed" | "expired" | "rejected" | "deadlettered"
                          | "purged"; detail: the message id; status: the delivery count */
    EVENTS_KINDS
};

struct events_event {
    uint64_t id;      /* from 1, in order */
    int64_t at_ms;    /* wall clock, ms since the epoch */
    enum events_kind kind;
    char identity[EVENTS_IDENTITY_MAX];
    char what[EVENTS_TEXT_MAX];
    char detail[EVENTS_TEXT_MAX];  /* METHOD: the outcome ("answered", "timeout", "notOnline"...) */
    int64_t status;
    int64_t latency_ms; /* METHOD: from the call's start to its end; -1 otherwise */
};

struct events;
typedef void (*events_fn)(void *ctx, const struct events_event *ev);

/* Returns NULL on ERR_NOMEM. */
struct events *events_new(void);
/* Accepts NULL. Subscribers are forgotten, not told. */
void events_free(struct events *e);

/* Records one event (strings are cut to fit; NULL is "") and tells every subscriber. A NULL e is a no-op. */
void events_note(struct events *e, enum events_kind kind, const char *identity, const char *what,
                 const char *detail, int64_t status, int64_t latency_ms);
/* The same for an identity given as device and module (module NULL or "" for a device). */
void events_note2(struct events *e, enum events_kind kind, const char *device_id, const char *module_id,
                  const char *what, const char *detail, int64_t status, int64_t latency_ms);

/* ERR_OK, or ERR_TOO_BIG past EVENTS_MAX_SUBSCRIBERS. fn runs inside events_note: it must not subscribe or
 * unsubscribe. */
int events_subscribe(struct events *e, events_fn fn, void *ctx);
void events_unsubscribe(struct events *e, events_fn fn, void *ctx);
size_t events_subscribers(const struct events *e);

/* The oldest kept event with id > after, or NULL; walk on with the returned event's id. */
const struct events_event *events_after(const struct events *e, uint64_t after);
/* The id of the newest event (0 when none yet). */
uint64_t events_last_id(const struct events *e);
/* How many events of a kind were noted since start. */
uint64_t events_count(const struct events *e, enum events_kind kind);
/* "connection", "method", "twin", "c2d". */
const char *events_kind_name(enum events_kind kind);

#endif
