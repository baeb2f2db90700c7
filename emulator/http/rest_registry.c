/* rest_registry.c -- the identity registry routes (rest_internal.h): GET /devices, POST /devices (bulk),
 * GET /devices/{id}/modules, GET/PUT/DELETE /devices/{id}[/modules/{mid}], GET /statistics/devices|service.
 * The registry (registry.h, bulk.h) does the work; the hub is told about disabled and deleted identities.
 * Tests: tests/unit/test_rest_http.c. */
#include "rest_internal.h"

#include <string.h>

#include "auth.h"
#include "bulk.h"
#include "c2d.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "registry.h"

/* After the bulk commit: the same follow-ups as one PUT or DELETE. */
static void bulk_applied(void *arg, const char *device_id, const char *module_id, enum bulk_op op)
{
    struct rest *r = arg;
    log_info("registry: %s %s%s%s (bulk)",
             op == BULK_CREATE   ? "created"
             : op == BULK_UPDATE ? "updated"
                                 : "deleted",
             device_id, module_id ? "/" : "", module_id ? module_id : "");
    if (op == BULK_DELETE) {
        hub_forget_identity(r->hub, device_id, module_id);
        return;
    }
    const struct identity *id = registry_find(r->reg, device_id, module_id);
    if (id && !id->enabled)
        hub_disconnect_identity(r->hub, device_id, module_id, "identity disabled");
}

/* POST /devices: the bulk registry operation (bulk.h). 200 with the BulkRegistryOperationResult when every
 * item was applied, 400 with it when some were not (the others are applied, as on the hub). */
static void devices_bulk(struct rest_req *q)
{
    if (!rest_service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    json_t *body = rest_body_json(q, false, false);
    if (!body)
        return;
    json_t *result = NULL;
    char msg[256] = "";
    int rc = bulk_apply(q->r->reg, body, bulk_applied, q->r, &result, msg, sizeof msg);
    json_decref(body);
    if (rc == ERR_INVALID)
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s", msg);
    else if (rc)
        rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "%s", msg);
    else
        rest_answer_json(q, json_is_true(json_object_get(result, "isSuccessful")) ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST,
                         result, NULL);
}

void rest_route_devices(struct rest_req *q)
{
    if (strcmp(q->method, "POST") == 0) {
        devices_bulk(q);
        return;
    }
    if (!rest_service_prelude(q, AUTH_REGISTRY_READ) || !rest_top_valid(q))
        return;
    rest_answer_json(q, MHD_HTTP_OK, registry_list_devices(q->r->reg, (size_t)q->route.top), NULL);
}

void rest_route_modules(struct rest_req *q)
{
    if (!rest_service_prelude(q, AUTH_REGISTRY_READ) || !rest_device_exists(q))
        return;
    rest_answer_json(q, MHD_HTTP_OK, registry_list_modules(q->r->reg, q->route.device_id), NULL);
}

static void identity_get(struct rest_req *q)
{
    if (!rest_service_prelude(q, AUTH_REGISTRY_READ))
        return;
    const struct identity *id = registry_find(q->r->reg, q->route.device_id, q->route.module_id);
    if (!id) {
        rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
        return;
    }
    json_t *j = registry_identity_json(id);
    if (j && q->r->c2d && !id->module_id[0])
        json_object_set_new(j, "cloudToDeviceMessageCount",
                            json_integer((json_int_t)c2d_count(q->r->c2d, id->device_id, c2d_wall_ms())));
    rest_answer_json(q, MHD_HTTP_OK, j, id);
}

/* Answers a registry_put / registry_delete failure. */
static void answer_registry_error(struct rest_req *q, int rc, const char *msg)
{
    const struct restapi_route *rt = &q->route;
    switch (rc) {
    case ERR_EXISTS:
        if (rt->module_id)
            rest_answer_errorf(q, RESTAPI_MODULE_EXISTS, RESTAPI_ENVELOPE_A,
                               "A module with ID '%s' is already registered on device '%s'.", rt->module_id,
                               rt->device_id);
        else
            rest_answer_errorf(q, RESTAPI_DEVICE_EXISTS, RESTAPI_ENVELOPE_A,
                               "A device with ID '%s' is already registered.", rt->device_id);
        break;
    case ERR_NOT_FOUND:
        rest_answer_not_found(q, RESTAPI_ENVELOPE_A);
        break;
    case ERR_PRECONDITION:
        rest_answer_errorf(q, RESTAPI_PRECONDITION_FAILED, RESTAPI_ENVELOPE_A,
                           "Precondition failed: the If-Match etag does not match the %s's etag.",
                           rt->module_id ? "module" : "device");
        break;
    case ERR_INVALID:
        rest_answer_errorf(q, RESTAPI_ARGUMENT_INVALID, RESTAPI_ENVELOPE_A, "%s",
                           msg && *msg ? msg : "Invalid argument.");
        break;
    case ERR_IO:
        rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A,
                           "The store cannot save the change (disk full or read-only data dir? see the emulator's "
                           "log); nothing was changed.");
        break;
    default:
        rest_answer_errorf(q, RESTAPI_SERVER_ERROR, RESTAPI_ENVELOPE_A, "Internal error: %s.", err_str(rc));
        break;
    }
}

