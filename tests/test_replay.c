/*
 * test_replay.c - ReplayRequests over the query endpoint (listener/
 * replay.c), against a real broker and listener in process: events go in
 * through the broker with a raw PUB, are stored by the listener, and come
 * back through a REQ socket or, republished, through a SUB.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "broker.h"
#include "listener.h"
#include "log.h"
#include "readers.h"
#include "testutil.h"

typedef struct env {
    void *ctx;
    broker_t *broker;
    listener_t *listener;
    void *pub, *acks, *req;
    char dir[64];
    uint64_t seq[8];  /* next producer_seq per producer slot */
    codec_buf_t sent[3][128][2]; /* [producer][seq][topic, body], to resend */
} env_t;

static const char *const producers[] = { "orders", "users", "carts" };

static size_t max_replay_events; /* 0: the default; set by a test */
static int64_t republish_wait_us; /* 0: the default; set by a test */

static void
env_start(env_t *e, size_t max_closure)
{
    char err[256] = "";
    memset(e, 0, sizeof *e);
    e->ctx = zmq_ctx_new();
    strcpy(e->dir, "/tmp/fonte-test-replay-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));

    broker_opts_t bo;
    broker_opts_init(&bo);
    bo.ingress = "tcp://127.0.0.1:*";
    bo.egress = "tcp://127.0.0.1:*";
    bo.stats_interval_us = 0;
    cr_assert_eq(broker_new(&bo, &e->broker, err, sizeof err), FONTE_OK, "%s",
                 err);

    listener_opts_t lo;
    listener_opts_init(&lo);
    lo.egress = broker_egress_endpoint(e->broker);
    lo.ingress = broker_ingress_endpoint(e->broker);
    lo.query = "tcp://127.0.0.1:*";
    lo.data = e->dir;
    lo.sync = false;
    lo.stats_interval_us = 0;
    if (max_closure)
        lo.max_closure = max_closure;
    if (max_replay_events)
        lo.max_replay_events = max_replay_events;
    if (republish_wait_us)
        lo.republish_wait_us = republish_wait_us;
    cr_assert_eq(listener_new(&lo, &e->listener, err, sizeof err), FONTE_OK,
                 "%s", err);

    int linger = 0, timeout = 5000;
    e->pub = zmq_socket(e->ctx, ZMQ_PUB);
    zmq_setsockopt(e->pub, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(e->pub, broker_ingress_endpoint(e->broker)), 0);
    e->acks = zmq_socket(e->ctx, ZMQ_SUB);
    zmq_setsockopt(e->acks, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(e->acks, ZMQ_SUBSCRIBE, "$ack.", 5);
    cr_assert_eq(zmq_connect(e->acks, broker_egress_endpoint(e->broker)), 0);
    e->req = zmq_socket(e->ctx, ZMQ_REQ);
    zmq_setsockopt(e->req, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(e->req, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_connect(e->req, listener_query_endpoint(e->listener)), 0);
    for (size_t i = 0; i < 8; i++)
        e->seq[i] = 1;
}

static void
env_stop(env_t *e)
{
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < 128; i++) {
            codec_buf_free(&e->sent[p][i][0]);
            codec_buf_free(&e->sent[p][i][1]);
        }
    zmq_close(e->pub);
    zmq_close(e->acks);
    zmq_close(e->req);
    listener_destroy(&e->listener);
    broker_destroy(&e->broker);
    zmq_ctx_term(e->ctx);
    tu_rmtree(e->dir);
}

/* Sends producers[p]'s events from..to again (they were kept). */
static void
send_again(env_t *e, size_t p, uint64_t from, uint64_t to)
{
    for (uint64_t s = from; s <= to; s++) {
        codec_buf_t *tb = e->sent[p][s];
        cr_assert_eq(zmq_send(e->pub, tb[0].data, tb[0].len, ZMQ_SNDMORE),
                     (int) tb[0].len);
        cr_assert_eq(zmq_send(e->pub, tb[1].data, tb[1].len, 0),
                     (int) tb[1].len);
    }
}

/* Publishes one event from producers[p] (session p + 1); deps is a list
 * of objects separated by spaces. Returns its producer_seq. */
static uint64_t
publish(env_t *e, size_t p, const char *type, const char *object,
        const char *deps)
{
    uint64_t seq = e->seq[p]++;
    Fonte__Event *ev = tu_event(type, object, producers[p], p + 1, seq);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", deps);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
        tu_event_add_dep(ev, tok);
    cr_assert_lt(seq, 128);
    codec_buf_t *tb = e->sent[p][seq];
    cr_assert_eq(codec_event_encode(ev, &codec_limits_default, &tb[0], &tb[1]),
                 FONTE_OK);
    codec_event_free(&ev);
    send_again(e, p, seq, seq);
    return seq;
}

/* Waits until producers[p]'s session is durable up to seq. The broker
 * may drop what is published before the listener's subscription reached
 * it (slow joiner), so a gap Ack or silence past a second makes us
 * publish the missing events again - what libfonte does. */
static void
wait_durable(env_t *e, size_t p, uint64_t seq)
{
    int64_t deadline = fonte_mono_us() + 10000000;
    uint64_t durable = 0;
    while (fonte_mono_us() < deadline) {
        zmq_pollitem_t it = { e->acks, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 300) <= 0) {
            send_again(e, p, durable + 1, seq); /* go-back-N, as libfonte */
            continue;
        }
        char topic[128];
        uint8_t body[512];
        int tn = zmq_recv(e->acks, topic, sizeof topic, 0);
        int bn = zmq_recv(e->acks, body, sizeof body, 0);
        cr_assert_gt(tn, 0);
        cr_assert_gt(bn, 0);
        Fonte__Ack *ack = NULL;
        cr_assert_eq(codec_ack_decode(body, (size_t) bn, &codec_limits_default,
                                      &ack), FONTE_OK);
        bool mine = strcmp(ack->producer, producers[p]) == 0 &&
                    ack->session == p + 1;
        bool gap = ack->gap;
        if (mine)
            durable = ack->durable_seq;
        fonte__ack__free_unpacked(ack, NULL);
        if (mine && durable >= seq)
            return;
        if (mine && gap)
            send_again(e, p, durable + 1, seq);
    }
    cr_assert_fail("events of %s not durable up to %llu", producers[p],
                   (unsigned long long) seq);
}

/* The events of a scenario, published and made durable in this order. */
typedef struct ev_spec {
    size_t producer;
    const char *type, *object, *deps;
} ev_spec_t;

static void
load(env_t *e, const ev_spec_t *spec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t s = publish(e, spec[i].producer, spec[i].type,
                             spec[i].object, spec[i].deps);
        wait_durable(e, spec[i].producer, s);
    }
}

/* Sends a Request on sock. */
static void
send_request(void *sock, const Fonte__Request *q)
{
    codec_buf_t b = tu_pack(&q->base);
    cr_assert_eq(zmq_send(sock, b.data, b.len, 0), (int) b.len);
    codec_buf_free(&b);
}

/* The next Reply on sock, decoded. */
static Fonte__Reply *
recv_reply(void *sock)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    cr_assert_geq(zmq_msg_recv(&m, sock, 0), 0, "no reply: %s",
                  zmq_strerror(zmq_errno()));
    Fonte__Reply *rep = NULL;
    fonte_err rc = codec_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m),
                                      &codec_limits_default, &rep);
    cr_assert_eq(rc, FONTE_OK, "%s", fonte_strerror(rc));
    zmq_msg_close(&m);
    return rep;
}

/* One ReplayRequest on a REQ socket, its Reply decoded. */
static Fonte__Reply *
ask_on(void *req, Fonte__ReplayRequest *r)
{
    Fonte__Request q = FONTE__REQUEST__INIT;
    q.body_case = FONTE__REQUEST__BODY_REPLAY;
    q.replay = r;
    send_request(req, &q);
    return recv_reply(req);
}

static Fonte__Reply *
ask(env_t *e, Fonte__ReplayRequest *r)
{
    return ask_on(e->req, r);
}

/* "type@object" of each returned event, joined by spaces. */
static void
describe(const Fonte__Reply *rep, char *out, size_t cap)
{
    out[0] = '\0';
    cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_REPLAY);
    for (size_t i = 0; i < rep->replay->n_events; i++) {
        const Fonte__Event *ev = rep->replay->events[i];
        size_t at = strlen(out);
        snprintf(out + at, cap - at, "%s%s@%s", i ? " " : "", ev->type,
                 ev->object);
    }
}

static void
expect_replay(env_t *e, Fonte__ReplayRequest *r, const char *want)
{
    char got[2048];
    Fonte__Reply *rep = ask(e, r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    describe(rep, got, sizeof got);
    cr_assert_str_eq(got, want);
    cr_assert_eq(rep->replay->cursor.len, 0);
    fonte__reply__free_unpacked(rep, NULL);
}

/* ------------------------------------------------------------------ */

TestSuite(replay, .timeout = 60); /* a bug that loops fails, not hangs */

Test(replay, seed_case_user_created_comes_first)
{
    env_t e;
    env_start(&e, 0);
    /* the order arrives first; the user.created it depends on is stored
     * after it (a resend, or a slow producer) */
    ev_spec_t s[] = {
        { 0, "order.placed", "order:1", "user:7" },
        { 1, "user.created", "user:7", "" },
        { 0, "order.line_added", "order:1", "" },
        { 1, "user.renamed", "user:7", "" },
    };
    load(&e, s, 4);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "order:1";
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    char got[512];
    describe(rep, got, sizeof got);
    cr_assert_str_eq(got, "user.created@user:7 order.placed@order:1 "
                          "order.line_added@order:1 user.renamed@user:7");
    cr_assert_eq(rep->replay->total, 4);
    cr_assert_eq(rep->replay->n_cycles, 0);
    /* seq is set, store order */
    cr_assert_eq(rep->replay->events[0]->seq, 2);
    cr_assert_eq(rep->replay->events[1]->seq, 1);
    cr_assert_null(rep->replay->events[0]->replay);
    fonte__reply__free_unpacked(rep, NULL);

    /* sequence: plain store order */
    r.order = FONTE__REPLAY_REQUEST__ORDER__SEQUENCE;
    expect_replay(&e, &r, "order.placed@order:1 user.created@user:7 "
                          "order.line_added@order:1 user.renamed@user:7");
    /* objects: each object's events together, dependencies first */
    r.order = FONTE__REPLAY_REQUEST__ORDER__OBJECTS;
    expect_replay(&e, &r, "user.created@user:7 user.renamed@user:7 "
                          "order.placed@order:1 order.line_added@order:1");
    env_stop(&e);
}

Test(replay, filters)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "order.placed", "order:1", "user:7" },   /* seq 1 */
        { 1, "user.created", "user:7", "" },          /* 2 */
        { 0, "order.line_added", "order:1", "" },     /* 3 */
        { 0, "order.placed", "order:2", "user:7" },   /* 4 */
        { 0, "order.cancelled", "order:1", "" },      /* 5 */
    };
    load(&e, s, 5);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "order:1";

    r.skip_dependencies = 1;
    expect_replay(&e, &r, "order.placed@order:1 order.line_added@order:1 "
                          "order.cancelled@order:1");
    r.skip_dependencies = 0;

    /* types filter what is sent; the order still puts user:7 first */
    char *types[] = { "user.created", "order.cancelled" };
    r.n_types = 2;
    r.types = types;
    expect_replay(&e, &r, "user.created@user:7 order.cancelled@order:1");
    r.n_types = 0;
    r.types = NULL;

    r.after_seq = 2;
    expect_replay(&e, &r, "order.line_added@order:1 order.cancelled@order:1");
    r.after_seq = 0;
    r.until_seq = 2;
    expect_replay(&e, &r, "user.created@user:7 order.placed@order:1");
    r.until_seq = 0;

    /* dependents: user:7 and everything that depends on it, with their
     * own dependencies */
    r.object = "user:7";
    expect_replay(&e, &r, "user.created@user:7");
    r.dependents = 1;
    expect_replay(&e, &r, "user.created@user:7 order.placed@order:1 "
                          "order.line_added@order:1 order.placed@order:2 "
                          "order.cancelled@order:1");
    /* "*": the whole store, causal */
    r.dependents = 0;
    r.object = "*";
    expect_replay(&e, &r, "user.created@user:7 order.placed@order:1 "
                          "order.line_added@order:1 order.placed@order:2 "
                          "order.cancelled@order:1");
    env_stop(&e);
}

