/* tests/kernels/bf16_cases.h — the inputs of the bf16 rounding tests (kernels.round_bf16,
 * cuda.emulated_round_bf16): a table of float bit patterns with the bf16 bits round-to-nearest-even
 * gives them, worked out by hand (not by the code under test), an independent reference for any
 * pattern (the nearer of the two neighbouring bf16 values, distances in double), and the test
 * array: the table, then random bit patterns, an eighth of them with their low half forced to a
 * tie or next to one.
 *
 *     size_t n = bf16_case_fill(x, n_random);   // x: BF16_N_CASES + n_random floats
 *     uint16_t want = bf16_ref_bits(bits);
 *
 * Header-only (static inline functions) so that both test programs use the same cases. */
#ifndef PT_TESTS_BF16_CASES_H
#define PT_TESTS_BF16_CASES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct bf16_case {
    uint32_t in;  /* float bits */
    uint16_t out; /* the bf16 bits of the nearest bf16, ties to even; NaN: quiet, same sign */
    const char *what;
} bf16_case;

static const bf16_case bf16_cases[] = {
    { 0x3f800000u, 0x3f80, "1.0 (exact)" },
    { 0x3f808000u, 0x3f80, "tie 1 + 2^-8, below is even: down" },
    { 0x3f818000u, 0x3f82, "tie, below is odd: up" },
    { 0x3f807fffu, 0x3f80, "just below a tie" },
    { 0x3f808001u, 0x3f81, "just above a tie" },
    { 0x3f817fffu, 0x3f81, "just below a tie, odd below" },
    { 0x3f818001u, 0x3f82, "just above a tie, odd below" },
    { 0xbf808000u, 0xbf80, "negative tie, even below: toward zero" },
    { 0xbf818000u, 0xbf82, "negative tie, odd below: away from zero" },
    { 0xbf808001u, 0xbf81, "negative, just above a tie" },
    { 0x3fff8000u, 0x4000, "tie that carries into the exponent" },
    { 0x7f7fffffu, 0x7f80, "FLT_MAX rounds to +Inf" },
    { 0xff7fffffu, 0xff80, "-FLT_MAX rounds to -Inf" },
    { 0x7f7f7fffu, 0x7f7f, "just below the tie at the top: largest finite bf16" },
    { 0x7f7f8000u, 0x7f80, "tie at the top, odd below: +Inf" },
    { 0x00000000u, 0x0000, "+0" },
    { 0x80000000u, 0x8000, "-0" },
    { 0x7f800000u, 0x7f80, "+Inf" },
    { 0xff800000u, 0xff80, "-Inf" },
    { 0x7fc00000u, 0x7fc0, "quiet NaN" },
    { 0xffc00000u, 0xffc0, "negative quiet NaN" },
    { 0x7f800001u, 0x7fc0, "signalling NaN, payload only in the low half" },
    { 0xff800001u, 0xffc0, "negative signalling NaN, low payload" },
    { 0x7f80ffffu, 0x7fc0, "signalling NaN, low half all ones (adding the bias would keep it signalling)" },
    { 0x7f810000u, 0x7fc1, "signalling NaN, high payload kept" },
    { 0xffa50000u, 0xffe5, "negative signalling NaN, high payload kept" },
    { 0x7fbfffffu, 0x7fff, "signalling NaN, every payload bit" },
    { 0x7fffffffu, 0x7fff, "NaN all ones (adding the bias would carry into the sign)" },
    { 0xffffffffu, 0xffff, "negative NaN all ones" },
    { 0x7fc08000u, 0x7fc0, "quiet NaN with a tie in its low half" },
    { 0x00400000u, 0x0040, "subnormal 2^-127 (exact; VCVTNEPS2BF16 would give 0)" },
    { 0x80400000u, 0x8040, "negative subnormal" },
    { 0x00017fffu, 0x0001, "subnormal just below a tie" },
    { 0x00018000u, 0x0002, "subnormal tie, odd below: up" },
    { 0x00008000u, 0x0000, "subnormal tie, even (zero) below: down" },
    { 0x00008001u, 0x0001, "subnormal just above a tie: smallest bf16 subnormal" },
    { 0x00000001u, 0x0000, "smallest float subnormal rounds to +0" },
    { 0x80000001u, 0x8000, "smallest negative subnormal rounds to -0" },
    { 0x007fffffu, 0x0080, "largest subnormal rounds up to the smallest normal" },
    { 0x807fffffu, 0x8080, "negative largest subnormal" },
    { 0x00800000u, 0x0080, "smallest normal" },
    { 0x3eaaaaabu, 0x3eab, "1/3" },
    { 0xc0490fdbu, 0xc049, "-pi" },
};
#define BF16_N_CASES (sizeof bf16_cases / sizeof bf16_cases[0])

static inline float bf16_bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static inline uint32_t bf16_float_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* The nearest bf16 by distance: the two bf16 values around the float (its bits truncated, and one
 * bf16 step further from zero, which is 2^128 when that step is the exponent's top), compared in
 * double (exact: both distances need at most 24 significant bits); a tie takes the one whose last
 * bit is 0. NaN: the quiet NaN of the same sign and the top 6 payload bits. */
static inline uint16_t bf16_ref_bits(uint32_t bits)
{
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
        return (uint16_t)((bits >> 16) | 0x0040u);
    uint32_t lo = bits & 0xffff0000u;
    if (lo == bits)
        return (uint16_t)(bits >> 16);
    uint32_t hi = lo + 0x10000u; /* one bf16 step away from zero (sign-magnitude) */
    double x = fabs((double)bf16_bits_to_float(bits)), vlo = fabs((double)bf16_bits_to_float(lo));
    double vhi = (hi & 0x7f800000u) == 0x7f800000u ? ldexp(1.0, 128) : fabs((double)bf16_bits_to_float(hi));
    double dlo = x - vlo, dhi = vhi - x;
    if (dlo < dhi)
        return (uint16_t)(lo >> 16);
    if (dhi < dlo)
        return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

static uint64_t bf16_case_rng = 0x243F6A8885A308D3ull;
static inline uint64_t bf16_case_next(void) /* splitmix64 */
{
    uint64_t z = (bf16_case_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* x[0 .. BF16_N_CASES) = the table's inputs, then n_random random bit patterns (an eighth with the
 * low 16 bits 0x8000, 0x7fff or 0x8001). Returns the count. Same sequence on every call. */
static inline size_t bf16_case_fill(float *x, size_t n_random)
{
    bf16_case_rng = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < BF16_N_CASES; i++)
        x[i] = bf16_bits_to_float(bf16_cases[i].in);
    static const uint32_t low[3] = { 0x8000u, 0x7fffu, 0x8001u };
    for (size_t i = 0; i < n_random; i++) {
        uint64_t r = bf16_case_next();
        uint32_t b = (uint32_t)r;
        if (((r >> 32) & 7) == 0)
            b = (b & 0xffff0000u) | low[(r >> 35) % 3];
        x[BF16_N_CASES + i] = bf16_bits_to_float(b);
    }
    return BF16_N_CASES + n_random;
}

#endif
