/*
 * client.c - a fonte client's lifecycle and the calls an application
 * makes on it: publish, flush, subscribe, dispatch (fonte.h has the
 * contracts; docs/client.md the guide).
 *
 * The idea: the application's threads never touch a long-lived ZeroMQ
 * socket. fonte_publish stamps and encodes the event in the caller's
 * thread, appends it to the outbox (waiting for room up to the publish
 * timeout) and wakes the I/O thread (io.c) only if it sleeps; the I/O
 * thread sends, resends and trims the outbox on Acks. Received events go
 * the other way through the inbox to fonte_dispatch, which runs the
 * handlers in the caller's thread.
 */
#define _GNU_SOURCE /* pthread_mutex_clocklock */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#include "event.h"
#include "flags.h"
#include "log.h"
#include "sync.h"
#include "zmqx.h"

#define DISPATCH_MAX 4096 /* events handled per fonte_dispatch call */
#define PREFIX_MAX 128

static const char *
env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

FONTE_EXPORT void
fonte_client_opts_init(fonte_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->service = env_or("FONTE_SERVICE", NULL);
    o->ingress = env_or("FONTE_INGRESS", FONTE_INGRESS_DEFAULT);
    o->egress = env_or("FONTE_EGRESS", FONTE_EGRESS_DEFAULT);
    o->query = env_or("FONTE_QUERY", FONTE_QUERY_DEFAULT);
    o->outbox_max_events = 65536;
    o->outbox_max_bytes = (size_t) 64 << 20;
    o->window = 8192;
    o->sndhwm = 0;
    o->resend_timeout_ms = 1000;
    o->publish_timeout_ms = 5000;
    o->query_timeout_ms = 2000;
    o->query_retries = 3;
    o->inbox_max = 100000;
    o->inbox_max_bytes = (size_t) 64 << 20;
    /* the broker's and listener's variable: a client allowing more than
     * they do would publish an event the broker's socket refuses, and
     * resend it for ever */
    const char *mm = env_or("FONTE_MAX_MSG", NULL);
    uint64_t max_msg = 0;
    o->max_msg = mm != NULL && flags_parse_size(mm, &max_msg) &&
                         max_msg > 0 && max_msg <= INT64_MAX
                     ? (size_t) max_msg
                     : codec_limits_default.max_msg;
    o->max_reply = codec_limits_default.max_reply;
    o->curve_cert = env_or("FONTE_CURVE_CERT", NULL);
    o->curve_broker = env_or("FONTE_CURVE_BROKER", NULL);
    o->curve_listener = env_or("FONTE_CURVE_LISTENER", NULL);
    o->reliable = true;
}

void *
client_socket(fonte_client_t *c, int type, const char *endpoint,
              size_t max_msg)
{
    void *s = zmq_socket(c->zctx, type);
    int linger = 0;
    int64_t maxmsg = (int64_t) max_msg;

    if (s == NULL)
        return NULL;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        (c->curve &&
         fcurve_client(s, &c->cert,
                       type == ZMQ_REQ ? &c->listener_cert
                                       : &c->broker_cert) != 0) ||
        zmqx_connect(s, endpoint) != 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        return NULL;
    }
    return s;
}

void *
client_query_take(fonte_client_t *c)
{
    void *s = NULL;

    pthread_mutex_lock(&c->qpool_mu);
    if (c->n_qpool > 0)
        s = c->qpool[--c->n_qpool];
    pthread_mutex_unlock(&c->qpool_mu);
    if (s == NULL &&
        (s = client_socket(c, ZMQ_REQ, c->query, c->opts.max_reply)) != NULL)
        atomic_fetch_add(&c->query_connects, 1);
    return s;
}

void
client_query_give(fonte_client_t *c, void *sock)
{
    if (sock == NULL)
        return;
    pthread_mutex_lock(&c->qpool_mu);
    if (c->n_qpool < CLIENT_QPOOL_MAX) {
        c->qpool[c->n_qpool++] = sock;
        sock = NULL;
    }
    pthread_mutex_unlock(&c->qpool_mu);
    if (sock != NULL)
        zmq_close(sock);
}

void
client_wake(fonte_client_t *c)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: awake anyway. */
    ssize_t n = write(c->wake_fd, &one, sizeof one);
    (void) n;
}

static fonte_err
draw_session(uint64_t *session)
{
    uint64_t s = 0;

    while (s == 0) {
        ssize_t n = getrandom(&s, sizeof s, 0);
        if (n != (ssize_t) sizeof s && !(n < 0 && errno == EINTR))
            return FONTE_EIO;
    }
    *session = s;
    return FONTE_OK;
}

