/*
 * test_order.c - listener/order.c: the replay orders on hand-made graphs,
 * and a property test over 1000 seeded random graphs against a brute-force
 * reference (reachability matrix) written independently of order.c.
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order.h"

/* A graph under construction: objects named by single letters. */
typedef struct tgraph {
    order_event_t ev[512];
    uint32_t deps[2048];
    size_t n_ev, n_deps, n_obj;
} tgraph_t;

static void
add(tgraph_t *t, uint64_t seq, uint32_t obj, const char *deps)
{
    order_event_t *e = &t->ev[t->n_ev++];
    e->seq = seq;
    e->object = obj;
    e->deps_off = (uint32_t) t->n_deps;
    e->n_deps = 0;
    for (const char *d = deps; *d; d++) {
        t->deps[t->n_deps++] = (uint32_t) ((unsigned char) *d - 'a');
        e->n_deps++;
    }
    if (obj + 1 > t->n_obj)
        t->n_obj = obj + 1;
    for (const char *d = deps; *d; d++)
        if ((uint32_t) ((unsigned char) *d - 'a') + 1 > t->n_obj)
            t->n_obj = (uint32_t) ((unsigned char) *d - 'a') + 1;
}

static order_graph_t
graph(const tgraph_t *t)
{
    order_graph_t g = { t->ev, t->n_ev, t->deps, t->n_deps, t->n_obj };
    return g;
}

/* The seqs of the result, in order. */
static void
seqs(const tgraph_t *t, const order_result_t *r, uint64_t *out)
{
    for (size_t i = 0; i < r->n_order; i++)
        out[i] = t->ev[r->order[i]].seq;
}

#define A 0
#define B 1
#define C 2
#define D 3
#define E 4

Test(order, dependency_created_late_comes_first)
{
    /* the seed's case: order:1 (a) depends on user:7 (b), whose
     * user.created was stored after the order (a resend) */
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");   /* order.placed */
    add(&t, 2, B, "");    /* user.created */
    add(&t, 3, A, "");    /* order.line_added */
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[3];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    cr_assert_eq(r.n_order, 3);
    seqs(&t, &r, s);
    cr_assert_eq(s[0], 2);
    cr_assert_eq(s[1], 1);
    cr_assert_eq(s[2], 3);
    cr_assert_eq(r.n_cycles, 0);
    order_result_fini(&r);
}

Test(order, store_order_kept_when_nothing_needs_changing)
{
    tgraph_t t = { 0 };
    add(&t, 10, B, "");
    add(&t, 11, A, "b");
    add(&t, 12, B, "");
    add(&t, 13, A, "");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[4];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 10, 11, 12, 13 };
    cr_assert_arr_eq(s, want, sizeof want);
    order_result_fini(&r);
}

Test(order, diamond)
{
    /* d needs b and c; b and c need a; stored d, c, b, a */
    tgraph_t t = { 0 };
    add(&t, 1, D, "bc");
    add(&t, 2, C, "a");
    add(&t, 3, B, "a");
    add(&t, 4, A, "");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[4];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 4, 2, 3, 1 }; /* a, then c (seq 2) before b (3), d */
    cr_assert_arr_eq(s, want, sizeof want);
    order_result_fini(&r);
}

Test(order, chain_of_five_stored_backwards)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, B, "c");
    add(&t, 3, C, "d");
    add(&t, 4, D, "e");
    add(&t, 5, E, "");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[5];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 5, 4, 3, 2, 1 };
    cr_assert_arr_eq(s, want, sizeof want);
    cr_assert_eq(r.n_cycles, 0);
    order_result_fini(&r);
}

Test(order, two_cycle_reported_smallest_seq_released)
{
    tgraph_t t = { 0 };
    add(&t, 5, B, "a");
    add(&t, 3, A, "b");
    add(&t, 7, A, "");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[3];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 3, 5, 7 };
    cr_assert_arr_eq(s, want, sizeof want);
    cr_assert_eq(r.n_cycles, 1);
    cr_assert_eq(r.cycle_off[0], 0);
    cr_assert_eq(r.cycle_off[1], 2);
    cr_assert_eq(r.cycle_objects[0], A);
    cr_assert_eq(r.cycle_objects[1], B);
    order_result_fini(&r);
}

