/* rest_twins.c -- the twin routes and the query language over REST (rest_internal.h): GET/PATCH/PUT
 * /twins/{id}[/modules/{mid}] through the hub's twins (hub_twin_get / hub_twin_update), and POST
 * /devices/query, paged, over devices, devices.modules or devices.jobs (query.h evaluates; jobs.h holds the
 * job rows). Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "c2d.h"
#include "err.h"
#include "hub.h"
#include "jobs.h"
#include "log.h"
#include "query.h"
#include "twin.h"

static void answer_twin(struct rest_req *q, json_t *doc, const char *etag)
{
    rest_answer_json(q, MHD_HTTP_OK, doc, NULL);
    if (q->ans.status == MHD_HTTP_OK)
        snprintf(q->ans.etag, sizeof q->ans.etag, "%s", etag);
}

static void twin_update_route(struct rest_req *q, enum twin_mode mode)
{
    const struct restapi_route *rt = &q->route;
    if (!rest_service_prelude_any(q, AUTH_SERVICE_CONNECT, AUTH_REGISTRY_WRITE))
        return;
    json_t *body = rest_body_json(q, true, true);
    if (!body)
        return;
    struct hub_twin_update u = {
        .device_id = rt->device_id,
        .module_id = rt->module_id,
        .body = body,
        .mode = mode,
        .if_match = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH),
    };
    json_t *doc = NULL;
    char etag[40] = "";
    struct twin_error e = {0, ""};
    int rc = hub_twin_update(q->r->hub, &u, &doc, etag, sizeof etag, &e);
    json_decref(body);
    switch (rc) {
    case ERR_OK:
        answer_twin(q, doc, etag);
        log_info("twin: %s %s%s%s", mode == TWIN_MERGE ? "patched" : "replaced", rt->device_id,
                 rt->module_id ? "/" : "", rt->module_id ? rt->module_id : "");
        return;
    case ERR_NOT_FOUND:
        rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    case ERR_PRECONDITION:
        rest_answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                           "Precondition failed: the If-Match etag does not match the twin's etag.");
        return;
    case ERR_INVALID:
        rest_answer_errorf(q, e.code, RESTAPI_ENVELOPE_A, "%s", e.message);
        return;
    default:
        rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Internal error: %s.", err_str(rc));
        return;
    }
}

void rest_route_twin(struct rest_req *q)
{
    const struct restapi_route *rt = &q->route;
    if (strcmp(q->method, "PATCH") == 0) {
        twin_update_route(q, TWIN_MERGE);
        return;
    }
    if (strcmp(q->method, "PUT") == 0) {
        twin_update_route(q, TWIN_REPLACE);
        return;
    }
    if (!rest_service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    json_t *doc = NULL;
    char etag[40] = "";
    int rc = hub_twin_get(q->r->hub, rt->device_id, rt->module_id, &doc, etag, sizeof etag);
    if (rc == ERR_NOT_FOUND)
        rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
    else if (rc != ERR_OK)
        rest_answer_nomem(q);
    else {
        if (q->r->c2d && !rt->module_id) /* the queue lives in the C2D module, not in the twin */
            json_object_set_new(doc, "cloudToDeviceMessageCount",
                                json_integer((json_int_t)c2d_count(q->r->c2d, rt->device_id, c2d_wall_ms())));
        answer_twin(q, doc, etag);
    }
}

/* ---- query ---- */

/* One query's evaluation over the twins: the rows from the first one up to `want` (non-aggregate queries stop
 * there), or the accumulator of an aggregate query. */
struct query_run {
    const struct query *query;
    json_t *rows;
    struct query_agg *agg;
    size_t want; /* rows needed: offset + page + 1 (one more says whether another page follows) */
    int rc;
};

