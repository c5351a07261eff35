/* kernels/cpu/attention.c — causal multi-head self-attention, scale 1/sqrt(C/NH).
 *
 * Memory choice: the forward keeps only the log-sum-exp of each softmax row, saved = (B,NH,T)
 * floats, and the backward recomputes the probabilities from Q, K and that log-sum-exp. Keeping
 * the probabilities themselves would cost (B,NH,T,T) floats per layer and micro-batch (200 MB
 * for B=4, T=1024, 12 heads), which is what limits how many micro-batches a pipeline stage can
 * hold in flight; the recompute costs one extra Q K^T product (one sixth more attention FLOPs).
 *
 * Work: one task per (batch, head), each on one thread, so every task's arithmetic is the same
 * whatever the thread count. A task walks its queries in blocks of PT_ATT_QBLOCK rows; a block
 * only looks at keys up to its last row (causality), so long sequences skip most of the masked
 * half. The products are single-threaded OpenBLAS sgemm calls on strided views of qkv:
 *   forward   S = scale Q_blk K^T, P = softmax(S) (masked), O_blk = P V
 *   backward  P from S and lse, dV += P^T dO_blk, dP = dO_blk V^T, D = rowsum(dO * O),
 *             dS = P (dP - D), dQ_blk = scale dS K, dK += scale dS^T Q_blk
 * Scratch: two (QBLOCK, T) buffers per task (P and dP), so (B*NH) * 2 * min(T,64) * T floats. */
#include <math.h>

#include "cpu_internal.h"

#define PT_ATT_QBLOCK 64

static int pt_att_rows(int T) { return T < PT_ATT_QBLOCK ? T : PT_ATT_QBLOCK; }

size_t pt_cpu_attention_saved_size(int B, int T, int C, int NH, int NKV)
{
    (void)NKV;
    (void)C;
    return (size_t)B * NH * T;
}

size_t pt_cpu_attention_scratch_size(int B, int T, int C, int NH, int NKV)
{
    (void)NKV;
    (void)C;
    return (size_t)B * NH * 2 * pt_att_rows(T) * T;
}

static pt_status pt_cpu_att_check(const char *what, int B, int T, int C, int NH)
{
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d NH=%d; sizes must be positive and NH must divide C",
                       what, B, T, C, NH);
    return PT_OK;
}

/* S (rb,kend) = scale * Q[i0:i0+rb] K[0:kend]^T for one (b,h). */
static void pt_att_scores(float *S, const float *q, const float *k, int i0, int rb, int kend, int hs, int ld,
                          float scale)
{
    pt_cpu_sgemm1(0, 1, rb, kend, hs, scale, q + (size_t)i0 * ld, ld, k, ld, 0.0f, S, kend);
}

pt_status pt_cpu_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                   int T, int C, int NH, int NKV)
{
    if (NKV != NH)
        return pt_fail(PT_ENOTSUP, "attention_forward: grouped-query attention (NKV %d < NH %d) is not implemented on this backend yet", NKV, NH);
    PT_CHECK(pt_cpu_att_check("attention_forward", B, T, C, NH));
    pt_cpu_blas_single();
    const int hs = C / NH, ld = 3 * C, rows = pt_att_rows(T);
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH;
#pragma omp parallel for num_threads(s->n_threads) schedule(dynamic, 1)
    for (int task = 0; task < n_tasks; task++) {
        int b = task / NH, h = task % NH;
        const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
        const float *k = q + C, *v = q + 2 * C;
        float *o = out + (size_t)b * T * C + (size_t)h * hs;
        float *lse = saved + (size_t)task * T;
        float *S = scratch + (size_t)task * 2 * rows * T;
        for (int i0 = 0; i0 < T; i0 += PT_ATT_QBLOCK) {
            int rb = T - i0 < PT_ATT_QBLOCK ? T - i0 : PT_ATT_QBLOCK;
            int kend = i0 + rb;
            pt_att_scores(S, q, k, i0, rb, kend, hs, ld, scale);
            for (int r = 0; r < rb; r++) {
                int t = i0 + r;
                float *row = S + (size_t)r * kend;
                float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
                for (int j = 0; j <= t; j++)
                    mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j <= t; j++) {
                    float e = pt_cpu_expf(row[j] - mx);
                    row[j] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
#pragma omp simd
                for (int j = 0; j <= t; j++)
                    row[j] *= inv;
                for (int j = t + 1; j < kend; j++)
                    row[j] = 0.0f;
                lse[t] = mx + logf(sum);
            }
            pt_cpu_sgemm1(0, 0, rb, hs, kend, 1.0f, S, kend, v, ld, 0.0f, o + (size_t)i0 * C, C);
        }
    }
    return PT_OK;
}

