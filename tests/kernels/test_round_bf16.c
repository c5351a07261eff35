/* tests/kernels/test_round_bf16.c — bf16 rounding (pipetrain/bf16.h) and the CPU backend's
 * round_bf16, bit for bit (kernels.round_bf16).
 *
 *  - The hand-worked table of bf16_cases.h (ties to even both ways and both signs, values just
 *    below and above ties, FLT_MAX to +Inf, +-0, +-Inf, quiet and signalling NaNs to a quiet NaN
 *    of the same sign, subnormals rounded like any value): the table's bits against the
 *    independent reference (a check of the table), pt_f32_to_bf16, pt_bf16_round_bits,
 *    pt_bf16_round.
 *  - The table plus 1<<20 + 6 random bit patterns (n not a multiple of 16): the CPU backend's
 *    round_bf16 on 1 and 2 threads, out separate and out aliasing x, and from an odd offset;
 *    every element against the reference and against pt_f32_to_bf16; round_bf16 must not write
 *    past out[n]. pt_bf16_pack gives the same bits (and nothing past dst[n]).
 *  - pt_bf16_unpack_upper: for every n in 0..300 and for n = 1<<20, the packed values placed at
 *    byte 2n of a buffer of exactly n floats (so ASan sees any overrun), unpacked in place, equal
 *    the rounded values bitwise.
 * A failure prints the input bits, the wanted and the got bits; the exit status is the number of
 * failed checks (capped at 100). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_cases.h"
#include "pipetrain/backend.h"
#include "pipetrain/bf16.h"
#include "pipetrain/safetensors.h"

static int g_fail;

#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,        \
                    pt_last_error());                                                                    \
            g_fail++;                                                                                    \
        }                                                                                                \
    } while (0)

/* Reports the first few elements whose float bits differ from want[i] << 16. */
static void check_rounded(const char *what, const float *x_in, const float *got, const uint16_t *want, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t g = bf16_float_bits(got[i]), w = (uint32_t)want[i] << 16;
        if (g != w) {
            if (bad < 5)
                fprintf(stderr, "%s: element %zu of %zu: input 0x%08x, want 0x%08x, got 0x%08x\n", what, i, n,
                        x_in ? bf16_float_bits(x_in[i]) : 0u, w, g);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "%s: %zu of %zu elements differ\n", what, bad, n);
        g_fail++;
    }
}

static void test_table(void)
{
    for (size_t i = 0; i < BF16_N_CASES; i++) {
        const bf16_case *c = &bf16_cases[i];
        uint16_t ref = bf16_ref_bits(c->in);
        uint16_t st = pt_f32_to_bf16(bf16_bits_to_float(c->in));
        uint32_t rb = pt_bf16_round_bits(c->in);
        uint32_t rf = bf16_float_bits(pt_bf16_round(bf16_bits_to_float(c->in)));
        if (ref != c->out || st != c->out || rb != (uint32_t)c->out << 16 || rf != (uint32_t)c->out << 16) {
            fprintf(stderr, "case 0x%08x (%s): want 0x%04x; reference 0x%04x, pt_f32_to_bf16 0x%04x, "
                            "pt_bf16_round_bits 0x%08x, pt_bf16_round 0x%08x\n",
                    c->in, c->what, c->out, ref, st, rb, rf);
            g_fail++;
        }
        /* pt_bf16_to_f32 is the exact widening */
        EXPECT(bf16_float_bits(pt_bf16_to_f32(c->out)) == (uint32_t)c->out << 16);
    }
}

