/* pipetrain/model_config.h — the shape of a GPT-2 family model, shared by models/ (which
 * builds it), partition/ (which prices it) and src/ (which saves it in checkpoints).
 *
 * A model is an ordered list of layers, numbered the same everywhere:
 *   layer 0              embedding (token wte (Vp,C) + position wpe (max_seq_len,C))
 *   layers 1..n_layer    transformer blocks (pre-LN, attention, GELU MLP 4x)
 *   layer n_layer + 1    head: final layernorm, LM head tied to wte, softmax cross-entropy
 * so pt_model_n_layers(cfg) == n_layer + 2. Stage boundaries in a plan cut this list.
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
} pt_model_config;

/* Total number of layers in the ordered list (embedding + blocks + head). */
static inline int pt_model_n_layers(const pt_model_config *c) { return c->n_layer + 2; }

#endif
