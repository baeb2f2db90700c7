/* service_client.c -- the IoT Hub service client (see service_client.h): connection string, fresh SAS token
 * per request, retries with bounded back-off, direct-method calls and registry operations. Requests are
 * built by service_request.c, answers parsed by service_response.c, sent by service_http.c. */
#include "service_client.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "buf.h"
#include "connstr.h"
#include "err.h"
#include "log.h"
#include "sas.h"
#include "service_amqp.h"
#include "service_http.h"
#include "service_request.h"
#include "service_response.h"
#include "url.h"

#define CLIENT_TOKEN_TTL_S 3600
#define CLIENT_DEFAULT_TRIES 3
#define CLIENT_DEFAULT_DELAY_MS 500
#define CLIENT_MAX_DELAY_MS 2000
#define CLIENT_REGISTRY_TIMEOUT_MS 30000L
#define CLIENT_METHOD_SLACK_S 15
#define CLIENT_DEFAULT_RESPONSE_TIMEOUT_S 30
#define C2D_ID_MAX 128 /* the hub's message id limit */

struct service_client {
    struct connstr cs;
    char *base_url; /* no trailing '/' */
    char *ca_file;
    int max_tries;
    int retry_delay_ms;
    CURL *curl;
};

/* One REST call as service_client.c sends it. */
struct call {
    const char *method;
    char *path;           /* owned by the caller */
    const char *body;
    const char *if_match;
    long timeout_ms;
    int idempotent;       /* may be retried after a broken connection */
    const char *extra[2]; /* more header lines ("x-ms-continuation: ..."), NULL when unused */
};

const char *service_client_version(void)
{
    return SERVICE_CLIENT_VERSION;
}

static char *make_base_url(const char *override, const char *host)
{
    struct buf b;
    buf_init(&b, 4096);
    int rc = override ? buf_append_str(&b, override) : buf_printf(&b, "https://%s", host);
    while (!rc && b.len > 0 && b.data[b.len - 1] == '/')
        b.len--;
    char *s = rc ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    return s;
}

static int check_options(const struct service_client_options *opts, char *err, size_t errlen)
{
    const char *u = opts ? opts->base_url : NULL;
    if (u && strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0) {
        snprintf(err, errlen, "the base URL must start with https:// or http://");
        return ERR_INVALID;
    }
    if (opts && (opts->max_tries < 0 || opts->retry_delay_ms < 0)) {
        snprintf(err, errlen, "retry settings cannot be negative");
        return ERR_INVALID;
    }
    return ERR_OK;
}

static int parse_connection_string(struct service_client *c, const char *text, char *err, size_t errlen)
{
    char why[256] = "";
    if (!text || !*text) {
        snprintf(err, errlen, "no service connection string given");
        return ERR_INVALID;
    }
    int rc = connstr_parse(text, strlen(text), &c->cs, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "invalid service connection string: %s", why[0] ? why : err_str(rc));
        return rc;
    }
    if (c->cs.kind != CONNSTR_SERVICE || !c->cs.key || !c->cs.key_name) {
        snprintf(err, errlen, "invalid service connection string: it needs HostName, SharedAccessKeyName and "
                              "SharedAccessKey (this looks like a device connection string)");
        return ERR_INVALID;
    }
    return ERR_OK;
}

struct service_client *service_client_new(const char *connection_string, const struct service_client_options *opts,
                                          char *err, size_t errlen)
{
    struct service_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (check_options(opts, err, errlen) || parse_connection_string(c, connection_string, err, errlen))
        goto fail;
    c->max_tries = opts && opts->max_tries ? opts->max_tries : CLIENT_DEFAULT_TRIES;
    c->retry_delay_ms = opts && opts->retry_delay_ms ? opts->retry_delay_ms : CLIENT_DEFAULT_DELAY_MS;
    c->base_url = make_base_url(opts ? opts->base_url : NULL, c->cs.host_name);
    c->ca_file = opts && opts->ca_file ? strdup(opts->ca_file) : NULL;
    c->curl = curl_easy_init();
    if (!c->base_url || (opts && opts->ca_file && !c->ca_file) || !c->curl) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return c;
fail:
    service_client_free(c);
    return NULL;
}

void service_client_free(struct service_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    connstr_cleanup(&c->cs);
    free(c->base_url);
    free(c->ca_file);
    free(c);
    curl_global_cleanup();
}

