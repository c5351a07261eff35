/* partition/partition_internal.h — helpers shared by the files of partition/ (not public). */
#ifndef PT_PARTITION_INTERNAL_H
#define PT_PARTITION_INTERNAL_H

#include "pipetrain/partition.h"

#define PT_COST_FILE_FORMAT "pipetrain-layer-costs"

/* Bytes of state per allocated parameter element on `dev` (weights, gradients, AdamW m and v,
 * and the bf16 copy on GPUs). */
double pt_part_state_bytes_per_param(const pt_device *dev);

/* The LM-head matrix a chunk holding layers first..last keeps for its head layers, per chunk and
 * not per layer: none without head layers; else Vp*C elements. Tied (gpt2, tied llama): the wte
 * copy, *full_copy = 1 when the chunk lacks the embedding (a whole copy: weights, gradient, AdamW m
 * and v, counted in memory, the data-parallel all-reduce and the optimizer step) and 0 with it
 * (only an fp32 twin gradient, in memory). Untied (llama): the chunk's lm_head, always a whole
 * tensor (*full_copy = 1), embedding or not. One however many vocabulary shards the chunk holds.
 * Returns the element count. */
double pt_part_chunk_tied_elems(const pt_model_config *cfg, int first, int last, int *full_copy);

/* Bytes of that matrix in a chunk's memory: the whole tensor's state or the 4-byte twin. */
double pt_part_chunk_tied_state_bytes(const pt_model_config *cfg, const pt_device *dev, int first, int last);

/* Bytes of one transformer block's internals per micro-batch of (B,T) (what recomputation drops
 * from each slot and re-materialises once per chunk), gpt2 or llama as models/ carves them. */
double pt_part_block_act_bytes(const pt_model_config *cfg, int B, int T, double elem_bytes);
/* The same for one of `tp` tensor-parallel ranks (pt_cost_tp_split's split; `sp`: sequence
 * parallelism); tp <= 1 is pt_part_block_act_bytes. */
double pt_part_block_act_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, int tp, int sp);
/* Of those, the internals bf16 rounds (all but the norm statistics and attention's log-sum-exp),
 * at elem_bytes an element; and the bytes a slot keeps of a block: those at stash_bytes (the bf16
 * stash, when below elem_bytes; else elem_bytes) plus the fp32 statistics. */
double pt_part_block_rounded_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, int tp, int sp);
double pt_part_block_kept_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, double stash_bytes,
                                   int tp, int sp);
/* The device's stash_elem_bytes where it is below act_elem_bytes (a bf16 stash), else act_elem_bytes. */
double pt_part_stash_elem_bytes(const pt_device *dev);

/* Bytes a chunk holding layers first..last allocates once, whatever the number of slots: attention
 * and gradient scratch (with blocks; for llama also the (N,H) SwiGLU gradient, the rotary tables
 * and, with grouped kv heads, the attention backward's dK/dV partials), the recomputation area
 * (or, not recomputing, with stash_bytes below elem_bytes: the bf16 stash's block area), logit
 * rows (with an unsplit head),
 * and with fused_only the backward's shared gradients (block gradients, dlnf, and one (N,C)
 * buffer per parity of the chunk's inner boundaries up to the head's input, at most two). */
double pt_part_chunk_fixed_bytes(const pt_model_config *cfg, int B, int T, double elem_bytes, int first, int last,
                                 int recompute, int fused_only);
/* The same for one of `tp` tensor-parallel ranks: the heads' scratch, the MLP-width gradient and
 * the logit rows / T, the (N,C) buffers / T with `sp` only. tp <= 1: pt_part_chunk_fixed_bytes. */
double pt_part_chunk_fixed_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, double stash_bytes,
                                    int first, int last, int recompute, int fused_only, int tp, int sp);

/* 1 when the runtime runs `schedule` with pt_model_opts.fused_only (a known schedule without split
 * backward: gpipe, 1f1b, interleaved, looped-bfs); 0 for zb-h1, zb-h2, zbv and unknown names. */
int pt_part_sched_fused_only(const char *schedule);

/* Schedules the planner knows: returns the default chunks per rank (1 or 2), or 0 when unknown. */
int pt_part_sched_default_chunks(const char *schedule);

/* Checks that V suits the schedule; PT_EINVAL naming both. */
pt_status pt_part_sched_check_chunks(const char *schedule, int V);

/* Micro-batches whose activations each virtual stage keeps at its peak under `schedule` with P
 * ranks, V chunks and M micro-batches (what the runtime sizes its slots by): out[P*V]. Exact for
 * gpipe, 1f1b, looped-bfs, zb-h1, zb-h2 and (from the generator) interleaved; an upper bound for
 * zbv, whose cost-driven placement varies. PT_EINVAL for an unknown schedule. */
