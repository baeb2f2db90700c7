/* test_base64.c -- unit tests for common/base64: RFC 4648 §10 vectors, binary and multi-chunk round trips,
 * and every strictness rule of the decoder (alphabet, length % 4, '=' only as final padding). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "err.h"

struct b64_vector {
    const char *raw;
    size_t raw_len;
    const char *text;
};

#define V(r, t) {r, sizeof(r) - 1, t}
static const struct b64_vector b64_vectors[] = {
    V("", ""),
    V("f", "Zg=="),
    V("fo", "Zm8="),
    V("foo", "Zm9v"),
    V("foob", "Zm9vYg=="),
    V("fooba", "Zm9vYmE="),
    V("foobar", "Zm9vYmFy"),
    V("\x00", "AA=="),
    V("\x00\x00\x00", "AAAA"),
    V("\xfb\xff\xbf", "+/+/"),
    V("\xff\xfe\xfd\xfc", "//79/A=="),
};
#undef V

static void encode_vectors(void **state)
{
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        const struct b64_vector *v = &b64_vectors[i];
        char *text = base64_encode((const uint8_t *)v->raw, v->raw_len);
        assert_non_null(text);
        assert_string_equal(text, v->text);
        free(text);
    }
}

static void decode_vectors(void **state)
{
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        const struct b64_vector *v = &b64_vectors[i];
        uint8_t *raw = NULL;
        size_t raw_len = 99;
        assert_int_equal(base64_decode(v->text, strlen(v->text), &raw, &raw_len), ERR_OK);
        assert_non_null(raw);
        assert_int_equal(raw_len, v->raw_len);
        if (raw_len)
            assert_memory_equal(raw, v->raw, raw_len);
        free(raw);
    }
}

/* Each of these must be refused, and *out left NULL. */
static const char *const b64_rejects[] = {
    "Zg",         /* length not a multiple of 4 */
    "Zg=",        /* ditto */
    "Zm9vY",      /* ditto */
    "Z===",       /* three '=' */
    "====",       /* padding only */
    "=Zm9",       /* '=' first */
    "Zm=v",       /* '=' inside the last quantum */
    "Zg=A",       /* '=' before a data character */
    "Zg==Zm9v",   /* padding in the middle */
    "Zm9v\n",     /* whitespace EVP_DecodeBlock would skip */
    " Zm9v",      /* ditto, leading */
    "Zm9v Zm9",   /* ditto, inside */
    "Zm9-",       /* base64url alphabet */
    "Zm9_",       /* ditto */
    "Zm9.",       /* outside every alphabet */
    "Zm\x80v",    /* high byte */
};

static void decode_rejects(void **state)
{
    for (size_t i = 0; i < sizeof(b64_rejects) / sizeof(b64_rejects[0]); i++) {
        uint8_t *raw = (uint8_t *)"x";
        size_t raw_len = 99;
        assert_int_equal(base64_decode(b64_rejects[i], strlen(b64_rejects[i]), &raw, &raw_len), ERR_MALFORMED);
        assert_null(raw);
        assert_int_equal(raw_len, 0);
    }
}

static void decode_rejects_embedded_nul(void **state)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(base64_decode("Zm\0v", 4, &raw, &raw_len), ERR_MALFORMED);
    assert_null(raw);
    /* the length is honoured: the text after len is not read */
    assert_int_equal(base64_decode("Zm9vZZZ", 4, &raw, &raw_len), ERR_OK);
    assert_int_equal(raw_len, 3);
    assert_memory_equal(raw, "foo", 3);
    free(raw);
}

/* Larger than one EVP chunk each way (49152 input bytes, 65536 characters), and not a multiple of 3. */
static void round_trip_multi_chunk(void **state)
{
    const size_t len = 200001;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    char *text = base64_encode(data, len);
    assert_non_null(text);
    assert_int_equal(strlen(text), (len + 2) / 3 * 4);
    uint8_t *back = NULL;
    size_t back_len = 0;
    assert_int_equal(base64_decode(text, strlen(text), &back, &back_len), ERR_OK);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    free(text);
    free(data);
}

static void bad_arguments(void **state)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(base64_decode(NULL, 4, &raw, &raw_len), ERR_INVALID);
    assert_int_equal(base64_decode("Zm9v", 4, NULL, &raw_len), ERR_INVALID);
    char *empty = base64_encode(NULL, 0);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_vectors),
        cmocka_unit_test(decode_vectors),
        cmocka_unit_test(decode_rejects),
        cmocka_unit_test(decode_rejects_embedded_nul),
        cmocka_unit_test(round_trip_multi_chunk),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
