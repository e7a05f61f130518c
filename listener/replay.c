/*
 * replay.c - ReplayRequests: plan, order, page or republish (replay.h).
 *
 * A request becomes a plan in four steps, all on one store snapshot:
 *
 *  1. closure: the root, then (with `dependents`) every object reachable
 *     through `r` keys, then (unless `skip_dependencies`) every object
 *     reachable through `d` keys from all of those; at most max_closure
 *     objects. "*" stands for every object: the walk is replaced by a
 *     scan of the log.
 *  2. events: each closure object's `o` keys inside (after_seq,
 *     until_seq]; then each event's bytes, read once in seq order (in
 *     batches of LOAD_BATCH: one pass over the log's tables rather than
 *     one per object, 7-9% fewer microseconds for the same gets) and
 *     scanned for its type and dependencies; at most max_events.
 *  3. order: listener/order.c on (seq, object, dependencies) alone.
 *  4. filter: `types` drops what is not sent, after ordering, so the order
 *     of what is sent still accounts for everything.
 *
 * The bytes read in step 2 are kept (up to KEEP_BYTES) so that a replay
 * that fits in one page is answered without reading anything twice;
 * later pages and republishes read events by seq again (events are
 * immutable once stored, so no snapshot is needed for that).
 *
 * Replies are written by hand (codec_writer): each event is its stored
 * bytes with `seq` appended, never decoded and re-encoded.
 *
 * Threads: replay_handle runs on any number of query worker threads; the
 * cursor table has its own mutex; the republish queue has a mutex shared
 * with the republish thread, which alone owns the XPUB socket. That
 * thread polls the XPUB (50 ms) while idle, to keep the subscription list
 * current, and picks up queued jobs between polls. A streamed replay of
 * the whole store has its log read by a scanner thread of its own
 * (logscan.h; at most scan_threads at once) and its pages cut ahead by
 * the prefetch thread (see "streamed whole-store replays" below).
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "replay.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <zmq.h>

#include "array.h"
#include "hash.h"
#include "log.h"
#include "logscan.h"
#include "order.h"
#include "query.h"
#include "readers.h"
#include "sync.h"
#include "zmqx.h"

#define KEEP_BYTES ((size_t) 16 << 20) /* event bytes kept while planning */
#define LOAD_BATCH 65536 /* events whose gets are put in seq order at once */
#define READ_WINDOW 512 /* gets shared with the read helpers at once */
#define AHEAD_PAGES 2 /* pages cut ahead: the most, and the default */
#define CURSOR_ID 16
#define CURSOR_LEN (CURSOR_ID + 8)
#define REPLAY_ID_LEN 19 /* "r-" + 16 hex + NUL */

/* An ordered replay kept for its later pages. Counted references (under
 * cursor_lock): the cursor table holds one, and each page being built
 * holds one, so a page is built without the lock and an eviction meanwhile
 * frees nothing under it. */
typedef struct logstream logstream_t;

typedef struct seqlist {
    size_t refs;
    uint64_t *seqs;
    size_t n;
    logstream_t *stream; /* instead of seqs: a streamed replay of "*" */
    size_t page_size;    /* of the request that made it: a next page's
                            when it names none */
    struct seqlist *pf_next; /* prefetch queue (pf_lock) */
    bool pf_queued;
} seqlist_t;

typedef struct cursor {
    uint8_t id[CURSOR_ID];
    seqlist_t *list; /* NULL: a free slot */
    int64_t last_use_us;
} cursor_t;

typedef struct job {
    struct job *next;
    char replay_id[REPLAY_ID_LEN];
    char *root, *target, *reason;
    uint32_t rate;
    uint64_t *seqs;
    size_t n;
} job_t;

/* First seqs of objects named as dependencies, shared by every streamed
 * replay (a 4-way set-associative cache, names of up to FIRST_NAME_MAX
 * bytes; direct-mapped, 2 500 names in 16 384 slots had ~14% of them
 * evicting each other on every replay, each a seek).
 * An object's first seq never changes once it has an event: nothing is
 * deleted and seqs only grow. Asking the store costs a LevelDB seek of
 * 7-10 us, and a replay of the whole store asks once for every object
 * named as a dependency: 2 500 of them took 25 ms, a tenth of a replay
 * of 1M events, all before its first page. Only true first seqs (asked
 * with no after_seq) are kept, never "none" (the object may come). */
#define FIRST_SLOTS 16384u /* a power of two: 1 MiB */
#define FIRST_WAYS 4u
#define FIRST_NAME_MAX 55

typedef struct first_slot {
    uint64_t first; /* 0: empty */
    uint8_t len;
    char name[FIRST_NAME_MAX];
} first_slot_t;

typedef struct first_cache {
    pthread_mutex_t lock;
    first_slot_t *slot;        /* FIRST_SLOTS, allocated on first use */
    _Atomic uint64_t lookups; /* first seqs the streams asked the store */
} first_cache_t;

struct replay {
    replay_opts_t o;
    store_t *store;
    first_cache_t firsts;

    pthread_mutex_t cursor_lock;
    cursor_t *cursors; /* max_cursors slots; list == NULL when free */
    seqlist_t *dead;   /* unreferenced, to free once the lock is let go
                          (seqlist_reap), linked by pf_next */

    pthread_mutex_t job_lock; /* jobs, n_jobs, stop */
    job_t *jobs, *jobs_tail;
    size_t n_jobs;
    bool stop;
    bool thread_started;
    pthread_t thread;
    void *xpub;
    char **subs; /* subscriptions seen on the XPUB (republish thread) */
    size_t n_subs, cap_subs;

    pthread_mutex_t pf_lock; /* the prefetch queue and pf_stop */
    pthread_cond_t pf_cond;
    seqlist_t *pf_head, *pf_tail;
    bool pf_stop, pf_started;
    bool pf_reap; /* rp->dead has lists for the prefetch thread to free */
    pthread_t pf_thread;
    atomic_size_t ahead_bytes; /* pages cut ahead, not yet answered */
    atomic_int scan_slots;     /* log scanner threads that may start */
    atomic_size_t seen_names;  /* objects the streams remember, together */
    atomic_bool seen_wanted;   /* a stream needed seen_after first seqs:
                                  later causal streams remember from
                                  their start (seen_note) */

    _Atomic uint64_t requests, pages, cut_ahead, not_found, refused,
        republished, running, scans_parked;
    atomic_bool stopping; /* replay_stop: plans give up */
    readers_t *readers;   /* read helpers (read_threads), or NULL */
};

void
replay_opts_init(replay_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->limits = codec_limits_default;
    o->max_closure = 100000;
    o->max_events = 10000000;
    o->page_size = 1000;
    o->page_bytes = (size_t) 4 << 20;
    o->max_cursors = 64;
    o->cursor_ttl_us = 60 * 1000000LL;
    o->max_jobs = 16;
    o->scan_threads = 2;
    o->scan_idle_us = 1000000;
    o->ahead_pages = AHEAD_PAGES;
    o->seen_after = 4096;
    o->cycles_bytes = (size_t) 1 << 20;
    o->read_threads = 1;
    o->target_wait_us = 1000000;
}

/* ------------------------------------------------------------------ */
/* replies                                                             */

/* A failed request: Reply{status, error} and, for NOT_FOUND, the empty
 * ReplayReply the protocol promises. */
static void
reply_error(Fonte__Reply__Status status, const char *error, codec_buf_t *out)
{
    Fonte__Reply rep = FONTE__REPLY__INIT;
    Fonte__ReplayReply rr = FONTE__REPLAY_REPLY__INIT;

    rep.status = status;
    rep.error = (char *) error;
    if (status == FONTE__REPLY__STATUS__NOT_FOUND) {
        rep.body_case = FONTE__REPLY__BODY_REPLAY;
        rep.replay = &rr;
    }
    if (codec_pack(&rep.base, out) != FONTE_OK) {
        out->data = NULL;
        out->len = 0;
    }
}

/* Replies are built in a writer that begins with REPLY_HEADROOM spare
 * bytes (reply_writer): the Reply envelope (tag and length of field 3)
 * is then written in place in front of the ReplayReply, and the buffer
 * handed over as it is (codec_buf_t.base) - a page is never copied to be
 * wrapped (query.c hands it to ZeroMQ without a copy either). */
#define REPLY_HEADROOM 8

static void
reply_writer(codec_writer_t *w)
{
    static const uint8_t room[REPLY_HEADROOM];
    w->len = 0;
    w->failed = false;
    codec_writer_raw(w, room, sizeof room);
}

/* Wraps the ReplayReply in w (after its headroom) as Reply.replay (field
 * 3) with status OK, taking w's buffer. */
static fonte_err
reply_wrap(codec_writer_t *inner, codec_buf_t *out)
{
    codec_writer_t head = { 0 };

    if (inner->failed || inner->len < REPLY_HEADROOM)
        return FONTE_ENOMEM;
    size_t n = inner->len - REPLY_HEADROOM;
    codec_writer_tag(&head, 3, 2 /* length-delimited */);
    codec_writer_varint(&head, n);
    if (head.failed || head.len > REPLY_HEADROOM) {
        codec_writer_fini(&head);
        return FONTE_ENOMEM;
    }
    uint8_t *at = inner->data + REPLY_HEADROOM - head.len;
    memcpy(at, head.data, head.len);
    out->base = inner->data;
    out->data = at;
    out->len = head.len + n;
    codec_writer_fini(&head);
    inner->data = NULL; /* out owns it now */
    inner->len = inner->cap = 0;
    return FONTE_OK;
}

/* ------------------------------------------------------------------ */
/* planning                                                            */

/* An event of the closure to read: its seq and its object's id. */
typedef struct load_want {
    uint64_t seq;
    uint32_t object;
} load_want_t;

typedef struct plan {
    const replay_opts_t *o;
    const atomic_bool *stopping; /* the listener is shutting down */
    const Fonte__ReplayRequest *req;
    store_snap_t *snap;
    readers_t *readers; /* the read helpers, or NULL */
    order_names_t *names;
    size_t n_closure;

    order_event_t *ev; /* n_ev events, in the order they were read */
    void **body;       /* kept bytes, or NULL once KEEP_BYTES is spent */
    size_t *len;
    bool *send;        /* passes the types filter */
    size_t n_ev, cap_ev;
    uint32_t *deps;
    size_t n_deps, cap_deps;
    codec_slice_t *dep_names; /* scratch: one event's dependencies */
    size_t cap_dep_names;
    size_t kept;

    load_want_t *want, *want_tmp; /* step 2: events to get, by seq */
    size_t n_want, cap_want;

    uint64_t *out_seq; /* the answer: ordered, filtered */
    size_t *out_idx;   /* index into ev, for kept bytes */
    size_t n_out;
    char **cycles;
    size_t n_cycles;
    uint64_t cycles_omitted; /* broken, not listed (cycles_bytes) */

    int64_t load_us, order_us;   /* for the debug log */
    int64_t deadline_us; /* 0, or give up with FONTE_ETIMEOUT after it */
    Fonte__Reply__Status status; /* when planning fails */
    char error[256];
} plan_t;

static void
free_cycles(char **cycles, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cycles[i]);
    free(cycles);
}

static void
plan_fini(plan_t *p)
{
    for (size_t i = 0; i < p->n_ev; i++)
        store_free(p->body[i]);
    free(p->ev);
    free(p->body);
    free(p->len);
    free(p->send);
    free(p->deps);
    free(p->dep_names);
    free(p->want);
    free(p->want_tmp);
    free(p->out_seq);
    free(p->out_idx);
    free_cycles(p->cycles, p->n_cycles);
    order_names_destroy(&p->names);
    store_snap_destroy(&p->snap);
}

/* Records why a request (or a stream) fails: the status to answer and
 * its text; returns rc. */
static fonte_err set_fail(Fonte__Reply__Status *status_out, char *text,
                          size_t cap, Fonte__Reply__Status status,
                          fonte_err rc, const char *fmt, ...)
    FLOG_PRINTF_(6, 7);

static fonte_err
set_fail(Fonte__Reply__Status *status_out, char *text, size_t cap,
         Fonte__Reply__Status status, fonte_err rc, const char *fmt, ...)
{
    va_list ap;

    *status_out = status;
    va_start(ap, fmt);
    vsnprintf(text, cap, fmt, ap);
    va_end(ap);
    return rc;
}

