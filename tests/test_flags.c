/*
 * test_flags.c - proto/flags.c: values from flags, from FONTE_* variables
 * and defaults; every error is one line and FLAGS_ERROR; a bare duration
 * in the unit the flag's name ends in; -h is --help.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"

static const char *const sync_choices[] = { "batch", "none", NULL };

typedef struct cfg {
    const char *ingress;
    size_t max_msg;
    uint64_t hwm;
    bool repair;
    int64_t interval;
    const char *sync;
    int64_t delay_us, wait_s;
} cfg_t;

static flags_result
parse(cfg_t *c, int argc, char **argv, int *first, char *errline,
      size_t errlen)
{
    flag_spec_t specs[] = {
        { "ingress", "FONTE_TEST_INGRESS", FLAG_STR, &c->ingress, "where",
          NULL },
        { "max-msg", "FONTE_TEST_MAX_MSG", FLAG_SIZE, &c->max_msg, "size",
          NULL },
        { "hwm", NULL, FLAG_UINT, &c->hwm, "hwm", NULL },
        { "repair", NULL, FLAG_BOOL, &c->repair, "repair", NULL },
        { "stats-interval", NULL, FLAG_DURATION, &c->interval, "every", NULL },
        { "sync", "FONTE_TEST_SYNC", FLAG_CHOICE, &c->sync, "sync",
          sync_choices },
        { "batch-delay-us", "FONTE_TEST_DELAY_US", FLAG_DURATION,
          &c->delay_us, "delay", NULL },
        { "wait-s", NULL, FLAG_DURATION, &c->wait_s, "wait", NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
    };
    FILE *out = fopen("/dev/null", "w");
    FILE *err = fmemopen(errline, errlen, "w");
    memset(errline, 0, errlen);
    flags_result r = flags_parse(specs, argc, argv, "prog", "usage: prog\n",
                                 first, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static cfg_t
defaults(void)
{
    cfg_t c = { "tcp://127.0.0.1:7701", 1 << 20, 1000, false, 1000000,
                "batch", 0, 0 };
    return c;
}

Test(flags, defaults_stay_when_nothing_is_given)
{
    cfg_t c = defaults();
    char e[256];
    char *argv[] = { "prog", NULL };
    unsetenv("FONTE_TEST_INGRESS");
    cr_assert_eq(parse(&c, 1, argv, NULL, e, sizeof e), FLAGS_OK);
    cr_assert_str_eq(c.ingress, "tcp://127.0.0.1:7701");
    cr_assert_eq(c.max_msg, 1 << 20);
    cr_assert_str_eq(e, "");
}

Test(flags, both_forms_and_every_kind)
{
    cfg_t c = defaults();
    char e[256];
    char *argv[] = { "prog", "--ingress", "tcp://h:1", "--max-msg=64k",
                     "--hwm=5", "--repair", "--stats-interval=250ms",
                     "--sync", "none", "rest", NULL };
    int first = 0;
    cr_assert_eq(parse(&c, 10, argv, &first, e, sizeof e), FLAGS_OK);
    cr_assert_str_eq(c.ingress, "tcp://h:1");
    cr_assert_eq(c.max_msg, 65536);
    cr_assert_eq(c.hwm, 5);
    cr_assert(c.repair);
    cr_assert_eq(c.interval, 250000);
    cr_assert_str_eq(c.sync, "none");
    cr_assert_eq(first, 9);
}

Test(flags, environment_applies_and_flags_override_it)
{
    cfg_t c = defaults();
    char e[256];
    setenv("FONTE_TEST_INGRESS", "tcp://env:9", 1);
    setenv("FONTE_TEST_MAX_MSG", "2M", 1);
    char *argv[] = { "prog", NULL };
    cr_assert_eq(parse(&c, 1, argv, NULL, e, sizeof e), FLAGS_OK);
    cr_assert_str_eq(c.ingress, "tcp://env:9");
    cr_assert_eq(c.max_msg, 2u << 20);
    char *argv2[] = { "prog", "--ingress=tcp://flag:1", NULL };
    cr_assert_eq(parse(&c, 2, argv2, NULL, e, sizeof e), FLAGS_OK);
    cr_assert_str_eq(c.ingress, "tcp://flag:1");
    unsetenv("FONTE_TEST_INGRESS");
    unsetenv("FONTE_TEST_MAX_MSG");
}

Test(flags, errors_are_one_line)
{
    cfg_t c = defaults();
    char e[256];
    char *a1[] = { "prog", "--nope", NULL };
    cr_assert_eq(parse(&c, 2, a1, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: unknown flag '--nope' (try --help)\n");
    char *a2[] = { "prog", "--hwm=lots", NULL };
    cr_assert_eq(parse(&c, 2, a2, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: --hwm=lots is not a whole number\n");
    char *a3[] = { "prog", "--sync=fast", NULL };
    cr_assert_eq(parse(&c, 2, a3, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: --sync=fast is not one of the listed choices "
                        "(batch|none)\n");
    char *a4[] = { "prog", "--ingress", NULL };
    cr_assert_eq(parse(&c, 2, a4, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: flag --ingress needs a value\n");
    char *a5[] = { "prog", "stray", NULL };
    cr_assert_eq(parse(&c, 2, a5, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: unexpected argument 'stray' (try --help)\n");
    setenv("FONTE_TEST_MAX_MSG", "big", 1);
    char *a6[] = { "prog", NULL };
    cr_assert_eq(parse(&c, 1, a6, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: $FONTE_TEST_MAX_MSG=big is not a size like "
                        "1048576, 64k or 1M\n");
    unsetenv("FONTE_TEST_MAX_MSG");
}

Test(flags, help_and_version)
{
    cfg_t c = defaults();
    char e[256];
    char *a1[] = { "prog", "--help", NULL };
    cr_assert_eq(parse(&c, 2, a1, NULL, e, sizeof e), FLAGS_HELP);
    char *a2[] = { "prog", "--version", NULL };
    cr_assert_eq(parse(&c, 2, a2, NULL, e, sizeof e), FLAGS_VERSION);
}

Test(flags, exit_codes_for_mains)
{
    cr_assert_eq(flags_exit_code(FLAGS_OK), -1);
    cr_assert_eq(flags_exit_code(FLAGS_HELP), 0);
    cr_assert_eq(flags_exit_code(FLAGS_VERSION), 0);
    cr_assert_eq(flags_exit_code(FLAGS_ERROR), 2);
}

Test(flags, value_parsers)
{
    size_t sz;
    uint64_t u;
    int64_t d;
    cr_assert(flags_parse_size("1MiB", &sz));
    cr_assert_eq(sz, 1048576);
    cr_assert(flags_parse_size("3G", &sz));
    cr_assert_eq(sz, (size_t) 3 << 30);
    cr_assert(flags_parse_size("100", &sz));
    cr_assert_eq(sz, 100);
    cr_assert_not(flags_parse_size("-1", &sz));
    cr_assert_not(flags_parse_size("1T", &sz));
    cr_assert_not(flags_parse_size("", &sz));
    cr_assert_not(flags_parse_uint("18446744073709551616", &u));
    cr_assert(flags_parse_uint("18446744073709551615", &u));
    cr_assert_eq(u, UINT64_MAX);
    cr_assert(flags_parse_duration("2s", &d));
    cr_assert_eq(d, 2000000);
    cr_assert(flags_parse_duration("15", &d));
    cr_assert_eq(d, 15000);
    cr_assert(flags_parse_duration("7us", &d));
    cr_assert_eq(d, 7);
    cr_assert(flags_parse_duration("10m", &d));
    cr_assert_eq(d, 600000000);
    cr_assert(flags_parse_duration("2h", &d));
    cr_assert_eq(d, 7200000000LL);
    cr_assert_not(flags_parse_duration("1d", &d));
    cr_assert_not(flags_parse_duration("1mn", &d));
    /* at most 100 000 h: now + any duration stays in an int64_t */
    cr_assert(flags_parse_duration("100000h", &d));
    cr_assert_eq(d, FLAGS_DURATION_MAX_US);
    cr_assert_eq(d, 360000000000000LL);
    cr_assert_not(flags_parse_duration("100001h", &d));
    cr_assert_not(flags_parse_duration("2562047788h", &d));
    cr_assert_not(flags_parse_duration("360000000000001us", &d));
}

