/* sas.h -- Shared Access Signature tokens: build them exactly as the official SDKs do, parse them with fields
 * in any order, and verify them as the hub does (iothub-protocol.md §6). HMAC-SHA256 through OpenSSL.
 * Tests: tests/unit/test_sas.c; fuzz: tests/fuzz/fuzz_sas.c. */
#ifndef IOTHUB_SAS_H
#define IOTHUB_SAS_H

#include <stddef.h>
#include <stdint.h>

/* The unencoded resource URI of an identity: "host/devices/{deviceId}" or
 * "host/devices/{deviceId}/modules/{moduleId}" (module_id NULL for a device). Ids are used as given.
 * Returns malloc'd text (caller frees) or NULL. */
char *sas_resource_uri(const char *host, const char *device_id, const char *module_id);

/* Builds "SharedAccessSignature sr={urlenc(resource_uri)}&sig={urlenc(b64(hmac))}&se={expiry}[&skn={urlenc(key_name)}]"
 * where the signed text is urlenc(resource_uri) + "\n" + expiry (the Python/Node device form: strict
 * encoding, upper-case %2F). key_b64 is the base64 key; key_name NULL for device/module keys.
 * On ERR_OK *out is malloc'd (caller frees). Returns ERR_OK, ERR_INVALID (bad base64 key) or ERR_NOMEM. */
int sas_build(const char *resource_uri, const char *key_b64, uint64_t expiry, const char *key_name, char **out);
/* The same, but sr is used exactly as given, unencoded (the classic C SDK form, e.g. "host/devices/d1"). */
int sas_build_raw(const char *sr, const char *key_b64, uint64_t expiry, const char *key_name, char **out);

/* A parsed token: views into the caller's text (not NUL-terminated), valid while that text lives. */
struct sas_view {
    const char *p;
    size_t len;
};
struct sas_token {
    struct sas_view sr;  /* as received, still encoded */
    struct sas_view sig; /* as received, still encoded */
    struct sas_view skn; /* len 0 when absent */
    uint64_t expiry;     /* se */
    struct sas_view se;  /* se as received (the signed text); len 0 means "format expiry in decimal" */
};

/* Parses "SharedAccessSignature k=v&k=v..." (the prefix exactly; fields in any order; sr, sig, se required and
 * non-empty; se decimal digits fitting a uint64; a repeated sr/sig/se/skn is malformed; unknown fields and
 * empty segments are ignored). Returns ERR_OK or ERR_MALFORMED. *out is zeroed on failure. */
int sas_parse(const char *text, size_t len, struct sas_token *out);

enum sas_verdict {
    SAS_VALID = 0,
    SAS_MALFORMED,     /* not a token, or sr/sig do not decode */
    SAS_EXPIRED,       /* se + skew < now */
    SAS_WRONG_AUDIENCE, /* sr names another host, or does not cover the resource */
    SAS_BAD_SIGNATURE, /* matches neither key */
};
const char *sas_verdict_str(enum sas_verdict v);

/* What a token must prove. */
struct sas_expect {
    const char *const *hosts; /* accepted host names, compared case-insensitively with sr's host; an sr host
                                 "h:port" (1-5 digits) is also accepted when "h" itself is */
    size_t n_hosts;
    const char *path;         /* the resource path below the host, e.g. "/devices/dev1" or "" for the hub;
                                 sr's decoded path must be a segment prefix of it (ids case-sensitive;
                                 one trailing '/' in sr is tolerated; an sr without a path covers all) */
    const char *keys[2];      /* base64 keys to try (primary, secondary); NULL entries are skipped */
    int64_t now;              /* seconds since the epoch */
    int64_t skew;             /* seconds of grace after se */
};

/* Verifies: HMAC-SHA256 over sr exactly as received + "\n" + se (as received when tok->se is set), sig
 * URL-decoded (and required to be base64), constant-time compare against each key (a key that is not valid
 * base64 is skipped); then audience (decoded sr), then expiry. Order of reporting: MALFORMED,
 * WRONG_AUDIENCE, BAD_SIGNATURE, EXPIRED. Never logs. */
enum sas_verdict sas_verify(const struct sas_token *tok, const struct sas_expect *expect);

#endif
