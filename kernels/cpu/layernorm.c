/* kernels/cpu/layernorm.c — layernorm over the last dim (eps 1e-5), forward and backward.
 *
 * The input gradient is row-parallel (rows are independent). The weight gradients reduce over
 * rows, so they are column-parallel instead: each thread owns a block of columns and walks all
 * rows in order, which keeps them deterministic (independent of the thread count) without
 * scratch. The fused backward runs both loops in one thread team and calls the same per-row and
 * per-block helpers as the split entry points (never inlined, so compiled once), so its bits
 * are identical to theirs; so do the entries fused with a residual add (add_layernorm_forward,
 * layernorm_backward_input_add), which work row by row where the split calls make a pass each. */
#include <math.h>

#include "cpu_internal.h"

#define PT_LN_EPS 1e-5f
/* Columns per weight-gradient work item (a whole number of cache lines). */
#define PT_LN_COL_BLOCK 128

static pt_status pt_cpu_ln_check(const char *what, int N, int C)
{
    if (N < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d; C must be positive and N not negative", what, N, C);
    return PT_OK;
}

/* Row n of the forward: y = (x - mean) * rstd * w + b, mean and rstd stored. Never inlined, so
 * the plain and the add-fused entries run the same code and give the same bits. */
__attribute__((noinline)) static void pt_cpu_ln_fwd_row(float *y, float *mean, float *rstd, const float *x,
                                                        const float *w, const float *b, int C)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < C; i++)
        sum += x[i];
    float m = sum / (float)C;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < C; i++) {
        float d = x[i] - m;
        var += d * d;
    }
    float r = 1.0f / sqrtf(var / (float)C + PT_LN_EPS);
#pragma omp simd
    for (int i = 0; i < C; i++)
        y[i] = (x[i] - m) * r * w[i] + b[i];
    *mean = m;
    *rstd = r;
}

pt_status pt_cpu_layernorm_forward(pt_stream *s, float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C)
{
    PT_CHECK(pt_cpu_ln_check("layernorm_forward", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++)
        pt_cpu_ln_fwd_row(out + (size_t)n * C, mean + n, rstd + n, inp + (size_t)n * C, w, b, C);
    return PT_OK;
}

/* Row by row: the residual sum (rounded under bf16), then the row's norm from it while it is in
 * cache, then the norm's rounding; one pass where the split calls make four. */
pt_status pt_cpu_add_layernorm_forward(pt_stream *s, float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *w, const float *bias, int N,
                                       int C, int rnd)
{
    PT_CHECK(pt_cpu_ln_check("add_layernorm_forward", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        const float *x = a + o;
        if (b != NULL) {
            pt_cpu_add_row(res + o, a + o, b + o, C, rnd);
            x = res + o;
        }
        pt_cpu_ln_fwd_row(out + o, mean + n, rstd + n, x, w, bias, C);
        if (rnd)
            pt_cpu_round_row(out + o, C);
    }
    return PT_OK;
}

/* dinp row n: (w*dout - mean(w*dout) - norm * mean(w*dout*norm)) * rstd. */
__attribute__((noinline)) static void pt_cpu_ln_dinp_row(float *dx, const float *dy, const float *x,
                                                         const float *w, float m, float r, int C)
{
    float sum_d = 0.0f, sum_dn = 0.0f;
#pragma omp simd reduction(+ : sum_d, sum_dn)
    for (int i = 0; i < C; i++) {
        float dnorm = w[i] * dy[i];
        sum_d += dnorm;
        sum_dn += dnorm * ((x[i] - m) * r);
    }
    float mean_d = sum_d / (float)C, mean_dn = sum_dn / (float)C;
#pragma omp simd
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * r;
        dx[i] = (w[i] * dy[i] - mean_d - norm * mean_dn) * r;
    }
}

/* dw[lo,hi) += sum over rows of dout * norm; db[lo,hi) += sum over rows of dout (rows in order). */
__attribute__((noinline)) static void pt_cpu_ln_dw_block(float *dw, float *db, const float *dout,
                                                         const float *inp, const float *mean,
                                                         const float *rstd, int N, int C, int lo, int hi)
{
    float acc_w[PT_LN_COL_BLOCK], acc_b[PT_LN_COL_BLOCK];
    int len = hi - lo;
    for (int i = 0; i < len; i++) {
        acc_w[i] = dw[lo + i];
        acc_b[i] = db[lo + i];
    }
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C + lo;
        const float *x = inp + (size_t)n * C + lo;
        float m = mean[n], r = rstd[n];
#pragma omp simd
        for (int i = 0; i < len; i++) {
            acc_w[i] += dy[i] * ((x[i] - m) * r);
            acc_b[i] += dy[i];
        }
    }
    for (int i = 0; i < len; i++) {
        dw[lo + i] = acc_w[i];
        db[lo + i] = acc_b[i];
    }
}

pt_status pt_cpu_layernorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cpu_ln_check("layernorm_backward_input", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++)
        pt_cpu_ln_dinp_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, w, mean[n], rstd[n], C);
    return PT_OK;
}

pt_status pt_cpu_layernorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                              const float *w, const float *mean, const float *rstd,
                                              const float *resid, int N, int C, int rnd)
{
    PT_CHECK(pt_cpu_ln_check("layernorm_backward_input_add", N, C));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        pt_cpu_ln_dinp_row(dinp + o, dout + o, inp + o, w, mean[n], rstd[n], C);
        if (rnd)
            pt_cpu_round_row(dinp + o, C);
        pt_cpu_add_row(dinp + o, dinp + o, resid + o, C, rnd);
    }
    return PT_OK;
}

pt_status pt_cpu_layernorm_backward_weight(pt_stream *s, float *dw, float *db, const float *dout, const float *inp,
                                           const float *mean, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cpu_ln_check("layernorm_backward_weight", N, C));
    int n_blocks = (C + PT_LN_COL_BLOCK - 1) / PT_LN_COL_BLOCK;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int k = 0; k < n_blocks; k++) {
        int lo = k * PT_LN_COL_BLOCK, hi = lo + PT_LN_COL_BLOCK < C ? lo + PT_LN_COL_BLOCK : C;
        pt_cpu_ln_dw_block(dw, db, dout, inp, mean, rstd, N, C, lo, hi);
    }
    return PT_OK;
}

pt_status pt_cpu_layernorm_backward(pt_stream *s, float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                    int C)
{
    PT_CHECK(pt_cpu_ln_check("layernorm_backward", N, C));
    int n_blocks = (C + PT_LN_COL_BLOCK - 1) / PT_LN_COL_BLOCK;
#pragma omp parallel num_threads(s->n_threads) if ((size_t)N * C >= PT_CPU_PAR_MIN)
    {
        /* nowait: the two loops write disjoint outputs and only read shared inputs. */
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++)
            pt_cpu_ln_dinp_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, w, mean[n],
                               rstd[n], C);
#pragma omp for schedule(static)
        for (int k = 0; k < n_blocks; k++) {
            int lo = k * PT_LN_COL_BLOCK, hi = lo + PT_LN_COL_BLOCK < C ? lo + PT_LN_COL_BLOCK : C;
            pt_cpu_ln_dw_block(dw, db, dout, inp, mean, rstd, N, C, lo, hi);
        }
    }
    return PT_OK;
}
