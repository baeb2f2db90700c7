/* main.c -- iothub-device: the tutorial's simulated device. Connects with a device (or module) connection
 * string, answers direct methods (by default DeviceMethod with 200 {"Response":"This is the response from the
 * device"}), prints each call with a running count and each desired-properties patch, and runs until Ctrl-C.
 * Everything else is options (--report sends reported properties, --echo-desired reports desired back).
 * Uses only the public device_client.h plus device/jsoncheck.h and common/log.h. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "device_client.h"
#include "jsoncheck.h"
#include "log.h"
#include "url.h"

enum exit_code {
    EXIT_OK = 0,          /* Ctrl-C, SIGTERM, or --count calls answered */
    EXIT_INTERNAL = 1,    /* out of memory or another internal error */
    EXIT_USAGE = 2,       /* bad option, bad connection string, unreadable CA file */
    EXIT_UNREACHABLE = 3, /* the first connection could not be made (with --exit-on-connect-failure) */
    EXIT_TLS = 4,         /* the server's certificate or host name did not verify */
    EXIT_AUTH = 5,        /* credentials rejected, or the connection string's SAS token expired */
};

#define DEFAULT_METHOD "DeviceMethod"
#define DEFAULT_RESPONSE "{\"Response\":\"This is the response from the device\"}"
#define UNKNOWN_RESPONSE "{\"message\":\"method not found\"}"
#define MAX_METHODS 32

struct app {
    const char *connection_string;
    const char *methods[MAX_METHODS];
    size_t n_methods;
    int status;
    const char *response;
    bool echo;
    int unknown_status;
    long count;     /* stop after this many answered calls; 0 = never */
    long answered;  /* every answered call, known or not */
    long calls;     /* calls of known methods: the tutorial's running count */
    bool announced; /* the "waiting for calls" line was printed */
    long send_telemetry;   /* --send-telemetry N: send N messages, then exit (0: answer methods) */
    long telemetry_ms;     /* --telemetry-interval */
    bool connected;
    const char *fault;        /* --fault: an AzIoTHub_FaultOperationType to ask for once connected, or NULL */
    const char *fault_reason; /* --fault-reason */
    long fault_delay_s;       /* --fault-delay, default 1 */
    long fault_duration_s;    /* --fault-duration; < 0 = not sent */
    bool fault_sent;
    const char *report;  /* --report JSON: sent once, on the first connection */
    bool reported;
    bool echo_desired;   /* report each desired patch back (without its $version) */
    struct device_client *client;
    struct device_client_options opt;
};

static struct device_client *volatile signal_client;
static volatile sig_atomic_t signalled;

