/* query.c -- the IoT Hub query language: a tokenizer and a recursive-descent parser (bounded nesting and tree
 * depth, so neither parsing nor evaluation recurses without a limit) into a small expression tree, and its
 * three-valued evaluation, projection and aggregation over jansson documents. Pure: no I/O, no globals.
 * The grammar, semantics and limits are described in query.h. Tests: tests/unit/test_query.c; fuzz:
 * tests/fuzz/fuzz_query.c. */
#include "query.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "strmap.h"

/* ================================================================ tokens */

enum tok_kind {
    T_EOF,
    T_WORD,
    T_STRING,
    T_NUMBER,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_DOT,
    T_STAR,
    T_PLUS,
    T_MINUS,
    T_SLASH,
    T_PERCENT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
};

struct tok {
    enum tok_kind kind;
    size_t off, len; /* the token's bytes in the text */
    char *str;       /* T_STRING: decoded, NUL-terminated (malloc'd); may hold NULs, see slen */
    size_t slen;
    double num; /* T_NUMBER */
};

/* ================================================================ tree */

enum node_kind { N_CONST, N_PATH, N_AND, N_OR, N_NOT, N_CMP, N_IN, N_NIN, N_ARITH, N_NEG, N_FUNC, N_AGG };

enum cmp_op { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

enum func_id {
    F_IS_DEFINED,
    F_IS_NULL,
    F_IS_BOOL,
    F_IS_NUMBER,
    F_IS_STRING,
    F_IS_OBJECT,
    F_IS_ARRAY,
    F_IS_PRIMITIVE,
    F_STARTSWITH,
    F_ENDSWITH,
    F_CONTAINS,
};

enum agg_id { A_COUNT, A_SUM, A_AVG, A_MIN, A_MAX };

struct path {
    size_t n;
    char **seg;
};

struct node {
    enum node_kind kind;
    int op;            /* cmp_op, arithmetic token kind, func_id or agg_id */
    unsigned depth;    /* 1 + the deepest child */
    json_t *value;     /* N_CONST (NULL = undefined); N_IN/N_NIN: the array of constants */
    struct path *path; /* N_PATH; N_AGG's argument (NULL for COUNT) */
    struct node **kids;
    size_t nkids;
};

struct item {
    struct node *expr; /* N_PATH or N_AGG */
    char *name;        /* alias, or $n for an unaliased aggregate, or NULL (the path's found key) */
    size_t off;        /* where the item starts, for errors */
    size_t group;      /* aggregate queries: index of the GROUP BY path a plain item names */
};

struct query {
    enum query_source src;
    bool star;
    bool aggregate;
    long top;
    struct item *items;
    size_t nitems;
    struct node *where;
    struct path **group;
    size_t ngroup;
};

/* ================================================================ errors and positions */

struct parser {
    const char *text;
    size_t len;
    struct tok *toks;
    size_t ntok, pos;
    unsigned nesting;
    int rc; /* first error; ERR_OK while none */
    struct query_error *err;
};

static void position(const char *text, size_t off, unsigned *line, unsigned *column)
{
    unsigned l = 1, c = 0;
    for (size_t i = 0; i < off; i++) {
        unsigned char b = (unsigned char)text[i];
        if (b == '\n') {
            l++;
            c = 0;
        } else if ((b & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *column = c;
}

/* Records the first error at byte offset off. Always returns NULL, for `return fail(...)`. */
static void *fail_at(struct parser *p, int rc, size_t off, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void *fail_at(struct parser *p, int rc, size_t off, const char *fmt, ...)
{
    if (p->rc != ERR_OK)
        return NULL;
    p->rc = rc;
    if (!p->err || rc == ERR_NOMEM)
        return NULL;
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    p->err->offset = off;
    position(p->text, off, &p->err->line, &p->err->column);
    snprintf(p->err->message, sizeof p->err->message, "SQL query parse failed due to following errors: Line %u:%u %s",
             p->err->line, p->err->column, detail);
    return NULL;
}

static void *nomem(struct parser *p)
{
    return fail_at(p, ERR_NOMEM, 0, "out of memory");
}

/* Quotes a token for a message: 'text' cut to 40 bytes on a character boundary, control bytes as '?'. */
static void tok_text(const struct parser *p, const struct tok *t, char *out, size_t cap)
{
    if (t->kind == T_EOF) {
        snprintf(out, cap, "<EOF>");
        return;
    }
    size_t n = t->len, max = 40;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)p->text[t->off + n] & 0xC0) == 0x80)
            n--;
    }
    size_t o = 0;
    if (o + 1 < cap)
        out[o++] = '\'';
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char b = (unsigned char)p->text[t->off + i];
        out[o++] = (b < 0x20 || b == 0x7F) ? '?' : (char)b;
    }
    if (n < t->len && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    if (o + 1 < cap)
        out[o++] = '\'';
    out[o] = '\0';
}

/* "mismatched input 'X' expecting <what>" at the current token. */
static void *expected(struct parser *p, const char *what)
{
    const struct tok *t = &p->toks[p->pos];
    char q[64];
    tok_text(p, t, q, sizeof q);
    return fail_at(p, ERR_MALFORMED, t->off, "mismatched input %s expecting %s", q, what);
}

/* ================================================================ tokenizer */

static bool is_word_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80;
}

static bool is_word_char(unsigned char c)
{
    return is_word_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if it is not one (overlong, surrogate, > U+10FFFF
 * and truncated sequences are not). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static void put_utf8(struct buf *b, uint32_t cp, int *rc)
{
    unsigned char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*rc == ERR_OK)
        *rc = buf_append(b, o, n);
}

