/* test_config.c -- unit tests for emulator/config: defaults, every flag in both forms, IOTHUB_EMULATOR_*
 * variables, precedence, hostname lists, and the errors a user can make. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"

extern char **environ;

/* ---------------------------------------------------------------- helpers */

static void clear_env(void)
{
    for (;;) {
        char **e = environ;
        while (*e && strncmp(*e, "IOTHUB_EMULATOR_", 16) != 0)
            e++;
        if (!*e)
            return;
        char name[128];
        size_t n = strcspn(*e, "=");
        snprintf(name, sizeof name, "%.*s", (int)n, *e);
        unsetenv(name);
    }
}

static int setup(void **state)
{
    clear_env();
    return 0;
}

#define MAX_ARGS 16

/* Parses a NULL-terminated list of arguments (argv[0] is added). */
static int parse_v(struct config *c, char *err, size_t errlen, va_list ap)
{
    char *argv[MAX_ARGS + 1] = {"iothub-emulator"};
    int argc = 1;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < MAX_ARGS)
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    return config_parse(argc, argv, c, err, errlen);
}

static int parse(struct config *c, ...)
{
    char err[256];
    va_list ap;
    va_start(ap, c);
    int rc = parse_v(c, err, sizeof err, ap);
    va_end(ap);
    if (rc == ERR_INVALID)
        print_message("config_parse: %s\n", err);
    return rc;
}

/* Expects ERR_INVALID and an error line containing needle. */
static void expect_invalid(const char *needle, ...)
{
    struct config c;
    char err[256] = "";
    va_list ap;
    va_start(ap, needle);
    int rc = parse_v(&c, err, sizeof err, ap);
    va_end(ap);
    if (rc != ERR_INVALID || !strstr(err, needle))
        print_error("rc=%d err='%s' (wanted '%s')\n", rc, err, needle);
    assert_int_equal(rc, ERR_INVALID);
    assert_non_null(strstr(err, needle));
    assert_null(strchr(err, '\n'));
    assert_null(c.hostnames);
    assert_null(c.bind);
    config_cleanup(&c);
}

/* ---------------------------------------------------------------- tests */

static void defaults(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, NULL), ERR_OK);
    assert_int_equal(c.n_hostnames, 1);
    assert_string_equal(c.hostnames[0], "127.0.0.1");
    assert_string_equal(c.bind, "localhost");
    assert_int_equal(c.mqtts_port, 8883);
    assert_int_equal(c.https_port, 443);
    assert_int_equal(c.mqtt_port, 1883);
    assert_int_equal(c.http_port, 8080);
    assert_string_equal(c.data_dir, "./.iothub-emulator");
    assert_false(c.in_memory);
    assert_null(c.cert);
    assert_null(c.key);
    assert_string_equal(c.owner_key, "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js=");
    assert_false(c.no_default_device);
    assert_string_equal(c.device1_key, "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=");
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_int_equal(c.max_connections, 20000);
    assert_int_equal(c.connect_timeout_s, 30);
    assert_int_equal(c.http_idle_timeout_s, 240);
    assert_int_equal(c.token_skew_s, 0);
    assert_int_equal(c.telemetry_log, 1000);
    assert_false(c.no_fault_injection);
    assert_null(c.throttle);
    config_cleanup(&c);
    assert_null(c.hostnames);
    config_cleanup(&c); /* twice is fine */
}

static const char key16[] = "AAECAwQFBgcICQoLDA0ODw=="; /* 16 bytes */

/* argv (NULL-terminated) parses, with every value-taking flag at the value the tests below give it ("--flag
 * value" or "--flag=value") and --in-memory and --no-default-device set. */
