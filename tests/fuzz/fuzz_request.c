/*
 * fuzz_request.c - libFuzzer target for the query endpoint's decoders:
 * Request (what the listener reads) and Reply (what clients read).
 *
 * A decoded message must re-encode, and the re-encoded bytes must decode
 * again with the same verdict.
 */
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
    if (codec_reply_decode(data, size, lim, &p) == FONTE_OK)
        fonte__reply__free_unpacked(p, NULL);
    /* the zero-copy walk: safe on anything, and every event it yields is
     * either refused by the scanner or a valid event */
    codec_reply_view_t v;
    if (codec_reply_scan(data, size, lim, &v) == FONTE_OK) {
        size_t pos = 0;
        codec_slice_t e;
        codec_view_t ev;
        while (codec_reply_next_event(&v, &pos, &e))
            (void) codec_event_scan(e.ptr, e.len, lim, &ev);
    }
    return 0;
}
