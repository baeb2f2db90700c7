/* twin.c -- one identity's twin (see twin.h): sections kept as jansson objects beside a metadata tree of the
 * same shape, validation of every change against the hub's rules before anything is touched, and the
 * document shapes of REST GET and MQTT GET. Pure; tests: tests/unit/test_twin.c. */
#include "twin.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "err.h"
#include "registry.h"

#define TWIN_TIME_LEN 40

struct twin {
    int64_t version;          /* bumped by every change of tags, desired or reported */
    json_t *tags;             /* object */
    json_t *desired;          /* object, without $metadata / $version */
    json_t *desired_meta;     /* {"$lastUpdated":..,"$lastUpdatedVersion":n, key: {...}} mirroring desired */
    int64_t desired_version;
    json_t *reported;
    json_t *reported_meta;    /* like desired_meta, without $lastUpdatedVersion */
    int64_t reported_version;
};

/* A section being changed: which one, for the rules and the messages. */
enum section { SEC_TAGS, SEC_DESIRED, SEC_REPORTED };

static const char *section_name(enum section s)
{
    return s == SEC_TAGS ? "Tags" : s == SEC_DESIRED ? "Properties.Desired" : "Properties.Reported";
}

static size_t section_max(enum section s)
{
    return s == SEC_TAGS ? TWIN_TAGS_MAX : s == SEC_DESIRED ? TWIN_DESIRED_MAX : TWIN_REPORTED_MAX;
}

static int fail(struct twin_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct twin_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return ERR_INVALID;
}

/* ISO 8601 UTC with 7 fractional digits, as the hub writes $lastUpdated ("2016-03-30T16:24:48.4865778Z"). */
static void time_text(int64_t ms, char out[TWIN_TIME_LEN])
{
    struct tm tm;
    time_t s = (time_t)(ms / 1000);
    if (ms < 0 || !gmtime_r(&s, &tm)) {
        snprintf(out, TWIN_TIME_LEN, "0001-01-01T00:00:00Z");
        return;
    }
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, TWIN_TIME_LEN, "%s.%03d0000Z", day, (int)(ms % 1000));
}

/* ---- lifetime ---- */

struct twin *twin_new(void)
{
    struct twin *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->version = t->desired_version = t->reported_version = 1;
    t->tags = json_object();
    t->desired = json_object();
    t->desired_meta = json_object();
    t->reported = json_object();
    t->reported_meta = json_object();
    if (!t->tags || !t->desired || !t->desired_meta || !t->reported || !t->reported_meta) {
        twin_free(t);
        return NULL;
    }
    return t;
}

void twin_free(struct twin *t)
{
    if (!t)
        return;
    json_decref(t->tags);
    json_decref(t->desired);
    json_decref(t->desired_meta);
    json_decref(t->reported);
    json_decref(t->reported_meta);
    free(t);
}

int64_t twin_version(const struct twin *t)
{
    return t->version;
}

int64_t twin_desired_version(const struct twin *t)
{
    return t->desired_version;
}

int64_t twin_reported_version(const struct twin *t)
{
    return t->reported_version;
}

/* ---- persistence ---- */

char *twin_save(const struct twin *t)
{
    json_t *j = json_pack("{s:I,s:O,s:O,s:O,s:I,s:O,s:O,s:I}", "version", (json_int_t)t->version, "tags", t->tags,
                          "desired", t->desired, "desiredMeta", t->desired_meta, "desiredVersion",
                          (json_int_t)t->desired_version, "reported", t->reported, "reportedMeta", t->reported_meta,
                          "reportedVersion", (json_int_t)t->reported_version);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static json_t *take_object(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return json_is_object(v) ? json_incref(v) : NULL;
}

static bool take_version(json_t *root, const char *key, int64_t *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return false;
    *out = json_integer_value(v);
    return true;
}

int twin_load(const char *text, size_t len, struct twin **out)
{
    *out = NULL;
    json_t *root = json_loadb(text, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return ERR_MALFORMED;
    }
    struct twin *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        return ERR_NOMEM;
    }
    t->tags = take_object(root, "tags");
    t->desired = take_object(root, "desired");
    t->desired_meta = take_object(root, "desiredMeta");
    t->reported = take_object(root, "reported");
    t->reported_meta = take_object(root, "reportedMeta");
    bool ok = t->tags && t->desired && t->desired_meta && t->reported && t->reported_meta &&
              take_version(root, "version", &t->version) &&
              take_version(root, "desiredVersion", &t->desired_version) &&
              take_version(root, "reportedVersion", &t->reported_version);
    json_decref(root);
    if (!ok) {
        twin_free(t);
        return ERR_MALFORMED;
    }
    *out = t;
    return ERR_OK;
}

