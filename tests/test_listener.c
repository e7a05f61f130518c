/*
 * test_listener.c - the listener end to end: an in-process broker on
 * ephemeral ports, the listener (in process, or as a child process for
 * the SIGKILL test), raw PUB publishers of hand-made events, a SUB on
 * "$ack." and a REQ/DEALER on the query endpoint. Every run ends with a
 * full consistency check of the store through store.h.
 *
 * Sizes: the SIGKILL burst is 200k events (FONTE_TEST_BURST overrides;
 * the sanitizer build compiles with FONTE_TEST_SCALE_DOWN and uses 50k).
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "broker.h"
#include "listener.h"
#include "log.h"
#include "store.h"
#include "testutil.h"

#ifndef FONTE_BIN_DIR
#error "FONTE_BIN_DIR must name the directory of fonte-listener"
#endif

extern char **environ;

static const codec_limits_t lim = CODEC_LIMITS_DEFAULT;
static char dir[64], data[96];
static void *ctx;
static broker_t *broker;
static listener_t *listener;
static void *pub, *acks, *sys_sub; /* closed by teardown, even after a failure */

/* Every Ack read so far, per session: tests wait on this record, so
 * that reading one session's Acks never loses another's. */
typedef struct ack_log {
    uint64_t session;
    uint64_t durable, gap_durable; /* highest seen, without / with gap */
    uint64_t n, n_gap, last;       /* Acks seen; durable of the latest */
} ack_log_t;
static ack_log_t ack_logs[16];

/* ------------------------------------------------------------------ */
/* fixture */

static void
start_broker(int hwm)
{
    broker_opts_t bo;
    char err[256];
    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.hwm = hwm;
    bo.stats_interval_us = 0;
    cr_assert_eq(broker_new(&bo, &broker, err, sizeof err), FONTE_OK, "%s",
                 err);
}

/* The tests' options: the data dir, no sync, no Stats, a free query
 * port, the broker's endpoints given. */
static void
listener_opts_for(listener_opts_t *o, const char *egress, const char *ingress)
{
    listener_opts_init(o);
    o->egress = egress;
    o->ingress = ingress;
    o->query = "tcp://127.0.0.1:*";
    o->data = data;
    o->sync = false; /* durability itself is the SIGKILL test's business */
    o->stats_interval_us = 0;
}

static void
listener_defaults(listener_opts_t *o)
{
    listener_opts_for(o, broker_egress_endpoint(broker),
                      broker_ingress_endpoint(broker));
}

static void
start_listener_with(const listener_opts_t *o)
{
    char err[512];
    fonte_err rc = listener_new(o, &listener, err, sizeof err);
    cr_assert_eq(rc, FONTE_OK, "listener_new: %s", err);
}

static void
start_listener(void)
{
    listener_opts_t o;
    listener_defaults(&o);
    start_listener_with(&o);
}

static void *
socket_to(int type, const char *endpoint)
{
    void *s = zmq_socket(ctx, type);
    int zero = 0;
    cr_assert_not_null(s);
    /* closed by teardown if the test does not (tu_sock_close) */
    cr_assert_eq(tu_sock_track(s), 0, "more than %d test sockets open",
                 TU_SOCKS_MAX);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (type == ZMQ_PUB)
        zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
    if (type == ZMQ_SUB)
        zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    return s;
}

static void
setup(void)
{
    flog_set_level(FLOG_ERROR);
    memset(ack_logs, 0, sizeof ack_logs);
    strcpy(dir, "/tmp/fonte-test-listener-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/data", dir);
    ctx = zmq_ctx_new();
}

static pid_t spawned; /* a child listener of the test, to kill if left */

static void
teardown(void)
{
    if (spawned > 0) {
        kill(spawned, SIGKILL);
        waitpid(spawned, NULL, 0);
        spawned = 0;
    }
    void *named[] = { pub, acks, sys_sub };
    for (size_t i = 0; i < 3; i++)
        if (named[i] != NULL)
            tu_sock_close(named[i]);
    pub = acks = sys_sub = NULL;
    tu_socks_close_all();
    listener_destroy(&listener);
    broker_destroy(&broker);
    zmq_ctx_term(ctx);
    tu_rmtree(dir);
}

TestSuite(listener, .init = setup, .fini = teardown, .timeout = 110);

/* ------------------------------------------------------------------ */
/* publishing and acks */

static void
send_event(void *sock, const Fonte__Event *ev, const char *topic_override)
{
    codec_buf_t topic, body;
    cr_assert_eq(codec_event_encode(ev, &lim, &topic, &body), FONTE_OK);
    const char *t = topic_override ? topic_override : (const char *) topic.data;
    size_t tlen = topic_override ? strlen(topic_override) : topic.len;
    cr_assert_eq(zmq_send(sock, t, tlen, ZMQ_SNDMORE), (int) tlen);
    cr_assert_eq(zmq_send(sock, body.data, body.len, 0), (int) body.len);
    codec_buf_free(&topic);
    codec_buf_free(&body);
}

/* Publishes one plain event (object "<kind>:<n>", type "t.<kind>"). */
static void
publish(void *sock, const char *producer, uint64_t session, uint64_t pseq,
        const char *object, const char *dep)
{
    char type[64];
    snprintf(type, sizeof type, "t.%.*s", (int) strcspn(object, ":"), object);
    Fonte__Event *ev = tu_event(type, object, producer, session, pseq);
    if (dep)
        tu_event_add_dep(ev, dep);
    static const char payload[32] = "0123456789abcdef0123456789abcde";
    tu_event_set_payload(ev, payload, sizeof payload, "test.Payload");
    send_event(sock, ev, NULL);
    codec_event_free(&ev);
}

/* Stats with store_failed seen on the Ack socket (subscribed to
 * "$sys.listener" too): the listener publishes them on the PUB its Acks
 * go out on, after the failure, so once one came every Ack sent before
 * the failure had come before it. */
static bool failed_stats_seen;

static bool stats_get(Fonte__Stats *st, const char *key, double *v);

static void
failed_stats_note(const void *body, size_t len)
{
    Fonte__Stats *st = NULL;
    double v = 0;
    cr_assert_eq(codec_stats_decode(body, len, &lim, &st), FONTE_OK);
    if (stats_get(st, "store_failed", &v) && v >= 1)
        failed_stats_seen = true;
    fonte__stats__free_unpacked(st, NULL);
}

/* The next Ack within timeout_ms; false on timeout. */
static bool
next_ack(void *sock, int timeout_ms, Fonte__Ack **ack_p)
{
    int64_t end = fonte_mono_us() + (int64_t) timeout_ms * 1000;
    for (;;) {
        int64_t left = (end - fonte_mono_us()) / 1000;
        zmq_pollitem_t pi = { sock, 0, ZMQ_POLLIN, 0 };
        if (left <= 0 || zmq_poll(&pi, 1, (long) left) <= 0)
            return false;
        zmq_msg_t t, b;
        zmq_msg_init(&t);
        zmq_msg_init(&b);
        cr_assert_geq(zmq_msg_recv(&t, sock, 0), 0);
        cr_assert(zmq_msg_more(&t));
        cr_assert_geq(zmq_msg_recv(&b, sock, 0), 0);
        if (zmq_msg_size(&t) == 13 &&
            memcmp(zmq_msg_data(&t), "$sys.listener", 13) == 0) {
            failed_stats_note(zmq_msg_data(&b), zmq_msg_size(&b));
            zmq_msg_close(&t);
            zmq_msg_close(&b);
            continue;
        }
        fonte_err rc = codec_ack_decode(zmq_msg_data(&b), zmq_msg_size(&b),
                                        &lim, ack_p);
        zmq_msg_close(&t);
        zmq_msg_close(&b);
        if (rc == FONTE_OK)
            return true;
    }
}


static ack_log_t *
ack_log(uint64_t session)
{
    for (size_t i = 0; i < 16; i++)
        if (ack_logs[i].session == session || ack_logs[i].session == 0) {
            ack_logs[i].session = session;
            return &ack_logs[i];
        }
    cr_assert_fail("too many sessions in one test");
    return NULL;
}

/* Reads Acks for up to timeout_ms (at least one poll) into the log;
 * false if none came. */
static bool
pump_acks(int timeout_ms)
{
    Fonte__Ack *a;
    if (!next_ack(acks, timeout_ms, &a))
        return false;
    do {
        ack_log_t *l = ack_log(a->session);
        uint64_t *max = a->gap ? &l->gap_durable : &l->durable;
        if (a->durable_seq > *max)
            *max = a->durable_seq;
        l->n += !a->gap;
        l->n_gap += a->gap;
        l->last = a->durable_seq;
        fonte__ack__free_unpacked(a, NULL);
    } while (next_ack(acks, 0, &a));
    return true;
}

/* Waits until an Ack of session with durable_seq >= want and the given
 * gap flag was seen; returns the highest such durable_seq, 0 on
 * timeout. */