#define plan_fail(p, st, rc, ...)                                            \
    set_fail(&(p)->status, (p)->error, sizeof (p)->error, st, rc, __VA_ARGS__)

typedef fonte_err (*edge_iter_fn)(store_snap_t *snap, const char *object,
                                  size_t len, store_iter_t **it_p);

/* An event's object and dependencies (codec_event_graph) into *deps,
 * grown as needed (64 at first; a second walk for more). FONTE_ENOMEM,
 * or codec_event_graph's code for bytes that do not decode. */
static fonte_err
event_graph(const void *body, size_t len, codec_slice_t *object,
            codec_slice_t **deps, size_t *cap, size_t *n_deps)
{
    if (*cap < 64 && !grow((void **) deps, cap, 64, sizeof **deps))
        return FONTE_ENOMEM;
    fonte_err rc = codec_event_graph(body, len, object, *deps, *cap, n_deps);
    if (rc == FONTE_OK && *n_deps > *cap) {
        if (!grow((void **) deps, cap, *n_deps, sizeof **deps))
            return FONTE_ENOMEM;
        rc = codec_event_graph(body, len, object, *deps, *cap, n_deps);
    }
    return rc;
}

/* True once a plan tried on the query thread is past its deadline. */
static bool
plan_late(const plan_t *p)
{
    return p->deadline_us != 0 && fonte_mono_us() > p->deadline_us;
}

/* Interns every object named by one object's `d` or `r` keys. */
static fonte_err
walk_edges(plan_t *p, edge_iter_fn open_iter, const char *object, size_t len,
           order_names_t *names)
{
    store_iter_t *it = NULL;
    store_item_t item;
    uint32_t id;
    fonte_err rc;

    if (plan_late(p))
        return FONTE_ETIMEOUT;
    if ((rc = open_iter(p->snap, object, len, &it)) != FONTE_OK)
        return rc;
    /* one object may have edges to millions (a hub every order names):
     * the deadline and the closure limit are looked at during its walk
     * too, not only between objects */
    for (size_t k = 1; store_iter_next(it, &item); k++) {
        if ((rc = order_names_intern(names, item.name.ptr, item.name.len, &id,
                                     NULL)) != FONTE_OK)
            break;
        if ((k & 255) == 0) {
            if (order_names_count(names) > p->o->max_closure) {
                rc = FONTE_ELIMIT;
                break;
            }
            if (plan_late(p)) {
                rc = FONTE_ETIMEOUT;
                break;
            }
        }
    }
    if (rc == FONTE_OK)
        rc = store_iter_error(it);
    store_iter_destroy(&it);
    return rc;
}

static fonte_err
walk_deps(void *arg, const char *object, size_t len, order_names_t *names)
{
    return walk_edges(arg, store_iter_deps, object, len, names);
}

static fonte_err
walk_dependents(void *arg, const char *object, size_t len,
                order_names_t *names)
{
    return walk_edges(arg, store_iter_dependents, object, len, names);
}

/* Room for cap events in ev, body, len and send (one capacity). */
static fonte_err
plan_reserve(plan_t *p, size_t cap)
{
    if (cap <= p->cap_ev)
        return FONTE_OK;
    order_event_t *ne = realloc(p->ev, cap * sizeof *ne);
    if (ne == NULL)
        return FONTE_ENOMEM;
    p->ev = ne;
    void **nb = realloc(p->body, cap * sizeof *nb);
    if (nb == NULL)
        return FONTE_ENOMEM;
    p->body = nb;
    size_t *nl = realloc(p->len, cap * sizeof *nl);
    if (nl == NULL)
        return FONTE_ENOMEM;
    p->len = nl;
    bool *ns = realloc(p->send, cap * sizeof *ns);
    if (ns == NULL)
        return FONTE_ENOMEM;
    p->send = ns;
    p->cap_ev = cap;
    return FONTE_OK;
}

static bool
type_wanted(const Fonte__ReplayRequest *req, codec_slice_t type)
{
    if (req->n_types == 0)
        return true;
    for (size_t i = 0; i < req->n_types; i++)
        if (strlen(req->types[i]) == type.len &&
            memcmp(req->types[i], type.ptr, type.len) == 0)
            return true;
    return false;
}

/* Adds one stored event. Owned bytes are kept or freed here; borrowed
 * ones are copied only if kept. object is its object's id when known
 * (UINT32_MAX: intern it from the bytes). */
static fonte_err
add_event(plan_t *p, uint64_t seq, uint32_t object, const void *data,
          size_t len, bool owned)
{
    void *body = (void *) data;
    if (!owned) {
        /* borrowed from an iterator: copied only if it is to be kept */
        if (p->kept + len <= KEEP_BYTES) {
            if ((body = malloc(len ? len : 1)) == NULL)
                return FONTE_ENOMEM;
            memcpy(body, data, len);
        } else {
            body = NULL;
        }
    }
    const void *bytes = body ? body : data;
    codec_view_t v;
    fonte_err rc;

    if ((p->n_ev & 4095) == 0 && atomic_load(p->stopping)) {
        store_free(body);
        return plan_fail(p, FONTE__REPLY__STATUS__UNAVAILABLE, FONTE_ECLOSED,
                         "the listener is shutting down");
    }
    if ((p->n_ev & 15) == 0 && plan_late(p)) {
        store_free(body);
        return FONTE_ETIMEOUT; /* the request goes to a worker */
    }
    if (p->n_ev >= p->o->max_events) {
        store_free(body);
        return plan_fail(p, FONTE__REPLY__STATUS__LIMIT, FONTE_ELIMIT,
                         "the replay of %s has more than %zu events (limit "
                         "--max-replay-events)", p->req->object,
                         p->o->max_events);
    }
    /* Stored events passed the rules at ingest (and limits lowered since
     * must not make them unreadable): only their structure is walked,
     * object and dependencies in one pass (codec_event_graph), the type
     * too only for a types filter. */
    codec_slice_t obj, type = { "", 0 };
    size_t nd = 0;
    rc = event_graph(bytes, len, &obj, &p->dep_names, &p->cap_dep_names, &nd);
    if (rc == FONTE_ENOMEM) {
        store_free(body);
        return rc;
    }
    if (rc == FONTE_OK && p->req->n_types > 0 &&
        (rc = codec_event_fields(bytes, len, &v)) == FONTE_OK)
        type = v.type;
    if (rc != FONTE_OK) {
        store_free(body);
        return plan_fail(p, FONTE__REPLY__STATUS__INTERNAL, FONTE_ESTORE,
                         "stored event %llu does not decode",
                         (unsigned long long) seq);
    }
    if (object == UINT32_MAX &&
        (rc = order_names_intern(p->names, obj.ptr, obj.len, &object,
                                 NULL)) != FONTE_OK) {
        store_free(body);
        return rc;
    }
    if (p->n_ev == p->cap_ev &&
        (rc = plan_reserve(p, p->cap_ev ? p->cap_ev * 2 : 256)) != FONTE_OK) {
        store_free(body);
        return rc;
    }
    if (!grow((void **) &p->deps, &p->cap_deps, p->n_deps + nd,
              sizeof *p->deps)) {
        store_free(body);
        return FONTE_ENOMEM;
    }

    order_event_t *e = &p->ev[p->n_ev];
    e->seq = seq;
    e->object = object;
    e->deps_off = (uint32_t) p->n_deps;
    e->n_deps = 0;
    for (size_t i = 0; i < nd; i++) {
        uint32_t id;
        codec_slice_t dep = p->dep_names[i];
        if ((rc = order_names_intern(p->names, dep.ptr, dep.len, &id, NULL)) !=
            FONTE_OK) {
            store_free(body);
            return rc;
        }
        p->deps[p->n_deps++] = id;
        e->n_deps++;
    }
    p->send[p->n_ev] = type_wanted(p->req, type);
    if (body != NULL && p->kept + len <= KEEP_BYTES) {
        p->body[p->n_ev] = body;
        p->len[p->n_ev] = len;
        p->kept += len;
    } else {
        store_free(body);
        p->body[p->n_ev] = NULL;
        p->len[p->n_ev] = 0;
    }
    p->n_ev++;
    return FONTE_OK;
}

static bool
in_window(const Fonte__ReplayRequest *req, uint64_t seq)
{
    return seq > req->after_seq && (req->until_seq == 0 || seq <= req->until_seq);
}

/* Sorts w[0..n) by seq. w is made of ascending runs (one object's seqs
 * each), so a natural merge sort needs one pass per halving of the
 * runs: one pass for one object. tmp has room for n; the result is in
 * whichever of the two the last pass wrote, returned. Seqs are unique. */
static load_want_t *
sort_wants(load_want_t *w, load_want_t *tmp, size_t n)
{
    for (;;) {
        size_t runs = 0, i = 0, o = 0;
        while (i < n) {
            size_t a = i, mid = i + 1, end;
            while (mid < n && w[mid].seq > w[mid - 1].seq)
                mid++;
            end = mid < n ? mid + 1 : mid;
            while (end < n && w[end].seq > w[end - 1].seq)
                end++;
            size_t x = a, y = mid;
            while (x < mid && y < end)
                tmp[o++] = w[x].seq < w[y].seq ? w[x++] : w[y++];
            while (x < mid)
                tmp[o++] = w[x++];
            while (y < end)
                tmp[o++] = w[y++];
            runs++;
            i = end;
        }
        load_want_t *t = w;
        w = tmp;
        tmp = t;
        if (runs <= 1)
            return w;
    }
}

/* Reads the wanted events in seq order and adds them, READ_WINDOW at a
 * time: each window's gets shared with the read helpers (readers.h),
 * then added in seq order on this thread. A plan on the query thread
 * still gives up in time: the readers stop reading at its deadline (what
 * they did not read is FONTE_ETIMEOUT), and add_event looks at the
 * clock every 16 events. */
static fonte_err
load_wants(plan_t *p)
{
    fonte_err rc = FONTE_OK;
    load_want_t *w = sort_wants(p->want, p->want_tmp, p->n_want);
    uint64_t seqs[READ_WINDOW];
    void *body[READ_WINDOW];
    size_t len[READ_WINDOW];
    fonte_err got[READ_WINDOW];

    for (size_t at = 0; at < p->n_want && rc == FONTE_OK;) {
        if (plan_late(p)) {
            rc = FONTE_ETIMEOUT; /* the request goes to a worker */
            break;
        }
        size_t n = p->n_want - at < READ_WINDOW ? p->n_want - at
                                                : READ_WINDOW;
        for (size_t i = 0; i < n; i++)
            seqs[i] = w[at + i].seq;
        readers_get(p->readers, p->snap, seqs, n, body, len, got,
                    p->deadline_us);
        size_t i = 0;
        for (; i < n && rc == FONTE_OK; i++) {
            rc = got[i];
            if (rc == FONTE_ENOTFOUND)
                rc = plan_fail(p, FONTE__REPLY__STATUS__INTERNAL, FONTE_ESTORE,
                               "index names event %llu, which is missing",
                               (unsigned long long) seqs[i]);
            if (rc == FONTE_OK)
                rc = add_event(p, seqs[i], w[at + i].object, body[i], len[i],
                               true); /* takes the bytes, even failing */
            else
                store_free(body[i]);
        }
        for (; i < n; i++) /* read, not added: the plan failed */
            store_free(body[i]);
        at += n;
    }
    p->n_want = 0;
    return rc;
}

/* Step 2 for a closure: every object's `o` keys in the window, then the
 * events they name, LOAD_BATCH at a time, in seq order. */
