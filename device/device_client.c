/* device_client.c -- IoT Hub device client on libmosquitto (see device_client.h). Layer: device library, above
 * common (connstr, sas, buf, log) and libmosquitto + OpenSSL. No threads: device_client_run() polls the MQTT
 * socket and a self-pipe, and calls mosquitto_loop(mosq, 0, 1) to let libmosquitto read, write, handshake and
 * keep alive. libmosquitto's callbacks only record what happened; the run loop acts on it afterwards, so
 * application callbacks never run inside libmosquitto. Tests: tests/unit/test_device_*.c (pure parts),
 * tests/integration/device_* (against the emulator). */
#include "device_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "backoff.h"
#include "buf.h"
#include "connstr.h"
#include "device_tls.h"
#include "log.h"
#include "login.h"
#include "c2d_topic.h"
#include "method_topic.h"
#include "twin_topic.h"
#include "jsoncheck.h"
#include "sas.h"

#define DEFAULT_TLS_PORT 8883
#define DEFAULT_KEEP_ALIVE_S 240
#define MAX_KEEP_ALIVE_S 1177 /* the largest keep-alive the hub honours (iothub-protocol.md §1.5) */
#define DEFAULT_TOKEN_LIFETIME_S 3600
#define MIN_TOKEN_LIFETIME_S 5
#define MAX_TOKEN_LIFETIME_S (365 * 86400)
#define DEFAULT_CONNECT_TIMEOUT_S 30
#define DEFAULT_MAX_AUTH_FAILURES 3
#define TICK_MS 1000          /* longest sleep while a socket is open: keep-alive checks run at least this often */
#define RENEW_FLUSH_MS 2000   /* how long a renewal waits for its DISCONNECT to go out */
#define CLOSE_FLUSH_MS 1000   /* how long device_client_free waits for queued answers and DISCONNECT */
#define MAX_TOPIC 1024
#define MAX_BODY (INT_MAX / 2)

enum phase {
    PHASE_IDLE,       /* nothing attempted yet */
    PHASE_CONNECTING, /* socket/TLS/CONNECT under way; waiting for CONNACK then SUBACK (deadline: timeout) */
    PHASE_CONNECTED,  /* subscribed (deadline: token renewal) */
    PHASE_RENEWING,   /* DISCONNECT sent for a token renewal (deadline: reconnect anyway) */
    PHASE_WAITING,    /* backing off (deadline: next attempt) */
    PHASE_DEAD,       /* terminal failure reported */
};

/* What a queued message is. */
enum call_kind { CALL_METHOD, CALL_DESIRED, CALL_TWIN_RESPONSE, CALL_C2D };

/* A message copied out of libmosquitto's on_message (a method request, a desired patch or a twin response),
 * dispatched by the run loop. */
struct call {
    struct call *next;
    enum call_kind kind;
    int status;      /* CALL_TWIN_RESPONSE */
    int64_t version; /* CALL_DESIRED, CALL_TWIN_RESPONSE; -1 when absent */
    char *name;
    char *rid;
    uint8_t *payload;
    size_t payload_len;
    struct c2d_topic_props props; /* CALL_C2D */
};

/* A PUBLISH queued by device_client_respond, _report or _send_event (any thread), published by the run loop. */
struct answer {
    struct answer *next;
    char *topic;
    char *body;
    size_t body_len;
    int qos;
};

/* What happened during the current connection attempt (reset by start_attempt). */
struct attempt {
    int connack;         /* CONNACK return code; -1 before */
    int sub_mid;         /* SUBSCRIBE message id; 0 before sent */
    int suback;          /* granted QoS (0x80 = refused); -1 before */
    int c2d_mid;         /* the devicebound SUBSCRIBE's message id (on_c2d only); 0 before sent */
    int c2d_suback;      /* its granted QoS; -1 before */
    bool tcp_up;         /* the TCP connect completed */
    bool abandoned;      /* we gave up on the socket (error, timeout); libmosquitto has not closed it */
    int sys_errno;       /* errno (or getaddrinfo code, see gai) of a failed connect */
    bool gai;            /* sys_errno is a getaddrinfo code */
    int mosq_rc;         /* last libmosquitto error of this attempt */
    enum device_client_reason reason; /* set when we ended the attempt ourselves */
    char note[160];      /* detail for `reason`, or the first OpenSSL error libmosquitto logged */
};

struct device_client {
    struct connstr cs;      /* owns host, ids, key or signature */
    const char *target;     /* GatewayHostName or HostName: where TCP/TLS goes */
    int port;
    bool tls;
    uint64_t fixed_expiry;  /* se of a connection string's SharedAccessSignature; 0 with a key */
    char *client_id;
    char *username;
    struct device_client_options opt; /* defaults applied; opt.ca_file is not kept */
    struct backoff backoff;
    struct mosquitto *mosq;
    SSL_CTX *ssl_ctx;
    struct device_tls_verdict verdict;
    enum phase phase;
    int64_t deadline;       /* monotonic ms; meaning per phase */
    int64_t token_issued;   /* monotonic ms when the current token was made */
    bool mosq_started;      /* mosquitto_connect_async has set host/port/keep-alive */
    bool ever_connected;
    bool running;
    bool lib_held;          /* lib_acquire() succeeded */
    unsigned failures;      /* consecutive failed attempts */
    unsigned auth_failures; /* consecutive auth refusals */
    struct attempt at;
    struct call *calls;
    struct call **calls_tail;
    pthread_mutex_t lock;   /* guards answers */
    struct answer *answers;
    struct answer **answers_tail;
    int wake[2];            /* self-pipe: stop() and respond() write, the run loop polls */
    atomic_uint report_counter; /* rids of reported-properties patches */
    atomic_int stop;
    uint64_t rng;
    struct device_client_event last;
    char detail[256];
};

