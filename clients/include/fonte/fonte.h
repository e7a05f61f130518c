/*
 * fonte/fonte.h - libfonte, the library a service links to join a fonte
 * pipeline: publish events with confirms, subscribe with handlers, fetch
 * an object's history and ask for a replay (design.md §4, §6;
 * docs/client.md is the guide).
 *
 * Conventions, written once:
 *  - Every function that can fail returns a fonte_err (fonte/errors.h):
 *    FONTE_OK (0) or a code; results go through out-parameters.
 *  - x_new(&x) / x_destroy(&x): destroy accepts NULL and nulls the caller's
 *    pointer. Every pointer the caller must free names its destroy
 *    function; every other returned pointer is borrowed and says until when.
 *  - Strings are NUL-terminated UTF-8. Strings passed in are copied (or
 *    encoded) before the call returns: the caller keeps them.
 *  - No protobuf-c or ZeroMQ type appears here; the wire format is in
 *    docs/protocol.md.
 *
 * Thread model:
 *  - Each client runs ONE background I/O thread of its own. It owns every
 *    ZeroMQ socket that lives as long as the client (the publisher socket
 *    to the broker's ingress, the SUBs on its egress), sends and resends the outbox, reads
 *    Acks, and queues received events in an inbox. It never calls user code.
 *  - Handlers run only inside fonte_dispatch(), in the thread that calls it.
 *  - fonte_publish, fonte_flush, fonte_subscribe, fonte_fetch,
 *    fonte_request_replay, fonte_status and fonte_client_stats are
 *    thread-safe. Concurrent publishers are serialised (events of one
 *    client form one sequence). fonte_dispatch may be called from any one
 *    thread at a time. fonte_client_destroy must not run concurrently
 *    with any other call on the same client.
 *  - Queries (fetch, replay, status) run in the calling thread on a REQ
 *    socket of their own, taken from a small per-client pool of
 *    connected sockets (up to 4 kept idle; more are opened while more
 *    threads ask at once) and given back once answered, so that a query
 *    does not pay a connect; a query that times out closes its socket
 *    (Lazy Pirate). A query blocks its thread for at most
 *    query_timeout_ms * query_retries (plus paging).
 *
 * Guarantees (reliable mode, the default): every event fonte_publish
 * accepted is kept in a bounded outbox and resent (go-back-N) until the
 * listener acknowledges it as durably stored; the listener stores each
 * event of a client exactly once and in publish order. fonte_flush is
 * how a service learns that everything published so far is durable.
 * Events not yet acknowledged when the client is destroyed or the process
 * dies are lost: flush at your commit points. Live delivery to
 * subscribers is at most once (catch up with fonte_fetch).
 */
#ifndef FONTE_FONTE_H
#define FONTE_FONTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fonte/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(FONTE_BUILDING_LIB)
#define FONTE_EXPORT __attribute__((visibility("default")))
#else
#define FONTE_EXPORT
#endif

#define FONTE_INGRESS_DEFAULT "tcp://127.0.0.1:7701"
#define FONTE_EGRESS_DEFAULT "tcp://127.0.0.1:7702"
#define FONTE_QUERY_DEFAULT "tcp://127.0.0.1:7703"

/* ------------------------------------------------------------------ */
/* client                                                              */

typedef struct fonte_client fonte_client_t;

