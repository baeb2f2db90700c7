/* certs.h -- the development CA and server certificate the emulator uses when the user gives no --cert/--key.
 * Generated once into the data directory (ca.pem, ca.key, server.pem, server.key) with OpenSSL 3 EVP APIs and
 * reused on later starts; the server certificate alone is re-issued from the same CA when a hostname is new or
 * it nears expiry, so ca.pem (which users trust) stays stable. Touches only the filesystem and OpenSSL.
 * Tests: tests/unit/test_certs.c. */
#ifndef IOTHUB_CERTS_H
#define IOTHUB_CERTS_H

#include <stdbool.h>
#include <stddef.h>

/* Absolute paths of the files to serve and to trust. Strings are malloc'd; free with certs_paths_cleanup(). */
struct certs_paths {
    char *ca_path;   /* dir/ca.pem: the dev CA users trust (NODE_EXTRA_CA_CERTS, TrustedCerts, --ca-file) */
    char *cert_path; /* dir/server.pem: the server certificate (leaf only; it is signed directly by the CA) */
    char *key_path;  /* dir/server.key: its private key (PKCS#8 PEM, mode 0600) */
};

/* Ensures dir exists (mkdir -p, new directories 0700) and holds a dev CA and a server certificate whose SANs
 * cover every name in hostnames[0..n_hostnames) (DNS, or IP when a name parses as an IPv4/IPv6 address) plus
 * DNS:localhost, IP:127.0.0.1 and IP:::1. Existing files are reused unchanged when they are valid; the server
 * certificate and key are re-issued from the existing CA when a name is missing, the pair does not match, it
 * was not signed by ca.pem, or it expires within 30 days. A missing ca.pem means a new CA (and server cert).
 * Files are written via temp file + fsync + rename; keys are 0600. Hostnames are validated (ERR_INVALID).
 * Returns ERR_OK, ERR_INVALID, ERR_IO or ERR_NOMEM; on failure err holds one line and *out is all NULL.
 * *out is valid only on ERR_OK. Never writes key material to err or to the log. */
int certs_ensure(const char *dir, const char *const *hostnames, size_t n_hostnames, struct certs_paths *out,
                 char *err, size_t errlen) __attribute__((warn_unused_result));

/* True when name is an IPv4/IPv6 literal or a plausible DNS name (letters, digits, '-', '_', '.'; at most 253
 * characters; no leading '.' or '-', no empty label). Wildcards and ports are refused. */
bool certs_is_valid_hostname(const char *name);

/* Frees the three paths and sets them to NULL. Accepts a zeroed struct. */
void certs_paths_cleanup(struct certs_paths *p);

/* Reads the CA certificate file (to serve GET /emulator/ca.pem). On ERR_OK *pem is a malloc'd NUL-terminated
 * copy (caller frees) of *len bytes; otherwise *pem is NULL and *len 0. ERR_IO, ERR_TOO_BIG (> 1 MiB),
 * ERR_NOMEM. */
int certs_load_ca_pem(const char *ca_path, char **pem, size_t *len) __attribute__((warn_unused_result));

#endif
