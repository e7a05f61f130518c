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
    size_t cap, head, count;
    uint64_t dropped;
};

inbox_t *
inbox_new(size_t max)
{
    inbox_t *ib;

    if (max == 0 || (ib = calloc(1, sizeof *ib)) == NULL)
        return NULL;
    if ((ib->ring = calloc(max, sizeof *ib->ring)) == NULL ||
        sync_cond_init(&ib->ready) != 0) {
        free(ib->ring);
        free(ib);
        return NULL;
    }
    pthread_mutex_init(&ib->mu, NULL);
    ib->cap = max;
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
    free(ib);
    *ib_p = NULL;
}

bool
inbox_push(inbox_t *ib, fonte_event_t *e)
{
    pthread_mutex_lock(&ib->mu);
    if (ib->count == ib->cap) {
        ib->dropped++;
        pthread_mutex_unlock(&ib->mu);
        event_destroy(&e);
        return false;
    }
    ib->ring[(ib->head + ib->count) % ib->cap] = e;
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
        out[n++] = ib->ring[ib->head];
        ib->head = (ib->head + 1) % ib->cap;
        ib->count--;
    }
    pthread_mutex_unlock(&ib->mu);
    return n;
}

uint64_t
inbox_dropped(inbox_t *ib)
{
    pthread_mutex_lock(&ib->mu);
    uint64_t d = ib->dropped;
    pthread_mutex_unlock(&ib->mu);
    return d;
}
