/* Model layers [first, last] on one backend (GPT-2 or Llama, model_config.h): parameters, activation slots, forward, split and
 * fused backward. Kernels are reached only through the pt_backend table; tensor memory is touched
 * from the host only through memcpy_h2d/d2h (initialisation, loading, losses).
 *
 * Slot layout. Boundary b (1 <= b <= n_layer+1) is the residual stream entering layer b (the
 * output of layer b-1); each slot keeps x[b] for the boundaries the chunk touches, and dx[b], its
 * gradient. A block keeps its internal activations (ln1, qkv, attention, res2 = x + attn, ln2,
 * fc, gelu) and, between backward_input and backward_weight, the gradients at the outputs of its
 * weight-bearing ops (dfch, dln2, dres2, dqkv, dln1; the gradient at its output is dx[b+1]); the
 * head keeps dlnf likewise.
 *
 * What is per slot and what is shared by the chunk's slots:
 *  - recompute: the block internals live in one area shared by all blocks and slots and are
 *    recomputed from x[b] before each backward pass over the block.
 *  - the bf16 stash (bf16 without recompute, on a backend with pack_bf16 and unpack_bf16): a
 *    block computes its internals in that shared area, and the slot keeps the ones bf16 rounds
 *    (ln1, qkv, atty, res2, ln2, fch, fch_gelu: all but the norm statistics and attention's saved
 *    log-sum-exp, which stay fp32 in the slot) packed to 2 bytes an element; each backward pass
 *    widens the ones it reads back into the area. Every packed value is already a bf16, so the
 *    bits are those of keeping the floats; the slot holds half the bytes. With split backward
 *    (not fused_only) the gradients a block keeps from backward_input to backward_weight are
 *    stashed the same way (dfch, dres2, dqkv, the rounded ones; dln2 and dln1 are matrix products'
 *    sums, kept fp32): a separate backward_input packs them, a separate backward_weight widens
 *    them, and a fused backward uses the area alone.
 *  - fused_only: every gradient that only lives while one backward call runs is shared: the
 *    block gradients and dlnf (one block / the head at a time), and the internal boundaries'
 *    dx (b in first+1..last), which alternate between two buffers by the parity of b (block j
 *    reads dx[b+1] and writes dx[b]). The external gradients reuse their activation's buffer:
 *    the chunk's output is dead once the runtime has sent it, before the gradient arrives in its
 *    place (pt_model_slot_doutput == pt_model_slot_output); the chunk's input is dead after the
 *    fused backward, whose last step copies the input's gradient over it (from the (N,C)
 *    scratch, as backward_weight still reads the input). A head-only chunk, whose layernorm
 *    backward reads x while writing dx, keeps a separate input gradient.
 * With both, a slot holds x at each boundary (B*T*C floats a block, plus the chunk's output), the
 * token ids / targets, and the head's layernorm output, statistics, probabilities and losses. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/model.h"

/* Sub-buffers inside an arena start on 256-byte boundaries (the backend's alignment). */
#define MODEL_ALIGN 256

/* Logit rows recomputed per call in pt_model_slot_logits. */
#define MODEL_LOGIT_ROWS 16

enum {
    BP_LN1W,
    BP_LN1B,
    BP_QKVW,
    BP_QKVB,
    BP_PROJW,
    BP_PROJB,
    BP_LN2W,
    BP_LN2B,
    BP_FCW,
    BP_FCB,
    BP_MPROJW,
    BP_MPROJB,
    BP_COUNT
};

/* A llama block's tensors: RMSNorm weights (no biases), the fused q/k/v projection (rows: the
 * NH query heads, then the NKV key heads, then the NKV value heads), the output projection, the
 * fused gate/up projection (rows: gate, then up) and the down projection. */
enum { LP_LN1W, LP_QKVW, LP_PROJW, LP_LN2W, LP_GUW, LP_DOWNW, LP_COUNT };

static const char *const llama_param_suffix[LP_COUNT] = {
    [LP_LN1W] = "ln1.weight",      [LP_QKVW] = "attn.qkv.weight",   [LP_PROJW] = "attn.proj.weight",
    [LP_LN2W] = "ln2.weight",      [LP_GUW] = "mlp.gate_up.weight", [LP_DOWNW] = "mlp.down.weight",
};

static const char *const block_param_suffix[BP_COUNT] = {
    [BP_LN1W] = "ln1.weight",       [BP_LN1B] = "ln1.bias",       [BP_QKVW] = "attn.qkv.weight",
    [BP_QKVB] = "attn.qkv.bias",    [BP_PROJW] = "attn.proj.weight", [BP_PROJB] = "attn.proj.bias",
    [BP_LN2W] = "ln2.weight",       [BP_LN2B] = "ln2.bias",       [BP_FCW] = "mlp.fc.weight",
    [BP_FCB] = "mlp.fc.bias",       [BP_MPROJW] = "mlp.proj.weight", [BP_MPROJB] = "mlp.proj.bias",
};
_Static_assert(sizeof(block_param_suffix) / sizeof(block_param_suffix[0]) == BP_COUNT, "block parameter table");

/* A block's activations in one slot (or the shared recompute area). Llama: the norms keep no mean
 * (NULL), fch is the gate/up output (N,2H) and fch_gelu the SwiGLU output (N,H). */
typedef struct block_act {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att_saved, *res2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu;
} block_act;

/* The internals bf16 rounds (what the bf16 stash packs), and the backward passes that read each:
 * backward_input qkv, atty, res2 and fch; backward_weight ln1, atty, res2, ln2 and fch_gelu. */
enum { BA_LN1, BA_QKV, BA_ATTY, BA_RES2, BA_LN2, BA_FCH, BA_FCH_GELU, BA_ROUNDED };
static const size_t act_rounded_off[BA_ROUNDED] = {
    [BA_LN1] = offsetof(block_act, ln1),   [BA_QKV] = offsetof(block_act, qkv), [BA_ATTY] = offsetof(block_act, atty),
    [BA_RES2] = offsetof(block_act, res2), [BA_LN2] = offsetof(block_act, ln2), [BA_FCH] = offsetof(block_act, fch),
    [BA_FCH_GELU] = offsetof(block_act, fch_gelu),
};
#define BA_BIT(k) (1u << (k))
#define BA_READ_INPUT (BA_BIT(BA_QKV) | BA_BIT(BA_ATTY) | BA_BIT(BA_RES2) | BA_BIT(BA_FCH))
#define BA_READ_WEIGHT (BA_BIT(BA_LN1) | BA_BIT(BA_ATTY) | BA_BIT(BA_RES2) | BA_BIT(BA_LN2) | BA_BIT(BA_FCH_GELU))

/* The float pointer at byte offset `off` (a table's entry here) of a block_act or block_grad. */
static float **field_at(void *base, size_t off) { return (float **)(void *)((char *)base + off); }
static float *field_of(const void *base, size_t off)
{
    return *(float *const *)(const void *)((const char *)base + off);
}

/* Gradients a block keeps between backward_input and backward_weight. */
typedef struct block_grad {
    float *dfch, *dln2, *dres2, *dqkv, *dln1;
    float *dyf; /* tensor parallelism with sp: the block's output gradient gathered over all N rows */
} block_grad;

/* Those of them bf16 rounds (what the bf16 stash packs); backward_weight reads all three. */
enum { BG_DFCH, BG_DRES2, BG_DQKV, BG_ROUNDED };
static const size_t grad_rounded_off[BG_ROUNDED] = {
    [BG_DFCH] = offsetof(block_grad, dfch), [BG_DRES2] = offsetof(block_grad, dres2),
    [BG_DQKV] = offsetof(block_grad, dqkv),
};

/* The bf16 stash's two sets of rounded tensors, each made in a shared area and kept packed per
 * slot: a block's internals (SET_ACT: block_act, BA_*, from its forward to its backward) and a
 * split backward's kept gradients (SET_GRAD: block_grad, BG_*, from backward_input to
 * backward_weight). */
enum { SET_ACT, SET_GRAD, STASH_SETS };
static const size_t *const set_off[STASH_SETS] = { act_rounded_off, grad_rounded_off };
static const int set_n[STASH_SETS] = { BA_ROUNDED, BG_ROUNDED };

/* What the model knows of a set's shared area. */
typedef struct stash_area {
    int slot, block; /* the area holds this slot's block's tensors `have` (bits k; slot -1: none) */
    unsigned have;
    uint16_t **pack; /* while the pass that makes them runs and they are to be stashed: the slot's
                      * packed tensors of that block, which a rounding pass that ends a tensor
                      * fills at once (RBP: round_pack_bf16) */
    unsigned packed; /* the bits of those filled */
} stash_area;

typedef enum { SLOT_FREE = 0, SLOT_FORWARD, SLOT_INPUT_GRAD } slot_state;

typedef struct model_slot {
    void *mem;
    int32_t *tokens, *targets;
    float **x, **dx;  /* [boundary - first_layer], NULL where the boundary has no buffer */
    block_act *act;   /* [local block]; with recompute all point at the shared area, with the bf16
                       * stash their rounded internals do */
    uint16_t **stash[STASH_SETS]; /* the bf16 stash: [local block * set_n] each set's packed tensors */
    block_grad *grad; /* [local block] */
    float *lnf, *lnf_mean, *lnf_rstd, *logits, *losses, *dlnf;
    /* head_split > 1: per local shard its exps (then dlogits) and row maxima; with the loss, the
     * final statistics and log-sum-exp */
    float **sh_exps, **sh_rowmax;
    float *fstats, *lse;
    /* a chunked head (m->hc): 1 once the loss gradient (dlnf and the head's dW) is made, which
     * pt_model_forward_train does with head_scale as the loss scale */
    int head_grad;
    float head_scale;
    slot_state state;
} model_slot;

struct pt_model {
    pt_model_config cfg;
    pt_model_opts opts;
    const pt_backend *be;
    pt_stream *stream;
    int first, last;
    int has_emb, has_head;
    int llama;                 /* cfg.arch == PT_ARCH_LLAMA */
    int tied;                  /* the LM head multiplies by wte (pt_model_tied) */
    int W, FW, AW;             /* per token: qkv width, MLP up-projection width, MLP activation width
                                * (this rank's part under tensor parallelism) */
    /* tensor parallelism (pt_model_opts.tp): group size and rank (tpn 1: none), sp; local query and
     * kv heads, the local attention width NHl * hs, the local vocabulary rows [v0, v0 + Vl), the
     * rows R of the norm / residual activations and boundaries (N, or N / tpn with sp) */
    int tpn, tpr, sp, NHl, NKVl, Cl, Vl, v0, R;
    /* bf16 mixed precision (opts.precision): wcomp, the bf16 copy of params the layers compute with
     * (NULL under fp32: they use params), remade when wstale */
    int bf16, wstale;
    float *wcomp;
    int xs;                    /* the loss comes through row statistics (head_split > 1, or tpn > 1) */
    int K;                     /* head layers (cfg head_split, at least 1) */
    int hc;                    /* cfg head_chunk rows of a chunked head (at most N), 0: the whole head at once */
    int has_lnf;               /* holds the first head layer (final layernorm) */
    int sh0, n_sh;             /* local head layers: shards sh0 .. sh0 + n_sh - 1 */
    int first_block, n_blocks; /* global layer index of the first block, local block count */
    int n_tensors;
    pt_param *tensors;
    size_t n_params;
    int t_wte, t_wpe;    /* embedding tensors (-1 when absent) */
    int *t_block;        /* [n_blocks] index of the block's first tensor */
    int t_lnfw, t_lnfb;  /* head tensors */
    int t_head_wte;      /* the wte the head multiplies with: t_wte, or the head's own copy */
    float *params, *grads;
    float *twin;         /* head's wte gradient: own buffer (with embedding) or a view into grads */
    int own_twin;
    float *scratch_att;  /* attention scratch */
    float *scratch_nc;   /* (N,C): gradient at the attention output */
    float *scratch_nh;   /* llama (N,H): gradient at the SwiGLU output */
    float *rope_cos, *rope_sin; /* llama (seq_len, hs/2): the rotary tables of positions 0..T-1 */
    float *scratch_logits; /* (MODEL_LOGIT_ROWS,Vp) for pt_model_slot_logits */
    float *scratch_red;  /* tensor parallelism with sp: (N,C) partial sums before their reduce-scatter */
    float *scratch_full; /* tensor parallelism with sp: (N,C) all-gathered rows */
    float *tp_parts;     /* tensor-parallel head: (tpn, N, PT_XENT_STATS) every rank's row statistics */
    /* the block internals shared by all blocks and slots: recomputed (recompute) or widened from
     * the slot's bf16 stash (stash[SET_ACT]: its rounded internals only) */
    void *shared_act_mem;
    block_act shared_act;
    /* the bf16 stash per set (1: on; SET_GRAD's area is grad_shared's rounded gradients, in
     * gstash_mem), and what each area holds */
    int stash[STASH_SETS];
    stash_area area[STASH_SETS];
    void *gstash_mem;
    void *bwd_shared_mem; /* fused_only: block gradients, dlnf and internal dx shared by the slots */
    block_grad grad_shared;
    float *dlnf_shared;
    float *dx_shared[2];  /* internal boundary b uses dx_shared[b & 1] */
    size_t slot_bytes;
    model_slot *slots;
    float *host_losses;  /* (N) host buffers for pt_model_slot_loss */
    int32_t *host_targets;
    float *host_pred;    /* pt_model_slot_predict: MODEL_LOGIT_ROWS x Vp (one head layer) or N x PT_XENT_STATS */
    pt_model_grad_hook grad_hook; /* pt_model_set_grad_hook: told each layer's finished weight-gradient ranges */
    void *grad_hook_ctx;
};

/* ---- arena carving: run once with base NULL to measure, then on the allocation ---- */

typedef struct carve {
    char *base;
    size_t off;
} carve;

static void *carve_bytes(carve *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + MODEL_ALIGN - 1) / MODEL_ALIGN * MODEL_ALIGN;
    return p;
}

static float *carve_f(carve *c, size_t n) { return carve_bytes(c, n * sizeof(float)); }

/* Elements of rounded internal k (BA_*) of one block. */
static size_t act_rounded_numel(const pt_model *m, int k)
{
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len, R = (size_t)m->R, C = (size_t)m->cfg.n_embd;
    switch (k) {
    case BA_QKV: return N * m->W;
    case BA_ATTY: return N * m->Cl;
    case BA_FCH: return N * m->FW;
    case BA_FCH_GELU: return N * m->AW;
    default: return R * C; /* ln1, res2, ln2 (R: the norm / residual rows, N / T with sp) */
    }
}

/* A block's activations, in one order: the rounded internals (ACT_ROUNDED), the norm statistics
 * and attention's saved log-sum-exp (ACT_STATS), or both; a part not asked for is left NULL. */
