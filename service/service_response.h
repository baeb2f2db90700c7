/* service_response.h -- pure response parsing for the service client: a method result
 * {"status":..,"payload":..}, both error envelopes of iothub-protocol.md §4.3 (A: "ErrorCode:Name;text",
 * B: a JSON string holding {"errorCode":404103,...,"message":..}) plus the iothub-errorcode header, and
 * registry identities. Bodies are untrusted: length-delimited, never assumed NUL-terminated.
 * Internal to service/; tests: tests/unit/test_service_response.c. */
#ifndef IOTHUB_SERVICE_RESPONSE_H
#define IOTHUB_SERVICE_RESPONSE_H

#include <stddef.h>

#include "service_result.h"

/* Fills out->status and out->payload (the device's JSON exactly as the hub relayed it, "null" when absent
 * or null) from a 2xx method-call body. Sets out->kind = ANSWERED. On ERR_MALFORMED out->message says what
 * is wrong. Returns ERR_OK, ERR_MALFORMED or ERR_NOMEM. */
int service_response_method(const char *body, size_t len, struct service_client_result *out);

/* Fills out->kind = HUB_ERROR, http_status, error_code, error_name and message from an error answer.
 * header is the iothub-errorcode header value or NULL. Any body is accepted: when neither envelope
 * matches, the message is the body's first line (or the HTTP reason phrase when empty). The code comes from
 * the body, else from the name via the known-code table; the name from the body, else the header, else
 * the table. Returns ERR_OK or ERR_NOMEM. */
int service_response_error(long http_status, const char *body, size_t len, const char *header,
                           struct service_client_result *out);

/* The hub's name for a numeric error code (404103 -> "DeviceNotOnline"), or NULL when unknown. */
const char *service_response_code_name(long code);
/* The numeric code for a name ("DeviceNotFound" -> 404001), or 0 when unknown. */
long service_response_name_code(const char *name);

/* Parses one identity object. Returns ERR_OK, ERR_MALFORMED (not an object, or no deviceId) or ERR_NOMEM;
 * *out is zeroed on failure. */
int service_response_identity(const char *body, size_t len, struct service_client_identity *out);
/* Parses a JSON array of identities. On ERR_OK *ids is malloc'd (possibly NULL when *n is 0). */
int service_response_identity_list(const char *body, size_t len, struct service_client_identity **ids,
                                   size_t *n);

#endif
