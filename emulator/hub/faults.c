/* faults.c -- fault injection and throttling (see faults.h): the SDKs' AzIoTHub_FaultOperation* properties,
 * the /emulator/faults control API and --throttle token buckets, over one list of active faults.
 * Choices (README "Testing failures"): a KillTcp/ShutDownMqtt message is not acknowledged and its connection
 * goes after the delay (abruptly / cleanly); a duration then refuses that identity's connects (CONNACK 3) for
 * that long. InvokeThrottling / InvokeMaxMessageQuota / InvokeAuthError are acknowledged; from the delay on,
 * for the duration, the identity's D2C sends are refused the way its transport shows it (MQTT: the connection
 * is closed, as the hub does; HTTP: 429 / 403 / 401) and, for auth errors, its connects get CONNACK 5.
 * Tests: tests/unit/test_faults.c. */
#include "faults.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fnmatch.h>

#include "device_link.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "strmap.h"
#include "url.h"

#define FAULTS_IDENT_MAX (2 * REGISTRY_MAX_ID + 2)
#define FAULTS_ROUTE_MAX 256
#define FAULTS_MAX_SECONDS 86400
#define FAULTS_MAX_COUNT 1000000
#define FAULTS_MAX_ACTIVE 1024 /* control API: more active faults than this is refused */
/* An SDK re-publishes an unacknowledged message after it reconnects; the fault message that caused a drop
 * would then drop every new connection. An identical request from the same identity this soon after the drop
 * (plus its duration) is taken for that re-send: acknowledged, not carried out again. */
#define FAULTS_RESEND_GUARD_MS 15000

enum entry_kind {
    E_DROP,         /* a connection to drop when the timer fires (KillTcp, ShutDownMqtt) */
    E_REFUSE,       /* connects refused with code */
    E_THROTTLE,     /* D2C refused: throttled */
    E_QUOTA,        /* D2C refused: quota */
    E_AUTH,         /* D2C refused and connects refused 5 */
    E_METHOD_DELAY, /* method replies held delay_ms */
    E_METHOD_DROP,  /* method replies dropped */
    E_REST,         /* REST requests answered status */
    E_TOKEN,        /* tokens with se <= token_se refused */
    E_GUARD,        /* after a drop: the SDK's re-send of the same fault message is acknowledged, not repeated */
};

static const char *const entry_names[] = {"drop", "refuseConnect", "InvokeThrottling", "InvokeMaxMessageQuota",
                                          "InvokeAuthError", "methodReplies", "methodReplies", "rest",
                                          "expireToken", "resendGuard"};

struct entry {
    uint64_t id;
    enum entry_kind kind;
    const char *source;           /* "device" (the SDK protocol) or "api" */
    char ident[FAULTS_IDENT_MAX]; /* "" for REST faults */
    char type[40];
    int64_t from_ms, until_ms;    /* active in [from, until); until 0: no end */
    struct faults *f;
    struct device_link *link;     /* E_DROP */
    bool abrupt;
    bool front;                   /* E_DROP: a type the front carries out (device_link fault op) */
    struct loop_timer *timer;
    int code;                     /* E_REFUSE: CONNACK code */
    int64_t delay_ms;             /* E_METHOD_DELAY */
    int status, retry_after_s;    /* E_REST */
    long count_left;              /* E_REST: -1 = unlimited (until until_ms) */
    char method[12];              /* E_REST: "" = any */
    char route[FAULTS_ROUTE_MAX]; /* E_REST: fnmatch pattern on the path */
    int64_t token_se;             /* E_TOKEN */
    char reason[96];              /* E_GUARD: the request that caused the drop */
    int delay_s, duration_s;
    struct entry *next;
};

struct bucket {
    double rate_per_ms;
    double burst;
    double tokens;
    int64_t last_ms;
};

struct faults {
    struct loop *loop;
    struct hub *hub;
    bool sdk_on;
    struct entry *entries;
    size_t count;
    uint64_t next_id;
    struct strmap *token_se; /* identity -> int64_t *: the se of its last accepted token */
    int tier;                /* -1 off, else index into tiers */
    struct bucket buckets[FAULTS_OPS];
};

/* ---- the published limits (IoT Hub quotas and throttling, one unit; README lists them) ---- */

static const char *const tier_names[] = {"free", "s1", "s2", "s3"};
static const char *const op_names[FAULTS_OPS] = {"deviceConnections", "deviceToCloudSends", "directMethods",
                                                 "twinReads", "twinUpdates", "identityRegistryOperations",
                                                 "queries"};
/* Per op: amount per window for free, s1, s2, s3, and the window in seconds. Direct methods count 4 KB
 * blocks of payload (160 KB/s = 40 blocks/s at S1). */
