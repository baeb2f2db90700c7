/* hub.c -- the IoT Hub core (see hub.h): presence per identity, method calls from REST to exactly one MQTT
 * connection and back, deadlines, takeover, and each identity's twin (twin.c) with the desired-property push
 * to its connection. Single-threaded.
 * Identities are keyed "device" or "device/module" ('/' cannot occur in ids).
 * Tests: tests/unit/test_session.c drives it through real sessions; tests/unit/test_rest_http.c from REST. */
#include "hub.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "db.h"
#include "registry.h"
#include "device_link.h"
#include "sessionstore.h"
#include "strmap.h"
#include "twin.h"
#include "twinstore.h"
#include <time.h>

/* What the hub knows of one identity, kept while the emulator runs (twins survive reconnects). */
struct hub_ident {
    struct device_link *link; /* the one live connection, or NULL */
    bool methods_ready;      /* that link takes method calls (MQTT: subscribed to $iothub/methods/POST/#) */
    bool desired_ready;      /* that link takes desired patches ($iothub/twin/PATCH/properties/desired/#) */
    struct twin *twin;       /* NULL until first used or loaded (a fresh twin then) */
    char *saved_session;     /* without a session store: a front's persisted session state, or NULL */
};

enum call_state { CALL_WAITING, CALL_DELIVERED };

struct hub_call {
    uint64_t id;
    enum call_state state;
    char *key;               /* identity key */
    char *method;
    char *payload;           /* NULL = empty body */
    size_t payload_len;
    int response_timeout_s;
    int connect_timeout_s;
    hub_call_fn fn;
    void *ctx;
    struct device_link *link; /* DELIVERED: the connection that got it (NULL once an answer is held) */
    char rid[24];
    struct loop_timer *timer;
    /* An answer held back by a method-reply delay fault (hub_hooks), released by release_timer. */
    bool held;
    int held_status;
    uint8_t *held_body;
    size_t held_len;
    struct loop_timer *release_timer;
    struct hub *hub;
    int64_t started_ms;      /* loop_now_ms at the start: the dashboard's latency */
    struct hub_call *prev, *next;
};

struct hub {
    struct loop *loop;
    struct registry *reg;
    struct db *session_db;   /* where persisted sessions live (hub_use_session_store), or NULL: in memory */
    struct strmap *idents;   /* key -> struct hub_ident */
    struct hub_call *calls;  /* every pending call */
    uint64_t next_call_id;
    struct hub_stats stats;
    const struct hub_hooks *hooks; /* fault injection's seam, or NULL */
    void *hooks_ctx;
    hub_twin_save_fn twin_save; /* the store's seam; NULL: twins live in memory only */
    void *twin_save_ctx;
    struct events *events;   /* the dashboard's live feed (hub_set_events), or NULL */
};

/* "device" or "device/module", cut to outlen - 1 (as snprintf did; without its cost per call). */
static void ident_key(const char *device_id, const char *module_id, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *s = device_id; *s && n + 1 < outlen; s++)
        out[n++] = *s;
    if (module_id && *module_id && n + 1 < outlen) {
        out[n++] = '/';
        for (const char *s = module_id; *s && n + 1 < outlen; s++)
            out[n++] = *s;
    }
    out[n] = '\0';
}

struct hub *hub_new(struct loop *loop, struct registry *reg)
{
    struct hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->loop = loop;
    h->reg = reg;
    h->idents = strmap_new();
    if (!h->idents) {
        free(h);
        return NULL;
    }
    return h;
}

static void free_ident(const char *key, void *value, void *ctx)
{
    struct hub_ident *id = value;
    twin_free(id->twin);
    free(id->saved_session);
    free(id);
}

static void call_unlink(struct hub *h, struct hub_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        h->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->timer) {
        loop_timer_cancel(h->loop, c->timer);
        c->timer = NULL;
    }
    if (c->release_timer) {
        loop_timer_cancel(h->loop, c->release_timer);
        c->release_timer = NULL;
    }
    h->stats.calls_pending--;
}

static void call_free(struct hub_call *c)
{
    free(c->key);
    free(c->method);
    free(c->payload);
    free(c->held_body);
    free(c);
}

