/* pipetrain/model_config.h — the shape of a GPT-2 family model, shared by models/ (which
 * builds it), partition/ (which prices it) and src/ (which saves it in checkpoints).
 *
 * A model is an ordered list of layers, numbered the same everywhere:
 *   layer 0              embedding (token wte (Vp,C) + position wpe (max_seq_len,C))
 *   layers 1..n_layer    transformer blocks (pre-LN, attention, GELU MLP 4x)
 *   layer n_layer + 1    head: final layernorm, LM head tied to wte, softmax cross-entropy
 * so pt_model_n_layers(cfg) == n_layer + 2. Stage boundaries in a plan cut this list.
 *
 * With head_split K > 1 the head is K layers instead, n_layer + 1 .. n_layer + K, "vocabulary
 * shards": shard k multiplies by wte's rows [v0, v1) (pt_model_head_shard_rows) and combines its
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

typedef struct pt_model_config {
    char name[64];    /* preset name, or the config file's "name" (may be "") */
    int n_layer;      /* transformer blocks */
    int n_head;       /* attention heads; divides n_embd */
    int n_embd;       /* width C */
    int vocab_size;   /* V: token ids are in [0, V) */
    int vocab_padded; /* Vp >= V: rows of wte (padding rows are never targets); == V unless set */
    int max_seq_len;  /* context length (rows of wpe) */
    int head_split;   /* K: the LM head as K vocabulary-shard layers; 0 and 1 both mean one layer */
} pt_model_config;

/* Layers the LM head takes (head_split, at least 1). */
static inline int pt_model_head_layers(const pt_model_config *c) { return c->head_split > 1 ? c->head_split : 1; }

/* Total number of layers in the ordered list (embedding + blocks + head layers). */
static inline int pt_model_n_layers(const pt_model_config *c) { return c->n_layer + 1 + pt_model_head_layers(c); }

/* Rows [*v0, *v1) of wte (columns of the logits) that head layer n_layer + 1 + k multiplies by:
 * K near-equal parts of vocab_padded, cut at multiples of 64 when vocab_padded is one. */
void pt_model_head_shard_rows(const pt_model_config *c, int k, int *v0, int *v1);

/* Floats per token at boundary b, the input of layer b (1 <= b < pt_model_n_layers): n_embd,
 * or n_embd + PT_XENT_STATS between two head shards. Activations and gradients crossing the
 * boundary are (B, T) times this many floats. */
int pt_model_boundary_width(const pt_model_config *c, int b);

#endif
