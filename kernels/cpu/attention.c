/* kernels/cpu/attention.c — causal self-attention, multi-head (GPT-2) or grouped-query (Llama),
 * scale 1/sqrt(C/NH).
 *
 * Layout: each token's qkv row holds the NH query heads, then the NKV key heads, then the NKV
 * value heads, hs = C/NH floats each (W = C + 2*NKV*hs floats; NKV == NH is GPT-2's (B,T,3C)).
 * Query head h attends with kv head h / G, G = NH/NKV (its group).
 *
 * Memory choice: the forward keeps only the log-sum-exp of each softmax row, saved = (B,NH,T)
 * floats, and the backward recomputes the probabilities from Q, K and that log-sum-exp. Keeping
 * the probabilities themselves would cost (B,NH,T,T) floats per layer and micro-batch (200 MB
 * for B=4, T=1024, 12 heads), which is what limits how many micro-batches a pipeline stage can
 * hold in flight; the recompute costs one extra Q K^T product (one sixth more attention FLOPs).
 *
 * Work: one task per (batch, query head), each on one thread, so every task's arithmetic is the
 * same whatever the thread count. A task walks its queries in blocks of PT_ATT_QBLOCK rows; a
 * block only looks at keys up to its last row (causality), so long sequences skip most of the
 * masked half. The products are single-threaded OpenBLAS sgemm calls on strided views of qkv:
 *   forward   S = scale Q_blk K^T, P = softmax(S) (masked), O_blk = P V
 *   backward  P from S and lse, dV += P^T dO_blk, dP = dO_blk V^T, D = rowsum(dO * O),
 *             dS = P (dP - D), dQ_blk = scale dS K, dK += scale dS^T Q_blk
 * Scratch: two (QBLOCK, T) buffers per task (P and dP), so (B*NH) * 2 * min(T,64) * T floats.
 *
 * Grouped-query backward: the key and value gradients of a kv head sum over the G query heads of
 * its group. Each query-head task writes its own dK, dV partials, (T,hs) each, into scratch (a
 * further B*NH * 2*T*hs floats, only when G > 1), and a second pass sums the G partials of each
 * kv head in head order into dqkv. So the sum has one fixed order whatever the thread count,
 * and there stay B*NH tasks to spread over the cores (one task per kv head looping over its
 * group would leave B*NKV, which is 1 for B = 1 and multi-query attention). With G == 1 the
 * tasks write dK, dV straight into dqkv, so multi-head attention computes exactly what it did
 * before grouped-query attention existed (the same operations in the same order: the same bits). */
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

/* The P/dP buffers of every task; the forward needs only these. */
static size_t pt_att_pbuf_size(int B, int T, int NH) { return (size_t)B * NH * 2 * pt_att_rows(T) * T; }

size_t pt_cpu_attention_scratch_size(int B, int T, int C, int NH, int NKV)
{
    size_t n = pt_att_pbuf_size(B, T, NH);
    if (NKV >= 1 && NKV < NH && NH > 0) /* the backward's per-query-head dK, dV partials */
        n += (size_t)B * NH * 2 * T * (size_t)(C / NH);
    return n;
}

static pt_status pt_cpu_att_check(const char *what, int B, int T, int C, int NH, int NKV)
{
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d NH=%d; sizes must be positive and NH must divide C",
                       what, B, T, C, NH);
    if (NKV < 1 || NKV > NH || NH % NKV != 0)
        return pt_fail(PT_EINVAL,
                       "%s: NKV=%d key/value heads with NH=%d query heads; NKV must be at least 1 and divide NH "
                       "(NKV = NH for multi-head attention)",
                       what, NKV, NH);
    return PT_OK;
}

/* S (rb,kend) = scale * Q[i0:i0+rb] K[0:kend]^T for one (b,h); q and k rows ld apart. */
static void pt_att_scores(float *S, const float *q, const float *k, int i0, int rb, int kend, int hs, int ld,
                          float scale)
{
    pt_cpu_sgemm1(0, 1, rb, kend, hs, scale, q + (size_t)i0 * ld, ld, k, ld, 0.0f, S, kend);
}

