/* strmap.c -- open-addressing (linear probing, backward-shift deletion) string map (see strmap.h). */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct slot {
    char *key; /* NULL = empty */
    void *value;
    uint64_t hash;
};

struct strmap {
    struct slot *slots;
    size_t cap; /* power of two */
    size_t count;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

struct strmap *strmap_new(void)
{
    struct strmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void strmap_free(struct strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static size_t find_slot(const struct strmap *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    size_t i = find_slot(m, key, hash_str(key));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(struct strmap *m)
{
    size_t cap = m->cap * 2;
    struct slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return ERR_OK;
}

int strmap_set(struct strmap *m, const char *key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m))
        return ERR_NOMEM;
    uint64_t h = hash_str(key);
    size_t i = find_slot(m, key, h);
    if (m->slots[i].key) {
        m->slots[i].value = value;
        return ERR_OK;
    }
    char *copy = strdup(key);
    if (!copy)
        return ERR_NOMEM;
    m->slots[i].key = copy;
    m->slots[i].value = value;
    m->slots[i].hash = h;
    m->count++;
    return ERR_OK;
}

void *strmap_remove(struct strmap *m, const char *key)
{
    size_t mask = m->cap - 1;
    size_t i = find_slot(m, key, hash_str(key));
    if (!m->slots[i].key)
        return NULL;
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward-shift the rest of the cluster so lookups never stop at a hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t home = (size_t)m->slots[j].hash & mask;
        int between = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (between)
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j].key = NULL;
        i = j;
    }
    return value;
}

size_t strmap_count(const struct strmap *m)
{
    return m->count;
}

void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *ctx), void *ctx)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            fn(m->slots[i].key, m->slots[i].value, ctx);
}
