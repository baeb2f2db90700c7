/* jobs.c -- IoT Hub jobs (see jobs.h): job records, the scheduler on loop timers, method jobs through
 * hub_call_start with a bounded number in flight, twin jobs through hub_twin_update in batches, per-device
 * records (FROM devices.jobs), persistence through store/jobstore.h. Tests: tests/unit/test_jobs.c. */
/* timegm: _GNU_SOURCE comes from the build flags */
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "err.h"
#include "hub.h"
#include "jobstore.h"
#include "log.h"
#include "loop.h"
#include "query.h"

enum jstate { J_SCHEDULED, J_QUEUED, J_RUNNING, J_COMPLETED, J_FAILED, J_CANCELLED };
static const char *const jstate_names[] = {"scheduled", "queued", "running", "completed", "failed", "cancelled"};

enum dstate { D_PENDING, D_RUNNING, D_COMPLETED, D_FAILED, D_CANCELLED };
static const char *const dstate_names[] = {"pending", "running", "completed", "failed", "cancelled"};

struct job;

struct jdev {
    char *id;
    enum dstate st;
    uint64_t call;
    json_t *rec; /* the devices.jobs document */
    struct job *job;
};

struct job {
    struct jobs *js;
    struct job *next;
    char id[JOBS_MAX_ID + 1];
    json_t *doc; /* the JobResponse without status and deviceJobStatistics */
    enum jstate st;
    bool is_method;
    struct query *cond;
    struct jdev *devs;
    size_t ndev, cap, cursor, inflight;
    int64_t start_ms;
    int max_exec_s;
    struct loop_timer *t_start, *t_pump, *t_deadline;
};

struct jobs {
    struct loop *loop;
    struct hub *hub;
    struct db *db;
    struct job *head, *tail;
    size_t running;
    struct loop_timer *t_sched;
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
};

/* ---- time ---- */

static int64_t real_clock(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const struct jobs *js)
{
    return js->clock(js->clock_ctx);
}

void jobs_format_time(int64_t ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    int ms_part = (int)(ms % 1000);
    if (snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms_part < 0 ? 0 : ms_part) >= (int)outlen &&
        outlen)
        out[outlen - 1] = '\0'; /* snprintf terminated it; a short buffer gets a cut time, never garbage */
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return ERR_INVALID;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return ERR_OK;
}

int jobs_parse_time(const char *text, int64_t *ms)
{
    if (!text)
        return ERR_INVALID;
    const char *p = text;
    int y, mo, d, h, mi, s, frac = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d) ||
        (*p != 'T' && *p != 't' && *p != ' '))
        return ERR_INVALID;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &s))
        return ERR_INVALID;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 3)
                frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return ERR_INVALID;
        for (; n < 3; n++)
            frac *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return ERR_INVALID;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return ERR_INVALID;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    time_t t = timegm(&tm);
    *ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + frac;
    return ERR_OK;
}

static json_t *time_json(int64_t ms)
{
    char t[40];
    jobs_format_time(ms, t, sizeof t);
    return json_string(t);
}

/* ---- records ---- */

static void job_save(struct job *jb)
{
    struct jobs *js = jb->js;
    if (!js->db)
        return;
    json_t *doc = json_deep_copy(jb->doc);
    char *text = NULL;
    if (doc && !json_object_set_new(doc, "status", json_string(jstate_names[jb->st])))
        text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text || jobstore_save_job(js->db, jb->id, text) != ERR_OK)
        log_warn("jobs: cannot save job %s", jb->id);
    free(text);
}

static void dev_save(struct jdev *d)
{
    struct jobs *js = d->job->js;
    if (!js->db)
        return;
    char *text = json_dumps(d->rec, JSON_COMPACT);
    if (!text || jobstore_save_device(js->db, d->job->id, d->id, text) != ERR_OK)
        log_warn("jobs: cannot save device %s of job %s", d->id, d->job->id);
    free(text);
}