pt_status pt_cpu_attention_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                    const float *out, const float *saved, int B, int T, int C, int NH, int NKV)
{
    if (NKV != NH)
        return pt_fail(PT_ENOTSUP, "attention_backward: grouped-query attention (NKV %d < NH %d) is not implemented on this backend yet", NKV, NH);
    PT_CHECK(pt_cpu_att_check("attention_backward", B, T, C, NH));
    pt_cpu_blas_single();
    const int hs = C / NH, ld = 3 * C, rows = pt_att_rows(T);
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH;
#pragma omp parallel for num_threads(s->n_threads) schedule(dynamic, 1)
    for (int task = 0; task < n_tasks; task++) {
        int b = task / NH, h = task % NH;
        size_t base = (size_t)b * T * ld + (size_t)h * hs;
        const float *q = qkv + base, *k = q + C, *v = q + 2 * C;
        float *dq = dqkv + base, *dk = dq + C, *dv = dq + 2 * C;
        const float *o = out + (size_t)b * T * C + (size_t)h * hs;
        const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
        const float *lse = saved + (size_t)task * T;
        float *P = scratch + (size_t)task * 2 * rows * T;
        float *dP = P + (size_t)rows * T;
        /* Query blocks last to first: the last block sees every key, so its products write
         * dK and dV whole (beta 0) and the earlier ones add to them; no zeroing pass. */
        const int last_i0 = (T - 1) / PT_ATT_QBLOCK * PT_ATT_QBLOCK;
        for (int i0 = last_i0; i0 >= 0; i0 -= PT_ATT_QBLOCK) {
            int rb = T - i0 < PT_ATT_QBLOCK ? T - i0 : PT_ATT_QBLOCK;
            int kend = i0 + rb;
            float beta = i0 == last_i0 ? 0.0f : 1.0f;
            pt_att_scores(P, q, k, i0, rb, kend, hs, ld, scale);
            for (int r = 0; r < rb; r++) {
                int t = i0 + r;
                float *row = P + (size_t)r * kend;
                float l = lse[t];
#pragma omp simd
                for (int j = 0; j <= t; j++)
                    row[j] = pt_cpu_expf(row[j] - l);
                for (int j = t + 1; j < kend; j++)
                    row[j] = 0.0f;
            }
            const float *dO_blk = dO + (size_t)i0 * C;
            pt_cpu_sgemm1(1, 0, kend, hs, rb, 1.0f, P, kend, dO_blk, C, beta, dv, ld);
            pt_cpu_sgemm1(0, 1, rb, kend, hs, 1.0f, dO_blk, C, v, ld, 0.0f, dP, kend);
            for (int r = 0; r < rb; r++) {
                int t = i0 + r;
                const float *dOt = dO + (size_t)t * C, *ot = o + (size_t)t * C;
                float D = 0.0f;
#pragma omp simd reduction(+ : D)
                for (int d = 0; d < hs; d++)
                    D += dOt[d] * ot[d];
                float *row = P + (size_t)r * kend;
                const float *drow = dP + (size_t)r * kend;
#pragma omp simd
                for (int j = 0; j <= t; j++)
                    row[j] = row[j] * (drow[j] - D);
            }
            pt_cpu_sgemm1(0, 0, rb, hs, kend, scale, P, kend, k, ld, 0.0f, dq + (size_t)i0 * ld, ld);
            pt_cpu_sgemm1(1, 0, kend, hs, rb, scale, P, kend, q + (size_t)i0 * ld, ld, beta, dk, ld);
        }
    }
    return PT_OK;
}

/* Attention of new queries against a KV cache (generation): one task per (sequence, head, query),
 * an online softmax over the keys 0..t0+i that uses the output row itself as the accumulator
 * (rescaled when the running maximum grows), so no scratch is needed. Keys are read in order, so
 * the result does not depend on the thread count. */
pt_status pt_cpu_attention_decode(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n, int C,
                                  int NH, int NKV)
{
    if (NKV != NH)
        return pt_fail(PT_ENOTSUP, "attention_decode: grouped-query attention (NKV %d < NH %d) is not implemented on this backend yet", NKV, NH);
    if (B <= 0 || n <= 0 || C <= 0 || NH <= 0 || C % NH != 0 || t0 < 0 || Tcap <= 0 || t0 + n > Tcap)
        return pt_fail(PT_EINVAL,
                       "attention_decode: shape B=%d Tcap=%d t0=%d n=%d C=%d NH=%d; sizes must be positive, NH must "
                       "divide C and t0 + n must not pass Tcap",
                       B, Tcap, t0, n, C, NH);
    const int hs = C / NH;
    const size_t ld = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH * n;
#pragma omp parallel for num_threads(s->n_threads) schedule(static) if (n_tasks > 1)
    for (int task = 0; task < n_tasks; task++) {
        const int b = task / (NH * n), h = task / n % NH, i = task % n, pos = t0 + i;
        const float *base = cache + (size_t)b * Tcap * ld + (size_t)h * hs;
        const float *q = base + (size_t)pos * ld;
        float *o = out + ((size_t)b * n + i) * C + (size_t)h * hs;
        for (int d = 0; d < hs; d++)
            o[d] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float *k = base + (size_t)j * ld + C, *v = k + C;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int d = 0; d < hs; d++)
                dot += q[d] * k[d];
            dot *= scale;
            if (dot > m) {
                float corr = pt_cpu_expf(m - dot); /* m = -inf the first time: corr ~ 0 and o, l are 0 */
                l *= corr;
#pragma omp simd
                for (int d = 0; d < hs; d++)
                    o[d] *= corr;
                m = dot;
            }
            float p = pt_cpu_expf(dot - m);
            l += p;
#pragma omp simd
            for (int d = 0; d < hs; d++)
                o[d] += p * v[d];
        }
        const float inv = 1.0f / l;
        for (int d = 0; d < hs; d++)
            o[d] *= inv;
    }
    return PT_OK;
}
