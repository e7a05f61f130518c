/*
 * test_secure.c - CURVE end to end: a broker and a listener that admit
 * only the keys in a directory, libfonte clients with and without an
 * admitted key, all over real TCP in this process (docs/operations.md,
 * "Security"). What is asserted: an admitted service's events are
 * acknowledged, stored and fetched; an unknown key or no CURVE gets
 * nothing in - nothing stored, its flush and its queries time out - and
 * the refusals are counted.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "broker.h"
#include "curve.h"
#include "fonte/fonte.h"
#include "listener.h"
#include "log.h"
#include "testutil.h"

#define FLUSH_MS 10000 /* an admitted client's flush: a bound, not a wait */
#define DENIED_MS 1500 /* how long a refused client is given */

static char dir[64];
static char paths[8][256];
static broker_t *broker;
static listener_t *listener;

/* dir/name in one of the paths buffers. */
static const char *
at(int slot, const char *name)
{
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    return paths[slot];
}

static void
keygen(const char *name, bool admit)
{
    char path[256], err[512] = "", pub[512], adm[512];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    cr_assert_eq(fcurve_keygen(path, name, err, sizeof err), FONTE_OK, "%s",
                 err);
    if (!admit)
        return;
    /* the public file into the admitted directory */
    snprintf(pub, sizeof pub, "%s", path);
    snprintf(adm, sizeof adm, "%s/clients/%s.key", dir, name);
    FILE *a = fopen(pub, "r"), *b = fopen(adm, "w");
    cr_assert(a != NULL && b != NULL);
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

/* A listener of this broker with the key pair dir/cert, its store in
 * dir/data, admitting the clients directory on its query endpoint. */
static void
listener_opts(listener_opts_t *lo, const char *data, const char *cert)
{
    listener_opts_init(lo);
    lo->egress = broker_egress_endpoint(broker);
    lo->ingress = broker_ingress_endpoint(broker);
    lo->query = "tcp://127.0.0.1:*";
    lo->data = at(3, data);
    lo->sync = false;
    lo->stats_interval_us = 0;
    lo->curve_cert = at(4, cert);
    lo->curve_broker = at(5, "server.key");
    lo->curve_clients = at(2, "clients");
}

static void
setup(void)
{
    char err[512] = "";
    flog_set_level(FLOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/fonte-test-secure-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(mkdir(at(0, "clients"), 0755), 0);
    keygen("server", false);
    keygen("listener", true);
    keygen("shop", true);
    keygen("stranger", false);

    broker_opts_t bo;
    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.stats_interval_us = 0;
    bo.curve_cert = at(1, "server.key");
    bo.curve_clients = at(2, "clients");
    static char listener_pub[256];
    snprintf(listener_pub, sizeof listener_pub, "%s/listener.key", dir);
    bo.curve_listener = listener_pub;
    cr_assert_eq(broker_new(&bo, &broker, err, sizeof err), FONTE_OK, "%s",
                 err);

    listener_opts_t lo;
    listener_opts(&lo, "data", "listener.key");
    cr_assert_eq(listener_new(&lo, &listener, err, sizeof err), FONTE_OK,
                 "%s", err);
}

static void
teardown(void)
{
    listener_destroy(&listener);
    broker_destroy(&broker);
    tu_rmtree(dir);
}

TestSuite(secure, .init = setup, .fini = teardown, .timeout = 60);

/* A client of service "shop" with the key pair `cert` (NULL: no CURVE). */
static fonte_client_t *
client(const char *cert)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    char certp[256];
    fonte_client_opts_init(&o);
    o.service = "shop";
    o.ingress = broker_ingress_endpoint(broker);
    o.egress = broker_egress_endpoint(broker);
    o.query = listener_query_endpoint(listener);
    o.query_timeout_ms = DENIED_MS / 3;
    o.query_retries = 3;
    o.resend_timeout_ms = 200;
    if (cert != NULL) {
        snprintf(certp, sizeof certp, "%s/%s.key", dir, cert);
        o.curve_cert = certp;
        o.curve_broker = at(6, "server.key");
        o.curve_listener = at(7, "listener.key");
    }
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_OK);
    return c;
}

