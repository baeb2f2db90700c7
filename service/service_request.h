/* service_request.h -- pure request building for the service client: REST paths with encoded ids, JSON
 * bodies, the header set the official SDKs send (iothub-protocol.md §4.1, §5), Request-Id UUIDs.
 * No I/O, no clock, no randomness of its own: everything it needs is passed in.
 * Internal to service/; tests: tests/unit/test_service_request.c. */
#ifndef IOTHUB_SERVICE_REQUEST_H
#define IOTHUB_SERVICE_REQUEST_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "service_result.h"

#define SERVICE_REQUEST_USER_AGENT "iothub-emulator-c/" SERVICE_CLIENT_VERSION

/* "/twins/{enc(device)}[/modules/{enc(module)}]/methods?api-version=2021-04-12". Ids are strictly
 * percent-encoded ('#' -> %23, '?' -> %3F, '/' -> %2F). Returns malloc'd text, or NULL on ERR_NOMEM or an
 * empty device id. */
char *service_request_method_path(const char *device_id, const char *module_id);
/* "/devices/{enc(device)}[/modules/{enc(module)}]?api-version=2021-04-12". NULL as above. */
char *service_request_identity_path(const char *device_id, const char *module_id);
/* "/twins/{enc(device)}[/modules/{enc(module)}]?api-version=2021-04-12". NULL as above. */
char *service_request_twin_path(const char *device_id, const char *module_id);
/* "/devices/query?api-version=2021-04-12". Malloc'd, NULL on ERR_NOMEM. */
char *service_request_query_path(void);
/* {"query":"<sql>"}. On ERR_OK *out is malloc'd. ERR_INVALID (empty or not UTF-8) writes err. */
int service_request_query_body(const char *sql, char **out, char *err, size_t errlen);
/* device_id NULL: "/devices/?top={top}&api-version=..." (top clamped to 1..1000, 0 = 1000);
 * otherwise "/devices/{enc(device)}/modules?api-version=...". Malloc'd, NULL on ERR_NOMEM. */
char *service_request_list_path(const char *device_id, int top);

/* "/jobs/v2/{enc(job)}{tail}?api-version=..." (tail "" or "/cancel"); "/jobs/v2/query?api-version=...
 * [&jobType=T][&jobStatus=S]" for service_request_job_query_path (values encoded). Malloc'd, NULL on
 * ERR_NOMEM or an empty job id. */
char *service_request_job_path(const char *job_id, const char *tail);
char *service_request_job_query_path(const char *job_type, const char *job_status);
/* The PUT body of a job: {"jobId","type","queryCondition","startTime","maxExecutionTimeInSeconds",
 * "cloudToDeviceMethod":{"methodName","payload","responseTimeoutInSeconds"[,"connectTimeoutInSeconds"]} or
 * "updateTwin":{["tags"][,"properties":{"desired"}]}}. ERR_INVALID (no id, query or method; payload, desired
 * or tags not JSON (objects); neither desired nor tags) writes err. On ERR_OK *out is malloc'd. */
int service_request_job_body(const struct service_client_job_spec *j, char **out, char *err, size_t errlen);

/* {"methodName":..,"responseTimeoutInSeconds":..,"connectTimeoutInSeconds":..,"payload":..} with the
 * payload text spliced in as given (trimmed of surrounding white space) after checking it is JSON, or null.
 * On ERR_OK *out is malloc'd. ERR_INVALID (empty or non-UTF-8 method name, payload not JSON, negative
 * timeout) writes one line to err. */
int service_request_method_body(const char *method_name, const char *payload, int response_timeout_s,
                                int connect_timeout_s, char **out, char *err, size_t errlen);
/* The PUT body creating a device or module: {"deviceId":..[,"moduleId":..][,"status":..],
 * "authentication":{"type":"sas","symmetricKey":{"primaryKey":..,"secondaryKey":..}}}; missing keys are ""
 * so the hub generates them; status only for devices. ERR_INVALID (bad id/key text, disabled module) writes
 * err. */
int service_request_identity_body(const char *device_id, const char *module_id,
                                  const struct service_client_identity_spec *spec, char **out, char *err,
                                  size_t errlen);

/* The AMQP endpoint for iothub-service send: url NULL means amqps://{host}:5671; otherwise "amqps://H[:P]"
 * or "amqp://H[:P]" (default ports 5671 / 5672; H may be [v6]). Writes the host (brackets removed) and port,
 * and *tls. ERR_OK or ERR_INVALID (another scheme, empty host, bad port, too long). */
int service_request_amqp_endpoint(const char *url, const char *host, char *host_out, size_t host_len,
                                  char *port_out, size_t port_len, int *tls);

/* Formats 16 random bytes as a version-4 UUID "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx". */
void service_request_uuid(const uint8_t random[16], char out[37]);

/* The request headers: Authorization: {token}, Accept: application/json, Request-Id, User-Agent, then
 * Content-Type: application/json; charset=utf-8 when has_body, and If-Match: {if_match} when not NULL.
 * Also "Expect:" (empty: no 100-continue round trip). On ERR_OK *out is a new list (curl_slist_free_all). */
int service_request_headers(const char *token, const char *request_id, int has_body, const char *if_match,
                            struct curl_slist **out);

#endif
