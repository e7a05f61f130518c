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
    return 0;
}
