/*
 * inbox.c - bounded FIFO of received events (see inbox.h).
 */
#include "inbox.h"

#include <pthread.h>
#include <stdlib.h>

#include "event.h"
#include "sync.h"

struct inbox {
    pthread_mutex_t mu;
    pthread_cond_t ready;
    fonte_event_t **ring;
    size_t *sizes; /* each queued event's bytes, beside it in the ring */
    size_t cap, head, count;
    size_t bytes, max_bytes;
    uint64_t queued, dropped;
};

inbox_t *
inbox_new(size_t max, size_t max_bytes)
{
    inbox_t *ib;

    if (max == 0 || max_bytes == 0 || (ib = calloc(1, sizeof *ib)) == NULL)
        return NULL;
    if ((ib->ring = calloc(max, sizeof *ib->ring)) == NULL ||
        (ib->sizes = calloc(max, sizeof *ib->sizes)) == NULL ||
        sync_cond_init(&ib->ready) != 0) {
        free(ib->ring);
        free(ib->sizes);
        free(ib);
        return NULL;
    }
    pthread_mutex_init(&ib->mu, NULL);
    ib->cap = max;
    ib->max_bytes = max_bytes;
    return ib;
}

void
inbox_destroy(inbox_t **ib_p)
{
    inbox_t *ib = ib_p ? *ib_p : NULL;

    if (ib == NULL)
        return;
    for (size_t i = 0; i < ib->count; i++)
        event_destroy(&ib->ring[(ib->head + i) % ib->cap]);
    pthread_cond_destroy(&ib->ready);
    pthread_mutex_destroy(&ib->mu);
    free(ib->ring);
    free(ib->sizes);
    free(ib);
    *ib_p = NULL;
}

bool
inbox_push(inbox_t *ib, fonte_event_t *e, size_t bytes)
{
    pthread_mutex_lock(&ib->mu);
    if (ib->count == ib->cap ||
        (ib->count > 0 && (ib->bytes >= ib->max_bytes ||
                           bytes > ib->max_bytes - ib->bytes))) {
        ib->dropped++;
        pthread_mutex_unlock(&ib->mu);
        event_destroy(&e);
        return false;
    }
    size_t at = (ib->head + ib->count) % ib->cap;
    ib->ring[at] = e;
    ib->sizes[at] = bytes;
    ib->bytes += bytes;
    ib->queued++;
    if (ib->count++ == 0)
        pthread_cond_signal(&ib->ready);
    pthread_mutex_unlock(&ib->mu);
    return true;
}

size_t
inbox_take(inbox_t *ib, int64_t deadline_us, fonte_event_t **out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&ib->mu);
    while (ib->count == 0 &&
           sync_cond_wait_until(&ib->ready, &ib->mu, deadline_us))
        ;
    while (n < max && ib->count > 0) {
        ib->bytes -= ib->sizes[ib->head];
        out[n++] = ib->ring[ib->head];
        ib->head = (ib->head + 1) % ib->cap;
        ib->count--;
    }
    pthread_mutex_unlock(&ib->mu);
    return n;
}

void
inbox_counts(inbox_t *ib, uint64_t *queued, uint64_t *dropped)
{
    pthread_mutex_lock(&ib->mu);
    *queued = ib->queued;
    *dropped = ib->dropped;
    pthread_mutex_unlock(&ib->mu);
}