Test(replay, cycle_is_reported_and_broken_at_smallest_seq)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "a.created", "a:1", "b:1" },
        { 1, "b.created", "b:1", "a:1" },
    };
    load(&e, s, 2);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "b:1";
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    char got[256];
    describe(rep, got, sizeof got);
    cr_assert_str_eq(got, "a.created@a:1 b.created@b:1");
    cr_assert_eq(rep->replay->n_cycles, 1);
    cr_assert_str_eq(rep->replay->cycles[0], "a:1,b:1");
    fonte__reply__free_unpacked(rep, NULL);
    /* a republish's answer reports it too (libfonte's ticket counts it) */
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->replay->total, 2);
    cr_assert_eq(rep->replay->n_cycles, 1);
    cr_assert_str_eq(rep->replay->cycles[0], "a:1,b:1");
    fonte__reply__free_unpacked(rep, NULL);
    env_stop(&e);
}

/* Every page of a replay with cursor-following; seqs into got (cap),
 * cycles joined by ";" into cyc. Returns the number of pages. */
static size_t
fetch_all(env_t *e, Fonte__ReplayRequest *r, uint64_t *got, size_t cap,
          size_t *n, char *cyc, size_t cyc_cap)
{
    uint8_t cursor[64];
    size_t cursor_len = 0, pages = 0;
    uint64_t total = 0;
    *n = 0;
    cyc[0] = '\0';
    do {
        r->cursor.data = cursor;
        r->cursor.len = cursor_len;
        Fonte__Reply *p = ask(e, r);
        cr_assert_eq(p->status, FONTE__REPLY__STATUS__OK, "%s", p->error);
        if (r->page_size > 0)
            cr_assert_leq(p->replay->n_events, r->page_size);
        if (pages == 0)
            total = p->replay->total;
        cr_assert_eq(p->replay->total, total, "total changed between pages");
        for (size_t i = 0; i < p->replay->n_events; i++) {
            cr_assert_lt(*n, cap);
            got[(*n)++] = p->replay->events[i]->seq;
        }
        for (size_t i = 0; i < p->replay->n_cycles; i++) {
            if (cyc[0] != '\0')
                strncat(cyc, ";", cyc_cap - strlen(cyc) - 1);
            strncat(cyc, p->replay->cycles[i], cyc_cap - strlen(cyc) - 1);
        }
        cursor_len = p->replay->cursor.len;
        cr_assert_leq(cursor_len, sizeof cursor);
        if (cursor_len > 0)
            memcpy(cursor, p->replay->cursor.data, cursor_len);
        fonte__reply__free_unpacked(p, NULL);
        pages++;
    } while (cursor_len > 0);
    r->cursor.len = 0;
    cr_assert_eq(*n, total);
    return pages;
}

Test(replay, pages_concatenated_equal_the_one_shot_result)
{
    env_t e;
    env_start(&e, 0);
    /* 50 events over 5 objects that depend on one another */
    static ev_spec_t s[50];
    static char objs[50][16], deps[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(objs[i], sizeof objs[i], "o:%d", i % 5);
        snprintf(deps[i], sizeof deps[i], "o:%d", (i + 3) % 5);
        s[i] = (ev_spec_t) { (size_t) (i % 3), "thing.changed", objs[i],
                             i % 7 == 0 ? deps[i] : "" };
    }
    load(&e, s, 50);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "o:0";
    r.page_size = 1000;
    Fonte__Reply *whole = ask(&e, &r);
    cr_assert_eq(whole->status, FONTE__REPLY__STATUS__OK);
    size_t n = whole->replay->n_events;
    cr_assert_eq(whole->replay->total, n);
    cr_assert_eq(whole->replay->cursor.len, 0);
    cr_assert_gt(n, 10);

    uint64_t got[100];
    size_t k;
    char cyc[64];
    r.page_size = (uint32_t) ((n + 9) / 10);
    cr_assert_eq(fetch_all(&e, &r, got, 100, &k, cyc, sizeof cyc), 10);
    cr_assert_eq(k, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], whole->replay->events[i]->seq, "page item %zu", i);
    fonte__reply__free_unpacked(whole, NULL);
    env_stop(&e);
}

Test(replay, a_cursor_asked_twice_gives_the_same_page)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "x.a", "x:1", "" }, { 0, "x.b", "x:1", "" },
        { 0, "x.c", "x:1", "" }, { 0, "x.d", "x:1", "" },
    };
    load(&e, s, 4);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "x:1";
    r.page_size = 2;
    Fonte__Reply *p1 = ask(&e, &r);
    cr_assert_eq(p1->replay->n_events, 2);
    cr_assert_gt(p1->replay->cursor.len, 0);
    r.cursor = p1->replay->cursor;
    char a[128], b[128];
    Fonte__Reply *p2 = ask(&e, &r);
    Fonte__Reply *p2again = ask(&e, &r);
    describe(p2, a, sizeof a);
    describe(p2again, b, sizeof b);
    cr_assert_str_eq(a, "x.c@x:1 x.d@x:1");
    cr_assert_str_eq(b, a);
    cr_assert_eq(p2->replay->cursor.len, 0);
    fonte__reply__free_unpacked(p2, NULL);
    fonte__reply__free_unpacked(p2again, NULL);
    fonte__reply__free_unpacked(p1, NULL);
    env_stop(&e);
}

/* A next page is asked with its cursor alone (protocol.md §6): every
 * other field is ignored, even one that would be refused in a first
 * request, and a page_size of 0 means that of the first request. One
 * named applies to that page of a planned replay (a stream's next page
 * may be cut ahead already, in the size before). */
Test(replay, a_next_page_needs_only_its_cursor)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[9];
    for (int i = 0; i < 9; i++)
        s[i] = (ev_spec_t) { 0, "x.a", "x:1", "" };
    load(&e, s, 9);
    const char *objects[] = { "x:1", "*" };
    for (int k = 0; k < 2; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = (char *) objects[k];
        r.page_size = 2;
        Fonte__Reply *p = ask(&e, &r);
        cr_assert_eq(p->status, FONTE__REPLY__STATUS__OK);
        cr_assert_eq(p->replay->n_events, 2);
        Fonte__ReplayRequest next = FONTE__REPLAY_REQUEST__INIT;
        char *bad_types[] = { "Not A Type" };
        next.object = "not an object"; /* refused in a first request */
        next.types = bad_types;
        next.n_types = 1;
        next.cursor = p->replay->cursor;
        Fonte__Reply *q = ask(&e, &next); /* page_size 0: the first's */
        cr_assert_eq(q->status, FONTE__REPLY__STATUS__OK, "%s: %d %s",
                     objects[k], q->status, q->error);
        cr_assert_eq(q->replay->n_events, 2, "%s", objects[k]);
        cr_assert_eq(q->replay->events[0]->seq, 3);
        cr_assert_eq(q->replay->total, 9);
        next.object = "";
        next.types = NULL;
        next.n_types = 0;
        next.page_size = k == 0 ? 5 : 0;
        next.cursor = q->replay->cursor;
        Fonte__Reply *t = ask(&e, &next);
        cr_assert_eq(t->status, FONTE__REPLY__STATUS__OK, "%s", t->error);
        cr_assert_eq(t->replay->n_events, k == 0 ? 5 : 2, "%s", objects[k]);
        cr_assert_eq(t->replay->events[0]->seq, 5);
        if (k == 1) { /* the rest of the stream, pages of 2 */
            uint64_t seq = 7;
            while (t->replay->cursor.len > 0) {
                next.cursor = t->replay->cursor;
                Fonte__Reply *u = ask(&e, &next);
                cr_assert_eq(u->status, FONTE__REPLY__STATUS__OK);
                cr_assert_eq(u->replay->n_events, seq == 9 ? 1 : 2);
                cr_assert_eq(u->replay->events[0]->seq, seq);
                seq += 2;
                fonte__reply__free_unpacked(t, NULL);
                t = u;
            }
            cr_assert_eq(seq, 11);
        }
        cr_assert_eq(t->replay->cursor.len, 0, "the last page");
        fonte__reply__free_unpacked(t, NULL);
        fonte__reply__free_unpacked(q, NULL);
        fonte__reply__free_unpacked(p, NULL);
    }
    env_stop(&e);
}

/* "*" without types is streamed from the log; with a types filter that
 * keeps everything it is planned. Both must give the same order and
 * cycles, whatever the page size. */
/* 60 events over 6 objects: dependencies stored late (resends), a
 * 2-cycle (o:0 <-> o:1 on their first events), chains behind them. */
static void
load_graph60(env_t *e)
{
    static ev_spec_t s[60];
    static char objs[60][16], deps[60][16];
    for (int i = 0; i < 60; i++) {
        snprintf(objs[i], sizeof objs[i], "o:%d", (i * 7) % 6);
        snprintf(deps[i], sizeof deps[i], "o:%d", (i * 5 + 1) % 6);
        s[i] = (ev_spec_t) { (size_t) (i % 3), "thing.changed", objs[i],
                             i % 4 == 0 ? deps[i] : "" };
    }
    /* o:0's first event (i 0) needs o:1; o:1's first (i 1) needs o:0 */
    snprintf(deps[0], sizeof deps[0], "o:1");
    snprintf(deps[1], sizeof deps[1], "o:0");
    s[1].deps = deps[1];
    load(e, s, 60);
}

Test(replay, whole_store_stream_equals_the_planned_order)
{
    env_t e;
    env_start(&e, 0);
    load_graph60(&e);

    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    char *types[] = { "thing.changed" };
    r.object = "*";
    r.types = types;
    r.n_types = 1;
    r.page_size = 1000;
    uint64_t want[64], got[64];
    size_t nw, ng;
    char cw[256], cg[256];
    cr_assert_eq(fetch_all(&e, &r, want, 64, &nw, cw, sizeof cw), 1);
    cr_assert_eq(nw, 60);
    cr_assert_str_eq(cw, "o:0,o:1");
    int moved = 0;
    for (size_t i = 0; i < nw; i++)
        moved += want[i] != i + 1;
    cr_assert_gt(moved, 0, "the graph must change the store order");

    r.n_types = 0; /* streamed */
    uint32_t sizes[] = { 1000, 7, 1 };
    for (size_t z = 0; z < 3; z++) {
        r.page_size = sizes[z];
        size_t pages = fetch_all(&e, &r, got, 64, &ng, cg, sizeof cg);
        cr_assert_eq(pages, (60 + sizes[z] - 1) / sizes[z]);
        cr_assert_eq(ng, nw);
        for (size_t i = 0; i < nw; i++)
            cr_assert_eq(got[i], want[i], "page size %u, item %zu", sizes[z],
                         i);
        cr_assert_str_eq(cg, cw);
    }
    /* a window and sequence order stream too */
    r.after_seq = 10;
    r.until_seq = 20;
    r.order = FONTE__REPLAY_REQUEST__ORDER__SEQUENCE;
    r.page_size = 3;
    fetch_all(&e, &r, got, 64, &ng, cg, sizeof cg);
    cr_assert_eq(ng, 10);
    for (size_t i = 0; i < ng; i++)
        cr_assert_eq(got[i], 11 + i);
    env_stop(&e);
}

