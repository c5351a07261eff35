/* kernels/cpu/embedding.c — token + position embedding (no position table: wpe NULL, llama).
 * Forward is token-parallel (rows are independent). Backward scatters into dwte rows that
 * repeat when a token repeats, so it is channel-parallel instead: each thread owns a block of
 * channels and walks every token in order. No atomics, no scratch, and the same bits for any
 * thread count. Token ids must lie in [0, V); the vocabulary size is not passed, so only
 * negative ids can be refused here (the data loader checks the upper bound). */
#include <string.h>

#include "cpu_internal.h"

/* Channels per backward work item (whole cache lines, so threads never share one). */
#define PT_EMB_COL_BLOCK 64

static pt_status pt_cpu_emb_check(const char *what, const int32_t *tokens, int B, int T, int C)
{
    if (B < 0 || T < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d; sizes must be positive", what, B, T, C);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0)
            return pt_fail(PT_EINVAL, "%s: token %d at position %zu is negative; token ids must be in [0, vocab)",
                           what, tokens[i], i);
    return PT_OK;
}

pt_status pt_cpu_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                   const float *wpe, int B, int T, int C)
{
    PT_CHECK(pt_cpu_emb_check("embedding_forward", tokens, B, T, C));
    const int n = B * T;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)n * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *te = wte + (size_t)tokens[i] * C;
        float *o = out + (size_t)i * C;
        if (!wpe) { /* no position table (llama) */
            memcpy(o, te, (size_t)C * sizeof(float));
            continue;
        }
        const float *pe = wpe + (size_t)(i % T) * C;
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = te[c] + pe[c];
    }
    return PT_OK;
}

pt_status pt_cpu_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C)
{
    PT_CHECK(pt_cpu_emb_check("embedding_backward", tokens, B, T, C));
    const int n_blocks = (C + PT_EMB_COL_BLOCK - 1) / PT_EMB_COL_BLOCK;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)B * T * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int lo = blk * PT_EMB_COL_BLOCK, hi = lo + PT_EMB_COL_BLOCK < C ? lo + PT_EMB_COL_BLOCK : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                size_t i = (size_t)b * T + t;
                const float *d = dout + i * C;
                float *te = dwte + (size_t)tokens[i] * C;
                if (!dwpe) {
#pragma omp simd
                    for (int c = lo; c < hi; c++)
                        te[c] += d[c];
                    continue;
                }
                float *pe = dwpe + (size_t)t * C;
#pragma omp simd
                for (int c = lo; c < hi; c++) {
                    te[c] += d[c];
                    pe[c] += d[c];
                }
            }
        }
    }
    return PT_OK;
}