/* Ends a call: unlinks it, then runs its callback (which may start or cancel other calls). */
static const char *outcome_name(enum hub_call_outcome o)
{
    switch (o) {
    case HUB_CALL_ANSWERED:
        return "answered";
    case HUB_CALL_NOT_FOUND:
        return "notFound";
    case HUB_CALL_NOT_ONLINE:
        return "notOnline";
    case HUB_CALL_TIMEOUT:
        return "timeout";
    case HUB_CALL_DISCONNECTED:
        return "disconnected";
    default:
        return "shutdown";
    }
}

static void call_finish(struct hub *h, struct hub_call *c, const struct hub_call_result *r)
{
    call_unlink(h, c);
    if (h->events)
        events_note(h->events, EVENTS_METHOD, c->key, c->method, outcome_name(r->outcome),
                    r->outcome == HUB_CALL_ANSWERED ? r->status : 0, loop_now_ms(h->loop) - c->started_ms);
    c->fn(c->ctx, r);
    call_free(c);
}

static void call_fail(struct hub *h, struct hub_call *c, enum hub_call_outcome outcome)
{
    struct hub_call_result r = {.outcome = outcome, .connect_timeout_s = c->connect_timeout_s};
    call_finish(h, c, &r);
}

void hub_free(struct hub *h)
{
    if (!h)
        return;
    while (h->calls)
        call_fail(h, h->calls, HUB_CALL_SHUTDOWN);
    strmap_each(h->idents, free_ident, NULL);
    strmap_free(h->idents);
    free(h);
}

static struct hub_ident *ident_get(struct hub *h, const char *key, bool create)
{
    struct hub_ident *id = strmap_get(h->idents, key);
    if (id || !create)
        return id;
    id = calloc(1, sizeof *id);
    if (!id)
        return NULL;
    if (strmap_set(h->idents, key, id)) {
        free(id);
        return NULL;
    }
    return id;
}

/* ---- persisted sessions ---- */

/* Splits "device" or "device/module" (ids cannot hold '/'). Returns false when it does not fit. */
static bool split_identity(const char *identity, char *dev, char *mod)
{
    const char *slash = strchr(identity, '/');
    size_t dlen = slash ? (size_t)(slash - identity) : strlen(identity);
    size_t mlen = slash ? strlen(slash + 1) : 0;
    if (dlen > REGISTRY_MAX_ID || mlen > REGISTRY_MAX_ID)
        return false;
    memcpy(dev, identity, dlen);
    dev[dlen] = '\0';
    memcpy(mod, slash ? slash + 1 : "", mlen);
    mod[mlen] = '\0';
    return true;
}

int hub_use_session_store(struct hub *h, struct db *db, char *err, size_t errlen)
{
    int rc = sessionstore_migrate(db, err, errlen);
    if (rc && db_is_read_only(db)) { /* serve what the store has; sessions then last as long as the process */
        log_warn("persisted sessions are kept in memory only: %s", err);
        return ERR_OK;
    }
    if (rc == ERR_OK)
        h->session_db = db;
    return rc;
}

int hub_saved_session_put(struct hub *h, const char *identity, const char *state)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    if (h->session_db)
        return split_identity(identity, dev, mod) ? sessionstore_put(h->session_db, dev, mod, state) : ERR_INVALID;
    struct hub_ident *id = ident_get(h, identity, true);
    char *copy = strdup(state);
    if (!id || !copy) {
        free(copy);
        return ERR_NOMEM;
    }
    free(id->saved_session);
    id->saved_session = copy;
    return ERR_OK;
}

char *hub_saved_session_get(struct hub *h, const char *identity)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    if (h->session_db)
        return split_identity(identity, dev, mod) ? sessionstore_get(h->session_db, dev, mod) : NULL;
    struct hub_ident *id = ident_get(h, identity, false);
    return id && id->saved_session ? strdup(id->saved_session) : NULL;
}

void hub_saved_session_drop(struct hub *h, const char *identity)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    if (h->session_db) {
        if (split_identity(identity, dev, mod))
            sessionstore_delete(h->session_db, dev, mod);
        return;
    }
    struct hub_ident *id = ident_get(h, identity, false);
    if (id) {
        free(id->saved_session);
        id->saved_session = NULL;
    }
}

/* ---- method calls ---- */

