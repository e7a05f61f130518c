/*
 * main.c - fonte-listener: runs the listener actor until SIGINT or
 * SIGTERM, or repairs a data directory with --repair, or checks one with
 * --verify.
 *
 * Signals are blocked before any thread starts and taken with sigwait(),
 * as in fonte-broker; the stop is listener_destroy(), which commits and
 * acks what is queued. Exit codes: 0 after a signal, --help, --version or
 * a successful --repair or a --verify that found the store consistent;
 * 1 when --verify found problems, or the listener cannot start for another
 * reason (the query port taken); 2 for a bad flag or a data directory
 * that is locked, corrupt or unwritable (one line naming it and why), or
 * a failed repair; 3 when a write to the store failed while running (the
 * store then takes no more writes until reopened: store.h), so that a
 * supervisor restarts it once the disk is fixed.
 */
#define _GNU_SOURCE /* CPU_SETSIZE */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "listener.h"
#include "log.h"
#include "readers.h"

static const char usage[] =
    "usage: fonte-listener [flags]\n"
    "\n"
    "Stores every live fonte event it hears on the broker's egress in\n"
    "LevelDB under --data, exactly once per producer session, acks each\n"
    "producer on $ack.<producer> once its events are durable, publishes\n"
    "Stats on $sys.listener and answers status and replay requests on the\n"
    "query endpoint. SIGINT or SIGTERM stops it cleanly (exit 0); a\n"
    "failed write to the store stops it with exit 3 (restart it once the\n"
    "cause is fixed: nothing acknowledged is lost).\n"
    "--repair runs LevelDB's repair on --data and exits. --verify checks\n"
    "every invariant of the store at --data (stop the listener first) and\n"
    "exits 0 if it holds, 1 if not.\n";

/* --verify: opens the store at dir (not creating it), checks it, says
 * what it found. Exit 0 consistent, 1 not, 2 when it cannot be read. */
static int
verify_store(const char *dir)
{
    store_opts_t so;
    store_t *s = NULL;
    store_verify_report_t r;
    char err[1024];

    store_opts_init(&so);
    so.dir = dir;
    so.create = false;
    so.cache_bytes = 0; /* no block cache: every block read is checked */
    int64_t t0 = fonte_mono_us();
    fonte_err rc = store_open(&so, &s, err, sizeof err);
    /* What LevelDB dropped of its log at this open is gone, and the open
     * has rewritten the log: this is the only time it can be told, so it
     * counts as a problem (exit 1) even if what is left is consistent. */
    bool dropped = rc == FONTE_OK && store_open_notes(s) != NULL;
    if (dropped) {
        fprintf(stderr, "fonte-listener: data dir %s: LevelDB dropped part "
                "of its log at open (it is gone now; this is the only "
                "report of it):\n", dir);
        for (const char *p = store_open_notes(s); *p != '\0';) {
            size_t n = strcspn(p, "\n");
            fprintf(stderr, "  %.*s\n", (int) n, p);
            p += n + (p[n] == '\n');
        }
    }
    if (rc == FONTE_OK)
        rc = store_verify(s, &r, err, sizeof err);
    store_close(&s);
    if (rc != FONTE_OK) {
        fprintf(stderr, "fonte-listener: %s\n", err);
        return 2;
    }
    double secs = (double) (fonte_mono_us() - t0) / 1e6;
    if (r.problems == 0 && dropped) {
        fprintf(stderr, "fonte-listener: data dir %s: what is left is "
                "consistent (%llu events), but events acknowledged in the "
                "part dropped are lost, unless it was only the last write "
                "of a listener that crashed (never acknowledged); restore "
                "from a backup if in doubt (%.1f s)\n", dir,
                (unsigned long long) r.events, secs);
        return 1;
    }
    if (r.problems == 0) {
        printf("fonte-listener: data dir %s: consistent: %llu events, %llu "
               "objects, %llu sessions, %llu dependency edges, %llu keys "
               "(%.1f s)\n", dir, (unsigned long long) r.events,
               (unsigned long long) r.objects,
               (unsigned long long) r.sessions,
               (unsigned long long) r.deps, (unsigned long long) r.keys,
               secs);
        return 0;
    }
    fprintf(stderr, "fonte-listener: data dir %s: INCONSISTENT: %llu "
            "problem%s in %llu keys (%.1f s)%s\n", dir,
            (unsigned long long) r.problems, r.problems == 1 ? "" : "s",
            (unsigned long long) r.keys, secs,
            r.problems > STORE_VERIFY_SHOWN ? "; the first ones:" : ":");
    for (uint64_t i = 0; i < r.problems && i < STORE_VERIFY_SHOWN; i++)
        fprintf(stderr, "  %s\n", r.shown[i]);
    return 1;
}

