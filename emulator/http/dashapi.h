/* dashapi.h -- the pure half of the dashboard's HTTP surface (README "Dashboard"): which request-targets are
 * the dashboard's (its static files and the /emulator/ routes the page uses), the JSON body of the page's
 * C2D send and the text of one Server-Sent Event (the Host check of the loopback session is browser.h's). No
 * I/O, no libmicrohttpd, no globals: dash.c drives HTTP. Tests: tests/unit/test_dashapi.c; fuzz:
 * tests/fuzz/fuzz_dashapi.c. */
#ifndef IOTHUB_DASHAPI_H
#define IOTHUB_DASHAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "c2d.h"
#include "events.h"

struct eventlog_event;

enum dashapi_kind {
    DASHAPI_NONE,    /* not the dashboard's: the REST routes go on */
    DASHAPI_ASSET,   /* "/" (index.html) or "/dashboard/{file}" */
    DASHAPI_SESSION, /* /emulator/session: how the page authenticates */
    DASHAPI_STATS,   /* /emulator/stats: the hub view's counters */
    DASHAPI_EVENTS,  /* /emulator/events: the live stream (text/event-stream) */
    DASHAPI_C2D,     /* /emulator/devices/{id}[/modules/{mid}]/messages: POST sends a C2D message */
};

struct dashapi_route {
    enum dashapi_kind kind;
    char asset[64];       /* ASSET: the file name ("index.html") */
    char *device_id;      /* C2D: percent-decoded, malloc'd */
    char *module_id;      /* C2D: NULL for a device */
    uint64_t since;       /* EVENTS: ?since=N, replay the kept events after N */
    bool has_since;
    bool malformed;       /* a bad percent-escape in an id (answer 400) */
};

/* Classifies a raw request-target. Never fails on input; ERR_OK or ERR_NOMEM. Free with dashapi_route_cleanup. */
int dashapi_route_parse(const char *uri, struct dashapi_route *out);
void dashapi_route_cleanup(struct dashapi_route *r);
/* The methods a dashboard route serves ("GET", "POST"), for 405 and its Allow header. */
const char *dashapi_allow(enum dashapi_kind kind);

#define DASHAPI_C2D_BODY_MAX (96u * 1024u) /* the JSON of a 64 KiB message body plus its properties */

/* The page's C2D send: {"body":"text", "properties":{"k":"v",...}, "messageId":"...", "correlationId":"...",
 * "contentType":"...", "contentEncoding":"...", "ack":"none|positive|negative|full", "expiryTimeUtc":ms}
 * (only "body" is required). On ERR_OK *m is filled (its body points into *holder, which the caller
 * json_decref's after c2d_send). ERR_INVALID with a message in why (400 ArgumentInvalid); ERR_TOO_BIG (body
 * over C2D_MAX_BODY: 413). */
int dashapi_c2d_parse(const char *text, size_t len, struct c2d_message *m, json_t **holder, char *why,
                      size_t whylen);

/* Appends one SSE record "id: N\nevent: hub\ndata: {json}\n\n" for a hub event. ERR_OK or ERR_NOMEM. */
int dashapi_sse_event(struct buf *out, const struct events_event *ev);
/* Appends "event: telemetry\ndata: {json}\n\n" for a device-to-cloud message, in GET /emulator/telemetry's
 * shape (body, or bodyBase64 when it is not UTF-8 text), the body cut at DASHAPI_TELEMETRY_PREVIEW bytes
 * ("truncated":true). ERR_OK or ERR_NOMEM. */
#define DASHAPI_TELEMETRY_PREVIEW 4096
int dashapi_sse_telemetry(struct buf *out, const struct eventlog_event *ev);

#endif
