/* config.c -- flags and IOTHUB_EMULATOR_* environment variables into struct config (see config.h).
 * One table (opts[]) drives parsing, the environment names and the --help text, so they cannot drift apart.
 * No files, no sockets; numbers through strtol with full checks. Tests: tests/unit/test_config.c. */
#define OPENSSL_API_COMPAT 30000
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "certs.h"
#include "err.h"

#define ENV_PREFIX "IOTHUB_EMULATOR_"
#define MAX_HOSTNAMES 64
#define KEY_MIN_BYTES 16
#define KEY_MAX_BYTES 64

enum opt_kind { K_HOSTS, K_ADDR, K_PORT, K_INT, K_STR, K_KEY, K_BOOL, K_LEVEL, K_LIST, K_HELP, K_VERSION };

struct opt {
    const char *name; /* the flag without "--" */
    enum opt_kind kind;
    size_t off;       /* offsetof(struct config, field) */
    int min, max;     /* K_PORT, K_INT */
    const char *metavar;
    const char *def;  /* default as shown by --help; NULL for none */
    const char *help; /* '\n' starts a continuation line */
};

#define F(field) offsetof(struct config, field)

static const struct opt opts[] = {
    {"hostname", K_HOSTS, F(hostnames), 0, 0, "NAME[,NAME...]", "127.0.0.1",
     "Host names the hub answers to: accepted as\n"
     "HostName in SAS tokens; the first is used in printed\n"
     "connection strings. Repeatable or comma-separated;\n"
     "127.0.0.1 and localhost are always accepted. The\n"
     "generated server certificate covers each of them\n"
     "plus localhost, 127.0.0.1 and ::1. The default,\n"
     "127.0.0.1, works with every SDK (the C SDK refuses\n"
     "a HostName without a dot, such as localhost)."},
    {"bind", K_ADDR, F(bind), 0, 0, "ADDR", "localhost",
     "Listen address: localhost (both loopbacks, 127.0.0.1\n"
     "and ::1, so HostName=localhost works whichever a\n"
     "client resolves first), or one numeric IPv4 or IPv6\n"
     "address. Use 0.0.0.0 inside a container."},
    {"mqtts-port", K_PORT, F(mqtts_port), 0, 65535, "PORT", "8883",
     "MQTT over TLS, for devices. 0 disables."},
    {"https-port", K_PORT, F(https_port), 0, 65535, "PORT", "443",
     "HTTPS: the service REST API and MQTT over\n"
     "WebSocket (/$iothub/websocket). Ports below 1024\n"
     "need root or CAP_NET_BIND_SERVICE. 0 disables."},
    {"mqtt-port", K_PORT, F(mqtt_port), 0, 65535, "PORT", "1883",
     "Plain MQTT without TLS, for local debugging.\n"
     "0 disables."},
    {"http-port", K_PORT, F(http_port), 0, 65535, "PORT", "8080",
     "Plain HTTP: the REST API, GET /health and\n"
     "GET /emulator/ca.pem. 0 disables."},
    {"amqps-port", K_PORT, F(amqps_port), 0, 65535, "PORT", "5671",
     "AMQP over TLS, for the service SDKs (cloud-to-\n"
     "device messages). AMQP over WebSocket is on the\n"
     "HTTPS port. 0 disables."},
    {"amqp-port", K_PORT, F(amqp_port), 0, 65535, "PORT", "5672",
     "Plain AMQP without TLS, for local debugging.\n"
     "0 disables."},
    {"data-dir", K_STR, F(data_dir), 0, 0, "DIR", "./.iothub-emulator",
     "Where the store (iothub.db: the device registry)\n"
     "and the generated certificates live."},
    {"in-memory", K_BOOL, F(in_memory), 0, 0, NULL, "off",
     "Keep the store in memory only; nothing survives\n"
     "a restart. Generated certificates still go to a\n"
     "temporary directory."},
    {"cert", K_STR, F(cert), 0, 0, "FILE", NULL,
     "PEM server certificate chain, leaf first; needs\n"
     "--key. Without --cert and --key a development CA\n"
     "and a server certificate are generated once into\n"
     "the data dir (ca.pem, server.pem, server.key) and\n"
     "reused; clients trust ca.pem."},
    {"key", K_STR, F(key), 0, 0, "FILE", NULL,
     "PEM private key of --cert."},
    {"owner-key", K_KEY, F(owner_key), 0, 0, "BASE64", CONFIG_DEFAULT_OWNER_KEY,
     "Shared access key of the iothubowner policy\n"
     "(base64 of 16 to 64 bytes). Prefer the environment\n"
     "variable: flags show up in ps."},
    {"no-default-device", K_BOOL, F(no_default_device), 0, 0, NULL, "off",
     "Do not pre-register device1."},
    {"default-device-key", K_KEY, F(device1_key), 0, 0, "BASE64", CONFIG_DEFAULT_DEVICE1_KEY,
     "Primary key of the pre-registered device1 (base64\n"
     "of 16 to 64 bytes)."},
    {"log-level", K_LEVEL, F(log_level), 0, 0, "LEVEL", "info",
     "error, warn, info or debug. info logs one line per\n"
     "connection and per method call. Keys and tokens\n"
     "are never logged."},
    {"max-connections", K_INT, F(max_connections), 1, 1000000, "N", "20000",
     "Most client connections open at once, all ports\n"
     "together (1 to 1000000). At the limit a new\n"
     "connection closes the oldest idle HTTP keep-alive\n"
     "connection, or is refused when there is none."},
    {"connect-timeout", K_INT, F(connect_timeout_s), 1, 3600, "SECONDS", "30",
     "Time a client has after the TCP/TLS accept to send\n"
     "MQTT CONNECT, or the request line and headers of\n"
     "an HTTP request (1 to 3600)."},
    {"http-idle-timeout", K_INT, F(http_idle_timeout_s), 1, 86400, "SECONDS", "240",
     "An HTTP keep-alive connection with no request in\n"
     "progress is closed after this long (1 to 86400;\n"
     "Azure's load balancers idle out after 4 minutes).\n"
     "A method call waiting for its device is not idle."},
    {"token-skew", K_INT, F(token_skew_s), 0, 3600, "SECONDS", "0",
     "Grace after a SAS token's expiry (se) during which\n"
     "it is still accepted, for clients whose clock lags\n"
     "(0 to 3600). The real hub documents no grace,\n"
     "so 0 (strict) is the default."},
    {"telemetry-log", K_INT, F(telemetry_log), 0, 1000000, "N", "1000",
     "Most device-to-cloud messages GET /emulator/telemetry\n"
     "lists (the newest of the event log; 0 to 1000000,\n"
     "0 lists none). What is kept is --retention-*."},
    {"hub-name", K_STR, F(hub_name), 0, 0, "NAME", NULL,
     "The hub's name: the Event Hub-compatible name\n"
     "(EntityPath) of the built-in endpoint. Default: the\n"
     "first label of the first --hostname that is not an\n"
     "IP address or localhost, else \"iothub\"."},
    {"partitions", K_INT, F(partitions), 1, 32, "N", "4",
     "Partitions of the built-in Event Hub-compatible\n"
     "endpoint (1 to 32; a device's events always go to\n"
     "the same one)."},
    {"consumer-group", K_LIST, F(consumer_groups), 0, 0, "NAME[,NAME...]", NULL,
     "Consumer groups besides $Default (repeatable or\n"
     "comma-separated; more with PUT\n"
     "/emulator/consumergroups/{name})."},
    {"retention-events", K_INT, F(retention_events), 0, 10000000, "N", "100000",
     "Events the event log keeps, all partitions together;\n"
     "the oldest go first (0 keeps none)."},
    {"retention-bytes", K_INT, F(retention_bytes), 0, INT_MAX, "BYTES", "67108864",
     "Bytes the event log keeps (bodies, properties and\n"
     "256 per event; default 64 MiB)."},
    {"retention-hours", K_INT, F(retention_hours), 0, 8760, "HOURS", "24",
     "Age after which events are dropped (the built-in\n"
     "endpoint's default, one day; 0: no age limit)."},
    {"no-fault-injection", K_BOOL, F(no_fault_injection), 0, 0, NULL, "off",
     "Ignore the SDKs' fault-injection properties\n"
     "(AzIoTHub_FaultOperationType...) on device-to-cloud\n"
     "messages. The /emulator/faults API still works."},
    {"throttle", K_STR, F(throttle), 0, 0, "TIER", "off",
     "Enforce IoT Hub's published per-unit throttles of\n"
     "one unit of tier s1, s2, s3 or free (429\n"
     "ThrottlingException on REST, disconnect on MQTT);\n"
     "off by default. README lists the limits."},
    {"c2d-ttl", K_INT, F(c2d_ttl_s), 1, 172800, "SECONDS", "3600",
     "How long a cloud-to-device message waits for its\n"
     "device when it has no expiry time of its own\n"
     "(the hub's default: one hour; at most 48 hours)."},
    {"help", K_HELP, 0, 0, 0, NULL, NULL,
     "Print this help and exit. Also -h."},
    {"version", K_VERSION, 0, 0, 0, NULL, NULL,
     "Print the version and exit."},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

/* Parsing state: the config being filled, where errors go, and whether a --hostname flag has already
 * replaced the list taken from the environment or the default. */
struct parser {
    struct config *c;
    bool hosts_from_flag;
    bool groups_from_flag;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return ERR_INVALID;
}

static void *field(struct parser *p, const struct opt *o)
{
    return (char *)p->c + o->off;
}

/* "IOTHUB_EMULATOR_" + the flag name upper-cased with '-' -> '_'. */
static void env_name(const struct opt *o, char *out, size_t n)
{
    int len = snprintf(out, n, "%s%s", ENV_PREFIX, o->name);
    for (int i = (int)sizeof ENV_PREFIX - 1; i < len && (size_t)i < n; i++)
        out[i] = out[i] == '-' ? '_' : (char)(out[i] >= 'a' && out[i] <= 'z' ? out[i] - 'a' + 'A' : out[i]);
}

/* ---------------------------------------------------------------- value checks */

static int parse_int(const char *s, int min, int max, int *out)
{
    if (!(*s >= '0' && *s <= '9') && !(*s == '-' && s[1] >= '0' && s[1] <= '9'))
        return -1;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *out = strcasecmp(s, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

static bool is_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Standard base64 with padding, decoding to KEY_MIN_BYTES..KEY_MAX_BYTES bytes. */
static bool key_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n % 4 != 0 || n > (KEY_MAX_BYTES + 2) / 3 * 4)
        return false;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++) {
        if (!is_b64_char(s[i]))
            return false;
    }
    unsigned char bytes[(KEY_MAX_BYTES + 2) / 3 * 3];
    int len = EVP_DecodeBlock(bytes, (const unsigned char *)s, (int)n);
    OPENSSL_cleanse(bytes, sizeof bytes);
    if (len < 0 || (size_t)len < pad)
        return false;
    size_t decoded = (size_t)len - pad;
    return decoded >= KEY_MIN_BYTES && decoded <= KEY_MAX_BYTES;
}