static uint64_t
wait_ack(uint64_t session, uint64_t want, bool gap, int timeout_ms)
{
    int64_t end = fonte_mono_us() + (int64_t) timeout_ms * 1000;
    for (;;) {
        ack_log_t *l = ack_log(session);
        uint64_t have = gap ? l->gap_durable : l->durable;
        if ((gap ? l->n_gap : l->n) > 0 && have >= want)
            return have;
        int64_t left = (end - fonte_mono_us()) / 1000;
        if (left <= 0)
            return 0;
        pump_acks((int) left);
    }
}

/* Waits for the next Ack (without gap) of session after now; returns its
 * durable_seq, or UINT64_MAX on timeout. */
static uint64_t
wait_next_ack(uint64_t session, int timeout_ms)
{
    uint64_t n0 = ack_log(session)->n;
    int64_t end = fonte_mono_us() + (int64_t) timeout_ms * 1000;
    while (ack_log(session)->n == n0) {
        int64_t left = (end - fonte_mono_us()) / 1000;
        if (left <= 0)
            return UINT64_MAX;
        pump_acks((int) left);
    }
    return ack_log(session)->last;
}

#define WARM_SESSION 0x5eed

/* Publishes a warm-up event until its Ack comes back: then the
 * listener's subscription has reached our PUB and our "$ack." SUB is
 * subscribed. Counts as one event, object "warm:1", one session. */
static void
wait_ready(void)
{
    for (int i = 0; i < 100; i++) {
        publish(pub, "warm", WARM_SESSION, 1, "warm:1", NULL);
        if (wait_next_ack(WARM_SESSION, 100) != UINT64_MAX)
            return;
        /* Sent again only if it never reached the listener (the PUB had
         * no subscription yet): a copy that did is stored or counted a
         * duplicate, and a duplicate would be in the tests' counts. A child
         * listener cannot be asked: sent again. */
        ingest_counters_t ic;
        if (listener == NULL) /* a child listener: nothing to ask */
            continue;
        listener_counters(listener, &ic);
        if (ic.events_stored + ic.duplicates > 0 &&
            wait_next_ack(WARM_SESSION, 5000) != UINT64_MAX)
            return;
    }
    cr_assert_fail("the listener never acked the warm-up event");
}

static void
connect_clients(void)
{
    pub = socket_to(ZMQ_PUB, broker_ingress_endpoint(broker));
    acks = socket_to(ZMQ_SUB, broker_egress_endpoint(broker));
    cr_assert_eq(zmq_setsockopt(acks, ZMQ_SUBSCRIBE, "$ack.", 5), 0);
    wait_ready();
}

/* ------------------------------------------------------------------ */
/* the consistency check */

typedef struct name_seqs {
    char *name;
    size_t len;
    uint64_t *seqs;
    size_t n, cap;
} name_seqs_t;

typedef struct names {
    name_seqs_t *v;
    size_t n, cap;
} names_t;

static name_seqs_t *
names_get(names_t *ns, codec_slice_t s)
{
    for (size_t i = ns->n; i-- > 0;)
        if (ns->v[i].len == s.len && memcmp(ns->v[i].name, s.ptr, s.len) == 0)
            return &ns->v[i];
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? 2 * ns->cap : 64;
        ns->v = realloc(ns->v, ns->cap * sizeof *ns->v);
        cr_assert_not_null(ns->v);
    }
    name_seqs_t *e = &ns->v[ns->n++];
    memset(e, 0, sizeof *e);
    e->name = malloc(s.len + 1);
    memcpy(e->name, s.ptr, s.len);
    e->len = s.len;
    return e;
}

static void
seqs_add(name_seqs_t *e, uint64_t seq)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 64;
        e->seqs = realloc(e->seqs, e->cap * sizeof *e->seqs);
        cr_assert_not_null(e->seqs);
    }
    e->seqs[e->n++] = seq;
}

static void
names_free(names_t *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        free(ns->v[i].name);
        free(ns->v[i].seqs);
    }
    free(ns->v);
}

/* The index of family iter_fn for every name equals the seqs the `e`
 * keys say, in order. */
static void
check_index(store_snap_t *snap, names_t *ns, char fam)
{
    for (size_t i = 0; i < ns->n; i++) {
        store_iter_t *it = NULL;
        store_item_t item;
        size_t k = 0;
        name_seqs_t *e = &ns->v[i];
        if (fam == 'o')
            cr_assert_eq(store_iter_object(snap, e->name, e->len, 0, &it), 0);
        else
            cr_assert_eq(store_iter_type(snap, e->name, e->len, 0, &it), 0);
        while (store_iter_next(it, &item)) {
            cr_assert_lt(k, e->n, "%c key %s seq %llu has no event", fam,
                         e->name, (unsigned long long) item.seq);
            cr_assert_eq(item.seq, e->seqs[k], "%c index of %s", fam, e->name);
            k++;
        }
        cr_assert_eq(store_iter_error(it), FONTE_OK);
        cr_assert_eq(k, e->n, "%c index of %s misses events", fam, e->name);
        store_iter_destroy(&it);
    }
}

/* Checks the whole store: seqs 1..last_seq contiguous, every event
 * fully indexed (o, t, d, r) and nothing else indexed, watermarks equal
 * to the highest producer_seq stored per session with that session's
 * producer_seqs contiguous from 1, and the counters equal to what is
 * stored. Returns last_seq. */
static uint64_t
check_store(store_t *s, names_t *sessions_out)
{
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    store_item_t item;
    names_t objects = { 0 }, types = { 0 }, sessions = { 0 };
    uint64_t expect = 1;

    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_iter_events(snap, 0, &it), FONTE_OK);
    while (store_iter_next(it, &item)) {
        codec_view_t v;
        cr_assert_eq(item.seq, expect, "seqs are contiguous");
        expect++;
        cr_assert_eq(codec_event_scan(item.value.ptr, item.value.len, &lim,
                                      &v), FONTE_OK);
        cr_assert_not(v.has_replay);
        seqs_add(names_get(&objects, v.object), item.seq);
        seqs_add(names_get(&types, v.type), item.seq);
        /* Session key: producer NUL session as text. */
        char key[128];
        int kl = snprintf(key, sizeof key, "%.*s/%llx", (int) v.producer.len,
                          v.producer.ptr, (unsigned long long) v.session);
        name_seqs_t *ses = names_get(&sessions, (codec_slice_t) { key, (size_t) kl });
        cr_assert_eq(v.producer_seq, ses->n + 1,
                     "session %s stored in order without holes", key);
        seqs_add(ses, v.producer_seq);
        size_t pos = 0;
        codec_slice_t dep;
        while (codec_view_next_dep(&v, &pos, &dep)) {
            store_iter_t *d = NULL;
            bool found = false;
            cr_assert_eq(store_iter_deps(snap, v.object.ptr, v.object.len, &d),
                         0);
            while (!found && store_iter_next(d, &item))
                found = item.name.len == dep.len &&
                        memcmp(item.name.ptr, dep.ptr, dep.len) == 0;
            store_iter_destroy(&d);
            cr_assert(found, "d key for a dependency");
            cr_assert_eq(store_iter_dependents(snap, dep.ptr, dep.len, &d), 0);
            found = false;
            while (!found && store_iter_next(d, &item))
                found = item.name.len == v.object.len &&
                        memcmp(item.name.ptr, v.object.ptr, v.object.len) == 0;
            store_iter_destroy(&d);
            cr_assert(found, "r key for a dependency");
        }
    }
    cr_assert_eq(store_iter_error(it), FONTE_OK);
    store_iter_destroy(&it);
    uint64_t last = expect - 1;
    cr_assert_eq(store_snap_last_seq(snap), last, "m last_seq");

    check_index(snap, &objects, 'o');
    check_index(snap, &types, 't');

    /* Watermarks: one `p` key per session, equal to the last stored. */
    size_t n_p = 0;
    cr_assert_eq(store_iter_sessions(snap, &it), FONTE_OK);
    while (store_iter_next(it, &item)) {
        char key[128];
        int kl = snprintf(key, sizeof key, "%.*s/%llx", (int) item.name.len,
                          item.name.ptr, (unsigned long long) item.session);
        name_seqs_t *ses = names_get(&sessions, (codec_slice_t) { key, (size_t) kl });
        cr_assert_eq(item.last, ses->n, "watermark of %s", key);
        n_p++;
    }
    store_iter_destroy(&it);
    cr_assert_eq(n_p, sessions.n, "a p key for every session, no more");

    store_counts_t c;
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, last);
    cr_assert_eq(c.events, last);
    cr_assert_eq(c.objects, objects.n);
    cr_assert_eq(c.sessions, sessions.n);

    /* the same store through store_verify (fonte-listener --verify),
     * which must agree: consistent, with the same counts */
    store_verify_report_t r;
    char err[256] = "";
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_eq(r.problems, 0, "%llu problems: %s",
                 (unsigned long long) r.problems, r.shown[0]);
    cr_assert_eq(r.events, last);
    cr_assert_eq(r.objects, objects.n);
    cr_assert_eq(r.sessions, sessions.n);

    store_snap_destroy(&snap);
    names_free(&objects);
    names_free(&types);
    if (sessions_out)
        *sessions_out = sessions;
    else
        names_free(&sessions);
    return last;
}

