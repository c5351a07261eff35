/* pipetrain/partition.h — the cost model and the partitioners that turn a model, a device and a
 * topology into a *plan*: which contiguous layers form each pipeline chunk, how many stages (P),
 * chunks per rank (V) and data-parallel replicas (D), which schedule, and the predicted per-stage
 * time and memory, step time, bubble, tokens/s and MFU.
 *
 *     pt_device dev;  pt_topology topo;
 *     PT_CHECK(pt_device_load("h100", &dev));
 *     PT_CHECK(pt_topology_init(&topo, &dev, 2, 8));          // 2 nodes x 8 devices
 *     pt_plan_request rq;
 *     pt_plan_request_init(&rq);
 *     rq.method = "time"; rq.n_devices = 16; rq.n_stages = 4; rq.schedule = "1f1b";
 *     pt_plan *p;
 *     PT_CHECK(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &p));
 *     ... p->first_layer[s] .. p->last_layer[s], p->pred_step_time_s ...
 *     pt_plan_destroy(p);
 *
 * Layers are numbered as in model_config.h: 0 embedding, 1..n_layer blocks, n_layer+1 head (with
 * head_split K > 1: n_layer+1 .. n_layer+K, the head's vocabulary shards, so a plan can cut the
 * LM head between stages); the embedding and the head layers are real layers with their own cost. Virtual stage k (0..P*V-1) holds
 * layers first_layer[k]..last_layer[k]; the ranges are contiguous and cover every layer in order.
 * Rank map: virtual stage k is chunk k / P of pipeline rank k % P (interleaved order; with V = 1,
 * stage = rank), except for "zbv" where chunk 0 is stage r and chunk 1 is stage 2P-1-r.
 * Replica d's pipeline rank s is global rank d * P + s (a pipeline's stages are consecutive ranks,
 * so pipeline boundaries stay inside a node when P divides the devices per node).
 *
 * Nothing here allocates on a hot path, prints or runs kernels. All functions are thread-safe
 * on distinct objects.
 */
#ifndef PIPETRAIN_PARTITION_H
#define PIPETRAIN_PARTITION_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "pipetrain/memkind.h"
#include "pipetrain/model_config.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices and topology ---- */

typedef struct pt_device {
    char name[32];
    double peak_flops;      /* dense peak FLOP/s of one device in the training precision */
    double efficiency;      /* fraction of peak a large matrix product reaches (0, 1] */
    double mem_bytes;       /* memory capacity of one device */
    int act_elem_bytes;     /* bytes per stored activation element (4: fp32, what every backend stores now) */
    int weight_copy_bytes;  /* bytes per parameter of the low-precision copy the layers compute with, kept
                             * next to the fp32 masters: 0 none (fp32 training), 2 a bf16 copy (the h100 /
                             * h200 presets; JSON "bf16_weights": 1), 4 bf16 values in fp32 storage (what
                             * pipetrain's --precision bf16 allocates now; `train` sets it) */
    int msg_elem_bytes;     /* bytes per element a stage-to-stage message carries on the wire: 4 fp32, 2
                             * bf16 (train --precision bf16 over the host and host-staged links, which pack
                             * them; JSON "bf16_messages": 1). The presets say 4: the nccl link between GPUs
                             * still sends fp32. The head shards' row statistics always travel in fp32 */
    double intra_bw_Bps;    /* default link bandwidth between devices of one node (bytes/s) */
    double intra_latency_s;
    double inter_bw_Bps;    /* default per-device bandwidth between nodes (bytes/s) */
    double inter_latency_s;
    double mem_bw_Bps;      /* device memory bandwidth: element-wise work and the optimizer step */
    int stash_elem_bytes;   /* bytes per element of the block internals bf16 rounds, kept per slot between
                             * forward and backward (all but the norm statistics and attention's
                             * log-sum-exp), and of the rounded gradients a split backward keeps
                             * (dfch, dres2, dqkv): 0 (the presets) as act_elem_bytes; 2 the bf16 stash
                             * of pipetrain's --precision bf16 (`train` sets it; JSON "bf16_stash": 1),
                             * where a chunk with blocks also holds one block's worth of each at
                             * act_elem_bytes, the areas they are made in and widened back into */
} pt_device;

