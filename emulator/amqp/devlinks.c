/* devlinks.c -- devices and modules over AMQP (see devlinks.h; wire facts with sources in
 * docs/iothub-amqp-devices.md): the identities a connection authenticated over CBS, each a struct device_link
 * the hub reaches; their telemetry, C2D, method and twin links. */
#include "devlinks.h"

#include <inttypes.h>
#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/object.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "buf.h"
#include "c2d.h"
#include "delivery.h"
#include "device_link.h"
#include "err.h"
#include "faults.h"
#include "frames.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "telemetry.h"
#include "url.h"

#define DL_D2C_CREDIT 100  /* telemetry messages in flight per link */
#define DL_REQ_CREDIT 16   /* method responses / twin requests in flight per link */
#define DL_MAX_QUEUED 64   /* messages waiting for credit on one of our senders before a send fails */
#define DL_TWIN_MAX (128u * 1024u) /* a twin document (desired and reported at 32 KiB each, with versions) */
#define DL_IDENT_MAX (2 * REGISTRY_MAX_ID + 2)
#define DL_CHANNEL_MAX 160 /* a channel-correlation-id kept for pairing ("twin:" + a uuid is 41 bytes) */
#define DL_MAX_BATCH 500 /* messages in one batched telemetry delivery (256 KiB at ~0.5 KiB each) */

/* What one of our links does for its identity. */
enum dl_role { R_NONE, R_D2C, R_C2D, R_METH_OUT, R_METH_IN, R_TWIN_OUT, R_TWIN_IN };

struct dl_ident {
    struct device_link link; /* the hub's view; link.identity = ident */
    struct devlinks *dl;
    bool used;
    bool methods_ready, desired_ready;
    char device_id[REGISTRY_MAX_ID + 1];
    char module_id[REGISTRY_MAX_ID + 1]; /* "" for a device */
    char ident[DL_IDENT_MAX];
    int64_t expiry; /* the token's se */
    pn_link_t *c2d, *meth_out, *meth_in, *twin_out, *twin_in;
    uint64_t rid; /* method request counter */
};

struct devlinks {
    struct devlinks_env env;
    struct devlinks_hooks hooks;
    pn_connection_t *conn;
    char peer[64];
    bool closed;
    uint64_t tag;
    struct dl_ident ids[DEVLINKS_MAX_IDENTITIES];
};

static const struct device_link_ops dl_link_ops;

/* ---- link records: (slot + 1) << 4 | role in the link's attachments ---- */

PN_HANDLE(DL_LINK_KEY)

static void set_role(pn_link_t *l, int slot, enum dl_role r)
{
    pn_record_t *rec = pn_link_attachments(l);
    pn_record_def(rec, DL_LINK_KEY, PN_VOID);
    pn_record_set(rec, DL_LINK_KEY, (void *)(uintptr_t)((unsigned)(slot + 1) << 4 | (unsigned)r));
}

static uintptr_t get_rec(pn_link_t *l)
{
    pn_record_t *rec = pn_link_attachments(l);
    return rec && pn_record_has(rec, DL_LINK_KEY) ? (uintptr_t)pn_record_get(rec, DL_LINK_KEY) : 0;
}

static enum dl_role role_of(pn_link_t *l)
{
    return (enum dl_role)(get_rec(l) & 0xf);
}

static struct dl_ident *ident_of(struct devlinks *dl, pn_link_t *l)
{
    int slot = (int)(get_rec(l) >> 4) - 1;
    return slot >= 0 && slot < DEVLINKS_MAX_IDENTITIES && dl->ids[slot].used ? &dl->ids[slot] : NULL;
}

/* ---- addresses ---- */

/* Copies the percent-decoded segment p[0..len) into out (REGISTRY_MAX_ID + 1 bytes) if it is a valid id. */
static bool take_id(const char *p, size_t len, char *out)
{
    char *dec = NULL;
    size_t dlen = 0;
    if (len == 0 || url_decode(p, len, &dec, &dlen) != ERR_OK)
        return false;
    bool ok = dlen > 0 && dlen <= REGISTRY_MAX_ID && registry_id_is_valid(dec);
    if (ok)
        memcpy(out, dec, dlen + 1);
    free(dec);
    return ok;
}

/* "/devices/{id}[/modules/{mid}][/{rest}]" (leading '/' optional): the ids, and rest (after the '/', no
 * trailing '/'; "" when there is none) into rest (restlen bytes). */
static bool parse_path(const char *p, char *dev, char *mod, char *rest, size_t restlen)
{
    if (*p == '/')
        p++;
    if (strncasecmp(p, "devices/", 8) != 0)
        return false;
    p += 8;
    size_t n = strcspn(p, "/");
    if (!take_id(p, n, dev))
        return false;
    p += n;
    mod[0] = 0;
    if (strncasecmp(p, "/modules/", 9) == 0) {
        p += 9;
        n = strcspn(p, "/");
        if (!take_id(p, n, mod))
            return false;
        p += n;
    }
    if (*p == '/')
        p++;
    size_t rl = strlen(p);
    while (rl && p[rl - 1] == '/')
        rl--;
    if (rl >= restlen)
        return false;
    memcpy(rest, p, rl);
    rest[rl] = 0;
    return true;
}

/* The path of an audience: "[scheme://]host/devices/..." (percent-encoded as a token's sr, or not). */
static bool parse_audience(const char *audience, char *dev, char *mod)
{
    char *dec = NULL;
    if (url_decode(audience, strlen(audience), &dec, NULL) != ERR_OK)
        return false;
    const char *p = dec, *s = strstr(p, "://");
    if (s)
        p = s + 3;
    const char *slash = strchr(p, '/');
    char rest[8];
    bool ok = slash && slash > p && parse_path(slash, dev, mod, rest, sizeof rest) && rest[0] == 0;
    free(dec);
    return ok;
}

bool devlinks_is_audience(const char *audience)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    return audience && parse_audience(audience, dev, mod);
}

bool devlinks_claims(const char *addr)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1], rest[64];
    return addr && parse_path(addr, dev, mod, rest, sizeof rest);
}

/* ---- lifetime of identities ---- */

struct devlinks *devlinks_new(const struct devlinks_env *env, pn_connection_t *c, const struct devlinks_hooks *h,
                              const char *peer)
{
    struct devlinks *dl = calloc(1, sizeof *dl);
    if (!dl)
        return NULL;
    dl->env = *env;
    dl->hooks = *h;
    dl->conn = c;
    snprintf(dl->peer, sizeof dl->peer, "%s", peer ? peer : "?");
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES; i++) {
        dl->ids[i].dl = dl;
        dl->ids[i].link.ops = &dl_link_ops;
        dl->ids[i].link.identity = dl->ids[i].ident;
    }
    return dl;
}

