/*
 * broker.c - the broker actor: sockets, the forwarding loop, Stats
 * (see broker.h for what it does and its limits).
 *
 * Threads: broker_new() creates and binds every socket in the caller's
 * thread, then hands them all to one loop thread (pthread_create and
 * pthread_join are the full fences ZeroMQ asks for when a socket changes
 * threads); broker_destroy() stops the loop through an inproc pipe, joins
 * it and closes everything. The loop is the only user of the sockets and
 * of the loop-private state; broker_counters() reads a copy the loop
 * refreshes under a mutex (one of its chores, below).
 *
 * The loop polls three sockets: the pipe, ingress (XSUB) and egress
 * (XPUB). A readable side is drained up to BROKER_BURST messages before
 * polling again, as zmq_proxy does, so that a busy broker pays for one
 * poll per burst, not per message. Frames are received into zmq_msg_t
 * and sent on as they are: libzmq hands the buffers over without
 * copying. Everything else is a chore done every CHORES_US while busy,
 * or when a poll times out (at least every POLL_MAX_MS): reading the two
 * socket monitors (connections come and go: the publishers and
 * subscribers gauges), publishing Stats when due, and refreshing the
 * counters' copy. Every socket in zmq_poll costs system calls on each
 * wake-up (libzmq checks each one's mailbox), so keeping the monitors
 * out of the poll set is what brings the loop's cost per message close
 * to zmq_proxy's.
 */
#include "broker.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <zmq.h>

#include "curve.h"
#include "log.h"
#include "topics.h"
#include "zmqx.h"

#define STATS_TOPIC "$sys.broker"
#define STATS_SOURCE "broker"
#define PIPE_ENDPOINT "inproc://broker-pipe"
#define MON_IN_ENDPOINT "inproc://broker-monitor-ingress"
#define MON_OUT_ENDPOINT "inproc://broker-monitor-egress"
#define POLL_MAX_MS 100 /* an idle loop still does its chores this often */
#define CHORES_US 10000 /* a busy loop does them this often */
#define KEY_MAX 32 /* "invalid.<errname>" */

/* Poll item indexes. */
enum { P_PIPE, P_IN, P_OUT, P_COUNT };

struct broker {
    /* Fixed after broker_new. */
    broker_opts_t opts;
    char ingress[BROKER_ENDPOINT_MAX], egress[BROKER_ENDPOINT_MAX];
    void *ctx;
    fcurve_cert_t cert;        /* with curve: the broker's key pair */
    fcurve_auth_t *auth;       /* with curve: ctx's ZAP handler */
    char listener_id[FCURVE_Z85]; /* curve_listener's key, Z85; "": any */
    void *xsub, *xpub;         /* the loop's */
    void *pipe_loop, *mon_in, *mon_out; /* the loop's */
    void *pipe_main;           /* broker_destroy's end of the pipe */
    pthread_t thread;
    bool thread_started;
    int64_t started_us;

    /* Loop-private. */
    broker_counters_t c;
    topics_t *topics;
    flog_limiter_t limiters[FONTE_ERR_COUNT_];
    char invalid_keys[FONTE_ERR_COUNT_][KEY_MAX];
    int64_t next_stats_us;

    /* Shared: the loop's last copy of c. */
    pthread_mutex_t lock;
    broker_counters_t shared;
};

/* ------------------------------------------------------------------ */
/* set-up                                                              */

