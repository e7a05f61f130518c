/*
 * fuzz_text.c - libFuzzer target for the decoders of text a user or an
 * operator hands fonte: flag values (sizes, counts, durations, CPUs), a
 * `fonte publish --jsonl` line, base64 payloads and CURVE certificates.
 *
 * The first byte picks the decoder, the rest is its text (NUL-ended, as
 * they all take it). Beyond "no crash, no leak, no sanitizer report":
 *   - a count that parses prints back to the same number, and parses
 *     again to it;
 *   - base64 that decodes re-encodes to a string that decodes to the
 *     same bytes;
 *   - a JSON line accepted as an event has a type and an object, and
 *     counts that match its arrays;
 *   - a key found in a certificate re-encodes to Z85 that decodes to it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cli.h"
#include "curve.h"
#include "flags.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_flags(const char *s)
{
    size_t sz;
    uint64_t u, again;
    int64_t us;
    int cpu;
    char buf[32];

    (void) flags_parse_size(s, &sz);
    (void) flags_parse_duration(s, &us);
    (void) flags_parse_duration_in(s, 1000, &us);
    (void) flags_parse_cpu(s, &cpu);
    if (flags_parse_uint(s, &u)) {
        snprintf(buf, sizeof buf, "%" PRIu64, u);
        if (!flags_parse_uint(buf, &again) || again != u)
            abort();
    }
}

static void
fuzz_base64(const char *s)
{
    uint8_t *bytes = NULL, *back = NULL;
    size_t n = 0, m = 0;

    if (!cli_unbase64(s, &bytes, &n))
        return;
    char *enc = cli_base64(bytes, n);
    if (enc == NULL)
        abort();
    if (!cli_unbase64(enc, &back, &m) || m != n ||
        (n > 0 && memcmp(back, bytes, n) != 0))
        abort();
    free(enc);
    free(back);
    free(bytes);
}

static void
fuzz_jsonl(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
    cli_spec_t it;
    char why[256] = "";

    if (j == NULL)
        return;
    if (cli_spec_from_json(&it, j, why, sizeof why)) {
        if (it.spec.type == NULL || it.spec.object == NULL ||
            it.spec.n_depends_on !=
                json_array_size(json_object_get(j, "deps")
                                    ? json_object_get(j, "deps")
                                    : json_object_get(j, "depends_on")) ||
            it.spec.n_meta != json_object_size(json_object_get(j, "meta")))
            abort();
    } else if (why[0] == '\0') {
        abort(); /* a refusal says why */
    }
    cli_spec_fini(&it);
    json_decref(j);
}

static void
fuzz_cert(const char *s)
{
    uint8_t key[FCURVE_KEY], back[FCURVE_KEY];
    char z85[FCURVE_Z85];

    if (!fcurve_find_key(s, "public-key", key))
        return;
    if (zmq_z85_encode(z85, key, FCURVE_KEY) == NULL ||
        zmq_z85_decode(back, z85) == NULL ||
        memcmp(back, key, FCURVE_KEY) != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *s = malloc(size); /* the text after the selector, NUL-ended */
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 4) {
    case 0:
        fuzz_flags(s);
        break;
    case 1:
        fuzz_base64(s);
        break;
    case 2:
        fuzz_jsonl(s);
        break;
    default:
        fuzz_cert(s);
        break;
    }
    free(s);
    return 0;
}
