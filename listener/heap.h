/*
 * heap.h - a binary min-heap of (key, node), for the orders (order.c,
 * order_stream.c). Zero-initialise a heap_t; free(h.v) when done.
 * heap_push returns false when out of memory (the heap is unchanged);
 * heap_pop needs n > 0 and returns the node of the smallest key.
 */
#ifndef FONTE_HEAP_H
#define FONTE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct heap_item {
    uint64_t key;
    uint32_t node;
} heap_item_t;

typedef struct heap {
    heap_item_t *v;
    size_t n, cap;
} heap_t;

static inline bool
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

static inline uint32_t
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

#endif
