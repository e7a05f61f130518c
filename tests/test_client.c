/*
 * test_client.c - libfonte's API against an in-process broker, with the
 * listener played by the test itself: a PUB into the broker's ingress
 * that sends Acks and replays, a SUB on its egress that watches what the
 * client puts on the wire, and a ROUTER that answers queries. That makes
 * the protocol's corner cases (foreign Acks, gap Acks, paging, reply
 * statuses, targeted replays) exact and independent of the real listener;
 * tests/test_reliability.c runs the client against the real one.
 *
 * Every wait has a deadline; nothing sleeps to synchronise.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "broker.h"
#include "codec.h"
#include "fonte/fonte.h"
#include "log.h"
#include "testutil.h"

#define WAIT_MS 10000 /* upper bound of every wait: a failure, not a hang */

static broker_t *broker;
static void *zctx;
typedef struct server server_t;
static server_t *running; /* the fake listener whose thread runs, if any */

/* How the fake listener misbehaves, set before server_start (its thread
 * reads it): none, or one of a listener's faults a client must refuse. */
enum {
    HOSTILE_NONE,
    HOSTILE_WRONG_BODY,   /* a replay answered with a StatusReply */
    HOSTILE_BAD_EVENT,    /* an event in a page breaks the rules */
    HOSTILE_SAME_CURSOR,  /* every page hands back the cursor "1" */
    HOSTILE_PAST_TOTAL,   /* pages go on past the total announced */
    HOSTILE_TOTAL_MOVES,  /* each page announces another total */
    HOSTILE_EMPTY_PAGES   /* pages without events, new cursors forever */
};
static int hostile;
static void server_join(server_t *live);

static void
setup(void)
{
    broker_opts_t o;
    char err[256];

    flog_set_level(FLOG_ERROR);
    broker_opts_init(&o);
    o.ingress = "tcp://127.0.0.1:*";
    o.egress = "tcp://127.0.0.1:*";
    o.stats_interval_us = 0;
    cr_assert_eq(broker_new(&o, &broker, err, sizeof err), FONTE_OK, "%s",
                 err);
    zctx = zmq_ctx_new();
    cr_assert_not_null(zctx);
}

static void
teardown(void)
{
    if (running != NULL) { /* a test failed with its server running */
        server_t *live = running;
        server_join(live); /* its thread closes the ROUTER */
        free(live);
    }
    tu_socks_close_all(); /* what a failed test left open */
    hostile = HOSTILE_NONE;
    broker_destroy(&broker);
    zmq_ctx_term(zctx);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 60);

/* An endpoint nobody listens on. */
static void
dead_endpoint(char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%u", tu_free_port());
}

static char dead_query[64];

static void
client_opts(fonte_client_opts_t *o, const char *service)
{
    fonte_client_opts_init(o);
    o->service = service;
    o->ingress = broker_ingress_endpoint(broker);
    o->egress = broker_egress_endpoint(broker);
    dead_endpoint(dead_query, sizeof dead_query);
    o->query = dead_query;
    o->resend_timeout_ms = 200;
    /* long enough that a reply is never late on a slow machine: a late
     * one is a retry on a new socket, a request counted twice. Tests of
     * timeouts set SILENT_MS (their server stops answering). */
    o->query_timeout_ms = 5000;
}

/* A socket of zctx that does not linger, on the list teardown closes. */
static void *
open_sock(int type)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0;

    cr_assert_not_null(s);
    cr_assert_eq(tu_sock_track(s), 0, "more than %d test sockets open",
                 TU_SOCKS_MAX);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

static void *
sock(int type, const char *endpoint)
{
    void *s = open_sock(type);

    cr_assert_eq(zmq_connect(s, endpoint), 0);
    return s;
}

/* A SUB on the broker's egress: what the client puts on the wire. */
static void *
watcher(const char *prefix)
{
    void *s = sock(ZMQ_SUB, broker_egress_endpoint(broker));
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
    return s;
}

/* Next event seen by a watcher, or NULL after timeout_ms. */
static Fonte__Event *
watch(void *sub, int timeout_ms)
{
    zmq_pollitem_t it = { sub, 0, ZMQ_POLLIN, 0 };
    char topic[512];
    static uint8_t body[1 << 16];

    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    int tn = zmq_recv(sub, topic, sizeof topic, 0);
    int bn = zmq_recv(sub, body, sizeof body, 0);
    cr_assert(tn > 0 && bn > 0);
    Fonte__Event *ev = NULL;
    cr_assert_eq(codec_event_unpack(body, (size_t) bn, &codec_limits_default,
                                    &ev), FONTE_OK);
    return ev;
}

/* Sends an Ack into the broker as the listener would. */
static void
send_ack(void *pub, const char *producer, uint64_t session, uint64_t durable,
         bool gap)
{
    Fonte__Ack ack = FONTE__ACK__INIT;
    char topic[128];
    codec_buf_t buf;

    ack.producer = (char *) producer;
    ack.session = session;
    ack.durable_seq = durable;
    ack.gap = gap;
    cr_assert_eq(codec_pack(&ack.base, &buf), FONTE_OK);
    snprintf(topic, sizeof topic, "$ack.%s", producer);
    zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(pub, buf.data, buf.len, 0);
    codec_buf_free(&buf);
}

/* Acks durable for "shop"'s session through pub until c's flush says
 * everything is durable (the broker drops what a PUB sends before its
 * connection is up): fonte_flush's last answer, within WAIT_MS. */
static fonte_err
ack_until_flushed(fonte_client_t *c, void *pub, uint64_t session,
                  uint64_t durable)
{
    fonte_err rc = FONTE_ETIMEOUT;
    for (int i = 0; i < WAIT_MS / 20 && rc != FONTE_OK; i++) {
        send_ack(pub, "shop", session, durable, false);
        rc = fonte_flush(c, 20);
    }
    return rc;
}

static fonte_event_spec_t
spec(const char *type, const char *object)
{
    fonte_event_spec_t s = { 0 };
    s.type = type;
    s.object = object;
    return s;
}

/* ------------------------------------------------------------------ */

Test(client, new_rejects_a_missing_or_invalid_service_name)
{
    fonte_client_opts_t o;
    fonte_client_t *c = (fonte_client_t *) &o;

    client_opts(&o, NULL);
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EPRODUCER);
    cr_assert_null(c);
    o.service = "";
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EPRODUCER);
    o.service = "Shop";
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EPRODUCER);
    o.service = "shop.orders";
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EPRODUCER);
    cr_assert_null(c);
}

Test(client, new_rejects_an_endpoint_zeromq_cannot_parse)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    o.ingress = "nonsense";
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL);
    cr_assert_null(c);
    client_opts(&o, "shop");
    o.window = 0;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL);
    client_opts(&o, "shop");
    o.query_spin_us = -1;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL);
    cr_assert_null(c);
    /* ZMQ_MAXMSGSIZE is an int64_t: SIZE_MAX would be -1, no limit */
    client_opts(&o, "shop");
    o.max_msg = SIZE_MAX;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL);
    client_opts(&o, "shop");
    o.max_reply = (size_t) INT64_MAX + 1;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL);
    cr_assert_null(c);
}

/* The process's threads now (/proc/self/task), -1 if unreadable. */
static int
threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static atomic_bool storm_stop;
static pthread_t storm_target;

static void
on_usr1(int sig)
{
    (void) sig;
}

/* Sends SIGUSR1 to storm_target every few microseconds until told. */
static void *
storm_main(void *arg)
{
    (void) arg;
    while (!atomic_load(&storm_stop)) {
        pthread_kill(storm_target, SIGUSR1);
        struct timespec ts = { 0, 20000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Signals landing while a client is made and destroyed (a profiler's
 * timer, SIGCHLD): every client is made, and every destroy ends its
 * ZeroMQ context and threads. zmq_ctx_term fails with EINTR when a
 * signal cuts its wait short, and the context is then not terminated:
 * taken as done, 200 cycles left 114 threads behind. */
Test(client, a_signal_storm_neither_fails_a_client_nor_leaks_its_threads)
{
    fonte_client_opts_t o;
    struct sigaction sa = { 0 }, old;
    pthread_t storm;

    sa.sa_handler = on_usr1; /* no SA_RESTART: calls see EINTR */
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, &old), 0);
    int before = threads_now();
    cr_assert_gt(before, 0);
    storm_target = pthread_self();
    atomic_store(&storm_stop, false);
    cr_assert_eq(pthread_create(&storm, NULL, storm_main, NULL), 0);
    int made = 0;
    for (int i = 0; i < 200; i++) {
        fonte_client_t *c = NULL;
        client_opts(&o, "shop");
        fonte_err rc = fonte_client_new(&o, &c);
        if (rc != FONTE_OK) {
            atomic_store(&storm_stop, true);
            pthread_join(storm, NULL);
            sigaction(SIGUSR1, &old, NULL);
            cr_assert_fail("client %d: %s", i, fonte_errname(rc));
        }
        made++;
        fonte_client_destroy(&c);
    }
    atomic_store(&storm_stop, true);
    pthread_join(storm, NULL);
    cr_assert_eq(sigaction(SIGUSR1, &old, NULL), 0);
    cr_assert_eq(made, 200);
    /* a thread just joined may still be listed for a moment */
    int now = threads_now();
    for (int64_t end = fonte_mono_us() + 5000000;
         now != before && fonte_mono_us() < end; now = threads_now())
        poll(NULL, 0, 10);
    cr_assert_eq(now, before, "threads left behind");
}

Test(client, sessions_are_random_and_never_zero)
{
    fonte_client_opts_t o;
    fonte_client_t *a = NULL, *b = NULL;

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &a), FONTE_OK);
    cr_assert_eq(fonte_client_new(&o, &b), FONTE_OK);
    cr_assert_neq(fonte_client_session(a), 0);
    cr_assert_neq(fonte_client_session(b), 0);
    cr_assert_neq(fonte_client_session(a), fonte_client_session(b));
    cr_assert_str_eq(fonte_client_service(a), "shop");
    fonte_client_destroy(&a);
    fonte_client_destroy(&b);
    cr_assert_null(a);
    fonte_client_destroy(&a); /* NULL-safe */
}

