/* device_link.h -- how the hub core reaches one connected identity, whatever protocol carries it: a small
 * operations table the front implements (the MQTT session today; AMQP device links next). The hub never
 * includes a front's header; a front embeds a struct device_link in its per-connection state and hands the
 * hub a pointer to it (hub_link_online and friends in hub.h). */
#ifndef IOTHUB_DEVICE_LINK_H
#define IOTHUB_DEVICE_LINK_H

#include <stddef.h>
#include <stdint.h>

struct device_link;
struct c2d_message;

struct device_link_ops {
    /* Delivers a direct-method request (len 0 = empty body). Writes the request id the device will answer with
     * into rid (>= 17 bytes). Returns ERR_OK or an error (the call is then not delivered). */
    int (*deliver_method)(struct device_link *l, const char *method, const uint8_t *payload, size_t len,
                          char *rid);
    /* Pushes a desired-properties patch (compact JSON object, "$version" included) with its version. Returns
     * ERR_OK, or an error when it could not be queued. */
    int (*push_desired)(struct device_link *l, const uint8_t *patch, size_t len, int64_t version);
    /* Delivers a cloud-to-device message (c2d.h); the device completes it later (c2d_complete with m->seq).
     * Returns ERR_OK or an error (the message then stays queued). NULL when the front cannot carry C2D. */
    int (*deliver_c2d)(struct device_link *l, const struct c2d_message *m);
    /* Closes the connection (takeover, identity disabled or deleted); reason is logged. */
    void (*kick)(struct device_link *l, const char *reason);
    /* Drops the connection without a goodbye, as a network failure would (fault injection: KillTcp; MQTT: a TCP
     * RST, nothing flushed). May be NULL: the hub then kicks. */
    void (*abort)(struct device_link *l, const char *reason);
    /* Carries out a fault-injection type the hub leaves to the front (faults.h FAULTS_KIND_AMQP: KillAmqpSession,
     * KillAmqpD2CLink, ShutDownAmqp...), after its delay; type is the AzIoTHub_FaultOperationType text. May be
     * NULL (MQTT): such types are then logged and ignored. */
    void (*fault)(struct device_link *l, const char *type, const char *reason);
};

struct device_link {
    const struct device_link_ops *ops;
    const char *identity; /* "device1" or "device1/module1"; valid while the link is online */
};

#endif
