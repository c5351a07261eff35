/* pipetrain/backend.h — the kernel seam. All tensor memory is allocated, copied and computed
 * on through a pt_backend; the runtime and models never dereference tensor memory directly,
 * so the same runtime drives the CPU backend (C, OpenMP, OpenBLAS) and the CUDA backend
 * (CUDA C, cuBLAS). Both fill the same table with the same signatures.
 *
 *     const pt_backend *be;
 *     PT_CHECK(pt_backend_get("cpu", &be));
 *     pt_stream *s;
 *     PT_CHECK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 2 }, &s));
 *     float *x;
 *     PT_CHECK(pt_backend_alloc(be, (void **)&x, n * sizeof(float)));
 *     PT_CHECK(be->gelu_forward(s, y, x, n));
 *     PT_CHECK(be->stream_sync(s));
 *     pt_backend_free(be, x);
 *     be->stream_destroy(s);
 *
 * Conventions, for every kernel:
 *  - Shapes are written (B,T,C); N is a count of rows (usually B*T). All float tensors are fp32
 *    on the CPU backend; the CUDA backend keeps fp32 master weights and may compute in bf16
 *    (see its header), but its entry points take the same fp32 pointers.
 *  - Gradients w.r.t. inputs (`dinp`) are OVERWRITTEN. Gradients w.r.t. parameters (`dw`, `db`)
 *    are ADDED to, so micro-batches accumulate. (Residual gradient sums use `add`.)
 *  - Kernels never allocate; callers pass scratch sized by the `_size` functions.
 *  - Kernels are asynchronous with respect to the host on CUDA (ordered on the stream) and
 *    synchronous on CPU. Only functions that write to host memory (`sum_squares`, memcpy_d2h)
 *    synchronise.
 *  - Results are deterministic: the same inputs, shapes and thread count give the same bits.
 *  - Every entry is required (non-NULL) unless marked optional.
 */
#ifndef PIPETRAIN_BACKEND_H
#define PIPETRAIN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/memkind.h"

#include "pipetrain/model_config.h" /* PT_XENT_STATS: the statistics between vocabulary shards */
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An ordered queue of work on one device (a CUDA stream; on CPU, the thread team settings). */
typedef struct pt_stream pt_stream;
typedef struct pt_marker pt_marker; /* a point on a stream's timeline (marker_* below) */

typedef struct pt_stream_opts {
    int device;    /* GPU ordinal (CUDA); ignored on CPU */
    int n_threads; /* OpenMP threads for this stream's kernels (CPU); <= 0: all cores */
    int fp32_products; /* CUDA: 1: matrix products in fp32 unless PT_CUDA_MATMUL names a mode (what
                        * `train --precision fp32` asks for); 0: PT_CUDA_MATMUL's default (bf16
                        * inputs on Ampere and newer). Ignored on CPU (always fp32). */
} pt_stream_opts;

/* One segment of adamw_multi_update: n elements of a parameter, its gradient and its moments (device
 * pointers), the decoupled weight decay to apply to them, and `start`, the number of elements of
 * the segments before it in the table. */
typedef struct pt_adamw_seg {
    float *param;
    const float *grad;
    float *m, *v;
    size_t n, start;
    float weight_decay;
} pt_adamw_seg;

