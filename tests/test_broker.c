/*
 * test_broker.c - the broker actor (broker/broker.c), its topic table
 * (broker/topics.c) and fonte-broker, over real TCP on 127.0.0.1 with
 * ephemeral ports.
 *
 * Publishers here are XPUB sockets, not PUB: an XPUB sends like a PUB but
 * also hands over the subscriptions it receives, so a test can wait until
 * a subscription has travelled SUB -> broker -> publisher and know that
 * whatever it sends next will be delivered (no slow-joiner guessing, no
 * probe messages that would disturb exact counts). Every wait has a
 * timeout; counters are read with broker_counters() until they settle
 * (the loop refreshes them after each wake-up) and then compared exactly.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "broker.h"
#include "codec.h"
#include "log.h"
#include "testutil.h"
#include "topics.h"

extern char **environ;

#define WAIT_MS 5000
#define ANY "tcp://127.0.0.1:*"

static void *ctx;
static void *socks[16]; /* closed by teardown, even after a failure */
static size_t n_socks;

/* (Un)subscriptions a publisher received while a test waited for
 * another one: several subscribers' messages arrive in any order. */
static struct {
    void *pub;
    char msg[64];
    size_t len;
    bool used;
} seen[32];
static size_t n_seen;

static void
setup(void)
{
    ctx = zmq_ctx_new();
    cr_assert_not_null(ctx);
    n_socks = 0;
    n_seen = 0;
    flog_set_level(FLOG_ERROR); /* the drops are expected here */
}

/* A fonte-broker child spawned and not reaped yet (0: none): a test
 * that fails while one runs must not leave it running. */
static pid_t live_child;

static void
reap_child(void)
{
    if (live_child > 0) {
        kill(live_child, SIGKILL);
        waitpid(live_child, NULL, 0);
        live_child = 0;
    }
}

static void
teardown(void)
{
    for (size_t i = 0; i < n_socks; i++)
        zmq_close(socks[i]);
    zmq_ctx_term(ctx);
    reap_child();
}

static void
nap_ms(long ms)
{
    nanosleep(&(struct timespec) { ms / 1000, (ms % 1000) * 1000000 }, NULL);
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static broker_t *
start_broker(bool full, int64_t stats_us, int hwm, size_t max_msg)
{
    broker_opts_t o;
    broker_t *b = NULL;
    char err[256];

    broker_opts_init(&o);
    o.ingress = o.egress = ANY;
    o.validate_full = full;
    o.stats_interval_us = stats_us;
    if (hwm > 0)
        o.hwm = hwm;
    if (max_msg > 0)
        o.limits.max_msg = max_msg;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_not_null(b);
    return b;
}

static void *
socket_new(int type, int hwm)
{
    int zero = 0;
    void *s = zmq_socket(ctx, type);
    cr_assert_not_null(s);
    cr_assert_lt(n_socks, sizeof socks / sizeof *socks);
    socks[n_socks++] = s;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (hwm > 0) {
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    }
    return s;
}

/* An XPUB publisher connected to the broker's ingress. */
static void *
pub_new(broker_t *b)
{
    void *s = socket_new(ZMQ_XPUB, 0);
    cr_assert_eq(zmq_connect(s, broker_ingress_endpoint(b)), 0);
    return s;
}

static void *
sub_new(broker_t *b, const char *prefix, int hwm)
{
    void *s = socket_new(ZMQ_SUB, hwm);
    cr_assert_eq(zmq_connect(s, broker_egress_endpoint(b)), 0);
    if (prefix != NULL)
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
    return s;
}

/* Receives one single-frame message within WAIT_MS into buf; its size,
 * or -1 on timeout. */
static int
recv_one(void *s, void *buf, size_t cap)
{
    zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, WAIT_MS) != 1)
        return -1;
    return zmq_recv(s, buf, cap, 0);
}

static bool
take_seen(void *pub, const char *want, size_t wlen)
{
    for (size_t i = 0; i < n_seen; i++)
        if (!seen[i].used && seen[i].pub == pub && seen[i].len == wlen &&
            memcmp(seen[i].msg, want, wlen) == 0)
            return seen[i].used = true;
    return false;
}

/* Waits until the publisher has received the (un)subscription
 * `kind` + prefix (kind 1 = subscribe, 0 = unsubscribe). */
static void
wait_subscription(void *pub, int kind, const char *prefix)
{
    char want[64], got[64];
    size_t wlen = strlen(prefix) + 1;

    cr_assert_leq(wlen, sizeof want);
    want[0] = (char) kind;
    memcpy(want + 1, prefix, wlen - 1);
    while (!take_seen(pub, want, wlen)) {
        int n = recv_one(pub, got, sizeof got);
        cr_assert_geq(n, 0, "no %ssubscription to '%s' reached the publisher",
                      kind ? "" : "un", prefix);
        cr_assert_lt(n_seen, sizeof seen / sizeof *seen);
        cr_assert_leq((size_t) n, sizeof got);
        seen[n_seen].pub = pub;
        memcpy(seen[n_seen].msg, got, (size_t) n);
        seen[n_seen].len = (size_t) n;
        seen[n_seen++].used = false;
    }
}

