/*
 * listener.c - the listener actor (listener.h): two ZeroMQ contexts
 * (ingest and republishing in one; the query ROUTER alone in the other,
 * so that its I/O thread serves only queries and can be pinned with the
 * query thread, --query-cpu), the store, the ingest (receive + writer
 * threads) and the query server (query thread and its replay workers),
 * and the replay service behind it. Start order is store -> replay ->
 * query -> ingest, so that a bad data dir or a taken port fails before
 * anything is received; stop order is the reverse, so that the writer
 * commits what is queued while the store is still open, and no replay
 * reads a closed store.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "listener.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "zmqx.h"

struct listener {
    void *ctx;  /* ingest, acks, stats, republishing */
    void *qctx; /* the query ROUTER alone: its own I/O thread */
    store_t *store;
    fcurve_cert_t cert;        /* with curve_cert: the listener's pair */
    fcurve_cert_t broker_cert; /* with curve_broker: the broker's key */
    fcurve_auth_t *auth;       /* with curve_clients: qctx's ZAP handler */
    replay_t *replay;
    query_t *query;
    ingest_t *ingest;
};

void
listener_opts_init(listener_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->egress = LISTENER_EGRESS_DEFAULT;
    o->ingress = LISTENER_INGRESS_DEFAULT;
    o->query = LISTENER_QUERY_DEFAULT;
    o->data = LISTENER_DATA_DEFAULT;
    o->sync = true;
    o->batch_max = INGEST_BATCH_MAX_DEFAULT;
    o->batch_bytes = INGEST_BATCH_BYTES_DEFAULT;
    o->batch_delay_us = INGEST_BATCH_DELAY_US_DEFAULT;
    o->cache_mb = LISTENER_CACHE_MB_DEFAULT;
    o->queue_max = INGEST_QUEUE_MAX_DEFAULT;
    o->queue_bytes = INGEST_QUEUE_BYTES_DEFAULT;
    o->rcvhwm = INGEST_RCVHWM_DEFAULT;
    o->stats_interval_us = 1000000;
    o->limits = codec_limits_default;
    replay_opts_t ro;
    replay_opts_init(&ro);
    o->max_closure = ro.max_closure;
    o->max_replay_events = ro.max_events;
    o->query_workers = QUERY_WORKERS_DEFAULT;
    o->read_threads = ro.read_threads;
    o->republish_wait_us = ro.target_wait_us;
    o->query_cpu = -1;
    o->query_spin_us = -1;
}

/* 0 if this process may run on `cpu`, else -1 with errbuf set. */
static int
check_cpu(int cpu, char *errbuf, size_t errlen)
{
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (cpu >= CPU_SETSIZE ||
        sched_getaffinity(0, sizeof mine, &mine) != 0 ||
        !CPU_ISSET(cpu, &mine)) {
        snprintf(errbuf, errlen,
                 "listener: query CPU %d is not one this process may run "
                 "on (it may run on %d CPUs; see taskset -p)",
                 cpu, CPU_COUNT(&mine));
        return -1;
    }
    return 0;
}

/* The query endpoint's and the replays' counters, for the Stats. */
static void
more_stats(void *arg, ingest_stats_t *st)
{
    listener_t *l = arg;
    query_counters_t q;
    replay_counters_t r;

    query_counters(l->query, &q);
    ingest_stats_counter(st, "query_requests", q.requests);
    ingest_stats_counter(st, "query_status", q.status);
    ingest_stats_counter(st, "query_replay", q.replay);
    ingest_stats_counter(st, "query_bad_requests", q.bad_requests);
    ingest_stats_counter(st, "query_dropped", q.dropped);
    ingest_stats_counter(st, "query_busy", q.busy);
    ingest_stats_counter(st, "query_backups", q.backups);
    ingest_stats_counter(st, "query_spun", q.spun);
    if (l->auth != NULL) {
        uint64_t allowed, denied;
        fcurve_auth_counts(l->auth, &allowed, &denied);
        ingest_stats_counter(st, "query_auth_allowed", allowed);
        ingest_stats_counter(st, "query_auth_denied", denied);
    }
    replay_counters(l->replay, &r);
    ingest_stats_counter(st, "replay_pages", r.pages);
    ingest_stats_counter(st, "replay_cut_ahead", r.cut_ahead);
    ingest_stats_counter(st, "replay_first_lookups", r.first_lookups);
    ingest_stats_counter(st, "replay_not_found", r.not_found);
    ingest_stats_counter(st, "replay_refused", r.refused);
    ingest_stats_counter(st, "replay_republished", r.republished);
    ingest_stats_counter(st, "replay_scans_parked", r.scans_parked);
    ingest_stats_counter(st, "replay_reads_shared", r.reads_shared);
    ingest_stats_counter(st, "replay_reads_alone", r.reads_alone);
    ingest_stats_counter(st, "replay_reads_helped", r.reads_helped);
    ingest_stats_gauge(st, "replay_running", (double) r.running);
    ingest_stats_gauge(st, "replay_cursors", (double) r.cursors);
}

