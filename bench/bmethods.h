/* bmethods.h -- the method-call round-trip scenario (subcommand "methods"): latency and calls/s through the
 * emulator (HTTP caller -> emulator -> MQTT device) and through Mosquitto (MQTT requester -> broker ->
 * MQTT responder), per transport, device count, calls in flight and payload. */
#ifndef IOTHUB_BENCH_BMETHODS_H
#define IOTHUB_BENCH_BMETHODS_H

#include "bopt.h"

/* Options: the bsetup ports/CA/pids, --transports tls,plain --devices 1,100,1000 --inflight 1,16,64
 * --payloads 16,4096,102400 --warmup S --measure S --drain S. Returns 0 when every phase ran without an
 * error, else an ERR_ code (JSON for the phases that ran is printed either way). */
int bmeth_main(struct bopt *o);

#endif