Test(client, invalid_events_are_refused_and_use_no_sequence_number)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    void *w = watcher("order.");

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);

    fonte_event_spec_t s = spec("Order", "order:1");
    cr_assert_eq(fonte_publish(c, &s), FONTE_ETYPE);
    s = spec(NULL, "order:1");
    cr_assert_eq(fonte_publish(c, &s), FONTE_ETYPE);
    s = spec("order.placed", "");
    cr_assert_eq(fonte_publish(c, &s), FONTE_EOBJECT);
    const char *deps[65];
    for (int i = 0; i < 65; i++)
        deps[i] = "user:7";
    s = spec("order.placed", "order:1");
    s.depends_on = deps;
    s.n_depends_on = 65;
    cr_assert_eq(fonte_publish(c, &s), FONTE_EDEPS);
    const char *bad_dep[] = { "" };
    s.depends_on = bad_dep;
    s.n_depends_on = 1;
    cr_assert_eq(fonte_publish(c, &s), FONTE_EDEP);
    fonte_meta_t bad_meta = { "", "x" };
    s = spec("order.placed", "order:1");
    s.meta = &bad_meta;
    s.n_meta = 1;
    cr_assert_eq(fonte_publish(c, &s), FONTE_EMETA);
    s = spec("order.placed", "order:1");
    s.payload_len = 5;
    cr_assert_eq(fonte_publish(c, &s), FONTE_EINVAL);
    s = spec("order.placed", "order:1");
    static char big[(1 << 20) + 1];
    s.payload = big;
    s.payload_len = sizeof big;
    cr_assert_eq(fonte_publish(c, &s), FONTE_ETOOBIG);
    /* a length near SIZE_MAX (a failed read()'s -1 in a size_t) wrapped
     * the packed size to a small one: a heap overflow, then FONTE_OK */
    s.payload_len = SIZE_MAX;
    cr_assert_eq(fonte_publish(c, &s), FONTE_ETOOBIG);
    s.payload_len = SIZE_MAX - 40;
    cr_assert_eq(fonte_publish(c, &s), FONTE_ETOOBIG);

    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_eq(st.published, 0);
    cr_assert_eq(st.outbox_events, 0);

    s = spec("order.placed", "order:1");
    cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    /* No listener: the client resends every 200 ms until the watcher,
     * slow joiner or not, sees it. The first event on the wire is 1. */
    Fonte__Event *ev = watch(w, WAIT_MS);
    cr_assert_not_null(ev);
    cr_assert_eq(ev->producer_seq, 1);
    char id[CODEC_ID_MAX];
    codec_format_id(id, "shop", 4, fonte_client_session(c), 1);
    cr_assert_str_eq(ev->id, id);
    cr_assert_str_eq(ev->producer, "shop");
    cr_assert_eq(ev->session, fonte_client_session(c));
    codec_event_free(&ev);
    fonte_client_stats(c, &st);
    cr_assert_eq(st.published, 1);
    fonte_client_destroy(&c);
    tu_sock_close(w);
}

Test(client, full_outbox_gives_efull_after_the_publish_timeout)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    o.ingress = dead_query; /* no broker, no listener: nothing is acked */
    o.outbox_max_events = 4;
    o.publish_timeout_ms = 300;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    int64_t t0 = fonte_mono_us();
    cr_assert_eq(fonte_publish(c, &s), FONTE_EFULL);
    cr_assert_geq(fonte_mono_us() - t0, 300000, "EFULL before the timeout");
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_eq(st.published, 4);
    cr_assert_eq(st.outbox_events, 4);
    fonte_client_destroy(&c);
}

Test(client, outbox_is_bounded_in_bytes_too)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    static char payload[400];

    client_opts(&o, "shop");
    o.ingress = dead_query;
    o.outbox_max_bytes = 1000;
    o.publish_timeout_ms = 50;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    s.payload = payload;
    s.payload_len = sizeof payload;
    cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    cr_assert_eq(fonte_publish(c, &s), FONTE_EFULL);
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_eq(st.outbox_events, 2);
    cr_assert_leq(st.outbox_bytes, 1000);
    fonte_client_destroy(&c);
}

/* A window larger than the outbox (SIZE_MAX, "no limit") is the
 * outbox: events go out. acked + 1 + window used to wrap around, and
 * the client then sent nothing, ever. */
Test(client, a_window_past_the_outbox_is_the_outbox)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    void *w = watcher("order.");

    client_opts(&o, "shop");
    o.window = SIZE_MAX;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    int seen = 0;
    /* the watcher's subscription may reach the broker after the first
     * sends: resends (200 ms) bring them again */
    cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    for (int64_t end = fonte_mono_us() + WAIT_MS * 1000;
         seen == 0 && fonte_mono_us() < end;) {
        Fonte__Event *ev = watch(w, 100);
        if (ev != NULL) {
            cr_assert_eq(ev->producer_seq, 1);
            fonte__event__free_unpacked(ev, NULL);
            seen++;
        }
    }
    cr_assert_eq(seen, 1, "nothing was sent");
    fonte_client_destroy(&c);
    tu_sock_close(w);
}

Test(client, flush_without_a_listener_times_out)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    cr_assert_eq(fonte_flush(c, 0), FONTE_OK, "nothing published yet");
    fonte_event_spec_t s = spec("order.placed", "order:1");
    cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    cr_assert_eq(fonte_flush(c, 200), FONTE_ETIMEOUT);
    fonte_client_destroy(&c);
}

Test(client, unreliable_flush_returns_once_sent)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    o.reliable = false;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    for (int i = 0; i < 100; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    cr_assert_eq(fonte_flush(c, WAIT_MS), FONTE_OK);
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_eq(st.outbox_events, 0);
    cr_assert_eq(st.sent, 100);
    fonte_client_destroy(&c);
}

/* A client "shop" that has published three events, none acked yet. */
static fonte_client_t *
three_unacked(uint64_t *session)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    *session = fonte_client_session(c);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    return c;
}

Test(client, only_acks_of_its_own_producer_and_session_count)
{
    void *pub = sock(ZMQ_PUB, broker_ingress_endpoint(broker));
    uint64_t session;
    fonte_client_t *c = three_unacked(&session);

    /* "$ack.shopx" also matches the client's "$ack.shop" subscription;
     * "shop" with another session is another run of the service. */
    for (int i = 0; i < 20; i++) {
        send_ack(pub, "shopx", session, 3, false);
        send_ack(pub, "shop", session + 1, 3, false);
        cr_assert_eq(fonte_flush(c, 20), FONTE_ETIMEOUT);
    }
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_eq(st.acked, 0);
    cr_assert_eq(st.outbox_events, 3);

    fonte_err rc = FONTE_ETIMEOUT;
    for (int i = 0; i < WAIT_MS / 20 && rc != FONTE_OK; i++) {
        send_ack(pub, "shop", session, 2, false);
        rc = fonte_flush(c, 20);
        fonte_client_stats(c, &st);
        if (st.acked == 2)
            break;
    }
    cr_assert_eq(st.acked, 2);
    cr_assert_eq(st.outbox_events, 1);
    cr_assert_eq(fonte_flush(c, 50), FONTE_ETIMEOUT, "3 is not durable");
    cr_assert_eq(ack_until_flushed(c, pub, session, 3), FONTE_OK);
    fonte_client_stats(c, &st);
    cr_assert_eq(st.acked, 3);
    cr_assert_eq(st.outbox_events, 0);
    cr_assert_eq(st.outbox_bytes, 0);
    fonte_client_destroy(&c);
    tu_sock_close(pub);
}

