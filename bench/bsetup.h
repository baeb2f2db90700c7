/* bsetup.h -- builds the benchmark's targets from the command line: the emulator and Mosquitto, each plain
 * and TLS (ports, CA files, server pids), plus the credentials the emulator needs (device key, iothubowner
 * token). Owns the OpenSSL client contexts and the token. */
#ifndef IOTHUB_BENCH_BSETUP_H
#define IOTHUB_BENCH_BSETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "bopt.h"
#include "btarget.h"

/* The emulator's well-known development credentials (README; public, never for anything real). */
#define BSETUP_OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
/* The key bench-registry devices get (gen-registry). */
#define BSETUP_DEVICE_KEY "YmVuY2gtZGV2aWNlLWtleS0wMDAwMDAwMDAwMDAwMDA="

struct bsetup {
    SSL_CTX *emu_tls, *mosq_tls;
    char *owner_token;
    struct btarget targets[2][2]; /* [kind][tls] */
    bool present[2][2];
};

/* Reads --emu-http, --emu-https, --emu-mqtt, --emu-mqtts, --emu-ca, --emu-pid, --mosq-mqtt, --mosq-mqtts,
 * --mosq-ca, --mosq-pid, --hub-host, --device-key, --owner-key. A target is present when its ports are
 * given (and, for TLS, its CA file). Returns 0, or -1 with err filled. Clean up with bsetup_cleanup either way. */
int bsetup_init(struct bsetup *b, struct bopt *o, char *err, size_t errlen);
void bsetup_cleanup(struct bsetup *b);
/* The target, or NULL when its ports were not given. */
const struct btarget *bsetup_target(const struct bsetup *b, enum btarget_kind kind, bool tls);
/* Parses "emulator" / "mosquitto". Returns 0 or -1. */
int bsetup_kind(const char *name, enum btarget_kind *out);

#endif
