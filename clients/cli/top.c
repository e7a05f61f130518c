/*
 * top.c - `fonte top`: a live dashboard from the Stats the broker and
 * the listener publish every second ($sys.broker, $sys.listener) and the
 * replay audits ($sys.replay), read through a raw SUB on the egress.
 *
 * Rates come from counter deltas between two consecutive Stats of one
 * source divided by the difference of their uptime_us, so they are exact
 * whatever the refresh and the network delay: events/s is the sum of the
 * broker's per-topic deltas over the non-"$" topics (its top 20 topics;
 * see docs/operations.md), stored/s the listener's events_stored delta.
 * The rest is the last value of the listener's gauges. Replays in
 * progress are those with a STARTED audit and no FINISHED/FAILED yet.
 *
 * On a terminal the screen is redrawn every --interval and the keyboard
 * is read raw (termios) so that `q` quits; the terminal's mode is
 * restored on every way out, signals included. When stdout is not a
 * terminal, one line of key=value pairs per refresh instead, which
 * scripts and the tests parse: once both sources have been heard from,
 * or once one has and the other stayed silent for TOP_PATIENCE refreshes
 * (the line then ends in missing=<its topic>); if neither has by then, a
 * note on stderr says so, once. --count with --timeout bounds the whole
 * run, as for `fonte tail`.
 *
 * A source that was heard and then went silent for TOP_STALE of its own
 * Stats intervals (its gauge stats_interval_us; from a source without it,
 * the uptime between its last two Stats, and 1 s until there are two) is
 * stale: it stopped, or lost the broker. Its rates then read 0 -
 * no events are seen moving - while its gauges keep their last values,
 * and the screen says since when, the plain line ends in
 * stale=<its topic>.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "log.h"
#include "zmqx.h"

static const char usage[] =
    "usage: fonte top [--interval D] [--count N [--timeout D]]\n"
    "\n"
    "A live dashboard of the broker's and listener's Stats: events/s\n"
    "overall and per topic, commit latency, ack lag (socket to Ack) and\n"
    "queue depth, store size, producer sessions, replays in progress.\n"
    "`q` quits. When stdout is not a terminal, prints one line of\n"
    "key=value pairs per refresh instead. --count N exits 0 after N\n"
    "refreshes, or 1 if they have not all come within --timeout.\n"
    "A source silent for 3 of its Stats intervals is shown as stale:\n"
    "its rates read 0, its other values are its last word.\n";

#define TOP_TOPICS 10
#define TOP_PATIENCE 3 /* refreshes to wait for the other source */
#define TOP_STALE 3    /* a source's intervals of silence: stale */
#define TOP_REPLAYS 256 /* replays in progress kept: a STARTED whose end
                           never comes (a listener killed mid-replay, or
                           audits forged on an open ingress) must not
                           grow the dashboard for ever */
#define TOP_STATS_INTERVAL_US 1000000 /* the sources' default */

typedef struct source {
    json_t *cur, *prev; /* the last two Stats as JSON (cli_stats_json) */
    int64_t heard_us;   /* fonte_mono_us when cur came */
} source_t;

typedef struct top {
    source_t broker, listener;
    json_t *replays; /* replay_id -> audit JSON, while in progress */
    uint64_t finished, failed;
} top_t;

static volatile sig_atomic_t stopping;
static struct termios saved_tty;
static bool tty_raw;

static void
on_signal(int sig)
{
    (void) sig;
    stopping = 1;
}

static void
tty_restore(void)
{
    if (tty_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
        tty_raw = false;
        fputs("\033[?25h", stdout); /* cursor back */
        fflush(stdout);
    }
}

static void
tty_make_raw(void)
{
    struct termios t;

    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return;
    t = saved_tty;
    t.c_lflag &= ~(tcflag_t) (ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(tty_restore);
        fputs("\033[?25l", stdout); /* hide the cursor */
    }
}

static double
num(const json_t *stats, const char *group, const char *key)
{
    return json_number_value(json_object_get(json_object_get(stats, group),
                                             key));
}

/* Seconds between the two Stats of a source; 0 if there are not two. */
static double
interval(const source_t *s)
{
    if (s->cur == NULL || s->prev == NULL)
        return 0;
    json_int_t a = json_integer_value(json_object_get(s->prev, "uptime_us"));
    json_int_t b = json_integer_value(json_object_get(s->cur, "uptime_us"));
    return b > a ? (double) (b - a) / 1e6 : 0;
}

