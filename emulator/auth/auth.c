/* auth.c -- shared access policies of the emulated hub and the SAS checks for service routes and device
 * CONNECT. Pure policy logic over common/sas (parse + verify); no I/O, no logging of secrets.
 * Tests: tests/unit/test_auth.c. */
#include "auth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "registry.h"
#include "sas.h"

#define AUTH_SAS_PREFIX "SharedAccessSignature "
#define AUTH_MAX_TOKEN 4096 /* far above any SDK's token; longer is refused unparsed */

struct auth_policy {
    const char *name;
    unsigned perms;
    char *key; /* base64, owned */
};

/* The hub's default policies; the non-owner keys are published development keys. */
static const struct {
    const char *name;
    unsigned perms;
    const char *key;
} auth_defaults[] = {
    {"service", AUTH_SERVICE_CONNECT, "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="},
    {"registryRead", AUTH_REGISTRY_READ, "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="},
    {"registryReadWrite", AUTH_REGISTRY_READ | AUTH_REGISTRY_WRITE, "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="},
    {"device", AUTH_DEVICE_CONNECT, "T235A4mNRdgGEEA5eF1Uea1f0htFGCA79H5rj0H0GwI="},
};

#define AUTH_N_POLICIES (1 + sizeof auth_defaults / sizeof auth_defaults[0])

struct auth {
    char **hosts;
    size_t n_hosts;
    struct auth_policy policies[AUTH_N_POLICIES];
};

static void set_why(char *why, size_t whylen, const char *text)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", text);
}

static int add_host(struct auth *a, const char *host)
{
    char *copy = strdup(host);
    if (!copy)
        return ERR_NOMEM;
    a->hosts[a->n_hosts++] = copy;
    return ERR_OK;
}

struct auth *auth_new(const char *const *hostnames, size_t n, const char *owner_key)
{
    if (!owner_key || !*owner_key)
        return NULL;
    struct auth *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->hosts = calloc(n + 2, sizeof *a->hosts);
    if (!a->hosts)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (hostnames[i] && add_host(a, hostnames[i]))
            goto fail;
    if (add_host(a, "127.0.0.1") || add_host(a, "localhost"))
        goto fail;
    a->policies[0].name = "iothubowner";
    a->policies[0].perms = AUTH_REGISTRY_READ | AUTH_REGISTRY_WRITE | AUTH_SERVICE_CONNECT | AUTH_DEVICE_CONNECT;
    a->policies[0].key = strdup(owner_key);
    if (!a->policies[0].key)
        goto fail;
    for (size_t i = 1; i < AUTH_N_POLICIES; i++) {
        a->policies[i].name = auth_defaults[i - 1].name;
        a->policies[i].perms = auth_defaults[i - 1].perms;
        a->policies[i].key = strdup(auth_defaults[i - 1].key);
        if (!a->policies[i].key)
            goto fail;
    }
    return a;
fail:
    auth_free(a);
    return NULL;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_hosts; i++)
        free(a->hosts[i]);
    free(a->hosts);
    for (size_t i = 0; i < AUTH_N_POLICIES; i++)
        free(a->policies[i].key);
    free(a);
}

static const struct auth_policy *find_policy(const struct auth *a, const char *name, size_t len)
{
    for (size_t i = 0; i < AUTH_N_POLICIES; i++) {
        const struct auth_policy *p = &a->policies[i];
        if (strlen(p->name) == len && memcmp(p->name, name, len) == 0)
            return p;
    }
    return NULL;
}

const char *auth_policy_key(const struct auth *a, const char *name)
{
    if (!a || !name)
        return NULL;
    const struct auth_policy *p = find_policy(a, name, strlen(name));
    return p ? p->key : NULL;
}

unsigned auth_policy_perms(const struct auth *a, const char *name, size_t len)
{
    const struct auth_policy *p = a && name ? find_policy(a, name, len) : NULL;
    return p ? p->perms : 0;
}

static const char *perm_name(unsigned perm)
{
    switch (perm) {
    case AUTH_REGISTRY_READ:
        return "RegistryRead";
    case AUTH_REGISTRY_WRITE:
        return "RegistryWrite";
    case AUTH_SERVICE_CONNECT:
        return "ServiceConnect";
    default:
        return "DeviceConnect";
    }
}

/* ERR_OK when the policy holds every bit of need; else ERR_AUTH naming the first missing one. */
static int check_perms(const struct auth_policy *p, unsigned need, char *why, size_t whylen)
{
    static const unsigned order[] = {AUTH_SERVICE_CONNECT, AUTH_REGISTRY_READ, AUTH_REGISTRY_WRITE,
                                     AUTH_DEVICE_CONNECT};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if ((need & order[i]) && !(p->perms & order[i])) {
            if (why && whylen)
                snprintf(why, whylen, "policy lacks %s", perm_name(order[i]));
            return ERR_AUTH;
        }
    }
    return ERR_OK;
}

