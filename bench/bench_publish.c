/*
 * bench_publish.c - what a service sees: publish_confirmed, the rate at
 * which one libfonte producer gets events durably stored and confirmed,
 * and publish_ack_p99_us, how long a confirmation takes at a steady
 * 50 000 events/s.
 *
 * Setup: an in-process broker and listener (sync=batch, the default) on
 * ephemeral ports, and one client. ~150-byte events on 10 000 objects,
 * a dependency on every 4th.
 *
 * publish_confirmed: N events published as fast as fonte_publish takes
 * them, then fonte_flush; time from the first publish to flush's return.
 * Baseline, in the same run: raw LevelDB synced WriteBatches of the same
 * records - the very event bytes the listener stored, read back from its
 * store - and the same keys (store_event_keys, the function the
 * listener's batches use), INGEST_BATCH_MAX_DEFAULT events per batch,
 * into a fresh store. Only key building and writes are timed. (The bench
 * may not include leveldb/c.h; store.h offers store_write_raw for this.)
 *
 * publish_ack_p99_us: events published on a 50 000/s schedule (in 1 ms
 * ticks of 50) for 2 s;
 * a SUB of the bench's own on "$ack.<service>" timestamps every Ack as
 * it arrives (the client receives the same Acks at the same moment), and
 * each event's latency is from just before its fonte_publish to the
 * first Ack whose durable_seq covers it.
 *
 * Sizes: N = 500 000 and 2 s of paced publishing; --quick 50 000 and
 * 0.5 s.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "bench.h"
#include "broker.h"
#include "codec.h"
#include "fonte/fonte.h"
#include "ingest.h"
#include "listener.h"
#include "log.h"
#include "store.h"

#define SERVICE "bench-pub"
#define OBJECTS 10000
#define PACED_RATE 50000.0
#define KV_PER 8       /* keys per event: e, o, t, and d+r for one dep */
#define KEY_ROOM 600   /* key bytes per kv at most */

typedef struct rig {
    broker_t *broker;
    listener_t *listener;
    char data[PATH_MAX];
} rig_t;

static int
rig_start(const bench_ctx_t *ctx, rig_t *r, const char *name)
{
    broker_opts_t bo;
    listener_opts_t lo;
    char err[256];

    memset(r, 0, sizeof *r);
    snprintf(r->data, sizeof r->data, "%s/%s", ctx->tmpdir, name);
    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.stats_interval_us = 0;
    if (broker_new(&bo, &r->broker, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "publish: broker: %s\n", err);
        return -1;
    }
    listener_opts_init(&lo);
    lo.ingress = broker_ingress_endpoint(r->broker);
    lo.egress = broker_egress_endpoint(r->broker);
    lo.query = "tcp://127.0.0.1:*";
    lo.data = r->data;
    lo.stats_interval_us = 0;
    if (listener_new(&lo, &r->listener, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "publish: listener: %s\n", err);
        broker_destroy(&r->broker);
        return -1;
    }
    return 0;
}

static void
rig_stop(rig_t *r)
{
    listener_destroy(&r->listener);
    broker_destroy(&r->broker);
}

static fonte_client_t *
client_for(rig_t *r)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    fonte_client_opts_init(&o);
    o.service = SERVICE;
    o.ingress = broker_ingress_endpoint(r->broker);
    o.egress = broker_egress_endpoint(r->broker);
    o.query = listener_query_endpoint(r->listener);
    o.publish_timeout_ms = 30000;
    fonte_err rc = fonte_client_new(&o, &c);
    if (rc != FONTE_OK)
        fprintf(stderr, "publish: client: %s\n", fonte_strerror(rc));
    return c;
}

/* Publishes event i of the run (the same content for the same i). */
static fonte_err
publish_one(fonte_client_t *c, uint64_t i)
{
    static const char payload[100] =
        "bench payload: the service's own bytes, usually protobuf, here "
        "a fixed run of text ..............";
    char object[32], dep[32];
    const char *deps[1] = { dep };
    fonte_meta_t meta[1] = { { "correlation_id", "bench" } };
    fonte_event_spec_t s = { 0 };

    snprintf(object, sizeof object, "order:%llu",
             (unsigned long long) (i % OBJECTS));
    snprintf(dep, sizeof dep, "user:%llu", (unsigned long long) (i % 1000));
    s.type = "order.placed";
    s.object = object;
    s.depends_on = deps;
    s.n_depends_on = i % 4 == 0 ? 1 : 0;
    s.payload = payload;
    s.payload_len = sizeof payload;
    s.payload_type = "bench.Order";
    s.meta = meta;
    s.n_meta = 1;
    return fonte_publish(c, &s);
}

