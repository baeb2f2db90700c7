/* main.c -- iothub-emulator: a local Azure IoT Hub. Wires config, certificates, registry, hub, REST and the
 * network listeners onto one event loop, prints the endpoints and the well-known connection strings, and
 * shuts down cleanly on SIGINT/SIGTERM (pending method calls get 503, exit 0). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "amqp.h"
#include "auth.h"
#include "c2d.h"
#include "c2dpersist.h"
#include "jobs.h"
#include "certs.h"
#include "config.h"
#include "db.h"
#include "dirs.h"
#include "err.h"
#include "eventhub.h"
#include "eventlog.h"
#include "events.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "net.h"
#include "registry.h"
#include "rest.h"
#include "session.h"
#include "telemetry.h"
#include "tls.h"

#define EMULATOR_VERSION "0.1.0"
#define DEFAULT_DEVICE_ID "device1"
/* The well-known device1's secondary key (its primary key is a config default, see --help). */
#define DEFAULT_DEVICE_SECONDARY_KEY "0Jw8tw/kbsEFwxv9kc6G3qAxjKJQVxn8JXZp+Ra1CMQ="
#define DEFAULT_HUB_NAME "iothub" /* when no --hostname gives one (see --hub-name) */
#define EH_MAX_NAMES 66

struct emulator {
    struct config cfg;
    struct certs_paths certs;
    char *tmp_dir;
    SSL_CTX *tls;
    struct db *db;
    struct registry *reg;
    struct auth *auth;
    struct loop *loop;
    struct hub *hub;
    struct eventlog *eventlog;   /* every device-to-cloud message (hub/eventlog.h) */
    struct telemetry *telemetry; /* how messages enter it, and GET /emulator/telemetry */
    struct eventhub *eventhub;   /* the Event Hub-compatible endpoint on the AMQP listeners */
    char hub_name[64];
    struct faults *faults;
    struct rest *rest;
    struct session_env mqtt_env; /* every MQTT session's environment */
    struct proto mqtt;           /* the MQTT front, as net sees it */
    struct c2d *c2d;             /* cloud-to-device queues */
    struct jobs *jobs;           /* scheduled jobs (jobs.h) */
    struct events *events;       /* the dashboard's live feed (hub/events.h) */
    struct amqp_env amqp_env;    /* every AMQP connection's environment */
    struct proto amqp;           /* the AMQP front, as net sees it */
    struct net *net;    /* the listeners on --bind (127.0.0.1 for "localhost") */
    struct net *net_v6; /* "localhost" only: the same ports on ::1 (NULL when IPv6 is unavailable) */
    size_t connections; /* of both nets: --max-connections counts them together */
    int signal_fd;
    bool stopping;
};

static int http_handoff(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    return rest_add_connection(ctx, fd, addr, len);
}

static int64_t http_idle(void *ctx, int fd)
{
    return rest_idle_since(ctx, fd);
}

static void on_stop_timer(struct loop *l, void *ctx)
{
    loop_stop(l);
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *ctx)
{
    struct emulator *e = ctx;
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != sizeof si || e->stopping)
        return;
    e->stopping = true;
    log_info("signal %u: shutting down", si.ssi_signo);
    net_stop_accepting(e->net);
    if (e->net_v6)
        net_stop_accepting(e->net_v6);
    rest_shutdown(e->rest); /* pending method calls are answered 503 */
    /* Give the 503 answers a moment to reach their callers, then stop. */
    if (!loop_timer_add(l, 200, on_stop_timer, e))
        loop_stop(l);
}

static int setup_signals(struct emulator *e)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return ERR_IO;
    e->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (e->signal_fd < 0)
        return ERR_IO;
    signal(SIGPIPE, SIG_IGN);
    return loop_add_fd(e->loop, e->signal_fd, EPOLLIN, on_signal, e);
}

