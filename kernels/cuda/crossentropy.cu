/* kernels/cuda/crossentropy.cu — softmax + cross-entropy over the vocabulary: one block per row,
 * three passes (max; sum of exp; probs written), block reductions through a fixed shared-memory
 * tree, so the result does not depend on scheduling. probs may alias logits: the target's logit
 * is read, and every thread has finished reading x for the sums, before anything is written.
 * Targets < 0 are ignored (loss 0, gradient row 0). A target >= V cannot be refused without
 * synchronising with the host, so its loss is NaN (the trainer's non-finite check stops the run
 * there) and its gradient row is dloss * probs. The same loss over vocabulary shards
 * (xent_shard_*) is at the bottom; its finish gives NaN for such a target likewise. */
#include <limits.h>
#include <math.h>

#include "cuda_internal.h"
#include "pipetrain/bf16.h"

#define PT_CE_THREADS 512

__device__ float pt_block_reduce(float v, float *sh, int is_max)
{
    /* Warp butterflies, then warp 0 combines the 16 warp results in a fixed tree. */
    v = is_max ? pt_warp_max(v) : pt_warp_sum(v);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* sh may still be read from the previous reduction */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float x = lane < (int)(blockDim.x / 32) ? sh[lane] : (is_max ? -INFINITY : 0.0f);
        x = is_max ? pt_warp_max(x) : pt_warp_sum(x);
        if (lane == 0)
            sh[32] = x;
    }
    __syncthreads();
    return sh[32];
}

/* A logit as the forward reads it: its bf16 rounding under rnd (round_bf16's bits). */
__device__ static inline float pt_ce_in(float x, int rnd) { return rnd ? pt_bf16_round(x) : x; }

__global__ void pt_k_ce_fwd(float *losses, float *probs, const float *logits, const int32_t *targets, int V, int rnd)
{
    __shared__ float sh[33];
    const size_t row = blockIdx.x;
    const float *x = logits + row * V;
    float *p = probs + row * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        mx = fmaxf(mx, pt_ce_in(x[i], rnd));
    mx = pt_block_reduce(mx, sh, 1);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sum += expf(pt_ce_in(x[i], rnd) - mx);
    sum = pt_block_reduce(sum, sh, 0); /* ends with a barrier: all reads of x for the sums are done */
    int32_t tgt = targets[row];
    if (threadIdx.x == 0)
        losses[row] = tgt < 0 ? 0.0f : tgt >= V ? NAN : logf(sum) + mx - pt_ce_in(x[tgt], rnd);
    __syncthreads(); /* x[tgt] is read before p (which may be x) is written */
    float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        p[i] = expf(pt_ce_in(x[i], rnd) - mx) * inv;
}

__global__ void pt_k_ce_bwd(float *dlogits, const float *probs, const int32_t *targets, float dloss, int N, int V,
                            int rnd)
{
    size_t n = (size_t)N * V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int32_t tgt = targets[i / V];
        int col = (int)(i % V);
        float p = probs[i];
        float d = tgt < 0 ? 0.0f : col == tgt ? dloss * (p - 1.0f) : dloss * p;
        dlogits[i] = rnd ? pt_bf16_round(d) : d;
    }
}

static pt_status pt_cuda_ce_check(const char *what, int N, int V)
{
    if (N < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d; V must be positive and N not negative", what, N, V);
    return PT_OK;
}

pt_status pt_cuda_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                       const int32_t *targets, int N, int V, int rnd)
{
    PT_CHECK(pt_cuda_ce_check("crossentropy_forward", N, V));
    if (N == 0)
        return PT_OK;
    pt_k_ce_fwd<<<N, PT_CE_THREADS, 0, s->stream>>>(losses, probs, logits, targets, V, rnd);
    return pt_cuda_launched("crossentropy_forward");
}

pt_status pt_cuda_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                        float dloss, int N, int V, int rnd)
{
    PT_CHECK(pt_cuda_ce_check("crossentropy_backward", N, V));
    if (N == 0)
        return PT_OK;
    pt_k_ce_bwd<<<pt_cuda_blocks((size_t)N * V, 256), 256, 0, s->stream>>>(dlogits, probs, targets, dloss, N, V,
                                                                                       rnd);
    return pt_cuda_launched("crossentropy_backward");
}