static void check_all_flags(char **argv, size_t argc)
{
    struct config config;
    struct config *c = &config;
    char err[256];
    assert_int_equal(config_parse((int)argc, argv, c, err, sizeof err), ERR_OK);
    assert_int_equal(c->n_hostnames, 1);
    assert_string_equal(c->hostnames[0], "myhub.azure-devices.net");
    assert_string_equal(c->bind, "::1");
    assert_int_equal(c->mqtts_port, 18883);
    assert_int_equal(c->https_port, 8443);
    assert_int_equal(c->mqtt_port, 0);
    assert_int_equal(c->http_port, 18080);
    assert_string_equal(c->data_dir, "/var/lib/emu");
    assert_string_equal(c->cert, "/c.pem");
    assert_string_equal(c->key, "/k.pem");
    assert_string_equal(c->owner_key, key16);
    assert_string_equal(c->device1_key, key16);
    assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c->max_connections, 5);
    assert_int_equal(c->connect_timeout_s, 7);
    assert_int_equal(c->http_idle_timeout_s, 9);
    assert_int_equal(c->token_skew_s, 60);
    assert_int_equal(c->telemetry_log, 0);
    assert_true(c->in_memory);
    assert_true(c->no_default_device);
    config_cleanup(c);
}

static void every_flag_separate_value(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, "--hostname", "myhub.azure-devices.net", "--bind", "::1", "--mqtts-port", "18883",
                           "--https-port", "8443", "--mqtt-port", "0", "--http-port", "18080", "--data-dir",
                           "/var/lib/emu", NULL),
                     ERR_OK);
    config_cleanup(&c);
    char *argv[] = {"e", "--hostname", "myhub.azure-devices.net", "--bind", "::1", "--mqtts-port", "18883",
                    "--https-port", "8443", "--mqtt-port", "0", "--http-port", "18080", "--data-dir",
                    "/var/lib/emu", "--cert", "/c.pem", "--key", "/k.pem", "--owner-key", (char *)key16,
                    "--default-device-key", (char *)key16, "--log-level", "debug", "--max-connections", "5",
                    "--connect-timeout", "7", "--http-idle-timeout", "9", "--token-skew", "60", "--telemetry-log", "0",
                    "--in-memory",
                    "--no-default-device", NULL};
    check_all_flags(argv, sizeof argv / sizeof argv[0] - 1);
}

static void every_flag_equals_value(void **state)
{
    struct config c;
    char owner[64], dev[64];
    snprintf(owner, sizeof owner, "--owner-key=%s", key16);
    snprintf(dev, sizeof dev, "--default-device-key=%s", key16);
    char *argv[] = {"e", "--hostname=myhub.azure-devices.net", "--bind=::1", "--mqtts-port=18883",
                    "--https-port=8443", "--mqtt-port=0", "--http-port=18080", "--data-dir=/var/lib/emu",
                    "--cert=/c.pem", "--key=/k.pem", owner, dev, "--log-level=DEBUG", "--max-connections=5",
                    "--connect-timeout=7", "--http-idle-timeout=9", "--token-skew=60", "--telemetry-log=0",
                    "--in-memory=yes",
                    "--no-default-device=1", NULL};
    check_all_flags(argv, sizeof argv / sizeof argv[0] - 1);
    assert_int_equal(parse(&c, "--in-memory=false", "--no-default-device=off", NULL), ERR_OK);
    assert_false(c.in_memory);
    assert_false(c.no_default_device);
    config_cleanup(&c);
}

