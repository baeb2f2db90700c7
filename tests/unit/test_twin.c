/* test_twin.c -- unit tests for emulator/hub/twin: merge-patch and replace of tags and desired, reported
 * patches, versions and etags, $metadata, the REST and MQTT document shapes, every limit and key rule with the
 * hub's error code (nothing changes on a refused change), and the persisted text round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "failing_alloc.h"
#include "registry.h"
#include "twin.h"

#define T0 1764583200000LL /* 2025-12-01T10:00:00.000Z */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad test JSON: %s: %s", text, e.text);
    return j;
}

/* Applies a service change from JSON text; returns the result code (push is dropped unless wanted). */
static int update(struct twin *t, const char *body, enum twin_mode mode, json_t **push, struct twin_error *e)
{
    json_t *b = J(body);
    int rc = twin_update(t, b, mode, T0, push, e);
    json_decref(b);
    return rc;
}

static int report(struct twin *t, const char *patch, struct twin_error *e)
{
    json_t *p = J(patch);
    int rc = twin_report(t, p, T0 + 1, e);
    json_decref(p);
    return rc;
}

static struct identity *identity(const char *dev, const char *mod)
{
    static struct identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.device_id, sizeof id.device_id, "%s", dev);
    snprintf(id.module_id, sizeof id.module_id, "%s", mod ? mod : "");
    id.enabled = true;
    id.version = 3;
    return &id;
}

static json_t *path(json_t *j, const char *p)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", p);
    char *save = NULL;
    for (char *tok = strtok_r(buf, "/", &save); tok && j; tok = strtok_r(NULL, "/", &save))
        j = json_object_get(j, tok);
    return j;
}

static void assert_json(json_t *j, const char *expect)
{
    json_t *e = J(expect);
    if (!json_equal(j, e)) {
        char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s, want %s", got ? got : "(null)", expect);
    }
    json_decref(e);
}

/* ---- the fresh twin and its documents ---- */

static void fresh_twin_documents(void **state)
{
    struct twin *t = twin_new();
    assert_int_equal(twin_version(t), 1);
    json_t *p = twin_properties(t);
    assert_json(p, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    json_decref(p);
    json_t *doc = twin_document(t, identity("dev1", NULL));
    assert_string_equal(json_string_value(json_object_get(doc, "deviceId")), "dev1");
    assert_null(json_object_get(doc, "moduleId"));
    assert_string_equal(json_string_value(json_object_get(doc, "etag")), "AAAAAAAAAAE=");
    assert_string_equal(json_string_value(json_object_get(doc, "deviceEtag")), "Mw==");
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "enabled");
    assert_true(json_is_null(json_object_get(doc, "statusReason")));
    assert_string_equal(json_string_value(json_object_get(doc, "connectionState")), "Disconnected");
    assert_string_equal(json_string_value(json_object_get(doc, "statusUpdateTime")), "0001-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(doc, "lastActivityTime")), "0001-01-01T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(doc, "cloudToDeviceMessageCount")), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "authenticationType")), "sas");
    assert_json(json_object_get(doc, "x509Thumbprint"), "{\"primaryThumbprint\":null,\"secondaryThumbprint\":null}");
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), 1);
    assert_json(json_object_get(doc, "tags"), "{}");
    assert_json(json_object_get(doc, "capabilities"), "{\"iotEdge\":false}");
    assert_int_equal(json_integer_value(path(doc, "properties/desired/$version")), 1);
    assert_string_equal(json_string_value(path(doc, "properties/reported/$metadata/$lastUpdated")),
                        "0001-01-01T00:00:00Z");
    json_decref(doc);
    doc = twin_document(t, identity("dev1", "mod1"));
    assert_string_equal(json_string_value(json_object_get(doc, "moduleId")), "mod1");
    assert_null(json_object_get(doc, "capabilities"));
    json_decref(doc);
    char etag[32];
    twin_etag(t, etag, sizeof etag);
    assert_string_equal(etag, "\"AAAAAAAAAAE=\"");
    twin_free(t);
    twin_free(NULL);
}

/* ---- merge ---- */