/* Events/s from the first publish to a successful flush; -1 on error. */
static double
run_confirmed(rig_t *r, uint64_t n)
{
    fonte_client_t *c = client_for(r);
    double rate = -1;

    if (c == NULL)
        return -1;
    int64_t t0 = fonte_mono_us();
    for (uint64_t i = 0; i < n; i++) {
        fonte_err rc = publish_one(c, i);
        if (rc != FONTE_OK) {
            fprintf(stderr, "publish: event %llu: %s\n",
                    (unsigned long long) i, fonte_strerror(rc));
            goto done;
        }
    }
    fonte_err rc = fonte_flush(c, 120000);
    if (rc != FONTE_OK) {
        fprintf(stderr, "publish: flush: %s\n", fonte_strerror(rc));
        goto done;
    }
    rate = (double) n / ((double) (fonte_mono_us() - t0) / 1e6);
done:
    fonte_client_destroy(&c);
    return rate;
}

/* Raw LevelDB: the records stored in dir, rewritten with the same keys
 * in synced batches into a fresh store. Events/s; -1 on error. */
static double
run_baseline(const bench_ctx_t *ctx, const char *dir)
{
    const size_t batch = INGEST_BATCH_MAX_DEFAULT;
    char out[PATH_MAX], err[512];
    store_opts_t so;
    store_t *src = NULL, *dst = NULL;
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    store_kv_t *kvs = calloc(batch * KV_PER, sizeof *kvs);
    char *keys = malloc(batch * KV_PER * KEY_ROOM);
    void **bodies = calloc(batch, sizeof *bodies);
    size_t *lens = calloc(batch, sizeof *lens);
    double rate = -1;
    uint64_t total = 0, seq = 0;
    int64_t timed = 0;

    if (!kvs || !keys || !bodies || !lens)
        goto done;
    store_opts_init(&so);
    so.dir = dir;
    so.create = false;
    so.sync = false;
    if (store_open(&so, &src, err, sizeof err) != FONTE_OK)
        goto fail;
    snprintf(out, sizeof out, "%s/publish-baseline", ctx->tmpdir);
    store_opts_init(&so);
    so.dir = out;
    so.sync = true;
    so.cache_bytes = (size_t) LISTENER_CACHE_MB_DEFAULT << 20;
    if (store_open(&so, &dst, err, sizeof err) != FONTE_OK)
        goto fail;
    if (store_snap_new(src, &snap) != FONTE_OK ||
        store_iter_events(snap, 0, &it) != FONTE_OK)
        goto done;

    for (bool more = true; more;) {
        size_t m = 0;
        store_item_t item;
        while (m < batch && (more = store_iter_next(it, &item))) {
            if ((bodies[m] = malloc(item.value.len)) == NULL)
                goto done;
            memcpy(bodies[m], item.value.ptr, item.value.len);
            lens[m++] = item.value.len;
        }
        int64_t t0 = fonte_mono_us();
        size_t nkv = 0, used = 0;
        for (size_t j = 0; j < m; j++) {
            codec_view_t v;
            if (codec_event_scan(bodies[j], lens[j], &codec_limits_default,
                                 &v) != FONTE_OK)
                goto done;
            size_t k = store_event_keys(++seq, &v, bodies[j], lens[j],
                                        kvs + nkv, KV_PER, keys + used,
                                        KV_PER * KEY_ROOM);
            for (size_t q = 0; q < k; q++)
                used += kvs[nkv + q].key_len;
            nkv += k;
        }
        if (m > 0 && store_write_raw(dst, kvs, nkv) != FONTE_OK)
            goto done;
        timed += fonte_mono_us() - t0;
        total += m;
        for (size_t j = 0; j < m; j++) {
            free(bodies[j]);
            bodies[j] = NULL;
        }
    }
    if (store_iter_error(it) == FONTE_OK && total > 0 && timed > 0)
        rate = (double) total / ((double) timed / 1e6);
    goto done;
fail:
    fprintf(stderr, "publish: baseline: %s\n", err);
done:
    for (size_t j = 0; bodies && j < batch; j++)
        free(bodies[j]);
    store_iter_destroy(&it);
    store_snap_destroy(&snap);
    store_close(&src);
    store_close(&dst);
    free(kvs);
    free(keys);
    free(bodies);
    free(lens);
    return rate;
}

