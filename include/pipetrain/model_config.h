/* pipetrain/model_config.h — the shape of a model, shared by models/ (which builds it: presets,
 * config files, validation in model.h), partition/ (which prices it), kernels/ (the statistics
 * between head shards), src/data (which fits it to a data set) and src/ckpt (which saves it).
 * Plain data and arithmetic, header-only: it belongs to the ground floor (core/, see
 * docs/architecture.md), so every floor may read it. Two architectures:
 *
 *   gpt2   learned positions, pre-LayerNorm blocks (with biases), multi-head attention, GELU MLP 4x,
 *          LM head tied to the token embedding.
 *   llama  no position table (rotary embedding inside attention), pre-RMSNorm blocks without
 *          biases, grouped-query attention (n_kv_head key/value heads), SwiGLU MLP of width
 *          intermediate_size, LM head tied to the embedding or its own (tie_word_embeddings).
 *          Llama 2/3, Qwen2 without attention biases, Mistral without sliding windows, OLMo.
 *
 * A model is an ordered list of layers, numbered the same everywhere:
 *   layer 0              embedding (token wte (Vp,C), and for gpt2 position wpe (max_seq_len,C))
 *   layers 1..n_layer    transformer blocks
 *   layer n_layer + 1    head: final norm, LM head (wte, or lm_head when untied), softmax cross-entropy
 * so pt_model_n_layers(cfg) == n_layer + 2. Stage boundaries in a plan cut this list.
 *
 * With head_split K > 1 the head is K layers instead, n_layer + 1 .. n_layer + K, "vocabulary
 * shards": shard k multiplies by the LM head's rows [v0, v1) (wte, or lm_head untied) (pt_model_head_shard_rows) and combines its
 * part of the softmax with the shards before it through per-token running statistics (max, sum,
 * target logit, argmax: backend.h, xent_shard_*). Shard 0 also holds the final layernorm, the
 * last shard the loss. The parameters are the same as with K = 1 (a checkpoint loads either
 * way); the loss differs from K = 1 only by rounding. A boundary inside the head carries the
 * normalised hidden state plus PT_XENT_STATS floats per token (pt_model_boundary_width), so a
 * plan can cut the LM head between stages: the way to balance a pipeline whose head is most of
 * the work (a small model with a large vocabulary).
 *
 *     pt_model_config cfg;
 *     PT_CHECK(pt_model_config_load("gpt2-tiny", &cfg));   // preset name or JSON file
 */
#ifndef PIPETRAIN_MODEL_CONFIG_H
#define PIPETRAIN_MODEL_CONFIG_H

#include <stdint.h>

#include "pipetrain/status.h"

/* Floats of running row statistics per token passed between two vocabulary shards of the head
 * (max, sum, target logit, argmax logit and its column: their layout is the xent_shard_* kernels'
 * contract in backend.h). A boundary inside the head is n_embd + PT_XENT_STATS floats wide. */
#define PT_XENT_STATS 5

/* The numeric precision of training (train --precision; docs/cuda.md "Precision policy").
 *  PT_PRECISION_FP32: every tensor fp32.
 *  PT_PRECISION_BF16: bf16 mixed precision. The weights the layers compute with are a bf16 copy of
 *    the fp32 master weights (which the optimizer updates, with fp32 AdamW moments); every
 *    activation and activation gradient a layer writes is rounded to bf16 (backend round_bf16);
 *    the parameter gradients accumulate in fp32, and every reduction (norm statistics, softmax,
 *    cross-entropy, attention's log-sum-exp, tensor-parallel partial sums, gradient all-reduces)
 *    adds in fp32 and is rounded once, where its result is stored. Stage-to-stage messages travel
 *    as bf16 (half the bytes) on links that pack them (pt_link_opts.bf16_messages). */
typedef enum { PT_PRECISION_FP32 = 0, PT_PRECISION_BF16 = 1 } pt_precision;

typedef enum pt_model_arch {
    PT_ARCH_GPT2 = 0, /* the default: a config without "architecture" is GPT-2 */
    PT_ARCH_LLAMA = 1,
} pt_model_arch;

