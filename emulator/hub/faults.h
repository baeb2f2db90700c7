/* faults.h -- fault injection and throttling, protocol-agnostic (iothub-amqp.md §B.5; README "Testing
 * failures"). Three sources of faults, one store of active faults:
 *  - the SDKs' own protocol: a device-to-cloud message whose application properties carry
 *    AzIoTHub_FaultOperationType / CloseReason / DelayInSecs / DurationInSecs (faults_request_*, faults_d2c);
 *  - the control API (POST/GET/DELETE /emulator/faults, JSON; faults_control_*);
 *  - opt-in throttling at a tier's published limits (--throttle s1|s2|s3|free; faults_throttle_*).
 * A front (MQTT today, HTTPS and AMQP next) asks at a few points and carries out the answer in its own way:
 * at CONNECT (faults_connect), on every D2C message (faults_d2c), on twin operations (faults_throttle_take);
 * REST asks per request (faults_rest, faults_throttle_take). Dropping a connection goes through the hub
 * (hub_link_drop: the device_link's abort or kick op), method-reply faults through the hub's hooks.
 * In memory only. Single-threaded: timers on the loop. Tests: tests/unit/test_faults.c;
 * fuzz: tests/fuzz/fuzz_faults.c. */
#ifndef IOTHUB_FAULTS_H
#define IOTHUB_FAULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct device_link;
struct faults;
struct hub;
struct loop;

/* Returns NULL on ERR_NOMEM. Registers itself in the hub (hub_set_hooks); free before the hub. */
struct faults *faults_new(struct loop *loop, struct hub *hub);
/* Cancels every timer and forgets every fault. Accepts NULL. */
void faults_free(struct faults *f);
/* The SDK protocol on D2C messages (on by default; --no-fault-injection turns it off). The control API and
 * throttling are unaffected. */
void faults_set_sdk_protocol(struct faults *f, bool on);
/* Whether the SDK protocol is honoured (false for NULL). */
bool faults_sdk_protocol(const struct faults *f);

/* ---- the SDK protocol ---- */

enum faults_kind {
    FAULTS_KIND_NONE,
    FAULTS_KIND_KILL_TCP,     /* KillTcp: drop the connection without a goodbye */
    FAULTS_KIND_SHUTDOWN,     /* ShutDownMqtt (ShutDownAmqp once AMQP exists): close it cleanly */
    FAULTS_KIND_THROTTLE,     /* InvokeThrottling */
    FAULTS_KIND_QUOTA,        /* InvokeMaxMessageQuota */
    FAULTS_KIND_AUTH,         /* InvokeAuthError */
    FAULTS_KIND_AMQP,         /* KillAmqp* / ShutDownAmqp: timed here like KillTcp (HOLD, the delay, the re-send
                               * guard, the duration's CONNACK-3-like refusal), carried out by the link's fault
                               * op; a link without one (MQTT) logs and ignores them */
    FAULTS_KIND_UNKNOWN,      /* a type the emulator does not know: logged, ignored */
};

#define FAULTS_MAX_DELAY_S 3600
#define FAULTS_MAX_DURATION_S 3600

/* What one D2C message asks for. type keeps the property's text (printable, truncated) for logs and the
 * AMQP front (which tells KillAmqpSession from KillAmqpD2CLink itself). */
struct faults_request {
    enum faults_kind kind;
    char type[40];
    char reason[96];
    int delay_s;    /* AzIoTHub_FaultOperationDelayInSecs: [0, FAULTS_MAX_DELAY_S], default 0 */
    int duration_s; /* AzIoTHub_FaultOperationDurationInSecs: [0, FAULTS_MAX_DURATION_S], default 0 */
};

/* Resets r (kind NONE). */
void faults_request_init(struct faults_request *r);
/* Feeds one application property (decoded text; value may be NULL). Unrelated keys are ignored; keys match
 * case-insensitively; numbers that do not parse count as 0 and are clamped into range. */
void faults_request_prop(struct faults_request *r, const char *key, const char *value);
/* Feeds a whole URL-encoded property bag "k=v&k2=v2" (MQTT telemetry topics). Returns whether the bag asks
 * for a fault (kind != NONE). */
bool faults_request_from_bag(struct faults_request *r, const char *bag, size_t len);
/* "KillTcp" -> FAULTS_KIND_KILL_TCP ... (case-insensitive); UNKNOWN for anything else. */
enum faults_kind faults_kind_of(const char *type);