/* Maps a sas_verify verdict to ERR_OK / ERR_AUTH + reason. */
static int verdict_result(enum sas_verdict v, char *why, size_t whylen)
{
    switch (v) {
    case SAS_VALID:
        return ERR_OK;
    case SAS_EXPIRED:
        set_why(why, whylen, "expired");
        break;
    case SAS_WRONG_AUDIENCE:
        set_why(why, whylen, "wrong audience");
        break;
    case SAS_BAD_SIGNATURE:
        set_why(why, whylen, "wrong signature");
        break;
    default:
        set_why(why, whylen, "malformed token");
        break;
    }
    return ERR_AUTH;
}

/* Parses a token of at most AUTH_MAX_TOKEN bytes. */
static int parse_token(const char *text, size_t len, struct sas_token *tok, char *why, size_t whylen)
{
    if (len > AUTH_MAX_TOKEN || sas_parse(text, len, tok) != ERR_OK) {
        set_why(why, whylen, "malformed token");
        return ERR_AUTH;
    }
    return ERR_OK;
}

int auth_check_service(struct auth *a, const char *authorization, unsigned need_perms, int64_t now_s,
                       int64_t skew_s, char *why, size_t whylen)
{
    set_why(why, whylen, "");
    if (!authorization || !*authorization) {
        set_why(why, whylen, "missing Authorization");
        return ERR_AUTH;
    }
    size_t plen = strlen(AUTH_SAS_PREFIX);
    if (strncmp(authorization, AUTH_SAS_PREFIX, plen) != 0) {
        set_why(why, whylen, "unsupported authorization scheme");
        return ERR_AUTH;
    }
    struct sas_token tok;
    if (parse_token(authorization, strlen(authorization), &tok, why, whylen))
        return ERR_AUTH;
    if (tok.skn.len == 0) {
        set_why(why, whylen, "device tokens are not accepted on service routes");
        return ERR_AUTH;
    }
    const struct auth_policy *p = find_policy(a, tok.skn.p, tok.skn.len);
    if (!p) {
        set_why(why, whylen, "unknown policy");
        return ERR_AUTH;
    }
    struct sas_expect exp = {
        .hosts = (const char *const *)a->hosts,
        .n_hosts = a->n_hosts,
        .path = "",
        .keys = {p->key, NULL},
        .now = now_s,
        .skew = skew_s,
    };
    if (verdict_result(sas_verify(&tok, &exp), why, whylen))
        return ERR_AUTH;
    return check_perms(p, need_perms, why, whylen);
}

/* "/devices/{deviceId}[/modules/{moduleId}]" from the identity's (unencoded) ids. */
static void identity_path(const struct identity *id, char *out, size_t outlen)
{
    if (id->module_id[0])
        snprintf(out, outlen, "/devices/%s/modules/%s", id->device_id, id->module_id);
    else
        snprintf(out, outlen, "/devices/%s", id->device_id);
}

int auth_check_device(struct auth *a, const struct identity *id, const char *token, size_t len, int64_t now_s,
                      int64_t skew_s, int64_t *expiry_out, char *why, size_t whylen)
{
    set_why(why, whylen, "");
    if (expiry_out)
        *expiry_out = 0;
    if (!id || !token || len == 0) {
        set_why(why, whylen, "missing token");
        return ERR_AUTH;
    }
    struct sas_token tok;
    if (parse_token(token, len, &tok, why, whylen))
        return ERR_AUTH;
    char path[2 * REGISTRY_MAX_ID + 32];
    identity_path(id, path, sizeof path);
    struct sas_expect exp = {
        .hosts = (const char *const *)a->hosts,
        .n_hosts = a->n_hosts,
        .path = path,
        .keys = {id->primary_key, id->secondary_key},
        .now = now_s,
        .skew = skew_s,
    };
    if (tok.skn.len) {
        const struct auth_policy *p = find_policy(a, tok.skn.p, tok.skn.len);
        if (!p) {
            set_why(why, whylen, "unknown policy");
            return ERR_AUTH;
        }
        if (check_perms(p, AUTH_DEVICE_CONNECT, why, whylen))
            return ERR_AUTH;
        exp.keys[0] = p->key;
        exp.keys[1] = NULL;
    }
    if (verdict_result(sas_verify(&tok, &exp), why, whylen))
        return ERR_AUTH;
    if (!id->enabled) {
        set_why(why, whylen, "identity is disabled");
        return ERR_AUTH;
    }
    if (expiry_out)
        *expiry_out = tok.expiry > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tok.expiry;
    return ERR_OK;
}
