/* kernels/cuda/cuda_internal.h — what the CUDA backend's files share: the CUDA stream, error
 * conversion, the matmul precision mode, the stream workspace, and the kernel entry points that
 * fill pt_backend_cuda. Not a public header.
 *
 * Every entry point queues work on its stream and returns without waiting, except those that
 * write host memory (sum_squares, has_nonfinite, memcpy_d2h), which synchronise the stream.
 * Launch errors are reported at the call (cudaGetLastError); errors inside a kernel surface at
 * the next synchronising call. Kernels never allocate: temporary space comes from the stream's
 * workspace, allocated once at stream creation.
 */
#ifndef PT_KERNELS_CUDA_INTERNAL_H
#define PT_KERNELS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"

/* Matrix product precision, chosen per stream from PT_CUDA_MATMUL at stream creation. */
typedef enum { PT_CUDA_MM_FP32 = 0, PT_CUDA_MM_TF32 = 1, PT_CUDA_MM_BF16 = 2 } pt_cuda_mm_mode;
/* Attention kernels, chosen per stream from PT_CUDA_ATTENTION at stream creation
 * (pt_cuda_attention_mode_env): fp32 CUDA-core kernels (attention.cu, the default) or the
 * tensor-core flash kernels (attention_flash.cu). */
typedef enum { PT_CUDA_ATT_FP32 = 0, PT_CUDA_ATT_FLASH = 1 } pt_cuda_att_mode;

struct pt_stream {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    pt_cuda_mm_mode mm_mode;
    pt_cuda_att_mode att_mode;
    void *workspace;          /* device, PT_CUDA_WORKSPACE_MB (default 64) MiB, 256-aligned */
    size_t workspace_bytes;
    void *blas_workspace;     /* device, handed to cuBLAS once (deterministic split-K) */
    double *host_double;      /* pinned, 1 double: sum_squares result */
    int *host_int;            /* pinned, 1 int: has_nonfinite result */
};

/* Bytes of the stream workspace given to cuBLAS. */
#define PT_CUDA_BLAS_WORKSPACE (32u << 20)

/* Records a failed CUDA runtime call as PT_EBACKEND (PT_ENOMEM for out-of-memory), naming `what` and
 * CUDA's own error string. Returns PT_OK when err is cudaSuccess. */
pt_status pt_cuda_fail(cudaError_t err, const char *what);
/* Same for cuBLAS statuses. */
pt_status pt_cuda_blas_fail(cublasStatus_t err, const char *what);
/* Checks the last kernel launch (cudaGetLastError), naming the kernel. */
pt_status pt_cuda_launched(const char *kernel);

#define PT_CUDA_CHECK(expr, what)                                                                            \
    do {                                                                                                     \
        cudaError_t pt_cuda_err_ = (expr);                                                                   \
        if (pt_cuda_err_ != cudaSuccess)                                                                     \
            return pt_cuda_fail(pt_cuda_err_, what);                                                         \
    } while (0)

/* Blocks for a grid-stride element-wise kernel over n elements (at most 65535 * 8). */
static inline unsigned pt_cuda_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b > 65535u * 8u)
        b = 65535u * 8u;
    return b == 0 ? 1u : (unsigned)b;
}

/* Row blocks of a two-pass column sum over N rows: blocks of 256 rows, or more rows per block
 * when that would make more than 1024 blocks, so the partial sums take at most 1024 rows of
 * scratch whatever N is. A function of N only, so the summation order is too. */
static inline void pt_cuda_row_parts(int N, int *n_parts, int *rows)
{
    int r = 256;
    if ((N + r - 1) / r > 1024)
        r = (N + 1023) / 1024;
    *rows = r;
    *n_parts = (N + r - 1) / r;
}

/* The stream workspace as `bytes` of scratch (a kernel's temporary). PT_ENOMEM naming `what` and
 * PT_CUDA_WORKSPACE_MB when it is too small. */
pt_status pt_cuda_scratch(pt_stream *s, size_t bytes, const char *what, void **out);