static void environment(void **state)
{
    setenv("IOTHUB_EMULATOR_MQTTS_PORT", "28883", 1);
    setenv("IOTHUB_EMULATOR_HOSTNAME", "a.example, 10.0.0.2 ,B.example", 1);
    setenv("IOTHUB_EMULATOR_BIND", "0.0.0.0", 1);
    setenv("IOTHUB_EMULATOR_IN_MEMORY", "true", 1);
    setenv("IOTHUB_EMULATOR_LOG_LEVEL", "warn", 1);
    setenv("IOTHUB_EMULATOR_DEFAULT_DEVICE_KEY", key16, 1);
    setenv("IOTHUB_EMULATOR_TOKEN_SKEW", "30", 1);
    setenv("IOTHUB_EMULATOR_HTTP_PORT", "", 1); /* empty counts as unset */
    struct config c;
    assert_int_equal(parse(&c, NULL), ERR_OK);
    assert_int_equal(c.mqtts_port, 28883);
    assert_int_equal(c.n_hostnames, 3);
    assert_string_equal(c.hostnames[0], "a.example");
    assert_string_equal(c.hostnames[1], "10.0.0.2");
    assert_string_equal(c.hostnames[2], "B.example");
    assert_string_equal(c.bind, "0.0.0.0");
    assert_true(c.in_memory);
    assert_int_equal(c.log_level, LOG_LEVEL_WARN);
    assert_string_equal(c.device1_key, key16);
    assert_int_equal(c.token_skew_s, 30);
    assert_int_equal(c.http_port, 8080);
    config_cleanup(&c);
    clear_env();
}

static void flag_beats_environment(void **state)
{
    setenv("IOTHUB_EMULATOR_MQTTS_PORT", "28883", 1);
    setenv("IOTHUB_EMULATOR_HOSTNAME", "env1.example,env2.example", 1);
    setenv("IOTHUB_EMULATOR_IN_MEMORY", "1", 1);
    struct config c;
    assert_int_equal(parse(&c, "--mqtts-port=38883", "--hostname", "flag1.example", "--hostname",
                           "flag2.example,flag3.example", "--in-memory=false", NULL),
                     ERR_OK);
    assert_int_equal(c.mqtts_port, 38883);
    assert_int_equal(c.n_hostnames, 3);
    assert_string_equal(c.hostnames[0], "flag1.example");
    assert_string_equal(c.hostnames[1], "flag2.example");
    assert_string_equal(c.hostnames[2], "flag3.example");
    assert_false(c.in_memory);
    config_cleanup(&c);
    /* a bad variable is reported by its name, a later flag does not hide it */
    setenv("IOTHUB_EMULATOR_MQTTS_PORT", "http", 1);
    expect_invalid("IOTHUB_EMULATOR_MQTTS_PORT", "--mqtts-port", "1", NULL);
    clear_env();
}

static void hostname_lists(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, "--hostname=h1.example,H1.EXAMPLE,::1", "--hostname", "h1.example", NULL), ERR_OK);
    assert_int_equal(c.n_hostnames, 2); /* duplicates dropped, case-insensitively */
    assert_string_equal(c.hostnames[0], "h1.example");
    assert_string_equal(c.hostnames[1], "::1");
    config_cleanup(&c);
    expect_invalid("empty host name", "--hostname", "a.example,,b.example", NULL);
    expect_invalid("'a.example:8883' is not a host name", "--hostname", "a.example:8883", NULL);
    expect_invalid("is not a host name", "--hostname=https://a.example", NULL);
    expect_invalid("is not a host name", "--hostname=*.example", NULL);
}

static void event_hub_flags(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, NULL), ERR_OK);
    assert_null(c.hub_name);
    assert_int_equal(c.partitions, 4);
    assert_int_equal(c.n_consumer_groups, 0);
    assert_int_equal(c.retention_events, 100000);
    assert_int_equal(c.retention_bytes, 64 * 1024 * 1024);
    assert_int_equal(c.retention_hours, 24);
    config_cleanup(&c);
    setenv("IOTHUB_EMULATOR_CONSUMER_GROUP", "env1", 1);
    assert_int_equal(parse(&c, NULL), ERR_OK);
    assert_int_equal(c.n_consumer_groups, 1);
    config_cleanup(&c);
    /* the first flag replaces the environment's list, later flags append; commas split */
    assert_int_equal(parse(&c, "--consumer-group", "a, b", "--consumer-group=c", "--hub-name", "myhub", "--partitions",
                           "32", "--retention-events", "0", "--retention-hours", "0", NULL),
                     ERR_OK);
    assert_int_equal(c.n_consumer_groups, 3);
    assert_string_equal(c.consumer_groups[0], "a");
    assert_string_equal(c.consumer_groups[1], "b");
    assert_string_equal(c.consumer_groups[2], "c");
    assert_string_equal(c.hub_name, "myhub");
    assert_int_equal(c.partitions, 32);
    config_cleanup(&c);
    unsetenv("IOTHUB_EMULATOR_CONSUMER_GROUP");
    expect_invalid("--partitions", "--partitions", "0", NULL);
    expect_invalid("--partitions", "--partitions", "33", NULL);
    expect_invalid("empty name", "--consumer-group", "a,,b", NULL);
}

