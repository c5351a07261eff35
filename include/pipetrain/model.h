/* pipetrain/model.h — a GPT-2 or Llama model (model_config.h) as an ordered list of layers,
 * instantiated one contiguous range of layers at a time (a pipeline chunk, or the whole model in
 * one process).
 *
 * Tensor names. gpt2: wte.weight, wpe.weight; blocks.<i>.{ln1,ln2}.{weight,bias},
 * blocks.<i>.attn.{qkv,proj}.{weight,bias}, blocks.<i>.mlp.{fc,proj}.{weight,bias}; lnf.{weight,bias}.
 * llama: wte.weight; blocks.<i>.ln1.weight, blocks.<i>.attn.qkv.weight ((NH + 2 NKV) hs, C: the
 * q, k, v projections stacked by rows), blocks.<i>.attn.proj.weight (C, C), blocks.<i>.ln2.weight,
 * blocks.<i>.mlp.gate_up.weight (2H, C: gate rows, then up rows), blocks.<i>.mlp.down.weight (C, H);
 * lnf.weight; lm_head.weight (Vp, C) when untied. Weights are (out, in) as torch.nn.Linear.
 *
 * Layer numbering (model_config.h): 0 embedding, 1..n_layer blocks, n_layer+1 head.
 * A pt_model holds layers [first, last] of a config on one backend: its parameters, their
 * gradients, and per-micro-batch activation *slots*. Parameters and gradients each live in one
 * flat device buffer; named tensors (pt_param) are views into them by offset.
 *
 *     pt_model_opts o = { .micro_batch = 4, .seq_len = 64, .n_slots = 1, .recompute = 0 };
 *     pt_model *m;
 *     PT_CHECK(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &o, be, stream, &m));
 *     PT_CHECK(pt_model_init_weights(m, seed));
 *     PT_CHECK(pt_model_zero_grads(m));
 *     // per micro-batch: put tokens/targets into the slot, then
 *     PT_CHECK(be->memcpy_h2d(stream, pt_model_slot_tokens(m, 0), tok, B * T * 4));
 *     PT_CHECK(be->memcpy_h2d(stream, pt_model_slot_targets(m, 0), tgt, B * T * 4));
 *     PT_CHECK(pt_model_forward(m, 0));
 *     PT_CHECK(pt_model_backward(m, 0, 1.0f / (B * T * M)));
 *     PT_CHECK(pt_model_reduce_tied_grads(m));   // once per step, before the optimizer
 *
 * Slots: forward(slot) stores in the slot what that micro-batch's backward needs; backward
 * (fused), or backward_weight after backward_input, releases it. A pipeline keeps several
 * micro-batches in flight, each in its own slot; the runtime maps (micro-batch, chunk) to slots.
 *
 * Tied weights: `wte.weight` serves the embedding (layer 0) and the LM head (last layer). The
 * head's use of it always accumulates into a separate gradient buffer (the "head twin"), even when
 * one pt_model holds both layers, so that summing the two contributions happens once per step in a
 * fixed order: grad(wte) = grad_embedding + grad_head. In one process pt_model_reduce_tied_grads
 * does that sum; across ranks the runtime all-reduces the twin buffers (2-way sums are exact and
 * commutative, so a pipeline gives the same bits as one process).
 *
 * Initialisation depends only on (seed, global tensor name): any partition of the same config
 * gets the same initial weights.
 *
 * Thread-safety: one pt_model is used by one thread at a time.
 */
#ifndef PIPETRAIN_MODEL_H
#define PIPETRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/model_config.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configs ---- */

/* Fills `out` from a preset name (gpt2-tiny ... gpt2-xl, llama-tiny, llama-small, and the planning
 * shapes gpt3-*, llama3.2-1b/3b, llama3-8b/70b/405b: pt_model_preset_names), or, when
 * `name_or_path` is not a preset, from a file or directory: pipetrain's JSON config (keys n_layer,
 * n_head, n_embd, vocab_size, max_seq_len, optional name, vocab_padded, head_split, and for
 * "architecture": "llama" the llama keys: docs/models.md), a Hugging Face config.json (it has
 * "model_type" or "architectures"), or a Hugging Face model directory (its config.json;
 * pt_model_config_from_hf). PT_EINVAL names the bad field (heads not dividing width, zero layers,
 * unknown keys, absurd sizes, unsupported Hugging Face features). */