static void merge_tags_and_desired(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    json_t *push = NULL;
    assert_int_equal(update(t, "{\"tags\":{\"loc\":{\"city\":\"Oslo\",\"floor\":2}},\"properties\":{\"desired\":"
                               "{\"rate\":5,\"cfg\":{\"a\":1,\"b\":2}}}}",
                            TWIN_MERGE, &push, &e),
                     ERR_OK);
    assert_json(push, "{\"rate\":5,\"cfg\":{\"a\":1,\"b\":2},\"$version\":2}");
    json_decref(push);
    assert_int_equal(twin_version(t), 2);
    assert_int_equal(twin_desired_version(t), 2);
    /* null deletes, objects merge, the rest replaces */
    assert_int_equal(update(t, "{\"tags\":{\"loc\":{\"floor\":null}},\"properties\":{\"desired\":{\"cfg\":{\"a\":null,"
                               "\"c\":3},\"rate\":null}}}",
                            TWIN_MERGE, &push, &e),
                     ERR_OK);
    assert_json(push, "{\"cfg\":{\"a\":null,\"c\":3},\"rate\":null,\"$version\":3}");
    json_decref(push);
    json_t *doc = twin_document(t, identity("d", NULL));
    assert_json(json_object_get(doc, "tags"), "{\"loc\":{\"city\":\"Oslo\"}}");
    json_t *desired = path(doc, "properties/desired");
    assert_json(json_object_get(desired, "cfg"), "{\"b\":2,\"c\":3}");
    assert_null(json_object_get(desired, "rate"));
    /* $metadata: every object and value, with $lastUpdatedVersion in desired */
    json_t *meta = json_object_get(desired, "$metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "$lastUpdated")), "2025-12-01T10:00:00.0000000Z");
    assert_int_equal(json_integer_value(json_object_get(meta, "$lastUpdatedVersion")), 3);
    assert_int_equal(json_integer_value(path(meta, "cfg/b/$lastUpdatedVersion")), 2);
    assert_int_equal(json_integer_value(path(meta, "cfg/c/$lastUpdatedVersion")), 3);
    assert_null(path(meta, "cfg/a"));
    assert_null(json_object_get(meta, "rate"));
    json_decref(doc);
    /* A tags-only change: no push, desired version unchanged, twin version bumped. */
    assert_int_equal(update(t, "{\"tags\":{\"x\":true}}", TWIN_MERGE, &push, &e), ERR_OK);
    assert_null(push);
    assert_int_equal(twin_desired_version(t), 3);
    assert_int_equal(twin_version(t), 4);
    /* Members of a whole twin other than tags/properties are ignored; so are $metadata/$version in desired. */
    assert_int_equal(update(t, "{\"deviceId\":\"other\",\"etag\":\"x\",\"version\":99,\"properties\":{\"desired\":"
                               "{\"$metadata\":{},\"$version\":7,\"k\":1}}}",
                            TWIN_MERGE, &push, &e),
                     ERR_OK);
    assert_json(push, "{\"k\":1,\"$version\":4}");
    json_decref(push);
    /* "tags": null deletes every tag */
    assert_int_equal(update(t, "{\"tags\":null}", TWIN_MERGE, NULL, &e), ERR_OK);
    doc = twin_document(t, identity("d", NULL));
    assert_json(json_object_get(doc, "tags"), "{}");
    json_decref(doc);
    twin_free(t);
}

/* ---- replace ---- */

static void replace_tags_and_desired(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    json_t *push = NULL;
    assert_int_equal(update(t, "{\"tags\":{\"a\":1,\"b\":2},\"properties\":{\"desired\":{\"x\":1,\"y\":{\"z\":2}}}}",
                            TWIN_MERGE, NULL, &e),
                     ERR_OK);
    assert_int_equal(report(t, "{\"r\":1}", &e), ERR_OK);
    /* A whole GET result sent back: reported is ignored, $metadata/$version dropped, nulls mean absent. */
    json_t *doc = twin_document(t, identity("d", NULL));
    json_object_set_new(json_object_get(doc, "tags"), "a", json_null());
    json_t *desired = path(doc, "properties/desired");
    json_object_del(desired, "x");
    json_object_set_new(desired, "w", json_integer(9));
    json_object_set_new(path(doc, "properties/reported"), "r", json_integer(2));
    assert_int_equal(twin_update(t, doc, TWIN_REPLACE, T0, &push, &e), ERR_OK);
    json_decref(doc);
    /* The device gets the new desired, and null for what went away. */
    assert_json(push, "{\"y\":{\"z\":2},\"w\":9,\"x\":null,\"$version\":3}");
    json_decref(push);
    doc = twin_document(t, identity("d", NULL));
    assert_json(json_object_get(doc, "tags"), "{\"b\":2}");
    assert_int_equal(json_integer_value(path(doc, "properties/reported/r")), 1);
    assert_int_equal(json_integer_value(path(doc, "properties/desired/$metadata/w/$lastUpdatedVersion")), 3);
    json_decref(doc);
    /* An empty replacement empties both. */
    assert_int_equal(update(t, "{}", TWIN_REPLACE, &push, &e), ERR_OK);
    assert_json(push, "{\"y\":null,\"w\":null,\"$version\":4}");
    json_decref(push);
    json_t *p = twin_properties(t);
    assert_json(json_object_get(p, "desired"), "{\"$version\":4}");
    json_decref(p);
    twin_free(t);
}

/* ---- reported ---- */

static void reported_patches(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    assert_int_equal(report(t, "{\"fw\":{\"v\":\"1.0\",\"ok\":true},\"n\":1.5}", &e), ERR_OK);
    assert_int_equal(twin_reported_version(t), 2);
    assert_int_equal(report(t, "{\"fw\":{\"ok\":null},\"list\":[1,\"a\",{\"b\":1}]}", &e), ERR_OK);
    assert_int_equal(twin_reported_version(t), 3);
    assert_int_equal(twin_version(t), 3);
    json_t *p = twin_properties(t);
    assert_json(json_object_get(p, "reported"),
                "{\"fw\":{\"v\":\"1.0\"},\"n\":1.5,\"list\":[1,\"a\",{\"b\":1}],\"$version\":3}");
    json_decref(p);
    json_t *doc = twin_document(t, identity("d", NULL));
    json_t *meta = path(doc, "properties/reported/$metadata");
    assert_string_equal(json_string_value(path(meta, "fw/v/$lastUpdated")), "2025-12-01T10:00:00.0010000Z");
    assert_null(json_object_get(meta, "$lastUpdatedVersion"));
    json_decref(doc);
    /* The service cannot write reported: ignored in a PATCH (a whole twin sent back), the twin unchanged. */
    char *before = twin_save(t);
    assert_int_equal(update(t, "{\"properties\":{\"reported\":{\"x\":1}}}", TWIN_MERGE, NULL, &e), ERR_OK);
    char *after = twin_save(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
    twin_free(t);
}

/* ---- limits and rules: each refused with the hub's code, the twin unchanged ---- */

static void expect_refused(struct twin *t, const char *service_body, const char *reported_patch, int code)
{
    char *before = twin_save(t);
    struct twin_error e = {0, ""};
    json_t *push = NULL;
    int rc = service_body ? update(t, service_body, TWIN_MERGE, &push, &e) : report(t, reported_patch, &e);
    if (rc != ERR_INVALID)
        fail_msg("accepted: %.200s", service_body ? service_body : reported_patch);
    assert_int_equal(e.code, code);
    assert_true(e.message[0] != '\0');
    assert_null(push);
    char *after = twin_save(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* A JSON text with depth nested objects {"a":{"a":...{"a":1}}}. */
static char *nested(int depth)
{
    size_t cap = (size_t)depth * 6 + 8, n = 0;
    char *s = malloc(cap);
    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "{\"a\":");
    n += (size_t)snprintf(s + n, cap - n, "1");
    for (int i = 0; i < depth; i++)
        s[n++] = '}';
    s[n] = '\0';
    return s;
}

/* {"<prefix>k0":"xxx...",...} with count strings of len bytes. */
static char *big_object(int count, int len)
{
    size_t cap = (size_t)count * ((size_t)len + 16) + 4, n = 0;
    char *s = malloc(cap);
    s[n++] = '{';
    for (int i = 0; i < count; i++) {
        n += (size_t)snprintf(s + n, cap - n, "%s\"k%d\":\"", i ? "," : "", i);
        memset(s + n, 'x', (size_t)len);
        n += (size_t)len;
        s[n++] = '"';
    }
    s[n++] = '}';
    s[n] = '\0';
    return s;
}

static char *wrap(const char *fmt, const char *inner)
{
    size_t cap = strlen(fmt) + strlen(inner) + 1;
    char *s = malloc(cap);
    snprintf(s, cap, fmt, inner);
    return s;
}

static void limits_and_rules(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    assert_int_equal(update(t, "{\"tags\":{\"keep\":1},\"properties\":{\"desired\":{\"keep\":1}}}", TWIN_MERGE, NULL, &e),
                     ERR_OK);
    /* key rules: '.', '$', space, control characters (C0 and C1), empty, over 1 KiB */
    expect_refused(t, "{\"tags\":{\"a.b\":1}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"properties\":{\"desired\":{\"$x\":1}}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"properties\":{\"desired\":{\"o\":{\"a b\":1}}}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"tags\":{\"a\\tb\":1}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    struct twin_error ke;
    assert_int_equal(update(t, "{\"tags\":{\"a\\nb\":1}}", TWIN_MERGE, NULL, &ke), ERR_INVALID);
    assert_null(strchr(ke.message, '\n')); /* the message quotes the key without its control characters */
    assert_non_null(strstr(ke.message, "a?b"));
    expect_refused(t, "{\"tags\":{\"a\\u0085b\":1}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"tags\":{\"\":1}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"a.b\":1}", TWIN_ERR_ARGUMENT_INVALID);
    /* a device's patch may not carry the hub's own members (the hub answers 400004 to a GET result sent back) */
    expect_refused(t, NULL, "{\"a\":1,\"$version\":4}", TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"$metadata\":{}}", TWIN_ERR_ARGUMENT_INVALID);
    char key[1100];
    memset(key, 'k', 1025);
    key[1025] = '\0';
    char *body = malloc(1200);
    snprintf(body, 1200, "{\"%s\":1}", key);
    expect_refused(t, NULL, body, TWIN_ERR_ARGUMENT_INVALID);
    key[1024] = '\0'; /* exactly 1 KiB is allowed */
    snprintf(body, 1200, "{\"%s\":1}", key);
    assert_int_equal(report(t, body, &e), ERR_OK);
    free(body);
    /* integers within [-2^52, 2^52 - 1] */
    expect_refused(t, "{\"tags\":{\"n\":4503599627370496}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"n\":-4503599627370497}", TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"n\":[1,4503599627370496]}", TWIN_ERR_ARGUMENT_INVALID);
    assert_int_equal(report(t, "{\"n\":4503599627370495,\"m\":-4503599627370496}", &e), ERR_OK);
    /* strings at most 4 KiB */
    char *s = big_object(1, TWIN_STRING_MAX + 1);
    expect_refused(t, NULL, s, TWIN_ERR_ARGUMENT_INVALID);
    free(s);
    s = big_object(1, TWIN_STRING_MAX);
    assert_int_equal(report(t, s, &e), ERR_OK);
    free(s);
    /* depth 10 below the section root (the section plus 10 nested objects); arrays count; no null inside arrays */
    char *deep = nested(TWIN_MAX_DEPTH + 1);
    char *b = wrap("{\"properties\":{\"desired\":%s}}", deep);
    assert_int_equal(update(t, b, TWIN_MERGE, NULL, &e), ERR_OK);
    free(b);
    free(deep);
    deep = nested(TWIN_MAX_DEPTH + 2);
    b = wrap("{\"properties\":{\"desired\":%s}}", deep);
    expect_refused(t, b, NULL, TWIN_ERR_ARGUMENT_INVALID);
    free(b);
    b = wrap("{\"tags\":%s}", deep);
    expect_refused(t, b, NULL, TWIN_ERR_ARGUMENT_INVALID);
    free(b);
    expect_refused(t, NULL, deep, TWIN_ERR_ARGUMENT_INVALID);
    free(deep);
    expect_refused(t, NULL, "{\"a\":[[[[[[[[[[[1]]]]]]]]]]]}", TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"a\":[1,null]}", TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "{\"a\":[{\"b\":null}]}", TWIN_ERR_ARGUMENT_INVALID);
    /* sizes: tags 8 KiB, desired 32 KiB, reported 32 KiB -- over them 403100 */
    s = big_object(3, 3000);
    b = wrap("{\"tags\":%s}", s);
    expect_refused(t, b, NULL, TWIN_ERR_MAX_PROPERTIES);
    free(b);
    free(s);
    s = big_object(11, 3000);
    b = wrap("{\"properties\":{\"desired\":%s}}", s);
    expect_refused(t, b, NULL, TWIN_ERR_MAX_PROPERTIES);
    free(b);
    expect_refused(t, NULL, s, TWIN_ERR_MAX_PROPERTIES);
    free(s);
    /* the size counts what is there after the merge */
    s = big_object(5, 3000);
    assert_int_equal(report(t, s, &e), ERR_OK);
    free(s);
    s = malloc(40000);
    size_t n = (size_t)snprintf(s, 40000, "{\"more\":\"");
    memset(s + n, 'y', 4000);
    n += 4000;
    for (int i = 0; i < 5; i++) {
        n += (size_t)snprintf(s + n, 40000 - n, "\",\"more%d\":\"", i);
        memset(s + n, 'y', 4000);
        n += 4000;
    }
    snprintf(s + n, 40000 - n, "\"}");
    expect_refused(t, NULL, s, TWIN_ERR_MAX_PROPERTIES);
    free(s);
    /* shapes */
    expect_refused(t, "{\"tags\":[1]}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"properties\":[1]}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "{\"properties\":{\"desired\":\"x\"}}", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, "[1]", NULL, TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "[1]", TWIN_ERR_ARGUMENT_INVALID);
    expect_refused(t, NULL, "\"x\"", TWIN_ERR_ARGUMENT_INVALID);
    twin_free(t);
}

/* ---- etags ---- */

static void etags(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    assert_true(twin_etag_matches(t, NULL));
    assert_true(twin_etag_matches(t, ""));
    assert_true(twin_etag_matches(t, "*"));
    assert_true(twin_etag_matches(t, "\"*\""));
    assert_true(twin_etag_matches(t, "\"AAAAAAAAAAE=\""));
    assert_true(twin_etag_matches(t, "AAAAAAAAAAE="));
    assert_true(twin_etag_matches(t, "W/\"AAAAAAAAAAE=\""));
    assert_int_equal(update(t, "{\"tags\":{\"a\":1}}", TWIN_MERGE, NULL, &e), ERR_OK);
    assert_false(twin_etag_matches(t, "\"AAAAAAAAAAE=\""));
    assert_true(twin_etag_matches(t, "\"AAAAAAAAAAI=\""));
    assert_false(twin_etag_matches(t, "\"\""));
    assert_false(twin_etag_matches(t, "\"AAAAAAAAAAI"));
    twin_free(t);
}

/* ---- persistence ---- */

static void save_and_load(void **state)
{
    struct twin *t = twin_new();
    struct twin_error e;
    assert_int_equal(update(t, "{\"tags\":{\"a\":1},\"properties\":{\"desired\":{\"d\":{\"x\":\"y\"}}}}", TWIN_MERGE, NULL,
                            &e),
                     ERR_OK);
    assert_int_equal(report(t, "{\"r\":[1,2]}", &e), ERR_OK);
    char *text = twin_save(t);
    struct twin *u = NULL;
    assert_int_equal(twin_load(text, strlen(text), &u), ERR_OK);
    json_t *a = twin_document(t, identity("d", NULL)), *b = twin_document(u, identity("d", NULL));
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    assert_int_equal(twin_version(u), 3);
    free(text);
    twin_free(u);
    const char *bad[] = {"", "[]", "{}", "{\"version\":1}", "not json",
                         "{\"version\":0,\"tags\":{},\"desired\":{},\"desiredMeta\":{},\"desiredVersion\":1,"
                         "\"reported\":{},\"reportedMeta\":{},\"reportedVersion\":1}",
                         "{\"version\":1,\"tags\":[],\"desired\":{},\"desiredMeta\":{},\"desiredVersion\":1,"
                         "\"reported\":{},\"reportedMeta\":{},\"reportedVersion\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        u = (struct twin *)1;
        assert_int_equal(twin_load(bad[i], strlen(bad[i]), &u), ERR_MALFORMED);
        assert_null(u);
    }
    twin_free(t);
}

/* ---- out of memory: jansson allocations failing at every point in turn ---- */

/* Each operation either works or reports ERR_NOMEM / NULL with the twin unchanged; nothing leaks (ASan). */
static void out_of_memory(void **state)
{
    json_t *merge = J("{\"tags\":{\"a\":{\"b\":1}},\"properties\":{\"desired\":{\"x\":{\"y\":[1,2]},\"z\":null}}}");
    json_t *replace = J("{\"tags\":{\"c\":1},\"properties\":{\"desired\":{\"w\":{\"v\":null}}}}");
    json_t *reported = J("{\"r\":{\"s\":\"t\"},\"u\":null}");
    struct twin *t = twin_new();
    struct twin_error e;
    assert_int_equal(update(t, "{\"properties\":{\"desired\":{\"z\":1,\"x\":{\"q\":2}}}}", TWIN_MERGE, NULL, &e), ERR_OK);
    char *start = twin_save(t);
    for (int op = 0; op < 6; op++) {
        bool completed = false;
        for (size_t n = 0; n < 1000 && !completed; n++) {
            struct twin *u = NULL;
            assert_int_equal(twin_load(start, strlen(start), &u), ERR_OK);
            json_t *push = NULL, *doc = NULL;
            char *text = NULL;
            int rc = ERR_OK;
            fail_after = n;
            json_set_alloc_funcs(failing_malloc, free);
            switch (op) {
            case 0: rc = twin_update(u, merge, TWIN_MERGE, T0, &push, &e); break;
            case 1: rc = twin_update(u, replace, TWIN_REPLACE, T0, &push, &e); break;
            case 2: rc = twin_report(u, reported, T0, &e); break;
            case 3: doc = twin_document(u, identity("d", "m")); rc = doc ? ERR_OK : ERR_NOMEM; break;
            case 4: doc = twin_properties(u); rc = doc ? ERR_OK : ERR_NOMEM; break;
            default: text = twin_save(u); rc = text ? ERR_OK : ERR_NOMEM; break;
            }
            fail_after = SIZE_MAX;
            json_set_alloc_funcs(malloc, free);
            if (rc != ERR_OK) {
                assert_int_equal(rc, ERR_NOMEM);
                assert_null(push);
                char *now = twin_save(u);
                assert_string_equal(now, start);
                free(now);
            }
            completed = rc == ERR_OK;
            json_decref(push);
            json_decref(doc);
            free(text);
            twin_free(u);
        }
        assert_true(completed);
    }
    /* twin_load and twin_new under failing allocations: a twin or ERR_NOMEM/NULL */
    for (size_t n = 0; n < 200; n++) {
        struct twin *u = NULL;
        fail_after = n;
        json_set_alloc_funcs(failing_malloc, free);
        int rc = twin_load(start, strlen(start), &u);
        struct twin *v = twin_new();
        fail_after = SIZE_MAX;
        json_set_alloc_funcs(malloc, free);
        assert_true(rc == ERR_OK || rc == ERR_NOMEM || rc == ERR_MALFORMED);
        assert_true(rc == ERR_OK ? u != NULL : u == NULL);
        twin_free(u);
        twin_free(v);
    }
    free(start);
    twin_free(t);
    json_decref(merge);
    json_decref(replace);
    json_decref(reported);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fresh_twin_documents),
        cmocka_unit_test(merge_tags_and_desired),
        cmocka_unit_test(replace_tags_and_desired),
        cmocka_unit_test(reported_patches),
        cmocka_unit_test(limits_and_rules),
        cmocka_unit_test(etags),
        cmocka_unit_test(save_and_load),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
