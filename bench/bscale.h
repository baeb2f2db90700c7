/* bscale.h -- the connection-scale scenario (subcommand "scale"): connect N devices to one target, then
 * report the time to connect them all, the server's RSS per connected device and its CPU while idle. */
#ifndef IOTHUB_BENCH_BSCALE_H
#define IOTHUB_BENCH_BSCALE_H

#include "bopt.h"

/* Options: the bsetup ports/CA/pids, --target emulator|mosquitto --transport tls|plain --devices N
 * --pending N (handshakes in flight) --src-ips N (127.0.0.2...) --settle S --idle S --timeout S.
 * Prints one JSON object. Returns 0, or an ERR_ code when not every device connected or stayed connected. */
int bscale_main(struct bopt *o);

#endif