/* Reads 4 hex digits at s[i..]; -1 if they are not there. */
static long hex4(const char *s, size_t n, size_t i)
{
    if (i + 4 > n)
        return -1;
    long v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = hexval((unsigned char)s[i + k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Lexes the string literal starting at text[start] (a quote) into t. Returns the offset after it, or 0 on
 * error (recorded). */
static size_t lex_string(struct parser *p, size_t start, struct tok *t)
{
    const char *s = p->text;
    char quote = s[start];
    struct buf b;
    buf_init(&b, p->len + 1);
    int rc = ERR_OK;
    size_t i = start + 1;
    for (;;) {
        if (i >= p->len) {
            buf_cleanup(&b);
            fail_at(p, ERR_MALFORMED, start, "token recognition error at: unterminated string literal");
            return 0;
        }
        char c = s[i];
        if (c == quote) {
            i++;
            break;
        }
        if (c != '\\') {
            if (rc == ERR_OK)
                rc = buf_append_byte(&b, (uint8_t)c);
            i++;
            continue;
        }
        if (i + 1 >= p->len) {
            i++;
            continue; /* reported as unterminated above */
        }
        char e = s[i + 1];
        static const char from[] = "'\"\\/bfnrt", to[] = "'\"\\/\b\f\n\r\t";
        const char *m = strchr(from, e);
        if (e != '\0' && e != 'u' && m) {
            if (rc == ERR_OK)
                rc = buf_append_byte(&b, (uint8_t)to[m - from]);
            i += 2;
            continue;
        }
        long cp = e == 'u' ? hex4(s, p->len, i + 2) : -1;
        size_t esc_len = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = (i + 7 < p->len && s[i + 6] == '\\' && s[i + 7] == 'u') ? hex4(s, p->len, i + 8) : -1;
            cp = (lo >= 0xDC00 && lo <= 0xDFFF) ? 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00) : -1;
            esc_len = 12;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = -1;
        }
        if (cp < 0) {
            buf_cleanup(&b);
            fail_at(p, ERR_MALFORMED, i, "token recognition error at: invalid escape sequence in string literal");
            return 0;
        }
        put_utf8(&b, (uint32_t)cp, &rc);
        i += esc_len;
    }
    if (rc == ERR_OK)
        rc = buf_append_byte(&b, 0);
    if (rc != ERR_OK) {
        buf_cleanup(&b);
        nomem(p);
        return 0;
    }
    t->kind = T_STRING;
    t->slen = b.len - 1;
    t->str = buf_take_str(&b);
    if (!t->str) {
        buf_cleanup(&b);
        nomem(p);
        return 0;
    }
    return i;
}

/* Lexes a number at text[start] (a digit). Returns the offset after it, or 0 on error (recorded). */
static size_t lex_number(struct parser *p, size_t start, struct tok *t)
{
    const char *s = p->text;
    size_t i = start;
    bool hex = s[i] == '0' && i + 1 < p->len && (s[i + 1] == 'x' || s[i + 1] == 'X');
    if (hex) {
        i += 2;
        while (i < p->len && hexval((unsigned char)s[i]) >= 0)
            i++;
    } else {
        while (i < p->len && is_digit((unsigned char)s[i]))
            i++;
        if (i + 1 < p->len && s[i] == '.' && is_digit((unsigned char)s[i + 1])) {
            i++;
            while (i < p->len && is_digit((unsigned char)s[i]))
                i++;
        }
        if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
            size_t j = i + 1;
            if (j < p->len && (s[j] == '+' || s[j] == '-'))
                j++;
            if (j < p->len && is_digit((unsigned char)s[j])) {
                i = j;
                while (i < p->len && is_digit((unsigned char)s[i]))
                    i++;
            }
        }
    }
    if ((hex && i == start + 2) || (i < p->len && is_word_char((unsigned char)s[i])) || i - start > 400) {
        fail_at(p, ERR_MALFORMED, start, "token recognition error at: invalid number");
        return 0;
    }
    char tmp[408];
    memcpy(tmp, s + start, i - start);
    tmp[i - start] = '\0';
    errno = 0;
    double v = hex ? (double)strtoull(tmp + 2, NULL, 16) : strtod(tmp, NULL);
    if (errno == ERANGE || !isfinite(v)) {
        fail_at(p, ERR_MALFORMED, start, "token recognition error at: number out of range");
        return 0;
    }
    t->kind = T_NUMBER;
    t->num = v;
    return i;
}

static enum tok_kind punct(const char *s, size_t n, size_t i, size_t *len)
{
    char c = s[i], d = i + 1 < n ? s[i + 1] : '\0';
    *len = 1;
    switch (c) {
    case '(':
        return T_LPAREN;
    case ')':
        return T_RPAREN;
    case '[':
        return T_LBRACK;
    case ']':
        return T_RBRACK;
    case ',':
        return T_COMMA;
    case '.':
        return T_DOT;
    case '*':
        return T_STAR;
    case '+':
        return T_PLUS;
    case '-':
        return T_MINUS;
    case '/':
        return T_SLASH;
    case '%':
        return T_PERCENT;
    case '=':
        return T_EQ;
    case '!':
        if (d == '=') {
            *len = 2;
            return T_NE;
        }
        return T_EOF;
    case '<':
        if (d == '=' || d == '>') {
            *len = 2;
            return d == '=' ? T_LE : T_NE;
        }
        return T_LT;
    case '>':
        if (d == '=') {
            *len = 2;
            return T_GE;
        }
        return T_GT;
    default:
        return T_EOF;
    }
}

/* Checks size and encoding, then splits the whole text into p->toks (ending with T_EOF). */
static int tokenize(struct parser *p)
{
    size_t chars = 0;
    for (size_t i = 0; i < p->len;) {
        size_t n = utf8_seq((const unsigned char *)p->text + i, p->len - i);
        if (!n) {
            fail_at(p, ERR_MALFORMED, i, "token recognition error at: invalid UTF-8");
            return p->rc;
        }
        if (++chars > QUERY_MAX_CHARS) {
            fail_at(p, ERR_TOO_BIG, i, "the query is longer than %u characters", QUERY_MAX_CHARS);
            return p->rc;
        }
        i += n;
    }
    p->toks = calloc(chars + 1, sizeof *p->toks); /* a token takes at least one character */
    if (!p->toks) {
        nomem(p);
        return p->rc;
    }
    const char *s = p->text;
    size_t i = 0;
    for (;;) {
        while (i < p->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f'))
            i++;
        struct tok *t = &p->toks[p->ntok++];
        t->off = i;
        if (i >= p->len) {
            t->kind = T_EOF;
            return ERR_OK;
        }
        unsigned char c = (unsigned char)s[i];
        size_t end, plen;
        if (c == '\'' || c == '"') {
            end = lex_string(p, i, t);
        } else if (is_digit(c)) {
            end = lex_number(p, i, t);
        } else if (is_word_start(c)) {
            end = i + 1;
            while (end < p->len && is_word_char((unsigned char)s[end]))
                end++;
            t->kind = T_WORD;
        } else {
            t->kind = punct(s, p->len, i, &plen);
            end = i + plen;
            if (t->kind == T_EOF) {
                char q[8];
                if (c < 0x20 || c == 0x7F)
                    snprintf(q, sizeof q, "\\x%02x", c);
                else
                    snprintf(q, sizeof q, "%c", c);
                fail_at(p, ERR_MALFORMED, i, "token recognition error at: '%s'", q);
                end = 0;
            }
        }
        if (!end)
            return p->rc;
        t->len = end - i;
        i = end;
    }
}

/* ================================================================ tree helpers */

static void path_free(struct path *pa)
{
    if (!pa)
        return;
    for (size_t i = 0; i < pa->n; i++)
        free(pa->seg[i]);
    free(pa->seg);
    free(pa);
}

/* Recursion is bounded: no tree is deeper than QUERY_MAX_DEPTH (node_new refuses it). */
static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    json_decref(n->value);
    path_free(n->path);
    free(n);
}

