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
 * Dispatch: StatusRequest is O(1) (store counters) and answered at once
 * on the query thread. A BackupRequest (a copy of the whole store, one
 * at a time) always goes to a worker. A ReplayRequest may take long (the
 * first page of a whole-store replay, a big object), so unless the
 * handler answers it
 * within QUERY_INLINE_US on the query thread itself (a small object's
 * replay does: it then saves two thread hand-overs, 80-170 us of a
 * 0.8 ms request), it goes to a pool of worker threads
 * (query_opts_t.workers) with a copy of its envelope; a worker runs the
 * handler, which reads through LevelDB snapshots (so it never blocks the
 * writer), and queues the packed Reply back; an eventfd wakes the query
 * thread, which sends it. So a big replay holds status requests and
 * other clients' replays for QUERY_INLINE_US at most, and then not while
 * a worker is free; when more than QUERY_PENDING_MAX replays wait, new
 * ones are answered UNAVAILABLE ("busy") at once instead of queueing
 * without bound.
 *
 * Waiting: the query thread sleeps in a blocking receive, except after
 * answering a client that asks back to back (its request came within
 * spin_us of the reply before): then it first polls for that client's
 * next request for up to spin_us (spin_serve). A sleeping thread's
 * wake-up, and the cold caches it wakes to, cost a replay of 300 events
 * about 100 us on a 2-vCPU VM (fonte-bench replay, the same listener
 * with and without, side by side: docs/performance.md); the poll costs
 * at most spin_us of CPU per request, and none once the client pauses.
 *
 * Threads: the ROUTER belongs to the query thread after query_new binds
 * it; the job and done queues are under one mutex (workers wait on its
 * condition variable); counters are relaxed atomics.
 */
#define _GNU_SOURCE /* pthread_attr_setaffinity_np */
#include "query.h"

#include <sched.h>
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "log.h"
#include "zmqx.h"

/* How long the query thread waits for a request before it looks at the
 * stop flag (and, while workers hold jobs, at their finished replies). */
#define QUERY_WAIT_MS 100

/* A replay handed to a worker: the envelope to answer to, the request,
 * and (once done) the packed Reply. */
typedef struct job {
    struct job *next;
    codec_buf_t env[QUERY_FRAMES_MAX];
    size_t n_env;
    Fonte__Request *req;
    codec_buf_t reply;
} job_t;

struct query {
    query_opts_t o;
    void *router;
    char endpoint[QUERY_ENDPOINT_MAX];
    pthread_t thread;
    bool started;
    atomic_bool stop;
    _Atomic uint64_t requests, status, replay, bad_requests, dropped, busy,
        backups;
    atomic_bool backing_up; /* a backup runs: a second one is busy */
    _Atomic uint64_t spun; /* requests picked up by spin_serve */
    bool spin;             /* query thread: poll before sleeping */
    bool polling;          /* query thread: serve_one called by the poll */
    int64_t replied_us;    /* query thread: when the last request answered
                              on it was answered; 0 = none since one went
                              to a worker */
    flog_limiter_t drop_log;

    pthread_mutex_t lock;  /* todo, done, pending, quit */
    pthread_cond_t wake;   /* workers: a job or quit */
    job_t *todo, *todo_tail, *done;
    size_t pending;        /* jobs in todo or being worked on */
    bool quit;
    int efd;               /* workers -> query thread: replies in done */
    pthread_t *workers;
    size_t n_workers;
};

void
query_opts_init(query_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = QUERY_ENDPOINT_DEFAULT;
    o->limits = codec_limits_default;
    o->workers = QUERY_WORKERS_DEFAULT;
    o->cpu = -1;
    o->spin_us = QUERY_SPIN_US_DEFAULT;
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
    out->busy = atomic_load(&q->busy);
    out->backups = atomic_load(&q->backups);
    out->spun = atomic_load(&q->spun);
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
    sr.store_id = (char *) store_id(q->o.store);
    sr.version = FONTE_VERSION;
    rep.body_case = FONTE__REPLY__BODY_STATUS_REPLY;
    rep.status_reply = &sr;
    atomic_fetch_add(&q->status, 1);
    pack_reply(&rep, out);
}

/* Runs the replay handler (deadline_us as query_replay_fn says). False
 * if it gave up at the deadline: nothing is written or counted then. */
