/* rest_front.c -- the direct-method front (rest.h's rest_front): the struct proto net gives every HTTP
 * connection (plain and over TLS). It serves POST /twins/{id}[/modules/{mid}]/methods itself, in the loop and
 * without libmicrohttpd: the head is parsed by httphead.c, the body is read where net put it, the request
 * goes through the same rest_dispatch as MHD's requests (auth, faults, throttling, rest_methods.c) and the
 * answer is written as MHD writes it. The first request it is not sure of (another route, chunked, HTTP/1.0,
 * anything httphead.c leaves alone) hands the connection, with every byte not yet consumed, to MHD through
 * net's socketpair for good (conn_handoff_http); answers already written go first, so HTTP order holds.
 * Why (issue 20): the relay net -> socketpair -> MHD and MHD's per-request work were most of a small call's
 * cost. Deadlines as MHD's: a request head within head_timeout, a keep-alive connection idle for at most
 * idle_timeout; an idle connection can be evicted at the connection limit. Tests: tests/unit/test_rest_http.c
 * (all of it run twice: through MHD's listener, and through net and this front: unit.test_rest_http_front),
 * tests/integration/test_noisy_neighbour.py (deadlines, eviction). */
#include "rest_internal.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "conn.h"
#include "err.h"
#include "httphead.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "rest.h"

#define FRONT_RESERVE_MIN (16u * 1024u) /* a body this much larger than what has come gets room for all of it */
#define FRONT_SWEEP_MS 250
#define FRONT_HEAD_MAX 16384 /* the answer's head (scratch buffer cap) */

enum front_state {
    FRONT_IDLE, /* between requests (or none yet) */
    FRONT_HEAD, /* part of a request head has arrived */
    FRONT_BODY, /* the head is complete, part of the body has arrived */
    FRONT_CALL, /* the request waits for its device (suspended) */
};

struct rest_front_conn {
    struct rest *r;
    struct conn *c;
    struct rest_req *q; /* the suspended request, or NULL */
    enum front_state state;
    int64_t since_ms;   /* when state began */
    bool established;   /* conn_established was called (the first head was complete) */
    bool continued;     /* "100 Continue" was sent for the request being read */
    bool close_after;   /* the request being served said Connection: close */
    bool closing;       /* this front is done with the connection: closing, or handed to MHD */
    bool held;          /* net holds input back: a pipelined request waits for the call before it */
    size_t need;        /* FRONT_BODY: head + body bytes of the request being read */
    bool reserved;      /* FRONT_BODY: room for all of them was made (conn_expect announces them) */
    size_t scanned;     /* FRONT_HEAD: bytes of the partial head parsed so far */
    struct httphead head; /* FRONT_BODY: its head, parsed once; its views are the offsets below into net's buffer */
    size_t method_off, target_off, authz_off;
    struct rest_front_conn *prev, *next;
};

static void set_state(struct rest_front_conn *f, enum front_state s)
{
    if (f->state != s)
        f->since_ms = loop_now_ms(f->r->loop);
    f->state = s;
}

static void front_close(struct rest_front_conn *f, const char *why)
{
    f->closing = true;
    conn_close(f->c, why);
}

/* ---- deadlines ---- */

static void on_sweep(struct loop *l, void *ctx)
{
    struct rest *r = ctx;
    r->front_sweep = NULL;
    int64_t now = loop_now_ms(l);
    for (struct rest_front_conn *f = r->front_conns; f; f = f->next) {
        if (f->state == FRONT_IDLE && conn_queued(f->c) > 0)
            f->since_ms = now; /* an answer still on its way to a slow reader: not idle yet (as MHD counts) */
        int64_t age = now - f->since_ms;
        if (f->closing)
            continue;
        if (f->state == FRONT_HEAD && age >= (int64_t)r->head_timeout_s * 1000)
            front_close(f, "no complete request head in time");
        else if ((f->state == FRONT_IDLE || f->state == FRONT_BODY) && age >= (int64_t)r->idle_timeout_s * 1000)
            front_close(f, f->state == FRONT_IDLE ? "keep-alive idle timeout" : "request body stalled");
    }
    if (r->front_conns)
        r->front_sweep = loop_timer_add(l, FRONT_SWEEP_MS, on_sweep, r);
}

/* ---- answering ---- */

