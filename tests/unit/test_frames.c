/* test_frames.c -- emulator/amqp/frames: frame headers, value lengths, performative fields, SASL frame
 * encoders, the normaliser's padding (Begin gets a real handle-max; transfers keep their payload), and the input
 * guard (transfers Proton 0.37 would assert on), and the data sections of a batched message. */
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

/* A transfer frame on channel 0: list8 of the given encoded fields, then a 1-byte payload. */
static size_t transfer(uint8_t *out, const uint8_t *fields, uint8_t flen, uint8_t count)
{
    size_t n = 8;
    out[n++] = 0x00;
    out[n++] = 0x53;
    out[n++] = 0x14;
    out[n++] = 0xc0;
    out[n++] = (uint8_t)(flen + 1);
    out[n++] = count;
    memcpy(out + n, fields, flen);
    n += flen;
    out[n++] = 'x';
    uint8_t head[8] = {0, 0, 0, (uint8_t)n, 2, 0, 0, 0};
    memcpy(out, head, 8);
    return n;
}

static void test_guard(void **state)
{
    struct frames_guard g = {0};
    const char *why = NULL;
    uint8_t f[64];
    /* handle 0, no delivery-id, tag, format 0, settled false, more true: the first frame needs an id */
    static const uint8_t no_id_more[] = {0x43, 0x40, 0xa0, 1, 't', 0x43, 0x42, 0x41};
    size_t n = transfer(f, no_id_more, sizeof no_id_more, 6);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_MALFORMED);
    assert_non_null(why);
    /* with delivery-id 0 (uint0) it starts a multi-frame delivery; the continuation may omit the id */
    static const uint8_t id_more[] = {0x43, 0x43, 0xa0, 1, 't', 0x43, 0x42, 0x41};
    n = transfer(f, id_more, sizeof id_more, 6);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_OK);
    assert_int_equal(g.n, 1);
    n = transfer(f, no_id_more, sizeof no_id_more, 6);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_OK);
    static const uint8_t last[] = {0x43, 0x40, 0x40, 0x40, 0x40, 0x42};
    n = transfer(f, last, sizeof last, 6);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_OK);
    assert_int_equal(g.n, 0);
    /* a delivery-id of the wrong type does not count (Proton reads only a uint) */
    static const uint8_t bool_id[] = {0x43, 0x41, 0xa0, 1, 't', 0x43, 0x42, 0x41};
    n = transfer(f, bool_id, sizeof bool_id, 6);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_MALFORMED);
    /* a transfer list whose count is larger than its items (found by fuzz_amqp) is refused */
    static const uint8_t short_list[] = {0x41, 0x41, 0x41};
    n = transfer(f, short_list, sizeof short_list, 65);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_MALFORMED);
    /* single-frame transfers, and other performatives, pass */
    static const uint8_t single[] = {0x43, 0x40, 0xa0, 1, 't'};
    n = transfer(f, single, sizeof single, 3);
    assert_int_equal(frames_guard_input(&g, f, n, &why), ERR_OK);
    assert_int_equal(frames_guard_input(&g, begin4, sizeof begin4, &why), ERR_OK);
}

static void test_data_sections(void **state)
{
    /* properties (empty list), two data sections, an amqp-value: the data sections' contents, in order */
    static const uint8_t msg[] = {0x00, 0x53, 0x73, 0x45, 0x00, 0x53, 0x75, 0xa0, 2, 'a', 'b',
                                  0x00, 0x53, 0x75, 0xb0, 0, 0, 0, 1, 'c', 0x00, 0x53, 0x77, 0x40};
    struct frames_view v[4];
    size_t n = 9;
    assert_int_equal(frames_data_sections(msg, sizeof msg, v, 4, &n), ERR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].len, 2);
    assert_memory_equal(v[0].p, "ab", 2);
    assert_int_equal(v[1].len, 1);
    assert_int_equal(v[1].p[0], 'c');
    assert_int_equal(frames_data_sections(msg, sizeof msg, v, 1, &n), ERR_MALFORMED); /* more than max */
    assert_int_equal(frames_data_sections(msg, 10, v, 4, &n), ERR_MALFORMED);        /* truncated */
    static const uint8_t bare[] = {0xa0, 1, 'x'};                                      /* not a section */
    assert_int_equal(frames_data_sections(bare, sizeof bare, v, 4, &n), ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_normalise_begin),
        cmocka_unit_test(test_normalise_transfer_keeps_payload),
        cmocka_unit_test(test_values_and_sasl),
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_data_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
