/*
 * replay.c - `fonte replay OBJECT`: an object's history in replay order
 * (with its dependencies first, by default), read page by page through
 * libfonte's fetch iterator so a huge history streams instead of being
 * held; or, with --republish, the listener republishes it through the
 * broker and this command follows the replay to its end.
 *
 * Following a republish: a SUB on the egress counts the events carrying
 * the replay's id (on "$replay.<target>." or, without a target, on every
 * topic) and waits for the listener's FINISHED or FAILED on $sys.replay.
 * The SUB is subscribed before the request is sent and we wait (up to
 * 1.5 s) for the first message through it, normally a $sys Stats, so
 * that the subscription is known to have reached the broker. PUB/SUB may
 * still drop under load: if every event was counted but FINISHED was
 * missed, the replay is taken as done after 2 s.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "log.h"
#include "zmqx.h"

static const char usage[] =
    "usage: fonte replay OBJECT [--no-deps] [--dependents] [--order O] "
    "[--after SEQ] [--until SEQ] [--types a,b] [--limit N] [--json]\n"
    "       fonte replay OBJECT --republish [--target SERVICE] [--rate N] "
    "[--reason TEXT]\n"
    "\n"
    "Prints OBJECT's events in replay order (\"*\" = the whole store): the\n"
    "objects it depends on first, then its own, as a table or as JSON\n"
    "lines (--json). With --republish the listener publishes them again\n"
    "through the broker, flagged as a replay, to $replay.<target>.<type>\n"
    "(or on their own topics without --target); the command waits until\n"
    "the replay has finished, showing progress on a terminal.\n";

typedef struct replay_args {
    const char *cmd, *object;
    cli_endpoints_t ep;
    bool json;
    uint64_t limit;
    int64_t timeout_us, wait_us;
    const char *target, *reason;
    uint64_t rate;
} replay_args_t;

static int
not_found(const replay_args_t *a)
{
    cli_error(a->cmd, "no events for object %s (check its name; `fonte "
              "replay '*'` lists the whole store)", a->object);
    return CLI_EXIT_REFUSED;
}

static void
table_header(void)
{
    printf("%-27s  %-24s %-24s %-16s %s\n", "TIME", "TYPE", "OBJECT", "SEQ",
           "PAYLOAD");
}

/* RETURN mode: page after page, printed as they come. */
static int
print_history(const replay_args_t *a, fonte_client_t *c,
              const fonte_fetch_opts_t *fo)
{
    fonte_fetch_iter_t *it = NULL;
    fonte_event_list_t *page = NULL;
    uint64_t printed = 0;
    fonte_err err;
    int rc = CLI_EXIT_OK;

    if ((err = fonte_fetch_iter_new(c, a->object, fo, &it)) != FONTE_OK)
        return cli_query_failed(a->cmd, &a->ep, err, a->timeout_us);
    while (a->limit == 0 || printed < a->limit) {
        if ((err = fonte_fetch_iter_next(it, &page)) != FONTE_OK) {
            rc = err == FONTE_ENOTFOUND
                     ? not_found(a)
                     : cli_query_failed(a->cmd, &a->ep, err, a->timeout_us);
            break;
        }
        if (page == NULL)
            break;
        for (size_t i = 0; i < fonte_event_list_cycles_count(page); i++)
            fprintf(stderr, "fonte %s: note: a dependency cycle was broken "
                    "among %s\n", a->cmd, fonte_event_list_cycle(page, i));
        uint64_t more = fonte_event_list_cycles_omitted(page);
        if (more > 0)
            fprintf(stderr, "fonte %s: note: %llu more dependency cycle%s "
                    "broken, not listed (the listener lists up to 1 MiB of "
                    "their names)\n", a->cmd, (unsigned long long) more,
                    more == 1 ? " was" : "s were");
        size_t n = fonte_event_list_count(page);
        for (size_t i = 0; i < n && (a->limit == 0 || printed < a->limit);
             i++) {
            json_t *j = cli_event_json(fonte_event_list_get(page, i));
            if (j == NULL) {
                cli_error(a->cmd, "out of memory");
                rc = CLI_EXIT_REFUSED;
                break;
            }
            if (a->json) {
                cli_print_json(stdout, j);
            } else {
                if (printed == 0)
                    table_header();
                cli_event_line(stdout, j);
            }
            json_decref(j);
            printed++;
        }
        fonte_event_list_destroy(&page);
        if (rc != CLI_EXIT_OK)
            break;
    }
    fonte_fetch_iter_destroy(&it);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_REFUSED; /* e.g. a closed pipe */
    return rc;
}

