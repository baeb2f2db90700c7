/* bulk.h -- the hub's bulk registry operation (REST "Bulk Registry - Update Registry", POST /devices): an array of
 * up to 100 ExportImportDevice items, each created, updated or deleted as its importMode says, all in one store
 * transaction, answered with a BulkRegistryOperationResult. Pure registry logic on top of registry.h and db.h;
 * the HTTP glue is in http/rest_registry.c. Tests: tests/unit/test_bulk.c, tests/integration/sdk_bulk.test.js. */
#ifndef IOTHUB_BULK_H
#define IOTHUB_BULK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "registry.h"

#define BULK_MAX_ITEMS 100

enum bulk_op { BULK_CREATE, BULK_UPDATE, BULK_DELETE };

/* Called after the commit for each item that was applied (op is what was done: createOrUpdate reports
 * BULK_CREATE or BULK_UPDATE). module_id is NULL for a device. */
typedef void (*bulk_applied_fn)(void *arg, const char *device_id, const char *module_id, enum bulk_op op);

/* Runs one bulk request. A request the hub refuses as a whole is ERR_INVALID with the reason in err and nothing
 * applied: not a JSON array, empty, more than BULK_MAX_ITEMS, an item that is not an object or has no string
 * "id", an invalid or unsupported importMode, the same identity twice. Otherwise every item runs in its own
 * savepoint of one transaction (a failing item changes nothing and is listed in errors), the transaction is
 * committed, applied() runs for each applied item, and ERR_OK returns *result = {"isSuccessful": no errors,
 * "errors": [{deviceId, moduleId?, errorCode, errorStatus, operation}], "warnings": []} (caller json_decref).
 * importMode (case-insensitive, default createOrUpdate): create, update, updateIfMatchETag, createOrUpdate,
 * createOrUpdateIfMatchETag, delete, deleteIfMatchETag; the etag is "eTag" (or "etag") of the item.
 * ERR_IO (logged) when the store cannot write: then nothing is applied. ERR_NOMEM likewise. */
int bulk_apply(struct registry *r, const json_t *body, bulk_applied_fn applied, void *arg, json_t **result,
               char *err, size_t errlen);

#endif
