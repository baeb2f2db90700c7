/* test_ehauth.c -- unit tests for emulator/amqp/ehauth: Event Hubs SAS tokens as @azure/core-amqp and pyamqp
 * build them (HMAC keyed with the key string over urlencoded audience + "\n" + se), refused when signed the
 * IoT Hub way, with a wrong audience, policy or expiry; the redirect samples' IoT Hub token for
 * {host}/messages/events; audience recognition. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"
#include "base64.h"
#include "ehauth.h"
#include "err.h"
#include "sas.h"
#include "url.h"

#define OWNER "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define NOW 1700000000

static struct auth *A;
static const char *const hosts[] = {"localhost", "127.0.0.1", "myhub.azure-devices.net"};
static const char *const names[] = {"myhub", "localhost"};

static struct ehauth ctx(void)
{
    return (struct ehauth){.auth = A, .hosts = hosts, .n_hosts = 3, .entities = names, .n_entities = 2};
}

/* "SharedAccessSignature sr=...&sig=...&se=...&skn=..." signed with the key string (Event Hubs style). */
static char *eh_token(const char *audience, const char *key, const char *skn, long long se)
{
    char *sr = url_encode(audience, strlen(audience));
    char msg[512];
    snprintf(msg, sizeof msg, "%s\n%lld", sr, se);
    unsigned char mac[32];
    size_t mac_len = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key), (unsigned char *)msg, strlen(msg),
                              mac, sizeof mac, &mac_len));
    char *b64 = base64_encode(mac, mac_len);
    char *sig = url_encode(b64, strlen(b64));
    char *out = malloc(1024);
    snprintf(out, 1024, "SharedAccessSignature sr=%s&sig=%s&se=%lld&skn=%s", sr, sig, se, skn);
    free(sr);
    free(b64);
    free(sig);
    return out;
}

static int setup(void **state)
{
    A = auth_new((const char *[]){"myhub.azure-devices.net"}, 1, OWNER);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    auth_free(A);
    return 0;
}

static int verify(const char *aud, const char *tok, char *norm, char *why)
{
    struct ehauth e = ctx();
    int64_t expiry = 0;
    return ehauth_verify(&e, aud, strlen(aud), tok, strlen(tok), NOW, 0, &expiry, norm, why, 160);
}

static void node_and_python_tokens(void **state)
{
    char norm[EHAUTH_MAX_NORM], why[160];
    /* Node: one token per link audience, port included. */
    const char *aud = "sb://localhost:5671/myhub/$management";
    char *t = eh_token(aud, OWNER, "iothubowner", NOW + 3600);
    assert_int_equal(verify(aud, t, norm, why), ERR_OK);
    assert_string_equal(norm, "sb://localhost/myhub");
    free(t);
    aud = "sb://localhost:5671/myhub/ConsumerGroups/$default/Partitions/0";
    t = eh_token(aud, OWNER, "iothubowner", NOW + 3600);
    assert_int_equal(verify(aud, t, norm, why), ERR_OK);
    free(t);
    /* Python: entity-level, covering deeper names too; case-insensitive. */
    t = eh_token("sb://LOCALHOST/MyHub", OWNER, "iothubowner", NOW + 60);
    assert_int_equal(verify("sb://localhost/myhub", t, norm, why), ERR_OK);
    assert_int_equal(verify("sb://localhost/myhub/ConsumerGroups/x/Partitions/1", t, norm, why), ERR_OK);
    assert_int_equal(verify("sb://localhost/myhubX", t, norm, why), ERR_AUTH);
    free(t);
    /* The service policy (ServiceConnect) with its published key. */
    t = eh_token("sb://localhost/myhub", "wlm7/WzL2F/6TlYJAcyi2qxf7hvJEmOAWEe1qWLyOqY=", "service", NOW + 60);
    assert_int_equal(verify("sb://localhost/myhub", t, norm, why), ERR_OK);
    free(t);
}

