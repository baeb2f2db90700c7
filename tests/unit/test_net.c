/* test_net.c -- tests of emulator/net over real loopback sockets: the emulator's loop (net + sessions + hub +
 * registry + auth, TLS with a generated dev CA) runs on a second thread while the test thread is a blocking
 * client; between tests the loop thread is stopped, so emulator state is only touched by one thread at a
 * time. Covers: a client that half-closes still gets its replies; a refused CONNECT followed by more data
 * ends with FIN, not RST; an HTTP response larger than the back-pressure threshold crosses the REST proxy;
 * a failed REST hand-off closes only its own fd; a WebSocket frame larger than an MQTT packet; accept()
 * out of fds does not spin; idle connections hold no buffers; net_free leaves no hook behind; a TLS flood
 * under back-pressure (read-ahead) is answered in full; with a stand-in front, reads stay within a turn's size
 * after a large frame left room behind, and a held connection that closes with blocked output does not spin. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "certs.h"
#include "conn.h"
#include "db.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "net.h"
#include "registry.h"
#include "sas.h"
#include "session.h"
#include "tls.h"
#include "ws.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif
#ifdef TEST_ASAN
#include <sanitizer/allocator_interface.h>
#else
#include <malloc.h>
#endif

#define OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define KEY2 "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="
#define IDLE_CONNS 64
#define BIG_RESPONSE (16u * 1024u * 1024u)

enum handoff_mode { HANDOFF_BIG, HANDOFF_FAIL };

static struct {
    struct loop *loop;
    struct registry *reg;
    struct auth *auth;
    struct hub *hub;
    struct session_env env;
    struct proto mqtt;
    struct net *net;
    SSL_CTX *srv, *cli;
    struct certs_paths certs;
    char dir[64];
    pthread_t thread;
    bool running;
    int wake[2];
    enum handoff_mode handoff;
    int reused_fd; /* HANDOFF_FAIL: an fd opened on the number the hand-off was given */
    pthread_t writer;
    bool writer_started;
} E;

/* ---- the loop thread ---- */

static void on_wake(struct loop *l, int fd, uint32_t events, void *ctx)
{
    char c;
    while (read(fd, &c, 1) == 1)
        ;
    loop_stop(l);
}

static void *loop_thread(void *arg)
{
    loop_run(E.loop);
    return NULL;
}

static void loop_start(void)
{
    assert_false(E.running);
    assert_int_equal(pthread_create(&E.thread, NULL, loop_thread, NULL), 0);
    E.running = true;
}

static void loop_halt(void)
{
    if (!E.running)
        return;
    assert_int_equal(write(E.wake[1], "s", 1), 1);
    pthread_join(E.thread, NULL);
    E.running = false;
}

static void stop_cb(struct loop *l, void *ctx)
{
    loop_stop(l);
}

/* Runs the loop on this thread for ms (the loop thread must be stopped). */
static void loop_for(int64_t ms)
{
    assert_non_null(loop_timer_add(E.loop, ms, stop_cb, NULL));
    loop_run(E.loop);
}

/* ---- the REST hand-off, as the tests want it ---- */

static void *big_writer(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char chunk[65536];
    memset(chunk, 'b', sizeof chunk);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    char head[128];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", BIG_RESPONSE);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    for (size_t sent = 0; sent < BIG_RESPONSE; sent += sizeof chunk)
        if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) != (ssize_t)sizeof chunk)
            break;
    close(fd);
    return NULL;
}

