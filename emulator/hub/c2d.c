/* c2d.c -- per-identity cloud-to-device queues (see c2d.h): FIFO lists keyed by "device[/module]", expiry,
 * delivery counts, completion, purge, and the persistence seam. No protocol knowledge.
 * Tests: tests/unit/test_c2d.c. */
#include "c2d.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "device_link.h"
#include "err.h"
#include "events.h"
#include "log.h"
#include "registry.h"
#include "url.h"

#define C2D_MAX_IDENTITY (2 * REGISTRY_MAX_ID + 2)

struct c2d_entry {
    struct c2d_message m; /* m.body points at body */
    uint8_t *body;
    bool in_flight;
    int64_t lock_until; /* an HTTPS device's lock (0: in flight on a link, held until it completes or detaches) */
    struct c2d_entry *next;
};

struct c2d_queue {
    char identity[C2D_MAX_IDENTITY];
    struct c2d_entry *head, *tail;
    size_t n;
    struct device_link *link; /* attached: gets the messages */
    struct c2d_queue *next;
};

struct c2d {
    const struct registry *reg;
    struct c2d_store store;
    bool has_store;
    int64_t ttl_ms;
    uint64_t seq;
    struct c2d_queue *queues;
    json_t *feedback; /* records waiting for a feedback receiver (array, oldest first) */
    json_t *fb_batch; /* the batch handed to the sink, not yet settled (NULL: none) */
    uint64_t fb_batch_id;
    struct c2d_feedback_sink sink; /* sink.deliver NULL: no receiver attached */
    struct events *events;         /* the dashboard's live feed (c2d_set_events), or NULL */
};

static void set_why(char *why, size_t whylen, const char *text)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", text);
}

static struct c2d_queue *find_queue(struct c2d *q, const char *identity, bool create)
{
    for (struct c2d_queue *k = q->queues; k; k = k->next)
        if (strcmp(k->identity, identity) == 0)
            return k;
    if (!create || strlen(identity) >= C2D_MAX_IDENTITY)
        return NULL;
    struct c2d_queue *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    snprintf(k->identity, sizeof k->identity, "%s", identity);
    k->next = q->queues;
    q->queues = k;
    return k;
}

static void free_entry(struct c2d_entry *e)
{
    free(e->body);
    free(e);
}

static void feedback_record(struct c2d *q, const char *identity, const struct c2d_message *m, enum c2d_outcome o);

/* Unlinks e (prev is its predecessor or NULL), records its outcome as feedback when its ack asks, and forgets
 * it in the store. */
static void drop(struct c2d *q, struct c2d_queue *k, struct c2d_entry *prev, struct c2d_entry *e, enum c2d_outcome o)
{
    static const char *const what[] = {"completed", "expired", "deadlettered", "rejected", "purged"};
    events_note(q->events, EVENTS_C2D, k->identity, what[o], e->m.message_id, e->m.delivery_count, -1);
    feedback_record(q, k->identity, &e->m, o);
    if (prev)
        prev->next = e->next;
    else
        k->head = e->next;
    if (k->tail == e)
        k->tail = prev;
    k->n--;
    if (q->has_store && q->store.del(q->store.ctx, k->identity, e->m.seq) != ERR_OK)
        log_warn("c2d: could not remove message %llu of %s from the store", (unsigned long long)e->m.seq, k->identity);
    free_entry(e);
}

static void drop_expired(struct c2d *q, struct c2d_queue *k, int64_t now_ms)
{
    struct c2d_entry *prev = NULL, *e = k->head;
    while (e) {
        struct c2d_entry *next = e->next;
        if (!e->in_flight && e->m.expiry_ms < now_ms) {
            log_info("c2d: message %s for %s expired", e->m.message_id, k->identity);
            drop(q, k, prev, e, C2D_EXPIRED);
        } else {
            prev = e;
        }
        e = next;
    }
}

/* Appends a copy of m to k (no checks). */
static int append(struct c2d_queue *k, const struct c2d_message *m)
{
    struct c2d_entry *e = calloc(1, sizeof *e);
    if (!e)
        return ERR_NOMEM;
    e->m = *m;
    if (m->body_len) {
        e->body = malloc(m->body_len);
        if (!e->body) {
            free(e);
            return ERR_NOMEM;
        }
        memcpy(e->body, m->body, m->body_len);
    }
    e->m.body = e->body;
    if (k->tail)
        k->tail->next = e;
    else
        k->head = e;
    k->tail = e;
    k->n++;
    return ERR_OK;
}

