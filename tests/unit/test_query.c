/* test_query.c -- unit tests for emulator/hub/query: every grammar feature (SELECT forms, FROM collections,
 * WHERE operators, functions, constants, precedence, GROUP BY, TOP), the three-valued comparison semantics on
 * a fixed twin, projection names, aggregation, the item types, and each error path with its position and
 * message, including every limit. Every parse runs on a copy that ends at a PROT_NONE guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "failing_alloc.h"
#include "guard_page.h"
#include "query.h"

static const char *const TWIN =
    "{\"deviceId\":\"dev1\",\"etag\":\"AAAAAAAAAAc=\",\"version\":3,\"status\":\"enabled\","
    "\"statusUpdateTime\":\"0001-01-01T00:00:00Z\",\"connectionState\":\"Connected\","
    "\"lastActivityTime\":\"2026-01-01T00:00:00Z\",\"cloudToDeviceMessageCount\":0,\"authenticationType\":\"sas\","
    "\"x509Thumbprint\":{\"primaryThumbprint\":null,\"secondaryThumbprint\":null},"
    "\"tags\":{\"location\":{\"region\":\"US\",\"plant\":\"Redmond43\"},\"floor\":3,\"odd-key\":\"x\","
    "\"enabled\":true,\"off\":false,\"list\":[1,2],\"nothing\":null,\"empty\":\"\",\"uni\":\"caf\\u00e9\"},"
    "\"properties\":{\"desired\":{\"telemetryConfig\":{\"sendFrequencyInSecs\":300},\"$version\":4},"
    "\"reported\":{\"temp\":21.5,\"connectivity\":\"wifi\",\"fw\":\"1.2.3\",\"$version\":7}}}";

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

/* Parses text (a whole query, or a bare condition) from a guard-page copy. */
static int parse(const char *text, bool condition, struct query **q, struct query_error *err)
{
    struct guard_page g;
    size_t n = strlen(text);
    char *copy = guard_page_copy(&g, text, n);
    assert_non_null(copy);
    memset(err, 0, sizeof *err);
    int rc = condition ? query_parse_condition(copy, n, q, err) : query_parse(copy, n, q, err);
    guard_page_free(&g);
    return rc;
}

static struct query *must_parse(const char *text, bool condition)
{
    struct query *q = NULL;
    struct query_error err;
    int rc = parse(text, condition, &q, &err);
    if (rc != ERR_OK)
        print_error("parse of [%s] failed: %s\n", text, err.message);
    assert_int_equal(rc, ERR_OK);
    assert_non_null(q);
    return q;
}

/* ---------------------------------------------------------------- WHERE on the fixed twin */

struct match_vector {
    const char *cond;
    bool match;
};