static int handoff(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    if (E.handoff == HANDOFF_FAIL) {
        close(fd);                                 /* as rest_add_connection does on failure */
        E.reused_fd = open("/dev/null", O_RDONLY); /* takes the same number */
        return ERR_NOMEM;
    }
    E.writer_started = pthread_create(&E.writer, NULL, big_writer, (void *)(intptr_t)fd) == 0;
    return E.writer_started ? ERR_OK : ERR_NOMEM;
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
    char err[256];
    const char *hosts[] = {"localhost"};
    log_set_level(LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2), as in main.c */
    snprintf(E.dir, sizeof E.dir, "/tmp/test_net.XXXXXX");
    if (!mkdtemp(E.dir) || certs_ensure(E.dir, hosts, 1, &E.certs, err, sizeof err) != ERR_OK)
        return -1;
    E.srv = tls_server_ctx_new(E.certs.cert_path, E.certs.key_path, err, sizeof err);
    E.cli = tls_client_ctx_new(E.certs.ca_path);
    return E.srv && E.cli ? 0 : -1;
}

static int group_teardown(void **state)
{
    const char *files[] = {"ca.pem", "ca.key", "server.pem", "server.key"};
    char path[128];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", E.dir, files[i]);
        unlink(path);
    }
    rmdir(E.dir);
    certs_paths_cleanup(&E.certs);
    SSL_CTX_free(E.srv);
    SSL_CTX_free(E.cli);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    const char *hosts[] = {"localhost"};
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    E.auth = auth_new(hosts, 1, OWNER_KEY);
    E.hub = hub_new(E.loop, E.reg);
    assert_non_null(E.hub);
    for (int i = 0; i < IDLE_CONNS; i++) {
        char id[16];
        snprintf(id, sizeof id, "dev%d", i);
        assert_int_equal(registry_ensure_device(E.reg, id, KEY1, KEY2), ERR_OK);
    }
    assert_int_equal(pipe2(E.wake, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_add_fd(E.loop, E.wake[0], EPOLLIN, on_wake, NULL), ERR_OK);
    E.env = (struct session_env){.loop = E.loop, .hub = E.hub, .reg = E.reg, .auth = E.auth,
                                 .max_packet = MQTT_MAX_PACKET_DEFAULT};
    session_proto(&E.mqtt, &E.env);
    struct net_config nc = {
        .bind = "127.0.0.1", .mqtts_port = 0, .https_port = 0, .mqtt_port = 0, .http_port = -1, .tls = E.srv,
        .mqtt = &E.mqtt,
        .http_handoff = handoff, .http_ctx = NULL, .max_connections = 1000, .connect_timeout_s = 10};
    E.net = net_new(E.loop, &nc, err, sizeof err);
    assert_non_null(E.net);
    E.handoff = HANDOFF_BIG;
    E.reused_fd = -1;
    E.writer_started = false;
    return 0;
}

static int teardown(void **state)
{
    loop_halt();
    net_free(E.net); /* closes the REST end, so a writer still blocked in send() fails and ends */
    if (E.writer_started)
        pthread_join(E.writer, NULL);
    hub_free(E.hub);
    loop_del_fd(E.loop, E.wake[0]);
    close(E.wake[0]);
    close(E.wake[1]);
    loop_free(E.loop);
    auth_free(E.auth);
    struct db *reg_db = registry_db(E.reg);
    registry_free(E.reg);
    db_close(reg_db);
    if (E.reused_fd >= 0)
        close(E.reused_fd);
    return 0;
}

