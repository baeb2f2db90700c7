/* mjson.c -- the one-pass scanner of a direct-method request body (see mjson.h): validation, the four
 * members, and the proof that the payload's bytes are already jansson's compact form. Every "false" sends the
 * body to restapi.c's jansson path, so this file must never accept what jansson refuses nor pass bytes that
 * differ from jansson's dump; tests/fuzz/fuzz_method_body.c holds it to that. */
#include "mjson.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MJSON_AVX2 1
#endif

size_t mjson_utf8_seq(const uint8_t *p, size_t len)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* Word-at-a-time tests (exact about presence, which is all that is asked): a byte below n, a byte equal to c. */
#define MJSON_ONES 0x0101010101010101ull
#define MJSON_HIGHS 0x8080808080808080ull
#define MJSON_HAS_LESS(x, n) (((x) - MJSON_ONES * (n)) & ~(x) & MJSON_HIGHS)
#define MJSON_HAS_BYTE(x, c) MJSON_HAS_LESS((x) ^ (MJSON_ONES * (c)), 1)

#ifdef MJSON_AVX2
/* 64 bytes a step where the CPU has AVX2 (chosen at run time; the build stays baseline x86-64): the two
 * scans of a 100 KiB call (its request, the device's answer) were two thirds of its instructions (issue 20).
 * Returns where the first 64-byte block with a stop byte begins; the narrower loops finish from there. */
__attribute__((target("avx2"))) static size_t plain_run_avx2(const uint8_t *p, size_t len)
{
    const __m256i quote = _mm256_set1_epi8('"'), backslash = _mm256_set1_epi8('\\'), space = _mm256_set1_epi8(0x20);
    size_t i = 0;
    for (; len - i >= 64; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 32));
        __m256i hit = _mm256_or_si256(
            _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, backslash)),
                            _mm256_cmpgt_epi8(space, a)),
            _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(b, quote), _mm256_cmpeq_epi8(b, backslash)),
                            _mm256_cmpgt_epi8(space, b)));
        if (!_mm256_testz_si256(hit, hit))
            break;
    }
    return i;
}

static bool has_avx2(void)
{
    static int known = -1;
    if (known < 0)
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known == 1;
}
#endif

size_t mjson_plain_run(const uint8_t *p, size_t len)
{
    size_t i = 0;
#ifdef MJSON_AVX2
    if (len >= 64 && has_avx2())
        i = plain_run_avx2(p, len);
#endif
#ifdef __SSE2__
    /* 16 at a time: a signed compare with 0x20 catches both the control bytes and every byte >= 0x80. */
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    for (; len - i >= 16; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                   _mm_cmplt_epi8(x, space));
        if (_mm_movemask_epi8(hit))
            break;
    }
