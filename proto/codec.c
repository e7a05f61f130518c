/*
 * codec.c - checking and building fonte's wire messages (see codec.h).
 *
 * The event scanner reads the protobuf wire format directly: a tag varint
 * (field number << 3 | wire type), then a varint, 8 bytes, a length-
 * prefixed run, or 4 bytes. It keeps slices into the input instead of
 * copying, so the broker can validate every message it forwards without
 * touching the allocator. Field numbers below are those of fonte.proto.
 *
 * Singular fields follow protobuf's rule that the last occurrence wins;
 * the replay submessage, like any message field, merges its occurrences.
 * Unknown fields are skipped so that newer producers can add fields;
 * groups (wire types 3 and 4) are refused, as protobuf-c refuses them.
 */
#include "codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const codec_limits_t codec_limits_default = CODEC_LIMITS_DEFAULT;

/* Event field numbers (fonte.proto). */
enum {
    EV_ID = 1, EV_TYPE, EV_OBJECT, EV_DEPENDS_ON, EV_PRODUCER, EV_SESSION,
    EV_PRODUCER_SEQ, EV_TIME_US, EV_PAYLOAD_TYPE, EV_PAYLOAD, EV_META,
    EV_SEQ, EV_REPLAY
};
enum { RP_ID = 1, RP_ROOT, RP_TARGET, RP_REASON, RP_INDEX, RP_TOTAL };
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

void
codec_buf_free(codec_buf_t *buf)
{
    if (buf == NULL)
        return;
    free(buf->base != NULL ? buf->base : buf->data);
    buf->data = NULL;
    buf->base = NULL;
    buf->len = 0;
}

/* ------------------------------------------------------------------ */
/* rules on slices                                                     */

bool
codec_utf8_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *) s, *end = p + len;

    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t) (end - p) < n)
            return false;
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n;
    }
    return true;
}

/* Text without NUL, valid UTF-8, at most max bytes. One pass: eight
 * bytes at a time while they are ASCII without NUL (nearly all text),
 * byte by byte from the first that is not. */
static bool
text_ok(const char *s, size_t len, size_t max)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = ones << 7;
    size_t i = 0;
    uint64_t w;

    if (len > max)
        return false;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        if ((w & highs) != 0 || ((w - ones) & ~w & highs) != 0)
            break; /* a byte >= 0x80, or a NUL */
    }
    return memchr(s + i, 0, len - i) == NULL &&
           codec_utf8_valid(s + i, len - i);
}

/* name_class[c]: NAME_CHAR for [a-z0-9_-], NAME_DOT for '.'. */
enum { NAME_CHAR = 1, NAME_DOT = 2 };
static const uint8_t name_class[256] = {
    ['-'] = NAME_CHAR, ['.'] = NAME_DOT, ['_'] = NAME_CHAR,
    ['0'] = NAME_CHAR, ['1'] = NAME_CHAR, ['2'] = NAME_CHAR, ['3'] = NAME_CHAR,
    ['4'] = NAME_CHAR, ['5'] = NAME_CHAR, ['6'] = NAME_CHAR, ['7'] = NAME_CHAR,
    ['8'] = NAME_CHAR, ['9'] = NAME_CHAR,
    ['a'] = NAME_CHAR, ['b'] = NAME_CHAR, ['c'] = NAME_CHAR, ['d'] = NAME_CHAR,
    ['e'] = NAME_CHAR, ['f'] = NAME_CHAR, ['g'] = NAME_CHAR, ['h'] = NAME_CHAR,
    ['i'] = NAME_CHAR, ['j'] = NAME_CHAR, ['k'] = NAME_CHAR, ['l'] = NAME_CHAR,
    ['m'] = NAME_CHAR, ['n'] = NAME_CHAR, ['o'] = NAME_CHAR, ['p'] = NAME_CHAR,
    ['q'] = NAME_CHAR, ['r'] = NAME_CHAR, ['s'] = NAME_CHAR, ['t'] = NAME_CHAR,
    ['u'] = NAME_CHAR, ['v'] = NAME_CHAR, ['w'] = NAME_CHAR, ['x'] = NAME_CHAR,
    ['y'] = NAME_CHAR, ['z'] = NAME_CHAR,
};

static bool
name_chars_ok(const char *s, size_t len, bool allow_dot)
{
    const uint8_t ok = NAME_CHAR | (allow_dot ? NAME_DOT : 0);
    for (size_t i = 0; i < len; i++)
        if (!(name_class[(uint8_t) s[i]] & ok))
            return false;
    return true;
}

fonte_err
codec_check_type(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || !name_chars_ok(s, len, true))
        return FONTE_ETYPE;
    return FONTE_OK;
}

fonte_err
codec_check_object(const char *s, size_t len, size_t max)
{
    if (len == 0 || !text_ok(s, len, max))
        return FONTE_EOBJECT;
    return FONTE_OK;
}

fonte_err
codec_check_producer(const char *s, size_t len)
{
    if (len == 0 || len > CODEC_PRODUCER_MAX || !name_chars_ok(s, len, false))
        return FONTE_EPRODUCER;
    return FONTE_OK;
}

size_t
codec_format_id(char *buf, const char *producer, size_t producer_len,
                uint64_t session, uint64_t producer_seq)
{
    if (producer_len > CODEC_PRODUCER_MAX)
        producer_len = CODEC_PRODUCER_MAX;
    int n = snprintf(buf, CODEC_ID_MAX, "%.*s/%016" PRIx64 "/%" PRIu64,
                     (int) producer_len, producer, session, producer_seq);
    return n < 0 ? 0 : (size_t) n;
}

static bool
slice_eq(codec_slice_t a, const char *b, size_t blen)
{
    return a.len == blen && (blen == 0 || memcmp(a.ptr, b, blen) == 0);
}

static codec_slice_t
cstr(const char *s)
{
    codec_slice_t sl = { s ? s : "", s ? strlen(s) : 0 };
    return sl;
}

/* The rules shared by the wire scanner and the struct validator, in the
 * order both apply them, so both give the same code for the same event.
 * Dependencies and meta entries are checked item by item by the callers
 * (each with check_dep / check_meta) since they iterate differently. */
typedef struct event_fields {
    codec_slice_t id, type, object, producer, payload_type;
    uint64_t session, producer_seq;
    size_t n_deps, n_meta;
    bool has_replay;
    codec_slice_t replay_id, replay_root, replay_target, replay_reason;
} event_fields_t;

static fonte_err
check_head(const event_fields_t *f, const codec_limits_t *lim)
{
    fonte_err rc;

    if ((rc = codec_check_type(f->type.ptr, f->type.len, lim->max_type)))
        return rc;
    if ((rc = codec_check_object(f->object.ptr, f->object.len,
                                 lim->max_object)))
        return rc;
    if (f->n_deps > lim->max_deps)
        return FONTE_EDEPS;
    return FONTE_OK;
}

