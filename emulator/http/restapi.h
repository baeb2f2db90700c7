/* restapi.h -- the pure half of the service REST surface (iothub-protocol.md §4, §5): route parsing (path
 * segments percent-decoded, query), direct-method body validation, the hub's two error envelopes, .NET
 * TimeSpan text and the method-result body. No I/O, no libmicrohttpd, no globals: rest*.c drive HTTP and
 * call these. Tests: tests/unit/test_restapi.c. */
#ifndef IOTHUB_RESTAPI_H
#define IOTHUB_RESTAPI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RESTAPI_MAX_PAYLOAD (128u * 1024u)        /* hub limit on a method payload (compact JSON), both ways */
#define RESTAPI_TOP_DEFAULT 1000
#define RESTAPI_TOP_MAX 1000

/* ---- routes ---- */

enum restapi_route_kind {
    RESTAPI_ROUTE_NONE,    /* no such route (404) */
    RESTAPI_ROUTE_HEALTH,  /* /health */
    RESTAPI_ROUTE_CA_PEM,  /* /emulator/ca.pem */
    RESTAPI_ROUTE_METHOD,  /* /twins/{id}/methods, /twins/{id}/modules/{mid}/methods */
    RESTAPI_ROUTE_DEVICES, /* /devices, /devices/ (GET: list; POST: bulk registry operation) */
    RESTAPI_ROUTE_DEVICE,  /* /devices/{id} */
    RESTAPI_ROUTE_MODULES, /* /devices/{id}/modules[/] */
    RESTAPI_ROUTE_MODULE,  /* /devices/{id}/modules/{mid} */
    RESTAPI_ROUTE_TELEMETRY, /* /emulator/telemetry[/{id}] (the emulator's own) */
    RESTAPI_ROUTE_CONSUMER_GROUPS, /* /emulator/consumergroups (the emulator's own) */
    RESTAPI_ROUTE_CONSUMER_GROUP,  /* /emulator/consumergroups/{name} (the name in device_id) */
    RESTAPI_ROUTE_FAULTS,    /* /emulator/faults[/{faultId}] (the emulator's own; the id in device_id) */
    RESTAPI_ROUTE_C2D_PURGE, /* /devices/{id}/commands: DELETE purges the device's C2D queue */
    RESTAPI_ROUTE_D2C_EVENTS,   /* /devices/{id}/messages/events: a device's telemetry over HTTPS */
    RESTAPI_ROUTE_C2D_RECEIVE,  /* /devices/{id}/messages/deviceBound: the next C2D message, locked */
    RESTAPI_ROUTE_C2D_LOCK,     /* /devices/{id}/messages/deviceBound/{lockToken}: DELETE completes (?reject) */
    RESTAPI_ROUTE_C2D_ABANDON,  /* /devices/{id}/messages/deviceBound/{lockToken}/abandon: POST */
    RESTAPI_ROUTE_TWIN,    /* /twins/{id}, /twins/{id}/modules/{mid} (module_id set) */
    RESTAPI_ROUTE_QUERY,   /* /devices/query; device_id is "query", for the other verbs (a device named so) */
    RESTAPI_ROUTE_STATS_DEVICES, /* /statistics/devices */
    RESTAPI_ROUTE_STATS_SERVICE, /* /statistics/service */
    RESTAPI_ROUTE_JOB,        /* /jobs/v2/{jobId} (the id in device_id): PUT creates, GET reads */
    RESTAPI_ROUTE_JOB_CANCEL, /* /jobs/v2/{jobId}/cancel: POST */
    RESTAPI_ROUTE_JOBS_QUERY, /* /jobs/v2/query[?jobType=&jobStatus=]: GET */
};

struct restapi_route {
    enum restapi_route_kind kind;
    char *device_id;      /* percent-decoded, malloc'd; NULL when the route has none */
    char *module_id;      /* likewise */
    char *lock_token;     /* C2D_LOCK / C2D_ABANDON: the ETag of the received message, quotes removed */
    bool reject;          /* "reject" present in the query */
    bool has_api_version; /* api-version=<non-empty> present in the query */
    int top;              /* the query's top, RESTAPI_TOP_DEFAULT when absent */
    bool top_invalid;     /* top present but not an integer in [1, RESTAPI_TOP_MAX] */
    char job_type[32];    /* jobType=... of /jobs/v2/query ("" when absent or too long) */
    char job_status[32];  /* jobStatus=... */
};

