/* test_faults.c -- unit tests for emulator/hub/faults (fault injection and throttling) with a real loop, hub and
 * in-memory registry, and fake device links that count kicks and aborts: the property parser (URL-encoded bags,
 * case, bad and huge numbers, unknown and AMQP types), each SDK fault kind's verdicts and timing, the re-send
 * guard, --no-fault-injection, a link going offline cancelling its drop, the control API (every fault, list,
 * clear, bad bodies), REST faults (count, route pattern, method), method-reply policies through the hub's hooks,
 * and the token buckets of --throttle s1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "device_link.h"
#include "err.h"
#include "faults.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "registry.h"

#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define KEY2 "o3n2kNtseykan6fegXZR4qvojQLdAWHWxZ8yTFseCak="

struct fake {
    struct device_link link;
    int kicks, aborts;
    char ident[64];
};

static int fake_deliver(struct device_link *l, const char *m, const uint8_t *p, size_t n, char *rid)
{
    snprintf(rid, 17, "1");
    return ERR_OK;
}

static int fake_push(struct device_link *l, const uint8_t *p, size_t n, int64_t v)
{
    return ERR_OK;
}

static void fake_kick(struct device_link *l, const char *reason)
{
    ((struct fake *)l)->kicks++;
}

static void fake_abort(struct device_link *l, const char *reason)
{
    ((struct fake *)l)->aborts++;
}

static const struct device_link_ops fake_ops = {
    .deliver_method = fake_deliver, .push_desired = fake_push, .kick = fake_kick, .abort = fake_abort};

static char front_fault[64];
static void fake_fault(struct device_link *l, const char *type, const char *reason)
{
    snprintf(front_fault, sizeof front_fault, "%s", type);
}

/* An AMQP-like front: carries out the AMQP fault kinds itself. */
static const struct device_link_ops fake_amqp_ops = {.deliver_method = fake_deliver, .push_desired = fake_push,
                                                     .kick = fake_kick, .abort = fake_abort, .fault = fake_fault};

static struct {
    struct loop *loop;
    struct registry *reg;
    struct hub *hub;
    struct faults *f;
    struct fake dev;
} E;

static void on_stop(struct loop *l, void *ctx)
{
    loop_stop(l);
}

/* Runs the loop for about ms milliseconds (timers due meanwhile fire). */
static void spin(int64_t ms)
{
    assert_non_null(loop_timer_add(E.loop, ms, on_stop, NULL));
    assert_int_equal(loop_run(E.loop), ERR_OK);
}

static int setup(void **state)
{
    char err[256];
    log_set_level(LOG_LEVEL_ERROR);
    E.loop = loop_new();
    E.reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    assert_int_equal(registry_ensure_device(E.reg, "device1", KEY1, KEY2), ERR_OK);
    E.hub = hub_new(E.loop, E.reg);
    E.f = faults_new(E.loop, E.hub);
    assert_non_null(E.f);
    memset(&E.dev, 0, sizeof E.dev);
    snprintf(E.dev.ident, sizeof E.dev.ident, "device1");
    E.dev.link = (struct device_link){.ops = &fake_ops, .identity = E.dev.ident};
    assert_int_equal(hub_link_online(E.hub, &E.dev.link, "device1", NULL), ERR_OK);
    return 0;
}

static int teardown(void **state)
{
    hub_link_offline(E.hub, &E.dev.link);
    faults_free(E.f);
    hub_free(E.hub);
    loop_free(E.loop);
    struct db *db = registry_db(E.reg);
    registry_free(E.reg);
    db_close(db);
    return 0;
}

static struct faults_request bag(const char *text)
{
    struct faults_request r;
    faults_request_from_bag(&r, text, strlen(text));
    return r;
}

/* ---- the property parser ---- */