static fonte_err
load_closure_events(plan_t *p)
{
    fonte_err rc = FONTE_OK;

    for (uint32_t o = 0; o < p->n_closure && rc == FONTE_OK; o++) {
        size_t nlen;
        const char *name = order_names_get(p->names, o, &nlen);
        store_iter_t *it = NULL;
        store_item_t item;
        if ((rc = store_iter_object(p->snap, name, nlen, p->req->after_seq,
                                    &it)) != FONTE_OK)
            break;
        while (rc == FONTE_OK && store_iter_next(it, &item)) {
            if (!in_window(p->req, item.seq))
                break; /* o keys are in seq order: nothing later fits */
            if ((p->n_want & 1023) == 1023 && plan_late(p)) {
                rc = FONTE_ETIMEOUT; /* the request goes to a worker */
                break;
            }
            if (p->n_want == (p->o->load_batch ? p->o->load_batch
                                               : LOAD_BATCH))
                rc = load_wants(p);
            if (rc == FONTE_OK && p->n_want == p->cap_want) {
                size_t cap = p->cap_want ? p->cap_want * 2 : 256;
                load_want_t *w = realloc(p->want, cap * sizeof *w);
                if (w != NULL)
                    p->want = w;
                load_want_t *t = w ? realloc(p->want_tmp, cap * sizeof *t)
                                   : NULL;
                if (t == NULL) {
                    rc = FONTE_ENOMEM;
                    break;
                }
                p->want_tmp = t;
                p->cap_want = cap;
            }
            if (rc == FONTE_OK)
                p->want[p->n_want++] = (load_want_t) { item.seq, o };
        }
        if (rc == FONTE_OK)
            rc = store_iter_error(it);
        store_iter_destroy(&it);
    }
    if (rc == FONTE_OK && p->n_want > 0)
        rc = load_wants(p);
    return rc;
}

/* Step 1 and 2 for "*": the log itself. */
static fonte_err
load_all_events(plan_t *p)
{
    store_iter_t *it = NULL;
    store_item_t item;
    fonte_err rc;

    /* the size is known: reserve once instead of growing (and faulting
     * pages in) a million times */
    uint64_t last = store_snap_last_seq(p->snap);
    uint64_t hi = p->req->until_seq && p->req->until_seq < last
                      ? p->req->until_seq : last;
    uint64_t want = hi > p->req->after_seq ? hi - p->req->after_seq : 0;
    if (want > p->o->max_events)
        want = p->o->max_events;
    if (want > 0 && (rc = plan_reserve(p, (size_t) want)) != FONTE_OK)
        return rc;
    if ((rc = store_iter_events(p->snap, p->req->after_seq, &it)) != FONTE_OK)
        return rc;
    while (rc == FONTE_OK && store_iter_next(it, &item)) {
        if (!in_window(p->req, item.seq))
            break;
        rc = add_event(p, item.seq, UINT32_MAX, item.value.ptr,
                       item.value.len, false);
    }
    if (rc == FONTE_OK)
        rc = store_iter_error(it);
    store_iter_destroy(&it);
    return rc;
}

static bool
object_exists(plan_t *p, const char *object, fonte_err *rc)
{
    store_iter_t *it = NULL;
    store_item_t item;

    *rc = store_iter_object(p->snap, object, strlen(object), 0, &it);
    if (*rc != FONTE_OK)
        return false;
    bool found = store_iter_next(it, &item);
    *rc = store_iter_error(it);
    store_iter_destroy(&it);
    return found;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Each broken cycle of r as its object names (ids of names), sorted and
 * joined by ",", into a new array *out of *n_out strings: the first ones,
 * in the order they were broken, while their names come to at most
 * budget bytes (a reply carries them beside its page); the rest are
 * counted in *omitted, not listed. */
static fonte_err
format_cycles(const order_names_t *names_of, const order_result_t *r,
              size_t budget, char ***out, size_t *n_out, uint64_t *omitted)
{
    size_t used = 0;

    *out = NULL;
    *n_out = 0;
    *omitted = 0;
    if (r->n_cycles == 0)
        return FONTE_OK;
    char **cycles = calloc(r->n_cycles, sizeof *cycles);
    if (cycles == NULL)
        return FONTE_ENOMEM;
    *out = cycles;
    for (size_t c = 0; c < r->n_cycles; c++) {
        size_t k = r->cycle_off[c + 1] - r->cycle_off[c], total = 0;
        for (size_t i = 0; i < k && *omitted == 0; i++)
            total += strlen(order_names_get(
                         names_of, r->cycle_objects[r->cycle_off[c] + i],
                         NULL)) + 1;
        if (*omitted > 0 || total > budget - used) {
            (*omitted)++;
            continue;
        }
        used += total;
        const char **names = malloc((k ? k : 1) * sizeof *names);
        if (names == NULL)
            return FONTE_ENOMEM;
        for (size_t i = 0; i < k; i++)
            names[i] = order_names_get(names_of,
                                       r->cycle_objects[r->cycle_off[c] + i],
                                       NULL);
        qsort(names, k, sizeof *names, cmp_str);
        char *str = malloc(total ? total : 1);
        if (str == NULL) {
            free(names);
            return FONTE_ENOMEM;
        }
        str[0] = '\0';
        size_t at = 0;
        for (size_t i = 0; i < k; i++) {
            size_t n = strlen(names[i]);
            if (i > 0)
                str[at++] = ',';
            memcpy(str + at, names[i], n);
            at += n;
            str[at] = '\0';
        }
        free(names);
        cycles[(*n_out)++] = str;
    }
    return FONTE_OK;
}

/* The ReplayReply's cycles (4) and, when some were not listed,
 * cycles_omitted (6). */
static void
write_cycles(codec_writer_t *w, char *const *cycles, size_t n,
             uint64_t omitted)
{
    for (size_t i = 0; i < n; i++)
        codec_writer_bytes(w, 4, cycles[i], strlen(cycles[i]));
    if (omitted > 0)
        codec_writer_uint(w, 6, omitted);
}

/* Steps 1-4. On failure p->status/error say what to answer (unless the
 * return is ENOMEM or a store error, answered INTERNAL). */
static fonte_err
plan_build(plan_t *p, store_t *store)
{
    int64_t t0 = fonte_mono_us();
    const Fonte__ReplayRequest *req = p->req;
    order_result_t r = { 0 };
    fonte_err rc;
    uint32_t id;

    p->status = FONTE__REPLY__STATUS__INTERNAL;
    if (req->until_seq != 0 && req->until_seq <= req->after_seq)
        return plan_fail(p, FONTE__REPLY__STATUS__BAD_REQUEST, FONTE_EREQUEST,
                         "until_seq (%llu) must be 0 or greater than "
                         "after_seq (%llu)",
                         (unsigned long long) req->until_seq,
                         (unsigned long long) req->after_seq);
    if ((rc = store_snap_new(store, &p->snap)) != FONTE_OK)
        return rc;
    if ((p->names = order_names_new()) == NULL)
        return FONTE_ENOMEM;

    if (strcmp(req->object, REPLAY_ALL) == 0) {
        if ((rc = load_all_events(p)) != FONTE_OK)
            return rc;
    } else {
        if (!object_exists(p, req->object, &rc)) {
            if (rc != FONTE_OK)
                return rc;
            return plan_fail(p, FONTE__REPLY__STATUS__NOT_FOUND,
                             FONTE_ENOTFOUND, "no events for object %s",
                             req->object);
        }
        if ((rc = order_names_intern(p->names, req->object,
                                     strlen(req->object), &id, NULL)))
            return rc;
        if (req->dependents &&
            (rc = order_closure(p->names, 0, walk_dependents, p,
                                p->o->max_closure)) != FONTE_OK)
            goto closure_failed;
        if (!req->skip_dependencies &&
            (rc = order_closure(p->names, 0, walk_deps, p,
                                p->o->max_closure)) != FONTE_OK)
            goto closure_failed;
        p->n_closure = order_names_count(p->names);
        if ((rc = load_closure_events(p)) != FONTE_OK)
            return rc;
    }

    p->load_us = fonte_mono_us() - t0;
    t0 = fonte_mono_us();
    order_graph_t g = { p->ev, p->n_ev, p->deps, p->n_deps,
                        order_names_count(p->names) };
    switch (req->order) {
    case FONTE__REPLAY_REQUEST__ORDER__SEQUENCE:
        rc = order_sequence(&g, &r);
        break;
    case FONTE__REPLAY_REQUEST__ORDER__OBJECTS:
        rc = order_objects(&g, &r);
        break;
    default:
        rc = order_causal(&g, &r);
        break;
    }
    p->order_us = fonte_mono_us() - t0;
    if (rc == FONTE_ELIMIT)
        return plan_fail(p, FONTE__REPLY__STATUS__LIMIT, rc,
                         "the dependency cycles of %s interlock too much to "
                         "be broken in causal order: replay it with "
                         "order=sequence", req->object);
    if (rc != FONTE_OK)
        return rc;
    p->out_seq = malloc((r.n_order ? r.n_order : 1) * sizeof *p->out_seq);
    p->out_idx = malloc((r.n_order ? r.n_order : 1) * sizeof *p->out_idx);
    if (p->out_seq == NULL || p->out_idx == NULL) {
        order_result_fini(&r);
        return FONTE_ENOMEM;
    }
    for (size_t i = 0; i < r.n_order; i++) {
        uint32_t e = r.order[i];
        if (!p->send[e])
            continue;
        p->out_seq[p->n_out] = p->ev[e].seq;
        p->out_idx[p->n_out++] = e;
    }
    rc = format_cycles(p->names, &r, p->o->cycles_bytes, &p->cycles,
                       &p->n_cycles, &p->cycles_omitted);
    order_result_fini(&r);
    return rc;

closure_failed:
    if (rc == FONTE_ELIMIT)
        return plan_fail(p, FONTE__REPLY__STATUS__LIMIT, FONTE_ELIMIT,
                         "the closure of %s has more than %zu objects "
                         "(limit --max-closure)", req->object,
                         p->o->max_closure);
    return rc;
}

/* ------------------------------------------------------------------ */
/* pages and cursors                                                   */

static void
random_bytes(void *buf, size_t n)
{
    uint8_t *b = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(b + got, n - got, 0);
        if (k <= 0) {
            /* no entropy source: fall back on time and address bits */
            uint64_t x = (uint64_t) fonte_mono_us() ^ (uint64_t) (uintptr_t) buf;
            for (; got < n; got++, x = x * 6364136223846793005ULL + 1)
                b[got] = (uint8_t) (x >> 33);
            return;
        }
        got += (size_t) k;
    }
}

static void
put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t) v;
}

static uint64_t
get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Writes the events [from, from + k) of a plan's answer into a
 * ReplayReply under construction; returns k, the number written (at least
 * one unless none are left), bounded by page_size and page_bytes. Events
 * the plan kept are written from memory, the others straight from a
 * store reader (no copy in between). */
static size_t
write_events(replay_t *rp, codec_writer_t *w, const uint64_t *seqs,
             size_t n, size_t from, size_t page_size, const plan_t *kept,
             fonte_err *rc)
{
    store_snap_t *snap = NULL;
    store_reader_t *reader = NULL;
    size_t k = 0;

    *rc = FONTE_OK;
    for (size_t i = from; i < n && k < page_size; i++) {
        const void *body;
        size_t len;
        if (kept != NULL && kept->body[kept->out_idx[i]] != NULL) {
            body = kept->body[kept->out_idx[i]];
            len = kept->len[kept->out_idx[i]];
        } else {
            if (reader == NULL &&
                ((*rc = store_snap_new(rp->store, &snap)) != FONTE_OK ||
                 (*rc = store_reader_new(snap, &reader)) != FONTE_OK))
                break;
            if ((*rc = store_reader_get(reader, seqs[i], &body, &len)))
                break;
        }
        /* a page never exceeds page_bytes, but always has one event */
        if (k > 0 && w->len + len + 32 > rp->o.page_bytes)
            break;
        codec_writer_event(w, 1, body, len, seqs[i], NULL);
        k++;
    }
    store_reader_destroy(&reader);
    store_snap_destroy(&snap);
    return k;
}

static size_t
page_size_of(const replay_t *rp, const Fonte__ReplayRequest *req)
{
    size_t n = req->page_size ? req->page_size : rp->o.page_size;
    return n > 0 ? n : 1;
}

static void logstream_free(logstream_t *ls);

/* Drops one reference. cursor_lock held: the last one only moves the
 * list to rp->dead (a list nobody references is in no prefetch queue,
 * which holds a reference, so pf_next is free to link it). Freeing a
 * stream joins its scanner thread, which may be in a LevelDB read:
 * never done under cursor_lock, which every page and every new replay
 * takes. The caller reaps after unlocking. */
static void
seqlist_unref_locked(replay_t *rp, seqlist_t *l)
{
    if (l != NULL && --l->refs == 0) {
        l->pf_next = rp->dead;
        rp->dead = l;
    }
}

/* Frees the lists dropped under cursor_lock. Not holding it. */
static void
seqlist_reap(replay_t *rp)
{
    pthread_mutex_lock(&rp->cursor_lock);
    seqlist_t *dead = rp->dead;
    rp->dead = NULL;
    pthread_mutex_unlock(&rp->cursor_lock);
    while (dead != NULL) {
        seqlist_t *next = dead->pf_next;
        free(dead->seqs);
        logstream_free(dead->stream);
        free(dead);
        dead = next;
    }
}

