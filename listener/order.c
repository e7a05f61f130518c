/*
 * order.c - replay orders and the closure walk (see order.h).
 *
 * All three orders share one routine, toposort(): nodes with a unique
 * 64-bit key, edges in CSR form, output the lexicographically smallest
 * topological order by key, breaking cycles at the smallest key of a
 * strongly connected component that nothing outside it blocks any more.
 *
 * How the cycle rule is kept cheap: Kahn's loop runs without knowing the
 * components; only the first time it gets stuck does Tarjan's algorithm
 * label each node left with its SCC (so an acyclic graph, the common
 * case, never pays for it). Each SCC counts its unsatisfied incoming
 * edges from outside (ext). When ext reaches 0 the SCC is a source of the
 * remaining graph and its members go into a second min-heap of release
 * candidates. When the ready heap runs dry with nodes left, the smallest
 * candidate still pending is released as if its in-degree were 0, and
 * Tarjan runs again on what is left of its component alone, which may
 * split into smaller components (some no longer cycles).
 *
 * Why the labels stay exact: a path between two members of an SCC never
 * leaves it, so emitting nodes outside a component cannot split it; and
 * no member of a cycle can be emitted normally before one of its members
 * is released, at which point the component is relabelled. Why a stuck
 * state always has a candidate: the remaining graph's condensation is a
 * DAG, so it has a source component; that component is not a single
 * ready node (the ready heap is empty), so it is a cycle with ext == 0,
 * and its members were pushed when its ext reached 0 or when it was
 * created.
 */
#include "order.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "hash.h"
#include "heap.h"

/* ------------------------------------------------------------------ */
/* graphs in CSR form                                                  */

typedef struct edge {
    uint32_t from, to;
} edge_t;

typedef struct csr {
    size_t n;
    uint32_t *off; /* n + 1 */
    uint32_t *to;
} csr_t;

static void
csr_fini(csr_t *g)
{
    free(g->off);
    free(g->to);
    memset(g, 0, sizeof *g);
}

static bool
csr_build(csr_t *g, size_t n, const edge_t *e, size_t m)
{
    g->n = n;
    g->off = calloc(n + 1, sizeof *g->off);
    g->to = malloc((m > 0 ? m : 1) * sizeof *g->to);
    if (g->off == NULL || g->to == NULL) {
        csr_fini(g);
        return false;
    }
    for (size_t i = 0; i < m; i++)
        g->off[e[i].from + 1]++;
    for (size_t i = 0; i < n; i++)
        g->off[i + 1] += g->off[i];
    uint32_t *fill = malloc((n > 0 ? n : 1) * sizeof *fill);
    if (fill == NULL) {
        csr_fini(g);
        return false;
    }
    memcpy(fill, g->off, n * sizeof *fill);
    for (size_t i = 0; i < m; i++)
        g->to[fill[e[i].from]++] = e[i].to;
    free(fill);
    return true;
}

/* Broken cycles, as node lists in release order. */
typedef struct cycles {
    size_t n, cap;      /* cycles */
    size_t *off;        /* n + 1 */
    uint32_t *nodes;
    size_t nn, capn;
} cycles_t;

static void
cycles_fini(cycles_t *c)
{
    free(c->off);
    free(c->nodes);
    memset(c, 0, sizeof *c);
}

/* The state of one toposort. Per node: in-degree, component, marks and
 * Tarjan scratch. Per component (growable, since a released component is
 * split into new ones): unsatisfied external in-edges, size, and its
 * members' place in pool. */
typedef struct topo {
    const csr_t *g;
    const uint64_t *key;
    size_t n;
    uint32_t *indeg, *scc, *mark, *vis, *tindex, *tlow, *tstack, *tcall,
        *tedge;
    bool *done, *on;
    bool have_scc; /* components are computed at the first stuck state */
    uint32_t stamp;
    uint32_t *ext, *csize, *coff;
    size_t ncomp, capcomp;
    uint32_t *pool;
    size_t npool, cappool;
    heap_t ready, cand;
    uint32_t *out;
    size_t emitted;
    size_t work, work_max; /* steps of cycle breaking (spend) */
    bool over;             /* work went past work_max */
} topo_t;

