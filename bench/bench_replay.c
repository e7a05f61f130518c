/*
 * bench_replay.c - replay latency and throughput over the query endpoint
 * (design.md §10):
 *
 *   replay_object_p50_us / _p99_us: REQ round trips replaying one object
 *     of 200 events that depends on 2 objects of 50 events each, in a
 *     store of 1M events over 10 000 objects (causal order, one page),
 *     1000 requests, to a listener with default options (so one read
 *     helper thread shares the replay's gets: --read-threads,
 *     listener/readers.h). The client waits for its reply in a blocking
 *     receive, as libfonte does by default; then walks each reply
 *     zero-copy and checks every event with codec_event_scan: it ends up
 *     with the bytes of each event, validated, as the baseline ends up
 *     with raw bytes. Baseline in the same run: the same keys read
 *     straight from LevelDB on one thread - the three objects' `o`
 *     prefix scans and a get of each `e` key - through store.h (only
 *     store.c may include leveldb/c.h; store.h is a thin layer over
 *     LevelDB's iterators and gets).
 *   replay_object_polling_p50_us / _p99_us: the same, the client polling
 *     for its reply for up to CLIENT_SPIN_US first (what libfonte's
 *     query_spin_us does: docs/client.md, "Latency"; this was the first
 *     line from 2026-11-29 05:40 to 08:30, before the read helper: a
 *     polling client then cost less than the wake-up of a sleeping one,
 *     and now it holds the CPU the helper would read on). Baseline: the
 *     raw reads.
 *   replay_object_pinned_p50_us: the same as the first, to a second
 *     listener on an identical copy of the store, run with --query-cpu
 *     (its query thread and query I/O thread on this process's last CPU;
 *     so, by default, no polling after replies): what that option buys
 *     (docs/operations.md).
 *   replay_object_floor_us: what the same REQ round trip (the client
 *     sleeping, as for the first line) costs when the server does nothing
 *     but the baseline's raw reads, on one thread, and replies with as
 *     many bytes as the replay did - a ROUTER in a context of its own (as
 *     the listener's is), not pinned, on the listener's store handle,
 *     waiting for requests much as the listener's query thread does
 *     (polling for QUERY_SPIN_US_DEFAULT after each reply; the listener
 *     starts polling from the second request of a burst, this from the
 *     first). Baseline: the raw reads again. Its ratio is what a server
 *     that reads as the baseline does costs behind ZeroMQ with default
 *     scheduling on this machine; the listener's replay, reading on two
 *     threads, can come in under it.
 *   replay_object_fetch_p50_us: the same replay asked through libfonte,
 *     fonte_fetch (its pooled REQ socket, the reply decoded into an
 *     event list; default options). Baseline: the first line's p50, the
 *     bare REQ round trip of the same request: the ratio is what the
 *     client library adds.
 *   The six take turns in blocks of TURN requests (raw reads, replays
 *     slept for, replays polled for, pinned replays, floor, fetches), so
 *     that all six see the same phases of a shared machine, which last
 *     seconds; within a block each runs back to back, as it would alone.
 *     Each turn starts one part later than the one before, so that no
 *     part always follows the same other one. (Turns of one request
 *     each were tried: every raw read then ran right after a round trip
 *     and took 20-50% longer than back to back, which flattered every
 *     ratio.)
 *   machine_two_thread_speedup: two CPU-bound threads at once against
 *     one alone; baseline 2.0, what two CPUs of our own give. Printed
 *     before the whole-store part, which needs two.
 *   machine_cpu_spread: the raw object reads timed on each CPU in turn
 *     (a thread pinned to it), the slowest CPU's median over the
 *     fastest's; baseline 1.0, CPUs of one speed. A shared VM's vCPUs
 *     can differ for minutes at a time, and a replay that keeps two busy
 *     runs at the slower one's pace.
 *   replay_all_throughput: a causal replay of the whole store ("*"),
 *     every page (10 000 events) fetched and checked the same way (the
 *     client sleeping for each: polling would take a CPU from the
 *     listener's two threads), events/s. Baseline: a raw full scan of
 *     the `e` keys, with the read options the replay's own scan uses
 *     (fill_cache off, which alone makes a scan about 25% faster: the
 *     same for both sides). After one
 *     untimed scan (which maps the tables in: the first pass over a
 *     freshly opened store is 30% slower on either side), the two sides
 *     run in turns, ALL_RUNS times each, and each side's median is
 *     reported: a single pass over 1M events varied by +-25% from run to
 *     run on a shared machine, in phases of seconds, and taking turns
 *     puts both sides in the same phases.
 *
 * Both baselines read through the listener's own LevelDB handle
 * (listener_store): the same table cache and block cache as the replay.
 * Each part starts with the store at rest (bench_settle_dir): writing
 * the store leaves LevelDB compactions pending, and the object reads
 * trigger more (a file is compacted after enough seeks on it); one in
 * the background during a timed run took the second core from whichever
 * side had two threads to run - the replay.
 *
 * The store is written directly with store batches (sync off), not
 * through ingest: this measures replay, and building 1M events through
 * the broker would dominate the run. The listener runs in process on
 * that store, its broker endpoints pointing nowhere (replays in RETURN
 * mode do not need the broker).
 *
 * Sizes: 1 000 000 events, --quick 50 000 (and 100 requests).
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "bench.h"
#include "codec.h"
#include "fonte/fonte.h"
#include "listener.h"
#include "log.h"
#include "store.h"

#define ROOT "order:root"
#define DEP_A "user:a"
#define DEP_B "user:b"

static const codec_limits_t lim = CODEC_LIMITS_DEFAULT;

#define ALL_RUNS 5
#define TURN 50 /* object requests per turn of each side */
#define PARTS 6 /* the object part's sides: raw, 2 replays, pinned, floor, fetch */