static const struct {
    double amount[4];
    int window_s;
} limits[FAULTS_OPS] = {
    [FAULTS_OP_CONNECT] = {{100, 100, 120, 6000}, 1},
    [FAULTS_OP_D2C] = {{100, 100, 120, 6000}, 1},
    [FAULTS_OP_METHOD] = {{40, 40, 120, 6144}, 1},
    [FAULTS_OP_TWIN_READ] = {{100, 100, 100, 500}, 1},
    [FAULTS_OP_TWIN_UPDATE] = {{50, 50, 50, 250}, 1},
    [FAULTS_OP_REGISTRY] = {{100, 100, 100, 5000}, 60},
    [FAULTS_OP_QUERY] = {{20, 20, 20, 1000}, 60},
};

/* ---- entries ---- */

static void hook_link_offline(void *ctx, struct device_link *link);
static enum hub_reply_policy hook_method_reply(void *ctx, const char *identity, int64_t *delay_ms);
static const struct hub_hooks faults_hooks = {.link_offline = hook_link_offline, .method_reply = hook_method_reply};

struct faults *faults_new(struct loop *loop, struct hub *hub)
{
    struct faults *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->token_se = strmap_new();
    if (!f->token_se) {
        free(f);
        return NULL;
    }
    f->loop = loop;
    f->hub = hub;
    f->sdk_on = true;
    f->tier = -1;
    if (hub)
        hub_set_hooks(hub, &faults_hooks, f);
    return f;
}

static void entry_free(struct faults *f, struct entry *e)
{
    if (e->timer)
        loop_timer_cancel(f->loop, e->timer);
    free(e);
}

static void free_se(const char *key, void *value, void *ctx)
{
    free(value);
}

void faults_free(struct faults *f)
{
    if (!f)
        return;
    if (f->hub)
        hub_set_hooks(f->hub, NULL, NULL);
    faults_control_clear(f, 0);
    strmap_each(f->token_se, free_se, NULL);
    strmap_free(f->token_se);
    free(f);
}

void faults_set_sdk_protocol(struct faults *f, bool on)
{
    f->sdk_on = on;
}

bool faults_sdk_protocol(const struct faults *f)
{
    return f && f->sdk_on;
}

static struct entry *entry_add(struct faults *f, enum entry_kind kind, const char *ident, const char *source)
{
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->id = ++f->next_id;
    e->kind = kind;
    e->f = f;
    e->source = source;
    e->count_left = -1;
    snprintf(e->ident, sizeof e->ident, "%s", ident ? ident : "");
    snprintf(e->type, sizeof e->type, "%s", entry_names[kind]);
    e->from_ms = loop_now_ms(f->loop);
    e->next = f->entries;
    f->entries = e;
    f->count++;
    return e;
}

static void entry_remove(struct faults *f, struct entry *e)
{
    for (struct entry **p = &f->entries; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            f->count--;
            entry_free(f, e);
            return;
        }
    }
}

/* Forgets faults whose window is over (pending drops stay until their timer fires). */
static void prune(struct faults *f)
{
    int64_t now = loop_now_ms(f->loop);
    struct entry **p = &f->entries;
    while (*p) {
        struct entry *e = *p;
        bool over = (e->kind != E_DROP && e->until_ms && now >= e->until_ms) || (e->kind == E_REST && e->count_left == 0);
        if (over) {
            log_info("fault %llu (%s%s%s) is over", (unsigned long long)e->id, e->type, e->ident[0] ? " on " : "",
                     e->ident);
            *p = e->next;
            f->count--;
            entry_free(f, e);
        } else {
            p = &e->next;
        }
    }
}

/* The first active entry of kind for ident (now within its window). */
static struct entry *active(struct faults *f, enum entry_kind kind, const char *ident)
{
    int64_t now = loop_now_ms(f->loop);
    for (struct entry *e = f->entries; e; e = e->next)
        if (e->kind == kind && strcmp(e->ident, ident) == 0 && now >= e->from_ms && (!e->until_ms || now < e->until_ms))
            return e;
    return NULL;
}

/* ---- the SDK protocol ---- */

void faults_request_init(struct faults_request *r)
{
    memset(r, 0, sizeof *r);
}

static const struct {
    const char *name;
    enum faults_kind kind;
} kind_names[] = {
    {"KillTcp", FAULTS_KIND_KILL_TCP},
    {"ShutDownMqtt", FAULTS_KIND_SHUTDOWN},
    {"InvokeThrottling", FAULTS_KIND_THROTTLE},
    {"InvokeMaxMessageQuota", FAULTS_KIND_QUOTA},
    {"InvokeAuthError", FAULTS_KIND_AUTH},
    {"ShutDownAmqp", FAULTS_KIND_AMQP},
};