/* Counts n steps of breaking cycles: nodes relabelled, edges looked at,
 * nodes recorded in a broken cycle. A component that stays strongly
 * connected release after release (a chain of objects each depending on
 * both its neighbours) is relabelled and recorded whole at every
 * release: n releases of O(n) each. false once work_max is passed:
 * FONTE_ELIMIT, a clear error instead of minutes of CPU and gigabytes. */
static inline bool
spend(topo_t *t, size_t n)
{
    t->work += n;
    if (t->work > t->work_max) {
        t->over = true;
        return false;
    }
    return true;
}

static bool
new_comp(topo_t *t, uint32_t *id)
{
    size_t cap = t->capcomp;
    if (!grow((void **) &t->ext, &cap, t->ncomp + 1, sizeof *t->ext))
        return false;
    cap = t->capcomp;
    if (!grow((void **) &t->csize, &cap, t->ncomp + 1, sizeof *t->csize))
        return false;
    cap = t->capcomp;
    if (!grow((void **) &t->coff, &cap, t->ncomp + 1, sizeof *t->coff))
        return false;
    t->capcomp = cap;
    *id = (uint32_t) t->ncomp++;
    t->ext[*id] = 0;
    t->csize[*id] = 0;
    t->coff[*id] = (uint32_t) t->npool;
    return true;
}

/* Iterative Tarjan over nodes[0..k), the nodes with mark == stamp: gives
 * each strongly connected component a new id, its members a contiguous
 * run of pool, and counts each component's in-edges from other members
 * of the set (ext). Returns false on allocation failure. */
static bool
tarjan(topo_t *t, const uint32_t *nodes, size_t k)
{
    const csr_t *g = t->g;
    uint32_t next_index = 0;
    size_t sp = 0;
    size_t first_comp = t->ncomp;

    if (!spend(t, k) ||
        !grow((void **) &t->pool, &t->cappool, t->npool + k, sizeof *t->pool))
        return false;
    for (size_t r = 0; r < k; r++) {
        uint32_t root = nodes[r];
        if (t->vis[root] == t->stamp)
            continue;
        size_t depth = 0;
        t->tcall[depth++] = root;
        t->vis[root] = t->stamp;
        t->tindex[root] = t->tlow[root] = next_index++;
        t->tedge[root] = g->off[root];
        t->tstack[sp++] = root;
        t->on[root] = true;
        while (depth > 0) {
            uint32_t v = t->tcall[depth - 1];
            if (t->tedge[v] < g->off[v + 1]) {
                uint32_t w = g->to[t->tedge[v]++];
                if (t->mark[w] != t->stamp)
                    continue; /* outside the set */
                if (t->vis[w] != t->stamp) {
                    t->vis[w] = t->stamp;
                    t->tindex[w] = t->tlow[w] = next_index++;
                    t->tedge[w] = g->off[w];
                    t->tstack[sp++] = w;
                    t->on[w] = true;
                    t->tcall[depth++] = w;
                } else if (t->on[w] && t->tindex[w] < t->tlow[v]) {
                    t->tlow[v] = t->tindex[w];
                }
                continue;
            }
            if (t->tlow[v] == t->tindex[v]) {
                uint32_t c, w;
                if (!new_comp(t, &c))
                    return false;
                do {
                    w = t->tstack[--sp];
                    t->on[w] = false;
                    t->scc[w] = c;
                    t->pool[t->npool++] = w;
                    t->csize[c]++;
                } while (w != v);
            }
            depth--;
            if (depth > 0) {
                uint32_t u = t->tcall[depth - 1];
                if (t->tlow[v] < t->tlow[u])
                    t->tlow[u] = t->tlow[v];
            }
        }
    }
    for (size_t r = 0; r < k; r++) {
        uint32_t u = nodes[r];
        if (!spend(t, g->off[u + 1] - g->off[u]))
            return false;
        for (uint32_t i = g->off[u]; i < g->off[u + 1]; i++) {
            uint32_t w = g->to[i];
            if (t->mark[w] == t->stamp && t->scc[w] != t->scc[u])
                t->ext[t->scc[w]]++;
        }
    }
    /* sources that are real cycles become release candidates */
    for (size_t c = first_comp; c < t->ncomp; c++) {
        if (t->ext[c] != 0 || t->csize[c] < 2)
            continue;
        for (uint32_t j = t->coff[c]; j < t->coff[c] + t->csize[c]; j++)
            if (!heap_push(&t->cand, t->key[t->pool[j]], t->pool[j]))
                return false;
    }
    return true;
}

