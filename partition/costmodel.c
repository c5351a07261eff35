/* Cost model: devices, topology, per-layer FLOPs / bytes / times, cost files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition_internal.h"
#include "pipetrain/json.h"

/* ---- devices ---- */

static const pt_device device_presets[] = {
    /* One core of this machine (a rank with one thread; the trainer multiplies the peak by a
     * rank's threads): Zen 5, 270 GFLOP/s fp32 FMA peak (540 measured on its 2 cores). Efficiency
     * 0.38 is what whole training steps reach with OPENBLAS_CORETYPE=Haswell (AVX2 kernels) as set
     * here: gpt2 (124M), P=2 1F1B, M=16 of 1x256 took 17.7 s where 0.5 predicted 13.6 s. "Links"
     * are shared memory (libfabric shm: ~10 GB/s, 0.24 us; tcp 5 us); ~20 GB/s memory bandwidth
     * on large arrays (memcpy at 256 MiB). */
    { "cpu", 270e9, 0.38, 24.0 * 1024 * 1024 * 1024, 4, 0, 4, 10e9, 0.25e-6, 2.5e9, 7e-6, 20e9 },
    /* H100 SXM: 989 TFLOP/s bf16 dense, 80 GB HBM3, NVLink 4 ~450 GB/s per direction,
     * 400 Gb/s InfiniBand per GPU ~ 50 GB/s. Activations are fp32 buffers (the backend seam takes
     * fp32 pointers on every backend); weights have a bf16 copy next to the fp32 master. */
    { "h100", 989e12, 0.5, 80e9, 4, 2, 4, 450e9, 3e-6, 50e9, 5e-6, 3.35e12 },
    /* H200: same compute as H100, 141 GB HBM3e at 4.8 TB/s (H100: 3.35 TB/s). */
    { "h200", 989e12, 0.5, 141e9, 4, 2, 4, 450e9, 3e-6, 50e9, 5e-6, 4.8e12 },
};

pt_status pt_device_load(const char *name_or_path, pt_device *out)
{
    if (!name_or_path || !*name_or_path)
        return pt_fail(PT_EINVAL, "no device given; use cpu, h100, h200 or a device JSON file");
    for (size_t i = 0; i < sizeof device_presets / sizeof device_presets[0]; i++) {
        if (strcmp(name_or_path, device_presets[i].name) == 0) {
            *out = device_presets[i];
            return PT_OK;
        }
    }
    cJSON *j = NULL;
    pt_status st = pt_json_read_file(name_or_path, &j);
    if (st != PT_OK)
        return pt_fail_wrap(st, "device '%s' is not cpu, h100 or h200, and reading it as a file failed", name_or_path);
    static const char *const keys[] = { "name", "peak_tflops", "efficiency", "mem_gb", "act_elem_bytes", "bf16_weights",
                                        "bf16_messages", "bf16_stash", "intra_gbps", "intra_latency_us", "inter_gbps",
                                        "inter_latency_us", "mem_gbps", NULL };
    pt_device d = device_presets[1]; /* GPU-like defaults for optional keys */
    const char *name = NULL;
    double tf = 0, eff = 0, mem = 0, v = 0;
    long long iv = 0;
    PT_TRY(pt_json_check_keys(j, name_or_path, keys), done);
    PT_TRY(pt_json_get_string(j, name_or_path, "name", &name), done);
    PT_TRY(pt_json_get_double(j, name_or_path, "peak_tflops", &tf), done);
    PT_TRY(pt_json_get_double(j, name_or_path, "efficiency", &eff), done);
    PT_TRY(pt_json_get_double(j, name_or_path, "mem_gb", &mem), done);
    if (!(tf > 0) || !(eff > 0 && eff <= 1) || !(mem > 0)) {
        st = pt_fail(PT_EINVAL, "%s: peak_tflops and mem_gb must be > 0 and efficiency in (0, 1]", name_or_path);
        goto done;
    }
    snprintf(d.name, sizeof d.name, "%s", name);
    d.peak_flops = tf * 1e12;
    d.efficiency = eff;
    d.mem_bytes = mem * 1e9;
    if (cJSON_GetObjectItemCaseSensitive(j, "act_elem_bytes")) {
        PT_TRY(pt_json_get_int(j, name_or_path, "act_elem_bytes", 1, 8, &iv), done);
        d.act_elem_bytes = (int)iv;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "bf16_weights")) {
        PT_TRY(pt_json_get_int(j, name_or_path, "bf16_weights", 0, 1, &iv), done);
        d.weight_copy_bytes = 2 * (int)iv;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "bf16_messages")) {
        PT_TRY(pt_json_get_int(j, name_or_path, "bf16_messages", 0, 1, &iv), done);
        d.msg_elem_bytes = iv ? 2 : 4;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "bf16_stash")) {
        PT_TRY(pt_json_get_int(j, name_or_path, "bf16_stash", 0, 1, &iv), done);
        d.stash_elem_bytes = iv ? 2 : 0;
    }
    static const char *const link_keys[] = { "intra_gbps", "intra_latency_us", "inter_gbps", "inter_latency_us",
                                             "mem_gbps" };
    double *link_dst[] = { &d.intra_bw_Bps, &d.intra_latency_s, &d.inter_bw_Bps, &d.inter_latency_s, &d.mem_bw_Bps };
    const double link_scale[] = { 1e9, 1e-6, 1e9, 1e-6, 1e9 };
    for (int k = 0; k < 5; k++) {
        if (!cJSON_GetObjectItemCaseSensitive(j, link_keys[k]))
            continue;
        PT_TRY(pt_json_get_double(j, name_or_path, link_keys[k], &v), done);
        if (!(v >= 0) || (k % 2 == 0 && !(v > 0))) {
            st = pt_fail(PT_EINVAL, "%s: %s must be positive", name_or_path, link_keys[k]);
            goto done;
        }
        *link_dst[k] = v * link_scale[k];
    }
    *out = d;
done:
    cJSON_Delete(j);
    return st;
}

void pt_device_set_precision(pt_device *d, int bf16, int stash)
{
    d->weight_copy_bytes = bf16 ? 4 : 0;
    d->msg_elem_bytes = bf16 ? 2 : 4;
    d->stash_elem_bytes = bf16 && stash ? 2 : 0;
}

pt_status pt_topology_init(pt_topology *t, const pt_device *dev, int n_nodes, int devices_per_node)
{
    if (n_nodes < 1 || devices_per_node < 1)
        return pt_fail(PT_EINVAL, "topology of %d nodes x %d devices: both must be >= 1", n_nodes, devices_per_node);
    t->n_nodes = n_nodes;
    t->devices_per_node = devices_per_node;
    t->intra_bw_Bps = dev->intra_bw_Bps;
    t->intra_latency_s = dev->intra_latency_s;
    t->inter_bw_Bps = dev->inter_bw_Bps;
    t->inter_latency_s = dev->inter_latency_s;
    return PT_OK;
}

