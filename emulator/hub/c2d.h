/* c2d.h -- cloud-to-device message queues of the hub: one FIFO per device (or module) identity, at most
 * C2D_MAX_QUEUE messages each, with expiry (the message's own, or the hub's default TTL), a delivery count and
 * completion. Protocol-agnostic: the AMQP front enqueues (c2d_send); a connected device front (MQTT today)
 * attaches its struct device_link (device_link.h) and gets one message at a time through its deliver_c2d
 * op, completing each with c2d_complete; nothing here knows AMQP or MQTT. Persistence goes through
 * the small struct c2d_store seam, so the SQLite store can keep queues across restarts (NULL: memory only).
 * Tests: tests/unit/test_c2d.c. */
#ifndef IOTHUB_C2D_H
#define IOTHUB_C2D_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct c2d;
struct device_link;
struct registry;

#define C2D_MAX_QUEUE 50       /* the hub's per-device limit; the 51st is refused */
#define C2D_MAX_DELIVERY 10    /* deliveries before a message is dead-lettered */
#define C2D_LOCK_MS 60000      /* how long an HTTPS device holds a received message before it is available again */
#define C2D_DEFAULT_TTL_S 3600 /* one hour, the hub's default */
#define C2D_MAX_BODY 65536     /* the hub's C2D message size limit */
#define C2D_MAX_PROPS 32
#define C2D_MAX_KEY 128
#define C2D_MAX_VALUE 512
#define C2D_MAX_ID 128
#define C2D_FEEDBACK_BATCH 64  /* records per feedback message, as the hub batches them */
#define C2D_FEEDBACK_MAX 10000 /* records kept for a receiver; the oldest go first */

/* How a message left its queue (the feedback statusCode). */
enum c2d_outcome { C2D_SUCCESS, C2D_EXPIRED, C2D_DELIVERY_COUNT_EXCEEDED, C2D_REJECTED, C2D_PURGED };

struct c2d_prop {
    char key[C2D_MAX_KEY];
    char value[C2D_MAX_VALUE];
};

/* One message as a front hands it in (and as c2d_next hands it out). Strings are NUL-terminated, "" when
 * absent; body may be NULL with body_len 0. */
struct c2d_message {
    char message_id[C2D_MAX_ID];
    char correlation_id[C2D_MAX_ID];
    char user_id[C2D_MAX_ID];
    char content_type[C2D_MAX_ID];
    char content_encoding[C2D_MAX_ID];
    char ack[16];                 /* iothub-ack: none|positive|negative|full ("" = none) */
    char to[2 * C2D_MAX_ID + 40]; /* set by c2d: /devices/{id}[/modules/{mid}]/messages/devicebound */
    int64_t expiry_ms;            /* absolute wall-clock ms (absolute-expiry-time); 0 = enqueued + TTL */
    bool expiry_given;            /* set by c2d: the sender gave expiry_ms (the device then sees $.exp) */
    int64_t enqueued_ms;          /* set by c2d */
    uint32_t delivery_count;      /* set by c2d */
    uint64_t seq;                 /* set by c2d: unique per hub, the lock token */
    struct c2d_prop props[C2D_MAX_PROPS];
    size_t n_props;
    const uint8_t *body;
    size_t body_len;
};

/* The persistence seam (emulator/store/ implements it with SQLite; every call returns ERR_OK or an error and
 * the queue change is refused on error). put stores an accepted message (body included); del forgets one
 * (completed, expired, purged, or dead-lettered); load calls fn for every stored message at start-up, in
 * enqueue order. identity is "device" or "device/module". last_seq (may be NULL) gives the highest sequence
 * number ever stored, so lock tokens are not reused after a restart that found the queues empty. */
struct c2d_store {
    int (*put)(void *ctx, const char *identity, const struct c2d_message *m);
    int (*del)(void *ctx, const char *identity, uint64_t seq);
    int (*load)(void *ctx, int (*fn)(void *arg, const char *identity, const struct c2d_message *m), void *arg);
    uint64_t (*last_seq)(void *ctx);
    void *ctx;
};

/* reg must outlive the queues (unknown identities are refused). store may be NULL (memory only); it is
 * loaded here. ttl_s <= 0 means C2D_DEFAULT_TTL_S. Returns NULL on ERR_NOMEM or a store load failure. */
struct c2d *c2d_new(const struct registry *reg, const struct c2d_store *store, int ttl_s);
void c2d_free(struct c2d *q);
/* Wall-clock milliseconds since the epoch (expiry times are absolute AMQP timestamps in ms). */
int64_t c2d_wall_ms(void);

