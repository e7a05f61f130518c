/*
 * tail.c - `fonte tail [PREFIX]`: the live feed from the broker's egress,
 * one line per message, or one JSON object per line with --json.
 *
 * A raw SUB and the codec rather than libfonte: the feed includes fonte's
 * own "$" topics on request, which libfonte never hands to handlers.
 * What is shown: events (and replays) whose topic starts with PREFIX;
 * the $sys. topics (Stats, ReplayAudit, decoded to JSON) only with --sys
 * or when PREFIX itself starts with "$"; Acks only when PREFIX starts with
 * "$". Messages that fail the codec's checks are skipped and counted on
 * stderr at exit. Live delivery is at most once (a slow terminal loses
 * messages at the broker's HWM); the store has everything.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "log.h"
#include "zmqx.h"

static const char usage[] =
    "usage: fonte tail [PREFIX] [--json] [--count N [--timeout D]] [--sys]\n"
    "\n"
    "Prints the live feed from the broker's egress: every event whose topic\n"
    "(its type) starts with PREFIX, one line each (time, topic, object,\n"
    "producer/seq, payload), or JSON lines with --json. --sys adds fonte's\n"
    "own $sys. topics (Stats, replay audits) as JSON. Ctrl-C stops it;\n"
    "--count N exits 0 after N lines, or 1 if they have not all come\n"
    "within --timeout.\n";

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
    (void) sig;
    stopping = 1;
}

/* Prints one message; returns true if a line was printed. */
static bool
show(const codec_frame_t *f, bool json, bool sys, bool dollar, uint64_t *bad)
{
    char topic[512], now[40];
    json_t *j = NULL;
    size_t tn = f[0].size < sizeof topic - 1 ? f[0].size : sizeof topic - 1;
    codec_class_t cls;

    memcpy(topic, f[0].data, tn);
    topic[tn] = '\0';
    if (codec_topic_class(f[0].data, f[0].size, &codec_limits_default,
                          &cls) != FONTE_OK) {
        (*bad)++;
        return false;
    }
    switch (cls) {
    case CODEC_EVENT:
    case CODEC_REPLAY: {
        Fonte__Event *ev = NULL;
        if (codec_event_decode(f, 2, &codec_limits_default, &ev) != FONTE_OK)
            break;
        j = cli_event_json_pb(ev, topic);
        codec_event_free(&ev);
        if (j != NULL && !json) {
            cli_event_line(stdout, j);
            json_decref(j);
            return true;
        }
        break;
    }
    case CODEC_STATS:
    case CODEC_AUDIT:
        if (!sys && !dollar)
            return false;
        if (cls == CODEC_STATS) {
            Fonte__Stats *s = NULL;
            if (codec_stats_decode(f[1].data, f[1].size, &codec_limits_default,
                                   &s) != FONTE_OK)
                break;
            j = cli_stats_json(s, topic);
            fonte__stats__free_unpacked(s, NULL);
        } else {
            Fonte__ReplayAudit *a = NULL;
            if (codec_audit_decode(f[1].data, f[1].size, &codec_limits_default,
                                   &a) != FONTE_OK)
                break;
            j = cli_audit_json(a, topic);
            fonte__replay_audit__free_unpacked(a, NULL);
        }
        break;
    case CODEC_ACK: {
        if (!dollar)
            return false;
        Fonte__Ack *a = NULL;
        if (codec_ack_decode(f[1].data, f[1].size, &codec_limits_default,
                             &a) != FONTE_OK)
            break;
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long) a->session);
        j = json_pack("{s:s, s:s, s:s, s:I, s:b}", "topic", topic,
                      "producer", a->producer, "session", hex, "durable_seq",
                      (json_int_t) a->durable_seq, "gap", a->gap);
        fonte__ack__free_unpacked(a, NULL);
        break;
    }
    }
    if (j == NULL) {
        (*bad)++;
        return false;
    }
    if (!json) {
        cli_format_time(fonte_wall_us(), now, sizeof now);
        fprintf(stdout, "%s  ", now);
    }
    cli_print_json(stdout, j);
    json_decref(j);
    return true;
}

int
cmd_tail(int argc, char **argv)
{
    cli_endpoints_t ep;
    bool json = false, sys = false;
    uint64_t count = 0, lines = 0, bad = 0;
    int64_t timeout_us = 0;
    const char *pos[1] = { "" };
    int n_pos = 0;
    void *ctx = NULL, *sub = NULL;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "json", NULL, FLAG_BOOL, &json, "one JSON object per line", NULL },
        { "count", NULL, FLAG_UINT, &count, "exit after N lines (0 = never)",
          NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "with --count: exit 1 if the N lines have not come by then "
          "(0 = wait)", NULL },
        { "sys", NULL, FLAG_BOOL, &sys,
          "also fonte's $sys. topics: Stats and replay audits", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 0, 1, pos, &n_pos);
    if (rc != CLI_CONTINUE)
        return rc;
    const char *prefix = pos[0];
    bool dollar = prefix[0] == '$';
    const char *subs[2] = { prefix, CODEC_TOPIC_SYS };
    size_t n_subs = sys && strncmp(prefix, CODEC_TOPIC_SYS,
                                   strlen(CODEC_TOPIC_SYS)) != 0 &&
                            prefix[0] != '\0' ? 2 : 1;

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);

    if ((rc = cli_feed_open(argv[0], &ep, timeout_us, count, subs, n_subs,
                            &ctx, &sub)) != CLI_EXIT_OK)
        return rc;
    int64_t deadline = timeout_us > 0 ? fonte_mono_us() + timeout_us : 0;
    while (!stopping && (count == 0 || lines < count)) {
        long wait_ms = 500;
        if (deadline != 0) {
            int64_t left = deadline - fonte_mono_us();
            if (left <= 0) {
                char d[32];
                cli_format_duration(timeout_us, d, sizeof d);
                cli_error(argv[0], "%llu of %llu line%s within %s; is the "
                          "broker at %s sending any? (--egress, --timeout)",
                          (unsigned long long) lines,
                          (unsigned long long) count, cli_plural(count), d,
                          ep.egress);
                rc = CLI_EXIT_REFUSED;
                break;
            }
            if (left / 1000 + 1 < wait_ms)
                wait_ms = (long) (left / 1000 + 1);
        }
        zmq_pollitem_t pi = { sub, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&pi, 1, wait_ms) <= 0)
            continue;
        zmq_msg_t m[2];
        int n = cli_recv(sub, m, 2);
        if (n < 0)
            continue;
        if (n == 2) {
            codec_frame_t f[2] = {
                { zmq_msg_data(&m[0]), zmq_msg_size(&m[0]) },
                { zmq_msg_data(&m[1]), zmq_msg_size(&m[1]) },
            };
            if (show(f, json, sys, dollar, &bad)) {
                lines++;
                if (fflush(stdout) != 0)
                    stopping = 1; /* the reader went away */
            }
        } else {
            bad++;
        }
        cli_msgs_close(m, n < 2 ? n : 2);
    }
    if (bad > 0)
        fprintf(stderr, "fonte %s: skipped %llu malformed message%s\n",
                argv[0], (unsigned long long) bad, cli_plural(bad));
    if (sub != NULL)
        zmq_close(sub);
    if (ctx != NULL)
        zmqx_ctx_term(ctx);
    return rc;
}
