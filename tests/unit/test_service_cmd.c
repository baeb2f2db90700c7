/* test_service_cmd.c -- unit tests for service/service_cmd: iothub-service's argument parsing, exit statuses
 * and output text (tutorial lines, one-line errors, --json objects, keyless identities), and the send command
 * (properties, ack, feedback wait, AMQP conditions as exit statuses, feedback lines); the job commands and
 * job get --wait's progress lines. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "service_cmd.h"

#define MAX_ARGS 24

/* Splits a space-separated command line (no quoting) in place and parses it. */
static int parse(const char *line, struct service_cmd *cmd, char *err, size_t errlen)
{
    static char storage[1024];
    static char *argv[MAX_ARGS];
    size_t len = strlen(line);
    assert_true(len < sizeof storage);
    memcpy(storage, line, len + 1);
    int argc = 0;
    argv[argc++] = (char *)"iothub-service";
    for (char *p = storage; *p && argc < MAX_ARGS;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    return service_cmd_parse(argc, argv, cmd, err, errlen);
}

static void ok(const char *line, struct service_cmd *cmd)
{
    char err[256] = "";
    int rc = parse(line, cmd, err, sizeof err);
    if (rc)
        fail_msg("\"%s\": %s", line, err);
}

static void bad(const char *line, const char *want_in_err)
{
    struct service_cmd cmd;
    char err[256] = "";
    if (parse(line, &cmd, err, sizeof err) != ERR_INVALID)
        fail_msg("\"%s\" was accepted", line);
    if (!strstr(err, want_in_err))
        fail_msg("\"%s\": error \"%s\" lacks \"%s\"", line, err, want_in_err);
}

static void invoke_defaults(void **state)
{
    struct service_cmd c;
    ok("invoke device1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_INVOKE);
    assert_string_equal(c.device_id, "device1");
    assert_string_equal(c.method, "DeviceMethod");
    assert_string_equal(c.payload, "{\"method_number\":\"42\"}");
    assert_int_equal(c.timeout_s, 60);
    assert_int_equal(c.connect_timeout_s, 0);
    assert_null(c.module_id);
    assert_false(c.json);
}

static void invoke_options(void **state)
{
    struct service_cmd c;
    ok("--connection-string CS invoke d1 reboot --payload={\"a\":1} --timeout=30 --connect-timeout 5 --module m "
       "--json --ca-file ca.pem --url http://127.0.0.1:8080",
       &c);
    assert_string_equal(c.method, "reboot");
    assert_string_equal(c.payload, "{\"a\":1}");
    assert_int_equal(c.timeout_s, 30);
    assert_int_equal(c.connect_timeout_s, 5);
    assert_string_equal(c.module_id, "m");
    assert_true(c.json);
    assert_string_equal(c.connection_string, "CS");
    assert_string_equal(c.ca_file, "ca.pem");
    assert_string_equal(c.url, "http://127.0.0.1:8080");
    ok("invoke -- --odd-device", &c);
    assert_string_equal(c.device_id, "--odd-device");
    ok("invoke d --payload null", &c);
    assert_string_equal(c.payload, "null");
}

static void registry_commands(void **state)
{
    struct service_cmd c;
    ok("device create d1 --primary-key cA== --secondary-key cQ== --disabled", &c);
    assert_int_equal(c.verb, SERVICE_CMD_CREATE);
    assert_false(c.is_module);
    assert_string_equal(c.device_id, "d1");
    assert_string_equal(c.primary_key, "cA==");
    assert_string_equal(c.secondary_key, "cQ==");
    assert_true(c.disabled);
    ok("device list --top 5", &c);
    assert_int_equal(c.verb, SERVICE_CMD_LIST);
    assert_int_equal(c.top, 5);
    assert_null(c.device_id);
    ok("device delete d1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_DELETE);
    ok("device connection-string d1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_CONNECTION_STRING);
    ok("module get d1 m1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_GET);
    assert_true(c.is_module);
    assert_string_equal(c.module_id, "m1");
    ok("module list d1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_LIST);
    assert_string_equal(c.device_id, "d1");
    assert_null(c.module_id);
    ok("module create d1 m1 --primary-key cA==", &c);
    assert_int_equal(c.verb, SERVICE_CMD_CREATE);
}

static void twin_and_query_commands(void **state)
{
    struct service_cmd c;
    ok("twin get d1", &c);
    assert_int_equal(c.verb, SERVICE_CMD_TWIN_GET);
    assert_string_equal(c.device_id, "d1");
    assert_null(c.module_id);
    ok("twin get d1 --module m1", &c);
    assert_string_equal(c.module_id, "m1");
    ok("twin update d1 {\"tags\":{\"a\":1}} --etag AAAAAAAAAAE=", &c);
    assert_int_equal(c.verb, SERVICE_CMD_TWIN_UPDATE);
    assert_string_equal(c.patch, "{\"tags\":{\"a\":1}}");
    assert_string_equal(c.etag, "AAAAAAAAAAE=");
    ok("twin replace d1 {} --module m --json", &c);
    assert_int_equal(c.verb, SERVICE_CMD_TWIN_REPLACE);
    bad("twin update d1 [1]", "JSON object");
    bad("twin update d1", "usage: iothub-service twin");
    bad("twin get", "usage: iothub-service twin");
    bad("twin delete d1", "usage: iothub-service twin");
    bad("twin get d1 --etag x", "--etag does not apply");
    bad("twin get d1 --page-size 3", "--page-size does not apply");
    /* a query is one word with spaces: argv built by hand */
    char *argv[] = {(char *)"iothub-service", (char *)"query", (char *)"SELECT * FROM devices", (char *)"--page-size",
                    (char *)"7", NULL};
    char err[256] = "";
    assert_int_equal(service_cmd_parse(5, argv, &c, err, sizeof err), ERR_OK);
    assert_int_equal(c.verb, SERVICE_CMD_QUERY);
    assert_string_equal(c.query, "SELECT * FROM devices");
    assert_int_equal(c.page_size, 7);
    bad("query", "usage: iothub-service query");
    bad("query a b", "usage: iothub-service query");
    bad("query x --page-size 0", "--page-size needs a whole number");
    bad("query x --module m", "--module does not apply");
}

static void sas_commands(void **state)
{
    struct service_cmd c;
    ok("sas --resource hub.example/devices/d --key cA== --key-name owner --ttl 60", &c);
    assert_int_equal(c.verb, SERVICE_CMD_SAS);
    assert_string_equal(c.resource, "hub.example/devices/d");
    assert_string_equal(c.key, "cA==");
    assert_string_equal(c.key_name, "owner");
    assert_int_equal(c.ttl_s, 60);
    ok("sas --device d1", &c);
    assert_string_equal(c.device_id, "d1");
    assert_int_equal(c.ttl_s, 3600);
    ok("sas --device d1 --module m1", &c);
    assert_string_equal(c.module_id, "m1");
}

static void help_and_version(void **state)
{
    struct service_cmd c;
    ok("--help", &c);
    assert_int_equal(c.verb, SERVICE_CMD_HELP);
    ok("-h", &c);
    assert_int_equal(c.verb, SERVICE_CMD_HELP);
    ok("help", &c);
    assert_int_equal(c.verb, SERVICE_CMD_HELP);
    ok("invoke --help", &c);
    assert_int_equal(c.verb, SERVICE_CMD_HELP);
    ok("--version", &c);
    assert_int_equal(c.verb, SERVICE_CMD_VERSION);
    assert_non_null(strstr(service_cmd_usage(), "6 device not online"));
}

static void rejected(void **state)
{
    bad("", "no command");
    bad("frob", "unknown command");
    bad("invoke", "usage: iothub-service invoke");
    bad("invoke d m extra", "usage");
    bad("invoke d --timeout abc", "--timeout needs a whole number");
    bad("invoke d --timeout -1", "--timeout");
    bad("invoke d --timeout 0", "--timeout needs a whole number from 1");
    bad("invoke d --connect-timeout -1", "--connect-timeout needs a whole number from 0");
    bad("invoke d --timeout", "--timeout needs a value");
    bad("invoke d --json=yes", "--json takes no value");
    bad("invoke d --frobnicate", "unknown option --frobnicate");
    bad("invoke d --top 3", "--top does not apply");
    bad("device", "usage: iothub-service device");
    bad("device rename d1", "usage");
    bad("device create", "usage");
    bad("device list d1", "usage");
    bad("device get d1 --payload 1", "--payload does not apply");
    bad("device list --top 0", "--top");
    bad("module get d1", "usage");
    bad("module create d1 m1 --disabled", "module");
    bad("module list d1 --top 3", "--top does not apply");
    bad("module get d1 m1 --module x", "--module");
    bad("sas", "usage: iothub-service sas");
    bad("sas --resource r", "usage");
    bad("sas --device d --key cA==", "usage");
    bad("sas --resource r --key k --module m", "usage");
    bad("sas --device d --ttl 0", "--ttl");
    bad("invoke a b c d e", "too many arguments");
}

static void exit_statuses(void **state)
{
    struct service_client_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(service_cmd_exit_status(ERR_INVALID, &r), 2);
    assert_int_equal(service_cmd_exit_status(ERR_NOMEM, &r), 1);
    assert_int_equal(service_cmd_exit_status(ERR_MALFORMED, &r), 8);
    r.kind = SERVICE_CLIENT_ANSWERED;
    r.status = 500; /* the device's status does not matter */
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), 0);
    r.kind = SERVICE_CLIENT_TRANSPORT_ERROR;
    r.net = SERVICE_CLIENT_NET_CONNECT;
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), 3);
    r.net = SERVICE_CLIENT_NET_TLS;
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), 3);
    r.net = SERVICE_CLIENT_NET_TIMEOUT;
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), 7);
    r.kind = SERVICE_CLIENT_HUB_ERROR;
    const struct {
        long http, code;
        int want;
    } cases[] = {
        {401, 401002, 4}, {401, 0, 4},   {404, 404001, 5}, {404, 404010, 5}, {404, 0, 5},   {404, 404103, 6},
        {504, 504101, 7}, {504, 0, 7},   {408, 0, 7},      {400, 400004, 8}, {409, 409001, 8}, {429, 429001, 8},
        {500, 0, 8},      {503, 503001, 8}, {403, 403002, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r.http_status = cases[i].http;
        r.error_code = cases[i].code;
        assert_int_equal(service_cmd_exit_status(ERR_OK, &r), cases[i].want);
    }
}

