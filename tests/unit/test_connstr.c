/* test_connstr.c -- unit tests for common/connstr: every connection-string form the SDKs accept, the SDK
 * splitting rules (first '=', later duplicates win, empty segments and unknown names ignored), each error
 * message (never quoting a key or a signature), and canonical formatting. Every parse runs on a copy that
 * ends at a PROT_NONE guard page (guard_page.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "connstr.h"
#include "err.h"
#include "guard_page.h"

#define HOST "myhub.azure-devices.net"
#define KEY1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY2 "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA="
#define KEYS "ZW11bGF0b3Itc2VydmljZS1wb2xpY3kta2V5LTAwMDE="
#define TOKEN                                                                                             \
    "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2" \
    "sN0CE3q6vSm837h2g%3D&se=1700000000"

struct connstr_vector {
    const char *name;
    const char *text;
    int rc;
    enum connstr_kind kind;
    const char *host, *gateway, *device, *module, *key_name, *key, *signature;
};

static const struct connstr_vector cs_valid[] = {
    {"device", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1, ERR_OK, CONNSTR_DEVICE, HOST,
     NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"module", "HostName=" HOST ";DeviceId=dev1;ModuleId=mod1;SharedAccessKey=" KEY1, ERR_OK,
     CONNSTR_MODULE, HOST, NULL, "dev1", "mod1", NULL, KEY1, NULL},
    {"device with SharedAccessSignature", "HostName=" HOST ";DeviceId=dev1;SharedAccessSignature=" TOKEN,
     ERR_OK, CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, NULL, TOKEN},
    {"module with SharedAccessSignature",
     "HostName=" HOST ";DeviceId=dev1;ModuleId=m;SharedAccessSignature=" TOKEN, ERR_OK,
     CONNSTR_MODULE, HOST, NULL, "dev1", "m", NULL, NULL, TOKEN},
    {"GatewayHostName", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1 ";GatewayHostName=localhost",
     ERR_OK, CONNSTR_DEVICE, HOST, "localhost", "dev1", NULL, NULL, KEY1, NULL},
    {"service", "HostName=" HOST ";SharedAccessKeyName=iothubowner;SharedAccessKey=" KEYS, ERR_OK,
     CONNSTR_SERVICE, HOST, NULL, NULL, NULL, "iothubowner", KEYS, NULL},
    {"policy acting as device", "HostName=" HOST ";DeviceId=d;SharedAccessKeyName=device;SharedAccessKey=" KEYS,
     ERR_OK, CONNSTR_DEVICE, HOST, NULL, "d", NULL, "device", KEYS, NULL},
    {"fields in any order", "SharedAccessKey=" KEY2 ";DeviceId=dev1;HostName=" HOST, ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY2, NULL},
    {"later duplicate wins", "HostName=a.b;DeviceId=x;DeviceId=dev1;SharedAccessKey=" KEY2
     ";HostName=" HOST ";SharedAccessKey=" KEY1, ERR_OK, CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL,
     KEY1, NULL},
    {"key ending in '=' (split on the first '=')", "HostName=" HOST ";DeviceId=d;SharedAccessKey=Zg==", ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "d", NULL, NULL, "Zg==", NULL},
    {"trailing and doubled ';'", ";HostName=" HOST ";;DeviceId=dev1;SharedAccessKey=" KEY1 ";;", ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"unknown fields ignored", "HostName=" HOST ";Foo=bar;DeviceId=dev1;UseProvisioning=true;SharedAccessKey=" KEY1,
     ERR_OK, CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"empty value ignored, earlier value kept (Node)", "HostName=" HOST ";DeviceId=dev1;DeviceId=;SharedAccessKey=" KEY1,
     ERR_OK, CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"empty name ignored", "HostName=" HOST ";=x;DeviceId=dev1;SharedAccessKey=" KEY1, ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"x509=false ignored", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1 ";x509=false", ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "dev1", NULL, NULL, KEY1, NULL},
    {"value containing '='", "HostName=" HOST ";DeviceId=a=b;SharedAccessKey=" KEY1, ERR_OK,
     CONNSTR_DEVICE, HOST, NULL, "a=b", NULL, NULL, KEY1, NULL},
};

struct connstr_error {
    const char *name;
    const char *text;
    const char *err; /* the exact message */
};

