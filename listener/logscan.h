/*
 * logscan.h - the events (after, hi] of a snapshot's log, read ahead on a
 * thread of their own.
 *
 * A streamed replay of the whole store spends about as long reading the
 * log from LevelDB (iterating, decompressing blocks) as on everything
 * else it does per event (ordering, writing pages). A log scanner moves
 * the reading to a thread of its own, which copies events into batches
 * a bounded distance ahead of the reader (LOGSCAN_BATCHES of about
 * LOGSCAN_BATCH_BYTES), so the two halves run at once on two CPUs.
 * Without a thread (threaded false, no slot free, or the thread could
 * not start) the same batches are filled in the caller as they are
 * needed: the events and errors are the same either way.
 *
 * Threads: one thread at a time calls logscan_next, logscan_park,
 * logscan_resume and logscan_destroy; the scanner's own thread touches
 * only its iterator and the batch queue.
 */
#ifndef FONTE_LOGSCAN_H
#define FONTE_LOGSCAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fonte/errors.h"
#include "store.h"

#define LOGSCAN_BATCHES 4
#define LOGSCAN_BATCH_BYTES ((size_t) 256 << 10)

typedef struct logscan logscan_t;

/* Reads (after, hi] of snap's log (hi > after). The iterator is made
 * here, in the caller. With threaded, a thread is started if *slots > 0
 * (one is taken, and given back by logscan_destroy); stopping, when set,
 * makes the scanner give up (FONTE_ECLOSED). snap must outlive the
 * scanner. FONTE_ENOMEM, or the store's error for the iterator. */
fonte_err logscan_new(store_snap_t *snap, uint64_t after, uint64_t hi,
                      bool threaded, atomic_int *slots,
                      const atomic_bool *stopping, logscan_t **scan_p);

/* The next event of the log, in seq order: FONTE_OK and *item, whose
 * bytes are good until the next call (or destroy). FONTE_ENOTFOUND when
 * the log ended before hi (an event is missing: the caller names it) or
 * after hi was read,
 * FONTE_ESTORE on a read error, FONTE_ECLOSED when stopping, FONTE_ENOMEM;
 * an error is sticky. */
fonte_err logscan_next(logscan_t *scan, store_item_t *item);

/* True if a thread of its own reads ahead. */
bool logscan_threaded(const logscan_t *scan);

/* True while there is log left to read (no last batch made yet, no
 * error). */
bool logscan_reading(logscan_t *scan);

/* Stops the thread, if there is one, and gives its slot back (within
 * one batch's read), keeping the batches it read: the events go on the
 * same, read in the caller from then on. For a reader that has gone
 * idle. */
void logscan_park(logscan_t *scan);

/* Starts a thread again if *slots > 0 (taking one) and the scan has not
 * ended; it reads on after what is queued. True if a thread reads
 * ahead now. */
bool logscan_resume(logscan_t *scan, atomic_int *slots);

/* Stops and joins the thread (it stops within one batch), frees all. */
void logscan_destroy(logscan_t **scan_p);

#endif