typedef struct fonte_client_opts {
    const char *service;        /* producer name, [a-z0-9_-]{1,64}; required */
    const char *ingress;        /* broker ingress (the publisher connects) */
    const char *egress;         /* broker egress (the SUBs connect here) */
    const char *query;          /* listener query endpoint (REQ) */
    size_t outbox_max_events;   /* unacked events kept; default 65536 */
    size_t outbox_max_bytes;    /* their encoded bytes; default 64 MiB */
    size_t window;              /* events in flight beyond the last Ack;
                                   default 8192; at most outbox_max_events
                                   (a larger value is taken as that) */
    int sndhwm;                 /* send queue of the publisher socket,
                                   messages; it never drops, the client
                                   waits for room; 0 = 2 * window */
    int resend_timeout_ms;      /* resend from the oldest unacked event
                                   when it is this old; default 1000 */
    int publish_timeout_ms;     /* fonte_publish waits this long for room
                                   in a full outbox; default 5000; < 0
                                   waits forever (as fonte_flush's) */
    int query_timeout_ms;       /* one query try; default 2000 */
    int query_retries;          /* tries per query page; default 3 */
    size_t inbox_max;           /* received events waiting for dispatch;
                                   more are dropped; default 100000 */
    size_t max_msg;             /* largest event, bytes; FONTE_MAX_MSG or
                                   1 MiB; never more than the broker's
                                   --max-msg (docs/client.md) */
    size_t max_reply;           /* largest query reply; default 8 MiB; at
                                   least 5 MiB + max_msg (a page, and
                                   the cycles listed beside it) */
    bool reliable;              /* false: fire and forget, no outbox, no
                                   Acks; default true */
    /* CURVE (docs/operations.md, "Security"): this service's certificate
     * (a file from `fonte keygen`, its secret file beside it), the
     * broker's public certificate, and the listener's (NULL: the
     * broker's). NULL curve_cert: no CURVE. From FONTE_CURVE_CERT,
     * FONTE_CURVE_BROKER and FONTE_CURVE_LISTENER when set. */
    const char *curve_cert;
    const char *curve_broker;
    const char *curve_listener;
    size_t inbox_max_bytes;     /* and the memory they hold, about (their
                                   bytes and a heap block per string);
                                   more are dropped; default 64 MiB */
    int query_spin_us;          /* after sending a query, poll for its
                                   reply for this long (a CPU busy)
                                   before sleeping; default 0: sleep at
                                   once. For latency-sensitive callers
                                   on VMs (docs/client.md, "Latency") */
} fonte_client_opts_t;

/* Fills *o with the defaults above. ingress, egress and query come from
 * the environment variables FONTE_INGRESS, FONTE_EGRESS and FONTE_QUERY
 * when set, else the *_DEFAULT endpoints; service from FONTE_SERVICE
 * (else NULL). The strings point into the environment or static storage.
 * Thread-safe (reads the environment). */
FONTE_EXPORT void fonte_client_opts_init(fonte_client_opts_t *o);

/* Creates a client: draws a random session (getrandom), connects to the
 * broker and starts the I/O thread. Connections are made in the
 * background: the broker and listener need not be up yet.
 * Returns FONTE_OK and sets *client_p (destroy with fonte_client_destroy);
 * FONTE_EPRODUCER for a missing or invalid service name, FONTE_EINVAL for
 * another bad option (an ingress or egress endpoint ZeroMQ cannot parse,
 * a zero limit, a CURVE certificate that cannot be read, or curve_cert
 * without curve_broker; the query endpoint is connected at the first
 * query, where one ZeroMQ cannot parse is FONTE_EIO),
 * FONTE_EIO if the session cannot be drawn or a socket or thread cannot
 * be made, FONTE_ENOMEM. On error *client_p is NULL. The strings in *o are
 * copied. */
FONTE_EXPORT fonte_err fonte_client_new(const fonte_client_opts_t *o,
                                        fonte_client_t **client_p);

/* Stops the I/O thread and frees the client. Returns within about
 * 100 ms whatever the network does (linger 0): events not yet acked are
 * LOST (call fonte_flush first to make them durable), queued received
 * events are freed without being dispatched. NULL-safe; nulls *client_p.
 * No other call on the client may run concurrently. */
FONTE_EXPORT void fonte_client_destroy(fonte_client_t **client_p);

/* The service name and the session of this client (borrowed until
 * destroy; thread-safe). */
FONTE_EXPORT const char *fonte_client_service(const fonte_client_t *c);
FONTE_EXPORT uint64_t fonte_client_session(const fonte_client_t *c);

/* ------------------------------------------------------------------ */
/* publish                                                             */

typedef struct fonte_meta {
    const char *key;   /* 1..128 bytes */
    const char *value; /* 0..4096 bytes; NULL = "" */
} fonte_meta_t;

