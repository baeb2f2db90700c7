/* events.c -- the hub's live event feed (see events.h): a fixed ring of EVENTS_RING events and a small
 * subscriber array. No allocation after events_new. */
#include "events.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"

struct events_sub {
    events_fn fn;
    void *ctx;
};

struct events {
    struct events_event ring[EVENTS_RING];
    uint64_t last_id;
    uint64_t counts[EVENTS_KINDS];
    struct events_sub subs[EVENTS_MAX_SUBSCRIBERS];
    size_t n_subs;
};

struct events *events_new(void)
{
    return calloc(1, sizeof(struct events));
}

void events_free(struct events *e)
{
    free(e);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies src into dst[at..cap) cut to fit (no printf: this runs on every method call); returns the end. */
static size_t copy_cut(char *dst, size_t at, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap) : 0;
    if (n > cap - 1 - at)
        n = cap - 1 - at;
    memcpy(dst + at, src ? src : "", n);
    dst[at + n] = '\0';
    return at + n;
}

static void put(char *dst, size_t cap, const char *a, const char *b)
{
    size_t at = copy_cut(dst, 0, cap, a);
    if (b && *b && at + 1 < cap) {
        dst[at++] = '/';
        copy_cut(dst, at, cap, b);
    }
}

void events_note2(struct events *e, enum events_kind kind, const char *device_id, const char *module_id,
                  const char *what, const char *detail, int64_t status, int64_t latency_ms)
{
    if (!e || kind < 0 || kind >= EVENTS_KINDS)
        return;
    struct events_event *ev = &e->ring[e->last_id % EVENTS_RING];
    ev->id = ++e->last_id;
    ev->at_ms = wall_ms();
    ev->kind = kind;
    put(ev->identity, sizeof ev->identity, device_id, module_id);
    put(ev->what, sizeof ev->what, what, NULL);
    put(ev->detail, sizeof ev->detail, detail, NULL);
    ev->status = status;
    ev->latency_ms = latency_ms;
    e->counts[kind]++;
    for (size_t i = 0; i < e->n_subs; i++)
        e->subs[i].fn(e->subs[i].ctx, ev);
}

void events_note(struct events *e, enum events_kind kind, const char *identity, const char *what,
                 const char *detail, int64_t status, int64_t latency_ms)
{
    events_note2(e, kind, identity, NULL, what, detail, status, latency_ms);
}

int events_subscribe(struct events *e, events_fn fn, void *ctx)
{
    if (e->n_subs >= EVENTS_MAX_SUBSCRIBERS)
        return ERR_TOO_BIG;
    e->subs[e->n_subs++] = (struct events_sub){fn, ctx};
    return ERR_OK;
}

void events_unsubscribe(struct events *e, events_fn fn, void *ctx)
{
    for (size_t i = 0; i < e->n_subs; i++) {
        if (e->subs[i].fn == fn && e->subs[i].ctx == ctx) {
            e->subs[i] = e->subs[--e->n_subs];
            return;
        }
    }
}

size_t events_subscribers(const struct events *e)
{
    return e ? e->n_subs : 0;
}

const struct events_event *events_after(const struct events *e, uint64_t after)
{
    if (!e || after >= e->last_id)
        return NULL;
    uint64_t oldest = e->last_id > EVENTS_RING ? e->last_id - EVENTS_RING + 1 : 1;
    uint64_t want = after + 1 < oldest ? oldest : after + 1;
    return &e->ring[(want - 1) % EVENTS_RING];
}

uint64_t events_last_id(const struct events *e)
{
    return e ? e->last_id : 0;
}

uint64_t events_count(const struct events *e, enum events_kind kind)
{
    return e && kind >= 0 && kind < EVENTS_KINDS ? e->counts[kind] : 0;
}

const char *events_kind_name(enum events_kind kind)
{
    static const char *const names[EVENTS_KINDS] = {"connection", "method", "twin", "c2d"};
    return kind >= 0 && kind < EVENTS_KINDS ? names[kind] : "unknown";
}