static struct dl_ident *find_ident(struct devlinks *dl, const char *dev, const char *mod)
{
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES; i++)
        if (dl->ids[i].used && strcmp(dl->ids[i].device_id, dev) == 0 && strcmp(dl->ids[i].module_id, mod) == 0)
            return &dl->ids[i];
    return NULL;
}

static size_t idents_used(const struct devlinks *dl)
{
    size_t n = 0;
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES; i++)
        n += dl->ids[i].used;
    return n;
}

/* Stops what l did for its identity (a link detached or closed, by either side). Idempotent. */
static void forget_link(struct devlinks *dl, pn_link_t *l)
{
    enum dl_role r = role_of(l);
    struct dl_ident *id = ident_of(dl, l);
    if (r == R_NONE)
        return;
    set_role(l, -1, R_NONE);
    if (!id)
        return;
    switch (r) {
    case R_C2D:
        if (id->c2d == l) {
            id->c2d = NULL;
            if (dl->env.c2d)
                c2d_detach(dl->env.c2d, &id->link); /* what it had in flight goes back to the queue */
        }
        break;
    case R_METH_OUT:
    case R_METH_IN:
        if (id->meth_out == l)
            id->meth_out = NULL;
        if (id->meth_in == l)
            id->meth_in = NULL;
        if (id->methods_ready) {
            id->methods_ready = false;
            hub_link_methods_stopped(dl->env.hub, &id->link);
        }
        break;
    case R_TWIN_OUT:
        if (id->twin_out == l) {
            id->twin_out = NULL;
            if (id->desired_ready) {
                id->desired_ready = false;
                hub_link_desired_stopped(dl->env.hub, &id->link);
            }
        }
        break;
    case R_TWIN_IN:
        if (id->twin_in == l)
            id->twin_in = NULL;
        break;
    default:
        break;
    }
}

/* Closes every link of id with (name, desc). */
static void close_links(struct devlinks *dl, struct dl_ident *id, const char *name, const char *desc)
{
    for (pn_link_t *l = pn_link_head(dl->conn, 0); l; l = pn_link_next(l, 0)) {
        if (ident_of(dl, l) != id)
            continue;
        forget_link(dl, l);
        if (!(pn_link_state(l) & PN_LOCAL_CLOSED))
            delivery_close_link(l, name, desc);
    }
}

/* id leaves the connection: its links closed (when name is given), the hub told (unless it already knows:
 * a takeover), the slot freed. */
static void ident_drop(struct devlinks *dl, struct dl_ident *id, const char *name, const char *desc, bool tell_hub)
{
    if (!id->used)
        return;
    if (name)
        close_links(dl, id, name, desc);
    else
        for (pn_link_t *l = pn_link_head(dl->conn, 0); l; l = pn_link_next(l, 0))
            if (ident_of(dl, l) == id)
                forget_link(dl, l);
    if (dl->env.c2d)
        c2d_detach(dl->env.c2d, &id->link);
    if (tell_hub)
        hub_link_offline(dl->env.hub, &id->link);
    log_info("%s: AMQP identity off connection %s", id->ident, dl->peer);
    id->used = false;
    id->methods_ready = id->desired_ready = false;
    id->c2d = id->meth_out = id->meth_in = id->twin_out = id->twin_in = NULL;
}

void devlinks_closed(struct devlinks *dl)
{
    if (!dl || dl->closed)
        return;
    dl->closed = true;
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES; i++)
        ident_drop(dl, &dl->ids[i], NULL, NULL, true);
}

void devlinks_free(struct devlinks *dl)
{
    if (!dl)
        return;
    devlinks_closed(dl);
    free(dl);
}

int64_t devlinks_next_expiry(const struct devlinks *dl)
{
    int64_t at = INT64_MAX;
    int64_t skew = dl->env.token_skew_s > 0 ? dl->env.token_skew_s : 0;
    for (int i = 0; dl && i < DEVLINKS_MAX_IDENTITIES; i++)
        if (dl->ids[i].used && dl->ids[i].expiry < INT64_MAX - skew && dl->ids[i].expiry + skew < at)
            at = dl->ids[i].expiry + skew;
    return at;
}

void devlinks_expire(struct devlinks *dl, int64_t now_s)
{
    int64_t skew = dl->env.token_skew_s > 0 ? dl->env.token_skew_s : 0;
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES; i++) {
        struct dl_ident *id = &dl->ids[i];
        if (id->used && id->expiry < INT64_MAX - skew && id->expiry + skew < now_s) {
            log_info("%s: SAS token expired without renewal over $cbs; its AMQP links are closed", id->ident);
            ident_drop(dl, id, "amqp:unauthorized-access",
                       "the SAS token of this identity expired: put a new one on $cbs before it expires", true);
        }
    }
}

/* ---- CBS ---- */

int devlinks_put_token(struct devlinks *dl, const char *audience, const char *token, size_t tlen, int64_t *expiry,
                       char *why, size_t whylen)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1];
    *expiry = 0;
    if (!parse_audience(audience, dev, mod)) {
        snprintf(why, whylen, "the audience is not {host}/devices/{id}[/modules/{mid}]");
        return 400;
    }
    const struct identity *reg = registry_find(dl->env.reg, dev, mod);
    if (!reg) {
        snprintf(why, whylen, "%s not found", mod[0] ? "module" : "device");
        return 404;
    }
    if (!reg->enabled) {
        snprintf(why, whylen, "identity is disabled");
        return 401;
    }
    int64_t se = 0;
    if (auth_check_device(dl->env.auth, reg, token, tlen, loop_wall_s(dl->env.loop), dl->env.token_skew_s, &se, why,
                          whylen) != ERR_OK)
        return 401;
    struct dl_ident *id = find_ident(dl, dev, mod);
    if (id) { /* renewal: the links stay */
        id->expiry = se;
        *expiry = se;
        snprintf(why, whylen, "OK");
        log_info("%s: SAS token renewed over $cbs", id->ident);
        return 200;
    }
    char ident[DL_IDENT_MAX];
    snprintf(ident, sizeof ident, "%s%s%s", dev, mod[0] ? "/" : "", mod);
    int refused = faults_connect(dl->env.faults, ident, se, why, whylen);
    if (refused)
        return refused == FAULTS_REFUSE_UNAVAILABLE ? 503 : 401;
    for (int i = 0; i < DEVLINKS_MAX_IDENTITIES && !id; i++)
        if (!dl->ids[i].used)
            id = &dl->ids[i];
    if (!id) {
        snprintf(why, whylen, "too many identities on one connection (at most %d)", DEVLINKS_MAX_IDENTITIES);
        return 403;
    }
    snprintf(id->device_id, sizeof id->device_id, "%s", dev);
    snprintf(id->module_id, sizeof id->module_id, "%s", mod);
    snprintf(id->ident, sizeof id->ident, "%s", ident);
    id->expiry = se;
    id->rid = 0;
    id->used = true;
    if (hub_link_online(dl->env.hub, &id->link, dev, mod[0] ? mod : NULL) != ERR_OK) {
        id->used = false;
        snprintf(why, whylen, "out of memory");
        return 500;
    }
    *expiry = se;
    snprintf(why, whylen, "OK");
    log_info("%s connected over AMQP from %s", id->ident, dl->peer);
    return 200;
}

