/* service_response.c -- pure response parsing for the service client (see service_response.h): method
 * results, the hub's two error envelopes, registry identities. Layer: service library, below
 * service_client.c; no I/O. Every body is length-delimited untrusted input. */
#include "service_response.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

#define RESPONSE_MAX_MESSAGE 1024

/* The codes of iothub-protocol.md §4.3 (and the registry's and jobs' 404/409 names: JobNotFound is the .NET
 * ErrorCode enum's 404002; no SDK lists a job 409 code, 409007 JobAlreadyExists is the emulator's). */
static const struct {
    long code;
    const char *name;
} known_codes[] = {
    {400001, "InvalidProtocolVersion"},
    {400004, "ArgumentInvalid"},
    {400005, "ArgumentNull"},
    {400006, "IotHubFormatError"},
    {400027, "ConnectionForcefullyClosedOnNewConnection"},
    {401002, "IotHubUnauthorizedAccess"},
    {401003, "IoTHubUnauthorized"},
    {403002, "IotHubQuotaExceeded"},
    {404001, "DeviceNotFound"},
    {404002, "JobNotFound"},
    {404010, "ModuleNotFound"},
    {404103, "DeviceNotOnline"},
    {409001, "DeviceAlreadyExists"},
    {409007, "JobAlreadyExists"},
    {409301, "ModuleAlreadyExistsOnDevice"},
    {412001, "PreconditionFailed"},
    {413001, "MessageTooLarge"},
    {429001, "ThrottlingException"},
    {429003, "ThrottlingBacklogTimeout"},
    {500001, "ServerError"},
    {503001, "ServiceUnavailable"},
    {504101, "GatewayTimeout"},
};

const char *service_response_code_name(long code)
{
    for (size_t i = 0; i < sizeof known_codes / sizeof known_codes[0]; i++)
        if (known_codes[i].code == code)
            return known_codes[i].name;
    return NULL;
}

long service_response_name_code(const char *name)
{
    for (size_t i = 0; name && i < sizeof known_codes / sizeof known_codes[0]; i++)
        if (strcmp(known_codes[i].name, name) == 0)
            return known_codes[i].code;
    return 0;
}

static const char *reason_phrase(long status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "HTTP error";
}

/* A one-line, bounded copy of p[0..n): control characters become spaces, surrounding spaces go. */
static char *one_line(const char *p, size_t n)
{
    while (n > 0 && (*p == ' ' || *p == '\t'))
        p++, n--;
    if (n > RESPONSE_MAX_MESSAGE)
        n = RESPONSE_MAX_MESSAGE;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        s[i] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? ' ' : p[i];
    while (n > 0 && s[n - 1] == ' ')
        n--;
    s[n] = '\0';
    return s;
}

/* ---- method result ---- */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && is_ws(s[i]))
        i++;
    return i;
}

/* s[i] is '"': returns the index after the closing quote (len when unterminated). */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

/* Skips one JSON value of text already validated by jansson: returns the index just after it. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, len, i);
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of a scalar that closes its container */
            depth--;
            i++;
        } else if (depth == 0 && (c == ',' || is_ws(c))) {
            return i;
        } else {
            i++;
        }
        if (depth == 0 && (c == '"' || c == '}' || c == ']'))
            return i;
    }
    return i;
}

/* The raw text of the last top-level member named key (written without escapes) of a validated object. */
static int member_span(const char *s, size_t len, const char *key, size_t *start, size_t *end)
{
    size_t klen = strlen(key), i = skip_ws(s, len, 0);
    int found = 0;
    if (i >= len || s[i] != '{')
        return 0;
    for (i = skip_ws(s, len, i + 1); i < len && s[i] == '"';) {
        size_t k = i + 1, kend = skip_string(s, len, i);
        int match = kend - k == klen + 1 && memcmp(s + k, key, klen) == 0;
        i = skip_ws(s, len, kend);
        if (i >= len || s[i] != ':')
            return 0;
        size_t v = skip_ws(s, len, i + 1);
        i = skip_value(s, len, v);
        if (match) {
            *start = v;
            *end = i;
            found = 1;
        }
        i = skip_ws(s, len, i);
        if (i < len && s[i] == ',')
            i = skip_ws(s, len, i + 1);
    }
    return found;
}

