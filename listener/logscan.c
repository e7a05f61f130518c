/*
 * logscan.c - the log read ahead on a thread of its own (logscan.h).
 *
 * A batch is events copied back to back as [seq: 8][len: 4][bytes],
 * LOGSCAN_BATCH_BYTES of room (more if one event needs it), each
 * batch at least one event. Batches go through a queue of at most
 * LOGSCAN_BATCHES, under lock: the scanner waits on `room` while it is
 * full, the reader on `ready` while it is empty. The reader keeps the
 * batch it reads from (`cur`) until it needs the next one, which is why
 * an item's bytes are good until the next call; then its buffer goes
 * back to the scanner (`spare`) to be filled again.
 *
 * The end of the scan - hi reached, the log ended early, a read error,
 * stopping - is the batch flagged `last`, carrying the code the reader
 * gets once its events are read (FONTE_OK: hi was reached, and a call
 * after that says FONTE_ENOTFOUND). After it the thread is gone, and
 * nothing else is queued.
 *
 * Parking (logscan_park) stops the thread but keeps what it read: the
 * scanner queues the batch it was filling, then exits; the reader takes
 * the queued batches first and fills the next ones itself, in order, so
 * the events are the same. logscan_resume starts a thread again, which
 * queues after what is already queued.
 *
 * Invariants: only the scanner thread (or, without one, the reader)
 * touches `it`; the queue, `spare`, `stop`, `park` and `ended` are under
 * `lock`; `stop`, set by destroy, is seen by the scanner before it fills
 * or queues another batch; `park` before it fills another; the thread is
 * joined before the iterator is destroyed or used by the reader, and
 * before the slot it took is given back; once a `last` batch is made
 * (`ended`), nothing is filled again.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "logscan.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

#define REC_HEAD 12 /* seq, len */

typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    size_t pos; /* the reader's place in it */
    bool last;  /* the scan ends after it, with code rc */
    fonte_err rc;
} batch_t;

struct logscan {
    store_iter_t *it;
    uint64_t hi; /* the last seq to read */
    const atomic_bool *stopping;
    atomic_int *slots; /* a slot was taken from it (threaded) */
    bool threaded, done;

    pthread_mutex_t lock;
    pthread_cond_t room, ready;
    batch_t q[LOGSCAN_BATCHES]; /* the queue: q[head .. head + n) */
    size_t head, n;
    bool stop;
    bool park;  /* the scanner is to exit, its batches kept */
    bool ended; /* the `last` batch was made */
    pthread_t thread;

    uint8_t *spare;  /* a read batch's buffer, for the scanner to reuse */
    size_t spare_cap;
    batch_t cur;     /* the reader's */
    fonte_err sticky; /* the reader's error, once it had one */
};