typedef struct frame {
    const void *data;
    size_t size;
} frame_t;

static void
send_frames(void *s, const frame_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(zmq_send(s, f[i].data, f[i].size,
                              i + 1 < n ? ZMQ_SNDMORE : 0),
                     (int) f[i].size);
}

static void
send_two(void *s, const char *topic, const void *body, size_t len)
{
    frame_t f[2] = { { topic, strlen(topic) }, { body, len } };
    send_frames(s, f, 2);
}

/* Encodes and sends a valid event; returns its bytes on the wire. */
static size_t
send_event(void *pub, const char *type, const char *object, uint64_t seq)
{
    Fonte__Event *ev = tu_event(type, object, "shop", 0xabc, seq);
    codec_buf_t topic, body;
    cr_assert_eq(codec_event_encode(ev, &codec_limits_default, &topic, &body),
                 FONTE_OK);
    frame_t f[2] = { { topic.data, topic.len }, { body.data, body.len } };
    send_frames(pub, f, 2);
    size_t bytes = topic.len + body.len;
    codec_buf_free(&topic);
    codec_buf_free(&body);
    codec_event_free(&ev);
    return bytes;
}

/* A message as a subscriber saw it. */
typedef struct got {
    char topic[256];
    size_t topic_len;
    uint8_t body[8192];
    size_t body_len;
    size_t frames;
} got_t;

static bool
recv_msg(void *sub, int timeout_ms, got_t *g)
{
    zmq_pollitem_t it = { sub, 0, ZMQ_POLLIN, 0 };
    int more = 1;
    size_t len = sizeof more;

    memset(g, 0, sizeof *g);
    if (zmq_poll(&it, 1, timeout_ms) != 1)
        return false;
    int n = zmq_recv(sub, g->topic, sizeof g->topic - 1, 0);
    cr_assert_geq(n, 0);
    g->topic_len = (size_t) n;
    g->frames = 1;
    zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &len);
    while (more) {
        n = zmq_recv(sub, g->body, sizeof g->body, 0);
        cr_assert_geq(n, 0);
        if (g->frames++ == 1)
            g->body_len = (size_t) n;
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &len);
    }
    return true;
}

/* Receives an event and checks it is (type, seq) and still valid. */
static void
expect_event(void *sub, const char *type, uint64_t seq)
{
    got_t g;
    codec_frame_t f[2];
    codec_class_t cls;
    codec_view_t v;

    cr_assert(recv_msg(sub, WAIT_MS, &g), "no %s #%llu", type,
              (unsigned long long) seq);
    cr_assert_eq(g.frames, 2);
    f[0] = (codec_frame_t) { g.topic, g.topic_len };
    f[1] = (codec_frame_t) { g.body, g.body_len };
    cr_assert_eq(codec_check(f, 2, &codec_limits_default, &cls, &v), FONTE_OK);
    g.topic[g.topic_len] = '\0';
    cr_assert_str_eq(g.topic, type);
    cr_assert_eq(v.producer_seq, seq, "got %s #%llu, wanted #%llu", g.topic,
                 (unsigned long long) v.producer_seq,
                 (unsigned long long) seq);
}

/* Reads counters until cond holds in a copy the loop made after this
 * started (so it counts all the loop had done by then: the caller has
 * seen the effects it asserts from outside) or WAIT_MS passes; the
 * caller then asserts exact values. */
#define WAIT_COUNTERS(b, c, cond)                                   \
    do {                                                            \
        int64_t until_ = fonte_mono_us() + WAIT_MS * 1000;          \
        broker_counters((b), &(c));                                 \
        uint64_t copies_ = (c).copies;                              \
        for (;;) {                                                  \
            broker_counters((b), &(c));                             \
            if (((c).copies != copies_ && (cond)) ||                \
                fonte_mono_us() > until_)                           \
                break;                                              \
            nap_ms(1);                                              \
        }                                                           \
    } while (0)

/* ------------------------------------------------------------------ */
/* routing and subscriptions                                           */

Test(broker, routes_by_prefix_to_several_subscribers, .init = setup,
     .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *pub = pub_new(b);
    void *orders = sub_new(b, "order.", 0);
    void *users = sub_new(b, "user.", 0);
    void *all = sub_new(b, "", 0);
    wait_subscription(pub, 1, "order.");
    wait_subscription(pub, 1, "user.");
    wait_subscription(pub, 1, "");

    send_event(pub, "order.placed", "order:1", 1);
    send_event(pub, "user.created", "user:7", 2);
    send_event(pub, "order.shipped", "order:1", 3);
    send_event(pub, "invoice.sent", "invoice:9", 4);

    expect_event(orders, "order.placed", 1);
    expect_event(orders, "order.shipped", 3);
    expect_event(users, "user.created", 2);
    expect_event(all, "order.placed", 1);
    expect_event(all, "user.created", 2);
    expect_event(all, "order.shipped", 3);
    expect_event(all, "invoice.sent", 4);

    /* Nothing else was routed to the prefixed subscribers: a last event
     * for each arrives next, right after what they already had. */
    send_event(pub, "order.closed", "order:1", 5);
    send_event(pub, "user.deleted", "user:7", 6);
    expect_event(orders, "order.closed", 5);
    expect_event(users, "user.deleted", 6);

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.messages_out == 6);
    cr_assert_eq(c.messages_in, 6);
    cr_assert_eq(c.messages_out, 6);
    cr_assert_eq(c.invalid, 0);
    broker_destroy(&b);
    cr_assert_null(b);
}

