/* service_request.c -- pure request building for the service client (see service_request.h): paths, bodies,
 * headers. Layer: service library, below service_client.c; touches no network and no clock. */
#include "service_request.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "url.h"

#define REQUEST_MAX_TEXT (4u * 1024 * 1024)
#define QUERY_API "api-version=" SERVICE_CLIENT_API_VERSION

/* Appends "/{segment}/{enc(id)}" to b. */
static int append_id(struct buf *b, const char *segment, const char *id)
{
    char *enc = url_encode(id, strlen(id));
    if (!enc)
        return ERR_NOMEM;
    int rc = buf_printf(b, "/%s/%s", segment, enc);
    free(enc);
    return rc;
}

/* "{first}/{enc(device)}[/modules/{enc(module)}]{tail}", malloc'd. */
static char *build_path(const char *first, const char *device_id, const char *module_id, const char *tail)
{
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    char *out = NULL;
    if (!device_id || !*device_id || (module_id && !*module_id))
        goto out;
    if (append_id(&b, first, device_id))
        goto out;
    if (module_id && append_id(&b, "modules", module_id))
        goto out;
    if (buf_append_str(&b, tail))
        goto out;
    out = buf_take_str(&b);
out:
    buf_cleanup(&b);
    return out;
}

char *service_request_method_path(const char *device_id, const char *module_id)
{
    return build_path("twins", device_id, module_id, "/methods?" QUERY_API);
}

char *service_request_identity_path(const char *device_id, const char *module_id)
{
    return build_path("devices", device_id, module_id, "?" QUERY_API);
}

char *service_request_twin_path(const char *device_id, const char *module_id)
{
    return build_path("twins", device_id, module_id, "?" QUERY_API);
}

char *service_request_query_path(void)
{
    return strdup("/devices/query?" QUERY_API);
}

char *service_request_list_path(const char *device_id, int top)
{
    if (device_id)
        return build_path("devices", device_id, NULL, "/modules?" QUERY_API);
    if (top <= 0 || top > 1000)
        top = 1000;
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    if (buf_printf(&b, "/devices/?top=%d&" QUERY_API, top)) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_take_str(&b);
}