static const struct match_vector matches[] = {
    /* comparisons of each type */
    {"deviceId = 'dev1'", true},
    {"deviceId = \"dev1\"", true},
    {"deviceId = 'dev2'", false},
    {"deviceId != 'dev2'", true},
    {"deviceId <> 'dev2'", true},
    {"deviceId <> 'dev1'", false},
    {"tags.floor = 3", true},
    {"tags.floor = 3.0", true},
    {"tags.floor = 0x3", true},
    {"tags.floor = 3e0", true},
    {"tags.floor > 2", true},
    {"tags.floor >= 3", true},
    {"tags.floor < 3", false},
    {"tags.floor <= 3", true},
    {"tags.floor > 3", false},
    {"properties.reported.temp > 21.4", true},
    {"properties.reported.temp < 2.15e1", false},
    {"properties.desired.telemetryConfig.sendFrequencyInSecs >= 60", true},
    {"tags.enabled = true", true},
    {"tags.enabled = false", false},
    {"tags.off = false", true},
    {"tags.enabled != false", true},
    {"tags.nothing = null", true},
    {"tags.nothing != null", false},
    {"x509Thumbprint.primaryThumbprint = null", true},
    /* strings compare ordinally */
    {"deviceId > 'dev0'", true},
    {"deviceId < 'dev10'", true},
    {"deviceId < 'Dev1'", false},
    {"deviceId >= 'dev1'", true},
    {"deviceId <= 'dev1'", true},
    {"tags.empty = ''", true},
    {"tags.empty < 'a'", true},
    {"lastActivityTime > '2025-12-31'", true},
    {"tags.uni = 'caf\\u00e9'", true},
    {"tags.uni = 'caf\\u00E9'", true},
    {"tags.uni = 'café'", true},
    /* type mismatch and undefined are never true, whatever the operator */
    {"tags.floor = '3'", false},
    {"tags.floor != '3'", false},
    {"tags.floor < 'a'", false},
    {"tags.enabled < true", false},
    {"tags.nothing < 1", false},
    {"tags.missing = 1", false},
    {"tags.missing != 1", false},
    {"tags.missing = null", false},
    {"tags.location = tags.location", false},
    {"tags.list = tags.list", false},
    {"NOT (tags.missing = 1)", false},
    {"NOT tags.missing = 1", false},
    {"undefined = undefined", false},
    {"null = null", true},
    /* logic and precedence: NOT > AND > OR */
    {"deviceId = 'dev1' AND tags.floor = 3", true},
    {"deviceId = 'dev1' AND tags.floor = 4", false},
    {"deviceId = 'x' OR tags.floor = 3", true},
    {"deviceId = 'x' OR tags.floor = 4", false},
    {"deviceId = 'x' AND tags.floor = 4 OR status = 'enabled'", true},
    {"status = 'enabled' OR deviceId = 'x' AND tags.floor = 4", true},
    {"(status = 'enabled' OR deviceId = 'x') AND tags.floor = 4", false},
    {"NOT deviceId = 'x' AND tags.floor = 3", true},
    {"NOT (deviceId = 'dev1' AND tags.floor = 3)", false},
    {"NOT NOT deviceId = 'dev1'", true},
    {"tags.missing = 1 OR deviceId = 'dev1'", true},
    {"tags.missing = 1 AND deviceId = 'x'", false},
    {"NOT (tags.missing = 1 AND deviceId = 'x')", true},
    {"tags.missing = 1 OR deviceId = 'x'", false},
    {"NOT (tags.missing = 1 OR deviceId = 'x')", false},
    {"deviceId = 'dev1' and tags.floor = 3 or false", true},
    {"((((deviceId = 'dev1'))))", true},
    /* bare values as conditions: only true is true */
    {"true", true},
    {"false", false},
    {"tags.enabled", true},
    {"tags.off", false},
    {"tags.floor", false},
    {"deviceId", false},
    {"NOT tags.off", true},
    {"NOT tags.floor", false},
    /* IN / NIN / NOT IN */
    {"properties.reported.connectivity IN ['wired', 'wifi']", true},
    {"properties.reported.connectivity IN ['wired']", false},
    {"properties.reported.connectivity NIN ['wired']", true},
    {"properties.reported.connectivity NIN ['wifi', 'wired']", false},
    {"properties.reported.connectivity NOT IN ['wired']", true},
    {"deviceId in ['dev1','dev2']", true},
    {"tags.floor IN [1, 2, 3]", true},
    {"tags.floor IN ['3']", false},
    {"tags.floor NIN ['3']", true},
    {"tags.floor IN [-3, 3.5]", false},
    {"-tags.floor IN [-3]", true},
    {"tags.enabled IN [true]", true},
    {"tags.nothing IN [null]", true},
    {"tags.missing IN [null, 1, 'a']", false},
    {"tags.missing NIN [1]", false},
    {"tags.location IN [1]", false},
    {"tags.location NIN [1]", false},
    {"tags.floor IN []", false},
    {"tags.floor NIN []", true},
    /* functions */
    {"IS_DEFINED(properties.reported.connectivity)", true},
    {"is_defined(properties.reported.missing)", false},
    {"IS_DEFINED(tags.nothing)", true},
    {"NOT IS_DEFINED(tags.missing)", true},
    {"IS_NULL(tags.nothing)", true},
    {"IS_NULL(tags.missing)", false},
    {"IS_NULL(tags.floor)", false},
    {"IS_BOOL(tags.enabled)", true},
    {"IS_BOOL(tags.floor)", false},
    {"IS_NUMBER(tags.floor)", true},
    {"IS_NUMBER(properties.reported.temp)", true},
    {"IS_NUMBER(deviceId)", false},
    {"IS_STRING(deviceId)", true},
    {"IS_STRING(tags.floor)", false},
    {"IS_OBJECT(tags.location)", true},
    {"IS_OBJECT(tags.list)", false},
    {"IS_ARRAY(tags.list)", true},
    {"IS_ARRAY(tags.location)", false},
    {"IS_PRIMITIVE(tags.floor)", true},
    {"IS_PRIMITIVE(tags.nothing)", true},
    {"IS_PRIMITIVE(deviceId)", true},
    {"IS_PRIMITIVE(tags.enabled)", true},
    {"IS_PRIMITIVE(tags.location)", false},
    {"IS_PRIMITIVE(tags.missing)", false},
    {"STARTSWITH(deviceId, 'dev')", true},
    {"startswith(deviceId, 'ev')", false},
    {"STARTSWITH(deviceId, '')", true},
    {"STARTSWITH(deviceId, 'dev1x')", false},
    {"ENDSWITH(deviceId, 'v1')", true},
    {"ENDSWITH(deviceId, 'dev')", false},
    {"ENDSWITH(tags.location.plant, '43')", true},
    {"CONTAINS(tags.location.plant, 'mond')", true},
    {"CONTAINS(tags.location.plant, 'xyz')", false},
    {"CONTAINS(tags.location.plant, '')", true},
    {"CONTAINS(deviceId, 'dev1-longer')", false},
    {"STARTSWITH(tags.floor, '3')", false},
    {"NOT STARTSWITH(tags.floor, '3')", false},
    {"STARTSWITH(tags.missing, 'a')", false},
    {"IS_DEFINED(devices.deviceId)", true},
    /* arithmetic */
    {"tags.floor + 1 = 4", true},
    {"tags.floor - 1 = 2", true},
    {"tags.floor * 2 = 6", true},
    {"tags.floor / 2 = 1.5", true},
    {"tags.floor % 2 = 1", true},
    {"1 + 2 * 3 = 7", true},
    {"(1 + 2) * 3 = 9", true},
    {"10 - 2 - 3 = 5", true},
    {"-tags.floor = -3", true},
    {"- -3 = 3", true},
    {"tags.floor / 0 = 1", false},
    {"IS_DEFINED(tags.floor / 0)", false},
    {"IS_DEFINED(tags.floor % 0)", false},
    {"tags.floor + '1' = 4", false},
    {"-deviceId = 1", false},
    {"1e308 * 10 > 0", false},
    /* path spellings */
    {"DeviceId = 'dev1'", true},
    {"TAGS.Location.REGION = 'US'", true},
    {"tags['odd-key'] = 'x'", true},
    {"tags[\"location\"].region = 'US'", true},
    {"properties.reported.$version = 7", true},
    {"devices.tags.floor = 3", true},
    {"tags.location.region.deeper = 'US'", false},
    {"tags.list.0 = 1", false},
    /* whitespace and case of keywords */
    {"  deviceId\t=\n'dev1'\r\n", true},
    {"deviceId='dev1'AND tags.floor=3", true},
    {"status = 'enabled' aNd connectionState = 'Connected'", true},
    /* string escapes */
    {"'a\\'b' = \"a'b\"", true},
    {"'a\\\"b' = 'a\"b'", true},
    {"'a\\\\b' = 'a\\\\b'", true},
    {"'\\/\\b\\f\\n\\r\\t' = '/\b\f\n\r\t'", true},
    {"'\\ud83d\\ude00' = '\xf0\x9f\x98\x80'", true},
};