/* Watermark of a session from a check_store result. */
static uint64_t
stored_of(names_t *ses, const char *producer, uint64_t session)
{
    char key[128];
    int kl = snprintf(key, sizeof key, "%s/%llx", producer,
                      (unsigned long long) session);
    for (size_t i = 0; i < ses->n; i++)
        if (ses->v[i].len == (size_t) kl && !memcmp(ses->v[i].name, key, kl))
            return ses->v[i].n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* query client */

static Fonte__Reply *
request(void *req_sock, const void *body, size_t len)
{
    Fonte__Reply *rep = NULL;
    cr_assert_eq(zmq_send(req_sock, body, len, 0), (int) len);
    zmq_pollitem_t pi = { req_sock, 0, ZMQ_POLLIN, 0 };
    cr_assert_eq(zmq_poll(&pi, 1, 5000), 1, "a reply within 5 s");
    zmq_msg_t m;
    zmq_msg_init(&m);
    cr_assert_geq(zmq_msg_recv(&m, req_sock, 0), 0);
    cr_assert_eq(codec_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &lim,
                                    &rep), FONTE_OK);
    zmq_msg_close(&m);
    return rep;
}

/* r, packed, on req_sock; its Reply decoded. */
static Fonte__Reply *
ask_request(void *req_sock, Fonte__Request *r)
{
    codec_buf_t b = tu_pack(&r->base);
    Fonte__Reply *rep = request(req_sock, b.data, b.len);
    codec_buf_free(&b);
    return rep;
}

static Fonte__Reply *
status(void *req_sock)
{
    Fonte__Request r = FONTE__REQUEST__INIT;
    Fonte__StatusRequest sr = FONTE__STATUS_REQUEST__INIT;
    r.body_case = FONTE__REQUEST__BODY_STATUS;
    r.status = &sr;
    return ask_request(req_sock, &r);
}

/* ------------------------------------------------------------------ */
/* tests */

Test(listener, events_get_contiguous_seqs_full_indexes_and_one_ack_each)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    char obj[32], dep[32];
    for (uint64_t i = 1; i <= 500; i++)
        for (uint64_t s = 1; s <= 2; s++) {
            snprintf(obj, sizeof obj, "order:%llu", (unsigned long long) (i % 10));
            snprintf(dep, sizeof dep, "user:%llu", (unsigned long long) (i % 3));
            publish(pub, s == 1 ? "shop" : "pay", s, i, obj,
                    i % 2 ? dep : NULL);
        }
    cr_assert_eq(wait_ack(1, 500, false, 10000), 500);
    cr_assert_eq(wait_ack(2, 500, false, 10000), 500);
    names_t ses;
    cr_assert_eq(check_store(listener_store(listener), &ses), 1001);
    cr_assert_eq(stored_of(&ses, "shop", 1), 500);
    cr_assert_eq(stored_of(&ses, "pay", 2), 500);
    names_free(&ses);
    store_counts_t c;
    store_counts(listener_store(listener), &c);
    cr_assert_eq(c.objects, 11); /* order:0..9 and warm:1 */
    cr_assert_eq(c.sessions, 3);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.events_stored, 1001);
    cr_assert_eq(ic.duplicates, 0);
    cr_assert_eq(ic.gaps, 0);
    cr_assert_leq(ic.acks_sent, 2 * ic.batches + 1, "one Ack per session "
                  "per batch");
}

Test(listener, duplicate_is_ignored_counted_and_reacked)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    for (uint64_t i = 1; i <= 3; i++)
        publish(pub, "shop", 7, i, "order:1", NULL);
    cr_assert_eq(wait_ack(7, 3, false, 5000), 3);
    publish(pub, "shop", 7, 2, "order:1", NULL);
    cr_assert_eq(wait_next_ack(7, 5000), 3, "the session's Ack again");
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.duplicates, 1);
    cr_assert_eq(ic.events_stored, 4);
    cr_assert_eq(check_store(listener_store(listener), NULL), 4);
}

Test(listener, gap_is_not_stored_and_gets_a_gap_ack_then_heals)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    publish(pub, "shop", 7, 1, "order:1", NULL);
    publish(pub, "shop", 7, 2, "order:1", NULL);
    cr_assert_eq(wait_ack(7, 2, false, 5000), 2);
    publish(pub, "shop", 7, 5, "order:1", NULL);
    cr_assert_eq(wait_ack(7, 2, true, 5000), 2, "Ack{durable 2, gap}");
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.gaps, 1);
    cr_assert_eq(ic.gap_acks_sent, 1);
    cr_assert_eq(check_store(listener_store(listener), NULL), 3);
    for (uint64_t i = 3; i <= 5; i++) /* the resend */
        publish(pub, "shop", 7, i, "order:1", NULL);
    cr_assert_eq(wait_ack(7, 5, false, 5000), 5);
    cr_assert_eq(check_store(listener_store(listener), NULL), 6);
}

Test(listener, a_burst_of_gaps_gets_fewer_gap_acks)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    for (uint64_t i = 10; i < 60; i++) /* 1..9 "lost" */
        publish(pub, "shop", 8, i, "order:1", NULL);
    /* wait_ack gives 0 on a timeout too: the gap Ack must have come */
    cr_assert_eq(wait_ack(8, 0, true, 5000), 0);
    cr_assert_gt(ack_log(8)->n_gap, 0, "no gap Ack reached the wire");
    publish(pub, "shop", 8, 1, "order:1", NULL); /* a marker after them */
    cr_assert_eq(wait_ack(8, 1, false, 5000), 1);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.gaps, 50);
    cr_assert_geq(ic.gap_acks_sent, 1);
    cr_assert_lt(ic.gap_acks_sent, 50, "one per session and durable_seq "
                 "per 20 ms, not one per event");
}

Test(listener, replays_and_reserved_topics_are_never_stored)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    Fonte__Event *ev = tu_event("order.placed", "order:1", "shop", 9, 1);
    tu_event_set_replay(ev, "r1", "order:1", "billing");
    send_event(pub, ev, NULL); /* $replay.billing.order.placed */
    codec_event_free(&ev);
    publish(pub, "shop", 9, 1, "order:1", NULL);
    cr_assert_eq(wait_ack(9, 1, false, 5000), 1);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.ignored_replay, 1);
    cr_assert_geq(ic.ignored_reserved, 1, "our own Acks come back");
    cr_assert_eq(ic.events_stored, 2);
    cr_assert_eq(check_store(listener_store(listener), NULL), 2);
}

Test(listener, invalid_messages_are_counted_by_reason_and_not_stored)
{
    /* No broker (it would drop them first): our PUB is the egress and
     * our SUB the ingress. */
    char egress[256], ingress[256];
    size_t len = sizeof egress;
    void *feed = zmq_socket(ctx, ZMQ_PUB);
    void *sink = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(feed, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sink, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(feed, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(feed, ZMQ_LAST_ENDPOINT, egress, &len);
    len = sizeof ingress;
    cr_assert_eq(zmq_bind(sink, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(sink, ZMQ_LAST_ENDPOINT, ingress, &len);
    zmq_setsockopt(sink, ZMQ_SUBSCRIBE, "$ack.", 5);
    acks = sink;

    listener_opts_t o;
    listener_opts_for(&o, egress, ingress);
    start_listener_with(&o);
    pub = feed;
    wait_ready();

    zmq_send(feed, "order.placed", 12, 0); /* one frame */
    zmq_send(feed, "order.placed", 12, ZMQ_SNDMORE);
    zmq_send(feed, "\xff\xff", 2, 0); /* not protobuf */
    Fonte__Event *ev = tu_event("order.placed", "order:1", "shop", 9, 1);
    send_event(feed, ev, "order.paid"); /* topic != type */
    codec_event_free(&ev);
    publish(feed, "shop", 9, 1, "order:1", NULL);
    cr_assert_eq(wait_ack(9, 1, false, 5000), 1);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.invalid, 3);
    cr_assert_eq(ic.invalid_by[FONTE_EFRAMES], 1);
    cr_assert_eq(ic.invalid_by[FONTE_EDECODE], 1);
    cr_assert_eq(ic.invalid_by[FONTE_ETOPIC], 1);
    cr_assert_eq(check_store(listener_store(listener), NULL), 2);
}

Test(listener, status_request_reports_the_store)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    for (uint64_t i = 1; i <= 4; i++)
        publish(pub, "shop", 3, i, i % 2 ? "order:1" : "user:2", NULL);
    cr_assert_eq(wait_ack(3, 4, false, 5000), 4);

    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Reply *rep = status(req);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_STATUS_REPLY);
    cr_assert_eq(rep->status_reply->last_seq, 5);
    cr_assert_eq(rep->status_reply->events, 5);
    cr_assert_eq(rep->status_reply->objects, 3);
    cr_assert_eq(rep->status_reply->sessions, 2);
    cr_assert_str_eq(rep->status_reply->data_dir, data);
    cr_assert_str_eq(rep->status_reply->version, FONTE_VERSION);
    cr_assert_str_eq(rep->status_reply->store_id,
                     store_id(listener_store(listener)));
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);
}

