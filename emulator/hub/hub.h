/* hub.h -- the IoT Hub core: who is online, which connection of an identity takes method calls, pending
 * direct-method calls (request id -> waiting caller, deadlines), delivery of a call to exactly one
 * connection, the device's reply back to the waiting caller, takeover of a second connection with the same
 * identity; each identity's twin (twin.h) with the service's twin API, the desired-property push to the
 * connection that listens for it, and the twins' persistence seam. Protocol-agnostic: a connection is a struct device_link (device_link.h) that a front (MQTT,
 * later AMQP) implements; this header includes no front. Single-threaded: called from the event loop only. */
#ifndef IOTHUB_HUB_H
#define IOTHUB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "device_link.h"
#include "twin.h"

struct db;
struct hub;
struct loop;
struct registry;

/* Returns NULL on ERR_NOMEM. The hub does not own loop or registry. */
struct hub *hub_new(struct loop *loop, struct registry *reg);
/* Fails every pending call with HUB_CALL_SHUTDOWN (callbacks run) and frees the hub. Accepts NULL. */
void hub_free(struct hub *h);

/* ---- direct-method calls (the REST side) ---- */

enum hub_call_outcome {
    HUB_CALL_ANSWERED,     /* status and payload are the device's */
    HUB_CALL_NOT_FOUND,    /* no such identity (404 DeviceNotFound / ModuleNotFound) */
    HUB_CALL_NOT_ONLINE,   /* not connected+subscribed within connect_timeout_s (404 404103) */
    HUB_CALL_TIMEOUT,      /* delivered, not answered within response_timeout_s (504 504101) */
    HUB_CALL_DISCONNECTED, /* the device's connection dropped while the call was pending (404 404103) */
    HUB_CALL_SHUTDOWN,     /* the emulator is stopping (503) */
};

struct hub_call_request {
    const char *device_id;
    const char *module_id;   /* NULL for a device */
    const char *method_name;
    const char *payload;     /* compact JSON text, or NULL when the payload is null/absent */
    size_t payload_len;
    int response_timeout_s;  /* validated by the caller: [5, 300] */
    int connect_timeout_s;   /* [0, 300] */
};

struct hub_call_result {
    enum hub_call_outcome outcome;
    int status;              /* ANSWERED: the device's status */
    const uint8_t *payload;  /* ANSWERED: the device's body (valid during the callback only); len 0 = empty */
    size_t payload_len;
    int connect_timeout_s;   /* NOT_ONLINE: echoed in the error's info.timeout */
};

/* Called exactly once per call that hub_call_start accepted, never from inside hub_call_start. It may run
 * inside any hub_link_* function and hub_disconnect_identity: it may start or cancel other calls
 * (cancelling its own is a no-op by then) but must not free links or connections. */
typedef void (*hub_call_fn)(void *ctx, const struct hub_call_result *result);

/* Starts a call. Returns 0 when the outcome is immediate: *now is filled (NOT_FOUND, NOT_ONLINE with
 * connect_timeout_s 0, SHUTDOWN) and fn will not be called. Otherwise returns a call id (> 0) and fn is
 * called later exactly once, unless hub_call_cancel is called first. ERR_NOMEM surfaces as SHUTDOWN. */
uint64_t hub_call_start(struct hub *h, const struct hub_call_request *req, hub_call_fn fn, void *ctx,
                        struct hub_call_result *now);
/* The caller went away: forget the call; fn is not called. Unknown ids are ignored. */
void hub_call_cancel(struct hub *h, uint64_t call_id);

/* Closes the connection of an identity (disabled or deleted in the registry). module_id NULL closes the
 * device and all of its modules. */
void hub_disconnect_identity(struct hub *h, const char *device_id, const char *module_id, const char *reason);
/* The identity was deleted from the registry: closes its connections (module_id NULL: the device's and its
 * modules') and forgets what the hub kept of it, so one created again with the same id starts afresh. */
void hub_forget_identity(struct hub *h, const char *device_id, const char *module_id);

