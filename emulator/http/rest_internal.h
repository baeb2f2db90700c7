/* rest_internal.h -- what the files of the REST module share (emulator/http/ only; nothing outside http/
 * includes it): struct rest, struct rest_req, the answer helpers (rest_answer.c), the authorization preludes
 * (rest_auth.c) and the route handlers that rest.c's dispatch calls. One file per route group:
 * rest_methods.c, rest_registry.c, rest_twins.c, rest_jobs.c, rest_device.c, rest_emulator.c.
 * Tests: tests/unit/test_rest_http.c (end to end). */
#ifndef IOTHUB_REST_INTERNAL_H
#define IOTHUB_REST_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"
#include "restapi.h"

#define REST_JSON "application/json; charset=utf-8"
#define REST_AUTH_CACHE 64 /* verified Authorization values remembered */
#define REST_METHOD_BODY_MAX (1024u * 1024u) /* raw method body; the payload itself is capped at 128 KiB */
#define REST_AUTHZ_MAX 4096 /* a longer Authorization on a direct method goes to MHD (rest_front.c) */
/* A device may answer any int status, negative ones too; REST_LOG_NO_CODE means "no status to print". */
#define REST_LOG_NO_CODE INT_MIN

struct identity;
struct hub_call_result;
struct rest_front_conn; /* rest_front.c: one connection of the direct-method front */

/* The answer to one request, built before it is queued (possibly after a suspension). */
struct rest_answer {
    unsigned status;
    char *body; /* malloc'd; handed to MHD */
    size_t len;
    const char *ctype;
    const char *errorcode; /* iothub-errorcode header (static text) */
    const char *allow;
    char etag[80];
    int retry_after_s;     /* Retry-After header when > 0 (throttling, injected faults) */
    json_t *headers;       /* more response headers, name -> string (NULL: none) */
    char continuation[24]; /* x-ms-continuation of a query page ("" = last page: no header) */
    const char *item_type; /* x-ms-item-type of a query page */
};

/* One HTTP request, created by MHD's URI callback and freed by its completion callback (rest.c); or, for a
 * direct method served by the front (rest_front.c), created and freed by the front (conn is then NULL). */
struct rest_req {
    struct rest *r;
    struct MHD_Connection *conn;
    struct rest_front_conn *front; /* the front's connection it came on; NULL: MHD's */
    char *authz;                   /* front only: the Authorization value (malloc'd), NULL when absent */
    char *uri;
    char method[16];
    struct restapi_route route;
    int route_rc;
    size_t body_cap;
    size_t body_seen;
    struct buf body;
    bool started, handled, answered, suspended, gone;
    bool sent; /* front only: the answer was written (rest_front_send_result) */
    int64_t started_ms;
    /* direct-method call */
    struct restapi_method_call call;
    uint64_t call_id;
    int watch_fd;                 /* the connection's socket, watched for hang-up while suspended; -1 */
    struct rest_req *prev, *next; /* list of suspended requests */
    struct rest_answer ans;
};

/* An Authorization value that auth_check_service accepted, for the permission sets it was checked for. */
struct rest_verified {
    char *header; /* malloc'd; NULL when the slot is free */
    size_t len;
    uint64_t hash;
    uint64_t expiry; /* the token's se */
    unsigned perms;  /* union of the need_perms it passed */
    uint64_t used;   /* for eviction: the least recently used goes first */
};

struct rest_conn; /* rest.c: one tracked MHD connection */
struct dash;      /* dash.h: the dashboard */

