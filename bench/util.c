/*
 * util.c - reporting and measuring helpers for fonte-bench (bench.h).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"
#include "hash.h"
#include "log.h"

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

/* A digest of dir's entries: names and sizes. */
static uint64_t
dir_digest(const char *dir)
{
    uint64_t h = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    struct stat st;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        uint64_t size = stat(path, &st) == 0 ? (uint64_t) st.st_size : 0;
        /* order-free: entries are summed */
        h += fonte_fnv1a(e->d_name, strlen(e->d_name), FONTE_FNV_BASIS ^ size);
    }
    closedir(d);
    return h;
}

double
bench_settle_dir(const char *dir)
{
    int64_t t0 = fonte_mono_us(), quiet_since = t0;
    uint64_t last = dir_digest(dir);

    while (fonte_mono_us() - t0 < 120 * 1000000LL) {
        struct timespec ts = { 0, 250 * 1000000L };
        nanosleep(&ts, NULL);
        uint64_t now = dir_digest(dir);
        if (now != last) {
            last = now;
            quiet_since = fonte_mono_us();
        } else if (fonte_mono_us() - quiet_since >= 1000000) {
            break;
        }
    }
    return (double) (fonte_mono_us() - t0) / 1e6;
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