/* ---------------------------------------------------------------- setters */

static int set_string(char **dst, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return ERR_NOMEM;
    free(*dst);
    *dst = copy;
    return ERR_OK;
}

static void hosts_clear(struct config *c)
{
    for (size_t i = 0; i < c->n_hostnames; i++)
        free(c->hostnames[i]);
    free(c->hostnames);
    c->hostnames = NULL;
    c->n_hostnames = 0;
}

/* Appends one trimmed name unless it is already there (case-insensitive). */
static int hosts_add(struct parser *p, const char *src, const char *name, size_t len)
{
    struct config *c = p->c;
    if (len == 0)
        return fail(p, "%s: empty host name in the list", src);
    char *copy = strndup(name, len);
    if (!copy)
        return ERR_NOMEM;
    int rc = ERR_OK;
    if (!certs_is_valid_hostname(copy)) {
        rc = fail(p, "%s: '%s' is not a host name or IP address (give no scheme, port or wildcard)", src, copy);
        goto out;
    }
    for (size_t i = 0; i < c->n_hostnames; i++) {
        if (strcasecmp(c->hostnames[i], copy) == 0)
            goto out; /* a duplicate: keep the first */
    }
    if (c->n_hostnames >= MAX_HOSTNAMES) {
        rc = fail(p, "%s: at most %d host names", src, MAX_HOSTNAMES);
        goto out;
    }
    char **grown = realloc(c->hostnames, (c->n_hostnames + 1) * sizeof *grown);
    if (!grown) {
        rc = ERR_NOMEM;
        goto out;
    }
    c->hostnames = grown;
    c->hostnames[c->n_hostnames++] = copy;
    copy = NULL;
out:
    free(copy);
    return rc;
}