/* A node with nkids children taken from kids (ownership moves, also on failure). */
static struct node *node_new(struct parser *p, enum node_kind kind, int op, struct node **kids, size_t nkids,
                             size_t off)
{
    unsigned depth = 0;
    for (size_t i = 0; i < nkids; i++)
        if (kids[i]->depth > depth)
            depth = kids[i]->depth;
    struct node *n = calloc(1, sizeof *n);
    struct node **k = nkids ? malloc(nkids * sizeof *k) : NULL;
    if (!n || (nkids && !k) || depth + 1 > QUERY_MAX_DEPTH) {
        free(n);
        free(k);
        for (size_t i = 0; i < nkids; i++)
            node_free(kids[i]);
        if (depth + 1 > QUERY_MAX_DEPTH)
            return fail_at(p, ERR_TOO_BIG, off, "the expression is nested deeper than %u levels", QUERY_MAX_DEPTH);
        return nomem(p);
    }
    if (nkids)
        memcpy(k, kids, nkids * sizeof *k);
    n->kind = kind;
    n->op = op;
    n->depth = depth + 1;
    n->kids = k;
    n->nkids = nkids;
    return n;
}

static struct node *node_leaf(struct parser *p, enum node_kind kind, json_t *value, struct path *pa)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n) {
        json_decref(value);
        path_free(pa);
        return nomem(p);
    }
    n->kind = kind;
    n->depth = 1;
    n->value = value;
    n->path = pa;
    return n;
}

/* ================================================================ parser: tokens */

static const struct tok *cur(const struct parser *p)
{
    return &p->toks[p->pos];
}

static const struct tok *peek(const struct parser *p, size_t ahead)
{
    size_t i = p->pos + ahead;
    return &p->toks[i < p->ntok ? i : p->ntok - 1];
}

static bool word_is(const struct parser *p, const struct tok *t, const char *kw)
{
    size_t n = strlen(kw);
    if (t->kind != T_WORD || t->len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p->text[t->off + i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != kw[i])
            return false;
    }
    return true;
}

static bool accept_word(struct parser *p, const char *kw)
{
    if (!word_is(p, cur(p), kw))
        return false;
    p->pos++;
    return true;
}

static bool accept(struct parser *p, enum tok_kind k)
{
    if (cur(p)->kind != k)
        return false;
    p->pos++;
    return true;
}