static void test_where_vectors(void **state)
{
    (void)state;
    json_t *twin = load(TWIN);
    for (size_t i = 0; i < sizeof matches / sizeof matches[0]; i++) {
        const struct match_vector *v = &matches[i];
        struct query *q = must_parse(v->cond, true);
        bool got = query_match(q, twin);
        if (got != v->match)
            print_error("condition [%s]: got %d, want %d\n", v->cond, got, v->match);
        assert_int_equal(got, v->match);
        query_free(q);
        /* the same condition inside a whole query */
        char text[512];
        snprintf(text, sizeof text, "SELECT * FROM devices WHERE %s", v->cond);
        q = must_parse(text, false);
        assert_int_equal(query_match(q, twin), v->match);
        query_free(q);
    }
    json_decref(twin);
}

/* ---------------------------------------------------------------- whole queries */

static void test_select_forms(void **state)
{
    (void)state;
    json_t *twin = load(TWIN);
    struct query *q = must_parse("SELECT * FROM devices", false);
    assert_int_equal(query_source(q), QUERY_DEVICES);
    assert_true(query_selects_all(q));
    assert_false(query_is_aggregate(q));
    assert_int_equal(query_top(q), -1);
    assert_string_equal(query_item_type(q), "twin");
    assert_true(query_match(q, twin)); /* no WHERE matches everything */
    json_t *row = query_project(q, twin);
    assert_true(json_equal(row, twin));
    assert_ptr_not_equal(row, twin); /* a copy */
    json_decref(row);
    assert_null(query_agg_new(q)); /* not an aggregate query */
    query_free(q);

    q = must_parse("select * from DEVICES.MODULES where moduleId = 'm1'", false);
    assert_int_equal(query_source(q), QUERY_MODULES);
    assert_string_equal(query_item_type(q), "twin");
    query_free(q);

    q = must_parse("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.status = 'completed'",
                   false);
    assert_int_equal(query_source(q), QUERY_JOBS);
    assert_string_equal(query_item_type(q), "deviceJob");
    json_t *job =
        load("{\"deviceId\":\"dev1\",\"jobId\":\"j1\",\"jobType\":\"scheduleUpdateTwin\",\"status\":\"completed\"}");
    assert_true(query_match(q, job));
    json_object_set_new(job, "jobId", json_string("j2"));
    assert_false(query_match(q, job));
    json_decref(job);
    query_free(q);

    q = must_parse("SELECT TOP 5 * FROM devices", false);
    assert_int_equal(query_top(q), 5);
    query_free(q);
    q = must_parse("SELECT top 0 deviceId FROM devices", false);
    assert_int_equal(query_top(q), 0);
    query_free(q);

    /* the condition parser is SELECT * FROM devices */
    q = must_parse("deviceId IN ['dev1']", true);
    assert_int_equal(query_source(q), QUERY_DEVICES);
    assert_true(query_selects_all(q));
    assert_string_equal(query_item_type(q), "twin");
    query_free(q);
    json_decref(twin);
}

static void expect_row(struct query *q, const json_t *doc, const char *want)
{
    json_t *row = query_project(q, doc);
    assert_non_null(row);
    json_t *w = load(want);
    if (!json_equal(row, w)) {
        char *got = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
        print_error("got %s, want %s\n", got, want);
        free(got);
    }
    assert_true(json_equal(row, w));
    json_decref(w);
    json_decref(row);
}

static void test_projection(void **state)
{
    (void)state;
    json_t *twin = load(TWIN);
    struct query *q = must_parse("SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled'", false);
    assert_false(query_selects_all(q));
    assert_false(query_is_aggregate(q));
    assert_string_equal(query_item_type(q), "raw");
    expect_row(q, twin, "{\"deviceId\":\"dev1\",\"lastActivityTime\":\"2026-01-01T00:00:00Z\"}");
    query_free(q);

    q = must_parse("SELECT deviceId, tags.location.region, properties.reported.temp AS t, tags.location, "
                   "tags.missing, tags['odd-key'] FROM devices",
                   false);
    expect_row(q, twin,
               "{\"deviceId\":\"dev1\",\"region\":\"US\",\"t\":21.5,"
               "\"location\":{\"region\":\"US\",\"plant\":\"Redmond43\"},\"odd-key\":\"x\"}");
    query_free(q);

    q = must_parse("SELECT devices.deviceId AS id, devices.modules.x FROM devices", false);
    expect_row(q, twin, "{\"id\":\"dev1\"}");
    query_free(q);

    q = must_parse("SELECT moduleId, deviceId FROM devices.modules", false);
    json_t *mod = load("{\"deviceId\":\"dev1\",\"moduleId\":\"m1\"}");
    expect_row(q, mod, "{\"moduleId\":\"m1\",\"deviceId\":\"dev1\"}");
    json_decref(mod);
    query_free(q);

    /* a projection of a document that lacks everything is an empty object */
    q = must_parse("SELECT tags.nope FROM devices", false);
    json_t *empty = json_object();
    expect_row(q, empty, "{}");
    json_decref(empty);
    query_free(q);
    json_decref(twin);
}