/* ---- small helpers ---------------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t next_random(struct device_client *c)
{
    if (c->opt.random)
        return c->opt.random(c->opt.random_ctx);
    c->rng ^= c->rng >> 12; /* xorshift64* */
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (uint32_t)((c->rng * 2685821657736338717ull) >> 32);
}

static void seed_random(struct device_client *c)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
    c->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static void wake(struct device_client *c)
{
    char byte = 1;
    ssize_t n = write(c->wake[1], &byte, 1); /* EAGAIN: a wake-up is already pending, which is enough */
    (void)n;
}

static void drain_wake(struct device_client *c)
{
    char sink[64];
    while (read(c->wake[0], sink, sizeof sink) > 0)
        ;
}

static bool socket_open(const struct device_client *c)
{
    return (c->phase == PHASE_CONNECTING || c->phase == PHASE_CONNECTED || c->phase == PHASE_RENEWING) &&
           !c->at.abandoned && mosquitto_socket(c->mosq) >= 0;
}

static void report(struct device_client *c, enum device_client_state state, enum device_client_reason reason,
                   const char *detail, uint32_t retry_in_ms)
{
    snprintf(c->detail, sizeof c->detail, "%s", detail ? detail : "");
    c->last.state = state;
    c->last.reason = reason;
    c->last.detail = c->detail;
    c->last.retry_in_ms = retry_in_ms;
    c->last.attempt = c->failures;
    if (state == DEVICE_CLIENT_CONNECTED)
        log_info("device: connected to %s:%d as %s", c->target, c->port, c->client_id);
    else if (state == DEVICE_CLIENT_DISCONNECTED_RETRYING && reason == DEVICE_CLIENT_REASON_TOKEN_RENEWAL)
        log_info("device: reconnecting to renew the SAS token");
    else if (state == DEVICE_CLIENT_DISCONNECTED_RETRYING)
        log_warn("device: %s (%s); retry %u in %u ms", device_client_reason_str(reason), c->detail, c->failures,
                 retry_in_ms);
    else
        log_debug("device: %s: %s (%s)", device_client_state_str(state), device_client_reason_str(reason),
                  c->detail);
    if (c->opt.on_state)
        c->opt.on_state(c->opt.state_ctx, &c->last);
}

/* ---- libmosquitto reference count (mosquitto_lib_init is not thread-safe) ---------------------------- */

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned lib_users;

static int lib_acquire(void)
{
    int rc = ERR_OK;
    pthread_mutex_lock(&lib_lock);
    if (lib_users == 0 && mosquitto_lib_init() != MOSQ_ERR_SUCCESS)
        rc = ERR_NOMEM;
    else
        lib_users++;
    pthread_mutex_unlock(&lib_lock);
    return rc;
}

static void lib_release(void)
{
    pthread_mutex_lock(&lib_lock);
    if (lib_users > 0 && --lib_users == 0)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&lib_lock);
}

/* ---- libmosquitto callbacks: record only ------------------------------------------------------------ */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    struct device_client *c = obj;
    c->at.connack = rc;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted)
{
    struct device_client *c = obj;
    if (mid == c->at.sub_mid && count > 0)
        c->at.suback = granted[0];
    else if (mid == c->at.c2d_mid && count > 0)
        c->at.c2d_suback = granted[0];
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    struct device_client *c = obj;
    if (rc && !c->at.mosq_rc)
        c->at.mosq_rc = rc;
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *text)
{
    struct device_client *c = obj;
    const char *tag = "OpenSSL Error[0]: ";
    if (strncmp(text, tag, strlen(tag)) == 0 && !c->at.note[0])
        snprintf(c->at.note, sizeof c->at.note, "%s", text + strlen(tag));
    log_debug("mosquitto: %s", text);
}

static void call_free(struct call *k)
{
    if (!k)
        return;
    free(k->name);
    free(k->rid);
    free(k->payload);
    c2d_topic_props_cleanup(&k->props);
    free(k);
}

static struct call *call_new(const char *name, size_t name_len, const char *rid, size_t rid_len,
                             const void *payload, int len)
{
    struct call *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    size_t n = len > 0 ? (size_t)len : 0;
    k->version = -1;
    k->name = strndup(name, name_len);
    k->rid = strndup(rid, rid_len);
    k->payload = malloc(n + 1);
    if (!k->name || !k->rid || !k->payload) {
        call_free(k);
        return NULL;
    }
    if (n)
        memcpy(k->payload, payload, n);
    k->payload[n] = 0;
    k->payload_len = n;
    return k;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    struct device_client *c = obj;
    size_t tlen = strlen(msg->topic);
    struct method_topic_request req;
    struct twin_topic_response res;
    int64_t version = -1;
    struct call *k = NULL;
    struct c2d_topic_props props;
    if (c->opt.on_c2d && c2d_topic_parse(msg->topic, tlen, c->cs.device_id, &props) == ERR_OK) {
        if ((k = call_new("", 0, "", 0, msg->payload, msg->payloadlen))) {
            k->kind = CALL_C2D;
            k->props = props;
        } else {
            c2d_topic_props_cleanup(&props);
        }
    } else if (method_topic_parse(msg->topic, tlen, &req) == ERR_OK) {
        k = call_new(req.name, req.name_len, req.rid, req.rid_len, msg->payload, msg->payloadlen);
    } else if (twin_topic_parse_desired(msg->topic, tlen, &version) == ERR_OK) {
        if ((k = call_new("", 0, "", 0, msg->payload, msg->payloadlen))) {
            k->kind = CALL_DESIRED;
            k->version = version;
        }
    } else if (twin_topic_parse_response(msg->topic, tlen, &res) == ERR_OK) {
        if ((k = call_new("", 0, res.rid, res.rid_len, msg->payload, msg->payloadlen))) {
            k->kind = CALL_TWIN_RESPONSE;
            k->status = res.status;
            k->version = res.version;
        }
    } else {
        log_warn("device: ignoring a message on an unexpected topic (%zu bytes)", tlen);
        return;
    }
    if (!k) {
        log_error("device: out of memory; a message from the hub was dropped");
        return;
    }
    *c->calls_tail = k;
    c->calls_tail = &k->next;
}

