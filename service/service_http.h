/* service_http.h -- one HTTP exchange over a reused libcurl easy handle: method, URL, headers, body in;
 * status, capped body, the iothub-errorcode header and curl's error out. No retries and no IoT Hub
 * knowledge (service_client.c has both). Internal to service/. */
#ifndef IOTHUB_SERVICE_HTTP_H
#define IOTHUB_SERVICE_HTTP_H

#include <curl/curl.h>

#include "buf.h"
#include "service_result.h"

#define SERVICE_HTTP_MAX_BODY (8u * 1024 * 1024)
#define SERVICE_HTTP_CONNECT_TIMEOUT_MS 10000L

struct service_http_request {
    const char *method;               /* "GET", "PUT", "POST", "DELETE" */
    const char *url;
    const struct curl_slist *headers;
    const char *body;                 /* NUL-terminated; NULL sends none */
    long timeout_ms;                  /* the whole exchange */
    const char *ca_file;              /* NULL = system store */
};

struct service_http_response {
    long status;            /* 0 when no HTTP answer arrived */
    struct buf body;        /* capped at SERVICE_HTTP_MAX_BODY */
    char errorcode[128];    /* the iothub-errorcode header of the final answer, "" when absent */
    char *continuation;     /* the x-ms-continuation header of a query page, whole (malloc'd; NULL when absent:
                               the last page has none) */
    CURLcode curl_code;
    char curl_error[CURL_ERROR_SIZE];
    int connected;          /* a connection was established (and TLS done) before the failure */
    int too_big;            /* the body went over the cap */
};

void service_http_response_init(struct service_http_response *r);
void service_http_response_cleanup(struct service_http_response *r);

/* Performs the exchange on curl (reset first; connections are kept for reuse). Returns ERR_OK when an
 * HTTP answer arrived (any status), ERR_IO when not (resp->curl_code and curl_error say why), ERR_TOO_BIG
 * when the body exceeded the cap, ERR_NOMEM. resp is reset on entry. */
int service_http_perform(CURL *curl, const struct service_http_request *req, struct service_http_response *resp);

/* Which kind of transport failure a curl code is; connected tells a connect timeout from a slow answer. */
enum service_client_net service_http_classify(CURLcode code, int connected);

#endif