static void
progress(uint64_t sent, uint64_t total, int64_t started_us, bool done)
{
    double secs = (double) (fonte_mono_us() - started_us) / 1e6;
    double rate = secs > 0 ? (double) sent / secs : 0;
    char eta[32] = "-";
    if (rate > 0 && total > sent)
        snprintf(eta, sizeof eta, "%.0f s", (double) (total - sent) / rate);
    fprintf(stderr, "\r%llu/%llu event%s  %.0f ev/s  ETA %s   %s",
            (unsigned long long) sent, (unsigned long long) total,
            cli_plural(total), rate, eta, done ? "\n" : "");
}

/* A message on the SUB: counts our replay's events, returns the audit
 * state when it is our FINISHED/FAILED, else -1. */
static int
take_message(void *sub, const char *replay_id, uint64_t *sent,
             uint64_t *duration_us)
{
    zmq_msg_t m[2];
    int n = cli_recv(sub, m, 2);
    int state = -1;

    if (n < 0)
        return -1;
    if (n == 2) {
        codec_frame_t f[2] = {
            { zmq_msg_data(&m[0]), zmq_msg_size(&m[0]) },
            { zmq_msg_data(&m[1]), zmq_msg_size(&m[1]) },
        };
        if (f[0].size == strlen(CODEC_TOPIC_AUDIT) &&
            memcmp(f[0].data, CODEC_TOPIC_AUDIT, f[0].size) == 0) {
            Fonte__ReplayAudit *au = NULL;
            if (codec_audit_decode(f[1].data, f[1].size,
                                   &codec_limits_default, &au) == FONTE_OK) {
                if (strcmp(au->replay_id, replay_id) == 0 &&
                    au->state != FONTE__REPLAY_AUDIT__STATE__STARTED) {
                    state = (int) au->state;
                    *duration_us = au->duration_us;
                }
                fonte__replay_audit__free_unpacked(au, NULL);
            }
        } else if ((f[0].size > 0 && *(const char *) f[0].data != '$') ||
                   (f[0].size > strlen(CODEC_TOPIC_REPLAY) &&
                    memcmp(f[0].data, CODEC_TOPIC_REPLAY,
                           strlen(CODEC_TOPIC_REPLAY)) == 0)) {
            Fonte__Event *ev = NULL;
            if (codec_event_decode(f, 2, &codec_limits_default, &ev) ==
                FONTE_OK) {
                if (ev->replay != NULL &&
                    strcmp(ev->replay->replay_id, replay_id) == 0)
                    (*sent)++;
                codec_event_free(&ev);
            }
        }
    }
    cli_msgs_close(m, n < 2 ? n : 2);
    return state;
}

