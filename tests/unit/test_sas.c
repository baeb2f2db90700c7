/* test_sas.c -- unit tests for common/sas: build against known answers made by independent implementations,
 * parse (every grammar rule, on guard-page copies), and verify (signature, audience, expiry, and the order in
 * which failures are reported). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "guard_page.h"
#include "sas.h"

/*
 * Known-answer vectors. None was made by this code.
 *
 * Keys: K1 = base64(bytes 0x00..0x1f); K2 = base64(bytes 0xff..0xe0), which has '+' and '/' in it;
 * KS = base64("emulator-service-policy-key-0001").
 *
 * NODE_* tokens: the official Node SDK, azure-iot-common 1.13.3 (tests/integration/package-lock.json),
 *   cd tests/integration && npm ci && node -e "
 *     const {SharedAccessSignature: S} = require('azure-iot-common');
 *     const {encodeUriComponentStrict: enc} = require('azure-iot-common/dist/authorization');
 *     console.log(S.create(enc('myhub.azure-devices.net/devices/dev1'), undefined, K1, 1700000000).toString())"
 *   with, per vector, the sr argument (enc(...) = what the Node device SDK passes; a literal string where the
 *   comment says "as given"), skn and key noted beside it. Node orders fields sr, sig, skn, se.
 *
 * RAW_* tokens (classic C SDK form: sr not encoded, and signed as is): the openssl CLI,
 *   hexkey=$(printf %s "$K" | base64 -d | od -An -tx1 | tr -d ' \n')
 *   sig=$(printf '%s\n%s' "$SR" "$SE" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$hexkey -binary | base64)
 *   then sig URL-encoded with sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g', and
 *   printf 'SharedAccessSignature sr=%s&sig=%s&se=%s' "$SR" "$sig" "$SE".
 *   (Cross-check: the same script over "myhub.azure-devices.net%2Fdevices%2Fdev1" reproduces NODE_DEVICE.)
 */
#define H "myhub.azure-devices.net"
#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define K2 "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA="
#define KS "ZW11bGF0b3Itc2VydmljZS1wb2xpY3kta2V5LTAwMDE="
#define SE 1700000000
#define SAS "SharedAccessSignature "

/* enc(H/devices/dev1), K1 */
#define NODE_DEVICE SAS "sr=" H "%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D&se=1700000000"
/* enc(H/devices/dev1/modules/mod1), K1 */
#define NODE_MODULE                                                                                         \
    SAS "sr=" H "%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=kA6xjFLkZvk4Cdh0nD8uWAzassq6PB47f7BepMMtmlY%3D"    \
        "&se=1700000000"
/* H as given (the service SDK does not encode), skn iothubowner, KS */
#define NODE_SERVICE                                                                                        \
    SAS "sr=" H "&sig=aFtzvHeE2Yga3%2BB6NHSBE%2Bb8NOW8uXAepSHPgDvpdL4%3D&skn=iothubowner&se=1700000000"
/* enc(H/devices/d+1(x)!'), K1 */
#define NODE_SPECIAL_ID                                                                                     \
    SAS "sr=" H "%2Fdevices%2Fd%2B1%28x%29%21%27&sig=BYwp%2FrbQUdNC6Cs5%2FT66slXG9lgGbRcJLhy15NUABXY%3D"   \
        "&se=1700000000"
/* enc(H/devices/dev1), K2 (the secondary key) */
#define NODE_SECONDARY                                                                                      \
    SAS "sr=" H "%2Fdevices%2Fdev1&sig=ayOrz5LtZ0BbSQYWaMO%2FnwwCbq9ZrclB4%2FwyrUXxzMI%3D&se=1700000000"
/* "myhub.azure-devices.net%2fdevices%2fdev1" as given (the docs' lower-case form), K1 */
#define NODE_LOWER_2F                                                                                       \
    SAS "sr=" H "%2fdevices%2fdev1&sig=dUk3ecSsggNPeQNG98fO6Pv16mCcXEgP6lT2QfotQ4s%3D&se=1700000000"