/* ---- persisted sessions (MQTT CleanSession 0) ---- */

/* A front's session state for an identity ("device" or "device/module") that outlives its connections: text
 * the hub keeps as it is, dropped when the identity is deleted (hub_forget_identity). put replaces what was
 * kept; ERR_OK, ERR_NOMEM, or a store error. get returns a malloc'd copy (caller frees), or NULL when nothing is
 * kept. drop forgets it (a no-op when nothing is kept). */
int hub_saved_session_put(struct hub *h, const char *identity, const char *state);
/* Keeps persisted sessions in the durable store (store/sessionstore.h), so they survive restarts; without it
 * they are kept in memory. Migrates the table; ERR_OK or an error with a reason in err. */
int hub_use_session_store(struct hub *h, struct db *db, char *err, size_t errlen);
char *hub_saved_session_get(struct hub *h, const char *identity);
void hub_saved_session_drop(struct hub *h, const char *identity);

struct hub_stats {
    size_t connections;      /* authenticated MQTT connections */
    size_t method_listeners; /* of those, subscribed to methods */
    size_t desired_listeners; /* of those, subscribed to desired-property patches */
    size_t devices_connected; /* connections of devices (not modules): GET /statistics/service */
    size_t calls_pending;
    uint64_t calls_total;
};
void hub_get_stats(const struct hub *h, struct hub_stats *out);
/* The dashboard's live feed (events.h): connections, method calls, twin changes are noted there. NULL: none.
 * ev must outlive the hub or be removed first. */
struct events;
void hub_set_events(struct hub *h, struct events *ev);

/* ---- connected identities (the fronts' side: each connection is a struct device_link) ---- */

/* Registers an authenticated link for an identity (link->identity set); an existing link of the same
 * identity is kicked (takeover). Returns ERR_OK or ERR_NOMEM. */
int hub_link_online(struct hub *h, struct device_link *link, const char *device_id, const char *module_id);
/* The link takes method calls now (MQTT: subscribed to $iothub/methods/POST/#): waiting calls are delivered. */
void hub_link_methods_ready(struct hub *h, struct device_link *link);
/* The link no longer takes method calls (MQTT: unsubscribed): new calls no longer reach it. */
void hub_link_methods_stopped(struct hub *h, struct device_link *link);
/* A device's reply to the request with id rid (MQTT: $iothub/methods/res/{status}/?$rid={rid}). Unknown or late
 * rids are logged and dropped. */
void hub_link_method_reply(struct hub *h, struct device_link *link, const char *rid, int status, const uint8_t *body,
                              size_t len);
/* The link takes desired-property patches now (MQTT: subscribed to $iothub/twin/PATCH/properties/desired/#):
 * every later desired change of its identity is pushed to it (device_link push_desired). */
void hub_link_desired_ready(struct hub *h, struct device_link *link);
/* The link no longer takes desired patches (MQTT: unsubscribed). */
void hub_link_desired_stopped(struct hub *h, struct device_link *link);
/* Twin GET: appends the identity's twin {"desired":{...,"$version":n},"reported":{...,"$version":m}} to out. */
int hub_link_twin_get(struct hub *h, struct device_link *link, struct buf *out);
/* Twin reported PATCH: merges the JSON object patch (null deletes) into the reported properties under the
 * hub's rules (twin.h) and returns the new reported version. expected >= 0 (the topic's $version) must be the
 * current reported version, else ERR_PRECONDITION; -1 is unconditional. ERR_MALFORMED (not JSON, err 400006)
 * or ERR_INVALID (err: the hub's code and message; the twin is left unchanged), ERR_IO when the store could
 * not save it (unchanged), ERR_NOMEM. */
int hub_link_twin_patch(struct hub *h, struct device_link *link, const uint8_t *body, size_t len, int64_t expected,
                        int64_t *version, struct twin_error *err);
/* The link is going away: its pending calls end with HUB_CALL_DISCONNECTED. Safe for unknown links. */
void hub_link_offline(struct hub *h, struct device_link *link);

