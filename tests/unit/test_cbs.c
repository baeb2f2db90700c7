/* test_cbs.c -- emulator/amqp/cbs: put-token verification (audience forms the SDKs send, wrong host, wrong key,
 * expired, no ServiceConnect, device tokens, AAD tokens, embedded NUL) and the claims table (renewal keeps the
 * slot, expiry drops it, the table's limit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "cbs.h"
#include "err.h"
#include "sas.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define READ_KEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define NOW 1800000000

static struct auth *A;

static int setup(void **state)
{
    const char *hosts[] = {"myhub.azure-devices.net"};
    A = auth_new(hosts, 1, OWNER_KEY);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    auth_free(A);
    return 0;
}

static char *tok(const char *sr, const char *policy, const char *key, uint64_t se)
{
    char *t = NULL;
    assert_int_equal(sas_build_raw(sr, key, se, policy, &t), ERR_OK);
    return t;
}

static int verify(const char *aud, const char *t, int64_t *exp, char *norm, char *why)
{
    return cbs_verify(A, aud, aud ? strlen(aud) : 0, t, strlen(t), NOW, 0, exp, norm, why, 160);
}

static void test_verify(void **state)
{
    int64_t exp;
    char norm[CBS_MAX_AUDIENCE], why[160];
    char *t = tok("myhub.azure-devices.net", "iothubowner", OWNER_KEY, NOW + 60);
    const char *good[] = {"myhub.azure-devices.net", "https://myhub.azure-devices.net",
                          "amqps://MyHub.azure-devices.net/", "sb://myhub.azure-devices.net"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(verify(good[i], t, &exp, norm, why), ERR_OK);
        assert_int_equal(exp, NOW + 60);
        assert_string_equal(norm, "myhub.azure-devices.net");
    }
    assert_int_equal(verify(NULL, t, &exp, norm, why), ERR_OK); /* SASL PLAIN: no audience to compare */
    assert_int_equal(verify("otherhub.azure-devices.net", t, &exp, norm, why), ERR_AUTH);
    assert_int_equal(verify("myhub.azure-devices.net/devices/d1", t, &exp, norm, why), ERR_AUTH);
    free(t);
    t = tok("myhub.azure-devices.net", "iothubowner", READ_KEY, NOW + 60);
    assert_int_equal(verify("myhub.azure-devices.net", t, &exp, norm, why), ERR_AUTH);
    assert_string_equal(why, "wrong signature");
    free(t);
    t = tok("myhub.azure-devices.net", "iothubowner", OWNER_KEY, NOW - 1);
    assert_int_equal(verify("myhub.azure-devices.net", t, &exp, norm, why), ERR_AUTH);
    assert_string_equal(why, "expired");
    free(t);
    t = tok("myhub.azure-devices.net", "registryRead", READ_KEY, NOW + 60);
    assert_int_equal(verify("myhub.azure-devices.net", t, &exp, norm, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks ServiceConnect");
    free(t);
    t = tok("myhub.azure-devices.net/devices/d1", NULL, OWNER_KEY, NOW + 60);
    assert_int_equal(verify("myhub.azure-devices.net", t, &exp, norm, why), ERR_AUTH);
    free(t);
    assert_int_equal(verify("myhub.azure-devices.net", "Bearer eyJ0", &exp, norm, why), ERR_AUTH);
    assert_non_null(strstr(why, "Azure AD"));
    assert_int_equal(cbs_verify(A, "h", 1, "SharedAccessSignature sr=a\0b", 28, NOW, 0, &exp, norm, why, 160),
                     ERR_AUTH);
}

static void test_claims(void **state)
{
    struct cbs_claims t;
    memset(&t, 0, sizeof t);
    assert_int_equal(cbs_claims_valid(&t, NOW, 0), -1);
    assert_int_equal(cbs_claims_next_expiry(&t, 0), INT64_MAX);
    int s = cbs_claims_put(&t, "hub", NOW + 10);
    assert_true(s >= 0);
    assert_int_equal(cbs_claims_put(&t, "hub", NOW + 100), s); /* a renewal keeps its slot */
    assert_int_equal(cbs_claims_next_expiry(&t, 5), NOW + 105);
    assert_int_equal(cbs_claims_valid(&t, NOW + 100, 0), s);
    assert_int_equal(cbs_claims_expire(&t, NOW + 100, 0), 0u);
    assert_int_equal(cbs_claims_expire(&t, NOW + 101, 0), 1u << s);
    assert_int_equal(cbs_claims_valid(&t, NOW, 0), -1);
    char name[16];
    for (int i = 0; i < CBS_MAX_CLAIMS; i++) {
        snprintf(name, sizeof name, "h%d", i);
        assert_true(cbs_claims_put(&t, name, NOW + 10) >= 0);
    }
    assert_int_equal(cbs_claims_put(&t, "one-too-many", NOW + 10), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_claims),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
