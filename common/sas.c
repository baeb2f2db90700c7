/* sas.c -- Shared Access Signature tokens: build (Python/Node form and raw C SDK form), parse (fields in any
 * order, views into the caller's text) and verify as the hub does (iothub-protocol.md §6): HMAC-SHA256 over
 * sr exactly as received, constant-time compare, then audience on the percent-decoded sr, then expiry.
 * Uses OpenSSL (EVP_Q_mac, CRYPTO_memcmp); no I/O, no globals, never logs.
 * Tests: tests/unit/test_sas.c; fuzz: tests/fuzz/fuzz_sas.c. */
#include "sas.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base64.h"
#include "buf.h"
#include "err.h"
#include "url.h"

#define SAS_PREFIX "SharedAccessSignature "
#define SAS_PREFIX_LEN (sizeof(SAS_PREFIX) - 1)
#define SAS_MAC_LEN 32         /* SHA-256 */
#define SAS_U64_DIGITS 21      /* room for UINT64_MAX in decimal plus the NUL */
#define SAS_MAX_TOKEN (1u << 20) /* a built token larger than this is refused */

char *sas_resource_uri(const char *host, const char *device_id, const char *module_id)
{
    struct buf b;
    char *res = NULL;
    if (!host || !device_id)
        return NULL;
    buf_init(&b, SAS_MAX_TOKEN);
    if (buf_append_str(&b, host) || buf_append_str(&b, "/devices/") || buf_append_str(&b, device_id))
        goto out;
    if (module_id && (buf_append_str(&b, "/modules/") || buf_append_str(&b, module_id)))
        goto out;
    res = buf_take_str(&b);
out:
    buf_cleanup(&b);
    return res;
}

/* base64(HMAC-SHA256(base64decode(key_b64), msg)) into *out (malloc'd). ERR_INVALID for a key that is not
 * base64 or is empty. */
static int sas_sign(const char *key_b64, const uint8_t *msg, size_t msg_len, char **out)
{
    int rc = ERR_OK;
    uint8_t *key = NULL;
    size_t key_len = 0;
    uint8_t mac[SAS_MAC_LEN];
    size_t mac_len = 0;
    *out = NULL;
    rc = base64_decode(key_b64, strlen(key_b64), &key, &key_len);
    if (rc == ERR_MALFORMED || (rc == ERR_OK && key_len == 0))
        rc = ERR_INVALID;
    if (rc)
        goto out;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, msg, msg_len, mac, sizeof(mac),
                   &mac_len) ||
        mac_len != SAS_MAC_LEN) {
        rc = ERR_NOMEM; /* OpenSSL fails here only when it cannot allocate or load the provider */
        goto out;
    }
    *out = base64_encode(mac, mac_len);
    if (!*out)
        rc = ERR_NOMEM;
out:
    if (key)
        OPENSSL_cleanse(key, key_len);
    free(key);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/* The string-to-sign: sr + "\n" + se, into b. */
static int sas_string_to_sign(struct buf *b, const char *sr, size_t sr_len, const char *se, size_t se_len)
{
    if (buf_append(b, sr, sr_len) || buf_append_byte(b, '\n') || buf_append(b, se, se_len))
        return ERR_NOMEM;
    return ERR_OK;
}

int sas_build_raw(const char *sr, const char *key_b64, uint64_t expiry, const char *key_name, char **out)
{
    int rc = ERR_OK;
    struct buf to_sign, token;
    char se[SAS_U64_DIGITS];
    char *sig = NULL, *sig_enc = NULL, *skn_enc = NULL;
    buf_init(&to_sign, SAS_MAX_TOKEN);
    buf_init(&token, SAS_MAX_TOKEN);
    if (out)
        *out = NULL;
    if (!out || !sr || !key_b64) {
        rc = ERR_INVALID;
        goto out;
    }
    snprintf(se, sizeof(se), "%" PRIu64, expiry);
    rc = sas_string_to_sign(&to_sign, sr, strlen(sr), se, strlen(se));
    if (rc)
        goto out;
    rc = sas_sign(key_b64, to_sign.data, to_sign.len, &sig);
    if (rc)
        goto out;
    sig_enc = url_encode(sig, strlen(sig));
    if (key_name && key_name[0])
        skn_enc = url_encode(key_name, strlen(key_name));
    if (!sig_enc || (key_name && key_name[0] && !skn_enc)) {
        rc = ERR_NOMEM;
        goto out;
    }
    rc = buf_printf(&token, SAS_PREFIX "sr=%s&sig=%s&se=%s", sr, sig_enc, se);
    if (!rc && skn_enc)
        rc = buf_printf(&token, "&skn=%s", skn_enc);
    if (rc)
        goto out;
    *out = buf_take_str(&token);
    if (!*out)
        rc = ERR_NOMEM;
out:
    free(sig);
    free(sig_enc);
    free(skn_enc);
    buf_cleanup(&to_sign);
    buf_cleanup(&token);
    return rc;
}