static bool is_reserved(const struct parser *p, const struct tok *t)
{
    static const char *const kw[] = {"SELECT", "FROM", "WHERE", "GROUP", "BY",   "AS",    "AND",  "OR",
                                     "NOT",    "IN",   "NIN",   "TOP",   "TRUE", "FALSE", "NULL", "UNDEFINED"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (word_is(p, t, kw[i]))
            return true;
    return false;
}

/* Enters one level of nesting; false (error recorded) past QUERY_MAX_NESTING. Leave with p->nesting--. */
static bool enter(struct parser *p)
{
    if (p->nesting >= QUERY_MAX_NESTING) {
        fail_at(p, ERR_TOO_BIG, cur(p)->off, "the expression is nested deeper than %u levels", QUERY_MAX_NESTING);
        return false;
    }
    p->nesting++;
    return true;
}

/* ================================================================ parser: paths and constants */

static bool path_push(struct parser *p, struct path *pa, const char *s, size_t n, size_t off)
{
    if (pa->n >= QUERY_MAX_SEGMENTS) {
        fail_at(p, ERR_TOO_BIG, off, "the path has more than %u segments", QUERY_MAX_SEGMENTS);
        return false;
    }
    if (n > QUERY_MAX_KEY || memchr(s, '\0', n) || n == 0) {
        fail_at(p, ERR_MALFORMED, off, "invalid property name in path");
        return false;
    }
    char **seg = realloc(pa->seg, (pa->n + 1) * sizeof *seg);
    char *copy = malloc(n + 1);
    if (seg)
        pa->seg = seg;
    if (!seg || !copy) {
        free(copy);
        nomem(p);
        return false;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    pa->seg[pa->n++] = copy;
    return true;
}

static bool tok_is_integer_text(const struct parser *p, const struct tok *t)
{
    if (t->kind != T_NUMBER)
        return false;
    for (size_t i = 0; i < t->len; i++)
        if (!is_digit((unsigned char)p->text[t->off + i]))
            return false;
    return true;
}

/* path := word ( '.' (word | digits) | '[' string ']' )*; the current token is the first word. */
static struct path *parse_path(struct parser *p)
{
    struct path *pa = calloc(1, sizeof *pa);
    if (!pa)
        return nomem(p);
    const struct tok *t = cur(p);
    if (!path_push(p, pa, p->text + t->off, t->len, t->off))
        goto fail;
    p->pos++;
    for (;;) {
        if (accept(p, T_DOT)) {
            t = cur(p);
            if (t->kind != T_WORD && !tok_is_integer_text(p, t)) {
                expected(p, "a property name");
                goto fail;
            }
            if (!path_push(p, pa, p->text + t->off, t->len, t->off))
                goto fail;
            p->pos++;
        } else if (accept(p, T_LBRACK)) {
            t = cur(p);
            if (t->kind != T_STRING) {
                expected(p, "a quoted property name");
                goto fail;
            }
            if (!path_push(p, pa, t->str, t->slen, t->off))
                goto fail;
            p->pos++;
            if (!accept(p, T_RBRACK)) {
                expected(p, "']'");
                goto fail;
            }
        } else {
            return pa;
        }
    }
fail:
    path_free(pa);
    return NULL;
}

/* A constant of an IN list: string, [-]number, true, false, null. Returns a new reference. */
static json_t *parse_constant(struct parser *p)
{
    const struct tok *t = cur(p);
    json_t *v = NULL;
    if (t->kind == T_STRING) {
        v = json_stringn(t->str, t->slen);
    } else if (t->kind == T_NUMBER) {
        v = json_real(t->num);
    } else if (t->kind == T_MINUS && peek(p, 1)->kind == T_NUMBER) {
        p->pos++;
        v = json_real(-cur(p)->num);
    } else if (word_is(p, t, "TRUE")) {
        v = json_true();
    } else if (word_is(p, t, "FALSE")) {
        v = json_false();
    } else if (word_is(p, t, "NULL")) {
        v = json_null();
    } else {
        return expected(p, "a constant");
    }
    if (!v)
        return nomem(p);
    p->pos++;
    return v;
}

/* '[' [constant (',' constant)*] ']' */
static json_t *parse_list(struct parser *p)
{
    if (!accept(p, T_LBRACK))
        return expected(p, "'['");
    json_t *arr = json_array();
    if (!arr)
        return nomem(p);
    if (accept(p, T_RBRACK))
        return arr;
    for (;;) {
        if (json_array_size(arr) >= QUERY_MAX_LIST) {
            json_decref(arr);
            return fail_at(p, ERR_TOO_BIG, cur(p)->off, "the list has more than %u elements", QUERY_MAX_LIST);
        }
        json_t *v = parse_constant(p);
        if (!v || json_array_append_new(arr, v)) {
            json_decref(arr);
            return v ? nomem(p) : NULL;
        }
        if (accept(p, T_RBRACK))
            return arr;
        if (!accept(p, T_COMMA)) {
            json_decref(arr);
            return expected(p, "',' or ']'");
        }
    }
}

/* ================================================================ parser: expressions */

static struct node *parse_or(struct parser *p);

struct func_def {
    const char *name;
    int id;
    size_t nargs;
};

static const struct func_def funcs[] = {
    {"IS_DEFINED", F_IS_DEFINED, 1}, {"IS_NULL", F_IS_NULL, 1},           {"IS_BOOL", F_IS_BOOL, 1},
    {"IS_NUMBER", F_IS_NUMBER, 1},   {"IS_STRING", F_IS_STRING, 1},       {"IS_OBJECT", F_IS_OBJECT, 1},
    {"IS_ARRAY", F_IS_ARRAY, 1},     {"IS_PRIMITIVE", F_IS_PRIMITIVE, 1}, {"STARTSWITH", F_STARTSWITH, 2},
    {"ENDSWITH", F_ENDSWITH, 2},     {"CONTAINS", F_CONTAINS, 2},
};

static const struct func_def aggs[] = {
    {"COUNT", A_COUNT, 0}, {"SUM", A_SUM, 1}, {"AVG", A_AVG, 1}, {"MIN", A_MIN, 1}, {"MAX", A_MAX, 1},
};

static const struct func_def *find_def(const struct parser *p, const struct tok *t, const struct func_def *defs,
                                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (word_is(p, t, defs[i].name))
            return &defs[i];
    return NULL;
}

/* name '(' args ')' for a condition function; the current token is the name, the next '('. */
static struct node *parse_call(struct parser *p)
{
    const struct tok *name = cur(p);
    char q[64];
    tok_text(p, name, q, sizeof q);
    if (find_def(p, name, aggs, sizeof aggs / sizeof aggs[0]))
        return fail_at(p, ERR_MALFORMED, name->off, "aggregate function %s is only allowed in SELECT", q);
    const struct func_def *f = find_def(p, name, funcs, sizeof funcs / sizeof funcs[0]);
    if (!f)
        return fail_at(p, ERR_MALFORMED, name->off, "unknown function %s", q);
    p->pos += 2;
    struct node *args[2] = {NULL, NULL};
    size_t n = 0;
    for (; n < f->nargs; n++) {
        if (n && !accept(p, T_COMMA)) {
            expected(p, "','");
            goto fail;
        }
        args[n] = parse_or(p);
        if (!args[n])
            goto fail;
    }
    if (!accept(p, T_RPAREN)) {
        expected(p, f->nargs == 1 ? "')' (the function takes one argument)" : "')' (the function takes two arguments)");
        goto fail;
    }
    return node_new(p, N_FUNC, f->id, args, n, name->off);
fail:
    for (size_t i = 0; i < n; i++)
        node_free(args[i]);
    return NULL;
}

/* A constant leaf; v is a new reference, NULL after a failed allocation (ERR_NOMEM). */
static struct node *const_leaf(struct parser *p, json_t *v)
{
    return v ? node_leaf(p, N_CONST, v, NULL) : nomem(p);
}

/* primary := constant | path | call | '(' expr ')' */
static struct node *parse_primary(struct parser *p)
{
    const struct tok *t = cur(p);
    switch (t->kind) {
    case T_STRING:
        p->pos++;
        return const_leaf(p, json_stringn(t->str, t->slen));
    case T_NUMBER:
        p->pos++;
        return const_leaf(p, json_real(t->num));
    case T_LPAREN: {
        p->pos++;
        if (!enter(p))
            return NULL;
        struct node *n = parse_or(p);
        p->nesting--;
        if (n && !accept(p, T_RPAREN)) {
            node_free(n);
            return expected(p, "')'");
        }
        return n;
    }
    case T_WORD:
        if (word_is(p, t, "TRUE") || word_is(p, t, "FALSE") || word_is(p, t, "NULL")) {
            json_t *v = word_is(p, t, "TRUE") ? json_true() : word_is(p, t, "FALSE") ? json_false() : json_null();
            p->pos++;
            return const_leaf(p, v);
        }
        if (word_is(p, t, "UNDEFINED")) {
            p->pos++;
            return node_leaf(p, N_CONST, NULL, NULL);
        }
        if (peek(p, 1)->kind == T_LPAREN) {
            if (!enter(p))
                return NULL;
            struct node *n = parse_call(p);
            p->nesting--;
            return n;
        }
        if (!is_reserved(p, t)) {
            struct path *pa = parse_path(p);
            return pa ? node_leaf(p, N_PATH, NULL, pa) : NULL;
        }
        return expected(p, "an expression");
    default:
        return expected(p, "an expression");
    }
}

/* unary := '-' unary | primary */
static struct node *parse_unary(struct parser *p)
{
    if (cur(p)->kind != T_MINUS)
        return parse_primary(p);
    size_t off = cur(p)->off;
    p->pos++;
    if (!enter(p))
        return NULL;
    struct node *k = parse_unary(p);
    p->nesting--;
    return k ? node_new(p, N_NEG, 0, &k, 1, off) : NULL;
}

/* A left-associative chain of binary arithmetic: level 0 is * / %, level 1 is + -. */
static struct node *parse_arith(struct parser *p, int level)
{
    struct node *l = level ? parse_arith(p, 0) : parse_unary(p);
    while (l) {
        enum tok_kind k = cur(p)->kind;
        bool mul = k == T_STAR || k == T_SLASH || k == T_PERCENT, add = k == T_PLUS || k == T_MINUS;
        if (!(level ? add : mul))
            return l;
        size_t off = cur(p)->off;
        p->pos++;
        struct node *r = level ? parse_arith(p, 0) : parse_unary(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        struct node *kids[2] = {l, r};
        l = node_new(p, N_ARITH, (int)k, kids, 2, off);
    }
    return NULL;
}

/* comparison := sum [cmpop sum | [NOT] IN list | NIN list] */
static struct node *parse_cmp(struct parser *p)
{
    struct node *l = parse_arith(p, 1);
    if (!l)
        return NULL;
    const struct tok *t = cur(p);
    size_t off = t->off;
    static const struct {
        enum tok_kind tok;
        enum cmp_op op;
    } ops[] = {{T_EQ, C_EQ}, {T_NE, C_NE}, {T_LT, C_LT}, {T_LE, C_LE}, {T_GT, C_GT}, {T_GE, C_GE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (t->kind != ops[i].tok)
            continue;
        p->pos++;
        struct node *r = parse_arith(p, 1);
        if (!r) {
            node_free(l);
            return NULL;
        }
        struct node *kids[2] = {l, r};
        return node_new(p, N_CMP, ops[i].op, kids, 2, off);
    }
    enum node_kind kind;
    if (accept_word(p, "IN")) {
        kind = N_IN;
    } else if (accept_word(p, "NIN")) {
        kind = N_NIN;
    } else if (word_is(p, t, "NOT") && word_is(p, peek(p, 1), "IN")) {
        p->pos += 2;
        kind = N_NIN;
    } else {
        return l;
    }
    json_t *list = parse_list(p);
    if (!list) {
        node_free(l);
        return NULL;
    }
    struct node *n = node_new(p, kind, 0, &l, 1, off);
    if (!n) {
        json_decref(list);
        return NULL;
    }
    n->value = list;
    return n;
}

/* not := NOT not | comparison */
static struct node *parse_not(struct parser *p)
{
    const struct tok *t = cur(p);
    if (!word_is(p, t, "NOT"))
        return parse_cmp(p);
    p->pos++;
    if (!enter(p))
        return NULL;
    struct node *k = parse_not(p);
    p->nesting--;
    return k ? node_new(p, N_NOT, 0, &k, 1, t->off) : NULL;
}

/* level 0: and := not (AND not)*; level 1: or := and (OR and)*. Chains become one n-ary node. */
static struct node *parse_logic(struct parser *p, int level)
{
    const char *kw = level ? "OR" : "AND";
    size_t off = cur(p)->off;
    struct node *first = level ? parse_logic(p, 0) : parse_not(p);
    if (!first || !word_is(p, cur(p), kw))
        return first;
    struct node **terms = malloc(QUERY_MAX_TERMS * sizeof *terms);
    if (!terms) {
        node_free(first);
        return nomem(p);
    }
    size_t n = 0;
    terms[n++] = first;
    while (accept_word(p, kw)) {
        if (n >= QUERY_MAX_TERMS) {
            fail_at(p, ERR_TOO_BIG, cur(p)->off, "more than %u terms joined by %s", QUERY_MAX_TERMS, kw);
            goto fail;
        }
        struct node *t = level ? parse_logic(p, 0) : parse_not(p);
        if (!t)
            goto fail;
        terms[n++] = t;
    }
    struct node *r = node_new(p, level ? N_OR : N_AND, 0, terms, n, off);
    free(terms);
    return r;
fail:
    while (n)
        node_free(terms[--n]);
    free(terms);
    return NULL;
}

static struct node *parse_or(struct parser *p)
{
    return parse_logic(p, 1);
}

/* ================================================================ parser: the query */

static void item_cleanup(struct item *it)
{
    node_free(it->expr);
    free(it->name);
}

void query_free(struct query *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nitems; i++)
        item_cleanup(&q->items[i]);
    free(q->items);
    node_free(q->where);
    for (size_t i = 0; i < q->ngroup; i++)
        path_free(q->group[i]);
    free(q->group);
    free(q);
}

static char *dup_text(struct parser *p, const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        return nomem(p);
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

/* item := path | aggregate, [AS alias] */
static bool parse_item(struct parser *p, struct item *it)
{
    const struct tok *t = cur(p);
    it->off = t->off;
    if (t->kind != T_WORD || is_reserved(p, t)) {
        expected(p, "'*', a property path or an aggregate");
        return false;
    }
    if (peek(p, 1)->kind == T_LPAREN) {
        char q[64];
        tok_text(p, t, q, sizeof q);
        const struct func_def *a = find_def(p, t, aggs, sizeof aggs / sizeof aggs[0]);
        if (!a) {
            fail_at(p, ERR_MALFORMED, t->off,
                    "%s is not an aggregate function (SELECT takes paths and COUNT, "
                    "SUM, AVG, MIN, MAX)",
                    q);
            return false;
        }
        p->pos += 2;
        struct path *pa = NULL;
        if (a->nargs) {
            if (cur(p)->kind != T_WORD || is_reserved(p, cur(p))) {
                expected(p, "a property path");
                return false;
            }
            pa = parse_path(p);
            if (!pa)
                return false;
        }
        if (!accept(p, T_RPAREN)) {
            path_free(pa);
            expected(p, a->nargs ? "')'" : "')' (COUNT takes no argument)");
            return false;
        }
        it->expr = node_leaf(p, N_AGG, NULL, pa);
        if (!it->expr)
            return false;
        it->expr->op = a->id;
    } else {
        struct path *pa = parse_path(p);
        it->expr = pa ? node_leaf(p, N_PATH, NULL, pa) : NULL;
        if (!it->expr)
            return false;
    }
    if (accept_word(p, "AS")) {
        t = cur(p);
        if (t->kind != T_WORD || is_reserved(p, t)) {
            expected(p, "an alias");
            return false;
        }
        it->name = dup_text(p, p->text + t->off, t->len);
        if (!it->name)
            return false;
        p->pos++;
    }
    return true;
}

static bool parse_source(struct parser *p, struct query *q)
{
    if (!accept_word(p, "DEVICES"))
        return expected(p, "devices, devices.modules or devices.jobs"), false;
    q->src = QUERY_DEVICES;
    if (accept(p, T_DOT)) {
        if (accept_word(p, "MODULES"))
            q->src = QUERY_MODULES;
        else if (accept_word(p, "JOBS"))
            q->src = QUERY_JOBS;
        else
            return expected(p, "modules or jobs"), false;
    }
    return true;
}

static bool ieq(const char *a, const char *b)
{
    for (;; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
        if (!x)
            return true;
    }
}

static bool path_ieq(const struct path *a, const struct path *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!ieq(a->seg[i], b->seg[i]))
            return false;
    return true;
}

/* Drops a leading collection name (devices., devices.modules., devices.jobs.) from a path. */
static void strip_collection(enum query_source src, struct path *pa)
{
    size_t drop = 0;
    if (pa->n > 1 && ieq(pa->seg[0], "devices")) {
        drop = 1;
        if (src != QUERY_DEVICES && pa->n > 2 && ieq(pa->seg[1], src == QUERY_MODULES ? "modules" : "jobs"))
            drop = 2;
    }
    for (size_t i = 0; i < drop; i++)
        free(pa->seg[i]);
    memmove(pa->seg, pa->seg + drop, (pa->n - drop) * sizeof *pa->seg);
    pa->n -= drop;
}

static void strip_tree(enum query_source src, struct node *n)
{
    if (n->path)
        strip_collection(src, n->path);
    for (size_t i = 0; i < n->nkids; i++)
        strip_tree(src, n->kids[i]);
}

static const char *item_label(const struct item *it)
{
    const struct path *pa = it->expr->path;
    return it->name ? it->name : pa && it->expr->kind == N_PATH ? pa->seg[pa->n - 1] : "";
}

/* The rules the grammar alone does not express; names unaliased aggregates $1, $2... */
static bool check_query(struct parser *p, struct query *q)
{
    size_t unnamed = 0;
    for (size_t i = 0; i < q->nitems; i++) {
        struct item *it = &q->items[i];
        strip_tree(q->src, it->expr);
        if (it->expr->kind == N_AGG) {
            q->aggregate = true;
            if (!it->name) {
                char name[24];
                snprintf(name, sizeof name, "$%zu", ++unnamed);
                it->name = dup_text(p, name, strlen(name));
                if (!it->name)
                    return false;
            }
        }
    }
    for (size_t i = 0; i < q->ngroup; i++)
        strip_collection(q->src, q->group[i]);
    if (q->ngroup)
        q->aggregate = true;
    if (q->src == QUERY_JOBS && (!q->star || q->ngroup))
        return fail_at(p, ERR_MALFORMED, q->star ? 0 : q->items[0].off,
                       "devices.jobs supports SELECT * only, without GROUP BY"),
               false;
    if (q->star && q->ngroup)
        return fail_at(p, ERR_MALFORMED, 0, "SELECT * cannot be used with GROUP BY"), false;
    for (size_t i = 0; i < q->nitems; i++) {
        struct item *it = &q->items[i];
        for (size_t j = 0; j < i; j++)
            if (ieq(item_label(it), item_label(&q->items[j])))
                return fail_at(p, ERR_MALFORMED, it->off, "duplicate name '%s' in SELECT (use AS)", item_label(it)),
                       false;
        if (!q->aggregate || it->expr->kind == N_AGG)
            continue;
        size_t g = 0;
        while (g < q->ngroup && !path_ieq(it->expr->path, q->group[g]))
            g++;
        if (g == q->ngroup)
            return fail_at(p, ERR_MALFORMED, it->off,
                           "'%s' must appear in GROUP BY to be selected with an "
                           "aggregate",
                           item_label(it)),
                   false;
        it->group = g;
    }
    return true;
}

static bool parse_select_list(struct parser *p, struct query *q)
{
    if (accept(p, T_STAR)) {
        q->star = true;
        return true;
    }
    q->items = calloc(QUERY_MAX_ITEMS, sizeof *q->items);
    if (!q->items)
        return nomem(p), false;
    do {
        if (q->nitems >= QUERY_MAX_ITEMS)
            return fail_at(p, ERR_TOO_BIG, cur(p)->off, "more than %u items in SELECT", QUERY_MAX_ITEMS), false;
        if (!parse_item(p, &q->items[q->nitems++]))
            return false;
    } while (accept(p, T_COMMA));
    return true;
}

static bool parse_group_by(struct parser *p, struct query *q)
{
    if (!accept_word(p, "BY"))
        return expected(p, "BY"), false;
    q->group = calloc(QUERY_MAX_ITEMS, sizeof *q->group);
    if (!q->group)
        return nomem(p), false;
    do {
        if (q->ngroup >= QUERY_MAX_ITEMS)
            return fail_at(p, ERR_TOO_BIG, cur(p)->off, "more than %u paths in GROUP BY", QUERY_MAX_ITEMS), false;
        if (cur(p)->kind != T_WORD || is_reserved(p, cur(p)))
            return expected(p, "a property path"), false;
        q->group[q->ngroup] = parse_path(p);
        if (!q->group[q->ngroup])
            return false;
        q->ngroup++;
    } while (accept(p, T_COMMA));
    return true;
}

static bool parse_top(struct parser *p, struct query *q)
{
    const struct tok *t = cur(p);
    if (t->kind != T_NUMBER || t->num != floor(t->num) || t->num < 0 || t->num > 1e9)
        return expected(p, "a whole number of rows after TOP"), false;
    q->top = (long)t->num;
    p->pos++;
    return true;
}

/* SELECT [TOP n] list FROM source [WHERE cond] [GROUP BY paths] <EOF> */
static bool parse_full(struct parser *p, struct query *q)
{
    if (!accept_word(p, "SELECT"))
        return expected(p, "SELECT"), false;
    if (accept_word(p, "TOP") && !parse_top(p, q))
        return false;
    if (!parse_select_list(p, q))
        return false;
    if (!accept_word(p, "FROM"))
        return expected(p, q->star || !q->nitems ? "FROM" : "',', AS or FROM"), false;
    if (!parse_source(p, q))
        return false;
    if (accept_word(p, "WHERE")) {
        q->where = parse_or(p);
        if (!q->where)
            return false;
    }
    if (accept_word(p, "GROUP") && !parse_group_by(p, q))
        return false;
    if (cur(p)->kind != T_EOF)
        return expected(p, q->ngroup  ? "',' or <EOF>"
                           : q->where ? "an operator, GROUP BY or <EOF>"
                                      : "WHERE, GROUP BY or <EOF>"),
               false;
    return true;
}

static int parse_common(const char *text, size_t len, bool condition, struct query **out, struct query_error *err)
{
    if (out)
        *out = NULL;
    if (!out || (!text && len))
        return ERR_INVALID;
    struct parser p = {.text = text ? text : "", .len = len, .err = err};
    struct query *q = calloc(1, sizeof *q);
    if (!q)
        return ERR_NOMEM;
    q->top = -1;
    bool ok = false;
    if (tokenize(&p) == ERR_OK) {
        if (condition) {
            q->star = true;
            q->where = parse_or(&p);
            ok = q->where && (cur(&p)->kind == T_EOF || (expected(&p, "an operator or <EOF>"), false));
        } else {
            ok = parse_full(&p, q) && check_query(&p, q);
        }
        if (ok && q->where)
            strip_tree(q->src, q->where);
    }
    for (size_t i = 0; i < p.ntok; i++)
        free(p.toks[i].str);
    free(p.toks);
    if (!ok || p.rc != ERR_OK) {
        query_free(q);
        return p.rc != ERR_OK ? p.rc : ERR_NOMEM;
    }
    *out = q;
    return ERR_OK;
}

int query_parse(const char *text, size_t len, struct query **out, struct query_error *err)
{
    return parse_common(text, len, false, out, err);
}

int query_parse_condition(const char *text, size_t len, struct query **out, struct query_error *err)
{
    return parse_common(text, len, true, out, err);
}

/* ================================================================ accessors */

enum query_source query_source(const struct query *q)
{
    return q->src;
}

bool query_selects_all(const struct query *q)
{
    return q->star;
}

bool query_is_aggregate(const struct query *q)
{
    return q->aggregate;
}

long query_top(const struct query *q)
{
    return q->top;
}

const char *query_item_type(const struct query *q)
{
    if (!q->star)
        return "raw";
    return q->src == QUERY_JOBS ? "deviceJob" : "twin";
}

/* ================================================================ evaluation */

enum vtype { V_UNDEF, V_NULL, V_BOOL, V_NUM, V_STR, V_OBJ, V_ARR };

struct val {
    enum vtype t;
    bool b;
    double n;
    const char *s;
    size_t slen;
};

static const struct val UNDEF = {.t = V_UNDEF};

static struct val vbool(bool b)
{
    return (struct val){.t = V_BOOL, .b = b};
}

static struct val vnum(double n)
{
    return isfinite(n) ? (struct val){.t = V_NUM, .n = n} : UNDEF;
}

static struct val from_json(const json_t *j)
{
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT:
        return (struct val){.t = V_OBJ};
    case JSON_ARRAY:
        return (struct val){.t = V_ARR};
    case JSON_STRING:
        return (struct val){.t = V_STR, .s = json_string_value(j), .slen = json_string_length(j)};
    case JSON_INTEGER:
    case JSON_REAL:
        return vnum(json_number_value(j));
    case JSON_TRUE:
        return vbool(true);
    case JSON_FALSE:
        return vbool(false);
    case JSON_NULL:
        return j ? (struct val){.t = V_NULL} : UNDEF;
    }
    return UNDEF;
}

/* The member key names, exactly or else ASCII case-insensitively; *found is the document's spelling. */
static const json_t *member(const json_t *obj, const char *key, const char **found)
{
    if (!json_is_object(obj))
        return NULL;
    json_t *v = json_object_get(obj, key);
    if (v) {
        *found = key;
        return v;
    }
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)obj, k, x)
    {
        if (ieq(k, key)) {
            *found = k;
            return x;
        }
    }
    return NULL;
}