enum faults_kind faults_kind_of(const char *type)
{
    if (!type)
        return FAULTS_KIND_UNKNOWN;
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (strcasecmp(type, kind_names[i].name) == 0)
            return kind_names[i].kind;
    return strncasecmp(type, "KillAmqp", 8) == 0 ? FAULTS_KIND_AMQP : FAULTS_KIND_UNKNOWN;
}

/* Printable ASCII copy (others as '?'), truncated to the field, so a property cannot break a log line. */
static void copy_printable(char *out, size_t outlen, const char *in)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen; i++)
        out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
    out[i] = '\0';
}

/* Whole seconds as decimal text, clamped to max; surrounding spaces are allowed; anything else is 0. */
static int seconds_of(const char *v, int max)
{
    if (!v)
        return 0;
    while (*v == ' ')
        v++;
    long n = 0;
    const char *p = v;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (*p - '0');
        if (n > max)
            n = max;
        p++;
    }
    while (*p == ' ')
        p++;
    return p == v || *p ? 0 : (int)n;
}

void faults_request_prop(struct faults_request *r, const char *key, const char *value)
{
    if (!key)
        return;
    if (strcasecmp(key, "AzIoTHub_FaultOperationType") == 0) {
        copy_printable(r->type, sizeof r->type, value ? value : "");
        r->kind = faults_kind_of(value);
    } else if (strcasecmp(key, "AzIoTHub_FaultOperationCloseReason") == 0) {
        copy_printable(r->reason, sizeof r->reason, value);
    } else if (strcasecmp(key, "AzIoTHub_FaultOperationDelayInSecs") == 0) {
        r->delay_s = seconds_of(value, FAULTS_MAX_DELAY_S);
    } else if (strcasecmp(key, "AzIoTHub_FaultOperationDurationInSecs") == 0) {
        r->duration_s = seconds_of(value, FAULTS_MAX_DURATION_S);
    }
}

bool faults_request_from_bag(struct faults_request *r, const char *bag, size_t len)
{
    faults_request_init(r);
    size_t i = 0;
    while (bag && i < len) {
        const char *item = bag + i;
        size_t n = 0;
        while (i + n < len && item[n] != '&')
            n++;
        const char *eq = memchr(item, '=', n);
        size_t klen = eq ? (size_t)(eq - item) : n;
        /* Only keys that can be ours are decoded (fault properties are short ASCII names). */
        if (klen >= 8 && klen < 64) {
            char *k = NULL, *v = NULL;
            if (url_decode(item, klen, &k, NULL) == ERR_OK && strncasecmp(k, "AzIoTHub_Fault", 14) == 0 &&
                (!eq || url_decode(eq + 1, n - klen - 1, &v, NULL) == ERR_OK))
                faults_request_prop(r, k, v);
            free(k);
            free(v);
        }
        i += n + 1;
    }
    return r->kind != FAULTS_KIND_NONE;
}

static void on_drop_timer(struct loop *l, void *ctx)
{
    struct entry *e = ctx;
    struct faults *f = e->f;
    e->timer = NULL;
    struct device_link *link = e->link;
    bool abrupt = e->abrupt;
    char reason[96];
    snprintf(reason, sizeof reason, "fault injection: %s", e->type);
    /* The entry becomes the re-send guard (detached from the link first: the drop calls hook_link_offline). */
    e->kind = E_GUARD;
    e->link = NULL;
    e->from_ms = loop_now_ms(l);
    e->until_ms = e->from_ms + (int64_t)e->duration_s * 1000 + FAULTS_RESEND_GUARD_MS;
    if (e->front) {
        log_info("%s: %s now (fault injection)", link->identity, e->type);
        link->ops->fault(link, e->type, e->reason);
        return;
    }
    log_info("%s: %s now (%s)", link->identity, abrupt ? "dropping the connection without a goodbye" : "closing the connection",
             reason);
    hub_link_drop(f->hub, link, abrupt, reason);
}

/* Adds a window entry [now + delay, now + delay + duration) of kind for ident. */
static struct entry *add_window(struct faults *f, enum entry_kind kind, const char *ident, const char *source,
                                int64_t delay_ms, int64_t duration_ms)
{
    struct entry *e = entry_add(f, kind, ident, source);
    if (e) {
        e->from_ms = loop_now_ms(f->loop) + delay_ms;
        e->until_ms = e->from_ms + duration_ms;
    }
    return e;
}

/* Carries out one SDK-protocol request for link (or, from the control API, for ident with link possibly
 * NULL). Returns ERR_OK, ERR_INVALID (a drop without a connection) or ERR_NOMEM; *hold tells whether the
 * message asking for it must go unacknowledged. */