Test(listener, malformed_requests_get_a_bad_request_reply)
{
    start_broker(100000);
    start_listener();
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Reply *rep = request(req, "\xff\xff\xff", 3);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_not_null(strstr(rep->error, "malformed"), "%s", rep->error);
    fonte__reply__free_unpacked(rep, NULL);

    rep = request(req, "", 0); /* a Request with no body */
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_neq(rep->error[0], '\0');
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);

    /* DEALER: two body frames after the delimiter. */
    void *dealer = socket_to(ZMQ_DEALER, listener_query_endpoint(listener));
    zmq_send(dealer, "", 0, ZMQ_SNDMORE);
    zmq_send(dealer, "a", 1, ZMQ_SNDMORE);
    zmq_send(dealer, "b", 1, 0);
    zmq_pollitem_t pi = { dealer, 0, ZMQ_POLLIN, 0 };
    cr_assert_eq(zmq_poll(&pi, 1, 5000), 1);
    char buf[512];
    cr_assert_eq(zmq_recv(dealer, buf, sizeof buf, 0), 0, "the delimiter");
    int n = zmq_recv(dealer, buf, sizeof buf, 0);
    cr_assert_gt(n, 0);
    cr_assert_eq(codec_reply_decode(buf, (size_t) n, &lim, &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_not_null(strstr(rep->error, "got 2"), "%s", rep->error);
    fonte__reply__free_unpacked(rep, NULL);

    /* No delimiter: nothing to answer to; the server carries on. */
    zmq_send(dealer, "x", 1, 0);
    zmq_send(dealer, "", 0, ZMQ_SNDMORE);
    Fonte__Request r = FONTE__REQUEST__INIT;
    Fonte__StatusRequest sr = FONTE__STATUS_REQUEST__INIT;
    r.body_case = FONTE__REQUEST__BODY_STATUS;
    r.status = &sr;
    codec_buf_t b = tu_pack(&r.base);
    zmq_send(dealer, b.data, b.len, 0);
    codec_buf_free(&b);
    cr_assert_eq(zmq_poll(&pi, 1, 5000), 1);
    cr_assert_eq(zmq_recv(dealer, buf, sizeof buf, 0), 0);
    n = zmq_recv(dealer, buf, sizeof buf, 0);
    cr_assert_eq(codec_reply_decode(buf, (size_t) n, &lim, &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "the status reply");
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(dealer);
}

Test(listener, replay_request_of_an_unknown_object_is_not_found)
{
    start_broker(100000);
    start_listener();
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Request r = FONTE__REQUEST__INIT;
    Fonte__ReplayRequest rr = FONTE__REPLAY_REQUEST__INIT;
    rr.object = "order:1";
    r.body_case = FONTE__REQUEST__BODY_REPLAY;
    r.replay = &rr;
    codec_buf_t b = tu_pack(&r.base);
    Fonte__Reply *rep = request(req, b.data, b.len);
    codec_buf_free(&b);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__NOT_FOUND);
    cr_assert_str_eq(rep->error, "no events for object order:1");
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);
}

Test(listener, restart_continues_the_sequence_and_the_watermarks)
{
    start_broker(100000);
    start_listener();
    connect_clients();
    for (uint64_t i = 1; i <= 10; i++)
        publish(pub, "shop", 4, i, "order:1", NULL);
    cr_assert_eq(wait_ack(4, 10, false, 5000), 10);
    listener_destroy(&listener);

    start_listener();
    wait_ready(); /* the warm-up is a duplicate now: re-acked */
    for (uint64_t i = 11; i <= 20; i++)
        publish(pub, "shop", 4, i, "order:1", NULL);
    cr_assert_eq(wait_ack(4, 20, false, 5000), 20);
    publish(pub, "shop", 4, 5, "order:1", NULL);
    cr_assert_eq(wait_next_ack(4, 5000), 20);
    names_t ses;
    cr_assert_eq(check_store(listener_store(listener), &ses), 21);
    cr_assert_eq(stored_of(&ses, "shop", 4), 20);
    names_free(&ses);
    store_counts_t c;
    store_counts(listener_store(listener), &c);
    cr_assert_eq(c.objects, 2);
    cr_assert_eq(c.sessions, 2);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_eq(ic.events_stored, 10, "this run stored 11..20");
    cr_assert_geq(ic.duplicates, 2);
}

static bool
stats_get(Fonte__Stats *st, const char *key, double *v)
{
    for (size_t i = 0; i < st->n_counters; i++)
        if (strcmp(st->counters[i]->key, key) == 0) {
            *v = (double) st->counters[i]->value;
            return true;
        }
    for (size_t i = 0; i < st->n_gauges; i++)
        if (strcmp(st->gauges[i]->key, key) == 0) {
            *v = st->gauges[i]->value;
            return true;
        }
    return false;
}

/* The next Stats on sys (subscribed to "$sys.listener") whose key
 * reads at least v; fails after 100 Stats or 5 s without one. */
static Fonte__Stats *
next_stats_with(void *sys, const char *key, double v)
{
    for (int i = 0; i < 100; i++) {
        zmq_pollitem_t pi = { sys, 0, ZMQ_POLLIN, 0 };
        cr_assert_eq(zmq_poll(&pi, 1, 5000), 1, "Stats within 5 s");
        char topic[64], body[8192];
        Fonte__Stats *st = NULL;
        double got = 0;
        int tl = zmq_recv(sys, topic, sizeof topic, 0);
        int bl = zmq_recv(sys, body, sizeof body, 0);
        cr_assert_eq(tl, 13);
        cr_assert(bl > 0 && bl <= (int) sizeof body, "a whole Stats: %d", bl);
        cr_assert_eq(codec_stats_decode(body, (size_t) bl, &lim, &st),
                     FONTE_OK);
        if (stats_get(st, key, &got) && got >= v)
            return st;
        fonte__stats__free_unpacked(st, NULL);
    }
    cr_assert_fail("no Stats with %s >= %g in 100", key, v);
    return NULL;
}

Test(listener, stats_are_published_on_sys_listener)
{
    start_broker(100000);
    listener_opts_t o;
    listener_defaults(&o);
    o.stats_interval_us = 50000;
    start_listener_with(&o);
    connect_clients();
    void *sys = sys_sub = socket_to(ZMQ_SUB, broker_egress_endpoint(broker));
    zmq_setsockopt(sys, ZMQ_SUBSCRIBE, "$sys.listener", 13);
    Fonte__Stats *st = next_stats_with(sys, "events_stored", 1);
    double v = 0;
    cr_assert(stats_get(st, "events_stored", &v));
    cr_assert_str_eq(st->source, "listener");
    cr_assert_eq(v, 1);
    static const char *const keys[] = {
        "duplicates", "gaps", "acks_sent", "invalid", "batches",
        "batch_size_avg", "commit_p50_us", "commit_p99_us", "queue_depth",
        "last_seq", "sessions", "objects", "store_bytes" };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cr_assert(stats_get(st, keys[i], &v), "Stats has %s", keys[i]);
    cr_assert(stats_get(st, "last_seq", &v));
    cr_assert_eq(v, 1);
    cr_assert(stats_get(st, "store_bytes", &v));
    cr_assert_gt(v, 0);
    fonte__stats__free_unpacked(st, NULL);

    /* the query endpoint's and the replays' counters: a status request
     * and a request that does not decode, then a Stats that saw both */
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Reply *rep = status(req);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    fonte__reply__free_unpacked(rep, NULL);
    rep = request(req, "\xff", 1);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);
    st = next_stats_with(sys, "query_requests", 2);
    static const struct { const char *key; double v; } want[] = {
        { "query_status", 1 },  { "query_replay", 0 },
        { "query_bad_requests", 1 }, { "query_dropped", 0 },
        { "query_busy", 0 },    { "replay_pages", 0 },
        { "query_spun", 0 }, /* the second came to a sleeping thread */
        { "replay_scans_parked", 0 }, { "replay_running", 0 },
        { "replay_cursors", 0 } };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        cr_assert(stats_get(st, want[i].key, &v), "Stats has %s",
                  want[i].key);
        cr_assert_eq(v, want[i].v, "%s = %g", want[i].key, v);
    }
    fonte__stats__free_unpacked(st, NULL);
}