static const json_t *resolve(const struct path *pa, const json_t *doc, const char **found)
{
    const json_t *v = doc;
    const char *f = NULL;
    for (size_t i = 0; i < pa->n && v; i++)
        v = member(v, pa->seg[i], &f);
    if (found)
        *found = f;
    return v;
}

/* Equality: undefined across types, for objects and arrays, and when either side is undefined. */
static struct val equal(struct val a, struct val b)
{
    if (a.t == V_UNDEF || b.t == V_UNDEF || a.t != b.t || a.t == V_OBJ || a.t == V_ARR)
        return UNDEF;
    switch (a.t) {
    case V_NULL:
        return vbool(true);
    case V_BOOL:
        return vbool(a.b == b.b);
    case V_NUM:
        return vbool(a.n == b.n);
    default:
        return vbool(a.slen == b.slen && memcmp(a.s, b.s, a.slen) == 0);
    }
}

static struct val compare(struct val a, struct val b, enum cmp_op op)
{
    if (op == C_EQ)
        return equal(a, b);
    if (op == C_NE) {
        struct val e = equal(a, b);
        return e.t == V_BOOL ? vbool(!e.b) : UNDEF;
    }
    int c;
    if (a.t == V_NUM && b.t == V_NUM) {
        c = a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
    } else if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.slen < b.slen ? a.slen : b.slen;
        c = memcmp(a.s, b.s, m);
        if (c == 0)
            c = a.slen < b.slen ? -1 : a.slen > b.slen ? 1 : 0;
    } else {
        return UNDEF;
    }
    switch (op) {
    case C_LT:
        return vbool(c < 0);
    case C_LE:
        return vbool(c <= 0);
    case C_GT:
        return vbool(c > 0);
    default:
        return vbool(c >= 0);
    }
}

