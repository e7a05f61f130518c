/*
 * cli.h - what the subcommands of the fonte CLI share: flag parsing that
 * allows flags after positionals and repeated flags, the endpoint flags,
 * one-line errors with exit codes, a libfonte client set up for a command,
 * a SUB socket on the broker's egress, and the JSON and one-line forms of
 * events, Stats and ReplayAudits.
 *
 * Exit codes (docs/cli.md): CLI_EXIT_OK 0, CLI_EXIT_REFUSED 1 (the system
 * refused or timed out), CLI_EXIT_USAGE 2 (a usage error),
 * CLI_EXIT_STORE_FAILED 3 (`fonte up`: a write to the store failed while
 * running). Every error is
 * one line on stderr, "fonte <command>: <what went wrong>; <what to do>".
 */
#ifndef FONTE_CLI_H
#define FONTE_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "codec.h"
#include "curve.h"
#include "flags.h"
#include "fonte/fonte.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_REFUSED 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_STORE_FAILED 3
#define CLI_CONTINUE (-1) /* cli_flags: parsed, go on */

/* A subcommand: argv[0] is its name, the flags and arguments follow. */
typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_up(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_backup(int argc, char **argv);

/* The three endpoints every command knows, and the CURVE certificates
 * to reach them with (NULL: no CURVE; docs/operations.md "Security"). */
typedef struct cli_endpoints {
    const char *ingress, *egress, *query;
    const char *curve_cert, *curve_broker, *curve_listener;
} cli_endpoints_t;

void cli_endpoints_init(cli_endpoints_t *ep);

/* Which endpoints cli_check_endpoints looks at, and how they are used. */
#define CLI_EP_INGRESS 1u
#define CLI_EP_EGRESS 2u
#define CLI_EP_QUERY 4u
#define CLI_EP_ALL (CLI_EP_INGRESS | CLI_EP_EGRESS | CLI_EP_QUERY)
#define CLI_EP_BIND 8u     /* they are bound (up): port "*" or 0 allowed */
#define CLI_EP_CONNECT 16u /* also try zmq_connect on each */

/* Checks the endpoints in which before anything uses them, so that a bad
 * one is a usage error naming its flag rather than a failure later: a
 * tcp endpoint must end in a port of 1..65535, which libzmq does not
 * check (it takes 99999 as 34463). With CLI_EP_CONNECT each must also be
 * one zmq_connect accepts, tried on a socket of a throwaway context (if
 * one can be made): that may open a TCP connection to it and close it at
 * once, which the broker counts, so it is asked for only where nothing
 * else checks the endpoint at once (the query socket is connected only
 * at the first query). Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after
 * printing the line. */
int cli_check_endpoints(const char *cmd, const cli_endpoints_t *ep,
                        unsigned which);

#define CLI_ENDPOINT_FLAGS(ep)                                               \
    { "ingress", "FONTE_INGRESS", FLAG_STR, &(ep).ingress,                   \
      "broker ingress, where events are published (tcp://127.0.0.1:7701)",   \
      NULL },                                                                \
    { "egress", "FONTE_EGRESS", FLAG_STR, &(ep).egress,                      \
      "broker egress, where the feed is read (tcp://127.0.0.1:7702)", NULL },\
    { "query", "FONTE_QUERY", FLAG_STR, &(ep).query,                         \
      "listener query endpoint (tcp://127.0.0.1:7703)", NULL }

/* The client commands' CURVE flags (fonte up has its own). */
#define CLI_CURVE_FLAGS(ep)                                                  \
    { "curve-cert", "FONTE_CURVE_CERT", FLAG_STR, &(ep).curve_cert,          \
      "this client's CURVE certificate, from fonte keygen (none)", NULL },   \
    { "curve-broker", "FONTE_CURVE_BROKER", FLAG_STR, &(ep).curve_broker,    \
      "the broker's public certificate, with --curve-cert (none)", NULL },   \
    { "curve-listener", "FONTE_CURVE_LISTENER", FLAG_STR,                    \
      &(ep).curve_listener,                                                  \
      "the listener's public certificate (the broker's)", NULL }

/* Loads the CURVE certificates ep names, if any: a usage error (exit 2,
 * the line printed) if they do not go together or one cannot be read.
 * With cert: *curve set and the keys loaded; else *curve false. */
int cli_curve(const char *cmd, const cli_endpoints_t *ep, bool *curve,
              fcurve_cert_t *cert, fcurve_cert_t *broker);

#define CLI_FLAGS_END { NULL, NULL, FLAG_STR, NULL, NULL, NULL }

/* A flag that may be given several times (--dep, --meta): its values
 * are collected in order. It should also appear in the specs (as a
 * FLAG_STR) so that --help lists it. */
typedef struct cli_multi {
    const char *name;
    const char **vals; /* point into argv; free(vals) when done */
    size_t n, cap;
} cli_multi_t;

/* Parses a command's argv (argv[0] = the command's name): flags and
 * positionals may come in any order ("--" ends the flags); the flags
 * named in multi (may be NULL; terminated by a NULL name) are collected
 * there, the rest go to flags_parse(). Between min_pos and max_pos
 * positionals are stored in pos[]. Returns CLI_CONTINUE, or the exit
 * code to return at once: 0 after --help / --version, 2 after a usage
 * error (its one line already printed). */
int cli_flags(const flag_spec_t *specs, cli_multi_t *multi, int argc,
              char **argv, const char *usage, int min_pos, int max_pos,
              const char **pos, int *n_pos);

/* Prints "fonte <cmd>: <message>\n" on stderr as one write. */
void cli_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Makes a libfonte client for a command: producer name service, the
 * endpoints (checked first: cli_check_endpoints), one query try of
 * timeout_us, fonte_publish waiting up to timeout_us for room in a full
 * outbox, and libfonte's default max_msg, codec_limits_default.max_msg.
 * Prints the error line and returns its exit code, or CLI_EXIT_OK with
 * *c set. */
int cli_client(const char *cmd, const cli_endpoints_t *ep,
               const char *service, int64_t timeout_us, fonte_client_t **c);

/* Prints the line for a failed query (a timeout names the endpoint and
 * the flag) and returns the exit code (1; 2 for a bad argument). */
int cli_query_failed(const char *cmd, const cli_endpoints_t *ep,
                     fonte_err rc, int64_t timeout_us);

/* The live feed of tail and top: checks --timeout against --count, the
 * egress endpoint and the CURVE flags, then opens a SUB on the egress in
 * a new context, subscribed to prefixes[0..n). CLI_EXIT_OK with *ctx_p
 * and *sub_p set (close the socket, then term the context), else the
 * exit code with its line printed and nothing left open. */
int cli_feed_open(const char *cmd, const cli_endpoints_t *ep,
                  int64_t timeout_us, uint64_t count,
                  const char *const *prefixes, size_t n, void **ctx_p,
                  void **sub_p);

/* A SUB socket in ctx, connected to ep's egress (a CURVE client of the
 * broker when ep names a certificate: check them first with cli_curve),
 * subscribed to each prefix of prefixes[0..n), with LINGER 0 and
 * MAXMSGSIZE 1 MiB + slack. NULL on failure (errno). */
void *cli_sub(void *ctx, const cli_endpoints_t *ep,
              const char *const *prefixes, size_t n);

/* Receives one whole message from a socket that has one waiting: up to
 * max_frames frames into msgs (each initialised here; close them with
 * cli_msgs_close). Returns the frame count (more than max_frames are
 * counted but dropped), -1 on error. */
int cli_recv(void *sock, void *msgs, int max_frames);
void cli_msgs_close(void *msgs, int n);

/* "s" unless n is 1: "%llu event%s". */
const char *cli_plural(uint64_t n);

/* A duration as it was most likely written: "3 s", "300 ms", "50 us". */
void cli_format_duration(int64_t us, char *buf, size_t cap);

/* "2024-05-01T12:00:00.123456Z" (UTC) into buf (>= 32 bytes). */
void cli_format_time(int64_t us, char *buf, size_t cap);

/* Base64 (RFC 4648, padded). cli_base64 returns a malloc'd string
 * (NULL on ENOMEM); cli_unbase64 returns false on bad input. */
char *cli_base64(const void *p, size_t n);
bool cli_unbase64(const char *s, uint8_t **out, size_t *n_out);

/* One event to publish and the memory its spec points into (fonte
 * publish builds it from flags, or from a --jsonl line). */
typedef struct cli_spec {
    fonte_event_spec_t spec;
    const char **deps;
    fonte_meta_t *meta;
    uint8_t *payload; /* owned (decoded base64 or a file) */
} cli_spec_t;

/* Fills it from one parsed JSON line (the fields of `replay --json`:
 * type, object, deps or depends_on, payload or payload_b64,
 * payload_type, meta; the ones fonte stamps itself are ignored). The
 * spec points into j, which must outlive it. On false, why says what is
 * wrong with the line; cli_spec_fini is due either way. */
bool cli_spec_from_json(cli_spec_t *it, json_t *j, char *why, size_t cap);
void cli_spec_fini(cli_spec_t *it);

/* An event as JSON: every Event field; session as 16 hex digits; the
 * payload as "payload_b64" and also as "payload" when it is UTF-8 (an
 * empty payload too: both are "");
 * "replay" when present. topic (may be NULL) is added as "topic".
 * New reference; NULL on ENOMEM. */
json_t *cli_event_json_pb(const Fonte__Event *ev, const char *topic);
json_t *cli_event_json(const fonte_event_t *e);
json_t *cli_stats_json(const Fonte__Stats *s, const char *topic);
json_t *cli_audit_json(const Fonte__ReplayAudit *a, const char *topic);
const char *cli_audit_state(int state);

/* Writes j compactly on one line of out. */
void cli_print_json(FILE *out, const json_t *j);

/* The one-line summary of an event JSON (cli_event_json*): time, topic
 * (or type), object, seq or producer/producer_seq, payload. */
void cli_event_line(FILE *out, const json_t *ev);

#endif
