/*
 * ingest.c - receive thread, bounded queue, writer thread (ingest.h).
 *
 * The idea (design.md §4, §5): reading the socket and writing LevelDB
 * are decoupled by a queue, so that a compaction stall or an fsync never
 * leaves the SUB socket unread while there is room to put things.
 *
 *   broker XPUB --> [SUB] receive thread --queue--> writer thread [PUB] --> broker XSUB
 *                                                      |
 *                                                   store (one WriteBatch per batch)
 *
 * Threading invariants:
 *  - The SUB socket belongs to the receive thread, the PUB socket to the
 *    writer thread, from the moment the threads start (ingest_new only
 *    creates and connects them; pthread_create is the memory barrier).
 *    No other thread touches either socket. Acks and Stats are published
 *    by the writer only.
 *  - The queue (ring of item pointers, counted in events and bytes) is
 *    the only state both threads share, under q_mu. An item is owned by
 *    whoever took it out of the queue.
 *  - Only the writer calls store_batch_* (the store's single writer).
 *  - Counters are relaxed atomics: each has one writing thread, any
 *    thread may read them (ingest_counters).
 *
 * Receive: every message is checked with codec_check (zero-copy scan).
 * Messages on "$" topics (our own Acks and Stats come back, since we
 * subscribe to everything) and events carrying `replay` are ignored and
 * counted, never stored; malformed ones are counted as "invalid.<reason>".
 * A valid live event's body is copied once into a queue item together
 * with its view (pointers rebased onto the copy). When the queue is full
 * the receive thread WAITS - it never drops. Meanwhile ZeroMQ keeps
 * queueing in the SUB socket up to its RCVHWM, and beyond that the
 * broker's XPUB drops for this subscriber; libfonte's resend heals that
 * (a gap Ack, or its resend timeout).
 *
 * Writer: takes up to batch_max events, and no more than batch_bytes of
 * what they will write (batch_cost: an event with many dependencies
 * makes four times its size in keys), waiting up to batch_delay_us for
 * a batch to fill), applies the acceptance rule per (producer, session)
 * against the store's watermark - producer_seq == last + 1: store;
 * <= last: duplicate, ignored, the session's Ack is sent again (once per
 * batch); > last + 1: gap, not stored, an Ack with gap set (at most one
 * per session and durable_seq per INGEST_GAP_ACK_US) - commits ONE
 * WriteBatch and only then publishes one Ack per session that advanced.
 * The gap and duplicate Acks go out after the commit too, so that every
 * durable_seq ever published is durable. If a commit fails, nothing of
 * the batch is acked, and nothing after it either: the store takes no
 * more writes (store_write_error: LevelDB cannot be trusted to keep
 * what it writes after a failed write until it is reopened), the writer
 * drops what it takes, logs the cause once and calls on_store_failed;
 * the producers resend to the listener that reopens the store.
 *
 * Limits: memory is the queue (queue_max events, queue_bytes bytes), the
 * SUB's RCVHWM and one batch (batch_bytes, one event over at most); the
 * ack-state table is a fixed array.
 */
#define _GNU_SOURCE /* memmem */
#include "ingest.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "log.h"
#include "sync.h"
#include "zmqx.h"

#define ACK_SLOTS 4096u
#define LAT_SAMPLES 4096
#define RECV_BURST 1000
/* Not connected to the broker's egress for this long: a warning, then
 * another every INGEST_LINK_REPEAT_US while it lasts. */
#define INGEST_LINK_WARN_US (5 * 1000000LL)
#define INGEST_LINK_REPEAT_US (60 * 1000000LL)

/* The counters: field, Stats key. */
#define INGEST_COUNTERS(X)                                                    \
    X(received, "received")                                                   \
    X(events_stored, "events_stored")                                         \
    X(duplicates, "duplicates")                                               \
    X(gaps, "gaps")                                                           \
    X(ignored_reserved, "ignored.reserved")                                   \
    X(ignored_replay, "ignored.replay")                                       \
    X(invalid, "invalid")                                                     \
    X(acks_sent, "acks_sent")                                                 \
    X(gap_acks_sent, "gap_acks_sent")                                         \
    X(batches, "batches")                                                     \
    X(commit_errors, "commit_errors")                                         \
    X(put_errors, "put_errors")                                               \
    X(queue_full_waits, "queue_full_waits")                                   \
    X(stats_sent, "stats_sent")                                               \
    X(other_listener_acks, "other_listener_acks")                             \
    X(broker_connects, "broker_connects")                                     \
    X(broker_disconnects, "broker_disconnects")

typedef struct counters {
#define COUNTER_FIELD_(f, key) _Atomic uint64_t f;
    INGEST_COUNTERS(COUNTER_FIELD_)
#undef COUNTER_FIELD_
    _Atomic uint64_t invalid_by[FONTE_ERR_COUNT_];
} counters_t;

#define BUMP(in, f, n) \
    atomic_fetch_add_explicit(&(in)->c.f, (n), memory_order_relaxed)

/* One queued event: its view points into body. */
typedef struct item {
    size_t len;
    int64_t recv_us; /* when the receive thread took it off the socket */
    codec_view_t view;
    uint8_t body[];
} item_t;

