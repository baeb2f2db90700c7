/* test_auth.c -- unit tests for emulator/auth: policy permissions on service routes and device/module
 * CONNECT tokens, with tokens built by common/sas exactly as the SDKs build them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "registry.h"
#include "sas.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define SERVICE_KEY "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY="
#define RR_KEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define RRW_KEY "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="
#define DEVICE_POLICY_KEY "T235A4mNRdgGEEA5eF1Uea1f0htFGCA79H5rj0H0GwI="
#define DEV1_PRIMARY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define DEV1_SECONDARY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define DEV2_PRIMARY "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
#define MOD_PRIMARY "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="

#define NOW 1700000000
#define LATER (NOW + 3600)

static struct auth *new_auth(void)
{
    const char *hosts[] = {"myhub.azure-devices.net"};
    struct auth *a = auth_new(hosts, 1, OWNER_KEY);
    assert_non_null(a);
    return a;
}

/* A service token for host signed with key under policy name. Caller frees. */
static char *service_token(const char *host, const char *key, const char *name, uint64_t se)
{
    char *tok = NULL;
    assert_int_equal(sas_build(host, key, se, name, &tok), ERR_OK);
    return tok;
}

static int check_service(struct auth *a, const char *tok, unsigned perms, char *why)
{
    return auth_check_service(a, tok, perms, NOW, 0, why, 96);
}

static void owner_has_every_service_permission(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *tok = service_token("localhost", OWNER_KEY, "iothubowner", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_OK);
    assert_int_equal(check_service(a, tok, AUTH_REGISTRY_READ, why), ERR_OK);
    assert_int_equal(check_service(a, tok, AUTH_REGISTRY_WRITE, why), ERR_OK);
    assert_int_equal(check_service(a, tok, AUTH_REGISTRY_READ | AUTH_REGISTRY_WRITE, why), ERR_OK);
    free(tok);
    auth_free(a);
}

