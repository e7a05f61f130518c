/*
 * test_codec.c - proto/codec.c: round trips of every message, every
 * rejection with its exact code, and hostile bytes (truncated, bit-flipped,
 * random) that must never crash, with the scanner and protobuf-c agreeing.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "testutil.h"

static const codec_limits_t *lim = &codec_limits_default;

/* Encodes ev and checks the two frames; returns the check's code. */
static fonte_err
encode_check(const Fonte__Event *ev, codec_class_t *cls, codec_view_t *view)
{
    codec_buf_t t, b;
    fonte_err rc = codec_event_encode(ev, lim, &t, &b);
    cr_assert_eq(rc, FONTE_OK, "encode: %s", fonte_strerror(rc));
    codec_frame_t f[2] = { { t.data, t.len }, { b.data, b.len } };
    codec_class_t c;
    codec_view_t v;
    rc = codec_check(f, 2, lim, cls ? cls : &c, view ? view : &v);
    /* the view points into b: callers only read scalars after this */
    codec_buf_free(&t);
    codec_buf_free(&b);
    return rc;
}

/* Packs ev as it is (no validation) and checks it on topic. */
static fonte_err
raw_check(const Fonte__Event *ev, const char *topic)
{
    codec_buf_t b = tu_pack(&ev->base);
    fonte_err rc = tu_check(topic, b.data, b.len, NULL);
    codec_buf_free(&b);
    return rc;
}

/* Validation of the struct and of its packed bytes must agree. */
static void
assert_rejected(Fonte__Event *ev, fonte_err want)
{
    codec_buf_t t, b;
    cr_assert_eq(codec_event_validate(ev, lim), want, "validate: got %s",
                 fonte_errname(codec_event_validate(ev, lim)));
    cr_assert_eq(codec_event_encode(ev, lim, &t, &b), want);
    cr_assert_null(t.data);
    cr_assert_null(b.data);
    cr_assert_eq(raw_check(ev, ev->type), want, "check: got %s",
                 fonte_errname(raw_check(ev, ev->type)));
    codec_event_free(&ev);
}

static Fonte__Event *
valid_event(void)
{
    return tu_event("order.placed", "order:42", "shop", 0x1234abcdULL, 7);
}

/* ------------------------------------------------------------------ */

/* Protobuf fields may come in any order: dependencies split by other
 * fields, one after the payload, are all found and all checked
 * (codec_view_next_dep reads from the first to the end of the last). */
Test(codec, dependencies_after_the_payload_are_found_and_checked)
{
    Fonte__Event *ev = valid_event();
    tu_event_add_dep(ev, "user:7");
    tu_event_set_payload(ev, "\x00\x01\x02", 3, "shop.OrderPlaced");
    codec_buf_t t, b;
    cr_assert_eq(codec_event_encode(ev, lim, &t, &b), FONTE_OK);
    uint8_t buf[512];
    cr_assert_lt(b.len + 16, sizeof buf);
    memcpy(buf, b.data, b.len);
    /* depends_on = 4, "cart:9", after everything */
    static const uint8_t later[] = { 4 << 3 | 2, 6, 'c', 'a', 'r', 't', ':',
                                     '9' };
    memcpy(buf + b.len, later, sizeof later);
    size_t len = b.len + sizeof later;

    codec_view_t v;
    cr_assert_eq(codec_event_scan(buf, len, lim, &v), FONTE_OK);
    cr_assert_eq(v.n_deps, 2);
    size_t pos = 0;
    codec_slice_t dep;
    cr_assert(codec_view_next_dep(&v, &pos, &dep));
    cr_assert_eq(dep.len, 6);
    cr_assert_eq(memcmp(dep.ptr, "user:7", 6), 0);
    cr_assert(codec_view_next_dep(&v, &pos, &dep));
    cr_assert_eq(dep.len, 6);
    cr_assert_eq(memcmp(dep.ptr, "cart:9", 6), 0);
    cr_assert_not(codec_view_next_dep(&v, &pos, &dep));
    cr_assert_eq(pos, len);

    /* the later one broken (not UTF-8): the scan says so */
    buf[len - 1] = (char) 0xff;
    cr_assert_eq(codec_event_scan(buf, len, lim, &v), FONTE_EDEP);
    codec_buf_free(&t);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, event_round_trip_keeps_every_field)
{
    Fonte__Event *ev = valid_event();
    tu_event_add_dep(ev, "user:7");
    tu_event_add_dep(ev, "cart:ü");
    tu_event_add_meta(ev, "correlation_id", "c-1");
    tu_event_add_meta(ev, "causation_id", "");
    tu_event_set_payload(ev, "\x00\x01\x02", 3, "shop.OrderPlaced");

    codec_buf_t t, b;
    cr_assert_eq(codec_event_encode(ev, lim, &t, &b), FONTE_OK);
    cr_assert_eq(t.len, strlen("order.placed"));
    cr_assert_eq(memcmp(t.data, "order.placed", t.len), 0);

    codec_frame_t f[2] = { { t.data, t.len }, { b.data, b.len } };
    codec_class_t cls;
    codec_view_t v;
    cr_assert_eq(codec_check(f, 2, lim, &cls, &v), FONTE_OK);
    cr_assert_eq(cls, CODEC_EVENT);
    cr_assert_eq(v.session, 0x1234abcdULL);
    cr_assert_eq(v.producer_seq, 7);
    cr_assert_eq(v.n_deps, 2);
    cr_assert_eq(v.n_meta, 2);
    cr_assert_eq(v.time_us, 1700000000000000);
    cr_assert_not(v.has_replay);
    cr_assert_eq(v.object.len, 8);
    cr_assert_eq(memcmp(v.object.ptr, "order:42", 8), 0);
    cr_assert_eq(v.payload.len, 3);
    size_t pos = 0;
    codec_slice_t dep;
    cr_assert(codec_view_next_dep(&v, &pos, &dep));
    cr_assert_eq(dep.len, 6);
    cr_assert_eq(memcmp(dep.ptr, "user:7", 6), 0);
    cr_assert(codec_view_next_dep(&v, &pos, &dep));
    cr_assert_eq(dep.len, strlen("cart:ü"));
    cr_assert_not(codec_view_next_dep(&v, &pos, &dep));

    Fonte__Event *back = NULL;
    cr_assert_eq(codec_event_decode(f, 2, lim, &back), FONTE_OK);
    cr_assert_str_eq(back->id, "shop/000000001234abcd/7");
    cr_assert_str_eq(back->type, "order.placed");
    cr_assert_str_eq(back->object, "order:42");
    cr_assert_eq(back->n_depends_on, 2);
    cr_assert_str_eq(back->depends_on[1], "cart:ü");
    cr_assert_str_eq(back->producer, "shop");
    cr_assert_eq(back->session, 0x1234abcdULL);
    cr_assert_eq(back->producer_seq, 7);
    cr_assert_str_eq(back->payload_type, "shop.OrderPlaced");
    cr_assert_eq(back->payload.len, 3);
    cr_assert_eq(memcmp(back->payload.data, "\x00\x01\x02", 3), 0);
    cr_assert_eq(back->n_meta, 2);
    cr_assert_str_eq(back->meta[0]->key, "correlation_id");
    cr_assert_str_eq(back->meta[0]->value, "c-1");
    cr_assert_null(back->replay);
    cr_assert_eq(back->seq, 0);

    codec_event_free(&back);
    cr_assert_null(back);
    codec_buf_free(&t);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, replay_with_target_goes_to_its_replay_topic)
{
    Fonte__Event *ev = valid_event();
    ev->seq = 99;
    tu_event_set_replay(ev, "r-1", "order:42", "revenue");
    codec_buf_t t, b;
    cr_assert_eq(codec_event_encode(ev, lim, &t, &b), FONTE_OK);
    const char *want = "$replay.revenue.order.placed";
    cr_assert_eq(t.len, strlen(want));
    cr_assert_eq(memcmp(t.data, want, t.len), 0);

    codec_frame_t f[2] = { { t.data, t.len }, { b.data, b.len } };
    codec_class_t cls;
    Fonte__Event *back = NULL;
    cr_assert_eq(codec_check(f, 2, lim, &cls, NULL), FONTE_OK);
    cr_assert_eq(cls, CODEC_REPLAY);
    cr_assert_eq(codec_event_decode(f, 2, lim, &back), FONTE_OK);
    cr_assert_not_null(back->replay);
    cr_assert_str_eq(back->replay->replay_id, "r-1");
    cr_assert_str_eq(back->replay->root, "order:42");
    cr_assert_str_eq(back->replay->target, "revenue");
    cr_assert_eq(back->replay->index, 1);
    cr_assert_eq(back->seq, 99);
    codec_event_free(&back);
    codec_buf_free(&t);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, replay_without_target_keeps_its_own_topic)
{
    Fonte__Event *ev = valid_event();
    tu_event_set_replay(ev, "r-2", "order:42", "");
    codec_class_t cls;
    cr_assert_eq(encode_check(ev, &cls, NULL), FONTE_OK);
    cr_assert_eq(cls, CODEC_EVENT);
    codec_event_free(&ev);
}