static int schedule(struct faults *f, const char *ident, struct device_link *link, const struct faults_request *r,
                    const char *source, bool *hold, struct entry **made)
{
    int64_t delay = (int64_t)r->delay_s * 1000, duration = (int64_t)r->duration_s * 1000;
    *hold = false;
    *made = NULL;
    log_info("fault injection: %s asks for %s (reason '%s', delay %ds, duration %ds)", ident, r->type, r->reason,
             r->delay_s, r->duration_s);
    bool by_front = r->kind == FAULTS_KIND_AMQP && link && link->ops->fault;
    switch (r->kind) {
    case FAULTS_KIND_AMQP:
        if (!by_front) {
            log_info("fault injection: %s: %s applies to AMQP connections only; ignored", ident, r->type);
            return ERR_OK;
        }
        __attribute__((fallthrough)); /* timed here, carried out by the front */
    case FAULTS_KIND_KILL_TCP:
    case FAULTS_KIND_SHUTDOWN: {
        if (!link)
            return ERR_INVALID;
        int64_t now = loop_now_ms(f->loop);
        bool from_device = strcmp(source, "device") == 0;
        for (struct entry *g = f->entries; from_device && g; g = g->next) {
            if (g->kind == E_GUARD && strcmp(g->ident, ident) == 0 && now < g->until_ms && strcmp(g->type, r->type) == 0 &&
                strcmp(g->reason, r->reason) == 0 && g->delay_s == r->delay_s && g->duration_s == r->duration_s) {
                log_info("fault injection: %s: the same %s message again right after the drop: taken for the SDK "
                         "re-sending it, acknowledged and not repeated",
                         ident, r->type);
                return ERR_OK;
            }
        }
        struct entry *e = entry_add(f, E_DROP, ident, source);
        if (!e)
            return ERR_NOMEM;
        snprintf(e->type, sizeof e->type, "%s", r->type);
        snprintf(e->reason, sizeof e->reason, "%s", r->reason);
        e->delay_s = r->delay_s;
        e->duration_s = r->duration_s;
        e->link = link;
        e->abrupt = r->kind == FAULTS_KIND_KILL_TCP;
        e->front = by_front;
        e->until_ms = e->from_ms + delay;
        e->timer = loop_timer_add(f->loop, delay, on_drop_timer, e);
        if (!e->timer) {
            entry_remove(f, e);
            return ERR_NOMEM;
        }
        *made = e;
        *hold = true;
        if (duration > 0) {
            struct entry *w = add_window(f, E_REFUSE, ident, source, delay, duration);
            if (!w)
                return ERR_NOMEM;
            w->code = FAULTS_REFUSE_UNAVAILABLE;
            snprintf(w->type, sizeof w->type, "%s", r->type);
        }
        return ERR_OK;
    }
    case FAULTS_KIND_THROTTLE:
    case FAULTS_KIND_QUOTA:
    case FAULTS_KIND_AUTH: {
        if (duration == 0) {
            log_info("fault injection: %s: %s with no duration does nothing", ident, r->type);
            return ERR_OK;
        }
        enum entry_kind k = r->kind == FAULTS_KIND_THROTTLE ? E_THROTTLE : r->kind == FAULTS_KIND_QUOTA ? E_QUOTA : E_AUTH;
        struct entry *e = add_window(f, k, ident, source, delay, duration);
        *made = e;
        return e ? ERR_OK : ERR_NOMEM;
    }
    default:
        log_info("fault injection: %s: unknown fault type '%s' ignored", ident, r->type);
        return ERR_OK;
    }
}

enum faults_verdict faults_d2c(struct faults *f, struct device_link *link, const struct faults_request *req)
{
    if (!f)
        return FAULTS_ACCEPT;
    prune(f);
    /* The faults in force first, so the message that asks for a throttling fault is itself accepted. */
    const char *id = link->identity;
    if (active(f, E_AUTH, id)) {
        log_info("%s: D2C message refused: authentication error (fault injection)", id);
        return FAULTS_UNAUTHORIZED;
    }
    if (active(f, E_THROTTLE, id)) {
        log_info("%s: D2C message refused: throttled (fault injection)", id);
        return FAULTS_THROTTLED;
    }
    if (active(f, E_QUOTA, id)) {
        log_info("%s: D2C message refused: daily message quota exceeded (fault injection)", id);
        return FAULTS_QUOTA_EXCEEDED;
    }
    int retry = 0;
    if (!faults_throttle_take(f, FAULTS_OP_D2C, 1, &retry)) {
        log_info("%s: D2C message refused: over the %s D2C throttle", id, tier_names[f->tier]);
        return FAULTS_THROTTLED;
    }
    bool hold = false;
    if (req && req->kind != FAULTS_KIND_NONE) {
        struct entry *made;
        if (!f->sdk_on)
            log_info("%s: fault injection message (%s) ignored: --no-fault-injection", id, req->type);
        else if (schedule(f, id, link, req, "device", &hold, &made) == ERR_NOMEM)
            log_warn("%s: fault injection: out of memory", id);
    }
    return hold ? FAULTS_HOLD : FAULTS_ACCEPT;
}

