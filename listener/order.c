/*
 * order.c - replay orders and the closure walk (see order.h).
 *
 * All three orders share one routine, toposort(): nodes with a unique
 * 64-bit key, edges in CSR form, output the lexicographically smallest
 * topological order by key, breaking cycles at the smallest key of a
 * strongly connected component that nothing outside it blocks any more.
 *
 * How the cycle rule is kept cheap: Tarjan's algorithm labels each node
 * with its SCC once, up front. Each SCC counts its unsatisfied incoming
 * edges from outside (ext). When ext reaches 0 the SCC is a source of the
 * remaining graph and its members go into a second min-heap of release
 * candidates. When the ready heap runs dry with nodes left, the smallest
 * candidate still pending is released as if its in-degree were 0. Each
 * node enters each heap at most a bounded number of times, hence
 * O((N + M) log N).
 */
#include "order.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* a binary min-heap of (key, node)                                    */

typedef struct heap_item {
    uint64_t key;
    uint32_t node;
} heap_item_t;

typedef struct heap {
    heap_item_t *v;
    size_t n, cap;
} heap_t;

static bool
heap_push(heap_t *h, uint64_t key, uint32_t node)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        heap_item_t *v = realloc(h->v, cap * sizeof *v);
        if (v == NULL)
            return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p].key <= key)
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i].key = key;
    h->v[i].node = node;
    return true;
}

static uint32_t
heap_pop(heap_t *h)
{
    uint32_t top = h->v[0].node;
    heap_item_t last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1].key < h->v[c].key)
            c++;
        if (last.key <= h->v[c].key)
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

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

/* Iterative Tarjan: scc[v] = component id; returns the number of
 * components, or -1 on allocation failure. */
