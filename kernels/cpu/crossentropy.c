/* kernels/cpu/crossentropy.c — softmax + cross-entropy over the vocabulary, row-parallel.
 * A row's loss is log(sum exp(x - max)) + max - x[target]. Each row takes three passes (max;
 * exp written to probs while summing; scale by 1/sum): one exp per element, and a row of a
 * 50257-word vocabulary (200 KB) stays in L2 after the first pass. probs may alias logits.
 * Targets < 0 are ignored (loss 0, gradient row 0); a target >= V is refused before anything
 * is written. */
#include <math.h>

#include "cpu_internal.h"

static pt_status pt_cpu_ce_check(const char *what, const int32_t *targets, int N, int V)
{
    if (N < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d; V must be positive and N not negative", what, N, V);
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return pt_fail(PT_EINVAL, "%s: target %d at row %d is outside the vocabulary of %d; check the data "
                                      "and the model's vocab size", what, targets[i], i, V);
    return PT_OK;
}

/* The gradient row of an ignored target (< 0). */
static void ce_zero_row(float *d, int V)
{
#pragma omp simd
    for (int i = 0; i < V; i++)
        d[i] = 0.0f;
}

/* A logit as the forward reads it, a gradient as the backward writes it: its bf16 rounding under
 * rnd (round_bf16's bits). */
static inline float ce_rnd(float x, int rnd) { return rnd ? pt_bf16_round(x) : x; }

pt_status pt_cpu_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                      const int32_t *targets, int N, int V, int rnd)
{
    PT_CHECK(pt_cpu_ce_check("crossentropy_forward", targets, N, V));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < V; i++) {
            float v = ce_rnd(x[i], rnd);
            mx = v > mx ? v : mx;
        }
        int32_t tgt = targets[n];
        float x_tgt = tgt >= 0 ? ce_rnd(x[tgt], rnd) : 0.0f; /* read before p (which may be x) is written */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            float e = pt_cpu_expf(ce_rnd(x[i], rnd) - mx);
            p[i] = e;
            sum += e;
        }
        losses[n] = tgt >= 0 ? logf(sum) + mx - x_tgt : 0.0f;
        float inv = 1.0f / sum;
#pragma omp simd
        for (int i = 0; i < V; i++)
            p[i] *= inv;
    }
    return PT_OK;
}

pt_status pt_cpu_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                       float dloss, int N, int V, int rnd)
{
    PT_CHECK(pt_cpu_ce_check("crossentropy_backward", targets, N, V));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        int32_t tgt = targets[n];
        if (tgt < 0) {
            ce_zero_row(d, V);
            continue;
        }
        float p_tgt = p[tgt];
#pragma omp simd
        for (int i = 0; i < V; i++)
            d[i] = ce_rnd(dloss * p[i], rnd);
        d[tgt] = ce_rnd(dloss * (p_tgt - 1.0f), rnd);
    }
    return PT_OK;
}

/* ---- the same loss over vocabulary shards (backend.h, xent_shard_*), and the statistics of
 * ranges computed apart (tensor-parallel ranks) combined afterwards (xent_stats_combine) ---- */

static pt_status pt_cpu_xent_shape(const char *what, int N, int V, int v0)
{
    if (N < 0 || V <= 0 || v0 < 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d v0=%d; V must be positive, N and v0 not negative", what, N, V,
                       v0);
    return PT_OK;
}

/* One row's statistics: out = in (the ranges so far) combined with sh (the next range's own,
 * as a first shard writes them). The one combining rule of xent_shard_forward and
 * xent_stats_combine, so that both give the same bits; out may alias in or sh. */
static inline void xent_combine(float *out, const float *in, const float *sh)
{
    float m = in[0] > sh[0] ? in[0] : sh[0];
    float sum = in[1] * expf(in[0] - m) + sh[1] * expf(sh[0] - m);
    float x_tgt = in[2] + sh[2];
    /* the later range's maximum only when it has one and it is larger: the earlier keeps ties */
    int later = sh[4] >= 0.0f && (in[4] < 0.0f || sh[3] > in[3]);
    float best = later ? sh[3] : in[3], col = later ? sh[4] : in[4];
    out[0] = m;
    out[1] = sum;
    out[2] = x_tgt;
    out[3] = best;
    out[4] = col;
}