static void on_call_timer(struct loop *l, void *ctx)
{
    struct hub_call *c = ctx;
    c->timer = NULL;
    if (c->state == CALL_WAITING) {
        log_info("method %s on %s: device not online within %ds", c->method, c->key, c->connect_timeout_s);
        call_fail(c->hub, c, HUB_CALL_NOT_ONLINE);
    } else {
        log_info("method %s on %s: no response within %ds", c->method, c->key, c->response_timeout_s);
        call_fail(c->hub, c, HUB_CALL_TIMEOUT);
    }
}

/* Sends a call to the identity's link: the payload is the caller's (a call delivered at once) or the call's
 * copy (a call that waited). Returns ERR_OK, or an error (the call is then untouched). */
static int call_deliver(struct hub *h, struct hub_call *c, struct device_link *link, const char *payload,
                        size_t payload_len)
{
    int rc = link->ops->deliver_method(link, c->method, (const uint8_t *)payload, payload_len, c->rid);
    if (rc)
        return rc;
    c->state = CALL_DELIVERED;
    c->link = link;
    if (c->timer)
        loop_timer_cancel(h->loop, c->timer);
    c->timer = loop_timer_add(h->loop, (int64_t)c->response_timeout_s * 1000, on_call_timer, c);
    log_debug("method %s delivered to %s with rid %s", c->method, c->key, c->rid);
    return c->timer ? ERR_OK : ERR_NOMEM;
}

/* keep_payload: the call waits for its device, so it needs its own copy of the payload; a call delivered at
 * once is encoded from the caller's bytes inside hub_call_start and keeps none (issue 20: one copy less). */
static struct hub_call *call_new(struct hub *h, const struct hub_call_request *req, const char *key,
                                 bool keep_payload, hub_call_fn fn, void *ctx)
{
    struct hub_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->key = strdup(key);
    c->method = strdup(req->method_name);
    if (keep_payload && req->payload && req->payload_len) {
        c->payload = malloc(req->payload_len);
        if (c->payload)
            memcpy(c->payload, req->payload, req->payload_len);
        c->payload_len = req->payload_len;
    }
    if (!c->key || !c->method || (keep_payload && req->payload && req->payload_len && !c->payload)) {
        call_free(c);
        return NULL;
    }
    c->id = ++h->next_call_id;
    c->response_timeout_s = req->response_timeout_s;
    c->connect_timeout_s = req->connect_timeout_s;
    c->fn = fn;
    c->ctx = ctx;
    c->hub = h;
    c->started_ms = loop_now_ms(h->loop);
    c->next = h->calls;
    if (h->calls)
        h->calls->prev = c;
    h->calls = c;
    h->stats.calls_pending++;
    h->stats.calls_total++;
    return c;
}

uint64_t hub_call_start(struct hub *h, const struct hub_call_request *req, hub_call_fn fn, void *ctx,
                        struct hub_call_result *now)
{
    memset(now, 0, sizeof *now);
    now->connect_timeout_s = req->connect_timeout_s;
    if (!registry_find(h->reg, req->device_id, req->module_id)) {
        now->outcome = HUB_CALL_NOT_FOUND;
        return 0;
    }
    char key[2 * REGISTRY_MAX_ID + 2];
    ident_key(req->device_id, req->module_id, key, sizeof key);
    struct hub_ident *id = ident_get(h, key, false);
    bool online = id && id->link && id->methods_ready;
    if (!online && req->connect_timeout_s <= 0) {
        now->outcome = HUB_CALL_NOT_ONLINE;
        events_note(h->events, EVENTS_METHOD, key, req->method_name, "notOnline", 0, 0);
        return 0;
    }
    struct hub_call *c = call_new(h, req, key, !online, fn, ctx);
    if (!c) {
        now->outcome = HUB_CALL_SHUTDOWN;
        return 0;
    }
    uint64_t call_id = c->id;
    if (online) {
        if (call_deliver(h, c, id->link, req->payload, req->payload_len) == ERR_OK)
            return call_id;
        /* The connection could not take it (and is closing): the device is not online. */
        call_unlink(h, c);
        call_free(c);
        now->outcome = HUB_CALL_NOT_ONLINE;
        events_note(h->events, EVENTS_METHOD, key, req->method_name, "notOnline", 0, 0);
        return 0;
    }
    c->state = CALL_WAITING;
    c->timer = loop_timer_add(h->loop, (int64_t)req->connect_timeout_s * 1000, on_call_timer, c);
    if (!c->timer) {
        call_unlink(h, c);
        call_free(c);
        now->outcome = HUB_CALL_SHUTDOWN;
        return 0;
    }
    log_debug("method %s on %s waits up to %ds for the device", req->method_name, key, req->connect_timeout_s);
    return call_id;
}

