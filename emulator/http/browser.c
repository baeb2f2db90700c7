/* browser.c -- the browser rule of browser.h: Host names this emulator, the request is same-origin. */
#include "browser.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The length of host's name part: all of it, or up to a ":port" of 1 to 5 digits. An IPv6 literal keeps its
 * brackets ("[::1]:8080" -> 5). Returns 0 when the port part is malformed. */
static size_t name_len(const char *host)
{
    size_t n = strlen(host);
    const char *colon;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close)
            return 0;
        colon = close + 1;
        if (!*colon)
            return n;
        if (*colon != ':')
            return 0;
    } else {
        colon = strchr(host, ':');
        if (!colon)
            return n;
    }
    size_t digits = strlen(colon + 1);
    if (digits == 0 || digits > 5 || strspn(colon + 1, "0123456789") != digits)
        return 0;
    return (size_t)(colon - host);
}

static bool name_is(const char *host, size_t len, const char *name)
{
    return len > 0 && strlen(name) == len && strncasecmp(host, name, len) == 0;
}

bool browser_host_is_loopback(const char *host)
{
    const char *names[] = {"localhost", "127.0.0.1", "[::1]"};
    return browser_host_is_named(host, names, sizeof names / sizeof names[0]);
}

bool browser_host_is_ip(const char *host)
{
    size_t len = host ? name_len(host) : 0;
    char text[64];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof text)
        return false;
    if (host[0] == '[') {
        if (len < 3 || host[len - 1] != ']')
            return false;
        snprintf(text, sizeof text, "%.*s", (int)(len - 2), host + 1);
        return inet_pton(AF_INET6, text, addr) == 1;
    }
    snprintf(text, sizeof text, "%.*s", (int)len, host);
    return inet_pton(AF_INET, text, addr) == 1;
}

bool browser_host_is_named(const char *host, const char *const *names, size_t n)
{
    size_t len = host ? name_len(host) : 0;
    for (size_t i = 0; len && i < n; i++)
        if (names[i] && name_is(host, len, names[i]))
            return true;
    return false;
}

bool browser_is_browser(const struct browser_headers *h)
{
    return h->origin || h->fetch_site || h->fetch_any ||
           (h->user_agent && strncmp(h->user_agent, "Mozilla/", 8) == 0);
}

const char *browser_cross_site(const struct browser_headers *h)
{
    const char *site = h->fetch_site;
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return "it is a cross-site request (Sec-Fetch-Site is not same-origin)";
    if (h->origin) {
        const char *sep = strstr(h->origin, "://");
        if (!sep || !h->host || strcasecmp(sep + 3, h->host) != 0)
            return "it is a cross-origin request (its Origin is not this Host)";
    }
    return NULL;
}

const char *browser_refusal(const struct browser_headers *h, const char *const *names, size_t n, char *why,
                            size_t whylen)
{
    if (!browser_is_browser(h))
        return NULL;
    const char *host = h->host;
    if (!browser_host_is_loopback(host) && !browser_host_is_ip(host) && !browser_host_is_named(host, names, n)) {
        snprintf(why, whylen, "its Host '%.64s' is not localhost, an IP address or a --hostname (DNS rebinding)",
                 host ? host : "");
        return why;
    }
    const char *cross = browser_cross_site(h);
    if (!cross)
        return NULL;
    snprintf(why, whylen, "%s", cross);
    return why;
}

static enum MHD_Result note_fetch(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    if (key && strncasecmp(key, "Sec-Fetch-", 10) == 0 && strcasecmp(key, "Sec-Fetch-Mode") != 0) {
        *(bool *)cls = true;
        return MHD_NO; /* one is enough */
    }
    return MHD_YES;
}

void browser_headers_read(struct MHD_Connection *conn, struct browser_headers *h)
{
    h->host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    h->origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    h->fetch_site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    h->user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
    h->fetch_any = false;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, note_fetch, &h->fetch_any);
}