static void dev_set_status(struct jdev *d, enum dstate st)
{
    d->st = st;
    int64_t now = now_ms(d->job->js);
    json_object_set_new(d->rec, "status", json_string(dstate_names[st]));
    json_object_set_new(d->rec, "lastUpdatedDateTimeUtc", time_json(now));
    if (st == D_RUNNING)
        json_object_set_new(d->rec, "startTimeUtc", time_json(now));
    if (st >= D_COMPLETED) {
        json_object_set_new(d->rec, "endTimeUtc", time_json(now));
        dev_save(d);
    }
}

static void dev_fail(struct jdev *d, enum dstate st, const char *code, const char *description)
{
    json_object_set_new(d->rec, "error", json_pack("{s:s,s:s}", "code", code, "description", description));
    dev_set_status(d, st);
}

static json_t *job_render(const struct job *jb)
{
    json_t *doc = json_deep_copy(jb->doc);
    if (!doc)
        return NULL;
    size_t c[5] = {0};
    for (size_t i = 0; i < jb->ndev; i++)
        c[jb->devs[i].st]++;
    json_object_set_new(doc, "status", json_string(jstate_names[jb->st]));
    json_object_set_new(doc, "deviceJobStatistics",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "deviceCount", (json_int_t)jb->ndev, "failedCount",
                                  (json_int_t)(c[D_FAILED] + c[D_CANCELLED]), "succeededCount",
                                  (json_int_t)c[D_COMPLETED], "runningCount", (json_int_t)c[D_RUNNING],
                                  "pendingCount", (json_int_t)c[D_PENDING]));
    return doc;
}

static struct job *find(struct jobs *js, const char *id)
{
    for (struct job *jb = js->head; jb; jb = jb->next)
        if (strcmp(jb->id, id) == 0)
            return jb;
    return NULL;
}

static struct jdev *dev_add(struct job *jb, const char *id)
{
    if (jb->ndev == jb->cap) {
        size_t cap = jb->cap ? jb->cap * 2 : 16;
        struct jdev *n = realloc(jb->devs, cap * sizeof *n);
        if (!n)
            return NULL;
        jb->devs = n;
        jb->cap = cap;
    }
    struct jdev *d = &jb->devs[jb->ndev];
    memset(d, 0, sizeof *d);
    d->id = strdup(id);
    d->job = jb;
    if (!d->id)
        return NULL;
    jb->ndev++;
    return d;
}

/* ---- scheduling ---- */

static void schedule_soon(struct jobs *js);
static void pump_soon(struct job *jb);

static void job_finish(struct job *jb, enum jstate st, const char *code, const char *reason)
{
    struct jobs *js = jb->js;
    bool was_running = jb->st == J_RUNNING;
    loop_timer_cancel(js->loop, jb->t_start);
    loop_timer_cancel(js->loop, jb->t_pump);
    loop_timer_cancel(js->loop, jb->t_deadline);
    jb->t_start = jb->t_pump = jb->t_deadline = NULL;
    for (size_t i = 0; i < jb->ndev; i++) {
        struct jdev *d = &jb->devs[i];
        if (d->st != D_PENDING && d->st != D_RUNNING)
            continue;
        if (d->call)
            hub_call_cancel(js->hub, d->call);
        d->call = 0;
        if (st == J_CANCELLED)
            dev_fail(d, D_CANCELLED, "JobCancelled", "The job was cancelled.");
        else
            dev_fail(d, D_FAILED, code ? code : "JobFailed",
                     reason ? reason : "The job ended before this device ran.");
    }
    jb->inflight = 0;
    jb->cursor = jb->ndev;
    jb->st = st;
    json_object_set_new(jb->doc, "endTime", time_json(now_ms(js)));
    if (reason)
        json_object_set_new(jb->doc, "failureReason", json_string(reason));
    if (was_running && js->running)
        js->running--;
    job_save(jb);
    log_info("job %s %s (%zu devices)", jb->id, jstate_names[st], jb->ndev);
    if (was_running)
        schedule_soon(js);
}

static void on_call(void *ctx, const struct hub_call_result *res);