/* ---- validation ---- */

/* The key rules: 1..TWIN_KEY_MAX bytes, no control characters (C0, DEL, C1), '.', '$' or space. */
static bool key_is_valid(const char *key, size_t len)
{
    if (len == 0 || len > TWIN_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c == 0x7f || c == '.' || c == '$' || c == ' ')
            return false;
        if (c == 0xc2 && i + 1 < len && (unsigned char)key[i + 1] >= 0x80 && (unsigned char)key[i + 1] <= 0x9f)
            return false; /* U+0080..U+009F */
    }
    return true;
}

/* Copies a key into a message: at most 40 bytes of it, anything but printable ASCII as '?' (messages reach
 * log lines, one line per event). */
static const char *key_for_message(const char *key, char out[48])
{
    size_t n = 0;
    for (; key[n] && n < 40; n++)
        out[n] = key[n] >= 0x20 && key[n] < 0x7f ? key[n] : '?';
    snprintf(out + n, 48 - n, "%s", key[n] ? "..." : "");
    return out;
}

struct rules {
    enum section sec;
    struct twin_error *err;
};

static int check_value(const struct rules *r, const char *key, const json_t *v, int depth, bool in_array);

static int check_array(const struct rules *r, const char *key, const json_t *a, int depth)
{
    if (depth > TWIN_MAX_DEPTH)
        return fail(r->err, TWIN_ERR_ARGUMENT_INVALID, "Nested depth of %s exceeds %d.", section_name(r->sec),
                    TWIN_MAX_DEPTH);
    size_t i;
    json_t *item;
    json_array_foreach(a, i, item) {
        if (json_is_null(item))
            return fail(r->err, TWIN_ERR_ARGUMENT_INVALID, "Arrays in %s cannot contain null.", section_name(r->sec));
        int rc = check_value(r, key, item, json_is_array(item) ? depth + 1 : depth, true);
        if (rc)
            return rc;
    }
    return ERR_OK;
}

static int check_object(const struct rules *r, const json_t *o, int depth, bool in_array)
{
    if (depth > TWIN_MAX_DEPTH)
        return fail(r->err, TWIN_ERR_ARGUMENT_INVALID, "Nested depth of %s exceeds %d.", section_name(r->sec),
                    TWIN_MAX_DEPTH);
    const char *key;
    size_t klen;
    json_t *v;
    char shown[48];
    json_object_keylen_foreach((json_t *)o, key, klen, v) {
        if (!key_is_valid(key, klen))
            return fail(r->err, TWIN_ERR_ARGUMENT_INVALID,
                        klen > TWIN_KEY_MAX ? "Length of property name %s exceeds maximum length of 1024 bytes."
                                            : "Property name '%s' contains invalid characters (control characters, "
                                              "'.', '$' and space are not allowed).",
                        key_for_message(key, shown));
        if (json_is_null(v)) {
            /* A deletion in a patch, "absent" in a replacement; never allowed inside an array. */
            if (in_array)
                return fail(r->err, TWIN_ERR_ARGUMENT_INVALID, "Property '%s' of an object in an array cannot be null.",
                            key_for_message(key, shown));
            continue;
        }
        int rc = check_value(r, key, v, depth + 1, in_array);
        if (rc)
            return rc;
    }
    return ERR_OK;
}

