/* registry.c -- the identity registry (see registry.h). Devices and modules live in a chained hash table
 * keyed by (deviceId, moduleId); devices are also kept in an array sorted by id, and each device keeps its
 * modules in a list sorted by id. Every change is one row written in a store transaction (db.h); the
 * in-memory tables follow from the transaction's commit hook, so memory never shows what the disk lost.
 * The JSON file of older releases is still read, once, to import it.
 * Touches: jansson, OpenSSL (RAND_bytes, EVP_EncodeBlock), the store, the registry.json it imports.
 * Tests: tests/unit/test_registry.c. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "err.h"
#include "log.h"

#define REGISTRY_FILE_VERSION 1
#define REGISTRY_KEY_MIN_BYTES 16
#define REGISTRY_KEY_MAX_BYTES 64
#define REGISTRY_KEY_GEN_BYTES 32
#define REGISTRY_MIN_BUCKETS 64
#define REGISTRY_ETAG_LEN 40
#define REGISTRY_TIME_LEN 32
#define REGISTRY_NEVER "0001-01-01T00:00:00Z"

struct entry {
    struct identity id;    /* first member: a const struct identity * from the API is a struct entry * */
    uint64_t hash;         /* of (device_id, module_id) */
    struct entry *hnext;   /* next in the hash bucket */
    struct entry *owner;   /* modules: their device; NULL for devices */
    struct entry *modules; /* devices: their modules, sorted by id */
    struct entry *mnext;   /* modules: next sibling */
};

struct registry {
    struct db *db;          /* NULL only for the scratch registry an import parses into */
    struct entry **buckets; /* chained hash table */
    size_t nbuckets;        /* a power of two */
    size_t count;           /* devices + modules in the table */
    struct entry **devices; /* sorted by device_id */
    size_t ndevices;
    size_t devcap;
    size_t pending;         /* entries of creates waiting for their commit: room is reserved for them */
    size_t pending_devices; /* of which devices */
};

/* One change waiting for its transaction's end (db_defer). */
enum change_kind { CHANGE_CREATE, CHANGE_UPDATE, CHANGE_DELETE };
struct change {
    struct registry *r;
    enum change_kind kind;
    struct entry *e;      /* create: the new entry (not yet attached); else the stored one */
    struct identity next; /* update: the new fields */
};

/* What a PUT body asks for; NULL/-1/false members were not given. */
struct put_spec {
    const char *primary_key; /* NULL or "": generate on create, keep on update */
    const char *secondary_key;
    int enabled;             /* -1, 0 or 1 */
    bool has_status_reason;
    const char *status_reason;
    int iot_edge;            /* -1, 0 or 1 */
    bool has_managed_by;
    const char *managed_by;
};

/* ---- ids, keys, etags, times ---- */

static bool id_char_is_valid(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("-.+%_#*?!(),=@$'", c) != NULL;
}

bool registry_id_is_valid(const char *id)
{
    if (!id)
        return false;
    size_t n = 0;
    for (; id[n]; n++) {
        if (n >= REGISTRY_MAX_ID || !id_char_is_valid((unsigned char)id[n]))
            return false;
    }
    return n > 0;
}

static bool b64_char_is_valid(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Strict standard base64 with padding, decoding to 16..64 bytes. */
static bool key_is_valid(const char *s)
{
    size_t max_len = (REGISTRY_KEY_MAX_BYTES + 2) / 3 * 4;
    size_t n = strnlen(s, max_len + 1);
    if (n == 0 || n > max_len || n % 4 != 0)
        return false;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i < n - 2)
                return false;
            pad++;
        } else if (pad || !b64_char_is_valid(s[i])) {
            return false;
        }
    }
    size_t bytes = n / 4 * 3 - pad;
    return bytes >= REGISTRY_KEY_MIN_BYTES && bytes <= REGISTRY_KEY_MAX_BYTES;
}

/* 32 random bytes as base64 (44 chars). NULL when out of memory or out of randomness. */
static char *key_generate(void)
{
    unsigned char raw[REGISTRY_KEY_GEN_BYTES];
    unsigned char text[(REGISTRY_KEY_GEN_BYTES + 2) / 3 * 4 + 1];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return NULL;
    EVP_EncodeBlock(text, raw, (int)sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    char *key = strdup((const char *)text);
    OPENSSL_cleanse(text, sizeof text);
    return key;
}

/* 18 random decimal digits, the first one non-zero. */
static int generation_id_new(char *out, size_t outlen)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, (int)sizeof v) != 1)
        return ERR_IO;
    v = 100000000000000000ULL + v % 900000000000000000ULL;
    snprintf(out, outlen, "%" PRIu64, v);
    return ERR_OK;
}

/* The unquoted etag: base64 of the version's decimal text ("MA==" for 0). out holds REGISTRY_ETAG_LEN. */
static void etag_text(uint64_t version, char *out)
{
    char dec[24];
    int n = snprintf(dec, sizeof dec, "%" PRIu64, version);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)dec, n);
}

void registry_etag(const struct identity *id, char *out, size_t outlen)
{
    char tag[REGISTRY_ETAG_LEN];
    etag_text(id->version, tag);
    if (outlen > 0)
        snprintf(out, outlen, "\"%s\"", tag);
}

/* "*", "\"*\"", or the etag, quoted or not (a weak W/ prefix is allowed). */
static bool if_match_is_ok(const struct identity *id, const char *if_match)
{
    if (strcmp(if_match, "*") == 0 || strcmp(if_match, "\"*\"") == 0)
        return true;
    if (strncmp(if_match, "W/", 2) == 0)
        if_match += 2;
    char tag[REGISTRY_ETAG_LEN];
    etag_text(id->version, tag);
    size_t n = strlen(if_match);
    if (n >= 2 && if_match[0] == '"' && if_match[n - 1] == '"')
        return n - 2 == strlen(tag) && memcmp(if_match + 1, tag, n - 2) == 0;
    return strcmp(if_match, tag) == 0;
}

