/* test_service_response.c -- unit tests for service/service_response: method results, both error envelopes
 * (the examples of iothub-protocol.md §4.3, verbatim), identities. Bodies are passed with explicit lengths
 * and copied into exact-size heap buffers, so an overread is caught by AddressSanitizer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "service_response.h"

/* An exact-size, not NUL-terminated copy of s. */
static char *exact(const char *s, size_t *len)
{
    *len = strlen(s);
    char *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    memcpy(p, s, *len);
    return p;
}

static void check_method(const char *body, int want_status, const char *want_payload)
{
    struct service_client_result r;
    memset(&r, 0, sizeof r);
    size_t len;
    char *b = exact(body, &len);
    assert_int_equal(service_response_method(b, len, &r), ERR_OK);
    assert_int_equal(r.kind, SERVICE_CLIENT_ANSWERED);
    assert_int_equal(r.status, want_status);
    assert_string_equal(r.payload, want_payload);
    service_client_result_cleanup(&r);
    free(b);
}

static void method_results(void **state)
{
    check_method("{\"status\":200,\"payload\":{\"filename\":\"logs.zip\"}}", 200, "{\"filename\":\"logs.zip\"}");
    check_method("{\"status\":200,\"payload\":null}", 200, "null");
    check_method("{\"status\":404}", 404, "null");
    check_method("{\"status\":200,\"payload\":\"Input was written to log.\"}", 200, "\"Input was written to log.\"");
    /* the device's JSON is kept byte for byte: number spelling, escapes, nesting, braces inside strings */
    check_method("{ \"payload\" : {\"x\":0.1,\"s\":\"a}b\\\"c]\",\"n\":[1,{\"y\":[]}]} ,\n \"status\" : -1 }", -1,
                 "{\"x\":0.1,\"s\":\"a}b\\\"c]\",\"n\":[1,{\"y\":[]}]}");
    check_method("{\"status\":500,\"payload\":[1.50,2e10]}", 500, "[1.50,2e10]");
    check_method("{\"status\":200,\"payload\":12.50}", 200, "12.50");
    check_method("{\"status\":200,\"payload\":true}", 200, "true");
}

static void method_malformed(void **state)
{
    const char *bad[] = {"", "not json", "[1]", "{\"payload\":1}", "{\"status\":\"200\"}",
                         "{\"status\":1.5}", "{\"status\":99999999999}", "{\"status\":200,\"payload\":{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct service_client_result r;
        memset(&r, 0, sizeof r);
        size_t len;
        char *b = exact(bad[i], &len);
        assert_int_equal(service_response_method(b, len, &r), ERR_MALFORMED);
        assert_non_null(r.message);
        service_client_result_cleanup(&r);
        free(b);
    }
}

struct want_error {
    long http;
    const char *body;
    const char *header;
    long code;
    const char *name;
    const char *message;
};

static void check_error(const struct want_error *w)
{
    struct service_client_result r;
    memset(&r, 0, sizeof r);
    size_t len;
    char *b = exact(w->body, &len);
    assert_int_equal(service_response_error(w->http, b, len, w->header, &r), ERR_OK);
    assert_int_equal(r.kind, SERVICE_CLIENT_HUB_ERROR);
    assert_int_equal(r.http_status, w->http);
    assert_int_equal(r.error_code, w->code);
    if (w->name)
        assert_string_equal(r.error_name, w->name);
    else
        assert_null(r.error_name);
    assert_string_equal(r.message, w->message);
    service_client_result_cleanup(&r);
    free(b);
}

