/* test_certs.c -- unit tests for emulator/certs (dev CA and server certificate: generation, reuse, re-issue)
 * and emulator/tls (contexts loading them; in-memory handshakes over a BIO pair, TLS 1.3 and 1.2-only).
 * The tests share one generated directory and run in order: the later ones change it. */
#define OPENSSL_API_COMPAT 30000
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "err.h"
#include "tls.h"

static const char *const hosts[] = {"myhub.azure-devices.net", "192.168.7.10", "fe80::7"};
#define N_HOSTS (sizeof hosts / sizeof hosts[0])

struct fixture {
    char root[64];  /* mkdtemp */
    char dir[128];  /* root/data/sub: created by certs_ensure (mkdir -p) */
    struct certs_paths paths;
    char *ca_key_path;
};

/* ---------------------------------------------------------------- helpers */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = calloc(1, 1 << 16);
    assert_non_null(data);
    *len = fread(data, 1, (1 << 16) - 1, f);
    fclose(f);
    return data;
}

static bool same_file(const char *path, const char *data, size_t len)
{
    size_t n = 0;
    char *now = slurp(path, &n);
    bool same = n == len && memcmp(now, data, len) == 0;
    free(now);
    return same;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

/* X509_verify_cert of server.pem against a store holding only ca.pem, for the TLS server purpose. */
static int verify_chain(const struct certs_paths *p)
{
    X509 *ca = load_cert(p->ca_path);
    X509 *leaf = load_cert(p->cert_path);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_true(store && ctx && X509_STORE_add_cert(store, ca) == 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    X509_free(ca);
    return ok;
}

static bool covers(X509 *x, const char *name, bool ip)
{
    if (ip)
        return X509_check_ip_asc(x, name, 0) == 1;
    return X509_check_host(x, name, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int ensure(struct fixture *fx, const char *const *names, size_t n)
{
    char err[256];
    certs_paths_cleanup(&fx->paths);
    int rc = certs_ensure(fx->dir, names, n, &fx->paths, err, sizeof err);
    if (rc)
        print_error("certs_ensure: %s\n", err);
    return rc;
}

static int want_io(SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Handshakes a client (trusting ca_path, checking host, at most max_version if non-zero) with a server built
 * from the fixture over an in-memory BIO pair. Returns 1 on success; *version and *kx describe the session. */
static int handshake(const struct fixture *fx, const char *host, int max_version, int *version, int *kx)
{
    char err[256];
    SSL_CTX *sctx = tls_server_ctx_new(fx->paths.cert_path, fx->paths.key_path, err, sizeof err);
    SSL_CTX *cctx = tls_client_ctx_new(fx->paths.ca_path);
    assert_true(sctx && cctx);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *sb = NULL, *cb = NULL;
    assert_true(s && c && BIO_new_bio_pair(&sb, 0, &cb, 0) == 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (max_version)
        assert_int_equal(SSL_set_max_proto_version(c, max_version), 1);
    assert_int_equal(tls_client_set_host(c, host), ERR_OK);
    int rs = 0, rcl = 0;
    for (int i = 0; i < 50 && (rs != 1 || rcl != 1); i++) {
        if (rcl != 1 && (rcl = SSL_do_handshake(c)) <= 0 && !want_io(c, rcl))
            break;
        if (rs != 1 && (rs = SSL_do_handshake(s)) <= 0 && !want_io(s, rs))
            break;
    }
    int ok = rs == 1 && rcl == 1;
    *version = SSL_version(c);
    *kx = ok ? SSL_CIPHER_get_kx_nid(SSL_get_current_cipher(c)) : 0;
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    ERR_clear_error();
    return ok;
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->root, sizeof fx->root, "/tmp/test_certs.XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    snprintf(fx->dir, sizeof fx->dir, "%s/data/sub", fx->root);
    assert_int_equal(ensure(fx, hosts, N_HOSTS), ERR_OK);
    fx->ca_key_path = strdup(fx->paths.ca_path);
    memcpy(fx->ca_key_path + strlen(fx->ca_key_path) - 3, "key", 3);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    certs_paths_cleanup(&fx->paths);
    free(fx->ca_key_path);
    nftw(fx->root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void files_and_modes(void **state)
{
    struct fixture *fx = *state;
    struct stat st;
    assert_non_null(strstr(fx->paths.ca_path, "/data/sub/ca.pem"));
    assert_non_null(strstr(fx->paths.cert_path, "/data/sub/server.pem"));
    assert_non_null(strstr(fx->paths.key_path, "/data/sub/server.key"));
    assert_int_equal(fx->paths.ca_path[0], '/');
    assert_int_equal(stat(fx->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(fx->paths.key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(fx->ca_key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(fx->paths.cert_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
}

static void ca_is_a_ca(void **state)
{
    struct fixture *fx = *state;
    X509 *ca = load_cert(fx->paths.ca_path);
    char cn[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "IoT Hub Emulator Dev CA");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(ca) & KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(ca)), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(ca)), 2048);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca)), 1);
    assert_in_range(days, 3640, 3660);
    X509_free(ca);
}

static void server_chains_to_ca(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(verify_chain(&fx->paths), 1);
    X509 *x = load_cert(fx->paths.cert_path);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_true(X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT);
    assert_non_null(X509_get0_authority_key_id(x));
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
    assert_in_range(days, 700, 800);
    X509_free(x);
}

static void sans_cover_every_name(void **state)
{
    struct fixture *fx = *state;
    X509 *x = load_cert(fx->paths.cert_path);
    assert_true(covers(x, "myhub.azure-devices.net", false));
    assert_true(covers(x, "MyHub.Azure-Devices.NET", false));
    assert_true(covers(x, "localhost", false));
    assert_true(covers(x, "127.0.0.1", true));
    assert_true(covers(x, "::1", true));
    assert_true(covers(x, "192.168.7.10", true));
    assert_true(covers(x, "fe80::7", true));
    assert_false(covers(x, "other.example", false));
    assert_false(covers(x, "10.0.0.1", true));
    /* IP literals went in as iPAddress entries, not as DNS names */
    assert_false(covers(x, "127.0.0.1", false));
    assert_false(covers(x, "192.168.7.10", false));
    X509_free(x);
}

static void second_call_reuses_files(void **state)
{
    struct fixture *fx = *state;
    size_t n_ca, n_cak, n_srv, n_key;
    char *ca = slurp(fx->paths.ca_path, &n_ca), *cak = slurp(fx->ca_key_path, &n_cak);
    char *srv = slurp(fx->paths.cert_path, &n_srv), *key = slurp(fx->paths.key_path, &n_key);
    static const char *const again[] = {"MYHUB.azure-devices.net", "fe80:0:0::7", "localhost"};
    assert_int_equal(ensure(fx, again, 3), ERR_OK);
    assert_true(same_file(fx->paths.ca_path, ca, n_ca));
    assert_true(same_file(fx->ca_key_path, cak, n_cak));
    assert_true(same_file(fx->paths.cert_path, srv, n_srv));
    assert_true(same_file(fx->paths.key_path, key, n_key));
    assert_int_equal(ensure(fx, NULL, 0), ERR_OK); /* fewer names: still covered, still reused */
    assert_true(same_file(fx->paths.cert_path, srv, n_srv));
    free(ca);
    free(cak);
    free(srv);
    free(key);
}

static void load_ca_pem(void **state)
{
    struct fixture *fx = *state;
    char *pem = (char *)1;
    size_t len = 99;
    assert_int_equal(certs_load_ca_pem(fx->paths.ca_path, &pem, &len), ERR_OK);
    assert_true(same_file(fx->paths.ca_path, pem, len));
    assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----", 27), 0);
    assert_int_equal(strlen(pem), len);
    free(pem);
    assert_int_equal(certs_load_ca_pem("/nonexistent/ca.pem", &pem, &len), ERR_IO);
    assert_null(pem);
    assert_int_equal(len, 0);
}

static void invalid_hostnames_rejected(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {"", "host:8883", "*.example.com", "a..b", "-x", "https://h", "a b",
                                      "fe80::1%eth0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        struct certs_paths p = {(char *)1, (char *)1, (char *)1};
        assert_int_equal(certs_ensure(fx->dir, &bad[i], 1, &p, err, sizeof err), ERR_INVALID);
        assert_true(p.ca_path == NULL && p.cert_path == NULL && p.key_path == NULL);
        assert_true(err[0] != '\0');
        assert_false(certs_is_valid_hostname(bad[i]));
    }
    assert_true(certs_is_valid_hostname("my-hub_1.azure-devices.net"));
    assert_true(certs_is_valid_hostname("::1"));
    assert_true(certs_is_valid_hostname("10.1.2.3"));
    char err[256] = "";
    struct certs_paths p;
    assert_int_equal(certs_ensure("", NULL, 0, &p, err, sizeof err), ERR_INVALID);
}

static void tls_server_loads_and_rejects_mismatch(void **state)
{
    struct fixture *fx = *state;
    char err[256] = "";
    SSL_CTX *ctx = tls_server_ctx_new(fx->paths.cert_path, fx->paths.key_path, err, sizeof err);
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
    assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_free(ctx);
    ctx = tls_server_ctx_new(fx->paths.cert_path, fx->ca_key_path, err, sizeof err);
    assert_null(ctx);
    assert_non_null(strstr(err, "does not match"));
    ctx = tls_server_ctx_new("/nonexistent.pem", fx->paths.key_path, err, sizeof err);
    assert_null(ctx);
    assert_non_null(strstr(err, "/nonexistent.pem"));
    assert_null(tls_client_ctx_new("/nonexistent-ca.pem"));
}

static void tls_handshakes(void **state)
{
    struct fixture *fx = *state;
    int version = 0, kx = 0;
    assert_int_equal(handshake(fx, "localhost", 0, &version, &kx), 1);
    assert_int_equal(version, TLS1_3_VERSION);
    assert_int_equal(handshake(fx, "myhub.azure-devices.net", 0, &version, &kx), 1);
    assert_int_equal(handshake(fx, "::1", 0, &version, &kx), 1);
    /* the Python SDK's client: TLS 1.2 only; ECDHE is preferred */
    assert_int_equal(handshake(fx, "127.0.0.1", TLS1_2_VERSION, &version, &kx), 1);
    assert_int_equal(version, TLS1_2_VERSION);
    assert_int_equal(kx, NID_kx_ecdhe);
    /* a name outside the SANs fails verification */
    assert_int_equal(handshake(fx, "other.example", 0, &version, &kx), 0);
}

static void new_hostname_reissues_server_keeps_ca(void **state)
{
    struct fixture *fx = *state;
    size_t n_ca, n_cak, n_srv;
    char *ca = slurp(fx->paths.ca_path, &n_ca), *cak = slurp(fx->ca_key_path, &n_cak);
    char *srv = slurp(fx->paths.cert_path, &n_srv);
    static const char *const more[] = {"myhub.azure-devices.net", "192.168.7.10", "fe80::7", "new.example"};
    assert_int_equal(ensure(fx, more, 4), ERR_OK);
    assert_true(same_file(fx->paths.ca_path, ca, n_ca));
    assert_true(same_file(fx->ca_key_path, cak, n_cak));
    assert_false(same_file(fx->paths.cert_path, srv, n_srv));
    assert_int_equal(verify_chain(&fx->paths), 1);
    X509 *x = load_cert(fx->paths.cert_path);
    assert_true(covers(x, "new.example", false));
    assert_true(covers(x, "myhub.azure-devices.net", false));
    assert_true(covers(x, "fe80::7", true));
    X509_free(x);
    free(ca);
    free(cak);
    free(srv);
}

/* Rewrites server.pem as the same certificate expiring in 10 days, signed by the CA again. */
static void make_server_near_expiry(struct fixture *fx)
{
    X509 *x = load_cert(fx->paths.cert_path);
    EVP_PKEY *ca_key = load_key(fx->ca_key_path);
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 10, 0, NULL));
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    FILE *f = fopen(fx->paths.cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(ca_key);
}

static void near_expiry_reissues(void **state)
{
    struct fixture *fx = *state;
    make_server_near_expiry(fx);
    assert_int_equal(verify_chain(&fx->paths), 1); /* still valid, just near its end */
    size_t n_ca, n_srv;
    char *ca = slurp(fx->paths.ca_path, &n_ca), *srv = slurp(fx->paths.cert_path, &n_srv);
    assert_int_equal(ensure(fx, hosts, N_HOSTS), ERR_OK);
    assert_true(same_file(fx->paths.ca_path, ca, n_ca));
    assert_false(same_file(fx->paths.cert_path, srv, n_srv));
    X509 *x = load_cert(fx->paths.cert_path);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
    assert_true(days > 700);
    X509_free(x);
    free(ca);
    free(srv);
}

static void mismatched_pair_is_repaired(void **state)
{
    struct fixture *fx = *state;
    size_t n;
    char *cak = slurp(fx->ca_key_path, &n);
    FILE *f = fopen(fx->paths.key_path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(cak, 1, n, f), n);
    fclose(f);
    free(cak);
    assert_int_equal(ensure(fx, hosts, N_HOSTS), ERR_OK);
    char err[256];
    SSL_CTX *ctx = tls_server_ctx_new(fx->paths.cert_path, fx->paths.key_path, err, sizeof err);
    assert_non_null(ctx);
    SSL_CTX_free(ctx);
    struct stat st;
    assert_int_equal(stat(fx->paths.key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void missing_ca_key_cannot_reissue(void **state)
{
    struct fixture *fx = *state;
    char *moved = strdup(fx->ca_key_path);
    moved[strlen(moved) - 1] = 'X';
    assert_int_equal(rename(fx->ca_key_path, moved), 0);
    assert_int_equal(ensure(fx, hosts, N_HOSTS), ERR_OK); /* nothing to issue: no CA key needed */
    static const char *const more[] = {"another.example"};
    char err[256] = "";
    struct certs_paths p;
    assert_int_equal(certs_ensure(fx->dir, more, 1, &p, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "ca.key"));
    assert_int_equal(rename(moved, fx->ca_key_path), 0);
    free(moved);
}

static void deleted_ca_regenerates_everything(void **state)
{
    struct fixture *fx = *state;
    size_t n_ca;
    char *ca = slurp(fx->paths.ca_path, &n_ca);
    assert_int_equal(unlink(fx->paths.ca_path), 0);
    assert_int_equal(ensure(fx, hosts, N_HOSTS), ERR_OK);
    assert_false(same_file(fx->paths.ca_path, ca, n_ca));
    assert_int_equal(verify_chain(&fx->paths), 1);
    free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_and_modes),
        cmocka_unit_test(ca_is_a_ca),
        cmocka_unit_test(server_chains_to_ca),
        cmocka_unit_test(sans_cover_every_name),
        cmocka_unit_test(second_call_reuses_files),
        cmocka_unit_test(load_ca_pem),
        cmocka_unit_test(invalid_hostnames_rejected),
        cmocka_unit_test(tls_server_loads_and_rejects_mismatch),
        cmocka_unit_test(tls_handshakes),
        cmocka_unit_test(new_hostname_reissues_server_keeps_ca),
        cmocka_unit_test(near_expiry_reissues),
        cmocka_unit_test(mismatched_pair_is_repaired),
        cmocka_unit_test(missing_ca_key_cannot_reissue),
        cmocka_unit_test(deleted_ca_regenerates_everything),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
