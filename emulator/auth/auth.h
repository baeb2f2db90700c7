/* auth.h -- the hub's shared access policies and the SAS checks made on them: service routes (REST, a policy
 * token with the needed permissions) and device/module CONNECT (an identity key, or a policy with
 * DeviceConnect). Token parsing and HMAC are common/sas; this module knows policies, permissions and
 * resource paths (iothub-protocol.md §6). Never logs keys or tokens. Tests: tests/unit/test_auth.c. */
#ifndef IOTHUB_AUTH_H
#define IOTHUB_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct auth;
struct identity;

/* Permissions of a shared access policy (the hub's names). */
enum auth_perm {
    AUTH_REGISTRY_READ = 1u << 0,
    AUTH_REGISTRY_WRITE = 1u << 1,
    AUTH_SERVICE_CONNECT = 1u << 2,
    AUTH_DEVICE_CONNECT = 1u << 3,
};

/* The policies: iothubowner (owner_key; all four permissions), service (ServiceConnect), registryRead,
 * registryReadWrite, device (DeviceConnect), the last four with the published development keys. Host
 * names accepted in a token's sr: hostnames[0..n) plus "127.0.0.1" and "localhost" (case-insensitive).
 * Everything is copied. Returns NULL on ERR_NOMEM or when owner_key is NULL/empty. */
struct auth *auth_new(const char *const *hostnames, size_t n, const char *owner_key);
/* Accepts NULL. */
void auth_free(struct auth *a);

/* The base64 key of a policy ("iothubowner", "service", ...), for printing connection strings; NULL when
 * there is no such policy. Owned by a. */
const char *auth_policy_key(const struct auth *a, const char *name);

/* The enum auth_perm bits of a policy (name[0..len)); 0 when there is no such policy. */
unsigned auth_policy_perms(const struct auth *a, const char *name, size_t len);

/* Checks the Authorization header of a service request: a "SharedAccessSignature ..." token whose skn
 * names a policy holding every permission in need_perms (enum auth_perm bits), whose sr is the hub (a host
 * name above, path ""), signed with that policy's key, not expired (se + skew_s >= now_s).
 * authorization may be NULL (header absent). Returns ERR_OK or ERR_AUTH with a short reason in why
 * (never the token): "missing Authorization", "unsupported authorization scheme", "malformed token",
 * "device tokens are not accepted on service routes", "unknown policy", "wrong audience",
 * "wrong signature", "expired", "policy lacks ServiceConnect" (or the first other missing permission). */
int auth_check_service(struct auth *a, const char *authorization, unsigned need_perms, int64_t now_s,
                       int64_t skew_s, char *why, size_t whylen);

/* Checks an MQTT CONNECT password for identity id: a token without skn signed with the identity's primary
 * or secondary key, or a token with skn naming a policy with DeviceConnect signed with that policy's key;
 * either way sr must cover /devices/{deviceId}[/modules/{moduleId}] (percent-decoded, segment prefix,
 * ids case-sensitive) on an accepted host, and the token must not be expired. A disabled identity is
 * refused. token[0..len) need not be NUL-terminated. On ERR_OK *expiry_out (may be NULL) is the token's se.
 * Returns ERR_OK or ERR_AUTH with a short reason in why. */
int auth_check_device(struct auth *a, const struct identity *id, const char *token, size_t len, int64_t now_s,
                      int64_t skew_s, int64_t *expiry_out, char *why, size_t whylen);

#endif