/* ---- connection attempts ---------------------------------------------------------------------------- */

static void start_attempt(struct device_client *c);

static void enter_terminal(struct device_client *c, enum device_client_state state, enum device_client_reason reason,
                           const char *detail)
{
    c->phase = PHASE_DEAD;
    report(c, state, reason, detail, 0);
}

/* An attempt or a connection ended for `reason`: retry after a back-off delay, or stop for good. */
static void attempt_failed(struct device_client *c, enum device_client_reason reason, const char *detail)
{
    bool first = !c->ever_connected;
    c->failures++;
    if (reason == DEVICE_CLIENT_REASON_TLS_VERIFY) {
        enter_terminal(c, DEVICE_CLIENT_TLS_FAILED, reason, detail);
        return;
    }
    if (reason == DEVICE_CLIENT_REASON_TOKEN_EXPIRED) {
        enter_terminal(c, DEVICE_CLIENT_AUTH_FAILED, reason, detail);
        return;
    }
    if (reason == DEVICE_CLIENT_REASON_AUTH && (first || ++c->auth_failures >= c->opt.max_auth_failures)) {
        enter_terminal(c, DEVICE_CLIENT_AUTH_FAILED, reason, detail);
        return;
    }
    if (first && c->opt.first_connect_fatal) {
        enter_terminal(c, DEVICE_CLIENT_CONNECT_FAILED, reason, detail);
        return;
    }
    uint32_t delay = backoff_delay_ms(&c->backoff, c->failures, next_random(c));
    c->phase = PHASE_WAITING;
    c->deadline = now_ms() + delay;
    report(c, DEVICE_CLIENT_DISCONNECTED_RETRYING, reason, detail, delay);
}

static void describe_errno(const struct attempt *a, char *out, size_t n)
{
    if (a->gai)
        snprintf(out, n, "cannot resolve host: %s", gai_strerror(a->sys_errno));
    else
        snprintf(out, n, "%s", strerror(a->sys_errno));
}

/* Why the current attempt or connection ended, from what the callbacks and the loop recorded. */
static enum device_client_reason classify(struct device_client *c, char *detail, size_t n)
{
    const struct attempt *a = &c->at;
    if (c->verdict.error != X509_V_OK) {
        snprintf(detail, n, "%s (certificate depth %d)", device_tls_verdict_str(&c->verdict), c->verdict.depth);
        return DEVICE_CLIENT_REASON_TLS_VERIFY;
    }
    if (a->connack > 0) {
        snprintf(detail, n, "CONNACK %d: %s", a->connack, mosquitto_connack_string(a->connack));
        bool auth = a->connack == 2 || a->connack == 4 || a->connack == 5;
        return auth ? DEVICE_CLIENT_REASON_AUTH : DEVICE_CLIENT_REASON_REFUSED;
    }
    if (a->reason) {
        snprintf(detail, n, "%s", a->note);
        return a->reason;
    }
    if (c->phase == PHASE_CONNECTED) {
        snprintf(detail, n, "%s", mosquitto_strerror(a->mosq_rc ? a->mosq_rc : MOSQ_ERR_CONN_LOST));
        return DEVICE_CLIENT_REASON_CONNECTION_LOST;
    }
    if (a->sys_errno && !a->tcp_up) {
        describe_errno(a, detail, n);
        return DEVICE_CLIENT_REASON_UNREACHABLE;
    }
    bool in_handshake = c->tls && a->connack < 0 && (a->mosq_rc == MOSQ_ERR_TLS || a->sys_errno);
    if (in_handshake) {
        if (a->note[0])
            snprintf(detail, n, "%s", a->note);
        else
            describe_errno(a, detail, n);
        return DEVICE_CLIENT_REASON_TLS_HANDSHAKE;
    }
    if (a->sys_errno) {
        char why[128];
        describe_errno(a, why, sizeof why);
        snprintf(detail, n, "connection closed before CONNACK (%s)", why);
        return DEVICE_CLIENT_REASON_CONNECTION_LOST;
    }
    const char *why = mosquitto_strerror(a->mosq_rc ? a->mosq_rc : MOSQ_ERR_CONN_LOST);
    if (!a->tcp_up) {
        snprintf(detail, n, "connection failed (%s)", why);
        return DEVICE_CLIENT_REASON_UNREACHABLE;
    }
    snprintf(detail, n, "connection closed before CONNACK (%s)", why);
    return DEVICE_CLIENT_REASON_CONNECTION_LOST;
}

static void connection_ended(struct device_client *c)
{
    if (c->phase == PHASE_RENEWING) {
        start_attempt(c);
        return;
    }
    char detail[256];
    enum device_client_reason reason = classify(c, detail, sizeof detail);
    attempt_failed(c, reason, detail);
}

/* Ends the attempt from our side (timeout, socket error, refused subscription); libmosquitto closes the
 * socket at the next reconnect or at destroy. */
static void abandon(struct device_client *c, enum device_client_reason reason, const char *note)
{
    c->at.abandoned = true;
    if (reason) {
        c->at.reason = reason;
        snprintf(c->at.note, sizeof c->at.note, "%s", note);
    }
    connection_ended(c);
}