/* The payload member as text: raw when it can be located, else re-serialised. */
static char *payload_text(const char *body, size_t len, json_t *payload)
{
    size_t a = 0, b = 0;
    if (!payload || json_is_null(payload))
        return strdup("null");
    if (member_span(body, len, "payload", &a, &b) && b > a) {
        char *s = malloc(b - a + 1);
        if (s) {
            memcpy(s, body + a, b - a);
            s[b - a] = '\0';
        }
        return s;
    }
    return json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int malformed(struct service_client_result *out, const char *why)
{
    free(out->message);
    out->message = strdup(why);
    return out->message ? ERR_MALFORMED : ERR_NOMEM;
}

int service_response_method(const char *body, size_t len, struct service_client_result *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    int rc;
    if (!root || !json_is_object(root)) {
        rc = malformed(out, "the hub's method result is not a JSON object");
        goto out;
    }
    json_t *status = json_object_get(root, "status");
    if (!json_is_integer(status) || json_integer_value(status) < -2147483647 ||
        json_integer_value(status) > 2147483647) {
        rc = malformed(out, "the hub's method result has no integer status");
        goto out;
    }
    free(out->payload);
    out->payload = payload_text(body, len, json_object_get(root, "payload"));
    if (!out->payload) {
        rc = ERR_NOMEM;
        goto out;
    }
    out->kind = SERVICE_CLIENT_ANSWERED;
    out->status = (int)json_integer_value(status);
    rc = ERR_OK;
out:
    json_decref(root);
    return rc;
}

/* ---- errors ---- */

/* Envelope B's inner object (or a bare {"errorCode":..,"message":..}): code and message. */
static int parse_inner(json_t *inner, struct service_client_result *out)
{
    json_t *code = json_object_get(inner, "errorCode");
    if (json_is_integer(code)) {
        out->error_code = (long)json_integer_value(code);
    } else if (json_is_string(code)) {
        char *end = NULL;
        long v = strtol(json_string_value(code), &end, 10);
        if (end && *end == '\0' && v > 0)
            out->error_code = v;
        else if (!out->error_name && !(out->error_name = strdup(json_string_value(code))))
            return ERR_NOMEM;
    } else {
        return ERR_NOT_FOUND;
    }
    json_t *msg = json_object_get(inner, "message");
    if (json_is_string(msg) && !(out->message = one_line(json_string_value(msg), json_string_length(msg))))
        return ERR_NOMEM;
    return ERR_OK;
}

/* Envelope A: "ErrorCode:Name;text". */
static int parse_legacy(const char *text, size_t n, struct service_client_result *out)
{
    const char *name = text + 10, *semi = memchr(name, ';', n - 10);
    size_t name_len = semi ? (size_t)(semi - name) : n - 10;
    if (name_len > 0 && !(out->error_name = one_line(name, name_len)))
        return ERR_NOMEM;
    if (semi && !(out->message = one_line(semi + 1, n - 10 - name_len - 1)))
        return ERR_NOMEM;
    return ERR_OK;
}

/* The value of "Message": envelope B (JSON text), envelope A, or plain text. */
static int parse_message(const char *text, size_t n, struct service_client_result *out)
{
    if (n >= 10 && memcmp(text, "ErrorCode:", 10) == 0)
        return parse_legacy(text, n, out);
    json_t *inner = json_loadb(text, n, 0, NULL);
    int rc = json_is_object(inner) ? parse_inner(inner, out) : ERR_NOT_FOUND;
    json_decref(inner);
    if (rc != ERR_NOT_FOUND)
        return rc;
    out->message = one_line(text, n);
    return out->message ? ERR_OK : ERR_NOMEM;
}

static int parse_body(const char *body, size_t len, struct service_client_result *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    int rc = ERR_NOT_FOUND;
    if (json_is_object(root)) {
        json_t *msg = json_object_get(root, "Message");
        if (!msg)
            msg = json_object_get(root, "message");
        if (json_is_string(msg) && !json_object_get(root, "errorCode"))
            rc = parse_message(json_string_value(msg), json_string_length(msg), out);
        else
            rc = parse_inner(root, out);
    }
    json_decref(root);
    return rc;
}

/* Fallback message for a body that is no envelope: its first line, or the reason phrase. */
static char *fallback_message(long http_status, const char *body, size_t len)
{
    size_t n = 0;
    while (n < len && body[n] != '\n' && body[n] != '\r')
        n++;
    char *s = n ? one_line(body, n) : NULL;
    if (s && *s)
        return s;
    free(s);
    return strdup(reason_phrase(http_status));
}

int service_response_error(long http_status, const char *body, size_t len, const char *header,
                           struct service_client_result *out)
{
    out->kind = SERVICE_CLIENT_HUB_ERROR;
    out->http_status = http_status;
    out->error_code = 0;
    free(out->error_name);
    free(out->message);
    out->error_name = out->message = NULL;
    int parsed = body && len ? parse_body(body, len, out) : ERR_NOT_FOUND;
    if (parsed == ERR_NOMEM)
        return ERR_NOMEM;
    if (!out->error_name && header && *header && !(out->error_name = one_line(header, strlen(header))))
        return ERR_NOMEM;
    if (!out->error_name && service_response_code_name(out->error_code) &&
        !(out->error_name = strdup(service_response_code_name(out->error_code))))
        return ERR_NOMEM;
    if (!out->error_code)
        out->error_code = service_response_name_code(out->error_name);
    if (!out->message || !*out->message) {
        free(out->message);
        out->message = parsed == ERR_OK ? strdup(reason_phrase(http_status))
                                        : fallback_message(http_status, body, body ? len : 0);
    }
    return out->message ? ERR_OK : ERR_NOMEM;
}

/* ---- identities ---- */

/* *out = copy of obj[key] when it is a string, else NULL. */
static int dup_member(json_t *obj, const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!json_is_string(v))
        return ERR_OK;
    *out = strdup(json_string_value(v));
    return *out ? ERR_OK : ERR_NOMEM;
}

