/* test_registry.c -- unit tests for emulator/registry: create/update/delete with etags, id and body
 * validation, modules, the REST JSON shapes, persistence in the store (round trip, a failing write leaving
 * memory and disk as they were, changes inside an enclosing transaction), the one-time import of an older
 * registry.json (corrupt files refused untouched, imported once, never twice) and a 10,000-device table.
 * Files go to a mkdtemp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "err.h"
#include "registry.h"

#define KEY_A "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define KEY_B "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="

/* ---- helpers ---- */

struct tmpdir {
    char dir[64];
    char path[128];     /* dir/registry.json (older releases) */
    char imported[160]; /* path.imported */
    char db[128];       /* dir/iothub.db */
};

static void tmpdir_make(struct tmpdir *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/test_registry.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/registry.json", t->dir);
    snprintf(t->imported, sizeof t->imported, "%s.imported", t->path);
    snprintf(t->db, sizeof t->db, "%s/" DB_FILE_NAME, t->dir);
}

static void tmpdir_remove(struct tmpdir *t)
{
    char p[160];
    if (unlink(t->path) != 0)
        rmdir(t->path);
    unlink(t->imported);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", t->db, suffix[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(t->dir), 0);
}

/* Opens the store in t and the registry on it (importing t->path when present); NULL on failure with err. */
static struct registry *reg_open(const struct tmpdir *t, char *err, size_t errlen)
{
    struct db *db = db_open(t->db, err, errlen);
    if (!db)
        return NULL;
    struct registry *r = registry_new(db, t->path, err, errlen);
    if (!r)
        db_close(db);
    return r;
}

/* registry_free, then the store it used. */
static void reg_free(struct registry *r)
{
    struct db *db = r ? registry_db(r) : NULL;
    registry_free(r);
    db_close(db);
}

static int sql(struct registry *r, const char *text)
{
    sqlite3_stmt *st = db_stmt(registry_db(r), text);
    assert_non_null(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc;
}

static char *file_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = calloc(1, 1 << 20);
    assert_non_null(data);
    size_t n = fread(data, 1, (1 << 20) - 1, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

static void file_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static struct registry *new_mem(void)
{
    char err[256];
    struct db *db = db_open(NULL, err, sizeof err);
    assert_non_null(db);
    struct registry *r = registry_new(db, NULL, err, sizeof err);
    assert_non_null(r);
    return r;
}

/* PUT with a body given as JSON text. Returns the result; *out may be NULL. */
static int put(struct registry *r, const char *did, const char *mid, const char *body_text, const char *if_match,
               const struct identity **out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *body = json_loads(body_text, 0, &je);
    assert_non_null(body);
    const struct identity *got = (const struct identity *)1;
    bool created = true;
    int rc = registry_put(r, did, mid, body, if_match, &got, &created, err, errlen);
    json_decref(body);
    if (rc) {
        assert_null(got);
        assert_false(created);
    } else {
        if (db_in_transaction(registry_db(r)))
            assert_null(got); /* shows once the enclosing transaction commits */
        else
            assert_non_null(got);
        assert_int_equal(created, if_match == NULL);
    }
    if (out)
        *out = got;
    return rc;
}

static const struct identity *put_ok(struct registry *r, const char *did, const char *mid, const char *body_text,
                                     const char *if_match)
{
    char err[256] = "";
    const struct identity *id = NULL;
    int rc = put(r, did, mid, body_text, if_match, &id, err, sizeof err);
    if (rc)
        fail_msg("put %s/%s: %d %s", did, mid ? mid : "", rc, err);
    return id;
}

static int put_rc(struct registry *r, const char *did, const char *mid, const char *body_text, const char *if_match)
{
    char err[256] = "";
    int rc = put(r, did, mid, body_text, if_match, NULL, err, sizeof err);
    if (rc)
        assert_true(err[0] != '\0'); /* every failure says why */
    return rc;
}

static void etag_of(const struct identity *id, char *out)
{
    registry_etag(id, out, 48);
}

static json_t *get_json(const struct registry *r, const char *did, const char *mid)
{
    const struct identity *id = registry_find(r, did, mid);
    assert_non_null(id);
    json_t *j = registry_identity_json(id);
    assert_non_null(j);
    return j;
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static bool is_base64_of(const char *s, size_t nbytes)
{
    size_t n = strlen(s);
    if (n != (nbytes + 2) / 3 * 4)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                  c == '/' || (c == '=' && i >= n - 2);
        if (!ok)
            return false;
    }
    return true;
}

/* ---- create, update, etags ---- */

static void create_with_generated_keys(void **state)
{
    struct registry *r = new_mem();
    const struct identity *id = put_ok(r, "dev1", NULL, "{\"deviceId\":\"dev1\"}", NULL);
    assert_string_equal(id->device_id, "dev1");
    assert_string_equal(id->module_id, "");
    assert_true(is_base64_of(id->primary_key, 32));
    assert_true(is_base64_of(id->secondary_key, 32));
    assert_int_equal(strlen(id->primary_key), 44);
    assert_string_not_equal(id->primary_key, id->secondary_key);
    assert_true(id->enabled);
    assert_int_equal(id->version, 0);
    assert_int_equal(strlen(id->generation_id), 18);
    assert_int_equal(strspn(id->generation_id, "0123456789"), 18);

    /* The Node SDK's normalised body: sas with empty keys. */
    id = put_ok(r, "dev2", NULL,
                "{\"deviceId\":\"dev2\",\"status\":\"enabled\",\"authentication\":{\"type\":\"sas\","
                "\"symmetricKey\":{\"primaryKey\":\"\",\"secondaryKey\":\"\"}}}",
                NULL);
    assert_int_equal(strlen(id->primary_key), 44);
    assert_int_equal(strlen(id->secondary_key), 44);
    assert_int_equal(registry_device_count(r), 2);
    reg_free(r);
}

static void create_with_given_keys(void **state)
{
    struct registry *r = new_mem();
    const struct identity *id =
        put_ok(r, "dev1", NULL,
               "{\"deviceId\":\"dev1\",\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"" KEY_A
               "\",\"secondaryKey\":\"" KEY_B "\"}}}",
               NULL);
    assert_string_equal(id->primary_key, KEY_A);
    assert_string_equal(id->secondary_key, KEY_B);
    /* Only one given: the other is generated. */
    id = put_ok(r, "dev2", NULL, "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":{\"primaryKey\":\"" KEY_A "\"}}}",
                NULL);
    assert_string_equal(id->primary_key, KEY_A);
    assert_int_equal(strlen(id->secondary_key), 44);
    assert_string_not_equal(id->secondary_key, KEY_A);
    reg_free(r);
}

static void recreate_is_exists(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL, "{}", NULL);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"deviceId\":\"dev1\"}", NULL), ERR_EXISTS);
    assert_int_equal(put_rc(r, "dev1", "", "{}", ""), ERR_EXISTS); /* "" if_match is no If-Match */
    assert_int_equal(registry_find(r, "dev1", NULL)->version, 0);
    reg_free(r);
}