struct rest {
    struct rest_verified verified[REST_AUTH_CACHE];
    uint64_t verified_clock;
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    struct telemetry *telemetry;
    struct faults *faults;
    char *ca_pem_path;
    int64_t skew_s;
    struct MHD_Daemon *mhd;
    int epfd;
    struct loop_timer *timer;
    int64_t timer_due;
    bool shutting_down;
    struct rest_req *waiting;
    int amqps_port, amqp_port; /* for /health; <= 0 when not listening */
    struct c2d *c2d;
    struct jobs *jobs;
    struct rest_conn *conns;
    struct rest_conn **by_fd; /* indexed by socket fd, for rest_idle_since */
    size_t by_fd_len;
    int head_timeout_s, idle_timeout_s;
    struct loop_timer *sweep;
    struct dash *dash; /* the dashboard's page and routes (dash.h) */
    struct proto front;                  /* the direct-method front (rest_front.c), given to net */
    struct rest_front_conn *front_conns; /* its connections, for their deadlines */
    struct loop_timer *front_sweep;
    struct buf front_head; /* scratch: the head of the front's answer being written */
    int64_t date_s;        /* the Date header's text, remade once a second */
    char date[40];
    char **host_names; /* rest_config's names a browser's Host may use (browser.h) */
    size_t n_host_names;
};

/* ---- rest.c: requests ---- */

/* A request for uri[0..len) (copied), not yet started; NULL on ERR_NOMEM. */
struct rest_req *rest_req_new(struct rest *r, const char *uri, size_t len);
/* Sets q's method, route and body cap: its head is complete. */
void rest_req_start(struct rest_req *q, const char *method);
/* Answers q (or suspends it): shutdown, route errors, injected faults, then the route's handler. */
void rest_dispatch(struct rest_req *q);
/* Frees q and what it owns; it must not be suspended. */
void rest_req_free(struct rest_req *q);

/* ---- rest.c: suspension of a waiting request ---- */

/* Suspends q's MHD connection until rest_resume (a direct method waiting for its device). */
void rest_suspend(struct rest_req *q);
/* Resumes a suspended q (its answer set, or q->gone); no-op when it is not suspended. */
void rest_resume(struct rest_req *q);
/* Takes a suspended q off the waiting list without resuming it (its caller is gone). */
void rest_unsuspend(struct rest_req *q);

/* ---- rest_front.c: the direct-method front (rest.h's rest_front) ---- */

void rest_front_init(struct rest *r);
/* A device's answer to a front request, written straight from body (valid during the hub's callback) without
 * the copy restapi_method_result makes: the same bytes. False (nothing done) when body is empty or not JSON. */
bool rest_front_send_result(struct rest_req *q, int status, const uint8_t *body, size_t len);
/* A suspended front request was resumed: write its answer (unless q->gone), free it, read on. */
void rest_front_resumed(struct rest_req *q);
void rest_front_cleanup(struct rest *r);

/* ---- rest_answer.c: answers ---- */