typedef struct layout {
    size_t n, objects, requests;
} layout_t;

/* The object and dependencies of event i: the root's 200 and the two
 * dependencies' 50 each are spread evenly through the log. */
static void
event_shape(const layout_t *l, size_t i, char *object, size_t cap,
            const char **deps, size_t *n_deps)
{
    size_t stride = l->n / 300;
    *n_deps = 0;
    if (i % stride == 0 && i / stride < 300) {
        size_t k = i / stride;
        if (k % 3 == 0) {
            snprintf(object, cap, "%s", k < 150 ? DEP_A : DEP_B);
        } else {
            snprintf(object, cap, "%s", ROOT);
            if (k == 1) {
                deps[(*n_deps)++] = DEP_A;
                deps[(*n_deps)++] = DEP_B;
            }
        }
        return;
    }
    snprintf(object, cap, "obj:%zu", i % l->objects);
    if (i % 4 == 0) {
        static char dep[32];
        snprintf(dep, sizeof dep, "obj:%zu", (i * 7 + 3) % l->objects);
        deps[(*n_deps)++] = dep;
    }
}

static int
build_store(const layout_t *l, const char *dir)
{
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    so.sync = false;
    so.write_buffer = (size_t) 16 << 20;
    store_t *s = NULL;
    store_batch_t *b = NULL;
    char err[256] = "";
    uint8_t payload[120];
    memset(payload, 'p', sizeof payload);

    if (store_open(&so, &s, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "bench replay: %s\n", err);
        return 1;
    }
    if (store_batch_new(s, &b) != FONTE_OK)
        return 1;
    for (size_t i = 0; i < l->n; i++) {
        char object[64], id[CODEC_ID_MAX];
        const char *deps[2];
        size_t nd;
        event_shape(l, i, object, sizeof object, deps, &nd);
        Fonte__Event ev = FONTE__EVENT__INIT;
        codec_format_id(id, "bench", 5, 1, i + 1);
        ev.id = id;
        ev.type = strncmp(object, "user:", 5) == 0 ? "user.changed"
                                                   : "thing.changed";
        ev.object = object;
        ev.depends_on = (char **) deps;
        ev.n_depends_on = nd;
        ev.producer = "bench";
        ev.session = 1;
        ev.producer_seq = i + 1;
        ev.payload.data = payload;
        ev.payload.len = sizeof payload;
        codec_buf_t topic, body;
        codec_view_t v;
        if (codec_event_encode(&ev, &lim, &topic, &body) != FONTE_OK ||
            codec_event_scan(body.data, body.len, &lim, &v) != FONTE_OK ||
            store_batch_put(b, &v, body.data, body.len, NULL) != FONTE_OK) {
            fprintf(stderr, "bench replay: cannot build event %zu\n", i);
            return 1;
        }
        codec_buf_free(&topic);
        codec_buf_free(&body);
        if (store_batch_count(b) == 10000 || i + 1 == l->n) {
            if (store_batch_commit(b) != FONTE_OK) {
                fprintf(stderr, "bench replay: commit failed\n");
                return 1;
            }
            store_batch_clear(b);
        }
    }
    store_batch_destroy(&b);
    store_close(&s);
    return 0;
}

