/* certs.c -- generate once, then reuse, the dev CA and server certificate (see certs.h). OpenSSL 3 EVP/X509
 * APIs only (OPENSSL_API_COMPAT hides deprecated ones); files are written to a temp file, fsync'd and renamed.
 * A best-effort flock on dir/.certs.lock keeps two emulators sharing a data dir from racing.
 * Touches the filesystem and OpenSSL only; never writes key material to the log. Tests: tests/unit/test_certs.c. */
#define OPENSSL_API_COMPAT 30000
#include "certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "dirs.h"
#include "err.h"
#include "log.h"

#define CA_CN "IoT Hub Emulator Dev CA"
#define ORG_NAME "IoT Hub Emulator"
#define CA_DAYS 3650
#define SERVER_DAYS 730
#define RENEW_DAYS 30         /* re-issue when fewer days than this remain */
#define BACKDATE_SECS 3600    /* notBefore an hour back, for clients whose clock lags ours */
#define RSA_BITS 2048         /* RSA for the widest client compatibility (old Node, Azure C SDK, mbedTLS) */
#define CA_PEM_MAX (1 << 20)
#define HOST_MAX 253
#define CN_MAX 64             /* ub-common-name */

static const char *const builtin_names[] = {"localhost", "127.0.0.1", "::1"};
#define N_BUILTIN (sizeof builtin_names / sizeof builtin_names[0])

/* What one certs_ensure call works on, so helpers take one pointer. Paths are absolute and owned. */
struct job {
    const char *const *hosts;
    size_t n_hosts;
    char *dir; /* absolute */
    char *ca_pem, *ca_key, *srv_pem, *srv_key;
    char *err;
    size_t errlen;
};

/* ---------------------------------------------------------------- small helpers */