/* REPUBLISH mode. */
static int
republish(const replay_args_t *a, fonte_client_t *c,
          const fonte_replay_opts_t *ro)
{
    char prefix[CODEC_TOPIC_PREFIX_MAX + 8];
    const char *subs[2] = { "$sys.", prefix };
    void *ctx = zmq_ctx_new(), *sub = NULL;
    fonte_replay_ticket_t t;
    int rc = CLI_EXIT_REFUSED;
    bool tty = isatty(STDERR_FILENO);

    if (a->target[0] != '\0')
        snprintf(prefix, sizeof prefix, "%s%s.", CODEC_TOPIC_REPLAY,
                 a->target);
    else
        prefix[0] = '\0'; /* own topics: everything */
    if (ctx == NULL ||
        (sub = cli_sub(ctx, &a->ep, subs, 2)) == NULL) {
        cli_error(a->cmd, "cannot subscribe to the broker's egress %s "
                  "(--egress, FONTE_EGRESS)", a->ep.egress);
        goto out;
    }
    /* Wait for the subscription to take effect (see the top comment). */
    zmq_pollitem_t pi = { sub, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&pi, 1, 1500) > 0) {
        uint64_t ignored = 0, d = 0;
        take_message(sub, "", &ignored, &d);
    }

    fonte_err err = fonte_request_replay(c, a->object, ro, &t);
    if (err == FONTE_ENOTFOUND) {
        rc = not_found(a);
        goto out;
    }
    if (err != FONTE_OK) {
        rc = cli_query_failed(a->cmd, &a->ep, err, a->timeout_us);
        goto out;
    }
    printf("replay %s: %llu event%s to %s\n", t.replay_id,
           (unsigned long long) t.total, cli_plural(t.total),
           a->target[0] ? a->target : "everyone (on their own topics)");
    if (t.cycles > 0)
        fprintf(stderr, "fonte %s: note: %u dependency cycle%s broken to "
                "order them (fonte replay without --republish names them)\n",
                a->cmd, t.cycles, t.cycles == 1 ? " was" : "s were");
    fflush(stdout);

    int64_t started = fonte_mono_us(), last_move = started, drawn = 0;
    uint64_t sent = 0, duration = 0;
    int state = -1;
    while (state < 0) {
        int64_t now = fonte_mono_us();
        int64_t idle = sent >= t.total ? 2000000 : a->wait_us;
        if (now - last_move > idle) {
            if (sent >= t.total) {
                state = FONTE__REPLAY_AUDIT__STATE__FINISHED;
                duration = (uint64_t) (now - started);
                break;
            }
            if (tty)
                fputc('\n', stderr);
            cli_error(a->cmd, "replay %s made no progress for %.3g s (%llu of "
                      "%llu event%s seen); follow it with `fonte tail "
                      "'$sys.replay'` (--wait)", t.replay_id,
                      (double) a->wait_us / 1e6, (unsigned long long) sent,
                      (unsigned long long) t.total, cli_plural(t.total));
            goto out;
        }
        if (zmq_poll(&pi, 1, 100) > 0) {
            uint64_t before = sent;
            state = take_message(sub, t.replay_id, &sent, &duration);
            if (sent != before)
                last_move = fonte_mono_us();
        }
        if (tty && fonte_mono_us() - drawn > 200000) {
            progress(sent, t.total, started, false);
            drawn = fonte_mono_us();
        }
    }
    if (tty)
        progress(sent, t.total, started, true);
    if (state == FONTE__REPLAY_AUDIT__STATE__FAILED) {
        cli_error(a->cmd, "the listener reports replay %s FAILED; see its "
                  "log", t.replay_id);
        goto out;
    }
    printf("finished: %llu event%s in %.3f s\n",
           (unsigned long long) t.total, cli_plural(t.total),
           (double) duration / 1e6);
    rc = CLI_EXIT_OK;
out:
    if (sub != NULL)
        zmq_close(sub);
    if (ctx != NULL)
        zmqx_ctx_term(ctx);
    return rc;
}