/* Three clients stream the whole store at once, a page each in turn, at
 * page sizes 1, 2 and 5: the prefetch thread cuts ahead for all three,
 * and each gets exactly the planned order, its cycle reported once. */
Test(replay, whole_store_streams_of_three_clients_at_once_each_get_the_order)
{
    env_t e;
    env_start(&e, 0);
    load_graph60(&e);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    char *types[] = { "thing.changed" };
    r.object = "*";
    r.types = types;
    r.n_types = 1;
    uint64_t want[64];
    size_t nw;
    char cw[256];
    fetch_all(&e, &r, want, 64, &nw, cw, sizeof cw);
    cr_assert_eq(nw, 60);

    enum { N = 3 };
    void *req[N];
    uint32_t size[N] = { 1, 2, 5 };
    uint64_t got[N][64];
    size_t n[N] = { 0 }, cycles[N] = { 0 }, cur_len[N] = { 0 };
    uint8_t cur[N][64];
    bool done[N] = { false };
    int timeout = 5000, linger = 0;
    for (int k = 0; k < N; k++) {
        req[k] = zmq_socket(e.ctx, ZMQ_REQ);
        zmq_setsockopt(req[k], ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(req[k], ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        cr_assert_eq(zmq_connect(req[k], listener_query_endpoint(e.listener)),
                     0);
    }
    r.n_types = 0; /* streamed */
    for (int left = N; left > 0;) {
        for (int k = 0; k < N; k++) {
            if (done[k])
                continue;
            r.page_size = size[k];
            r.cursor.data = cur[k];
            r.cursor.len = cur_len[k];
            Fonte__Reply *p = ask_on(req[k], &r);
            cr_assert_eq(p->status, FONTE__REPLY__STATUS__OK, "%s", p->error);
            cr_assert_leq(p->replay->n_events, size[k]);
            for (size_t i = 0; i < p->replay->n_events; i++) {
                cr_assert_lt(n[k], 64);
                got[k][n[k]++] = p->replay->events[i]->seq;
            }
            cycles[k] += p->replay->n_cycles;
            cur_len[k] = p->replay->cursor.len;
            cr_assert_leq(cur_len[k], sizeof cur[k]);
            if (cur_len[k] > 0)
                memcpy(cur[k], p->replay->cursor.data, cur_len[k]);
            fonte__reply__free_unpacked(p, NULL);
            if (cur_len[k] == 0) {
                done[k] = true;
                left--;
            }
        }
    }
    for (int k = 0; k < N; k++) {
        cr_assert_eq(n[k], nw, "client %d", k);
        for (size_t i = 0; i < nw; i++)
            cr_assert_eq(got[k][i], want[i], "client %d, item %zu", k, i);
        cr_assert_eq(cycles[k], 1, "client %d", k);
        zmq_close(req[k]);
    }
    replay_counters_t c;
    listener_replay_counters(e.listener, &c);
    cr_assert_gt(c.cut_ahead, 0);
    env_stop(&e);
}

Test(replay, whole_store_stream_retry_gives_the_same_page_and_old_cursors_fail)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "x.a", "x:1", "" }, { 0, "x.b", "x:2", "" },
        { 0, "x.c", "x:3", "" }, { 0, "x.d", "x:4", "" },
        { 0, "x.e", "x:5", "" },
    };
    load(&e, s, 5);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 2;
    Fonte__Reply *p1 = ask(&e, &r);
    cr_assert_eq(p1->status, FONTE__REPLY__STATUS__OK, "%s", p1->error);
    cr_assert_eq(p1->replay->total, 5);
    char a[128], b[128];
    describe(p1, a, sizeof a);
    cr_assert_str_eq(a, "x.a@x:1 x.b@x:2");
    r.cursor = p1->replay->cursor;
    Fonte__Reply *p2 = ask(&e, &r);
    Fonte__Reply *p2again = ask(&e, &r); /* a retry */
    describe(p2, a, sizeof a);
    describe(p2again, b, sizeof b);
    cr_assert_str_eq(a, "x.c@x:3 x.d@x:4");
    cr_assert_str_eq(b, a);
    cr_assert_eq(p2again->replay->cursor.len, p2->replay->cursor.len);
    cr_assert_eq(memcmp(p2again->replay->cursor.data, p2->replay->cursor.data,
                        p2->replay->cursor.len), 0);
    r.cursor = p2->replay->cursor;
    Fonte__Reply *p3 = ask(&e, &r);
    describe(p3, a, sizeof a);
    cr_assert_str_eq(a, "x.e@x:5");
    cr_assert_eq(p3->replay->cursor.len, 0);
    /* a cursor forged to start mid-page (position 3 of 5) */
    uint8_t forged[64];
    size_t fl = p2->replay->cursor.len;
    cr_assert(fl >= 8 && fl <= sizeof forged);
    memcpy(forged, p2->replay->cursor.data, fl);
    forged[fl - 1] = 3;
    r.cursor.data = forged;
    r.cursor.len = fl;
    Fonte__Reply *skip = ask(&e, &r);
    cr_assert_eq(skip->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_str_eq(skip->error,
                     "cursor position is neither the next page nor the last "
                     "one: pass back the cursor of the previous page");
    fonte__reply__free_unpacked(skip, NULL);
    /* page 1's cursor is two pages back: gone */
    r.cursor = p1->replay->cursor;
    Fonte__Reply *old = ask(&e, &r);
    cr_assert_eq(old->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_str_eq(old->error,
                     "cursor position is neither the next page nor the last "
                     "one: pass back the cursor of the previous page");
    fonte__reply__free_unpacked(old, NULL);
    fonte__reply__free_unpacked(p3, NULL);
    fonte__reply__free_unpacked(p2, NULL);
    fonte__reply__free_unpacked(p2again, NULL);
    fonte__reply__free_unpacked(p1, NULL);
    env_stop(&e);
}

Test(replay, whole_store_stream_remembers_first_seqs_only_where_they_hold)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 1, "user.created", "user:9", "" },
        { 0, "order.placed", "order:1", "user:9" },
        { 1, "user.changed", "user:9", "" },
    };
    load(&e, s, 3);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    /* twice: the second run takes user:9's first seq (1) from the cache */
    for (int k = 0; k < 2; k++)
        expect_replay(&e, &r, "user.created@user:9 order.placed@order:1 "
                              "user.changed@user:9");
    /* after seq 1, user:9 begins at 3 in the window: the cached 1 does not
     * hold there, and the order waits for 3 */
    r.after_seq = 1;
    expect_replay(&e, &r, "user.changed@user:9 order.placed@order:1");
    /* the same window planned (types: every type), for the same answer */
    char *types[] = { "order.placed", "user.changed", "user.created" };
    r.types = types;
    r.n_types = 3;
    expect_replay(&e, &r, "user.changed@user:9 order.placed@order:1");
    env_stop(&e);
}

/* Waits (5 s at most) until the listener has cut `want` pages ahead. */
static uint64_t
wait_cut_ahead(env_t *e, uint64_t want)
{
    replay_counters_t c;
    for (int i = 0; i < 5000; i++) {
        listener_replay_counters(e->listener, &c);
        if (c.cut_ahead >= want)
            return c.cut_ahead;
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
    }
    return c.cut_ahead;
}

Test(replay, whole_store_stream_cuts_two_pages_ahead_and_answers_only_the_next)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "x.a", "x:1", "" }, { 0, "x.b", "x:2", "" },
        { 0, "x.c", "x:3", "" }, { 0, "x.d", "x:4", "" },
        { 0, "x.e", "x:5", "" }, { 0, "x.f", "x:6", "" },
    };
    load(&e, s, 6);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 1;
    Fonte__Reply *p1 = ask(&e, &r);
    cr_assert_eq(p1->status, FONTE__REPLY__STATUS__OK, "%s", p1->error);
    /* pages 2 and 3 are cut without being asked for; no more (two ahead) */
    cr_assert_eq(wait_cut_ahead(&e, 2), 2);

    /* a cursor to page 3 (position 2), cut ahead but not the next page */
    uint8_t forged[64];
    size_t fl = p1->replay->cursor.len;
    cr_assert(fl >= 8 && fl <= sizeof forged);
    memcpy(forged, p1->replay->cursor.data, fl);
    forged[fl - 1] = 2;
    r.cursor.data = forged;
    r.cursor.len = fl;
    Fonte__Reply *skip = ask(&e, &r);
    cr_assert_eq(skip->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(skip, NULL);

    /* page 1 again (a retry), then every page in turn */
    r.cursor.data = NULL;
    r.cursor.len = 0;
    r.cursor = p1->replay->cursor;
    Fonte__Reply *again = ask(&e, &r);
    char got[256] = "", one[64];
    describe(again, one, sizeof one);
    cr_assert_str_eq(one, "x.b@x:2");
    r.cursor = again->replay->cursor;
    Fonte__Reply *prev = again;
    for (int k = 3; k <= 6; k++) {
        Fonte__Reply *p = ask(&e, &r);
        cr_assert_eq(p->status, FONTE__REPLY__STATUS__OK, "%s", p->error);
        describe(p, one, sizeof one);
        strcat(got, one);
        strcat(got, k < 6 ? " " : "");
        cr_assert_eq(p->replay->cursor.len == 0, k == 6);
        r.cursor = p->replay->cursor;
        fonte__reply__free_unpacked(prev, NULL);
        prev = p;
    }
    cr_assert_str_eq(got, "x.c@x:3 x.d@x:4 x.e@x:5 x.f@x:6");
    /* 2..6 at most: a page the client asks for before the prefetch thread
     * gets to it is cut while the client waits */
    replay_counters_t c;
    listener_replay_counters(e.listener, &c);
    cr_assert_leq(c.cut_ahead, 5);
    fonte__reply__free_unpacked(prev, NULL);
    fonte__reply__free_unpacked(p1, NULL);
    env_stop(&e);
}

Test(replay, errors_have_clear_statuses)
{
    env_t e;
    env_start(&e, 3);
    ev_spec_t s[] = {
        { 0, "a.x", "a:1", "b:1" }, { 0, "b.x", "b:1", "c:1" },
        { 0, "c.x", "c:1", "d:1" }, { 0, "d.x", "d:1", "" },
    };
    load(&e, s, 4);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;

    r.object = "nobody:1";
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__NOT_FOUND);
    cr_assert_str_eq(rep->error, "no events for object nobody:1");
    cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_REPLAY);
    cr_assert_eq(rep->replay->n_events, 0);
    fonte__reply__free_unpacked(rep, NULL);

    r.object = "a:1"; /* closure a, b, c, d: 4 > 3 */
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__LIMIT);
    cr_assert_str_eq(rep->error, "the closure of a:1 has more than 3 objects "
                                 "(limit --max-closure)");
    fonte__reply__free_unpacked(rep, NULL);

    r.object = "b:1"; /* b, c, d: within the limit */
    expect_replay(&e, &r, "d.x@d:1 c.x@c:1 b.x@b:1");

    r.after_seq = 5;
    r.until_seq = 5;
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(rep, NULL);
    r.after_seq = r.until_seq = 0;

    r.target = "revenue"; /* a target without REPUBLISH */
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(rep, NULL);
    r.target = "";

    uint8_t bogus[24] = { 1, 2, 3 };
    r.cursor.data = bogus;
    r.cursor.len = sizeof bogus;
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    cr_assert_str_eq(rep->error,
                     "unknown or expired cursor: start the replay again");
    fonte__reply__free_unpacked(rep, NULL);
    r.cursor.len = 5;
    rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(rep, NULL);

    /* a malformed request frame: an error Reply, not silence */
    cr_assert_eq(zmq_send(e.req, "\xff\xff", 2, 0), 2);
    rep = recv_reply(e.req);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
    fonte__reply__free_unpacked(rep, NULL);
    env_stop(&e);
}