Test(order, three_cycle_and_a_dependent_outside_it)
{
    /* a -> b -> c -> a (each first event needs the next object), and d
     * needs a: d must wait for the cycle, and is not part of it */
    tgraph_t t = { 0 };
    add(&t, 1, D, "a");
    add(&t, 2, C, "a");
    add(&t, 3, B, "c");
    add(&t, 4, A, "b");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[4];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    /* released: c (seq 2, smallest in the cycle); then b, a; then d */
    uint64_t want[] = { 2, 3, 4, 1 };
    cr_assert_arr_eq(s, want, sizeof want);
    cr_assert_eq(r.n_cycles, 1);
    cr_assert_eq(r.cycle_off[1], 3);
    uint32_t objs[] = { A, B, C };
    cr_assert_arr_eq(r.cycle_objects, objs, sizeof objs);
    order_result_fini(&r);
}

Test(order, two_separate_cycles_each_reported_once)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, B, "a");
    add(&t, 3, C, "d");
    add(&t, 4, D, "c");
    add(&t, 5, A, "b");
    order_graph_t g = graph(&t);
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    cr_assert_eq(r.n_cycles, 2);
    cr_assert_eq(r.cycle_off[1], 2);
    cr_assert_eq(r.cycle_off[2], 4);
    uint32_t objs[] = { A, B, C, D };
    cr_assert_arr_eq(r.cycle_objects, objs, sizeof objs);
    order_result_fini(&r);
}

Test(order, self_and_absent_dependencies_are_no_edges)
{
    tgraph_t t = { 0 };
    add(&t, 2, A, "a");  /* own object */
    add(&t, 1, B, "e");  /* e has no events here */
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[2];
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    cr_assert_eq(s[0], 1);
    cr_assert_eq(s[1], 2);
    cr_assert_eq(r.n_cycles, 0);
    order_result_fini(&r);
}

Test(order, sequence_is_store_order)
{
    tgraph_t t = { 0 };
    add(&t, 9, A, "b");
    add(&t, 2, B, "");
    add(&t, 5, C, "a");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[3];
    cr_assert_eq(order_sequence(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 2, 5, 9 };
    cr_assert_arr_eq(s, want, sizeof want);
    order_result_fini(&r);
}

Test(order, objects_keeps_each_object_together_in_dependency_order)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, C, "");
    add(&t, 3, B, "");
    add(&t, 4, A, "");
    add(&t, 5, C, "");
    add(&t, 6, B, "");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[6];
    cr_assert_eq(order_objects(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    /* c has the smallest first seq among the free objects (b: 3, c: 2) */
    uint64_t want[] = { 2, 5, 3, 6, 1, 4 };
    cr_assert_arr_eq(s, want, sizeof want);
    order_result_fini(&r);
}

Test(order, objects_cycle_reported)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "");
    add(&t, 2, B, "a");
    add(&t, 3, A, "b");
    order_graph_t g = graph(&t);
    order_result_t r;
    uint64_t s[3];
    cr_assert_eq(order_objects(&g, &r), FONTE_OK);
    seqs(&t, &r, s);
    uint64_t want[] = { 1, 3, 2 };
    cr_assert_arr_eq(s, want, sizeof want);
    cr_assert_eq(r.n_cycles, 1);
    order_result_fini(&r);
}

Test(order, bad_graphs_are_einval)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    order_graph_t g = graph(&t);
    order_result_t r;
    g.n_objects = 1; /* dep b out of range */
    cr_assert_eq(order_causal(&g, &r), FONTE_EINVAL);
    cr_assert_null(r.order);
    g.n_objects = 2;
    g.n_deps = 0; /* deps range out of bounds */
    cr_assert_eq(order_objects(&g, &r), FONTE_EINVAL);
    g.n_deps = 1;
    t.ev[0].object = 9;
    cr_assert_eq(order_sequence(&g, &r), FONTE_EINVAL);
}

Test(order, empty_graph)
{
    order_graph_t g = { NULL, 0, NULL, 0, 0 };
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    cr_assert_eq(r.n_order, 0);
    order_result_fini(&r);
    cr_assert_eq(order_objects(&g, &r), FONTE_OK);
    order_result_fini(&r);
}

/* ------------------------------------------------------------------ */
/* property test                                                       */