/* Microseconds since a source heard from went silent for TOP_STALE of
 * its intervals, or 0 if it is not stale (or was never heard). */
static int64_t
stale_us(const source_t *s, int64_t now)
{
    if (s->cur == NULL)
        return 0;
    double said = num(s->cur, "gauges", "stats_interval_us");
    double iv = said > 0 ? said / 1e6 : interval(s);
    int64_t every = iv > 0 ? (int64_t) (iv * 1e6) : TOP_STATS_INTERVAL_US;
    int64_t quiet = now - s->heard_us;
    return quiet > TOP_STALE * every ? quiet : 0;
}

static double
counter_rate(const source_t *s, const char *key)
{
    double dt = interval(s);
    if (stale_us(s, fonte_mono_us()) > 0)
        return 0;
    if (dt <= 0)
        return 0;
    double d = num(s->cur, "counters", key) - num(s->prev, "counters", key);
    return d > 0 ? d / dt : 0;
}

typedef struct topic_rate {
    const char *topic;
    double rate;
} topic_rate_t;

static int
by_rate(const void *a, const void *b)
{
    const topic_rate_t *x = a, *y = b;
    if (x->rate != y->rate)
        return x->rate < y->rate ? 1 : -1;
    return strcmp(x->topic, y->topic);
}

/* Per-topic rates of the broker's event topics, highest first; the sum
 * of all of them in *total. Returns how many were written. A topic in
 * the broker's busiest now but not in its Stats before has no rate yet:
 * its count then is not known (it was below the busiest), and taking it
 * as 0 would show its whole history as one interval's events. */
static size_t
topic_rates(const top_t *t, topic_rate_t *out, size_t cap, double *total)
{
    const source_t *b = &t->broker;
    double dt = interval(b);
    size_t n = 0;
    const char *key;
    json_t *v;

    *total = 0;
    if (dt <= 0 || stale_us(b, fonte_mono_us()) > 0)
        return 0;
    json_object_foreach(json_object_get(b->cur, "topics"), key, v) {
        if (key[0] == '$')
            continue;
        const json_t *pv =
            json_object_get(json_object_get(b->prev, "topics"), key);
        if (pv == NULL)
            continue; /* measured from the next Stats on */
        double r = (json_number_value(v) - json_number_value(pv)) / dt;
        if (r < 0)
            r = 0;
        *total += r;
        if (n < cap)
            out[n++] = (topic_rate_t) { key, r };
    }
    qsort(out, n, sizeof *out, by_rate);
    return n;
}

/* The Stats topics not heard from yet, in words; NULL once both were. */
static const char *
missing(const top_t *t)
{
    if (t->broker.cur == NULL && t->listener.cur == NULL)
        return "$sys.broker and $sys.listener";
    if (t->broker.cur == NULL)
        return "$sys.broker";
    if (t->listener.cur == NULL)
        return "$sys.listener";
    return NULL;
}

/* The Stats topics heard from and then silent (stale_us), in words;
 * NULL if none. */
static const char *
stale(const top_t *t)
{
    int64_t now = fonte_mono_us();
    bool b = stale_us(&t->broker, now) > 0;
    bool l = stale_us(&t->listener, now) > 0;
    return b && l ? "$sys.broker,$sys.listener"
           : b    ? "$sys.broker"
           : l    ? "$sys.listener"
                  : NULL;
}