/* Per-session state for rate-limiting re-acks and gap acks. */
typedef struct ack_slot {
    bool used;
    uint8_t plen;
    char producer[CODEC_PRODUCER_MAX];
    uint64_t session;
    uint64_t dup_round;   /* batch round of the last duplicate re-ack */
    uint64_t gap_durable; /* durable_seq of the last gap Ack */
    int64_t gap_us;       /* when it was sent */
} ack_slot_t;

struct ingest {
    ingest_opts_t o;
    char *egress, *ingress;
    void *sub, *pub;
    void *mon;                     /* events of sub's connection: recv's */
    atomic_bool broker_connected;  /* sub's handshake done, not lost */
    pthread_t recv_thread, writer_thread;
    bool recv_started, writer_started;
    atomic_bool stop_recv;
    int64_t started_us;

    pthread_mutex_t q_mu;
    pthread_cond_t q_not_empty, q_not_full;
    item_t **ring;
    size_t q_cap, q_head, q_n, q_bytes;
    bool stop_writer; /* under q_mu */
    bool hold;        /* under q_mu: the writer takes nothing (tests) */

    counters_t c;

    /* writer thread only */
    store_batch_t *batch;
    item_t **taken;
    ack_slot_t *acks;
    uint64_t round;
    double lat[LAT_SAMPLES];
    size_t n_lat;
    double ack_lag[LAT_SAMPLES]; /* per batch: its oldest event's wait */
    size_t n_ack_lag;
    uint64_t iv_batches, iv_events;
    int64_t next_stats_us;
    uint8_t *verdict; /* per taken event: KEEP, DUP, GAP */
    flog_limiter_t put_log;
    bool store_failed; /* a commit failed: nothing is written any more */
    flog_limiter_t invalid_log; /* receive thread */
    int64_t other_warned_us;    /* receive thread: other_listener's log */
};

/* ------------------------------------------------------------------ */

void
ingest_opts_init(ingest_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->egress = "tcp://127.0.0.1:7702";
    o->ingress = "tcp://127.0.0.1:7701";
    o->batch_max = INGEST_BATCH_MAX_DEFAULT;
    o->batch_bytes = INGEST_BATCH_BYTES_DEFAULT;
    o->batch_delay_us = INGEST_BATCH_DELAY_US_DEFAULT;
    o->queue_max = INGEST_QUEUE_MAX_DEFAULT;
    o->queue_bytes = INGEST_QUEUE_BYTES_DEFAULT;
    o->rcvhwm = INGEST_RCVHWM_DEFAULT;
    o->stats_interval_us = 1000000;
    o->limits = codec_limits_default;
}

void
ingest_counters(ingest_t *in, ingest_counters_t *out)
{
    memset(out, 0, sizeof *out);
#define COUNTER_COPY_(f, key) \
    out->f = atomic_load_explicit(&in->c.f, memory_order_relaxed);
    INGEST_COUNTERS(COUNTER_COPY_)
#undef COUNTER_COPY_
    for (size_t i = 0; i < FONTE_ERR_COUNT_; i++)
        out->invalid_by[i] = atomic_load_explicit(&in->c.invalid_by[i],
                                                  memory_order_relaxed);
    out->broker_connected = atomic_load(&in->broker_connected);
    pthread_mutex_lock(&in->q_mu);
    out->queue_depth = in->q_n;
    out->queue_bytes = in->q_bytes;
    pthread_mutex_unlock(&in->q_mu);
}

/* An absolute CLOCK_MONOTONIC time us from now, for timed waits. */
static struct timespec
deadline_in(int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (us % 1000000) * 1000;
    ts.tv_sec += (time_t) (us / 1000000 + ns / 1000000000);
    ts.tv_nsec = (long) (ns % 1000000000);
    return ts;
}

/* ------------------------------------------------------------------ */
/* receive thread */

static void
rebase(codec_slice_t *s, const uint8_t *from, size_t len, const uint8_t *to)
{
    const uint8_t *p = (const uint8_t *) s->ptr;
    if (p != NULL && p >= from && p <= from + len)
        s->ptr = (const char *) (to + (p - from));
}

/* A queue item holding a copy of body and view rebased onto it. */
static item_t *
item_new(const void *body, size_t len, const codec_view_t *view)
{
    item_t *it = malloc(sizeof *it + (len ? len : 1));
    if (it == NULL)
        return NULL;
    it->len = len;
    it->recv_us = fonte_mono_us();
    memcpy(it->body, body, len);
    it->view = *view;
    codec_view_t *v = &it->view;
    codec_slice_t *slices[] = { &v->id, &v->type, &v->object, &v->producer,
                                &v->payload_type, &v->payload,
                                &v->replay_target, &v->replay_root };
    for (size_t i = 0; i < sizeof slices / sizeof *slices; i++)
        rebase(slices[i], body, len, it->body);
    v->body = it->body;
    v->body_len = len;
    return it;
}

/* What an item costs in memory, as the queue's byte bound counts it. */
static size_t
item_bytes(const item_t *it)
{
    return sizeof *it + it->len;
}

/* What it will weigh in a WriteBatch, about: its bytes (the e value),
 * its e, o and t keys, and for each dependency a d and an r key, each
 * naming the event's object and the dependency. */