Test(replay, more_events_than_the_limit_is_refused_with_limit)
{
    env_t e;
    max_replay_events = 3;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "x.a", "x:1", "" }, { 0, "x.b", "x:1", "" },
        { 0, "x.c", "x:1", "" }, { 0, "y.a", "y:1", "" },
    };
    load(&e, s, 4);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "y:1";
    expect_replay(&e, &r, "y.a@y:1");
    r.object = "x:1";
    expect_replay(&e, &r, "x.a@x:1 x.b@x:1 x.c@x:1");
    r.object = "*"; /* 4 events > 3, planned (objects order) */
    r.order = FONTE__REPLAY_REQUEST__ORDER__OBJECTS;
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__LIMIT);
    cr_assert_str_eq(rep->error, "the replay of * has more than 3 events "
                                 "(limit --max-replay-events)");
    fonte__reply__free_unpacked(rep, NULL);
    /* streamed (causal): the limit is on events waiting, not on all */
    r.order = FONTE__REPLAY_REQUEST__ORDER__CAUSAL;
    expect_replay(&e, &r, "x.a@x:1 x.b@x:1 x.c@x:1 y.a@y:1");
    env_stop(&e);
    max_replay_events = 0;
}

Test(replay, a_stream_with_too_many_events_waiting_is_refused_with_limit)
{
    env_t e;
    max_replay_events = 3;
    env_start(&e, 0);
    /* x:1's first three events wait for u:1, stored after them (3 wait:
     * within the limit); its next four wait for u:2 (4: over it) */
    ev_spec_t s[] = {
        { 0, "x.a", "x:1", "u:1" }, { 0, "x.b", "x:1", "" },
        { 0, "x.c", "x:1", "" },    { 1, "u.created", "u:1", "" },
        { 0, "x.d", "x:1", "u:2" }, { 0, "x.e", "x:1", "" },
        { 0, "x.f", "x:1", "" },    { 0, "x.g", "x:1", "" },
        { 1, "u.created", "u:2", "" },
    };
    load(&e, s, 9);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__LIMIT);
    cr_assert_str_eq(rep->error,
                     "the replay of * has more than 3 events waiting for a "
                     "dependency (limit --max-replay-events)");
    fonte__reply__free_unpacked(rep, NULL);
    /* without u:2 in the window nothing waits for it */
    r.until_seq = 8;
    expect_replay(&e, &r,
                  "u.created@u:1 x.a@x:1 x.b@x:1 x.c@x:1 x.d@x:1 x.e@x:1 "
                  "x.f@x:1 x.g@x:1");
    env_stop(&e);
    max_replay_events = 0;
}

Test(replay, a_full_republish_queue_is_refused_with_limit)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = { { 0, "x.a", "x:1", "" }, { 0, "x.b", "x:1", "" } };
    load(&e, s, 2);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "x:1";
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    r.rate = 1; /* each takes about two seconds: the queue fills */
    for (int i = 0; i < 16; i++) {
        Fonte__Reply *rep = ask(&e, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "request %d: %s",
                     i, rep->error);
        fonte__reply__free_unpacked(rep, NULL);
    }
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__UNAVAILABLE,
                 "a full queue is busy, not a limit of the request");
    cr_assert_str_eq(rep->error,
                     "busy: too many republishes queued: try again later");
    fonte__reply__free_unpacked(rep, NULL);
    env_stop(&e); /* abandons the running one, frees the queued ones */
}

/* Receives one two-frame message within timeout_ms: topic and event. */
static bool
recv_event(void *sock, int timeout_ms, char *topic, size_t cap,
           Fonte__Event **ev, Fonte__ReplayAudit **audit)
{
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    int tn = zmq_recv(sock, topic, cap - 1, 0);
    cr_assert_gt(tn, 0);
    topic[tn] = '\0';
    zmq_msg_t m;
    zmq_msg_init(&m);
    cr_assert_geq(zmq_msg_recv(&m, sock, 0), 0);
    codec_frame_t f[2] = { { topic, (size_t) tn },
                           { zmq_msg_data(&m), zmq_msg_size(&m) } };
    *ev = NULL;
    *audit = NULL;
    if (strcmp(topic, "$sys.replay") == 0)
        cr_assert_eq(codec_audit_decode(f[1].data, f[1].size,
                                        &codec_limits_default, audit),
                     FONTE_OK);
    else
        cr_assert_eq(codec_event_decode(f, 2, &codec_limits_default, ev),
                     FONTE_OK);
    zmq_msg_close(&m);
    return true;
}