/* ---- analytic costs ---- */

static int64_t vocab_padded(const pt_model_config *c) { return c->vocab_padded > 0 ? c->vocab_padded : c->vocab_size; }

static int is_llama(const pt_model_config *c) { return c->arch == PT_ARCH_LLAMA; }

/* Per token: the width of a block's fused q|k|v rows (C + 2 NKV hs; 3C for gpt2), of the MLP's
 * up-projection output (2H gate|up for llama, 4C for gpt2) and of its activation (H, 4C). */
static double qkv_width(const pt_model_config *c)
{
    return (double)c->n_embd + 2.0 * pt_model_kv_heads(c) * (c->n_embd / c->n_head);
}
static double mlp_up_width(const pt_model_config *c)
{
    return is_llama(c) ? 2.0 * c->intermediate_size : 4.0 * c->n_embd;
}
static double mlp_act_width(const pt_model_config *c) { return is_llama(c) ? c->intermediate_size : 4.0 * c->n_embd; }

/* Multiply-adds per token of one block's matrix products: gpt2 12 C^2 (qkv 3C^2, proj C^2, MLP
 * 8C^2); llama C (C + 2 NKV hs) for q|k|v, C^2 for o, 3 C H for gate, up and down. */
static double block_macs(const pt_model_config *c)
{
    const double C = c->n_embd;
    if (!is_llama(c))
        return 12.0 * C * C;
    return C * qkv_width(c) + C * C + 3.0 * C * c->intermediate_size;
}

/* Parameters of one block: gpt2 12 C^2 + 13 C (weights and biases, two LayerNorms); llama the
 * matrices of block_macs and two RMSNorm weights (2 C), no biases. */
static int64_t block_params(const pt_model_config *c)
{
    const int64_t C = c->n_embd;
    if (!is_llama(c))
        return 12 * C * C + 13 * C;
    const int64_t kv = (int64_t)pt_model_kv_heads(c) * (C / c->n_head), H = c->intermediate_size;
    return C * (C + 2 * kv) + C * C + 3 * C * H + 2 * C;
}

/* Logical parameters of the embedding (wte, and gpt2's wpe) and of the final norm (LayerNorm
 * weight and bias, or the RMSNorm weight). */
static int64_t emb_params(const pt_model_config *c)
{
    return (int64_t)c->vocab_size * c->n_embd + (is_llama(c) ? 0 : (int64_t)c->max_seq_len * c->n_embd);
}
static int64_t emb_alloc(const pt_model_config *c)
{
    return vocab_padded(c) * c->n_embd + (is_llama(c) ? 0 : (int64_t)c->max_seq_len * c->n_embd);
}
static int64_t norm_params(const pt_model_config *c) { return (is_llama(c) ? 1 : 2) * (int64_t)c->n_embd; }

/* Bytes of a norm's per-token statistics (fp32): LayerNorm keeps mean and rstd, RMSNorm rstd. */
static double norm_stat_bytes(const pt_model_config *c) { return is_llama(c) ? 4.0 : 8.0; }

/* Bytes per micro-batch of the gradients split backward keeps for one block between its
 * backward-input and backward-weight (models/ carve_block_grad): dfch (N, up width), dln2,
 * dres2, dln1 (N, C each), dqkv (N, qkv width): 10 NC for gpt2. */
static double block_grad_bytes(const pt_model_config *c, double N, double elem_bytes)
{
    return elem_bytes * N * (mlp_up_width(c) + 3.0 * c->n_embd + qkv_width(c));
}
static double grad_kept_bytes_tp(const pt_model_config *c, double N, double elem_bytes, double stash_bytes, int tp,
                                 int sp);

/* The bf16 stash's traffic as forward traffic, which the times charge 1 + 1.5 + 0.5 times: the
 * packing pass and the two widening passes (backward_input reads 9 of a gpt2 block's 15 NC of
 * rounded internals, backward_weight 8: about one pass more) read and write the rounded internals
 * (`pass`: their bytes at 4 + 2 an element) about twice over, so 2/3 of a pass here. An upper
 * bound: the tensors packed by their rounding pass (round_pack_bf16) are not read again for it. */
static double stash_traffic(double pass) { return pass * 2.0 / 3.0; }

int64_t pt_cost_n_params(const pt_model_config *c)
{
    int64_t n = emb_params(c);                 /* wte (+ wpe) */
    n += (int64_t)c->n_layer * block_params(c); /* blocks */
    n += norm_params(c);                       /* final norm */
    if (!pt_model_tied(c))
        n += (int64_t)c->vocab_size * c->n_embd; /* llama's own lm_head */
    return n;
}

double pt_part_state_bytes_per_param(const pt_device *dev)
{
    /* fp32 parameters (the master copy on GPUs), fp32 gradients, AdamW m and v; plus a bf16 copy
     * of the weights where the device computes in bf16. */
    return 16.0 + dev->weight_copy_bytes;
}

double pt_part_chunk_tied_elems(const pt_model_config *cfg, int first, int last, int *full_copy)
{
    /* Alone, a chunk holding head layers keeps its own wte copy (weights, gradient, moments),
     * whose gradient is the head's twin, however many shards it holds (models/ multiplies every
     * local shard by rows of the one copy). With the embedding in the same chunk it shares the
     * embedding's wte and keeps only a separate fp32 twin gradient. An untied (llama) head's
     * lm_head is a whole tensor in every chunk with head layers, embedding or not (the first
     * one's is the parameter, later ones are copies: pt_model_tensor_is_copy). */
    *full_copy = 0;
    if (last < cfg->n_layer + 1)
        return 0;
    *full_copy = !pt_model_tied(cfg) || first > 0;
    return (double)vocab_padded(cfg) * cfg->n_embd;
}

double pt_part_chunk_tied_state_bytes(const pt_model_config *cfg, const pt_device *dev, int first, int last)
{
    int full = 0;
    const double n = pt_part_chunk_tied_elems(cfg, first, last, &full);
    return n * (full ? pt_part_state_bytes_per_param(dev) : 4.0);
}