void hub_call_cancel(struct hub *h, uint64_t call_id)
{
    for (struct hub_call *c = h->calls; c; c = c->next) {
        if (c->id == call_id) {
            log_debug("method %s on %s: caller went away", c->method, c->key);
            call_unlink(h, c);
            call_free(c);
            return;
        }
    }
}

/* ---- connected identities (device links; the fronts call these) ---- */

int hub_link_online(struct hub *h, struct device_link *link, const char *device_id, const char *module_id)
{
    struct hub_ident *id = ident_get(h, link->identity, true);
    if (!id)
        return ERR_NOMEM;
    struct device_link *old = id->link;
    if (old && old != link) {
        /* Detach the old connection first, so its close finds nothing left to undo here. */
        hub_link_offline(h, old);
        old->ops->kick(old, "a new connection of the same identity took over");
    } else if (old == link) {
        return ERR_OK;
    }
    id->link = link;
    id->methods_ready = false;
    id->desired_ready = false;
    h->stats.connections++;
    if (!module_id || !*module_id)
        h->stats.devices_connected++;
    registry_set_connected(h->reg, device_id, module_id, true, loop_wall_s(h->loop));
    events_note(h->events, EVENTS_CONNECTION, link->identity, "connected", NULL, 0, -1);
    return ERR_OK;
}

void hub_link_methods_ready(struct hub *h, struct device_link *link)
{
    struct hub_ident *id = ident_get(h, link->identity, false);
    if (!id || id->link != link || id->methods_ready)
        return;
    id->methods_ready = true;
    h->stats.method_listeners++;
    /* Deliver the calls that were waiting for this identity to come online. */
    struct hub_call *c = h->calls;
    while (c) {
        struct hub_call *next = c->next;
        if (c->state == CALL_WAITING && strcmp(c->key, link->identity) == 0) {
            int rc = call_deliver(h, c, link, c->payload, c->payload_len);
            if (rc == ERR_CLOSED)
                return; /* the connection is closing: the rest keep waiting for the next one */
            if (rc != ERR_OK) {
                call_fail(h, c, HUB_CALL_DISCONNECTED); /* this call could not be sent; try the others */
                next = h->calls;                        /* the callback may have changed the list: rescan */
            }
        }
        c = next;
    }
}

void hub_link_methods_stopped(struct hub *h, struct device_link *link)
{
    struct hub_ident *id = ident_get(h, link->identity, false);
    if (id && id->link == link && id->methods_ready) {
        id->methods_ready = false;
        h->stats.method_listeners--;
    }
}

static void on_release_timer(struct loop *l, void *ctx)
{
    struct hub_call *c = ctx;
    c->release_timer = NULL;
    log_info("method %s on %s: delayed answer released", c->method, c->key);
    struct hub_call_result r = {
        .outcome = HUB_CALL_ANSWERED, .status = c->held_status, .payload = c->held_body, .payload_len = c->held_len};
    call_finish(c->hub, c, &r);
}

/* A reply the fault hooks hold back: kept with the call (detached from its link, so a disconnect no longer
 * fails it) until the delay passes; the response timeout still runs and wins if it comes first. */
static void hold_reply(struct hub *h, struct hub_call *c, int status, const uint8_t *body, size_t len, int64_t delay)
{
    c->held_body = malloc(len ? len : 1);
    c->release_timer = c->held_body ? loop_timer_add(h->loop, delay, on_release_timer, c) : NULL;
    if (!c->release_timer) {
        struct hub_call_result r = {.outcome = HUB_CALL_ANSWERED, .status = status, .payload = body, .payload_len = len};
        call_finish(h, c, &r); /* out of memory: answer now */
        return;
    }
    memcpy(c->held_body, body, len);
    c->held_len = len;
    c->held_status = status;
    c->held = true;
    c->link = NULL;
    log_info("method %s on %s: answer held back %lld ms (fault injection)", c->method, c->key, (long long)delay);
}

