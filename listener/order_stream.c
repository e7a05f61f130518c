/*
 * order_stream.c - the causal order of a log, streamed (see order.h for
 * what it computes and why it equals order_causal).
 *
 * State:
 *  - names/obj: objects named as dependencies (with their first seq,
 *    asked of first() once) and objects with held events (with the last
 *    one held: a later event of the object waits for it).
 *  - held[]: the held events in push order, i.e. seq order: what each
 *    still waits for (pending), the next held event of its object, its
 *    dependencies' ids (for the end of the log), whether it is out.
 *  - marks: seq -> (held index, list of held events waiting for it), for
 *    every seq that is held or waited for; open addressing, seq 0 empty.
 *  - ready: held events that wait for nothing more, smallest seq first.
 *    Its capacity is kept at least the number held, so releasing (inside
 *    pop, which cannot fail) never allocates.
 *
 * Whenever nothing is held, held[], marks and waiter lists are emptied;
 * while something stays held (a cycle early in the log holds its events
 * to the end), compact() drops the records of events that came out once
 * they are half of held[] (and at least compact_min). So memory follows
 * how many events are held at once, never the log. Names are kept
 * (their first seqs stay true for the whole log) unless there are more
 * than NAMES_RESET of them.
 *
 * Invariant between calls: an event that is out never waits; an event
 * held waits for exactly `pending` things, each of which is a held event
 * of its own object (at most one: the previous) or a mark with it on the
 * waiter list (one entry per dependency entry that is not out yet).
 */
#include "order.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "heap.h"

#define NONE UINT32_MAX
#define UNKNOWN UINT64_MAX
#define NAMES_RESET ((size_t) 1 << 20)

typedef struct held {
    uint64_t seq;
    uint32_t object;   /* id in names */
    uint32_t pending;  /* things it still waits for */
    uint32_t next;     /* the next held event of its object, or NONE */
    uint32_t deps_off; /* dependency ids: dep_ids[deps_off .. +n_deps) */
    uint32_t n_deps;
    bool out;
} held_t;

typedef struct mark {
    uint64_t seq;     /* 0: an empty slot */
    uint32_t held;    /* its held event, or NONE (not held, or not yet) */
    uint32_t waiters; /* first wnode, or NONE */
} mark_t;

typedef struct wnode {
    uint32_t held, next;
} wnode_t;

typedef struct obj_info {
    uint64_t first; /* first seq of the object, 0 none, UNKNOWN not asked */
    uint32_t tail;  /* its last held event, or NONE */
    uint8_t bit;    /* name_bit() of its name, while it has a tail */
    bool first_out; /* its first event is known to have come out (for
                       good: then no mark lookup is needed) */
} obj_info_t;

struct order_stream {
    order_first_fn first_fn;
    void *arg;
    size_t max_held;
    size_t compact_min; /* compact held[] from this many records on */

    order_names_t *names;
    obj_info_t *obj;
    size_t cap_obj;

    held_t *held;
    size_t n_held, cap_held, live;
    uint32_t *dep_ids;
    size_t n_dep_ids, cap_dep_ids;
    mark_t *marks;
    size_t n_marks, cap_marks; /* cap_marks: 0 or a power of two */
    wnode_t *wn;
    size_t n_wn, cap_wn;
    heap_t ready;
    uint64_t *waits; /* scratch: the seqs one pushed event waits for */
    size_t cap_waits;

    /* Two exact 64-bit filters, each bit backed by a count: bit b of
     * held_filter is set while some object whose name_bit() is b has
     * held events; bit (seq & 63) of wait_filter while some seq with
     * that bit is waited for. Most events then skip the name lookup, and
     * most events coming out skip the mark lookup. */
    uint64_t held_filter, wait_filter;
    uint32_t held_bits[64], wait_bits[64];

    uint64_t last; /* the last seq pushed */
    uint64_t now;  /* pushed and ready: comes out next */
    bool have_now, finished, failed;

    order_result_t end; /* after finish: the order of what was held */
    uint32_t *end_held; /* end.order's indexes -> held indexes */
    size_t end_pos;
};

/* A cheap one-of-64 signature of a name (length and three bytes). */
static unsigned
name_bit(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    unsigned h = (unsigned) len * 31u + (uint8_t) p[0] * 7u +
                 (uint8_t) p[len / 2] * 3u + (uint8_t) p[len - 1];
    return h & 63;
}