/* depth: the depth v would sit at if it is an object (its parent's depth + 1). */
static int check_value(const struct rules *r, const char *key, const json_t *v, int depth, bool in_array)
{
    char shown[48];
    if (json_is_object(v))
        return check_object(r, v, depth, in_array);
    if (json_is_array(v))
        return check_array(r, key, v, depth);
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n > TWIN_INT_MAX || n < TWIN_INT_MIN)
            return fail(r->err, TWIN_ERR_ARGUMENT_INVALID,
                        "Property '%s' has an out of bound value. Valid values are between %lld and %lld.",
                        key_for_message(key, shown), TWIN_INT_MIN, TWIN_INT_MAX);
    } else if (json_is_string(v) && json_string_length(v) > TWIN_STRING_MAX) {
        return fail(r->err, TWIN_ERR_ARGUMENT_INVALID,
                    "Value of property '%s' has length %zu that exceeds maximum length of %d bytes.",
                    key_for_message(key, shown), json_string_length(v), TWIN_STRING_MAX);
    }
    return ERR_OK;
}

/* The section must fit its size limit once changed. */
static int check_size(enum section sec, const json_t *section, struct twin_error *err)
{
    size_t size = json_dumpb(section, NULL, 0, JSON_COMPACT);
    if (size > section_max(sec))
        return fail(err, TWIN_ERR_MAX_PROPERTIES, "'%s' size should be less than %zu bytes (it would be %zu).",
                    section_name(sec), section_max(sec), size);
    return ERR_OK;
}

/* ---- merge and metadata ---- */

/* RFC 7386: objects merge recursively, null deletes, anything else replaces (with a copy: the twin never shares
 * a value with the request it came from). */
static int merge_patch(json_t *target, const json_t *patch)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        if (json_is_null(value)) {
            json_object_del(target, key);
        } else if (json_is_object(value)) {
            json_t *sub = json_object_get(target, key);
            if (!json_is_object(sub)) {
                sub = json_object();
                if (!sub || json_object_set_new(target, key, sub))
                    return ERR_NOMEM;
            }
            if (merge_patch(sub, value))
                return ERR_NOMEM;
        } else if (json_object_set_new(target, key, json_deep_copy(value))) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/* Copies an object without its null members, recursively (a replacement's null means absent). */
static json_t *without_nulls(const json_t *o)
{
    json_t *copy = json_object();
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)o, key, value) {
        if (!copy)
            return NULL;
        if (json_is_null(value))
            continue;
        json_t *v = json_is_object(value) ? without_nulls(value) : json_deep_copy(value);
        if (!v || json_object_set_new(copy, key, v)) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
}

static int meta_stamp(json_t *meta, const char *when, int64_t version)
{
    if (json_object_set_new(meta, "$lastUpdated", json_string(when)))
        return ERR_NOMEM;
    if (version > 0 && json_object_set_new(meta, "$lastUpdatedVersion", json_integer(version)))
        return ERR_NOMEM;
    return ERR_OK;
}

/* Metadata for a whole value: an object gets one entry per member, recursively. */
static json_t *meta_build(const json_t *value, const char *when, int64_t version)
{
    json_t *meta = json_object();
    if (!meta || meta_stamp(meta, when, version)) {
        json_decref(meta);
        return NULL;
    }
    if (!json_is_object(value))
        return meta;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)value, key, v) {
        json_t *sub = meta_build(v, when, version);
        if (!sub || json_object_set_new(meta, key, sub)) {
            json_decref(meta);
            return NULL;
        }
    }
    return meta;
}

/* Follows a merge of patch: the touched object and every value the patch sets get $lastUpdated now. */
static int meta_merge(json_t *meta, const json_t *patch, const char *when, int64_t version)
{
    if (meta_stamp(meta, when, version))
        return ERR_NOMEM;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        if (json_is_null(value)) {
            json_object_del(meta, key);
            continue;
        }
        json_t *sub = json_object_get(meta, key);
        if (json_is_object(value) && json_is_object(sub)) {
            if (meta_merge(sub, value, when, version))
                return ERR_NOMEM;
            continue;
        }
        if (json_object_set_new(meta, key, meta_build(value, when, version)))
            return ERR_NOMEM;
    }
    return ERR_OK;
}

/* A patch for one section: a copy without the members the hub adds ($metadata, $version). */
static json_t *strip_system(const json_t *section)
{
    json_t *copy = json_copy((json_t *)section);
    if (copy) {
        json_object_del(copy, "$metadata");
        json_object_del(copy, "$version");
    }
    return copy;
}

/* ---- service updates ---- */