static void
publish(fonte_client_t *c, int n)
{
    for (int i = 0; i < n; i++) {
        fonte_event_spec_t e = { .type = "order.placed", .object = "order:1",
                                 .payload = "x", .payload_len = 1 };
        cr_assert_eq(fonte_publish(c, &e), FONTE_OK);
    }
}

static uint64_t
stored(void)
{
    ingest_counters_t ic;
    listener_counters(listener, &ic);
    return ic.events_stored;
}

/* Counts the replayed events a handler gets. */
static void
count_replayed(const fonte_event_t *e, void *arg)
{
    if (fonte_event_is_replay(e))
        (*(int *) arg)++;
}

/* Reads the broker's counters once the loop has copied them after this
 * call: they count all it had judged when called. */
static void
fresh_counters(broker_counters_t *bc)
{
    broker_counters(broker, bc);
    uint64_t copies = bc->copies;
    for (int64_t end = fonte_mono_us() + 5000000; bc->copies == copies;) {
        cr_assert(fonte_mono_us() < end, "the broker's counters were not "
                  "copied in 5 s");
        nanosleep(&(struct timespec) { 0, 1000000 }, NULL); /* 1 ms */
        broker_counters(broker, bc);
    }
}

Test(secure, an_admitted_service_publishes_fetches_and_asks)
{
    fonte_client_t *c = client("shop");
    publish(c, 10);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK, "acked through CURVE");
    cr_assert_eq(stored(), 10);
    fonte_event_list_t *l = NULL;
    cr_assert_eq(fonte_fetch(c, "order:1", NULL, &l), FONTE_OK);
    cr_assert_eq(fonte_event_list_count(l), 10);
    fonte_event_list_destroy(&l);
    fonte_status_t st;
    cr_assert_eq(fonte_status(c, &st), FONTE_OK);
    cr_assert_eq(st.events, 10);

    /* a republish to this service: the listener's republish socket is a
     * CURVE client of the broker too */
    int replayed = 0;
    fonte_replay_ticket_t t;
    cr_assert_eq(fonte_subscribe(c, "order.", count_replayed, &replayed),
                 FONTE_OK);
    cr_assert_eq(fonte_request_replay(c, "order:1", NULL, &t), FONTE_OK);
    cr_assert_eq(t.total, 10);
    int64_t end = fonte_mono_us() + (int64_t) FLUSH_MS * 1000;
    while (replayed < 10 && fonte_mono_us() < end)
        fonte_dispatch(c, 50, NULL);
    cr_assert_eq(replayed, 10, "the 10 events replayed to shop");
    cr_assert_eq(stored(), 10, "replayed events are not stored again");
    fonte_client_destroy(&c);

    broker_counters_t bc;
    fresh_counters(&bc);
    cr_assert_eq(bc.auth_denied, 0);
    /* the listener's SUB, PUB and republish socket, the client's XPUB
     * and two SUBs */
    cr_assert_geq(bc.auth_allowed, 6, "%llu",
                  (unsigned long long) bc.auth_allowed);
    cr_assert_eq(bc.invalid, 0);
}

Test(secure, an_unknown_key_or_no_curve_gets_nothing_in)
{
    const char *certs[] = { "stranger", NULL };
    for (int k = 0; k < 2; k++) {
        fonte_client_t *c = client(certs[k]);
        publish(c, 3);
        cr_assert_eq(fonte_flush(c, DENIED_MS), FONTE_ETIMEOUT, "%s",
                     certs[k] ? certs[k] : "no CURVE");
        fonte_status_t st;
        cr_assert_eq(fonte_status(c, &st), FONTE_ETIMEOUT);
        fonte_client_destroy(&c);
        cr_assert_eq(stored(), 0, "nothing of a refused client is stored");
    }
    broker_counters_t bc;
    fresh_counters(&bc);
    cr_assert_geq(bc.auth_denied, 1, "the stranger's connections");
    cr_assert_eq(bc.messages_in, 0, "no message got through the broker");

    /* and an admitted client still gets in afterwards */
    fonte_client_t *c = client("shop");
    publish(c, 1);
    cr_assert_eq(fonte_flush(c, FLUSH_MS), FONTE_OK);
    cr_assert_eq(stored(), 1);
    fonte_client_destroy(&c);
}

