/* kernels/cpu/llama.c — the Llama-family layers: RMSNorm, rotary position embedding (RoPE,
 * rotate-half form) and the SwiGLU activation, forward and backward.
 *
 * RMSNorm follows Hugging Face's LlamaRMSNorm: rstd = 1 / sqrtf(mean(x^2) + eps), out = (x * rstd)
 * * w. The mean of squares is accumulated in double and rounded to float once (torch sums the
 * fp32 squares pairwise in fp32; the double sum is within one rounding of the exact mean, so it
 * is at least as close to the true value as either framework's); everything after it is fp32 in
 * HF's order. The structure is layernorm.c's: the input gradient is row-parallel; the weight
 * gradient reduces over rows, so it is column-parallel (each thread owns blocks of columns and
 * walks all rows in order), deterministic for any thread count without scratch; the fused
 * backward calls the same never-inlined helpers as the split entries, so it gives their bits.
 *
 * RoPE rotates the pairs (x[i], x[i + hs/2]) of every q and k head by the angle of the token's
 * position, in place; the backward applies the transpose (the rotation by minus the angle).
 * SwiGLU: out = silu(gate) * up with silu(g) = g / (1 + exp(-g)) (torch's formula), exp being
 * the vectorisable pt_cpu_expf. Both are row-parallel, so every thread count gives the same bits. */
#include <math.h>

#include "cpu_internal.h"

/* Columns per weight-gradient work item (a whole number of cache lines). */
#define PT_RMS_COL_BLOCK 128

static pt_status pt_cpu_rms_check(const char *what, int N, int C)
{
    if (N < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d; C must be positive and N not negative", what, N, C);
    return PT_OK;
}

/* Row n of the forward (never inlined: the plain and the add-fused entries share its bits). */
__attribute__((noinline)) static void pt_cpu_rms_fwd_row(float *y, float *rstd, const float *x, const float *w, int C,
                                                         float eps)
{
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < C; i++)
        ss += (double)x[i] * (double)x[i];
    float ms = (float)(ss / (double)C);
    float r = 1.0f / sqrtf(ms + eps);
#pragma omp simd
    for (int i = 0; i < C; i++)
        y[i] = (x[i] * r) * w[i];
    *rstd = r;
}

pt_status pt_cpu_rmsnorm_forward(pt_stream *s, float *out, float *rstd, const float *inp, const float *w, int N,
                                 int C, float eps)
{
    PT_CHECK(pt_cpu_rms_check("rmsnorm_forward", N, C));
    if (!(eps >= 0.0f))
        return pt_fail(PT_EINVAL, "rmsnorm_forward: eps %g; pass the model's rms_norm_eps (>= 0, e.g. 1e-5)",
                       (double)eps);
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++)
        pt_cpu_rms_fwd_row(out + (size_t)n * C, rstd + n, inp + (size_t)n * C, w, C, eps);
    return PT_OK;
}

/* As add_layernorm_forward (layernorm.c): sum, rounding, norm and rounding row by row. */
pt_status pt_cpu_add_rmsnorm_forward(pt_stream *s, float *res, float *out, float *rstd, const float *a,
                                     const float *b, const float *w, int N, int C, float eps, int rnd)
{
    PT_CHECK(pt_cpu_rms_check("add_rmsnorm_forward", N, C));
    if (!(eps >= 0.0f))
        return pt_fail(PT_EINVAL, "add_rmsnorm_forward: eps %g; pass the model's rms_norm_eps (>= 0, e.g. 1e-5)",
                       (double)eps);
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        const float *x = a + o;
        if (b != NULL) {
            pt_cpu_add_row(res + o, a + o, b + o, C, rnd);
            x = res + o;
        }
        pt_cpu_rms_fwd_row(out + o, rstd + n, x, w, C, eps);
        if (rnd)
            pt_cpu_round_row(out + o, C);
    }
    return PT_OK;
}