/* The parts of a service body, validated; new references or NULL when absent. */
struct parts {
    json_t *tags;
    json_t *desired;
};

static void parts_clear(struct parts *p)
{
    json_decref(p->tags);
    json_decref(p->desired);
}

static int take_parts(const json_t *body, enum twin_mode mode, struct parts *p, struct twin_error *err)
{
    memset(p, 0, sizeof *p);
    if (!json_is_object(body))
        return fail(err, TWIN_ERR_ARGUMENT_INVALID, "The twin must be a JSON object.");
    json_t *tags = json_object_get(body, "tags");
    json_t *props = json_object_get(body, "properties");
    if (tags && !json_is_object(tags) && !json_is_null(tags))
        return fail(err, TWIN_ERR_ARGUMENT_INVALID, "'tags' must be a JSON object.");
    if (props && !json_is_object(props) && !json_is_null(props))
        return fail(err, TWIN_ERR_ARGUMENT_INVALID, "'properties' must be a JSON object.");
    json_t *desired = json_object_get(props, "desired");
    if (desired && !json_is_object(desired) && !json_is_null(desired))
        return fail(err, TWIN_ERR_ARGUMENT_INVALID, "'properties.desired' must be a JSON object.");
    /* properties.reported is the device's: ignored here, in a PATCH as in a PUT (a whole twin read with GET and
     * sent back, as the C# SDK's UpdateTwinAsync(id, twin, etag) does, must work). */
    struct rules tr = {SEC_TAGS, err}, dr = {SEC_DESIRED, err};
    if (json_is_object(tags) && check_object(&tr, tags, 0, false))
        return ERR_INVALID;
    p->desired = json_is_object(desired) ? strip_system(desired) : NULL;
    if (json_is_object(desired) && !p->desired)
        return ERR_NOMEM;
    if (p->desired && check_object(&dr, p->desired, 0, false)) {
        parts_clear(p);
        return ERR_INVALID;
    }
    /* In a replacement every section is replaced: an absent or null one becomes empty. */
    if (mode == TWIN_REPLACE) {
        p->tags = json_is_object(tags) ? without_nulls(tags) : json_object();
        if (!p->desired)
            p->desired = json_object();
        else {
            json_t *clean = without_nulls(p->desired);
            json_decref(p->desired);
            p->desired = clean;
        }
    } else if (tags) {
        /* A null tags in a patch deletes every tag. */
        p->tags = json_is_object(tags) ? json_incref(tags) : json_null();
    }
    if (mode == TWIN_MERGE && json_is_null(desired))
        p->desired = json_null();
    if ((mode == TWIN_REPLACE && !p->tags) || (mode == TWIN_REPLACE && !p->desired)) {
        parts_clear(p);
        return ERR_NOMEM;
    }
    return ERR_OK;
}

/* The new value of a section: target merged with patch (null patch: emptied), or patch itself (replace). */
static json_t *section_next(const json_t *current, const json_t *patch, enum twin_mode mode)
{
    if (json_is_null(patch))
        return json_object();
    if (mode == TWIN_REPLACE)
        return json_incref((json_t *)patch);
    json_t *next = json_deep_copy(current);
    if (next && merge_patch(next, patch)) {
        json_decref(next);
        return NULL;
    }
    return next;
}

/* The desired patch a replacement sends: the new desired, plus null for each top-level key that went away. */
static json_t *replace_push(const json_t *old, const json_t *next)
{
    json_t *push = json_deep_copy(next);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)old, key, value) {
        if (push && !json_object_get(next, key) && json_object_set_new(push, key, json_null())) {
            json_decref(push);
            return NULL;
        }
    }
    return push;
}