static uint64_t rng;

static uint32_t
rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t) (rng % n);
}

static void
random_graph(tgraph_t *t, size_t n, uint32_t nobj, bool acyclic)
{
    memset(t, 0, sizeof *t);
    uint64_t perm[512];
    for (size_t i = 0; i < n; i++)
        perm[i] = (i + 1) * 3; /* distinct seqs */
    for (size_t i = n; i > 1; i--) {
        uint32_t j = rnd((uint32_t) i);
        uint64_t x = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = x;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t obj = rnd(nobj);
        char deps[4] = { 0 };
        uint32_t nd = rnd(3);
        size_t k = 0;
        for (uint32_t j = 0; j < nd; j++) {
            uint32_t d = rnd(nobj);
            if (acyclic && d >= obj)
                continue;
            deps[k++] = (char) ('a' + d);
        }
        add(t, perm[i], obj, deps);
    }
    t->n_obj = nobj;
}

/* Independent reference: the edges, then repeatedly the smallest ready
 * event, and when stuck the smallest event of a source SCC of the
 * remaining graph (SCCs from a reachability matrix). */
static void
reference(const tgraph_t *t, uint64_t *out)
{
    size_t n = t->n_ev;
    static bool edge[64][64], reach[64][64];
    bool done[64] = { false };
    memset(edge, 0, sizeof edge);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            if (i == j)
                continue;
            const order_event_t *a = &t->ev[i], *b = &t->ev[j];
            /* chain: a is the previous event of b's object */
            if (a->object == b->object && a->seq < b->seq) {
                bool between = false;
                for (size_t k = 0; k < n; k++)
                    if (t->ev[k].object == a->object && t->ev[k].seq > a->seq &&
                        t->ev[k].seq < b->seq)
                        between = true;
                if (!between)
                    edge[i][j] = true;
            }
            /* a is the first event of an object b depends on */
            bool first = true;
            for (size_t k = 0; k < n; k++)
                if (t->ev[k].object == a->object && t->ev[k].seq < a->seq)
                    first = false;
            for (uint32_t d = 0; first && d < b->n_deps; d++)
                if (t->deps[b->deps_off + d] == a->object &&
                    a->object != b->object)
                    edge[i][j] = true;
        }
    }
    for (size_t k = 0; k < n; k++) {
        size_t best = SIZE_MAX;
        for (size_t j = 0; j < n; j++) {
            if (done[j])
                continue;
            bool ready = true;
            for (size_t i = 0; i < n; i++)
                if (edge[i][j] && !done[i])
                    ready = false;
            if (ready && (best == SIZE_MAX || t->ev[j].seq < t->ev[best].seq))
                best = j;
        }
        if (best == SIZE_MAX) {
            /* reachability among remaining nodes */
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    reach[i][j] = !done[i] && !done[j] && (i == j || edge[i][j]);
            for (size_t m = 0; m < n; m++)
                for (size_t i = 0; i < n; i++)
                    for (size_t j = 0; j < n; j++)
                        if (reach[i][m] && reach[m][j])
                            reach[i][j] = true;
            for (size_t j = 0; j < n; j++) {
                if (done[j])
                    continue;
                /* j's component is a source: every remaining pred of any
                 * member is in the component */
                bool source = true;
                for (size_t v = 0; v < n && source; v++) {
                    if (done[v] || !(reach[j][v] && reach[v][j]))
                        continue;
                    for (size_t u = 0; u < n; u++)
                        if (edge[u][v] && !done[u] &&
                            !(reach[j][u] && reach[u][j]))
                            source = false;
                }
                if (source &&
                    (best == SIZE_MAX || t->ev[j].seq < t->ev[best].seq))
                    best = j;
            }
        }
        cr_assert_neq(best, SIZE_MAX);
        done[best] = true;
        out[k] = t->ev[best].seq;
    }
}

static size_t
position(const tgraph_t *t, const order_result_t *r, size_t ev)
{
    for (size_t i = 0; i < r->n_order; i++)
        if (r->order[i] == ev)
            return i;
    return SIZE_MAX;
}

