/* base64.c -- standard base64 (RFC 4648 §4, padded) over OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock.
 * Decoding validates the text itself first (alphabet, length % 4, '=' only as the final padding), because
 * EVP_DecodeBlock skips surrounding whitespace and counts padding as zero bytes; the real length is computed
 * here. Pure: no I/O, no globals. Tests: tests/unit/test_base64.c. */
#include "base64.h"

#include <limits.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "err.h"

/* EVP_*Block take an int length: work in chunks well below INT_MAX (multiples of 3 and 4). */
#define BASE64_CHUNK_IN 49152u  /* bytes per encode chunk, a multiple of 3 */
#define BASE64_CHUNK_TXT 65536u /* characters per decode chunk, a multiple of 4 */

static int base64_is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

char *base64_encode(const uint8_t *data, size_t len)
{
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    size_t out_len = (len + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (!out)
        return NULL;
    size_t in_pos = 0, out_pos = 0;
    while (in_pos < len) {
        size_t n = len - in_pos < BASE64_CHUNK_IN ? len - in_pos : BASE64_CHUNK_IN;
        int w = EVP_EncodeBlock((unsigned char *)out + out_pos, data + in_pos, (int)n);
        in_pos += n;
        out_pos += (size_t)w;
    }
    out[out_pos] = '\0';
    return out;
}

/* Counts the trailing padding of text[0..len) if the whole text is valid base64; -1 otherwise. */
static int base64_validate(const char *text, size_t len)
{
    if (len % 4 != 0)
        return -1;
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=') {
        pad++;
        if (text[len - 2] == '=') /* len is a multiple of 4, so len >= 4 here */
            pad++;
    }
    for (size_t i = 0; i < len - pad; i++) {
        if (!base64_is_alpha((unsigned char)text[i]))
            return -1;
    }
    return (int)pad;
}

int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len)
{
    int rc = ERR_OK;
    uint8_t *res = NULL;
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out || !out_len || (!text && len)) {
        rc = ERR_INVALID;
        goto out;
    }
    int pad = base64_validate(text, len);
    if (pad < 0) {
        rc = ERR_MALFORMED;
        goto out;
    }
    /* +1 so an empty result is still a valid allocation */
    res = malloc(len / 4 * 3 + 1);
    if (!res) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t in_pos = 0, out_pos = 0;
    while (in_pos < len) {
        size_t n = len - in_pos < BASE64_CHUNK_TXT ? len - in_pos : BASE64_CHUNK_TXT;
        int w = EVP_DecodeBlock(res + out_pos, (const unsigned char *)text + in_pos, (int)n);
        if (w < 0) {
            rc = ERR_MALFORMED;
            goto out;
        }
        in_pos += n;
        out_pos += (size_t)w;
    }
    /* EVP_DecodeBlock counts each '=' as a decoded zero byte */
    *out_len = out_pos - (size_t)pad;
    *out = res;
    res = NULL;
out:
    free(res);
    return rc;
}