int
cmd_replay(int argc, char **argv)
{
    static const char *const order_choices[] = { "causal", "sequence",
                                                 "objects", NULL };
    replay_args_t a = { .cmd = argv[0], .timeout_us = 10000000,
                        .wait_us = 10000000, .target = NULL, .reason = "" };
    bool no_deps = false, dependents = false, repub = false;
    const char *order = "causal", *types = NULL, *pos[1];
    uint64_t after = 0, until = 0;
    char *types_copy = NULL;
    const char **tv = NULL;
    fonte_client_t *c = NULL;

    cli_endpoints_init(&a.ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(a.ep),
        CLI_CURVE_FLAGS(a.ep),
        { "no-deps", NULL, FLAG_BOOL, &no_deps,
          "only OBJECT itself, not what it depends on", NULL },
        { "dependents", NULL, FLAG_BOOL, &dependents,
          "also the objects that depend on OBJECT", NULL },
        { "order", NULL, FLAG_CHOICE, &order, "replay order (causal)",
          order_choices },
        { "after", NULL, FLAG_UINT, &after, "only events with seq > SEQ",
          NULL },
        { "until", NULL, FLAG_UINT, &until, "only events with seq <= SEQ",
          NULL },
        { "types", NULL, FLAG_STR, &types,
          "only these types, comma-separated (ordering uses all)", NULL },
        { "limit", NULL, FLAG_UINT, &a.limit,
          "stop after N events (0 = no limit)", NULL },
        { "json", NULL, FLAG_BOOL, &a.json, "JSON lines, every field", NULL },
        { "republish", NULL, FLAG_BOOL, &repub,
          "have the listener republish the events instead", NULL },
        { "target", NULL, FLAG_STR, &a.target,
          "republish to this service only ($replay.<target>.<type>)", NULL },
        { "rate", NULL, FLAG_UINT, &a.rate,
          "republish at most N events/s (no limit)", NULL },
        { "reason", NULL, FLAG_STR, &a.reason,
          "why, recorded with the replay", NULL },
        { "timeout", NULL, FLAG_DURATION, &a.timeout_us,
          "wait this long for each answer of the listener (10s)", NULL },
        { "wait", NULL, FLAG_DURATION, &a.wait_us,
          "republish: give up after this long without progress (10s)",
          NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 1, 1, pos, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    a.object = pos[0];
    rc = CLI_EXIT_USAGE;
    if (!repub && (a.target != NULL || a.rate != 0 || a.reason[0] != '\0')) {
        cli_error(a.cmd, "--target, --rate and --reason go with --republish");
        goto out;
    }
    if (repub && (a.limit != 0 || a.json)) {
        cli_error(a.cmd, "--limit and --json print events; with --republish "
                  "the events go to the broker instead");
        goto out;
    }
    if (a.rate > UINT32_MAX) {
        cli_error(a.cmd, "--rate must be at most %u", UINT32_MAX);
        goto out;
    }
    if (a.timeout_us <= 0 || a.wait_us <= 0) {
        cli_error(a.cmd, "--timeout and --wait must be more than 0");
        goto out;
    }
    if (until != 0 && until <= after) {
        cli_error(a.cmd, "--until must be more than --after");
        goto out;
    }
    /* a given --target is a service: an empty one (`--target "$SVC"` with
     * SVC unset) would otherwise replay to everyone, which cannot be
     * taken back */
    if (a.target != NULL &&
        codec_check_producer(a.target, strlen(a.target)) != FONTE_OK) {
        cli_error(a.cmd, "invalid --target '%s': a service name, 1..64 of "
                  "[a-z0-9_-] (leave --target out to replay to everyone)",
                  a.target);
        goto out;
    }
    if (a.target == NULL)
        a.target = "";

    fonte_replay_opts_t ro;
    fonte_replay_opts_init(&ro);
    fonte_fetch_opts_t *fo = &ro.select;
    fo->skip_dependencies = no_deps;
    fo->dependents = dependents;
    fo->after_seq = after;
    fo->until_seq = until;
    fo->order = strcmp(order, "sequence") == 0  ? FONTE_ORDER_SEQUENCE
                : strcmp(order, "objects") == 0 ? FONTE_ORDER_OBJECTS
                                                : FONTE_ORDER_CAUSAL;
    if (a.limit != 0 && a.limit < 1000)
        fo->page_size = (uint32_t) a.limit; /* fetch no more than shown */
    if (types != NULL) {
        /* an empty item ("a,,b", "a,", "") is a typo, not "any type" */
        size_t n = 1, len = strlen(types);
        bool empty = len == 0 || types[0] == ',' || types[len - 1] == ',' ||
                     strstr(types, ",,") != NULL;
        if (empty) {
            cli_error(a.cmd, "--types '%s' has an empty type: list types "
                      "separated by single commas (--types a.b,c.d)", types);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        for (const char *p = types; *p; p++)
            n += *p == ',';
        if ((types_copy = strdup(types)) == NULL ||
            (tv = calloc(n, sizeof *tv)) == NULL) {
            cli_error(a.cmd, "out of memory");
            rc = CLI_EXIT_REFUSED;
            goto out;
        }
        n = 0;
        for (char *save = NULL, *t = strtok_r(types_copy, ",", &save); t;
             t = strtok_r(NULL, ",", &save))
            tv[n++] = t;
        fo->types = tv;
        fo->n_types = n;
    }
    ro.target = a.target;
    ro.rate = (uint32_t) a.rate;
    ro.reason = a.reason;

    if ((rc = cli_client(a.cmd, &a.ep, "cli", a.timeout_us, &c)) !=
        CLI_EXIT_OK)
        goto out;
    rc = repub ? republish(&a, c, &ro) : print_history(&a, c, fo);
out:
    fonte_client_destroy(&c);
    free(tv);
    free(types_copy);
    return rc;
}
