/* eventlog.c -- the partitioned, bounded event log of device-to-cloud messages (see eventlog.h). Each
 * partition is a ring of event pointers indexed by sequence number; all events also form one singly linked
 * list in append order, whose head is the global oldest (what retention drops first). */
#include "eventlog.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "err.h"
#include "url.h"

#define EVENTLOG_OVERHEAD 256 /* bytes counted per event besides body and properties */
#define EVENTLOG_MAX_LISTENERS 64

struct partition {
    struct eventlog_event **ring;
    size_t cap, head, count;
    int64_t next_seq;    /* the sequence number the next event gets */
    int64_t next_offset; /* the offset the next event gets */
    int64_t last_ms;     /* enqueued time of the last appended event (0: none yet) */
    int64_t last_offset; /* -1: none yet */
};

struct listener {
    eventlog_listener_fn fn;
    void *ctx;
};

struct eventlog {
    struct eventlog_limits lim;
    int64_t created_ms;
    struct partition parts[EVENTLOG_MAX_PARTITIONS];
    struct eventlog_event *oldest, *newest; /* global append order */
    size_t count, bytes;
    uint64_t total, next_id;
    struct listener listeners[EVENTLOG_MAX_LISTENERS];
    size_t n_listeners;
    char *groups[EVENTLOG_MAX_GROUPS + 1]; /* [0] is $Default */
    size_t n_groups;
};

struct eventlog *eventlog_new(const struct eventlog_limits *lim, int64_t created_ms)
{
    if (!lim || lim->partitions < 1 || lim->partitions > EVENTLOG_MAX_PARTITIONS || lim->max_age_ms < 0)
        return NULL;
    struct eventlog *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->lim = *lim;
    l->created_ms = created_ms;
    l->next_id = 1;
    for (int i = 0; i < lim->partitions; i++)
        l->parts[i].last_offset = -1;
    l->groups[0] = strdup(EVENTLOG_DEFAULT_GROUP);
    if (!l->groups[0]) {
        free(l);
        return NULL;
    }
    l->n_groups = 1;
    return l;
}

static void event_free(struct eventlog_event *e)
{
    if (!e)
        return;
    free(e->device_id);
    free(e->module_id);
    free(e->auth_scope);
    free(e->auth_type);
    free(e->generation_id);
    free(e->message_id);
    free(e->correlation_id);
    free(e->content_type);
    free(e->content_encoding);
    free(e->user_id);
    for (size_t i = 0; i < e->n_props; i++) {
        free(e->props[i].key);
        free(e->props[i].value);
    }
    free(e->props);
    free(e->body);
    free(e);
}

/* Drops the global oldest event (always the head of its partition). */
static void drop_oldest(struct eventlog *l)
{
    struct eventlog_event *e = l->oldest;
    if (!e)
        return;
    struct partition *p = &l->parts[e->partition];
    p->ring[p->head] = NULL;
    p->head = (p->head + 1) % p->cap;
    p->count--;
    l->oldest = e->next;
    if (!l->oldest)
        l->newest = NULL;
    l->count--;
    l->bytes -= e->size;
    event_free(e);
}

void eventlog_clear(struct eventlog *l)
{
    while (l->oldest)
        drop_oldest(l);
}

void eventlog_free(struct eventlog *l)
{
    if (!l)
        return;
    eventlog_clear(l);
    for (int i = 0; i < EVENTLOG_MAX_PARTITIONS; i++)
        free(l->parts[i].ring);
    for (size_t i = 0; i < l->n_groups; i++)
        free(l->groups[i]);
    free(l);
}

int eventlog_partitions(const struct eventlog *l)
{
    return l->lim.partitions;
}

int64_t eventlog_created_ms(const struct eventlog *l)
{
    return l->created_ms;
}

int eventlog_partition_of(const struct eventlog *l, const char *device_id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *s = (const unsigned char *)device_id; *s; s++) {
        h ^= *s;
        h *= 16777619u;
    }
    return (int)(h % (uint32_t)l->lim.partitions);
}

