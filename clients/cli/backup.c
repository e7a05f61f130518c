/*
 * backup.c - `fonte backup NAME`: asks the listener for a consistent copy
 * of its store, made while it runs, as NAME under its --backup-dir
 * (docs/operations.md, "Backups"), through libfonte's fonte_backup: sent
 * once (a second one would find the name taken) and waited for up to
 * --timeout. A status request goes first, with a short timeout of its
 * own (PROBE_US): a copy can take minutes, so the backup's wait is long,
 * and a listener that is not there should not cost that long to find out.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define PROBE_US 5000000 /* a live listener answers a status in ms */

static const char usage[] =
    "usage: fonte backup NAME [--timeout D] [--json]\n"
    "\n"
    "Asks the listener (--query) to copy its whole store, as it is now,\n"
    "into a new directory NAME under its --backup-dir, while it goes on\n"
    "storing. The copy is a store of its own: fonte-listener --data opens\n"
    "it. NAME: 1..64 of [a-z0-9_-]; an existing one is refused.\n";

int
cmd_backup(int argc, char **argv)
{
    cli_endpoints_t ep;
    bool json = false;
    int64_t timeout_us = 600000000; /* a big store takes minutes */
    const char *name = NULL;
    fonte_client_t *c = NULL;
    fonte_backup_info_t b;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "json", NULL, FLAG_BOOL, &json, "one JSON object", NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "how long to wait for the copy (10m)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 1, 1, &name, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (timeout_us <= 0) {
        cli_error(argv[0], "--timeout must be more than 0");
        return CLI_EXIT_USAGE;
    }
    if (codec_check_producer(name, strlen(name)) != FONTE_OK) {
        cli_error(argv[0], "'%s' is not a backup name: use 1..64 of "
                  "[a-z0-9_-]", name);
        return CLI_EXIT_USAGE;
    }
    int64_t probe_us = timeout_us < PROBE_US ? timeout_us : PROBE_US;
    if ((rc = cli_client(argv[0], &ep, "cli", probe_us, &c)) != CLI_EXIT_OK)
        return rc;
    fonte_status_t st;
    fonte_err err = fonte_status(c, &st);
    fonte_client_destroy(&c);
    if (err != FONTE_OK)
        return cli_query_failed(argv[0], &ep, err, probe_us);
    if ((rc = cli_client(argv[0], &ep, "cli", timeout_us, &c)) != CLI_EXIT_OK)
        return rc;
    err = fonte_backup(c, name, &b);
    fonte_client_destroy(&c);
    if (err == FONTE_EREQUEST || err == FONTE_EUNAVAILABLE ||
        err == FONTE_EINTERNAL) {
        cli_error(argv[0], "the listener at %s refused: %s", ep.query,
                  b.error[0] ? b.error : fonte_strerror(err));
        return err == FONTE_EREQUEST ? CLI_EXIT_USAGE : CLI_EXIT_REFUSED;
    }
    if (err != FONTE_OK)
        return cli_query_failed(argv[0], &ep, err, timeout_us);
    if (json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I}", "path", b.path,
                              "keys", (json_int_t) b.keys, "bytes",
                              (json_int_t) b.bytes, "last_seq",
                              (json_int_t) b.last_seq, "duration_us",
                              (json_int_t) b.duration_us);
        cli_print_json(stdout, j);
        json_decref(j);
    } else {
        printf("backup    %s\nlast_seq  %llu\nkeys      %llu\nbytes     "
               "%llu (keys and values, before compression)\ntook      "
               "%.1f s\n", b.path, (unsigned long long) b.last_seq,
               (unsigned long long) b.keys, (unsigned long long) b.bytes,
               (double) b.duration_us / 1e6);
    }
    return CLI_EXIT_OK;
}
