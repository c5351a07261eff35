/* core/bf16.c — the host loops of pipetrain/bf16.h. */
#include "pipetrain/bf16.h"

/* In place (dst == src): element i's 2 bytes land at 2i, below the 4i its float starts at, which is
 * read first; no later float is touched. */
void pt_bf16_pack(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], 4);
        dst[i] = (uint16_t)(pt_bf16_round_bits(b) >> 16);
    }
}

/* Front to back in chunks of 16, each chunk read before it is written: writing floats
 * [i, i + 16) (bytes 4i .. 4i + 64) overwrites packed values below 2i + 32 - n, all of which
 * (i + 16 <= n) are already read. The tail of fewer than 16 goes the same way one at a time. */
void pt_bf16_unpack_upper(void *buf, size_t n)
{
    unsigned char *base = buf;
    const unsigned char *packed = base + 2 * n;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint16_t h[16];
        uint32_t w[16];
        memcpy(h, packed + 2 * i, sizeof h);
        for (int k = 0; k < 16; k++)
            w[k] = (uint32_t)h[k] << 16;
        memcpy(base + 4 * i, w, sizeof w);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, packed + 2 * i, 2);
        uint32_t w = (uint32_t)h << 16;
        memcpy(base + 4 * i, &w, 4);
    }
}