/* A listener whose key the broker does not admit stores nothing, and says
 * why in its log (a warning naming the likely cause), not only "not
 * connected" after a while. Its stderr goes to a file for the test. */
Test(secure, a_listener_the_broker_refuses_says_why)
{
    static const char want[] =
        "the broker's egress %s refused this listener's handshake (CURVE: "
        "is this listener's public key in the broker's --curve-clients?): "
        "nothing is being stored";
    char line[512], logpath[256], err[512] = "", buf[8192];
    snprintf(line, sizeof line, want, broker_egress_endpoint(broker));
    snprintf(logpath, sizeof logpath, "%s/stderr.log", dir);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(fd, 2), 2);
    close(fd);
    flog_set_level(FLOG_WARN);

    listener_opts_t lo;
    listener_t *l = NULL;
    listener_opts(&lo, "data-stranger", "stranger.key");
    fonte_err rc = listener_new(&lo, &l, err, sizeof err);

    /* the warning comes once the broker's ZAP handler has said no */
    bool found = false;
    ssize_t n = 0;
    for (int64_t end = fonte_mono_us() + 10000000;
         rc == FONTE_OK && !found && fonte_mono_us() < end;) {
        int f = open(logpath, O_RDONLY);
        n = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
        if (f >= 0)
            close(f);
        buf[n > 0 ? n : 0] = '\0';
        found = strstr(buf, line) != NULL;
        if (!found)
            poll(NULL, 0, 20);
    }
    ingest_counters_t ic = { 0 };
    if (l != NULL)
        listener_counters(l, &ic);
    listener_destroy(&l);
    flog_set_level(FLOG_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cr_assert_eq(rc, FONTE_OK, "%s", err);
    cr_assert(found, "no '%s' in the log:\n%s", line, buf);
    cr_assert_eq(ic.broker_connects, 0, "a refused handshake is no connect");
    cr_assert_eq(ic.events_stored, 0);
}

/* Sends topic + body on sock (one message of two frames). */
static void
send2(void *sock, const char *topic, codec_buf_t body)
{
    cr_assert_eq(zmq_send(sock, topic, strlen(topic), ZMQ_SNDMORE),
                 (int) strlen(topic));
    cr_assert_eq(zmq_send(sock, body.data, body.len, 0), (int) body.len);
    codec_buf_free(&body);
}

/* Sends the five forged messages, then the ordinary event of session 8
 * whose producer_seq is round. */
static void
send_round(void *pub, const char *const topic[5], const codec_buf_t body[5],
           uint64_t round)
{
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(zmq_send(pub, topic[i], strlen(topic[i]), ZMQ_SNDMORE),
                     (int) strlen(topic[i]));
        cr_assert_eq(zmq_send(pub, body[i].data, body[i].len, 0),
                     (int) body[i].len);
    }
    Fonte__Event *plain = tu_event("order.placed", "order:2", "shop", 8,
                                   round);
    send2(pub, "order.placed", tu_pack(&plain->base));
    fonte__event__free_unpacked(plain, NULL);
}

/* Receives until round's ordinary event came or nothing came for
 * quiet_ms: only the listener's Acks (session 8) and ordinary events may
 * come, each later than the one before. Returns the latest ordinary
 * event's round. */