void
broker_opts_init(broker_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->ingress = BROKER_INGRESS_DEFAULT;
    o->egress = BROKER_EGRESS_DEFAULT;
    o->limits = codec_limits_default;
    o->hwm = BROKER_HWM_DEFAULT;
    o->validate_full = true;
    o->stats_interval_us = BROKER_STATS_INTERVAL_DEFAULT;
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    FLOG_PRINTF_(3, 4);

static void
set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* A bind that fails because of the endpoint's text is the caller's
 * mistake; anything else (port taken, no such interface) is the world's. */
static fonte_err
bind_error(int err)
{
    return err == EINVAL || err == EPROTONOSUPPORT || err == ENOCOMPATPROTO
               ? FONTE_EINVAL
               : FONTE_EIO;
}

/* One network-facing socket: linger 0, message limit, HWMs, bound, with
 * its resolved endpoint copied into resolved. */
static fonte_err
open_side(broker_t *b, int type, const char *name, const char *endpoint,
          void **sock_p, char *resolved, char *errbuf, size_t errlen)
{
    int zero = 0, hwm = b->opts.hwm;
    int64_t max_msg = (int64_t) b->opts.limits.max_msg;
    size_t len = BROKER_ENDPOINT_MAX;

    void *s = zmq_socket(b->ctx, type);
    if (s == NULL) {
        set_err(errbuf, errlen, "cannot create %s socket: %s", name,
                zmq_strerror(errno));
        return FONTE_EIO;
    }
    *sock_p = s;
    if (zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        (b->auth != NULL && fcurve_server(s, &b->cert) != 0)) {
        set_err(errbuf, errlen, "cannot set %s socket options: %s", name,
                zmq_strerror(errno));
        return FONTE_EIO;
    }
    if (zmqx_bind(s, endpoint) != 0) {
        int err = errno;
        set_err(errbuf, errlen, "cannot bind %s %s: %s", name, endpoint,
                zmq_strerror(err));
        return bind_error(err);
    }
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, resolved, &len) != 0) {
        set_err(errbuf, errlen, "cannot read %s endpoint: %s", name,
                zmq_strerror(errno));
        return FONTE_EIO;
    }
    return FONTE_OK;
}

/* A PAIR socket connected to an inproc endpoint, for the loop's poll. */
static fonte_err
open_pair(broker_t *b, const char *endpoint, bool bind, void **sock_p)
{
    int zero = 0;
    void *s = zmq_socket(b->ctx, ZMQ_PAIR);
    if (s == NULL)
        return FONTE_EIO;
    *sock_p = s;
    if (zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0)
        return FONTE_EIO;
    if ((bind ? zmqx_bind(s, endpoint) : zmqx_connect(s, endpoint)) != 0)
        return FONTE_EIO;
    return FONTE_OK;
}

