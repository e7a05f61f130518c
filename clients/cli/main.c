/*
 * main.c - the fonte command: finds the subcommand and runs it.
 *
 * Global flags (--ingress, --egress, --query) may come before the
 * subcommand; they are handed to it as if written after its name, so
 * every command reads them (and FONTE_INGRESS, FONTE_EGRESS, FONTE_QUERY)
 * the same way. Exit codes: 0 success, 1 refused or timed out, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct command {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} commands[] = {
    { "up", cmd_up, "run a broker and a listener in this process" },
    { "publish", cmd_publish, "publish events (flags, or JSON lines on stdin)"
                              " and wait until they are durable" },
    { "replay", cmd_replay, "print an object's history in replay order, or "
                            "republish it" },
    { "tail", cmd_tail, "print the live feed, one line per event" },
    { "top", cmd_top, "live dashboard of the broker's and listener's Stats" },
    { "status", cmd_status, "the listener's status" },
    { "backup", cmd_backup, "copy the listener's store while it runs" },
    { "keygen", cmd_keygen, "write a CURVE key pair (NAME.key, "
                            "NAME.key_secret)" },
};

static void
usage(FILE *out)
{
    fputs("usage: fonte [--ingress E] [--egress E] [--query E] COMMAND "
          "[flags] [args]\n\n"
          "fonte keeps every event, keyed by object, and replays any "
          "object's history.\n\ncommands:\n", out);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fputs("\nglobal flags (before or after the command):\n"
          "  --ingress=E   broker ingress (tcp://127.0.0.1:7701) "
          "[$FONTE_INGRESS]\n"
          "  --egress=E    broker egress (tcp://127.0.0.1:7702) "
          "[$FONTE_EGRESS]\n"
          "  --query=E     listener query endpoint (tcp://127.0.0.1:7703) "
          "[$FONTE_QUERY]\n"
          "  -h, --help, --version\n\n"
          "`fonte COMMAND --help` for a command's flags. Exit codes: 0 "
          "success, 1 refused or timed out, 2 usage error.\n", out);
}

static bool
is_global(const char *a, bool *takes_value)
{
    static const char *const names[] = { "--ingress", "--egress", "--query" };
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(a, names[i], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
            *takes_value = a[n] == '\0';
            return true;
        }
    }
    return false;
}

int
main(int argc, char **argv)
{
    int i = 1;
    bool takes;

    /* Leading global flags, then the command. */
    while (i < argc && is_global(argv[i], &takes))
        i += takes ? 2 : 1;
    if (i > argc) {
        fprintf(stderr, "fonte: flag %s needs a value (try fonte --help)\n",
                argv[argc - 1]);
        return CLI_EXIT_USAGE;
    }
    if (i == argc) {
        fprintf(stderr, "fonte: which command? up, publish, replay, tail, "
                        "top, status, backup or keygen (try fonte --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
        strcmp(argv[i], "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[i], "--version") == 0) {
        printf("fonte %s\n", FONTE_VERSION);
        return CLI_EXIT_OK;
    }
    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            cmd = &commands[k];
    if (cmd == NULL) {
        fprintf(stderr, "fonte: unknown %s '%s'; the commands are up, "
                        "publish, replay, tail, top, status, backup, keygen "
                        "(try fonte --help)\n",
                argv[i][0] == '-' ? "flag" : "command", argv[i]);
        return CLI_EXIT_USAGE;
    }

    /* argv for the command: its name, the global flags, its own. */
    char **av = malloc(((size_t) argc + 1) * sizeof *av);
    if (av == NULL) {
        fprintf(stderr, "fonte: out of memory\n");
        return CLI_EXIT_REFUSED;
    }
    int n = 0;
    av[n++] = argv[i];
    for (int k = 1; k < i; k++)
        av[n++] = argv[k];
    for (int k = i + 1; k < argc; k++)
        av[n++] = argv[k];
    av[n] = NULL;
    int rc = cmd->fn(n, av);
    free(av);
    return rc;
}
