/* tls.c -- OpenSSL server and client contexts (see tls.h). Configuration only: no sockets, no SSL objects kept,
 * no globals. Tests: tests/unit/test_certs.c (loading, key mismatch, in-memory handshakes). */
#define OPENSSL_API_COMPAT 30000
#include "tls.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"

/* TLS 1.2 suites, close to Azure IoT Hub's list: forward-secret AEAD first, then ECDHE CBC, then RSA key
 * exchange (no forward secrecy) for old embedded stacks. SECLEVEL=1 keeps user-supplied 1024-bit-RSA or SHA-1
 * chains loadable; our generated chain (RSA-2048, SHA-256) meets level 2 anyway. */
#define TLS12_CIPHERS                                                                                   \
    "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:RSA+AESGCM:RSA+AES:!aNULL:!eNULL:!MD5:!DSS:!PSK:!SRP:!AESCCM:" \
    "!CAMELLIA:!ARIA:@SECLEVEL=1"
#define SESSION_ID_CTX "iothub-emulator"

/* One line into err: the message, then OpenSSL's newest reason if any. Clears OpenSSL's error queue. */
__attribute__((format(printf, 3, 4))) static void tls_err(char *err, size_t errlen, const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        if (reason && n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, " (%s)", reason);
    }
    ERR_clear_error();
}

static int server_load_identity(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err,
                                size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        tls_err(err, errlen, "cannot load certificate chain %s", cert_path);
        return ERR_INVALID;
    }
    /* OpenSSL checks the pair while loading the key; a mismatch shows up as X509_R_KEY_*_MISMATCH */
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        int reason = ERR_GET_REASON(ERR_peek_last_error());
        if (reason != X509_R_KEY_VALUES_MISMATCH && reason != X509_R_KEY_TYPE_MISMATCH) {
            tls_err(err, errlen, "cannot load private key %s", key_path);
            return ERR_INVALID;
        }
        tls_err(err, errlen, "private key %s does not match certificate %s", key_path, cert_path);
        return ERR_INVALID;
    }
    return ERR_OK;
}

static int server_set_policy(SSL_CTX *ctx, char *err, size_t errlen)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        tls_err(err, errlen, "cannot set the TLS protocol versions or ciphers");
        return ERR_INVALID;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* One read() per burst rather than two per record (header, then body); net.c drains what is read ahead
     * with SSL_has_pending. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CTX, sizeof SESSION_ID_CTX - 1) !=
        1) {
        tls_err(err, errlen, "cannot set the TLS session id context");
        return ERR_INVALID;
    }
    return ERR_OK;
}

SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    ERR_clear_error();
    if (!cert_path || !key_path) {
        tls_err(err, errlen, "TLS needs both a certificate and a key");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_err(err, errlen, "cannot create a TLS server context");
        return NULL;
    }
    if (server_set_policy(ctx, err, errlen) != ERR_OK ||
        server_load_identity(ctx, cert_path, key_path, err, errlen) != ERR_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tls_client_ctx_new(const char *ca_path)
{
    char err[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_err(err, sizeof err, "cannot create a TLS client context");
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        tls_err(err, sizeof err, "cannot set the minimum TLS version");
        goto fail;
    }
    int ok = ca_path ? SSL_CTX_load_verify_locations(ctx, ca_path, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        tls_err(err, sizeof err, "cannot load trusted CAs from %s", ca_path ? ca_path : "the system store");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
fail:
    log_error("tls: %s", err);
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_client_set_host(SSL *ssl, const char *host)
{
    unsigned char ip[16];
    if (!ssl || !host || !*host)
        return ERR_INVALID;
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                   : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    if (ok != 1) {
        ERR_clear_error();
        return ERR_INVALID;
    }
    return ERR_OK;
}