const char *service_client_host(const struct service_client *c)
{
    return c->cs.host_name;
}

/* ---- one REST call with retries ---- */

static int new_request_id(char out[37])
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return ERR_IO;
    service_request_uuid(r, out);
    return ERR_OK;
}

/* Fresh token and headers for one attempt. */
static int attempt_headers(const struct service_client *c, const struct call *call, const char *request_id,
                           struct curl_slist **headers)
{
    char *token = NULL;
    uint64_t expiry = (uint64_t)time(NULL) + CLIENT_TOKEN_TTL_S;
    int rc = sas_build(c->cs.host_name, c->cs.key, expiry, c->cs.key_name, &token);
    if (!rc)
        rc = service_request_headers(token, request_id, call->body != NULL, call->if_match, headers);
    for (size_t i = 0; !rc && i < 2 && call->extra[i]; i++) {
        struct curl_slist *more = curl_slist_append(*headers, call->extra[i]);
        if (!more)
            rc = ERR_NOMEM;
        else
            *headers = more;
    }
    free(token);
    return rc;
}

static int is_transient(const struct service_http_response *resp, int idempotent)
{
    if (resp->status == 429 || resp->status == 503)
        return 1;
    if (resp->status != 0)
        return 0;
    if (resp->curl_code == CURLE_COULDNT_CONNECT)
        return 1; /* refused or unreachable: the request surely did not reach the hub */
    return idempotent && service_http_classify(resp->curl_code, resp->connected) == SERVICE_CLIENT_NET_RESET;
}

