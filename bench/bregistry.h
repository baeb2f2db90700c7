/* bregistry.h -- writes a registry.json in the emulator's file format (emulator/store/registry.c: {"version":1,
 * "devices":[...]} sorted by id) with N bench devices and the well-known device1, so start-up and scale runs
 * need no REST calls to create identities (subcommand "gen-registry"). */
#ifndef IOTHUB_BENCH_BREGISTRY_H
#define IOTHUB_BENCH_BREGISTRY_H

#include "bopt.h"

/* Options: --devices N --device-key BASE64 --out FILE (written to FILE.tmp, then renamed). Returns 0 or an ERR_. */
int breg_main(struct bopt *o);

#endif
