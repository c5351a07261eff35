/* kernels/cpu/cpu_internal.h — what the CPU backend's files share: the CPU stream, the kernel
 * entry points that fill pt_backend_cpu, and small vectorisable math helpers.
 *
 * Threading: every kernel runs on the OpenMP team size carried by its stream. Matrix products
 * call OpenBLAS single-threaded from inside our own OpenMP team (each thread computes one slice
 * of the output), so only one thread pool ever runs and nothing oversubscribes the cores.
 * Not a public header.
 */
#ifndef PT_KERNELS_CPU_INTERNAL_H
#define PT_KERNELS_CPU_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/bf16.h"

/* The CPU stream: just the thread-team settings. Kernels run synchronously. */
struct pt_stream {
    int n_threads; /* >= 1 */
};

/* Below this many elements an element-wise kernel runs on one thread (a team costs more). */
#define PT_CPU_PAR_MIN 16384

/* sgemm.c: row-major sgemm C (M,N) = alpha * op(A) op(B) + beta * C, split across `n_threads` OpenMP
 * threads by rows or columns of C (whichever is larger); each slice is one single-threaded
 * OpenBLAS call. Deterministic for a given thread count. Must not be called from inside an
 * OpenMP parallel region (use pt_cpu_sgemm1 there). */
void pt_cpu_sgemm(int n_threads, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* One single-threaded sgemm in the calling thread (safe inside a parallel region once
 * pt_cpu_blas_single() has been called). */
void pt_cpu_sgemm1(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
/* Makes OpenBLAS run each call in the calling thread (we parallelise around it). */
void pt_cpu_blas_single(void);

/* exp(x) for float, relative error below 1e-7 in [-87, 88]; inputs are clamped to that range
 * (so exp of a very negative number is ~1.6e-38, not 0); NaN stays NaN. Plain arithmetic, so
 * loops over it vectorise (libm's expf does not without -ffast-math). Same bits on every call. */
static inline float pt_cpu_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* For NaN x, n is NaN too: the comparison maps it to a valid exponent (converting NaN to
     * an integer is undefined) and p, already NaN, carries it to the result. */
    n = n >= -126.0f ? n : -126.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1); absolute error about 1e-7, exact limits +-1. */
static inline float pt_cpu_tanhf(float x)
{
    return 1.0f - 2.0f / (pt_cpu_expf(2.0f * x) + 1.0f);
}

/* Row helpers of the fused entries, with the bits of the split kernels: out = a + b (rounded to
 * bf16 when rnd; out may be a or b), and x rounded in place as round_bf16. */
static inline void pt_cpu_add_row(float *out, const float *a, const float *b, int n, int rnd)
{
#pragma omp simd
    for (int i = 0; i < n; i++) {
        const float v = a[i] + b[i];
        out[i] = rnd ? pt_bf16_round(v) : v;
    }
}

static inline void pt_cpu_round_row(float *x, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++)
        x[i] = pt_bf16_round(x[i]);
}

/* ---- entry points of pt_backend_cpu (documented in pipetrain/backend.h) ---- */
pt_status pt_cpu_stream_create(const pt_stream_opts *opts, pt_stream **out);
void pt_cpu_stream_destroy(pt_stream *s);
pt_status pt_cpu_stream_sync(pt_stream *s);
pt_status pt_cpu_alloc(void **ptr, size_t bytes);
void pt_cpu_free(void *ptr);
pt_status pt_cpu_memcpy(pt_stream *s, void *dst, const void *src, size_t bytes);
pt_status pt_cpu_memset_zero(pt_stream *s, void *dst, size_t bytes);

pt_status pt_cpu_add(pt_stream *s, float *out, const float *a, const float *b, size_t n);
pt_status pt_cpu_scale(pt_stream *s, float *x, float alpha, size_t n);
pt_status pt_cpu_round_bf16(pt_stream *s, float *out, const float *x, size_t n);
pt_status pt_cpu_pack_bf16(pt_stream *s, uint16_t *dst, const float *x, size_t n);
pt_status pt_cpu_unpack_bf16_upper(pt_stream *s, float *buf, size_t n);
pt_status pt_cpu_unpack_bf16(pt_stream *s, float *out, const uint16_t *src, size_t n);
pt_status pt_cpu_round_pack_bf16(pt_stream *s, float *x, uint16_t *packed, size_t n);
pt_status pt_cpu_sum_squares(pt_stream *s, double *out, const float *x, size_t n);
pt_status pt_cpu_has_nonfinite(pt_stream *s, int *out, const float *x, size_t n);

pt_status pt_cpu_matmul_forward(pt_stream *s, float *out, const float *inp, const float *weight, const float *bias,
                                int N, int C, int OC);
pt_status pt_cpu_matmul_backward_input(pt_stream *s, float *dinp, const float *dout, const float *weight, int N,
                                       int C, int OC);