Test(codec, unknown_fields_are_skipped)
{
    tu_wire_t w = { 0 };
    tu_wire_event(&w, "");
    tu_wire_uint(&w, 100, 5);
    tu_wire_str(&w, 101, "future");
    tu_wire_fixed64(&w, 102, 1);
    tu_wire_tag(&w, 103, 5);
    tu_wire_raw(&w, "abcd", 4);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_OK);
    tu_wire_free(&w);
}

Test(codec, last_singular_field_wins_as_in_protobuf)
{
    tu_wire_t w = { 0 };
    tu_wire_event(&w, "");
    tu_wire_str(&w, 3, "order:2");
    codec_frame_t f[2] = { { "order.placed", 12 }, { w.data, w.len } };
    codec_class_t cls;
    codec_view_t v;
    Fonte__Event *ev = NULL;
    cr_assert_eq(codec_check(f, 2, lim, &cls, &v), FONTE_OK);
    cr_assert_eq(memcmp(v.object.ptr, "order:2", 7), 0);
    cr_assert_eq(codec_event_decode(f, 2, lim, &ev), FONTE_OK);
    cr_assert_str_eq(ev->object, "order:2");
    codec_event_free(&ev);
    tu_wire_free(&w);
}

/* ------------------------------------------------------------------ */
/* frames and topics                                                   */

Test(codec, wrong_frame_count_is_efames)
{
    Fonte__Event *ev = valid_event();
    codec_buf_t b = tu_pack(&ev->base);
    codec_frame_t f[3] = { { "order.placed", 12 }, { b.data, b.len },
                           { "x", 1 } };
    codec_class_t cls;
    cr_assert_eq(codec_check(f, 1, lim, &cls, NULL), FONTE_EFRAMES);
    cr_assert_eq(codec_check(f, 3, lim, &cls, NULL), FONTE_EFRAMES);
    cr_assert_eq(codec_check(f, 0, lim, &cls, NULL), FONTE_EFRAMES);
    Fonte__Event *out = NULL;
    cr_assert_eq(codec_event_decode(f, 3, lim, &out), FONTE_EFRAMES);
    cr_assert_null(out);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, oversize_frame_is_etoobig)
{
    codec_limits_t small = *lim;
    small.max_msg = 64;
    Fonte__Event *ev = valid_event();
    char big[100];
    memset(big, 'x', sizeof big);
    tu_event_set_payload(ev, big, sizeof big, "");
    codec_buf_t t, b;
    cr_assert_eq(codec_event_encode(ev, &small, &t, &b), FONTE_ETOOBIG);
    b = tu_pack(&ev->base);
    codec_frame_t f[2] = { { "order.placed", 12 }, { b.data, b.len } };
    codec_class_t cls;
    cr_assert_eq(codec_check(f, 2, &small, &cls, NULL), FONTE_ETOOBIG);
    cr_assert_eq(codec_check(f, 2, lim, &cls, NULL), FONTE_OK);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, topic_must_equal_type)
{
    Fonte__Event *ev = valid_event();
    cr_assert_eq(raw_check(ev, "order.placed"), FONTE_OK);
    cr_assert_eq(raw_check(ev, "order.placedx"), FONTE_ETOPIC);
    cr_assert_eq(raw_check(ev, "order"), FONTE_ETOPIC);
    cr_assert_eq(raw_check(ev, ""), FONTE_ETOPIC);
    codec_event_free(&ev);
}

Test(codec, unknown_reserved_topic_is_ereserved)
{
    Fonte__Event *ev = valid_event();
    cr_assert_eq(raw_check(ev, "$foo"), FONTE_ERESERVED);
    cr_assert_eq(raw_check(ev, "$"), FONTE_ERESERVED);
    cr_assert_eq(raw_check(ev, "$replay"), FONTE_ERESERVED);
    codec_event_free(&ev);
}