pt_status pt_model_config_load(const char *name_or_path, pt_model_config *out);

struct cJSON; /* cjson/cJSON.h */

/* Fills `out` from a JSON object with the config file's keys (n_layer, n_head, n_embd, vocab_size,
 * max_seq_len, optional name and vocab_padded): types, ranges and unknown keys are checked, then
 * pt_model_config_validate. `what` names the source in errors. The one parser of config objects
 * (config files, checkpoints' run descriptions). */
pt_status pt_model_config_from_json(const struct cJSON *obj, const char *what, pt_model_config *out);

/* The inverse: a new JSON object with every field (caller frees with cJSON_Delete); NULL when out of
 * memory. */
struct cJSON *pt_model_config_to_json(const pt_model_config *c);

/* Sets cfg->head_split to k (the --head-split option of the commands) and validates; k <= 0 keeps
 * the config's own value. PT_EINVAL naming the limit when the vocabulary has too few rows. */
pt_status pt_model_config_set_head_split(pt_model_config *cfg, int k);

/* Checks a config's fields; PT_EINVAL naming the field and the fix. */
pt_status pt_model_config_validate(const pt_model_config *cfg);

/* The chunk's logits --head-chunk auto aims at, and its fewest rows. */
#define PT_HEAD_CHUNK_AUTO_BYTES (256.0 * 1024 * 1024)
#define PT_HEAD_CHUNK_MIN_ROWS 1024

/* --head-chunk auto: the head_chunk under tensor parallelism of tp ranks. 0 (all rows at once,
 * the probabilities kept per slot) when the head is split (head_split > 1 or tp > 1); otherwise the
 * largest multiple of 256 rows whose fp32 logits fit in PT_HEAD_CHUNK_AUTO_BYTES, but at least
 * PT_HEAD_CHUNK_MIN_ROWS (each chunk's dW product re-reads and rewrites the whole (Vp, C)
 * gradient, so it needs about a thousand rows to stay compute-bound on a GPU). A micro-batch of
 * fewer tokens is one chunk: the whole head's products, so the bits of head_chunk 0, but made in
 * the forward and with no probabilities kept per slot. Pure. */
int pt_model_head_chunk_auto(const pt_model_config *cfg, int tp);

/* Describes layer l for people ("the embedding", "block 3", "the final norm and LM head", "LM head
 * shard 2/4 (wte rows 12544-25087)") into buf (cap bytes). Pure. */
void pt_model_layer_describe(const pt_model_config *cfg, int l, char *buf, size_t cap);

/* Llama: the rotary inverse frequencies inv_freq[i], i < head width / 2, as Hugging Face computes
 * them in fp32 (base rope_theta), with Llama 3.1's scaling when the config has rope_scaling.
 * Angles are (float)pos * inv_freq[i]. PT_EINVAL for a gpt2 config. */
pt_status pt_model_rope_inv_freq(const pt_model_config *cfg, float *inv_freq);

/* Llama: fills the device tables cos_out and sin_out ((n_pos, head width / 2) floats each, allocated
 * by the caller on backend be) with cos and sin of the fp32 angle (float)t * inv_freq[i] for positions
 * t < n_pos, computed in double and rounded to float: the tables rope_forward/backward take. The one
 * maker of them (training chunks and the generator), so generation rotates with the training bits.
 * Synchronises stream. PT_ENOMEM, or the backend's copy error. */
pt_status pt_model_rope_tables(const pt_model_config *cfg, int n_pos, const pt_backend *be, pt_stream *stream,
                               float *cos_out, float *sin_out);

/* Names of the presets, NULL-terminated, for --help and errors. */
const char *const *pt_model_preset_names(void);