static fonte_err
check_dep(codec_slice_t dep, const codec_limits_t *lim)
{
    if (codec_check_object(dep.ptr, dep.len, lim->max_object) != FONTE_OK)
        return FONTE_EDEP;
    return FONTE_OK;
}

/* True if id is exactly what codec_format_id() writes for this producer
 * (at most CODEC_PRODUCER_MAX bytes: checked before), session and seq,
 * compared in place: this runs for every event the broker forwards, and
 * formatting with snprintf was a third of the whole scan. */
/* hex2 + 2 * b: byte b as two lowercase hex digits */
static const char hex2[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static bool
id_matches(codec_slice_t id, codec_slice_t producer, uint64_t session,
           uint64_t seq)
{
    char want[16 + 1 + 20], digits[20];
    size_t nd = 0;

    do {
        digits[nd++] = (char) ('0' + seq % 10);
        seq /= 10;
    } while (seq != 0);
    if (id.len != producer.len + 1 + 16 + 1 + nd)
        return false;
    const char *p = id.ptr;
    if (memcmp(p, producer.ptr, producer.len) != 0 || p[producer.len] != '/')
        return false;
    p += producer.len + 1;
    /* the rest, "<16 hex>/<digits>", built and compared in one go */
    for (int i = 14; i >= 0; i -= 2, session >>= 8)
        memcpy(want + i, hex2 + 2 * (session & 0xff), 2);
    want[16] = '/';
    for (size_t i = 0; i < nd; i++)
        want[17 + i] = digits[nd - 1 - i];
    return memcmp(p, want, 17 + nd) == 0;
}

static fonte_err
check_tail(const event_fields_t *f)
{
    fonte_err rc;

    if ((rc = codec_check_producer(f->producer.ptr, f->producer.len)))
        return rc;
    if (f->session == 0)
        return FONTE_ESESSION;
    if (f->producer_seq == 0)
        return FONTE_ESEQ;
    if (!id_matches(f->id, f->producer, f->session, f->producer_seq))
        return FONTE_EID;
    if (f->payload_type.len > CODEC_NAME_MAX)
        return FONTE_EFIELD;
    if (!text_ok(f->payload_type.ptr, f->payload_type.len, CODEC_NAME_MAX))
        return FONTE_EUTF8;
    if (f->n_meta > CODEC_META_MAX)
        return FONTE_EMETA;
    return FONTE_OK;
}

static fonte_err
check_meta(codec_slice_t key, codec_slice_t value)
{
    if (key.len == 0 || !text_ok(key.ptr, key.len, CODEC_META_KEY_MAX) ||
        !text_ok(value.ptr, value.len, CODEC_META_VALUE_MAX))
        return FONTE_EMETA;
    return FONTE_OK;
}

static fonte_err
check_replay(const event_fields_t *f, const codec_limits_t *lim)
{
    if (!f->has_replay)
        return FONTE_OK;
    if (f->replay_id.len == 0 ||
        !text_ok(f->replay_id.ptr, f->replay_id.len, CODEC_NAME_MAX) ||
        codec_check_object(f->replay_root.ptr, f->replay_root.len,
                           lim->max_object) != FONTE_OK ||
        (f->replay_target.len > 0 &&
         codec_check_producer(f->replay_target.ptr, f->replay_target.len)) ||
        !text_ok(f->replay_reason.ptr, f->replay_reason.len, CODEC_TEXT_MAX))
        return FONTE_EREPLAY;
    return FONTE_OK;
}

/* ------------------------------------------------------------------ */
/* protobuf wire reader                                                */

typedef struct reader {
    const uint8_t *p, *end;
} reader_t;

/* read_field sets only what the wire type carries, so every field_t is
 * zeroed where it is declared (GCC -O3 otherwise warns, -Werror). */
typedef struct field {
    uint32_t num;
    int wt;
    uint64_t u;      /* VARINT, I64, I32 */
    codec_slice_t s; /* LEN */
} field_t;

static inline bool
read_varint(reader_t *r, uint64_t *v)
{
    if (r->p < r->end && *r->p < 0x80) { /* tags, lengths: mostly 1 byte */
        *v = *r->p++;
        return true;
    }
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)
            return false; /* more than 64 bits */
        x |= (uint64_t) (b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* A tag or a length: a varint of at most 5 bytes, as protobuf-c reads
 * them (it refuses a longer one, padded or not; a scan that took it
 * would pass an event every protobuf-c reader then refuses). */
static inline bool
read_short_varint(reader_t *r, uint64_t *v)
{
    if (r->p < r->end && *r->p < 0x80) {
        *v = *r->p++;
        return true;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < 5; i++) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        x |= (uint64_t) (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static inline bool
read_fixed(reader_t *r, size_t n, uint64_t *v)
{
    if ((size_t) (r->end - r->p) < n)
        return false;
    uint64_t x = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&x, r->p, n); /* n is 4 or 8: little-endian on the wire too */
#else
    for (size_t i = 0; i < n; i++)
        x |= (uint64_t) r->p[i] << (8 * i);
#endif
    r->p += n;
    *v = x;
    return true;
}

/* Reads one field of any wire type. False on malformed input. */
static inline bool
read_field(reader_t *r, field_t *f)
{
    uint64_t tag, len;

    if (!read_short_varint(r, &tag) || tag > UINT32_MAX)
        return false;
    f->num = (uint32_t) (tag >> 3);
    f->wt = (int) (tag & 7);
    if (f->num == 0 || f->num > 536870911u)
        return false;
    switch (f->wt) {
    case WT_VARINT:
        return read_varint(r, &f->u);
    case WT_I64:
        return read_fixed(r, 8, &f->u);
    case WT_I32:
        return read_fixed(r, 4, &f->u);
    case WT_LEN:
        if (!read_short_varint(r, &len) || len > (uint64_t) (r->end - r->p))
            return false;
        f->s.ptr = (const char *) r->p;
        f->s.len = (size_t) len;
        r->p += len;
        return true;
    default:
        return false; /* groups, and 6 and 7 which do not exist */
    }
}

/* An earlier copy of a singular string field, about to give way to a
 * later one (protobuf keeps the last): it must still be text, since the
 * readers that unpack with protobuf-c check every copy (wire_check), and
 * an event one reader takes and another refuses would be stored and then
 * break every replay page it is on. */
static inline bool
copy_ok(const codec_slice_t *s)
{
    return s->len == 0 || text_ok(s->ptr, s->len, s->len);
}

/* What the structural walk of an event carries down into its
 * submessages: every field counted (CODEC_FIELDS_MAX, nested ones too:
 * protobuf-c spends ~90 bytes on each), and whether an earlier copy of a
 * singular string field was not text (FONTE_EUTF8 once the structure
 * has been walked). */
typedef struct walk_ctx {
    size_t fields;
    bool bad_copy;
} walk_ctx_t;

/* The structure of a map<string,string> entry (key = 1, value = 2, both
 * bytes on the wire). */
static fonte_err
walk_meta_entry(codec_slice_t entry, walk_ctx_t *ctx)
{
    reader_t r = { (const uint8_t *) entry.ptr,
                   (const uint8_t *) entry.ptr + entry.len };
    field_t f = { 0 };
    codec_slice_t key = { "", 0 }, value = { "", 0 };

    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        ctx->fields++;
        if (f.num == 1 || f.num == 2) {
            codec_slice_t *dst = f.num == 1 ? &key : &value;
            if (f.wt != WT_LEN)
                return FONTE_EDECODE;
            if (!copy_ok(dst))
                ctx->bad_copy = true;
            *dst = f.s;
        }
    }
    return FONTE_OK;
}

/* A map<string,string> entry: key = 1, value = 2 (walk_meta_entry has
 * checked its structure). */
static fonte_err
scan_meta_entry(codec_slice_t entry)
{
    reader_t r = { (const uint8_t *) entry.ptr,
                   (const uint8_t *) entry.ptr + entry.len };
    codec_slice_t key = { "", 0 }, value = { "", 0 };
    field_t f = { 0 };

    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        if (f.num == 1 || f.num == 2) {
            if (f.wt != WT_LEN)
                return FONTE_EDECODE;
            *(f.num == 1 ? &key : &value) = f.s;
        }
    }
    return check_meta(key, value);
}

/* The replay submessage's fields into ef (a later copy of the submessage
 * merges into an earlier one, as protobuf does), counted into *fields. */
static fonte_err
scan_replay(codec_slice_t msg, event_fields_t *ef, walk_ctx_t *ctx)
{
    reader_t r = { (const uint8_t *) msg.ptr,
                   (const uint8_t *) msg.ptr + msg.len };
    field_t f = { 0 };

    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        ctx->fields++;
        codec_slice_t *dst = NULL;
        switch (f.num) {
        case RP_ID: dst = &ef->replay_id; break;
        case RP_ROOT: dst = &ef->replay_root; break;
        case RP_TARGET: dst = &ef->replay_target; break;
        case RP_REASON: dst = &ef->replay_reason; break;
        case RP_INDEX:
        case RP_TOTAL:
            if (f.wt != WT_VARINT)
                return FONTE_EDECODE;
            break;
        default:
            break;
        }
        if (dst != NULL) {
            if (f.wt != WT_LEN)
                return FONTE_EDECODE;
            if (!copy_ok(dst))
                ctx->bad_copy = true;
            *dst = f.s;
        }
    }
    return FONTE_OK;
}