static void
filter_add(uint64_t *filter, uint32_t *bits, unsigned b)
{
    if (bits[b]++ == 0)
        *filter |= (uint64_t) 1 << b;
}

static void
filter_remove(uint64_t *filter, uint32_t *bits, unsigned b)
{
    if (--bits[b] == 0)
        *filter &= ~((uint64_t) 1 << b);
}

/* ------------------------------------------------------------------ */
/* marks: seq -> mark                                                  */

static size_t
mark_slot(uint64_t seq, size_t cap)
{
    return (size_t) ((seq * 0x9e3779b97f4a7c15ULL) >> 32) & (cap - 1);
}

static mark_t *
mark_find(order_stream_t *s, uint64_t seq)
{
    if (s->n_marks == 0)
        return NULL;
    for (size_t i = mark_slot(seq, s->cap_marks);; i = (i + 1) & (s->cap_marks - 1)) {
        if (s->marks[i].seq == seq)
            return &s->marks[i];
        if (s->marks[i].seq == 0)
            return NULL;
    }
}

/* The mark of seq, added if new; NULL when out of memory. The pointer is
 * good until the next mark_get. */
static mark_t *
mark_get(order_stream_t *s, uint64_t seq)
{
    if ((s->n_marks + 1) * 2 > s->cap_marks) {
        size_t cap = s->cap_marks ? s->cap_marks * 2 : 64;
        mark_t *m = calloc(cap, sizeof *m);
        if (m == NULL)
            return NULL;
        for (size_t i = 0; i < s->cap_marks; i++) {
            if (s->marks[i].seq == 0)
                continue;
            size_t j = mark_slot(s->marks[i].seq, cap);
            while (m[j].seq != 0)
                j = (j + 1) & (cap - 1);
            m[j] = s->marks[i];
        }
        free(s->marks);
        s->marks = m;
        s->cap_marks = cap;
    }
    size_t i = mark_slot(seq, s->cap_marks);
    while (s->marks[i].seq != 0 && s->marks[i].seq != seq)
        i = (i + 1) & (s->cap_marks - 1);
    if (s->marks[i].seq == 0) {
        s->marks[i].seq = seq;
        s->marks[i].held = NONE;
        s->marks[i].waiters = NONE;
        s->n_marks++;
    }
    return &s->marks[i];
}

/* ------------------------------------------------------------------ */

fonte_err
order_stream_new(order_first_fn first, void *arg, size_t max_held,
                 order_stream_t **s_p)
{
    order_stream_t *s = calloc(1, sizeof *s);

    *s_p = NULL;
    if (s == NULL)
        return FONTE_ENOMEM;
    if ((s->names = order_names_new()) == NULL) {
        free(s);
        return FONTE_ENOMEM;
    }
    s->first_fn = first;
    s->arg = arg;
    s->max_held = max_held;
    s->compact_min = 1024;
    *s_p = s;
    return FONTE_OK;
}

void
order_stream_destroy(order_stream_t **s_p)
{
    if (s_p == NULL || *s_p == NULL)
        return;
    order_stream_t *s = *s_p;
    order_names_destroy(&s->names);
    free(s->obj);
    free(s->held);
    free(s->dep_ids);
    free(s->marks);
    free(s->wn);
    free(s->ready.v);
    free(s->waits);
    order_result_fini(&s->end);
    free(s->end_held);
    free(s);
    *s_p = NULL;
}

size_t
order_stream_held(const order_stream_t *s)
{
    return s->live;
}

/* The id of an object, with its obj_info (new: first UNKNOWN, no tail). */
static fonte_err
intern(order_stream_t *s, order_name_t name, uint32_t *id)
{
    int added = 0;
    fonte_err rc = order_names_intern(s->names, name.ptr, name.len, id,
                                      &added);
    if (rc != FONTE_OK)
        return rc;
    if (added) {
        if (!grow((void **) &s->obj, &s->cap_obj, (size_t) *id + 1,
                  sizeof *s->obj))
            return FONTE_ENOMEM;
        s->obj[*id].first = UNKNOWN;
        s->obj[*id].tail = NONE;
        s->obj[*id].first_out = false;
    }
    return FONTE_OK;
}

