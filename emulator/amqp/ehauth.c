/* ehauth.c -- Event Hubs-style and redirect-sample SAS checks (see ehauth.h), over common/sas (parsing,
 * IoT Hub-style verification) and OpenSSL HMAC (the key-string signature). */
#include "ehauth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "base64.h"
#include "err.h"
#include "sas.h"
#include "url.h"

#define EHAUTH_PREFIX "SharedAccessSignature "
#define EHAUTH_MAX_TOKEN 4096

static int refuse(char *why, size_t whylen, const char *text)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", text);
    return ERR_AUTH;
}

static bool host_ok(const struct ehauth *e, const char *h, size_t n)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < e->n_hosts; i++)
            if (e->hosts[i] && strlen(e->hosts[i]) == n && strncasecmp(e->hosts[i], h, n) == 0)
                return true;
        /* "host:port" */
        size_t c = n;
        while (c > 0 && isdigit((unsigned char)h[c - 1]))
            c--;
        if (pass || c < 2 || h[c - 1] != ':' || n - c < 1 || n - c > 5)
            return false;
        n = c - 1;
    }
    return false;
}

struct parts {
    const char *host, *entity, *rest; /* rest: after the entity (may be "") */
    size_t host_len, entity_len, rest_len;
};

/* Splits "[scheme://]host/entity[/rest]". */
static bool split(const char *a, size_t n, struct parts *p)
{
    for (size_t i = 0; i + 2 < n && i < 10; i++) {
        if (a[i] == ':' && a[i + 1] == '/' && a[i + 2] == '/') {
            a += i + 3;
            n -= i + 3;
            break;
        }
        if (!isalpha((unsigned char)a[i]))
            break;
    }
    const char *slash = memchr(a, '/', n);
    if (!slash || slash == a)
        return false;
    p->host = a;
    p->host_len = (size_t)(slash - a);
    p->entity = slash + 1;
    size_t left = n - p->host_len - 1;
    const char *s2 = memchr(p->entity, '/', left);
    p->entity_len = s2 ? (size_t)(s2 - p->entity) : left;
    p->rest = p->entity + p->entity_len;
    p->rest_len = left - p->entity_len;
    return p->entity_len > 0;
}

static bool entity_ok(const struct ehauth *e, const char *s, size_t n)
{
    for (size_t i = 0; i < e->n_entities; i++)
        if (e->entities[i] && strlen(e->entities[i]) == n && strncasecmp(e->entities[i], s, n) == 0)
            return true;
    return false;
}

bool ehauth_is_audience(const struct ehauth *e, const char *audience, size_t alen)
{
    struct parts p;
    return audience && split(audience, alen, &p) && host_ok(e, p.host, p.host_len) &&
           entity_ok(e, p.entity, p.entity_len);
}

static const char *policy_key_with_service_connect(const struct ehauth *e, const struct sas_token *tok, char *why,
                                                   size_t whylen)
{
    if (tok->skn.len == 0) {
        refuse(why, whylen, "the token names no policy (skn)");
        return NULL;
    }
    unsigned perms = auth_policy_perms(e->auth, tok->skn.p, tok->skn.len);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(tok->skn.len < 63 ? tok->skn.len : 63), tok->skn.p);
    const char *key = auth_policy_key(e->auth, name);
    if (!key || strlen(name) != tok->skn.len) {
        refuse(why, whylen, "unknown policy");
        return NULL;
    }
    if (!(perms & AUTH_SERVICE_CONNECT)) {
        refuse(why, whylen, "policy lacks ServiceConnect");
        return NULL;
    }
    return key;
}

static int parse(const char *token, size_t tlen, struct sas_token *tok, char *why, size_t whylen)
{
    size_t plen = strlen(EHAUTH_PREFIX);
    if (!token || tlen < plen || memcmp(token, EHAUTH_PREFIX, plen) != 0)
        return refuse(why, whylen, "unsupported token type");
    if (tlen > EHAUTH_MAX_TOKEN || memchr(token, 0, tlen) || sas_parse(token, tlen, tok) != ERR_OK)
        return refuse(why, whylen, "malformed token");
    return ERR_OK;
}

static bool expired(uint64_t se, int64_t now_s, int64_t skew_s)
{
    if (skew_s < 0)
        skew_s = 0;
    return now_s > skew_s && se < (uint64_t)(now_s - skew_s);
}

