/*
 * readers.c - point reads of many events at once (readers.h).
 *
 * The pool holds one batch at a time. Setting one up, joining one and
 * leaving one happen under `lock`; reading does not: indexes are claimed
 * READERS_CHUNK at a time from the atomic `next`, and `done` (release
 * after the reads, acquire by the caller) publishes what was read.
 *
 * The caller, once nothing is left to claim, polls `done` for up to
 * WAIT_SPIN_US (a helper is finishing its last chunk: a few gets), then
 * sleeps on `cond` until the last reader signals. Then it closes the
 * batch and waits for `active` to fall to 0: a helper that joined late,
 * found nothing to claim and has not yet left still holds the batch's
 * pointers, which must not be reused under it.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "readers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"

#define READERS_CHUNK 8
#define WAIT_SPIN_US 200

typedef struct batch {
    store_snap_t *snap;
    const uint64_t *seqs;
    size_t n;
    void **body;
    size_t *len;
    fonte_err *rc;
    int64_t deadline_us; /* 0, or unread indexes get FONTE_ETIMEOUT after */
} batch_t;

struct readers {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* helpers: a batch or stop; caller: done, idle */
    bool stop;
    bool open;           /* helpers may join the batch */
    uint64_t gen;        /* batches set up so far */
    int active;          /* helpers in the batch */
    batch_t batch;
    atomic_size_t next;  /* first index not yet claimed */
    atomic_size_t done;  /* indexes read */
    atomic_flag busy;    /* a caller owns the pool */

    pthread_t *threads;
    int n_threads;
    _Atomic uint64_t batches, alone, helped;
};

/* Reads indexes [i, end) of b; past its deadline it only marks them
 * FONTE_ETIMEOUT (the clock is looked at once a chunk). */
static void
read_range(const batch_t *b, size_t i, size_t end)
{
    if (b->deadline_us != 0 && fonte_mono_us() > b->deadline_us) {
        for (size_t k = i; k < end; k++) {
            b->rc[k] = FONTE_ETIMEOUT;
            b->body[k] = NULL;
            b->len[k] = 0;
        }
        return;
    }
    for (size_t k = i; k < end; k++)
        b->rc[k] = store_get_event(b->snap, b->seqs[k], &b->body[k],
                                   &b->len[k]);
}

/* Claims and reads chunks of b until none is left; returns how many
 * indexes this thread read. The last reader of the batch wakes the
 * caller. */
static size_t
read_chunks(readers_t *r, const batch_t *b, bool helper)
{
    size_t mine = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, READERS_CHUNK);
        if (i >= b->n)
            break;
        size_t end = i + READERS_CHUNK < b->n ? i + READERS_CHUNK : b->n;
        read_range(b, i, end);
        mine += end - i;
        size_t done = atomic_fetch_add_explicit(&r->done, end - i,
                                                memory_order_acq_rel) +
                      (end - i);
        if (done == b->n && helper) {
            pthread_mutex_lock(&r->lock);
            pthread_cond_broadcast(&r->cond);
            pthread_mutex_unlock(&r->lock);
        }
    }
    return mine;
}

static void *
helper_main(void *arg)
{
    readers_t *r = arg;
    uint64_t seen = 0;

    pthread_setname_np(pthread_self(), "fonte-reader");
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && !(r->open && r->gen != seen))
            pthread_cond_wait(&r->cond, &r->lock);
        if (r->stop)
            break;
        seen = r->gen;
        r->active++;
        batch_t b = r->batch;
        pthread_mutex_unlock(&r->lock);

        size_t mine = read_chunks(r, &b, true);
        if (mine > 0)
            atomic_fetch_add_explicit(&r->helped, mine,
                                      memory_order_relaxed);

        pthread_mutex_lock(&r->lock);
        if (--r->active == 0)
            pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

fonte_err
readers_new(int n, readers_t **readers_p)
{
    *readers_p = NULL;
    if (n < 1 || n > READERS_MAX)
        return FONTE_EINVAL;
    readers_t *r = calloc(1, sizeof *r);
    if (r == NULL || (r->threads = calloc((size_t) n, sizeof *r->threads)) ==
                         NULL) {
        free(r);
        return FONTE_ENOMEM;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    atomic_flag_clear(&r->busy);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&r->threads[i], NULL, helper_main, r) != 0) {
            readers_destroy(&r);
            return FONTE_EIO;
        }
        r->n_threads++;
    }
    *readers_p = r;
    return FONTE_OK;
}

void
readers_destroy(readers_t **readers_p)
{
    if (readers_p == NULL || *readers_p == NULL)
        return;
    readers_t *r = *readers_p;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->n_threads; i++)
        pthread_join(r->threads[i], NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->threads);
    free(r);
    *readers_p = NULL;
}

void
readers_get(readers_t *r, store_snap_t *snap, const uint64_t *seqs, size_t n,
            void **body, size_t *len, fonte_err *rc, int64_t deadline_us)
{
    batch_t b = { snap, seqs, n, body, len, rc, deadline_us };

    /* too few to share, no pool, or the pool is busy: alone */
    if (r == NULL || n < READERS_MIN ||
        atomic_flag_test_and_set(&r->busy)) {
        for (size_t k = 0; k < n; k += READERS_CHUNK)
            read_range(&b, k, k + READERS_CHUNK < n ? k + READERS_CHUNK : n);
        if (r != NULL && n >= READERS_MIN)
            atomic_fetch_add_explicit(&r->alone, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&r->batches, 1, memory_order_relaxed);

    pthread_mutex_lock(&r->lock);
    r->batch = b;
    atomic_store(&r->next, 0);
    atomic_store(&r->done, 0);
    r->open = true;
    r->gen++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);

    read_chunks(r, &b, false);

    /* the helpers' last chunks */
    int64_t spin_end = fonte_mono_us() + WAIT_SPIN_US;
    while (atomic_load_explicit(&r->done, memory_order_acquire) < n &&
           fonte_mono_us() < spin_end)
        ;
    pthread_mutex_lock(&r->lock);
    while (atomic_load_explicit(&r->done, memory_order_acquire) < n)
        pthread_cond_wait(&r->cond, &r->lock);
    r->open = false;
    while (r->active > 0)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
    atomic_flag_clear(&r->busy);
}

void
readers_counters(readers_t *r, readers_counters_t *out)
{
    out->batches = atomic_load_explicit(&r->batches, memory_order_relaxed);
    out->alone = atomic_load_explicit(&r->alone, memory_order_relaxed);
    out->helped = atomic_load_explicit(&r->helped, memory_order_relaxed);
}
