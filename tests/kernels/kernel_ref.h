/* tests/kernels/kernel_ref.h — naive double-precision reference forwards of the kernels, written
 * for clarity, not speed. Gradient checks differentiate these by central differences. */
#ifndef PT_TEST_KERNEL_REF_H
#define PT_TEST_KERNEL_REF_H

#include <stdint.h>

/* out (N,OC) = inp (N,C) @ w^T (w is (OC,C)) + b (NULL: none). */
void ref_matmul(double *out, const double *inp, const double *w, const double *b, int N, int C, int OC);
/* out (N,C) = (x - mean) / sqrt(var + 1e-5) * w + b per row. */
void ref_layernorm(double *out, const double *inp, const double *w, const double *b, int N, int C);
/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), (n). */
void ref_gelu(double *out, const double *inp, int n);
/* Causal attention: qkv (B,T,W), W = C + 2*NKV*hs (NH query heads, NKV key heads, NKV value
 * heads; hs = C/NH), query head h using kv head h / (NH/NKV); out (B,T,C), scale 1/sqrt(hs). */
void ref_attention(double *out, const double *qkv, int B, int T, int C, int NH, int NKV);
/* One output row (b,t) of ref_attention, head h only: out_row (C/NH). For sampled checks. */
void ref_attention_row(double *out_row, const double *qkv, int b, int t, int h, int T, int C, int NH, int NKV);
/* out (N,C) = (x / sqrt(mean(x^2) + eps)) * w per row. */
void ref_rmsnorm(double *out, const double *inp, const double *w, int N, int C, double eps);
/* Rotary embedding (rotate-half) of the q and k heads of qkv (B,T,W), W = (NH + 2*NKV)*hs, in
 * place: per head and i < hs/2, at position p = pos0 + t with c = cos[p][i], s = sin[p][i]
 * (tables (max_pos, hs/2)), (x[i], x[i+hs/2]) <- (x[i] c - x[i+hs/2] s, x[i+hs/2] c + x[i] s). */
void ref_rope(double *qkv, const double *cos, const double *sin, int B, int T, int NH, int NKV, int hs, int pos0);
/* out (N,H) = silu(gu[:, :H]) * gu[:, H:], silu(g) = g / (1 + exp(-g)); gu (N,2H). */
void ref_swiglu(double *out, const double *gu, int N, int H);
/* out (B,T,C) = wte[tokens] + wpe[t]. */
void ref_embedding(double *out, const int32_t *tokens, const double *wte, const double *wpe, int B, int T, int C);
/* out (B,T,C) = (v0 <= tok < v0 + V ? wte[tok - v0] : 0) + (wpe ? wpe[t] : 0); wte (V,C) holds rows
 * v0 .. v0+V-1 of the whole table, wpe may be NULL. */
void ref_embedding_range(double *out, const int32_t *tokens, const double *wte, const double *wpe, int v0, int V,
                         int B, int T, int C);
/* The row statistics of backend.h's xent_shard_forward (5 per row) over the global columns
 * [v0, v1) of logits (N,V) on their own: max, sum of exp(x - max), the target's logit (0 when
 * the target is not among them), the first maximum among the columns < n_valid and its column
 * (-INFINITY and -1 when there is none). */
void ref_xent_stats(double *stats, const double *logits, const int32_t *targets, int N, int V, int v0, int v1,
                    int n_valid);
/* losses (N): -log softmax(logits)[target], 0 where target < 0. */
void ref_crossentropy(double *losses, const double *logits, const int32_t *targets, int N, int V);

#endif