/* ISO 8601 UTC with 'Z'; 0 (never) is "0001-01-01T00:00:00Z". out holds REGISTRY_TIME_LEN. */
static void time_format(int64_t s, char *out)
{
    struct tm tm;
    time_t t = (time_t)s;
    if (s > 0 && gmtime_r(&t, &tm) && strftime(out, REGISTRY_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
        return;
    snprintf(out, REGISTRY_TIME_LEN, "%s", REGISTRY_NEVER);
}

/* ---- identities and entries ---- */

static void identity_clear(struct identity *id)
{
    free(id->primary_key);
    free(id->secondary_key);
    free(id->status_reason);
    free(id->managed_by);
    id->primary_key = id->secondary_key = id->status_reason = id->managed_by = NULL;
}

static int dup_or_null(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return ERR_OK;
    *out = strdup(s);
    return *out ? ERR_OK : ERR_NOMEM;
}

/* Deep copy; on failure dst holds no allocation. */
static int identity_copy(struct identity *dst, const struct identity *src)
{
    *dst = *src;
    dst->primary_key = dst->secondary_key = dst->status_reason = dst->managed_by = NULL;
    int rc = dup_or_null(src->primary_key, &dst->primary_key);
    if (!rc)
        rc = dup_or_null(src->secondary_key, &dst->secondary_key);
    if (!rc)
        rc = dup_or_null(src->status_reason, &dst->status_reason);
    if (!rc)
        rc = dup_or_null(src->managed_by, &dst->managed_by);
    if (rc)
        identity_clear(dst);
    return rc;
}

/* Replaces *slot with a copy of given when non-empty, else with a generated key when *slot is NULL. */
static int key_apply(char **slot, const char *given)
{
    char *key = NULL;
    if (given && *given)
        key = strdup(given);
    else if (!*slot)
        key = key_generate();
    else
        return ERR_OK;
    if (!key)
        return ERR_NOMEM;
    free(*slot);
    *slot = key;
    return ERR_OK;
}

/* Replaces *slot with a copy of value (NULL allowed) when given. */
static int string_apply(char **slot, bool given, const char *value)
{
    char *copy = NULL;
    if (!given)
        return ERR_OK;
    if (dup_or_null(value, &copy))
        return ERR_NOMEM;
    free(*slot);
    *slot = copy;
    return ERR_OK;
}

/* Applies spec to id (ids and version untouched). A status change at now_s sets statusUpdatedTime. */
static int identity_apply(struct identity *id, const struct put_spec *spec, int64_t now_s)
{
    int rc = key_apply(&id->primary_key, spec->primary_key);
    if (!rc)
        rc = key_apply(&id->secondary_key, spec->secondary_key);
    if (!rc)
        rc = string_apply(&id->status_reason, spec->has_status_reason, spec->status_reason);
    if (!rc && id->module_id[0])
        rc = string_apply(&id->managed_by, spec->has_managed_by, spec->managed_by);
    if (rc)
        return rc;
    if (spec->enabled >= 0 && (bool)spec->enabled != id->enabled) {
        id->enabled = spec->enabled;
        id->status_updated_s = now_s;
    }
    if (spec->iot_edge >= 0 && !id->module_id[0])
        id->iot_edge = spec->iot_edge;
    return ERR_OK;
}

static uint64_t hash_ids(const char *device_id, const char *module_id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)device_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL; /* separator: never in an id */
    for (const unsigned char *p = (const unsigned char *)module_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* A new entry with its ids set (already validated: at most REGISTRY_MAX_ID chars), enabled, version 0. */
static struct entry *entry_new(const char *device_id, const char *module_id)
{
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->id.device_id, device_id, strlen(device_id) + 1);
    memcpy(e->id.module_id, module_id, strlen(module_id) + 1);
    e->id.enabled = true;
    e->hash = hash_ids(device_id, module_id);
    return e;
}

/* Frees e and, for a device, its modules. Does not unlink anything. */
static void entry_free(struct entry *e)
{
    if (!e)
        return;
    struct entry *m = e->modules;
    while (m) {
        struct entry *next = m->mnext;
        identity_clear(&m->id);
        free(m);
        m = next;
    }
    identity_clear(&e->id);
    free(e);
}

/* ---- the hash table, the device array, the module lists ---- */

static struct entry *table_find(const struct registry *r, const char *device_id, const char *module_id)
{
    if (!device_id)
        return NULL;
    if (!module_id)
        module_id = "";
    uint64_t h = hash_ids(device_id, module_id);
    for (struct entry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext) {
        if (e->hash == h && strcmp(e->id.device_id, device_id) == 0 && strcmp(e->id.module_id, module_id) == 0)
            return e;
    }
    return NULL;
}

/* Grows the table so that extra more entries keep the load factor at or under 1. */
static int table_reserve(struct registry *r, size_t extra)
{
    size_t need = r->count + extra;
    if (need <= r->nbuckets)
        return ERR_OK;
    size_t n = r->nbuckets;
    while (n < need)
        n *= 2;
    struct entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return ERR_NOMEM;
    for (size_t i = 0; i < r->nbuckets; i++) {
        struct entry *e = r->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            e->hnext = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(r->buckets);
    r->buckets = nb;
    r->nbuckets = n;
    return ERR_OK;
}

static void table_insert(struct registry *r, struct entry *e)
{
    struct entry **head = &r->buckets[e->hash & (r->nbuckets - 1)];
    e->hnext = *head;
    *head = e;
    r->count++;
}

static void table_remove(struct registry *r, struct entry *e)
{
    struct entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = e->hnext;
        e->hnext = NULL;
        r->count--;
    }
}

/* Index of the first device whose id is not less than device_id. */
static size_t devices_lower_bound(const struct registry *r, const char *device_id)
{
    size_t lo = 0, hi = r->ndevices;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->devices[mid]->id.device_id, device_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int devices_reserve(struct registry *r)
{
    if (r->ndevices + r->pending_devices < r->devcap)
        return ERR_OK;
    size_t cap = r->devcap ? r->devcap * 2 : REGISTRY_MIN_BUCKETS;
    struct entry **d = realloc(r->devices, cap * sizeof *d);
    if (!d)
        return ERR_NOMEM;
    r->devices = d;
    r->devcap = cap;
    return ERR_OK;
}

static void modules_insert(struct entry *dev, struct entry *m)
{
    struct entry **pp = &dev->modules;
    while (*pp && strcmp((*pp)->id.module_id, m->id.module_id) < 0)
        pp = &(*pp)->mnext;
    m->mnext = *pp;
    *pp = m;
}

static void modules_remove(struct entry *dev, struct entry *m)
{
    struct entry **pp = &dev->modules;
    while (*pp && *pp != m)
        pp = &(*pp)->mnext;
    if (*pp)
        *pp = m->mnext;
    m->mnext = NULL;
}

/* Makes room so that attach(r, e) cannot fail, also after the pending creates are attached. */
static int attach_reserve(struct registry *r, const struct entry *e)
{
    size_t n = 1;
    for (const struct entry *m = e->modules; m; m = m->mnext)
        n++;
    int rc = table_reserve(r, n + r->pending);
    if (!rc && !e->owner)
        rc = devices_reserve(r);
    return rc;
}

/* Links e (and a device's modules) into the table and the device array or its device's module list. */
static void attach(struct registry *r, struct entry *e)
{
    table_insert(r, e);
    if (e->owner) {
        modules_insert(e->owner, e);
        return;
    }
    size_t pos = devices_lower_bound(r, e->id.device_id);
    memmove(r->devices + pos + 1, r->devices + pos, (r->ndevices - pos) * sizeof *r->devices);
    r->devices[pos] = e;
    r->ndevices++;
    for (struct entry *m = e->modules; m; m = m->mnext)
        table_insert(r, m);
}

/* The reverse of attach; a device keeps its module list so that attach can restore it. */
static void detach(struct registry *r, struct entry *e)
{
    table_remove(r, e);
    if (e->owner) {
        modules_remove(e->owner, e);
        return;
    }
    size_t pos = devices_lower_bound(r, e->id.device_id);
    if (pos < r->ndevices && r->devices[pos] == e) {
        memmove(r->devices + pos, r->devices + pos + 1, (r->ndevices - pos - 1) * sizeof *r->devices);
        r->ndevices--;
    }
    for (struct entry *m = e->modules; m; m = m->mnext)
        table_remove(r, m);
}

/* ---- persistence: rows in the store ---- */

/* The registry's tables. One table for devices (module_id '') and modules, so every later per-identity table
 * (twins, sessions, C2D queues, job results) references identities (device_id, module_id) ON DELETE CASCADE the
 * same way. parent_module is NULL for a device and '' for a module: the foreign key makes a module need its
 * device, and deleting a device delete its modules (and, by cascade, everything of theirs). */
static const struct db_migration registry_steps[] = {
    {1, "identities: devices and modules",
     "CREATE TABLE identities ("
     " device_id TEXT NOT NULL,"
     " module_id TEXT NOT NULL DEFAULT '',"
     " parent_module TEXT CHECK (parent_module IS NULL OR parent_module = ''),"
     " primary_key TEXT NOT NULL,"
     " secondary_key TEXT NOT NULL,"
     " enabled INTEGER NOT NULL,"
     " status_reason TEXT,"
     " managed_by TEXT,"
     " generation_id TEXT NOT NULL,"
     " version INTEGER NOT NULL,"
     " status_updated_s INTEGER NOT NULL DEFAULT 0,"
     " iot_edge INTEGER NOT NULL DEFAULT 0,"
     " PRIMARY KEY (device_id, module_id),"
     " CHECK ((module_id = '') = (parent_module IS NULL)),"
     " FOREIGN KEY (device_id, parent_module) REFERENCES identities (device_id, module_id) ON DELETE CASCADE"
     ") WITHOUT ROWID;",
     NULL},
};
static const struct db_schema registry_db_schema = {"registry", registry_steps,
                                                    sizeof registry_steps / sizeof registry_steps[0]};

const struct db_schema *registry_schema(void)
{
    return &registry_db_schema;
}

#define SQL_INSERT                                                                                                \
    "INSERT INTO identities (device_id, module_id, parent_module, primary_key, secondary_key, enabled, "         \
    "status_reason, managed_by, generation_id, version, status_updated_s, iot_edge) "                             \
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
#define SQL_UPDATE                                                                                                \
    "UPDATE identities SET parent_module = ?3, primary_key = ?4, secondary_key = ?5, enabled = ?6, "             \
    "status_reason = ?7, managed_by = ?8, generation_id = ?9, version = ?10, status_updated_s = ?11, "            \
    "iot_edge = ?12 WHERE device_id = ?1 AND module_id = ?2"
#define SQL_DELETE "DELETE FROM identities WHERE device_id = ?1 AND module_id = ?2" /* modules: by cascade */
#define SQL_SELECT                                                                                                \
    "SELECT device_id, module_id, primary_key, secondary_key, enabled, status_reason, managed_by, "               \
    "generation_id, version, status_updated_s, iot_edge FROM identities ORDER BY device_id, module_id"

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Runs SQL_INSERT or SQL_UPDATE with id's fields. */
static int row_write(struct db *db, const char *sql, const struct identity *id)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    if (!st)
        return ERR_IO;
    bool module = id->module_id[0] != 0;
    sqlite3_bind_text(st, 1, id->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id->module_id, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, module ? "" : NULL);
    sqlite3_bind_text(st, 4, id->primary_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, id->secondary_key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, id->enabled);
    bind_text_or_null(st, 7, id->status_reason);
    bind_text_or_null(st, 8, module ? id->managed_by : NULL);
    sqlite3_bind_text(st, 9, id->generation_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)id->version);
    sqlite3_bind_int64(st, 11, id->status_updated_s);
    sqlite3_bind_int(st, 12, id->iot_edge);
    return db_exec(db, st);
}

static int row_delete(struct db *db, const struct identity *id)
{
    sqlite3_stmt *st = db_stmt(db, SQL_DELETE);
    if (!st)
        return ERR_IO;
    sqlite3_bind_text(st, 1, id->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id->module_id, -1, SQLITE_STATIC);
    return db_exec(db, st);
}

static size_t entry_size(const struct entry *e)
{
    size_t n = 1;
    for (const struct entry *m = e->modules; m; m = m->mnext)
        n++;
    return n;
}

/* Commit hook: memory now follows the committed row. */
static void change_commit(void *arg)
{
    struct change *c = arg;
    struct registry *r = c->r;
    if (c->kind == CHANGE_CREATE) {
        r->pending -= entry_size(c->e);
        r->pending_devices -= c->e->owner ? 0 : 1;
        attach(r, c->e); /* room was reserved */
    } else if (c->kind == CHANGE_UPDATE) {
        struct identity old = c->e->id;
        c->e->id = c->next;
        identity_clear(&old);
    } else {
        detach(r, c->e);
        entry_free(c->e);
    }
    free(c);
}

/* Rollback hook (or a change that never reached the store): forget it. */
static void change_rollback(void *arg)
{
    struct change *c = arg;
    if (c->kind == CHANGE_CREATE) {
        c->r->pending -= entry_size(c->e);
        c->r->pending_devices -= c->e->owner ? 0 : 1;
        entry_free(c->e);
    } else if (c->kind == CHANGE_UPDATE) {
        identity_clear(&c->next);
    }
    free(c);
}

/* Writes c's row in its own transaction (a savepoint inside an enclosing one) and hands c to the commit
 * hooks. Takes c in every case: on failure it has been forgotten. */
static int change_run(struct change *c)
{
    struct db *db = c->r->db;
    int rc = db_begin(db);
    if (!rc) {
        if (c->kind == CHANGE_DELETE)
            rc = row_delete(db, &c->e->id);
        else
            rc = row_write(db, c->kind == CHANGE_CREATE ? SQL_INSERT : SQL_UPDATE,
                           c->kind == CHANGE_CREATE ? &c->e->id : &c->next);
        if (!rc)
            rc = db_defer(db, change_commit, change_rollback, c);
        if (rc)
            db_rollback(db);
    }
    if (rc) {
        change_rollback(c);
        return rc;
    }
    return db_commit(db); /* on failure the rollback hook forgot c */
}

static struct change *change_new(struct registry *r, enum change_kind kind, struct entry *e)
{
    struct change *c = calloc(1, sizeof *c);
    if (c) {
        c->r = r;
        c->kind = kind;
        c->e = e;
    }
    return c;
}

/* Reserves room for a new entry and makes its change (which then owns e); frees e on failure. */
static struct change *change_new_create(struct registry *r, struct entry *e)
{
    struct change *c = change_new(r, CHANGE_CREATE, e);
    if (!c || attach_reserve(r, e)) {
        free(c);
        entry_free(e);
        return NULL;
    }
    r->pending += entry_size(e);
    r->pending_devices += e->owner ? 0 : 1;
    return c;
}

/* ---- loading from the store ---- */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Fills a new entry from the current row; ERR_MALFORMED (with why) for a row this build cannot use. */
static int row_entry(sqlite3_stmt *st, struct entry **out, char *why, size_t whylen)
{
    const char *did = col_text(st, 0), *mid = col_text(st, 1), *pk = col_text(st, 2), *sk = col_text(st, 3);
    const char *gen = col_text(st, 7);
    *out = NULL;
    if (!did || !registry_id_is_valid(did) || !mid || (*mid && !registry_id_is_valid(mid)) || !pk ||
        !key_is_valid(pk) || !sk || !key_is_valid(sk) || !gen || !*gen || strlen(gen) >= sizeof(*out)->id.generation_id ||
        sqlite3_column_int64(st, 8) < 0) {
        err_setf(why, whylen, "invalid row for '%s'%s%s", did ? did : "?", mid && *mid ? "/" : "", mid ? mid : "");
        return ERR_MALFORMED;
    }
    struct entry *e = entry_new(did, mid);
    if (!e)
        return ERR_NOMEM;
    e->id.enabled = sqlite3_column_int(st, 4) != 0;
    e->id.version = (uint64_t)sqlite3_column_int64(st, 8);
    e->id.status_updated_s = sqlite3_column_int64(st, 9);
    e->id.iot_edge = !*mid && sqlite3_column_int(st, 10) != 0;
    snprintf(e->id.generation_id, sizeof e->id.generation_id, "%s", gen);
    if (dup_or_null(pk, &e->id.primary_key) || dup_or_null(sk, &e->id.secondary_key) ||
        dup_or_null(col_text(st, 5), &e->id.status_reason) || (*mid && dup_or_null(col_text(st, 6), &e->id.managed_by))) {
        entry_free(e);
        return ERR_NOMEM;
    }
    *out = e;
    return ERR_OK;
}

/* Loads every identity; rows come ordered by (device_id, module_id), so a device comes just before its
 * modules and devices arrive in the sorted array's order. */
static int registry_load_rows(struct registry *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = db_stmt(r->db, SQL_SELECT);
    if (!st) {
        err_setf(err, errlen, "cannot read the identities from the store (see the log)");
        return ERR_IO;
    }
    int rc = ERR_OK, step;
    struct entry *dev = NULL;
    char why[200] = "";
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct entry *e = NULL;
        rc = row_entry(st, &e, why, sizeof why);
        if (!rc && e->id.module_id[0]) {
            if (!dev || strcmp(dev->id.device_id, e->id.device_id) != 0) {
                err_setf(why, sizeof why, "module '%s/%s' without its device", e->id.device_id, e->id.module_id);
                rc = ERR_MALFORMED;
            } else {
                e->owner = dev;
            }
        }
        if (!rc)
            rc = attach_reserve(r, e);
        if (rc) {
            entry_free(e);
            break;
        }
        attach(r, e);
        if (!e->owner)
            dev = e;
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_result(r->db, step, "read the identities");
    sqlite3_reset(st);
    if (rc == ERR_MALFORMED)
        err_setf(err, errlen, "the store holds an identity this emulator cannot use: %s", why);
    else if (rc)
        err_setf(err, errlen, "cannot read the identities from the store: %s", err_str(rc));
    return rc;
}

/* ---- persistence: loading ---- */

/* o's member key as a string (NULL when absent or not a string). */
static const char *member_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Fills id's persisted fields from one file object; err gets the reason. json_object_get rather than
 * json_unpack: the format parse was 11% of loading a large registry. */
static int load_identity(json_t *o, struct identity *id, char *err, size_t errlen)
{
    const char *pk = member_str(o, "primaryKey"), *sk = member_str(o, "secondaryKey");
    const char *status = member_str(o, "status"), *gen = member_str(o, "generationId");
    const json_t *ver = json_object_get(o, "version"), *upd = json_object_get(o, "statusUpdatedTime");
    json_t *reason = json_object_get(o, "statusReason");
    if (!pk || !sk || !status || !gen || !json_is_integer(ver) || (upd && !json_is_integer(upd))) {
        err_setf(err, errlen, "missing or mistyped primaryKey, secondaryKey, status, generationId, version or "
                             "statusUpdatedTime");
        return ERR_MALFORMED;
    }
    json_int_t version = json_integer_value(ver), status_updated = upd ? json_integer_value(upd) : 0;
    bool enabled = strcmp(status, "enabled") == 0;
    if (!key_is_valid(pk) || !key_is_valid(sk) || (!enabled && strcmp(status, "disabled") != 0) || version < 0 ||
        !*gen || strlen(gen) >= sizeof id->generation_id || (reason && !json_is_string(reason) && !json_is_null(reason))) {
        err_setf(err, errlen, "invalid key, status, version, generationId or statusReason");
        return ERR_MALFORMED;
    }
    id->enabled = enabled;
    id->version = (uint64_t)version;
    id->status_updated_s = status_updated;
    snprintf(id->generation_id, sizeof id->generation_id, "%s", gen);
    if (dup_or_null(pk, &id->primary_key) || dup_or_null(sk, &id->secondary_key) ||
        dup_or_null(json_string_value(reason), &id->status_reason))
        return ERR_NOMEM;
    return ERR_OK;
}

static int load_module(json_t *o, struct entry *dev, char *err, size_t errlen)
{
    const char *mid;
    json_t *managed_by = NULL;
    if (json_unpack(o, "{s:s, s?:o}", "moduleId", &mid, "managedBy", &managed_by) || !registry_id_is_valid(mid) ||
        (managed_by && !json_is_string(managed_by) && !json_is_null(managed_by))) {
        err_setf(err, errlen, "invalid moduleId or managedBy");
        return ERR_MALFORMED;
    }
    for (struct entry *m = dev->modules; m; m = m->mnext) {
        if (strcmp(m->id.module_id, mid) == 0) {
            err_setf(err, errlen, "duplicate module '%s'", mid);
            return ERR_MALFORMED;
        }
    }
    struct entry *m = entry_new(dev->id.device_id, mid);
    if (!m)
        return ERR_NOMEM;
    m->owner = dev;
    modules_insert(dev, m); /* dev owns m from here on */
    int rc = load_identity(o, &m->id, err, errlen);
    if (!rc && dup_or_null(json_string_value(managed_by), &m->id.managed_by))
        rc = ERR_NOMEM;
    return rc;
}

/* Builds one device with its modules into *out (caller attaches or frees). */
static int load_device(json_t *o, struct entry **out, char *err, size_t errlen)
{
    const char *did;
    int edge = 0;
    json_t *mods = NULL;
    *out = NULL;
    const json_t *edge_v = json_object_get(o, "iotEdge");
    did = member_str(o, "deviceId");
    mods = json_object_get(o, "modules");
    edge = json_is_true(edge_v);
    if (!did || (edge_v && !json_is_boolean(edge_v)) || !registry_id_is_valid(did) ||
        (mods && !json_is_array(mods))) {
        err_setf(err, errlen, "invalid deviceId, iotEdge or modules");
        return ERR_MALFORMED;
    }
    struct entry *dev = entry_new(did, "");
    if (!dev)
        return ERR_NOMEM;
    dev->id.iot_edge = edge;
    int rc = load_identity(o, &dev->id, err, errlen);
    size_t i;
    json_t *m;
    json_array_foreach(mods, i, m) {
        if (rc)
            break;
        rc = load_module(m, dev, err, errlen);
    }
    if (rc) {
        entry_free(dev);
        return rc;
    }
    *out = dev;
    return ERR_OK;
}

static int load_root(struct registry *r, json_t *root, char *err, size_t errlen)
{
    json_int_t version;
    json_t *devs, *o;
    size_t i;
    if (json_unpack(root, "{s:I, s:o}", "version", &version, "devices", &devs) || !json_is_array(devs)) {
        err_setf(err, errlen, "not a registry file (want {\"version\":1,\"devices\":[...]})");
        return ERR_MALFORMED;
    }
    if (version != REGISTRY_FILE_VERSION) {
        err_setf(err, errlen, "unsupported registry file version %" JSON_INTEGER_FORMAT, version);
        return ERR_MALFORMED;
    }
    json_array_foreach(devs, i, o) {
        struct entry *dev = NULL;
        char why[160] = "";
        int rc = load_device(o, &dev, why, sizeof why);
        if (!rc && table_find(r, dev->id.device_id, NULL)) {
            snprintf(why, sizeof why, "duplicate device '%s'", dev->id.device_id);
            rc = ERR_MALFORMED;
        }
        if (!rc)
            rc = attach_reserve(r, dev);
        if (rc) {
            entry_free(dev);
            err_setf(err, errlen, "devices[%zu]: %s", i, rc == ERR_NOMEM ? "out of memory" : why);
            return rc;
        }
        attach(r, dev);
    }
    return ERR_OK;
}

/* fsync of the directory holding path, so a rename in it is durable. Failure is only logged. */
static void fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0 || fsync(fd) != 0)
        log_warn("registry: cannot fsync directory %s: %s", dir ? dir : "?", strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
}