/* Takes ownership of body (may be NULL with len 0). */
void rest_answer_set(struct rest_req *q, unsigned status, char *body, size_t len, const char *ctype);
/* 204 No Content. */
void rest_answer_empty(struct rest_req *q);
/* The body of e in its envelope, with a fresh tracking id and the time (malloc'd; NULL on ERR_NOMEM). */
char *rest_error_text(const struct restapi_error *e);
/* The error in the hub's envelope, with a fresh tracking id and the iothub-errorcode header. */
void rest_answer_error(struct rest_req *q, const struct restapi_error *e);
void rest_answer_errorf(struct rest_req *q, int code, enum restapi_envelope env, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 500 "Out of memory." (Envelope A). */
void rest_answer_nomem(struct rest_req *q);
/* status with a JSON document (stolen; NULL answers 500) and the ETag of etag_of when not NULL. */
void rest_answer_json(struct rest_req *q, unsigned status, json_t *j, const struct identity *etag_of);
/* The hub's throttling answer: 429 429001 ThrottlingException with Retry-After. */
void rest_answer_throttled(struct rest_req *q, enum restapi_envelope env, int retry_after_s);
/* 404 for the route's device, or its module when the device exists. */
void rest_answer_not_found(struct rest_req *q, enum restapi_envelope env);
/* False (and a 404) when the route's device is not in the registry. */
bool rest_device_exists(struct rest_req *q);
/* Queues q's answer on its MHD connection. */
enum MHD_Result rest_queue_answer(struct rest_req *q);
/* The status line and header lines of answer a as MHD writes them (Date, the answer's headers,
 * Content-Length; Connection: close when close), ending with the empty line, appended to out. */
int rest_answer_head(struct rest *r, const struct rest_answer *a, bool close, struct buf *out);
void rest_answer_clear(struct rest_answer *a);

/* ---- rest_answer.c: request helpers ---- */

/* False (and a 413 answer in env) when the body was over its cap. */
bool rest_body_fits(struct rest_req *q, enum restapi_envelope env);
/* The request body as JSON (an object when want_object; duplicate keys refused when strict), or an error
 * answer (NULL). Caller json_decref's it. */
json_t *rest_body_json(struct rest_req *q, bool want_object, bool strict);
/* False (and a 400 answer) when the route's ?top= was not within [1; RESTAPI_TOP_MAX]. */
bool rest_top_valid(struct rest_req *q);
/* The x-ms-max-item-count and x-ms-continuation of a paged query; false with a 400 answer when invalid. */
bool rest_page_args(struct rest_req *q, int *page, size_t *offset);
/* 200 with rows[offset, offset + page) (rows is released), x-ms-continuation when more rows follow, and
 * x-ms-item-type. */
void rest_answer_page(struct rest_req *q, json_t *rows, size_t offset, int page, const char *item_type);

/* ---- rest_auth.c: authorization preludes ---- */

/* Auth (a policy with perms) and api-version, common to the hub routes. False when an error answer was set. */
bool rest_service_prelude(struct rest_req *q, unsigned perms);
/* The same with either of two permission sets (the hub lets several policies through some routes). */
bool rest_service_prelude_any(struct rest_req *q, unsigned perms_a, unsigned perms_b);
/* A device token for the route's device (or a policy token with DeviceConnect) and api-version. NULL when an
 * error answer was set. */
const struct identity *rest_device_prelude(struct rest_req *q);
/* Whether authz[0..len) is a service token with perms (through the cache; no answer is set). */
bool rest_token_ok(struct rest *r, const char *authz, size_t len, unsigned perms);
/* Forgets every verified token (rest_free). */
void rest_auth_cleanup(struct rest *r);

/* ---- route handlers (q's route kind and verb already checked by rest.c) ---- */

/* rest_methods.c */
void rest_route_method(struct rest_req *q);
/* Answers a method call with code (Envelope B) and logs the outcome. */
void rest_call_failed(struct rest_req *q, int code, const char *msg);
/* One info line per method call when it ends; code REST_LOG_NO_CODE is left out. */
void rest_log_call(const struct rest_req *q, const char *outcome, int code);

/* rest_registry.c */
void rest_route_devices(struct rest_req *q);
void rest_route_modules(struct rest_req *q);
void rest_route_identity(struct rest_req *q);
void rest_route_statistics(struct rest_req *q);

/* rest_twins.c */
void rest_route_twin(struct rest_req *q);
void rest_route_query(struct rest_req *q);

/* rest_jobs.c */
void rest_route_job(struct rest_req *q);
void rest_route_job_cancel(struct rest_req *q);
void rest_route_jobs_query(struct rest_req *q);

/* rest_device.c */
void rest_route_c2d_receive(struct rest_req *q);
/* DELETE .../deviceBound/{lockToken}[?reject] completes (or rejects); POST .../abandon gives it back. */
void rest_route_c2d_complete(struct rest_req *q);
void rest_route_c2d_abandon(struct rest_req *q);
void rest_route_c2d_purge(struct rest_req *q);
void rest_route_d2c_events(struct rest_req *q);

/* rest_emulator.c */
void rest_route_health(struct rest_req *q);
void rest_route_ca_pem(struct rest_req *q);
void rest_route_telemetry(struct rest_req *q);
void rest_route_consumer_groups(struct rest_req *q);
void rest_route_faults(struct rest_req *q);
/* Injected REST faults and the --throttle registry limit, for the hub's own routes. True when answered. */
bool rest_faulted(struct rest_req *q);

#endif
