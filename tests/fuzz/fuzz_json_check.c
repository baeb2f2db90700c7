/* fuzz_json_check.c -- libFuzzer harness for restapi_json_is_valid, the validator of the device answers the
 * emulator splices into method results: must never crash or read past the input, and must agree with jansson
 * (JSON_DECODE_ANY | JSON_ALLOW_NUL), except where jansson refuses valid JSON for its own limits (numbers
 * beyond int64/double, its depth count, NUL in keys), and raw NUL bytes: never valid JSON, refused by us, but jansson skips one
 * after a number (and the old probe spliced it into the result). Also checks that restapi_method_result's body is then
 * valid JSON. Seed corpus: corpus/fuzz_json_check/.
 * fuzz-max-len: 8192 (the depth limit, 2048, needs 4,097 bytes; every input costs four passes, so once the
 * corpus grows long inputs 70,000 halved the rate: 11.8k against 21k execs/s on a 40-minute corpus). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "restapi.h"

static int jansson_limit(const char *text)
{
    static const char *const limits[] = {"too big integer", "too big negative integer", "real number overflow",
                                         "maximum parsing depth reached", "NUL byte in object key not supported"};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (strncmp(text, limits[i], strlen(limits[i])) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool ours = restapi_json_is_valid(data, size);
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    bool nul = memchr(data, 0, size) != NULL;
    if ((nul && ours) || (j && !ours && !nul))
        abort();
    if (!j && ours && !jansson_limit(err.text))
        abort();
    json_decref(j);
    size_t len = 0;
    char *text = restapi_method_result(200, data, size, &len);
    if (text && !restapi_json_is_valid((const uint8_t *)text, len))
        abort();
    free(text);
    return 0;
}
