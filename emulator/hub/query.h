/* query.h -- the IoT Hub query language (twin queries, jobs' queryCondition) as a pure module: a bounded
 * parser from text to a compiled query, and evaluation of that query over jansson documents (a device twin,
 * a module twin or a device-job record). No I/O, no globals, no hub state: the REST layer feeds it documents.
 * Tests: tests/unit/test_query.c; fuzz: tests/fuzz/fuzz_query.c.
 *
 * What is supported (iot-hub-devguide-query-language, query-twins, query-jobs):
 *   SELECT [TOP n] * | item [AS alias] [, ...]  FROM devices | devices.modules | devices.jobs
 *       [WHERE condition] [GROUP BY path [, ...]]
 *   item: a path (deviceId, tags.location.region, properties.reported['odd-key']) or an aggregate:
 *       COUNT(), SUM(path), AVG(path), MIN(path), MAX(path).
 *   condition: OR < AND < NOT < comparison (=, !=, <>, <, <=, >, >=, IN [..], NIN [..]) < + - < * / % <
 *       unary minus; parentheses; constants 'single' or "double" quoted strings (escapes \' \" \\ \/ \b \f
 *       \n \r \t \uXXXX), decimal and 0x hex numbers, true, false, null, undefined; functions IS_DEFINED,
 *       IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE (one argument),
 *       STARTSWITH, ENDSWITH, CONTAINS (two strings). Keywords and function names are case-insensitive.
 *   query_parse_condition parses a bare condition (a job's queryCondition), as FROM devices.
 * Semantics (the hub's, after Cosmos DB, on which its language is modelled):
 *   - Paths look a key up exactly, then ASCII case-insensitively ("DeviceId" finds deviceId). A path may
 *     start with its collection's name (devices.jobs.jobId in FROM devices.jobs). No array indexing.
 *   - Conditions are three-valued: a comparison with an undefined side, or between different types, or
 *     ordering (<, >...) of anything but two numbers or two strings, is undefined; so is arithmetic on
 *     non-numbers. A document matches only when the condition is exactly true. So `x != 'a'` does not match
 *     a twin without x, nor one whose x is a number. Objects and arrays are never compared (the hub says
 *     comparisons are between primitives only). Strings compare ordinally (byte-wise UTF-8, which is code
 *     point order). Numbers compare as doubles (twin integers are within +-2^52, so exactly).
 *   - IN is true when the value equals one list constant, NIN when the value is defined and equals none.
 *   - Projection: each item's key is its alias, else the key as found in the document for the path's last
 *     segment (SELECT DeviceId -> "deviceId"); undefined items are left out of the row.
 *   - Aggregation: rows are one per GROUP BY group (insertion order), or exactly one without GROUP BY (COUNT
 *     is 0 when nothing matched). An aggregate without an alias is named $1, $2... Plain items in an
 *     aggregate query must be GROUP BY paths. Devices where a GROUP BY path is undefined form their own
 *     group, whose row leaves that item out. SUM/AVG/MIN/MAX take numbers only; with none, the item is
 *     left out.
 *   - devices.jobs takes SELECT * only and no GROUP BY (as the hub documents).
 * IS_NULL..IS_PRIMITIVE and CONTAINS are documented by the hub for routing conditions; accepted here too.
 * Not supported (a parse error): JOIN, ORDER BY, subqueries, array
 * indexing, the routing-only functions (LENGTH, LOWER, UPPER, CONCAT, SUBSTRING, INDEX_OF, AS_NUMBER, math),
 * STARTS_WITH/ENDS_WITH spellings (the hub rejects them for twins), COUNT(x), expressions in SELECT.
 * Use (POST /devices/query; a job's queryCondition with query_parse_condition):
 *     if (query_parse(text, len, &q, &e)) -> 400 with e.message (ERR_MALFORMED, ERR_TOO_BIG), 500 (ERR_NOMEM)
 *     if query_is_aggregate(q): a = query_agg_new(q); for each document d of query_source(q):
 *         if (query_match(q, d)) query_agg_add(a, d);   then rows = query_agg_result(a)
 *     else: for each d: if (query_match(q, d)) append query_project(q, d), stopping at query_top(q) rows
 *     page the rows; answer x-ms-item-type: query_item_type(q)
 * Error texts follow the hub's parser ("SQL query parse failed due to following errors: Line 1:29 ...",
 * column 0-based in characters); the exact hub wording for each case is not known, see README. */
