/* iothub_bench.c -- the benchmark program behind bench/run.sh: method-call round trips, connection scale and
 * start-up of the emulator, each against Mosquitto measured in the same run, plus the helpers run.sh needs
 * (free ports, a pre-generated registry, the report). One thread, one epoll set; see bench/README.md. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bmethods.h"
#include "bopt.h"
#include "bregistry.h"
#include "breport.h"
#include "bscale.h"
#include "bstartup.h"
#include "err.h"

#define FREE_PORTS_MAX 16

static void usage(FILE *f)
{
    fputs("usage: iothub_bench COMMAND [--name value ...]\n"
          "  methods       method-call latency and calls/s (emulator HTTP->MQTT vs Mosquitto MQTT relay)\n"
          "  scale         connect N devices to one target: time, RSS per device, idle CPU\n"
          "  startup       exec to first good answer (/health 200 or CONNACK): --target --port -- COMMAND\n"
          "  wait          until a server answers: --target emulator|mosquitto --port P [--pid P] --timeout S\n"
          "  gen-registry  write a registry.json with N bench devices: --devices N --out FILE\n"
          "  free-ports    print N free loopback TCP ports: --count N\n"
          "  report        results.json and RESULTS.md from the JSON lines of a run\n"
          "Targets: --emu-http --emu-https --emu-mqtt --emu-mqtts --emu-ca --emu-pid\n"
          "         --mosq-mqtt --mosq-mqtts --mosq-ca --mosq-pid   (see bench/README.md)\n",
          f);
}

/* Binds count sockets to 127.0.0.1:0 at once (so the ports differ), prints the ports, closes them. */
static int free_ports(struct bopt *o)
{
    long count = bopt_long(o, "count", 1);
    int fds[FREE_PORTS_MAX];
    if (o->bad || count < 1 || count > FREE_PORTS_MAX)
        return ERR_INVALID;
    int rc = ERR_OK;
    long made = 0;
    for (; made < count && !rc; made++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof a;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[made] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[made] < 0 || bind(fds[made], (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(fds[made], (struct sockaddr *)&a, &len) < 0)
            rc = ERR_IO;
        else
            printf("%s%u", made ? " " : "", ntohs(a.sin_port));
    }
    printf("\n");
    for (long i = 0; i < made; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    return rc;
}

/* As many descriptors as the hard limit allows: the scale runs hold one per device. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct bopt o;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (bopt_parse(&o, argc - 2, argv + 2)) {
        fprintf(stderr, "iothub_bench: %s\n", o.why);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "methods") == 0)
        rc = bmeth_main(&o);
    else if (strcmp(cmd, "scale") == 0)
        rc = bscale_main(&o);
    else if (strcmp(cmd, "startup") == 0)
        rc = bstart_main(&o);
    else if (strcmp(cmd, "wait") == 0)
        rc = bstart_wait_main(&o);
    else if (strcmp(cmd, "gen-registry") == 0)
        rc = breg_main(&o);
    else if (strcmp(cmd, "free-ports") == 0)
        rc = free_ports(&o);
    else if (strcmp(cmd, "report") == 0)
        rc = breport_main(&o);
    else {
        usage(stderr);
        return 2;
    }
    if (rc)
        fprintf(stderr, "iothub_bench %s: failed (%s)\n", cmd, err_str(rc));
    return rc ? 1 : 0;
}