/* ---- attach ---- */

static enum dl_role role_for(const struct dl_ident *id, const char *rest, bool we_receive)
{
    if (strcasecmp(rest, "messages/events") == 0)
        return we_receive ? R_D2C : id->module_id[0] ? R_C2D : R_NONE; /* a module's input messages */
    if (strcasecmp(rest, "messages/devicebound") == 0)
        return we_receive ? R_NONE : R_C2D;
    if (strcasecmp(rest, "methods/devicebound") == 0)
        return we_receive ? R_METH_IN : R_METH_OUT;
    if (strcasecmp(rest, "twin") == 0)
        return we_receive ? R_TWIN_IN : R_TWIN_OUT;
    return R_NONE;
}

static void refuse(struct devlinks *dl, pn_link_t *l, const char *name, const char *desc)
{
    delivery_close_link(l, name, desc);
    log_info("amqp %s: device link %s refused: %s", dl->peer, pn_link_name(l), desc);
}

static bool same_channel(pn_link_t *a, pn_link_t *b);

/* The hub learns the identity takes method calls once both links of one method pair are attached: the same
 * address and the same com.microsoft:channel-correlation-id (see same_channel). */
static void methods_check(struct devlinks *dl, struct dl_ident *id)
{
    if (id->meth_out && id->meth_in && !id->methods_ready && same_channel(id->meth_out, id->meth_in)) {
        id->methods_ready = true;
        hub_link_methods_ready(dl->env.hub, &id->link);
    }
}

void devlinks_attach(struct devlinks *dl, pn_link_t *l, const char *addr)
{
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1], rest[64], desc[2 * REGISTRY_MAX_ID + 200];
    bool we_receive = pn_link_is_receiver(l);
    if (!parse_path(addr, dev, mod, rest, sizeof rest)) {
        refuse(dl, l, "amqp:not-found", "not a device address: /devices/{id}[/modules/{mid}]/...");
        return;
    }
    struct dl_ident *id = find_ident(dl, dev, mod);
    if (!id) {
        snprintf(desc, sizeof desc, "no valid token for %s%s%s on this connection: put one on $cbs first "
                 "(audience {host}/devices/{id}[/modules/{mid}])", dev, mod[0] ? "/" : "", mod);
        refuse(dl, l, "amqp:unauthorized-access", desc);
        return;
    }
    enum dl_role r = role_for(id, rest, we_receive);
    if (r == R_C2D && !dl->env.c2d)
        r = R_NONE;
    if (r == R_NONE) {
        snprintf(desc, sizeof desc, "no such node for a %s: %.120s", we_receive ? "sender" : "receiver", addr);
        refuse(dl, l, "amqp:not-found", desc);
        return;
    }
    pn_link_t **slot = r == R_C2D        ? &id->c2d
                       : r == R_METH_OUT ? &id->meth_out
                       : r == R_METH_IN  ? &id->meth_in
                       : r == R_TWIN_OUT ? &id->twin_out
                       : r == R_TWIN_IN  ? &id->twin_in
                                         : NULL;
    if (slot && *slot) { /* a second link of the same kind replaces the first */
        pn_link_t *old = *slot;
        forget_link(dl, old);
        delivery_close_link(old, "amqp:link:stolen", "a newer link of the same kind replaced this one");
    }
    set_role(l, (int)(id - dl->ids), r);
    if (we_receive)
        pn_link_set_max_message_size(l, dl->env.max_message);
    pn_link_open(l);
    if (we_receive)
        pn_link_flow(l, r == R_D2C ? DL_D2C_CREDIT : DL_REQ_CREDIT);
    if (slot)
        *slot = l;
    log_info("%s: AMQP link %s attached (%s)", id->ident, pn_link_name(l), addr);
    if (r == R_C2D)
        c2d_attach(dl->env.c2d, &id->link, c2d_wall_ms());
    else if (r == R_METH_OUT || r == R_METH_IN)
        methods_check(dl, id);
}

/* ---- messages ---- */


/* A scalar as text (strings, symbols, integers, booleans); false for other types. */
static bool scalar_text(pn_data_t *v, char *out, size_t outlen)
{
    switch (pn_data_type(v)) {
    case PN_STRING: {
        pn_bytes_t b = pn_data_get_string(v);
        if (b.size >= outlen || memchr(b.start, 0, b.size))
            return false;
        snprintf(out, outlen, "%.*s", (int)b.size, b.start);
        return true;
    }
    case PN_SYMBOL: {
        pn_bytes_t b = pn_data_get_symbol(v);
        if (b.size >= outlen || memchr(b.start, 0, b.size))
            return false;
        snprintf(out, outlen, "%.*s", (int)b.size, b.start);
        return true;
    }
    case PN_BYTE:
        snprintf(out, outlen, "%d", (int)pn_data_get_byte(v));
        return true;
    case PN_UBYTE:
        snprintf(out, outlen, "%u", (unsigned)pn_data_get_ubyte(v));
        return true;
    case PN_SHORT:
        snprintf(out, outlen, "%d", (int)pn_data_get_short(v));
        return true;
    case PN_USHORT:
        snprintf(out, outlen, "%u", (unsigned)pn_data_get_ushort(v));
        return true;
    case PN_INT:
        snprintf(out, outlen, "%d", pn_data_get_int(v));
        return true;
    case PN_UINT:
        snprintf(out, outlen, "%u", pn_data_get_uint(v));
        return true;
    case PN_LONG:
        snprintf(out, outlen, "%" PRId64, pn_data_get_long(v));
        return true;
    case PN_ULONG:
        snprintf(out, outlen, "%" PRIu64, pn_data_get_ulong(v));
        return true;
    case PN_BOOL:
        snprintf(out, outlen, "%s", pn_data_get_bool(v) ? "true" : "false");
        return true;
    default:
        return false;
    }
}

