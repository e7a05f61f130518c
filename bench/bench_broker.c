/*
 * bench_broker.c - broker_throughput: N valid 200-byte events from one
 * PUB through the broker (--validate=full) to one SUB, against the same
 * events through a plain zmq_proxy XSUB/XPUB pair in the same run.
 *
 * Each run times from the first measured send to the last receive. PUB
 * drops at its HWM, so the publisher keeps at most WINDOW events in
 * flight (it waits for the subscriber's count, a shared atomic) and every
 * HWM on the path is larger than that: both runs deliver all N, and a
 * lost message fails the benchmark instead of flattering it. Before a run
 * the publisher sends warm-up events until the subscriber has seen one,
 * so the subscription has reached the publisher (no slow-joiner loss).
 *
 * Broker and proxy each get their own ZeroMQ context (one I/O thread) and
 * the same socket options; the clients share a third. On a shared
 * 2-core machine the load of other processes swings by tens of percent
 * from one second to the next, so one long run of each would compare two
 * different machines. Instead the variants alternate in many short runs
 * (ROUNDS pairs of 25 000 events, taking turns at going first), so both
 * see the same mix of quiet and busy moments, and the median of each is
 * reported.
 *
 * broker_curve_throughput: the same through a broker whose endpoints are
 * CURVE servers (docs/operations.md, "Security"), the publisher and the
 * subscriber CURVE clients with an admitted key, taking its turn in the
 * same rounds. Baseline: the plain broker's median: the ratio is what
 * encryption and authentication cost.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"
#include "broker.h"
#include "codec.h"
#include "curve.h"
#include "log.h"

#define EVENT_TOPIC "bench.event"
#define WARMUP_TOPIC "bench.warmup"
#define EVENT_BYTES 200
#define WINDOW 20000
#define HWM 100000
#define ROUNDS 40       /* --quick: QUICK_ROUNDS */
#define QUICK_ROUNDS 8
#define IDLE_TIMEOUT_MS 5000

typedef struct payloads {
    codec_buf_t event, warmup; /* Event bodies */
} payloads_t;

/* With CURVE: the client's pair and the broker's (NULL: none). */
typedef struct keys {
    fcurve_cert_t client, server;
    char dir[64], server_path[128], clients[128];
} keys_t;

typedef struct run {
    const char *ingress, *egress;
    const keys_t *keys;
    const payloads_t *p;
    size_t n;
    void *ctx;
    atomic_size_t received;
    atomic_bool ready;  /* the subscriber has seen a warm-up event */
    atomic_bool failed; /* the subscriber gave up */
    int64_t t0_us;
} run_t;

/* An Event of exactly `size` encoded bytes (padding its payload). */
static fonte_err
make_body(const char *type, size_t size, codec_buf_t *out)
{
    Fonte__Event ev = FONTE__EVENT__INIT;
    char id[CODEC_ID_MAX];
    static uint8_t pad[EVENT_BYTES];
    codec_buf_t topic;
    fonte_err rc;

    codec_format_id(id, "bench", 5, 0x5eed, 1);
    ev.id = id;
    ev.type = (char *) type;
    ev.object = (char *) "order:42";
    ev.producer = (char *) "bench";
    ev.session = 0x5eed;
    ev.producer_seq = 1;
    ev.time_us = 1700000000000000;
    ev.payload_type = (char *) "bench.Payload";
    for (size_t plen = 0; plen < sizeof pad; plen++) {
        ev.payload.data = pad;
        ev.payload.len = plen;
        if (protobuf_c_message_get_packed_size(&ev.base) >= size)
            break;
    }
    if ((rc = codec_event_encode(&ev, &codec_limits_default, &topic, out)))
        return rc;
    codec_buf_free(&topic);
    return FONTE_OK;
}

static void
set_int(void *s, int opt, int v)
{
    zmq_setsockopt(s, opt, &v, sizeof v);
}

static int
send_event(void *pub, const char *topic, const codec_buf_t *body)
{
    if (zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE) == -1)
        return -1;
    return zmq_send(pub, body->data, body->len, 0) == -1 ? -1 : 0;
}

static void *
publisher(void *arg)
{
    run_t *r = arg;
    void *pub = zmq_socket(r->ctx, ZMQ_PUB);

    set_int(pub, ZMQ_SNDHWM, HWM);
    set_int(pub, ZMQ_LINGER, 0);
    if (r->keys != NULL)
        fcurve_client(pub, &r->keys->client, &r->keys->server);
    zmq_connect(pub, r->ingress);
    int64_t until = fonte_mono_us() + IDLE_TIMEOUT_MS * 1000;
    while (!atomic_load(&r->ready) && !atomic_load(&r->failed) &&
           fonte_mono_us() < until) {
        send_event(pub, WARMUP_TOPIC, &r->p->warmup);
        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
    }
    r->t0_us = fonte_mono_us();
    for (size_t sent = 0; sent < r->n && !atomic_load(&r->failed); sent++) {
        while (sent - atomic_load_explicit(&r->received, memory_order_acquire)
                   >= WINDOW &&
               !atomic_load(&r->failed))
            sched_yield();
        send_event(pub, EVENT_TOPIC, &r->p->event);
    }
    /* Closing (linger 0) would drop what is still queued. */
    while (atomic_load(&r->received) < r->n && !atomic_load(&r->failed))
        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
    zmq_close(pub);
    return NULL;
}