typedef struct pt_backend {
    const char *name; /* "cpu" | "cuda" */

    /* ---- streams ---- */
    /* Returns PT_ENOTSUP when the backend has no device here (e.g. CUDA without a GPU). */
    pt_status (*stream_create)(const pt_stream_opts *opts, pt_stream **out);
    void (*stream_destroy)(pt_stream *s); /* accepts NULL */
    pt_status (*stream_sync)(pt_stream *s); /* waits for all work queued on s */

    /* ---- memory (use pt_backend_alloc / pt_backend_free, which also account bytes) ---- */
    pt_status (*alloc)(void **ptr, size_t bytes); /* device memory, 256-byte aligned, uninitialised */
    void (*free)(void *ptr);                      /* accepts NULL */
    pt_status (*memcpy_h2d)(pt_stream *s, void *dst, const void *src, size_t bytes);
    pt_status (*memcpy_d2h)(pt_stream *s, void *dst, const void *src, size_t bytes); /* synchronises */
    pt_status (*memcpy_d2d)(pt_stream *s, void *dst, const void *src, size_t bytes);
    pt_status (*memset_zero)(pt_stream *s, void *dst, size_t bytes);

    /* ---- element-wise ---- */
    /* out = a + b, (n). out may alias a or b. */
    pt_status (*add)(pt_stream *s, float *out, const float *a, const float *b, size_t n);
    /* x *= alpha, (n). */
    pt_status (*scale)(pt_stream *s, float *x, float alpha, size_t n);
    /* *out (host) = sum of x[i]^2 in double, (n); deterministic order; synchronises. */
    pt_status (*sum_squares)(pt_stream *s, double *out, const float *x, size_t n);
    /* 1 in *out (host) when any x[i] is NaN or Inf, else 0; synchronises. */
    pt_status (*has_nonfinite)(pt_stream *s, int *out, const float *x, size_t n);

    /* ---- matrix products: weight is (OC,C), as torch.nn.Linear ---- */
    /* out (N,OC) = inp (N,C) @ weight^T + bias; bias (OC) may be NULL. */
    pt_status (*matmul_forward)(pt_stream *s, float *out, const float *inp, const float *weight,
                                const float *bias, int N, int C, int OC);
    /* dinp (N,C) = dout (N,OC) @ weight (OC,C). Overwrites dinp. */
    pt_status (*matmul_backward_input)(pt_stream *s, float *dinp, const float *dout, const float *weight, int N,
                                       int C, int OC);
    /* dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums of dout (dbias may be NULL). */
    pt_status (*matmul_backward_weight)(pt_stream *s, float *dweight, float *dbias, const float *dout,
                                        const float *inp, int N, int C, int OC);

    /* ---- layernorm over the last dim, eps 1e-5 ---- */
    /* out, inp (N,C); mean, rstd (N) are kept for backward. */
    pt_status (*layernorm_forward)(pt_stream *s, float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C);
    /* dinp (N,C) overwritten; it must not alias dout or inp (nor in the fused entry below). */
    pt_status (*layernorm_backward_input)(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd, int N, int C);
    /* dw, db (C) added to. */
    pt_status (*layernorm_backward_weight)(pt_stream *s, float *dw, float *db, const float *dout,
                                           const float *inp, const float *mean, const float *rstd, int N, int C);
    /* Fused: both of the above in one pass; bit-identical to calling them separately. */
    pt_status (*layernorm_backward)(pt_stream *s, float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                    int C);

    /* ---- GELU, tanh approximation ---- */
    pt_status (*gelu_forward)(pt_stream *s, float *out, const float *inp, size_t n);
    /* dinp overwritten; dinp may alias dout. */
    pt_status (*gelu_backward)(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n);

    /* ---- causal self-attention, multi-head or grouped-query, scale 1/sqrt(C/NH), T up to 1024 ----
     * C = NH * hs is the width of the queries and of the output (hs = C / NH, the head width);
     * NKV (1 <= NKV <= NH, dividing NH) is the number of key/value heads: query head h attends
     * with kv head h / (NH / NKV) (grouped-query attention, Llama); NKV == NH is GPT-2's
     * multi-head attention. Each token's qkv row is W = C + 2 * NKV * hs floats: the NH query
     * heads, then the NKV key heads, then the NKV value heads (for NKV == NH: q, k, v side by
     * side, (B,T,3C), as GPT-2's c_attn output). */
    /* Floats the forward keeps for the backward (per call of shape B,T,C,NH,NKV). The CPU backend
     * keeps the log-sum-exp of each softmax row (B*NH*T) and recomputes the probabilities in
     * the backward (docs/kernels.md explains the choice). */
    size_t (*attention_saved_size)(int B, int T, int C, int NH, int NKV);
    /* Floats of scratch that forward and backward need while they run (not kept). */
    size_t (*attention_scratch_size)(int B, int T, int C, int NH, int NKV);
    /* qkv (B,T,W) as above; out (B,T,C) heads concatenated; saved: attention_saved_size floats. */
    pt_status (*attention_forward)(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv,
                                   int B, int T, int C, int NH, int NKV);
    /* dqkv (B,T,W) overwritten, from dout (B,T,C), the forward's qkv, out and saved. The key and
     * value gradients of a kv head sum over the NH / NKV query heads of its group. */
    pt_status (*attention_backward)(pt_stream *s, float *dqkv, float *scratch, const float *dout,
                                    const float *qkv, const float *out, const float *saved, int B, int T, int C,
                                    int NH, int NKV);

    /* ---- token + position embedding ---- */
    /* out (B,T,C) = wte[tokens[b,t]] + wpe[t]; tokens (B,T) int32 on the device; wte (V,C), wpe (maxT,C).
     * wpe NULL: no position term, out = wte[tokens] (llama; the backward then takes dwpe NULL).
     * Callers guarantee 0 <= tokens < V and T <= maxT (neither bound is passed); the CPU backend
     * refuses negative tokens with PT_EINVAL. */
    pt_status (*embedding_forward)(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                   const float *wpe, int B, int T, int C);
    /* dwte (V,C), dwpe (maxT,C) added to. Deterministic (no atomics order dependence). */
    pt_status (*embedding_backward)(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C);

    /* ---- softmax + cross-entropy over the vocabulary ---- */
    /* logits (N,V); losses (N) = -log softmax(logits)[target]; targets < 0 are ignored (loss 0),
     * the CPU backend refuses a target >= V with PT_EINVAL before writing anything.
     * probs (N,V) receives the softmax and may alias logits. rnd != 0 (bf16): each logit is read
     * as its bf16 rounding (round_bf16 of the logits, then the forward, in one pass fewer; the
     * logits are not written back unless probs is logits); the softmax stays fp32. */
    pt_status (*crossentropy_forward)(pt_stream *s, float *losses, float *probs, const float *logits,
                                      const int32_t *targets, int N, int V, int rnd);
    /* dlogits (N,V) = dloss * (probs - onehot(target)), 0 rows where target < 0; overwritten;
     * may alias probs. dloss is the weight of each position in the loss (1 / tokens in the global
     * batch). rnd != 0: dlogits rounded to bf16 as written (the backward, then round_bf16). */
    pt_status (*crossentropy_backward)(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                       float dloss, int N, int V, int rnd);

    /* ---- cross-entropy over a vocabulary split into shards (model_config.h, head_split) ----
     * The LM head as K layers, shard k holding vocabulary columns [v0, v0 + V): the softmax is
     * combined across shards through running row statistics, stats (N, PT_XENT_STATS) floats:
     *   [0] max logit m over the columns seen so far   [1] sum of exp(x - m) over them
     *   [2] the target's logit if the target was among them, else 0
     *   [3] the largest logit among the valid columns seen (global column < n_valid: the
     *       vocabulary without its padding)
     *   [4] its global column as a float (exact: vocabularies are < 2^24), -1 when none yet;
     *       ties keep the lower column (the first maximum, as an argmax over the whole row).
     * Forward, per row: exps (N,V) = exp(x - row_max) (may alias logits; the target's logit is
     * read first), row_max (N) = this shard's max, and stats_out = stats_in combined with this
     * shard (stats_in NULL for the first shard; stats_out may alias stats_in). Columns whose global
     * index v0 + j >= n_valid (padding rows of wte) take part in the softmax, never in the argmax. */
    pt_status (*xent_shard_forward)(pt_stream *s, float *stats_out, float *exps, float *row_max,
                                    const float *stats_in, const float *logits, const int32_t *targets, int N,
                                    int V, int v0, int n_valid);
    /* After the last shard: lse (N) = m + log(sum) and losses (N) = lse - target logit (0 where
     * target < 0), written as log(sum) + m - x_target like crossentropy_forward. The CPU backend
     * refuses a target >= V_total with PT_EINVAL before writing anything. */
    pt_status (*xent_shard_finish)(pt_stream *s, float *losses, float *lse, const float *stats,
                                   const int32_t *targets, int N, int V_total);
    /* dlogits (N,V) = dloss * (exps * exp(row_max - lse) - onehot(target - v0)), 0 rows where
     * target < 0; may alias exps. */
    pt_status (*xent_shard_backward)(pt_stream *s, float *dlogits, const float *exps, const float *row_max,
                                     const float *lse, const int32_t *targets, float dloss, int N, int V, int v0);

    /* ---- vocabulary-parallel embedding and cross-entropy (tensor parallelism; model.h tp) ----
     * Optional (NULL: the backend cannot run tensor-parallel chunks). */
    /* out (B,T,C) = (v0 <= tok < v0 + V ? wte[tok - v0] : 0) + (wpe ? wpe[t] : 0): wte (V,C) holds rows
     * v0 .. v0+V-1 of the whole table. The sum over the group of every rank's out, with wpe on one
     * rank only, is embedding_forward's bits (one non-zero table term per element). */
    pt_status (*embedding_range_forward)(pt_stream *s, float *out, const int32_t *tokens, const float *wte,
                                         const float *wpe, int v0, int V, int B, int T, int C);
    /* dwte (V,C) rows of the tokens in [v0, v0+V) added to; dwpe (maxT,C) added to when not NULL;
     * the same order as embedding_backward (deterministic). */
    pt_status (*embedding_range_backward)(pt_stream *s, float *dwte, float *dwpe, const float *dout,
                                          const int32_t *tokens, int v0, int V, int B, int T, int C);
    /* stats (N, PT_XENT_STATS) = parts[0] combined with parts[1], ..., parts[n-1] in that order, where
     * parts (n, N, PT_XENT_STATS) are xent_shard_forward outputs each made with stats_in NULL for
     * consecutive vocabulary ranges: xent_shard_forward's combining rule, so the result has the
     * bits of n shards run one after the other. stats may not alias parts. */
    pt_status (*xent_stats_combine)(pt_stream *s, float *stats, const float *parts, int n, int N);

    /* ---- optimizer ---- */
    /* AdamW on one tensor (n), in place: m, v updated; bias correction with step t >= 1;
     * decoupled weight decay `weight_decay` (callers pass 0 for tensors of rank < 2);
     * grad is multiplied by grad_scale first (gradient clipping, loss scaling). */
    pt_status (*adamw_update)(pt_stream *s, float *param, const float *grad, float *m, float *v, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                              int t);
    /* Optional (NULL: callers loop over adamw_update): AdamW on n_segs segments in one call, on CUDA
     * one kernel launch, on CPU one OpenMP team balanced by elements. segs (n_segs entries) is in
     * memory this backend's kernels read (pt_backend_alloc + memcpy_h2d; host memory on CPU), so a
     * caller uploads its table once and reuses it; segment k's start is the sum of n of the
     * segments before it, and total = the sum of all n (n = 0 segments allowed; the CPU backend
     * refuses a table that breaks this, CUDA trusts it). Each element gets adamw_update's operations
     * in adamw_update's order with the segment's weight_decay, so the bits equal one adamw_update
     * per segment. Segments must not overlap. */
    pt_status (*adamw_multi_update)(pt_stream *s, const pt_adamw_seg *segs, int n_segs, size_t total, float lr,
                                    float beta1, float beta2, float eps, float grad_scale, int t);

    /* ---- where the memory lives (added after the kernels; tables that leave it out get 0) ---- */
    /* 0: alloc returns host memory (the CPU backend): the host and the network (pt_comm) may read
     * and write it in place. 1: alloc returns device memory the host cannot touch (CUDA): callers
     * that hand tensor memory to host code or to pt_comm copy it through host buffers with
     * memcpy_d2h / memcpy_h2d (the pipeline runtime stages its sends, receives and reductions so). */
    int device_memory;

    /* ---- attention against a KV cache (added for generation, models/generate.c; a table that
     * leaves it out gets NULL and generation refuses to run on it) ----
     * cache (B,Tcap,W) holds q, k, v of each sequence's positions 0..t0+n-1 side by side per
     * position (attention_forward's qkv layout, W = C + 2*NKV*(C/NH) floats, Tcap rows per
     * sequence); out (B,n,C) heads concatenated = the causal attention of the queries at positions
     * t0..t0+n-1 over the keys and values at positions 0..t0+i, scale 1/sqrt(C/NH), query head h
     * using kv head h / (NH/NKV). Equal to attention_forward's rows t0..t0+n-1 on the same qkv up to
     * rounding. Needs no scratch. 0 <= t0, 1 <= n, t0 + n <= Tcap. */
    pt_status (*attention_decode)(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n,
                                  int C, int NH, int NKV);

    /* ---- Llama-family layers (added with the llama architecture; a table that leaves them out
     * gets NULL and models/ refuses to build a llama model on it, naming the backend) ---- */

    /* RMSNorm over the last dim: out = (inp * rstd) * w, rstd = 1 / sqrt(mean(inp^2) + eps), the
     * mean and the products in fp32 as Hugging Face's LlamaRMSNorm. out, inp (N,C); rstd (N) is
     * kept for the backward. out may not alias inp. */
    pt_status (*rmsnorm_forward)(pt_stream *s, float *out, float *rstd, const float *inp, const float *w, int N,
                                 int C, float eps);
    /* dinp (N,C) overwritten; it must not alias dout or inp (nor in the fused entry below). */
    pt_status (*rmsnorm_backward_input)(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                        const float *w, const float *rstd, int N, int C);
    /* dw (C) added to: the column sums of dout * inp * rstd, in a fixed order. */
    pt_status (*rmsnorm_backward_weight)(pt_stream *s, float *dw, const float *dout, const float *inp,
                                         const float *rstd, int N, int C);
    /* Fused: both of the above in one pass; bit-identical to calling them separately. */
    pt_status (*rmsnorm_backward)(pt_stream *s, float *dinp, float *dw, const float *dout, const float *inp,
                                  const float *w, const float *rstd, int N, int C);

    /* Rotary position embedding, Hugging Face's rotate-half form, in place on the q and k heads of
     * a qkv buffer (B,T,W) laid out as attention_forward's (W = (NH + 2*NKV) * hs; the v heads are
     * not touched). Token t of a sequence is at position pos0 + t; cos and sin are (max_pos, hs/2)
     * tables, row p holding cos(p * inv_freq[i]) and sin(p * inv_freq[i]), i < hs/2 (models/ fills
     * them). For each head x and i < hs/2, with c, s the table values at (pos, i):
     *   x[i] <- x[i] * c - x[i + hs/2] * s,   x[i + hs/2] <- x[i + hs/2] * c + x[i] * s.
     * hs must be even. The caller guarantees pos0 + T <= max_pos. */
    pt_status (*rope_forward)(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                              int NKV, int hs, int pos0);
    /* The transpose, in place on a gradient dqkv (B,T,W): per head and i < hs/2,
     *   d[i] <- d[i] * c + d[i + hs/2] * s,   d[i + hs/2] <- d[i + hs/2] * c - d[i] * s.
     * v heads untouched. */
    pt_status (*rope_backward)(pt_stream *s, float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                               int NKV, int hs, int pos0);

    /* SwiGLU: gu (N, 2H) holds gate in columns [0,H) and up in [H,2H) (a fused gate/up projection);
     * out (N,H) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). out must not alias gu. */
    pt_status (*swiglu_forward)(pt_stream *s, float *out, const float *gu, int N, int H);
    /* dgu (N,2H) overwritten from dout (N,H) and the forward's gu: d gate = dout * up * silu'(gate),
     * d up = dout * silu(gate). dgu must not alias gu or dout. */
    pt_status (*swiglu_backward)(pt_stream *s, float *dgu, const float *dout, const float *gu, int N, int H);

    /* ---- bf16 mixed precision (added with --precision bf16; a table that leaves it out gets NULL
     * and models/ refuses bf16 on it, naming the backend) ---- */
    /* out[i] = x[i] rounded to the nearest bfloat16, kept as a float (pipetrain/bf16.h's rounding:
     * ties to even, subnormals rounded, NaN stays NaN), (n). out may alias x. The same bits on every
     * backend. */
    pt_status (*round_bf16)(pt_stream *s, float *out, const float *x, size_t n);
    /* Stage messages as bf16 where the link moves backend memory (the nccl link; optional, NULL:
     * that link sends fp32). pack: dst (n 2-byte bf16 values) = x rounded as round_bf16 (the upper
     * half of its bits); dst must not overlap x. unpack_upper: buf (n floats) holds n packed values
     * in its upper half (bytes [2n, 4n)), widened in place to the floats they are (exact). */
    pt_status (*pack_bf16)(pt_stream *s, uint16_t *dst, const float *x, size_t n);
    pt_status (*unpack_bf16_upper)(pt_stream *s, float *buf, size_t n);
    /* out (n floats) = the n packed bf16 values of src, widened (exact); out must not overlap src.
     * With pack_bf16, the bf16 activation stash of models/ (optional, NULL: a bf16 model keeps
     * its blocks' internals as floats). */
    pt_status (*unpack_bf16)(pt_stream *s, float *out, const uint16_t *src, size_t n);
    /* round_bf16 in place on x (n) that also writes the rounded values packed to `packed` (n 2-byte
     * values, not overlapping x): a rounding pass and the stash's packing of the same tensor in one
     * (optional: NULL, models/ rounds, then packs). */
    pt_status (*round_pack_bf16)(pt_stream *s, float *x, uint16_t *packed, size_t n);

    /* ---- fused forms, where memory traffic dominates (models/ calls these; each gives the bits
     * of the split sequence it names, which stays the reference kernels tests hold it to). rnd
     * != 0 (--precision bf16) rounds as round_bf16 at each point marked [r]; rnd 0 is fp32. ----
     * add_layernorm_forward: res = a + b [r]; out = layernorm_forward(res) [r], keeping mean and
     * rstd (N,C): add, round_bf16, layernorm_forward, round_bf16 in one pass. res may be a or b;
     * out must not alias res, a or b. b NULL: no sum, out = layernorm_forward(a) [r] (res is not
     * written and may be NULL). add_rmsnorm_forward likewise with rmsnorm_forward. */
    pt_status (*add_layernorm_forward)(pt_stream *s, float *res, float *out, float *mean, float *rstd, const float *a,
                                       const float *b, const float *w, const float *bias, int N, int C, int rnd);
    pt_status (*add_rmsnorm_forward)(pt_stream *s, float *res, float *out, float *rstd, const float *a,
                                     const float *b, const float *w, int N, int C, float eps, int rnd);
    /* The input gradient followed by a residual add: dinp = layernorm_backward_input(dout) [r] +
     * resid [r] (N,C). dinp must not alias dout, inp or resid. Likewise for RMSNorm. */
    pt_status (*layernorm_backward_input_add)(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                              const float *w, const float *mean, const float *rstd,
                                              const float *resid, int N, int C, int rnd);
    pt_status (*rmsnorm_backward_input_add)(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                            const float *w, const float *rstd, const float *resid, int N, int C,
                                            int rnd);
    /* A linear layer's bias and GELU: x (N,F), a bias-free matmul_forward's output, becomes x +
     * bias (per column; bias may be NULL) [r] in place, and out = gelu_forward(x) [r]. out must
     * not alias x. */
    pt_status (*bias_gelu_forward)(pt_stream *s, float *x, float *out, const float *bias, int N, int F, int rnd);
    /* gelu_backward of dout [r], then [r]: dinp = gelu'(inp) * dout, with the roundings of a bf16
     * step around it (n). dinp may alias dout. */
    pt_status (*gelu_backward_round)(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n,
                                     int rnd);

    /* ---- device timelines, for the profiler (optional: a table without them gets NULL, and the
     * profiler then synchronises the stream after each action and reads the host clock) ----
     * A marker notes when its stream reaches it, on the device's clock. record queues it on s and
     * returns at once; elapsed gives the time from one marker's last record to another's, in ns,
     * once the stream has passed both (after a stream_sync): negative when `to` came first. The
     * CPU backend, whose calls finish before they return, notes pt_now_ns() at the record; CUDA
     * uses timing events (cudaEventElapsedTime, about 0.5 us resolution). */
    pt_status (*marker_create)(pt_marker **out);
    void (*marker_destroy)(pt_marker *m); /* accepts NULL */
    pt_status (*marker_record)(pt_stream *s, pt_marker *m);
    pt_status (*marker_elapsed_ns)(const pt_marker *from, const pt_marker *to, int64_t *ns);
} pt_backend;