/* Parses a registry.json of release 0.1 into the scratch registry r (no store). */
static int json_file_load(struct registry *r, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        err_setf(err, errlen, "%s: %s", path, strerror(errno));
        return ERR_IO;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) {
        err_setf(err, errlen, "%s: corrupt registry file: line %d: %s", path, je.line, je.text);
        return ERR_MALFORMED;
    }
    char why[200] = "";
    int rc = load_root(r, root, why, sizeof why);
    json_decref(root);
    if (rc)
        err_setf(err, errlen, "%s: corrupt registry file: %s", path, why);
    return rc;
}

static struct registry *registry_alloc(struct db *db)
{
    struct registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->db = db;
    r->nbuckets = REGISTRY_MIN_BUCKETS;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
        free(r);
        return NULL;
    }
    return r;
}

/* True when db already has the row of id. */
static bool row_exists(struct db *db, const struct identity *id)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT 1 FROM identities WHERE device_id = ?1 AND module_id = ?2");
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, id->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id->module_id, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/* Writes the parsed identities of src into db (one transaction, with the meta marker). */
static int json_import_rows(struct db *db, const struct registry *src, const char *path, size_t *imported,
                            size_t *kept)
{
    int rc = db_begin(db);
    for (size_t i = 0; !rc && i < src->ndevices; i++) {
        const struct entry *dev = src->devices[i];
        if (row_exists(db, &dev->id)) {
            log_warn("registry: import of %s: device '%s' is already in the store; keeping the store's", path,
                     dev->id.device_id);
            (*kept)++;
            continue;
        }
        rc = row_write(db, SQL_INSERT, &dev->id);
        for (const struct entry *m = dev->modules; !rc && m; m = m->mnext)
            rc = row_write(db, SQL_INSERT, &m->id);
        (*imported)++;
    }
    if (!rc)
        rc = db_meta_set(db, REGISTRY_JSON_IMPORTED_KEY, path);
    if (!rc)
        return db_commit(db);
    db_rollback(db);
    return rc;
}

