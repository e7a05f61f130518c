/*
 * bench_ingest.c - ingest_throughput: durable, acked ingest through the
 * broker into fonte-listener (--sync=batch), against raw LevelDB synced
 * WriteBatches of the same records and keys in the same run; and
 * listener_peak_rss_mb, the listener's VmHWM while it ingests.
 *
 * Setup: an in-process broker on ephemeral ports; the listener as a
 * CHILD process (build/bin/fonte-listener, found beside fonte-bench), so
 * that its peak RSS is its own and not this process's; one PUB carrying
 * 4 producer sessions of N/4 events each (~200-byte events, 10 000
 * objects, a dependency on every 4th), and a SUB on "$ack.bench". The
 * publisher keeps at most WINDOW unacked events per session (an outbox,
 * as libfonte does), well under every HWM and the listener's queue, and
 * resends go-back-N from durable_seq + 1 on a gap Ack. The time runs from
 * the first send to the Ack that covers the last event of every session.
 *
 * Baseline: the same events (same bytes), the same `e`/`o`/`t`/`d`/`r`
 * keys (store_event_keys, the function the listener's batches use), in
 * synced WriteBatches of INGEST_BATCH_MAX_DEFAULT events written with
 * store_write_raw into a fresh store with the same options. The bench
 * may not include leveldb/c.h (only listener/store.c does), hence these
 * two store.h calls. Only the key building and the writes are timed,
 * not the encoding, so the baseline is the best raw LevelDB can do with
 * the listener's batch size.
 *
 * Memory: listener_peak_rss_mb is the child's VmHWM (the goal's
 * figure); listener_peak_anon_mb and listener_peak_file_mb are the
 * peaks of its RssAnon and RssFile sampled every 50 ms, because VmHWM
 * also counts the shared libraries and the pages of LevelDB's mmapped
 * table files that compactions touch (page cache, not heap).
 *
 * Sizes: N = 2 000 000 (the RSS goal's size), --quick 50 000.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "broker.h"
#include "codec.h"
#include "ingest.h"
#include "listener.h"
#include "log.h"
#include "store.h"

extern char **environ;

#define SESSIONS 4
#define WINDOW 10000          /* unacked events per session */
#define OBJECTS 10000
#define STALL_US 20000000     /* no Ack progress for 20 s: give up */
#define WARM_SESSION 99

static const codec_limits_t lim = CODEC_LIMITS_DEFAULT;

/* Peaks of the child's RssAnon and RssFile (MiB), sampled while the
 * publisher runs: VmHWM counts both, and RssFile is mostly LevelDB's
 * mmapped table files (page cache the kernel can drop), so the report
 * names the anonymous part too. */
static pid_t child;
static double peak_anon_mb, peak_file_mb;
static int64_t next_sample_us;

static void
sample_rss(void)
{
    char path[64], line[256];
    int64_t now = fonte_mono_us();
    if (child <= 0 || now < next_sample_us)
        return;
    next_sample_us = now + 50000;
    snprintf(path, sizeof path, "/proc/%d/status", (int) child);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        double mb;
        if (strncmp(line, "RssAnon:", 8) == 0 &&
            (mb = strtod(line + 8, NULL) / 1024.0) > peak_anon_mb)
            peak_anon_mb = mb;
        if (strncmp(line, "RssFile:", 8) == 0 &&
            (mb = strtod(line + 8, NULL) / 1024.0) > peak_file_mb)
            peak_file_mb = mb;
    }
    fclose(f);
}

/* Event (session, pseq) of the run, always the same bytes. */
static fonte_err
make_event(uint64_t session, uint64_t pseq, codec_buf_t *topic,
           codec_buf_t *body)
{
    static const uint8_t payload[96] = { 1, 2, 3 };
    char id[CODEC_ID_MAX], object[32], dep[32];
    char *deps[1] = { dep };
    uint64_t i = (pseq - 1) * SESSIONS + (session - 1);
    Fonte__Event ev = FONTE__EVENT__INIT;

    snprintf(object, sizeof object, "order:%llu",
             (unsigned long long) (i % OBJECTS));
    snprintf(dep, sizeof dep, "user:%llu", (unsigned long long) (i % 1000));
    codec_format_id(id, "bench", 5, session, pseq);
    ev.id = id;
    ev.type = "order.placed";
    ev.object = object;
    ev.producer = "bench";
    ev.session = session;
    ev.producer_seq = pseq;
    ev.time_us = 1700000000000000 + (int64_t) i;
    ev.payload_type = "bench.Order";
    ev.payload.data = (uint8_t *) payload;
    ev.payload.len = sizeof payload;
    if (i % 4 == 0) {
        ev.depends_on = deps;
        ev.n_depends_on = 1;
    }
    return codec_event_encode(&ev, &lim, topic, body);
}