static void update_with_wildcard(void **state)
{
    struct registry *r = new_mem();
    const struct identity *id = put_ok(r, "dev1", NULL, "{}", NULL);
    char gen[32], pk[64], tag[48];
    snprintf(gen, sizeof gen, "%s", id->generation_id);
    snprintf(pk, sizeof pk, "%s", id->primary_key);
    etag_of(id, tag);
    assert_string_equal(tag, "\"MA==\"");

    id = put_ok(r, "dev1", NULL, "{\"deviceId\":\"dev1\",\"status\":\"enabled\"}", "*");
    assert_int_equal(id->version, 1);
    etag_of(id, tag);
    assert_string_equal(tag, "\"MQ==\"");
    id = put_ok(r, "dev1", NULL,
                "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":{\"primaryKey\":\"\",\"secondaryKey\":\"\"}}}",
                "\"*\"");
    assert_int_equal(id->version, 2);
    assert_string_equal(id->generation_id, gen); /* kept */
    assert_string_equal(id->primary_key, pk);    /* empty keys on update keep the old ones */
    etag_of(id, tag);
    assert_string_equal(tag, "\"Mg==\"");
    reg_free(r);
}

static void update_with_etag(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL, "{}", NULL);
    const struct identity *id = put_ok(r, "dev1", NULL, "{}", "\"MA==\""); /* quoted */
    assert_int_equal(id->version, 1);
    id = put_ok(r, "dev1", NULL, "{}", "MQ=="); /* unquoted */
    assert_int_equal(id->version, 2);
    assert_int_equal(put_rc(r, "dev1", NULL, "{}", "\"MQ==\""), ERR_PRECONDITION); /* stale */
    assert_int_equal(put_rc(r, "dev1", NULL, "{}", "MA=="), ERR_PRECONDITION);
    assert_int_equal(put_rc(r, "dev1", NULL, "{}", "garbage"), ERR_PRECONDITION);
    assert_int_equal(registry_find(r, "dev1", NULL)->version, 2);
    id = put_ok(r, "dev1", NULL, "{\"etag\":\"ignored\"}", "\"Mg==\"");
    assert_int_equal(id->version, 3);
    reg_free(r);
}

static void update_missing_is_not_found(void **state)
{
    struct registry *r = new_mem();
    assert_int_equal(put_rc(r, "nope", NULL, "{}", "*"), ERR_NOT_FOUND);
    assert_null(registry_find(r, "nope", NULL));
    assert_int_equal(registry_device_count(r), 0);
    reg_free(r);
}

/* ---- validation ---- */