Test(replay, republish_reaches_only_the_target_flagged_and_is_not_stored)
{
    env_t e;
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "order.placed", "order:1", "user:7" },
        { 1, "user.created", "user:7", "" },
    };
    load(&e, s, 2);

    void *revenue = zmq_socket(e.ctx, ZMQ_SUB);
    void *users = zmq_socket(e.ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(revenue, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(users, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(revenue, ZMQ_SUBSCRIBE, "$replay.revenue.", 16);
    zmq_setsockopt(users, ZMQ_SUBSCRIBE, "$replay.users.", 14);
    zmq_setsockopt(users, ZMQ_SUBSCRIBE, "$sys.replay", 11);
    /* users' subscriptions pass upstream before revenue's is made: the
     * republisher, which waits only for the target's, then has users'
     * $sys.replay too (they come over one connection, in order) */
    broker_counters_t bc;
    broker_counters(e.broker, &bc);
    uint64_t subscribes0 = bc.subscribes, copies0 = bc.copies;
    cr_assert_eq(zmq_connect(users, broker_egress_endpoint(e.broker)), 0);
    for (int64_t end = fonte_mono_us() + 10000000;
         bc.copies == copies0 || bc.subscribes < subscribes0 + 2;) {
        cr_assert(fonte_mono_us() < end, "users' subscriptions never "
                  "passed the broker");
        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
        broker_counters(e.broker, &bc);
    }
    cr_assert_eq(zmq_connect(revenue, broker_egress_endpoint(e.broker)), 0);

    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "order:1";
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    r.target = "revenue";
    r.reason = "rebuild revenue";
    r.rate = 1000;
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    cr_assert_eq(rep->replay->total, 2);
    cr_assert_eq(rep->replay->n_events, 0);
    char replay_id[64];
    snprintf(replay_id, sizeof replay_id, "%s", rep->replay->replay_id);
    cr_assert_eq(strncmp(replay_id, "r-", 2), 0);
    fonte__reply__free_unpacked(rep, NULL);

    char topic[256];
    Fonte__Event *ev;
    Fonte__ReplayAudit *audit;
    const char *want[] = { "user.created", "order.placed" };
    for (int i = 0; i < 2; i++) {
        cr_assert(recv_event(revenue, 5000, topic, sizeof topic, &ev, &audit),
                  "replayed event %d did not arrive", i);
        char wt[128];
        snprintf(wt, sizeof wt, "$replay.revenue.%s", want[i]);
        cr_assert_str_eq(topic, wt);
        cr_assert_not_null(ev->replay);
        cr_assert_str_eq(ev->replay->replay_id, replay_id);
        cr_assert_str_eq(ev->replay->root, "order:1");
        cr_assert_str_eq(ev->replay->target, "revenue");
        cr_assert_str_eq(ev->replay->reason, "rebuild revenue");
        cr_assert_eq(ev->replay->index, (uint64_t) i + 1);
        cr_assert_eq(ev->replay->total, 2);
        cr_assert_eq(ev->seq, i == 0 ? 2u : 1u);
        codec_event_free(&ev);
    }
    /* users sees the audit (STARTED, FINISHED) and nothing else */
    int finished = 0;
    while (!finished &&
           recv_event(users, 5000, topic, sizeof topic, &ev, &audit)) {
        cr_assert_null(ev, "a replay reached a service it was not aimed at");
        cr_assert_str_eq(audit->replay_id, replay_id);
        if (audit->state == FONTE__REPLAY_AUDIT__STATE__FINISHED) {
            cr_assert_eq(audit->events, 2);
            finished = 1;
        }
        fonte__replay_audit__free_unpacked(audit, NULL);
    }
    cr_assert(finished);

    /* the listener heard the replayed events and stored none of them */
    uint64_t s3 = publish(&e, 2, "cart.opened", "cart:1", "");
    wait_durable(&e, 2, s3);
    store_counts_t c;
    store_counts(listener_store(e.listener), &c);
    cr_assert_eq(c.events, 3);
    cr_assert_eq(c.last_seq, 3);
    zmq_close(revenue);
    zmq_close(users);
    env_stop(&e);
}

/* The listener's own catch-all subscription reaches the republisher
 * too; it must not count as the target's. A target that subscribes
 * only after the request was accepted still gets the first event. */
Test(replay, republish_waits_for_the_target_not_the_catch_all)
{
    env_t e;
    republish_wait_us = 20000000; /* a slow machine's: the 200 ms below */
    env_start(&e, 0);
    ev_spec_t s[] = {
        { 0, "order.placed", "order:1", "user:7" },
        { 1, "user.created", "user:7", "" },
    };
    load(&e, s, 2);

    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "order:1";
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    r.target = "late";
    r.reason = "late joiner";
    Fonte__Reply *rep = ask(&e, &r);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    cr_assert_eq(rep->replay->total, 2);
    fonte__reply__free_unpacked(rep, NULL);

    /* The target joins 200 ms late: the scenario, not a synchronisation
     * (the republisher starts within 50 ms and waits up to 20 s here, 1 s
     * by default). */
    struct timespec ts = { 0, 200 * 1000000L };
    nanosleep(&ts, NULL);
    void *late = zmq_socket(e.ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(late, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(late, ZMQ_SUBSCRIBE, "$replay.late.", 13);
    cr_assert_eq(zmq_connect(late, broker_egress_endpoint(e.broker)), 0);

    char topic[256];
    Fonte__Event *ev;
    Fonte__ReplayAudit *audit;
    const char *want[] = { "$replay.late.user.created",
                           "$replay.late.order.placed" };
    for (int i = 0; i < 2; i++) {
        cr_assert(recv_event(late, 5000, topic, sizeof topic, &ev, &audit),
                  "replayed event %d did not arrive", i);
        cr_assert_str_eq(topic, want[i]);
        cr_assert_eq(ev->replay->index, (uint64_t) i + 1);
        codec_event_free(&ev);
    }
    zmq_close(late);
    env_stop(&e);
}

/* Undoes build_store and what ran on it: the replay service, the store, the directory. */
static void
replay_off_store(const char *dir, store_t **s, replay_t **rp)
{
    replay_destroy(rp);
    store_close(s);
    tu_rmtree(dir);
}

/* Puts a "thing.changed" event of object (from producer, session 1,
 * producer seq pseq; depending on dep unless NULL) into b. */
static void
put_event(store_batch_t *b, const char *object, const char *producer,
          uint64_t pseq, const char *dep)
{
    Fonte__Event *ev = tu_event("thing.changed", object, producer, 1, pseq);
    if (dep != NULL)
        tu_event_add_dep(ev, dep);
    codec_buf_t t, body;
    codec_view_t v;
    cr_assert_eq(codec_event_encode(ev, &codec_limits_default, &t, &body),
                 FONTE_OK);
    cr_assert_eq(codec_event_scan(body.data, body.len, &codec_limits_default,
                                  &v), FONTE_OK);
    cr_assert_eq(store_batch_put(b, &v, body.data, body.len, NULL), FONTE_OK);
    codec_buf_free(&t);
    codec_buf_free(&body);
    codec_event_free(&ev);
}

/* A new store in dir, not synced (a test's crash loses nothing). */
static store_t *
unsynced_store(const char *dir)
{
    char err[256] = "";
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    so.sync = false;
    store_t *s = NULL;
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    return s;
}

/* A store of n events written directly (no ingest), for big replays. */
static void
build_store(const char *dir, size_t n)
{
    store_t *s = unsynced_store(dir);
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (size_t i = 0; i < n; i++) {
        char object[32], dep[32];
        snprintf(object, sizeof object, "obj:%zu", i % 1000);
        snprintf(dep, sizeof dep, "obj:%zu", (i * 7) % 1000);
        put_event(b, object, "bulk", i + 1, i % 3 == 0 ? dep : NULL);
        if (store_batch_count(b) == 10000 || i + 1 == n) {
            cr_assert_eq(store_batch_commit(b), FONTE_OK);
            store_batch_clear(b);
        }
    }
    store_batch_destroy(&b);
    store_close(&s);
}

Test(replay, a_big_replay_does_not_hold_a_status_request, .timeout = 120)
{
#ifdef FONTE_TEST_SCALE_DOWN
    const size_t n = 60000;
#else
    const size_t n = 200000;
#endif
    char dir[] = "/tmp/fonte-test-bigreplay-XXXXXX", err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    build_store(dir, n);

    listener_opts_t lo;
    listener_opts_init(&lo);
    lo.data = dir;
    lo.query = "tcp://127.0.0.1:*";
    lo.egress = lo.ingress = "tcp://127.0.0.1:9"; /* no broker needed */
    lo.sync = false;
    lo.stats_interval_us = 0;
    listener_t *l = NULL;
    cr_assert_eq(listener_new(&lo, &l, err, sizeof err), FONTE_OK, "%s", err);

    void *ctx = zmq_ctx_new();
    int linger = 0, timeout = 60000;
    void *big = zmq_socket(ctx, ZMQ_REQ), *small = zmq_socket(ctx, ZMQ_REQ);
    zmq_setsockopt(big, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(small, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(small, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_connect(big, listener_query_endpoint(l)), 0);
    cr_assert_eq(zmq_connect(small, listener_query_endpoint(l)), 0);

    /* the whole store, causal: the first page orders every event */
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    Fonte__Request q = FONTE__REQUEST__INIT;
    r.object = "*";
    q.body_case = FONTE__REQUEST__BODY_REPLAY;
    q.replay = &r;
    send_request(big, &q);

    Fonte__StatusRequest sr = FONTE__STATUS_REQUEST__INIT;
    Fonte__Request qs = FONTE__REQUEST__INIT;
    qs.body_case = FONTE__REQUEST__BODY_STATUS;
    qs.status = &sr;
    send_request(small, &qs);
    Fonte__Reply *rep = recv_reply(small);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->status_reply->events, n);
    fonte__reply__free_unpacked(rep, NULL);

    /* the status came back while the big replay was still being worked on */
    zmq_pollitem_t it = { big, 0, ZMQ_POLLIN, 0 };
    cr_assert_eq(zmq_poll(&it, 1, 0), 0,
                 "the big replay finished before the status answer");
    /* and the big replay does finish: first page of 1000, total n */
    cr_assert_eq(zmq_poll(&it, 1, 60000), 1);
    rep = recv_reply(big);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->replay->total, n);
    cr_assert_eq(rep->replay->n_events, 1000);
    cr_assert_gt(rep->replay->cursor.len, 0);
    fonte__reply__free_unpacked(rep, NULL);

    /* with no worker busy any more, the query thread waits on the ROUTER
     * alone again: a request is still answered */
    send_request(small, &qs);
    rep = recv_reply(small);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->status_reply->events, n);
    fonte__reply__free_unpacked(rep, NULL);

    zmq_close(big);
    zmq_close(small);
    zmq_ctx_term(ctx);
    listener_destroy(&l);
    tu_rmtree(dir);
}

/* replay_handle(rp, s, r) with no deadline, its reply decoded (the caller
 * frees it). */
static Fonte__Reply *
handled(replay_t *rp, store_t *s, const Fonte__ReplayRequest *r)
{
    codec_buf_t out;
    Fonte__Reply *rep = NULL;
    cr_assert_eq(replay_handle(rp, s, r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    codec_buf_free(&out);
    return rep;
}

/* A store in the new temporary directory dir (a mkdtemp template) holding
 * n events, written directly: event i of object objs[i] (producer p,
 * producer seq i + 1) depending on deps[i] unless NULL. */
static store_t *
small_store(char *dir, const char *const objs[], const char *const deps[],
            size_t n)
{
    cr_assert_not_null(mkdtemp(dir));
    store_t *s = unsynced_store(dir);
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (size_t i = 0; i < n; i++)
        put_event(b, objs[i], "p", i + 1, deps[i]);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    return s;
}

/* A replay service on s with default options but seen_after. */
static replay_t *
seen_replay(store_t *s, size_t seen_after)
{
    char err[256] = "";
    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.seen_after = seen_after;
    replay_t *rp = NULL;
    cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK, "%s",
                 err);
    return rp;
}

/* The cycles a reply lists are bounded (cycles_bytes of names: 8 for
 * each 2-cycle here, "a:1" and "b:1" with their separators); the ones
 * past the bound are counted in cycles_omitted, in the order they were
 * broken, so a store full of cycles cannot make a reply too big for a
 * client to take. Three 2-cycles chained from a:1: {a,b}, {c,d}, {e,f}.
 * The same for a planned replay and the streamed whole store (a
 * republish's answer writes them with the same write_cycles). */
Test(replay, listed_cycles_are_bounded_and_the_rest_counted)
{
    char dir[] = "/tmp/fonte-test-cycles-XXXXXX", err[256] = "";
    static const char *const objs[] = { "a:1", "b:1", "b:1", "c:1",
                                        "d:1", "d:1", "e:1", "f:1" };
    static const char *const deps[] = { "b:1", "a:1", "c:1", "d:1",
                                        "c:1", "e:1", "f:1", "e:1" };
    store_t *s = small_store(dir, objs, deps, 8);

    static const struct {
        size_t budget, listed;
    } cases[] = { { 0, 3 }, { 24, 3 }, { 23, 2 }, { 16, 2 }, { 8, 1 },
                  { 7, 0 } };
    static const char *const names[] = { "a:1,b:1", "c:1,d:1", "e:1,f:1" };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        replay_opts_t ro;
        replay_opts_init(&ro);
        if (cases[k].budget > 0)
            ro.cycles_bytes = cases[k].budget;
        replay_t *rp = NULL;
        cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK,
                     "%s", err);
        for (int all = 0; all < 2; all++) {
            Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
            r.object = all ? "*" : "a:1";
            Fonte__Reply *rep = handled(rp, s, &r);
            cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s",
                         rep->error);
            cr_assert_eq(rep->replay->total, 8);
            cr_assert_eq(rep->replay->n_cycles, cases[k].listed,
                         "budget %zu, %s", cases[k].budget, r.object);
            for (size_t i = 0; i < cases[k].listed; i++)
                cr_assert_str_eq(rep->replay->cycles[i], names[i]);
            cr_assert_eq(rep->replay->cycles_omitted, 3 - cases[k].listed,
                         "budget %zu, %s", cases[k].budget, r.object);
            fonte__reply__free_unpacked(rep, NULL);
        }
        replay_destroy(&rp);
    }
    store_close(&s);
    tu_rmtree(dir);
}

/* A log with a hole (event 4 gone, 5 there: damage that only a repair or
 * a hand-edited store could leave): the stream says which event is
 * missing, INTERNAL, and keeps saying it. */
Test(replay, a_hole_in_the_log_fails_the_stream_with_internal)
{
    char dir[] = "/tmp/fonte-test-hole-XXXXXX", err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    build_store(dir, 3);
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    store_t *s = NULL;
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    store_snap_t *snap = NULL;
    void *body = NULL;
    size_t len = 0;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_get_event(snap, 3, &body, &len), FONTE_OK);
    store_snap_destroy(&snap);
    uint8_t five[8] = { 0, 0, 0, 0, 0, 0, 0, 5 };
    uint8_t e5[9] = { 'e', 0, 0, 0, 0, 0, 0, 0, 5 };
    store_kv_t kv[2] = { { e5, 9, body, len }, { "mlast_seq", 9, five, 8 } };
    cr_assert_eq(store_write_raw(s, kv, 2), FONTE_OK);
    store_free(body);
    store_close(&s);
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    replay_opts_t ro;
    replay_opts_init(&ro);
    replay_t *rp = NULL;
    cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK, "%s",
                 err);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 2;
    codec_buf_t out;
    Fonte__Reply *rep = NULL;

    /* the first page (1, 2) is whole; the second reaches the hole */
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->replay->total, 5);
    cr_assert_eq(rep->replay->n_events, 2);
    uint8_t cur[64];
    size_t cur_len = rep->replay->cursor.len;
    cr_assert(cur_len > 0 && cur_len <= sizeof cur);
    memcpy(cur, rep->replay->cursor.data, cur_len);
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);
    r.cursor.data = cur;
    r.cursor.len = cur_len;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
        cr_assert_eq(codec_reply_decode(out.data, out.len,
                                        &codec_limits_default, &rep),
                     FONTE_OK);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__INTERNAL);
        cr_assert_str_eq(rep->error, "event 4 is missing from the log");
        fonte__reply__free_unpacked(rep, NULL);
        codec_buf_free(&out);
    }
    replay_off_store(dir, &s, &rp);
}

/* A replay service over a store of n events (build_store) in a new
 * directory made from the template dir (mkdtemp). */
static void
replay_on_store(char *dir, size_t n, store_t **s, replay_t **rp)
{
    char err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    build_store(dir, n);
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    cr_assert_eq(store_open(&so, s, err, sizeof err), FONTE_OK, "%s", err);
    replay_opts_t ro;
    replay_opts_init(&ro);
    cr_assert_eq(replay_new(&ro, *s, rp, err, sizeof err), FONTE_OK, "%s",
                 err);
}

/* Asserts that a and b hold the same bytes, then frees both. */
static void
assert_same_bytes(codec_buf_t *a, codec_buf_t *b, const char *what)
{
    cr_assert_eq(a->len, b->len, "%s: %zu bytes against %zu", what, a->len,
                 b->len);
    cr_assert_eq(memcmp(a->data, b->data, a->len), 0, "%s", what);
    codec_buf_free(a);
    codec_buf_free(b);
}

/* A closure's events are read in seq order, load_batch of them at a
 * time: with batches of 7 (runs of each object split across batches) the
 * answer is the same, byte for byte, as with one batch. */
