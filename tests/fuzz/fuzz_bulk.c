/* fuzz_bulk.c -- libFuzzer harness for bulk_apply, which runs the untrusted body of POST /devices (an array of
 * ExportImportDevice) against the registry: any bytes that jansson parses must never crash it, leak, or leave
 * memory and the store disagreeing. One in-memory store with a device and a module, re-created every 64 inputs
 * so it does not grow without end; after each input the registry is reloaded from the store and must match.
 * Seed corpus: corpus/fuzz_bulk/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bulk.h"
#include "db.h"
#include "err.h"
#include "registry.h"

static struct registry *reg;
static unsigned runs;

static void reg_reset(void)
{
    char err[256];
    if (reg) {
        struct db *old = registry_db(reg);
        registry_free(reg);
        db_close(old);
    }
    struct db *db = db_open(NULL, err, sizeof err);
    reg = db ? registry_new(db, NULL, err, sizeof err) : NULL;
    if (!reg)
        abort();
    json_t *body = json_object();
    const struct identity *out;
    bool created;
    if (registry_put(reg, "dev1", NULL, body, NULL, &out, &created, err, sizeof err) ||
        registry_put(reg, "dev1", "mod1", body, NULL, &out, &created, err, sizeof err))
        abort();
    json_decref(body);
}

/* Every identity in memory is in the store and the other way round (counts and each device's presence). */
static void check_agrees(void)
{
    char err[256];
    struct registry *again = registry_new(registry_db(reg), NULL, err, sizeof err);
    if (!again || registry_device_count(again) != registry_device_count(reg))
        abort();
    json_t *list = registry_list_devices(reg, 1000);
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d) {
        const char *id = json_string_value(json_object_get(d, "deviceId"));
        const struct identity *a = registry_find(reg, id, NULL), *b = registry_find(again, id, NULL);
        if (!a || !b || a->version != b->version || a->enabled != b->enabled || strcmp(a->primary_key, b->primary_key))
            abort();
    }
    json_decref(list);
    registry_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reg || ++runs % 64 == 0)
        reg_reset();
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!body)
        return 0;
    json_t *result = NULL;
    char err[256];
    int rc = bulk_apply(reg, body, NULL, NULL, &result, err, sizeof err);
    if (rc == ERR_OK) {
        json_t *errors = json_object_get(result, "errors");
        if (!json_is_array(errors) || json_array_size(errors) > json_array_size(body) ||
            json_is_true(json_object_get(result, "isSuccessful")) != (json_array_size(errors) == 0))
            abort();
    } else if (result || (rc != ERR_INVALID && rc != ERR_NOMEM)) {
        abort();
    }
    json_decref(result);
    json_decref(body);
    check_agrees();
    return 0;
}
