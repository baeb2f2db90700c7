/* browser.h -- the rule for requests that a web browser makes to routes no key guards (README "Browsers and
 * the /emulator routes"): the Host must name this emulator (no DNS rebinding: a page pointing its own name at
 * 127.0.0.1) and the request must be same-origin (no cross-site form POST). Pure: no I/O, no libmicrohttpd,
 * no globals; the callers read the headers (rest_emulator.c for /emulator/telemetry, /consumergroups,
 * /faults; dash.c for the loopback session). Tests: tests/unit/test_browser.c; fuzz: tests/fuzz/fuzz_browser.c. */
#ifndef IOTHUB_BROWSER_H
#define IOTHUB_BROWSER_H

#include <stdbool.h>
#include <stddef.h>

/* The request headers the rule reads (NULL: absent). */
struct browser_headers {
    const char *host;       /* Host */
    const char *origin;     /* Origin */
    const char *fetch_site; /* Sec-Fetch-Site */
    const char *user_agent; /* User-Agent */
    bool fetch_any;         /* a Sec-Fetch-* header other than Sec-Fetch-Mode (-Dest, -User, -Site...) */
};

struct MHD_Connection;

/* Fills *h from conn's request headers (the strings are MHD's, valid for the request). */
void browser_headers_read(struct MHD_Connection *conn, struct browser_headers *h);

/* True when a Host header names this machine's loopback: "localhost", "127.0.0.1", "[::1]", with or without
 * ":port" (1 to 5 digits). NULL is false. */
bool browser_host_is_loopback(const char *host);
/* True when a Host header is an IPv4 literal (dotted quad) or a bracketed IPv6 literal, with or without
 * ":port": a name nobody can rebind. NULL is false. */
bool browser_host_is_ip(const char *host);
/* True when a Host header is one of names[0..n) (case-insensitive), with or without ":port". */
bool browser_host_is_named(const char *host, const char *const *names, size_t n);

/* True when the request comes from a browser: it carries Origin, a Sec-Fetch-* header (Sec-Fetch-Mode alone
 * does not count: Node's fetch() sends it on every request), or a User-Agent starting "Mozilla/" (every
 * browser's; a same-origin GET over plain HTTP to a name that is not loopback, the DNS-rebinding case, carries
 * neither of the others). curl, the SDKs and scripts send none of these. */
bool browser_is_browser(const struct browser_headers *h);
/* NULL when the request is same-origin as far as its headers say (Sec-Fetch-Site absent, "same-origin" or
 * "none"; Origin absent or "scheme://" + exactly the Host); otherwise the reason, a static string. same-site
 * counts as cross-site: another port of localhost is another origin. */
const char *browser_cross_site(const struct browser_headers *h);

/* The whole rule for the routes without authorization. NULL when the request may go on: it is not a browser's,
 * or its Host is loopback, an IP literal or one of names, and it is same-origin. Otherwise the reason, written
 * into why (a sentence without a final period, quoting the Host cut to fit). */
const char *browser_refusal(const struct browser_headers *h, const char *const *names, size_t n, char *why,
                            size_t whylen);

#endif
