/* sessionstore.h -- persisted MQTT sessions in the durable store (db.h, table sessions): one row per identity
 * holding the front's session state text (mqtt/session.c: the accepted subscriptions), replaced on each change
 * and removed with its identity (ON DELETE CASCADE). The store never looks inside the text.
 * Tests: tests/unit/test_sessionstore.c; tests/integration/test_mqtt_sessions.py (across restarts). */
#ifndef IOTHUB_SESSIONSTORE_H
#define IOTHUB_SESSIONSTORE_H

#include <stddef.h>

struct db;

/* Creates or updates the table (db_migrate); call once after the registry's migration. ERR_OK, or an error
 * with a one-line reason in err. */
int sessionstore_migrate(struct db *db, char *err, size_t errlen);
/* Inserts or replaces the state of device_id / module_id (NULL or "" for a device), committed before it returns
 * (inside an enclosing transaction: with it). ERR_OK, ERR_NOT_FOUND (no such identity in the store), ERR_IO
 * (logged; the row is as it was). */
int sessionstore_put(struct db *db, const char *device_id, const char *module_id, const char *state);
/* The kept state, malloc'd (caller frees), or NULL when none is kept (or on ERR_NOMEM / ERR_IO, logged). */
char *sessionstore_get(struct db *db, const char *device_id, const char *module_id);
/* Forgets the state (a no-op when none). ERR_OK or ERR_IO. */
int sessionstore_delete(struct db *db, const char *device_id, const char *module_id);

#endif