static void back_off(int delay_ms)
{
    struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sends call, retrying transient failures. Returns ERR_OK when resp holds an HTTP answer or a transport
 * failure (resp->status 0), ERR_TOO_BIG / ERR_NOMEM / ERR_IO (no randomness) otherwise. */
static int execute(struct service_client *c, const struct call *call, struct service_http_response *resp,
                   int *tries)
{
    char request_id[37];
    struct buf url;
    buf_init(&url, 64 * 1024);
    int rc = new_request_id(request_id);
    if (!rc)
        rc = buf_printf(&url, "%s%s", c->base_url, call->path);
    if (!rc)
        rc = buf_append_byte(&url, '\0');
    int delay = c->retry_delay_ms;
    for (*tries = 0; !rc && *tries < c->max_tries;) {
        struct curl_slist *headers = NULL;
        rc = attempt_headers(c, call, request_id, &headers);
        if (rc)
            break;
        struct service_http_request req = {call->method, (const char *)url.data, headers, call->body,
                                           call->timeout_ms, c->ca_file};
        rc = service_http_perform(c->curl, &req, resp);
        curl_slist_free_all(headers);
        ++*tries;
        if (rc == ERR_IO)
            rc = ERR_OK; /* a transport failure is an outcome */
        if (rc || !is_transient(resp, call->idempotent) || *tries >= c->max_tries)
            break;
        log_debug("%s %s: %s, retrying in %d ms", call->method, call->path,
                  resp->status ? "hub busy" : resp->curl_error, delay);
        back_off(delay);
        delay = delay * 2 > CLIENT_MAX_DELAY_MS ? CLIENT_MAX_DELAY_MS : delay * 2;
    }
    buf_cleanup(&url);
    return rc;
}

/* Turns resp into res: 2xx -> ANSWERED (the caller parses the body), an HTTP error -> HUB_ERROR, no
 * answer -> TRANSPORT_ERROR. */
static int outcome(const struct service_http_response *resp, struct service_client_result *res)
{
    if (resp->status == 0) {
        res->kind = SERVICE_CLIENT_TRANSPORT_ERROR;
        res->net = service_http_classify(resp->curl_code, resp->connected);
        res->message = strdup(resp->curl_error);
        return res->message ? ERR_OK : ERR_NOMEM;
    }
    res->http_status = resp->status;
    if (resp->status >= 200 && resp->status < 300) {
        res->kind = SERVICE_CLIENT_ANSWERED;
        return ERR_OK;
    }
    return service_response_error(resp->status, (const char *)resp->body.data, resp->body.len,
                                  resp->errorcode[0] ? resp->errorcode : NULL, res);
}

/* execute + outcome; on a local failure res->message says why. */
static int run(struct service_client *c, const struct call *call, struct service_http_response *resp,
               struct service_client_result *res)
{
    int rc = call->path ? execute(c, call, resp, &res->tries) : ERR_NOMEM;
    if (!rc)
        return outcome(resp, res);
    free(res->message);
    res->message = strdup(rc == ERR_TOO_BIG ? resp->curl_error : err_str(rc));
    return rc;
}

static int invalid(struct service_client_result *res, const char *why)
{
    res->message = strdup(why);
    return res->message ? ERR_INVALID : ERR_NOMEM;
}

static int check_ids(const char *device_id, const char *module_id, struct service_client_result *res)
{
    if (!device_id || !*device_id)
        return invalid(res, "the device id is empty");
    if (module_id && !*module_id)
        return invalid(res, "the module id is empty");
    return ERR_OK;
}

/* ---- direct methods ---- */

int service_client_invoke(struct service_client *c, const struct service_client_method *m,
                          struct service_client_result *out)
{
    char why[512] = "";
    char *body = NULL;
    struct service_http_response resp;
    service_http_response_init(&resp);
    memset(out, 0, sizeof *out);
    int rt = m->response_timeout_s ? m->response_timeout_s : CLIENT_DEFAULT_RESPONSE_TIMEOUT_S;
    struct call call = {"POST", NULL, NULL, NULL,
                        ((long)rt + m->connect_timeout_s + CLIENT_METHOD_SLACK_S) * 1000L, 0, {NULL, NULL}};
    int rc = check_ids(m->device_id, m->module_id, out);
    if (rc)
        goto out;
    rc = service_request_method_body(m->method_name, m->payload, rt, m->connect_timeout_s, &body, why,
                                     sizeof why);
    if (rc) {
        rc = rc == ERR_INVALID ? invalid(out, why) : rc;
        goto out;
    }
    call.path = service_request_method_path(m->device_id, m->module_id);
    call.body = body;
    rc = run(c, &call, &resp, out);
    if (!rc && out->kind == SERVICE_CLIENT_ANSWERED)
        rc = service_response_method((const char *)resp.body.data, resp.body.len, out);
out:
    free(body);
    free(call.path);
    service_http_response_cleanup(&resp);
    return rc;
}

/* ---- registry ---- */

/* A 2xx identity answer into *out. */
static int answered_identity(const struct service_http_response *resp, struct service_client_identity *out,
                             struct service_client_result *res)
{
    int rc = service_response_identity((const char *)resp->body.data, resp->body.len, out);
    if (rc == ERR_MALFORMED && !(res->message = strdup("the hub's answer is not an identity")))
        rc = ERR_NOMEM;
    return rc;
}

int service_client_identity_create(struct service_client *c, const char *device_id, const char *module_id,
                                   const struct service_client_identity_spec *spec,
                                   struct service_client_identity *out, struct service_client_result *res)
{
    char why[256] = "";
    char *body = NULL;
    struct service_http_response resp;
    service_http_response_init(&resp);
    memset(res, 0, sizeof *res);
    memset(out, 0, sizeof *out);
    struct call call = {"PUT", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 0, {NULL, NULL}};
    int rc = service_request_identity_body(device_id, module_id, spec, &body, why, sizeof why);
    if (rc) {
        rc = rc == ERR_INVALID ? invalid(res, why) : rc;
        goto out;
    }
    call.path = service_request_identity_path(device_id, module_id);
    call.body = body;
    rc = run(c, &call, &resp, res);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED)
        rc = answered_identity(&resp, out, res);
out:
    free(body);
    free(call.path);
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_identity_get(struct service_client *c, const char *device_id, const char *module_id,
                                struct service_client_identity *out, struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    memset(res, 0, sizeof *res);
    memset(out, 0, sizeof *out);
    struct call call = {"GET", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = check_ids(device_id, module_id, res);
    if (rc)
        goto out;
    call.path = service_request_identity_path(device_id, module_id);
    rc = run(c, &call, &resp, res);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED)
        rc = answered_identity(&resp, out, res);
out:
    free(call.path);
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_identity_delete(struct service_client *c, const char *device_id, const char *module_id,
                                   struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    memset(res, 0, sizeof *res);
    struct call call = {"DELETE", NULL, NULL, "\"*\"", CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = check_ids(device_id, module_id, res);
    if (!rc) {
        call.path = service_request_identity_path(device_id, module_id);
        rc = run(c, &call, &resp, res);
    }
    free(call.path);
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_identity_list(struct service_client *c, const char *device_id, int top,
                                 struct service_client_identity **ids, size_t *n, struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    memset(res, 0, sizeof *res);
    *ids = NULL;
    *n = 0;
    struct call call = {"GET", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = device_id ? check_ids(device_id, NULL, res) : ERR_OK;
    if (rc)
        goto out;
    call.path = service_request_list_path(device_id, top);
    rc = run(c, &call, &resp, res);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED) {
        rc = service_response_identity_list((const char *)resp.body.data, resp.body.len, ids, n);
        if (rc == ERR_MALFORMED && !(res->message = strdup("the hub's answer is not a list of identities")))
            rc = ERR_NOMEM;
    }
out:
    free(call.path);
    service_http_response_cleanup(&resp);
    return rc;
}

/* ---- twins and queries ---- */

/* A 2xx answer that must be a JSON object (a twin): its text into *out. */
static int answered_object(const struct service_http_response *resp, char **out, struct service_client_result *res)
{
    json_t *j = json_loadb((const char *)resp->body.data, resp->body.len, 0, NULL);
    int rc = json_is_object(j) ? ERR_OK : ERR_MALFORMED;
    json_decref(j);
    if (rc == ERR_MALFORMED)
        return (res->message = strdup("the hub's answer is not a twin")) ? ERR_MALFORMED : ERR_NOMEM;
    *out = strndup((const char *)resp->body.data, resp->body.len);
    return *out ? ERR_OK : ERR_NOMEM;
}

/* Sends call (path made here) to the twin of device_id[/module_id] unless rc, the caller's checks, failed; a
 * 2xx twin goes into *twin. */
static int twin_call(struct service_client *c, struct call *call, const char *device_id, const char *module_id,
                     int rc, char **twin, struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    if (!rc) {
        call->path = service_request_twin_path(device_id, module_id);
        rc = run(c, call, &resp, res);
    }
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED)
        rc = answered_object(&resp, twin, res);
    free(call->path);
    call->path = NULL;
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_twin_get(struct service_client *c, const char *device_id, const char *module_id, char **twin,
                            struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *twin = NULL;
    struct call call = {"GET", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = check_ids(device_id, module_id, res);
    return twin_call(c, &call, device_id, module_id, rc, twin, res);
}

int service_client_twin_update(struct service_client *c, const char *device_id, const char *module_id,
                               const char *patch, int replace, const char *etag, char **twin,
                               struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *twin = NULL;
    char if_match[256];
    if (etag && etag[0] == '"')
        snprintf(if_match, sizeof if_match, "%s", etag);
    else
        snprintf(if_match, sizeof if_match, "\"%s\"", etag ? etag : "*");
    struct call call = {replace ? "PUT" : "PATCH", NULL, patch, if_match, CLIENT_REGISTRY_TIMEOUT_MS, 0, {NULL, NULL}};
    int rc = check_ids(device_id, module_id, res);
    json_t *j = rc ? NULL : json_loads(patch ? patch : "", 0, NULL);
    if (!rc && !json_is_object(j))
        rc = invalid(res, "the twin patch is not a JSON object");
    json_decref(j);
    return twin_call(c, &call, device_id, module_id, rc, twin, res);
}

/* Adds the paging headers (x-ms-max-item-count, x-ms-continuation) to call; *cont_hdr is malloc'd. */
static int paging_headers(struct call *call, int page_size, const char *continuation, char page_hdr[64],
                          char **cont_hdr)
{
    size_t n = 0;
    *cont_hdr = NULL;
    if (page_size > 0) {
        snprintf(page_hdr, 64, "x-ms-max-item-count: %d", page_size);
        call->extra[n++] = page_hdr;
    }
    if (!continuation || !*continuation)
        return ERR_OK;
    struct buf h; /* sent back whole, however long */
    buf_init(&h, SERVICE_HTTP_MAX_BODY);
    int rc = buf_printf(&h, "x-ms-continuation: %s", continuation);
    *cont_hdr = rc ? NULL : buf_take_str(&h);
    buf_cleanup(&h);
    if (!rc && !*cont_hdr)
        rc = ERR_NOMEM;
    call->extra[n] = *cont_hdr;
    return rc;
}

/* Runs a paged call whose 2xx answer is a JSON array: the page into *rows, the next continuation into *next. */
static int run_page(struct service_client *c, struct call *call, char **rows, char **next,
                    struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    int rc = run(c, call, &resp, res);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED) {
        json_t *j = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL);
        if (!json_is_array(j))
            rc = (res->message = strdup("the hub's answer is not a list of rows")) ? ERR_MALFORMED : ERR_NOMEM;
        json_decref(j);
        if (!rc && !(*rows = strndup((const char *)resp.body.data, resp.body.len)))
            rc = ERR_NOMEM;
        if (!rc && resp.continuation) {
            *next = resp.continuation; /* taken */
            resp.continuation = NULL;
        }
    }
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_query(struct service_client *c, const char *sql, int page_size, const char *continuation,
                         char **rows, char **next, struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *rows = *next = NULL;
    char why[128] = "", page_hdr[64];
    char *body = NULL, *cont_hdr = NULL;
    struct call call = {"POST", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = paging_headers(&call, page_size, continuation, page_hdr, &cont_hdr);
    if (rc)
        goto out;
    rc = service_request_query_body(sql, &body, why, sizeof why);
    if (rc) {
        rc = rc == ERR_INVALID ? invalid(res, why) : rc;
        goto out;
    }
    call.body = body;
    call.path = service_request_query_path();
    rc = run_page(c, &call, rows, next, res);
out:
    free(cont_hdr);
    free(body);
    free(call.path);
    return rc;
}

/* ---- jobs ---- */

/* Runs call (path made by the caller) and puts a 2xx JSON object into *job. */
static int job_call(struct service_client *c, struct call *call, char **job, struct service_client_result *res)
{
    struct service_http_response resp;
    service_http_response_init(&resp);
    int rc = run(c, call, &resp, res);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED) {
        json_t *j = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL);
        if (!json_is_object(j))
            rc = (res->message = strdup("the hub's answer is not a job")) ? ERR_MALFORMED : ERR_NOMEM;
        json_decref(j);
        if (!rc && !(*job = strndup((const char *)resp.body.data, resp.body.len)))
            rc = ERR_NOMEM;
    }
    free(call->path);
    call->path = NULL;
    service_http_response_cleanup(&resp);
    return rc;
}

int service_client_job_schedule(struct service_client *c, const struct service_client_job_spec *spec, char **job,
                                struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *job = NULL;
    char why[256] = "";
    char *body = NULL;
    /* Not retried after a broken connection: a second PUT of a created job would answer 409. */
    struct call call = {"PUT", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 0, {NULL, NULL}};
    int rc = service_request_job_body(spec, &body, why, sizeof why);
    if (rc)
        return rc == ERR_INVALID ? invalid(res, why) : rc;
    call.body = body;
    call.path = service_request_job_path(spec->job_id, "");
    rc = job_call(c, &call, job, res);
    free(body);
    return rc;
}

static int job_by_id(struct service_client *c, const char *verb, const char *job_id, const char *tail, char **job,
                     struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *job = NULL;
    if (!job_id || !*job_id)
        return invalid(res, "the job id is empty");
    struct call call = {verb, service_request_job_path(job_id, tail), NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1,
                        {NULL, NULL}};
    return job_call(c, &call, job, res);
}

int service_client_job_get(struct service_client *c, const char *job_id, char **job,
                           struct service_client_result *res)
{
    return job_by_id(c, "GET", job_id, "", job, res);
}

int service_client_job_cancel(struct service_client *c, const char *job_id, char **job,
                              struct service_client_result *res)
{
    return job_by_id(c, "POST", job_id, "/cancel", job, res); /* cancelling twice is harmless: retried */
}

int service_client_job_query(struct service_client *c, const char *job_type, const char *job_status, int page_size,
                             const char *continuation, char **rows, char **next, struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    *rows = *next = NULL;
    char page_hdr[64];
    char *cont_hdr = NULL;
    struct call call = {"GET", NULL, NULL, NULL, CLIENT_REGISTRY_TIMEOUT_MS, 1, {NULL, NULL}};
    int rc = paging_headers(&call, page_size, continuation, page_hdr, &cont_hdr);
    if (!rc) {
        call.path = service_request_job_query_path(job_type, job_status);
        rc = run_page(c, &call, rows, next, res);
    }
    free(cont_hdr);
    free(call.path);
    return rc;
}

/* ---- connection strings and tokens ---- */

char *service_client_connection_string(const struct service_client *c, const struct service_client_identity *id)
{
    if (!id || !id->device_id || !id->primary_key || !*id->primary_key)
        return NULL;
    struct connstr cs = {0};
    cs.kind = id->module_id ? CONNSTR_MODULE : CONNSTR_DEVICE;
    cs.host_name = c->cs.host_name;
    cs.device_id = id->device_id;
    cs.module_id = id->module_id;
    cs.key = id->primary_key;
    return connstr_format(&cs);
}

int service_client_sas(const char *resource_uri, const char *key_b64, const char *key_name, uint64_t ttl_s,
                       char **out)
{
    *out = NULL;
    if (!resource_uri || !*resource_uri || !key_b64 || !*key_b64 || ttl_s == 0 || ttl_s > UINT32_MAX)
        return ERR_INVALID;
    uint64_t expiry = (uint64_t)time(NULL) + ttl_s;
    return sas_build(resource_uri, key_b64, expiry, key_name && *key_name ? key_name : NULL, out);
}

/* ---- cloud-to-device messages (AMQP) ---- */

#define CLIENT_C2D_TIMEOUT_S 60

int service_client_send_c2d(struct service_client *c, const struct service_client_c2d *m,
                            void (*on_accepted)(void *ctx, const char *message_id),
                            void (*on_feedback)(void *ctx, const char *record_json), void *ctx, char *message_id_out, size_t message_id_len, struct service_client_result *res)
{
    memset(res, 0, sizeof *res);
    char host[256], port[8], mid[C2D_ID_MAX + 1];
    int tls;
    if (!m->device_id || !*m->device_id)
        return invalid(res, "no device id");
    if (service_request_amqp_endpoint(m->amqp_url, c->cs.host_name, host, sizeof host, port, sizeof port, &tls))
        return invalid(res, "the AMQP URL must be amqps://HOST[:PORT] (or amqp://HOST[:PORT] for the "
                            "emulator's development port)");
    if (m->message_id && (!*m->message_id || strlen(m->message_id) > C2D_ID_MAX))
        return invalid(res, "the message id must be 1 to 128 characters");
    if (m->message_id) {
        memcpy(mid, m->message_id, strlen(m->message_id) + 1);
    } else if (new_request_id(mid)) {
        return ERR_NOMEM;
    }
    if (message_id_out && message_id_len)
        snprintf(message_id_out, message_id_len, "%s", mid);
    /* The hub name is the first label of HostName: {policy}@sas.root.{hub}, with a policy token as password. */
    const char *dot = strchr(c->cs.host_name, '.');
    int hub_len = dot ? (int)(dot - c->cs.host_name) : (int)strlen(c->cs.host_name);
    char user[512];
    snprintf(user, sizeof user, "%s@sas.root.%.*s", c->cs.key_name, hub_len, c->cs.host_name);
    int timeout_s = m->timeout_s > 0 ? m->timeout_s : CLIENT_C2D_TIMEOUT_S;
    char *token = NULL, *enc = url_encode(m->device_id, strlen(m->device_id));
    struct buf to;
    buf_init(&to, 4096);
    int rc = enc ? buf_printf(&to, "/devices/%s/messages/devicebound", enc) : ERR_NOMEM;
    rc = rc ? rc : buf_append_byte(&to, 0);
    uint64_t expiry = (uint64_t)time(NULL) + (uint64_t)timeout_s + CLIENT_TOKEN_TTL_S;
    rc = rc ? rc : sas_build(c->cs.host_name, c->cs.key, expiry, c->cs.key_name, &token);
    if (!rc) {
        struct service_amqp_target t = {.host = host, .port = port, .tls = tls, .ca_file = c->ca_file,
                                        .user = user, .password = token, .timeout_ms = timeout_s * 1000};
        struct service_amqp_c2d am = {.to = (const char *)to.data, .message_id = mid, .ack = m->ack,
                                      .keys = m->keys, .values = m->values, .n_props = m->n_props,
                                      .body = (const uint8_t *)m->body, .body_len = m->body_len,
                                      .wait_feedback = m->wait_feedback};
        if (m->expiry_s > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            am.expiry_ms = ((int64_t)ts.tv_sec + m->expiry_s) * 1000 + ts.tv_nsec / 1000000;
        }
        struct service_amqp_events ev = {.accepted = on_accepted, .feedback = on_feedback, .ctx = ctx};
        rc = service_amqp_send_c2d(&t, &am, &ev, res);
    }
    free(token);
    free(enc);
    buf_cleanup(&to);
    return rc;
}