/* An event to publish. Only type and object are required. */
typedef struct fonte_event_spec {
    const char *type;              /* [a-z0-9_.-]{1,128}: also the topic */
    const char *object;            /* "<kind>:<id>", 1..256 bytes */
    const char *const *depends_on; /* objects needed first, at most 64 */
    size_t n_depends_on;
    const void *payload;           /* the service's own bytes */
    size_t payload_len;
    const char *payload_type;      /* e.g. "shop.OrderPlaced"; NULL = "" */
    const fonte_meta_t *meta;      /* at most 64 entries */
    size_t n_meta;
} fonte_event_spec_t;

/* Stamps the event (producer, session, the next producer_seq, id,
 * time_us), encodes it, and hands it to the I/O thread through the
 * outbox. Returns FONTE_OK once the event is queued (not yet durable:
 * see fonte_flush). Errors, with NOTHING sent and no sequence number
 * used: a validation code for a bad event (FONTE_ETYPE, FONTE_EOBJECT,
 * FONTE_EDEPS, FONTE_EDEP, FONTE_EMETA, FONTE_EFIELD, FONTE_EUTF8),
 * FONTE_ETOOBIG if it encodes to more than max_msg (or 4 GiB), FONTE_EINVAL for NULL
 * arguments, FONTE_EFULL when the outbox stayed full (events or bytes)
 * for publish_timeout_ms, FONTE_ENOMEM. Thread-safe. */
FONTE_EXPORT fonte_err fonte_publish(fonte_client_t *c,
                                     const fonte_event_spec_t *spec);

/* Waits until every event published (FONTE_OK) by this client before the
 * call is durable in the listener's store. Returns FONTE_OK, or
 * FONTE_ETIMEOUT after timeout_ms (the events stay in the outbox and are
 * still resent; flush again later). timeout_ms < 0 waits forever. In
 * unreliable mode "durable" means "handed to ZeroMQ". Thread-safe. */
FONTE_EXPORT fonte_err fonte_flush(fonte_client_t *c, int timeout_ms);

/* ------------------------------------------------------------------ */
/* events (received, fetched)                                          */

typedef struct fonte_event fonte_event_t;

/* Accessors: every string is borrowed from the event and never NULL
 * (absent = ""); valid as long as the event is (a handler's event: until
 * the handler returns; a fetched event: until its list is destroyed). */