Test(broker, subscriptions_and_unsubscriptions_reach_upstream, .init = setup,
     .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *pub = pub_new(b);
    void *sub = sub_new(b, "order.", 0);

    wait_subscription(pub, 1, "order.");
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "user.", 5);
    wait_subscription(pub, 1, "user.");
    zmq_setsockopt(sub, ZMQ_UNSUBSCRIBE, "order.", 6);
    wait_subscription(pub, 0, "order.");

    /* The publisher still reaches the remaining subscription. */
    send_event(pub, "user.created", "user:7", 1);
    expect_event(sub, "user.created", 1);

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.messages_out == 1);
    cr_assert_eq(c.subscribes, 2);
    cr_assert_eq(c.unsubscribes, 1);
    cr_assert_eq(c.subscriptions, 1);
    broker_destroy(&b);
}

/* What a subscriber sends upstream that is not a one-frame
 * (un)subscription - an XSUB may send anything - is dropped whole and
 * counted, not passed to every publisher: the publisher sees the
 * subscriptions around it, in order, and nothing else. */
Test(broker, a_subscribers_other_messages_are_dropped_and_counted,
     .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *pub = pub_new(b);
    void *xsub = socket_new(ZMQ_XSUB, 0);
    cr_assert_eq(zmq_connect(xsub, broker_egress_endpoint(b)), 0);

    /* until the connection is up: the first subscription gets through */
    cr_assert_eq(zmq_send(xsub, "\x01order.", 7, 0), 7);
    wait_subscription(pub, 1, "order.");
    cr_assert_eq(zmq_send(xsub, "\x05junk", 5, 0), 5);
    cr_assert_eq(zmq_send(xsub, "\x07two", 4, ZMQ_SNDMORE), 4);
    cr_assert_eq(zmq_send(xsub, "parts", 5, 0), 5);
    cr_assert_eq(zmq_send(xsub, "", 0, 0), 0);
    /* a prefix longer than any topic (80 + 128 = 208 bytes) matches
     * nothing, and every publisher would keep it: dropped; 208 passes */
    char longest[1 + 209];
    longest[0] = 1;
    memset(longest + 1, 'a', 209);
    cr_assert_eq(zmq_send(xsub, longest, 1 + 209, 0), 1 + 209);
    cr_assert_eq(zmq_send(xsub, "\x01user.", 6, 0), 6);
    longest[1] = 'b';
    cr_assert_eq(zmq_send(xsub, longest, 1 + 208, 0), 1 + 208);
    /* next upstream is user. (wait_subscription would pass over others:
     * read the very next message) */
    char got[256];
    int n = recv_one(pub, got, sizeof got);
    cr_assert_eq(n, 6, "%d bytes upstream", n);
    cr_assert_eq(memcmp(got, "\x01user.", 6), 0, "junk reached upstream");
    n = recv_one(pub, got, sizeof got);
    cr_assert_eq(n, 1 + 208, "%d bytes upstream", n);
    cr_assert_eq(memcmp(got, longest, 1 + 208), 0);

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.upstream_dropped == 4);
    cr_assert_eq(c.upstream_dropped, 4);
    cr_assert_eq(c.subscribes, 3);
    cr_assert_eq(c.subscriptions, 3);
    broker_destroy(&b);
}

Test(broker, a_publisher_that_connects_late_gets_the_subscriptions,
     .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *early = pub_new(b);
    void *sub = sub_new(b, "order.", 0);
    wait_subscription(early, 1, "order.");

    void *late = pub_new(b);
    wait_subscription(late, 1, "order.");
    send_event(late, "order.placed", "order:1", 1);
    expect_event(sub, "order.placed", 1);
    broker_destroy(&b);
}

/* ------------------------------------------------------------------ */
/* validation                                                          */

typedef struct bad {
    const char *what;
    frame_t f[3];
    size_t n;
    fonte_err want;
} bad_t;