static fonte_err
open_monitor(broker_t *b, void *sock, const char *endpoint, void **mon_p)
{
    if (zmq_socket_monitor(sock, endpoint,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return FONTE_EIO;
    return open_pair(b, endpoint, false, mon_p);
}

static void
close_socket(void **sock_p)
{
    if (*sock_p != NULL) {
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
}

static fonte_err
check_opts(const broker_opts_t *o, char *errbuf, size_t errlen)
{
    const char *bad = NULL;

    if (o->ingress == NULL || strlen(o->ingress) >= BROKER_ENDPOINT_MAX)
        bad = "ingress endpoint";
    else if (o->egress == NULL || strlen(o->egress) >= BROKER_ENDPOINT_MAX)
        bad = "egress endpoint";
    else if (o->hwm < 0)
        bad = "hwm";
    else if (o->limits.max_msg == 0 || o->limits.max_msg > INT64_MAX)
        bad = "max_msg";
    else if (o->stats_interval_us < 0)
        bad = "stats interval";
    else if ((o->curve_cert == NULL) != (o->curve_clients == NULL))
        bad = "curve_cert and curve_clients (--curve-cert, --curve-clients) "
              "go together";
    else if (o->curve_listener != NULL && o->curve_cert == NULL)
        bad = "curve_listener (--curve-listener) needs curve_cert and "
              "curve_clients";
    if (bad == NULL)
        return FONTE_OK;
    set_err(errbuf, errlen, "invalid broker option: %s", bad);
    return FONTE_EINVAL;
}

static void *loop_main(void *arg);

fonte_err
broker_new(const broker_opts_t *o, broker_t **broker_p, char *errbuf,
           size_t errlen)
{
    fonte_err rc;
    broker_t *b = NULL;

    *broker_p = NULL;
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if ((rc = check_opts(o, errbuf, errlen)) != FONTE_OK)
        return rc;
    if ((b = calloc(1, sizeof *b)) == NULL)
        return FONTE_ENOMEM;
    b->opts = *o;
    b->opts.ingress = b->opts.egress = NULL; /* the resolved copies serve */
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return FONTE_ENOMEM;
    }
    rc = FONTE_ENOMEM;
    if ((b->topics = topics_new(BROKER_TOPICS_MAX)) == NULL)
        goto fail;
    for (int i = 0; i < FONTE_ERR_COUNT_; i++)
        snprintf(b->invalid_keys[i], KEY_MAX, "invalid.%s",
                 fonte_errname((fonte_err) i));

    rc = FONTE_EIO;
    if ((b->ctx = zmq_ctx_new()) == NULL) {
        set_err(errbuf, errlen, "cannot create a ZeroMQ context: %s",
                zmq_strerror(errno));
        goto fail;
    }
    if (o->curve_cert != NULL &&
        ((rc = fcurve_cert_load(o->curve_cert, true, &b->cert, errbuf,
                                errlen)) != FONTE_OK ||
         (rc = fcurve_auth_new(b->ctx, o->curve_clients, &b->cert, &b->auth,
                               errbuf, errlen)) != FONTE_OK))
        goto fail;
    if (o->curve_listener != NULL) {
        fcurve_cert_t l;
        if ((rc = fcurve_cert_load(o->curve_listener, false, &l, errbuf,
                                   errlen)) != FONTE_OK)
            goto fail;
        zmq_z85_encode(b->listener_id, l.public_key, FCURVE_KEY);
    } else if (o->curve_cert != NULL) {
        flog(FLOG_WARN, "broker", "CURVE without --curve-listener: Acks "
             "and replays are taken from any admitted key, so a service "
             "could ack another's events; name the listener's public "
             "certificate");
    }
    if ((rc = open_side(b, ZMQ_XSUB, "ingress", o->ingress, &b->xsub,
                        b->ingress, errbuf, errlen)) != FONTE_OK ||
        (rc = open_side(b, ZMQ_XPUB, "egress", o->egress, &b->xpub,
                        b->egress, errbuf, errlen)) != FONTE_OK)
        goto fail;
    if ((rc = open_monitor(b, b->xsub, MON_IN_ENDPOINT, &b->mon_in)) ||
        (rc = open_monitor(b, b->xpub, MON_OUT_ENDPOINT, &b->mon_out)) ||
        (rc = open_pair(b, PIPE_ENDPOINT, true, &b->pipe_loop)) ||
        (rc = open_pair(b, PIPE_ENDPOINT, false, &b->pipe_main))) {
        set_err(errbuf, errlen, "cannot set up the broker's pipes: %s",
                zmq_strerror(errno));
        goto fail;
    }

    b->started_us = fonte_mono_us();
    b->next_stats_us = b->started_us + o->stats_interval_us;
    if (pthread_create(&b->thread, NULL, loop_main, b) != 0) {
        set_err(errbuf, errlen, "cannot start the broker thread");
        rc = FONTE_EIO;
        goto fail;
    }
    b->thread_started = true;
    flog(FLOG_INFO, "broker", "routing %s -> %s (validate=%s%s%s)",
         b->ingress, b->egress, o->validate_full ? "full" : "frames",
         b->auth ? ", CURVE: clients in " : "",
         b->auth ? o->curve_clients : "");
    *broker_p = b;
    return FONTE_OK;

fail:
    broker_destroy(&b);
    return rc;
}

const char *
broker_ingress_endpoint(const broker_t *b)
{
    return b->ingress;
}

const char *
broker_egress_endpoint(const broker_t *b)
{
    return b->egress;
}

void
broker_counters(broker_t *b, broker_counters_t *out)
{
    pthread_mutex_lock(&b->lock);
    *out = b->shared;
    pthread_mutex_unlock(&b->lock);
    if (b->auth != NULL)
        fcurve_auth_counts(b->auth, &out->auth_allowed, &out->auth_denied);
}

void
broker_destroy(broker_t **broker_p)
{
    if (broker_p == NULL || *broker_p == NULL)
        return;
    broker_t *b = *broker_p;
    if (b->thread_started) {
        /* The pipe has room for one message: this cannot block. */
        zmq_send(b->pipe_main, "$TERM", 5, 0);
        pthread_join(b->thread, NULL);
    }
    close_socket(&b->pipe_main);
    close_socket(&b->pipe_loop);
    close_socket(&b->mon_in);
    close_socket(&b->mon_out);
    close_socket(&b->xsub);
    close_socket(&b->xpub);
    fcurve_auth_destroy(&b->auth); /* its socket too, before the term */
    explicit_bzero(&b->cert, sizeof b->cert); /* the secret key */
    if (b->ctx != NULL)
        zmqx_ctx_term(b->ctx); /* every socket had linger 0: prompt */
    topics_destroy(&b->topics);
    pthread_mutex_destroy(&b->lock);
    free(b);
    *broker_p = NULL;
}

/* ------------------------------------------------------------------ */
/* the loop                                                            */

/* Writes up to 64 bytes of an untrusted topic as printable ASCII. */
static void
printable(char *out, size_t cap, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t n = 0;

    for (size_t i = 0; i < len && n + 4 < cap && i < 64; i++)
        out[n++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char) p[i] : '?';
    if (len > 64 && n + 4 < cap)
        out[n++] = '.', out[n++] = '.', out[n++] = '.';
    out[n] = '\0';
}

static void
count_invalid(broker_t *b, fonte_err rc, const zmq_msg_t *topic,
              size_t nframes)
{
    char shown[80];

    if ((unsigned) rc >= FONTE_ERR_COUNT_)
        rc = FONTE_EINTERNAL;
    b->c.invalid++;
    b->c.invalid_by[rc]++;
    printable(shown, sizeof shown, zmq_msg_data((zmq_msg_t *) topic),
              zmq_msg_size((zmq_msg_t *) topic));
    flog_limited(&b->limiters[rc], FLOG_WARN, "broker",
                 "dropped a message of %zu frame(s) on topic '%s': %s "
                 "(invalid.%s)", nframes, shown, fonte_strerror(rc),
                 fonte_errname(rc));
}

/* Frames mode: two frames, sizes within the limit, a known topic class. */
static fonte_err
check_frames(const codec_frame_t *f, const codec_limits_t *lim,
             codec_class_t *cls)
{
    if (f[0].size > lim->max_msg || f[1].size > lim->max_msg)
        return FONTE_ETOOBIG;
    return codec_topic_class(f[0].data, f[0].size, lim, cls);
}

static bool
topic_is(const codec_frame_t *topic, const char *name)
{
    return topic->size == strlen(name) &&
           memcmp(topic->data, name, topic->size) == 0;
}

/* What only the listener publishes: Acks, replayed events (on
 * $replay.<target>.<type>, or flagged on their own topic: seen in full
 * validation only), ReplayAudits and its Stats. */
static bool
listener_only(codec_class_t cls, const codec_frame_t *topic,
              const codec_view_t *v)
{
    switch (cls) {
    case CODEC_ACK:
    case CODEC_REPLAY:
    case CODEC_AUDIT:
        return true;
    case CODEC_STATS:
        return topic_is(topic, "$sys.listener");
    default:
        return v->has_replay;
    }
}

/* Validates a whole message of nframes (only the first two are kept in
 * m[0..1]); FONTE_OK if it may be forwarded. */
static fonte_err
check_message(broker_t *b, zmq_msg_t *m, size_t nframes)
{
    codec_frame_t f[2];
    codec_class_t cls;
    fonte_err rc;

    if (nframes != 2)
        return FONTE_EFRAMES;
    f[0] = (codec_frame_t) { zmq_msg_data(&m[0]), zmq_msg_size(&m[0]) };
    f[1] = (codec_frame_t) { zmq_msg_data(&m[1]), zmq_msg_size(&m[1]) };
    codec_view_t v;
    v.has_replay = false;
    rc = b->opts.validate_full ? codec_check(f, 2, &b->opts.limits, &cls, &v)
                               : check_frames(f, &b->opts.limits, &cls);
    if (rc != FONTE_OK)
        return rc;
    if (cls == CODEC_STATS && topic_is(&f[0], STATS_TOPIC))
        return FONTE_ERESERVED; /* only this broker speaks on it */
    if (b->listener_id[0] != '\0' && listener_only(cls, &f[0], &v)) {
        /* the ZAP handler made the peer's public key its User-Id */
        const char *who = zmq_msg_gets(&m[0], "User-Id");
        if (who == NULL || strcmp(who, b->listener_id) != 0)
            return FONTE_ERESERVED;
    }
    return FONTE_OK;
}

static void
count_topic(broker_t *b, const zmq_msg_t *topic)
{
    const void *data = zmq_msg_data((zmq_msg_t *) topic);
    size_t len = zmq_msg_size((zmq_msg_t *) topic);

    /* Stats keys are protobuf strings, and the table copies them: in
     * frames mode the topic bytes have not been checked, so only short,
     * well-formed text is tracked (full mode's topics are both). */
    if (!b->opts.validate_full &&
        (len > CODEC_TOPIC_PREFIX_MAX + b->opts.limits.max_type ||
         memchr(data, 0, len) != NULL || !codec_utf8_valid(data, len))) {
        b->c.untracked++;
        return;
    }
    if (!topics_add(b->topics, data, len, 1))
        b->c.untracked++;
}

static void
reset_msg(zmq_msg_t *m)
{
    zmq_msg_close(m);
    zmq_msg_init(m);
}

/* Receives the rest of a multi-part message after its first frame;
 * frames past the second go to scratch and are released. Returns the
 * frame count, or 0 if the socket failed mid-message. */
static size_t
recv_rest(void *sock, zmq_msg_t *m, zmq_msg_t *scratch, uint64_t *bytes)
{
    size_t n = 1;
    bool more = zmq_msg_more(&m[0]);

    while (more) {
        zmq_msg_t *dst = n < 2 ? &m[n] : scratch;
        /* The rest of a message is already here (delivery is atomic). */
        while (zmq_msg_recv(dst, sock, 0) == -1) {
            if (errno != EINTR)
                return 0;
        }
        *bytes += zmq_msg_size(dst);
        more = zmq_msg_more(dst);
        n++;
        if (dst == scratch)
            reset_msg(scratch);
    }
    return n;
}

/* Moves up to BROKER_BURST messages from ingress to egress. */
static void
forward_burst(broker_t *b)
{
    zmq_msg_t m[2], scratch;

    zmq_msg_init(&m[0]);
    zmq_msg_init(&m[1]);
    zmq_msg_init(&scratch);
    for (int i = 0; i < BROKER_BURST; i++) {
        if (zmq_msg_recv(&m[0], b->xsub, ZMQ_DONTWAIT) == -1)
            break; /* EAGAIN: drained; EINTR: poll again */
        uint64_t bytes = zmq_msg_size(&m[0]);
        size_t n = recv_rest(b->xsub, m, &scratch, &bytes);
        b->c.messages_in++;
        b->c.bytes_in += bytes;
        fonte_err rc = n == 0 ? FONTE_EIO : check_message(b, m, n);
        if (rc != FONTE_OK) {
            count_invalid(b, rc, &m[0], n);
            reset_msg(&m[0]);
            reset_msg(&m[1]);
            continue;
        }
        count_topic(b, &m[0]);
        if (zmq_msg_send(&m[0], b->xpub, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
            zmq_msg_send(&m[1], b->xpub, ZMQ_DONTWAIT) == -1) {
            /* XPUB drops rather than blocks; this is a closing socket. */
            reset_msg(&m[0]);
            reset_msg(&m[1]);
            continue;
        }
        b->c.messages_out++;
        b->c.bytes_out += bytes;
    }
    zmq_msg_close(&m[0]);
    zmq_msg_close(&m[1]);
    zmq_msg_close(&scratch);
}

/* Passes (un)subscriptions from egress to ingress, unchanged. Anything
 * else a subscriber sends (an XSUB may send any message upstream) would
 * reach every publisher: dropped whole and counted. So is a prefix
 * longer than any topic the broker routes ("$replay." + target + "." +
 * type): it matches nothing, and every publisher's XPUB would keep it. */
static void
forward_subscriptions(broker_t *b)
{
    zmq_msg_t m;

    zmq_msg_init(&m);
    for (int i = 0; i < BROKER_BURST; i++) {
        if (zmq_msg_recv(&m, b->xpub, ZMQ_DONTWAIT) == -1)
            break;
        const unsigned char *d = zmq_msg_data(&m);
        size_t len = zmq_msg_size(&m);
        if (zmq_msg_more(&m) || len == 0 || d[0] > 1 ||
            len - 1 > CODEC_TOPIC_PREFIX_MAX + b->opts.limits.max_type) {
            b->c.upstream_dropped++;
            while (zmq_msg_more(&m) &&
                   zmq_msg_recv(&m, b->xpub, ZMQ_DONTWAIT) != -1)
                ; /* the rest of it is here: delivery is atomic */
            reset_msg(&m);
            continue;
        }
        if (d[0] == 1) {
            b->c.subscribes++;
            b->c.subscriptions++;
        } else {
            b->c.unsubscribes++;
            /* XPUB passes an unsubscription of a prefix never subscribed
             * from a peer that does not filter its own (libzmq 4.3) */
            if (b->c.subscriptions > 0)
                b->c.subscriptions--;
        }
        if (zmq_msg_send(&m, b->xsub, ZMQ_DONTWAIT) == -1)
            reset_msg(&m);
    }
    zmq_msg_close(&m);
}

/* Reads the monitor events waiting on mon: connections accepted and
 * closed on one side. */
static void
read_monitor(void *mon, uint64_t *connects, uint64_t *disconnects,
             int64_t *gauge)
{
    zmq_msg_t m;

    zmq_msg_init(&m);
    for (;;) {
        if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) == -1)
            break;
        /* Frame 1: uint16 event, uint32 value; frame 2: the address. */
        if (zmq_msg_size(&m) >= 2) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
            if (ev == ZMQ_EVENT_ACCEPTED) {
                (*connects)++;
                (*gauge)++;
            } else if (ev == ZMQ_EVENT_DISCONNECTED) {
                (*disconnects)++;
                if (*gauge > 0)
                    (*gauge)--;
            }
        }
        while (zmq_msg_more(&m) && zmq_msg_recv(&m, mon, 0) != -1)
            ;
    }
    zmq_msg_close(&m);
}