Test(replay, a_closure_read_in_small_batches_gives_the_same_answer)
{
    char dir[] = "/tmp/fonte-test-batch-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *one = NULL, *small = NULL;
    replay_on_store(dir, 6000, &s, &one);
    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.load_batch = 7;
    cr_assert_eq(replay_new(&ro, s, &small, err, sizeof err), FONTE_OK, "%s",
                 err);
    const char *objects[] = { "obj:1", "obj:123", "obj:999" };
    for (size_t k = 0; k < 3; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = (char *) objects[k];
        r.page_size = 10000;
        codec_buf_t a, b;
        cr_assert_eq(replay_handle(one, s, &r, 0, &a), FONTE_OK);
        cr_assert_eq(replay_handle(small, s, &r, 0, &b), FONTE_OK);
        Fonte__Reply *rep = NULL;
        cr_assert_eq(codec_reply_decode(a.data, a.len, &codec_limits_default,
                                        &rep), FONTE_OK);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
        /* 20 objects of 6 events each (build_store's dependencies) */
        cr_assert_eq(rep->replay->n_events, 120, "%s: %zu events",
                     objects[k], rep->replay->n_events);
        cr_assert_eq(rep->replay->total, 120);
        uint64_t seen = 0;
        for (size_t i = 0; i < rep->replay->n_events; i++)
            seen += strcmp(rep->replay->events[i]->object, objects[k]) != 0;
        cr_assert_gt(seen, 0, "no dependency's events in the answer");
        fonte__reply__free_unpacked(rep, NULL);
        assert_same_bytes(&a, &b, objects[k]);
    }
    replay_destroy(&small);
    replay_off_store(dir, &s, &one);
}

/* A closure's gets shared with read helpers (readers.h) - none, the
 * default one, four - give the same answer byte for byte; with the
 * default, each replay here is one window of 120 gets, shared (nothing
 * else reads), and counted as such. Out of range is refused. */
Test(replay, a_closure_read_with_or_without_helpers_gives_the_same_answer)
{
    char dir[] = "/tmp/fonte-test-readers-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *one = NULL, *none = NULL, *four = NULL, *bad = NULL;
    replay_on_store(dir, 6000, &s, &one);
    replay_opts_t ro;
    replay_opts_init(&ro);
    cr_assert_eq(ro.read_threads, 1);
    ro.read_threads = 0;
    cr_assert_eq(replay_new(&ro, s, &none, err, sizeof err), FONTE_OK, "%s",
                 err);
    ro.read_threads = 4;
    cr_assert_eq(replay_new(&ro, s, &four, err, sizeof err), FONTE_OK, "%s",
                 err);
    ro.read_threads = READERS_MAX + 1;
    cr_assert_eq(replay_new(&ro, s, &bad, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(bad);
    cr_assert_str_eq(err, "replay: read threads must be 0 to 16");
    const char *objects[] = { "obj:1", "obj:123", "obj:999" };
    for (size_t k = 0; k < 3; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = (char *) objects[k];
        r.page_size = 10000;
        codec_buf_t a, b, c;
        cr_assert_eq(replay_handle(one, s, &r, 0, &a), FONTE_OK);
        cr_assert_eq(replay_handle(none, s, &r, 0, &b), FONTE_OK);
        cr_assert_eq(replay_handle(four, s, &r, 0, &c), FONTE_OK);
        Fonte__Reply *rep = NULL;
        cr_assert_eq(codec_reply_decode(a.data, a.len, &codec_limits_default,
                                        &rep), FONTE_OK);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
        cr_assert_eq(rep->replay->n_events, 120);
        fonte__reply__free_unpacked(rep, NULL);
        codec_buf_t a2 = { .data = malloc(a.len), .len = a.len };
        cr_assert_not_null(a2.data);
        memcpy(a2.data, a.data, a.len);
        assert_same_bytes(&a, &b, objects[k]);
        assert_same_bytes(&a2, &c, objects[k]);
    }
    replay_counters_t rc;
    replay_counters(one, &rc);
    cr_assert_eq(rc.reads_shared, 3);
    cr_assert_eq(rc.reads_alone, 0);
    cr_assert_leq(rc.reads_helped, 3 * 120);
    replay_counters(none, &rc);
    cr_assert_eq(rc.reads_shared + rc.reads_alone + rc.reads_helped, 0);
    replay_destroy(&none);
    replay_destroy(&four);
    replay_off_store(dir, &s, &one);
}

/* An abandoned paged replay's cursor - a streamed one holds a snapshot,
 * a scanner thread and pages cut ahead - is dropped once idle for the
 * cursor TTL even if nothing asks again; it used to stay until the
 * cursor table was next touched. Then the cursor is refused. */
Test(replay, an_abandoned_cursor_expires_by_itself)
{
    char dir[] = "/tmp/fonte-test-sweep-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *rp = NULL;
    cr_assert_not_null(mkdtemp(dir));
    build_store(dir, 3000);
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.cursor_ttl_us = 200000;
    cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK, "%s",
                 err);
    static const char *const objects[] = { "*", "obj:7" }; /* streamed,
                                                              planned */
    for (int k = 0; k < 2; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = (char *) objects[k];
        r.page_size = 2;
        Fonte__Reply *rep = handled(rp, s, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
        uint8_t cur[64];
        size_t cur_len = rep->replay->cursor.len;
        cr_assert(cur_len > 0 && cur_len <= sizeof cur, "%s: no cursor",
                  objects[k]);
        memcpy(cur, rep->replay->cursor.data, cur_len);
        fonte__reply__free_unpacked(rep, NULL);
        replay_counters_t c;
        replay_counters(rp, &c);
        cr_assert_eq(c.cursors, 1);

        /* nothing touches the table: the sweep alone (every 100 ms) */
        for (int64_t end = fonte_mono_us() + 10000000;
             c.cursors != 0 && fonte_mono_us() < end;) {
            poll(NULL, 0, 20);
            replay_counters(rp, &c);
        }
        cr_assert_eq(c.cursors, 0, "%s: the cursor outlived its TTL",
                     objects[k]);
        r.cursor.data = cur;
        r.cursor.len = cur_len;
        rep = handled(rp, s, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__BAD_REQUEST);
        cr_assert_str_eq(rep->error,
                         "unknown or expired cursor: start the replay again");
        fonte__reply__free_unpacked(rep, NULL);
    }
    replay_off_store(dir, &s, &rp);
}

/* One object with edges to very many (a hub every order names, asked with
 * dependents): tried on the query thread it is given up, unanswered;
 * asked by a worker it is refused LIMIT. The walk of one object's edges
 * now looks at the deadline and the limit as it goes (every 256), so
 * that takes ~1000 names, not 50 000 (a review measured 95-200 ms on the
 * query thread and 46 MB for 400 000); what that saves is time and
 * memory, which this test does not assert, only the answers. */
Test(replay, a_hub_with_many_edges_is_given_up_or_limited)
{
    char dir[] = "/tmp/fonte-test-hub-XXXXXX", err[256] = "", name[32];
    store_t *s = NULL;
    replay_t *rp = NULL;
    cr_assert_not_null(mkdtemp(dir));
    store_opts_t so;
    store_opts_init(&so);
    so.dir = dir;
    so.sync = false;
    cr_assert_eq(store_open(&so, &s, err, sizeof err), FONTE_OK, "%s", err);
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    put_event(b, "tenant:1", "p", 1, NULL);
    for (uint64_t i = 1; i <= 50000; i++) {
        snprintf(name, sizeof name, "order:%llu", (unsigned long long) i);
        put_event(b, name, "p", i + 1, "tenant:1");
        if (i % 5000 == 0) {
            cr_assert_eq(store_batch_commit(b), FONTE_OK);
        }
    }
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.max_closure = 1000;
    cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK, "%s",
                 err);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "tenant:1";
    r.dependents = true;
    codec_buf_t out = { 0 };
    Fonte__Reply *rep = NULL;

    /* a deadline already past once the walk starts: given up, unanswered */
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() + 1, &out),
                 FONTE_ETIMEOUT);
    cr_assert_null(out.data);
    /* a worker's (no deadline): LIMIT, naming it */
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__LIMIT);
    cr_assert_str_eq(rep->error, "the closure of tenant:1 has more than 1000 "
                                 "objects (limit --max-closure)");
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);
    replay_off_store(dir, &s, &rp);
}

/* The query thread's try (a deadline): a planned object replay answers
 * if it can by then and gives the request up, unanswered and uncounted,
 * if it cannot; "*", cursors and republishes are given up at once. */
Test(replay, a_replay_tried_with_a_deadline_answers_or_gives_up_unanswered)
{
    char dir[] = "/tmp/fonte-test-deadline-XXXXXX";
    store_t *s = NULL;
    replay_t *rp = NULL;
    replay_on_store(dir, 3000, &s, &rp);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "obj:7";
    codec_buf_t out;
    Fonte__Reply *rep = NULL;
    replay_counters_t c;

    /* past its deadline before the first event: given up, nothing counted */
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() - 1, &out),
                 FONTE_ETIMEOUT);
    cr_assert_null(out.data);
    replay_counters(rp, &c);
    cr_assert_eq(c.requests, 0);

    /* with time enough: the same answer as a worker's */
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() + 60000000, &out),
                 FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    size_t inline_n = rep->replay->n_events;
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->replay->n_events, inline_n);
    cr_assert_gt(inline_n, 3); /* obj:7's 3 events and its dependencies' */
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);
    replay_counters(rp, &c);
    cr_assert_eq(c.requests, 2);

    /* never tried on the query thread */
    r.object = "*";
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() + 60000000, &out),
                 FONTE_ETIMEOUT);
    cr_assert_null(out.data);
    r.object = "obj:7";
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() + 60000000, &out),
                 FONTE_ETIMEOUT);
    r.mode = FONTE__REPLAY_REQUEST__MODE__RETURN;
    uint8_t cur[24] = { 1 };
    r.cursor.data = cur;
    r.cursor.len = sizeof cur;
    cr_assert_eq(replay_handle(rp, s, &r, fonte_mono_us() + 60000000, &out),
                 FONTE_ETIMEOUT);
    replay_counters(rp, &c);
    cr_assert_eq(c.requests, 2);

    replay_off_store(dir, &s, &rp);
}

Test(replay, a_stopping_listener_gives_up_planning)
{
    char dir[] = "/tmp/fonte-test-stop-XXXXXX";
    store_t *s = NULL;
    replay_t *rp = NULL;
    replay_on_store(dir, 5000, &s, &rp);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    codec_buf_t out;
    Fonte__Reply *rep = NULL;

    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(rep->replay->total, 5000);
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);

    /* a stream under way, its log being read ahead: pages cut ahead
     * before the stop are still answered, then UNAVAILABLE */
    Fonte__ReplayRequest p = FONTE__REPLAY_REQUEST__INIT;
    p.object = "*";
    p.page_size = 100;
    cr_assert_eq(replay_handle(rp, s, &p, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
    uint8_t cur[64];
    cr_assert_leq(rep->replay->cursor.len, sizeof cur);
    memcpy(cur, rep->replay->cursor.data, rep->replay->cursor.len);
    p.cursor.data = cur;
    p.cursor.len = rep->replay->cursor.len;
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);

    replay_stop(rp);
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__UNAVAILABLE);
    cr_assert_str_eq(rep->error, "the listener is shutting down");
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);

    int ok_pages = 0;
    for (;;) {
        cr_assert_eq(replay_handle(rp, s, &p, 0, &out), FONTE_OK);
        cr_assert_eq(codec_reply_decode(out.data, out.len,
                                        &codec_limits_default, &rep),
                     FONTE_OK);
        int status = rep->status;
        if (status == FONTE__REPLY__STATUS__OK) {
            ok_pages++;
            memcpy(cur, rep->replay->cursor.data, rep->replay->cursor.len);
        } else {
            cr_assert_eq(status, FONTE__REPLY__STATUS__UNAVAILABLE);
            cr_assert_str_eq(rep->error, "the listener is shutting down");
        }
        fonte__reply__free_unpacked(rep, NULL);
        codec_buf_free(&out);
        if (status != FONTE__REPLY__STATUS__OK)
            break;
        cr_assert_leq(ok_pages, 2, "at most the two pages cut ahead");
    }
    replay_off_store(dir, &s, &rp); /* joins the stream's scanner */
}