static size_t
batch_cost(const item_t *it)
{
    const codec_view_t *v = &it->view;
    size_t end = v->deps_end ? v->deps_end : v->body_len, deps = 0;
    if (v->n_deps > 0 && end > v->deps_at)
        deps = end - v->deps_at; /* the dependencies' names and tags */
    return it->len + 64 + 2 * v->object.len + v->type.len +
           2 * (deps + v->n_deps * (v->object.len + 16));
}

/* Puts it in the queue, waiting while full. False (and it is freed) if
 * the ingest is stopping. */
static bool
queue_push(ingest_t *in, item_t *it)
{
    bool waited = false;
    pthread_mutex_lock(&in->q_mu);
    while ((in->q_n == in->q_cap ||
            (in->q_n > 0 && in->q_bytes + item_bytes(it) > in->o.queue_bytes)) &&
           !atomic_load(&in->stop_recv)) {
        if (!waited)
            BUMP(in, queue_full_waits, 1);
        waited = true;
        struct timespec ts = deadline_in(100000);
        pthread_cond_timedwait(&in->q_not_full, &in->q_mu, &ts);
    }
    if (atomic_load(&in->stop_recv)) {
        pthread_mutex_unlock(&in->q_mu);
        free(it);
        return false;
    }
    in->ring[(in->q_head + in->q_n) % in->q_cap] = it;
    in->q_n++;
    in->q_bytes += item_bytes(it);
    pthread_cond_signal(&in->q_not_empty);
    pthread_mutex_unlock(&in->q_mu);
    return true;
}

/* An Ack seen on the egress: if another listener signed it, two
 * listeners store from this broker. fonte runs one per broker (its
 * producers trim their outboxes on the first Ack of an event, so the
 * slower listener cannot heal its gaps and stops storing those
 * sessions); this is counted and logged, once a minute at most. */
static void
other_listener(ingest_t *in, const void *body, size_t len)
{
    Fonte__Ack *a = NULL;
    const char *own = store_id(in->o.store);
    /* our own Acks, most of them: our id in the bytes, no decoding */
    if (memmem(body, len, own, CODEC_LISTENER_ID_LEN) != NULL)
        return;
    if (codec_ack_decode(body, len, &in->o.limits, &a) != FONTE_OK)
        return;
    if (a->listener[0] != '\0' && strcmp(a->listener, own) != 0) {
        BUMP(in, other_listener_acks, 1);
        int64_t now = fonte_mono_us();
        if (in->other_warned_us == 0 ||
            now - in->other_warned_us >= 60 * 1000000LL) {
            in->other_warned_us = now;
            flog(FLOG_ERROR, "listener",
                 "another listener (store %s) acknowledges events on this "
                 "broker; this one is %s. fonte runs ONE listener per "
                 "broker: with two, a producer drops an event once either "
                 "has it, and the other one cannot heal its gaps (it stops "
                 "storing that producer session). Stop one of them "
                 "(docs/operations.md)", a->listener, own);
        }
    }
    fonte__ack__free_unpacked(a, NULL);
}

/* Checks one received message (frames) and queues it if it is a live
 * event, or counts why not. */
static void
classify_message(ingest_t *in, zmq_msg_t *parts, size_t nframes)
{
    codec_frame_t f[2];
    codec_class_t cls = CODEC_EVENT;
    codec_view_t view;

    for (size_t i = 0; i < 2 && i < nframes; i++) {
        f[i].data = zmq_msg_data(&parts[i]);
        f[i].size = zmq_msg_size(&parts[i]);
    }
    /* Our own Acks and Stats come back: skip "$" without decoding, but
     * for the Acks' signature: another listener's means two listeners
     * on one broker (other_listener). */
    if (nframes >= 1 && f[0].size > 0 && *(const char *) f[0].data == '$') {
        if (f[0].size >= 8 && memcmp(f[0].data, CODEC_TOPIC_REPLAY, 8) == 0)
            BUMP(in, ignored_replay, 1);
        else
            BUMP(in, ignored_reserved, 1);
        if (nframes == 2 && f[0].size > 5 &&
            memcmp(f[0].data, CODEC_TOPIC_ACK, 5) == 0)
            other_listener(in, f[1].data, f[1].size);
        return;
    }
    fonte_err rc = codec_check(f, nframes, &in->o.limits, &cls, &view);
    if (rc != FONTE_OK) {
        BUMP(in, invalid, 1);
        BUMP(in, invalid_by[rc < FONTE_ERR_COUNT_ ? rc : FONTE_EINTERNAL], 1);
        flog_limited(&in->invalid_log, FLOG_WARN, "listener",
                     "dropped an invalid message: %s", fonte_strerror(rc));
        return;
    }
    if (cls != CODEC_EVENT || view.has_replay) {
        BUMP(in, ignored_replay, 1);
        return;
    }
    item_t *it = item_new(f[1].data, f[1].size, &view);
    if (it == NULL) {
        BUMP(in, invalid, 1);
        BUMP(in, invalid_by[FONTE_ENOMEM], 1);
        return;
    }
    queue_push(in, it);
}

/* received is counted after the message is queued or counted as
 * ignored or invalid, so that whoever reads received == n (Stats, the
 * tests) also sees what became of those n messages. */