/* Has the lists dropped under cursor_lock freed by the prefetch thread,
 * or here if it does not run: freeing a stream joins its scanner, which
 * may be in the middle of a 256 KiB read, and the caller may be the query
 * thread every client waits on. Not holding cursor_lock. */
static void
seqlist_reap_later(replay_t *rp)
{
    pthread_mutex_lock(&rp->pf_lock);
    bool handed = rp->pf_started && !rp->pf_stop;
    if (handed) {
        rp->pf_reap = true;
        pthread_cond_signal(&rp->pf_cond);
    }
    pthread_mutex_unlock(&rp->pf_lock);
    if (!handed)
        seqlist_reap(rp);
}

/* Drops one reference; the last one has the list freed (reap_later).
 * Not holding cursor_lock. */
static void
seqlist_unref(replay_t *rp, seqlist_t *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&rp->cursor_lock);
    seqlist_unref_locked(rp, l);
    bool reap = rp->dead != NULL;
    pthread_mutex_unlock(&rp->cursor_lock);
    if (reap)
        seqlist_reap_later(rp);
}

/* Empties slot c (expired or evicted). cursor_lock held; reap after. */
static void
cursor_drop_locked(replay_t *rp, cursor_t *c)
{
    seqlist_unref_locked(rp, c->list);
    c->list = NULL;
}

/* Keeps seqs, or a stream, under a new cursor (taking ownership); evicts
 * the least recently used or expired entries to make room. FONTE_ENOMEM
 * (seqs or stream is freed then). */
static fonte_err
cursor_put(replay_t *rp, uint64_t *seqs, size_t n, logstream_t *stream,
           size_t page_size, uint8_t id[CURSOR_ID], seqlist_t **ref)
{
    int64_t now = fonte_mono_us();
    size_t victim = 0;
    seqlist_t *l = malloc(sizeof *l);

    if (l == NULL) {
        free(seqs);
        logstream_free(stream);
        return FONTE_ENOMEM;
    }
    l->refs = 1;
    l->seqs = seqs;
    l->n = n;
    l->stream = stream;
    l->page_size = page_size;
    l->pf_next = NULL;
    l->pf_queued = false;
    random_bytes(id, CURSOR_ID);
    pthread_mutex_lock(&rp->cursor_lock);
    bool free_slot = false;
    for (size_t i = 0; i < rp->o.max_cursors; i++) {
        cursor_t *c = &rp->cursors[i];
        if (c->list != NULL && now - c->last_use_us > rp->o.cursor_ttl_us)
            cursor_drop_locked(rp, c);
        if (free_slot)
            continue;
        if (c->list == NULL) {
            victim = i;
            free_slot = true;
        } else if (c->last_use_us < rp->cursors[victim].last_use_us) {
            victim = i;
        }
    }
    cursor_t *c = &rp->cursors[victim];
    cursor_drop_locked(rp, c);
    memcpy(c->id, id, CURSOR_ID);
    c->list = l;
    c->last_use_us = now;
    if (ref != NULL) {
        l->refs++;
        *ref = l;
    }
    pthread_mutex_unlock(&rp->cursor_lock);
    seqlist_reap_later(rp); /* what expired or was evicted */
    return FONTE_OK;
}

/* Drops the cursors idle for longer than cursor_ttl_us, whether or not
 * anyone asks again: an abandoned stream holds a snapshot, iterators
 * (which keep LevelDB from deleting files), a scanner thread and pages
 * cut ahead. What they held is freed once the lock is let go (a
 * scanner is joined). Called by the prefetch thread. */
static void
cursor_sweep(replay_t *rp)
{
    int64_t now = fonte_mono_us();

    pthread_mutex_lock(&rp->cursor_lock);
    for (size_t i = 0; i < rp->o.max_cursors; i++) {
        cursor_t *c = &rp->cursors[i];
        if (c->list != NULL && now - c->last_use_us > rp->o.cursor_ttl_us)
            cursor_drop_locked(rp, c);
    }
    pthread_mutex_unlock(&rp->cursor_lock);
    seqlist_reap(rp);
}

/* ------------------------------------------------------------------ */
/* the first-seq cache                                                 */

/* The FIRST_WAYS slots name may live in; *victim: the one to evict. */
static first_slot_t *
first_set(first_cache_t *c, const char *name, size_t len, unsigned *victim)
{
    uint64_t h = fonte_fnv1a(name, len, FONTE_FNV_BASIS);
    return &c->slot[fonte_hash_set(h, FIRST_SLOTS, FIRST_WAYS, victim)];
}

/* The first seq of name if cached (0 if not). */
static uint64_t
first_get(first_cache_t *c, const char *name, size_t len)
{
    uint64_t first = 0;
    unsigned victim;

    if (len == 0 || len > FIRST_NAME_MAX)
        return 0;
    pthread_mutex_lock(&c->lock);
    if (c->slot != NULL) {
        const first_slot_t *set = first_set(c, name, len, &victim);
        for (unsigned w = 0; w < FIRST_WAYS && first == 0; w++)
            if (set[w].first != 0 && set[w].len == len &&
                memcmp(set[w].name, name, len) == 0)
                first = set[w].first;
    }
    pthread_mutex_unlock(&c->lock);
    return first;
}

static void
first_put(first_cache_t *c, const char *name, size_t len, uint64_t first)
{
    unsigned victim;

    if (len == 0 || len > FIRST_NAME_MAX || first == 0)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->slot == NULL)
        c->slot = calloc(FIRST_SLOTS, sizeof *c->slot); /* NULL: no cache */
    if (c->slot != NULL) {
        first_slot_t *set = first_set(c, name, len, &victim);
        first_slot_t *e = &set[victim]; /* if the set is full */
        for (unsigned w = 0; w < FIRST_WAYS; w++)
            if (set[w].first == 0 ||
                (set[w].len == len && memcmp(set[w].name, name, len) == 0)) {
                e = &set[w];
                break;
            }
        e->first = first;
        e->len = (uint8_t) len;
        memcpy(e->name, name, len);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ */
/* streamed whole-store replays                                        */

/* A RETURN replay of "*" in causal or sequence order without a types
 * filter is not planned: each page is cut from the log as it is read,
 * through order_stream (order.h), so the first page comes at once,
 * memory does not grow with the store, and no limit applies to the
 * number of events (only to how many wait for a dependency at once:
 * max_events). total is known up front because seqs are contiguous.
 * Cycles are found only at the end of the log: they are reported on the
 * page where they were broken (protocol.md §6.2).
 *
 * Pages ahead: once a page is answered, the prefetch thread cuts the
 * pages after it while the client reads this one, up to ahead_pages
 * (replay_opts, at most AHEAD_PAGES) waiting, and unless AHEAD_BUDGET
 * bytes of such pages (all streams) are waiting already. It goes on to
 * the second without waiting to be asked for the first, so a client that
 * keeps up never waits for a hand-over (one was 110-190 us a page: 5% of
 * a replay of the whole store).
 *
 * Locking. lock guards the stream, except that while `cutting` is set
 * the prefetch thread cuts a page WITHOUT the lock: the cutter's state
 * (snapshot, iterator, order stream, pos, carry, log_done, finished,
 * cycles, last_bytes, fail_status, fail) is then its own, and a request
 * may only take a page from ahead[], retry `sent`, or wait on cut_done.
 * Setting `cutting` and publishing the page are done under the lock, so
 * whatever the cutter wrote is seen by the next holder. A request cuts
 * synchronously (under the lock) only when nothing is cut ahead or being
 * cut. The seqs of the page answered last are kept, so that a retry of
 * it (the same cursor) gets the same page. A read error or a limit fails
 * the stream for good: every later request gets that answer. */
#define AHEAD_BUDGET ((size_t) 32 << 20)
/* Objects whose first seq in the window a causal stream remembers as
 * their first events go by (about 50 bytes each: up to 13 MiB a stream,
 * 52 MiB for all), so that a dependency on one of them needs no seek;
 * others are sought as before (10-30 us each). A store with more objects
 * named as dependencies than the first-seq cache holds would otherwise
 * seek for most of them on every replay. Remembering costs a lookup per
 * event (10-15% of a replay of the bench's store, which needs it not),
 * so a stream remembers only once some stream of this listener has
 * needed seen_after first seqs (replay_opts), and then from its start:
 * what a stream remembers is an object's first seq only if it saw every
 * event of the window before it. For the same reason a stream that
 * skips one object (no room, no memory) remembers nothing more. (Until
 * 2026-11-29 a stream began to remember in mid-window, once it had
 * itself needed seen_after: an object with events before that point was
 * then remembered at a later one, and a dependency on it waited for that
 * later event - a cycle that was not there, and the wrong order.) */
#define SEEN_MAX ((size_t) 1 << 18)
#define SEEN_ALL_MAX ((size_t) 1 << 20) /* all streams together: 52 MiB */

typedef struct page {
    uint64_t pos; /* where it begins in the replay */
    uint64_t *seqs;
    size_t n, cap;
    codec_writer_t w; /* its events, encoded (until answered) */
    bool valid;
    bool cycles; /* the stream's cycles are reported on this page */
} page_t;

struct logstream {
    replay_t *rp;
    pthread_mutex_t lock;
    pthread_cond_t cut_done; /* signalled when `cutting` is cleared */
    bool cutting;            /* the prefetch thread cuts without the lock */
    store_t *store;
    const replay_opts_t *o;
    const atomic_bool *stopping;
    atomic_size_t *ahead_bytes;
    atomic_int *scan_slots;
    atomic_size_t *seen_names;
    first_cache_t *firsts;
    order_stream_t *os;
    bool causal;
    uint64_t after, hi, next; /* the window (after, hi]; next seq to read */
    uint64_t total, pos;      /* events in the window; cut so far */
    size_t page_size;         /* of the last request */
    size_t last_bytes;        /* the size of the last page cut */
    bool log_done, finished;
    bool carry; /* carry_seq came out but did not fit the page before */
    uint64_t carry_seq;
    page_t sent;                /* answered last: for a retry */
    page_t ahead[AHEAD_PAGES];  /* cut ahead, not asked for yet, in order */
    size_t n_ahead;
    page_t spare;               /* a seqs buffer for the next page cut */
    char **cycles; /* reported on the page whose `cycles` is set */
    size_t n_cycles;
    uint64_t cycles_omitted;
    Fonte__Reply__Status fail_status; /* OK while the stream is good */
    char fail[256];
    /* Kept from page to page while the stream lives (setting them up
     * again cost 90-240 us a page): the snapshot, the log scanner
     * (logscan.h: the log read ahead on a thread of its own), a reader
     * for held events and one for dependencies' first seqs. */
    store_snap_t *snap;
    logscan_t *scan;
    store_reader_t *reader, *probe;
    order_name_t *deps; /* scratch */
    size_t cap_deps;
    /* Causal streams: the objects seen so far in the window (at most
     * SEEN_MAX) and the seq each was first seen at - its first seq in
     * the window, since the log is read in order. */
    order_names_t *seen;
    uint64_t *seen_first;
    size_t cap_seen;
    bool remember; /* from the start (seen_note) */
    bool seen_off; /* no more: something was not remembered */
    size_t asked; /* first seqs this stream needed beyond what it saw */
};

static void
page_fini(page_t *pg)
{
    free(pg->seqs);
    codec_writer_fini(&pg->w);
    memset(pg, 0, sizeof *pg);
}

/* Releases what pins LevelDB's files (the stream is over or failed). */
static void
stream_release(logstream_t *ls)
{
    if (ls->seen != NULL)
        atomic_fetch_sub(ls->seen_names, order_names_count(ls->seen));
    order_names_destroy(&ls->seen);
    free(ls->seen_first);
    ls->seen_first = NULL;
    ls->cap_seen = 0;
    logscan_destroy(&ls->scan); /* joins its thread first */
    store_reader_destroy(&ls->reader);
    store_reader_destroy(&ls->probe);
    store_snap_destroy(&ls->snap);
}

static void
logstream_free(logstream_t *ls)
{
    if (ls == NULL)
        return;
    stream_release(ls);
    for (size_t i = 0; i < ls->n_ahead; i++) {
        atomic_fetch_sub(ls->ahead_bytes, ls->ahead[i].w.cap);
        page_fini(&ls->ahead[i]);
    }
    order_stream_destroy(&ls->os);
    page_fini(&ls->sent);
    page_fini(&ls->spare);
    free_cycles(ls->cycles, ls->n_cycles);
    free(ls->deps);
    pthread_cond_destroy(&ls->cut_done);
    pthread_mutex_destroy(&ls->lock);
    free(ls);
}

/* order_first_fn: the object's first seq in the window, from the
 * first-seq cache or its `o` keys (one seek; order_stream asks once per
 * object named as a dependency). */
static fonte_err
stream_first(void *arg, const char *object, size_t len, uint64_t *first)
{
    logstream_t *ls = arg;
    fonte_err rc;

    /* an object already seen in the window: the seq it was seen at */
    uint32_t id;
    if (ls->seen != NULL &&
        order_names_find(ls->seen, object, len, &id) == FONTE_OK) {
        *first = ls->seen_first[id];
        return FONTE_OK;
    }
    if (++ls->asked >= ls->o->seen_after && !ls->remember)
        atomic_store(&ls->rp->seen_wanted, true); /* for the next ones */
    /* a cached first seq after the window's start is its first in it */
    *first = first_get(ls->firsts, object, len);
    if (*first <= ls->after) {
        if (ls->probe == NULL &&
            (rc = store_reader_new(ls->snap, &ls->probe)) != FONTE_OK)
            return rc;
        atomic_fetch_add(&ls->firsts->lookups, 1);
        if ((rc = store_reader_first(ls->probe, object, len, ls->after,
                                     first)))
            return rc;
        if (ls->after == 0)
            first_put(ls->firsts, object, len, *first);
    }
    if (*first > ls->hi)
        *first = 0;
    return FONTE_OK;
}

#define stream_fail(ls, st, rc, ...)                                         \
    set_fail(&(ls)->fail_status, (ls)->fail, sizeof (ls)->fail, st, rc,       \
             __VA_ARGS__)

/* A new stream over the window (after, hi], hi > after. NULL: no memory. */
static logstream_t *
logstream_new(replay_t *rp, const Fonte__ReplayRequest *req, uint64_t hi)
{
    logstream_t *ls = calloc(1, sizeof *ls);
    if (ls == NULL)
        return NULL;
    pthread_mutex_init(&ls->lock, NULL);
    pthread_cond_init(&ls->cut_done, NULL);
    ls->rp = rp;
    ls->store = rp->store;
    ls->o = &rp->o;
    ls->stopping = &rp->stopping;
    ls->ahead_bytes = &rp->ahead_bytes;
    ls->scan_slots = &rp->scan_slots;
    ls->seen_names = &rp->seen_names;
    ls->firsts = &rp->firsts;
    ls->causal = req->order != FONTE__REPLAY_REQUEST__ORDER__SEQUENCE;
    ls->remember = ls->causal && (rp->o.seen_after == 0 ||
                                  atomic_load(&rp->seen_wanted));
    ls->after = req->after_seq;
    ls->hi = hi;
    ls->next = req->after_seq + 1;
    ls->total = hi - req->after_seq;
    ls->fail_status = FONTE__REPLY__STATUS__OK;
    if (order_stream_new(stream_first, ls, rp->o.max_events, &ls->os) !=
        FONTE_OK) {
        logstream_free(ls);
        return NULL;
    }
    return ls;
}

/* Remembers that object was first seen at seq, if it is new. A stream
 * remembers from its window's first event on, every object, or stops
 * for good at the first it cannot (no room, no memory): what it has
 * remembered stays true, and what it has not is sought. */
static void
seen_note(logstream_t *ls, codec_slice_t object, uint64_t seq)
{
    uint32_t id;
    int added = 0;

    if (ls->seen == NULL && (ls->seen = order_names_new()) == NULL) {
        ls->seen_off = true; /* no memory for it: do without */
        return;
    }
    size_t n = order_names_count(ls->seen);
    if (n >= SEEN_MAX || atomic_load(ls->seen_names) >= SEEN_ALL_MAX ||
        !grow((void **) &ls->seen_first, &ls->cap_seen, n + 1,
              sizeof *ls->seen_first) ||
        order_names_intern(ls->seen, object.ptr, object.len, &id, &added) !=
            FONTE_OK) {
        ls->seen_off = true; /* from here on it would not be the first */
        return;
    }
    if (added) { /* else seen before: its first seq is kept */
        ls->seen_first[id] = seq;
        atomic_fetch_add(ls->seen_names, 1);
    }
}

/* Reads the next log event into the order. */
static fonte_err
stream_push(logstream_t *ls, const store_item_t *item)
{
    codec_slice_t object;
    size_t nd = 0;
    fonte_err rc;

    if (item->seq != ls->next)
        return stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL, FONTE_ESTORE,
                           "event %llu is missing from the log",
                           (unsigned long long) ls->next);
    rc = event_graph(item->value.ptr, item->value.len, &object, &ls->deps,
                     &ls->cap_deps, &nd);
    if (rc == FONTE_ENOMEM)
        return rc;
    if (rc != FONTE_OK)
        return stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL, FONTE_ESTORE,
                           "stored event %llu does not decode",
                           (unsigned long long) item->seq);
    if (!ls->causal)
        nd = 0; /* sequence order: dependencies impose nothing */
    else if (ls->remember && !ls->seen_off)
        seen_note(ls, object, item->seq);
    rc = order_stream_push(ls->os, item->seq, object, ls->deps, nd);
    if (rc == FONTE_ELIMIT)
        return stream_fail(ls, FONTE__REPLY__STATUS__LIMIT, rc,
                           "the replay of %s has more than %zu events waiting "
                           "for a dependency (limit --max-replay-events)",
                           REPLAY_ALL, ls->o->max_events);
    if (rc != FONTE_OK)
        return rc;
    if (ls->next++ == ls->hi)
        ls->log_done = true;
    if ((ls->next & 4095) == 0 && atomic_load(ls->stopping))
        return stream_fail(ls, FONTE__REPLY__STATUS__UNAVAILABLE,
                           FONTE_ECLOSED, "the listener is shutting down");
    return FONTE_OK;
}