/* ---- client helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tcp_connect_rcvbuf(enum net_listener which, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(E.net, which)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int tcp_connect(enum net_listener which)
{
    return tcp_connect_rcvbuf(which, 0);
}

static SSL *tls_connect(enum net_listener which, int *fd_out, int rcvbuf)
{
    int fd = tcp_connect_rcvbuf(which, rcvbuf);
    SSL *ssl = SSL_new(E.cli);
    assert_non_null(ssl);
    assert_int_equal(tls_client_set_host(ssl, "localhost"), ERR_OK);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    *fd_out = fd;
    return ssl;
}

static void send_all(int fd, const void *p, size_t len)
{
    assert_int_equal(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void ssl_write_all(SSL *ssl, const void *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        int n = SSL_write(ssl, (const uint8_t *)p + off, (int)(len - off));
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/* Reads exactly len bytes. */
static void recv_exact(int fd, uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = recv(fd, p + off, len - off, 0);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

static char *device_token(const char *device_id, const char *key)
{
    char *uri = sas_resource_uri("localhost", device_id, NULL);
    char *tok = NULL;
    assert_int_equal(sas_build(uri, key, (uint64_t)time(NULL) + 3600, NULL, &tok), ERR_OK);
    free(uri);
    return tok;
}

static void encode_connect(struct buf *b, const char *device_id, const char *key)
{
    char *tok = device_token(device_id, key);
    struct mqtt_connect c = {.client_id = {(const uint8_t *)device_id, strlen(device_id)}, .has_username = true,
                             .username = {(const uint8_t *)"hub", 3}, .has_password = true,
                             .password = {(const uint8_t *)tok, strlen(tok)}};
    assert_int_equal(mqtt_encode_connect(b, &c), ERR_OK);
    free(tok);
}

static void encode_subscribe_methods(struct buf *b)
{
    struct mqtt_subscribe s = {.packet_id = 1, .count = 1};
    s.filters[0] = (struct mqtt_bytes){(const uint8_t *)"$iothub/methods/POST/#", 22};
    assert_int_equal(mqtt_encode_subscribe(b, &s), ERR_OK);
}

/* ---- tests ---- */

/* The peer sends CONNECT and PINGREQ, then shuts down its sending side: both replies still arrive, then EOF.
 * (EOF used to drop the connection before its queued output was written.) */
static void half_close_still_gets_replies(void **state)
{
    loop_start();
    int fd = tcp_connect(NET_MQTT);
    struct buf b;
    buf_init(&b, SIZE_MAX);
    encode_connect(&b, "dev0", KEY1);
    assert_int_equal(mqtt_encode_empty(&b, MQTT_PINGREQ), ERR_OK);
    send_all(fd, b.data, b.len);
    buf_cleanup(&b);
    shutdown(fd, SHUT_WR);
    uint8_t got[6];
    recv_exact(fd, got, sizeof got);
    assert_memory_equal(got, "\x20\x02\x00\x00\xd0\x00", 6);
    assert_int_equal(recv(fd, got, 1, 0), 0);
    close(fd);
}

/* CONNACK 5, then FIN: input the server never read must not turn the close into an RST. */
static void refused_connect_with_trailing_data_ends_with_fin(void **state)
{
    loop_start();
    int fd = tcp_connect(NET_MQTT);
    struct buf b;
    buf_init(&b, SIZE_MAX);
    encode_connect(&b, "dev0", "6PDE9w0u6D6CunlltG54bOryTaID+DRU8Ob+OBjBwu8="); /* not dev0's key */
    static uint8_t junk[40000];
    memset(junk, 0xc0, sizeof junk); /* PINGREQs, as far as anyone reads them */
    for (size_t i = 1; i < sizeof junk; i += 2)
        junk[i] = 0;
    assert_int_equal(buf_append(&b, junk, sizeof junk), ERR_OK);
    send_all(fd, b.data, b.len);
    buf_cleanup(&b);
    uint8_t got[4];
    recv_exact(fd, got, sizeof got);
    assert_memory_equal(got, "\x20\x02\x00\x05", 4);
    errno = 0;
    ssize_t n = recv(fd, got, 1, 0);
    assert_int_equal(n, 0);
    assert_int_equal(errno, 0); /* not ECONNRESET */
    close(fd);
}

/* 16 MiB from the REST side through TLS to a client that starts reading late (and with a small receive
 * buffer): reading the REST socket pauses over 1 MiB of queued output and must resume when the client catches
 * up. */
static void large_http_response_crosses_the_proxy(void **state)
{
    loop_start();
    int fd;
    SSL *ssl = tls_connect(NET_HTTPS, &fd, 32768);
    const char req[] = "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ssl_write_all(ssl, req, sizeof req - 1);
    usleep(500 * 1000); /* the kernel buffers fill, then net's output queue passes 1 MiB */
    size_t total = 0, body = 0; /* every body byte arrives intact (net reads large answers into its queue) */
    static uint8_t buf[65536];
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0)
            break;
        total += (size_t)n;
        for (int i = 0; i < n; i++)
            body += buf[i] == 'b';
    }
    char head[128];
    int hlen = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", BIG_RESPONSE);
    assert_int_equal(body, BIG_RESPONSE);
    assert_int_equal(total, BIG_RESPONSE + (size_t)hlen);
    SSL_free(ssl);
    close(fd);
}