static void invalid_ids(void **state)
{
    char long_id[REGISTRY_MAX_ID + 2];
    memset(long_id, 'a', sizeof long_id);
    long_id[REGISTRY_MAX_ID + 1] = '\0';
    assert_false(registry_id_is_valid(long_id)); /* 129 chars */
    long_id[REGISTRY_MAX_ID] = '\0';
    assert_true(registry_id_is_valid(long_id)); /* 128 chars */
    assert_false(registry_id_is_valid(""));
    assert_false(registry_id_is_valid(NULL));
    assert_false(registry_id_is_valid("a b"));
    assert_false(registry_id_is_valid("a/b"));
    assert_false(registry_id_is_valid("a\"b"));
    assert_false(registry_id_is_valid("caf\xc3\xa9"));
    assert_true(registry_id_is_valid("A-z.0+%_#*?!(),=@$'"));

    struct registry *r = new_mem();
    long_id[REGISTRY_MAX_ID] = 'a';
    assert_int_equal(put_rc(r, long_id, NULL, "{}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "a b", NULL, "{}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "a/b", NULL, "{}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "", NULL, "{}", NULL), ERR_INVALID);
    put_ok(r, "dev1", NULL, "{}", NULL);
    assert_int_equal(put_rc(r, "dev1", "m/1", "{}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", long_id, "{}", NULL), ERR_INVALID);
    assert_int_equal(registry_device_count(r), 1);
    reg_free(r);
}

static void body_path_mismatch(void **state)
{
    struct registry *r = new_mem();
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"deviceId\":\"dev2\"}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"deviceId\":42}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", NULL, "[]", NULL), ERR_INVALID);
    put_ok(r, "dev1", NULL, "{\"deviceId\":\"dev1\"}", NULL);
    assert_int_equal(put_rc(r, "dev1", "m1", "{\"deviceId\":\"dev2\",\"moduleId\":\"m1\"}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", "m1", "{\"deviceId\":\"dev1\",\"moduleId\":\"m2\"}", NULL), ERR_INVALID);
    put_ok(r, "dev1", "m1", "{\"deviceId\":\"dev1\",\"moduleId\":\"m1\"}", NULL);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"deviceId\":\"DEV1\"}", "*"), ERR_INVALID); /* case-sensitive */
    reg_free(r);
}

static void status_disabled(void **state)
{
    struct registry *r = new_mem();
    const struct identity *id = put_ok(r, "dev1", NULL, "{\"status\":\"disabled\"}", NULL);
    assert_false(id->enabled);
    assert_int_equal(id->status_updated_s, 0);
    json_t *j = get_json(r, "dev1", NULL);
    assert_string_equal(jstr(j, "status"), "disabled");
    json_decref(j);

    id = put_ok(r, "dev1", NULL, "{\"status\":\"enabled\",\"statusReason\":\"back\"}", "*");
    assert_true(id->enabled);
    assert_true(id->status_updated_s > 0);
    assert_string_equal(id->status_reason, "back");
    j = get_json(r, "dev1", NULL);
    assert_string_not_equal(jstr(j, "statusUpdatedTime"), "0001-01-01T00:00:00Z");
    assert_string_equal(jstr(j, "statusReason"), "back");
    json_decref(j);
    id = put_ok(r, "dev1", NULL, "{}", "*"); /* absent status: kept */
    assert_true(id->enabled);
    id = put_ok(r, "dev1", NULL, "{\"status\":\"disabled\",\"statusReason\":null}", "*");
    assert_false(id->enabled);
    assert_null(id->status_reason);

    assert_int_equal(put_rc(r, "dev1", NULL, "{\"status\":\"Enabled\"}", "*"), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev2", NULL, "{\"status\":true}", NULL), ERR_INVALID);
    reg_free(r);
}

static void bad_base64_key(void **state)
{
    static const char *bad[] = {
        "abc",                                                  /* not a multiple of 4 */
        "!!!!!!!!!!!!!!!!!!!!!!!!",                             /* alphabet */
        "AAAA",                                                 /* 3 bytes: too short */
        "AAAAAAAAAAAAAAAAAAAA=AAA",                             /* padding in the middle */
        "AAAAAAAAAAAAAAAAAAAAA===",                             /* three '=' */
        "AAAAAAAAAAAA AAAAAAAAAAA",                             /* space */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 69 bytes */
    };
    struct registry *r = new_mem();
    char body[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"%s\"}}}", bad[i]);
        assert_int_equal(put_rc(r, "dev1", NULL, body, NULL), ERR_INVALID);
        snprintf(body, sizeof body, "{\"authentication\":{\"symmetricKey\":{\"secondaryKey\":\"%s\"}}}", bad[i]);
        assert_int_equal(put_rc(r, "dev1", NULL, body, NULL), ERR_INVALID);
    }
    /* The bounds: 16 and 64 bytes are accepted. */
    put_ok(r, "k16", NULL, "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}}}", NULL);
    snprintf(body, sizeof body, "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"%.86s==\"}}}",
             bad[sizeof bad / sizeof bad[0] - 1]);
    put_ok(r, "k64", NULL, body, NULL);
    assert_int_equal(registry_delete(r, "k16", NULL, NULL), ERR_OK);
    assert_int_equal(registry_delete(r, "k64", NULL, NULL), ERR_OK);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":7}}}", NULL),
                     ERR_INVALID);
    assert_int_equal(registry_device_count(r), 0);
    reg_free(r);
}

static void x509_rejected(void **state)
{
    struct registry *r = new_mem();
    char err[256] = "";
    assert_int_equal(put(r, "dev1", NULL,
                         "{\"authentication\":{\"type\":\"selfSigned\",\"x509Thumbprint\":{\"primaryThumbprint\":"
                         "\"ABCDEF\",\"secondaryThumbprint\":null}}}",
                         NULL, NULL, err, sizeof err),
                     ERR_INVALID);
    assert_non_null(strstr(err, "sas"));
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"authentication\":{\"type\":\"certificateAuthority\"}}", NULL),
                     ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"authentication\":{\"type\":\"none\"}}", NULL), ERR_INVALID);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"authentication\":\"sas\"}", NULL), ERR_INVALID);
    assert_null(registry_find(r, "dev1", NULL));
    reg_free(r);
}

/* ---- modules, lists, delete ---- */