#endif
    for (; len - i >= 8; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if ((x & MJSON_HIGHS) | MJSON_HAS_LESS(x, 0x20) | MJSON_HAS_BYTE(x, '"') | MJSON_HAS_BYTE(x, '\\'))
            break;
    }
    while (i < len && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

struct scan {
    const uint8_t *p;
    size_t len, i;
    bool spaced;  /* whitespace skipped since the value began */
    bool escaped; /* a string with an escape since the value began */
    size_t keys[MJSON_MAX_KEYS][2]; /* offset and length of the open objects' keys (payload only) */
};

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(struct scan *s)
{
    size_t i = s->i;
    while (i < s->len && is_ws(s->p[i]))
        i++;
    if (i != s->i)
        s->spaced = true;
    s->i = i;
}

/* A string at the quote p[i]; true with i past the closing quote. Escapes: only the ones jansson's dump writes
 * itself (\" \\ \b \f \n \r \t), so the bytes are the dump's and equal keys have equal bytes. */
static bool scan_string(struct scan *s)
{
    const uint8_t *p = s->p;
    size_t len = s->len, j = s->i + 1;
    for (;;) {
        j += mjson_plain_run(p + j, len - j);
        if (j == len)
            return false;
        uint8_t c = p[j];
        if (c == '"') {
            s->i = j + 1;
            return true;
        }
        if (c == '\\') {
            if (j + 1 == len)
                return false;
            c = p[j + 1];
            if (c != '"' && c != '\\' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't')
                return false;
            s->escaped = true;
            j += 2;
        } else if (c < 0x20) {
            return false;
        } else {
            size_t n = mjson_utf8_seq(p + j, len - j);
            if (!n)
                return false;
            j += n;
        }
    }
}

/* An integer of at most MJSON_MAX_DIGITS digits without a sign on zero; no fraction, no exponent. */
static bool scan_integer(struct scan *s)
{
    const uint8_t *p = s->p;
    size_t j = s->i, d0;
    if (j < s->len && p[j] == '-')
        j++;
    d0 = j;
    while (j < s->len && p[j] >= '0' && p[j] <= '9')
        j++;
    size_t digits = j - d0;
    if (digits == 0 || digits > MJSON_MAX_DIGITS || (p[d0] == '0' && (digits > 1 || d0 != s->i)))
        return false;
    if (j < s->len && (p[j] == '.' || p[j] == 'e' || p[j] == 'E'))
        return false;
    s->i = j;
    return true;
}

static bool scan_word(struct scan *s, const char *w, size_t n)
{
    if (s->len - s->i < n || memcmp(s->p + s->i, w, n) != 0)
        return false;
    s->i += n;
    return true;
}

static bool scan_scalar(struct scan *s)
{
    switch (s->p[s->i]) {
    case '"':
        return scan_string(s);
    case 't':
        return scan_word(s, "true", 4);
    case 'f':
        return scan_word(s, "false", 5);
    case 'n':
        return scan_word(s, "null", 4);
    default:
        return scan_integer(s);
    }
}

/* The key just scanned (at k, n bytes) against the other keys of its object (from first); then held. */
static bool key_is_new(struct scan *s, size_t first, size_t *nkeys, size_t k, size_t n)
{
    for (size_t x = first; x < *nkeys; x++)
        if (s->keys[x][1] == n && memcmp(s->p + s->keys[x][0], s->p + k, n) == 0)
            return false;
    if (*nkeys == MJSON_MAX_KEYS)
        return false;
    s->keys[*nkeys][0] = k;
    s->keys[*nkeys][1] = n;
    (*nkeys)++;
    return true;
}

enum want { WANT_VALUE, WANT_KEY, WANT_AFTER };

/* One value at p[i] (whitespace skipped before it); true with i just past it. dup: refuse duplicate keys in
 * its objects (jansson keeps the last value at the first one's place, which is not these bytes). */
static bool scan_value(struct scan *s, bool dup)
{
    uint64_t is_object = 0;
    size_t depth = 0, nkeys = 0, first[MJSON_MAX_DEPTH];
    enum want want = WANT_VALUE;
    for (;;) {
        skip_ws(s);
        if (s->i == s->len)
            return false;
        uint8_t c = s->p[s->i];
        if (want == WANT_KEY) {
            size_t k = s->i;
            if (c != '"' || !scan_string(s) || (dup && !key_is_new(s, first[depth - 1], &nkeys, k, s->i - k)))
                return false;
            skip_ws(s);
            if (s->i == s->len || s->p[s->i] != ':')
                return false;
            s->i++;
            want = WANT_VALUE;
            continue;
        }
        if (want == WANT_AFTER) {
            bool obj = is_object >> (depth - 1) & 1;
            s->i++;
            if (c == ',') {
                want = obj ? WANT_KEY : WANT_VALUE;
                continue;
            }
            if (c != (obj ? '}' : ']'))
                return false;
            depth--;
            nkeys = obj ? first[depth] : nkeys;
        } else if (c == '{' || c == '[') {
            if (depth == MJSON_MAX_DEPTH)
                return false;
            bool obj = c == '{';
            is_object = obj ? is_object | (uint64_t)1 << depth : is_object & ~((uint64_t)1 << depth);
            first[depth++] = nkeys;
            s->i++;
            skip_ws(s);
            if (s->i < s->len && s->p[s->i] == (obj ? '}' : ']')) {
                s->i++;
                depth--;
            } else {
                want = obj ? WANT_KEY : WANT_VALUE;
                continue;
            }
        } else if (!scan_scalar(s)) {
            return false;
        }
        if (depth == 0)
            return true;
        want = WANT_AFTER;
    }
}

static struct mjson_member *known(struct mjson_method *m, const uint8_t *k, size_t n)
{
    static const struct {
        const char *name;
        size_t off;
    } names[] = {
        {"methodName", offsetof(struct mjson_method, method_name)},
        {"payload", offsetof(struct mjson_method, payload)},
        {"responseTimeoutInSeconds", offsetof(struct mjson_method, response_timeout)},
        {"connectTimeoutInSeconds", offsetof(struct mjson_method, connect_timeout)},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && memcmp(names[i].name, k, n) == 0)
            return (struct mjson_member *)((char *)m + names[i].off);
    return NULL;
}

/* What the value at p[v0..v1) is, once scanned whole. */
static void classify(struct mjson_member *mm, const struct scan *s, size_t v0)
{
    const uint8_t *p = s->p + v0;
    size_t n = s->i - v0;
    mm->p = p;
    mm->len = n;
    mm->spaced = s->spaced;
    if (p[0] == 'n') {
        mm->kind = MJSON_NULL;
    } else if (p[0] == '"' && !s->escaped) {
        mm->kind = MJSON_STRING;
    } else if (p[0] == '-' || (p[0] >= '0' && p[0] <= '9')) {
        long long v = 0;
        for (size_t i = p[0] == '-'; i < n; i++)
            v = v * 10 + (p[i] - '0');
        mm->kind = MJSON_INTEGER;
        mm->integer = p[0] == '-' ? -v : v;
    } else {
        mm->kind = MJSON_OTHER;
    }
}

bool mjson_method_scan(const uint8_t *body, size_t len, struct mjson_method *out)
{
    struct scan s = {.p = body, .len = len};
    memset(out, 0, sizeof *out);
    if (!body)
        return false;
    skip_ws(&s);
    if (s.i == len || body[s.i] != '{')
        return false;
    s.i++;
    skip_ws(&s);
    if (s.i < len && body[s.i] == '}') {
        s.i++;
    } else {
        for (;;) {
            size_t k = s.i;
            s.escaped = false;
            if (s.i == len || body[s.i] != '"' || !scan_string(&s) || s.escaped)
                return false; /* an escaped key may spell a known one */
            struct mjson_member *mm = known(out, body + k + 1, s.i - k - 2);
            if (mm && mm->kind != MJSON_ABSENT)
                return false; /* jansson keeps the last: leave that to it */
            skip_ws(&s);
            if (s.i == len || body[s.i] != ':')
                return false;
            s.i++;
            skip_ws(&s);
            size_t v0 = s.i;
            s.spaced = s.escaped = false;
            if (!scan_value(&s, mm == &out->payload))
                return false;
            if (mm)
                classify(mm, &s, v0);
            skip_ws(&s);
            if (s.i == len)
                return false;
            if (body[s.i++] == '}')
                break;
            if (body[s.i - 1] != ',')
                return false;
            skip_ws(&s);
        }
    }
    skip_ws(&s);
    return s.i == len;
}

size_t mjson_compact(const uint8_t *p, size_t len, uint8_t *out)
{
    size_t n = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (in_string) {
            out[n++] = c;
            if (c == '\\' && i + 1 < len)
                out[n++] = p[++i];
            else if (c == '"')
                in_string = false;
        } else if (!is_ws(c)) {
            out[n++] = c;
            in_string = c == '"';
        }
    }
    return n;
}