/* Certificates and the registry file, in the data dir (or a temp dir with --in-memory). */
static int setup_storage(struct emulator *e, char *err, size_t errlen)
{
    const char *dir = e->cfg.data_dir;
    if (e->cfg.in_memory) {
        char tmpl[] = "/tmp/iothub-emulator-XXXXXX";
        if (!mkdtemp(tmpl)) {
            snprintf(err, errlen, "cannot create a temporary directory: %s", strerror(errno));
            return ERR_IO;
        }
        e->tmp_dir = strdup(tmpl);
        dir = e->tmp_dir;
    } else if (dirs_make(dir, err, errlen)) {
        return ERR_IO;
    }
    const char *cert = e->cfg.cert, *key = e->cfg.key;
    if (!cert) {
        if (certs_ensure(dir, (const char *const *)e->cfg.hostnames, e->cfg.n_hostnames, &e->certs, err, errlen))
            return ERR_IO;
        cert = e->certs.cert_path;
        key = e->certs.key_path;
    }
    e->tls = tls_server_ctx_new(cert, key, err, errlen);
    if (!e->tls)
        return ERR_INVALID;
    /* The store: <data-dir>/iothub.db; a registry.json of release 0.1 in the data dir is imported once. */
    char path[PATH_MAX], json_path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" DB_FILE_NAME, dir);
    snprintf(json_path, sizeof json_path, "%s/registry.json", dir);
    e->db = db_open(e->cfg.in_memory ? NULL : path, err, errlen);
    if (!e->db)
        return ERR_IO;
    e->reg = registry_new(e->db, e->cfg.in_memory ? NULL : json_path, err, errlen);
    if (!e->reg)
        return ERR_IO;
    if (!e->cfg.no_default_device &&
        registry_ensure_device(e->reg, DEFAULT_DEVICE_ID, e->cfg.device1_key, DEFAULT_DEVICE_SECONDARY_KEY)) {
        if (db_is_read_only(e->db)) { /* serve what is stored; the log says why device1 is missing */
            log_warn("cannot register the default device %s: the store is read-only", DEFAULT_DEVICE_ID);
            return ERR_OK;
        }
        snprintf(err, errlen, "cannot register the default device %s", DEFAULT_DEVICE_ID);
        return ERR_IO;
    }
    return ERR_OK;
}

/* "localhost" listens on both loopbacks: clients resolve it to ::1 or 127.0.0.1, whichever comes first. */
static bool bind_is_localhost(const struct emulator *e)
{
    return strcmp(e->cfg.bind, "localhost") == 0;
}

/* Every listener is on a loopback address: the dashboard then lets a page on this machine in without a key. */
static bool bind_is_loopback(const struct emulator *e)
{
    const char *b = e->cfg.bind;
    return bind_is_localhost(e) || strcmp(b, "::1") == 0 || strncmp(b, "127.", 4) == 0;
}

