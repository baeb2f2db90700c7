/* bopt.c -- "--name value" option parsing for the benchmark program (see bopt.h). */
#include "bopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bopt_parse(struct bopt *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            o->rest = argv + i + 1;
            return 0;
        }
        if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc || o->n == BOPT_MAX) {
            snprintf(o->why, sizeof o->why, "unexpected argument %s (want --name value)", argv[i]);
            return -1;
        }
        o->names[o->n] = argv[i] + 2;
        o->values[o->n++] = argv[++i];
    }
    return 0;
}

const char *bopt_str(struct bopt *o, const char *name, const char *dflt)
{
    for (size_t i = o->n; i-- > 0;) {
        if (strcmp(o->names[i], name) == 0)
            return o->values[i];
    }
    return dflt;
}

static void mark_bad(struct bopt *o, const char *name, const char *value)
{
    if (!o->bad)
        snprintf(o->why, sizeof o->why, "--%s: bad value '%s'", name, value);
    o->bad = true;
}

long bopt_long(struct bopt *o, const char *name, long dflt)
{
    const char *v = bopt_str(o, name, NULL);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) {
        mark_bad(o, name, v);
        return dflt;
    }
    return x;
}

double bopt_double(struct bopt *o, const char *name, double dflt)
{
    const char *v = bopt_str(o, name, NULL);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) {
        mark_bad(o, name, v);
        return dflt;
    }
    return x;
}

size_t bopt_list(struct bopt *o, const char *name, const char *dflt, long *out)
{
    const char *v = bopt_str(o, name, dflt);
    size_t n = 0;
    const char *p = v;
    while (p && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || n == BOPT_LIST_MAX) {
            mark_bad(o, name, v);
            return 0;
        }
        out[n++] = x;
        p = *end ? end + 1 : end;
    }
    return n;
}

bool bopt_has(struct bopt *o, const char *name, const char *dflt, const char *item)
{
    const char *v = bopt_str(o, name, dflt);
    size_t k = strlen(item);
    for (const char *p = v; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == k && strncmp(p, item, k) == 0)
            return true;
        p = comma ? comma + 1 : p + len;
    }
    return false;
}