static void
batch_free(batch_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* Room for n more bytes, and at least a batch's; false when out of
 * memory. */
static bool
batch_room(batch_t *b, size_t n)
{
    size_t need = b->len + n;
    return grow((void **) &b->buf, &b->cap,
                need > LOGSCAN_BATCH_BYTES ? need : LOGSCAN_BATCH_BYTES, 1);
}

/* Fills b (emptied first) with the next events, up to about a batch of
 * bytes; at the end of the scan b is `last`, with its code. */
static void
fill(logscan_t *s, batch_t *b)
{
    store_item_t item;

    b->len = b->pos = 0;
    b->last = false;
    b->rc = FONTE_OK;
    if (s->stopping != NULL && atomic_load(s->stopping)) {
        b->last = true;
        b->rc = FONTE_ECLOSED;
        return;
    }
    while (b->len < LOGSCAN_BATCH_BYTES) {
        if (!store_iter_next(s->it, &item)) {
            b->last = true;
            b->rc = store_iter_error(s->it);
            if (b->rc == FONTE_OK)
                b->rc = FONTE_ENOTFOUND; /* the log ended before hi */
            return;
        }
        uint32_t len = (uint32_t) item.value.len;
        if (!batch_room(b, REC_HEAD + len)) {
            b->last = true;
            b->rc = FONTE_ENOMEM;
            return;
        }
        uint8_t *p = b->buf + b->len;
        memcpy(p, &item.seq, 8);
        memcpy(p + 8, &len, 4);
        memcpy(p + REC_HEAD, item.value.ptr, len);
        b->len += REC_HEAD + len;
        if (item.seq >= s->hi) {
            b->last = true; /* rc FONTE_OK: hi reached */
            return;
        }
    }
}

static void *
scan_main(void *arg)
{
    logscan_t *s = arg;
    bool last = false;

    pthread_setname_np(pthread_self(), "fonte-logscan");
    while (!last) {
        batch_t b = { 0 };
        pthread_mutex_lock(&s->lock);
        while (s->n == LOGSCAN_BATCHES && !s->stop && !s->park)
            pthread_cond_wait(&s->room, &s->lock);
        bool stop = s->stop || s->park;
        b.buf = s->spare; /* a buffer the reader is done with, if any */
        b.cap = s->spare_cap;
        s->spare = NULL;
        s->spare_cap = 0;
        pthread_mutex_unlock(&s->lock);
        if (stop) {
            batch_free(&b);
            break;
        }
        fill(s, &b);
        last = b.last;
        pthread_mutex_lock(&s->lock);
        if (s->stop) {
            batch_free(&b);
            last = true;
        } else {
            /* room: only this thread queues, and it waited for room */
            s->q[(s->head + s->n) % LOGSCAN_BATCHES] = b;
            s->n++;
            s->ended = last;
            last = last || s->park; /* parked: what it read is kept */
            pthread_cond_signal(&s->ready);
        }
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

fonte_err
logscan_new(store_snap_t *snap, uint64_t after, uint64_t hi, bool threaded,
            atomic_int *slots, const atomic_bool *stopping,
            logscan_t **scan_p)
{
    logscan_t *s = calloc(1, sizeof *s);
    fonte_err rc;

    *scan_p = NULL;
    if (s == NULL)
        return FONTE_ENOMEM;
    if ((rc = store_iter_events(snap, after, &s->it)) != FONTE_OK) {
        free(s);
        return rc;
    }
    s->hi = hi;
    s->stopping = stopping;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->room, NULL);
    pthread_cond_init(&s->ready, NULL);
    if (threaded)
        logscan_resume(s, slots);
    *scan_p = s;
    return FONTE_OK;
}

bool
logscan_reading(logscan_t *s)
{
    pthread_mutex_lock(&s->lock); /* the scanner sets `ended` */
    bool ended = s->ended;
    pthread_mutex_unlock(&s->lock);
    return !ended && s->sticky == FONTE_OK;
}

bool
logscan_resume(logscan_t *s, atomic_int *slots)
{
    if (s->threaded || slots == NULL || s->ended || s->sticky != FONTE_OK)
        return s->threaded;
    if (atomic_fetch_sub(slots, 1) > 0) {
        s->slots = slots;
        s->park = false;
        s->threaded = pthread_create(&s->thread, NULL, scan_main, s) == 0;
    }
    if (!s->threaded) {
        atomic_fetch_add(slots, 1);
        s->slots = NULL;
    }
    return s->threaded;
}

void
logscan_park(logscan_t *s)
{
    if (!s->threaded)
        return;
    pthread_mutex_lock(&s->lock);
    s->park = true;
    pthread_cond_signal(&s->room);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    atomic_fetch_add(s->slots, 1);
    s->slots = NULL;
    s->threaded = false;
}

bool
logscan_threaded(const logscan_t *s)
{
    return s->threaded;
}

/* The next batch into s->cur: from the queue, or filled here. */
static void
next_batch(logscan_t *s)
{
    if (!s->threaded && s->n == 0) { /* no thread: nothing else touches s */
        fill(s, &s->cur);
        s->ended = s->cur.last;
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->spare == NULL) { /* its buffer goes back to the scanner */
        s->spare = s->cur.buf;
        s->spare_cap = s->cur.cap;
        s->cur.buf = NULL;
    }
    batch_free(&s->cur);
    while (s->n == 0)
        pthread_cond_wait(&s->ready, &s->lock);
    s->cur = s->q[s->head];
    s->q[s->head] = (batch_t) { 0 };
    s->head = (s->head + 1) % LOGSCAN_BATCHES;
    s->n--;
    pthread_cond_signal(&s->room);
    pthread_mutex_unlock(&s->lock);
}

fonte_err
logscan_next(logscan_t *s, store_item_t *item)
{
    memset(item, 0, sizeof *item);
    if (s->sticky != FONTE_OK)
        return s->sticky;
    while (s->cur.pos >= s->cur.len) {
        if (s->done) /* the last batch is read: its code */
            return s->sticky = s->cur.rc != FONTE_OK ? s->cur.rc
                                                     : FONTE_ENOTFOUND;
        next_batch(s);
        s->done = s->cur.last;
    }
    const uint8_t *p = s->cur.buf + s->cur.pos;
    uint32_t len;
    memcpy(&item->seq, p, 8);
    memcpy(&len, p + 8, 4);
    item->value.ptr = (const char *) p + REC_HEAD;
    item->value.len = len;
    s->cur.pos += REC_HEAD + len;
    return FONTE_OK;
}

void
logscan_destroy(logscan_t **scan_p)
{
    logscan_t *s = *scan_p;
    if (s == NULL)
        return;
    *scan_p = NULL;
    if (s->threaded) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->room);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        atomic_fetch_add(s->slots, 1);
    }
    for (size_t i = 0; i < s->n; i++)
        batch_free(&s->q[(s->head + i) % LOGSCAN_BATCHES]);
    batch_free(&s->cur);
    free(s->spare);
    store_iter_destroy(&s->it);
    pthread_cond_destroy(&s->ready);
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
