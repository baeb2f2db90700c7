/* device_client.h -- Azure IoT Hub device client on libmosquitto: direct methods, twins (desired patches,
 * reported properties) and cloud-to-device messages over MQTT 3.1.1 + TLS, with
 * reconnection (exponential back-off, full jitter), SAS-token renewal and a connection-state callback.
 * Works unchanged against the local emulator and a real hub: only the connection string (and, for the
 * emulator, the CA file) differ. The one public header of device/.
 *
 * Threads: none of its own. The application drives everything by calling device_client_run() from one
 * thread; every callback runs inside that call. device_client_stop(), _respond(), _report() and _send_event()
 * may be called from any thread (the last three queue a PUBLISH for that thread), and stop() also from a signal
 * handler.
 *
 * Example:
 *     struct device_client_options o;
 *     device_client_options_init(&o);
 *     o.on_method = my_method;            // answers direct methods
 *     struct device_client *c;
 *     char err[256];
 *     if (device_client_new(cs, &o, &c, err, sizeof err)) { puts(err); return; }
 *     while (device_client_run(c, -1) == ERR_OK && !done) ;   // returns on stop or a terminal failure
 *     device_client_free(c);               // DISCONNECT, then release everything
 */
#ifndef IOTHUB_DEVICE_CLIENT_H
#define IOTHUB_DEVICE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h" /* the enum err values the functions return */

struct device_client;

/* What device_client_run() reports through on_state. */
enum device_client_state {
    DEVICE_CLIENT_CONNECTED = 1,         /* CONNACK accepted and $iothub/methods/POST/# subscribed */
    DEVICE_CLIENT_DISCONNECTED_RETRYING, /* an attempt failed or the link dropped; next try in retry_in_ms */
    DEVICE_CLIENT_AUTH_FAILED,           /* terminal: credentials rejected (CONNACK 2, 4 or 5) or token expired */
    DEVICE_CLIENT_TLS_FAILED,            /* terminal: the server's certificate or host name did not verify */
    DEVICE_CLIENT_CONNECT_FAILED,        /* terminal: only with first_connect_fatal, the first attempt failed */
};

enum device_client_reason {
    DEVICE_CLIENT_REASON_NONE = 0,
    DEVICE_CLIENT_REASON_UNREACHABLE,     /* name resolution or TCP connect failed */
    DEVICE_CLIENT_REASON_TLS_HANDSHAKE,   /* TLS failed for a reason other than verification (retried) */
    DEVICE_CLIENT_REASON_TLS_VERIFY,      /* certificate chain or host name did not verify */
    DEVICE_CLIENT_REASON_AUTH,            /* CONNACK 2 (identifier rejected), 4 or 5 (not authorized) */
    DEVICE_CLIENT_REASON_TOKEN_EXPIRED,   /* the connection string's fixed SharedAccessSignature expired */
    DEVICE_CLIENT_REASON_REFUSED,         /* another CONNACK refusal (1 or 3) */
    DEVICE_CLIENT_REASON_TIMEOUT,         /* no CONNACK/SUBACK within connect_timeout_s */
    DEVICE_CLIENT_REASON_CONNECTION_LOST, /* an established connection dropped (peer close, keep-alive, I/O) */
    DEVICE_CLIENT_REASON_TOKEN_RENEWAL,   /* planned: DISCONNECT and reconnect with a fresh SAS token */
    DEVICE_CLIENT_REASON_PROTOCOL,        /* the server broke MQTT or refused the subscription */
};

struct device_client_event {
    enum device_client_state state;
    enum device_client_reason reason; /* NONE for CONNECTED */
    const char *detail;               /* one line for humans ("connection refused"); valid during the callback */
    uint32_t retry_in_ms;             /* DISCONNECTED_RETRYING: delay before the next attempt */
    unsigned attempt;                 /* consecutive failed attempts so far (0 when CONNECTED) */
};

/* One direct-method request. Pointers are valid during the callback only. */
struct device_client_method_request {
    const char *name;       /* method name, NUL-terminated */
    const uint8_t *payload; /* request body (JSON); NUL-terminated for convenience */
    size_t payload_len;     /* 0 when the service sent a null payload */
    const char *rid;        /* request id, NUL-terminated: copy it to answer later */
};