static void method_outcome(struct jdev *d, const struct hub_call_result *res)
{
    switch (res->outcome) {
    case HUB_CALL_ANSWERED: {
        json_t *payload = res->payload_len
                              ? json_loadb((const char *)res->payload, res->payload_len, JSON_DECODE_ANY, NULL)
                              : json_null();
        if (!payload)
            payload = json_stringn((const char *)res->payload, res->payload_len);
        json_object_set_new(d->rec, "outcome",
                            json_pack("{s:{s:i,s:o}}", "deviceMethodResponse", "status", res->status, "payload",
                                      payload ? payload : json_null()));
        dev_set_status(d, D_COMPLETED);
        return;
    }
    case HUB_CALL_NOT_FOUND:
        dev_fail(d, D_FAILED, "DeviceNotFound", "The device is not registered (404001).");
        return;
    case HUB_CALL_NOT_ONLINE:
    case HUB_CALL_DISCONNECTED:
        dev_fail(d, D_FAILED, "DeviceNotOnline",
                 "Timed out waiting for device to connect or to subscribe to direct methods (404103).");
        return;
    case HUB_CALL_TIMEOUT:
        dev_fail(d, D_FAILED, "GatewayTimeout", "Timed out waiting for the response from device (504101).");
        return;
    default:
        dev_fail(d, D_FAILED, "ServiceUnavailable", "The emulator is shutting down (503).");
        return;
    }
}

static void on_call(void *ctx, const struct hub_call_result *res)
{
    struct jdev *d = ctx;
    struct job *jb = d->job;
    d->call = 0;
    if (jb->inflight)
        jb->inflight--;
    method_outcome(d, res);
    pump_soon(jb);
}

