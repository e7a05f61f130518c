/*
 * io.c - a client's I/O thread: the only user of its publisher socket (an
 * XPUB with NODROP connected to the broker's ingress) and its two SUBs (on the broker's egress: "ctrl" for this
 * producer's Acks and the replays aimed at this service, "user" for the
 * application's subscriptions).
 *
 * Sending is go-back-N over the outbox (design.md §4, common rule 8):
 *  - next_send is the seq of the next event to put on the wire. At most
 *    `window` events beyond the last Ack are in flight, so that a resend
 *    burst stays within the queues' high-water marks on the way.
 *  - An Ack (exact topic "$ack.<service>", same producer AND session:
 *    prefix matching also delivers "$ack.<service>x") drops the events it
 *    covers. A gap Ack for D rewinds next_send to D+1, but not twice for
 *    the same D within the resend timeout (a burst after one drop makes
 *    many gap Acks).
 *  - When the oldest unacked event was last sent a resend timeout ago
 *    (a lost tail, a restarted broker or listener, an Ack lost), rewind
 *    next_send to it.
 *  - Nothing is sent until this client's own Ack subscription comes back
 *    on the publisher socket (drain_pub): the broker has taken it from
 *    the "ctrl" SUB and passed it upstream, to the listener's PUB as to
 *    us, so the first Acks are not dropped for want of it (they would be
 *    healed by a resend, a resend timeout later). An unreliable client
 *    waits for any subscription. Either way, at most a resend timeout.
 *  - The publisher socket never drops: at its HWM a send fails (EAGAIN),
 *    the burst stops there and is retried 1 ms later. Without a
 *    connection (broker down) sends go nowhere, as with a PUB; the
 *    resend timeout covers that.
 * The thread sleeps in zmq_poll on both SUBs and an eventfd that
 * publishers write only when the outbox says the thread sleeps.
 *
 * Receiving: events on "user" ("$" topics excepted) and replays on
 * "ctrl" are checked (codec_event_decode), wrapped, and queued in the
 * inbox for fonte_dispatch; bad messages are counted and dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "client.h"
#include "event.h"
#include "log.h"

#define IO_BURST 1024     /* sends, and receives per socket, per wake-up */
#define IO_MAX_SLEEP_MS 100

typedef struct io_state {
    fonte_client_t *c;
    uint64_t next_send;
    bool blocked;         /* the publisher socket is at its HWM */
    bool upstream;        /* our Ack subscription came back upstream */
    int64_t started_us;
    uint64_t gap_d;       /* D of the last gap-triggered resend */
    int64_t gap_us;       /* when it started */
    int64_t resend_us;    /* resend timeout, microseconds */
    flog_limiter_t warn;
} io_state_t;

static void
apply_subscriptions(fonte_client_t *c)
{
    pthread_mutex_lock(&c->subs_mu);
    while (c->subs_applied < c->n_subs) {
        const char *p = c->subs[c->subs_applied++].prefix;
        if (zmq_setsockopt(c->user, ZMQ_SUBSCRIBE, p, strlen(p)) != 0)
            flog(FLOG_WARN, "libfonte", "cannot subscribe to '%s': %s", p,
                 zmq_strerror(errno));
    }
    pthread_mutex_unlock(&c->subs_mu);
}

/* Sends up to IO_BURST events from next_send within the window.
 * Returns how many. */
static size_t
send_burst(io_state_t *st, uint64_t acked)
{
    fonte_client_t *c = st->c;
    outbox_item_t *items[IO_BURST];
    uint64_t until = c->opts.reliable ? acked + 1 + c->opts.window
                                      : UINT64_MAX;
    size_t n = outbox_peek(c->outbox, st->next_send, until, items, IO_BURST);
    int64_t now = fonte_mono_us();

    size_t done = 0;
    st->blocked = false;
    for (; done < n; done++) {
        outbox_item_t *it = items[done];
        /* The HWM is checked on a message's first part only: once it is
         * accepted, so is the second. */
        if (zmq_send(c->pub, it->data, it->topic_len,
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN) {
                st->blocked = true;
                break;
            }
            flog_limited(&st->warn, FLOG_WARN, "libfonte", "send: %s",
                         zmq_strerror(errno));
        } else if (zmq_send(c->pub, it->data + it->topic_len, it->body_len,
                            ZMQ_DONTWAIT) < 0) {
            flog_limited(&st->warn, FLOG_WARN, "libfonte", "send: %s",
                         zmq_strerror(errno));
        }
        if (it->sent_us != 0)
            atomic_fetch_add(&c->resent, 1);
        it->sent_us = now;
        st->next_send = it->seq + 1;
    }
    atomic_fetch_add(&c->sent, done);
    if (done > 0 && !c->opts.reliable)
        outbox_ack(c->outbox, items[done - 1]->seq);
    return done;
}