/* A comma-separated list from the environment replaces the default; the first --hostname flag replaces the
 * environment's list, and later ones append. */
static int set_hosts(struct parser *p, const char *src, const char *value, bool from_flag)
{
    if (!from_flag || !p->hosts_from_flag)
        hosts_clear(p->c);
    if (from_flag)
        p->hosts_from_flag = true;
    for (const char *s = value;; s++) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *start = s;
        while (len > 0 && (*start == ' ' || *start == '\t'))
            start++, len--;
        while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        int rc = hosts_add(p, src, start, len);
        if (rc || !comma)
            return rc;
        s = comma;
    }
}

/* A comma-separated list; the first flag replaces the environment's list, later flags append. Blanks around
 * items are trimmed; empty items are refused. */
static int set_list(struct parser *p, const struct opt *o, const char *src, const char *value, bool from_flag)
{
    struct config *c = p->c;
    if (!from_flag || !p->groups_from_flag) {
        for (size_t i = 0; i < c->n_consumer_groups; i++)
            free(c->consumer_groups[i]);
        c->n_consumer_groups = 0;
    }
    if (from_flag)
        p->groups_from_flag = true;
    for (const char *s = value;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0)
            return fail(p, "%s: empty name in the list", src);
        if (c->n_consumer_groups >= 64)
            return fail(p, "%s: at most 64 names", src);
        char **grown = realloc(c->consumer_groups, (c->n_consumer_groups + 1) * sizeof *grown);
        if (!grown)
            return ERR_NOMEM;
        c->consumer_groups = grown;
        if (!(c->consumer_groups[c->n_consumer_groups] = strndup(s, len)))
            return ERR_NOMEM;
        c->n_consumer_groups++;
        if (!comma)
            return ERR_OK;
        s = comma + 1;
    }
}