/* ---- connects ---- */

int faults_connect(struct faults *f, const char *identity, int64_t token_se, char *why, size_t whylen)
{
    if (!f)
        return 0;
    prune(f);
    struct entry *e;
    if ((e = active(f, E_REFUSE, identity))) {
        snprintf(why, whylen, "connects refused (fault %llu, %s)", (unsigned long long)e->id, e->type);
        return e->code;
    }
    if (active(f, E_AUTH, identity)) {
        snprintf(why, whylen, "authentication error (fault injection: InvokeAuthError)");
        return FAULTS_REFUSE_AUTH;
    }
    if ((e = active(f, E_TOKEN, identity)) && token_se <= e->token_se) {
        snprintf(why, whylen, "SAS token expired (fault injection: expireToken)");
        return FAULTS_REFUSE_AUTH;
    }
    int retry = 0;
    if (!faults_throttle_take(f, FAULTS_OP_CONNECT, 1, &retry)) {
        snprintf(why, whylen, "over the %s device-connection throttle", tier_names[f->tier]);
        return FAULTS_REFUSE_UNAVAILABLE;
    }
    int64_t *se = strmap_get(f->token_se, identity);
    if (!se && (se = malloc(sizeof *se)) && strmap_set(f->token_se, identity, se)) {
        free(se);
        se = NULL;
    }
    if (se)
        *se = token_se;
    return 0;
}

/* ---- method replies ---- */

enum faults_reply faults_method_reply(struct faults *f, const char *identity, int64_t *delay_ms)
{
    *delay_ms = 0;
    if (!f)
        return FAULTS_REPLY_PASS;
    prune(f);
    if (active(f, E_METHOD_DROP, identity))
        return FAULTS_REPLY_DROP;
    struct entry *e = active(f, E_METHOD_DELAY, identity);
    if (e) {
        *delay_ms = e->delay_ms;
        return FAULTS_REPLY_DELAY;
    }
    return FAULTS_REPLY_PASS;
}

static enum hub_reply_policy hook_method_reply(void *ctx, const char *identity, int64_t *delay_ms)
{
    switch (faults_method_reply(ctx, identity, delay_ms)) {
    case FAULTS_REPLY_DROP:
        return HUB_REPLY_DROP;
    case FAULTS_REPLY_DELAY:
        return HUB_REPLY_DELAY;
    default:
        return HUB_REPLY_PASS;
    }
}

/* The link is gone: a drop scheduled for it has nothing left to do. */
static void hook_link_offline(void *ctx, struct device_link *link)
{
    struct faults *f = ctx;
    struct entry **p = &f->entries;
    while (*p) {
        struct entry *e = *p;
        if (e->kind == E_DROP && e->link == link) {
            *p = e->next;
            f->count--;
            entry_free(f, e);
        } else {
            p = &e->next;
        }
    }
}

/* ---- throttling ---- */

int faults_set_throttle(struct faults *f, const char *tier)
{
    if (!tier || !*tier || strcasecmp(tier, "off") == 0) {
        f->tier = -1;
        return ERR_OK;
    }
    for (int t = 0; t < 4; t++) {
        if (strcasecmp(tier, tier_names[t]) == 0) {
            f->tier = t;
            int64_t now = loop_now_ms(f->loop);
            for (int op = 0; op < FAULTS_OPS; op++) {
                struct bucket *b = &f->buckets[op];
                b->burst = limits[op].amount[t];
                b->rate_per_ms = limits[op].amount[t] / (limits[op].window_s * 1000.0);
                b->tokens = b->burst;
                b->last_ms = now;
            }
            return ERR_OK;
        }
    }
    return ERR_INVALID;
}