pt_status pt_cpu_matmul_backward_weight(pt_stream *s, float *dweight, float *dbias, const float *dout,
                                        const float *inp, int N, int C, int OC);

pt_status pt_cpu_layernorm_forward(pt_stream *s, float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C);
pt_status pt_cpu_layernorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd, int N, int C);
pt_status pt_cpu_layernorm_backward_weight(pt_stream *s, float *dw, float *db, const float *dout, const float *inp,
                                           const float *mean, const float *rstd, int N, int C);
pt_status pt_cpu_layernorm_backward(pt_stream *s, float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                    int C);

pt_status pt_cpu_gelu_forward(pt_stream *s, float *out, const float *inp, size_t n);
pt_status pt_cpu_gelu_backward(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n);
pt_status pt_cpu_bias_gelu_forward(pt_stream *s, float *x, float *out, const float *bias, int N, int F, int rnd);
pt_status pt_cpu_gelu_backward_round(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n,
                                     int rnd);
pt_status pt_cpu_add_layernorm_forward(pt_stream *s, float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *w, const float *bias, int N,
                                       int C, int rnd);
pt_status pt_cpu_layernorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                              const float *w, const float *mean, const float *rstd,
                                              const float *resid, int N, int C, int rnd);
pt_status pt_cpu_add_rmsnorm_forward(pt_stream *s, float *res, float *out, float *rstd, const float *a,
                                     const float *b, const float *w, int N, int C, float eps, int rnd);
pt_status pt_cpu_rmsnorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                            const float *w, const float *rstd, const float *resid, int N, int C,
                                            int rnd);

size_t pt_cpu_attention_saved_size(int B, int T, int C, int NH, int NKV);
size_t pt_cpu_attention_scratch_size(int B, int T, int C, int NH, int NKV);
pt_status pt_cpu_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                   int T, int C, int NH, int NKV);
pt_status pt_cpu_attention_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                    const float *out, const float *saved, int B, int T, int C, int NH, int NKV);
pt_status pt_cpu_attention_decode(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n, int C,
                                  int NH, int NKV);

pt_status pt_cpu_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                   const float *wpe, int B, int T, int C);
pt_status pt_cpu_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C);
pt_status pt_cpu_embedding_range_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                         const float *wpe, int v0, int V, int B, int T, int C);
pt_status pt_cpu_embedding_range_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                          const int32_t *tokens, int v0, int V, int B, int T, int C);

pt_status pt_cpu_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                      const int32_t *targets, int N, int V, int rnd);
pt_status pt_cpu_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                       float dloss, int N, int V, int rnd);

pt_status pt_cpu_xent_shard_forward(pt_stream *s, float *stats_out, float *exps, float *row_max,
                                    const float *stats_in, const float *logits, const int32_t *targets, int N, int V,
                                    int v0, int n_valid);
pt_status pt_cpu_xent_shard_finish(pt_stream *s, float *losses, float *lse, const float *stats,
                                   const int32_t *targets, int N, int V_total);
pt_status pt_cpu_xent_shard_backward(pt_stream *s, float *dlogits, const float *exps, const float *row_max,
                                     const float *lse, const int32_t *targets, float dloss, int N, int V, int v0);
pt_status pt_cpu_xent_stats_combine(pt_stream *s, float *stats, const float *parts, int n, int N);

pt_status pt_cpu_rmsnorm_forward(pt_stream *s, float *out, float *rstd, const float *inp, const float *w, int N,
                                 int C, float eps);
pt_status pt_cpu_rmsnorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                        const float *w, const float *rstd, int N, int C);
pt_status pt_cpu_rmsnorm_backward_weight(pt_stream *s, float *dw, const float *dout, const float *inp,
                                         const float *rstd, int N, int C);
pt_status pt_cpu_rmsnorm_backward(pt_stream *s, float *dinp, float *dw, const float *dout, const float *inp,
                                  const float *w, const float *rstd, int N, int C);
pt_status pt_cpu_rope_forward(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                              int NKV, int hs, int pos0);
pt_status pt_cpu_rope_backward(pt_stream *s, float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                               int NKV, int hs, int pos0);
pt_status pt_cpu_swiglu_forward(pt_stream *s, float *out, const float *gu, int N, int H);
pt_status pt_cpu_swiglu_backward(pt_stream *s, float *dgu, const float *dout, const float *gu, int N, int H);

pt_status pt_cpu_adamw_update(pt_stream *s, float *param, const float *grad, float *m, float *v, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                              int t);
pt_status pt_cpu_adamw_multi_update(pt_stream *s, const pt_adamw_seg *segs, int n_segs, size_t total, float lr,
                                    float beta1, float beta2, float eps, float grad_scale, int t);

#endif