enum { ACT_ROUNDED = 1, ACT_STATS = 2 };
static void carve_block_act(carve *c, const pt_model *m, block_act *a, int parts)
{
    const int B = m->opts.micro_batch, T = m->opts.seq_len;
    const size_t R = (size_t)m->R;
    const int rd = parts & ACT_ROUNDED, st = parts & ACT_STATS;
    *a = (block_act){ 0 };
#define CARVE_R(k) (rd ? carve_f(c, act_rounded_numel(m, k)) : NULL)
#define CARVE_S(n) (st ? carve_f(c, n) : NULL)
    a->ln1 = CARVE_R(BA_LN1);
    a->ln1_mean = m->llama ? NULL : CARVE_S(R);
    a->ln1_rstd = CARVE_S(R);
    a->qkv = CARVE_R(BA_QKV);
    a->atty = CARVE_R(BA_ATTY);
    a->att_saved = CARVE_S(m->be->attention_saved_size(B, T, m->Cl, m->NHl, m->NKVl));
    a->res2 = CARVE_R(BA_RES2);
    a->ln2 = CARVE_R(BA_LN2);
    a->ln2_mean = m->llama ? NULL : CARVE_S(R);
    a->ln2_rstd = CARVE_S(R);
    a->fch = CARVE_R(BA_FCH);
    a->fch_gelu = CARVE_R(BA_FCH_GELU);
#undef CARVE_R
#undef CARVE_S
}

/* Elements of rounded kept gradient k (BG_*) of one block. */
static size_t grad_rounded_numel(const pt_model *m, int k)
{
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len;
    return N * (size_t)(k == BG_DFCH ? m->FW : k == BG_DQKV ? m->W : m->cfg.n_embd);
}

/* A block's kept gradients, in one order: the rounded ones (GRAD_ROUNDED), the others
 * (GRAD_SUMS), or both; a part not asked for is left NULL. */
enum { GRAD_ROUNDED = 1, GRAD_SUMS = 2 };
static void carve_block_grad(carve *c, const pt_model *m, block_grad *g, int parts)
{
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len, C = (size_t)m->cfg.n_embd;
    const int rd = parts & GRAD_ROUNDED, su = parts & GRAD_SUMS;
    g->dfch = rd ? carve_f(c, grad_rounded_numel(m, BG_DFCH)) : NULL;
    g->dln2 = su ? carve_f(c, N * C) : NULL; /* with tensor parallelism: the partial sums, then (sp) their segment */
    g->dres2 = rd ? carve_f(c, grad_rounded_numel(m, BG_DRES2)) : NULL; /* with sp: this rank's rows at its
                                                                         * segment, then all N gathered */
    g->dqkv = rd ? carve_f(c, grad_rounded_numel(m, BG_DQKV)) : NULL;
    g->dln1 = su ? carve_f(c, N * C) : NULL;
    g->dyf = m->sp && su ? carve_f(c, N * C) : NULL;
}

/* Boundary b lies strictly inside the chunk: its gradient is produced and consumed within one
 * backward call (first+1 <= b <= last; the chunk's own input and output are external). */
static int boundary_internal(const pt_model *m, int b) { return b > m->first && b <= m->last; }

/* The area fused_only shares among the slots: block gradients (with blocks), dlnf (with the head)
 * and one (N,C) buffer per parity of the internal boundaries. */
static void carve_bwd_shared(carve *c, pt_model *m)
{
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len, C = (size_t)m->cfg.n_embd;
    if (m->n_blocks > 0)
        carve_block_grad(c, m, &m->grad_shared, GRAD_ROUNDED | GRAD_SUMS);
    m->dlnf_shared = m->has_lnf && !m->hc ? carve_f(c, N * C) : NULL;
    for (int p = 0; p < 2; p++) {
        int used = 0;
        for (int b = m->first + 1; b <= m->last && b <= m->cfg.n_layer + 1 && !used; b++)
            used = (b & 1) == p;
        m->dx_shared[p] = used ? carve_f(c, (size_t)m->R * C) : NULL;
    }
}

/* Elements of tensor k of stash set `set` of one block. */
static size_t set_numel(const pt_model *m, int set, int k)
{
    return set == SET_ACT ? act_rounded_numel(m, k) : grad_rounded_numel(m, k);
}

/* Set `set` of slot s's block j under the stash: its tensors (fields of `dst`, the block's
 * block_act or block_grad) point into the shared area (`area`'s fields), and the slot keeps
 * them packed. */
static void carve_stash(carve *c, const pt_model *m, model_slot *s, int set, int j, void *dst, const void *area)
{
    for (int k = 0; k < set_n[set]; k++) {
        *field_at(dst, set_off[set][k]) = field_of(area, set_off[set][k]);
        s->stash[set][j * set_n[set] + k] = carve_bytes(c, set_numel(m, set, k) * sizeof(uint16_t));
    }
}

/* Lays out one slot; `s` receives pointers (NULL when measuring). */
static void carve_slot(carve *c, const pt_model *m, model_slot *s)
{
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len, C = (size_t)m->cfg.n_embd, R = (size_t)m->R;
    const int L = m->cfg.n_layer;
    s->tokens = m->has_emb ? carve_bytes(c, N * sizeof(int32_t)) : NULL;
    s->targets = m->n_sh > 0 ? carve_bytes(c, N * sizeof(int32_t)) : NULL;
    for (int b = m->first; b <= m->last + 1; b++) {
        int has = b >= 1 && b <= L + m->K;
        size_t w = has ? (size_t)pt_model_boundary_width(&m->cfg, b) : 0;
        s->x[b - m->first] = has ? carve_f(c, R * w) : NULL;
        float **dx = &s->dx[b - m->first];
        if (!has)
            *dx = NULL;
        else if (b >= L + 2)
            *dx = carve_f(c, N * w); /* between head shards: its own, zeroed at create (model_create) */
        else if (!m->opts.fused_only)
            *dx = carve_f(c, R * C);
        else if (boundary_internal(m, b))
            *dx = m->dx_shared[b & 1];
        else if (b == m->last + 1 || m->n_blocks > 0)
            *dx = s->x[b - m->first]; /* output: dead once sent; input: dead after the fused backward */
        else
            *dx = carve_f(c, R * C); /* a head-only chunk's input: its layernorm reads x while writing dx */
    }
    for (int j = 0; j < m->n_blocks; j++) {
        if (m->opts.recompute) {
            s->act[j] = m->shared_act;
        } else if (m->stash[SET_ACT]) { /* the statistics here, the rounded internals packed */
            carve_block_act(c, m, &s->act[j], ACT_STATS);
            carve_stash(c, m, s, SET_ACT, j, &s->act[j], &m->shared_act);
        } else {
            carve_block_act(c, m, &s->act[j], ACT_ROUNDED | ACT_STATS);
        }
        if (m->opts.fused_only) {
            s->grad[j] = m->grad_shared;
        } else if (m->stash[SET_GRAD]) { /* dln2, dln1 (dyf) here, the rounded ones packed */
            carve_block_grad(c, m, &s->grad[j], GRAD_SUMS);
            carve_stash(c, m, s, SET_GRAD, j, &s->grad[j], &m->grad_shared);
        } else {
            carve_block_grad(c, m, &s->grad[j], GRAD_ROUNDED | GRAD_SUMS);
        }
    }
    s->lnf = s->lnf_mean = s->lnf_rstd = s->logits = s->losses = s->dlnf = s->fstats = s->lse = NULL;
    if (m->has_lnf) { /* lnf: all N rows (with sp this rank's at its segment, then gathered) */
        s->lnf = carve_f(c, N * C);
        s->lnf_mean = m->llama ? NULL : carve_f(c, R);
        s->lnf_rstd = carve_f(c, R);
        /* a chunked head makes dlnf in the forward: it lives until the slot's backward */
        s->dlnf = m->opts.fused_only && !m->hc ? m->dlnf_shared : carve_f(c, N * C);
    }
    if (m->has_head)
        s->losses = carve_f(c, N);
    if (m->tpn > 1) { /* the vocabulary-parallel head: this rank's logits, as one shard's */
        if (m->has_head) {
            s->sh_exps[0] = carve_f(c, N * (size_t)m->Vl);
            s->sh_rowmax[0] = carve_f(c, N);
            s->fstats = carve_f(c, N * PT_XENT_STATS);
            s->lse = carve_f(c, N);
        }
        return;
    }
    if (m->K == 1) {
        if (m->has_head && !m->hc) /* chunked: the logits of one chunk at a time, in scratch_logits */
            s->logits = carve_f(c, N * (size_t)m->cfg.vocab_padded);
        return;
    }
    for (int j = 0; j < m->n_sh; j++) {
        int v0, v1;
        pt_model_head_shard_rows(&m->cfg, m->sh0 + j, &v0, &v1);
        s->sh_exps[j] = carve_f(c, N * (size_t)(v1 - v0));
        s->sh_rowmax[j] = carve_f(c, N);
    }
    if (m->has_head) {
        s->fstats = carve_f(c, N * PT_XENT_STATS);
        s->lse = carve_f(c, N);
    }
}

/* ---- parameters ---- */

/* How a tensor is split over the tensor-parallel group: along dim (-1: whole, replicated), as
 * segments [lo[i], hi[i]) of the whole tensor's dimension; local rows [rep_row_lo, rep_row_hi)
 * also held by rep_n ranks from group rank rep_first (rep_n <= 1: none). */
typedef struct tp_split {
    int dim, nseg, lo[3], hi[3];
    int rep_row_lo, rep_row_hi, rep_n, rep_first, rep_partial;
} tp_split;

/* Adds a tensor of whole shape (d0, d1) (d1 unused when ndim 1), of which this rank holds `sp`
 * (NULL: the whole tensor, replicated over the group: counted and saved by group rank 0; partial
 * gradients when `partial`, the norms under sp). */
static pt_status model_add_split(pt_model *m, const char *name, int layer, int ndim, int d0, int d1,
                                 const tp_split *sp, int partial)
{
    pt_param *p = &m->tensors[m->n_tensors];
    char *copy = strdup(name);
    if (!copy)
        return pt_fail(PT_ENOMEM, "out of memory naming tensor %s", name);
    p->name = copy;
    p->ndim = ndim;
    p->gshape[0] = d0;
    p->gshape[1] = ndim > 1 ? d1 : 0;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 0;
    p->tp_dim = -1;
    p->tp_nseg = 0;
    int rows_lo = 0, rows_hi = d0, rep_n = m->tpn, rep_first = 0, rep_partial = partial;
    if (sp && sp->dim >= 0) {
        int len = 0;
        for (int i = 0; i < sp->nseg; i++) {
            p->tp_lo[i] = sp->lo[i];
            p->tp_hi[i] = sp->hi[i];
            len += sp->hi[i] - sp->lo[i];
        }
        p->tp_dim = sp->dim;
        p->tp_nseg = sp->nseg;
        p->shape[sp->dim] = len;
        rows_lo = sp->rep_row_lo;
        rows_hi = sp->rep_row_hi;
        rep_n = sp->rep_n;
        rep_first = sp->rep_first;
        rep_partial = sp->rep_partial;
    }
    const size_t row = ndim > 1 ? (size_t)p->shape[1] : 1;
    p->numel = (size_t)p->shape[0] * row;
    p->rep_n = rep_n > 1 ? rep_n : 1;
    p->rep_first = p->rep_n > 1 ? rep_first : m->tpr;
    p->rep_lo = p->rep_n > 1 ? (size_t)rows_lo * row : 0;
    p->rep_hi = p->rep_n > 1 ? (size_t)rows_hi * row : 0;
    p->rep_partial = p->rep_n > 1 && rep_partial;
    p->offset = m->n_params;
    p->layer = layer;
    p->decay = ndim >= 2;
    m->n_params += p->numel;
    m->n_tensors++;
    return PT_OK;
}

static pt_status model_add_tensor(pt_model *m, const char *name, int layer, int ndim, int d0, int d1)
{
    return model_add_split(m, name, layer, ndim, d0, d1, NULL, 0);
}

/* Appends this rank's part of a range [base, base + len) split evenly over the group. */
static void split_add_even(const pt_model *m, tp_split *s, int base, int len)
{
    s->lo[s->nseg] = base + m->tpr * (len / m->tpn);
    s->hi[s->nseg] = base + (m->tpr + 1) * (len / m->tpn);
    s->nseg++;
}

/* Rows (dim 0) or columns (dim 1) of length len, split evenly (whole without tensor parallelism). */
static tp_split split_even(const pt_model *m, int dim, int len)
{
    tp_split s = { .dim = m->tpn > 1 ? dim : -1 };
    split_add_even(m, &s, 0, len);
    return s;
}

/* The fused q/k/v rows: this rank's query heads, then its key heads, then its value heads (kv
 * heads split, or the one kv head of its group replicated when n_kv_head < T). */
static tp_split split_qkv(const pt_model *m)
{
    const int C = m->cfg.n_embd, hs = C / m->cfg.n_head, NKV = pt_model_kv_heads(&m->cfg), kvw = NKV * hs;
    tp_split s = { .dim = m->tpn > 1 ? 0 : -1 };
    split_add_even(m, &s, 0, C);
    if (NKV >= m->tpn) {
        split_add_even(m, &s, C, kvw);
        split_add_even(m, &s, C + kvw, kvw);
        return s;
    }
    const int per = m->tpn / NKV, g = m->tpr / per; /* ranks sharing a kv head, and this rank's head */
    s.lo[1] = C + g * hs;
    s.hi[1] = s.lo[1] + hs;
    s.lo[2] = C + kvw + g * hs;
    s.hi[2] = s.lo[2] + hs;
    s.nseg = 3;
    s.rep_row_lo = C / m->tpn;
    s.rep_row_hi = C / m->tpn + 2 * hs;
    s.rep_n = per;
    s.rep_first = g * per;
    s.rep_partial = 1;
    return s;
}

/* The tensor table for cap tensors and the per-block first-tensor indices; no tensor indices yet. */
static pt_status model_alloc_tensor_table(pt_model *m, int cap)
{
    m->tensors = calloc((size_t)cap, sizeof(pt_param));
    m->t_block = calloc(m->n_blocks > 0 ? (size_t)m->n_blocks : 1, sizeof(int));
    if (!m->tensors || !m->t_block)
        return pt_fail(PT_ENOMEM, "out of memory for the model's tensor table");
    m->t_wte = m->t_wpe = m->t_lnfw = m->t_lnfb = m->t_head_wte = -1;
    return PT_OK;
}