bool faults_throttle_take(struct faults *f, enum faults_op op, unsigned units, int *retry_after_s)
{
    *retry_after_s = 0;
    if (!f || f->tier < 0 || op < 0 || op >= FAULTS_OPS)
        return true;
    struct bucket *b = &f->buckets[op];
    int64_t now = loop_now_ms(f->loop);
    if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * b->rate_per_ms;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now;
    }
    double need = units ? units : 1;
    if (need > b->burst)
        need = b->burst; /* a call bigger than the burst passes when the bucket is full */
    if (b->tokens >= need) {
        b->tokens -= need;
        return true;
    }
    double wait_ms = (need - b->tokens) / b->rate_per_ms;
    *retry_after_s = (int)((wait_ms + 999.0) / 1000.0);
    if (*retry_after_s < 1)
        *retry_after_s = 1;
    return false;
}

json_t *faults_throttle_json(const struct faults *f)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (f->tier < 0) {
        json_object_set_new(o, "tier", json_null());
        return o;
    }
    json_object_set_new(o, "tier", json_string(tier_names[f->tier]));
    json_t *ops = json_array();
    for (int op = 0; op < FAULTS_OPS; op++)
        json_array_append_new(ops, json_pack("{s:s,s:f,s:s,s:f}", "operation", op_names[op], "limit",
                                             limits[op].amount[f->tier], "per",
                                             limits[op].window_s == 1 ? "second" : "minute", "available",
                                             (double)(long long)f->buckets[op].tokens));
    json_object_set_new(o, "limits", ops);
    return o;
}

/* ---- REST faults ---- */

bool faults_rest(struct faults *f, const char *method, const char *path, int *status, int *retry_after_s)
{
    if (!f)
        return false;
    prune(f);
    for (struct entry *e = f->entries; e; e = e->next) {
        if (e->kind != E_REST || (e->method[0] && strcasecmp(e->method, method) != 0) ||
            fnmatch(e->route, path, 0) != 0)
            continue;
        *status = e->status;
        *retry_after_s = e->retry_after_s;
        if (e->count_left > 0)
            e->count_left--;
        log_info("fault %llu: %s %s answered %d (fault injection%s)", (unsigned long long)e->id, method, path,
                 e->status, e->count_left == 0 ? ", the last one" : "");
        return true;
    }
    return false;
}

/* ---- the control API ---- */

static json_t *entry_json(const struct faults *f, const struct entry *e)
{
    int64_t now = loop_now_ms(f->loop);
    json_t *o = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)e->id, "fault", e->type, "source", e->source);
    if (!o)
        return NULL;
    if (e->ident[0]) {
        const char *slash = strchr(e->ident, '/');
        json_object_set_new(o, "deviceId", slash ? json_stringn(e->ident, (size_t)(slash - e->ident))
                                                 : json_string(e->ident));
        if (slash)
            json_object_set_new(o, "moduleId", json_string(slash + 1));
    }
    if (e->from_ms > now)
        json_object_set_new(o, "startsInMs", json_integer(e->from_ms - now));
    if (e->until_ms)
        json_object_set_new(o, "endsInMs", json_integer(e->until_ms > now ? e->until_ms - now : 0));
    switch (e->kind) {
    case E_DROP:
        json_object_set_new(o, "abrupt", json_boolean(e->abrupt));
        break;
    case E_REFUSE:
        json_object_set_new(o, "connack", json_integer(e->code));
        break;
    case E_METHOD_DELAY:
        json_object_set_new(o, "delayMs", json_integer(e->delay_ms));
        break;
    case E_METHOD_DROP:
        json_object_set_new(o, "blackhole", json_true());
        break;
    case E_REST:
        json_object_set_new(o, "status", json_integer(e->status));
        json_object_set_new(o, "route", json_string(e->route));
        if (e->method[0])
            json_object_set_new(o, "method", json_string(e->method));
        if (e->count_left >= 0)
            json_object_set_new(o, "remaining", json_integer(e->count_left));
        json_object_set_new(o, "retryAfter", json_integer(e->retry_after_s));
        break;
    default:
        break;
    }
    return o;
}

json_t *faults_control_list(struct faults *f)
{
    prune(f);
    json_t *list = json_array();
    for (const struct entry *e = f->entries; list && e; e = e->next)
        if (e->kind != E_GUARD)
            json_array_append_new(list, entry_json(f, e));
    return json_pack("{s:o,s:b,s:o}", "faults", list ? list : json_array(), "sdkProtocol", f->sdk_on, "throttle",
                     faults_throttle_json(f));
}

size_t faults_control_clear(struct faults *f, uint64_t id)
{
    size_t n = 0;
    struct entry **p = &f->entries;
    while (*p) {
        struct entry *e = *p;
        if (id == 0 || e->id == id) {
            *p = e->next;
            f->count--;
            entry_free(f, e);
            n++;
        } else {
            p = &e->next;
        }
    }
    if (n)
        log_info("fault injection: %zu fault%s cleared", n, n == 1 ? "" : "s");
    return n;
}