static struct val eval(const struct node *n, const json_t *doc);

static struct val eval_logic(const struct node *n, const json_t *doc)
{
    bool is_and = n->kind == N_AND;
    struct val r = vbool(is_and);
    for (size_t i = 0; i < n->nkids; i++) {
        struct val v = eval(n->kids[i], doc);
        if (v.t == V_BOOL && v.b != is_and)
            return v; /* false decides an AND, true an OR */
        if (v.t != V_BOOL)
            r = UNDEF;
    }
    return r;
}

static struct val eval_in(const struct node *n, const json_t *doc)
{
    struct val v = eval(n->kids[0], doc);
    if (v.t == V_UNDEF || v.t == V_OBJ || v.t == V_ARR)
        return UNDEF;
    size_t i;
    json_t *c;
    json_array_foreach(n->value, i, c)
    {
        struct val e = equal(v, from_json(c));
        if (e.t == V_BOOL && e.b)
            return vbool(n->kind == N_IN);
    }
    return vbool(n->kind == N_NIN);
}

static struct val eval_arith(const struct node *n, const json_t *doc)
{
    struct val a = eval(n->kids[0], doc), b = eval(n->kids[1], doc);
    if (a.t != V_NUM || b.t != V_NUM)
        return UNDEF;
    switch ((enum tok_kind)n->op) {
    case T_PLUS:
        return vnum(a.n + b.n);
    case T_MINUS:
        return vnum(a.n - b.n);
    case T_STAR:
        return vnum(a.n * b.n);
    case T_SLASH:
        return b.n == 0 ? UNDEF : vnum(a.n / b.n);
    default:
        return b.n == 0 ? UNDEF : vnum(fmod(a.n, b.n));
    }
}