/* The walk of codec_event_scan without its rules: structure only (wire
 * types, lengths, the replay submessage's structure). Fills ef and view. */
#define SET_EMPTY_(s) ((s).ptr = "", (s).len = 0)

static fonte_err
walk_event(const void *body, size_t len, event_fields_t *ef,
           codec_view_t *view, walk_ctx_t *out)
{
    static const codec_view_t zero_view;
    reader_t r = { body, (const uint8_t *) body + len };
    field_t f = { 0 };
    fonte_err rc;
    walk_ctx_t ctx = { 0, false };

    /* view is a copy of zeroes and ef is set field by field: small
     * memsets (and copies of constants) compile to `rep stos`, whose
     * start-up cost was a third of this scan; and chained assignments
     * (a = b = empty) read each slice back right after storing it, a
     * 16-byte load of two 8-byte stores that stalls on store forwarding:
     * half of this walk's time, before each slice got its own stores. */
    *view = zero_view;
    SET_EMPTY_(view->payload);
    SET_EMPTY_(ef->id);
    SET_EMPTY_(ef->type);
    SET_EMPTY_(ef->object);
    SET_EMPTY_(ef->producer);
    SET_EMPTY_(ef->payload_type);
    SET_EMPTY_(ef->replay_id);
    SET_EMPTY_(ef->replay_root);
    SET_EMPTY_(ef->replay_target);
    SET_EMPTY_(ef->replay_reason);
    ef->session = 0;
    ef->producer_seq = 0;
    ef->n_deps = 0;
    ef->n_meta = 0;
    ef->has_replay = false;
    view->body = body;
    view->body_len = len;

    while (r.p < r.end) {
        const uint8_t *at = r.p;
        uint8_t t = *r.p;
        /* Fast path: a one-byte tag (fields 1..15: every field of an
         * event) read here, with what follows it read as read_field
         * reads it; anything else goes to read_field. */
        if (t >= 8 && t < 0x80 && (t & 7) <= WT_LEN) {
            uint64_t n;
            r.p++;
            f.num = t >> 3;
            f.wt = t & 7;
            if (f.wt == WT_VARINT) {
                if (!read_varint(&r, &f.u))
                    return FONTE_EDECODE;
            } else if (f.wt == WT_I64) {
                if (!read_fixed(&r, 8, &f.u))
                    return FONTE_EDECODE;
            } else {
                if (!read_short_varint(&r, &n) ||
                    n > (uint64_t) (r.end - r.p))
                    return FONTE_EDECODE;
                f.s.ptr = (const char *) r.p;
                f.s.len = (size_t) n;
                r.p += n;
            }
        } else if (!read_field(&r, &f)) {
            return FONTE_EDECODE;
        }
        ctx.fields++;
        codec_slice_t *dst = NULL;
        int want = WT_LEN;
        switch (f.num) {
        case EV_ID: dst = &ef->id; break;
        case EV_TYPE: dst = &ef->type; break;
        case EV_OBJECT: dst = &ef->object; break;
        case EV_PRODUCER: dst = &ef->producer; break;
        case EV_PAYLOAD_TYPE: dst = &ef->payload_type; break;
        case EV_PAYLOAD: dst = &view->payload; break;
        case EV_DEPENDS_ON:
            if (ef->n_deps++ == 0)
                view->deps_at = (size_t) (at - (const uint8_t *) body);
            view->deps_end = (size_t) (r.p - (const uint8_t *) body);
            break;
        case EV_META:
            ef->n_meta++; /* its inside: codec_event_scan */
            break;
        case EV_REPLAY:
            ef->has_replay = true;
            if (f.wt == WT_LEN &&
                (rc = scan_replay(f.s, ef, &ctx)) != FONTE_OK)
                return rc;
            break;
        case EV_SESSION:
            want = WT_I64;
            ef->session = f.u;
            break;
        case EV_PRODUCER_SEQ:
            want = WT_VARINT;
            ef->producer_seq = f.u;
            break;
        case EV_TIME_US:
            want = WT_VARINT;
            view->time_us = (int64_t) f.u;
            break;
        case EV_SEQ:
            want = WT_VARINT;
            view->seq = f.u;
            break;
        default:
            want = f.wt; /* unknown: skipped */
            break;
        }
        if (f.wt != want)
            return FONTE_EDECODE;
        if (dst != NULL) {
            if (dst->len > 0 && dst != &view->payload && !copy_ok(dst))
                ctx.bad_copy = true; /* an earlier copy, not text */
            /* Field by field: a 16-byte copy of f.s, just written as two
             * 8-byte halves, would stall on store forwarding. */
            dst->ptr = f.s.ptr;
            dst->len = f.s.len;
        }
    }

    view->id = ef->id;
    view->type = ef->type;
    view->object = ef->object;
    view->producer = ef->producer;
    view->payload_type = ef->payload_type;
    view->session = ef->session;
    view->producer_seq = ef->producer_seq;
    view->n_deps = ef->n_deps;
    view->n_meta = ef->n_meta;
    view->has_replay = ef->has_replay;
    view->replay_target = ef->replay_target;
    view->replay_root = ef->replay_root;
    if (out != NULL)
        *out = ctx;
    return FONTE_OK;
}

