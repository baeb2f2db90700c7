/* bulk.c -- the bulk registry operation (see bulk.h): parse and check the whole request first, then one
 * transaction with a savepoint per item through registry_put / registry_delete, then the result document.
 * A failing item is the hub's per-item error; a store failure fails the request and applies nothing.
 * Touches: jansson, the registry and its store. Tests: tests/unit/test_bulk.c. */
#include "bulk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "err.h"
#include "log.h"

enum bulk_mode {
    MODE_CREATE,
    MODE_UPDATE,
    MODE_UPDATE_IF_MATCH,
    MODE_CREATE_OR_UPDATE,
    MODE_CREATE_OR_UPDATE_IF_MATCH,
    MODE_DELETE,
    MODE_DELETE_IF_MATCH,
};

static const struct {
    const char *name;
    enum bulk_mode mode;
} bulk_modes[] = {
    {"create", MODE_CREATE},
    {"update", MODE_UPDATE},
    {"updateIfMatchETag", MODE_UPDATE_IF_MATCH},
    {"createOrUpdate", MODE_CREATE_OR_UPDATE},
    {"createOrUpdateIfMatchETag", MODE_CREATE_OR_UPDATE_IF_MATCH},
    {"delete", MODE_DELETE},
    {"deleteIfMatchETag", MODE_DELETE_IF_MATCH},
};

struct bulk_item {
    const json_t *o;
    const char *device_id;
    const char *module_id; /* NULL for a device */
    const char *etag;      /* NULL when not given */
    enum bulk_mode mode;
    const char *mode_name; /* canonical spelling, for "operation" */
    int rc;
    enum bulk_op done;
    const char *code; /* the hub's errorCode name when rc != ERR_OK */
    char msg[256];
};

/* ---- checking the request ---- */

/* A member that may be absent or null; else it must be a string. */
static bool opt_string(const json_t *o, const char *key, const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = json_string_value(v);
    return !v || json_is_null(v) || json_is_string(v);
}

static int item_parse(const json_t *o, size_t i, struct bulk_item *it, char *err, size_t errlen)
{
    const char *mode = NULL, *etag = NULL, *etag2 = NULL;
    memset(it, 0, sizeof *it);
    it->o = o;
    if (!json_is_object(o)) {
        err_setf(err, errlen, "devices[%zu] is not an ExportImportDevice object", i);
        return ERR_INVALID;
    }
    if (!opt_string(o, "id", &it->device_id) || !it->device_id || !opt_string(o, "moduleId", &it->module_id) ||
        !opt_string(o, "importMode", &mode) || !opt_string(o, "eTag", &etag) || !opt_string(o, "etag", &etag2)) {
        err_setf(err, errlen, "devices[%zu]: id must be a string; moduleId, importMode and eTag strings or absent", i);
        return ERR_INVALID;
    }
    if (it->module_id && !*it->module_id)
        it->module_id = NULL;
    it->etag = etag && *etag ? etag : etag2 && *etag2 ? etag2 : NULL;
    it->mode = MODE_CREATE_OR_UPDATE;
    it->mode_name = "createOrUpdate";
    if (!mode)
        return ERR_OK;
    for (size_t m = 0; m < sizeof bulk_modes / sizeof bulk_modes[0]; m++) {
        if (strcasecmp(mode, bulk_modes[m].name) == 0) {
            it->mode = bulk_modes[m].mode;
            it->mode_name = bulk_modes[m].name;
            return ERR_OK;
        }
    }
    if (strncasecmp(mode, "updateTwin", 10) == 0)
        err_setf(err, errlen, "devices[%zu]: importMode '%s' is not supported by the emulator yet", i, mode);
    else
        err_setf(err, errlen, "devices[%zu]: importMode '%s' is not one of create, update, updateIfMatchETag, "
                             "createOrUpdate, createOrUpdateIfMatchETag, delete, deleteIfMatchETag", i, mode);
    return ERR_INVALID;
}

static bool same_identity(const struct bulk_item *a, const struct bulk_item *b)
{
    return strcmp(a->device_id, b->device_id) == 0 &&
           strcmp(a->module_id ? a->module_id : "", b->module_id ? b->module_id : "") == 0;
}

static int request_parse(const json_t *body, struct bulk_item *items, size_t *n, char *err, size_t errlen)
{
    if (!json_is_array(body)) {
        err_setf(err, errlen, "the body must be a JSON array of ExportImportDevice");
        return ERR_INVALID;
    }
    *n = json_array_size(body);
    if (*n == 0 || *n > BULK_MAX_ITEMS) {
        err_setf(err, errlen, "a bulk registry operation takes 1 to %d devices, not %zu", BULK_MAX_ITEMS, *n);
        return ERR_INVALID;
    }
    for (size_t i = 0; i < *n; i++) {
        int rc = item_parse(json_array_get(body, i), i, &items[i], err, errlen);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (same_identity(&items[i], &items[j])) {
                err_setf(err, errlen, "device '%s'%s%s appears more than once in the request", items[i].device_id,
                        items[i].module_id ? " module " : "", items[i].module_id ? items[i].module_id : "");
                return ERR_INVALID;
            }
        }
    }
    return ERR_OK;
}

/* ---- running the items ---- */