/* dinp row n, with norm = x * rstd and g = w * dout: (g - norm * mean(g * norm)) * rstd. */
__attribute__((noinline)) static void pt_cpu_rms_dinp_row(float *dx, const float *dy, const float *x, const float *w,
                                                          float r, int C)
{
    float sum_gn = 0.0f;
#pragma omp simd reduction(+ : sum_gn)
    for (int i = 0; i < C; i++)
        sum_gn += (w[i] * dy[i]) * (x[i] * r);
    float mean_gn = sum_gn / (float)C;
#pragma omp simd
    for (int i = 0; i < C; i++)
        dx[i] = (w[i] * dy[i] - (x[i] * r) * mean_gn) * r;
}

/* dw[lo,hi) += sum over rows (in order) of dout * (inp * rstd). */
__attribute__((noinline)) static void pt_cpu_rms_dw_block(float *dw, const float *dout, const float *inp,
                                                          const float *rstd, int N, int C, int lo, int hi)
{
    float acc[PT_RMS_COL_BLOCK];
    int len = hi - lo;
    for (int i = 0; i < len; i++)
        acc[i] = dw[lo + i];
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C + lo;
        const float *x = inp + (size_t)n * C + lo;
        float r = rstd[n];
#pragma omp simd
        for (int i = 0; i < len; i++)
            acc[i] += dy[i] * (x[i] * r);
    }
    for (int i = 0; i < len; i++)
        dw[lo + i] = acc[i];
}

pt_status pt_cpu_rmsnorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                        const float *w, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cpu_rms_check("rmsnorm_backward_input", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++)
        pt_cpu_rms_dinp_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, w, rstd[n], C);
    return PT_OK;
}

pt_status pt_cpu_rmsnorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                            const float *w, const float *rstd, const float *resid, int N, int C,
                                            int rnd)
{
    PT_CHECK(pt_cpu_rms_check("rmsnorm_backward_input_add", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        pt_cpu_rms_dinp_row(dinp + o, dout + o, inp + o, w, rstd[n], C);
        if (rnd)
            pt_cpu_round_row(dinp + o, C);
        pt_cpu_add_row(dinp + o, dinp + o, resid + o, C, rnd);
    }
    return PT_OK;
}

pt_status pt_cpu_rmsnorm_backward_weight(pt_stream *s, float *dw, const float *dout, const float *inp,
                                         const float *rstd, int N, int C)
{
    PT_CHECK(pt_cpu_rms_check("rmsnorm_backward_weight", N, C));
    int n_blocks = (C + PT_RMS_COL_BLOCK - 1) / PT_RMS_COL_BLOCK;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int k = 0; k < n_blocks; k++) {
        int lo = k * PT_RMS_COL_BLOCK, hi = lo + PT_RMS_COL_BLOCK < C ? lo + PT_RMS_COL_BLOCK : C;
        pt_cpu_rms_dw_block(dw, dout, inp, rstd, N, C, lo, hi);
    }
    return PT_OK;
}

pt_status pt_cpu_rmsnorm_backward(pt_stream *s, float *dinp, float *dw, const float *dout, const float *inp,
                                  const float *w, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cpu_rms_check("rmsnorm_backward", N, C));
    int n_blocks = (C + PT_RMS_COL_BLOCK - 1) / PT_RMS_COL_BLOCK;
#pragma omp parallel num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN)
    {
        /* nowait: the two loops write disjoint outputs and only read shared inputs. */
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++)
            pt_cpu_rms_dinp_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, w, rstd[n], C);
#pragma omp for schedule(static)
        for (int k = 0; k < n_blocks; k++) {
            int lo = k * PT_RMS_COL_BLOCK, hi = lo + PT_RMS_COL_BLOCK < C ? lo + PT_RMS_COL_BLOCK : C;
            pt_cpu_rms_dw_block(dw, dout, inp, rstd, N, C, lo, hi);
        }
    }
    return PT_OK;
}

/* ---- rotary position embedding ---- */

static pt_status pt_cpu_rope_check(const char *what, int B, int T, int NH, int NKV, int hs, int pos0)
{
    if (B <= 0 || T <= 0 || NH <= 0 || hs <= 0 || pos0 < 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d NH=%d hs=%d pos0=%d; sizes must be positive and pos0 not "
                                  "negative",
                       what, B, T, NH, hs, pos0);
    if (NKV < 1 || NKV > NH || NH % NKV != 0)
        return pt_fail(PT_EINVAL,
                       "%s: NKV=%d key/value heads with NH=%d query heads; NKV must be at least 1 and divide NH "
                       "(NKV = NH for multi-head attention)",
                       what, NKV, NH);
    if (hs % 2 != 0)
        return pt_fail(PT_EINVAL, "%s: head width hs=%d is odd; rotary embedding rotates pairs (i, i + hs/2), so "
                                  "use an even head width (n_embd / n_head)",
                       what, hs);
    return PT_OK;
}

