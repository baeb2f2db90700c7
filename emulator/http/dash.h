/* dash.h -- the live dashboard's HTTP side (README "Dashboard"): serves the page's static files (compiled
 * into the binary from emulator/dashboard/), GET /emulator/session (a service token for a page opened on
 * this machine), GET /emulator/stats (the hub view's counters), GET /emulator/events (Server-Sent Events:
 * connections, method calls, twin changes, C2D activity and telemetry), and POST
 * /emulator/devices/{id}[/modules/{mid}]/messages (send a C2D message). Everything else the page does goes
 * through the hub's own REST routes with its token. rest.c hands a request here when dash_owns(uri); a
 * stream is a suspended MHD response resumed when an event arrives. Pure parts: dashapi.h.
 * Tests: tests/integration/test_dashboard_api.py (every route over HTTP),
 * tests/integration/dashboard_browser.test.js. */
#ifndef IOTHUB_DASH_H
#define IOTHUB_DASH_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dash;
struct loop;
struct hub;
struct registry;
struct auth;
struct telemetry;
struct c2d;
struct events;

struct dash_config {
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    struct telemetry *telemetry; /* the event log's partitions and consumer groups, the telemetry stream */
    struct c2d *c2d;             /* NULL: the C2D send route answers 404 */
    struct events *events;       /* the hub's live feed; NULL: the stream carries telemetry only */
    const char *host_name;       /* the first --hostname: the audience of the session's token */
    const char *hub_name;
    bool open;                   /* every listener is bound to loopback: a page opened from this machine
                                    gets a token from /emulator/session without a key */
    int64_t token_skew_s;
    void (*wake)(void *ctx);     /* a stream was resumed: drive MHD soon */
    void *wake_ctx;
};

/* Returns NULL on ERR_NOMEM. Strings are copied; the rest must outlive the dash. */
struct dash *dash_new(const struct dash_config *cfg);
/* Call after MHD_stop_daemon (streams are freed by MHD's response cleanup first). Accepts NULL. */
void dash_free(struct dash *d);
/* True when the request-target is the dashboard's (its files or its /emulator/ routes). */
bool dash_owns(const char *uri);
/* The request body cap of a dashboard route. */
size_t dash_body_max(void);
/* Answers one request whose body has been read (body_seen > cap: answered 413). Returns MHD's verdict. */
enum MHD_Result dash_serve(struct dash *d, struct MHD_Connection *conn, const char *method, const char *uri,
                           const uint8_t *body, size_t len, size_t body_seen);
/* Ends every stream (they finish their chunked answer) and refuses new ones: before MHD_stop_daemon. */
void dash_shutdown(struct dash *d);
/* Open streams. */
size_t dash_streams(const struct dash *d);

#endif
