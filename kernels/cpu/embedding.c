/* kernels/cpu/embedding.c — token + position embedding (no position table: wpe NULL, llama),
 * over the whole vocabulary or over the rows [v0, v0 + V) of it that one tensor-parallel rank
 * holds (embedding_range_*: a token outside the range contributes no table term). Both pairs of
 * entry points run the one forward and the one backward below, the whole vocabulary as the range
 * [0, INT_MAX).
 * Forward is token-parallel (rows are independent). Backward scatters into dwte rows that
 * repeat when a token repeats, so it is channel-parallel instead: each thread owns a block of
 * channels and walks every token in order. No atomics, no scratch, and the same bits for any
 * thread count. Token ids must lie in [0, V); the vocabulary size is not passed, so only
 * negative ids can be refused here (the data loader checks the upper bound). */
#include <limits.h>
#include <string.h>

#include "cpu_internal.h"

/* Channels per backward work item (whole cache lines, so threads never share one). */
#define PT_EMB_COL_BLOCK 64

static pt_status pt_cpu_emb_check(const char *what, const int32_t *tokens, int v0, int V, int B, int T, int C)
{
    if (B < 0 || T < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d; sizes must be positive", what, B, T, C);
    if (v0 < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: vocabulary range v0=%d V=%d; V must be positive and v0 not negative", what,
                       v0, V);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0)
            return pt_fail(PT_EINVAL, "%s: token %d at position %zu is negative; token ids must be in [0, vocab)",
                           what, tokens[i], i);
    return PT_OK;
}

/* Row tok - v0 of the local table when v0 <= tok < v0 + V, else NULL (tok >= 0, checked). */
static inline const float *emb_row(const float *w, int32_t tok, int v0, int V, int C)
{
    return tok >= v0 && tok - v0 < V ? w + (size_t)(tok - v0) * C : NULL;
}

static pt_status emb_forward(const char *what, pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                             const float *wpe, int v0, int V, int B, int T, int C)
{
    PT_CHECK(pt_cpu_emb_check(what, tokens, v0, V, B, T, C));
    const int n = B * T;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)n * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *te = emb_row(wte, tokens[i], v0, V, C);
        const float *pe = wpe ? wpe + (size_t)(i % T) * C : NULL;
        float *o = out + (size_t)i * C;
        if (te && pe) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                o[c] = te[c] + pe[c];
        } else if (te || pe) { /* one term: its bits (no position table, or a token of another rank) */
            memcpy(o, te ? te : pe, (size_t)C * sizeof(float));
        } else {
            memset(o, 0, (size_t)C * sizeof(float));
        }
    }
    return PT_OK;
}

static pt_status emb_backward(const char *what, pt_stream *s, float *dwte, float *dwpe, const float *dout,
                              const int32_t *tokens, int v0, int V, int B, int T, int C)
{
    PT_CHECK(pt_cpu_emb_check(what, tokens, v0, V, B, T, C));
    const int n_blocks = (C + PT_EMB_COL_BLOCK - 1) / PT_EMB_COL_BLOCK;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)B * T * C >= PT_CPU_PAR_MIN) schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int lo = blk * PT_EMB_COL_BLOCK, hi = lo + PT_EMB_COL_BLOCK < C ? lo + PT_EMB_COL_BLOCK : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                size_t i = (size_t)b * T + t;
                const float *d = dout + i * C;
                float *te = (float *)emb_row(dwte, tokens[i], v0, V, C);
                float *pe = dwpe ? dwpe + (size_t)t * C : NULL;
                if (te && pe) {
#pragma omp simd
                    for (int c = lo; c < hi; c++) {
                        te[c] += d[c];
                        pe[c] += d[c];
                    }
                } else if (te || pe) {
                    float *g = te ? te : pe;
#pragma omp simd
                    for (int c = lo; c < hi; c++)
                        g[c] += d[c];
                }
            }
        }
    }
    return PT_OK;
}

pt_status pt_cpu_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                   const float *wpe, int B, int T, int C)
{
    return emb_forward("embedding_forward", s, out, tokens, wte, wpe, 0, INT_MAX, B, T, C);
}

pt_status pt_cpu_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C)
{
    return emb_backward("embedding_backward", s, dwte, dwpe, dout, tokens, 0, INT_MAX, B, T, C);
}

pt_status pt_cpu_embedding_range_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                         const float *wpe, int v0, int V, int B, int T, int C)
{
    return emb_forward("embedding_range_forward", s, out, tokens, wte, wpe, v0, V, B, T, C);
}

pt_status pt_cpu_embedding_range_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                          const int32_t *tokens, int v0, int V, int B, int T, int C)
{
    return emb_backward("embedding_range_backward", s, dwte, dwpe, dout, tokens, v0, V, B, T, C);
}