static void modules(void **state)
{
    struct registry *r = new_mem();
    assert_int_equal(put_rc(r, "dev1", "m1", "{\"deviceId\":\"dev1\",\"moduleId\":\"m1\"}", NULL), ERR_NOT_FOUND);
    assert_null(registry_list_modules(r, "dev1"));
    put_ok(r, "dev1", NULL, "{}", NULL);
    put_ok(r, "dev10", NULL, "{}", NULL);
    const struct identity *m = put_ok(r, "dev1", "m2", "{\"deviceId\":\"dev1\",\"moduleId\":\"m2\"}", NULL);
    assert_string_equal(m->device_id, "dev1");
    assert_string_equal(m->module_id, "m2");
    assert_int_equal(strlen(m->primary_key), 44);
    put_ok(r, "dev1", "m1", "{\"managedBy\":\"me\"}", NULL);
    put_ok(r, "dev10", "m1", "{}", NULL);
    assert_int_equal(put_rc(r, "dev1", "m1", "{}", NULL), ERR_EXISTS);
    assert_string_equal(registry_find(r, "dev1", "m1")->managed_by, "me");
    assert_int_equal(registry_device_count(r), 2); /* modules are not devices */

    json_t *list = registry_list_modules(r, "dev1");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(jstr(json_array_get(list, 0), "moduleId"), "m1");
    assert_string_equal(jstr(json_array_get(list, 1), "moduleId"), "m2");
    json_decref(list);

    m = put_ok(r, "dev1", "m2", "{\"managedBy\":\"iotedge\"}", "*");
    assert_int_equal(m->version, 1);
    assert_string_equal(m->managed_by, "iotedge");
    assert_int_equal(registry_delete(r, "dev1", "m2", "\"MA==\""), ERR_PRECONDITION);
    assert_int_equal(registry_delete(r, "dev1", "m2", "\"MQ==\""), ERR_OK);
    assert_null(registry_find(r, "dev1", "m2"));
    assert_int_equal(registry_delete(r, "dev1", "m2", NULL), ERR_NOT_FOUND);

    assert_int_equal(registry_delete(r, "dev1", NULL, "*"), ERR_OK);
    assert_null(registry_find(r, "dev1", NULL));
    assert_null(registry_find(r, "dev1", "m1"));
    assert_null(registry_list_modules(r, "dev1"));
    assert_non_null(registry_find(r, "dev10", "m1")); /* another device's module survives */
    put_ok(r, "dev1", NULL, "{}", NULL);              /* a re-created device starts with no modules */
    list = registry_list_modules(r, "dev1");
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    reg_free(r);
}

static void list_top(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "c", NULL, "{}", NULL);
    put_ok(r, "a", NULL, "{}", NULL);
    put_ok(r, "b", NULL, "{}", NULL);
    put_ok(r, "a", "m", "{}", NULL);
    json_t *list = registry_list_devices(r, 2);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(jstr(json_array_get(list, 0), "deviceId"), "a");
    assert_string_equal(jstr(json_array_get(list, 1), "deviceId"), "b");
    json_decref(list);
    list = registry_list_devices(r, 1000);
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(jstr(json_array_get(list, 2), "deviceId"), "c");
    json_decref(list);
    assert_int_equal(registry_delete(r, "b", NULL, NULL), ERR_OK);
    list = registry_list_devices(r, 1000);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(jstr(json_array_get(list, 1), "deviceId"), "c");
    json_decref(list);
    reg_free(r);
}

static void delete_preconditions(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL, "{}", NULL);
    assert_int_equal(registry_delete(r, "dev1", NULL, "\"MQ==\""), ERR_PRECONDITION);
    assert_int_equal(registry_delete(r, "nope", NULL, "*"), ERR_NOT_FOUND);
    assert_int_equal(registry_delete(r, "dev1", NULL, "\"*\""), ERR_OK);
    put_ok(r, "dev1", NULL, "{}", NULL);
    assert_int_equal(registry_delete(r, "dev1", "", "MA=="), ERR_OK);
    assert_int_equal(registry_device_count(r), 0);
    reg_free(r);
}

static void ensure_device(void **state)
{
    struct registry *r = new_mem();
    assert_int_equal(registry_ensure_device(r, "device1", KEY_A, KEY_B), ERR_OK);
    const struct identity *id = registry_find(r, "device1", NULL);
    assert_string_equal(id->primary_key, KEY_A);
    assert_string_equal(id->secondary_key, KEY_B);
    assert_int_equal(registry_ensure_device(r, "device1", KEY_B, KEY_A), ERR_OK); /* exists: unchanged */
    assert_string_equal(registry_find(r, "device1", NULL)->primary_key, KEY_A);
    assert_int_equal(registry_ensure_device(r, "bad id", KEY_A, KEY_B), ERR_INVALID);
    assert_int_equal(registry_ensure_device(r, "dev2", "nope", KEY_B), ERR_INVALID);
    assert_int_equal(registry_ensure_device(r, "dev3", NULL, NULL), ERR_OK);
    assert_int_equal(strlen(registry_find(r, "dev3", NULL)->primary_key), 44);
    reg_free(r);
}

/* ---- JSON shapes, presence ---- */

