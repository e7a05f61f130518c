/*
 * main.c - fonte-bench: runs the benchmarks of design.md §10.
 *
 *     fonte-bench [--quick] [NAME ...]     (no NAME: all of them)
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>

#include "bench.h"
#include "log.h"

#define BENCH_DECL_(name, help) int bench_##name(const bench_ctx_t *ctx);
#define BENCHES(X) \
    X(broker, "broker_throughput: fonte-broker vs plain zmq_proxy") \
    X(ingest, "ingest_throughput: durable acked ingest vs raw LevelDB") \
    X(publish, "publish_confirmed and publish_ack_p99_us: one producer through broker and listener") \
    X(replay, "replay_object_p50_us (default, --query-cpu, its ZeroMQ floor, through libfonte), the machine's two-thread speedup and replay_all_throughput vs raw LevelDB reads")

BENCHES(BENCH_DECL_)

static const struct {
    const char *name;
    bench_fn fn;
    const char *help;
} benches[] = {
#define BENCH_ROW_(name, help) { #name, bench_##name, help },
    BENCHES(BENCH_ROW_)
};
static const size_t n_benches = sizeof benches / sizeof *benches;

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb, (void) flag, (void) ftw;
    return remove(path);
}

static int
usage(FILE *out, int code)
{
    fprintf(out, "usage: fonte-bench [--quick] [NAME ...]\n\n"
                 "Runs fonte's benchmarks; each prints lines of the form\n"
                 "  <metric> <value> <unit> baseline=<value> ratio=<r>\n"
                 "with a baseline measured in the same run.\n\nbenchmarks:\n");
    for (size_t i = 0; i < n_benches; i++)
        fprintf(out, "  %-10s %s\n", benches[i].name, benches[i].help);
    return code;
}

int
main(int argc, char **argv)
{
    bench_ctx_t ctx = { 0 };
    const char *names[64];
    size_t n_names = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            ctx.quick = true;
        else if (strcmp(argv[i], "--help") == 0)
            return usage(stdout, 0);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "fonte-bench: unknown flag '%s' (try --help)\n",
                    argv[i]);
            return 2;
        } else if (n_names < 64)
            names[n_names++] = argv[i];
    }
    for (size_t j = 0; j < n_names; j++) {
        size_t i = 0;
        while (i < n_benches && strcmp(benches[i].name, names[j]) != 0)
            i++;
        if (i == n_benches) {
            fprintf(stderr, "fonte-bench: no benchmark '%s' (try --help)\n",
                    names[j]);
            return 2;
        }
    }

    char tmpl[] = "/tmp/fonte-bench-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "fonte-bench: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    ctx.tmpdir = tmpl;
    flog_level lvl = FLOG_WARN;
    const char *env_level = getenv("FONTE_LOG_LEVEL");
    if (env_level != NULL && !flog_parse_level(env_level, &lvl)) {
        fprintf(stderr, "fonte-bench: $FONTE_LOG_LEVEL=%s is not error, "
                        "warn, info or debug\n", env_level);
        return 2;
    }
    flog_set_level(lvl);

    int rc = 0;
    for (size_t i = 0; i < n_benches; i++) {
        bool run = n_names == 0;
        for (size_t j = 0; j < n_names && !run; j++)
            run = strcmp(benches[i].name, names[j]) == 0;
        if (run && benches[i].fn(&ctx) != 0) {
            fprintf(stderr, "fonte-bench: %s failed\n", benches[i].name);
            rc = 1;
        }
    }
    nftw(tmpl, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
