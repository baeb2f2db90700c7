/* login.c -- MQTT CONNECT client id, username and SAS password for a device or module (see login.h). */
#include "login.h"

#include <stdlib.h>

#include "buf.h"
#include "err.h"
#include "sas.h"

#define LOGIN_MAX 4096 /* far above any valid host + ids; keeps a bad input from growing without bound */

static int has_text(const char *s)
{
    return s && s[0];
}

char *login_client_id(const char *device_id, const char *module_id)
{
    if (!has_text(device_id))
        return NULL;
    struct buf b;
    buf_init(&b, LOGIN_MAX);
    int rc = buf_append_str(&b, device_id);
    if (!rc && has_text(module_id))
        rc = buf_printf(&b, "/%s", module_id);
    char *out = rc ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    return out;
}

char *login_username(const char *host, const char *device_id, const char *module_id)
{
    if (!has_text(host) || !has_text(device_id))
        return NULL;
    struct buf b;
    buf_init(&b, LOGIN_MAX);
    int rc = buf_printf(&b, "%s/%s", host, device_id);
    if (!rc && has_text(module_id))
        rc = buf_printf(&b, "/%s", module_id);
    if (!rc)
        rc = buf_append_str(&b, "/?api-version=" LOGIN_API_VERSION "&DeviceClientType=" LOGIN_CLIENT_TYPE);
    char *out = rc ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    return out;
}

int login_password(const char *host, const char *device_id, const char *module_id, const char *key_b64,
                   const char *key_name, uint64_t expiry, char **out)
{
    *out = NULL;
    if (!has_text(host) || !has_text(device_id) || !has_text(key_b64))
        return ERR_INVALID;
    char *uri = sas_resource_uri(host, device_id, has_text(module_id) ? module_id : NULL);
    if (!uri)
        return ERR_NOMEM;
    int rc = sas_build(uri, key_b64, expiry, has_text(key_name) ? key_name : NULL, out);
    free(uri);
    return rc;
}
