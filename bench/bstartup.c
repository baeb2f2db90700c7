/* bstartup.c -- the start-up scenario (see bstartup.h). Each run: note the time, fork, exec the server
 * (stdout and stderr to --log), then probe its port every millisecond with a blocking loopback connect
 * until it answers well: GET /health -> 200 for the emulator, CONNECT -> CONNACK 0 for Mosquitto. The server
 * is then stopped with SIGTERM (SIGKILL after 10 s). */
#include "bstartup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bdev.h"
#include "bhttp.h"
#include "bsetup.h"
#include "bstat.h"
#include "buf.h"
#include "err.h"
#include "mqtt.h"

#define BSTART_MAX_RUNS 50
#define BSTART_PROBE_WAIT_MS 2000
#define BSTART_STOP_WAIT_S 10.0

struct bstart {
    enum btarget_kind kind;
    long port;
    const char *log;
    char **cmd;
    double timeout_s;
};

/* Sends the probe and reads the answer on a connected socket. Returns 1 when the server answered well. */
static int probe_exchange(int fd, enum btarget_kind kind)
{
    struct buf req;
    buf_init(&req, 4096);
    struct mqtt_connect c = {.clean_session = true, .keep_alive = 60};
    c.client_id = (struct mqtt_bytes){(const uint8_t *)"startup-probe", 13};
    int rc = kind == BTARGET_EMULATOR ? buf_append_str(&req, "GET /health HTTP/1.1\r\nHost: localhost\r\n"
                                                             "Connection: close\r\n\r\n")
                                      : mqtt_encode_connect(&req, &c);
    bool sent = !rc && send(fd, req.data, req.len, MSG_NOSIGNAL) == (ssize_t)req.len;
    buf_cleanup(&req);
    uint8_t in[4096];
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (sent && len < sizeof in && poll(&p, 1, BSTART_PROBE_WAIT_MS) == 1) {
        ssize_t r = recv(fd, in + len, sizeof in - len, 0);
        if (r <= 0)
            return 0;
        len += (size_t)r;
        int status;
        size_t head, body, used;
        struct mqtt_packet pk;
        if (kind == BTARGET_EMULATOR && bhttp_parse_response(in, len, &status, &head, &body) == ERR_OK)
            return status == 200;
        if (kind == BTARGET_MOSQUITTO && mqtt_decode(in, len, BDEV_MAX_PACKET, &pk, &used) == ERR_OK)
            return pk.type == MQTT_CONNACK && pk.u.connack.return_code == 0;
    }
    return 0;
}

static int probe(const struct bstart *b)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && probe_exchange(fd, b->kind);
    close(fd);
    return ok;
}

static pid_t spawn(const struct bstart *b)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    execvp(b->cmd[0], b->cmd);
    _exit(127);
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    double end = bstat_now() + BSTART_STOP_WAIT_S;
    struct timespec ms = {0, 10 * 1000 * 1000};
    while (bstat_now() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* One run: seconds from fork to the first good answer, or -1 (the server died or timed out). */
static double one_run(const struct bstart *b)
{
    struct timespec ms = {0, 1000 * 1000};
    double t0 = bstat_now();
    pid_t pid = spawn(b);
    if (pid < 0)
        return -1;
    double took = -1;
    while (bstat_now() - t0 < b->timeout_s) {
        if (probe(b)) {
            took = bstat_now() - t0;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "iothub_bench startup: %s exited before answering (see %s)\n", b->cmd[0], b->log);
            return -1;
        }
        nanosleep(&ms, NULL);
    }
    stop(pid);
    return took;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return a < c ? -1 : a > c;
}

static void emit(struct bopt *o, const struct bstart *b, double *ms, size_t n)
{
    qsort(ms, n, sizeof *ms, cmp_double);
    json_t *all = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(all, json_real(ms[i]));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:f, s:f, s:f, s:o}", "kind", "startup", "target",
                          b->kind == BTARGET_EMULATOR ? "emulator" : "mosquitto", "label", bopt_str(o, "label", ""),
                          "registry_desc", bopt_str(o, "desc", ""), "runs", (json_int_t)n, "min_ms", n ? ms[0] : 0.0,
                          "median_ms", n ? ms[n / 2] : 0.0, "max_ms", n ? ms[n - 1] : 0.0, "runs_ms", all);
    if (j) {
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
    }
    fprintf(stderr, "start-up %s %s: median %.1f ms (min %.1f, max %.1f, %zu runs)\n", b->cmd[0],
            bopt_str(o, "label", ""), n ? ms[n / 2] : 0.0, n ? ms[0] : 0.0, n ? ms[n - 1] : 0.0, n);
}

int bstart_main(struct bopt *o)
{
    struct bstart b = {.port = bopt_long(o, "port", 0),
                       .log = bopt_str(o, "log", "/dev/null"),
                       .cmd = o->rest,
                       .timeout_s = bopt_double(o, "timeout", 30)};
    long runs = bopt_long(o, "runs", 5), warm = bopt_long(o, "warmup-runs", 1);
    if (bsetup_kind(bopt_str(o, "target", NULL), &b.kind) || !b.cmd || !b.cmd[0] || b.port <= 0 || b.port > 65535 ||
        runs < 1 || runs > BSTART_MAX_RUNS || warm < 0 || warm > BSTART_MAX_RUNS || o->bad) {
        fprintf(stderr, "iothub_bench startup: need --target, --port, --runs 1..%d and -- COMMAND\n", BSTART_MAX_RUNS);
        return ERR_INVALID;
    }
    double ms[BSTART_MAX_RUNS];
    size_t n = 0;
    for (long i = 0; i < warm + runs; i++) {
        double s = one_run(&b);
        if (s < 0) {
            fprintf(stderr, "iothub_bench startup: %s did not answer within %.0f s\n", b.cmd[0], b.timeout_s);
            return ERR_IO;
        }
        if (i >= warm)
            ms[n++] = s * 1e3;
    }
    emit(o, &b, ms, n);
    return ERR_OK;
}

/* True while pid runs (not gone, not a zombie): lets "wait" give up at once when the server died. */
static bool is_running(long pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(line, 1, sizeof line - 1, f) : 0;
    if (f)
        fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

int bstart_wait_main(struct bopt *o)
{
    struct bstart b = {.port = bopt_long(o, "port", 0)};
    long pid = bopt_long(o, "pid", 0);
    double timeout_s = bopt_double(o, "timeout", 30);
    struct timespec ms = {0, 5 * 1000 * 1000};
    if (bsetup_kind(bopt_str(o, "target", NULL), &b.kind) || b.port <= 0 || b.port > 65535 || o->bad) {
        fprintf(stderr, "iothub_bench wait: need --target and --port\n");
        return ERR_INVALID;
    }
    for (double end = bstat_now() + timeout_s; bstat_now() < end; nanosleep(&ms, NULL)) {
        if (probe(&b))
            return ERR_OK;
        if (pid > 0 && !is_running(pid)) {
            fprintf(stderr, "iothub_bench wait: process %ld exited before answering on port %ld\n", pid, b.port);
            return ERR_IO;
        }
    }
    fprintf(stderr, "iothub_bench wait: nothing answered on port %ld within %.0f s\n", b.port, timeout_s);
    return ERR_IO;
}
