/* test_c2d.c -- emulator/hub/c2d: addressing (to), unknown identities, the 50-message limit, expiry, one
 * message in flight per attached link, completion delivering the next, detach putting it back (redelivery
 * with a raised count), takeover, the delivery-count limit, purge, the persistence seam (put/del/load), and a
 * link that settles inside the hand-over (QoS 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "c2d.h"
#include "db.h"
#include "device_link.h"
#include "err.h"
#include "events.h"
#include "log.h"
#include "db.h"
#include "registry.h"

#define KEY1 "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="
#define NOW 1800000000000LL

static struct registry *reg;

/* A fake device link: records what it was given. */
struct fake {
    struct device_link link;
    int delivered;
    uint64_t last_seq;
    uint32_t last_count;
    char last_id[C2D_MAX_ID];
    int fail; /* deliveries to refuse */
};

static int fake_deliver(struct device_link *l, const struct c2d_message *m)
{
    struct fake *f = (struct fake *)l;
    if (f->fail) {
        f->fail--;
        return ERR_CLOSED;
    }
    f->delivered++;
    f->last_seq = m->seq;
    f->last_count = m->delivery_count;
    snprintf(f->last_id, sizeof f->last_id, "%s", m->message_id);
    return ERR_OK;
}

static const struct device_link_ops fake_ops = {.deliver_c2d = fake_deliver};

static void fake_init(struct fake *f, const char *identity)
{
    memset(f, 0, sizeof *f);
    f->link.ops = &fake_ops;
    f->link.identity = identity;
}

static struct c2d_message msg(const char *id, int64_t expiry_ms)
{
    struct c2d_message m;
    memset(&m, 0, sizeof m);
    snprintf(m.message_id, sizeof m.message_id, "%s", id);
    m.expiry_ms = expiry_ms;
    m.body = (const uint8_t *)"hi";
    m.body_len = 2;
    return m;
}

static int setup(void **state)
{
    char err[128];
    log_set_level(LOG_LEVEL_ERROR);
    reg = registry_new(db_open(NULL, err, sizeof err), NULL, err, sizeof err);
    assert_int_equal(registry_ensure_device(reg, "dev-1", KEY1, KEY1), ERR_OK);
    assert_int_equal(registry_ensure_device(reg, "dev2", KEY1, KEY1), ERR_OK);
    return 0;
}

static int teardown(void **state)
{
    struct db *reg_db = registry_db(reg);
    registry_free(reg);
    db_close(reg_db);
    return 0;
}

static void test_send_limits(void **state)
{
    struct c2d *q = c2d_new(reg, NULL, 0);
    char why[160];
    struct c2d_message m = msg("a", 0);
    assert_int_equal(c2d_send(q, "/devices/dev%2D1/messages/devicebound", &m, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_send(q, "/devices/nobody/messages/devicebound", &m, NOW, why, sizeof why), ERR_NOT_FOUND);
    assert_non_null(strstr(why, "nobody"));
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/events", &m, NOW, why, sizeof why), ERR_INVALID);
    assert_int_equal(c2d_send(q, "devices/dev2/messages/devicebound", &m, NOW, why, sizeof why), ERR_INVALID);
    struct c2d_message old = msg("old", NOW - 1);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &old, NOW, why, sizeof why), ERR_INVALID);
    for (int i = 1; i < C2D_MAX_QUEUE; i++)
        assert_int_equal(c2d_send(q, "/devices/dev-1/messages/devicebound", &m, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_count(q, "dev-1", NOW), C2D_MAX_QUEUE);
    assert_int_equal(c2d_send(q, "/devices/dev-1/messages/devicebound", &m, NOW, why, sizeof why), ERR_TOO_BIG);
    /* the default TTL (1 h) frees the queue */
    assert_int_equal(c2d_count(q, "dev-1", NOW + 3600 * 1000 + 1), 0);
    assert_int_equal(c2d_send(q, "/devices/dev-1/messages/devicebound", &m, NOW + 3600 * 1000 + 1, why, sizeof why),
                     ERR_OK);
    assert_int_equal(c2d_purge(q, "dev-1"), 1);
    c2d_free(q);
}

