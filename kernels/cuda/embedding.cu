/* kernels/cuda/embedding.cu — token + position embedding (the position term optional: wpe and
 * dwpe NULL for models without a position table, llama), over the whole vocabulary or over the
 * rows [v0, v0 + V) of it that one tensor-parallel rank holds (embedding_range_*: a token
 * outside the range has no table term, no gradient row). Both pairs of entry points run the same
 * kernels, the whole vocabulary as the range [0, INT_MAX).
 * Forward: one thread per output element. Backward, deterministic without float atomics:
 *  - dwpe (t, c) += sum over b of dout[b, t, c]: one thread per (t, c), batches in order
 *    (skipped when dwpe is NULL).
 *  - dwte: rows repeat when a token repeats. The N = B*T positions are sorted by the key
 *    (token << 32 | position) with a bottom-up merge sort in the stream workspace (16 N bytes):
 *    log2 N passes, each element placed by a binary search in the run it merges with, so
 *    O(N log^2 N) compares in all, every one parallel (the earlier first-occurrence scan cost
 *    O(N^2): 64 M compares at N = 8192, and serialised the accumulation of a frequent token
 *    behind a walk over all N positions). Keys are unique, so the sorted order, and with it
 *    every sum, is fixed by the data alone. Then the first sorted entry of each token owns its
 *    row: its block's threads each own channels and add dout of that token's positions in
 *    position order (the next entries of the sorted list), then add the sum into the row.
 * Token ids must lie in [0, V): the vocabulary size is not passed. A negative id is skipped
 * (its row stays zero in forward, no gradient) since the kernel cannot refuse it without
 * synchronising; the data loader and the CPU backend check ids. */
#include <limits.h>

#include "cuda_internal.h"

#define PT_EMB_THREADS 256
#define PT_EMB_ACC 8 /* channels per thread per pass: a pass covers 256 * 8 = 2048 channels */

/* A token's row in the local table (rows v0 .. v0+V-1 of the whole one), -1 when outside it. */
__device__ __forceinline__ int pt_emb_local(int32_t tok, int v0, int V)
{
    return tok >= v0 && tok - v0 < V ? tok - v0 : -1;
}

/* One term alone keeps its bits (no position table, or another rank's token), as on the CPU. */
__global__ void pt_k_emb_fwd(float *out, const int32_t *tokens, const float *wte, const float *wpe, int v0, int V,
                             int B, int T, int C)
{
    size_t n = (size_t)B * T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        int row = pt_emb_local(tokens[bt], v0, V);
        float p = wpe != NULL ? wpe[(size_t)t * C + c] : 0.0f;
        out[i] = row < 0 ? p : wpe != NULL ? wte[(size_t)row * C + c] + p : wte[(size_t)row * C + c];
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

/* Sort key of position i: the token's local row in the high word (0xFFFFFFFF, after every real
 * row, for a negative id or one outside the range), position in the low word. */
__global__ void pt_k_emb_keys(uint64_t *keys, const int32_t *tokens, int v0, int V, int N)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x)
        keys[i] = (uint64_t)(uint32_t)pt_emb_local(tokens[i], v0, V) << 32 | (uint32_t)i;
}

/* Number of keys in a[0, n) smaller than key (a sorted). */
__device__ __forceinline__ int pt_emb_rank(const uint64_t *a, int n, uint64_t key)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (a[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* One merge pass: runs of `width` sorted keys in src, pairwise merged into dst. A key's place in
 * the merged run is its index in its own run plus the number of smaller keys in the other one
 * (keys are unique, so no two keys get the same place). */
__global__ void pt_k_emb_merge(uint64_t *dst, const uint64_t *src, int N, int width)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
        int start = i / (2 * width) * (2 * width);
        int mid = min(start + width, N), end = min(start + 2 * width, N);
        uint64_t key = src[i];
        int place = i < mid ? (i - start) + pt_emb_rank(src + mid, end - mid, key)
                            : (i - mid) + pt_emb_rank(src + start, mid - start, key);
        dst[start + place] = key;
    }
}

/* Block p owns the token of sorted entry p when p is its first entry: it sums the dout rows of
 * the token's positions (entries p, p+1, ... with the same token, positions ascending) and adds
 * the sum into the token's row. */
