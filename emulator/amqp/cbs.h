/* cbs.h -- claims-based security for the AMQP front: verifying a `$cbs` put-token (or a SASL PLAIN password)
 * as the REST API verifies a service token (auth.h: policy, permissions, signature, expiry, audience), and
 * the small per-connection table of claims that links are authorised by (iothub-amqp.md §B.1.3).
 * No I/O, no Proton. Tests: tests/unit/test_cbs.c. */
#ifndef IOTHUB_CBS_H
#define IOTHUB_CBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;

#define CBS_MAX_CLAIMS 8     /* distinct audiences one connection may hold; a 9th put-token gets 401 */
#define CBS_MAX_AUDIENCE 256 /* longer audiences are refused */
#define CBS_MAX_TOKEN 4096

struct cbs_claim {
    bool used;
    char audience[CBS_MAX_AUDIENCE]; /* normalised: host[:port], lower case */
    int64_t expiry;                  /* the token's se (wall-clock seconds) */
};

struct cbs_claims {
    struct cbs_claim c[CBS_MAX_CLAIMS];
};

/* Verifies token[0..tlen) ("SharedAccessSignature ...") as a service token with ServiceConnect, and, when
 * alen > 0, that audience[0..alen) ("host", "https://host", "amqps://host/", "sb://host") names the token's
 * sr host. Neither need be NUL-terminated. On ERR_OK *expiry is the token's se and the normalised audience
 * is written to norm (CBS_MAX_AUDIENCE bytes; may be NULL). Returns ERR_OK or ERR_AUTH with a short reason in
 * why (never the token). */
int cbs_verify(struct auth *a, const char *audience, size_t alen, const char *token, size_t tlen, int64_t now_s,
               int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen);

/* Records a claim for a normalised audience, replacing the expiry of an existing one (a renewal keeps its
 * slot, so links it authorised stay authorised). Returns the slot, or -1 when the table is full. */
int cbs_claims_put(struct cbs_claims *t, const char *norm, int64_t expiry);
/* A slot whose claim is valid at now_s (expiry + skew >= now), or -1. */
int cbs_claims_valid(const struct cbs_claims *t, int64_t now_s, int64_t skew_s);
/* The earliest expiry + skew of the claims held, or INT64_MAX when there are none. */
int64_t cbs_claims_next_expiry(const struct cbs_claims *t, int64_t skew_s);
/* Forgets every claim expired at now_s; returns a bit mask of the slots dropped. */
unsigned cbs_claims_expire(struct cbs_claims *t, int64_t now_s, int64_t skew_s);

#endif
