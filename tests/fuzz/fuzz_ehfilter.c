/* fuzz_ehfilter.c -- libFuzzer harness for the Event Hubs selector-filter parser (amqp/ehfilter) and the
 * Event Hubs SAS check (amqp/ehauth) on the same bytes: must never crash, leak or read past the input; a
 * parsed filter is one of the documented shapes. Seed corpus: corpus/fuzz_ehfilter/ (what the SDKs send). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "auth.h"
#include "ehauth.h"
#include "ehfilter.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ehfilter f;
    char why[128];
    if (ehfilter_parse((const char *)data, size, &f, why, sizeof why) == ERR_OK) {
        if (f.latest && f.field != EHFILTER_OFFSET)
            abort();
        if (f.field != EHFILTER_OFFSET && f.field != EHFILTER_SEQUENCE && f.field != EHFILTER_ENQUEUED_TIME)
            abort();
    }
    static struct auth *auth;
    if (!auth) {
        const char *hosts[] = {"myhub.azure-devices.net"};
        auth = auth_new(hosts, 1, "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js=");
    }
    static const char *const hosts[] = {"localhost", "myhub.azure-devices.net"};
    static const char *const names[] = {"myhub"};
    struct ehauth e = {.auth = auth, .hosts = hosts, .n_hosts = 2, .entities = names, .n_entities = 1};
    int64_t expiry;
    char norm[EHAUTH_MAX_NORM];
    const char *aud = "sb://localhost:5671/myhub/$management";
    ehauth_verify(&e, aud, 37, (const char *)data, size, 1700000000, 0, &expiry, norm, why, sizeof why);
    ehauth_verify_events_token(&e, (const char *)data, size, 1700000000, 0, &expiry, norm, why, sizeof why);
    ehauth_is_audience(&e, (const char *)data, size);
    return 0;
}