/* ---- entry points of pt_backend_cuda (documented in pipetrain/backend.h) ---- */
#ifdef __cplusplus
extern "C" {
#endif
pt_status pt_cuda_stream_create(const pt_stream_opts *opts, pt_stream **out);
void pt_cuda_stream_destroy(pt_stream *s);
pt_status pt_cuda_stream_sync(pt_stream *s);
pt_status pt_cuda_alloc(void **ptr, size_t bytes);
void pt_cuda_free(void *ptr);
pt_status pt_cuda_memcpy_h2d(pt_stream *s, void *dst, const void *src, size_t bytes);
pt_status pt_cuda_memcpy_d2h(pt_stream *s, void *dst, const void *src, size_t bytes);
pt_status pt_cuda_memcpy_d2d(pt_stream *s, void *dst, const void *src, size_t bytes);
pt_status pt_cuda_memset_zero(pt_stream *s, void *dst, size_t bytes);

pt_status pt_cuda_add(pt_stream *s, float *out, const float *a, const float *b, size_t n);
pt_status pt_cuda_scale(pt_stream *s, float *x, float alpha, size_t n);
pt_status pt_cuda_round_bf16(pt_stream *s, float *out, const float *x, size_t n);
pt_status pt_cuda_pack_bf16(pt_stream *s, uint16_t *dst, const float *x, size_t n);
pt_status pt_cuda_unpack_bf16_upper(pt_stream *s, float *buf, size_t n);
pt_status pt_cuda_unpack_bf16(pt_stream *s, float *out, const uint16_t *src, size_t n);
pt_status pt_cuda_round_pack_bf16(pt_stream *s, float *x, uint16_t *packed, size_t n);
pt_status pt_cuda_sum_squares(pt_stream *s, double *out, const float *x, size_t n);
pt_status pt_cuda_has_nonfinite(pt_stream *s, int *out, const float *x, size_t n);
pt_status pt_cuda_gelu_forward(pt_stream *s, float *out, const float *inp, size_t n);
pt_status pt_cuda_gelu_backward(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n);
pt_status pt_cuda_marker_create(pt_marker **out);
void pt_cuda_marker_destroy(pt_marker *m);
pt_status pt_cuda_marker_record(pt_stream *s, pt_marker *m);
pt_status pt_cuda_marker_elapsed_ns(const pt_marker *from, const pt_marker *to, int64_t *ns);
pt_status pt_cuda_bias_gelu_forward(pt_stream *s, float *x, float *out, const float *bias, int N, int F, int rnd);
pt_status pt_cuda_gelu_backward_round(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n,
                                      int rnd);
pt_status pt_cuda_add_layernorm_forward(pt_stream *s, float *res, float *out, float *mean, float *rstd,
                                        const float *a, const float *b, const float *w, const float *bias, int N,
                                        int C, int rnd);
pt_status pt_cuda_layernorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                               const float *w, const float *mean, const float *rstd,
                                               const float *resid, int N, int C, int rnd);
pt_status pt_cuda_add_rmsnorm_forward(pt_stream *s, float *res, float *out, float *rstd, const float *a,
                                      const float *b, const float *w, int N, int C, float eps, int rnd);
pt_status pt_cuda_rmsnorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                             const float *w, const float *rstd, const float *resid, int N, int C,
                                             int rnd);

pt_status pt_cuda_matmul_forward(pt_stream *s, float *out, const float *inp, const float *weight, const float *bias,
                                 int N, int C, int OC);
pt_status pt_cuda_matmul_backward_input(pt_stream *s, float *dinp, const float *dout, const float *weight, int N,
                                        int C, int OC);
pt_status pt_cuda_matmul_backward_weight(pt_stream *s, float *dweight, float *dbias, const float *dout,
                                         const float *inp, int N, int C, int OC);

pt_status pt_cuda_layernorm_forward(pt_stream *s, float *out, float *mean, float *rstd, const float *inp,
                                    const float *w, const float *b, int N, int C);
pt_status pt_cuda_layernorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                           const float *w, const float *mean, const float *rstd, int N, int C);
pt_status pt_cuda_layernorm_backward_weight(pt_stream *s, float *dw, float *db, const float *dout, const float *inp,
                                            const float *mean, const float *rstd, int N, int C);
pt_status pt_cuda_layernorm_backward(pt_stream *s, float *dinp, float *dw, float *db, const float *dout,
                                     const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                     int C);

size_t pt_cuda_attention_saved_size(int B, int T, int C, int NH, int NKV);
size_t pt_cuda_attention_scratch_size(int B, int T, int C, int NH, int NKV);
pt_status pt_cuda_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                    int T, int C, int NH, int NKV);
pt_status pt_cuda_attention_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                     const float *out, const float *saved, int B, int T, int C, int NH, int NKV);
pt_status pt_cuda_attention_decode(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n,
                                   int C, int NH, int NKV);