/* Waits (bounded) until the listener has received at least n messages. */
static void
wait_received(uint64_t n)
{
    ingest_counters_t ic;
    int64_t end = fonte_mono_us() + 30 * 1000000LL;
    const struct timespec ms = { 0, 1000000 };
    for (;;) {
        listener_counters(listener, &ic);
        if (ic.received >= n)
            return;
        cr_assert_lt(fonte_mono_us(), end, "received %llu of %llu in 30 s",
                     (unsigned long long) ic.received, (unsigned long long) n);
        nanosleep(&ms, NULL);
    }
}

/* on_store_failed: counts, and writes a byte to a pipe the test polls */
static atomic_int store_failures;
static int failure_pipe[2];

static void
note_store_failure(void *arg)
{
    (void) arg;
    atomic_fetch_add(&store_failures, 1);
    if (write(failure_pipe[1], "!", 1) != 1)
        abort();
}

/* Acks carry the store's id; a listener that sees another's Acks on the
 * broker (two listeners, which fonte does not support) counts them. */
Test(listener, two_listeners_on_one_broker_see_each_others_acks)
{
    char data2[128];
    listener_t *second = NULL;
    char err[512];

    start_broker(0);
    start_listener();
    listener_opts_t o;
    listener_defaults(&o);
    snprintf(data2, sizeof data2, "%s/data2", dir);
    o.data = data2;
    cr_assert_eq(listener_new(&o, &second, err, sizeof err), FONTE_OK, "%s",
                 err);
    const char *a = store_id(listener_store(listener));
    const char *b = store_id(listener_store(second));
    cr_assert_eq(strlen(a), 16);
    cr_assert_eq(strlen(b), 16);
    cr_assert_str_neq(a, b, "each store has an id of its own");
    connect_clients();
    /* both sign their Acks: read them until both ids were seen */
    bool seen_a = false, seen_b = false;
    int64_t end = fonte_mono_us() + 10 * 1000000LL;
    for (uint64_t seq = 1; !(seen_a && seen_b); seq++) {
        cr_assert_lt(fonte_mono_us(), end, "Acks of both within 10 s");
        publish(pub, "two", 0x77, seq, "two:1", NULL);
        Fonte__Ack *ack = NULL;
        while (next_ack(acks, 50, &ack)) {
            seen_a |= strcmp(ack->listener, a) == 0;
            seen_b |= strcmp(ack->listener, b) == 0;
            cr_assert(strcmp(ack->listener, a) == 0 ||
                      strcmp(ack->listener, b) == 0, "%s", ack->listener);
            fonte__ack__free_unpacked(ack, NULL);
        }
    }
    /* each counted the other's (they read the egress as we do) */
    ingest_counters_t ca, cb;
    end = fonte_mono_us() + 10 * 1000000LL;
    do {
        listener_counters(listener, &ca);
        listener_counters(second, &cb);
        if (ca.other_listener_acks > 0 && cb.other_listener_acks > 0)
            break;
        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
    } while (fonte_mono_us() < end);
    cr_assert_gt(ca.other_listener_acks, 0);
    cr_assert_gt(cb.other_listener_acks, 0);
    listener_destroy(&second);

    /* the id is the store's: the same after a restart */
    char keep[17];
    snprintf(keep, sizeof keep, "%s", a);
    listener_destroy(&listener);
    start_listener();
    cr_assert_str_eq(store_id(listener_store(listener)), keep);
}

/* A commit that fails (the test process's files capped at 64 KiB, as a
 * full disk) is the last: on_store_failed is called once, nothing more
 * is acknowledged - neither the events of the failed batch nor the ones
 * after, once there is room again - the Acks sent match what the store
 * holds, the counters say so, and the Stats carry store_failed 1. */
Test(listener, a_failed_commit_is_the_last_and_nothing_after_it_is_acked)
{
    enum { N = 1000, S = 0x5107 };
    struct rlimit was;

    cr_assert_eq(pipe(failure_pipe), 0);
    start_broker(100000);
    listener_opts_t o;
    listener_defaults(&o);
    o.stats_interval_us = 50000;
    o.on_store_failed = note_store_failure;
    start_listener_with(&o);
    connect_clients();
    void *sys = sys_sub = socket_to(ZMQ_SUB, broker_egress_endpoint(broker));
    zmq_setsockopt(sys, ZMQ_SUBSCRIBE, "$sys.listener", 13);
    /* some events stored before the cap */
    for (uint64_t i = 1; i <= 100; i++)
        publish(pub, "fill", S, i, "order:1", NULL);
    cr_assert_eq(wait_ack(S, 100, false, 10000), 100);

    cr_assert_eq(tu_fsize_cap(64 << 10, &was), 0);
    for (uint64_t i = 101; i <= N; i++)
        publish(pub, "fill", S, i, "order:1", NULL);
    struct pollfd pf = { failure_pipe[0], POLLIN, 0 };
    int ready = poll(&pf, 1, 20000);
    cr_assert_eq(tu_fsize_restore(&was), 0);
    cr_assert_eq(ready, 1, "on_store_failed within 20 s");

    const char *why = store_write_error(listener_store(listener));
    cr_assert_not_null(why);
    cr_assert_not_null(strstr(why, "File too large"), "%s", why);
    /* every Ack sent before the failure: they came before a Stats that
     * says it failed, on the same connections */
    cr_assert_eq(zmq_setsockopt(acks, ZMQ_SUBSCRIBE, "$sys.listener", 13),
                 0);
    for (int64_t end = fonte_mono_us() + 10000000; !failed_stats_seen;) {
        cr_assert(fonte_mono_us() < end, "no Stats saying store_failed");
        pump_acks(100);
    }
    uint64_t acks_before = ack_log(S)->n, gap_acks_before = ack_log(S)->n_gap;
    /* room again: a resend of the whole session (duplicates, then what
     * was never stored) and more: neither stored nor acknowledged, not
     * even as a duplicate or a gap */
    for (uint64_t i = 1; i <= 100; i++) /* stored: duplicates only */
        publish(pub, "fill", S, i, "order:1", NULL);
    wait_received(1 + N + 100);
    for (uint64_t i = 101; i <= N + 10; i++)
        publish(pub, "fill", S, i, "order:1", NULL);
    wait_received(1 + 2 * N + 10);
    store_counts_t c;
    store_counts(listener_store(listener), &c);
    uint64_t stored = c.events - 1; /* the warm-up event */
    cr_assert_geq(stored, 100, "the first 100 were stored before the cap");
    cr_assert_lt(stored, N);
    /* every Ack sent has come: none says more than the store holds */
    while (pump_acks(300))
        ;
    cr_assert_eq(ack_log(S)->durable, stored);
    cr_assert_eq(ack_log(S)->n, acks_before, "no Ack after the failure");
    cr_assert_eq(ack_log(S)->n_gap, gap_acks_before, "no gap Ack either");
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    cr_assert_geq(ic.commit_errors, 1);
    cr_assert_eq(atomic_load(&store_failures), 1, "called once");
    Fonte__Stats *st = next_stats_with(sys, "store_failed", 1);
    double v = 0;
    cr_assert(stats_get(st, "commit_errors", &v));
    cr_assert_geq(v, 1);
    fonte__stats__free_unpacked(st, NULL);
    store_counts(listener_store(listener), &c);
    cr_assert_eq(c.events - 1, stored, "nothing written since");
    close(failure_pipe[0]);
    close(failure_pipe[1]);
}

Test(listener, small_write_buffer_under_a_burst_drops_nothing_while_the_queue_has_room)
{
#ifdef FONTE_TEST_SCALE_DOWN
    const uint64_t per = 5000;
#else
    const uint64_t per = 20000;
#endif
    /* ZeroMQ may buffer 2000 messages in the broker and 2000 in the SUB;
     * the burst is 4 x per. The writer is held (a LevelDB stall) for the
     * first half, then runs against a 64 KiB memtable that flushes and
     * compacts all the time. Receiving must carry on into the queue: a
     * receive thread that waited for the writer would stall at ~4000
     * and the broker would drop (gaps). The publisher stays within
     * 1000 messages of what the listener has read, so that only the
     * listener's own behaviour can lose anything. */
    start_broker(2000);
    listener_opts_t o;
    listener_defaults(&o);
    o.write_buffer = 64 << 10;
    o.rcvhwm = 2000;
    o.queue_max = 4 * per + 10;
    o.queue_bytes = (size_t) 256 << 20;
    start_listener_with(&o);
    connect_clients();
    listener_hold_writer(listener, true);
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    uint64_t base = ic.received, sent = 0;
    char obj[32];
    for (uint64_t i = 1; i <= per; i++) {
        if (i == per / 2 + 1) {
            wait_received(base + sent);
            listener_counters(listener, &ic);
            cr_assert_eq(ic.queue_depth, sent, "everything queued, "
                         "nothing written: queue_depth %llu, sent %llu",
                         (unsigned long long) ic.queue_depth,
                         (unsigned long long) sent);
            cr_assert_eq(ic.events_stored, 1);
            listener_hold_writer(listener, false);
        }
        for (uint64_t s = 1; s <= 4; s++) {
            snprintf(obj, sizeof obj, "order:%llu", (unsigned long long) (i % 1000));
            publish(pub, "shop", s, i, obj, NULL);
            sent++;
        }
        if (sent % 500 == 0)
            wait_received(base + sent - 1000 + 500);
    }
    for (uint64_t s = 1; s <= 4; s++)
        cr_assert_eq(wait_ack(s, per, false, 60000), per, "session %llu",
                     (unsigned long long) s);
    listener_counters(listener, &ic);
    cr_assert_eq(ic.gaps, 0);
    cr_assert_eq(ic.queue_full_waits, 0);
    cr_assert_eq(ic.events_stored, 4 * per + 1);
    cr_assert_eq(check_store(listener_store(listener), NULL), 4 * per + 1);
}

