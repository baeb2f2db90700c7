/* ehauth.h -- SAS checks of the Event Hub-compatible endpoint (iothub-amqp.md §B.1.3). Event Hubs signs
 * with the policy key *string* (its UTF-8 bytes), not the base64-decoded key IoT Hub uses, over
 * urlencoded(audience) + "\n" + se; the audience is "sb://host[:port]/{entity}[/...]" (Node: per link,
 * Python: entity-level). Also the IoT Hub-style token the redirect samples send as the SASL PLAIN password
 * (sr "{host}/messages/events"). Policies come from auth.h (ServiceConnect needed). No I/O, never logs
 * tokens. Tests: tests/unit/test_ehauth.c. */
#ifndef IOTHUB_EHAUTH_H
#define IOTHUB_EHAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;

#define EHAUTH_MAX_NORM 256 /* the normalised claim written by the checks */

struct ehauth {
    struct auth *auth;
    const char *const *hosts; /* accepted host names (case-insensitive; "h:port" accepted when h is) */
    size_t n_hosts;
    const char *const *entities; /* accepted Event Hub names (case-insensitive) */
    size_t n_entities;
};

/* audience[0..alen) is "[scheme://]host[:port]/{entity}[/...]" with an accepted host and entity. */
bool ehauth_is_audience(const struct ehauth *e, const char *audience, size_t alen);

/* Verifies an Event Hubs SAS token for a put-token with name audience: skn names a policy with
 * ServiceConnect; the decoded sr is an accepted audience and a segment prefix of the put-token name
 * (case-insensitive); sig = base64(HMAC-SHA256(key string, sr as sent + "\n" + se)); not expired
 * (se + skew_s >= now_s). On ERR_OK *expiry is se and norm (EHAUTH_MAX_NORM bytes) gets the entity-level
 * claim "sb://host/entity" in lower case. Returns ERR_OK or ERR_AUTH with a reason in why. */
int ehauth_verify(const struct ehauth *e, const char *audience, size_t alen, const char *token, size_t tlen,
                  int64_t now_s, int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen);

/* Verifies an IoT Hub service token (base64-decoded policy key, ServiceConnect) whose sr is the hub or a path
 * under "/messages/events" (what the IoT Hub -> Event Hubs redirect samples send as the SASL PLAIN
 * password). On ERR_OK norm gets the lower-case host[:port] of sr. Returns ERR_OK or ERR_AUTH. */
int ehauth_verify_events_token(const struct ehauth *e, const char *token, size_t tlen, int64_t now_s, int64_t skew_s,
                               int64_t *expiry, char *norm, char *why, size_t whylen);

#endif
