/* rest_answer.c -- building and queueing a REST answer (rest_internal.h): the hub's error envelopes with
 * tracking ids, JSON documents with ETags, throttling with Retry-After, query pages with x-ms-continuation;
 * and the request-side helpers every route group uses (body caps, the JSON body, ?top=, page headers).
 * Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "log.h"
#include "loop.h"
#include "registry.h"

static void tracking_id(char out[33])
{
    static uint64_t counter;
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        memset(raw, 0, sizeof raw);
        memcpy(raw, &(uint64_t){++counter}, sizeof counter);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

void rest_answer_clear(struct rest_answer *a)
{
    free(a->body);
    json_decref(a->headers);
    memset(a, 0, sizeof *a);
}

void rest_answer_set(struct rest_req *q, unsigned status, char *body, size_t len, const char *ctype)
{
    rest_answer_clear(&q->ans);
    q->ans.status = status;
    q->ans.body = body;
    q->ans.len = len;
    q->ans.ctype = ctype;
    q->answered = true;
}

void rest_answer_empty(struct rest_req *q)
{
    rest_answer_set(q, MHD_HTTP_NO_CONTENT, NULL, 0, NULL);
}

char *rest_error_text(const struct restapi_error *e)
{
    char track[33];
    struct timespec now;
    tracking_id(track);
    clock_gettime(CLOCK_REALTIME, &now);
    return restapi_error_render(e, track, &now);
}

void rest_answer_error(struct rest_req *q, const struct restapi_error *e)
{
    char *body = rest_error_text(e);
    rest_answer_set(q, body ? (unsigned)(e->code / 1000) : 500, body, body ? strlen(body) : 0, REST_JSON);
    q->ans.errorcode = restapi_code_name(e->code);
}

void rest_answer_errorf(struct rest_req *q, int code, enum restapi_envelope env, const char *fmt, ...)
{
    struct restapi_error e;
    va_list ap;
    va_start(ap, fmt);
    restapi_error_vset(&e, code, env, fmt, ap);
    va_end(ap);
    rest_answer_error(q, &e);
}

void rest_answer_nomem(struct rest_req *q)
{
    rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Out of memory.");
}

void rest_answer_json(struct rest_req *q, unsigned status, json_t *j, const struct identity *etag_of)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        rest_answer_nomem(q);
        return;
    }
    rest_answer_set(q, status, text, strlen(text), REST_JSON);
    if (etag_of)
        registry_etag(etag_of, q->ans.etag, sizeof q->ans.etag);
}

void rest_answer_throttled(struct rest_req *q, enum restapi_envelope env, int retry_after_s)
{
    rest_answer_errorf(q, RESTAPI_THROTTLED, env, "Request is throttled, retry after %d seconds.", retry_after_s);
    q->ans.retry_after_s = retry_after_s;
}

void rest_answer_not_found(struct rest_req *q, enum restapi_envelope env)
{
    const struct restapi_route *rt = &q->route;
    if (rt->module_id && registry_find(q->r->reg, rt->device_id, NULL))
        rest_answer_errorf(q, RESTAPI_MODULE_NOT_FOUND, env, "%s/%s", rt->device_id, rt->module_id);
    else
        rest_answer_errorf(q, RESTAPI_DEVICE_NOT_FOUND, env, "%s", rt->device_id ? rt->device_id : "");
}

bool rest_device_exists(struct rest_req *q)
{
    if (registry_find(q->r->reg, q->route.device_id, NULL))
        return true;
    rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
    return false;
}

/* Calls fn with each header of answer a, in the order MHD's path and the front's both write them; stops at the
 * first non-zero return and returns it. One list, so the two ways out cannot drift apart. */