static int make_password(struct device_client *c, char **password)
{
    *password = NULL;
    if (c->cs.signature) {
        *password = strdup(c->cs.signature);
        return *password ? ERR_OK : ERR_NOMEM;
    }
    uint64_t expiry = (uint64_t)time(NULL) + (uint64_t)c->opt.token_lifetime_s;
    return login_password(c->cs.host_name, c->cs.device_id, c->cs.module_id, c->cs.key, c->cs.key_name, expiry,
                          password);
}

static void free_password(char *password)
{
    if (password) {
        OPENSSL_cleanse(password, strlen(password));
        free(password);
    }
}

/* Starts a TCP (+TLS) connection and queues CONNECT with a fresh token. Failures go to attempt_failed. */
static void start_attempt(struct device_client *c)
{
    memset(&c->at, 0, sizeof c->at);
    c->at.connack = -1;
    c->at.suback = -1;
    c->at.c2d_suback = -1;
    c->verdict.error = X509_V_OK;
    c->phase = PHASE_CONNECTING;
    c->deadline = now_ms() + (int64_t)c->opt.connect_timeout_s * 1000;
    if (c->fixed_expiry && c->fixed_expiry <= (uint64_t)time(NULL)) {
        attempt_failed(c, DEVICE_CLIENT_REASON_TOKEN_EXPIRED, "the SharedAccessSignature has expired");
        return;
    }
    char *password = NULL;
    int rc = make_password(c, &password);
    if (!rc && mosquitto_username_pw_set(c->mosq, c->username, password) != MOSQ_ERR_SUCCESS)
        rc = ERR_NOMEM;
    free_password(password);
    if (rc) {
        attempt_failed(c, DEVICE_CLIENT_REASON_PROTOCOL, "cannot build the SAS token");
        return;
    }
    c->token_issued = now_ms();
    errno = 0;
    int mrc = c->mosq_started ? mosquitto_reconnect_async(c->mosq)
                              : mosquitto_connect_async(c->mosq, c->target, c->port, c->opt.keep_alive_s);
    int saved = errno;
    c->mosq_started = true;
    if (mrc == MOSQ_ERR_SUCCESS)
        return;
    c->at.mosq_rc = mrc;
    c->at.abandoned = true;
    if (mrc == MOSQ_ERR_EAI || mrc == MOSQ_ERR_ERRNO) {
        c->at.sys_errno = saved ? saved : ECONNREFUSED;
        c->at.gai = mrc == MOSQ_ERR_EAI;
    } else if (mrc != MOSQ_ERR_TLS) {
        c->at.reason = DEVICE_CLIENT_REASON_PROTOCOL;
        snprintf(c->at.note, sizeof c->at.note, "cannot connect: %s", mosquitto_strerror(mrc));
    }
    connection_ended(c);
}

static void on_connected(struct device_client *c)
{
    c->phase = PHASE_CONNECTED;
    c->ever_connected = true;
    c->failures = 0;
    c->auth_failures = 0;
    int64_t keep = (int64_t)(c->opt.token_lifetime_s - c->opt.renew_margin_s) * 1000;
    c->deadline = c->cs.signature ? INT64_MAX : c->token_issued + keep;
    report(c, DEVICE_CLIENT_CONNECTED, DEVICE_CLIENT_REASON_NONE, "", 0);
}

static void begin_renewal(struct device_client *c)
{
    c->phase = PHASE_RENEWING;
    c->deadline = now_ms() + RENEW_FLUSH_MS;
    report(c, DEVICE_CLIENT_DISCONNECTED_RETRYING, DEVICE_CLIENT_REASON_TOKEN_RENEWAL,
           "reconnecting with a fresh SAS token", 0);
    mosquitto_disconnect(c->mosq);
}

static bool wants_c2d(const struct device_client *c)
{
    return c->opt.on_c2d && !c->cs.module_id;
}

/* After CONNACK 0: subscribe; after SUBACK (both, with C2D): connected. */
static void advance_handshake(struct device_client *c)
{
    if (c->at.connack == 0 && c->at.sub_mid == 0) {
        int mid = 0;
        char *const topics[] = {METHOD_TOPIC_SUBSCRIBE, TWIN_TOPIC_RESPONSES, TWIN_TOPIC_DESIRED};
        int rc = mosquitto_subscribe_multiple(c->mosq, &mid, c->opt.twin ? 3 : 1, topics, 0, 0, NULL);
        if (rc) {
            abandon(c, DEVICE_CLIENT_REASON_PROTOCOL, mosquitto_strerror(rc));
            return;
        }
        c->at.sub_mid = mid;
        if (wants_c2d(c)) { /* QoS 1 (methods and twins stay at 0, as the SDKs have them) */
            char topic[MAX_TOPIC];
            snprintf(topic, sizeof topic, "devices/%s/messages/devicebound/#", c->cs.device_id);
            rc = mosquitto_subscribe(c->mosq, &mid, topic, 1);
            if (rc) {
                abandon(c, DEVICE_CLIENT_REASON_PROTOCOL, mosquitto_strerror(rc));
                return;
            }
            c->at.c2d_mid = mid;
        }
    }
    if (c->at.suback == 0x80)
        abandon(c, DEVICE_CLIENT_REASON_PROTOCOL, "the hub refused the $iothub/methods/POST/# subscription");
    else if (c->at.c2d_suback == 0x80)
        abandon(c, DEVICE_CLIENT_REASON_PROTOCOL, "the hub refused the devicebound (C2D) subscription");
    else if (c->at.suback >= 0 && (!wants_c2d(c) || c->at.c2d_suback >= 0))
        on_connected(c);
}

