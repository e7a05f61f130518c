/*
 * query.h - the listener's query endpoint: a ROUTER socket that answers
 * each Request with exactly one Reply (design.md §3).
 *
 * Clients are REQ sockets, or DEALER sockets that send an empty delimiter
 * frame before the body. StatusRequest is answered from the store's
 * counters; ReplayRequest goes to a handler plugged in by the replay
 * module (query_opts_t.replay) - without one it gets UNAVAILABLE.
 * Malformed requests get a BAD_REQUEST Reply saying what was wrong,
 * never silence; only a message without any routing envelope (nothing to
 * reply to) is dropped, and counted.
 */
#ifndef FONTE_QUERY_H
#define FONTE_QUERY_H

#include <stdint.h>

#include "codec.h"
#include "curve.h"
#include "fonte/errors.h"
#include "store.h"

#define QUERY_ENDPOINT_DEFAULT "tcp://127.0.0.1:7703"
#define QUERY_ENDPOINT_MAX 256
#define QUERY_FRAMES_MAX 16 /* routing frames + delimiter + body */
#define QUERY_WORKERS_DEFAULT 4 /* replay worker threads */
#define QUERY_PENDING_MAX 64    /* replays queued or running, then "busy" */
#define QUERY_INLINE_US 2000    /* a replay tried on the query thread */
#define QUERY_SPIN_US_DEFAULT 500 /* query_opts_t.spin_us */

typedef struct query query_t;

/* Answers one ReplayRequest: fills *reply with a packed Reply (allocated
 * with malloc; query.c frees it with codec_buf_free after sending).
 * Called on a worker thread (several at once: it must be thread-safe),
 * with the store to read through snapshots (store_snap_new), and
 * deadline_us 0. The query thread first calls it itself with deadline_us
 * a fonte_mono_us() time QUERY_INLINE_US away: a handler that cannot
 * answer by then (or would rather not try) returns FONTE_ETIMEOUT without
 * a reply, having changed nothing, and the request goes to a worker. Any
 * other non-OK return without a reply makes query.c answer INTERNAL with
 * the error's text. */
typedef fonte_err (*query_replay_fn)(void *arg, store_t *store,
                                     const Fonte__ReplayRequest *req,
                                     int64_t deadline_us, codec_buf_t *reply);

typedef struct query_opts {
    void *zmq_ctx;        /* borrowed */
    const char *endpoint; /* ROUTER bind; "tcp://127.0.0.1:*" = ephemeral */
    store_t *store;       /* borrowed; outlives the query server */
    codec_limits_t limits;
    query_replay_fn replay; /* NULL: replays are UNAVAILABLE */
    void *replay_arg;
    size_t workers;         /* replay worker threads; 0 = on the query
                               thread itself (for tests) */
    int cpu;                /* run the query thread on this CPU only;
                               -1 (default) = wherever the OS puts it */
    int64_t spin_us;        /* after answering a client that asks back to
                               back, poll for its next request this long
                               before sleeping (query.c, spin_serve);
                               0 = never; QUERY_SPIN_US_DEFAULT */
    const char *backup_dir; /* BackupRequests write new stores under
                               it; NULL: they are UNAVAILABLE */
    const fcurve_cert_t *curve; /* a CURVE server with this key pair (a
                               ZAP handler in zmq_ctx decides who gets
                               in); NULL: none */
} query_opts_t;

/* Counters since start (thread-safe copies). */
typedef struct query_counters {
    uint64_t requests;     /* Requests answered */
    uint64_t status;       /* StatusRequests */
    uint64_t replay;       /* ReplayRequests */
    uint64_t bad_requests; /* answered BAD_REQUEST */
    uint64_t dropped;      /* no envelope to answer to */
    uint64_t busy;         /* replays refused: QUERY_PENDING_MAX waiting */
    uint64_t backups;      /* BackupRequests answered, any status */
    uint64_t spun;         /* requests picked up while polling (spin_us)
                              rather than after sleeping */
} query_counters_t;

/* Default endpoint, default limits, no replay handler, 4 workers. */
void query_opts_init(query_opts_t *o);

/* Binds the ROUTER and starts the query thread. FONTE_EIO with a line in
 * errbuf ("cannot bind query endpoint tcp://...: Address already in
 * use") on a bind failure, FONTE_EINVAL for bad options, FONTE_ENOMEM. */
fonte_err query_new(const query_opts_t *o, query_t **query_p, char *errbuf,
                    size_t errlen);

/* The endpoint as bound (ephemeral port resolved). Valid until
 * query_destroy; thread-safe. */
const char *query_endpoint(const query_t *q);

void query_counters(query_t *q, query_counters_t *out);

/* Stops the thread (within ~100 ms), closes the socket, frees. NULL-safe,
 * nulls *query_p. */
void query_destroy(query_t **query_p);

/* Packs Reply{status, error} into *out (malloc'd; codec_buf_free). For
 * handlers that fail. FONTE_ENOMEM. */
fonte_err query_reply_error(Fonte__Reply__Status status, const char *error,
                            codec_buf_t *out);

#endif