int ehauth_verify(const struct ehauth *e, const char *audience, size_t alen, const char *token, size_t tlen,
                  int64_t now_s, int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen)
{
    *expiry = 0;
    struct sas_token tok;
    if (parse(token, tlen, &tok, why, whylen))
        return ERR_AUTH;
    const char *key = policy_key_with_service_connect(e, &tok, why, whylen);
    if (!key)
        return ERR_AUTH;
    char *sr = NULL, *sig = NULL;
    size_t sr_len = 0, sig_len = 0;
    int rc = ERR_AUTH;
    struct parts p;
    if (url_decode(tok.sr.p, tok.sr.len, &sr, &sr_len) || url_decode(tok.sig.p, tok.sig.len, &sig, &sig_len)) {
        refuse(why, whylen, "malformed token");
        goto out;
    }
    if (!split(sr, sr_len, &p) || !host_ok(e, p.host, p.host_len) || !entity_ok(e, p.entity, p.entity_len)) {
        refuse(why, whylen, "wrong audience: sr must be sb://{host}/{event hub name}[/...]");
        goto out;
    }
    if (sr_len && sr[sr_len - 1] == '/')
        sr_len--;
    if (alen < sr_len || strncasecmp(audience, sr, sr_len) != 0 || (alen > sr_len && audience[sr_len] != '/')) {
        refuse(why, whylen, "the put-token name is not covered by the token's sr");
        goto out;
    }
    /* HMAC over sr as sent + "\n" + se as sent, keyed with the key string. */
    size_t mlen = tok.sr.len + 1 + tok.se.len;
    char *msg = malloc(mlen + 1);
    if (!msg) {
        refuse(why, whylen, "out of memory");
        goto out;
    }
    memcpy(msg, tok.sr.p, tok.sr.len);
    msg[tok.sr.len] = '\n';
    memcpy(msg + tok.sr.len + 1, tok.se.p, tok.se.len);
    unsigned char mac[32];
    size_t mac_len = 0;
    bool ok = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key), (unsigned char *)msg, mlen, mac,
                        sizeof mac, &mac_len) != NULL;
    free(msg);
    char *want = ok ? base64_encode(mac, mac_len) : NULL;
    OPENSSL_cleanse(mac, sizeof mac);
    ok = want && strlen(want) == sig_len && CRYPTO_memcmp(want, sig, sig_len) == 0;
    free(want);
    if (!ok) {
        refuse(why, whylen, "wrong signature (Event Hubs signs with the key string, not the decoded key)");
        goto out;
    }
    if (expired(tok.expiry, now_s, skew_s)) {
        refuse(why, whylen, "expired");
        goto out;
    }
    *expiry = tok.expiry > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tok.expiry;
    if (norm) {
        size_t hl = p.host_len;
        for (size_t i = 0; i < hl; i++)
            if (p.host[i] == ':')
                hl = i; /* the port is not part of the claim */
        snprintf(norm, EHAUTH_MAX_NORM, "sb://%.*s/%.*s", (int)hl, p.host, (int)p.entity_len, p.entity);
        for (char *c = norm; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    rc = ERR_OK;
out:
    free(sr);
    free(sig);
    return rc;
}

int ehauth_verify_events_token(const struct ehauth *e, const char *token, size_t tlen, int64_t now_s, int64_t skew_s,
                               int64_t *expiry, char *norm, char *why, size_t whylen)
{
    *expiry = 0;
    struct sas_token tok;
    if (parse(token, tlen, &tok, why, whylen))
        return ERR_AUTH;
    const char *key = policy_key_with_service_connect(e, &tok, why, whylen);
    if (!key)
        return ERR_AUTH;
    struct sas_expect exp = {.hosts = e->hosts,
                             .n_hosts = e->n_hosts,
                             .path = "/messages/events",
                             .keys = {key, NULL},
                             .now = now_s,
                             .skew = skew_s};
    enum sas_verdict v = sas_verify(&tok, &exp);
    if (v != SAS_VALID)
        return refuse(why, whylen, sas_verdict_str(v));
    *expiry = tok.expiry > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tok.expiry;
    if (norm) {
        char *sr = NULL;
        size_t sr_len = 0;
        if (url_decode(tok.sr.p, tok.sr.len, &sr, &sr_len))
            return refuse(why, whylen, "malformed token");
        size_t hl = 0;
        while (hl < sr_len && sr[hl] != '/' && hl + 1 < EHAUTH_MAX_NORM)
            hl++;
        for (size_t i = 0; i < hl; i++)
            norm[i] = (char)tolower((unsigned char)sr[i]);
        norm[hl] = 0;
        free(sr);
    }
    return ERR_OK;
}