/* Fills `out` from a preset ("cpu": this machine, 540 GFLOP/s fp32 on 2 cores at 50%;
 * "h100": 989 TFLOP/s bf16 dense, 80 GB, NVLink 450 GB/s, IB 50 GB/s; "h200": same compute,
 * 141 GB) or from a JSON file with keys name, peak_tflops, efficiency, mem_gb and optional
 * act_elem_bytes, bf16_weights, bf16_messages, bf16_stash, intra_gbps, intra_latency_us, inter_gbps, inter_latency_us,
 * mem_gbps (bandwidths in GB/s). PT_EINVAL / PT_EIO / PT_EFORMAT naming the file and field. */
pt_status pt_device_load(const char *name_or_path, pt_device *out);

/* Prices `d` as pipetrain's own run in that precision allocates and sends: bf16 != 0
 * (--precision bf16) keeps the layers' bf16 weights in fp32 storage (weight_copy_bytes 4), sends
 * stage messages as bf16 (msg_elem_bytes 2) and, with stash, keeps the blocks' internals in the
 * bf16 stash (stash_elem_bytes 2); fp32 has no weight copy, 4-byte messages and no stash. */
void pt_device_set_precision(pt_device *d, int bf16, int stash);

typedef struct pt_topology {
    int n_nodes;            /* >= 1 */
    int devices_per_node;   /* >= 1 */
    double intra_bw_Bps, intra_latency_s;   /* between devices of one node */
    double inter_bw_Bps, inter_latency_s;   /* between nodes, per device */
} pt_topology;

/* n_nodes x devices_per_node devices, links taken from `dev`'s defaults. PT_EINVAL on counts < 1. */
pt_status pt_topology_init(pt_topology *t, const pt_device *dev, int n_nodes, int devices_per_node);

/* ---- cost model ---- */

/* Costs of one layer for one micro-batch of (B, T) sequences. FLOPs count matrix products (2 per
 * multiply-add) including attention's QK^T and AV over the full T x T; the backward of a matrix
 * product is split into backward-input (dX) and backward-weight (dW) halves; attention's backward
 * is all backward-input. A gpt2 block multiplies 12 C^2 a token; a llama block C (C + 2 NKV hs)
 * for q|k|v (grouped kv heads), C^2 for o and 3 C H for SwiGLU's gate, up and down. Element-wise
 * work (norms, GELU, SwiGLU, RoPE, softmax) is priced by the bytes it moves, not in FLOPs. */
typedef struct pt_layer_cost {
    double fwd_flops, bwd_input_flops, bwd_weight_flops;
    int64_t n_params;         /* logical parameters (vocab_size rows of wte; tied wte counted at layer 0 only;
                                 an untied llama lm_head at the first head layer) */
    int64_t n_params_alloc;   /* elements this layer allocates (vocab_padded rows of wte in the embedding).
                                 The LM head's matrix (the tied wte copy or, beside the embedding, its
                                 fp32 twin gradient; an untied lm_head) is not any layer's: a plan
                                 counts one per chunk that holds head layers, however many vocabulary
                                 shards */
    double state_bytes;       /* parameters + gradients + AdamW m, v (+ bf16 copy on GPUs) of n_params_alloc */
    double act_bytes;         /* bytes one in-flight micro-batch holds in the layer's slot with split
                                 backward (models/ layout: output and its gradient, the gradients kept
                                 between backward-input and backward-weight, block internals) */
    double act_bytes_recompute; /* the same with recomputation (block internals dropped) */
    double act_split_bytes;   /* the part of both that only split backward keeps per slot (the
                                 output's gradient, the block's or head's inner gradients); with
                                 pt_model_opts.fused_only they are shared by the chunk's slots */
    double out_bytes;         /* bytes of the output sent to the next stage, on the wire (B*T*C*msg_elem_bytes;
                                 B*T*(C+PT_XENT_STATS)*4 from a head shard to the next; 0 for the last head
                                 layer) */
    double fwd_traffic_bytes; /* memory traffic of the forward's element-wise work (estimate) */
    /* Seconds on the device: analytic (FLOPs / (peak * efficiency) + traffic / memory bandwidth,
     * backward-input moving 1.5x and backward-weight 0.5x the forward's traffic) or measured. */
    double t_fwd, t_bwd_input, t_bwd_weight;
    /* Tensor parallelism (pt_cost_tp_split): seconds of the layer's TP collectives inside t_fwd and
     * t_bwd_input (charged on the critical path, not overlapped); 0 with T = 1 */
    double t_tp_fwd, t_tp_bwd;
} pt_layer_cost;

