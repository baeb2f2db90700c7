/* device_tls.c -- client SSL_CTX with chain and host-name verification and a recording verify callback
 * (see device_tls.h). */
#include "device_tls.h"

#include <arpa/inet.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SYSTEM_CA_DIR "/etc/ssl/certs"

static int verify_cb(int ok, X509_STORE_CTX *store)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct device_tls_verdict *v = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    if (v && v->error == X509_V_OK) {
        v->error = X509_STORE_CTX_get_error(store);
        v->depth = X509_STORE_CTX_get_error_depth(store);
        if (v->error == X509_V_OK)
            v->error = X509_V_ERR_UNSPECIFIED;
    }
    return 0;
}

static int is_ip_literal(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static void ssl_error_line(char *err, size_t errlen, const char *what, const char *arg)
{
    char reason[160] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    if (err && errlen)
        snprintf(err, errlen, "%s %s: %s", what, arg, reason);
}

static int load_trust(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
    if (ca_file) {
        if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
            ssl_error_line(err, errlen, "cannot load CA file", ca_file);
            return -1;
        }
        return 0;
    }
    int ok = SSL_CTX_set_default_verify_paths(ctx);
    ok |= SSL_CTX_load_verify_dir(ctx, SYSTEM_CA_DIR);
    ERR_clear_error();
    if (!ok) {
        if (err && errlen)
            snprintf(err, errlen, "cannot load the system CA store (" SYSTEM_CA_DIR ")");
        return -1;
    }
    return 0;
}

static int pin_host(SSL_CTX *ctx, const char *host)
{
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip_literal(host))
        return X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ? 0 : -1;
    return X509_VERIFY_PARAM_set1_host(param, host, 0) == 1 ? 0 : -1;
}

SSL_CTX *device_tls_ctx_new(const char *ca_file, const char *host, struct device_tls_verdict *verdict, char *err,
                            size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_error_line(err, errlen, "cannot create a TLS context for", host);
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        ssl_error_line(err, errlen, "cannot require TLS 1.2 for", host);
        goto fail;
    }
    if (load_trust(ctx, ca_file, err, errlen))
        goto fail;
    if (pin_host(ctx, host)) {
        ssl_error_line(err, errlen, "cannot set the expected host name", host);
        goto fail;
    }
    verdict->error = X509_V_OK;
    verdict->depth = 0;
    SSL_CTX_set_app_data(ctx, verdict);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

const char *device_tls_verdict_str(const struct device_tls_verdict *v)
{
    return X509_verify_cert_error_string(v->error);
}