static bool query_row(void *ctx, const json_t *doc)
{
    struct query_run *run = ctx;
    if (!query_match(run->query, doc))
        return true;
    if (run->agg) {
        run->rc = query_agg_add(run->agg, doc);
        return run->rc == ERR_OK;
    }
    json_t *row = query_project(run->query, doc);
    if (!row || json_array_append_new(run->rows, row)) {
        run->rc = ERR_NOMEM;
        return false;
    }
    return json_array_size(run->rows) < run->want;
}

/* The query's rows, at most want of them (all of an aggregate's). NULL with *rc set on failure. */
static json_t *query_rows(struct rest *r, const struct query *query, size_t want, int *rc)
{
    struct query_run run = {.query = query, .want = want, .rc = ERR_OK};
    long top = query_top(query);
    if (top >= 0 && (size_t)top < run.want)
        run.want = (size_t)top;
    run.rows = json_array();
    if (query_is_aggregate(query))
        run.agg = query_agg_new(query);
    if (!run.rows || (query_is_aggregate(query) && !run.agg)) {
        run.rc = ERR_NOMEM;
    } else if (run.want > 0 && query_source(query) == QUERY_JOBS) {
        if (r->jobs)
            jobs_each_device(r->jobs, query_row, &run);
    } else if (run.want > 0) {
        int each = hub_twin_each(r->hub, query_source(query) == QUERY_MODULES, query_row, &run);
        if (run.rc == ERR_OK)
            run.rc = each;
    }
    if (run.rc == ERR_OK && run.agg) {
        json_decref(run.rows);
        run.rows = query_agg_result(run.agg);
        if (!run.rows)
            run.rc = ERR_NOMEM;
        else if (top >= 0 && json_array_size(run.rows) > (size_t)top)
            while (json_array_size(run.rows) > (size_t)top)
                json_array_remove(run.rows, json_array_size(run.rows) - 1);
    }
    query_agg_free(run.agg);
    *rc = run.rc;
    if (run.rc) {
        json_decref(run.rows);
        return NULL;
    }
    return run.rows;
}

/* Parses and runs the query text; answers one page of it (or the error). */
static void run_query(struct rest_req *q, const char *text, int page, size_t offset)
{
    struct query *query = NULL;
    struct query_error qe;
    memset(&qe, 0, sizeof qe);
    int rc = query_parse(text, strlen(text), &query, &qe);
    if (rc == ERR_MALFORMED || rc == ERR_TOO_BIG) {
        rest_answer_errorf(q, QUERY_HUB_ERROR_CODE, RESTAPI_ENVELOPE_A, "%s", qe.message);
    } else if (rc != ERR_OK) {
        rest_answer_errorf(q, rc == ERR_INVALID ? RESTAPI_ARGUMENT_INVALID : RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A,
                           "The query could not be run.");
    } else {
        json_t *rows = query_rows(q->r, query, offset + (size_t)page + 1, &rc);
        if (!rows)
            rest_answer_errorf(q, rc == ERR_TOO_BIG ? RESTAPI_ARGUMENT_INVALID : RESTAPI_SERVER_ERROR,
                               RESTAPI_ENVELOPE_A, "%s",
                               rc == ERR_TOO_BIG ? "The query has too many groups." : "Out of memory.");
        else
            rest_answer_page(q, rows, offset, page, query_item_type(query));
    }
    query_free(query);
}

/* POST /devices/query: {"query":"SELECT ..."}; a page of x-ms-max-item-count rows from x-ms-continuation on.
 * The continuation is the offset of the next row; it is left out on the last page (the Node SDK pages while it
 * is present). Each page evaluates the query again over the current twins. */
void rest_route_query(struct rest_req *q)
{
    if (!rest_service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    json_t *body = rest_body_json(q, true, true);
    if (!body)
        return;
    const char *text = json_string_value(json_object_get(body, "query"));
    int page = 0;
    size_t offset = 0;
    if (!text)
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "The body needs a \"query\" string.");
    else if (rest_page_args(q, &page, &offset))
        run_query(q, text, page, offset);
    json_decref(body);
}