/* Reads one whole message into frames (at most 2 kept); false if the
 * socket had nothing. *nframes counts every part received. */
static bool
recv_message(void *sock, zmq_msg_t frames[2], size_t *nframes)
{
    int more = 0;
    size_t more_len = sizeof more;

    *nframes = 0;
    zmq_msg_init(&frames[0]);
    zmq_msg_init(&frames[1]);
    if (zmq_msg_recv(&frames[0], sock, ZMQ_DONTWAIT) < 0)
        return false;
    *nframes = 1;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
    while (more) {
        zmq_msg_t extra, *dst = *nframes < 2 ? &frames[1] : &extra;
        if (dst == &extra)
            zmq_msg_init(&extra);
        if (zmq_msg_recv(dst, sock, 0) < 0)
            break;
        if (dst == &extra)
            zmq_msg_close(&extra);
        (*nframes)++;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
    }
    return true;
}

static void
close_frames(zmq_msg_t frames[2])
{
    zmq_msg_close(&frames[0]);
    zmq_msg_close(&frames[1]);
}

static void
handle_ack(io_state_t *st, const zmq_msg_t frames[2])
{
    fonte_client_t *c = st->c;
    Fonte__Ack *ack = NULL;

    if (codec_ack_decode(zmq_msg_data((zmq_msg_t *) &frames[1]),
                         zmq_msg_size((zmq_msg_t *) &frames[1]), &c->lim,
                         &ack) != FONTE_OK) {
        atomic_fetch_add(&c->invalid, 1);
        return;
    }
    if (strcmp(ack->producer, c->service) != 0 || ack->session != c->session) {
        fonte__ack__free_unpacked(ack, NULL);
        return;
    }
    uint64_t d = ack->durable_seq;
    bool gap = ack->gap;
    fonte__ack__free_unpacked(ack, NULL);

    if (!outbox_ack(c->outbox, d)) {
        atomic_fetch_add(&c->invalid, 1);
        flog_limited(&st->warn, FLOG_WARN, "libfonte", "an Ack for "
                     "producer_seq %llu of this session, beyond what it "
                     "published: ignored (another store's listener, or a "
                     "forged Ack, on the broker?)", (unsigned long long) d);
        return;
    }
    if (!gap)
        return;
    atomic_fetch_add(&c->gap_acks, 1);
    int64_t now = fonte_mono_us();
    if (d == st->gap_d && now - st->gap_us < st->resend_us)
        return;
    if (st->next_send > d + 1) {
        st->next_send = d + 1;
        st->gap_d = d;
        st->gap_us = now;
    }
}

/* Decodes an event message and queues it for the handlers. */
static void
queue_event(io_state_t *st, const zmq_msg_t frames[2], size_t nframes)
{
    fonte_client_t *c = st->c;
    codec_frame_t f[2];
    Fonte__Event *pb = NULL;

    for (size_t i = 0; i < 2; i++) {
        f[i].data = zmq_msg_data((zmq_msg_t *) &frames[i]);
        f[i].size = zmq_msg_size((zmq_msg_t *) &frames[i]);
    }
    if (codec_event_decode(f, nframes, &c->lim, &pb) != FONTE_OK) {
        atomic_fetch_add(&c->invalid, 1);
        return;
    }
    size_t bytes = event_mem_estimate(pb, f[0].size + f[1].size);
    fonte_event_t *e = event_new(pb);
    if (e != NULL)
        inbox_push(c->inbox, e, bytes); /* it counts */
}

static bool
topic_is(const zmq_msg_t *frame, const char *s, size_t len, bool prefix)
{
    size_t n = zmq_msg_size((zmq_msg_t *) frame);
    return (prefix ? n >= len : n == len) &&
           memcmp(zmq_msg_data((zmq_msg_t *) frame), s, len) == 0;
}

static void
drain_ctrl(io_state_t *st)
{
    fonte_client_t *c = st->c;
    zmq_msg_t frames[2];
    size_t nframes;
    size_t ack_len = strlen(c->ack_topic);
    size_t replay_len = strlen(c->replay_prefix);

    for (int i = 0; i < IO_BURST && recv_message(c->ctrl, frames, &nframes);
         i++) {
        if (topic_is(&frames[0], c->ack_topic, ack_len, false)) {
            if (nframes == 2)
                handle_ack(st, frames);
            else
                atomic_fetch_add(&c->invalid, 1);
        } else if (topic_is(&frames[0], c->replay_prefix, replay_len, true)) {
            queue_event(st, frames, nframes);
        }
        /* else: another producer's Acks ("$ack.<service>x") */
        close_frames(frames);
    }
}

/* The broker's (un)subscriptions arriving on the XPUB. The first one
 * says the connection is up and the broker has told us what its
 * subscribers want (the listener's "" among them, when it runs): only
 * then is it worth sending, since an XPUB drops what nobody subscribed
 * to. Without this a new producer's first burst went nowhere while the
 * connection was being made, and was all sent again after a gap Ack. */