pt_status pt_cost_layers(const pt_model_config *cfg, int B, int T, const pt_device *dev,
                         const pt_layer_times *measured, pt_layer_cost *costs)
{
    if (B < 1 || T < 1)
        return pt_fail(PT_EINVAL, "micro-batch size %d and sequence length %d must be >= 1", B, T);
    if (cfg->n_layer < 1 || cfg->n_embd < 1 || cfg->n_head < 1 || cfg->vocab_size < 1)
        return pt_fail(PT_EINVAL, "model config '%s' has a zero size; check n_layer, n_embd, n_head, vocab_size",
                       cfg->name);
    if (pt_model_head_layers(cfg) > vocab_padded(cfg))
        return pt_fail(PT_EINVAL, "model config '%s' splits its LM head into %d shards but wte has %lld rows; use at most "
                                  "that many",
                       cfg->name, pt_model_head_layers(cfg), (long long)vocab_padded(cfg));
    if (is_llama(cfg) && (cfg->intermediate_size < 1 || cfg->n_head % pt_model_kv_heads(cfg) != 0))
        return pt_fail(PT_EINVAL, "llama config '%s' needs intermediate_size >= 1 and n_kv_head dividing n_head (%d, %d)",
                       cfg->name, cfg->intermediate_size, pt_model_kv_heads(cfg));
    const int L = pt_model_n_layers(cfg);
    if (measured && (measured->n_layers != L || pt_model_head_layers(&measured->cfg) != pt_model_head_layers(cfg) ||
                     measured->cfg.n_embd != cfg->n_embd ||
                     measured->cfg.n_head != cfg->n_head || measured->cfg.vocab_size != cfg->vocab_size))
        return pt_fail(PT_EINVAL,
                       "cost file measured %d layers of width %d (vocabulary %d, head split %d), but model '%s' has "
                       "%d layers of width %d (vocabulary %d, head split %d); run pipetrain profile-layers for this "
                       "model (with the same --head-split)",
                       measured->n_layers, measured->cfg.n_embd, measured->cfg.vocab_size,
                       pt_model_head_layers(&measured->cfg), cfg->name, L, cfg->n_embd, cfg->vocab_size,
                       pt_model_head_layers(cfg));
    if (measured && (measured->cfg.arch != cfg->arch || pt_model_kv_heads(&measured->cfg) != pt_model_kv_heads(cfg) ||
                     (is_llama(cfg) && measured->cfg.intermediate_size != cfg->intermediate_size)))
        return pt_fail(PT_EINVAL,
                       "cost file measured a %s model (%d kv heads, MLP width %d), but model '%s' is %s (%d kv heads, "
                       "MLP width %d); run pipetrain profile-layers for this model",
                       pt_model_arch_name(measured->cfg.arch), pt_model_kv_heads(&measured->cfg),
                       measured->cfg.intermediate_size, cfg->name, pt_model_arch_name(cfg->arch),
                       pt_model_kv_heads(cfg), cfg->intermediate_size);
    const double C = cfg->n_embd, N = (double)B * T, Vp = (double)vocab_padded(cfg);
    const double a = dev->act_elem_bytes, per_param = pt_part_state_bytes_per_param(dev);
    const double stash = pt_part_stash_elem_bytes(dev);
    const double rate = dev->peak_flops * dev->efficiency;
    const double nstat = norm_stat_bytes(cfg); /* per token: mean and rstd, or rstd */

    /* embedding: a table lookup (no matrix products); keeps the token ids for backward. */
    pt_layer_cost *e = &costs[0];
    memset(e, 0, sizeof *e);
    e->n_params = emb_params(cfg);
    e->n_params_alloc = emb_alloc(cfg);
    e->act_bytes = e->act_bytes_recompute = N * 4 + 2.0 * N * C * a; /* token ids; output and its gradient */
    e->act_split_bytes = N * C * a;
    const double msg = dev->msg_elem_bytes > 0 ? dev->msg_elem_bytes : 4; /* a message's bytes an element */
    e->out_bytes = N * C * msg;
    e->fwd_traffic_bytes = N * C * 4 + N * C * a; /* gather the rows (wte; + wpe for gpt2), write the output */

    for (int l = 1; l <= cfg->n_layer; l++) {
        pt_layer_cost *b = &costs[l];
        memset(b, 0, sizeof *b);
        /* the matrix products (block_macs: 12 C^2 a token for gpt2; q|k|v with grouped kv heads,
         * o and the three SwiGLU matrices for llama), and attention's QK^T and AV over all query
         * heads (T C each a token, whatever the kv heads) */
        const double mm = 2.0 * N * block_macs(cfg);
        const double att = 2.0 * N * 2.0 * T * C;
        b->fwd_flops = mm + att;
        b->bwd_input_flops = mm + 2.0 * att;
        b->bwd_weight_flops = mm;
        b->n_params = b->n_params_alloc = block_params(cfg);
        /* per slot: the block's output and its gradient (2 NC), the gradients kept between
         * backward-input and backward-weight (block_grad_bytes), and, unless recomputed, the
         * internals; all but the output only for split backward */
        b->act_split_bytes = a * N * C + grad_kept_bytes_tp(cfg, N, a, stash, 1, 0);
        b->act_bytes_recompute = a * N * C + b->act_split_bytes;
        b->act_bytes = b->act_bytes_recompute + pt_part_block_kept_bytes_tp(cfg, B, T, a, stash, 1, 0);
        /* every internal written once and read once, plus the block's input and output; RMSNorm,
         * SwiGLU and the rest of the element-wise work are priced by these bytes, not FLOPs (as
         * LayerNorm and GELU are); llama's RoPE also reads and rewrites q and k in place; the bf16
         * stash adds its passes (stash_traffic) */
        b->fwd_traffic_bytes = 2.0 * pt_part_block_act_bytes(cfg, B, T, a) + 2.0 * N * C * a;
        if (stash < a)
            b->fwd_traffic_bytes += stash_traffic(pt_part_block_rounded_bytes_tp(cfg, B, T, a + stash, 1, 0));
        if (is_llama(cfg))
            b->fwd_traffic_bytes += 2.0 * N * (C + (double)pt_model_kv_heads(cfg) * (cfg->n_embd / cfg->n_head)) * a;
        b->out_bytes = N * C * msg;
    }

    const int K = pt_model_head_layers(cfg);
    /* the head's logical parameters: the final norm, and llama's own lm_head when untied (its
     * allocation is the chunk's, as the tied copy: pt_part_chunk_tied_elems) */
    const int64_t head_params = norm_params(cfg) + (pt_model_tied(cfg) ? 0 : (int64_t)cfg->vocab_size * cfg->n_embd);
    pt_model_config shape = *cfg; /* the rows models/ gives each shard: of vocab_padded, or V when unset */
    shape.vocab_padded = (int)Vp;
    if (K == 1) {
        /* head: final norm, logits against the LM head (Vp x C: wte tied, the chunk's copy or
         * twin, or lm_head; see pt_part_chunk_tied_elems), softmax cross-entropy. */
        pt_layer_cost *h = &costs[L - 1];
        memset(h, 0, sizeof *h);
        h->fwd_flops = 2.0 * N * C * Vp;
        h->bwd_input_flops = 2.0 * N * C * Vp;
        h->bwd_weight_flops = 2.0 * N * C * Vp;
        h->n_params = head_params;
        h->n_params_alloc = norm_params(cfg);
        /* targets, norm output and its gradient, its statistics, fp32 probabilities (B,T,Vp), losses */
        h->act_bytes = h->act_bytes_recompute = N * 4 + 2.0 * N * C * a + N * nstat + N * Vp * 4 + N * 4;
        h->act_split_bytes = N * C * a; /* the norm output's gradient */
        h->out_bytes = 0;
        h->fwd_traffic_bytes = 3.0 * N * Vp * 4 + 2.0 * N * C * a; /* logits written, read, probabilities written */
        if (pt_model_head_chunk_rows(cfg, (int)N) > 0) {
            /* chunked (model.h pt_model_forward_train): the forward makes the loss gradient too, so
             * all three products run in it; a slot keeps dlnf, not the probabilities (the chunk's
             * logits are per chunk: pt_part_chunk_fixed_bytes); each chunk's dW product re-reads and
             * rewrites the (Vp, C) fp32 gradient, and the logits are written and read twice more
             * (gradient written, read by both products) */
            const double n_chunks = ceil(N / pt_model_head_chunk_rows(cfg, (int)N));
            h->fwd_flops = 6.0 * N * C * Vp;
            h->bwd_input_flops = h->bwd_weight_flops = 0;
            h->act_bytes = h->act_bytes_recompute = N * 4 + 2.0 * N * C * a + N * nstat + N * 4;
            h->act_split_bytes = 0; /* dlnf is made in the forward, kept in act_bytes whatever the schedule */
            h->fwd_traffic_bytes = 6.0 * N * Vp * 4 + 3.0 * N * C * a + n_chunks * 2.0 * Vp * C * 4;
        }
    }
    for (int k = 0; K > 1 && k < K; k++) {
        /* vocabulary shard k: logits against LM-head rows [v0, v1), its part of the softmax
         * combined with the earlier shards' through per-token statistics (models/model.c,
         * shards_forward) */
        pt_layer_cost *h = &costs[cfg->n_layer + 1 + k];
        memset(h, 0, sizeof *h);
        int v0, v1;
        pt_model_head_shard_rows(&shape, k, &v0, &v1);
        const double Vk = v1 - v0, W = C + PT_XENT_STATS;
        h->fwd_flops = h->bwd_input_flops = h->bwd_weight_flops = 2.0 * N * C * Vk;
        /* exponentials (then logit gradients) (N,Vk) and row maxima; the targets are counted with
         * the first head layer (pt_part_chunk_slot_bytes adds them to chunks that start later) */
        h->act_bytes = N * Vk * 4 + N * 4;
        h->fwd_traffic_bytes = 3.0 * N * Vk * 4;
        if (k == 0) {
            /* final norm: its output and gradient, its statistics; targets */
            h->n_params = head_params;
            h->n_params_alloc = norm_params(cfg);
            h->act_bytes += N * 4 + 2.0 * N * C * a + N * nstat;
            h->act_split_bytes = N * C * a;
            h->fwd_traffic_bytes += 2.0 * N * C * a;
        }
        if (k + 1 < K) {
            /* the output h|stats and its gradient dh|lse, both kept per slot whatever the schedule */
            h->act_bytes += 2.0 * N * W * a;
            h->out_bytes = N * W * 4;
        } else {
            h->act_bytes += N * 4 + N * 4 + N * PT_XENT_STATS * 4; /* losses, log-sum-exp, final statistics */
        }
        h->act_bytes_recompute = h->act_bytes;
    }

    for (int l = 0; l < L; l++) {
        pt_layer_cost *c = &costs[l];
        c->state_bytes = (double)c->n_params_alloc * per_param;
        if (measured) {
            const double scale = N / ((double)measured->micro_batch_size * measured->seq_len);
            c->t_fwd = measured->fwd_s[l] * scale;
            c->t_bwd_input = measured->bwd_input_s[l] * scale;
            c->t_bwd_weight = measured->bwd_weight_s[l] * scale;
        } else {
            const double bw = dev->mem_bw_Bps > 0 ? dev->mem_bw_Bps : INFINITY;
            c->t_fwd = c->fwd_flops / rate + c->fwd_traffic_bytes / bw;
            c->t_bwd_input = c->bwd_input_flops / rate + 1.5 * c->fwd_traffic_bytes / bw;
            c->t_bwd_weight = c->bwd_weight_flops / rate + 0.5 * c->fwd_traffic_bytes / bw;
            if (l == L - 1 && K == 1 && pt_model_head_chunk_rows(cfg, (int)N) > 0) {
                /* a chunked head's backward is its final norm's alone: dlnf, x in, dx out; then
                 * dlnf and x again for the norm's weights */
                c->t_bwd_input = 3.0 * N * C * a / bw;
                c->t_bwd_weight = 2.0 * N * C * a / bw;
            }
        }
    }
    return PT_OK;
}

