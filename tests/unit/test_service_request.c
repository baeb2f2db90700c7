/* test_service_request.c -- unit tests for service/service_request (paths, bodies, headers, UUIDs). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "service_request.h"

#define API "api-version=2021-04-12"

static void check_str(char *got, const char *want)
{
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void method_paths(void **state)
{
    check_str(service_request_method_path("device1", NULL), "/twins/device1/methods?" API);
    check_str(service_request_method_path("a#b?c", NULL), "/twins/a%23b%3Fc/methods?" API);
    check_str(service_request_method_path("d/1 x", "m+1%$'!*"),
              "/twins/d%2F1%20x/modules/m%2B1%25%24%27%21%2A/methods?" API);
    check_str(service_request_method_path("dev-1.a_b~", "mod"), "/twins/dev-1.a_b~/modules/mod/methods?" API);
    assert_null(service_request_method_path("", NULL));
    assert_null(service_request_method_path(NULL, NULL));
    assert_null(service_request_method_path("d", ""));
}

static void registry_paths(void **state)
{
    check_str(service_request_identity_path("a#b", NULL), "/devices/a%23b?" API);
    check_str(service_request_identity_path("d", "m?x"), "/devices/d/modules/m%3Fx?" API);
    check_str(service_request_list_path(NULL, 0), "/devices/?top=1000&" API);
    check_str(service_request_list_path(NULL, 5), "/devices/?top=5&" API);
    check_str(service_request_list_path(NULL, 5000), "/devices/?top=1000&" API);
    check_str(service_request_list_path("d#1", 7), "/devices/d%231/modules?" API);
}

static void check_body(const char *method, const char *payload, int rt, int ct, const char *want)
{
    char err[256] = "";
    char *body = NULL;
    assert_int_equal(service_request_method_body(method, payload, rt, ct, &body, err, sizeof err), ERR_OK);
    check_str(body, want);
}

static void method_bodies(void **state)
{
    check_body("DeviceMethod", "{\"method_number\":\"42\"}", 60, 0,
               "{\"methodName\":\"DeviceMethod\",\"responseTimeoutInSeconds\":60,\"connectTimeoutInSeconds\":0,"
               "\"payload\":{\"method_number\":\"42\"}}");
    check_body("m", NULL, 30, 5,
               "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":30,\"connectTimeoutInSeconds\":5,"
               "\"payload\":null}");
    /* the payload is spliced as given (numbers keep their spelling), only trimmed */
    check_body("m", " \n[0.1, 1e3, {\"a\": \"x\"}]\t\n", 5, 0,
               "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":5,\"connectTimeoutInSeconds\":0,"
               "\"payload\":[0.1, 1e3, {\"a\": \"x\"}]}");
    check_body("m", "\"hello world\"", 5, 0,
               "{\"methodName\":\"m\",\"responseTimeoutInSeconds\":5,\"connectTimeoutInSeconds\":0,"
               "\"payload\":\"hello world\"}");
    check_body("say \"hi\"\\", "42", 5, 0,
               "{\"methodName\":\"say \\\"hi\\\"\\\\\",\"responseTimeoutInSeconds\":5,"
               "\"connectTimeoutInSeconds\":0,\"payload\":42}");
}