static void
draw_plain(const top_t *t, FILE *out)
{
    topic_rate_t tr[64];
    double events_s;
    size_t n = topic_rates(t, tr, 64, &events_s);
    const json_t *l = t->listener.cur;
    char now[40];

    cli_format_time(fonte_wall_us(), now, sizeof now);
    fprintf(out, "time=%s events_per_s=%.1f stored_per_s=%.1f "
            "commit_p50_us=%.0f commit_p99_us=%.0f ack_lag_p99_us=%.0f "
            "queue_depth=%.0f store_bytes=%.0f last_seq=%.0f events=%.0f "
            "objects=%.0f sessions=%.0f publishers=%.0f subscribers=%.0f "
            "invalid=%.0f store_failed=%.0f other_listener_acks=%.0f "
            "replays=%zu topics=",
            now, events_s, counter_rate(&t->listener, "events_stored"),
            num(l, "gauges", "commit_p50_us"),
            num(l, "gauges", "commit_p99_us"),
            num(l, "gauges", "ack_lag_p99_us"),
            num(l, "gauges", "queue_depth"), num(l, "gauges", "store_bytes"),
            num(l, "gauges", "last_seq"), num(l, "gauges", "events"),
            num(l, "gauges", "objects"), num(l, "gauges", "sessions"),
            num(t->broker.cur, "gauges", "publishers"),
            num(t->broker.cur, "gauges", "subscribers"),
            num(t->broker.cur, "counters", "invalid"),
            num(l, "gauges", "store_failed"),
            num(l, "counters", "other_listener_acks"),
            json_object_size(t->replays));
    for (size_t i = 0; i < n && i < TOP_TOPICS; i++)
        fprintf(out, "%s%s:%.1f", i ? "," : "", tr[i].topic, tr[i].rate);
    if (missing(t) != NULL) /* its fields are 0 */
        fprintf(out, " missing=%s", missing(t));
    if (stale(t) != NULL) /* its rates are 0, its gauges the last known */
        fprintf(out, " stale=%s", stale(t));
    fputc('\n', out);
}

static void
human_bytes(double b, char *buf, size_t cap)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    size_t i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void
draw_screen(const top_t *t, const cli_endpoints_t *ep, FILE *out)
{
    topic_rate_t tr[64];
    double events_s;
    size_t n = topic_rates(t, tr, 64, &events_s);
    const json_t *l = t->listener.cur, *b = t->broker.cur;
    char size[32], now[40];
    const char *key;
    json_t *v;

    cli_format_time(fonte_wall_us(), now, sizeof now);
    human_bytes(num(l, "gauges", "store_bytes"), size, sizeof size);
    fprintf(out, "\033[H\033[2J");
    fprintf(out, "fonte top   %s   egress %s   (q quits)\r\n\r\n", now,
            ep->egress);
    if (missing(t) != NULL)
        fprintf(out, "waiting for %s Stats...\r\n\r\n", missing(t));
    for (int i = 0; i < 2; i++) {
        const source_t *s = i == 0 ? &t->broker : &t->listener;
        int64_t quiet = stale_us(s, fonte_mono_us());
        if (quiet == 0)
            continue;
        fprintf(out, "no Stats from the %s for %.1f s: stopped, or cut off? "
                "(its rates read 0, the rest is its last word)\r\n\r\n",
                i == 0 ? "broker" : "listener", (double) quiet / 1e6);
    }
    fprintf(out, "events/s      %10.1f   stored/s %10.1f\r\n", events_s,
            counter_rate(&t->listener, "events_stored"));
    fprintf(out, "commit        p50 %6.0f us   p99 %6.0f us\r\n",
            num(l, "gauges", "commit_p50_us"),
            num(l, "gauges", "commit_p99_us"));
    fprintf(out, "ack lag       p50 %6.0f us   p99 %6.0f us   queue %.0f "
            "event%s\r\n",
            num(l, "gauges", "ack_lag_p50_us"),
            num(l, "gauges", "ack_lag_p99_us"),
            num(l, "gauges", "queue_depth"),
            cli_plural((uint64_t) num(l, "gauges", "queue_depth")));
    fprintf(out, "store         %s   last_seq %.0f   events %.0f   "
            "objects %.0f\r\n", size, num(l, "gauges", "last_seq"),
            num(l, "gauges", "events"), num(l, "gauges", "objects"));
    fprintf(out, "producers     %.0f sessions   %.0f publishers connected   "
            "%.0f subscribers\r\n", num(l, "gauges", "sessions"),
            num(b, "gauges", "publishers"), num(b, "gauges", "subscribers"));
    fprintf(out, "dropped       %.0f invalid at the broker\r\n",
            num(b, "counters", "invalid"));
    if (num(l, "gauges", "store_failed") > 0)
        fprintf(out, "\r\nSTORE FAILED: a write failed; the listener takes "
                "no more and is stopping (exit 3). See its log.\r\n");
    json_t *lg = l != NULL ? json_object_get(l, "gauges") : NULL;
    json_t *bc = lg != NULL ? json_object_get(lg, "broker_connected") : NULL;
    if (bc != NULL && json_number_value(bc) == 0)
        fprintf(out, "\r\nLISTENER NOT HEARING THE BROKER: its connection "
                "to the broker's egress is down, nothing is stored. See its "
                "log (--egress).\r\n");
    if (num(l, "counters", "other_listener_acks") > 0)
        fprintf(out, "\r\nANOTHER LISTENER acknowledges on this broker "
                "(%.0f Acks): run one listener per broker "
                "(docs/operations.md).\r\n",
                num(l, "counters", "other_listener_acks"));
    fprintf(out, "\r\n%-40s %12s\r\n", "TOPIC", "EVENTS/S");
    for (size_t i = 0; i < n && i < TOP_TOPICS; i++)
        fprintf(out, "%-40.40s %12.1f\r\n", tr[i].topic, tr[i].rate);
    fprintf(out, "\r\nreplays in progress: %zu (finished %llu, failed %llu)"
            "\r\n", json_object_size(t->replays),
            (unsigned long long) t->finished,
            (unsigned long long) t->failed);
    json_object_foreach(t->replays, key, v)
        fprintf(out, "  %s  root %s  target %s  %lld event%s\r\n", key,
                json_string_value(json_object_get(v, "root")),
                json_string_value(json_object_get(v, "target")),
                (long long) json_integer_value(json_object_get(v, "events")),
                cli_plural((uint64_t) json_integer_value(
                    json_object_get(v, "events"))));
    fflush(out);
}