static fonte_err
check_opts(const fonte_client_opts_t *o)
{
    if (o->service == NULL)
        return FONTE_EPRODUCER;
    fonte_err rc = codec_check_producer(o->service, strlen(o->service));
    if (rc != FONTE_OK)
        return rc;
    if (o->ingress == NULL || o->egress == NULL || o->query == NULL ||
        o->outbox_max_events == 0 || o->outbox_max_bytes == 0 ||
        o->window == 0 || o->resend_timeout_ms <= 0 ||
        o->query_timeout_ms <= 0 || o->query_retries <= 0 ||
        o->query_spin_us < 0 ||
        o->inbox_max == 0 || o->inbox_max_bytes == 0 || o->max_msg == 0 ||
        o->max_reply == 0 ||
        /* ZMQ_MAXMSGSIZE is an int64_t: more would be -1, no limit */
        (uint64_t) o->max_msg > INT64_MAX ||
        (uint64_t) o->max_reply > INT64_MAX ||
        o->sndhwm < 0)
        return FONTE_EINVAL;
    if (o->curve_cert == NULL
            ? o->curve_broker != NULL || o->curve_listener != NULL
            : o->curve_broker == NULL)
        return FONTE_EINVAL;
    return FONTE_OK;
}

/* The CURVE certificates of the options, if any: c->curve then. */
static fonte_err
load_curve(fonte_client_t *c, const fonte_client_opts_t *o)
{
    char err[512];
    if (o->curve_cert == NULL)
        return FONTE_OK;
    if (fcurve_cert_load(o->curve_cert, true, &c->cert, err, sizeof err) ||
        fcurve_cert_load(o->curve_broker, false, &c->broker_cert, err,
                         sizeof err) ||
        fcurve_cert_load(o->curve_listener ? o->curve_listener
                                           : o->curve_broker,
                         false, &c->listener_cert, err, sizeof err)) {
        flog(FLOG_ERROR, "client", "%s", err);
        return FONTE_EINVAL;
    }
    c->curve = true;
    /* loaded: the caller's strings are not kept */
    c->opts.curve_cert = c->opts.curve_broker = c->opts.curve_listener = NULL;
    return FONTE_OK;
}

/* The three sockets the I/O thread will own, made here so that a bad
 * endpoint fails fonte_client_new. */