static int
send_event(void *pub, uint64_t session, uint64_t pseq)
{
    codec_buf_t t, b;
    if (make_event(session, pseq, &t, &b) != FONTE_OK)
        return -1;
    zmq_send(pub, t.data, t.len, ZMQ_SNDMORE);
    zmq_send(pub, b.data, b.len, 0);
    codec_buf_free(&t);
    codec_buf_free(&b);
    return 0;
}

/* Reads one Ack if one arrives within timeout_ms. */
static bool
read_ack(void *sub, int timeout_ms, Fonte__Ack **ack_p)
{
    zmq_pollitem_t pi = { sub, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&pi, 1, timeout_ms) <= 0)
        return false;
    zmq_msg_t t, b;
    zmq_msg_init(&t);
    zmq_msg_init(&b);
    zmq_msg_recv(&t, sub, 0);
    zmq_msg_recv(&b, sub, 0);
    fonte_err rc = codec_ack_decode(zmq_msg_data(&b), zmq_msg_size(&b), &lim,
                                    ack_p);
    zmq_msg_close(&t);
    zmq_msg_close(&b);
    return rc == FONTE_OK;
}

static int
spawn_listener(const bench_ctx_t *ctx, broker_t *b, pid_t *pid)
{
    char self[PATH_MAX], bin[PATH_MAX + 32], eg[300], in[300], data[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(bin, sizeof bin, "%s/fonte-listener", self);
    snprintf(eg, sizeof eg, "--egress=%s", broker_egress_endpoint(b));
    snprintf(in, sizeof in, "--ingress=%s", broker_ingress_endpoint(b));
    snprintf(data, sizeof data, "--data=%s/ingest-listener", ctx->tmpdir);
    char *argv[] = { bin, eg, in, "--query=tcp://127.0.0.1:*", data,
                     "--sync=batch", "--stats-interval=0", "--log-level=warn",
                     NULL };
    int rc = posix_spawn(pid, bin, NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "ingest: cannot start %s: %s\n", bin, strerror(rc));
        return -1;
    }
    return 0;
}

/* Publishes n events over SESSIONS sessions until all are acked;
 * returns events/s, or -1. */
static double
run_ingest(void *zctx, broker_t *b, uint64_t n)
{
    void *pub = zmq_socket(zctx, ZMQ_PUB), *sub = zmq_socket(zctx, ZMQ_SUB);
    int zero = 0;
    double rate = -1;
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "$ack.bench", 10);
    zmq_connect(pub, broker_ingress_endpoint(b));
    zmq_connect(sub, broker_egress_endpoint(b));

    /* Warm-up: until its Ack, the subscriptions are not all in place. */
    Fonte__Ack *a;
    bool ready = false;
    for (int i = 0; i < 300 && !ready; i++) {
        send_event(pub, WARM_SESSION, 1);
        while (!ready && read_ack(sub, 100, &a)) {
            ready = a->session == WARM_SESSION;
            fonte__ack__free_unpacked(a, NULL);
        }
    }
    if (!ready) {
        fprintf(stderr, "ingest: the listener never acked the warm-up\n");
        goto done;
    }

    uint64_t per = n / SESSIONS, sent[SESSIONS + 1] = { 0 },
             acked[SESSIONS + 1] = { 0 };
    int64_t resent_us[SESSIONS + 1] = { 0 };
    uint64_t done_sessions = 0;
    int64_t t0 = fonte_mono_us(), last_progress = t0;
    while (done_sessions < SESSIONS) {
        for (uint64_t s = 1; s <= SESSIONS; s++)
            while (sent[s] < per && sent[s] - acked[s] < WINDOW)
                send_event(pub, s, ++sent[s]);
        while (read_ack(sub, 100, &a)) {
            uint64_t s = a->session;
            if (s >= 1 && s <= SESSIONS) {
                if (a->durable_seq > acked[s]) {
                    acked[s] = a->durable_seq;
                    last_progress = fonte_mono_us();
                    done_sessions += acked[s] == per;
                }
                int64_t now = fonte_mono_us();
                if (a->gap && sent[s] > acked[s] && now - resent_us[s] > 100000) {
                    sent[s] = acked[s]; /* go-back-N */
                    resent_us[s] = now;
                }
            }
            fonte__ack__free_unpacked(a, NULL);
            if (zmq_poll(&(zmq_pollitem_t) { sub, 0, ZMQ_POLLIN, 0 }, 1, 0) <= 0)
                break;
        }
        sample_rss();
        int64_t now = fonte_mono_us();
        if (now - last_progress > STALL_US) {
            fprintf(stderr, "ingest: no Ack progress for 20 s (acked %llu of "
                    "%llu)\n", (unsigned long long) (acked[1] + acked[2] +
                    acked[3] + acked[4]), (unsigned long long) n);
            goto done;
        }
        /* A silent loss with no later event to reveal it: resend. */
        for (uint64_t s = 1; s <= SESSIONS; s++)
            if (sent[s] == per && acked[s] < per &&
                now - last_progress > 1000000 && now - resent_us[s] > 1000000) {
                sent[s] = acked[s];
                resent_us[s] = now;
            }
    }
    rate = (double) (per * SESSIONS) / ((double) (fonte_mono_us() - t0) / 1e6);