static void check_buf(struct buf *b, const char *want)
{
    char *s = buf_take_str(b);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
    buf_cleanup(b);
}

static void error_lines(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    struct service_client_result r = {.kind = SERVICE_CLIENT_HUB_ERROR, .http_status = 404, .error_code = 404103,
                                      .error_name = (char *)"DeviceNotOnline", .message = (char *)"Not online."};
    assert_int_equal(service_cmd_format_error(ERR_OK, &r, &b), ERR_OK);
    check_buf(&b, "device not online: Not online. (404103 DeviceNotOnline, HTTP 404)");

    struct service_client_result u = {.kind = SERVICE_CLIENT_HUB_ERROR, .http_status = 401,
                                      .message = (char *)"Unauthorized"};
    assert_int_equal(service_cmd_format_error(ERR_OK, &u, &b), ERR_OK);
    check_buf(&b, "unauthorized: Unauthorized (HTTP 401)");

    struct service_client_result t = {.kind = SERVICE_CLIENT_TRANSPORT_ERROR, .net = SERVICE_CLIENT_NET_TLS,
                                      .message = (char *)"SSL certificate problem"};
    assert_int_equal(service_cmd_format_error(ERR_OK, &t, &b), ERR_OK);
    check_buf(&b, "TLS with the hub failed: SSL certificate problem (to trust the emulator's CA, use --ca-file or "
                  "IOTHUB_CA_FILE)");

    struct service_client_result v = {.message = (char *)"payload is not valid JSON"};
    assert_int_equal(service_cmd_format_error(ERR_INVALID, &v, &b), ERR_OK);
    check_buf(&b, "payload is not valid JSON");
}

