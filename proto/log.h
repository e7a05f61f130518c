/*
 * log.h - one-line logging to stderr for fonte's daemons and tools.
 *
 * A line is "<ISO time> <level> <part>: <message>", written with one
 * fprintf so concurrent threads never interleave within a line. The
 * process-wide level is set once at start (--log-level); reading it is a
 * relaxed atomic load, so logging is safe from any thread.
 *
 * flog_limited() is for the hot path: a message that may repeat
 * thousands of times a second (an invalid message, a full queue) is
 * printed at most once per second per limiter, with the number it
 * suppressed in between.
 */
#ifndef FONTE_LOG_H
#define FONTE_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum flog_level {
    FLOG_ERROR = 0,
    FLOG_WARN,
    FLOG_INFO,
    FLOG_DEBUG,
} flog_level;

void flog_set_level(flog_level level);
flog_level flog_get_level(void);

/* "error", "warn", "info", "debug" -> level. False if unknown. */
bool flog_parse_level(const char *s, flog_level *level);

/* The levels' names by flog_level, NULL-terminated (a flag's choices). */
extern const char *const flog_level_names[];

#if defined(__GNUC__)
#define FLOG_PRINTF_(a, b) __attribute__((format(printf, a, b)))
#else
#define FLOG_PRINTF_(a, b)
#endif

void flog(flog_level level, const char *part, const char *fmt, ...)
    FLOG_PRINTF_(3, 4);

/* State of one rate-limited message; zero-initialise. Not shared between
 * threads without a lock of the caller's. */
typedef struct flog_limiter {
    int64_t last_us;
    uint64_t suppressed;
} flog_limiter_t;

void flog_limited(flog_limiter_t *lim, flog_level level, const char *part,
                  const char *fmt, ...) FLOG_PRINTF_(4, 5);

/* Monotonic and wall clocks, microseconds. */
int64_t fonte_mono_us(void);
int64_t fonte_wall_us(void);

#endif