/* An Ack of this session for more than it published cannot come from a
 * listener that stored its events (another store's listener, a forger):
 * it is refused and counted as invalid, and frees nothing; a gap Ack too.
 * The real Ack after it still counts. */
Test(client, an_ack_beyond_what_was_published_is_refused)
{
    fonte_client_stats_t st;
    void *pub = sock(ZMQ_PUB, broker_ingress_endpoint(broker));
    uint64_t session;
    fonte_client_t *c = three_unacked(&session);
    /* until two got through (the broker drops what comes before the
     * PUB's connection is up) */
    fonte_client_stats(c, &st);
    for (int i = 0; i < WAIT_MS / 20 && st.invalid < 2; i++) {
        send_ack(pub, "shop", session, 4, false);
        send_ack(pub, "shop", session, 1000, true);
        cr_assert_eq(fonte_flush(c, 20), FONTE_ETIMEOUT);
        fonte_client_stats(c, &st);
    }
    cr_assert_geq(st.invalid, 2);
    cr_assert_eq(st.acked, 0);
    cr_assert_eq(st.outbox_events, 3);
    cr_assert_eq(st.gap_acks, 0, "a refused gap Ack starts no resend");

    cr_assert_eq(ack_until_flushed(c, pub, session, 3), FONTE_OK);
    fonte_client_stats(c, &st);
    cr_assert_eq(st.acked, 3);
    cr_assert_eq(st.outbox_events, 0);
    fonte_client_destroy(&c);
    tu_sock_close(pub);
}

/* A publisher socket at its high-water mark with a resend due: the I/O
 * thread waits for the socket (a millisecond at a time) and counts that
 * resend timeout once; it used to poll with no wait and count one on
 * every turn (73 000 a second). The "broker" is an XSUB that subscribes
 * and then reads nothing, one message deep, so the connection fills. */
Test(client, a_blocked_socket_with_a_resend_due_does_not_spin)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    fonte_client_stats_t st;
    static char payload[256 << 10];
    char ep[128];
    size_t len = sizeof ep;
    int one = 1, small = 4096;

    void *xsub = open_sock(ZMQ_XSUB);
    zmq_setsockopt(xsub, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(xsub, ZMQ_RCVBUF, &small, sizeof small);
    cr_assert_eq(zmq_bind(xsub, "tcp://127.0.0.1:*"), 0);
    cr_assert_eq(zmq_getsockopt(xsub, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    cr_assert_eq(zmq_socket_monitor(xsub, "inproc://blocked-xsub",
                                    ZMQ_EVENT_HANDSHAKE_SUCCEEDED), 0);
    void *mon = sock(ZMQ_PAIR, "inproc://blocked-xsub");

    client_opts(&o, "shop");
    o.ingress = ep;
    o.egress = dead_query; /* nothing is acked */
    o.window = 16;
    o.resend_timeout_ms = 100;
    o.publish_timeout_ms = 50;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    /* an XSUB tells its subscriptions to the peers it has when it is
     * sent them, not to later ones: once the client is connected */
    zmq_pollitem_t it = { mon, 0, ZMQ_POLLIN, 0 };
    cr_assert_eq(zmq_poll(&it, 1, WAIT_MS), 1, "the client never connected");
    cr_assert_eq(zmq_send(xsub, "\x01", 1, 0), 1); /* subscribe to all */
    fonte_event_spec_t s = spec("order.placed", "order:1");
    s.payload = payload;
    s.payload_len = sizeof payload;
    for (int i = 0; i < 64; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);

    /* blocked: nothing more goes out over ten resend timeouts */
    uint64_t sent = UINT64_MAX;
    int still = 0;
    for (int i = 0; i < WAIT_MS / 100 && still < 10; i++) {
        poll(NULL, 0, 100); /* a counter that stops moving has no signal */
        fonte_client_stats(c, &st);
        still = st.sent == sent ? still + 1 : 0;
        sent = st.sent;
    }
    cr_assert_eq(still, 10, "the socket never blocked (sent %llu)",
                 (unsigned long long) sent);
    uint64_t timeouts = st.resend_timeouts;
    cr_assert_geq(timeouts, 1, "a resend was due");
    poll(NULL, 0, 500);
    fonte_client_stats(c, &st);
    cr_assert_eq(st.sent, sent);
    cr_assert_eq(st.resend_timeouts, timeouts,
                 "resend timeouts counted while blocked: %llu -> %llu",
                 (unsigned long long) timeouts,
                 (unsigned long long) st.resend_timeouts);
    fonte_client_destroy(&c);
    zmq_socket_monitor(xsub, NULL, 0);
    tu_sock_close(mon);
    tu_sock_close(xsub);
}

/* A new client sends nothing until its own Ack subscription comes back
 * on its publisher socket - the broker has taken it and passed it
 * upstream, to the listener's PUB as well, so the first Acks are not
 * dropped for want of it - not on the first subscription it sees (the
 * listener's "everything" comes first). The "broker" is an XSUB; the
 * client's SUBs reach nothing, so only what it sends brings the
 * subscription back. An unreliable client sends on any subscription. */
Test(client, the_first_send_waits_for_its_own_ack_subscription)
{
    for (int reliable = 1; reliable >= 0; reliable--) {
        char ep[128], mon_ep[64];
        size_t len = sizeof ep;
        void *xsub = open_sock(ZMQ_XSUB);
        cr_assert_eq(zmq_bind(xsub, "tcp://127.0.0.1:*"), 0);
        cr_assert_eq(zmq_getsockopt(xsub, ZMQ_LAST_ENDPOINT, ep, &len), 0);
        snprintf(mon_ep, sizeof mon_ep, "inproc://first-send-%d", reliable);
        cr_assert_eq(zmq_socket_monitor(xsub, mon_ep,
                                        ZMQ_EVENT_HANDSHAKE_SUCCEEDED), 0);
        void *mon = sock(ZMQ_PAIR, mon_ep);

        fonte_client_opts_t o;
        fonte_client_t *c = NULL;
        client_opts(&o, "shop");
        o.ingress = ep;
        o.egress = dead_query;
        o.reliable = reliable;
        o.resend_timeout_ms = 3 * WAIT_MS; /* the fallback: never, here */
        cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
        zmq_pollitem_t it = { mon, 0, ZMQ_POLLIN, 0 };
        cr_assert_eq(zmq_poll(&it, 1, WAIT_MS), 1, "never connected");
        cr_assert_eq(zmq_send(xsub, "\x01", 1, 0), 1); /* everything */
        fonte_event_spec_t s = spec("order.placed", "order:1");
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);

        zmq_pollitem_t in = { xsub, 0, ZMQ_POLLIN, 0 };
        if (reliable) {
            /* held back: the subscription to everything is not ours */
            cr_assert_eq(zmq_poll(&in, 1, 300), 0, "sent before its Ack "
                         "subscription came back");
            cr_assert_eq(zmq_send(xsub, "\x01$ack.shopx", 11, 0), 11);
            cr_assert_eq(zmq_poll(&in, 1, 300), 0, "another service's");
            cr_assert_eq(zmq_send(xsub, "\x01$ack.shop", 10, 0), 10);
        }
        cr_assert_eq(zmq_poll(&in, 1, WAIT_MS), 1, "never sent (reliable %d)",
                     reliable);
        char topic[64];
        int n = zmq_recv(xsub, topic, sizeof topic, 0);
        cr_assert_eq(n, 12);
        cr_assert(memcmp(topic, "order.placed", 12) == 0);
        fonte_client_destroy(&c);
        zmq_socket_monitor(xsub, NULL, 0);
        tu_sock_close(mon);
        tu_sock_close(xsub);
    }
}

Test(client, gap_ack_resends_from_durable_plus_one_in_order)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    void *pub = sock(ZMQ_PUB, broker_ingress_endpoint(broker));
    void *w = watcher("order.");
    bool seen[6] = { false };

    client_opts(&o, "shop");
    /* only the gap Ack rewinds here: a resend timeout during the test
     * (a slow machine's second) would send 1 and 2 again */
    o.resend_timeout_ms = 5000;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    uint64_t session = fonte_client_session(c);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    /* Wait until the wire is up and all five went by at least once. */
    int n_seen = 0;
    int64_t end = fonte_mono_us() + WAIT_MS * 1000;
    while (n_seen < 5 && fonte_mono_us() < end) {
        Fonte__Event *ev = watch(w, 100);
        if (ev == NULL)
            continue;
        cr_assert(ev->producer_seq >= 1 && ev->producer_seq <= 5);
        if (!seen[ev->producer_seq]) {
            seen[ev->producer_seq] = true;
            n_seen++;
        }
        codec_event_free(&ev);
    }
    cr_assert_eq(n_seen, 5);
    while ((fonte_mono_us() < end)) { /* drain */
        Fonte__Event *ev = watch(w, 0);
        if (ev == NULL)
            break;
        codec_event_free(&ev);
    }

    /* The listener has 1..2 and saw a gap: the next events on the wire
     * are 3, 4, 5, in order, and 1..2 never come again. */
    uint64_t expect = 3;
    while (expect <= 5 && fonte_mono_us() < end) {
        send_ack(pub, "shop", session, 2, true);
        Fonte__Event *ev = watch(w, 50);
        if (ev == NULL)
            continue;
        if (expect == 3 && ev->producer_seq != 3) {
            /* a resend already in flight before the Ack arrived */
            cr_assert_geq(ev->producer_seq, 3);
            codec_event_free(&ev);
            continue;
        }
        cr_assert_eq(ev->producer_seq, expect);
        expect++;
        codec_event_free(&ev);
    }
    cr_assert_eq(expect, 6);
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    cr_assert_geq(st.gap_acks, 1);
    cr_assert_eq(st.acked, 2);
    cr_assert_geq(st.resent, 3);
    fonte_client_destroy(&c);
    tu_sock_close(pub);
    tu_sock_close(w);
}