static int load_one(void *arg, const char *identity, const struct c2d_message *m)
{
    struct c2d *q = arg;
    struct c2d_queue *k = find_queue(q, identity, true);
    if (!k)
        return ERR_NOMEM;
    if (m->seq > q->seq)
        q->seq = m->seq;
    return append(k, m);
}

struct c2d *c2d_new(const struct registry *reg, const struct c2d_store *store, int ttl_s)
{
    struct c2d *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->reg = reg;
    q->ttl_ms = (int64_t)(ttl_s > 0 ? ttl_s : C2D_DEFAULT_TTL_S) * 1000;
    if (store && store->put && store->del && store->load) {
        q->store = *store;
        q->has_store = true;
        if (store->load(store->ctx, load_one, q) != ERR_OK) {
            c2d_free(q);
            return NULL;
        }
        if (store->last_seq && store->last_seq(store->ctx) > q->seq)
            q->seq = store->last_seq(store->ctx);
    }
    return q;
}

void c2d_free(struct c2d *q)
{
    if (!q)
        return;
    struct c2d_queue *k = q->queues;
    while (k) {
        struct c2d_queue *kn = k->next;
        struct c2d_entry *e = k->head;
        while (e) {
            struct c2d_entry *en = e->next;
            free_entry(e);
            e = en;
        }
        free(k);
        k = kn;
    }
    json_decref(q->feedback);
    json_decref(q->fb_batch);
    free(q);
}

/* Delivers the oldest message to k's link when nothing is in flight (one at a time keeps the order). */
static void deliver(struct c2d *q, struct c2d_queue *k, int64_t now_ms)
{
    if (!k->link || !k->link->ops->deliver_c2d)
        return;
    drop_expired(q, k, now_ms);
    for (struct c2d_entry *e = k->head; e; e = e->next)
        if (e->in_flight)
            return;
    struct c2d_entry *e = k->head;
    if (!e)
        return;
    e->in_flight = true;
    e->m.delivery_count++;
    /* Noted before the hand-over: a link that settles at once (MQTT QoS 0) completes, and so frees, the entry
     * inside deliver_c2d; e is not touched after a successful hand-over. */
    events_note(q->events, EVENTS_C2D, k->identity, "delivered", e->m.message_id, e->m.delivery_count, -1);
    if (k->link->ops->deliver_c2d(k->link, &e->m) != ERR_OK) {
        e->in_flight = false;
        e->m.delivery_count--;
        events_note(q->events, EVENTS_C2D, k->identity, "undelivered", e->m.message_id, e->m.delivery_count, -1);
        log_warn("c2d: message %s for %s could not be delivered; it stays queued", e->m.message_id, k->identity);
    }
}

int64_t c2d_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void c2d_attach(struct c2d *q, struct device_link *link, int64_t now_ms)
{
    struct c2d_queue *k = find_queue(q, link->identity, true);
    if (!k)
        return;
    if (k->link && k->link != link)
        c2d_abandon_all(q, k->identity);
    k->link = link;
    deliver(q, k, now_ms);
}

void c2d_detach(struct c2d *q, struct device_link *link)
{
    for (struct c2d_queue *k = q->queues; k; k = k->next) {
        if (k->link == link) {
            k->link = NULL;
            c2d_abandon_all(q, k->identity);
        }
    }
}

/* Decodes one path segment [p, end) into out (REGISTRY_MAX_ID + 1). */
static bool segment(const char *p, size_t len, char *out)
{
    char *dec = NULL;
    size_t dlen = 0;
    if (len == 0 || url_decode(p, len, &dec, &dlen) != ERR_OK)
        return false;
    bool ok = dlen <= REGISTRY_MAX_ID;
    if (ok)
        memcpy(out, dec, dlen + 1);
    free(dec);
    return ok;
}