static bool has_part(struct val s, struct val part, int where)
{
    if (part.slen > s.slen)
        return false;
    if (where < 0)
        return memcmp(s.s, part.s, part.slen) == 0;
    if (where > 0)
        return memcmp(s.s + s.slen - part.slen, part.s, part.slen) == 0;
    if (part.slen == 0)
        return true;
    for (size_t i = 0; i + part.slen <= s.slen; i++)
        if (memcmp(s.s + i, part.s, part.slen) == 0)
            return true;
    return false;
}

static struct val eval_func(const struct node *n, const json_t *doc)
{
    struct val a = eval(n->kids[0], doc);
    switch ((enum func_id)n->op) {
    case F_IS_DEFINED:
        return vbool(a.t != V_UNDEF);
    case F_IS_NULL:
        return vbool(a.t == V_NULL);
    case F_IS_BOOL:
        return vbool(a.t == V_BOOL);
    case F_IS_NUMBER:
        return vbool(a.t == V_NUM);
    case F_IS_STRING:
        return vbool(a.t == V_STR);
    case F_IS_OBJECT:
        return vbool(a.t == V_OBJ);
    case F_IS_ARRAY:
        return vbool(a.t == V_ARR);
    case F_IS_PRIMITIVE:
        return vbool(a.t == V_NULL || a.t == V_BOOL || a.t == V_NUM || a.t == V_STR);
    default:
        break;
    }
    struct val b = eval(n->kids[1], doc);
    if (a.t != V_STR || b.t != V_STR)
        return UNDEF;
    int where = n->op == F_STARTSWITH ? -1 : n->op == F_ENDSWITH ? 1 : 0;
    return vbool(has_part(a, b, where));
}

/* Recursion is bounded by the tree's depth (at most QUERY_MAX_DEPTH). */
static struct val eval(const struct node *n, const json_t *doc)
{
    switch (n->kind) {
    case N_CONST:
        return from_json(n->value);
    case N_PATH:
        return from_json(resolve(n->path, doc, NULL));
    case N_AND:
    case N_OR:
        return eval_logic(n, doc);
    case N_NOT: {
        struct val v = eval(n->kids[0], doc);
        return v.t == V_BOOL ? vbool(!v.b) : UNDEF;
    }
    case N_CMP:
        return compare(eval(n->kids[0], doc), eval(n->kids[1], doc), (enum cmp_op)n->op);
    case N_IN:
    case N_NIN:
        return eval_in(n, doc);
    case N_ARITH:
        return eval_arith(n, doc);
    case N_NEG: {
        struct val v = eval(n->kids[0], doc);
        return v.t == V_NUM ? vnum(-v.n) : UNDEF;
    }
    case N_FUNC:
        return eval_func(n, doc);
    case N_AGG:
        break;
    }
    return UNDEF;
}

bool query_match(const struct query *q, const json_t *doc)
{
    if (!q->where)
        return true;
    struct val v = eval(q->where, doc);
    return v.t == V_BOOL && v.b;
}