/* The value of key in the map held by data (application properties or annotations) as text. */
static bool map_text(pn_data_t *data, const char *key, char *out, size_t outlen)
{
    bool found = false;
    pn_data_rewind(data);
    if (!pn_data_next(data) || pn_data_type(data) != PN_MAP)
        return false;
    pn_data_enter(data);
    size_t klen = strlen(key);
    while (!found && pn_data_next(data)) {
        pn_type_t kt = pn_data_type(data);
        pn_bytes_t k = kt == PN_STRING ? pn_data_get_string(data) : kt == PN_SYMBOL ? pn_data_get_symbol(data) : pn_bytes(0, NULL);
        bool match = k.start && k.size == klen && strncasecmp(k.start, key, klen) == 0;
        if (!pn_data_next(data))
            break;
        if (match)
            found = scalar_text(data, out, outlen);
    }
    pn_data_exit(data);
    return found;
}


/* The com.microsoft:channel-correlation-id attach property of l ("" when it has none). */
static void link_channel(pn_link_t *l, char *out, size_t outlen)
{
    out[0] = 0;
    pn_data_t *props = pn_link_remote_properties(l);
    if (!props || !map_text(props, "com.microsoft:channel-correlation-id", out, outlen))
        out[0] = 0;
}

/* Whether a request link and a response link are one pair. The SDKs give both links of a pair one
 * channel-correlation-id (Node: "methods:"/"twin:" + a uuid per client, C: the device id), and the hub pairs
 * them by it: a stale link of an earlier pair (a re-attach after a link was killed, a second client of the
 * identity on the connection) is never paired with a newer one, so requests and answers cannot cross. Links
 * without the property (older clients, tests) pair by identity and address alone. */