/* Measured per-layer times from `pipetrain profile-layers` (a cost file). */
typedef struct pt_layer_times {
    pt_model_config cfg;      /* the model the file was measured on */
    int micro_batch_size, seq_len, n_threads;
    char backend[16];
    int n_layers;
    double *fwd_s, *bwd_input_s, *bwd_weight_s;   /* [n_layers], owned */
} pt_layer_times;

/* Reads a cost file (format in docs/planning.md; a llama file also names its architecture,
 * n_kv_head, intermediate_size and tie_word_embeddings, and files without them are gpt2). *out is
 * owned by the caller. */
pt_status pt_layer_times_load(const char *path, pt_layer_times **out);
/* Writes `t` as a cost file (atomic). */
pt_status pt_layer_times_save(const pt_layer_times *t, const char *path);
/* Allocates the arrays for n_layers layers (zeroed). */
pt_status pt_layer_times_create(int n_layers, pt_layer_times **out);
void pt_layer_times_destroy(pt_layer_times *t); /* accepts NULL */

/* Fills costs[0..pt_model_n_layers(cfg)-1] for micro-batches of B sequences of T tokens on `dev`.
 * With `measured` (may be NULL), times come from it, scaled by (B*T)/(B0*T0) when the shapes
 * differ; it must describe the same architecture, layer count, width, heads, kv heads, MLP width
 * and vocabulary (PT_EINVAL otherwise). Caller owns `costs`. */
pt_status pt_cost_layers(const pt_model_config *cfg, int B, int T, const pt_device *dev,
                         const pt_layer_times *measured, pt_layer_cost *costs);

/* Tensor parallelism (Megatron-style) over T ranks of one node: turns costs[] from
 * pt_cost_layers (one device) into one TP rank's costs, in place. Blocks: attention split by heads
 * (column-parallel q|k|v, row-parallel output projection; grouped kv heads split, or one kv head
 * replicated on each rank when n_kv_head < T), the MLP column- then row-parallel (SwiGLU's gate and
 * up both column-parallel): matrix FLOPs, attention FLOPs, weights / T; norms and row-parallel
 * biases replicated. Embedding and LM head vocabulary-parallel (wte rows / T; gpt2's wpe
 * replicated). Activations: the head-split tensors (q|k|v, attention output, MLP internals,
 * logits) / T; the norm outputs, residuals, block outputs and their gradients / T only with `sp`
 * (sequence parallelism), replicated without. Collectives per micro-batch on the intra-node link
 * (ring all-reduce of n bytes: 2 (T-1)/T n / bw + 2 (T-1) latency; with sp the all-gather +
 * reduce-scatter pairs that replace them cost the same): a block 2 all-reduces of B*T*C forward
 * and 2 backward-input, the embedding 1 forward, each head layer 1 backward-input of B*T*C and the
 * vocabulary-parallel cross-entropy's 3 per-token statistics (max, sum, target logit) forward,
 * added to t_fwd / t_bwd_input (t_tp_fwd / t_tp_bwd say how much). out_bytes (what a pipeline send
 * carries per TP rank) / T with sp. With `measured` (the file pt_cost_layers used) the times are
 * divided by T, as analytic FLOPs are, before the collectives are added. T = 1:
 * no change. PT_EINVAL as pt_plan_check_tp. */