int sas_build(const char *resource_uri, const char *key_b64, uint64_t expiry, const char *key_name, char **out)
{
    if (out)
        *out = NULL;
    if (!out || !resource_uri || !key_b64)
        return ERR_INVALID;
    char *sr = url_encode(resource_uri, strlen(resource_uri));
    if (!sr)
        return ERR_NOMEM;
    int rc = sas_build_raw(sr, key_b64, expiry, key_name, out);
    free(sr);
    return rc;
}

/* Decimal digits only, at least one, fitting in a uint64. */
static int sas_parse_u64(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return ERR_MALFORMED;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ERR_MALFORMED;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ERR_MALFORMED;
        v = v * 10 + d;
    }
    *out = v;
    return ERR_OK;
}

/* Stores one k=v pair into t when k is a known field. A repeated known field is malformed. */
static int sas_parse_pair(const char *name, size_t name_len, const char *value, size_t value_len,
                          struct sas_token *t, unsigned *seen)
{
    static const struct {
        const char *name;
        size_t len;
    } fields[] = {{"sr", 2}, {"sig", 3}, {"se", 2}, {"skn", 3}};
    struct sas_view *views[] = {&t->sr, &t->sig, &t->se, &t->skn};
    for (unsigned i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (name_len != fields[i].len || memcmp(name, fields[i].name, name_len) != 0)
            continue;
        if (*seen & (1u << i))
            return ERR_MALFORMED;
        *seen |= 1u << i;
        views[i]->p = value;
        views[i]->len = value_len;
        return ERR_OK;
    }
    return ERR_OK; /* unknown fields are ignored */
}

int sas_parse(const char *text, size_t len, struct sas_token *out)
{
    struct sas_token t = {0};
    unsigned seen = 0;
    if (!out)
        return ERR_MALFORMED;
    memset(out, 0, sizeof(*out));
    if (!text || len < SAS_PREFIX_LEN || memcmp(text, SAS_PREFIX, SAS_PREFIX_LEN) != 0)
        return ERR_MALFORMED;
    size_t pos = SAS_PREFIX_LEN;
    while (pos < len) {
        const char *seg = text + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seg_len = amp ? (size_t)(amp - seg) : len - pos;
        pos += seg_len + (amp ? 1 : 0);
        if (seg_len == 0)
            continue;
        const char *eq = memchr(seg, '=', seg_len);
        if (!eq)
            return ERR_MALFORMED;
        size_t name_len = (size_t)(eq - seg);
        if (sas_parse_pair(seg, name_len, eq + 1, seg_len - name_len - 1, &t, &seen))
            return ERR_MALFORMED;
    }
    if (!t.sr.len || !t.sig.len || sas_parse_u64(t.se.p, t.se.len, &t.expiry))
        return ERR_MALFORMED;
    if (!t.skn.len)
        t.skn.p = NULL;
    *out = t;
    return ERR_OK;
}

const char *sas_verdict_str(enum sas_verdict v)
{
    switch (v) {
    case SAS_VALID: return "valid";
    case SAS_MALFORMED: return "malformed token";
    case SAS_EXPIRED: return "token expired";
    case SAS_WRONG_AUDIENCE: return "token is for another resource";
    case SAS_BAD_SIGNATURE: return "signature does not match";
    }
    return "unknown verdict";
}

static int sas_host_is_accepted(const char *host, size_t host_len, const struct sas_expect *e)
{
    for (size_t i = 0; i < e->n_hosts; i++) {
        const char *h = e->hosts ? e->hosts[i] : NULL;
        if (h && strlen(h) == host_len && strncasecmp(h, host, host_len) == 0)
            return 1;
    }
    return 0;
}