static void start_method(struct job *jb, struct jdev *d)
{
    json_t *m = json_object_get(jb->doc, "cloudToDeviceMethod");
    json_t *pl = json_object_get(m, "payload");
    char *payload = pl && !json_is_null(pl) ? json_dumps(pl, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_int_t rt = json_integer_value(json_object_get(m, "responseTimeoutInSeconds"));
    json_int_t ct = json_integer_value(json_object_get(m, "connectTimeoutInSeconds"));
    struct hub_call_request req = {
        .device_id = d->id,
        .method_name = json_string_value(json_object_get(m, "methodName")),
        .payload = payload,
        .payload_len = payload ? strlen(payload) : 0,
        .response_timeout_s = rt < 5 ? (rt <= 0 ? 30 : 5) : rt > 300 ? 300 : (int)rt,
        .connect_timeout_s = ct < 0 ? 0 : ct > 300 ? 300 : (int)ct,
    };
    dev_set_status(d, D_RUNNING);
    struct hub_call_result now;
    memset(&now, 0, sizeof now);
    uint64_t id = hub_call_start(jb->js->hub, &req, on_call, d, &now);
    free(payload);
    if (id == 0) {
        method_outcome(d, &now);
        return;
    }
    d->call = id;
    jb->inflight++;
}

static void apply_twin(struct job *jb, struct jdev *d)
{
    dev_set_status(d, D_RUNNING);
    struct hub_twin_update u = {
        .device_id = d->id,
        .body = json_object_get(jb->doc, "updateTwin"),
        .mode = TWIN_MERGE,
        .if_match = "*",
    };
    json_t *doc = NULL;
    char etag[40];
    struct twin_error e = {0, ""};
    int rc = hub_twin_update(jb->js->hub, &u, &doc, etag, sizeof etag, &e);
    json_decref(doc);
    if (rc == ERR_OK) {
        json_object_set_new(d->rec, "outcome", json_pack("{s:n}", "deviceMethodResponse"));
        dev_set_status(d, D_COMPLETED);
    } else if (rc == ERR_NOT_FOUND)
        dev_fail(d, D_FAILED, "DeviceNotFound", "The device is not registered (404001).");
    else if (rc == ERR_INVALID)
        dev_fail(d, D_FAILED, "ArgumentInvalid", e.message);
    else
        dev_fail(d, D_FAILED, "ServerError", err_str(rc));
}

static void on_pump(struct loop *l, void *ctx)
{
    (void)l;
    struct job *jb = ctx;
    jb->t_pump = NULL;
    if (jb->st != J_RUNNING)
        return;
    size_t started = 0;
    while (jb->cursor < jb->ndev && started < (jb->is_method ? 4u * JOBS_MAX_IN_FLIGHT : JOBS_TWIN_BATCH) &&
           (!jb->is_method || jb->inflight < JOBS_MAX_IN_FLIGHT)) {
        struct jdev *d = &jb->devs[jb->cursor++];
        started++;
        if (jb->is_method)
            start_method(jb, d);
        else
            apply_twin(jb, d);
    }
    if (jb->cursor >= jb->ndev && jb->inflight == 0) {
        job_finish(jb, J_COMPLETED, NULL, NULL);
        return;
    }
    if (jb->cursor < jb->ndev && (!jb->is_method || jb->inflight < JOBS_MAX_IN_FLIGHT))
        pump_soon(jb);
}

static void pump_soon(struct job *jb)
{
    if (!jb->t_pump && jb->st == J_RUNNING)
        jb->t_pump = loop_timer_add(jb->js->loop, 0, on_pump, jb);
}

static void on_deadline(struct loop *l, void *ctx)
{
    (void)l;
    struct job *jb = ctx;
    jb->t_deadline = NULL;
    if (jb->st == J_RUNNING)
        job_finish(jb, J_FAILED, "JobExpired", "The job did not complete within maxExecutionTimeInSeconds.");
}

struct collect {
    struct job *jb;
    int rc;
};

static bool collect_dev(void *ctx, const json_t *doc)
{
    struct collect *c = ctx;
    if (!query_match(c->jb->cond, doc))
        return true;
    const char *id = json_string_value(json_object_get(doc, "deviceId"));
    if (!id)
        return true;
    struct jdev *d = dev_add(c->jb, id);
    char created[40];
    json_t *ct = json_object_get(c->jb->doc, "createdTime");
    snprintf(created, sizeof created, "%s", json_string_value(ct) ? json_string_value(ct) : "");
    if (!d || !(d->rec = json_pack("{s:s,s:s,s:s,s:s,s:s}", "deviceId", id, "jobId", c->jb->id, "jobType",
                                   json_string_value(json_object_get(c->jb->doc, "type")), "status", "pending",
                                   "createdDateTimeUtc", created))) {
        c->rc = ERR_NOMEM;
        return false;
    }
    return true;
}

/* Saves every device record of a job that starts (pending), in one transaction: a job still running when the
 * emulator stops finds them after the restart and fails each one (jobs_use_store), so its statistics still
 * count every target. Finished records are saved again as they end (dev_set_status). */
static void devs_save_all(struct job *jb)
{
    struct db *db = jb->js->db;
    if (!db || jb->ndev == 0)
        return;
    if (db_begin(db) != ERR_OK) {
        log_warn("jobs: cannot save the devices of job %s", jb->id);
        return;
    }
    for (size_t i = 0; i < jb->ndev; i++)
        dev_save(&jb->devs[i]);
    if (db_commit(db) != ERR_OK)
        log_warn("jobs: cannot save the devices of job %s", jb->id);
}

static void job_run(struct job *jb)
{
    struct jobs *js = jb->js;
    jb->st = J_RUNNING;
    js->running++;
    struct collect c = {jb, ERR_OK};
    int rc = hub_twin_each(js->hub, false, collect_dev, &c);
    if (rc == ERR_OK)
        rc = c.rc;
    if (rc != ERR_OK) {
        job_finish(jb, J_FAILED, "ServerError", "Out of memory while selecting the devices.");
        return;
    }
    log_info("job %s running on %zu devices", jb->id, jb->ndev);
    jb->t_deadline = loop_timer_add(js->loop, (int64_t)jb->max_exec_s * 1000, on_deadline, jb);
    devs_save_all(jb);
    job_save(jb);
    pump_soon(jb);
}

static void on_sched(struct loop *l, void *ctx)
{
    (void)l;
    struct jobs *js = ctx;
    js->t_sched = NULL;
    for (struct job *jb = js->head; jb && js->running < JOBS_MAX_RUNNING; jb = jb->next)
        if (jb->st == J_QUEUED)
            job_run(jb);
}

static void schedule_soon(struct jobs *js)
{
    if (!js->t_sched)
        js->t_sched = loop_timer_add(js->loop, 0, on_sched, js);
}

static void on_start(struct loop *l, void *ctx)
{
    (void)l;
    struct job *jb = ctx;
    jb->t_start = NULL;
    if (jb->st == J_SCHEDULED) {
        jb->st = J_QUEUED;
        job_save(jb);
    }
    schedule_soon(jb->js);
}

static void job_free(struct jobs *js, struct job *jb)
{
    loop_timer_cancel(js->loop, jb->t_start);
    loop_timer_cancel(js->loop, jb->t_pump);
    loop_timer_cancel(js->loop, jb->t_deadline);
    for (size_t i = 0; i < jb->ndev; i++) {
        if (jb->devs[i].call)
            hub_call_cancel(js->hub, jb->devs[i].call);
        free(jb->devs[i].id);
        json_decref(jb->devs[i].rec);
    }
    free(jb->devs);
    query_free(jb->cond);
    json_decref(jb->doc);
    free(jb);
}

static void link_job(struct jobs *js, struct job *jb)
{
    if (js->tail)
        js->tail->next = jb;
    else
        js->head = jb;
    js->tail = jb;
}

/* ---- API ---- */

struct jobs *jobs_new(struct loop *loop, struct hub *hub)
{
    struct jobs *js = calloc(1, sizeof *js);
    if (!js)
        return NULL;
    js->loop = loop;
    js->hub = hub;
    js->clock = real_clock;
    return js;
}

void jobs_free(struct jobs *js)
{
    if (!js)
        return;
    loop_timer_cancel(js->loop, js->t_sched);
    while (js->head) {
        struct job *jb = js->head;
        js->head = jb->next;
        job_free(js, jb);
    }
    free(js);
}

void jobs_set_clock(struct jobs *js, int64_t (*fn)(void *ctx), void *ctx)
{
    js->clock = fn ? fn : real_clock;
    js->clock_ctx = fn ? ctx : NULL;
}

static int invalid(struct jobs_error *err, const char *msg)
{
    if (err) {
        err->code = JOBS_ERR_ARGUMENT_INVALID;
        if (snprintf(err->message, sizeof err->message, "%s", msg) >= (int)sizeof err->message)
            err->message[sizeof err->message - 1] = '\0'; /* a long message is cut, never unterminated */
    }
    return ERR_INVALID;
}

static bool id_is_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > JOBS_MAX_ID)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] >= 0x7f)
            return false;
    return true;
}