static bool same_channel(pn_link_t *a, pn_link_t *b)
{
    char x[DL_CHANNEL_MAX], y[DL_CHANNEL_MAX];
    link_channel(a, x, sizeof x);
    link_channel(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* The body: a data section, or an amqp-value string or binary; empty when there is none. *ok (may be NULL)
 * is false for any other body (a list, a map, a number...). */
static pn_bytes_t body_of(pn_message_t *m, bool *ok)
{
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    if (ok)
        *ok = true;
    if (pn_data_next(body)) {
        if (pn_data_type(body) == PN_BINARY)
            return pn_data_get_binary(body);
        if (pn_data_type(body) == PN_STRING)
            return pn_data_get_string(body);
        if (pn_data_type(body) != PN_NULL && ok)
            *ok = false;
    }
    return pn_bytes(0, NULL);
}

/* Feeds the application properties of m to the fault request and, when bag is not NULL, to the bag. */
static int add_app_props(pn_message_t *m, struct faults_request *req, struct buf *bag, bool *first)
{
    char key[C2D_MAX_KEY], text[C2D_MAX_VALUE];
    int rc = ERR_OK;
    pn_data_t *ap = pn_message_properties(m);
    pn_data_rewind(ap);
    if (!pn_data_next(ap) || pn_data_type(ap) != PN_MAP)
        return ERR_OK;
    pn_data_enter(ap);
    while (!rc && pn_data_next(ap)) {
        bool kok = (pn_data_type(ap) == PN_STRING || pn_data_type(ap) == PN_SYMBOL) && scalar_text(ap, key, sizeof key);
        if (!pn_data_next(ap))
            break;
        if (!kok || !key[0] || !scalar_text(ap, text, sizeof text))
            continue;
        faults_request_prop(req, key, text);
        if (bag)
            rc = url_bag_add_even_empty(bag, first, key, text); /* "" is a value, as over MQTT and HTTPS */
    }
    pn_data_exit(ap);
    return rc;
}

/* One telemetry message: its properties become the MQTT-style property bag the event log keeps (system
 * properties as $.mid $.cid $.ct $.ce $.uid); fault-injection properties (its own, or a batch envelope's:
 * the C SDK moves them there) are honoured as on MQTT. Records it unless the verdict refuses it. */
static enum faults_verdict telemetry_one(struct devlinks *dl, struct dl_ident *id, pn_message_t *m,
                                         pn_message_t *envelope, pn_bytes_t body, bool *too_big)
{
    struct buf t;
    buf_init(&t, dl->env.max_message);
    bool first = true;
    char text[C2D_MAX_VALUE];
    int rc = id->module_id[0] ? buf_printf(&t, "devices/%s/modules/%s/messages/events/", id->device_id, id->module_id)
                              : buf_printf(&t, "devices/%s/messages/events/", id->device_id);
    struct faults_request req;
    faults_request_init(&req);
    delivery_id_text(pn_message_get_id(m), text, sizeof text);
    rc = rc ? rc : url_bag_add(&t, &first, "$.mid", text);
    delivery_id_text(pn_message_get_correlation_id(m), text, sizeof text);
    rc = rc ? rc : url_bag_add(&t, &first, "$.cid", text);
    const char *ct = pn_message_get_content_type(m), *ce = pn_message_get_content_encoding(m);
    rc = rc ? rc : url_bag_add(&t, &first, "$.ct", ct ? ct : "");
    rc = rc ? rc : url_bag_add(&t, &first, "$.ce", ce ? ce : "");
    pn_bytes_t uid = pn_message_get_user_id(m);
    snprintf(text, sizeof text, "%.*s", (int)(uid.size < sizeof text ? uid.size : 0), uid.start ? uid.start : "");
    rc = rc ? rc : url_bag_add(&t, &first, "$.uid", memchr(uid.start ? uid.start : "", 0, uid.size) ? "" : text);
    if (envelope)
        add_app_props(envelope, &req, NULL, NULL);
    rc = rc ? rc : add_app_props(m, &req, &t, &first);
    rc = rc ? rc : buf_append_byte(&t, 0);
    *too_big = rc != ERR_OK;
    enum faults_verdict v = FAULTS_ACCEPT;
    if (!rc) {
        v = faults_d2c(dl->env.faults, &id->link, req.kind != FAULTS_KIND_NONE ? &req : NULL);
        if ((v == FAULTS_ACCEPT || v == FAULTS_HOLD) && dl->env.telemetry)
            telemetry_add(dl->env.telemetry, id->device_id, id->module_id[0] ? id->module_id : NULL,
                          (const char *)t.data, (const uint8_t *)body.start, body.size, loop_wall_s(dl->env.loop));
    }
    buf_cleanup(&t);
    return v;
}

/* A batch: the data sections of raw are encoded messages (message-format 0x80013700; see frames.h), told apart
 * from an ordinary body by the first section starting with a message section's descriptor. */
static bool is_batch(const uint8_t *raw, size_t rawlen, struct frames_view *secs, size_t max, size_t *n)
{
    if (!raw || frames_data_sections(raw, rawlen, secs, max, n) != ERR_OK || *n == 0)
        return false;
    const uint8_t *p = secs[0].p;
    return secs[0].len >= 3 && p[0] == 0x00 && p[1] == 0x53 && p[2] >= 0x70 && p[2] <= 0x78;
}

/* Telemetry, one message or a batch: the delivery's outcome is the worst verdict of its messages. A
 * throttling, quota or auth fault rejects it (how the hub surfaces them over AMQP); a fault asking for a
 * disconnect leaves it unsettled (the hub drops the connection before it acknowledges). */
static bool on_telemetry(struct devlinks *dl, struct dl_ident *id, pn_delivery_t *d, pn_message_t *m,
                         const uint8_t *raw, size_t rawlen)
{
    struct frames_view secs[DL_MAX_BATCH];
    size_t n = 0;
    bool batch = is_batch(raw, rawlen, secs, DL_MAX_BATCH, &n);
    for (size_t i = 0; batch && i < n; i++) { /* all or nothing: check every message before recording any */
        pn_message_t *inner = pn_message();
        bool body_ok = false;
        bool bad = !inner || pn_message_decode(inner, (const char *)secs[i].p, secs[i].len) != 0 ||
                   (body_of(inner, &body_ok), !body_ok);
        pn_message_free(inner);
        if (bad) {
            delivery_set_outcome(d, PN_REJECTED, "amqp:decode-error",
                                 "a data section of the batched message is not an AMQP message with a data body");
            return true;
        }
    }
    enum faults_verdict worst = FAULTS_ACCEPT;
    bool too_big = false;
    for (size_t i = 0; i < (batch ? n : 1) && !too_big && worst != FAULTS_THROTTLED &&
                       worst != FAULTS_QUOTA_EXCEEDED && worst != FAULTS_UNAUTHORIZED;
         i++) {
        pn_message_t *one = m, *inner = NULL;
        if (batch) {
            inner = pn_message();
            if (!inner || pn_message_decode(inner, (const char *)secs[i].p, secs[i].len) != 0) {
                pn_message_free(inner);
                delivery_set_outcome(d, PN_REJECTED, "amqp:decode-error",
                                     "a data section of the batched message is not an AMQP message");
                return true;
            }
            one = inner;
        }
        bool body_ok;
        pn_bytes_t body = body_of(one, &body_ok);
        enum faults_verdict v = FAULTS_ACCEPT;
        if (body_ok)
            v = telemetry_one(dl, id, one, batch ? m : NULL, body, &too_big);
        pn_message_free(inner);
        if (!body_ok) {
            delivery_set_outcome(d, PN_REJECTED, "amqp:decode-error",
                                 "a telemetry body must be a data section (or an amqp-value string or binary)");
            return true;
        }
        if (v != FAULTS_ACCEPT && worst != FAULTS_HOLD)
            worst = v;
    }
    switch (worst) {
    case FAULTS_THROTTLED:
        delivery_set_outcome(d, PN_REJECTED, "com.microsoft:device-container-throttled",
                             "ThrottlingException: this identity's device-to-cloud messages are throttled; retry later");
        return true;
    case FAULTS_QUOTA_EXCEEDED:
        delivery_set_outcome(d, PN_REJECTED, "amqp:resource-limit-exceeded",
                             "IotHubQuotaExceeded: the hub's daily message quota is used up");
        return true;
    case FAULTS_UNAUTHORIZED:
        delivery_set_outcome(d, PN_REJECTED, "amqp:unauthorized-access", "IotHubUnauthorizedAccess: not authorized");
        return true;
    case FAULTS_HOLD:
        return false;
    case FAULTS_ACCEPT:
        break;
    }
    if (too_big)
        delivery_set_outcome(d, PN_REJECTED, "amqp:resource-limit-exceeded", "the message's properties are too large");
    else
        delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
    return true;
}

/* The request id of a method response: its correlation id, the uuid we sent (text or uuid). */
static bool reply_rid(pn_msgid_t cid, char rid[17])
{
    char text[64], hex[33];
    if (cid.type != PN_UUID && cid.type != PN_STRING)
        return false;
    delivery_id_text(cid, text, sizeof text);
    size_t n = 0;
    for (const char *p = text; *p && n < 33; p++)
        if (*p != '-')
            hex[n++] = *p;
    if (n != 32)
        return false;
    for (size_t i = 0; i < 32; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
        if (c >= 'A' && c <= 'F')
            hex[i] = (char)(c - 'A' + 'a');
    }
    memcpy(rid, hex + 16, 16);
    rid[16] = 0;
    return true;
}

static void on_method_reply(struct devlinks *dl, struct dl_ident *id, pn_delivery_t *d, pn_message_t *m)
{
    char rid[17], st[32];
    if (!reply_rid(pn_message_get_correlation_id(m), rid)) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:decode-error",
                    "a method response needs the request's correlation-id (a uuid)");
        return;
    }
    char *end = NULL;
    long status = map_text(pn_message_properties(m), "IoThub-status", st, sizeof st) ? strtol(st, &end, 10) : 0;
    if (!end || end == st || *end || status < -2147483647L || status > 2147483647L) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:invalid-field",
                    "a method response needs an integer IoThub-status application property");
        return;
    }
    delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
    pn_bytes_t b = body_of(m, NULL);
    hub_link_method_reply(dl->env.hub, &id->link, rid, (int)status, (const uint8_t *)b.start, b.size);
}

static int send_on(struct devlinks *dl, pn_link_t *l, pn_message_t *m)
{
    if (pn_link_queued(l) >= DL_MAX_QUEUED)
        return ERR_TOO_BIG;
    int rc = delivery_send_settled(l, m, dl->env.max_message, "d", &dl->tag);
    dl->hooks.wake(dl->hooks.ctx);
    return rc;
}

static void put_ann(pn_data_t *ann, const char *key, int status, int64_t version)
{
    pn_data_put_map(ann);
    pn_data_enter(ann);
    if (key) {
        pn_data_put_symbol(ann, pn_bytes(strlen("status"), "status"));
        pn_data_put_int(ann, status);
    }
    if (version >= 0) {
        pn_data_put_symbol(ann, pn_bytes(strlen("version"), "version"));
        pn_data_put_long(ann, version);
    }
    pn_data_exit(ann);
}

/* A twin response on the identity's twin sender: the request's correlation id, annotations status (and
 * version), the body as a data section. */
static void twin_reply(struct devlinks *dl, struct dl_ident *id, pn_msgid_t cid, int status, int64_t version,
                       const void *body, size_t len)
{
    pn_message_t *r = pn_message();
    if (!r)
        return;
    pn_message_set_correlation_id(r, cid);
    put_ann(pn_message_annotations(r), "status", status, version);
    pn_message_set_inferred(r, true);
    pn_data_put_binary(pn_message_body(r), pn_bytes(len, body));
    if (send_on(dl, id->twin_out, r) != ERR_OK)
        log_warn("%s: twin response dropped (no credit)", id->ident);
    pn_message_free(r);
}