/* Formats one line into err, appends the newest OpenSSL reason if any, and clears OpenSSL's error queue. */
__attribute__((format(printf, 2, 3))) static void job_err(struct job *j, const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    if (j->err && j->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(j->err, j->errlen, fmt, ap);
        va_end(ap);
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        if (reason && n >= 0 && (size_t)n < j->errlen)
            snprintf(j->err + n, j->errlen - (size_t)n, " (%s)", reason);
    }
    ERR_clear_error();
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Returns the address length (4 or 16) when s is an IPv4/IPv6 literal, else 0. */
static size_t ip_parse(const char *s, unsigned char out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    return 0;
}

static bool is_dns_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

bool certs_is_valid_hostname(const char *name)
{
    unsigned char ip[16];
    if (!name || ip_parse(name, ip))
        return name != NULL;
    size_t n = strlen(name);
    if (n == 0 || n > HOST_MAX || name[0] == '.' || name[0] == '-' || strstr(name, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_dns_char(name[i]))
            return false;
    }
    return true;
}

/* The i-th name the server certificate must cover: the caller's hostnames, then the built-in ones. */
static const char *job_name(const struct job *j, size_t i)
{
    return i < j->n_hosts ? j->hosts[i] : builtin_names[i - j->n_hosts];
}

static size_t job_n_names(const struct job *j)
{
    return j->n_hosts + N_BUILTIN;
}

/* True when name i already appeared earlier (e.g. --hostname localhost and the built-in localhost). */
static bool job_name_repeats(const struct job *j, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcasecmp(job_name(j, k), job_name(j, i)) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- filesystem */

static int mkdir_p(struct job *j, const char *dir)
{
    char why[512];
    int rc = dirs_make(dir, why, sizeof why);
    if (rc)
        job_err(j, "%s", why);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes data to path atomically: a private temp file beside it, fsync, chmod, rename. */
static int write_atomic(struct job *j, const char *path, const char *data, size_t len, mode_t mode)
{
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp)
        return ERR_NOMEM;
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int rc = ERR_IO;
    int fd = mkostemp(tmp, O_CLOEXEC); /* created 0600, so a key is never readable by others */
    if (fd < 0) {
        job_err(j, "cannot create a file in the directory of %s: %s", path, strerror(errno));
        free(tmp);
        return ERR_IO;
    }
    if (write_all(fd, data, len) != 0 || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        job_err(j, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    int closed = close(fd);
    fd = -1;
    if (closed != 0 || rename(tmp, path) != 0) {
        job_err(j, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    rc = ERR_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rc != ERR_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* PEM-encodes a certificate (mode 0644) or a private key (PKCS#8, mode 0600; through a secure-memory BIO that
 * is wiped on free) and writes it with write_atomic. Exactly one of cert and key is non-NULL. */
static int write_pem(struct job *j, const char *path, X509 *cert, EVP_PKEY *key)
{
    BIO *bio = BIO_new(cert ? BIO_s_mem() : BIO_s_secmem());
    int rc = ERR_NOMEM;
    if (!bio)
        goto out;
    int ok = cert ? PEM_write_bio_X509(bio, cert) : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (!ok || len <= 0) {
        job_err(j, "cannot encode %s", path);
        goto out;
    }
    rc = write_atomic(j, path, data, (size_t)len, cert ? 0644 : 0600);
out:
    BIO_free(bio);
    return rc;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "re");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    ERR_clear_error();
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "re");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    ERR_clear_error();
    return k;
}

/* Makes the renames durable. Best effort: a failure here loses nothing already visible. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Best effort: returns a locked fd to close later, or -1 when locking is unsupported (e.g. some volumes). */
static int lock_dir(const char *dir)
{
    char *path = path_join(dir, ".certs.lock");
    int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    free(path);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- certificate building */

static int cert_set_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return ERR_IO;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, 127 bits, no leading zero octet */
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
    ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) : NULL;
    BN_free(bn);
    return ai ? ERR_OK : ERR_NOMEM;
}

/* A v3 certificate for key with subject O=ORG_NAME, CN=cn, issued by issuer (self when NULL), valid for days
 * from an hour ago. Extensions and signature are the caller's. NULL on failure. */
static X509 *cert_new(EVP_PKEY *key, X509 *issuer, const char *cn, long days)
{
    X509 *x = X509_new();
    if (!x || !X509_set_version(x, X509_VERSION_3) || cert_set_serial(x) != ERR_OK || !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)ORG_NAME, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
        goto fail;
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
        goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* Adds one extension given in openssl.cnf syntax ("critical,CA:TRUE"); issuer is x itself when NULL. */
static int cert_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? ERR_OK : ERR_NOMEM;
}

/* Appends name to names as an IP or DNS (lower-cased) entry, unless an equal entry is already there. */
static int san_push(GENERAL_NAMES *names, const char *name)
{
    unsigned char ip[16];
    size_t iplen = ip_parse(name, ip);
    char lower[HOST_MAX + 1];
    size_t n = strlen(name);
    for (size_t i = 0; i < n && i < HOST_MAX; i++)
        lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    lower[n < HOST_MAX ? n : HOST_MAX] = '\0';

    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *s = iplen ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    int ok = gn && s &&
             (iplen ? ASN1_OCTET_STRING_set(s, ip, (int)iplen) : ASN1_STRING_set(s, lower, (int)strlen(lower)));
    if (!ok) {
        GENERAL_NAME_free(gn);
        ASN1_STRING_free(s);
        return ERR_NOMEM;
    }
    GENERAL_NAME_set0_value(gn, iplen ? GEN_IPADD : GEN_DNS, s);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(names, i), gn) == 0) {
            GENERAL_NAME_free(gn);
            return ERR_OK;
        }
    }
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return ERR_NOMEM;
    }
    return ERR_OK;
}

static int cert_add_sans(X509 *x, const struct job *j)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    int rc = names ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; rc == ERR_OK && i < job_n_names(j); i++)
        if (!job_name_repeats(j, i))
            rc = san_push(names, job_name(j, i));
    if (rc == ERR_OK && !X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0))
        rc = ERR_NOMEM;
    GENERAL_NAMES_free(names);
    return rc;
}

/* Writes the key first: a crash between the two renames leaves a mismatched pair, which the next start
 * detects and repairs. */
static int write_pair(struct job *j, const char *cert_path, X509 *cert, const char *key_path, EVP_PKEY *key)
{
    int rc = write_pem(j, key_path, NULL, key);
    return rc ? rc : write_pem(j, cert_path, cert, NULL);
}

