/* test_url.c -- unit tests for common/url: strict upper-case percent-encoding as the SDKs do it, and lenient
 * decoding (either hex case, '+' kept) that refuses broken escapes and NUL bytes; property-bag pairs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "url.h"

struct url_vector {
    const char *raw;
    size_t raw_len;
    const char *encoded;
};

#define V(r, e) {r, sizeof(r) - 1, e}
static const struct url_vector url_encode_vectors[] = {
    V("", ""),
    V("abcXYZ019-_.~", "abcXYZ019-_.~"),
    V("/", "%2F"),
    V("=+&", "%3D%2B%26"),
    V(" ", "%20"),
    V("!'()*", "%21%27%28%29%2A"),
    V(":;@?#%", "%3A%3B%40%3F%23%25"),
    V("\xc3\xa9", "%C3%A9"),
    V("\x00", "%00"),
    V("\xff\x7f", "%FF%7F"),
    V("myhub.azure-devices.net/devices/dev1", "myhub.azure-devices.net%2Fdevices%2Fdev1"),
};

static const struct url_vector url_decode_vectors[] = {
    V("", ""),
    V("/", "%2F"),
    V("/", "%2f"),
    V("a+b", "a+b"),
    V("Ab", "%41%62"),
    V("\xc3\xa9", "%c3%A9"),
    V("host/devices/d1", "host%2Fdevices%2fd1"),
    V("already/raw", "already/raw"),
    V("%", "%25"),
};
#undef V

static void encode_vectors(void **state)
{
    for (size_t i = 0; i < sizeof(url_encode_vectors) / sizeof(url_encode_vectors[0]); i++) {
        const struct url_vector *v = &url_encode_vectors[i];
        char *enc = url_encode(v->raw, v->raw_len);
        assert_non_null(enc);
        assert_string_equal(enc, v->encoded);
        free(enc);
    }
}

static void decode_vectors(void **state)
{
    for (size_t i = 0; i < sizeof(url_decode_vectors) / sizeof(url_decode_vectors[0]); i++) {
        const struct url_vector *v = &url_decode_vectors[i];
        char *dec = NULL;
        size_t dec_len = 99;
        assert_int_equal(url_decode(v->encoded, strlen(v->encoded), &dec, &dec_len), ERR_OK);
        assert_int_equal(dec_len, v->raw_len);
        assert_memory_equal(dec, v->raw, v->raw_len);
        assert_int_equal(dec[dec_len], '\0');
        free(dec);
    }
}

static void decode_rejects(void **state)
{
    static const struct {
        const char *text;
        size_t len;
    } rejects[] = {
        {"100%", 4}, {"%4", 2}, {"%G0", 3}, {"%0g", 3}, {"%%", 2}, {"%00", 3}, {"a\0b", 3}, {"%-1", 3},
    };
    for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        char *dec = (char *)"x";
        size_t dec_len = 99;
        assert_int_equal(url_decode(rejects[i].text, rejects[i].len, &dec, &dec_len), ERR_MALFORMED);
        assert_null(dec);
        assert_int_equal(dec_len, 0);
    }
}

/* Every byte but NUL survives encode then decode; out_len may be NULL. */
static void round_trip_all_bytes(void **state)
{
    char raw[255];
    for (int i = 0; i < 255; i++)
        raw[i] = (char)(i + 1);
    char *enc = url_encode(raw, sizeof(raw));
    assert_non_null(enc);
    char *dec = NULL;
    assert_int_equal(url_decode(enc, strlen(enc), &dec, NULL), ERR_OK);
    assert_memory_equal(dec, raw, sizeof(raw));
    assert_int_equal(strlen(dec), sizeof(raw));
    free(dec);
    free(enc);
}

static void length_is_honoured(void **state)
{
    char *dec = NULL;
    size_t dec_len = 0;
    /* a '%' right at the end of the given length must not read past it */
    assert_int_equal(url_decode("ab%41", 3, &dec, &dec_len), ERR_MALFORMED);
    assert_int_equal(url_decode("ab%41", 2, &dec, &dec_len), ERR_OK);
    assert_string_equal(dec, "ab");
    free(dec);
    char *enc = url_encode("a/b", 1);
    assert_string_equal(enc, "a");
    free(enc);
    assert_int_equal(url_decode(NULL, 1, &dec, &dec_len), ERR_INVALID);
    assert_int_equal(url_decode("a", 1, NULL, &dec_len), ERR_INVALID);
}

static void bag_pairs(void **state)
{
    struct buf t;
    buf_init(&t, 1024);
    bool first = true;
    assert_int_equal(url_bag_add(&t, &first, "$.mid", ""), ERR_OK); /* empty values are left out */
    assert_true(first);
    assert_int_equal(url_bag_add(&t, &first, "$.mid", "m 1"), ERR_OK);
    assert_int_equal(url_bag_add(&t, &first, "k=&", "v/2"), ERR_OK);
    assert_false(first);
    assert_int_equal(url_bag_add_even_empty(&t, &first, "blank", ""), ERR_OK); /* an application property's "" */
    assert_int_equal(buf_append_byte(&t, 0), ERR_OK);
    assert_string_equal((const char *)t.data, "%24.mid=m%201&k%3D%26=v%2F2&blank=");
    buf_consume(&t, t.len);
    first = true;
    assert_int_equal(url_bag_add_even_empty(&t, &first, "only", ""), ERR_OK);
    assert_false(first);
    assert_int_equal(buf_append_byte(&t, 0), ERR_OK);
    assert_string_equal((const char *)t.data, "only=");
    buf_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_vectors),
        cmocka_unit_test(decode_vectors),
        cmocka_unit_test(decode_rejects),
        cmocka_unit_test(round_trip_all_bytes),
        cmocka_unit_test(length_is_honoured),
        cmocka_unit_test(bag_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