static void invoke_output(void **state)
{
    struct service_cmd c;
    struct buf b;
    buf_init(&b, 4096);
    ok("invoke device1", &c);
    assert_int_equal(service_cmd_format_invoke_intro(&c, &b), ERR_OK);
    check_buf(&b, "Invoking direct method for device: device1\nMethod name: DeviceMethod\n"
                  "Method payload: {\"method_number\":\"42\"}\n");
    struct service_client_result r = {.kind = SERVICE_CLIENT_ANSWERED, .http_status = 200, .status = 200,
                                      .payload = (char *)"{\"result\":\"ok\"}"};
    assert_int_equal(service_cmd_format_invoke_result(&c, ERR_OK, &r, &b), ERR_OK);
    check_buf(&b, "Response status: 200, payload:\n\t{\"result\":\"ok\"}\n");

    ok("invoke device1 m --module mod1 --json", &c);
    assert_int_equal(service_cmd_format_invoke_intro(&c, &b), ERR_OK);
    assert_int_equal(b.len, 0);
    assert_int_equal(service_cmd_format_invoke_result(&c, ERR_OK, &r, &b), ERR_OK);
    check_buf(&b, "{\"deviceId\":\"device1\",\"moduleId\":\"mod1\",\"methodName\":\"m\",\"status\":200,"
                  "\"payload\":{\"result\":\"ok\"}}\n");

    struct service_client_result e = {.kind = SERVICE_CLIENT_HUB_ERROR, .http_status = 504, .error_code = 504101,
                                      .error_name = (char *)"GatewayTimeout", .message = (char *)"Timed \"out\""};
    assert_int_equal(service_cmd_format_invoke_result(&c, ERR_OK, &e, &b), ERR_OK);
    check_buf(&b, "{\"deviceId\":\"device1\",\"moduleId\":\"mod1\",\"methodName\":\"m\",\"error\":{\"exitStatus\":7,"
                  "\"httpStatus\":504,\"errorCode\":504101,\"errorName\":\"GatewayTimeout\","
                  "\"message\":\"Timed \\\"out\\\"\"}}\n");
}