static bool
answer_replay(query_t *q, const Fonte__ReplayRequest *req,
              int64_t deadline_us, codec_buf_t *out)
{
    if (q->o.replay == NULL) {
        atomic_fetch_add(&q->replay, 1);
        query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                          "replay is not implemented yet", out);
        return true;
    }
    fonte_err rc = q->o.replay(q->o.replay_arg, q->o.store, req, deadline_us,
                               out);
    if (rc == FONTE_ETIMEOUT && deadline_us != 0 && out->data == NULL)
        return false;
    atomic_fetch_add(&q->replay, 1);
    if (rc != FONTE_OK && out->data == NULL)
        query_reply_error(FONTE__REPLY__STATUS__INTERNAL, fonte_strerror(rc),
                          out);
    return true;
}

/* Copies the store into backup_dir/name (a worker, or the query thread
 * without workers). One at a time: the copy reads the whole store. */
static void
answer_backup(query_t *q, const Fonte__BackupRequest *req, codec_buf_t *out)
{
    char path[4096], err[512] = "";
    Fonte__Reply rep = FONTE__REPLY__INIT;
    Fonte__BackupReply br = FONTE__BACKUP_REPLY__INIT;
    store_backup_info_t info;

    atomic_fetch_add(&q->backups, 1);
    if (q->o.backup_dir == NULL) {
        query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                          "backups are not enabled: start the listener "
                          "with --backup-dir", out);
        return;
    }
    if (atomic_exchange(&q->backing_up, true)) {
        query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                          "busy: a backup is running, try again when it "
                          "is done", out);
        return;
    }
    int64_t t0 = fonte_mono_us();
    snprintf(path, sizeof path, "%s/%s", q->o.backup_dir, req->name);
    fonte_err rc = store_backup(q->o.store, path, &q->stop, &info, err,
                                sizeof err);
    atomic_store(&q->backing_up, false);
    if (rc != FONTE_OK) {
        Fonte__Reply__Status st = FONTE__REPLY__STATUS__INTERNAL;
        if (rc == FONTE_EINVAL)
            st = FONTE__REPLY__STATUS__BAD_REQUEST; /* the name is taken */
        else if (rc == FONTE_ECLOSED)
            st = FONTE__REPLY__STATUS__UNAVAILABLE; /* shutting down */
        flog(FLOG_WARN, "listener", "%s", err);
        query_reply_error(st, err, out);
        return;
    }
    br.path = path;
    br.keys = info.keys;
    br.bytes = info.bytes;
    br.last_seq = info.last_seq;
    br.duration_us = (uint64_t) (fonte_mono_us() - t0);
    rep.body_case = FONTE__REPLY__BODY_BACKUP_REPLY;
    rep.backup_reply = &br;
    flog(FLOG_INFO, "listener", "backup %s: %llu keys, last seq %llu, "
         "%llu ms", path, (unsigned long long) info.keys,
         (unsigned long long) info.last_seq,
         (unsigned long long) (br.duration_us / 1000));
    pack_reply(&rep, out);
}

static void job_free(job_t *j);

/* Hands a replay or a backup to the workers with a copy of its envelope
 * (taking the request). False if too many are pending or memory ran out:
 * the caller answers at once. */
static bool
defer_job(query_t *q, zmq_msg_t *env, size_t n_env, Fonte__Request *req)
{
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return false;
    for (size_t i = 0; i < n_env; i++) {
        size_t n = zmq_msg_size(&env[i]);
        j->env[i].data = malloc(n ? n : 1);
        if (j->env[i].data == NULL) {
            job_free(j);
            return false;
        }
        memcpy(j->env[i].data, zmq_msg_data(&env[i]), n);
        j->env[i].len = n;
        j->n_env = i + 1;
    }
    pthread_mutex_lock(&q->lock);
    bool ok = q->pending < QUERY_PENDING_MAX;
    if (ok) {
        j->req = req;
        if (q->todo_tail)
            q->todo_tail->next = j;
        else
            q->todo = j;
        q->todo_tail = j;
        q->pending++;
        pthread_cond_signal(&q->wake);
    }
    pthread_mutex_unlock(&q->lock);
    if (!ok)
        job_free(j);
    return ok;
}

/* The Reply to one body frame (or to a wrong number of them), unless the
 * request went to a worker (then *deferred is set and out stays empty). */