fonte_err
codec_event_fields(const void *body, size_t len, codec_view_t *view)
{
    event_fields_t ef;
    return walk_event(body, len, &ef, view, NULL);
}

fonte_err
codec_event_scan(const void *body, size_t len, const codec_limits_t *lim,
                 codec_view_t *view)
{
    event_fields_t ef;
    reader_t r = { body, (const uint8_t *) body + len };
    field_t f = { 0 };
    fonte_err rc;

    if (len > lim->max_msg)
        return FONTE_ETOOBIG;
    walk_ctx_t ctx;
    if ((rc = walk_event(body, len, &ef, view, &ctx)) != FONTE_OK)
        return rc;
    /* the meta entries' structure (walk_event, shared with the replay's
     * hot path, does not look inside them), with the event's: a malformed
     * entry is EDECODE before any rule */
    if (ef.n_meta > 0) {
        r.p = body;
        while (r.p < r.end) {
            (void) read_field(&r, &f); /* cannot fail: walked above */
            if (f.num == EV_META &&
                (rc = walk_meta_entry(f.s, &ctx)) != FONTE_OK)
                return rc;
        }
    }
    /* after the whole structure, before the rules: too many fields for a
     * protobuf-c reader's budget, or an earlier copy of a string field
     * (protobuf keeps the last) that is not text */
    if (ctx.fields > CODEC_FIELDS_MAX)
        return FONTE_EDECODE;
    if (ctx.bad_copy)
        return FONTE_EUTF8;

    /* Same order as codec_event_validate: head, deps, tail, meta, replay. */
    if ((rc = check_head(&ef, lim)) != FONTE_OK)
        return rc;
    size_t pos = 0;
    codec_slice_t dep;
    while (ef.n_deps > 0 && codec_view_next_dep(view, &pos, &dep))
        if ((rc = check_dep(dep, lim)) != FONTE_OK)
            return rc;
    if ((rc = check_tail(&ef)) != FONTE_OK)
        return rc;
    if (ef.n_meta > 0) {
        r.p = body;
        while (r.p < r.end) {
            (void) read_field(&r, &f); /* cannot fail: read once above */
            if (f.num == EV_META && (rc = scan_meta_entry(f.s)) != FONTE_OK)
                return rc;
        }
    }
    return check_replay(&ef, lim);
}

/* The wire type each Event field must have (-1: unknown, any). */
static const int8_t ev_wire_type[16] = {
    -1,      WT_LEN,    WT_LEN, WT_LEN, WT_LEN, WT_LEN, WT_I64, WT_VARINT,
    WT_VARINT, WT_LEN, WT_LEN, WT_LEN, WT_VARINT, WT_LEN, -1, -1,
};

fonte_err
codec_event_graph(const void *body, size_t len, codec_slice_t *object,
                  codec_slice_t *deps, size_t cap, size_t *n_deps)
{
    const uint8_t *p = body, *end = p + len;
    codec_slice_t s;

    _Static_assert(EV_REPLAY == 13, "ev_wire_type follows fonte.proto");
    object->ptr = "";
    object->len = 0;
    *n_deps = 0;
    while (p < end) {
        uint8_t t = *p;
        int want = t < 0x80 ? ev_wire_type[t >> 3] : -1;
        /* Fast path: a one-byte tag of a known field and, for bytes, a
         * one-byte length - nearly every field of an event. */
        if (t < 0x80 && want >= 0) {
            if ((t & 7) != want)
                return FONTE_EDECODE;
            if (want == WT_LEN && end - p >= 2 && p[1] < 0x80) {
                size_t n = p[1];
                if (n > (size_t) (end - p - 2))
                    return FONTE_EDECODE;
                s.ptr = (const char *) p + 2;
                s.len = n;
                p += 2 + n;
                goto got_bytes;
            }
            if (want == WT_I64) {
                if (end - p < 9)
                    return FONTE_EDECODE;
                p += 9;
                continue;
            }
            if (want == WT_VARINT) { /* skipped as read_varint reads it */
                const uint8_t *q = p + 1;
                size_t i = 0;
                while (q + i < end && i < 10 && (q[i] & 0x80))
                    i++;
                if (q + i >= end || i == 10 || (i == 9 && q[9] > 1))
                    return FONTE_EDECODE;
                p = q + i + 1;
                continue;
            }
        }
        /* Anything else: the general reader. */
        reader_t r = { p, end };
        field_t f = { 0 };
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        p = r.p;
        want = f.num < 16 ? ev_wire_type[f.num] : -1;
        if (want >= 0 && f.wt != want)
            return FONTE_EDECODE;
        if (f.wt != WT_LEN || f.num >= 16)
            continue;
        s = f.s;
        t = (uint8_t) (f.num << 3 | WT_LEN);
    got_bytes:
        switch (t >> 3) {
        case EV_OBJECT:
            *object = s;
            break;
        case EV_DEPENDS_ON:
            if (*n_deps < cap)
                deps[*n_deps] = s;
            (*n_deps)++;
            break;
        case EV_REPLAY: {
            /* the same nested walk as codec_event_fields, results unused */
            event_fields_t ef;
            fonte_err rc;
            walk_ctx_t ctx = { 0, false };
            SET_EMPTY_(ef.replay_id); /* scan_replay looks at earlier ones */
            SET_EMPTY_(ef.replay_root);
            SET_EMPTY_(ef.replay_target);
            SET_EMPTY_(ef.replay_reason);
            if ((rc = scan_replay(s, &ef, &ctx)) != FONTE_OK)
                return rc;
            break;
        }
        default:
            break;
        }
    }
    return FONTE_OK;
}

bool
codec_view_next_dep(const codec_view_t *view, size_t *pos, codec_slice_t *dep)
{
    /* no dependency lies before the first or after the last (the walk
     * noted where they are): the payload after them is not read again,
     * which cost an event with one dependency 35 ns of an 88 ns scan */
    size_t from = *pos < view->deps_at ? view->deps_at : *pos;
    size_t end = view->deps_end != 0 ? view->deps_end : view->body_len;
    if (from > end)
        from = end;
    reader_t r = { view->body + from, view->body + end };
    field_t f = { 0 };

    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return false;
        if (f.num == EV_DEPENDS_ON && f.wt == WT_LEN) {
            *dep = f.s;
            *pos = (size_t) (r.p - view->body);
            return true;
        }
    }
    *pos = view->body_len;
    return false;
}

