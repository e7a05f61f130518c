/*
 * test_reliability.c - libfonte's promise against the real broker and
 * listener: nothing acknowledged is ever lost, nothing is stored twice,
 * each producer session's events are stored in publish order
 * (design.md §4).
 *
 * In-process actors (broker_new, listener_new) where nothing has to die;
 * child processes (build/bin/fonte-broker, fonte-listener) where one is
 * SIGKILLed and restarted on the same ports and data directory. Every
 * check ends by reading the LevelDB store itself (store.h), not by
 * trusting counters: for each session, producer_seq must be exactly
 * 1, 2, ..., N in store order.
 *
 * Sizes: the (100k through a squeezed HWM, 500k from 4 producers
 * with 3 listener kills) in a normal build; a fifth of that under the
 * sanitizers (FONTE_TEST_SMALL), which are several times slower.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"
#include "codec.h"
#include "fonte/fonte.h"
#include "listener.h"
#include "log.h"
#include "store.h"
#include "testutil.h"

#ifdef FONTE_TEST_SMALL
#define SCALE 5
#else
#define SCALE 1
#endif
#define HWM_EVENTS (100000 / SCALE)
#define BROKER_KILL_EVENTS (60000 / SCALE)
#define KILL_PRODUCERS 4
#define KILL_EVENTS (500000 / SCALE) /* in all, over the producers */
#define FLUSH_MS 60000

static char datadir[64];

static void
setup(void)
{
    flog_set_level(FLOG_ERROR);
    snprintf(datadir, sizeof datadir, "/tmp/fonte-rel-XXXXXX");
    cr_assert_not_null(mkdtemp(datadir));
}

static void
teardown(void)
{
    tu_rmtree(datadir);
}

TestSuite(reliability, .init = setup, .fini = teardown, .timeout = 110);

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static broker_t *
start_broker(int hwm)
{
    broker_opts_t o;
    broker_t *b = NULL;
    char err[256];

    broker_opts_init(&o);
    o.ingress = "tcp://127.0.0.1:*";
    o.egress = "tcp://127.0.0.1:*";
    o.stats_interval_us = 0;
    if (hwm > 0)
        o.hwm = hwm;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_OK, "%s", err);
    return b;
}

static listener_t *
start_listener(const char *ingress, const char *egress)
{
    listener_opts_t o;
    listener_t *l = NULL;
    char err[256];

    listener_opts_init(&o);
    o.ingress = ingress;
    o.egress = egress;
    o.query = "tcp://127.0.0.1:*";
    o.data = datadir;
    o.stats_interval_us = 0;
    cr_assert_eq(listener_new(&o, &l, err, sizeof err), FONTE_OK, "%s", err);
    return l;
}

static fonte_client_t *
start_client_resend(const char *service, const char *ingress,
                    const char *egress, const char *query, int resend_ms)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    fonte_client_opts_init(&o);
    o.service = service;
    o.ingress = ingress;
    o.egress = egress;
    o.query = query;
    o.resend_timeout_ms = resend_ms;
    o.publish_timeout_ms = FLUSH_MS;
    o.query_timeout_ms = 2000;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    return c;
}

static fonte_client_t *
start_client(const char *service, const char *ingress, const char *egress,
             const char *query)
{
    return start_client_resend(service, ingress, egress, query, 300);
}

static void
publish_n(fonte_client_t *c, const char *type, size_t n)
{
    char object[32];
    fonte_event_spec_t s = { 0 };

    s.type = type;
    s.object = object;
    for (size_t i = 0; i < n; i++) {
        snprintf(object, sizeof object, "order:%zu", i % 1000);
        fonte_err rc = fonte_publish(c, &s);
        cr_assert_eq(rc, FONTE_OK, "publish %zu: %s", i, fonte_strerror(rc));
    }
}

/* Walks every stored event: each belongs to one of the n sessions, and
 * each session's producer_seq runs 1, 2, ... in store order, with no gap
 * and no repeat. last[i] is where session i ends; returns the total. */