void hub_link_method_reply(struct hub *h, struct device_link *link, const char *rid, int status, const uint8_t *body,
                              size_t len)
{
    for (struct hub_call *c = h->calls; c; c = c->next) {
        if (c->state == CALL_DELIVERED && c->link == link && strcmp(c->rid, rid) == 0) {
            int64_t delay = 0;
            enum hub_reply_policy p = h->hooks && h->hooks->method_reply
                                          ? h->hooks->method_reply(h->hooks_ctx, link->identity, &delay)
                                          : HUB_REPLY_PASS;
            if (p == HUB_REPLY_DROP) {
                log_info("method %s on %s: answer dropped (fault injection); the caller will time out", c->method,
                         c->key);
                c->link = NULL; /* kept until its response timeout, whatever the connection does */
                return;
            }
            if (p == HUB_REPLY_DELAY && delay > 0) {
                hold_reply(h, c, status, body, len, delay);
                return;
            }
            struct hub_call_result r = {
                .outcome = HUB_CALL_ANSWERED, .status = status, .payload = body, .payload_len = len};
            call_finish(h, c, &r);
            return;
        }
    }
    char text[64];
    size_t i = 0;
    for (; rid[i] && i + 1 < sizeof text; i++)
        text[i] = rid[i] > 0x20 && rid[i] < 0x7f ? rid[i] : '?';
    text[i] = '\0';
    log_warn("%s: method reply with unknown or late rid %s dropped", link->identity, text);
}

void hub_link_offline(struct hub *h, struct device_link *link)
{
    struct hub_ident *id = ident_get(h, link->identity, false);
    if (id && id->link == link) {
        if (id->methods_ready)
            h->stats.method_listeners--;
        if (id->desired_ready)
            h->stats.desired_listeners--;
        id->link = NULL;
        id->methods_ready = false;
        id->desired_ready = false;
        h->stats.connections--;
        if (!strchr(link->identity, '/'))
            h->stats.devices_connected--;
        char dev[REGISTRY_MAX_ID + 1];
        const char *ident = link->identity;
        const char *slash = strchr(ident, '/');
        size_t n = slash ? (size_t)(slash - ident) : strlen(ident);
        if (n > REGISTRY_MAX_ID)
            n = REGISTRY_MAX_ID;
        memcpy(dev, ident, n);
        dev[n] = '\0';
        registry_set_connected(h->reg, dev, slash ? slash + 1 : NULL, false, loop_wall_s(h->loop));
        events_note(h->events, EVENTS_CONNECTION, link->identity, "disconnected", NULL, 0, -1);
    }
    if (h->hooks && h->hooks->link_offline)
        h->hooks->link_offline(h->hooks_ctx, link);
    /* Calls delivered to this connection end now, not at their timeout. */
    struct hub_call *c = h->calls;
    while (c) {
        struct hub_call *next = c->next;
        if (c->state == CALL_DELIVERED && c->link == link) {
            log_info("method %s on %s: the device disconnected before answering", c->method, c->key);
            call_fail(h, c, HUB_CALL_DISCONNECTED);
            next = h->calls; /* callbacks may have changed the list: rescan */
        }
        c = next;
    }
}

/* The identity keys of a device (and its modules), or of one module. */
struct ident_match {
    const char *device_id;
    const char *module_id; /* NULL: the device and all of its modules */
    char **keys;
    size_t n, cap;
};

static bool key_matches(const struct ident_match *m, const char *key)
{
    size_t dlen = strlen(m->device_id);
    if (strncmp(key, m->device_id, dlen) != 0)
        return false;
    if (m->module_id)
        return key[dlen] == '/' && strcmp(key + dlen + 1, m->module_id) == 0;
    return key[dlen] == '\0' || key[dlen] == '/';
}

static void collect_keys(const char *key, void *value, void *ctx)
{
    struct ident_match *m = ctx;
    if (!key_matches(m, key))
        return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        char **p = realloc(m->keys, cap * sizeof *p);
        if (!p)
            return;
        m->keys = p;
        m->cap = cap;
    }
    if ((m->keys[m->n] = strdup(key)))
        m->n++;
}