/* Acts on the clock: first attempt, retry, connect timeout, token renewal. */
static void step_timers(struct device_client *c)
{
    int64_t now = now_ms();
    switch (c->phase) {
    case PHASE_IDLE: start_attempt(c); break;
    case PHASE_WAITING:
        if (now >= c->deadline)
            start_attempt(c);
        break;
    case PHASE_CONNECTING:
        if (now >= c->deadline) {
            char note[64];
            snprintf(note, sizeof note, "no %s within %d s", c->at.connack == 0 ? "SUBACK" : "CONNACK",
                     c->opt.connect_timeout_s);
            abandon(c, DEVICE_CLIENT_REASON_TIMEOUT, note);
        }
        break;
    case PHASE_CONNECTED:
        if (now >= c->deadline)
            begin_renewal(c);
        break;
    case PHASE_RENEWING:
        if (now >= c->deadline)
            start_attempt(c);
        break;
    case PHASE_DEAD: break;
    }
}

/* ---- socket servicing ------------------------------------------------------------------------------- */

/* libmosquitto 2.0.11 keeps want_write set for the whole TLS handshake; polling for POLLOUT then would spin.
 * During the handshake only the TCP connect itself needs POLLOUT; the handshake proceeds on reads. */
static bool wants_write(struct device_client *c)
{
    if (c->phase == PHASE_CONNECTING && !c->at.tcp_up)
        return true;
    if (!mosquitto_want_write(c->mosq))
        return false;
    SSL *ssl = mosquitto_ssl_get(c->mosq);
    return !ssl || SSL_is_init_finished(ssl);
}

static int socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return errno;
    return err;
}

/* After a non-blocking connect reports progress: 0 when connected, else why not. libmosquitto's first TLS
 * write may already have consumed SO_ERROR, so "not connected" without an error means refused. */
static int tcp_connect_error(int fd)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    int err = socket_error(fd);
    if (err)
        return err;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
        return 0;
    return errno == ENOTCONN ? ECONNREFUSED : errno;
}

/* Waits up to timeout_ms for the socket, the self-pipe or nothing, then lets libmosquitto do its work. */
static void wait_and_service(struct device_client *c, int timeout_ms)
{
    int sock = socket_open(c) ? mosquitto_socket(c->mosq) : -1;
    struct pollfd pfd[2] = {{.fd = c->wake[0], .events = POLLIN}, {.fd = sock, .events = POLLIN}};
    if (sock >= 0 && wants_write(c))
        pfd[1].events |= POLLOUT;
    int n = poll(pfd, 2, timeout_ms);
    if (n < 0 && errno != EINTR)
        log_warn("device: poll: %s", strerror(errno));
    if (n > 0 && pfd[0].revents)
        drain_wake(c);
    if (sock < 0)
        return;
    short rev = n > 0 ? pfd[1].revents : 0;
    bool connecting = c->phase == PHASE_CONNECTING;
    if (connecting && !c->at.tcp_up && (rev & (POLLOUT | POLLERR | POLLHUP))) {
        int err = tcp_connect_error(sock);
        if (err) {
            c->at.sys_errno = err;
            abandon(c, DEVICE_CLIENT_REASON_NONE, "");
            return;
        }
        c->at.tcp_up = true;
    }
    int rc = mosquitto_loop(c->mosq, 0, 1);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && !c->at.mosq_rc)
        c->at.mosq_rc = rc;
    /* libmosquitto 2.0.11 retries a TLS handshake that failed with SSL_ERROR_SYSCALL forever: a reset or
     * refused socket must end the attempt here, but only before CONNACK (after it, reads report the close). */
    bool pre_connack = c->at.connack < 0;
    if (connecting && pre_connack && c->phase == PHASE_CONNECTING && (rev & (POLLERR | POLLHUP)) && socket_open(c)) {
        int err = socket_error(mosquitto_socket(c->mosq));
        c->at.sys_errno = err ? err : ECONNRESET;
        abandon(c, DEVICE_CLIENT_REASON_NONE, "");
    }
}

/* After servicing: notice a closed socket, or move the handshake on. */
static void check_progress(struct device_client *c)
{
    bool live = c->phase == PHASE_CONNECTING || c->phase == PHASE_CONNECTED || c->phase == PHASE_RENEWING;
    if (!live)
        return;
    if (c->at.abandoned || mosquitto_socket(c->mosq) < 0) {
        connection_ended(c);
        return;
    }
    if (c->phase == PHASE_CONNECTING)
        advance_handshake(c);
}

/* ---- method calls and answers ----------------------------------------------------------------------- */

static void publish_answer(struct device_client *c, const char *topic, const char *body, size_t len, int qos)
{
    if (!socket_open(c) || c->phase == PHASE_RENEWING) {
        log_info("device: not connected; answer on %s dropped", topic);
        return;
    }
    int rc = mosquitto_publish(c->mosq, NULL, topic, (int)len, body, qos, false);
    if (rc)
        log_warn("device: cannot publish the answer on %s: %s", topic, mosquitto_strerror(rc));
    else
        log_debug("device: answered on %s (%zu bytes)", topic, len);
}

static void answer_call(struct device_client *c, const struct call *k, int status, const char *body)
{
    struct buf topic;
    buf_init(&topic, MAX_TOPIC);
    size_t len = body ? strlen(body) : 0;
    if (method_topic_response(&topic, status, k->rid, strlen(k->rid)) == ERR_OK && len <= MAX_BODY)
        publish_answer(c, (const char *)topic.data, body, len, 0);
    else
        log_warn("device: cannot answer request %s", k->rid);
    buf_cleanup(&topic);
}

static void dispatch_twin(struct device_client *c, const struct call *k)
{
    if (k->kind == CALL_DESIRED) {
        log_debug("device: desired patch $version %lld (%zu bytes)", (long long)k->version, k->payload_len);
        struct device_client_desired d = {(const char *)k->payload, k->payload_len, k->version};
        if (c->opt.on_desired)
            c->opt.on_desired(c->opt.desired_ctx, &d);
        return;
    }
    log_debug("device: twin response %d for rid %s", k->status, k->rid);
    if (c->opt.on_reported)
        c->opt.on_reported(c->opt.reported_ctx, k->rid, k->status, k->version, (const char *)k->payload);
}