/* The one-time import of an older release's registry.json (see registry_new). */
static int json_import(struct db *db, const char *path, char *err, size_t errlen)
{
    char done[16], dest[PATH_MAX];
    if (access(path, F_OK) != 0)
        return ERR_OK;
    int rc = db_meta_get(db, REGISTRY_JSON_IMPORTED_KEY, done, sizeof done);
    if (rc == ERR_NOT_FOUND) {
        struct registry *src = registry_alloc(NULL);
        size_t imported = 0, kept = 0;
        rc = src ? json_file_load(src, path, err, errlen) : ERR_NOMEM;
        if (!rc) {
            rc = json_import_rows(db, src, path, &imported, &kept);
            if (rc)
                err_setf(err, errlen, "cannot import %s into the store (see the log)", path);
        }
        registry_free(src);
        if (rc)
            return rc;
        log_info("registry: imported %zu devices from %s into the store%s", imported, path,
                 kept ? " (some ids were already there; see above)" : "");
    } else if (rc) {
        err_setf(err, errlen, "cannot read the store's meta table (see the log)");
        return rc;
    } else {
        log_warn("registry: %s was imported before; renaming it now", path);
    }
    snprintf(dest, sizeof dest, "%s.imported", path);
    if (rename(path, dest) != 0)
        log_warn("registry: cannot rename %s to %s: %s (it will not be imported again)", path, dest, strerror(errno));
    else
        fsync_parent_dir(path);
    return ERR_OK;
}