uint64_t eventlog_total(const struct eventlog *l)
{
    return l->total;
}

size_t eventlog_count(const struct eventlog *l)
{
    return l->count;
}

size_t eventlog_bytes(const struct eventlog *l)
{
    return l->bytes;
}

/* ---- the property bag ---- */

/* Splits "k=v&k2=v2" (URL-encoded) into the event: "$.mid" ... into their fields, the rest into props. */
static int parse_bag(struct eventlog_event *e, const char *bag)
{
    size_t n_pairs = 0;
    for (const char *s = bag; *s; s++)
        n_pairs += *s == '&';
    e->props = calloc(n_pairs + 1, sizeof *e->props);
    if (!e->props)
        return ERR_NOMEM;
    while (*bag) {
        size_t n = strcspn(bag, "&");
        const char *eq = memchr(bag, '=', n);
        size_t klen = eq ? (size_t)(eq - bag) : n;
        char *k = NULL, *v = NULL;
        if (klen) {
            if (url_decode(bag, klen, &k, NULL) != ERR_OK ||
                (eq && url_decode(eq + 1, n - klen - 1, &v, NULL) != ERR_OK)) {
                free(k); /* a pair that does not decode is skipped, as the hub ignores it */
                bag += n + (bag[n] == '&');
                continue;
            }
            char **sys = NULL;
            if (strcmp(k, "$.mid") == 0)
                sys = &e->message_id;
            else if (strcmp(k, "$.cid") == 0)
                sys = &e->correlation_id;
            else if (strcmp(k, "$.ct") == 0)
                sys = &e->content_type;
            else if (strcmp(k, "$.ce") == 0)
                sys = &e->content_encoding;
            else if (strcmp(k, "$.uid") == 0)
                sys = &e->user_id;
            if (sys) {
                free(*sys);
                *sys = v ? v : strdup("");
                free(k);
                if (!*sys)
                    return ERR_NOMEM;
            } else {
                e->props[e->n_props].key = k;
                e->props[e->n_props].value = v;
                e->n_props++;
                e->size += strlen(k) + (v ? strlen(v) : 0);
            }
        }
        bag += n + (bag[n] == '&');
    }
    return ERR_OK;
}

/* ---- append and retention ---- */

static int ring_push(struct partition *p, struct eventlog_event *e)
{
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct eventlog_event **r = calloc(cap, sizeof *r);
        if (!r)
            return ERR_NOMEM;
        for (size_t i = 0; i < p->count; i++)
            r[i] = p->ring[(p->head + i) % p->cap];
        free(p->ring);
        p->ring = r;
        p->cap = cap;
        p->head = 0;
    }
    p->ring[(p->head + p->count) % p->cap] = e;
    p->count++;
    return ERR_OK;
}

static void retain(struct eventlog *l, int64_t now_ms)
{
    while (l->oldest && (l->count > l->lim.max_events || l->bytes > l->lim.max_bytes))
        drop_oldest(l);
    if (l->lim.max_age_ms > 0)
        while (l->oldest && l->oldest->enqueued_ms < now_ms - l->lim.max_age_ms)
            drop_oldest(l);
}

void eventlog_expire(struct eventlog *l, int64_t now_ms)
{
    retain(l, now_ms);
}

static void notify(struct eventlog *l, int partition, const struct eventlog_event *ev)
{
    /* A listener may unlisten (itself or another) from inside: walk a copy. */
    struct listener copy[EVENTLOG_MAX_LISTENERS];
    size_t n = l->n_listeners;
    memcpy(copy, l->listeners, n * sizeof *copy);
    for (size_t i = 0; i < n; i++) {
        bool still = false;
        for (size_t j = 0; j < l->n_listeners; j++)
            still |= l->listeners[j].fn == copy[i].fn && l->listeners[j].ctx == copy[i].ctx;
        if (still)
            copy[i].fn(copy[i].ctx, partition, ev);
    }
}