static const struct connstr_error cs_invalid[] = {
    {"empty", "", "missing HostName"},
    {"missing HostName", "DeviceId=dev1;SharedAccessKey=" KEY1, "missing HostName"},
    {"field names are case-sensitive", "hostname=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1,
     "missing HostName"},
    {"missing DeviceId and SharedAccessKeyName", "HostName=" HOST ";SharedAccessKey=" KEY1,
     "missing DeviceId or SharedAccessKeyName"},
    {"ModuleId without DeviceId", "HostName=" HOST ";ModuleId=m;SharedAccessKeyName=s;SharedAccessKey=" KEY1,
     "ModuleId without DeviceId"},
    {"no key nor signature", "HostName=" HOST ";DeviceId=dev1",
     "missing SharedAccessKey or SharedAccessSignature"},
    {"both key and signature", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1
     ";SharedAccessSignature=" TOKEN, "both SharedAccessKey and SharedAccessSignature given"},
    {"service with a signature only", "HostName=" HOST ";SharedAccessKeyName=s;SharedAccessSignature=" TOKEN,
     "a service connection string needs SharedAccessKey"},
    {"key not base64", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=secret-key-not-b64!",
     "SharedAccessKey is not valid base64"},
    {"key with bad length", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=AAECAwQFBgcI=",
     "SharedAccessKey is not valid base64"},
    {"signature not a token", "HostName=" HOST ";DeviceId=dev1;SharedAccessSignature=sr=secret-sig",
     "SharedAccessSignature is not a valid SAS token"},
    {"x509=true", "HostName=" HOST ";DeviceId=dev1;x509=true", "x509=true is not supported"},
    {"x509=TRUE with a key", "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1 ";x509=TRUE",
     "x509=true is not supported"},
    {"segment without '='", "HostName=" HOST ";DeviceId;SharedAccessKey=" KEY1,
     "a segment has no '='"},
    {"garbage", "secret-garbage", "a segment has no '='"},
};

static void expect_str(const char *got, const char *want, const char *what, const char *vector)
{
    if (!want && !got)
        return;
    if (!want || !got || strcmp(got, want) != 0)
        fail_msg("%s: %s is \"%s\", want \"%s\"", vector, what, got ? got : "(null)", want ? want : "(null)");
}

/* Parses text from a guard-page copy, checks the result code, and returns the parse result in *cs. */
static void run_vector(const char *name, const char *text, int want, struct connstr *cs, char *err,
                       size_t errlen)
{
    struct guard_page g;
    size_t len = strlen(text);
    const char *copy = guard_page_copy(&g, text, len);
    assert_non_null(copy);
    int rc = connstr_parse(copy, len, cs, err, errlen);
    guard_page_free(&g);
    if (rc != want)
        fail_msg("%s: rc %d, want %d (%s)", name, rc, want, err);
}

static void parse_valid(void **state)
{
    for (size_t i = 0; i < sizeof(cs_valid) / sizeof(cs_valid[0]); i++) {
        const struct connstr_vector *v = &cs_valid[i];
        struct connstr cs;
        char err[128];
        run_vector(v->name, v->text, v->rc, &cs, err, sizeof(err));
        assert_string_equal(err, "");
        if (cs.kind != v->kind)
            fail_msg("%s: kind %d, want %d", v->name, cs.kind, v->kind);
        expect_str(cs.host_name, v->host, "HostName", v->name);
        expect_str(cs.gateway_host_name, v->gateway, "GatewayHostName", v->name);
        expect_str(cs.device_id, v->device, "DeviceId", v->name);
        expect_str(cs.module_id, v->module, "ModuleId", v->name);
        expect_str(cs.key_name, v->key_name, "SharedAccessKeyName", v->name);
        expect_str(cs.key, v->key, "SharedAccessKey", v->name);
        expect_str(cs.signature, v->signature, "SharedAccessSignature", v->name);
        connstr_cleanup(&cs);
        assert_null(cs.host_name);
    }
}

/* The value of field name= in text (up to ';'), or NULL. */
static const char *value_of(const char *text, const char *name, size_t *len)
{
    const char *p = strstr(text, name);
    if (!p)
        return NULL;
    p += strlen(name);
    *len = strcspn(p, ";");
    return p;
}

static int contains(const char *hay, const char *needle, size_t len)
{
    size_t hay_len = strlen(hay);
    for (size_t i = 0; len && i + len <= hay_len; i++) {
        if (memcmp(hay + i, needle, len) == 0)
            return 1;
    }
    return 0;
}