pt_status pt_cpu_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                   int T, int C, int NH, int NKV)
{
    PT_CHECK(pt_cpu_att_check("attention_forward", B, T, C, NH, NKV));
    pt_cpu_blas_single();
    const int hs = C / NH, ld = C + 2 * NKV * hs, rows = pt_att_rows(T), G = NH / NKV;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH;
#pragma omp parallel for num_threads(s->n_threads) schedule(dynamic, 1)
    for (int task = 0; task < n_tasks; task++) {
        int b = task / NH, h = task % NH, kvh = h / G;
        const float *row0 = qkv + (size_t)b * T * ld;
        const float *q = row0 + (size_t)h * hs;
        const float *k = row0 + C + (size_t)kvh * hs, *v = row0 + C + (size_t)(NKV + kvh) * hs;
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
    PT_CHECK(pt_cpu_att_check("attention_backward", B, T, C, NH, NKV));
    pt_cpu_blas_single();
    const int hs = C / NH, ld = C + 2 * NKV * hs, rows = pt_att_rows(T), G = NH / NKV;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH;
    /* G > 1: per-task dK, dV partials (T,hs) each, after the P/dP buffers */
    float *part = scratch + pt_att_pbuf_size(B, T, NH);
#pragma omp parallel num_threads(s->n_threads)
    {
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int b = task / NH, h = task % NH, kvh = h / G;
            const size_t row0 = (size_t)b * T * ld;
            const float *q = qkv + row0 + (size_t)h * hs;
            const float *k = qkv + row0 + C + (size_t)kvh * hs, *v = qkv + row0 + C + (size_t)(NKV + kvh) * hs;
            float *dq = dqkv + row0 + (size_t)h * hs, *dk, *dv;
            int ldkv;
            if (G == 1) {
                dk = dqkv + row0 + C + (size_t)kvh * hs;
                dv = dqkv + row0 + C + (size_t)(NKV + kvh) * hs;
                ldkv = ld;
            } else {
                dk = part + (size_t)task * 2 * T * hs;
                dv = dk + (size_t)T * hs;
                ldkv = hs;
            }
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
                pt_cpu_sgemm1(1, 0, kend, hs, rb, 1.0f, P, kend, dO_blk, C, beta, dv, ldkv);
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
                pt_cpu_sgemm1(1, 0, kend, hs, rb, scale, P, kend, q + (size_t)i0 * ld, ld, beta, dk, ldkv);
            }
        }
        /* G > 1: dK, dV of kv head g of batch b at token t = the partials of query heads
         * g*G .. g*G+G-1, added in that order (the implicit barrier above has them all). */
        if (G > 1) {
            const int n_rows = B * NKV * T;
#pragma omp for schedule(static)
            for (int r = 0; r < n_rows; r++) {
                int b = r / (NKV * T), kvh = r / T % NKV, t = r % T;
                float *dk = dqkv + ((size_t)b * T + t) * ld + C + (size_t)kvh * hs;
                float *dv = dk + (size_t)NKV * hs;
                const float *pk = part + ((size_t)(b * NH + kvh * G) * 2 * T + t) * hs;
                const size_t step = (size_t)2 * T * hs; /* from one task's partials to the next's */
                for (int d = 0; d < hs; d++) {
                    dk[d] = pk[d];
                    dv[d] = pk[(size_t)T * hs + d];
                }
                for (int g = 1; g < G; g++) {
                    const float *pg = pk + g * step;
#pragma omp simd
                    for (int d = 0; d < hs; d++) {
                        dk[d] += pg[d];
                        dv[d] += pg[(size_t)T * hs + d];
                    }
                }
            }
        }
    }
    return PT_OK;
}

/* Attention of new queries against a KV cache (generation): one task per (sequence, head, query),
 * an online softmax over the keys 0..t0+i that uses the output row itself as the accumulator
 * (rescaled when the running maximum grows), so no scratch is needed. Keys are read in order, so
 * the result does not depend on the thread count. Query head h reads kv head h / (NH/NKV). */
pt_status pt_cpu_attention_decode(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n, int C,
                                  int NH, int NKV)
{
    if (B <= 0 || n <= 0 || C <= 0 || NH <= 0 || C % NH != 0 || t0 < 0 || Tcap <= 0 || t0 + n > Tcap)
        return pt_fail(PT_EINVAL,
                       "attention_decode: shape B=%d Tcap=%d t0=%d n=%d C=%d NH=%d; sizes must be positive, NH must "
                       "divide C and t0 + n must not pass Tcap",
                       B, Tcap, t0, n, C, NH);
    if (NKV < 1 || NKV > NH || NH % NKV != 0)
        return pt_fail(PT_EINVAL,
                       "attention_decode: NKV=%d key/value heads with NH=%d query heads; NKV must be at least 1 and "
                       "divide NH (NKV = NH for multi-head attention)",
                       NKV, NH);
    const int hs = C / NH, G = NH / NKV;
    const size_t ld = (size_t)C + 2 * (size_t)NKV * hs;
    const float scale = 1.0f / sqrtf((float)hs);
    const int n_tasks = B * NH * n;
#pragma omp parallel for num_threads(s->n_threads) schedule(static) if (n_tasks > 1)
    for (int task = 0; task < n_tasks; task++) {
        const int b = task / (NH * n), h = task / n % NH, i = task % n, pos = t0 + i, kvh = h / G;
        const float *base = cache + (size_t)b * Tcap * ld;
        const float *q = base + (size_t)pos * ld + (size_t)h * hs;
        float *o = out + ((size_t)b * n + i) * C + (size_t)h * hs;
        for (int d = 0; d < hs; d++)
            o[d] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float *k = base + (size_t)j * ld + C + (size_t)kvh * hs, *v = k + (size_t)NKV * hs;
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