int eventlog_append(struct eventlog *l, const struct eventlog_input *in, int64_t now_ms,
                    const struct eventlog_event **out)
{
    if (out)
        *out = NULL;
    if (!in || !in->device_id || !*in->device_id || (in->len && !in->body))
        return ERR_INVALID;
    int pi = eventlog_partition_of(l, in->device_id);
    struct partition *p = &l->parts[pi];
    struct eventlog_event *e = calloc(1, sizeof *e);
    if (!e)
        return ERR_NOMEM;
    bool module = in->module_id && *in->module_id;
    e->partition = pi;
    e->device_id = strdup(in->device_id);
    e->module_id = module ? strdup(in->module_id) : NULL;
    e->auth_scope = strdup(module ? "module" : "device");
    e->auth_type = strdup(in->auth_type ? in->auth_type : "sas");
    e->generation_id = strdup(in->generation_id ? in->generation_id : "");
    e->body = malloc(in->len ? in->len : 1);
    int rc = (!e->device_id || (module && !e->module_id) || !e->auth_scope || !e->auth_type || !e->generation_id ||
              !e->body)
                 ? ERR_NOMEM
                 : ERR_OK;
    if (rc == ERR_OK && in->prop_bag)
        rc = parse_bag(e, in->prop_bag);
    if (rc) {
        event_free(e);
        return rc;
    }
    if (in->len)
        memcpy(e->body, in->body, in->len);
    e->len = in->len;
    e->size += in->len + EVENTLOG_OVERHEAD;
    const char *const sys[] = {e->message_id, e->correlation_id, e->content_type, e->content_encoding, e->user_id};
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
        e->size += sys[i] ? strlen(sys[i]) : 0;
    e->seq = p->next_seq;
    e->offset = p->next_offset;
    e->enqueued_ms = now_ms > p->last_ms ? now_ms : p->last_ms;
    e->id = l->next_id;

    l->total++;
    bool keep = l->lim.max_events > 0 && e->size <= l->lim.max_bytes;
    if (keep && ring_push(p, e) != ERR_OK) {
        event_free(e);
        l->total--;
        return ERR_NOMEM;
    }
    l->next_id++;
    p->next_seq++;
    p->next_offset += (int64_t)e->size;
    p->last_ms = e->enqueued_ms;
    p->last_offset = e->offset;
    if (!keep) {
        event_free(e);
        retain(l, now_ms);
        notify(l, pi, NULL);
        return ERR_OK;
    }
    if (l->newest)
        l->newest->next = e;
    else
        l->oldest = e;
    l->newest = e;
    l->count++;
    l->bytes += e->size;
    retain(l, now_ms);
    const struct eventlog_event *kept = eventlog_get(l, pi, p->next_seq - 1);
    if (out)
        *out = kept;
    notify(l, pi, kept);
    return ERR_OK;
}

/* ---- reading ---- */

static const struct partition *part(const struct eventlog *l, int partition)
{
    return partition >= 0 && partition < l->lim.partitions ? &l->parts[partition] : NULL;
}

void eventlog_partition_info(const struct eventlog *l, int partition, struct eventlog_partition_info *out)
{
    memset(out, 0, sizeof *out);
    const struct partition *p = part(l, partition);
    if (!p) {
        out->last_seq = out->last_offset = -1;
        out->empty = true;
        return;
    }
    out->last_seq = p->next_seq - 1;
    out->last_offset = p->last_offset;
    out->last_ms = p->last_ms;
    out->empty = p->count == 0;
    out->begin_seq = p->count ? p->ring[p->head]->seq : p->next_seq;
}

const struct eventlog_event *eventlog_get(const struct eventlog *l, int partition, int64_t seq)
{
    const struct partition *p = part(l, partition);
    if (!p || !p->count)
        return NULL;
    int64_t first = p->ring[p->head]->seq;
    if (seq < first || seq >= first + (int64_t)p->count)
        return NULL;
    return p->ring[(p->head + (size_t)(seq - first)) % p->cap];
}