__global__ void pt_k_emb_bwd_wte(float *dwte, const float *dout, const uint64_t *sorted, int N, int C)
{
    const int p = blockIdx.x;
    const uint32_t tok = (uint32_t)(sorted[p] >> 32);
    if ((int32_t)tok < 0 || (p > 0 && (uint32_t)(sorted[p - 1] >> 32) == tok))
        return;
    float *row = dwte + (size_t)tok * C;
    for (int c0 = 0; c0 < C; c0 += PT_EMB_THREADS * PT_EMB_ACC) {
        float acc[PT_EMB_ACC];
#pragma unroll
        for (int k = 0; k < PT_EMB_ACC; k++)
            acc[k] = 0.0f;
        for (int q = p; q < N && (uint32_t)(sorted[q] >> 32) == tok; q++) {
            const float *d = dout + (size_t)(uint32_t)sorted[q] * C;
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

static pt_status pt_cuda_emb_check(const char *what, int v0, int V, int B, int T, int C)
{
    if (B < 0 || T < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d; sizes must be positive", what, B, T, C);
    if (v0 < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: vocabulary range v0=%d V=%d; V must be positive and v0 not negative", what,
                       v0, V);
    return PT_OK;
}

static pt_status pt_cuda_emb_forward(const char *what, pt_stream *s, float *out, const int32_t *tokens,
                                     const float *wte, const float *wpe, int v0, int V, int B, int T, int C)
{
    PT_CHECK(pt_cuda_emb_check(what, v0, V, B, T, C));
    size_t n = (size_t)B * T * C;
    if (n == 0)
        return PT_OK;
    pt_k_emb_fwd<<<pt_cuda_blocks(n, 256), 256, 0, s->stream>>>(out, tokens, wte, wpe, v0, V, B, T, C);
    return pt_cuda_launched(what);
}

pt_status pt_cuda_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                    const float *wpe, int B, int T, int C)
{
    return pt_cuda_emb_forward("embedding_forward", s, out, tokens, wte, wpe, 0, INT_MAX, B, T, C);
}

pt_status pt_cuda_embedding_range_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                          const float *wpe, int v0, int V, int B, int T, int C)
{
    return pt_cuda_emb_forward("embedding_range_forward", s, out, tokens, wte, wpe, v0, V, B, T, C);
}

static pt_status pt_cuda_emb_backward(const char *what, pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                      const int32_t *tokens, int v0, int V, int B, int T, int C)
{
    PT_CHECK(pt_cuda_emb_check(what, v0, V, B, T, C));
    int N = B * T;
    if (N == 0)
        return PT_OK;
    if (dwpe != NULL) {
        pt_k_emb_bwd_wpe<<<pt_cuda_blocks((size_t)T * C, 256), 256, 0, s->stream>>>(dwpe, dout, B, T, C);
        PT_CHECK(pt_cuda_launched("embedding_backward (positions)"));
    }
    void *scratch = NULL;
    PT_CHECK(pt_cuda_scratch(s, (size_t)N * 2 * sizeof(uint64_t), "embedding_backward (sort keys)", &scratch));
    uint64_t *a = (uint64_t *)scratch, *b = a + N;
    const unsigned blocks = pt_cuda_blocks((size_t)N, 256);
    pt_k_emb_keys<<<blocks, 256, 0, s->stream>>>(a, tokens, v0, V, N);
    PT_CHECK(pt_cuda_launched("embedding_backward (sort keys)"));
    for (int width = 1; width < N; width *= 2) {
        pt_k_emb_merge<<<blocks, 256, 0, s->stream>>>(b, a, N, width);
        PT_CHECK(pt_cuda_launched("embedding_backward (merge pass)"));
        uint64_t *t = a;
        a = b;
        b = t;
    }
    pt_k_emb_bwd_wte<<<N, PT_EMB_THREADS, 0, s->stream>>>(dwte, dout, a, N, C);
    return pt_cuda_launched("embedding_backward (tokens)");
}

pt_status pt_cuda_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                     const int32_t *tokens, int B, int T, int C)
{
    return pt_cuda_emb_backward("embedding_backward", s, dwte, dwpe, dout, tokens, 0, INT_MAX, B, T, C);
}

pt_status pt_cuda_embedding_range_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                           const int32_t *tokens, int v0, int V, int B, int T, int C)
{
    return pt_cuda_emb_backward("embedding_range_backward", s, dwte, dwpe, dout, tokens, v0, V, B, T, C);
}