static const char usage_text[] =
    "usage: iothub-device [options]\n"
    "The tutorial's simulated device: answers direct methods until Ctrl-C.\n"
    "\n"
    "  --connection-string CS  device or module connection string (else $IOTHUB_DEVICE_CONNECTION_STRING)\n"
    "  --ca-file FILE          PEM CA certificate(s) to trust, e.g. the emulator's ca.pem (else $IOTHUB_CA_FILE;\n"
    "                          default: the system trust store, which is what a real hub needs)\n"
    "  --method NAME           a method to answer; repeatable (default: DeviceMethod)\n"
    "  --status N              status for those methods (default 200)\n"
    "  --response JSON         response body (default {\"Response\":\"This is the response from the device\"})\n"
    "  --echo                  answer with the request's payload instead (null when it had none)\n"
    "  --unknown-status N      status for any other method (default 404, body {\"message\":\"method not found\"})\n"
    "  --port N                MQTT over TLS port (default 8883; a real hub always uses 8883)\n"
    "  --plain-port N          development only: plain MQTT without TLS on port N (the emulator's --mqtt-port)\n"
    "  --token-lifetime S      SAS token lifetime in seconds (default 3600); renewed by reconnecting at 3/4\n"
    "  --keep-alive S          MQTT keep-alive in seconds (default 240)\n"
    "  --retry-max-ms N        longest pause between reconnection attempts (default 30000)\n"
    "  --count N               exit 0 after answering N calls\n"
    "  --send-telemetry N      the telemetry tutorial's device: send N device-to-cloud messages\n"
    "                          ({\"messageNumber\",\"temperature\",\"humidity\"}, property temperatureAlert), then exit 0\n"
    "  --telemetry-interval MS pause between those messages (default 1000)\n"
    "  --report JSON           report these properties once connected, e.g. '{\"firmware\":\"1.0\"}'\n"
    "  --echo-desired          report each desired-properties patch back as reported properties\n"
    "  --exit-on-connect-failure  exit when the first connection fails (default: keep retrying)\n"
    "  --fault TYPE            once connected, send one telemetry message asking the hub for a fault, as the\n"
    "                          SDKs' e2e tests do: KillTcp, ShutDownMqtt, InvokeThrottling, InvokeMaxMessageQuota,\n"
    "                          InvokeAuthError (properties AzIoTHub_FaultOperationType/CloseReason/DelayInSecs/\n"
    "                          DurationInSecs; honoured by the emulator and by whitelisted hubs only)\n"
    "  --fault-delay S         seconds before the fault (default 1)\n"
    "  --fault-duration S      how long it lasts (default: not sent)\n"
    "  --fault-reason TEXT     AzIoTHub_FaultOperationCloseReason (default \"iothub-device --fault\")\n"
    "  --verbose               debug logging on stderr\n"
    "  --help                  this text\n"
    "\n"
    "Prints \"connected ...\" on stdout each time it (re)connects, per call the method name, the payload and\n"
    "the running call number, each desired-properties patch (\"Desired properties patch ($version N): {...}\")\n"
    "and the hub's answer to each report, and each cloud-to-device message (\"C2D message: BODY\", then one\n"
    "\"  KEY: VALUE\" line per property, system properties such as $.mid included).\n"
    "\n"
    "Exit status:\n"
    "  0  stopped by Ctrl-C or SIGTERM, or --count calls answered\n"
    "  1  internal error\n"
    "  2  usage error, invalid connection string, unreadable CA file\n"
    "  3  the first connection could not be made: host unreachable, TLS handshake failure, timeout\n"
    "     (only with --exit-on-connect-failure; otherwise it keeps retrying)\n"
    "  4  the server's certificate or host name did not verify\n"
    "  5  credentials rejected by the hub, or the connection string's SharedAccessSignature expired\n";

