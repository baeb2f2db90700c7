/* bsetup.c -- targets and credentials from the command line (see bsetup.h). */
#include "bsetup.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sas.h"
#include "tls.h"

#define BSETUP_TOKEN_LIFETIME_S (24 * 3600)

static struct sockaddr_in loopback(long port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static bool valid_port(long p)
{
    return p > 0 && p < 65536;
}

/* One target of a kind and transport from its two ports (device side, REST side for the emulator). */
static void add_target(struct bsetup *b, enum btarget_kind kind, bool tls, long mqtt_port, long http_port, long pid,
                       struct bopt *o)
{
    SSL_CTX *ctx = kind == BTARGET_EMULATOR ? b->emu_tls : b->mosq_tls;
    if (!valid_port(mqtt_port) || (kind == BTARGET_EMULATOR && !valid_port(http_port)) || (tls && !ctx))
        return;
    struct btarget *t = &b->targets[kind][tls];
    t->kind = kind;
    t->name = kind == BTARGET_EMULATOR ? "emulator" : "mosquitto";
    t->mqtt = loopback(mqtt_port);
    t->http = loopback(http_port);
    t->tls = tls ? ctx : NULL;
    t->tls_host = "localhost";
    t->hub_host = bopt_str(o, "hub-host", "localhost");
    t->device_key = bopt_str(o, "device-key", BSETUP_DEVICE_KEY);
    t->owner_token = b->owner_token;
    t->pid = (pid_t)pid;
    b->present[kind][tls] = true;
}

int bsetup_init(struct bsetup *b, struct bopt *o, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    const char *emu_ca = bopt_str(o, "emu-ca", NULL), *mosq_ca = bopt_str(o, "mosq-ca", NULL);
    if ((emu_ca && !(b->emu_tls = tls_client_ctx_new(emu_ca))) ||
        (mosq_ca && !(b->mosq_tls = tls_client_ctx_new(mosq_ca)))) {
        snprintf(err, errlen, "cannot load the CA file %s", b->emu_tls || !emu_ca ? mosq_ca : emu_ca);
        return -1;
    }
    const char *host = bopt_str(o, "hub-host", "localhost");
    if (sas_build(host, bopt_str(o, "owner-key", BSETUP_OWNER_KEY), (uint64_t)time(NULL) + BSETUP_TOKEN_LIFETIME_S,
                  "iothubowner", &b->owner_token)) {
        snprintf(err, errlen, "cannot build the iothubowner token (bad --owner-key?)");
        return -1;
    }
    long epid = bopt_long(o, "emu-pid", 0), mpid = bopt_long(o, "mosq-pid", 0);
    add_target(b, BTARGET_EMULATOR, false, bopt_long(o, "emu-mqtt", 0), bopt_long(o, "emu-http", 0), epid, o);
    add_target(b, BTARGET_EMULATOR, true, bopt_long(o, "emu-mqtts", 0), bopt_long(o, "emu-https", 0), epid, o);
    add_target(b, BTARGET_MOSQUITTO, false, bopt_long(o, "mosq-mqtt", 0), 0, mpid, o);
    add_target(b, BTARGET_MOSQUITTO, true, bopt_long(o, "mosq-mqtts", 0), 0, mpid, o);
    if (o->bad) {
        snprintf(err, errlen, "%s", o->why);
        return -1;
    }
    return 0;
}

void bsetup_cleanup(struct bsetup *b)
{
    SSL_CTX_free(b->emu_tls);
    SSL_CTX_free(b->mosq_tls);
    free(b->owner_token);
    memset(b, 0, sizeof *b);
}

const struct btarget *bsetup_target(const struct bsetup *b, enum btarget_kind kind, bool tls)
{
    return b->present[kind][tls] ? &b->targets[kind][tls] : NULL;
}

int bsetup_kind(const char *name, enum btarget_kind *out)
{
    if (name && strcmp(name, "emulator") == 0)
        *out = BTARGET_EMULATOR;
    else if (name && strcmp(name, "mosquitto") == 0)
        *out = BTARGET_MOSQUITTO;
    else
        return -1;
    return 0;
}