static void identity_output(void **state)
{
    struct service_client_identity id = {
        .device_id = (char *)"d1", .primary_key = (char *)"SECRET1", .secondary_key = (char *)"SECRET2",
        .status = (char *)"enabled", .etag = (char *)"MA==", .connection_state = (char *)"Disconnected",
        .json = (char *)"{\"deviceId\":\"d1\",\"status\":\"enabled\",\"authentication\":{\"symmetricKey\":"
                        "{\"primaryKey\":\"SECRET1\",\"secondaryKey\":\"SECRET2\"},\"type\":\"sas\"}}"};
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_format_identity(&id, 0, &b), ERR_OK);
    check_buf(&b, "deviceId: d1\nstatus: enabled\nconnectionState: Disconnected\netag: MA==\n");
    assert_int_equal(service_cmd_format_identity(&id, 1, &b), ERR_OK);
    check_buf(&b, "{\"deviceId\":\"d1\",\"status\":\"enabled\",\"authentication\":{\"type\":\"sas\"}}\n");

    struct service_client_identity two[2] = {id, id};
    two[1].device_id = (char *)"d2";
    two[1].module_id = (char *)"m2";
    two[1].status = NULL;
    assert_int_equal(service_cmd_format_list(two, 2, 0, &b), ERR_OK);
    check_buf(&b, "d1\tenabled\tDisconnected\nm2\t-\tDisconnected\n");
    assert_int_equal(service_cmd_format_list(two, 2, 1, &b), ERR_OK);
    char *s = buf_take_str(&b);
    assert_null(strstr(s, "SECRET"));
    assert_int_equal(s[0], '[');
    free(s);
    assert_int_equal(service_cmd_format_list(NULL, 0, 1, &b), ERR_OK);
    check_buf(&b, "[]\n");
}

static void json_output(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_format_json("{\"a\":[1,2],\"b\":{}}", 1, &b), ERR_OK);
    check_buf(&b, "{\"a\":[1,2],\"b\":{}}\n");
    assert_int_equal(service_cmd_format_json("{\"a\":1}", 0, &b), ERR_OK);
    check_buf(&b, "{\n  \"a\": 1\n}\n");
    assert_int_equal(service_cmd_format_json("not json", 0, &b), ERR_MALFORMED);
    buf_cleanup(&b);
}