static void test_delivery_one_at_a_time(void **state)
{
    struct c2d *q = c2d_new(reg, NULL, 0);
    char why[160];
    struct c2d_message a = msg("a", NOW + 1000), b = msg("b", 0), c = msg("c", 0);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &a, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &b, NOW, why, sizeof why), ERR_OK);
    struct fake f;
    fake_init(&f, "dev2");
    c2d_attach(q, &f.link, NOW + 2000); /* "a" has expired meanwhile */
    assert_int_equal(f.delivered, 1);
    assert_string_equal(f.last_id, "b");
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &c, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(f.delivered, 1); /* "b" is still in flight */
    /* disconnect before completing: "b" is delivered again to the next connection, count 2 */
    c2d_detach(q, &f.link);
    struct fake g;
    fake_init(&g, "dev2");
    c2d_attach(q, &g.link, NOW);
    assert_string_equal(g.last_id, "b");
    assert_int_equal(g.last_count, 2);
    /* takeover by a third link: "b" again */
    struct fake h;
    fake_init(&h, "dev2");
    c2d_attach(q, &h.link, NOW);
    assert_string_equal(h.last_id, "b");
    c2d_detach(q, &g.link); /* the old link leaving changes nothing */
    assert_int_equal(c2d_complete(q, "dev2", h.last_seq), ERR_OK);
    assert_string_equal(h.last_id, "c");
    assert_int_equal(c2d_complete(q, "dev2", h.last_seq), ERR_OK);
    assert_int_equal(c2d_complete(q, "dev2", h.last_seq), ERR_NOT_FOUND);
    assert_int_equal(c2d_count(q, "dev2", NOW), 0);
    /* a refused delivery stays queued */
    h.fail = 1;
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &c, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_count(q, "dev2", NOW), 1);
    c2d_free(q);
}

static void test_delivery_count_limit(void **state)
{
    struct c2d *q = c2d_new(reg, NULL, 0);
    char why[160];
    struct c2d_message a = msg("a", 0);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &a, NOW, why, sizeof why), ERR_OK);
    struct fake f;
    for (int i = 0; i < C2D_MAX_DELIVERY; i++) {
        fake_init(&f, "dev2");
        c2d_attach(q, &f.link, NOW);
        assert_int_equal(f.delivered, 1);
        c2d_detach(q, &f.link);
    }
    assert_int_equal(c2d_count(q, "dev2", NOW), 0); /* dropped after the 10th delivery */
    c2d_free(q);
}

/* ---- the store seam ---- */

static struct {
    int puts, dels;
    struct c2d_message saved[4];
    char ident[4][64];
    int n;
} S;

static int st_put(void *ctx, const char *identity, const struct c2d_message *m)
{
    S.puts++;
    S.saved[S.n] = *m;
    S.saved[S.n].body = NULL;
    S.saved[S.n].body_len = 0;
    snprintf(S.ident[S.n++], 64, "%s", identity);
    return ERR_OK;
}

static int st_del(void *ctx, const char *identity, uint64_t seq)
{
    S.dels++;
    return ERR_OK;
}

static int st_load(void *ctx, int (*fn)(void *arg, const char *identity, const struct c2d_message *m), void *arg)
{
    for (int i = 0; i < S.n; i++)
        if (fn(arg, S.ident[i], &S.saved[i]))
            return ERR_IO;
    return ERR_OK;
}

static void test_store_seam(void **state)
{
    struct c2d_store st = {.put = st_put, .del = st_del, .load = st_load};
    memset(&S, 0, sizeof S);
    struct c2d *q = c2d_new(reg, &st, 0);
    char why[160];
    struct c2d_message a = msg("a", 0), b = msg("b", 0);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &a, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &b, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(S.puts, 2);
    c2d_free(q);
    /* "restart": the queue comes back from the store, and new messages get fresh sequence numbers */
    q = c2d_new(reg, &st, 0);
    assert_int_equal(c2d_count(q, "dev2", NOW), 2);
    struct fake f;
    fake_init(&f, "dev2");
    c2d_attach(q, &f.link, NOW);
    assert_string_equal(f.last_id, "a");
    assert_int_equal(c2d_complete(q, "dev2", f.last_seq), ERR_OK);
    assert_int_equal(S.dels, 1);
    assert_string_equal(f.last_id, "b");
    struct c2d_message c = msg("c", 0);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &c, NOW, why, sizeof why), ERR_OK);
    assert_true(S.saved[2].seq > S.saved[1].seq);
    c2d_free(q);
}

/* ---- feedback ---- */

static struct {
    int batches;
    char last[4096];
    uint64_t batch;
    int refuse;
} FB;

static int fb_deliver(void *ctx, uint64_t batch, const char *json, size_t len)
{
    if (FB.refuse) {
        FB.refuse--;
        return ERR_CLOSED;
    }
    FB.batches++;
    FB.batch = batch;
    snprintf(FB.last, sizeof FB.last, "%.*s", (int)len, json);
    return ERR_OK;
}

/* A link that settles at once (MQTT QoS 0) completes the message inside deliver_c2d, which frees it and hands
 * over the next: the queue must not touch the freed entry (an ASan use-after-free in CI before), and the feed
 * says delivered before completed for each message. */
struct settling {
    struct device_link link;
    struct c2d *q;
    int delivered;
};

