/* pipetrain/bf16.h — bfloat16 rounding, the one definition every part of pipetrain uses (the CPU
 * and CUDA kernels, the links' message packing, the safetensors reader and writer), so that a
 * value rounded anywhere has the same bits everywhere.
 *
 *     float y = pt_bf16_round(x);              // nearest bf16, as a float (low 16 bits zero)
 *     pt_bf16_pack(half, x, n);                // n floats -> n bf16 (uint16) values
 *     pt_bf16_unpack_upper(buf, n);            // n bf16 at byte 2n of buf -> n floats at buf
 *
 * Rounding is to nearest, ties to even, with subnormals rounded like every other value and a NaN
 * kept a quiet NaN of the same sign (CUDA's __float2bfloat16_rn gives the same bits). AVX-512
 * BF16's VCVTNEPS2BF16 is deliberately not used: it treats subnormal inputs as zero (measured on
 * this machine's CPU: 0x00400000 becomes 0 where round-to-nearest gives 0x0040), so the CPU twin
 * would not match the GPU. */
#ifndef PIPETRAIN_BF16_H
#define PIPETRAIN_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__CUDACC__)
#define PT_BF16_FN __host__ __device__ static inline
#else
#define PT_BF16_FN static inline
#endif

/* The bits of the bf16 nearest to the float with bits `bits`, as a float's bits (low half zero). */
PT_BF16_FN uint32_t pt_bf16_round_bits(uint32_t bits)
{
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (bits | 0x00400000u) & 0xffff0000u; /* NaN: quiet, sign and high payload kept */
    bits += 0x7fffu + ((bits >> 16) & 1u);         /* to nearest, ties to even */
    return bits & 0xffff0000u;
}

/* x rounded to the nearest bf16 (a float whose low 16 bits are zero). */
PT_BF16_FN float pt_bf16_round(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    b = pt_bf16_round_bits(b);
    memcpy(&x, &b, 4);
    return x;
}

/* Host loops for the links (message packing). pack: dst[i] = the bf16 nearest src[i]; dst may be
 * src itself (packing in place, front to back), else they must not overlap. unpack_upper: buf holds n bf16 values at byte offset 2n (the upper half of n
 * floats' bytes, where a link receives a packed message in place); afterwards buf holds the n
 * floats. Both single-threaded, vectorisable; a message is a few MiB at most. */
void pt_bf16_pack(uint16_t *dst, const float *src, size_t n);
void pt_bf16_unpack_upper(void *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