static void
source_take(source_t *s, json_t *stats)
{
    json_decref(s->prev);
    s->prev = s->cur;
    s->cur = stats;
    s->heard_us = fonte_mono_us();
}

static void
take_message(top_t *t, void *sub)
{
    zmq_msg_t m[2];
    int n = cli_recv(sub, m, 2);
    codec_class_t cls;

    if (n < 0)
        return;
    if (n == 2 &&
        codec_topic_class(zmq_msg_data(&m[0]), zmq_msg_size(&m[0]),
                          &codec_limits_default, &cls) == FONTE_OK) {
        const void *body = zmq_msg_data(&m[1]);
        size_t len = zmq_msg_size(&m[1]);
        if (cls == CODEC_STATS) {
            Fonte__Stats *s = NULL;
            if (codec_stats_decode(body, len, &codec_limits_default, &s) ==
                FONTE_OK) {
                source_t *src = strcmp(s->source, "broker") == 0 ? &t->broker
                                : strcmp(s->source, "listener") == 0
                                    ? &t->listener : NULL;
                if (src != NULL)
                    source_take(src, cli_stats_json(s, ""));
                fonte__stats__free_unpacked(s, NULL);
            }
        } else if (cls == CODEC_AUDIT) {
            Fonte__ReplayAudit *a = NULL;
            if (codec_audit_decode(body, len, &codec_limits_default, &a) ==
                FONTE_OK) {
                if (a->state == FONTE__REPLAY_AUDIT__STATE__STARTED) {
                    if (json_object_size(t->replays) < TOP_REPLAYS)
                        json_object_set_new(
                            t->replays, a->replay_id,
                            cli_audit_json(a, CODEC_TOPIC_AUDIT));
                } else {
                    json_object_del(t->replays, a->replay_id);
                    if (a->state == FONTE__REPLAY_AUDIT__STATE__FINISHED)
                        t->finished++;
                    else
                        t->failed++;
                }
                fonte__replay_audit__free_unpacked(a, NULL);
            }
        }
    }
    cli_msgs_close(m, n < 2 ? n : 2);
}

/* The line for a --timeout that passed: how many refreshes came, and
 * which Stats were not heard (the likely reason). */
static void
gave_up(const char *cmd, const top_t *t, const cli_endpoints_t *ep,
        uint64_t drawn, uint64_t count, int64_t timeout_us)
{
    char d[32];

    cli_format_duration(timeout_us, d, sizeof d);
    if (missing(t) == NULL)
        cli_error(cmd, "%llu of %llu refresh%s within %s, one per "
                  "--interval (--count, --interval, --timeout)",
                  (unsigned long long) drawn, (unsigned long long) count,
                  count == 1 ? "" : "es", d);
    else
        cli_error(cmd, "%llu of %llu refresh%s within %s: no Stats heard on "
                  "%s; is %s at %s? (--egress, --timeout)",
                  (unsigned long long) drawn, (unsigned long long) count,
                  count == 1 ? "" : "es", d, missing(t),
                  t->broker.cur == NULL ? "the broker running"
                                        : "a listener behind the broker",
                  ep->egress);
}