static void dispatch_c2d(struct device_client *c, const struct call *k)
{
    log_debug("device: C2D message (%zu bytes, %zu properties)", k->payload_len, k->props.n);
    struct device_client_c2d m = {k->payload, k->payload_len, (const char *const *)k->props.keys,
                                  (const char *const *)k->props.values, k->props.n};
    c->opt.on_c2d(c->opt.c2d_ctx, &m);
}

static void dispatch_one(struct device_client *c, const struct call *k)
{
    if (k->kind == CALL_C2D) {
        dispatch_c2d(c, k);
        return;
    }
    if (k->kind != CALL_METHOD) {
        dispatch_twin(c, k);
        return;
    }
    int status = 200;
    char *response = NULL;
    enum device_client_answer how = DEVICE_CLIENT_ANSWER_NOW;
    log_debug("device: method %s (rid %s, %zu bytes)", k->name, k->rid, k->payload_len);
    if (c->opt.on_method) {
        struct device_client_method_request req = {k->name, k->payload, k->payload_len, k->rid};
        how = c->opt.on_method(c->opt.method_ctx, &req, &status, &response);
    } else {
        status = 501;
    }
    if (how == DEVICE_CLIENT_ANSWER_NOW)
        answer_call(c, k, status, response);
    free(response);
}

static void dispatch_calls(struct device_client *c)
{
    while (c->calls && !atomic_load(&c->stop)) {
        struct call *k = c->calls;
        c->calls = k->next;
        if (!c->calls)
            c->calls_tail = &c->calls;
        dispatch_one(c, k);
        call_free(k);
    }
}

static void answer_free(struct answer *a)
{
    if (!a)
        return;
    free(a->topic);
    free(a->body);
    free(a);
}

static void publish_answers(struct device_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct answer *list = c->answers;
    c->answers = NULL;
    c->answers_tail = &c->answers;
    pthread_mutex_unlock(&c->lock);
    while (list) {
        struct answer *a = list;
        list = a->next;
        publish_answer(c, a->topic, a->body, a->body_len, a->qos);
        answer_free(a);
    }
}

/* Queues a PUBLISH of body[0..len) (copied) on topic (taken; NULL means it could not be built: ERR_NOMEM) for
 * the run loop, and wakes it. Any thread. */
static int enqueue_publish(struct device_client *c, char *topic, const void *body, size_t len, int qos)
{
    struct answer *a = topic ? calloc(1, sizeof *a) : NULL;
    char *copy = a ? malloc(len + 1) : NULL;
    if (!copy) {
        free(topic);
        free(a);
        return ERR_NOMEM;
    }
    if (len)
        memcpy(copy, body, len);
    copy[len] = 0;
    a->topic = topic;
    a->body = copy;
    a->body_len = len;
    a->qos = qos;
    pthread_mutex_lock(&c->lock);
    *c->answers_tail = a;
    c->answers_tail = &a->next;
    pthread_mutex_unlock(&c->lock);
    wake(c);
    return ERR_OK;
}

/* The topic a topic builder wrote into b (rc its result), as a string of its own; the buf is emptied. */
static int take_topic(struct buf *b, int rc, char **topic)
{
    *topic = rc ? NULL : buf_take_str(b);
    buf_cleanup(b);
    return rc;
}

int device_client_respond(struct device_client *c, const char *rid, int status, const char *body, size_t body_len)
{
    if (!c || !rid || (body_len && !body) || body_len > MAX_BODY)
        return ERR_INVALID;
    struct buf b;
    buf_init(&b, MAX_TOPIC);
    char *topic;
    int rc = take_topic(&b, method_topic_response(&b, status, rid, strlen(rid)), &topic);
    return rc ? rc : enqueue_publish(c, topic, body, body_len, 0);
}

int device_client_send_event(struct device_client *c, const char *prop_bag, const char *body, size_t body_len,
                             int qos)
{
    if (!c || !c->cs.device_id || (body_len && !body) || body_len > MAX_BODY || (qos != 0 && qos != 1))
        return ERR_INVALID;
    const char *mod = c->cs.module_id;
    struct buf b;
    buf_init(&b, MAX_TOPIC);
    char *topic;
    /* ids go into the topic as they are, as the SDKs do */
    int rc = take_topic(&b, buf_printf(&b, "devices/%s%s%s/messages/events/%s", c->cs.device_id,
                                       mod ? "/modules/" : "", mod ? mod : "", prop_bag ? prop_bag : ""), &topic);
    if (rc)
        return rc == ERR_TOO_BIG ? ERR_INVALID : rc;
    return enqueue_publish(c, topic, body, body_len, qos);
}

int device_client_report(struct device_client *c, const char *json, size_t len, char *rid)
{
    if (!c || !json || !jsoncheck_is_valid(json, len) || len > MAX_BODY)
        return ERR_INVALID;
    char id[24];
    snprintf(id, sizeof id, "r%u", atomic_fetch_add(&c->report_counter, 1) + 1);
    if (rid)
        snprintf(rid, 24, "%s", id);
    struct buf b;
    buf_init(&b, MAX_TOPIC);
    char *topic;
    int rc = take_topic(&b, twin_topic_reported(&b, id), &topic);
    return rc ? rc : enqueue_publish(c, topic, json, len, 0);
}

/* ---- run / stop ------------------------------------------------------------------------------------- */