Test(broker, each_invalid_class_is_dropped_and_counted_valid_traffic_flows,
     .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *pub = pub_new(b);
    void *sub = sub_new(b, "", 0);
    wait_subscription(pub, 1, "");

    /* Bodies: a valid order.placed, and one broken struct per rule. */
    Fonte__Event *ev = tu_event("order.placed", "order:1", "shop", 0xabc, 1);
    codec_buf_t good = tu_pack(&ev->base);
    tu_set(&ev->type, "Order.Placed");
    codec_buf_t bad_type = tu_pack(&ev->base);
    tu_set(&ev->type, "order.placed");
    tu_set(&ev->object, "");
    codec_buf_t bad_object = tu_pack(&ev->base);
    tu_set(&ev->object, "order:1");
    for (int i = 0; i < 65; i++)
        tu_event_add_dep(ev, "user:7");
    codec_buf_t many_deps = tu_pack(&ev->base);
    codec_event_free(&ev);
    Fonte__Ack ack = FONTE__ACK__INIT;
    ack.producer = (char *) "shop";
    ack.session = 0;
    codec_buf_t bad_ack = tu_pack(&ack.base);
    Fonte__Stats st = FONTE__STATS__INIT;
    st.source = (char *) "broker";
    codec_buf_t spoof = tu_pack(&st.base);
    static const uint8_t garbage[] = { 0x0a, 0xff, 0x01 };

#define T_(s) { s, sizeof s - 1 }
#define B_(buf) { (buf).data, (buf).len }
    const bad_t cases[] = {
        { "one frame", { T_("order.placed") }, 1, FONTE_EFRAMES },
        { "three frames",
          { T_("order.placed"), B_(good), T_("extra") }, 3, FONTE_EFRAMES },
        { "topic is not the type",
          { T_("order.shipped"), B_(good) }, 2, FONTE_ETOPIC },
        { "empty topic", { T_(""), B_(good) }, 2, FONTE_ETOPIC },
        { "bad type", { T_("Order.Placed"), B_(bad_type) }, 2, FONTE_ETYPE },
        { "no object", { T_("order.placed"), B_(bad_object) }, 2,
          FONTE_EOBJECT },
        { "65 dependencies", { T_("order.placed"), B_(many_deps) }, 2,
          FONTE_EDEPS },
        { "unknown $ class", { T_("$foo.bar"), B_(good) }, 2,
          FONTE_ERESERVED },
        { "someone else's $sys.broker", { T_("$sys.broker"), B_(spoof) }, 2,
          FONTE_ERESERVED },
        { "malformed protobuf",
          { T_("order.placed"), { garbage, sizeof garbage } }, 2,
          FONTE_EDECODE },
        { "ack with session 0", { T_("$ack.shop"), B_(bad_ack) }, 2,
          FONTE_ESESSION },
    };
#undef T_
#undef B_
    const size_t n_cases = sizeof cases / sizeof *cases;
    uint64_t want[FONTE_ERR_COUNT_] = { 0 };

    /* valid #1, then each bad message followed by valid #i+2 */
    send_two(pub, "order.placed", good.data, good.len);
    for (size_t i = 0; i < n_cases; i++) {
        send_frames(pub, cases[i].f, cases[i].n);
        want[cases[i].want]++;
        send_event(pub, "order.placed", "order:1", i + 2);
    }
    /* Exactly the valid ones arrive, in order, with nothing in between. */
    for (size_t i = 0; i <= n_cases; i++)
        expect_event(sub, "order.placed", i + 1);

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.invalid == n_cases && c.messages_out == n_cases + 1);
    cr_assert_eq(c.messages_in, 2 * n_cases + 1);
    cr_assert_eq(c.messages_out, n_cases + 1);
    cr_assert_eq(c.invalid, n_cases);
    for (int e = 0; e < FONTE_ERR_COUNT_; e++)
        cr_assert_eq(c.invalid_by[e], want[e], "invalid.%s: %llu, want %llu",
                     fonte_errname((fonte_err) e),
                     (unsigned long long) c.invalid_by[e],
                     (unsigned long long) want[e]);
    cr_assert_eq(c.invalid_by[FONTE_EFRAMES], 2);
    cr_assert_eq(c.invalid_by[FONTE_ERESERVED], 2);

    codec_buf_free(&good);
    codec_buf_free(&bad_type);
    codec_buf_free(&bad_object);
    codec_buf_free(&many_deps);
    codec_buf_free(&bad_ack);
    codec_buf_free(&spoof);
    broker_destroy(&b);
}

Test(broker, control_messages_pass_when_valid, .init = setup,
     .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 0);
    void *pub = pub_new(b);
    void *sub = sub_new(b, "$", 0);
    wait_subscription(pub, 1, "$");

    Fonte__Ack ack = FONTE__ACK__INIT;
    ack.producer = (char *) "shop";
    ack.session = 0xabc;
    ack.durable_seq = 41;
    codec_buf_t a = tu_pack(&ack.base);
    Fonte__Stats st = FONTE__STATS__INIT;
    st.source = (char *) "listener";
    codec_buf_t s = tu_pack(&st.base);
    Fonte__Event *ev = tu_event("order.placed", "order:1", "shop", 0xabc, 3);
    tu_event_set_replay(ev, "r1", "order:1", "billing");
    codec_buf_t r = tu_pack(&ev->base);
    codec_event_free(&ev);

    send_two(pub, "$ack.shop", a.data, a.len);
    send_two(pub, "$sys.listener", s.data, s.len);
    send_two(pub, "$replay.billing.order.placed", r.data, r.len);

    const char *topics[] = { "$ack.shop", "$sys.listener",
                             "$replay.billing.order.placed" };
    const codec_buf_t *bodies[] = { &a, &s, &r };
    for (int i = 0; i < 3; i++) {
        got_t g;
        cr_assert(recv_msg(sub, WAIT_MS, &g), "no %s", topics[i]);
        g.topic[g.topic_len] = '\0';
        cr_assert_str_eq(g.topic, topics[i]);
        cr_assert_eq(g.body_len, bodies[i]->len);
        cr_assert_eq(memcmp(g.body, bodies[i]->data, g.body_len), 0);
    }
    codec_buf_free(&a);
    codec_buf_free(&s);
    codec_buf_free(&r);
    broker_destroy(&b);
}