static void
answer(query_t *q, zmq_msg_t *env, size_t n_env, zmq_msg_t *body,
       size_t n_body, codec_buf_t *out, bool *deferred)
{
    Fonte__Request *req = NULL;
    char what[96];

    *deferred = false;
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
    case FONTE__REQUEST__BODY_BACKUP:
        if (q->o.backup_dir != NULL && q->n_workers > 0) {
            if (defer_job(q, env, n_env, req)) {
                *deferred = true;
                return; /* the job owns req */
            }
            atomic_fetch_add(&q->busy, 1);
            query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                              "busy: too many requests in progress, try "
                              "again", out);
            break;
        }
        answer_backup(q, req->backup, out);
        break;
    case FONTE__REQUEST__BODY_REPLAY:
        if (q->o.replay != NULL && q->n_workers > 0) {
            if (answer_replay(q, req->replay,
                              fonte_mono_us() + QUERY_INLINE_US, out))
                break; /* answered here, within the budget */
            if (defer_job(q, env, n_env, req)) {
                *deferred = true;
                return; /* the job owns req */
            }
            atomic_fetch_add(&q->busy, 1);
            query_reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                              "busy: too many replays in progress, try again",
                              out);
            break;
        }
        answer_replay(q, req->replay, 0, out);
        break;
    default:
        bad_request(q, "Request has no body", FONTE_EREQUEST, out);
        break;
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* zmq_free_fn for a reply handed over to ZeroMQ: hint is the start of
 * its allocation. */
static void
free_reply(void *data, void *hint)
{
    (void) data;
    free(hint);
}

/* Sends envelope + reply on the ROUTER (query thread only). A reply that
 * could not be built still gets an answer: Reply{status: INTERNAL}. */
static void
send_reply(query_t *q, const codec_buf_t *env, size_t n_env,
           codec_buf_t *reply)
{
    static const uint8_t oom[] = { 0x08, 0x05 }; /* Reply{status: INTERNAL} */
    /* counted before it goes: a client that has its reply finds it */
    atomic_fetch_add(&q->requests, 1);
    for (size_t i = 0; i < n_env; i++)
        zmq_send(q->router, env[i].data, env[i].len,
                 ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_msg_t m;
    void *base = reply->base != NULL ? reply->base : reply->data;
    if (reply->data != NULL &&
        zmq_msg_init_data(&m, reply->data, reply->len, free_reply, base) ==
            0) {
        /* zero-copy: the message owns the bytes now (even if the send
         * fails: zmq_msg_close frees them) */
        reply->data = NULL;
        reply->base = NULL;
        reply->len = 0;
        if (zmq_msg_send(&m, q->router, ZMQ_DONTWAIT) < 0)
            zmq_msg_close(&m);
    } else if (reply->data != NULL) {
        zmq_send(q->router, reply->data, reply->len, ZMQ_DONTWAIT);
    } else {
        zmq_send(q->router, oom, sizeof oom, ZMQ_DONTWAIT);
    }
}

/* What serve_one did. */
typedef enum served {
    SERVED_NONE,     /* nothing came (or it was dropped) */
    SERVED_INLINE,   /* answered on the query thread */
    SERVED_DEFERRED, /* handed to a worker */
} served_t;

/* Keeps what spin_serve decides by: a request that came at `at` (after
 * the thread woke or polled) was served so. */
static void
note_served(query_t *q, served_t how, int64_t at)
{
    if (how == SERVED_NONE)
        return;
    if (how == SERVED_DEFERRED) {
        q->spin = false; /* its reply comes from a worker, later */
        q->replied_us = 0;
        return;
    }
    q->spin = q->o.spin_us > 0 && q->replied_us != 0 &&
              at - q->replied_us <= q->o.spin_us;
    q->replied_us = fonte_mono_us();
}

/* Receives one whole message and answers it. wait: block for the first
 * frame (up to the ROUTER's ZMQ_RCVTIMEO, QUERY_WAIT_MS); else take it
 * only if it is there. *arrived: when the first frame was had. A request
 * taken while polling (spin_serve) is counted in `spun` before it is
 * answered, so a client that has its answer sees it counted. */
static served_t
serve_one(query_t *q, bool wait, int64_t *arrived)
{
    served_t served = SERVED_NONE;
    zmq_msg_t f[QUERY_FRAMES_MAX];
    size_t n = 0;
    bool overflow = false;
    int more = 1;

    while (more) {
        zmq_msg_t spare, *m = n < QUERY_FRAMES_MAX ? &f[n] : &spare;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, q->router, n == 0 && !wait ? ZMQ_DONTWAIT : 0) <
            0) {
            zmq_msg_close(m);
            break;
        }
        if (n == 0)
            *arrived = fonte_mono_us();
        more = zmq_msg_more(m);
        if (m == &spare) {
            overflow = true;
            zmq_msg_close(m);
        } else
            n++;
    }
    if (n == 0)
        return SERVED_NONE;

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

    if (q->polling)
        atomic_fetch_add_explicit(&q->spun, 1, memory_order_relaxed);
    codec_buf_t reply = { 0 };
    bool deferred;
    answer(q, f, delim + 1, &f[delim + 1], n - delim - 1, &reply, &deferred);
    served = deferred ? SERVED_DEFERRED : SERVED_INLINE;
    if (!deferred) {
        codec_buf_t env[QUERY_FRAMES_MAX];
        for (size_t i = 0; i <= delim; i++) {
            env[i].data = zmq_msg_data(&f[i]);
            env[i].len = zmq_msg_size(&f[i]);
        }
        send_reply(q, env, delim + 1, &reply);
        codec_buf_free(&reply);
    }