static void json_device_shape(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL,
           "{\"capabilities\":{\"iotEdge\":true},\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"" KEY_A
           "\",\"secondaryKey\":\"" KEY_B "\"}}}",
           NULL);
    json_t *j = get_json(r, "dev1", NULL);
    static const char *const keys[] = {"deviceId", "generationId", "etag", "connectionState", "status",
                                       "statusReason", "connectionStateUpdatedTime", "statusUpdatedTime",
                                       "lastActivityTime", "cloudToDeviceMessageCount", "authentication",
                                       "capabilities"};
    assert_int_equal(json_object_size(j), sizeof keys / sizeof keys[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(json_object_get(j, keys[i]));
    assert_string_equal(jstr(j, "deviceId"), "dev1");
    assert_int_equal(strlen(jstr(j, "generationId")), 18);
    assert_string_equal(jstr(j, "etag"), "MA==");
    assert_string_equal(jstr(j, "connectionState"), "Disconnected");
    assert_string_equal(jstr(j, "status"), "enabled");
    assert_true(json_is_null(json_object_get(j, "statusReason")));
    assert_string_equal(jstr(j, "connectionStateUpdatedTime"), "0001-01-01T00:00:00Z");
    assert_string_equal(jstr(j, "statusUpdatedTime"), "0001-01-01T00:00:00Z");
    assert_string_equal(jstr(j, "lastActivityTime"), "0001-01-01T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(j, "cloudToDeviceMessageCount")), 0);
    json_t *auth = json_object_get(j, "authentication");
    assert_string_equal(jstr(auth, "type"), "sas");
    assert_string_equal(jstr(json_object_get(auth, "symmetricKey"), "primaryKey"), KEY_A);
    assert_string_equal(jstr(json_object_get(auth, "symmetricKey"), "secondaryKey"), KEY_B);
    json_t *x509 = json_object_get(auth, "x509Thumbprint");
    assert_true(json_is_null(json_object_get(x509, "primaryThumbprint")));
    assert_true(json_is_null(json_object_get(x509, "secondaryThumbprint")));
    assert_true(json_is_true(json_object_get(json_object_get(j, "capabilities"), "iotEdge")));
    json_decref(j);

    put_ok(r, "dev1", NULL, "{\"capabilities\":{\"iotEdge\":false}}", "*");
    j = get_json(r, "dev1", NULL);
    assert_string_equal(jstr(j, "etag"), "MQ==");
    assert_true(json_is_false(json_object_get(json_object_get(j, "capabilities"), "iotEdge")));
    json_decref(j);
    reg_free(r);
}

static void json_module_shape(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL, "{}", NULL);
    put_ok(r, "dev1", "mod1", "{\"deviceId\":\"dev1\",\"moduleId\":\"mod1\"}", NULL);
    json_t *j = get_json(r, "dev1", "mod1");
    assert_string_equal(jstr(j, "moduleId"), "mod1");
    assert_string_equal(jstr(j, "deviceId"), "dev1");
    assert_true(json_is_null(json_object_get(j, "managedBy")));
    assert_null(json_object_get(j, "capabilities"));
    assert_string_equal(jstr(j, "etag"), "MA==");
    assert_string_equal(jstr(j, "connectionState"), "Disconnected");
    assert_string_equal(jstr(json_object_get(j, "authentication"), "type"), "sas");
    /* A module has no status fields, as the hub's Module object. */
    assert_null(json_object_get(j, "status"));
    assert_null(json_object_get(j, "statusReason"));
    assert_null(json_object_get(j, "statusUpdatedTime"));
    assert_int_equal(json_object_size(j), 10);
    json_decref(j);
    reg_free(r);
}

static void presence(void **state)
{
    struct registry *r = new_mem();
    put_ok(r, "dev1", NULL, "{}", NULL);
    registry_set_connected(r, "dev1", NULL, true, 1700000000);
    registry_set_connected(r, "ghost", NULL, true, 1700000000); /* ignored */
    json_t *j = get_json(r, "dev1", NULL);
    assert_string_equal(jstr(j, "connectionState"), "Connected");
    assert_string_equal(jstr(j, "connectionStateUpdatedTime"), "2023-11-14T22:13:20Z");
    json_decref(j);
    registry_touch(r, "dev1", "", 1700000060);
    registry_touch(r, "dev1", "nomod", 1700000090); /* ignored */
    j = get_json(r, "dev1", NULL);
    assert_string_equal(jstr(j, "lastActivityTime"), "2023-11-14T22:14:20Z");
    json_decref(j);
    const struct identity *id = put_ok(r, "dev1", NULL, "{}", "*"); /* an update keeps presence */
    assert_true(id->connected);
    registry_set_connected(r, "dev1", NULL, false, 1700000100);
    assert_false(registry_find(r, "dev1", NULL)->connected);
    reg_free(r);
}

/* ---- persistence ---- */

static void persistence_round_trip(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256] = "";
    struct registry *r = reg_open(&t, err, sizeof err);
    assert_non_null(r); /* new store: empty */
    assert_int_equal(registry_device_count(r), 0);
    put_ok(r, "dev1", NULL, "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"" KEY_A "\"}}}", NULL);
    put_ok(r, "dev1", NULL, "{\"status\":\"disabled\",\"statusReason\":\"why\",\"capabilities\":{\"iotEdge\":true}}",
           "*");
    put_ok(r, "dev2", NULL, "{}", NULL);
    put_ok(r, "dev2", "m1", "{\"managedBy\":\"edge\"}", NULL);
    put_ok(r, "dev2", "m2", "{}", NULL);
    put_ok(r, "gone", NULL, "{}", NULL);
    put_ok(r, "gone", "gm", "{}", NULL);
    assert_int_equal(registry_delete(r, "gone", NULL, NULL), ERR_OK);
    assert_int_equal(registry_delete(r, "dev2", "m2", NULL), ERR_OK);

    struct registry *r2 = reg_open(&t, err, sizeof err); /* a second reader of the same file */
    assert_non_null(r2);
    assert_int_equal(registry_device_count(r2), 2);
    const char *names[][2] = {{"dev1", NULL}, {"dev2", NULL}, {"dev2", "m1"}};
    for (size_t i = 0; i < 3; i++) {
        const struct identity *a = registry_find(r, names[i][0], names[i][1]);
        const struct identity *b = registry_find(r2, names[i][0], names[i][1]);
        assert_non_null(b);
        assert_string_equal(a->primary_key, b->primary_key);
        assert_string_equal(a->secondary_key, b->secondary_key);
        assert_string_equal(a->generation_id, b->generation_id);
        assert_int_equal(a->version, b->version);
        assert_int_equal(a->enabled, b->enabled);
        assert_int_equal(a->iot_edge, b->iot_edge);
        assert_int_equal(a->status_updated_s, b->status_updated_s);
        char ea[48], eb[48];
        etag_of(a, ea);
        etag_of(b, eb);
        assert_string_equal(ea, eb);
    }
    const struct identity *d1 = registry_find(r2, "dev1", NULL);
    assert_string_equal(d1->primary_key, KEY_A);
    assert_false(d1->enabled);
    assert_true(d1->iot_edge);
    assert_string_equal(d1->status_reason, "why");
    assert_int_equal(d1->version, 1);
    assert_string_equal(registry_find(r2, "dev2", "m1")->managed_by, "edge");
    assert_null(registry_find(r2, "dev2", "m2"));
    assert_null(registry_find(r2, "gone", NULL));
    assert_null(registry_find(r2, "gone", "gm")); /* the module row went with its device */
    reg_free(r);
    reg_free(r2);
    tmpdir_remove(&t);
}