static const char *if_match(struct rest_req *q)
{
    return MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
}

static void identity_put(struct rest_req *q)
{
    struct rest *r = q->r;
    const struct restapi_route *rt = &q->route;
    if (!rest_service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    json_t *body = rest_body_json(q, true, false);
    if (!body)
        return;
    const struct identity *id = NULL;
    bool created = false;
    char msg[256] = "";
    int rc = registry_put(r->reg, rt->device_id, rt->module_id, body, if_match(q), &id, &created, msg, sizeof msg);
    json_decref(body);
    if (rc != ERR_OK) {
        answer_registry_error(q, rc, msg);
        return;
    }
    bool disabled = !id->enabled;
    rest_answer_json(q, rt->module_id && created ? MHD_HTTP_CREATED : MHD_HTTP_OK, registry_identity_json(id), id);
    log_info("registry: %s %s%s%s", created ? "created" : "updated", rt->device_id, rt->module_id ? "/" : "",
             rt->module_id ? rt->module_id : "");
    if (disabled)
        hub_disconnect_identity(r->hub, rt->device_id, rt->module_id, "identity disabled");
}

static void identity_delete(struct rest_req *q)
{
    struct rest *r = q->r;
    const struct restapi_route *rt = &q->route;
    if (!rest_service_prelude(q, AUTH_REGISTRY_WRITE))
        return;
    int rc = registry_delete(r->reg, rt->device_id, rt->module_id, if_match(q));
    if (rc != ERR_OK) {
        answer_registry_error(q, rc, NULL);
        return;
    }
    rest_answer_empty(q);
    log_info("registry: deleted %s%s%s", rt->device_id, rt->module_id ? "/" : "", rt->module_id ? rt->module_id : "");
    hub_forget_identity(r->hub, rt->device_id, rt->module_id);
    if (r->c2d && !rt->module_id)
        c2d_purge(r->c2d, rt->device_id); /* a re-created device starts with an empty queue */
}

void rest_route_identity(struct rest_req *q)
{
    if (strcmp(q->method, "GET") == 0)
        identity_get(q);
    else if (strcmp(q->method, "PUT") == 0)
        identity_put(q);
    else
        identity_delete(q);
}

/* GET /statistics/devices and /statistics/service (the registry's and the live connections' counts). */
void rest_route_statistics(struct rest_req *q)
{
    if (!rest_service_prelude_any(q, AUTH_REGISTRY_READ, AUTH_SERVICE_CONNECT))
        return;
    if (q->route.kind == RESTAPI_ROUTE_STATS_SERVICE) {
        struct hub_stats st;
        hub_get_stats(q->r->hub, &st);
        rest_answer_json(q, MHD_HTTP_OK, json_pack("{s:I}", "connectedDeviceCount", (json_int_t)st.devices_connected),
                         NULL);
        return;
    }
    size_t total = 0, enabled = 0;
    json_t *devices = registry_list_devices(q->r->reg, SIZE_MAX);
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d)
    {
        const struct identity *id = registry_find(q->r->reg, json_string_value(json_object_get(d, "deviceId")), NULL);
        total += id != NULL;
        enabled += id && id->enabled;
    }
    json_decref(devices);
    if (!devices) {
        rest_answer_nomem(q);
        return;
    }
    rest_answer_json(q, MHD_HTTP_OK,
                     json_pack("{s:I,s:I,s:I}", "totalDeviceCount", (json_int_t)total, "enabledDeviceCount",
                               (json_int_t)enabled, "disabledDeviceCount", (json_int_t)(total - enabled)),
                     NULL);
}