Test(client, destroy_with_events_pending_returns_and_frees_them)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    fonte_event_spec_t s = spec("order.placed", "order:1");
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(fonte_publish(c, &s), FONTE_OK);
    int64_t t0 = fonte_mono_us();
    fonte_client_destroy(&c);
    cr_assert_null(c);
    cr_assert_lt(fonte_mono_us() - t0, 5 * 1000000, "destroy hung");
}

/* ------------------------------------------------------------------ */
/* subscribe, dispatch, replays                                        */

typedef struct seen {
    int n;
    bool replay;
    char type[64], object[64], dep[64], meta[64], payload[64], ptype[64];
    char replay_id[64], replay_root[64], replay_target[64];
    uint64_t seq, replay_index, replay_total;
} seen_t;

static void
record(const fonte_event_t *e, void *arg)
{
    seen_t *s = arg;
    size_t len = 0;
    const void *p = fonte_event_payload(e, &len);

    s->n++;
    s->replay = fonte_event_is_replay(e);
    snprintf(s->type, sizeof s->type, "%s", fonte_event_type(e));
    snprintf(s->object, sizeof s->object, "%s", fonte_event_object(e));
    snprintf(s->dep, sizeof s->dep, "%s",
             fonte_event_deps_count(e) ? fonte_event_dep(e, 0) : "-");
    const char *m = fonte_event_meta(e, "correlation_id");
    snprintf(s->meta, sizeof s->meta, "%s", m ? m : "-");
    snprintf(s->payload, sizeof s->payload, "%.*s", (int) len,
             p ? (const char *) p : "");
    snprintf(s->ptype, sizeof s->ptype, "%s", fonte_event_payload_type(e));
    snprintf(s->replay_id, sizeof s->replay_id, "%s",
             fonte_event_replay_id(e));
    snprintf(s->replay_root, sizeof s->replay_root, "%s",
             fonte_event_replay_root(e));
    snprintf(s->replay_target, sizeof s->replay_target, "%s",
             fonte_event_replay_target(e));
    s->seq = fonte_event_producer_seq(e);
    s->replay_index = fonte_event_replay_index(e);
    s->replay_total = fonte_event_replay_total(e);
}

/* Counts the events a handler gets: arg[0] those of type burst.warm,
 * arg[1] the others; arg[2] is the last warm-up's number (its payload). */
static void
count_events(const fonte_event_t *e, void *arg)
{
    int *n = arg;
    size_t len = 0;
    const void *p = fonte_event_payload(e, &len);
    if (strcmp(fonte_event_type(e), "burst.warm") == 0) {
        n[0]++;
        if (len == sizeof n[2])
            memcpy(&n[2], p, sizeof n[2]);
    } else {
        n[1]++;
    }
}

/* Events received faster than they are dispatched wait in the inbox,
 * which is bounded in events (inbox_max) and in bytes (inbox_max_bytes):
 * beyond either the newest are dropped and counted, never queued without
 * bound. 100 events of 4 KiB against a 64 KiB bound: fewer than 17 wait,
 * the rest are dropped, and dispatch hands over exactly those that
 * waited; then 100 small ones against 10 events. */
Test(client, the_inbox_is_bounded_in_events_and_in_bytes)
{
    fonte_client_opts_t o;
    fonte_client_t *pubc = NULL;
    static char pay[4096];
    /* the bytes bound (64 KiB, 1000 events) with 4 KiB events; the
     * events bound (10, 64 MiB) with 16-byte ones; the bytes bound
     * again with events of 64 dependencies and 64 meta entries of a few
     * bytes each (about 900 bytes on the wire): counted as what they
     * hold once decoded (event_mem_estimate: over 10 KB each, each
     * string a heap block), not as their wire bytes, which let 100 of
     * them in where 6 fit */
    static const char *deps[64];
    static fonte_meta_t meta[64];
    static char names[64][8];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "d:%d", i);
        deps[i] = names[i];
        meta[i].key = names[i] + 2; /* "0".."63" */
        meta[i].value = "v";
    }
    const struct {
        size_t max, max_bytes, payload;
        uint64_t lo, hi;
        bool heavy;
    } cases[3] = { { 1000, 64 << 10, sizeof pay, 1, 16, false },
                   { 10, (size_t) 64 << 20, 16, 10, 10, false },
                   { 1000, 64 << 10, 16, 1, 6, true } };

    client_opts(&o, "shop");
    o.reliable = false; /* no listener here: no resends either */
    cr_assert_eq(fonte_client_new(&o, &pubc), FONTE_OK);
    for (int k = 0; k < 3; k++) {
        fonte_client_t *subc = NULL;
        fonte_client_stats_t before, after;
        int n[3] = { 0, 0, -1 }; /* warm-ups, burst, last warm-up */
        client_opts(&o, "billing");
        cr_assert_eq(o.inbox_max_bytes, (size_t) 64 << 20, "the default");
        o.inbox_max = cases[k].max;
        o.inbox_max_bytes = cases[k].max_bytes;
        cr_assert_eq(fonte_client_new(&o, &subc), FONTE_OK);
        /* one prefix for the warm-up and the burst: the publisher's
         * socket sends only what some subscription asks for, so the
         * warm-up proves the burst's subscription arrived too */
        cr_assert_eq(fonte_subscribe(subc, "burst.", count_events, n),
                     FONTE_OK);
        /* Warm-ups numbered 0, 1, ... one at a time, each waited for
         * (200 ms): the publisher drops those sent before the
         * subscription reached it, and once number i arrives no earlier
         * one can (a publisher's messages keep their order), so nothing
         * of the warm-up is still on its way when the burst starts. */
        fonte_event_spec_t w = spec("burst.warm", "w:1");
        int64_t end = fonte_mono_us() + WAIT_MS * 1000;
        for (int i = 0; n[2] < 0 && fonte_mono_us() < end; i++) {
            w.payload = &i;
            w.payload_len = sizeof i;
            cr_assert_eq(fonte_publish(pubc, &w), FONTE_OK);
            int64_t until = fonte_mono_us() + 200000;
            while (n[2] != i && fonte_mono_us() < until)
                fonte_dispatch(subc, 20, NULL);
            if (n[2] >= 0 && n[2] != i)
                n[2] = -1; /* an older one: wait for the newest */
        }
        cr_assert_geq(n[2], 0, "subscribed");
        while (fonte_dispatch(subc, 0, NULL) == FONTE_OK)
            ;
        fonte_client_stats(subc, &before);

        fonte_event_spec_t e = spec("burst.event", "b:1");
        e.payload = pay;
        e.payload_len = cases[k].payload;
        if (cases[k].heavy) {
            e.depends_on = deps;
            e.n_depends_on = 64;
            e.meta = meta;
            e.n_meta = 64;
        }
        for (int i = 0; i < 100; i++)
            cr_assert_eq(fonte_publish(pubc, &e), FONTE_OK);
        end = fonte_mono_us() + WAIT_MS * 1000;
        do {
            fonte_client_stats(subc, &after);
        } while (after.received + after.inbox_dropped <
                     before.received + before.inbox_dropped + 100 &&
                 fonte_mono_us() < end &&
                 !nanosleep(&(struct timespec) { 0, 1000000 }, NULL));
        uint64_t in = after.received - before.received;
        uint64_t dropped = after.inbox_dropped - before.inbox_dropped;
        cr_assert_eq(in + dropped, 100, "case %d: %llu in, %llu dropped", k,
                     (unsigned long long) in, (unsigned long long) dropped);
        cr_assert(in >= cases[k].lo && in <= cases[k].hi,
                  "case %d: %llu waited", k, (unsigned long long) in);
        while (fonte_dispatch(subc, 0, NULL) == FONTE_OK)
            ;
        cr_assert_eq(n[1], (int) in, "case %d: what waited is dispatched",
                     k);
        fonte_client_destroy(&subc);
    }
    fonte_client_destroy(&pubc);
}

