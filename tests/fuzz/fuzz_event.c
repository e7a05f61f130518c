/*
 * fuzz_event.c - libFuzzer target for the event decoder.
 *
 * Input: first byte picks the topic class, the rest is the body. Asserts
 * that the zero-copy scanner and protobuf-c agree: whatever codec_check
 * accepts, codec_event_decode unpacks and codec_event_validate accepts,
 * with every field the view reads equal to protobuf-c's, and that the
 * same bytes decode by the descriptor walk (codec_unpack) and inside a
 * Reply's page (codec_reply_decode, what clients of a replay use); and
 * that the two structure-only walks (fields, graph) agree.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same(codec_slice_t a, const char *b)
{
    if (a.len != strlen(b) || memcmp(a.ptr, b, a.len) != 0)
        abort();
}

/* The scanner's view against protobuf-c's unpacking of the same bytes. */
static void
same_event(const codec_view_t *v, const Fonte__Event *ev)
{
    same(v->id, ev->id);
    same(v->type, ev->type);
    same(v->object, ev->object);
    same(v->producer, ev->producer);
    same(v->payload_type, ev->payload_type);
    if (v->session != ev->session || v->producer_seq != ev->producer_seq ||
        v->seq != ev->seq || v->time_us != ev->time_us ||
        v->n_deps != ev->n_depends_on || v->n_meta != ev->n_meta ||
        v->has_replay != (ev->replay != NULL))
        abort();
    if (v->payload.len != ev->payload.len ||
        (v->payload.len &&
         memcmp(v->payload.ptr, ev->payload.data, v->payload.len) != 0))
        abort();
    size_t pos = 0;
    codec_slice_t dep;
    for (size_t i = 0; i < ev->n_depends_on; i++) {
        if (!codec_view_next_dep(v, &pos, &dep))
            abort();
        same(dep, ev->depends_on[i]);
    }
    if (codec_view_next_dep(v, &pos, &dep))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const topics[] = {
        "order.placed", "$replay.revenue.order.placed", "$ack.shop",
        "$sys.broker", "$sys.replay", "$bogus",
    };
    const codec_limits_t *lim = &codec_limits_default;

    if (size == 0)
        return 0;
    const char *topic = topics[data[0] % (sizeof topics / sizeof *topics)];
    codec_frame_t f[2] = { { topic, strlen(topic) }, { data + 1, size - 1 } };
    codec_class_t cls;
    codec_view_t view;
    /* the structure-only walks must be safe on anything, and agree */
    fonte_err frc = codec_event_fields(data + 1, size - 1, &view);
    codec_slice_t object, deps[4];
    size_t nd;
    if (codec_event_graph(data + 1, size - 1, &object, deps, 4, &nd) != frc)
        abort();
    if (frc == FONTE_OK) {
        size_t pos = 0, k = 0;
        codec_slice_t dep;
        if (object.len != view.object.len ||
            (object.len && memcmp(object.ptr, view.object.ptr, object.len)) ||
            nd != view.n_deps)
            abort();
        while (k < 4 && codec_view_next_dep(&view, &pos, &dep)) {
            if (dep.ptr != deps[k].ptr || dep.len != deps[k].len)
                abort();
            k++;
        }
    }
    fonte_err rc = codec_check(f, 2, lim, &cls, &view);
    if (rc == FONTE_OK && (cls == CODEC_EVENT || cls == CODEC_REPLAY)) {
        Fonte__Event *ev = NULL;
        if (codec_event_decode(f, 2, lim, &ev) != FONTE_OK)
            abort();
        if (codec_event_validate(ev, lim) != FONTE_OK)
            abort();
        same_event(&view, ev);
        /* the descriptor walk and a page of a replay take it too */
        ProtobufCMessage *m = NULL;
        if (codec_unpack(&fonte__event__descriptor, data + 1, size - 1,
                         lim->max_msg, &m) != FONTE_OK)
            abort();
        protobuf_c_message_free_unpacked(m, NULL);
        codec_writer_t page = { 0 }, reply = { 0 };
        codec_writer_event(&page, 1, data + 1, size - 1, 1, NULL);
        codec_writer_bytes(&reply, 3, page.data, page.len);
        Fonte__Reply *rep = NULL;
        if (page.failed || reply.failed ||
            codec_reply_decode(reply.data, reply.len, lim, &rep) != FONTE_OK ||
            rep->replay == NULL || rep->replay->n_events != 1)
            abort();
        fonte__reply__free_unpacked(rep, NULL);
        codec_writer_fini(&page);
        codec_writer_fini(&reply);
        /* and what we accept survives our own encoder */
        codec_buf_t t, b;
        if (codec_event_encode(ev, lim, &t, &b) != FONTE_OK)
            abort();
        codec_buf_free(&t);
        codec_buf_free(&b);
        codec_event_free(&ev);
    }
    return 0;
}
