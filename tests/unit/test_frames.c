/* test_frames.c -- emulator/amqp/frames: frame headers, value lengths, performative fields, SASL frame
 * encoders, and the normaliser's padding (Begin gets a real handle-max; transfers keep their payload). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "frames.h"

/* Proton 0.37's Begin: 4 fields (remote-channel null, next-outgoing-id 0, incoming-window, outgoing-window). */
static const uint8_t begin4[] = {0,    0,    0,    26,   2,    0,    0,    0,    0x00, 0x53, 0x11, 0xc0, 0x0d,
                                 0x04, 0x40, 0x43, 0x70, 0x7f, 0xff, 0xff, 0xff, 0x70, 0,    0,    0x08, 0x00};

static void test_header(void **state)
{
    struct frames_header h;
    assert_int_equal(frames_header_decode(begin4, 7, &h), ERR_NEED_MORE);
    uint8_t bad[8] = {0, 0, 0, 7, 2, 0, 0, 0};
    assert_int_equal(frames_header_decode(bad, 8, &h), ERR_MALFORMED);
    uint8_t doff[8] = {0, 0, 0, 8, 3, 0, 0, 0};
    assert_int_equal(frames_header_decode(doff, 8, &h), ERR_MALFORMED);
}

static void test_normalise_begin(void **state)
{
    const uint8_t *f = begin4;
    size_t len = sizeof begin4;
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(frames_normalise(f, len, 0, &out), ERR_OK);
    struct frames_header h;
    assert_int_equal(frames_header_decode(out.data, out.len, &h), ERR_OK);
    assert_int_equal(h.size, out.len);
    struct frames_perf pf;
    assert_int_equal(frames_perf_decode(out.data + 8, out.len - 8, &pf), ERR_OK);
    assert_int_equal(pf.code, FRAMES_BEGIN);
    assert_int_equal(pf.count, 8);
    struct frames_view v;
    assert_int_equal(frames_perf_field(&pf, 4, &v), ERR_OK);
    static const uint8_t hmax[5] = {0x70, 0, 0, 0xff, 0xff};
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.p, hmax, 5);
    assert_int_equal(frames_perf_field(&pf, 7, &v), ERR_NOT_FOUND); /* null */
    assert_int_equal(frames_perf_field(&pf, 1, &v), ERR_OK);
    assert_int_equal(v.p[0], 0x43);
    /* already full: unchanged; over max_frame: unchanged */
    struct buf again;
    buf_init(&again, 1 << 16);
    assert_int_equal(frames_normalise(out.data, out.len, 0, &again), ERR_OK);
    assert_int_equal(again.len, out.len);
    assert_memory_equal(again.data, out.data, out.len);
    again.len = 0;
    assert_int_equal(frames_normalise(f, len, (uint32_t)len, &again), ERR_OK);
    assert_int_equal(again.len, len);
    buf_cleanup(&again);
    buf_cleanup(&out);
}

static void test_normalise_transfer_keeps_payload(void **state)
{
    /* transfer with 3 fields (handle 0, delivery-id 0, tag "a") + payload "xyz" */
    uint8_t f[] = {0, 0, 0, 0, 2, 0, 0, 0, 0x00, 0x53, 0x14, 0x45, 'x', 'y', 'z'};
    f[3] = sizeof f;
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(frames_normalise(f, sizeof f, 0, &out), ERR_OK);
    struct frames_perf pf;
    assert_int_equal(frames_perf_decode(out.data + 8, out.len - 8, &pf), ERR_OK);
    assert_int_equal(pf.count, 11);
    assert_int_equal(out.len - 8 - pf.encoded_len, 3);
    assert_memory_equal(out.data + out.len - 3, "xyz", 3);
    buf_cleanup(&out);
    /* heartbeats and SASL frames pass unchanged */
    uint8_t hb[8] = {0, 0, 0, 8, 2, 0, 0, 0};
    buf_init(&out, 1 << 16);
    assert_int_equal(frames_normalise(hb, 8, 0, &out), ERR_OK);
    assert_int_equal(out.len, 8);
    assert_int_equal(frames_normalise(hb, 7, 0, &out), ERR_MALFORMED);
    buf_cleanup(&out);
}

static void test_values_and_sasl(void **state)
{
    size_t n;
    static const uint8_t sym[] = {0xa3, 3, 'a', 'b', 'c'};
    assert_int_equal(frames_value_len(sym, sizeof sym, &n), ERR_OK);
    assert_int_equal(n, 5);
    assert_int_equal(frames_value_len(sym, 4, &n), ERR_MALFORMED);
    static const uint8_t nested[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x53, 1, 0x40, 0x40, 0x40, 0x40};
    assert_int_equal(frames_value_len(nested, sizeof nested, &n), ERR_MALFORMED); /* too deep */
    static const uint8_t unknown[] = {0x01};
    assert_int_equal(frames_value_len(unknown, 1, &n), ERR_MALFORMED);

    struct buf out;
    buf_init(&out, 1 << 16);
    const char *mechs[] = {"MSSBCBS", "PLAIN", "ANONYMOUS"};
    assert_int_equal(frames_sasl_mechanisms(&out, mechs, 3), ERR_OK);
    struct frames_header h;
    assert_int_equal(frames_header_decode(out.data, out.len, &h), ERR_OK);
    assert_int_equal(h.type, FRAMES_TYPE_SASL);
    struct frames_perf pf;
    assert_int_equal(frames_perf_decode(out.data + 8, out.len - 8, &pf), ERR_OK);
    assert_int_equal(pf.code, FRAMES_SASL_MECHANISMS);
    struct frames_view v;
    assert_int_equal(frames_perf_field(&pf, 0, &v), ERR_OK);
    assert_int_equal(v.p[0], 0xe0); /* an array, as uamqp-c requires */
    assert_int_equal(v.p[2], 3);
    assert_int_equal(v.p[3], 0xa3);
    buf_cleanup(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_normalise_begin),
        cmocka_unit_test(test_normalise_transfer_keeps_payload),
        cmocka_unit_test(test_values_and_sasl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