/* The queries Azure IoT Explorer sends (its LIST_IOT_DEVICES and the filters it appends). */
static void test_explorer_queries(void **state)
{
    (void)state;
    static const char list[] =
        "\n    SELECT deviceId as DeviceId,\n    status as Status,\n"
        "    lastActivityTime as LastActivityTime,\n    statusUpdatedTime as StatusUpdatedTime,\n"
        "    authenticationType as AuthenticationType,\n"
        "    cloudToDeviceMessageCount as CloudToDeviceMessageCount,\n"
        "    connectionState as ConnectionState,\n    capabilities.iotEdge as IotEdge,\n"
        "    modelId as ModelId\n    FROM devices";
    json_t *twin = load(TWIN);
    json_object_set_new(twin, "capabilities", json_pack("{s:b}", "iotEdge", 0));
    static const char *const filters[] = {"", " WHERE STARTSWITH(devices.deviceId, 'dev')",
                                          " WHERE (capabilities.iotEdge=false AND status='enabled')"};
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", list, filters[i]);
        struct query *q = must_parse(text, false);
        assert_true(query_match(q, twin));
        expect_row(q, twin,
                   "{\"DeviceId\":\"dev1\",\"Status\":\"enabled\",\"LastActivityTime\":\"2026-01-01T00:00:00Z\","
                   "\"AuthenticationType\":\"sas\",\"CloudToDeviceMessageCount\":0,\"ConnectionState\":\"Connected\","
                   "\"IotEdge\":false}");
        query_free(q);
    }
    struct query *q = must_parse(" SELECT * FROM devices WHERE deviceId = 'dev1'", false);
    assert_true(query_match(q, twin));
    query_free(q);
    json_decref(twin);
}

static json_t *agg_run(const char *text, const char *const *docs, size_t n)
{
    struct query *q = must_parse(text, false);
    assert_true(query_is_aggregate(q));
    json_t *none = json_object();
    assert_null(query_project(q, none)); /* aggregate queries have no per-document rows */
    json_decref(none);
    struct query_agg *a = query_agg_new(q);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++) {
        json_t *d = load(docs[i]);
        if (query_match(q, d))
            assert_int_equal(query_agg_add(a, d), ERR_OK);
        json_decref(d);
    }
    json_t *rows = query_agg_result(a);
    assert_non_null(rows);
    json_t *again = query_agg_result(a); /* repeatable */
    assert_true(json_equal(rows, again));
    json_decref(again);
    query_agg_free(a);
    query_free(q);
    return rows;
}

static void expect_rows(json_t *rows, const char *want)
{
    json_t *w = load(want);
    if (!json_equal(rows, w)) {
        char *got = json_dumps(rows, JSON_COMPACT);
        print_error("got %s, want %s\n", got, want);
        free(got);
    }
    assert_true(json_equal(rows, w));
    json_decref(w);
    json_decref(rows);
}

static const char *const fleet[] = {
    "{\"deviceId\":\"a\",\"status\":\"enabled\",\"properties\":{\"reported\":{\"telemetryConfig\":{\"status\":"
    "\"Success\"},"
    "\"temp\":10}},\"tags\":{\"region\":\"US\"}}",
    "{\"deviceId\":\"b\",\"status\":\"enabled\",\"properties\":{\"reported\":{\"telemetryConfig\":{\"status\":"
    "\"Pending\"},"
    "\"temp\":20}},\"tags\":{\"region\":\"US\"}}",
    "{\"deviceId\":\"c\",\"status\":\"disabled\",\"properties\":{\"reported\":{\"telemetryConfig\":{\"status\":"
    "\"Success\"},\"temp\":30.5}},\"tags\":{\"region\":\"EU\"}}",
    "{\"deviceId\":\"d\",\"status\":\"enabled\",\"properties\":{\"reported\":{\"telemetryConfig\":{\"status\":"
    "\"Success\"},"
    "\"temp\":\"hot\"}},\"tags\":{\"region\":\"EU\"}}",
    "{\"deviceId\":\"e\",\"status\":\"enabled\",\"properties\":{\"reported\":{}},\"tags\":{\"region\":1}}",
    "{\"deviceId\":\"f\",\"status\":\"enabled\",\"properties\":{\"reported\":{}},\"tags\":{\"region\":1.0}}",
};
#define NFLEET (sizeof fleet / sizeof fleet[0])

static void test_aggregation(void **state)
{
    (void)state;
    expect_rows(agg_run("SELECT COUNT() AS totalNumberOfDevices FROM devices", fleet, NFLEET),
                "[{\"totalNumberOfDevices\":6}]");
    expect_rows(agg_run("SELECT COUNT() FROM devices WHERE status = 'enabled'", fleet, NFLEET), "[{\"$1\":5}]");
    expect_rows(agg_run("SELECT COUNT() AS n FROM devices WHERE deviceId = 'zzz'", fleet, NFLEET), "[{\"n\":0}]");
    expect_rows(agg_run("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
                        "FROM devices GROUP BY properties.reported.telemetryConfig.status",
                        fleet, NFLEET),
                "[{\"status\":\"Success\",\"numberOfDevices\":3},{\"status\":\"Pending\",\"numberOfDevices\":1},"
                "{\"numberOfDevices\":2}]");
    /* unaliased group field takes the document's key; 1 and 1.0 are one group; two aggregates are $1, $2 */
    expect_rows(agg_run("SELECT Tags.Region, COUNT(), COUNT() AS c, SUM(properties.reported.temp), "
                        "AVG(properties.reported.temp) AS avg, MIN(properties.reported.temp) AS lo, "
                        "MAX(properties.reported.temp) AS hi FROM devices GROUP BY tags.region",
                        fleet, NFLEET),
                "[{\"region\":\"US\",\"$1\":2,\"c\":2,\"$2\":30,\"avg\":15,\"lo\":10,\"hi\":20},"
                "{\"region\":\"EU\",\"$1\":2,\"c\":2,\"$2\":30.5,\"avg\":30.5,\"lo\":30.5,\"hi\":30.5},"
                "{\"region\":1,\"$1\":2,\"c\":2}]");
    expect_rows(
        agg_run("SELECT AVG(properties.reported.temp) AS avg FROM devices WHERE deviceId IN ['a','c']", fleet, NFLEET),
        "[{\"avg\":20.25}]");
    expect_rows(agg_run("SELECT SUM(properties.reported.nothing) AS s, COUNT() AS n FROM devices", fleet, NFLEET),
                "[{\"n\":6}]");
    /* GROUP BY without aggregates lists the distinct values; GROUP BY two paths */
    expect_rows(agg_run("SELECT status FROM devices GROUP BY status", fleet, NFLEET),
                "[{\"status\":\"enabled\"},{\"status\":\"disabled\"}]");
    expect_rows(agg_run("SELECT status, tags.region AS r, COUNT() AS n FROM devices WHERE IS_STRING(tags.region) "
                        "GROUP BY status, tags.region",
                        fleet, NFLEET),
                "[{\"status\":\"enabled\",\"r\":\"US\",\"n\":2},{\"status\":\"disabled\",\"r\":\"EU\",\"n\":1},"
                "{\"status\":\"enabled\",\"r\":\"EU\",\"n\":1}]");
    expect_rows(agg_run("SELECT COUNT() AS n FROM devices GROUP BY status", NULL, 0), "[]");
    /* grouping by an object value */
    static const char *const objs[] = {"{\"tags\":{\"o\":{\"a\":1,\"b\":2}}}", "{\"tags\":{\"o\":{\"b\":2,\"a\":1}}}",
                                       "{\"tags\":{\"o\":{\"a\":2}}}"};
    expect_rows(agg_run("SELECT tags.o, COUNT() AS n FROM devices GROUP BY tags.o", objs, 3),
                "[{\"o\":{\"a\":1,\"b\":2},\"n\":2},{\"o\":{\"a\":2},\"n\":1}]");
    /* modules aggregate too */
    struct query *q = must_parse("SELECT COUNT() AS n FROM devices.modules", false);
    assert_int_equal(query_source(q), QUERY_MODULES);
    assert_string_equal(query_item_type(q), "raw");
    query_free(q);
}

