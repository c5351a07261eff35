/* kernels/cuda/embedding.cu — token + position embedding.
 * Forward: one thread per output element. Backward, deterministic without float atomics:
 *  - dwpe (t, c) += sum over b of dout[b, t, c]: one thread per (t, c), batches in order.
 *  - dwte: rows repeat when a token repeats, so each distinct token is owned by the block of its
 *    first position. Block i checks (all its threads, strided) whether any earlier position holds
 *    the same token; if none, its threads each own channels and add dout of every position with
 *    that token, in position order, into the token's row. The order of every sum is fixed by the
 *    data, never by scheduling. The first-occurrence scan costs O(N^2) token reads in total
 *    (N = B*T; 64 M compares at N = 8192, all from L1/L2), the accumulation O(N*C).
 * Token ids must lie in [0, V): the vocabulary size is not passed. A negative id is skipped
 * (its row stays zero in forward, no gradient) since the kernel cannot refuse it without
 * synchronising; the data loader and the CPU backend check ids. */
#include "cuda_internal.h"

#define PT_EMB_THREADS 256
#define PT_EMB_ACC 8 /* channels per thread per pass: a pass covers 256 * 8 = 2048 channels */

__global__ void pt_k_emb_fwd(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T,
                             int C)
{
    size_t n = (size_t)B * T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        int32_t tok = tokens[bt];
        out[i] = (tok >= 0 ? wte[(size_t)tok * C + c] : 0.0f) + wpe[(size_t)t * C + c];
    }
}

__global__ void pt_k_emb_bwd_wpe(float *dwpe, const float *dout, int B, int T, int C)
{
    size_t n = (size_t)T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++)
            acc += dout[(size_t)b * T * C + i];
        dwpe[i] += acc;
    }
}

__global__ void pt_k_emb_bwd_wte(float *dwte, const float *dout, const int32_t *tokens, int N, int C)
{
    const int i = blockIdx.x;
    const int32_t tok = tokens[i];
    if (tok < 0)
        return;
    int seen = 0;
    for (int j = threadIdx.x; j < i && !seen; j += blockDim.x)
        seen = tokens[j] == tok;
    if (__syncthreads_or(seen))
        return;
    float *row = dwte + (size_t)tok * C;
    for (int c0 = 0; c0 < C; c0 += PT_EMB_THREADS * PT_EMB_ACC) {
        float acc[PT_EMB_ACC];
#pragma unroll
        for (int k = 0; k < PT_EMB_ACC; k++)
            acc[k] = 0.0f;
        for (int j = i; j < N; j++) {
            if (tokens[j] != tok)
                continue;
            const float *d = dout + (size_t)j * C;
#pragma unroll
            for (int k = 0; k < PT_EMB_ACC; k++) {
                int c = c0 + k * PT_EMB_THREADS + threadIdx.x;
                if (c < C)
                    acc[k] += d[c];
            }
        }
#pragma unroll
        for (int k = 0; k < PT_EMB_ACC; k++) {
            int c = c0 + k * PT_EMB_THREADS + threadIdx.x;
            if (c < C)
                row[c] += acc[k];
        }
    }
}

static pt_status pt_cuda_emb_check(const char *what, int B, int T, int C)
{
    if (B < 0 || T < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d; sizes must be positive", what, B, T, C);
    return PT_OK;
}

pt_status pt_cuda_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                    const float *wpe, int B, int T, int C)
{
    PT_CHECK(pt_cuda_emb_check("embedding_forward", B, T, C));
    size_t n = (size_t)B * T * C;
    if (n == 0)
        return PT_OK;
    pt_k_emb_fwd<<<pt_cuda_blocks(n, 256), 256, 0, s->stream>>>(out, tokens, wte, wpe, B, T, C);
    return pt_cuda_launched("embedding_forward");
}

pt_status pt_cuda_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                     const int32_t *tokens, int B, int T, int C)
{
    PT_CHECK(pt_cuda_emb_check("embedding_backward", B, T, C));
    int N = B * T;
    if (N == 0)
        return PT_OK;
    pt_k_emb_bwd_wpe<<<pt_cuda_blocks((size_t)T * C, 256), 256, 0, s->stream>>>(dwpe, dout, B, T, C);
    PT_CHECK(pt_cuda_launched("embedding_backward (positions)"));
    pt_k_emb_bwd_wte<<<N, PT_EMB_THREADS, 0, s->stream>>>(dwte, dout, tokens, N, C);
    return pt_cuda_launched("embedding_backward (tokens)");
}