static void send_command(void **state)
{
    struct service_cmd c;
    ok("send d1 hello --property a=b --property=x=y=z --property e= --ack positive --message-id m1 --expiry 30 "
       "--timeout 5 --amqp-url amqp://127.0.0.1:5672",
       &c);
    assert_int_equal(c.verb, SERVICE_CMD_SEND);
    assert_string_equal(c.device_id, "d1");
    assert_string_equal(c.message, "hello");
    assert_int_equal(c.n_props, 3);
    assert_string_equal(c.prop_keys[0], "a");
    assert_string_equal(c.prop_values[0], "b");
    assert_string_equal(c.prop_keys[1], "x"); /* split at the first '=' */
    assert_string_equal(c.prop_values[1], "y=z");
    assert_string_equal(c.prop_keys[2], "e");
    assert_string_equal(c.prop_values[2], "");
    assert_string_equal(c.ack, "positive");
    assert_string_equal(c.message_id, "m1");
    assert_int_equal(c.expiry_s, 30);
    assert_int_equal(c.timeout_s, 5);
    assert_string_equal(c.amqp_url, "amqp://127.0.0.1:5672");
    assert_false(c.wait_feedback);
    ok("send d1 hi --wait-feedback", &c);
    assert_true(c.wait_feedback);
    assert_string_equal(c.ack, "full"); /* waiting needs feedback asked for */
    ok("send d1 hi", &c);
    assert_null(c.ack);
    bad("send d1", "usage: iothub-service send DEVICE MESSAGE");
    bad("send d1 hi --property novalue", "--property needs KEY=VALUE");
    bad("send d1 hi --property =v", "--property needs KEY=VALUE");
    bad("send d1 hi --ack sometimes", "--ack is none, positive, negative or full");
    bad("send d1 hi --ack none --wait-feedback", "--wait-feedback needs feedback");
    bad("send d1 hi --expiry 0", "--expiry needs a whole number");
    bad("send d1 hi --payload {}", "--payload does not apply");
    bad("invoke d1 --ack full", "--ack does not apply");

    struct service_client_result r = {.kind = SERVICE_CLIENT_HUB_ERROR, .error_name = "amqp:not-found",
                                      .message = "device d1 not found"};
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), SERVICE_CMD_EXIT_NOT_FOUND);
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_format_error(ERR_OK, &r, &b), ERR_OK);
    check_buf(&b, "not found: device d1 not found (amqp:not-found)");
    r.error_name = "amqp:unauthorized-access";
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), SERVICE_CMD_EXIT_UNAUTHORIZED);
    r.error_name = "amqp:resource-limit-exceeded";
    assert_int_equal(service_cmd_exit_status(ERR_OK, &r), SERVICE_CMD_EXIT_HUB);

    ok("send d1 hi", &c);
    assert_int_equal(service_cmd_format_sent(&c, "m1", &b), ERR_OK);
    check_buf(&b, "Sent message m1 to device d1\n");
    const char *rec = "{\"originalMessageId\":\"m1\",\"enqueuedTimeUtc\":\"2026-01-01T00:00:00.000Z\","
                      "\"statusCode\":\"Success\",\"description\":\"Success\",\"deviceId\":\"d1\"}";
    assert_int_equal(service_cmd_format_feedback(&c, rec, &b), ERR_OK);
    check_buf(&b, "Feedback: Success for message m1 (device d1, 2026-01-01T00:00:00.000Z)\n");
    assert_int_equal(service_cmd_format_feedback(&c, "[1]", &b), ERR_MALFORMED);
    buf_cleanup(&b);
    ok("send d1 hi --json", &c);
    assert_int_equal(service_cmd_format_sent(&c, "m1", &b), ERR_OK);
    check_buf(&b, "{\"messageId\":\"m1\",\"deviceId\":\"d1\"}\n");
    assert_int_equal(service_cmd_format_feedback(&c, rec, &b), ERR_OK);
    buf_cleanup(&b);
}