static uint64_t
walk_sessions(store_t *st, const uint64_t *sessions, uint64_t *last, size_t n)
{
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    store_item_t item;
    uint64_t total = 0;

    for (size_t k = 0; k < n; k++)
        last[k] = 0;
    cr_assert_eq(store_snap_new(st, &snap), FONTE_OK);
    cr_assert_eq(store_iter_events(snap, 0, &it), FONTE_OK);
    while (store_iter_next(it, &item)) {
        codec_view_t v;
        cr_assert_eq(codec_event_scan(item.value.ptr, item.value.len,
                                      &codec_limits_default, &v), FONTE_OK);
        size_t k = 0;
        while (k < n && sessions[k] != v.session)
            k++;
        cr_assert_lt(k, n, "an event of an unknown session %016llx",
                     (unsigned long long) v.session);
        cr_assert_eq(v.producer_seq, last[k] + 1,
                     "session %zu: seq %llu stored after %llu (store seq %llu)",
                     k, (unsigned long long) v.producer_seq,
                     (unsigned long long) last[k],
                     (unsigned long long) item.seq);
        last[k] = v.producer_seq;
        total++;
    }
    cr_assert_eq(store_iter_error(it), FONTE_OK);
    store_iter_destroy(&it);
    store_snap_destroy(&snap);
    return total;
}

/* walk_sessions, and each session ends exactly at expect[i]. */
static void
verify_store(store_t *st, const uint64_t *sessions, const uint64_t *expect,
             size_t n)
{
    uint64_t last[8], want = 0;

    cr_assert_leq(n, 8);
    uint64_t total = walk_sessions(st, sessions, last, n);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(last[k], expect[k], "session %zu: %llu of %llu stored",
                     k, (unsigned long long) last[k],
                     (unsigned long long) expect[k]);
        want += expect[k];
    }
    cr_assert_eq(total, want);
}