/* A JSON integer member in [lo, hi], or def when absent. False (err filled) when present but not such. */
static bool int_member(const json_t *body, const char *key, long def, long lo, long hi, long *out, char *err,
                       size_t errlen)
{
    const json_t *v = json_object_get(body, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer within [%ld; %ld].", key, lo, hi);
        return false;
    }
    *out = (long)json_integer_value(v);
    return true;
}

/* deviceId (required) and moduleId (optional), valid ids, into "device" or "device/module". */
static bool ident_member(const json_t *body, char *ident, size_t len, char *err, size_t errlen)
{
    const char *dev = json_string_value(json_object_get(body, "deviceId"));
    const json_t *m = json_object_get(body, "moduleId");
    const char *mod = json_string_value(m);
    if (!dev || !registry_id_is_valid(dev) || (m && !json_is_null(m) && (!mod || !registry_id_is_valid(mod)))) {
        snprintf(err, errlen, "deviceId (and moduleId, when given) must be valid identity ids.");
        return false;
    }
    snprintf(ident, len, "%s%s%s", dev, mod ? "/" : "", mod ? mod : "");
    return true;
}

static int add_sdk_kind(struct faults *f, const json_t *body, const char *type, const char *ident, json_t **out,
                        char *err, size_t errlen)
{
    long delay, duration;
    if (!int_member(body, "delaySeconds", 0, 0, FAULTS_MAX_DELAY_S, &delay, err, errlen) ||
        !int_member(body, "durationSeconds", 0, 0, FAULTS_MAX_DURATION_S, &duration, err, errlen))
        return ERR_INVALID;
    struct faults_request r;
    faults_request_init(&r);
    faults_request_prop(&r, "AzIoTHub_FaultOperationType", type);
    snprintf(r.reason, sizeof r.reason, "control API");
    r.delay_s = (int)delay;
    r.duration_s = (int)duration;
    struct device_link *link = hub_link_of(f->hub, ident);
    if (r.kind == FAULTS_KIND_AMQP && (!link || !link->ops->fault)) {
        snprintf(err, errlen, "%s needs %s connected over AMQP.", type, ident);
        return ERR_INVALID;
    }
    if ((r.kind == FAULTS_KIND_THROTTLE || r.kind == FAULTS_KIND_QUOTA || r.kind == FAULTS_KIND_AUTH) && !duration) {
        snprintf(err, errlen, "%s needs durationSeconds >= 1.", type);
        return ERR_INVALID;
    }
    bool hold;
    struct entry *made = NULL;
    int rc = schedule(f, ident, link, &r, "api", &hold, &made);
    if (rc == ERR_INVALID)
        snprintf(err, errlen, "%s is not connected.", ident);
    if (rc == ERR_OK)
        *out = made ? entry_json(f, made) : json_object();
    return rc;
}