/* Closes the connections of the matching identities and, with forget, drops what the hub keeps of them
 * (their twins), so an identity created again with the same id starts afresh. */
static void close_identities(struct hub *h, const char *device_id, const char *module_id, const char *reason,
                             bool forget)
{
    struct ident_match m = {.device_id = device_id, .module_id = module_id && *module_id ? module_id : NULL};
    strmap_each(h->idents, collect_keys, &m);
    for (size_t i = 0; i < m.n; i++) {
        struct hub_ident *id = strmap_get(h->idents, m.keys[i]);
        if (id && id->link) {
            struct device_link *link = id->link;
            hub_link_offline(h, link);
            link->ops->kick(link, reason);
        }
        if (id && forget) {
            strmap_remove(h->idents, m.keys[i]);
            free_ident(m.keys[i], id, NULL);
        }
        free(m.keys[i]);
    }
    free(m.keys);
}

void hub_disconnect_identity(struct hub *h, const char *device_id, const char *module_id, const char *reason)
{
    close_identities(h, device_id, module_id, reason, false);
}

void hub_forget_identity(struct hub *h, const char *device_id, const char *module_id)
{
    close_identities(h, device_id, module_id, "identity deleted", true);
}

void hub_set_hooks(struct hub *h, const struct hub_hooks *hooks, void *ctx)
{
    h->hooks = hooks;
    h->hooks_ctx = ctx;
}

struct device_link *hub_link_of(struct hub *h, const char *identity)
{
    struct hub_ident *id = ident_get(h, identity, false);
    return id ? id->link : NULL;
}

void hub_link_drop(struct hub *h, struct device_link *link, bool abrupt, const char *reason)
{
    hub_link_offline(h, link);
    if (abrupt && link->ops->abort)
        link->ops->abort(link, reason);
    else
        link->ops->kick(link, reason);
}

void hub_set_events(struct hub *h, struct events *ev)
{
    h->events = ev;
}

void hub_get_stats(const struct hub *h, struct hub_stats *out)
{
    *out = h->stats;
}


/* ---- twins ---- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hub_set_twin_store(struct hub *h, hub_twin_save_fn save, void *ctx)
{
    h->twin_save = save;
    h->twin_save_ctx = ctx;
}

int hub_twin_load(struct hub *h, const char *device_id, const char *module_id, const char *text, size_t len)
{
    char key[2 * REGISTRY_MAX_ID + 2];
    ident_key(device_id, module_id, key, sizeof key);
    struct twin *t = NULL;
    int rc = twin_load(text, len, &t);
    if (rc)
        return rc;
    struct hub_ident *id = ident_get(h, key, true);
    if (!id) {
        twin_free(t);
        return ERR_NOMEM;
    }
    twin_free(id->twin);
    id->twin = t;
    return ERR_OK;
}

static int save_to_db(void *ctx, const char *device_id, const char *module_id, const char *text)
{
    return twinstore_save(ctx, device_id, module_id, text);
}

static int load_from_db(void *ctx, const char *device_id, const char *module_id, const char *text, size_t len)
{
    return hub_twin_load(ctx, device_id, module_id, text, len);
}

int hub_use_twin_store(struct hub *h, struct db *db)
{
    char err[256] = "";
    int rc = twinstore_migrate(db, err, sizeof err);
    if (rc && db_is_read_only(db)) {
        /* A read-only store from before twins: served without them; every twin change fails to save (5xx). */
        log_warn("store: read-only and without the twins table (%s): twins start empty and cannot be changed", err);
        hub_set_twin_store(h, save_to_db, db);
        return ERR_OK;
    }
    if (rc) {
        log_error("store: twins: %s", err);
        return rc;
    }
    rc = twinstore_load(db, load_from_db, h);
    if (rc == ERR_OK)
        hub_set_twin_store(h, save_to_db, db);
    return rc;
}

/* The identity's twin, created fresh on first use. NULL on ERR_NOMEM. */
static struct twin *twin_of(struct hub *h, const char *key, struct hub_ident **ident)
{
    struct hub_ident *id = ident_get(h, key, true);
    if (id && !id->twin)
        id->twin = twin_new();
    if (ident)
        *ident = id;
    return id ? id->twin : NULL;
}