/* Reads every Ack waiting on sub; each covers the events up to its
 * durable_seq: their latency is now - their publish time. */
static void
read_acks(void *sub, uint64_t session, const int64_t *pub_us,
          double *lat_us, uint64_t *acked)
{
    char topic[128];
    uint8_t body[512];

    for (;;) {
        if (zmq_recv(sub, topic, sizeof topic, ZMQ_DONTWAIT) < 0)
            return;
        int n = zmq_recv(sub, body, sizeof body, 0);
        int64_t now = fonte_mono_us();
        Fonte__Ack *ack = NULL;
        if (n <= 0 || codec_ack_decode(body, (size_t) n,
                                       &codec_limits_default, &ack))
            continue;
        if (ack->session == session)
            for (; *acked < ack->durable_seq; (*acked)++)
                lat_us[*acked] = (double) (now - pub_us[*acked]);
        fonte__ack__free_unpacked(ack, NULL);
    }
}

/* p99 of publish-to-Ack latency at PACED_RATE for seconds; -1 on error. */
static double
run_paced(rig_t *r, double seconds)
{
    uint64_t n = (uint64_t) (PACED_RATE * seconds), acked = 0, sent = 0;
    int64_t *pub_us = calloc(n, sizeof *pub_us);
    double *lat_us = calloc(n, sizeof *lat_us);
    fonte_client_t *c = client_for(r);
    void *zctx = zmq_ctx_new();
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    double p99 = -1;
    int linger = 0;

    if (!pub_us || !lat_us || !c || !sub)
        goto done;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "$ack." SERVICE,
                   strlen("$ack." SERVICE));
    zmq_connect(sub, broker_egress_endpoint(r->broker));
    uint64_t session = fonte_client_session(c);

    /* Warm-up: one confirmed event, so that every connection and
     * subscription is up before the clock starts. */
    if (publish_one(c, 0) != FONTE_OK || fonte_flush(c, 10000) != FONTE_OK)
        goto done;
    acked = 1;
    zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
    char scratch[512];
    zmq_poll(&item, 1, 100);
    while (zmq_recv(sub, scratch, sizeof scratch, ZMQ_DONTWAIT) >= 0)
        ; /* drop the warm-up's Acks (and their frames) */

    int64_t t0 = fonte_mono_us(), deadline = t0 + (int64_t) (seconds * 3e6);
    for (sent = 1; sent < n;) {
        int64_t now = fonte_mono_us();
        uint64_t due = 1 + (uint64_t) ((double) (now - t0) * PACED_RATE / 1e6);
        for (; sent < due && sent < n; sent++) {
            pub_us[sent] = fonte_mono_us();
            if (publish_one(c, sent) != FONTE_OK)
                goto done;
        }
        read_acks(sub, session, pub_us, lat_us, &acked);
        /* The schedule advances in 1 ms ticks (50 events each): wait
         * for the next tick on the Acks' socket rather than spin. */
        zmq_poll(&item, 1, 1);
    }
    while (acked < n && fonte_mono_us() < deadline) {
        zmq_poll(&item, 1, 10);
        read_acks(sub, session, pub_us, lat_us, &acked);
    }
    if (acked < n) {
        fprintf(stderr, "publish: paced: %llu of %llu acked\n",
                (unsigned long long) acked, (unsigned long long) n);
        goto done;
    }
    p99 = bench_percentile(lat_us + 1, n - 1, 99.0);
done:
    if (sub)
        zmq_close(sub);
    zmq_ctx_term(zctx);
    fonte_client_destroy(&c);
    free(pub_us);
    free(lat_us);
    return p99;
}

int bench_publish(const bench_ctx_t *ctx); /* registered in main.c */

int
bench_publish(const bench_ctx_t *ctx)
{
    uint64_t n = ctx->quick ? 50000 : 500000;
    double seconds = ctx->quick ? 0.5 : 2.0;
    rig_t r;

    if (rig_start(ctx, &r, "publish") != 0)
        return 1;
    double confirmed = run_confirmed(&r, n);
    rig_stop(&r); /* releases the store for the baseline to read */
    if (confirmed < 0)
        return 1;
    double base = run_baseline(ctx, r.data);
    if (base < 0)
        return 1;
    bench_report("publish_confirmed", confirmed, "events/s", base);

    if (rig_start(ctx, &r, "publish-paced") != 0)
        return 1;
    double p99 = run_paced(&r, seconds);
    rig_stop(&r);
    if (p99 < 0)
        return 1;
    bench_report_absolute("publish_ack_p99_us", p99, "us");
    return 0;
}
