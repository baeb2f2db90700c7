/* fuzz_faults.c -- libFuzzer harness for the untrusted inputs of emulator/hub/faults: a telemetry property bag
 * (faults_request_from_bag, then faults_d2c on a fake link) and a POST /emulator/faults body
 * (faults_control_add, then list, a REST check and clear). The first byte picks which. Checks: no crash, leak
 * or overread; a parsed request's text fields stay printable and NUL-terminated, its numbers in range; a body
 * the control API accepts yields a description; faults_control_clear removes everything that was added.
 * Seed corpus: corpus/fuzz_faults/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "device_link.h"
#include "err.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"

static void kick(struct device_link *l, const char *reason)
{
}

static int deliver(struct device_link *l, const char *m, const uint8_t *p, size_t n, char *rid)
{
    return ERR_CLOSED;
}

static int push(struct device_link *l, const uint8_t *p, size_t n, int64_t v)
{
    return ERR_OK;
}

static const struct device_link_ops ops = {.deliver_method = deliver, .push_desired = push, .kick = kick, .abort = kick};

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    static struct registry *reg;
    if (!loop) {
        char err[128];
        log_set_level(LOG_LEVEL_ERROR);
        loop = loop_new();
        reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
        registry_ensure_device(reg, "device1", "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM=",
                               "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak=");
    }
    if (size == 0)
        return 0;
    struct hub *hub = hub_new(loop, reg);
    struct faults *f = faults_new(loop, hub);
    struct device_link link = {.ops = &ops, .identity = "device1"};
    hub_link_online(hub, &link, "device1", NULL);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        struct faults_request r;
        bool asks = faults_request_from_bag(&r, text, len);
        check_text(r.type, sizeof r.type);
        check_text(r.reason, sizeof r.reason);
        if (r.delay_s < 0 || r.delay_s > FAULTS_MAX_DELAY_S || r.duration_s < 0 || r.duration_s > FAULTS_MAX_DURATION_S ||
            asks != (r.kind != FAULTS_KIND_NONE))
            abort();
        faults_d2c(f, &link, &r);
        char why[128];
        faults_connect(f, "device1", 0, why, sizeof why);
    } else {
        json_t *out = NULL;
        char err[256];
        int rc = faults_control_add(f, text, len, &out, err, sizeof err);
        if ((rc == ERR_OK) != (out != NULL))
            abort();
        json_decref(out);
        json_decref(faults_control_list(f));
        int status, retry;
        faults_rest(f, "GET", "/devices/device1", &status, &retry);
        int64_t delay;
        faults_method_reply(f, "device1", &delay);
    }
    faults_control_clear(f, 0);
    json_t *list = faults_control_list(f);
    if (json_array_size(json_object_get(list, "faults")) != 0)
        abort();
    json_decref(list);
    hub_link_offline(hub, &link);
    faults_free(f);
    hub_free(hub);
    return 0;
}
