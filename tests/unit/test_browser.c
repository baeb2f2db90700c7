/* test_browser.c -- unit tests for http/browser: the Host checks (loopback, IP literal, a --hostname, a
 * malformed port), what makes a request a browser's (Origin, Sec-Fetch-*, a browser's User-Agent), the same-origin check (Sec-Fetch-Site, Origin against
 * Host) and the whole rule of the routes without authorization, with its reasons. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "browser.h"

static const char *const names[] = {"myhub.local", "iothub"};

static void loopback_hosts(void **state)
{
    (void)state;
    const char *yes[] = {"localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:443", "[::1]", "[::1]:8080"};
    const char *no[] = {NULL, "", "localhost.evil.example", "127.0.0.1.nip.io", "evil:8080", "localhost:",
                        "localhost:80x", "127.0.0.1:123456", "[::1]x", "localhost:8080:1", "[::1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(browser_host_is_loopback(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(browser_host_is_loopback(no[i]));
}

static void ip_hosts(void **state)
{
    (void)state;
    const char *yes[] = {"10.0.0.5", "192.168.1.20:8080", "127.0.0.1", "[::1]", "[fe80::1]:443", "[2001:db8::7]"};
    const char *no[] = {NULL, "", "localhost", "10.0.0", "10.0.0.256", "1.2.3.4.nip.io", "::1", "[::1",
                        "[evil.example]", "10.0.0.5:", "10.0.0.5:abc", "0x7f.1", "[::1]:99999x"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(browser_host_is_ip(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(browser_host_is_ip(no[i]));
}

static void named_hosts(void **state)
{
    (void)state;
    assert_true(browser_host_is_named("iothub:8080", names, 2));
    assert_true(browser_host_is_named("MyHub.Local", names, 2));
    assert_false(browser_host_is_named("iothub.evil.example", names, 2));
    assert_false(browser_host_is_named("evil-iothub", names, 2));
    assert_false(browser_host_is_named("iothub:", names, 2));
    assert_false(browser_host_is_named(NULL, names, 2));
    assert_false(browser_host_is_named("iothub", NULL, 0));
}

static void who_is_a_browser(void **state)
{
    (void)state;
    struct browser_headers curl = {.host = "evil.example"};
    assert_false(browser_is_browser(&curl));
    struct browser_headers with_origin = {.host = "localhost", .origin = "http://localhost"};
    assert_true(browser_is_browser(&with_origin));
    struct browser_headers with_dest = {.host = "localhost", .fetch_any = true};
    assert_true(browser_is_browser(&with_dest));
    /* Chromium's same-origin GET over plain HTTP to a rebound name: no Origin, no Sec-Fetch-*, its User-Agent */
    struct browser_headers rebound_get = {
        .host = "evil.example:8080",
        .user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"};
    assert_true(browser_is_browser(&rebound_get));
    const char *tools[] = {"curl/8.5.0", "Python-urllib/3.11", "node", "azure-iot-device/1.18", "Go-http-client/1.1",
                           "mozilla/5.0", ""};
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        struct browser_headers tool = {.host = "iothub:8080", .user_agent = tools[i]};
        assert_false(browser_is_browser(&tool));
    }
}

static void same_origin(void **state)
{
    (void)state;
    struct browser_headers ok[] = {
        {.host = "localhost:8080"},
        {.host = "localhost:8080", .fetch_site = "same-origin", .fetch_any = true},
        {.host = "localhost:8080", .fetch_site = "none", .fetch_any = true},
        {.host = "localhost:8080", .origin = "http://localhost:8080"},
        {.host = "LocalHost:8080", .origin = "http://localhost:8080"},
        {.host = "localhost", .origin = "https://localhost"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_null(browser_cross_site(&ok[i]));
    struct browser_headers bad[] = {
        {.host = "localhost:8080", .fetch_site = "cross-site", .fetch_any = true},
        {.host = "localhost:8080", .fetch_site = "same-site", .fetch_any = true}, /* another port */
        {.host = "localhost:8080", .fetch_site = "weird", .fetch_any = true},
        {.host = "localhost:8080", .origin = "http://evil.example"},
        {.host = "localhost:8080", .origin = "http://localhost:3000"},
        {.host = "localhost:8080", .origin = "http://localhost:8080.evil.example"},
        {.host = "localhost:8080", .origin = "null"},
        {.host = NULL, .origin = "http://localhost"},
        {.host = "localhost:8080", .origin = "http://localhost:8080", .fetch_site = "cross-site"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_non_null(browser_cross_site(&bad[i]));
}

static void the_rule(void **state)
{
    (void)state;
    char why[200];
    /* no browser headers: anything goes, whatever the Host (curl, SDKs, a compose network's service name) */
    struct browser_headers curl = {.host = "anything.example:8080"};
    assert_null(browser_refusal(&curl, names, 2, why, sizeof why));
    struct browser_headers page = {.host = "localhost:8080", .origin = "http://localhost:8080",
                                   .fetch_site = "same-origin", .fetch_any = true};
    assert_null(browser_refusal(&page, names, 2, why, sizeof why));
    struct browser_headers lan = {.host = "192.168.1.20:8080", .fetch_site = "same-origin", .fetch_any = true};
    assert_null(browser_refusal(&lan, names, 2, why, sizeof why));
    struct browser_headers named = {.host = "iothub:8080", .origin = "http://iothub:8080"};
    assert_null(browser_refusal(&named, names, 2, why, sizeof why));

    /* DNS rebinding: the attacker's own name, same-origin as far as the browser knows */
    struct browser_headers rebind = {.host = "evil.example:8080", .origin = "http://evil.example:8080",
                                     .fetch_site = "same-origin", .fetch_any = true};
    const char *r = browser_refusal(&rebind, names, 2, why, sizeof why);
    assert_ptr_equal(r, why);
    assert_non_null(strstr(why, "Host 'evil.example:8080'"));
    assert_non_null(strstr(why, "DNS rebinding"));
    struct browser_headers no_host = {.fetch_any = true};
    assert_non_null(browser_refusal(&no_host, names, 2, why, sizeof why));
    /* a cross-site form POST to the loopback emulator */
    struct browser_headers form = {.host = "127.0.0.1:8080", .origin = "https://evil.example",
                                   .fetch_site = "cross-site", .fetch_any = true};
    assert_non_null(browser_refusal(&form, names, 2, why, sizeof why));
    assert_non_null(strstr(why, "cross-site"));
    struct browser_headers old = {.host = "127.0.0.1:8080", .origin = "https://evil.example"};
    assert_non_null(browser_refusal(&old, names, 2, why, sizeof why));
    assert_non_null(strstr(why, "Origin"));
    /* a long Host is quoted cut, and the reason still fits */
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct browser_headers longhost = {.host = big, .fetch_any = true};
    assert_non_null(browser_refusal(&longhost, names, 2, why, sizeof why));
    assert_true(strlen(why) < sizeof why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loopback_hosts), cmocka_unit_test(ip_hosts),   cmocka_unit_test(named_hosts),
        cmocka_unit_test(who_is_a_browser), cmocka_unit_test(same_origin), cmocka_unit_test(the_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