/* ---- the same loss over vocabulary shards (backend.h, xent_shard_*) ----
 * Forward: one block per row and shard, the passes of pt_k_ce_fwd (max, then the sum of exp)
 * plus a first-maximum reduction over the shard's valid columns, then thread 0 combines the
 * row's statistics with those of the earlier shards. Reductions are fixed trees, so the
 * statistics do not depend on scheduling. exps may alias logits (the target's logit is read, and
 * every read of x for the sums is done, before exps is written); stats_out may alias stats_in
 * (only thread 0 touches a row's statistics, reading them before writing). */

/* One row's statistics: out = in (the ranges so far) combined with sh (the next range's own, as
 * a first shard writes them); out may alias in or sh. The one combining rule of
 * pt_k_xent_fwd and pt_k_xent_combine (kernels/cpu/crossentropy.c has the same). */
__device__ __forceinline__ void pt_xent_combine(float *out, const float *in, const float *sh)
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

/* (value, column) pairs ordered by larger value, then by lower column: the first maximum. */
__device__ __forceinline__ void pt_argmax_merge(float *v, int *j, float ov, int oj)
{
    if (ov > *v || (ov == *v && oj < *j)) {
        *v = ov;
        *j = oj;
    }
}

/* The first maximum over the block: every thread passes its own (v, j) (j = INT_MAX when it saw
 * no column) and gets the block's back. Warp butterflies, then warp 0 merges the warps'. */
__device__ void pt_block_argmax(float *v, int *j, float *sh, int *shj)
{
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, *v, o);
        int oj = __shfl_xor_sync(0xffffffffu, *j, o);
        pt_argmax_merge(v, j, ov, oj);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* sh may still be read from the previous reduction */
    if (lane == 0) {
        sh[warp] = *v;
        shj[warp] = *j;
    }
    __syncthreads();
    if (warp == 0) {
        int in = lane < (int)(blockDim.x / 32);
        float bv = in ? sh[lane] : -INFINITY;
        int bj = in ? shj[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oj = __shfl_xor_sync(0xffffffffu, bj, o);
            pt_argmax_merge(&bv, &bj, ov, oj);
        }
        if (lane == 0) {
            sh[32] = bv;
            shj[32] = bj;
        }
    }
    __syncthreads();
    *v = sh[32];
    *j = shj[32];
}

__global__ void pt_k_xent_fwd(float *stats_out, float *exps, float *row_max, const float *stats_in,
                              const float *logits, const int32_t *targets, int V, int v0, int nv)
{
    __shared__ float sh[33];
    __shared__ int shj[33];
    const size_t row = blockIdx.x;
    const float *x = logits + row * V;
    float *e = exps + row * V;
    float mx = -INFINITY, best = -INFINITY;
    int best_j = INT_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float xi = x[i];
        mx = fmaxf(mx, xi);
        if (i < nv && (best_j == INT_MAX || xi > best)) { /* columns rise: the thread's first maximum */
            best = xi;
            best_j = i;
        }
    }
    mx = pt_block_reduce(mx, sh, 1);
    pt_block_argmax(&best, &best_j, sh, shj);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sum += expf(x[i] - mx);
    sum = pt_block_reduce(sum, sh, 0); /* ends with a barrier: all reads of x for the sums are done */
    if (threadIdx.x == 0) {
        int32_t tgt = targets[row];
        float x_tgt = tgt >= v0 && tgt - v0 < V ? x[tgt - v0] : 0.0f;
        float st[PT_XENT_STATS] = { mx, sum, x_tgt, best, best_j != INT_MAX ? (float)(v0 + best_j) : -1.0f };
        if (stats_in)
            pt_xent_combine(st, stats_in + row * PT_XENT_STATS, st);
        row_max[row] = mx;
        float *o = stats_out + row * PT_XENT_STATS;
        for (int k = 0; k < PT_XENT_STATS; k++)
            o[k] = st[k];
    }
    __syncthreads(); /* x[tgt] is read before e (which may be x) is written */
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        e[i] = expf(x[i] - mx);
}

