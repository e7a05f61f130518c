/*
 * outbox.c - the bounded ring of unacknowledged events (see outbox.h).
 *
 * The ring holds max_events slots; slot i % cap holds the item of seq
 * head_seq + k. Room is counted in events and in bytes; a single event
 * larger than max_bytes is admitted into an empty outbox so that it can
 * never wait forever.
 */
#include "outbox.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

#include "sync.h"

struct outbox {
    pthread_mutex_t mu;
    pthread_cond_t room;    /* signalled when items leave */
    pthread_cond_t acked_cv; /* signalled when the watermark moves */
    outbox_item_t *ring;
    size_t cap, max_bytes;
    size_t count, bytes;
    uint64_t head_seq;      /* seq of the oldest item (== acked + 1) */
    uint64_t acked;         /* highest acked seq */
    bool io_sleeping;
    bool closed;
};

static outbox_item_t *
slot(outbox_t *ob, uint64_t seq)
{
    return &ob->ring[seq % ob->cap];
}

outbox_t *
outbox_new(size_t max_events, size_t max_bytes, uint64_t first_seq)
{
    outbox_t *ob;

    if (max_events == 0 || first_seq == 0 ||
        (ob = calloc(1, sizeof *ob)) == NULL)
        return NULL;
    ob->ring = calloc(max_events, sizeof *ob->ring);
    if (ob->ring == NULL) {
        free(ob);
        return NULL;
    }
    ob->cap = max_events;
    ob->max_bytes = max_bytes;
    ob->head_seq = first_seq;
    ob->acked = first_seq - 1;
    pthread_mutex_init(&ob->mu, NULL);
    if (sync_cond_init(&ob->room) != 0 ||
        sync_cond_init(&ob->acked_cv) != 0) {
        free(ob->ring);
        free(ob);
        return NULL;
    }
    return ob;
}

void
outbox_destroy(outbox_t **ob_p)
{
    outbox_t *ob = ob_p ? *ob_p : NULL;

    if (ob == NULL)
        return;
    for (size_t i = 0; i < ob->count; i++)
        free(slot(ob, ob->head_seq + i)->data);
    pthread_cond_destroy(&ob->room);
    pthread_cond_destroy(&ob->acked_cv);
    pthread_mutex_destroy(&ob->mu);
    free(ob->ring);
    free(ob);
    *ob_p = NULL;
}

static bool
has_room(const outbox_t *ob, size_t size)
{
    if (ob->count == ob->cap)
        return false;
    return ob->count == 0 || ob->bytes + size <= ob->max_bytes;
}

fonte_err
outbox_push(outbox_t *ob, uint8_t *data, uint32_t topic_len,
            uint32_t body_len, int64_t deadline_us, bool *wake)
{
    size_t size = (size_t) topic_len + body_len;

    *wake = false;
    pthread_mutex_lock(&ob->mu);
    while (!ob->closed && !has_room(ob, size)) {
        if (!sync_cond_wait_until(&ob->room, &ob->mu, deadline_us) &&
            !has_room(ob, size)) {
            pthread_mutex_unlock(&ob->mu);
            return FONTE_EFULL;
        }
    }
    if (ob->closed) {
        pthread_mutex_unlock(&ob->mu);
        return FONTE_ECLOSED;
    }
    outbox_item_t *it = slot(ob, ob->head_seq + ob->count);
    it->seq = ob->head_seq + ob->count;
    it->sent_us = 0;
    it->data = data;
    it->topic_len = topic_len;
    it->body_len = body_len;
    ob->count++;
    ob->bytes += size;
    if (ob->io_sleeping) {
        ob->io_sleeping = false;
        *wake = true;
    }
    pthread_mutex_unlock(&ob->mu);
    return FONTE_OK;
}

uint64_t
outbox_next_seq(outbox_t *ob)
{
    pthread_mutex_lock(&ob->mu);
    uint64_t next = ob->head_seq + ob->count;
    pthread_mutex_unlock(&ob->mu);
    return next;
}

size_t
outbox_peek(outbox_t *ob, uint64_t from, uint64_t until,
            outbox_item_t **items, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&ob->mu);
    uint64_t tail = ob->head_seq + ob->count;
    if (from < ob->head_seq)
        from = ob->head_seq;
    if (until > tail)
        until = tail;
    for (uint64_t s = from; s < until && n < max; s++)
        items[n++] = slot(ob, s);
    pthread_mutex_unlock(&ob->mu);
    return n;
}

outbox_item_t *
outbox_oldest(outbox_t *ob)
{
    pthread_mutex_lock(&ob->mu);
    outbox_item_t *it = ob->count > 0 ? slot(ob, ob->head_seq) : NULL;
    pthread_mutex_unlock(&ob->mu);
    return it;
}

bool
outbox_ack(outbox_t *ob, uint64_t durable)
{
    pthread_mutex_lock(&ob->mu);
    if (durable <= ob->acked) {
        pthread_mutex_unlock(&ob->mu);
        return true;
    }
    /* An Ack beyond what was pushed cannot come from a listener that
     * stored this session's events: taken, it would drop events never
     * stored and break the run of seqs the listener expects. */
    if (durable >= ob->head_seq + ob->count) {
        pthread_mutex_unlock(&ob->mu);
        return false;
    }
    while (ob->count > 0 && ob->head_seq <= durable) {
        outbox_item_t *it = slot(ob, ob->head_seq);
        assert(it->seq == ob->head_seq);
        ob->bytes -= (size_t) it->topic_len + it->body_len;
        free(it->data);
        it->data = NULL;
        ob->head_seq++;
        ob->count--;
    }
    ob->acked = durable;
    pthread_cond_broadcast(&ob->room);
    pthread_cond_broadcast(&ob->acked_cv);
    pthread_mutex_unlock(&ob->mu);
    return true;
}

uint64_t
outbox_acked(outbox_t *ob)
{
    pthread_mutex_lock(&ob->mu);
    uint64_t a = ob->acked;
    pthread_mutex_unlock(&ob->mu);
    return a;
}

bool
outbox_arm(outbox_t *ob, uint64_t next_send)
{
    pthread_mutex_lock(&ob->mu);
    bool idle = ob->head_seq + ob->count <= next_send;
    ob->io_sleeping = idle;
    pthread_mutex_unlock(&ob->mu);
    return idle;
}

fonte_err
outbox_wait_acked(outbox_t *ob, uint64_t seq, int64_t deadline_us)
{
    fonte_err rc = FONTE_OK;

    pthread_mutex_lock(&ob->mu);
    while (ob->acked < seq) {
        if (ob->closed) {
            rc = FONTE_ECLOSED;
            break;
        }
        if (!sync_cond_wait_until(&ob->acked_cv, &ob->mu, deadline_us) &&
            ob->acked < seq) {
            rc = FONTE_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&ob->mu);
    return rc;
}

void
outbox_close(outbox_t *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->closed = true;
    pthread_cond_broadcast(&ob->room);
    pthread_cond_broadcast(&ob->acked_cv);
    pthread_mutex_unlock(&ob->mu);
}

void
outbox_usage(outbox_t *ob, uint64_t *events, uint64_t *bytes)
{
    pthread_mutex_lock(&ob->mu);
    *events = ob->count;
    *bytes = ob->bytes;
    pthread_mutex_unlock(&ob->mu);
}
