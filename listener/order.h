/*
 * order.h - the replay orders of design.md §6, on event metadata alone.
 *
 * The input is a graph described by integers: events (their store seq,
 * the object they belong to, the objects they depend on) and objects
 * (dense ids 0..n_objects-1, interned by order_names_t). No LevelDB here:
 * listener/replay.c reads the store, builds this graph, and maps the
 * result back to events, so the orders are tested on their own.
 *
 * causal    A topological order of the events with the smallest seq first
 *           whenever there is a choice (Kahn's algorithm with a min-heap),
 *           i.e. the lexicographically smallest order by seq that keeps:
 *             - each event after the previous event of its own object;
 *             - each event after the FIRST event of every object it
 *               depends on (when that object has events in the graph;
 *               a dependency on one's own object is no edge).
 *           This is store order, changed only where a dependency would
 *           otherwise come after the event that needs it.
 *           Cycles (A's first event needs B, B's first needs A) are broken
 *           when nothing else is ready: among the strongly connected
 *           components of the events left that nothing outside them
 *           blocks, the event with the smallest seq is released. What is
 *           left of its component is examined again: it may still hold a
 *           cycle, or not. Releasing only there means an object's events
 *           always keep their own order, and only members of a reported
 *           cycle ever come out before a dependency. Each release reports
 *           its component, as sorted object ids.
 * sequence  Plain store order (by seq).
 * objects   All events of each object together, in seq order, objects in
 *           dependency order (the same algorithm on the object graph, an
 *           object's key being its first seq).
 *
 * Cost: O((E + D) log E) time and O(E + D) memory for E events and D
 * dependency entries when there are no cycles; each release re-runs
 * Tarjan on what is left of one component, so a component of S events
 * that needs k releases costs O(k * S) more. Tarjan is iterative (no
 * recursion depth to exhaust).
 *
 * Threads: no shared state; every function may run on any thread.
 */
#ifndef FONTE_ORDER_H
#define FONTE_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fonte/errors.h"

typedef struct order_event {
    uint64_t seq;      /* unique within a graph */
    uint32_t object;   /* < n_objects */
    uint32_t deps_off; /* this event's deps: deps[deps_off .. +n_deps) */
    uint32_t n_deps;
} order_event_t;

typedef struct order_graph {
    const order_event_t *events; /* any order */
    size_t n_events;
    const uint32_t *deps;        /* object ids */
    size_t n_deps;
    size_t n_objects;
} order_graph_t;

/* What an order returns. Zero-initialise; release with order_result_fini.
 * order[i] is an index into graph.events, in replay order. Cycle c's
 * objects are cycle_objects[cycle_off[c] .. cycle_off[c + 1]), ascending. */
typedef struct order_result {
    uint32_t *order;
    size_t n_order;
    size_t n_cycles;
    size_t *cycle_off;       /* n_cycles + 1 entries, or NULL */
    uint32_t *cycle_objects;
} order_result_t;

/* Each returns FONTE_OK and fills *res (which it first clears), FONTE_EINVAL
 * when an object id or a deps range is out of bounds, FONTE_ELIMIT when
 * breaking its cycles would take more than ORDER_CYCLE_WORK steps, or
 * FONTE_ENOMEM; on error *res holds nothing to free. */
/* The steps cycle breaking may take for n nodes and m edges (nodes
 * relabelled, edges looked at, nodes recorded): enough for any graph
 * whose cycles fall apart as they are broken, and for interlocking ones
 * of a thousand nodes (a chain each depending on both neighbours: n^2
 * steps, 0.3 s); beyond it, FONTE_ELIMIT rather than O(n^2) time and
 * memory (10 000 such nodes took 32 s and 784 MB). */
#define ORDER_CYCLE_WORK(n, m) (8 * ((size_t) (n) + (size_t) (m)) + 4000000)
fonte_err order_causal(const order_graph_t *g, order_result_t *res);
fonte_err order_sequence(const order_graph_t *g, order_result_t *res);
fonte_err order_objects(const order_graph_t *g, order_result_t *res);

void order_result_fini(order_result_t *res);

/* --- object names -> dense ids, for building graphs --- */

typedef struct order_names order_names_t;

order_names_t *order_names_new(void);
void order_names_destroy(order_names_t **names_p);

/* The id of name[0..len), adding it if new (*added set accordingly; may be
 * NULL). FONTE_ENOMEM on allocation failure. */
fonte_err order_names_intern(order_names_t *names, const char *name,
                             size_t len, uint32_t *id, int *added);

/* The id of name if known: FONTE_OK, else FONTE_ENOTFOUND. */
fonte_err order_names_find(const order_names_t *names, const char *name,
                           size_t len, uint32_t *id);