Test(client, handlers_get_live_events_with_every_field)
{
    fonte_client_opts_t o;
    fonte_client_t *pubc = NULL, *subc = NULL;
    seen_t got = { 0 }, other = { 0 };

    client_opts(&o, "shop");
    cr_assert_eq(fonte_client_new(&o, &pubc), FONTE_OK);
    client_opts(&o, "billing");
    cr_assert_eq(fonte_client_new(&o, &subc), FONTE_OK);
    cr_assert_eq(fonte_subscribe(subc, "order.", record, &got), FONTE_OK);
    cr_assert_eq(fonte_subscribe(subc, "user.", record, &other), FONTE_OK);
    cr_assert_eq(fonte_subscribe(subc, "$ack.", record, &other), FONTE_EINVAL);
    cr_assert_eq(fonte_subscribe(subc, NULL, record, &other), FONTE_EINVAL);

    const char *deps[] = { "user:7" };
    fonte_meta_t meta[] = { { "correlation_id", "c-1" } };
    fonte_event_spec_t s = spec("order.placed", "order:42");
    s.depends_on = deps;
    s.n_depends_on = 1;
    s.meta = meta;
    s.n_meta = 1;
    s.payload = "hello";
    s.payload_len = 5;
    s.payload_type = "shop.OrderPlaced";
    /* Live delivery is at most once and the subscription is made in the
     * background: publish until one arrives. */
    int64_t end = fonte_mono_us() + WAIT_MS * 1000;
    while (got.n == 0 && fonte_mono_us() < end) {
        cr_assert_eq(fonte_publish(pubc, &s), FONTE_OK);
        fonte_dispatch(subc, 50, NULL);
    }
    cr_assert_geq(got.n, 1);
    cr_assert_eq(other.n, 0);
    cr_assert_not(got.replay);
    cr_assert_str_eq(got.type, "order.placed");
    cr_assert_str_eq(got.object, "order:42");
    cr_assert_str_eq(got.dep, "user:7");
    cr_assert_str_eq(got.meta, "c-1");
    cr_assert_str_eq(got.payload, "hello");
    cr_assert_str_eq(got.ptype, "shop.OrderPlaced");
    cr_assert_str_eq(got.replay_id, "");
    cr_assert_eq(got.replay_total, 0);
    fonte_client_destroy(&pubc);
    fonte_client_destroy(&subc);
}

static void
send_replay(void *pub, const char *target, const char *type)
{
    Fonte__Event ev = FONTE__EVENT__INIT;
    Fonte__Replay r = FONTE__REPLAY__INIT;
    char id[CODEC_ID_MAX];
    codec_buf_t topic, body;

    codec_format_id(id, "shop", 4, 0xabc, 9);
    ev.id = id;
    ev.type = (char *) type;
    ev.object = "order:42";
    ev.producer = "shop";
    ev.session = 0xabc;
    ev.producer_seq = 9;
    ev.seq = 17;
    r.replay_id = "r-1";
    r.root = "order:42";
    r.target = (char *) target;
    r.reason = "rebuild";
    r.index = 1;
    r.total = 2;
    ev.replay = &r;
    cr_assert_eq(codec_event_encode(&ev, &codec_limits_default, &topic,
                                    &body), FONTE_OK);
    zmq_send(pub, topic.data, topic.len, ZMQ_SNDMORE);
    zmq_send(pub, body.data, body.len, 0);
    codec_buf_free(&topic);
    codec_buf_free(&body);
}

Test(client, targeted_replay_reaches_only_the_target_flagged)
{
    fonte_client_opts_t o;
    fonte_client_t *target = NULL, *bystander = NULL;
    seen_t got = { 0 }, missed = { 0 }, by = { 0 };
    void *pub = sock(ZMQ_PUB, broker_ingress_endpoint(broker));

    client_opts(&o, "billing");
    cr_assert_eq(fonte_client_new(&o, &target), FONTE_OK);
    client_opts(&o, "search");
    cr_assert_eq(fonte_client_new(&o, &bystander), FONTE_OK);
    cr_assert_eq(fonte_subscribe(target, "order.", record, &got), FONTE_OK);
    cr_assert_eq(fonte_subscribe(target, "user.", record, &missed), FONTE_OK);
    cr_assert_eq(fonte_subscribe(bystander, "", record, &by), FONTE_OK);

    int64_t end = fonte_mono_us() + WAIT_MS * 1000;
    while (got.n == 0 && fonte_mono_us() < end) {
        send_replay(pub, "billing", "order.placed");
        fonte_dispatch(target, 50, NULL);
    }
    fonte_dispatch(bystander, 100, NULL);
    cr_assert_geq(got.n, 1);
    cr_assert(got.replay);
    cr_assert_str_eq(got.type, "order.placed");
    cr_assert_str_eq(got.replay_id, "r-1");
    cr_assert_str_eq(got.replay_root, "order:42");
    cr_assert_str_eq(got.replay_target, "billing");
    cr_assert_eq(got.replay_index, 1);
    cr_assert_eq(got.replay_total, 2);
    cr_assert_eq(got.seq, 9);
    cr_assert_eq(missed.n, 0, "a user. handler got an order. replay");
    cr_assert_eq(by.n, 0, "another service got a targeted replay");
    fonte_client_destroy(&target);
    fonte_client_destroy(&bystander);
    tu_sock_close(pub);
}

/* ------------------------------------------------------------------ */
/* queries: a ROUTER played by a thread                                */

struct server {
    void *router;
    char endpoint[64];
    pthread_t thread;
    int replies_left;    /* answer this many requests, then stay silent */
    atomic_bool stop;
    int requests;        /* requests received */
    Fonte__Reply__Status status;
    int pages;           /* replay replies: this many pages of 2 events */
    char cursors[8][16]; /* cursor of each request received */
    uint8_t peers[16][16]; /* distinct routing ids seen: one a connection */
    int n_peers;
    void *monitor; /* PAIR: the ROUTER's ZMQ_EVENT_ACCEPTED events */
    server_t *live; /* the copy its thread works on: see server_start_at */
};

/* Counts id among the server's distinct peers. */
static void
note_peer(server_t *sv, zmq_msg_t *id)
{
    size_t n = zmq_msg_size(id) < 15 ? zmq_msg_size(id) : 15;
    for (int i = 0; i < sv->n_peers; i++)
        if (sv->peers[i][0] == n && memcmp(sv->peers[i] + 1,
                                           zmq_msg_data(id), n) == 0)
            return;
    if (sv->n_peers < 16) {
        sv->peers[sv->n_peers][0] = (uint8_t) n;
        memcpy(sv->peers[sv->n_peers] + 1, zmq_msg_data(id), n);
    }
    sv->n_peers++;
}

static void
reply_page(server_t *sv, Fonte__ReplayRequest *rq, codec_buf_t *out)
{
    Fonte__Reply rep = FONTE__REPLY__INIT;
    Fonte__ReplayReply page = FONTE__REPLAY_REPLY__INIT;
    Fonte__Event evs[2], *evp[2];
    char ids[2][CODEC_ID_MAX], cursor[16];
    int page_no = rq->cursor.len ? rq->cursor.data[0] - '0' : 0;

    rep.status = sv->status;
    if (sv->status == FONTE__REPLY__STATUS__OK) {
        for (int i = 0; i < 2; i++) {
            Fonte__Event e = FONTE__EVENT__INIT;
            uint64_t seq = (uint64_t) (page_no * 2 + i + 1);
            codec_format_id(ids[i], "shop", 4, 0xabc, seq);
            e.id = ids[i];
            e.type = "order.placed";
            e.object = rq->object;
            e.producer = "shop";
            e.session = 0xabc;
            e.producer_seq = seq;
            e.seq = seq;
            if (hostile == HOSTILE_BAD_EVENT)
                e.type = "Bad Type";
            evs[i] = e;
            evp[i] = &evs[i];
        }
        page.events = evp;
        page.n_events = hostile == HOSTILE_EMPTY_PAGES ? 0 : 2;
        page.total = (uint64_t) sv->pages * 2 +
                     (hostile == HOSTILE_TOTAL_MOVES ? (uint64_t) page_no : 0);
        if (page_no + 1 < sv->pages || hostile == HOSTILE_PAST_TOTAL ||
            hostile == HOSTILE_EMPTY_PAGES) {
            snprintf(cursor, sizeof cursor, "%d",
                     hostile == HOSTILE_SAME_CURSOR ? 1 : page_no + 1);
            page.cursor.data = (uint8_t *) cursor;
            page.cursor.len = strlen(cursor);
        }
        static char *const cycles[] = { "a:1,a:2", "b:1,b:2,b:3" };
        if (rq->mode == FONTE__REPLAY_REQUEST__MODE__REPUBLISH) {
            page.replay_id = "r-7";
            page.cycles = (char **) cycles;
            page.n_cycles = 2;
            page.cycles_omitted = 5; /* more than it lists */
        } else if (page_no == 0) {
            static char *const first[] = { "c:1,c:2" };
            page.cycles = (char **) first;
            page.n_cycles = 1;
            page.cycles_omitted = 4; /* one listed, 4 more broken */
        }
        rep.body_case = FONTE__REPLY__BODY_REPLAY;
        rep.replay = &page;
    } else {
        rep.error = "no such thing";
    }
    codec_pack(&rep.base, out); /* no cr_assert off the test's thread */
}