/* Llama: embedding wte; per block the LP_* tensors; the final norm; the LM head (wte, or lm_head). */
static pt_status model_build_llama_tensors(pt_model *m)
{
    const int C = m->cfg.n_embd, L = m->cfg.n_layer, H = m->cfg.intermediate_size;
    PT_CHECK(model_alloc_tensor_table(
        m, (m->has_emb ? 1 : 0) + m->n_blocks * LP_COUNT + (m->has_lnf ? 1 : 0) + (m->n_sh > 0 ? 1 : 0)));
    const tp_split sv = split_even(m, 0, m->cfg.vocab_padded);
    const int Wg = C + 2 * pt_model_kv_heads(&m->cfg) * (C / m->cfg.n_head); /* the whole qkv rows */
    if (m->has_emb) {
        m->t_wte = m->n_tensors;
        PT_CHECK(model_add_split(m, "wte.weight", 0, 2, m->cfg.vocab_padded, C, &sv, 0));
    }
    for (int j = 0; j < m->n_blocks; j++) {
        int layer = m->first_block + j, i = layer - 1;
        const int rows[LP_COUNT] = { C, Wg, C, C, 2 * H, C }, cols[LP_COUNT] = { 0, C, C, 0, C, H };
        tp_split gu = { .dim = m->tpn > 1 ? 0 : -1 };
        split_add_even(m, &gu, 0, H);
        split_add_even(m, &gu, H, H);
        const tp_split qkv = split_qkv(m), proj = split_even(m, 1, C), down = split_even(m, 1, H);
        const tp_split *split[LP_COUNT] = { [LP_QKVW] = &qkv, [LP_PROJW] = &proj, [LP_GUW] = &gu, [LP_DOWNW] = &down };
        m->t_block[j] = m->n_tensors;
        for (int k = 0; k < LP_COUNT; k++) {
            char name[96];
            snprintf(name, sizeof(name), "blocks.%d.%s", i, llama_param_suffix[k]);
            PT_CHECK(model_add_split(m, name, layer, cols[k] ? 2 : 1, rows[k], cols[k], split[k], m->sp));
        }
    }
    if (m->has_lnf) {
        m->t_lnfw = m->n_tensors;
        PT_CHECK(model_add_split(m, "lnf.weight", L + 1, 1, C, 0, NULL, m->sp));
    }
    if (m->n_sh > 0) {
        if (m->tied && m->has_emb) {
            m->t_head_wte = m->t_wte;
        } else { /* lm_head, or the tied copy of wte (whole, as for gpt2) */
            m->t_head_wte = m->n_tensors;
            PT_CHECK(model_add_split(m, m->tied ? "wte.weight" : "lm_head.weight", L + 1 + m->sh0, 2,
                                     m->cfg.vocab_padded, C, &sv, 0));
        }
    }
    return PT_OK;
}

static pt_status model_build_tensors(pt_model *m)
{
    const int C = m->cfg.n_embd, L = m->cfg.n_layer;
    int cap = (m->has_emb ? 2 : 0) + m->n_blocks * BP_COUNT + (m->has_lnf ? 2 : 0) + (m->n_sh > 0 ? 1 : 0);
    if (m->llama)
        return model_build_llama_tensors(m);
    PT_CHECK(model_alloc_tensor_table(m, cap));
    const tp_split sv = split_even(m, 0, m->cfg.vocab_padded);
    if (m->has_emb) {
        m->t_wte = m->n_tensors;
        PT_CHECK(model_add_split(m, "wte.weight", 0, 2, m->cfg.vocab_padded, C, &sv, 0));
        m->t_wpe = m->n_tensors;
        PT_CHECK(model_add_tensor(m, "wpe.weight", 0, 2, m->cfg.max_seq_len, C));
    }
    /* q/k/v rows by heads; the MLP's rows; the two output projections by columns (their biases,
     * added once, and the layernorms are whole on every rank) */
    tp_split qkv = { .dim = m->tpn > 1 ? 0 : -1 };
    for (int g = 0; g < 3; g++)
        split_add_even(m, &qkv, g * C, C);
    const tp_split fc = split_even(m, 0, 4 * C), proj = split_even(m, 1, C), mproj = split_even(m, 1, 4 * C);
    const tp_split *split[BP_COUNT] = { [BP_QKVW] = &qkv, [BP_QKVB] = &qkv, [BP_PROJW] = &proj,
                                        [BP_FCW] = &fc,   [BP_FCB] = &fc,   [BP_MPROJW] = &mproj };
    for (int j = 0; j < m->n_blocks; j++) {
        int layer = m->first_block + j, i = layer - 1;
        static const int rows[BP_COUNT] = { 1, 1, 3, 3, 1, 1, 1, 1, 4, 4, 1, 1 };
        m->t_block[j] = m->n_tensors;
        for (int k = 0; k < BP_COUNT; k++) {
            char name[96];
            snprintf(name, sizeof(name), "blocks.%d.%s", i, block_param_suffix[k]);
            int is_weight = k == BP_QKVW || k == BP_PROJW || k == BP_FCW || k == BP_MPROJW;
            int in = k == BP_MPROJW ? 4 * C : C;
            int norm = k == BP_LN1W || k == BP_LN1B || k == BP_LN2W || k == BP_LN2B;
            PT_CHECK(model_add_split(m, name, layer, is_weight ? 2 : 1, rows[k] * C, in, split[k], norm && m->sp));
        }
    }
    if (m->has_lnf) {
        m->t_lnfw = m->n_tensors;
        PT_CHECK(model_add_split(m, "lnf.weight", L + 1, 1, C, 0, NULL, m->sp));
        m->t_lnfb = m->n_tensors;
        PT_CHECK(model_add_split(m, "lnf.bias", L + 1, 1, C, 0, NULL, m->sp));
    }
    if (m->n_sh > 0) {
        if (m->has_emb) {
            m->t_head_wte = m->t_wte;
        } else { /* the tied copy (whole: its rows outside this chunk's shards get the job's sum too) */
            m->t_head_wte = m->n_tensors;
            PT_CHECK(model_add_split(m, "wte.weight", L + 1 + m->sh0, 2, m->cfg.vocab_padded, C, &sv, 0));
        }
    }
    return PT_OK;
}

static float *P(pt_model *m, int t) { return (m->wcomp ? m->wcomp : m->params) + m->tensors[t].offset; }

/* ---- bf16 mixed precision (model_config.h's policy) ----
 * RB rounds a tensor a layer has just written (an activation or an activation gradient) to bf16;
 * a no-op under fp32. The fused kernels (residual add + norm, the norms alone, bias + GELU, the
 * GELU gradient, the norms' input gradient + residual, the cross-entropy) round inside, with
 * m->bf16 as their flag: the same bits as RB after each of the split calls, in fewer passes over
 * memory. weights_ready remakes the bf16 copy of the weights when a caller may have changed the
 * masters (pt_model_params marks it stale). */
static pt_status RB(pt_model *m, float *x, size_t n) { return m->bf16 ? m->be->round_bf16(m->stream, x, x, n) : PT_OK; }

/* RB of tensor k of stash set `set` (a block's rounded internal BA_*, or kept gradient BG_*) where
 * that rounding is the tensor's last write; while the set is being stashed it also packs the
 * tensor into the slot, in the same pass. */
static pt_status RBP(pt_model *m, int set, float *x, size_t n, int k)
{
    stash_area *a = &m->area[set];
    if (!m->bf16 || !a->pack || !m->be->round_pack_bf16)
        return RB(m, x, n);
    PT_CHECK(m->be->round_pack_bf16(m->stream, x, a->pack[k], n));
    a->packed |= 1u << k;
    return PT_OK;
}

static pt_status weights_ready(pt_model *m)
{
    if (!m->bf16 || !m->wstale)
        return PT_OK;
    PT_CHECK(m->be->round_bf16(m->stream, m->wcomp, m->params, m->n_params));
    m->wstale = 0;
    return PT_OK;
}
static float *G(pt_model *m, int t) { return m->grads + m->tensors[t].offset; }

void pt_model_set_grad_hook(pt_model *m, pt_model_grad_hook fn, void *ctx)
{
    m->grad_hook = fn;
    m->grad_hook_ctx = fn ? ctx : NULL;
}

/* Tells the hook that layer `layer`'s weight pass wrote tensors t0..t1 (contiguous in the flat
 * buffer, in table order). */
static pt_status grad_hook_tensors(pt_model *m, int layer, int t0, int t1)
{
    if (!m->grad_hook || t0 < 0 || t1 < t0)
        return PT_OK;
    const pt_param *a = &m->tensors[t0], *z = &m->tensors[t1];
    return m->grad_hook(m->grad_hook_ctx, layer, a->offset, z->offset + z->numel);
}

/* The same for rows [v0, v1) of the LM-head matrix, when its gradient is in the flat buffer (the
 * head-only chunk's tied copy, or an untied lm_head); the separate twin is not reported. */
static pt_status grad_hook_head_rows(pt_model *m, int layer, int v0, int v1)
{
    if (!m->grad_hook || m->own_twin || m->t_head_wte < 0)
        return PT_OK;
    size_t C = (size_t)m->cfg.n_embd, off = m->tensors[m->t_head_wte].offset;
    return m->grad_hook(m->grad_hook_ctx, layer, off + (size_t)v0 * C, off + (size_t)v1 * C);
}

/* ---- create / destroy ---- */