static bool
emit(topo_t *t, uint32_t v)
{
    const csr_t *g = t->g;

    t->done[v] = true;
    t->out[t->emitted++] = v;
    for (uint32_t i = g->off[v]; i < g->off[v + 1]; i++) {
        uint32_t w = g->to[i];
        if (t->done[w])
            continue;
        if (--t->indeg[w] == 0 && !heap_push(&t->ready, t->key[w], w))
            return false;
        if (!t->have_scc)
            continue;
        uint32_t c = t->scc[w];
        if (c != t->scc[v] && --t->ext[c] == 0 && t->csize[c] > 1) {
            for (uint32_t j = t->coff[c]; j < t->coff[c] + t->csize[c]; j++)
                if (!t->done[t->pool[j]] &&
                    !heap_push(&t->cand, t->key[t->pool[j]], t->pool[j]))
                    return false;
        }
    }
    return true;
}

/* Releases v, the smallest node of a source component c: records c as a
 * broken cycle, emits v, and splits what is left of c into its own
 * strongly connected components (which may be cycles again, or not). */
static bool
release(topo_t *t, uint32_t v, cycles_t *cyc)
{
    uint32_t c = t->scc[v];
    uint32_t lo = t->coff[c], hi = t->coff[c] + t->csize[c];

    if (!spend(t, hi - lo) ||
        !grow((void **) &cyc->off, &cyc->cap, cyc->n + 2, sizeof *cyc->off) ||
        !grow((void **) &cyc->nodes, &cyc->capn, cyc->nn + (hi - lo),
              sizeof *cyc->nodes))
        return false;
    cyc->off[cyc->n] = cyc->nn;
    for (uint32_t j = lo; j < hi; j++)
        if (!t->done[t->pool[j]])
            cyc->nodes[cyc->nn++] = t->pool[j];
    cyc->off[++cyc->n] = cyc->nn;

    if (!emit(t, v))
        return false;
    /* the rest of c: copy out first, tarjan() appends to pool */
    size_t k = 0;
    uint32_t *rest = malloc((hi - lo) * sizeof *rest);
    if (rest == NULL)
        return false;
    for (uint32_t j = lo; j < hi; j++)
        if (!t->done[t->pool[j]])
            rest[k++] = t->pool[j];
    t->stamp++;
    for (size_t i = 0; i < k; i++)
        t->mark[rest[i]] = t->stamp;
    bool ok = tarjan(t, rest, k);
    free(rest);
    return ok;
}

static uint32_t
pop_valid(topo_t *t, heap_t *h, bool candidates)
{
    while (h->n > 0) {
        uint32_t x = heap_pop(h);
        if (t->done[x])
            continue;
        if (candidates &&
            (t->ext[t->scc[x]] != 0 || t->csize[t->scc[x]] < 2))
            continue; /* its component changed since it was pushed */
        return x;
    }
    return UINT32_MAX;
}

/*
 * The shared routine: the smallest-key topological order of g into out
 * (n nodes), cycles broken as order.h says and recorded in cyc.
 */
