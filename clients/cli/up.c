/*
 * up.c - `fonte up`: a broker and a listener in one process, the embedded
 * default for development, tests and small deployments.
 *
 * The broker binds ingress and egress; the listener connects to the
 * addresses the broker actually bound (so "tcp://127.0.0.1:*" works) and
 * binds the query endpoint. Once both run, the endpoints are printed one
 * per line, then "ready", and stdout is flushed: a script can wait for
 * that line. SIGINT and SIGTERM are blocked before any thread starts and
 * taken with sigwait(), as the daemons do; the stop commits and acks what
 * the listener had queued, then stops the broker (about a second at most).
 *
 * Exit codes: 0 after a signal; 1 when an endpoint cannot be bound; 2 for
 * a usage error or a data directory that is locked, corrupt or unwritable;
 * 3 when a write to the store failed while running (listener_sigwait
 * returns 0; the store takes no more writes until reopened: store.h).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "listener.h"
#include "log.h"

static const char usage[] =
    "usage: fonte up [--data DIR] [--ingress E] [--egress E] [--query E]\n"
    "                [--curve-cert FILE --curve-clients DIR]\n"
    "\n"
    "Runs a broker (ingress, egress) and a listener (query, storing into\n"
    "--data) in this process. Prints the endpoints, then \"ready\".\n"
    "With --curve-cert and --curve-clients every endpoint is CURVE: only\n"
    "the keys of the public certificates in DIR get in.\n"
    "Ctrl-C or SIGTERM stops it cleanly (exit 0). A failed write to the\n"
    "store stops it with exit 3: restart it once the cause is fixed.\n";

static const char endpoint_hint[] = "; write endpoints like tcp://HOST:PORT";

static const char bind_hint[] =
    "is another fonte up, broker or listener running? choose free ports "
    "with --ingress, --egress, --query";
static const char host_hint[] =
    "bind to an address or interface of this machine (127.0.0.1, 0.0.0.0, "
    "eth0) or *";

/* The hint for a bind that failed with err: a port in use, or a host
 * that is not this machine's (ZeroMQ says ENODEV for a name it cannot
 * use as an interface, EADDRNOTAVAIL for an address of another host);
 * none for anything else. */
static void
bind_error(const char *cmd, const char *err, fonte_err rc)
{
    const char *m = err[0] ? err : fonte_strerror(rc);
    if (strstr(m, "No such device") || strstr(m, "assign requested address"))
        cli_error(cmd, "%s; %s", m, host_hint);
    else if (strstr(m, "in use"))
        cli_error(cmd, "%s; %s", m, bind_hint);
    else
        cli_error(cmd, "%s", m);
}

