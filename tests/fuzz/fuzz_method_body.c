/* fuzz_method_body.c -- libFuzzer harness for restapi_method_parse's one-pass path (mjson.c), with jansson as the
 * oracle: restapi_method_parse_tree parses the same body through a jansson tree (json_loadb, JSON_DECODE_ANY |
 * JSON_ALLOW_NUL, the payload dumped compact). Both must agree on every input: the return code, the error (code,
 * envelope, message), the method name, the timeouts and the payload's bytes (jansson's compact form). Also: when
 * the scanner takes a body, jansson must accept the body and dump the payload to exactly the bytes passed on.
 * Seed corpus: corpus/fuzz_method_body/.
 * fuzz-max-len: 8192 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "mjson.h"
#include "restapi.h"

static void same(const struct restapi_method_call *a, const struct restapi_method_call *b)
{
    if ((a->method_name == NULL) != (b->method_name == NULL) ||
        (a->method_name && strcmp(a->method_name, b->method_name) != 0))
        abort();
    if ((a->payload == NULL) != (b->payload == NULL) || a->payload_len != b->payload_len ||
        (a->payload && memcmp(a->payload, b->payload, a->payload_len) != 0))
        abort();
    if (a->response_timeout_s != b->response_timeout_s || a->connect_timeout_s != b->connect_timeout_s)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The bytes alone in an allocation of their own size, so ASan sees any read past the end. */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    struct restapi_method_call fast, tree;
    struct restapi_error ef, et;
    memset(&ef, 0, sizeof ef);
    memset(&et, 0, sizeof et);
    int rf = restapi_method_parse(body, size, &fast, &ef);
    int rt = restapi_method_parse_tree(body, size, &tree, &et);
    if (rf != rt)
        abort();
    if (rf == ERR_INVALID && (ef.code != et.code || ef.envelope != et.envelope || strcmp(ef.message, et.message)))
        abort();
    same(&fast, &tree);
    struct mjson_method m;
    if (mjson_method_scan((const uint8_t *)body, size, &m)) {
        json_t *j = json_loadb(body, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!j || !json_is_object(j))
            abort();
        json_decref(j);
        if (m.payload.kind == MJSON_OTHER && !m.payload.spaced && rf == ERR_OK &&
            (fast.payload != (const char *)m.payload.p || fast.payload_len != m.payload.len))
            abort(); /* already compact: passed on without a copy */
    }
    restapi_method_cleanup(&fast);
    restapi_method_cleanup(&tree);
    free(body);
    return 0;
}