pt_status pt_model_rope_inv_freq(const pt_model_config *cfg, float *inv_freq)
{
    if (cfg->arch != PT_ARCH_LLAMA)
        return pt_fail(PT_EINVAL, "rotary frequencies: model %s is not a llama model", cfg->name);
    const int hs = cfg->n_embd / cfg->n_head, half = hs / 2;
    const float base = (float)cfg->rope_theta;
    for (int i = 0; i < half; i++) { /* fp32 at each step, as Hugging Face's default rope init */
        float e = (float)(2 * i) / (float)hs;
        float p = (float)pow((double)base, (double)e);
        inv_freq[i] = 1.0f / p;
    }
    if (cfg->rope_scaling_factor != 0.0) { /* Llama 3.1 ("rope_type": "llama3") */
        const double factor = cfg->rope_scaling_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
        const double old = cfg->rope_original_max_pos, lo_wav = old / lo, hi_wav = old / hi;
        for (int i = 0; i < half; i++) {
            double f = inv_freq[i], wav = 2.0 * M_PI / f;
            if (wav > lo_wav)
                f = f / factor;
            else if (!(wav < hi_wav)) {
                double smooth = (old / wav - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
            inv_freq[i] = (float)f;
        }
    }
    return PT_OK;
}

pt_status pt_model_rope_tables(const pt_model_config *cfg, int n_pos, const pt_backend *be, pt_stream *stream,
                               float *cos_out, float *sin_out)
{
    const int half = cfg->n_embd / cfg->n_head / 2;
    const size_t n = (size_t)n_pos * half;
    float *inv = malloc((size_t)half * sizeof(float)), *hc = malloc(n * sizeof(float)), *hsn = malloc(n * sizeof(float));
    pt_status st = inv && hc && hsn ? PT_OK : pt_fail(PT_ENOMEM, "out of memory for the rotary tables (%zu floats)", n);
    if (st == PT_OK)
        st = pt_model_rope_inv_freq(cfg, inv);
    for (int t = 0; st == PT_OK && t < n_pos; t++)
        for (int i = 0; i < half; i++) {
            float a = (float)t * inv[i];
            hc[(size_t)t * half + i] = (float)cos((double)a);
            hsn[(size_t)t * half + i] = (float)sin((double)a);
        }
    if (st == PT_OK)
        st = be->memcpy_h2d(stream, cos_out, hc, n * sizeof(float));
    if (st == PT_OK)
        st = be->memcpy_h2d(stream, sin_out, hsn, n * sizeof(float));
    if (st == PT_OK)
        st = be->stream_sync(stream); /* the host tables must outlive the copies */
    free(inv);
    free(hc);
    free(hsn);
    return st;
}

/* pt_backend_alloc_kind for the chunk: a failure (device memory exhausted) names what was asked for,
 * its size and the layers, and what needs less (the backend's sentence says the bytes free). */
static pt_status model_alloc(pt_model *m, void **ptr, size_t bytes, pt_mem_kind kind, const char *what)
{
    pt_status st = pt_backend_alloc_kind(m->be, ptr, bytes, kind);
    if (st != PT_ENOMEM)
        return st;
    return pt_fail_wrap(st, "layers %d..%d: %s, %.1f MiB%s", m->first, m->last, what, bytes / 1048576.0,
                        kind == PT_MEM_ACT ? " (activations: a smaller --micro-batch-size or --recompute needs less)"
                                           : " (weights and their state: more --stages or --zero 1 need less)");
}

/* The chunk's rotary tables, positions 0..seq_len-1. */
static pt_status model_rope_tables(pt_model *m)
{
    const size_t n = (size_t)m->opts.seq_len * (m->cfg.n_embd / m->cfg.n_head / 2);
    PT_CHECK(model_alloc(m, (void **)&m->rope_cos, n * sizeof(float), PT_MEM_ACT, "the rotary cos table"));
    PT_CHECK(model_alloc(m, (void **)&m->rope_sin, n * sizeof(float), PT_MEM_ACT, "the rotary sin table"));
    return pt_model_rope_tables(&m->cfg, m->opts.seq_len, m->be, m->stream, m->rope_cos, m->rope_sin);
}

void pt_model_destroy(pt_model *m)
{
    if (!m)
        return;
    if (m->slots) {
        for (int s = 0; s < m->opts.n_slots; s++) {
            pt_backend_free(m->be, m->slots[s].mem);
            free(m->slots[s].x);
            free(m->slots[s].dx);
            free(m->slots[s].act);
            for (int set = 0; set < STASH_SETS; set++)
                free(m->slots[s].stash[set]);
            free(m->slots[s].grad);
            free(m->slots[s].sh_exps);
            free(m->slots[s].sh_rowmax);
        }
        free(m->slots);
    }
    free(m->host_targets);
    free(m->host_losses);
    free(m->host_pred);
    pt_backend_free(m->be, m->bwd_shared_mem);
    pt_backend_free(m->be, m->shared_act_mem);
    pt_backend_free(m->be, m->gstash_mem);
    pt_backend_free(m->be, m->scratch_logits);
    pt_backend_free(m->be, m->scratch_red);
    pt_backend_free(m->be, m->scratch_full);
    pt_backend_free(m->be, m->tp_parts);
    pt_backend_free(m->be, m->scratch_nc);
    pt_backend_free(m->be, m->scratch_nh);
    pt_backend_free(m->be, m->rope_cos);
    pt_backend_free(m->be, m->rope_sin);
    pt_backend_free(m->be, m->scratch_att);
    if (m->own_twin)
        pt_backend_free(m->be, m->twin);
    pt_backend_free(m->be, m->grads);
    pt_backend_free(m->be, m->params);
    pt_backend_free(m->be, m->wcomp);
    for (int i = 0; i < m->n_tensors; i++)
        free((char *)m->tensors[i].name);
    free(m->tensors);
    free(m->t_block);
    free(m);
}

pt_status pt_model_create(const pt_model_config *cfg, int first_layer, int last_layer, const pt_model_opts *opts,
                          const pt_backend *be, pt_stream *stream, pt_model **out)
{
    *out = NULL;
    PT_CHECK(pt_model_config_validate(cfg));
    const int n_layers = pt_model_n_layers(cfg);
    if (first_layer < 0 || last_layer >= n_layers || first_layer > last_layer)
        return pt_fail(PT_EINVAL, "layers %d..%d are not a range of the model's %d layers (0..%d); pick 0 <= first <= "
                                  "last <= %d",
                       first_layer, last_layer, n_layers, n_layers - 1, n_layers - 1);
    if (opts->micro_batch < 1 || opts->micro_batch > (1 << 20))
        return pt_fail(PT_EINVAL, "micro-batch size %d must be between 1 and %d", opts->micro_batch, 1 << 20);
    if (opts->seq_len < 1 || opts->seq_len > cfg->max_seq_len)
        return pt_fail(PT_EINVAL, "sequence length %d must be between 1 and the model's max_seq_len %d; use a "
                                  "sequence length of at most %d",
                       opts->seq_len, cfg->max_seq_len, cfg->max_seq_len);
    if ((int64_t)opts->micro_batch * opts->seq_len > (1 << 24))
        return pt_fail(PT_EINVAL, "micro-batch %d x sequence %d is more than %d tokens per micro-batch; use more, "
                                  "smaller micro-batches",
                       opts->micro_batch, opts->seq_len, 1 << 24);
    if (opts->n_slots < 1 || opts->n_slots > 4096)
        return pt_fail(PT_EINVAL, "n_slots is %d; a model needs between 1 and 4096 activation slots", opts->n_slots);
    pt_status st = PT_OK;
    pt_model *m = calloc(1, sizeof(*m));
    if (!m)
        return pt_fail(PT_ENOMEM, "out of memory creating a model");
    m->cfg = *cfg;
    m->opts = *opts;
    m->opts.recompute = opts->recompute ? 1 : 0;
    m->opts.fused_only = opts->fused_only ? 1 : 0;
    m->be = be;
    m->stream = stream;
    m->first = first_layer;
    m->last = last_layer;
    m->has_emb = first_layer == 0;
    m->has_head = last_layer == n_layers - 1;
    m->K = pt_model_head_layers(cfg);
    m->llama = cfg->arch == PT_ARCH_LLAMA;
    m->tied = pt_model_tied(cfg);
    m->tpn = opts->tp.size > 1 ? opts->tp.size : 1;
    m->tpr = m->tpn > 1 ? opts->tp.rank : 0;
    m->sp = m->tpn > 1 && opts->tp.sp;
    m->bf16 = opts->precision == PT_PRECISION_BF16;
    {
        const int can = m->bf16 && !opts->no_stash && be->pack_bf16 && be->unpack_bf16;
        m->stash[SET_ACT] = can && !m->opts.recompute;    /* a recomputing chunk keeps no internals */
        m->stash[SET_GRAD] = can && !m->opts.fused_only;  /* only a split backward keeps gradients */
        m->area[SET_ACT].slot = m->area[SET_GRAD].slot = -1;
    }
    if (m->bf16 && !be->round_bf16) {
        st = pt_fail(PT_ENOTSUP, "the %s backend has no bf16 rounding; train with --precision fp32", be->name);
        goto fail;
    }
    if (!be->add_layernorm_forward || !be->layernorm_backward_input_add || !be->bias_gelu_forward ||
        !be->gelu_backward_round) {
        st = pt_fail(PT_ENOTSUP, "the %s backend lacks the fused residual-norm and bias-GELU kernels the blocks call "
                                 "(pipetrain/backend.h); use the cpu or cuda backend", be->name);
        goto fail;
    }
    if (opts->precision != PT_PRECISION_FP32 && opts->precision != PT_PRECISION_BF16) {
        st = pt_fail(PT_EINVAL, "precision %d is not fp32 or bf16", (int)opts->precision);
        goto fail;
    }
    if (m->tpn > 1) {
        if ((st = pt_model_tp_check(cfg, m->tpn, m->sp, opts->micro_batch, opts->seq_len)) != PT_OK)
            goto fail;
        if (m->tpr < 0 || m->tpr >= m->tpn || !opts->tp.allreduce || !opts->tp.reduce_scatter || !opts->tp.allgather) {
            st = pt_fail(PT_EINVAL, "tensor parallelism: rank %d of a group of %d, and the group's three collectives, "
                                    "are required",
                         m->tpr, m->tpn);
            goto fail;
        }
        if (!be->embedding_range_forward || !be->embedding_range_backward || !be->xent_stats_combine) {
            st = pt_fail(PT_ENOTSUP, "backend %s has no vocabulary-parallel kernels; run tensor parallelism on "
                                     "another backend",
                         be->name);
            goto fail;
        }
    }
    {
        const int C = cfg->n_embd, NKV = pt_model_kv_heads(cfg), hs = C / cfg->n_head;
        m->NHl = cfg->n_head / m->tpn;
        m->NKVl = NKV >= m->tpn ? NKV / m->tpn : 1;
        m->Cl = m->NHl * hs;
        m->W = m->Cl + 2 * m->NKVl * hs;
        m->FW = (m->llama ? 2 * cfg->intermediate_size : 4 * C) / m->tpn;
        m->AW = (m->llama ? cfg->intermediate_size : 4 * C) / m->tpn;
        m->Vl = cfg->vocab_padded / m->tpn;
        m->v0 = m->tpr * m->Vl;
        m->R = opts->micro_batch * opts->seq_len / (m->sp ? m->tpn : 1);
        m->xs = m->K > 1 || m->tpn > 1;
        const int N = opts->micro_batch * opts->seq_len;
        m->hc = m->has_head && !m->xs ? pt_model_head_chunk_rows(cfg, N) : 0;
    }
    if (cfg->head_chunk > 0 && m->tpn > 1) {
        st = pt_fail(PT_EINVAL, "head_chunk %d with tensor parallelism: the vocabulary-parallel head already keeps "
                                "only this rank's %d of %d vocabulary rows; use head_chunk 0",
                     cfg->head_chunk, m->Vl, cfg->vocab_padded);
        goto fail;
    }
    if (m->llama && (!be->rmsnorm_forward || !be->rmsnorm_backward_input || !be->rmsnorm_backward_weight ||
                     !be->add_rmsnorm_forward || !be->rmsnorm_backward_input_add || !be->rope_forward ||
                     !be->rope_backward || !be->swiglu_forward || !be->swiglu_backward)) {
        free(m);
        return pt_fail(PT_ENOTSUP, "backend %s has no llama kernels (RMSNorm, RoPE, SwiGLU); run llama models on "
                                   "another backend",
                       be->name);
    }
    m->has_lnf = first_layer <= cfg->n_layer + 1 && last_layer >= cfg->n_layer + 1;
    m->sh0 = (first_layer > cfg->n_layer + 1 ? first_layer : cfg->n_layer + 1) - (cfg->n_layer + 1);
    m->n_sh = last_layer >= cfg->n_layer + 1 ? last_layer - (cfg->n_layer + 1) - m->sh0 + 1 : 0;
    m->first_block = first_layer < 1 ? 1 : first_layer;
    int last_block = last_layer > cfg->n_layer ? cfg->n_layer : last_layer;
    m->n_blocks = last_block >= m->first_block ? last_block - m->first_block + 1 : 0;
    PT_TRY(model_build_tensors(m), fail);

    const int B = opts->micro_batch, T = opts->seq_len, C = cfg->n_embd;
    const size_t N = (size_t)B * T, Vp = (size_t)cfg->vocab_padded;
    size_t pbytes = (m->n_params ? m->n_params : 1) * sizeof(float);
    PT_TRY(model_alloc(m, (void **)&m->params, pbytes, PT_MEM_WEIGHTS, "the weights"), fail);
    PT_TRY(model_alloc(m, (void **)&m->grads, pbytes, PT_MEM_GRADS, "the gradients"), fail);
    if (m->bf16) {
        PT_TRY(model_alloc(m, (void **)&m->wcomp, pbytes, PT_MEM_WEIGHTS, "the bf16 copy of the weights"), fail);
        m->wstale = 1;
    }
    if (m->n_sh > 0) {
        if (m->has_emb && m->tied) {
            PT_TRY(model_alloc(m, (void **)&m->twin, (size_t)m->Vl * C * sizeof(float), PT_MEM_GRADS,
                               "the LM head's wte gradient"),
                   fail);
            m->own_twin = 1;
        } else {
            m->twin = G(m, m->t_head_wte);
        }
    }
    if (m->sp) {
        PT_TRY(model_alloc(m, (void **)&m->scratch_red, N * C * sizeof(float), PT_MEM_ACT,
                           "the sequence-parallel partial sums"),
               fail);
        PT_TRY(model_alloc(m, (void **)&m->scratch_full, N * C * sizeof(float), PT_MEM_ACT,
                           "the sequence-parallel gathered rows"),
               fail);
    }
    if (m->has_head && m->tpn > 1)
        PT_TRY(model_alloc(m, (void **)&m->tp_parts, (size_t)m->tpn * N * PT_XENT_STATS * sizeof(float), PT_MEM_ACT,
                           "the tensor-parallel head's row statistics"),
               fail);
    if (m->has_head && !m->xs) {
        size_t rows = N < MODEL_LOGIT_ROWS ? N : MODEL_LOGIT_ROWS;
        if ((size_t)m->hc > rows)
            rows = (size_t)m->hc;
        PT_TRY(model_alloc(m, (void **)&m->scratch_logits, rows * Vp * sizeof(float), PT_MEM_ACT,
                           m->hc ? "the head chunk's logits" : "the logits scratch"),
               fail);
    }
    if (m->n_blocks > 0) {
        size_t att = be->attention_scratch_size(B, T, m->Cl, m->NHl, m->NKVl);
        PT_TRY(model_alloc(m, (void **)&m->scratch_att, (att ? att : 1) * sizeof(float), PT_MEM_ACT,
                           "the attention scratch"),
               fail);
        PT_TRY(model_alloc(m, (void **)&m->scratch_nc, N * C * sizeof(float), PT_MEM_ACT,
                           "the attention-output gradient scratch"),
               fail);
        if (m->llama) {
            PT_TRY(model_alloc(m, (void **)&m->scratch_nh, N * (size_t)m->AW * sizeof(float), PT_MEM_ACT,
                               "the SwiGLU gradient scratch"),
                   fail);
            PT_TRY(model_rope_tables(m), fail);
        }
        if (m->opts.recompute || m->stash[SET_ACT]) {
            const int parts = m->opts.recompute ? ACT_ROUNDED | ACT_STATS : ACT_ROUNDED;
            carve c = { 0 };
            carve_block_act(&c, m, &m->shared_act, parts);
            PT_TRY(model_alloc(m, &m->shared_act_mem, c.off, PT_MEM_ACT,
                               m->opts.recompute ? "the recomputation area" : "the bf16 stash's block area"),
                   fail);
            c = (carve){ .base = m->shared_act_mem };
            carve_block_act(&c, m, &m->shared_act, parts);
        }
    }
    if (m->stash[SET_GRAD] && m->n_blocks > 0) {
        carve c = { 0 };
        carve_block_grad(&c, m, &m->grad_shared, GRAD_ROUNDED);
        PT_TRY(model_alloc(m, &m->gstash_mem, c.off, PT_MEM_ACT, "the bf16 stash's gradient area"), fail);
        c = (carve){ .base = m->gstash_mem };
        carve_block_grad(&c, m, &m->grad_shared, GRAD_ROUNDED);
    }
    if (m->opts.fused_only) {
        carve c = { 0 };
        carve_bwd_shared(&c, m);
        if (c.off > 0) {
            PT_TRY(model_alloc(m, &m->bwd_shared_mem, c.off, PT_MEM_ACT, "the shared backward gradients"), fail);
            c = (carve){ .base = m->bwd_shared_mem };
            carve_bwd_shared(&c, m);
        }
    }
    if (m->has_head) {
        m->host_losses = malloc(N * sizeof(float));
        m->host_targets = malloc(N * sizeof(int32_t));
        size_t rows = N < MODEL_LOGIT_ROWS ? N : MODEL_LOGIT_ROWS;
        m->host_pred = malloc((!m->xs ? rows * Vp : N * PT_XENT_STATS) * sizeof(float));
        if (!m->host_losses || !m->host_targets || !m->host_pred) {
            st = pt_fail(PT_ENOMEM, "out of memory for host loss buffers");
            goto fail;
        }
    }
    m->slots = calloc((size_t)opts->n_slots, sizeof(model_slot));
    if (!m->slots) {
        st = pt_fail(PT_ENOMEM, "out of memory for %d slots", opts->n_slots);
        goto fail;
    }
    const int n_bound = last_layer - first_layer + 2;
    for (int s = 0; s < opts->n_slots; s++) {
        model_slot *sl = &m->slots[s];
        sl->x = calloc((size_t)n_bound, sizeof(float *));
        sl->dx = calloc((size_t)n_bound, sizeof(float *));
        sl->act = calloc(m->n_blocks ? (size_t)m->n_blocks : 1, sizeof(block_act));
        sl->grad = calloc(m->n_blocks ? (size_t)m->n_blocks : 1, sizeof(block_grad));
        for (int set = 0; set < STASH_SETS; set++)
            sl->stash[set] = calloc(m->n_blocks ? (size_t)m->n_blocks * set_n[set] : 1, sizeof(uint16_t *));
        sl->sh_exps = calloc(m->n_sh ? (size_t)m->n_sh : 1, sizeof(float *));
        sl->sh_rowmax = calloc(m->n_sh ? (size_t)m->n_sh : 1, sizeof(float *));
        if (!sl->x || !sl->dx || !sl->act || !sl->grad || !sl->stash[SET_ACT] || !sl->stash[SET_GRAD] ||
            !sl->sh_exps || !sl->sh_rowmax) {
            st = pt_fail(PT_ENOMEM, "out of memory for slot tables");
            goto fail;
        }
        carve c = { 0 };
        carve_slot(&c, m, sl);
        m->slot_bytes = c.off;
        PT_TRY(model_alloc(m, &sl->mem, c.off ? c.off : 1, PT_MEM_ACT, "an activation slot"), fail);
        c = (carve){ .base = sl->mem };
        carve_slot(&c, m, sl);
        /* Gradients between head shards carry dh, then the log-sum-exp, then unused floats that
         * go over the network: zero them once. */
        for (int b = first_layer > cfg->n_layer + 2 ? first_layer : cfg->n_layer + 2; b <= last_layer + 1 && b < n_layers;
             b++)
            PT_TRY(be->memset_zero(stream, sl->dx[b - first_layer],
                                   N * (size_t)pt_model_boundary_width(cfg, b) * sizeof(float)),
                   fail);
    }
    *out = m;
    return PT_OK;
fail:
    pt_model_destroy(m);
    return st;
}

/* ---- accessors ---- */

const pt_model_config *pt_model_config_of(const pt_model *m) { return &m->cfg; }
int pt_model_first_layer(const pt_model *m) { return m->first; }
int pt_model_last_layer(const pt_model *m) { return m->last; }
int pt_model_has_embedding(const pt_model *m) { return m->has_emb; }
int pt_model_has_head(const pt_model *m) { return m->has_head; }
int pt_model_n_tensors(const pt_model *m) { return m->n_tensors; }
int pt_model_tp_size(const pt_model *m) { return m->tpn; }
int pt_model_tp_rank(const pt_model *m) { return m->tpr; }
int pt_model_boundary_rows(const pt_model *m) { return m->R; }
int pt_model_vocab_rows(const pt_model *m) { return m->Vl; }

pt_status pt_model_tp_check(const pt_model_config *cfg, int tp, int sp, int micro_batch, int seq_len)
{
    if (tp < 1 || tp > 256)
        return pt_fail(PT_EINVAL, "--tp %d: the tensor-parallel size must be between 1 and 256", tp);
    if (tp == 1)
        return PT_OK;
    const int NKV = pt_model_kv_heads(cfg);
    const int mlp = cfg->arch == PT_ARCH_LLAMA ? cfg->intermediate_size : 4 * cfg->n_embd;
    if (pt_model_head_layers(cfg) > 1)
        return pt_fail(PT_EINVAL, "--tp %d with head_split %d: tensor parallelism already splits the LM head's "
                                  "vocabulary over the %d ranks; use head_split 1",
                       tp, cfg->head_split, tp);
    if (cfg->n_head % tp)
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's %d attention heads; pick a T dividing %d", tp,
                       cfg->name, cfg->n_head, cfg->n_head);
    if (NKV % tp && tp % NKV)
        return pt_fail(PT_EINVAL, "--tp %d and %s's %d key/value heads: T must divide them (split) or be a multiple "
                                  "of them (replicated); pick T dividing %d or a multiple of it",
                       tp, cfg->name, NKV, NKV);
    if (mlp % tp)
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's MLP width %d; pick a T dividing %d", tp, cfg->name,
                       mlp, mlp);
    if (cfg->vocab_padded % tp)
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's padded vocabulary %d (the LM head is split by "
                                  "vocabulary rows); pick a T dividing %d",
                       tp, cfg->name, cfg->vocab_padded, cfg->vocab_padded);
    if (sp && ((int64_t)micro_batch * seq_len) % tp)
        return pt_fail(PT_EINVAL, "--sp with --tp %d: the %lld tokens of a micro-batch (%d x %d) do not split into %d "
                                  "equal parts; pick a micro-batch size or sequence length making B x T a multiple of %d",
                       tp, (long long)micro_batch * seq_len, micro_batch, seq_len, tp, tp);
    return PT_OK;
}
size_t pt_model_max_tensor_numel(const pt_model *m)
{
    size_t max = 1;
    for (int i = 0; i < m->n_tensors; i++)
        max = m->tensors[i].numel > max ? m->tensors[i].numel : max;
    return max;
}
const pt_param *pt_model_tensor(const pt_model *m, int i) { return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL; }
size_t pt_model_n_params(const pt_model *m) { return m->n_params; }
float *pt_model_params(pt_model *m)
{
    m->wstale = 1;
    return m->params;
}
pt_precision pt_model_precision(const pt_model *m) { return m->bf16 ? PT_PRECISION_BF16 : PT_PRECISION_FP32; }
float *pt_model_grads(pt_model *m) { return m->grads; }
float *pt_model_head_wte_grad(pt_model *m) { return m->n_sh > 0 ? m->twin : NULL; }
int pt_model_has_head_layers(const pt_model *m) { return m->n_sh > 0; }
size_t pt_model_slot_bytes(const pt_model *m) { return m->slot_bytes; }
const pt_backend *pt_model_backend(const pt_model *m) { return m->be; }
pt_stream *pt_model_stream(const pt_model *m) { return m->stream; }