static void service_policy_is_service_connect_only(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *tok = service_token("myhub.azure-devices.net", SERVICE_KEY, "service", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_OK);
    assert_int_equal(check_service(a, tok, AUTH_REGISTRY_READ, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks RegistryRead");
    assert_int_equal(check_service(a, tok, AUTH_REGISTRY_WRITE, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks RegistryWrite");
    free(tok);
    auth_free(a);
}

static void registry_read_policies(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *rr = service_token("localhost", RR_KEY, "registryRead", LATER);
    char *rrw = service_token("localhost", RRW_KEY, "registryReadWrite", LATER);
    assert_int_equal(check_service(a, rr, AUTH_REGISTRY_READ, why), ERR_OK);
    assert_int_equal(check_service(a, rr, AUTH_REGISTRY_WRITE, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks RegistryWrite");
    assert_int_equal(check_service(a, rr, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks ServiceConnect");
    assert_int_equal(check_service(a, rrw, AUTH_REGISTRY_READ, why), ERR_OK);
    assert_int_equal(check_service(a, rrw, AUTH_REGISTRY_WRITE, why), ERR_OK);
    assert_int_equal(check_service(a, rrw, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    free(rr);
    free(rrw);
    auth_free(a);
}

static void device_token_refused_on_service_route(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *tok = NULL;
    assert_int_equal(sas_build("localhost/devices/device1", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "device tokens are not accepted on service routes");
    free(tok);
    /* the device policy signs a device-scoped token: not the hub, and no ServiceConnect either */
    tok = service_token("localhost", DEVICE_POLICY_KEY, "device", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks ServiceConnect");
    free(tok);
    auth_free(a);
}

static void expired_and_skew(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *tok = service_token("localhost", OWNER_KEY, "iothubowner", NOW - 10);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "expired");
    assert_int_equal(auth_check_service(a, tok, AUTH_SERVICE_CONNECT, NOW, 60, why, sizeof why), ERR_OK);
    free(tok);
    auth_free(a);
}

static void wrong_key_and_bad_inputs(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    char *tok = service_token("localhost", SERVICE_KEY, "iothubowner", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "wrong signature");
    assert_null(strstr(why, "SharedAccessSignature"));
    free(tok);
    tok = service_token("localhost", OWNER_KEY, "nosuchpolicy", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "unknown policy");
    free(tok);
    tok = service_token("otherhub.example.com", OWNER_KEY, "iothubowner", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "wrong audience");
    free(tok);
    assert_int_equal(check_service(a, NULL, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "missing Authorization");
    assert_int_equal(check_service(a, "Bearer eyJ0eXAi", AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "unsupported authorization scheme");
    assert_int_equal(check_service(a, "SharedAccessSignature sr=x", AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "malformed token");
    auth_free(a);
}

static void accepted_host_names(void **state)
{
    struct auth *a = new_auth();
    char why[96];
    const char *hosts[] = {"127.0.0.1", "LOCALHOST", "MyHub.Azure-Devices.Net"};
    for (size_t i = 0; i < 3; i++) {
        char *tok = service_token(hosts[i], OWNER_KEY, "iothubowner", LATER);
        assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_OK);
        free(tok);
    }
    /* a service token scoped below the hub does not cover the hub */
    char *tok = service_token("localhost/devices/device1", OWNER_KEY, "iothubowner", LATER);
    assert_int_equal(check_service(a, tok, AUTH_SERVICE_CONNECT, why), ERR_AUTH);
    assert_string_equal(why, "wrong audience");
    free(tok);
    auth_free(a);
}

static void policy_keys(void **state)
{
    struct auth *a = new_auth();
    assert_string_equal(auth_policy_key(a, "iothubowner"), OWNER_KEY);
    assert_string_equal(auth_policy_key(a, "service"), SERVICE_KEY);
    assert_string_equal(auth_policy_key(a, "registryRead"), RR_KEY);
    assert_string_equal(auth_policy_key(a, "registryReadWrite"), RRW_KEY);
    assert_string_equal(auth_policy_key(a, "device"), DEVICE_POLICY_KEY);
    assert_null(auth_policy_key(a, "nope"));
    assert_null(auth_new(NULL, 0, ""));
    auth_free(a);
    auth_free(NULL);
}

/* ---- device CONNECT ---- */

static struct identity make_identity(const char *dev, const char *mod, char *primary, char *secondary)
{
    struct identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.device_id, sizeof id.device_id, "%s", dev);
    snprintf(id.module_id, sizeof id.module_id, "%s", mod ? mod : "");
    id.primary_key = primary;
    id.secondary_key = secondary;
    id.enabled = true;
    return id;
}

static int check_device(struct auth *a, const struct identity *id, const char *tok, int64_t *exp, char *why)
{
    return auth_check_device(a, id, tok, strlen(tok), NOW, 0, exp, why, 96);
}

static void device_primary_secondary_and_policy(void **state)
{
    struct auth *a = new_auth();
    char why[96], p[] = DEV1_PRIMARY, s[] = DEV1_SECONDARY;
    struct identity id = make_identity("device1", NULL, p, s);
    const char *keys[] = {DEV1_PRIMARY, DEV1_SECONDARY};
    for (size_t i = 0; i < 2; i++) {
        char *tok = NULL;
        int64_t exp = 0;
        assert_int_equal(sas_build("localhost/devices/device1", keys[i], LATER, NULL, &tok), ERR_OK);
        assert_int_equal(check_device(a, &id, tok, &exp, why), ERR_OK);
        assert_int_equal(exp, LATER);
        free(tok);
    }
    char *tok = NULL;
    assert_int_equal(sas_build("localhost/devices/device1", DEVICE_POLICY_KEY, LATER, "device", &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_OK);
    free(tok);
    assert_int_equal(sas_build("localhost/devices/device1", SERVICE_KEY, LATER, "service", &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks DeviceConnect");
    free(tok);
    /* the classic C SDK signs the raw, unencoded sr */
    assert_int_equal(sas_build_raw("myhub.azure-devices.net/devices/device1", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_OK);
    free(tok);
    auth_free(a);
}

static void device_refusals(void **state)
{
    struct auth *a = new_auth();
    char why[96], p[] = DEV1_PRIMARY, s[] = DEV1_SECONDARY;
    struct identity id = make_identity("device1", NULL, p, s);
    char *tok = NULL;
    /* another device's token, signed with that device's key */
    assert_int_equal(sas_build("localhost/devices/device2", DEV2_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    free(tok);
    /* our sr but another device's key */
    assert_int_equal(sas_build("localhost/devices/device1", DEV2_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "wrong signature");
    free(tok);
    /* a segment prefix only: device10 is not device1 */
    assert_int_equal(sas_build("localhost/devices/device10", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "wrong audience");
    free(tok);
    assert_int_equal(sas_build("localhost/devices/device1", DEV1_PRIMARY, NOW - 1, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "expired");
    free(tok);
    assert_int_equal(sas_build("localhost/devices/device1", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    id.enabled = false;
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "identity is disabled");
    assert_int_equal(auth_check_device(a, &id, tok, 0, NOW, 0, NULL, why, sizeof why), ERR_AUTH);
    free(tok);
    assert_int_equal(check_device(a, &id, "not a token", NULL, why), ERR_AUTH);
    assert_string_equal(why, "malformed token");
    auth_free(a);
}

static void module_tokens(void **state)
{
    struct auth *a = new_auth();
    char why[96], p[] = MOD_PRIMARY;
    struct identity id = make_identity("device1", "mod1", p, NULL);
    char *tok = NULL;
    assert_int_equal(sas_build("localhost/devices/device1/modules/mod1", MOD_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_OK);
    free(tok);
    /* the device's own key does not open its module */
    assert_int_equal(sas_build("localhost/devices/device1/modules/mod1", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "wrong signature");
    free(tok);
    /* a policy token scoped to the device covers its modules (segment prefix) */
    assert_int_equal(sas_build("localhost/devices/device1", DEVICE_POLICY_KEY, LATER, "device", &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_OK);
    free(tok);
    /* another module's sr */
    assert_int_equal(sas_build("localhost/devices/device1/modules/mod2", MOD_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_AUTH);
    assert_string_equal(why, "wrong audience");
    free(tok);
    auth_free(a);
}

static void ids_needing_percent_encoding(void **state)
{
    struct auth *a = new_auth();
    char why[96], p[] = DEV1_PRIMARY;
    struct identity id = make_identity("dev#1+x", NULL, p, NULL);
    char *tok = NULL;
    /* Node/Python encode the id ('#' -> %23, '+' -> %2B); compared decoded */
    assert_int_equal(sas_build("localhost/devices/dev#1+x", DEV1_PRIMARY, LATER, NULL, &tok), ERR_OK);
    assert_non_null(strstr(tok, "%23"));
    assert_int_equal(check_device(a, &id, tok, NULL, why), ERR_OK);
    free(tok);
    auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(owner_has_every_service_permission),
        cmocka_unit_test(service_policy_is_service_connect_only),
        cmocka_unit_test(registry_read_policies),
        cmocka_unit_test(device_token_refused_on_service_route),
        cmocka_unit_test(expired_and_skew),
        cmocka_unit_test(wrong_key_and_bad_inputs),
        cmocka_unit_test(accepted_host_names),
        cmocka_unit_test(policy_keys),
        cmocka_unit_test(device_primary_secondary_and_policy),
        cmocka_unit_test(device_refusals),
        cmocka_unit_test(module_tokens),
        cmocka_unit_test(ids_needing_percent_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
