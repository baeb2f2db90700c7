/* c2dpersist.c -- struct c2d_store over store/c2dstore (see c2dpersist.h): a c2d_message's headers to and from
 * one JSON object; a stored row that does not decode is logged and skipped (a damaged row must not stop the
 * emulator). Tests: tests/unit/test_c2dstore.c. */
#include "c2dpersist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "c2dstore.h"
#include "err.h"
#include "log.h"

/* "device" or "device/module" -> ids (device ids cannot hold '/'). */
static bool split(const char *identity, char *dev, size_t devlen, const char **mod)
{
    const char *slash = strchr(identity, '/');
    size_t n = slash ? (size_t)(slash - identity) : strlen(identity);
    if (n == 0 || n >= devlen)
        return false;
    memcpy(dev, identity, n);
    dev[n] = 0;
    *mod = slash ? slash + 1 : "";
    return true;
}

static int put(void *ctx, const char *identity, const struct c2d_message *m)
{
    char dev[256];
    const char *mod;
    if (!split(identity, dev, sizeof dev, &mod))
        return ERR_INVALID;
    json_t *props = json_array();
    for (size_t i = 0; props && i < m->n_props; i++)
        json_array_append_new(props, json_pack("[s,s]", m->props[i].key, m->props[i].value));
    json_t *h = props ? json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:b,s:I,s:I,s:o}", "messageId", m->message_id,
                                  "correlationId", m->correlation_id, "userId", m->user_id, "contentType",
                                  m->content_type, "contentEncoding", m->content_encoding, "ack", m->ack, "to",
                                  m->to, "expiryMs", (json_int_t)m->expiry_ms, "expiryGiven", m->expiry_given,
                                  "enqueuedMs", (json_int_t)m->enqueued_ms, "deliveryCount",
                                  (json_int_t)m->delivery_count, "properties", props)
                      : NULL;
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text)
        return ERR_NOMEM;
    int rc = c2dstore_put(ctx, dev, mod, m->seq, text, m->body, m->body_len);
    free(text);
    return rc;
}

static int del(void *ctx, const char *identity, uint64_t seq)
{
    (void)identity;
    return c2dstore_del(ctx, seq);
}

static bool copy_str(json_t *h, const char *key, char *out, size_t outlen)
{
    const char *v = json_string_value(json_object_get(h, key));
    if (!v || strlen(v) >= outlen)
        return false;
    memcpy(out, v, strlen(v) + 1);
    return true;
}

/* The stored headers -> m (body left to the caller). */
static bool decode(const char *headers, struct c2d_message *m)
{
    json_t *h = json_loads(headers, 0, NULL);
    bool ok = h && copy_str(h, "messageId", m->message_id, sizeof m->message_id) &&
              copy_str(h, "correlationId", m->correlation_id, sizeof m->correlation_id) &&
              copy_str(h, "userId", m->user_id, sizeof m->user_id) &&
              copy_str(h, "contentType", m->content_type, sizeof m->content_type) &&
              copy_str(h, "contentEncoding", m->content_encoding, sizeof m->content_encoding) &&
              copy_str(h, "ack", m->ack, sizeof m->ack) && copy_str(h, "to", m->to, sizeof m->to) &&
              json_is_integer(json_object_get(h, "expiryMs")) && json_is_integer(json_object_get(h, "enqueuedMs"));
    json_t *props = ok ? json_object_get(h, "properties") : NULL;
    ok = ok && json_is_array(props) && json_array_size(props) <= C2D_MAX_PROPS;
    if (ok) {
        m->expiry_ms = json_integer_value(json_object_get(h, "expiryMs"));
        m->enqueued_ms = json_integer_value(json_object_get(h, "enqueuedMs"));
        m->expiry_given = json_is_true(json_object_get(h, "expiryGiven"));
        json_int_t dc = json_integer_value(json_object_get(h, "deliveryCount"));
        m->delivery_count = dc > 0 && dc < C2D_MAX_DELIVERY ? (uint32_t)dc : 0;
        size_t i;
        json_t *pair;
        json_array_foreach(props, i, pair)
        {
            const char *k = json_string_value(json_array_get(pair, 0));
            const char *v = json_string_value(json_array_get(pair, 1));
            if (!k || !v || strlen(k) >= C2D_MAX_KEY || strlen(v) >= C2D_MAX_VALUE) {
                ok = false;
                break;
            }
            memcpy(m->props[i].key, k, strlen(k) + 1);
            memcpy(m->props[i].value, v, strlen(v) + 1);
        }
        m->n_props = ok ? json_array_size(props) : 0;
    }
    json_decref(h);
    return ok;
}

struct load_ctx {
    int (*fn)(void *arg, const char *identity, const struct c2d_message *m);
    void *arg;
    struct c2d_message *m; /* heap: the message is large */
};

static int load_row(void *arg, const char *device_id, const char *module_id, uint64_t seq, const char *headers,
                    const uint8_t *body, size_t body_len)
{
    struct load_ctx *lc = arg;
    memset(lc->m, 0, sizeof *lc->m);
    if (!decode(headers, lc->m) || body_len > C2D_MAX_BODY) {
        log_warn("c2d store: message %llu of %s cannot be read back; skipped", (unsigned long long)seq, device_id);
        return ERR_OK;
    }
    lc->m->seq = seq;
    lc->m->body = body_len ? body : NULL;
    lc->m->body_len = body_len;
    char identity[512];
    snprintf(identity, sizeof identity, "%s%s%s", device_id, module_id[0] ? "/" : "", module_id);
    return lc->fn(lc->arg, identity, lc->m);
}

static int load(void *ctx, int (*fn)(void *arg, const char *identity, const struct c2d_message *m), void *arg)
{
    struct load_ctx lc = {fn, arg, malloc(sizeof(struct c2d_message))};
    if (!lc.m)
        return ERR_NOMEM;
    int rc = c2dstore_load(ctx, load_row, &lc);
    free(lc.m);
    return rc;
}

static uint64_t last_seq(void *ctx)
{
    return c2dstore_last_seq(ctx);
}

int c2dpersist_init(struct c2d_store *out, struct db *db, char *err, size_t errlen)
{
    int rc = c2dstore_migrate(db, err, errlen);
    if (rc)
        return rc;
    *out = (struct c2d_store){.put = put, .del = del, .load = load, .last_seq = last_seq, .ctx = db};
    return ERR_OK;
}