/* A batch is bounded in what it writes (batch_bytes), not only in events:
 * with a bound below one event's cost, 20 events queued while the writer
 * was held go out in 20 batches, each acked; by default they would go in
 * one. */
Test(listener, a_batch_is_bounded_in_bytes_too)
{
    start_broker(100000);
    listener_opts_t o;
    listener_defaults(&o);
    o.batch_bytes = 1; /* every event over it: one a batch */
    start_listener_with(&o);
    connect_clients();
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    uint64_t base = ic.received, batches = ic.batches;
    listener_hold_writer(listener, true);
    for (uint64_t i = 1; i <= 20; i++)
        publish(pub, "shop", 1, i, "order:1", "user:7");
    wait_received(base + 20);
    listener_counters(listener, &ic);
    cr_assert_eq(ic.queue_depth, 20);
    listener_hold_writer(listener, false);
    cr_assert_eq(wait_ack(1, 20, false, 10000), 20);
    listener_counters(listener, &ic);
    cr_assert_eq(ic.events_stored, 1 + 20); /* the warm-up's, and these */
    cr_assert_eq(ic.batches - batches, 20, "%llu batches",
                 (unsigned long long) (ic.batches - batches));
}

Test(listener, locked_corrupt_and_unwritable_data_dirs_are_store_errors)
{
    start_broker(100000);
    listener_opts_t o;
    char err[512];
    listener_defaults(&o);

    store_opts_t so;
    store_t *held = NULL;
    store_opts_init(&so);
    so.dir = data;
    cr_assert_eq(store_open(&so, &held, err, sizeof err), FONTE_OK);
    cr_assert_eq(listener_new(&o, &listener, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(listener);
    cr_assert_not_null(strstr(err, data), "%s", err);
    cr_assert_not_null(strstr(err, "locked"), "%s", err);
    store_close(&held);

    FILE *f = fopen(strcat(strcpy(err, data), "/CURRENT"), "w");
    cr_assert_not_null(f);
    fputs("garbage", f);
    fclose(f);
    cr_assert_eq(listener_new(&o, &listener, err, sizeof err), FONTE_ESTORE);
    cr_assert_not_null(strstr(err, "corrupt"), "%s", err);

    char file[128], below[160];
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(below, sizeof below, "%s/data", file);
    f = fopen(file, "w");
    fclose(f);
    o.data = below;
    cr_assert_eq(listener_new(&o, &listener, err, sizeof err), FONTE_ESTORE);
    cr_assert_not_null(strstr(err, below), "%s", err);
}

/* Polls the listener's counters until ok(c) or 10 s pass. */
static bool
counters_until(bool (*ok)(const ingest_counters_t *), ingest_counters_t *c)
{
    int64_t end = fonte_mono_us() + 10 * 1000000LL;
    for (;;) {
        listener_counters(listener, c);
        if (ok(c) || fonte_mono_us() > end)
            return ok(c);
        usleep(5000); /* polling counters: no fd to wait on */
    }
}

static bool
connected_once(const ingest_counters_t *c)
{
    return c->broker_connected && c->broker_connects == 1;
}

static bool
lost_once(const ingest_counters_t *c)
{
    return !c->broker_connected && c->broker_disconnects == 1;
}

/* The listener knows whether it hears the broker (a listener started
 * before its broker, or whose broker went away, stores nothing, and
 * used to say nothing): broker_connected, broker_connects and
 * broker_disconnects follow its egress connection (and are in Stats). */
Test(listener, it_knows_whether_it_hears_the_broker)
{
    char in[64], out[64], err[256];
    snprintf(in, sizeof in, "tcp://127.0.0.1:%u", tu_free_port());
    snprintf(out, sizeof out, "tcp://127.0.0.1:%u", tu_free_port());
    listener_opts_t o;
    listener_opts_for(&o, out, in);
    start_listener_with(&o);

    ingest_counters_t c;
    listener_counters(listener, &c);
    cr_assert_not(c.broker_connected, "no broker yet");
    cr_assert_eq(c.broker_connects, 0);

    broker_opts_t bo;
    broker_opts_init(&bo);
    bo.ingress = in;
    bo.egress = out;
    bo.stats_interval_us = 0;
    cr_assert_eq(broker_new(&bo, &broker, err, sizeof err), FONTE_OK, "%s",
                 err);
    cr_assert(counters_until(connected_once, &c),
              "connected %d, connects %llu", c.broker_connected,
              (unsigned long long) c.broker_connects);
    cr_assert_eq(c.broker_disconnects, 0);

    broker_destroy(&broker);
    cr_assert(counters_until(lost_once, &c),
              "connected %d, disconnects %llu", c.broker_connected,
              (unsigned long long) c.broker_disconnects);
    cr_assert_eq(c.broker_connects, 1);
}

Test(listener, taken_query_port_is_an_io_error)
{
    start_broker(100000);
    start_listener();
    listener_opts_t o;
    listener_t *second = NULL;
    char err[512], other[128];
    listener_defaults(&o);
    snprintf(other, sizeof other, "%s/other", dir);
    o.data = other;
    o.query = listener_query_endpoint(listener);
    cr_assert_eq(listener_new(&o, &second, err, sizeof err), FONTE_EIO);
    cr_assert_null(second);
    cr_assert_not_null(strstr(err, "cannot bind"), "%s", err);
}

/* One BackupRequest on req; the Reply decoded. */
static Fonte__Reply *
backup(void *req_sock, const char *name)
{
    Fonte__Request r = FONTE__REQUEST__INIT;
    Fonte__BackupRequest br = FONTE__BACKUP_REQUEST__INIT;
    br.name = (char *) name;
    r.body_case = FONTE__REQUEST__BODY_BACKUP;
    r.backup = &br;
    return ask_request(req_sock, &r);
}

/* A backup is a store of its own holding exactly the events up to the
 * last seq it reports, even with events arriving meanwhile; names are
 * checked and never overwritten; a listener without --backup-dir refuses
 * backups. */
Test(listener, a_backup_is_a_consistent_store_of_its_own)
{
    char backups[128], err[512], path[192];
    snprintf(backups, sizeof backups, "%s/backups", dir);
    cr_assert_eq(mkdir(backups, 0755), 0);
    start_broker(100000);
    listener_opts_t o;
    listener_defaults(&o);
    o.backup_dir = backups;
    start_listener_with(&o);
    connect_clients();
    for (uint64_t i = 1; i <= 500; i++)
        publish(pub, "shop", 7, i, "order:1", NULL);
    cr_assert_eq(wait_ack(7, 500, false, 30000), 500);
    /* 1000 more go on being stored while the copy is made */
    for (uint64_t i = 501; i <= 1500; i++)
        publish(pub, "shop", 7, i, "order:2", NULL);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Reply *rep = backup(req, "b-1");
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_BACKUP_REPLY);
    snprintf(path, sizeof path, "%s/b-1", backups);
    cr_assert_str_eq(rep->backup_reply->path, path);
    uint64_t last = rep->backup_reply->last_seq;
    cr_assert_geq(last, 501, "the warm-up and the first 500 at least");
    cr_assert_gt(rep->backup_reply->keys, last);
    fonte__reply__free_unpacked(rep, NULL);
    cr_assert_eq(wait_ack(7, 1500, false, 30000), 1500);

    rep = backup(req, "b-1");
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_not_null(strstr(rep->error, "exists already"), "%s",
                       rep->error);
    fonte__reply__free_unpacked(rep, NULL);
    rep = backup(req, "../x");
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_not_null(strstr(rep->error, "malformed Request"), "%s",
                       rep->error);
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);

    /* the copy opens as a store: its counters and events are those of
     * seqs 1..last, byte for byte */
    store_opts_t so;
    store_opts_init(&so);
    so.dir = path;
    so.create = false;
    store_t *copy = NULL;
    cr_assert_eq(store_open(&so, &copy, err, sizeof err), FONTE_OK, "%s",
                 err);
    store_counts_t c;
    store_counts(copy, &c);
    cr_assert_eq(c.last_seq, last);
    cr_assert_eq(c.events, last);
    /* an id of its own: a listener on the copy is another listener */
    cr_assert(codec_listener_id_valid(store_id(copy)), "%s", store_id(copy));
    cr_assert_str_neq(store_id(copy), store_id(listener_store(listener)));
    store_snap_t *a = NULL, *b = NULL;
    cr_assert_eq(store_snap_new(copy, &a), FONTE_OK);
    cr_assert_eq(store_snap_new(listener_store(listener), &b), FONTE_OK);
    for (uint64_t seq = 1; seq <= last + 1; seq++) {
        void *x = NULL, *y = NULL;
        size_t xl = 0, yl = 0;
        fonte_err rx = store_get_event(a, seq, &x, &xl);
        if (seq <= last) {
            cr_assert_eq(rx, FONTE_OK, "event %llu in the copy",
                         (unsigned long long) seq);
            cr_assert_eq(store_get_event(b, seq, &y, &yl), FONTE_OK);
            cr_assert(xl == yl && memcmp(x, y, xl) == 0);
        } else {
            cr_assert_eq(rx, FONTE_ENOTFOUND, "nothing after last_seq");
        }
        store_free(x);
        store_free(y);
    }
    store_snap_destroy(&a);
    store_snap_destroy(&b);
    store_close(&copy);

    /* without --backup-dir: refused; a missing one: refused at start */
    listener_t *other = NULL;
    char data2[160];
    snprintf(data2, sizeof data2, "%s/other", dir);
    listener_defaults(&o);
    o.data = data2;
    o.backup_dir = "/nonexistent/backups";
    cr_assert_eq(listener_new(&o, &other, err, sizeof err), FONTE_EINVAL);
    cr_assert_not_null(strstr(err, "backup directory"), "%s", err);
    o.backup_dir = NULL;
    cr_assert_eq(listener_new(&o, &other, err, sizeof err), FONTE_OK, "%s",
                 err);
    req = socket_to(ZMQ_REQ, listener_query_endpoint(other));
    rep = backup(req, "b-2");
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__UNAVAILABLE);
    cr_assert_str_eq(rep->error, "backups are not enabled: start the "
                                 "listener with --backup-dir");
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);
    listener_destroy(&other);
}

