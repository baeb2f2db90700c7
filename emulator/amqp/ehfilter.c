/* ehfilter.c -- parser of the Event Hubs selector-filter text (see ehfilter.h). A hand-written scanner
 * over a bounded input: no allocation, no recursion. */
#include "ehfilter.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"

struct scan {
    const char *p, *end;
};

static void skip_blanks(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
        s->p++;
}

/* Consumes word (case-insensitive) when it comes next. */
static bool take(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || strncasecmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static int fail(char *why, size_t whylen, const char *text)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", text);
    return ERR_MALFORMED;
}

/* A decimal integer of at most 19 digits with an optional '-', exactly v[0..n). */
static bool parse_number(const char *v, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n && v[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n || n - i > 19)
        return false;
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        acc = acc * 10 + (uint64_t)(v[i] - '0');
    }
    if (acc > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? -(int64_t)acc : (int64_t)acc;
    return true;
}

int ehfilter_parse(const char *text, size_t len, struct ehfilter *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (!text || len > EHFILTER_MAX_TEXT)
        return fail(why, whylen, "filter text missing or too long");
    if (memchr(text, 0, len))
        return fail(why, whylen, "filter text contains NUL");
    struct scan s = {text, text + len};
    skip_blanks(&s);
    take(&s, "amqp.annotation.");
    if (take(&s, "x-opt-offset"))
        out->field = EHFILTER_OFFSET;
    else if (take(&s, "x-opt-sequence-number"))
        out->field = EHFILTER_SEQUENCE;
    else if (take(&s, "x-opt-enqueued-time"))
        out->field = EHFILTER_ENQUEUED_TIME;
    else
        return fail(why, whylen,
                    "the filter must name amqp.annotation.x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time");
    skip_blanks(&s);
    if (take(&s, ">="))
        out->inclusive = true;
    else if (!take(&s, ">"))
        return fail(why, whylen, "the filter's operator must be > or >=");
    skip_blanks(&s);
    const char *v = s.p;
    size_t n;
    if (s.p < s.end && (*s.p == '\'' || *s.p == '"')) {
        char q = *s.p++;
        v = s.p;
        const char *close = memchr(s.p, q, (size_t)(s.end - s.p));
        if (!close)
            return fail(why, whylen, "the filter's value has no closing quote");
        n = (size_t)(close - v);
        s.p = close + 1;
    } else {
        while (s.p < s.end && *s.p != ' ' && *s.p != '\t' && *s.p != '\r' && *s.p != '\n')
            s.p++;
        n = (size_t)(s.p - v);
    }
    skip_blanks(&s);
    if (s.p != s.end)
        return fail(why, whylen, "unexpected text after the filter's value");
    if (out->field == EHFILTER_OFFSET && n == 7 && strncasecmp(v, "@latest", 7) == 0) {
        out->latest = true;
        return ERR_OK;
    }
    if (!parse_number(v, n, &out->value))
        return fail(why, whylen, "the filter's value is not a whole number (or '@latest' for an offset)");
    return ERR_OK;
}