/* ---- lifetime and lookups ---- */

struct registry *registry_new(struct db *db, const char *import_json, char *err, size_t errlen)
{
    err_setf(err, errlen, "%s", "");
    int rc = db_migrate(db, &registry_db_schema, err, errlen);
    if (!rc && import_json)
        rc = json_import(db, import_json, err, errlen);
    if (rc)
        return NULL;
    struct registry *r = registry_alloc(db);
    rc = r ? registry_load_rows(r, err, errlen) : ERR_NOMEM;
    if (rc == ERR_NOMEM)
        err_setf(err, errlen, "out of memory");
    if (rc) {
        registry_free(r);
        return NULL;
    }
    return r;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ndevices; i++)
        entry_free(r->devices[i]);
    free(r->devices);
    free(r->buckets);
    free(r);
}

struct db *registry_db(const struct registry *r)
{
    return r->db;
}

const struct identity *registry_find(const struct registry *r, const char *device_id, const char *module_id)
{
    struct entry *e = table_find(r, device_id, module_id);
    return e ? &e->id : NULL;
}

size_t registry_device_count(const struct registry *r)
{
    return r->ndevices;
}

/* ---- registry_put: the body ---- */

/* A member that is absent or null leaves *out NULL; any other non-string is an error. */
static int member_string(const json_t *o, const char *key, const char **out, bool *present, char *err,
                         size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (present)
        *present = v != NULL;
    if (!v || json_is_null(v))
        return ERR_OK;
    if (!json_is_string(v)) {
        err_setf(err, errlen, "%s must be a string", key);
        return ERR_INVALID;
    }
    *out = json_string_value(v);
    return ERR_OK;
}