static void method_body_errors(void **state)
{
    char err[256] = "";
    char *body = (char *)"untouched";
    assert_int_equal(service_request_method_body("m", "{\"a\":", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_null(body);
    assert_non_null(strstr(err, "payload is not valid JSON"));
    assert_int_equal(service_request_method_body("m", "1 2", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_int_equal(service_request_method_body("m", "", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_int_equal(service_request_method_body("", "1", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "method name"));
    assert_int_equal(service_request_method_body(NULL, "1", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_int_equal(service_request_method_body("m", "1", -1, 0, &body, err, sizeof err), ERR_INVALID);
    assert_int_equal(service_request_method_body("\xff", "1", 5, 0, &body, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "UTF-8"));
}

static void check_identity_body(const char *d, const char *m, const struct service_client_identity_spec *spec,
                                const char *want)
{
    char err[256] = "";
    char *body = NULL;
    assert_int_equal(service_request_identity_body(d, m, spec, &body, err, sizeof err), ERR_OK);
    check_str(body, want);
}

static void identity_bodies(void **state)
{
    check_identity_body("d1", NULL, NULL,
                        "{\"deviceId\":\"d1\",\"status\":\"enabled\",\"authentication\":{\"type\":\"sas\","
                        "\"symmetricKey\":{\"primaryKey\":\"\",\"secondaryKey\":\"\"}}}");
    struct service_client_identity_spec spec = {"cA==", "cQ==", 1};
    check_identity_body("d#1", NULL, &spec,
                        "{\"deviceId\":\"d#1\",\"status\":\"disabled\",\"authentication\":{\"type\":\"sas\","
                        "\"symmetricKey\":{\"primaryKey\":\"cA==\",\"secondaryKey\":\"cQ==\"}}}");
    spec.disabled = 0;
    check_identity_body("d1", "m1", &spec,
                        "{\"deviceId\":\"d1\",\"moduleId\":\"m1\",\"authentication\":{\"type\":\"sas\","
                        "\"symmetricKey\":{\"primaryKey\":\"cA==\",\"secondaryKey\":\"cQ==\"}}}");

    char err[256] = "";
    char *body = NULL;
    spec.disabled = 1;
    assert_int_equal(service_request_identity_body("d1", "m1", &spec, &body, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "module"));
    assert_int_equal(service_request_identity_body("", NULL, NULL, &body, err, sizeof err), ERR_INVALID);
    assert_int_equal(service_request_identity_body("d", "", NULL, &body, err, sizeof err), ERR_INVALID);
    assert_null(body);
}

static void uuids(void **state)
{
    uint8_t zero[16] = {0}, ones[16];
    char out[37];
    memset(ones, 0xff, sizeof ones);
    service_request_uuid(zero, out);
    assert_string_equal(out, "00000000-0000-4000-8000-000000000000");
    service_request_uuid(ones, out);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    uint8_t seq[16];
    for (int i = 0; i < 16; i++)
        seq[i] = (uint8_t)(i * 17);
    service_request_uuid(seq, out);
    assert_string_equal(out, "00112233-4455-4677-8899-aabbccddeeff");
}

static void check_headers(struct curl_slist *h, const char *const *want, size_t n)
{
    size_t i = 0;
    for (struct curl_slist *p = h; p; p = p->next, i++) {
        assert_true(i < n);
        assert_string_equal(p->data, want[i]);
    }
    assert_int_equal(i, n);
}

static void headers(void **state)
{
    struct curl_slist *h = NULL;
    assert_int_equal(service_request_headers("SharedAccessSignature sr=h&sig=s&se=1&skn=p", "rid-1", 1, NULL, &h),
                     ERR_OK);
    const char *const with_body[] = {
        "Authorization: SharedAccessSignature sr=h&sig=s&se=1&skn=p",
        "Accept: application/json",
        "Request-Id: rid-1",
        "User-Agent: iothub-emulator-c/0.1.0",
        "Content-Type: application/json; charset=utf-8",
        "Expect:",
    };
    check_headers(h, with_body, 6);
    curl_slist_free_all(h);

    assert_int_equal(service_request_headers("tok", "rid-2", 0, "\"*\"", &h), ERR_OK);
    const char *const del[] = {
        "Authorization: tok", "Accept: application/json", "Request-Id: rid-2",
        "User-Agent: iothub-emulator-c/0.1.0", "If-Match: \"*\"", "Expect:",
    };
    check_headers(h, del, 6);
    curl_slist_free_all(h);
}

static void endpoint(const char *url, const char *want_host, const char *want_port, int want_tls)
{
    char host[64], port[8];
    int tls = -1;
    if (service_request_amqp_endpoint(url, "myhub.azure-devices.net", host, sizeof host, port, sizeof port, &tls))
        fail_msg("%s refused", url ? url : "(null)");
    assert_string_equal(host, want_host);
    assert_string_equal(port, want_port);
    assert_int_equal(tls, want_tls);
}

static void amqp_endpoints(void **state)
{
    (void)state;
    endpoint(NULL, "myhub.azure-devices.net", "5671", 1);
    endpoint("amqps://localhost", "localhost", "5671", 1);
    endpoint("amqps://localhost:25671/", "localhost", "25671", 1);
    endpoint("amqp://127.0.0.1", "127.0.0.1", "5672", 0);
    endpoint("amqp://[::1]:5672", "::1", "5672", 0);
    const char *bad[] = {"https://localhost", "amqps://", "amqps://h:", "amqps://h:0", "amqps://h:70000",
                         "amqps://h:5x", "amqps://h/path", "amqps://[::1", "amqps://[::1]x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64], port[8];
        int tls;
        if (service_request_amqp_endpoint(bad[i], "h", host, sizeof host, port, sizeof port, &tls) != ERR_INVALID)
            fail_msg("%s accepted", bad[i]);
    }
}

static void check_job_body(const struct service_client_job_spec *j, const char *want)
{
    char err[256] = "", *body = NULL;
    int rc = service_request_job_body(j, &body, err, sizeof err);
    if (rc)
        fail_msg("job body: %s", err);
    assert_string_equal(body, want);
    free(body);
}

static void bad_job_body(const struct service_client_job_spec *j, const char *want_in_err)
{
    char err[256] = "", *body = NULL;
    assert_int_equal(service_request_job_body(j, &body, err, sizeof err), ERR_INVALID);
    assert_null(body);
    if (!strstr(err, want_in_err))
        fail_msg("error \"%s\" lacks \"%s\"", err, want_in_err);
}

static void job_requests(void **state)
{
    (void)state;
    char *p = service_request_job_path("job 1/#", "");
    assert_string_equal(p, "/jobs/v2/job%201%2F%23?api-version=2021-04-12");
    free(p);
    p = service_request_job_path("j1", "/cancel");
    assert_string_equal(p, "/jobs/v2/j1/cancel?api-version=2021-04-12");
    free(p);
    assert_null(service_request_job_path("", ""));
    p = service_request_job_query_path(NULL, NULL);
    assert_string_equal(p, "/jobs/v2/query?api-version=2021-04-12");
    free(p);
    p = service_request_job_query_path("scheduleUpdateTwin", "running");
    assert_string_equal(p, "/jobs/v2/query?api-version=2021-04-12&jobType=scheduleUpdateTwin&jobStatus=running");
    free(p);

    /* The Node JobClient's bodies: defaults null payload, 30 s response timeout, 3600 s, startTime null. */
    struct service_client_job_spec m = {.job_id = "j1", .query = "tags.a = 'b'", .method_name = "reboot"};
    check_job_body(&m, "{\"jobId\":\"j1\",\"type\":\"scheduleDeviceMethod\",\"queryCondition\":\"tags.a = 'b'\","
                       "\"startTime\":null,\"maxExecutionTimeInSeconds\":3600,\"cloudToDeviceMethod\":"
                       "{\"methodName\":\"reboot\",\"payload\":null,\"responseTimeoutInSeconds\":30}}");
    m.payload = " [1, {\"x\": \"y\"}] ";
    m.start_time = "2026-12-01T15:00:00Z";
    m.max_execution_s = 60;
    m.response_timeout_s = 10;
    m.connect_timeout_s = 5;
    check_job_body(&m, "{\"jobId\":\"j1\",\"type\":\"scheduleDeviceMethod\",\"queryCondition\":\"tags.a = 'b'\","
                       "\"startTime\":\"2026-12-01T15:00:00Z\",\"maxExecutionTimeInSeconds\":60,"
                       "\"cloudToDeviceMethod\":{\"methodName\":\"reboot\",\"payload\":[1,{\"x\":\"y\"}],"
                       "\"responseTimeoutInSeconds\":10,\"connectTimeoutInSeconds\":5}}");
    struct service_client_job_spec t = {.job_id = "j2", .twin = 1, .query = "*", .desired = "{\"k\":1}",
                                        .tags = "{\"t\":\"v\"}"};
    check_job_body(&t, "{\"jobId\":\"j2\",\"type\":\"scheduleUpdateTwin\",\"queryCondition\":\"*\","
                       "\"startTime\":null,\"maxExecutionTimeInSeconds\":3600,\"updateTwin\":"
                       "{\"tags\":{\"t\":\"v\"},\"properties\":{\"desired\":{\"k\":1}}}}");
    t.tags = NULL;
    check_job_body(&t, "{\"jobId\":\"j2\",\"type\":\"scheduleUpdateTwin\",\"queryCondition\":\"*\","
                       "\"startTime\":null,\"maxExecutionTimeInSeconds\":3600,\"updateTwin\":"
                       "{\"properties\":{\"desired\":{\"k\":1}}}}");

    struct service_client_job_spec b = m;
    b.job_id = "";
    bad_job_body(&b, "the job id is empty");
    b = m;
    b.query = NULL;
    bad_job_body(&b, "the query condition is empty");
    b = m;
    b.method_name = "";
    bad_job_body(&b, "the method name is empty");
    b = m;
    b.method_name = "\xc3";
    bad_job_body(&b, "the method name is not valid UTF-8");
    b = m;
    b.payload = "{";
    bad_job_body(&b, "--payload must be JSON");
    b = m;
    b.start_time = "\xff";
    bad_job_body(&b, "valid UTF-8");
    b = t;
    b.desired = "[1]";
    bad_job_body(&b, "--desired must be a JSON object");
    b = t;
    b.desired = NULL;
    bad_job_body(&b, "--desired JSON and/or --tags JSON");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(method_paths),    cmocka_unit_test(registry_paths), cmocka_unit_test(method_bodies),
        cmocka_unit_test(method_body_errors), cmocka_unit_test(identity_bodies), cmocka_unit_test(uuids),
        cmocka_unit_test(headers),
        cmocka_unit_test(amqp_endpoints),
        cmocka_unit_test(job_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
