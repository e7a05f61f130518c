/*
 * log.c - see log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int current_level = FLOG_INFO;
const char *const flog_level_names[] = { "error", "warn", "info", "debug",
                                          NULL };

void
flog_set_level(flog_level level)
{
    atomic_store_explicit(&current_level, (int) level, memory_order_relaxed);
}

flog_level
flog_get_level(void)
{
    return (flog_level) atomic_load_explicit(&current_level,
                                             memory_order_relaxed);
}

bool
flog_parse_level(const char *s, flog_level *level)
{
    for (int i = 0; i <= FLOG_DEBUG; i++) {
        if (strcmp(s, flog_level_names[i]) == 0) {
            *level = (flog_level) i;
            return true;
        }
    }
    return false;
}

int64_t
fonte_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
fonte_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void vlog(flog_level level, const char *part, const char *suffix,
                 const char *fmt, va_list ap) FLOG_PRINTF_(4, 0);

static void
vlog(flog_level level, const char *part, const char *suffix, const char *fmt,
     va_list ap)
{
    char msg[1024], when[32];
    struct timespec ts;
    struct tm tm;

    vsnprintf(msg, sizeof msg, fmt, ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s %s: %s%s\n", when, ts.tv_nsec / 1000000,
            flog_level_names[level], part, msg, suffix);
}

void
flog(flog_level level, const char *part, const char *fmt, ...)
{
    va_list ap;

    if ((int) level > (int) flog_get_level())
        return;
    va_start(ap, fmt);
    vlog(level, part, "", fmt, ap);
    va_end(ap);
}

void
flog_limited(flog_limiter_t *lim, flog_level level, const char *part,
             const char *fmt, ...)
{
    va_list ap;
    char suffix[64] = "";

    if ((int) level > (int) flog_get_level())
        return;
    int64_t now = fonte_mono_us();
    if (lim->last_us != 0 && now - lim->last_us < 1000000) {
        lim->suppressed++;
        return;
    }
    if (lim->suppressed > 0)
        snprintf(suffix, sizeof suffix, " (%llu more suppressed)",
                 (unsigned long long) lim->suppressed);
    lim->last_us = now;
    lim->suppressed = 0;
    va_start(ap, fmt);
    vlog(level, part, suffix, fmt, ap);
    va_end(ap);
}