static void *
server_main(void *arg)
{
    server_t *sv = arg;
    int64_t end = fonte_mono_us() + WAIT_MS * 1000;

    while (!atomic_load(&sv->stop) && fonte_mono_us() < end) {
        zmq_pollitem_t it = { sv->router, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmq_msg_t id, empty, body;
        zmq_msg_init(&id);
        zmq_msg_init(&empty);
        zmq_msg_init(&body);
        zmq_msg_recv(&id, sv->router, 0);
        zmq_msg_recv(&empty, sv->router, 0);
        zmq_msg_recv(&body, sv->router, 0);
        note_peer(sv, &id);
        Fonte__Request *rq = NULL;
        fonte_err rc = codec_request_decode(zmq_msg_data(&body),
                                            zmq_msg_size(&body),
                                            &codec_limits_default, &rq);
        if (rc == FONTE_OK && sv->requests < 8 &&
            rq->body_case == FONTE__REQUEST__BODY_REPLAY)
            snprintf(sv->cursors[sv->requests], 16, "%.*s",
                     (int) rq->replay->cursor.len,
                     (const char *) rq->replay->cursor.data);
        sv->requests++;
        if (rc == FONTE_OK && sv->replies_left > 0) {
            codec_buf_t out = { 0 };
            if (rq->body_case == FONTE__REQUEST__BODY_REPLAY &&
                hostile != HOSTILE_WRONG_BODY) {
                reply_page(sv, rq->replay, &out);
            } else {
                Fonte__Reply rep = FONTE__REPLY__INIT;
                Fonte__StatusReply s = FONTE__STATUS_REPLY__INIT;
                s.last_seq = 12;
                s.events = 12;
                s.objects = 3;
                s.sessions = 2;
                s.data_dir = "/data";
                s.version = "0.1.0";
                rep.body_case = FONTE__REPLY__BODY_STATUS_REPLY;
                rep.status_reply = &s;
                codec_pack(&rep.base, &out);
            }
            sv->replies_left--;
            zmq_msg_send(&id, sv->router, ZMQ_SNDMORE);
            zmq_send(sv->router, "", 0, ZMQ_SNDMORE);
            zmq_send(sv->router, out.data, out.len, 0);
            codec_buf_free(&out);
        }
        if (rq != NULL)
            fonte__request__free_unpacked(rq, NULL);
        zmq_msg_close(&id);
        zmq_msg_close(&empty);
        zmq_msg_close(&body);
    }
    zmq_close(sv->router);
    return NULL;
}

/* A fake listener on endpoint (a free port when it ends in ":*"). */
static void
server_start_at(server_t *sv, const char *endpoint, int replies,
                Fonte__Reply__Status status, int pages)
{
    size_t len = sizeof sv->endpoint;

    memset(sv, 0, sizeof *sv);
    sv->replies_left = replies;
    sv->status = status;
    sv->pages = pages;
    sv->router = open_sock(ZMQ_ROUTER);
    /* its accepted connections, watched from before it binds */
    static atomic_int n_monitors;
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://test-server-%d",
             atomic_fetch_add(&n_monitors, 1));
    cr_assert_eq(zmq_socket_monitor(sv->router, mon, ZMQ_EVENT_ACCEPTED), 0);
    sv->monitor = open_sock(ZMQ_PAIR);
    cr_assert_eq(zmq_connect(sv->monitor, mon), 0);
    /* a ROUTER just closed on this port lets it go in its I/O thread, a
     * moment later: try again, for a bounded time */
    int rc, tries = 0;
    while ((rc = zmq_bind(sv->router, endpoint)) != 0 &&
           zmq_errno() == EADDRINUSE && ++tries < 500) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(rc, 0, "%s: %s", endpoint, zmq_strerror(zmq_errno()));
    zmq_getsockopt(sv->router, ZMQ_LAST_ENDPOINT, sv->endpoint, &len);
    /* The thread works on a copy on the heap: a failed assertion leaves
     * the test, and sv on its stack with it, but teardown must still stop
     * the thread. server_stop copies back what it saw. */
    sv->live = malloc(sizeof *sv->live);
    cr_assert_not_null(sv->live);
    memcpy(sv->live, sv, sizeof *sv);
    tu_sock_forget(sv->router); /* the thread closes it */
    running = sv->live;
    pthread_create(&running->thread, NULL, server_main, running);
}

static void
server_start(server_t *sv, int replies, Fonte__Reply__Status status,
             int pages)
{
    server_start_at(sv, "tcp://127.0.0.1:*", replies, status, pages);
}

/* Stops the thread of live, which closes its ROUTER. */
static void
server_join(server_t *live)
{
    atomic_store(&live->stop, true);
    pthread_join(live->thread, NULL);
    running = NULL;
}

static void
server_stop(server_t *sv)
{
    server_t *live = sv->live;
    server_join(live);
    memcpy(sv, live, sizeof *sv); /* what it saw, for the test to check */
    free(live);
    sv->live = NULL;
    tu_sock_close(sv->monitor);
}

/* Waits (WAIT_MS at most) until the server has accepted a connection;
 * true if it did. */
static bool
server_wait_accepted(server_t *sv)
{
    int timeout = WAIT_MS;
    zmq_setsockopt(sv->monitor, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    zmq_msg_init(&addr);
    bool ok = zmq_msg_recv(&ev, sv->monitor, 0) >= 6 &&
              zmq_msg_recv(&addr, sv->monitor, 0) >= 0;
    uint16_t event = 0;
    if (ok)
        memcpy(&event, zmq_msg_data(&ev), sizeof event);
    zmq_msg_close(&ev);
    zmq_msg_close(&addr);
    return ok && event == ZMQ_EVENT_ACCEPTED;
}

/* The query timeout of tests whose server stops answering: each try waits
 * this long, which a reply to an earlier query (answered) must not take. */
#define SILENT_MS 1000

/* A client of the listener at endpoint: query_spin_us spin_us, and
 * query_timeout_ms and query_retries unless 0 (then the defaults). */
static fonte_client_t *
query_client_with(const char *endpoint, int spin_us, int timeout_ms,
                  int retries)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;

    client_opts(&o, "shop");
    o.query = endpoint;
    o.query_spin_us = spin_us;
    if (timeout_ms > 0)
        o.query_timeout_ms = timeout_ms;
    if (retries > 0)
        o.query_retries = retries;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    return c;
}

/* A client of the listener at endpoint, default query options. */
static fonte_client_t *
query_client(const char *endpoint)
{
    return query_client_with(endpoint, 0, 0, 0);
}

Test(client, fetch_with_a_dead_listener_times_out_after_the_retries)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    fonte_event_list_t *l = (fonte_event_list_t *) &o;
    fonte_status_t st;

    client_opts(&o, "shop");
    o.query_timeout_ms = 100;
    o.query_retries = 3;
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    int64_t t0 = fonte_mono_us();
    cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_ETIMEOUT);
    cr_assert_geq(fonte_mono_us() - t0, 300000);
    cr_assert_null(l);
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, NULL),
                 FONTE_ETIMEOUT);
    cr_assert_eq(fonte_status(c, &st), FONTE_ETIMEOUT);
    fonte_client_destroy(&c);
}

Test(client, a_silent_listener_gets_exactly_query_retries_requests)
{
    server_t sv;
    fonte_event_list_t *l = NULL;

    server_start(&sv, 0, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_t *c = query_client_with(sv.endpoint, 0, SILENT_MS, 0);
    cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_ETIMEOUT);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 3);
}

/* A republish and a backup are sent once, never retried: a silent
 * listener gets one request of each, after which the client waits as
 * long as all the tries of a fetch would (query_timeout_ms SILENT_MS, 3
 * tries). A backup name that breaks the rule is refused unsent. */
Test(client, a_republish_or_a_backup_is_asked_once_and_waited_for_as_long)
{
    server_t sv;
    fonte_backup_info_t b;

    server_start(&sv, 0, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_t *c = query_client_with(sv.endpoint, 0, SILENT_MS, 0);
    int64_t t0 = fonte_mono_us();
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, NULL),
                 FONTE_ETIMEOUT);
    cr_assert_geq(fonte_mono_us() - t0, 3 * SILENT_MS * 1000);
    t0 = fonte_mono_us();
    cr_assert_eq(fonte_backup(c, "nightly", &b), FONTE_ETIMEOUT);
    cr_assert_geq(fonte_mono_us() - t0, 3 * SILENT_MS * 1000);
    cr_assert_eq(fonte_backup(c, "../x", &b), FONTE_EPRODUCER);
    cr_assert_eq(fonte_backup(c, NULL, &b), FONTE_EINVAL);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 2);
}