done:
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return served;
}

/* The adaptive poll (query.h, spin_us). After a request answered on this
 * thread, q->spin says whether the one before it came within spin_us of
 * the reply before that: a client asking back to back. If so the next
 * request is polled for (ZMQ_EVENTS, which reads the socket's command
 * mailbox without sleeping) for up to spin_us before the thread sleeps.
 * A poll that times out turns spinning off until a request again comes
 * within spin_us of a reply, so a client that asks now and then costs
 * at most one spin_us of CPU per request, and an idle listener none.
 * The poll ends spin_us after that last reply, not after its own start:
 * a reply long ago (before a worker's job ended) gets one look, no poll.
 * True if a request was served while polling. */
static bool
spin_serve(query_t *q)
{
    int64_t until = q->replied_us + q->o.spin_us;
    do {
        int ev = 0;
        size_t sz = sizeof ev;
        if (zmq_getsockopt(q->router, ZMQ_EVENTS, &ev, &sz) != 0)
            break;
        if (ev & ZMQ_POLLIN) {
            int64_t at = 0;
            q->polling = true;
            served_t how = serve_one(q, false, &at);
            q->polling = false;
            note_served(q, how, at);
            return true;
        }
    } while (!atomic_load_explicit(&q->stop, memory_order_relaxed) &&
             fonte_mono_us() < until);
    q->spin = false;
    return false;
}

static void
job_free(job_t *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n_env; i++)
        codec_buf_free(&j->env[i]);
    if (j->req)
        protobuf_c_message_free_unpacked(&j->req->base, NULL);
    codec_buf_free(&j->reply);
    free(j);
}

static void *
worker_main(void *arg)
{
    query_t *q = arg;

    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->todo == NULL && !q->quit)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->quit)
            break;
        job_t *j = q->todo;
        q->todo = j->next;
        if (q->todo == NULL)
            q->todo_tail = NULL;
        pthread_mutex_unlock(&q->lock);

        if (j->req->body_case == FONTE__REQUEST__BODY_BACKUP)
            answer_backup(q, j->req->backup, &j->reply);
        else
            answer_replay(q, j->req->replay, 0, &j->reply);

        pthread_mutex_lock(&q->lock);
        j->next = q->done;
        q->done = j;
        uint64_t one = 1;
        if (write(q->efd, &one, sizeof one) < 0) {
            /* the counter cannot overflow in practice; the query thread
             * also drains done on its 100 ms poll timeout */
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* Sends every finished replay's Reply (query thread). */
static void
send_done(query_t *q)
{
    uint64_t n;
    if (read(q->efd, &n, sizeof n) < 0) {
        /* EAGAIN after a poll timeout: done may still hold jobs */
    }
    pthread_mutex_lock(&q->lock);
    job_t *list = q->done;
    q->done = NULL;
    pthread_mutex_unlock(&q->lock);
    while (list) {
        job_t *j = list;
        list = j->next;
        send_reply(q, j->env, j->n_env, &j->reply);
        job_free(j);
        pthread_mutex_lock(&q->lock);
        q->pending--;
        pthread_mutex_unlock(&q->lock);
    }
}

static void *
query_main(void *arg)
{
    query_t *q = arg;
    zmq_pollitem_t pi[2] = { { q->router, 0, ZMQ_POLLIN, 0 },
                             { NULL, q->efd, ZMQ_POLLIN, 0 } };

    while (!atomic_load(&q->stop)) {
        if (q->pending == 0) {
            /* No worker holds a job (only this thread changes pending),
             * so nothing can come on efd: wait on the ROUTER alone, in a
             * blocking receive. libzmq does that in one poll(); zmq_poll
             * over two items cost seven poll()s and seven getpid()s a
             * request, each a system call (1.2 us on a VM). */
            if (q->spin && spin_serve(q))
                continue;
            int64_t at = 0;
            served_t how = serve_one(q, true, &at);
            note_served(q, how, at);
            continue;
        }
        int rc = zmq_poll(pi, 2, QUERY_WAIT_MS);
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            flog(FLOG_ERROR, "listener", "query: zmq_poll: %s",
                 zmq_strerror(zmq_errno()));
            break;
        }
        if (rc == 0 || (pi[1].revents & ZMQ_POLLIN))
            send_done(q);
        for (int k = 0; (pi[0].revents & ZMQ_POLLIN) && k < 100 &&
                        !atomic_load(&q->stop);
             k++) {
            int ev = 0;
            size_t sz = sizeof ev;
            if (zmq_getsockopt(q->router, ZMQ_EVENTS, &ev, &sz) != 0 ||
                !(ev & ZMQ_POLLIN))
                break;
            int64_t at = 0;
            served_t how = serve_one(q, false, &at);
            note_served(q, how, at);
        }
    }
    zmq_close(q->router);
    q->router = NULL;
    return NULL;
}