static fonte_err
open_sockets(fonte_client_t *c)
{
    int hwm = c->opts.sndhwm;
    /* The SUBs' queues, drained at once by the I/O thread into the inbox:
     * as deep as the inbox, and never shallow, so that a burst meets the
     * inbox's bounds, which count what they drop, rather than ZeroMQ's,
     * which drop silently. */
    size_t deep = c->opts.inbox_max < 1000 ? 1000 : c->opts.inbox_max;
    int rcvhwm = deep > (size_t) INT32_MAX ? INT32_MAX : (int) deep;

    if (hwm == 0)
        hwm = c->opts.window > (size_t) INT32_MAX / 2
                  ? INT32_MAX : (int) (2 * c->opts.window);
    /* An XPUB with NODROP rather than a PUB: at its HWM a send fails with
     * EAGAIN instead of dropping, so the I/O thread paces itself to the
     * connection and never loses its own events (downstream drops are
     * still healed by resends). It receives the broker's subscriptions,
     * which io.c discards. */
    c->pub = zmq_socket(c->zctx, ZMQ_XPUB);
    if (c->pub == NULL)
        return FONTE_EIO;
    int linger = 0, nodrop = 1;
    if (zmq_setsockopt(c->pub, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(c->pub, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(c->pub, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop) != 0 ||
        (c->curve && fcurve_client(c->pub, &c->cert, &c->broker_cert) != 0))
        return FONTE_EIO;
    if (zmqx_connect(c->pub, c->ingress) != 0)
        return FONTE_EINVAL;
    /* Acks and replays come back on their own socket so that heavy user
     * subscriptions can never push an Ack out of a full queue. */
    if ((c->ctrl = client_socket(c, ZMQ_SUB, c->egress, c->opts.max_msg)) ==
        NULL)
        return errno == ENOMEM ? FONTE_ENOMEM : FONTE_EINVAL;
    /* as deep as the user SUB: a replay burst must not push Acks out */
    if (zmq_setsockopt(c->ctrl, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) != 0)
        return FONTE_EIO;
    if (c->opts.reliable &&
        zmq_setsockopt(c->ctrl, ZMQ_SUBSCRIBE, c->ack_topic,
                       strlen(c->ack_topic)) != 0)
        return FONTE_EIO;
    if (zmq_setsockopt(c->ctrl, ZMQ_SUBSCRIBE, c->replay_prefix,
                       strlen(c->replay_prefix)) != 0)
        return FONTE_EIO;
    if ((c->user = client_socket(c, ZMQ_SUB, c->egress, c->opts.max_msg)) ==
        NULL)
        return FONTE_EIO;
    if (zmq_setsockopt(c->user, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) != 0)
        return FONTE_EIO;
    return FONTE_OK;
}

static char *
dup_or_null(const char *s, bool *failed)
{
    char *d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

FONTE_EXPORT fonte_err
fonte_client_new(const fonte_client_opts_t *o, fonte_client_t **client_p)
{
    fonte_client_t *c = NULL;
    fonte_err rc;
    bool nomem = false;

    if (client_p == NULL || o == NULL)
        return FONTE_EINVAL;
    *client_p = NULL;
    if ((rc = check_opts(o)) != FONTE_OK)
        return rc;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return FONTE_ENOMEM;
    c->wake_fd = -1;
    pthread_mutex_init(&c->pub_mu, NULL);
    pthread_mutex_init(&c->subs_mu, NULL);
    pthread_mutex_init(&c->qpool_mu, NULL);
    c->opts = *o;
    /* more in flight than the outbox holds means nothing, and a window
     * near SIZE_MAX would wrap acked + 1 + window (io.c) */
    if (c->opts.window > c->opts.outbox_max_events)
        c->opts.window = c->opts.outbox_max_events;
    if (c->opts.window > UINT32_MAX)
        c->opts.window = UINT32_MAX;
    c->service = dup_or_null(o->service, &nomem);
    c->ingress = dup_or_null(o->ingress, &nomem);
    c->egress = dup_or_null(o->egress, &nomem);
    c->query = dup_or_null(o->query, &nomem);
    rc = FONTE_ENOMEM;
    if (nomem)
        goto fail;
    c->opts.service = c->service;
    c->opts.ingress = c->ingress;
    c->opts.egress = c->egress;
    c->opts.query = c->query;
    c->service_len = strlen(c->service);
    c->lim = codec_limits_default;
    c->lim.max_msg = o->max_msg;
    c->lim.max_reply = o->max_reply;
    snprintf(c->ack_topic, sizeof c->ack_topic, "%s%s", CODEC_TOPIC_ACK,
             c->service);
    snprintf(c->replay_prefix, sizeof c->replay_prefix, "%s%s.",
             CODEC_TOPIC_REPLAY, c->service);
    if ((rc = draw_session(&c->session)) != FONTE_OK ||
        (rc = load_curve(c, o)) != FONTE_OK)
        goto fail;

    rc = FONTE_ENOMEM;
    c->outbox = outbox_new(o->outbox_max_events, o->outbox_max_bytes, 1);
    c->inbox = inbox_new(o->inbox_max, o->inbox_max_bytes);
    if (c->outbox == NULL || c->inbox == NULL)
        goto fail;
    rc = FONTE_EIO;
    if ((c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        goto fail;
    if ((c->zctx = zmq_ctx_new()) == NULL)
        goto fail;
    if ((rc = open_sockets(c)) != FONTE_OK)
        goto fail;
    if (pthread_create(&c->io, NULL, client_io_main, c) != 0) {
        rc = FONTE_EIO;
        goto fail;
    }
    c->io_started = true;
    *client_p = c;
    return FONTE_OK;

fail:
    fonte_client_destroy(&c);
    return rc;
}

FONTE_EXPORT void
fonte_client_destroy(fonte_client_t **client_p)
{
    fonte_client_t *c = client_p ? *client_p : NULL;

    if (c == NULL)
        return;
    if (c->outbox != NULL)
        outbox_close(c->outbox);
    if (c->io_started) {
        atomic_store(&c->stop, true);
        client_wake(c);
        pthread_join(c->io, NULL);
    } else {
        /* Never handed over: the sockets are still ours. */
        if (c->pub)
            zmq_close(c->pub);
        if (c->ctrl)
            zmq_close(c->ctrl);
        if (c->user)
            zmq_close(c->user);
    }
    while (c->n_qpool > 0)
        zmq_close(c->qpool[--c->n_qpool]);
    if (c->zctx != NULL)
        zmqx_ctx_term(c->zctx);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    outbox_destroy(&c->outbox);
    inbox_destroy(&c->inbox);
    for (size_t i = 0; i < c->n_subs; i++)
        free(c->subs[i].prefix);
    free(c->subs);
    free(c->scratch);
    free(c->service);
    free(c->ingress);
    free(c->egress);
    free(c->query);
    pthread_mutex_destroy(&c->pub_mu);
    pthread_mutex_destroy(&c->subs_mu);
    pthread_mutex_destroy(&c->qpool_mu);
    explicit_bzero(&c->cert, sizeof c->cert); /* the secret key */
    free(c);
    *client_p = NULL;
}

FONTE_EXPORT const char *
fonte_client_service(const fonte_client_t *c)
{
    return c->service;
}

FONTE_EXPORT uint64_t
fonte_client_session(const fonte_client_t *c)
{
    return c->session;
}

/* ------------------------------------------------------------------ */
/* publish                                                             */

/* Validates and encodes spec as event seq into one buffer: the topic
 * bytes followed by the Event bytes. */
static fonte_err
encode(fonte_client_t *c, const fonte_event_spec_t *spec, uint64_t seq,
       uint8_t **data_p, uint32_t *topic_len, uint32_t *body_len)
{
    Fonte__Event ev = FONTE__EVENT__INIT;
    Fonte__Event__MetaEntry entries[CODEC_META_MAX];
    Fonte__Event__MetaEntry *meta[CODEC_META_MAX];
    char id[CODEC_ID_MAX];
    fonte_err rc;

    if (spec->n_meta > CODEC_META_MAX)
        return FONTE_EMETA;
    if ((spec->payload == NULL && spec->payload_len > 0) ||
        (spec->depends_on == NULL && spec->n_depends_on > 0) ||
        (spec->meta == NULL && spec->n_meta > 0))
        return FONTE_EINVAL;
    codec_format_id(id, c->service, c->service_len, c->session, seq);
    ev.id = id;
    ev.type = (char *) spec->type;
    ev.object = (char *) spec->object;
    ev.depends_on = (char **) spec->depends_on;
    ev.n_depends_on = spec->n_depends_on;
    ev.producer = c->service;
    ev.session = c->session;
    ev.producer_seq = seq;
    ev.time_us = fonte_wall_us();
    ev.payload_type = (char *) (spec->payload_type ? spec->payload_type : "");
    ev.payload.data = (uint8_t *) spec->payload;
    ev.payload.len = spec->payload_len;
    for (size_t i = 0; i < spec->n_meta; i++) {
        Fonte__Event__MetaEntry m = FONTE__EVENT__META_ENTRY__INIT;
        m.key = (char *) spec->meta[i].key;
        m.value = (char *) (spec->meta[i].value ? spec->meta[i].value : "");
        entries[i] = m;
        meta[i] = &entries[i];
    }
    ev.meta = meta;
    ev.n_meta = spec->n_meta;
    if ((rc = codec_event_validate(&ev, &c->lim)) != FONTE_OK)
        return rc;

    size_t tlen = strlen(ev.type);
    size_t blen = protobuf_c_message_get_packed_size(&ev.base);
    if (blen > c->lim.max_msg || blen > UINT32_MAX) /* the outbox's width */
        return FONTE_ETOOBIG;
    uint8_t *data = malloc(tlen + blen);
    if (data == NULL)
        return FONTE_ENOMEM;
    memcpy(data, ev.type, tlen);
    protobuf_c_message_pack(&ev.base, data + tlen);
    *data_p = data;
    *topic_len = (uint32_t) tlen;
    *body_len = (uint32_t) blen;
    return FONTE_OK;
}

FONTE_EXPORT fonte_err
fonte_publish(fonte_client_t *c, const fonte_event_spec_t *spec)
{
    uint8_t *data = NULL;
    uint32_t tlen, blen;
    bool wake = false;
    fonte_err rc;

    if (c == NULL || spec == NULL)
        return FONTE_EINVAL;
    int64_t deadline = sync_deadline_ms(c->opts.publish_timeout_ms);
    if (deadline < 0) {
        pthread_mutex_lock(&c->pub_mu);
    } else {
        /* another publisher holds the lock while it waits for room in
         * the outbox: this one waits as long, on the monotonic clock */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = (int64_t) ts.tv_nsec +
                     (int64_t) c->opts.publish_timeout_ms * 1000000;
        ts.tv_sec += (time_t) (ns / 1000000000);
        ts.tv_nsec = (long) (ns % 1000000000);
        if (pthread_mutex_clocklock(&c->pub_mu, CLOCK_MONOTONIC, &ts) != 0)
            return FONTE_EFULL;
    }
    uint64_t seq = outbox_next_seq(c->outbox);
    rc = encode(c, spec, seq, &data, &tlen, &blen);
    if (rc == FONTE_OK) {
        rc = outbox_push(c->outbox, data, tlen, blen, deadline, &wake);
        if (rc != FONTE_OK)
            free(data);
    }
    if (rc == FONTE_OK)
        atomic_fetch_add(&c->published, 1);
    pthread_mutex_unlock(&c->pub_mu);
    if (wake)
        client_wake(c);
    return rc;
}

FONTE_EXPORT fonte_err
fonte_flush(fonte_client_t *c, int timeout_ms)
{
    if (c == NULL)
        return FONTE_EINVAL;
    int64_t deadline = sync_deadline_ms(timeout_ms);
    /* Everything published so far: the seq before the next one. Taking
     * pub_mu would make flush wait behind a publisher blocked on a full
     * outbox; the outbox's own view is exact enough. */
    uint64_t last = outbox_next_seq(c->outbox) - 1;
    return outbox_wait_acked(c->outbox, last, deadline);
}

/* ------------------------------------------------------------------ */
/* subscribe and dispatch                                              */

FONTE_EXPORT fonte_err
fonte_subscribe(fonte_client_t *c, const char *prefix,
                fonte_handler_fn handler, void *arg)
{
    if (c == NULL || prefix == NULL || handler == NULL ||
        strlen(prefix) > PREFIX_MAX || prefix[0] == '$')
        return FONTE_EINVAL;
    char *copy = strdup(prefix);
    if (copy == NULL)
        return FONTE_ENOMEM;
    pthread_mutex_lock(&c->subs_mu);
    if (c->n_subs == c->cap_subs) {
        size_t cap = c->cap_subs ? 2 * c->cap_subs : 8;
        client_sub_t *subs = realloc(c->subs, cap * sizeof *subs);
        if (subs == NULL) {
            pthread_mutex_unlock(&c->subs_mu);
            free(copy);
            return FONTE_ENOMEM;
        }
        c->subs = subs;
        c->cap_subs = cap;
    }
    c->subs[c->n_subs++] = (client_sub_t) { copy, handler, arg };
    pthread_mutex_unlock(&c->subs_mu);
    client_wake(c);
    return FONTE_OK;
}

/* Copies the handlers whose prefix matches type into c->scratch (only the
 * dispatching thread uses it). Returns how many, or 0 on ENOMEM. */
static size_t
match(fonte_client_t *c, const char *type)
{
    size_t n = 0;

    pthread_mutex_lock(&c->subs_mu);
    if (c->cap_scratch < c->n_subs) {
        client_sub_t *s = realloc(c->scratch, c->n_subs * sizeof *s);
        if (s == NULL) {
            pthread_mutex_unlock(&c->subs_mu);
            return 0;
        }
        c->scratch = s;
        c->cap_scratch = c->n_subs;
    }
    for (size_t i = 0; i < c->n_subs; i++)
        if (strncmp(type, c->subs[i].prefix, strlen(c->subs[i].prefix)) == 0)
            c->scratch[n++] = c->subs[i];
    pthread_mutex_unlock(&c->subs_mu);
    return n;
}

FONTE_EXPORT fonte_err
fonte_dispatch(fonte_client_t *c, int timeout_ms, size_t *n_out)
{
    fonte_event_t **events;
    size_t n;

    if (n_out != NULL)
        *n_out = 0;
    if (c == NULL)
        return FONTE_EINVAL;
    if ((events = malloc(DISPATCH_MAX * sizeof *events)) == NULL)
        return FONTE_ENOMEM;
    n = inbox_take(c->inbox, sync_deadline_ms(timeout_ms), events,
                   DISPATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        size_t m = match(c, fonte_event_type(events[i]));
        for (size_t j = 0; j < m; j++)
            c->scratch[j].handler(events[i], c->scratch[j].arg);
        event_destroy(&events[i]);
    }
    free(events);
    if (n_out != NULL)
        *n_out = n;
    return n > 0 ? FONTE_OK : FONTE_ETIMEOUT;
}

FONTE_EXPORT void
fonte_client_stats(fonte_client_t *c, fonte_client_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->published = atomic_load(&c->published);
    out->sent = atomic_load(&c->sent);
    out->resent = atomic_load(&c->resent);
    out->acked = outbox_acked(c->outbox);
    out->gap_acks = atomic_load(&c->gap_acks);
    out->resend_timeouts = atomic_load(&c->resend_timeouts);
    inbox_counts(c->inbox, &out->received, &out->inbox_dropped);
    out->invalid = atomic_load(&c->invalid);
    outbox_usage(c->outbox, &out->outbox_events, &out->outbox_bytes);
    out->query_connects = atomic_load(&c->query_connects);
}
