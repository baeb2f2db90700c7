/* bregistry.c -- writes a bench registry.json (see bregistry.h). The shape follows what emulator/store/registry.c
 * writes and loads: {"version":1,"devices":[{primaryKey, secondaryKey, status, statusReason, generationId,
 * version, statusUpdatedTime, deviceId, iotEdge, modules}]}, devices sorted by id ("bench-..." < "device1"). */
#include "bregistry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev.h"
#include "bsetup.h"
#include "err.h"

#define BREG_MAX_DEVICES 1000000L
#define BREG_DEVICE1_PRIMARY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define BREG_DEVICE1_SECONDARY "0Jw8tw/kbsEFwxv9kc6G3qAxjKJQVxn8JXZp+Ra1CMQ="

static void write_device(FILE *f, const char *id, const char *pk, const char *sk, unsigned long long gen, bool last)
{
    fprintf(f,
            "{\"primaryKey\":\"%s\",\"secondaryKey\":\"%s\",\"status\":\"enabled\",\"statusReason\":null,"
            "\"generationId\":\"%llu\",\"version\":0,\"statusUpdatedTime\":0,\"deviceId\":\"%s\","
            "\"iotEdge\":false,\"modules\":[]}%s",
            pk, sk, gen, id, last ? "" : ",");
}

/* The key goes between quotes unescaped: accept base64 characters only. */
static bool key_is_plain(const char *k)
{
    return *k && strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == strlen(k);
}

int breg_main(struct bopt *o)
{
    long n = bopt_long(o, "devices", 10000);
    const char *key = bopt_str(o, "device-key", BSETUP_DEVICE_KEY), *out = bopt_str(o, "out", NULL);
    if (o->bad || !out || n < 0 || n > BREG_MAX_DEVICES || !key_is_plain(key)) {
        fprintf(stderr, "iothub_bench gen-registry: need --out FILE, --devices 0..%ld, a base64 --device-key\n",
                BREG_MAX_DEVICES);
        return ERR_INVALID;
    }
    size_t tlen = strlen(out) + 5;
    char *tmp = malloc(tlen);
    FILE *f = tmp ? (snprintf(tmp, tlen, "%s.tmp", out), fopen(tmp, "w")) : NULL;
    if (!f) {
        fprintf(stderr, "iothub_bench gen-registry: cannot write %s\n", out);
        free(tmp);
        return ERR_IO;
    }
    fputs("{\"version\":1,\"devices\":[", f);
    char id[32];
    for (long i = 0; i < n; i++) {
        bdev_id((size_t)i, id, sizeof id);
        write_device(f, id, key, key, 638000000000000000ULL + (unsigned long long)i, false);
    }
    write_device(f, "device1", BREG_DEVICE1_PRIMARY, BREG_DEVICE1_SECONDARY, 637999999999999999ULL, true);
    fputs("]}", f);
    int rc = ferror(f) | fclose(f);
    if (rc || rename(tmp, out) != 0) {
        fprintf(stderr, "iothub_bench gen-registry: cannot write %s\n", out);
        remove(tmp);
        free(tmp);
        return ERR_IO;
    }
    free(tmp);
    return ERR_OK;
}
