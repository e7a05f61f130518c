/*
 * main.c - fonte-broker: runs the broker actor until SIGINT or SIGTERM.
 *
 * The signals are blocked before any thread starts (so every thread,
 * ZeroMQ's included, inherits the mask) and taken synchronously with
 * sigwait(): no handler, no race, and shutdown is broker_destroy(), which
 * returns within a second. Exit codes: 0 after a signal (or --help,
 * --version), 1 when the broker cannot start (a port taken), 2 for a bad
 * flag or option value.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "flags.h"
#include "log.h"

static const char usage[] =
    "usage: fonte-broker [flags]\n"
    "\n"
    "Routes fonte events from publishers (PUB sockets connected to the\n"
    "ingress) to subscribers (SUB sockets connected to the egress),\n"
    "validating each one, and publishes its Stats on $sys.broker.\n"
    "SIGINT or SIGTERM stops it (exit 0).\n";

int
main(int argc, char **argv)
{
    static const char *const validate_choices[] = { "full", "frames", NULL };
    broker_opts_t o;
    broker_opts_init(&o);
    uint64_t hwm = (uint64_t) o.hwm;
    const char *validate = "full", *level = "info";
    flog_level lvl;

    const flag_spec_t specs[] = {
        { "ingress", "FONTE_INGRESS", FLAG_STR, &o.ingress,
          "XSUB endpoint publishers connect to (tcp://127.0.0.1:7701)", NULL },
        { "egress", "FONTE_EGRESS", FLAG_STR, &o.egress,
          "XPUB endpoint subscribers connect to (tcp://127.0.0.1:7702)",
          NULL },
        { "max-msg", "FONTE_MAX_MSG", FLAG_SIZE, &o.limits.max_msg,
          "largest frame accepted, ZMQ_MAXMSGSIZE (1M)", NULL },
        { "hwm", "FONTE_HWM", FLAG_UINT, &hwm,
          "queue limit per peer, in messages; 0 = none (100000)", NULL },
        { "validate", "FONTE_VALIDATE", FLAG_CHOICE, &validate,
          "how much of each message is checked (full)",
          validate_choices },
        { "stats-interval", "FONTE_STATS_INTERVAL", FLAG_DURATION,
          &o.stats_interval_us, "Stats on $sys.broker every; 0 = never (1s)",
          NULL },
        { "log-level", "FONTE_LOG_LEVEL", FLAG_CHOICE, &level,
          "log threshold (info)", flog_level_names },
        { "curve-cert", "FONTE_CURVE_CERT", FLAG_STR, &o.curve_cert,
          "CURVE: the broker's certificate, from fonte keygen (none)", NULL },
        { "curve-clients", "FONTE_CURVE_CLIENTS", FLAG_STR, &o.curve_clients,
          "CURVE: directory of the public certificates admitted, with "
          "--curve-cert (none)", NULL },
        { "curve-listener", "FONTE_CURVE_LISTENER", FLAG_STR,
          &o.curve_listener, "CURVE: the listener's public certificate; "
          "Acks and replays are then taken from it only (none: from any "
          "admitted key)", NULL },
        { NULL, NULL, FLAG_STR, NULL, NULL, NULL },
    };

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, "fonte-broker", usage, NULL, stdout,
                    stderr));
    if (exit_code >= 0)
        return exit_code;
    const struct { const char *flag, *endpoint; } eps[] = {
        { "ingress", o.ingress }, { "egress", o.egress },
    };
    for (size_t i = 0; i < sizeof eps / sizeof *eps; i++)
        if (!flags_endpoint_ok(eps[i].endpoint, true)) {
            fprintf(stderr, "fonte-broker: --%s=%s is not an endpoint to "
                    "bind: write it like tcp://HOST:PORT with a port of "
                    "1..65535 or *, or ipc://PATH\n", eps[i].flag,
                    eps[i].endpoint);
            return 2;
        }
    if (hwm > INT_MAX) {
        fprintf(stderr, "fonte-broker: --hwm=%llu is over %d\n",
                (unsigned long long) hwm, INT_MAX);
        return 2;
    }
    if (o.limits.max_msg == 0) {
        fprintf(stderr, "fonte-broker: --max-msg must be at least 1\n");
        return 2;
    }
    o.hwm = (int) hwm;
    o.validate_full = strcmp(validate, "full") == 0;
    if (flog_parse_level(level, &lvl))
        flog_set_level(lvl);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    broker_t *b = NULL;
    char err[512];
    fonte_err rc = broker_new(&o, &b, err, sizeof err);
    if (rc != FONTE_OK) {
        fprintf(stderr, "fonte-broker: %s\n",
                err[0] ? err : fonte_strerror(rc));
        return rc == FONTE_EINVAL ? 2 : 1;
    }

    int sig = 0;
    sigwait(&stop, &sig);
    flog(FLOG_INFO, "broker", "%s: stopping", strsignal(sig));
    broker_destroy(&b);
    return 0;
}
