/* guard_page.h -- test helper (style.md §12, after picohttpparser's test.c): copies a vector to the very end
 * of an mmap'd region that is followed by a PROT_NONE page, so a parser that reads one byte past its input
 * crashes even without ASan. Header-only, for tests/unit/test_*.c; not part of any library. */
#ifndef IOTHUB_TEST_GUARD_PAGE_H
#define IOTHUB_TEST_GUARD_PAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard_page {
    uint8_t *map;    /* whole mapping, data pages then the guard page */
    size_t map_len;
    char *data;      /* the copy: ends exactly where the guard page begins */
};

/* Returns a pointer to len bytes copied from src, ending at a PROT_NONE page; NULL if mmap fails.
 * Release with guard_page_free. A zero-length copy points at the guard page itself. */
static inline char *guard_page_copy(struct guard_page *g, const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    if (data_pages == 0)
        data_pages = 1;
    g->map_len = (data_pages + 1) * page;
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        g->map = NULL;
        g->data = NULL;
        return NULL;
    }
    g->map = m;
    uint8_t *guard = g->map + data_pages * page;
    if (mprotect(guard, page, PROT_NONE) != 0) {
        munmap(g->map, g->map_len);
        g->map = NULL;
        g->data = NULL;
        return NULL;
    }
    g->data = (char *)guard - len;
    if (len)
        memcpy(g->data, src, len);
    return g->data;
}

static inline void guard_page_free(struct guard_page *g)
{
    if (g->map)
        munmap(g->map, g->map_len);
    g->map = NULL;
    g->data = NULL;
}

#endif