int faults_control_add(struct faults *f, const char *body_text, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    prune(f);
    json_t *body = json_loadb(body_text ? body_text : "", len, JSON_REJECT_DUPLICATES, NULL);
    const char *fault = json_string_value(json_object_get(body, "fault"));
    int rc = ERR_INVALID;
    char ident[FAULTS_IDENT_MAX] = "";
    long seconds = 0, n = 0;
    struct entry *e = NULL;
    if (!json_is_object(body) || !fault) {
        snprintf(err, errlen, "The body must be a JSON object with a \"fault\" member (see README \"Testing failures\").");
    } else if (f->count >= FAULTS_MAX_ACTIVE) {
        snprintf(err, errlen, "Too many active faults (%d); DELETE /emulator/faults first.", FAULTS_MAX_ACTIVE);
    } else if (strcmp(fault, "rest") == 0) {
        long count, status, retry;
        const json_t *route = json_object_get(body, "route"), *method = json_object_get(body, "method");
        if (!int_member(body, "count", 0, 1, FAULTS_MAX_COUNT, &count, err, errlen) ||
            !int_member(body, "seconds", 0, 1, FAULTS_MAX_SECONDS, &seconds, err, errlen) ||
            !int_member(body, "status", 503, 429, 503, &status, err, errlen) ||
            !int_member(body, "retryAfter", status == 500 ? 0 : 1, 0, 3600, &retry, err, errlen)) {
        } else if (status != 429 && status != 500 && status != 503) {
            snprintf(err, errlen, "status must be 429, 500 or 503.");
        } else if ((route && (!json_is_string(route) || json_string_length(route) == 0 ||
                              json_string_length(route) >= FAULTS_ROUTE_MAX)) ||
                   (method && (!json_is_string(method) || json_string_length(method) == 0 ||
                               json_string_length(method) >= sizeof e->method))) {
            snprintf(err, errlen, "route (a path pattern, * matches anything) and method must be short strings.");
        } else if (strncmp(route ? json_string_value(route) : "/", "/emulator", 9) == 0) {
            snprintf(err, errlen, "/emulator routes cannot be faulted.");
        } else if ((e = entry_add(f, E_REST, NULL, "api"))) {
            e->status = (int)status;
            e->retry_after_s = (int)retry;
            e->count_left = count ? count : seconds ? -1 : 1;
            e->until_ms = seconds ? e->from_ms + seconds * 1000 : 0;
            snprintf(e->route, sizeof e->route, "%s", route ? json_string_value(route) : "*");
            snprintf(e->method, sizeof e->method, "%s", method ? json_string_value(method) : "");
            rc = ERR_OK;
        } else {
            rc = ERR_NOMEM;
        }
    } else if (!ident_member(body, ident, sizeof ident, err, errlen)) {
    } else if (strcmp(fault, "drop") == 0) {
        const json_t *abrupt = json_object_get(body, "abrupt");
        struct device_link *link = hub_link_of(f->hub, ident);
        bool hard = !abrupt || json_is_true(abrupt);
        if (abrupt && !json_is_boolean(abrupt)) {
            snprintf(err, errlen, "abrupt must be true or false.");
        } else {
            log_info("fault injection (control API): %s: %s", ident,
                     !link ? "drop asked, but it is not connected"
                           : hard ? "dropping the connection without a goodbye" : "closing the connection");
            if (link)
                hub_link_drop(f->hub, link, hard, "fault injection: drop (control API)");
            *out = json_pack("{s:s,s:s,s:b,s:b}", "fault", "drop", "identity", ident, "abrupt", hard, "dropped",
                             link != NULL);
            rc = *out ? ERR_OK : ERR_NOMEM;
        }
    } else if (strcmp(fault, "refuseConnect") == 0) {
        long code;
        if (int_member(body, "seconds", 0, 1, FAULTS_MAX_SECONDS, &seconds, err, errlen) &&
            int_member(body, "connack", 3, 3, 5, &code, err, errlen)) {
            if (!seconds || code == 4)
                snprintf(err, errlen, "refuseConnect needs seconds, and connack 3 (server unavailable) or 5 (not "
                                      "authorized).");
            else if ((e = add_window(f, E_REFUSE, ident, "api", 0, seconds * 1000)))
                e->code = (int)code, rc = ERR_OK;
            else
                rc = ERR_NOMEM;
        }
    } else if (strcmp(fault, "methodReplies") == 0) {
        const json_t *bh = json_object_get(body, "blackhole");
        if (int_member(body, "seconds", 0, 1, FAULTS_MAX_SECONDS, &seconds, err, errlen) &&
            int_member(body, "delayMs", 0, 1, 300000, &n, err, errlen)) {
            bool drop = json_is_true(bh);
            if (!seconds || (bh && !json_is_boolean(bh)) || (drop == (n > 0)))
                snprintf(err, errlen, "methodReplies needs seconds and exactly one of delayMs or \"blackhole\":true.");
            else if ((e = add_window(f, drop ? E_METHOD_DROP : E_METHOD_DELAY, ident, "api", 0, seconds * 1000)))
                e->delay_ms = n, rc = ERR_OK;
            else
                rc = ERR_NOMEM;
        }
    } else if (strcmp(fault, "expireToken") == 0) {
        const int64_t *se = strmap_get(f->token_se, ident);
        int64_t cutoff = loop_wall_s(f->loop);
        if (se && *se > cutoff)
            cutoff = *se;
        if ((e = entry_add(f, E_TOKEN, ident, "api"))) {
            e->token_se = cutoff;
            rc = ERR_OK;
            struct device_link *link = hub_link_of(f->hub, ident);
            log_info("fault injection (control API): %s: SAS tokens expiring at or before %lld are now expired%s",
                     ident, (long long)cutoff, link ? "; closing its connection" : "");
            if (link)
                hub_link_drop(f->hub, link, false, "SAS token expired (fault injection)");
        } else {
            rc = ERR_NOMEM;
        }
    } else if (faults_kind_of(fault) != FAULTS_KIND_UNKNOWN) {
        rc = add_sdk_kind(f, body, fault, ident, out, err, errlen);
    } else {
        snprintf(err, errlen, "Unknown fault '%.40s'.", fault);
    }
    if (rc == ERR_OK && e) {
        log_info("fault %llu added (control API): %s%s%s", (unsigned long long)e->id, e->type, e->ident[0] ? " on " : "",
                 e->ident);
        *out = entry_json(f, e);
        if (!*out)
            rc = ERR_NOMEM;
    }
    json_decref(body);
    return rc;
}