static void test_bag_parsing(void **state)
{
    struct faults_request r = bag("$.ct=application%2Fjson&AzIoTHub_FaultOperationType=KillTcp&"
                                  "AzIoTHub_FaultOperationCloseReason=%20severs%20the%20TCP%20connection%20&"
                                  "AzIoTHub_FaultOperationDelayInSecs=2&AzIoTHub_FaultOperationDurationInSecs=%205%20");
    assert_int_equal(r.kind, FAULTS_KIND_KILL_TCP);
    assert_string_equal(r.type, "KillTcp");
    assert_string_equal(r.reason, " severs the TCP connection ");
    assert_int_equal(r.delay_s, 2);
    assert_int_equal(r.duration_s, 5);

    r = bag("azIOThub_faultoperationtype=shutdownmqtt&AzIoTHub_FaultOperationDelayInSecs=x1");
    assert_int_equal(r.kind, FAULTS_KIND_SHUTDOWN);
    assert_int_equal(r.delay_s, 0); /* not a number: 0 */
    r = bag("AzIoTHub_FaultOperationType=InvokeThrottling&AzIoTHub_FaultOperationDurationInSecs=99999999999999");
    assert_int_equal(r.kind, FAULTS_KIND_THROTTLE);
    assert_int_equal(r.duration_s, FAULTS_MAX_DURATION_S);
    assert_int_equal(bag("AzIoTHub_FaultOperationType=KillAmqpSession").kind, FAULTS_KIND_AMQP);
    assert_int_equal(bag("AzIoTHub_FaultOperationType=Explode").kind, FAULTS_KIND_UNKNOWN);
    assert_int_equal(bag("AzIoTHub_FaultOperationType").kind, FAULTS_KIND_UNKNOWN); /* no value */
    r = bag("AzIoTHub_FaultOperationType=Kill%0aTcp");
    assert_string_equal(r.type, "Kill?Tcp"); /* a control character never reaches a log line */
    assert_false(faults_request_from_bag(&r, "a=b&c=d", 7));
    assert_false(faults_request_from_bag(&r, "AzIoTHub_FaultOperationType=%zz", 31));
    assert_false(faults_request_from_bag(&r, NULL, 0));
}

/* ---- the SDK protocol ---- */

static void test_kill_tcp_holds_then_aborts_after_the_delay(void **state)
{
    struct faults_request r = bag("AzIoTHub_FaultOperationType=KillTcp&AzIoTHub_FaultOperationDelayInSecs=0");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_HOLD);
    assert_int_equal(E.dev.aborts, 0); /* not inside the call: after the delay, on the loop */
    spin(20);
    assert_int_equal(E.dev.aborts, 1);
    assert_int_equal(E.dev.kicks, 0);
    assert_null(hub_link_of(E.hub, "device1")); /* taken offline first */
    /* The SDK re-sends the same message on its next connection: acknowledged, not repeated. */
    assert_int_equal(hub_link_online(E.hub, &E.dev.link, "device1", NULL), ERR_OK);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_ACCEPT);
    spin(20);
    assert_int_equal(E.dev.aborts, 1);
    /* A different request is carried out. */
    struct faults_request other = bag("AzIoTHub_FaultOperationType=KillTcp&AzIoTHub_FaultOperationCloseReason=b");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &other), FAULTS_HOLD);
    spin(20);
    assert_int_equal(E.dev.aborts, 2);
}

static void test_shutdown_kicks_and_duration_refuses_connects(void **state)
{
    /* 3 s: the refusal is checked right after the drop, with room for a loaded machine in between. */
    struct faults_request r = bag("AzIoTHub_FaultOperationType=ShutDownMqtt&AzIoTHub_FaultOperationDurationInSecs=3");
    char why[128];
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_HOLD);
    spin(20);
    assert_int_equal(E.dev.kicks, 1);
    assert_int_equal(E.dev.aborts, 0);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), FAULTS_REFUSE_UNAVAILABLE);
    assert_int_equal(faults_connect(E.f, "device2", 0, why, sizeof why), 0); /* another identity is unaffected */
    spin(3050);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), 0);
}

static void test_throttle_quota_auth_windows(void **state)
{
    char why[128];
    struct faults_request t = bag("AzIoTHub_FaultOperationType=InvokeThrottling&AzIoTHub_FaultOperationDurationInSecs=1");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &t), FAULTS_ACCEPT); /* the fault message itself */
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_THROTTLED);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), 0);
    spin(1050);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_ACCEPT);

    struct faults_request q = bag("AzIoTHub_FaultOperationType=InvokeMaxMessageQuota&"
                                  "AzIoTHub_FaultOperationDelayInSecs=1&AzIoTHub_FaultOperationDurationInSecs=1");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &q), FAULTS_ACCEPT);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_ACCEPT); /* still within the delay */
    spin(1050);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_QUOTA_EXCEEDED);
    spin(1000);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_ACCEPT);

    struct faults_request a = bag("AzIoTHub_FaultOperationType=InvokeAuthError&AzIoTHub_FaultOperationDurationInSecs=5");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &a), FAULTS_ACCEPT);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_UNAUTHORIZED);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), FAULTS_REFUSE_AUTH);
    assert_int_equal(faults_control_clear(E.f, 0), 1);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), 0);

    /* No duration: nothing to do. AMQP kinds and unknown kinds: ignored here. */
    struct faults_request z = bag("AzIoTHub_FaultOperationType=InvokeThrottling");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &z), FAULTS_ACCEPT);
    struct faults_request amqp = bag("AzIoTHub_FaultOperationType=KillAmqpD2CLink");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &amqp), FAULTS_ACCEPT);
    json_t *list = faults_control_list(E.f);
    assert_int_equal(json_array_size(json_object_get(list, "faults")), 0);
    json_decref(list);
}

