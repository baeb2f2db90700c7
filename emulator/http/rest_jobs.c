/* rest_jobs.c -- the jobs routes (rest_internal.h): PUT/GET /jobs/v2/{jobId}, POST /jobs/v2/{jobId}/cancel
 * and GET /jobs/v2/query, paged. The jobs module (hub/jobs.h) schedules and runs them.
 * Tests: tests/unit/test_rest_http.c, tests/unit/test_jobs.c. */
#include "rest_internal.h"

#include <string.h>

#include "auth.h"
#include "err.h"
#include "jobs.h"

static void answer_job_missing(struct rest_req *q)
{
    rest_answer_errorf(q, RESTAPI_JOB_NOT_FOUND, RESTAPI_ENVELOPE_A, "The job %s does not exist.",
                       q->route.device_id ? q->route.device_id : "");
}

/* PUT /jobs/v2/{jobId} (create) and GET (read). The hub lets jobs through with RegistryWrite, or
 * ServiceConnect for method jobs (we take either for both, and RegistryRead for GET). */
void rest_route_job(struct rest_req *q)
{
    struct jobs *js = q->r->jobs;
    bool put = strcmp(q->method, "PUT") == 0;
    if (!rest_service_prelude_any(q, put ? AUTH_REGISTRY_WRITE : AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    if (!put) {
        json_t *doc = js ? jobs_get(js, q->route.device_id) : NULL;
        if (doc)
            rest_answer_json(q, MHD_HTTP_OK, doc, NULL);
        else
            answer_job_missing(q);
        return;
    }
    json_t *body = rest_body_json(q, true, true);
    if (!body)
        return;
    json_t *out = NULL;
    struct jobs_error e = {0, ""};
    int rc = js ? jobs_create(js, q->route.device_id, body, &out, &e) : ERR_NOMEM;
    json_decref(body);
    if (rc == ERR_OK)
        rest_answer_json(q, MHD_HTTP_OK, out, NULL);
    else if (rc == ERR_EXISTS)
        rest_answer_errorf(q, RESTAPI_JOB_EXISTS, RESTAPI_ENVELOPE_A, "%s", e.message);
    else if (rc == ERR_INVALID)
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", e.message);
    else
        rest_answer_nomem(q);
}

void rest_route_job_cancel(struct rest_req *q)
{
    if (!rest_service_prelude_any(q, AUTH_REGISTRY_WRITE, AUTH_SERVICE_CONNECT))
        return;
    json_t *out = NULL;
    int rc = q->r->jobs ? jobs_cancel(q->r->jobs, q->route.device_id, &out) : ERR_NOT_FOUND;
    if (rc == ERR_OK)
        rest_answer_json(q, MHD_HTTP_OK, out, NULL);
    else if (rc == ERR_NOT_FOUND)
        answer_job_missing(q);
    else
        rest_answer_nomem(q);
}

/* GET /jobs/v2/query?jobType=&jobStatus=: a page of JobResponses (x-ms-max-item-count rows from
 * x-ms-continuation on; the continuation header is left out on the last page). */
void rest_route_jobs_query(struct rest_req *q)
{
    int page = 0;
    size_t offset = 0;
    if (!rest_service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT) || !rest_page_args(q, &page, &offset))
        return;
    json_t *all = q->r->jobs ? jobs_list(q->r->jobs, q->route.job_type, q->route.job_status) : json_array();
    if (!all) {
        rest_answer_nomem(q);
        return;
    }
    rest_answer_page(q, all, offset, page, "jobResponse");
}