/* ------------------------------------------------------------------ */
/* topics and whole messages                                           */

static bool
has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

fonte_err
codec_topic_class(const void *topic, size_t len, const codec_limits_t *lim,
                  codec_class_t *cls)
{
    const char *t = topic;
    size_t plen = strlen(CODEC_TOPIC_REPLAY);

    if (len == 0)
        return FONTE_ETOPIC;
    if (t[0] != '$') {
        *cls = CODEC_EVENT; /* its length is the type's: checked with it */
    } else if (has_prefix(t, len, CODEC_TOPIC_REPLAY)) {
        if (len > plen + CODEC_PRODUCER_MAX + 1 + lim->max_type)
            return FONTE_ETOPIC;
        *cls = CODEC_REPLAY;
    } else if (has_prefix(t, len, CODEC_TOPIC_ACK)) {
        if (len > strlen(CODEC_TOPIC_ACK) + CODEC_PRODUCER_MAX)
            return FONTE_ETOPIC;
        *cls = CODEC_ACK;
    } else if (len == strlen(CODEC_TOPIC_AUDIT) &&
               memcmp(t, CODEC_TOPIC_AUDIT, len) == 0) {
        *cls = CODEC_AUDIT;
    } else if (has_prefix(t, len, CODEC_TOPIC_SYS)) {
        if (len > strlen(CODEC_TOPIC_SYS) + CODEC_PRODUCER_MAX)
            return FONTE_ETOPIC;
        *cls = CODEC_STATS;
    } else {
        return FONTE_ERESERVED;
    }
    return FONTE_OK;
}

/* "$replay.<target>.<type>": target must be a valid name (no dot). */
static fonte_err
check_replay_topic(const char *t, size_t len, const codec_view_t *v)
{
    size_t plen = strlen(CODEC_TOPIC_REPLAY);
    const char *target = t + plen;
    const char *dot = memchr(target, '.', len - plen);

    if (dot == NULL)
        return FONTE_ETOPIC;
    size_t tlen = (size_t) (dot - target);
    if (codec_check_producer(target, tlen) != FONTE_OK)
        return FONTE_ETOPIC;
    if (!v->has_replay)
        return FONTE_EREPLAY;
    if (!slice_eq(v->type, dot + 1, len - plen - tlen - 1))
        return FONTE_ETOPIC;
    if (!slice_eq(v->replay_target, target, tlen))
        return FONTE_EREPLAY;
    return FONTE_OK;
}

fonte_err
codec_check(const codec_frame_t *frames, size_t nframes,
            const codec_limits_t *lim, codec_class_t *cls, codec_view_t *view)
{
    codec_view_t local;
    fonte_err rc;

    if (nframes != 2)
        return FONTE_EFRAMES;
    if (frames[0].size > lim->max_msg || frames[1].size > lim->max_msg)
        return FONTE_ETOOBIG;
    if ((rc = codec_topic_class(frames[0].data, frames[0].size, lim, cls)))
        return rc;

    const char *t = frames[0].data;
    size_t tlen = frames[0].size;
    const void *body = frames[1].data;
    size_t blen = frames[1].size;
    if (view == NULL)
        view = &local;

    switch (*cls) {
    case CODEC_EVENT:
        if ((rc = codec_event_scan(body, blen, lim, view)) != FONTE_OK)
            return rc;
        return slice_eq(view->type, t, tlen) ? FONTE_OK : FONTE_ETOPIC;
    case CODEC_REPLAY:
        if ((rc = codec_event_scan(body, blen, lim, view)) != FONTE_OK)
            return rc;
        return check_replay_topic(t, tlen, view);
    case CODEC_ACK: {
        Fonte__Ack *ack = NULL;
        size_t plen = strlen(CODEC_TOPIC_ACK);
        if ((rc = codec_ack_decode(body, blen, lim, &ack)) != FONTE_OK)
            return rc;
        bool same = strlen(ack->producer) == tlen - plen &&
                    memcmp(ack->producer, t + plen, tlen - plen) == 0;
        fonte__ack__free_unpacked(ack, NULL);
        return same ? FONTE_OK : FONTE_ETOPIC;
    }
    case CODEC_AUDIT: {
        Fonte__ReplayAudit *audit = NULL;
        if ((rc = codec_audit_decode(body, blen, lim, &audit)) != FONTE_OK)
            return rc;
        fonte__replay_audit__free_unpacked(audit, NULL);
        return FONTE_OK;
    }
    case CODEC_STATS: {
        Fonte__Stats *stats = NULL;
        size_t plen = strlen(CODEC_TOPIC_SYS);
        if ((rc = codec_stats_decode(body, blen, lim, &stats)) != FONTE_OK)
            return rc;
        bool same = strlen(stats->source) == tlen - plen &&
                    memcmp(stats->source, t + plen, tlen - plen) == 0;
        fonte__stats__free_unpacked(stats, NULL);
        return same ? FONTE_OK : FONTE_ETOPIC;
    }
    }
    return FONTE_EINTERNAL;
}

/* ------------------------------------------------------------------ */
/* protobuf-c structs                                                  */

fonte_err
codec_event_validate(const Fonte__Event *ev, const codec_limits_t *lim)
{
    event_fields_t ef;
    fonte_err rc;

    if (ev == NULL)
        return FONTE_EINVAL;
    /* a payload length near SIZE_MAX (a failed read()'s -1 kept in a
     * size_t) would wrap protobuf-c's packed size to a small number: an
     * encoder sized by it would then copy SIZE_MAX bytes */
    if (ev->payload.len > lim->max_msg)
        return FONTE_ETOOBIG;
    memset(&ef, 0, sizeof ef);
    ef.id = cstr(ev->id);
    ef.type = cstr(ev->type);
    ef.object = cstr(ev->object);
    ef.producer = cstr(ev->producer);
    ef.payload_type = cstr(ev->payload_type);
    ef.session = ev->session;
    ef.producer_seq = ev->producer_seq;
    ef.n_deps = ev->n_depends_on;
    ef.n_meta = ev->n_meta;
    if (ev->replay != NULL) {
        ef.has_replay = true;
        ef.replay_id = cstr(ev->replay->replay_id);
        ef.replay_root = cstr(ev->replay->root);
        ef.replay_target = cstr(ev->replay->target);
        ef.replay_reason = cstr(ev->replay->reason);
    }

    if ((rc = check_head(&ef, lim)) != FONTE_OK)
        return rc;
    for (size_t i = 0; i < ev->n_depends_on; i++)
        if ((rc = check_dep(cstr(ev->depends_on[i]), lim)) != FONTE_OK)
            return rc;
    if ((rc = check_tail(&ef)) != FONTE_OK)
        return rc;
    for (size_t i = 0; i < ev->n_meta; i++) {
        const Fonte__Event__MetaEntry *m = ev->meta[i];
        if (m == NULL)
            return FONTE_EMETA;
        if ((rc = check_meta(cstr(m->key), cstr(m->value))) != FONTE_OK)
            return rc;
    }
    return check_replay(&ef, lim);
}