int
main(int argc, char **argv)
{
    static const char *const sync_choices[] = { "batch", "none", NULL };
    listener_opts_t o;
    listener_opts_init(&o);
    const char *sync = "batch", *level = "info", *query_cpu = "none";
    uint64_t batch_max = o.batch_max, queue_max = o.queue_max,
             cache_mb = o.cache_mb, max_closure = o.max_closure,
             max_replay_events = o.max_replay_events,
             workers = o.query_workers,
             read_threads = (uint64_t) o.read_threads;
    bool repair = false, verify = false;
    flog_level lvl;

    const flag_spec_t specs[] = {
        { "egress", "FONTE_EGRESS", FLAG_STR, &o.egress,
          "broker XPUB to subscribe to (tcp://127.0.0.1:7702)", NULL },
        { "ingress", "FONTE_INGRESS", FLAG_STR, &o.ingress,
          "broker XSUB to publish acks and stats into "
          "(tcp://127.0.0.1:7701)", NULL },
        { "query", "FONTE_QUERY", FLAG_STR, &o.query,
          "ROUTER endpoint to bind for queries (tcp://127.0.0.1:7703)",
          NULL },
        { "data", "FONTE_DATA", FLAG_STR, &o.data,
          "data directory (./fonte-data)", NULL },
        { "sync", "FONTE_SYNC", FLAG_CHOICE, &sync,
          "fsync each batch before acking it, or not (batch)", sync_choices },
        { "batch-max", "FONTE_BATCH_MAX", FLAG_UINT, &batch_max,
          "events per WriteBatch (2000)", NULL },
        { "batch-bytes", "FONTE_BATCH_BYTES", FLAG_SIZE, &o.batch_bytes,
          "and their bytes, keys included (4M)", NULL },
        { "batch-delay-us", "FONTE_BATCH_DELAY_US", FLAG_DURATION,
          &o.batch_delay_us,
          "wait this long for a batch to fill: 200 = 200us, or 2ms "
          "(0: none)", NULL },
        { "cache-mb", "FONTE_CACHE_MB", FLAG_UINT, &cache_mb,
          "LevelDB block cache, MiB (8)", NULL },
        { "queue-max", "FONTE_QUEUE_MAX", FLAG_UINT, &queue_max,
          "ingest queue limit, events (100000)", NULL },
        { "queue-bytes", "FONTE_QUEUE_BYTES", FLAG_SIZE, &o.queue_bytes,
          "ingest queue limit, bytes incl. overhead (16M)", NULL },
        { "max-msg", "FONTE_MAX_MSG", FLAG_SIZE, &o.limits.max_msg,
          "largest frame accepted, ZMQ_MAXMSGSIZE (1M)", NULL },
        { "stats-interval", "FONTE_STATS_INTERVAL", FLAG_DURATION,
          &o.stats_interval_us,
          "Stats on $sys.listener every; 0 = never (1s)", NULL },
        { "max-closure", "FONTE_MAX_CLOSURE", FLAG_UINT, &max_closure,
          "objects in one replay's closure (100000)", NULL },
        { "max-replay-events", "FONTE_MAX_REPLAY_EVENTS", FLAG_UINT,
          &max_replay_events,
          "events in one replay; for a streamed whole-store replay, events "
          "waiting at once (10000000)", NULL },
        { "query-workers", "FONTE_QUERY_WORKERS", FLAG_UINT, &workers,
          "threads answering replay requests (4)", NULL },
        { "read-threads", "FONTE_READ_THREADS", FLAG_UINT, &read_threads,
          "helper threads that share a replay's reads of its events, 0 = "
          "none (1)", NULL },
        { "query-spin", "FONTE_QUERY_SPIN", FLAG_DURATION, &o.query_spin_us,
          "after answering a client that asks back to back, wait this "
          "long for its next request without sleeping, 0 = never (500us, "
          "0 with --query-cpu)",
          NULL },
        { "query-cpu", "FONTE_QUERY_CPU", FLAG_STR, &query_cpu,
          "run the query thread and its ZeroMQ I/O thread on this CPU "
          "only, or none (none)", NULL },
        { "repair", NULL, FLAG_BOOL, &repair,
          "run LevelDB's repair on --data, say what it did, exit", NULL },
        { "verify", NULL, FLAG_BOOL, &verify,
          "check the store at --data against its invariants, say what "
          "was found, exit 0 if consistent, 1 if not", NULL },
        { "log-level", "FONTE_LOG_LEVEL", FLAG_CHOICE, &level,
          "log threshold (info)", flog_level_names },
        { "curve-cert", "FONTE_CURVE_CERT", FLAG_STR, &o.curve_cert,
          "CURVE: the listener's certificate, from fonte keygen (none)",
          NULL },
        { "curve-clients", "FONTE_CURVE_CLIENTS", FLAG_STR, &o.curve_clients,
          "CURVE: directory of the public certificates the query endpoint "
          "admits (none)", NULL },
        { "curve-broker", "FONTE_CURVE_BROKER", FLAG_STR, &o.curve_broker,
          "CURVE: the broker's public certificate (none)", NULL },
        { "backup-dir", "FONTE_BACKUP_DIR", FLAG_STR, &o.backup_dir,
          "existing directory where fonte backup NAME makes its copies "
          "(none: backups refused)", NULL },
        { NULL, NULL, FLAG_STR, NULL, NULL, NULL },
    };

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, "fonte-listener", usage, NULL, stdout,
                    stderr));
    if (exit_code >= 0)
        return exit_code;
    if (repair && verify) {
        fprintf(stderr, "fonte-listener: --repair and --verify do not go "
                        "together: verify, then repair if it says so\n");
        return 2;
    }
    if (o.data == NULL || o.data[0] == '\0') {
        fprintf(stderr, "fonte-listener: --data must name a directory\n");
        return 2;
    }
    const struct { const char *flag, *endpoint; bool bind; } eps[] = {
        { "egress", o.egress, false }, { "ingress", o.ingress, false },
        { "query", o.query, true },
    };
    for (size_t i = 0; i < sizeof eps / sizeof *eps && !repair && !verify;
         i++)
        if (!flags_endpoint_ok(eps[i].endpoint, eps[i].bind)) {
            fprintf(stderr, "fonte-listener: --%s=%s is not an endpoint to "
                    "%s: write it like tcp://HOST:PORT with a port of "
                    "1..65535%s, or ipc://PATH\n", eps[i].flag,
                    eps[i].endpoint, eps[i].bind ? "bind" : "connect to",
                    eps[i].bind ? " or *" : "");
            return 2;
        }
    /* each value in its range; the first one out is named */
    const struct { const char *flag; uint64_t v, lo, hi; } ranges[] = {
        { "batch-max", batch_max, 1, 1000000 },
        { "batch-bytes", o.batch_bytes, 1, UINT64_MAX },
        { "queue-max", queue_max, 1, 100000000 },
        { "cache-mb", cache_mb, 0, 1048576 },
        { "queue-bytes", o.queue_bytes, 1, UINT64_MAX },
        /* ZMQ_MAXMSGSIZE is an int64_t: more would be -1, no limit */
        { "max-msg", o.limits.max_msg, 1, INT64_MAX },
        { "max-closure", max_closure, 1, UINT64_MAX },
        { "max-replay-events", max_replay_events, 1, UINT64_MAX },
        { "query-workers", workers, 1, 64 },
        { "read-threads", read_threads, 0, READERS_MAX },
    };
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        if (ranges[i].v >= ranges[i].lo && ranges[i].v <= ranges[i].hi)
            continue;
        if (ranges[i].hi == UINT64_MAX)
            fprintf(stderr, "fonte-listener: --%s must be at least %llu, "
                    "not %llu\n", ranges[i].flag,
                    (unsigned long long) ranges[i].lo,
                    (unsigned long long) ranges[i].v);
        else
            fprintf(stderr, "fonte-listener: --%s must be %llu..%llu, not "
                    "%llu\n", ranges[i].flag,
                    (unsigned long long) ranges[i].lo,
                    (unsigned long long) ranges[i].hi,
                    (unsigned long long) ranges[i].v);
        return 2;
    }
    if (o.query_spin_us > 100000) { /* -1: the default, by --query-cpu */
        fprintf(stderr, "fonte-listener: --query-spin must be 0..100ms\n");
        return 2;
    }
    if (!flags_parse_cpu(query_cpu, &o.query_cpu)) {
        fprintf(stderr, "fonte-listener: --query-cpu must be a CPU number "
                        "(0, 1, ...) or none, not '%s'\n", query_cpu);
        return 2;
    }
    o.max_closure = (size_t) max_closure;
    o.max_replay_events = (size_t) max_replay_events;
    o.query_workers = (size_t) workers;
    o.read_threads = (int) read_threads;
    o.batch_max = (size_t) batch_max;
    o.queue_max = (size_t) queue_max;
    o.cache_mb = (size_t) cache_mb;
    o.sync = strcmp(sync, "batch") == 0;
    if (flog_parse_level(level, &lvl))
        flog_set_level(lvl);

    if (verify)
        return verify_store(o.data);
    if (repair) {
        char msg[1024];
        fonte_err rc = store_repair(o.data, msg, sizeof msg);
        fprintf(rc == FONTE_OK ? stdout : stderr, "fonte-listener: %s\n", msg);
        /* 1: repaired, but something was lost on the way */
        return rc == FONTE_OK ? 0 : rc == FONTE_ELIMIT ? 1 : 2;
    }

    /* SIGUSR1 is how the store's failure reaches sigwait
     * (listener_sigwait): blocked in every thread, like the others */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    o.on_store_failed = listener_store_failed_signal;

    listener_t *l = NULL;
    char err[1024];
    fonte_err rc = listener_new(&o, &l, err, sizeof err);
    if (rc != FONTE_OK) {
        fprintf(stderr, "fonte-listener: %s\n",
                err[0] ? err : fonte_strerror(rc));
        return rc == FONTE_ESTORE || rc == FONTE_EINVAL ? 2 : 1;
    }
    store_counts_t c;
    store_counts(listener_store(l), &c);
    flog(FLOG_INFO, "listener",
         "storing into %s (last_seq %llu, tables read with %s), query on "
         "%s, subscribed to %s",
         o.data, (unsigned long long) c.last_seq, store_table_reads(),
         listener_query_endpoint(l), o.egress);

    int sig = listener_sigwait(l, &stop);
    if (sig == 0) {
        flog(FLOG_ERROR, "listener",
             "stopping: the store at %s failed (%s); exit 3. Restart once "
             "the cause is fixed: nothing acknowledged is lost", o.data,
             store_write_error(listener_store(l)));
        listener_destroy(&l);
        return 3;
    }
    flog(FLOG_INFO, "listener", "%s: stopping", strsignal(sig));
    listener_destroy(&l);
    return 0;
}