Test(broker, frames_mode_checks_frames_and_topic_class_only, .init = setup,
     .fini = teardown)
{
    broker_t *b = start_broker(false, 0, 0, 0);
    void *pub = pub_new(b);
    void *sub = sub_new(b, "", 0);
    wait_subscription(pub, 1, "");
    static const char body[] = "not protobuf at all";

    send_frames(pub, (frame_t[]) { { "order.placed", 12 } }, 1);
    send_two(pub, "$nope", body, sizeof body - 1);
    send_two(pub, "order.shipped", body, sizeof body - 1); /* passes */
    send_two(pub, "\xff\xfe", body, sizeof body - 1);      /* passes too */

    got_t g;
    cr_assert(recv_msg(sub, WAIT_MS, &g));
    g.topic[g.topic_len] = '\0';
    cr_assert_str_eq(g.topic, "order.shipped");
    cr_assert_eq(g.body_len, sizeof body - 1);
    cr_assert_eq(memcmp(g.body, body, g.body_len), 0);
    cr_assert(recv_msg(sub, WAIT_MS, &g));
    cr_assert_eq(g.topic_len, 2);

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.messages_out == 2 && c.invalid == 2);
    cr_assert_eq(c.invalid_by[FONTE_EFRAMES], 1);
    cr_assert_eq(c.invalid_by[FONTE_ERESERVED], 1);
    cr_assert_eq(c.invalid, 2);
    /* Not UTF-8: forwarded, but kept out of the Stats' topic keys. */
    cr_assert_eq(c.untracked, 1);
    broker_destroy(&b);
}

Test(broker, oversize_frame_cuts_that_publisher_off_and_others_go_on,
     .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 0, 0, 1024);
    void *big = pub_new(b);
    void *good = pub_new(b);
    void *sub = sub_new(b, "order.", 0);
    wait_subscription(big, 1, "order.");
    wait_subscription(good, 1, "order.");

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.publishers == 2);
    cr_assert_eq(c.publishers, 2);

    static uint8_t blob[2048];
    send_two(big, "order.placed", blob, sizeof blob);
    /* libzmq refuses the frame (ZMQ_MAXMSGSIZE) and drops the link. */
    WAIT_COUNTERS(b, c, c.ingress_disconnects == 1);
    cr_assert_eq(c.ingress_disconnects, 1);

    send_event(good, "order.placed", "order:1", 1);
    expect_event(sub, "order.placed", 1);
    WAIT_COUNTERS(b, c, c.messages_out == 1);
    cr_assert_eq(c.messages_in, 1);
    cr_assert_eq(c.messages_out, 1);
    cr_assert_eq(c.invalid, 0);
    broker_destroy(&b);
}

/* ------------------------------------------------------------------ */
/* slow subscribers, Stats                                             */

Test(broker, a_subscriber_that_stops_reading_does_not_stop_the_others,
     .init = setup, .fini = teardown)
{
    enum { N = 20000, BATCH = 50, HWM = 100 };
    broker_t *b = start_broker(true, 0, HWM, 0);
    void *pub = pub_new(b);
    void *stuck = sub_new(b, "", HWM);
    void *fast = sub_new(b, "order.", HWM);
    wait_subscription(pub, 1, "");
    wait_subscription(pub, 1, "order.");

    /* ~1 KiB events: 20 MB is more than the stuck subscriber's HWMs and
     * TCP buffers can hold, so the broker has to drop for it. */
    Fonte__Event *ev = tu_event("order.placed", "order:1", "shop", 0xabc, 1);
    static uint8_t pay[1000];
    tu_event_set_payload(ev, pay, sizeof pay, "shop.Blob");
    codec_buf_t body = tu_pack(&ev->base);
    codec_event_free(&ev);

    for (int sent = 0; sent < N; sent += BATCH) {
        for (int i = 0; i < BATCH; i++)
            send_two(pub, "order.placed", body.data, body.len);
        for (int i = 0; i < BATCH; i++) {
            got_t g;
            cr_assert(recv_msg(fast, WAIT_MS, &g), "fast lost #%d",
                      sent + i + 1);
            cr_assert_eq(g.body_len, body.len);
        }
    }

    broker_counters_t c;
    WAIT_COUNTERS(b, c, c.messages_out == N);
    cr_assert_eq(c.messages_out, N);
    /* The stuck one holds what fitted and lost the rest. */
    size_t held = 0;
    got_t g;
    while (recv_msg(stuck, 200, &g))
        held++;
    cr_assert_lt(held, (size_t) N);
    codec_buf_free(&body);
    broker_destroy(&b);
}

static uint64_t
counter(const Fonte__Stats *s, const char *key, bool *found)
{
    for (size_t i = 0; i < s->n_counters; i++)
        if (strcmp(s->counters[i]->key, key) == 0) {
            *found = true;
            return s->counters[i]->value;
        }
    *found = false;
    return 0;
}