/* A start that fails after making its data directory takes it away
 * again; one that was there before is left as it was. */
Test(listener, a_failed_start_leaves_no_data_directory_it_made)
{
    start_broker(100000);
    start_listener();
    listener_opts_t o;
    listener_t *second = NULL;
    char err[512], fresh[128], kept[128];
    struct stat st;
    listener_defaults(&o);
    o.query = listener_query_endpoint(listener); /* taken: the bind fails */
    snprintf(fresh, sizeof fresh, "%s/fresh", dir);
    o.data = fresh;
    cr_assert_eq(listener_new(&o, &second, err, sizeof err), FONTE_EIO);
    cr_assert_neq(stat(fresh, &st), 0, "%s is gone", fresh);
    cr_assert_eq(errno, ENOENT);
    snprintf(kept, sizeof kept, "%s/kept", dir);
    cr_assert_eq(mkdir(kept, 0755), 0);
    o.data = kept;
    cr_assert_eq(listener_new(&o, &second, err, sizeof err), FONTE_EIO);
    cr_assert_eq(stat(kept, &st), 0, "%s was there before", kept);
    cr_assert_null(second);
}

/* An endpoint libzmq cannot parse is the caller's mistake (the daemons
 * exit 2 on it), not an I/O error. */
Test(listener, malformed_query_endpoint_is_invalid)
{
    start_broker(100000);
    listener_opts_t o;
    listener_t *l = NULL;
    char err[512];
    listener_defaults(&o);
    const char *bad[] = { "foo", "nope://127.0.0.1:1" };
    for (size_t i = 0; i < 2; i++) {
        o.query = bad[i];
        cr_assert_eq(listener_new(&o, &l, err, sizeof err), FONTE_EINVAL,
                     "%s", bad[i]);
        cr_assert_null(l);
        cr_assert_not_null(strstr(err, "cannot bind query endpoint"), "%s",
                           err);
    }
}

/* How many of this process's threads are named `comm` (*n), and how
 * many of those may run on exactly the CPUs `cpus` (a
 * Cpus_allowed_list). */
static void
threads_named(const char *comm, const char *cpus, int *n, int *on_cpus)
{
    *n = tu_threads_named(comm, cpus, on_cpus);
    cr_assert_geq(*n, 0, "/proc/self/task cannot be read");
}

/* Waits (up to 5 s, looking every 10 ms) until at least n_min threads
 * are named comm and exactly on_want of them (or all of them, with
 * on_want -1) may run on exactly the CPUs `cpus`; then asserts it. A
 * thread names itself and applies its affinity once it runs (libzmq's
 * I/O threads, the prefetch thread), possibly after listener_new
 * returned, and nothing signals that. */
static void
wait_threads(const char *comm, const char *cpus, int n_min, int on_want)
{
    int n = 0, on = 0;
    for (int i = 0; i < 500; i++) {
        threads_named(comm, cpus, &n, &on);
        if (n >= n_min && on == (on_want < 0 ? n : on_want))
            return;
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("%d threads named %s (want %d or more), %d of them on "
                   "CPUs %s (want %d)", n, comm, n_min, on, cpus, on_want);
}

/* This process's Cpus_allowed_list, and its last CPU. */
static int
my_cpus(char *list, size_t cap)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    list[0] = '\0';
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "Cpus_allowed_list:\t", 19) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(list, cap, "%s", line + 19);
        }
    fclose(f);
    cr_assert_neq(list[0], '\0');
    cpu_set_t mine;
    CPU_ZERO(&mine);
    cr_assert_eq(sched_getaffinity(0, sizeof mine, &mine), 0);
    for (int c = CPU_SETSIZE - 1; c >= 0; c--)
        if (CPU_ISSET(c, &mine))
            return c;
    cr_assert_fail("no CPU");
    return -1;
}

/* n status requests on req, each answered OK. */
static void
statuses(void *req, int n)
{
    for (int i = 0; i < n; i++) {
        Fonte__Reply *rep = status(req);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
        fonte__reply__free_unpacked(rep, NULL);
    }
}

static uint64_t
spun(void)
{
    query_counters_t q;
    listener_query_counters(listener, &q);
    return q.spun;
}

static void
start_listener_spinning(int64_t spin_us)
{
    listener_opts_t o;
    start_broker(100000);
    listener_defaults(&o);
    o.query_spin_us = spin_us;
    start_listener_with(&o);
}

/* query.c, spin_serve: the first request has no reply before it, the
 * second came after one (within spin_us): from the third on, each is
 * picked up by the poll that follows the reply before it. */
Test(listener, a_client_asking_back_to_back_is_answered_without_a_wake_up)
{
    start_listener_spinning(1000000);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 20);
    cr_assert_eq(spun(), 18, "%llu", (unsigned long long) spun());
    tu_sock_close(req);
}

Test(listener, with_query_spin_0_the_query_thread_never_polls)
{
    start_listener_spinning(0);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 20);
    cr_assert_eq(spun(), 0);
    tu_sock_close(req);
}

/* A pause longer than spin_us ends the polling: the poll after the 5th
 * reply times out, the 6th request (after the pause) and the 7th (the
 * first after a short gap again) come to a sleeping thread, the 8th to
 * a polling one. The pause is what is tested, not a wait for anything. */
Test(listener, polling_stops_when_the_client_pauses_and_resumes_after_a_short_gap)
{
    /* a poll of 1 s: back to back means within it even on a busy
     * machine (50 ms was not always) */
    start_listener_spinning(1000000);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 5);
    cr_assert_eq(spun(), 3);
    struct timespec pause = { 1, 300 * 1000000L }; /* past the poll */
    nanosleep(&pause, NULL);
    statuses(req, 1);
    cr_assert_eq(spun(), 3);
    statuses(req, 1);
    cr_assert_eq(spun(), 3);
    statuses(req, 1);
    cr_assert_eq(spun(), 4);
    tu_sock_close(req);
}

/* The poll ends after spin_us: a listener whose client stopped asking
 * uses no CPU. The pauses are what is tested. CPU time is counted in
 * clock ticks (10 ms here): the bounds leave two ticks of slack. */
Test(listener, the_poll_stops_and_an_idle_query_thread_uses_no_cpu)
{
    start_listener_spinning(1000000);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 5);
    cr_assert_eq(spun(), 3);
    struct timespec first = { 1, 200 * 1000000L }, next = { 0, 400000000L };
    long t0 = tu_thread_cpu_ms("fonte-query");
    cr_assert_geq(t0, 0);
    nanosleep(&first, NULL);
    long t1 = tu_thread_cpu_ms("fonte-query");
    nanosleep(&next, NULL);
    long t2 = tu_thread_cpu_ms("fonte-query");
    /* at most the one poll of 1 s after the last reply */
    cr_assert_leq(t1 - t0, 1000 + 20, "%ld ms in the first 1.2 s", t1 - t0);
    cr_assert_leq(t2 - t1, 20, "%ld ms in the next 400 ms", t2 - t1);
    tu_sock_close(req);
}