/* attention_flash.cu: the same forward and backward (same saved log-sum-exp and scratch, so the
 * two implementations may be mixed) with bf16 WMMA tile products and fp32 accumulation, for head
 * sizes pt_cuda_attention_flash_fits accepts (a multiple of 16 up to 128); attention.cu's entries
 * call them when the stream's att_mode is PT_CUDA_ATT_FLASH and the head size fits. */
int pt_cuda_attention_flash_fits(int hs);
pt_status pt_cuda_attention_flash_forward(pt_stream *s, float *out, float *saved, const float *qkv, int B, int T,
                                          int C, int NH, int NKV);
pt_status pt_cuda_attention_flash_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout,
                                           const float *qkv, const float *out, const float *saved, int B, int T,
                                           int C, int NH, int NKV);
/* Reads PT_CUDA_ATTENTION (unset, "" or "fp32": PT_CUDA_ATT_FP32; "flash": PT_CUDA_ATT_FLASH, which
 * needs compute capability 8.0 or later on `device`): PT_EINVAL for another value, PT_ENOTSUP for
 * flash on an older GPU, each naming the variable and what to set. */
pt_status pt_cuda_attention_mode_env(int device, pt_cuda_att_mode *mode);
/* PT_CUDA_MATMUL (matmul.cu) for CUDA device `device`: bf16 (the default; fp32 when default_fp32,
 * pt_stream_opts.fp32_products), tf32 or fp32. bf16 and tf32 run on tensor cores of compute
 * capability 8.0 or newer: asked for on an older GPU they are refused (PT_ENOTSUP, one line naming
 * the variable and the device's capability); the default there is fp32. PT_EINVAL for another
 * value. */
pt_status pt_cuda_matmul_mode_env(int device, int default_fp32, pt_cuda_mm_mode *mode);

pt_status pt_cuda_embedding_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                    const float *wpe, int B, int T, int C);
pt_status pt_cuda_embedding_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                     const int32_t *tokens, int B, int T, int C);
pt_status pt_cuda_embedding_range_forward(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                          const float *wpe, int v0, int V, int B, int T, int C);
pt_status pt_cuda_embedding_range_backward(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                           const int32_t *tokens, int v0, int V, int B, int T, int C);

pt_status pt_cuda_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                       const int32_t *targets, int N, int V, int rnd);
pt_status pt_cuda_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                        float dloss, int N, int V, int rnd);
pt_status pt_cuda_xent_shard_forward(pt_stream *s, float *stats_out, float *exps, float *row_max,
                                     const float *stats_in, const float *logits, const int32_t *targets, int N,
                                     int V, int v0, int n_valid);
pt_status pt_cuda_xent_shard_finish(pt_stream *s, float *losses, float *lse, const float *stats,
                                    const int32_t *targets, int N, int V_total);
pt_status pt_cuda_xent_shard_backward(pt_stream *s, float *dlogits, const float *exps, const float *row_max,
                                      const float *lse, const int32_t *targets, float dloss, int N, int V, int v0);
pt_status pt_cuda_xent_stats_combine(pt_stream *s, float *stats, const float *parts, int n, int N);

pt_status pt_cuda_adamw_update(pt_stream *s, float *param, const float *grad, float *m, float *v, size_t n,
                               float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                               int t);
pt_status pt_cuda_adamw_multi_update(pt_stream *s, const pt_adamw_seg *segs, int n_segs, size_t total, float lr,
                                     float beta1, float beta2, float eps, float grad_scale, int t);

/* llama.cu */
pt_status pt_cuda_rmsnorm_forward(pt_stream *s, float *out, float *rstd, const float *inp, const float *w, int N,
                                  int C, float eps);
pt_status pt_cuda_rmsnorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                         const float *w, const float *rstd, int N, int C);
pt_status pt_cuda_rmsnorm_backward_weight(pt_stream *s, float *dw, const float *dout, const float *inp,
                                          const float *rstd, int N, int C);
pt_status pt_cuda_rmsnorm_backward(pt_stream *s, float *dinp, float *dw, const float *dout, const float *inp,
                                   const float *w, const float *rstd, int N, int C);