static int set_value(struct parser *p, const struct opt *o, const char *src, const char *value, bool from_flag)
{
    unsigned char ip[16];
    switch (o->kind) {
    case K_HOSTS: return set_hosts(p, src, value, from_flag);
    case K_ADDR:
        if (strcmp(value, "localhost") != 0 && inet_pton(AF_INET, value, ip) != 1 &&
            inet_pton(AF_INET6, value, ip) != 1)
            return fail(p, "%s: '%s' is not localhost or a numeric IPv4 or IPv6 address", src, value);
        return set_string(field(p, o), value);
    case K_PORT:
        if (parse_int(value, o->min, o->max, field(p, o)) != 0)
            return fail(p, "%s: '%s' is not a port number (0 to 65535)", src, value);
        return ERR_OK;
    case K_INT:
        if (parse_int(value, o->min, o->max, field(p, o)) != 0)
            return fail(p, "%s: '%s' is not a whole number from %d to %d", src, value, o->min, o->max);
        return ERR_OK;
    case K_STR:
        if (!*value)
            return fail(p, "%s: needs a non-empty value", src);
        return set_string(field(p, o), value);
    case K_KEY:
        if (!key_is_valid(value))
            return fail(p, "%s: not a base64 key of %d to %d bytes", src, KEY_MIN_BYTES, KEY_MAX_BYTES);
        return set_string(field(p, o), value);
    case K_BOOL:
        if (parse_bool(value, field(p, o)) != 0)
            return fail(p, "%s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", src, value);
        return ERR_OK;
    case K_LEVEL:
        if (log_parse_level(value, field(p, o)) != 0)
            return fail(p, "%s: '%s' is not a log level (error, warn, info, debug)", src, value);
        return ERR_OK;
    case K_LIST: return set_list(p, o, src, value, from_flag);
    case K_HELP: return CONFIG_HELP;
    case K_VERSION: return CONFIG_VERSION;
    }
    return ERR_INVALID;
}

/* ---------------------------------------------------------------- the three sources */