/* The body's deviceId/moduleId, when present, must equal the path's. */
static int parse_ids(const json_t *body, const char *device_id, const char *module_id, char *err, size_t errlen)
{
    const char *did, *mid;
    int rc = member_string(body, "deviceId", &did, NULL, err, errlen);
    if (!rc && did && strcmp(did, device_id) != 0) {
        err_setf(err, errlen, "deviceId '%s' in the body does not match '%s' in the path", did, device_id);
        rc = ERR_INVALID;
    }
    if (rc || !*module_id)
        return rc;
    rc = member_string(body, "moduleId", &mid, NULL, err, errlen);
    if (!rc && mid && strcmp(mid, module_id) != 0) {
        err_setf(err, errlen, "moduleId '%s' in the body does not match '%s' in the path", mid, module_id);
        rc = ERR_INVALID;
    }
    return rc;
}

static int parse_key(const json_t *sym, const char *name, const char **out, char *err, size_t errlen)
{
    int rc = member_string(sym, name, out, NULL, err, errlen);
    if (!rc && *out && **out && !key_is_valid(*out)) {
        err_setf(err, errlen, "%s must be base64 of 16 to 64 bytes", name);
        rc = ERR_INVALID;
    }
    return rc;
}

/* authentication: absent, or type "sas" (or absent) with optional symmetricKey. */
static int parse_auth(const json_t *body, struct put_spec *spec, char *err, size_t errlen)
{
    const json_t *auth = json_object_get(body, "authentication");
    const char *type;
    if (!auth || json_is_null(auth))
        return ERR_OK;
    if (!json_is_object(auth)) {
        err_setf(err, errlen, "authentication must be an object");
        return ERR_INVALID;
    }
    int rc = member_string(auth, "type", &type, NULL, err, errlen);
    if (rc)
        return rc;
    if (type && strcmp(type, "sas") != 0) {
        err_setf(err, errlen, "authentication type '%s' is not supported: the emulator supports sas only", type);
        return ERR_INVALID;
    }
    const json_t *sym = json_object_get(auth, "symmetricKey");
    if (!sym || json_is_null(sym))
        return ERR_OK;
    if (!json_is_object(sym)) {
        err_setf(err, errlen, "authentication.symmetricKey must be an object");
        return ERR_INVALID;
    }
    rc = parse_key(sym, "primaryKey", &spec->primary_key, err, errlen);
    if (!rc)
        rc = parse_key(sym, "secondaryKey", &spec->secondary_key, err, errlen);
    return rc;
}