/* A TLS device floods PINGREQs in 1 KiB records (many per read-ahead) while reading nothing, then reads:
 * reading pauses and resumes many times over 1 MiB of queued PINGRESPs, with whole records waiting inside
 * OpenSSL at each pause. Every PINGREQ must be answered. (The strand this guards against -- records read
 * ahead while paused, nothing left in the socket -- is timing-dependent: this did not catch a drain by
 * SSL_pending in three runs; net.c's drain is by SSL_has_pending.) */
static void tls_flood_with_back_pressure_is_answered(void **state)
{
    loop_start();
    int fd;
    SSL *ssl = tls_connect(NET_MQTTS, &fd, 8192);
    struct buf b;
    buf_init(&b, SIZE_MAX);
    encode_connect(&b, "dev0", KEY1);
    ssl_write_all(ssl, b.data, b.len);
    buf_cleanup(&b);
    uint8_t got[4];
    assert_int_equal(SSL_read(ssl, got, 4), 4);
    assert_memory_equal(got, "\x20\x02\x00\x00", 4);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static uint8_t pings[1024], in[65536];
    for (size_t i = 0; i < sizeof pings; i += 2)
        pings[i] = 0xc0, pings[i + 1] = 0;
    size_t sent = 0, received = 0, limit = 24u * 1024u * 1024u;
    int64_t stalled_since = 0;
    bool writing = true, pending_write = false;
    for (int64_t deadline = now_ms() + 30000; now_ms() < deadline;) {
        if (writing || pending_write) {
            int n = SSL_write(ssl, pings, sizeof pings);
            if (n > 0) {
                sent += (size_t)n;
                pending_write = false;
                stalled_since = 0;
                writing = writing && sent < limit;
                continue;
            }
            assert_int_equal(SSL_get_error(ssl, n), SSL_ERROR_WANT_WRITE);
            pending_write = true; /* the same record must be retried */
            if (!stalled_since)
                stalled_since = now_ms();
            else if (now_ms() - stalled_since > 300)
                writing = false; /* the server paused: now read, and finish only the record in flight */
            if (writing) {
                usleep(1000);
                continue;
            }
        }
        int n = SSL_read(ssl, in, sizeof in);
        if (n > 0) {
            received += (size_t)n;
        } else {
            assert_int_equal(SSL_get_error(ssl, n), SSL_ERROR_WANT_READ);
            if (!pending_write && received == sent)
                break;
            usleep(1000);
        }
    }
    print_message("sent %zu bytes of PINGREQ, received %zu of PINGRESP\n", sent, received);
    assert_true(sent > 2u * 1024u * 1024u);
    assert_int_equal(received, sent);
    SSL_free(ssl);
    close(fd);
}

/* The hand-off owns its fd even when it fails: net closed it a second time, which here closes /dev/null. */
static void failed_handoff_closes_only_its_fd(void **state)
{
    E.handoff = HANDOFF_FAIL;
    loop_start();
    int fd;
    SSL *ssl = tls_connect(NET_HTTPS, &fd, 0);
    const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ssl_write_all(ssl, req, sizeof req - 1);
    char buf[512];
    int n = SSL_read(ssl, buf, sizeof buf - 1);
    assert_true(n > 12);
    buf[n] = '\0';
    assert_non_null(strstr(buf, " 503 "));
    loop_halt();
    assert_true(E.reused_fd >= 0);
    assert_true(fcntl(E.reused_fd, F_GETFD) != -1);
    SSL_free(ssl);
    close(fd);
}