/* Nothing is held: empty what only held events need. */
static void
reset_held(order_stream_t *s)
{
    s->n_held = 0;
    s->n_dep_ids = 0;
    s->n_wn = 0;
    /* nothing held, nothing waited for: the filters are empty already */
    if (s->n_marks > 0) {
        if (s->cap_marks > 4096) {
            free(s->marks);
            s->marks = NULL;
            s->cap_marks = 0;
        } else {
            memset(s->marks, 0, s->cap_marks * sizeof *s->marks);
        }
        s->n_marks = 0;
    }
    if (order_names_count(s->names) > NAMES_RESET) {
        order_names_t *fresh = order_names_new();
        if (fresh != NULL) { /* else keep the old ones: still correct */
            order_names_destroy(&s->names);
            s->names = fresh;
        }
    }
}

static void
wake(order_stream_t *s, uint32_t h)
{
    if (--s->held[h].pending == 0)
        heap_push(&s->ready, s->held[h].seq, h); /* capacity reserved */
}

/* seq came out: whoever waited for it waits for one thing less. */
static void
release(order_stream_t *s, uint64_t seq)
{
    if (!(s->wait_filter >> (seq & 63) & 1))
        return; /* nobody waits for it */
    mark_t *m = mark_find(s, seq);
    if (m == NULL || m->waiters == NONE)
        return;
    for (uint32_t w = m->waiters; w != NONE; w = s->wn[w].next)
        wake(s, s->wn[w].held);
    m->waiters = NONE;
    filter_remove(&s->wait_filter, s->wait_bits, (unsigned) (seq & 63));
}

static bool
still_held(order_stream_t *s, uint64_t seq)
{
    mark_t *m = mark_find(s, seq);
    return m != NULL && m->held != NONE && !s->held[m->held].out;
}

void
order_stream_tune(order_stream_t *s, size_t compact_min)
{
    s->compact_min = compact_min ? compact_min : 1;
}

/* Drops the records of events that came out while others stayed held
 * (held[] is otherwise emptied only when nothing at all is held, so a
 * cycle early in the log would make it grow with every event held and
 * released after it). Every index into held[] is renumbered: objects'
 * tails, records' next, marks, waiter lists. false when
 * out of memory (nothing changed). */
static bool
compact(order_stream_t *s, size_t *dep_base)
{
    size_t wn_cap = s->n_wn ? s->n_wn : 1;
    uint32_t *map = malloc((s->n_held ? s->n_held : 1) * sizeof *map);
    mark_t *marks = s->cap_marks ? calloc(s->cap_marks, sizeof *marks) : NULL;
    wnode_t *wn = malloc(wn_cap * sizeof *wn);
    if (map == NULL || (s->cap_marks && marks == NULL) || wn == NULL) {
        free(map);
        free(marks);
        free(wn);
        return false;
    }
    size_t k = 0, nd = 0, n_wn = 0, n_marks = 0;
    for (size_t h = 0; h < s->n_held; h++) {
        held_t e = s->held[h];
        if (e.out) {
            map[h] = NONE;
            continue;
        }
        memmove(s->dep_ids + nd, s->dep_ids + e.deps_off,
                e.n_deps * sizeof *s->dep_ids);
        e.deps_off = (uint32_t) nd;
        nd += e.n_deps;
        map[h] = (uint32_t) k;
        s->held[k++] = e;
    }
    /* the dependencies of the event being pushed follow */
    size_t mine = s->n_dep_ids - *dep_base;
    memmove(s->dep_ids + nd, s->dep_ids + *dep_base, mine * sizeof *s->dep_ids);
    *dep_base = nd;
    nd += mine;
    for (size_t i = 0; i < k; i++) {
        held_t *e = &s->held[i];
        if (e->next != NONE)
            e->next = map[e->next]; /* the next of one held is held */
        else if (s->obj[e->object].tail != NONE)
            s->obj[e->object].tail = (uint32_t) i; /* the last is the tail */
    }
    /* marks: keep those of held events and those waited for */
    for (size_t i = 0; i < s->cap_marks; i++) {
        mark_t m = s->marks[i];
        if (m.seq == 0)
            continue;
        m.held = m.held != NONE ? map[m.held] : NONE;
        uint32_t first = NONE, *link = &first;
        for (uint32_t w = m.waiters; w != NONE; w = s->wn[w].next) {
            wn[n_wn].held = map[s->wn[w].held]; /* a waiter is held */
            wn[n_wn].next = NONE;
            *link = (uint32_t) n_wn;
            link = &wn[n_wn++].next;
        }
        m.waiters = first;
        if (m.held == NONE && m.waiters == NONE)
            continue;
        size_t j = mark_slot(m.seq, s->cap_marks);
        while (marks[j].seq != 0)
            j = (j + 1) & (s->cap_marks - 1);
        marks[j] = m;
        n_marks++;
    }
    /* the ready heap is empty: push runs only when pop has nothing */
    free(s->marks);
    free(s->wn);
    free(map);
    s->marks = marks;
    s->n_marks = n_marks;
    s->wn = wn;
    s->n_wn = n_wn;
    s->cap_wn = wn_cap;
    s->n_held = k;
    s->n_dep_ids = nd;
    return true;
}