const pt_param *pt_model_find_tensor(const pt_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

int pt_model_tensor_is_copy(const pt_model *m, const pt_param *p)
{
    if (m->n_sh == 0 || m->t_head_wte < 0 || p != &m->tensors[m->t_head_wte])
        return 0;
    return m->tied ? !m->has_emb : m->sh0 > 0;
}

static model_slot *slot_at(pt_model *m, int s) { return s >= 0 && s < m->opts.n_slots ? &m->slots[s] : NULL; }

int32_t *pt_model_slot_tokens(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl ? sl->tokens : NULL;
}

int32_t *pt_model_slot_targets(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl ? sl->targets : NULL;
}

float *pt_model_slot_input(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl && !m->has_emb ? sl->x[0] : NULL;
}

float *pt_model_slot_output(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl && !m->has_head ? sl->x[m->last + 1 - m->first] : NULL;
}

float *pt_model_slot_dinput(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl && !m->has_emb ? sl->dx[0] : NULL;
}

float *pt_model_slot_doutput(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl && !m->has_head ? sl->dx[m->last + 1 - m->first] : NULL;
}

const float *pt_model_slot_probs(pt_model *m, int s)
{
    model_slot *sl = slot_at(m, s);
    return sl && m->has_head ? sl->logits : NULL; /* NULL too for a chunked head (no logits kept) */
}

static pt_status slot_check(pt_model *m, int s, const char *what)
{
    if (!slot_at(m, s))
        return pt_fail(PT_EINVAL, "%s: slot %d is out of range; this model has %d slots (0..%d)", what, s,
                       m->opts.n_slots, m->opts.n_slots - 1);
    return PT_OK;
}

pt_status pt_model_slot_release(pt_model *m, int s)
{
    PT_CHECK(slot_check(m, s, "slot release"));
    m->slots[s].state = SLOT_FREE;
    m->slots[s].head_grad = 0;
    return PT_OK;
}

/* ---- initialisation ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The RNG stream of one tensor: a function of (seed, name) only, so every partition of a model
 * initialises a tensor identically. */
static uint64_t init_stream(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    uint64_t x = seed ^ h;
    return splitmix64(&x);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Values are drawn in blocks of this many, each block from its own stream, so a tensor is filled
 * in parallel with the same result for any thread count. */
#define INIT_BLOCK 4096

/* Fills `out` (n) with the initial values of tensor `name` (GPT-2's scheme). */
static void init_fill(const pt_model_config *cfg, uint64_t seed, const char *name, float *out, size_t n)
{
    int is_ln = strncmp(name, "lnf.", 4) == 0 || strstr(name, ".ln1.") || strstr(name, ".ln2."); /* LayerNorm, RMSNorm */
    if (ends_with(name, ".bias") || is_ln) {
        float v = is_ln && ends_with(name, ".weight") ? 1.0f : 0.0f;
        for (size_t i = 0; i < n; i++)
            out[i] = v;
        return;
    }
    double std = 0.02;
    if (ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.proj.weight") || ends_with(name, "mlp.down.weight"))
        std = 0.02 / sqrt(2.0 * cfg->n_layer);
    const uint64_t base = init_stream(seed, name);
    const long long n_blocks = (long long)((n + INIT_BLOCK - 1) / INIT_BLOCK);
#pragma omp parallel for schedule(static) if (n_blocks > 8)
    for (long long blk = 0; blk < n_blocks; blk++) {
        uint64_t state = base ^ ((uint64_t)blk * 0xd1b54a32d192ed03ull);
        splitmix64(&state);
        size_t i0 = (size_t)blk * INIT_BLOCK, i1 = i0 + INIT_BLOCK < n ? i0 + INIT_BLOCK : n;
        for (size_t i = i0; i < i1; i += 2) { /* Marsaglia's polar method: two normals per accepted pair */
            double u, v, r2;
            do {
                u = (double)(splitmix64(&state) >> 11) * 0x1.0p-52 - 1.0; /* [-1, 1) */
                v = (double)(splitmix64(&state) >> 11) * 0x1.0p-52 - 1.0;
                r2 = u * u + v * v;
            } while (r2 >= 1.0 || r2 == 0.0);
            double f = std * sqrt(-2.0 * log(r2) / r2);
            out[i] = (float)(u * f);
            if (i + 1 < i1)
                out[i + 1] = (float)(v * f);
        }
    }
}

/* Elements of the whole tensor p is (a part of). */
static size_t whole_numel(const pt_param *p) { return (size_t)p->gshape[0] * (p->ndim > 1 ? (size_t)p->gshape[1] : 1); }

/* Copies this rank's part of the whole tensor `whole` (p->gshape) into `part` (p->shape): its
 * segments along tp_dim, in order. */
static void tp_take_part(const pt_param *p, const float *whole, float *part)
{
    if (p->tp_dim < 0) {
        memcpy(part, whole, p->numel * sizeof(float));
        return;
    }
    const size_t gcols = p->ndim > 1 ? (size_t)p->gshape[1] : 1;
    if (p->tp_dim == 0) {
        for (int i = 0; i < p->tp_nseg; i++) {
            size_t n = (size_t)(p->tp_hi[i] - p->tp_lo[i]) * gcols;
            memcpy(part, whole + (size_t)p->tp_lo[i] * gcols, n * sizeof(float));
            part += n;
        }
        return;
    }
    for (int r = 0; r < p->gshape[0]; r++)
        for (int i = 0; i < p->tp_nseg; i++) {
            size_t n = (size_t)(p->tp_hi[i] - p->tp_lo[i]);
            memcpy(part, whole + (size_t)r * gcols + p->tp_lo[i], n * sizeof(float));
            part += n;
        }
}

pt_status pt_model_init_weights(pt_model *m, uint64_t seed)
{
    m->wstale = 1;
    size_t max = 1;
    for (int i = 0; i < m->n_tensors; i++)
        max = whole_numel(&m->tensors[i]) > max ? whole_numel(&m->tensors[i]) : max;
    float *host = malloc(max * sizeof(float)), *part = m->tpn > 1 ? malloc(max * sizeof(float)) : host;
    if (!host || !part) {
        free(host);
        if (part != host)
            free(part);
        return pt_fail(PT_ENOMEM, "out of memory initialising weights (%zu floats)", max);
    }
    pt_status st = PT_OK;
    for (int i = 0; i < m->n_tensors && st == PT_OK; i++) {
        const pt_param *p = &m->tensors[i];
        /* the whole tensor's values, then this rank's part of them: every T gives the same model */
        init_fill(&m->cfg, seed, p->name, host, whole_numel(p));
        if (part != host)
            tp_take_part(p, host, part);
        st = m->be->memcpy_h2d(m->stream, m->params + p->offset, part, p->numel * sizeof(float));
        if (st == PT_OK && part != host)
            st = m->be->stream_sync(m->stream); /* part is reused by the next tensor */
    }
    if (st == PT_OK)
        st = m->be->stream_sync(m->stream); /* the host buffer must outlive the copies */
    if (part != host)
        free(part);
    free(host);
    return st;
}

pt_status pt_model_zero_grads(pt_model *m)
{
    PT_CHECK(m->be->memset_zero(m->stream, m->grads, m->n_params * sizeof(float)));
    if (m->own_twin)
        PT_CHECK(m->be->memset_zero(m->stream, m->twin, (size_t)m->Vl * m->cfg.n_embd * sizeof(float)));
    return PT_OK;
}

pt_status pt_model_reduce_tied_grads(pt_model *m)
{
    if (!(m->has_emb && m->n_sh > 0 && m->tied))
        return PT_OK;
    float *g = G(m, m->t_wte);
    return m->be->add(m->stream, g, g, m->twin, (size_t)m->Vl * m->cfg.n_embd);
}

/* ---- tensor-parallel collectives (pt_model_opts.tp) ----
 * Partial sums of the row-parallel products are all-reduced, or with sp reduce-scattered (this
 * rank's R rows land at its segment, seg_off floats into the (N,C) buffer); inputs of the
 * column-parallel products are, with sp, all-gathered from every rank's R rows. */

static size_t seg_off(const pt_model *m) { return m->sp ? (size_t)m->tpr * m->R * m->cfg.n_embd : 0; }

static pt_status tp_call(pt_model *m, int op, float *x, size_t n, const char *what, int layer)
{
    char w[96];
    snprintf(w, sizeof w, "tp %s %s (layer %d)", op == 0 ? "all-reduce" : op == 1 ? "reduce-scatter" : "all-gather",
             what, layer);
    const struct pt_model_tp *tp = &m->opts.tp;
    return op == 0 ? tp->allreduce(tp->ctx, x, n, w) : op == 1 ? tp->reduce_scatter(tp->ctx, x, n, w)
                                                               : tp->allgather(tp->ctx, x, n, w);
}

/* Sums the group's partial (N,C) buffers x (the outputs of a row-parallel product): this rank's
 * rows are then at x + seg_off. Under bf16 the partial sums add in fp32 and the sum, this rank's
 * R rows of it, is rounded once (without tensor parallelism: the product's output). */
static pt_status tp_reduce(pt_model *m, float *x, const char *what, int layer)
{
    const size_t n = (size_t)m->opts.micro_batch * m->opts.seq_len * m->cfg.n_embd;
    if (m->tpn > 1)
        PT_CHECK(tp_call(m, m->sp ? 1 : 0, x, n, what, layer));
    return RB(m, x + seg_off(m), (size_t)m->R * m->cfg.n_embd);
}

/* All N rows of a (R,C) activation: `local` itself without sp; with sp, full (N,C) after copying
 * local to this rank's segment (unless it is there already) and the all-gather. */
static pt_status tp_gather(pt_model *m, const float *local, float *full, const float **out, const char *what,
                           int layer)
{
    *out = local;
    if (!m->sp)
        return PT_OK;
    const size_t C = (size_t)m->cfg.n_embd, N = (size_t)m->opts.micro_batch * m->opts.seq_len;
    if (local != full + seg_off(m))
        PT_CHECK(m->be->memcpy_d2d(m->stream, full + seg_off(m), local, (size_t)m->R * C * sizeof(float)));
    PT_CHECK(tp_call(m, 2, full, N * C, what, layer));
    *out = full;
    return PT_OK;
}

/* ---- llama blocks: RMSNorm, q/k/v, RoPE, grouped-query attention, o; RMSNorm, SwiGLU MLP ----
 * Under tensor parallelism (all of it in the kernels' shapes): NHl query and NKVl kv heads of width
 * hs, W = (NHl + 2 NKVl) hs, the MLP's AW = H / T; norms and residual adds on R rows. */

static pt_status llama_block_forward(pt_model *m, int j, const float *x, const block_act *a, float *out)
{
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int B = m->opts.micro_batch, T = m->opts.seq_len, C = m->cfg.n_embd, N = B * T, R = m->R;
    const int H = m->AW, hs = C / m->cfg.n_head, NH = m->NHl, NKV = m->NKVl, L = m->first_block + j;
    const float eps = m->cfg.rms_norm_eps;
    const int t = m->t_block[j];
    const size_t off = seg_off(m);
    const float *ln;
    float *part;
    PT_CHECK(be->add_rmsnorm_forward(s, NULL, a->ln1, a->ln1_rstd, x, NULL, P(m, t + LP_LN1W), R, C, eps, m->bf16));
    PT_CHECK(tp_gather(m, a->ln1, m->scratch_full, &ln, "ln1", L));
    PT_CHECK(be->matmul_forward(s, a->qkv, ln, P(m, t + LP_QKVW), NULL, N, C, m->W));
    PT_CHECK(RB(m, a->qkv, (size_t)N * m->W));
    PT_CHECK(be->rope_forward(s, a->qkv, m->rope_cos, m->rope_sin, B, T, NH, NKV, hs, 0));
    PT_CHECK(RBP(m, SET_ACT, a->qkv, (size_t)N * m->W, BA_QKV));
    PT_CHECK(be->attention_forward(s, a->atty, a->att_saved, m->scratch_att, a->qkv, B, T, m->Cl, NH, NKV));
    PT_CHECK(RBP(m, SET_ACT, a->atty, (size_t)N * m->Cl, BA_ATTY));
    part = m->sp ? m->scratch_red : a->res2;
    PT_CHECK(be->matmul_forward(s, part, a->atty, P(m, t + LP_PROJW), NULL, N, m->Cl, C));
    PT_CHECK(tp_reduce(m, part, "attn.proj", L));
    PT_CHECK(be->add_rmsnorm_forward(s, a->res2, a->ln2, a->ln2_rstd, part + off, x, P(m, t + LP_LN2W), R, C, eps,
                                     m->bf16));
    PT_CHECK(tp_gather(m, a->ln2, m->scratch_full, &ln, "ln2", L));
    PT_CHECK(be->matmul_forward(s, a->fch, ln, P(m, t + LP_GUW), NULL, N, C, 2 * H));
    PT_CHECK(RBP(m, SET_ACT, a->fch, (size_t)N * 2 * H, BA_FCH));
    PT_CHECK(be->swiglu_forward(s, a->fch_gelu, a->fch, N, H));
    PT_CHECK(RBP(m, SET_ACT, a->fch_gelu, (size_t)N * H, BA_FCH_GELU));
    if (out) {
        part = m->sp ? m->scratch_red : out;
        PT_CHECK(be->matmul_forward(s, part, a->fch_gelu, P(m, t + LP_DOWNW), NULL, N, H, C));
        PT_CHECK(tp_reduce(m, part, "mlp.down", L));
        PT_CHECK(be->add(s, out, part + off, a->res2, (size_t)R * C));
        PT_CHECK(RB(m, out, (size_t)R * C));
    }
    return PT_OK;
}

static pt_status llama_block_backward_input(pt_model *m, int j, const float *x, const block_act *a,
                                            const block_grad *g, const float *dy, float *dx)
{
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int B = m->opts.micro_batch, T = m->opts.seq_len, C = m->cfg.n_embd, N = B * T, R = m->R;
    const int H = m->AW, hs = C / m->cfg.n_head, NH = m->NHl, NKV = m->NKVl, L = m->first_block + j;
    const int t = m->t_block[j];
    const size_t off = seg_off(m);
    const float *dyf, *dres2f;
    PT_CHECK(tp_gather(m, dy, g->dyf, &dyf, "block output gradient", L));
    PT_CHECK(be->matmul_backward_input(s, m->scratch_nh, dyf, P(m, t + LP_DOWNW), N, H, C));
    PT_CHECK(RB(m, m->scratch_nh, (size_t)N * H));
    PT_CHECK(be->swiglu_backward(s, g->dfch, m->scratch_nh, a->fch, N, H));
    PT_CHECK(RBP(m, SET_GRAD, g->dfch, (size_t)N * 2 * H, BG_DFCH));
    PT_CHECK(be->matmul_backward_input(s, g->dln2, g->dfch, P(m, t + LP_GUW), N, C, 2 * H));
    PT_CHECK(tp_reduce(m, g->dln2, "ln2 gradient", L));
    PT_CHECK(be->rmsnorm_backward_input_add(s, g->dres2 + off, g->dln2 + off, a->res2, P(m, t + LP_LN2W),
                                            a->ln2_rstd, dy, R, C, m->bf16));
    PT_CHECK(tp_gather(m, g->dres2 + off, g->dres2, &dres2f, "residual gradient", L));
    PT_CHECK(be->matmul_backward_input(s, m->scratch_nc, dres2f, P(m, t + LP_PROJW), N, m->Cl, C));
    PT_CHECK(RB(m, m->scratch_nc, (size_t)N * m->Cl));
    PT_CHECK(be->attention_backward(s, g->dqkv, m->scratch_att, m->scratch_nc, a->qkv, a->atty, a->att_saved, B, T,
                                    m->Cl, NH, NKV));
    PT_CHECK(RB(m, g->dqkv, (size_t)N * m->W));
    PT_CHECK(be->rope_backward(s, g->dqkv, m->rope_cos, m->rope_sin, B, T, NH, NKV, hs, 0));
    PT_CHECK(RBP(m, SET_GRAD, g->dqkv, (size_t)N * m->W, BG_DQKV));
    PT_CHECK(be->matmul_backward_input(s, g->dln1, g->dqkv, P(m, t + LP_QKVW), N, C, m->W));
    PT_CHECK(tp_reduce(m, g->dln1, "ln1 gradient", L));
    PT_CHECK(be->rmsnorm_backward_input_add(s, dx, g->dln1 + off, x, P(m, t + LP_LN1W), a->ln1_rstd,
                                            g->dres2 + off, R, C, m->bf16));
    return PT_OK;
}

static pt_status llama_block_backward_weight(pt_model *m, int j, const float *x, const block_act *a,
                                             const block_grad *g, const float *dy)
{
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, H = m->AW, R = m->R;
    const int t = m->t_block[j], L = m->first_block + j;
    const size_t off = seg_off(m);
    const float *ln;
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + LP_DOWNW), NULL, m->sp ? g->dyf : dy, a->fch_gelu, N, H, C));
    PT_CHECK(tp_gather(m, a->ln2, m->scratch_full, &ln, "ln2", L)); /* with sp: gathered again, not kept */
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + LP_GUW), NULL, g->dfch, ln, N, C, 2 * H));
    PT_CHECK(be->rmsnorm_backward_weight(s, G(m, t + LP_LN2W), g->dln2 + off, a->res2, a->ln2_rstd, R, C));
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + LP_PROJW), NULL, g->dres2, a->atty, N, m->Cl, C));
    PT_CHECK(tp_gather(m, a->ln1, m->scratch_full, &ln, "ln1", L));
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + LP_QKVW), NULL, g->dqkv, ln, N, C, m->W));
    PT_CHECK(be->rmsnorm_backward_weight(s, G(m, t + LP_LN1W), g->dln1 + off, x, a->ln1_rstd, R, C));
    return PT_OK;
}