static bool
in_same_cycle(const order_result_t *r, uint32_t x, uint32_t y)
{
    for (size_t c = 0; c < r->n_cycles; c++) {
        bool hx = false, hy = false;
        for (size_t i = r->cycle_off[c]; i < r->cycle_off[c + 1]; i++) {
            hx |= r->cycle_objects[i] == x;
            hy |= r->cycle_objects[i] == y;
        }
        if (hx && hy)
            return true;
    }
    return false;
}

/* The invariants of causal order, checked on any graph. */
static void
check_invariants(const tgraph_t *t, const order_result_t *r, bool acyclic)
{
    size_t n = t->n_ev;
    cr_assert_eq(r->n_order, n);
    bool *seen = calloc(n ? n : 1, sizeof *seen);
    for (size_t i = 0; i < n; i++) {
        cr_assert_lt(r->order[i], n);
        cr_assert_not(seen[r->order[i]], "event emitted twice");
        seen[r->order[i]] = true;
    }
    free(seen);
    for (size_t i = 1; i < n; i++) {
        /* per-object store order is always kept */
        for (size_t j = 0; j < i; j++) {
            const order_event_t *a = &t->ev[r->order[j]], *b = &t->ev[r->order[i]];
            if (a->object == b->object)
                cr_assert_lt(a->seq, b->seq, "object order broken");
        }
    }
    for (size_t e = 0; e < n; e++) {
        const order_event_t *ev = &t->ev[e];
        for (uint32_t d = 0; d < ev->n_deps; d++) {
            uint32_t obj = t->deps[ev->deps_off + d];
            size_t first = SIZE_MAX;
            for (size_t k = 0; k < n; k++)
                if (t->ev[k].object == obj &&
                    (first == SIZE_MAX || t->ev[k].seq < t->ev[first].seq))
                    first = k;
            if (first == SIZE_MAX || obj == ev->object)
                continue;
            if (position(t, r, first) > position(t, r, e)) {
                cr_assert_not(acyclic, "dependency after its dependent");
                cr_assert(in_same_cycle(r, obj, ev->object),
                          "a dependency broken outside any reported cycle");
            }
        }
    }
    if (acyclic)
        cr_assert_eq(r->n_cycles, 0);
}

Test(order, property_random_graphs_match_reference_and_keep_invariants)
{
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        rng = seed * 0x9e3779b97f4a7c15ULL;
        bool acyclic = seed % 3 == 0;
        size_t n = 1 + rnd(seed % 10 == 0 ? 60 : 14);
        tgraph_t *t = malloc(sizeof *t);
        random_graph(t, n, 1 + rnd(6), acyclic);
        order_graph_t g = graph(t);
        order_result_t r;
        cr_assert_eq(order_causal(&g, &r), FONTE_OK, "seed %llu",
                     (unsigned long long) seed);
        check_invariants(t, &r, acyclic);
        uint64_t got[512], want[512];
        seqs(t, &r, got);
        reference(t, want);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(got[i], want[i], "seed %llu position %zu",
                         (unsigned long long) seed, i);
        order_result_fini(&r);

        /* objects order: a permutation with every object contiguous */
        cr_assert_eq(order_objects(&g, &r), FONTE_OK);
        cr_assert_eq(r.n_order, n);
        for (size_t i = 2; i < n; i++) {
            uint32_t o = t->ev[r.order[i]].object;
            if (o != t->ev[r.order[i - 1]].object)
                for (size_t j = 0; j + 1 < i; j++)
                    cr_assert_neq(t->ev[r.order[j]].object, o,
                                  "object split, seed %llu",
                                  (unsigned long long) seed);
        }
        order_result_fini(&r);
        free(t);
    }
}

Test(order, large_graph_keeps_invariants)
{
    rng = 42;
    tgraph_t *t = malloc(sizeof *t);
    random_graph(t, 500, 60, false);
    order_graph_t g = graph(t);
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    check_invariants(t, &r, false);
    order_result_fini(&r);
    free(t);
}

/* A chain of n objects, one event each (seq i + 1), each depending on
 * both its neighbours: after each release the rest is still one strongly
 * connected component, so breaking it costs O(n^2) steps (a review,
 * 2026-11-29: 10 000 took 32 s and 784 MB). */