Test(flags, a_bare_duration_is_in_the_unit_the_flag_name_ends_in)
{
    cfg_t c = defaults();
    char e[256];
    char *a1[] = { "prog", "--batch-delay-us", "200", "--stats-interval",
                   "15", "--wait-s=3", NULL };
    cr_assert_eq(parse(&c, 6, a1, NULL, e, sizeof e), FLAGS_OK, "%s", e);
    cr_assert_eq(c.delay_us, 200);
    cr_assert_eq(c.interval, 15000); /* no unit in the name: ms */
    cr_assert_eq(c.wait_s, 3000000);
    char *a2[] = { "prog", "--batch-delay-us=2ms", "--wait-s=250ms", NULL };
    cr_assert_eq(parse(&c, 3, a2, NULL, e, sizeof e), FLAGS_OK, "%s", e);
    cr_assert_eq(c.delay_us, 2000);
    cr_assert_eq(c.wait_s, 250000);
    char *a3[] = { "prog", "--batch-delay-us=7us", NULL };
    cr_assert_eq(parse(&c, 2, a3, NULL, e, sizeof e), FLAGS_OK, "%s", e);
    cr_assert_eq(c.delay_us, 7);
    setenv("FONTE_TEST_DELAY_US", "300", 1);
    char *a4[] = { "prog", NULL };
    cr_assert_eq(parse(&c, 1, a4, NULL, e, sizeof e), FLAGS_OK, "%s", e);
    unsetenv("FONTE_TEST_DELAY_US");
    cr_assert_eq(c.delay_us, 300);
    char *a5[] = { "prog", "--batch-delay-us=2d", NULL };
    cr_assert_eq(parse(&c, 2, a5, NULL, e, sizeof e), FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: --batch-delay-us=2d is not a duration like "
                        "500ms, 250us, 2s or 10m (at most 100000h)\n");

    int64_t d = 0;
    cr_assert(flags_parse_duration_in("200", 1, &d));
    cr_assert_eq(d, 200);
    cr_assert(flags_parse_duration_in("2ms", 1, &d));
    cr_assert_eq(d, 2000);
    cr_assert_not(flags_parse_duration_in("9223372036854775808", 1, &d));
}

