/* test_rest_http.c -- end-to-end tests of emulator/rest over real HTTP (libcurl) against loop + registry +
 * hub + auth + rest on a free port. The loop runs on a second thread; the tests (cmocka, main thread) only
 * speak HTTP and send one-byte commands to the loop through a pipe. Devices are fake device links
 * (device_link.h, the hub's only way to a connection), and each fake device answers by method name: "echo" (status 200, the payload back, after 50 ms), "fail"
 * (status 500, a non-JSON body), "drop" (disconnects, then comes back), anything else never answers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "db.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "registry.h"
#include "rest.h"
#include "sas.h"

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define RR_KEY "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="
#define RRW_KEY "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="
#define DEV_KEY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define API "api-version=2021-04-12"

/* ---- fake device links (loop thread only) ---- */

struct session {
    struct device_link link; /* first member: the hub hands back &link */
    char ident[2 * REGISTRY_MAX_ID + 2];
    const char *device_id, *module_id;
    unsigned rid_counter;
    int kicked;
};

struct reply {
    struct session *s;
    char rid[24];
    int status;
    uint8_t *body;
    size_t len;
    bool drop;
};

static struct {
    struct loop *loop;
    struct registry *reg;
    struct hub *hub;
    struct auth *auth;
    struct rest *rest;
    int port;
    int cmd[2];
    pthread_t thread;
    struct session dev1, dev2, mod1, dev3;
    char ca_path[64];
    char *owner_token;
    int handoff_fd;
    /* REST_HTTP_VIA=front (the unit.test_rest_http_front run): every request reaches rest through net and the
     * direct-method front (rest_front), as in the emulator; otherwise through MHD's own listener. */
    bool via_front;
    struct net *net;
    struct proto no_mqtt;
} E;

static void session_up(struct session *s)
{
    assert_int_equal(hub_link_online(E.hub, &s->link, s->device_id, s->module_id), ERR_OK);
    hub_link_methods_ready(E.hub, &s->link);
}

static void on_reply(struct loop *l, void *ctx)
{
    struct reply *r = ctx;
    if (r->drop) {
        hub_link_offline(E.hub, &r->s->link);
        session_up(r->s);
    } else {
        hub_link_method_reply(E.hub, &r->s->link, r->rid, r->status, r->body, r->len);
    }
    free(r->body);
    free(r);
}

static int fake_deliver_method(struct device_link *l, const char *method, const uint8_t *payload, size_t len,
                               char *rid)
{
    struct session *s = (struct session *)l;
    snprintf(rid, 17, "%x", ++s->rid_counter);
    struct reply *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->s = s;
    snprintf(r->rid, sizeof r->rid, "%s", rid);
    if (strcmp(method, "echo") == 0) {
        r->status = 200;
        r->body = len ? malloc(len) : NULL;
        if (len)
            memcpy(r->body, payload, len);
        r->len = len;
    } else if (strcmp(method, "fail") == 0) {
        r->status = 500;
        r->body = (uint8_t *)strdup("not json");
        r->len = 8;
    } else if (strcmp(method, "drop") == 0) {
        r->drop = true;
    } else {
        free(r);
        return ERR_OK; /* silent */
    }
    loop_timer_add(E.loop, r->drop ? 0 : 50, on_reply, r);
    return ERR_OK;
}

static void fake_kick(struct device_link *l, const char *reason)
{
    ((struct session *)l)->kicked++;
}

static const struct device_link_ops fake_link_ops = {.deliver_method = fake_deliver_method, .kick = fake_kick};

static void session_init(struct session *s, const char *dev, const char *mod)
{
    memset(s, 0, sizeof *s);
    s->device_id = dev;
    s->module_id = mod;
    snprintf(s->ident, sizeof s->ident, "%s%s%s", dev, mod ? "/" : "", mod ? mod : "");
    s->link.ops = &fake_link_ops;
    s->link.identity = s->ident;
}

static void bring_dev2_up(struct loop *l, void *ctx)
{
    session_up(&E.dev2);
}

/* Commands from the test thread: 'L' dev2 comes online in 300 ms, 'O' dev2 goes offline, 'K' the device
 * "kickme" comes online, 'P' hand E.handoff_fd to rest_add_connection, 'S' rest_shutdown, 'Q' stop. */
static void on_cmd(struct loop *l, int fd, uint32_t events, void *ctx)
{
    char c;
    if (read(fd, &c, 1) != 1)
        return;
    if (c == 'L')
        loop_timer_add(l, 300, bring_dev2_up, NULL);
    else if (c == 'K')
        session_up(&E.dev3);
    else if (c == 'O')
        hub_link_offline(E.hub, &E.dev2.link);
    else if (c == 'P')
        assert_int_equal(rest_add_connection(E.rest, E.handoff_fd, NULL, 0), ERR_OK);
    else if (c == 'S') {
        if (E.net)
            net_stop_accepting(E.net); /* as the emulator does (main.c) */
        rest_shutdown(E.rest);
    }
    else if (c == 'Q')
        loop_stop(l);
}

static void send_cmd(char c)
{
    assert_int_equal(write(E.cmd[1], &c, 1), 1);
}

static void *loop_thread(void *arg)
{
    loop_run(E.loop);
    return NULL;
}

static void add_module(const char *dev, const char *mod)
{
    json_t *body = json_object();
    const struct identity *id = NULL;
    bool created = false;
    char err[128];
    assert_int_equal(registry_put(E.reg, dev, mod, body, NULL, &id, &created, err, sizeof err), ERR_OK);
    json_decref(body);
}

static int net_handoff(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    return rest_add_connection(ctx, fd, addr, len);
}

