/* fuzz_dashapi.c -- libFuzzer harness for the dashboard's parsers of network input (dashapi.h): the
 * request-target classifier, the Host check and the C2D send body. The first byte picks the parser; must never
 * crash, leak or read past the input, and a parsed message must respect c2d.h's limits. Seed corpus:
 * corpus/fuzz_dashapi/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dashapi.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] % 2 == 0) {
        struct dashapi_route rt;
        if (dashapi_route_parse(text, &rt) == ERR_OK && rt.kind == DASHAPI_C2D && !rt.malformed && !rt.device_id)
            abort();
        dashapi_route_cleanup(&rt);
    } else {
        struct c2d_message m;
        json_t *holder = NULL;
        char why[256];
        /* not NUL-terminated: the parser must take the length */
        int rc = dashapi_c2d_parse((const char *)data + 1, size - 1, &m, &holder, why, sizeof why);
        if (rc == ERR_OK && (m.body_len > C2D_MAX_BODY || m.n_props > C2D_MAX_PROPS || !m.message_id[0]))
            abort();
        json_decref(holder);
    }
    free(text);
    return 0;
}