/* Parameters of the whole model (tied wte counted once). */
int64_t pt_model_config_n_params(const pt_model_config *cfg);

/* pt_precision (model_config.h) by name: "fp32" | "bf16". */
const char *pt_precision_name(pt_precision p);
/* Parses "fp32" or "bf16" into *out; PT_EINVAL naming the choices otherwise. */
pt_status pt_precision_parse(const char *s, pt_precision *out);

/* ---- a chunk of layers ---- */

typedef struct pt_model_opts {
    int micro_batch; /* B: sequences per micro-batch */
    int seq_len;     /* T <= cfg->max_seq_len */
    int n_slots;     /* micro-batches whose activations can be held at once (>= 1) */
    int recompute;   /* 1: keep only each block's input; recompute the block in backward */
    int fused_only;  /* 1: only pt_model_backward (fused) is used; backward_input/backward_weight are
                      * refused, and the gradients they pass between them (11*C floats per token per
                      * block, C for the embedding and the head) are not kept per slot: one set is
                      * shared by the chunk's slots, and the external gradients reuse their
                      * activation's buffer (see slot_dinput / slot_doutput). Same bits; less
                      * memory. pt_plan_fused_only (partition.h) says which schedules run this
                      * way. (Added by models/.) */
    pt_precision precision; /* PT_PRECISION_BF16: bf16 mixed precision (model_config.h): the layers
                             * compute with a bf16 copy of the weights, made from pt_model_params (the
                             * fp32 masters) before the first forward or backward after any call of
                             * pt_model_params (whose callers may have written them), and round every
                             * activation and activation gradient they store. Needs the backend's
                             * round_bf16. (Added with --precision.) */
    int no_stash;           /* under bf16, a chunk that does not recompute keeps its blocks' rounded
                             * internals between forward and backward packed to 2 bytes an element
                             * (the bf16 stash: pack_bf16, widened back by unpack_bf16 before each
                             * backward pass; the same bits, half those bytes, one more pass each
                             * way; a backend without those entries keeps the floats), and without
                             * fused_only the rounded gradients backward_input keeps for
                             * backward_weight (dfch, dres2, dqkv) likewise. 1: keep the floats
                             * (train --bf16-stash 0). */
    struct pt_model_tp {
        /* Tensor parallelism (docs/parallelism.md): the chunk's layers split Megatron-style over a
         * group of `size` ranks, this one being `rank`. size 0 or 1: none (the fields below unused).
         * Attention by heads (q/k/v column-parallel, kv heads split, or replicated when n_kv_head <
         * size), the output projection row-parallel; the MLP column- then row-parallel (gate and up
         * both column-parallel); embedding and LM head vocabulary-parallel (rows [rank * Vp/size,
         * +Vp/size) of wte / lm_head), the cross-entropy combined from every rank's row statistics
         * in rank order (backend.h xent_stats_combine: head_split's arithmetic). Needs head_split 1.
         * size must divide n_head, the padded vocabulary and the MLP width, and n_kv_head or be a
         * multiple of it (pt_model_tp_check). */
        int size, rank;
        int sp;  /* 1: sequence parallelism: the norms, residual adds and the chunk's boundaries hold rows
                  * [rank * N/size, +N/size) of the N = B * T tokens (N must divide by size), joined by
                  * all-gather / reduce-scatter where the non-sp chunk all-reduces */
        /* The group's collectives on backend memory, in the same order on every member (blocking):
         * sum all-reduce of n floats; pt_comm_reduce_scatter's fixed-order reduce-scatter (member k's
         * segment pt_comm_segment(n, size, k) holds the sum, the rest undefined); all-gather of the
         * members' segments. `what` names the operation ("tp all-reduce attn.proj block 3"). */
        pt_status (*allreduce)(void *ctx, float *x, size_t n, const char *what);
        pt_status (*reduce_scatter)(void *ctx, float *x, size_t n, const char *what);
        pt_status (*allgather)(void *ctx, float *x, size_t n, const char *what);
        void *ctx;
    } tp;
} pt_model_opts;