static void parse_invalid(void **state)
{
    for (size_t i = 0; i < sizeof(cs_invalid) / sizeof(cs_invalid[0]); i++) {
        const struct connstr_error *v = &cs_invalid[i];
        struct connstr cs;
        char err[128];
        run_vector(v->name, v->text, ERR_INVALID, &cs, err, sizeof(err));
        expect_str(err, v->err, "message", v->name);
        assert_null(strchr(err, '\n'));
        /* zeroed on failure */
        assert_null(cs.host_name);
        assert_null(cs.device_id);
        assert_null(cs.key);
        assert_null(cs.signature);
        /* never quotes a secret */
        static const char *const secret_fields[] = {"SharedAccessKey=", "SharedAccessSignature="};
        for (size_t f = 0; f < 2; f++) {
            size_t slen = 0;
            const char *secret = value_of(v->text, secret_fields[f], &slen);
            if (secret && slen > 22 && memcmp(secret, "SharedAccessSignature ", 22) == 0) {
                secret += 22; /* the token's fixed prefix is not secret, its fields are */
                slen -= 22;
            }
            if (secret && contains(err, secret, slen < 6 ? slen : 6))
                fail_msg("%s: message \"%s\" quotes a secret", v->name, err);
        }
        assert_false(contains(err, "secret", 6));
        connstr_cleanup(&cs);
    }
}

static void parse_edge_arguments(void **state)
{
    struct connstr cs;
    char err[8];
    /* a short err buffer is truncated, still NUL-terminated */
    assert_int_equal(connstr_parse("DeviceId=x", 10, &cs, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    /* err may be NULL */
    assert_int_equal(connstr_parse("DeviceId=x", 10, &cs, NULL, 0), ERR_INVALID);
    assert_int_equal(connstr_parse(NULL, 0, &cs, NULL, 0), ERR_INVALID);
    assert_int_equal(connstr_parse(NULL, 5, &cs, NULL, 0), ERR_INVALID);
    /* len is honoured: the key after len is not seen */
    const char *text = "HostName=h;DeviceId=d;SharedAccessKey=" KEY1;
    assert_int_equal(connstr_parse(text, strlen(text) - strlen(KEY1) - 1, &cs, NULL, 0), ERR_INVALID);
    /* an embedded NUL is refused rather than silently cutting a value short */
    static const char with_nul[] = "HostName=h;DeviceId=d\0x;SharedAccessKey=" KEY1;
    char msg[128];
    assert_int_equal(connstr_parse(with_nul, sizeof(with_nul) - 1, &cs, msg, sizeof(msg)), ERR_INVALID);
    assert_string_equal(msg, "the connection string contains a NUL byte");
    connstr_cleanup(NULL);
}

static void format_canonical(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"SharedAccessKey=" KEY1 ";GatewayHostName=gw;DeviceId=dev1;Foo=1;HostName=" HOST,
         "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" KEY1 ";GatewayHostName=gw"},
        {"ModuleId=m;HostName=" HOST ";SharedAccessSignature=" TOKEN ";DeviceId=d",
         "HostName=" HOST ";DeviceId=d;ModuleId=m;SharedAccessSignature=" TOKEN},
        {"SharedAccessKey=" KEYS ";SharedAccessKeyName=service;HostName=" HOST,
         "HostName=" HOST ";SharedAccessKeyName=service;SharedAccessKey=" KEYS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct connstr cs, again;
        assert_int_equal(connstr_parse(cases[i].in, strlen(cases[i].in), &cs, NULL, 0), ERR_OK);
        char *text = connstr_format(&cs);
        assert_non_null(text);
        assert_string_equal(text, cases[i].out);
        /* formatting is a fixed point */
        assert_int_equal(connstr_parse(text, strlen(text), &again, NULL, 0), ERR_OK);
        char *text2 = connstr_format(&again);
        assert_string_equal(text2, text);
        free(text2);
        free(text);
        connstr_cleanup(&again);
        connstr_cleanup(&cs);
    }
    struct connstr empty = {0};
    char *text = connstr_format(&empty);
    assert_string_equal(text, "");
    free(text);
    assert_null(connstr_format(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_valid),
        cmocka_unit_test(parse_invalid),
        cmocka_unit_test(parse_edge_arguments),
        cmocka_unit_test(format_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