static long
tarjan(const csr_t *g, uint32_t *scc)
{
    size_t n = g->n;
    uint32_t *index = malloc((n ? n : 1) * sizeof *index);
    uint32_t *low = malloc((n ? n : 1) * sizeof *low);
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    uint32_t *call = malloc((n ? n : 1) * sizeof *call); /* DFS path */
    uint32_t *edge = malloc((n ? n : 1) * sizeof *edge); /* next edge */
    bool *on = calloc(n ? n : 1, sizeof *on);
    long comps = -1;

    if (!index || !low || !stack || !call || !edge || !on)
        goto done;
    const uint32_t unvisited = UINT32_MAX;
    for (size_t i = 0; i < n; i++)
        index[i] = unvisited;
    uint32_t next_index = 0;
    size_t sp = 0;
    comps = 0;
    for (size_t root = 0; root < n; root++) {
        if (index[root] != unvisited)
            continue;
        size_t depth = 0;
        call[depth++] = (uint32_t) root;
        index[root] = low[root] = next_index++;
        edge[root] = g->off[root];
        stack[sp++] = (uint32_t) root;
        on[root] = true;
        while (depth > 0) {
            uint32_t v = call[depth - 1];
            if (edge[v] < g->off[v + 1]) {
                uint32_t w = g->to[edge[v]++];
                if (index[w] == unvisited) {
                    index[w] = low[w] = next_index++;
                    edge[w] = g->off[w];
                    stack[sp++] = w;
                    on[w] = true;
                    call[depth++] = w;
                } else if (on[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            if (low[v] == index[v]) {
                uint32_t w;
                do {
                    w = stack[--sp];
                    on[w] = false;
                    scc[w] = (uint32_t) comps;
                } while (w != v);
                comps++;
            }
            depth--;
            if (depth > 0) {
                uint32_t u = call[depth - 1];
                if (low[v] < low[u])
                    low[u] = low[v];
            }
        }
    }
done:
    free(index);
    free(low);
    free(stack);
    free(call);
    free(edge);
    free(on);
    return comps;
}

/* Cycle reports are gathered per component as node lists first. */
typedef struct cycles {
    size_t n, cap;
    uint32_t *comp; /* component ids released, in release order */
} cycles_t;

/*
 * The shared routine. key[v] must be unique. out receives n nodes.
 * released_comp gets the components broken (each once), in order.
 */
static fonte_err
toposort(const csr_t *g, const uint64_t *key, uint32_t *out, cycles_t *cyc,
         uint32_t **scc_out)
{
    size_t n = g->n;
    fonte_err rc = FONTE_ENOMEM;
    uint32_t *indeg = calloc(n ? n : 1, sizeof *indeg);
    uint32_t *scc = malloc((n ? n : 1) * sizeof *scc);
    bool *done = calloc(n ? n : 1, sizeof *done);
    uint32_t *ext = NULL, *size = NULL, *moff = NULL, *members = NULL;
    bool *broken = NULL;
    heap_t ready = { 0 }, cand = { 0 };

    if (!indeg || !scc || !done)
        goto fail;
    long ncomp = tarjan(g, scc);
    if (ncomp < 0)
        goto fail;
    size_t nc = (size_t) ncomp;
    ext = calloc(nc ? nc : 1, sizeof *ext);
    size = calloc(nc ? nc : 1, sizeof *size);
    moff = calloc(nc + 1, sizeof *moff);
    members = malloc((n ? n : 1) * sizeof *members);
    broken = calloc(nc ? nc : 1, sizeof *broken);
    if (!ext || !size || !moff || !members || !broken)
        goto fail;
    for (size_t v = 0; v < n; v++) {
        size[scc[v]]++;
        for (uint32_t i = g->off[v]; i < g->off[v + 1]; i++) {
            uint32_t w = g->to[i];
            indeg[w]++;
            if (scc[w] != scc[v])
                ext[scc[w]]++;
        }
    }
    for (size_t c = 0; c < nc; c++)
        moff[c + 1] = moff[c] + size[c];
    memset(size, 0, nc * sizeof *size); /* reused as fill cursor */
    for (size_t v = 0; v < n; v++)
        members[moff[scc[v]] + size[scc[v]]++] = (uint32_t) v;

    for (size_t v = 0; v < n; v++)
        if (indeg[v] == 0 && !heap_push(&ready, key[v], (uint32_t) v))
            goto fail;
    for (size_t c = 0; c < nc; c++)
        if (ext[c] == 0 && size[c] > 1)
            for (uint32_t i = moff[c]; i < moff[c + 1]; i++)
                if (!heap_push(&cand, key[members[i]], members[i]))
                    goto fail;

    size_t emitted = 0;
    while (emitted < n) {
        uint32_t v = UINT32_MAX;
        while (ready.n > 0 && v == UINT32_MAX) {
            uint32_t x = heap_pop(&ready);
            if (!done[x])
                v = x;
        }
        if (v == UINT32_MAX) {
            /* stuck: every node left waits on a cycle */
            while (cand.n > 0 && v == UINT32_MAX) {
                uint32_t x = heap_pop(&cand);
                if (!done[x])
                    v = x;
            }
            if (v == UINT32_MAX) {
                rc = FONTE_EINTERNAL; /* cannot happen: see the top comment */
                goto fail;
            }
            if (!broken[scc[v]]) {
                broken[scc[v]] = true;
                if (cyc->n == cyc->cap) {
                    size_t cap = cyc->cap ? cyc->cap * 2 : 8;
                    uint32_t *p = realloc(cyc->comp, cap * sizeof *p);
                    if (p == NULL)
                        goto fail;
                    cyc->comp = p;
                    cyc->cap = cap;
                }
                cyc->comp[cyc->n++] = scc[v];
            }
        }
        done[v] = true;
        out[emitted++] = v;
        for (uint32_t i = g->off[v]; i < g->off[v + 1]; i++) {
            uint32_t w = g->to[i];
            if (--indeg[w] == 0 && !done[w] &&
                !heap_push(&ready, key[w], w))
                goto fail;
            if (scc[w] != scc[v] && --ext[scc[w]] == 0 && size[scc[w]] > 1) {
                uint32_t c = scc[w];
                for (uint32_t j = moff[c]; j < moff[c + 1]; j++)
                    if (!done[members[j]] &&
                        !heap_push(&cand, key[members[j]], members[j]))
                        goto fail;
            }
        }
    }
    rc = FONTE_OK;
    *scc_out = scc;
    scc = NULL;
fail:
    free(indeg);
    free(scc);
    free(done);
    free(ext);
    free(size);
    free(moff);
    free(members);
    free(broken);
    free(ready.v);
    free(cand.v);
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

/* Turns released components into sorted, unique object-id lists, in
 * release order. One pass over the nodes. */
static fonte_err
report_cycles(const order_graph_t *g, const cycles_t *cyc,
              const uint32_t *scc, size_t n_nodes, bool nodes_are_events,
              order_result_t *res)
{
    fonte_err rc = FONTE_ENOMEM;
    uint32_t *which = NULL, *fill = NULL;

    if (cyc->n == 0)
        return FONTE_OK;
    /* scc ids are < n_nodes: which[component] = cycle index + 1 */
    which = calloc(n_nodes, sizeof *which);
    fill = calloc(cyc->n + 1, sizeof *fill);
    res->cycle_off = calloc(cyc->n + 1, sizeof *res->cycle_off);
    if (!which || !fill || !res->cycle_off)
        goto done;
    for (size_t c = 0; c < cyc->n; c++)
        which[cyc->comp[c]] = (uint32_t) c + 1;
    for (size_t v = 0; v < n_nodes; v++)
        if (which[scc[v]])
            res->cycle_off[which[scc[v]]]++;
    for (size_t c = 0; c < cyc->n; c++)
        res->cycle_off[c + 1] += res->cycle_off[c];
    size_t total = res->cycle_off[cyc->n];
    res->cycle_objects = malloc((total ? total : 1) * sizeof(uint32_t));
    if (res->cycle_objects == NULL)
        goto done;
    for (size_t c = 0; c < cyc->n; c++)
        fill[c] = (uint32_t) res->cycle_off[c];
    for (size_t v = 0; v < n_nodes; v++)
        if (which[scc[v]])
            res->cycle_objects[fill[which[scc[v]] - 1]++] =
                nodes_are_events ? g->events[v].object : (uint32_t) v;
    /* sort and deduplicate each cycle, compacting as we go */
    size_t w = 0;
    for (size_t c = 0; c < cyc->n; c++) {
        size_t lo = res->cycle_off[c], hi = res->cycle_off[c + 1];
        qsort(res->cycle_objects + lo, hi - lo, sizeof(uint32_t), cmp_u32);
        res->cycle_off[c] = w;
        size_t start = w;
        for (size_t r = lo; r < hi; r++)
            if (w == start || res->cycle_objects[w - 1] != res->cycle_objects[r])
                res->cycle_objects[w++] = res->cycle_objects[r];
    }
    res->cycle_off[cyc->n] = w;
    res->n_cycles = cyc->n;
    rc = FONTE_OK;
done:
    free(which);
    free(fill);
    return rc;
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

fonte_err
order_causal(const order_graph_t *g, order_result_t *res)
{
    size_t n = g->n_events;
    by_object_t bo = { 0 };
    edge_t *edges = NULL;
    uint64_t *key = NULL;
    uint32_t *scc = NULL;
    csr_t csr = { 0 };
    cycles_t cyc = { 0 };
    fonte_err rc;

    memset(res, 0, sizeof *res);
    if ((rc = check_graph(g)) != FONTE_OK)
        return rc;
    if ((rc = group_by_object(g, &bo)) != FONTE_OK)
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
    if ((rc = toposort(&csr, key, res->order, &cyc, &scc)) != FONTE_OK)
        goto fail;
    res->n_order = n;
    rc = report_cycles(g, &cyc, scc, n, true, res);
fail:
    if (rc != FONTE_OK)
        order_result_fini(res);
    free(bo.off);
    free(bo.evs);
    free(edges);
    free(key);
    free(scc);
    free(cyc.comp);
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
    uint32_t *scc = NULL, *oorder = NULL;
    csr_t csr = { 0 };
    cycles_t cyc = { 0 };
    fonte_err rc;

    memset(res, 0, sizeof *res);
    if ((rc = check_graph(g)) != FONTE_OK)
        return rc;
    if ((rc = group_by_object(g, &bo)) != FONTE_OK)
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
    if ((rc = toposort(&csr, key, oorder, &cyc, &scc)) != FONTE_OK)
        goto fail;
    size_t k = 0;
    for (size_t i = 0; i < no; i++) {
        uint32_t o = oorder[i];
        for (uint32_t j = bo.off[o]; j < bo.off[o + 1]; j++)
            res->order[k++] = bo.evs[j];
    }
    res->n_order = n;
    rc = report_cycles(g, &cyc, scc, no, false, res);
fail:
    if (rc != FONTE_OK)
        order_result_fini(res);
    free(bo.off);
    free(bo.evs);
    free(edges);
    free(key);
    free(scc);
    free(oorder);
    free(cyc.comp);
    csr_fini(&csr);
    return rc;
}

/* ------------------------------------------------------------------ */
/* names                                                               */

struct order_names {
    char **name;     /* by id */
    size_t *len;
    size_t n, cap;
    uint32_t *slot;  /* open addressing: id + 1, 0 = empty */
    size_t nslots;   /* power of two */
};

static uint64_t
hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t) s[i];
        h *= 1099511628211ULL;
    }
    return h;
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
    for (size_t i = 0; i < t->n; i++)
        free(t->name[i]);
    free(t->name);
    free(t->len);
    free(t->slot);
    free(t);
    *names_p = NULL;
}

static size_t
find_slot(const order_names_t *t, const char *s, size_t len)
{
    size_t mask = t->nslots - 1, i = (size_t) hash_bytes(s, len) & mask;
    for (;;) {
        uint32_t v = t->slot[i];
        if (v == 0)
            return i;
        if (t->len[v - 1] == len && memcmp(t->name[v - 1], s, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

static bool
grow_slots(order_names_t *t)
{
    size_t nslots = t->nslots * 2;
    uint32_t *slot = calloc(nslots, sizeof *slot);
    if (slot == NULL)
        return false;
    uint32_t *old = t->slot;
    t->slot = slot;
    t->nslots = nslots;
    for (size_t id = 0; id < t->n; id++)
        t->slot[find_slot(t, t->name[id], t->len[id])] = (uint32_t) id + 1;
    free(old);
    return true;
}

fonte_err
order_names_intern(order_names_t *t, const char *s, size_t len,
                   uint32_t *id, int *added)
{
    if (added)
        *added = 0;
    if (t->n >= UINT32_MAX - 1)
        return FONTE_ELIMIT;
    if ((t->n + 1) * 2 > t->nslots && !grow_slots(t))
        return FONTE_ENOMEM;
    size_t i = find_slot(t, s, len);
    if (t->slot[i] != 0) {
        *id = t->slot[i] - 1;
        return FONTE_OK;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        char **name = realloc(t->name, cap * sizeof *name);
        if (name == NULL)
            return FONTE_ENOMEM;
        t->name = name;
        size_t *l = realloc(t->len, cap * sizeof *l);
        if (l == NULL)
            return FONTE_ENOMEM;
        t->len = l;
        t->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return FONTE_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    t->name[t->n] = copy;
    t->len[t->n] = len;
    t->slot[i] = (uint32_t) t->n + 1;
    *id = (uint32_t) t->n++;
    if (added)
        *added = 1;
    return FONTE_OK;
}

fonte_err
order_names_find(const order_names_t *t, const char *s, size_t len,
                 uint32_t *id)
{
    size_t i = find_slot(t, s, len);
    if (t->slot[i] == 0)
        return FONTE_ENOTFOUND;
    *id = t->slot[i] - 1;
    return FONTE_OK;
}

const char *
order_names_get(const order_names_t *t, uint32_t id, size_t *len)
{
    if (id >= t->n)
        return NULL;
    if (len)
        *len = t->len[id];
    return t->name[id];
}

size_t
order_names_count(const order_names_t *t)
{
    return t->n;
}

fonte_err
order_closure(order_names_t *names, const char *root, size_t len,
              order_neighbors_fn neighbors, void *arg, size_t limit)
{
    uint32_t id;
    fonte_err rc;

    if ((rc = order_names_intern(names, root, len, &id, NULL)) != FONTE_OK)
        return rc;
    /* ids are handed out in discovery order, so walking ids in order is
     * breadth first */
    for (size_t next = 0; next < order_names_count(names); next++) {
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
