/* auth.h -- shared access policies and SAS token checks for service routes and device connections.
 * (Placeholder contract; the implementation lands with the REST module.) */
#ifndef IOTHUB_AUTH_H
#define IOTHUB_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct auth;
struct identity;

int auth_check_device(struct auth *a, const struct identity *id, const char *token, size_t len, int64_t now_s,
                      int64_t skew_s, int64_t *expiry_out, char *why, size_t whylen);

#endif