/* Raw reads of the three objects: o-prefix scans plus e gets. */
static size_t
raw_object_read(store_t *s)
{
    static const char *const objs[] = { ROOT, DEP_A, DEP_B };
    store_snap_t *snap = NULL;
    size_t n = 0;

    store_snap_new(s, &snap);
    for (int k = 0; k < 3; k++) {
        store_iter_t *it = NULL;
        store_item_t item;
        store_iter_object(snap, objs[k], strlen(objs[k]), 0, &it);
        while (store_iter_next(it, &item)) {
            void *data = NULL;
            size_t len = 0;
            if (store_get_event(snap, item.seq, &data, &len) == FONTE_OK)
                n++;
            store_free(data);
        }
        store_iter_destroy(&it);
    }
    store_snap_destroy(&snap);
    return n;
}

/* How the polling line's client waits for its reply: polling
 * (zmq_msg_recv with ZMQ_DONTWAIT, again and again) for up to this long,
 * then in a blocking receive - what libfonte's query_spin_us does. The
 * other lines' clients block at once (0). */
#define CLIENT_SPIN_US 1000

/* Receives the reply into m, polling for up to spin_us first. */
static int
reply_recv(zmq_msg_t *m, void *req, int spin_us)
{
    int64_t until = fonte_mono_us() + spin_us;
    while (spin_us > 0) {
        int r = zmq_msg_recv(m, req, ZMQ_DONTWAIT);
        if (r >= 0 || zmq_errno() != EAGAIN)
            return r;
        if (fonte_mono_us() >= until)
            break;
    }
    return zmq_msg_recv(m, req, 0);
}

/* One REQ round trip; the reply is walked zero-copy and each event's
 * bytes checked with codec_event_scan - what a client that consumes
 * event bytes does, and the same kind of result the raw baseline yields
 * (the bytes of each event). Returns the number of valid events, or -1;
 * the cursor for the next page is copied into cur (len 0 on the last). */
static long
ask(void *req, const char *object, uint32_t page_size,
    ProtobufCBinaryData *cur, uint8_t *curbuf, size_t curcap,
    size_t *reply_len, int spin_us)
{
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    Fonte__Request q = FONTE__REQUEST__INIT;
    r.object = (char *) object;
    r.page_size = page_size;
    if (cur != NULL && cur->len > 0)
        r.cursor = *cur;
    q.body_case = FONTE__REQUEST__BODY_REPLAY;
    q.replay = &r;
    codec_buf_t b;
    if (codec_pack(&q.base, &b) != FONTE_OK)
        return -1;
    zmq_send(req, b.data, b.len, 0);
    codec_buf_free(&b);
    zmq_msg_t m;
    zmq_msg_init(&m);
    long n = -1;
    codec_reply_view_t v;
    if (reply_recv(&m, req, spin_us) >= 0 &&
        codec_reply_scan(zmq_msg_data(&m), zmq_msg_size(&m), &lim, &v) ==
            FONTE_OK &&
        v.status == FONTE__REPLY__STATUS__OK) {
        if (reply_len != NULL)
            *reply_len = zmq_msg_size(&m);
        size_t pos = 0;
        codec_slice_t e;
        codec_view_t ev;
        n = 0;
        while (codec_reply_next_event(&v, &pos, &e))
            if (codec_event_scan(e.ptr, e.len, &lim, &ev) == FONTE_OK)
                n++;
        if (cur != NULL) {
            cur->len = v.cursor.len <= curcap ? v.cursor.len : 0;
            memcpy(curbuf, v.cursor.ptr, cur->len);
            cur->data = curbuf;
        }
    }
    zmq_msg_close(&m);
    return n;
}