pt_status pt_cost_tp_split(const pt_model_config *cfg, int B, int T, int tp, int sp, const pt_device *dev,
                           const pt_topology *topo, const pt_layer_times *measured, pt_layer_cost *costs);

/* Checks a tensor-parallel size for cfg: T >= 1 dividing n_head, the MLP width (llama's
 * intermediate_size, gpt2's 4C), the padded vocabulary (vocab_padded, else vocab_size: the
 * vocabulary-parallel embedding and head) and, when devices_per_node > 0, the devices per node
 * (a TP group stays inside a node, on its fast link); with grouped kv heads n_kv_head % T == 0 or
 * T % n_kv_head == 0. PT_EINVAL naming the value, the model and the fix. Pure. */
pt_status pt_plan_check_tp(const pt_model_config *cfg, int tp, int devices_per_node);

/* Independent parameter count of the whole model (tied wte once, vocab_size rows; an untied llama
 * head's lm_head too); equals pt_model_config_n_params for every preset. */
int64_t pt_cost_n_params(const pt_model_config *cfg);

/* Analytic FLOPs of one training step (forward + backward) over `n_tokens` tokens of length-T
 * sequences: the sum of pt_cost_layers' FLOPs. Close to 6*N*tokens + 12*n_layer*T*C*tokens (N the
 * parameters doing matrix work: for an untied llama both wte and lm_head count in N, though only
 * lm_head multiplies, so there 6*N overstates by 6*V*C a token). */
double pt_cost_step_flops(const pt_model_config *cfg, int T, double n_tokens);

/* ---- plans ---- */

typedef struct pt_plan {
    int n_stages;      /* P */
    int n_chunks;      /* V per rank */
    int n_replicas;    /* D */
    int n_vstages;     /* P*V */
    int *first_layer, *last_layer;  /* [n_vstages] contiguous ranges covering 0..n_layer+1 in order */
    int *recompute;                 /* [n_vstages] 1 = activation recomputation */
    int micro_batch_size, n_microbatches, seq_len;
    char schedule[32]; char method[16];
    double *pred_time_s, *pred_mem_bytes;   /* per virtual stage (time per micro-batch F+B, bytes);
                                               0 until priced */
    double pred_step_time_s, pred_bubble, pred_tokens_per_s, pred_mfu;
    /* additions beyond the pinned contract */
    int64_t *n_params;              /* [n_vstages] logical parameters of each chunk */
    int *boundary_inter;            /* [n_vstages-1] 1 when the boundary after chunk k crosses nodes */
    double *pred_rank_mem_bytes;    /* [n_stages] memory of pipeline rank s (all its chunks) */
    double pred_comm_s;             /* per-step data-parallel all-reduce time in the prediction */
    double pred_optim_s;            /* per-step AdamW time of the slowest rank in the prediction */
    char device[32];
    int n_nodes, devices_per_node;
    int64_t n_params_total;
    int head_split;                 /* LM-head layers of the model the layer ranges cut (model_config.h);
                                       set when priced, "head_split" in the JSON */
    int zero;                       /* optimizer-state sharding over the D replicas: 0 every replica holds
                                       all of its stage's AdamW moments; 1 (ZeRO-1) each holds 1/D
                                       (pt_comm_segment of each chunk's flat parameters). "zero" in the JSON
                                       (optional, default 0); pricing uses it in every memory prediction */
    int n_tp;                       /* T: tensor-parallel ranks per stage (Megatron-style, inside one node;
                                       pt_cost_tp_split); devices = P x T x D, global rank
                                       ((d * P + s) * T + t). 1 by default; "n_tp" in the JSON (optional,
                                       default 1). The runtime does not run T > 1 yet: a plan with
                                       T > 1 is for sizing (pipetrain plan) */
    int sp;                         /* sequence parallelism with T > 1 (0/1), "sp" in the JSON (optional) */
    double pred_tp_comm_s;          /* per-step seconds of TP collectives on the slowest rank's critical
                                       path (inside pred_step_time_s); 0 with T = 1 */
    double *pred_rank_mem_kind;     /* [n_stages * PT_MEM_KINDS] pipeline rank s's predicted bytes of kind k
                                       (pipetrain/memkind.h) at [s * PT_MEM_KINDS + k]; they add up to
                                       pred_rank_mem_bytes[s]. Chunks' kinds plus the rank's communication
                                       buffers. "pred_rank_mem_by_kind" in the
                                       JSON (optional: 0 when absent) */
} pt_plan;