static void test_arrays(void)
{
    const pt_backend *be = NULL;
    EXPECT(pt_backend_get("cpu", &be) == PT_OK);
    EXPECT(be != NULL && be->round_bf16 != NULL);
    if (be == NULL || be->round_bf16 == NULL)
        return;
    const size_t n_random = ((size_t)1 << 20) + 6;
    const size_t cap = BF16_N_CASES + n_random;
    float *x = malloc(cap * sizeof *x), *x0 = malloc(cap * sizeof *x0), *out = malloc((cap + 1) * sizeof *out);
    uint16_t *want = malloc(cap * sizeof *want), *packed = malloc((cap + 1) * sizeof *packed);
    if (!x || !x0 || !out || !want || !packed) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    const size_t n = bf16_case_fill(x, n_random);
    EXPECT(n == cap && n % 16 != 0);
    memcpy(x0, x, n * sizeof *x);
    size_t n_ties = 0, n_nan = 0, n_sub = 0, st_bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = bf16_float_bits(x[i]);
        want[i] = bf16_ref_bits(b);
        n_ties += (b & 0xffffu) == 0x8000u;
        n_nan += (b & 0x7fffffffu) > 0x7f800000u;
        n_sub += (b & 0x7f800000u) == 0 && (b & 0x007fffffu) != 0;
        if (pt_f32_to_bf16(x[i]) != want[i] && st_bad++ < 5)
            fprintf(stderr, "pt_f32_to_bf16: input 0x%08x: want 0x%04x, got 0x%04x\n", b, want[i],
                    pt_f32_to_bf16(x[i]));
    }
    EXPECT(st_bad == 0);
    EXPECT(n_ties > 10000 && n_nan > 1000);

    for (int threads = 1; threads <= 2; threads++) {
        pt_stream *s = NULL;
        EXPECT(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = threads }, &s) == PT_OK);
        if (s == NULL)
            return;
        char what[96];
        /* out separate, with a guard past the end */
        const float guard = bf16_bits_to_float(0x12345678u);
        out[n] = guard;
        EXPECT(be->round_bf16(s, out, x, n) == PT_OK);
        EXPECT(be->stream_sync(s) == PT_OK);
        snprintf(what, sizeof what, "round_bf16 out separate, %d thread(s)", threads);
        check_rounded(what, x, out, want, n);
        EXPECT(bf16_float_bits(out[n]) == 0x12345678u);
        EXPECT(memcmp(x, x0, n * sizeof *x) == 0); /* the input untouched */
        /* out aliasing x */
        memcpy(out, x, n * sizeof *x);
        EXPECT(be->round_bf16(s, out, out, n) == PT_OK);
        EXPECT(be->stream_sync(s) == PT_OK);
        snprintf(what, sizeof what, "round_bf16 in place, %d thread(s)", threads);
        check_rounded(what, x, out, want, n);
        /* in place from an odd offset (neither the start nor the count aligned) */
        memcpy(out, x, n * sizeof *x);
        EXPECT(be->round_bf16(s, out + 3, out + 3, n - 3) == PT_OK);
        EXPECT(be->stream_sync(s) == PT_OK);
        snprintf(what, sizeof what, "round_bf16 in place from element 3, %d thread(s)", threads);
        EXPECT(memcmp(out, x, 3 * sizeof *x) == 0);
        check_rounded(what, x + 3, out + 3, want + 3, n - 3);
        /* n = 0 writes nothing */
        out[0] = guard;
        EXPECT(be->round_bf16(s, out, x, 0) == PT_OK);
        EXPECT(be->stream_sync(s) == PT_OK);
        EXPECT(bf16_float_bits(out[0]) == 0x12345678u);
        be->stream_destroy(s);
    }

    packed[n] = 0xabcd;
    pt_bf16_pack(packed, x, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (packed[i] != want[i] && bad++ < 5)
            fprintf(stderr, "pt_bf16_pack: element %zu: input 0x%08x, want 0x%04x, got 0x%04x\n", i,
                    bf16_float_bits(x[i]), want[i], packed[i]);
    EXPECT(bad == 0);
    EXPECT(packed[n] == 0xabcd);
    EXPECT(memcmp(x, x0, n * sizeof *x) == 0);
    printf("%s round_bf16 and pt_bf16_pack: %zu values (%zu ties, %zu NaNs, %zu subnormals) as the reference\n",
           g_fail ? "FAIL" : "ok  ", n, n_ties, n_nan, n_sub);

    /* unpack_upper: buf of exactly n floats, packed values at byte 2n */
    for (size_t m = 0; m <= 301; m++) {
        size_t k = m <= 300 ? m : (size_t)1 << 20;
        size_t off = m <= 300 ? BF16_N_CASES + 7 * m : 0; /* small n: random values; large: the table first */
        if (m <= 300 && k <= BF16_N_CASES)
            off = 0;
        float *buf = malloc(k ? k * sizeof(float) : 1);
        if (buf == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        memset(buf, 0xa5, k * sizeof(float)); /* garbage in the lower half */
        memcpy((unsigned char *)buf + 2 * k, packed + off, 2 * k);
        pt_bf16_unpack_upper(buf, k);
        char what[64];
        snprintf(what, sizeof what, "pt_bf16_unpack_upper n %zu", k);
        int before = g_fail;
        check_rounded(what, x + off, buf, want + off, k);
        free(buf);
        if (g_fail > before && g_fail > 20)
            break;
    }
    printf("%s pt_bf16_unpack_upper: n 0..300 and %zu round-trip pt_bf16_pack\n", g_fail ? "FAIL" : "ok  ",
           (size_t)1 << 20);
    free(x);
    free(x0);
    free(out);
    free(want);
    free(packed);
}

int main(void)
{
    test_table();
    printf("%s %zu hand-worked cases\n", g_fail ? "FAIL" : "ok  ", BF16_N_CASES);
    test_arrays();
    if (g_fail)
        fprintf(stderr, "%d check(s) failed\n", g_fail);
    return g_fail > 100 ? 100 : g_fail;
}