/* ---- the final norm of the head: LayerNorm (gpt2) or RMSNorm (llama) ---- */

/* On N rows; with sp this rank's R rows, at its segment of lnf / dlnf. */
static pt_status head_norm_forward(pt_model *m, model_slot *sl, const float *x, int N)
{
    float *lnf = sl->lnf + seg_off(m);
    if (m->llama) /* the norm and its rounding in one pass (no residual operand) */
        return m->be->add_rmsnorm_forward(m->stream, NULL, lnf, sl->lnf_rstd, x, NULL, P(m, m->t_lnfw), N,
                                          m->cfg.n_embd, m->cfg.rms_norm_eps, m->bf16);
    return m->be->add_layernorm_forward(m->stream, NULL, lnf, sl->lnf_mean, sl->lnf_rstd, x, NULL, P(m, m->t_lnfw),
                                        P(m, m->t_lnfb), N, m->cfg.n_embd, m->bf16);
}

static pt_status head_norm_backward_input(pt_model *m, model_slot *sl, float *dx, const float *x, int N)
{
    const float *dlnf = sl->dlnf + seg_off(m);
    if (m->llama)
        PT_CHECK(m->be->rmsnorm_backward_input(m->stream, dx, dlnf, x, P(m, m->t_lnfw), sl->lnf_rstd, N,
                                               m->cfg.n_embd));
    else
        PT_CHECK(m->be->layernorm_backward_input(m->stream, dx, dlnf, x, P(m, m->t_lnfw), sl->lnf_mean,
                                                 sl->lnf_rstd, N, m->cfg.n_embd));
    return RB(m, dx, (size_t)N * m->cfg.n_embd);
}

static pt_status head_norm_backward_weight(pt_model *m, model_slot *sl, const float *x, int N)
{
    const float *dlnf = sl->dlnf + seg_off(m);
    if (m->llama)
        return m->be->rmsnorm_backward_weight(m->stream, G(m, m->t_lnfw), dlnf, x, sl->lnf_rstd, N, m->cfg.n_embd);
    return m->be->layernorm_backward_weight(m->stream, G(m, m->t_lnfw), G(m, m->t_lnfb), dlnf, x, sl->lnf_mean,
                                            sl->lnf_rstd, N, m->cfg.n_embd);
}

/* ---- the vocabulary-parallel head (tensor parallelism): this rank's rows [v0, v0 + Vl) of the
 * LM head as one shard of head_split's arithmetic; the ranks' row statistics all-gathered and
 * combined in rank order, so every rank holds the loss, the log-sum-exp and the argmax ---- */

static pt_status tp_head_forward(pt_model *m, model_slot *sl)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, L = m->cfg.n_layer;
    const size_t S = PT_XENT_STATS;
    const float *h;
    PT_CHECK(head_norm_forward(m, sl, sl->x[L + 1 - m->first], m->R));
    PT_CHECK(tp_gather(m, sl->lnf + seg_off(m), sl->lnf, &h, "lnf", L + 1)); /* lnf keeps all N rows */
    PT_CHECK(be->matmul_forward(m->stream, sl->sh_exps[0], h, P(m, m->t_head_wte), NULL, N, C, m->Vl));
    PT_CHECK(RB(m, sl->sh_exps[0], (size_t)N * m->Vl)); /* the logits; the softmax statistics stay fp32 */
    PT_CHECK(be->xent_shard_forward(m->stream, m->tp_parts + (size_t)m->tpr * N * S, sl->sh_exps[0], sl->sh_rowmax[0],
                                    NULL, sl->sh_exps[0], sl->targets, N, m->Vl, m->v0, m->cfg.vocab_size));
    PT_CHECK(tp_call(m, 2, m->tp_parts, (size_t)m->tpn * N * S, "row statistics of the LM head", L + 1));
    PT_CHECK(be->xent_stats_combine(m->stream, sl->fstats, m->tp_parts, m->tpn, N));
    return be->xent_shard_finish(m->stream, sl->losses, sl->lse, sl->fstats, sl->targets, N, m->cfg.vocab_padded);
}

static pt_status tp_head_backward(pt_model *m, model_slot *sl, float loss_scale, int parts_)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, L = m->cfg.n_layer;
    const int b = L + 1 - m->first;
    if (parts_ & 1) { /* BWD_INPUT */
        PT_CHECK(be->xent_shard_backward(m->stream, sl->sh_exps[0], sl->sh_exps[0], sl->sh_rowmax[0], sl->lse,
                                         sl->targets, loss_scale, N, m->Vl, m->v0));
        PT_CHECK(RB(m, sl->sh_exps[0], (size_t)N * m->Vl));
        PT_CHECK(be->matmul_backward_input(m->stream, sl->dlnf, sl->sh_exps[0], P(m, m->t_head_wte), N, C, m->Vl));
        PT_CHECK(tp_reduce(m, sl->dlnf, "lnf gradient", L + 1));
        PT_CHECK(head_norm_backward_input(m, sl, sl->dx[b], sl->x[b], m->R));
    }
    if (parts_ & 2) { /* BWD_WEIGHT */
        PT_CHECK(be->matmul_backward_weight(m->stream, m->twin, NULL, sl->sh_exps[0], sl->lnf, N, C, m->Vl));
        PT_CHECK(head_norm_backward_weight(m, sl, sl->x[b], m->R));
    }
    return PT_OK;
}

/* ---- the layers ---- */

/* Block j forward from x into its activations a; with `out`, also the block's output. */
static pt_status block_forward(pt_model *m, int j, const float *x, const block_act *a, float *out)
{
    if (m->llama)
        return llama_block_forward(m, j, x, a, out);
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int B = m->opts.micro_batch, T = m->opts.seq_len, C = m->cfg.n_embd, N = B * T, R = m->R;
    const int t = m->t_block[j], L = m->first_block + j, F = m->AW;
    const size_t off = seg_off(m);
    const int bias_here = m->tpr == 0; /* a row-parallel bias is added once, by group rank 0, before the sum */
    const float *ln;
    float *part;
    PT_CHECK(be->add_layernorm_forward(s, NULL, a->ln1, a->ln1_mean, a->ln1_rstd, x, NULL, P(m, t + BP_LN1W),
                                       P(m, t + BP_LN1B), R, C, m->bf16));
    PT_CHECK(tp_gather(m, a->ln1, m->scratch_full, &ln, "ln1", L));
    PT_CHECK(be->matmul_forward(s, a->qkv, ln, P(m, t + BP_QKVW), P(m, t + BP_QKVB), N, C, m->W));
    PT_CHECK(RBP(m, SET_ACT, a->qkv, (size_t)N * m->W, BA_QKV));
    PT_CHECK(be->attention_forward(s, a->atty, a->att_saved, m->scratch_att, a->qkv, B, T, m->Cl, m->NHl, m->NHl));
    PT_CHECK(RBP(m, SET_ACT, a->atty, (size_t)N * m->Cl, BA_ATTY));
    part = m->sp ? m->scratch_red : a->res2;
    PT_CHECK(be->matmul_forward(s, part, a->atty, P(m, t + BP_PROJW), bias_here ? P(m, t + BP_PROJB) : NULL, N, m->Cl,
                                C));
    PT_CHECK(tp_reduce(m, part, "attn.proj", L));
    PT_CHECK(be->add_layernorm_forward(s, a->res2, a->ln2, a->ln2_mean, a->ln2_rstd, part + off, x,
                                       P(m, t + BP_LN2W), P(m, t + BP_LN2B), R, C, m->bf16));
    PT_CHECK(tp_gather(m, a->ln2, m->scratch_full, &ln, "ln2", L));
    PT_CHECK(be->matmul_forward(s, a->fch, ln, P(m, t + BP_FCW), NULL, N, C, F));
    PT_CHECK(be->bias_gelu_forward(s, a->fch, a->fch_gelu, P(m, t + BP_FCB), N, F, m->bf16));
    if (out) {
        part = m->sp ? m->scratch_red : out;
        PT_CHECK(be->matmul_forward(s, part, a->fch_gelu, P(m, t + BP_MPROJW), bias_here ? P(m, t + BP_MPROJB) : NULL,
                                    N, F, C));
        PT_CHECK(tp_reduce(m, part, "mlp.proj", L));
        PT_CHECK(be->add(s, out, part + off, a->res2, (size_t)R * C));
        PT_CHECK(RB(m, out, (size_t)R * C));
    }
    return PT_OK;
}

/* Block j: dx (N,C) from dy, keeping the intermediate gradients in g. */
static pt_status block_backward_input(pt_model *m, int j, const float *x, const block_act *a, const block_grad *g,
                                      const float *dy, float *dx)
{
    if (m->llama)
        return llama_block_backward_input(m, j, x, a, g, dy, dx);
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int B = m->opts.micro_batch, T = m->opts.seq_len, C = m->cfg.n_embd, N = B * T, R = m->R;
    const int t = m->t_block[j], L = m->first_block + j, F = m->AW;
    const size_t off = seg_off(m);
    const float *dyf, *dres2f;
    PT_CHECK(tp_gather(m, dy, g->dyf, &dyf, "block output gradient", L));
    PT_CHECK(be->matmul_backward_input(s, g->dfch, dyf, P(m, t + BP_MPROJW), N, F, C));
    PT_CHECK(be->gelu_backward_round(s, g->dfch, a->fch, g->dfch, (size_t)N * F, m->bf16));
    PT_CHECK(be->matmul_backward_input(s, g->dln2, g->dfch, P(m, t + BP_FCW), N, C, F));
    PT_CHECK(tp_reduce(m, g->dln2, "ln2 gradient", L));
    PT_CHECK(be->layernorm_backward_input_add(s, g->dres2 + off, g->dln2 + off, a->res2, P(m, t + BP_LN2W),
                                              a->ln2_mean, a->ln2_rstd, dy, R, C, m->bf16));
    PT_CHECK(tp_gather(m, g->dres2 + off, g->dres2, &dres2f, "residual gradient", L));
    PT_CHECK(be->matmul_backward_input(s, m->scratch_nc, dres2f, P(m, t + BP_PROJW), N, m->Cl, C));
    PT_CHECK(RB(m, m->scratch_nc, (size_t)N * m->Cl));
    PT_CHECK(be->attention_backward(s, g->dqkv, m->scratch_att, m->scratch_nc, a->qkv, a->atty, a->att_saved, B, T,
                                    m->Cl, m->NHl, m->NHl));
    PT_CHECK(RBP(m, SET_GRAD, g->dqkv, (size_t)N * m->W, BG_DQKV));
    PT_CHECK(be->matmul_backward_input(s, g->dln1, g->dqkv, P(m, t + BP_QKVW), N, C, m->W));
    PT_CHECK(tp_reduce(m, g->dln1, "ln1 gradient", L));
    PT_CHECK(be->layernorm_backward_input_add(s, dx, g->dln1 + off, x, P(m, t + BP_LN1W), a->ln1_mean, a->ln1_rstd,
                                              g->dres2 + off, R, C, m->bf16));
    return PT_OK;
}