/* ------------------------------------------------------------------ */
/* Stats                                                               */

#define STATS_COUNTERS_MAX (20 + FONTE_ERR_COUNT_)
#define STATS_GAUGES_MAX 5

typedef struct stats_builder {
    Fonte__Stats msg;
    Fonte__Stats__CountersEntry cent[STATS_COUNTERS_MAX];
    Fonte__Stats__CountersEntry *cptr[STATS_COUNTERS_MAX];
    Fonte__Stats__TopicsEntry tent[BROKER_STATS_TOPICS];
    Fonte__Stats__TopicsEntry *tptr[BROKER_STATS_TOPICS];
    Fonte__Stats__GaugesEntry gent[STATS_GAUGES_MAX];
    Fonte__Stats__GaugesEntry *gptr[STATS_GAUGES_MAX];
} stats_builder_t;

static void
add_counter(stats_builder_t *s, const char *key, uint64_t value)
{
    size_t i = s->msg.n_counters++;
    fonte__stats__counters_entry__init(&s->cent[i]);
    s->cent[i].key = (char *) key;
    s->cent[i].value = value;
    s->cptr[i] = &s->cent[i];
}

static void
add_gauge(stats_builder_t *s, const char *key, double value)
{
    if (s->msg.n_gauges == STATS_GAUGES_MAX)
        return;
    size_t i = s->msg.n_gauges++;
    fonte__stats__gauges_entry__init(&s->gent[i]);
    s->gent[i].key = (char *) key;
    s->gent[i].value = value;
    s->gptr[i] = &s->gent[i];
}