int jobs_create(struct jobs *js, const char *job_id, const json_t *body, json_t **out, struct jobs_error *err)
{
    *out = NULL;
    if (!id_is_valid(job_id))
        return invalid(err, "The job id must be 1 to 128 printable ASCII characters.");
    if (!json_is_object(body))
        return invalid(err, "The job must be a JSON object.");
    const char *bid = json_string_value(json_object_get(body, "jobId"));
    if (bid && strcmp(bid, job_id) != 0)
        return invalid(err, "The body's jobId does not match the job id in the path.");
    const char *type = json_string_value(json_object_get(body, "type"));
    bool is_method = type && strcmp(type, "scheduleDeviceMethod") == 0;
    if (!is_method && !(type && strcmp(type, "scheduleUpdateTwin") == 0))
        return invalid(err, "type must be scheduleDeviceMethod or scheduleUpdateTwin.");
    json_t *method = json_object_get(body, "cloudToDeviceMethod");
    json_t *twin = json_object_get(body, "updateTwin");
    if (is_method) {
        const char *name = json_string_value(json_object_get(method, "methodName"));
        if (!json_is_object(method) || !name || !*name)
            return invalid(err, "cloudToDeviceMethod.methodName is required.");
        json_t *rt = json_object_get(method, "responseTimeoutInSeconds");
        if (rt && !json_is_null(rt) && (!json_is_integer(rt) || json_integer_value(rt) < 5 ||
                                        json_integer_value(rt) > 300))
            return invalid(err, "responseTimeoutInSeconds must be an integer within [5; 300].");
    } else if (!json_is_object(twin))
        return invalid(err, "updateTwin must be a JSON object.");
    const char *cond = json_string_value(json_object_get(body, "queryCondition"));
    if (!cond)
        return invalid(err, "queryCondition (a WHERE clause) is required.");
    json_t *mx = json_object_get(body, "maxExecutionTimeInSeconds");
    json_int_t max_exec = JOBS_DEFAULT_MAX_EXEC_S;
    if (mx && !json_is_null(mx)) {
        if (!json_is_integer(mx) || json_integer_value(mx) < 1 || json_integer_value(mx) > 30 * 86400)
            return invalid(err, "maxExecutionTimeInSeconds must be a positive integer.");
        max_exec = json_integer_value(mx);
    }
    json_t *stj = json_object_get(body, "startTime");
    int64_t now = now_ms(js), start = now;
    if (stj && !json_is_null(stj) && (!json_is_string(stj) || jobs_parse_time(json_string_value(stj), &start)))
        return invalid(err, "startTime must be an ISO-8601 time or null.");
    if (find(js, job_id)) {
        if (err) {
            err->code = JOBS_ERR_EXISTS;
            snprintf(err->message, sizeof err->message, "A job with id %s already exists.", job_id);
        }
        return ERR_EXISTS;
    }
    struct query_error qe;
    memset(&qe, 0, sizeof qe);
    struct query *q = NULL;
    int rc = query_parse_condition(cond, strlen(cond), &q, &qe);
    if (rc == ERR_MALFORMED || rc == ERR_TOO_BIG)
        return invalid(err, qe.message);
    if (rc)
        return rc == ERR_INVALID ? invalid(err, "The queryCondition is not valid.") : rc;
    struct job *jb = calloc(1, sizeof *jb);
    if (!jb) {
        query_free(q);
        return ERR_NOMEM;
    }
    jb->js = js;
    jb->cond = q;
    jb->is_method = is_method;
    jb->max_exec_s = (int)max_exec;
    jb->start_ms = start;
    snprintf(jb->id, sizeof jb->id, "%s", job_id);
    jb->doc = json_pack("{s:s,s:s,s:s,s:o,s:o,s:n,s:I}", "jobId", job_id, "type", type, "queryCondition", cond,
                        "createdTime", time_json(now), "startTime", time_json(start), "endTime",
                        "maxExecutionTimeInSeconds", max_exec);
    if (jb->doc && is_method)
        json_object_set_new(jb->doc, "cloudToDeviceMethod", json_deep_copy(method));
    if (jb->doc && !is_method) {
        json_t *patch = json_deep_copy(twin);
        json_object_del(patch, "etag");
        json_object_set_new(jb->doc, "updateTwin", patch);
    }
    if (!jb->doc) {
        job_free(js, jb);
        return ERR_NOMEM;
    }
    jb->st = start > now ? J_SCHEDULED : J_QUEUED;
    link_job(js, jb);
    job_save(jb);
    if (jb->st == J_SCHEDULED)
        jb->t_start = loop_timer_add(js->loop, start - now, on_start, jb);
    else
        schedule_soon(js);
    log_info("job %s (%s) %s", job_id, type, jstate_names[jb->st]);
    *out = job_render(jb);
    return *out ? ERR_OK : ERR_NOMEM;
}

