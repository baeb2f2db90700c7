/* registry.h -- the identity registry: devices and modules with symmetric keys, status, etag and generation id,
 * live presence (connectionState and times), and the JSON shapes the hub's REST API returns
 * (iothub-protocol.md §5). In memory for every lookup; persisted in the store (db.h, table identities), one
 * small transaction per change, committed before the change is reported. Presence is not persisted.
 * Tests: tests/unit/test_registry.c. */
#ifndef IOTHUB_REGISTRY_H
#define IOTHUB_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define REGISTRY_MAX_ID 128
#define REGISTRY_JSON_IMPORTED_KEY "registry_json_imported" /* db meta key set by the one-time import */

struct registry;

/* An identity. Owned by the registry; a pointer stays valid until that identity is deleted or the registry
 * freed: do not keep it across loop iterations (keep the ids). Fields are read-only to callers. */
struct identity {
    char device_id[REGISTRY_MAX_ID + 1];
    char module_id[REGISTRY_MAX_ID + 1]; /* "" for a device */
    char *primary_key;                   /* base64 */
    char *secondary_key;                 /* base64 */
    bool enabled;
    char *status_reason;                 /* NULL when none */
    char *managed_by;                    /* modules only; NULL when none */
    char generation_id[32];
    uint64_t version;                    /* bumped by every update; the etag is base64 of its decimal text */
    bool iot_edge;                       /* capabilities.iotEdge (devices) */
    bool connected;
    int64_t connection_state_updated_s;  /* seconds since the epoch, 0 = never ("0001-01-01T00:00:00Z") */
    int64_t status_updated_s;
    int64_t last_activity_s;
};

/* Loads the registry from db (which it uses, not owns: close db after registry_free). When import_json names
 * an existing registry.json of an older release, it is imported first, once: its identities are written to
 * db in one transaction (ids already in db are kept and logged), the import is marked in db's meta, and the
 * file is renamed to <import_json>.imported. Returns NULL on failure with a one-line reason in err (corrupt
 * registry.json or rows: the files are left untouched). */
struct registry *registry_new(struct db *db, const char *import_json, char *err, size_t errlen);
void registry_free(struct registry *r);
/* The registry's tables (db_migrate; registry_new applies them). */
const struct db_schema *registry_schema(void);
/* The store the registry writes to (for callers that group several changes in one db_begin/db_commit). */
struct db *registry_db(const struct registry *r);

/* module_id NULL or "" looks up a device. Returns NULL when absent. O(1). */
const struct identity *registry_find(const struct registry *r, const char *device_id, const char *module_id);
size_t registry_device_count(const struct registry *r);

/* True when id obeys the hub's rules: 1..128 chars of ASCII alphanumerics and - . + % _ # * ? ! ( ) , = @ $ ' */
bool registry_id_is_valid(const char *id);

/* Creates or updates from a REST body (the JSON the SDKs send for PUT /devices/{id} or
 * /devices/{id}/modules/{mid}). Without if_match the identity must not exist (else ERR_EXISTS); with
 * if_match ("*", "\"*\"", or the quoted/unquoted etag) it must exist and match (ERR_NOT_FOUND /
 * ERR_PRECONDITION). Empty or missing keys are generated (32 random bytes, base64). A body id that
 * differs from the path id, an invalid id, a key that is not base64, an authentication type other than
 * "sas", or a status other than enabled/disabled is ERR_INVALID with a message in err. A module whose
 * device does not exist is ERR_NOT_FOUND. On ERR_OK *out points at the stored identity and *created says
 * which it was; the change is committed to the store before returning (ERR_IO, logged, if that fails; nothing
 * changed). Inside an enclosing db transaction the change shows in memory only once that commits (then *out
 * is NULL); change each identity at most once per enclosing transaction. */
int registry_put(struct registry *r, const char *device_id, const char *module_id, const json_t *body,
                 const char *if_match, const struct identity **out, bool *created, char *err, size_t errlen);
/* Deletes a device (with its modules) or a module. if_match as above (NULL or "*" = unconditional).
 * Returns ERR_OK, ERR_NOT_FOUND, ERR_PRECONDITION or ERR_IO. Transactions as for registry_put. */
int registry_delete(struct registry *r, const char *device_id, const char *module_id, const char *if_match);
/* Adds a device with the given keys if it does not exist (the well-known device1 at start). */
int registry_ensure_device(struct registry *r, const char *device_id, const char *primary_key,
                           const char *secondary_key);

/* The hub's JSON for one identity (deviceId, moduleId for modules, generationId, etag, connectionState
 * "Connected"/"Disconnected", status, statusReason, the three times as ISO 8601, cloudToDeviceMessageCount,
 * authentication {symmetricKey, x509Thumbprint, type}, capabilities for devices, managedBy for modules).
 * Returns a new reference (caller json_decref) or NULL on ERR_NOMEM. */
json_t *registry_identity_json(const struct identity *id);
/* The quoted etag header value, e.g. "\"MQ==\"", into out. */
void registry_etag(const struct identity *id, char *out, size_t outlen);
/* JSON arrays: up to top devices (ordered by id); the modules of a device (NULL when the device does not
 * exist). New references. */
json_t *registry_list_devices(const struct registry *r, size_t top);
json_t *registry_list_modules(const struct registry *r, const char *device_id);

/* Presence: not persisted. Unknown ids are ignored. */
void registry_set_connected(struct registry *r, const char *device_id, const char *module_id, bool connected,
                            int64_t now_s);
void registry_touch(struct registry *r, const char *device_id, const char *module_id, int64_t now_s);

#endif
