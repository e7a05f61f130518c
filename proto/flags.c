/*
 * flags.c - see flags.h.
 */
#include "flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The decimal number s starts with (digits only: no sign, no space);
 * *end is what follows it. false if s does not start with a digit or the
 * number overflows. */
static bool
leading_number(const char *s, unsigned long long *v, char **end)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *v = strtoull(s, end, 10);
    return errno == 0;
}

bool
flags_parse_uint(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!leading_number(s, &v, &end) || *end != '\0')
        return false;
    *out = v;
    return true;
}

bool
flags_parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    if (!leading_number(s, &v, &end))
        return false;
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'M')
        shift = 20, end++;
    else if (*end == 'G')
        shift = 30, end++;
    if (shift && (*end == 'i' && end[1] == 'B'))
        end += 2; /* "MiB" */
    else if (*end == 'B' && end[1] == '\0')
        end++;
    if (*end != '\0' || (shift && v > (SIZE_MAX >> shift)))
        return false;
    *out = (size_t) (v << shift);
    return true;
}

bool
flags_parse_cpu(const char *s, int *cpu)
{
    uint64_t v;
    if (strcmp(s, "none") == 0) {
        *cpu = -1;
        return true;
    }
    if (!flags_parse_uint(s, &v) || v >= 1024) /* CPU_SETSIZE */
        return false;
    *cpu = (int) v;
    return true;
}

bool
flags_parse_duration_in(const char *s, int64_t bare_us, int64_t *out_us)
{
    char *end;
    unsigned long long v;

    if (!leading_number(s, &v, &end) || bare_us <= 0)
        return false;
    unsigned long long mult;
    if (strcmp(end, "us") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 1000;
    else if (strcmp(end, "s") == 0)
        mult = 1000000;
    else if (strcmp(end, "m") == 0)
        mult = 60000000ULL;
    else if (strcmp(end, "h") == 0)
        mult = 3600000000ULL;
    else if (*end == '\0')
        mult = (unsigned long long) bare_us;
    else
        return false;
    if (v > (unsigned long long) FLAGS_DURATION_MAX_US / mult)
        return false;
    *out_us = (int64_t) (v * mult);
    return true;
}

bool
flags_parse_duration(const char *s, int64_t *out_us)
{
    return flags_parse_duration_in(s, 1000, out_us);
}

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* What a bare number of a duration flag counts: the unit its name ends
 * in (--batch-delay-us), else milliseconds. */
static int64_t
bare_unit_us(const flag_spec_t *f)
{
    if (ends_with(f->name, "-us"))
        return 1;
    if (ends_with(f->name, "-s"))
        return 1000000;
    return 1000;
}

static bool
set_value(const flag_spec_t *f, const char *v)
{
    switch (f->kind) {
    case FLAG_STR:
        *(const char **) f->dst = v;
        return true;
    case FLAG_SIZE:
        return flags_parse_size(v, (size_t *) f->dst);
    case FLAG_UINT:
        return flags_parse_uint(v, (uint64_t *) f->dst);
    case FLAG_DURATION:
        return flags_parse_duration_in(v, bare_unit_us(f),
                                       (int64_t *) f->dst);
    case FLAG_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(bool *) f->dst = true;
        else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(bool *) f->dst = false;
        else
            return false;
        return true;
    case FLAG_CHOICE:
        for (const char *const *c = f->choices; c && *c; c++) {
            if (strcmp(*c, v) == 0) {
                *(const char **) f->dst = *c;
                return true;
            }
        }
        return false;
    }
    return false;
}

static const char *
kind_hint(const flag_spec_t *f)
{
    switch (f->kind) {
    case FLAG_SIZE: return "a size like 1048576, 64k or 1M";
    case FLAG_UINT: return "a whole number";
    case FLAG_DURATION:
        return "a duration like 500ms, 250us, 2s or 10m (at most 100000h)";
    case FLAG_BOOL: return "true or false";
    case FLAG_CHOICE: return "one of the listed choices";
    case FLAG_STR: break;
    }
    return "a value";
}

static void
print_choices(const flag_spec_t *f, FILE *out)
{
    const char *sep = " (";
    for (const char *const *c = f->choices; c && *c; c++) {
        fprintf(out, "%s%s", sep, *c);
        sep = "|";
    }
    if (f->choices && *f->choices)
        fputc(')', out);
}

static void
print_help(const flag_spec_t *specs, const char *usage, FILE *out)
{
    fputs(usage, out);
    fputs("\nflags:\n", out);
    for (const flag_spec_t *f = specs; f->name; f++) {
        int n = fprintf(out, "  --%s%s", f->name,
                        f->kind == FLAG_BOOL ? "" : "=V");
        fprintf(out, "%*s%s", n < 24 ? 24 - n : 1, "", f->help);
        if (f->kind == FLAG_CHOICE)
            print_choices(f, out);
        if (f->env)
            fprintf(out, " [$%s]", f->env);
        fputc('\n', out);
    }
    fputs("  -h, --help            show this help\n"
          "  --version             print the version\n", out);
}

/* The one line for a value of f that does not parse: from the flag, or
 * from its variable when var. */
static void
bad_value(const flag_spec_t *f, bool var, const char *v, const char *prog,
          FILE *err)
{
    if (var)
        fprintf(err, "%s: $%s=%s is not %s", prog, f->env, v, kind_hint(f));
    else
        fprintf(err, "%s: --%s=%s is not %s", prog, f->name, v, kind_hint(f));
    if (f->kind == FLAG_CHOICE)
        print_choices(f, err);
    fputc('\n', err);
}

flags_result
flags_parse(const flag_spec_t *specs, int argc, char **argv,
            const char *prog, const char *usage, int *first_arg, FILE *out,
            FILE *err)
{
    size_t n_specs = 0;
    while (specs[n_specs].name)
        n_specs++;
    bool *given = calloc(n_specs + 1, sizeof *given);
    flags_result rc = FLAGS_ERROR;

    if (given == NULL) {
        fprintf(err, "%s: out of memory\n", prog);
        return FLAGS_ERROR;
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(specs, usage, out);
            rc = FLAGS_HELP;
            goto out;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (first_arg == NULL) {
                fprintf(err, "%s: unexpected argument '%s' (try --help)\n",
                        prog, a);
                goto out;
            }
            break; /* positionals start here */
        }
        if (strcmp(a, "--version") == 0) {
            fprintf(out, "%s %s\n", prog, FONTE_VERSION);
            rc = FLAGS_VERSION;
            goto out;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t) (eq - name) : strlen(name);
        const flag_spec_t *f = specs;
        for (; f->name; f++)
            if (strlen(f->name) == nlen && strncmp(f->name, name, nlen) == 0)
                break;
        if (f->name == NULL) {
            fprintf(err, "%s: unknown flag '--%.*s' (try --help)\n", prog,
                    (int) nlen, name);
            goto out;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (f->kind == FLAG_BOOL)
            v = "true";
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(err, "%s: flag --%s needs %s\n", prog, f->name,
                    kind_hint(f));
            goto out;
        }
        if (!set_value(f, v)) {
            bad_value(f, false, v, prog, err);
            goto out;
        }
        given[f - specs] = true;
    }
    /* The environment, for the flags not given. */
    for (size_t k = 0; k < n_specs; k++) {
        const flag_spec_t *f = &specs[k];
        const char *v = f->env && !given[k] ? getenv(f->env) : NULL;
        if (v != NULL && *v != '\0' && !set_value(f, v)) {
            bad_value(f, true, v, prog, err);
            goto out;
        }
    }
    if (first_arg)
        *first_arg = i;
    rc = FLAGS_OK;
out:
    free(given);
    return rc;
}