/* /devices/{id}[/modules/{mid}]/messages/devicebound -> ids. */
static bool parse_to(const char *to, char *dev, char *mod)
{
    static const char pre[] = "/devices/", tail[] = "/messages/devicebound", mods[] = "/modules/";
    mod[0] = 0;
    if (strncmp(to, pre, sizeof pre - 1) != 0)
        return false;
    const char *p = to + sizeof pre - 1;
    const char *slash = strchr(p, '/');
    if (!slash || !segment(p, (size_t)(slash - p), dev))
        return false;
    if (strncmp(slash, mods, sizeof mods - 1) == 0) {
        const char *m = slash + sizeof mods - 1;
        slash = strchr(m, '/');
        if (!slash || !segment(m, (size_t)(slash - m), mod))
            return false;
    }
    return strcmp(slash, tail) == 0 ||
           (strncmp(slash, tail, sizeof tail - 1) == 0 && strcmp(slash + sizeof tail - 1, "/") == 0);
}

int c2d_send(struct c2d *q, const char *to, const struct c2d_message *m, int64_t now_ms, char *why, size_t whylen)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    set_why(why, whylen, "");
    if (!to || !parse_to(to, dev, mod)) {
        set_why(why, whylen, "'to' must be /devices/{deviceId}/messages/devicebound");
        return ERR_INVALID;
    }
    if (!registry_find(q->reg, dev, mod[0] ? mod : NULL)) {
        if (why && whylen)
            snprintf(why, whylen, "device %s%s%s not found", dev, mod[0] ? "/" : "", mod);
        return ERR_NOT_FOUND;
    }
    if (m->body_len > C2D_MAX_BODY) {
        set_why(why, whylen, "message body over the 64 KiB limit");
        return ERR_TOO_BIG;
    }
    char identity[C2D_MAX_IDENTITY];
    snprintf(identity, sizeof identity, "%s%s%s", dev, mod[0] ? "/" : "", mod);
    struct c2d_queue *k = find_queue(q, identity, true);
    if (!k) {
        set_why(why, whylen, "out of memory");
        return ERR_NOMEM;
    }
    drop_expired(q, k, now_ms);
    if (k->n >= C2D_MAX_QUEUE) {
        if (why && whylen)
            snprintf(why, whylen, "the queue of %s holds %d messages already", identity, C2D_MAX_QUEUE);
        return ERR_TOO_BIG;
    }
    struct c2d_message copy = *m;
    copy.enqueued_ms = now_ms;
    copy.delivery_count = 0;
    copy.seq = q->seq + 1;
    if (copy.expiry_ms == 0)
        copy.expiry_ms = now_ms + q->ttl_ms;
    copy.expiry_given = m->expiry_ms != 0;
    if (copy.expiry_ms < now_ms) {
        set_why(why, whylen, "the message has expired already");
        return ERR_INVALID;
    }
    snprintf(copy.to, sizeof copy.to, "%s", to);
    if (q->has_store && q->store.put(q->store.ctx, identity, &copy) != ERR_OK) {
        set_why(why, whylen, "the message could not be stored");
        return ERR_IO;
    }
    int rc = append(k, &copy);
    if (rc) {
        set_why(why, whylen, "out of memory");
        return rc;
    }
    q->seq++;
    events_note(q->events, EVENTS_C2D, identity, "queued", copy.message_id, 0, -1);
    deliver(q, k, now_ms);
    return ERR_OK;
}

const struct c2d_message *c2d_next(struct c2d *q, const char *identity, int64_t now_ms)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    if (!k)
        return NULL;
    drop_expired(q, k, now_ms);
    for (struct c2d_entry *e = k->head; e; e = e->next) {
        if (!e->in_flight) {
            e->in_flight = true;
            e->m.delivery_count++;
            events_note(q->events, EVENTS_C2D, identity, "delivered", e->m.message_id, e->m.delivery_count, -1);
            return &e->m;
        }
    }
    return NULL;
}

int c2d_complete(struct c2d *q, const char *identity, uint64_t seq)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    if (!k)
        return ERR_NOT_FOUND;
    struct c2d_entry *prev = NULL;
    for (struct c2d_entry *e = k->head; e; prev = e, e = e->next) {
        if (e->m.seq == seq) {
            drop(q, k, prev, e, C2D_SUCCESS);
            deliver(q, k, c2d_wall_ms());
            return ERR_OK;
        }
    }
    return ERR_NOT_FOUND;
}