/* One thread per row: parts[0] combined with parts[1], ... in order (xent_stats_combine). */
__global__ void pt_k_xent_combine(float *stats, const float *parts, int n, int N)
{
    const size_t part = (size_t)N * PT_XENT_STATS;
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < N; r += gridDim.x * blockDim.x) {
        const float *p = parts + (size_t)r * PT_XENT_STATS;
        float st[PT_XENT_STATS];
        for (int k = 0; k < PT_XENT_STATS; k++)
            st[k] = p[k];
        for (int j = 1; j < n; j++)
            pt_xent_combine(st, st, p + j * part);
        float *o = stats + (size_t)r * PT_XENT_STATS;
        for (int k = 0; k < PT_XENT_STATS; k++)
            o[k] = st[k];
    }
}

__global__ void pt_k_xent_finish(float *losses, float *lse, const float *stats, const int32_t *targets, int N,
                                 int V_total)
{
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < N; n += gridDim.x * blockDim.x) {
        const float *st = stats + (size_t)n * PT_XENT_STATS;
        float l = logf(st[1]);
        int32_t tgt = targets[n];
        lse[n] = l + st[0];
        losses[n] = tgt < 0 ? 0.0f : tgt >= V_total ? NAN : l + st[0] - st[2];
    }
}

__global__ void pt_k_xent_bwd(float *dlogits, const float *exps, const float *row_max, const float *lse,
                              const int32_t *targets, float dloss, int N, int V, int v0)
{
    size_t n = (size_t)N * V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / V;
        int32_t tgt = targets[row];
        int col = (int)(i - row * V);
        if (tgt < 0) {
            dlogits[i] = 0.0f;
            continue;
        }
        float d = dloss * expf(row_max[row] - lse[row]) * exps[i];
        dlogits[i] = tgt - v0 == col ? d - dloss : d;
    }
}

static pt_status pt_cuda_xent_shape(const char *what, int N, int V, int v0)
{
    if (N < 0 || V <= 0 || v0 < 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d v0=%d; V must be positive, N and v0 not negative", what, N, V,
                       v0);
    return PT_OK;
}

pt_status pt_cuda_xent_shard_forward(pt_stream *s, float *stats_out, float *exps, float *row_max,
                                     const float *stats_in, const float *logits, const int32_t *targets, int N,
                                     int V, int v0, int n_valid)
{
    PT_CHECK(pt_cuda_xent_shape("xent_shard_forward", N, V, v0));
    if (N == 0)
        return PT_OK;
    /* valid local columns: global column v0 + i < n_valid */
    int nv = n_valid <= v0 ? 0 : n_valid - v0 < V ? n_valid - v0 : V;
    pt_k_xent_fwd<<<N, PT_CE_THREADS, 0, s->stream>>>(stats_out, exps, row_max, stats_in, logits, targets, V, v0,
                                                       nv);
    return pt_cuda_launched("xent_shard_forward");
}

pt_status pt_cuda_xent_shard_finish(pt_stream *s, float *losses, float *lse, const float *stats,
                                    const int32_t *targets, int N, int V_total)
{
    PT_CHECK(pt_cuda_ce_check("xent_shard_finish", N, V_total));
    if (N == 0)
        return PT_OK;
    pt_k_xent_finish<<<pt_cuda_blocks((size_t)N, 256), 256, 0, s->stream>>>(losses, lse, stats, targets, N,
                                                                            V_total);
    return pt_cuda_launched("xent_shard_finish");
}

pt_status pt_cuda_xent_shard_backward(pt_stream *s, float *dlogits, const float *exps, const float *row_max,
                                      const float *lse, const int32_t *targets, float dloss, int N, int V, int v0)
{
    PT_CHECK(pt_cuda_xent_shape("xent_shard_backward", N, V, v0));
    if (N == 0)
        return PT_OK;
    pt_k_xent_bwd<<<pt_cuda_blocks((size_t)N * V, 256), 256, 0, s->stream>>>(dlogits, exps, row_max, lse, targets,
                                                                             dloss, N, V, v0);
    return pt_cuda_launched("xent_shard_backward");
}

pt_status pt_cuda_xent_stats_combine(pt_stream *s, float *stats, const float *parts, int n, int N)
{
    if (n < 1 || N < 0)
        return pt_fail(PT_EINVAL, "xent_stats_combine: n=%d parts of N=%d rows; n must be positive and N not "
                                  "negative", n, N);
    if (N == 0)
        return PT_OK;
    pt_k_xent_combine<<<pt_cuda_blocks((size_t)N, 256), 256, 0, s->stream>>>(stats, parts, n, N);
    return pt_cuda_launched("xent_stats_combine");
}
