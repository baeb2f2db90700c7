/* c2dpersist.h -- the C2D queues' persistence seam (c2d.h struct c2d_store) over the durable store
 * (store/c2dstore.h): a message's headers become a JSON text, its body a blob. main.c plugs it into c2d_new.
 * Tests: tests/unit/test_c2dstore.c; tests/integration/test_amqp.py (C2dRestartTest). */
#ifndef IOTHUB_C2DPERSIST_H
#define IOTHUB_C2DPERSIST_H

#include <stddef.h>

#include "c2d.h"

struct db;

/* Migrates the c2d_messages table of db and fills *out (ctx = db, which must outlive the queues). ERR_OK, or
 * an error with a one-line reason in err. */
int c2dpersist_init(struct c2d_store *out, struct db *db, char *err, size_t errlen);

#endif