/* Builds the Stats of now; every string points into b or static text. */
static void
build_stats(broker_t *b, stats_builder_t *s, int64_t now)
{
    const broker_counters_t *c = &b->c;
    topics_entry_t top[BROKER_STATS_TOPICS];

    fonte__stats__init(&s->msg);
    s->msg.source = (char *) STATS_SOURCE;
    s->msg.uptime_us = (uint64_t) (now - b->started_us);
    s->msg.counters = s->cptr;
    s->msg.topics = s->tptr;
    s->msg.gauges = s->gptr;

    add_counter(s, "messages_in", c->messages_in);
    add_counter(s, "bytes_in", c->bytes_in);
    add_counter(s, "messages_out", c->messages_out);
    add_counter(s, "bytes_out", c->bytes_out);
    add_counter(s, "invalid", c->invalid);
    for (int i = 0; i < FONTE_ERR_COUNT_; i++)
        if (c->invalid_by[i] > 0)
            add_counter(s, b->invalid_keys[i], c->invalid_by[i]);
    add_counter(s, "subscribes", c->subscribes);
    add_counter(s, "unsubscribes", c->unsubscribes);
    add_counter(s, "upstream_dropped", c->upstream_dropped);
    add_counter(s, "topics_untracked", c->untracked);
    add_counter(s, "stats_sent", c->stats_sent);
    add_counter(s, "ingress_connects", c->ingress_connects);
    add_counter(s, "ingress_disconnects", c->ingress_disconnects);
    add_counter(s, "egress_connects", c->egress_connects);
    add_counter(s, "egress_disconnects", c->egress_disconnects);
    if (b->auth != NULL) {
        uint64_t allowed, denied;
        fcurve_auth_counts(b->auth, &allowed, &denied);
        add_counter(s, "auth_allowed", allowed);
        add_counter(s, "auth_denied", denied);
    }

    size_t n = topics_top(b->topics, top, BROKER_STATS_TOPICS);
    for (size_t i = 0; i < n; i++) {
        fonte__stats__topics_entry__init(&s->tent[i]);
        s->tent[i].key = (char *) top[i].topic;
        s->tent[i].value = top[i].count;
        s->tptr[i] = &s->tent[i];
    }
    s->msg.n_topics = n;

    add_gauge(s, "publishers", (double) c->publishers);
    add_gauge(s, "subscribers", (double) c->subscribers);
    add_gauge(s, "subscriptions", (double) c->subscriptions);
    add_gauge(s, "topics", (double) topics_size(b->topics));
    add_gauge(s, "stats_interval_us", (double) b->opts.stats_interval_us);
}

