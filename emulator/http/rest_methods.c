/* rest_methods.c -- POST /twins/{id}[/modules/{mid}]/methods (rest_internal.h): validates the call
 * (restapi_method_parse), meters it (--throttle), starts it in the hub and suspends the request until the
 * device answers, times out or goes away; then renders the result or the hub's Envelope B error, with one
 * log line per call. Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"

/* Copies text for a log line, replacing anything but printable ASCII with '?'. */
static void printable(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen; i++)
        out[i] = in[i] > 0x20 && in[i] < 0x7f ? in[i] : '?';
    out[i] = '\0';
}

void rest_log_call(const struct rest_req *q, const char *outcome, int code)
{
    if (log_get_level() < LOG_LEVEL_INFO)
        return; /* nothing to format */
    char dev[REGISTRY_MAX_ID + 1], mod[REGISTRY_MAX_ID + 1], name[128];
    printable(q->route.device_id, dev, sizeof dev);
    printable(q->route.module_id, mod, sizeof mod);
    printable(q->call.method_name ? q->call.method_name : "-", name, sizeof name);
    char num[16] = "";
    if (code != REST_LOG_NO_CODE)
        snprintf(num, sizeof num, " %d", code);
    log_info("method call %s%s%s %s: %s%s (%lld ms)", dev, mod[0] ? "/" : "", mod, name, outcome, num,
             (long long)(loop_now_ms(q->r->loop) - q->started_ms));
}

static void answer_call_error(struct rest_req *q, int code, enum restapi_info info, int timeout_s, const char *msg)
{
    struct restapi_error e;
    restapi_error_set(&e, code, RESTAPI_ENVELOPE_B, "%s", msg);
    e.info = info;
    e.timeout_s = timeout_s;
    rest_answer_error(q, &e);
}

void rest_call_failed(struct rest_req *q, int code, const char *msg)
{
    answer_call_error(q, code, RESTAPI_INFO_EMPTY, 0, msg);
    rest_log_call(q, q->ans.errorcode, (int)q->ans.status);
}

static void answer_call_result(struct rest_req *q, const struct hub_call_result *res)
{
    size_t len = 0;
    char *body;
    switch (res->outcome) {
    case HUB_CALL_ANSWERED:
        if (q->front && rest_front_send_result(q, res->status, res->payload, res->payload_len)) {
            rest_log_call(q, "answered, device status", res->status);
            return;
        }
        body = restapi_method_result(res->status, res->payload, res->payload_len, &len);
        if (body)
            rest_answer_set(q, MHD_HTTP_OK, body, len, REST_JSON);
        else
            answer_call_error(q, RESTAPI_SERVER_ERROR, RESTAPI_INFO_EMPTY, 0, "Out of memory.");
        rest_log_call(q, "answered, device status", res->status);
        return;
    case HUB_CALL_NOT_FOUND:
        rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
        break;
    case HUB_CALL_NOT_ONLINE:
        answer_call_error(q, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_INFO_TIMEOUT, res->connect_timeout_s,
                          "Timed out waiting for device to connect.");
        break;
    case HUB_CALL_TIMEOUT:
        answer_call_error(q, RESTAPI_GATEWAY_TIMEOUT, RESTAPI_INFO_EMPTY, 0,
                          "Timed out waiting for the response from device.");
        break;
    case HUB_CALL_DISCONNECTED:
        answer_call_error(q, RESTAPI_DEVICE_NOT_ONLINE, RESTAPI_INFO_EMPTY, 0,
                          "The operation failed because the requested device isn't online or hasn't registered "
                          "the direct method callback.");
        break;
    default:
        answer_call_error(q, RESTAPI_SERVICE_UNAVAILABLE, RESTAPI_INFO_EMPTY, 0, "The emulator is shutting down.");
        break;
    }
    rest_log_call(q, q->ans.errorcode, (int)q->ans.status);
}

static void on_hub_result(void *ctx, const struct hub_call_result *res)
{
    struct rest_req *q = ctx;
    q->call_id = 0;
    answer_call_result(q, res);
    rest_resume(q);
}

void rest_route_method(struct rest_req *q)
{
    struct rest *r = q->r;
    struct restapi_error e;
    if (!rest_service_prelude(q, AUTH_SERVICE_CONNECT))
        return;
    if (!rest_body_fits(q, RESTAPI_ENVELOPE_B)) {
        rest_log_call(q, "rejected", RESTAPI_MESSAGE_TOO_LARGE);
        return;
    }
    int rc = restapi_method_parse((const char *)q->body.data, q->body.len, &q->call, &e);
    if (rc != ERR_OK) {
        if (rc == ERR_INVALID)
            rest_answer_error(q, &e);
        else
            rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_B, "Out of memory.");
        rest_log_call(q, "rejected", rc == ERR_INVALID ? e.code : RESTAPI_SERVER_ERROR);
        return;
    }
    int retry = 0; /* --throttle: direct methods are metered in 4 KB blocks of payload */
    if (!faults_throttle_take(r->faults, FAULTS_OP_METHOD, (unsigned)(q->call.payload_len / 4096 + 1), &retry)) {
        rest_answer_throttled(q, RESTAPI_ENVELOPE_B, retry);
        rest_log_call(q, "throttled", RESTAPI_THROTTLED);
        return;
    }
    struct hub_call_request req = {
        .device_id = q->route.device_id,
        .module_id = q->route.module_id,
        .method_name = q->call.method_name,
        .payload = q->call.payload,
        .payload_len = q->call.payload_len,
        .response_timeout_s = q->call.response_timeout_s,
        .connect_timeout_s = q->call.connect_timeout_s,
    };
    struct hub_call_result now;
    memset(&now, 0, sizeof now);
    uint64_t id = hub_call_start(r->hub, &req, on_hub_result, q, &now);
    if (id == 0) {
        answer_call_result(q, &now);
        return;
    }
    q->call_id = id;
    rest_suspend(q);
}
