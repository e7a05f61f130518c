/*
 * hash.h - FNV-1a, the one string hash behind fonte's in-memory tables:
 * the broker's topic counts, the store's object and session caches, the
 * order's name table and the replay's first-seq cache.
 */
#ifndef FONTE_HASH_H
#define FONTE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FONTE_FNV_BASIS 0xcbf29ce484222325ULL

/* FNV-1a of p[0..n) continued from h (FONTE_FNV_BASIS to start). */
static inline uint64_t
fonte_fnv1a(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* For a cache of `slots` slots in sets of `ways` (both powers of two):
 * the first slot of the set of hash h, and in *victim the way to evict
 * when that set is full (other bits of h). The store's object cache and
 * the replay's first-seq cache are both laid out this way. */
static inline size_t
fonte_hash_set(uint64_t h, size_t slots, size_t ways, unsigned *victim)
{
    h ^= h >> 32;
    *victim = (unsigned) (h >> 20) & (unsigned) (ways - 1);
    return (size_t) (h & (slots / ways - 1)) * ways;
}

#endif