static void on_signal(int sig)
{
    signalled = 1;
    struct device_client *c = signal_client;
    if (c)
        device_client_stop(c);
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static bool is_known(const struct app *a, const char *name)
{
    for (size_t i = 0; i < a->n_methods; i++) {
        if (strcmp(a->methods[i], name) == 0)
            return true;
    }
    return false;
}

static enum device_client_answer on_method(void *ctx, const struct device_client_method_request *req, int *status,
                                           char **response)
{
    struct app *a = ctx;
    const char *body;
    if (is_known(a, req->name)) {
        a->calls++;
        printf("Method name: %s\n", req->name);
        printf("Payload: %.*s\n", (int)(req->payload_len ? req->payload_len : 4),
               req->payload_len ? (const char *)req->payload : "null");
        printf("Method call number: %ld\n", a->calls);
        *status = a->status;
        body = a->echo ? (req->payload_len ? (const char *)req->payload : "null") : a->response;
    } else {
        printf("Unknown method: %s (answered %d)\n", req->name, a->unknown_status);
        *status = a->unknown_status;
        body = UNKNOWN_RESPONSE;
    }
    *response = strdup(body);
    if (!*response)
        log_error("out of memory: answering with an empty body");
    if (a->count > 0 && ++a->answered >= a->count)
        device_client_stop(a->client);
    return DEVICE_CLIENT_ANSWER_NOW;
}

/* --fault: one telemetry message with the SDKs' fault-injection properties, on the first connection. */
static void send_fault(struct app *a)
{
    char *type = url_encode(a->fault, strlen(a->fault));
    char *reason = url_encode(a->fault_reason, strlen(a->fault_reason));
    char bag[512], duration[64] = "";
    if (a->fault_duration_s >= 0)
        snprintf(duration, sizeof duration, "&AzIoTHub_FaultOperationDurationInSecs=%ld", a->fault_duration_s);
    int n = type && reason ? snprintf(bag, sizeof bag,
                                      "AzIoTHub_FaultOperationType=%s&AzIoTHub_FaultOperationCloseReason=%s&"
                                      "AzIoTHub_FaultOperationDelayInSecs=%ld%s",
                                      type, reason, a->fault_delay_s, duration)
                           : -1;
    free(type);
    free(reason);
    a->fault_sent = true;
    if (n < 0 || (size_t)n >= sizeof bag || device_client_send_event(a->client, bag, "{}", 2, 1)) {
        fprintf(stderr, "iothub-device: could not send the fault-injection message\n");
        return;
    }
    printf("Fault injection: asked for %s in %ld s", a->fault, a->fault_delay_s);
    if (a->fault_duration_s >= 0)
        printf(" for %ld s", a->fault_duration_s);
    printf("\n");
}

/* Reports json; prints what was sent. */
static void send_report(struct app *a, const char *json, size_t len)
{
    char rid[24];
    if (device_client_report(a->client, json, len, rid) == ERR_OK)
        printf("Reporting properties (rid %s): %.*s\n", rid, (int)len, json);
    else
        log_error("cannot report %.*s", (int)(len > 200 ? 200 : len), json);
}

static void on_desired(void *ctx, const struct device_client_desired *d)
{
    struct app *a = ctx;
    printf("Desired properties patch ($version %lld): %s\n", (long long)d->version, d->json);
    if (!a->echo_desired)
        return;
    json_t *patch = json_loadb(d->json, d->len, 0, NULL);
    json_object_del(patch, "$version");
    char *text = json_is_object(patch) ? json_dumps(patch, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(patch);
    if (text)
        send_report(a, text, strlen(text));
    free(text);
}

/* Prints text[0..len) with control bytes as \xNN (the hub's bytes never drive the terminal); UTF-8 passes. */
static void print_safe(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] < 0x20 || text[i] == 0x7f)
            printf("\\x%02x", text[i]);
        else
            putchar(text[i]);
    }
}

/* A cloud-to-device message: its body and its properties, one per line. */
static void on_c2d(void *ctx, const struct device_client_c2d *m)
{
    (void)ctx;
    printf("C2D message: ");
    print_safe(m->body, m->body_len);
    printf("\n");
    for (size_t i = 0; i < m->n_props; i++) {
        printf("  ");
        print_safe((const uint8_t *)m->keys[i], strlen(m->keys[i]));
        printf(": ");
        print_safe((const uint8_t *)m->values[i], strlen(m->values[i]));
        printf("\n");
    }
    fflush(stdout);
}

static void on_reported(void *ctx, const char *rid, int status, int64_t version, const char *body)
{
    if (status >= 200 && status < 300)
        printf("Reported properties accepted (rid %s, $version %lld)\n", rid, (long long)version);
    else
        printf("Reported properties refused (rid %s, status %d): %s\n", rid, status, body);
}

static void on_state(void *ctx, const struct device_client_event *ev)
{
    struct app *a = ctx;
    if (ev->state != DEVICE_CLIENT_CONNECTED)
        return;
    printf("connected\n");
    a->connected = true;
    if (a->send_telemetry)
        return;
    if (a->fault && !a->fault_sent)
        send_fault(a);
    if (a->report && !a->reported) {
        a->reported = true;
        send_report(a, a->report, strlen(a->report));
    }
    if (!a->announced) {
        printf("Waiting for direct method calls. Press Ctrl-C to exit.\n");
        a->announced = true;
    }
}

/* ---- options ---------------------------------------------------------------------------------------- */