int twin_update(struct twin *t, const json_t *body, enum twin_mode mode, int64_t now_ms, json_t **push,
                struct twin_error *err)
{
    if (push)
        *push = NULL;
    struct parts p;
    int rc = take_parts(body, mode, &p, err);
    if (rc)
        return rc;
    json_t *tags = p.tags ? section_next(t->tags, p.tags, mode) : NULL;
    json_t *desired = p.desired ? section_next(t->desired, p.desired, mode) : NULL;
    json_t *meta = NULL, *out = NULL;
    char when[TWIN_TIME_LEN];
    time_text(now_ms, when);
    int64_t dver = t->desired_version + 1;
    rc = (p.tags && !tags) || (p.desired && !desired) ? ERR_NOMEM : ERR_OK;
    if (!rc && tags)
        rc = check_size(SEC_TAGS, tags, err);
    if (!rc && desired)
        rc = check_size(SEC_DESIRED, desired, err);
    if (!rc && desired) {
        /* Metadata and the device's patch are built before anything is swapped in, so failure changes nothing. */
        if (mode == TWIN_REPLACE || json_is_null(p.desired)) {
            meta = meta_build(desired, when, dver);
        } else {
            meta = json_deep_copy(t->desired_meta);
            if (meta && meta_merge(meta, p.desired, when, dver)) {
                json_decref(meta);
                meta = NULL;
            }
        }
        out = mode == TWIN_REPLACE || json_is_null(p.desired) ? replace_push(t->desired, desired)
                                                               : json_deep_copy(p.desired);
        if (!meta || !out || json_object_set_new(out, "$version", json_integer(dver)))
            rc = ERR_NOMEM;
    }
    parts_clear(&p);
    if (rc) {
        json_decref(tags);
        json_decref(desired);
        json_decref(meta);
        json_decref(out);
        return rc;
    }
    if (tags) {
        json_decref(t->tags);
        t->tags = tags;
    }
    if (desired) {
        json_decref(t->desired);
        json_decref(t->desired_meta);
        t->desired = desired;
        t->desired_meta = meta;
        t->desired_version = dver;
    }
    if (tags || desired)
        t->version++;
    if (push)
        *push = out;
    else
        json_decref(out);
    return ERR_OK;
}

/* ---- device updates ---- */

int twin_report(struct twin *t, const json_t *patch, int64_t now_ms, struct twin_error *err)
{
    if (!json_is_object(patch))
        return fail(err, TWIN_ERR_ARGUMENT_INVALID, "The reported properties patch must be a JSON object.");
    /* No member is stripped: a "$version" or "$metadata" in a device's patch breaks the key rules, and the hub
     * refuses it with 400004 too. */
    json_t *clean = json_copy((json_t *)patch);
    if (!clean)
        return ERR_NOMEM;
    struct rules rr = {SEC_REPORTED, err};
    int rc = check_object(&rr, clean, 0, false);
    json_t *next = rc ? NULL : section_next(t->reported, clean, TWIN_MERGE);
    json_t *meta = NULL;
    if (!rc && !next)
        rc = ERR_NOMEM;
    if (!rc)
        rc = check_size(SEC_REPORTED, next, err);
    if (!rc) {
        char when[TWIN_TIME_LEN];
        time_text(now_ms, when);
        meta = json_deep_copy(t->reported_meta);
        if (!meta || meta_merge(meta, clean, when, 0))
            rc = ERR_NOMEM;
    }
    json_decref(clean);
    if (rc) {
        json_decref(next);
        json_decref(meta);
        return rc;
    }
    json_decref(t->reported);
    json_decref(t->reported_meta);
    t->reported = next;
    t->reported_meta = meta;
    t->reported_version++;
    t->version++;
    return ERR_OK;
}

/* ---- documents ---- */

static void etag_raw(const struct twin *t, char *out, size_t outlen)
{
    uint8_t be[8];
    uint64_t v = (uint64_t)t->version;
    for (int i = 7; i >= 0; i--, v >>= 8)
        be[i] = (uint8_t)(v & 0xff);
    char *b64 = base64_encode(be, sizeof be);
    snprintf(out, outlen, "%s", b64 ? b64 : "");
    free(b64);
}

void twin_etag(const struct twin *t, char *out, size_t outlen)
{
    char raw[24];
    etag_raw(t, raw, sizeof raw);
    snprintf(out, outlen, "\"%s\"", raw);
}

bool twin_etag_matches(const struct twin *t, const char *if_match)
{
    if (!if_match || !*if_match || strcmp(if_match, "*") == 0 || strcmp(if_match, "\"*\"") == 0)
        return true;
    if (strncmp(if_match, "W/", 2) == 0)
        if_match += 2;
    char raw[24];
    etag_raw(t, raw, sizeof raw);
    size_t n = strlen(if_match);
    if (n >= 2 && if_match[0] == '"' && if_match[n - 1] == '"')
        return n - 2 == strlen(raw) && memcmp(if_match + 1, raw, n - 2) == 0;
    return strcmp(if_match, raw) == 0;
}