static void test_sdk_protocol_off(void **state)
{
    faults_set_sdk_protocol(E.f, false);
    struct faults_request r = bag("AzIoTHub_FaultOperationType=KillTcp");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_ACCEPT);
    spin(20);
    assert_int_equal(E.dev.aborts, 0);
    /* The control API still works. */
    const char *body = "{\"fault\":\"drop\",\"deviceId\":\"device1\"}";
    json_t *out = NULL;
    char err[256];
    assert_int_equal(faults_control_add(E.f, body, strlen(body), &out, err, sizeof err), ERR_OK);
    assert_true(json_is_true(json_object_get(out, "dropped")));
    json_decref(out);
    assert_int_equal(E.dev.aborts, 1);
}

static void test_offline_link_cancels_its_drop(void **state)
{
    struct faults_request r = bag("AzIoTHub_FaultOperationType=KillTcp&AzIoTHub_FaultOperationDelayInSecs=1");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_HOLD);
    hub_link_offline(E.hub, &E.dev.link); /* the device went away first */
    spin(1100);
    assert_int_equal(E.dev.aborts, 0);
}

static void test_amqp_kinds_are_timed_here_and_left_to_the_front(void **state)
{
    struct faults_request r = bag("AzIoTHub_FaultOperationType=KillAmqpSession&AzIoTHub_FaultOperationDelayInSecs=0");
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_ACCEPT); /* an MQTT-like link: ignored */
    spin(20);
    assert_int_equal(E.dev.aborts + E.dev.kicks, 0);
    E.dev.link.ops = &fake_amqp_ops;
    front_fault[0] = '\0';
    assert_int_equal(faults_d2c(E.f, &E.dev.link, &r), FAULTS_HOLD);
    assert_string_equal(front_fault, "");
    spin(20);
    assert_string_equal(front_fault, "KillAmqpSession");
    assert_int_equal(E.dev.aborts + E.dev.kicks, 0); /* the front decides what goes */
    assert_non_null(hub_link_of(E.hub, "device1"));
}

/* ---- the control API ---- */

static int add(const char *body, json_t **out)
{
    char err[256];
    *out = NULL;
    return faults_control_add(E.f, body, strlen(body), out, err, sizeof err);
}

static void test_control_bad_bodies(void **state)
{
    json_t *out;
    const char *bad[] = {
        "", "[]", "{\"fault\":1}", "{\"fault\":\"nonsense\",\"deviceId\":\"device1\"}",
        "{\"fault\":\"refuseConnect\"}", "{\"fault\":\"refuseConnect\",\"deviceId\":\"d 1\",\"seconds\":1}",
        "{\"fault\":\"refuseConnect\",\"deviceId\":\"device1\"}",
        "{\"fault\":\"refuseConnect\",\"deviceId\":\"device1\",\"seconds\":1,\"connack\":4}",
        "{\"fault\":\"refuseConnect\",\"deviceId\":\"device1\",\"seconds\":1.5}",
        "{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":5}",
        "{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":5,\"delayMs\":5,\"blackhole\":true}",
        "{\"fault\":\"rest\",\"status\":404}", "{\"fault\":\"rest\",\"route\":\"/emulator/*\"}",
        "{\"fault\":\"rest\",\"count\":0}", "{\"fault\":\"rest\",\"method\":\"\"}",
        "{\"fault\":\"drop\",\"deviceId\":\"device1\",\"abrupt\":\"yes\"}",
        "{\"fault\":\"KillTcp\",\"deviceId\":\"ghost\"}", "{\"fault\":\"InvokeThrottling\",\"deviceId\":\"device1\"}",
        "{\"fault\":\"KillAmqpSession\",\"deviceId\":\"device1\"}",
        "{\"fault\":\"rest\",\"fault\":\"rest\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(add(bad[i], &out), ERR_INVALID);
        assert_null(out);
    }
    assert_int_equal(E.dev.aborts + E.dev.kicks, 0);
}