static order_graph_t
interlocked_chain(size_t n, order_event_t *ev, uint32_t *deps)
{
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        ev[i].seq = i + 1;
        ev[i].object = (uint32_t) i;
        ev[i].deps_off = (uint32_t) nd;
        ev[i].n_deps = 0;
        if (i > 0) {
            deps[nd++] = (uint32_t) (i - 1);
            ev[i].n_deps++;
        }
        if (i + 1 < n) {
            deps[nd++] = (uint32_t) (i + 1);
            ev[i].n_deps++;
        }
    }
    order_graph_t g = { ev, n, deps, nd, n };
    return g;
}

/* Such a chain of 300 is ordered: store order, each release a cycle of
 * what is left (299 cycles). One of 5 000 is FONTE_ELIMIT (at most
 * ORDER_CYCLE_WORK steps), in both causal and objects order, instead
 * of seconds of CPU and hundreds of MB. */
Test(order, interlocking_cycles_are_bounded_work)
{
    const size_t big = 5000;
    order_event_t *ev = calloc(big, sizeof *ev);
    uint32_t *deps = calloc(2 * big, sizeof *deps);
    cr_assert(ev != NULL && deps != NULL);
    order_graph_t g = interlocked_chain(300, ev, deps);
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    cr_assert_eq(r.n_order, 300);
    for (size_t i = 0; i < 300; i++)
        cr_assert_eq(r.order[i], i);
    cr_assert_eq(r.n_cycles, 299);
    order_result_fini(&r);
    g = interlocked_chain(big, ev, deps);
    cr_assert_eq(order_causal(&g, &r), FONTE_ELIMIT);
    cr_assert_null(r.order);
    cr_assert_eq(order_objects(&g, &r), FONTE_ELIMIT);
    free(ev);
    free(deps);
}

/* ------------------------------------------------------------------ */
/* names and closure                                                   */

Test(order, names_intern_and_find)
{
    order_names_t *n = order_names_new();
    uint32_t id;
    int added;
    char buf[32];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(buf, sizeof buf, "user:%d", i);
        cr_assert_eq(order_names_intern(n, buf, (size_t) len, &id, &added),
                     FONTE_OK);
        cr_assert_eq(id, (uint32_t) i);
        cr_assert_eq(added, 1);
    }
    cr_assert_eq(order_names_intern(n, "user:7", 6, &id, &added), FONTE_OK);
    cr_assert_eq(id, 7);
    cr_assert_eq(added, 0);
    cr_assert_eq(order_names_find(n, "user:999", 8, &id), FONTE_OK);
    cr_assert_eq(id, 999);
    cr_assert_eq(order_names_find(n, "user:1000", 9, &id), FONTE_ENOTFOUND);
    size_t len;
    cr_assert_str_eq(order_names_get(n, 12, &len), "user:12");
    cr_assert_eq(len, 7);
    cr_assert_null(order_names_get(n, 1000, &len));
    cr_assert_eq(order_names_count(n), 1000);
    order_names_destroy(&n);
    cr_assert_null(n);
    order_names_destroy(&n);
}

/* A fixed object graph: each name's neighbours. */
static fonte_err
fixed_neighbors(void *arg, const char *object, size_t len,
                order_names_t *names)
{
    const char *const *edges = arg; /* pairs "from", "to", ..., NULL */
    uint32_t id;
    for (size_t i = 0; edges[i]; i += 2) {
        if (strlen(edges[i]) == len && memcmp(edges[i], object, len) == 0) {
            fonte_err rc = order_names_intern(names, edges[i + 1],
                                              strlen(edges[i + 1]), &id, NULL);
            if (rc != FONTE_OK)
                return rc;
        }
    }
    return FONTE_OK;
}

Test(order, closure_is_breadth_first_and_handles_cycles)
{
    const char *edges[] = { "order:1", "user:7",  "order:1", "cart:3",
                            "user:7",  "org:1",   "cart:3",  "order:1",
                            "org:1",   "user:7",  "x:1",     "y:1", NULL };
    order_names_t *n = order_names_new();
    uint32_t id;
    cr_assert_eq(order_names_intern(n, "order:1", 7, &id, NULL), FONTE_OK);
    cr_assert_eq(order_closure(n, 0, fixed_neighbors, edges, 100), FONTE_OK);
    cr_assert_eq(order_names_count(n), 4);
    cr_assert_str_eq(order_names_get(n, 0, NULL), "order:1");
    cr_assert_str_eq(order_names_get(n, 1, NULL), "user:7");
    cr_assert_str_eq(order_names_get(n, 2, NULL), "cart:3");
    cr_assert_str_eq(order_names_get(n, 3, NULL), "org:1");
    order_names_destroy(&n);
}