static int setup_listeners(struct emulator *e, char *err, size_t errlen)
{
    e->mqtt_env = (struct session_env){.loop = e->loop, .hub = e->hub, .reg = e->reg, .auth = e->auth,
                                       .token_skew_s = e->cfg.token_skew_s, .max_packet = MQTT_MAX_PACKET_DEFAULT,
                                       .telemetry = e->telemetry, .faults = e->faults, .c2d = e->c2d};
    session_proto(&e->mqtt, &e->mqtt_env);
    e->amqp_env = (struct amqp_env){.loop = e->loop, .auth = e->auth, .c2d = e->c2d,
                                    .token_skew_s = e->cfg.token_skew_s, .auth_timeout_s = e->cfg.connect_timeout_s,
                                    .hub = e->hub, .reg = e->reg, .telemetry = e->telemetry, .faults = e->faults};
    amqp_proto(&e->amqp, &e->amqp_env);
    struct net_config nc = {
        .bind = bind_is_localhost(e) ? "127.0.0.1" : e->cfg.bind,
        .mqtts_port = e->cfg.mqtts_port ? e->cfg.mqtts_port : -1, /* 0 disables a listener */
        .https_port = e->cfg.https_port ? e->cfg.https_port : -1,
        .mqtt_port = e->cfg.mqtt_port ? e->cfg.mqtt_port : -1,
        .amqps_port = e->cfg.amqps_port ? e->cfg.amqps_port : -1,
        .amqp_port = e->cfg.amqp_port ? e->cfg.amqp_port : -1,
        .http_port = e->cfg.http_port ? e->cfg.http_port : -1, /* accepted here, handed to rest */
        .tls = e->tls,
        .mqtt = &e->mqtt,
        .amqp = &e->amqp,
        .http = rest_front(e->rest),
        .http_handoff = http_handoff,
        .http_ctx = e->rest,
        .http_idle = http_idle,
        .max_connections = (size_t)e->cfg.max_connections,
        .shared_count = &e->connections,
        .connect_timeout_s = e->cfg.connect_timeout_s,
    };
    e->net = net_new(e->loop, &nc, err, errlen);
    if (!e->net)
        return ERR_IO;
    rest_set_amqp_ports(e->rest, net_port(e->net, NET_AMQPS), net_port(e->net, NET_AMQP));
    if (!bind_is_localhost(e))
        return ERR_OK;
    /* The same ports on ::1 (the actual ones, should any have been chosen by the system). */
    nc.bind = "::1";
    nc.mqtts_port = net_port(e->net, NET_MQTTS);
    nc.https_port = net_port(e->net, NET_HTTPS);
    nc.mqtt_port = net_port(e->net, NET_MQTT);
    nc.amqps_port = net_port(e->net, NET_AMQPS);
    nc.amqp_port = net_port(e->net, NET_AMQP);
    nc.http_port = net_port(e->net, NET_HTTP);
    char why[256];
    e->net_v6 = net_new(e->loop, &nc, why, sizeof why);
    if (!e->net_v6)
        log_warn("not listening on ::1 (%s); localhost clients must resolve it to 127.0.0.1", why);
    return ERR_OK;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_ip(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* --hub-name, else the first label of the first --hostname that is not an IP address or localhost. */
static int choose_hub_name(struct emulator *e, char *err, size_t errlen)
{
    const char *name = e->cfg.hub_name;
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; !name && i < e->cfg.n_hostnames; i++) {
        const char *h = e->cfg.hostnames[i];
        if (is_ip(h) || strcasecmp(h, "localhost") == 0)
            continue;
        name = h;
        n = strcspn(h, ".");
    }
    if (!name) {
        name = DEFAULT_HUB_NAME;
        n = strlen(name);
    }
    bool ok = n >= 1 && n < sizeof e->hub_name;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '-' || name[i] == '_' || name[i] == '.';
    if (!ok) {
        snprintf(err, errlen, "--hub-name: '%s' is not 1 to 63 letters, digits, '-', '_' or '.'", name);
        return ERR_INVALID;
    }
    snprintf(e->hub_name, sizeof e->hub_name, "%.*s", (int)n, name);
    return ERR_OK;
}

static int setup_eventlog(struct emulator *e, char *err, size_t errlen)
{
    struct eventlog_limits lim = {.partitions = e->cfg.partitions,
                                  .max_events = (size_t)e->cfg.retention_events,
                                  .max_bytes = (size_t)e->cfg.retention_bytes,
                                  .max_age_ms = (int64_t)e->cfg.retention_hours * 3600 * 1000};
    e->eventlog = eventlog_new(&lim, wall_ms());
    e->telemetry = e->eventlog ? telemetry_new_on(e->eventlog, e->reg) : NULL;
    if (!e->telemetry) {
        snprintf(err, errlen, "start-up failed (out of memory)");
        return ERR_NOMEM;
    }
    telemetry_set_list_limit(e->telemetry, (size_t)e->cfg.telemetry_log);
    for (size_t i = 0; i < e->cfg.n_consumer_groups; i++) {
        int rc = eventlog_group_add(e->eventlog, e->cfg.consumer_groups[i], NULL);
        if (rc == ERR_INVALID)
            snprintf(err, errlen, "--consumer-group: '%s' is not 1 to %d letters, digits, '.', '_' or '-'",
                     e->cfg.consumer_groups[i], EVENTLOG_MAX_GROUP_NAME);
        else if (rc == ERR_TOO_BIG)
            snprintf(err, errlen, "--consumer-group: at most %d consumer groups besides $Default", EVENTLOG_MAX_GROUPS);
        else if (rc)
            snprintf(err, errlen, "out of memory");
        if (rc)
            return rc;
    }
    return choose_hub_name(e, err, errlen);
}

/* The Event Hub-compatible endpoint, once the AMQPS port is known (it goes into redirects). */
static int setup_eventhub(struct emulator *e, char *err, size_t errlen)
{
    const char *hosts[EH_MAX_NAMES], *aliases[EH_MAX_NAMES];
    char labels[EH_MAX_NAMES][64];
    size_t nh = 0, na = 0;
    for (size_t i = 0; i < e->cfg.n_hostnames && nh < EH_MAX_NAMES - 2; i++) {
        hosts[nh++] = e->cfg.hostnames[i];
        snprintf(labels[na], sizeof labels[na], "%.*s", (int)strcspn(e->cfg.hostnames[i], "."), e->cfg.hostnames[i]);
        aliases[na] = labels[na];
        na++;
    }
    hosts[nh++] = "localhost";
    hosts[nh++] = "127.0.0.1";
    aliases[na++] = "localhost";
    int port = net_port(e->net, NET_AMQPS);
    struct eventhub_config ec = {.loop = e->loop, .log = e->eventlog, .auth = e->auth, .hub_name = e->hub_name,
                                 .aliases = aliases, .n_aliases = na, .hosts = hosts, .n_hosts = nh,
                                 .redirect_host = e->cfg.hostnames[0], .redirect_port = port > 0 ? port : 5671};
    e->eventhub = eventhub_new(&ec);
    if (!e->eventhub) {
        snprintf(err, errlen, "start-up failed (out of memory)");
        return ERR_NOMEM;
    }
    e->amqp_env.eventhub = e->eventhub; /* no AMQP connection exists before the loop runs */
    return ERR_OK;
}

static int setup_services(struct emulator *e, char *err, size_t errlen)
{
    e->auth = auth_new((const char *const *)e->cfg.hostnames, e->cfg.n_hostnames, e->cfg.owner_key);
    e->loop = loop_new();
    e->hub = e->loop ? hub_new(e->loop, e->reg) : NULL;
    int erc = setup_eventlog(e, err, errlen);
    if (erc)
        return erc;
    e->faults = e->hub ? faults_new(e->loop, e->hub) : NULL;
    /* C2D queues live in the store (each accepted message is committed before the sender hears of it); a
     * read-only store from before the queues had a table keeps them in memory (logged). */
    struct c2d_store c2d_store;
    char why[256];
    bool c2d_stored = c2dpersist_init(&c2d_store, e->db, why, sizeof why) == ERR_OK;
    if (!c2d_stored && !db_is_read_only(e->db)) {
        snprintf(err, errlen, "cannot prepare the C2D queues in the store: %s", why);
        return ERR_IO;
    }
    if (!c2d_stored)
        log_warn("C2D queues are kept in memory only: %s", why);
    e->c2d = c2d_new(e->reg, c2d_stored ? &c2d_store : NULL, e->cfg.c2d_ttl_s);
    e->jobs = e->hub ? jobs_new(e->loop, e->hub) : NULL;
    e->events = events_new();
    if (!e->auth || !e->hub || !e->telemetry || !e->faults || !e->c2d || !e->jobs || !e->events || setup_signals(e)) {
        snprintf(err, errlen, "start-up failed (out of memory or no signalfd)");
        return ERR_NOMEM;
    }
    if (hub_use_session_store(e->hub, e->db, err, errlen))
        return ERR_IO;
    if (hub_use_twin_store(e->hub, e->db)) {
        snprintf(err, errlen, "cannot read the twins from the store");
        return ERR_IO;
    }
    if (jobs_use_store(e->jobs, e->db, err, errlen))
        return ERR_IO;
    faults_set_sdk_protocol(e->faults, !e->cfg.no_fault_injection);
    if (faults_set_throttle(e->faults, e->cfg.throttle)) {
        snprintf(err, errlen, "--throttle: unknown tier");
        return ERR_INVALID;
    }
    if (e->cfg.throttle && strcasecmp(e->cfg.throttle, "off") != 0)
        log_info("throttling at the published limits of one %s unit (README \"Testing failures\")", e->cfg.throttle);
    struct rest_config rc = {
        .loop = e->loop, .hub = e->hub, .reg = e->reg, .auth = e->auth,
        .http_port = 0, /* no listener of its own: net accepts the HTTP port, so the connection limit and its
                           eviction of idle connections cover it (issue 23) */
        .ca_pem_path = e->certs.ca_path, .token_skew_s = e->cfg.token_skew_s, .telemetry = e->telemetry,
        .head_timeout_s = e->cfg.connect_timeout_s, .idle_timeout_s = e->cfg.http_idle_timeout_s,
        .max_connections = (unsigned)e->cfg.max_connections, .faults = e->faults, .c2d = e->c2d, .jobs = e->jobs,
        .events = e->events, .host_name = e->cfg.hostnames[0],
        .host_names = (const char *const *)e->cfg.hostnames, .n_host_names = e->cfg.n_hostnames,
        .hub_name = e->hub_name,
        .dashboard_open = bind_is_loopback(e)};
    hub_set_events(e->hub, e->events);
    c2d_set_events(e->c2d, e->events);
    e->rest = rest_new(&rc, err, errlen);
    if (!e->rest)
        return ERR_IO;
    erc = setup_listeners(e, err, errlen);
    return erc ? erc : setup_eventhub(e, err, errlen);
}

/* Keys in the banner (stdout, so every container log): only the published development keys are printed in
 * full; a custom key is masked. Its owner set the owner key; a custom device1 key can be printed on purpose
 * with iothub-service (issue 23). */
#define BANNER_MASK "****"

static const char *banner_key(const char *key, const char *well_known)
{
    return strcmp(key, well_known) == 0 ? key : BANNER_MASK;
}

static void print_banner(const struct emulator *e)
{
    const char *host = e->cfg.hostnames[0];
    /* A wildcard bind (0.0.0.0 in a container) is no address to connect to: show the host name instead. */
    bool wildcard = strcmp(e->cfg.bind, "0.0.0.0") == 0 || strcmp(e->cfg.bind, "::") == 0;
    const char *b = wildcard ? host : e->cfg.bind;
    printf("IoT Hub emulator %s\n", EMULATOR_VERSION);
    if (net_port(e->net, NET_MQTTS) >= 0)
        printf("  MQTT over TLS:          mqtts://%s:%d\n", b, net_port(e->net, NET_MQTTS));
    if (net_port(e->net, NET_HTTPS) >= 0)
        printf("  HTTPS, MQTT/AMQP on WS: https://%s:%d  (wss://%s:%d/$iothub/websocket)\n", b,
               net_port(e->net, NET_HTTPS), b, net_port(e->net, NET_HTTPS));
    if (net_port(e->net, NET_MQTT) >= 0)
        printf("  MQTT, plain (dev only): mqtt://%s:%d\n", b, net_port(e->net, NET_MQTT));
    if (net_port(e->net, NET_AMQPS) >= 0)
        printf("  AMQP over TLS:          amqps://%s:%d\n", b, net_port(e->net, NET_AMQPS));
    if (net_port(e->net, NET_AMQP) >= 0)
        printf("  AMQP, plain (dev only): amqp://%s:%d\n", b, net_port(e->net, NET_AMQP));
    if (net_port(e->net, NET_HTTP) >= 0)
        printf("  HTTP, plain (dev only): http://%s:%d  (/health, /emulator/ca.pem)\n", b, net_port(e->net, NET_HTTP));
    if (net_port(e->net, NET_HTTP) >= 0)
        printf("  Dashboard:              http://%s:%d/%s\n", b, net_port(e->net, NET_HTTP),
               bind_is_loopback(e) ? "" : "  (asks for the service connection string)");
    else if (net_port(e->net, NET_HTTPS) >= 0)
        printf("  Dashboard:              https://%s:%d/%s\n", b, net_port(e->net, NET_HTTPS),
               bind_is_loopback(e) ? "" : "  (asks for the service connection string)");
    printf("  CA certificate:         %s\n", e->certs.ca_path ? e->certs.ca_path : "(given with --cert)");
    const char *owner = banner_key(e->cfg.owner_key, CONFIG_DEFAULT_OWNER_KEY);
    printf("  Service connection string: HostName=%s;SharedAccessKeyName=iothubowner;SharedAccessKey=%s%s\n", host,
           owner, owner == e->cfg.owner_key ? "" : "  (your --owner-key / IOTHUB_EMULATOR_OWNER_KEY; not printed)");
    if (!e->cfg.no_default_device) {
        const char *dev = banner_key(e->cfg.device1_key, CONFIG_DEFAULT_DEVICE1_KEY);
        printf("  Device connection string:  HostName=%s;DeviceId=%s;SharedAccessKey=%s%s\n", host, DEFAULT_DEVICE_ID,
               dev, dev == e->cfg.device1_key ? ""
                    : "  (custom key, not printed; print it with: iothub-service device connection-string " DEFAULT_DEVICE_ID ")");
    }
    /* The Event Hub-compatible strings carry the owner key too: masked the same way. */
    int amqps = net_port(e->net, NET_AMQPS), amqp = net_port(e->net, NET_AMQP);
    char port[16] = "";
    if (amqps > 0 && amqps != 5671)
        snprintf(port, sizeof port, ":%d", amqps);
    if (amqps > 0)
        printf("  Event Hub-compatible endpoint (read telemetry with the Event Hubs SDKs), name %s, %d partitions:\n"
               "    Endpoint=sb://%s%s/;SharedAccessKeyName=iothubowner;SharedAccessKey=%s;EntityPath=%s\n",
               e->hub_name, eventlog_partitions(e->eventlog), host, port, owner, e->hub_name);
    if (amqp > 0)
        printf("  Event Hub-compatible, plain AMQP (Node @azure/event-hubs, dev only):\n"
               "    Endpoint=sb://%s:%d/;SharedAccessKeyName=iothubowner;SharedAccessKey=%s;EntityPath=%s;"
               "UseDevelopmentEmulator=true\n",
               host, amqp, owner, e->hub_name);
    printf("ready\n");
    fflush(stdout);
}

static void emulator_cleanup(struct emulator *e)
{
    net_free(e->net_v6);
    net_free(e->net); /* sessions leave the hub as they close */
    rest_free(e->rest);
    jobs_free(e->jobs); /* before the hub: cancels the jobs' pending calls */
    eventhub_free(e->eventhub);
    faults_free(e->faults);
    c2d_free(e->c2d);
    hub_free(e->hub);
    events_free(e->events); /* after everything that notes events */
    telemetry_free(e->telemetry);
    eventlog_free(e->eventlog);
    loop_free(e->loop);
    auth_free(e->auth);
    registry_free(e->reg);
    db_close(e->db);
    SSL_CTX_free(e->tls);
    if (e->signal_fd > 0)
        close(e->signal_fd);
    if (e->tmp_dir) {
        char path[PATH_MAX];
        const char *files[] = {"ca.pem", "ca.key", "server.pem", "server.key", ".certs.lock"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", e->tmp_dir, files[i]);
            unlink(path);
        }
        rmdir(e->tmp_dir);
        free(e->tmp_dir);
    }
    certs_paths_cleanup(&e->certs);
    config_cleanup(&e->cfg);
}

int main(int argc, char **argv)
{
    struct emulator e = {.signal_fd = -1};
    char err[512] = "";
    int rc = config_parse(argc, argv, &e.cfg, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_usage(stdout);
        return 0;
    }
    if (rc == CONFIG_VERSION) {
        printf("iothub-emulator %s\n", EMULATOR_VERSION);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "iothub-emulator: %s (see --help)\n", err);
        return 2;
    }
    log_set_level(e.cfg.log_level);
    if (setup_storage(&e, err, sizeof err) || setup_services(&e, err, sizeof err)) {
        fprintf(stderr, "iothub-emulator: %s\n", err);
        emulator_cleanup(&e);
        return 1;
    }
    print_banner(&e);
    rc = loop_run(e.loop);
    emulator_cleanup(&e);
    return rc ? 1 : 0;
}