json_t *query_project(const struct query *q, const json_t *doc)
{
    if (q->aggregate)
        return NULL;
    if (q->star)
        return json_deep_copy(doc);
    json_t *row = json_object();
    for (size_t i = 0; row && i < q->nitems; i++) {
        const struct item *it = &q->items[i];
        const char *found;
        const json_t *v = resolve(it->expr->path, doc, &found);
        if (v && json_object_set_new(row, it->name ? it->name : found, json_deep_copy(v))) {
            json_decref(row);
            row = NULL;
        }
    }
    return row;
}

/* ================================================================ aggregation */

struct acc {
    size_t count, nnum;
    double sum, min, max;
};

struct group {
    json_t **vals;    /* per GROUP BY path: a copy of the value, NULL when undefined */
    char **names;     /* per GROUP BY path: the key as found in the first document */
    struct acc *accs; /* per SELECT item */
};

struct query_agg {
    const struct query *q;
    struct strmap *index; /* group key -> (void *)(index + 1) */
    struct group *groups;
    size_t n, cap;
};

static void group_cleanup(const struct query *q, struct group *g)
{
    for (size_t i = 0; g->vals && i < q->ngroup; i++) {
        json_decref(g->vals[i]);
        free(g->names[i]);
    }
    free(g->vals);
    free(g->names);
    free(g->accs);
}

void query_agg_free(struct query_agg *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        group_cleanup(a->q, &a->groups[i]);
    free(a->groups);
    strmap_free(a->index);
    free(a);
}

/* Appends a new group built from doc (its GROUP BY values). */
static int group_add(struct query_agg *a, const json_t *doc)
{
    const struct query *q = a->q;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct group *g = realloc(a->groups, cap * sizeof *g);
        if (!g)
            return ERR_NOMEM;
        a->groups = g;
        a->cap = cap;
    }
    struct group g = {
        .vals = calloc(q->ngroup + 1, sizeof *g.vals),
        .names = calloc(q->ngroup + 1, sizeof *g.names),
        .accs = calloc(q->nitems + 1, sizeof *g.accs),
    };
    int rc = g.vals && g.names && g.accs ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; rc == ERR_OK && i < q->ngroup; i++) {
        const char *found;
        const json_t *v = resolve(q->group[i], doc, &found);
        if (!v)
            continue;
        g.vals[i] = json_deep_copy(v);
        g.names[i] = strdup(found);
        if (!g.vals[i] || !g.names[i])
            rc = ERR_NOMEM;
    }
    if (rc != ERR_OK) {
        group_cleanup(q, &g);
        return rc;
    }
    a->groups[a->n++] = g;
    return ERR_OK;
}

struct query_agg *query_agg_new(const struct query *q)
{
    if (!q || !q->aggregate)
        return NULL;
    struct query_agg *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->q = q;
    a->index = strmap_new();
    /* without GROUP BY there is exactly one group, present even when nothing matches */
    if (!a->index || (!q->ngroup && group_add(a, NULL) != ERR_OK)) {
        query_agg_free(a);
        return NULL;
    }
    return a;
}

/* The group key of doc: one self-delimiting part per GROUP BY path ("u;" undefined, "n<number>;",
 * "j<compact sorted JSON>;"), so equal values (1 and 1.0 too) give equal keys. Caller frees. */
static char *group_key(const struct query *q, const json_t *doc)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    int rc = ERR_OK;
    for (size_t i = 0; rc == ERR_OK && i < q->ngroup; i++) {
        const json_t *v = resolve(q->group[i], doc, NULL);
        if (!v) {
            rc = buf_append_str(&b, "u;");
        } else if (json_is_number(v)) {
            rc = buf_printf(&b, "n%.17g;", json_number_value(v));
        } else {
            char *d = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            rc = d ? buf_printf(&b, "j%s;", d) : ERR_NOMEM;
            free(d);
        }
    }
    char *key = rc == ERR_OK ? buf_take_str(&b) : NULL;
    buf_cleanup(&b);
    return key;
}

static void acc_add(struct acc *c, const struct item *it, const json_t *doc)
{
    c->count++;
    if (!it->expr->path)
        return;
    const json_t *v = resolve(it->expr->path, doc, NULL);
    if (!json_is_number(v))
        return;
    double x = json_number_value(v);
    c->sum += x;
    if (!c->nnum || x < c->min)
        c->min = x;
    if (!c->nnum || x > c->max)
        c->max = x;
    c->nnum++;
}

int query_agg_add(struct query_agg *a, const json_t *doc)
{
    const struct query *q = a->q;
    size_t gi = 0;
    if (q->ngroup) {
        char *key = group_key(q, doc);
        if (!key)
            return ERR_NOMEM;
        uintptr_t slot = (uintptr_t)strmap_get(a->index, key);
        int rc = ERR_OK;
        if (!slot)
            rc = a->n >= QUERY_MAX_GROUPS ? ERR_TOO_BIG : group_add(a, doc);
        if (!slot && rc == ERR_OK) {
            rc = strmap_set(a->index, key, (void *)(uintptr_t)a->n);
            if (rc != ERR_OK)
                group_cleanup(q, &a->groups[--a->n]);
            slot = a->n;
        }
        free(key);
        if (rc != ERR_OK)
            return rc;
        gi = slot - 1;
    }
    struct group *g = &a->groups[gi];
    for (size_t i = 0; i < q->nitems; i++)
        if (q->items[i].expr->kind == N_AGG)
            acc_add(&g->accs[i], &q->items[i], doc);
    return ERR_OK;
}

/* A number as JSON: an integer when it is one within +-2^53, else a real. */
static json_t *num_json(double x)
{
    if (x == floor(x) && fabs(x) <= 9007199254740992.0)
        return json_integer((json_int_t)x);
    return json_real(x);
}

static json_t *agg_value(const struct item *it, const struct acc *c)
{
    if (it->expr->op == A_COUNT)
        return json_integer((json_int_t)c->count);
    if (!c->nnum)
        return NULL;
    switch ((enum agg_id)it->expr->op) {
    case A_SUM:
        return num_json(c->sum);
    case A_AVG:
        return num_json(c->sum / (double)c->nnum);
    case A_MIN:
        return num_json(c->min);
    default:
        return num_json(c->max);
    }
}

static json_t *group_row(const struct query *q, const struct group *g)
{
    json_t *row = json_object();
    for (size_t i = 0; row && i < q->nitems; i++) {
        const struct item *it = &q->items[i];
        json_t *v;
        const char *name = it->name;
        if (it->expr->kind == N_AGG) {
            v = agg_value(it, &g->accs[i]);
            if (!v && it->expr->op != A_COUNT)
                continue;
        } else {
            if (!g->vals[it->group])
                continue;
            v = json_deep_copy(g->vals[it->group]);
            if (!name)
                name = g->names[it->group];
        }
        if (!v || json_object_set_new(row, name, v)) {
            json_decref(row);
            row = NULL;
        }
    }
    return row;
}

json_t *query_agg_result(const struct query_agg *a)
{
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < a->n; i++) {
        json_t *row = group_row(a->q, &a->groups[i]);
        if (!row || json_array_append_new(rows, row)) {
            json_decref(rows);
            rows = NULL;
        }
    }
    return rows;
}