Test(order, second_walk_continues_from_the_first)
{
    /* dependents first (x depends on a), then dependencies of all */
    const char *rev[] = { "a:1", "x:1", NULL };
    const char *fwd[] = { "x:1", "c:1", "a:1", "b:1", NULL };
    order_names_t *n = order_names_new();
    uint32_t id;
    cr_assert_eq(order_names_intern(n, "a:1", 3, &id, NULL), FONTE_OK);
    cr_assert_eq(order_closure(n, 0, fixed_neighbors, rev, 100), FONTE_OK);
    cr_assert_eq(order_names_count(n), 2);
    cr_assert_eq(order_closure(n, 0, fixed_neighbors, fwd, 100), FONTE_OK);
    cr_assert_eq(order_names_count(n), 4);
    cr_assert_str_eq(order_names_get(n, 2, NULL), "b:1");
    cr_assert_str_eq(order_names_get(n, 3, NULL), "c:1");
    order_names_destroy(&n);
}

Test(order, closure_over_the_limit_is_elimit)
{
    const char *edges[] = { "a:1", "b:1", "b:1", "c:1", "c:1", "d:1", NULL };
    order_names_t *n = order_names_new();
    uint32_t id;
    cr_assert_eq(order_names_intern(n, "a:1", 3, &id, NULL), FONTE_OK);
    cr_assert_eq(order_closure(n, 0, fixed_neighbors, edges, 3), FONTE_ELIMIT);
    order_names_destroy(&n);
    n = order_names_new();
    cr_assert_eq(order_names_intern(n, "a:1", 3, &id, NULL), FONTE_OK);
    cr_assert_eq(order_closure(n, 0, fixed_neighbors, edges, 4), FONTE_OK);
    cr_assert_eq(order_names_count(n), 4);
    order_names_destroy(&n);
}

/* ------------------------------------------------------------------ */
/* the streamed causal order                                           */

static const char *const obj_name[] = {
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
    "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z"
};

/* first(): the smallest seq of an object in the graph, 0 if none. */
static fonte_err
graph_first(void *arg, const char *object, size_t len, uint64_t *first)
{
    const tgraph_t *t = arg;
    *first = 0;
    cr_assert_eq(len, 1);
    for (size_t i = 0; i < t->n_ev; i++)
        if (t->ev[i].object == (uint32_t) (object[0] - 'a') &&
            (*first == 0 || t->ev[i].seq < *first))
            *first = t->ev[i].seq;
    return FONTE_OK;
}