/* Block j: parameter gradients from the kept activations and intermediate gradients. */
static pt_status block_backward_weight(pt_model *m, int j, const float *x, const block_act *a, const block_grad *g,
                                       const float *dy)
{
    if (m->llama)
        return llama_block_backward_weight(m, j, x, a, g, dy);
    const pt_backend *be = m->be;
    pt_stream *s = m->stream;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, R = m->R;
    const int t = m->t_block[j], L = m->first_block + j, F = m->AW;
    const size_t off = seg_off(m);
    const float *ln;
    /* the row-parallel biases' gradients come from the whole (gathered) output gradient: the same on
     * every rank of the group, as their values are */
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + BP_MPROJW), G(m, t + BP_MPROJB), m->sp ? g->dyf : dy, a->fch_gelu,
                                        N, F, C));
    PT_CHECK(tp_gather(m, a->ln2, m->scratch_full, &ln, "ln2", L)); /* with sp: gathered again, not kept */
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + BP_FCW), G(m, t + BP_FCB), g->dfch, ln, N, C, F));
    PT_CHECK(be->layernorm_backward_weight(s, G(m, t + BP_LN2W), G(m, t + BP_LN2B), g->dln2 + off, a->res2,
                                           a->ln2_mean, a->ln2_rstd, R, C));
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + BP_PROJW), G(m, t + BP_PROJB), g->dres2, a->atty, N, m->Cl, C));
    PT_CHECK(tp_gather(m, a->ln1, m->scratch_full, &ln, "ln1", L));
    PT_CHECK(be->matmul_backward_weight(s, G(m, t + BP_QKVW), G(m, t + BP_QKVB), g->dqkv, ln, N, C, m->W));
    /* The key bias's gradient is exactly zero: it adds q.b to every score of a softmax row, which
     * softmax ignores. Computed, it is rounding noise (~1e-11) that AdamW's first steps turn into
     * lr-sized random moves which differ with every summation order (data-parallel, micro-batch
     * splits). Store the exact value instead. */
    PT_CHECK(be->memset_zero(s, G(m, t + BP_QKVB) + m->Cl, (size_t)m->Cl * sizeof(float)));
    PT_CHECK(be->layernorm_backward_weight(s, G(m, t + BP_LN1W), G(m, t + BP_LN1B), g->dln1 + off, x, a->ln1_mean,
                                           a->ln1_rstd, R, C));
    return PT_OK;
}

/* The backward passes in one place: input gradients, weight gradients, or both per layer (the
 * same kernels on the same inputs in every mode, so all three give the same bits). */
enum { BWD_INPUT = 1, BWD_WEIGHT = 2 };

/* ---- the LM head as vocabulary shards (head_split > 1; model_config.h) ----
 * Local shard j is global shard k = sh0 + j, layer L+1+k, input boundary L+1+k. Its hidden state
 * h is the layernorm output (k = 0) or the h part of the input boundary; a boundary between two
 * shards is h (N,C) then the running statistics (N, PT_XENT_STATS) going forward, and dh (N,C)
 * then the log-sum-exp (N) and zeros going back. */

static float *shard_h(pt_model *m, model_slot *sl, int k)
{
    return k == 0 ? sl->lnf : sl->x[m->cfg.n_layer + 1 + k - m->first];
}

static pt_status shards_forward(pt_model *m, model_slot *sl)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, L = m->cfg.n_layer;
    for (int j = 0; j < m->n_sh; j++) {
        const int k = m->sh0 + j, bi = L + 1 + k - m->first, last = k == m->K - 1;
        int v0, v1;
        pt_model_head_shard_rows(&m->cfg, k, &v0, &v1);
        const int Vk = v1 - v0;
        if (k == 0)
            PT_CHECK(head_norm_forward(m, sl, sl->x[bi], N));
        const float *h = shard_h(m, sl, k);
        const float *stats_in = k == 0 ? NULL : sl->x[bi] + (size_t)N * C;
        float *stats_out = last ? sl->fstats : sl->x[bi + 1] + (size_t)N * C;
        PT_CHECK(be->matmul_forward(m->stream, sl->sh_exps[j], h, P(m, m->t_head_wte) + (size_t)v0 * C, NULL, N, C,
                                    Vk));
        PT_CHECK(RB(m, sl->sh_exps[j], (size_t)N * Vk));
        PT_CHECK(be->xent_shard_forward(m->stream, stats_out, sl->sh_exps[j], sl->sh_rowmax[j], stats_in,
                                        sl->sh_exps[j], sl->targets, N, Vk, v0, m->cfg.vocab_size));
        if (last)
            PT_CHECK(be->xent_shard_finish(m->stream, sl->losses, sl->lse, sl->fstats, sl->targets, N,
                                           m->cfg.vocab_padded));
        else
            PT_CHECK(be->memcpy_d2d(m->stream, sl->x[bi + 1], h, (size_t)N * C * sizeof(float)));
    }
    return PT_OK;
}

/* Backward over the local shards, last to first; `parts` as model_backward's. */
static pt_status shards_backward(pt_model *m, model_slot *sl, float loss_scale, int parts)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, L = m->cfg.n_layer;
    for (int j = m->n_sh - 1; j >= 0; j--) {
        const int k = m->sh0 + j, bi = L + 1 + k - m->first, last = k == m->K - 1;
        int v0, v1;
        pt_model_head_shard_rows(&m->cfg, k, &v0, &v1);
        const int Vk = v1 - v0;
        const float *W = P(m, m->t_head_wte) + (size_t)v0 * C;
        float *dh = k == 0 ? sl->dlnf : sl->dx[bi]; /* the gradient at this shard's h */
        if (parts & BWD_INPUT) {
            const float *lse = last ? sl->lse : sl->dx[bi + 1] + (size_t)N * C;
            PT_CHECK(be->xent_shard_backward(m->stream, sl->sh_exps[j], sl->sh_exps[j], sl->sh_rowmax[j], lse,
                                             sl->targets, loss_scale, N, Vk, v0));
            PT_CHECK(RB(m, sl->sh_exps[j], (size_t)N * Vk));
            PT_CHECK(be->matmul_backward_input(m->stream, dh, sl->sh_exps[j], W, N, C, Vk));
            PT_CHECK(RB(m, dh, (size_t)N * C));
            if (!last) { /* h feeds every later shard too: add their gradient (a + b == b + a exactly) */
                PT_CHECK(be->add(m->stream, dh, dh, sl->dx[bi + 1], (size_t)N * C));
                PT_CHECK(RB(m, dh, (size_t)N * C));
            }
            if (k > 0)
                PT_CHECK(be->memcpy_d2d(m->stream, sl->dx[bi] + (size_t)N * C, lse, (size_t)N * sizeof(float)));
            else
                PT_CHECK(head_norm_backward_input(m, sl, sl->dx[bi], sl->x[bi], N));
        }
        if (parts & BWD_WEIGHT) {
            PT_CHECK(be->matmul_backward_weight(m->stream, m->twin + (size_t)v0 * C, NULL, sl->sh_exps[j],
                                                shard_h(m, sl, k), N, C, Vk));
            if (k == 0)
                PT_CHECK(head_norm_backward_weight(m, sl, sl->x[bi], N));
            PT_CHECK(grad_hook_head_rows(m, L + 1 + k, v0, v1));
            if (k == 0)
                PT_CHECK(grad_hook_tensors(m, L + 1, m->t_lnfw, m->t_lnfb >= 0 ? m->t_lnfb : m->t_lnfw));
        }
    }
    return PT_OK;
}

/* Local block index j <-> boundary index of its input. */
static int block_in(const pt_model *m, int j) { return m->first_block + j - m->first; }

/* A chunked head (m->hc rows at a time): each chunk's logits (bf16-rounded under bf16), its
 * softmax and losses, and with `grads` its loss gradient at once: dlogits (rounded), the rows'
 * dlnf = dlogits W (rounded) and dW += dlogits^T lnf, chunk after chunk, so the (N, Vp) logits
 * never exist. The same operations in the same order whether the forward (train) or the
 * backward (a slot whose forward made no gradient) runs them, so both give the same bits. */
static pt_status head_chunks(pt_model *m, model_slot *sl, int grads, float loss_scale)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, Vp = m->cfg.vocab_padded, N = m->opts.micro_batch * m->opts.seq_len;
    float *lg = m->scratch_logits;
    for (int r0 = 0; r0 < N; r0 += m->hc) {
        const int R = N - r0 < m->hc ? N - r0 : m->hc;
        const float *lnf = sl->lnf + (size_t)r0 * C;
        const int32_t *tg = sl->targets + r0;
        PT_CHECK(be->matmul_forward(m->stream, lg, lnf, P(m, m->t_head_wte), NULL, R, C, Vp));
        /* the logits rounded as the softmax reads them, dlogits as written (bf16) */
        PT_CHECK(be->crossentropy_forward(m->stream, sl->losses + r0, lg, lg, tg, R, Vp, m->bf16));
        if (!grads)
            continue;
        PT_CHECK(be->crossentropy_backward(m->stream, lg, lg, tg, loss_scale, R, Vp, m->bf16));
        PT_CHECK(be->matmul_backward_input(m->stream, sl->dlnf + (size_t)r0 * C, lg, P(m, m->t_head_wte), R, C, Vp));
        PT_CHECK(RB(m, sl->dlnf + (size_t)r0 * C, (size_t)R * C));
        PT_CHECK(be->matmul_backward_weight(m->stream, m->twin, NULL, lg, lnf, R, C, Vp));
    }
    sl->head_grad = grads;
    sl->head_scale = loss_scale;
    return PT_OK;
}

static pt_status check_loss_scale(float loss_scale);

/* The bf16 stash of set `set` around the pass that makes its tensors of slot s's block j in the
 * shared area (a forward; a backward_input): stash_begin before it (pack: they are to be kept, as
 * the set is on and, for the gradients, backward_weight comes later), stash_end after it with its
 * status, which packs into the slot what the pass's rounding did not (RBP). The area then holds all
 * of them for (s, j). */
static void stash_begin(pt_model *m, int set, int s, int j, int pack)
{
    stash_area *a = &m->area[set];
    a->slot = -1; /* the area is rewritten */
    a->pack = pack ? &m->slots[s].stash[set][j * set_n[set]] : NULL;
    a->packed = 0;
}

static pt_status stash_end(pt_model *m, int set, int s, int j, pt_status st)
{
    stash_area *a = &m->area[set];
    const int pack = a->pack != NULL;
    a->pack = NULL;
    if (st != PT_OK || !pack)
        return st;
    const model_slot *sl = &m->slots[s];
    const void *base = set == SET_ACT ? (const void *)&sl->act[j] : (const void *)&sl->grad[j];
    for (int k = 0; k < set_n[set]; k++)
        if (!(a->packed & (1u << k)))
            PT_CHECK(m->be->pack_bf16(m->stream, sl->stash[set][j * set_n[set] + k], field_of(base, set_off[set][k]),
                                      set_numel(m, set, k)));
    a->slot = s;
    a->block = j;
    a->have = (1u << set_n[set]) - 1u;
    return PT_OK;
}

/* Widens the tensors in `need` (bits k) of set `set` of slot s's block j into the shared area, all
 * but those it already holds for (s, j): a backward right after the forward, backward_weight
 * right after backward_input, widen less. */
static pt_status stash_widen(pt_model *m, int set, int s, int j, unsigned need)
{
    stash_area *a = &m->area[set];
    const model_slot *sl = &m->slots[s];
    const void *base = set == SET_ACT ? (const void *)&sl->act[j] : (const void *)&sl->grad[j];
    if (a->slot != s || a->block != j)
        a->have = 0;
    a->slot = s;
    a->block = j;
    for (int k = 0; k < set_n[set]; k++) {
        if (!(need & (1u << k)) || (a->have & (1u << k)))
            continue;
        PT_CHECK(m->be->unpack_bf16(m->stream, field_of(base, set_off[set][k]), sl->stash[set][j * set_n[set] + k],
                                    set_numel(m, set, k)));
        a->have |= 1u << k;
    }
    return PT_OK;
}

static pt_status model_forward(pt_model *m, int s, int train, float loss_scale)
{
    PT_CHECK(slot_check(m, s, "forward"));
    model_slot *sl = &m->slots[s];
    if (sl->state != SLOT_FREE)
        return pt_fail(PT_EINVAL, "forward: slot %d still holds a micro-batch (%s pending); run its backward or "
                                  "pt_model_slot_release first",
                       s, sl->state == SLOT_FORWARD ? "backward" : "backward_weight");
    const pt_backend *be = m->be;
    const int B = m->opts.micro_batch, T = m->opts.seq_len, C = m->cfg.n_embd, N = B * T;
    PT_CHECK(weights_ready(m));
    if (m->has_emb && m->tpn <= 1) {
        PT_CHECK(be->embedding_forward(m->stream, sl->x[1 - m->first], sl->tokens, P(m, m->t_wte),
                                       m->t_wpe >= 0 ? P(m, m->t_wpe) : NULL, B, T, C));
        PT_CHECK(RB(m, sl->x[1 - m->first], (size_t)N * C));
    } else if (m->has_emb) { /* this rank's vocabulary rows; the position rows on group rank 0; summed */
        float *e = m->sp ? m->scratch_red : sl->x[1 - m->first];
        PT_CHECK(be->embedding_range_forward(m->stream, e, sl->tokens, P(m, m->t_wte),
                                             m->t_wpe >= 0 && m->tpr == 0 ? P(m, m->t_wpe) : NULL, m->v0, m->Vl, B, T,
                                             C));
        PT_CHECK(tp_reduce(m, e, "embedding", 0));
        if (m->sp)
            PT_CHECK(be->memcpy_d2d(m->stream, sl->x[1 - m->first], e + seg_off(m),
                                    (size_t)m->R * C * sizeof(float)));
    }
    for (int j = 0; j < m->n_blocks; j++) {
        int b = block_in(m, j);
        stash_begin(m, SET_ACT, s, j, m->stash[SET_ACT]);
        PT_CHECK(stash_end(m, SET_ACT, s, j, block_forward(m, j, sl->x[b], &sl->act[j], sl->x[b + 1])));
    }
    if (m->K > 1)
        PT_CHECK(shards_forward(m, sl));
    else if (m->has_head && m->tpn > 1)
        PT_CHECK(tp_head_forward(m, sl));
    else if (m->has_head) {
        const float *x = sl->x[m->cfg.n_layer + 1 - m->first];
        const int Vp = m->cfg.vocab_padded;
        PT_CHECK(head_norm_forward(m, sl, x, N));
        if (m->hc)
            PT_CHECK(head_chunks(m, sl, train, loss_scale));
        else {
            PT_CHECK(be->matmul_forward(m->stream, sl->logits, sl->lnf, P(m, m->t_head_wte), NULL, N, C, Vp));
            /* the logits rounded as the softmax reads them; softmax and loss in fp32 */
            PT_CHECK(be->crossentropy_forward(m->stream, sl->losses, sl->logits, sl->logits, sl->targets, N, Vp,
                                              m->bf16));
        }
    }
    sl->state = SLOT_FORWARD;
    return PT_OK;
}