static void test_agg_group_limit(void **state)
{
    (void)state;
    struct query *q = must_parse("SELECT tags.i, COUNT() AS n FROM devices GROUP BY tags.i", false);
    struct query_agg *a = query_agg_new(q);
    assert_non_null(a);
    json_t *d = load("{\"tags\":{\"i\":0}}");
    json_t *tags = json_object_get(d, "tags");
    for (size_t i = 0; i < QUERY_MAX_GROUPS; i++) {
        json_object_set_new(tags, "i", json_integer((json_int_t)i));
        assert_int_equal(query_agg_add(a, d), ERR_OK);
    }
    json_object_set_new(tags, "i", json_integer(0)); /* an existing group still counts */
    assert_int_equal(query_agg_add(a, d), ERR_OK);
    json_object_set_new(tags, "i", json_integer(-1)); /* a new one does not fit */
    assert_int_equal(query_agg_add(a, d), ERR_TOO_BIG);
    json_t *rows = query_agg_result(a);
    assert_int_equal(json_array_size(rows), QUERY_MAX_GROUPS);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "n")), 2);
    json_decref(rows);
    json_decref(d);
    query_agg_free(a);
    query_free(q);
}

/* ---------------------------------------------------------------- errors */

struct error_vector {
    const char *text;
    bool condition;
    int rc;
    size_t offset;
    const char *detail; /* a substring of the message */
};