/* One WebSocket frame carrying two 200 KiB PUBLISHes: larger than the MQTT input cap, within WS_MAX_MESSAGE. */
static void websocket_frame_larger_than_a_packet(void **state)
{
    loop_start();
    int fd;
    SSL *ssl = tls_connect(NET_HTTPS, &fd, 0);
    struct buf b;
    buf_init(&b, SIZE_MAX);
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(ws_encode_client_request(&b, "localhost", "/$iothub/websocket", key, "mqtt"), ERR_OK);
    ssl_write_all(ssl, b.data, b.len);
    buf_cleanup(&b);
    uint8_t in[4096];
    size_t have = 0, head = 0;
    while (ws_client_parse_accept(in, have, key, &head) == ERR_NEED_MORE) {
        int n = SSL_read(ssl, in + have, (int)(sizeof in - have));
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_int_equal(ws_client_parse_accept(in, have, key, &head), ERR_OK);
    struct buf mq;
    buf_init(&mq, SIZE_MAX);
    encode_connect(&mq, "dev1", KEY1);
    static uint8_t body[200 * 1024];
    memset(body, 'x', sizeof body);
    for (uint16_t id = 1; id <= 2; id++) {
        struct mqtt_publish p = {.qos = 1, .packet_id = id,
                                 .topic = {(const uint8_t *)"devices/dev1/messages/events/", 29},
                                 .payload = {body, sizeof body}};
        assert_int_equal(mqtt_encode_publish(&mq, &p), ERR_OK);
    }
    const uint8_t mask[4] = {1, 2, 3, 4};
    assert_int_equal(ws_encode_client_frame(&b, WS_OP_BINARY, true, mq.data, mq.len, mask), ERR_OK);
    buf_cleanup(&mq);
    ssl_write_all(ssl, b.data, b.len);
    buf_cleanup(&b);
    /* CONNACK and two PUBACKs, each in its own binary frame: 2 + 4 bytes each */
    memmove(in, in + head, have - head);
    have -= head;
    while (have < 18) {
        int n = SSL_read(ssl, in + have, (int)(sizeof in - have));
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_int_equal(have, 18);
    assert_memory_equal(in, "\x82\x04\x20\x02\x00\x00\x82\x04\x40\x02\x00\x01\x82\x04\x40\x02\x00\x02", 18);
    SSL_free(ssl);
    close(fd);
}

/* Out of fds, accept() fails with EMFILE and the connection stays in the backlog: the listener must not be
 * polled again at once, or the loop spins at 100% CPU. */
static void accept_out_of_fds_does_not_spin(void **state)
{
    int clients[3];
    for (int i = 0; i < 3; i++)
        clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    int top = dup(0);
    struct rlimit low = {.rlim_cur = (rlim_t)top + 1, .rlim_max = old.rlim_max};
    close(top);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int filler = dup(0); /* takes the last free number */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(E.net, NET_MQTT)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 3; i++)
        assert_int_equal(connect(clients[i], (struct sockaddr *)&a, sizeof a), 0);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    loop_for(500);
    getrusage(RUSAGE_SELF, &r1);
    long cpu_ms = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000 + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1000 +
                  (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000 + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1000;
    close(filler);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    print_message("loop CPU with accept() failing: %ld ms in 500 ms\n", cpu_ms);
    assert_true(cpu_ms < 200);
    loop_for(600); /* accepting resumes once fds are free */
    assert_int_equal(net_connection_count(E.net), 3);
    for (int i = 0; i < 3; i++)
        close(clients[i]);
}

static size_t allocated_bytes(void)
{
#ifdef TEST_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
#endif
}

/* Connected, subscribed devices that then go quiet keep no input, output or scratch buffers. */
static void idle_connections_hold_no_buffers(void **state)
{
    int fds[IDLE_CONNS];
    loop_for(10);
    size_t before = allocated_bytes();
    loop_start();
    for (int i = 0; i < IDLE_CONNS; i++) {
        char id[16];
        snprintf(id, sizeof id, "dev%d", i);
        fds[i] = tcp_connect(NET_MQTT);
        struct buf b;
        buf_init(&b, SIZE_MAX);
        encode_connect(&b, id, KEY1);
        encode_subscribe_methods(&b);
        assert_int_equal(mqtt_encode_empty(&b, MQTT_PINGREQ), ERR_OK);
        send_all(fds[i], b.data, b.len);
        buf_cleanup(&b);
        uint8_t got[11]; /* CONNACK, SUBACK, PINGRESP */
        recv_exact(fds[i], got, sizeof got);
    }
    loop_halt();
    loop_for(10);
    size_t after = allocated_bytes();
    size_t per = (after - before) / IDLE_CONNS;
    print_message("heap per idle MQTT connection: %zu bytes\n", per);
    assert_int_equal(net_connection_count(E.net), IDLE_CONNS);
    assert_true(per < 4096);
    for (int i = 0; i < IDLE_CONNS; i++)
        close(fds[i]);
}

/* net_free must take its before-wait hook out of the loop: the loop runs on after it. */
static void net_free_removes_its_hook(void **state)
{
    char err[128];
    struct net_config nc = {.bind = "127.0.0.1", .mqtts_port = -1, .https_port = -1, .mqtt_port = 0, .http_port = -1,
                            .mqtt = &E.mqtt,
                            .max_connections = 10, .connect_timeout_s = 1};
    struct net *n = net_new(E.loop, &nc, err, sizeof err);
    assert_non_null(n);
    net_free(n);
    loop_for(5); /* the old hook ran on freed memory here */
}

/* ---- a stand-in front (struct proto) for net's own rules: reads per turn, held input ---- */

static struct {
    struct conn *c;
    size_t total, last_len, max_step, target;
    bool reserved, hold; /* hold: the first input queues BIG_OUT bytes and holds the input (as rest_front does) */
    uint8_t *big;
} F;

#define FAKE_MAX_FRAME (512u * 1024u)
#define BIG_OUT (7u * 1024u * 1024u) /* more than the socket buffers take from a peer that does not read */

static void *fake_open(void *ctx, struct conn *c)
{
    F.c = c;
    conn_established(c); /* no pre-authentication cap on what this test sends */
    return &F;
}

/* Records how many bytes each read added; reserves a large frame's room once (as the MQTT session does for a
 * partial 100 KiB packet), then keeps only a small partial packet: the state a small-packet flood leaves. */
static int fake_input(void *state, struct buf *in)
{
    size_t step = in->len - F.last_len;
    F.total += step;
    if (step > F.max_step)
        F.max_step = step;
    if (F.hold) {
        buf_consume(in, in->len);
        F.last_len = 0;
        assert_int_equal(conn_send(F.c, F.big, BIG_OUT), ERR_OK);
        conn_hold_input(F.c, true);
        loop_stop(E.loop);
        return ERR_OK;
    }
    if (!F.reserved) {
        assert_int_equal(buf_reserve(in, 256u * 1024u), ERR_OK);
        F.reserved = true;
    }
    size_t keep = in->len > 10 ? 10 : in->len;
    buf_consume(in, in->len - keep);
    F.last_len = in->len;
    if (F.total >= F.target)
        loop_stop(E.loop);
    return ERR_OK;
}

static void fake_free(void *state)
{
    F.c = NULL;
}

static struct loop_timer *guard; /* a test's time limit while the loop runs on the test thread */

static void on_guard(struct loop *l, void *ctx)
{
    guard = NULL;
    loop_stop(l);
}

/* Runs the loop on this thread until the front stops it (at most 10 s). */
static void run_until_stopped(void)
{
    guard = loop_timer_add(E.loop, 10000, on_guard, NULL);
    assert_non_null(guard);
    loop_run(E.loop);
    loop_timer_cancel(E.loop, guard);
    guard = NULL;
}

static struct net *fake_net(struct proto *p)
{
    char err[128];
    *p = (struct proto){.name = "fake", .max_frame = FAKE_MAX_FRAME, .open = fake_open, .input = fake_input,
                        .free = fake_free};
    struct net_config nc = {.bind = "127.0.0.1", .mqtts_port = -1, .https_port = -1, .mqtt_port = 0, .http_port = -1,
                            .mqtt = p, .max_connections = 10, .connect_timeout_s = 10};
    struct net *n = net_new(E.loop, &nc, err, sizeof err);
    assert_non_null(n);
    return n;
}

static int fake_connect(struct net *n, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(n, NET_MQTT)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Fairness (issue 23): a turn reads NET_TURN_FIRST, then reads sized by the pace of the bytes so far, never more
 * than 16 KiB at once. Room left in the input buffer by an earlier large frame must not turn a flood of small
 * packets into one read of all of that room (the direct read of 0e06634 took spare = cap - len, whatever the
 * turn's budget and whether a frame was under way). */
static void reads_stay_within_the_turn_after_a_large_frame(void **state)
{
    struct proto p;
    memset(&F, 0, sizeof F);
    struct net *n = fake_net(&p);
    int fd = fake_connect(n, 0);
    static uint8_t chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    size_t sent = 0; /* queued in the kernel before the loop reads anything */
    for (;;) {
        ssize_t w = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    assert_true(sent > 4 * sizeof chunk);
    F.target = sent;
    run_until_stopped();
    print_message("%zu bytes queued; largest single read %zu bytes\n", sent, F.max_step);
    assert_int_equal(F.total, sent);
    assert_true(F.max_step <= 16384);
    close(fd);
    net_free(n);
}

/* A connection whose input is held (conn_hold_input: rest_front's pipelined request behind a waiting call) and
 * whose peer then half-closes while it does not read: net closes it, the queued output cannot drain, and the
 * loop must wait for EPOLLOUT (or the linger deadline), not spin on the level-triggered EPOLLRDHUP it still
 * asks for because held is never cleared. */
static void held_connection_closing_with_blocked_output_does_not_spin(void **state)
{
    struct proto p;
    memset(&F, 0, sizeof F);
    F.hold = true;
    F.big = malloc(BIG_OUT);
    assert_non_null(F.big);
    memset(F.big, 'o', BIG_OUT);
    struct net *n = fake_net(&p);
    int fd = fake_connect(n, 4096); /* and never read */
    send_all(fd, "x", 1);
    run_until_stopped(); /* until the front has queued its output and held its input */
    assert_non_null(F.c);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    loop_for(500); /* shorter than NET_LINGER_MS */
    getrusage(RUSAGE_SELF, &r1);
    long cpu_ms = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000 + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1000 +
                  (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000 + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1000;
    print_message("loop CPU while a held connection lingers: %ld ms in 500 ms\n", cpu_ms);
    assert_true(cpu_ms < 200);
    close(fd);
    net_free(n);
    free(F.big);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(half_close_still_gets_replies),
        T(refused_connect_with_trailing_data_ends_with_fin),
        T(large_http_response_crosses_the_proxy),
        T(tls_flood_with_back_pressure_is_answered),
        T(failed_handoff_closes_only_its_fd),
        T(websocket_frame_larger_than_a_packet),
        T(accept_out_of_fds_does_not_spin),
        T(idle_connections_hold_no_buffers),
        T(net_free_removes_its_hook),
        T(reads_stay_within_the_turn_after_a_large_frame),
        T(held_connection_closing_with_blocked_output_does_not_spin),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