double pt_cost_step_flops(const pt_model_config *cfg, int T, double n_tokens)
{
    const double C = cfg->n_embd, Vp = (double)vocab_padded(cfg);
    const double per_token_block = 3.0 * 2.0 * block_macs(cfg) + 3.0 * 4.0 * T * C;
    const double per_token_head = 3.0 * 2.0 * C * Vp;
    return n_tokens * (cfg->n_layer * per_token_block + per_token_head);
}

/* ---- cost files ---- */

pt_status pt_layer_times_create(int n_layers, pt_layer_times **out)
{
    if (n_layers < 1)
        return pt_fail(PT_EINVAL, "a cost file needs at least one layer");
    pt_layer_times *t = calloc(1, sizeof *t);
    if (!t)
        return pt_fail(PT_ENOMEM, "out of host memory for a cost table");
    t->n_layers = n_layers;
    t->fwd_s = calloc((size_t)n_layers, sizeof(double));
    t->bwd_input_s = calloc((size_t)n_layers, sizeof(double));
    t->bwd_weight_s = calloc((size_t)n_layers, sizeof(double));
    if (!t->fwd_s || !t->bwd_input_s || !t->bwd_weight_s) {
        pt_layer_times_destroy(t);
        return pt_fail(PT_ENOMEM, "out of host memory for a cost table");
    }
    *out = t;
    return PT_OK;
}

void pt_layer_times_destroy(pt_layer_times *t)
{
    if (!t)
        return;
    free(t->bwd_weight_s);
    free(t->bwd_input_s);
    free(t->fwd_s);
    free(t);
}

