/*
 * fuzz_event.c - libFuzzer target for the event decoder.
 *
 * Input: first byte picks the topic class, the rest is the body. Asserts
 * that the zero-copy scanner and protobuf-c agree: whatever codec_check
 * accepts, codec_event_decode unpacks and codec_event_validate accepts;
 * and that the two structure-only walks (fields, graph) agree.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