/* One replay of the root object, the client waiting for the reply as
 * spin_us says: microseconds, or -1 (a line on stderr) unless it gave the
 * 300 events. */
static double
timed_ask(void *req, int spin_us)
{
    int64_t t0 = fonte_mono_us();
    long n = ask(req, ROOT, 1000, NULL, NULL, 0, NULL, spin_us);
    if (n != 300) {
        fprintf(stderr, "bench replay: a replay gave %ld events\n", n);
        return -1;
    }
    return (double) (fonte_mono_us() - t0);
}

/* One fonte_fetch of the root object through libfonte: microseconds, or
 * -1 (a line on stderr) unless it gave the 300 events. */
static double
timed_fetch(fonte_client_t *c)
{
    fonte_event_list_t *l = NULL;
    int64_t t0 = fonte_mono_us();
    fonte_err rc = fonte_fetch(c, ROOT, NULL, &l);
    double us = (double) (fonte_mono_us() - t0);
    size_t n = fonte_event_list_count(l);
    fonte_event_list_destroy(&l);
    if (rc != FONTE_OK || n != 300) {
        fprintf(stderr, "bench replay: fonte_fetch gave %s, %zu events\n",
                fonte_errname(rc), n);
        return -1;
    }
    return us;
}

/* machine_cpu_spread: the baseline's raw object reads timed on each CPU
 * the process may run on, a thread pinned to each in turn. */
#define PROBE_READS 30

typedef struct cpu_probe {
    store_t *store;
    int cpu;
    double us; /* the median read, -1 if the thread could not be pinned */
} cpu_probe_t;

static void *
probe_main(void *arg)
{
    cpu_probe_t *p = arg;
    cpu_set_t set;
    double t[PROBE_READS];

    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    p->us = -1;
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
        return NULL;
    raw_object_read(p->store); /* on this CPU's caches */
    for (int i = 0; i < PROBE_READS; i++) {
        int64_t t0 = fonte_mono_us();
        raw_object_read(p->store);
        t[i] = (double) (fonte_mono_us() - t0);
    }
    p->us = bench_percentile(t, PROBE_READS, 50);
    return NULL;
}

/* The slowest CPU's median raw object read over the fastest's: 1.0 when
 * the CPUs run the same work at the same speed. A shared VM's vCPUs need
 * not: on the 2-vCPU machine of docs/performance.md the same scan ran
 * 1.6 times slower on one than on the other for minutes at a time, and
 * a replay, which keeps both busy, then runs at the slower one's pace
 * while a one-thread baseline may run on the faster. -1 with fewer than
 * two CPUs. */
static double
cpu_spread(store_t *s)
{
    cpu_set_t allowed;
    double lo = 0, hi = 0;
    int n = 0;

    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < 64; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        cpu_probe_t p = { s, cpu, -1 };
        pthread_t t;
        if (pthread_create(&t, NULL, probe_main, &p) != 0)
            continue;
        pthread_join(t, NULL);
        if (p.us <= 0)
            continue;
        lo = n == 0 || p.us < lo ? p.us : lo;
        hi = p.us > hi ? p.us : hi;
        n++;
    }
    return n >= 2 ? hi / lo : -1;
}

/* A CPU-bound loop for spin_speedup. */
static void *
spin(void *arg)
{
    volatile uint64_t x = 0;
    for (uint64_t i = 0; i < 300000000ULL; i++)
        x += i;
    return arg;
}

/* What the machine gives two threads right now: twice the time of one
 * CPU-bound loop alone over the time of two at once (2.0: two CPUs to
 * ourselves; 1.0: one). The whole-store replay needs two - its threads
 * together spend about 2.7 times what the scan does - so its ratio is
 * read next to this. -1 if a thread could not start. */