static void twin_error(struct devlinks *dl, struct dl_ident *id, pn_msgid_t cid, const struct twin_error *e)
{
    int status = e->code >= 100000 ? e->code / 1000 : 500;
    json_t *body = json_pack("{s:i,s:s}", "errorCode", e->code >= 100000 ? e->code : 500001, "message", e->message);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    twin_reply(dl, id, cid, status, -1, text ? text : "", text ? strlen(text) : 0);
    free(text);
}

static void on_twin_request(struct devlinks *dl, struct dl_ident *id, pn_delivery_t *d, pn_message_t *m)
{
    char op[16], res[64];
    pn_data_t *ann = pn_message_annotations(m);
    if (!map_text(ann, "operation", op, sizeof op)) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:invalid-field", "a twin request needs an 'operation' message annotation");
        return;
    }
    if (!map_text(ann, "resource", res, sizeof res))
        res[0] = 0;
    if (!id->twin_out) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-allowed",
                    "attach the twin receiver link (source /devices/{id}/twin) before sending twin requests");
        return;
    }
    if (!same_channel(id->twin_out, pn_delivery_link(d))) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-allowed",
                             "the twin receiver link attached last has another com.microsoft:channel-correlation-id: "
                             "attach the request and response links of one pair with the same value");
        return;
    }
    pn_msgid_t cid = pn_message_get_correlation_id(m);
    delivery_set_outcome(d, PN_ACCEPTED, NULL, NULL);
    int retry = 0;
    bool is_get = strcasecmp(op, "GET") == 0, is_patch = strcasecmp(op, "PATCH") == 0;
    if ((is_get || is_patch) &&
        !faults_throttle_take(dl->env.faults, is_get ? FAULTS_OP_TWIN_READ : FAULTS_OP_TWIN_UPDATE, 1, &retry)) {
        struct twin_error e = {429001, "ThrottlingException: the twin operations of this hub are over their limit."};
        twin_error(dl, id, cid, &e);
        return;
    }
    if (is_get && (!res[0] || strcmp(res, "/") == 0)) {
        struct buf doc;
        buf_init(&doc, DL_TWIN_MAX);
        if (hub_link_twin_get(dl->env.hub, &id->link, &doc) != ERR_OK) {
            struct twin_error e = {500001, "The twin could not be read."};
            twin_error(dl, id, cid, &e);
        } else {
            twin_reply(dl, id, cid, 200, -1, doc.data, doc.len);
        }
        buf_cleanup(&doc);
    } else if (is_patch && strcmp(res, "/properties/reported") == 0) {
        pn_bytes_t b = body_of(m, NULL);
        int64_t version = 0;
        struct twin_error e = {500001, "The twin could not be saved."};
        int rc = hub_link_twin_patch(dl->env.hub, &id->link, (const uint8_t *)b.start, b.size, -1, &version, &e);
        if (rc == ERR_OK) {
            twin_reply(dl, id, cid, 204, version, "", 0);
        } else {
            if (rc != ERR_INVALID && rc != ERR_MALFORMED)
                e = (struct twin_error){500001, "The twin could not be saved."};
            log_info("%s: reported properties refused: %s", id->ident, e.message);
            twin_error(dl, id, cid, &e);
        }
    } else if ((strcasecmp(op, "PUT") == 0 || strcasecmp(op, "DELETE") == 0) &&
               strcmp(res, "/notifications/twin/properties/desired") == 0) {
        bool on = strcasecmp(op, "PUT") == 0;
        if (on && !id->desired_ready) {
            id->desired_ready = true;
            twin_reply(dl, id, cid, 200, -1, "", 0); /* the answer precedes any push it causes */
            hub_link_desired_ready(dl->env.hub, &id->link);
            return;
        }
        if (!on && id->desired_ready) {
            id->desired_ready = false;
            hub_link_desired_stopped(dl->env.hub, &id->link);
        }
        twin_reply(dl, id, cid, 200, -1, "", 0);
    } else {
        struct twin_error e = {400000, ""};
        snprintf(e.message, sizeof e.message, "unsupported twin operation %s on resource '%s'", op, res);
        twin_error(dl, id, cid, &e);
    }
}

bool devlinks_message(struct devlinks *dl, pn_link_t *l, pn_delivery_t *d, pn_message_t *m, const uint8_t *raw,
                      size_t rawlen)
{
    struct dl_ident *id = ident_of(dl, l);
    enum dl_role r = role_of(l);
    if (!id) {
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-allowed", "this link no longer belongs to an identity");
        return true;
    }
    registry_touch(dl->env.reg, id->device_id, id->module_id, loop_wall_s(dl->env.loop));
    switch (r) {
    case R_D2C:
        return on_telemetry(dl, id, d, m, raw, rawlen);
    case R_METH_IN:
        on_method_reply(dl, id, d, m);
        return true;
    case R_TWIN_IN:
        on_twin_request(dl, id, d, m);
        return true;
    default:
        delivery_set_outcome(d, PN_REJECTED, "amqp:not-allowed", "this link does not take messages");
        return true;
    }
}

/* ---- events: C2D dispositions, links going away ---- */

static void c2d_disposition(struct devlinks *dl, struct dl_ident *id, pn_delivery_t *d)
{
    if (!pn_delivery_updated(d) || !dl->env.c2d)
        return;
    uint64_t state = pn_delivery_remote_state(d);
    uint64_t seq = (uint64_t)(uintptr_t)pn_delivery_get_context(d);
    const char *what = NULL;
    switch (state) {
    case PN_ACCEPTED:
        what = "completed";
        c2d_complete(dl->env.c2d, id->ident, seq);
        break;
    case PN_REJECTED:
        what = "rejected";
        c2d_reject(dl->env.c2d, id->ident, seq);
        break;
    case PN_MODIFIED:
        if (pn_disposition_is_undeliverable(pn_delivery_remote(d))) {
            what = "rejected (modified, undeliverable here)";
            c2d_reject(dl->env.c2d, id->ident, seq);
            break;
        }
        __attribute__((fallthrough));
    case PN_RELEASED:
        what = "abandoned";
        c2d_abandon(dl->env.c2d, id->ident, seq);
        break;
    default:
        return;
    }
    log_info("%s: C2D message (lock token %" PRIu64 ") %s over AMQP", id->ident, seq, what);
    pn_delivery_settle(d);
}

