/*
 * fuzz_request.c - libFuzzer target for the query endpoint's decoders:
 * Request (what the listener reads) and Reply (what clients read).
 *
 * A decoded message must re-encode, and the re-encoded bytes must decode
 * again with the same verdict.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const codec_limits_t *lim = &codec_limits_default;
    Fonte__Request *q = NULL;
    Fonte__Reply *p = NULL;

    if (codec_request_decode(data, size, lim, &q) == FONTE_OK) {
        codec_buf_t b;
        if (codec_pack(&q->base, &b) != FONTE_OK)
            abort();
        Fonte__Request *q2 = NULL;
        if (codec_request_decode(b.data, b.len, lim, &q2) != FONTE_OK)
            abort();
        fonte__request__free_unpacked(q2, NULL);
        codec_buf_free(&b);
        fonte__request__free_unpacked(q, NULL);
    }
    fonte_err dec = codec_reply_decode(data, size, lim, &p);
    fonte__reply__free_unpacked(p, NULL);
    /* the zero-copy walk: safe on anything, and agreeing with protobuf-c:
     * what decodes, it takes; what it takes with every event scanned
     * valid, decodes, with as many events */
    codec_reply_view_t v;
    fonte_err scan = codec_reply_scan(data, size, lim, &v);
    if (dec == FONTE_OK && scan != FONTE_OK)
        abort();
    if (scan == FONTE_OK) {
        size_t pos = 0, n = 0;
        codec_slice_t e;
        codec_view_t ev;
        bool all_valid = true;
        while (codec_reply_next_event(&v, &pos, &e)) {
            n++;
            if (codec_event_scan(e.ptr, e.len, lim, &ev) != FONTE_OK)
                all_valid = false;
        }
        if (n != v.n_events || (all_valid && dec != FONTE_OK))
            abort();
    }
    return 0;
}