fonte_err
order_stream_push(order_stream_t *s, uint64_t seq, order_name_t object,
                  const order_name_t *deps, size_t n_deps)
{
    uint32_t oid = NONE, pending = 0;
    size_t n_waits = 0, dep_base = s->n_dep_ids;
    fonte_err rc;

    if (s->failed || s->finished || s->have_now || s->ready.n > 0 ||
        seq <= s->last)
        return FONTE_EINVAL;
    s->last = seq;
    unsigned obit = name_bit(object.ptr, object.len);
    if (s->live > 0 && (s->held_filter >> obit & 1) &&
        order_names_find(s->names, object.ptr, object.len, &oid) ==
            FONTE_OK &&
        s->obj[oid].tail != NONE)
        pending++;
    if (!grow((void **) &s->waits, &s->cap_waits, n_deps, sizeof *s->waits) ||
        !grow((void **) &s->dep_ids, &s->cap_dep_ids, s->n_dep_ids + n_deps,
              sizeof *s->dep_ids)) {
        s->failed = true;
        return FONTE_ENOMEM;
    }
    for (size_t i = 0; i < n_deps; i++) {
        if (deps[i].len == object.len &&
            memcmp(deps[i].ptr, object.ptr, object.len) == 0)
            continue; /* one's own object: no edge */
        uint32_t id;
        if ((rc = intern(s, deps[i], &id)) != FONTE_OK) {
            s->failed = true;
            return rc;
        }
        if (s->obj[id].first == UNKNOWN) {
            uint64_t f = 0;
            if ((rc = s->first_fn(s->arg, deps[i].ptr, deps[i].len, &f)) !=
                FONTE_OK) {
                s->failed = true;
                return rc;
            }
            s->obj[id].first = f;
        }
        uint64_t f = s->obj[id].first;
        s->dep_ids[s->n_dep_ids++] = id;
        if (f == 0 || f == seq)
            continue;
        if (f > seq) {
            s->waits[n_waits++] = f;
        } else if (!s->obj[id].first_out) {
            if (s->live > 0 && still_held(s, f))
                s->waits[n_waits++] = f;
            else
                s->obj[id].first_out = true; /* f < seq, out: for good */
        }
    }
    pending += (uint32_t) n_waits;
    if (pending == 0) {
        s->n_dep_ids = dep_base;
        s->now = seq;
        s->have_now = true;
        return FONTE_OK;
    }

    /* held */
    if (s->live >= s->max_held) {
        s->failed = true;
        return FONTE_ELIMIT;
    }
    if (s->n_held >= s->compact_min && s->n_held >= 2 * s->live &&
        !compact(s, &dep_base)) {
        s->failed = true;
        return FONTE_ENOMEM;
    }
    if (oid == NONE && (rc = intern(s, object, &oid)) != FONTE_OK) {
        s->failed = true;
        return rc;
    }
    if (!grow((void **) &s->held, &s->cap_held, s->n_held + 1,
              sizeof *s->held) ||
        !grow((void **) &s->ready.v, &s->ready.cap, s->live + 1,
              sizeof *s->ready.v) ||
        !grow((void **) &s->wn, &s->cap_wn, s->n_wn + n_waits,
              sizeof *s->wn)) {
        s->failed = true;
        return FONTE_ENOMEM;
    }
    uint32_t h = (uint32_t) s->n_held++;
    held_t *e = &s->held[h];
    e->seq = seq;
    e->object = oid;
    e->pending = pending;
    e->next = NONE;
    e->deps_off = (uint32_t) dep_base;
    e->n_deps = (uint32_t) (s->n_dep_ids - dep_base);
    e->out = false;
    if (s->obj[oid].tail != NONE) {
        s->held[s->obj[oid].tail].next = h;
    } else {
        s->obj[oid].bit = (uint8_t) obit;
        filter_add(&s->held_filter, s->held_bits, obit);
    }
    s->obj[oid].tail = h;
    mark_t *m = mark_get(s, seq);
    if (m == NULL) {
        s->failed = true;
        return FONTE_ENOMEM;
    }
    m->held = h;
    for (size_t i = 0; i < n_waits; i++) {
        if ((m = mark_get(s, s->waits[i])) == NULL) {
            s->failed = true;
            return FONTE_ENOMEM;
        }
        if (m->waiters == NONE)
            filter_add(&s->wait_filter, s->wait_bits,
                       (unsigned) (s->waits[i] & 63));
        s->wn[s->n_wn].held = h;
        s->wn[s->n_wn].next = m->waiters;
        m->waiters = (uint32_t) s->n_wn++;
    }
    s->live++;
    return FONTE_OK;
}

