/* breport.h -- turns the JSON lines of one run into bench/results.json and the RESULTS.md table (subcommand
 * "report"): headline figures against the targets, then every method-call phase, connection scale
 * and start-up, each with the emulator, Mosquitto and their ratio, plus the machine description. */
#ifndef IOTHUB_BENCH_BREPORT_H
#define IOTHUB_BENCH_BREPORT_H

#include "bopt.h"

/* Options: --jsonl FILE --machine FILE --mode full|quick --json-out FILE --md-out FILE [--notes FILE].
 * Returns 0 or an ERR_ code (unreadable input, unwritable output). */
int breport_main(struct bopt *o);

#endif