static void refusals(void **state)
{
    char norm[EHAUTH_MAX_NORM], why[160];
    const char *aud = "sb://localhost/myhub";
    char *t = eh_token(aud, OWNER, "iothubowner", NOW - 1);
    assert_int_equal(verify(aud, t, norm, why), ERR_AUTH);
    assert_string_equal(why, "expired");
    free(t);
    t = eh_token(aud, "c29tZSBvdGhlciBrZXkgb2YgMzIgYnl0ZXMhISEhISE=", "iothubowner", NOW + 60);
    assert_int_equal(verify(aud, t, norm, why), ERR_AUTH);
    assert_non_null(strstr(why, "signature"));
    free(t);
    t = eh_token(aud, "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8=", "registryRead", NOW + 60);
    assert_int_equal(verify(aud, t, norm, why), ERR_AUTH);
    assert_string_equal(why, "policy lacks ServiceConnect");
    free(t);
    t = eh_token(aud, OWNER, "nobody", NOW + 60);
    assert_int_equal(verify(aud, t, norm, why), ERR_AUTH);
    free(t);
    t = eh_token("sb://elsewhere/myhub", OWNER, "iothubowner", NOW + 60);
    assert_int_equal(verify("sb://elsewhere/myhub", t, norm, why), ERR_AUTH);
    free(t);
    t = eh_token("sb://localhost/otherhub", OWNER, "iothubowner", NOW + 60);
    assert_int_equal(verify("sb://localhost/otherhub", t, norm, why), ERR_AUTH);
    free(t);
    /* Signed the IoT Hub way (base64-decoded key): not an Event Hubs signature. */
    char *iot = NULL;
    assert_int_equal(sas_build("sb://localhost/myhub", OWNER, NOW + 60, "iothubowner", &iot), ERR_OK);
    assert_int_equal(verify(aud, iot, norm, why), ERR_AUTH);
    free(iot);
    assert_int_equal(verify(aud, "Bearer abc", norm, why), ERR_AUTH);
    assert_int_equal(verify(aud, "SharedAccessSignature sr=x", norm, why), ERR_AUTH);
}

static void redirect_sample_token(void **state)
{
    struct ehauth e = ctx();
    char norm[EHAUTH_MAX_NORM], why[160];
    int64_t expiry = 0;
    char *t = NULL;
    assert_int_equal(sas_build("localhost/messages/events", OWNER, NOW + 300, "iothubowner", &t), ERR_OK);
    assert_int_equal(ehauth_verify_events_token(&e, t, strlen(t), NOW, 0, &expiry, norm, why, sizeof why), ERR_OK);
    assert_int_equal(expiry, NOW + 300);
    assert_string_equal(norm, "localhost");
    free(t);
    assert_int_equal(sas_build("localhost/devices/d1", OWNER, NOW + 300, "iothubowner", &t), ERR_OK);
    assert_int_equal(ehauth_verify_events_token(&e, t, strlen(t), NOW, 0, &expiry, norm, why, sizeof why), ERR_AUTH);
    free(t);
    assert_int_equal(sas_build("localhost/messages/events", "T235A4mNRdgGEEA5eF1Uea1f0htFGCA79H5rj0H0GwI=", NOW + 300,
                               "device", &t),
                     ERR_OK);
    assert_int_equal(ehauth_verify_events_token(&e, t, strlen(t), NOW, 0, &expiry, norm, why, sizeof why), ERR_AUTH);
    free(t);
}

static void audiences(void **state)
{
    struct ehauth e = ctx();
    const char *yes[] = {"sb://localhost/myhub", "sb://localhost:5671/myhub/$management", "amqps://127.0.0.1/MYHUB/x",
                         "sb://myhub.azure-devices.net/localhost"};
    const char *no[] = {"localhost", "https://localhost", "sb://localhost/", "sb://localhost/other",
                        "sb://other/myhub", "sb://localhost:123456/myhub"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(ehauth_is_audience(&e, yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(ehauth_is_audience(&e, no[i], strlen(no[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_and_python_tokens),
        cmocka_unit_test(refusals),
        cmocka_unit_test(redirect_sample_token),
        cmocka_unit_test(audiences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