/* The CPU backend (always built). */
extern const pt_backend pt_backend_cpu;

/* Looks a backend up by name ("cpu", "cuda"). PT_ENOTSUP naming the build option when this build
 * lacks it. The table is static and shared; thread-safe. */
pt_status pt_backend_get(const char *name, const pt_backend **out);

/* Allocates through `be` and adds the bytes to this process's account (current and peak, in
 * all and under `kind`), which the runtime reports and checks against --mem-limit and the
 * summary shows beside the planner's prediction of each kind. PT_ENOMEM names the size.
 * Thread-safe. */
pt_status pt_backend_alloc_kind(const pt_backend *be, void **ptr, size_t bytes, pt_mem_kind kind);
/* pt_backend_alloc_kind with PT_MEM_OTHER (tests, tools: memory no plan predicts). */
pt_status pt_backend_alloc(const pt_backend *be, void **ptr, size_t bytes);
/* Frees memory from pt_backend_alloc(_kind) (NULL ok) and takes its bytes off the account (in
 * all and under the kind it was allocated as). */
void pt_backend_free(const pt_backend *be, void *ptr);

/* Adds `bytes` (negative: takes them off) of memory a module allocated another way to the same
 * account under `kind`, so that it counts like pt_backend_alloc's (the host link's send staging
 * buffers, which come from pt_comm_buf_alloc to be shared with same-host peers: PT_MEM_COMM).
 * A kind's current count does not go below 0. Thread-safe. */
void pt_backend_account_kind(long long bytes, pt_mem_kind kind);
/* pt_backend_account_kind with PT_MEM_OTHER. */
void pt_backend_account(long long bytes);

/* Bytes currently allocated through pt_backend_alloc in this process, and the peak since start
 * (or since pt_backend_reset_peak). Thread-safe. */
size_t pt_backend_bytes_in_use(void);
size_t pt_backend_bytes_peak(void);
/* Sets every peak (the total's and each kind's) to what is in use now. */
void pt_backend_reset_peak(void);

/* The whole account at one instant: in use and peak in all, and per kind. A kind's peak is the
 * most of that kind held at once since start (or pt_backend_reset_peak), so the kinds' peaks
 * may add up to more than the total's peak when they peak at different times; peak_kinds is the
 * split of the total's peak (what was held of each kind at that moment). Thread-safe. */
typedef struct pt_mem_stats {
    size_t in_use, peak;
    size_t kind_in_use[PT_MEM_KINDS];
    size_t kind_peak[PT_MEM_KINDS];
    size_t peak_kinds[PT_MEM_KINDS];
} pt_mem_stats;
void pt_backend_mem_stats(pt_mem_stats *out);

#ifdef __cplusplus
}
#endif
#endif