/* What a_second_whole_store_replay_asks_the_store_no_first_seq's store
 * (build_store, 3 000 events) costs in first-seq lookups to a fresh
 * replay service: event i is of obj:(i % 1000), so obj:d is first seen
 * at i = d; every third event names obj:(7i % 1000). A name is asked of
 * the store when first named (not by its own event: no edge), unless the
 * stream remembers the objects it sees (from its start) and has seen it. */
static uint64_t
expected_lookups(bool remembers)
{
    bool named[1000] = { false }, seen[1000] = { false };
    uint64_t asked = 0;
    for (size_t i = 0; i < 3000; i++) {
        seen[i % 1000] = remembers;
        if (i % 3 != 0)
            continue;
        size_t d = (i * 7) % 1000;
        if (!named[d] && d != i % 1000 && !seen[d])
            asked++;
        named[d] = true;
    }
    return asked;
}

/* The first seq of every object named as a dependency is asked of the
 * store once, by the first whole-store replay; the second takes all of
 * them from the cache (direct-mapped, some evicted each other and were
 * asked again on every replay). A stream that remembers the objects it
 * sees asks only for those named before any event of their own went by:
 * with seen_after 0 every stream remembers from its start; with 50 (or
 * the default 4096) the first does not, and needs 998 first seqs. */
Test(replay, a_second_whole_store_replay_asks_the_store_no_first_seq)
{
    char dir[] = "/tmp/fonte-test-firsts-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *rp[3] = { NULL, NULL, NULL };
    replay_on_store(dir, 3000, &s, &rp[0]); /* 1 000 objects named */
    replay_opts_t ro;
    replay_opts_init(&ro);
    cr_assert_eq(ro.seen_after, 4096, "the default");
    const size_t seen_after[3] = { 4096, 0, 50 };
    for (int k = 1; k < 3; k++) {
        ro.seen_after = seen_after[k];
        cr_assert_eq(replay_new(&ro, s, &rp[k], err, sizeof err), FONTE_OK,
                     "%s", err);
    }
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 5000;
    uint64_t asked[3][2];
    for (int k = 0; k < 3; k++) {
        for (int again = 0; again < 2; again++) {
            Fonte__Reply *rep = handled(rp[k], s, &r);
            cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK);
            cr_assert_eq(rep->replay->n_events, 3000);
            fonte__reply__free_unpacked(rep, NULL);
            replay_counters_t c;
            replay_counters(rp[k], &c);
            asked[k][again] = c.first_lookups;
        }
    }
    /* 1 000 names, but obj:0 and obj:500 are named only by their own
     * events (i = 0, 1500: no edge, nothing to ask) */
    cr_assert_eq(expected_lookups(false), 998);
    cr_assert_lt(expected_lookups(true), 998);
    for (int k = 0; k < 3; k++) {
        uint64_t want = expected_lookups(seen_after[k] == 0);
        cr_assert_eq(asked[k][0], want, "seen_after %zu: %llu lookups, not "
                     "%llu", seen_after[k], (unsigned long long) asked[k][0],
                     (unsigned long long) want);
        cr_assert_eq(asked[k][1], want, "the second replay asked %llu again",
                     (unsigned long long) (asked[k][1] - asked[k][0]));
    }
    replay_destroy(&rp[2]);
    replay_destroy(&rp[1]);
    replay_off_store(dir, &s, &rp[0]);
}

/* An object with events before a stream began to remember was then
 * remembered at a later one (a review, 2026-11-29): a at 1; x at 2 names
 * y (the stream's first first-seq, seen_after 1); a at 3 names c; c at
 * 4 names a. c needs a's first event (1, out), a at 3 needs c's (4): the
 * order is 1, 2, 4, 3, no cycle. Remembering from mid-window put a's
 * first at 3: c waited for it, and a cycle {a, c} was reported. The
 * second replay of the same service remembers from its start: the same.
 * The planned path (a's replay) agrees. */
Test(replay, a_stream_remembers_objects_from_its_start_or_not_at_all)
{
    char dir[] = "/tmp/fonte-test-late-XXXXXX";
    static const char *const objs[] = { "a", "x", "a", "c" };
    static const char *const deps[] = { NULL, "y", "c", "a" };
    store_t *s = small_store(dir, objs, deps, 4);
    replay_t *rp = seen_replay(s, 1);
    /* "*" twice, then a's closure {a, c} (planned): 1, 4, 3 */
    static const uint64_t want[3][4] = { { 1, 2, 4, 3 }, { 1, 2, 4, 3 },
                                         { 1, 4, 3 } };
    for (int k = 0; k < 3; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = k < 2 ? "*" : "a";
        Fonte__Reply *rep = handled(rp, s, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
        size_t n = k < 2 ? 4 : 3;
        cr_assert_eq(rep->replay->n_events, n, "replay %d", k);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(rep->replay->events[i]->seq, want[k][i],
                         "replay %d, #%zu: %llu", k, i,
                         (unsigned long long) rep->replay->events[i]->seq);
        cr_assert_eq(rep->replay->n_cycles, 0, "replay %d: cycle %s", k,
                     rep->replay->n_cycles ? rep->replay->cycles[0] : "");
        fonte__reply__free_unpacked(rep, NULL);
    }
    replay_off_store(dir, &s, &rp);
}

/* Dependency cycles that interlock (a chain of objects each naming both
 * neighbours: breaking them costs O(n^2), a review measured 5 s for
 * 5 000) are refused LIMIT with what to do instead, whole store or one
 * object's closure; in sequence order they replay. */
Test(replay, interlocking_cycles_are_refused_limit)
{
    char dir[] = "/tmp/fonte-test-interlock-XXXXXX", err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    store_t *s = unsynced_store(dir);
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    const size_t n = 5000;
    for (size_t i = 0; i < n; i++) {
        char obj[32], left[32], right[32];
        snprintf(obj, sizeof obj, "node:%zu", i);
        snprintf(left, sizeof left, "node:%zu", i > 0 ? i - 1 : n - 1);
        snprintf(right, sizeof right, "node:%zu", (i + 1) % n);
        Fonte__Event *ev = tu_event("node.linked", obj, "p", 1, i + 1);
        tu_event_add_dep(ev, left);
        tu_event_add_dep(ev, right);
        codec_buf_t t, body;
        codec_view_t v;
        cr_assert_eq(codec_event_encode(ev, &codec_limits_default, &t, &body),
                     FONTE_OK);
        cr_assert_eq(codec_event_scan(body.data, body.len,
                                      &codec_limits_default, &v), FONTE_OK);
        cr_assert_eq(store_batch_put(b, &v, body.data, body.len, NULL),
                     FONTE_OK);
        codec_buf_free(&t);
        codec_buf_free(&body);
        codec_event_free(&ev);
    }
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    replay_opts_t ro;
    replay_opts_init(&ro);
    replay_t *rp = NULL;
    cr_assert_eq(replay_new(&ro, s, &rp, err, sizeof err), FONTE_OK, "%s",
                 err);
    static const char *const objects[] = { "*", "node:0" };
    for (int k = 0; k < 2; k++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = (char *) objects[k];
        r.page_size = 10000;
        Fonte__Reply *rep = handled(rp, s, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__LIMIT, "%s: %s",
                     objects[k], rep->error);
        char want[256];
        snprintf(want, sizeof want,
                 "the dependency cycles of %s interlock too much to be "
                 "broken in causal order: replay it with order=sequence",
                 objects[k]);
        cr_assert_str_eq(rep->error, want);
        fonte__reply__free_unpacked(rep, NULL);
        r.order = FONTE__REPLAY_REQUEST__ORDER__SEQUENCE;
        rep = handled(rp, s, &r);
        cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
        cr_assert_eq(rep->replay->n_events, n);
        fonte__reply__free_unpacked(rep, NULL);
    }
    replay_off_store(dir, &s, &rp);
}

/* How many threads of this process are named name. */
static int
threads_named(const char *name)
{
    int n = tu_threads_named(name, NULL, NULL);
    cr_assert_geq(n, 0, "/proc/self/task cannot be read");
    return n;
}

/* Waits (5 s at most) for n threads named name; returns how many there
 * were last (a thread names itself once it runs). */
static int
wait_threads_named(const char *name, int n)
{
    int got = threads_named(name);
    for (int i = 0; i < 500 && got != n; i++) {
        nanosleep(&(struct timespec) { 0, 10 * 1000000 }, NULL);
        got = threads_named(name);
    }
    return got;
}

/* A replay walked page by page: the events' bytes back to back, how
 * many, and the cursor of the next page. */
typedef struct walk {
    codec_writer_t w;
    size_t n;
    uint8_t cur[64];
    size_t cur_len;
} walk_t;

/* Asks the next page of the replay req asks (its cursor unused: the
 * walk's), appends its events; true while there are more. */
static bool
walk_page(replay_t *rp, store_t *s, const Fonte__ReplayRequest *req,
          walk_t *wk)
{
    Fonte__ReplayRequest r = *req;
    r.cursor.data = wk->cur;
    r.cursor.len = wk->cur_len;
    codec_buf_t out;
    codec_reply_view_t v;
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_scan(out.data, out.len, &codec_limits_default,
                                  &v), FONTE_OK);
    cr_assert_eq(v.status, FONTE__REPLY__STATUS__OK, "%.*s",
                 (int) v.error.len, v.error.ptr);
    size_t pos = 0;
    codec_slice_t e;
    while (codec_reply_next_event(&v, &pos, &e)) {
        codec_writer_raw(&wk->w, e.ptr, e.len);
        wk->n++;
    }
    cr_assert_leq(v.cursor.len, sizeof wk->cur);
    wk->cur_len = v.cursor.len;
    memcpy(wk->cur, v.cursor.ptr, wk->cur_len);
    codec_buf_free(&out);
    cr_assert(!wk->w.failed);
    return wk->cur_len > 0;
}

/* The walk's bytes into *all (free it); returns how many events. */
static size_t
walk_end(walk_t *wk, codec_buf_t *all)
{
    *all = (codec_buf_t) { wk->w.data, wk->w.len, NULL };
    return wk->n;
}

/* Every event of the replay asked by req (its cursor unused), page by
 * page, their bytes back to back in *all (free it); returns how many.
 * With scanning, checks after the first page that one log scanner
 * thread reads ahead. */
static size_t
replay_all(replay_t *rp, store_t *s, const Fonte__ReplayRequest *req,
           codec_buf_t *all, bool scanning)
{
    walk_t wk = { 0 };
    bool more;
    do {
        more = walk_page(rp, s, req, &wk);
        if (scanning && wk.n <= req->page_size)
            cr_assert_eq(wait_threads_named("fonte-logscan", 1), 1);
    } while (more);
    return walk_end(&wk, all);
}