/* One run through ingress/egress; events/s, or -1 on loss or timeout. */
static double
run_once(const char *ingress, const char *egress, const keys_t *keys,
         const payloads_t *p, size_t n)
{
    run_t r = { .ingress = ingress, .egress = egress, .keys = keys, .p = p,
                .n = n };
    pthread_t th;
    zmq_msg_t topic, body;
    double rate = -1;

    r.ctx = zmq_ctx_new();
    void *sub = zmq_socket(r.ctx, ZMQ_SUB);
    set_int(sub, ZMQ_RCVHWM, HWM);
    set_int(sub, ZMQ_LINGER, 0);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "bench.", 6);
    if (keys != NULL)
        fcurve_client(sub, &keys->client, &keys->server);
    zmq_connect(sub, egress);
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    if (pthread_create(&th, NULL, publisher, &r) != 0) {
        fprintf(stderr, "bench broker: cannot start the publisher\n");
        goto done;
    }

    size_t got = 0;
    zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
    while (got < n) {
        if (zmq_poll(&item, 1, IDLE_TIMEOUT_MS) <= 0) {
            fprintf(stderr, "bench broker: %zu of %zu events arrived\n", got,
                    n);
            atomic_store(&r.failed, true);
            break;
        }
        while (got < n && zmq_msg_recv(&topic, sub, ZMQ_DONTWAIT) != -1) {
            zmq_msg_recv(&body, sub, 0);
            if (zmq_msg_size(&topic) == strlen(EVENT_TOPIC)) {
                got++;
                atomic_store_explicit(&r.received, got, memory_order_release);
            } else {
                atomic_store(&r.ready, true);
            }
        }
    }
    int64_t t1 = fonte_mono_us();
    pthread_join(th, NULL);
    if (got == n && t1 > r.t0_us)
        rate = (double) n * 1e6 / (double) (t1 - r.t0_us);
done:
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    zmq_close(sub);
    zmq_ctx_term(r.ctx);
    return rate;
}

/* --- the baseline: zmq_proxy in a thread --- */

typedef struct proxy {
    void *ctx, *xsub, *xpub;
    void *control_proxy, *control; /* the proxy thread's end, ours */
    char ingress[BROKER_ENDPOINT_MAX], egress[BROKER_ENDPOINT_MAX];
    pthread_t th;
} proxy_t;

static void *
proxy_main(void *arg)
{
    proxy_t *px = arg;
    zmq_proxy_steerable(px->xsub, px->xpub, NULL, px->control_proxy);
    return NULL;
}

static void *
proxy_side(proxy_t *px, int type, char *resolved)
{
    int64_t max_msg = (int64_t) codec_limits_default.max_msg;
    size_t len = BROKER_ENDPOINT_MAX;
    void *s = zmq_socket(px->ctx, type);

    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDHWM, HWM);
    set_int(s, ZMQ_RCVHWM, HWM);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (zmq_bind(s, "tcp://127.0.0.1:*") != 0)
        return NULL;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, resolved, &len);
    return s;
}

static void
proxy_close(proxy_t *px)
{
    zmq_close(px->control);
    zmq_close(px->control_proxy);
    zmq_close(px->xsub);
    zmq_close(px->xpub);
    zmq_ctx_term(px->ctx);
}

static int
proxy_start(proxy_t *px)
{
    memset(px, 0, sizeof *px);
    px->ctx = zmq_ctx_new();
    px->xsub = proxy_side(px, ZMQ_XSUB, px->ingress);
    px->xpub = proxy_side(px, ZMQ_XPUB, px->egress);
    px->control = zmq_socket(px->ctx, ZMQ_PAIR);
    px->control_proxy = zmq_socket(px->ctx, ZMQ_PAIR);
    zmq_bind(px->control, "inproc://bench-proxy-control");
    zmq_connect(px->control_proxy, "inproc://bench-proxy-control");
    if (px->xsub == NULL || px->xpub == NULL ||
        pthread_create(&px->th, NULL, proxy_main, px) != 0) {
        fprintf(stderr, "bench broker: cannot start zmq_proxy\n");
        proxy_close(px);
        return -1;
    }
    return 0;
}