/* Adds one event to a page. */
static fonte_err
page_add(page_t *pg, uint64_t seq, const void *body, size_t len)
{
    if (!grow((void **) &pg->seqs, &pg->cap, pg->n + 1, sizeof *pg->seqs))
        return FONTE_ENOMEM;
    codec_writer_event(&pg->w, 1, body, len, seq, NULL);
    if (pg->w.failed)
        return FONTE_ENOMEM;
    pg->seqs[pg->n++] = seq;
    return FONTE_OK;
}

#define PARK_SCAN_MAX 8 /* idle streams looked at for a scanner */

/* Parks the scanner threads of streams other than self whose cursor has
 * not been used for scan_idle_us, giving their slots back. The streams
 * are referenced under cursor_lock and locked after it (the order
 * elsewhere is a stream's lock, then cursor_lock), and only tried: one
 * that is locked or being cut is in use, not idle. */
static void
park_idle(replay_t *rp, const logstream_t *self)
{
    int64_t now = fonte_mono_us();
    seqlist_t *idle[PARK_SCAN_MAX];
    size_t n = 0;

    pthread_mutex_lock(&rp->cursor_lock);
    for (size_t i = 0; i < rp->o.max_cursors && n < PARK_SCAN_MAX; i++) {
        cursor_t *c = &rp->cursors[i];
        if (c->list != NULL && c->list->stream != NULL &&
            c->list->stream != self &&
            now - c->last_use_us >= rp->o.scan_idle_us) {
            c->list->refs++;
            idle[n++] = c->list;
        }
    }
    pthread_mutex_unlock(&rp->cursor_lock);
    for (size_t i = 0; i < n; i++) {
        logstream_t *ls = idle[i]->stream;
        if (pthread_mutex_trylock(&ls->lock) != 0)
            continue;
        if (!ls->cutting && ls->scan != NULL && logscan_threaded(ls->scan)) {
            logscan_park(ls->scan);
            atomic_fetch_add(&rp->scans_parked, 1);
        }
        pthread_mutex_unlock(&ls->lock);
    }
    for (size_t i = 0; i < n; i++)
        seqlist_unref(rp, idle[i]);
}

/* Makes sure ls has a log scanner, with a thread of its own if it may
 * have one: a slot that is free, or freed from an idle stream. */
static fonte_err
stream_scan(logstream_t *ls)
{
    bool threaded = ls->o->scan_threads > 0;

    if (threaded &&
        (ls->scan == NULL ||
         (!logscan_threaded(ls->scan) && logscan_reading(ls->scan))) &&
        atomic_load(ls->scan_slots) <= 0)
        park_idle(ls->rp, ls);
    if (ls->scan == NULL)
        return logscan_new(ls->snap, ls->next - 1, ls->hi, threaded,
                           ls->scan_slots, ls->stopping, &ls->scan);
    if (threaded)
        logscan_resume(ls->scan, ls->scan_slots);
    return FONTE_OK;
}

/* Cuts the next page of the stream into pg (emptied first): at most
 * page_size events and page_bytes, at least one unless none are left.
 * On an error the stream is failed (ls->fail says what to answer). */
static fonte_err
stream_page(logstream_t *ls, size_t page_size, page_t *pg)
{
    store_item_t item;
    const void *now_body = NULL; /* the event just pushed, from the log */
    size_t now_len = 0;
    uint64_t now_seq = 0;
    bool scan_checked = false;
    fonte_err rc;

    pg->pos = ls->pos;
    pg->n = 0;
    reply_writer(&pg->w);
    pg->valid = false;
    pg->cycles = false;
    if (atomic_load(ls->stopping))
        return stream_fail(ls, FONTE__REPLY__STATUS__UNAVAILABLE,
                           FONTE_ECLOSED, "the listener is shutting down");
    if (ls->snap == NULL) {
        if ((rc = store_snap_new(ls->store, &ls->snap)) != FONTE_OK)
            goto out;
        store_snap_bulk(ls->snap);
    }
    /* room for a page like the last one (the first: 256 bytes an event,
     * within page_bytes), so the buffer is not grown and copied on the
     * way; what is reserved and not written is never touched */
    size_t want = ls->last_bytes;
    if (want == 0)
        want = page_size < ls->o->page_bytes / 256 ? page_size * 256
                                                    : ls->o->page_bytes;
    if (want > pg->w.len)
        codec_writer_reserve(&pg->w, want - pg->w.len);
    while (pg->n < page_size) {
        uint64_t seq;
        if (ls->carry || order_stream_pop(ls->os, &seq)) {
            if (ls->carry) {
                seq = ls->carry_seq;
                ls->carry = false;
            }
            const void *body = now_body;
            size_t len = now_len;
            if (seq != now_seq || body == NULL) {
                if (ls->reader == NULL &&
                    (rc = store_reader_new(ls->snap, &ls->reader)))
                    break;
                if ((rc = store_reader_get(ls->reader, seq, &body, &len))) {
                    if (rc == FONTE_ENOTFOUND)
                        rc = stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL,
                                         FONTE_ESTORE,
                                         "event %llu is missing from the log",
                                         (unsigned long long) seq);
                    break;
                }
            }
            if (pg->n > 0 && pg->w.len + len + 32 > ls->o->page_bytes) {
                ls->carry = true; /* the next page begins with it */
                ls->carry_seq = seq;
                break;
            }
            if ((rc = page_add(pg, seq, body, len)) != FONTE_OK)
                break;
            continue;
        }
        if (!ls->log_done) {
            if (!scan_checked) {
                scan_checked = true; /* once a page */
                if ((rc = stream_scan(ls)) != FONTE_OK)
                    break;
            }
            if ((rc = logscan_next(ls->scan, &item)) != FONTE_OK) {
                if (rc == FONTE_ENOTFOUND)
                    rc = stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL,
                                     FONTE_ESTORE,
                                     "event %llu is missing from the log",
                                     (unsigned long long) ls->next);
                else if (rc == FONTE_ECLOSED)
                    rc = stream_fail(ls, FONTE__REPLY__STATUS__UNAVAILABLE,
                                     rc, "the listener is shutting down");
                break;
            }
            if ((rc = stream_push(ls, &item)) != FONTE_OK)
                break;
            now_seq = item.seq;
            now_body = item.value.ptr;
            now_len = item.value.len;
            continue;
        }
        if (!ls->finished) {
            if ((rc = order_stream_finish(ls->os)) == FONTE_ELIMIT) {
                rc = stream_fail(ls, FONTE__REPLY__STATUS__LIMIT, rc,
                                 "the dependency cycles of %s interlock too "
                                 "much to be broken in causal order: replay "
                                 "it with order=sequence", REPLAY_ALL);
                break;
            }
            if (rc != FONTE_OK)
                break;
            ls->finished = true;
            const order_names_t *names;
            const order_result_t *r = order_stream_cycles(ls->os, &names);
            if ((rc = format_cycles(names, r, ls->o->cycles_bytes, &ls->cycles,
                                    &ls->n_cycles, &ls->cycles_omitted)))
                break;
            pg->cycles = true;
            continue;
        }
        break; /* everything is out */
    }
    if (rc == FONTE_OK && ls->finished && !ls->carry && pg->n < page_size &&
        pg->pos + pg->n != ls->total)
        rc = stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL, FONTE_ESTORE,
                         "the replay of %s gave %llu events of %llu",
                         REPLAY_ALL, (unsigned long long) (pg->pos + pg->n),
                         (unsigned long long) ls->total);