static void
take_message(ingest_t *in, zmq_msg_t *parts, size_t nframes)
{
    classify_message(in, parts, nframes);
    BUMP(in, received, 1);
}

/* Reads one whole message without waiting; false if none was there. */
static bool
recv_one(ingest_t *in)
{
    zmq_msg_t parts[2], extra;
    size_t n = 0;
    int more = 1;

    zmq_msg_init(&parts[0]);
    if (zmq_msg_recv(&parts[0], in->sub, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&parts[0]);
        return false;
    }
    n = 1;
    more = zmq_msg_more(&parts[0]);
    while (more) {
        zmq_msg_t *m = n < 2 ? &parts[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, in->sub, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(m);
        n++;
    }
    take_message(in, parts, n);
    for (size_t i = 0; i < n && i < 2; i++)
        zmq_msg_close(&parts[i]);
    return true;
}

/* The receive thread's view of its connection to the broker's egress,
 * from sub's monitor: what it logs, and when. */
typedef struct link {
    bool up;           /* handshake done and not lost since */
    int64_t down_us;   /* since when it is not up */
    int64_t warned_us; /* the last "not connected" warning, 0: none yet */
    int64_t refused_us;/* the last refused-handshake warning */
} link_t;

/* Reads sub's monitor events: the connection's state, counted, logged. */
static void
read_link_events(ingest_t *in, link_t *k)
{
    zmq_msg_t m;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, in->mon, ZMQ_DONTWAIT) != -1) {
        uint16_t ev = 0;
        if (zmq_msg_size(&m) >= 2) /* uint16 event, uint32 value */
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        while (zmq_msg_more(&m) && zmq_msg_recv(&m, in->mon, 0) != -1)
            ; /* the peer's address */
        int64_t now = fonte_mono_us();
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !k->up) {
            BUMP(in, broker_connects, 1);
            flog(k->warned_us ? FLOG_WARN : FLOG_INFO, "listener",
                 "connected to the broker's egress %s%s", in->egress,
                 k->warned_us ? ": storing again" : "");
            k->up = true;
            k->warned_us = 0;
            atomic_store(&in->broker_connected, true);
        } else if (ev == ZMQ_EVENT_DISCONNECTED && k->up) {
            BUMP(in, broker_disconnects, 1);
            flog(FLOG_WARN, "listener", "lost the broker's egress %s: "
                 "reconnecting (producers resend what it misses)",
                 in->egress);
            k->up = false;
            k->down_us = now;
            atomic_store(&in->broker_connected, false);
        } else if ((ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                    ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                    ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) &&
                   now - k->refused_us >= INGEST_LINK_REPEAT_US) {
            k->refused_us = now;
            flog(FLOG_WARN, "listener", "the broker's egress %s refused "
                 "this listener's handshake (%s): nothing is being stored",
                 in->egress,
                 ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                     ? "CURVE: is this listener's public key in the "
                       "broker's --curve-clients?"
                     : "is that a fonte broker, with the same CURVE "
                       "settings?");
        }
    }
    zmq_msg_close(&m);
}

/* Not connected for INGEST_LINK_WARN_US: says so, then every
 * INGEST_LINK_REPEAT_US while it lasts. */
static void
check_link(ingest_t *in, link_t *k)
{
    if (k->up) /* the common case: no clock read on the receive path */
        return;
    int64_t now = fonte_mono_us();
    if (now - k->down_us < INGEST_LINK_WARN_US ||
        (k->warned_us && now - k->warned_us < INGEST_LINK_REPEAT_US))
        return;
    k->warned_us = now;
    flog(FLOG_WARN, "listener", "not connected to the broker's egress %s "
         "for %lld s: nothing is being stored (still trying; check "
         "--egress, FONTE_EGRESS, and that the broker runs)", in->egress,
         (long long) ((now - k->down_us) / 1000000));
}

static void *
recv_main(void *arg)
{
    ingest_t *in = arg;
    zmq_pollitem_t pi[2] = { { in->sub, 0, ZMQ_POLLIN, 0 },
                             { in->mon, 0, ZMQ_POLLIN, 0 } };
    link_t k = { .down_us = fonte_mono_us() };

    while (!atomic_load(&in->stop_recv)) {
        int rc = zmq_poll(pi, 2, 100);
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            flog(FLOG_ERROR, "listener", "receive: zmq_poll: %s",
                 zmq_strerror(zmq_errno()));
            break;
        }
        if (pi[1].revents & ZMQ_POLLIN)
            read_link_events(in, &k);
        check_link(in, &k);
        for (int n = 0; (pi[0].revents & ZMQ_POLLIN) && n < RECV_BURST; n++)
            if (!recv_one(in) || atomic_load(&in->stop_recv))
                break;
    }
    zmq_socket_monitor(in->sub, NULL, 0);
    zmq_close(in->mon);
    in->mon = NULL;
    zmq_close(in->sub);
    in->sub = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* writer thread: publishing */