static void
publish_stats(broker_t *b, int64_t now)
{
    stats_builder_t s;
    codec_buf_t body;

    build_stats(b, &s, now);
    if (codec_pack(&s.msg.base, &body) != FONTE_OK) {
        flog(FLOG_ERROR, "broker", "cannot encode Stats: out of memory");
        return;
    }
    if (zmq_send(b->xpub, STATS_TOPIC, strlen(STATS_TOPIC),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1 &&
        zmq_send(b->xpub, body.data, body.len, ZMQ_DONTWAIT) != -1)
        b->c.stats_sent++;
    codec_buf_free(&body);
}

static int
poll_timeout_ms(const broker_t *b, int64_t now)
{
    if (b->opts.stats_interval_us == 0)
        return POLL_MAX_MS;
    int64_t ms = (b->next_stats_us - now + 999) / 1000;
    return ms < 0 ? 0 : ms > POLL_MAX_MS ? POLL_MAX_MS : (int) ms;
}

/* What does not need doing per message: connection events, Stats, and
 * the copy of the counters broker_counters() reads. */
static void
chores(broker_t *b, int64_t now)
{
    read_monitor(b->mon_in, &b->c.ingress_connects,
                 &b->c.ingress_disconnects, &b->c.publishers);
    read_monitor(b->mon_out, &b->c.egress_connects, &b->c.egress_disconnects,
                 &b->c.subscribers);
    if (b->opts.stats_interval_us > 0 && now >= b->next_stats_us) {
        publish_stats(b, now);
        b->next_stats_us = now + b->opts.stats_interval_us;
    }
    b->c.copies++;
    pthread_mutex_lock(&b->lock);
    b->shared = b->c;
    pthread_mutex_unlock(&b->lock);
}

static void *
loop_main(void *arg)
{
    broker_t *b = arg;
    zmq_pollitem_t items[P_COUNT] = {
        [P_PIPE] = { b->pipe_loop, 0, ZMQ_POLLIN, 0 },
        [P_IN] = { b->xsub, 0, ZMQ_POLLIN, 0 },
        [P_OUT] = { b->xpub, 0, ZMQ_POLLIN, 0 },
    };
    int64_t now = fonte_mono_us(), chores_us = 0;

    prctl(PR_SET_NAME, "fonte-broker"); /* for top -H and perf */
    for (;;) {
        int n = zmq_poll(items, P_COUNT, poll_timeout_ms(b, now));
        if (n == -1 && errno != EINTR) {
            flog(FLOG_ERROR, "broker", "poll failed, stopping: %s",
                 zmq_strerror(errno));
            break;
        }
        if (n > 0 && (items[P_PIPE].revents & ZMQ_POLLIN))
            break; /* $TERM: the only message the pipe carries */
        if (n > 0 && (items[P_OUT].revents & ZMQ_POLLIN))
            forward_subscriptions(b);
        if (n > 0 && (items[P_IN].revents & ZMQ_POLLIN))
            forward_burst(b);
        now = fonte_mono_us();
        if (n <= 0 || now - chores_us >= CHORES_US) {
            chores(b, now);
            chores_us = now;
        }
    }
    return NULL;
}
