/* bstartup.h -- the start-up scenario (subcommand "startup"): time from fork+exec of a server to its first
 * good answer (the emulator's GET /health 200, or Mosquitto's CONNACK), over several runs. */
#ifndef IOTHUB_BENCH_BSTARTUP_H
#define IOTHUB_BENCH_BSTARTUP_H

#include "bopt.h"

/* Options: --target emulator|mosquitto --port P --label TEXT --desc TEXT --runs N --warmup-runs N --timeout S
 * --log FILE, then "--" and the command to run. Prints one JSON object. Returns 0 or an ERR_ code. */
int bstart_main(struct bopt *o);
/* Subcommand "wait": --target --port --timeout S [--pid P]; returns 0 once the server answers well, else ERR_IO
 * (at once when process P has exited). */
int bstart_wait_main(struct bopt *o);

#endif
