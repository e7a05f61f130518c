/*
 * util.c - reporting and measuring helpers for fonte-bench (bench.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void
bench_report(const char *metric, double value, const char *unit,
             double baseline)
{
    printf("%s %.1f %s baseline=%.1f ratio=%.3f\n", metric, value, unit,
           baseline, baseline > 0 ? value / baseline : 0.0);
    fflush(stdout);
}

void
bench_report_absolute(const char *metric, double value, const char *unit)
{
    printf("%s %.1f %s baseline=none ratio=none\n", metric, value, unit);
    fflush(stdout);
}

double
bench_peak_rss_mb(int pid)
{
    char path[64], line[256];
    double mb = -1;

    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/status", pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            mb = strtod(line + 6, NULL) / 1024.0;
    fclose(f);
    return mb;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

double
bench_percentile(double *v, size_t n, double pct)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t) (pct / 100.0 * (double) (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}