static void
drain_pub(io_state_t *st)
{
    char buf[256];
    for (int i = 0; i < IO_BURST; i++) {
        int n = zmq_recv(st->c->pub, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        if (n < 1 || buf[0] != 1)
            continue; /* an unsubscription */
        size_t len = strlen(st->c->ack_topic);
        if (!st->c->opts.reliable ||
            ((size_t) n == len + 1 && memcmp(buf + 1, st->c->ack_topic,
                                               len) == 0))
            st->upstream = true;
    }
}

static void
drain_user(io_state_t *st)
{
    fonte_client_t *c = st->c;
    zmq_msg_t frames[2];
    size_t nframes;

    for (int i = 0; i < IO_BURST && recv_message(c->user, frames, &nframes);
         i++) {
        const char *t = zmq_msg_data(&frames[0]);
        if (zmq_msg_size(&frames[0]) > 0 && t[0] != '$')
            queue_event(st, frames, nframes);
        close_frames(frames);
    }
}

/* Rewinds to the oldest unacked event once it has waited a resend
 * timeout; returns the poll timeout (ms) until that could next happen. */
static long
check_resend(io_state_t *st)
{
    fonte_client_t *c = st->c;

    if (!c->opts.reliable)
        return IO_MAX_SLEEP_MS;
    outbox_item_t *old = outbox_oldest(c->outbox);
    if (old == NULL || old->sent_us == 0)
        return IO_MAX_SLEEP_MS;
    int64_t due = old->sent_us + st->resend_us - fonte_mono_us();
    if (due <= 0) {
        /* rewound already, and not resent yet (the socket is blocked):
         * the same timeout, not another one */
        if (st->next_send != old->seq) {
            st->next_send = old->seq;
            atomic_fetch_add(&c->resend_timeouts, 1);
        }
        return 0;
    }
    long ms = (long) ((due + 999) / 1000);
    return ms < IO_MAX_SLEEP_MS ? ms : IO_MAX_SLEEP_MS;
}

void *
client_io_main(void *arg)
{
    fonte_client_t *c = arg;
    io_state_t st = { .c = c, .next_send = 1, .gap_d = UINT64_MAX,
                      .resend_us = (int64_t) c->opts.resend_timeout_ms * 1000,
                      .started_us = fonte_mono_us() };
    zmq_pollitem_t items[4] = {
        { c->ctrl, 0, ZMQ_POLLIN, 0 },
        { c->user, 0, ZMQ_POLLIN, 0 },
        { NULL, c->wake_fd, ZMQ_POLLIN, 0 },
        { c->pub, 0, ZMQ_POLLIN, 0 },
    };

    while (!atomic_load(&c->stop)) {
        apply_subscriptions(c);
        uint64_t acked = outbox_acked(c->outbox);
        if (st.next_send <= acked)
            st.next_send = acked + 1;
        /* Hold back until the broker's subscriptions have arrived (or a
         * resend timeout has passed, in case none ever will). */
        if (!st.upstream && fonte_mono_us() - st.started_us >= st.resend_us)
            st.upstream = true;
        size_t sent = st.upstream ? send_burst(&st, acked) : 0;
        long timeout = check_resend(&st);

        bool window_full = c->opts.reliable &&
                           st.next_send >= acked + 1 + c->opts.window;
        /* An XPUB always reports POLLOUT (libzmq's dist has_out), so a
         * blocked socket is retried after a millisecond instead. */
        if (!st.upstream) {
            /* woken by the subscription itself (the XPUB is polled) */
            int64_t left = st.started_us + st.resend_us - fonte_mono_us();
            long ms = left > 0 ? (long) ((left + 999) / 1000) : 0;
            timeout = ms < IO_MAX_SLEEP_MS ? ms : IO_MAX_SLEEP_MS;
        } else if (st.blocked)
            timeout = 1; /* even with a resend due: it is blocked too */
        else if (sent == IO_BURST)
            timeout = 0;
        else if (timeout > 0 && !window_full && !outbox_arm(c->outbox,
                                                             st.next_send))
            timeout = 0;
        if (zmq_poll(items, 4, timeout) < 0 && errno != EINTR) {
            flog_limited(&st.warn, FLOG_WARN, "libfonte", "poll: %s",
                         zmq_strerror(errno));
            usleep(1000);
        }
        if (items[2].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t n = read(c->wake_fd, &v, sizeof v);
            (void) n;
        }
        drain_ctrl(&st);
        drain_user(&st);
        if (items[3].revents & ZMQ_POLLIN)
            drain_pub(&st);
    }
    zmq_close(c->pub);
    zmq_close(c->ctrl);
    zmq_close(c->user);
    c->pub = c->ctrl = c->user = NULL;
    return NULL;
}