static void presence_not_persisted(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256];
    struct registry *r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    put_ok(r, "dev1", NULL, "{}", NULL);
    registry_set_connected(r, "dev1", NULL, true, 1700000000);
    put_ok(r, "dev1", NULL, "{}", "*"); /* a save while dev1 is connected */
    struct registry *r2 = reg_open(&t, err, sizeof err);
    assert_non_null(r2);
    const struct identity *id = registry_find(r2, "dev1", NULL);
    assert_false(id->connected);
    assert_int_equal(id->connection_state_updated_s, 0);
    assert_int_equal(id->last_activity_s, 0);
    reg_free(r);
    reg_free(r2);
    tmpdir_remove(&t);
}

static void write_failure_is_undone(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256] = "";
    struct registry *r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    put_ok(r, "dev1", NULL, "{}", NULL);
    put_ok(r, "dev1", "m1", "{}", NULL);
    assert_int_equal(sql(r, "PRAGMA query_only = ON"), SQLITE_DONE); /* every write now fails */

    const struct identity *out = NULL;
    assert_int_equal(put(r, "dev2", NULL, "{}", NULL, &out, err, sizeof err), ERR_IO);
    assert_non_null(strstr(err, "store"));
    assert_null(out);
    assert_null(registry_find(r, "dev2", NULL));
    assert_int_equal(registry_device_count(r), 1);
    assert_int_equal(put_rc(r, "dev1", NULL, "{\"status\":\"disabled\"}", "*"), ERR_IO);
    assert_true(registry_find(r, "dev1", NULL)->enabled);
    assert_int_equal(registry_find(r, "dev1", NULL)->version, 0);
    assert_int_equal(registry_delete(r, "dev1", NULL, NULL), ERR_IO);
    assert_non_null(registry_find(r, "dev1", NULL));
    assert_non_null(registry_find(r, "dev1", "m1"));
    assert_int_equal(registry_delete(r, "dev1", "m1", NULL), ERR_IO);
    assert_non_null(registry_find(r, "dev1", "m1"));
    assert_int_equal(registry_ensure_device(r, "dev3", NULL, NULL), ERR_IO);
    assert_null(registry_find(r, "dev3", NULL));
    struct registry *r2 = reg_open(&t, err, sizeof err); /* the disk agrees with memory */
    assert_non_null(r2);
    assert_int_equal(registry_device_count(r2), 1);
    assert_true(registry_find(r2, "dev1", NULL)->enabled);
    assert_non_null(registry_find(r2, "dev1", "m1"));
    reg_free(r2);

    assert_int_equal(sql(r, "PRAGMA query_only = OFF"), SQLITE_DONE); /* writable again: all works */
    put_ok(r, "dev2", NULL, "{}", NULL);
    assert_int_equal(registry_delete(r, "dev1", NULL, NULL), ERR_OK);
    assert_null(registry_find(r, "dev1", "m1"));
    reg_free(r);
    tmpdir_remove(&t);
}