#ifndef IOTHUB_QUERY_H
#define IOTHUB_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Limits. The hub documents 8192 characters for a query; the rest are the emulator's own bounds. */
#define QUERY_MAX_CHARS 8192u    /* characters (UTF-8 code points) in a query or condition */
#define QUERY_MAX_NESTING 32u    /* nested parentheses / NOT / unary minus / function arguments */
#define QUERY_MAX_DEPTH 64u      /* depth of the expression tree (bounds evaluation recursion) */
#define QUERY_MAX_LIST 1000u     /* constants in one IN / NIN list */
#define QUERY_MAX_TERMS 1000u    /* operands of one AND / OR chain */
#define QUERY_MAX_ITEMS 64u      /* SELECT items, and GROUP BY paths */
#define QUERY_MAX_SEGMENTS 16u   /* segments in one path (twins nest at most 10 below properties.*) */
#define QUERY_MAX_KEY 1024u      /* bytes in one path segment (the hub's key limit) */
#define QUERY_MAX_GROUPS 100000u /* groups one aggregation may hold */

/* The hub's answer to a bad query is HTTP 400 with this errorCode (ArgumentInvalid; a best guess, the hub's
 * exact code for a query syntax error is not documented). */
#define QUERY_HUB_ERROR_CODE 400004

struct query;
struct query_agg;

enum query_source {
    QUERY_DEVICES, /* FROM devices: device twins */
    QUERY_MODULES, /* FROM devices.modules: module twins */
    QUERY_JOBS,    /* FROM devices.jobs: one record per (device, job) */
};

/* A parse failure. offset is the byte offset of the offending token in the text; line is 1-based and
 * column 0-based in characters (the hub's "Line 1:29" form). message is the whole text for the hub's error
 * envelope, e.g. "SQL query parse failed due to following errors: Line 1:9 mismatched input 'FORM'
 * expecting FROM". */
struct query_error {
    size_t offset;
    unsigned line;
    unsigned column;
    char message[384];
};

/* Parses a whole query (text need not be NUL-terminated; len bytes). On ERR_OK *out is the compiled query
 * (free with query_free). Otherwise *out is NULL and, except for ERR_NOMEM/ERR_INVALID, err (may be NULL)
 * says where and why: ERR_MALFORMED for a syntax or semantic error, ERR_TOO_BIG for a limit above. */
int query_parse(const char *text, size_t len, struct query **out, struct query_error *err);
/* Parses a bare condition (a job's queryCondition, "deviceId IN ['a','b']") into a SELECT * FROM devices
 * query. Same results as query_parse. */
int query_parse_condition(const char *text, size_t len, struct query **out, struct query_error *err);
/* Accepts NULL. */
void query_free(struct query *q);

enum query_source query_source(const struct query *q);
/* True for SELECT * (rows are whole documents). */
bool query_selects_all(const struct query *q);
/* True when rows come from query_agg_* (an aggregate or GROUP BY), false when from query_project. */
bool query_is_aggregate(const struct query *q);
/* The TOP n bound on rows, or -1 without TOP. The caller applies it. */
long query_top(const struct query *q);
/* The x-ms-item-type of the rows: "twin" (SELECT * on twins), "deviceJob" (SELECT * FROM devices.jobs) or
 * "raw" (projections and aggregates). */
const char *query_item_type(const struct query *q);

/* True when doc satisfies the WHERE condition (always, without one). doc is not changed. */
bool query_match(const struct query *q, const json_t *doc);
/* The row for one matching document of a non-aggregate query: a deep copy of doc for SELECT *, else a new
 * object with the projected items. Returns a new reference (caller json_decref's) or NULL on ERR_NOMEM or
 * when q is an aggregate query. */
json_t *query_project(const struct query *q, const json_t *doc);

/* Aggregation: new accumulator for an aggregate query (NULL on ERR_NOMEM or if q is not one); add every
 * document that query_match accepted; then query_agg_result. q must outlive the accumulator. */
struct query_agg *query_agg_new(const struct query *q);
/* Returns ERR_OK, ERR_NOMEM, or ERR_TOO_BIG past QUERY_MAX_GROUPS groups (the accumulator is unchanged). */
int query_agg_add(struct query_agg *a, const json_t *doc);
/* The rows so far: a new JSON array (caller json_decref's), NULL on ERR_NOMEM. May be called repeatedly. */
json_t *query_agg_result(const struct query_agg *a);
/* Accepts NULL. */
void query_agg_free(struct query_agg *a);

#endif