pt_status pt_cpu_xent_shard_forward(pt_stream *s, float *stats_out, float *exps, float *row_max,
                                    const float *stats_in, const float *logits, const int32_t *targets, int N, int V,
                                    int v0, int n_valid)
{
    PT_CHECK(pt_cpu_xent_shape("xent_shard_forward", N, V, v0));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *e = exps + (size_t)n * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < V; i++)
            mx = x[i] > mx ? x[i] : mx;
        const int nv = n_valid - v0 < V ? n_valid - v0 : V; /* n_valid bounds the global column */
        /* the first maximum among the valid columns: their max (the row's when none is padding),
         * then the first column holding it */
        float best = mx;
        if (nv < V) {
            best = -INFINITY;
#pragma omp simd reduction(max : best)
            for (int i = 0; i < nv; i++)
                best = x[i] > best ? x[i] : best;
        }
        int best_j = -1;
        for (int i = 0; i < nv; i++)
            if (x[i] == best) {
                best_j = i;
                break;
            }
        if (best_j < 0)
            best = -INFINITY; /* no valid column, or a NaN row */
        int32_t tgt = targets[n];
        int has_tgt = tgt >= v0 && tgt < v0 + V;
        float x_tgt = has_tgt ? x[tgt - v0] : 0.0f; /* read before e (which may be x) is written */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            float v = pt_cpu_expf(x[i] - mx);
            e[i] = v;
            sum += v;
        }
        row_max[n] = mx;
        float *o = stats_out + (size_t)n * PT_XENT_STATS;
        float st[PT_XENT_STATS] = { mx, sum, x_tgt, best, best_j >= 0 ? (float)(v0 + best_j) : -1.0f };
        if (stats_in)
            xent_combine(st, stats_in + (size_t)n * PT_XENT_STATS, st);
        for (int k = 0; k < PT_XENT_STATS; k++)
            o[k] = st[k];
    }
    return PT_OK;
}

pt_status pt_cpu_xent_stats_combine(pt_stream *s, float *stats, const float *parts, int n, int N)
{
    if (n < 1 || N < 0)
        return pt_fail(PT_EINVAL, "xent_stats_combine: n=%d parts of N=%d rows; n must be positive and N not "
                                  "negative", n, N);
    const size_t part = (size_t)N * PT_XENT_STATS;
#pragma omp parallel for num_threads(s->n_threads) if (part * n >= PT_CPU_PAR_MIN) schedule(static)
    for (int r = 0; r < N; r++) {
        float st[PT_XENT_STATS];
        const float *p = parts + (size_t)r * PT_XENT_STATS;
        for (int k = 0; k < PT_XENT_STATS; k++)
            st[k] = p[k];
        for (int j = 1; j < n; j++)
            xent_combine(st, st, p + j * part);
        float *o = stats + (size_t)r * PT_XENT_STATS;
        for (int k = 0; k < PT_XENT_STATS; k++)
            o[k] = st[k];
    }
    return PT_OK;
}

pt_status pt_cpu_xent_shard_finish(pt_stream *s, float *losses, float *lse, const float *stats,
                                   const int32_t *targets, int N, int V_total)
{
    PT_CHECK(pt_cpu_ce_check("xent_shard_finish", targets, N, V_total));
    (void)s;
    for (int n = 0; n < N; n++) {
        const float *st = stats + (size_t)n * PT_XENT_STATS;
        float l = logf(st[1]);
        lse[n] = l + st[0];
        losses[n] = targets[n] >= 0 ? l + st[0] - st[2] : 0.0f;
    }
    return PT_OK;
}

pt_status pt_cpu_xent_shard_backward(pt_stream *s, float *dlogits, const float *exps, const float *row_max,
                                     const float *lse, const int32_t *targets, float dloss, int N, int V, int v0)
{
    PT_CHECK(pt_cpu_xent_shape("xent_shard_backward", N, V, v0));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *e = exps + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        int32_t tgt = targets[n];
        if (tgt < 0) {
            ce_zero_row(d, V);
            continue;
        }
        float f = dloss * expf(row_max[n] - lse[n]);
#pragma omp simd
        for (int i = 0; i < V; i++)
            d[i] = f * e[i];
        if (tgt >= v0 && tgt < v0 + V)
            d[tgt - v0] -= dloss;
    }
    return PT_OK;
}