/* enc(H/devices/dev10), K1 */
#define NODE_DEV10                                                                                          \
    SAS "sr=" H "%2Fdevices%2Fdev10&sig=rUyB9Ci4nPpVomZ4c9PlRW4bFPj%2FQjz3SUmXBYPA1RI%3D&se=1700000000"
/* enc(MyHub.Azure-Devices.NET/devices/dev1), K1 */
#define NODE_HOST_CASE                                                                                      \
    SAS "sr=MyHub.Azure-Devices.NET%2Fdevices%2Fdev1&sig=m7zxD%2BwOXoXGaTJ8yeZVYrmwKEeAwaPpnL7k95zNhYw%3D" \
        "&se=1700000000"
/* enc(localhost:8883/devices/dev1), K1 */
#define NODE_PORT                                                                                           \
    SAS "sr=localhost%3A8883%2Fdevices%2Fdev1&sig=7188yeJTmT8UfWR0xGgkgXMSy7l9hGNup4FyASMlQEo%3D"          \
        "&se=1700000000"
/* enc(H/devices), skn device, KS (a policy acting for every device) */
#define NODE_POLICY_DEVICES                                                                                 \
    SAS "sr=" H "%2Fdevices&sig=Nf2J8wQqZTyowU8GDRkqTIJbq03ASI4dKwXJyJ47Prk%3D&skn=device&se=1700000000"
/* enc(H/devices/dev*1), K1 (Node encodes '*' as lower-case %2a) */
#define NODE_STAR_ID                                                                                        \
    SAS "sr=" H "%2Fdevices%2Fdev%2a1&sig=LarRdFSu8Z42w55vWcSw7S%2BPOpQinWaCj0Q%2FEeuSYJU%3D&se=1700000000"
/* enc(H/devices/dev1), K1, expiry 4102444800 */
#define NODE_YEAR2100                                                                                       \
    SAS "sr=" H "%2Fdevices%2Fdev1&sig=ua9AATijSmVEgBc8iyUNNOVtGzHQi6clF0gIg30zOwE%3D&se=4102444800"

/* SR=H/devices/dev1, K1, SE=1700000000 */
#define RAW_DEVICE SAS "sr=" H "/devices/dev1&sig=MXrV7dIYA4Nv1boM3d4kgQQtxA3MyMN%2FBRPwZ8fvsA0%3D&se=1700000000"
/* SR=H/devices/dev1/modules/mod1, K1 */
#define RAW_MODULE                                                                                          \
    SAS "sr=" H "/devices/dev1/modules/mod1&sig=I4aVKG2QTuLR9lAIk6VVxJTOm8T3kpO12u6pE2eyRIk%3D&se=1700000000"
/* SR=H/devices/dev1/ (trailing slash), K1 */
#define RAW_TRAILING_SLASH                                                                                  \
    SAS "sr=" H "/devices/dev1/&sig=Rbex4aCqVR1dPLr02JqLzKnjSuH%2Bl7l2c%2BpDqUMFp9k%3D&se=1700000000"
/* SR=H/devices/dev1, K1, SE=01700000000 (leading zero: the signed text is se as received) */
#define RAW_LEADING_ZERO                                                                                    \
    SAS "sr=" H "/devices/dev1&sig=kHflex44QsIuvXfy4EMRtE1WQOuStHFLp19apQsKS0A%3D&se=01700000000"

/* ---- build ---- */

static void resource_uri(void **state)
{
    char *u = sas_resource_uri(H, "dev1", NULL);
    assert_string_equal(u, H "/devices/dev1");
    free(u);
    u = sas_resource_uri(H, "dev1", "mod1");
    assert_string_equal(u, H "/devices/dev1/modules/mod1");
    free(u);
    assert_null(sas_resource_uri(NULL, "d", NULL));
    assert_null(sas_resource_uri(H, NULL, NULL));
}

struct build_vector {
    const char *name;
    int raw;              /* sas_build_raw instead of sas_build */
    const char *resource; /* resource URI (sas_build) or sr (sas_build_raw) */
    const char *key;
    uint64_t expiry;
    const char *key_name;
    const char *want; /* exact token */
};