/* The name of an id (NUL-terminated, owned by names), or NULL. */
const char *order_names_get(const order_names_t *names, uint32_t id,
                            size_t *len);
size_t order_names_count(const order_names_t *names);

/* --- closure --- */

/* Adds to *names the neighbours of one object: called by order_closure
 * with the object's name; the callback interns each neighbour (through
 * order_names_intern) and returns FONTE_OK or an error that stops the
 * walk. */
typedef fonte_err (*order_neighbors_fn)(void *arg, const char *object,
                                        size_t len, order_names_t *names);

/* Breadth-first walk: starting with the object of id `from` (objects
 * already in names are the starting set), calls neighbors() for each
 * object in id order until no new object appears. Ids are handed out in
 * discovery order, so this is breadth first, and several walks can run
 * one after the other over the same names (dependents first, then the
 * dependencies of everything found). FONTE_ELIMIT as soon as more than
 * limit objects are known (names then holds a partial closure); any
 * error of neighbors() stops the walk and is returned. */
fonte_err order_closure(order_names_t *names, uint32_t from,
                        order_neighbors_fn neighbors, void *arg,
                        size_t limit);

/* --- the causal order of a whole log, streamed --- */

/*
 * order_stream produces the same order as order_causal for the events of
 * a log fed one by one in seq order, without holding the log: an event
 * is held only while something it needs has not come out yet (a
 * dependency whose first event comes later in the log, or is itself
 * held, or an earlier held event of its own object). In a store where
 * dependencies are stored before their dependents (the common case)
 * nothing is held and every event comes out as it is pushed; the cost is
 * one name lookup per dependency entry.
 *
 * Why it is order_causal's order: order_causal releases the smallest
 * ready event. When event s is pushed, every held event that became
 * ready has come out already (the caller pops until nothing is left
 * before pushing), so if s is ready it is the smallest ready event of
 * the whole graph (every later event has a larger seq). Events released
 * by s's coming out are all smaller than the next push and come out
 * first, smallest first. Once the log is over (order_stream_finish)
 * what is still held waits only on held events, i.e. on cycles: it is
 * ordered by order_causal itself on that subgraph (each dependency kept
 * only when its object's first event is held), which breaks the cycles
 * exactly as it would have in the whole graph (no cycle runs through an
 * event that came out, because everything such an event needs came out
 * before it).
 *
 * The caller provides, through first(), the first seq of an object among
 * the events it will push (0 when none); it is asked once per object
 * named as a dependency, and the answer is cached.
 *
 * Use:  while (pop) emit; then push the next event, or finish at the end
 *       of the log and pop the rest.
 */
typedef struct order_stream order_stream_t;

/* A name as bytes (not NUL-terminated), as the codec hands them out. */
typedef codec_slice_t order_name_t;

/* The first seq of object among the events to be pushed, 0 if none. */
typedef fonte_err (*order_first_fn)(void *arg, const char *object,
                                    size_t len, uint64_t *first);

/* At most max_held events are held at once (push says FONTE_ELIMIT
 * beyond); memory follows that number, not the log (records of events
 * that came out are compacted away). FONTE_ENOMEM. */
fonte_err order_stream_new(order_first_fn first, void *arg, size_t max_held,
                           order_stream_t **s_p);
void order_stream_destroy(order_stream_t **s_p);

/* The next event of the log: seq greater than every seq pushed before,
 * pushed only when order_stream_pop has nothing. A dependency on the
 * event's own object is no edge. FONTE_ELIMIT (the event is not taken:
 * too many held), FONTE_ENOMEM, or first()'s error; after an error the
 * stream is unusable. FONTE_EINVAL when called out of turn. */
fonte_err order_stream_push(order_stream_t *s, uint64_t seq,
                            order_name_t object, const order_name_t *deps,
                            size_t n_deps);

/* The next event in order: true and its seq, or false when nothing can
 * come out until more is pushed (or, after finish, when all has). */
bool order_stream_pop(order_stream_t *s, uint64_t *seq);

/* The log is over: what is held is ordered (cycles broken) and comes out
 * through order_stream_pop. Call when pop has nothing. FONTE_ENOMEM. */
fonte_err order_stream_finish(order_stream_t *s);

/* For tests: compact the held records from n of them on (default 1024;
 * the records of events that came out are dropped once they are at
 * least half of all). */
void order_stream_tune(order_stream_t *s, size_t compact_min);

/* Events held now (not yet out). */
size_t order_stream_held(const order_stream_t *s);

/* After finish: the cycles broken, as object ids of *names (each
 * cycle's ids ascending; see order_result_t). */
const order_result_t *order_stream_cycles(const order_stream_t *s,
                                          const order_names_t **names);

#endif