/* Parses a raw request-target ("/twins/d%231/methods?api-version=2021-04-12"). Literal segments match
 * exactly; id segments are percent-decoded (a bad escape or a decoded NUL is ERR_MALFORMED); an unknown
 * shape is ERR_OK with kind NONE. Returns ERR_OK, ERR_MALFORMED or ERR_NOMEM; free with
 * restapi_route_cleanup in every case. */
int restapi_route_parse(const char *uri, struct restapi_route *out);
void restapi_route_cleanup(struct restapi_route *r);
/* True when the HTTP method is served on that route kind. */
bool restapi_route_allows(enum restapi_route_kind kind, const char *method);
/* The Allow header value for a 405 on that kind ("" for NONE). */
const char *restapi_route_allow(enum restapi_route_kind kind);

/* ---- errors ---- */

enum restapi_envelope {
    RESTAPI_ENVELOPE_A, /* {"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:..."} */
    RESTAPI_ENVELOPE_B, /* {"Message":"<JSON with numeric errorCode>","ExceptionMessage":""} (methods) */
};

enum restapi_info {
    RESTAPI_INFO_OMIT,    /* no "info" member (400 validation errors) */
    RESTAPI_INFO_EMPTY,   /* "info":{} */
    RESTAPI_INFO_TIMEOUT, /* "info":{"timeout":"hh:mm:ss"} from timeout_s */
};

/* One error answer. code is the hub's 6-digit code; the HTTP status is code / 1000. */
struct restapi_error {
    int code;
    enum restapi_envelope envelope;
    enum restapi_info info;
    int timeout_s;
    char message[512];
};

/* The hub's codes used here (name from restapi_code_name). NotFound and MethodNotAllowed are the
 * emulator's own for unknown routes, Forbidden for the browser rule (browser.h); they appear only in
 * Envelope A, which shows names, not numbers. */
#define RESTAPI_INVALID_PROTOCOL_VERSION 400001
#define RESTAPI_ARGUMENT_INVALID 400004
#define RESTAPI_FORMAT_ERROR 400006
#define RESTAPI_UNAUTHORIZED 401002
#define RESTAPI_FORBIDDEN 403000 /* a browser's request the emulator refuses (browser.h) */
#define RESTAPI_QUOTA_EXCEEDED 403002
#define RESTAPI_QUEUE_DEPTH 403004 /* DeviceMaximumQueueDepthExceeded: a C2D queue is full */
#define RESTAPI_DEVICE_NOT_FOUND 404001
#define RESTAPI_MODULE_NOT_FOUND 404010
#define RESTAPI_DEVICE_NOT_ONLINE 404103
#define RESTAPI_NOT_FOUND 404000
#define RESTAPI_METHOD_NOT_ALLOWED 405000
#define RESTAPI_DEVICE_EXISTS 409001
#define RESTAPI_JOB_NOT_FOUND 404002 /* JobNotFound, as in the .NET SDK's ErrorCode enum */
#define RESTAPI_JOB_EXISTS 409007 /* JobAlreadyExists: the emulator's own (no SDK lists a 409 code for jobs) */
#define RESTAPI_MODULE_EXISTS 409301
#define RESTAPI_MAX_PROPERTIES 403100 /* DeviceModelMaxPropertiesExceeded (a twin section too large) */
#define RESTAPI_PRECONDITION_FAILED 412001
#define RESTAPI_THROTTLED 429001
#define RESTAPI_MESSAGE_TOO_LARGE 413001
#define RESTAPI_SERVER_ERROR 500001
#define RESTAPI_SERVICE_UNAVAILABLE 503001
#define RESTAPI_GATEWAY_TIMEOUT 504101

/* The x-ms-max-item-count of a query page: 1..RESTAPI_QUERY_PAGE_MAX, default RESTAPI_QUERY_PAGE_DEFAULT. */
#define RESTAPI_QUERY_PAGE_DEFAULT 100
#define RESTAPI_QUERY_PAGE_MAX 1000
/* Parses an x-ms-max-item-count value (NULL: the default; above the maximum: the maximum). ERR_OK with *out,
 * or ERR_INVALID (not a positive decimal number). */
int restapi_page_size(const char *value, int *out);
/* Parses an x-ms-continuation token as our query route writes it (the decimal offset of the next row).
 * NULL or "" is offset 0. ERR_OK with *out, or ERR_INVALID. */
int restapi_continuation(const char *value, size_t *out);