static uint64_t
recv_round(void *sub, int quiet_ms, uint64_t seen, uint64_t round)
{
    zmq_pollitem_t it = { sub, 0, ZMQ_POLLIN, 0 };
    while (seen < round && zmq_poll(&it, 1, quiet_ms) == 1) {
        char topic[64] = "";
        uint8_t body[4096];
        int tn = zmq_recv(sub, topic, sizeof topic - 1, 0);
        int bn = zmq_recv(sub, body, sizeof body, 0);
        cr_assert(tn > 0 && bn > 0);
        topic[tn] = '\0';
        if (strcmp(topic, "$ack.shop") == 0) { /* the listener's */
            Fonte__Ack *a = NULL;
            cr_assert_eq(codec_ack_decode(body, (size_t) bn,
                                          &codec_limits_default, &a),
                         FONTE_OK);
            cr_assert_eq(a->session, 8, "the forged Ack went through");
            fonte__ack__free_unpacked(a, NULL);
            continue;
        }
        cr_assert_str_eq(topic, "order.placed", "%s went through", topic);
        Fonte__Event *ev = NULL;
        cr_assert_eq(codec_event_unpack(body, (size_t) bn,
                                        &codec_limits_default, &ev),
                     FONTE_OK);
        cr_assert_null(ev->replay, "a flagged event went through");
        cr_assert_str_eq(ev->object, "order:2");
        cr_assert(ev->producer_seq > seen && ev->producer_seq <= round,
                  "round %llu after %llu", (unsigned long long)
                  ev->producer_seq, (unsigned long long) seen);
        seen = ev->producer_seq;
        fonte__event__free_unpacked(ev, NULL);
    }
    return seen;
}

/* With --curve-listener, what only the listener says is taken from the
 * listener's key only: an admitted service's Ack (of its own events),
 * replayed event, ReplayAudit and $sys.listener Stats are dropped and
 * counted invalid.ERESERVED, and no subscriber sees them; its ordinary
 * event goes through. */
Test(secure, only_the_listener_may_ack_replay_or_audit)
{
    char err[512] = "", path[256];
    fcurve_cert_t shop, server;
    snprintf(path, sizeof path, "%s/shop.key", dir);
    cr_assert_eq(fcurve_cert_load(path, true, &shop, err, sizeof err),
                 FONTE_OK, "%s", err);
    cr_assert_eq(fcurve_cert_load(at(6, "server.key"), false, &server, err,
                                  sizeof err), FONTE_OK, "%s", err);
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB), *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(fcurve_client(pub, &shop, &server), 0);
    cr_assert_eq(fcurve_client(sub, &shop, &server), 0);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    cr_assert_eq(zmq_connect(pub, broker_ingress_endpoint(broker)), 0);
    cr_assert_eq(zmq_connect(sub, broker_egress_endpoint(broker)), 0);

    Fonte__Ack ack = FONTE__ACK__INIT;
    ack.producer = "shop";
    ack.session = 7;
    ack.durable_seq = 1;
    Fonte__Stats st = FONTE__STATS__INIT;
    st.source = "listener";
    Fonte__ReplayAudit au = FONTE__REPLAY_AUDIT__INIT;
    au.replay_id = "r1";
    au.root = "order:1";
    au.state = FONTE__REPLAY_AUDIT__STATE__STARTED;
    Fonte__Event *replayed = tu_event("order.placed", "order:1", "shop", 7, 1);
    tu_event_set_replay(replayed, "r1", "order:1", "");
    Fonte__Event *flagged = tu_event("order.placed", "order:1", "shop", 7, 2);
    tu_event_set_replay(flagged, "r1", "order:1", "revenue");
    /* Each round sends the five forged messages, then an ordinary event of
     * another session (the listener stores it and acks it, session 8)
     * whose producer_seq is the round's number: its arrival tells which
     * round has been judged whole (one PUB connection keeps order). */
    const char *forged_topic[5] = {
        "$ack.shop", "$sys.listener", "$sys.replay", "order.placed",
        "$replay.revenue.order.placed",
    };
    codec_buf_t forged[5] = {
        tu_pack(&ack.base), tu_pack(&st.base), tu_pack(&au.base),
        tu_pack(&replayed->base), tu_pack(&flagged->base),
    };
    uint64_t round = 0, seen = 0;

    /* Rounds until an ordinary event comes through: the connections are up
     * (a round may be cut short while the PUB has not yet had the broker's
     * subscription). Then the last round sent is drained to its own
     * ordinary event, so nothing sent is still being judged. (Taking an
     * earlier round's ordinary event for the last one read the counters
     * while a round was still in flight.) */
    int64_t end = fonte_mono_us() + 10000000;
    while (seen < round || seen == 0) {
        cr_assert(fonte_mono_us() < end, "round %llu's ordinary event never "
                  "came through (latest %llu)", (unsigned long long) round,
                  (unsigned long long) seen);
        if (seen == 0)
            send_round(pub, forged_topic, forged, ++round);
        seen = recv_round(sub, seen ? 500 : 50, seen, round);
    }

    /* Then one whole round, counted exactly: its five are dropped as
     * ERESERVED, nothing of them reaches the subscriber, its ordinary event
     * does. */
    broker_counters_t bc;
    fresh_counters(&bc);
    uint64_t reserved0 = bc.invalid_by[FONTE_ERESERVED];
    uint64_t invalid0 = bc.invalid;
    send_round(pub, forged_topic, forged, ++round);
    end = fonte_mono_us() + 10000000;
    while (seen < round) {
        cr_assert(fonte_mono_us() < end, "the counted round's ordinary event "
                  "never came through");
        seen = recv_round(sub, 500, seen, round);
    }
    for (int i = 0; i < 5; i++)
        codec_buf_free(&forged[i]);
    fresh_counters(&bc);
    cr_assert_eq(bc.invalid_by[FONTE_ERESERVED] - reserved0, 5, "%llu",
                 (unsigned long long) (bc.invalid_by[FONTE_ERESERVED] -
                                       reserved0));
    cr_assert_eq(bc.invalid - invalid0, 5);

    fonte__event__free_unpacked(replayed, NULL);
    fonte__event__free_unpacked(flagged, NULL);
    zmq_close(pub);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