/* replay_all of "*" in pages of page_size, in order. */
static size_t
stream_all(replay_t *rp, store_t *s, uint32_t page_size, codec_buf_t *all,
           bool scanning, Fonte__ReplayRequest__Order order)
{
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = page_size;
    r.order = order;
    return replay_all(rp, s, &r, all, scanning);
}

/* The log of a whole-store replay is read ahead on a thread of its own
 * (logscan.h) when a slot is free, else in the thread cutting pages: the
 * events, their order and their bytes are the same either way. */
Test(replay, a_whole_store_stream_is_the_same_with_or_without_a_log_scanner)
{
    char dir[] = "/tmp/fonte-test-logscan-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *threaded = NULL, *inline_ = NULL;
    replay_on_store(dir, 20000, &s, &threaded); /* ~7 batches of log */
    replay_opts_t ro;
    replay_opts_init(&ro);
    cr_assert_eq(ro.scan_threads, 2, "the default");
    ro.scan_threads = 0;
    cr_assert_eq(replay_new(&ro, s, &inline_, err, sizeof err), FONTE_OK,
                 "%s", err);
    /* a first page: the rest of the log is being read ahead (the queue
     * full, the scanner waiting) by a thread; none without one */
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 100;
    codec_buf_t a, b;
    cr_assert_eq(replay_handle(inline_, s, &r, 0, &a), FONTE_OK);
    cr_assert_eq(threads_named("fonte-logscan"), 0);
    cr_assert_eq(replay_handle(threaded, s, &r, 0, &b), FONTE_OK);
    cr_assert_eq(wait_threads_named("fonte-logscan", 1), 1);
    codec_buf_free(&a);
    codec_buf_free(&b);
    cr_assert_eq(stream_all(threaded, s, 3000, &a, false,
                            FONTE__REPLAY_REQUEST__ORDER__CAUSAL), 20000);
    cr_assert_eq(stream_all(inline_, s, 3000, &b, false,
                            FONTE__REPLAY_REQUEST__ORDER__CAUSAL), 20000);
    assert_same_bytes(&a, &b, "*");
    replay_destroy(&inline_);
    replay_off_store(dir, &s, &threaded);
}

/* A stream whose last page ends at its last event (20 000 events, pages
 * of 2 000, in sequence order: nothing is held, so that page ends
 * without the order being finished) lets go of its snapshot and its
 * scanner's slot with that page, not when its cursor expires: three such
 * replays one after the other each get a scanner thread, with two
 * slots. */
Test(replay, a_whole_store_stream_ends_with_its_last_page)
{
    char dir[] = "/tmp/fonte-test-logend-XXXXXX";
    store_t *s = NULL;
    replay_t *rp = NULL;
    replay_on_store(dir, 20000, &s, &rp);
    for (int k = 0; k < 3; k++) {
        codec_buf_t all;
        cr_assert_eq(stream_all(rp, s, 2000, &all, true,
                                FONTE__REPLAY_REQUEST__ORDER__SEQUENCE),
                     20000, "replay %d", k);
        codec_buf_free(&all);
        cr_assert_eq(wait_threads_named("fonte-logscan", 0), 0,
                     "replay %d: its scanner was joined", k);
    }
    replay_off_store(dir, &s, &rp);
}

/* A copy of b's bytes (free it). */
static codec_buf_t
buf_copy(const codec_buf_t *b)
{
    codec_buf_t c = { malloc(b->len ? b->len : 1), b->len, NULL };
    cr_assert_not_null(c.data);
    memcpy(c.data, b->data, b->len);
    return c;
}

/* Walks a and b to their ends, a page of each in turn. */
static void
walk_both(replay_t *rp, store_t *s, const Fonte__ReplayRequest *r,
          walk_t *a, walk_t *b)
{
    bool ma = true, mb = true;
    while (ma || mb) {
        if (ma)
            ma = walk_page(rp, s, r, a);
        if (mb)
            mb = walk_page(rp, s, r, b);
    }
}

/* Scanner threads go to streams being read: a stream whose cursor has
 * not been used for scan_idle_us gives its thread up to a stream that
 * finds no slot free, and reads on without one, taking a thread again
 * when one is free. With the default (1 s) a stream asked a moment ago
 * keeps it. With one slot, scan_idle_us 0 (a stream not being cut is
 * idle) and no pages cut ahead (each cut when asked, so nothing runs
 * between requests), two streams read a page each in turn take the
 * thread from each other; either way their events are those of a
 * replay whose scanner was never parked. */
Test(replay, an_idle_stream_gives_its_scanner_thread_to_one_that_needs_it)
{
    char dir[] = "/tmp/fonte-test-park-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *plain = NULL, *keep = NULL, *give = NULL;
    replay_on_store(dir, 20000, &s, &plain);
    codec_buf_t want, got, copy;
    cr_assert_eq(stream_all(plain, s, 1500, &want, false,
                            FONTE__REPLAY_REQUEST__ORDER__CAUSAL), 20000);
    replay_opts_t ro;
    replay_opts_init(&ro);
    cr_assert_eq(ro.scan_idle_us, 1000000, "the default");
    cr_assert_eq(ro.ahead_pages, 2, "the default");
    ro.scan_threads = 1;
    cr_assert_eq(replay_new(&ro, s, &keep, err, sizeof err), FONTE_OK,
                 "%s", err);
    ro.scan_idle_us = 0;
    ro.ahead_pages = 0;
    cr_assert_eq(replay_new(&ro, s, &give, err, sizeof err), FONTE_OK,
                 "%s", err);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    r.page_size = 1500;
    replay_counters_t c;

    walk_t a = { 0 }, b = { 0 };
    cr_assert(walk_page(keep, s, &r, &a));
    cr_assert_eq(wait_threads_named("fonte-logscan", 1), 1);
    cr_assert(walk_page(keep, s, &r, &b));
    cr_assert_eq(threads_named("fonte-logscan"), 1, "b reads without one");
    walk_both(keep, s, &r, &a, &b);
    replay_counters(keep, &c);
    cr_assert_eq(c.scans_parked, 0);
    cr_assert_eq(walk_end(&a, &got), 20000);
    copy = buf_copy(&want);
    assert_same_bytes(&copy, &got, "keep, a");
    cr_assert_eq(walk_end(&b, &got), 20000);
    copy = buf_copy(&want);
    assert_same_bytes(&copy, &got, "keep, b");
    cr_assert_eq(wait_threads_named("fonte-logscan", 0), 0);
    replay_destroy(&keep);

    a = (walk_t) { 0 };
    b = (walk_t) { 0 };
    cr_assert(walk_page(give, s, &r, &a));
    cr_assert(walk_page(give, s, &r, &b));
    replay_counters(give, &c);
    cr_assert_eq(c.scans_parked, 1, "a's thread went to b");
    cr_assert_eq(wait_threads_named("fonte-logscan", 1), 1);
    cr_assert(walk_page(give, s, &r, &a));
    replay_counters(give, &c);
    cr_assert_eq(c.scans_parked, 2, "and back to a");
    walk_both(give, s, &r, &a, &b);
    cr_assert_eq(walk_end(&a, &got), 20000);
    copy = buf_copy(&want);
    assert_same_bytes(&copy, &got, "give, a");
    cr_assert_eq(walk_end(&b, &got), 20000);
    assert_same_bytes(&want, &got, "give, b");
    /* both ended: the slot is free for the next stream */
    cr_assert_eq(wait_threads_named("fonte-logscan", 0), 0);
    cr_assert_eq(replay_handle(give, s, &r, 0, &got), FONTE_OK);
    codec_buf_free(&got);
    cr_assert_eq(wait_threads_named("fonte-logscan", 1), 1);
    replay_destroy(&give);
    replay_off_store(dir, &s, &plain);
}

/* A stream that remembers the objects it sees (seen_after 0: from its
 * start) takes their first seqs from the log instead of the store; the
 * order is the same as planned, for the whole store and for a window
 * that starts after some objects' first events (their first seqs in it
 * are later ones). */
Test(replay, a_stream_remembering_what_it_sees_keeps_the_planned_order)
{
    char dir[] = "/tmp/fonte-test-seen-XXXXXX", err[256] = "";
    store_t *s = NULL;
    replay_t *rp = NULL, *seeing = NULL;
    replay_on_store(dir, 6000, &s, &rp);
    replay_opts_t ro;
    replay_opts_init(&ro);
    ro.seen_after = 0;
    cr_assert_eq(replay_new(&ro, s, &seeing, err, sizeof err), FONTE_OK,
                 "%s", err);
    char *types[] = { "thing.changed" }; /* every event: but planned */
    const uint64_t after[] = { 0, 1500, 5990 };
    for (size_t w = 0; w < 3; w++) {
        Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
        r.object = "*";
        r.page_size = 1700;
        r.after_seq = after[w];
        codec_buf_t planned, seen, plain;
        r.types = types;
        r.n_types = 1;
        size_t n = replay_all(rp, s, &r, &planned, false);
        cr_assert_eq(n, 6000 - after[w]);
        r.types = NULL;
        r.n_types = 0;
        cr_assert_eq(replay_all(seeing, s, &r, &seen, false), n);
        cr_assert_eq(replay_all(rp, s, &r, &plain, false), n);
        codec_buf_t copy = buf_copy(&planned);
        assert_same_bytes(&planned, &seen, "planned and seen");
        assert_same_bytes(&copy, &plain, "planned and not seen");
    }
    replay_counters_t a, b;
    replay_counters(rp, &a);
    replay_counters(seeing, &b);
    cr_assert_lt(b.first_lookups, a.first_lookups,
                 "seeing asked the store %llu times, the other %llu",
                 (unsigned long long) b.first_lookups,
                 (unsigned long long) a.first_lookups);
    replay_destroy(&seeing);
    replay_off_store(dir, &s, &rp);
}

/* What a stream remembers of an object is its FIRST seq: A at 1, A at 2
 * waiting for Z (stored at 5), B at 3 depending on A, C at 4, Z at 5.
 * B waits for A's first event (1, out), not for A's latest before it
 * (2, held): the order is 1, 3, 4, 5, 2. */
Test(replay, a_stream_remembers_an_objects_first_seq_not_its_last)
{
    char dir[] = "/tmp/fonte-test-seenfirst-XXXXXX";
    static const char *const objs[] = { "a", "a", "b", "c", "z" };
    static const char *const deps[] = { NULL, "z", "a", NULL, NULL };
    store_t *s = small_store(dir, objs, deps, 5);
    replay_t *rp = seen_replay(s, 0);
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "*";
    codec_buf_t out;
    Fonte__Reply *rep = NULL;
    cr_assert_eq(replay_handle(rp, s, &r, 0, &out), FONTE_OK);
    cr_assert_eq(codec_reply_decode(out.data, out.len, &codec_limits_default,
                                    &rep), FONTE_OK);
    cr_assert_eq(rep->status, FONTE__REPLY__STATUS__OK, "%s", rep->error);
    static const uint64_t want[] = { 1, 3, 4, 5, 2 };
    cr_assert_eq(rep->replay->n_events, 5);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(rep->replay->events[i]->seq, want[i], "item %zu: %llu",
                     i, (unsigned long long) rep->replay->events[i]->seq);
    fonte__reply__free_unpacked(rep, NULL);
    codec_buf_free(&out);
    replay_off_store(dir, &s, &rp);
}