int
flags_exit_code(flags_result r)
{
    switch (r) {
    case FLAGS_OK:
        return -1;
    case FLAGS_HELP:
    case FLAGS_VERSION:
        return 0;
    case FLAGS_ERROR:
        break;
    }
    return 2;
}

bool
flags_tcp_port_ok(const char *endpoint, bool bind)
{
    const char *colon;
    uint64_t port;

    if (strncmp(endpoint, "tcp://", 6) != 0)
        return true; /* ipc://, inproc://: no port */
    if ((colon = strrchr(endpoint + 6, ':')) == NULL)
        return false;
    if (bind && strcmp(colon + 1, "*") == 0)
        return true;
    return flags_parse_uint(colon + 1, &port) && port <= 65535 &&
           (port > 0 || bind);
}

bool
flags_endpoint_ok(const char *endpoint, bool bind)
{
    static const char *const schemes[] = { "tcp://", "ipc://", "inproc://" };
    size_t at = 0;

    if (endpoint == NULL)
        return false;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes && at == 0; i++)
        if (strncmp(endpoint, schemes[i], strlen(schemes[i])) == 0)
            at = strlen(schemes[i]);
    if (at == 0 || endpoint[at] == '\0' || !flags_tcp_port_ok(endpoint, bind))
        return false;
    if (at != 6)
        return true; /* ipc://PATH, inproc://NAME */
    /* tcp://HOST:PORT: a host, and one to connect to unless bound */
    size_t host = (size_t) (strrchr(endpoint, ':') - endpoint) - at;
    return host > 0 &&
           (bind || !(host == 1 && endpoint[at] == '*'));
}