/* ---- fault injection's seam (faults.h; the hub never includes it) ---- */

/* What the hub does with a device's method reply: pass it on, hold it for *delay_ms (the call's response
 * timeout still runs), or drop it (the caller gets 504 at its timeout). */
enum hub_reply_policy { HUB_REPLY_PASS, HUB_REPLY_DELAY, HUB_REPLY_DROP };
struct hub_hooks {
    /* A link went offline (hub_link_offline), for whatever reason. May be NULL. */
    void (*link_offline)(void *ctx, struct device_link *link);
    /* Consulted for every method reply of identity. May be NULL (always PASS). */
    enum hub_reply_policy (*method_reply)(void *ctx, const char *identity, int64_t *delay_ms);
};
/* Installs hooks (NULL removes them); hooks and ctx must outlive the hub or be removed first. */
void hub_set_hooks(struct hub *h, const struct hub_hooks *hooks, void *ctx);
/* The online link of identity ("device" or "device/module"), or NULL. */
struct device_link *hub_link_of(struct hub *h, const char *identity);
/* Takes link offline, then closes it: abrupt through its abort op (a front without one is kicked), else
 * through kick. reason is logged. */
void hub_link_drop(struct hub *h, struct device_link *link, bool abrupt, const char *reason);
/* ---- twins (the service side; the identity must be in the registry, else ERR_NOT_FOUND) ---- */

/* The twin document (twin_document) of an identity, a new reference in *doc, and its quoted etag in etag
 * (may be NULL). Returns ERR_OK, ERR_NOT_FOUND or ERR_NOMEM. */
int hub_twin_get(struct hub *h, const char *device_id, const char *module_id, json_t **doc, char *etag,
                 size_t etaglen);

struct hub_twin_update {
    const char *device_id;
    const char *module_id; /* NULL for a device twin */
    const json_t *body;    /* the request's twin JSON (twin_update) */
    enum twin_mode mode;
    const char *if_match;  /* NULL/"" or "*": unconditional; else the twin's etag, quoted or not */
};
/* PATCH / PUT of a twin: checks If-Match, applies the change, saves it through the twin store, then pushes the
 * desired patch to the identity's connection if it listens for them. On ERR_OK *doc is the new document (new
 * reference) and etag its etag. Returns ERR_OK, ERR_NOT_FOUND, ERR_PRECONDITION (stale etag), ERR_INVALID
 * (err filled), ERR_IO (the store failed; nothing changed) or ERR_NOMEM. */
int hub_twin_update(struct hub *h, const struct hub_twin_update *u, json_t **doc, char *etag, size_t etaglen,
                    struct twin_error *err);

/* Called with each twin document (borrowed: valid during the call); returns false to stop. */
typedef bool (*hub_twin_each_fn)(void *ctx, const json_t *doc);
/* Every device twin (modules false) or every module twin (true) of the registry, ordered by device id (a
 * fresh twin for identities that never had one). Returns ERR_OK or ERR_NOMEM. */
int hub_twin_each(struct hub *h, bool modules, hub_twin_each_fn fn, void *ctx);

/* The persistence seam: save gets one identity's twin as text (twin_save) after every change and before the
 * change is acknowledged; a failure (its ERR_ code) undoes the change. NULL: twins live in memory only. */
typedef int (*hub_twin_save_fn)(void *ctx, const char *device_id, const char *module_id, const char *text);
void hub_set_twin_store(struct hub *h, hub_twin_save_fn save, void *ctx);
/* Twins in the durable store (store/twinstore.h): migrates the twins table, loads every kept twin, then saves
 * each change there. Call once at start, after the registry opened db, before any connection. Returns ERR_OK,
 * ERR_INVALID or ERR_IO (logged). */
struct db;
int hub_use_twin_store(struct hub *h, struct db *db);
/* At start: a twin kept by the store (twin_save text). Returns ERR_OK, ERR_MALFORMED or ERR_NOMEM. */
int hub_twin_load(struct hub *h, const char *device_id, const char *module_id, const char *text, size_t len);

#endif
