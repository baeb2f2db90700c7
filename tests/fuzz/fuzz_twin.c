/* fuzz_twin.c -- libFuzzer harness for emulator/hub/twin.c on network input: the bytes are a device's
 * reported-properties patch and a service PATCH / PUT body (first byte picks which). A refused change must
 * leave the twin exactly as it was; an accepted one must keep every section within the hub's size limits and
 * round-trip through twin_save / twin_load. Never a crash, leak or overread. Seed corpus: corpus/fuzz_twin/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "twin.h"

static void check_limits(const struct twin *t)
{
    json_t *p = twin_properties(t);
    json_t *d = json_deep_copy(json_object_get(p, "desired")), *r = json_deep_copy(json_object_get(p, "reported"));
    json_object_del(d, "$version");
    json_object_del(r, "$version");
    if (json_dumpb(d, NULL, 0, JSON_COMPACT) > TWIN_DESIRED_MAX || json_dumpb(r, NULL, 0, JSON_COMPACT) > TWIN_REPORTED_MAX)
        abort();
    json_decref(d);
    json_decref(r);
    json_decref(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    struct twin *t = twin_new();
    if (!t) {
        json_decref(j);
        return 0;
    }
    struct twin_error e;
    for (int round = 0; round < 2; round++) {
        char *before = twin_save(t);
        json_t *push = NULL;
        int rc = data[0] % 3 == 0   ? twin_report(t, j, 1000, &e)
                 : data[0] % 3 == 1 ? twin_update(t, j, TWIN_MERGE, 1000, &push, &e)
                                    : twin_update(t, j, TWIN_REPLACE, 1000, &push, &e);
        char *after = twin_save(t);
        if (!before || !after)
            abort();
        if (rc != ERR_OK && (strcmp(before, after) != 0 || push))
            abort(); /* a refused change changed the twin */
        if (rc == ERR_INVALID && (e.code != TWIN_ERR_ARGUMENT_INVALID && e.code != TWIN_ERR_MAX_PROPERTIES))
            abort();
        if (rc == ERR_OK) {
            check_limits(t);
            struct twin *u = NULL;
            if (twin_load(after, strlen(after), &u) != ERR_OK)
                abort();
            char *again = twin_save(u);
            if (!again || strcmp(again, after) != 0)
                abort();
            free(again);
            twin_free(u);
        }
        json_decref(push);
        free(before);
        free(after);
    }
    json_decref(j);
    twin_free(t);
    return 0;
}
