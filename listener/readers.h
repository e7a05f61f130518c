/*
 * readers.h - point reads of many events at once, shared with helper
 * threads.
 *
 * A replay of one object reads each of its events with a LevelDB get:
 * 300 gets are 300-700 us of CPU on one thread, most of a replay's
 * latency. LevelDB's reads are thread-safe, so the caller and the pool's
 * helper threads can share them: each claims the next READERS_CHUNK
 * indexes of the array until none is left, and the caller returns once
 * every index has been read. The caller always reads too, so a helper
 * that is slow to wake (a halted vCPU takes tens of microseconds) costs
 * nothing but its share: a pool whose helpers never wake reads at the
 * speed of one thread.
 *
 * One batch at a time: a caller that finds the pool busy (another
 * replay reading) reads its batch alone. A batch's result does not
 * depend on who read which index.
 *
 * Invariants (readers.c):
 *  - a helper joins a batch only while it is open, under the lock, and
 *    counts itself in `active`; readers_get closes its batch and waits
 *    for active == 0 before it returns, so no helper touches the
 *    caller's arrays afterwards;
 *  - each index is claimed exactly once (one atomic counter), and
 *    `done` counts indexes read; the caller returns when done == n.
 */
#ifndef FONTE_READERS_H
#define FONTE_READERS_H

#include <stddef.h>
#include <stdint.h>

#include "fonte/errors.h"
#include "store.h"

#define READERS_MAX 16 /* helper threads, at most */
#define READERS_MIN 16 /* fewer gets are read alone, uncounted: a helper's
                          wake-up would cost more than its share */

typedef struct readers readers_t;

/* Starts n helper threads (1 to READERS_MAX). FONTE_OK, FONTE_EINVAL for
 * n out of range, FONTE_ENOMEM or FONTE_EIO (a thread would not start). */
fonte_err readers_new(int n, readers_t **readers_p);

/* Stops and joins the helpers. NULL-safe; *readers_p becomes NULL. */
void readers_destroy(readers_t **readers_p);

/* Reads events seqs[0..n) of snap (store_get_event) into body[i] and
 * len[i], rc[i] its result (FONTE_OK, FONTE_ENOTFOUND, FONTE_ESTORE), on
 * this thread and the pool's idle helpers (readers may be NULL: this
 * thread alone). Bodies are the caller's, to free with store_free.
 * deadline_us: 0, or a fonte_mono_us() time after which what is not yet
 * read is not read: rc[i] FONTE_ETIMEOUT, body[i] NULL (each reader looks
 * at the clock before each chunk of 8, so a caller with a deadline, the
 * query thread, is held past it by one chunk's gets at most). */
void readers_get(readers_t *readers, store_snap_t *snap,
                 const uint64_t *seqs, size_t n, void **body, size_t *len,
                 fonte_err *rc, int64_t deadline_us);

/* Counters since start (relaxed). */
typedef struct readers_counters {
    uint64_t batches;  /* batches shared with the helpers */
    uint64_t alone;    /* batches read alone: the pool was busy */
    uint64_t helped;   /* events the helpers read */
} readers_counters_t;

void readers_counters(readers_t *readers, readers_counters_t *out);

#endif
