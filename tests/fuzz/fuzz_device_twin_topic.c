/* fuzz_device_twin_topic.c -- libFuzzer harness for device/twin_topic.c, the parsers of the twin topics a hub
 * publishes to the device: never a crash or a read past the input; a parsed response's rid lies inside the
 * topic and is non-empty; a reported topic built from a rid the parser returned is accepted. The input is
 * copied so an overread hits the end of a malloc'd block (ASan). Seed corpus: corpus/fuzz_device_twin_topic/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "twin_topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *topic = malloc(size ? size : 1);
    if (!topic)
        return 0;
    memcpy(topic, data, size);
    int64_t version = 0;
    if (twin_topic_parse_desired(topic, size, &version) == ERR_OK && version < -1)
        abort();
    struct twin_topic_response r;
    if (twin_topic_parse_response(topic, size, &r) == ERR_OK) {
        if (r.rid_len == 0 || r.rid < topic || r.rid + r.rid_len > topic + size || r.status < 0 || r.status > 999)
            abort();
        char rid[64];
        if (r.rid_len < sizeof rid) {
            memcpy(rid, r.rid, r.rid_len);
            rid[r.rid_len] = '\0';
            struct buf b;
            buf_init(&b, 4096);
            int rc = twin_topic_reported(&b, rid);
            if (rc != ERR_OK && rc != ERR_INVALID)
                abort();
            buf_cleanup(&b);
        }
    }
    free(topic);
    return 0;
}
