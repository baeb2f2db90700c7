/* test_device_login.c -- unit tests for device/login: the CONNECT client id, username and SAS password are
 * exactly what the official SDKs send (iothub-protocol.md §1.3, §6). The password vectors are the official
 * Node SDK's tokens for the same inputs (made as described in tests/unit/test_sas.c, not by this code). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "login.h"
#include "sas.h"

#define H "myhub.azure-devices.net"
#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SE 1700000000
/* azure-iot-common 1.13.3: SharedAccessSignature.create(encodeUriComponentStrict(H/devices/dev1), undefined, K1, SE) */
#define NODE_DEVICE                                                                                         \
    "SharedAccessSignature sr=" H "%2Fdevices%2Fdev1&sig=i%2BYmMcSSZc4KzBi6ejz3l0iL%2B2sN0CE3q6vSm837h2g%3D" \
    "&se=1700000000"
/* the same for H/devices/dev1/modules/mod1 */
#define NODE_MODULE                                                                                         \
    "SharedAccessSignature sr=" H "%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=kA6xjFLkZvk4Cdh0nD8uWAzassq6PB47f7" \
    "BepMMtmlY%3D&se=1700000000"

static void client_ids(void **state)
{
    char *s = login_client_id("device1", NULL);
    assert_string_equal(s, "device1");
    free(s);
    s = login_client_id("device1", "");
    assert_string_equal(s, "device1");
    free(s);
    s = login_client_id("device1", "module-a");
    assert_string_equal(s, "device1/module-a");
    free(s);
    assert_null(login_client_id(NULL, "m"));
    assert_null(login_client_id("", NULL));
}

static void usernames(void **state)
{
    char *s = login_username("localhost", "device1", NULL);
    assert_string_equal(s, "localhost/device1/?api-version=2021-04-12&DeviceClientType=iothub-emulator-c%2F0.1.0");
    free(s);
    s = login_username(H, "dev1", "mod1");
    assert_string_equal(s, H "/dev1/mod1/?api-version=2021-04-12&DeviceClientType=iothub-emulator-c%2F0.1.0");
    free(s);
    /* Host and ids go in as given (no encoding), like the C and Python SDKs. */
    s = login_username("127.0.0.1", "d+1", NULL);
    assert_string_equal(s, "127.0.0.1/d+1/?api-version=2021-04-12&DeviceClientType=iothub-emulator-c%2F0.1.0");
    free(s);
    assert_null(login_username(NULL, "d", NULL));
    assert_null(login_username("h", "", NULL));
}

static void passwords_match_the_node_sdk(void **state)
{
    char *tok = NULL;
    assert_int_equal(login_password(H, "dev1", NULL, K1, NULL, SE, &tok), ERR_OK);
    assert_string_equal(tok, NODE_DEVICE);
    free(tok);
    assert_int_equal(login_password(H, "dev1", "", K1, "", SE, &tok), ERR_OK);
    assert_string_equal(tok, NODE_DEVICE);
    free(tok);
    assert_int_equal(login_password(H, "dev1", "mod1", K1, NULL, SE, &tok), ERR_OK);
    assert_string_equal(tok, NODE_MODULE);
    free(tok);
}

static void password_with_a_policy_key_names_it(void **state)
{
    char *tok = NULL;
    assert_int_equal(login_password(H, "dev1", NULL, K1, "device", SE, &tok), ERR_OK);
    assert_non_null(strstr(tok, "&skn=device"));
    struct sas_token parsed;
    assert_int_equal(sas_parse(tok, strlen(tok), &parsed), ERR_OK);
    assert_int_equal(parsed.skn.len, 6);
    assert_memory_equal(parsed.skn.p, "device", 6);
    free(tok);
}

static void password_verifies_as_the_hub_would(void **state)
{
    uint64_t now = (uint64_t)time(NULL);
    char *tok = NULL;
    assert_int_equal(login_password("localhost", "device1", NULL, K1, NULL, now + 3600, &tok), ERR_OK);
    struct sas_token parsed;
    assert_int_equal(sas_parse(tok, strlen(tok), &parsed), ERR_OK);
    assert_int_equal(parsed.expiry, now + 3600);
    const char *hosts[] = {"localhost"};
    struct sas_expect expect = {hosts, 1, "/devices/device1", {K1, NULL}, (int64_t)now, 0};
    assert_int_equal(sas_verify(&parsed, &expect), SAS_VALID);
    expect.path = "/devices/device2";
    assert_int_equal(sas_verify(&parsed, &expect), SAS_WRONG_AUDIENCE);
    free(tok);
}

static void password_rejects_bad_input(void **state)
{
    char *tok = (char *)1;
    assert_int_equal(login_password(H, "dev1", NULL, "not base64!", NULL, SE, &tok), ERR_INVALID);
    assert_null(tok);
    assert_int_equal(login_password(H, "dev1", NULL, "", NULL, SE, &tok), ERR_INVALID);
    assert_int_equal(login_password(NULL, "dev1", NULL, K1, NULL, SE, &tok), ERR_INVALID);
    assert_int_equal(login_password(H, NULL, NULL, K1, NULL, SE, &tok), ERR_INVALID);
    assert_null(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_ids),
        cmocka_unit_test(usernames),
        cmocka_unit_test(passwords_match_the_node_sdk),
        cmocka_unit_test(password_with_a_policy_key_names_it),
        cmocka_unit_test(password_verifies_as_the_hub_would),
        cmocka_unit_test(password_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
