/* rest_auth.c -- the authorization preludes of the REST routes (rest_internal.h): a service policy token
 * (through a cache of verified tokens) or a device token, then the api-version every hub route requires.
 * Tokens are checked by auth (auth.h); this file only decides and answers. Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "sas.h"

/* ---- verified service tokens ----
 * An HMAC per request was 12% of a small method call. A token that passed auth_check_service is remembered
 * by its exact text; a later request with the same text skips the HMAC when it is still not expired
 * (se + skew >= now, checked on every use) and asks for permissions it already passed (policies do not
 * change while the emulator runs). Anything else goes through auth_check_service again. */

static uint64_t verified_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211u;
    return h;
}

/* se + skew < now, without overflow (as sas_verify decides). */
static bool verified_expired(const struct rest_verified *v, int64_t now, int64_t skew)
{
    if (skew < 0)
        skew = 0;
    return now > 0 && (uint64_t)now > v->expiry && (uint64_t)now - v->expiry > (uint64_t)skew;
}

static void verified_drop(struct rest_verified *v)
{
    free(v->header);
    memset(v, 0, sizeof *v);
}

static struct rest_verified *verified_find(struct rest *r, const char *authz, size_t len, uint64_t hash)
{
    for (size_t i = 0; i < REST_AUTH_CACHE; i++) {
        struct rest_verified *v = &r->verified[i];
        if (v->header && v->hash == hash && v->len == len && memcmp(v->header, authz, len) == 0)
            return v;
    }
    return NULL;
}

/* Remembers authz as verified for perms: in its own slot, a free or expired one, or the least recently used. */
static void verified_put(struct rest *r, struct rest_verified *v, const char *authz, size_t len, uint64_t hash,
                         unsigned perms, int64_t now)
{
    if (!v) {
        struct sas_token tok;
        if (sas_parse(authz, len, &tok) != ERR_OK)
            return;
        for (size_t i = 0; i < REST_AUTH_CACHE; i++) {
            struct rest_verified *c = &r->verified[i];
            if (c->header && verified_expired(c, now, r->skew_s))
                verified_drop(c);
            if (!v || !c->header || (v->header && c->used < v->used))
                v = c;
        }
        verified_drop(v);
        v->header = malloc(len + 1);
        if (!v->header)
            return;
        memcpy(v->header, authz, len + 1);
        v->len = len;
        v->hash = hash;
        v->expiry = tok.expiry;
    }
    v->perms |= perms;
    v->used = ++r->verified_clock;
}

/* auth_check_service, through the cache of verified tokens. */
static int check_service(struct rest *r, const char *authz, unsigned perms, char *why, size_t whylen)
{
    int64_t now = loop_wall_s(r->loop);
    size_t len = authz ? strlen(authz) : 0;
    uint64_t hash = verified_hash(authz ? authz : "", len);
    struct rest_verified *v = len ? verified_find(r, authz, len, hash) : NULL;
    if (v && verified_expired(v, now, r->skew_s)) {
        verified_drop(v);
        v = NULL;
    }
    if (v && (v->perms & perms) == perms) {
        v->used = ++r->verified_clock;
        return ERR_OK;
    }
    int rc = auth_check_service(r->auth, authz, perms, now, r->skew_s, why, whylen);
    if (rc == ERR_OK)
        verified_put(r, v, authz, len, hash, perms, now);
    return rc;
}

bool rest_token_ok(struct rest *r, const char *authz, size_t len, unsigned perms)
{
    char text[REST_AUTHZ_MAX + 1], why[96];
    if (!authz || len == 0 || len > REST_AUTHZ_MAX)
        return false;
    memcpy(text, authz, len);
    text[len] = '\0';
    return check_service(r, text, perms, why, sizeof why) == ERR_OK;
}

void rest_auth_cleanup(struct rest *r)
{
    for (size_t i = 0; i < REST_AUTH_CACHE; i++)
        verified_drop(&r->verified[i]);
}

/* ---- the preludes ---- */

static const char *authorization(struct rest_req *q)
{
    if (q->front)
        return q->authz; /* the front read it (rest_front.c) */
    return MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
}

/* The hub's 401 for any failed token (the reason goes to the log only). Returns false for the prelude. */
static bool unauthorized(struct rest_req *q, const char *why)
{
    log_info("http %s %.200s: unauthorized (%s)", q->method, q->uri, why);
    rest_answer_errorf(q, RESTAPI_UNAUTHORIZED, RESTAPI_ENVELOPE_A, "Unauthorized");
    return false;
}

/* False (and the hub's 400 InvalidProtocolVersion) when the query has no api-version. */
static bool has_api_version(struct rest_req *q)
{
    if (q->route.has_api_version)
        return true;
    rest_answer_errorf(q, RESTAPI_INVALID_PROTOCOL_VERSION, RESTAPI_ENVELOPE_A,
                       "The api-version query parameter is required.");
    return false;
}

bool rest_service_prelude(struct rest_req *q, unsigned perms)
{
    char why[96];
    if (check_service(q->r, authorization(q), perms, why, sizeof why) != ERR_OK)
        return unauthorized(q, why);
    return has_api_version(q);
}

bool rest_service_prelude_any(struct rest_req *q, unsigned perms_a, unsigned perms_b)
{
    char why[96];
    if (check_service(q->r, authorization(q), perms_a, why, sizeof why) == ERR_OK)
        perms_b = perms_a;
    return rest_service_prelude(q, perms_b);
}

const struct identity *rest_device_prelude(struct rest_req *q)
{
    const char *authz = authorization(q);
    const struct identity *id = registry_find(q->r->reg, q->route.device_id, NULL);
    char why[96] = "no such device";
    if (!id || !authz ||
        auth_check_device(q->r->auth, id, authz, strlen(authz), loop_wall_s(q->r->loop), q->r->skew_s, NULL, why,
                          sizeof why) != ERR_OK) {
        unauthorized(q, authz ? why : "missing Authorization");
        return NULL;
    }
    return has_api_version(q) ? id : NULL;
}