static double
spin_speedup(void)
{
    pthread_t a, b;
    int64_t t0 = fonte_mono_us();
    spin(NULL);
    int64_t one = fonte_mono_us() - t0;
    t0 = fonte_mono_us();
    if (pthread_create(&a, NULL, spin, NULL) != 0)
        return -1;
    if (pthread_create(&b, NULL, spin, NULL) != 0) {
        pthread_join(a, NULL);
        return -1;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    int64_t two = fonte_mono_us() - t0;
    return two > 0 ? 2.0 * (double) one / (double) two : -1;
}

/* A raw full scan of the `e` keys, with the replay's read options:
 * events/s. */
static double
raw_scan(store_t *s, size_t *scanned)
{
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    store_item_t item;
    int64_t t0 = fonte_mono_us();

    *scanned = 0;
    store_snap_new(s, &snap);
    store_snap_bulk(snap); /* the read options the replay's scan uses */
    store_iter_events(snap, 0, &it);
    while (store_iter_next(it, &item))
        *scanned += item.value.len > 0;
    store_iter_destroy(&it);
    store_snap_destroy(&snap);
    return (double) *scanned * 1e6 / (double) (fonte_mono_us() - t0);
}

/* A causal replay of the whole store, every page fetched and checked:
 * events/s, or -1 (a line on stderr) if it failed or fell short. */
static double
replay_all(void *req, size_t n)
{
    size_t got = 0;
    ProtobufCBinaryData cur = { 0, NULL };
    uint8_t curbuf[64];
    int64_t t0 = fonte_mono_us();

    do {
        long k = ask(req, "*", 10000, &cur, curbuf, sizeof curbuf, NULL, 0);
        if (k < 0) {
            fprintf(stderr, "bench replay: full replay failed\n");
            return -1;
        }
        got += (size_t) k;
    } while (cur.len > 0);
    double rate = (double) got * 1e6 / (double) (fonte_mono_us() - t0);
    if (got != n) {
        fprintf(stderr, "bench replay: full replay gave %zu of %zu events\n",
                got, n);
        return -1;
    }
    return rate;
}

/* A REQ in a ZeroMQ context of its own, as a separate client process
 * would have: LINGER 0, replies up to 64 MiB, a receive timeout. */
typedef struct req_client {
    void *zctx, *req;
} req_client_t;

static void
req_open(req_client_t *c, const char *endpoint, int timeout_ms)
{
    int linger = 0, maxmsg = 64 << 20;
    c->zctx = zmq_ctx_new();
    c->req = zmq_socket(c->zctx, ZMQ_REQ);
    zmq_setsockopt(c->req, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->req, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(c->req, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_connect(c->req, endpoint);
}

static void
req_close(req_client_t *c)
{
    if (c->req != NULL)
        zmq_close(c->req);
    if (c->zctx != NULL)
        zmq_ctx_term(c->zctx);
    c->req = c->zctx = NULL;
}

/* The floor server: a ROUTER in its own ZeroMQ context that answers each
 * request with the raw reads of the baseline and `reply_len` bytes (not
 * pinned, as the default listener's query pair); and a REQ in another
 * context to ask it. */
typedef struct floor_srv {
    store_t *store;
    size_t reply_len;
    void *zctx, *router;
    req_client_t client;
    char endpoint[64];
    pthread_t thread;
    atomic_bool stop;
} floor_srv_t;

static void *
floor_main(void *arg)
{
    floor_srv_t *f = arg;
    uint8_t *reply = calloc(1, f->reply_len ? f->reply_len : 1);
    zmq_pollitem_t pi = { f->router, 0, ZMQ_POLLIN, 0 };
    bool hot = false; /* a request was just answered */
    while (reply != NULL && !atomic_load(&f->stop)) {
        /* waiting as the listener's query thread does (query.c,
         * spin_serve): after a reply, polled for QUERY_SPIN_US_DEFAULT
         * before sleeping, so that the floor stays what a server that
         * only reads could do */
        bool ready = false;
        if (hot) {
            int64_t until = fonte_mono_us() + QUERY_SPIN_US_DEFAULT;
            do {
                int ev = 0;
                size_t sz = sizeof ev;
                ready = zmq_getsockopt(f->router, ZMQ_EVENTS, &ev, &sz) == 0 &&
                        (ev & ZMQ_POLLIN);
            } while (!ready && fonte_mono_us() < until);
            hot = false;
        }
        if (!ready && zmq_poll(&pi, 1, 100) <= 0)
            continue;
        zmq_msg_t id, delim, body;
        zmq_msg_init(&id);
        zmq_msg_init(&delim);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, f->router, 0) >= 0 &&
            zmq_msg_recv(&delim, f->router, 0) >= 0 &&
            zmq_msg_recv(&body, f->router, 0) >= 0) {
            raw_object_read(f->store);
            zmq_msg_send(&id, f->router, ZMQ_SNDMORE);
            zmq_msg_send(&delim, f->router, ZMQ_SNDMORE);
            zmq_send(f->router, reply, f->reply_len, 0);
            hot = true;
        }
        zmq_msg_close(&id);
        zmq_msg_close(&delim);
        zmq_msg_close(&body);
    }
    free(reply);
    return NULL;
}

static void
floor_stop(floor_srv_t *f)
{
    req_close(&f->client);
    if (f->thread) {
        atomic_store(&f->stop, true);
        pthread_join(f->thread, NULL);
    }
    if (f->router != NULL)
        zmq_close(f->router);
    if (f->zctx != NULL)
        zmq_ctx_term(f->zctx);
}

/* 0 when the floor server is up and its REQ connected, else -1. */
static int
floor_start(floor_srv_t *f, store_t *s, size_t reply_len)
{
    size_t len = sizeof f->endpoint;
    int linger = 0;

    memset(f, 0, sizeof *f);
    f->store = s;
    f->reply_len = reply_len;
    atomic_init(&f->stop, false);
    f->zctx = zmq_ctx_new();
    f->router = zmq_socket(f->zctx, ZMQ_ROUTER);
    zmq_setsockopt(f->router, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(f->router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &len)) {
        floor_stop(f);
        return -1;
    }
    if (pthread_create(&f->thread, NULL, floor_main, f) != 0) {
        f->thread = 0;
        floor_stop(f);
        return -1;
    }
    req_open(&f->client, f->endpoint, 10000);
    return 0;
}

/* One round trip to the floor server: microseconds, or -1. */
static double
floor_ask(floor_srv_t *f)
{
    int64_t t0 = fonte_mono_us();
    zmq_msg_t m;
    zmq_msg_init(&m);
    bool got = zmq_send(f->client.req, "r", 1, 0) == 1 &&
               reply_recv(&m, f->client.req, 0) ==
                   (int) f->reply_len;
    zmq_msg_close(&m);
    return got ? (double) (fonte_mono_us() - t0) : -1;
}

/* The pinned listener's --query-cpu: the last CPU this process may run
 * on (the first is where the kernel and most threads start). */
static int
last_cpu(void)
{
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0)
        return -1;
    for (int c = CPU_SETSIZE - 1; c >= 0; c--)
        if (CPU_ISSET(c, &mine))
            return c;
    return -1;
}