done:
    zmq_close(pub);
    zmq_close(sub);
    return rate;
}

/* Raw LevelDB: the same records and keys in synced batches. */
static double
run_baseline(const bench_ctx_t *ctx, uint64_t n)
{
    const size_t batch = INGEST_BATCH_MAX_DEFAULT, kv_per = 8;
    char dir[PATH_MAX], err[512];
    store_opts_t so;
    store_t *s = NULL;
    double rate = -1;

    snprintf(dir, sizeof dir, "%s/ingest-baseline", ctx->tmpdir);
    store_opts_init(&so);
    so.dir = dir;
    so.sync = true;
    so.cache_bytes = (size_t) LISTENER_CACHE_MB_DEFAULT << 20;
    if (store_open(&so, &s, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "ingest: baseline: %s\n", err);
        return -1;
    }
    codec_buf_t *bodies = calloc(batch, sizeof *bodies);
    store_kv_t *kvs = calloc(batch * kv_per, sizeof *kvs);
    char *keys = malloc(batch * kv_per * 600);
    if (!bodies || !kvs || !keys)
        goto done;

    uint64_t per = n / SESSIONS, total = per * SESSIONS, seq = 0;
    int64_t timed = 0;
    for (uint64_t i = 0; i < total;) {
        size_t m = 0;
        for (; m < batch && i < total; m++, i++) {
            codec_buf_t t;
            make_event(i % SESSIONS + 1, i / SESSIONS + 1, &t, &bodies[m]);
            codec_buf_free(&t);
        }
        int64_t t0 = fonte_mono_us();
        size_t nkv = 0, used = 0;
        for (size_t j = 0; j < m; j++) {
            codec_view_t v;
            if (codec_event_scan(bodies[j].data, bodies[j].len, &lim, &v))
                goto done;
            size_t k = store_event_keys(++seq, &v, bodies[j].data,
                                        bodies[j].len, kvs + nkv, kv_per,
                                        keys + used, kv_per * 600);
            nkv += k;
            for (size_t q = 0; q < k; q++)
                used += kvs[nkv - k + q].key_len;
        }
        if (store_write_raw(s, kvs, nkv) != FONTE_OK)
            goto done;
        timed += fonte_mono_us() - t0;
        for (size_t j = 0; j < m; j++)
            codec_buf_free(&bodies[j]);
    }
    rate = (double) total / ((double) timed / 1e6);
done:
    free(bodies);
    free(kvs);
    free(keys);
    store_close(&s);
    return rate;
}

int bench_ingest(const bench_ctx_t *ctx); /* registered in main.c */

int
bench_ingest(const bench_ctx_t *ctx)
{
    uint64_t n = ctx->quick ? 50000 : 2000000;
    broker_opts_t bo;
    broker_t *b = NULL;
    char err[256];
    pid_t pid = 0;
    int rc = 1;

    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.stats_interval_us = 0;
    if (broker_new(&bo, &b, err, sizeof err) != FONTE_OK) {
        fprintf(stderr, "ingest: broker: %s\n", err);
        return 1;
    }
    void *zctx = zmq_ctx_new();
    if (spawn_listener(ctx, b, &pid) != 0)
        goto done;
    child = pid;
    double ingest = run_ingest(zctx, b, n);
    double rss = bench_peak_rss_mb(pid);
    child = 0;
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    pid = 0;
    if (ingest < 0)
        goto done;
    double base = run_baseline(ctx, n);
    if (base < 0)
        goto done;
    bench_report("ingest_throughput", ingest, "events/s", base);
    bench_report_absolute("listener_peak_rss_mb", rss, "MiB");
    bench_report_absolute("listener_peak_anon_mb", peak_anon_mb, "MiB");
    bench_report_absolute("listener_peak_file_mb", peak_file_mb, "MiB");
    rc = 0;
done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    zmq_ctx_term(zctx);
    broker_destroy(&b);
    return rc;
}