int
cmd_top(int argc, char **argv)
{
    cli_endpoints_t ep;
    int64_t interval_us = 1000000, timeout_us = 0;
    uint64_t count = 0, drawn = 0;
    void *ctx = NULL, *sub = NULL;
    top_t t = { 0 };
    bool screen = isatty(STDOUT_FILENO), noted = false, timed_out = false;

    cli_endpoints_init(&ep);
    const flag_spec_t specs[] = {
        CLI_ENDPOINT_FLAGS(ep),
        CLI_CURVE_FLAGS(ep),
        { "interval", NULL, FLAG_DURATION, &interval_us,
          "refresh every (1s)", NULL },
        { "count", NULL, FLAG_UINT, &count,
          "exit after N refreshes (0 = never)", NULL },
        { "timeout", NULL, FLAG_DURATION, &timeout_us,
          "with --count: exit 1 if the N refreshes have not come by then "
          "(0 = wait)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 0, 0, NULL, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (interval_us < 10000) {
        cli_error(argv[0], "--interval must be at least 10ms");
        return CLI_EXIT_USAGE;
    }
    const char *subs[1] = { CODEC_TOPIC_SYS };
    if ((rc = cli_feed_open(argv[0], &ep, timeout_us, count, subs, 1, &ctx,
                            &sub)) != CLI_EXIT_OK)
        return rc;
    t.replays = json_object();

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    if (screen)
        tty_make_raw();

    int64_t start = fonte_mono_us(), next = start + interval_us;
    int64_t deadline = timeout_us > 0 ? start + timeout_us : 0;
    rc = CLI_EXIT_OK;
    while (!stopping && (count == 0 || drawn < count)) {
        int64_t now = fonte_mono_us();
        if (deadline != 0 && now >= deadline) {
            timed_out = true;
            break;
        }
        int64_t until = deadline != 0 && deadline < next ? deadline : next;
        int64_t wait = (until - now + 999) / 1000;
        zmq_pollitem_t pi[2] = { { sub, 0, ZMQ_POLLIN, 0 },
                                 { NULL, STDIN_FILENO, ZMQ_POLLIN, 0 } };
        int np = zmq_poll(pi, tty_raw ? 2 : 1, wait > 0 ? (long) wait : 0);
        if (np > 0 && (pi[0].revents & ZMQ_POLLIN))
            take_message(&t, sub);
        if (np > 0 && tty_raw && (pi[1].revents & ZMQ_POLLIN)) {
            char ch = 0;
            if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
                break;
        }
        if (fonte_mono_us() < next)
            continue;
        int64_t at = next; /* this refresh */
        next += interval_us;
        bool patient = at - start >= TOP_PATIENCE * interval_us;
        if (screen) {
            draw_screen(&t, &ep, stdout);
            drawn++;
        } else if (missing(&t) == NULL ||
                   (patient && (t.broker.cur || t.listener.cur))) {
            draw_plain(&t, stdout);
            if (fflush(stdout) != 0)
                break;
            drawn++;
        } else if (patient && !noted) {
            char d[32];
            cli_format_duration(TOP_PATIENCE * interval_us, d, sizeof d);
            fprintf(stderr, "fonte %s: note: no Stats heard on %s in %s; is "
                    "the broker at %s running? (--egress)\n", argv[0],
                    missing(&t), d, ep.egress);
            noted = true;
        }
    }
    tty_restore();
    if (screen)
        fputs("\r\n", stdout);
    if (timed_out) {
        gave_up(argv[0], &t, &ep, drawn, count, timeout_us);
        rc = CLI_EXIT_REFUSED;
    }
    json_decref(t.broker.cur);
    json_decref(t.broker.prev);
    json_decref(t.listener.cur);
    json_decref(t.listener.prev);
    json_decref(t.replays);
    if (sub != NULL)
        zmq_close(sub);
    if (ctx != NULL)
        zmqx_ctx_term(ctx);
    return rc;
}