out:
    /* Every event cut (a page that ends at the last one need not have
     * finished the order: nothing was held), or failed: what pins the
     * store's files, and the scanner's slot, go now, not when the cursor
     * (kept for a retry of this page) expires. */
    if (rc != FONTE_OK || pg->pos + pg->n >= ls->total)
        stream_release(ls);
    if (rc == FONTE_OK) {
        ls->pos = pg->pos + pg->n;
        ls->last_bytes = pg->w.len + 64; /* + what the answer adds */
        pg->valid = true;
    } else if (ls->fail_status == FONTE__REPLY__STATUS__OK) {
        stream_fail(ls, FONTE__REPLY__STATUS__INTERNAL, rc,
                    "the replay of %s failed: %s", REPLAY_ALL,
                    fonte_strerror(rc));
    }
    return rc;
}

/* Queues l's stream for a page cut ahead, taking a reference. */
static void
prefetch(replay_t *rp, seqlist_t *l)
{
    bool queued = false;

    pthread_mutex_lock(&rp->cursor_lock);
    l->refs++;
    pthread_mutex_unlock(&rp->cursor_lock);
    pthread_mutex_lock(&rp->pf_lock);
    if (rp->pf_started && !rp->pf_stop && !l->pf_queued) {
        l->pf_queued = true;
        l->pf_next = NULL;
        if (rp->pf_tail)
            rp->pf_tail->pf_next = l;
        else
            rp->pf_head = l;
        rp->pf_tail = l;
        queued = true;
        pthread_cond_signal(&rp->pf_cond);
    }
    pthread_mutex_unlock(&rp->pf_lock);
    if (!queued)
        seqlist_unref(rp, l);
}

/* Cuts ls's next page ahead if there is room (the stream's ahead_pages
 * and the AHEAD_BUDGET), without holding ls->lock while cutting (see
 * "Locking" above). True if another page could be cut after it. */
static bool
cut_ahead(replay_t *rp, logstream_t *ls)
{
    bool more = false;

    pthread_mutex_lock(&ls->lock);
    if (ls->fail_status == FONTE__REPLY__STATUS__OK && !ls->cutting &&
        ls->n_ahead < rp->o.ahead_pages && ls->pos < ls->total &&
        atomic_load(&rp->ahead_bytes) < AHEAD_BUDGET) {
        size_t page_size = ls->page_size;
        page_t pg = ls->spare;
        ls->spare = (page_t) { 0 };
        ls->cutting = true;
        pthread_mutex_unlock(&ls->lock);

        int64_t t0 = fonte_mono_us();
        fonte_err rc = stream_page(ls, page_size, &pg);
        flog(FLOG_DEBUG, "replay", "%s: page at %llu of %llu cut ahead: "
             "%zu events, %zu held, %lld us", REPLAY_ALL,
             (unsigned long long) pg.pos, (unsigned long long) ls->total,
             pg.n, order_stream_held(ls->os),
             (long long) (fonte_mono_us() - t0));

        pthread_mutex_lock(&ls->lock);
        ls->cutting = false;
        if (rc == FONTE_OK) {
            atomic_fetch_add(&rp->ahead_bytes, pg.w.cap);
            atomic_fetch_add(&rp->cut_ahead, 1);
            ls->ahead[ls->n_ahead++] = pg;
            more = ls->n_ahead < rp->o.ahead_pages && ls->pos < ls->total;
        } else {
            page_fini(&pg);
        }
        pthread_cond_broadcast(&ls->cut_done);
    }
    pthread_mutex_unlock(&ls->lock);
    return more;
}

static void *
prefetch_main(void *arg)
{
    replay_t *rp = arg;

    pthread_setname_np(pthread_self(), "fonte-prefetch");
    /* idle cursors are swept every half TTL (10 ms .. 1 s) */
    int64_t every = rp->o.cursor_ttl_us / 2;
    every = every < 10000 ? 10000 : every > 1000000 ? 1000000 : every;
    int64_t next_sweep = fonte_mono_us() + every;
    pthread_mutex_lock(&rp->pf_lock);
    for (;;) {
        if (rp->pf_reap) { /* lists dropped by others (reap_later) */
            rp->pf_reap = false;
            pthread_mutex_unlock(&rp->pf_lock);
            seqlist_reap(rp);
            pthread_mutex_lock(&rp->pf_lock);
            continue;
        }
        while (rp->pf_head == NULL && !rp->pf_stop && !rp->pf_reap) {
            int64_t now = fonte_mono_us();
            if (now >= next_sweep) {
                pthread_mutex_unlock(&rp->pf_lock);
                cursor_sweep(rp);
                pthread_mutex_lock(&rp->pf_lock);
                next_sweep = fonte_mono_us() + every;
                continue;
            }
            sync_cond_wait_until(&rp->pf_cond, &rp->pf_lock, next_sweep);
        }
        if (rp->pf_stop)
            break;
        if (rp->pf_head == NULL)
            continue; /* woken to reap */
        seqlist_t *l = rp->pf_head;
        rp->pf_head = l->pf_next;
        if (rp->pf_head == NULL)
            rp->pf_tail = NULL;
        l->pf_queued = false;
        pthread_mutex_unlock(&rp->pf_lock);

        if (cut_ahead(rp, l->stream))
            prefetch(rp, l); /* room for one more: on with the next */
        seqlist_unref(rp, l);
        pthread_mutex_lock(&rp->pf_lock);
    }
    pthread_mutex_unlock(&rp->pf_lock);
    return NULL;
}

/* One page of a stream: the next one (pos == ls->pos, or the page cut
 * ahead), or the one answered last again (a retry). l is the stream's
 * cursor list, or NULL for the first page (l then takes ownership of ls,
 * and makes a cursor if there is more). */
static void
answer_stream(replay_t *rp, seqlist_t *l, logstream_t *ls, const uint8_t *id,
              uint64_t pos, size_t page_size, codec_buf_t *out)
{
    codec_writer_t w = { 0 };
    uint8_t cur[CURSOR_LEN];
    size_t k = 0;
    fonte_err rc = FONTE_OK;
    seqlist_t *ref = NULL;

    pthread_mutex_lock(&ls->lock);
    ls->page_size = page_size;
    /* a page being cut ahead may be the one asked for */
    while (ls->cutting && !(ls->n_ahead > 0 && pos == ls->ahead[0].pos) &&
           !(l != NULL && ls->sent.valid && pos == ls->sent.pos))
        pthread_cond_wait(&ls->cut_done, &ls->lock);
    if (!ls->cutting && ls->fail_status != FONTE__REPLY__STATUS__OK) {
        reply_error(ls->fail_status, ls->fail, out);
        goto done;
    }
    if (ls->n_ahead > 0 && pos == ls->ahead[0].pos) {
        /* the page cut ahead: its bytes are answered, its seqs kept for a
         * retry; the old sent page's seqs buffer is reused for the next */
        page_t old = ls->sent; /* its bytes went out with its answer */
        atomic_fetch_sub(&rp->ahead_bytes, ls->ahead[0].w.cap);
        ls->sent = ls->ahead[0];
        w = ls->sent.w;
        ls->sent.w = (codec_writer_t) { 0 };
        memmove(&ls->ahead[0], &ls->ahead[1],
                (--ls->n_ahead) * sizeof ls->ahead[0]);
        ls->ahead[ls->n_ahead] = (page_t) { 0 };
        page_fini(&ls->spare);
        ls->spare = old;
        ls->spare.valid = false;
        k = ls->sent.n;
    } else if (l != NULL && ls->sent.valid && pos == ls->sent.pos) {
        /* a retry of the page answered last (pages are never empty, so
         * it is neither the next page nor one cut ahead) */
        reply_writer(&w);
        k = write_events(rp, &w, ls->sent.seqs, ls->sent.n, 0, ls->sent.n,
                         NULL, &rc);
    } else if (pos == ls->pos && ls->n_ahead == 0 &&
               (l == NULL || pos < ls->total)) {
        int64_t t0 = fonte_mono_us();
        rc = stream_page(ls, page_size, &ls->sent);
        w = ls->sent.w;
        ls->sent.w = (codec_writer_t) { 0 };
        k = ls->sent.n;
        flog(FLOG_DEBUG, "replay", "%s: page at %llu of %llu: %zu events, "
             "%zu held, %lld us", REPLAY_ALL, (unsigned long long) pos,
             (unsigned long long) ls->total, k, order_stream_held(ls->os),
             (long long) (fonte_mono_us() - t0));
    } else {
        atomic_fetch_add(&rp->refused, 1);
        reply_error(FONTE__REPLY__STATUS__BAD_REQUEST,
                    "cursor position is neither the next page nor the last "
                    "one: pass back the cursor of the previous page",
                    out);
        goto done;
    }
    if (rc != FONTE_OK) {
        /* fail_* belong to the cutter: read only when none is at work
         * (a retry may run while the next page is cut ahead) */
        if (!ls->cutting && ls->fail_status != FONTE__REPLY__STATUS__OK)
            reply_error(ls->fail_status, ls->fail, out);
        else
            reply_error(FONTE__REPLY__STATUS__INTERNAL, fonte_strerror(rc),
                        out);
        goto done;
    }
    /* cycles and total first: once a first page's stream is under a
     * cursor, another thread may take it */
    if (ls->sent.cycles)
        write_cycles(&w, ls->cycles, ls->n_cycles, ls->cycles_omitted);
    codec_writer_uint(&w, 3, ls->total);
    bool more = pos + k < ls->total;
    if (more) {
        if (l == NULL) {
            pthread_mutex_unlock(&ls->lock);
            rc = cursor_put(rp, NULL, 0, ls, page_size, cur, &ref);
            /* it owns ls now */
            ls = NULL;
            if (rc != FONTE_OK) {
                reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory",
                            out);
                goto done;
            }
        } else {
            memcpy(cur, id, CURSOR_ID);
        }
        put_be64(cur + CURSOR_ID, pos + k);
        codec_writer_bytes(&w, 2, cur, CURSOR_LEN);
    }
    if (reply_wrap(&w, out) != FONTE_OK)
        reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
    else
        atomic_fetch_add(&rp->pages, 1);
    if (more && out->data != NULL && rp->o.ahead_pages > 0)
        prefetch(rp, ref != NULL ? ref : l);
done:
    codec_writer_fini(&w);
    seqlist_unref(rp, ref);
    if (ls != NULL) {
        pthread_mutex_unlock(&ls->lock);
        if (l == NULL)
            logstream_free(ls); /* the first page was all of it */
    }
}

/* A page of an open cursor: the list is found and referenced under the
 * lock, the page built without it. */
