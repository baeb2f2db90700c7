/* fuzz_connstr.c -- libFuzzer harness for connstr_parse (and connstr_format on what it accepts): must never
 * crash, leak or read past the input; an accepted string must format and re-parse to the same fields; an error
 * message must be one line. Seed corpus: corpus/fuzz_connstr/ (from tests/unit/test_connstr.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connstr.h"
#include "err.h"

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct connstr cs, again;
    char err[128];
    if (connstr_parse((const char *)data, size, &cs, err, sizeof(err)) != ERR_OK) {
        if (strchr(err, '\n') || cs.host_name || cs.key)
            abort();
        return 0;
    }
    char *text = connstr_format(&cs);
    if (!text)
        abort();
    /* values never hold ';' or NUL and names are fixed, so the formatted text must parse back */
    if (connstr_parse(text, strlen(text), &again, err, sizeof(err)) != ERR_OK)
        abort();
    {
        if (again.kind != cs.kind || !same(again.host_name, cs.host_name) ||
            !same(again.device_id, cs.device_id) || !same(again.module_id, cs.module_id) ||
            !same(again.key, cs.key) || !same(again.signature, cs.signature) ||
            !same(again.key_name, cs.key_name) || !same(again.gateway_host_name, cs.gateway_host_name))
            abort();
        connstr_cleanup(&again);
    }
    free(text);
    connstr_cleanup(&cs);
    return 0;
}