static void test_control_faults_list_clear(void **state)
{
    json_t *out;
    char why[128];
    assert_int_equal(add("{\"fault\":\"refuseConnect\",\"deviceId\":\"device1\",\"seconds\":60,\"connack\":5}", &out),
                     ERR_OK);
    json_int_t id = json_integer_value(json_object_get(out, "id"));
    assert_string_equal(json_string_value(json_object_get(out, "fault")), "refuseConnect");
    json_decref(out);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), 5);
    assert_int_equal(add("{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":60,\"delayMs\":250}", &out),
                     ERR_OK);
    json_decref(out);
    int64_t delay = 0;
    assert_int_equal(faults_method_reply(E.f, "device1", &delay), FAULTS_REPLY_DELAY);
    assert_int_equal(delay, 250);
    assert_int_equal(faults_method_reply(E.f, "device1/mod", &delay), FAULTS_REPLY_PASS);
    assert_int_equal(add("{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":60,\"blackhole\":true}", &out),
                     ERR_OK);
    json_decref(out);
    assert_int_equal(faults_method_reply(E.f, "device1", &delay), FAULTS_REPLY_DROP);
    assert_int_equal(add("{\"fault\":\"KillTcp\",\"deviceId\":\"device1\",\"delaySeconds\":60}", &out), ERR_OK);
    assert_true(json_is_true(json_object_get(out, "abrupt")));
    json_decref(out);

    json_t *list = faults_control_list(E.f);
    assert_int_equal(json_array_size(json_object_get(list, "faults")), 4);
    assert_true(json_is_true(json_object_get(list, "sdkProtocol")));
    assert_true(json_is_null(json_object_get(json_object_get(list, "throttle"), "tier")));
    json_decref(list);
    assert_int_equal(faults_control_clear(E.f, (uint64_t)id), 1);
    assert_int_equal(faults_control_clear(E.f, (uint64_t)id), 0);
    assert_int_equal(faults_connect(E.f, "device1", 0, why, sizeof why), 0);
    assert_int_equal(faults_control_clear(E.f, 0), 3);
    spin(20);
    assert_int_equal(E.dev.aborts, 0); /* the cleared KillTcp never fires */
}

static void test_control_expire_token(void **state)
{
    char why[128];
    json_t *out;
    assert_int_equal(faults_connect(E.f, "device1", 5000000000LL, why, sizeof why), 0); /* remembers the se */
    assert_int_equal(add("{\"fault\":\"expireToken\",\"deviceId\":\"device1\"}", &out), ERR_OK);
    json_decref(out);
    assert_int_equal(E.dev.kicks, 1); /* closed as at a token's expiry */
    assert_int_equal(faults_connect(E.f, "device1", 5000000000LL, why, sizeof why), FAULTS_REFUSE_AUTH);
    assert_int_equal(faults_connect(E.f, "device1", 5000000001LL, why, sizeof why), 0); /* a renewed token */
}

static void test_rest_faults(void **state)
{
    json_t *out;
    int status = 0, retry = 0;
    assert_int_equal(add("{\"fault\":\"rest\",\"count\":2,\"status\":429,\"retryAfter\":3,\"route\":\"/devices/*\","
                         "\"method\":\"GET\"}",
                         &out),
                     ERR_OK);
    json_decref(out);
    assert_false(faults_rest(E.f, "PUT", "/devices/a", &status, &retry));
    assert_false(faults_rest(E.f, "GET", "/twins/a/methods", &status, &retry));
    assert_true(faults_rest(E.f, "get", "/devices/a", &status, &retry));
    assert_int_equal(status, 429);
    assert_int_equal(retry, 3);
    assert_true(faults_rest(E.f, "GET", "/devices/b/modules/m", &status, &retry));
    assert_false(faults_rest(E.f, "GET", "/devices/a", &status, &retry)); /* count used up */
    assert_int_equal(add("{\"fault\":\"rest\",\"status\":500}", &out), ERR_OK); /* default: the next 1 call, any */
    assert_int_equal(json_integer_value(json_object_get(out, "retryAfter")), 0);
    json_decref(out);
    assert_true(faults_rest(E.f, "POST", "/twins/x/methods", &status, &retry));
    assert_int_equal(status, 500);
    assert_int_equal(retry, 0);
    assert_false(faults_rest(E.f, "POST", "/twins/x/methods", &status, &retry));
    assert_int_equal(add("{\"fault\":\"rest\",\"seconds\":1}", &out), ERR_OK); /* every call for a second */
    json_decref(out);
    for (int i = 0; i < 5; i++)
        assert_true(faults_rest(E.f, "GET", "/devices", &status, &retry));
    assert_int_equal(status, 503);
    spin(1050);
    assert_false(faults_rest(E.f, "GET", "/devices", &status, &retry));
}