static const struct build_vector build_vectors[] = {
    {"device (Node)", 0, H "/devices/dev1", K1, SE, NULL, NODE_DEVICE},
    {"module (Node)", 0, H "/devices/dev1/modules/mod1", K1, SE, NULL, NODE_MODULE},
    {"special id (Node)", 0, H "/devices/d+1(x)!'", K1, SE, NULL, NODE_SPECIAL_ID},
    {"secondary key (Node)", 0, H "/devices/dev1", K2, SE, NULL, NODE_SECONDARY},
    {"year 2100 (Node)", 0, H "/devices/dev1", K1, 4102444800u, NULL, NODE_YEAR2100},
    {"port (Node)", 0, "localhost:8883/devices/dev1", K1, SE, NULL, NODE_PORT},
    {"raw device (openssl)", 1, H "/devices/dev1", K1, SE, NULL, RAW_DEVICE},
    {"raw module (openssl)", 1, H "/devices/dev1/modules/mod1", K1, SE, NULL, RAW_MODULE},
    {"raw lower-case sr (Node, sr as given)", 1, H "%2fdevices%2fdev1", K1, SE, NULL, NODE_LOWER_2F},
    /* skn tokens: our field order is sr, sig, se, skn (Python/C); the signature is Node's */
    {"service (Node signature)", 0, H, KS, SE, "iothubowner",
     SAS "sr=" H "&sig=aFtzvHeE2Yga3%2BB6NHSBE%2Bb8NOW8uXAepSHPgDvpdL4%3D&se=1700000000&skn=iothubowner"},
    {"policy for devices (Node signature)", 0, H "/devices", KS, SE, "device",
     SAS "sr=" H "%2Fdevices&sig=Nf2J8wQqZTyowU8GDRkqTIJbq03ASI4dKwXJyJ47Prk%3D&se=1700000000&skn=device"},
};

static void build_known_answers(void **state)
{
    for (size_t i = 0; i < sizeof(build_vectors) / sizeof(build_vectors[0]); i++) {
        const struct build_vector *v = &build_vectors[i];
        char *tok = NULL;
        int rc = v->raw ? sas_build_raw(v->resource, v->key, v->expiry, v->key_name, &tok)
                        : sas_build(v->resource, v->key, v->expiry, v->key_name, &tok);
        if (rc != ERR_OK || strcmp(tok, v->want) != 0)
            fail_msg("%s: rc %d\n got  %s\n want %s", v->name, rc, tok ? tok : "(null)", v->want);
        free(tok);
    }
}

/* The Node service token (order sr, sig, skn, se) and ours parse to the same fields. */
static void build_service_matches_node_fields(void **state)
{
    char *tok = NULL;
    assert_int_equal(sas_build(H, KS, SE, "iothubowner", &tok), ERR_OK);
    struct sas_token a, b;
    assert_int_equal(sas_parse(tok, strlen(tok), &a), ERR_OK);
    assert_int_equal(sas_parse(NODE_SERVICE, strlen(NODE_SERVICE), &b), ERR_OK);
    assert_int_equal(a.sr.len, b.sr.len);
    assert_memory_equal(a.sr.p, b.sr.p, a.sr.len);
    assert_int_equal(a.sig.len, b.sig.len);
    assert_memory_equal(a.sig.p, b.sig.p, a.sig.len);
    assert_int_equal(a.skn.len, b.skn.len);
    assert_memory_equal(a.skn.p, b.skn.p, a.skn.len);
    assert_true(a.expiry == b.expiry);
    free(tok);
}

static void build_rejects_bad_keys(void **state)
{
    static const char *const bad_keys[] = {"", "not base64!", "AAE", "A===", "AAECAw==AAEC"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        char *tok = (char *)"x";
        assert_int_equal(sas_build(H "/devices/d", bad_keys[i], SE, NULL, &tok), ERR_INVALID);
        assert_null(tok);
        tok = (char *)"x";
        assert_int_equal(sas_build_raw(H "/devices/d", bad_keys[i], SE, NULL, &tok), ERR_INVALID);
        assert_null(tok);
    }
    char *tok = NULL;
    assert_int_equal(sas_build(NULL, K1, SE, NULL, &tok), ERR_INVALID);
    assert_int_equal(sas_build(H, NULL, SE, NULL, &tok), ERR_INVALID);
    assert_int_equal(sas_build(H, K1, SE, NULL, NULL), ERR_INVALID);
}

