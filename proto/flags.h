/*
 * flags.h - command-line flags with FONTE_* environment variables beside
 * them, for every fonte binary.
 *
 * Each flag names its variable; the value comes from the flag if given,
 * else from the environment, else the default already in the destination.
 * Accepted forms: --name=value, --name value, and --name alone for
 * booleans; -h is --help. Sizes take k/M/G suffixes (powers of 1024:
 * "1M" = 1048576); durations take us/ms/s/m/h, and a bare number is in the
 * unit the flag's name ends in (--batch-delay-us=200 is 200 us, and so
 * for -ms and -s), else milliseconds.
 *
 * A variable is read, and checked, only when its flag is not given: a bad
 * FONTE_SYNC does not stop `--sync none`. Errors are one line on stderr
 * naming the flag (or variable) and what was wrong; --help prints the
 * generated usage. The parser never exits: it returns what the caller
 * should do, so tests can drive it.
 */
#ifndef FONTE_FLAGS_H
#define FONTE_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum flag_kind {
    FLAG_STR,      /* const char **: points into argv or environ */
    FLAG_SIZE,     /* size_t *: bytes, k/M/G suffixes */
    FLAG_UINT,     /* uint64_t * */
    FLAG_BOOL,     /* bool *: --name, --name=true|false|1|0 */
    FLAG_DURATION, /* int64_t *: microseconds; us/ms/s suffixes, a bare
                      number in the unit the name ends in (-us, -ms, -s),
                      else ms */
    FLAG_CHOICE,   /* const char **: one of choices[] */
} flag_kind;

typedef struct flag_spec {
    const char *name; /* without the dashes: "ingress" */
    const char *env;  /* "FONTE_INGRESS", or NULL */
    flag_kind kind;
    void *dst;
    const char *help; /* one line */
    const char *const *choices; /* FLAG_CHOICE: NULL-terminated */
} flag_spec_t;

typedef enum flags_result {
    FLAGS_OK = 0,   /* parsed; *first_arg is the first positional */
    FLAGS_HELP,     /* --help (or -h) was printed to out: exit 0 */
    FLAGS_VERSION,  /* --version was printed to out: exit 0 */
    FLAGS_ERROR,    /* one line was printed to err: exit 2 */
} flags_result;

/* Parses argv[1..argc) against specs (terminated by a spec with name
 * NULL). Positional arguments are allowed only if first_arg is not NULL;
 * "--" ends the flags. usage is the text printed above the flag list by
 * --help (e.g. "usage: fonte-broker [flags]\n\nRoutes events..."). */
flags_result flags_parse(const flag_spec_t *specs, int argc, char **argv,
                         const char *prog, const char *usage, int *first_arg,
                         FILE *out, FILE *err);

/* What a main() returns after flags_parse: -1 to carry on (FLAGS_OK),
 * 0 after --help or --version, 2 after a usage error (already printed). */
int flags_exit_code(flags_result r);

/* Value parsers, exposed for tests and for callers with their own
 * syntax. False on malformed or out-of-range input. A bare duration is
 * milliseconds for flags_parse_duration, bare_us microseconds each for
 * flags_parse_duration_in. */
bool flags_parse_size(const char *s, size_t *out);
bool flags_parse_uint(const char *s, uint64_t *out);

/* A CPU number as taskset counts (0, 1, ... below 1024), or "none" (-1).
 * False if s is neither. */
bool flags_parse_cpu(const char *s, int *cpu);
bool flags_parse_duration(const char *s, int64_t *out_us);

/* The longest duration the parsers take: 100 000 hours (11 years), so
 * that a deadline computed as now + a duration never overflows. */
#define FLAGS_DURATION_MAX_US (100000LL * 3600 * 1000000)

/* An endpoint as fonte takes one: tcp://HOST:PORT with a port of
 * 1..65535 (with bind also * or 0: a free port; to connect to, a host
 * other than *), ipc://PATH or inproc://NAME. A syntax check only: it
 * opens nothing (a trial zmq_connect could reach the broker, which
 * counts connections) and resolves no name. libzmq itself takes
 * tcp://h:99999 and binds another port, and a malformed endpoint only
 * fails where it is first used, as a start-up error (exit 1) rather
 * than a bad value (exit 2). flags_tcp_port_ok is the port rule alone
 * (true for non-tcp). */
bool flags_tcp_port_ok(const char *endpoint, bool bind);
bool flags_endpoint_ok(const char *endpoint, bool bind);
bool flags_parse_duration_in(const char *s, int64_t bare_us, int64_t *out_us);

#endif