static int
cmp_by_seq(const void *a, const void *b)
{
    const order_event_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Cycle c of a result as its object letters, ascending. */
static void
cycle_letters(const order_result_t *r, size_t c, const order_names_t *names,
              char *out)
{
    size_t k = 0;
    for (size_t i = r->cycle_off[c]; i < r->cycle_off[c + 1]; i++)
        out[k++] = names ? order_names_get(names, r->cycle_objects[i], NULL)[0]
                         : (char) ('a' + r->cycle_objects[i]);
    out[k] = '\0';
    for (size_t i = 1; i < k; i++) /* insertion sort */
        for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            char x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
}

/* Streams t (pushing in seq order, popping whenever possible) and checks
 * the result equals order_causal's, cycles included. Returns the largest
 * number held at once. */
static size_t compact_min_for_tests; /* 0: the default */

static size_t
check_stream(const tgraph_t *t, uint64_t seed)
{
    order_graph_t g = graph(t);
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    uint64_t want[512];
    seqs(t, &r, want);

    order_event_t *ev = malloc(t->n_ev * sizeof *ev + 1);
    memcpy(ev, t->ev, t->n_ev * sizeof *ev);
    qsort(ev, t->n_ev, sizeof *ev, cmp_by_seq);
    order_stream_t *s = NULL;
    cr_assert_eq(order_stream_new(graph_first, (void *) t, 512, &s), FONTE_OK);
    if (compact_min_for_tests)
        order_stream_tune(s, compact_min_for_tests);
    size_t got = 0, max_held = 0;
    uint64_t seq;
    for (size_t i = 0; i < t->n_ev; i++) {
        while (order_stream_pop(s, &seq)) {
            cr_assert_lt(got, t->n_ev);
            cr_assert_eq(seq, want[got], "seed %llu position %zu",
                         (unsigned long long) seed, got);
            got++;
        }
        order_name_t deps[8];
        for (uint32_t d = 0; d < ev[i].n_deps; d++) {
            deps[d].ptr = obj_name[t->deps[ev[i].deps_off + d]];
            deps[d].len = 1;
        }
        order_name_t o = { obj_name[ev[i].object], 1 };
        cr_assert_eq(order_stream_push(s, ev[i].seq, o, deps, ev[i].n_deps),
                     FONTE_OK);
        if (order_stream_held(s) > max_held)
            max_held = order_stream_held(s);
    }
    while (order_stream_pop(s, &seq)) {
        cr_assert_eq(seq, want[got], "seed %llu position %zu",
                     (unsigned long long) seed, got);
        got++;
    }
    cr_assert_eq(order_stream_finish(s), FONTE_OK);
    while (order_stream_pop(s, &seq)) {
        cr_assert_lt(got, t->n_ev);
        cr_assert_eq(seq, want[got], "seed %llu position %zu (after finish)",
                     (unsigned long long) seed, got);
        got++;
    }
    cr_assert_eq(got, t->n_ev, "seed %llu", (unsigned long long) seed);

    const order_names_t *names;
    const order_result_t *sc = order_stream_cycles(s, &names);
    cr_assert_eq(sc->n_cycles, r.n_cycles, "seed %llu",
                 (unsigned long long) seed);
    for (size_t c = 0; c < r.n_cycles; c++) {
        char a[16], b[16];
        cycle_letters(&r, c, NULL, a);
        cycle_letters(sc, c, names, b);
        cr_assert_str_eq(b, a, "seed %llu cycle %zu", (unsigned long long) seed,
                         c);
    }
    order_stream_destroy(&s);
    order_result_fini(&r);
    free(ev);
    return max_held;
}

Test(order, stream_equals_causal_on_1000_random_graphs)
{
    size_t held_some = 0;
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        rng = seed * 0xd1b54a32d192ed03ULL;
        size_t n = 1 + rnd(seed % 10 == 0 ? 200 : 20);
        tgraph_t *t = malloc(sizeof *t);
        random_graph(t, n, 1 + rnd(seed % 7 == 0 ? 12 : 6), seed % 3 == 0);
        held_some += check_stream(t, seed) > 0;
        free(t);
    }
    /* the graphs exercise holding, not only the pass-through path */
    cr_assert_gt(held_some, 300);
}

Test(order, stream_compacting_at_every_hold_still_equals_causal)
{
    compact_min_for_tests = 1;
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        rng = seed * 0xa0761d6478bd642fULL;
        size_t n = 1 + rnd(seed % 10 == 0 ? 200 : 20);
        tgraph_t *t = malloc(sizeof *t);
        random_graph(t, n, 1 + rnd(seed % 7 == 0 ? 12 : 6), seed % 3 == 0);
        check_stream(t, seed);
        free(t);
    }
    compact_min_for_tests = 0;
}

/* A cycle at the start holds its events to the end of the log; behind
 * it, 23 episodes each hold 6 events until the dependency they wait for
 * is stored (138 held and released in all, at most 8 at once). With
 * compaction the records follow what is held, so a limit of 8 is enough;
 * the order is still order_causal's. */