Test(flags, a_variable_is_checked_only_when_its_flag_is_absent)
{
    cfg_t c = defaults();
    char e[256];
    setenv("FONTE_TEST_SYNC", "fsync", 1);
    char *a1[] = { "prog", "--sync", "none", NULL };
    flags_result r1 = parse(&c, 3, a1, NULL, e, sizeof e);
    char *a2[] = { "prog", "--help", NULL };
    flags_result r2 = parse(&c, 2, a2, NULL, e, sizeof e);
    char *a3[] = { "prog", NULL };
    flags_result r3 = parse(&c, 1, a3, NULL, e, sizeof e);
    unsetenv("FONTE_TEST_SYNC");
    cr_assert_eq(r1, FLAGS_OK);
    cr_assert_str_eq(c.sync, "none");
    cr_assert_eq(r2, FLAGS_HELP);
    cr_assert_eq(r3, FLAGS_ERROR);
    cr_assert_str_eq(e, "prog: $FONTE_TEST_SYNC=fsync is not one of the "
                        "listed choices (batch|none)\n");
}

Test(flags, dash_h_is_help)
{
    cfg_t c = defaults();
    char e[256], out[4096] = "";
    int first = -1;
    char *a1[] = { "prog", "--hwm=5", "-h", NULL };
    cr_assert_eq(parse(&c, 3, a1, NULL, e, sizeof e), FLAGS_HELP);
    cr_assert_str_eq(e, "");
    char *a2[] = { "prog", "-h", "rest", NULL }; /* not a positional */
    cr_assert_eq(parse(&c, 3, a2, &first, e, sizeof e), FLAGS_HELP);
    char *a3[] = { "prog", "--", "-h", NULL }; /* after --, it is one */
    cr_assert_eq(parse(&c, 3, a3, &first, e, sizeof e), FLAGS_OK);
    cr_assert_eq(first, 2);

    flag_spec_t none[] = { { NULL, NULL, 0, NULL, NULL, NULL } };
    char *a4[] = { "prog", "-h", NULL };
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    cr_assert_eq(flags_parse(none, 2, a4, "prog", "usage: prog\n", NULL, f,
                             stderr), FLAGS_HELP);
    fclose(f);
    cr_assert_str_eq(out, "usage: prog\n\nflags:\n"
                          "  -h, --help            show this help\n"
                          "  --version             print the version\n");
}

/* Endpoints: a tcp port of 1..65535 (with bind also * or 0), a host
 * (not * to connect to), one of the three schemes. */
Test(flags, endpoints_are_checked_as_fonte_takes_them)
{
    static const struct {
        const char *ep;
        bool bind, connect;
    } cases[] = {
        { "tcp://127.0.0.1:7701", true, true },
        { "tcp://*:7701", true, false }, /* no host to connect to */
        { "tcp://[::1]:7701", true, true },
        { "tcp://127.0.0.1:*", true, false },
        { "tcp://127.0.0.1:0", true, false },
        { "tcp://127.0.0.1:65535", true, true },
        { "tcp://127.0.0.1:65536", false, false },
        { "tcp://127.0.0.1:99999", false, false },
        { "tcp://127.0.0.1:-1", false, false },
        { "tcp://127.0.0.1", false, false },
        { "tcp://:7701", false, false },
        { "tcp://", false, false },
        { "ipc:///tmp/fonte.sock", true, true },
        { "inproc://x", true, true },
        { "foo", false, false },
        { "udp://127.0.0.1:1", false, false },
        { "", false, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(flags_endpoint_ok(cases[i].ep, true), cases[i].bind,
                     "bind %s", cases[i].ep);
        cr_assert_eq(flags_endpoint_ok(cases[i].ep, false), cases[i].connect,
                     "connect %s", cases[i].ep);
    }
    cr_assert_not(flags_endpoint_ok(NULL, false));
    cr_assert(flags_tcp_port_ok("ipc://x", false));
}
