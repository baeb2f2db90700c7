/* twinstore.h -- twins in the durable store (db.h, table twins): one row per identity holding the twin's own
 * JSON text (hub/twin.c twin_save), replaced whole on each change and removed with its identity (ON DELETE
 * CASCADE). The store never looks inside the text. Tests: tests/unit/test_twinstore.c. */
#ifndef IOTHUB_TWINSTORE_H
#define IOTHUB_TWINSTORE_H

#include <stddef.h>

struct db;

/* Brings the twins table up to date (db_migrate, module "twins"; after the registry's, whose identities it
 * references). Call once at start, before the other functions. Returns ERR_OK, ERR_INVALID or ERR_IO with a
 * one-line reason in err. */
int twinstore_migrate(struct db *db, char *err, size_t errlen);

/* Saves (inserts or replaces) the twin text of device_id / module_id (NULL or "" for a device), committed
 * before it returns (inside an enclosing transaction: with it). The identity must be in the store. Returns
 * ERR_OK, ERR_NOT_FOUND (no such identity), ERR_IO (logged; the row is as it was) or ERR_NOMEM. */
int twinstore_save(struct db *db, const char *device_id, const char *module_id, const char *text);

/* Calls fn for every stored twin (module_id NULL for a device twin), ordered by ids. fn's return value other
 * than ERR_OK is logged and the row skipped (a corrupt twin must not stop the emulator). Returns ERR_OK or
 * ERR_IO. */
int twinstore_load(struct db *db,
                   int (*fn)(void *ctx, const char *device_id, const char *module_id, const char *text, size_t len),
                   void *ctx);

#endif
