/* c2dstore.h -- cloud-to-device queues in the durable store (db.h, table c2d_messages): one row per accepted
 * message, keyed by its hub-wide sequence number, holding its identity, its headers as a JSON text the store
 * never looks inside, and its body; removed when the message leaves its queue and with its identity (ON
 * DELETE CASCADE). The highest sequence number ever stored is kept too (meta "c2d.seq"), so lock tokens are
 * never reused across restarts. hub/c2dpersist.c adapts this to c2d.h's seam.
 * Tests: tests/unit/test_c2dstore.c; tests/integration/test_amqp.py (restarts). */
#ifndef IOTHUB_C2DSTORE_H
#define IOTHUB_C2DSTORE_H

#include <stddef.h>
#include <stdint.h>

struct db;

/* Creates or updates the table (db_migrate); call after the registry's migration. ERR_OK, or an error with a
 * one-line reason in err. */
int c2dstore_migrate(struct db *db, char *err, size_t errlen);
/* Stores message seq of device_id / module_id (NULL or "" for a device), committed before it returns (inside
 * an enclosing transaction: with it). ERR_OK, ERR_NOT_FOUND (no such identity), ERR_EXISTS (seq is taken),
 * ERR_IO (logged; nothing stored). */
int c2dstore_put(struct db *db, const char *device_id, const char *module_id, uint64_t seq, const char *headers,
                 const uint8_t *body, size_t body_len);
/* Forgets message seq (a no-op when absent). ERR_OK or ERR_IO. */
int c2dstore_del(struct db *db, uint64_t seq);
/* Calls fn for every stored message in sequence order; stops at fn's first error and returns it. ERR_OK,
 * fn's error, or ERR_IO. */
typedef int (*c2dstore_fn)(void *arg, const char *device_id, const char *module_id, uint64_t seq,
                           const char *headers, const uint8_t *body, size_t body_len);
int c2dstore_load(struct db *db, c2dstore_fn fn, void *arg);
/* The highest sequence number ever stored (0: none). */
uint64_t c2dstore_last_seq(struct db *db);

#endif
