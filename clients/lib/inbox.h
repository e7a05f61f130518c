/*
 * inbox.h - received events waiting for fonte_dispatch.
 *
 * A bounded FIFO of fonte_event_t pointers between the I/O thread (the
 * only producer) and the dispatching thread, bounded in events and in
 * bytes (each event counted at its encoded size: one event larger than
 * the byte bound still goes in when the inbox is empty). When it is full
 * the newest event is dropped and counted: live delivery is at most once, and a
 * handler that falls behind must never stall the client's Acks.
 * All functions are thread-safe.
 */
#ifndef FONTE_INBOX_H
#define FONTE_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fonte/fonte.h"

typedef struct inbox inbox_t;

inbox_t *inbox_new(size_t max, size_t max_bytes);
/* Frees the queued events. NULL-safe; nulls *ib_p. */
void inbox_destroy(inbox_t **ib_p);

/* Queues e, of `bytes` encoded bytes (taking ownership); false if full
 * (e is destroyed). */
bool inbox_push(inbox_t *ib, fonte_event_t *e, size_t bytes);

/* Waits until deadline_us (monotonic; < 0 forever) for an event, then
 * moves up to max queued events into out[] (ownership passes). Returns
 * how many (0 on timeout). */
size_t inbox_take(inbox_t *ib, int64_t deadline_us, fonte_event_t **out,
                  size_t max);

/* Events queued and dropped so far, read together (a handler may already
 * be running an event that is counted: never one that is not). */
void inbox_counts(inbox_t *ib, uint64_t *queued, uint64_t *dropped);

#endif