static int ca_create(struct job *j, X509 **ca_out, EVP_PKEY **key_out)
{
    X509 *ca = NULL;
    int rc = ERR_NOMEM;
    EVP_PKEY *key = EVP_RSA_gen(RSA_BITS);
    if (!key || !(ca = cert_new(key, NULL, CA_CN, CA_DAYS)))
        goto fail;
    if (cert_add_ext(ca, NULL, NID_basic_constraints, "critical,CA:TRUE") ||
        cert_add_ext(ca, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        cert_add_ext(ca, NULL, NID_subject_key_identifier, "hash") ||
        cert_add_ext(ca, NULL, NID_authority_key_identifier, "keyid:always"))
        goto fail;
    if (X509_sign(ca, key, EVP_sha256()) <= 0)
        goto fail;
    rc = write_pair(j, j->ca_pem, ca, j->ca_key, key);
    if (rc)
        goto out;
    log_info("certs: generated a new development CA %s (clients must trust it)", j->ca_pem);
    *ca_out = ca;
    *key_out = key;
    return ERR_OK;
fail:
    job_err(j, "cannot generate the development CA");
out:
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

static int server_add_exts(X509 *x, X509 *ca, const struct job *j)
{
    if (cert_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
        cert_add_ext(x, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        cert_add_ext(x, ca, NID_ext_key_usage, "serverAuth") ||
        cert_add_ext(x, ca, NID_subject_key_identifier, "hash") ||
        cert_add_ext(x, ca, NID_authority_key_identifier, "keyid:always"))
        return ERR_NOMEM;
    return cert_add_sans(x, j);
}

static void log_issued(const struct job *j)
{
    struct buf b;
    buf_init(&b, 4096);
    for (size_t i = 0; i < job_n_names(j); i++)
        if (!job_name_repeats(j, i))
            (void)buf_printf(&b, "%s%s", b.len ? ", " : "", job_name(j, i));
    char *names = buf_take_str(&b);
    log_info("certs: issued server certificate %s for %s", j->srv_pem, names ? names : "(names)");
    free(names);
    buf_cleanup(&b);
}

static int server_issue(struct job *j, X509 *ca, EVP_PKEY *ca_key)
{
    X509 *x = NULL;
    int rc = ERR_NOMEM;
    const char *cn = j->n_hosts > 0 && strlen(j->hosts[0]) <= CN_MAX ? j->hosts[0] : "localhost";
    EVP_PKEY *key = EVP_RSA_gen(RSA_BITS);
    if (!key || !(x = cert_new(key, ca, cn, SERVER_DAYS)) || server_add_exts(x, ca, j) != ERR_OK ||
        X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        job_err(j, "cannot issue the server certificate");
        goto out;
    }
    rc = write_pair(j, j->srv_pem, x, j->srv_key, key);
    if (rc == ERR_OK)
        log_issued(j);
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* ---------------------------------------------------------------- reuse checks */

static bool expires_within(const X509 *x, int days)
{
    int d = 0, s = 0;
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
        return true; /* not valid yet (clock moved back) or unparsable: treat as unusable */
    if (!ASN1_TIME_diff(&d, &s, NULL, X509_get0_notAfter(x)))
        return true;
    return d < days;
}

static bool cert_covers(X509 *x, const char *name)
{
    unsigned char ip[16];
    size_t iplen = ip_parse(name, ip);
    if (iplen)
        return X509_check_ip(x, ip, iplen, 0) == 1;
    return X509_check_host(x, name, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1;
}

/* Why server.pem/server.key must be re-issued, or NULL when they are fine to reuse. */
static const char *server_stale_reason(const struct job *j, X509 *ca)
{
    const char *why = NULL;
    X509 *x = read_cert(j->srv_pem);
    EVP_PKEY *key = read_key(j->srv_key);
    if (!x || !key)
        why = "missing or unreadable";
    else if (X509_check_private_key(x, key) != 1)
        why = "key does not match";
    else if (X509_check_issued(ca, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(ca)) != 1)
        why = "not signed by the current CA";
    else if (expires_within(x, RENEW_DAYS))
        why = "expired or expiring within 30 days";
    for (size_t i = 0; !why && i < job_n_names(j); i++) {
        if (!cert_covers(x, job_name(j, i)))
            why = "a requested hostname is not in its SANs";
    }
    X509_free(x);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return why;
}

/* Loads ca.pem, or creates a new CA when it is absent or expiring. *fresh says whether it was created (then
 * *key is set too; otherwise *key is NULL and loaded only if a server cert must be issued). */
static int ca_load_or_create(struct job *j, X509 **ca, EVP_PKEY **key, bool *fresh)
{
    *fresh = false;
    if (access(j->ca_pem, F_OK) != 0 && errno == ENOENT) {
        *fresh = true;
        return ca_create(j, ca, key);
    }
    *ca = read_cert(j->ca_pem);
    if (!*ca) {
        job_err(j, "%s is not a readable PEM certificate; fix or delete it (a new CA is then generated)",
                j->ca_pem);
        return ERR_INVALID;
    }
    if (expires_within(*ca, RENEW_DAYS)) {
        log_warn("certs: %s is expired or expires within 30 days; generating a new CA", j->ca_pem);
        X509_free(*ca);
        *ca = NULL;
        *fresh = true;
        return ca_create(j, ca, key);
    }
    return ERR_OK;
}

static int ca_load_key(struct job *j, X509 *ca, EVP_PKEY **key)
{
    if (*key)
        return ERR_OK;
    *key = read_key(j->ca_key);
    if (*key && X509_check_private_key(ca, *key) == 1)
        return ERR_OK;
    EVP_PKEY_free(*key);
    *key = NULL;
    job_err(j, "cannot re-issue the server certificate: %s is missing or does not match %s; delete %s to "
            "generate a new CA (clients must then trust the new one)", j->ca_key, j->ca_pem, j->ca_pem);
    return ERR_INVALID;
}

/* ---------------------------------------------------------------- public API */

static int job_init(struct job *j, const char *dir)
{
    char *abs = realpath(dir, NULL);
    if (!abs) {
        job_err(j, "cannot resolve %s: %s", dir, strerror(errno));
        return ERR_IO;
    }
    j->dir = abs;
    j->ca_pem = path_join(abs, "ca.pem");
    j->ca_key = path_join(abs, "ca.key");
    j->srv_pem = path_join(abs, "server.pem");
    j->srv_key = path_join(abs, "server.key");
    return j->ca_pem && j->ca_key && j->srv_pem && j->srv_key ? ERR_OK : ERR_NOMEM;
}

static int check_args(struct job *j, const char *dir)
{
    if (!dir || !*dir) {
        job_err(j, "no certificate directory given");
        return ERR_INVALID;
    }
    for (size_t i = 0; i < j->n_hosts; i++) {
        if (!certs_is_valid_hostname(j->hosts[i])) {
            job_err(j, "hostname '%s' is not a DNS name or an IP address", j->hosts[i] ? j->hosts[i] : "(null)");
            return ERR_INVALID;
        }
    }
    return ERR_OK;
}

static int ensure_files(struct job *j)
{
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    bool fresh = false;
    int rc = ca_load_or_create(j, &ca, &ca_key, &fresh);
    if (rc)
        goto out;
    const char *why = fresh ? "new CA" : server_stale_reason(j, ca);
    if (why) {
        log_info("certs: issuing server certificate %s (%s)", j->srv_pem, why);
        rc = ca_load_key(j, ca, &ca_key);
        if (rc == ERR_OK)
            rc = server_issue(j, ca, ca_key);
        sync_dir(j->dir);
    }
out:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}

int certs_ensure(const char *dir, const char *const *hostnames, size_t n_hostnames, struct certs_paths *out,
                 char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    ERR_clear_error();
    struct job j = {.hosts = hostnames, .n_hosts = hostnames ? n_hostnames : 0, .err = err, .errlen = errlen};
    int lock = -1;
    int rc = check_args(&j, dir);
    if (rc == ERR_OK)
        rc = mkdir_p(&j, dir);
    if (rc == ERR_OK)
        rc = job_init(&j, dir);
    if (rc == ERR_OK) {
        lock = lock_dir(j.dir);
        rc = ensure_files(&j);
    }
    if (rc == ERR_OK) {
        out->ca_path = j.ca_pem;
        out->cert_path = j.srv_pem;
        out->key_path = j.srv_key;
        j.ca_pem = j.srv_pem = j.srv_key = NULL;
    } else if (rc == ERR_NOMEM && err && errlen && !err[0]) {
        snprintf(err, errlen, "certificates: out of memory");
    }
    if (lock >= 0)
        close(lock);
    free(j.dir);
    free(j.ca_pem);
    free(j.ca_key);
    free(j.srv_pem);
    free(j.srv_key);
    return rc;
}

void certs_paths_cleanup(struct certs_paths *p)
{
    free(p->ca_path);
    free(p->cert_path);
    free(p->key_path);
    p->ca_path = p->cert_path = p->key_path = NULL;
}

int certs_load_ca_pem(const char *ca_path, char **pem, size_t *len)
{
    *pem = NULL;
    *len = 0;
    int rc = ERR_IO;
    char *data = NULL;
    FILE *f = fopen(ca_path, "re");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0)
        goto out;
    rc = ERR_TOO_BIG;
    if (st.st_size > CA_PEM_MAX)
        goto out;
    rc = ERR_NOMEM;
    data = malloc((size_t)st.st_size + 1);
    if (!data)
        goto out;
    size_t n = fread(data, 1, (size_t)st.st_size, f);
    rc = ERR_IO;
    if (ferror(f) || n != (size_t)st.st_size)
        goto out;
    data[n] = '\0';
    *pem = data;
    *len = n;
    data = NULL;
    rc = ERR_OK;
out:
    if (f)
        fclose(f);
    free(data);
    return rc;
}