Test(codec, topic_classes)
{
    codec_class_t c;
    cr_assert_eq(codec_topic_class("a.b", 3, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_EVENT);
    cr_assert_eq(codec_topic_class("$replay.x.a", 11, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_REPLAY);
    cr_assert_eq(codec_topic_class("$ack.shop", 9, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_ACK);
    cr_assert_eq(codec_topic_class("$sys.replay", 11, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_AUDIT);
    cr_assert_eq(codec_topic_class("$sys.broker", 11, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_STATS);
    char longt[200];
    memset(longt, 'a', sizeof longt);
    cr_assert_eq(codec_topic_class(longt, 129, lim, &c), FONTE_OK);
    cr_assert_eq(c, CODEC_EVENT); /* then ETYPE from the body's type */
    memcpy(longt, "$ack.", 5);
    cr_assert_eq(codec_topic_class(longt, 5 + 65, lim, &c), FONTE_ETOPIC);
    memcpy(longt, "$sys.", 5);
    cr_assert_eq(codec_topic_class(longt, 5 + 65, lim, &c), FONTE_ETOPIC);
    cr_assert_eq(codec_topic_class("", 0, lim, &c), FONTE_ETOPIC);
}

/* ------------------------------------------------------------------ */
/* event fields: each rule, its code                                   */

/* A payload longer than max_msg is ETOOBIG before anything is sized: a
 * length near SIZE_MAX wraps protobuf-c's packed size to a small number
 * (the bytes are never read here). */
Test(codec, a_payload_length_past_max_msg_is_etoobig_before_sizing)
{
    static const size_t lens[] = { SIZE_MAX, SIZE_MAX - 40, (1 << 20) + 1 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        Fonte__Event *ev = valid_event();
        uint8_t *keep = ev->payload.data;
        size_t keep_len = ev->payload.len;
        static uint8_t one[1];
        ev->payload.data = one;
        ev->payload.len = lens[i];
        cr_assert_eq(codec_event_validate(ev, lim), FONTE_ETOOBIG, "%zu",
                     lens[i]);
        ev->payload.data = keep;
        ev->payload.len = keep_len;
        codec_event_free(&ev);
    }
}

Test(codec, bad_type_is_etype)
{
    Fonte__Event *ev = valid_event();
    tu_set(&ev->type, "Order.Placed");
    assert_rejected(ev, FONTE_ETYPE);

    ev = valid_event();
    tu_set(&ev->type, "");
    cr_assert_eq(codec_event_validate(ev, lim), FONTE_ETYPE);
    codec_event_free(&ev);

    ev = valid_event();
    char t[130];
    memset(t, 'a', 129);
    t[129] = 0;
    tu_set(&ev->type, t);
    assert_rejected(ev, FONTE_ETYPE);

    ev = valid_event();
    t[128] = 0; /* exactly 128: allowed */
    tu_set(&ev->type, t);
    cr_assert_eq(encode_check(ev, NULL, NULL), FONTE_OK);
    codec_event_free(&ev);
}

Test(codec, bad_object_is_eobject)
{
    Fonte__Event *ev = valid_event();
    tu_set(&ev->object, "");
    assert_rejected(ev, FONTE_EOBJECT);

    char o[258];
    memset(o, 'o', 257);
    o[257] = 0;
    ev = valid_event();
    tu_set(&ev->object, o);
    assert_rejected(ev, FONTE_EOBJECT);

    ev = valid_event();
    tu_set(&ev->object, "user:\xff\xfe");
    assert_rejected(ev, FONTE_EOBJECT);

    ev = valid_event();
    tu_set(&ev->object, "user:\xed\xa0\x80"); /* a surrogate */
    assert_rejected(ev, FONTE_EOBJECT);

    ev = valid_event();
    tu_set(&ev->object, "user:\xc0\xaf"); /* overlong '/' */
    assert_rejected(ev, FONTE_EOBJECT);
}

Test(codec, object_with_nul_is_eobject_on_the_wire)
{
    tu_wire_t w = { 0 };
    tu_wire_event(&w, "\3");
    tu_wire_bytes(&w, 3, "user:7\0x", 8);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL),
                 FONTE_EOBJECT);
    tu_wire_free(&w);
}

Test(codec, too_many_deps_is_edeps_and_bad_dep_is_edep)
{
    Fonte__Event *ev = valid_event();
    for (int i = 0; i < 64; i++)
        tu_event_add_dep(ev, "user:1");
    cr_assert_eq(encode_check(ev, NULL, NULL), FONTE_OK);
    tu_event_add_dep(ev, "user:2");
    assert_rejected(ev, FONTE_EDEPS);

    ev = valid_event();
    tu_event_add_dep(ev, "user:1");
    tu_event_add_dep(ev, "");
    assert_rejected(ev, FONTE_EDEP);

    ev = valid_event();
    tu_event_add_dep(ev, "user:\x80");
    assert_rejected(ev, FONTE_EDEP);
}

Test(codec, bad_producer_is_eproducer)
{
    const char *bad[] = { "", "Shop", "shop.eu", "shop/1", "ç" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Fonte__Event *ev = valid_event();
        tu_set(&ev->producer, bad[i]);
        tu_event_fix_id(ev);
        assert_rejected(ev, FONTE_EPRODUCER);
    }
    char p[66];
    memset(p, 'p', 65);
    p[65] = 0;
    Fonte__Event *ev = valid_event();
    tu_set(&ev->producer, p);
    tu_event_fix_id(ev);
    assert_rejected(ev, FONTE_EPRODUCER);
}

Test(codec, zero_session_is_esession_zero_seq_is_eseq)
{
    Fonte__Event *ev = valid_event();
    ev->session = 0;
    tu_event_fix_id(ev);
    assert_rejected(ev, FONTE_ESESSION);

    ev = valid_event();
    ev->producer_seq = 0;
    tu_event_fix_id(ev);
    assert_rejected(ev, FONTE_ESEQ);
}

Test(codec, id_must_be_producer_session_seq)
{
    Fonte__Event *ev = valid_event();
    tu_set(&ev->id, "shop/1234abcd/7"); /* not zero-padded */
    assert_rejected(ev, FONTE_EID);

    ev = valid_event();
    ev->producer_seq = 8; /* id still says 7 */
    assert_rejected(ev, FONTE_EID);

    ev = valid_event();
    tu_set(&ev->id, "");
    assert_rejected(ev, FONTE_EID);
}

Test(codec, payload_type_limits)
{
    Fonte__Event *ev = valid_event();
    char pt[258];
    memset(pt, 'a', 257);
    pt[257] = 0;
    tu_event_set_payload(ev, "x", 1, pt);
    assert_rejected(ev, FONTE_EFIELD);

    ev = valid_event();
    tu_event_set_payload(ev, "x", 1, "shop.\xff");
    assert_rejected(ev, FONTE_EUTF8);
}

Test(codec, meta_limits_are_emeta)
{
    Fonte__Event *ev = valid_event();
    for (int i = 0; i < 64; i++)
        tu_event_add_meta(ev, "k", "v");
    cr_assert_eq(encode_check(ev, NULL, NULL), FONTE_OK);
    tu_event_add_meta(ev, "k", "v");
    assert_rejected(ev, FONTE_EMETA);

    ev = valid_event();
    tu_event_add_meta(ev, "", "v");
    assert_rejected(ev, FONTE_EMETA);

    char v[4098];
    memset(v, 'v', 4097);
    v[4097] = 0;
    ev = valid_event();
    tu_event_add_meta(ev, "k", v);
    assert_rejected(ev, FONTE_EMETA);

    ev = valid_event();
    tu_event_add_meta(ev, "k", "\xc3");
    assert_rejected(ev, FONTE_EMETA);
}

Test(codec, bad_replay_info_is_ereplay)
{
    Fonte__Event *ev = valid_event();
    tu_event_set_replay(ev, "", "order:42", "");
    assert_rejected(ev, FONTE_EREPLAY);

    ev = valid_event();
    tu_event_set_replay(ev, "r", "", "");
    assert_rejected(ev, FONTE_EREPLAY);

    ev = valid_event();
    tu_event_set_replay(ev, "r", "order:42", "Bad.Target");
    cr_assert_eq(codec_event_validate(ev, lim), FONTE_EREPLAY);
    codec_event_free(&ev);
}

Test(codec, replay_topic_rules)
{
    Fonte__Event *ev = valid_event();
    /* no replay info on a $replay topic */
    cr_assert_eq(raw_check(ev, "$replay.revenue.order.placed"), FONTE_EREPLAY);
    tu_event_set_replay(ev, "r", "order:42", "revenue");
    cr_assert_eq(raw_check(ev, "$replay.revenue.order.placed"), FONTE_OK);
    /* target in the topic differs from the event's */
    cr_assert_eq(raw_check(ev, "$replay.users.order.placed"), FONTE_EREPLAY);
    /* type in the topic differs */
    cr_assert_eq(raw_check(ev, "$replay.revenue.order.paid"), FONTE_ETOPIC);
    /* malformed target */
    cr_assert_eq(raw_check(ev, "$replay.Revenue.order.placed"), FONTE_ETOPIC);
    cr_assert_eq(raw_check(ev, "$replay.revenue"), FONTE_ETOPIC);
    cr_assert_eq(raw_check(ev, "$replay..order.placed"), FONTE_ETOPIC);
    codec_event_free(&ev);
}

/* ------------------------------------------------------------------ */
/* malformed protobuf                                                  */

Test(codec, malformed_wire_is_edecode)
{
    tu_wire_t w = { 0 };
    /* truncated varint */
    tu_wire_event(&w, "");
    tu_wire_raw(&w, "\x38\xff", 2);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* length past the end */
    tu_wire_event(&w, "");
    tu_wire_tag(&w, 10, 2);
    tu_wire_varint(&w, 1000);
    tu_wire_raw(&w, "abc", 3);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* a known field with the wrong wire type */
    tu_wire_event(&w, "\7");
    tu_wire_fixed64(&w, 7, 1);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    tu_wire_event(&w, "\2");
    tu_wire_uint(&w, 2, 5);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* a group */
    tu_wire_event(&w, "");
    tu_wire_tag(&w, 50, 3);
    tu_wire_tag(&w, 50, 4);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* field number 0 */
    tu_wire_event(&w, "");
    tu_wire_uint(&w, 0, 1);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* an 11-byte varint */
    tu_wire_event(&w, "");
    tu_wire_tag(&w, 7, 0);
    tu_wire_raw(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* a malformed replay submessage */
    tu_wire_event(&w, "");
    tu_wire_bytes(&w, 13, "\x0a\x05" "ab", 4);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);

    /* a malformed meta entry */
    tu_wire_event(&w, "");
    tu_wire_bytes(&w, 11, "\x08\x01", 2);
    cr_assert_eq(tu_check("order.placed", w.data, w.len, NULL), FONTE_EDECODE);
    tu_wire_free(&w);
}

Test(codec, empty_body_is_etype)
{
    /* an empty protobuf is a valid message with every field absent */
    cr_assert_eq(tu_check("order.placed", "", 0, NULL), FONTE_ETYPE);
}

/* ------------------------------------------------------------------ */
/* control messages                                                    */

Test(codec, ack_round_trip_and_rules)
{
    Fonte__Ack a = FONTE__ACK__INIT;
    a.producer = "shop";
    a.session = 42;
    a.durable_seq = 1000;
    a.gap = 1;
    codec_buf_t b = tu_pack(&a.base);
    codec_class_t cls;
    cr_assert_eq(tu_check("$ack.shop", b.data, b.len, &cls), FONTE_OK);
    cr_assert_eq(cls, CODEC_ACK);
    cr_assert_eq(tu_check("$ack.sho", b.data, b.len, NULL), FONTE_ETOPIC);
    cr_assert_eq(tu_check("$ack.shop2", b.data, b.len, NULL), FONTE_ETOPIC);
    Fonte__Ack *back = NULL;
    cr_assert_eq(codec_ack_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_str_eq(back->producer, "shop");
    cr_assert_eq(back->session, 42);
    cr_assert_eq(back->durable_seq, 1000);
    cr_assert_eq(back->gap, 1);
    fonte__ack__free_unpacked(back, NULL);
    codec_buf_free(&b);

    a.session = 0;
    b = tu_pack(&a.base);
    cr_assert_eq(codec_ack_decode(b.data, b.len, lim, &back), FONTE_ESESSION);
    cr_assert_null(back);
    codec_buf_free(&b);

    a.session = 1;
    a.producer = "Shop";
    b = tu_pack(&a.base);
    cr_assert_eq(tu_check("$ack.Shop", b.data, b.len, NULL), FONTE_EPRODUCER);
    codec_buf_free(&b);

    cr_assert_eq(tu_check("$ack.shop", "\xff", 1, NULL), FONTE_EDECODE);

    /* the listener's signature: none (an older listener) or 16 hex */
    a.producer = "shop";
    static const struct { const char *id; fonte_err rc; } ids[] = {
        { "", FONTE_OK },
        { "0123456789abcdef", FONTE_OK },
        { "0123456789ABCDEF", FONTE_EFIELD },
        { "0123456789abcde", FONTE_EFIELD },
        { "0123456789abcdef0", FONTE_EFIELD },
        { "0123456789abcdeg", FONTE_EFIELD },
    };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        a.listener = (char *) ids[i].id;
        b = tu_pack(&a.base);
        cr_assert_eq(codec_ack_decode(b.data, b.len, lim, &back), ids[i].rc,
                     "'%s'", ids[i].id);
        cr_assert_eq(tu_check("$ack.shop", b.data, b.len, NULL), ids[i].rc,
                     "'%s'", ids[i].id);
        if (back != NULL)
            cr_assert_str_eq(back->listener, ids[i].id);
        fonte__ack__free_unpacked(back, NULL);
        back = NULL;
        codec_buf_free(&b);
    }
}

Test(codec, stats_round_trip_and_rules)
{
    Fonte__Stats s = FONTE__STATS__INIT;
    Fonte__Stats__CountersEntry c1 = FONTE__STATS__COUNTERS_ENTRY__INIT;
    Fonte__Stats__CountersEntry *cs[] = { &c1 };
    Fonte__Stats__GaugesEntry g1 = FONTE__STATS__GAUGES_ENTRY__INIT;
    Fonte__Stats__GaugesEntry *gs[] = { &g1 };
    c1.key = "events_in";
    c1.value = 12345;
    g1.key = "commit_p99_us";
    g1.value = 812.5;
    s.source = "broker";
    s.uptime_us = 9;
    s.n_counters = 1;
    s.counters = cs;
    s.n_gauges = 1;
    s.gauges = gs;
    codec_buf_t b = tu_pack(&s.base);
    codec_class_t cls;
    cr_assert_eq(tu_check("$sys.broker", b.data, b.len, &cls), FONTE_OK);
    cr_assert_eq(cls, CODEC_STATS);
    cr_assert_eq(tu_check("$sys.listener", b.data, b.len, NULL), FONTE_ETOPIC);
    Fonte__Stats *back = NULL;
    cr_assert_eq(codec_stats_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_str_eq(back->source, "broker");
    cr_assert_eq(back->uptime_us, 9);
    cr_assert_eq(back->n_counters, 1);
    cr_assert_str_eq(back->counters[0]->key, "events_in");
    cr_assert_eq(back->counters[0]->value, 12345);
    cr_assert_eq(back->n_gauges, 1);
    cr_assert_float_eq(back->gauges[0]->value, 812.5, 1e-9);
    fonte__stats__free_unpacked(back, NULL);
    codec_buf_free(&b);

    s.source = "";
    b = tu_pack(&s.base);
    cr_assert_eq(codec_stats_decode(b.data, b.len, lim, &back), FONTE_EPRODUCER);
    codec_buf_free(&b);
}

Test(codec, audit_round_trip_and_rules)
{
    Fonte__ReplayAudit a = FONTE__REPLAY_AUDIT__INIT;
    a.replay_id = "r-9";
    a.root = "order:1";
    a.target = "revenue";
    a.reason = "bug 12";
    a.events = 3;
    a.state = FONTE__REPLAY_AUDIT__STATE__FINISHED;
    a.duration_us = 77;
    codec_buf_t b = tu_pack(&a.base);
    codec_class_t cls;
    cr_assert_eq(tu_check("$sys.replay", b.data, b.len, &cls), FONTE_OK);
    cr_assert_eq(cls, CODEC_AUDIT);
    Fonte__ReplayAudit *back = NULL;
    cr_assert_eq(codec_audit_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_str_eq(back->replay_id, "r-9");
    cr_assert_eq(back->state, FONTE__REPLAY_AUDIT__STATE__FINISHED);
    cr_assert_eq(back->events, 3);
    cr_assert_eq(back->duration_us, 77);
    fonte__replay_audit__free_unpacked(back, NULL);
    codec_buf_free(&b);

    a.state = (Fonte__ReplayAudit__State) 9;
    b = tu_pack(&a.base);
    cr_assert_eq(codec_audit_decode(b.data, b.len, lim, &back), FONTE_EDECODE);
    codec_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* requests and replies                                                */

static fonte_err
request_rc(Fonte__ReplayRequest *r)
{
    Fonte__Request q = FONTE__REQUEST__INIT;
    q.body_case = FONTE__REQUEST__BODY_REPLAY;
    q.replay = r;
    codec_buf_t b = tu_pack(&q.base);
    Fonte__Request *back = NULL;
    fonte_err rc = codec_request_decode(b.data, b.len, lim, &back);
    if (rc == FONTE_OK)
        fonte__request__free_unpacked(back, NULL);
    else
        cr_assert_null(back);
    codec_buf_free(&b);
    return rc;
}

Test(codec, request_round_trip)
{
    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    char *types[] = { "order.placed", "user.created" };
    r.object = "order:1";
    r.dependents = 1;
    r.after_seq = 5;
    r.until_seq = 50;
    r.n_types = 2;
    r.types = types;
    r.order = FONTE__REPLAY_REQUEST__ORDER__OBJECTS;
    r.mode = FONTE__REPLAY_REQUEST__MODE__REPUBLISH;
    r.target = "revenue";
    r.rate = 100;
    r.reason = "rebuild";
    r.page_size = 10;
    r.cursor.data = (uint8_t *) "cur";
    r.cursor.len = 3;
    Fonte__Request q = FONTE__REQUEST__INIT;
    q.body_case = FONTE__REQUEST__BODY_REPLAY;
    q.replay = &r;
    codec_buf_t b = tu_pack(&q.base);
    Fonte__Request *back = NULL;
    cr_assert_eq(codec_request_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_eq(back->body_case, FONTE__REQUEST__BODY_REPLAY);
    Fonte__ReplayRequest *x = back->replay;
    cr_assert_str_eq(x->object, "order:1");
    cr_assert_eq(x->skip_dependencies, 0);
    cr_assert_eq(x->dependents, 1);
    cr_assert_eq(x->after_seq, 5);
    cr_assert_eq(x->until_seq, 50);
    cr_assert_eq(x->n_types, 2);
    cr_assert_str_eq(x->types[1], "user.created");
    cr_assert_eq(x->order, FONTE__REPLAY_REQUEST__ORDER__OBJECTS);
    cr_assert_eq(x->mode, FONTE__REPLAY_REQUEST__MODE__REPUBLISH);
    cr_assert_str_eq(x->target, "revenue");
    cr_assert_eq(x->rate, 100);
    cr_assert_str_eq(x->reason, "rebuild");
    cr_assert_eq(x->page_size, 10);
    cr_assert_eq(x->cursor.len, 3);
    fonte__request__free_unpacked(back, NULL);
    codec_buf_free(&b);

    Fonte__StatusRequest s = FONTE__STATUS_REQUEST__INIT;
    q.body_case = FONTE__REQUEST__BODY_STATUS;
    q.replay = NULL;
    q.status = &s;
    b = tu_pack(&q.base);
    cr_assert_eq(codec_request_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_eq(back->body_case, FONTE__REQUEST__BODY_STATUS);
    fonte__request__free_unpacked(back, NULL);
    codec_buf_free(&b);
}

Test(codec, request_rejections)
{
    Fonte__Request *back = NULL;
    /* no body at all */
    cr_assert_eq(codec_request_decode("", 0, lim, &back), FONTE_EREQUEST);
    cr_assert_eq(codec_request_decode("\x0a\x05", 2, lim, &back),
                 FONTE_EDECODE);
    cr_assert_eq(codec_request_decode("garbage!", 8, lim, &back),
                 FONTE_EDECODE);
    codec_limits_t small = *lim;
    small.max_msg = 4;
    cr_assert_eq(codec_request_decode("\x12\x00\x12\x00\x12\x00", 6, &small,
                                      &back), FONTE_ETOOBIG);

    Fonte__ReplayRequest r = FONTE__REPLAY_REQUEST__INIT;
    r.object = "";
    cr_assert_eq(request_rc(&r), FONTE_EOBJECT);
    r.object = "order:1";
    cr_assert_eq(request_rc(&r), FONTE_OK);

    char *bad_types[] = { "ok", "NOT ok" };
    r.n_types = 2;
    r.types = bad_types;
    cr_assert_eq(request_rc(&r), FONTE_ETYPE);
    char **many = calloc(CODEC_TYPES_MAX + 1, sizeof(char *));
    for (int i = 0; i <= CODEC_TYPES_MAX; i++)
        many[i] = "t";
    r.n_types = CODEC_TYPES_MAX + 1;
    r.types = many;
    cr_assert_eq(request_rc(&r), FONTE_ELIMIT);
    free(many);
    r.n_types = 0;
    r.types = NULL;

    r.target = "a.b";
    cr_assert_eq(request_rc(&r), FONTE_EPRODUCER);
    r.target = "";

    r.order = (Fonte__ReplayRequest__Order) 7;
    cr_assert_eq(request_rc(&r), FONTE_EREQUEST);
    r.order = 0;
    r.mode = (Fonte__ReplayRequest__Mode) 2;
    cr_assert_eq(request_rc(&r), FONTE_EREQUEST);
    r.mode = 0;

    char reason[CODEC_TEXT_MAX + 2];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = 0;
    r.reason = reason;
    cr_assert_eq(request_rc(&r), FONTE_EFIELD);
    r.reason = "\xff";
    cr_assert_eq(request_rc(&r), FONTE_EUTF8);
    r.reason = "";

    uint8_t cursor[CODEC_CURSOR_MAX + 1] = { 0 };
    r.cursor.data = cursor;
    r.cursor.len = sizeof cursor;
    cr_assert_eq(request_rc(&r), FONTE_EFIELD);
}

Test(codec, request_regressions_found_by_fuzzing)
{
    Fonte__Request *back = NULL;
    /* an overlong tag for field 0 that protobuf-c accepted but could not
     * round-trip */
    cr_assert_eq(codec_request_decode("\x12\x00\x12\x00\x80\x80\x00\x26", 8,
                                      lim, &back), FONTE_EDECODE);
    cr_assert_null(back);
}

Test(codec, strings_with_nul_are_refused_in_every_message)
{
    tu_wire_t rr = { 0 }, w = { 0 };
    tu_wire_bytes(&rr, 1, "order:1\0x", 9); /* ReplayRequest.object */
    tu_wire_bytes(&w, 1, rr.data, rr.len);  /* Request.replay */
    Fonte__Request *back = NULL;
    cr_assert_eq(codec_request_decode(w.data, w.len, lim, &back), FONTE_EUTF8);
    cr_assert_null(back);
    tu_wire_free(&rr);
    tu_wire_free(&w);

    tu_wire_str(&w, 1, "shop\xff"); /* Ack.producer */
    Fonte__Ack *ack = NULL;
    cr_assert_eq(codec_ack_decode(w.data, w.len, lim, &ack), FONTE_EUTF8);
    tu_wire_free(&w);
}

Test(codec, reply_round_trip_and_rules)
{
    Fonte__Event *ev = valid_event();
    ev->seq = 3;
    Fonte__Event *evs[] = { ev };
    Fonte__ReplayReply rr = FONTE__REPLAY_REPLY__INIT;
    char *cycles[] = { "a:1,b:1" };
    rr.n_events = 1;
    rr.events = evs;
    rr.total = 1;
    rr.n_cycles = 1;
    rr.cycles = cycles;
    Fonte__Reply p = FONTE__REPLY__INIT;
    p.body_case = FONTE__REPLY__BODY_REPLAY;
    p.replay = &rr;
    codec_buf_t b = tu_pack(&p.base);
    Fonte__Reply *back = NULL;
    cr_assert_eq(codec_reply_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_eq(back->status, FONTE__REPLY__STATUS__OK);
    cr_assert_eq(back->replay->n_events, 1);
    cr_assert_eq(back->replay->events[0]->seq, 3);
    cr_assert_str_eq(back->replay->cycles[0], "a:1,b:1");
    fonte__reply__free_unpacked(back, NULL);
    codec_buf_free(&b);

    /* a reply carrying an invalid event is refused */
    tu_set(&ev->type, "BAD");
    b = tu_pack(&p.base);
    cr_assert_eq(codec_reply_decode(b.data, b.len, lim, &back), FONTE_ETYPE);
    cr_assert_null(back);
    codec_buf_free(&b);
    codec_event_free(&ev);

    Fonte__StatusReply sr = FONTE__STATUS_REPLY__INIT;
    sr.last_seq = 10;
    sr.events = 10;
    sr.objects = 4;
    sr.sessions = 2;
    sr.data_dir = "/tmp/x";
    sr.version = "0.1.0";
    Fonte__Reply p2 = FONTE__REPLY__INIT;
    p2.status = FONTE__REPLY__STATUS__NOT_FOUND;
    p2.error = "no such object";
    p2.body_case = FONTE__REPLY__BODY_STATUS_REPLY;
    p2.status_reply = &sr;
    b = tu_pack(&p2.base);
    cr_assert_eq(codec_reply_decode(b.data, b.len, lim, &back), FONTE_OK);
    cr_assert_eq(back->status, FONTE__REPLY__STATUS__NOT_FOUND);
    cr_assert_str_eq(back->error, "no such object");
    cr_assert_eq(back->status_reply->objects, 4);
    cr_assert_str_eq(back->status_reply->data_dir, "/tmp/x");
    fonte__reply__free_unpacked(back, NULL);
    codec_buf_free(&b);

    p2.status = (Fonte__Reply__Status) 42;
    b = tu_pack(&p2.base);
    cr_assert_eq(codec_reply_decode(b.data, b.len, lim, &back), FONTE_EDECODE);
    codec_buf_free(&b);
}

Test(codec, reply_scan_walks_pages_without_unpacking)
{
    Fonte__Event *ev = valid_event();
    codec_buf_t stored = tu_pack(&ev->base);
    codec_writer_t inner = { 0 }, w = { 0 };
    for (uint64_t s = 1; s <= 3; s++)
        codec_writer_event(&inner, 1, stored.data, stored.len, s, NULL);
    codec_writer_bytes(&inner, 2, "cur", 3);
    codec_writer_uint(&inner, 3, 30);
    codec_writer_bytes(&w, 3, inner.data, inner.len);

    codec_reply_view_t v;
    cr_assert_eq(codec_reply_scan(w.data, w.len, lim, &v), FONTE_OK);
    cr_assert_eq(v.status, FONTE__REPLY__STATUS__OK);
    cr_assert(v.has_replay);
    cr_assert_eq(v.n_events, 3);
    cr_assert_eq(v.total, 30);
    cr_assert_eq(v.cursor.len, 3);
    size_t pos = 0, k = 0;
    codec_slice_t e;
    while (codec_reply_next_event(&v, &pos, &e)) {
        codec_view_t ev_view;
        cr_assert_eq(codec_event_scan(e.ptr, e.len, lim, &ev_view), FONTE_OK);
        cr_assert_eq(ev_view.seq, ++k);
    }
    cr_assert_eq(k, 3);
    /* the same bytes through protobuf-c agree */
    Fonte__Reply *rep = NULL;
    cr_assert_eq(codec_reply_decode(w.data, w.len, lim, &rep), FONTE_OK);
    cr_assert_eq(rep->replay->n_events, 3);
    fonte__reply__free_unpacked(rep, NULL);

    cr_assert_eq(codec_reply_scan(w.data, w.len - 1, lim, &v), FONTE_EDECODE);
    cr_assert_eq(codec_reply_scan("\x08\x09", 2, lim, &v), FONTE_EDECODE);
    cr_assert_eq(codec_reply_scan("\x0a\x00", 2, lim, &v), FONTE_EDECODE);
    codec_limits_t small = *lim;
    small.max_reply = 4;
    cr_assert_eq(codec_reply_scan(w.data, w.len, &small, &v), FONTE_ETOOBIG);
    codec_writer_fini(&inner);
    codec_writer_fini(&w);
    codec_buf_free(&stored);
    codec_event_free(&ev);
}

Test(codec, empty_submessages_cannot_blow_up_allocation)
{
    /* 200 000 empty events: 400 KB on the wire, ~50 MB if unpacked */
    tu_wire_t rr = { 0 }, w = { 0 };
    for (int i = 0; i < 200000; i++)
        tu_wire_bytes(&rr, 1, "", 0);
    tu_wire_bytes(&w, 3, rr.data, rr.len);
    Fonte__Reply *back = NULL;
    cr_assert_eq(codec_reply_decode(w.data, w.len, lim, &back), FONTE_EDECODE);
    cr_assert_null(back);
    tu_wire_free(&rr);
    tu_wire_free(&w);
}

/* ------------------------------------------------------------------ */
/* hostile bytes                                                       */

/* Checks one body and, when the scanner accepts it, that protobuf-c
 * unpacks it and the struct passes the same rules: the zero-copy path
 * never lets through what the struct path would refuse. */
static void
check_agrees(const char *topic, const uint8_t *body, size_t len)
{
    codec_frame_t f[2] = { { topic, strlen(topic) }, { body, len } };
    codec_class_t cls;
    codec_view_t v;
    fonte_err rc = codec_check(f, 2, lim, &cls, &v);
    cr_assert_lt((int) rc, FONTE_ERR_COUNT_);
    if (rc == FONTE_OK && (cls == CODEC_EVENT || cls == CODEC_REPLAY)) {
        Fonte__Event *ev = NULL;
        cr_assert_eq(codec_event_decode(f, 2, lim, &ev), FONTE_OK);
        cr_assert_eq(codec_event_validate(ev, lim), FONTE_OK);
        codec_event_free(&ev);
    }
}

static codec_buf_t
rich_event_bytes(void)
{
    Fonte__Event *ev = valid_event();
    tu_event_add_dep(ev, "user:7");
    tu_event_add_meta(ev, "correlation_id", "c");
    tu_event_set_payload(ev, "payload", 7, "shop.X");
    tu_event_set_replay(ev, "r", "order:42", "");
    codec_buf_t b = tu_pack(&ev->base);
    codec_event_free(&ev);
    return b;
}

Test(codec, every_truncation_is_handled)
{
    codec_buf_t b = rich_event_bytes();
    for (size_t n = 0; n <= b.len; n++) {
        uint8_t *copy = malloc(n + 1); /* exact size: ASan sees overreads */
        memcpy(copy, b.data, n);
        check_agrees("order.placed", copy, n);
        free(copy);
    }
    /* the whole thing is valid, one byte less is not */
    cr_assert_eq(tu_check("order.placed", b.data, b.len, NULL), FONTE_OK);
    cr_assert_neq(tu_check("order.placed", b.data, b.len - 1, NULL), FONTE_OK);
    codec_buf_free(&b);
}

Test(codec, every_bit_flip_is_handled)
{
    codec_buf_t b = rich_event_bytes();
    uint8_t *copy = malloc(b.len);
    for (size_t i = 0; i < b.len * 8; i++) {
        memcpy(copy, b.data, b.len);
        copy[i / 8] ^= (uint8_t) (1u << (i % 8));
        check_agrees("order.placed", copy, b.len);
    }
    free(copy);
    codec_buf_free(&b);
}

Test(codec, random_bytes_are_handled)
{
    const char *topics[] = { "order.placed", "$replay.x.order.placed",
                             "$ack.shop", "$sys.broker", "$sys.replay" };
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    uint8_t buf[256];
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t) (s % sizeof buf);
        for (size_t j = 0; j < n; j++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            buf[j] = (uint8_t) s;
        }
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        check_agrees(topics[i % 5], buf, n);
        Fonte__Request *q = NULL;
        if (codec_request_decode(buf, n, lim, &q) == FONTE_OK)
            fonte__request__free_unpacked(q, NULL);
        Fonte__Reply *p = NULL;
        if (codec_reply_decode(buf, n, lim, &p) == FONTE_OK)
            fonte__reply__free_unpacked(p, NULL);
    }
}

Test(codec, writer_splices_seq_and_replay_onto_stored_bytes)
{
    Fonte__Event *ev = valid_event();
    ev->seq = 5; /* a stray seq in the stored bytes: the appended one wins */
    tu_event_add_dep(ev, "user:7");
    codec_buf_t stored = tu_pack(&ev->base);

    Fonte__Replay rp = FONTE__REPLAY__INIT;
    rp.replay_id = "r-7";
    rp.root = "order:42";
    rp.target = "revenue";
    rp.reason = "rebuild";
    rp.index = 3;
    rp.total = 9;
    codec_writer_t w = { 0 };
    codec_writer_event(&w, 0, stored.data, stored.len, 1234, &rp);
    cr_assert_not(w.failed);
    cr_assert_eq(tu_check("$replay.revenue.order.placed", w.data, w.len, NULL),
                 FONTE_OK);
    Fonte__Event *back = NULL;
    cr_assert_eq(codec_event_unpack(w.data, w.len, lim, &back), FONTE_OK);
    cr_assert_eq(back->seq, 1234);
    cr_assert_str_eq(back->replay->replay_id, "r-7");
    cr_assert_str_eq(back->replay->target, "revenue");
    cr_assert_eq(back->replay->index, 3);
    cr_assert_eq(back->replay->total, 9);
    cr_assert_eq(back->n_depends_on, 1);
    codec_event_free(&back);
    codec_writer_fini(&w);

    /* wrapped as ReplayReply.events, twice, without replay info */
    codec_writer_event(&w, 1, stored.data, stored.len, 1, NULL);
    codec_writer_event(&w, 1, stored.data, stored.len, 2, NULL);
    codec_writer_uint(&w, 3, 2); /* total */
    Fonte__ReplayReply *rr = NULL;
    cr_assert_eq(codec_unpack(&fonte__replay_reply__descriptor, w.data, w.len,
                              lim->max_reply, (ProtobufCMessage **) &rr),
                 FONTE_OK);
    cr_assert_eq(rr->n_events, 2);
    cr_assert_eq(rr->events[0]->seq, 1);
    cr_assert_eq(rr->events[1]->seq, 2);
    cr_assert_null(rr->events[1]->replay);
    cr_assert_eq(rr->total, 2);
    fonte__replay_reply__free_unpacked(rr, NULL);
    codec_writer_fini(&w);
    codec_buf_free(&stored);
    codec_event_free(&ev);
}

/* The scan (broker, listener) and protobuf-c (libfonte, the CLI) must
 * agree on every event: one the scan passes is stored, and if protobuf-c
 * then refused it, live subscribers would drop it and every replay page
 * holding it would fail, for good. The bytes of a valid event with `more`
 * appended are checked by the scan (want), by codec_event_decode, and
 * inside a Reply's page by codec_reply_decode. */
static void
agree(const uint8_t *more, size_t more_len, fonte_err want)
{
    Fonte__Event *ev = valid_event();
    codec_buf_t base = tu_pack(&ev->base);
    codec_event_free(&ev);
    size_t len = base.len + more_len;
    uint8_t *body = malloc(len);
    cr_assert_not_null(body);
    memcpy(body, base.data, base.len);
    memcpy(body + base.len, more, more_len);
    codec_buf_free(&base);

    codec_view_t v;
    fonte_err got = codec_event_scan(body, len, lim, &v);
    cr_assert_eq(got, want, "scan: %s, not %s", fonte_errname(got),
                 fonte_errname(want));
    codec_frame_t f[2] = { { "order.placed", 12 }, { body, len } };
    Fonte__Event *back = NULL;
    got = codec_event_decode(f, 2, lim, &back);
    cr_assert_eq(got, want, "decode: %s", fonte_errname(got));
    codec_event_free(&back);
    if (want == FONTE_OK) { /* in a page, as a replay sends it */
        codec_writer_t page = { 0 }, reply = { 0 };
        codec_writer_event(&page, 1, body, len, 9, NULL);
        codec_writer_uint(&page, 3, 1);
        codec_writer_bytes(&reply, 3, page.data, page.len);
        Fonte__Reply *rep = NULL;
        got = codec_reply_decode(reply.data, reply.len, lim, &rep);
        cr_assert_eq(got, FONTE_OK, "in a reply: %s", fonte_errname(got));
        cr_assert_eq(rep->replay->n_events, 1);
        cr_assert_eq(rep->replay->events[0]->seq, 9);
        fonte__reply__free_unpacked(rep, NULL);
        codec_writer_fini(&page);
        codec_writer_fini(&reply);
    }
    free(body);
}

/* Tags and lengths are at most 5 bytes, as protobuf-c reads them: padded
 * to 6 (still a valid varint) the scan took them and protobuf-c did not.
 * A value (time_us) may take 10. */
Test(codec, tags_and_lengths_of_more_than_5_bytes_are_edecode)
{
    /* unknown field 100, varint 5, its tag padded to 6 bytes, then 5 */
    static const uint8_t tag6[] = { 0xa0, 0x86, 0x80, 0x80, 0x80, 0x00, 5 };
    static const uint8_t tag5[] = { 0xa0, 0x86, 0x80, 0x80, 0x00, 5 };
    static const uint8_t tag2[] = { 0xa0, 0x06, 5 };
    /* time_us (8): tag padded to 6 bytes */
    static const uint8_t known6[] = { 0xc0, 0x80, 0x80, 0x80, 0x80, 0x00, 5 };
    /* payload (10) "abc", its length padded to 6 bytes, then to 5 */
    static const uint8_t len6[] = { 0x52, 0x83, 0x80, 0x80, 0x80, 0x80, 0x00,
                                    'a', 'b', 'c' };
    static const uint8_t len5[] = { 0x52, 0x83, 0x80, 0x80, 0x80, 0x00, 'a',
                                    'b', 'c' };
    /* time_us = 1 as a 10-byte varint: a value, not a tag or a length */
    static const uint8_t value10[] = { 0x40, 0x81, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x00 };
    agree(tag6, sizeof tag6, FONTE_EDECODE);
    agree(tag5, sizeof tag5, FONTE_OK);
    agree(tag2, sizeof tag2, FONTE_OK);
    agree(known6, sizeof known6, FONTE_EDECODE);
    agree(len6, sizeof len6, FONTE_EDECODE);
    agree(len5, sizeof len5, FONTE_OK);
    agree(value10, sizeof value10, FONTE_OK);
}

/* An event has at most CODEC_FIELDS_MAX (512) fields, unknown and repeated
 * ones too: protobuf-c spends ~90 bytes on each, and 2 027 unknown fields
 * of 2 bytes made it refuse an event the scan had passed. Under the
 * bound, the two agree, alone and in a page. */
Test(codec, an_event_of_more_than_512_fields_is_edecode)
{
    static uint8_t more[2 * 2100];
    Fonte__Event *ev = valid_event();
    codec_buf_t base = tu_pack(&ev->base);
    codec_event_free(&ev);
    codec_view_t v;
    cr_assert_eq(codec_event_fields(base.data, base.len, &v), FONTE_OK);
    size_t have = 7; /* valid_event's fields: id, type, object, producer,
                        session, producer_seq, time_us */
    codec_buf_free(&base);
    for (size_t i = 0; i < sizeof more; i += 2) {
        more[i] = 15 << 3; /* unknown field 15, varint 0 */
        more[i + 1] = 0;
    }
    agree(more, 2 * (CODEC_FIELDS_MAX - have), FONTE_OK);
    agree(more, 2 * (CODEC_FIELDS_MAX - have + 1), FONTE_EDECODE);
    agree(more, sizeof more, FONTE_EDECODE);
    /* the same with time_us over and over (the last one wins) */
    for (size_t i = 0; i < sizeof more; i += 2)
        more[i] = 8 << 3;
    agree(more, 2 * (CODEC_FIELDS_MAX - have), FONTE_OK);
    agree(more, 2 * (CODEC_FIELDS_MAX - have + 1), FONTE_EDECODE);
}

/* Every copy of a string field must be text, not only the last one
 * (protobuf keeps the last; protobuf-c's readers check them all): an
 * earlier `object` of invalid UTF-8 with a NUL is EUTF8, as is an earlier
 * meta key or replay id. */
Test(codec, an_earlier_copy_of_a_string_field_must_be_text_too)
{
    static const uint8_t object[] = { 0x1a, 2, 0xff, 0x00, 0x1a, 3, 'a', ':',
                                      '1' };
    static const uint8_t text[] = { 0x1a, 3, 'b', ':', '2', 0x1a, 3, 'a', ':',
                                    '1' };
    /* meta entry { key "\xff", key "k", value "v" } */
    static const uint8_t meta[] = { 0x5a, 9, 0x0a, 1, 0xff, 0x0a, 1, 'k',
                                    0x12, 1, 'v' };
    agree(object, sizeof object, FONTE_EUTF8);
    agree(text, sizeof text, FONTE_OK);
    agree(meta, sizeof meta, FONTE_EUTF8);
}

/* The structure of a meta entry is checked with the event's structure:
 * an entry whose key is a varint is EDECODE, even with a bad type later
 * (the order of docs/protocol.md §3: structure before type). */
Test(codec, a_malformed_meta_entry_is_edecode_before_the_type_rule)
{
    Fonte__Event *ev = valid_event();
    tu_set(&ev->type, "BAD");
    codec_buf_t base = tu_pack(&ev->base);
    codec_event_free(&ev);
    uint8_t body[512];
    static const uint8_t meta[] = { 0x5a, 2, 0x08, 1 };
    cr_assert_lt(base.len + sizeof meta, sizeof body);
    memcpy(body, base.data, base.len);
    memcpy(body + base.len, meta, sizeof meta);
    codec_view_t v;
    cr_assert_eq(codec_event_scan(body, base.len + sizeof meta, lim, &v),
                 FONTE_EDECODE);
    cr_assert_eq(codec_event_scan(base.data, base.len, lim, &v),
                 FONTE_ETYPE);
    codec_buf_free(&base);
}

/* codec_reply_scan and codec_reply_decode agree on every Reply: two
 * bodies (protobuf keeps the last, merges two copies of one), a field of
 * the ReplayReply with a wrong wire type, a body with a wrong wire type
 * are EDECODE for both; an empty ReplayReply is OK for both. */
Test(codec, reply_scan_and_decode_agree)
{
    static const struct {
        uint8_t bytes[8];
        size_t len;
        fonte_err want;
    } cases[] = {
        { { 0x1a, 0x00 }, 2, FONTE_OK },
        { { 0x1a, 0x00, 0x2a, 0x00 }, 4, FONTE_EDECODE },
        { { 0x1a, 0x00, 0x1a, 0x00 }, 4, FONTE_EDECODE },
        { { 0x1a, 0x02, 0x20, 0x01 }, 4, FONTE_EDECODE }, /* cycles varint */
        { { 0x1a, 0x02, 0x18, 0x05 }, 4, FONTE_OK },      /* total 5 */
        { { 0x1a, 0x02, 0x1a, 0x00 }, 4, FONTE_EDECODE }, /* total bytes */
        { { 0x2a, 0x01, 0x00 }, 3, FONTE_EDECODE }, /* body, wrong type */
        { { 0x18, 0x01 }, 2, FONTE_EDECODE },       /* replay, a varint */
        { { 0x1a, 0x02, 0x30, 0x07 }, 4, FONTE_OK }, /* cycles_omitted 7 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        codec_reply_view_t v;
        Fonte__Reply *rep = NULL;
        fonte_err scan = codec_reply_scan(cases[i].bytes, cases[i].len, lim,
                                          &v);
        fonte_err dec = codec_reply_decode(cases[i].bytes, cases[i].len, lim,
                                           &rep);
        cr_assert_eq(scan, cases[i].want, "case %zu: scan %s", i,
                     fonte_errname(scan));
        cr_assert_eq(dec, cases[i].want, "case %zu: decode %s", i,
                     fonte_errname(dec));
        if (dec == FONTE_OK) {
            cr_assert(v.has_replay);
            cr_assert_eq(rep->body_case, FONTE__REPLY__BODY_REPLAY);
            cr_assert_eq(v.total, rep->replay->total);
        }
        fonte__reply__free_unpacked(rep, NULL);
    }
}

Test(codec, fields_walk_checks_structure_only)
{
    Fonte__Event *ev = valid_event();
    tu_event_add_dep(ev, "user:7");
    codec_buf_t b = tu_pack(&ev->base);
    codec_view_t a, c;
    cr_assert_eq(codec_event_scan(b.data, b.len, lim, &a), FONTE_OK);
    cr_assert_eq(codec_event_fields(b.data, b.len, &c), FONTE_OK);
    cr_assert_eq(c.object.len, a.object.len);
    cr_assert_eq(memcmp(c.object.ptr, a.object.ptr, a.object.len), 0);
    cr_assert_eq(c.type.len, a.type.len);
    cr_assert_eq(c.n_deps, 1);
    cr_assert_eq(c.producer_seq, 7);
    cr_assert_eq(codec_event_fields(b.data, b.len - 1, &c), FONTE_EDECODE);
    codec_buf_free(&b);
    /* a rule broken, the structure sound: the walk does not care */
    tu_set(&ev->type, "NOT A TYPE");
    b = tu_pack(&ev->base);
    cr_assert_eq(codec_event_fields(b.data, b.len, &c), FONTE_OK);
    cr_assert_eq(codec_event_scan(b.data, b.len, lim, &a), FONTE_ETYPE);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, graph_walk_gives_object_and_deps_like_the_fields_walk)
{
    Fonte__Event *ev = valid_event();
    tu_event_add_dep(ev, "user:7");
    tu_event_add_dep(ev, "shop:1");
    tu_event_add_dep(ev, "user:9");
    codec_buf_t b = tu_pack(&ev->base);
    codec_slice_t object, deps[2];
    size_t n = 99;
    cr_assert_eq(codec_event_graph(b.data, b.len, &object, deps, 2, &n),
                 FONTE_OK);
    cr_assert_eq(object.len, strlen(ev->object));
    cr_assert_eq(memcmp(object.ptr, ev->object, object.len), 0);
    cr_assert_eq(n, 3, "the count, beyond the room given");
    cr_assert_eq(deps[0].len, 6);
    cr_assert_eq(memcmp(deps[0].ptr, "user:7", 6), 0);
    cr_assert_eq(memcmp(deps[1].ptr, "shop:1", 6), 0);
    /* structure errors as the fields walk: truncated, wrong wire type */
    cr_assert_eq(codec_event_graph(b.data, b.len - 1, &object, deps, 2, &n),
                 FONTE_EDECODE);
    uint8_t bad[] = { 0x19, 1, 2, 3, 4, 5, 6, 7, 8 }; /* object as fixed64 */
    codec_view_t v;
    cr_assert_eq(codec_event_fields(bad, sizeof bad, &v), FONTE_EDECODE);
    cr_assert_eq(codec_event_graph(bad, sizeof bad, &object, deps, 2, &n),
                 FONTE_EDECODE);
    codec_buf_free(&b);

    /* the general path: a 200-byte dependency (two-byte length) and an
     * unknown field 20 (two-byte tag) after it */
    char longdep[201];
    memset(longdep, 'd', 200);
    memcpy(longdep, "user:", 5);
    longdep[200] = '\0';
    tu_event_add_dep(ev, longdep);
    b = tu_pack(&ev->base);
    uint8_t *ext = malloc(b.len + 3);
    memcpy(ext, b.data, b.len);
    ext[b.len] = 0xa2; /* field 20, bytes */
    ext[b.len + 1] = 0x01;
    ext[b.len + 2] = 0x00; /* empty */
    cr_assert_eq(codec_event_fields(ext, b.len + 3, &v), FONTE_OK);
    codec_slice_t all[8];
    cr_assert_eq(codec_event_graph(ext, b.len + 3, &object, all, 8, &n),
                 FONTE_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(n, v.n_deps);
    cr_assert_eq(all[3].len, 200);
    cr_assert_eq(memcmp(all[3].ptr, longdep, 200), 0);
    cr_assert_eq(object.ptr, v.object.ptr);
    free(ext);

    /* varints (producer_seq, field 7): 10 bytes ending in 1 is 64 bits,
     * ending in 2 is more; a truncated one is an error too */
    uint8_t ok10[] = { 0x38, 0xff, 0xff, 0xff, 0xff, 0xff,
                       0xff, 0xff, 0xff, 0xff, 0x01 };
    uint8_t big10[] = { 0x38, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff, 0xff, 0x02 };
    uint8_t cut[] = { 0x38, 0xff, 0xff };
    cr_assert_eq(codec_event_fields(ok10, sizeof ok10, &v), FONTE_OK);
    cr_assert_eq(codec_event_graph(ok10, sizeof ok10, &object, all, 8, &n),
                 FONTE_OK);
    cr_assert_eq(codec_event_fields(big10, sizeof big10, &v), FONTE_EDECODE);
    cr_assert_eq(codec_event_graph(big10, sizeof big10, &object, all, 8, &n),
                 FONTE_EDECODE);
    cr_assert_eq(codec_event_fields(cut, sizeof cut, &v), FONTE_EDECODE);
    cr_assert_eq(codec_event_graph(cut, sizeof cut, &object, all, 8, &n),
                 FONTE_EDECODE);
    codec_buf_free(&b);
    codec_event_free(&ev);
}

Test(codec, utf8_validator)
{
    cr_assert(codec_utf8_valid("", 0));
    cr_assert(codec_utf8_valid("héllo €𝄞", strlen("héllo €𝄞")));
    cr_assert_not(codec_utf8_valid("\x80", 1));
    cr_assert_not(codec_utf8_valid("\xe2\x82", 2));        /* truncated */
    cr_assert_not(codec_utf8_valid("\xe0\x80\x80", 3));    /* overlong */
    cr_assert_not(codec_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    cr_assert_not(codec_utf8_valid("\xf8\x88\x80\x80\x80", 5));
}

Test(codec, format_id)
{
    char id[CODEC_ID_MAX];
    size_t n = codec_format_id(id, "svc", 3, UINT64_MAX, UINT64_MAX);
    cr_assert_str_eq(id, "svc/ffffffffffffffff/18446744073709551615");
    cr_assert_eq(n, strlen(id));
}