void devlinks_event(struct devlinks *dl, pn_event_t *e)
{
    if (!dl)
        return;
    switch (pn_event_type(e)) {
    case PN_DELIVERY: {
        pn_delivery_t *d = pn_event_delivery(e);
        pn_link_t *l = pn_delivery_link(d);
        struct dl_ident *id = ident_of(dl, l);
        if (id && pn_link_is_sender(l) && role_of(l) == R_C2D)
            c2d_disposition(dl, id, d);
        break;
    }
    case PN_LINK_REMOTE_DETACH:
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_LOCAL_DETACH:
    case PN_LINK_LOCAL_CLOSE:
    case PN_LINK_FINAL:
        forget_link(dl, pn_event_link(e));
        break;
    default:
        break;
    }
}

/* ---- the hub's view of an identity (device_link.h) ---- */

static struct dl_ident *link_ident(struct device_link *l)
{
    return (struct dl_ident *)((char *)l - offsetof(struct dl_ident, link));
}

/* A method request: correlation id a uuid whose last 8 bytes are the request id (the C SDK requires a uuid),
 * the method name in the IoThub-methodname application property, the payload as a data section. */
static int link_deliver_method(struct device_link *l, const char *method, const uint8_t *payload, size_t len,
                               char *rid)
{
    struct dl_ident *id = link_ident(l);
    struct devlinks *dl = id->dl;
    if (!id->used || !id->meth_out || dl->closed)
        return ERR_CLOSED;
    uint64_t n = ++id->rid;
    snprintf(rid, 17, "%016" PRIx64, n);
    pn_msgid_t cid = {.type = PN_UUID};
    for (int i = 0; i < 8; i++)
        cid.u.as_uuid.bytes[8 + i] = (char)(n >> (56 - 8 * i));
    pn_message_t *m = pn_message();
    if (!m)
        return ERR_NOMEM;
    pn_message_set_correlation_id(m, cid);
    pn_data_t *ap = pn_message_properties(m);
    pn_data_put_map(ap);
    pn_data_enter(ap);
    pn_data_put_string(ap, pn_bytes(strlen("IoThub-methodname"), "IoThub-methodname"));
    pn_data_put_string(ap, pn_bytes(strlen(method), method));
    pn_data_exit(ap);
    pn_message_set_inferred(m, true);
    pn_data_put_binary(pn_message_body(m), pn_bytes(len, (const char *)payload));
    int rc = send_on(dl, id->meth_out, m);
    pn_message_free(m);
    return rc;
}

/* A desired-properties patch: no correlation id (which is how the SDKs tell it from a response), the version
 * in the "version" annotation, the patch as a data section. */
static int link_push_desired(struct device_link *l, const uint8_t *patch, size_t len, int64_t version)
{
    struct dl_ident *id = link_ident(l);
    struct devlinks *dl = id->dl;
    if (!id->used || !id->twin_out || dl->closed)
        return ERR_CLOSED;
    pn_message_t *m = pn_message();
    if (!m)
        return ERR_NOMEM;
    put_ann(pn_message_annotations(m), NULL, 0, version);
    pn_message_set_inferred(m, true);
    pn_data_put_binary(pn_message_body(m), pn_bytes(len, (const char *)patch));
    int rc = send_on(dl, id->twin_out, m);
    pn_message_free(m);
    return rc;
}

static void put_str_prop(pn_data_t *ap, const char *k, const char *v)
{
    pn_data_put_string(ap, pn_bytes(strlen(k), k));
    pn_data_put_string(ap, pn_bytes(strlen(v), v));
}

/* The input name of a message to a module: its `inputName` application property (how a sender outside
 * IoT Edge, where routes name the input, says which input it is for); NULL for a device or without one. */
static const char *module_input_name(const struct dl_ident *id, const struct c2d_message *cm)
{
    if (!id->module_id[0])
        return NULL;
    for (size_t i = 0; i < cm->n_props; i++)
        if (strcmp(cm->props[i].key, "inputName") == 0 && cm->props[i].value[0])
            return cm->props[i].value;
    return NULL;
}

/* A C2D message, unsettled, tagged with its lock token; the device's outcome settles it (c2d_disposition). */
static int link_deliver_c2d(struct device_link *l, const struct c2d_message *cm)
{
    struct dl_ident *id = link_ident(l);
    struct devlinks *dl = id->dl;
    if (!id->used || !id->c2d || dl->closed)
        return ERR_CLOSED;
    pn_message_t *m = pn_message();
    if (!m)
        return ERR_NOMEM;
    if (cm->message_id[0]) {
        pn_msgid_t mid = {.type = PN_STRING, .u.as_bytes = pn_bytes(strlen(cm->message_id), cm->message_id)};
        pn_message_set_id(m, mid);
    }
    if (cm->correlation_id[0]) {
        pn_msgid_t cid = {.type = PN_STRING, .u.as_bytes = pn_bytes(strlen(cm->correlation_id), cm->correlation_id)};
        pn_message_set_correlation_id(m, cid);
    }
    pn_message_set_address(m, cm->to);
    if (cm->user_id[0])
        pn_message_set_user_id(m, pn_bytes(strlen(cm->user_id), cm->user_id));
    if (cm->content_type[0])
        pn_message_set_content_type(m, cm->content_type);
    if (cm->content_encoding[0])
        pn_message_set_content_encoding(m, cm->content_encoding);
    if (cm->expiry_given)
        pn_message_set_expiry_time(m, cm->expiry_ms);
    pn_message_set_creation_time(m, cm->enqueued_ms);
    pn_message_set_delivery_count(m, cm->delivery_count > 0 ? cm->delivery_count - 1 : 0);
    if (cm->n_props || cm->ack[0]) {
        pn_data_t *ap = pn_message_properties(m);
        pn_data_put_map(ap);
        pn_data_enter(ap);
        for (size_t i = 0; i < cm->n_props; i++)
            put_str_prop(ap, cm->props[i].key, cm->props[i].value);
        pn_data_exit(ap);
    }
    const char *input = module_input_name(id, cm);
    if (input) { /* a module's input message: the input name where the SDKs read it (Node: 'inputMessage') */
        pn_data_t *ann = pn_message_annotations(m);
        pn_data_put_map(ann);
        pn_data_enter(ann);
        pn_data_put_symbol(ann, pn_bytes(strlen("x-opt-input-name"), "x-opt-input-name"));
        pn_data_put_string(ann, pn_bytes(strlen(input), input));
        pn_data_exit(ann);
    }
    pn_message_set_inferred(m, true);
    pn_data_put_binary(pn_message_body(m), pn_bytes(cm->body_len, (const char *)cm->body));
    char tag[24];
    int tl = snprintf(tag, sizeof tag, "%" PRIu64, cm->seq);
    pn_delivery_t *d = NULL;
    int rc = delivery_send(id->c2d, m, C2D_MAX_BODY + 64 * 1024, tag, (size_t)tl, false, &d);
    pn_message_free(m);
    if (rc)
        return rc;
    pn_delivery_set_context(d, (void *)(uintptr_t)cm->seq);
    log_info("%s: C2D message %s delivered over AMQP", id->ident, cm->message_id[0] ? cm->message_id : "-");
    dl->hooks.wake(dl->hooks.ctx);
    return ERR_OK;
}