/* Allocates a plan with every array sized for P*V chunks, zeroed. */
pt_status pt_plan_create(int P, int V, int D, pt_plan **out);
void pt_plan_destroy(pt_plan *p); /* accepts NULL */

/* A manual plan: `layout` lists layers per virtual stage ("4,8,8,4", embedding and head count as
 * layers), V chunks per rank (the list has P*V entries). PT_EINVAL when counts are not positive,
 * do not sum to pt_model_n_layers(cfg) or are not a multiple of V. Not priced: call pt_plan_price. */
pt_status pt_plan_from_layout(const pt_model_config *cfg, const char *layout, int V, pt_plan **out);

/* Fills the predictions of `p` (ranges, P, V, D, B, M, T, schedule and recompute already set) on
 * `dev` and `topo` with analytic or `measured` (may be NULL) layer costs. Uses the schedule
 * simulator when the schedule module is built, the closed-form bubble otherwise. */
pt_status pt_plan_price(pt_plan *p, const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                        const pt_layer_times *measured);

/* 1 when the plan's schedule has no split backward (gpipe, 1f1b, interleaved, looped-bfs): the
 * runtime and the trainer then create their models with pt_model_opts.fused_only = 1, and the
 * plan's memory predictions assume so. 0 for zb-h1, zb-h2, zbv (and any other name). A runtime
 * that runs a schedule loaded from a file rather than generated from this name must decide from
 * the actions instead: fused_only only when no rank has BACKWARD_INPUT or BACKWARD_WEIGHT (the
 * models refuse split backward otherwise). Pure. */
int pt_plan_fused_only(const pt_plan *p);

/* 1 when a priced plan's slowest chunk is a single layer that leaves the chunks less than 90%
 * balanced (mean chunk time against the slowest): no split of these layers into as many chunks
 * can do better, since that layer cannot shrink (gpt2-small's LM head on 2 stages: 62% of the
 * work, 80%; with head_split > 1 the head is several layers and a boundary can fall inside it). Then *chunk is that chunk, *share its part of the summed chunk times and *balance
 * the mean against the slowest; 0 otherwise. */
int pt_plan_single_layer_bound(const pt_plan *p, int *chunk, double *share, double *balance);

/* Checks the predicted memory of every rank against cap_bytes; PT_ENOMEM naming the rank, its
 * need and the cap. */
pt_status pt_plan_check_memory(const pt_plan *p, double cap_bytes);

/* One alternative `auto` weighed: the best plan it found for one schedule (simulated). */
typedef struct pt_plan_candidate {
    char schedule[32];
    int fits;               /* 0: no stage count or micro-batch size of this schedule fits memory */
    int n_stages, n_chunks, n_replicas, micro_batch_size, n_microbatches, n_recompute;
    int n_tp;
    double pred_step_time_s, pred_bubble, pred_tokens_per_s, pred_mfu, pred_max_mem_bytes;
} pt_plan_candidate;