/* Changes inside an enclosing transaction show once it commits, and vanish when it rolls back. */
static void enclosing_transaction(void **state)
{
    struct registry *r = new_mem();
    struct db *db = registry_db(r);
    const struct identity *out = NULL;
    char err[256];
    put_ok(r, "keep", NULL, "{}", NULL);
    put_ok(r, "del", NULL, "{}", NULL);
    assert_int_equal(db_begin(db), ERR_OK);
    assert_int_equal(put(r, "new1", NULL, "{}", NULL, &out, err, sizeof err), ERR_OK);
    assert_null(out);
    assert_null(registry_find(r, "new1", NULL));
    assert_int_equal(put(r, "keep", NULL, "{\"status\":\"disabled\"}", "*", &out, err, sizeof err), ERR_OK);
    assert_true(registry_find(r, "keep", NULL)->enabled);
    assert_int_equal(registry_delete(r, "del", NULL, NULL), ERR_OK);
    assert_non_null(registry_find(r, "del", NULL));
    db_rollback(db);
    assert_null(registry_find(r, "new1", NULL));
    assert_true(registry_find(r, "keep", NULL)->enabled);
    assert_non_null(registry_find(r, "del", NULL));

    assert_int_equal(db_begin(db), ERR_OK);
    char did[32];
    for (int i = 0; i < 300; i++) { /* more pending creates than the table and array had room for */
        snprintf(did, sizeof did, "bulk-%03d", i);
        assert_int_equal(put(r, did, NULL, "{}", NULL, &out, err, sizeof err), ERR_OK);
    }
    assert_int_equal(put(r, "keep", NULL, "{\"status\":\"disabled\"}", "*", &out, err, sizeof err), ERR_OK);
    assert_int_equal(registry_delete(r, "del", NULL, NULL), ERR_OK);
    assert_int_equal(db_commit(db), ERR_OK);
    assert_int_equal(registry_device_count(r), 301);
    assert_non_null(registry_find(r, "bulk-299", NULL));
    assert_false(registry_find(r, "keep", NULL)->enabled);
    assert_int_equal(registry_find(r, "keep", NULL)->version, 1);
    assert_null(registry_find(r, "del", NULL));
    json_t *list = registry_list_devices(r, 1000);
    assert_string_equal(jstr(json_array_get(list, 0), "deviceId"), "bulk-000");
    assert_string_equal(jstr(json_array_get(list, 300), "deviceId"), "keep");
    json_decref(list);
    reg_free(r);
}

/* ---- importing a registry.json of release 0.1 ---- */

static void corrupt_file_is_refused(void **state)
{
    static const char *bad[] = {
        "",
        "{\"version\":1,\"devices\":[",
        "not json",
        "[]",
        "{\"version\":2,\"devices\":[]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"x\",\"secondaryKey\":\"" KEY_B "\","
        "\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a b\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0},{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A
        "\",\"secondaryKey\":\"" KEY_B "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0}]}",
        /* mistyped members: version, statusUpdatedTime, iotEdge, generationId, deviceId */
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":\"0\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0,\"statusUpdatedTime\":null}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0,\"iotEdge\":1}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":1,\"version\":0}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":7,\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":0}]}",
    };
    struct tmpdir t;
    tmpdir_make(&t);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        file_write(t.path, bad[i]);
        char err[256] = "";
        struct registry *r = reg_open(&t, err, sizeof err);
        if (r)
            fail_msg("corrupt file %zu accepted", i);
        assert_non_null(strstr(err, t.path));
        char *text = file_read(t.path);
        assert_string_equal(text, bad[i]); /* untouched, and not renamed */
        free(text);
    }
    /* The minimal valid form is imported; nothing of the bad ones reached the store. */
    file_write(t.path, "{\"version\":1,\"devices\":[{\"deviceId\":\"d\",\"primaryKey\":\"" KEY_A
                       "\",\"secondaryKey\":\"" KEY_B "\",\"status\":\"enabled\",\"generationId\":\"1\",\"version\":5}]}");
    char err[256] = "";
    struct registry *r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(registry_device_count(r), 1);
    char tag[48];
    etag_of(registry_find(r, "d", NULL), tag);
    assert_string_equal(tag, "\"NQ==\"");
    assert_int_equal(access(t.path, F_OK), -1);
    assert_int_equal(access(t.imported, F_OK), 0);
    reg_free(r);
    tmpdir_remove(&t);
}

static void import_happens_once(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256] = "";
    static const char json[] =
        "{\"version\":1,\"devices\":[{\"deviceId\":\"old\",\"primaryKey\":\"" KEY_A "\",\"secondaryKey\":\"" KEY_B
        "\",\"status\":\"disabled\",\"statusReason\":\"r\",\"generationId\":\"42\",\"version\":3,"
        "\"statusUpdatedTime\":1700000000,\"iotEdge\":true,\"modules\":[{\"moduleId\":\"m\",\"primaryKey\":\"" KEY_B
        "\",\"secondaryKey\":\"" KEY_A "\",\"status\":\"enabled\",\"generationId\":\"43\",\"version\":1,"
        "\"managedBy\":\"IotEdge\"}]}]}";
    file_write(t.path, json);
    struct registry *r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    const struct identity *id = registry_find(r, "old", NULL);
    assert_non_null(id);
    assert_string_equal(id->primary_key, KEY_A);
    assert_false(id->enabled);
    assert_string_equal(id->status_reason, "r");
    assert_string_equal(id->generation_id, "42");
    assert_int_equal(id->version, 3);
    assert_int_equal(id->status_updated_s, 1700000000);
    assert_true(id->iot_edge);
    id = registry_find(r, "old", "m");
    assert_non_null(id);
    assert_string_equal(id->managed_by, "IotEdge");
    assert_int_equal(id->version, 1);
    assert_int_equal(access(t.imported, F_OK), 0);
    /* Changes after the import; then the same file turns up again (a crash between the import's commit and
     * the rename leaves it there): it is not imported a second time. */
    assert_int_equal(registry_delete(r, "old", "m", NULL), ERR_OK);
    put_ok(r, "old", NULL, "{\"status\":\"enabled\"}", "*");
    reg_free(r);
    file_write(t.path, json);
    r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    assert_null(registry_find(r, "old", "m"));
    assert_true(registry_find(r, "old", NULL)->enabled);
    assert_int_equal(access(t.path, F_OK), -1);
    reg_free(r);

    /* A store that has devices but never imported keeps its own on an id clash. */
    tmpdir_remove(&t);
    tmpdir_make(&t);
    r = reg_open(&t, err, sizeof err);
    put_ok(r, "old", NULL, "{}", NULL);
    char gen[32];
    snprintf(gen, sizeof gen, "%s", registry_find(r, "old", NULL)->generation_id);
    reg_free(r);
    file_write(t.path, json);
    r = reg_open(&t, err, sizeof err);
    assert_non_null(r);
    assert_string_equal(registry_find(r, "old", NULL)->generation_id, gen);
    assert_null(registry_find(r, "old", "m"));
    reg_free(r);
    tmpdir_remove(&t);
}

