/* rest_emulator.c -- the emulator's own routes (rest_internal.h), without authorization like the dev aids
 * they are: GET /health, GET /emulator/ca.pem, GET/DELETE /emulator/telemetry, /emulator/consumergroups,
 * /emulator/faults (the last three refuse the browser requests of browser.h); and rest_faulted, which applies the
 * injected REST faults and the --throttle registry limit (faults.h) to the hub's own routes. Tests:
 * tests/unit/test_rest_http.c, tests/integration/test_emulator_browser.py. */
#include "rest_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "browser.h"
#include "err.h"
#include "eventlog.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "registry.h"
#include "telemetry.h"

#define REST_CA_MAX (1024u * 1024u)

void rest_route_health(struct rest_req *q)
{
    struct hub_stats st;
    memset(&st, 0, sizeof st);
    hub_get_stats(q->r->hub, &st);
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "status", "ok", "devices",
                          (json_int_t)registry_device_count(q->r->reg), "connections", (json_int_t)st.connections,
                          "methodListeners", (json_int_t)st.method_listeners, "desiredListeners",
                          (json_int_t)st.desired_listeners, "callsPending", (json_int_t)st.calls_pending,
                          "telemetryReceived", (json_int_t)(q->r->telemetry ? telemetry_total(q->r->telemetry) : 0));
    if (j && q->r->amqps_port > 0) /* the AMQP listeners, when there are any */
        json_object_set_new(j, "amqpsPort", json_integer(q->r->amqps_port));
    if (j && q->r->amqp_port > 0)
        json_object_set_new(j, "amqpPort", json_integer(q->r->amqp_port));
    rest_answer_json(q, MHD_HTTP_OK, j, NULL);
}

/* The browser rule (browser.h, README "Browsers and the /emulator routes") of the routes that read or change
 * state without authorization: a request with Origin, Sec-Fetch-* or a browser's User-Agent (browser_is_browser)
 * is a browser's, and is refused
 * 403 unless its Host is loopback, an IP literal or a --hostname (a DNS-rebinding page uses its own name) and
 * it is same-origin (a cross-site page can POST a text/plain form with no preflight). Requests with neither
 * header (curl, the SDKs, scripts in a compose network) and the dashboard's own page are unaffected. /health
 * and /emulator/ca.pem are left open: nothing secret, nothing changed. True when q was answered here. */
static bool browser_refused(struct rest_req *q)
{
    struct browser_headers h;
    char why[200];
    browser_headers_read(q->conn, &h);
    const char *reason =
        browser_refusal(&h, (const char *const *)q->r->host_names, q->r->n_host_names, why, sizeof why);
    if (!reason)
        return false;
    log_info("http %s %.200s: refused, a browser's request and %s", q->method, q->uri, reason);
    rest_answer_errorf(q, RESTAPI_FORBIDDEN, RESTAPI_ENVELOPE_A,
                       "A browser may call the emulator's unauthenticated routes only from the same origin, with a "
                       "Host of localhost, an IP address or a --hostname; this request comes from a browser (Origin, "
                       "Sec-Fetch-* or its User-Agent) and %s. Call it without them (curl, a script), or from the dashboard "
                       "opened at such an address.",
                       reason);
    return true;
}

/* GET /emulator/telemetry[/{deviceId}][?top=N]: the kept device-to-cloud messages, oldest first.
 * DELETE /emulator/telemetry forgets them. No authorization, like /health: a development aid. */
void rest_route_telemetry(struct rest_req *q)
{
    if (browser_refused(q))
        return;
    if (!q->r->telemetry) {
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No telemetry log.");
    } else if (strcmp(q->method, "DELETE") == 0) {
        if (q->route.device_id) {
            rest_answer_errorf(q, RESTAPI_METHOD_NOT_ALLOWED, RESTAPI_ENVELOPE_A,
                               "DELETE /emulator/telemetry clears every device's messages.");
            return;
        }
        telemetry_clear(q->r->telemetry);
        rest_answer_empty(q);
    } else if (rest_top_valid(q)) {
        rest_answer_json(q, MHD_HTTP_OK, telemetry_json(q->r->telemetry, q->route.device_id, (size_t)q->route.top),
                         NULL);
    }
}

/* /emulator/consumergroups[/{name}]: the Event Hub-compatible endpoint's consumer groups (the real hub
 * creates them through ARM). GET lists ["$Default",...]; PUT creates (201, or 200 when it exists); DELETE
 * removes (204; $Default cannot be deleted). No authorization, like /health. */
