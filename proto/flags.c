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
flags_parse_duration(const char *s, int64_t *out_us)
{
    char *end;
    unsigned long long v;

    if (!leading_number(s, &v, &end))
        return false;
    unsigned long long mult;
    if (strcmp(end, "us") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0 || *end == '\0')
        mult = 1000;
    else if (strcmp(end, "s") == 0)
        mult = 1000000;
    else
        return false;
    if (v > (unsigned long long) INT64_MAX / mult)
        return false;
    *out_us = (int64_t) (v * mult);
    return true;
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
        return flags_parse_duration(v, (int64_t *) f->dst);
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
    case FLAG_DURATION: return "a duration like 500ms, 250us or 2s";
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
    fputs("  --help                show this help\n"
          "  --version             print the version\n", out);
}

flags_result
flags_parse(const flag_spec_t *specs, int argc, char **argv,
            const char *prog, const char *usage, int *first_arg, FILE *out,
            FILE *err)
{
    /* The environment first, so that flags override it. */
    for (const flag_spec_t *f = specs; f->name; f++) {
        const char *v = f->env ? getenv(f->env) : NULL;
        if (v != NULL && *v != '\0' && !set_value(f, v)) {
            fprintf(err, "%s: $%s=%s is not %s\n", prog, f->env, v,
                    kind_hint(f));
            return FLAGS_ERROR;
        }
    }

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (first_arg == NULL) {
                fprintf(err, "%s: unexpected argument '%s' (try --help)\n",
                        prog, a);
                return FLAGS_ERROR;
            }
            break; /* positionals start here */
        }
        if (strcmp(a, "--help") == 0) {
            print_help(specs, usage, out);
            return FLAGS_HELP;
        }
        if (strcmp(a, "--version") == 0) {
            fprintf(out, "%s %s\n", prog, FONTE_VERSION);
            return FLAGS_VERSION;
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
            return FLAGS_ERROR;
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
            return FLAGS_ERROR;
        }
        if (!set_value(f, v)) {
            fprintf(err, "%s: --%s=%s is not %s", prog, f->name, v,
                    kind_hint(f));
            if (f->kind == FLAG_CHOICE)
                print_choices(f, err);
            fputc('\n', err);
            return FLAGS_ERROR;
        }
    }
    if (first_arg)
        *first_arg = i;
    return FLAGS_OK;
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