/* "host" or "host:port" (port 1-5 digits; only when host itself is accepted). */
static int sas_host_matches(const char *host, size_t host_len, const struct sas_expect *e)
{
    if (host_len == 0)
        return 0;
    if (sas_host_is_accepted(host, host_len, e))
        return 1;
    size_t colon = host_len;
    while (colon > 0 && host[colon - 1] >= '0' && host[colon - 1] <= '9')
        colon--;
    size_t digits = host_len - colon;
    if (colon < 2 || host[colon - 1] != ':' || digits < 1 || digits > 5)
        return 0;
    return sas_host_is_accepted(host, colon - 1, e);
}

/* sr (decoded) names an accepted host and a path that is a segment prefix of expect->path. */
static int sas_audience_ok(const char *sr, size_t sr_len, const struct sas_expect *e)
{
    const char *slash = memchr(sr, '/', sr_len);
    size_t host_len = slash ? (size_t)(slash - sr) : sr_len;
    if (!sas_host_matches(sr, host_len, e))
        return 0;
    const char *path = sr + host_len;
    size_t path_len = sr_len - host_len;
    if (path_len && path[path_len - 1] == '/')
        path_len--; /* "host/devices/d1/" is tolerated */
    if (path_len == 0)
        return 1;
    const char *want = e->path ? e->path : "";
    size_t want_len = strlen(want);
    if (path_len > want_len || memcmp(path, want, path_len) != 0)
        return 0;
    return path_len == want_len || want[path_len] == '/';
}

/* sig (decoded) equals base64(HMAC(key, sr "\n" se)) for one of the keys; bad keys are skipped. */
static int sas_signature_ok(const struct buf *to_sign, const char *sig, size_t sig_len,
                            const struct sas_expect *e)
{
    int match = 0;
    for (int k = 0; k < 2; k++) {
        char *want = NULL;
        if (!e->keys[k] || sas_sign(e->keys[k], to_sign->data, to_sign->len, &want))
            continue;
        if (strlen(want) == sig_len && CRYPTO_memcmp(want, sig, sig_len) == 0)
            match = 1;
        free(want);
    }
    return match;
}

/* se + skew < now, without overflow; a negative skew counts as 0. */
static int sas_is_expired(uint64_t se, int64_t now, int64_t skew)
{
    if (skew < 0)
        skew = 0;
    if (now <= skew)
        return 0;
    return se < (uint64_t)(now - skew);
}

enum sas_verdict sas_verify(const struct sas_token *tok, const struct sas_expect *expect)
{
    enum sas_verdict v = SAS_MALFORMED;
    char *sr = NULL, *sig = NULL;
    uint8_t *sig_raw = NULL;
    size_t sr_len = 0, sig_len = 0, sig_raw_len = 0;
    char se_buf[SAS_U64_DIGITS];
    const char *se = se_buf;
    size_t se_len = 0;
    uint64_t se_val = 0;
    struct buf to_sign;
    buf_init(&to_sign, SAS_MAX_TOKEN);
    if (!tok || !expect || !tok->sr.p || !tok->sr.len || !tok->sig.p || !tok->sig.len)
        goto out;
    if (tok->se.len) {
        if (!tok->se.p || sas_parse_u64(tok->se.p, tok->se.len, &se_val) || se_val != tok->expiry)
            goto out;
        se = tok->se.p;
        se_len = tok->se.len;
    } else {
        snprintf(se_buf, sizeof(se_buf), "%" PRIu64, tok->expiry);
        se_len = strlen(se_buf);
    }
    if (url_decode(tok->sr.p, tok->sr.len, &sr, &sr_len) || url_decode(tok->sig.p, tok->sig.len, &sig, &sig_len))
        goto out;
    if (base64_decode(sig, sig_len, &sig_raw, &sig_raw_len))
        goto out;
    if (!sas_audience_ok(sr, sr_len, expect)) {
        v = SAS_WRONG_AUDIENCE;
        goto out;
    }
    if (sas_string_to_sign(&to_sign, tok->sr.p, tok->sr.len, se, se_len))
        goto out; /* out of memory: refuse, reported as malformed */
    if (!sas_signature_ok(&to_sign, sig, sig_len, expect)) {
        v = SAS_BAD_SIGNATURE;
        goto out;
    }
    v = sas_is_expired(tok->expiry, expect->now, expect->skew) ? SAS_EXPIRED : SAS_VALID;
out:
    free(sr);
    free(sig);
    free(sig_raw);
    buf_cleanup(&to_sign);
    return v;
}
