/*
 * ingest.h - the listener's ingest: a receive thread that drains the
 * broker's egress into a bounded queue, and one writer thread that
 * commits the queue to the store in batches, applies the exactly-once
 * rule per producer session, publishes the Acks and the listener's
 * Stats (design.md §4, §5, §7). See ingest.c for the threading rules.
 */
#ifndef FONTE_INGEST_H
#define FONTE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "curve.h"
#include "fonte/errors.h"
#include "store.h"

#define INGEST_BATCH_MAX_DEFAULT 2000
#define INGEST_BATCH_BYTES_DEFAULT ((size_t) 4 << 20) /* batch_cost */
#define INGEST_BATCH_DELAY_US_DEFAULT 0 /* group commit batches already */
#define INGEST_QUEUE_MAX_DEFAULT 100000 /* events */
#define INGEST_QUEUE_BYTES_DEFAULT ((size_t) 16 << 20) /* bodies + item headers */
#define INGEST_RCVHWM_DEFAULT 20000 /* SUB socket, messages */
#define INGEST_GAP_ACK_US 20000      /* one gap Ack per session+seq per 20 ms */

typedef struct ingest ingest_t;

/* A Stats being built (more_stats adds to it, on the ingest thread). Keys
 * must live until the call returns' Stats is sent: string literals. */
typedef struct stats_builder ingest_stats_t;
void ingest_stats_counter(ingest_stats_t *st, const char *key, uint64_t v);
void ingest_stats_gauge(ingest_stats_t *st, const char *key, double v);

typedef struct ingest_opts {
    void *zmq_ctx;          /* the context to make sockets in (borrowed) */
    const char *egress;     /* broker XPUB to subscribe to */
    const char *ingress;    /* broker XSUB to publish Acks/Stats into */
    store_t *store;         /* borrowed; outlives the ingest */
    size_t batch_max;       /* events per WriteBatch */
    size_t batch_bytes;     /* and their cost: the event bytes plus the
                               keys they make (a d and an r key per
                               dependency); at least one event a batch */
    int64_t batch_delay_us; /* wait this long for a batch to fill */
    size_t queue_max;       /* queued events */
    size_t queue_bytes;     /* queued bytes: bodies plus item headers */
    int rcvhwm;             /* SUB's ZMQ_RCVHWM */
    int64_t stats_interval_us; /* 0 = no Stats */
    codec_limits_t limits;
    /* the listener's other parts' counters and gauges, added to each
     * Stats (NULL: none); must stay callable while the ingest lives */
    void (*more_stats)(void *arg, ingest_stats_t *st);
    void *more_stats_arg;
    /* Called once, on the writer thread, when a commit has failed and the
     * store takes no more writes (store_write_error says why): from then
     * on nothing is stored or acknowledged, events are taken and dropped
     * (producers resend them to the next listener on this data), and the
     * owner should stop and reopen. NULL: only logged and counted. */
    void (*on_store_failed)(void *arg);
    void *on_store_failed_arg;
    /* CURVE client of the broker: own key pair and the broker's public
     * key (both, or NULL) */
    const fcurve_cert_t *curve_cert, *curve_server;
} ingest_opts_t;

/* Counters since start. The names in brackets are the Stats keys. */
typedef struct ingest_counters {
    uint64_t received;        /* ["received"] messages read from the SUB */
    uint64_t events_stored;   /* ["events_stored"] */
    uint64_t duplicates;      /* ["duplicates"] producer_seq <= watermark */
    uint64_t gaps;            /* ["gaps"] producer_seq > watermark + 1 */
    uint64_t ignored_reserved;/* ["ignored.reserved"] $ack/$sys messages */
    uint64_t ignored_replay;  /* ["ignored.replay"] events carrying replay */
    uint64_t invalid;         /* ["invalid"] every reason */
    uint64_t invalid_by[FONTE_ERR_COUNT_]; /* ["invalid.<errname>"] */
    uint64_t acks_sent;       /* ["acks_sent"] every Ack */
    uint64_t gap_acks_sent;   /* ["gap_acks_sent"] those with gap set */
    uint64_t batches;         /* ["batches"] committed WriteBatches */
    uint64_t commit_errors;   /* ["commit_errors"] failed writes */
    uint64_t put_errors;      /* ["put_errors"] events not added to their
                                 batch (a store read failed, or memory):
                                 not stored, not acked, resent */
    uint64_t queue_full_waits;/* ["queue_full_waits"] receive had to wait */
    uint64_t stats_sent;      /* ["stats_sent"] */
    uint64_t other_listener_acks; /* ["other_listener_acks"] Acks another
                                     listener signed: two on one broker */
    uint64_t broker_connects;    /* ["broker_connects"] handshakes with the
                                    broker's egress done */
    uint64_t broker_disconnects; /* ["broker_disconnects"] those lost */
    bool broker_connected;       /* gauge ["broker_connected"]: the egress
                                    connection is up now */
    uint64_t queue_depth;     /* gauge: events queued now */
    uint64_t queue_bytes;     /* gauge: their bytes */
} ingest_counters_t;

/* Defaults above; egress/ingress the broker's default endpoints,
 * stats every second, default limits. zmq_ctx and store must be set. */
void ingest_opts_init(ingest_opts_t *o);

/* Connects the SUB (subscribed to everything) and the PUB, starts both
 * threads and returns. FONTE_EINVAL for bad options or an endpoint libzmq
 * cannot parse, FONTE_EIO for a socket error, FONTE_ENOMEM; errbuf gets
 * one line. The strings in *o are copied. */
fonte_err ingest_new(const ingest_opts_t *o, ingest_t **ingest_p,
                     char *errbuf, size_t errlen);

/* Copies the counters (thread-safe, a consistent-enough snapshot). */
void ingest_counters(ingest_t *in, ingest_counters_t *out);

/* Holds (true) or releases (false) the writer: while held it takes
 * nothing from the queue, as if LevelDB stalled, and receiving goes on
 * until the queue is full. For tests; thread-safe. A held writer still
 * drains the queue on ingest_destroy. */
void ingest_hold(ingest_t *in, bool hold);

/* Stops receiving, commits everything already queued (and acks it),
 * stops the writer, closes both sockets and frees. NULL-safe; nulls
 * *ingest_p. Not from the ingest's own threads. */
void ingest_destroy(ingest_t **ingest_p);

#endif