/* Writes q's answer: its head, then the body parts, not joined first. */
static void send_answer(struct rest_front_conn *f, struct rest_req *q, const struct iovec *body, int n)
{
    struct rest *r = f->r;
    r->front_head.len = 0;
    bool close = f->close_after || r->shutting_down;
    struct iovec iov[4];
    if (n > 3 || rest_answer_head(r, &q->ans, close, &r->front_head) != ERR_OK) {
        front_close(f, "cannot answer");
        return;
    }
    iov[0] = (struct iovec){.iov_base = r->front_head.data, .iov_len = r->front_head.len};
    memcpy(iov + 1, body, (size_t)n * sizeof *body);
    if (conn_sendv(f->c, iov, n + 1) != ERR_OK) {
        front_close(f, "cannot answer");
        return;
    }
    q->sent = true;
    log_debug("http %s %.200s -> %u (%lld ms)", q->method, q->uri, q->ans.status,
              (long long)(loop_now_ms(r->loop) - q->started_ms));
    if (close)
        front_close(f, "Connection: close");
}

bool rest_front_send_result(struct rest_req *q, int status, const uint8_t *body, size_t len)
{
    /* The body restapi_method_result would splice byte for byte; null and non-JSON bodies take that path. */
    if (len == 0 || !restapi_json_is_valid(body, len))
        return false;
    char pre[RESTAPI_RESULT_PREFIX_MAX];
    size_t pn = restapi_method_result_prefix(status, pre);
    rest_answer_set(q, MHD_HTTP_OK, NULL, 0, REST_JSON);
    q->ans.len = pn + len + 1; /* the Content-Length of the parts below */
    struct iovec parts[3] = {{.iov_base = pre, .iov_len = pn},
                             {.iov_base = (void *)body, .iov_len = len},
                             {.iov_base = "}", .iov_len = 1}};
    send_answer(q->front, q, parts, 3);
    return true;
}

/* q is done (answered, or gone): write it unless gone, free it, wait for the next request. */
static void finish(struct rest_front_conn *f, struct rest_req *q)
{
    if (!q->gone && !q->sent && !q->answered)
        front_close(f, "no answer"); /* as MHD does (rest.c on_access) */
    else if (!q->gone && !q->sent && !f->closing) {
        struct iovec body = {.iov_base = q->ans.body, .iov_len = q->ans.len};
        send_answer(f, q, &body, 1);
    }
    rest_req_free(q);
    f->q = NULL;
    f->continued = false;
    set_state(f, FRONT_IDLE);
}

void rest_front_resumed(struct rest_req *q)
{
    struct rest_front_conn *f = q->front;
    finish(f, q);
    if (!f->closing && f->held) {
        f->held = false;
        conn_hold_input(f->c, false);
        conn_input_ready(f->c); /* the pipelined request waiting in net's buffer */
    }
}

/* Serves the request whose head is h and whose body is body[0..h->content_length). */
static void serve(struct rest_front_conn *f, const struct httphead *h, const uint8_t *body)
{
    struct rest_req *q = rest_req_new(f->r, h->target, h->target_len);
    if (q && h->authorization && !(q->authz = strndup(h->authorization, h->authorization_len))) {
        rest_req_free(q);
        q = NULL;
    }
    if (!q) {
        front_close(f, "out of memory");
        return;
    }
    q->front = f;
    f->close_after = h->close;
    rest_req_start(q, "POST");
    /* The body is read where net put it; it is used only inside rest_dispatch (a call that waits for its
     * device has its payload copied by the hub), so the view is dropped before q outlives this function. */
    buf_cleanup(&q->body);
    q->body.data = (uint8_t *)body;
    q->body.len = (size_t)h->content_length;
    q->body_seen = (size_t)h->content_length;
    rest_dispatch(q);
    q->body = (struct buf){0};
    q->call.payload = q->call.payload_buf; /* NULL, or the parser's own copy */
    if (q->suspended) {
        f->q = q;
        set_state(f, FRONT_CALL);
        return;
    }
    finish(f, q);
}

/* ---- the proto ---- */

static void *front_open(void *ctx, struct conn *c)
{
    struct rest *r = ctx;
    struct rest_front_conn *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->r = r;
    f->c = c;
    f->state = FRONT_IDLE;
    f->since_ms = loop_now_ms(r->loop);
    f->next = r->front_conns;
    if (r->front_conns)
        r->front_conns->prev = f;
    r->front_conns = f;
    if (!r->front_sweep)
        r->front_sweep = loop_timer_add(r->loop, FRONT_SWEEP_MS, on_sweep, r);
    return f;
}

/* Not a request this front serves: MHD gets the connection and every byte from this request on. */
static int hand_off(struct rest_front_conn *f)
{
    f->closing = true;
    conn_handoff_http(f->c);
    return ERR_CLOSED;
}

