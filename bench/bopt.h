/* bopt.h -- command-line options of the benchmark program: "--name value" pairs after the subcommand, an
 * optional "--" and a trailing command. Values are looked up by name, with defaults; numbers are checked
 * with strtol/strtod. No globals: a struct bopt per parse. */
#ifndef IOTHUB_BENCH_BOPT_H
#define IOTHUB_BENCH_BOPT_H

#include <stdbool.h>
#include <stddef.h>

#define BOPT_MAX 48
#define BOPT_LIST_MAX 16

struct bopt {
    const char *names[BOPT_MAX];
    const char *values[BOPT_MAX];
    size_t n;
    char **rest; /* arguments after "--" (NULL-terminated), or NULL */
    bool bad;    /* a value failed to parse: the caller reports usage */
    char why[128];
};

/* Parses argv[0..argc). Returns 0, or -1 (why filled) for a flag without a value or too many flags. */
int bopt_parse(struct bopt *o, int argc, char **argv);
const char *bopt_str(struct bopt *o, const char *name, const char *dflt);
/* Whole numbers and decimals; a malformed value sets o->bad and returns dflt. */
long bopt_long(struct bopt *o, const char *name, long dflt);
double bopt_double(struct bopt *o, const char *name, double dflt);
/* A comma-separated list of whole numbers into out[0..BOPT_LIST_MAX); returns the count (0 with o->bad on
 * a malformed list). */
size_t bopt_list(struct bopt *o, const char *name, const char *dflt, long *out);
/* True when name is set to a value in the comma-separated list (e.g. "tls" in "tls,plain"). */
bool bopt_has(struct bopt *o, const char *name, const char *dflt, const char *item);

#endif