static void
answer_cursor(replay_t *rp, const Fonte__ReplayRequest *req, codec_buf_t *out)
{
    const uint8_t *cur = req->cursor.data;
    int64_t now = fonte_mono_us();
    codec_writer_t w = { 0 };
    fonte_err rc = FONTE_OK;
    uint8_t next[CURSOR_LEN];
    seqlist_t *l = NULL;
    bool more = false;

    if (req->cursor.len != CURSOR_LEN) {
        atomic_fetch_add(&rp->refused, 1);
        reply_error(FONTE__REPLY__STATUS__BAD_REQUEST,
                    "malformed cursor: pass back the cursor of the previous "
                    "page unchanged", out);
        return;
    }
    reply_writer(&w);
    uint64_t pos = get_be64(cur + CURSOR_ID);
    pthread_mutex_lock(&rp->cursor_lock);
    for (size_t i = 0; i < rp->o.max_cursors; i++) {
        cursor_t *c = &rp->cursors[i];
        if (c->list == NULL || memcmp(c->id, cur, CURSOR_ID) != 0)
            continue;
        if (now - c->last_use_us > rp->o.cursor_ttl_us) {
            cursor_drop_locked(rp, c);
        } else {
            c->last_use_us = now;
            l = c->list;
            l->refs++;
        }
        break;
    }
    pthread_mutex_unlock(&rp->cursor_lock);
    if (l == NULL)
        seqlist_reap_later(rp); /* an expired one was dropped */

    /* a next page names its size, or has that of the first */
    size_t page_size = l == NULL || req->page_size != 0
                           ? page_size_of(rp, req) : l->page_size;
    if (l != NULL && l->stream != NULL) {
        answer_stream(rp, l, l->stream, cur, pos, page_size, out);
        goto done;
    }
    if (l == NULL || pos > l->n) {
        atomic_fetch_add(&rp->refused, 1);
        reply_error(FONTE__REPLY__STATUS__BAD_REQUEST,
                    l == NULL ? "unknown or expired cursor: start the replay "
                                "again"
                              : "cursor position past the end of the replay",
                    out);
        goto done;
    }
    size_t k = write_events(rp, &w, l->seqs, l->n, (size_t) pos, page_size,
                            NULL, &rc);
    if (rc != FONTE_OK) {
        reply_error(FONTE__REPLY__STATUS__INTERNAL, fonte_strerror(rc), out);
        goto done;
    }
    more = pos + k < l->n;
    memcpy(next, cur, CURSOR_ID);
    put_be64(next + CURSOR_ID, pos + k);
    if (more)
        codec_writer_bytes(&w, 2, next, CURSOR_LEN);
    codec_writer_uint(&w, 3, l->n);
    if (reply_wrap(&w, out) != FONTE_OK)
        reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
    else
        atomic_fetch_add(&rp->pages, 1);
done:
    codec_writer_fini(&w);
    seqlist_unref(rp, l);
}

/* The first page of a RETURN replay, from a fresh plan. */
static void
answer_first_page(replay_t *rp, plan_t *p, const Fonte__ReplayRequest *req,
                  codec_buf_t *out)
{
    codec_writer_t w = { 0 };
    fonte_err rc;

    reply_writer(&w);
    /* one allocation for the page, whose kept bytes are known: growing
     * by doubling from 256 bytes took nine reallocs for 300 events */
    size_t page = page_size_of(rp, req), want = 64;
    for (size_t i = 0; i < p->n_out && i < page && want < rp->o.page_bytes;
         i++)
        want += (p->body[p->out_idx[i]] ? p->len[p->out_idx[i]] : 256) + 16;
    if (want > rp->o.page_bytes)
        want = rp->o.page_bytes;
    codec_writer_reserve(&w, want > w.len ? want - w.len : 0);
    size_t k = write_events(rp, &w, p->out_seq, p->n_out, 0, page, p, &rc);
    if (rc != FONTE_OK) {
        codec_writer_fini(&w);
        reply_error(FONTE__REPLY__STATUS__INTERNAL, fonte_strerror(rc), out);
        return;
    }
    if (k < p->n_out) {
        uint8_t cur[CURSOR_LEN];
        fonte_err prc = cursor_put(rp, p->out_seq, p->n_out, NULL,
                                   page_size_of(rp, req), cur, NULL);
        p->out_seq = NULL; /* the cursor owns it now (or freed it) */
        if (prc != FONTE_OK) {
            codec_writer_fini(&w);
            reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
            return;
        }
        put_be64(cur + CURSOR_ID, k);
        codec_writer_bytes(&w, 2, cur, CURSOR_LEN);
    }
    codec_writer_uint(&w, 3, p->n_out);
    write_cycles(&w, p->cycles, p->n_cycles, p->cycles_omitted);
    if (reply_wrap(&w, out) != FONTE_OK)
        reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
    codec_writer_fini(&w);
    atomic_fetch_add(&rp->pages, 1);
}

/* ------------------------------------------------------------------ */
/* republish                                                           */

static void
job_free(job_t *j)
{
    if (j == NULL)
        return;
    free(j->root);
    free(j->target);
    free(j->reason);
    free(j->seqs);
    free(j);
}

static char *
dup_str(const char *s)
{
    char *d = strdup(s ? s : "");
    return d;
}

static void
answer_republish(replay_t *rp, plan_t *p, const Fonte__ReplayRequest *req,
                 codec_buf_t *out)
{
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL || (j->root = dup_str(req->object)) == NULL ||
        (j->target = dup_str(req->target)) == NULL ||
        (j->reason = dup_str(req->reason)) == NULL) {
        job_free(j);
        reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
        return;
    }
    uint8_t rnd[8];
    random_bytes(rnd, sizeof rnd);
    snprintf(j->replay_id, sizeof j->replay_id, "r-%016llx",
             (unsigned long long) get_be64(rnd));
    j->rate = req->rate;
    j->seqs = p->out_seq;
    j->n = p->n_out;

    bool queued = false;
    pthread_mutex_lock(&rp->job_lock);
    if (rp->n_jobs < rp->o.max_jobs && !rp->stop) {
        if (rp->jobs_tail)
            rp->jobs_tail->next = j;
        else
            rp->jobs = j;
        rp->jobs_tail = j;
        rp->n_jobs++;
        queued = true;
        atomic_fetch_add(&rp->running, 1);
    }
    pthread_mutex_unlock(&rp->job_lock);
    if (!queued) {
        j->seqs = NULL; /* still the plan's */
        job_free(j);
        reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                    "busy: too many republishes queued: try again later",
                    out);
        return;
    }
    p->out_seq = NULL; /* the job owns it now */

    codec_writer_t w = { 0 };
    reply_writer(&w);
    codec_writer_uint(&w, 3, j->n);
    write_cycles(&w, p->cycles, p->n_cycles, p->cycles_omitted);
    codec_writer_bytes(&w, 5, j->replay_id, strlen(j->replay_id));
    if (reply_wrap(&w, out) != FONTE_OK)
        reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory", out);
    codec_writer_fini(&w);
}

/* Tracks the subscriptions the broker forwards to our XPUB. */
static void
drain_subscriptions(replay_t *rp)
{
    zmq_msg_t m;

    for (;;) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rp->xpub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const char *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        if (n >= 1 && (d[0] == 1 || d[0] == 0)) {
            size_t i = 0;
            for (; i < rp->n_subs; i++)
                if (strlen(rp->subs[i]) == n - 1 &&
                    memcmp(rp->subs[i], d + 1, n - 1) == 0)
                    break;
            if (d[0] == 1 && i == rp->n_subs &&
                grow((void **) &rp->subs, &rp->cap_subs, rp->n_subs + 1,
                     sizeof *rp->subs)) {
                char *s = malloc(n);
                if (s != NULL) {
                    memcpy(s, d + 1, n - 1);
                    s[n - 1] = '\0';
                    rp->subs[rp->n_subs++] = s;
                }
            } else if (d[0] == 0 && i < rp->n_subs) {
                free(rp->subs[i]);
                rp->subs[i] = rp->subs[--rp->n_subs];
            }
        }
        zmq_msg_close(&m);
    }
}

/* True when a subscription other than the empty one covers topic. The
 * empty subscription is the listener's own catch-all (and any tail's):
 * it covers every topic, so counting it would make the wait below
 * return at once and lose a target's first events to the slow-joiner
 * race. A consumer of replays subscribes to a real prefix. */
static bool
subscribed(replay_t *rp, const char *topic)
{
    for (size_t i = 0; i < rp->n_subs; i++) {
        size_t n = strlen(rp->subs[i]);
        if (n > 0 && strncmp(topic, rp->subs[i], n) == 0)
            return true;
    }
    return false;
}

static bool
should_stop(replay_t *rp)
{
    pthread_mutex_lock(&rp->job_lock);
    bool stop = rp->stop;
    pthread_mutex_unlock(&rp->job_lock);
    return stop;
}

/* Waits up to timeout_us for a subscriber of topic, tracking
 * subscriptions meanwhile. */
static void
wait_subscriber(replay_t *rp, const char *topic, int64_t timeout_us)
{
    int64_t end = fonte_mono_us() + timeout_us;
    drain_subscriptions(rp);
    while (!subscribed(rp, topic) && fonte_mono_us() < end &&
           !should_stop(rp)) {
        zmq_pollitem_t it = { rp->xpub, 0, ZMQ_POLLIN, 0 };
        zmq_poll(&it, 1, 20);
        drain_subscriptions(rp);
    }
}

