/*
 * topics.c - see topics.h.
 *
 * The table is twice the topic limit rounded up to a power of two, so
 * probing stays short even when full. Each slot keeps the full hash to
 * skip most key comparisons; keys are copied once, when first seen.
 */
#include "topics.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

typedef struct slot {
    uint64_t hash;
    char *key; /* NULL: empty slot */
    size_t len;
    uint64_t count;
    size_t order; /* insertion order, for stable ties */
} slot_t;

struct topics {
    slot_t *slots;
    size_t mask;  /* capacity - 1 */
    size_t size, max;
};

topics_t *
topics_new(size_t max)
{
    if (max == 0 || max > (SIZE_MAX / 4) / sizeof(slot_t))
        return NULL;
    size_t cap = 16;
    while (cap < 2 * max)
        cap *= 2;
    topics_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->slots = calloc(cap, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    t->mask = cap - 1;
    t->max = max;
    return t;
}

void
topics_destroy(topics_t **topics_p)
{
    if (topics_p == NULL || *topics_p == NULL)
        return;
    topics_t *t = *topics_p;
    for (size_t i = 0; i <= t->mask; i++)
        free(t->slots[i].key);
    free(t->slots);
    free(t);
    *topics_p = NULL;
}

bool
topics_add(topics_t *t, const void *topic, size_t len, uint64_t n)
{
    uint64_t h = fonte_fnv1a(topic, len, FONTE_FNV_BASIS);
    size_t i = (size_t) h & t->mask;

    for (;; i = (i + 1) & t->mask) {
        slot_t *s = &t->slots[i];
        if (s->key == NULL)
            break;
        if (s->hash == h && s->len == len && memcmp(s->key, topic, len) == 0) {
            s->count += n;
            return true;
        }
    }
    if (t->size >= t->max)
        return false;
    char *key = malloc(len + 1);
    if (key == NULL)
        return false;
    memcpy(key, topic, len);
    key[len] = '\0';
    t->slots[i] = (slot_t) { h, key, len, n, t->size++ };
    return true;
}

size_t
topics_size(const topics_t *t)
{
    return t->size;
}

static bool
ranks_above(const slot_t *a, const slot_t *b)
{
    return a->count > b->count || (a->count == b->count && a->order < b->order);
}

size_t
topics_top(const topics_t *t, topics_entry_t *out, size_t k)
{
    const slot_t *best[TOPICS_TOP_MAX];
    size_t n = 0;

    if (k > TOPICS_TOP_MAX)
        k = TOPICS_TOP_MAX;
    if (k == 0)
        return 0;
    /* Insertion into a sorted array of k: O(size * k), k is small. */
    for (size_t i = 0; i <= t->mask; i++) {
        const slot_t *s = &t->slots[i];
        if (s->key == NULL || (n == k && !ranks_above(s, best[k - 1])))
            continue;
        size_t j = n < k ? n++ : k - 1;
        while (j > 0 && ranks_above(s, best[j - 1])) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = s;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (topics_entry_t) { best[i]->key, best[i]->count };
    return n;
}