bool
order_stream_pop(order_stream_t *s, uint64_t *seq)
{
    if (s->failed)
        return false;
    if (s->finished) {
        if (s->end_pos >= s->end.n_order)
            return false;
        *seq = s->held[s->end_held[s->end.order[s->end_pos++]]].seq;
        return true;
    }
    if (s->ready.n > 0) {
        uint32_t h = heap_pop(&s->ready);
        held_t *e = &s->held[h];
        *seq = e->seq;
        e->out = true;
        s->live--;
        if (s->obj[e->object].tail == h) {
            s->obj[e->object].tail = NONE;
            filter_remove(&s->held_filter, s->held_bits,
                          s->obj[e->object].bit);
        }
        if (e->next != NONE)
            wake(s, e->next);
        release(s, *seq);
        if (s->live == 0)
            reset_held(s);
        return true;
    }
    if (s->have_now) {
        s->have_now = false;
        *seq = s->now;
        if (s->live > 0)
            release(s, s->now);
        return true;
    }
    return false;
}

fonte_err
order_stream_finish(order_stream_t *s)
{
    if (s->failed || s->finished || s->have_now || s->ready.n > 0)
        return FONTE_EINVAL;
    s->finished = true;
    if (s->live == 0)
        return FONTE_OK;

    /* what is held waits only on held events: order that subgraph */
    order_event_t *ev = malloc(s->live * sizeof *ev);
    uint32_t *deps = malloc((s->n_dep_ids ? s->n_dep_ids : 1) * sizeof *deps);
    s->end_held = malloc(s->live * sizeof *s->end_held);
    if (ev == NULL || deps == NULL || s->end_held == NULL) {
        free(ev);
        free(deps);
        s->failed = true;
        return FONTE_ENOMEM;
    }
    size_t n = 0, nd = 0;
    for (size_t h = 0; h < s->n_held; h++) {
        const held_t *e = &s->held[h];
        if (e->out)
            continue;
        ev[n].seq = e->seq;
        ev[n].object = e->object;
        ev[n].deps_off = (uint32_t) nd;
        ev[n].n_deps = 0;
        for (uint32_t i = 0; i < e->n_deps; i++) {
            uint32_t d = s->dep_ids[e->deps_off + i];
            if (s->obj[d].first != 0 && still_held(s, s->obj[d].first)) {
                deps[nd++] = d;
                ev[n].n_deps++;
            }
        }
        s->end_held[n++] = (uint32_t) h;
    }
    order_graph_t g = { ev, n, deps, nd, order_names_count(s->names) };
    fonte_err rc = order_causal(&g, &s->end);
    free(ev);
    free(deps);
    if (rc != FONTE_OK)
        s->failed = true;
    return rc;
}

const order_result_t *
order_stream_cycles(const order_stream_t *s, const order_names_t **names)
{
    *names = s->names;
    return &s->end;
}