pt_status pt_cuda_rope_forward(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                               int NKV, int hs, int pos0);
pt_status pt_cuda_rope_backward(pt_stream *s, float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                                int NKV, int hs, int pos0);
pt_status pt_cuda_swiglu_forward(pt_stream *s, float *out, const float *gu, int N, int H);
pt_status pt_cuda_swiglu_backward(pt_stream *s, float *dgu, const float *dout, const float *gu, int N, int H);
#ifdef __cplusplus
}
#endif

/* Warp sum / max over all 32 lanes (butterfly: every lane gets the same bits). */
#if defined(__CUDACC__) || defined(PT_CUDA_EMU)
__device__ __forceinline__ float pt_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double pt_warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float pt_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
#endif

/* The kernel entries of a pt_backend table, shared by the CUDA backend and the CPU emulator of
 * its sources (tests/cuda/emu), so the emulator always tests the table the backend ships. */
#define PT_CUDA_KERNEL_ENTRIES \
    .add = pt_cuda_add, \
    .scale = pt_cuda_scale, \
    .sum_squares = pt_cuda_sum_squares, \
    .has_nonfinite = pt_cuda_has_nonfinite, \
    .matmul_forward = pt_cuda_matmul_forward, \
    .matmul_backward_input = pt_cuda_matmul_backward_input, \
    .matmul_backward_weight = pt_cuda_matmul_backward_weight, \
    .layernorm_forward = pt_cuda_layernorm_forward, \
    .layernorm_backward_input = pt_cuda_layernorm_backward_input, \
    .layernorm_backward_weight = pt_cuda_layernorm_backward_weight, \
    .layernorm_backward = pt_cuda_layernorm_backward, \
    .gelu_forward = pt_cuda_gelu_forward, \
    .gelu_backward = pt_cuda_gelu_backward, \
    .attention_saved_size = pt_cuda_attention_saved_size, \
    .attention_scratch_size = pt_cuda_attention_scratch_size, \
    .attention_forward = pt_cuda_attention_forward, \
    .attention_backward = pt_cuda_attention_backward, \
    .embedding_forward = pt_cuda_embedding_forward, \
    .embedding_backward = pt_cuda_embedding_backward, \
    .crossentropy_forward = pt_cuda_crossentropy_forward, \
    .crossentropy_backward = pt_cuda_crossentropy_backward, \
    .xent_shard_forward = pt_cuda_xent_shard_forward, \
    .xent_shard_finish = pt_cuda_xent_shard_finish, \
    .xent_shard_backward = pt_cuda_xent_shard_backward, \
    .embedding_range_forward = pt_cuda_embedding_range_forward, \
    .embedding_range_backward = pt_cuda_embedding_range_backward, \
    .xent_stats_combine = pt_cuda_xent_stats_combine, \
    .adamw_update = pt_cuda_adamw_update, \
    .adamw_multi_update = pt_cuda_adamw_multi_update

/* The entries declared after device_memory in pt_backend (C++ designators keep declaration order,
 * so they follow `.device_memory = 1` in both tables). */
#define PT_CUDA_KERNEL_ENTRIES_LATE \
    .attention_decode = pt_cuda_attention_decode, \
    .rmsnorm_forward = pt_cuda_rmsnorm_forward, \
    .rmsnorm_backward_input = pt_cuda_rmsnorm_backward_input, \
    .rmsnorm_backward_weight = pt_cuda_rmsnorm_backward_weight, \
    .rmsnorm_backward = pt_cuda_rmsnorm_backward, \
    .rope_forward = pt_cuda_rope_forward, \
    .rope_backward = pt_cuda_rope_backward, \
    .swiglu_forward = pt_cuda_swiglu_forward, \
    .swiglu_backward = pt_cuda_swiglu_backward, \
    .round_bf16 = pt_cuda_round_bf16, \
    .pack_bf16 = pt_cuda_pack_bf16, \
    .unpack_bf16_upper = pt_cuda_unpack_bf16_upper, \
    .unpack_bf16 = pt_cuda_unpack_bf16, \
    .round_pack_bf16 = pt_cuda_round_pack_bf16, \
    .add_layernorm_forward = pt_cuda_add_layernorm_forward, \
    .add_rmsnorm_forward = pt_cuda_add_rmsnorm_forward, \
    .layernorm_backward_input_add = pt_cuda_layernorm_backward_input_add, \
    .rmsnorm_backward_input_add = pt_cuda_rmsnorm_backward_input_add, \
    .bias_gelu_forward = pt_cuda_bias_gelu_forward, \
    .gelu_backward_round = pt_cuda_gelu_backward_round

#endif