pt_status pt_model_forward(pt_model *m, int s) { return model_forward(m, s, 0, 0.0f); }

pt_status pt_model_forward_train(pt_model *m, int s, float loss_scale)
{
    PT_CHECK(check_loss_scale(loss_scale));
    return model_forward(m, s, 1, loss_scale);
}

/* Head backward_input: dlogits (in place of the probabilities), dlnf, and dx at the head's input. */
static pt_status head_backward_input(pt_model *m, model_slot *sl, float loss_scale)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, Vp = m->cfg.vocab_padded;
    const int b = m->cfg.n_layer + 1 - m->first;
    if (m->hc && sl->head_grad && sl->head_scale != loss_scale)
        return pt_fail(PT_EINVAL, "backward: loss scale %g differs from the %g its forward_train made the chunked head's "
                                  "gradient with; pass the same scale to both",
                       (double)loss_scale, (double)sl->head_scale);
    if (m->hc && !sl->head_grad) /* a plain forward: the chunks again, with their gradient */
        PT_CHECK(head_chunks(m, sl, 1, loss_scale));
    if (!m->hc) {
        PT_CHECK(be->crossentropy_backward(m->stream, sl->logits, sl->logits, sl->targets, loss_scale, N, Vp,
                                           m->bf16));
        PT_CHECK(be->matmul_backward_input(m->stream, sl->dlnf, sl->logits, P(m, m->t_head_wte), N, C, Vp));
        PT_CHECK(RB(m, sl->dlnf, (size_t)N * C));
    }
    PT_CHECK(head_norm_backward_input(m, sl, sl->dx[b], sl->x[b], N));
    return PT_OK;
}

static pt_status head_backward_weight(pt_model *m, model_slot *sl)
{
    const pt_backend *be = m->be;
    const int C = m->cfg.n_embd, N = m->opts.micro_batch * m->opts.seq_len, Vp = m->cfg.vocab_padded;
    const int b = m->cfg.n_layer + 1 - m->first;
    if (!m->hc) /* chunked: dW was added chunk by chunk with the loss gradient */
        PT_CHECK(be->matmul_backward_weight(m->stream, m->twin, NULL, sl->logits, sl->lnf, N, C, Vp));
    sl->head_grad = 0;
    PT_CHECK(head_norm_backward_weight(m, sl, sl->x[b], N));
    return PT_OK;
}

static pt_status embedding_backward_weight(pt_model *m, model_slot *sl)
{
    if (m->tpn <= 1)
        return m->be->embedding_backward(m->stream, G(m, m->t_wte), m->t_wpe >= 0 ? G(m, m->t_wpe) : NULL,
                                         sl->dx[1 - m->first], sl->tokens, m->opts.micro_batch, m->opts.seq_len,
                                         m->cfg.n_embd);
    /* every rank: its vocabulary rows, and the position rows from the whole gradient (the same on
     * every rank, as wpe is) */
    const float *d;
    PT_CHECK(tp_gather(m, sl->dx[1 - m->first], m->scratch_full, &d, "embedding gradient", 0));
    return m->be->embedding_range_backward(m->stream, G(m, m->t_wte), m->t_wpe >= 0 ? G(m, m->t_wpe) : NULL, d,
                                           sl->tokens, m->v0, m->Vl, m->opts.micro_batch, m->opts.seq_len,
                                           m->cfg.n_embd);
}


static pt_status model_backward(pt_model *m, int s, float loss_scale, int parts)
{
    model_slot *sl = &m->slots[s];
    _Static_assert(BWD_INPUT == 1 && BWD_WEIGHT == 2, "tp_head_backward's parts");
    PT_CHECK(weights_ready(m));
    if (m->K > 1) {
        PT_CHECK(shards_backward(m, sl, loss_scale, parts));
    } else if (m->has_head) {
        if (parts & BWD_INPUT)
            PT_CHECK(m->tpn > 1 ? tp_head_backward(m, sl, loss_scale, BWD_INPUT) : head_backward_input(m, sl, loss_scale));
        if (parts & BWD_WEIGHT) {
            PT_CHECK(m->tpn > 1 ? tp_head_backward(m, sl, 0.0f, BWD_WEIGHT) : head_backward_weight(m, sl));
            PT_CHECK(grad_hook_head_rows(m, m->cfg.n_layer + 1, 0, m->Vl));
            PT_CHECK(grad_hook_tensors(m, m->cfg.n_layer + 1, m->t_lnfw, m->t_lnfb >= 0 ? m->t_lnfb : m->t_lnfw));
        }
    }
    for (int j = m->n_blocks - 1; j >= 0; j--) {
        int b = block_in(m, j);
        const block_act *a = &sl->act[j];
        /* fused_only, first block: dx[b] is x[b]'s buffer, which backward_weight still reads; the
         * gradient goes through the (N,C) scratch and replaces the input after it */
        const int in_place = sl->dx[b] == sl->x[b];
        assert(!in_place || parts == (BWD_INPUT | BWD_WEIGHT));
        if (m->opts.recompute) /* internals of block j from its kept input */
            PT_CHECK(block_forward(m, j, sl->x[b], a, NULL));
        if (m->stash[SET_ACT]) /* the internals this pass reads, from the slot's stash */
            PT_CHECK(stash_widen(m, SET_ACT, s, j, (parts & BWD_INPUT ? BA_READ_INPUT : 0u) |
                                              (parts & BWD_WEIGHT ? BA_READ_WEIGHT : 0u)));
        if (parts & BWD_INPUT) {
            /* the kept gradients stashed when backward_weight comes later */
            stash_begin(m, SET_GRAD, s, j, m->stash[SET_GRAD] && !(parts & BWD_WEIGHT));
            PT_CHECK(stash_end(m, SET_GRAD, s, j,
                               block_backward_input(m, j, sl->x[b], a, &sl->grad[j], sl->dx[b + 1],
                                                    in_place ? m->scratch_nc : sl->dx[b])));
        }
        if (parts & BWD_WEIGHT) {
            if (m->stash[SET_GRAD] && !(parts & BWD_INPUT))
                PT_CHECK(stash_widen(m, SET_GRAD, s, j, (1u << BG_ROUNDED) - 1u));
            PT_CHECK(block_backward_weight(m, j, sl->x[b], a, &sl->grad[j], sl->dx[b + 1]));
            PT_CHECK(grad_hook_tensors(m, m->first_block + j, m->t_block[j],
                                       m->t_block[j] + (m->llama ? LP_COUNT : BP_COUNT) - 1));
        }
        if (in_place)
            PT_CHECK(m->be->memcpy_d2d(m->stream, sl->dx[b], m->scratch_nc, (size_t)m->R * m->cfg.n_embd * sizeof(float)));
    }
    if (parts & BWD_WEIGHT && m->has_emb) {
        PT_CHECK(embedding_backward_weight(m, sl));
        PT_CHECK(grad_hook_tensors(m, 0, m->t_wte, m->t_wpe >= 0 ? m->t_wpe : m->t_wte));
    }
    return PT_OK;
}

static pt_status check_loss_scale(float loss_scale)
{
    if (!isfinite(loss_scale))
        return pt_fail(PT_EINVAL, "backward: loss_scale %g is not finite; pass 1 / (tokens in the global batch)",
                       (double)loss_scale);
    return PT_OK;
}

pt_status pt_model_backward_input(pt_model *m, int s, float loss_scale)
{
    PT_CHECK(slot_check(m, s, "backward_input"));
    PT_CHECK(check_loss_scale(loss_scale));
    if (m->opts.fused_only)
        return pt_fail(PT_EINVAL, "backward_input: this model was created with fused_only (no split backward); "
                                  "create it with fused_only = 0 to run zero-bubble schedules");
    if (m->slots[s].state != SLOT_FORWARD)
        return pt_fail(PT_EINVAL, "backward_input: slot %d has %s; run forward on it first", s,
                       m->slots[s].state == SLOT_FREE ? "no forward" : "already had its backward_input");
    PT_CHECK(model_backward(m, s, loss_scale, BWD_INPUT));
    m->slots[s].state = SLOT_INPUT_GRAD;
    return PT_OK;
}

pt_status pt_model_backward_weight(pt_model *m, int s)
{
    PT_CHECK(slot_check(m, s, "backward_weight"));
    if (m->slots[s].state != SLOT_INPUT_GRAD)
        return pt_fail(PT_EINVAL, "backward_weight: slot %d has no backward_input pending; run backward_input first",
                       s);
    PT_CHECK(model_backward(m, s, 0.0f, BWD_WEIGHT));
    m->slots[s].state = SLOT_FREE;
    return PT_OK;
}

pt_status pt_model_backward(pt_model *m, int s, float loss_scale)
{
    PT_CHECK(slot_check(m, s, "backward"));
    PT_CHECK(check_loss_scale(loss_scale));
    if (m->slots[s].state != SLOT_FORWARD)
        return pt_fail(PT_EINVAL, "backward: slot %d has %s; run forward on it first", s,
                       m->slots[s].state == SLOT_FREE ? "no forward" : "a backward_input pending its backward_weight");
    PT_CHECK(model_backward(m, s, loss_scale, BWD_INPUT | BWD_WEIGHT));
    m->slots[s].state = SLOT_FREE;
    return PT_OK;
}

pt_status pt_model_slot_loss(pt_model *m, int s, double *loss_sum, int64_t *n_tokens)
{
    PT_CHECK(slot_check(m, s, "slot loss"));
    if (!m->has_head)
        return pt_fail(PT_EINVAL, "slot loss: this chunk (layers %d..%d) has no loss; ask the chunk holding layer %d",
                       m->first, m->last, pt_model_n_layers(&m->cfg) - 1);
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len;
    model_slot *sl = &m->slots[s];
    PT_CHECK(m->be->memcpy_d2h(m->stream, m->host_losses, sl->losses, N * sizeof(float)));
    PT_CHECK(m->be->memcpy_d2h(m->stream, m->host_targets, sl->targets, N * sizeof(int32_t)));
    double sum = 0.0;
    int64_t n = 0;
    for (size_t i = 0; i < N; i++) {
        if (m->host_targets[i] >= 0) {
            sum += m->host_losses[i];
            n++;
        }
    }
    *loss_sum = sum;
    *n_tokens = n;
    return PT_OK;
}

pt_status pt_model_slot_logits(pt_model *m, int s, float *out)
{
    PT_CHECK(slot_check(m, s, "slot logits"));
    if (!m->has_head)
        return pt_fail(PT_EINVAL, "slot logits: this chunk (layers %d..%d) has no head", m->first, m->last);
    if (m->xs)
        return pt_fail(PT_EINVAL, "slot logits: the model splits its LM head into %d vocabulary shards, so no layer "
                                  "holds a whole row of logits; use head_split 1 and no tensor parallelism to read "
                                  "logits",
                       m->K > 1 ? m->K : m->tpn);
    const int C = m->cfg.n_embd, Vp = m->cfg.vocab_padded, N = m->opts.micro_batch * m->opts.seq_len;
    const model_slot *sl = &m->slots[s];
    for (int r0 = 0; r0 < N; r0 += MODEL_LOGIT_ROWS) {
        int rows = N - r0 < MODEL_LOGIT_ROWS ? N - r0 : MODEL_LOGIT_ROWS;
        PT_CHECK(m->be->matmul_forward(m->stream, m->scratch_logits, sl->lnf + (size_t)r0 * C, P(m, m->t_head_wte),
                                       NULL, rows, C, Vp));
        PT_CHECK(RB(m, m->scratch_logits, (size_t)rows * Vp));
        PT_CHECK(m->be->memcpy_d2h(m->stream, out + (size_t)r0 * Vp, m->scratch_logits,
                                   (size_t)rows * Vp * sizeof(float)));
    }
    return PT_OK;
}

pt_status pt_model_slot_predict(pt_model *m, int s, int32_t *pred)
{
    PT_CHECK(slot_check(m, s, "slot predict"));
    if (!m->has_head)
        return pt_fail(PT_EINVAL, "slot predict: this chunk (layers %d..%d) has no loss layer; ask the chunk holding "
                                  "layer %d",
                       m->first, m->last, pt_model_n_layers(&m->cfg) - 1);
    const size_t N = (size_t)m->opts.micro_batch * m->opts.seq_len;
    const model_slot *sl = &m->slots[s];
    if (m->xs) { /* the shards' running argmax */
        PT_CHECK(m->be->memcpy_d2h(m->stream, m->host_pred, sl->fstats, N * PT_XENT_STATS * sizeof(float)));
        for (size_t r = 0; r < N; r++)
            pred[r] = (int32_t)m->host_pred[r * PT_XENT_STATS + 4];
        return PT_OK;
    }
    const int V = m->cfg.vocab_size, Vp = m->cfg.vocab_padded;
    for (size_t r0 = 0; r0 < N; r0 += MODEL_LOGIT_ROWS) {
        size_t n = N - r0 < MODEL_LOGIT_ROWS ? N - r0 : MODEL_LOGIT_ROWS;
        const float *src = sl->logits + r0 * (size_t)Vp;
        if (m->hc) { /* no probabilities kept: the logits again, a few rows at a time (the same argmax) */
            PT_CHECK(m->be->matmul_forward(m->stream, m->scratch_logits, sl->lnf + r0 * (size_t)m->cfg.n_embd,
                                           P(m, m->t_head_wte), NULL, (int)n, m->cfg.n_embd, Vp));
            PT_CHECK(RB(m, m->scratch_logits, n * (size_t)Vp));
            src = m->scratch_logits;
        }
        PT_CHECK(m->be->memcpy_d2h(m->stream, m->host_pred, src, n * (size_t)Vp * sizeof(float)));
        for (size_t r = 0; r < n; r++) {
            const float *p = m->host_pred + r * (size_t)Vp;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (p[v] > p[best])
                    best = v;
            pred[r0 + r] = best;
        }
    }
    return PT_OK;
}
