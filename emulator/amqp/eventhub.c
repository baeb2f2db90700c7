/* eventhub.c -- the Event Hub-compatible endpoint (see eventhub.h): $management READ, partition receivers
 * streaming from the event log within credit, epochs, the IoT Hub-host redirect. One eventlog listener marks
 * partitions dirty; a loop hook sends what the receivers of those partitions have credit for and wakes their
 * connections, so a burst of appends costs one flush per connection. */
#include "eventhub.h"

#include <ctype.h>
#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/object.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "delivery.h"
#include "ehauth.h"
#include "ehfilter.h"
#include "err.h"
#include "eventlog.h"
#include "log.h"
#include "loop.h"

#define EH_MAX_NAMES 72
#define EH_MGMT_CREDIT 16
#define EH_STREAM_BUDGET (1u << 20) /* bytes one receiver is sent per loop iteration; the rest follows */
#define EH_EXPIRE_MS 5000 /* how often the age limit is applied */
#define EH_DESCRIPTOR_SELECTOR 0x0000468C00000004ull
#define EH_SELECTOR "apache.org:selector-filter:string"
#define EH_REDIRECT_DELAY_MS 50 /* between the attach and the redirecting detach (see redirect()) */
#define EH_MAX_REDIRECTS 8      /* pending per connection; more are redirected at once */

PN_HANDLE(EH_LINK_KEY)

enum eh_link_kind { EH_MGMT_IN = 1, EH_MGMT_OUT, EH_CONSUMER, EH_REDIRECT };

/* What our pn_link record points at. */
struct eh_link {
    enum eh_link_kind kind;
    struct eh_consumer *consumer; /* EH_CONSUMER only */
};

struct eh_consumer {
    struct eh_link tag; /* kind EH_CONSUMER; first, so the record can point at either */
    struct eventhub_conn *ec;
    pn_link_t *link;
    int partition;
    char group[EVENTLOG_MAX_GROUP_NAME + 1];
    bool has_epoch;
    int64_t epoch;
    int64_t next_seq;      /* the next event to send */
    bool skip;             /* events failing pred are skipped until one passes (offset or time) */
    struct ehfilter pred;
    struct eh_consumer *next; /* every consumer of the endpoint */
};

struct eh_redirect {
    struct eh_link tag; /* kind EH_REDIRECT */
    struct eventhub_conn *ec;
    pn_link_t *link;
    struct loop_timer *timer;
    char path[256];
};

struct eventhub_conn {
    struct eventhub *eh;
    pn_connection_t *conn;
    void (*wake)(void *);
    void *wake_ctx;
    char peer[64];
    bool closed;
    bool needs_wake;
    bool in_event; /* inside eventhub_conn_event: the caller flushes */
    struct eh_link mgmt_in, mgmt_out;
    struct eh_redirect redirects[EH_MAX_REDIRECTS];
    struct eventhub_conn *next;
};

struct eventhub {
    struct loop *loop;
    struct eventlog *log;
    char *names[EH_MAX_NAMES]; /* [0] the hub name, then aliases */
    size_t n_names;
    char *hosts[EH_MAX_NAMES];
    size_t n_hosts;
    struct ehauth auth;
    char *redirect_host;
    int redirect_port;
    struct eh_consumer *consumers;
    struct eventhub_conn *conns;
    uint32_t dirty; /* partitions appended to since the last flush */
    struct loop_timer *expire_timer;
    struct loop_timer *kick_timer; /* wakes the loop when a receiver ran out of its per-iteration budget */
    uint64_t tag;
};

/* ---- set-up ---- */

static int add_name(char **arr, size_t *n, const char *s)
{
    if (!s || !*s || *n >= EH_MAX_NAMES)
        return ERR_OK;
    for (size_t i = 0; i < *n; i++)
        if (strcasecmp(arr[i], s) == 0)
            return ERR_OK;
    arr[*n] = strdup(s);
    if (!arr[*n])
        return ERR_NOMEM;
    (*n)++;
    return ERR_OK;
}

static void on_append(void *ctx, int partition, const struct eventlog_event *ev);
static void on_hook(struct loop *l, void *ctx);
static void on_expire(struct loop *l, void *ctx);

struct eventhub *eventhub_new(const struct eventhub_config *cfg)
{
    struct eventhub *eh = calloc(1, sizeof *eh);
    if (!eh)
        return NULL;
    eh->loop = cfg->loop;
    eh->log = cfg->log;
    int rc = add_name(eh->names, &eh->n_names, cfg->hub_name);
    for (size_t i = 0; !rc && i < cfg->n_aliases; i++)
        rc = add_name(eh->names, &eh->n_names, cfg->aliases[i]);
    for (size_t i = 0; !rc && i < cfg->n_hosts; i++)
        rc = add_name(eh->hosts, &eh->n_hosts, cfg->hosts[i]);
    eh->redirect_host = strdup(cfg->redirect_host ? cfg->redirect_host : "localhost");
    eh->redirect_port = cfg->redirect_port;
    if (rc || !eh->n_names || !eh->redirect_host || eventlog_listen(eh->log, on_append, eh) ||
        loop_add_hook(eh->loop, on_hook, eh)) {
        eventhub_free(eh);
        return NULL;
    }
    eh->auth = (struct ehauth){.auth = cfg->auth,
                               .hosts = (const char *const *)eh->hosts,
                               .n_hosts = eh->n_hosts,
                               .entities = (const char *const *)eh->names,
                               .n_entities = eh->n_names};
    eh->expire_timer = loop_timer_add(eh->loop, EH_EXPIRE_MS, on_expire, eh);
    return eh;
}

