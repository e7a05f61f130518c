/*
 * sync.h - condition variables on the monotonic clock, so that every
 * timed wait (libfonte's, the listener's) has a deadline that wall-clock
 * jumps cannot stretch.
 * Deadlines are fonte_mono_us() values; a negative deadline waits forever.
 */
#ifndef FONTE_SYNC_H
#define FONTE_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* pthread_cond_init with CLOCK_MONOTONIC. 0 or an errno value. */
int sync_cond_init(pthread_cond_t *cond);

/* One wait on cond (mu held) until deadline_us. False if the deadline had
 * passed (timed out), true otherwise (woken, perhaps spuriously). */
bool sync_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu,
                          int64_t deadline_us);

/* Deadline timeout_ms from now, or -1 for a negative timeout. */
int64_t sync_deadline_ms(int timeout_ms);

#endif