/* Stops and joins the workers, frees every queued job. */
static void
stop_workers(query_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->quit = true;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < q->n_workers; i++)
        pthread_join(q->workers[i], NULL);
    free(q->workers);
    q->workers = NULL;
    q->n_workers = 0;
    for (job_t *lists[2] = { q->todo, q->done }, **l = lists; l < lists + 2;
         l++)
        while (*l) {
            job_t *j = *l;
            *l = j->next;
            job_free(j);
        }
    q->todo = q->todo_tail = q->done = NULL;
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

    int linger = 0, wait_ms = QUERY_WAIT_MS;
    int64_t max_msg = (int64_t) o->limits.max_msg;
    size_t len = sizeof q->endpoint;
    q->router = zmq_socket(o->zmq_ctx, ZMQ_ROUTER);
    if (q->router == NULL ||
        zmq_setsockopt(q->router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(q->router, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) ||
        zmq_setsockopt(q->router, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms) ||
        (o->curve != NULL && fcurve_server(q->router, o->curve) != 0) ||
        zmqx_bind(q->router, o->endpoint) != 0 ||
        zmq_getsockopt(q->router, ZMQ_LAST_ENDPOINT, q->endpoint, &len) != 0) {
        int e = zmq_errno();
        snprintf(errbuf, errlen, "cannot bind query endpoint %s: %s",
                 o->endpoint, zmq_strerror(e));
        if (q->router)
            zmq_close(q->router);
        free(q);
        /* an endpoint libzmq cannot parse is the caller's mistake */
        return e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO
                   ? FONTE_EINVAL
                   : FONTE_EIO;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0 && o->replay != NULL && o->workers > 0) {
        snprintf(errbuf, errlen, "query: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (o->replay != NULL && o->workers > 0) {
        q->workers = calloc(o->workers, sizeof *q->workers);
        if (q->workers == NULL) {
            snprintf(errbuf, errlen, "query: out of memory");
            goto fail;
        }
        for (size_t i = 0; i < o->workers; i++) {
            if (pthread_create(&q->workers[i], NULL, worker_main, q) != 0) {
                snprintf(errbuf, errlen, "query: cannot start worker threads");
                goto fail;
            }
            q->n_workers++;
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (o->cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(o->cpu, &one);
        pthread_attr_setaffinity_np(&attr, sizeof one, &one);
    }
    int e = pthread_create(&q->thread, &attr, query_main, q);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        snprintf(errbuf, errlen, "query: cannot start its thread%s: %s",
                 o->cpu >= 0 ? " on that CPU" : "", strerror(e));
        goto fail;
    }
    pthread_setname_np(q->thread, "fonte-query");
    q->started = true;
    *query_p = q;
    return FONTE_OK;

fail:
    stop_workers(q);
    if (q->efd >= 0)
        close(q->efd);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    zmq_close(q->router);
    free(q);
    return FONTE_EIO;
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
    stop_workers(q);
    if (q->efd >= 0)
        close(q->efd);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    free(q);
}