/* ---- parse ---- */

struct parse_vector {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
    int rc;
    const char *sr, *sig, *skn; /* expected views on success (skn NULL: absent) */
    uint64_t expiry;
};

static const struct parse_vector parse_vectors[] = {
    {"Python/C order", SAS "sr=a%2Fb&sig=c%3D&se=12&skn=pol", 0, ERR_OK, "a%2Fb", "c%3D", "pol", 12},
    {"Node order", SAS "sr=a&sig=c&skn=pol&se=12", 0, ERR_OK, "a", "c", "pol", 12},
    {"docs order", SAS "sig=c&se=12&sr=a/b", 0, ERR_OK, "a/b", "c", NULL, 12},
    {"unknown field ignored", SAS "sr=a&x=1&sig=c&se=1&foo=", 0, ERR_OK, "a", "c", NULL, 1},
    {"repeated unknown field ignored", SAS "x=1&sr=a&x=2&sig=c&se=1", 0, ERR_OK, "a", "c", NULL, 1},
    {"empty segments ignored", SAS "&sr=a&&sig=c&se=1&", 0, ERR_OK, "a", "c", NULL, 1},
    {"value with '='", SAS "sr=a&sig=c==&se=7", 0, ERR_OK, "a", "c==", NULL, 7},
    {"empty skn is absent", SAS "sr=a&sig=c&se=7&skn=", 0, ERR_OK, "a", "c", NULL, 7},
    {"se = UINT64_MAX", SAS "sr=a&sig=c&se=18446744073709551615", 0, ERR_OK, "a", "c", NULL, UINT64_MAX},
    {"se with leading zeros", SAS "sr=a&sig=c&se=007", 0, ERR_OK, "a", "c", NULL, 7},
    {"se > UINT64_MAX", SAS "sr=a&sig=c&se=18446744073709551616", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"se negative", SAS "sr=a&sig=c&se=-1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"se with a sign", SAS "sr=a&sig=c&se=+1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"se not digits", SAS "sr=a&sig=c&se=12a", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"se with a space", SAS "sr=a&sig=c&se=12 ", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"se empty", SAS "sr=a&sig=c&se=", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"missing sr", SAS "sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"missing sig", SAS "sr=a&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"missing se", SAS "sr=a&sig=c", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"empty sr", SAS "sr=&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"empty sig", SAS "sr=a&sig=&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"duplicate sr", SAS "sr=a&sig=c&se=1&sr=b", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"duplicate sig", SAS "sr=a&sig=c&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"duplicate se", SAS "sr=a&sig=c&se=1&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"duplicate skn", SAS "sr=a&sig=c&se=1&skn=p&skn=p", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"segment without '='", SAS "sr=a&sig=c&se=1&junk", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"field names case-sensitive", SAS "SR=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"no prefix", "sr=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"prefix in lower case", "sharedaccesssignature sr=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"prefix without the space", "SharedAccessSignaturesr=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"prefix with a tab", "SharedAccessSignature\tsr=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"two spaces", "SharedAccessSignature  sr=a&sig=c&se=1", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"prefix only", SAS, 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"truncated prefix", "SharedAccess", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"empty", "", 0, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"len cuts se", SAS "sr=a&sig=c&se=1234", sizeof(SAS "sr=a&sig=c&se=") - 1, ERR_MALFORMED, NULL, NULL, NULL, 0},
    {"len cuts se short", SAS "sr=a&sig=c&se=1234", sizeof(SAS "sr=a&sig=c&se=12") - 1, ERR_OK, "a", "c", NULL,
     12},
    {"embedded NUL is data", SAS "sr=a\0b&sig=c&se=1", sizeof(SAS "sr=a\0b&sig=c&se=1") - 1, ERR_OK, "a\0b",
     "c", NULL, 1},
    {"Node device token", NODE_DEVICE, 0, ERR_OK, H "%2Fdevices%2Fdev1",
     "i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D", NULL, SE},
    {"Node service token", NODE_SERVICE, 0, ERR_OK, H, "aFtzvHeE2Yga3%2BB6NHSBE%2Bb8NOW8uXAepSHPgDvpdL4%3D",
     "iothubowner", SE},
};

static void expect_view(const struct sas_view *v, const char *want, size_t want_len, const char *what,
                        const char *name)
{
    if (v->len != want_len || (want_len && memcmp(v->p, want, want_len) != 0))
        fail_msg("%s: %s is \"%.*s\", want \"%s\"", name, what, (int)v->len, v->p ? v->p : "", want);
}

static void parse_table(void **state)
{
    for (size_t i = 0; i < sizeof(parse_vectors) / sizeof(parse_vectors[0]); i++) {
        const struct parse_vector *v = &parse_vectors[i];
        size_t len = v->len ? v->len : strlen(v->text);
        struct guard_page g;
        const char *text = guard_page_copy(&g, v->text, len);
        assert_non_null(text);
        struct sas_token t;
        memset(&t, 0xa5, sizeof(t));
        int rc = sas_parse(text, len, &t);
        if (rc != v->rc)
            fail_msg("%s: rc %d, want %d", v->name, rc, v->rc);
        if (rc == ERR_OK) {
            /* the views point into the caller's text */
            assert_true(t.sr.p >= text && t.sr.p + t.sr.len <= text + len);
            size_t sr_len = strcmp(v->name, "embedded NUL is data") == 0 ? 3 : strlen(v->sr);
            expect_view(&t.sr, v->sr, sr_len, "sr", v->name);
            expect_view(&t.sig, v->sig, strlen(v->sig), "sig", v->name);
            expect_view(&t.skn, v->skn ? v->skn : "", v->skn ? strlen(v->skn) : 0, "skn", v->name);
            if (t.expiry != v->expiry)
                fail_msg("%s: expiry %llu", v->name, (unsigned long long)t.expiry);
        } else {
            assert_null(t.sr.p);
            assert_int_equal(t.sr.len, 0);
            assert_null(t.sig.p);
            assert_true(t.expiry == 0);
        }
        guard_page_free(&g);
    }
}

/* 64 KiB of pseudo-random garbage, with and without the prefix, and 64 KiB of '&' and '='. */
static void parse_garbage(void **state)
{
    const size_t len = 64 * 1024;
    char *buf = malloc(len);
    assert_non_null(buf);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (char)x;
    }
    struct sas_token t;
    struct guard_page g;
    const char *text = guard_page_copy(&g, buf, len);
    assert_int_equal(sas_parse(text, len, &t), ERR_MALFORMED);
    guard_page_free(&g);
    memcpy(buf, SAS, strlen(SAS));
    text = guard_page_copy(&g, buf, len);
    assert_int_equal(sas_parse(text, len, &t), ERR_MALFORMED);
    guard_page_free(&g);
    for (size_t i = strlen(SAS); i < len; i++)
        buf[i] = (i & 1) ? '&' : '=';
    text = guard_page_copy(&g, buf, len);
    assert_int_equal(sas_parse(text, len, &t), ERR_MALFORMED);
    guard_page_free(&g);
    free(buf);
    assert_int_equal(sas_parse(NULL, 0, &t), ERR_MALFORMED);
    assert_int_equal(sas_parse(NODE_DEVICE, strlen(NODE_DEVICE), NULL), ERR_MALFORMED);
}

