/*
 * outbox.h - the events a client has published and the listener has not
 * yet acknowledged (design.md §4.1).
 *
 * A ring of encoded events, consecutive producer_seq from head to tail,
 * bounded in events AND bytes. Publishers push at the tail (waiting, up to
 * a deadline, for room); the I/O thread reads items to (re)send them and
 * drops the acknowledged ones from the head. flush waits for the acked
 * watermark to reach a seq.
 *
 * Threads: every function locks the outbox's mutex, except that an item
 * returned by outbox_peek stays valid without the lock until the I/O
 * thread itself acks it: only the I/O thread removes items, and pushes
 * never touch occupied slots. Item fields sent_us is the I/O thread's.
 */
#ifndef FONTE_OUTBOX_H
#define FONTE_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fonte/errors.h"

typedef struct outbox outbox_t;

typedef struct outbox_item {
    uint64_t seq;      /* producer_seq */
    int64_t sent_us;   /* monotonic time of the last send; 0 = never */
    uint8_t *data;     /* topic bytes then body bytes, one allocation */
    uint32_t topic_len;
    uint32_t body_len;
} outbox_item_t;

/* NULL on allocation failure. first_seq: the seq of the first push. */
outbox_t *outbox_new(size_t max_events, size_t max_bytes, uint64_t first_seq);
/* Frees every item. NULL-safe; nulls *ob_p. */
void outbox_destroy(outbox_t **ob_p);

/* Appends an item with the next seq (outbox_next_seq), taking ownership
 * of data (malloc'd) on FONTE_OK. Waits until deadline_us (monotonic;
 * < 0 = forever) for room: FONTE_EFULL then, FONTE_ECLOSED if closed.
 * *wake is set when the I/O thread sleeps and must be woken. */
fonte_err outbox_push(outbox_t *ob, uint8_t *data, uint32_t topic_len,
                      uint32_t body_len, int64_t deadline_us, bool *wake);

/* The seq the next push gets. */
uint64_t outbox_next_seq(outbox_t *ob);

/* Items with seq in [from, until) that exist, at most max, into items[]
 * (borrowed, see the top comment). Returns how many. */
size_t outbox_peek(outbox_t *ob, uint64_t from, uint64_t until,
                   outbox_item_t **items, size_t max);

/* The oldest unacked item or NULL. */
outbox_item_t *outbox_oldest(outbox_t *ob);

/* Drops items with seq <= durable and moves the acked watermark; wakes
 * waiting publishers and flushers. Stale (lower) values are ignored
 * (true). A value beyond the last item pushed changes nothing: false. */
bool outbox_ack(outbox_t *ob, uint64_t durable);

/* The acked watermark. */
uint64_t outbox_acked(outbox_t *ob);

/* Before the I/O thread sleeps: false if items from next_send exist (do
 * not sleep), else records that it sleeps so the next push wakes it. */
bool outbox_arm(outbox_t *ob, uint64_t next_send);

/* Waits until the acked watermark >= seq, or deadline_us (monotonic, < 0 =
 * forever): FONTE_OK, FONTE_ETIMEOUT, FONTE_ECLOSED. */
fonte_err outbox_wait_acked(outbox_t *ob, uint64_t seq, int64_t deadline_us);

/* Wakes every waiter with FONTE_ECLOSED; later pushes fail. */
void outbox_close(outbox_t *ob);

void outbox_usage(outbox_t *ob, uint64_t *events, uint64_t *bytes);

#endif