/* Whether layers of cfg can be split over tp ranks (tp >= 1): "" and PT_OK, or PT_EINVAL with one
 * line naming the dimension that does not divide and the sizes that would (also: head_split > 1). */
pt_status pt_model_tp_check(const pt_model_config *cfg, int tp, int sp, int micro_batch, int seq_len);

typedef struct pt_param {
    const char *name; /* global name: "wte.weight", "wpe.weight", "blocks.3.attn.qkv.weight", "lnf.weight" ... */
    int ndim;
    int shape[4];
    size_t numel;
    size_t offset;    /* element offset into pt_model_params / pt_model_grads */
    int layer;        /* global layer index */
    int decay;        /* 1 when AdamW weight decay applies (ndim >= 2) */
    /* Tensor parallelism (pt_model_opts.tp): which part of the whole tensor this rank holds. With
     * tp_dim < 0 the whole (gshape == shape); with 0 the local rows, with 1 the local columns
     * (2-D only) are the global ranges [tp_lo[i], tp_hi[i]) along that dimension, i < tp_nseg,
     * concatenated in order (qkv: the query, key and value heads of this rank; gate_up: gate then up).
     * Without tensor parallelism: tp_dim -1, tp_nseg 0. */
    int gshape[2];
    int tp_dim, tp_nseg, tp_lo[3], tp_hi[3];
    /* Local elements [rep_lo, rep_hi) are also held by other ranks of the group: rep_n ranks, the
     * group's rep_first .. rep_first + rep_n - 1 (rep_n 1: none). The first of them counts them in
     * the gradient norm and writes them to checkpoints. rep_partial: each holder's gradient of the
     * range is a partial sum (norms under sp, replicated kv heads), which the runtime sums over
     * the holders before the data-parallel reduction. */
    size_t rep_lo, rep_hi;
    int rep_n, rep_first, rep_partial;
} pt_param;

typedef struct pt_model pt_model;

/* Builds layers [first_layer, last_layer] of `cfg` on backend `be`, queueing work on `stream`
 * (borrowed; must outlive the model). Allocates parameters, gradients and n_slots activation slots
 * once, through pt_backend_alloc. Weights are uninitialised until pt_model_init_weights or a load. */
pt_status pt_model_create(const pt_model_config *cfg, int first_layer, int last_layer, const pt_model_opts *opts,
                          const pt_backend *be, pt_stream *stream, pt_model **out);
void pt_model_destroy(pt_model *m); /* accepts NULL */

const pt_model_config *pt_model_config_of(const pt_model *m);
int pt_model_first_layer(const pt_model *m);
int pt_model_last_layer(const pt_model *m);
int pt_model_has_embedding(const pt_model *m); /* holds layer 0 */
int pt_model_has_head(const pt_model *m);      /* holds the last layer (the loss) */
/* Holds at least one LM-head layer (all of the head unless head_split > 1): uses wte as the LM
 * head, so has a head twin (pt_model_head_wte_grad) and, without the embedding, a tied copy. */
int pt_model_has_head_layers(const pt_model *m);

/* Named tensors of this chunk, in global layer order (embedding, blocks, head). A chunk holding the
 * head but not the embedding lists its own "wte.weight" (same name: the tied copy). */
/* The chunk's tensor-parallel group size (1 without) and this rank's index in it. */
int pt_model_tp_size(const pt_model *m);
int pt_model_tp_rank(const pt_model *m);
/* Rows of the (B*T)-token activations at the chunk's boundaries: B*T, or B*T / tp size with sp.
 * Messages between stages carry this many rows times pt_model_boundary_width. */
int pt_model_boundary_rows(const pt_model *m);
/* Rows of wte / the LM head this rank holds (vocab_padded / tp size). */
int pt_model_vocab_rows(const pt_model *m);

int pt_model_n_tensors(const pt_model *m);
const pt_param *pt_model_tensor(const pt_model *m, int i);
/* The most elements one named tensor of this chunk holds (at least 1): a host buffer of that many
 * floats fits any one of them (loading, exporting or initialising weights tensor by tensor). */