static int parse_status(const json_t *body, struct put_spec *spec, char *err, size_t errlen)
{
    const char *status;
    int rc = member_string(body, "status", &status, NULL, err, errlen);
    if (rc || !status)
        return rc;
    if (strcmp(status, "enabled") != 0 && strcmp(status, "disabled") != 0) {
        err_setf(err, errlen, "status must be \"enabled\" or \"disabled\"");
        return ERR_INVALID;
    }
    spec->enabled = strcmp(status, "enabled") == 0;
    return ERR_OK;
}

static int parse_capabilities(const json_t *body, struct put_spec *spec, char *err, size_t errlen)
{
    const json_t *caps = json_object_get(body, "capabilities");
    if (!caps || json_is_null(caps))
        return ERR_OK;
    const json_t *edge = json_is_object(caps) ? json_object_get(caps, "iotEdge") : NULL;
    if (!json_is_object(caps) || (edge && !json_is_boolean(edge) && !json_is_null(edge))) {
        err_setf(err, errlen, "capabilities must be an object with a boolean iotEdge");
        return ERR_INVALID;
    }
    if (json_is_boolean(edge))
        spec->iot_edge = json_is_true(edge);
    return ERR_OK;
}

/* Validates the path ids and the body into spec. */
static int put_check(const char *device_id, const char *module_id, const json_t *body, struct put_spec *spec,
                     char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->enabled = spec->iot_edge = -1;
    if (!registry_id_is_valid(device_id) || (*module_id && !registry_id_is_valid(module_id))) {
        err_setf(err, errlen, "invalid %s id: 1 to 128 ASCII letters, digits or -.+%%_#*?!(),=@$'",
                registry_id_is_valid(device_id) ? "module" : "device");
        return ERR_INVALID;
    }
    if (!json_is_object(body)) {
        err_setf(err, errlen, "the body must be a JSON object");
        return ERR_INVALID;
    }
    int rc = parse_ids(body, device_id, module_id, err, errlen);
    if (!rc)
        rc = parse_auth(body, spec, err, errlen);
    if (!rc)
        rc = parse_status(body, spec, err, errlen);
    if (!rc)
        rc = parse_capabilities(body, spec, err, errlen);
    if (!rc)
        rc = member_string(body, "statusReason", &spec->status_reason, &spec->has_status_reason, err, errlen);
    if (!rc && *module_id)
        rc = member_string(body, "managedBy", &spec->managed_by, &spec->has_managed_by, err, errlen);
    return rc;
}

/* ---- registry_put: create and update ---- */

static void set_io_err(int rc, char *err, size_t errlen)
{
    err_setf(err, errlen, "%s",
            rc == ERR_IO ? "the store cannot save the change (disk full or read-only data dir? see the log)"
                         : err_str(rc));
}

/* Creates a new identity and commits it; dev is its device for a module (NULL for a device). *out is the
 * entry once it is in memory (NULL inside an enclosing transaction). */
static int put_create(struct registry *r, struct entry *dev, const char *device_id, const char *module_id,
                      const struct put_spec *spec, struct entry **out, char *err, size_t errlen)
{
    *out = NULL;
    struct entry *e = entry_new(device_id, module_id);
    struct change *c = NULL;
    int rc = e ? ERR_OK : ERR_NOMEM;
    if (!rc)
        rc = generation_id_new(e->id.generation_id, sizeof e->id.generation_id);
    if (!rc)
        rc = identity_apply(&e->id, spec, 0); /* statusUpdatedTime stays "never" */
    if (!rc) {
        e->owner = *module_id ? dev : NULL;
        c = change_new_create(r, e); /* owns e from here on, also on failure */
        e = NULL;
        rc = c ? change_run(c) : ERR_NOMEM;
    }
    entry_free(e);
    if (rc) {
        set_io_err(rc, err, errlen);
        return rc;
    }
    if (!db_in_transaction(r->db))
        *out = table_find(r, device_id, module_id);
    return ERR_OK;
}

/* Applies spec to a copy of e, bumps its version and commits it; on failure e is unchanged. */
static int put_update(struct registry *r, struct entry *e, const struct put_spec *spec, char *err, size_t errlen)
{
    struct change *c = change_new(r, CHANGE_UPDATE, e);
    int rc = c ? identity_copy(&c->next, &e->id) : ERR_NOMEM;
    if (rc) {
        free(c);
    } else {
        rc = identity_apply(&c->next, spec, (int64_t)time(NULL));
        c->next.version++;
        if (rc)
            change_rollback(c);
        else
            rc = change_run(c);
    }
    if (rc)
        set_io_err(rc, err, errlen);
    return rc;
}