Test(order, stream_memory_follows_what_is_held_not_the_log)
{
    tgraph_t *t = calloc(1, sizeof *t);
    add(t, 1, A, "b");
    add(t, 2, B, "a");
    uint64_t seq = 3;
    for (uint32_t k = 3; k < 26; k++) {
        /* object k-1 needs k, first stored after 6 events of k-1 */
        char dep[2] = { (char) ('a' + k), 0 };
        add(t, seq++, k - 1, dep);
        for (int j = 0; j < 5; j++)
            add(t, seq++, k - 1, "");
        add(t, seq++, k, "");
    }
    t->n_obj = 26;
    order_graph_t g = graph(t);
    order_result_t r;
    cr_assert_eq(order_causal(&g, &r), FONTE_OK);
    cr_assert_eq(r.n_cycles, 1);
    order_result_fini(&r);
    compact_min_for_tests = 2;
    check_stream(t, 0);
    compact_min_for_tests = 0;
    /* max_held 8: 2 for the cycle, 6 per episode */
    order_stream_t *s = NULL;
    cr_assert_eq(order_stream_new(graph_first, t, 8, &s), FONTE_OK);
    order_stream_tune(s, 2);
    uint64_t out, n_out = 0;
    for (size_t i = 0; i < t->n_ev; i++) {
        while (order_stream_pop(s, &out))
            n_out++;
        order_name_t deps[2];
        for (uint32_t d = 0; d < t->ev[i].n_deps; d++) {
            deps[d].ptr = obj_name[t->deps[t->ev[i].deps_off + d]];
            deps[d].len = 1;
        }
        order_name_t o = { obj_name[t->ev[i].object], 1 };
        cr_assert_eq(order_stream_push(s, t->ev[i].seq, o, deps,
                                       t->ev[i].n_deps),
                     FONTE_OK, "event %zu", i);
        cr_assert_leq(order_stream_held(s), 8);
    }
    while (order_stream_pop(s, &out))
        n_out++;
    cr_assert_eq(order_stream_finish(s), FONTE_OK);
    while (order_stream_pop(s, &out))
        n_out++;
    cr_assert_eq(n_out, t->n_ev);
    order_stream_destroy(&s);
    free(t);
}

Test(order, stream_holds_nothing_when_dependencies_come_first)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "");
    add(&t, 2, B, "a");
    add(&t, 3, C, "ab");
    add(&t, 4, A, "c");
    cr_assert_eq(check_stream(&t, 0), 0);
}

Test(order, stream_holds_a_resend_until_its_dependency)
{
    /* the seed's case: order:1 (a) stored before the user (b) it needs */
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, C, "");
    add(&t, 3, A, "");
    add(&t, 4, B, "");
    cr_assert_eq(check_stream(&t, 0), 2); /* 1 and 3 wait for 4 */
}

Test(order, stream_breaks_a_cycle_at_the_end_and_reports_it)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, B, "a");
    add(&t, 3, C, "");
    add(&t, 4, A, "");
    check_stream(&t, 0);
}

Test(order, stream_over_max_held_is_elimit_and_out_of_turn_is_einval)
{
    tgraph_t t = { 0 };
    add(&t, 1, A, "b");
    add(&t, 2, A, "");
    add(&t, 3, B, "");
    order_stream_t *s = NULL;
    cr_assert_eq(order_stream_new(graph_first, &t, 1, &s), FONTE_OK);
    order_name_t a = { "a", 1 }, b = { "b", 1 };
    cr_assert_eq(order_stream_push(s, 1, a, &b, 1), FONTE_OK);
    cr_assert_eq(order_stream_held(s), 1);
    cr_assert_eq(order_stream_push(s, 1, a, NULL, 0), FONTE_EINVAL,
                 "a seq not above the last one");
    cr_assert_eq(order_stream_push(s, 2, a, NULL, 0), FONTE_ELIMIT);
    uint64_t seq;
    cr_assert_not(order_stream_pop(s, &seq), "a failed stream gives nothing");
    order_stream_destroy(&s);

    cr_assert_eq(order_stream_new(graph_first, &t, 8, &s), FONTE_OK);
    cr_assert_eq(order_stream_push(s, 3, b, NULL, 0), FONTE_OK);
    cr_assert_eq(order_stream_push(s, 4, b, NULL, 0), FONTE_EINVAL,
                 "push while an event is ready to come out");
    cr_assert_eq(order_stream_finish(s), FONTE_EINVAL,
                 "finish while an event is ready to come out");
    cr_assert(order_stream_pop(s, &seq));
    cr_assert_eq(seq, 3);
    cr_assert_eq(order_stream_finish(s), FONTE_OK);
    cr_assert_eq(order_stream_finish(s), FONTE_EINVAL, "finished already");
    cr_assert_eq(order_stream_push(s, 5, b, NULL, 0), FONTE_EINVAL,
                 "push after finish");
    order_stream_destroy(&s);
}
