/* service_result.h -- what the service client's calls return: the outcome of one operation, registry
 * identities, and what to create; with their cleanup. Part of the service_client API (the names keep its
 * prefix), declared apart so the pure parsers (service_response, service_request) and the HTTP layer fill them
 * without depending on the client, which depends on them: result < request, response, http < client < cmd.
 * Tests: tests/unit/test_service_response.c. */
#ifndef IOTHUB_SERVICE_RESULT_H
#define IOTHUB_SERVICE_RESULT_H

#include <stddef.h>

/* The client's version (in its User-Agent) and the REST api-version it speaks. */
#define SERVICE_CLIENT_VERSION "0.1.0"
#define SERVICE_CLIENT_API_VERSION "2021-04-12"

enum service_client_kind {
    SERVICE_CLIENT_ANSWERED,        /* invoke: the device answered (any device status); registry: HTTP 2xx */
    SERVICE_CLIENT_HUB_ERROR,       /* the hub answered with an HTTP error */
    SERVICE_CLIENT_TRANSPORT_ERROR, /* no HTTP answer: connection refused, TLS verification failed, ... */
};

/* What went wrong below HTTP (TRANSPORT_ERROR only). */
enum service_client_net {
    SERVICE_CLIENT_NET_NONE,
    SERVICE_CLIENT_NET_CONNECT, /* name resolution, connection refused, connect timeout */
    SERVICE_CLIENT_NET_TLS,     /* handshake or certificate verification failed */
    SERVICE_CLIENT_NET_TIMEOUT, /* connected, but no complete answer in time */
    SERVICE_CLIENT_NET_RESET,   /* the connection broke during the exchange */
    SERVICE_CLIENT_NET_OTHER,
};

/* The outcome of one operation. Strings are malloc'd; free with service_client_result_cleanup. */
struct service_client_result {
    enum service_client_kind kind;
    long http_status;   /* of the final response; 0 for TRANSPORT_ERROR */
    int status;         /* ANSWERED invoke: the device's status */
    char *payload;      /* ANSWERED invoke: the device's payload as JSON text, "null" when it sent none */
    long error_code;    /* HUB_ERROR: the hub's numeric code (404103, 504101, 401002...); 0 when unknown */
    char *error_name;   /* HUB_ERROR: e.g. "DeviceNotOnline" (body or iothub-errorcode header); NULL if none */
    char *message;      /* HUB_ERROR: the hub's message; TRANSPORT_ERROR: curl's; on ERR_INVALID: the reason */
    enum service_client_net net;
    int tries;          /* HTTP attempts made */
};

void service_client_result_cleanup(struct service_client_result *r);

/* An identity as the registry returns it. Strings malloc'd (NULL when absent); free with
 * service_client_identity_cleanup. */
struct service_client_identity {
    char *device_id;
    char *module_id;        /* NULL for a device */
    char *primary_key;
    char *secondary_key;
    char *status;           /* "enabled" / "disabled" (devices) */
    char *etag;
    char *connection_state; /* "Connected" / "Disconnected" */
    char *json;             /* the whole object, compact JSON (contains the keys) */
};

void service_client_identity_cleanup(struct service_client_identity *id);
/* Frees an array returned by service_client_identity_list (and the array). Accepts NULL. */
void service_client_identity_list_free(struct service_client_identity *ids, size_t n);

/* What to create: keys NULL/"" let the hub generate them. */
struct service_client_identity_spec {
    const char *primary_key;
    const char *secondary_key;
    int disabled; /* devices only */
};

/* What `iothub-service job schedule-method|schedule-twin` schedules (PUT /jobs/v2/{jobId}, the body the Node
 * JobClient sends). Strings are the user's text; NULL when not given. */
struct service_client_job_spec {
    const char *job_id;
    int twin;                /* 0: scheduleDeviceMethod, 1: scheduleUpdateTwin */
    const char *query;       /* queryCondition, a WHERE clause */
    const char *start_time;  /* ISO-8601; NULL sends null (the hub starts it now) */
    int max_execution_s;     /* 0 = 3600 */
    const char *method_name; /* method jobs */
    const char *payload;     /* JSON text; NULL sends null */
    int response_timeout_s;  /* 0 = 30 */
    int connect_timeout_s;   /* 0: not sent */
    const char *desired;     /* twin jobs: a JSON object for properties.desired (may be NULL) */
    const char *tags;        /* twin jobs: a JSON object for tags (may be NULL; not both) */
};

#endif