enum device_client_answer {
    DEVICE_CLIENT_ANSWER_NOW,   /* *status and *response are the answer; the library publishes it */
    DEVICE_CLIENT_ANSWER_LATER, /* the application calls device_client_respond(rid, ...) later */
};

/* Called once per request, in arrival order. On entry *status is 200 and *response NULL. For ANSWER_NOW set
 * *status and optionally *response to malloc'd NUL-terminated JSON text, which the library frees (NULL sends
 * an empty body, which the hub reports to the caller as a null payload). Calls may overlap: with
 * ANSWER_LATER several requests can be pending at once, answered in any order. */
typedef enum device_client_answer (*device_client_method_cb)(void *ctx, const struct device_client_method_request *req,
                                                             int *status, char **response);
typedef void (*device_client_state_cb)(void *ctx, const struct device_client_event *ev);

/* A desired-properties patch the hub pushed ($iothub/twin/PATCH/properties/desired/?$version=N): the JSON
 * object as sent ("$version" included; null members are deletions). Valid during the callback only. */
struct device_client_desired {
    const char *json; /* NUL-terminated */
    size_t len;
    int64_t version;  /* -1 when the topic carried none */
};
typedef void (*device_client_desired_cb)(void *ctx, const struct device_client_desired *patch);
/* The hub's answer to a device_client_report: status 204 (accepted; version is the new reported $version)
 * or an error status with the hub's JSON body (errorCode, message) in body (NUL-terminated, may be ""). */
typedef void (*device_client_reported_cb)(void *ctx, const char *rid, int status, int64_t version, const char *body);

/* A cloud-to-device message (devices/{id}/messages/devicebound/{bag}, QoS 1: libmosquitto's PUBACK completes
 * it). keys/values are the decoded property bag in the hub's order: the application properties and the system
 * ones ($.mid message id, $.cid correlation id, $.to, $.uid, $.ct, $.ce, $.exp). Valid during the callback. */
struct device_client_c2d {
    const uint8_t *body; /* NUL-terminated for convenience */
    size_t body_len;
    const char *const *keys;
    const char *const *values;
    size_t n_props;
};
typedef void (*device_client_c2d_cb)(void *ctx, const struct device_client_c2d *msg);

struct device_client_options {
    const char *ca_file;        /* PEM file of CAs to trust (the emulator's ca.pem); NULL = the system store */
    int port;                   /* TLS port; 0 = 8883. A real hub always listens on 8883 */
    int plain_port;             /* development only: > 0 = plain MQTT without TLS on this port (the emulator's
                                   --mqtt-port). Credentials travel in clear; a real hub has no such port */
    int keep_alive_s;           /* 0 = 240 (the C SDK's value); otherwise 5..1177 */
    int token_lifetime_s;       /* SAS token lifetime; 0 = 3600; minimum 5 */
    int renew_margin_s;         /* reconnect this long before the token expires; 0 = lifetime / 4 */
    int connect_timeout_s;      /* CONNACK and SUBACK must arrive within this; 0 = 30 */
    uint32_t backoff_initial_ms; /* 0 = 1000 */
    uint32_t backoff_max_ms;     /* 0 = 30000 */
    unsigned max_auth_failures; /* consecutive auth refusals tolerated when RE-connecting; 0 = 3 */
    bool first_connect_fatal;   /* true: if the very first attempt fails for any reason, stop with
                                   CONNECT_FAILED (or AUTH_FAILED / TLS_FAILED) instead of retrying */
    uint32_t (*random)(void *ctx); /* jitter source; NULL = internal generator seeded by getrandom() */
    void *random_ctx;
    device_client_method_cb on_method; /* NULL: every request is answered 501 with an empty body */
    void *method_ctx;
    device_client_state_cb on_state;   /* optional */
    void *state_ctx;
    bool twin;                  /* subscribe to twin responses and desired patches at connect (implied by
                                   on_desired or on_reported) */
    device_client_desired_cb on_desired; /* optional: each desired patch, in arrival order */
    void *desired_ctx;
    device_client_reported_cb on_reported; /* optional: the answers to device_client_report */
    void *reported_ctx;
    device_client_c2d_cb on_c2d; /* optional: subscribe to devices/{id}/messages/devicebound/# (QoS 1) at
                                    connect and get each C2D message; devices only (a module has none) */
    void *c2d_ctx;
};

