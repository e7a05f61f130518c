/*
 * array.h - growing a malloc'd array, for the listener's planners
 * (order.c, order_stream.c, replay.c).
 */
#ifndef FONTE_ARRAY_H
#define FONTE_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* Makes room for need elements of elem bytes in *p (capacity *cap),
 * doubling from 64; false when out of memory (*p and *cap unchanged). */
static inline bool
grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return false;
    *p = q;
    *cap = c;
    return true;
}

#endif