/* Splits an identity key back into its ids. */
static void key_split(const char *key, char dev[REGISTRY_MAX_ID + 1], const char **mod)
{
    const char *slash = strchr(key, '/');
    size_t n = slash ? (size_t)(slash - key) : strlen(key);
    if (n > REGISTRY_MAX_ID)
        n = REGISTRY_MAX_ID;
    memcpy(dev, key, n);
    dev[n] = '\0';
    *mod = slash ? slash + 1 : NULL;
}

/* Hands the changed twin to the store, before the change is acknowledged. The change stays in memory when
 * that fails (the caller answers with a server error; the next successful save writes it). */
static int twin_persist(struct hub *h, const char *key, const struct twin *t)
{
    if (!h->twin_save)
        return ERR_OK;
    char *text = twin_save(t);
    if (!text)
        return ERR_NOMEM;
    char dev[REGISTRY_MAX_ID + 1];
    const char *mod;
    key_split(key, dev, &mod);
    int rc = h->twin_save(h->twin_save_ctx, dev, mod, text);
    free(text);
    if (rc)
        log_error("twin of %s: could not be saved (%s)", key, err_str(rc));
    return rc;
}

/* Puts back the twin as it was before a change the store could not save (before: its twin_save text). */
static void twin_restore(struct hub_ident *id, const char *before)
{
    struct twin *old = NULL;
    if (before && twin_load(before, strlen(before), &old) == ERR_OK) {
        twin_free(id->twin);
        id->twin = old;
    }
}

/* Sends a desired patch to the identity's connection, when it listens for them. */
static void push_desired(struct hub_ident *id, const char *key, const json_t *patch, int64_t version)
{
    if (!id->link || !id->desired_ready)
        return;
    char *text = json_dumps(patch, JSON_COMPACT);
    if (!text || id->link->ops->push_desired(id->link, (const uint8_t *)text, strlen(text), version) != ERR_OK)
        log_warn("twin of %s: desired patch $version %lld could not be sent", key, (long long)version);
    else
        log_debug("twin of %s: desired patch $version %lld sent", key, (long long)version);
    free(text);
}

int hub_twin_get(struct hub *h, const char *device_id, const char *module_id, json_t **doc, char *etag,
                 size_t etaglen)
{
    *doc = NULL;
    const struct identity *ident = registry_find(h->reg, device_id, module_id);
    if (!ident)
        return ERR_NOT_FOUND;
    char key[2 * REGISTRY_MAX_ID + 2];
    ident_key(device_id, module_id, key, sizeof key);
    struct twin *t = twin_of(h, key, NULL);
    if (!t || !(*doc = twin_document(t, ident)))
        return ERR_NOMEM;
    if (etag)
        twin_etag(t, etag, etaglen);
    return ERR_OK;
}

int hub_twin_update(struct hub *h, const struct hub_twin_update *u, json_t **doc, char *etag, size_t etaglen,
                    struct twin_error *err)
{
    *doc = NULL;
    const struct identity *ident = registry_find(h->reg, u->device_id, u->module_id);
    if (!ident)
        return ERR_NOT_FOUND;
    char key[2 * REGISTRY_MAX_ID + 2];
    ident_key(u->device_id, u->module_id, key, sizeof key);
    struct hub_ident *id = NULL;
    struct twin *t = twin_of(h, key, &id);
    if (!t)
        return ERR_NOMEM;
    if (!twin_etag_matches(t, u->if_match))
        return ERR_PRECONDITION;
    json_t *push = NULL;
    char *before = h->twin_save ? twin_save(t) : NULL;
    if (h->twin_save && !before)
        return ERR_NOMEM;
    int rc = twin_update(t, u->body, u->mode, wall_ms(), &push, err);
    if (rc == ERR_OK && (rc = twin_persist(h, key, t)) != ERR_OK)
        twin_restore(id, before);
    free(before);
    if (rc == ERR_OK && push)
        push_desired(id, key, push, twin_desired_version(t));
    if (rc == ERR_OK)
        events_note(h->events, EVENTS_TWIN, key, push ? "desired" : "tags", NULL, twin_desired_version(t), -1);
    json_decref(push);
    if (rc)
        return rc;
    if (!(*doc = twin_document(t, ident)))
        return ERR_NOMEM;
    if (etag)
        twin_etag(t, etag, etaglen);
    return ERR_OK;
}