size_t pt_model_max_tensor_numel(const pt_model *m);
/* 1 when p (a tensor of this chunk) is a copy of a tensor another chunk holds the original of, so
 * that it is saved and counted once, by the original's chunk: the tied wte of a chunk with LM-head
 * layers but not the embedding, and the untied lm_head.weight of a chunk whose head shards do not
 * include shard 0 (each chunk with head shards keeps the whole matrix, as the tied copy). A copy's
 * gradient is the job-wide sum once the runtime has reduced the tied / head group. */
int pt_model_tensor_is_copy(const pt_model *m, const pt_param *p);
/* Finds a tensor by global name; NULL when this chunk does not hold it. */
const pt_param *pt_model_find_tensor(const pt_model *m, const char *name);
size_t pt_model_n_params(const pt_model *m); /* elements in the flat buffers */

/* Flat device buffers (pt_model_n_params elements), owned by the model. pt_model_params are the
 * fp32 (master) weights; under PT_PRECISION_BF16 a call marks the layers' bf16 copy stale, so a
 * caller that writes weights must take the pointer through it again for each write (the
 * optimizer, loads, all-gathers do). */
float *pt_model_params(pt_model *m);
/* The precision the model was built with. */
pt_precision pt_model_precision(const pt_model *m);
float *pt_model_grads(pt_model *m);
/* The head twin's gradient for the LM-head matrix (V_padded x C): wte.weight's, or, untied, the
 * chunk's lm_head.weight gradient (always a view into pt_model_grads); NULL when this chunk has no
 * head layer.
 * With head_split > 1 a chunk's shards write only their rows; the other rows stay zero.
 * With the embedding in the same chunk it is a separate buffer; in a head-only chunk it is the
 * gradient of the chunk's own wte.weight copy (a view into pt_model_grads), so after the runtime
 * sums the two ranks' contributions into it the optimizer updates the copy like the original. */
float *pt_model_head_wte_grad(pt_model *m);

/* Initialises weights as GPT-2: N(0, 0.02), residual projections (attn.proj, mlp.proj, llama's
 * mlp.down) N(0, 0.02/sqrt(2*n_layer)), biases 0, norm weights 1 (llama uses the same scheme). Values depend only on (seed, tensor name). */
pt_status pt_model_init_weights(pt_model *m, uint64_t seed);
/* Zeroes gradients (and the head twin). Call at the start of each step. */
pt_status pt_model_zero_grads(pt_model *m);

/* ---- per micro-batch, in slot s (0 <= s < n_slots) ---- */
/* Device buffers the runtime fills or reads; owned by the model. NULL when not applicable. */
int32_t *pt_model_slot_tokens(pt_model *m, int s);  /* (B,T): input ids, when has_embedding */
int32_t *pt_model_slot_targets(pt_model *m, int s); /* (B,T): next-token ids (<0 ignored), when has_head_layers */
float *pt_model_slot_input(pt_model *m, int s);     /* (B,T,C): the chunk's input, when !has_embedding */
float *pt_model_slot_output(pt_model *m, int s);    /* (B,T,C): the chunk's output, when !has_head */
float *pt_model_slot_dinput(pt_model *m, int s);    /* (B,T,C): dLoss/dinput after backward, when !has_embedding */
float *pt_model_slot_doutput(pt_model *m, int s);   /* (B,T,C): dLoss/doutput before backward, when !has_head */
/* With fused_only, slot_doutput is slot_output's buffer (write the gradient there only after the
 * output has been sent or copied on), and, in a chunk that starts with a block, slot_dinput is
 * slot_input's buffer (the backward replaces the input by its gradient). */

/* Forward through the chunk's layers. With the head, also the per-token losses of the slot. */
pt_status pt_model_forward(pt_model *m, int s);
/* The forward of a training step: pt_model_forward, and where the head is chunked (cfg head_chunk)
 * also its loss gradient, chunk by chunk while the chunk's logits exist: dlnf, and dW added to
 * the head's gradient now rather than in backward(_weight). loss_scale is the backward's (it must
 * be passed again, equal, to the slot's backward or backward_input). Elsewhere it is
 * pt_model_forward. A slot after forward_train must have its backward (releasing it instead
 * leaves its dW in the gradient). pt_model_forward then backward gives the same bits: the backward
 * runs the chunks again with their gradient (one more head product). */