static void item_fail(struct bulk_item *it, const struct registry *r, int rc, const char *msg)
{
    const char *what = it->module_id ? "module" : "device";
    const char *which = it->module_id ? it->module_id : it->device_id;
    it->rc = rc;
    switch (rc) {
    case ERR_EXISTS:
        it->code = it->module_id ? "ModuleAlreadyExistsOnDevice" : "DeviceAlreadyExists";
        snprintf(it->msg, sizeof it->msg, "A %s with ID '%s' is already registered.", what, which);
        break;
    case ERR_NOT_FOUND:
        it->code = it->module_id && registry_find(r, it->device_id, NULL) ? "ModuleNotFound" : "DeviceNotFound";
        snprintf(it->msg, sizeof it->msg, "%s",
                 strcmp(it->code, "ModuleNotFound") == 0 ? "The module does not exist." : "The device does not exist.");
        break;
    case ERR_PRECONDITION:
        it->code = "PreconditionFailed";
        snprintf(it->msg, sizeof it->msg, "Precondition failed: the eTag does not match the %s's etag.", what);
        break;
    default:
        it->code = "ArgumentInvalid";
        snprintf(it->msg, sizeof it->msg, "%s", msg && *msg ? msg : err_str(rc));
        break;
    }
}

/* registry_put with the item as the body, its id as deviceId. */
static int item_put(struct registry *r, struct bulk_item *it, const char *if_match, char *msg, size_t msglen)
{
    json_t *body = json_copy((json_t *)it->o);
    const struct identity *out;
    bool created = false;
    if (!body || json_object_set_new(body, "deviceId", json_string(it->device_id)) ||
        (it->module_id && json_object_set_new(body, "moduleId", json_string(it->module_id)))) {
        json_decref(body);
        return ERR_NOMEM;
    }
    int rc = registry_put(r, it->device_id, it->module_id, body, if_match, &out, &created, msg, msglen);
    json_decref(body);
    it->done = created ? BULK_CREATE : BULK_UPDATE;
    return rc;
}

static int item_run(struct registry *r, struct bulk_item *it, char *msg, size_t msglen)
{
    bool needs_etag = it->mode == MODE_UPDATE_IF_MATCH || it->mode == MODE_DELETE_IF_MATCH;
    if (needs_etag && !it->etag) {
        snprintf(msg, msglen, "importMode %s needs the item's eTag", it->mode_name);
        return ERR_INVALID;
    }
    bool exists = registry_find(r, it->device_id, it->module_id) != NULL;
    switch (it->mode) {
    case MODE_CREATE:
        return item_put(r, it, NULL, msg, msglen);
    case MODE_UPDATE:
        return item_put(r, it, "*", msg, msglen);
    case MODE_UPDATE_IF_MATCH:
        return item_put(r, it, it->etag, msg, msglen);
    case MODE_CREATE_OR_UPDATE:
        return item_put(r, it, exists ? "*" : NULL, msg, msglen);
    case MODE_CREATE_OR_UPDATE_IF_MATCH:
        return item_put(r, it, exists ? (it->etag ? it->etag : "*") : NULL, msg, msglen);
    case MODE_DELETE:
    case MODE_DELETE_IF_MATCH:
        it->done = BULK_DELETE;
        return registry_delete(r, it->device_id, it->module_id, it->mode == MODE_DELETE ? NULL : it->etag);
    }
    return ERR_INVALID;
}

/* Runs every item in its own savepoint; ERR_IO/ERR_NOMEM stop everything (the caller rolls back). */
static int items_run(struct registry *r, struct bulk_item *items, size_t n)
{
    struct db *db = registry_db(r);
    for (size_t i = 0; i < n; i++) {
        char msg[256] = "";
        int rc = db_begin(db);
        if (rc)
            return rc;
        rc = item_run(r, &items[i], msg, sizeof msg);
        if (rc == ERR_IO || rc == ERR_NOMEM) {
            db_rollback(db);
            return rc;
        }
        if (rc) {
            db_rollback(db);
            item_fail(&items[i], r, rc, msg);
        } else if ((rc = db_commit(db)) != ERR_OK) {
            return rc;
        }
    }
    return ERR_OK;
}

static json_t *result_json(const struct bulk_item *items, size_t n)
{
    json_t *errors = json_array();
    bool ok = true;
    for (size_t i = 0; errors && i < n; i++) {
        const struct bulk_item *it = &items[i];
        if (it->rc == ERR_OK)
            continue;
        ok = false;
        json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "deviceId", it->device_id, "errorCode", it->code,
                              "errorStatus", it->msg, "operation", it->mode_name);
        if (e && it->module_id && json_object_set_new(e, "moduleId", json_string(it->module_id))) {
            json_decref(e);
            e = NULL;
        }
        if (json_array_append_new(errors, e)) {
            json_decref(errors);
            errors = NULL;
        }
    }
    return errors ? json_pack("{s:b, s:o, s:[]}", "isSuccessful", ok, "errors", errors, "warnings") : NULL;
}

int bulk_apply(struct registry *r, const json_t *body, bulk_applied_fn applied, void *arg, json_t **result,
               char *err, size_t errlen)
{
    struct bulk_item items[BULK_MAX_ITEMS];
    size_t n = 0;
    struct db *db = registry_db(r);
    *result = NULL;
    err_setf(err, errlen, "%s", "");
    int rc = request_parse(body, items, &n, err, errlen);
    if (rc)
        return rc;
    rc = db_begin(db);
    if (!rc) {
        rc = items_run(r, items, n);
        if (rc)
            db_rollback(db);
        else
            rc = db_commit(db);
    }
    if (rc) {
        err_setf(err, errlen, "%s", rc == ERR_IO ? "the store cannot save the changes (disk full or read-only data "
                                                  "dir? see the log); nothing was applied"
                                                : err_str(rc));
        return rc;
    }
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].rc == ERR_OK) {
            done++;
            if (applied)
                applied(arg, items[i].device_id, items[i].module_id, items[i].done);
        }
    }
    log_info("registry: bulk operation: %zu of %zu applied", done, n);
    *result = result_json(items, n);
    return *result ? ERR_OK : ERR_NOMEM;
}
