/* rest.h -- the service REST API (direct methods, identity registry, health, the dev CA) on libmicrohttpd,
 * driven from the emulator's own event loop: MHD in epoll mode without threads, its epoll fd registered in
 * the loop, a loop timer from MHD_get_timeout. A method call waiting for a device is a suspended MHD
 * connection, resumed when the hub answers. Pure request/response logic lives in restapi.h.
 * Tests: tests/unit/test_restapi.c (pure parts), tests/unit/test_rest_http.c (end to end). */
#ifndef IOTHUB_REST_H
#define IOTHUB_REST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto.h"

struct rest;
struct loop;
struct hub;
struct registry;
struct auth;
struct c2d;
struct jobs;
struct events;

struct rest_config {
    struct loop *loop;
    struct hub *hub;
    struct registry *reg;
    struct auth *auth;
    const char *bind;        /* listen address of the plain-HTTP dev port, e.g. "127.0.0.1" (NULL: 127.0.0.1) */
    int http_port;           /* plain-HTTP dev port; 0: no listener (rest_add_connection only); < 0: any free port */
    const char *ca_pem_path; /* served as GET /emulator/ca.pem, read per request; NULL: 404 */
    int64_t token_skew_s;    /* grace after a SAS token's se */
    struct telemetry *telemetry; /* served as GET/DELETE /emulator/telemetry; NULL: 404 */
    int head_timeout_s;      /* a connection's first request line + headers must arrive within this; 0: 30 */
    int idle_timeout_s;      /* a keep-alive connection with no request in progress closes after; 0: 240 */
    unsigned max_connections; /* MHD's own ceiling (net enforces --max-connections before it); 0: 20000 */
    struct faults *faults;       /* /emulator/faults, injected REST faults and throttling; NULL: none */
    struct c2d *c2d;             /* C2D queues: DELETE /devices/{id}/commands, cloudToDeviceMessageCount */
    struct jobs *jobs;           /* /jobs/v2 and FROM devices.jobs; NULL: 404 / no rows */
    /* The dashboard (dash.h): its page at "/" and its /emulator/ routes. */
    struct events *events;       /* the hub's live feed for its stream; NULL: telemetry only */
    const char *host_name;       /* the first --hostname (NULL: 127.0.0.1) */
    /* Every --hostname: names a browser's Host may use on the /emulator routes without authorization
     * (browser.h). n_host_names 0: host_name only. */
    const char *const *host_names;
    size_t n_host_names;
    const char *hub_name;        /* NULL: "iothub" */
    bool dashboard_open;         /* every listener is on loopback: a local page needs no key */
};

/* Starts the daemon and registers it in cfg->loop. The rest does not own loop, hub, registry or auth; they
 * must outlive it. Strings in cfg are copied. Returns NULL with a one-line reason in err. */
struct rest *rest_new(const struct rest_config *cfg, char *err, size_t errlen);

/* The direct-method front (rest_front.c) for net_config.http: POST .../methods served without MHD, any other
 * request handed on to rest_add_connection through net. Valid until rest_free. */
const struct proto *rest_front(struct rest *r);

/* Hands MHD an accepted plaintext connection (the TLS front end's end of a socketpair). Takes ownership of
 * fd in every case (closed on failure). Returns ERR_OK, or ERR_NOMEM / ERR_CLOSED (after rest_shutdown). */
int rest_add_connection(struct rest *r, int fd, const struct sockaddr *addr, socklen_t len);

/* Connection state for eviction at the connection limit: the monotonic ms (loop_now_ms) since which the MHD
 * connection on fd has been idle (waiting for a request, or for the rest of a request's head), or -1 when it
 * is busy with a request (a method call waiting for its device included) or unknown. */
int64_t rest_idle_since(struct rest *r, int fd);

/* Stops accepting on the dev port, answers every waiting method call 503 (cancelling it in the hub) and
 * every later request 503. After this call rest never calls the hub again. Idempotent. */
void rest_shutdown(struct rest *r);

/* Closes every connection and frees the daemon; pending hub calls are cancelled first. Accepts NULL.
 * Call before freeing the hub or the loop. */
void rest_free(struct rest *r);

/* The bound plain-HTTP port (useful with http_port < 0), or 0 when there is no listener. */
int rest_actual_http_port(struct rest *r);
/* The AMQP listeners' ports (-1: not listening), reported by GET /health as "amqpsPort" / "amqpPort". */
void rest_set_amqp_ports(struct rest *r, int amqps_port, int amqp_port);

#endif