static void envelope_a(void **state)
{
    const struct want_error cases[] = {
        {404,
         "{\"Message\":\"ErrorCode:DeviceNotFound;sensor-thl-001\",\"ExceptionMessage\":\"Tracking "
         "ID:06e0221675514160850421f0b3b787a9-G:0-TimeStamp:10/24/2023 16:57:00\"}",
         NULL, 404001, "DeviceNotFound", "sensor-thl-001"},
        {401,
         "{\"Message\":\"ErrorCode:IotHubUnauthorizedAccess;Unauthorized\",\"ExceptionMessage\":\"Tracking ID:"
         "(tracking id)-TimeStamp:12/14/2016 03:15:17\"}",
         "IotHubUnauthorizedAccess", 401002, "IotHubUnauthorizedAccess", "Unauthorized"},
        {409,
         "{\"Message\":\"ErrorCode:DeviceAlreadyExists;A device with ID 'iotdevice1' is already registered.\", "
         "\"ExceptionMessage\":\"\"}",
         NULL, 409001, "DeviceAlreadyExists", "A device with ID 'iotdevice1' is already registered."},
        {412,
         "{\"Message\":\"ErrorCode:PreconditionFailed;Precondition failed: Device version did not match, "
         "existingVersion:957482805 newVersion:957482804\",\"ExceptionMessage\":\"\"}",
         NULL, 412001, "PreconditionFailed",
         "Precondition failed: Device version did not match, existingVersion:957482805 newVersion:957482804"},
        /* an unknown name keeps code 0; a name without text falls back to the reason phrase */
        {400, "{\"Message\":\"ErrorCode:SomethingNew;details here\"}", NULL, 0, "SomethingNew", "details here"},
        {404, "{\"Message\":\"ErrorCode:ModuleNotFound\"}", NULL, 404010, "ModuleNotFound", "Not Found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_error(&cases[i]);
}

static void envelope_b(void **state)
{
    const struct want_error cases[] = {
        {404,
         "{\"Message\":\"{\\\"errorCode\\\":404103,\\\"trackingId\\\":\\\"fe40f545...-TimeStamp:10/10/2019 "
         "01:48:31\\\",\\\"message\\\":\\\"Timed out waiting for device to connect.\\\",\\\"info\\\":{\\\"timeout\\\":"
         "\\\"00:00:00\\\"},\\\"timestampUtc\\\":\\\"2019-10-10T01:48:31.0924129Z\\\"}\",\"ExceptionMessage\":\"\"}",
         NULL, 404103, "DeviceNotOnline", "Timed out waiting for device to connect."},
        {404,
         "{\"Message\":\"{\\\"errorCode\\\":404103,\\\"trackingId\\\":\\\"b575211f...\\\",\\\"message\\\":\\\"The "
         "operation failed because the requested device isn't online or hasn't registered the direct method "
         "callback.\\\",\\\"info\\\":{},\\\"timestampUtc\\\":\\\"2022-09-12T21:59:47.99936Z\\\"}\","
         "\"ExceptionMessage\":\"\"}",
         "DeviceNotOnline", 404103, "DeviceNotOnline",
         "The operation failed because the requested device isn't online or hasn't registered the direct method "
         "callback."},
        {504,
         "{\"Message\":\"{\\\"errorCode\\\":504101,\\\"trackingId\\\":\\\"40a7dd98...-G:9-TimeStamp:12/03/2019 "
         "15:00:09\\\",\\\"message\\\":\\\"Timed out waiting for the response from device.\\\",\\\"info\\\":{},"
         "\\\"timestampUtc\\\":\\\"2019-12-03T15:00:09.0082523Z\\\"}\",\"ExceptionMessage\":\"\"}",
         NULL, 504101, "GatewayTimeout", "Timed out waiting for the response from device."},
        {400,
         "{\"Message\":\"{\\\"errorCode\\\":400004,\\\"trackingId\\\":\\\"ca2359...-G:14-TimeStamp:12/04/2018 "
         "12:33:53\\\",\\\"message\\\":\\\"responseTimeoutInSeconds must be within [5; 300].\\\","
         "\\\"timestampUtc\\\":\\\"2018-12-04T12:33:53.2091489Z\\\"}\",\"ExceptionMessage\":\"\"}",
         NULL, 400004, "ArgumentInvalid", "responseTimeoutInSeconds must be within [5; 300]."},
        /* the header names the error when the body's code is unknown to the table */
        {400, "{\"Message\":\"{\\\"errorCode\\\":400999,\\\"message\\\":\\\"m\\\"}\"}", "NewThing", 400999,
         "NewThing", "m"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_error(&cases[i]);
}

static void other_error_bodies(void **state)
{
    const struct want_error cases[] = {
        {502, "<html>Bad gateway</html>\r\nmore", NULL, 0, NULL, "<html>Bad gateway</html>"},
        {503, "", "ServiceUnavailable", 503001, "ServiceUnavailable", "Service Unavailable"},
        {429, "", NULL, 0, NULL, "Too Many Requests"},
        {500, "{\"Message\":\"plain text\\twith\\ncontrol\"}", NULL, 0, NULL, "plain text with control"},
        {404, "{\"errorCode\":404001,\"message\":\"bare shape\"}", NULL, 404001, "DeviceNotFound", "bare shape"},
        {400, "{\"Message\":\"{\\\"errorCode\\\":\\\"400004\\\",\\\"message\\\":\\\"s\\\"}\"}", NULL, 400004,
         "ArgumentInvalid", "s"},
        {418, "{\"unrelated\":1}", NULL, 0, NULL, "{\"unrelated\":1}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_error(&cases[i]);

    struct service_client_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(service_response_error(401, NULL, 0, NULL, &r), ERR_OK);
    assert_string_equal(r.message, "Unauthorized");
    service_client_result_cleanup(&r);
}

static void code_table(void **state)
{
    assert_string_equal(service_response_code_name(404103), "DeviceNotOnline");
    assert_string_equal(service_response_code_name(504101), "GatewayTimeout");
    assert_null(service_response_code_name(1));
    assert_int_equal(service_response_name_code("IoTHubUnauthorized"), 401003);
    assert_int_equal(service_response_name_code("nope"), 0);
    assert_int_equal(service_response_name_code(NULL), 0);
}

static const char device_json[] =
    "{\"deviceId\":\"edison1\",\"generationId\":\"635944482332920305\",\"etag\":\"MA==\",\"connectionState\":"
    "\"Disconnected\",\"status\":\"enabled\",\"statusReason\":null,\"connectionStateUpdatedTime\":"
    "\"0001-01-01T00:00:00\",\"statusUpdatedTime\":\"0001-01-01T00:00:00\",\"lastActivityTime\":"
    "\"0001-01-01T00:00:00\",\"cloudToDeviceMessageCount\":0,\"authentication\":{\"symmetricKey\":{\"primaryKey\":"
    "\"cA==\",\"secondaryKey\":\"cQ==\"},\"x509Thumbprint\":{\"primaryThumbprint\":null,\"secondaryThumbprint\":"
    "null},\"type\":\"sas\"},\"capabilities\":{\"iotEdge\":false}}";

static void identity(void **state)
{
    struct service_client_identity id;
    size_t len;
    char *b = exact(device_json, &len);
    assert_int_equal(service_response_identity(b, len, &id), ERR_OK);
    assert_string_equal(id.device_id, "edison1");
    assert_null(id.module_id);
    assert_string_equal(id.primary_key, "cA==");
    assert_string_equal(id.secondary_key, "cQ==");
    assert_string_equal(id.status, "enabled");
    assert_string_equal(id.etag, "MA==");
    assert_string_equal(id.connection_state, "Disconnected");
    assert_string_equal(id.json, device_json);
    service_client_identity_cleanup(&id);
    free(b);

    const char *module = "{\"moduleId\":\"m#1\",\"deviceId\":\"d\",\"managedBy\":null,\"connectionState\":"
                         "\"Connected\",\"authentication\":{\"symmetricKey\":null}}";
    b = exact(module, &len);
    assert_int_equal(service_response_identity(b, len, &id), ERR_OK);
    assert_string_equal(id.module_id, "m#1");
    assert_null(id.primary_key);
    assert_null(id.status);
    assert_string_equal(id.connection_state, "Connected");
    service_client_identity_cleanup(&id);
    free(b);

    const char *bad[] = {"", "[]", "{\"moduleId\":\"m\"}", "{\"deviceId\":7}", "{\"deviceId\":\"d\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = exact(bad[i], &len);
        assert_int_equal(service_response_identity(b, len, &id), ERR_MALFORMED);
        assert_null(id.device_id);
        free(b);
    }
}

static void identity_lists(void **state)
{
    struct service_client_identity *ids = NULL;
    size_t n = 99, len;
    char *b = exact("[{\"deviceId\":\"a\",\"status\":\"enabled\"},{\"deviceId\":\"b\",\"status\":\"disabled\"}]",
                    &len);
    assert_int_equal(service_response_identity_list(b, len, &ids, &n), ERR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0].device_id, "a");
    assert_string_equal(ids[1].status, "disabled");
    service_client_identity_list_free(ids, n);
    free(b);

    b = exact("[]", &len);
    assert_int_equal(service_response_identity_list(b, len, &ids, &n), ERR_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    free(b);

    b = exact("[{\"deviceId\":\"a\"},{\"nope\":1}]", &len);
    assert_int_equal(service_response_identity_list(b, len, &ids, &n), ERR_MALFORMED);
    assert_int_equal(n, 0);
    assert_null(ids);
    free(b);

    b = exact("{\"deviceId\":\"a\"}", &len);
    assert_int_equal(service_response_identity_list(b, len, &ids, &n), ERR_MALFORMED);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(method_results), cmocka_unit_test(method_malformed),  cmocka_unit_test(envelope_a),
        cmocka_unit_test(envelope_b),     cmocka_unit_test(other_error_bodies), cmocka_unit_test(code_table),
        cmocka_unit_test(identity),       cmocka_unit_test(identity_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