static int parse_long(const char *flag, const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "iothub-device: %s needs a whole number in %ld..%ld, not \"%s\"\n", flag, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

enum opt_id {
    OPT_CS = 1000, OPT_CA, OPT_METHOD, OPT_STATUS, OPT_RESPONSE, OPT_ECHO, OPT_UNKNOWN, OPT_PORT, OPT_PLAIN,
    OPT_LIFETIME, OPT_KEEPALIVE, OPT_RETRY_MAX, OPT_COUNT, OPT_EXIT_FAIL, OPT_VERBOSE, OPT_HELP, OPT_SEND,
    OPT_INTERVAL, OPT_FAULT, OPT_FAULT_DELAY, OPT_FAULT_DURATION, OPT_FAULT_REASON, OPT_REPORT, OPT_ECHO_DESIRED,
};

static const struct option long_options[] = {
    {"connection-string", required_argument, NULL, OPT_CS},
    {"ca-file", required_argument, NULL, OPT_CA},
    {"method", required_argument, NULL, OPT_METHOD},
    {"status", required_argument, NULL, OPT_STATUS},
    {"response", required_argument, NULL, OPT_RESPONSE},
    {"echo", no_argument, NULL, OPT_ECHO},
    {"unknown-status", required_argument, NULL, OPT_UNKNOWN},
    {"port", required_argument, NULL, OPT_PORT},
    {"plain-port", required_argument, NULL, OPT_PLAIN},
    {"token-lifetime", required_argument, NULL, OPT_LIFETIME},
    {"keep-alive", required_argument, NULL, OPT_KEEPALIVE},
    {"retry-max-ms", required_argument, NULL, OPT_RETRY_MAX},
    {"count", required_argument, NULL, OPT_COUNT},
    {"send-telemetry", required_argument, NULL, OPT_SEND},
    {"telemetry-interval", required_argument, NULL, OPT_INTERVAL},
    {"exit-on-connect-failure", no_argument, NULL, OPT_EXIT_FAIL},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"report", required_argument, NULL, OPT_REPORT},
    {"echo-desired", no_argument, NULL, OPT_ECHO_DESIRED},
    {"help", no_argument, NULL, OPT_HELP},
    {"fault", required_argument, NULL, OPT_FAULT},
    {"fault-delay", required_argument, NULL, OPT_FAULT_DELAY},
    {"fault-duration", required_argument, NULL, OPT_FAULT_DURATION},
    {"fault-reason", required_argument, NULL, OPT_FAULT_REASON},
    {NULL, 0, NULL, 0},
};

/* Numeric options; returns 0, or -1 after printing why. */
static int apply_number(struct app *a, int id, const char *flag, const char *arg)
{
    long v = 0;
    switch (id) {
    case OPT_STATUS:
    case OPT_UNKNOWN:
        if (parse_long(flag, arg, INT_MIN, INT_MAX, &v))
            return -1;
        *(id == OPT_STATUS ? &a->status : &a->unknown_status) = (int)v;
        return 0;
    case OPT_PORT:
    case OPT_PLAIN:
        if (parse_long(flag, arg, 1, 65535, &v))
            return -1;
        *(id == OPT_PORT ? &a->opt.port : &a->opt.plain_port) = (int)v;
        return 0;
    case OPT_LIFETIME:
        if (parse_long(flag, arg, 5, 365L * 86400, &v))
            return -1;
        a->opt.token_lifetime_s = (int)v;
        return 0;
    case OPT_KEEPALIVE:
        if (parse_long(flag, arg, 5, 1177, &v))
            return -1;
        a->opt.keep_alive_s = (int)v;
        return 0;
    case OPT_RETRY_MAX:
        if (parse_long(flag, arg, 1, 86400000L, &v))
            return -1;
        a->opt.backoff_max_ms = (uint32_t)v;
        a->opt.backoff_initial_ms = v < 1000 ? (uint32_t)v : 1000;
        return 0;
    case OPT_COUNT: return parse_long(flag, arg, 1, LONG_MAX, &a->count);
    case OPT_SEND: return parse_long(flag, arg, 1, 1000000000L, &a->send_telemetry);
    case OPT_INTERVAL: return parse_long(flag, arg, 0, 3600000L, &a->telemetry_ms);
    case OPT_FAULT_DELAY: return parse_long(flag, arg, 0, 3600, &a->fault_delay_s);
    case OPT_FAULT_DURATION: return parse_long(flag, arg, 0, 3600, &a->fault_duration_s);
    }
    return -1;
}