static const struct error_vector errors[] = {
    /* structure */
    {"", false, ERR_MALFORMED, 0, "mismatched input <EOF> expecting SELECT"},
    {"SELEC * FROM devices", false, ERR_MALFORMED, 0, "mismatched input 'SELEC' expecting SELECT"},
    {"SELECT * FORM devices", false, ERR_MALFORMED, 9, "mismatched input 'FORM' expecting FROM"},
    {"SELECT deviceId FORM devices", false, ERR_MALFORMED, 16, "expecting ',', AS or FROM"},
    {"SELECT FROM devices", false, ERR_MALFORMED, 7, "expecting '*', a property path or an aggregate"},
    {"SELECT * FROM", false, ERR_MALFORMED, 13, "mismatched input <EOF> expecting devices"},
    {"SELECT * FROM twins", false, ERR_MALFORMED, 14, "'twins' expecting devices, devices.modules or devices.jobs"},
    {"SELECT * FROM devices.things", false, ERR_MALFORMED, 22, "expecting modules or jobs"},
    {"SELECT * FROM devices WHERE", false, ERR_MALFORMED, 27, "<EOF> expecting an expression"},
    {"SELECT * FROM devices ORDER BY deviceId", false, ERR_MALFORMED, 22, "'ORDER' expecting WHERE, GROUP BY or <EOF>"},
    {"SELECT * FROM devices WHERE x = 1 ORDER BY x", false, ERR_MALFORMED, 34, "'ORDER' expecting an operator"},
    {"SELECT COUNT() AS n FROM devices GROUP deviceId", false, ERR_MALFORMED, 39, "expecting BY"},
    {"SELECT COUNT() AS n FROM devices GROUP BY", false, ERR_MALFORMED, 41, "expecting a property path"},
    {"SELECT status, COUNT() AS n FROM devices GROUP BY status x", false, ERR_MALFORMED, 57, "expecting ',' or <EOF>"},
    {"SELECT TOP * FROM devices", false, ERR_MALFORMED, 11, "expecting a whole number of rows after TOP"},
    {"SELECT TOP 1.5 * FROM devices", false, ERR_MALFORMED, 11, "TOP"},
    {"SELECT TOP 2000000000 * FROM devices", false, ERR_MALFORMED, 11, "TOP"},
    {"SELECT deviceId AS FROM devices", false, ERR_MALFORMED, 19, "'FROM' expecting an alias"},
    {"SELECT deviceId AS 'x' FROM devices", false, ERR_MALFORMED, 19, "expecting an alias"},
    {"SELECT deviceId.'a' FROM devices", false, ERR_MALFORMED, 16, "expecting a property name"},
    {"'it''s' = 'x'", true, ERR_MALFORMED, 4, "''s'' expecting an operator or <EOF>"},
    {"SELECT tags[1] FROM devices", false, ERR_MALFORMED, 12, "expecting a quoted property name"},
    {"SELECT tags['a' FROM devices", false, ERR_MALFORMED, 16, "expecting ']'"},
    {"SELECT tags['a\\u0000b'] FROM devices", false, ERR_MALFORMED, 12, "invalid property name"},
    {"SELECT tags[''] FROM devices", false, ERR_MALFORMED, 12, "invalid property name"},
    /* semantics */
    {"SELECT * FROM devices GROUP BY status", false, ERR_MALFORMED, 0, "SELECT * cannot be used with GROUP BY"},
    {"SELECT deviceId, COUNT() AS n FROM devices", false, ERR_MALFORMED, 7, "'deviceId' must appear in GROUP BY"},
    {"SELECT deviceId, COUNT() AS n FROM devices GROUP BY status", false, ERR_MALFORMED, 7, "must appear in GROUP BY"},
    {"SELECT deviceId FROM devices GROUP BY status", false, ERR_MALFORMED, 7, "must appear in GROUP BY"},
    {"SELECT deviceId, deviceid FROM devices", false, ERR_MALFORMED, 17, "duplicate name 'deviceid'"},
    {"SELECT tags.a.x, tags.b.x FROM devices", false, ERR_MALFORMED, 17, "duplicate name 'x'"},
    {"SELECT deviceId AS n, COUNT() AS n FROM devices GROUP BY deviceId", false, ERR_MALFORMED, 22, "duplicate"},
    {"SELECT deviceId FROM devices.jobs", false, ERR_MALFORMED, 7, "devices.jobs supports SELECT * only"},
    {"SELECT COUNT() AS n FROM devices.jobs", false, ERR_MALFORMED, 7, "devices.jobs"},
    {"SELECT COUNT(deviceId) AS n FROM devices", false, ERR_MALFORMED, 13, "COUNT takes no argument"},
    {"SELECT COUNT(*) AS n FROM devices", false, ERR_MALFORMED, 13, "COUNT takes no argument"},
    {"SELECT SUM() AS n FROM devices", false, ERR_MALFORMED, 11, "expecting a property path"},
    {"SELECT SUM(tags.a AS n FROM devices", false, ERR_MALFORMED, 18, "expecting ')'"},
    {"SELECT LOWER(deviceId) FROM devices", false, ERR_MALFORMED, 7, "'LOWER' is not an aggregate function"},
    {"SELECT * FROM devices WHERE COUNT() > 1", false, ERR_MALFORMED, 28,
     "aggregate function 'COUNT' is only allowed in SELECT"},
    /* conditions */
    {"deviceId = ", true, ERR_MALFORMED, 11, "<EOF> expecting an expression"},
    {"deviceId = 'a' deviceId", true, ERR_MALFORMED, 15, "'deviceId' expecting an operator or <EOF>"},
    {"SELECT * FROM devices", true, ERR_MALFORMED, 0, "'SELECT' expecting an expression"},
    {"WHERE deviceId = 'a'", true, ERR_MALFORMED, 0, "'WHERE' expecting an expression"},
    {"(deviceId = 'a'", true, ERR_MALFORMED, 15, "<EOF> expecting ')'"},
    {"deviceId = 'a')", true, ERR_MALFORMED, 14, "')' expecting an operator or <EOF>"},
    {"deviceId = 'a' AND", true, ERR_MALFORMED, 18, "<EOF> expecting an expression"},
    {"deviceId = 'a' OR OR x = 1", true, ERR_MALFORMED, 18, "'OR' expecting an expression"},
    {"deviceId == 'a'", true, ERR_MALFORMED, 10, "'=' expecting an expression"},
    {"deviceId IN ('a', 'b')", true, ERR_MALFORMED, 12, "'(' expecting '['"},
    {"deviceId IN ['a' 'b']", true, ERR_MALFORMED, 17, "expecting ',' or ']'"},
    {"deviceId IN ['a', deviceId]", true, ERR_MALFORMED, 18, "'deviceId' expecting a constant"},
    {"deviceId IN ['a',", true, ERR_MALFORMED, 17, "<EOF> expecting a constant"},
    {"deviceId NIN 'a'", true, ERR_MALFORMED, 13, "expecting '['"},
    {"STARTS_WITH(deviceId, 'a')", true, ERR_MALFORMED, 0, "unknown function 'STARTS_WITH'"},
    {"LENGTH(deviceId) > 1", true, ERR_MALFORMED, 0, "unknown function 'LENGTH'"},
    {"IS_DEFINED(deviceId, tags)", true, ERR_MALFORMED, 19, "the function takes one argument"},
    {"STARTSWITH(deviceId)", true, ERR_MALFORMED, 19, "expecting ','"},
    {"STARTSWITH(deviceId, 'a', 'b')", true, ERR_MALFORMED, 24, "the function takes two arguments"},
    {"IS_DEFINED()", true, ERR_MALFORMED, 11, "')' expecting an expression"},
    {"deviceId = 'a' AND IN", true, ERR_MALFORMED, 19, "'IN' expecting an expression"},
    {"tags. = 1", true, ERR_MALFORMED, 6, "expecting a property name"},
    {"NOT", true, ERR_MALFORMED, 3, "<EOF> expecting an expression"},
    {"-", true, ERR_MALFORMED, 1, "<EOF> expecting an expression"},
    {"x = 1 +", true, ERR_MALFORMED, 7, "<EOF> expecting an expression"},
    /* tokens */
    {"deviceId = 'abc", true, ERR_MALFORMED, 11, "unterminated string literal"},
    {"deviceId = \"abc'", true, ERR_MALFORMED, 11, "unterminated string literal"},
    {"deviceId = 'abc\\", true, ERR_MALFORMED, 11, "unterminated string literal"},
    {"deviceId = 'a\\qb'", true, ERR_MALFORMED, 13, "invalid escape sequence"},
    {"deviceId = 'a\\u12'", true, ERR_MALFORMED, 13, "invalid escape sequence"},
    {"deviceId = 'a\\ud800'", true, ERR_MALFORMED, 13, "invalid escape sequence"},
    {"deviceId = 'a\\ud800\\u0041'", true, ERR_MALFORMED, 13, "invalid escape sequence"},
    {"deviceId = 'a\\udc00'", true, ERR_MALFORMED, 13, "invalid escape sequence"},
    {"deviceId = #", true, ERR_MALFORMED, 11, "token recognition error at: '#'"},
    {"deviceId ! 'a'", true, ERR_MALFORMED, 9, "token recognition error at: '!'"},
    {"deviceId = \x01", true, ERR_MALFORMED, 11, "token recognition error at: '\\x01'"},
    {"deviceId = 12abc", true, ERR_MALFORMED, 11, "invalid number"},
    {"deviceId = 0x", true, ERR_MALFORMED, 11, "invalid number"},
    {"deviceId = 0xfffffffffffffffffffff", true, ERR_MALFORMED, 11, "number out of range"},
    {"deviceId = 1e999", true, ERR_MALFORMED, 11, "number out of range"},
    {"deviceId = '\xff'", true, ERR_MALFORMED, 12, "invalid UTF-8"},
    {"deviceId = '\xc0\x80'", true, ERR_MALFORMED, 12, "invalid UTF-8"},
    {"deviceId = '\xed\xa0\x80'", true, ERR_MALFORMED, 12, "invalid UTF-8"},
    {"deviceId = '\xe2\x82'", true, ERR_MALFORMED, 12, "invalid UTF-8"},
};

