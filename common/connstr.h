/* connstr.h -- IoT Hub connection strings: parse and format device, module and service strings with the
 * rules the official SDKs use (split on ';', then on the first '='; later duplicates win).
 * Tests: tests/unit/test_connstr.c; fuzz: tests/fuzz/fuzz_connstr.c. */
#ifndef IOTHUB_CONNSTR_H
#define IOTHUB_CONNSTR_H

#include <stddef.h>

enum connstr_kind {
    CONNSTR_DEVICE,  /* HostName;DeviceId;(SharedAccessKey | SharedAccessSignature) */
    CONNSTR_MODULE,  /* the same plus ModuleId */
    CONNSTR_SERVICE, /* HostName;SharedAccessKeyName;SharedAccessKey, no DeviceId */
};

/* Every string is malloc'd and NUL-terminated, or NULL when absent. Free with connstr_cleanup. */
struct connstr {
    enum connstr_kind kind;
    char *host_name;
    char *gateway_host_name;
    char *device_id;
    char *module_id;
    char *key_name;  /* SharedAccessKeyName: required for service, optional (policy acting as device) for device */
    char *key;       /* SharedAccessKey, base64 text as given (validated as base64) */
    char *signature; /* SharedAccessSignature: a whole token "SharedAccessSignature sr=..." */
};

/* Parses text[0..len). On ERR_OK *out is filled (caller calls connstr_cleanup). On failure *out is zeroed,
 * and err (if not NULL) receives one line saying what is wrong, e.g. "missing HostName", "SharedAccessKey
 * is not valid base64", "both SharedAccessKey and SharedAccessSignature given", "x509=true is not
 * supported". The message never contains a key or a signature.
 * Returns ERR_OK, ERR_INVALID or ERR_NOMEM. */
int connstr_parse(const char *text, size_t len, struct connstr *out, char *err, size_t errlen);
void connstr_cleanup(struct connstr *cs);
/* Formats cs in the canonical field order (HostName;DeviceId;ModuleId;SharedAccessKeyName;SharedAccessKey;
 * SharedAccessSignature;GatewayHostName, absent fields left out). Returns malloc'd text or NULL (ERR_NOMEM). */
char *connstr_format(const struct connstr *cs);

#endif
