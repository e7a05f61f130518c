/*
 * testutil_fs.c - temporary directories, and this process's threads as
 * /proc shows them, for tests (testutil.h).
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb, (void) flag, (void) ftw;
    return remove(path);
}

void
tu_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int
tu_threads_named(const char *comm, const char *cpus, int *on_cpus)
{
    char path[300], line[256];
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *t;

    if (on_cpus != NULL)
        *on_cpus = 0;
    if (d == NULL)
        return -1;
    while ((t = readdir(d)) != NULL) {
        if (t->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", t->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* the thread ended meanwhile */
        int named = fgets(line, sizeof line, f) != NULL &&
                    strncmp(line, comm, strlen(comm)) == 0 &&
                    line[strlen(comm)] == '\n';
        fclose(f);
        if (!named)
            continue;
        n++;
        if (cpus == NULL || on_cpus == NULL)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", t->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        while (fgets(line, sizeof line, f) != NULL)
            if (strncmp(line, "Cpus_allowed_list:\t", 19) == 0) {
                line[strcspn(line, "\n")] = '\0';
                *on_cpus += strcmp(line + 19, cpus) == 0;
            }
        fclose(f);
    }
    closedir(d);
    return n;
}

int
tu_fsize_cap(unsigned long long bytes, struct rlimit *was)
{
    struct rlimit cap;
    if (getrlimit(RLIMIT_FSIZE, was) != 0)
        return -1;
    cap = *was;
    cap.rlim_cur = (rlim_t) bytes;
    signal(SIGXFSZ, SIG_IGN);
    return setrlimit(RLIMIT_FSIZE, &cap);
}

int
tu_fsize_restore(const struct rlimit *was)
{
    return setrlimit(RLIMIT_FSIZE, was);
}

long
tu_thread_cpu_ms(const char *comm)
{
    char path[300], line[512];
    long ms = -1;
    int found = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *t;

    if (d == NULL)
        return -1;
    while ((t = readdir(d)) != NULL) {
        if (t->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", t->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        char *got = fgets(line, sizeof line, f);
        fclose(f);
        /* pid (comm) state ... : utime and stime are fields 14 and 15,
         * counted after the comm's closing parenthesis */
        char *open = got ? strchr(line, '(') : NULL;
        char *close = got ? strrchr(line, ')') : NULL;
        if (open == NULL || close == NULL ||
            (size_t) (close - open - 1) != strlen(comm) ||
            strncmp(open + 1, comm, strlen(comm)) != 0)
            continue;
        unsigned long ut = 0, st = 0;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                              "%*u %lu %lu", &ut, &st) != 2)
            continue;
        found++;
        ms = (long) ((ut + st) * 1000 / (unsigned long) sysconf(_SC_CLK_TCK));
    }
    closedir(d);
    return found == 1 ? ms : -1;
}
