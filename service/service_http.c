/* service_http.c -- one HTTP exchange on libcurl (see service_http.h). Layer: service library, under
 * service_client.c. TLS peer and host verification stay on (curl's defaults); only http and https. */
#include "service_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

void service_http_response_init(struct service_http_response *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, SERVICE_HTTP_MAX_BODY);
}

void service_http_response_cleanup(struct service_http_response *r)
{
    buf_cleanup(&r->body);
    free(r->continuation);
    r->continuation = NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct service_http_response *r = ctx;
    if (buf_append(&r->body, p, size * n)) {
        r->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return size * n;
}

/* The value of header line p[0..len) into *v, *vlen (blanks trimmed) when it is named name (with its colon). */
static int header_value(const char *p, size_t len, const char *name, const char **v, size_t *vlen)
{
    size_t nlen = strlen(name);
    if (len <= nlen || strncasecmp(p, name, nlen) != 0)
        return 0;
    *v = p + nlen;
    *vlen = len - nlen;
    while (*vlen > 0 && (**v == ' ' || **v == '\t'))
        ++*v, --*vlen;
    while (*vlen > 0 && ((*v)[*vlen - 1] == '\r' || (*v)[*vlen - 1] == '\n' || (*v)[*vlen - 1] == ' '))
        --*vlen;
    return 1;
}

/* Keeps the iothub-errorcode and x-ms-continuation headers of the last response (a new status line clears
 * them). The continuation is kept whole (the hub sends it back as it was); no memory aborts the transfer. */
static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    struct service_http_response *r = ctx;
    size_t len = size * n, vlen;
    const char *v;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->errorcode[0] = '\0';
        free(r->continuation);
        r->continuation = NULL;
    } else if (header_value(p, len, "x-ms-continuation:", &v, &vlen)) {
        free(r->continuation);
        r->continuation = vlen ? strndup(v, vlen) : NULL; /* empty: no next page (else the first, forever) */
        if (vlen && !r->continuation)
            return 0; /* CURLE_WRITE_ERROR */
    } else if (header_value(p, len, "iothub-errorcode:", &v, &vlen)) {
        if (vlen >= sizeof r->errorcode)
            vlen = sizeof r->errorcode - 1; /* a code is a short word; longer is not the hub's */
        memcpy(r->errorcode, v, vlen);
        r->errorcode[vlen] = '\0';
    }
    return len;
}

static void set_method(CURL *curl, const struct service_http_request *req)
{
    if (strcmp(req->method, "GET") == 0)
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    else if (strcmp(req->method, "POST") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req->body));
    } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
}

static void set_options(CURL *curl, const struct service_http_request *req, struct service_http_response *resp)
{
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, SERVICE_HTTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, resp->curl_error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, resp);
    if (req->ca_file)
        curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_file);
    set_method(curl, req);
}

int service_http_perform(CURL *curl, const struct service_http_request *req, struct service_http_response *resp)
{
    buf_cleanup(&resp->body);
    resp->status = 0;
    resp->errorcode[0] = '\0';
    free(resp->continuation);
    resp->continuation = NULL;
    resp->curl_error[0] = '\0';
    resp->connected = 0;
    resp->too_big = 0;
    set_options(curl, req, resp);
    resp->curl_code = curl_easy_perform(curl);
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    resp->connected = pretransfer > 0;
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    if (resp->curl_code == CURLE_WRITE_ERROR && resp->too_big) {
        snprintf(resp->curl_error, sizeof resp->curl_error, "the answer is larger than %u bytes",
                 SERVICE_HTTP_MAX_BODY);
        return ERR_TOO_BIG;
    }
    if (resp->curl_code != CURLE_OK) {
        if (!resp->curl_error[0])
            snprintf(resp->curl_error, sizeof resp->curl_error, "%s", curl_easy_strerror(resp->curl_code));
        return ERR_IO;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    return ERR_OK;
}

enum service_client_net service_http_classify(CURLcode code, int connected)
{
    switch (code) {
    case CURLE_OK: return SERVICE_CLIENT_NET_NONE;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return SERVICE_CLIENT_NET_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return connected ? SERVICE_CLIENT_NET_TIMEOUT : SERVICE_CLIENT_NET_CONNECT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return SERVICE_CLIENT_NET_TLS;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return SERVICE_CLIENT_NET_RESET;
    default: return SERVICE_CLIENT_NET_OTHER;
    }
}