/* ---- verify ---- */

static const char *const hosts_hub[] = {H};
static const char *const hosts_local[] = {"localhost", "127.0.0.1"};
static const char *const hosts_local_port[] = {"localhost:8883"};
static const char *const hosts_other[] = {"otherhub.azure-devices.net"};
enum { HUB, LOCAL, LOCAL_PORT, OTHER, NONE };

struct verify_vector {
    const char *name;
    const char *token;
    int hosts;
    const char *path;
    const char *key1, *key2;
    int64_t now, skew;
    enum sas_verdict want;
};

#define BEFORE (SE - 10000)
static const struct verify_vector verify_vectors[] = {
    /* accepted forms */
    {"Python/Node device form", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"classic C SDK form (raw sr)", RAW_DEVICE, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"lower-case %2f", NODE_LOWER_2F, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"module token", NODE_MODULE, HUB, "/devices/dev1/modules/mod1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"raw module token", RAW_MODULE, HUB, "/devices/dev1/modules/mod1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"device token covers its modules", NODE_DEVICE, HUB, "/devices/dev1/modules/m", K1, NULL, BEFORE, 0,
     SAS_VALID},
    {"trailing '/' tolerated", RAW_TRAILING_SLASH, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"special characters in the id", NODE_SPECIAL_ID, HUB, "/devices/d+1(x)!'", K1, NULL, BEFORE, 0, SAS_VALID},
    {"'*' as %2a", NODE_STAR_ID, HUB, "/devices/dev*1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"service token with skn", NODE_SERVICE, HUB, "", KS, NULL, BEFORE, 0, SAS_VALID},
    {"hub-scope token covers a device path", NODE_SERVICE, HUB, "/devices/dev1", KS, NULL, BEFORE, 0, SAS_VALID},
    {"policy for /devices covers a device", NODE_POLICY_DEVICES, HUB, "/devices/dev1", KS, NULL, BEFORE, 0,
     SAS_VALID},
    {"se signed as received (leading zero)", RAW_LEADING_ZERO, HUB, "/devices/dev1", K1, NULL, BEFORE, 0,
     SAS_VALID},
    {"far expiry", NODE_YEAR2100, HUB, "/devices/dev1", K1, NULL, 1750000000, 0, SAS_VALID},
    /* keys */
    {"wrong key", NODE_DEVICE, HUB, "/devices/dev1", K2, NULL, BEFORE, 0, SAS_BAD_SIGNATURE},
    {"secondary key accepted", NODE_SECONDARY, HUB, "/devices/dev1", K1, K2, BEFORE, 0, SAS_VALID},
    {"primary key in slot 2", NODE_DEVICE, HUB, "/devices/dev1", K2, K1, BEFORE, 0, SAS_VALID},
    {"secondary token, primary only", NODE_SECONDARY, HUB, "/devices/dev1", K1, NULL, BEFORE, 0,
     SAS_BAD_SIGNATURE},
    {"no keys", NODE_DEVICE, HUB, "/devices/dev1", NULL, NULL, BEFORE, 0, SAS_BAD_SIGNATURE},
    {"bad base64 key skipped", NODE_DEVICE, HUB, "/devices/dev1", "not base64!", K1, BEFORE, 0, SAS_VALID},
    {"only a bad base64 key", NODE_DEVICE, HUB, "/devices/dev1", "not base64!", "", BEFORE, 0,
     SAS_BAD_SIGNATURE},
    {"tampered se", SAS "sr=" H "%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D"
     "&se=1700000001", HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_BAD_SIGNATURE},
    {"sr re-encoded differently", SAS "sr=" H "/devices/dev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g"
     "%3D&se=1700000000", HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_BAD_SIGNATURE},
    {"sig not URL-encoded (raw '+', '=') still matches", SAS "sr=" H "%2Fdevices%2Fdev1&sig=i+YmMcSSZc4KzBi6ejz3l0"
     "iL+2sN0CE3q6vSm837h2g=&se=1700000000", HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"sig valid base64 but wrong", SAS "sr=" H "%2Fdevices%2Fdev1&sig=AAAA&se=1700000000", HUB, "/devices/dev1",
     K1, NULL, BEFORE, 0, SAS_BAD_SIGNATURE},
    /* expiry */
    {"expired", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE + 1, 0, SAS_EXPIRED},
    {"expires at se (se == now is valid)", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE, 0, SAS_VALID},
    {"within skew", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE + 100, 300, SAS_VALID},
    {"at the skew edge", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE + 300, 300, SAS_VALID},
    {"past the skew", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE + 301, 300, SAS_EXPIRED},
    {"negative skew counts as 0", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, SE + 1, -1000, SAS_EXPIRED},
    {"negative now", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, -5, 0, SAS_VALID},
    {"huge skew", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, INT64_MAX, INT64_MAX, SAS_VALID},
    {"INT64_MAX now", NODE_DEVICE, HUB, "/devices/dev1", K1, NULL, INT64_MAX, 0, SAS_EXPIRED},
    /* audience */
    {"other device", NODE_DEVICE, HUB, "/devices/dev2", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"dev1 does not cover dev10", NODE_DEVICE, HUB, "/devices/dev10", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"dev10 does not cover dev1", NODE_DEV10, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"ids are case-sensitive", NODE_DEVICE, HUB, "/devices/DEV1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"module token does not cover its device", NODE_MODULE, HUB, "/devices/dev1", K1, NULL, BEFORE, 0,
     SAS_WRONG_AUDIENCE},
    {"device token for the hub path", NODE_DEVICE, HUB, "", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"/devices does not cover /devicesX", NODE_POLICY_DEVICES, HUB, "/devicesX/d", KS, NULL, BEFORE, 0,
     SAS_WRONG_AUDIENCE},
    {"other host", NODE_DEVICE, OTHER, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"host not in the local list", NODE_DEVICE, LOCAL, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"no accepted hosts", NODE_DEVICE, NONE, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    {"host compared case-insensitively", NODE_HOST_CASE, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"host:port accepted for host", NODE_PORT, LOCAL, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"host:port accepted as given", NODE_PORT, LOCAL_PORT, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_VALID},
    {"host:port of another host", NODE_PORT, HUB, "/devices/dev1", K1, NULL, BEFORE, 0, SAS_WRONG_AUDIENCE},
    /* malformed */
    {"sig not base64", SAS "sr=" H "%2Fdevices%2Fdev1&sig=abc&se=1700000000", HUB, "/devices/dev1", K1, NULL,
     BEFORE, 0, SAS_MALFORMED},
    {"sig bad escape", SAS "sr=" H "%2Fdevices%2Fdev1&sig=%zz&se=1700000000", HUB, "/devices/dev1", K1, NULL,
     BEFORE, 0, SAS_MALFORMED},
    {"sr bad escape", SAS "sr=" H "%2&sig=AAAA&se=1700000000", HUB, "", K1, NULL, BEFORE, 0, SAS_MALFORMED},
    {"sr with %00", SAS "sr=" H "%00&sig=AAAA&se=1700000000", HUB, "", K1, NULL, BEFORE, 0, SAS_MALFORMED},
    /* reporting order: MALFORMED, WRONG_AUDIENCE, BAD_SIGNATURE, EXPIRED */
    {"wrong audience before bad signature", NODE_DEVICE, HUB, "/devices/dev2", K2, NULL, BEFORE, 0,
     SAS_WRONG_AUDIENCE},
    {"bad signature before expired", NODE_DEVICE, HUB, "/devices/dev1", K2, NULL, SE + 1, 0, SAS_BAD_SIGNATURE},
    {"malformed before wrong audience", SAS "sr=x&sig=abc&se=1", HUB, "/devices/dev1", K1, NULL, BEFORE, 0,
     SAS_MALFORMED},
};

static void verify_table(void **state)
{
    for (size_t i = 0; i < sizeof(verify_vectors) / sizeof(verify_vectors[0]); i++) {
        const struct verify_vector *v = &verify_vectors[i];
        struct sas_expect e = {.path = v->path, .keys = {v->key1, v->key2}, .now = v->now, .skew = v->skew};
        switch (v->hosts) {
        case HUB: e.hosts = hosts_hub, e.n_hosts = 1; break;
        case LOCAL: e.hosts = hosts_local, e.n_hosts = 2; break;
        case LOCAL_PORT: e.hosts = hosts_local_port, e.n_hosts = 1; break;
        case OTHER: e.hosts = hosts_other, e.n_hosts = 1; break;
        default: break;
        }
        size_t len = strlen(v->token);
        struct guard_page g;
        const char *text = guard_page_copy(&g, v->token, len);
        assert_non_null(text);
        struct sas_token t;
        if (sas_parse(text, len, &t) != ERR_OK)
            fail_msg("%s: does not parse", v->name);
        enum sas_verdict got = sas_verify(&t, &e);
        if (got != v->want)
            fail_msg("%s: %s, want %s", v->name, sas_verdict_str(got), sas_verdict_str(v->want));
        guard_page_free(&g);
    }
}

/* Tokens we build verify, for a spread of ids; the token made without the se view verifies too. */
static void build_then_verify(void **state)
{
    static const char *const ids[] = {"dev1", "a-b_c.d~e", "x:y=z@w$", "%41", "d+1 (2)", "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (int raw = 0; raw < 2; raw++) {
            char *uri = sas_resource_uri("localhost", ids[i], raw ? "m" : NULL);
            char *tok = NULL;
            assert_int_equal(raw ? sas_build_raw(uri, K2, SE, NULL, &tok) : sas_build(uri, K2, SE, NULL, &tok),
                             ERR_OK);
            char path[128];
            snprintf(path, sizeof(path), "/devices/%s%s", ids[i], raw ? "/modules/m" : "");
            struct sas_expect e = {.hosts = hosts_local, .n_hosts = 2, .path = path, .keys = {K1, K2},
                                   .now = BEFORE};
            struct sas_token t;
            assert_int_equal(sas_parse(tok, strlen(tok), &t), ERR_OK);
            enum sas_verdict got = sas_verify(&t, &e);
            /* '%41' in a raw sr decodes to 'A': the raw form cannot carry a literal '%' */
            enum sas_verdict want = (raw && strcmp(ids[i], "%41") == 0) ? SAS_WRONG_AUDIENCE : SAS_VALID;
            if (got != want)
                fail_msg("%s raw=%d: %s", ids[i], raw, sas_verdict_str(got));
            t.se.p = NULL;
            t.se.len = 0;
            assert_int_equal(sas_verify(&t, &e), want);
            free(tok);
            free(uri);
        }
    }
}

static void verify_odd_inputs(void **state)
{
    struct sas_expect e = {.hosts = hosts_hub, .n_hosts = 1, .path = "", .keys = {K1, NULL}, .now = BEFORE};
    struct sas_token t;
    assert_int_equal(sas_verify(NULL, &e), SAS_MALFORMED);
    assert_int_equal(sas_parse(NODE_DEVICE, strlen(NODE_DEVICE), &t), ERR_OK);
    assert_int_equal(sas_verify(&t, NULL), SAS_MALFORMED);
    /* an se view that disagrees with expiry */
    t.expiry++;
    assert_int_equal(sas_verify(&t, &e), SAS_MALFORMED);
    /* a zeroed token */
    struct sas_token zero = {0};
    assert_int_equal(sas_verify(&zero, &e), SAS_MALFORMED);
    /* NULL path is the hub: only a hub-scope token covers it */
    e.path = NULL;
    assert_int_equal(sas_parse(NODE_DEVICE, strlen(NODE_DEVICE), &t), ERR_OK);
    assert_int_equal(sas_verify(&t, &e), SAS_WRONG_AUDIENCE);
    /* a NULL hosts array with a count is treated as empty */
    e.hosts = NULL;
    assert_int_equal(sas_verify(&t, &e), SAS_WRONG_AUDIENCE);
}

static void verdict_strings(void **state)
{
    const char *seen[5];
    for (int v = SAS_VALID; v <= SAS_BAD_SIGNATURE; v++) {
        seen[v] = sas_verdict_str((enum sas_verdict)v);
        assert_non_null(seen[v]);
        for (int w = 0; w < v; w++)
            assert_string_not_equal(seen[v], seen[w]);
    }
    assert_non_null(sas_verdict_str((enum sas_verdict)99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resource_uri),
        cmocka_unit_test(build_known_answers),
        cmocka_unit_test(build_service_matches_node_fields),
        cmocka_unit_test(build_rejects_bad_keys),
        cmocka_unit_test(parse_table),
        cmocka_unit_test(parse_garbage),
        cmocka_unit_test(verify_table),
        cmocka_unit_test(build_then_verify),
        cmocka_unit_test(verify_odd_inputs),
        cmocka_unit_test(verdict_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
