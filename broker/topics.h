/*
 * topics.h - per-topic message counts for the broker's Stats.
 *
 * An open-addressing hash table (FNV-1a, linear probing) from topic bytes
 * to a count, sized once for at most `max` topics so that hostile traffic
 * on millions of distinct topics cannot grow the broker's memory: once
 * full, new topics are refused and the caller counts them elsewhere.
 * Topics are never removed; counts are totals since start. Only the
 * broker's loop thread touches a table (no locking).
 */
#ifndef FONTE_BROKER_TOPICS_H
#define FONTE_BROKER_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct topics topics_t;

typedef struct topics_entry {
    const char *topic; /* NUL-terminated, owned by the table */
    uint64_t count;
} topics_entry_t;

/* A table for up to max topics. NULL if out of memory or max is 0. */
topics_t *topics_new(size_t max);

/* Frees the table and its keys; NULL-safe; nulls *topics_p. */
void topics_destroy(topics_t **topics_p);

/* Adds n to the count of topic[0..len). Returns false (and counts
 * nothing) when the topic is new and the table is full or a key cannot
 * be allocated. */
bool topics_add(topics_t *t, const void *topic, size_t len, uint64_t n);

/* Number of distinct topics held. */
size_t topics_size(const topics_t *t);

#define TOPICS_TOP_MAX 64

/* Writes the k (at most TOPICS_TOP_MAX, or fewer) topics with the highest counts into out,
 * highest first (ties: the earlier seen first); returns how many. The
 * topic pointers are valid until the table is destroyed. */
size_t topics_top(const topics_t *t, topics_entry_t *out, size_t k);

#endif