static void test_error_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        const struct error_vector *v = &errors[i];
        struct query *q = (struct query *)&q; /* must be reset to NULL */
        struct query_error err;
        int rc = parse(v->text, v->condition, &q, &err);
        if (rc != v->rc || err.offset != v->offset || !strstr(err.message, v->detail))
            print_error("[%s]: rc %d offset %zu message [%s]\n", v->text, rc, err.offset, err.message);
        assert_int_equal(rc, v->rc);
        assert_null(q);
        assert_int_equal(err.offset, v->offset);
        assert_non_null(strstr(err.message, v->detail));
        assert_non_null(strstr(err.message, "SQL query parse failed due to following errors: Line 1:"));
    }
}

static void test_error_position(void **state)
{
    (void)state;
    struct query *q;
    struct query_error err;
    /* line and column (0-based, in characters) as the hub prints them */
    assert_int_equal(parse("SELECT *\nFROM devices\n  WHERE x = = 1", false, &q, &err), ERR_MALFORMED);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 12);
    assert_int_equal(err.offset, 34);
    assert_string_equal(err.message,
                        "SQL query parse failed due to following errors: Line 3:12 mismatched input '=' expecting an "
                        "expression");
    /* a multi-byte character counts once */
    assert_int_equal(parse("tags.x = 'é' AND", true, &q, &err), ERR_MALFORMED);
    assert_int_equal(err.column, 16);
    assert_int_equal(err.offset, 17);
    /* long tokens are cut, control characters in them shown as '?' */
    assert_int_equal(parse("x = 1 'a\tbcdefghijklmnopqrstuvwxyz0123456789abcdefghij'", true, &q, &err), ERR_MALFORMED);
    assert_non_null(strstr(err.message, "''a?bcdefghijklmnopqrstuvwxyz0123456789ab...'"));
    /* err may be NULL; out may not */
    assert_int_equal(query_parse("SELECT", 6, &q, NULL), ERR_MALFORMED);
    assert_null(q);
    assert_int_equal(query_parse("SELECT * FROM devices", 21, NULL, &err), ERR_INVALID);
    assert_int_equal(query_parse(NULL, 3, &q, &err), ERR_INVALID);
    assert_int_equal(query_parse(NULL, 0, &q, &err), ERR_MALFORMED);
    /* text is taken by length: a NUL inside is a bad character, bytes after len are not read */
    assert_int_equal(query_parse_condition("x = 1\0 AND", 10, &q, &err), ERR_MALFORMED);
    assert_non_null(strstr(err.message, "'\\x00'"));
    assert_int_equal(query_parse_condition("x = 1 garbage", 5, &q, &err), ERR_OK);
    query_free(q);
    query_free(NULL);
    query_agg_free(NULL);
}

/* ---------------------------------------------------------------- limits */

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append_str(&b, head), ERR_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_append_str(&b, unit), ERR_OK);
    assert_int_equal(buf_append_str(&b, tail), ERR_OK);
    char *s = buf_take_str(&b);
    assert_non_null(s);
    return s;
}

static void expect_limit(char *text, bool condition, int rc, const char *detail)
{
    struct query *q = NULL;
    struct query_error err;
    int got = parse(text, condition, &q, &err);
    if (got != rc || (detail && !strstr(err.message, detail)))
        print_error("limit: rc %d message [%s]\n", got, err.message);
    assert_int_equal(got, rc);
    if (detail)
        assert_non_null(strstr(err.message, detail));
    query_free(q);
    free(text);
}