/* Calls fn with the twin document of one identity (a fresh twin's when it never had one). */
static int each_one(struct hub *h, const char *device_id, const char *module_id, hub_twin_each_fn fn, void *ctx,
                    bool *stop)
{
    const struct identity *ident = registry_find(h->reg, device_id, module_id);
    if (!ident)
        return ERR_OK;
    char key[2 * REGISTRY_MAX_ID + 2];
    ident_key(device_id, module_id, key, sizeof key);
    struct hub_ident *id = strmap_get(h->idents, key);
    struct twin *fresh = id && id->twin ? NULL : twin_new();
    const struct twin *t = id && id->twin ? id->twin : fresh;
    json_t *doc = t ? twin_document(t, ident) : NULL;
    twin_free(fresh);
    if (!doc)
        return ERR_NOMEM;
    *stop = !fn(ctx, doc);
    json_decref(doc);
    return ERR_OK;
}

int hub_twin_each(struct hub *h, bool modules, hub_twin_each_fn fn, void *ctx)
{
    json_t *devices = registry_list_devices(h->reg, SIZE_MAX);
    if (!devices)
        return ERR_NOMEM;
    int rc = ERR_OK;
    bool stop = false;
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d) {
        const char *device_id = json_string_value(json_object_get(d, "deviceId"));
        if (!device_id)
            continue;
        if (!modules) {
            rc = each_one(h, device_id, NULL, fn, ctx, &stop);
        } else {
            json_t *mods = registry_list_modules(h->reg, device_id);
            size_t j;
            json_t *m;
            json_array_foreach(mods, j, m) {
                const char *module_id = json_string_value(json_object_get(m, "moduleId"));
                if (module_id && (rc = each_one(h, device_id, module_id, fn, ctx, &stop)) != ERR_OK)
                    break;
                if (stop)
                    break;
            }
            json_decref(mods);
        }
        if (rc || stop)
            break;
    }
    json_decref(devices);
    return rc;
}

void hub_link_desired_ready(struct hub *h, struct device_link *link)
{
    struct hub_ident *id = ident_get(h, link->identity, false);
    if (id && id->link == link && !id->desired_ready) {
        id->desired_ready = true;
        h->stats.desired_listeners++;
    }
}

void hub_link_desired_stopped(struct hub *h, struct device_link *link)
{
    struct hub_ident *id = ident_get(h, link->identity, false);
    if (id && id->link == link && id->desired_ready) {
        id->desired_ready = false;
        h->stats.desired_listeners--;
    }
}

int hub_link_twin_get(struct hub *h, struct device_link *link, struct buf *out)
{
    struct twin *t = twin_of(h, link->identity, NULL);
    json_t *doc = t ? twin_properties(t) : NULL;
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text)
        return ERR_NOMEM;
    int rc = buf_append_str(out, text);
    free(text);
    return rc;
}

int hub_link_twin_patch(struct hub *h, struct device_link *link, const uint8_t *body, size_t len, int64_t expected,
                        int64_t *version, struct twin_error *err)
{
    *version = 0;
    json_t *patch = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!patch) {
        err->code = 400006;
        snprintf(err->message, sizeof err->message, "The reported properties patch is not valid JSON.");
        return ERR_MALFORMED;
    }
    struct hub_ident *id = NULL;
    struct twin *t = twin_of(h, link->identity, &id);
    if (t && expected >= 0 && expected != twin_reported_version(t)) {
        json_decref(patch);
        return ERR_PRECONDITION;
    }
    char *before = t && h->twin_save ? twin_save(t) : NULL;
    int rc = !t || (h->twin_save && !before) ? ERR_NOMEM : twin_report(t, patch, wall_ms(), err);
    json_decref(patch);
    if (rc == ERR_OK && (rc = twin_persist(h, link->identity, t)) != ERR_OK)
        twin_restore(id, before);
    free(before);
    if (rc == ERR_OK) {
        *version = twin_reported_version(id->twin);
        events_note(h->events, EVENTS_TWIN, link->identity, "reported", NULL, *version, -1);
    }
    return rc;
}