typedef struct budget {
    size_t left;
} budget_t;

static void *
budget_alloc(void *data, size_t size)
{
    budget_t *b = data;
    if (size > b->left)
        return NULL;
    b->left -= size;
    return malloc(size);
}

static void
budget_free(void *data, void *ptr)
{
    (void) data;
    free(ptr);
}

/* Walks a message's wire format with its descriptor before protobuf-c
 * sees it: every tag well formed (protobuf-c accepts an overlong tag for
 * field 0 that it then cannot round-trip), nesting bounded, and every
 * string field valid UTF-8 without NUL (protobuf-c's C strings would
 * silently end at the NUL). */
static fonte_err
wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
           size_t len, int depth)
{
    reader_t r = { p, p + len };
    field_t f = { 0 };
    fonte_err rc;

    if (depth > 8)
        return FONTE_EDECODE;
    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field(desc, f.num);
        if (fd == NULL || f.wt != WT_LEN)
            continue; /* unknown, or a scalar protobuf-c checks itself */
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            if ((rc = wire_check(fd->descriptor, (const uint8_t *) f.s.ptr,
                                 f.s.len, depth + 1)) != FONTE_OK)
                return rc;
        } else if (fd->type == PROTOBUF_C_TYPE_STRING) {
            if (!text_ok(f.s.ptr, f.s.len, f.s.len))
                return FONTE_EUTF8;
        }
    }
    return FONTE_OK;
}

/* protobuf-c's unpack under the allocation budget, with no checks of
 * ours: callers have walked the bytes already. */
static fonte_err
unpack_budgeted(const ProtobufCMessageDescriptor *desc, const void *data,
                size_t len, ProtobufCMessage **msg_p)
{
    static const uint8_t nothing = 0;

    /* Bounds what a hostile message can make protobuf-c allocate: about
     * 90 bytes for each field (a scanned-member slot, an unknown field's
     * record) and a struct for each submessage, so some 50 times the
     * bytes of a message made of the smallest fields, and a few times
     * the bytes of a real one. Every event the scan passes decodes within
     * it, alone (at most CODEC_FIELDS_MAX fields) or in a Reply's page:
     * an event one reader stores and another cannot decode would break
     * every replay page it is on. */
    budget_t b = { 64 * len + 65536 };
    ProtobufCAllocator alloc = { budget_alloc, budget_free, &b };
    ProtobufCMessage *m = protobuf_c_message_unpack(
        desc, &alloc, len, len > 0 ? data : &nothing);
    if (m == NULL)
        return FONTE_EDECODE;
    *msg_p = m;
    return FONTE_OK;
}

fonte_err
codec_unpack(const ProtobufCMessageDescriptor *desc, const void *data,
             size_t len, size_t max, ProtobufCMessage **msg_p)
{
    fonte_err rc;

    *msg_p = NULL;
    if (len > max)
        return FONTE_ETOOBIG;
    if ((rc = wire_check(desc, data, len, 0)) != FONTE_OK)
        return rc;
    return unpack_budgeted(desc, data, len, msg_p);
}

fonte_err
codec_pack(const ProtobufCMessage *msg, codec_buf_t *out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);

    out->data = malloc(n > 0 ? n : 1);
    out->base = NULL;
    out->len = 0;
    if (out->data == NULL)
        return FONTE_ENOMEM;
    out->len = protobuf_c_message_pack(msg, out->data);
    return FONTE_OK;
}

fonte_err
codec_event_unpack(const void *body, size_t len, const codec_limits_t *lim,
                   Fonte__Event **event_p)
{
    codec_view_t view;
    fonte_err rc;

    *event_p = NULL;
    if ((rc = codec_event_scan(body, len, lim, &view)) != FONTE_OK)
        return rc;
    /* The scan is the event's check (stricter than wire_check except on
     * the earlier copies of a repeated singular field, which protobuf
     * discards anyway). */
    return unpack_budgeted(&fonte__event__descriptor, body, len,
                           (ProtobufCMessage **) event_p);
}

fonte_err
codec_event_decode(const codec_frame_t *frames, size_t nframes,
                   const codec_limits_t *lim, Fonte__Event **event_p)
{
    codec_class_t cls;
    fonte_err rc;

    *event_p = NULL;
    if ((rc = codec_check(frames, nframes, lim, &cls, NULL)) != FONTE_OK)
        return rc;
    if (cls != CODEC_EVENT && cls != CODEC_REPLAY)
        return FONTE_ETOPIC;
    return unpack_budgeted(&fonte__event__descriptor, frames[1].data,
                           frames[1].size, (ProtobufCMessage **) event_p);
}

void
codec_event_free(Fonte__Event **event_p)
{
    if (event_p == NULL || *event_p == NULL)
        return;
    fonte__event__free_unpacked(*event_p, NULL);
    *event_p = NULL;
}

fonte_err
codec_event_topic(const Fonte__Event *ev, char *buf, size_t cap)
{
    int n;
    const char *type = ev->type ? ev->type : "";

    if (ev->replay != NULL && ev->replay->target != NULL &&
        ev->replay->target[0] != '\0')
        n = snprintf(buf, cap, "%s%s.%s", CODEC_TOPIC_REPLAY,
                     ev->replay->target, type);
    else
        n = snprintf(buf, cap, "%s", type);
    if (n < 0 || (size_t) n >= cap)
        return FONTE_ELIMIT;
    return FONTE_OK;
}

fonte_err
codec_event_encode(const Fonte__Event *ev, const codec_limits_t *lim,
                   codec_buf_t *topic, codec_buf_t *body)
{
    char t[CODEC_TOPIC_PREFIX_MAX + 1024];
    fonte_err rc;

    topic->data = body->data = NULL;
    topic->base = body->base = NULL;
    topic->len = body->len = 0;
    if ((rc = codec_event_validate(ev, lim)) != FONTE_OK)
        return rc;
    if ((rc = codec_event_topic(ev, t, sizeof t)) != FONTE_OK)
        return rc;
    if (protobuf_c_message_get_packed_size(&ev->base) > lim->max_msg)
        return FONTE_ETOOBIG;
    size_t tlen = strlen(t);
    topic->data = malloc(tlen > 0 ? tlen : 1);
    if (topic->data == NULL)
        return FONTE_ENOMEM;
    memcpy(topic->data, t, tlen);
    topic->len = tlen;
    if ((rc = codec_pack(&ev->base, body)) != FONTE_OK) {
        codec_buf_free(topic);
        return rc;
    }
    return FONTE_OK;
}

/* ------------------------------------------------------------------ */
/* replies, zero-copy                                                  */