int
cmd_up(int argc, char **argv)
{
    static const char *const sync_choices[] = { "batch", "none", NULL };
    cli_endpoints_t ep;
    const char *data = LISTENER_DATA_DEFAULT, *sync = "batch",
               *level = "warn", *curve_cert = NULL, *curve_clients = NULL,
               *query_cpu = "none", *backup_dir = NULL;
    int cpu = -1;
    int64_t stats_us = 1000000, spin_us = -1; /* listener.h */
    broker_t *b = NULL;
    listener_t *l = NULL;
    char err[1024];
    flog_level lvl;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        { "data", "FONTE_DATA", FLAG_STR, &data,
          "the listener's data directory (./fonte-data)", NULL },
        { "sync", "FONTE_SYNC", FLAG_CHOICE, &sync,
          "fsync each batch before acking it, or not (batch)", sync_choices },
        { "stats-interval", "FONTE_STATS_INTERVAL", FLAG_DURATION, &stats_us,
          "Stats on $sys.broker and $sys.listener every; 0 = never (1s)",
          NULL },
        { "log-level", "FONTE_LOG_LEVEL", FLAG_CHOICE, &level,
          "log threshold, logs go to stderr (warn)", flog_level_names },
        { "query-cpu", "FONTE_QUERY_CPU", FLAG_STR, &query_cpu,
          "run the listener's query thread and its ZeroMQ I/O thread on "
          "this CPU only, or none (none)", NULL },
        { "query-spin", "FONTE_QUERY_SPIN", FLAG_DURATION, &spin_us,
          "after answering a client that asks back to back, wait this "
          "long for its next request without sleeping, 0 = never (500us, "
          "0 with --query-cpu)",
          NULL },
        { "backup-dir", "FONTE_BACKUP_DIR", FLAG_STR, &backup_dir,
          "existing directory where fonte backup NAME makes its copies "
          "(none)", NULL },
        { "curve-cert", "FONTE_CURVE_CERT", FLAG_STR, &curve_cert,
          "CURVE certificate of the broker and listener, from fonte keygen "
          "(none)", NULL },
        { "curve-clients", "FONTE_CURVE_CLIENTS", FLAG_STR, &curve_clients,
          "directory of the public certificates admitted (none)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 0, 0, NULL, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if ((rc = cli_check_endpoints(argv[0], &ep, CLI_EP_ALL | CLI_EP_BIND)) !=
        CLI_EXIT_OK)
        return rc;
    if (!flags_parse_cpu(query_cpu, &cpu)) {
        cli_error(argv[0], "--query-cpu must be a CPU number (0, 1, ...) or "
                  "none, not '%s'", query_cpu);
        return CLI_EXIT_USAGE;
    }
    if (spin_us > 100000) {
        cli_error(argv[0], "--query-spin must be 0..100ms");
        return CLI_EXIT_USAGE;
    }
    if ((curve_cert == NULL) != (curve_clients == NULL)) {
        cli_error(argv[0], "--curve-cert and --curve-clients go together "
                  "(try --help)");
        return CLI_EXIT_USAGE;
    }
    if (flog_parse_level(level, &lvl))
        flog_set_level(lvl);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGUSR1); /* the store failed (listener_sigwait) */
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    broker_opts_t bo;
    broker_opts_init(&bo);
    bo.ingress = ep.ingress;
    bo.egress = ep.egress;
    bo.stats_interval_us = stats_us;
    bo.curve_cert = curve_cert;
    bo.curve_clients = curve_clients;
    bo.curve_listener = curve_cert; /* the listener uses the same pair */
    err[0] = '\0';
    fonte_err frc = broker_new(&bo, &b, err, sizeof err);
    if (frc != FONTE_OK) {
        if (frc == FONTE_EINVAL)
            cli_error(argv[0], "%s%s", err[0] ? err : fonte_strerror(frc),
                      strstr(err, "endpoint") ? endpoint_hint : "");
        else
            bind_error(argv[0], err, frc);
        return frc == FONTE_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_REFUSED;
    }

    listener_opts_t lo;
    listener_opts_init(&lo);
    lo.egress = broker_egress_endpoint(b);
    lo.ingress = broker_ingress_endpoint(b);
    lo.query = ep.query;
    lo.data = data;
    lo.sync = strcmp(sync, "batch") == 0;
    lo.on_store_failed = listener_store_failed_signal;
    lo.stats_interval_us = stats_us;
    lo.query_cpu = cpu;
    lo.query_spin_us = spin_us;
    lo.backup_dir = backup_dir;
    /* the listener is a client of this broker with the same key pair,
     * which the broker admits as its own */
    lo.curve_cert = curve_cert;
    lo.curve_broker = curve_cert;
    lo.curve_clients = curve_clients;
    err[0] = '\0';
    frc = listener_new(&lo, &l, err, sizeof err);
    if (frc != FONTE_OK) {
        if (frc == FONTE_ESTORE)
            cli_error(argv[0], "%s", err[0] ? err : fonte_strerror(frc));
        else if (frc == FONTE_EINVAL)
            cli_error(argv[0], "%s%s", err[0] ? err : fonte_strerror(frc),
                      strstr(err, "endpoint") ? endpoint_hint : "");
        else
            bind_error(argv[0], err, frc);
        broker_destroy(&b);
        return frc == FONTE_ESTORE || frc == FONTE_EINVAL ? CLI_EXIT_USAGE
                                                          : CLI_EXIT_REFUSED;
    }

    printf("ingress %s\negress %s\nquery %s\ndata %s\nready\n",
           broker_ingress_endpoint(b), broker_egress_endpoint(b),
           listener_query_endpoint(l), data);
    fflush(stdout);

    int sig = listener_sigwait(l, &stop);
    if (sig == 0)
        cli_error(argv[0], "the store at %s failed (%s): stopped. Restart "
                  "once the cause is fixed: nothing acknowledged is lost",
                  data, store_write_error(listener_store(l)));
    else
        flog(FLOG_INFO, "up", "%s: stopping", strsignal(sig));
    listener_destroy(&l);
    broker_destroy(&b);
    return sig == 0 ? CLI_EXIT_STORE_FAILED : CLI_EXIT_OK;
}