static double
gauge(const Fonte__Stats *s, const char *key)
{
    for (size_t i = 0; i < s->n_gauges; i++)
        if (strcmp(s->gauges[i]->key, key) == 0)
            return s->gauges[i]->value;
    cr_assert_fail("no gauge %s", key);
    return -1;
}

#define ASSERT_COUNTER(s, key, want)                                    \
    do {                                                                \
        bool found_;                                                    \
        uint64_t v_ = counter((s), (key), &found_);                     \
        cr_assert(found_, "no counter %s", (key));                      \
        cr_assert_eq(v_, (uint64_t) (want), "%s = %llu, want %llu",     \
                     (key), (unsigned long long) v_,                    \
                     (unsigned long long) (want));                      \
    } while (0)

Test(broker, stats_carry_the_exact_counts, .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 20000, 0, 0);
    void *pub = pub_new(b);
    void *sub = sub_new(b, "", 0); /* the events and the Stats */
    wait_subscription(pub, 1, "");

    uint64_t bytes = 0;
    for (uint64_t i = 1; i <= 3; i++)
        bytes += send_event(pub, "order.placed", "order:1", i);
    bytes += send_event(pub, "order.shipped", "order:1", 4);
    bytes += send_event(pub, "user.created", "user:7", 5);
    static const char junk[] = "junk";
    send_two(pub, "order.placed", junk, 4); /* invalid.decode */
    send_two(pub, "$what", junk, 4);        /* invalid.reserved */
    uint64_t bytes_in = bytes + 12 + 4 + 5 + 4;

    /* Stats until the one that has seen all seven messages. */
    Fonte__Stats *s = NULL;
    int64_t until = fonte_mono_us() + WAIT_MS * 1000;
    for (;;) {
        got_t g;
        cr_assert(fonte_mono_us() < until, "no Stats with the 7 messages");
        cr_assert(recv_msg(sub, WAIT_MS, &g));
        g.topic[g.topic_len] = '\0';
        if (strcmp(g.topic, "$sys.broker") != 0)
            continue; /* the routed events */
        cr_assert_eq(codec_stats_decode(g.body, g.body_len,
                                        &codec_limits_default, &s),
                     FONTE_OK);
        bool found;
        if (counter(s, "messages_in", &found) == 7)
            break;
        fonte__stats__free_unpacked(s, NULL);
        s = NULL;
    }

    cr_assert_str_eq(s->source, "broker");
    cr_assert_gt(s->uptime_us, 0);
    ASSERT_COUNTER(s, "messages_in", 7);
    ASSERT_COUNTER(s, "bytes_in", bytes_in);
    ASSERT_COUNTER(s, "messages_out", 5);
    ASSERT_COUNTER(s, "bytes_out", bytes);
    ASSERT_COUNTER(s, "invalid", 2);
    ASSERT_COUNTER(s, "invalid.decode", 1);
    ASSERT_COUNTER(s, "invalid.reserved", 1);
    ASSERT_COUNTER(s, "subscribes", 1);
    ASSERT_COUNTER(s, "unsubscribes", 0);
    ASSERT_COUNTER(s, "topics_untracked", 0);
    ASSERT_COUNTER(s, "ingress_connects", 1);
    ASSERT_COUNTER(s, "ingress_disconnects", 0);
    ASSERT_COUNTER(s, "egress_connects", 1);
    ASSERT_COUNTER(s, "egress_disconnects", 0);
    bool found;
    counter(s, "invalid.topic", &found);
    cr_assert(!found, "reasons that never happened are left out");

    cr_assert_eq(s->n_topics, 3);
    cr_assert_str_eq(s->topics[0]->key, "order.placed");
    cr_assert_eq(s->topics[0]->value, 3);
    cr_assert_str_eq(s->topics[1]->key, "order.shipped");
    cr_assert_eq(s->topics[1]->value, 1);
    cr_assert_str_eq(s->topics[2]->key, "user.created");
    cr_assert_eq(s->topics[2]->value, 1);

    cr_assert_eq(gauge(s, "publishers"), 1.0);
    cr_assert_eq(gauge(s, "subscribers"), 1.0);
    cr_assert_eq(gauge(s, "subscriptions"), 1.0);
    cr_assert_eq(gauge(s, "topics"), 3.0);
    fonte__stats__free_unpacked(s, NULL);
    broker_destroy(&b);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

Test(broker, destroy_returns_with_peers_connected_and_messages_queued,
     .init = setup, .fini = teardown)
{
    broker_t *b = start_broker(true, 1000, 0, 0); /* Stats every 1 ms */
    void *pub = pub_new(b);
    void *sub = sub_new(b, "order.", 0);
    wait_subscription(pub, 1, "order.");
    for (uint64_t i = 1; i <= 100; i++)
        send_event(pub, "order.placed", "order:1", i);
    expect_event(sub, "order.placed", 1); /* 99 more left unread */

    broker_destroy(&b);
    cr_assert_null(b);
    broker_destroy(&b); /* NULL-safe */
    broker_destroy(NULL);
}