void
listener_store_failed_signal(void *arg)
{
    (void) arg;
    kill(getpid(), SIGUSR1);
}

int
listener_sigwait(listener_t *l, const sigset_t *set)
{
    int sig = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (store_write_error(l->store) != NULL)
            return 0;
        if (sig != SIGUSR1)
            return sig;
    }
}

/* What LevelDB dropped while opening the store, one warning a line: a
 * torn end of its log after a crash (never acknowledged), or worse. */
static void
log_open_notes(const store_t *s)
{
    const char *notes = store_open_notes(s);
    for (const char *p = notes; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, "\n");
        flog(FLOG_WARN, "listener",
             "data dir %s: LevelDB dropped part of its log at open: %.*s. "
             "A torn end after a crash held nothing acknowledged; otherwise "
             "stop the listener and run fonte-listener --verify",
             store_dir(s), (int) n, p);
        p += n + (p[n] == '\n');
    }
}

fonte_err
listener_new(const listener_opts_t *o, listener_t **listener_p, char *errbuf,
             size_t errlen)
{
    fonte_err rc;
    listener_t *l;

    *listener_p = NULL;
    if (o->egress == NULL || o->ingress == NULL || o->query == NULL ||
        o->data == NULL || o->cache_mb > ((size_t) 1 << 20) ||
        o->query_cpu < -1) {
        snprintf(errbuf, errlen, "listener: invalid options");
        return FONTE_EINVAL;
    }
    if (o->query_cpu >= 0 && check_cpu(o->query_cpu, errbuf, errlen) != 0)
        return FONTE_EINVAL;
    struct stat st;
    if (o->backup_dir != NULL &&
        (stat(o->backup_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(errbuf, errlen, "listener: the backup directory %s: %s",
                 o->backup_dir,
                 stat(o->backup_dir, &st) != 0 ? strerror(errno)
                                               : "not a directory");
        return FONTE_EINVAL;
    }
    if ((o->curve_cert != NULL) !=
        (o->curve_clients != NULL || o->curve_broker != NULL)) {
        snprintf(errbuf, errlen, "listener: %s",
                 o->curve_cert == NULL
                     ? "the CURVE clients' directory and the broker's "
                       "certificate need the listener's own certificate"
                     : "a CURVE certificate needs the clients' directory "
                       "or the broker's certificate (what to secure)");
        return FONTE_EINVAL;
    }
    /* a start that fails leaves no data directory it made */
    bool fresh = stat(o->data, &st) != 0 && errno == ENOENT;
    if ((l = calloc(1, sizeof *l)) == NULL ||
        (l->ctx = zmq_ctx_new()) == NULL ||
        (l->qctx = zmq_ctx_new()) == NULL) {
        snprintf(errbuf, errlen, "listener: out of memory");
        if (l != NULL && l->ctx != NULL)
            zmqx_ctx_term(l->ctx);
        free(l);
        return FONTE_ENOMEM;
    }
    /* before the context's first socket, which starts its I/O thread */
    if (o->query_cpu >= 0 &&
        zmq_ctx_set(l->qctx, ZMQ_THREAD_AFFINITY_CPU_ADD, o->query_cpu) != 0) {
        snprintf(errbuf, errlen, "listener: cannot pin the query I/O thread "
                 "to CPU %d: %s", o->query_cpu, zmq_strerror(zmq_errno()));
        rc = FONTE_EINVAL;
        goto fail;
    }

    if (o->curve_cert != NULL &&
        ((rc = fcurve_cert_load(o->curve_cert, true, &l->cert, errbuf,
                                errlen)) != FONTE_OK ||
         (o->curve_broker != NULL &&
          (rc = fcurve_cert_load(o->curve_broker, false, &l->broker_cert,
                                 errbuf, errlen)) != FONTE_OK) ||
         (o->curve_clients != NULL &&
          (rc = fcurve_auth_new(l->qctx, o->curve_clients, &l->cert,
                                &l->auth, errbuf, errlen)) != FONTE_OK)))
        goto fail;

    store_opts_t so;
    store_opts_init(&so);
    so.dir = o->data;
    so.sync = o->sync;
    so.cache_bytes = o->cache_mb << 20;
    if (o->write_buffer)
        so.write_buffer = o->write_buffer;
    if ((rc = store_open(&so, &l->store, errbuf, errlen)) != FONTE_OK)
        goto fail;
    log_open_notes(l->store);

    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.zmq_ctx = l->ctx;
    ro.ingress = o->ingress;
    ro.limits = o->limits;
    ro.max_closure = o->max_closure;
    ro.max_events = o->max_replay_events;
    ro.read_threads = o->read_threads;
    ro.target_wait_us = o->republish_wait_us;
    if (o->curve_broker != NULL) {
        ro.curve_cert = &l->cert;
        ro.curve_server = &l->broker_cert;
    }
    if ((rc = replay_new(&ro, l->store, &l->replay, errbuf, errlen)) !=
        FONTE_OK)
        goto fail;

    query_opts_t qo;
    query_opts_init(&qo);
    qo.zmq_ctx = l->qctx;
    qo.cpu = o->query_cpu;
    qo.spin_us = o->query_spin_us >= 0 ? o->query_spin_us
                 : o->query_cpu >= 0 ? 0
                                     : QUERY_SPIN_US_DEFAULT;
    qo.endpoint = o->query;
    qo.store = l->store;
    qo.limits = o->limits;
    qo.replay = replay_handle;
    qo.replay_arg = l->replay;
    qo.workers = o->query_workers;
    qo.curve = l->auth != NULL ? &l->cert : NULL;
    qo.backup_dir = o->backup_dir;
    if ((rc = query_new(&qo, &l->query, errbuf, errlen)) != FONTE_OK)
        goto fail;

    ingest_opts_t io;
    ingest_opts_init(&io);
    io.zmq_ctx = l->ctx;
    io.egress = o->egress;
    io.ingress = o->ingress;
    io.store = l->store;
    io.batch_max = o->batch_max;
    io.batch_bytes = o->batch_bytes;
    io.batch_delay_us = o->batch_delay_us;
    io.queue_max = o->queue_max;
    io.queue_bytes = o->queue_bytes;
    io.rcvhwm = o->rcvhwm;
    io.stats_interval_us = o->stats_interval_us;
    io.limits = o->limits;
    io.more_stats = more_stats;
    io.more_stats_arg = l;
    io.on_store_failed = o->on_store_failed;
    io.on_store_failed_arg = o->on_store_failed_arg;
    if (o->curve_broker != NULL) {
        io.curve_cert = &l->cert;
        io.curve_server = &l->broker_cert;
    }
    if ((rc = ingest_new(&io, &l->ingest, errbuf, errlen)) != FONTE_OK)
        goto fail;
    *listener_p = l;
    return FONTE_OK;

fail:
    listener_destroy(&l);
    if (fresh)
        store_remove_new(o->data);
    return rc;
}

const char *
listener_query_endpoint(const listener_t *l)
{
    return query_endpoint(l->query);
}

store_t *
listener_store(listener_t *l)
{
    return l->store;
}

void
listener_counters(listener_t *l, ingest_counters_t *out)
{
    ingest_counters(l->ingest, out);
}

void
listener_replay_counters(listener_t *l, replay_counters_t *out)
{
    replay_counters(l->replay, out);
}

void
listener_query_counters(listener_t *l, query_counters_t *out)
{
    query_counters(l->query, out);
}

void
listener_hold_writer(listener_t *l, bool hold)
{
    ingest_hold(l->ingest, hold);
}

void
listener_destroy(listener_t **listener_p)
{
    listener_t *l = *listener_p;
    if (l == NULL)
        return;
    *listener_p = NULL;
    replay_stop(l->replay); /* a big plan in a worker gives up */
    ingest_destroy(&l->ingest);
    query_destroy(&l->query);
    fcurve_auth_destroy(&l->auth); /* before its context's term */
    replay_destroy(&l->replay);
    store_close(&l->store);
    if (l->ctx)
        zmqx_ctx_term(l->ctx);
    if (l->qctx)
        zmqx_ctx_term(l->qctx);
    explicit_bzero(&l->cert, sizeof l->cert); /* the secret key */
    free(l);
}
