/*
 * sync.c - monotonic-clock condition variables (see sync.h).
 */
#include "sync.h"

#include <errno.h>
#include <time.h>

#include "log.h"

int
sync_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc;

    if ((rc = pthread_condattr_init(&attr)) != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

bool
sync_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu,
                     int64_t deadline_us)
{
    if (deadline_us < 0) {
        pthread_cond_wait(cond, mu);
        return true;
    }
    if (fonte_mono_us() >= deadline_us)
        return false;
    struct timespec ts = { (time_t) (deadline_us / 1000000),
                           (long) (deadline_us % 1000000) * 1000 };
    return pthread_cond_timedwait(cond, mu, &ts) != ETIMEDOUT ||
           fonte_mono_us() < deadline_us;
}

int64_t
sync_deadline_ms(int timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    return fonte_mono_us() + (int64_t) timeout_ms * 1000;
}