static int setup(void **state)
{
    char err[256];
    log_set_level(getenv("TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    assert_non_null(E.reg);
    assert_int_equal(registry_ensure_device(E.reg, "device1", DEV_KEY, NULL), ERR_OK);
    assert_int_equal(registry_ensure_device(E.reg, "device2", DEV_KEY, NULL), ERR_OK);
    add_module("device1", "mod1");
    E.hub = hub_new(E.loop, E.reg);
    E.auth = auth_new(NULL, 0, OWNER_KEY);
    snprintf(E.ca_path, sizeof E.ca_path, "/tmp/test_rest_ca_%d.pem", (int)getpid());
    FILE *f = fopen(E.ca_path, "w");
    assert_non_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    const char *via = getenv("REST_HTTP_VIA");
    E.via_front = via && strcmp(via, "front") == 0;
    struct rest_config cfg = {.loop = E.loop, .hub = E.hub, .reg = E.reg, .auth = E.auth, .bind = "127.0.0.1",
                              .http_port = E.via_front ? 0 : -1, .ca_pem_path = E.ca_path, .token_skew_s = 0};
    E.rest = rest_new(&cfg, err, sizeof err);
    if (!E.rest)
        fail_msg("rest_new: %s", err);
    if (E.via_front) {
        E.no_mqtt = (struct proto){.name = "none", .max_frame = 1024};
        struct net_config nc = {.bind = "127.0.0.1", .mqtts_port = -1, .https_port = -1, .mqtt_port = -1,
                                .amqps_port = -1, .amqp_port = -1, .http_port = 0, .mqtt = &E.no_mqtt,
                                .http = rest_front(E.rest), .http_handoff = net_handoff, .http_ctx = E.rest,
                                .max_connections = 1000, .connect_timeout_s = 30};
        E.net = net_new(E.loop, &nc, err, sizeof err);
        if (!E.net)
            fail_msg("net_new: %s", err);
        E.port = net_port(E.net, NET_HTTP);
    } else {
        E.port = rest_actual_http_port(E.rest);
    }
    assert_true(E.port > 0);
    session_init(&E.dev1, "device1", NULL);
    session_init(&E.dev2, "device2", NULL);
    session_init(&E.mod1, "device1", "mod1");
    session_init(&E.dev3, "kickme", NULL);
    session_up(&E.dev1);
    session_up(&E.mod1);
    assert_int_equal(pipe(E.cmd), 0);
    assert_int_equal(loop_add_fd(E.loop, E.cmd[0], EPOLLIN, on_cmd, NULL), ERR_OK);
    assert_int_equal(sas_build("localhost", OWNER_KEY, (uint64_t)time(NULL) + 3600, "iothubowner", &E.owner_token),
                     ERR_OK);
    assert_int_equal(pthread_create(&E.thread, NULL, loop_thread, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    send_cmd('Q');
    pthread_join(E.thread, NULL);
    net_free(E.net); /* before rest: its front's connections are rest's */
    rest_free(E.rest);
    hub_free(E.hub);
    auth_free(E.auth);
    struct db *reg_db = registry_db(E.reg);
    registry_free(E.reg);
    db_close(reg_db);
    loop_del_fd(E.loop, E.cmd[0]);
    loop_free(E.loop);
    close(E.cmd[0]);
    close(E.cmd[1]);
    unlink(E.ca_path);
    free(E.owner_token);
    curl_global_cleanup();
    return 0;
}

/* ---- HTTP client ---- */

struct resp {
    long status;
    char *body;
    size_t len;
    char errorcode[64], ctype[128], etag[128], allow[64], continuation[64], item_type[32];
    bool has_continuation;
    CURLcode rc;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct resp *r = ud;
    char *b = realloc(r->body, r->len + sz * n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, sz * n);
    r->len += sz * n;
    b[r->len] = '\0';
    r->body = b;
    return sz * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    const char *v = line + nlen + 1;
    while (*v == ' ')
        v++;
    size_t vlen = (size_t)(line + len - v);
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    snprintf(out, outlen, "%.*s", (int)vlen, v);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct resp *r = ud;
    header_value(p, sz * n, "iothub-errorcode", r->errorcode, sizeof r->errorcode);
    header_value(p, sz * n, "Content-Type", r->ctype, sizeof r->ctype);
    header_value(p, sz * n, "ETag", r->etag, sizeof r->etag);
    header_value(p, sz * n, "Allow", r->allow, sizeof r->allow);
    header_value(p, sz * n, "x-ms-item-type", r->item_type, sizeof r->item_type);
    if (sz * n > 18 && strncasecmp(p, "x-ms-continuation:", 18) == 0) {
        r->has_continuation = true;
        header_value(p, sz * n, "x-ms-continuation", r->continuation, sizeof r->continuation);
    }
    return sz * n;
}

struct req {
    const char *method, *path, *body, *authz, *if_match;
    const char *extra[3]; /* more header lines, NULL-terminated */
    long timeout_ms;
};

static CURL *make_easy(const struct req *q, struct resp *r, struct curl_slist **hdrs)
{
    char url[16384], line[1024];
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", E.port, q->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(q->body));
    }
    *hdrs = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    if (q->authz) {
        snprintf(line, sizeof line, "Authorization: %s", q->authz);
        *hdrs = curl_slist_append(*hdrs, line);
    }
    if (q->if_match) {
        snprintf(line, sizeof line, "If-Match: %s", q->if_match);
        *hdrs = curl_slist_append(*hdrs, line);
    }
    for (size_t i = 0; i < 3 && q->extra[i]; i++)
        *hdrs = curl_slist_append(*hdrs, q->extra[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 30000L);
    return c;
}

static void perform(const struct req *q, struct resp *r)
{
    struct curl_slist *hdrs = NULL;
    CURL *c = make_easy(q, r, &hdrs);
    r->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
}

static void http(const char *method, const char *path, const char *body, const char *authz, struct resp *r)
{
    struct req q = {.method = method, .path = path, .body = body, .authz = authz};
    perform(&q, r);
    assert_int_equal(r->rc, CURLE_OK);
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

static char *token(const char *key, const char *name)
{
    char *t = NULL;
    assert_int_equal(sas_build("localhost", key, (uint64_t)time(NULL) + 3600, name, &t), ERR_OK);
    return t;
}

/* Envelope A: "ErrorCode:<name>;<text>" starts the Message; the ExceptionMessage carries a tracking id. */
static void assert_envelope_a(const struct resp *r, long status, const char *name, const char *text)
{
    assert_int_equal(r->status, status);
    assert_string_equal(r->errorcode, name);
    assert_string_equal(r->ctype, "application/json; charset=utf-8");
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    char want[512];
    snprintf(want, sizeof want, "ErrorCode:%s;%s", name, text ? text : "");
    const char *msg = json_string_value(json_object_get(j, "Message"));
    assert_non_null(msg);
    if (text)
        assert_string_equal(msg, want);
    else
        assert_memory_equal(msg, want, strlen(want));
    assert_memory_equal(json_string_value(json_object_get(j, "ExceptionMessage")), "Tracking ID:", 12);
    json_decref(j);
}

/* Envelope B: Message is JSON text with the numeric errorCode; returns that inner object (caller decrefs). */
static json_t *assert_envelope_b(const struct resp *r, long status, const char *name, int code, const char *message)
{
    assert_int_equal(r->status, status);
    assert_string_equal(r->errorcode, name);
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "ExceptionMessage")), "");
    json_t *inner = json_loads(json_string_value(json_object_get(j, "Message")), 0, NULL);
    json_decref(j);
    assert_non_null(inner);
    assert_int_equal(json_integer_value(json_object_get(inner, "errorCode")), code);
    if (message)
        assert_string_equal(json_string_value(json_object_get(inner, "message")), message);
    assert_non_null(strstr(json_string_value(json_object_get(inner, "trackingId")), "-TimeStamp:"));
    assert_non_null(json_string_value(json_object_get(inner, "timestampUtc")));
    return inner;
}

static json_t *health(void)
{
    struct resp r;
    http("GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    resp_free(&r);
    return j;
}

static json_int_t health_field(const char *name)
{
    json_t *j = health();
    json_int_t v = json_integer_value(json_object_get(j, name));
    json_decref(j);
    return v;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- tests: emulator routes ---- */

static void health_and_ca(void **state)
{
    struct resp r;
    http("GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json; charset=utf-8");
    assert_string_equal(r.body, "{\"status\":\"ok\",\"devices\":2,\"connections\":2,\"methodListeners\":2,"
                                "\"desiredListeners\":0,\"callsPending\":0,\"telemetryReceived\":0}");
    resp_free(&r);
    http("GET", "/emulator/ca.pem", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/x-pem-file");
    assert_string_equal(r.body, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    resp_free(&r);
    char moved[80];
    snprintf(moved, sizeof moved, "%s.away", E.ca_path);
    assert_int_equal(rename(E.ca_path, moved), 0);
    http("GET", "/emulator/ca.pem", NULL, NULL, &r);
    assert_envelope_a(&r, 404, "NotFound", NULL);
    resp_free(&r);
    assert_int_equal(rename(moved, E.ca_path), 0);
}

static void unknown_route_and_wrong_method(void **state)
{
    struct resp r;
    http("GET", "/nothing/here?api-version=1", NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "NotFound", NULL);
    resp_free(&r);
    http("GET", "/twins/device1/methods?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 405, "MethodNotAllowed", NULL);
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
    http("POST", "/devices/device1?" API, "{}", E.owner_token, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, PUT, DELETE");
    resp_free(&r);
    http("GET", "/devices/bad%zz?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
}

static void authorization(void **state)
{
    struct resp r;
    const char *body = "{\"methodName\":\"echo\"}";
    http("POST", "/twins/device1/methods?" API, body, NULL, &r);
    assert_envelope_a(&r, 401, "IotHubUnauthorizedAccess", "Unauthorized");
    resp_free(&r);
    char *wrong = token(RR_KEY, "iothubowner");
    http("POST", "/twins/device1/methods?" API, body, wrong, &r);
    assert_envelope_a(&r, 401, "IotHubUnauthorizedAccess", "Unauthorized");
    resp_free(&r);
    free(wrong);
    char *rr = token(RR_KEY, "registryRead");
    http("POST", "/twins/device1/methods?" API, body, rr, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    http("GET", "/devices/device1?" API, NULL, rr, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("PUT", "/devices/rrdev?" API, "{\"deviceId\":\"rrdev\"}", rr, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    free(rr);
    char *dev = NULL;
    assert_int_equal(sas_build("localhost/devices/device1", DEV_KEY, (uint64_t)time(NULL) + 60, NULL, &dev), ERR_OK);
    http("GET", "/devices/device1?" API, NULL, dev, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    free(dev);
    http("POST", "/twins/device1/methods", body, E.owner_token, &r);
    assert_envelope_a(&r, 400, "InvalidProtocolVersion", NULL);
    resp_free(&r);
}

/* The cache of verified tokens: exact text only, expiry and permissions checked again on every use, and more
 * distinct tokens than it holds. */
static void authorization_cache(void **state)
{
    struct resp r;
    const char *body = "{\"methodName\":\"echo\"}";
    char *owner = NULL;
    assert_int_equal(sas_build("localhost", OWNER_KEY, (uint64_t)time(NULL) + 1, "iothubowner", &owner), ERR_OK);
    for (int i = 0; i < 3; i++) {
        http("POST", "/twins/device1/methods?" API, body, owner, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    /* the same token with one signature character changed */
    char *forged = strdup(owner);
    char *sig = strstr(forged, "sig=");
    assert_non_null(sig);
    sig[4] = sig[4] == 'A' ? 'B' : 'A';
    http("POST", "/twins/device1/methods?" API, body, forged, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    free(forged);
    /* a registryRead token verified for a read is still refused a write and a method call */
    char *rr = token(RR_KEY, "registryRead");
    http("GET", "/devices/device1?" API, NULL, rr, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("PUT", "/devices/rrdev2?" API, "{\"deviceId\":\"rrdev2\"}", rr, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    http("POST", "/twins/device1/methods?" API, body, rr, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    http("GET", "/devices/device1?" API, NULL, rr, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(rr);
    /* 100 distinct tokens (more than the cache holds), then the first again */
    char *first = NULL;
    for (int i = 0; i < 100; i++) {
        char *t = NULL;
        assert_int_equal(sas_build("localhost", OWNER_KEY, (uint64_t)time(NULL) + 3600 + i, "iothubowner", &t),
                         ERR_OK);
        http("GET", "/devices/device1?" API, NULL, t, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        if (i == 0)
            first = t;
        else
            free(t);
    }
    http("GET", "/devices/device1?" API, NULL, first, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(first);
    /* the first token expires (skew 0): refused although it was verified before */
    while (time(NULL) <= (time_t)strtoll(strstr(owner, "se=") + 3, NULL, 10))
        usleep(50 * 1000);
    http("POST", "/twins/device1/methods?" API, body, owner, &r);
    assert_envelope_a(&r, 401, "IotHubUnauthorizedAccess", "Unauthorized");
    resp_free(&r);
    free(owner);
}

/* ---- tests: registry ---- */

static void registry_devices(void **state)
{
    struct resp r;
    char *rw = token(RRW_KEY, "registryReadWrite");
    http("PUT", "/devices/newdev?" API, "{\"deviceId\":\"newdev\"}", rw, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json; charset=utf-8");
    assert_true(r.etag[0] == '"');
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "deviceId")), "newdev");
    const char *pk = json_string_value(json_object_get(json_object_get(json_object_get(j, "authentication"),
                                                                       "symmetricKey"), "primaryKey"));
    assert_int_equal(strlen(pk), 44);
    json_decref(j);
    resp_free(&r);
    http("PUT", "/devices/newdev?" API, "{\"deviceId\":\"newdev\"}", rw, &r);
    assert_envelope_a(&r, 409, "DeviceAlreadyExists", "A device with ID 'newdev' is already registered.");
    resp_free(&r);
    struct req q = {.method = "PUT", .path = "/devices/newdev?" API, .body = "{\"deviceId\":\"newdev\"}",
                    .authz = rw, .if_match = "\"bogus\""};
    perform(&q, &r);
    assert_envelope_a(&r, 412, "PreconditionFailed", NULL);
    resp_free(&r);
    q.if_match = "\"*\"";
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("PUT", "/devices/newdev2?" API, "not json", rw, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http("PUT", "/devices/other?" API, "{\"deviceId\":\"different\"}", rw, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
    free(rw);
}

/* POST /devices, the bulk registry operation: its answers at the HTTP level (the items: test_bulk.c). */
static void registry_bulk(void **state)
{
    struct resp r;
    char *rw = token(RRW_KEY, "registryReadWrite");
    http("POST", "/devices?" API, "[{\"id\":\"bulk-a\",\"importMode\":\"create\"},{\"id\":\"bulk-b\"}]", rw, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json; charset=utf-8");
    assert_string_equal(r.body, "{\"isSuccessful\":true,\"errors\":[],\"warnings\":[]}");
    resp_free(&r);
    http("GET", "/devices/bulk-b?" API, NULL, rw, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("POST", "/devices?" API, "[{\"id\":\"bulk-a\",\"importMode\":\"create\"},{\"id\":\"bulk-c\"}]", rw, &r);
    assert_int_equal(r.status, 400); /* one failed item: the result, the other item applied */
    json_t *j = json_loads(r.body, 0, NULL);
    assert_false(json_is_true(json_object_get(j, "isSuccessful")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "errors"), 0),
                                                          "errorCode")), "DeviceAlreadyExists");
    json_decref(j);
    resp_free(&r);
    http("DELETE", "/devices/bulk-c?" API, NULL, rw, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    http("POST", "/devices?" API, "[{\"id\":\"x\"},{\"id\":\"x\"}]", rw, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", "device 'x' appears more than once in the request");
    resp_free(&r);
    http("POST", "/devices?" API, "[{\"id\":", rw, &r);
    assert_envelope_a(&r, 400, "IotHubFormatError", "The request body is not JSON.");
    resp_free(&r);
    http("POST", "/devices?" API, "[]", NULL, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    http("PUT", "/devices?" API, "[]", rw, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, POST");
    resp_free(&r);
    http("POST", "/devices?" API, "[{\"id\":\"bulk-a\",\"importMode\":\"delete\"},"
         "{\"id\":\"bulk-b\",\"importMode\":\"Delete\"}]", rw, &r); /* and leave the registry as it was */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("GET", "/devices/bulk-a?" API, NULL, rw, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    free(rw);
}

static void registry_reads_and_delete(void **state)
{
    struct resp r;
    http("GET", "/devices/newdev?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.etag[0] == '"');
    resp_free(&r);
    http("GET", "/devices/?" API, NULL, E.owner_token, &r);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_array_size(j), 3);
    json_decref(j);
    resp_free(&r);
    http("GET", "/devices?top=1&" API, NULL, E.owner_token, &r);
    j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    resp_free(&r);
    http("GET", "/devices/?top=0&" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
    struct req q = {.method = "DELETE", .path = "/devices/newdev?" API, .authz = E.owner_token, .if_match = "\"x\""};
    perform(&q, &r);
    assert_int_equal(r.status, 412);
    resp_free(&r);
    q.if_match = "\"*\"";
    perform(&q, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    resp_free(&r);
    http("GET", "/devices/newdev?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "newdev");
    resp_free(&r);
    http("DELETE", "/devices/newdev?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "newdev");
    resp_free(&r);
}

static void registry_encoded_ids_and_modules(void **state)
{
    struct resp r;
    http("PUT", "/devices/dev%231?" API, "{\"deviceId\":\"dev#1\"}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("GET", "/devices/dev%231?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"deviceId\":\"dev#1\""));
    resp_free(&r);
    http("PUT", "/devices/dev%231/modules/m1?" API, "{\"deviceId\":\"dev#1\",\"moduleId\":\"m1\"}", E.owner_token, &r);
    assert_int_equal(r.status, 201);
    assert_true(r.etag[0] == '"');
    resp_free(&r);
    struct req q = {.method = "PUT", .path = "/devices/dev%231/modules/m1?" API,
                    .body = "{\"deviceId\":\"dev#1\",\"moduleId\":\"m1\"}", .authz = E.owner_token, .if_match = "*"};
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("PUT", "/devices/dev%231/modules/m1?" API, "{\"deviceId\":\"dev#1\",\"moduleId\":\"m1\"}", E.owner_token, &r);
    assert_envelope_a(&r, 409, "ModuleAlreadyExistsOnDevice", NULL);
    resp_free(&r);
    http("GET", "/devices/dev%231/modules?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    resp_free(&r);
    http("GET", "/devices/nodev/modules?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "nodev");
    resp_free(&r);
    http("DELETE", "/devices/dev%231/modules/m1?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    http("GET", "/devices/dev%231/modules/m1?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "ModuleNotFound", NULL);
    resp_free(&r);
    http("DELETE", "/devices/dev%231?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
}

static void wait_connections(json_int_t want)
{
    int64_t t0 = now_ms();
    while (health_field("connections") != want && now_ms() - t0 < 3000)
        usleep(10000);
    assert_int_equal(health_field("connections"), want);
}

static void registry_disable_and_delete_disconnect(void **state)
{
    struct resp r;
    http("PUT", "/devices/kickme?" API, "{\"deviceId\":\"kickme\"}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    send_cmd('K');
    wait_connections(3);
    struct req q = {.method = "PUT", .path = "/devices/kickme?" API,
                    .body = "{\"deviceId\":\"kickme\",\"status\":\"disabled\"}", .authz = E.owner_token,
                    .if_match = "*"};
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"disabled\""));
    resp_free(&r);
    wait_connections(2);
    q.body = "{\"deviceId\":\"kickme\",\"status\":\"enabled\"}";
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    send_cmd('K');
    wait_connections(3);
    http("DELETE", "/devices/kickme?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    wait_connections(2);
}

/* ---- tests: direct methods ---- */

static void method_answered(void **state)
{
    struct resp r;
    http("POST", "/twins/device1/methods?" API,
         "{\"methodName\":\"echo\",\"payload\":{\"method_number\":\"42\"},\"responseTimeoutInSeconds\":30,"
         "\"connectTimeoutInSeconds\":0}",
         E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json; charset=utf-8");
    assert_string_equal(r.body, "{\"status\":200,\"payload\":{\"method_number\":\"42\"}}");
    assert_string_equal(r.errorcode, "");
    resp_free(&r);
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"echo\",\"payload\":null}", E.owner_token, &r);
    assert_string_equal(r.body, "{\"status\":200,\"payload\":null}");
    resp_free(&r);
    http("POST", "/twins/device1/modules/mod1/methods?" API, "{\"methodName\":\"echo\",\"payload\":[1,\"x\"]}",
         E.owner_token, &r);
    assert_string_equal(r.body, "{\"status\":200,\"payload\":[1,\"x\"]}");
    resp_free(&r);
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"fail\"}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":500,\"payload\":\"not json\"}");
    resp_free(&r);
}

/* A long request head (a 7,000-byte query beside the token) fits the per-connection memory of MHD
 * (REST_CONN_MEMORY), with a 100 KiB payload through in both directions on the same request. */
static void method_long_head(void **state)
{
    size_t pad = 7000, n = 100 * 1024;
    char *path = malloc(pad + 128), *body = malloc(n + 64);
    assert_non_null(path);
    assert_non_null(body);
    size_t off = (size_t)snprintf(path, 128, "/twins/device1/methods?" API "&pad=");
    memset(path + off, 'p', pad);
    path[off + pad] = '\0';
    off = (size_t)snprintf(body, 64, "{\"methodName\":\"echo\",\"payload\":\"");
    memset(body + off, 'w', n);
    snprintf(body + off + n, 8, "\"}");
    struct resp r;
    http("POST", path, body, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, strlen("{\"status\":200,\"payload\":\"\"}") + n);
    resp_free(&r);
    free(path);
    free(body);
}

static void method_not_found_and_offline(void **state)
{
    struct resp r;
    http("POST", "/twins/ghost/methods?" API, "{\"methodName\":\"echo\"}", E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "ghost");
    resp_free(&r);
    http("POST", "/twins/device1/modules/ghost/methods?" API, "{\"methodName\":\"echo\"}", E.owner_token, &r);
    assert_envelope_a(&r, 404, "ModuleNotFound", NULL);
    resp_free(&r);
    http("POST", "/twins/device2/methods?" API, "{\"methodName\":\"echo\"}", E.owner_token, &r);
    json_t *inner = assert_envelope_b(&r, 404, "DeviceNotOnline", 404103, "Timed out waiting for device to connect.");
    assert_string_equal(json_string_value(json_object_get(json_object_get(inner, "info"), "timeout")), "00:00:00");
    json_decref(inner);
    resp_free(&r);
}

static void method_connect_timeout(void **state)
{
    struct resp r;
    int64_t t0 = now_ms();
    http("POST", "/twins/device2/methods?" API, "{\"methodName\":\"echo\",\"connectTimeoutInSeconds\":1}",
         E.owner_token, &r);
    int64_t took = now_ms() - t0;
    json_t *inner = assert_envelope_b(&r, 404, "DeviceNotOnline", 404103, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(inner, "info"), "timeout")), "00:00:01");
    json_decref(inner);
    resp_free(&r);
    assert_true(took >= 900 && took < 5000);
    /* a late device: online after 300 ms, inside the 5 s connect timeout */
    send_cmd('L');
    http("POST", "/twins/device2/methods?" API,
         "{\"methodName\":\"echo\",\"payload\":\"late\",\"connectTimeoutInSeconds\":5}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":200,\"payload\":\"late\"}");
    resp_free(&r);
    send_cmd('O');
}

static void method_validation(void **state)
{
    struct resp r;
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"echo\",\"responseTimeoutInSeconds\":4}",
         E.owner_token, &r);
    json_decref(assert_envelope_b(&r, 400, "ArgumentInvalid", 400004,
                                  "responseTimeoutInSeconds must be within [5; 300]."));
    resp_free(&r);
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":", E.owner_token, &r);
    json_decref(assert_envelope_b(&r, 400, "IotHubFormatError", 400006, NULL));
    resp_free(&r);
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"a/b\"}", E.owner_token, &r);
    json_decref(assert_envelope_b(&r, 400, "ArgumentInvalid", 400004, NULL));
    resp_free(&r);
    size_t n = 128 * 1024 + 10;
    char *big = malloc(n + 64);
    size_t off = (size_t)snprintf(big, 64, "{\"methodName\":\"echo\",\"payload\":\"");
    memset(big + off, 'y', n);
    snprintf(big + off + n, 8, "\"}");
    http("POST", "/twins/device1/methods?" API, big, E.owner_token, &r);
    json_decref(assert_envelope_b(&r, 413, "MessageTooLarge", 413001, NULL));
    resp_free(&r);
    /* 100 KiB goes through, both ways */
    off = (size_t)snprintf(big, 64, "{\"methodName\":\"echo\",\"payload\":\"");
    memset(big + off, 'z', 100 * 1024);
    snprintf(big + off + 100 * 1024, 8, "\"}");
    http("POST", "/twins/device1/methods?" API, big, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, strlen("{\"status\":200,\"payload\":\"\"}") + 100 * 1024);
    resp_free(&r);
    free(big);
}

static void method_device_drops_and_times_out(void **state)
{
    struct resp r;
    int64_t t0 = now_ms();
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"drop\"}", E.owner_token, &r);
    json_decref(assert_envelope_b(&r, 404, "DeviceNotOnline", 404103, NULL));
    resp_free(&r);
    assert_true(now_ms() - t0 < 2000);
    t0 = now_ms();
    http("POST", "/twins/device1/methods?" API, "{\"methodName\":\"silent\",\"responseTimeoutInSeconds\":5}",
         E.owner_token, &r);
    json_t *inner = assert_envelope_b(&r, 504, "GatewayTimeout", 504101, "Timed out waiting for the response from device.");
    assert_true(json_is_object(json_object_get(inner, "info")));
    json_decref(inner);
    resp_free(&r);
    int64_t took = now_ms() - t0;
    assert_true(took >= 4900 && took < 9000);
}

static void method_caller_goes_away(void **state)
{
    struct resp r;
    struct req q = {.method = "POST", .path = "/twins/device1/methods?" API,
                    .body = "{\"methodName\":\"silent\",\"responseTimeoutInSeconds\":60}", .authz = E.owner_token,
                    .timeout_ms = 300};
    perform(&q, &r);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    resp_free(&r);
    int64_t t0 = now_ms();
    while (health_field("callsPending") != 0 && now_ms() - t0 < 3000)
        usleep(20000);
    assert_int_equal(health_field("callsPending"), 0);
}

/* The hang-up watch stays on a keep-alive connection across calls (issue 20): a second call on the same
 * connection, whose caller then goes away, is still cancelled. */
static void method_caller_goes_away_keep_alive(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *bodies[] = {"{\"methodName\":\"echo\",\"payload\":1}",
                            "{\"methodName\":\"silent\",\"responseTimeoutInSeconds\":60}"};
    for (int i = 0; i < 2; i++) {
        char req[1024];
        int n = snprintf(req, sizeof req,
                         "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         E.owner_token, strlen(bodies[i]), bodies[i]);
        assert_int_equal(write(fd, req, (size_t)n), n);
        if (i == 0) { /* the first is answered: read up to its body */
            char buf[2048];
            size_t got = 0;
            int64_t t0 = now_ms();
            while (!memmem(buf, got, "\"payload\":1}", 12) && got < sizeof buf && now_ms() - t0 < 3000) {
                ssize_t k = read(fd, buf + got, sizeof buf - got);
                assert_true(k > 0);
                got += (size_t)k;
            }
            assert_non_null(memmem(buf, got, "{\"status\":200,\"payload\":1}", 26));
        }
    }
    int64_t t0 = now_ms();
    while (health_field("callsPending") == 0 && now_ms() - t0 < 3000)
        usleep(5000);
    assert_int_equal(health_field("callsPending"), 1);
    close(fd);
    t0 = now_ms();
    while (health_field("callsPending") != 0 && now_ms() - t0 < 3000)
        usleep(20000);
    assert_int_equal(health_field("callsPending"), 0);
}

/* ---- raw HTTP/1.1: pipelining, 100-continue, Connection: close, HTTP/1.0, chunked bodies ----
 * The same assertions hold through MHD and through the direct-method front, which hands what it does not
 * serve to MHD: the two runs of this program (unit.test_rest_http, unit.test_rest_http_front) check both. */

/* rcvbuf > 0: a small receive buffer, so the server's writes of a large answer fall short. */
static int raw_connect_rcvbuf(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int raw_connect(void)
{
    return raw_connect_rcvbuf(0);
}

static void raw_send(int fd, const char *text, size_t len)
{
    assert_int_equal(write(fd, text, len), (ssize_t)len);
}

/* A method call's request text for body (the caller frees it). */
static char *raw_method(const char *body, const char *extra_headers)
{
    char *req = NULL;
    assert_true(asprintf(&req,
                         "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                         "%sContent-Length: %zu\r\n\r\n%s",
                         E.owner_token, extra_headers, strlen(body), body) > 0);
    return req;
}

/* Reads n whole responses (framed by Content-Length) from fd into buf; their count. Stops early at EOF. */
static int raw_read(int fd, int n, char *buf, size_t cap, size_t *got)
{
    *got = 0;
    int done = 0;
    size_t at = 0; /* start of the response being read */
    while (done < n) {
        char *end = memmem(buf + at, *got - at, "\r\n\r\n", 4);
        if (end) {
            const char *cl = strcasestr(buf + at, "Content-Length:");
            size_t len = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
            size_t total = (size_t)(end + 4 - (buf + at)) + len;
            if (*got - at >= total) {
                at += total;
                done++;
                continue;
            }
        }
        assert_true(*got + 1 < cap);
        ssize_t k = read(fd, buf + *got, cap - 1 - *got);
        if (k <= 0)
            break;
        *got += (size_t)k;
        buf[*got] = '\0';
    }
    return done;
}

static void raw_pipelined(void **state)
{
    char *a = raw_method("{\"methodName\":\"echo\",\"payload\":\"first\"}", "");
    char *b = raw_method("{\"methodName\":\"echo\",\"payload\":\"second\"}", "");
    char all[4096];
    /* Two calls that wait for the device (50 ms each), then a request MHD answers, in one write. */
    snprintf(all, sizeof all, "%s%sGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", a, b);
    int fd = raw_connect();
    raw_send(fd, all, strlen(all));
    char buf[16384];
    size_t got;
    assert_int_equal(raw_read(fd, 3, buf, sizeof buf, &got), 3);
    const char *p1 = strstr(buf, "{\"status\":200,\"payload\":\"first\"}");
    const char *p2 = strstr(buf, "{\"status\":200,\"payload\":\"second\"}");
    const char *p3 = strstr(buf, "\"status\":\"ok\"");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_non_null(p3);
    assert_true(p1 < p2 && p2 < p3); /* answered in the order asked */
    /* The connection is still usable, for a method call too. */
    raw_send(fd, a, strlen(a));
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":\"first\"}"));
    close(fd);
    free(a);
    free(b);
}

static void raw_expect_continue(void **state)
{
    const char *body = "{\"methodName\":\"echo\",\"payload\":[1,2]}";
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                     "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
                     E.owner_token, strlen(body));
    int fd = raw_connect();
    raw_send(fd, head, (size_t)n);
    char buf[4096];
    size_t got = 0;
    while (!memmem(buf, got, "\r\n\r\n", 4)) {
        ssize_t k = read(fd, buf + got, sizeof buf - 1 - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    buf[got] = '\0';
    assert_true(strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    assert_int_equal(got, 25); /* nothing else before the body is sent */
    raw_send(fd, body, strlen(body));
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_true(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":[1,2]}"));
    close(fd);
}

static void raw_connection_close(void **state)
{
    char *req = raw_method("{\"methodName\":\"echo\",\"payload\":3}", "Connection: close\r\n");
    int fd = raw_connect();
    raw_send(fd, req, strlen(req));
    char buf[4096];
    size_t got;
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":3}"));
    assert_int_equal(read(fd, buf, sizeof buf), 0); /* then the server closes */
    close(fd);
    free(req);
}

/* A 100 KiB payload sent in uneven pieces comes back byte for byte (net reads a body under way straight into
 * its buffer; the front reserves room for the whole request), to a client with a 4 KiB receive buffer (net
 * writes a large answer from the device's bytes at once and queues what the socket did not take). */
static void raw_large_body_in_pieces(void **state)
{
    enum { PAYLOAD = 100 * 1024 };
    char *body = malloc(PAYLOAD + 64);
    assert_non_null(body);
    int off = snprintf(body, 64, "{\"methodName\":\"echo\",\"payload\":\"");
    for (int i = 0; i < PAYLOAD; i++)
        body[off + i] = (char)('a' + (i * 7 + i / 977) % 26);
    snprintf(body + off + PAYLOAD, 8, "\"}");
    char *req = raw_method(body, "");
    size_t len = strlen(req);
    int fd = raw_connect_rcvbuf(4096);
    static const size_t pieces[] = {1, 200, 3000, 1, 16384, 40000, 7};
    size_t at = 0;
    for (size_t i = 0; at < len; i++) {
        size_t n = i < sizeof pieces / sizeof pieces[0] ? pieces[i] : len - at;
        if (n > len - at)
            n = len - at;
        raw_send(fd, req + at, n);
        at += n;
    }
    size_t cap = 2 * PAYLOAD, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(raw_read(fd, 1, buf, cap, &got), 1);
    assert_true(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    const char *p = strstr(buf, "{\"status\":200,\"payload\":\"");
    assert_non_null(p);
    p += 25;
    assert_int_equal(memcmp(p, body + off, PAYLOAD), 0);
    assert_memory_equal(p + PAYLOAD, "\"}", 2);
    close(fd);
    free(buf);
    free(req);
    free(body);
}

/* The listening socket of E.port in this process (found by its bound port), or -1. */
static int listener_fd(void)
{
    for (int fd = 3; fd < 4096; fd++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        int listening = 0;
        socklen_t ll = sizeof listening;
        if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
            ntohs(sa.sin_port) == E.port && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 &&
            listening)
            return fd;
    }
    return -1;
}

/* 48 pipelined 100 KiB echo calls (4.8 MB) from a client that reads only when it cannot write, to a server
 * whose sockets have a 4 KiB send buffer (set on the listener, so accepted sockets inherit it): the server
 * stops reading while a call waits (no "input buffer full"), answers in order, and what the socket does not
 * take is queued and sent later, byte for byte. */
static void raw_pipelined_large(void **state)
{
    int lfd = listener_fd(), small = 4096, old = 0;
    socklen_t ol = sizeof old;
    assert_true(lfd >= 0);
    assert_int_equal(getsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &old, &ol), 0);
    assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    enum { CALLS = 48, PAYLOAD = 100 * 1024 };
    struct buf all;
    buf_init(&all, SIZE_MAX);
    char *body = malloc(PAYLOAD + 64);
    assert_non_null(body);
    for (int k = 0; k < CALLS; k++) {
        int off = snprintf(body, 64, "{\"methodName\":\"echo\",\"payload\":\"%02d", k);
        memset(body + off, 'a' + k % 26, PAYLOAD - 2);
        snprintf(body + off + PAYLOAD - 2, 8, "\"}");
        char *req = raw_method(body, "");
        assert_int_equal(buf_append_str(&all, req), ERR_OK);
        free(req);
    }
    int fd = raw_connect_rcvbuf(8192);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    size_t sent = 0, cap = (size_t)CALLS * (PAYLOAD + 1024), got = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    int64_t t0 = now_ms();
    int answers = 0;
    size_t at = 0;
    bool blocked = false;
    while (answers < CALLS && now_ms() - t0 < 30000) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < all.len ? POLLOUT : 0)};
        poll(&p, 1, 100);
        if ((p.revents & POLLOUT) && sent < all.len) {
            ssize_t k = write(fd, all.data + sent, all.len - sent);
            blocked = k <= 0;
            if (k > 0)
                sent += (size_t)k;
        }
        if ((p.revents & POLLIN) && (blocked || sent == all.len || !(p.revents & POLLOUT))) {
            ssize_t k = read(fd, in + got, cap - got);
            assert_true(k > 0);
            got += (size_t)k;
        }
        for (;;) { /* count the whole answers read so far, checking each */
            char *end = memmem(in + at, got - at, "\r\n\r\n", 4);
            if (!end)
                break;
            const char *cl = strcasestr(in + at, "Content-Length:");
            size_t len = strtoul(cl + 15, NULL, 10);
            if ((size_t)(end + 4 - in) + len > got)
                break;
            char want[40];
            snprintf(want, sizeof want, "{\"status\":200,\"payload\":\"%02d", answers);
            assert_memory_equal(end + 4, want, strlen(want));
            for (size_t i = strlen(want); i < len - 2; i++)
                if (end[4 + i] != 'a' + answers % 26)
                    fail_msg("answer %d: byte %zu differs", answers, i);
            at = (size_t)(end + 4 - in) + len;
            answers++;
        }
    }
    assert_int_equal(answers, CALLS);
    old /= 2; /* getsockopt reports the doubled value */
    setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &old, sizeof old);
    close(fd);
    free(in);
    free(body);
    buf_cleanup(&all);
}

/* A request whose head comes one byte at a time (the front parses it again only after a line feed) and whose
 * body follows is answered. */
static void raw_head_byte_by_byte(void **state)
{
    char *req = raw_method("{\"methodName\":\"echo\",\"payload\":5}", "");
    int fd = raw_connect();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; req[i]; i++)
        raw_send(fd, req + i, 1);
    char buf[4096];
    size_t got;
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":5}"));
    close(fd);
    free(req);
}

/* What the front leaves to MHD is still answered as before: HTTP/1.0, a chunked body, a body over the cap. */
static void raw_left_to_mhd(void **state)
{
    char req[2048], buf[8192];
    size_t got;
    const char *body = "{\"methodName\":\"echo\",\"payload\":4}";
    int n = snprintf(req, sizeof req,
                     "POST /twins/device1/methods?" API " HTTP/1.0\r\nHost: localhost\r\nAuthorization: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     E.owner_token, strlen(body), body);
    int fd = raw_connect();
    raw_send(fd, req, (size_t)n);
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":4}"));
    close(fd);

    n = snprintf(req, sizeof req,
                 "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
                 E.owner_token, strlen(body), body);
    fd = raw_connect();
    raw_send(fd, req, (size_t)n);
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_non_null(strstr(buf, "{\"status\":200,\"payload\":4}"));
    close(fd);

    size_t big = 1100u * 1024u; /* over the 1 MiB method body cap */
    n = snprintf(req, sizeof req,
                 "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 E.owner_token, big);
    char *pad = malloc(big);
    assert_non_null(pad);
    memset(pad, ' ', big);
    fd = raw_connect();
    raw_send(fd, req, (size_t)n);
    raw_send(fd, pad, big);
    assert_int_equal(raw_read(fd, 1, buf, sizeof buf, &got), 1);
    assert_true(strncmp(buf, "HTTP/1.1 413 ", 13) == 0);
    assert_non_null(strstr(buf, "413001"));
    close(fd);
    free(pad);
}

static void method_concurrent_calls(void **state)
{
    enum { N = 30 };
    CURLM *m = curl_multi_init();
    CURL *easy[N];
    struct resp resps[N];
    struct curl_slist *hdrs[N];
    char bodies[N][96];
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"methodName\":\"echo\",\"payload\":{\"n\":%d}}", i);
        struct req q = {.method = "POST", .path = "/twins/device1/methods?" API, .body = bodies[i],
                        .authz = E.owner_token};
        easy[i] = make_easy(&q, &resps[i], &hdrs[i]);
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1;
    int64_t t0 = now_ms();
    while (running && now_ms() - t0 < 20000) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < N; i++) {
        long status = 0;
        char want[96];
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 200);
        snprintf(want, sizeof want, "{\"status\":200,\"payload\":{\"n\":%d}}", i);
        assert_string_equal(resps[i].body, want);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(hdrs[i]);
        resp_free(&resps[i]);
    }
    curl_multi_cleanup(m);
}

static void handed_over_connection(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    E.handoff_fd = sv[1];
    send_cmd('P');
    const char *body = "{\"methodName\":\"echo\",\"payload\":7}";
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /twins/device1/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                     "Content-Type: application/json; charset=utf-8\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     E.owner_token, strlen(body), body);
    assert_int_equal(write(sv[0], req, (size_t)n), n);
    char buf[4096];
    size_t len = 0;
    ssize_t got;
    while (len + 1 < sizeof buf && (got = read(sv[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)got;
    buf[len] = '\0';
    close(sv[0]);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(buf, "\r\n\r\n{\"status\":200,\"payload\":7}"));
}

static void no_listener(void **state)
{
    char err[128];
    struct loop *l = loop_new();
    struct rest_config cfg = {.loop = l, .hub = E.hub, .reg = E.reg, .auth = E.auth, .http_port = 0};
    struct rest *r = rest_new(&cfg, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(rest_actual_http_port(r), 0);
    rest_free(r);
    cfg.bind = "::1"; /* IPv6 listener on a free port */
    cfg.http_port = -1;
    r = rest_new(&cfg, err, sizeof err);
    assert_non_null(r);
    assert_true(rest_actual_http_port(r) > 0);
    rest_free(r);
    cfg.bind = "not an address";
    cfg.http_port = 8080;
    assert_null(rest_new(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "bind address"));
    loop_free(l);
}

static void stop_loop(struct loop *l, void *ctx)
{
    loop_stop(l);
}

/* Single-threaded, on a loop of its own: rest_free with a call still waiting cancels it in the hub and
 * closes the caller's connection. */
static void free_with_waiting_call(void **state)
{
    char err[128];
    struct loop *l = loop_new();
    struct registry *reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    assert_int_equal(registry_ensure_device(reg, "lonely", DEV_KEY, NULL), ERR_OK);
    struct hub *h = hub_new(l, reg);
    struct rest_config cfg = {.loop = l, .hub = h, .reg = reg, .auth = E.auth, .http_port = -1};
    struct rest *r = rest_new(&cfg, err, sizeof err);
    assert_non_null(r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rest_actual_http_port(r)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *body = "{\"methodName\":\"m\",\"connectTimeoutInSeconds\":60}";
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /twins/lonely/methods?" API " HTTP/1.1\r\nHost: localhost\r\nAuthorization: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     E.owner_token, strlen(body), body);
    assert_int_equal(write(fd, req, (size_t)n), n);
    loop_timer_add(l, 300, stop_loop, NULL);
    loop_run(l);
    struct hub_stats st;
    hub_get_stats(h, &st);
    assert_int_equal(st.calls_pending, 1);
    rest_free(r);
    hub_get_stats(h, &st);
    assert_int_equal(st.calls_pending, 0);
    char buf[256];
    assert_int_equal(read(fd, buf, sizeof buf), 0); /* closed without an answer */
    close(fd);
    hub_free(h);
    struct db *reg_db = registry_db(reg);
    registry_free(reg);
    db_close(reg_db);
    loop_free(l);
}

/* Last: shuts the REST server down with a call in flight. */
static void shutdown_answers_503(void **state)
{
    CURLM *m = curl_multi_init();
    struct resp r;
    struct curl_slist *hdrs;
    struct req q = {.method = "POST", .path = "/twins/device1/methods?" API,
                    .body = "{\"methodName\":\"silent\",\"responseTimeoutInSeconds\":60}", .authz = E.owner_token};
    CURL *c = make_easy(&q, &r, &hdrs);
    curl_multi_add_handle(m, c);
    int running = 1;
    int64_t t0 = now_ms();
    while (health_field("callsPending") == 0 && now_ms() - t0 < 3000) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    send_cmd('S');
    while (running && now_ms() - t0 < 10000) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    json_decref(assert_envelope_b(&r, 503, "ServiceUnavailable", 503001, NULL));
    curl_multi_remove_handle(m, c);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    resp_free(&r);
    /* the dev listener is closed now */
    struct req h = {.method = "GET", .path = "/health"};
    perform(&h, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    resp_free(&r);
}

/* ---- tests: twins, query, statistics ---- */

static json_t *body_json(const struct resp *r)
{
    json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
    assert_non_null(j);
    return j;
}

static void twin_get_patch_replace(void **state)
{
    struct resp r;
    http("GET", "/twins/device1?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "deviceId")), "device1");
    char want[64];
    snprintf(want, sizeof want, "\"%s\"", json_string_value(json_object_get(j, "etag")));
    assert_string_equal(r.etag, want);
    assert_non_null(json_object_get(json_object_get(json_object_get(j, "properties"), "desired"), "$metadata"));
    json_decref(j);
    resp_free(&r);
    /* PATCH merges tags and desired; the answer is the whole twin with a new etag */
    struct req q = {.method = "PATCH", .path = "/twins/device1?" API, .authz = E.owner_token, .if_match = want,
                    .body = "{\"tags\":{\"site\":\"a\"},\"properties\":{\"desired\":{\"rate\":5}}}"};
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tags"), "site")), "a");
    json_t *desired = json_object_get(json_object_get(j, "properties"), "desired");
    assert_int_equal(json_integer_value(json_object_get(desired, "rate")), 5);
    json_int_t dv = json_integer_value(json_object_get(desired, "$version"));
    char etag2[sizeof r.etag];
    snprintf(etag2, sizeof etag2, "%s", r.etag);
    assert_string_not_equal(etag2, want);
    json_decref(j);
    resp_free(&r);
    /* the old etag is stale now: 412 in the hub's envelope, nothing changed */
    q.body = "{\"tags\":{\"site\":\"b\"}}";
    perform(&q, &r);
    assert_envelope_a(&r, 412, "PreconditionFailed", NULL);
    resp_free(&r);
    q.if_match = "\"*\"";
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* PUT replaces tags and desired */
    q.method = "PUT";
    q.if_match = NULL;
    q.body = "{\"tags\":{\"only\":1},\"properties\":{\"desired\":{\"mode\":\"x\"}}}";
    perform(&q, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_null(json_object_get(json_object_get(j, "tags"), "site"));
    desired = json_object_get(json_object_get(j, "properties"), "desired");
    assert_null(json_object_get(desired, "rate"));
    assert_string_equal(json_string_value(json_object_get(desired, "mode")), "x");
    assert_int_equal(json_integer_value(json_object_get(desired, "$version")), dv + 1);
    json_decref(j);
    resp_free(&r);
    /* module twins */
    http("PATCH", "/twins/device1/modules/mod1?" API, "{\"properties\":{\"desired\":{\"m\":true}}}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "moduleId")), "mod1");
    json_decref(j);
    resp_free(&r);
    http("GET", "/twins/device1/modules/mod1?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_true(json_is_true(json_object_get(json_object_get(json_object_get(j, "properties"), "desired"), "m")));
    json_decref(j);
    resp_free(&r);
}

static void twin_errors_and_policies(void **state)
{
    struct resp r;
    http("GET", "/twins/ghost?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "ghost");
    resp_free(&r);
    http("PATCH", "/twins/device1/modules/ghost?" API, "{}", E.owner_token, &r);
    assert_envelope_a(&r, 404, "ModuleNotFound", "device1/ghost");
    resp_free(&r);
    /* reported is the device's: ignored in a service PATCH */
    http("PATCH", "/twins/device1?" API, "{\"properties\":{\"reported\":{\"x\":1}}}", E.owner_token, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_null(json_object_get(json_object_get(json_object_get(j, "properties"), "reported"), "x"));
    json_decref(j);
    resp_free(&r);
    http("PATCH", "/twins/device1?" API, "{\"tags\":{\"a.b\":1}}", E.owner_token, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
    http("PATCH", "/twins/device1?" API, "not json", E.owner_token, &r);
    assert_envelope_a(&r, 400, "IotHubFormatError", NULL);
    resp_free(&r);
    static char big[12 * 1024];
    /* {"tags":{"t0":"x..","t1":"x..","t2":"x.."}}: 9 KiB of tags, over the 8 KiB limit */
    int n = snprintf(big, sizeof big, "{\"tags\":{");
    for (int i = 0; i < 3; i++) {
        n += snprintf(big + n, sizeof big - (size_t)n, "%s\"t%d\":\"", i ? "," : "", i);
        memset(big + n, 'x', 3000);
        n += 3000;
        big[n++] = '"';
    }
    snprintf(big + n, sizeof big - (size_t)n, "}}");
    http("PATCH", "/twins/device1?" API, big, E.owner_token, &r);
    assert_envelope_a(&r, 403, "DeviceModelMaxPropertiesExceeded", NULL);
    resp_free(&r);
    http("GET", "/twins/device1", NULL, E.owner_token, &r);
    assert_envelope_a(&r, 400, "InvalidProtocolVersion", NULL);
    resp_free(&r);
    http("DELETE", "/twins/device1?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    /* registryRead reads twins but cannot change them; service (ServiceConnect) can */
    char *rr = token(RR_KEY, "registryRead");
    http("GET", "/twins/device1?" API, NULL, rr, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http("PATCH", "/twins/device1?" API, "{\"tags\":{\"z\":1}}", rr, &r);
    assert_envelope_a(&r, 401, "IotHubUnauthorizedAccess", NULL);
    resp_free(&r);
    free(rr);
    http("PATCH", "/twins/device1?" API, "{\"tags\":{\"z\":1}}", NULL, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
}

static void statistics(void **state)
{
    struct resp r;
    http("GET", "/statistics/devices?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    json_int_t total = json_integer_value(json_object_get(j, "totalDeviceCount"));
    assert_int_equal(total, health_field("devices"));
    assert_int_equal(json_integer_value(json_object_get(j, "enabledDeviceCount")) +
                         json_integer_value(json_object_get(j, "disabledDeviceCount")),
                     total);
    json_decref(j);
    resp_free(&r);
    http("GET", "/statistics/service?" API, NULL, E.owner_token, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    json_t *c = json_object_get(j, "connectedDeviceCount");
    assert_true(json_is_integer(c));
    /* device1 and device1/mod1 are connected: one device */
    assert_true(json_integer_value(c) >= 1 && json_integer_value(c) < health_field("connections"));
    json_decref(j);
    resp_free(&r);
    http("GET", "/statistics/devices?" API, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
}

/* POSTs a query; page size and continuation as headers (NULL: none). */
static void query(const char *sql, const char *page, const char *cont, struct resp *r)
{
    char body[1024], h1[64], h2[128];
    json_t *b = json_pack("{s:s}", "query", sql);
    char *text = json_dumps(b, JSON_COMPACT);
    snprintf(body, sizeof body, "%s", text);
    free(text);
    json_decref(b);
    struct req q = {.method = "POST", .path = "/devices/query?" API, .body = body, .authz = E.owner_token};
    size_t n = 0;
    if (page) {
        snprintf(h1, sizeof h1, "x-ms-max-item-count: %s", page);
        q.extra[n++] = h1;
    }
    if (cont) {
        snprintf(h2, sizeof h2, "x-ms-continuation: %s", cont);
        q.extra[n++] = h2;
    }
    perform(&q, r);
    assert_int_equal(r->rc, CURLE_OK);
}

static void query_paging(void **state)
{
    struct resp r;
    char *rw = token(RRW_KEY, "registryReadWrite");
    for (int i = 0; i < 7; i++) {
        char path[64];
        snprintf(path, sizeof path, "/devices/qd%d?" API, i);
        http("PUT", path, "{}", rw, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        snprintf(path, sizeof path, "/twins/qd%d?" API, i);
        http("PATCH", path, i % 2 ? "{\"tags\":{\"grp\":\"q\",\"odd\":true}}" : "{\"tags\":{\"grp\":\"q\"}}",
             E.owner_token, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    free(rw);
    /* pages of 3: 3, 3, 1; the continuation is there until the last page, which has none */
    char cont[64] = "";
    int rows = 0, pages = 0;
    do {
        query("SELECT * FROM devices WHERE tags.grp = 'q'", "3", pages ? cont : NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.item_type, "twin");
        json_t *j = body_json(&r);
        assert_true(json_is_array(j));
        rows += (int)json_array_size(j);
        assert_int_equal(json_array_size(j), pages < 2 ? 3 : 1);
        assert_non_null(json_string_value(json_object_get(json_array_get(j, 0), "etag")));
        json_decref(j);
        pages++;
        snprintf(cont, sizeof cont, "%s", r.continuation);
        bool more = r.has_continuation;
        resp_free(&r);
        if (!more)
            break;
    } while (pages < 10);
    assert_int_equal(pages, 3);
    assert_int_equal(rows, 7);
    /* aggregates and projections are "raw" rows */
    query("SELECT COUNT() AS n FROM devices WHERE tags.odd = true", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.item_type, "raw");
    assert_false(r.has_continuation);
    json_t *j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "n")), 3);
    json_decref(j);
    resp_free(&r);
    query("SELECT deviceId FROM devices WHERE deviceId IN ['qd1', 'qd2']", NULL, NULL, &r);
    j = body_json(&r);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "deviceId")), "qd1");
    json_decref(j);
    resp_free(&r);
    /* Azure IoT Explorer's edge-device filter */
    query("SELECT * FROM devices WHERE capabilities.iotEdge = true", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    resp_free(&r);
    query("SELECT COUNT() AS n FROM devices WHERE capabilities.iotEdge = false AND STARTSWITH(deviceId, 'qd')", NULL,
          NULL, &r);
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "n")), 7);
    json_decref(j);
    resp_free(&r);
    query("SELECT * FROM devices.modules", NULL, NULL, &r);
    j = body_json(&r);
    assert_true(json_array_size(j) >= 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "moduleId")), "mod1");
    json_decref(j);
    resp_free(&r);
    /* a parse error: 400 with the position */
    query("SELECT * FORM devices", NULL, NULL, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    assert_non_null(strstr(r.body, "Line 1:"));
    resp_free(&r);
    query("SELECT * FROM devices", "0", NULL, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
    http("POST", "/devices/query?" API, "{\"q\":1}", E.owner_token, &r);
    assert_envelope_a(&r, 400, "ArgumentInvalid", NULL);
    resp_free(&r);
    /* the other verbs on /devices/query are the device named "query" */
    http("GET", "/devices/query?" API, NULL, E.owner_token, &r);
    assert_envelope_a(&r, 404, "DeviceNotFound", "query");
    resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(health_and_ca),
        cmocka_unit_test(unknown_route_and_wrong_method),
        cmocka_unit_test(authorization),
        cmocka_unit_test(authorization_cache),
        cmocka_unit_test(registry_devices),
        cmocka_unit_test(registry_bulk),
        cmocka_unit_test(registry_reads_and_delete),
        cmocka_unit_test(registry_encoded_ids_and_modules),
        cmocka_unit_test(registry_disable_and_delete_disconnect),
        cmocka_unit_test(method_answered),
        cmocka_unit_test(method_long_head),
        cmocka_unit_test(method_not_found_and_offline),
        cmocka_unit_test(method_connect_timeout),
        cmocka_unit_test(method_validation),
        cmocka_unit_test(method_device_drops_and_times_out),
        cmocka_unit_test(method_caller_goes_away),
        cmocka_unit_test(method_caller_goes_away_keep_alive),
        cmocka_unit_test(method_concurrent_calls),
        cmocka_unit_test(raw_pipelined),
        cmocka_unit_test(raw_expect_continue),
        cmocka_unit_test(raw_connection_close),
        cmocka_unit_test(raw_large_body_in_pieces),
        cmocka_unit_test(raw_pipelined_large),
        cmocka_unit_test(raw_head_byte_by_byte),
        cmocka_unit_test(raw_left_to_mhd),
        cmocka_unit_test(handed_over_connection),
        cmocka_unit_test(no_listener),
        cmocka_unit_test(twin_get_patch_replace),
        cmocka_unit_test(twin_errors_and_policies),
        cmocka_unit_test(statistics),
        cmocka_unit_test(query_paging),
        cmocka_unit_test(free_with_waiting_call),
        cmocka_unit_test(shutdown_answers_503),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
