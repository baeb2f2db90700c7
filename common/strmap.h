/* strmap.h -- a small open-addressing hash map from strings (copied) to pointers (not owned).
 * Used where the emulator looks identities up per packet or per call (10,000+ entries). */
#ifndef IOTHUB_STRMAP_H
#define IOTHUB_STRMAP_H

#include <stddef.h>

struct strmap;

/* Returns NULL on ERR_NOMEM. */
struct strmap *strmap_new(void);
/* Frees the map and its key copies, not the values. Accepts NULL. */
void strmap_free(struct strmap *m);
/* Returns the value or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* Inserts or replaces. Returns ERR_OK or ERR_NOMEM. */
int strmap_set(struct strmap *m, const char *key, void *value);
/* Removes key if present; returns its value or NULL. */
void *strmap_remove(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Calls fn for every entry, in no particular order. fn must not change the map. */
void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *ctx), void *ctx);

#endif
