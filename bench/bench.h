/*
 * bench.h - fonte-bench's harness.
 *
 * Benchmarks are programs, not tests (design.md §10). Each measures its
 * own baseline in the same run, because absolute numbers on a shared
 * 2-core machine are noise, and prints one line per figure:
 *
 *     <metric> <value> <unit> baseline=<value> ratio=<value/baseline>
 *
 * A benchmark is a function registered in main.c's table; it returns 0 on
 * success, non-zero (after a line on stderr) when it could not run.
 */
#ifndef FONTE_BENCH_H
#define FONTE_BENCH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bench_ctx {
    bool quick;          /* --quick: a size that finishes in seconds */
    const char *tmpdir;  /* a scratch directory for this run, removed after */
} bench_ctx_t;

typedef int (*bench_fn)(const bench_ctx_t *ctx);

/* Prints "<metric> <value> <unit> baseline=<b> ratio=<value/b>". */
void bench_report(const char *metric, double value, const char *unit,
                  double baseline);

/* For figures without a baseline (a latency goal, a memory peak):
 * "<metric> <value> <unit> baseline=none ratio=none". */
void bench_report_absolute(const char *metric, double value,
                           const char *unit);

/* Peak resident set of this process (VmHWM), MiB; or of process pid. */
double bench_peak_rss_mb(int pid);

/* Waits until the files in dir (names and sizes) have not changed for a
 * second - LevelDB's background compactions there are done - or 120 s
 * have passed. Returns the seconds waited. */
double bench_settle_dir(const char *dir);

/* Percentile (0..100) of n values; sorts v in place. */
double bench_percentile(double *v, size_t n, double pct);

#endif
