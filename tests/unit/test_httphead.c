/* test_httphead.c -- unit tests for emulator/http/httphead: every rule of httphead.h's contract, each with an
 * input that is a good head but for the one rule it breaks (so the test fails if the rule goes); every prefix
 * of a good head is NEED_MORE; the HTTPHEAD_MAX boundary; and httphead_is_method_target. Every parse runs on a
 * guard-page copy (guard_page.h), so a read past the input crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_page.h"
#include "httphead.h"

/* What one parse said, copied out of the guard page (the views' offsets from the input's start kept). */
struct parsed {
    enum httphead_result r;
    char method[64];
    char target[256];
    char authz[256];
    bool has_authz;
    size_t authz_len;
    uint64_t content_length;
    bool expect_continue;
    bool close;
    size_t head_len;
};

static void copy_view(char *dst, size_t cap, const char *v, size_t len, const char *base, size_t head_len)
{
    assert_true(len < cap);
    assert_true(v >= base && (size_t)(v - base) + len <= head_len); /* the view lies inside the head */
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static struct parsed parse_n(const void *s, size_t n)
{
    struct guard_page g;
    const char *p = guard_page_copy(&g, s, n);
    assert_non_null(p);
    struct httphead h;
    struct parsed out = {0};
    out.r = httphead_parse((const uint8_t *)p, n, &h);
    if (out.r == HTTPHEAD_OK) {
        assert_true(h.head_len <= n);
        copy_view(out.method, sizeof out.method, h.method, h.method_len, p, h.head_len);
        copy_view(out.target, sizeof out.target, h.target, h.target_len, p, h.head_len);
        out.has_authz = h.authorization != NULL;
        out.authz_len = h.authorization_len;
        if (h.authorization)
            copy_view(out.authz, sizeof out.authz, h.authorization, h.authorization_len, p, h.head_len);
        else
            assert_int_equal(h.authorization_len, 0);
        out.content_length = h.content_length;
        out.expect_continue = h.expect_continue;
        out.close = h.close;
        out.head_len = h.head_len;
    }
    guard_page_free(&g);
    return out;
}

static struct parsed parse(const char *s)
{
    return parse_n(s, strlen(s));
}

/* s must be OTHER; printed on failure so the offending vector is named. */
static void expect_other_n(const char *s, size_t n)
{
    struct parsed got = parse_n(s, n);
    if (got.r != HTTPHEAD_OTHER)
        print_error("not OTHER (%d): \"%.*s\"\n", (int)got.r, (int)n, s);
    assert_int_equal(got.r, HTTPHEAD_OTHER);
}

static void expect_other(const char *s)
{
    expect_other_n(s, strlen(s));
}

static void expect_ok(const char *s)
{
    struct parsed got = parse(s);
    if (got.r != HTTPHEAD_OK)
        print_error("not OK (%d): \"%s\"\n", (int)got.r, s);
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.head_len, strlen(s));
}

#define RL "POST /twins/d1/methods?api-version=2021-04-12 HTTP/1.1\r\n"
#define HOST "Host: myhub.azure-devices.net\r\n"

/* ---- OK: the fields ---- */

static void ok_fields(void **state)
{
    (void)state;
    static const char head[] = RL HOST "Authorization: SharedAccessSignature sr=a&sig=b&se=1\r\n"
                                       "Content-Type: application/json\r\n"
                                       "Content-Length: 31\r\n"
                                       "\r\n";
    static const char body[] = "{\"methodName\":\"m\",\"payload\":1}\n";
    char in[sizeof head + sizeof body];
    snprintf(in, sizeof in, "%s%s", head, body);
    struct parsed got = parse(in);
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.method, "POST");
    assert_string_equal(got.target, "/twins/d1/methods?api-version=2021-04-12");
    assert_true(got.has_authz);
    assert_string_equal(got.authz, "SharedAccessSignature sr=a&sig=b&se=1");
    assert_int_equal(got.content_length, 31);
    assert_false(got.expect_continue);
    assert_false(got.close);
    assert_int_equal(got.head_len, sizeof head - 1); /* up to the empty line; the body is not the head's */
}