static int apply_option(struct app *a, int id, const char *arg)
{
    const char *flag = NULL;
    for (const struct option *o = long_options; o->name; o++) {
        if (o->val == id)
            flag = o->name;
    }
    switch (id) {
    case OPT_CS: a->connection_string = arg; return 0;
    case OPT_CA: a->opt.ca_file = arg; return 0;
    case OPT_METHOD:
        if (a->n_methods == MAX_METHODS || !arg[0]) {
            fprintf(stderr, "iothub-device: --method needs a name (at most %d methods)\n", MAX_METHODS);
            return -1;
        }
        a->methods[a->n_methods++] = arg;
        return 0;
    case OPT_RESPONSE:
        if (!jsoncheck_is_valid(arg, strlen(arg))) {
            fprintf(stderr, "iothub-device: --response is not valid JSON\n");
            return -1;
        }
        a->response = arg;
        return 0;
    case OPT_ECHO: a->echo = true; return 0;
    case OPT_FAULT:
        if (!arg[0] || strlen(arg) > 64) {
            fprintf(stderr, "iothub-device: --fault needs a fault type such as KillTcp\n");
            return -1;
        }
        a->fault = arg;
        return 0;
    case OPT_FAULT_REASON: a->fault_reason = arg; return 0;
    case OPT_ECHO_DESIRED: a->echo_desired = true; return 0;
    case OPT_REPORT: {
        json_t *j = json_loads(arg, 0, NULL);
        bool ok = json_is_object(j);
        json_decref(j);
        if (!ok) {
            fprintf(stderr, "iothub-device: --report needs a JSON object, e.g. '{\"k\":1}'\n");
            return -1;
        }
        a->report = arg;
        return 0;
    }
    case OPT_EXIT_FAIL: a->opt.first_connect_fatal = true; return 0;
    case OPT_VERBOSE: log_set_level(LOG_LEVEL_DEBUG); return 0;
    default: return apply_number(a, id, flag ? flag : "option", arg);
    }
}