/* Rotates every q and k head of one token's row by the table row (c, sn); backward: the
 * transpose (the rotation by minus the angle). */
static inline void pt_rope_row(float *x, const float *c, const float *sn, int n_heads, int hs, int backward)
{
    const int half = hs / 2;
    for (int h = 0; h < n_heads; h++) {
        float *a = x + (size_t)h * hs, *b = a + half;
        if (!backward) {
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float x0 = a[i], x1 = b[i];
                a[i] = x0 * c[i] - x1 * sn[i];
                b[i] = x1 * c[i] + x0 * sn[i];
            }
        } else {
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float d0 = a[i], d1 = b[i];
                a[i] = d0 * c[i] + d1 * sn[i];
                b[i] = d1 * c[i] - d0 * sn[i];
            }
        }
    }
}

static void pt_rope_apply(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                          int NKV, int hs, int pos0, int backward)
{
    const size_t W = (size_t)(NH + 2 * NKV) * hs;
    const int half = hs / 2, n_rows = B * T, n_heads = NH + NKV; /* q heads then k heads: contiguous */
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)n_rows * n_heads * hs >= PT_CPU_PAR_MIN) \
    schedule(static)
    for (int r = 0; r < n_rows; r++) {
        const size_t p = (size_t)(pos0 + r % T) * half;
        pt_rope_row(qkv + (size_t)r * W, cos + p, sin + p, n_heads, hs, backward);
    }
}

pt_status pt_cpu_rope_forward(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                              int NKV, int hs, int pos0)
{
    PT_CHECK(pt_cpu_rope_check("rope_forward", B, T, NH, NKV, hs, pos0));
    pt_rope_apply(s, qkv, cos, sin, B, T, NH, NKV, hs, pos0, 0);
    return PT_OK;
}

pt_status pt_cpu_rope_backward(pt_stream *s, float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                               int NKV, int hs, int pos0)
{
    PT_CHECK(pt_cpu_rope_check("rope_backward", B, T, NH, NKV, hs, pos0));
    pt_rope_apply(s, dqkv, cos, sin, B, T, NH, NKV, hs, pos0, 1);
    return PT_OK;
}

/* ---- SwiGLU ---- */

static pt_status pt_cpu_swiglu_check(const char *what, int N, int H)
{
    if (N < 0 || H <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d H=%d; H must be positive and N not negative", what, N, H);
    return PT_OK;
}

pt_status pt_cpu_swiglu_forward(pt_stream *s, float *out, const float *gu, int N, int H)
{
    PT_CHECK(pt_cpu_swiglu_check("swiglu_forward", N, H));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * H >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * H, *u = g + H;
        float *y = out + (size_t)n * H;
#pragma omp simd
        for (int i = 0; i < H; i++)
            y[i] = g[i] / (1.0f + pt_cpu_expf(-g[i])) * u[i];
    }
    return PT_OK;
}

pt_status pt_cpu_swiglu_backward(pt_stream *s, float *dgu, const float *dout, const float *gu, int N, int H)
{
    PT_CHECK(pt_cpu_swiglu_check("swiglu_backward", N, H));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * H >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * H, *u = g + H, *dy = dout + (size_t)n * H;
        float *dg = dgu + (size_t)n * 2 * H, *du = dg + H;
#pragma omp simd
        for (int i = 0; i < H; i++) {
            float den = 1.0f + pt_cpu_expf(-g[i]);
            float sig = 1.0f / den, silu = g[i] / den; /* silu: the forward's bits */
            /* silu'(g) = sig * (1 + g * (1 - sig)) */
            dg[i] = dy[i] * u[i] * (sig * (1.0f + g[i] * (1.0f - sig)));
            du[i] = dy[i] * silu;
        }
    }
    return PT_OK;
}