FONTE_EXPORT const char *fonte_event_id(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_type(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_object(const fonte_event_t *e);
FONTE_EXPORT size_t fonte_event_deps_count(const fonte_event_t *e);
/* The i-th dependency, or NULL if i is out of range. */
FONTE_EXPORT const char *fonte_event_dep(const fonte_event_t *e, size_t i);
/* The payload bytes (may be NULL when *len_out == 0). len_out may be NULL. */
FONTE_EXPORT const void *fonte_event_payload(const fonte_event_t *e,
                                             size_t *len_out);
FONTE_EXPORT const char *fonte_event_payload_type(const fonte_event_t *e);
/* The value of meta key, or NULL if the event has no such key. */
FONTE_EXPORT const char *fonte_event_meta(const fonte_event_t *e,
                                          const char *key);
FONTE_EXPORT size_t fonte_event_meta_count(const fonte_event_t *e);
/* The i-th meta entry: false if i is out of range. */
FONTE_EXPORT bool fonte_event_meta_at(const fonte_event_t *e, size_t i,
                                      const char **key, const char **value);
FONTE_EXPORT const char *fonte_event_producer(const fonte_event_t *e);
FONTE_EXPORT uint64_t fonte_event_session(const fonte_event_t *e);
FONTE_EXPORT uint64_t fonte_event_producer_seq(const fonte_event_t *e);
/* The store's sequence number: 0 on a live event. */
FONTE_EXPORT uint64_t fonte_event_seq(const fonte_event_t *e);
FONTE_EXPORT int64_t fonte_event_time_us(const fonte_event_t *e);

/* True if the listener sent this event again (a replay). The replay
 * accessors give "" / 0 on a live event. */
FONTE_EXPORT bool fonte_event_is_replay(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_replay_id(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_replay_root(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_replay_target(const fonte_event_t *e);
FONTE_EXPORT const char *fonte_event_replay_reason(const fonte_event_t *e);
FONTE_EXPORT uint64_t fonte_event_replay_index(const fonte_event_t *e);
FONTE_EXPORT uint64_t fonte_event_replay_total(const fonte_event_t *e);

/* ------------------------------------------------------------------ */
/* subscribe                                                           */

/* A handler: called from fonte_dispatch() in the caller's thread, with an
 * event borrowed for the duration of the call. It may call any fonte_
 * function on the client except fonte_dispatch and fonte_client_destroy. */
typedef void (*fonte_handler_fn)(const fonte_event_t *event, void *arg);

/* Registers handler for events whose type starts with prefix ("" = all
 * events; "$" topics are fonte's own and never reach handlers). Live
 * events are received from the broker from a moment shortly after the
 * call (the I/O thread subscribes asynchronously; PUB/SUB's slow joiner
 * applies). Replays aimed at this service ("$replay.<service>.<type>")
 * reach the handlers whose prefix matches <type>, flagged as replays.
 * An event matching several prefixes is handed to each of their handlers,
 * in registration order. Returns FONTE_OK, FONTE_EINVAL (NULL prefix or
 * handler, prefix over 128 bytes or starting with '$'), FONTE_ENOMEM.
 * Thread-safe. */
FONTE_EXPORT fonte_err fonte_subscribe(fonte_client_t *c, const char *prefix,
                                       fonte_handler_fn handler, void *arg);

/* Waits up to timeout_ms (< 0: forever; 0: no wait) for received events,
 * then runs the handlers of the events queued at that moment (at most
 * 4096 per call), in arrival order, in the calling thread. *n_out (may
 * be NULL) gets the number of events taken from the inbox: a replay
 * aimed at this service whose type no handler's prefix matches is taken
 * and dropped (live events arrive only for subscribed prefixes). Returns
 * FONTE_OK if at least one event was taken, FONTE_ETIMEOUT if none
 * arrived in time. One thread at a time. */
FONTE_EXPORT fonte_err fonte_dispatch(fonte_client_t *c, int timeout_ms,
                                      size_t *n_out);

/* ------------------------------------------------------------------ */
/* fetch and replay (queries to the listener)                          */

typedef enum fonte_order {
    FONTE_ORDER_CAUSAL = 0, /* store order, dependencies first (default) */
    FONTE_ORDER_SEQUENCE,   /* plain store order */
    FONTE_ORDER_OBJECTS,    /* each object's events together */
} fonte_order_t;

/* Which events of an object's history. */
typedef struct fonte_fetch_opts {
    bool skip_dependencies;  /* only the object itself (default: with deps) */
    bool dependents;         /* also the objects that depend on it */
    uint64_t after_seq;      /* only seq > after_seq */
    uint64_t until_seq;      /* only seq <= until_seq; 0 = no bound */
    const char *const *types; /* only these types (ordering uses all) */
    size_t n_types;
    fonte_order_t order;
    uint32_t page_size;      /* events per reply page; 0 = listener default */
} fonte_fetch_opts_t;

/* A replay: a selection plus where and how fast. */
typedef struct fonte_replay_opts {
    fonte_fetch_opts_t select;
    const char *target; /* service to replay to; NULL = this client's
                           service; "" = everyone, on the events' own
                           topics */
    uint32_t rate;      /* events/s; 0 = no limit */
    const char *reason; /* free text for the audit; NULL = "" */
} fonte_replay_opts_t;

FONTE_EXPORT void fonte_fetch_opts_init(fonte_fetch_opts_t *o);
FONTE_EXPORT void fonte_replay_opts_init(fonte_replay_opts_t *o);

/* An owned list of fetched events, in replay order. */
typedef struct fonte_event_list fonte_event_list_t;

FONTE_EXPORT size_t fonte_event_list_count(const fonte_event_list_t *l);
/* The i-th event (borrowed until the list is destroyed), NULL if out of
 * range. */
FONTE_EXPORT const fonte_event_t *fonte_event_list_get(
    const fonte_event_list_t *l, size_t i);
/* Broken dependency cycles reported by the listener: each a string of
 * the cycle's objects joined by ",". A listener lists the first ones
 * broken, up to 1 MiB of names per reply, and counts the rest: those
 * are fonte_event_list_cycles_omitted (0 unless there were that many). */
FONTE_EXPORT size_t fonte_event_list_cycles_count(const fonte_event_list_t *l);
FONTE_EXPORT const char *fonte_event_list_cycle(const fonte_event_list_t *l,
                                                size_t i);
FONTE_EXPORT uint64_t fonte_event_list_cycles_omitted(
    const fonte_event_list_t *l);
/* NULL-safe; nulls *list_p. */
FONTE_EXPORT void fonte_event_list_destroy(fonte_event_list_t **list_p);

/* Asks the listener for the history of object (opts NULL = defaults:
 * with dependencies, causal order) and collects every page until the last.
 * Each page is one request with the Lazy Pirate pattern: wait
 * query_timeout_ms for the reply, else close the socket, reopen it and
 * retry, query_retries times in all.
 * Returns FONTE_OK and sets *list_p (free with fonte_event_list_destroy;
 * an object without events gives an empty list only if the listener says
 * so, else FONTE_ENOTFOUND); FONTE_ETIMEOUT when the listener did not
 * answer (also when a reply was larger than max_reply: ZeroMQ closes
 * the connection); FONTE_ENOTFOUND, FONTE_EREQUEST (the listener refused
 * the request, or a cursor expired), FONTE_ELIMIT, FONTE_EUNAVAILABLE
 * (the listener does not serve it now), FONTE_EINTERNAL from the
 * listener's reply status; a validation code for bad arguments, with
 * nothing sent (FONTE_EOBJECT, FONTE_ETYPE, FONTE_EINVAL for types NULL
 * with n_types, FONTE_ELIMIT for more than 256 types); FONTE_EDECODE or
 * FONTE_EFRAMES for a bad reply (one that does not decode, holds an
 * event that breaks the rules, answers another kind of request, hands
 * back the cursor it was asked with, or goes past the total the
 * listener announced); FONTE_EIO, FONTE_ENOMEM. A signal does
 * not cut a wait short. On error *list_p is NULL. Thread-safe; blocks
 * the caller. */
FONTE_EXPORT fonte_err fonte_fetch(fonte_client_t *c, const char *object,
                                   const fonte_fetch_opts_t *opts,
                                   fonte_event_list_t **list_p);

/* A paged fetch, for histories too large to hold at once: each
 * fonte_fetch_iter_next() asks the listener for one page (page_size
 * events, Lazy Pirate as fonte_fetch) and hands it over as its own list.
 * fonte_fetch() is a loop over it. */
typedef struct fonte_fetch_iter fonte_fetch_iter_t;

/* Checks the arguments (the codes of fonte_fetch, nothing sent) and
 * prepares the request; nothing is sent before the first
 * fonte_fetch_iter_next(). object, opts and the types are copied.
 * Returns FONTE_OK and sets *it_p (free with fonte_fetch_iter_destroy),
 * else *it_p is NULL. The iterator may be used by one thread at a time
 * and must be destroyed before its client. */
FONTE_EXPORT fonte_err fonte_fetch_iter_new(fonte_client_t *c,
                                            const char *object,
                                            const fonte_fetch_opts_t *opts,
                                            fonte_fetch_iter_t **it_p);

/* Asks for the next page. Returns FONTE_OK and sets *page_p to the
 * page's events in replay order (caller frees with
 * fonte_event_list_destroy; a page may be empty), or sets *page_p to
 * NULL once the previous page was the last. Errors as fonte_fetch, with
 * *page_p NULL; the iterator stays on the same page, so calling again
 * retries it. Blocks the caller. */
FONTE_EXPORT fonte_err fonte_fetch_iter_next(fonte_fetch_iter_t *it,
                                             fonte_event_list_t **page_p);

/* The number of events in the whole selection, as the listener said on
 * the last page received (0 before the first). */
FONTE_EXPORT uint64_t fonte_fetch_iter_total(const fonte_fetch_iter_t *it);

/* Closes the iterator's socket and frees it. NULL-safe; nulls *it_p. */
FONTE_EXPORT void fonte_fetch_iter_destroy(fonte_fetch_iter_t **it_p);

/* What the listener said about a replay it started. */
typedef struct fonte_replay_ticket {
    char replay_id[257];
    uint64_t total;  /* events it will publish */
    uint32_t cycles; /* dependency cycles it broke to order them (listed
                        or not): which objects, fonte_fetch with the same
                        selection says */
} fonte_replay_ticket_t;

/* Asks the listener to republish object's history (opts NULL = defaults,
 * target = this service) through the broker, flagged as a replay: to
 * "$replay.<target>.<type>", which only the target's clients hear.
 * Returns once the listener accepted the request; the events follow
 * through the handlers (fonte_dispatch). *ticket (may be NULL) gets the
 * replay id, its size and the number of cycles broken. Errors as fonte_fetch, plus FONTE_EPRODUCER for an
 * invalid target. The request is sent once, never retried (the listener
 * could not tell a second one from a new replay): it waits
 * query_timeout_ms times query_retries for the answer, and on
 * FONTE_ETIMEOUT the replay may still have started - its ReplayAudit on
 * "$sys.replay" says so. Thread-safe; blocks the caller. */
FONTE_EXPORT fonte_err fonte_request_replay(fonte_client_t *c,
                                            const char *object,
                                            const fonte_replay_opts_t *opts,
                                            fonte_replay_ticket_t *ticket);

/* The listener's status. */
typedef struct fonte_status {
    uint64_t last_seq, events, objects, sessions;
    char data_dir[4096];
    char version[64];
    char store_id[17]; /* what the listener signs its Acks with ("" from
                          an older listener) */
} fonte_status_t;

/* Asks the listener for its status (one request, Lazy Pirate). Returns
 * FONTE_OK and fills *out, or the errors of fonte_fetch. Thread-safe. */
FONTE_EXPORT fonte_err fonte_status(fonte_client_t *c, fonte_status_t *out);

/* What the listener said of a backup. */
typedef struct fonte_backup_info {
    char path[4096];      /* the copy, on the listener's host */
    uint64_t keys, bytes; /* copied: LevelDB keys, their keys' + values'
                             bytes before compression */
    uint64_t last_seq;    /* the copy holds events 1..last_seq */
    uint64_t duration_us;
    char error[256];      /* the listener's reason when it refused */
} fonte_backup_info_t;

/* Asks the listener for a consistent copy of its store, made while it
 * runs, as the directory name under its --backup-dir (docs/operations.md,
 * "Backups"). Sent once, never retried (a second one would find the name
 * taken), and waited for query_timeout_ms times query_retries: a big
 * store takes minutes. Returns FONTE_OK and fills *out; FONTE_EPRODUCER
 * for a name that is not [a-z0-9_-]{1,64}, nothing sent; FONTE_EREQUEST
 * (the name is taken), FONTE_EUNAVAILABLE (no --backup-dir, another
 * backup runs, the listener stops) or FONTE_EINTERNAL (writing failed),
 * with the listener's reason in out->error; FONTE_ETIMEOUT (the copy may
 * still be made) and the other errors of fonte_fetch. Thread-safe;
 * blocks the caller. */
FONTE_EXPORT fonte_err fonte_backup(fonte_client_t *c, const char *name,
                                    fonte_backup_info_t *out);

/* ------------------------------------------------------------------ */
/* counters                                                            */

typedef struct fonte_client_stats {
    uint64_t published;      /* events accepted by fonte_publish */
    uint64_t sent;           /* sends to the broker, resends included */
    uint64_t resent;         /* of which resends */
    uint64_t acked;          /* highest producer_seq the listener acked */
    uint64_t gap_acks;       /* Acks with gap set */
    uint64_t resend_timeouts;/* resends started by the resend timeout */
    uint64_t received;       /* events queued for handlers */
    uint64_t inbox_dropped;  /* events dropped: inbox full */
    uint64_t invalid;        /* messages from the broker that failed checks,
                                and Acks beyond what was published */
    uint64_t outbox_events;  /* events waiting for an Ack now */
    uint64_t outbox_bytes;
    uint64_t query_connects; /* query sockets opened (one per timed-out
                                try, and per thread asking at once) */
} fonte_client_stats_t;

/* A consistent-enough copy of the client's counters. Thread-safe. */
FONTE_EXPORT void fonte_client_stats(fonte_client_t *c,
                                     fonte_client_stats_t *out);

/* Re-exported from fonte/errors.h for discoverability:
 * fonte_strerror(err), fonte_errname(err). */

#ifdef __cplusplus
}
#endif
#endif