/* What a front does with one D2C message. */
enum faults_verdict {
    FAULTS_ACCEPT,        /* normal: record and acknowledge */
    FAULTS_HOLD,          /* a fault message asking for a disconnect: record it but do not acknowledge (MQTT: no
                           * PUBACK), as the hub, which "terminates the connection prior to a PUBACK"; the
                           * connection goes after the delay */
    FAULTS_THROTTLED,     /* refuse: throttled (MQTT: close; HTTP: 429 429001 ThrottlingException) */
    FAULTS_QUOTA_EXCEEDED,/* refuse: daily quota (MQTT: close; HTTP: 403 403002 IotHubQuotaExceeded) */
    FAULTS_UNAUTHORIZED,  /* refuse: auth error (MQTT: close; HTTP: 401 401002 IotHubUnauthorizedAccess) */
};

/* One D2C message on link (online). req is the message's request (NULL or kind NONE: an ordinary message):
 * schedules the fault it asks for, when the SDK protocol is on. Then applies the identity's active faults and
 * the D2C throttle. Logs each fault at info level. */
enum faults_verdict faults_d2c(struct faults *f, struct device_link *link, const struct faults_request *req);

/* ---- connects ---- */

/* How a front refuses a connect (MQTT CONNACK return codes; AMQP and HTTP map them to their own). */
#define FAULTS_REFUSE_UNAVAILABLE 3 /* server unavailable (refuse-connect faults, the connect throttle) */
#define FAULTS_REFUSE_AUTH 5        /* not authorized (InvokeAuthError, expired tokens, refuse-connect 5) */

/* An authenticated connect of identity ("device" or "device/module") with a SAS token expiring at token_se:
 * 0 to accept, or a FAULTS_REFUSE_* code with a reason for the log in why. Takes a connect token when
 * throttling is on. */
int faults_connect(struct faults *f, const char *identity, int64_t token_se, char *why, size_t whylen);

/* ---- method replies (the hub asks through its hooks) ---- */

enum faults_reply { FAULTS_REPLY_PASS, FAULTS_REPLY_DELAY, FAULTS_REPLY_DROP };
/* What to do with identity's reply to a direct method: pass it on, hold it *delay_ms, or drop it (the caller
 * then gets the hub's 504 at its responseTimeoutInSeconds). */
enum faults_reply faults_method_reply(struct faults *f, const char *identity, int64_t *delay_ms);

/* ---- throttling ---- */

enum faults_op {
    FAULTS_OP_CONNECT,  /* new device connections */
    FAULTS_OP_D2C,      /* device-to-cloud sends */
    FAULTS_OP_METHOD,   /* direct methods, metered in 4 KB blocks of payload */
    FAULTS_OP_TWIN_READ,
    FAULTS_OP_TWIN_UPDATE,
    FAULTS_OP_REGISTRY, /* identity registry operations (create, retrieve, list, update, delete) */
    FAULTS_OP_QUERY,
    FAULTS_OPS
};

/* "s1", "s2", "s3" or "free" (case-insensitive); NULL or "" or "off" turns throttling off. Returns ERR_OK or
 * ERR_INVALID (unknown tier). */
int faults_set_throttle(struct faults *f, const char *tier);
/* Takes units tokens of op's bucket (1 for most; METHOD: 4 KB blocks of payload). True when allowed (always
 * when throttling is off); false when over the limit, with *retry_after_s the seconds until it would be
 * allowed (>= 1). */
bool faults_throttle_take(struct faults *f, enum faults_op op, unsigned units, int *retry_after_s);
/* [{"operation","limit","per","burst"}...] of the tier in force ("tier":null when off). New reference. */
json_t *faults_throttle_json(const struct faults *f);

/* ---- REST faults ---- */

/* One REST request (method "GET", path without the query). True when an injected REST fault answers it:
 * *status (429, 500 or 503) and *retry_after_s (0: no Retry-After header) are filled. /emulator/ routes and
 * /health are never faulted (the caller does not ask for them). */
bool faults_rest(struct faults *f, const char *method, const char *path, int *status, int *retry_after_s);

/* ---- the control API ---- */

/* POST /emulator/faults: adds the fault that body (JSON) describes; see README "Testing failures". Returns
 * ERR_OK with *out the new fault's description (new reference), or ERR_INVALID with a one-line reason in err
 * (400), or ERR_NOMEM. Carried out at once where it acts now ("drop", "expireToken"). */
int faults_control_add(struct faults *f, const char *body, size_t len, json_t **out, char *err, size_t errlen);
/* GET /emulator/faults: {"faults":[...active...],"sdkProtocol":bool,"throttle":{...}}. New reference. */
json_t *faults_control_list(struct faults *f);
/* DELETE /emulator/faults (id 0: every fault) or /emulator/faults/{id}. Returns how many were removed. */
size_t faults_control_clear(struct faults *f, uint64_t id);

#endif
