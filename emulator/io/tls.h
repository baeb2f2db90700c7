/* tls.h -- OpenSSL contexts: the emulator's server side (TLS 1.2 and 1.3, one certificate chain for :8883 and
 * :443) and a verifying client side for tests and benchmarks. Contexts only: sockets, SSL objects and the
 * WANT_READ/WANT_WRITE handling belong to the transport (net). Tests: tests/unit/test_certs.c. */
#ifndef IOTHUB_TLS_H
#define IOTHUB_TLS_H

#include <openssl/ssl.h>

/* A server context: TLS 1.2 minimum (the Python SDK speaks exactly 1.2), TLS 1.3 allowed; the certificate chain
 * from cert_path (leaf first, PEM) and the private key from key_path, checked to match. Cipher list for TLS 1.2
 * matches what Azure IoT Hub offers (ECDHE first, server preference; RSA-kx AES suites last for old embedded
 * clients) at SECLEVEL=1; TLS 1.3 suites are OpenSSL's defaults. No renegotiation; server-side session cache;
 * partial writes, moving write buffers and released idle buffers (SSL_MODE_RELEASE_BUFFERS); a peer closing
 * without close_notify reads as a clean EOF (SSL_OP_IGNORE_UNEXPECTED_EOF), as MQTT framing makes truncation
 * visible anyway. Returns NULL and one line in err on failure; caller frees with SSL_CTX_free. */
SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* A client context that verifies the server: against the PEM CA file ca_path, or the system trust store when
 * ca_path is NULL. TLS 1.2 minimum. Host name checking is per connection: call tls_client_set_host on each SSL.
 * Returns NULL on failure (logged); caller frees with SSL_CTX_free. */
SSL_CTX *tls_client_ctx_new(const char *ca_path);

/* Sets SNI (for DNS names only, as browsers and SDKs do) and the name or IP address the server certificate
 * must match. Returns ERR_OK, or ERR_INVALID when OpenSSL refuses the name. */
int tls_client_set_host(SSL *ssl, const char *host);

#endif
