/* fuzz_device_c2d_topic.c -- libFuzzer harness for device/c2d_topic.c, the parser of the devicebound topic a
 * hub publishes to a device: never a crash, a leak or a read past the input; a parsed bag has at most
 * C2D_TOPIC_MAX_PROPS properties, each with a non-empty key. The input is copied so an overread hits the end
 * of a malloc'd block (ASan). Seed corpus: corpus/fuzz_device_c2d_topic/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "c2d_topic.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *topic = malloc(size ? size : 1);
    if (!topic)
        return 0;
    memcpy(topic, data, size);
    struct c2d_topic_props p;
    if (c2d_topic_parse(topic, size, "device1", &p) == ERR_OK) {
        if (p.n > C2D_TOPIC_MAX_PROPS)
            abort();
        for (size_t i = 0; i < p.n; i++)
            if (!p.keys[i] || !p.values[i] || !p.keys[i][0])
                abort();
        c2d_topic_props_cleanup(&p);
    }
    free(topic);
    return 0;
}