static void bad_ports_and_numbers(void **state)
{
    expect_invalid("--mqtts-port: '65536' is not a port", "--mqtts-port", "65536", NULL);
    expect_invalid("--https-port: '-1' is not a port", "--https-port=-1", NULL);
    expect_invalid("--http-port: '80x' is not a port", "--http-port=80x", NULL);
    expect_invalid("--mqtt-port: '' is not a port", "--mqtt-port=", NULL);
    expect_invalid("--mqtt-port: ' 1' is not a port", "--mqtt-port", " 1", NULL);
    expect_invalid("--mqtt-port: '99999999999999999999' is not a port", "--mqtt-port=99999999999999999999", NULL);
    expect_invalid("--max-connections: '0' is not a whole number from 1 to 1000000", "--max-connections=0", NULL);
    expect_invalid("--http-idle-timeout: '0' is not a whole number from 1 to 86400", "--http-idle-timeout", "0", NULL);
    expect_invalid("--token-skew", "--token-skew", "-5", NULL);
    expect_invalid("--mqtts-port and --mqtt-port are both 1883", "--mqtts-port=1883", NULL);
    expect_invalid("--bind: 'myhost' is not localhost or a numeric", "--bind", "myhost", NULL);
    expect_invalid("--log-level: 'verbose'", "--log-level", "verbose", NULL);
    expect_invalid("--in-memory: 'maybe'", "--in-memory=maybe", NULL);
    struct config c;
    assert_int_equal(parse(&c, "--mqtts-port=0", "--https-port=0", "--mqtt-port=0", "--http-port=0", NULL),
                     ERR_OK); /* several disabled listeners do not collide */
    config_cleanup(&c);
    assert_int_equal(parse(&c, "--http-port=65535", NULL), ERR_OK);
    assert_int_equal(c.http_port, 65535);
    config_cleanup(&c);
}

static void cert_needs_key(void **state)
{
    expect_invalid("--cert and --key go together", "--cert", "/c.pem", NULL);
    expect_invalid("--cert and --key go together", "--key=/k.pem", NULL);
    setenv("IOTHUB_EMULATOR_CERT", "/env-c.pem", 1);
    struct config c;
    assert_int_equal(parse(&c, "--key", "/k.pem", NULL), ERR_OK); /* env cert + flag key make a pair */
    assert_string_equal(c.cert, "/env-c.pem");
    config_cleanup(&c);
    clear_env();
    expect_invalid("--data-dir: needs a non-empty value", "--data-dir=", NULL);
}