/* Returns -1 to continue, or an exit code. */
static int parse_args(struct app *a, int argc, char **argv)
{
    int id;
    while ((id = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (id == OPT_HELP) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (id == '?') {
            fprintf(stderr, "iothub-device: see --help\n");
            return EXIT_USAGE;
        }
        if (apply_option(a, id, optarg))
            return EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "iothub-device: unexpected argument \"%s\"; see --help\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!a->connection_string)
        a->connection_string = getenv("IOTHUB_DEVICE_CONNECTION_STRING");
    if (!a->connection_string || !a->connection_string[0]) {
        fprintf(stderr, "iothub-device: no connection string: use --connection-string or "
                        "IOTHUB_DEVICE_CONNECTION_STRING\n");
        return EXIT_USAGE;
    }
    if (!a->opt.ca_file && getenv("IOTHUB_CA_FILE") && getenv("IOTHUB_CA_FILE")[0])
        a->opt.ca_file = getenv("IOTHUB_CA_FILE");
    if (a->n_methods == 0)
        a->methods[a->n_methods++] = DEFAULT_METHOD;
    return -1;
}

/* ---- main ------------------------------------------------------------------------------------------- */

/* One line on stderr naming what failed; returns the matching exit status. */
static int report_terminal(const struct device_client_event *ev)
{
    switch (ev->state) {
    case DEVICE_CLIENT_AUTH_FAILED:
        fprintf(stderr, "iothub-device: authentication failed: %s\n", ev->detail);
        return EXIT_AUTH;
    case DEVICE_CLIENT_TLS_FAILED:
        fprintf(stderr, "iothub-device: the server's certificate did not verify: %s\n", ev->detail);
        return EXIT_TLS;
    case DEVICE_CLIENT_CONNECT_FAILED:
        fprintf(stderr, "iothub-device: cannot connect: %s: %s\n", device_client_reason_str(ev->reason), ev->detail);
        return EXIT_UNREACHABLE;
    default:
        fprintf(stderr, "iothub-device: stopped unexpectedly: %s\n", ev->detail);
        return EXIT_INTERNAL;
    }
}

/* --send-telemetry: the telemetry tutorial's simulated device (JSON body, one application property, content
 * type and encoding set so back ends see JSON). Returns the exit status. */
static int send_telemetry(struct app *a)
{
    while (!a->connected && !signalled) {
        if (device_client_run(a->client, 100) == ERR_CLOSED)
            return report_terminal(device_client_last_event(a->client));
    }
    for (long i = 1; i <= a->send_telemetry && !signalled; i++) {
        double temperature = 20 + (double)(rand() % 1500) / 100, humidity = 60 + (double)(rand() % 2000) / 100;
        char body[160], bag[96];
        snprintf(body, sizeof body, "{\"messageNumber\":%ld,\"temperature\":%.2f,\"humidity\":%.2f}", i, temperature,
                 humidity);
        snprintf(bag, sizeof bag, "temperatureAlert=%s&%%24.ct=application%%2Fjson&%%24.ce=utf-8",
                 temperature > 30 ? "true" : "false");
        if (device_client_send_event(a->client, bag, body, strlen(body), 0) != ERR_OK) {
            fprintf(stderr, "iothub-device: cannot queue a message\n");
            return EXIT_INTERNAL;
        }
        printf("Sending message: %s\n", body);
        if (device_client_run(a->client, i < a->send_telemetry ? (int)a->telemetry_ms : 0) == ERR_CLOSED)
            return report_terminal(device_client_last_event(a->client));
    }
    return EXIT_OK;
}

static void app_init(struct app *a)
{
    memset(a, 0, sizeof *a);
    a->telemetry_ms = 1000;
    a->status = 200;
    a->unknown_status = 404;
    a->response = DEFAULT_RESPONSE;
    a->fault_reason = "iothub-device --fault";
    a->fault_delay_s = 1;
    a->fault_duration_s = -1;
    device_client_options_init(&a->opt);
    a->opt.on_method = on_method;
    a->opt.method_ctx = a;
    a->opt.on_state = on_state;
    a->opt.state_ctx = a;
    a->opt.on_desired = on_desired;
    a->opt.on_c2d = on_c2d; /* devices only: a module connection string has no C2D */
    a->opt.desired_ctx = a;
    a->opt.on_reported = on_reported;
    a->opt.reported_ctx = a;
}

int main(int argc, char **argv)
{
    struct app app;
    app_init(&app);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int code = parse_args(&app, argc, argv);
    if (code >= 0)
        return code;
    if (install_signals()) {
        fprintf(stderr, "iothub-device: cannot install signal handlers\n");
        return EXIT_INTERNAL;
    }
    char err[256];
    int rc = device_client_new(app.connection_string, &app.opt, &app.client, err, sizeof err);
    if (rc) {
        fprintf(stderr, "iothub-device: %s\n", rc == ERR_NOMEM ? "out of memory" : err);
        return rc == ERR_NOMEM ? EXIT_INTERNAL : EXIT_USAGE;
    }
    signal_client = app.client;
    if (signalled)
        device_client_stop(app.client);
    if (app.send_telemetry) {
        code = send_telemetry(&app);
    } else {
        rc = device_client_run(app.client, -1);
        code = rc == ERR_CLOSED ? report_terminal(device_client_last_event(app.client)) : EXIT_OK;
    }
    signal_client = NULL;
    device_client_free(app.client);
    return code;
}
