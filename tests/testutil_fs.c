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