/* Fills o with the defaults above (all zero). */
void device_client_options_init(struct device_client_options *o);

/* Creates a client from a device or module connection string (HostName, DeviceId, [ModuleId],
 * SharedAccessKey [SharedAccessKeyName] or SharedAccessSignature, [GatewayHostName]). GatewayHostName, when
 * present, is where TCP/TLS goes (and whose name the certificate must match); the username and the SAS token
 * always use HostName. A SharedAccessSignature is used as given and never renewed: once it expires the
 * client stops with AUTH_FAILED / TOKEN_EXPIRED. Nothing is sent until device_client_run().
 * On ERR_OK *out is the client (free with device_client_free). Otherwise *out is NULL and err (if not NULL)
 * gets one line saying what is wrong; it never contains a key or token.
 * Returns ERR_OK, ERR_INVALID (connection string, options or CA file) or ERR_NOMEM. */
int device_client_new(const char *connection_string, const struct device_client_options *opt,
                      struct device_client **out, char *err, size_t errlen);

/* Connects (the first call), services the connection, answers methods, reconnects and renews tokens, for up
 * to timeout_ms milliseconds (-1: until stopped or terminal; 0: one pass over what is ready, without waiting,
 * for an application that calls it from its own loop). Returns ERR_OK when the time is up or after
 * device_client_stop(); ERR_CLOSED once the client is in a terminal state (AUTH_FAILED, TLS_FAILED,
 * CONNECT_FAILED: see device_client_last_event); ERR_INVALID if called re-entrantly. */
int device_client_run(struct device_client *c, int timeout_ms);

/* Asks device_client_run() to return as soon as possible, now and on every later call. Async-signal-safe and
 * thread-safe (an atomic store and a write(2) to a self-pipe). */
void device_client_stop(struct device_client *c);

/* Answers a request taken with ANSWER_LATER. body[0..body_len) is JSON (NULL/0 sends an empty body); it is
 * copied. Thread-safe: the answer is queued and published by the thread in device_client_run(). An answer
 * for a request of an earlier connection is published if the client is connected and ignored by the hub.
 * Returns ERR_OK, ERR_INVALID (rid not a valid request id) or ERR_NOMEM. */
int device_client_respond(struct device_client *c, const char *rid, int status, const char *body, size_t body_len);

/* Queues one device-to-cloud message on devices/{id}[/modules/{mid}]/messages/events/{prop_bag} (prop_bag:
 * URL-encoded k=v&k2=v2, may be NULL), published like an answer (same queue, same thread rules; dropped, logged,
 * when not connected). qos 0, or 1 as the SDKs send telemetry (libmosquitto keeps it until the PUBACK; the
 * SDKs' fault-injection properties go this way). Returns ERR_OK, ERR_INVALID or ERR_NOMEM. */
int device_client_send_event(struct device_client *c, const char *prop_bag, const char *body, size_t body_len,
                             int qos);
/* Sends a reported-properties patch (a JSON object; null deletes) on $iothub/twin/PATCH/properties/reported/
 * with a fresh $rid, written to rid (>= 24 bytes; may be NULL). Thread-safe like device_client_respond; dropped
 * (logged) when not connected. The answer comes to on_reported. Returns ERR_OK, ERR_INVALID (not JSON) or
 * ERR_NOMEM. */
int device_client_report(struct device_client *c, const char *json, size_t len, char *rid);

/* The last event reported (state 0 before any). detail stays valid until the next device_client_run(). */
const struct device_client_event *device_client_last_event(const struct device_client *c);

/* Sends DISCONNECT if connected (waiting up to one second for queued answers to go out), closes the socket
 * and releases everything. Accepts NULL. Not from a callback, nor while device_client_run() runs. */
void device_client_free(struct device_client *c);

/* Short lower-case names, for logs ("connected", "unreachable"). Never NULL. */
const char *device_client_state_str(enum device_client_state s);
const char *device_client_reason_str(enum device_client_reason r);
const char *device_client_version(void);

#endif