static void ok_pipelined_second_request_not_read(void **state)
{
    (void)state;
    /* A second head right behind the first (no body): the first is the one reported, with its own fields. */
    static const char in[] =
        "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        "POST /twins/d/methods HTTP/1.1\r\nHost: h\r\nAuthorization: x\r\nConnection: close\r\n\r\n";
    struct parsed got = parse(in);
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.method, "GET");
    assert_string_equal(got.target, "/a");
    assert_false(got.has_authz);
    assert_false(got.close);
    assert_int_equal(got.head_len, strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
}

static void ok_other_methods_and_targets(void **state)
{
    (void)state;
    struct parsed got = parse("M-SEARCH! /x/y%20z?q=1&r=[2]#f HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.method, "M-SEARCH!");
    assert_string_equal(got.target, "/x/y%20z?q=1&r=[2]#f");
    got = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.method, "GET");
    assert_string_equal(got.target, "/");
}

static void ok_unknown_headers_ignored(void **state)
{
    (void)state;
    /* Any token name, an empty value, tabs and every visible ASCII in a value. */
    struct parsed got = parse(RL "X-!#$%&'*+-.^_`|~09azAZ: v\r\n"
                                 "X-Empty:\r\n"
                                 "X-Blank: \t \r\n"
                                 "X-Tab:\ta\tb\t\r\n"
                                 "X-All: !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\r\n" HOST "\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_false(got.has_authz);
    assert_int_equal(got.content_length, 0);
}

static void ok_whitespace_trimmed(void **state)
{
    (void)state;
    struct parsed got = parse(RL HOST "Authorization: \t  Shared Access \t \r\n"
                                      "Content-Length:\t 42 \t\r\n"
                                      "Expect:  100-continue\t\r\n"
                                      "Connection:\tclose \r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.authz, "Shared Access"); /* inner whitespace kept */
    assert_int_equal(got.authz_len, strlen("Shared Access"));
    assert_int_equal(got.content_length, 42);
    assert_true(got.expect_continue);
    assert_true(got.close);

    got = parse(RL HOST "Authorization:abc\r\nContent-Length:7\r\n\r\n"); /* no whitespace at all */
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.authz, "abc");
    assert_int_equal(got.content_length, 7);
}

static void ok_names_case_insensitive(void **state)
{
    (void)state;
    struct parsed got = parse("POST /t HTTP/1.1\r\nhOST: h\r\naUTHORIZATION: a\r\ncontent-LENGTH: 3\r\n"
                              "EXPECT: 100-CONTINUE\r\nCONNECTION: Close\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_string_equal(got.authz, "a");
    assert_int_equal(got.content_length, 3);
    assert_true(got.expect_continue);
    assert_true(got.close);
    /* and the case-folded names are still the framing ones: a second, differently cased, is a duplicate */
    expect_other(RL "host: a\r\nHOST: b\r\n\r\n");
    expect_other(RL HOST "content-length: 1\r\nContent-LENGTH: 1\r\n\r\n");
    expect_other(RL HOST "authorization: a\r\nAUTHORIZATION: a\r\n\r\n");
    expect_other(RL HOST "TRANSFER-ENCODING: chunked\r\n\r\n");
    expect_other(RL HOST "uPgRaDe: websocket\r\n\r\n");
}

static void ok_connection(void **state)
{
    (void)state;
    assert_false(parse(RL HOST "\r\n").close); /* HTTP/1.1: keep-alive unless said */
    assert_true(parse(RL HOST "Connection: close\r\n\r\n").close);
    assert_true(parse(RL HOST "Connection: CLOSE\r\n\r\n").close);
    struct parsed got = parse(RL HOST "Connection: keep-alive\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_false(got.close);
    got = parse(RL HOST "Connection: Keep-Alive\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_false(got.close);
    got = parse(RL HOST "Connection: keep-alive, close\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.close);
    got = parse(RL HOST "Connection: close,keep-alive\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.close);
    got = parse(RL HOST "Connection: , ,\tclose ,\r\n\r\n"); /* empty list elements are allowed */
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.close);
    got = parse(RL HOST "Connection: keep-alive\r\nConnection: close\r\n\r\n"); /* two lines make one list */
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.close);
}

static void ok_expect_continue(void **state)
{
    (void)state;
    assert_false(parse(RL HOST "Content-Length: 1\r\n\r\n").expect_continue);
    struct parsed got = parse(RL HOST "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.expect_continue);
    assert_int_equal(got.content_length, 1);
}

static void ok_content_length(void **state)
{
    (void)state;
    struct parsed got = parse(RL HOST "\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.content_length, 0); /* absent */
    got = parse(RL HOST "Content-Length: 0\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.content_length, 0);
    got = parse(RL HOST "Content-Length: 9999999999\r\n\r\n"); /* 10 digits: past 32 bits */
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.content_length, 9999999999ull);
    got = parse(RL HOST "Content-Length: 4294967296\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.content_length, 4294967296ull);
    got = parse(RL HOST "Content-Length: 0000000012\r\n\r\n"); /* leading zeros count as digits */
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.content_length, 12);
}

static void ok_no_authorization_is_null(void **state)
{
    (void)state;
    struct parsed got = parse(RL HOST "Content-Length: 0\r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_false(got.has_authz);
    assert_int_equal(got.authz_len, 0);
    /* present but empty: a view of length 0, not NULL; and it still counts for the duplicate rule */
    got = parse(RL HOST "Authorization: \r\n\r\n");
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_true(got.has_authz);
    assert_int_equal(got.authz_len, 0);
    expect_other(RL HOST "Authorization:\r\nAuthorization: x\r\n\r\n");
}

static void ok_fields_cleared_on_entry(void **state)
{
    (void)state;
    /* A struct full of garbage: every field is set (or cleared) by the parse, whatever the result. */
    struct httphead h;
    memset(&h, 0xa5, sizeof h);
    static const char in[] = RL HOST "\r\n";
    assert_int_equal(httphead_parse((const uint8_t *)in, strlen(in), &h), HTTPHEAD_OK);
    assert_null(h.authorization);
    assert_int_equal(h.authorization_len, 0);
    assert_int_equal(h.content_length, 0);
    assert_false(h.expect_continue);
    assert_false(h.close);
}

/* ---- NEED_MORE ---- */

static void need_more_every_prefix(void **state)
{
    (void)state;
    static const char *const heads[] = {
        RL HOST "Authorization: SharedAccessSignature sr=a&sig=b\r\nContent-Length: 12\r\n"
                "Expect: 100-continue\r\nConnection: keep-alive, close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "P / HTTP/1.1\r\nHost:\r\nX-Tab:\t\t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        size_t n = strlen(heads[i]);
        for (size_t k = 0; k < n; k++) {
            struct parsed got = parse_n(heads[i], k);
            if (got.r != HTTPHEAD_NEED_MORE)
                print_error("head %zu, prefix %zu: %d\n", i, k, (int)got.r);
            assert_int_equal(got.r, HTTPHEAD_NEED_MORE);
        }
        expect_ok(heads[i]);
    }
    struct httphead h;
    assert_int_equal(httphead_parse(NULL, 0, &h), HTTPHEAD_NEED_MORE);
}

/* A whole request line is judged before the headers end: HTTP/1.0 or a bad line goes to MHD at once. */
static void other_at_a_bad_request_line(void **state)
{
    (void)state;
    assert_int_equal(parse_n("POST /twins/d/methods HTTP/1.0\r\nHo", strlen("POST /twins/d/methods HTTP/1.0\r\nHo")).r, HTTPHEAD_OTHER);
    assert_int_equal(parse_n("POST twins HTTP/1.1\r\n", strlen("POST twins HTTP/1.1\r\n")).r, HTTPHEAD_OTHER);
    assert_int_equal(parse_n("POST /twins/d/methods HTTP/1.1\r\nHo", strlen("POST /twins/d/methods HTTP/1.1\r\nHo")).r, HTTPHEAD_NEED_MORE);
    assert_int_equal(parse_n("POST /twins/d/methods HTTP/1.0", strlen("POST /twins/d/methods HTTP/1.0")).r, HTTPHEAD_NEED_MORE); /* no CRLF yet */
}

/* ---- OTHER: each vector is a good head but for one rule ---- */

static void other_version(void **state)
{
    (void)state;
    expect_other("POST /twins/d1/methods HTTP/1.0\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods HTTP/1.2\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods HTTP/2.0\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods http/1.1\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods HTTP/1.1 \r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods HTTP/1.10\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods HTTP/1.\r\n" HOST "\r\n");
    expect_other("POST /twins/d1/methods\r\n" HOST "\r\n"); /* HTTP/0.9 shape */
}

static void other_request_line(void **state)
{
    (void)state;
    expect_other(" /twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");         /* empty method */
    expect_other("POST  /twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");    /* two spaces */
    expect_other("POST\t/twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");    /* HTAB separator */
    expect_other("POST /twins/d1/methods  HTTP/1.1\r\n" HOST "\r\n");    /* two spaces */
    expect_other("POST /twins/d1/methods\tHTTP/1.1\r\n" HOST "\r\n");    /* HTAB separator */
    expect_other("PO(ST /twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");    /* not a tchar */
    expect_other("PO\"ST /twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");   /* not a tchar */
    expect_other("POST / twins HTTP/1.1\r\n" HOST "\r\n");               /* a space in the target */
    expect_other("POST /tw\x7fins HTTP/1.1\r\n" HOST "\r\n");            /* DEL in the target */
    expect_other("POST /tw\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n");           /* obs-text in the target */
    expect_other("POST HTTP/1.1\r\n" HOST "\r\n");                       /* no target */
    expect_other("\r\nPOST /twins/d1/methods HTTP/1.1\r\n" HOST "\r\n"); /* an empty line before it */
}

static void other_target_not_origin_form(void **state)
{
    (void)state;
    expect_other("OPTIONS * HTTP/1.1\r\n" HOST "\r\n");
    expect_other("POST http://h/twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");
    expect_other("POST twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");
    expect_other("CONNECT h:443 HTTP/1.1\r\n" HOST "\r\n");
    expect_other("POST ?/twins HTTP/1.1\r\n" HOST "\r\n");
}

static void other_host(void **state)
{
    (void)state;
    expect_other(RL "Content-Length: 0\r\n\r\n");                  /* missing */
    expect_other(RL "\r\n");                                       /* no header at all */
    expect_other(RL HOST "Host: myhub.azure-devices.net\r\n\r\n"); /* duplicate, even the same value */
    expect_other(RL "X-Host: h\r\nHosts: h\r\n\r\n");              /* names are matched whole */
}

static void other_content_length(void **state)
{
    (void)state;
    expect_other(RL HOST "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"); /* duplicate, same value */
    expect_other(RL HOST "Content-Length: 00000000001\r\n\r\n");            /* 11 digits, value 1 */
    expect_other(RL HOST "Content-Length: 12345678901\r\n\r\n");            /* 11 digits */
    expect_other(RL HOST "Content-Length: 18446744073709551617\r\n\r\n");   /* would wrap uint64 */
    expect_other(RL HOST "Content-Length: 5a\r\n\r\n");
    expect_other(RL HOST "Content-Length: a5\r\n\r\n");
    expect_other(RL HOST "Content-Length: -1\r\n\r\n");
    expect_other(RL HOST "Content-Length: +5\r\n\r\n");
    expect_other(RL HOST "Content-Length: 0x5\r\n\r\n");
    expect_other(RL HOST "Content-Length: 5 5\r\n\r\n");
    expect_other(RL HOST "Content-Length: 5,5\r\n\r\n");
    expect_other(RL HOST "Content-Length: 5.0\r\n\r\n");
    expect_other(RL HOST "Content-Length:\r\n\r\n");
    expect_other(RL HOST "Content-Length:  \t\r\n\r\n");
}

static void other_authorization(void **state)
{
    (void)state;
    expect_other(RL HOST "Authorization: a\r\nAuthorization: a\r\n\r\n");
    expect_other(RL "Authorization: a\r\n" HOST "Authorization: b\r\n\r\n");
}

static void other_framing_and_protocol(void **state)
{
    (void)state;
    expect_other(RL HOST "Transfer-Encoding: chunked\r\n\r\n");
    expect_other(RL HOST "Transfer-Encoding: identity\r\n\r\n");
    expect_other(RL HOST "Transfer-Encoding:\r\n\r\n");
    expect_other(RL HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    expect_other(RL HOST "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    expect_other(RL HOST "Upgrade: h2c\r\n\r\n"); /* Upgrade alone, with no Connection token */
}

static void other_expect(void **state)
{
    (void)state;
    expect_other(RL HOST "Expect: 100-continue2\r\n\r\n");
    expect_other(RL HOST "Expect: 100-continu\r\n\r\n");
    expect_other(RL HOST "Expect: 200-ok\r\n\r\n");
    expect_other(RL HOST "Expect: 100-continue, foo\r\n\r\n");
    expect_other(RL HOST "Expect:\r\n\r\n");
    expect_other(RL HOST "Expect: 100-continue\r\nExpect: x\r\n\r\n");
}

static void other_connection(void **state)
{
    (void)state;
    expect_other(RL HOST "Connection: upgrade\r\n\r\n");
    expect_other(RL HOST "Connection: Upgrade\r\n\r\n");
    expect_other(RL HOST "Connection: keep-alive, Upgrade\r\n\r\n");
    expect_other(RL HOST "Connection: close, TE\r\n\r\n");
    expect_other(RL HOST "Connection: closed\r\n\r\n");
    expect_other(RL HOST "Connection: keep-alive2\r\n\r\n");
    expect_other(RL HOST "Connection: \"close\"\r\n\r\n");
    expect_other(RL HOST "Connection: close\r\nConnection: x-foo\r\n\r\n");
    /* Not a list: MHD sees one element "keep-alive close" (no close token) and keeps the connection open,
     * so the front must not take it and close. */
    expect_other(RL HOST "Connection: keep-alive close\r\n\r\n");
    expect_other(RL HOST "Connection: close keep-alive\r\n\r\n");
    expect_other(RL HOST "Connection: close\tclose\r\n\r\n");
}

static void other_bare_lf(void **state)
{
    (void)state;
    /* in the request line, in a header line, as the end (the last two also without a CRLF CRLF anywhere) */
    expect_other("POST /twins/d1/methods HTTP/1.1\n" HOST "\r\n");
    expect_other(RL "Host: h\nX: y\r\n\r\n");
    expect_other(RL HOST "\n");
    expect_other(RL HOST "\n\r\n");
    expect_other(RL HOST "X: y\n\n");
    expect_other("\n");
    /* and on an incomplete head: no verdict needs to wait for the rest */
    expect_other("POST /twins/d1/methods HTTP/1.1\n");
    expect_other(RL "Host: h\n");
    expect_other(RL "\nHost: h\r\n");
}

static void other_lone_cr(void **state)
{
    (void)state;
    /* a parser that took any CR as a line's end and skipped the byte after it would pass these two */
    expect_other("POST /twins/d1/methods HTTP/1.1\rX" HOST "\r\n");
    expect_other(RL "Host: h\rXX-A: y\r\n\r\n");
    expect_other("POST /twins/d1/methods HTTP/1.1\r" HOST "\r\n");
    expect_other("POST /twins/d1\r/methods HTTP/1.1\r\n" HOST "\r\n");
    expect_other("POST\r/twins/d1/methods HTTP/1.1\r\n" HOST "\r\n");
    expect_other(RL "Host: h\rX: y\r\n\r\n");
    expect_other(RL "Host: h\r\r\n\r\n");
    expect_other(RL HOST "X\r: y\r\n\r\n");
    expect_other(RL HOST "\r\r\n\r\n");
    expect_other(RL "\r" HOST "\r\n");
}

static void other_field_line_shape(void **state)
{
    (void)state;
    expect_other(RL HOST "X-A: a\r\n b\r\n\r\n");  /* obs-fold, SP */
    expect_other(RL HOST "X-A: a\r\n\tb\r\n\r\n"); /* obs-fold, HTAB */
    expect_other(RL " " HOST "\r\n");              /* whitespace before the first field line */
    expect_other(RL "Host : h\r\n\r\n");           /* space before the colon */
    expect_other(RL "Host\t: h\r\n\r\n");          /* tab before the colon */
    expect_other(RL HOST "Content-Length : 5\r\n\r\n");
    expect_other(RL HOST "X-A\r\n\r\n");     /* no colon */
    expect_other(RL HOST ": a\r\n\r\n");     /* empty name */
    expect_other(RL HOST "X(A): a\r\n\r\n"); /* not a tchar */
    expect_other(RL HOST "X\"A: a\r\n\r\n");
    expect_other(RL HOST "X\xc3\xa9: a\r\n\r\n"); /* obs-text in a name */
}

static void other_value_bytes(void **state)
{
    (void)state;
    expect_other(RL HOST "X-A: caf\xc3\xa9\r\n\r\n"); /* obs-text */
    expect_other(RL HOST "X-A: \x80\r\n\r\n");
    expect_other(RL HOST "X-A: \xff\r\n\r\n");
    expect_other(RL HOST "Authorization: Shared\x01 Access\r\n\r\n"); /* control bytes */
    expect_other(RL HOST "X-A: a\x1f\r\n\r\n");
    expect_other(RL HOST "X-A: \x0b\r\n\r\n");
    expect_other(RL HOST "X-A: \x0c\r\n\r\n");
    expect_other(RL HOST "X-A: a\x7f\r\n\r\n"); /* DEL */
    expect_other("POST /twins/d1/methods HTTP/1.1\r\nHost: \x1b[0m\r\n\r\n");
}

static void other_nul_bytes(void **state)
{
    (void)state;
    static const char in[] = RL HOST "Authorization: a\r\nX-A: b\r\n\r\n";
    size_t n = sizeof in - 1;
    assert_int_equal(parse_n(in, n).r, HTTPHEAD_OK);
    /* a NUL in place of each byte that is not part of a CRLF: method, target, version, name, value */
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' || in[i] == '\n')
            continue;
        char v[sizeof in];
        memcpy(v, in, sizeof in);
        v[i] = '\0';
        expect_other_n(v, n);
    }
    /* and a field line that is one NUL, and one that starts with a NUL */
    static const char nul_line[] = RL HOST "\0\r\n\r\n";
    expect_other_n(nul_line, sizeof nul_line - 1);
    static const char line_start[] = RL "\0" HOST "\r\n";
    expect_other_n(line_start, sizeof line_start - 1);
}

/* ---- the HTTPHEAD_MAX boundary ---- */

/* Writes into buf a good head of exactly n bytes (n >= 64): RL, HOST, a padding field, the end. */
static void make_head(char *buf, size_t n)
{
    static const char pre[] = RL HOST "X-Pad: ";
    static const char post[] = "\r\n\r\n";
    assert_true(n >= sizeof pre + sizeof post);
    size_t pad = n - (sizeof pre - 1) - (sizeof post - 1);
    memcpy(buf, pre, sizeof pre - 1);
    memset(buf + sizeof pre - 1, 'p', pad);
    memcpy(buf + sizeof pre - 1 + pad, post, sizeof post - 1);
}

static void max_boundary(void **state)
{
    (void)state;
    size_t cap = 2 * HTTPHEAD_MAX + 16;
    char *buf = malloc(cap);
    assert_non_null(buf);

    make_head(buf, HTTPHEAD_MAX); /* exactly the limit: OK */
    struct parsed got = parse_n(buf, HTTPHEAD_MAX);
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.head_len, HTTPHEAD_MAX);
    assert_int_equal(parse_n(buf, HTTPHEAD_MAX - 1).r, HTTPHEAD_NEED_MORE);

    make_head(buf, HTTPHEAD_MAX + 1); /* one over, with its end */
    assert_int_equal(parse_n(buf, HTTPHEAD_MAX + 1).r, HTTPHEAD_OTHER);
    /* one over, without its end: the verdict comes at HTTPHEAD_MAX bytes, not later */
    assert_int_equal(parse_n(buf, HTTPHEAD_MAX - 1).r, HTTPHEAD_NEED_MORE);
    assert_int_equal(parse_n(buf, HTTPHEAD_MAX).r, HTTPHEAD_OTHER);

    make_head(buf, 2 * HTTPHEAD_MAX); /* far over, with and without its end */
    assert_int_equal(parse_n(buf, 2 * HTTPHEAD_MAX).r, HTTPHEAD_OTHER);
    assert_int_equal(parse_n(buf, 2 * HTTPHEAD_MAX - 4).r, HTTPHEAD_OTHER);
    assert_int_equal(parse_n(buf, HTTPHEAD_MAX + 100).r, HTTPHEAD_OTHER);

    /* a head at the limit followed by a body: the body's length does not count */
    make_head(buf, HTTPHEAD_MAX);
    memset(buf + HTTPHEAD_MAX, 'b', 100);
    got = parse_n(buf, HTTPHEAD_MAX + 100);
    assert_int_equal(got.r, HTTPHEAD_OK);
    assert_int_equal(got.head_len, HTTPHEAD_MAX);
    free(buf);
}

/* ---- httphead_is_method_target ---- */

static bool is_target_n(const char *s, size_t n)
{
    struct guard_page g;
    const char *p = guard_page_copy(&g, s, n);
    assert_non_null(p);
    bool r = httphead_is_method_target(p, n);
    guard_page_free(&g);
    return r;
}

static bool is_target(const char *s)
{
    return is_target_n(s, strlen(s));
}

static void method_target(void **state)
{
    (void)state;
    assert_true(is_target("/twins/d/methods"));
    assert_true(is_target("/twins/d1/methods?api-version=2021-04-12"));
    assert_true(is_target("/twins/d/methods?"));
    assert_true(is_target("/twins/d/modules/m/methods?api-version=2021-04-12"));
    assert_true(is_target("/twins/d/methods?x=/methodsX&y=/twins/")); /* the query is not the path */
    assert_true(is_target("/twins/%2Fx/methods"));

    assert_false(is_target("/twins//methods")); /* an empty device id */
    assert_false(is_target("/twins/methods"));
    assert_false(is_target("/twins/methods?x=/methods"));
    assert_false(is_target("/twins/d/methodsX"));
    assert_false(is_target("/twins/d/methods/"));
    assert_false(is_target("/twins/d/methods2?api-version=1"));
    assert_false(is_target("/twins/d/Methods"));
    assert_false(is_target("/TWINS/d/methods"));
    assert_false(is_target("/twins/d"));
    assert_false(is_target("/twins/d?/methods"));   /* "/methods" only in the query */
    assert_false(is_target("/x?/twins/d/methods")); /* "/twins/" only in the query */
    assert_false(is_target("/devices/d/methods"));
    assert_false(is_target("/twinsX/d/methods"));
    assert_false(is_target("twins/d/methods"));
    assert_false(is_target("/"));
    assert_false(is_target(""));
    assert_false(is_target("?"));

    /* len is the bound, not a NUL */
    assert_true(is_target_n("/twins/d/methodsXYZ", 16));
    assert_false(is_target_n("/twins/d/methods", 15));
    assert_false(is_target_n("/twins/d/methods?a", 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_fields),
        cmocka_unit_test(ok_pipelined_second_request_not_read),
        cmocka_unit_test(ok_other_methods_and_targets),
        cmocka_unit_test(ok_unknown_headers_ignored),
        cmocka_unit_test(ok_whitespace_trimmed),
        cmocka_unit_test(ok_names_case_insensitive),
        cmocka_unit_test(ok_connection),
        cmocka_unit_test(ok_expect_continue),
        cmocka_unit_test(ok_content_length),
        cmocka_unit_test(ok_no_authorization_is_null),
        cmocka_unit_test(ok_fields_cleared_on_entry),
        cmocka_unit_test(need_more_every_prefix),
        cmocka_unit_test(other_at_a_bad_request_line),
        cmocka_unit_test(other_version),
        cmocka_unit_test(other_request_line),
        cmocka_unit_test(other_target_not_origin_form),
        cmocka_unit_test(other_host),
        cmocka_unit_test(other_content_length),
        cmocka_unit_test(other_authorization),
        cmocka_unit_test(other_framing_and_protocol),
        cmocka_unit_test(other_expect),
        cmocka_unit_test(other_connection),
        cmocka_unit_test(other_bare_lf),
        cmocka_unit_test(other_lone_cr),
        cmocka_unit_test(other_field_line_shape),
        cmocka_unit_test(other_value_bytes),
        cmocka_unit_test(other_nul_bytes),
        cmocka_unit_test(max_boundary),
        cmocka_unit_test(method_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