void c2d_abandon_all(struct c2d *q, const char *identity)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    if (!k)
        return;
    struct c2d_entry *prev = NULL, *e = k->head;
    while (e) {
        struct c2d_entry *next = e->next;
        if (e->in_flight && e->m.delivery_count >= C2D_MAX_DELIVERY) {
            log_info("c2d: message %s for %s dropped after %d deliveries", e->m.message_id, identity, C2D_MAX_DELIVERY);
            drop(q, k, prev, e, C2D_DELIVERY_COUNT_EXCEEDED);
        } else {
            e->in_flight = false;
            prev = e;
        }
        e = next;
    }
}

size_t c2d_count(struct c2d *q, const char *identity, int64_t now_ms)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    if (!k)
        return 0;
    drop_expired(q, k, now_ms);
    return k->n;
}

size_t c2d_purge(struct c2d *q, const char *identity)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    size_t n = 0;
    while (k && k->head) {
        drop(q, k, NULL, k->head, C2D_PURGED);
        n++;
    }
    return n;
}

/* ---- feedback ---- */

static const char *const outcome_names[] = {"Success", "Expired", "DeliveryCountExceeded", "Rejected", "Purged"};

/* Whether ack ("none", "positive", "negative", "full") asks for outcome o. */
static bool ack_wants(const char *ack, enum c2d_outcome o)
{
    if (strcmp(ack, "full") == 0)
        return true;
    if (strcmp(ack, "positive") == 0)
        return o == C2D_SUCCESS;
    if (strcmp(ack, "negative") == 0)
        return o != C2D_SUCCESS;
    return false;
}

static void iso_time(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03dZ", (int)(ms % 1000));
}

static void feedback_flush(struct c2d *q)
{
    if (!q->sink.deliver || q->fb_batch || !q->feedback || json_array_size(q->feedback) == 0)
        return;
    json_t *batch = json_array();
    if (!batch)
        return;
    while (json_array_size(q->feedback) && json_array_size(batch) < C2D_FEEDBACK_BATCH) {
        json_array_append(batch, json_array_get(q->feedback, 0));
        json_array_remove(q->feedback, 0);
    }
    char *text = json_dumps(batch, JSON_COMPACT);
    uint64_t id = ++q->fb_batch_id;
    q->fb_batch = batch;
    if (!text || q->sink.deliver(q->sink.ctx, id, text, strlen(text)) != ERR_OK) {
        /* back in front, in order; no retry until the next record, settlement or receiver */
        for (size_t i = json_array_size(batch); i > 0; i--)
            json_array_insert(q->feedback, 0, json_array_get(batch, i - 1));
        json_decref(batch);
        q->fb_batch = NULL;
    }
    free(text);
}

static void feedback_record(struct c2d *q, const char *identity, const struct c2d_message *m, enum c2d_outcome o)
{
    if (!ack_wants(m->ack, o))
        return;
    if (!q->feedback && !(q->feedback = json_array()))
        return;
    if (json_array_size(q->feedback) >= C2D_FEEDBACK_MAX) {
        log_warn("c2d: %d feedback records wait for a receiver; the oldest is dropped", C2D_FEEDBACK_MAX);
        json_array_remove(q->feedback, 0);
    }
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1] = "";
    const char *slash = strchr(identity, '/');
    snprintf(dev, sizeof dev, "%.*s", slash ? (int)(slash - identity) : (int)strlen(identity), identity);
    if (slash)
        snprintf(mod, sizeof mod, "%s", slash + 1);
    const struct identity *id = registry_find(q->reg, dev, mod[0] ? mod : NULL);
    char when[40];
    iso_time(c2d_wall_ms(), when, sizeof when);
    json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "originalMessageId", m->message_id, "enqueuedTimeUtc", when,
                          "statusCode", outcome_names[o], "description", outcome_names[o], "deviceId", dev,
                          "deviceGenerationId", id ? id->generation_id : "");
    if (r)
        json_array_append_new(q->feedback, r);
    feedback_flush(q);
}