static void test_limits(void **state)
{
    (void)state;
    /* length: 8192 characters pass, one more does not; counted in characters, not bytes */
    char *ok = repeat("tags.x = '", "a", QUERY_MAX_CHARS - 11, "'");
    assert_int_equal(strlen(ok), QUERY_MAX_CHARS);
    expect_limit(ok, true, ERR_OK, NULL);
    expect_limit(repeat("tags.x = '", "a", QUERY_MAX_CHARS - 10, "'"), true, ERR_TOO_BIG,
                 "longer than 8192 characters");
    expect_limit(repeat("tags.x = '", "\xc3\xa9", QUERY_MAX_CHARS - 11, "'"), true, ERR_OK, NULL);
    /* nesting: parentheses, NOT, unary minus, function calls */
    char *open = repeat("", "(", QUERY_MAX_NESTING, "true");
    char *close = repeat("", ")", QUERY_MAX_NESTING, "");
    expect_limit(repeat(open, "", 0, close), true, ERR_OK, NULL);
    free(open);
    free(close);
    expect_limit(repeat("", "(", QUERY_MAX_NESTING + 1, "true"), true, ERR_TOO_BIG, "nested deeper than 32");
    expect_limit(repeat("", "NOT ", QUERY_MAX_NESTING + 1, "true"), true, ERR_TOO_BIG, "nested deeper");
    expect_limit(repeat("", "-", QUERY_MAX_NESTING + 1, "1 = 1"), true, ERR_TOO_BIG, "nested deeper");
    expect_limit(repeat("", "IS_NULL(", QUERY_MAX_NESTING + 1, "1"), true, ERR_TOO_BIG, "nested deeper");
    /* tree depth: a long arithmetic chain */
    expect_limit(repeat("1", " + 1", QUERY_MAX_DEPTH, " = 1"), true, ERR_TOO_BIG, "nested deeper than 64");
    expect_limit(repeat("1", " + 1", QUERY_MAX_DEPTH - 3, " = 1"), true, ERR_OK, NULL);
    /* long AND / OR chains are flat, up to QUERY_MAX_TERMS */
    expect_limit(repeat("a", " OR a", QUERY_MAX_TERMS - 1, ""), true, ERR_OK, NULL);
    expect_limit(repeat("a", " AND a", QUERY_MAX_TERMS, ""), true, ERR_TOO_BIG, "more than 1000 terms joined by AND");
    /* IN lists */
    expect_limit(repeat("x IN [0", ",1", QUERY_MAX_LIST - 1, "]"), true, ERR_OK, NULL);
    expect_limit(repeat("x IN [0", ",1", QUERY_MAX_LIST, "]"), true, ERR_TOO_BIG, "more than 1000 elements");
    /* paths */
    expect_limit(repeat("a", ".a", QUERY_MAX_SEGMENTS - 1, " = 1"), true, ERR_OK, NULL);
    expect_limit(repeat("a", ".a", QUERY_MAX_SEGMENTS, " = 1"), true, ERR_TOO_BIG, "more than 16 segments");
    expect_limit(repeat("tags.", "k", QUERY_MAX_KEY, " = 1"), true, ERR_OK, NULL);
    expect_limit(repeat("tags.", "k", QUERY_MAX_KEY + 1, " = 1"), true, ERR_MALFORMED, "invalid property name");
    /* SELECT items and GROUP BY paths */
    struct buf b;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append_str(&b, "SELECT a0"), ERR_OK);
    for (unsigned i = 1; i < QUERY_MAX_ITEMS; i++)
        assert_int_equal(buf_printf(&b, ", a%u", i), ERR_OK);
    assert_int_equal(buf_append_str(&b, " FROM devices"), ERR_OK);
    expect_limit(buf_take_str(&b), false, ERR_OK, NULL);
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append_str(&b, "SELECT a0"), ERR_OK);
    for (unsigned i = 1; i <= QUERY_MAX_ITEMS; i++)
        assert_int_equal(buf_printf(&b, ", a%u", i), ERR_OK);
    assert_int_equal(buf_append_str(&b, " FROM devices"), ERR_OK);
    expect_limit(buf_take_str(&b), false, ERR_TOO_BIG, "more than 64 items in SELECT");
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append_str(&b, "SELECT COUNT() AS n FROM devices GROUP BY a0"), ERR_OK);
    for (unsigned i = 1; i <= QUERY_MAX_ITEMS; i++)
        assert_int_equal(buf_printf(&b, ", a%u", i), ERR_OK);
    expect_limit(buf_take_str(&b), false, ERR_TOO_BIG, "more than 64 paths in GROUP BY");
    /* a long number */
    expect_limit(repeat("x = ", "1", 401, ""), true, ERR_MALFORMED, "invalid number");
}

/* ---------------------------------------------------------------- allocation failures */

/* Runs parse, match, projection and aggregation with jansson allocations failing at every point in turn: each
 * step either works or reports ERR_NOMEM / NULL, and nothing leaks (ASan checks at exit). */
static void test_nomem_jansson(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "SELECT deviceId, tags.location FROM devices WHERE tags.floor IN [1, 2, 3, 'x'] AND deviceId = 'dev1'",
        ("SELECT tags.location.region AS r, COUNT() AS n, SUM(tags.floor) AS s FROM devices WHERE true "
         "GROUP BY tags.location.region"),
        "SELECT * FROM devices WHERE deviceId != 'x' AND tags.nothing = null",
    };
    json_t *twin = load(TWIN);
    json_set_alloc_funcs(failing_malloc, free);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        bool completed = false;
        for (size_t n = 0; !completed && n < 10000; n++) {
            fail_after = n;
            struct query *q = NULL;
            struct query_error err;
            int rc = query_parse(texts[t], strlen(texts[t]), &q, &err);
            assert_true(rc == ERR_OK || rc == ERR_NOMEM);
            if (rc != ERR_OK) {
                assert_null(q);
                continue;
            }
            assert_true(query_match(q, twin));
            json_t *rows = NULL;
            if (query_is_aggregate(q)) {
                struct query_agg *a = query_agg_new(q);
                if (a && query_agg_add(a, twin) == ERR_OK)
                    rows = query_agg_result(a);
                query_agg_free(a);
            } else {
                rows = query_project(q, twin);
            }
            completed = rows != NULL;
            json_decref(rows);
            query_free(q);
        }
        assert_true(completed);
    }
    fail_after = SIZE_MAX;
    json_set_alloc_funcs(malloc, free);
    json_decref(twin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_where_vectors),   cmocka_unit_test(test_select_forms),
        cmocka_unit_test(test_projection),      cmocka_unit_test(test_aggregation),
        cmocka_unit_test(test_agg_group_limit), cmocka_unit_test(test_error_vectors),
        cmocka_unit_test(test_error_position),  cmocka_unit_test(test_limits),
        cmocka_unit_test(test_nomem_jansson),   cmocka_unit_test(test_explorer_queries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