static void
proxy_stop(proxy_t *px)
{
    zmq_send(px->control, "TERMINATE", 9, 0);
    pthread_join(px->th, NULL);
    proxy_close(px);
}

/* --- the benchmark --- */

static double
broker_run(const keys_t *keys, const payloads_t *p, size_t n)
{
    broker_opts_t o;
    broker_t *b = NULL;
    char err[512];

    broker_opts_init(&o);
    o.ingress = o.egress = "tcp://127.0.0.1:*";
    o.hwm = HWM;
    o.validate_full = true;
    if (keys != NULL) {
        o.curve_cert = keys->server_path;
        o.curve_clients = keys->clients;
    }
    if (broker_new(&o, &b, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "bench broker: %s\n", err);
        return -1;
    }
    double rate = run_once(broker_ingress_endpoint(b),
                           broker_egress_endpoint(b), keys, p, n);
    broker_counters_t c;
    broker_counters(b, &c);
    if (c.invalid != 0) {
        fprintf(stderr, "bench broker: the broker refused %llu events\n",
                (unsigned long long) c.invalid);
        rate = -1;
    }
    broker_destroy(&b);
    return rate;
}

static double
proxy_run(const payloads_t *p, size_t n)
{
    proxy_t px;
    if (proxy_start(&px) != 0)
        return -1;
    double rate = run_once(px.ingress, px.egress, NULL, p, n);
    proxy_stop(&px);
    return rate;
}

/* A server and a client key pair in a new directory, the client's
 * public certificate in its clients/. 0, or -1 (a line on stderr). */
static int
keys_make(keys_t *k)
{
    char path[160], err[512];
    memset(k, 0, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "/tmp/fonte-bench-curve-XXXXXX");
    if (mkdtemp(k->dir) == NULL)
        return -1;
    snprintf(k->server_path, sizeof k->server_path, "%s/server.key", k->dir);
    snprintf(k->clients, sizeof k->clients, "%s/clients", k->dir);
    snprintf(path, sizeof path, "%s/client.key", k->dir);
    char admitted[192];
    snprintf(admitted, sizeof admitted, "%s/client.key", k->clients);
    if (fcurve_keygen(k->server_path, "server", err, sizeof err) ||
        fcurve_keygen(path, "client", err, sizeof err) ||
        fcurve_cert_load(k->server_path, true, &k->server, err,
                         sizeof err) ||
        fcurve_cert_load(path, true, &k->client, err, sizeof err) ||
        mkdir(k->clients, 0755) != 0 || link(path, admitted) != 0) {
        fprintf(stderr, "bench broker: cannot make CURVE keys: %s\n",
                err[0] ? err : strerror(errno));
        return -1;
    }
    return 0;
}

static void
keys_remove(keys_t *k)
{
    static const char *const files[] = {
        "server.key", "server.key_secret", "client.key",
        "client.key_secret", "clients/client.key",
    };
    char path[192];
    if (k->dir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", k->dir, files[i]);
        unlink(path);
    }
    rmdir(k->clients);
    rmdir(k->dir);
}

int bench_broker(const bench_ctx_t *ctx); /* registered in main.c */

int
bench_broker(const bench_ctx_t *ctx)
{
    payloads_t p = { { 0 }, { 0 } };
    keys_t keys = { 0 };
    size_t n = ctx->quick ? 10000 : 25000;
    int rounds = ctx->quick ? QUICK_ROUNDS : ROUNDS;
    double br[ROUNDS], px[ROUNDS], cu[ROUNDS];
    int rc = 1;

    if (make_body(EVENT_TOPIC, EVENT_BYTES, &p.event) != FONTE_OK ||
        make_body(WARMUP_TOPIC, 64, &p.warmup) != FONTE_OK) {
        fprintf(stderr, "bench broker: cannot build the events\n");
        goto done;
    }
    if (keys_make(&keys) != 0)
        goto done;
    for (int i = 0; i < rounds; i++) {
        /* Alternate which goes first, so neither always runs warm. */
        bool broker_first = i % 2 == 0;
        if (broker_first && (br[i] = broker_run(NULL, &p, n)) < 0)
            goto done;
        if ((px[i] = proxy_run(&p, n)) < 0)
            goto done;
        if (!broker_first && (br[i] = broker_run(NULL, &p, n)) < 0)
            goto done;
        if ((cu[i] = broker_run(&keys, &p, n)) < 0)
            goto done;
    }
    double plain = bench_percentile(br, rounds, 50);
    bench_report("broker_throughput", plain, "events/s",
                 bench_percentile(px, rounds, 50));
    bench_report("broker_curve_throughput", bench_percentile(cu, rounds, 50),
                 "events/s", plain);
    rc = 0;
done:
    keys_remove(&keys);
    explicit_bzero(&keys, sizeof keys);
    codec_buf_free(&p.event);
    codec_buf_free(&p.warmup);
    return rc;
}
