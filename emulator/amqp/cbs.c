/* cbs.c -- put-token verification over auth.h and the per-connection claims table (see cbs.h).
 * Tests: tests/unit/test_cbs.c. */
#include "cbs.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "sas.h"
#include "url.h"

#define CBS_SAS_PREFIX "SharedAccessSignature "

static void set_why(char *why, size_t whylen, const char *text)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", text);
}

/* host[:port] of an audience or sr: an optional "scheme://" is skipped, the host ends at '/'. The rest must
 * be empty or "/" (a hub-level audience). Lower-cased into out. Returns ERR_OK or ERR_AUTH. */
static int normalise(const char *p, size_t len, char *out)
{
    for (size_t i = 0; i + 2 < len; i++) {
        if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') {
            p += i + 3;
            len -= i + 3;
            break;
        }
        if (!isalpha((unsigned char)p[i]))
            break;
    }
    size_t host = 0;
    while (host < len && p[host] != '/')
        host++;
    if (host == 0 || host >= CBS_MAX_AUDIENCE || (len - host > 1))
        return ERR_AUTH;
    for (size_t i = 0; i < host; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x21 || c > 0x7e)
            return ERR_AUTH;
        out[i] = (char)tolower(c);
    }
    out[host] = 0;
    return ERR_OK;
}

int cbs_verify(struct auth *a, const char *audience, size_t alen, const char *token, size_t tlen, int64_t now_s,
               int64_t skew_s, int64_t *expiry, char *norm, char *why, size_t whylen)
{
    *expiry = 0;
    set_why(why, whylen, "");
    size_t plen = strlen(CBS_SAS_PREFIX);
    if (tlen >= 7 && strncmp(token, "Bearer ", 7) == 0) {
        set_why(why, whylen, "Azure AD tokens are not supported by the emulator; use a SAS token");
        return ERR_AUTH;
    }
    if (tlen < plen || memcmp(token, CBS_SAS_PREFIX, plen) != 0) {
        set_why(why, whylen, "unsupported token type");
        return ERR_AUTH;
    }
    if (tlen > CBS_MAX_TOKEN || memchr(token, 0, tlen)) {
        set_why(why, whylen, "malformed token");
        return ERR_AUTH;
    }
    char *text = malloc(tlen + 1);
    if (!text) {
        set_why(why, whylen, "out of memory");
        return ERR_AUTH;
    }
    memcpy(text, token, tlen);
    text[tlen] = 0;
    int rc = auth_check_service(a, text, AUTH_SERVICE_CONNECT, now_s, skew_s, why, whylen);
    struct sas_token tok;
    if (rc == ERR_OK && sas_parse(text, tlen, &tok) != ERR_OK) {
        set_why(why, whylen, "malformed token");
        rc = ERR_AUTH;
    }
    char sr_norm[CBS_MAX_AUDIENCE], aud_norm[CBS_MAX_AUDIENCE];
    if (rc == ERR_OK) {
        char *sr = NULL;
        size_t srlen = 0;
        if (url_decode(tok.sr.p, tok.sr.len, &sr, &srlen) || normalise(sr, srlen, sr_norm)) {
            set_why(why, whylen, "wrong audience");
            rc = ERR_AUTH;
        }
        free(sr);
    }
    if (rc == ERR_OK && alen > 0) {
        if (normalise(audience, alen, aud_norm) || strcmp(aud_norm, sr_norm) != 0) {
            set_why(why, whylen, "the put-token name is not the token's audience (the hub's host name)");
            rc = ERR_AUTH;
        }
    }
    if (rc == ERR_OK) {
        *expiry = tok.expiry > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tok.expiry;
        if (norm)
            snprintf(norm, CBS_MAX_AUDIENCE, "%s", sr_norm);
    }
    free(text);
    return rc == ERR_OK ? ERR_OK : ERR_AUTH;
}

int cbs_claims_put(struct cbs_claims *t, const char *norm, int64_t expiry)
{
    int free_slot = -1;
    for (int i = 0; i < CBS_MAX_CLAIMS; i++) {
        if (t->c[i].used && strcmp(t->c[i].audience, norm) == 0) {
            t->c[i].expiry = expiry;
            return i;
        }
        if (!t->c[i].used && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        return -1;
    struct cbs_claim *c = &t->c[free_slot];
    c->used = true;
    snprintf(c->audience, sizeof c->audience, "%s", norm);
    c->expiry = expiry;
    return free_slot;
}

static int64_t until(int64_t expiry, int64_t skew_s)
{
    return expiry > INT64_MAX - skew_s ? INT64_MAX : expiry + skew_s;
}

int cbs_claims_valid(const struct cbs_claims *t, int64_t now_s, int64_t skew_s)
{
    for (int i = 0; i < CBS_MAX_CLAIMS; i++)
        if (t->c[i].used && until(t->c[i].expiry, skew_s) >= now_s)
            return i;
    return -1;
}

int64_t cbs_claims_next_expiry(const struct cbs_claims *t, int64_t skew_s)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < CBS_MAX_CLAIMS; i++)
        if (t->c[i].used && until(t->c[i].expiry, skew_s) < next)
            next = until(t->c[i].expiry, skew_s);
    return next;
}

unsigned cbs_claims_expire(struct cbs_claims *t, int64_t now_s, int64_t skew_s)
{
    unsigned dropped = 0;
    for (int i = 0; i < CBS_MAX_CLAIMS; i++) {
        if (t->c[i].used && until(t->c[i].expiry, skew_s) < now_s) {
            t->c[i].used = false;
            dropped |= 1u << i;
        }
    }
    return dropped;
}