/* A section as the documents show it: its members, then $metadata (when meta) and $version. */
static json_t *section_json(const json_t *values, const json_t *meta, int64_t version)
{
    json_t *j = json_deep_copy(values);
    json_t *m = meta ? json_deep_copy(meta) : NULL;
    if (m && !json_object_get(m, "$lastUpdated")) /* never changed: the hub's "never" time */
        json_object_set_new(m, "$lastUpdated", json_string("0001-01-01T00:00:00Z"));
    if (j && meta && json_object_set_new(j, "$metadata", m))
        goto fail;
    if (j && json_object_set_new(j, "$version", json_integer(version)))
        goto fail;
    return j;
fail:
    json_decref(j);
    return NULL;
}

json_t *twin_properties(const struct twin *t)
{
    return json_pack("{s:o,s:o}", "desired", section_json(t->desired, NULL, t->desired_version), "reported",
                     section_json(t->reported, NULL, t->reported_version));
}

/* Seconds since the epoch as the registry writes times; 0 is "0001-01-01T00:00:00Z". */
static void seconds_text(int64_t s, char out[TWIN_TIME_LEN])
{
    if (s <= 0)
        snprintf(out, TWIN_TIME_LEN, "0001-01-01T00:00:00Z");
    else
        time_text(s * 1000, out);
}

json_t *twin_document(const struct twin *t, const struct identity *id)
{
    char etag[32], device_etag[80], status_time[TWIN_TIME_LEN], activity[TWIN_TIME_LEN];
    etag_raw(t, etag, sizeof etag);
    registry_etag(id, device_etag, sizeof device_etag);
    size_t n = strlen(device_etag);
    if (n >= 2) { /* unquoted, as in the hub's twin JSON */
        memmove(device_etag, device_etag + 1, n - 2);
        device_etag[n - 2] = '\0';
    }
    seconds_text(id->status_updated_s, status_time);
    seconds_text(id->last_activity_s, activity);
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    int bad = json_object_set_new(doc, "deviceId", json_string(id->device_id));
    if (id->module_id[0])
        bad |= json_object_set_new(doc, "moduleId", json_string(id->module_id));
    bad |= json_object_set_new(doc, "etag", json_string(etag));
    bad |= json_object_set_new(doc, "deviceEtag", json_string(device_etag));
    bad |= json_object_set_new(doc, "status", json_string(id->enabled ? "enabled" : "disabled"));
    bad |= json_object_set_new(doc, "statusReason", id->status_reason ? json_string(id->status_reason) : json_null());
    bad |= json_object_set_new(doc, "statusUpdateTime", json_string(status_time));
    bad |= json_object_set_new(doc, "connectionState", json_string(id->connected ? "Connected" : "Disconnected"));
    bad |= json_object_set_new(doc, "lastActivityTime", json_string(activity));
    bad |= json_object_set_new(doc, "cloudToDeviceMessageCount", json_integer(0));
    bad |= json_object_set_new(doc, "authenticationType", json_string("sas"));
    bad |= json_object_set_new(doc, "x509Thumbprint",
                               json_pack("{s:n,s:n}", "primaryThumbprint", "secondaryThumbprint"));
    bad |= json_object_set_new(doc, "modelId", json_string(""));
    if (!id->module_id[0]) /* devices only, as on the hub: Azure IoT Explorer queries capabilities.iotEdge */
        bad |= json_object_set_new(doc, "capabilities", json_pack("{s:b}", "iotEdge", id->iot_edge));
    bad |= json_object_set_new(doc, "version", json_integer(t->version));
    bad |= json_object_set_new(doc, "tags", json_deep_copy(t->tags));
    bad |= json_object_set_new(doc, "properties",
                               json_pack("{s:o,s:o}", "desired",
                                         section_json(t->desired, t->desired_meta, t->desired_version), "reported",
                                         section_json(t->reported, t->reported_meta, t->reported_version)));
    if (bad) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