static void unreadable_path_fails(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256] = "";
    assert_int_equal(mkdir(t.path, 0700), 0); /* a directory where registry.json would be */
    assert_null(reg_open(&t, err, sizeof err));
    assert_non_null(strstr(err, t.path));
    assert_int_equal(rmdir(t.path), 0);
    /* The store under a regular file. */
    struct tmpdir u = t;
    file_write(t.path, "{\"version\":1,\"devices\":[]}");
    assert_true(snprintf(u.db, sizeof u.db, "%s/" DB_FILE_NAME, t.path) < (int)sizeof u.db);
    err[0] = '\0';
    assert_null(reg_open(&u, err, sizeof err));
    assert_non_null(strstr(err, u.db));
    tmpdir_remove(&t);
}

/* A row this build cannot use (edited by hand) is refused with its id, not loaded half-way. */
static void bad_row_is_refused(void **state)
{
    struct tmpdir t;
    tmpdir_make(&t);
    char err[256] = "";
    struct registry *r = reg_open(&t, err, sizeof err);
    put_ok(r, "dev1", NULL, "{}", NULL);
    assert_int_equal(sql(r, "UPDATE identities SET primary_key = 'not base64!' WHERE device_id = 'dev1'"),
                     SQLITE_DONE);
    reg_free(r);
    assert_null(reg_open(&t, err, sizeof err));
    assert_non_null(strstr(err, "dev1"));
    tmpdir_remove(&t);
}

/* ---- scale ---- */

static void ten_thousand_devices(void **state)
{
    struct registry *r = new_mem();
    char did[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(did, sizeof did, "device-%05d", (i * 7919) % 10000); /* out of order */
        put_ok(r, did, NULL, "{}", NULL);
    }
    assert_int_equal(registry_device_count(r), 10000);
    for (int i = 0; i < 10000; i++) {
        snprintf(did, sizeof did, "device-%05d", i);
        const struct identity *id = registry_find(r, did, NULL);
        assert_non_null(id);
        assert_string_equal(id->device_id, did);
        assert_null(registry_find(r, did, "m"));
    }
    assert_null(registry_find(r, "device-10000", NULL));
    json_t *list = registry_list_devices(r, 1000);
    assert_int_equal(json_array_size(list), 1000);
    assert_string_equal(jstr(json_array_get(list, 0), "deviceId"), "device-00000");
    assert_string_equal(jstr(json_array_get(list, 999), "deviceId"), "device-00999");
    json_decref(list);
    for (int i = 0; i < 10000; i += 2) {
        snprintf(did, sizeof did, "device-%05d", i);
        assert_int_equal(registry_delete(r, did, NULL, NULL), ERR_OK);
    }
    assert_int_equal(registry_device_count(r), 5000);
    assert_null(registry_find(r, "device-00002", NULL));
    assert_non_null(registry_find(r, "device-00003", NULL));
    reg_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_with_generated_keys),
        cmocka_unit_test(create_with_given_keys),
        cmocka_unit_test(recreate_is_exists),
        cmocka_unit_test(update_with_wildcard),
        cmocka_unit_test(update_with_etag),
        cmocka_unit_test(update_missing_is_not_found),
        cmocka_unit_test(invalid_ids),
        cmocka_unit_test(body_path_mismatch),
        cmocka_unit_test(status_disabled),
        cmocka_unit_test(bad_base64_key),
        cmocka_unit_test(x509_rejected),
        cmocka_unit_test(modules),
        cmocka_unit_test(list_top),
        cmocka_unit_test(delete_preconditions),
        cmocka_unit_test(ensure_device),
        cmocka_unit_test(json_device_shape),
        cmocka_unit_test(json_module_shape),
        cmocka_unit_test(presence),
        cmocka_unit_test(persistence_round_trip),
        cmocka_unit_test(presence_not_persisted),
        cmocka_unit_test(write_failure_is_undone),
        cmocka_unit_test(enclosing_transaction),
        cmocka_unit_test(corrupt_file_is_refused),
        cmocka_unit_test(import_happens_once),
        cmocka_unit_test(unreadable_path_fails),
        cmocka_unit_test(bad_row_is_refused),
        cmocka_unit_test(ten_thousand_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