Test(broker, bind_failure_is_eio_naming_the_endpoint, .init = setup,
     .fini = teardown)
{
    void *taken = socket_new(ZMQ_PUB, 0);
    char ep[256], want[512], err[256];
    size_t len = sizeof ep;
    cr_assert_eq(zmq_bind(taken, ANY), 0);
    zmq_getsockopt(taken, ZMQ_LAST_ENDPOINT, ep, &len);

    broker_opts_t o;
    broker_t *b = NULL;
    broker_opts_init(&o);
    o.ingress = ep;
    o.egress = ANY;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_EIO);
    cr_assert_null(b);
    snprintf(want, sizeof want, "cannot bind ingress %s: Address already in use",
             ep);
    cr_assert_str_eq(err, want);

    o.ingress = ANY;
    o.egress = ep;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_EIO);
    cr_assert_null(b);
    snprintf(want, sizeof want, "cannot bind egress %s: Address already in use",
             ep);
    cr_assert_str_eq(err, want);
}

Test(broker, bad_options_are_einval, .init = setup, .fini = teardown)
{
    broker_opts_t o;
    broker_t *b = NULL;
    char err[256];

    broker_opts_init(&o);
    o.ingress = "not an endpoint";
    o.egress = ANY;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_EINVAL);
    cr_assert_null(b);
    cr_assert_str_eq(err, "cannot bind ingress not an endpoint: Invalid argument");

    broker_opts_init(&o);
    o.hwm = -1;
    cr_assert_eq(broker_new(&o, &b, err, sizeof err), FONTE_EINVAL);
    cr_assert_str_eq(err, "invalid broker option: hwm");
    broker_opts_init(&o);
    o.ingress = NULL;
    cr_assert_eq(broker_new(&o, &b, NULL, 0), FONTE_EINVAL);
    cr_assert_null(b);
}

Test(broker, opts_init_fills_the_documented_defaults)
{
    broker_opts_t o;
    broker_opts_init(&o);
    cr_assert_str_eq(o.ingress, "tcp://127.0.0.1:7701");
    cr_assert_str_eq(o.egress, "tcp://127.0.0.1:7702");
    cr_assert_eq(o.limits.max_msg, (size_t) 1 << 20);
    cr_assert_eq(o.hwm, 100000);
    cr_assert(o.validate_full);
    cr_assert_eq(o.stats_interval_us, 1000000);
}

/* ------------------------------------------------------------------ */
/* the topic table (broker/topics.c)                                   */

Test(topics, top_k_by_count_ties_by_first_seen)
{
    topics_t *t = topics_new(8);
    topics_entry_t top[4];

    cr_assert_not_null(t);
    cr_assert(topics_add(t, "b", 1, 1));
    cr_assert(topics_add(t, "a", 1, 5));
    cr_assert(topics_add(t, "c", 1, 1));
    cr_assert(topics_add(t, "b", 1, 1));
    cr_assert(topics_add(t, "d", 1, 2));
    cr_assert_eq(topics_size(t), 4);
    cr_assert_eq(topics_top(t, top, 3), 3);
    cr_assert_str_eq(top[0].topic, "a");
    cr_assert_eq(top[0].count, 5);
    cr_assert_str_eq(top[1].topic, "b"); /* 2, seen before d */
    cr_assert_eq(top[1].count, 2);
    cr_assert_str_eq(top[2].topic, "d");
    cr_assert_eq(top[2].count, 2);
    cr_assert_eq(topics_top(t, top, 0), 0);
    topics_destroy(&t);
    cr_assert_null(t);
    topics_destroy(&t);
}

Test(topics, a_full_table_refuses_new_topics_and_counts_known_ones)
{
    topics_t *t = topics_new(2);
    topics_entry_t top[4];
    char key[8];

    cr_assert(topics_add(t, "x", 1, 1));
    cr_assert(topics_add(t, "y\0z", 3, 1)); /* bytes, not C strings */
    cr_assert_not(topics_add(t, "w", 1, 1));
    cr_assert(topics_add(t, "x", 1, 1));
    cr_assert_eq(topics_size(t), 2);
    cr_assert_eq(topics_top(t, top, 4), 2);
    cr_assert_str_eq(top[0].topic, "x");
    cr_assert_eq(top[0].count, 2);
    memcpy(key, top[1].topic, 4);
    cr_assert_eq(memcmp(key, "y\0z", 4), 0);
    topics_destroy(&t);
    cr_assert_null(topics_new(0));
}

/* ------------------------------------------------------------------ */
/* the fonte-broker program                                            */

typedef struct child {
    pid_t pid;
    int out, err; /* read ends of its stdout and stderr */
} child_t;

static void
spawn(child_t *c, char **argv)
{
    int o[2], e[2];
    posix_spawn_file_actions_t fa;

    cr_assert_eq(pipe(o), 0);
    cr_assert_eq(pipe(e), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    posix_spawn_file_actions_adddup2(&fa, e[1], 2);
    posix_spawn_file_actions_addclose(&fa, o[0]);
    posix_spawn_file_actions_addclose(&fa, e[0]);
    argv[0] = (char *) FONTE_BIN_DIR "/fonte-broker";
    cr_assert_eq(posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ), 0);
    live_child = c->pid;
    posix_spawn_file_actions_destroy(&fa);
    close(o[1]);
    close(e[1]);
    c->out = o[0];
    c->err = e[0];
}