/* A Reply's body is one of replay (3), status_reply (4) and backup_reply
 * (5), bytes on the wire, and at most one of them: protobuf would merge
 * two copies of one and keep the last of two different ones, which a
 * zero-copy walk does not do; refusing both keeps codec_reply_scan and
 * codec_reply_decode in agreement (a listener never sends either). The
 * body's field number, 0 for none, -1 if malformed. */
static int
reply_body(const void *data, size_t len)
{
    reader_t r = { data, (const uint8_t *) data + len };
    field_t f = { 0 };
    int body = 0;

    while (r.p < r.end) {
        if (!read_field(&r, &f))
            return -1;
        if (f.num >= 3 && f.num <= 5) {
            if (f.wt != WT_LEN || body != 0)
                return -1;
            body = (int) f.num;
        }
    }
    return body;
}

fonte_err
codec_reply_scan(const void *data, size_t len, const codec_limits_t *lim,
                 codec_reply_view_t *v)
{
    reader_t r = { data, (const uint8_t *) data + len };
    field_t f = { 0 };

    memset(v, 0, sizeof *v);
    v->error.ptr = v->cursor.ptr = "";
    if (len > lim->max_reply)
        return FONTE_ETOOBIG;
    int body = reply_body(data, len);
    if (body < 0)
        return FONTE_EDECODE;
    if (body == 4 || body == 5) {
        /* a status or backup answer, small and rare: not walked here,
         * so protobuf-c's word on it is taken, as codec_reply_decode's */
        ProtobufCMessage *m = NULL;
        fonte_err rc = codec_unpack(&fonte__reply__descriptor, data, len,
                                    lim->max_reply, &m);
        if (m != NULL)
            protobuf_c_message_free_unpacked(m, NULL);
        if (rc != FONTE_OK)
            return rc;
    }
    while (r.p < r.end) {
        (void) read_field(&r, &f); /* cannot fail: reply_body read it */
        if (f.num == 1 && f.wt == WT_VARINT) {
            v->status = (int) f.u;
        } else if (f.num == 2 && f.wt == WT_LEN) {
            if (!text_ok(f.s.ptr, f.s.len, f.s.len))
                return FONTE_EUTF8; /* every string, as wire_check */
            v->error = f.s;
        } else if (f.num == 3) {
            v->has_replay = true;
            v->replay = (const uint8_t *) f.s.ptr;
            v->replay_len = f.s.len;
        } else if (f.num <= 2) {
            return FONTE_EDECODE; /* a known field with a wrong wire type */
        }
    }
    if (v->status < 0 || v->status > FONTE__REPLY__STATUS__INTERNAL)
        return FONTE_EDECODE;
    /* ReplayReply: the wire type of each field it knows */
    static const int8_t want[7] = { -1,     WT_LEN, WT_LEN,   WT_VARINT,
                                    WT_LEN, WT_LEN, WT_VARINT };
    r.p = v->replay;
    r.end = v->replay + v->replay_len;
    while (v->has_replay && r.p < r.end) {
        if (!read_field(&r, &f))
            return FONTE_EDECODE;
        if (f.num < 7 && f.wt != want[f.num])
            return FONTE_EDECODE;
        if (f.num == 1)
            v->n_events++;
        else if (f.num == 2)
            v->cursor = f.s;
        else if (f.num == 3)
            v->total = f.u;
        else if ((f.num == 4 || f.num == 5) &&
                 !text_ok(f.s.ptr, f.s.len, f.s.len))
            return FONTE_EUTF8; /* cycles, replay_id: strings */
    }
    return FONTE_OK;
}

bool
codec_reply_next_event(const codec_reply_view_t *v, size_t *pos,
                       codec_slice_t *event)
{
    reader_t r = { v->replay + *pos, v->replay + v->replay_len };
    field_t f = { 0 };

    while (v->has_replay && r.p < r.end) {
        if (!read_field(&r, &f))
            return false;
        if (f.num == 1 && f.wt == WT_LEN) {
            *event = f.s;
            *pos = (size_t) (r.p - v->replay);
            return true;
        }
    }
    *pos = v->replay_len;
    return false;
}

/* ------------------------------------------------------------------ */
/* writing protobuf by hand                                            */

void
codec_writer_fini(codec_writer_t *w)
{
    free(w->data);
    memset(w, 0, sizeof *w);
}

bool
codec_writer_reserve(codec_writer_t *w, size_t n)
{
    if (w->failed)
        return false;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *d = realloc(w->data, cap);
        if (d == NULL) {
            w->failed = true;
            return false;
        }
        w->data = d;
        w->cap = cap;
    }
    return true;
}

void
codec_writer_raw(codec_writer_t *w, const void *p, size_t n)
{
    if (!codec_writer_reserve(w, n))
        return;
    if (n > 0)
        memcpy(w->data + w->len, p, n);
    w->len += n;
}

static size_t
varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* v as a varint at p (room for 10 bytes); returns its length. */
static size_t
put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t) v;
    return n;
}

void
codec_writer_varint(codec_writer_t *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t) v;
    codec_writer_raw(w, b, n);
}

void
codec_writer_tag(codec_writer_t *w, uint32_t field, int wire_type)
{
    codec_writer_varint(w, ((uint64_t) field << 3) | (uint64_t) wire_type);
}

void
codec_writer_bytes(codec_writer_t *w, uint32_t field, const void *p, size_t n)
{
    codec_writer_tag(w, field, WT_LEN);
    codec_writer_varint(w, n);
    codec_writer_raw(w, p, n);
}

void
codec_writer_uint(codec_writer_t *w, uint32_t field, uint64_t v)
{
    codec_writer_tag(w, field, WT_VARINT);
    codec_writer_varint(w, v);
}

void
codec_writer_event(codec_writer_t *w, uint32_t as_field, const void *body,
                   size_t len, uint64_t seq, const Fonte__Replay *replay)
{
    size_t rlen = replay ? protobuf_c_message_get_packed_size(&replay->base) : 0;
    size_t tail = 1 + varint_len(seq);
    if (replay)
        tail += 1 + varint_len(rlen) + rlen;
    /* the common case in one go: tag, length, bytes, seq (one-byte tags) */
    _Static_assert(EV_SEQ < 16, "seq's tag is one byte");
    if (as_field != 0 && as_field < 16 &&
        codec_writer_reserve(w, 1 + 10 + len + 1 + 10)) {
        uint8_t *p = w->data + w->len;
        *p++ = (uint8_t) (as_field << 3 | WT_LEN);
        p += put_varint(p, len + tail);
        memcpy(p, body, len);
        p += len;
        *p++ = (uint8_t) (EV_SEQ << 3 | WT_VARINT);
        p += put_varint(p, seq);
        w->len = (size_t) (p - w->data);
    } else {
        if (as_field != 0) {
            codec_writer_tag(w, as_field, WT_LEN);
            codec_writer_varint(w, len + tail);
        }
        codec_writer_raw(w, body, len);
        codec_writer_uint(w, EV_SEQ, seq);
    }
    if (replay != NULL) {
        codec_writer_tag(w, EV_REPLAY, WT_LEN);
        codec_writer_varint(w, rlen);
        if (w->failed || w->len + rlen > w->cap) {
            uint8_t *tmp = malloc(rlen ? rlen : 1);
            if (tmp == NULL) {
                w->failed = true;
                return;
            }
            protobuf_c_message_pack(&replay->base, tmp);
            codec_writer_raw(w, tmp, rlen);
            free(tmp);
        } else {
            protobuf_c_message_pack(&replay->base, w->data + w->len);
            w->len += rlen;
        }
    }
}