static void
send_two(replay_t *rp, const char *topic, const void *body, size_t len)
{
    zmq_send(rp->xpub, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(rp->xpub, body, len, 0);
}

static void
send_audit(replay_t *rp, const job_t *j, Fonte__ReplayAudit__State state,
           uint64_t duration_us)
{
    Fonte__ReplayAudit a = FONTE__REPLAY_AUDIT__INIT;
    codec_buf_t b;

    a.replay_id = (char *) j->replay_id;
    a.root = j->root;
    a.target = j->target;
    a.reason = j->reason;
    a.events = j->n;
    a.state = state;
    a.duration_us = duration_us;
    if (codec_pack(&a.base, &b) == FONTE_OK) {
        send_two(rp, CODEC_TOPIC_AUDIT, b.data, b.len);
        codec_buf_free(&b);
    }
}

/* The topic of one replayed event. */
static bool
event_topic(const job_t *j, const void *body, size_t len, char *topic,
            size_t cap)
{
    codec_view_t v;
    if (codec_event_fields(body, len, &v) != FONTE_OK)
        return false;
    int n = j->target[0]
                ? snprintf(topic, cap, "%s%s.%.*s", CODEC_TOPIC_REPLAY,
                           j->target, (int) v.type.len, v.type.ptr)
                : snprintf(topic, cap, "%.*s", (int) v.type.len, v.type.ptr);
    return n > 0 && (size_t) n < cap;
}

static void
run_job(replay_t *rp, job_t *j)
{
    int64_t start = fonte_mono_us();
    store_snap_t *snap = NULL;
    Fonte__Replay info = FONTE__REPLAY__INIT;
    codec_writer_t w = { 0 };
    char topic[512];
    bool failed = false;

    info.replay_id = j->replay_id;
    info.root = j->root;
    info.target = j->target;
    info.reason = j->reason;
    info.total = j->n;

    /* wait for the first event's topic to have a subscriber */
    if (j->n > 0 && store_snap_new(rp->store, &snap) == FONTE_OK) {
        void *body = NULL;
        size_t len = 0;
        if (store_get_event(snap, j->seqs[0], &body, &len) == FONTE_OK &&
            event_topic(j, body, len, topic, sizeof topic))
            wait_subscriber(rp, topic, rp->o.target_wait_us);
        store_free(body);
    }
    send_audit(rp, j, FONTE__REPLAY_AUDIT__STATE__STARTED, 0);
    for (size_t i = 0; i < j->n && snap != NULL; i++) {
        if (should_stop(rp)) {
            failed = true;
            break;
        }
        void *body = NULL;
        size_t len = 0;
        if (store_get_event(snap, j->seqs[i], &body, &len) != FONTE_OK ||
            !event_topic(j, body, len, topic, sizeof topic)) {
            store_free(body);
            failed = true;
            break;
        }
        info.index = i + 1;
        w.len = 0;
        codec_writer_event(&w, 0, body, len, j->seqs[i], &info);
        store_free(body);
        if (w.failed) {
            failed = true;
            break;
        }
        send_two(rp, topic, w.data, w.len);
        if (j->rate > 0) {
            /* pace: event i+1 leaves no earlier than (i+1)/rate s in */
            int64_t due = start + (int64_t) ((i + 1) * 1000000ULL / j->rate);
            int64_t now;
            while ((now = fonte_mono_us()) < due && !should_stop(rp)) {
                int64_t d = due - now > 50000 ? 50000 : due - now;
                struct timespec ts = { 0, (long) d * 1000 };
                nanosleep(&ts, NULL);
            }
        }
        if (i % 1024 == 0)
            drain_subscriptions(rp);
    }
    if (snap == NULL && j->n > 0)
        failed = true;
    codec_writer_fini(&w);
    store_snap_destroy(&snap);
    send_audit(rp, j,
               failed ? FONTE__REPLAY_AUDIT__STATE__FAILED
                      : FONTE__REPLAY_AUDIT__STATE__FINISHED,
               (uint64_t) (fonte_mono_us() - start));
    if (!failed)
        atomic_fetch_add(&rp->republished, j->n);
    flog(FLOG_INFO, "replay", "%s of %s (%zu events) to %s: %s", j->replay_id,
         j->root, j->n, j->target[0] ? j->target : "own topics",
         failed ? "FAILED" : "finished");
}

static void *
republish_main(void *arg)
{
    replay_t *rp = arg;

    for (;;) {
        pthread_mutex_lock(&rp->job_lock);
        while (rp->jobs == NULL && !rp->stop) {
            pthread_mutex_unlock(&rp->job_lock);
            /* keep the subscription list current while idle */
            zmq_pollitem_t it = { rp->xpub, 0, ZMQ_POLLIN, 0 };
            zmq_poll(&it, 1, 50);
            drain_subscriptions(rp);
            pthread_mutex_lock(&rp->job_lock);
        }
        if (rp->stop) {
            pthread_mutex_unlock(&rp->job_lock);
            break;
        }
        job_t *j = rp->jobs;
        rp->jobs = j->next;
        if (rp->jobs == NULL)
            rp->jobs_tail = NULL;
        pthread_mutex_unlock(&rp->job_lock);

        run_job(rp, j);

        pthread_mutex_lock(&rp->job_lock);
        rp->n_jobs--;
        pthread_mutex_unlock(&rp->job_lock);
        atomic_fetch_sub(&rp->running, 1);
        job_free(j);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* the service                                                         */

fonte_err
replay_handle(void *arg, store_t *store, const Fonte__ReplayRequest *req,
              int64_t deadline_us, codec_buf_t *reply)
{
    replay_t *rp = arg;
    plan_t p;
    fonte_err rc;

    reply->data = NULL;
    reply->base = NULL;
    reply->len = 0;
    /* On the query thread (a deadline) only what is planned and returned
     * is tried: a page of a cursor may wait for a page being cut, the
     * whole store is big, and a republish queues work. */
    if (deadline_us != 0 &&
        (req->cursor.len > 0 || strcmp(req->object, REPLAY_ALL) == 0 ||
         req->mode == FONTE__REPLAY_REQUEST__MODE__REPUBLISH))
        return FONTE_ETIMEOUT;
    atomic_fetch_add(&rp->requests, 1);
    if (req->cursor.len > 0) {
        answer_cursor(rp, req, reply);
        return reply->data ? FONTE_OK : FONTE_ENOMEM;
    }
    bool republish = req->mode == FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    if (!republish && req->target[0] != '\0') {
        atomic_fetch_add(&rp->refused, 1);
        reply_error(FONTE__REPLY__STATUS__BAD_REQUEST,
                    "a target only makes sense with mode REPUBLISH", reply);
        return reply->data ? FONTE_OK : FONTE_ENOMEM;
    }
    if (republish && rp->xpub == NULL) {
        reply_error(FONTE__REPLY__STATUS__UNAVAILABLE,
                    "republish is not available: the listener has no "
                    "broker ingress", reply);
        return reply->data ? FONTE_OK : FONTE_ENOMEM;
    }

    if (!republish && req->n_types == 0 &&
        req->order != FONTE__REPLAY_REQUEST__ORDER__OBJECTS &&
        strcmp(req->object, REPLAY_ALL) == 0 &&
        (req->until_seq == 0 || req->until_seq > req->after_seq)) {
        /* the whole store, streamed (when there is anything to stream) */
        store_counts_t c;
        store_counts(store, &c);
        uint64_t last = c.last_seq;
        uint64_t hi = req->until_seq && req->until_seq < last
                          ? req->until_seq : last;
        if (hi > req->after_seq) {
            logstream_t *ls = logstream_new(rp, req, hi);
            if (ls == NULL)
                reply_error(FONTE__REPLY__STATUS__INTERNAL, "out of memory",
                            reply);
            else
                answer_stream(rp, NULL, ls, NULL, 0, page_size_of(rp, req),
                              reply);
            return reply->data ? FONTE_OK : FONTE_ENOMEM;
        }
    }

    memset(&p, 0, sizeof p);
    p.o = &rp->o;
    p.stopping = &rp->stopping;
    p.readers = rp->readers;
    p.req = req;
    p.deadline_us = deadline_us;
    int64_t t0 = fonte_mono_us();
    rc = plan_build(&p, store);
    if (rc == FONTE_ETIMEOUT && deadline_us != 0) {
        plan_fini(&p); /* a worker plans it again, from the start */
        atomic_fetch_sub(&rp->requests, 1);
        return FONTE_ETIMEOUT;
    }
    if (rc != FONTE_OK) {
        if (p.error[0] == '\0')
            snprintf(p.error, sizeof p.error, "replay of %s failed: %s",
                     req->object, fonte_strerror(rc));
        if (p.status == FONTE__REPLY__STATUS__NOT_FOUND)
            atomic_fetch_add(&rp->not_found, 1);
        else if (p.status != FONTE__REPLY__STATUS__INTERNAL)
            atomic_fetch_add(&rp->refused, 1);
        reply_error(p.status, p.error, reply);
    } else if (republish) {
        answer_republish(rp, &p, req, reply);
    } else {
        answer_first_page(rp, &p, req, reply);
    }
    flog(FLOG_DEBUG, "replay", "%s: %zu events (%zu sent), load %lld us, "
         "order %lld us, answer %lld us", req->object, p.n_ev, p.n_out,
         (long long) p.load_us, (long long) p.order_us,
         (long long) (fonte_mono_us() - t0 - p.load_us - p.order_us));
    plan_fini(&p);
    return reply->data ? FONTE_OK : FONTE_ENOMEM;
}

void
replay_stop(replay_t *rp)
{
    if (rp != NULL)
        atomic_store(&rp->stopping, true);
}

void
replay_counters(replay_t *rp, replay_counters_t *out)
{
    memset(out, 0, sizeof *out);
    out->requests = atomic_load(&rp->requests);
    out->pages = atomic_load(&rp->pages);
    out->cut_ahead = atomic_load(&rp->cut_ahead);
    out->first_lookups = atomic_load(&rp->firsts.lookups);
    out->scans_parked = atomic_load(&rp->scans_parked);
    if (rp->readers != NULL) {
        readers_counters_t rc;
        readers_counters(rp->readers, &rc);
        out->reads_shared = rc.batches;
        out->reads_alone = rc.alone;
        out->reads_helped = rc.helped;
    }
    out->not_found = atomic_load(&rp->not_found);
    out->refused = atomic_load(&rp->refused);
    out->republished = atomic_load(&rp->republished);
    out->running = atomic_load(&rp->running);
    pthread_mutex_lock(&rp->cursor_lock);
    for (size_t i = 0; i < rp->o.max_cursors; i++)
        out->cursors += rp->cursors[i].list != NULL;
    pthread_mutex_unlock(&rp->cursor_lock);
}

fonte_err
replay_new(const replay_opts_t *o, store_t *store, replay_t **replay_p,
           char *errbuf, size_t errlen)
{
    replay_t *rp = calloc(1, sizeof *rp);

    *replay_p = NULL;
    if (rp == NULL)
        return FONTE_ENOMEM;
    rp->o = *o;
    if (rp->o.max_cursors == 0)
        rp->o.max_cursors = 1;
    if (rp->o.ahead_pages > AHEAD_PAGES)
        rp->o.ahead_pages = AHEAD_PAGES;
    rp->store = store;
    if (rp->o.read_threads < 0 || rp->o.read_threads > READERS_MAX) {
        snprintf(errbuf, errlen, "replay: read threads must be 0 to %d",
                 READERS_MAX);
        free(rp);
        return FONTE_EINVAL;
    }
    atomic_init(&rp->scan_slots,
                rp->o.scan_threads > 0 ? rp->o.scan_threads : 0);
    rp->cursors = calloc(rp->o.max_cursors, sizeof *rp->cursors);
    if (rp->cursors == NULL) {
        free(rp);
        return FONTE_ENOMEM;
    }
    pthread_mutex_init(&rp->firsts.lock, NULL);
    pthread_mutex_init(&rp->cursor_lock, NULL);
    pthread_mutex_init(&rp->job_lock, NULL);
    pthread_mutex_init(&rp->pf_lock, NULL);
    sync_cond_init(&rp->pf_cond); /* the sweep's timed wait */
    if (pthread_create(&rp->pf_thread, NULL, prefetch_main, rp) != 0) {
        snprintf(errbuf, errlen, "replay: cannot start its prefetch thread");
        replay_destroy(&rp);
        return FONTE_EIO;
    }
    rp->pf_started = true;
    if (rp->o.read_threads > 0) {
        fonte_err rc = readers_new(rp->o.read_threads, &rp->readers);
        if (rc != FONTE_OK) {
            snprintf(errbuf, errlen, "replay: cannot start its read "
                     "helpers: %s", fonte_strerror(rc));
            replay_destroy(&rp);
            return rc;
        }
    }

    if (o->ingress != NULL && o->zmq_ctx != NULL) {
        int linger = 200, hwm = 1000000;
        rp->xpub = zmq_socket(o->zmq_ctx, ZMQ_XPUB);
        if (rp->xpub == NULL ||
            zmq_setsockopt(rp->xpub, ZMQ_LINGER, &linger, sizeof linger) ||
            zmq_setsockopt(rp->xpub, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
            (o->curve_cert != NULL &&
             fcurve_client(rp->xpub, o->curve_cert, o->curve_server) != 0) ||
            zmqx_connect(rp->xpub, o->ingress) != 0) {
            snprintf(errbuf, errlen, "replay: cannot connect to ingress %s: %s",
                     o->ingress, zmq_strerror(zmq_errno()));
            replay_destroy(&rp);
            return FONTE_EIO;
        }
        if (pthread_create(&rp->thread, NULL, republish_main, rp) != 0) {
            snprintf(errbuf, errlen, "replay: cannot start its thread");
            replay_destroy(&rp);
            return FONTE_EIO;
        }
        rp->thread_started = true;
    }
    *replay_p = rp;
    return FONTE_OK;
}

void
replay_destroy(replay_t **replay_p)
{
    if (replay_p == NULL || *replay_p == NULL)
        return;
    replay_t *rp = *replay_p;
    atomic_store(&rp->stopping, true); /* a page being cut gives up */
    pthread_mutex_lock(&rp->pf_lock);
    rp->pf_stop = true;
    pthread_cond_broadcast(&rp->pf_cond);
    pthread_mutex_unlock(&rp->pf_lock);
    if (rp->pf_started)
        pthread_join(rp->pf_thread, NULL);
    readers_destroy(&rp->readers);
    while (rp->pf_head != NULL) {
        seqlist_t *l = rp->pf_head;
        rp->pf_head = l->pf_next;
        seqlist_unref(rp, l);
    }
    pthread_mutex_lock(&rp->job_lock);
    rp->stop = true;
    pthread_mutex_unlock(&rp->job_lock);
    if (rp->thread_started)
        pthread_join(rp->thread, NULL);
    while (rp->jobs) {
        job_t *j = rp->jobs;
        rp->jobs = j->next;
        job_free(j);
    }
    if (rp->xpub)
        zmq_close(rp->xpub);
    for (size_t i = 0; i < rp->n_subs; i++)
        free(rp->subs[i]);
    free(rp->subs);
    pthread_mutex_lock(&rp->cursor_lock);
    for (size_t i = 0; i < rp->o.max_cursors; i++)
        cursor_drop_locked(rp, &rp->cursors[i]);
    pthread_mutex_unlock(&rp->cursor_lock);
    seqlist_reap(rp);
    free(rp->cursors);
    free(rp->firsts.slot);
    pthread_mutex_destroy(&rp->firsts.lock);
    pthread_mutex_destroy(&rp->cursor_lock);
    pthread_mutex_destroy(&rp->job_lock);
    pthread_mutex_destroy(&rp->pf_lock);
    pthread_cond_destroy(&rp->pf_cond);
    free(rp);
    *replay_p = NULL;
}