/* Closes the whole connection with (name, desc) (name NULL: cleanly), every link detached and every session
 * ended first, in the same flush: a client that runs its links down cleanly when the connection closes (the
 * Node SDK waits 45 s for detach replies otherwise, azure-iot-amqp-base rerunWithForceTimer) finds nothing
 * left to wait for. desc must be a string literal. */
static void close_connection(struct devlinks *dl, const char *name, const char *desc)
{
    for (pn_link_t *k = pn_link_head(dl->conn, PN_LOCAL_ACTIVE); k; k = pn_link_next(k, PN_LOCAL_ACTIVE)) {
        forget_link(dl, k);
        if (name)
            delivery_close_link(k, name, desc);
        else
            pn_link_close(k);
    }
    for (pn_session_t *ss = pn_session_head(dl->conn, PN_LOCAL_ACTIVE); ss; ss = pn_session_next(ss, PN_LOCAL_ACTIVE))
        pn_session_close(ss);
    dl->hooks.close(dl->hooks.ctx, name, desc);
}

/* Takeover, identity disabled or deleted: the hub has taken the link offline already. A connection carrying
 * only this identity is closed (what the SDKs notice and retry on); otherwise only its links go. */
static void link_kick(struct device_link *l, const char *reason)
{
    struct dl_ident *id = link_ident(l);
    struct devlinks *dl = id->dl;
    if (!id->used || dl->closed)
        return;
    log_info("%s: closing its AMQP links: %s", id->ident, reason);
    if (idents_used(dl) == 1) {
        ident_drop(dl, id, NULL, NULL, false);
        close_connection(dl, "amqp:connection:forced",
                        "the hub closed this identity's connection (another connection took over, or the identity "
                        "was disabled or deleted)");
        return;
    }
    ident_drop(dl, id, "amqp:link:detach-forced", "the hub closed this identity's links (another connection took "
               "over, or the identity was disabled or deleted)", false);
    dl->hooks.wake(dl->hooks.ctx);
}

static void link_abort(struct device_link *l, const char *reason)
{
    struct dl_ident *id = link_ident(l);
    if (!id->dl->closed)
        id->dl->hooks.abort(id->dl->hooks.ctx, reason);
}

/* The AMQP fault-injection types (iothub-amqp.md §B.5): a link, the session or the connection is killed with
 * an error condition; ShutDownAmqp closes the connection cleanly. */
static void link_fault(struct device_link *l, const char *type, const char *reason)
{
    struct dl_ident *id = link_ident(l);
    struct devlinks *dl = id->dl;
    if (!id->used || dl->closed)
        return;
    log_info("%s: fault injection %s (%s)", id->ident, type, reason);
    if (strcasecmp(type, "ShutDownAmqp") == 0) {
        close_connection(dl, NULL, "fault injection: ShutDownAmqp");
        return;
    }
    if (strcasecmp(type, "KillAmqpConnection") == 0) {
        close_connection(dl, "amqp:internal-error", "fault injection: KillAmqpConnection");
        return;
    }
    static const char desc[] = "fault injection: this link was killed on request";
    if (strcasecmp(type, "KillAmqpSession") == 0) {
        pn_session_t *s = NULL;
        for (pn_link_t *k = pn_link_head(dl->conn, PN_LOCAL_ACTIVE); k && !s; k = pn_link_next(k, PN_LOCAL_ACTIVE))
            if (ident_of(dl, k) == id && role_of(k) == R_D2C)
                s = pn_link_session(k);
        if (s) {
            pn_condition_t *c = pn_session_condition(s);
            pn_condition_set_name(c, "amqp:internal-error");
            pn_condition_set_description(c, "fault injection: KillAmqpSession");
            for (pn_link_t *k = pn_link_head(dl->conn, 0); k; k = pn_link_next(k, 0))
                if (pn_link_session(k) == s)
                    forget_link(dl, k);
            pn_session_close(s);
        }
        dl->hooks.wake(dl->hooks.ctx);
        return;
    }
    /* KillAmqp{CBSLinkReq,CBSLinkResp,D2CLink,C2DLink,TwinLinkReq,TwinLinkResp,MethodReqLink,MethodRespLink}:
     * "Req" is the link carrying requests (to the hub for CBS and twins, from it for methods). */
    for (pn_link_t *k = pn_link_head(dl->conn, PN_LOCAL_ACTIVE); k; k = pn_link_next(k, PN_LOCAL_ACTIVE)) {
        enum dl_role r = ident_of(dl, k) == id ? role_of(k) : R_NONE;
        bool kill = false;
        if (strcasecmp(type, "KillAmqpCBSLinkReq") == 0 || strcasecmp(type, "KillAmqpCBSLinkResp") == 0) {
            bool req = strcasecmp(type, "KillAmqpCBSLinkReq") == 0;
            pn_terminus_t *t = pn_link_is_receiver(k) ? pn_link_remote_target(k) : pn_link_remote_source(k);
            const char *a = pn_terminus_get_address(t);
            kill = a && strstr(a, "$cbs") && (req ? pn_link_is_receiver(k) : pn_link_is_sender(k));
        } else {
            kill = (r == R_D2C && strcasecmp(type, "KillAmqpD2CLink") == 0) ||
                   (r == R_C2D && strcasecmp(type, "KillAmqpC2DLink") == 0) ||
                   (r == R_TWIN_IN && strcasecmp(type, "KillAmqpTwinLinkReq") == 0) ||
                   (r == R_TWIN_OUT && strcasecmp(type, "KillAmqpTwinLinkResp") == 0) ||
                   (r == R_METH_OUT && strcasecmp(type, "KillAmqpMethodReqLink") == 0) ||
                   (r == R_METH_IN && strcasecmp(type, "KillAmqpMethodRespLink") == 0);
        }
        if (kill) {
            forget_link(dl, k);
            delivery_close_link(k, "amqp:internal-error", desc);
        }
    }
    dl->hooks.wake(dl->hooks.ctx);
}

static const struct device_link_ops dl_link_ops = {
    .deliver_method = link_deliver_method,
    .push_desired = link_push_desired,
    .deliver_c2d = link_deliver_c2d,
    .kick = link_kick,
    .abort = link_abort,
    .fault = link_fault,
};