json_t *jobs_get(struct jobs *js, const char *job_id)
{
    struct job *jb = job_id ? find(js, job_id) : NULL;
    return jb ? job_render(jb) : NULL;
}

int jobs_cancel(struct jobs *js, const char *job_id, json_t **out)
{
    *out = NULL;
    struct job *jb = job_id ? find(js, job_id) : NULL;
    if (!jb)
        return ERR_NOT_FOUND;
    if (jb->st <= J_RUNNING)
        job_finish(jb, J_CANCELLED, NULL, NULL);
    *out = job_render(jb);
    return *out ? ERR_OK : ERR_NOMEM;
}

json_t *jobs_list(struct jobs *js, const char *type, const char *status)
{
    json_t *arr = json_array();
    for (struct job *jb = js->head; arr && jb; jb = jb->next) {
        if (type && *type && strcmp(type, json_string_value(json_object_get(jb->doc, "type"))) != 0)
            continue;
        if (status && *status && strcmp(status, jstate_names[jb->st]) != 0)
            continue;
        if (json_array_append_new(arr, job_render(jb))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

void jobs_each_device(struct jobs *js, bool (*fn)(void *ctx, const json_t *doc), void *ctx)
{
    for (struct job *jb = js->head; jb; jb = jb->next)
        for (size_t i = 0; i < jb->ndev; i++)
            if (!fn(ctx, jb->devs[i].rec))
                return;
}

size_t jobs_active(const struct jobs *js)
{
    size_t n = 0;
    for (const struct job *jb = js->head; jb; jb = jb->next)
        n += jb->st <= J_RUNNING;
    return n;
}

/* ---- the store ---- */

static int state_of(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int load_job(void *ctx, const char *job_id, const char *text, size_t len)
{
    struct jobs *js = ctx;
    json_t *doc = json_loadb(text, len, 0, NULL);
    int st = state_of(json_string_value(json_object_get(doc, "status")), jstate_names, 6);
    const char *cond = json_string_value(json_object_get(doc, "queryCondition"));
    struct query *q = NULL;
    struct job *jb = NULL;
    if (!doc || st < 0 || !cond || strlen(job_id) > JOBS_MAX_ID ||
        query_parse_condition(cond, strlen(cond), &q, NULL) != ERR_OK || !(jb = calloc(1, sizeof *jb))) {
        json_decref(doc);
        query_free(q);
        return ERR_MALFORMED;
    }
    json_object_del(doc, "status");
    jb->js = js;
    jb->doc = doc;
    jb->cond = q;
    jb->st = (enum jstate)st;
    jb->is_method = json_object_get(doc, "cloudToDeviceMethod") != NULL;
    jb->max_exec_s = (int)json_integer_value(json_object_get(doc, "maxExecutionTimeInSeconds"));
    if (jb->max_exec_s <= 0)
        jb->max_exec_s = JOBS_DEFAULT_MAX_EXEC_S;
    if (jobs_parse_time(json_string_value(json_object_get(doc, "startTime")), &jb->start_ms))
        jb->start_ms = now_ms(js);
    snprintf(jb->id, sizeof jb->id, "%s", job_id);
    link_job(js, jb);
    return ERR_OK;
}

static int load_dev(void *ctx, const char *job_id, const char *device_id, const char *text, size_t len)
{
    struct jobs *js = ctx;
    struct job *jb = find(js, job_id);
    json_t *rec = json_loadb(text, len, 0, NULL);
    int st = state_of(json_string_value(json_object_get(rec, "status")), dstate_names, 5);
    struct jdev *d = jb && rec && st >= 0 ? dev_add(jb, device_id) : NULL;
    if (!d) {
        json_decref(rec);
        return ERR_MALFORMED;
    }
    d->rec = rec;
    d->st = (enum dstate)st;
    return ERR_OK;
}

int jobs_use_store(struct jobs *js, struct db *db, char *err, size_t errlen)
{
    if (jobstore_migrate(db, err, errlen) != ERR_OK)
        return ERR_IO;
    if (jobstore_load(db, load_job, load_dev, js) != ERR_OK) {
        snprintf(err, errlen, "cannot read the jobs from the store");
        return ERR_IO;
    }
    js->db = db;
    int64_t now = now_ms(js);
    for (struct job *jb = js->head; jb; jb = jb->next) {
        if (jb->st == J_QUEUED || jb->st == J_RUNNING) {
            jb->st = J_RUNNING; /* so job_finish books it as ending */
            js->running++;
            job_finish(jb, J_FAILED, "EmulatorRestarted", "The emulator stopped while the job was running.");
        } else if (jb->st == J_SCHEDULED) {
            jb->t_start = loop_timer_add(js->loop, jb->start_ms - now, on_start, jb);
        }
    }
    return ERR_OK;
}