static int front_input(void *state, struct buf *in)
{
    struct rest_front_conn *f = state;
    while (!f->q && !f->closing && in->len > 0) {
        if (f->state == FRONT_BODY && in->len < f->need) {
            f->since_ms = loop_now_ms(f->r->loop); /* bytes came: the body's deadline is for inactivity */
            if (f->reserved)
                conn_expect(f->c, f->need);
            return ERR_OK; /* parsed already: a body may come in many reads */
        }
        /* A head comes whole or in pieces; it is parsed again only when a line feed has come since (a head
         * dribbled a byte at a time cost 8 KiB of parsing per byte: ~24 ms of CPU per slow client). */
        if (f->state == FRONT_HEAD && in->len > f->scanned && in->len < HTTPHEAD_MAX &&
            !memchr(in->data + f->scanned, '\n', in->len - f->scanned)) {
            f->scanned = in->len;
            return ERR_OK;
        }
        struct httphead h;
        enum httphead_result hr;
        if (f->state == FRONT_BODY) { /* the head kept at its offsets (the buffer may have moved since) */
            h = f->head;
            h.method = (const char *)in->data + f->method_off;
            h.target = (const char *)in->data + f->target_off;
            h.authorization = f->head.authorization ? (const char *)in->data + f->authz_off : NULL;
            hr = HTTPHEAD_OK;
        } else {
            hr = httphead_parse(in->data, in->len, &h);
        }
        if (hr == HTTPHEAD_NEED_MORE) {
            set_state(f, FRONT_HEAD);
            f->scanned = in->len;
            return ERR_OK;
        }
        f->scanned = 0;
        if (hr != HTTPHEAD_OK || h.method_len != 4 || memcmp(h.method, "POST", 4) != 0 ||
            !httphead_is_method_target(h.target, h.target_len) || h.content_length > REST_METHOD_BODY_MAX ||
            h.authorization_len > REST_AUTHZ_MAX)
            return hand_off(f);
        if (!f->established) {
            conn_established(f->c); /* net's deadline covered the first head; the sweep has the rest */
            f->established = true;
        }
        if (in->len - h.head_len < h.content_length) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (h.expect_continue && !f->continued && in->len == h.head_len) {
                conn_send(f->c, (const uint8_t *)cont, sizeof cont - 1);
                f->continued = true;
            }
            set_state(f, FRONT_BODY);
            f->head = h;
            f->method_off = (size_t)((const uint8_t *)h.method - in->data);
            f->target_off = (size_t)((const uint8_t *)h.target - in->data);
            f->authz_off = h.authorization ? (size_t)((const uint8_t *)h.authorization - in->data) : 0;
            f->need = h.head_len + (size_t)h.content_length;
            /* Room for the rest, so net reads it straight in, but only for a caller whose token is good: room made
             * on the word of an anonymous head would let 200 bytes cost 1 MiB. Otherwise it grows as it comes. */
            f->reserved = f->need - in->len >= FRONT_RESERVE_MIN &&
                          rest_token_ok(f->r, h.authorization, h.authorization_len, AUTH_SERVICE_CONNECT) &&
                          buf_reserve(in, f->need - in->len) == ERR_OK;
            if (f->reserved)
                conn_expect(f->c, f->need);
            return ERR_OK;
        }
        serve(f, &h, in->data + h.head_len);
        buf_consume(in, h.head_len + (size_t)h.content_length);
    }
    if (f->q && in->len > 0 && !f->held) {
        /* Pipelined: answers go in order, so the next request waits, and net stops reading (MHD does the
         * same with a suspended connection) rather than let a client fill the input buffer. */
        f->held = true;
        conn_hold_input(f->c, true);
    }
    return f->closing ? ERR_CLOSED : ERR_OK;
}

static int64_t front_idle_since(void *state)
{
    const struct rest_front_conn *f = state;
    if (conn_queued(f->c) > 0)
        return -1; /* its answer is still being written */
    return f->state == FRONT_IDLE || f->state == FRONT_HEAD ? f->since_ms : -1;
}

static void front_free(void *state)
{
    struct rest_front_conn *f = state;
    struct rest *r = f->r;
    struct rest_req *q = f->q;
    if (q) {
        if (q->call_id)
            hub_call_cancel(r->hub, q->call_id);
        q->call_id = 0;
        rest_log_call(q, "caller went away", REST_LOG_NO_CODE);
        rest_unsuspend(q);
        rest_req_free(q);
    }
    if (f->prev)
        f->prev->next = f->next;
    else
        r->front_conns = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f);
}

void rest_front_init(struct rest *r)
{
    r->front = (struct proto){.name = "http", .max_frame = REST_METHOD_BODY_MAX + HTTPHEAD_MAX, .open = front_open,
                              .input = front_input, .free = front_free, .idle_since = front_idle_since, .ctx = r};
    buf_init(&r->front_head, FRONT_HEAD_MAX);
}

void rest_front_cleanup(struct rest *r)
{
    loop_timer_cancel(r->loop, r->front_sweep);
    r->front_sweep = NULL;
    buf_cleanup(&r->front_head);
}

const struct proto *rest_front(struct rest *r)
{
    return &r->front;
}