pt_status pt_part_inflight_counts(const char *schedule, int P, int V, int M, int *out);

/* Everything the dynamic program and the pricing need about one (model, device, topology, P, V,
 * D, B, M, T, schedule) point: per-layer costs as prefix sums and per-boundary transfer times. */
typedef struct pt_part_ctx {
    const pt_model_config *cfg;
    const pt_device *dev;
    const pt_topology *topo;
    int L, P, V, D, S, B, M, T;
    char schedule[32];
    pt_layer_cost *lc;     /* [L] */
    double *pre_time;      /* [L+1] prefix sums of t_fwd + t_bwd_input + t_bwd_weight */
    double *pre_fwd_blocks;/* [L+1] prefix sums of t_fwd of blocks (what recomputation repeats) */
    double *pre_state;     /* [L+1] state bytes */
    double *pre_act;       /* [L+1] activation bytes kept */
    double *pre_act_rc;    /* [L+1] with recomputation */
    double *pre_act_split; /* [L+1] the part of either kept only for split backward */
    double *pre_params;    /* [L+1] logical parameters */
    double *pre_alloc;     /* [L+1] elements the layers allocate (n_params_alloc; no tied wte) */
    double *comm;          /* [S] one-way transfer time of the boundary after chunk k (last: 0),
                              priced at the widest boundary's bytes */
    int *inflight;         /* [S] micro-batches chunk k holds at its peak */
    int *inter;            /* [S] boundary after chunk k crosses nodes */
    double boundary_act;   /* per slot: a chunk's input and its gradient (2 NC), unless it starts at 0 */
    double shard_boundary_act; /* the same for a chunk starting between head shards (2 N (C+5)) */
    double nc_bytes;       /* one (B,T,C) activation */
    int fused_only;        /* the schedule runs without split backward (pt_part_sched_fused_only) */
    int tp, sp;            /* tensor-parallel ranks per stage (T, >= 1) and sequence parallelism: the layer
                              costs are one TP rank's (pt_cost_tp_split); a stage's T ranks are
                              consecutive global ranks, (d * P + s) * T + t */
    int zero;              /* pt_plan.zero: with D > 1 each replica holds 1/D of the AdamW moments; 0 after
                              pt_part_ctx_create, set by the caller */
} pt_part_ctx;

pt_status pt_part_ctx_create(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                             const pt_layer_times *measured, int P, int V, int D, int B, int M, int T,
                             const char *schedule, pt_part_ctx **out);
/* The same with tensor parallelism: `tp` ranks per stage (1: pt_part_ctx_create), `sp` sequence
 * parallelism. PT_EINVAL as pt_plan_check_tp (with the topology's devices per node). */
pt_status pt_part_ctx_create_tp(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                                const pt_layer_times *measured, int P, int V, int D, int B, int M, int T,
                                const char *schedule, int tp, int sp, pt_part_ctx **out);
void pt_part_ctx_destroy(pt_part_ctx *c);

/* Per-micro-batch time of chunk k holding layers i..j: compute (+ the blocks' forward again
 * with recomputation) plus the transfers across its incoming and outgoing boundaries. */
double pt_part_chunk_time(const pt_part_ctx *c, int k, int i, int j, int rc);
/* Peak bytes of chunk k holding layers i..j: state + in-flight activations (+ one block's
 * working set when recomputing). The sum of pt_part_chunk_mem_kinds. */
double pt_part_chunk_mem(const pt_part_ctx *c, int k, int i, int j, int rc);
/* The same by kind (pipetrain/memkind.h) into kinds[PT_MEM_KINDS]; returns their sum. Weights: the
 * parameters the chunk allocates (its layers' and a whole tied or untied head matrix; 2 more bytes
 * each for a bf16 copy on such devices); gradients: as many, plus the twin gradient of a tied head
 * beside the embedding; optimizer: AdamW m and v of the weights, ceil(1/D) of them with c->zero
 * and D > 1; activations: the slots of the in-flight micro-batches and the chunk's fixed scratch
 * (pt_part_chunk_fixed_bytes). Communication buffers are the rank's, not a chunk's: 0 here
 * (pt_part_rank_comm_bytes). */
double pt_part_chunk_mem_kinds(const pt_part_ctx *c, int k, int i, int j, int rc, double *kinds);
/* Bytes of link buffers (PT_MEM_COMM) pipeline rank r holds: see the definition. */
double pt_part_rank_comm_bytes(const pt_part_ctx *c, int r);
/* Bytes one in-flight micro-batch holds in the slot of a chunk holding layers i..j (what
 * pt_model_slot_bytes reports, up to alignment). */
double pt_part_chunk_slot_bytes(const pt_part_ctx *c, int i, int j, int rc);

#endif
