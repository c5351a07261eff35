/* kernels/cpu/elementwise.c — add, scale, sum of squares, non-finite check, GELU (tanh form) and
 * its fused forms (bias + GELU, the bf16 roundings around its gradient).
 * Each loop is a plain OpenMP `parallel for simd` over the elements; small inputs stay on the
 * calling thread. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_internal.h"
#include "pipetrain/bf16.h"

pt_status pt_cpu_add(pt_stream *s, float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
    return PT_OK;
}

pt_status pt_cpu_scale(pt_stream *s, float *x, float alpha, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] *= alpha;
    return PT_OK;
}

pt_status pt_cpu_round_bf16(pt_stream *s, float *out, const float *x, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = pt_bf16_round(x[i]);
    return PT_OK;
}

/* pipetrain/bf16.h's rounding, as round_bf16; dst does not overlap x, so the loop is parallel. */
pt_status pt_cpu_pack_bf16(pt_stream *s, uint16_t *dst, const float *x, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        dst[i] = (uint16_t)(pt_bf16_round_bits(b) >> 16);
    }
    return PT_OK;
}

pt_status pt_cpu_round_pack_bf16(pt_stream *s, float *x, uint16_t *packed, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        b = pt_bf16_round_bits(b);
        memcpy(&x[i], &b, 4);
        packed[i] = (uint16_t)(b >> 16);
    }
    return PT_OK;
}

pt_status pt_cpu_unpack_bf16(pt_stream *s, float *out, const uint16_t *src, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        const uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&out[i], &b, 4);
    }
    return PT_OK;
}

pt_status pt_cpu_unpack_bf16_upper(pt_stream *s, float *buf, size_t n)
{
    (void)s;
    pt_bf16_unpack_upper(buf, n);
    return PT_OK;
}

/* The sum is taken over at most PT_SUMSQ_BLOCKS blocks of equal size (a function of n only);
 * each block's sum runs in a fixed vector order, and the block sums are added in index order.
 * So the result depends on n and the data, never on the thread count. */
#define PT_SUMSQ_BLOCKS 1024
#define PT_SUMSQ_MIN_BLOCK 4096

pt_status pt_cpu_sum_squares(pt_stream *s, double *out, const float *x, size_t n)
{
    double partial[PT_SUMSQ_BLOCKS];
    size_t block = (n + PT_SUMSQ_BLOCKS - 1) / PT_SUMSQ_BLOCKS;
    if (block < PT_SUMSQ_MIN_BLOCK)
        block = PT_SUMSQ_MIN_BLOCK;
    size_t n_blocks = (n + block - 1) / block;
#pragma omp parallel for num_threads(s->n_threads) if (n_blocks > 1) schedule(static)
    for (size_t k = 0; k < n_blocks; k++) {
        size_t lo = k * block, hi = lo + block < n ? lo + block : n;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (size_t i = lo; i < hi; i++)
            acc += (double)x[i] * (double)x[i];
        partial[k] = acc;
    }
    double total = 0.0;
    for (size_t k = 0; k < n_blocks; k++)
        total += partial[k];
    *out = total;
    return PT_OK;
}

pt_status pt_cpu_has_nonfinite(pt_stream *s, int *out, const float *x, size_t n)
{
    uint32_t bad = 0;
    /* NaN and Inf are exactly the values with all exponent bits set. */
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static) reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
    }
    *out = bad != 0;
    return PT_OK;
}

#define PT_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define PT_GELU_A 0.044715f

/* GELU and its derivative, one element; the plain and the fused loops below all use these. */
static inline float pt_cpu_gelu(float x)
{
    float u = PT_GELU_K * (x + PT_GELU_A * x * x * x);
    return 0.5f * x * (1.0f + pt_cpu_tanhf(u));
}

static inline float pt_cpu_gelu_grad(float x)
{
    float u = PT_GELU_K * (x + PT_GELU_A * x * x * x);
    float th = pt_cpu_tanhf(u);
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * PT_GELU_K * (1.0f + 3.0f * PT_GELU_A * x * x);
}

pt_status pt_cpu_gelu_forward(pt_stream *s, float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = pt_cpu_gelu(inp[i]);
    return PT_OK;
}

pt_status pt_cpu_gelu_backward(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n)
{
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] = pt_cpu_gelu_grad(inp[i]) * dout[i];
    return PT_OK;
}

/* x += bias [r], out = gelu(x) [r], row by row (a row of x is read once and written once). */
pt_status pt_cpu_bias_gelu_forward(pt_stream *s, float *x, float *out, const float *bias, int N, int F, int rnd)
{
    if (N < 0 || F <= 0)
        return pt_fail(PT_EINVAL, "bias_gelu_forward: shape N=%d F=%d; F must be positive and N not negative", N, F);
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * F >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        float *xr = x + (size_t)n * F, *yr = out + (size_t)n * F;
        if (bias)
            pt_cpu_add_row(xr, xr, bias, F, rnd);
        else if (rnd)
            pt_cpu_round_row(xr, F);
#pragma omp simd
        for (int i = 0; i < F; i++) {
            const float g = pt_cpu_gelu(xr[i]);
            yr[i] = rnd ? pt_bf16_round(g) : g;
        }
    }
    return PT_OK;
}

pt_status pt_cpu_gelu_backward_round(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n,
                                     int rnd)
{
    if (!rnd)
        return pt_cpu_gelu_backward(s, dinp, inp, dout, n);
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] = pt_bf16_round(pt_cpu_gelu_grad(inp[i]) * pt_bf16_round(dout[i]));
    return PT_OK;
}
