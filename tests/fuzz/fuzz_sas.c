/* fuzz_sas.c -- libFuzzer harness for sas_parse and sas_verify against a fixed expectation (two hosts, a
 * device path, a good key and a bad one): must never crash, leak or read past the input, and views must lie
 * inside the input. Seed corpus: corpus/fuzz_sas/ (tokens from tests/unit/test_sas.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "err.h"
#include "sas.h"

static int inside(const struct sas_view *v, const uint8_t *data, size_t size)
{
    if (!v->len)
        return 1;
    const uint8_t *p = (const uint8_t *)v->p;
    return p >= data && v->len <= size && p - data <= (ptrdiff_t)(size - v->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const hosts[] = {"myhub.azure-devices.net", "localhost"};
    const struct sas_expect expect = {
        .hosts = hosts,
        .n_hosts = 2,
        .path = "/devices/dev1/modules/mod1",
        .keys = {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "not base64!"},
        .now = 1700000000,
        .skew = 300,
    };
    struct sas_token tok;
    if (sas_parse((const char *)data, size, &tok) != ERR_OK)
        return 0;
    if (!inside(&tok.sr, data, size) || !inside(&tok.sig, data, size) || !inside(&tok.skn, data, size) ||
        !inside(&tok.se, data, size) || !tok.sr.len || !tok.sig.len)
        abort();
    enum sas_verdict v = sas_verify(&tok, &expect);
    if (v > SAS_BAD_SIGNATURE || !sas_verdict_str(v))
        abort();
    return 0;
}