static void
publish(ingest_t *in, const char *topic, size_t tlen, const void *body,
        size_t blen)
{
    if (zmq_send(in->pub, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(in->pub, body, blen, ZMQ_DONTWAIT);
}

static void
send_ack(ingest_t *in, codec_slice_t producer, uint64_t session,
         uint64_t durable, bool gap)
{
    char prod[CODEC_PRODUCER_MAX + 1], topic[8 + CODEC_PRODUCER_MAX];
    uint8_t buf[128];
    Fonte__Ack ack = FONTE__ACK__INIT;

    memcpy(prod, producer.ptr, producer.len);
    prod[producer.len] = '\0';
    ack.producer = prod;
    ack.session = session;
    ack.durable_seq = durable;
    ack.gap = gap;
    ack.listener = (char *) store_id(in->o.store);
    if (fonte__ack__get_packed_size(&ack) > sizeof buf)
        return; /* cannot happen: producer <= 64 bytes, id 16 */
    size_t blen = fonte__ack__pack(&ack, buf);
    int tlen = snprintf(topic, sizeof topic, "%s%s", CODEC_TOPIC_ACK, prod);
    /* counted before it leaves: whoever receives it then sees it counted */
    BUMP(in, acks_sent, 1);
    if (gap)
        BUMP(in, gap_acks_sent, 1);
    publish(in, topic, (size_t) tlen, buf, blen);
}

static ack_slot_t *
ack_slot(ingest_t *in, codec_slice_t producer, uint64_t session)
{
    uint64_t h = 0xcbf29ce484222325ull ^ session;
    for (size_t i = 0; i < producer.len; i++)
        h = (h ^ (uint8_t) producer.ptr[i]) * 0x100000001b3ull;
    ack_slot_t *s = &in->acks[(h ^ (h >> 31)) & (ACK_SLOTS - 1)];
    if (!s->used || s->session != session || s->plen != producer.len ||
        memcmp(s->producer, producer.ptr, producer.len) != 0) {
        memset(s, 0, sizeof *s);
        s->used = true;
        s->plen = (uint8_t) producer.len;
        memcpy(s->producer, producer.ptr, producer.len);
        s->session = session;
    }
    return s;
}

#define STATS_COUNTERS 96
#define STATS_GAUGES 24

typedef struct stats_builder {
    Fonte__Stats msg;
    Fonte__Stats__CountersEntry cent[STATS_COUNTERS], *cptr[STATS_COUNTERS];
    Fonte__Stats__GaugesEntry gent[STATS_GAUGES], *gptr[STATS_GAUGES];
    char keys[FONTE_ERR_COUNT_][40];
} stats_builder_t;

static void
add_counter(stats_builder_t *s, const char *key, uint64_t v)
{
    size_t i = s->msg.n_counters;
    if (i == STATS_COUNTERS)
        return;
    fonte__stats__counters_entry__init(&s->cent[i]);
    s->cent[i].key = (char *) key;
    s->cent[i].value = v;
    s->cptr[i] = &s->cent[i];
    s->msg.n_counters++;
}

static void
add_gauge(stats_builder_t *s, const char *key, double v)
{
    size_t i = s->msg.n_gauges;
    if (i == STATS_GAUGES)
        return;
    fonte__stats__gauges_entry__init(&s->gent[i]);
    s->gent[i].key = (char *) key;
    s->gent[i].value = v;
    s->gptr[i] = &s->gent[i];
    s->msg.n_gauges++;
}

void
ingest_stats_counter(ingest_stats_t *st, const char *key, uint64_t v)
{
    add_counter(st, key, v);
}

void
ingest_stats_gauge(ingest_stats_t *st, const char *key, double v)
{
    add_gauge(st, key, v);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double
percentile(double *v, size_t n, double pct)
{
    if (n == 0)
        return 0;
    size_t i = (size_t) (pct / 100.0 * (double) (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void
publish_stats(ingest_t *in, int64_t now)
{
    stats_builder_t *s = calloc(1, sizeof *s);
    ingest_counters_t c;
    store_counts_t sc;
    codec_buf_t buf = { 0 };

    if (s == NULL)
        return;
    ingest_counters(in, &c);
    store_counts(in->o.store, &sc);
    fonte__stats__init(&s->msg);
    s->msg.source = "listener";
    s->msg.uptime_us = (uint64_t) (now - in->started_us);
    s->msg.counters = s->cptr;
    s->msg.gauges = s->gptr;
#define COUNTER_ADD_(f, key) add_counter(s, key, c.f);
    INGEST_COUNTERS(COUNTER_ADD_)
#undef COUNTER_ADD_
    for (size_t i = 0; i < FONTE_ERR_COUNT_; i++)
        if (c.invalid_by[i]) {
            snprintf(s->keys[i], sizeof s->keys[i], "invalid.%s",
                     fonte_errname((fonte_err) i));
            add_counter(s, s->keys[i], c.invalid_by[i]);
        }
    qsort(in->lat, in->n_lat, sizeof *in->lat, cmp_double);
    add_gauge(s, "batch_size_avg",
              in->iv_batches ? (double) in->iv_events / (double) in->iv_batches
                             : 0);
    add_gauge(s, "commit_p50_us", percentile(in->lat, in->n_lat, 50));
    add_gauge(s, "commit_p99_us", percentile(in->lat, in->n_lat, 99));
    qsort(in->ack_lag, in->n_ack_lag, sizeof *in->ack_lag, cmp_double);
    add_gauge(s, "ack_lag_p50_us", percentile(in->ack_lag, in->n_ack_lag, 50));
    add_gauge(s, "ack_lag_p99_us", percentile(in->ack_lag, in->n_ack_lag, 99));
    add_gauge(s, "queue_depth", (double) c.queue_depth);
    add_gauge(s, "queue_bytes", (double) c.queue_bytes);
    add_gauge(s, "last_seq", (double) sc.last_seq);
    add_gauge(s, "events", (double) sc.events);
    add_gauge(s, "objects", (double) sc.objects);
    add_gauge(s, "sessions", (double) sc.sessions);
    add_gauge(s, "store_bytes", (double) store_disk_bytes(in->o.store));
    add_gauge(s, "store_failed", in->store_failed ? 1 : 0);
    add_gauge(s, "broker_connected", atomic_load(&in->broker_connected));
    add_gauge(s, "stats_interval_us", (double) in->o.stats_interval_us);
    if (in->o.more_stats != NULL)
        in->o.more_stats(in->o.more_stats_arg, s);
    in->n_lat = 0;
    in->n_ack_lag = 0;
    in->iv_batches = in->iv_events = 0;

    if (codec_pack(&s->msg.base, &buf) == FONTE_OK) {
        static const char topic[] = "$sys.listener";
        BUMP(in, stats_sent, 1); /* before: whoever has it finds it */
        publish(in, topic, sizeof topic - 1, buf.data, buf.len);
        codec_buf_free(&buf);
    }
    free(s);
}

/* ------------------------------------------------------------------ */
/* writer thread: batches */

/* Takes up to batch_max events out of the queue into in->taken; 0 when
 * the writer should stop (stopping and the queue is empty) or when a
 * Stats deadline passed with nothing to do. */
static size_t
queue_take(ingest_t *in, bool *stop)
{
    size_t n = 0;
    *stop = false;
    pthread_mutex_lock(&in->q_mu);
    if ((in->q_n == 0 || in->hold) && !in->stop_writer) {
        int64_t wait_us = 1000000;
        if (in->o.stats_interval_us > 0) {
            wait_us = in->next_stats_us - fonte_mono_us();
            if (wait_us < 0)
                wait_us = 0;
        }
        struct timespec ts = deadline_in(wait_us);
        while ((in->q_n == 0 || in->hold) && !in->stop_writer &&
               pthread_cond_timedwait(&in->q_not_empty, &in->q_mu, &ts) == 0)
            ;
    }
    if (in->hold && !in->stop_writer) {
        pthread_mutex_unlock(&in->q_mu);
        return 0;
    }
    if (in->q_n > 0 && in->q_n < in->o.batch_max && in->o.batch_delay_us > 0 &&
        !in->stop_writer) {
        struct timespec ts = deadline_in(in->o.batch_delay_us);
        while (in->q_n < in->o.batch_max && !in->stop_writer &&
               pthread_cond_timedwait(&in->q_not_empty, &in->q_mu, &ts) == 0)
            ;
    }
    size_t cost = 0;
    while (n < in->o.batch_max && in->q_n > 0) {
        item_t *it = in->ring[in->q_head];
        size_t c = batch_cost(it);
        if (n > 0 && (cost >= in->o.batch_bytes ||
                      c > in->o.batch_bytes - cost))
            break; /* the next batch's */
        cost += c;
        in->q_head = (in->q_head + 1) % in->q_cap;
        in->q_n--;
        in->q_bytes -= item_bytes(it);
        in->taken[n++] = it;
    }
    if (n > 0)
        pthread_cond_broadcast(&in->q_not_full);
    *stop = in->stop_writer && in->q_n == 0 && n == 0;
    pthread_mutex_unlock(&in->q_mu);
    return n;
}

enum { KEEP = 0, DUP = 1, GAP = 2 };

/* Applies the acceptance rule to n taken events, commits, acks. */
static void
write_batch(ingest_t *in, size_t n)
{
    uint8_t *verdict = in->verdict;
    size_t n_put = 0, n_dup = 0, n_gap = 0;

    if (in->store_failed) { /* dropped: no write, and no Ack of any kind */
        BUMP(in, commit_errors, 1);
        return;
    }

    for (size_t i = 0; i < n; i++) {
        const codec_view_t *v = &in->taken[i]->view;
        uint64_t last;
        fonte_err rc = store_batch_watermark(in->batch, v->producer,
                                             v->session, &last);
        verdict[i] = KEEP;
        if (rc == FONTE_OK && v->producer_seq == last + 1) {
            rc = store_batch_put(in->batch, v, in->taken[i]->body,
                                 in->taken[i]->len, NULL);
            n_put += rc == FONTE_OK;
        } else if (rc == FONTE_OK && v->producer_seq <= last) {
            verdict[i] = DUP;
            n_dup++;
        } else if (rc == FONTE_OK) {
            verdict[i] = GAP;
            n_gap++;
        }
        if (rc != FONTE_OK) {
            BUMP(in, put_errors, 1);
            flog_limited(&in->put_log, FLOG_ERROR, "listener",
                         "cannot add an event to the batch: %s",
                         fonte_strerror(rc));
        }
    }
    BUMP(in, duplicates, n_dup);
    BUMP(in, gaps, n_gap);

    int64_t t0 = fonte_mono_us();
    fonte_err rc = store_batch_commit(in->batch);
    int64_t dt = fonte_mono_us() - t0;
    if (rc != FONTE_OK) {
        BUMP(in, commit_errors, 1);
        if (!in->store_failed) {
            const char *why = store_write_error(in->o.store);
            in->store_failed = true;
            flog(FLOG_ERROR, "listener",
                 "commit of %zu events to %s failed: %s. Nothing of it was "
                 "acknowledged, and nothing more will be: the store takes "
                 "no more writes until it is reopened (restart the "
                 "listener once the cause is fixed; the producers resend "
                 "what was not acknowledged)", n_put, store_dir(in->o.store),
                 why != NULL ? why : fonte_strerror(rc));
            if (in->o.on_store_failed != NULL)
                in->o.on_store_failed(in->o.on_store_failed_arg);
        }
        return;
    }
    if (n_put > 0) {
        BUMP(in, events_stored, n_put);
        BUMP(in, batches, 1);
        in->iv_batches++;
        in->iv_events += n_put;
        if (in->n_lat < LAT_SAMPLES)
            in->lat[in->n_lat++] = (double) dt;
    }

    /* Acks, all after the commit. */
    in->round++;
    for (size_t i = 0; n_put > 0 && i < store_batch_sessions(in->batch); i++) {
        const store_session_t *s = store_batch_session(in->batch, i);
        if (s->last == s->committed)
            continue; /* none of its events in this batch (a put failed) */
        send_ack(in, s->producer, s->session, s->last, false);
        ack_slot(in, s->producer, s->session)->dup_round = in->round;
    }
    int64_t now = fonte_mono_us();
    /* ack lag: from the socket to the Ack, for the oldest event stored */
    for (size_t i = 0; n_put > 0 && i < n; i++)
        if (verdict[i] == KEEP) {
            if (in->n_ack_lag < LAT_SAMPLES)
                in->ack_lag[in->n_ack_lag++] =
                    (double) (now - in->taken[i]->recv_us);
            break;
        }
    for (size_t i = 0; (n_dup || n_gap) && i < n; i++) {
        if (verdict[i] == KEEP)
            continue;
        const codec_view_t *v = &in->taken[i]->view;
        uint64_t last;
        if (store_batch_watermark(in->batch, v->producer, v->session, &last))
            continue;
        ack_slot_t *slot = ack_slot(in, v->producer, v->session);
        if (verdict[i] == DUP && slot->dup_round != in->round) {
            slot->dup_round = in->round;
            send_ack(in, v->producer, v->session, last, false);
        } else if (verdict[i] == GAP &&
                   (slot->gap_us == 0 || slot->gap_durable != last ||
                    now - slot->gap_us >= INGEST_GAP_ACK_US)) {
            slot->gap_durable = last;
            slot->gap_us = now;
            send_ack(in, v->producer, v->session, last, true);
        }
    }
}

static void *
writer_main(void *arg)
{
    ingest_t *in = arg;
    bool stop = false;

    while (!stop) {
        size_t n = queue_take(in, &stop);
        if (n > 0) {
            write_batch(in, n);
            for (size_t i = 0; i < n; i++)
                free(in->taken[i]);
        }
        int64_t now = fonte_mono_us();
        if (in->o.stats_interval_us > 0 && now >= in->next_stats_us) {
            publish_stats(in, now);
            in->next_stats_us = now + in->o.stats_interval_us;
        }
    }
    zmq_close(in->pub);
    in->pub = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */

/* For the SUB: a monitor of its connection, in->mon connected to it,
 * before the SUB connects (an event with no reader yet is dropped). */
static bool
make_monitor(ingest_t *in, void *s)
{
    char ep[64];
    int zero = 0;
    snprintf(ep, sizeof ep, "inproc://fonte-ingest-link-%p", (void *) in);
    if (zmq_socket_monitor(s, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                      ZMQ_EVENT_DISCONNECTED |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) !=
        0)
        return false;
    if ((in->mon = zmq_socket(in->o.zmq_ctx, ZMQ_PAIR)) == NULL)
        return false;
    return zmq_setsockopt(in->mon, ZMQ_LINGER, &zero, sizeof zero) == 0 &&
           zmqx_connect(in->mon, ep) == 0;
}

static fonte_err
make_socket(ingest_t *in, int type, const char *endpoint, void **sock_p,
            char *errbuf, size_t errlen)
{
    void *s = zmq_socket(in->o.zmq_ctx, type);
    int linger = type == ZMQ_PUB ? 100 : 0; /* last acks may go out */
    int64_t max_msg = (int64_t) in->o.limits.max_msg;
    int hwm = type == ZMQ_SUB ? in->o.rcvhwm : 100000;
    if (s == NULL) {
        snprintf(errbuf, errlen, "cannot create a socket: %s",
                 zmq_strerror(zmq_errno()));
        return FONTE_EIO;
    }
    int hwm_opt = type == ZMQ_SUB ? ZMQ_RCVHWM : ZMQ_SNDHWM;
    bool ok =
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) == 0 &&
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) == 0 &&
        zmq_setsockopt(s, hwm_opt, &hwm, sizeof hwm) == 0 &&
        (type != ZMQ_SUB || zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) == 0) &&
        (in->o.curve_cert == NULL ||
         fcurve_client(s, in->o.curve_cert, in->o.curve_server) == 0) &&
        (type != ZMQ_SUB || make_monitor(in, s));
    if (!ok || zmqx_connect(s, endpoint) != 0) {
        int e = zmq_errno();
        snprintf(errbuf, errlen, "cannot connect %s to %s: %s",
                 type == ZMQ_SUB ? "SUB" : "PUB", endpoint, zmq_strerror(e));
        zmq_close(s);
        return e == EINVAL || e == EPROTONOSUPPORT ? FONTE_EINVAL : FONTE_EIO;
    }
    *sock_p = s;
    return FONTE_OK;
}

fonte_err
ingest_new(const ingest_opts_t *o, ingest_t **ingest_p, char *errbuf,
           size_t errlen)
{
    fonte_err rc = FONTE_ENOMEM;
    ingest_t *in;

    *ingest_p = NULL;
    if (o->zmq_ctx == NULL || o->store == NULL || o->egress == NULL ||
        o->ingress == NULL || o->batch_max == 0 || o->batch_bytes == 0 ||
        o->queue_max == 0 ||
        o->queue_bytes == 0 || o->batch_delay_us < 0 ||
        o->stats_interval_us < 0) {
        snprintf(errbuf, errlen, "ingest: invalid options");
        return FONTE_EINVAL;
    }
    if ((in = calloc(1, sizeof *in)) == NULL)
        return FONTE_ENOMEM;
    in->o = *o;
    pthread_mutex_init(&in->q_mu, NULL);
    sync_cond_init(&in->q_not_empty);
    sync_cond_init(&in->q_not_full);
    in->egress = strdup(o->egress);
    in->ingress = strdup(o->ingress);
    in->q_cap = o->queue_max;
    in->ring = calloc(o->queue_max, sizeof *in->ring);
    in->taken = calloc(o->batch_max, sizeof *in->taken);
    in->verdict = calloc(o->batch_max, 1);
    in->acks = calloc(ACK_SLOTS, sizeof *in->acks);
    if (!in->egress || !in->ingress || !in->ring || !in->taken || !in->verdict ||
        !in->acks) {
        snprintf(errbuf, errlen, "ingest: out of memory");
        goto fail;
    }
    in->o.egress = in->egress;
    in->o.ingress = in->ingress;
    if ((rc = store_batch_new(o->store, &in->batch)) != FONTE_OK)
        goto fail;
    if ((rc = make_socket(in, ZMQ_SUB, in->egress, &in->sub, errbuf, errlen)) ||
        (rc = make_socket(in, ZMQ_PUB, in->ingress, &in->pub, errbuf, errlen)))
        goto fail;

    in->started_us = fonte_mono_us();
    in->next_stats_us = in->started_us + o->stats_interval_us;
    if (pthread_create(&in->writer_thread, NULL, writer_main, in) != 0) {
        snprintf(errbuf, errlen, "ingest: cannot start the writer thread");
        rc = FONTE_EIO;
        goto fail;
    }
    in->writer_started = true;
    if (pthread_create(&in->recv_thread, NULL, recv_main, in) != 0) {
        snprintf(errbuf, errlen, "ingest: cannot start the receive thread");
        rc = FONTE_EIO;
        goto fail;
    }
    in->recv_started = true;
    *ingest_p = in;
    return FONTE_OK;

fail:
    ingest_destroy(&in);
    return rc;
}

void
ingest_hold(ingest_t *in, bool hold)
{
    pthread_mutex_lock(&in->q_mu);
    in->hold = hold;
    pthread_cond_broadcast(&in->q_not_empty);
    pthread_mutex_unlock(&in->q_mu);
}

void
ingest_destroy(ingest_t **ingest_p)
{
    ingest_t *in = *ingest_p;
    if (in == NULL)
        return;
    *ingest_p = NULL;

    atomic_store(&in->stop_recv, true);
    pthread_mutex_lock(&in->q_mu);
    pthread_cond_broadcast(&in->q_not_full);
    pthread_mutex_unlock(&in->q_mu);
    if (in->recv_started) {
        pthread_join(in->recv_thread, NULL);
    } else {
        if (in->sub) {
            zmq_socket_monitor(in->sub, NULL, 0);
            zmq_close(in->sub);
        }
        if (in->mon)
            zmq_close(in->mon);
    }

    /* The writer commits what is queued, then stops. */
    pthread_mutex_lock(&in->q_mu);
    in->stop_writer = true;
    pthread_cond_broadcast(&in->q_not_empty);
    pthread_mutex_unlock(&in->q_mu);
    if (in->writer_started)
        pthread_join(in->writer_thread, NULL);
    else if (in->pub)
        zmq_close(in->pub);

    for (size_t i = 0; i < in->q_n; i++) /* only if the writer never ran */
        free(in->ring[(in->q_head + i) % in->q_cap]);
    store_batch_destroy(&in->batch);
    pthread_cond_destroy(&in->q_not_empty);
    pthread_cond_destroy(&in->q_not_full);
    pthread_mutex_destroy(&in->q_mu);
    free(in->ring);
    free(in->taken);
    free(in->verdict);
    free(in->acks);
    free(in->egress);
    free(in->ingress);
    free(in);
}