/* Appends s as a JSON string literal. ERR_INVALID when s is not UTF-8. */
static int append_json_string(struct buf *b, const char *s)
{
    json_t *j = json_string(s);
    if (!j)
        return ERR_INVALID;
    char *text = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    if (!text)
        return ERR_NOMEM;
    int rc = buf_append_str(b, text);
    free(text);
    return rc;
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Checks that payload is one JSON value; sets [*start, *end) to it without surrounding white space. */
static int check_payload(const char *payload, size_t *start, size_t *end, char *err, size_t errlen)
{
    json_error_t jerr;
    size_t len = strlen(payload);
    json_t *j = json_loadb(payload, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        snprintf(err, errlen, "payload is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return ERR_INVALID;
    }
    json_decref(j);
    size_t s = 0;
    while (s < len && is_json_space(payload[s]))
        s++;
    while (len > s && is_json_space(payload[len - 1]))
        len--;
    *start = s;
    *end = len;
    return ERR_OK;
}

int service_request_query_body(const char *sql, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!sql || !*sql) {
        snprintf(err, errlen, "the query is empty");
        return ERR_INVALID;
    }
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    int rc = buf_append_str(&b, "{\"query\":");
    if (!rc)
        rc = append_json_string(&b, sql);
    if (!rc)
        rc = buf_append_str(&b, "}");
    if (rc == ERR_INVALID)
        snprintf(err, errlen, "the query is not valid UTF-8");
    if (!rc && !(*out = buf_take_str(&b)))
        rc = ERR_NOMEM;
    buf_cleanup(&b);
    return rc;
}

int service_request_method_body(const char *method_name, const char *payload, int response_timeout_s,
                                int connect_timeout_s, char **out, char *err, size_t errlen)
{
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    size_t ps = 0, pe = 0;
    int rc = ERR_INVALID;
    *out = NULL;
    if (!method_name || !*method_name) {
        snprintf(err, errlen, "the method name is empty");
        goto out;
    }
    if (response_timeout_s < 0 || connect_timeout_s < 0) {
        snprintf(err, errlen, "timeouts cannot be negative");
        goto out;
    }
    if (payload && check_payload(payload, &ps, &pe, err, errlen))
        goto out;
    rc = buf_append_str(&b, "{\"methodName\":");
    if (!rc)
        rc = append_json_string(&b, method_name);
    if (rc == ERR_INVALID) {
        snprintf(err, errlen, "the method name is not valid UTF-8");
        goto out;
    }
    if (!rc)
        rc = buf_printf(&b, ",\"responseTimeoutInSeconds\":%d,\"connectTimeoutInSeconds\":%d,\"payload\":",
                        response_timeout_s, connect_timeout_s);
    if (!rc)
        rc = payload ? buf_append(&b, payload + ps, pe - ps) : buf_append_str(&b, "null");
    if (!rc)
        rc = buf_append_byte(&b, '}');
    if (!rc) {
        *out = buf_take_str(&b);
        rc = *out ? ERR_OK : ERR_NOMEM;
    }
    if (rc && rc != ERR_INVALID)
        snprintf(err, errlen, "%s", err_str(rc));
out:
    buf_cleanup(&b);
    return rc;
}

/* {"type":"sas","symmetricKey":{"primaryKey":p,"secondaryKey":s}}, or NULL when a key is not UTF-8. */
static json_t *auth_json(const struct service_client_identity_spec *spec)
{
    const char *p = spec && spec->primary_key ? spec->primary_key : "";
    const char *s = spec && spec->secondary_key ? spec->secondary_key : "";
    json_t *keys = json_pack("{s:s, s:s}", "primaryKey", p, "secondaryKey", s);
    if (!keys)
        return NULL;
    return json_pack("{s:s, s:o}", "type", "sas", "symmetricKey", keys);
}

int service_request_identity_body(const char *device_id, const char *module_id,
                                  const struct service_client_identity_spec *spec, char **out, char *err,
                                  size_t errlen)
{
    json_t *obj = NULL;
    int rc = ERR_INVALID;
    *out = NULL;
    if (!device_id || !*device_id || (module_id && !*module_id)) {
        snprintf(err, errlen, "the %s id is empty", device_id && *device_id ? "module" : "device");
        goto out;
    }
    if (module_id && spec && spec->disabled) {
        snprintf(err, errlen, "a module has no status: it cannot be created disabled");
        goto out;
    }
    obj = json_pack("{s:s}", "deviceId", device_id);
    if (!obj || (module_id && json_object_set_new(obj, "moduleId", json_string(module_id)))) {
        snprintf(err, errlen, "the ids must be valid UTF-8");
        goto out;
    }
    const char *status = spec && spec->disabled ? "disabled" : "enabled";
    if (!module_id && json_object_set_new(obj, "status", json_string(status))) {
        rc = ERR_NOMEM;
        goto out;
    }
    json_t *auth = auth_json(spec);
    if (!auth || json_object_set_new(obj, "authentication", auth)) {
        snprintf(err, errlen, "the keys must be valid UTF-8");
        goto out;
    }
    *out = json_dumps(obj, JSON_COMPACT);
    rc = *out ? ERR_OK : ERR_NOMEM;
out:
    if (rc == ERR_NOMEM)
        snprintf(err, errlen, "%s", err_str(rc));
    json_decref(obj);
    return rc;
}

void service_request_uuid(const uint8_t random[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    memcpy(b, random, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

/* Appends "{name}: {value}" to *list. */
static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    int rc = buf_printf(&b, "%s: %s", name, value);
    char *line = rc ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    if (!line)
        return rc ? rc : ERR_NOMEM;
    struct curl_slist *n = curl_slist_append(*list, line);
    free(line);
    if (!n)
        return ERR_NOMEM;
    *list = n;
    return ERR_OK;
}

int service_request_headers(const char *token, const char *request_id, int has_body, const char *if_match,
                            struct curl_slist **out)
{
    struct curl_slist *list = NULL;
    int rc = add_header(&list, "Authorization", token);
    if (!rc)
        rc = add_header(&list, "Accept", "application/json");
    if (!rc)
        rc = add_header(&list, "Request-Id", request_id);
    if (!rc)
        rc = add_header(&list, "User-Agent", SERVICE_REQUEST_USER_AGENT);
    if (!rc && has_body)
        rc = add_header(&list, "Content-Type", "application/json; charset=utf-8");
    if (!rc && if_match)
        rc = add_header(&list, "If-Match", if_match);
    if (!rc) {
        struct curl_slist *n = curl_slist_append(list, "Expect:");
        rc = n ? ERR_OK : ERR_NOMEM;
        list = n ? n : list;
    }
    if (rc) {
        curl_slist_free_all(list);
        list = NULL;
    }
    *out = list;
    return rc;
}

int service_request_amqp_endpoint(const char *url, const char *host, char *host_out, size_t host_len,
                                  char *port_out, size_t port_len, int *tls)
{
    const char *h = host, *port = "5671";
    size_t hlen = host ? strlen(host) : 0;
    *tls = 1;
    if (url) {
        if (strncmp(url, "amqps://", 8) == 0) {
            h = url + 8;
        } else if (strncmp(url, "amqp://", 7) == 0) {
            h = url + 7;
            *tls = 0;
            port = "5672";
        } else {
            return ERR_INVALID;
        }
        const char *end = h + strcspn(h, "/");
        const char *colon = NULL;
        if (*h == '[') {
            const char *close = memchr(h, ']', (size_t)(end - h));
            if (!close || (close + 1 != end && close[1] != ':'))
                return ERR_INVALID;
            colon = close + 1 != end ? close + 1 : NULL;
            hlen = (size_t)(close - h - 1);
            h++;
        } else {
            colon = memchr(h, ':', (size_t)(end - h));
            hlen = (size_t)((colon ? colon : end) - h);
        }
        if (*end && strcmp(end, "/") != 0)
            return ERR_INVALID;
        if (colon) {
            size_t plen = (size_t)(end - colon - 1);
            if (plen == 0 || plen >= port_len || strspn(colon + 1, "0123456789") < plen)
                return ERR_INVALID;
            memcpy(port_out, colon + 1, plen);
            port_out[plen] = 0;
            long v = strtol(port_out, NULL, 10);
            if (v < 1 || v > 65535)
                return ERR_INVALID;
            port = NULL;
        }
    }
    if (!h || hlen == 0 || hlen >= host_len)
        return ERR_INVALID;
    memcpy(host_out, h, hlen);
    host_out[hlen] = 0;
    if (port) {
        if (strlen(port) >= port_len)
            return ERR_INVALID;
        memcpy(port_out, port, strlen(port) + 1);
    }
    return ERR_OK;
}

/* ---- jobs ---- */

char *service_request_job_path(const char *job_id, const char *tail)
{
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    char *out = NULL;
    if (job_id && *job_id && !append_id(&b, "jobs/v2", job_id) && !buf_printf(&b, "%s?" QUERY_API, tail))
        out = buf_take_str(&b);
    buf_cleanup(&b);
    return out;
}

/* Appends "&{name}={enc(value)}" when value is given. */
static int append_param(struct buf *b, const char *name, const char *value)
{
    if (!value || !*value)
        return ERR_OK;
    char *enc = url_encode(value, strlen(value));
    int rc = enc ? buf_printf(b, "&%s=%s", name, enc) : ERR_NOMEM;
    free(enc);
    return rc;
}

char *service_request_job_query_path(const char *job_type, const char *job_status)
{
    struct buf b;
    buf_init(&b, REQUEST_MAX_TEXT);
    char *out = NULL;
    if (!buf_append_str(&b, "/jobs/v2/query?" QUERY_API) && !append_param(&b, "jobType", job_type) &&
        !append_param(&b, "jobStatus", job_status))
        out = buf_take_str(&b);
    buf_cleanup(&b);
    return out;
}

/* text parsed as JSON (an object when want_object) into *out; NULL text gives JSON null. */
static int job_json(const char *what, const char *text, int want_object, json_t **out, char *err, size_t errlen)
{
    *out = text ? json_loads(text, JSON_DECODE_ANY, NULL) : json_null();
    if (*out && (!want_object || json_is_object(*out)))
        return ERR_OK;
    json_decref(*out);
    *out = NULL;
    snprintf(err, errlen, "%s must be %s", what, want_object ? "a JSON object" : "JSON");
    return ERR_INVALID;
}

/* The job's cloudToDeviceMethod or updateTwin object. */
static int job_work(const struct service_client_job_spec *j, json_t **out, char *err, size_t errlen)
{
    json_t *a = NULL, *b = NULL;
    *out = NULL;
    if (!j->twin) {
        if (!j->method_name || !*j->method_name) {
            snprintf(err, errlen, "the method name is empty");
            return ERR_INVALID;
        }
        if (job_json("--payload", j->payload, 0, &a, err, errlen))
            return ERR_INVALID;
        *out = json_pack("{s:s, s:o, s:i}", "methodName", j->method_name, "payload", a, "responseTimeoutInSeconds",
                         j->response_timeout_s > 0 ? j->response_timeout_s : 30);
        if (!*out) {
            snprintf(err, errlen, "the method name is not valid UTF-8");
            return ERR_INVALID;
        }
        if (j->connect_timeout_s > 0 &&
            json_object_set_new(*out, "connectTimeoutInSeconds", json_integer(j->connect_timeout_s))) {
            json_decref(*out);
            *out = NULL;
            return ERR_NOMEM;
        }
        return ERR_OK;
    }
    if (!j->desired && !j->tags) {
        snprintf(err, errlen, "a twin job needs --desired JSON and/or --tags JSON");
        return ERR_INVALID;
    }
    if ((j->desired && job_json("--desired", j->desired, 1, &a, err, errlen)) ||
        (j->tags && job_json("--tags", j->tags, 1, &b, err, errlen))) {
        json_decref(a);
        return ERR_INVALID;
    }
    /* json_object_set_new and json_pack take a and b, also when they fail. */
    json_t *work = json_object();
    int bad = !work;
    if (!bad && b)
        bad = json_object_set_new(work, "tags", b);
    else
        json_decref(b);
    if (!bad && a)
        bad = json_object_set_new(work, "properties", json_pack("{s:o}", "desired", a));
    else
        json_decref(a);
    if (bad) {
        json_decref(work);
        return ERR_NOMEM;
    }
    *out = work;
    return ERR_OK;
}

int service_request_job_body(const struct service_client_job_spec *j, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!j->job_id || !*j->job_id || !j->query || !*j->query) {
        snprintf(err, errlen, !j->job_id || !*j->job_id ? "the job id is empty" : "the query condition is empty");
        return ERR_INVALID;
    }
    json_t *work = NULL;
    int rc = job_work(j, &work, err, errlen);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:s, s:s, s:s, s:o, s:i, s:o}", "jobId", j->job_id, "type",
                             j->twin ? "scheduleUpdateTwin" : "scheduleDeviceMethod", "queryCondition", j->query,
                             "startTime", j->start_time ? json_string(j->start_time) : json_null(),
                             "maxExecutionTimeInSeconds", j->max_execution_s > 0 ? j->max_execution_s : 3600,
                             j->twin ? "updateTwin" : "cloudToDeviceMethod", work);
    if (!body) { /* json_pack fails on text that is not UTF-8 */
        snprintf(err, errlen, "the job id, query and start time must be valid UTF-8");
        return ERR_INVALID;
    }
    *out = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    return *out ? ERR_OK : ERR_NOMEM;
}