/* ------------------------------------------------------------------ */
/* control and query messages                                          */

bool
codec_listener_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; n++)
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    return n == CODEC_LISTENER_ID_LEN;
}

fonte_err
codec_ack_decode(const void *data, size_t len, const codec_limits_t *lim,
                 Fonte__Ack **ack_p)
{
    fonte_err rc = codec_unpack(&fonte__ack__descriptor, data, len,
                                lim->max_msg, (ProtobufCMessage **) ack_p);
    if (rc != FONTE_OK)
        return rc;
    Fonte__Ack *a = *ack_p;
    if ((rc = codec_check_producer(a->producer, strlen(a->producer))) ==
            FONTE_OK && a->session == 0)
        rc = FONTE_ESESSION;
    if (rc == FONTE_OK && a->listener[0] != '\0' &&
        !codec_listener_id_valid(a->listener))
        rc = FONTE_EFIELD;
    if (rc != FONTE_OK) {
        fonte__ack__free_unpacked(a, NULL);
        *ack_p = NULL;
    }
    return rc;
}

fonte_err
codec_stats_decode(const void *data, size_t len, const codec_limits_t *lim,
                   Fonte__Stats **stats_p)
{
    fonte_err rc = codec_unpack(&fonte__stats__descriptor, data, len,
                                lim->max_msg, (ProtobufCMessage **) stats_p);
    if (rc != FONTE_OK)
        return rc;
    Fonte__Stats *s = *stats_p;
    if ((rc = codec_check_producer(s->source, strlen(s->source))) !=
        FONTE_OK) {
        fonte__stats__free_unpacked(s, NULL);
        *stats_p = NULL;
    }
    return rc;
}

fonte_err
codec_audit_decode(const void *data, size_t len, const codec_limits_t *lim,
                   Fonte__ReplayAudit **audit_p)
{
    fonte_err rc = codec_unpack(&fonte__replay_audit__descriptor, data, len,
                                lim->max_msg, (ProtobufCMessage **) audit_p);
    if (rc != FONTE_OK)
        return rc;
    Fonte__ReplayAudit *a = *audit_p;
    if ((unsigned) a->state > FONTE__REPLAY_AUDIT__STATE__FAILED)
        rc = FONTE_EDECODE;
    else if (strlen(a->replay_id) > CODEC_NAME_MAX ||
             strlen(a->root) > lim->max_object ||
             strlen(a->target) > CODEC_PRODUCER_MAX ||
             strlen(a->reason) > CODEC_TEXT_MAX)
        rc = FONTE_EFIELD;
    if (rc != FONTE_OK) {
        fonte__replay_audit__free_unpacked(a, NULL);
        *audit_p = NULL;
    }
    return rc;
}

static fonte_err
check_replay_request(const Fonte__ReplayRequest *r, const codec_limits_t *lim)
{
    fonte_err rc;

    if (r->cursor.len > 0) /* a next page: only cursor and page_size count */
        return r->cursor.len > CODEC_CURSOR_MAX ? FONTE_EFIELD : FONTE_OK;
    if ((rc = codec_check_object(r->object, strlen(r->object),
                                 lim->max_object)))
        return rc;
    if (r->n_types > CODEC_TYPES_MAX)
        return FONTE_ELIMIT;
    for (size_t i = 0; i < r->n_types; i++)
        if ((rc = codec_check_type(r->types[i], strlen(r->types[i]),
                                   lim->max_type)))
            return rc;
    if (r->target[0] != '\0' &&
        (rc = codec_check_producer(r->target, strlen(r->target))))
        return rc;
    if ((unsigned) r->order > FONTE__REPLAY_REQUEST__ORDER__OBJECTS ||
        (unsigned) r->mode > FONTE__REPLAY_REQUEST__MODE__REPUBLISH)
        return FONTE_EREQUEST;
    if (strlen(r->reason) > CODEC_TEXT_MAX ||
        r->cursor.len > CODEC_CURSOR_MAX)
        return FONTE_EFIELD;
    if (!codec_utf8_valid(r->reason, strlen(r->reason)))
        return FONTE_EUTF8;
    return FONTE_OK;
}

fonte_err
codec_request_decode(const void *data, size_t len, const codec_limits_t *lim,
                     Fonte__Request **req_p)
{
    fonte_err rc = codec_unpack(&fonte__request__descriptor, data, len,
                                lim->max_msg, (ProtobufCMessage **) req_p);
    if (rc != FONTE_OK)
        return rc;
    Fonte__Request *q = *req_p;
    switch (q->body_case) {
    case FONTE__REQUEST__BODY_REPLAY:
        rc = q->replay ? check_replay_request(q->replay, lim) : FONTE_EREQUEST;
        break;
    case FONTE__REQUEST__BODY_STATUS:
        rc = q->status ? FONTE_OK : FONTE_EREQUEST;
        break;
    case FONTE__REQUEST__BODY_BACKUP:
        rc = q->backup == NULL ? FONTE_EREQUEST
                               : codec_check_producer(q->backup->name,
                                                      strlen(q->backup->name));
        break;
    default:
        rc = FONTE_EREQUEST;
        break;
    }
    if (rc != FONTE_OK) {
        fonte__request__free_unpacked(q, NULL);
        *req_p = NULL;
    }
    return rc;
}

fonte_err
codec_reply_decode(const void *data, size_t len, const codec_limits_t *lim,
                   Fonte__Reply **rep_p)
{
    *rep_p = NULL;
    if (len <= lim->max_reply && reply_body(data, len) < 0)
        return FONTE_EDECODE; /* two bodies: as codec_reply_scan says */
    fonte_err rc = codec_unpack(&fonte__reply__descriptor, data, len,
                                lim->max_reply, (ProtobufCMessage **) rep_p);
    if (rc != FONTE_OK)
        return rc;
    Fonte__Reply *p = *rep_p;
    if ((unsigned) p->status > FONTE__REPLY__STATUS__INTERNAL)
        rc = FONTE_EDECODE;
    if (rc == FONTE_OK && p->body_case == FONTE__REPLY__BODY_REPLAY &&
        p->replay != NULL) {
        for (size_t i = 0; i < p->replay->n_events && rc == FONTE_OK; i++)
            rc = codec_event_validate(p->replay->events[i], lim);
    }
    if (rc != FONTE_OK) {
        fonte__reply__free_unpacked(p, NULL);
        *rep_p = NULL;
    }
    return rc;
}