static int set_defaults(struct config *c)
{
    c->hostnames = calloc(1, sizeof *c->hostnames);
    if (c->hostnames)
        c->hostnames[0] = strdup("127.0.0.1"); /* dotted, an IP in the certificate: every SDK takes it */
    c->n_hostnames = c->hostnames && c->hostnames[0] ? 1 : 0;
    c->bind = strdup("localhost");
    c->data_dir = strdup("./.iothub-emulator");
    c->owner_key = strdup(CONFIG_DEFAULT_OWNER_KEY);
    c->device1_key = strdup(CONFIG_DEFAULT_DEVICE1_KEY);
    c->mqtts_port = 8883;
    c->https_port = 443;
    c->mqtt_port = 1883;
    c->http_port = 8080;
    c->amqps_port = 5671;
    c->amqp_port = 5672;
    c->c2d_ttl_s = 3600;
    c->log_level = LOG_LEVEL_INFO;
    c->max_connections = 20000;
    c->connect_timeout_s = 30;
    c->http_idle_timeout_s = 240;
    c->token_skew_s = 0;
    c->telemetry_log = 1000;
    c->partitions = 4;
    c->retention_events = 100000;
    c->retention_bytes = 64 * 1024 * 1024;
    c->retention_hours = 24;
    bool ok = c->n_hostnames == 1 && c->bind && c->data_dir && c->owner_key && c->device1_key;
    return ok ? ERR_OK : ERR_NOMEM;
}

static int apply_env(struct parser *p)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].kind == K_HELP || opts[i].kind == K_VERSION)
            continue;
        char name[64];
        env_name(&opts[i], name, sizeof name);
        const char *value = getenv(name);
        if (!value || !*value)
            continue;
        int rc = set_value(p, &opts[i], name, value, false);
        if (rc)
            return rc;
    }
    return ERR_OK;
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Handles argv[*i] (and its separate value, advancing *i). */
static int apply_arg(struct parser *p, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return fail(p, "unexpected argument '%s' (options start with --; see --help)", arg);
    const char *eq = strchr(arg + 2, '=');
    size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    const struct opt *o = find_opt(arg + 2, len);
    if (!o)
        return fail(p, "unknown flag --%.*s (see --help)", (int)len, arg + 2);
    char src[64];
    snprintf(src, sizeof src, "--%s", o->name);
    const char *value = eq ? eq + 1 : NULL;
    if (!value && (o->kind == K_BOOL || o->kind == K_HELP || o->kind == K_VERSION))
        value = "true";
    if (!value && (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0))
        return fail(p, "%s needs a value (%s %s, or %s=%s)", src, src, o->metavar, src, o->metavar);
    if (!value)
        value = argv[++*i];
    return set_value(p, o, src, value, true);
}

static int check_whole(struct parser *p)
{
    struct config *c = p->c;
    if ((c->cert == NULL) != (c->key == NULL))
        return fail(p, "--cert and --key go together: give both, or neither to use the generated certificate");
    static const char *const tiers[] = {"off", "free", "s1", "s2", "s3"};
    bool tier_ok = !c->throttle;
    for (size_t t = 0; !tier_ok && t < sizeof tiers / sizeof tiers[0]; t++)
        tier_ok = strcasecmp(c->throttle, tiers[t]) == 0;
    if (!tier_ok)
        return fail(p, "--throttle: '%.40s' is not a tier (s1, s2, s3, free or off)", c->throttle);
    const struct {
        const char *name;
        int port;
    } ports[] = {{"--mqtts-port", c->mqtts_port},
                 {"--https-port", c->https_port},
                 {"--mqtt-port", c->mqtt_port},
                 {"--http-port", c->http_port},
                 {"--amqps-port", c->amqps_port},
                 {"--amqp-port", c->amqp_port}};
    size_t n = sizeof ports / sizeof ports[0];
    for (size_t a = 0; a < n; a++) {
        for (size_t b = a + 1; b < n; b++) {
            if (ports[a].port != 0 && ports[a].port == ports[b].port)
                return fail(p, "%s and %s are both %d; each listener needs its own port", ports[a].name,
                            ports[b].name, ports[a].port);
        }
    }
    return ERR_OK;
}

/* --help / -h / --version anywhere win over everything, so a broken environment never hides the help. */
static int find_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return CONFIG_HELP;
        if (strcmp(argv[i], "--version") == 0)
            return CONFIG_VERSION;
    }
    return ERR_OK;
}

int config_parse(int argc, char **argv, struct config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    struct parser p = {.c = out, .err = err, .errlen = errlen};
    int rc = find_help(argc, argv);
    if (rc == ERR_OK)
        rc = set_defaults(out);
    if (rc == ERR_OK)
        rc = apply_env(&p);
    for (int i = 1; rc == ERR_OK && i < argc; i++)
        rc = apply_arg(&p, argc, argv, &i);
    if (rc == ERR_OK)
        rc = check_whole(&p);
    if (rc == ERR_NOMEM && err && errlen)
        snprintf(err, errlen, "out of memory while reading the configuration");
    if (rc != ERR_OK)
        config_cleanup(out);
    return rc;
}