static int next_timeout(const struct device_client *c, int64_t now, int64_t end)
{
    int64_t until = end;
    if (c->phase != PHASE_DEAD && c->phase != PHASE_IDLE && c->deadline < until)
        until = c->deadline;
    if (socket_open(c) && now + TICK_MS < until)
        until = now + TICK_MS;
    if (c->calls)
        until = now;
    int64_t ms = until - now;
    return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

int device_client_run(struct device_client *c, int timeout_ms)
{
    if (!c || c->running)
        return ERR_INVALID;
    c->running = true;
    int64_t end = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
    int rc = ERR_OK;
    bool serviced = false; /* every call services the socket once, so run(c, 0) from a loop works */
    for (;;) {
        if (atomic_load(&c->stop))
            break;
        if (c->phase != PHASE_DEAD)
            step_timers(c);
        check_progress(c); /* a timer's action may already have closed the socket (renewal DISCONNECT) */
        if (c->phase == PHASE_DEAD) {
            rc = ERR_CLOSED;
            break;
        }
        int64_t now = now_ms();
        if (now >= end && serviced)
            break;
        serviced = true;
        wait_and_service(c, next_timeout(c, now, end)); /* 0 when the time is up: no waiting */
        check_progress(c);
        dispatch_calls(c);
        publish_answers(c);
    }
    c->running = false;
    return rc;
}

void device_client_stop(struct device_client *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, 1);
    wake(c);
}

const struct device_client_event *device_client_last_event(const struct device_client *c)
{
    return &c->last;
}

/* ---- creation --------------------------------------------------------------------------------------- */

void device_client_options_init(struct device_client_options *o)
{
    memset(o, 0, sizeof *o);
}

static int bad_option(char *err, size_t errlen, const char *text)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", text);
    return ERR_INVALID;
}

static int apply_defaults(struct device_client_options *o, char *err, size_t errlen)
{
    if (o->on_desired || o->on_reported)
        o->twin = true;
    if (!o->keep_alive_s)
        o->keep_alive_s = DEFAULT_KEEP_ALIVE_S;
    if (!o->token_lifetime_s)
        o->token_lifetime_s = DEFAULT_TOKEN_LIFETIME_S;
    if (!o->renew_margin_s)
        o->renew_margin_s = o->token_lifetime_s / 4;
    if (!o->connect_timeout_s)
        o->connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S;
    if (!o->backoff_initial_ms)
        o->backoff_initial_ms = BACKOFF_DEFAULT_INITIAL_MS;
    if (!o->backoff_max_ms)
        o->backoff_max_ms = BACKOFF_DEFAULT_MAX_MS > o->backoff_initial_ms ? BACKOFF_DEFAULT_MAX_MS : o->backoff_initial_ms;
    if (!o->max_auth_failures)
        o->max_auth_failures = DEFAULT_MAX_AUTH_FAILURES;
    if (o->keep_alive_s < 5 || o->keep_alive_s > MAX_KEEP_ALIVE_S)
        return bad_option(err, errlen, "keep-alive must be 5..1177 seconds");
    if (o->token_lifetime_s < MIN_TOKEN_LIFETIME_S || o->token_lifetime_s > MAX_TOKEN_LIFETIME_S)
        return bad_option(err, errlen, "token lifetime must be 5 seconds .. 365 days");
    if (o->renew_margin_s < 0 || o->renew_margin_s >= o->token_lifetime_s)
        return bad_option(err, errlen, "token renew margin must be shorter than the token lifetime");
    if (o->connect_timeout_s < 1 || o->connect_timeout_s > 300)
        return bad_option(err, errlen, "connect timeout must be 1..300 seconds");
    if (o->backoff_initial_ms > o->backoff_max_ms || o->backoff_max_ms > BACKOFF_LIMIT_MS)
        return bad_option(err, errlen, "back-off: initial must not exceed max, max at most one day");
    if (o->port < 0 || o->port > 65535 || o->plain_port < 0 || o->plain_port > 65535)
        return bad_option(err, errlen, "port must be 1..65535");
    return ERR_OK;
}

static int parse_identity(struct device_client *c, const char *text, char *err, size_t errlen)
{
    char why[200] = "";
    int rc = connstr_parse(text, strlen(text), &c->cs, why, sizeof why);
    if (rc == ERR_NOMEM)
        return rc;
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "invalid connection string: %s", why[0] ? why : "cannot parse it");
        return ERR_INVALID;
    }
    if (c->cs.kind == CONNSTR_SERVICE || !c->cs.device_id)
        return bad_option(err, errlen, "invalid connection string: no DeviceId (is it a service connection string?)");
    if (!c->cs.key && !c->cs.signature)
        return bad_option(err, errlen, "invalid connection string: no SharedAccessKey or SharedAccessSignature");
    if (c->cs.signature) {
        struct sas_token tok;
        if (sas_parse(c->cs.signature, strlen(c->cs.signature), &tok))
            return bad_option(err, errlen, "invalid connection string: SharedAccessSignature is not a SAS token");
        c->fixed_expiry = tok.expiry;
    }
    c->target = c->cs.gateway_host_name ? c->cs.gateway_host_name : c->cs.host_name;
    c->client_id = login_client_id(c->cs.device_id, c->cs.module_id);
    c->username = login_username(c->cs.host_name, c->cs.device_id, c->cs.module_id);
    return c->client_id && c->username ? ERR_OK : ERR_NOMEM;
}