/* Opens a stopped listener's data directory and verifies it. */
static void
verify_dir(const uint64_t *sessions, const uint64_t *expect, size_t n)
{
    store_opts_t so;
    store_t *st = NULL;
    char err[256];

    store_opts_init(&so);
    so.dir = datadir;
    so.create = false;
    so.sync = false;
    cr_assert_eq(store_open(&so, &st, err, sizeof err), FONTE_OK, "%s", err);
    verify_store(st, sessions, expect, n);
    /* and every invariant of the schema (fonte-listener --verify) */
    store_verify_report_t r;
    cr_assert_eq(store_verify(st, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_eq(r.problems, 0, "%llu problems: %s",
                 (unsigned long long) r.problems, r.shown[0]);
    store_close(&st);
}

/* For the next children spawned: the most bytes a file they write may
 * hold (RLIMIT_FSIZE; 0 = no limit), as on a full disk, a file for
 * their stderr (NULL = ours), and a listener's --batch-max (0: its
 * default). */
static rlim_t child_fsize;
static const char *child_stderr;
static unsigned child_batch_max;

/* In a child just forked: SIGKILL it when the test that forked it ends,
 * however it ends (a failed assertion leaves no broker, listener or
 * producer behind holding ports, a deleted data directory or ctest's
 * output pipe). -1 if the parent is already gone. */
static int
die_with(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return -1;
    return getppid() == parent ? 0 : -1;
}

static pid_t
spawn(char *const argv[])
{
    pid_t parent = getpid(), pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct rlimit was;
        if (die_with(parent) != 0)
            _exit(126);
        if (child_fsize > 0 && tu_fsize_cap(child_fsize, &was) != 0)
            _exit(126);
        if (child_stderr != NULL) {
            int fd = open(child_stderr, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(126);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to timeout_ms; SIGKILLs it if still running. Returns
 * its wait status. */
static int
reap(pid_t pid, int timeout_ms)
{
    int status = 0;
    int64_t end = fonte_mono_us() + (int64_t) timeout_ms * 1000;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        if (fonte_mono_us() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        usleep(5000); /* polling a child's exit: there is no fd to wait on */
    }
}

/* A child that exits at once (port taken) is reported by start_*. */
static bool
died_early(pid_t pid)
{
    int status;
    for (int i = 0; i < 20; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return true;
        usleep(10000);
    }
    return false;
}

static pid_t
start_broker_child(const char *ingress, const char *egress)
{
    char in[96], out[96];
    snprintf(in, sizeof in, "--ingress=%s", ingress);
    snprintf(out, sizeof out, "--egress=%s", egress);
    char *argv[] = { FONTE_BIN_DIR "/fonte-broker", in, out,
                     "--stats-interval=0", "--log-level=error", NULL };
    for (int attempt = 0; attempt < 50; attempt++) {
        pid_t pid = spawn(argv);
        if (!died_early(pid))
            return pid;
    }
    cr_assert_fail("fonte-broker would not start on %s %s", ingress, egress);
    return -1;
}

static pid_t
start_listener_child(const char *ingress, const char *egress,
                     const char *query)
{
    char in[96], out[96], q[96], d[96], bm[32];
    snprintf(in, sizeof in, "--ingress=%s", ingress);
    snprintf(out, sizeof out, "--egress=%s", egress);
    snprintf(q, sizeof q, "--query=%s", query);
    snprintf(d, sizeof d, "--data=%s", datadir);
    snprintf(bm, sizeof bm, "--batch-max=%u",
             child_batch_max ? child_batch_max : 2000);
    char *argv[] = { FONTE_BIN_DIR "/fonte-listener", in, out, q, d, bm,
                     "--sync=batch", "--stats-interval=0",
                     "--log-level=error", NULL };
    for (int attempt = 0; attempt < 50; attempt++) {
        pid_t pid = spawn(argv);
        if (!died_early(pid))
            return pid;
    }
    cr_assert_fail("fonte-listener would not start");
    return -1;
}

/* ------------------------------------------------------------------ */
/* in process                                                          */

Test(reliability, published_and_flushed_events_are_in_the_store)
{
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    /* no resend on a timer: an fsync or a machine slower than 300 ms
     * must not pass for a lost event (a lost one is resent only after
     * a gap, which shows in the counts below) */
    fonte_client_t *c = start_client_resend(
        "shop", broker_ingress_endpoint(b), broker_egress_endpoint(b),
        listener_query_endpoint(l), FLUSH_MS);
    publish_n(c, "order.placed", 1000);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    fonte_client_stats_t cs;
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.acked, 1000);
    cr_assert_eq(cs.outbox_events, 0);

    uint64_t session = fonte_client_session(c), expect = 1000;
    verify_store(listener_store(l), &session, &expect, 1);
    fonte_status_t st;
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    cr_assert_eq(st.events, 1000);
    cr_assert_eq(st.last_seq, 1000);
    cr_assert_eq(st.sessions, 1);
    cr_assert_eq(st.objects, 1000);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

Test(reliability, a_new_producers_first_burst_is_not_lost_to_the_connection)
{
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    /* the listener's subscription is at the broker before the client
     * connects: the client must then lose nothing while it connects */
    broker_counters_t bc;
    int64_t deadline = fonte_mono_us() + 5000000;
    do {
        broker_counters(b, &bc);
        if (bc.subscriptions >= 1)
            break;
        usleep(1000);
    } while (fonte_mono_us() < deadline);
    cr_assert_geq(bc.subscriptions, 1);
    /* no resend on a timer: an fsync or a machine slower than 300 ms
     * must not pass for a lost event (a lost one is resent only after
     * a gap, which shows in the counts below) */
    fonte_client_t *c = start_client_resend(
        "shop", broker_ingress_endpoint(b), broker_egress_endpoint(b),
        listener_query_endpoint(l), FLUSH_MS);
    publish_n(c, "order.placed", 1000);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    fonte_client_stats_t cs;
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.acked, 1000);
    cr_assert_eq(cs.sent, 1000, "sent %llu: some were resent",
                 (unsigned long long) cs.sent);
    cr_assert_eq(cs.resent, 0);
    cr_assert_eq(cs.gap_acks, 0);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

Test(reliability, squeezed_hwm_drops_are_resent_and_stored_exactly_once)
{
    /* A broker queue of 100 messages per peer: its bursts of up to 1000
     * overflow the queue to the listener, which drops - hundreds of
     * thousands of times over a 100k stream. */
    broker_t *b = start_broker(100);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    fonte_client_t *c = start_client("shop", broker_ingress_endpoint(b),
                                     broker_egress_endpoint(b),
                                     listener_query_endpoint(l));
    publish_n(c, "order.placed", HWM_EVENTS);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    fonte_client_stats_t cs;
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.acked, HWM_EVENTS);
    cr_assert_gt(cs.resent, 0, "no drop happened: the HWM was not squeezed");
    cr_assert_gt(cs.gap_acks, 0);

    uint64_t session = fonte_client_session(c), expect = HWM_EVENTS;
    verify_store(listener_store(l), &session, &expect, 1);
    ingest_counters_t ic;
    listener_counters(l, &ic);
    cr_assert_eq(ic.events_stored, HWM_EVENTS);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

/* ------------------------------------------------------------------ */
/* child processes killed                                              */

Test(reliability, broker_killed_and_restarted_mid_stream_loses_nothing)
{
    char ingress[64], egress[64];
    snprintf(ingress, sizeof ingress, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(egress, sizeof egress, "tcp://127.0.0.1:%u", tu_free_port());
    pid_t broker = start_broker_child(ingress, egress);
    listener_t *l = start_listener(ingress, egress);
    fonte_client_t *c = start_client("shop", ingress, egress,
                                     listener_query_endpoint(l));

    publish_n(c, "order.placed", BROKER_KILL_EVENTS / 3);
    kill(broker, SIGKILL);
    reap(broker, 5000);
    publish_n(c, "order.placed", BROKER_KILL_EVENTS / 3);
    broker = start_broker_child(ingress, egress);
    publish_n(c, "order.placed",
              BROKER_KILL_EVENTS - 2 * (BROKER_KILL_EVENTS / 3));
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);

    uint64_t session = fonte_client_session(c), expect = BROKER_KILL_EVENTS;
    verify_store(listener_store(l), &session, &expect, 1);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    kill(broker, SIGTERM);
    reap(broker, 5000);
}

typedef struct producer {
    char service[16];
    const char *ingress, *egress, *query;
    uint64_t session;
    size_t n;
    atomic_size_t *published;
    fonte_err flushed;
} producer_t;

static void *
producer_main(void *arg)
{
    producer_t *p = arg;
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    fonte_event_spec_t s = { 0 };

    fonte_client_opts_init(&o);
    o.service = p->service;
    o.ingress = p->ingress;
    o.egress = p->egress;
    o.query = p->query;
    o.resend_timeout_ms = 300;
    o.publish_timeout_ms = FLUSH_MS;
    p->flushed = fonte_client_new(&o, &c);
    if (p->flushed != FONTE_OK)
        return NULL;
    p->session = fonte_client_session(c);
    s.type = "order.placed";
    s.object = "order:1";
    for (size_t i = 0; i < p->n; i++) {
        if ((p->flushed = fonte_publish(c, &s)) != FONTE_OK)
            break;
        atomic_fetch_add(p->published, 1);
    }
    if (p->flushed == FONTE_OK)
        p->flushed = fonte_flush(c, FLUSH_MS);
    fonte_client_destroy(&c);
    return NULL;
}

/* Starts n producer threads, services "<prefix>-<i>", each to publish
 * total / n events and flush them; published counts every publish. */
static void
producers_start(producer_t *prod, pthread_t *threads, int n,
                const char *prefix, const char *in, const char *out,
                const char *query, size_t total, atomic_size_t *published)
{
    for (int i = 0; i < n; i++) {
        memset(&prod[i], 0, sizeof prod[i]);
        snprintf(prod[i].service, sizeof prod[i].service, "%s-%d", prefix, i);
        prod[i].ingress = in;
        prod[i].egress = out;
        prod[i].query = query;
        prod[i].n = total / (size_t) n;
        prod[i].published = published;
        cr_assert_eq(pthread_create(&threads[i], NULL, producer_main,
                                    &prod[i]), 0);
    }
}

/* Joins them (each stops by its own publish and flush timeouts) and
 * asserts every one flushed all it published (what says names the run,
 * e.g. its seed); their sessions and counts into sessions and expect. */
static void
producers_join(producer_t *prod, pthread_t *threads, int n,
               const char *what, uint64_t *sessions, uint64_t *expect)
{
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(prod[i].flushed, FONTE_OK, "%s: producer %d: %s", what,
                     i, fonte_strerror(prod[i].flushed));
        sessions[i] = prod[i].session;
        expect[i] = prod[i].n;
    }
}

Test(reliability, listener_killed_three_times_loses_and_duplicates_nothing)
{
    broker_t *b = start_broker(0);
    char query[64];
    snprintf(query, sizeof query, "tcp://127.0.0.1:%u", tu_free_port());
    const char *in = broker_ingress_endpoint(b), *out = broker_egress_endpoint(b);
    pid_t listener = start_listener_child(in, out, query);

    atomic_size_t published = 0;
    producer_t prod[KILL_PRODUCERS];
    pthread_t threads[KILL_PRODUCERS];
    producers_start(prod, threads, KILL_PRODUCERS, "svc", in, out, query,
                    KILL_EVENTS, &published);
    /* Kill at 20 %, 45 % and 70 % of the stream; restart at once. */
    const size_t marks[3] = { KILL_EVENTS / 5, KILL_EVENTS * 9 / 20,
                              KILL_EVENTS * 7 / 10 };
    int64_t end = fonte_mono_us() + (int64_t) FLUSH_MS * 1000;
    for (int k = 0; k < 3; k++) {
        while (atomic_load(&published) < marks[k] && fonte_mono_us() < end)
            usleep(2000); /* watching a counter: no fd to wait on */
        kill(listener, SIGKILL);
        reap(listener, 5000);
        listener = start_listener_child(in, out, query);
    }
    uint64_t sessions[KILL_PRODUCERS], expect[KILL_PRODUCERS];
    producers_join(prod, threads, KILL_PRODUCERS, "three kills", sessions,
                   expect);
    kill(listener, SIGTERM);
    int status = reap(listener, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "fonte-listener did not stop cleanly");
    broker_destroy(&b);
    verify_dir(sessions, expect, KILL_PRODUCERS);
}

/* Both at once, at random: the broker, the listener or both SIGKILLed
 * at CHAOS_KILLS points of the stream drawn from a seed, each down for
 * 0-299 ms plus its restart (what the producers publish meanwhile waits
 * in their outboxes), then restarted on the same ports and data
 * directory (the broker first: the listener's outage then includes the
 * broker's start, at least 200 ms). The
 * seed is printed; FONTE_TEST_SEED=<n> runs the same schedule again. */
Test(reliability, broker_and_listener_killed_at_random_lose_and_duplicate_nothing)
{
    enum { CHAOS_KILLS = 8, CHAOS_EVENTS = 300000 / SCALE, CHAOS_PRODUCERS = 3 };
    const char *env = getenv("FONTE_TEST_SEED");
    const unsigned seed0 = env != NULL
                               ? (unsigned) strtoul(env, NULL, 10)
                               : (unsigned) (fonte_mono_us() ^ getpid());
    unsigned seed = seed0;
    fprintf(stderr, "reliability: chaos seed %u (FONTE_TEST_SEED)\n", seed0);

    char in[64], out[64], query[64];
    snprintf(in, sizeof in, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(out, sizeof out, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(query, sizeof query, "tcp://127.0.0.1:%u", tu_free_port());
    pid_t broker = start_broker_child(in, out);
    pid_t listener = start_listener_child(in, out, query);

    atomic_size_t published = 0;
    producer_t prod[CHAOS_PRODUCERS];
    pthread_t threads[CHAOS_PRODUCERS];
    producers_start(prod, threads, CHAOS_PRODUCERS, "chaos", in, out, query,
                    CHAOS_EVENTS, &published);

    /* the schedule: increasing points between 5% and 85% of the stream */
    size_t marks[CHAOS_KILLS];
    for (int k = 0; k < CHAOS_KILLS; k++)
        marks[k] = CHAOS_EVENTS / 20 +
                   (size_t) rand_r(&seed) % (CHAOS_EVENTS * 4 / 5);
    for (int i = 1; i < CHAOS_KILLS; i++)
        for (int j = i; j > 0 && marks[j - 1] > marks[j]; j--) {
            size_t t = marks[j];
            marks[j] = marks[j - 1];
            marks[j - 1] = t;
        }
    int64_t end = fonte_mono_us() + (int64_t) FLUSH_MS * 1000;
    for (int k = 0; k < CHAOS_KILLS; k++) {
        while (atomic_load(&published) < marks[k] && fonte_mono_us() < end)
            usleep(2000); /* watching a counter: no fd to wait on */
        int victim = rand_r(&seed) % 3; /* broker, listener, both */
        int down_ms = rand_r(&seed) % 300;
        if (victim != 1) {
            kill(broker, SIGKILL);
            reap(broker, 5000);
        }
        if (victim != 0) {
            kill(listener, SIGKILL);
            reap(listener, 5000);
        }
        /* not a wait for anything: the outage under test lasts this long */
        usleep((useconds_t) down_ms * 1000);
        if (victim != 1)
            broker = start_broker_child(in, out);
        if (victim != 0)
            listener = start_listener_child(in, out, query);
    }
    uint64_t sessions[CHAOS_PRODUCERS], expect[CHAOS_PRODUCERS];
    char what[32];
    snprintf(what, sizeof what, "seed %u", seed0);
    producers_join(prod, threads, CHAOS_PRODUCERS, what, sessions, expect);
    kill(listener, SIGTERM);
    int status = reap(listener, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "fonte-listener did not stop cleanly");
    kill(broker, SIGTERM);
    reap(broker, 5000);
    verify_dir(sessions, expect, CHAOS_PRODUCERS);
}

/* A disk that fills while events arrive: the listener's log cannot grow
 * past 256 KiB (RLIMIT_FSIZE in its process), its batches at most 50
 * events (about 55 KB: several fit before the limit, whatever the timing;
 * with the default of 2000, a listener slow to start - the sanitizers -
 * could take the whole first burst in one batch too big for the log, and
 * acknowledge nothing before the disk was full). The commit that fails is
 * not acknowledged, nothing after it is either, and the listener exits 3
 * naming the cause. Restarted with room, it recovers its store, the
 * producer's unacknowledged events come again, and every one is stored
 * exactly once, in order. */
Test(reliability, a_full_disk_stops_the_listener_and_loses_nothing)
{
    enum { N = 1500 };
    broker_t *b = start_broker(0);
    char query[64], errlog[128], text[8192];
    snprintf(query, sizeof query, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(errlog, sizeof errlog, "%s.stderr", datadir);
    const char *in = broker_ingress_endpoint(b), *out = broker_egress_endpoint(b);
    child_fsize = 256 << 10;
    child_stderr = errlog;
    child_batch_max = 50;
    pid_t listener = start_listener_child(in, out, query);
    child_fsize = 0;
    child_stderr = NULL;
    child_batch_max = 0;

    fonte_client_t *c = start_client("shop", in, out, query);
    uint8_t pay[1024];
    memset(pay, 'p', sizeof pay);
    fonte_event_spec_t spec = { 0 };
    spec.type = "order.placed";
    spec.object = "order:1";
    spec.payload = pay;
    spec.payload_len = sizeof pay;
    for (int i = 0; i < N; i++)
        cr_assert_eq(fonte_publish(c, &spec), FONTE_OK, "publish %d", i);

    int status = reap(listener, 30000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3,
              "fonte-listener: status %d, not exit 3", status);
    FILE *f = fopen(errlog, "r");
    cr_assert_not_null(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    unlink(errlog);
    cr_assert_not_null(strstr(text, "File too large"), "%s", text);
    cr_assert_not_null(strstr(text, "Nothing of it was acknowledged"), "%s",
                       text);
    cr_assert_not_null(strstr(text, "exit 3"), "%s", text);
    fonte_client_stats_t cs;
    fonte_client_stats(c, &cs);
    cr_assert_gt(cs.acked, 0, "some were stored before the disk filled");
    cr_assert_lt(cs.acked, N, "and the rest were not acknowledged");

    /* room again: a new listener on the same data stores the rest */
    listener = start_listener_child(in, out, query);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.acked, N);
    uint64_t session = fonte_client_session(c), expect = N;
    fonte_client_destroy(&c);
    kill(listener, SIGTERM);
    status = reap(listener, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "fonte-listener did not stop cleanly");
    broker_destroy(&b);
    verify_dir(&session, &expect, 1);
}

Test(reliability, destroy_with_unacked_events_neither_hangs_nor_leaks)
{
    char ingress[64], egress[64];
    snprintf(ingress, sizeof ingress, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(egress, sizeof egress, "tcp://127.0.0.1:%u", tu_free_port());
    pid_t broker = start_broker_child(ingress, egress);
    fonte_client_t *c = start_client("shop", ingress, egress, ingress);
    publish_n(c, "order.placed", 20000); /* no listener: nothing acked */
    int64_t t0 = fonte_mono_us();
    fonte_client_destroy(&c);
    cr_assert_lt(fonte_mono_us() - t0, 5000000);
    kill(broker, SIGKILL);
    reap(broker, 5000);
}

/* ------------------------------------------------------------------ */
/* a producer that dies                                                */

/* A child whose stdout is the write end of a pipe; *out gets the read
 * end. */
static pid_t
spawn_piped(char *const argv[], int *out)
{
    int p[2];

    cr_assert_eq(pipe(p), 0);
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (die_with(parent) != 0 || dup2(p[1], 1) < 0)
            _exit(126);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* The next line the child printed, without its newline, into line;
 * false at EOF or when none came within timeout_ms. */
typedef struct lines {
    int fd;
    char buf[4096];
    size_t len;
} lines_t;

static bool
next_line(lines_t *r, char *line, size_t cap, int timeout_ms)
{
    int64_t end = fonte_mono_us() + (int64_t) timeout_ms * 1000;

    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl != NULL) {
            size_t n = (size_t) (nl - r->buf);
            cr_assert_lt(n, cap);
            memcpy(line, r->buf, n);
            line[n] = '\0';
            memmove(r->buf, nl + 1, r->len - n - 1);
            r->len -= n + 1;
            return true;
        }
        cr_assert_lt(r->len, sizeof r->buf, "a line too long");
        int64_t left = end - fonte_mono_us();
        if (left <= 0)
            return false;
        struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
        int k = poll(&pfd, 1, (int) (left / 1000) + 1);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_geq(k, 0);
        if (k == 0)
            continue;
        ssize_t got = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (got <= 0)
            return false; /* EOF: the child is gone */
        r->len += (size_t) got;
    }
}

/* design.md §4: "A producer that dies loses only what it had not
 * flushed". A producer process flushes every 500 events and says so;
 * SIGKILLed once it has flushed 5000, the store must hold its session as
 * 1, 2, ..., k with k at least the last count it printed (what it
 * published after that may or may not have arrived, but never with a
 * hole or twice). The listener goes on: the service's next session is
 * stored whole beside it. */
Test(reliability, a_producer_killed_loses_only_what_it_had_not_flushed)
{
    enum { EVERY = 500, KILL_AT = 5000 / SCALE, NEXT = 300 };
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    char *argv[] = { FONTE_BIN_DIR "/test_producer",
                     (char *) broker_ingress_endpoint(b),
                     (char *) broker_egress_endpoint(b),
                     (char *) listener_query_endpoint(l), "shop", "500",
                     NULL };
    lines_t out = { 0 };
    char line[128];
    pid_t pid = spawn_piped(argv, &out.fd);

    cr_assert(next_line(&out, line, sizeof line, 20000),
              "test_producer said nothing");
    unsigned long long dead_session = 0, flushed = 0, n;
    cr_assert_eq(sscanf(line, "session %16llx", &dead_session), 1, "%s",
                 line);
    while (flushed < KILL_AT) {
        cr_assert(next_line(&out, line, sizeof line, 30000),
                  "test_producer stopped at %llu flushed", flushed);
        cr_assert_eq(sscanf(line, "flushed %llu", &n), 1, "%s", line);
        cr_assert_eq(n, flushed + EVERY);
        flushed = n;
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status = reap(pid, 5000);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* a flush may have returned between our last read and the kill */
    while (next_line(&out, line, sizeof line, 1000)) {
        cr_assert_eq(sscanf(line, "flushed %llu", &n), 1, "%s", line);
        cr_assert_eq(n, flushed + EVERY);
        flushed = n;
    }
    close(out.fd);

    /* the same service again, a new session: stored whole */
    fonte_client_t *c = start_client("shop", broker_ingress_endpoint(b),
                                     broker_egress_endpoint(b),
                                     listener_query_endpoint(l));
    publish_n(c, "order.placed", NEXT);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    uint64_t sessions[2] = { dead_session, fonte_client_session(c) };
    uint64_t last[2];
    cr_assert_neq(sessions[0], sessions[1]);
    walk_sessions(listener_store(l), sessions, last, 2);
    cr_assert_geq(last[0], flushed, "%llu flushed, %llu stored",
                  flushed, (unsigned long long) last[0]);
    cr_assert_eq(last[1], NEXT);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

/* ------------------------------------------------------------------ */
/* fetch and replay                                                    */

typedef struct tally {
    int n, replays;
} tally_t;

static void
count(const fonte_event_t *e, void *arg)
{
    tally_t *t = arg;
    t->n++;
    t->replays += fonte_event_is_replay(e);
}

Test(reliability, fetch_of_an_unknown_object_is_not_found)
{
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    fonte_client_t *c = start_client("shop", broker_ingress_endpoint(b),
                                     broker_egress_endpoint(b),
                                     listener_query_endpoint(l));
    fonte_event_list_t *list = NULL;
    fonte_err rc = fonte_fetch(c, "order:unknown", NULL, &list);
    cr_assert_eq(rc, FONTE_ENOTFOUND);
    cr_assert_null(list);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

Test(reliability, fetch_returns_the_flushed_history_in_order)
{
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    fonte_client_t *c = start_client("shop", broker_ingress_endpoint(b),
                                     broker_egress_endpoint(b),
                                     listener_query_endpoint(l));
    publish_n(c, "order.placed", 2500); /* 1000 objects: 2 or 3 each */
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    fonte_fetch_opts_t fo;
    fonte_fetch_opts_init(&fo);
    fo.page_size = 1; /* one event per page: exercises the cursor */
    fonte_event_list_t *list = NULL;
    cr_assert_eq(fonte_fetch(c, "order:7", &fo, &list), FONTE_OK);
    cr_assert_eq(fonte_event_list_count(list), 3);
    for (size_t i = 0; i < 3; i++) {
        const fonte_event_t *e = fonte_event_list_get(list, i);
        cr_assert_str_eq(fonte_event_object(e), "order:7");
        cr_assert_eq(fonte_event_producer_seq(e), 8 + 1000 * i);
        cr_assert_gt(fonte_event_seq(e), 0);
    }
    fonte_event_list_destroy(&list);
    fonte_client_destroy(&c);
    listener_destroy(&l);
    broker_destroy(&b);
}

Test(reliability, targeted_replay_reaches_only_the_target_flagged)
{
    broker_t *b = start_broker(0);
    listener_t *l = start_listener(broker_ingress_endpoint(b),
                                   broker_egress_endpoint(b));
    const char *in = broker_ingress_endpoint(b), *out = broker_egress_endpoint(b);
    const char *q = listener_query_endpoint(l);
    fonte_client_t *shop = start_client("shop", in, out, q);
    fonte_client_t *billing = start_client("billing", in, out, q);
    fonte_client_t *search = start_client("search", in, out, q);
    tally_t got = { 0 }, other = { 0 };
    cr_assert_eq(fonte_subscribe(billing, "order.", count, &got), FONTE_OK);
    cr_assert_eq(fonte_subscribe(search, "order.", count, &other), FONTE_OK);
    publish_n(shop, "order.placed", 2000); /* order:5 gets 2 events */
    cr_assert_eq(fonte_flush(shop, FLUSH_MS), FONTE_OK);
    /* Forget the live copies, then ask for the replay. */
    while (fonte_dispatch(billing, 200, NULL) == FONTE_OK)
        ;
    while (fonte_dispatch(search, 200, NULL) == FONTE_OK)
        ;
    got.n = got.replays = other.n = other.replays = 0;

    fonte_replay_ticket_t t;
    cr_assert_eq(fonte_request_replay(billing, "order:5", NULL, &t),
                 FONTE_OK);
    cr_assert_eq(t.total, 2);
    int64_t end = fonte_mono_us() + 10000000;
    /* waits for the flagged ones: a live copy late from the burst above
     * would count in got.n, not in got.replays */
    while (got.replays < 2 && fonte_mono_us() < end)
        fonte_dispatch(billing, 100, NULL);
    fonte_dispatch(search, 300, NULL);
    cr_assert_eq(got.replays, 2);
    cr_assert_eq(other.replays, 0);
    fonte_client_destroy(&shop);
    fonte_client_destroy(&billing);
    fonte_client_destroy(&search);
    listener_destroy(&l);
    broker_destroy(&b);
}
