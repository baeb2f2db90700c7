/* service_client.h -- IoT Hub service client on libcurl: invoke direct methods on devices and modules, manage
 * device and module identities in the registry, build connection strings and SAS tokens. Speaks the REST API
 * the official SDKs use (iothub-protocol.md §4, §5) with a fresh SAS token per request, so it works against a
 * real hub and against the emulator by changing only the connection string (and trusting the emulator's CA).
 * Blocking, one request at a time per client; a client is not shared between threads.
 * Tests: tests/unit/test_service_request.c, test_service_response.c, test_service_cmd.c;
 * tests/integration/service_*. */
#ifndef IOTHUB_SERVICE_CLIENT_H
#define IOTHUB_SERVICE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "service_result.h"

struct service_client;

struct service_client_options {
    const char *ca_file;  /* PEM file of trusted CAs (the emulator's ca.pem); NULL = the system store */
    const char *base_url; /* NULL = "https://{HostName}" (port 443, as a real hub and the emulator serve).
                             For the emulator's dev ports or a test on a free port: "https://localhost:8443",
                             "http://127.0.0.1:8080". SAS tokens still name the HostName. */
    int max_tries;        /* attempts for transient failures; 0 = 3, 1 = no retry */
    int retry_delay_ms;   /* first back-off delay, doubled per retry, capped at 2000 ms; 0 = 500 */
};

/* Creates a client from a service connection string (HostName;SharedAccessKeyName;SharedAccessKey).
 * opts may be NULL. On failure returns NULL and writes one line to err (never a key). */
struct service_client *service_client_new(const char *connection_string, const struct service_client_options *opts,
                                          char *err, size_t errlen);
/* Accepts NULL. */
void service_client_free(struct service_client *c);
/* The HostName of the connection string. Owned by the client. */
const char *service_client_host(const struct service_client *c);

/* A direct-method call. */
struct service_client_method {
    const char *device_id;
    const char *module_id;  /* NULL: call the device itself */
    const char *method_name;
    const char *payload;    /* any JSON text; NULL sends "payload":null */
    int response_timeout_s; /* 0 = 30 (the hub allows 5..300) */
    int connect_timeout_s;  /* how long the hub waits for the device to come online; 0 = not at all */
};

/* POST /twins/{id}[/modules/{mid}]/methods. Returns ERR_OK when *out holds an outcome (check out->kind);
 * ERR_INVALID (bad argument, e.g. payload not JSON; out->message says why), ERR_MALFORMED (a 2xx answer
 * that is not a method result; out->message says why) or ERR_NOMEM. Retries only connect failures and
 * 429/503: a method call is not idempotent. Always call service_client_result_cleanup on *out. */
int service_client_invoke(struct service_client *c, const struct service_client_method *m,
                          struct service_client_result *out);

/* Registry operations; module_id NULL means the device. Each returns ERR_OK when *res holds an outcome
 * (check res->kind; *out is filled only for ANSWERED), ERR_INVALID (res->message says why), ERR_MALFORMED
 * (the 2xx answer is not an identity) or ERR_NOMEM. Always clean up *res (and *out when filled). */
int service_client_identity_create(struct service_client *c, const char *device_id, const char *module_id,
                                   const struct service_client_identity_spec *spec,
                                   struct service_client_identity *out, struct service_client_result *res);
int service_client_identity_get(struct service_client *c, const char *device_id, const char *module_id,
                                struct service_client_identity *out, struct service_client_result *res);
/* Unconditional delete (If-Match: "*"). */
int service_client_identity_delete(struct service_client *c, const char *device_id, const char *module_id,
                                   struct service_client_result *res);
/* device_id NULL lists devices (at most top, 1..1000; 0 = 1000); otherwise the modules of that device.
 * On ANSWERED *ids is a malloc'd array of *n identities (free with service_client_identity_list_free). */
int service_client_identity_list(struct service_client *c, const char *device_id, int top,
                                 struct service_client_identity **ids, size_t *n, struct service_client_result *res);

/* Twins; module_id NULL means the device's twin. On ANSWERED *twin is the twin JSON the hub returned
 * (malloc'd, caller frees). Return values as for the registry operations (ERR_MALFORMED: not a JSON object). */
int service_client_twin_get(struct service_client *c, const char *device_id, const char *module_id, char **twin,
                            struct service_client_result *res);