/* Enqueues m (copied) for the identity named by to ("/devices/{id}/messages/devicebound" or
 * ".../modules/{mid}/messages/devicebound", ids percent-encoded or not) at now_ms (wall clock). Returns
 * ERR_OK, ERR_NOT_FOUND (no such identity), ERR_TOO_BIG (C2D_MAX_QUEUE queued, or the body is over
 * C2D_MAX_BODY), ERR_INVALID (to is not a devicebound address; the message expired already) or ERR_NOMEM;
 * why gets a one-line reason in the hub's words. */
int c2d_send(struct c2d *q, const char *to, const struct c2d_message *m, int64_t now_ms, char *why, size_t whylen);
/* link (identity link->identity) takes its messages from now on (MQTT: it subscribed to devicebound): the
 * oldest is delivered through link->ops->deliver_c2d, the next once that one is completed. A second link for
 * the same identity replaces the first (takeover); what the first had in flight is delivered again. */
void c2d_attach(struct c2d *q, struct device_link *link, int64_t now_ms);
/* HTTPS devices (GET .../messages/deviceBound): locks the oldest available message of identity for lock_ms
 * (an expired lock makes its message available again, as an abandon would), raising its delivery count.
 * NULL when there is none (or a link holds one in flight). The lock token is the message's seq. */
const struct c2d_message *c2d_lock(struct c2d *q, const char *identity, int64_t now_ms, int64_t lock_ms);
/* The device rejected seq (feedback Rejected): it leaves the queue. ERR_OK or ERR_NOT_FOUND. */
int c2d_reject(struct c2d *q, const char *identity, uint64_t seq);
/* The device gave seq back: available again (dropped after C2D_MAX_DELIVERY deliveries). ERR_OK or
 * ERR_NOT_FOUND (not queued, or not in flight). */
int c2d_abandon(struct c2d *q, const char *identity, uint64_t seq);

/* link takes no more (unsubscribed, disconnected): what it had in flight goes back to the queue. A link that
 * is not attached is ignored. */
void c2d_detach(struct c2d *q, struct device_link *link);

/* The first message of identity's queue not yet handed out (expired ones are dropped first), marked in
 * flight with its delivery count raised; NULL when there is none. Valid until the message is completed,
 * abandoned or the queue is purged. */
const struct c2d_message *c2d_next(struct c2d *q, const char *identity, int64_t now_ms);
/* The device completed message seq: it leaves the queue, and an attached link gets the next one. Returns
 * ERR_OK or ERR_NOT_FOUND. */
int c2d_complete(struct c2d *q, const char *identity, uint64_t seq);
/* Puts every in-flight message of identity back (the device disconnected before completing them); a
 * message past C2D_MAX_DELIVERY deliveries is dropped. */
void c2d_abandon_all(struct c2d *q, const char *identity);
/* Messages queued for identity (in flight included, expired ones dropped first). */
size_t c2d_count(struct c2d *q, const char *identity, int64_t now_ms);
/* Drops identity's whole queue (DELETE /devices/{id}/commands, identity deleted). Returns how many. */
size_t c2d_purge(struct c2d *q, const char *identity);

/* Feedback (iothub-amqp.md §B.2.2): when a message leaves its queue and its ack asks for that outcome
 * (positive: Success; negative: the others; full: all), a record {originalMessageId, enqueuedTimeUtc,
 * statusCode, description, deviceId, deviceGenerationId} is kept. An attached sink gets them as a JSON array
 * of up to C2D_FEEDBACK_BATCH records, one batch at a time, as soon as there are any (the hub waits up to 15 s
 * to fill a batch; the emulator does not), and settles each batch: done (the receiver accepted or rejected
 * it) or not (released, or the receiver left: the records go back, in order). deliver returns ERR_OK or an
 * error (the batch then goes back at once). */
struct c2d_feedback_sink {
    int (*deliver)(void *ctx, uint64_t batch, const char *json, size_t len);
    void *ctx;
};
/* The sink replaces any earlier one (whose unsettled batch goes back). */
void c2d_feedback_attach(struct c2d *q, const struct c2d_feedback_sink *sink);
/* Detaches the sink whose ctx is ctx (others are left alone); its unsettled batch goes back. */
void c2d_feedback_detach(struct c2d *q, void *ctx);
void c2d_feedback_settled(struct c2d *q, uint64_t batch, bool done);
/* Records not yet settled by a receiver. */
size_t c2d_feedback_pending(const struct c2d *q);
/* The dashboard's live feed (events.h): queued, delivered and settled messages are noted there. NULL: none. */
struct events;
void c2d_set_events(struct c2d *q, struct events *ev);

#endif