Test(secure, curve_options_that_do_not_go_together_are_refused)
{
    fonte_client_opts_t o;
    fonte_client_t *c = NULL;
    fonte_client_opts_init(&o);
    o.service = "shop";
    o.curve_cert = at(6, "shop.key");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL, "no broker key");
    o.curve_broker = at(7, "nope.key");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL, "unreadable");
    o.curve_cert = NULL;
    o.curve_broker = at(7, "server.key");
    cr_assert_eq(fonte_client_new(&o, &c), FONTE_EINVAL, "no own pair");
    cr_assert_null(c);

    broker_opts_t bo;
    broker_t *b = NULL;
    char err[512] = "";
    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.curve_cert = at(1, "server.key");
    cr_assert_eq(broker_new(&bo, &b, err, sizeof err), FONTE_EINVAL);
    cr_assert_not_null(strstr(err, "go together"), "%s", err);
    bo.curve_cert = NULL;
    bo.curve_listener = at(7, "listener.key");
    cr_assert_eq(broker_new(&bo, &b, err, sizeof err), FONTE_EINVAL);
    cr_assert_str_eq(err, "invalid broker option: curve_listener "
                          "(--curve-listener) needs curve_cert and "
                          "curve_clients");
    bo.curve_cert = at(1, "server.key");
    bo.curve_clients = at(2, "clients");
    bo.curve_listener = at(7, "nope.key"); /* with CURVE, but unreadable */
    cr_assert_eq(broker_new(&bo, &b, err, sizeof err), FONTE_EINVAL);
    char want[512];
    snprintf(want, sizeof want, "cannot read certificate %s/nope.key: %s",
             dir, strerror(ENOENT));
    cr_assert_str_eq(err, want);
    cr_assert_null(b);
    bo.curve_listener = NULL;
    bo.curve_clients = at(2, "clients");
    bo.curve_cert = at(1, "stranger.key_secret"); /* not a public file */
    cr_assert_eq(broker_new(&bo, &b, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(b);

    listener_opts_t lo;
    listener_t *l = NULL;
    listener_opts_init(&lo);
    lo.data = at(3, "data2");
    lo.curve_cert = at(4, "listener.key");
    cr_assert_eq(listener_new(&lo, &l, err, sizeof err), FONTE_EINVAL);
    cr_assert_not_null(strstr(err, "what to secure"), "%s", err);
    lo.curve_cert = NULL;
    lo.curve_clients = at(2, "clients");
    cr_assert_eq(listener_new(&lo, &l, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(l);
}