static void bad_keys(void **state)
{
    expect_invalid("--owner-key: not a base64 key of 16 to 64 bytes", "--owner-key", "not base64!", NULL);
    expect_invalid("--owner-key", "--owner-key=AAECAwQFBgcICQoLDA0O", NULL);     /* 15 bytes */
    expect_invalid("--owner-key", "--owner-key=AAECAwQFBgcICQoLDA0ODw", NULL);   /* no padding */
    expect_invalid("--owner-key", "--owner-key=AAECAwQFBgcICQoLDA0ODw=A", NULL); /* '=' inside */
    expect_invalid("--default-device-key", "--default-device-key=" /* 65 bytes */
                                           "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                   NULL);
    expect_invalid("--owner-key", "--owner-key=" /* 66 bytes */
                                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                   NULL);
    struct config c;
    /* 64 bytes, the largest accepted */
    assert_int_equal(parse(&c, "--owner-key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                           NULL),
                     ERR_OK);
    config_cleanup(&c);
}

static void unknown_and_malformed_arguments(void **state)
{
    expect_invalid("unknown flag --port", "--port", "1", NULL);
    expect_invalid("unknown flag --mqtts-prt", "--mqtts-prt=1", NULL);
    expect_invalid("unexpected argument 'extra'", "extra", NULL);
    expect_invalid("unexpected argument '-p'", "-p", NULL);
    expect_invalid("--bind needs a value", "--bind", NULL);
    expect_invalid("--cert needs a value", "--cert", "--key", "/k.pem", NULL);
}

static void help_and_version(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, "--help", NULL), CONFIG_HELP);
    config_cleanup(&c);
    assert_int_equal(parse(&c, "-h", NULL), CONFIG_HELP);
    config_cleanup(&c);
    assert_int_equal(parse(&c, "--bogus", "--help", NULL), CONFIG_HELP);
    config_cleanup(&c);
    setenv("IOTHUB_EMULATOR_MQTTS_PORT", "bad", 1);
    assert_int_equal(parse(&c, "--version", NULL), CONFIG_VERSION);
    config_cleanup(&c);
    clear_env();

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_usage(f);
    fclose(f);
    static const char *const expected[] = {
        "--hostname NAME[,NAME...]", "IOTHUB_EMULATOR_HOSTNAME", "--mqtts-port PORT", "IOTHUB_EMULATOR_MQTTS_PORT",
        "default: 8883", "--https-port", "default: 443", "--mqtt-port", "default: 1883", "--http-port",
        "default: 8080", "--bind", "default: localhost", "--data-dir", "default: ./.iothub-emulator",
        "--in-memory", "IOTHUB_EMULATOR_IN_MEMORY", "--cert FILE", "--key FILE", "--owner-key BASE64",
        "IOTHUB_EMULATOR_OWNER_KEY", "--no-default-device", "--default-device-key BASE64",
        "IOTHUB_EMULATOR_DEFAULT_DEVICE_KEY", "--log-level LEVEL", "--max-connections", "default: 20000",
        "--connect-timeout", "--http-idle-timeout SECONDS", "default: 240", "IOTHUB_EMULATOR_HTTP_IDLE_TIMEOUT",
        "--token-skew", "IOTHUB_EMULATOR_TOKEN_SKEW", "--telemetry-log", "--help",
        "--version", CONFIG_DEFAULT_OWNER_KEY, CONFIG_DEFAULT_DEVICE1_KEY};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        if (!strstr(text, expected[i]))
            print_error("usage lacks '%s'\n", expected[i]);
        assert_non_null(strstr(text, expected[i]));
    }
    free(text);
}

static void fault_flags(void **state)
{
    struct config c;
    assert_int_equal(parse(&c, "--no-fault-injection", "--throttle", "S1", NULL), ERR_OK);
    assert_true(c.no_fault_injection);
    assert_string_equal(c.throttle, "S1");
    config_cleanup(&c);
    assert_int_equal(parse(&c, "--throttle=off", NULL), ERR_OK);
    config_cleanup(&c);
    expect_invalid("--throttle: 's9' is not a tier", "--throttle", "s9", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(defaults, setup),
        cmocka_unit_test_setup(fault_flags, setup),
        cmocka_unit_test_setup(every_flag_separate_value, setup),
        cmocka_unit_test_setup(every_flag_equals_value, setup),
        cmocka_unit_test_setup(environment, setup),
        cmocka_unit_test_setup(flag_beats_environment, setup),
        cmocka_unit_test_setup(hostname_lists, setup),
        cmocka_unit_test_setup(event_hub_flags, setup),
        cmocka_unit_test_setup(bad_ports_and_numbers, setup),
        cmocka_unit_test_setup(cert_needs_key, setup),
        cmocka_unit_test_setup(bad_keys, setup),
        cmocka_unit_test_setup(unknown_and_malformed_arguments, setup),
        cmocka_unit_test_setup(help_and_version, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