/* A copy of the store directory src (its plain files) at dst: the pinned
 * listener's store, identical to the default one's. 0 or -1. */
static int
copy_dir(const char *src, const char *dst)
{
    char from[1024], to[1024];
    DIR *d = opendir(src);
    struct dirent *e;
    int rc = d != NULL && mkdir(dst, 0755) == 0 ? 0 : -1;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
        struct stat st;
        if (stat(from, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
        char buf[1 << 16];
        size_t n;
        while (in != NULL && out != NULL &&
               (n = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, n, out) != n)
                rc = -1;
        if (in == NULL || out == NULL || ferror(in))
            rc = -1;
        if (in != NULL)
            fclose(in);
        if (out != NULL && fclose(out) != 0)
            rc = -1;
    }
    if (d != NULL)
        closedir(d);
    return rc;
}

/* A listener on dir (its query pair on cpu, or not pinned: -1) and a REQ
 * connected to it. */
typedef struct side {
    listener_t *l;
    req_client_t client;
} side_t;

static int
side_open(side_t *sd, const char *dir, int cpu)
{
    listener_opts_t lo;
    char err[256] = "";

    memset(sd, 0, sizeof *sd);
    listener_opts_init(&lo);
    lo.data = dir;
    lo.query = "tcp://127.0.0.1:*";
    lo.egress = "tcp://127.0.0.1:9"; /* nowhere: replays need no broker */
    lo.ingress = "tcp://127.0.0.1:9";
    lo.stats_interval_us = 0;
    lo.query_cpu = cpu;
    if (listener_new(&lo, &sd->l, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "bench replay: %s\n", err);
        return -1;
    }
    req_open(&sd->client, listener_query_endpoint(sd->l), 60000);
    return 0;
}

static void
side_close(side_t *sd)
{
    req_close(&sd->client);
    listener_destroy(&sd->l);
}

int bench_replay(const bench_ctx_t *ctx);
static int replay_run(const bench_ctx_t *ctx);

/* The listeners here have no broker on purpose, and say so after 5 s
 * (a warning): not printed unless asked for (FONTE_LOG_LEVEL=info or
 * debug). */
int
bench_replay(const bench_ctx_t *ctx)
{
    flog_level was = flog_get_level();
    if (was == FLOG_WARN)
        flog_set_level(FLOG_ERROR);
    int rc = replay_run(ctx);
    flog_set_level(was);
    return rc;
}

static int
replay_run(const bench_ctx_t *ctx)
{
    layout_t l = { ctx->quick ? 50000 : 1000000, ctx->quick ? 1000 : 10000,
                   ctx->quick ? 100 : 1000 };
    char dir[512], pdir[512];
    snprintf(dir, sizeof dir, "%s/replay-store", ctx->tmpdir);
    snprintf(pdir, sizeof pdir, "%s/replay-store-pinned", ctx->tmpdir);
    if (build_store(&l, dir) != 0)
        return 1;
    if (copy_dir(dir, pdir) != 0) {
        fprintf(stderr, "bench replay: cannot copy the store to %s\n", pdir);
        return 1;
    }

    /* two listeners on identical stores: the default one (its LevelDB
     * handle serves the baselines too) and one with --query-cpu */
    side_t dflt, pinned;
    int cpu = last_cpu();
    if (side_open(&dflt, dir, -1) != 0)
        return 1;
    if (side_open(&pinned, pdir, cpu) != 0) {
        side_close(&dflt);
        return 1;
    }
    store_t *s = listener_store(dflt.l);
    void *req = dflt.client.req;
    bench_settle_dir(dir);
    bench_settle_dir(pdir);

    /* one object: the raw reads, the two replays and the floor take turns
     * in blocks of TURN requests (each warmed once) */
    double *base = calloc(l.requests, sizeof *base);
    double *ours = calloc(l.requests, sizeof *ours);
    double *pin = calloc(l.requests, sizeof *pin);
    double *flr = calloc(l.requests, sizeof *flr);
    double *lib = calloc(l.requests, sizeof *lib);
    double *pol = calloc(l.requests, sizeof *pol);
    int rc = base == NULL || ours == NULL || pin == NULL || flr == NULL ||
             lib == NULL || pol == NULL;
    fonte_client_opts_t co;
    fonte_client_t *client = NULL;
    fonte_client_opts_init(&co);
    co.service = "bench";
    co.query = listener_query_endpoint(dflt.l);
    co.ingress = co.egress = "tcp://127.0.0.1:9"; /* fetches only */
    co.query_timeout_ms = 10000;
    co.query_spin_us = 0; /* libfonte's default: the first line's client */
    if (rc == 0 && fonte_client_new(&co, &client) != FONTE_OK) {
        fprintf(stderr, "bench replay: cannot make a libfonte client\n");
        rc = 1;
    }
    size_t expect = raw_object_read(s), reply_len = 0;
    if (expect != 300) {
        fprintf(stderr, "bench replay: layout gave %zu events, not 300\n",
                expect);
        rc = 1;
    }
    if (rc == 0 &&
        (ask(req, ROOT, 1000, NULL, NULL, 0, &reply_len, 0) != 300 ||
         ask(pinned.client.req, ROOT, 1000, NULL, NULL, 0, NULL, 0) != 300 ||
         timed_fetch(client) < 0)) {
        fprintf(stderr, "bench replay: warm-up replay failed\n");
        rc = 1;
    }
    floor_srv_t fl;
    bool fl_up = rc == 0 && floor_start(&fl, s, reply_len) == 0;
    if (rc == 0 && (!fl_up || floor_ask(&fl) < 0)) {
        fprintf(stderr, "bench replay: the floor server failed\n");
        rc = 1;
    }
    for (size_t at = 0; at < l.requests && rc == 0; at += TURN) {
        size_t end = at + TURN < l.requests ? at + TURN : l.requests;
        /* each turn starts one part later than the one before, so that
         * no part always runs right after the same other one */
        for (size_t k = 0; k < PARTS && rc == 0; k++) {
            size_t part = (k + at / TURN) % PARTS;
            for (size_t i = at; i < end && rc == 0; i++) {
                int64_t t0 = fonte_mono_us();
                switch (part) {
                case 0:
                    raw_object_read(s);
                    base[i] = (double) (fonte_mono_us() - t0);
                    break;
                case 1:
                    ours[i] = timed_ask(req, 0);
                    break;
                case 2:
                    pol[i] = timed_ask(req, CLIENT_SPIN_US);
                    break;
                case 3:
                    pin[i] = timed_ask(pinned.client.req, 0);
                    break;
                case 4:
                    flr[i] = floor_ask(&fl);
                    break;
                default:
                    lib[i] = timed_fetch(client);
                    break;
                }
                if (ours[i] < 0 || pol[i] < 0 || pin[i] < 0 || flr[i] < 0 ||
                    lib[i] < 0)
                    rc = 1;
            }
        }
        if (rc != 0)
            fprintf(stderr, "bench replay: a request failed\n");
    }
    if (rc == 0) {
        double b50 = bench_percentile(base, l.requests, 50);
        double b99 = bench_percentile(base, l.requests, 99);
        bench_report("replay_object_p50_us",
                     bench_percentile(ours, l.requests, 50), "us", b50);
        bench_report("replay_object_p99_us",
                     bench_percentile(ours, l.requests, 99), "us", b99);
        bench_report("replay_object_polling_p50_us",
                     bench_percentile(pol, l.requests, 50), "us", b50);
        bench_report("replay_object_polling_p99_us",
                     bench_percentile(pol, l.requests, 99), "us", b99);
        bench_report("replay_object_pinned_p50_us",
                     bench_percentile(pin, l.requests, 50), "us", b50);
        bench_report("replay_object_floor_us",
                     bench_percentile(flr, l.requests, 50), "us", b50);
        bench_report("replay_object_fetch_p50_us",
                     bench_percentile(lib, l.requests, 50), "us",
                     bench_percentile(ours, l.requests, 50));
    }
    fonte_client_destroy(&client);
    if (fl_up)
        floor_stop(&fl);
    side_close(&pinned);

    /* the whole store: one untimed scan, then the two sides in turns */
    double scan_rate[ALL_RUNS], all_rate[ALL_RUNS];
    size_t scanned = 0;
    if (rc == 0) {
        bench_settle_dir(dir);
        raw_scan(s, &scanned);
        double sp = spin_speedup();
        if (sp > 0) /* baseline: what two CPUs of our own would give */
            bench_report("machine_two_thread_speedup", sp, "x", 2.0);
        double spread = cpu_spread(s);
        if (spread > 0) /* baseline: CPUs of one speed */
            bench_report("machine_cpu_spread", spread, "x", 1.0);
    }
    for (size_t run = 0; run < ALL_RUNS && rc == 0; run++) {
        scan_rate[run] = raw_scan(s, &scanned);
        all_rate[run] = replay_all(req, l.n);
        if (scanned != l.n || all_rate[run] < 0)
            rc = 1;
    }
    if (rc == 0)
        bench_report("replay_all_throughput",
                     bench_percentile(all_rate, ALL_RUNS, 50), "events/s",
                     bench_percentile(scan_rate, ALL_RUNS, 50));

    side_close(&dflt);
    free(base);
    free(ours);
    free(pin);
    free(flr);
    free(lib);
    free(pol);
    return rc;
}