/* PATCH (replace 0: tags and desired merge, null deletes) or PUT (replace 1: tags and desired replaced) with
 * patch, a JSON object such as {"properties":{"desired":{"k":1}}}. etag NULL sends If-Match "*"; else the
 * etag, quoted as the hub wants. ERR_INVALID when patch is not a JSON object. */
int service_client_twin_update(struct service_client *c, const char *device_id, const char *module_id,
                               const char *patch, int replace, const char *etag, char **twin,
                               struct service_client_result *res);

/* One page of a query (POST /devices/query): at most page_size rows (0: the hub's default), from
 * continuation on (NULL: the first page). On ANSWERED *rows is the page's JSON array (malloc'd) and *next the
 * continuation of the next page (malloc'd), or NULL on the last page. */
int service_client_query(struct service_client *c, const char *sql, int page_size, const char *continuation,
                         char **rows, char **next, struct service_client_result *res);

/* Jobs (REST /jobs/v2, as the Node JobClient). On ANSWERED *job is the job JSON the hub returned (malloc'd).
 * Return values as for the registry operations (ERR_INVALID: a bad spec, res->message says why;
 * ERR_MALFORMED: the 2xx answer is not a JSON object). */
int service_client_job_schedule(struct service_client *c, const struct service_client_job_spec *spec, char **job,
                                struct service_client_result *res);
int service_client_job_get(struct service_client *c, const char *job_id, char **job,
                           struct service_client_result *res);
int service_client_job_cancel(struct service_client *c, const char *job_id, char **job,
                              struct service_client_result *res);
/* One page of GET /jobs/v2/query[?jobType=&jobStatus=] (NULL: any), as service_client_query. */
int service_client_job_query(struct service_client *c, const char *job_type, const char *job_status, int page_size,
                             const char *continuation, char **rows, char **next, struct service_client_result *res);

/* The device or module connection string of id: HostName (of this client) + DeviceId [+ ModuleId] +
 * SharedAccessKey (the primary key). Returns malloc'd text, or NULL when id has no primary key or on
 * ERR_NOMEM. */
char *service_client_connection_string(const struct service_client *c, const struct service_client_identity *id);

/* A SAS token for resource_uri (unencoded, e.g. "myhub.azure-devices.net/devices/dev1" or the hub name for
 * a policy token) signed with key_b64, with skn=key_name when not NULL, expiring ttl_s seconds from now:
 * what `az iot hub generate-sas-token` prints. On ERR_OK *out is malloc'd (caller frees).
 * Returns ERR_OK, ERR_INVALID (key not base64, empty uri, ttl 0) or ERR_NOMEM. */
int service_client_sas(const char *resource_uri, const char *key_b64, const char *key_name, uint64_t ttl_s,
                       char **out);

/* A cloud-to-device message (iothub-service send). */
struct service_client_c2d {
    const char *device_id;
    const char *message_id;  /* NULL: a random UUID (feedback names it) */
    const char *ack;         /* NULL, "none", "positive", "negative", "full" */
    int expiry_s;            /* seconds from now; 0: the hub's default TTL */
    const char *const *keys; /* application properties */
    const char *const *values;
    size_t n_props;
    const char *body;
    size_t body_len;
    int wait_feedback;       /* also wait for the message's feedback record */
    int timeout_s;           /* the whole exchange; 0 = 60 */
    const char *amqp_url;    /* NULL: amqps://{HostName}:5671; "amqps://host[:port]" or, for the emulator's
                                development port, "amqp://host[:port]" */
};

/* Sends m over AMQP (service_amqp.h: SASL PLAIN with a fresh SAS token of this client's policy). The message
 * id used is copied into message_id_out (when not NULL). on_accepted (may be NULL) is called once the hub
 * took the message, on_feedback (may be NULL) for each feedback record received (JSON text). Returns ERR_OK with *res filled (ANSWERED: accepted; HUB_ERROR: error_name is
 * the AMQP condition such as "amqp:not-found"; TRANSPORT_ERROR), ERR_INVALID (res->message says why) or
 * ERR_NOMEM. Always clean up *res. */
int service_client_send_c2d(struct service_client *c, const struct service_client_c2d *m,
                            void (*on_accepted)(void *ctx, const char *message_id),
                            void (*on_feedback)(void *ctx, const char *record_json), void *ctx, char *message_id_out, size_t message_id_len, struct service_client_result *res);

const char *service_client_version(void);

#endif
