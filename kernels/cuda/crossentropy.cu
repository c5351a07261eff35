/* kernels/cuda/crossentropy.cu — softmax + cross-entropy over the vocabulary: one block per row,
 * three passes (max; sum of exp; probs written), block reductions through a fixed shared-memory
 * tree, so the result does not depend on scheduling. probs may alias logits: the target's logit
 * is read, and every thread has finished reading x for the sums, before anything is written.
 * Targets < 0 are ignored (loss 0, gradient row 0). A target >= V cannot be refused without
 * synchronising with the host, so its loss is NaN (the trainer's non-finite check stops the run
 * there) and its gradient row is dloss * probs. */
#include <math.h>

#include "cuda_internal.h"

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

__global__ void pt_k_ce_fwd(float *losses, float *probs, const float *logits, const int32_t *targets, int V)
{
    __shared__ float sh[33];
    const size_t row = blockIdx.x;
    const float *x = logits + row * V;
    float *p = probs + row * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        mx = fmaxf(mx, x[i]);
    mx = pt_block_reduce(mx, sh, 1);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sum += expf(x[i] - mx);
    sum = pt_block_reduce(sum, sh, 0); /* ends with a barrier: all reads of x for the sums are done */
    int32_t tgt = targets[row];
    if (threadIdx.x == 0)
        losses[row] = tgt < 0 ? 0.0f : tgt >= V ? NAN : logf(sum) + mx - x[tgt];
    __syncthreads(); /* x[tgt] is read before p (which may be x) is written */
    float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        p[i] = expf(x[i] - mx) * inv;
}

__global__ void pt_k_ce_bwd(float *dlogits, const float *probs, const int32_t *targets, float dloss, int N, int V)
{
    size_t n = (size_t)N * V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int32_t tgt = targets[i / V];
        int col = (int)(i % V);
        float p = probs[i];
        dlogits[i] = tgt < 0 ? 0.0f : col == tgt ? dloss * (p - 1.0f) : dloss * p;
    }
}

static pt_status pt_cuda_ce_check(const char *what, int N, int V)
{
    if (N < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d; V must be positive and N not negative", what, N, V);
    return PT_OK;
}

pt_status pt_cuda_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                       const int32_t *targets, int N, int V)
{
    PT_CHECK(pt_cuda_ce_check("crossentropy_forward", N, V));
    if (N == 0)
        return PT_OK;
    pt_k_ce_fwd<<<N, PT_CE_THREADS, 0, s->stream>>>(losses, probs, logits, targets, V);
    return pt_cuda_launched("crossentropy_forward");
}

pt_status pt_cuda_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                        float dloss, int N, int V)
{
    PT_CHECK(pt_cuda_ce_check("crossentropy_backward", N, V));
    if (N == 0)
        return PT_OK;
    pt_k_ce_bwd<<<pt_cuda_blocks((size_t)N * V, 256), 256, 0, s->stream>>>(dlogits, probs, targets, dloss, N, V);
    return pt_cuda_launched("crossentropy_backward");
}