int registry_put(struct registry *r, const char *device_id, const char *module_id, const json_t *body,
                 const char *if_match, const struct identity **out, bool *created, char *err, size_t errlen)
{
    struct put_spec spec;
    *out = NULL;
    *created = false;
    err_setf(err, errlen, "%s", "");
    if (!module_id)
        module_id = "";
    int rc = put_check(device_id, module_id, body, &spec, err, errlen);
    if (rc)
        return rc;
    struct entry *dev = table_find(r, device_id, NULL);
    if (*module_id && !dev) {
        err_setf(err, errlen, "device '%s' does not exist", device_id);
        return ERR_NOT_FOUND;
    }
    struct entry *e = table_find(r, device_id, module_id);
    const char *what = *module_id ? "module" : "device";
    const char *which = *module_id ? module_id : device_id;
    if (if_match && *if_match) {
        if (!e) {
            err_setf(err, errlen, "%s '%s' does not exist", what, which);
            rc = ERR_NOT_FOUND;
        } else if (!if_match_is_ok(&e->id, if_match)) {
            err_setf(err, errlen, "precondition failed: the etag of %s '%s' does not match", what, which);
            rc = ERR_PRECONDITION;
        } else {
            rc = put_update(r, e, &spec, err, errlen);
        }
    } else if (e) {
        err_setf(err, errlen, "a %s with id '%s' is already registered", what, which);
        rc = ERR_EXISTS;
    } else {
        rc = put_create(r, dev, device_id, module_id, &spec, &e, err, errlen);
        *created = rc == ERR_OK;
    }
    if (!rc && !db_in_transaction(r->db))
        *out = &table_find(r, device_id, module_id)->id;
    return rc;
}

/* ---- delete, ensure ---- */

int registry_delete(struct registry *r, const char *device_id, const char *module_id, const char *if_match)
{
    struct entry *e = table_find(r, device_id, module_id);
    if (!e)
        return ERR_NOT_FOUND;
    if (if_match && *if_match && !if_match_is_ok(&e->id, if_match))
        return ERR_PRECONDITION;
    struct change *c = change_new(r, CHANGE_DELETE, e);
    return c ? change_run(c) : ERR_NOMEM;
}

int registry_ensure_device(struct registry *r, const char *device_id, const char *primary_key,
                           const char *secondary_key)
{
    struct put_spec spec;
    struct entry *e = NULL;
    char why[160];
    if (!registry_id_is_valid(device_id) || (primary_key && !key_is_valid(primary_key)) ||
        (secondary_key && !key_is_valid(secondary_key)))
        return ERR_INVALID;
    if (table_find(r, device_id, NULL))
        return ERR_OK;
    memset(&spec, 0, sizeof spec);
    spec.enabled = spec.iot_edge = -1;
    spec.primary_key = primary_key;
    spec.secondary_key = secondary_key;
    return put_create(r, NULL, device_id, "", &spec, &e, why, sizeof why);
}

/* ---- JSON for the REST API ---- */

json_t *registry_identity_json(const struct identity *id)
{
    char etag[REGISTRY_ETAG_LEN], cst[REGISTRY_TIME_LEN], sut[REGISTRY_TIME_LEN], lat[REGISTRY_TIME_LEN];
    etag_text(id->version, etag);
    time_format(id->connection_state_updated_s, cst);
    time_format(id->status_updated_s, sut);
    time_format(id->last_activity_s, lat);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:i, s:{s:{s:s, s:s}, s:{s:n, s:n}, s:s}}",
                          "generationId", id->generation_id, "etag", etag, "connectionState",
                          id->connected ? "Connected" : "Disconnected", "status",
                          id->enabled ? "enabled" : "disabled", "statusReason", id->status_reason,
                          "connectionStateUpdatedTime", cst, "statusUpdatedTime", sut, "lastActivityTime", lat,
                          "cloudToDeviceMessageCount", 0, "authentication", "symmetricKey", "primaryKey",
                          id->primary_key, "secondaryKey", id->secondary_key, "x509Thumbprint",
                          "primaryThumbprint", "secondaryThumbprint", "type", "sas");
    json_t *head = id->module_id[0] ? json_pack("{s:s, s:s, s:s?}", "moduleId", id->module_id, "deviceId",
                                                id->device_id, "managedBy", id->managed_by)
                                    : json_pack("{s:s}", "deviceId", id->device_id);
    json_t *caps = id->module_id[0] ? NULL : json_pack("{s:{s:b}}", "capabilities", "iotEdge", id->iot_edge);
    if (!o || !head || (!id->module_id[0] && !caps) || json_object_update(head, o) ||
        (caps && json_object_update(head, caps))) {
        json_decref(head);
        head = NULL;
    } else if (id->module_id[0]) {
        /* The hub's Module object has no status fields (REST reference "Modules - Get Identity"). */
        json_object_del(head, "status");
        json_object_del(head, "statusReason");
        json_object_del(head, "statusUpdatedTime");
    }
    json_decref(o);
    json_decref(caps);
    return head;
}

json_t *registry_list_devices(const struct registry *r, size_t top)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < r->ndevices && i < top; i++) {
        if (json_array_append_new(arr, registry_identity_json(&r->devices[i]->id))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

json_t *registry_list_modules(const struct registry *r, const char *device_id)
{
    const struct entry *dev = table_find(r, device_id, NULL);
    if (!dev)
        return NULL;
    json_t *arr = json_array();
    for (const struct entry *m = dev->modules; arr && m; m = m->mnext) {
        if (json_array_append_new(arr, registry_identity_json(&m->id))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* ---- presence ---- */

void registry_set_connected(struct registry *r, const char *device_id, const char *module_id, bool connected,
                            int64_t now_s)
{
    struct entry *e = table_find(r, device_id, module_id);
    if (!e)
        return;
    e->id.connected = connected;
    e->id.connection_state_updated_s = now_s;
    if (connected)
        e->id.last_activity_s = now_s;
}

void registry_touch(struct registry *r, const char *device_id, const char *module_id, int64_t now_s)
{
    struct entry *e = table_find(r, device_id, module_id);
    if (e)
        e->id.last_activity_s = now_s;
}