typedef struct pt_model_config {
    char name[64];    /* preset name, or the config file's "name" (may be "") */
    pt_model_arch arch;
    int n_layer;      /* transformer blocks */
    int n_head;       /* attention heads; divides n_embd */
    int n_embd;       /* width C */
    int vocab_size;   /* V: token ids are in [0, V) */
    int vocab_padded; /* Vp >= V: rows of wte (padding rows are never targets); == V unless set */
    int max_seq_len;  /* context length (rows of wpe) */
    int head_split;   /* K: the LM head as K vocabulary-shard layers; 0 and 1 both mean one layer */
    int head_chunk;   /* an unsplit head (head_split 1, no tensor parallelism) computes its logits, loss and
                       * loss gradient this many token rows at a time, so no (B*T, Vp) logits are kept per
                       * micro-batch (model.h, pt_model_forward_train); 0: all rows at once. How the model
                       * runs, not what it is: never written to config files or checkpoints (train's
                       * --head-chunk sets it each run; pt_model_head_chunk_auto) */
    /* ---- llama only (zero for gpt2) ---- */
    int n_kv_head;           /* key/value heads, dividing n_head; 0 means n_head (multi-head) */
    int intermediate_size;   /* the SwiGLU MLP's width H */
    float rms_norm_eps;      /* RMSNorm epsilon (1e-5 Llama 3, 1e-6 Qwen2) */
    double rope_theta;       /* rotary base (500000 Llama 3, 10000 Llama 2) */
    int tie_word_embeddings; /* 1: the LM head is wte (Llama 3.2 1B/3B); 0: its own lm_head.weight */
    /* Llama 3.1 RoPE scaling ("rope_type": "llama3"); factor 0 means none */
    double rope_scaling_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
} pt_model_config;

/* Key/value heads (n_kv_head, or n_head when 0 or gpt2). */
static inline int pt_model_kv_heads(const pt_model_config *c)
{
    return c->arch == PT_ARCH_LLAMA && c->n_kv_head > 0 ? c->n_kv_head : c->n_head;
}

/* 1 when the LM head multiplies by wte (always for gpt2), 0 when it has its own lm_head.weight. */
static inline int pt_model_tied(const pt_model_config *c) { return c->arch != PT_ARCH_LLAMA || c->tie_word_embeddings; }

/* The architecture's name in configs and checkpoints: "gpt2" or "llama". */
static inline const char *pt_model_arch_name(pt_model_arch a) { return a == PT_ARCH_LLAMA ? "llama" : "gpt2"; }

/* Layers the LM head takes (head_split, at least 1). */
static inline int pt_model_head_layers(const pt_model_config *c) { return c->head_split > 1 ? c->head_split : 1; }

/* The token rows a chunked head (head_chunk) runs at a time in micro-batches of n_tokens: at most
 * n_tokens; 0 when the head is whole (head_chunk 0, or split into head_split > 1 shards). */
static inline int pt_model_head_chunk_rows(const pt_model_config *c, int n_tokens)
{
    if (c->head_chunk <= 0 || pt_model_head_layers(c) > 1)
        return 0;
    return c->head_chunk < n_tokens ? c->head_chunk : n_tokens;
}

/* Total number of layers in the ordered list (embedding + blocks + head layers). */
static inline int pt_model_n_layers(const pt_model_config *c) { return c->n_layer + 1 + pt_model_head_layers(c); }

/* Head shards are cut at multiples of 64 rows (friendly GEMM shapes) when the padded vocabulary
 * is a multiple of 64 with at least 64 rows per shard, else at any row: the rows of one unit. */
static inline int pt_model_head_shard_unit(const pt_model_config *c)
{
    return c->vocab_padded % 64 == 0 && c->vocab_padded / 64 >= pt_model_head_layers(c) ? 64 : 1;
}

/* Rows [*v0, *v1) of wte (columns of the logits) that head layer n_layer + 1 + k multiplies by:
 * K near-equal parts of vocab_padded, cut at multiples of 64 when vocab_padded is one. */
static inline void pt_model_head_shard_rows(const pt_model_config *c, int k, int *v0, int *v1)
{
    const int64_t K = pt_model_head_layers(c), unit = pt_model_head_shard_unit(c), units = c->vocab_padded / unit;
    *v0 = (int)(k * units / K * unit);
    *v1 = k + 1 >= K ? c->vocab_padded : (int)((k + 1) * units / K * unit);
}

/* Floats per token at boundary b, the input of layer b (1 <= b < pt_model_n_layers): n_embd,
 * or n_embd + PT_XENT_STATS between two head shards. Activations and gradients crossing the
 * boundary are (B, T) times this many floats. */
static inline int pt_model_boundary_width(const pt_model_config *c, int b)
{
    return b >= c->n_layer + 2 ? c->n_embd + PT_XENT_STATS : c->n_embd;
}

#endif
