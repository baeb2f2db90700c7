/* device_answer_later.c -- test helper for device_async_answers.py: a device on the library's asynchronous
 * answer path. Each request is taken with DEVICE_CLIENT_ANSWER_LATER; once N requests are pending, a second
 * thread answers them in reverse order with device_client_respond() (each body {"order":k,"echo":payload}), then
 * stops the client with device_client_stop() from that thread. Prints "connected" when connected. With "pump",
 * the main thread drives the client as an application's own loop would: device_client_run(c, 0) every 10 ms.
 * Usage: device_answer_later CONNECTION_STRING PLAIN_PORT N [pump] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device_client.h"

#define MAX_PENDING 64

struct pending {
    char rid[129];
    char *payload;
};

struct state {
    struct device_client *client;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct pending calls[MAX_PENDING];
    int n;
    int want;
    volatile int stopped; /* the answerer has called device_client_stop */
};

static enum device_client_answer on_method(void *ctx, const struct device_client_method_request *req, int *status,
                                           char **response)
{
    struct state *s = ctx;
    pthread_mutex_lock(&s->lock);
    if (s->n < MAX_PENDING) {
        struct pending *p = &s->calls[s->n++];
        snprintf(p->rid, sizeof p->rid, "%s", req->rid);
        p->payload = strdup(req->payload_len ? (const char *)req->payload : "null");
    }
    if (s->n >= s->want)
        pthread_cond_signal(&s->ready);
    pthread_mutex_unlock(&s->lock);
    printf("pending %s\n", req->rid);
    return DEVICE_CLIENT_ANSWER_LATER;
}

static void on_state(void *ctx, const struct device_client_event *ev)
{
    if (ev->state == DEVICE_CLIENT_CONNECTED)
        printf("connected\n");
}

static void *answerer(void *arg)
{
    struct state *s = arg;
    pthread_mutex_lock(&s->lock);
    while (s->n < s->want)
        pthread_cond_wait(&s->ready, &s->lock);
    pthread_mutex_unlock(&s->lock);
    for (int k = 0; k < s->want; k++) {
        struct pending *p = &s->calls[s->want - 1 - k];
        char body[4096];
        int len = snprintf(body, sizeof body, "{\"order\":%d,\"echo\":%s}", k, p->payload);
        if (len < 0 || (size_t)len >= sizeof body || device_client_respond(s->client, p->rid, 200, body, (size_t)len))
            fprintf(stderr, "device_answer_later: cannot answer %s\n", p->rid);
        usleep(20000);
    }
    usleep(300000); /* let the loop publish the last answers before stopping */
    s->stopped = 1;
    device_client_stop(s->client);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "pump") == 0))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    static struct state s = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};
    s.want = (int)strtol(argv[3], NULL, 10);
    if (s.want < 1 || s.want > MAX_PENDING)
        return 2;
    struct device_client_options o;
    device_client_options_init(&o);
    o.plain_port = (int)strtol(argv[2], NULL, 10);
    o.on_method = on_method;
    o.method_ctx = &s;
    o.on_state = on_state;
    char err[256];
    if (device_client_new(argv[1], &o, &s.client, err, sizeof err)) {
        fprintf(stderr, "device_answer_later: %s\n", err);
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, answerer, &s) != 0)
        return 1;
    int rc = ERR_OK;
    if (argc == 5) { /* zero-timeout calls, 20 s at most: each must still service the connection */
        for (int tick = 0; tick < 2000 && rc == ERR_OK && !s.stopped; tick++) {
            rc = device_client_run(s.client, 0);
            usleep(10000);
        }
    } else {
        rc = device_client_run(s.client, 60000);
    }
    /* The answerer normally stops the client; after a timeout, release it with what arrived. */
    pthread_mutex_lock(&s.lock);
    if (s.n < s.want)
        s.want = s.n;
    pthread_cond_signal(&s.ready);
    pthread_mutex_unlock(&s.lock);
    pthread_join(t, NULL);
    device_client_free(s.client);
    for (int i = 0; i < s.n; i++)
        free(s.calls[i].payload);
    return rc == ERR_OK ? 0 : 1;
}