/* ---- method replies through the hub ---- */

static int results;
static struct hub_call_result last;

static void on_result(void *ctx, const struct hub_call_result *r)
{
    results++;
    last = *r;
}

static uint64_t start_call(void)
{
    struct hub_call_request req = {.device_id = "device1", .method_name = "m", .response_timeout_s = 5};
    struct hub_call_result now;
    hub_link_methods_ready(E.hub, &E.dev.link);
    uint64_t id = hub_call_start(E.hub, &req, on_result, NULL, &now);
    assert_true(id > 0);
    return id;
}

static void test_hub_holds_and_drops_replies(void **state)
{
    json_t *out;
    results = 0;
    assert_int_equal(add("{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":60,\"delayMs\":100}", &out),
                     ERR_OK);
    json_decref(out);
    start_call();
    hub_link_method_reply(E.hub, &E.dev.link, "1", 200, (const uint8_t *)"{}", 2);
    assert_int_equal(results, 0);
    hub_link_offline(E.hub, &E.dev.link); /* a held answer survives the device going away */
    spin(150);
    assert_int_equal(results, 1);
    assert_int_equal(last.outcome, HUB_CALL_ANSWERED);
    assert_int_equal(last.status, 200);

    faults_control_clear(E.f, 0);
    assert_int_equal(hub_link_online(E.hub, &E.dev.link, "device1", NULL), ERR_OK);
    assert_int_equal(add("{\"fault\":\"methodReplies\",\"deviceId\":\"device1\",\"seconds\":60,\"blackhole\":true}", &out),
                     ERR_OK);
    json_decref(out);
    uint64_t id = start_call();
    hub_link_method_reply(E.hub, &E.dev.link, "1", 200, (const uint8_t *)"{}", 2);
    assert_int_equal(results, 1);
    hub_call_cancel(E.hub, id); /* (it would time out with 504 after 5 s) */
}

/* ---- throttling ---- */

static void test_throttle_buckets(void **state)
{
    int retry = 0;
    assert_true(faults_throttle_take(E.f, FAULTS_OP_REGISTRY, 1, &retry)); /* off by default */
    assert_int_equal(faults_set_throttle(E.f, "S9"), ERR_INVALID);
    assert_int_equal(faults_set_throttle(E.f, "S1"), ERR_OK);
    for (int i = 0; i < 100; i++)
        assert_true(faults_throttle_take(E.f, FAULTS_OP_REGISTRY, 1, &retry));
    assert_false(faults_throttle_take(E.f, FAULTS_OP_REGISTRY, 1, &retry));
    assert_int_equal(retry, 1); /* 100/min: one call every 0.6 s */
    assert_true(faults_throttle_take(E.f, FAULTS_OP_D2C, 1, &retry)); /* buckets are per operation */
    spin(650);
    assert_true(faults_throttle_take(E.f, FAULTS_OP_REGISTRY, 1, &retry));
    assert_false(faults_throttle_take(E.f, FAULTS_OP_REGISTRY, 1, &retry));
    /* Direct methods: 40 blocks of 4 KB per second at S1; a 160 KB call takes them all. */
    assert_true(faults_throttle_take(E.f, FAULTS_OP_METHOD, 40, &retry));
    assert_false(faults_throttle_take(E.f, FAULTS_OP_METHOD, 1, &retry));
    /* D2C over the limit refuses the message as throttled (the bucket refilled to its burst of 100 during the
     * spin; the loop's clock does not move outside loop_run). */
    for (int i = 0; i < 100; i++)
        assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_ACCEPT);
    assert_int_equal(faults_d2c(E.f, &E.dev.link, NULL), FAULTS_THROTTLED);
    json_t *j = faults_throttle_json(E.f);
    assert_string_equal(json_string_value(json_object_get(j, "tier")), "s1");
    assert_int_equal(json_array_size(json_object_get(j, "limits")), FAULTS_OPS);
    json_decref(j);
    assert_int_equal(faults_set_throttle(E.f, "off"), ERR_OK);
    assert_true(faults_throttle_take(E.f, FAULTS_OP_METHOD, 1000, &retry));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bag_parsing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_tcp_holds_then_aborts_after_the_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_kicks_and_duration_refuses_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_quota_auth_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sdk_protocol_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_link_cancels_its_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_amqp_kinds_are_timed_here_and_left_to_the_front, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_faults_list_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_expire_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rest_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hub_holds_and_drops_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_buckets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