pt_status pt_layer_times_save(const pt_layer_times *t, const char *path)
{
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    if (!root || !model || !layers) {
        cJSON_Delete(root);
        cJSON_Delete(model);
        cJSON_Delete(layers);
        return pt_fail(PT_ENOMEM, "out of host memory writing %s", path);
    }
    cJSON_AddStringToObject(root, "format", PT_COST_FILE_FORMAT);
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(model, "name", t->cfg.name);
    cJSON_AddNumberToObject(model, "n_layer", t->cfg.n_layer);
    cJSON_AddNumberToObject(model, "n_head", t->cfg.n_head);
    cJSON_AddNumberToObject(model, "n_embd", t->cfg.n_embd);
    cJSON_AddNumberToObject(model, "vocab_size", t->cfg.vocab_size);
    cJSON_AddNumberToObject(model, "vocab_padded", t->cfg.vocab_padded);
    cJSON_AddNumberToObject(model, "max_seq_len", t->cfg.max_seq_len);
    if (pt_model_head_layers(&t->cfg) > 1) /* optional: files of unsplit heads stay as they were */
        cJSON_AddNumberToObject(model, "head_split", t->cfg.head_split);
    if (t->cfg.arch == PT_ARCH_LLAMA) { /* optional too: gpt2 files stay as they were */
        cJSON_AddStringToObject(model, "architecture", pt_model_arch_name(t->cfg.arch));
        cJSON_AddNumberToObject(model, "n_kv_head", pt_model_kv_heads(&t->cfg));
        cJSON_AddNumberToObject(model, "intermediate_size", t->cfg.intermediate_size);
        cJSON_AddBoolToObject(model, "tie_word_embeddings", t->cfg.tie_word_embeddings != 0);
    }
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "micro_batch_size", t->micro_batch_size);
    cJSON_AddNumberToObject(root, "seq_len", t->seq_len);
    cJSON_AddNumberToObject(root, "threads", t->n_threads);
    cJSON_AddStringToObject(root, "backend", t->backend);
    for (int l = 0; l < t->n_layers; l++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddNumberToObject(o, "forward_s", t->fwd_s[l]);
        cJSON_AddNumberToObject(o, "backward_input_s", t->bwd_input_s[l]);
        cJSON_AddNumberToObject(o, "backward_weight_s", t->bwd_weight_s[l]);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON_AddItemToObject(root, "layers", layers);
    pt_status st = pt_json_write_file(path, root, 0);
    cJSON_Delete(root);
    return st;
}

pt_status pt_layer_times_load(const char *path, pt_layer_times **out)
{
    cJSON *j = NULL;
    PT_CHECK(pt_json_read_file(path, &j));
    static const char *const keys[] = { "format", "version", "model", "micro_batch_size", "seq_len", "threads",
                                        "backend", "layers", NULL };
    static const char *const model_keys[] = { "name", "n_layer", "n_head", "n_embd", "vocab_size", "vocab_padded",
                                              "max_seq_len", "head_split", "architecture", "n_kv_head",
                                              "intermediate_size", "tie_word_embeddings", NULL };
    static const char *const layer_keys[] = { "layer", "forward_s", "backward_input_s", "backward_weight_s", NULL };
    pt_layer_times *t = NULL;
    const char *s = NULL;
    long long v = 0, b = 0, T = 0, th = 0;
    pt_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pt_status st = pt_json_check_keys(j, path, keys);
    if (st != PT_OK)
        goto fail;
    PT_TRY(pt_json_get_string(j, path, "format", &s), fail);
    if (strcmp(s, PT_COST_FILE_FORMAT) != 0) {
        st = pt_fail(PT_EFORMAT, "%s: format '%s' is not a pipetrain cost file; make one with pipetrain profile-layers",
                     path, s);
        goto fail;
    }
    PT_TRY(pt_json_get_int(j, path, "version", 1, 1, &v), fail);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (!cJSON_IsObject(m)) {
        st = pt_fail(PT_EFORMAT, "%s: 'model' must be an object", path);
        goto fail;
    }
    PT_TRY(pt_json_check_keys(m, path, model_keys), fail);
    PT_TRY(pt_json_get_string(m, path, "name", &s), fail);
    snprintf(cfg.name, sizeof cfg.name, "%s", s);
    PT_TRY(pt_json_get_int(m, path, "n_layer", 1, 100000, &v), fail);
    cfg.n_layer = (int)v;
    PT_TRY(pt_json_get_int(m, path, "n_head", 1, 100000, &v), fail);
    cfg.n_head = (int)v;
    PT_TRY(pt_json_get_int(m, path, "n_embd", 1, 1000000, &v), fail);
    cfg.n_embd = (int)v;
    PT_TRY(pt_json_get_int(m, path, "vocab_size", 1, 100000000, &v), fail);
    cfg.vocab_size = (int)v;
    PT_TRY(pt_json_get_int(m, path, "vocab_padded", 0, 100000000, &v), fail);
    cfg.vocab_padded = (int)v;
    PT_TRY(pt_json_get_int(m, path, "max_seq_len", 1, 100000000, &v), fail);
    cfg.max_seq_len = (int)v;
    if (cJSON_GetObjectItemCaseSensitive(m, "head_split")) {
        /* at most one shard per row of wte, so that none is empty */
        PT_TRY(pt_json_get_int(m, path, "head_split", 1, cfg.vocab_padded > 0 ? cfg.vocab_padded : cfg.vocab_size, &v),
               fail);
        cfg.head_split = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(m, "architecture")) {
        /* llama files name the architecture and its shape; files without it are gpt2 */
        PT_TRY(pt_json_get_string(m, path, "architecture", &s), fail);
        if (strcmp(s, "gpt2") != 0 && strcmp(s, "llama") != 0) {
            st = pt_fail(PT_EFORMAT, "%s: model architecture '%s' is not gpt2 or llama", path, s);
            goto fail;
        }
        cfg.arch = strcmp(s, "llama") == 0 ? PT_ARCH_LLAMA : PT_ARCH_GPT2;
    }
    static const char *const llama_keys[] = { "n_kv_head", "intermediate_size", "tie_word_embeddings" };
    for (int k = 0; k < 3; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(m, llama_keys[k]);
        if (x && cfg.arch != PT_ARCH_LLAMA) {
            st = pt_fail(PT_EFORMAT, "%s: model key '%s' needs \"architecture\": \"llama\"", path, llama_keys[k]);
            goto fail;
        }
        if (!x && cfg.arch == PT_ARCH_LLAMA && k < 2) {
            st = pt_fail(PT_EFORMAT, "%s: a llama cost file needs model key '%s'; make it again with pipetrain "
                                     "profile-layers",
                         path, llama_keys[k]);
            goto fail;
        }
    }
    if (cfg.arch == PT_ARCH_LLAMA) {
        PT_TRY(pt_json_get_int(m, path, "n_kv_head", 1, cfg.n_head, &v), fail);
        if (cfg.n_head % v != 0) {
            st = pt_fail(PT_EFORMAT, "%s: n_kv_head %lld does not divide n_head %d", path, v, cfg.n_head);
            goto fail;
        }
        cfg.n_kv_head = (int)v;
        PT_TRY(pt_json_get_int(m, path, "intermediate_size", 1, 100000000, &v), fail);
        cfg.intermediate_size = (int)v;
        const cJSON *tie = cJSON_GetObjectItemCaseSensitive(m, "tie_word_embeddings");
        if (tie && !cJSON_IsBool(tie)) {
            st = pt_fail(PT_EFORMAT, "%s: tie_word_embeddings must be true or false", path);
            goto fail;
        }
        cfg.tie_word_embeddings = tie && cJSON_IsTrue(tie);
    }
    PT_TRY(pt_json_get_int(j, path, "micro_batch_size", 1, 1 << 20, &b), fail);
    PT_TRY(pt_json_get_int(j, path, "seq_len", 1, 1 << 24, &T), fail);
    PT_TRY(pt_json_get_int(j, path, "threads", 0, 1 << 16, &th), fail);
    PT_TRY(pt_json_get_string(j, path, "backend", &s), fail);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
    const int n_layers = pt_model_n_layers(&cfg);
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != n_layers) {
        st = pt_fail(PT_EFORMAT, "%s: 'layers' must list all %d layers (embedding, blocks, %d head layer(s))", path,
                     n_layers, pt_model_head_layers(&cfg));
        goto fail;
    }
    PT_TRY(pt_layer_times_create(n_layers, &t), fail);
    t->cfg = cfg;
    t->micro_batch_size = (int)b;
    t->seq_len = (int)T;
    t->n_threads = (int)th;
    snprintf(t->backend, sizeof t->backend, "%s", s);
    int l = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, layers)
    {
        char what[512];
        snprintf(what, sizeof what, "%s: layers[%d]", path, l);
        PT_TRY(pt_json_check_keys(o, what, layer_keys), fail);
        PT_TRY(pt_json_get_int(o, what, "layer", l, l, &v), fail);
        double *cols[] = { &t->fwd_s[l], &t->bwd_input_s[l], &t->bwd_weight_s[l] };
        for (int k = 0; k < 3; k++) {
            PT_TRY(pt_json_get_double(o, what, layer_keys[k + 1], cols[k]), fail);
            if (!(*cols[k] >= 0) || !isfinite(*cols[k])) {
                st = pt_fail(PT_EFORMAT, "%s: %s must be a finite time >= 0", what, layer_keys[k + 1]);
                goto fail;
            }
        }
        l++;
    }
    cJSON_Delete(j);
    *out = t;
    return PT_OK;