static void job_commands(void **state)
{
    (void)state;
    struct service_cmd c;
    struct service_client_job_spec j;
    ok("job schedule-method j1 --query tags.role='s' --method reboot", &c);
    assert_int_equal(c.verb, SERVICE_CMD_JOB_SCHEDULE_METHOD);
    assert_string_equal(c.job_id, "j1");
    service_cmd_job_spec(&c, &j);
    assert_false(j.twin);
    assert_string_equal(j.query, "tags.role='s'");
    assert_string_equal(j.method_name, "reboot");
    assert_null(j.payload); /* the SDK's default: null, not invoke's tutorial payload */
    assert_null(j.start_time);
    assert_int_equal(j.response_timeout_s, 0);
    assert_int_equal(j.max_execution_s, 0);
    ok("job schedule-method j1 --query=x --method m --payload {\"a\":1} --start 2026-12-01T15:00:00Z "
       "--max-time 600 --response-timeout 20 --connect-timeout 5 --json", &c);
    service_cmd_job_spec(&c, &j);
    assert_string_equal(j.payload, "{\"a\":1}");
    assert_string_equal(j.start_time, "2026-12-01T15:00:00Z");
    assert_int_equal(j.max_execution_s, 600);
    assert_int_equal(j.response_timeout_s, 20);
    assert_int_equal(j.connect_timeout_s, 5);
    assert_true(c.json);
    ok("job schedule-twin j2 --query x --desired {\"k\":1} --tags {\"t\":2}", &c);
    assert_int_equal(c.verb, SERVICE_CMD_JOB_SCHEDULE_TWIN);
    service_cmd_job_spec(&c, &j);
    assert_true(j.twin);
    assert_string_equal(j.desired, "{\"k\":1}");
    assert_string_equal(j.tags, "{\"t\":2}");
    ok("job schedule-twin j2 --query x --tags {}", &c);
    ok("job get j3 --wait", &c);
    assert_int_equal(c.verb, SERVICE_CMD_JOB_GET);
    assert_true(c.wait);
    ok("job cancel j3", &c);
    assert_int_equal(c.verb, SERVICE_CMD_JOB_CANCEL);
    ok("job list", &c);
    assert_int_equal(c.verb, SERVICE_CMD_JOB_LIST);
    assert_null(c.job_type);
    ok("job list --type scheduleUpdateTwin --status running", &c);
    assert_string_equal(c.job_type, "scheduleUpdateTwin");
    assert_string_equal(c.job_status, "running");
    ok("job list --page-size 5", &c);
    assert_int_equal(c.page_size, 5);

    bad("job", "usage: iothub-service job");
    bad("job start j1", "usage: iothub-service job");
    bad("job get", "usage: iothub-service job");
    bad("job list j1", "usage: iothub-service job");
    bad("job schedule-method j1 --method m", "--query");
    bad("job schedule-method j1 --query x", "--method NAME");
    bad("job schedule-method j1 --query x --method m --payload {", "--payload must be JSON");
    bad("job schedule-method j1 --query x --method m --desired {}", "--desired does not apply");
    bad("job schedule-method j1 --query x --method m --max-time 0", "--max-time needs a whole number");
    bad("job schedule-twin j1 --query x", "--desired JSON and/or --tags");
    bad("job schedule-twin j1 --query x --desired [1]", "--desired must be a JSON object");
    bad("job schedule-twin j1 --query x --desired {} --tags 3", "--tags must be a JSON object");
    bad("job schedule-twin j1 --query x --desired {} --method m", "--method does not apply");
    bad("job get j1 --query x", "--query does not apply");
    bad("job cancel j1 --wait", "--wait does not apply");
    bad("job list --type reboot", "--type is scheduleDeviceMethod or scheduleUpdateTwin");
    bad("job list --status done", "--status is queued");
    bad("invoke d1 --query x", "--query does not apply");
}

static void job_progress(void **state)
{
    (void)state;
    struct buf b;
    int final = -1;
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_job_progress("{\"jobId\":\"j\",\"status\":\"running\",\"deviceJobStatistics\":"
                                              "{\"deviceCount\":3,\"failedCount\":1,\"succeededCount\":1}}",
                                              &final, &b),
                     ERR_OK);
    assert_int_equal(final, 0);
    check_buf(&b, "job j: running, 2 of 3 devices done (1 succeeded, 1 failed)");
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_job_progress("{\"jobId\":\"j\",\"status\":\"scheduled\"}", &final, &b), ERR_OK);
    assert_int_equal(final, 0);
    check_buf(&b, "job j: scheduled, 0 of 0 devices done (0 succeeded, 0 failed)");
    const char *completed = "{\"jobId\":\"j\",\"status\":\"completed\"}";
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_job_progress(completed, &final, &b), ERR_OK);
    assert_int_equal(final, 1);
    buf_cleanup(&b);
    assert_int_equal(service_cmd_job_final_status(completed), SERVICE_CMD_EXIT_OK);
    assert_int_equal(service_cmd_job_final_status("{\"status\":\"failed\"}"), SERVICE_CMD_EXIT_HUB);
    assert_int_equal(service_cmd_job_final_status("{\"status\":\"cancelled\"}"), SERVICE_CMD_EXIT_HUB);
    buf_init(&b, 4096);
    assert_int_equal(service_cmd_job_progress("[]", &final, &b), ERR_MALFORMED);
    assert_int_equal(service_cmd_job_progress("{\"status\":3}", &final, &b), ERR_MALFORMED);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(invoke_defaults), cmocka_unit_test(invoke_options),  cmocka_unit_test(registry_commands),
        cmocka_unit_test(sas_commands),    cmocka_unit_test(help_and_version), cmocka_unit_test(rejected),
        cmocka_unit_test(exit_statuses),   cmocka_unit_test(error_lines),     cmocka_unit_test(invoke_output),
        cmocka_unit_test(identity_output),
        cmocka_unit_test(twin_and_query_commands),
        cmocka_unit_test(json_output),
        cmocka_unit_test(send_command),
        cmocka_unit_test(job_commands),
        cmocka_unit_test(job_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