/* ---------------------------------------------------------------- help text */

#define USAGE_COL 26 /* where help text starts: "  --flag METAVAR" fits in USAGE_COL - 4 */

static void usage_opt(FILE *f, const struct opt *o)
{
    char head[64];
    snprintf(head, sizeof head, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
    if (strlen(head) > USAGE_COL - 4)
        fprintf(f, "  %s\n%*s", head, USAGE_COL, "");
    else
        fprintf(f, "  %-*s  ", USAGE_COL - 4, head);
    for (const char *s = o->help; *s;) {
        const char *nl = strchr(s, '\n');
        int len = nl ? (int)(nl - s) : (int)strlen(s);
        fprintf(f, "%.*s\n", len, s);
        s += len + (nl ? 1 : 0);
        if (*s)
            fprintf(f, "%*s", USAGE_COL, "");
    }
    if (o->kind == K_HELP || o->kind == K_VERSION)
        return;
    char env[64];
    env_name(o, env, sizeof env);
    if (o->def)
        fprintf(f, "%*sdefault: %s\n", USAGE_COL, "", o->def);
    else if (o->kind == K_STR)
        fprintf(f, "%*sdefault: none%s\n", USAGE_COL, "", strcmp(o->name, "cert") == 0 ? " (generated)" : "");
    fprintf(f, "%*senv: %s\n", USAGE_COL, "", env);
}

void config_usage(FILE *f)
{
    fputs("Usage: iothub-emulator [options]\n"
          "\n"
          "A local Azure IoT Hub for development and CI. Devices connect with MQTT 3.1.1\n"
          "(TLS, WebSocket, or plain for debugging); back ends call direct methods and\n"
          "manage identities through the service REST API. The official Azure IoT SDKs\n"
          "work unmodified: change the connection string and trust the emulator's CA.\n"
          "\n"
          "Every option can also be set by the environment variable shown with it; a\n"
          "flag wins over the environment, and an empty variable counts as unset.\n"
          "Values go as \"--flag value\" or \"--flag=value\".\n"
          "\n"
          "Options:\n",
          f);
    for (size_t i = 0; i < N_OPTS; i++)
        usage_opt(f, &opts[i]);
    fputs("\n"
          "Well-known development credentials (public: never use them for anything real):\n"
          "  HostName=127.0.0.1;SharedAccessKeyName=iothubowner;SharedAccessKey=" CONFIG_DEFAULT_OWNER_KEY "\n"
          "  HostName=127.0.0.1;DeviceId=device1;SharedAccessKey=" CONFIG_DEFAULT_DEVICE1_KEY "\n"
          "  (HostName=localhost works too, except with the C SDK, which needs a dot)\n"
          "\n"
          "Trusting the generated CA (DATA_DIR/ca.pem, also at GET /emulator/ca.pem):\n"
          "  Node:   NODE_EXTRA_CA_CERTS=./.iothub-emulator/ca.pem node app.js\n"
          "  Python: IoTHubDeviceClient.create_from_connection_string(cs,\n"
          "              server_verification_cert=open(\"./.iothub-emulator/ca.pem\").read())\n"
          "  C SDK:  IoTHubDeviceClient_LL_SetOption(h, OPTION_TRUSTED_CERT, ca_pem)\n"
          "\n"
          "Examples:\n"
          "  iothub-emulator --hostname myhub.azure-devices.net,192.168.1.20\n"
          "  IOTHUB_EMULATOR_BIND=0.0.0.0 iothub-emulator --in-memory --log-level debug\n",
          f);
}

void config_cleanup(struct config *c)
{
    hosts_clear(c);
    free(c->bind);
    free(c->data_dir);
    free(c->cert);
    free(c->key);
    free(c->owner_key);
    free(c->throttle);
    free(c->device1_key);
    free(c->hub_name);
    for (size_t i = 0; i < c->n_consumer_groups; i++)
        free(c->consumer_groups[i]);
    free(c->consumer_groups);
    memset(c, 0, sizeof *c);
}