static int identity_from_json(json_t *obj, struct service_client_identity *out)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(obj) || !json_is_string(json_object_get(obj, "deviceId")))
        return ERR_MALFORMED;
    json_t *keys = json_object_get(json_object_get(obj, "authentication"), "symmetricKey");
    int rc = dup_member(obj, "deviceId", &out->device_id);
    if (!rc)
        rc = dup_member(obj, "moduleId", &out->module_id);
    if (!rc)
        rc = dup_member(keys, "primaryKey", &out->primary_key);
    if (!rc)
        rc = dup_member(keys, "secondaryKey", &out->secondary_key);
    if (!rc)
        rc = dup_member(obj, "status", &out->status);
    if (!rc)
        rc = dup_member(obj, "etag", &out->etag);
    if (!rc)
        rc = dup_member(obj, "connectionState", &out->connection_state);
    if (!rc && !(out->json = json_dumps(obj, JSON_COMPACT)))
        rc = ERR_NOMEM;
    if (rc)
        service_client_identity_cleanup(out);
    return rc;
}

int service_response_identity(const char *body, size_t len, struct service_client_identity *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    int rc = identity_from_json(root, out);
    json_decref(root);
    return rc;
}

int service_response_identity_list(const char *body, size_t len, struct service_client_identity **ids,
                                   size_t *n)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    struct service_client_identity *arr = NULL;
    size_t count = 0;
    int rc = ERR_MALFORMED;
    *ids = NULL;
    *n = 0;
    if (!json_is_array(root))
        goto out;
    rc = ERR_OK;
    if (json_array_size(root) > 0) {
        arr = calloc(json_array_size(root), sizeof *arr);
        rc = arr ? ERR_OK : ERR_NOMEM;
    }
    for (size_t i = 0; !rc && i < json_array_size(root); i++) {
        rc = identity_from_json(json_array_get(root, i), &arr[i]);
        count += rc ? 0 : 1;
    }
    if (rc) {
        service_client_identity_list_free(arr, count);
        arr = NULL;
        count = 0;
    }
    *ids = arr;
    *n = count;
out:
    json_decref(root);
    return rc;
}