void rest_route_consumer_groups(struct rest_req *q)
{
    if (browser_refused(q))
        return;
    struct eventlog *log = q->r->telemetry ? telemetry_log(q->r->telemetry) : NULL;
    const char *name = q->route.device_id;
    if (!log) {
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No event log.");
    } else if (!name) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < eventlog_group_count(log); i++)
            json_array_append_new(arr, json_string(eventlog_group_at(log, i)));
        rest_answer_json(q, MHD_HTTP_OK, arr, NULL);
    } else if (strcmp(q->method, "PUT") == 0) {
        bool created = false;
        int rc = eventlog_group_add(log, name, &created);
        if (rc == ERR_INVALID)
            rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                               "A consumer group name is 1 to %d letters, digits, '.', '_' or '-'.",
                               EVENTLOG_MAX_GROUP_NAME);
        else if (rc == ERR_TOO_BIG)
            rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                               "At most %d consumer groups besides $Default.", EVENTLOG_MAX_GROUPS);
        else if (rc)
            rest_answer_nomem(q);
        else
            rest_answer_json(q, created ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                             json_pack("{s:s}", "name", eventlog_group_find(log, name)), NULL);
    } else if (strcmp(q->method, "DELETE") == 0) {
        int rc = eventlog_group_del(log, name);
        if (rc == ERR_INVALID)
            rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "$Default cannot be deleted.");
        else if (rc)
            rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No consumer group '%s'.", name);
        else
            rest_answer_empty(q);
    } else if (!eventlog_group_find(log, name)) {
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No consumer group '%s'.", name);
    } else {
        rest_answer_json(q, MHD_HTTP_OK, json_pack("{s:s}", "name", eventlog_group_find(log, name)), NULL);
    }
}

/* /emulator/faults (README "Testing failures"): GET lists the active faults, POST adds one (JSON), DELETE
 * clears them all or /emulator/faults/{id} one. No authorization, like the other /emulator routes. */
void rest_route_faults(struct rest_req *q)
{
    if (browser_refused(q))
        return;
    struct faults *f = q->r->faults;
    char *end = NULL;
    unsigned long long id = q->route.device_id ? strtoull(q->route.device_id, &end, 10) : 0;
    if (!f) {
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "Fault injection is not available.");
    } else if (q->route.device_id && (strcmp(q->method, "DELETE") != 0 || !end || *end || id == 0)) {
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A,
                           "Only DELETE /emulator/faults/{id} (a numeric id).");
    } else if (strcmp(q->method, "DELETE") == 0) {
        size_t n = faults_control_clear(f, id);
        if (id && n == 0)
            rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No active fault %llu.", id);
        else
            rest_answer_json(q, MHD_HTTP_OK, json_pack("{s:I}", "cleared", (json_int_t)n), NULL);
    } else if (strcmp(q->method, "GET") == 0) {
        rest_answer_json(q, MHD_HTTP_OK, faults_control_list(f), NULL);
    } else if (rest_body_fits(q, RESTAPI_ENVELOPE_A)) {
        char err[256] = "";
        json_t *made = NULL;
        int rc = faults_control_add(f, (const char *)q->body.data, q->body.len, &made, err, sizeof err);
        if (rc == ERR_OK)
            rest_answer_json(q, MHD_HTTP_CREATED, made, NULL);
        else if (rc == ERR_INVALID)
            rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", err);
        else
            rest_answer_nomem(q);
    }
}

/* Injected REST faults (POST /emulator/faults {"fault":"rest"}) and the --throttle registry limit, for the
 * hub's own routes. True when q was answered here. */
bool rest_faulted(struct rest_req *q)
{
    enum restapi_route_kind k = q->route.kind;
    enum restapi_envelope env = k == RESTAPI_ROUTE_METHOD ? RESTAPI_ENVELOPE_B : RESTAPI_ENVELOPE_A;
    char path[512];
    size_t n = strcspn(q->uri, "?");
    if (n >= sizeof path)
        n = sizeof path - 1;
    memcpy(path, q->uri, n);
    path[n] = '\0';
    int status = 0, retry = 0;
    if (faults_rest(q->r->faults, q->method, path, &status, &retry)) {
        if (status == 429)
            rest_answer_throttled(q, env, retry);
        else
            rest_answer_errorf(q, status == 500 ? RESTAPI_SERVER_ERROR : RESTAPI_SERVICE_UNAVAILABLE, env,
                               "%s (fault injection).",
                               status == 500 ? "Internal server error" : "Service unavailable");
        q->ans.retry_after_s = retry;
        return true;
    }
    bool registry = k == RESTAPI_ROUTE_DEVICES || k == RESTAPI_ROUTE_DEVICE || k == RESTAPI_ROUTE_MODULES ||
                    k == RESTAPI_ROUTE_MODULE;
    if (registry && !faults_throttle_take(q->r->faults, FAULTS_OP_REGISTRY, 1, &retry)) {
        log_info("http %s %.200s: throttled (identity registry operations)", q->method, q->uri);
        rest_answer_throttled(q, env, retry);
        return true;
    }
    return false;
}

/* Reads the CA file (at most REST_CA_MAX bytes). Returns malloc'd text or NULL. */
static char *read_ca(const char *path, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, REST_CA_MAX);
    char chunk[4096];
    size_t n;
    int rc = ERR_OK;
    while (rc == ERR_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(&b, chunk, n);
    bool failed = rc != ERR_OK || ferror(f);
    fclose(f);
    *len = b.len;
    char *text = failed ? NULL : buf_take_str(&b);
    buf_cleanup(&b);
    return text;
}

void rest_route_ca_pem(struct rest_req *q)
{
    size_t len = 0;
    char *pem = read_ca(q->r->ca_pem_path, &len);
    if (!pem || len == 0) {
        free(pem);
        rest_answer_errorf(q, RESTAPI_NOT_FOUND, RESTAPI_ENVELOPE_A, "No CA certificate is available.");
        return;
    }
    rest_answer_set(q, MHD_HTTP_OK, pem, len, "application/x-pem-file");
}