static void
on_poke(int sig)
{
    (void) sig;
}

typedef struct poker {
    pthread_t target, thread;
    atomic_bool stop;
} poker_t;

/* Signals the target thread every 20 ms until stopped. */
static void *
poke_main(void *arg)
{
    poker_t *p = arg;
    while (!atomic_load(&p->stop)) {
        pthread_kill(p->target, SIGUSR1);
        nanosleep(&(struct timespec) { 0, 20 * 1000000L }, NULL);
    }
    return NULL;
}

/* A signal that interrupts a query's wait (EINTR, no SA_RESTART) does
 * not end it: the caller, signalled every 20 ms, still waits each try in
 * full, and a silent listener gets exactly the requests it would have
 * (query_retries for a status, one for a republish). */
Test(client, a_signal_does_not_cut_a_query_short)
{
    server_t sv;
    fonte_status_t st;
    struct sigaction sa = { .sa_handler = on_poke }, old;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, &old), 0);
    server_start(&sv, 0, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_t *c = query_client_with(sv.endpoint, 0, SILENT_MS, 0);
    poker_t p = { .target = pthread_self() };
    atomic_init(&p.stop, false);
    cr_assert_eq(pthread_create(&p.thread, NULL, poke_main, &p), 0);

    int64_t t0 = fonte_mono_us();
    cr_assert_eq(fonte_status(c, &st), FONTE_ETIMEOUT);
    int64_t status_us = fonte_mono_us() - t0;
    t0 = fonte_mono_us();
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, NULL),
                 FONTE_ETIMEOUT);
    int64_t replay_us = fonte_mono_us() - t0;

    atomic_store(&p.stop, true);
    pthread_join(p.thread, NULL);
    sigaction(SIGUSR1, &old, NULL);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_geq(status_us, 3 * SILENT_MS * 1000, "three tries of %d ms: "
                  "%lld us", SILENT_MS, (long long) status_us);
    cr_assert_geq(replay_us, 3 * SILENT_MS * 1000, "one try of 3 x %d ms: "
                  "%lld us", SILENT_MS, (long long) replay_us);
    cr_assert_eq(sv.requests, 3 + 1);
}

Test(client, fetch_rejects_bad_arguments_before_sending)
{
    fonte_client_t *c = query_client(dead_query);
    fonte_event_list_t *l = NULL;
    fonte_fetch_opts_t fo;
    const char *types[] = { "Bad Type" };

    cr_assert_eq(fonte_fetch(c, "", NULL, &l), FONTE_EOBJECT);
    cr_assert_eq(fonte_fetch(c, NULL, NULL, &l), FONTE_EOBJECT);
    fonte_fetch_opts_init(&fo);
    fo.types = types;
    fo.n_types = 1;
    cr_assert_eq(fonte_fetch(c, "order:1", &fo, &l), FONTE_ETYPE);
    fonte_replay_opts_t ro;
    fonte_replay_opts_init(&ro);
    ro.target = "Not-A-Service";
    cr_assert_eq(fonte_request_replay(c, "order:1", &ro, NULL),
                 FONTE_EPRODUCER);
    cr_assert_null(l);
    fonte_client_destroy(&c);
}

Test(client, fetch_follows_the_cursor_until_it_is_empty)
{
    server_t sv;
    fonte_event_list_t *l = NULL;

    server_start(&sv, 10, FONTE__REPLY__STATUS__OK, 3);
    fonte_client_t *c = query_client(sv.endpoint);
    cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_OK);
    cr_assert_eq(fonte_event_list_count(l), 6);
    for (size_t i = 0; i < 6; i++) {
        const fonte_event_t *e = fonte_event_list_get(l, i);
        cr_assert_eq(fonte_event_seq(e), i + 1);
        cr_assert_str_eq(fonte_event_object(e), "order:1");
        cr_assert_not(fonte_event_is_replay(e));
    }
    cr_assert_null(fonte_event_list_get(l, 6));
    /* the cycles of every page, here the first's */
    cr_assert_eq(fonte_event_list_cycles_count(l), 1);
    cr_assert_str_eq(fonte_event_list_cycle(l, 0), "c:1,c:2");
    cr_assert_null(fonte_event_list_cycle(l, 1));
    cr_assert_eq(fonte_event_list_cycles_omitted(l), 4);
    fonte_event_list_destroy(&l);
    cr_assert_null(l);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 3);
    cr_assert_str_eq(sv.cursors[0], "");
    cr_assert_str_eq(sv.cursors[1], "1");
    cr_assert_str_eq(sv.cursors[2], "2");
}

/* query_spin_us: the same pages as a sleeping client's, the same
 * requests. */
Test(client, a_polling_client_gets_the_same_pages)
{
    server_t sv;
    fonte_client_t *c = NULL;
    fonte_event_list_t *l = NULL;

    server_start(&sv, 10, FONTE__REPLY__STATUS__OK, 3);
    /* a spin longer than any reply here takes */
    c = query_client_with(sv.endpoint, 1000000, 2000, 3);
    cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_OK);
    cr_assert_eq(fonte_event_list_count(l), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(fonte_event_seq(fonte_event_list_get(l, i)), i + 1);
    fonte_event_list_destroy(&l);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 3);
}

/* CPU time of this thread, microseconds. */
static int64_t
thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A client that polls for its reply does so on its own thread (CPU time
 * spent while waiting), and never past the query's timeout: a spin of
 * 10 s against a silent listener still ends in FONTE_ETIMEOUT after the
 * 500 ms try. A client that sleeps spends next to no CPU on the same
 * wait. */
Test(client, query_spin_polls_on_the_callers_thread_within_the_timeout)
{
    server_t sv;
    fonte_client_t *c = NULL;
    fonte_event_list_t *l = NULL;

    server_start(&sv, 0, FONTE__REPLY__STATUS__OK, 1);
    for (int spin = 0; spin < 2; spin++) {
        c = query_client_with(sv.endpoint, spin ? 10000000 : 0, 500, 1);
        int64_t t0 = fonte_mono_us(), cpu0 = thread_cpu_us();
        cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_ETIMEOUT);
        int64_t took = fonte_mono_us() - t0, cpu = thread_cpu_us() - cpu0;
        cr_assert_null(l);
        cr_assert_geq(took, 500000);
        cr_assert_lt(took, 5000000, "the spin outlived the timeout: %lld us",
                     (long long) took);
        /* a tenth of the wait at least, even on a busy machine; next to
         * nothing asleep */
        if (spin)
            cr_assert_geq(cpu, 50000, "polled for %lld us of CPU",
                          (long long) cpu);
        else
            cr_assert_lt(cpu, 20000, "slept, yet %lld us of CPU",
                         (long long) cpu);
        fonte_client_destroy(&c);
    }
    server_stop(&sv);
    cr_assert_eq(sv.requests, 2);
}

Test(client, fetch_iterator_hands_over_one_page_per_call)
{
    server_t sv;
    fonte_fetch_iter_t *it = NULL;
    fonte_event_list_t *page = NULL;
    fonte_fetch_opts_t fo;
    const char *types[] = { "order.placed" };

    server_start(&sv, 10, FONTE__REPLY__STATUS__OK, 3);
    fonte_client_t *c = query_client(sv.endpoint);
    fonte_fetch_opts_init(&fo);
    fo.types = types;
    fo.n_types = 1;
    cr_assert_eq(fonte_fetch_iter_new(c, "", &fo, &it), FONTE_EOBJECT);
    cr_assert_null(it);
    cr_assert_eq(fonte_fetch_iter_new(c, "order:1", &fo, &it), FONTE_OK);
    cr_assert_eq(fonte_fetch_iter_total(it), 0);
    uint64_t seq = 0;
    for (int p = 0; p < 3; p++) {
        cr_assert_eq(fonte_fetch_iter_next(it, &page), FONTE_OK);
        cr_assert_not_null(page);
        cr_assert_eq(fonte_event_list_count(page), 2);
        for (size_t i = 0; i < 2; i++)
            cr_assert_eq(fonte_event_seq(fonte_event_list_get(page, i)),
                         ++seq);
        cr_assert_eq(fonte_fetch_iter_total(it), 6);
        fonte_event_list_destroy(&page);
    }
    cr_assert_eq(fonte_fetch_iter_next(it, &page), FONTE_OK);
    cr_assert_null(page);
    cr_assert_eq(fonte_fetch_iter_next(it, &page), FONTE_OK);
    cr_assert_null(page);
    fonte_fetch_iter_destroy(&it);
    cr_assert_null(it);
    fonte_fetch_iter_destroy(&it);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 3);
    cr_assert_str_eq(sv.cursors[2], "2");
}