void c2d_feedback_attach(struct c2d *q, const struct c2d_feedback_sink *sink)
{
    if (q->fb_batch)
        c2d_feedback_settled(q, q->fb_batch_id, false);
    q->sink = *sink;
    feedback_flush(q);
}

void c2d_feedback_detach(struct c2d *q, void *ctx)
{
    if (q->sink.ctx != ctx)
        return;
    memset(&q->sink, 0, sizeof q->sink);
    if (q->fb_batch)
        c2d_feedback_settled(q, q->fb_batch_id, false);
}

void c2d_feedback_settled(struct c2d *q, uint64_t batch, bool done)
{
    if (!q->fb_batch || batch != q->fb_batch_id)
        return;
    json_t *b = q->fb_batch;
    q->fb_batch = NULL;
    if (!done) { /* back to the front of the queue, in order */
        for (size_t i = json_array_size(b); i > 0; i--)
            json_array_insert(q->feedback, 0, json_array_get(b, i - 1));
    }
    json_decref(b);
    feedback_flush(q);
}

size_t c2d_feedback_pending(const struct c2d *q)
{
    return (q->feedback ? json_array_size(q->feedback) : 0) + (q->fb_batch ? json_array_size(q->fb_batch) : 0);
}

/* ---- HTTPS devices: locks ---- */

/* Messages whose HTTPS lock ran out are available again (or dropped after their last delivery). */
static void unlock_expired(struct c2d *q, struct c2d_queue *k, int64_t now_ms)
{
    struct c2d_entry *prev = NULL, *e = k->head;
    while (e) {
        struct c2d_entry *next = e->next;
        if (e->in_flight && e->lock_until && e->lock_until < now_ms) {
            e->in_flight = false;
            e->lock_until = 0;
            if (e->m.delivery_count >= C2D_MAX_DELIVERY) {
                drop(q, k, prev, e, C2D_DELIVERY_COUNT_EXCEEDED);
                e = next;
                continue;
            }
        }
        prev = e;
        e = next;
    }
}

const struct c2d_message *c2d_lock(struct c2d *q, const char *identity, int64_t now_ms, int64_t lock_ms)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    if (!k)
        return NULL;
    unlock_expired(q, k, now_ms);
    drop_expired(q, k, now_ms);
    for (struct c2d_entry *e = k->head; e; e = e->next) {
        if (e->in_flight && !e->lock_until)
            return NULL; /* a connected link is delivering: one at a time */
        if (!e->in_flight) {
            e->in_flight = true;
            e->lock_until = now_ms + lock_ms;
            e->m.delivery_count++;
            return &e->m;
        }
    }
    return NULL;
}

/* The entry seq of identity and its predecessor. */
static struct c2d_entry *find_entry(struct c2d *q, const char *identity, uint64_t seq, struct c2d_queue **kq,
                                    struct c2d_entry **prevp)
{
    struct c2d_queue *k = find_queue(q, identity, false);
    struct c2d_entry *prev = NULL;
    for (struct c2d_entry *e = k ? k->head : NULL; e; prev = e, e = e->next) {
        if (e->m.seq == seq) {
            *kq = k;
            *prevp = prev;
            return e;
        }
    }
    return NULL;
}

int c2d_reject(struct c2d *q, const char *identity, uint64_t seq)
{
    struct c2d_queue *k;
    struct c2d_entry *prev, *e = find_entry(q, identity, seq, &k, &prev);
    if (!e)
        return ERR_NOT_FOUND;
    drop(q, k, prev, e, C2D_REJECTED);
    deliver(q, k, c2d_wall_ms());
    return ERR_OK;
}

int c2d_abandon(struct c2d *q, const char *identity, uint64_t seq)
{
    struct c2d_queue *k;
    struct c2d_entry *prev, *e = find_entry(q, identity, seq, &k, &prev);
    if (!e || !e->in_flight)
        return ERR_NOT_FOUND;
    e->in_flight = false;
    e->lock_until = 0;
    if (e->m.delivery_count >= C2D_MAX_DELIVERY)
        drop(q, k, prev, e, C2D_DELIVERY_COUNT_EXCEEDED);
    deliver(q, k, c2d_wall_ms());
    return ERR_OK;
}

void c2d_set_events(struct c2d *q, struct events *ev)
{
    q->events = ev;
}
