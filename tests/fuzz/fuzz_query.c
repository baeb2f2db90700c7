/* fuzz_query.c -- libFuzzer harness for the query language (emulator/hub/query): parses the input both as a
 * whole query and as a bare condition, then evaluates what parsed against a fixed device twin, a module twin
 * and a device-job record (match, projection, aggregation). Must never crash, leak, recurse without bound or
 * read past the input; an error must point inside the input and carry the hub's message prefix; a condition
 * must match the same documents as the same text after "SELECT * FROM devices WHERE ".
 * Seed corpus: corpus/fuzz_query/ (queries from tests/unit/test_query.c and the hub's documentation). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "query.h"

static const char *const DOCS[] = {
    "{\"deviceId\":\"dev1\",\"etag\":\"AAAAAAAAAAc=\",\"version\":3,\"status\":\"enabled\","
    "\"connectionState\":\"Connected\",\"lastActivityTime\":\"2026-01-01T00:00:00Z\","
    "\"x509Thumbprint\":{\"primaryThumbprint\":null},\"tags\":{\"location\":{\"region\":\"US\"},\"floor\":3,"
    "\"enabled\":true,\"list\":[1,2],\"nothing\":null,\"odd-key\":\"x\"},\"properties\":{\"desired\":{\"a\":1,"
    "\"$version\":4},\"reported\":{\"temp\":21.5,\"connectivity\":\"wifi\",\"$version\":7}}}",
    "{\"deviceId\":\"dev1\",\"moduleId\":\"m1\",\"tags\":{\"floor\":\"3\"},\"properties\":{\"reported\":{}}}",
    "{\"deviceId\":\"dev2\",\"jobId\":\"j1\",\"jobType\":\"scheduleUpdateTwin\",\"status\":\"completed\"}",
};
#define NDOCS (sizeof DOCS / sizeof DOCS[0])

static json_t *docs[NDOCS];

static void run(const struct query *q)
{
    (void)query_source(q);
    (void)query_top(q);
    if (!query_item_type(q))
        abort();
    struct query_agg *agg = query_is_aggregate(q) ? query_agg_new(q) : NULL;
    if (query_is_aggregate(q) && !agg)
        abort(); /* only on ERR_NOMEM, which libFuzzer's malloc limit turns into a crash anyway */
    for (size_t i = 0; i < NDOCS; i++) {
        if (!query_match(q, docs[i]))
            continue;
        if (agg) {
            if (query_agg_add(agg, docs[i]) != ERR_OK)
                abort();
        } else {
            json_t *row = query_project(q, docs[i]);
            if (!json_is_object(row))
                abort();
            json_decref(row);
        }
    }
    if (agg) {
        json_t *rows = query_agg_result(agg);
        if (!json_is_array(rows))
            abort();
        json_decref(rows);
        query_agg_free(agg);
    }
}

static void check_error(int rc, const struct query_error *err, size_t size)
{
    if (rc != ERR_MALFORMED && rc != ERR_TOO_BIG)
        abort();
    if (err->offset > size || err->line < 1 ||
        strncmp(err->message, "SQL query parse failed due to following errors: Line ", 53) != 0)
        abort();
}

/* A condition that parses means the same inside "SELECT * FROM devices WHERE ..." (when that fits). */
static void same_as_where(const struct query *cond, const char *text, size_t size)
{
    static const char prefix[] = "SELECT * FROM devices WHERE ";
    size_t plen = sizeof prefix - 1;
    if (size + plen > QUERY_MAX_CHARS)
        return;
    char *full = malloc(plen + size);
    if (!full)
        abort();
    memcpy(full, prefix, plen);
    memcpy(full + plen, text, size);
    struct query *q = NULL;
    struct query_error err;
    if (query_parse(full, plen + size, &q, &err) != ERR_OK)
        abort();
    for (size_t i = 0; i < NDOCS; i++)
        if (query_match(q, docs[i]) != query_match(cond, docs[i]))
            abort();
    query_free(q);
    free(full);
}

/* Parses with parse; a query that parsed is run, a refusal must leave no query and a sound error. Returns the
 * query (NULL when refused), for the caller to free. */
static struct query *parse_and_run(int (*parse)(const char *, size_t, struct query **, struct query_error *),
                                   const char *text, size_t size)
{
    struct query *q = NULL;
    struct query_error err;
    int rc = parse(text, size, &q, &err);
    if (rc == ERR_OK)
        run(q);
    else if (q)
        abort();
    else
        check_error(rc, &err, size);
    return rc == ERR_OK ? q : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!docs[0]) {
        for (size_t i = 0; i < NDOCS; i++) {
            docs[i] = json_loads(DOCS[i], 0, NULL);
            if (!docs[i])
                abort();
        }
    }
    const char *text = (const char *)data;
    query_free(parse_and_run(query_parse, text, size));
    struct query *q = parse_and_run(query_parse_condition, text, size);
    if (q)
        same_as_where(q, text, size);
    query_free(q);
    return 0;
}