/* First index whose key passes (key > v, or >= when inclusive); count when none. Keys are non-decreasing. */
static size_t search(const struct partition *p, int64_t v, bool inclusive, bool by_time)
{
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct eventlog_event *e = p->ring[(p->head + mid) % p->cap];
        int64_t k = by_time ? e->enqueued_ms : e->offset;
        bool pass = inclusive ? k >= v : k > v;
        if (pass)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int64_t seq_at(const struct partition *p, size_t i)
{
    if (i >= p->count)
        return p->next_seq;
    return p->ring[(p->head + i) % p->cap]->seq;
}

int64_t eventlog_seq_after_offset(const struct eventlog *l, int partition, int64_t offset, bool inclusive)
{
    const struct partition *p = part(l, partition);
    return p ? seq_at(p, search(p, offset, inclusive, false)) : 0;
}

int64_t eventlog_seq_after_time(const struct eventlog *l, int partition, int64_t ms, bool inclusive)
{
    const struct partition *p = part(l, partition);
    return p ? seq_at(p, search(p, ms, inclusive, true)) : 0;
}

const struct eventlog_event *eventlog_oldest(const struct eventlog *l)
{
    return l->oldest;
}

/* ---- listeners ---- */

int eventlog_listen(struct eventlog *l, eventlog_listener_fn fn, void *ctx)
{
    if (l->n_listeners >= EVENTLOG_MAX_LISTENERS)
        return ERR_NOMEM;
    l->listeners[l->n_listeners++] = (struct listener){fn, ctx};
    return ERR_OK;
}

void eventlog_unlisten(struct eventlog *l, eventlog_listener_fn fn, void *ctx)
{
    for (size_t i = 0; i < l->n_listeners; i++) {
        if (l->listeners[i].fn == fn && l->listeners[i].ctx == ctx) {
            memmove(&l->listeners[i], &l->listeners[i + 1], (l->n_listeners - i - 1) * sizeof l->listeners[0]);
            l->n_listeners--;
            return;
        }
    }
}

/* ---- consumer groups ---- */

bool eventlog_group_name_ok(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > EVENTLOG_MAX_GROUP_NAME)
        return false;
    if (strcasecmp(name, EVENTLOG_DEFAULT_GROUP) == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

static ssize_t group_index(const struct eventlog *l, const char *name)
{
    for (size_t i = 0; i < l->n_groups; i++)
        if (strcasecmp(l->groups[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

int eventlog_group_add(struct eventlog *l, const char *name, bool *created)
{
    if (created)
        *created = false;
    if (!eventlog_group_name_ok(name))
        return ERR_INVALID;
    if (group_index(l, name) >= 0)
        return ERR_OK;
    if (l->n_groups >= EVENTLOG_MAX_GROUPS + 1)
        return ERR_TOO_BIG;
    char *copy = strdup(name);
    if (!copy)
        return ERR_NOMEM;
    l->groups[l->n_groups++] = copy;
    if (created)
        *created = true;
    return ERR_OK;
}

int eventlog_group_del(struct eventlog *l, const char *name)
{
    if (name && strcasecmp(name, EVENTLOG_DEFAULT_GROUP) == 0)
        return ERR_INVALID;
    ssize_t i = name ? group_index(l, name) : -1;
    if (i < 0)
        return ERR_NOT_FOUND;
    free(l->groups[i]);
    memmove(&l->groups[i], &l->groups[i + 1], (l->n_groups - (size_t)i - 1) * sizeof l->groups[0]);
    l->n_groups--;
    return ERR_OK;
}

const char *eventlog_group_find(const struct eventlog *l, const char *name)
{
    ssize_t i = name ? group_index(l, name) : -1;
    return i >= 0 ? l->groups[i] : NULL;
}

size_t eventlog_group_count(const struct eventlog *l)
{
    return l->n_groups;
}

const char *eventlog_group_at(const struct eventlog *l, size_t i)
{
    return i < l->n_groups ? l->groups[i] : NULL;
}