static fonte_err
toposort(const csr_t *g, const uint64_t *key, uint32_t *out, cycles_t *cyc)
{
    size_t n = g->n, n1 = n ? n : 1;
    topo_t t = { 0 };
    fonte_err rc = FONTE_ENOMEM;
    uint32_t *all = NULL;

    t.g = g;
    t.key = key;
    t.n = n;
    t.out = out;
    t.work_max = ORDER_CYCLE_WORK(n, g->off[n]);
    t.indeg = calloc(n1, sizeof *t.indeg);
    t.done = calloc(n1, sizeof *t.done);
    if (!t.indeg || !t.done)
        goto fail;
    for (size_t v = 0; v < n; v++)
        for (uint32_t i = g->off[v]; i < g->off[v + 1]; i++)
            t.indeg[g->to[i]]++;
    for (size_t v = 0; v < n; v++)
        if (t.indeg[v] == 0 && !heap_push(&t.ready, key[v], (uint32_t) v))
            goto fail;

    while (t.emitted < n) {
        uint32_t v = pop_valid(&t, &t.ready, false);
        if (v != UINT32_MAX) {
            if (!emit(&t, v))
                goto fail;
            continue;
        }
        /* stuck: every node left waits on a cycle. The first time, find
         * the components of what is left (an acyclic graph never pays
         * for Tarjan). */
        if (!t.have_scc) {
            t.scc = calloc(n1, sizeof *t.scc);
            t.mark = calloc(n1, sizeof *t.mark);
            t.vis = calloc(n1, sizeof *t.vis);
            t.tindex = malloc(n1 * sizeof *t.tindex);
            t.tlow = malloc(n1 * sizeof *t.tlow);
            t.tstack = malloc(n1 * sizeof *t.tstack);
            t.tcall = malloc(n1 * sizeof *t.tcall);
            t.tedge = malloc(n1 * sizeof *t.tedge);
            t.on = calloc(n1, sizeof *t.on);
            all = calloc(n1, sizeof *all);
            if (!t.scc || !t.mark || !t.vis || !t.tindex || !t.tlow ||
                !t.tstack || !t.tcall || !t.tedge || !t.on || !all)
                goto fail;
            size_t k = 0;
            t.stamp = 1;
            for (size_t u = 0; u < n; u++)
                if (!t.done[u]) {
                    all[k++] = (uint32_t) u;
                    t.mark[u] = 1;
                }
            if (!tarjan(&t, all, k))
                goto fail;
            t.have_scc = true;
        }
        v = pop_valid(&t, &t.cand, true);
        if (v == UINT32_MAX) {
            rc = FONTE_EINTERNAL; /* cannot happen: see the top comment */
            goto fail;
        }
        if (!release(&t, v, cyc))
            goto fail;
    }
    rc = FONTE_OK;
fail:
    if (t.over)
        rc = FONTE_ELIMIT;
    free(all);
    free(t.indeg);
    free(t.scc);
    free(t.mark);
    free(t.vis);
    free(t.tindex);
    free(t.tlow);
    free(t.tstack);
    free(t.tcall);
    free(t.tedge);
    free(t.done);
    free(t.on);
    free(t.ext);
    free(t.csize);
    free(t.coff);
    free(t.pool);
    free(t.ready.v);
    free(t.cand.v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the three orders                                                    */

void
order_result_fini(order_result_t *res)
{
    if (res == NULL)
        return;
    free(res->order);
    free(res->cycle_off);
    free(res->cycle_objects);
    memset(res, 0, sizeof *res);
}

static fonte_err
check_graph(const order_graph_t *g)
{
    if (g->n_events > UINT32_MAX - 1 || g->n_objects > UINT32_MAX - 1)
        return FONTE_ELIMIT;
    for (size_t i = 0; i < g->n_events; i++) {
        const order_event_t *e = &g->events[i];
        if (e->object >= g->n_objects ||
            (uint64_t) e->deps_off + e->n_deps > g->n_deps)
            return FONTE_EINVAL;
        for (uint32_t j = 0; j < e->n_deps; j++)
            if (g->deps[e->deps_off + j] >= g->n_objects)
                return FONTE_EINVAL;
    }
    return FONTE_OK;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return (x > y) - (x < y);
}

/* Events of each object, sorted by seq: per-object lists in CSR form. */
typedef struct by_object {
    uint32_t *off;  /* n_objects + 1 */
    uint32_t *evs;  /* event indexes */
} by_object_t;

/* Sorts idx[0..n) by seq: a bottom-up merge sort (stable, no globals). */
static bool
sort_by_seq(const order_graph_t *g, uint32_t *idx, size_t n)
{
    size_t run = 1;
    while (run < n && g->events[idx[run - 1]].seq <= g->events[idx[run]].seq)
        run++;
    if (run >= n)
        return true; /* already in order: a whole-log replay reads it so */
    uint32_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (tmp == NULL)
        return false;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = g->events[idx[i]].seq <= g->events[idx[j]].seq
                               ? idx[i++] : idx[j++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
    free(tmp);
    return true;
}

static fonte_err
group_by_object(const order_graph_t *g, by_object_t *bo)
{
    size_t n = g->n_events;
    bo->off = calloc(g->n_objects + 1, sizeof *bo->off);
    bo->evs = malloc((n ? n : 1) * sizeof *bo->evs);
    uint32_t *all = malloc((n ? n : 1) * sizeof *all);
    uint32_t *fill = calloc(g->n_objects + 1, sizeof *fill);
    fonte_err rc = FONTE_ENOMEM;

    if (!bo->off || !bo->evs || !all || !fill)
        goto done;
    for (size_t i = 0; i < n; i++)
        all[i] = (uint32_t) i;
    if (!sort_by_seq(g, all, n))
        goto done;
    for (size_t i = 0; i < n; i++)
        bo->off[g->events[i].object + 1]++;
    for (size_t o = 0; o < g->n_objects; o++)
        bo->off[o + 1] += bo->off[o];
    memcpy(fill, bo->off, (g->n_objects + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) /* in seq order, so each list is sorted */
        bo->evs[fill[g->events[all[i]].object]++] = all[i];
    rc = FONTE_OK;
done:
    free(all);
    free(fill);
    if (rc != FONTE_OK) {
        free(bo->off);
        free(bo->evs);
        bo->off = bo->evs = NULL;
    }
    return rc;
}

/* Turns the broken cycles' node lists into sorted, unique object-id
 * lists, in release order. */
static fonte_err
report_cycles(const order_graph_t *g, const cycles_t *cyc,
              bool nodes_are_events, order_result_t *res)
{
    if (cyc->n == 0)
        return FONTE_OK;
    res->cycle_off = calloc(cyc->n + 1, sizeof *res->cycle_off);
    res->cycle_objects = malloc((cyc->nn ? cyc->nn : 1) * sizeof(uint32_t));
    if (!res->cycle_off || !res->cycle_objects)
        return FONTE_ENOMEM;
    size_t w = 0;
    for (size_t c = 0; c < cyc->n; c++) {
        size_t start = w;
        for (size_t i = cyc->off[c]; i < cyc->off[c + 1]; i++)
            res->cycle_objects[w++] = nodes_are_events
                                          ? g->events[cyc->nodes[i]].object
                                          : cyc->nodes[i];
        qsort(res->cycle_objects + start, w - start, sizeof(uint32_t),
              cmp_u32);
        size_t u = start;
        for (size_t r = start; r < w; r++)
            if (u == start || res->cycle_objects[u - 1] != res->cycle_objects[r])
                res->cycle_objects[u++] = res->cycle_objects[r];
        w = u;
        res->cycle_off[c] = start;
        res->cycle_off[c + 1] = w;
    }
    res->n_cycles = cyc->n;
    return FONTE_OK;
}

fonte_err
order_sequence(const order_graph_t *g, order_result_t *res)
{
    fonte_err rc;

    memset(res, 0, sizeof *res);
    if ((rc = check_graph(g)) != FONTE_OK)
        return rc;
    res->order = malloc((g->n_events ? g->n_events : 1) * sizeof(uint32_t));
    if (res->order == NULL)
        return FONTE_ENOMEM;
    for (size_t i = 0; i < g->n_events; i++)
        res->order[i] = (uint32_t) i;
    if (!sort_by_seq(g, res->order, g->n_events)) {
        order_result_fini(res);
        return FONTE_ENOMEM;
    }
    res->n_order = g->n_events;
    return FONTE_OK;
}

/* What the graph orders share: a cleared result, a checked graph, and
 * each object's events in seq order. */
static fonte_err
order_begin(const order_graph_t *g, order_result_t *res, by_object_t *bo)
{
    fonte_err rc;

    memset(res, 0, sizeof *res);
    if ((rc = check_graph(g)) != FONTE_OK)
        return rc;
    return group_by_object(g, bo);
}

fonte_err
order_causal(const order_graph_t *g, order_result_t *res)
{
    size_t n = g->n_events;
    by_object_t bo = { 0 };
    edge_t *edges = NULL;
    uint64_t *key = NULL;
    csr_t csr = { 0 };
    cycles_t cyc = { 0 };
    fonte_err rc;

    if ((rc = order_begin(g, res, &bo)) != FONTE_OK)
        return rc;
    rc = FONTE_ENOMEM;
    edges = malloc((n + g->n_deps + 1) * sizeof *edges);
    key = malloc((n ? n : 1) * sizeof *key);
    res->order = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!edges || !key || !res->order)
        goto fail;
    size_t m = 0;
    for (size_t o = 0; o < g->n_objects; o++)
        for (uint32_t i = bo.off[o] + 1; i < bo.off[o + 1]; i++)
            edges[m++] = (edge_t) { bo.evs[i - 1], bo.evs[i] };
    for (size_t i = 0; i < n; i++) {
        const order_event_t *e = &g->events[i];
        key[i] = e->seq;
        for (uint32_t j = 0; j < e->n_deps; j++) {
            uint32_t d = g->deps[e->deps_off + j];
            if (d == e->object || bo.off[d] == bo.off[d + 1])
                continue; /* own object, or no events of it here */
            edges[m++] = (edge_t) { bo.evs[bo.off[d]], (uint32_t) i };
        }
    }
    if (!csr_build(&csr, n, edges, m))
        goto fail;
    if ((rc = toposort(&csr, key, res->order, &cyc)) != FONTE_OK)
        goto fail;
    res->n_order = n;
    rc = report_cycles(g, &cyc, true, res);
fail:
    if (rc != FONTE_OK)
        order_result_fini(res);
    free(bo.off);
    free(bo.evs);
    free(edges);
    free(key);
    cycles_fini(&cyc);
    csr_fini(&csr);
    return rc;
}

fonte_err
order_objects(const order_graph_t *g, order_result_t *res)
{
    size_t n = g->n_events, no = g->n_objects;
    by_object_t bo = { 0 };
    edge_t *edges = NULL;
    uint64_t *key = NULL;
    uint32_t *oorder = NULL;
    csr_t csr = { 0 };
    cycles_t cyc = { 0 };
    fonte_err rc;

    if ((rc = order_begin(g, res, &bo)) != FONTE_OK)
        return rc;
    rc = FONTE_ENOMEM;
    edges = malloc((g->n_deps + 1) * sizeof *edges);
    key = malloc((no ? no : 1) * sizeof *key);
    oorder = malloc((no ? no : 1) * sizeof *oorder);
    res->order = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!edges || !key || !oorder || !res->order)
        goto fail;
    /* An object without events sorts last among equals (its key is past
     * every seq) and contributes nothing to the output. */
    for (size_t o = 0; o < no; o++)
        key[o] = bo.off[o] < bo.off[o + 1] ? g->events[bo.evs[bo.off[o]]].seq
                                           : UINT64_MAX - (no - o);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const order_event_t *e = &g->events[i];
        for (uint32_t j = 0; j < e->n_deps; j++) {
            uint32_t d = g->deps[e->deps_off + j];
            if (d != e->object && bo.off[d] < bo.off[d + 1])
                edges[m++] = (edge_t) { d, e->object };
        }
    }
    if (!csr_build(&csr, no, edges, m))
        goto fail;
    if ((rc = toposort(&csr, key, oorder, &cyc)) != FONTE_OK)
        goto fail;
    size_t k = 0;
    for (size_t i = 0; i < no; i++) {
        uint32_t o = oorder[i];
        for (uint32_t j = bo.off[o]; j < bo.off[o + 1]; j++)
            res->order[k++] = bo.evs[j];
    }
    res->n_order = n;
    rc = report_cycles(g, &cyc, false, res);
fail:
    if (rc != FONTE_OK)
        order_result_fini(res);
    free(bo.off);
    free(bo.evs);
    free(edges);
    free(key);
    free(oorder);
    cycles_fini(&cyc);
    csr_fini(&csr);
    return rc;
}

/* ------------------------------------------------------------------ */
/* names                                                               */

/* Names live in arena blocks that never move (so a returned name stays
 * valid while the table grows), each as [uint32 len][bytes][NUL]. A slot
 * holds the name's pointer, the high half of its hash and its id, so a
 * lookup touches the slot and, only when the hash halves agree, the
 * name itself: with a replay's names scattered by a million events
 * between two uses, every touch is a cache miss, and this one table is
 * most of the planning time. */
#define NAMES_BLOCK 65536

typedef struct name_slot {
    const char *name; /* NULL = empty */
    uint32_t tag;     /* hash >> 32 */
    uint32_t id;
} name_slot_t;

struct order_names {
    const char **name; /* by id */
    size_t n, cap;
    name_slot_t *slot;
    size_t nslots;     /* power of two */
    char **blocks;
    size_t n_blocks, cap_blocks, block_used, block_size;
};

static uint64_t
hash_bytes(const char *s, size_t len)
{
    uint64_t h = fonte_fnv1a(s, len, FONTE_FNV_BASIS);
    return h ^ (h >> 29); /* the low bits index the table: mix in the high */
}

static uint32_t
name_len(const char *name)
{
    uint32_t len;
    memcpy(&len, name - sizeof len, sizeof len);
    return len;
}

order_names_t *
order_names_new(void)
{
    order_names_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->nslots = 64;
    t->slot = calloc(t->nslots, sizeof *t->slot);
    if (t->slot == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void
order_names_destroy(order_names_t **names_p)
{
    if (names_p == NULL || *names_p == NULL)
        return;
    order_names_t *t = *names_p;
    for (size_t i = 0; i < t->n_blocks; i++)
        free(t->blocks[i]);
    free(t->blocks);
    free(t->name);
    free(t->slot);
    free(t);
    *names_p = NULL;
}

static size_t
find_slot(const order_names_t *t, const char *s, size_t len, uint64_t h)
{
    size_t mask = t->nslots - 1, i = (size_t) h & mask;
    uint32_t tag = (uint32_t) (h >> 32);
    for (;;) {
        const name_slot_t *sl = &t->slot[i];
        if (sl->name == NULL)
            return i;
        if (sl->tag == tag && name_len(sl->name) == len &&
            memcmp(sl->name, s, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

static bool
grow_slots(order_names_t *t)
{
    size_t nslots = t->nslots * 2;
    name_slot_t *slot = calloc(nslots, sizeof *slot);
    if (slot == NULL)
        return false;
    name_slot_t *old = t->slot;
    size_t old_n = t->nslots;
    t->slot = slot;
    t->nslots = nslots;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].name == NULL)
            continue;
        uint64_t h = hash_bytes(old[i].name, name_len(old[i].name));
        t->slot[find_slot(t, old[i].name, name_len(old[i].name), h)] = old[i];
    }
    free(old);
    return true;
}

/* Room for one name of len bytes in the arena: its bytes' address. */
static char *
arena_put(order_names_t *t, const char *s, size_t len)
{
    size_t need = sizeof(uint32_t) + len + 1;
    if (t->n_blocks == 0 || t->block_used + need > t->block_size) {
        if (t->n_blocks == t->cap_blocks) {
            size_t cap = t->cap_blocks ? t->cap_blocks * 2 : 16;
            char **b = realloc(t->blocks, cap * sizeof *b);
            if (b == NULL)
                return NULL;
            t->blocks = b;
            t->cap_blocks = cap;
        }
        size_t size = need > NAMES_BLOCK ? need : NAMES_BLOCK;
        char *blk = malloc(size);
        if (blk == NULL)
            return NULL;
        t->blocks[t->n_blocks++] = blk;
        t->block_used = 0;
        t->block_size = size;
    }
    char *at = t->blocks[t->n_blocks - 1] + t->block_used;
    uint32_t l32 = (uint32_t) len;
    memcpy(at, &l32, sizeof l32);
    memcpy(at + sizeof l32, s, len);
    at[sizeof l32 + len] = '\0';
    /* keep the next length field 4-byte aligned */
    t->block_used += (need + 3) & ~(size_t) 3;
    return at + sizeof l32;
}

fonte_err
order_names_intern(order_names_t *t, const char *s, size_t len,
                   uint32_t *id, int *added)
{
    if (added)
        *added = 0;
    if (t->n >= UINT32_MAX - 1 || len > UINT32_MAX / 2)
        return FONTE_ELIMIT;
    uint64_t h = hash_bytes(s, len);
    size_t i = find_slot(t, s, len, h);
    if (t->slot[i].name != NULL) {
        *id = t->slot[i].id;
        return FONTE_OK;
    }
    if ((t->n + 1) * 2 > t->nslots) {
        if (!grow_slots(t))
            return FONTE_ENOMEM;
        i = find_slot(t, s, len, h);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        const char **name = realloc(t->name, cap * sizeof *name);
        if (name == NULL)
            return FONTE_ENOMEM;
        t->name = name;
        t->cap = cap;
    }
    char *copy = arena_put(t, s, len);
    if (copy == NULL)
        return FONTE_ENOMEM;
    t->name[t->n] = copy;
    t->slot[i].name = copy;
    t->slot[i].tag = (uint32_t) (h >> 32);
    t->slot[i].id = (uint32_t) t->n;
    *id = (uint32_t) t->n++;
    if (added)
        *added = 1;
    return FONTE_OK;
}

fonte_err
order_names_find(const order_names_t *t, const char *s, size_t len,
                 uint32_t *id)
{
    size_t i = find_slot(t, s, len, hash_bytes(s, len));
    if (t->slot[i].name == NULL)
        return FONTE_ENOTFOUND;
    *id = t->slot[i].id;
    return FONTE_OK;
}

const char *
order_names_get(const order_names_t *t, uint32_t id, size_t *len)
{
    if (id >= t->n)
        return NULL;
    if (len)
        *len = name_len(t->name[id]);
    return t->name[id];
}

size_t
order_names_count(const order_names_t *t)
{
    return t->n;
}

fonte_err
order_closure(order_names_t *names, uint32_t from,
              order_neighbors_fn neighbors, void *arg, size_t limit)
{
    fonte_err rc;

    for (size_t next = from; next < order_names_count(names); next++) {
        if (order_names_count(names) > limit)
            return FONTE_ELIMIT;
        size_t nlen = 0;
        const char *name = order_names_get(names, (uint32_t) next, &nlen);
        if ((rc = neighbors(arg, name, nlen, names)) != FONTE_OK)
            return rc;
    }
    if (order_names_count(names) > limit)
        return FONTE_ELIMIT;
    return FONTE_OK;
}