static int settle_at_once(struct device_link *l, const struct c2d_message *m)
{
    struct settling *s = (struct settling *)l;
    s->delivered++;
    assert_int_equal(c2d_complete(s->q, l->identity, m->seq), ERR_OK);
    return ERR_OK;
}

static const struct device_link_ops settling_ops = {.deliver_c2d = settle_at_once};

static void note_event(void *ctx, const struct events_event *ev)
{
    char *log = ctx;
    size_t n = strlen(log);
    snprintf(log + n, 256 - n, "%s:%s ", ev->what, ev->detail);
}

static void test_settled_inside_delivery(void **state)
{
    struct c2d *q = c2d_new(reg, NULL, 0);
    struct events *ev = events_new();
    char log[256] = "";
    assert_int_equal(events_subscribe(ev, note_event, log), ERR_OK);
    c2d_set_events(q, ev);
    char why[160];
    struct c2d_message a = msg("a", 0), b = msg("b", 0);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &a, NOW, why, sizeof why), ERR_OK);
    assert_int_equal(c2d_send(q, "/devices/dev2/messages/devicebound", &b, NOW, why, sizeof why), ERR_OK);
    log[0] = '\0';
    struct settling s = {.link = {.ops = &settling_ops, .identity = "dev2"}, .q = q};
    c2d_attach(q, &s.link, NOW);
    assert_int_equal(s.delivered, 2);
    assert_int_equal(c2d_count(q, "dev2", NOW), 0);
    assert_non_null(strstr(log, "delivered:a "));
    assert_true(strstr(log, "delivered:a ") < strstr(log, "delivered:b "));
    c2d_detach(q, &s.link);
    c2d_free(q);
    events_free(ev);
}

static void test_feedback(void **state)
{
    memset(&FB, 0, sizeof FB);
    struct c2d *q = c2d_new(reg, NULL, 0);
    char why[160];
    struct c2d_message full = msg("full-1", 0), pos = msg("pos-1", NOW + 10), neg = msg("neg-1", 0),
                       none = msg("none-1", 0);
    snprintf(full.ack, sizeof full.ack, "full");
    snprintf(pos.ack, sizeof pos.ack, "positive");
    snprintf(neg.ack, sizeof neg.ack, "negative");
    const char *to = "/devices/dev2/messages/devicebound";
    assert_int_equal(c2d_send(q, to, &pos, NOW, why, sizeof why), ERR_OK);  /* will expire: no record */
    assert_int_equal(c2d_send(q, to, &full, NOW, why, sizeof why), ERR_OK); /* completed: Success */
    assert_int_equal(c2d_send(q, to, &neg, NOW, why, sizeof why), ERR_OK);  /* purged: Purged */
    assert_int_equal(c2d_send(q, to, &none, NOW, why, sizeof why), ERR_OK); /* purged: no record */
    struct fake f;
    fake_init(&f, "dev2");
    c2d_attach(q, &f.link, NOW + 20);
    assert_string_equal(f.last_id, "full-1");
    assert_int_equal(c2d_complete(q, "dev2", f.last_seq), ERR_OK);
    c2d_detach(q, &f.link);
    assert_int_equal(c2d_purge(q, "dev2"), 2);
    assert_int_equal(c2d_feedback_pending(q), 2);
    /* no receiver yet; the first one refuses, the records stay; the next gets both in one batch */
    struct c2d_feedback_sink sink = {.deliver = fb_deliver, .ctx = &FB};
    FB.refuse = 1;
    c2d_feedback_attach(q, &sink);
    assert_int_equal(FB.batches, 0);
    assert_int_equal(c2d_feedback_pending(q), 2);
    c2d_feedback_attach(q, &sink);
    assert_int_equal(FB.batches, 1);
    assert_non_null(strstr(FB.last, "\"originalMessageId\":\"full-1\""));
    assert_non_null(strstr(FB.last, "\"statusCode\":\"Success\""));
    assert_non_null(strstr(FB.last, "\"originalMessageId\":\"neg-1\""));
    assert_non_null(strstr(FB.last, "\"statusCode\":\"Purged\""));
    assert_non_null(strstr(FB.last, "\"deviceId\":\"dev2\""));
    assert_null(strstr(FB.last, "pos-1"));
    /* released: sent again; accepted: gone */
    c2d_feedback_settled(q, FB.batch, false);
    assert_int_equal(FB.batches, 2);
    c2d_feedback_settled(q, FB.batch, true);
    assert_int_equal(c2d_feedback_pending(q), 0);
    c2d_feedback_detach(q, &FB);
    c2d_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_limits),
        cmocka_unit_test(test_delivery_one_at_a_time),
        cmocka_unit_test(test_delivery_count_limit),
        cmocka_unit_test(test_store_seam),
        cmocka_unit_test(test_feedback),
        cmocka_unit_test(test_settled_inside_delivery),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