static int setup_mosquitto(struct device_client *c, const char *ca_file, char *err, size_t errlen)
{
    c->mosq = mosquitto_new(c->client_id, false, c);
    if (!c->mosq)
        return ERR_NOMEM;
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(c->mosq, on_connect);
    mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
    mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
    mosquitto_message_callback_set(c->mosq, on_message);
    mosquitto_log_callback_set(c->mosq, on_log);
    if (!c->tls)
        return ERR_OK;
    c->ssl_ctx = device_tls_ctx_new(ca_file, c->target, &c->verdict, err, errlen);
    if (!c->ssl_ctx)
        return ERR_INVALID;
    /* Our context as is: libmosquitto must not replace its verification with its defaults. */
    if (mosquitto_int_option(c->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
        mosquitto_void_option(c->mosq, MOSQ_OPT_SSL_CTX, c->ssl_ctx) != MOSQ_ERR_SUCCESS ||
        mosquitto_tls_insecure_set(c->mosq, false) != MOSQ_ERR_SUCCESS)
        return bad_option(err, errlen, "this libmosquitto has no TLS support");
    return ERR_OK;
}

static struct device_client *client_alloc(void)
{
    struct device_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->wake[0] = c->wake[1] = -1;
    c->calls_tail = &c->calls;
    c->answers_tail = &c->answers;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->stop, 0);
    seed_random(c);
    if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    return c;
}

int device_client_new(const char *connection_string, const struct device_client_options *opt,
                      struct device_client **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!connection_string)
        return bad_option(err, errlen, "no connection string");
    struct device_client *c = client_alloc();
    if (!c)
        return ERR_NOMEM;
    if (opt)
        c->opt = *opt;
    int rc = apply_defaults(&c->opt, err, errlen);
    if (!rc)
        rc = parse_identity(c, connection_string, err, errlen);
    if (!rc)
        rc = lib_acquire();
    c->lib_held = rc == ERR_OK;
    if (rc) {
        device_client_free(c);
        return rc;
    }
    c->tls = c->opt.plain_port == 0;
    c->port = c->tls ? (c->opt.port ? c->opt.port : DEFAULT_TLS_PORT) : c->opt.plain_port;
    c->backoff.initial_ms = c->opt.backoff_initial_ms;
    c->backoff.max_ms = c->opt.backoff_max_ms;
    rc = setup_mosquitto(c, c->opt.ca_file, err, errlen);
    c->opt.ca_file = NULL; /* the caller's string is not kept */
    if (rc) {
        device_client_free(c);
        return rc;
    }
    *out = c;
    return ERR_OK;
}

/* ---- shutdown --------------------------------------------------------------------------------------- */

/* DISCONNECT after the queued answers, waiting at most CLOSE_FLUSH_MS for the socket to close. */
static void disconnect_cleanly(struct device_client *c)
{
    publish_answers(c);
    if (mosquitto_disconnect(c->mosq) != MOSQ_ERR_SUCCESS)
        return;
    int64_t end = now_ms() + CLOSE_FLUSH_MS;
    while (mosquitto_socket(c->mosq) >= 0 && now_ms() < end) {
        struct pollfd p = {.fd = mosquitto_socket(c->mosq), .events = POLLIN};
        if (mosquitto_want_write(c->mosq))
            p.events |= POLLOUT;
        poll(&p, 1, 50);
        if (mosquitto_loop(c->mosq, 0, 1) != MOSQ_ERR_SUCCESS)
            break;
    }
}

void device_client_free(struct device_client *c)
{
    if (!c)
        return;
    if (c->mosq) {
        if (c->phase == PHASE_CONNECTED && socket_open(c))
            disconnect_cleanly(c);
        mosquitto_destroy(c->mosq);
    }
    if (c->lib_held)
        lib_release();
    SSL_CTX_free(c->ssl_ctx);
    while (c->calls) {
        struct call *k = c->calls;
        c->calls = k->next;
        call_free(k);
    }
    while (c->answers) {
        struct answer *a = c->answers;
        c->answers = a->next;
        answer_free(a);
    }
    if (c->cs.key)
        OPENSSL_cleanse(c->cs.key, strlen(c->cs.key));
    if (c->cs.signature)
        OPENSSL_cleanse(c->cs.signature, strlen(c->cs.signature));
    connstr_cleanup(&c->cs);
    free(c->client_id);
    free(c->username);
    close(c->wake[0]);
    close(c->wake[1]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- names ------------------------------------------------------------------------------------------ */

const char *device_client_state_str(enum device_client_state s)
{
    switch (s) {
    case DEVICE_CLIENT_CONNECTED: return "connected";
    case DEVICE_CLIENT_DISCONNECTED_RETRYING: return "disconnected, retrying";
    case DEVICE_CLIENT_AUTH_FAILED: return "authentication failed";
    case DEVICE_CLIENT_TLS_FAILED: return "TLS verification failed";
    case DEVICE_CLIENT_CONNECT_FAILED: return "connection failed";
    }
    return "unknown";
}

const char *device_client_reason_str(enum device_client_reason r)
{
    switch (r) {
    case DEVICE_CLIENT_REASON_NONE: return "none";
    case DEVICE_CLIENT_REASON_UNREACHABLE: return "unreachable";
    case DEVICE_CLIENT_REASON_TLS_HANDSHAKE: return "TLS handshake failed";
    case DEVICE_CLIENT_REASON_TLS_VERIFY: return "certificate did not verify";
    case DEVICE_CLIENT_REASON_AUTH: return "credentials rejected";
    case DEVICE_CLIENT_REASON_TOKEN_EXPIRED: return "SAS token expired";
    case DEVICE_CLIENT_REASON_REFUSED: return "connection refused by the hub";
    case DEVICE_CLIENT_REASON_TIMEOUT: return "timed out";
    case DEVICE_CLIENT_REASON_CONNECTION_LOST: return "connection lost";
    case DEVICE_CLIENT_REASON_TOKEN_RENEWAL: return "token renewal";
    case DEVICE_CLIENT_REASON_PROTOCOL: return "protocol error";
    }
    return "unknown";
}

const char *device_client_version(void)
{
    return LOGIN_CLIENT_VERSION;
}