static int each_header(const struct rest_answer *a, int (*fn)(void *ctx, const char *name, const char *value),
                       void *ctx)
{
    char retry[24];
    int rc = 0;
    if (!rc && a->ctype)
        rc = fn(ctx, MHD_HTTP_HEADER_CONTENT_TYPE, a->ctype);
    if (!rc && a->errorcode)
        rc = fn(ctx, "iothub-errorcode", a->errorcode);
    if (!rc && a->etag[0])
        rc = fn(ctx, MHD_HTTP_HEADER_ETAG, a->etag);
    if (!rc && a->allow)
        rc = fn(ctx, MHD_HTTP_HEADER_ALLOW, a->allow);
    if (!rc && a->retry_after_s > 0) {
        retry[buf_format_int(retry, a->retry_after_s)] = '\0';
        rc = fn(ctx, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
    if (!rc && a->continuation[0])
        rc = fn(ctx, "x-ms-continuation", a->continuation);
    if (!rc && a->item_type)
        rc = fn(ctx, "x-ms-item-type", a->item_type);
    const char *hname;
    json_t *hval;
    json_object_foreach(a->headers, hname, hval)
    {
        if (!rc)
            rc = fn(ctx, hname, json_string_value(hval));
    }
    return rc;
}

static int add_mhd_header(void *ctx, const char *name, const char *value)
{
    return MHD_add_response_header(ctx, name, value) == MHD_YES ? 0 : ERR_NOMEM;
}

enum MHD_Result rest_queue_answer(struct rest_req *q)
{
    struct rest_answer *a = &q->ans;
    struct MHD_Response *resp = a->len ? MHD_create_response_from_buffer(a->len, a->body, MHD_RESPMEM_MUST_FREE)
                                       : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (a->len)
        a->body = NULL; /* now MHD's */
    if (each_header(a, add_mhd_header, resp)) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(q->conn, a->status, resp);
    MHD_destroy_response(resp);
    log_debug("http %s %.200s -> %u (%lld ms)", q->method, q->uri, a->status,
              (long long)(loop_now_ms(q->r->loop) - q->started_ms));
    return ret;
}

/* The Date header's value (RFC 9110 IMF-fixdate), remade once a second. */
static const char *http_date(struct rest *r)
{
    time_t now = time(NULL);
    if (now != r->date_s) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(r->date, sizeof r->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        r->date_s = now;
    }
    return r->date;
}

/* "Name: value" CRLF. */
static int add_header(void *out, const char *name, const char *value)
{
    int rc = buf_append_str(out, name);
    if (!rc)
        rc = buf_append(out, ": ", 2);
    if (!rc)
        rc = buf_append_str(out, value);
    return rc ? rc : buf_append(out, "\r\n", 2);
}

int rest_answer_head(struct rest *r, const struct rest_answer *a, bool close, struct buf *out)
{
    /* Appends, not one printf per line: formatting was a fifth of a 16-byte call through the front. */
    const char *reason = MHD_get_reason_phrase_for(a->status);
    int rc = buf_append(out, "HTTP/1.1 ", 9);
    if (!rc)
        rc = buf_append_int(out, a->status);
    if (!rc)
        rc = buf_append_byte(out, ' ');
    if (!rc)
        rc = buf_append_str(out, reason ? reason : "");
    if (!rc)
        rc = buf_append(out, "\r\n", 2);
    if (!rc)
        rc = add_header(out, "Date", http_date(r));
    if (!rc)
        rc = each_header(a, add_header, out);
    if (!rc && close)
        rc = add_header(out, "Connection", "close");
    bool no_body = a->status < 200 || a->status == 204 || a->status == 304; /* no Content-Length (RFC 9110) */
    if (!rc && !no_body)
        rc = buf_append(out, "Content-Length: ", 16);
    if (!rc && !no_body)
        rc = buf_append_int(out, (long long)a->len);
    if (!rc && !no_body)
        rc = buf_append(out, "\r\n", 2);
    return rc ? rc : buf_append(out, "\r\n", 2);
}

/* ---- request helpers ---- */

bool rest_body_fits(struct rest_req *q, enum restapi_envelope env)
{
    if (q->body_seen <= q->body_cap)
        return true;
    rest_answer_errorf(q, RESTAPI_MESSAGE_TOO_LARGE, env, "The request body is over %zu bytes.", q->body_cap);
    return false;
}

json_t *rest_body_json(struct rest_req *q, bool want_object, bool strict)
{
    if (!rest_body_fits(q, RESTAPI_ENVELOPE_A))
        return NULL;
    json_t *body = json_loadb(q->body.len ? (const char *)q->body.data : "", q->body.len,
                              strict ? JSON_REJECT_DUPLICATES : 0, NULL);
    if (!body || (want_object && !json_is_object(body))) {
        json_decref(body);
        rest_answer_errorf(q, RESTAPI_FORMAT_ERROR, RESTAPI_ENVELOPE_A, "The request body is not %s.",
                           want_object ? "a JSON object" : "JSON");
        return NULL;
    }
    return body;
}

bool rest_top_valid(struct rest_req *q)
{
    if (!q->route.top_invalid)
        return true;
    rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "top must be an integer within [1; %d].",
                       RESTAPI_TOP_MAX);
    return false;
}

bool rest_page_args(struct rest_req *q, int *page, size_t *offset)
{
    const char *hdr_page = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-max-item-count");
    const char *hdr_cont = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "x-ms-continuation");
    if (restapi_page_size(hdr_page, page) != ERR_OK) {
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A,
                           "x-ms-max-item-count must be a positive integer.");
        return false;
    }
    if (restapi_continuation(hdr_cont, offset) != ERR_OK) {
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "Invalid x-ms-continuation token.");
        return false;
    }
    return true;
}

void rest_answer_page(struct rest_req *q, json_t *rows, size_t offset, int page, const char *item_type)
{
    size_t total = json_array_size(rows), end = offset + (size_t)page;
    json_t *out = json_array();
    for (size_t i = offset; out && i < total && i < end; i++)
        json_array_append(out, json_array_get(rows, i));
    json_decref(rows);
    rest_answer_json(q, MHD_HTTP_OK, out, NULL);
    if (total > end)
        snprintf(q->ans.continuation, sizeof q->ans.continuation, "%zu", end);
    q->ans.item_type = item_type;
}