fail:
    pt_layer_times_destroy(t);
    cJSON_Delete(j);
    return st;
}

double pt_part_block_act_bytes(const pt_model_config *cfg, int B, int T, double elem_bytes)
{
    return pt_part_block_act_bytes_tp(cfg, B, T, elem_bytes, 1, 0);
}

/* ---- tensor parallelism ---- */

/* Query and kv heads one TP rank holds: n_head / T, and n_kv_head / T or (n_kv_head < T) one
 * replicated kv head. */
static double tp_kv_heads(const pt_model_config *c, int tp)
{
    const int kv = pt_model_kv_heads(c);
    return kv >= tp ? (double)kv / tp : 1.0;
}
/* One rank's q|k|v width: C / T query columns and its kv heads' k and v. */
static double tp_qkv_width(const pt_model_config *c, int tp)
{
    return (double)c->n_embd / tp + 2.0 * tp_kv_heads(c, tp) * (c->n_embd / c->n_head);
}
static double tp_block_macs(const pt_model_config *c, int tp)
{
    const double C = c->n_embd;
    if (!is_llama(c))
        return 12.0 * C * C / tp;
    return C * tp_qkv_width(c, tp) + C * C / tp + 3.0 * C * c->intermediate_size / tp;
}
/* One rank's block parameters: the split matrices; gpt2's column-parallel biases (q|k|v 3C, fc 4C)
 * / T, its row-parallel biases (attention proj, MLP proj: C each) and LayerNorms (4C) whole;
 * llama's RMSNorm weights (2C) whole. */
static double tp_block_params(const pt_model_config *c, int tp)
{
    const double C = c->n_embd;
    if (!is_llama(c))
        return 12.0 * C * C / tp + 7.0 * C / tp + 6.0 * C;
    return tp_block_macs(c, tp) + 2.0 * C;
}

/* A block's internals, as models/ keeps them per slot and recomputes from the block input
 * (carve_block_act): ln1 and ln2 outputs (2 NC) with their statistics (fp32: mean and rstd, or
 * RMSNorm's rstd), qkv (N, C + 2 NKV hs: 3 NC for gpt2; llama's after RoPE), the attention output
 * (NC) and its saved log-sum-exp (B,NH,T, fp32), res2 = x + attention (NC), and the MLP's
 * up-projection and activation (gpt2: 4 NC before and after GELU; llama: gate|up (N,2H) and the
 * SwiGLU output (N,H)). gpt2: 15 NC + 16 N + 4 B NH T. One TP rank: ln1, ln2 and res2 (3 NC) and
 * the norm statistics whole (/ T with sp); the head-split tensors (q|k|v, attention output, MLP
 * internals, log-sum-exp) / T. The rounded part is every tensor but the statistics (fp32). */
double pt_part_block_rounded_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, int tp, int sp)
{
    const double N = (double)B * T, C = cfg->n_embd;
    if (tp <= 1)
        return elem_bytes * N * (4.0 * C + qkv_width(cfg) + mlp_up_width(cfg) + mlp_act_width(cfg));
    const double s = sp ? 1.0 / tp : 1.0;
    return elem_bytes * N *
           (3.0 * C * s + C / tp + tp_qkv_width(cfg, tp) + (mlp_up_width(cfg) + mlp_act_width(cfg)) / tp);
}

static double block_stat_bytes_tp(const pt_model_config *cfg, int B, int T, int tp, int sp)
{
    const double N = (double)B * T, s = tp > 1 && sp ? 1.0 / tp : 1.0, t = tp > 1 ? tp : 1;
    return 2.0 * norm_stat_bytes(cfg) * N * s + 4.0 * B * ((double)cfg->n_head / t) * T;
}

double pt_part_block_act_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, int tp, int sp)
{
    return pt_part_block_rounded_bytes_tp(cfg, B, T, elem_bytes, tp, sp) + block_stat_bytes_tp(cfg, B, T, tp, sp);
}

double pt_part_block_kept_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, double stash_bytes,
                                   int tp, int sp)
{
    const double e = stash_bytes > 0 && stash_bytes < elem_bytes ? stash_bytes : elem_bytes;
    return pt_part_block_rounded_bytes_tp(cfg, B, T, e, tp, sp) + block_stat_bytes_tp(cfg, B, T, tp, sp);
}

double pt_part_stash_elem_bytes(const pt_device *dev)
{
    return dev->stash_elem_bytes > 0 && dev->stash_elem_bytes < dev->act_elem_bytes ? dev->stash_elem_bytes
                                                                                    : dev->act_elem_bytes;
}

/* Split backward's kept gradients of one TP rank's block (block_grad_bytes): dfch and dqkv split,
 * dln2, dres2, dln1 whole (the partial sums of all N rows, also with sp, as models/ keeps them),
 * and with sp the gathered output gradient (N,C). */
static double tp_block_grad_bytes(const pt_model_config *c, double N, double elem_bytes, int tp, int sp)
{
    if (tp <= 1)
        return block_grad_bytes(c, N, elem_bytes);
    return elem_bytes * N * (mlp_up_width(c) / tp + (sp ? 4.0 : 3.0) * c->n_embd + tp_qkv_width(c, tp));
}