pt_status pt_model_forward_train(pt_model *m, int s, float loss_scale);
/* Gradient w.r.t. the chunk's input (and the intermediate gradients backward_weight needs).
 * loss_scale is d(loss)/d(per-token loss): 1 / (tokens in the global batch). Used by the head only. */
pt_status pt_model_backward_input(pt_model *m, int s, float loss_scale);
/* Parameter gradients of the slot, ADDED to pt_model_grads; then releases the slot. */
pt_status pt_model_backward_weight(pt_model *m, int s);
/* Both, fused; bit-identical to backward_input then backward_weight. Releases the slot. */
pt_status pt_model_backward(pt_model *m, int s, float loss_scale);
/* Told when a layer's weight gradients of one backward pass are written (for reducing them while
 * earlier layers still compute): called by backward_weight, and by the fused backward, right after
 * each layer's weight-gradient kernels, with the layer's global index and an element range
 * [lo, hi) of pt_model_grads holding what that pass wrote: a block's tensors, the embedding's
 * (wte, wpe), the final norm's, and an LM-head layer's rows of the head matrix when its gradient is
 * in the flat buffer (a head-only chunk's tied copy, an untied lm_head; the separate twin of a chunk
 * holding the embedding is not reported). Several calls per layer when its ranges are not
 * contiguous (head shard 0: its rows, then the final norm). Rows of the head matrix that only other
 * chunks' shards write are never written here (they stay zero) and never reported. Layers come in
 * backward order (head,
 * last block .. first, embedding). The kernels were queued on the model's stream: on a backend with
 * asynchronous streams the values are there once the stream is synchronised. A non-OK return fails
 * the backward with it. fn NULL removes the hook. (Added for the overlapped gradient reduction.) */
typedef pt_status (*pt_model_grad_hook)(void *ctx, int layer, size_t lo, size_t hi);
void pt_model_set_grad_hook(pt_model *m, pt_model_grad_hook fn, void *ctx);

/* Sum of the slot's per-token losses (targets >= 0 only) and their count, to the host (head only;
 * valid after forward until the slot's next forward, so also after its backward). Synchronises. */
pt_status pt_model_slot_loss(pt_model *m, int s, double *loss_sum, int64_t *n_tokens);

/* When one model holds both embedding and head: grad(wte) += head twin, in that order.
 * A no-op for chunks holding only one of them (the runtime reduces across chunks instead). */
pt_status pt_model_reduce_tied_grads(pt_model *m);

/* Bytes of activation memory one slot holds (what the planner and --mem-limit count). */
size_t pt_model_slot_bytes(const pt_model *m);

/* ---- added for the trainer (src/train): optimizer and evaluation need these ---- */

/* The backend and stream the model was created with (borrowed from the creator). The optimizer
 * (optim.h) queues its updates and gradient norms on them. */
const pt_backend *pt_model_backend(const pt_model *m);
pt_stream *pt_model_stream(const pt_model *m);

/* Device (B,T,Vp): the slot's softmax over the vocabulary after forward (head only; NULL for a
 * chunk without the head, and with head_split > 1 or tensor parallelism, where no layer holds a whole row). Valid until the slot is released or its backward(_input) runs, which
 * overwrites it with d(loss)/d(logits). Evaluation reads it for greedy
 * predictions (argmax over the first vocab_size entries of each row). */
const float *pt_model_slot_probs(pt_model *m, int s);

/* Greedy predictions of the slot after forward (chunk with the loss layer): pred (B*T, host) =
 * the first argmax over the first vocab_size entries of each row (of the probabilities with one
 * head layer, of the logits across the shards with head_split > 1). Synchronises. */
pt_status pt_model_slot_predict(pt_model *m, int s, int32_t *pred);

