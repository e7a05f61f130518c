/*
 * status.c - `fonte status`: the listener's StatusReply (last_seq,
 * events, objects, sessions, data_dir, store_id, version), as a small
 * table or as one JSON object. A listener that does not answer within --timeout is
 * exit 1 with one line naming the endpoint.
 */
#include <stdio.h>

#include "cli.h"

static const char usage[] =
    "usage: fonte status [--json] [--timeout D]\n"
    "\n"
    "Asks the listener (--query) for its status: the last store sequence\n"
    "number, events, objects, producer sessions, data directory, version.\n";

int
cmd_status(int argc, char **argv)
{
    cli_endpoints_t ep;
    bool json = false;
    int64_t timeout_us = 3000000;
    fonte_client_t *c = NULL;
    fonte_status_t st;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "json", NULL, FLAG_BOOL, &json, "one JSON object", NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "how long to wait for the listener (3s)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 0, 0, NULL, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (timeout_us <= 0) {
        cli_error(argv[0], "--timeout must be more than 0");
        return CLI_EXIT_USAGE;
    }
    if ((rc = cli_client(argv[0], &ep, "cli", timeout_us, &c)) != CLI_EXIT_OK)
        return rc;
    fonte_err err = fonte_status(c, &st);
    fonte_client_destroy(&c);
    if (err != FONTE_OK)
        return cli_query_failed(argv[0], &ep, err, timeout_us);
    if (json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s}",
                              "last_seq", (json_int_t) st.last_seq, "events",
                              (json_int_t) st.events, "objects",
                              (json_int_t) st.objects, "sessions",
                              (json_int_t) st.sessions, "data_dir",
                              st.data_dir, "store_id", st.store_id,
                              "version", st.version, "query", ep.query);
        cli_print_json(stdout, j);
        json_decref(j);
    } else {
        printf("listener  %s\n", ep.query);
        printf("version   %s\n", st.version);
        printf("data_dir  %s\n", st.data_dir);
        printf("store_id  %s\n", st.store_id);
        printf("last_seq  %llu\n", (unsigned long long) st.last_seq);
        printf("events    %llu\n", (unsigned long long) st.events);
        printf("objects   %llu\n", (unsigned long long) st.objects);
        printf("sessions  %llu\n", (unsigned long long) st.sessions);
    }
    return CLI_EXIT_OK;
}