/* Of those, the ones bf16 rounds (dfch, dres2, dqkv: what the bf16 stash packs), at elem_bytes. */
static double grad_rounded_bytes_tp(const pt_model_config *c, double N, double elem_bytes, int tp)
{
    const int t = tp > 1 ? tp : 1;
    return elem_bytes * N * (mlp_up_width(c) / t + c->n_embd + (t > 1 ? tp_qkv_width(c, t) : qkv_width(c)));
}

/* What a slot keeps of them: the rounded ones at stash_bytes when that is below elem_bytes (the
 * bf16 stash), the rest at elem_bytes. */
static double grad_kept_bytes_tp(const pt_model_config *c, double N, double elem_bytes, double stash_bytes, int tp,
                                 int sp)
{
    const double full = tp_block_grad_bytes(c, N, elem_bytes, tp, sp);
    if (!(stash_bytes > 0 && stash_bytes < elem_bytes))
        return full;
    return full - grad_rounded_bytes_tp(c, N, elem_bytes, tp) + grad_rounded_bytes_tp(c, N, stash_bytes, tp);
}

/* Ring all-reduce of `bytes` over tp ranks on the intra-node link. */
static double tp_allreduce_s(const pt_topology *topo, int tp, double bytes)
{
    if (tp <= 1)
        return 0;
    return 2.0 * (tp - 1) / tp * bytes / topo->intra_bw_Bps + 2.0 * (tp - 1) * topo->intra_latency_s;
}

pt_status pt_plan_check_tp(const pt_model_config *cfg, int tp, int devices_per_node)
{
    const char *name = cfg->name[0] ? cfg->name : "the model";
    if (tp < 1)
        return pt_fail(PT_EINVAL, "tensor-parallel size %d: use 1 (none) or more ranks per stage", tp);
    if (tp == 1)
        return PT_OK;
    if (cfg->n_head % tp != 0) {
        char list[64];
        int n = 0;
        list[0] = 0;
        for (int t = 1; t <= 16 && t <= cfg->n_head && n < (int)sizeof list - 8; t++)
            if (cfg->n_head % t == 0)
                n += snprintf(list + n, sizeof list - (size_t)n, "%s%d", n ? ", " : "", t);
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's %d attention heads; use a T that divides them (%s)", tp,
                       name, cfg->n_head, list);
    }
    const int kv = pt_model_kv_heads(cfg);
    if (kv % tp != 0 && tp % kv != 0)
        return pt_fail(PT_EINVAL, "--tp %d neither divides nor is a multiple of %s's %d kv heads; use a T that does", tp,
                       name, kv);
    const long long mlp = is_llama(cfg) ? cfg->intermediate_size : 4LL * cfg->n_embd;
    if (mlp % tp != 0)
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's MLP width %lld; use a T that divides it", tp, name, mlp);
    const long long vp = vocab_padded(cfg);
    if (vp % tp != 0)
        return pt_fail(PT_EINVAL, "--tp %d does not divide %s's padded vocabulary of %lld rows (vocabulary-parallel "
                                  "embedding and head); use a T that divides it, or pad the vocabulary (vocab_padded) "
                                  "to a multiple of %d",
                       tp, name, vp, tp);
    if (devices_per_node > 0 && devices_per_node % tp != 0)
        return pt_fail(PT_EINVAL, "--tp %d does not fit in a node of %d devices: a tensor-parallel group stays on one "
                                  "node's link; use a T that divides %d, or more devices per node (--gpus / --nodes)",
                       tp, devices_per_node, devices_per_node);
    return PT_OK;
}

pt_status pt_cost_tp_split(const pt_model_config *cfg, int B, int T, int tp, int sp, const pt_device *dev,
                           const pt_topology *topo, const pt_layer_times *measured, pt_layer_cost *costs)
{
    PT_CHECK(pt_plan_check_tp(cfg, tp, 0));
    if (tp == 1)
        return PT_OK;
    const int L = pt_model_n_layers(cfg), K = pt_model_head_layers(cfg), head0 = cfg->n_layer + 1;
    const double C = cfg->n_embd, N = (double)B * T, a = dev->act_elem_bytes, s = sp ? 1.0 / tp : 1.0;
    const double stash = pt_part_stash_elem_bytes(dev);
    const double per_param = pt_part_state_bytes_per_param(dev);
    const double rate = dev->peak_flops * dev->efficiency;
    const double bw = dev->mem_bw_Bps > 0 ? dev->mem_bw_Bps : INFINITY;
    const double nstat = norm_stat_bytes(cfg);
    /* the (B,T,C) all-reduce (or its all-gather + reduce-scatter pair with sp: the same bytes) and
     * the cross-entropy's three per-token statistics */
    const double ar = tp_allreduce_s(topo, tp, N * C * a), ar_stats = tp_allreduce_s(topo, tp, 3.0 * N * 4);
    for (int l = 0; l < L; l++) {
        pt_layer_cost *c = &costs[l];
        /* a measured layer's times scale with its FLOPs; analytic ones are priced again below */
        const double f0 = c->t_fwd, i0 = c->t_bwd_input, w0 = c->t_bwd_weight;
        double comm_f = 0, comm_b = 0;
        c->fwd_flops /= tp;
        c->bwd_input_flops /= tp;
        c->bwd_weight_flops /= tp;
        if (l == 0) {
            /* vocabulary-parallel wte (gpt2's wpe whole); the output's partial sums all-reduced */
            c->n_params_alloc = (int64_t)(vocab_padded(cfg) * cfg->n_embd / tp) +
                                (is_llama(cfg) ? 0 : (int64_t)cfg->max_seq_len * cfg->n_embd);
            c->act_bytes = c->act_bytes_recompute = N * 4 + 2.0 * N * C * a * s;
            c->act_split_bytes = N * C * a * s;
            c->fwd_traffic_bytes = (N * C * 4 + N * C * a) * s;
            c->out_bytes *= s;
            comm_f = ar;
        } else if (l < head0) {
            const double mm = 2.0 * N * tp_block_macs(cfg, tp), att = 2.0 * N * 2.0 * T * C / tp;
            c->fwd_flops = mm + att;
            c->bwd_input_flops = mm + 2.0 * att;
            c->bwd_weight_flops = mm;
            c->n_params_alloc = (int64_t)tp_block_params(cfg, tp);
            const double inner = pt_part_block_act_bytes_tp(cfg, B, T, a, tp, sp);
            c->act_split_bytes = a * N * C * s + grad_kept_bytes_tp(cfg, N, a, stash, tp, sp);
            c->act_bytes_recompute = a * N * C * s + c->act_split_bytes;
            c->act_bytes = c->act_bytes_recompute + pt_part_block_kept_bytes_tp(cfg, B, T, a, stash, tp, sp);
            c->fwd_traffic_bytes = 2.0 * inner + 2.0 * N * C * a * s;
            if (stash < a)
                c->fwd_traffic_bytes += stash_traffic(pt_part_block_rounded_bytes_tp(cfg, B, T, a + stash, tp, sp));
            if (is_llama(cfg))
                c->fwd_traffic_bytes += 2.0 * N * (C / tp + tp_kv_heads(cfg, tp) * (C / cfg->n_head)) * a;
            c->out_bytes *= s;
            comm_f = 2.0 * ar; /* after attention's and the MLP's row-parallel products */
            comm_b = 2.0 * ar; /* their column-parallel inputs' gradients */
        } else {
            /* vocabulary-parallel head (or shard): its rows / T; the final norm whole (/ T with sp) */
            const int k = l - head0;
            double Vk = (double)vocab_padded(cfg);
            if (K > 1) {
                pt_model_config shape = *cfg;
                shape.vocab_padded = (int)vocab_padded(cfg);
                int v0, v1;
                pt_model_head_shard_rows(&shape, k, &v0, &v1);
                Vk = v1 - v0;
            }
            const double W = K > 1 && k + 1 < K ? C + PT_XENT_STATS : 0;
            c->act_bytes = N * Vk * 4 / tp + N * 4;
            c->fwd_traffic_bytes = 3.0 * N * Vk * 4 / tp;
            c->act_split_bytes = 0;
            if (k == 0) { /* the input (R rows) and the norm's statistics / T with sp; its output all N rows */
                c->act_bytes += (K > 1 ? 0.0 : N * 4) + (N * C * a + N * nstat) * s + N * C * a * (tp > 1 ? 1.0 : s);
                if (K > 1)
                    c->act_bytes += N * 4; /* targets */
                c->act_split_bytes = N * C * a * s;
                c->fwd_traffic_bytes += 2.0 * N * C * a * s;
            }
            if (K > 1 && k + 1 < K)
                c->act_bytes += 2.0 * N * W * a * s;
            else if (K > 1)
                c->act_bytes += N * 4 + N * 4 + N * PT_XENT_STATS * 4;
            c->act_bytes_recompute = c->act_bytes;
            c->out_bytes *= s;
            comm_f = ar_stats; /* max, sum of exponentials, target logit over the vocabulary shards */
            comm_b = ar;       /* the input's gradient: each rank's rows contribute */
        }
        c->state_bytes = (double)c->n_params_alloc * per_param;
        if (measured) {
            c->t_fwd = f0 / tp;
            c->t_bwd_input = i0 / tp;
            c->t_bwd_weight = w0 / tp;
        } else {
            c->t_fwd = c->fwd_flops / rate + c->fwd_traffic_bytes / bw;
            c->t_bwd_input = c->bwd_input_flops / rate + 1.5 * c->fwd_traffic_bytes / bw;
            c->t_bwd_weight = c->bwd_weight_flops / rate + 0.5 * c->fwd_traffic_bytes / bw;
        }
        c->t_fwd += comm_f;
        c->t_bwd_input += comm_b;
        c->t_tp_fwd = comm_f;
        c->t_tp_bwd = comm_b;
    }
    return PT_OK;
}

