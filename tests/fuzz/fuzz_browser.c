/* fuzz_browser.c -- libFuzzer harness for the browser rule (browser.h), which reads request headers: the input
 * is "Host\nOrigin\nSec-Fetch-Site\nUser-Agent\n[any byte: another Sec-Fetch-* header]", an empty line
 * meaning absent. Must never crash or read past a header, and must never let through what the rule refuses: a browser's
 * request with a Host that is not loopback, an IP literal or a name, or with Sec-Fetch-Site cross-site.
 * Seed corpus: corpus/fuzz_browser/. fuzz-max-len: 4096 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "browser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *field[4] = {NULL, NULL, NULL, NULL};
    char *p = text;
    size_t i = 0;
    for (; i < 4 && p; i++) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        field[i] = *p ? p : NULL;
        p = nl ? nl + 1 : NULL;
    }
    struct browser_headers h = {.host = field[0],
                                .origin = field[1],
                                .fetch_site = field[2],
                                .user_agent = field[3],
                                .fetch_any = field[2] || (p && *p)};
    static const char *const names[] = {"iothub", "myhub.local"};
    char why[160];
    const char *r = browser_refusal(&h, names, 2, why, sizeof why);
    if (r && strlen(r) >= sizeof why)
        abort();
    if (!r && browser_is_browser(&h)) {
        if (!browser_host_is_loopback(h.host) && !browser_host_is_ip(h.host) &&
            !browser_host_is_named(h.host, names, 2))
            abort();
        if (h.fetch_site && strcmp(h.fetch_site, "cross-site") == 0)
            abort();
    }
    free(text);
    return 0;
}
