/* login.h -- what the device sends in MQTT CONNECT, exactly as the official SDKs do (iothub-protocol.md §1.3,
 * §6): client id "{deviceId}[/{moduleId}]", username
 * "{host}/{deviceId}[/{moduleId}]/?api-version=2021-04-12&DeviceClientType=iothub-emulator-c%2F0.1.0",
 * password a SAS token for "{host}/devices/{deviceId}[/modules/{moduleId}]". {host} is always the
 * connection string's HostName, never GatewayHostName. Pure apart from malloc; no clock (the expiry is
 * passed in). Internal to device/. Tests: tests/unit/test_device_login.c. */
#ifndef IOTHUB_LOGIN_H
#define IOTHUB_LOGIN_H

#include <stdint.h>

#define LOGIN_API_VERSION "2021-04-12"
#define LOGIN_CLIENT_VERSION "0.1.0"
/* "iothub-emulator-c/0.1.0", URL-encoded as the SDKs encode DeviceClientType. */
#define LOGIN_CLIENT_TYPE "iothub-emulator-c%2F" LOGIN_CLIENT_VERSION

/* Each returns malloc'd NUL-terminated text (caller frees) or NULL when out of memory or an argument is
 * NULL/empty. module_id NULL (or "") means a device identity. Ids and host are used as given, unencoded,
 * like the C and Python SDKs. */
char *login_client_id(const char *device_id, const char *module_id);
char *login_username(const char *host, const char *device_id, const char *module_id);

/* Builds the password: a SAS token for the identity's resource URI, signed with key_b64 (skn=key_name when
 * a policy key acts for the device; NULL otherwise), expiring at `expiry` (seconds since the epoch).
 * On ERR_OK *out is malloc'd (caller frees). Returns ERR_OK, ERR_INVALID (bad key) or ERR_NOMEM. */
int login_password(const char *host, const char *device_id, const char *module_id, const char *key_b64,
                   const char *key_name, uint64_t expiry, char **out);

#endif
