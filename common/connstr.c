/* connstr.c -- IoT Hub connection strings, parsed and formatted with the official SDKs' rules: split on ';',
 * then on the first '=' (so keys may end in '='); the later of two duplicates wins; a pair with an empty name
 * or value is ignored, as Node's createDictionary does; unknown names are ignored (forward compatible).
 * Pure: no I/O, no globals; error text never repeats a key or a signature.
 * Tests: tests/unit/test_connstr.c; fuzz: tests/fuzz/fuzz_connstr.c. */
#include "connstr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "base64.h"
#include "buf.h"
#include "err.h"
#include "sas.h"

enum connstr_field {
    CONNSTR_F_HOST,
    CONNSTR_F_DEVICE,
    CONNSTR_F_MODULE,
    CONNSTR_F_KEY_NAME,
    CONNSTR_F_KEY,
    CONNSTR_F_SIGNATURE,
    CONNSTR_F_GATEWAY,
    CONNSTR_F_X509,
    CONNSTR_F_COUNT,
};

/* Field names, case-sensitive as in the SDKs, in the canonical output order of connstr_format. */
static const char *const connstr_names[CONNSTR_F_COUNT] = {
    [CONNSTR_F_HOST] = "HostName",
    [CONNSTR_F_DEVICE] = "DeviceId",
    [CONNSTR_F_MODULE] = "ModuleId",
    [CONNSTR_F_KEY_NAME] = "SharedAccessKeyName",
    [CONNSTR_F_KEY] = "SharedAccessKey",
    [CONNSTR_F_SIGNATURE] = "SharedAccessSignature",
    [CONNSTR_F_GATEWAY] = "GatewayHostName",
    [CONNSTR_F_X509] = "x509",
};

struct connstr_view {
    const char *p;
    size_t len; /* 0 when absent */
};

static void connstr_set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

static int connstr_field_of(const char *name, size_t len)
{
    for (int f = 0; f < CONNSTR_F_COUNT; f++) {
        if (strlen(connstr_names[f]) == len && memcmp(connstr_names[f], name, len) == 0)
            return f;
    }
    return -1;
}

/* Splits text into the known fields. Returns NULL, or a static message naming what is wrong. */
static const char *connstr_split(const char *text, size_t len, struct connstr_view *v)
{
    if (len && memchr(text, '\0', len))
        return "the connection string contains a NUL byte";
    size_t pos = 0;
    while (pos < len) {
        const char *seg = text + pos;
        const char *semi = memchr(seg, ';', len - pos);
        size_t seg_len = semi ? (size_t)(semi - seg) : len - pos;
        pos += seg_len + (semi ? 1 : 0);
        if (seg_len == 0)
            continue;
        const char *eq = memchr(seg, '=', seg_len);
        if (!eq)
            return "a segment has no '='";
        size_t name_len = (size_t)(eq - seg);
        size_t value_len = seg_len - name_len - 1;
        if (name_len == 0 || value_len == 0)
            continue;
        int f = connstr_field_of(seg, name_len);
        if (f < 0)
            continue;
        v[f].p = eq + 1;
        v[f].len = value_len;
    }
    return NULL;
}

static int connstr_key_is_base64(const struct connstr_view *key)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    int rc = base64_decode(key->p, key->len, &raw, &raw_len);
    free(raw);
    return rc == ERR_OK && raw_len > 0;
}

static int connstr_sig_is_token(const struct connstr_view *sig)
{
    struct sas_token tok;
    return sas_parse(sig->p, sig->len, &tok) == ERR_OK;
}

/* Applies the SDK rules to the split fields. Returns NULL, or a static message. */
static const char *connstr_check(const struct connstr_view *v)
{
    const struct connstr_view *x509 = &v[CONNSTR_F_X509];
    if (x509->len == 4 && strncasecmp(x509->p, "true", 4) == 0)
        return "x509=true is not supported";
    if (!v[CONNSTR_F_HOST].len)
        return "missing HostName";
    if (v[CONNSTR_F_MODULE].len && !v[CONNSTR_F_DEVICE].len)
        return "ModuleId without DeviceId";
    if (!v[CONNSTR_F_DEVICE].len && !v[CONNSTR_F_KEY_NAME].len)
        return "missing DeviceId or SharedAccessKeyName";
    if (v[CONNSTR_F_KEY].len && v[CONNSTR_F_SIGNATURE].len)
        return "both SharedAccessKey and SharedAccessSignature given";
    if (!v[CONNSTR_F_KEY].len && !v[CONNSTR_F_SIGNATURE].len)
        return "missing SharedAccessKey or SharedAccessSignature";
    if (!v[CONNSTR_F_DEVICE].len && !v[CONNSTR_F_KEY].len)
        return "a service connection string needs SharedAccessKey";
    if (v[CONNSTR_F_KEY].len && !connstr_key_is_base64(&v[CONNSTR_F_KEY]))
        return "SharedAccessKey is not valid base64";
    if (v[CONNSTR_F_SIGNATURE].len && !connstr_sig_is_token(&v[CONNSTR_F_SIGNATURE]))
        return "SharedAccessSignature is not a valid SAS token";
    return NULL;
}

