/* bstat.c -- clock, latency percentiles and /proc readings for the benchmark (see bstat.h). */
#include "bstat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bstat_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bstat_lat_init(struct bstat_lat *l, size_t cap)
{
    memset(l, 0, sizeof *l);
    l->v = malloc((cap ? cap : 1) * sizeof *l->v);
    if (!l->v)
        return -1;
    l->cap = cap;
    return 0;
}

void bstat_lat_cleanup(struct bstat_lat *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

void bstat_lat_reset(struct bstat_lat *l)
{
    l->n = 0;
    l->dropped = 0;
}

void bstat_lat_add(struct bstat_lat *l, double seconds)
{
    if (l->n < l->cap)
        l->v[l->n++] = seconds;
    else
        l->dropped++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bstat_lat_quantile(struct bstat_lat *l, double q)
{
    if (!l->n)
        return 0;
    qsort(l->v, l->n, sizeof *l->v, cmp_double);
    size_t rank = (size_t)(q * (double)l->n + 0.999999); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return l->v[rank - 1];
}

static FILE *open_proc(pid_t pid, const char *what)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, what);
    else
        snprintf(path, sizeof path, "/proc/self/%s", what);
    return fopen(path, "r");
}

long bstat_rss_kib(pid_t pid)
{
    FILE *f = open_proc(pid, "status");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            char *end;
            kib = strtol(line + 6, &end, 10);
            if (end == line + 6)
                kib = -1;
            break;
        }
    }
    fclose(f);
    return kib;
}

double bstat_cpu_s(pid_t pid)
{
    FILE *f = open_proc(pid, "stat");
    if (!f)
        return -1;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* Fields after the ")" that ends comm: state is field 3; utime and stime are fields 14 and 15. */
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}
