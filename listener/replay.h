/*
 * replay.h - answering ReplayRequests (design.md §6): closure, events,
 * dependency-aware order, then either pages of events (RETURN) or a
 * republish through the broker (REPUBLISH).
 *
 * replay_handle() is the query server's handler (query_replay_fn). It is
 * thread-safe: the query server may call it from several worker threads
 * at once. It reads through a LevelDB snapshot per request, so it never
 * blocks ingest, and its memory is bounded by the limits below whatever
 * the size of the store.
 *
 * Paging: the first request computes the whole order; when it does not
 * fit one page, the ordered seq list is kept under a random cursor id
 * (at most max_cursors of them, the least recently used evicted first,
 * each expiring cursor_ttl_us after its last use). A cursor names its
 * position too, so asking again with the same cursor (a client's retry)
 * returns the same page.
 *
 * Republish: one thread owns an XPUB socket connected to the broker's
 * ingress. It runs one replay at a time from a bounded queue, announces
 * it on $sys.replay (STARTED, then FINISHED or FAILED), and publishes each
 * event with `seq` and `replay` filled in, to $replay.<target>.<type> when
 * a target is named, else on the event's own topic, at most `rate` events
 * per second. Before a replay starts it waits (up to one second) for the
 * broker to have a subscriber for the first topic, so that a republish
 * right after start-up is not lost to ZeroMQ's slow joiner; delivery to
 * live subscribers is still at most once (protocol.md §4).
 */
#ifndef FONTE_REPLAY_H
#define FONTE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "curve.h"
#include "fonte/errors.h"
#include "store.h"

/* A ReplayRequest whose object is "*" replays the whole store. */
#define REPLAY_ALL "*"

typedef struct replay replay_t;

typedef struct replay_opts {
    void *zmq_ctx;          /* borrowed; for the republish socket */
    const char *ingress;    /* broker XSUB; NULL = republish UNAVAILABLE */
    codec_limits_t limits;
    size_t max_closure;     /* objects in a closure, default 100 000 */
    size_t max_events;      /* events in a replay, default 10 000 000 */
    size_t page_size;       /* default events per page, 1000 */
    size_t page_bytes;      /* a page never exceeds this, 4 MiB */
    size_t cycles_bytes;    /* names of broken cycles listed in a reply
                               beside its page, at most; default 1 MiB;
                               the cycles past it are counted in
                               cycles_omitted */
    size_t max_cursors;     /* open paged replays, default 64 */
    int64_t cursor_ttl_us;  /* idle cursor lifetime, default 60 s */
    size_t max_jobs;        /* queued republishes, default 16 */
    size_t load_batch;      /* events whose gets are put in seq order at
                               once; 0 = 65536 (tests make it small) */
    size_t seen_after;      /* causal whole-store streams remember the
                               objects they see (their first seqs, up to
                               262 144), from their start, once a stream
                               of this replay service has needed this
                               many first seqs of objects it had not
                               seen, default 4096 (a store that big may
                               not fit the first-seq cache); 0: always */
    int scan_threads;       /* whole-store replays that may read the log
                               ahead on a thread of their own at once,
                               default 2; 0 = none (logscan.h) */
    int64_t scan_idle_us;   /* a stream not asked for a page for this long
                               gives its scanner thread up to a stream that
                               needs one and finds no slot (it reads on in
                               the cutting thread, and takes a thread again
                               when one is free), default 1 s */
    const fcurve_cert_t *curve_cert, *curve_server; /* the republish
                               socket is a CURVE client of the broker with
                               this pair and its key (both, or NULL) */
    size_t ahead_pages;     /* pages of a streamed whole-store replay cut
                               ahead of the client's asking, 0-2, default
                               2 (0: each page is cut when asked) */
    int64_t target_wait_us; /* a republish waits this long for its first
                               event's topic to have a subscriber before
                               it starts (then sends anyway), default 1 s */
    int read_threads;       /* helper threads that share a replay's gets
                               of its events (readers.h), 0 to
                               READERS_MAX, default 1; 0 = each replay
                               reads on its own thread alone */
} replay_opts_t;

void replay_opts_init(replay_opts_t *o);

typedef struct replay_counters {
    uint64_t requests;    /* ReplayRequests handled */
    uint64_t pages;       /* pages returned */
    uint64_t cut_ahead;   /* pages of streamed replays cut before asked for */
    uint64_t first_lookups; /* first seqs streamed replays asked the store
                               (not found in the first-seq cache) */
    uint64_t scans_parked; /* scanner threads taken from idle streams */
    uint64_t reads_shared; /* windows of gets shared with the read
                              helpers (read_threads) */
    uint64_t reads_alone;  /* windows read alone: the helpers were busy */
    uint64_t reads_helped; /* events the read helpers read */
    uint64_t not_found;
    uint64_t refused;     /* BAD_REQUEST and LIMIT answers */
    uint64_t republished; /* events published by finished republishes */
    uint64_t running;     /* republishes queued or running now */
    uint64_t cursors;     /* open cursors now */
} replay_counters_t;

/* Starts the republish thread (if o->ingress is set). FONTE_EIO with a
 * line in errbuf if its socket cannot be created, FONTE_ENOMEM. The store
 * is borrowed and must outlive the replay service. */
fonte_err replay_new(const replay_opts_t *o, store_t *store,
                     replay_t **replay_p, char *errbuf, size_t errlen);

/* Makes replays being planned give up (UNAVAILABLE, "shutting down") so
 * that a listener stopping does not wait for a big plan to finish. Any
 * thread; call before stopping the query server. */
void replay_stop(replay_t *replay);

/* Stops the republish thread (a running replay is abandoned and
 * announced FAILED), frees every cursor. NULL-safe; nulls *replay_p. */
void replay_destroy(replay_t **replay_p);

/* query_replay_fn: answers one request with a packed Reply in *reply
 * (malloc'd, freed by the caller with codec_buf_free). Statuses: OK;
 * NOT_FOUND (no events for the object, empty result); BAD_REQUEST
 * (unknown or expired cursor, until_seq <= after_seq, a target without
 * republish); LIMIT (closure or event count over the limit, republish
 * queue full); UNAVAILABLE (republish without an ingress); INTERNAL (a
 * store read error). Returns FONTE_OK whenever *reply was written. With
 * deadline_us (the query thread's try, query.h): FONTE_ETIMEOUT and no
 * reply for a cursor, "*" or a republish at once, and for a planned
 * replay still loading at the deadline. */
fonte_err replay_handle(void *replay, store_t *store,
                        const Fonte__ReplayRequest *req, int64_t deadline_us,
                        codec_buf_t *reply);

void replay_counters(replay_t *r, replay_counters_t *out);

#endif