Test(client, fetch_iterator_stays_on_its_page_after_a_timeout)
{
    server_t sv;
    fonte_fetch_iter_t *it = NULL;
    fonte_event_list_t *page = (fonte_event_list_t *) &sv;

    server_start(&sv, 1, FONTE__REPLY__STATUS__OK, 3);
    fonte_client_t *c = query_client_with(sv.endpoint, 0, SILENT_MS, 0);
    cr_assert_eq(fonte_fetch_iter_new(c, "order:1", NULL, &it), FONTE_OK);
    cr_assert_eq(fonte_fetch_iter_next(it, &page), FONTE_OK);
    fonte_event_list_destroy(&page);
    cr_assert_eq(fonte_fetch_iter_next(it, &page), FONTE_ETIMEOUT);
    cr_assert_null(page);
    fonte_fetch_iter_destroy(&it);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 4);
    cr_assert_str_eq(sv.cursors[1], "1");
    cr_assert_str_eq(sv.cursors[3], "1");
}

Test(client, reply_statuses_map_to_error_codes)
{
    static const struct {
        Fonte__Reply__Status status;
        fonte_err err;
    } cases[] = {
        { FONTE__REPLY__STATUS__NOT_FOUND, FONTE_ENOTFOUND },
        { FONTE__REPLY__STATUS__BAD_REQUEST, FONTE_EREQUEST },
        { FONTE__REPLY__STATUS__LIMIT, FONTE_ELIMIT },
        { FONTE__REPLY__STATUS__UNAVAILABLE, FONTE_EUNAVAILABLE },
        { FONTE__REPLY__STATUS__INTERNAL, FONTE_EINTERNAL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        server_t sv;
        fonte_event_list_t *l = NULL;
        server_start(&sv, 2, cases[i].status, 1);
        fonte_client_t *c = query_client(sv.endpoint);
        cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), cases[i].err);
        cr_assert_null(l);
        cr_assert_eq(fonte_request_replay(c, "order:1", NULL, NULL),
                     cases[i].err);
        fonte_client_destroy(&c);
        server_stop(&sv);
    }
}

Test(client, queries_reuse_one_connected_socket)
{
    server_t sv;
    fonte_event_list_t *l = NULL;
    fonte_status_t st;
    fonte_client_stats_t cs;

    server_start(&sv, 10, FONTE__REPLY__STATUS__OK, 2);
    fonte_client_t *c = query_client(sv.endpoint);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_OK);
        cr_assert_eq(fonte_event_list_count(l), 4);
        fonte_event_list_destroy(&l);
    }
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, NULL), FONTE_OK);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.query_connects, 1);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 8); /* 3 fetches of 2 pages, 2 more */
    cr_assert_eq(sv.n_peers, 1);
}

Test(client, a_timed_out_query_closes_its_socket)
{
    server_t sv;
    fonte_status_t st;
    fonte_client_stats_t cs;

    server_start(&sv, 1, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_t *c = query_client_with(sv.endpoint, 0, SILENT_MS, 0);
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    /* silent from now on: each of the 3 tries ends on its own socket
     * (the pooled one first, then two new ones), none is kept */
    cr_assert_eq(fonte_status(c, &st), FONTE_ETIMEOUT);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.query_connects, 3);
    cr_assert_eq(fonte_status(c, &st), FONTE_ETIMEOUT);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.query_connects, 6);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 7);
    cr_assert_eq(sv.n_peers, 6);
}

/* A listener that restarts on the same endpoint: the pooled socket
 * reconnects by itself and the next query goes through on it. */
Test(client, a_pooled_socket_survives_a_listener_restart)
{
    server_t sv;
    fonte_status_t st;
    fonte_client_stats_t cs;
    char endpoint[64];

    server_start(&sv, 10, FONTE__REPLY__STATUS__OK, 1);
    snprintf(endpoint, sizeof endpoint, "%s", sv.endpoint);
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    client_opts(&o, "shop");
    o.query = endpoint;
    o.query_timeout_ms = 5000;
    o.query_retries = 1; /* a retry would hide a stuck socket */
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    server_stop(&sv); /* closes its ROUTER: the connection drops */
    cr_assert_eq(sv.requests, 1);

    server_start_at(&sv, endpoint, 10, FONTE__REPLY__STATUS__OK, 1);
    /* Once the pooled socket has reconnected, it serves. (A request sent
     * before the client has seen the old connection drop can go out on
     * it and be lost - what the retries are for, off here.) */
    cr_assert(server_wait_accepted(&sv), "the client reconnected");
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    cr_assert_eq(st.last_seq, 12);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.query_connects, 1);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 1);
}

typedef struct asker {
    fonte_client_t *c;
    int ok;
} asker_t;

static void *
asker_main(void *arg)
{
    asker_t *a = arg;
    fonte_status_t st;
    for (int i = 0; i < 5; i++)
        a->ok += fonte_status(a->c, &st) == FONTE_OK && st.last_seq == 12;
    return NULL;
}

Test(client, queries_from_many_threads_at_once_each_get_an_answer)
{
    server_t sv;
    fonte_status_t st;
    fonte_client_stats_t cs;
    pthread_t th[8];
    asker_t a[8];

    server_start(&sv, 1000, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    client_opts(&o, "shop");
    o.query = sv.endpoint;
    o.query_timeout_ms = 5000; /* a slow machine must not time out here */
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    for (int i = 0; i < 8; i++) {
        a[i] = (asker_t) { c, 0 };
        cr_assert_eq(pthread_create(&th[i], NULL, asker_main, &a[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(a[i].ok, 5, "thread %d: %d answers of 5", i, a[i].ok);
    }
    fonte_client_stats(c, &cs);
    cr_assert_geq(cs.query_connects, 1);
    cr_assert_leq(cs.query_connects, 8);
    uint64_t before = cs.query_connects;
    /* at least one socket was kept: a query now opens none */
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    fonte_client_stats(c, &cs);
    cr_assert_eq(cs.query_connects, before);
    fonte_client_destroy(&c);
    server_stop(&sv);
    cr_assert_eq(sv.requests, 41);
    cr_assert_eq((uint64_t) sv.n_peers, before);
}

/* A listener that answers out of turn is refused with FONTE_EDECODE, and
 * a fetch never runs on forever: a reply of the wrong kind, an event that
 * breaks the rules (not the caller's FONTE_ETYPE), a page that hands
 * back the cursor it was asked with, pages past the total announced, a
 * total that moves, empty pages that never end. */
Test(client, a_listener_out_of_turn_gets_edecode_not_a_hang)
{
    static const struct {
        int mode, pages;
    } cases[] = {
        { HOSTILE_WRONG_BODY, 1 },
        { HOSTILE_BAD_EVENT, 1 },
        { HOSTILE_SAME_CURSOR, 3 },
        { HOSTILE_PAST_TOTAL, 3 },
        { HOSTILE_TOTAL_MOVES, 3 },
        { HOSTILE_EMPTY_PAGES, 3 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        server_t sv;
        fonte_event_list_t *l = NULL;
        fonte_replay_ticket_t t;
        hostile = cases[k].mode;
        server_start(&sv, 10, FONTE__REPLY__STATUS__OK, cases[k].pages);
        fonte_client_t *c = query_client(sv.endpoint);
        if (hostile == HOSTILE_WRONG_BODY)
            cr_assert_eq(fonte_request_replay(c, "order:1", NULL, &t),
                         FONTE_EDECODE);
        else
            cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_EDECODE,
                         "case %zu", k);
        cr_assert_null(l);
        fonte_client_destroy(&c);
        server_stop(&sv);
        int asked = sv.requests;
        /* the same cursor is refused on its second page; past the total
         * on the page after the last (3 pages of 2 events); a moved total
         * on the second page; empty pages once there are more pages than
         * the total (6) */
        int want[] = { 1, 1, 2, 4, 2, 8 };
        cr_assert_eq(asked, want[k], "case %zu: %d requests", k, asked);
    }
}

Test(client, request_replay_and_status_return_the_listener_answer)
{
    server_t sv;
    fonte_replay_ticket_t t;
    fonte_status_t st;

    server_start(&sv, 2, FONTE__REPLY__STATUS__OK, 1);
    fonte_client_t *c = query_client(sv.endpoint);
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, &t), FONTE_OK);
    cr_assert_str_eq(t.replay_id, "r-7");
    cr_assert_eq(t.total, 2);
    cr_assert_eq(t.cycles, 7); /* 2 listed, 5 not */
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    cr_assert_eq(st.last_seq, 12);
    cr_assert_eq(st.objects, 3);
    cr_assert_eq(st.sessions, 2);
    cr_assert_str_eq(st.data_dir, "/data");
    fonte_client_destroy(&c);
    server_stop(&sv);
}
