/* bstat.h -- measuring for the benchmark: a monotonic clock, latency samples with percentiles, and a
 * process's memory (VmRSS) and CPU time from /proc. No network; used by every scenario. */
#ifndef IOTHUB_BENCH_BSTAT_H
#define IOTHUB_BENCH_BSTAT_H

#include <stddef.h>
#include <sys/types.h>

/* Seconds on CLOCK_MONOTONIC. */
double bstat_now(void);

/* Latency samples in seconds; at most cap are kept (later ones are counted but dropped). */
struct bstat_lat {
    double *v;
    size_t n, cap;
    size_t dropped;
};
/* Returns 0, or -1 on ERR_NOMEM. */
int bstat_lat_init(struct bstat_lat *l, size_t cap);
void bstat_lat_cleanup(struct bstat_lat *l);
void bstat_lat_reset(struct bstat_lat *l);
void bstat_lat_add(struct bstat_lat *l, double seconds);
/* The q-quantile (0..1, nearest rank) in seconds; sorts the samples. 0 when there are none. */
double bstat_lat_quantile(struct bstat_lat *l, double q);

/* VmRSS of pid in KiB (pid 0: this process), or -1 when it cannot be read. */
long bstat_rss_kib(pid_t pid);
/* utime + stime of pid in seconds (pid 0: this process), or -1. Resolution: one clock tick. */
double bstat_cpu_s(pid_t pid);

#endif
