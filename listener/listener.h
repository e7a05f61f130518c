/*
 * listener.h - fonte's listener as an actor: the source of truth
 * (design.md §2, §4, §5). It subscribes to everything on the broker's
 * egress, stores every live event exactly once per producer session in
 * LevelDB (store.h), acks producers and publishes Stats through the
 * broker's ingress (ingest.h), and answers queries on a ROUTER
 * (query.h). fonte-listener (main.c) and `fonte up` run it; tests run it
 * in process with ephemeral ports.
 */
#ifndef FONTE_LISTENER_H
#define FONTE_LISTENER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fonte/errors.h"
#include "ingest.h"
#include "query.h"
#include "replay.h"
#include "store.h"

#define LISTENER_EGRESS_DEFAULT "tcp://127.0.0.1:7702"
#define LISTENER_INGRESS_DEFAULT "tcp://127.0.0.1:7701"
#define LISTENER_QUERY_DEFAULT QUERY_ENDPOINT_DEFAULT
#define LISTENER_DATA_DEFAULT "./fonte-data"
#define LISTENER_CACHE_MB_DEFAULT 8

typedef struct listener listener_t;

typedef struct listener_opts {
    const char *egress;    /* broker XPUB to subscribe to */
    const char *ingress;   /* broker XSUB to publish acks/stats/replays into */
    const char *query;     /* ROUTER bind endpoint; "tcp://127.0.0.1:*" = ephemeral */
    const char *data;      /* data directory */
    bool sync;             /* --sync=batch (true, default) | none */
    size_t batch_max;      /* events per WriteBatch (2000) */
    size_t batch_bytes;    /* and their cost, event and key bytes (4 MiB) */
    int64_t batch_delay_us;/* how long the writer may wait to fill a batch (200) */
    size_t cache_mb;       /* LevelDB block cache, MiB (8) */
    size_t write_buffer;   /* LevelDB memtable bytes; 0 = store default (4 MiB) */
    size_t queue_max;      /* bounded ingest queue, events (100000) */
    size_t queue_bytes;    /* and bytes, bodies plus headers (16 MiB) */
    int rcvhwm;            /* SUB socket ZMQ_RCVHWM (20000) */
    int64_t stats_interval_us; /* default 1 s; 0 = none */
    codec_limits_t limits;
    size_t max_closure;        /* objects in a replay's closure (100 000) */
    size_t max_replay_events;  /* events in one replay (10 000 000) */
    size_t query_workers;      /* replay worker threads (4) */
    int read_threads;          /* helpers sharing a replay's gets (1) */
    int64_t republish_wait_us; /* a republish waits for its target's
                                  subscription this long (1 s) */
    int query_cpu;             /* run the query thread and its ZeroMQ I/O
                                  thread on this CPU only; -1 (default) =
                                  not pinned. See docs/operations.md. */
    int64_t query_spin_us;     /* query_opts_t.spin_us; 0 = never; -1
                                  (default): 500 us, but 0 with query_cpu
                                  (the poll would hold the one CPU the
                                  query's I/O thread needs too) */
    /* CURVE (proto/curve.h; docs/operations.md "Security"): the
     * listener's certificate (its secret file beside it), with
     * curve_clients (the directory of the public certificates of the
     * clients its query endpoint admits) and/or curve_broker (the
     * broker's public certificate, for the listener's connections to
     * it). NULL: no CURVE there. */
    const char *curve_cert;
    const char *curve_clients;
    const char *curve_broker;
    /* an existing directory where BackupRequests make their copies
     * (docs/operations.md, "Backups"); NULL: backups are refused */
    const char *backup_dir;
    /* Called once, on the ingest thread, when a commit failed: the store
     * takes no more writes and nothing more is acknowledged until it is
     * reopened (store_write_error(listener_store(l)) says why; ingest.h).
     * The owner should then stop the listener and exit, or reopen it:
     * fonte-listener and `fonte up` exit 3. NULL: logged and counted
     * only. Must not call listener_destroy itself. */
    void (*on_store_failed)(void *arg);
    void *on_store_failed_arg;
} listener_opts_t;

/* Fills *o with the defaults above. */
void listener_opts_init(listener_opts_t *o);

/* For a main that stops on signals taken with sigwait (fonte-listener,
 * fonte up): on_store_failed = listener_store_failed_signal makes the
 * failure one more signal, SIGUSR1, which the caller adds to its set and
 * blocks in every thread before any starts; listener_sigwait then waits
 * for a signal of the set and returns it, or 0 when the store failed. A
 * SIGUSR1 from anyone else is ignored. */
void listener_store_failed_signal(void *arg);
int listener_sigwait(listener_t *l, const sigset_t *set);

/* Opens the store (creating the dir), connects, binds the query endpoint,
 * starts the threads, returns when ready. Errors: FONTE_ESTORE for a
 * locked/corrupt/unwritable data dir with one line in errbuf naming the
 * directory and the cause; FONTE_EIO for a bind failure; FONTE_EINVAL
 * for bad options or endpoints; FONTE_ENOMEM. On error *listener_p is
 * NULL. The strings in *o are copied. The listener owns two ZeroMQ
 * contexts: one for ingest and republishing, one (with its own I/O
 * thread) for the query endpoint, so that a replay request does not
 * queue behind ingest traffic. A query_cpu the process may not run on is
 * FONTE_EINVAL, named in errbuf. */
fonte_err listener_new(const listener_opts_t *o, listener_t **listener_p,
                       char *errbuf, size_t errlen);

/* The query endpoint as bound (ephemeral port resolved). Valid until
 * listener_destroy; thread-safe. */
const char *listener_query_endpoint(const listener_t *l);

/* The store, for in-process readers (snapshots, counters). Borrowed;
 * valid until listener_destroy. */
store_t *listener_store(listener_t *l);

/* Ingest counters (thread-safe copy). */
void listener_counters(listener_t *l, ingest_counters_t *out);

/* Replay counters (thread-safe copy). */
void listener_replay_counters(listener_t *l, replay_counters_t *out);

/* Query endpoint counters (thread-safe copy). */
void listener_query_counters(listener_t *l, query_counters_t *out);

/* Holds or releases the ingest writer (ingest_hold): tests use it to
 * stand for a LevelDB stall. Thread-safe. */
void listener_hold_writer(listener_t *l, bool hold);

/* Clean stop: stops receiving, commits and acks what is queued, stops
 * the query server, closes the store. NULL-safe; nulls *listener_p. */
void listener_destroy(listener_t **listener_p);

#endif