/* Copies a present view into a NUL-terminated string; leaves *dst NULL for an absent one. */
static int connstr_dup(const struct connstr_view *v, char **dst)
{
    *dst = NULL;
    if (!v->len)
        return ERR_OK;
    char *s = malloc(v->len + 1);
    if (!s)
        return ERR_NOMEM;
    memcpy(s, v->p, v->len);
    s[v->len] = '\0';
    *dst = s;
    return ERR_OK;
}

int connstr_parse(const char *text, size_t len, struct connstr *out, char *err, size_t errlen)
{
    int rc = ERR_OK;
    struct connstr cs = {0};
    struct connstr_view v[CONNSTR_F_COUNT] = {{0}};
    const char *msg = NULL;
    if (out)
        memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    if (!out || (!text && len)) {
        rc = ERR_INVALID;
        msg = "no connection string";
        goto out;
    }
    msg = connstr_split(text, len, v);
    if (!msg)
        msg = connstr_check(v);
    if (msg) {
        rc = ERR_INVALID;
        goto out;
    }
    cs.kind = !v[CONNSTR_F_DEVICE].len ? CONNSTR_SERVICE
              : v[CONNSTR_F_MODULE].len ? CONNSTR_MODULE
                                        : CONNSTR_DEVICE;
    char **dst[CONNSTR_F_COUNT] = {
        [CONNSTR_F_HOST] = &cs.host_name,      [CONNSTR_F_DEVICE] = &cs.device_id,
        [CONNSTR_F_MODULE] = &cs.module_id,    [CONNSTR_F_KEY_NAME] = &cs.key_name,
        [CONNSTR_F_KEY] = &cs.key,             [CONNSTR_F_SIGNATURE] = &cs.signature,
        [CONNSTR_F_GATEWAY] = &cs.gateway_host_name,
    };
    for (int f = 0; f < CONNSTR_F_COUNT; f++) {
        if (!dst[f])
            continue;
        rc = connstr_dup(&v[f], dst[f]);
        if (rc) {
            msg = "out of memory";
            goto out;
        }
    }
    *out = cs;
    memset(&cs, 0, sizeof(cs));
out:
    if (msg)
        connstr_set_err(err, errlen, msg);
    connstr_cleanup(&cs);
    return rc;
}

void connstr_cleanup(struct connstr *cs)
{
    if (!cs)
        return;
    free(cs->host_name);
    free(cs->gateway_host_name);
    free(cs->device_id);
    free(cs->module_id);
    free(cs->key_name);
    /* the key is a secret: wipe it before handing the memory back */
    if (cs->key)
        OPENSSL_cleanse(cs->key, strlen(cs->key));
    free(cs->key);
    free(cs->signature);
    memset(cs, 0, sizeof(*cs));
}

char *connstr_format(const struct connstr *cs)
{
    if (!cs)
        return NULL;
    const char *values[CONNSTR_F_COUNT] = {
        [CONNSTR_F_HOST] = cs->host_name,      [CONNSTR_F_DEVICE] = cs->device_id,
        [CONNSTR_F_MODULE] = cs->module_id,    [CONNSTR_F_KEY_NAME] = cs->key_name,
        [CONNSTR_F_KEY] = cs->key,             [CONNSTR_F_SIGNATURE] = cs->signature,
        [CONNSTR_F_GATEWAY] = cs->gateway_host_name,
    };
    struct buf b;
    char *res = NULL;
    buf_init(&b, SIZE_MAX / 2);
    for (int f = 0; f < CONNSTR_F_COUNT; f++) {
        if (!values[f])
            continue;
        if (b.len && buf_append_byte(&b, ';'))
            goto out;
        if (buf_append_str(&b, connstr_names[f]) || buf_append_byte(&b, '=') ||
            buf_append_str(&b, values[f]))
            goto out;
    }
    res = buf_take_str(&b);
out:
    buf_cleanup(&b);
    return res;
}
