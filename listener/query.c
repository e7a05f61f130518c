/*
 * query.c - the query server (query.h): one thread owning one ROUTER.
 *
 * A request arrives as [routing id ...][empty delimiter][body]: REQ adds
 * the delimiter itself, a DEALER must send it. Everything up to and
 * including the first empty frame is the envelope and goes back in front
 * of the Reply unchanged. Then exactly one body frame must follow, a
 * Request (codec_request_decode); anything else is answered BAD_REQUEST
 * with the reason, because there is an envelope to answer to. A message
 * with no delimiter at all, or more than QUERY_FRAMES_MAX frames, has no
 * envelope we can trust and is dropped and counted.
 *
 * Dispatch: StatusRequest is O(1) (store counters). ReplayRequest calls
 * the replay handler (query_opts_t.replay), which reads through LevelDB
 * snapshots, so reads never block the writer; a long replay should page
 * its work so that other clients are not held up. The replay module may
 * later move handlers onto worker threads: this loop is the only place
 * that would change.
 *
 * Threads: the ROUTER belongs to the query thread after query_new binds
 * it; counters are relaxed atomics.
 */
#include "query.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "log.h"

struct query {
    query_opts_t o;
    void *router;
    char endpoint[QUERY_ENDPOINT_MAX];
    pthread_t thread;
    bool started;
    atomic_bool stop;
    _Atomic uint64_t requests, status, replay, bad_requests, dropped;
    flog_limiter_t drop_log;
};

void
query_opts_init(query_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = QUERY_ENDPOINT_DEFAULT;
    o->limits = codec_limits_default;
}

const char *
query_endpoint(const query_t *q)
{
    return q->endpoint;
}

void
query_counters(query_t *q, query_counters_t *out)
{
    out->requests = atomic_load(&q->requests);
    out->status = atomic_load(&q->status);
    out->replay = atomic_load(&q->replay);
    out->bad_requests = atomic_load(&q->bad_requests);
    out->dropped = atomic_load(&q->dropped);
}

static fonte_err
pack_reply(Fonte__Reply *rep, codec_buf_t *out)
{
    return codec_pack(&rep->base, out);
}

fonte_err
query_reply_error(Fonte__Reply__Status status, const char *error,
                  codec_buf_t *out)
{
    Fonte__Reply rep = FONTE__REPLY__INIT;
    char text[CODEC_TEXT_MAX];
    snprintf(text, sizeof text, "%s", error); /* bounded, as decoders want */
    rep.status = status;
    rep.error = text;
    return pack_reply(&rep, out);
}

static void
bad_request(query_t *q, const char *what, fonte_err rc, codec_buf_t *out)
{
    char text[CODEC_TEXT_MAX];
    if (rc != FONTE_OK)
        snprintf(text, sizeof text, "%s: %s", what, fonte_strerror(rc));
    else
        snprintf(text, sizeof text, "%s", what);
    atomic_fetch_add(&q->bad_requests, 1);
    query_reply_error(FONTE__REPLY__STATUS__BAD_REQUEST, text, out);
}

static void
answer_status(query_t *q, codec_buf_t *out)
{
    Fonte__Reply rep = FONTE__REPLY__INIT;
    Fonte__StatusReply sr = FONTE__STATUS_REPLY__INIT;
    store_counts_t c;

    store_counts(q->o.store, &c);
    sr.last_seq = c.last_seq;
    sr.events = c.events;
    sr.objects = c.objects;
    sr.sessions = c.sessions;
    sr.data_dir = (char *) store_dir(q->o.store);
    sr.version = FONTE_VERSION;
    rep.body_case = FONTE__REPLY__BODY_STATUS_REPLY;
    rep.status_reply = &sr;
    atomic_fetch_add(&q->status, 1);
    pack_reply(&rep, out);
}

static void
answer_replay(query_t *q, const Fonte__ReplayRequest *req, codec_buf_t *out)
{
    atomic_fetch_add(&q->replay, 1);
    if (q->o.replay == NULL) {
        query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                          "replay is not implemented yet", out);
        return;
    }
    fonte_err rc = q->o.replay(q->o.replay_arg, q->o.store, req, out);
    if (rc != FONTE_OK && out->data == NULL)
        query_reply_error(FONTE__REPLY__STATUS__INTERNAL, fonte_strerror(rc),
                          out);
}