/* Appends what fd has to buf until needle appears (needle NULL: until
 * EOF) or WAIT_MS passes. True if found / EOF reached. */
static bool
read_until(int fd, char *buf, size_t cap, const char *needle)
{
    size_t len = strlen(buf);
    int64_t until = fonte_mono_us() + WAIT_MS * 1000;

    while (fonte_mono_us() < until) {
        if (needle != NULL && strstr(buf, needle) != NULL)
            return true;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            return needle == NULL;
        len += (size_t) n;
        buf[len] = '\0';
    }
    return false;
}

/* Waits for the child to exit; its exit code, or -1 (it was killed). */
static int
wait_exit(child_t *c)
{
    int status;
    int64_t until = fonte_mono_us() + WAIT_MS * 1000;

    while (waitpid(c->pid, &status, WNOHANG) == 0) {
        if (fonte_mono_us() > until) {
            reap_child();
            cr_assert_fail("fonte-broker did not exit");
        }
        nap_ms(2);
    }
    live_child = 0;
    close(c->out);
    close(c->err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static size_t
lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs fonte-broker to completion; stdout and stderr into out / err. */
static int
run(char **argv, char *out, char *err, size_t cap)
{
    child_t c;
    out[0] = err[0] = '\0';
    spawn(&c, argv);
    cr_assert(read_until(c.err, err, cap, NULL));
    cr_assert(read_until(c.out, out, cap, NULL));
    return wait_exit(&c);
}

Test(broker_program, help_exits_0, .fini = reap_child)
{
    char out[8192], err[8192];
    char *argv[] = { NULL, "--help", NULL };
    cr_assert_eq(run(argv, out, err, sizeof out), 0);
    cr_assert(strncmp(out, "usage: fonte-broker", 19) == 0, "%s", out);
    cr_assert_not_null(strstr(out, "--validate"));
    cr_assert_str_eq(err, "");
}

Test(broker_program, a_bad_flag_is_one_line_and_exit_2, .fini = reap_child)
{
    char out[1024], err[1024];
    char *argv[] = { NULL, "--no-such-flag", NULL };
    cr_assert_eq(run(argv, out, err, sizeof err), 2);
    cr_assert_str_eq(err, "fonte-broker: unknown flag '--no-such-flag' "
                          "(try --help)\n");
    char *argv2[] = { NULL, "--validate=most", NULL };
    cr_assert_eq(run(argv2, out, err, sizeof err), 2);
    cr_assert_eq(lines(err), 1, "%s", err);
    cr_assert_str_eq(out, "");
}

/* libzmq binds tcp://h:99999 to some other port and says nothing: the
 * broker refuses a port out of 1..65535 as a bad value. */
Test(broker_program, an_endpoint_out_of_range_is_one_line_and_exit_2, .fini = reap_child)
{
    char out[1024], err[1024];
    char *argv[] = { NULL, "--ingress=tcp://127.0.0.1:99999", NULL };
    cr_assert_eq(run(argv, out, err, sizeof err), 2);
    cr_assert_str_eq(err, "fonte-broker: --ingress=tcp://127.0.0.1:99999 is "
                          "not an endpoint to bind: write it like "
                          "tcp://HOST:PORT with a port of 1..65535 or *, or "
                          "ipc://PATH\n");
    char *argv2[] = { NULL, "--egress=tcp://127.0.0.1:-1", NULL };
    cr_assert_eq(run(argv2, out, err, sizeof err), 2);
    cr_assert_eq(lines(err), 1, "%s", err);
    cr_assert_str_eq(out, "");
}

Test(broker_program, a_taken_port_is_one_line_and_exit_1, .init = setup,
     .fini = teardown)
{
    void *taken = socket_new(ZMQ_PUB, 0);
    char ep[256], flag[300], want[512], out[1024], err[1024];
    size_t len = sizeof ep;
    cr_assert_eq(zmq_bind(taken, ANY), 0);
    zmq_getsockopt(taken, ZMQ_LAST_ENDPOINT, ep, &len);
    snprintf(flag, sizeof flag, "--egress=%s", ep);

    char *argv[] = { NULL, "--ingress=" ANY, flag, NULL };
    cr_assert_eq(run(argv, out, err, sizeof err), 1);
    snprintf(want, sizeof want,
             "fonte-broker: cannot bind egress %s: Address already in use\n",
             ep);
    cr_assert_str_eq(err, want);
}

static void
stops_on(int sig)
{
    char err[4096] = "";
    child_t c;
    char *argv[] = { NULL, "--ingress=" ANY, "--egress=" ANY,
                     "--log-level=info", NULL };
    spawn(&c, argv);
    /* The line comes after the signals are blocked and the sockets bound. */
    cr_assert(read_until(c.err, err, sizeof err, "info broker: routing "),
              "%s", err);
    kill(c.pid, sig);
    cr_assert_eq(wait_exit(&c), 0);
}

Test(broker_program, sigterm_exits_0, .fini = reap_child)
{
    stops_on(SIGTERM);
}

Test(broker_program, sigint_exits_0, .fini = reap_child)
{
    stops_on(SIGINT);
}
