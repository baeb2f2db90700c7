/* fuzz_service_answers.c -- libFuzzer harness for what iothub-service parses from a hub's answers: error
 * bodies (both envelopes, service_response_error), method results, identities and identity lists
 * (service_response.c), and the job JSON that `job get --wait` reads for its progress line and final status
 * (service_cmd_job_progress, service_cmd_job_final_status). Never a crash, a leak or a read past the input
 * (the body is copied to a block of exactly its length: the parsers take length-delimited text); a job's
 * status is final or not. Seed corpus: corpus/fuzz_service_answers/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "service_cmd.h"
#include "service_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    struct service_client_result r;
    memset(&r, 0, sizeof r);
    service_response_error(size ? 400 + data[0] : 500, body, size, size > 1 ? "SomeHeader" : NULL, &r);
    service_client_result_cleanup(&r);
    memset(&r, 0, sizeof r);
    service_response_method(body, size, &r);
    service_client_result_cleanup(&r);
    struct service_client_identity id;
    if (service_response_identity(body, size, &id) == ERR_OK)
        service_client_identity_cleanup(&id);
    struct service_client_identity *ids = NULL;
    size_t n = 0;
    if (service_response_identity_list(body, size, &ids, &n) == ERR_OK)
        service_client_identity_list_free(ids, n);
    free(body);

    /* The job functions take NUL-terminated text (main.c has the answer as a string). */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct buf line;
    buf_init(&line, 64 * 1024);
    int final = -1;
    if (service_cmd_job_progress(text, &final, &line) == ERR_OK && final != 0 && final != 1)
        abort();
    buf_cleanup(&line);
    service_cmd_job_final_status(text);
    free(text);
    return 0;
}