/* Releases a slot after a forward that has no backward (evaluation), so it can take the next
 * micro-batch. A no-op for a slot that holds nothing. */
pt_status pt_model_slot_release(pt_model *m, int s);

/* ---- weights in and out ---- */

/* Loads every tensor of this chunk from Hugging Face weights. gpt2: a safetensors file in GPT-2
 * naming and layout (wte.weight, h.0.attn.c_attn.weight as [in, out], ...), transposing as needed.
 * llama: pt_model_load_hf_llama (a model directory, its index, or one file).
 * A tensor missing from the file, or of the wrong shape, is PT_EFORMAT naming it. */
pt_status pt_model_load_hf_safetensors(pt_model *m, const char *path);
/* The model config of a safetensors file or Hugging Face model directory. A directory, a .json
 * path (its config.json or index), or a file that holds model.embed_tokens.weight or
 * pipetrain_config metadata: pt_model_config_from_hf. Otherwise GPT-2: the
 * file's metadata (n_layer, n_head, n_embd, vocab_size,
 * optional vocab_padded, max_seq_len or n_ctx, model: what pipetrain's export and the reference
 * files write), else the preset whose shapes match (n_layer, n_embd, positions, vocabulary rows:
 * Hugging Face's own GPT-2 files carry no config). PT_EINVAL naming the file and suggesting
 * --model when neither tells; PT_EIO/PT_EFORMAT when it cannot be read. */
pt_status pt_model_config_from_safetensors(const char *path, pt_model_config *out);

/* ---- added by models/: logits, Hugging Face names, export ---- */

/* Copies the slot's logits (B*T, Vp) to host `out` (head only, after forward and until the slot's
 * next forward). The slot keeps softmax probabilities, not logits, so they are recomputed from the
 * kept final-layernorm output a few rows at a time (equal to the forward's up to rounding).
 * Synchronises. PT_EINVAL for a chunk without the head. */
pt_status pt_model_slot_logits(pt_model *m, int s, float *out);

/* The Hugging Face GPT-2 name of a pipetrain tensor name ("blocks.3.attn.qkv.weight" ->
 * "h.3.attn.c_attn.weight"), written to hf (cap bytes). *transposed is set to 1 when the file
 * stores the tensor as [in, out] (HF Conv1D), the transpose of our (out, in). PT_EINVAL for a name
 * that is not a GPT-2 parameter. Pure; thread-safe. */
pt_status pt_model_hf_name(const char *name, char *hf, size_t cap, int *transposed);

/* Writes the weights held by `models` (n chunks of one config in one process, together covering
 * every layer; a tensor held twice, like a pipeline's tied wte copy, is written once) to a
 * safetensors file in Hugging Face GPT-2 naming and layout, the inverse of
 * pt_model_load_hf_safetensors. wte.weight is written with all vocab_padded rows, and the
 * metadata holds the config (n_layer, n_head, n_embd, vocab_size, vocab_padded, max_seq_len).
 * Synchronises; writes through a temporary file. PT_EINVAL when the chunks miss a layer or differ
 * in config, PT_EIO when the file cannot be written. A llama config goes to pt_model_export_hf_llama
 * (default options). */
pt_status pt_model_export_hf_safetensors(pt_model *const *models, int n, const char *path);

/* ---- Hugging Face Llama-family checkpoints (models/hf_llama.c) ----
 *
 * A checkpoint is a directory with config.json and model.safetensors, or with
 * model.safetensors.index.json and the shards it names; a path may also name the index, the
 * config.json, or one .safetensors file (its config from a config.json beside it, else from the
 * "pipetrain_config" metadata pipetrain's single-file export writes). Tensors in LlamaForCausalLM
 * naming and [out, in] layout: model.embed_tokens.weight = wte.weight; per block i
 * model.layers.i.input_layernorm = ln1, self_attn.{q,k,v}_proj stacked by rows = attn.qkv,
 * self_attn.o_proj = attn.proj, post_attention_layernorm = ln2, mlp.{gate,up}_proj stacked =
 * mlp.gate_up, mlp.down_proj = mlp.down; model.norm.weight = lnf.weight; lm_head.weight (untied).
 * F32, F16, BF16 (and F64) on disk, read as fp32. */