/* "DeviceNotOnline" for 404103 etc. (the iothub-errorcode header); "ServerError" for unknown codes. */
const char *restapi_code_name(int code);
/* Fills e (info OMIT) with code and a printf-formatted message. */
void restapi_error_set(struct restapi_error *e, int code, enum restapi_envelope env, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with a va_list. */
void restapi_error_vset(struct restapi_error *e, int code, enum restapi_envelope env, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* Renders e in its envelope: tracking is the tracking id text (hex), when the wall-clock time. Returns
 * malloc'd JSON text (caller frees) or NULL on ERR_NOMEM. */
char *restapi_error_render(const struct restapi_error *e, const char *tracking, const struct timespec *when);

/* .NET TimeSpan text of a non-negative number of seconds: "hh:mm:ss", "d.hh:mm:ss" from one day on.
 * Returns ERR_OK, or ERR_INVALID (negative seconds, or outlen too small). */
int restapi_timespan(int64_t seconds, char *out, size_t outlen);
/* ISO-8601 UTC with milliseconds of a wall-clock ms time: "2023-11-14T22:13:20.123Z" (outlen >= 25). */
void restapi_iso_ms(int64_t ms, char *out, size_t outlen);

/* ---- direct methods ---- */

/* Printable US-ASCII without $ ( ) < > @ , ; : \ " / [ ] ? = { } SP HT, at least one character. */
bool restapi_method_name_is_valid(const char *name);

struct restapi_method_call {
    char *method_name;  /* malloc'd */
    const char *payload; /* compact JSON (not NUL-terminated): into the body when it was already compact, else
                          * payload_buf; NULL when payload is null or absent */
    char *payload_buf;   /* malloc'd, or NULL */
    size_t payload_len;
    int response_timeout_s;
    int connect_timeout_s;
};

/* Validates a POST .../methods body as the hub does: JSON object (else 400006), methodName required and
 * valid, responseTimeoutInSeconds default 30 in [5, 300], connectTimeoutInSeconds default 0 in [0, 300]
 * (integers; else 400004 with the hub's message), payload any JSON, compact form at most
 * RESTAPI_MAX_PAYLOAD bytes (else 413001). Returns ERR_OK (out filled; free with restapi_method_cleanup),
 * ERR_INVALID (err filled, Envelope B, out empty) or ERR_NOMEM. */
int restapi_method_parse(const char *body, size_t len, struct restapi_method_call *out, struct restapi_error *err);
/* How: one pass of mjson_method_scan (mjson.h) over the body, no tree; the payload points into body (which must
 * outlive out) when it is already jansson's compact form. Bodies the scanner is not sure of (and every error)
 * take restapi_method_parse_tree: the same contract through a jansson tree, the oracle of fuzz_method_body. */
int restapi_method_parse_tree(const char *body, size_t len, struct restapi_method_call *out,
                              struct restapi_error *err);
void restapi_method_cleanup(struct restapi_method_call *c);

/* The 200 body for a device's answer: {"status":<status>,"payload":<body>}. An empty body is null; valid
 * JSON is passed through byte for byte; anything else becomes a JSON string (invalid UTF-8 replaced by
 * U+FFFD) -- the hub's behaviour there is unsettled (iothub-protocol.md §9.4). Returns malloc'd text
 * (caller frees, *out_len its length) or NULL on ERR_NOMEM. */
char *restapi_method_result(int status, const uint8_t *body, size_t len, size_t *out_len);
#define RESTAPI_RESULT_PREFIX_MAX 48
/* The bytes of that result before the body, {"status":<status>,"payload": (no NUL); returns their length. For a
 * writer that sends the device's body from where it lies (rest_front.c) and the closing '}' after it. */
size_t restapi_method_result_prefix(int status, char out[RESTAPI_RESULT_PREFIX_MAX]);

#define RESTAPI_JSON_MAX_DEPTH 2048 /* nesting of arrays and objects, jansson's parser limit */

/* True when p[0..len) is exactly one JSON value (RFC 8259) between optional whitespace: strings valid UTF-8
 * without raw control characters, escapes well-formed with surrogates paired, numbers of any magnitude, at
 * most RESTAPI_JSON_MAX_DEPTH nested containers. No allocation, no recursion; p may be NULL. It accepts
 * what jansson refuses only for integers beyond int64, reals beyond double and "\u0000" in keys. */
bool restapi_json_is_valid(const uint8_t *p, size_t len);

#endif
