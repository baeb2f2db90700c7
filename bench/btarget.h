/* btarget.h -- what the benchmark talks to: the emulator or the Mosquitto baseline, on one transport.
 * Plain data shared by bdev.c (devices), bcall.c (callers) and the scenarios; no functions. */
#ifndef IOTHUB_BENCH_BTARGET_H
#define IOTHUB_BENCH_BTARGET_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/types.h>

enum btarget_kind { BTARGET_EMULATOR, BTARGET_MOSQUITTO };

struct btarget {
    enum btarget_kind kind;
    const char *name;        /* "emulator" or "mosquitto" */
    struct sockaddr_in mqtt; /* where devices (and, for Mosquitto, the requesters) connect */
    struct sockaddr_in http; /* emulator only: the REST port of the same transport */
    SSL_CTX *tls;            /* NULL for plain TCP */
    const char *tls_host;    /* name the server certificate must match */
    const char *hub_host;    /* emulator: the host name in SAS tokens and MQTT user names */
    const char *device_key;  /* emulator: every bench device's primary key (base64) */
    const char *owner_token; /* emulator: iothubowner SAS token for the REST calls */
    pid_t pid;               /* the server process, for CPU and memory figures; 0 when unknown */
};

#endif