/* A Hugging Face config.json object (LlamaForCausalLM; MistralForCausalLM and Qwen2ForCausalLM
 * when they use no feature below) as a llama pt_model_config: num_hidden_layers,
 * num_attention_heads, num_key_value_heads, hidden_size, intermediate_size, vocab_size,
 * max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings, rope_scaling (default or
 * "llama3"), and pipetrain_vocab_size (pipetrain's export of a padded vocabulary: vocab_size is
 * then vocab_padded). transformers' defaults for absent optional fields. PT_EINVAL naming the
 * field for what the llama blocks do not compute: sliding windows (Qwen2's use_sliding_window, or
 * a non-null sliding_window elsewhere), experts (num_local_experts, num_experts, ...),
 * attention_bias / mlp_bias, qk-norm (use_qk_norm, qk_layernorm), clip_qkv, head_dim other than
 * hidden_size / num_attention_heads, hidden_act other than silu, partial rotary, another
 * rope_type, OLMo's weightless LayerNorm; then pt_model_config_validate. `what` names the source. */
pt_status pt_model_config_from_hf_json(const struct cJSON *obj, const char *what, pt_model_config *out);

/* The config of a checkpoint path (above): its config.json through pt_model_config_from_hf_json
 * (name: the directory's), or a single file's pipetrain_config metadata. PT_EINVAL when it has
 * neither, PT_EIO when the path does not exist. */
pt_status pt_model_config_from_hf(const char *path, pt_model_config *out);

/* The inverse of pt_model_config_from_hf_json for a llama config: a new config.json object for
 * LlamaForCausalLM (vocab_size = vocab_padded rows, plus pipetrain_vocab_size when they differ;
 * torch_dtype bfloat16 when bf16, else float32). NULL for a gpt2 config or when out of memory. */
struct cJSON *pt_model_config_to_hf_json(const pt_model_config *c, int bf16);

/* Loads every tensor of this llama chunk from a checkpoint path (above), stacking q/k/v and
 * gate/up by rows. Index shards are opened only when one of their tensors is read. When the
 * checkpoint has a config.json, the fields that tensor shapes cannot tell (heads, kv heads,
 * rope_theta, rms_norm_eps, rope_scaling, tie_word_embeddings) must equal the model's (PT_EINVAL
 * naming the field). A block's bias or q/k-norm tensors are PT_EINVAL naming the tensor; a missing
 * or misshapen tensor is PT_EFORMAT naming the tensor, the file and both shapes (an embedding of
 * vocab_size rows for a config padded to vocab_padded is refused: the padded logits would join the
 * softmax untrained). */
pt_status pt_model_load_hf_llama(pt_model *m, const char *path);

typedef struct pt_hf_export_opts {
    int bf16;             /* 1: BF16 on disk (round to nearest even), 0: F32 */
    uint64_t shard_bytes; /* > 0: shards model-0000i-of-0000n.safetensors of at most this many bytes
                           * of tensor data (a larger tensor alone in its shard) plus the index, when
                           * the model is larger; 0: one model.safetensors */
} pt_hf_export_opts;

/* Writes the weights held by `models` (n chunks of one llama config in one process, together
 * covering every layer; a tensor held twice is written once) in Hugging Face LlamaForCausalLM
 * naming and layout, every vocab_padded row. `out` is a directory (created; config.json plus
 * model.safetensors or the shards and model.safetensors.index.json; an earlier export's weight
 * files there that this one does not rewrite are removed), or, when it ends in ".safetensors",
 * one file with the config in its "pipetrain_config" metadata. opts NULL: F32, one file.
 * Loading it back and exporting again gives the same bytes. Synchronises; every file is written
 * through a temporary file. PT_EINVAL when the chunks miss a layer, differ in config or are not
 * llama, PT_EIO when a file cannot be written. */
pt_status pt_model_export_hf_llama(pt_model *const *models, int n, const char *out, const pt_hf_export_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