/* The Reply to one body frame (or to a wrong number of them). */
static void
answer(query_t *q, zmq_msg_t *body, size_t n_body, codec_buf_t *out)
{
    Fonte__Request *req = NULL;
    char what[96];

    if (n_body != 1) {
        snprintf(what, sizeof what,
                 "expected one Request frame after the delimiter, got %zu",
                 n_body);
        bad_request(q, what, FONTE_OK, out);
        return;
    }
    fonte_err rc = codec_request_decode(zmq_msg_data(body), zmq_msg_size(body),
                                        &q->o.limits, &req);
    if (rc != FONTE_OK) {
        bad_request(q, "malformed Request", rc, out);
        return;
    }
    switch (req->body_case) {
    case FONTE__REQUEST__BODY_STATUS:
        answer_status(q, out);
        break;
    case FONTE__REQUEST__BODY_REPLAY:
        answer_replay(q, req->replay, out);
        break;
    default:
        bad_request(q, "Request has no body", FONTE_EREQUEST, out);
        break;
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Receives one whole message and answers it. */
static void
serve_one(query_t *q)
{
    zmq_msg_t f[QUERY_FRAMES_MAX];
    size_t n = 0;
    bool overflow = false;
    int more = 1;

    while (more) {
        zmq_msg_t spare, *m = n < QUERY_FRAMES_MAX ? &f[n] : &spare;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, q->router, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &spare) {
            overflow = true;
            zmq_msg_close(m);
        } else
            n++;
    }
    if (n == 0)
        return;

    size_t delim = 0; /* index of the empty frame; 0 = none (0 is the id) */
    for (size_t i = 1; i < n && delim == 0; i++)
        if (zmq_msg_size(&f[i]) == 0)
            delim = i;
    if (delim == 0 || overflow) {
        atomic_fetch_add(&q->dropped, 1);
        flog_limited(&q->drop_log, FLOG_WARN, "listener",
                     "query: dropped a message with %s%zu frames and no "
                     "envelope to answer to", overflow ? "over " : "", n);
        goto done;
    }

    codec_buf_t reply = { 0 };
    answer(q, &f[delim + 1], n - delim - 1, &reply);
    atomic_fetch_add(&q->requests, 1);
    if (reply.data == NULL) { /* out of memory: still say something */
        static const char oom[] = "\x08\x05"; /* Reply{status: INTERNAL} */
        reply.data = malloc(2);
        if (reply.data == NULL)
            goto done;
        memcpy(reply.data, oom, 2);
        reply.len = 2;
    }
    for (size_t i = 0; i <= delim; i++)
        zmq_send(q->router, zmq_msg_data(&f[i]), zmq_msg_size(&f[i]),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(q->router, reply.data, reply.len, ZMQ_DONTWAIT);
    codec_buf_free(&reply);
done:
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *
query_main(void *arg)
{
    query_t *q = arg;
    zmq_pollitem_t pi = { q->router, 0, ZMQ_POLLIN, 0 };

    while (!atomic_load(&q->stop)) {
        int rc = zmq_poll(&pi, 1, 100);
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            flog(FLOG_ERROR, "listener", "query: zmq_poll: %s",
                 zmq_strerror(zmq_errno()));
            break;
        }
        for (int k = 0; rc > 0 && k < 100 && !atomic_load(&q->stop); k++) {
            int ev = 0;
            size_t sz = sizeof ev;
            if (zmq_getsockopt(q->router, ZMQ_EVENTS, &ev, &sz) != 0 ||
                !(ev & ZMQ_POLLIN))
                break;
            serve_one(q);
        }
    }
    zmq_close(q->router);
    q->router = NULL;
    return NULL;
}

fonte_err
query_new(const query_opts_t *o, query_t **query_p, char *errbuf,
          size_t errlen)
{
    query_t *q;
    *query_p = NULL;
    if (o->zmq_ctx == NULL || o->store == NULL || o->endpoint == NULL) {
        snprintf(errbuf, errlen, "query: invalid options");
        return FONTE_EINVAL;
    }
    if ((q = calloc(1, sizeof *q)) == NULL)
        return FONTE_ENOMEM;
    q->o = *o;
    q->o.endpoint = NULL; /* not kept: q->endpoint is the bound one */

    int linger = 0;
    int64_t max_msg = (int64_t) o->limits.max_msg;
    size_t len = sizeof q->endpoint;
    q->router = zmq_socket(o->zmq_ctx, ZMQ_ROUTER);
    if (q->router == NULL ||
        zmq_setsockopt(q->router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(q->router, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) ||
        zmq_bind(q->router, o->endpoint) != 0 ||
        zmq_getsockopt(q->router, ZMQ_LAST_ENDPOINT, q->endpoint, &len) != 0) {
        int e = zmq_errno();
        snprintf(errbuf, errlen, "cannot bind query endpoint %s: %s",
                 o->endpoint, zmq_strerror(e));
        if (q->router)
            zmq_close(q->router);
        free(q);
        return FONTE_EIO;
    }
    if (pthread_create(&q->thread, NULL, query_main, q) != 0) {
        snprintf(errbuf, errlen, "query: cannot start its thread");
        zmq_close(q->router);
        free(q);
        return FONTE_EIO;
    }
    q->started = true;
    *query_p = q;
    return FONTE_OK;
}

void
query_destroy(query_t **query_p)
{
    query_t *q = *query_p;
    if (q == NULL)
        return;
    *query_p = NULL;
    atomic_store(&q->stop, true);
    if (q->started)
        pthread_join(q->thread, NULL);
    free(q);
}