typedef struct pt_plan_request {
    const char *method;     /* "uniform" | "params" | "time" | "memory" | "auto" */
    int n_devices;          /* G = P * T * D */
    int n_stages;           /* P; 0: G / n_replicas (auto searches) */
    int n_replicas;         /* D; 0: G / P */
    int n_chunks;           /* V; 0: 2 for interleaved, looped-bfs and zbv, else 1 */
    const char *schedule;   /* "gpipe", "1f1b", "interleaved", "looped-bfs", "zb-h1", "zb-h2", "zbv"; NULL: 1f1b
                               (auto: NULL searches) */
    int micro_batch_size;   /* B; 0: 1 (auto searches) */
    int n_microbatches;     /* M per replica; 0: global_batch / (D * B), or 4 * P without global_batch */
    int global_batch;       /* sequences per optimizer step over all replicas; 0: unset */
    int seq_len;            /* T; 0: the model's max_seq_len */
    double mem_cap_bytes;   /* per device; 0: the device's memory */
    int recompute;          /* -1: per stage, as needed (memory, auto); 0: never; 1: always */
    int zero;               /* pt_plan.zero of the plans made (0 or 1) */
    int n_tp;               /* T; 0: 1, except auto, which searches T in {1, 2, 4, 8} (those that pass
                               pt_plan_check_tp with the topology's devices per node) */
    int sp;                 /* sequence parallelism for T > 1 (0 or 1) */
    /* auto, optional: room for max_candidates entries, one per schedule searched (fitting ones
     * fastest first, then those that did not fit); *n_candidates receives the count. Borrowed. */
    pt_plan_candidate *candidates;
    int max_candidates;
    int *n_candidates;
} pt_plan_request;

/* Defaults: method "time", recompute -1, everything else 0/NULL. */
void pt_plan_request_init(pt_plan_request *rq);

/* Makes and prices a plan. "time" and "memory" run an O(P*V * L^2) dynamic program over contiguous
 * splits minimising the slowest chunk's compute + boundary transfer time; "memory" (and "auto")
 * additionally keep every chunk within its share of the memory cap, choosing recomputation per
 * chunk where that is what fits. Returns PT_ENOMEM with one line naming the smallest device count
 * (or per-device memory) that would fit when no plan fits; PT_EINVAL for inconsistent requests. */
pt_status pt_plan_make(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                       const pt_layer_times *measured, const pt_plan_request *rq, pt_plan **out);

/* --head-split auto: the head_split a command resolves by asking the planner. */
#define PT_HEAD_SPLIT_AUTO (-1)
/* The most LM-head layers auto tries. */
#define PT_HEAD_SPLIT_AUTO_MAX 8

/* Chooses cfg's head_split for request rq (analytic costs): plans K = 1 .. PT_HEAD_SPLIT_AUTO_MAX
 * and keeps K = 1 unless a split predicts a step at least 3% shorter (the shards' statistics and
 * extra calls cost about 2% of the head on the CPU backend, which the cost model does not see);
 * a larger K replaces a smaller one only when at least 1% faster. *k gets the choice, *t_k and
 * *t_1 (may be NULL) the predicted step times with it and unsplit. Errors are pt_plan_make's for
 * K = 1; a K whose plan fails (memory cap, too few layers) is skipped. Pure. */
pt_status pt_plan_best_head_split(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                                  const pt_plan_request *rq, int *k, double *t_k, double *t_1);

/* A published training configuration (pipetrain plan prints it beside its own plan). */
typedef struct pt_published_config {
    const char *name;        /* "Llama 3 405B" */
    const char *model;       /* the preset it matches: "llama3-405b" */
    int gpus;                /* devices of the run */
    const char *device;      /* "H100", "A100" */
    int P, T, D;             /* pipeline, tensor, data parallel sizes */
    int seq_len, global_batch; /* tokens per sequence, sequences per step */
    const char *utilization; /* what the source reports, as it reports it ("41% MFU (400 TFLOP/s)") */
    const char *source;      /* the paper and its table */
} pt_published_config;

/* The published configuration for `model` (a preset name) on `gpus` devices, or NULL. Pure. */
const pt_published_config *pt_published_find(const char *model, int gpus);
/* The whole table: *n receives its length. */
const pt_published_config *pt_published_table(int *n);

/* JSON form (the object `pipetrain train` reads and `pipetrain plan --json` prints). */
pt_status pt_plan_to_json(const pt_plan *p, cJSON **out);
pt_status pt_plan_from_json(const cJSON *j, pt_plan **out);

/* The pipeline rank and chunk index of virtual stage k under p's schedule. */
void pt_plan_vstage_place(const pt_plan *p, int k, int *rank, int *chunk);

#ifdef __cplusplus
}
#endif
#endif
