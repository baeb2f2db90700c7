/* test_sasl.c -- emulator/amqp/sasl: the header sniff, the offered mechanisms, sasl-init decoding (MSSBCBS
 * bytes as uamqp sends them, PLAIN split), pipelined AMQP after the outcome, and violations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "frames.h"
#include "sasl.h"

static const uint8_t sasl_hdr[8] = {'A', 'M', 'Q', 'P', 3, 1, 0, 0};
static const uint8_t amqp_hdr[8] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0};

/* A sasl-init frame: mechanism mech, initial response resp (binary; NULL: null). */
static void put_init(struct buf *b, const char *mech, const void *resp, size_t rlen)
{
    uint8_t body[512];
    size_t n = 0, ml = strlen(mech);
    body[n++] = 0x00;
    body[n++] = 0x53;
    body[n++] = 0x41;
    body[n++] = 0xc0;
    size_t size_at = n++;
    body[n++] = 2;
    body[n++] = 0xa3;
    body[n++] = (uint8_t)ml;
    memcpy(body + n, mech, ml);
    n += ml;
    if (resp) {
        body[n++] = 0xa0;
        body[n++] = (uint8_t)rlen;
        memcpy(body + n, resp, rlen);
        n += rlen;
    } else {
        body[n++] = 0x40;
    }
    body[size_at] = (uint8_t)(n - size_at - 1);
    uint32_t size = (uint32_t)(8 + n);
    uint8_t h[8] = {0, 0, (uint8_t)(size >> 8), (uint8_t)size, 2, 1, 0, 0};
    buf_append(b, h, 8);
    buf_append(b, body, n);
}

static void test_mssbcbs_then_amqp(void **state)
{
    struct sasl s;
    struct buf in, out;
    struct sasl_init init;
    buf_init(&in, 1 << 16);
    buf_init(&out, 1 << 16);
    sasl_start(&s);
    buf_append(&in, sasl_hdr, 5);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_NEED_MORE);
    buf_append(&in, sasl_hdr + 5, 3);
    put_init(&in, "MSSBCBS", "", 0); /* uamqp sends empty init bytes */
    buf_append(&in, amqp_hdr, 8);    /* pipelined */
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_INIT);
    assert_true(sasl_mech_is(&init, "MSSBCBS"));
    assert_memory_equal(out.data, sasl_hdr, 8);
    struct frames_perf pf;
    assert_int_equal(frames_perf_decode(out.data + 16, out.len - 16, &pf), ERR_OK);
    assert_int_equal(pf.code, FRAMES_SASL_MECHANISMS);
    size_t before = out.len;
    assert_int_equal(sasl_finish(&s, &in, &out, true), ERR_OK);
    assert_int_equal(frames_perf_decode(out.data + before + 8, out.len - before - 8, &pf), ERR_OK);
    assert_int_equal(pf.code, FRAMES_SASL_OUTCOME);
    struct frames_view v;
    assert_int_equal(frames_perf_field(&pf, 0, &v), ERR_OK);
    assert_int_equal(v.p[1], 0); /* ok */
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_AMQP);
    assert_int_equal(in.len, 8);
    assert_memory_equal(in.data, amqp_hdr, 8);
    assert_true(s.used);
    buf_cleanup(&in);
    buf_cleanup(&out);
}

static void test_plain_split_and_failure(void **state)
{
    struct sasl s;
    struct buf in, out;
    struct sasl_init init;
    buf_init(&in, 1 << 16);
    buf_init(&out, 1 << 16);
    sasl_start(&s);
    buf_append(&in, sasl_hdr, 8);
    static const char resp[] = "\0service@sas.root.hub\0SharedAccessSignature sr=x";
    put_init(&in, "PLAIN", resp, sizeof resp - 1);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_INIT);
    assert_int_equal(init.authcid.len, strlen("service@sas.root.hub"));
    assert_memory_equal(init.authcid.p, "service@sas.root.hub", init.authcid.len);
    assert_int_equal(init.password.len, strlen("SharedAccessSignature sr=x"));
    assert_int_equal(sasl_finish(&s, &in, &out, false), ERR_OK);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_FAIL);
    buf_cleanup(&in);
    buf_cleanup(&out);
}

static void test_violations(void **state)
{
    struct sasl s;
    struct buf in, out;
    struct sasl_init init;
    buf_init(&in, 1 << 16);
    buf_init(&out, 1 << 16);
    /* bare AMQP: nothing consumed */
    sasl_start(&s);
    buf_append(&in, amqp_hdr, 8);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_AMQP);
    assert_int_equal(in.len, 8);
    assert_false(s.used);
    in.len = 0;
    /* not AMQP, early */
    sasl_start(&s);
    buf_append(&in, "GE", 2);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_FAIL);
    in.len = 0;
    /* an AMQP frame where sasl-init belongs */
    sasl_start(&s);
    buf_append(&in, sasl_hdr, 8);
    static const uint8_t open[] = {0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0x45};
    buf_append(&in, open, sizeof open);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_FAIL);
    in.len = 0;
    /* an oversized SASL frame is refused from its header */
    sasl_start(&s);
    buf_append(&in, sasl_hdr, 8);
    static const uint8_t big[] = {0, 1, 0, 0, 2, 1, 0, 0};
    buf_append(&in, big, sizeof big);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_FAIL);
    in.len = 0;
    /* a sasl-init without a mechanism */
    sasl_start(&s);
    buf_append(&in, sasl_hdr, 8);
    static const uint8_t nomech[] = {0, 0, 0, 12, 2, 1, 0, 0, 0x00, 0x53, 0x41, 0x45};
    buf_append(&in, nomech, sizeof nomech);
    assert_int_equal(sasl_step(&s, &in, &out, &init), SASL_FAIL);
    buf_cleanup(&in);
    buf_cleanup(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mssbcbs_then_amqp),
        cmocka_unit_test(test_plain_split_and_failure),
        cmocka_unit_test(test_violations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