void eventhub_free(struct eventhub *eh)
{
    if (!eh)
        return;
    eventlog_unlisten(eh->log, on_append, eh);
    loop_del_hook(eh->loop, on_hook, eh);
    loop_timer_cancel(eh->loop, eh->expire_timer);
    loop_timer_cancel(eh->loop, eh->kick_timer);
    while (eh->conns)
        eventhub_conn_free(eh->conns);
    for (size_t i = 0; i < eh->n_names; i++)
        free(eh->names[i]);
    for (size_t i = 0; i < eh->n_hosts; i++)
        free(eh->hosts[i]);
    free(eh->redirect_host);
    free(eh);
}

const char *eventhub_name(const struct eventhub *eh)
{
    return eh->names[0];
}

static void on_expire(struct loop *l, void *ctx)
{
    struct eventhub *eh = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    eventlog_expire(eh->log, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    eh->expire_timer = loop_timer_add(l, EH_EXPIRE_MS, on_expire, eh);
}

/* ---- tokens ---- */

bool eventhub_is_audience(const struct eventhub *eh, const char *audience)
{
    return audience && ehauth_is_audience(&eh->auth, audience, strlen(audience));
}

int eventhub_verify_token(const struct eventhub *eh, const char *audience, const char *token, size_t tlen,
                          int64_t now_s, int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen)
{
    return ehauth_verify(&eh->auth, audience, strlen(audience), token, tlen, now_s, skew_s, expiry, norm, why,
                         whylen);
}

int eventhub_verify_plain(const struct eventhub *eh, const char *token, size_t tlen, int64_t now_s, int64_t skew_s,
                          int64_t *expiry, char *norm, char *why, size_t whylen)
{
    return ehauth_verify_events_token(&eh->auth, token, tlen, now_s, skew_s, expiry, norm, why, whylen);
}

/* ---- addresses ---- */

/* The path of an address: "amqps://host[:port]" and leading '/' stripped. */
static const char *path_of(const char *addr)
{
    if (!addr)
        return "";
    const char *s = strstr(addr, "://");
    if (s && (size_t)(s - addr) <= 8) {
        const char *slash = strchr(s + 3, '/');
        addr = slash ? slash : "";
    }
    while (*addr == '/')
        addr++;
    return addr;
}

/* Length of the first segment of p. */
static size_t seg_len(const char *p)
{
    const char *s = strchr(p, '/');
    return s ? (size_t)(s - p) : strlen(p);
}

static bool is_name(const struct eventhub *eh, const char *s, size_t n)
{
    for (size_t i = 0; i < eh->n_names; i++)
        if (strlen(eh->names[i]) == n && strncasecmp(eh->names[i], s, n) == 0)
            return true;
    return false;
}

static bool is_events_path(const char *p)
{
    return strncasecmp(p, "messages/events", 15) == 0 && (p[15] == 0 || p[15] == '/');
}

bool eventhub_claims(const struct eventhub *eh, const char *addr, bool we_receive)
{
    const char *p = path_of(addr);
    if (strcmp(p, "$management") == 0)
        return true;
    if (is_events_path(p))
        return true;
    return *p && is_name(eh, p, seg_len(p));
}

/* ---- connections ---- */

struct eventhub_conn *eventhub_conn_new(struct eventhub *eh, pn_connection_t *c, void (*wake)(void *), void *ctx,
                                        const char *peer)
{
    struct eventhub_conn *ec = calloc(1, sizeof *ec);
    if (!ec)
        return NULL;
    ec->eh = eh;
    ec->conn = c;
    ec->wake = wake;
    ec->wake_ctx = ctx;
    snprintf(ec->peer, sizeof ec->peer, "%s", peer ? peer : "?");
    ec->mgmt_in.kind = EH_MGMT_IN;
    ec->mgmt_out.kind = EH_MGMT_OUT;
    ec->next = eh->conns;
    eh->conns = ec;
    return ec;
}

static void consumer_remove(struct eh_consumer *c)
{
    struct eventhub *eh = c->ec->eh;
    for (struct eh_consumer **pp = &eh->consumers; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->link)
        pn_record_set(pn_link_attachments(c->link), EH_LINK_KEY, NULL);
    free(c);
}

static void redirect_cancel(struct eh_redirect *r)
{
    if (!r->link)
        return;
    loop_timer_cancel(r->ec->eh->loop, r->timer);
    pn_record_set(pn_link_attachments(r->link), EH_LINK_KEY, NULL);
    r->timer = NULL;
    r->link = NULL;
}

void eventhub_conn_closed(struct eventhub_conn *ec)
{
    if (!ec || ec->closed)
        return;
    ec->closed = true;
    for (int i = 0; i < EH_MAX_REDIRECTS; i++)
        redirect_cancel(&ec->redirects[i]);
    struct eh_consumer **pp = &ec->eh->consumers;
    while (*pp) {
        struct eh_consumer *c = *pp;
        if (c->ec == ec) {
            *pp = c->next;
            if (c->link)
                pn_record_set(pn_link_attachments(c->link), EH_LINK_KEY, NULL);
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

void eventhub_conn_free(struct eventhub_conn *ec)
{
    if (!ec)
        return;
    eventhub_conn_closed(ec);
    for (struct eventhub_conn **pp = &ec->eh->conns; *pp; pp = &(*pp)->next) {
        if (*pp == ec) {
            *pp = ec->next;
            break;
        }
    }
    free(ec);
}

static struct eh_link *link_of(pn_link_t *l)
{
    pn_record_t *r = pn_link_attachments(l);
    return r ? pn_record_get(r, EH_LINK_KEY) : NULL;
}

static void set_link(pn_link_t *l, struct eh_link *v)
{
    pn_record_t *r = pn_link_attachments(l);
    pn_record_def(r, EH_LINK_KEY, PN_VOID);
    pn_record_set(r, EH_LINK_KEY, v);
}

/* ---- sending ---- */

/* Encodes m and sends it pre-settled on l. */
static int send_msg(struct eventhub *eh, pn_link_t *l, pn_message_t *m)
{
    return delivery_send_settled(l, m, 8u << 20, "e", &eh->tag);
}

static void put_sym(pn_data_t *d, const char *s)
{
    pn_data_put_symbol(d, pn_bytes(strlen(s), s));
}

static void put_str(pn_data_t *d, const char *s)
{
    pn_data_put_string(d, pn_bytes(strlen(s), s));
}

static void offset_text(int64_t off, char *out, size_t n)
{
    snprintf(out, n, "%lld", (long long)off);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One event as IoT Hub's built-in endpoint delivers it (iothub-amqp.md §B.1.6), plus the runtime metrics
 * as delivery annotations (clients read them only when they asked for them). */
static int send_event(struct eventhub *eh, pn_link_t *l, const struct eventlog_event *e)
{
    pn_message_t *m = pn_message();
    if (!m)
        return ERR_NOMEM;
    char off[24];
    offset_text(e->offset, off, sizeof off);
    pn_data_t *ma = pn_message_annotations(m);
    pn_data_put_map(ma);
    pn_data_enter(ma);
    put_sym(ma, "x-opt-sequence-number");
    pn_data_put_long(ma, e->seq);
    put_sym(ma, "x-opt-offset");
    put_str(ma, off);
    put_sym(ma, "x-opt-enqueued-time");
    pn_data_put_timestamp(ma, e->enqueued_ms);
    put_sym(ma, "iothub-connection-device-id");
    put_str(ma, e->device_id);
    if (e->module_id) {
        put_sym(ma, "iothub-connection-module-id");
        put_str(ma, e->module_id);
    }
    char method[160];
    snprintf(method, sizeof method, "{\"scope\":\"%s\",\"type\":\"%s\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}",
             e->auth_scope, e->auth_type);
    put_sym(ma, "iothub-connection-auth-method");
    put_str(ma, method);
    put_sym(ma, "iothub-connection-auth-generation-id");
    put_str(ma, e->generation_id);
    put_sym(ma, "iothub-enqueuedtime");
    pn_data_put_timestamp(ma, e->enqueued_ms);
    put_sym(ma, "iothub-message-source");
    put_str(ma, "Telemetry");
    pn_data_exit(ma);

    struct eventlog_partition_info info;
    eventlog_partition_info(eh->log, e->partition, &info);
    char last_off[24];
    offset_text(info.last_offset, last_off, sizeof last_off);
    pn_data_t *da = pn_message_instructions(m);
    pn_data_put_map(da);
    pn_data_enter(da);
    put_sym(da, "last_enqueued_sequence_number");
    pn_data_put_long(da, info.last_seq);
    put_sym(da, "last_enqueued_offset");
    put_str(da, last_off);
    put_sym(da, "last_enqueued_time_utc");
    pn_data_put_timestamp(da, info.last_ms);
    put_sym(da, "runtime_info_retrieval_time_utc");
    pn_data_put_timestamp(da, wall_ms());
    pn_data_exit(da);

    if (e->message_id) {
        pn_msgid_t id = {.type = PN_STRING};
        id.u.as_bytes = pn_bytes(strlen(e->message_id), e->message_id);
        pn_message_set_id(m, id);
    }
    if (e->correlation_id) {
        pn_msgid_t id = {.type = PN_STRING};
        id.u.as_bytes = pn_bytes(strlen(e->correlation_id), e->correlation_id);
        pn_message_set_correlation_id(m, id);
    }
    if (e->content_type)
        pn_message_set_content_type(m, e->content_type);
    if (e->content_encoding)
        pn_message_set_content_encoding(m, e->content_encoding);
    if (e->user_id)
        pn_message_set_user_id(m, pn_bytes(strlen(e->user_id), e->user_id));
    if (e->n_props) {
        pn_data_t *ap = pn_message_properties(m);
        pn_data_put_map(ap);
        pn_data_enter(ap);
        for (size_t i = 0; i < e->n_props; i++) {
            put_str(ap, e->props[i].key);
            if (e->props[i].value)
                put_str(ap, e->props[i].value);
            else
                pn_data_put_null(ap);
        }
        pn_data_exit(ap);
    }
    pn_message_set_inferred(m, true); /* binary body -> one data section */
    pn_data_t *body = pn_message_body(m);
    pn_data_put_binary(body, pn_bytes(e->len, (const char *)e->body));
    int rc = send_msg(eh, l, m);
    pn_message_free(m);
    return rc;
}

static bool passes(const struct eh_consumer *c, const struct eventlog_event *e)
{
    int64_t k = c->pred.field == EHFILTER_OFFSET ? e->offset : e->enqueued_ms;
    return c->pred.inclusive ? k >= c->pred.value : k > c->pred.value;
}

/* Sends what c has credit for. Returns true when something was queued on its connection. */
static bool stream(struct eh_consumer *c)
{
    struct eventhub *eh = c->ec->eh;
    pn_link_t *l = c->link;
    if (c->ec->closed || !(pn_link_state(l) & PN_LOCAL_ACTIVE) || !(pn_link_state(l) & PN_REMOTE_ACTIVE))
        return false;
    struct eventlog_partition_info info;
    eventlog_partition_info(eh->log, c->partition, &info);
    if (c->next_seq < info.begin_seq)
        c->next_seq = info.begin_seq; /* retention dropped what this receiver had not read */
    bool sent = false;
    size_t bytes = 0;
    while (pn_link_credit(l) > 0 && c->next_seq <= info.last_seq) {
        if (bytes >= EH_STREAM_BUDGET) {
            eh->dirty |= 1u << c->partition; /* let the loop write; the next hook goes on */
            break;
        }
        const struct eventlog_event *e = eventlog_get(eh->log, c->partition, c->next_seq);
        c->next_seq++;
        if (!e)
            continue;
        if (c->skip) {
            if (!passes(c, e))
                continue;
            c->skip = false;
        }
        if (send_event(eh, l, e) != ERR_OK) {
            log_warn("eventhub %s: cannot encode event %lld of partition %d", c->ec->peer, (long long)e->seq,
                     c->partition);
            continue;
        }
        sent = true;
        bytes += e->size;
    }
    if (pn_link_get_drain(l) && pn_link_credit(l) > 0 && c->next_seq > info.last_seq) {
        pn_link_drained(l); /* a draining receiver learns there is nothing more now */
        sent = true;
    }
    return sent;
}

static void on_append(void *ctx, int partition, const struct eventlog_event *ev)
{
    struct eventhub *eh = ctx;
    eh->dirty |= 1u << partition;
}

static void on_kick(struct loop *l, void *ctx)
{
    struct eventhub *eh = ctx;
    eh->kick_timer = NULL; /* the hook runs after this iteration */
}

/* Runs before the loop waits: streams the partitions appended to, then wakes the connections. */
static void on_hook(struct loop *l, void *ctx)
{
    struct eventhub *eh = ctx;
    if (!eh->dirty)
        return;
    uint32_t dirty = eh->dirty;
    eh->dirty = 0;
    for (struct eh_consumer *c = eh->consumers; c; c = c->next)
        if ((dirty & (1u << c->partition)) && stream(c))
            c->ec->needs_wake = true;
    for (;;) {
        struct eventhub_conn *ec = eh->conns;
        while (ec && !ec->needs_wake)
            ec = ec->next;
        if (!ec)
            break;
        ec->needs_wake = false;
        if (!ec->closed && ec->wake)
            ec->wake(ec->wake_ctx);
    }
    if (eh->dirty && !eh->kick_timer)
        eh->kick_timer = loop_timer_add(l, 1, on_kick, eh);
}

/* Wakes a connection other than the one being handled (a stolen link). */
static void wake_other(struct eventhub_conn *ec)
{
    if (!ec->in_event && !ec->closed && ec->wake)
        ec->wake(ec->wake_ctx);
}

/* ---- $management ---- */

static bool map_string(pn_data_t *data, const char *key, char *out, size_t outlen)
{
    out[0] = 0;
    pn_data_rewind(data);
    if (!pn_data_next(data) || pn_data_type(data) != PN_MAP)
        return false;
    pn_data_enter(data);
    bool found = false;
    size_t klen = strlen(key);
    while (pn_data_next(data)) {
        pn_type_t kt = pn_data_type(data);
        pn_bytes_t k = kt == PN_STRING ? pn_data_get_string(data) : kt == PN_SYMBOL ? pn_data_get_symbol(data) : pn_bytes(0, NULL);
        bool match = k.start && k.size == klen && memcmp(k.start, key, klen) == 0;
        if (!pn_data_next(data))
            break;
        if (!match)
            continue;
        pn_type_t vt = pn_data_type(data);
        pn_bytes_t v = vt == PN_STRING ? pn_data_get_string(data) : vt == PN_SYMBOL ? pn_data_get_symbol(data) : pn_bytes(0, NULL);
        if (v.start && v.size < outlen && !memchr(v.start, 0, v.size)) {
            memcpy(out, v.start, v.size);
            out[v.size] = 0;
            found = true;
        }
        break;
    }
    pn_data_exit(data);
    return found;
}

/* The partition id text "0".."N-1" as a number, or -1. */
static int partition_id(const struct eventhub *eh, const char *s, size_t n)
{
    if (n == 0 || n > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (n > 1 && s[0] == '0')
        return -1;
    return v < eventlog_partitions(eh->log) ? v : -1;
}

/* The sender link of this connection that answers management requests with reply_to. */
static pn_link_t *mgmt_reply_link(struct eventhub_conn *ec, const char *reply_to)
{
    pn_link_t *any = NULL;
    for (pn_link_t *l = pn_link_head(ec->conn, PN_LOCAL_ACTIVE); l; l = pn_link_next(l, PN_LOCAL_ACTIVE)) {
        if (link_of(l) != &ec->mgmt_out)
            continue;
        if (!any)
            any = l;
        const char *t = pn_terminus_get_address(pn_link_remote_target(l));
        if (reply_to && *reply_to && (strcmp(pn_link_name(l), reply_to) == 0 || (t && strcmp(t, reply_to) == 0)))
            return l;
    }
    return any;
}

static void mgmt_request(struct eventhub_conn *ec, pn_message_t *req)
{
    struct eventhub *eh = ec->eh;
    char op[32], type[64], name[256], part[16], desc[400];
    pn_data_t *props = pn_message_properties(req);
    map_string(props, "operation", op, sizeof op);
    map_string(props, "type", type, sizeof type);
    map_string(props, "name", name, sizeof name);
    bool has_part = map_string(props, "partition", part, sizeof part);
    int status = 200;
    const char *cond = NULL;
    snprintf(desc, sizeof desc, "OK");
    int p = -1;
    if (strcmp(op, "READ") != 0) {
        status = 400;
        cond = "com.microsoft:not-supported";
        snprintf(desc, sizeof desc, "operation '%.40s' is not supported (only READ)", op);
    } else if (!is_name(eh, name, strlen(name))) {
        status = 404;
        cond = "amqp:not-found";
        snprintf(desc, sizeof desc, "The messaging entity '%.100s' could not be found (the Event Hub name is '%.60s').",
                 name, eh->names[0]);
    } else if (strcmp(type, "com.microsoft:partition") == 0) {
        p = has_part ? partition_id(eh, part, strlen(part)) : -1;
        if (p < 0) {
            status = 400;
            cond = "com.microsoft:argument-out-of-range";
            snprintf(desc, sizeof desc, "The specified partition is invalid for an EventHub partition sender or receiver. "
                                        "It should be between 0 and %d.", eventlog_partitions(eh->log) - 1);
        }
    } else if (strcmp(type, "com.microsoft:eventhub") != 0) {
        status = 400;
        cond = "com.microsoft:not-supported";
        snprintf(desc, sizeof desc, "type '%.60s' is not supported", type);
    }
    pn_link_t *out = mgmt_reply_link(ec, pn_message_get_reply_to(req));
    log_info("eventhub %s: $management %s %s %s: %d", ec->peer, op, type, has_part ? part : "", status);
    if (!out) {
        log_warn("eventhub %s: $management answer dropped: no receiver link on $management", ec->peer);
        return;
    }
    pn_message_t *rep = pn_message();
    if (!rep)
        return;
    pn_message_set_correlation_id(rep, pn_message_get_id(req));
    const char *reply_to = pn_message_get_reply_to(req);
    if (reply_to)
        pn_message_set_address(rep, reply_to);
    pn_data_t *ap = pn_message_properties(rep);
    pn_data_put_map(ap);
    pn_data_enter(ap);
    put_str(ap, "status-code");
    pn_data_put_int(ap, status);
    put_str(ap, "status-description");
    put_str(ap, desc);
    if (cond) {
        put_str(ap, "error-condition");
        put_sym(ap, cond);
    }
    pn_data_exit(ap);
    pn_data_t *b = pn_message_body(rep);
    if (status == 200 && p < 0) {
        pn_data_put_map(b);
        pn_data_enter(b);
        put_str(b, "name");
        put_str(b, eh->names[0]);
        put_str(b, "type");
        put_str(b, "com.microsoft:eventhub");
        put_str(b, "created_at");
        pn_data_put_timestamp(b, eventlog_created_ms(eh->log));
        put_str(b, "partition_count");
        pn_data_put_int(b, eventlog_partitions(eh->log));
        put_str(b, "partition_ids");
        pn_data_put_array(b, false, PN_STRING);
        pn_data_enter(b);
        for (int i = 0; i < eventlog_partitions(eh->log); i++) {
            char id[16];
            snprintf(id, sizeof id, "%d", i);
            put_str(b, id);
        }
        pn_data_exit(b);
        put_str(b, "georeplication_factor");
        pn_data_put_int(b, 1);
        pn_data_exit(b);
    } else if (status == 200) {
        struct eventlog_partition_info info;
        eventlog_partition_info(eh->log, p, &info);
        char id[16], off[24];
        snprintf(id, sizeof id, "%d", p);
        offset_text(info.last_offset, off, sizeof off);
        pn_data_put_map(b);
        pn_data_enter(b);
        put_str(b, "name");
        put_str(b, eh->names[0]);
        put_str(b, "type");
        put_str(b, "com.microsoft:partition");
        put_str(b, "partition");
        put_str(b, id);
        put_str(b, "begin_sequence_number");
        pn_data_put_long(b, info.begin_seq);
        put_str(b, "last_enqueued_sequence_number");
        pn_data_put_long(b, info.last_seq);
        put_str(b, "last_enqueued_offset");
        put_str(b, off);
        put_str(b, "last_enqueued_time_utc");
        pn_data_put_timestamp(b, info.last_ms);
        put_str(b, "is_partition_empty");
        pn_data_put_bool(b, info.empty);
        pn_data_exit(b);
    } else {
        pn_data_put_null(b);
    }
    send_msg(eh, out, rep);
    pn_message_free(rep);
}

void eventhub_conn_message(struct eventhub_conn *ec, pn_link_t *l, pn_message_t *m)
{
    if (link_of(l) == &ec->mgmt_in)
        mgmt_request(ec, m);
}

/* ---- receivers ---- */

/* The selector filter of the remote source (either descriptor form) into f. Returns 0 (none), 1 (parsed) or
 * -1 (present but unusable; why says why). */
static int source_filter(pn_link_t *l, struct ehfilter *f, char *why, size_t whylen)
{
    pn_data_t *d = pn_terminus_filter(pn_link_remote_source(l));
    if (!d)
        return 0;
    pn_data_rewind(d);
    if (!pn_data_next(d) || pn_data_type(d) != PN_MAP)
        return 0;
    pn_data_enter(d);
    int rc = 0;
    while (pn_data_next(d)) {
        pn_type_t kt = pn_data_type(d);
        pn_bytes_t k = kt == PN_SYMBOL ? pn_data_get_symbol(d) : kt == PN_STRING ? pn_data_get_string(d) : pn_bytes(0, NULL);
        if (!pn_data_next(d))
            break;
        /* The SDKs name the entry after the filter; other clients (Proton's Selector: "selector") only use the
         * descriptor. Either identifies it. */
        bool key_ok = k.start && k.size == strlen(EH_SELECTOR) && memcmp(k.start, EH_SELECTOR, k.size) == 0;
        bool desc_ok = false;
        pn_bytes_t text = pn_bytes(0, NULL);
        if (pn_data_type(d) == PN_DESCRIBED) {
            pn_data_enter(d);
            pn_data_next(d); /* the descriptor: ulong 0x468C00000004 (Node) or the symbol (Python) */
            desc_ok = (pn_data_type(d) == PN_ULONG && pn_data_get_ulong(d) == EH_DESCRIPTOR_SELECTOR) ||
                      (pn_data_type(d) == PN_SYMBOL && pn_data_get_symbol(d).size == strlen(EH_SELECTOR) &&
                       memcmp(pn_data_get_symbol(d).start, EH_SELECTOR, strlen(EH_SELECTOR)) == 0);
            if (desc_ok && pn_data_next(d) && pn_data_type(d) == PN_STRING)
                text = pn_data_get_string(d);
            pn_data_exit(d);
        } else if (key_ok && pn_data_type(d) == PN_STRING) {
            text = pn_data_get_string(d);
        }
        if (!key_ok && !desc_ok)
            continue;
        if (!text.start) {
            snprintf(why, whylen, "the %s filter must be a described string", EH_SELECTOR);
            rc = -1;
        } else {
            rc = ehfilter_parse(text.start, text.size, f, why, whylen) == ERR_OK ? 1 : -1;
        }
        break;
    }
    pn_data_exit(d);
    return rc;
}

/* com.microsoft:epoch from the remote link properties. */
static bool link_epoch(pn_link_t *l, int64_t *out)
{
    pn_data_t *d = pn_link_remote_properties(l);
    if (!d)
        return false;
    pn_data_rewind(d);
    if (!pn_data_next(d) || pn_data_type(d) != PN_MAP)
        return false;
    pn_data_enter(d);
    bool found = false;
    while (pn_data_next(d)) {
        pn_type_t kt = pn_data_type(d);
        pn_bytes_t k = kt == PN_SYMBOL ? pn_data_get_symbol(d) : kt == PN_STRING ? pn_data_get_string(d) : pn_bytes(0, NULL);
        if (!pn_data_next(d))
            break;
        if (!k.start || k.size != strlen("com.microsoft:epoch") || memcmp(k.start, "com.microsoft:epoch", k.size) != 0)
            continue;
        switch (pn_data_type(d)) {
        case PN_LONG: *out = pn_data_get_long(d); found = true; break;
        case PN_INT: *out = pn_data_get_int(d); found = true; break;
        case PN_ULONG: *out = (int64_t)pn_data_get_ulong(d); found = true; break;
        case PN_UINT: *out = pn_data_get_uint(d); found = true; break;
        default: break;
        }
        break;
    }
    pn_data_exit(d);
    return found;
}

/* Where a new receiver starts, from its filter. Returns ERR_OK or ERR_INVALID (out of range, why set). */
static int start_position(struct eventhub *eh, struct eh_consumer *c, const struct ehfilter *f, bool has_filter,
                          char *why, size_t whylen)
{
    struct eventlog_partition_info info;
    eventlog_partition_info(eh->log, c->partition, &info);
    if (!has_filter) {
        c->next_seq = info.begin_seq;
        return ERR_OK;
    }
    switch (f->field) {
    case EHFILTER_OFFSET:
        if (f->latest) {
            c->next_seq = info.last_seq + 1;
            return ERR_OK;
        }
        if (f->value < 0) {
            c->next_seq = info.begin_seq; /* "-1": the start of the partition */
            return ERR_OK;
        }
        if (f->value > info.last_offset) {
            snprintf(why, whylen, "The supplied offset '%lld' is invalid. The last offset in the system is '%lld'.",
                     (long long)f->value, (long long)info.last_offset);
            return ERR_INVALID;
        }
        c->next_seq = eventlog_seq_after_offset(eh->log, c->partition, f->value, f->inclusive);
        c->skip = true;
        c->pred = *f;
        return ERR_OK;
    case EHFILTER_SEQUENCE: {
        int64_t from = f->inclusive ? f->value : f->value + 1;
        if (from > info.last_seq + 1) {
            snprintf(why, whylen,
                     "The supplied sequence number '%lld' is invalid. The last sequence number in the system is '%lld'.",
                     (long long)f->value, (long long)info.last_seq);
            return ERR_INVALID;
        }
        c->next_seq = from < info.begin_seq ? info.begin_seq : from;
        return ERR_OK;
    }
    case EHFILTER_ENQUEUED_TIME:
        c->next_seq = eventlog_seq_after_time(eh->log, c->partition, f->value, f->inclusive);
        c->skip = true;
        c->pred = *f;
        return ERR_OK;
    }
    return ERR_OK;
}

/* Epoch rules (Event Hubs): a receiver with epoch E takes the partition from every receiver with a lower or
 * equal epoch and from every non-epoch receiver (they are detached with amqp:link:stolen); a receiver is
 * refused when a higher epoch (or, for a non-epoch receiver, any epoch) receiver is there. */
static bool epoch_admit(struct eh_consumer *n, char *why, size_t whylen)
{
    struct eventhub *eh = n->ec->eh;
    for (struct eh_consumer *c = eh->consumers; c; c = c->next) {
        if (c->partition != n->partition || strcasecmp(c->group, n->group) != 0 || !c->has_epoch)
            continue;
        if (!n->has_epoch) {
            snprintf(why, whylen, "At least one receiver for the endpoint is created with epoch of '%lld', and so "
                                  "non-epoch receiver is not allowed.", (long long)c->epoch);
            return false;
        }
        if (c->epoch > n->epoch) {
            snprintf(why, whylen, "A receiver with a higher epoch '%lld' already exists. A new receiver with epoch "
                                  "%lld cannot be created.", (long long)c->epoch, (long long)n->epoch);
            return false;
        }
    }
    if (!n->has_epoch)
        return true;
    for (struct eh_consumer *c = eh->consumers; c;) {
        struct eh_consumer *next = c->next;
        if (c->partition == n->partition && strcasecmp(c->group, n->group) == 0) {
            char desc[300];
            snprintf(desc, sizeof desc, "New receiver with higher epoch of '%lld' is created hence current receiver "
                                        "with epoch '%s%lld' is getting disconnected. If you are recreating the "
                                        "receiver, make sure a higher epoch is used.",
                     (long long)n->epoch, c->has_epoch ? "" : "null ", (long long)(c->has_epoch ? c->epoch : 0));
            struct eventhub_conn *other = c->ec;
            pn_link_t *l = c->link;
            log_info("eventhub %s: receiver on %s/%d stolen (epoch %lld)", other->peer, c->group, c->partition,
                     (long long)n->epoch);
            consumer_remove(c);
            delivery_close_link(l, "amqp:link:stolen", desc);
            if (other != n->ec)
                wake_other(other);
        }
        c = next;
    }
    return true;
}

static void attach_consumer(struct eventhub_conn *ec, pn_link_t *l, const char *p)
{
    struct eventhub *eh = ec->eh;
    char why[300];
    /* {eh}/ConsumerGroups/{cg}/Partitions/{p} */
    size_t n = seg_len(p);
    const char *rest = p + n;
    if (strncasecmp(rest, "/ConsumerGroups/", 16) != 0) {
        snprintf(why, sizeof why, "The Event Hub-compatible endpoint serves receivers on "
                                  "%s/ConsumerGroups/{group}/Partitions/{id} and $management (it is read-only)",
                 eh->names[0]);
        delivery_close_link(l, "amqp:not-allowed", why);
        return;
    }
    const char *cg = rest + 16;
    size_t cg_len = seg_len(cg);
    const char *tail = cg + cg_len;
    if (cg_len == 0 || cg_len > EVENTLOG_MAX_GROUP_NAME || strncasecmp(tail, "/Partitions/", 12) != 0) {
        snprintf(why, sizeof why, "The messaging entity '%.200s' could not be found.", p);
        delivery_close_link(l, "amqp:not-found", why);
        return;
    }
    char group[EVENTLOG_MAX_GROUP_NAME + 1];
    snprintf(group, sizeof group, "%.*s", (int)cg_len, cg);
    const char *canon = eventlog_group_find(eh->log, group);
    if (!canon) {
        snprintf(why, sizeof why, "The messaging entity '%s/ConsumerGroups/%s' could not be found.", eh->names[0], group);
        delivery_close_link(l, "amqp:not-found", why);
        return;
    }
    const char *pid = tail + 12;
    int part = partition_id(eh, pid, strlen(pid));
    if (part < 0) {
        snprintf(why, sizeof why, "The specified partition is invalid for an EventHub partition sender or receiver. "
                                  "It should be between 0 and %d.", eventlog_partitions(eh->log) - 1);
        delivery_close_link(l, "com.microsoft:argument-out-of-range", why);
        return;
    }
    struct ehfilter f;
    int has = source_filter(l, &f, why, sizeof why);
    if (has < 0) {
        delivery_close_link(l, "amqp:invalid-field", why);
        return;
    }
    struct eh_consumer *c = calloc(1, sizeof *c);
    if (!c) {
        delivery_close_link(l, "amqp:internal-error", "out of memory");
        return;
    }
    c->tag.kind = EH_CONSUMER;
    c->tag.consumer = c;
    c->ec = ec;
    c->link = l;
    c->partition = part;
    snprintf(c->group, sizeof c->group, "%s", canon);
    c->has_epoch = link_epoch(l, &c->epoch);
    if (start_position(eh, c, &f, has > 0, why, sizeof why) != ERR_OK) {
        free(c);
        delivery_close_link(l, "com.microsoft:argument-out-of-range", why);
        return;
    }
    if (!epoch_admit(c, why, sizeof why)) {
        free(c);
        delivery_close_link(l, "amqp:link:stolen", why);
        return;
    }
    c->next = eh->consumers;
    eh->consumers = c;
    set_link(l, &c->tag);
    pn_link_open(l);
    log_info("eventhub %s: receiver on %s/ConsumerGroups/%s/Partitions/%d from sequence number %lld%s", ec->peer,
             eh->names[0], c->group, part, (long long)c->next_seq, c->has_epoch ? " (epoch)" : "");
    stream(c);
}

/* messages/events/... on the IoT Hub host: detach with amqp:link:redirect to the Event Hub-compatible
 * endpoint (iothub-amqp.md §B.1.7). */
static void send_redirect(struct eventhub_conn *ec, pn_link_t *l, const char *p)
{
    struct eventhub *eh = ec->eh;
    const char *rest = p + 15; /* after "messages/events" */
    char hostport[300], address[600];
    if (eh->redirect_port == 5671)
        snprintf(hostport, sizeof hostport, "%s", eh->redirect_host);
    else
        snprintf(hostport, sizeof hostport, "%s:%d", eh->redirect_host, eh->redirect_port);
    snprintf(address, sizeof address, "amqps://%s:%d/%s%s", eh->redirect_host, eh->redirect_port, eh->names[0],
             rest);
    pn_condition_t *cond = pn_link_condition(l);
    pn_condition_set_name(cond, "amqp:link:redirect");
    pn_condition_set_description(cond, "The IoT Hub's built-in events endpoint is served by the Event Hub-compatible "
                                       "endpoint at the address given in the error's info.");
    pn_data_t *info = pn_condition_info(cond);
    pn_data_put_map(info);
    pn_data_enter(info);
    put_sym(info, "hostname");
    put_str(info, hostport);
    put_sym(info, "network-host");
    put_str(info, eh->redirect_host);
    put_sym(info, "port");
    pn_data_put_int(info, eh->redirect_port);
    put_sym(info, "address");
    put_str(info, address);
    pn_data_exit(info);
    pn_link_close(l);
    log_info("eventhub %s: %s redirected to %s", ec->peer, p, address);
}

static void on_redirect_timer(struct loop *lp, void *ctx)
{
    struct eh_redirect *r = ctx;
    r->timer = NULL;
    pn_link_t *l = r->link;
    redirect_cancel(r);
    if (!l || !(pn_link_state(l) & PN_LOCAL_ACTIVE))
        return;
    send_redirect(r->ec, l, r->path);
    if (!r->ec->closed && r->ec->wake)
        r->ec->wake(r->ec->wake_ctx);
}

/* The attach is answered at once and the redirecting detach comes a moment later, as from the hub: Microsoft's
 * Node sample awaits createReceiver() (the attach) and only then listens for the receiver error, so a detach in
 * the same TCP segment would be lost. */
static void redirect(struct eventhub_conn *ec, pn_link_t *l, const char *p)
{
    pn_link_open(l);
    for (int i = 0; i < EH_MAX_REDIRECTS; i++) {
        struct eh_redirect *r = &ec->redirects[i];
        if (r->link)
            continue;
        r->tag.kind = EH_REDIRECT;
        r->ec = ec;
        r->link = l;
        snprintf(r->path, sizeof r->path, "%s", p);
        r->timer = loop_timer_add(ec->eh->loop, EH_REDIRECT_DELAY_MS, on_redirect_timer, r);
        if (!r->timer) {
            r->link = NULL;
            break;
        }
        set_link(l, &r->tag);
        return;
    }
    send_redirect(ec, l, p);
}

void eventhub_conn_attach(struct eventhub_conn *ec, pn_link_t *l, const char *addr)
{
    const char *p = path_of(addr);
    bool we_send = pn_link_is_sender(l);
    if (is_events_path(p)) {
        redirect(ec, l, p);
        return;
    }
    if (strcmp(p, "$management") == 0) {
        set_link(l, we_send ? &ec->mgmt_out : &ec->mgmt_in);
        pn_link_open(l);
        if (!we_send)
            pn_link_flow(l, EH_MGMT_CREDIT);
        return;
    }
    if (!we_send) {
        delivery_close_link(l, "amqp:not-allowed", "The Event Hub-compatible endpoint is read-only: devices send telemetry "
                                          "to the IoT Hub (MQTT), back ends receive it here.");
        return;
    }
    attach_consumer(ec, l, p);
}

void eventhub_conn_event(struct eventhub_conn *ec, pn_event_t *e)
{
    if (!ec || ec->closed)
        return;
    pn_link_t *l = pn_event_link(e);
    if (!l)
        return;
    struct eh_link *k = link_of(l);
    if (!k)
        return;
    ec->in_event = true;
    switch (pn_event_type(e)) {
    case PN_LINK_FLOW:
        if (k->kind == EH_CONSUMER)
            stream(k->consumer);
        break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
    case PN_LINK_LOCAL_CLOSE:
    case PN_LINK_LOCAL_DETACH:
    case PN_LINK_FINAL:
        if (k->kind == EH_CONSUMER)
            consumer_remove(k->consumer);
        else if (k->kind == EH_REDIRECT)
            redirect_cancel((struct eh_redirect *)k);
        else
            pn_record_set(pn_link_attachments(l), EH_LINK_KEY, NULL);
        break;
    default:
        break;
    }
    ec->in_event = false;
}