double pt_part_chunk_fixed_bytes(const pt_model_config *cfg, int B, int T, double elem_bytes, int first, int last,
                                 int recompute, int fused_only)
{
    return pt_part_chunk_fixed_bytes_tp(cfg, B, T, elem_bytes, elem_bytes, first, last, recompute, fused_only, 1, 0);
}

double pt_part_chunk_fixed_bytes_tp(const pt_model_config *cfg, int B, int T, double elem_bytes, double stash_bytes,
                                    int first, int last, int recompute, int fused_only, int tp, int sp)
{
    if (tp < 1)
        tp = 1;
    /* with T > 1: heads (attention scratch, dK/dV partials), the MLP width and the logit rows / T;
     * the (N,C) scratch and gradients whole, / T with sp */
    const double s = tp > 1 && sp ? 1.0 / tp : 1.0;
    const double N = (double)B * T, C = cfg->n_embd, H = (double)cfg->n_head / tp;
    const double Vp = (double)vocab_padded(cfg) / tp;
    const double rows = T < 64 ? T : 64;
    const int head0 = cfg->n_layer + 1; /* the first head layer (final norm) */
    const int has_block = last >= 1 && first <= cfg->n_layer;
    const int has_lnf = first <= head0 && last >= head0;
    /* inner boundaries b (first < b <= last) whose gradient lives in the shared (N,C) buffers:
     * those up to the head's input; gradients between shards are per slot */
    const int upto = last < head0 ? last : head0;
    const int n_internal = upto > first ? upto - first : 0;
    double m = 0;
    if (has_block) {
        /* attention scratch (B,H,2,min(T,64),T) and the (N,C) gradient scratch, once per chunk;
         * with grouped kv heads the backward's per-query-head dK, dV partials, (B,H,2,T,hs) */
        m += 4.0 * B * H * 2.0 * rows * T + 4.0 * N * C; /* the gradient scratch: all N rows, also with sp */
        if (pt_model_kv_heads(cfg) < cfg->n_head)
            m += 4.0 * 2.0 * N * C / tp;
        if (is_llama(cfg)) /* the (N,H) gradient at the SwiGLU output; cos and sin (T, hs/2) */
            m += 4.0 * N * cfg->intermediate_size / tp + 2.0 * 4.0 * T * (double)(cfg->n_embd / cfg->n_head / 2);
        if (recompute) /* the shared re-materialised block */
            m += pt_part_block_act_bytes_tp(cfg, B, T, elem_bytes, tp, sp);
        else if (stash_bytes > 0 && stash_bytes < elem_bytes) /* the bf16 stash's block area */
            m += pt_part_block_rounded_bytes_tp(cfg, B, T, elem_bytes, tp, sp);
    }
    const double hc = pt_model_head_chunk_rows(cfg, (int)N);
    if (pt_model_head_layers(cfg) == 1 && last == head0 && tp == 1) /* logit rows for pt_model_slot_logits (an */
        m += 4.0 * (hc > 16 ? hc : 16) * Vp; /* unsplit head, one rank), or a chunked head's chunk */
    if (tp > 1 && last == head0) /* every rank's row statistics of the vocabulary-parallel head */
        m += 4.0 * tp * N * PT_XENT_STATS;
    if (tp > 1 && sp) /* the (N,C) partial sums before their reduce-scatter, and the gathered rows */
        m += 2.0 * 4.0 * N * C;
    if (fused_only) {
        /* one backward at a time: a block's inner gradients (block_grad_bytes), dlnf (all N rows:
         * the head's partial sums), inner boundaries' dx (this rank's rows) */
        m += (has_block ? tp_block_grad_bytes(cfg, N, elem_bytes, tp, sp) : 0.0) +
             elem_bytes * N * C * ((has_lnf && !hc ? 1.0 : 0.0) + s * (n_internal < 2 ? n_internal : 2));
    } else if (has_block && stash_bytes > 0 && stash_bytes < elem_bytes) {
        /* split backward under the bf16 stash: the area its kept rounded gradients are made in */
        m += grad_rounded_bytes_tp(cfg, N, elem_bytes, tp);
    }
    return m;
}
