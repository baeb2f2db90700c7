/* device_tls.h -- the OpenSSL client context the device client hands to libmosquitto (MOSQ_OPT_SSL_CTX):
 * TLS 1.2 or newer, the peer's chain verified against a CA file or the system store, and the peer's name
 * (DNS or IP SAN) checked against the host we dial, always. A verify callback records why verification
 * failed, so a bad certificate is told apart from other handshake failures. Internal to device/. */
#ifndef IOTHUB_DEVICE_TLS_H
#define IOTHUB_DEVICE_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Why the last handshake's verification failed: error is X509_V_OK (0) while nothing failed. */
struct device_tls_verdict {
    long error; /* an X509_V_ERR_* code */
    int depth;  /* chain depth of the failing certificate (0 = the server's own) */
};

/* Creates the context. ca_file NULL trusts the system store (OpenSSL's default paths and /etc/ssl/certs).
 * host is the name the certificate must carry (an IP literal is matched against IP SANs). verdict must
 * outlive the context; the callback writes into it. Returns the context (SSL_CTX_free) or NULL with one line
 * in err (e.g. the CA file cannot be read). */
SSL_CTX *device_tls_ctx_new(const char *ca_file, const char *host, struct device_tls_verdict *verdict, char *err,
                            size_t errlen);
/* Text for a recorded failure ("certificate has expired", "hostname mismatch"). */
const char *device_tls_verdict_str(const struct device_tls_verdict *v);

#endif