/* A request handed to a worker is answered later, from the worker: it
 * turns polling off until two requests in a row are answered inline. */
Test(listener, a_request_handed_to_a_worker_turns_polling_off)
{
    start_listener_spinning(1000000);
    connect_clients();
    for (uint64_t i = 1; i <= 3; i++)
        publish(pub, "shop", 3, i, "order:1", NULL);
    cr_assert_eq(wait_ack(3, 3, false, 5000), 3);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 3);
    cr_assert_eq(spun(), 1);

    Fonte__Request r = FONTE__REQUEST__INIT;
    Fonte__ReplayRequest rr = FONTE__REPLAY_REQUEST__INIT;
    rr.object = "*"; /* always a worker's (query.c, answer_replay) */
    r.body_case = FONTE__REQUEST__BODY_REPLAY;
    r.replay = &rr;
    Fonte__Reply *rep = ask_request(req, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_REPLAY);
    /* the warm-up event (wait_ready) and the three */
    cr_assert_eq(rep->replay->n_events, 4);
    fonte__reply__free_unpacked(rep, NULL);
    cr_assert_eq(spun(), 2); /* the replay request itself came to a poll */

    statuses(req, 2);
    cr_assert_eq(spun(), 2);
    statuses(req, 1);
    cr_assert_eq(spun(), 3);
    tu_sock_close(req);
}

Test(listener, query_cpu_pins_the_query_thread_and_its_io_thread_only)
{
    char all[256], one[16];
    int cpu = my_cpus(all, sizeof all), n, on;
    snprintf(one, sizeof one, "%d", cpu);
    start_broker(100000);
    listener_opts_t o;
    listener_defaults(&o);
    o.query_cpu = cpu;
    start_listener_with(&o);

    threads_named("fonte-query", one, &n, &on);
    cr_assert_eq(n, 1);
    cr_assert_eq(on, 1, "the query thread is not on CPU %d alone", cpu);
    if (strcmp(all, one) != 0) { /* else pinned and free look the same */
        /* the query's I/O thread alone: the broker's and the ingest
         * context's stay free */
        wait_threads("ZMQbg/IO/0", one, 3, 1);
        wait_threads("fonte-prefetch", all, 1, 1);
        threads_named("fonte-prefetch", all, &n, &on);
        cr_assert_eq(n, 1);
    }

    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    Fonte__Reply *rep = status(req);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    fonte__reply__free_unpacked(rep, NULL);
    tu_sock_close(req);
}

/* Pinned, the query thread shares its CPU with its I/O thread, which a
 * poll would keep waiting: by default it does not poll; asked to, it
 * does. */
Test(listener, with_query_cpu_the_query_thread_polls_only_when_asked)
{
    char all[256];
    listener_opts_t o;
    start_broker(100000);
    listener_defaults(&o);
    o.query_cpu = my_cpus(all, sizeof all);
    start_listener_with(&o);
    void *req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 5);
    cr_assert_eq(spun(), 0);
    tu_sock_close(req);
    listener_destroy(&listener);

    o.query_spin_us = 1000000;
    start_listener_with(&o);
    req = socket_to(ZMQ_REQ, listener_query_endpoint(listener));
    statuses(req, 5);
    cr_assert_eq(spun(), 3);
    tu_sock_close(req);
}

Test(listener, by_default_no_thread_is_pinned)
{
    char all[256];
    int n, on;
    my_cpus(all, sizeof all);
    start_broker(100000);
    start_listener();
    threads_named("fonte-query", all, &n, &on);
    cr_assert_eq(n, 1);
    cr_assert_eq(on, 1);
    wait_threads("ZMQbg/IO/0", all, 3, -1);
}

Test(listener, a_query_cpu_the_process_may_not_use_is_invalid)
{
    start_broker(100000);
    listener_opts_t o;
    listener_t *l = NULL;
    char err[512], want[64];
    listener_defaults(&o);
    o.query_cpu = CPU_SETSIZE - 1;
    cr_assert_eq(listener_new(&o, &l, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(l);
    snprintf(want, sizeof want, "query CPU %d is not one", CPU_SETSIZE - 1);
    cr_assert_not_null(strstr(err, want), "%s", err);
    o.query_cpu = -2;
    cr_assert_eq(listener_new(&o, &l, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(l);
    cr_assert_str_eq(err, "listener: invalid options");
}

/* ------------------------------------------------------------------ */
/* the crash test */

static uint64_t
burst_size(void)
{
    const char *env = getenv("FONTE_TEST_BURST");
    if (env && atoll(env) > 0)
        return (uint64_t) atoll(env);
#ifdef FONTE_TEST_SCALE_DOWN
    return 50000;
#else
    return 200000;
#endif
}

Test(listener, sigkilled_child_during_a_burst_reopens_consistent)
{
    const uint64_t total = burst_size();
    start_broker(0); /* no drops: what is lost is lost to the kill */
    char bin[512], query[] = "--query=tcp://127.0.0.1:*", eg[300], in[300],
         dat[128];
    snprintf(bin, sizeof bin, "%s/fonte-listener", FONTE_BIN_DIR);
    snprintf(eg, sizeof eg, "--egress=%s", broker_egress_endpoint(broker));
    snprintf(in, sizeof in, "--ingress=%s", broker_ingress_endpoint(broker));
    snprintf(dat, sizeof dat, "--data=%s", data);
    char *argv[] = { bin, eg, in, query, dat, "--sync=batch",
                     "--stats-interval=0", "--log-level=error", NULL };
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, NULL, NULL, argv, environ), 0);
    spawned = pid; /* teardown kills it if an assertion ends the test */

    connect_clients();
    /* Pre-encode the burst so that publishing is as fast as it gets. */
    codec_buf_t *bodies = calloc(total, sizeof *bodies);
    codec_buf_t *topics = calloc(total, sizeof *topics);
    cr_assert_not_null(bodies);
    cr_assert_not_null(topics);
    char obj[32], dep[32];
    for (uint64_t i = 0; i < total; i++) {
        uint64_t s = i % 4 + 1, pseq = i / 4 + 1;
        snprintf(obj, sizeof obj, "order:%llu", (unsigned long long) (i % 5000));
        snprintf(dep, sizeof dep, "user:%llu", (unsigned long long) (i % 50));
        Fonte__Event *ev = tu_event("order.placed", obj, "shop", s, pseq);
        if (i % 3 == 0)
            tu_event_add_dep(ev, dep);
        cr_assert_eq(codec_event_encode(ev, &lim, &topics[i], &bodies[i]),
                     FONTE_OK);
        codec_event_free(&ev);
    }
    uint64_t acked[5] = { 0 };
    uint64_t sent = 0, acked_total = 0;
    ack_log(1), ack_log(2), ack_log(3), ack_log(4);
    int64_t deadline = fonte_mono_us() + 60 * 1000000LL;
    /* Publish in slices, reading Acks in between; kill once a third of
     * the burst is acked - the rest is in the broker, the queue or the
     * batch being written. */
    while (acked_total < total / 3 && fonte_mono_us() < deadline) {
        for (int k = 0; k < 2000 && sent < total; k++, sent++) {
            zmq_send(pub, topics[sent].data, topics[sent].len, ZMQ_SNDMORE);
            zmq_send(pub, bodies[sent].data, bodies[sent].len, 0);
        }
        pump_acks(sent < total ? 0 : 50);
        acked_total = 0;
        for (uint64_t i = 1; i <= 4; i++)
            acked_total += acked[i] = ack_log(i)->durable;
    }
    /* killed before anything is asserted: a failure leaves no child
     * writing into the data dir teardown removes */
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_geq(acked_total, total / 3, "the child acked a third in 60 s");
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    spawned = 0;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "killed, not exited (status %d)", st);
    for (uint64_t i = 0; i < total; i++) {
        codec_buf_free(&topics[i]);
        codec_buf_free(&bodies[i]);
    }
    free(topics);
    free(bodies);

    /* Reopen: whole batches only, every acked event there. */
    store_opts_t so;
    store_t *s = NULL;
    char err[512];
    store_opts_init(&so);
    so.dir = data;
    so.create = false;
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    names_t ses;
    uint64_t last = check_store(s, &ses);
    cr_log_info("burst %llu: sent %llu, acked %llu at the kill, %llu stored",
                (unsigned long long) total, (unsigned long long) sent,
                (unsigned long long) acked_total, (unsigned long long) last);
    cr_assert_geq(last, acked_total + 1);
    for (uint64_t i = 1; i <= 4; i++)
        cr_assert_geq(stored_of(&ses, "shop", i), acked[i],
                      "session %llu: acked %llu must be durable",
                      (unsigned long long) i, (unsigned long long) acked[i]);
    cr_assert_leq(last, total + 1);
    names_free(&ses);
    store_close(&s);
}
