/* Tests of partition/: parameter counts and FLOPs of the cost model, the time and memory
 * dynamic programs against exhaustive search on random small instances, the memory cap, the
 * infeasibility error, manual layouts and their JSON round trip, cost and device files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../partition/partition_internal.h"
#include "pipetrain/backend.h"
#include "pipetrain/json.h"
#ifdef PT_TEST_HAVE_MODELS
#include "pipetrain/model.h"
#endif
#ifdef PT_TEST_HAVE_SCHEDULE
#include "pipetrain/schedule.h"
#endif

static int failures;
#define EXPECT(cond)                                                                                              \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond, pt_last_error()); \
            failures++;                                                                                           \
        }                                                                                                         \
    } while (0)

static pt_model_config make_cfg(const char *name, int n_layer, int n_head, int n_embd, int vocab, int vocab_padded,
                                int T)
{
    pt_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_embd = n_embd;
    c.vocab_size = vocab;
    c.vocab_padded = vocab_padded;
    c.max_seq_len = T;
    return c;
}

/* A llama config: n_kv key/value heads, SwiGLU width H, LM head tied or untied. */
static pt_model_config make_llama(const char *name, int n_layer, int n_head, int n_kv, int n_embd, int H, int vocab,
                                  int vocab_padded, int T, int tied)
{
    pt_model_config c = make_cfg(name, n_layer, n_head, n_embd, vocab, vocab_padded, T);
    c.arch = PT_ARCH_LLAMA;
    c.n_kv_head = n_kv;
    c.intermediate_size = H;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = tied;
    return c;
}

/* xorshift: deterministic random instances */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
/* JSON numbers keep 15 significant digits (cJSON), so round trips compare to that. */
static int near(double a, double b) { return fabs(a - b) <= 1e-14 * fabs(b) + 1e-300; }

static int rand_int(int lo, int hi) { return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1)); }
static double rand_unit(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

/* ---- cost model ---- */

static void test_param_counts(void)
{
    static const struct {
        const char *name;
        int L, H, C;
        int64_t n;
    } known[] = {
        { "gpt2", 12, 12, 768, 124439808 },
        { "gpt2-medium", 24, 16, 1024, 354823168 },
        { "gpt2-large", 36, 20, 1280, 774030080 },
        { "gpt2-xl", 48, 25, 1600, 1557611200 },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        pt_model_config c = make_cfg(known[i].name, known[i].L, known[i].H, known[i].C, 50257, 50304, 1024);
        EXPECT(pt_cost_n_params(&c) == known[i].n);
        /* the per-layer logical counts add up to the same total */
        pt_layer_cost lc[64];
        pt_device dev;
        EXPECT(pt_device_load("cpu", &dev) == PT_OK);
        EXPECT(pt_cost_layers(&c, 1, 64, &dev, NULL, lc) == PT_OK);
        int64_t sum = 0;
        for (int l = 0; l < pt_model_n_layers(&c); l++)
            sum += lc[l].n_params;
        EXPECT(sum == known[i].n);
#ifdef PT_TEST_HAVE_MODELS
        /* the models module counts independently from its own preset */
        pt_model_config m;
        EXPECT(pt_model_config_load(known[i].name, &m) == PT_OK);
        EXPECT(pt_model_config_n_params(&m) == known[i].n);
        EXPECT(pt_cost_n_params(&m) == pt_model_config_n_params(&m));
#endif
    }
}

static void test_flops(void)
{
    pt_device dev;
    EXPECT(pt_device_load("h100", &dev) == PT_OK);
    static const int shapes[][3] = { { 12, 12, 768 }, { 24, 16, 1024 }, { 36, 20, 1280 }, { 48, 25, 1600 } };
    for (size_t s = 0; s < 4; s++) {
        pt_model_config c = make_cfg("x", shapes[s][0], shapes[s][1], shapes[s][2], 50257, 50257, 1024);
        const int B = 4, T = 1024, M = 3;
        const double tokens = (double)B * T * M;
        const double N = (double)pt_cost_n_params(&c);
        const double ref = 6.0 * N * tokens + 12.0 * c.n_layer * T * c.n_embd * tokens;
        const double got = pt_cost_step_flops(&c, T, tokens);
        EXPECT(fabs(got - ref) / ref < 0.01);
        /* the per-layer FLOPs of a micro-batch add up to the step's */
        pt_layer_cost lc[64];
        EXPECT(pt_cost_layers(&c, B, T, &dev, NULL, lc) == PT_OK);
        double sum = 0;
        for (int l = 0; l < pt_model_n_layers(&c); l++)
            sum += lc[l].fwd_flops + lc[l].bwd_input_flops + lc[l].bwd_weight_flops;
        EXPECT(fabs(sum * M - got) / got < 1e-12);
        /* backward is twice forward for matrix products */
        EXPECT(fabs(lc[1].bwd_input_flops + lc[1].bwd_weight_flops - 2 * lc[1].fwd_flops) <=
               lc[1].fwd_flops * 0.2);
    }
}

/* ---- llama ---- */

/* Parameter counts: the published Llama 3 shapes give Meta's counts; with the models module, the
 * cost model's count equals pt_model_config_n_params for every preset and the layers' logical
 * counts add up to it. */
static void test_llama_params(void)
{
    static const struct {
        const char *name;
        int L, NH, NKV, C, H, tied;
        int64_t n;
    } known[] = {
        { "llama3.2-1b", 16, 32, 8, 2048, 8192, 1, 1235814400 },
        { "llama3.2-3b", 28, 24, 8, 3072, 8192, 1, 3212749824 },
        { "llama3-8b", 32, 32, 8, 4096, 14336, 0, 8030261248 },
        { "llama3-70b", 80, 64, 8, 8192, 28672, 0, 70553706496 },
        { "llama3-405b", 126, 128, 8, 16384, 53248, 0, 405853388800 },
    };
    pt_device dev;
    EXPECT(pt_device_load("h100", &dev) == PT_OK);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        pt_model_config c = make_llama(known[i].name, known[i].L, known[i].NH, known[i].NKV, known[i].C, known[i].H,
                                       128256, 128256, 8192, known[i].tied);
        EXPECT(pt_cost_n_params(&c) == known[i].n);
        if (pt_cost_n_params(&c) != known[i].n)
            fprintf(stderr, "  %s: %lld parameters, published %lld\n", known[i].name, (long long)pt_cost_n_params(&c),
                    (long long)known[i].n);
    }
#ifdef PT_TEST_HAVE_MODELS
    int n_llama = 0;
    for (const char *const *name = pt_model_preset_names(); *name; name++) {
        pt_model_config m;
        EXPECT(pt_model_config_load(*name, &m) == PT_OK);
        n_llama += m.arch == PT_ARCH_LLAMA;
        EXPECT(pt_cost_n_params(&m) == pt_model_config_n_params(&m));
        const int L = pt_model_n_layers(&m);
        pt_layer_cost *lc = calloc((size_t)L, sizeof *lc);
        EXPECT(lc && pt_cost_layers(&m, 1, 64, &dev, NULL, lc) == PT_OK);
        int64_t sum = 0;
        for (int l = 0; lc && l < L; l++)
            sum += lc[l].n_params;
        EXPECT(sum == pt_model_config_n_params(&m));
        if (sum != pt_model_config_n_params(&m))
            fprintf(stderr, "  %s: layers add up to %lld parameters, models/ counts %lld\n", *name, (long long)sum,
                    (long long)pt_model_config_n_params(&m));
        free(lc);
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(*name, known[i].name) == 0)
                EXPECT(pt_cost_n_params(&m) == known[i].n);
    }
    EXPECT(n_llama >= 7); /* llama-tiny, -small and the five published shapes */
#endif
}

/* FLOPs and bytes of a small llama, counted by hand: L = 2, 4 heads over 2 kv heads, C = 64 (head
 * width 16, kv width 32, q|k|v width 128), SwiGLU H = 176, V = 96 padded to 128, B = 2, T = 32
 * (N = 64 tokens), 4-byte activations (cpu). */
static void test_llama_costs(void)
{
    pt_device dev;
    EXPECT(pt_device_load("cpu", &dev) == PT_OK);
    pt_model_config c = make_llama("l", 2, 4, 2, 64, 176, 96, 128, 64, 0);
    pt_layer_cost lc[4];
    EXPECT(pt_cost_layers(&c, 2, 32, &dev, NULL, lc) == PT_OK);
    /* multiply-adds a token: q|k|v 64*128 = 8192, o 64*64 = 4096, gate|up and down 3*64*176 = 33792:
     * 46080; matrix FLOPs 2*64*46080 = 5898240; attention QK^T and AV 2*64*2*32*64 = 524288 */
    EXPECT(lc[0].fwd_flops == 0 && lc[0].bwd_input_flops == 0 && lc[0].bwd_weight_flops == 0);
    EXPECT(lc[1].fwd_flops == 6422528.0);
    EXPECT(lc[1].bwd_input_flops == 6946816.0); /* 5898240 + 2 * 524288 */
    EXPECT(lc[1].bwd_weight_flops == 5898240.0);
    EXPECT(lc[2].fwd_flops == lc[1].fwd_flops);
    /* head: logits against the untied lm_head, 2*64*64*128 each way */
    EXPECT(lc[3].fwd_flops == 1048576.0 && lc[3].bwd_input_flops == 1048576.0 && lc[3].bwd_weight_flops == 1048576.0);
    /* one step of one micro-batch: 2 * (6422528 + 6946816 + 5898240) + 3 * 1048576 */
    EXPECT(pt_cost_step_flops(&c, 32, 64) == 41680896.0);
    /* parameters: wte 96*64 = 6144 (no wpe); a block 8192 + 4096 + 33792 + 2*64 (RMSNorm weights);
     * the head's RMSNorm weight and lm_head 96*64; allocated: wte's and lm_head's 128 rows */
    EXPECT(lc[0].n_params == 6144 && lc[0].n_params_alloc == 8192);
    EXPECT(lc[1].n_params == 46208 && lc[1].n_params_alloc == 46208);
    EXPECT(lc[3].n_params == 64 + 6144 && lc[3].n_params_alloc == 64);
    EXPECT(pt_cost_n_params(&c) == 6144 + 2 * 46208 + 64 + 6144);
    /* a block's internals: ln1, atty, res2, ln2 (4 NC), qkv N*128, gate|up N*352, SwiGLU out N*176,
     * fp32: 4*64*(256 + 128 + 352 + 176) = 233472; two rstd 2*4*64; saved log-sum-exp 4*2*4*32 */
    EXPECT(pt_part_block_act_bytes(&c, 2, 32, 4) == 233472.0 + 512.0 + 1024.0);
    /* split backward keeps dfch N*352, dln2, dres2, dln1 (3 NC), dqkv N*128: 4*64*672, and the
     * output's gradient NC; the output NC is kept either way */
    EXPECT(lc[1].act_split_bytes == 16384.0 + 172032.0);
    EXPECT(lc[1].act_bytes_recompute == 16384.0 + lc[1].act_split_bytes);
    EXPECT(lc[1].act_bytes == lc[1].act_bytes_recompute + 235008.0);
    /* tied: the head's wte is counted at the embedding */
    pt_model_config t = c;
    t.tie_word_embeddings = 1;
    pt_layer_cost lt[4];
    EXPECT(pt_cost_layers(&t, 2, 32, &dev, NULL, lt) == PT_OK);
    EXPECT(lt[3].n_params == 64 && pt_cost_n_params(&t) == 6144 + 2 * 46208 + 64);
    EXPECT(lt[3].fwd_flops == lc[3].fwd_flops);

    /* Fewer kv heads: less q|k|v work, fewer parameters, less activation memory per slot and in a
     * chunk's peak; multi-head (NKV = NH) the most. */
    pt_topology topo;
    EXPECT(pt_topology_init(&topo, &dev, 1, 2) == PT_OK);
    double prev_act = INFINITY, prev_mem = INFINITY, prev_flops = INFINITY;
    int64_t prev_params = INT64_MAX;
    for (int kv = 4; kv >= 1; kv /= 2) {
        pt_model_config g = make_llama("g", 4, 4, kv, 64, 176, 96, 128, 64, 0);
        pt_layer_cost lg[6];
        EXPECT(pt_cost_layers(&g, 2, 32, &dev, NULL, lg) == PT_OK);
        pt_part_ctx *ctx = NULL;
        EXPECT(pt_part_ctx_create(&g, &dev, &topo, NULL, 2, 1, 1, 2, 8, 32, "1f1b", &ctx) == PT_OK);
        const double mem = ctx ? pt_part_chunk_mem(ctx, 0, 1, 3, 0) : 0;
        EXPECT(lg[1].act_bytes < prev_act && mem < prev_mem);
        EXPECT(lg[1].fwd_flops < prev_flops && lg[1].n_params < prev_params);
        prev_act = lg[1].act_bytes;
        prev_mem = mem;
        prev_flops = lg[1].fwd_flops;
        prev_params = lg[1].n_params;
        pt_part_ctx_destroy(ctx);
    }

    /* An untied head keeps its own lm_head (weights, gradient, m, v) in every chunk with head
     * layers; tied beside the embedding it is the 4-byte twin gradient; without the embedding both
     * keep a whole matrix. */
    pt_part_ctx *cu = NULL, *ct = NULL;
    EXPECT(pt_part_ctx_create(&c, &dev, &topo, NULL, 2, 1, 1, 2, 8, 32, "1f1b", &cu) == PT_OK);
    EXPECT(pt_part_ctx_create(&t, &dev, &topo, NULL, 2, 1, 1, 2, 8, 32, "1f1b", &ct) == PT_OK);
    if (cu && ct) {
        const double head = 128.0 * 64, per_param = pt_part_state_bytes_per_param(&dev);
        EXPECT(pt_part_chunk_mem(cu, 1, 0, 3, 0) - pt_part_chunk_mem(ct, 1, 0, 3, 0) == head * (per_param - 4.0));
        EXPECT(pt_part_chunk_mem(cu, 1, 2, 3, 0) == pt_part_chunk_mem(ct, 1, 2, 3, 0));
        EXPECT(pt_part_chunk_mem(cu, 0, 0, 1, 0) == pt_part_chunk_mem(ct, 0, 0, 1, 0));
    }
    pt_part_ctx_destroy(cu);
    pt_part_ctx_destroy(ct);
}

/* dev: the h100; topo: nodes x per_node of them; rq: a "memory" plan over all those devices in
 * n_stages stages of n_micro micro-batches (the other fields pt_plan_request_init's). */
static void h100_memory_request(int nodes, int per_node, int n_stages, int n_micro, pt_device *dev, pt_topology *topo,
                                pt_plan_request *rq)
{
    EXPECT(pt_device_load("h100", dev) == PT_OK);
    EXPECT(pt_topology_init(topo, dev, nodes, per_node) == PT_OK);
    pt_plan_request_init(rq);
    rq->method = "memory";
    rq->n_devices = nodes * per_node;
    rq->n_stages = n_stages;
    rq->n_microbatches = n_micro;
}

/* Llama 3 405B on one pipeline of 128 H100 (80 GB), T = 2048, 16 micro-batches: a memory plan
 * fits with every chunk within the device; Meta's 16 pipeline stages do not fit without tensor
 * parallelism (a stage would hold 8 blocks, 460 GB of state). The time is not asserted. */
static void test_llama_405b_plan(void)
{
    pt_model_config c = make_llama("llama3-405b", 126, 128, 8, 16384, 53248, 128256, 128256, 131072, 0);
    pt_device dev;
    pt_topology topo;
    pt_plan_request rq;
    h100_memory_request(16, 8, 128, 16, &dev, &topo, &rq);
    rq.seq_len = 2048;
    pt_plan *p = NULL;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_OK);
    if (p) {
        EXPECT(p->n_stages == 128 && p->n_replicas == 1 && p->n_params_total == 405853388800);
        EXPECT(pt_plan_check_memory(p, dev.mem_bytes) == PT_OK);
        /* enough stages: the model's state alone (18 bytes a parameter) over the stages' memory */
        double state = 0;
        for (int r = 0; r < p->n_stages; r++) {
            EXPECT(p->pred_rank_mem_bytes[r] <= dev.mem_bytes);
            state += p->pred_rank_mem_bytes[r];
        }
        EXPECT(state > 405853388800.0 * pt_part_state_bytes_per_param(&dev));
        EXPECT(p->n_stages * dev.mem_bytes > 405853388800.0 * pt_part_state_bytes_per_param(&dev));
        /* one block per stage at most: a 405B block is 3.2B parameters, 57.6 GB of state */
        for (int k = 0; k < p->n_vstages; k++) {
            const int b0 = p->first_layer[k] < 1 ? 1 : p->first_layer[k];
            const int b1 = p->last_layer[k] > 126 ? 126 : p->last_layer[k];
            EXPECT(b1 - b0 + 1 <= 1);
        }
        EXPECT(p->pred_step_time_s > 0 && p->pred_mfu > 0 && p->pred_mfu < dev.efficiency);
    }
    pt_plan_destroy(p);
    p = NULL;
    /* Meta's pipeline depth alone: 16 stages x 8 replicas on the same 128 devices */
    rq.n_stages = 16;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_ENOMEM && !p);
    EXPECT(strstr(pt_last_error(), "llama3-405b") != NULL);
    pt_plan_destroy(p);
}

#ifdef PT_TEST_HAVE_MODELS
/* The memory the cost model predicts for a chunk is what models/ really allocates (minus the
 * optimizer's m and v, which the trainer allocates), for a schedule without split backward
 * (models made with fused_only, as the runtime does) and one with it, with the LM head whole and
 * split into vocabulary shards, for gpt2 and for llama (grouped kv heads, SwiGLU, tied and untied
 * heads); and the slot bytes it predicts are pt_model_slot_bytes. */
static void test_memory_matches_models(void)
{
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    EXPECT(pt_backend_get("cpu", &be) == PT_OK);
    if (!be || be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream) != PT_OK)
        return;
    pt_device dev;
    pt_topology topo;
    EXPECT(pt_device_load("cpu", &dev) == PT_OK);
    EXPECT(pt_topology_init(&topo, &dev, 1, 1) == PT_OK);
    /* an unsplit head (layers 0..5), and the head as 3 shards of 64 wte rows (layers 5..7): chunks
     * of shards alone, with blocks, with the embedding, one shard or several */
    /* llama: 4 heads over 2 kv heads (head width 16), SwiGLU width 176; tied, untied, and untied
     * with the head as 3 shards (an lm_head in every chunk that holds shards) */
    /* and the unsplit gpt2 and tied llama heads in chunks of 24 of the 64 rows (--head-chunk) */
    pt_model_config cfgs[7] = { make_cfg("t", 4, 4, 64, 96, 128, 64), make_cfg("t3", 4, 4, 64, 150, 192, 64),
                                make_llama("lt", 4, 4, 2, 64, 176, 96, 128, 64, 1),
                                make_llama("lu", 4, 4, 2, 64, 176, 96, 128, 64, 0),
                                make_llama("lu3", 4, 4, 1, 64, 176, 150, 192, 64, 0),
                                make_cfg("tc", 4, 4, 64, 96, 128, 64), make_llama("ltc", 4, 4, 2, 64, 176, 96, 128, 64, 1) };
    cfgs[1].head_split = 3;
    cfgs[4].head_split = 3;
    cfgs[5].head_chunk = cfgs[6].head_chunk = 24;
    static const struct {
        int cfg, first, last;
    } cases[] = { { 0, 0, 5 }, { 0, 0, 2 }, { 0, 3, 5 }, { 0, 2, 3 }, { 0, 5, 5 }, { 0, 0, 0 },
                  { 1, 0, 7 }, { 1, 0, 5 }, { 1, 5, 7 }, { 1, 6, 6 }, { 1, 6, 7 }, { 1, 3, 5 },
                  { 1, 7, 7 }, { 1, 2, 6 }, { 1, 5, 5 }, { 1, 0, 6 }, { 2, 0, 5 }, { 2, 0, 2 },
                  { 2, 3, 5 }, { 2, 5, 5 }, { 2, 1, 1 }, { 3, 0, 5 }, { 3, 0, 0 }, { 3, 2, 5 },
                  { 3, 5, 5 }, { 4, 0, 7 }, { 4, 0, 5 }, { 4, 6, 7 }, { 4, 3, 6 }, { 4, 7, 7 },
                  { 5, 0, 5 }, { 5, 3, 5 }, { 5, 5, 5 }, { 6, 0, 5 }, { 6, 5, 5 } };
    static const char *const scheds[] = { "gpipe", "zb-h1" };
    EXPECT(pt_part_sched_fused_only("gpipe") == 1 && pt_part_sched_fused_only("zb-h1") == 0);
    for (size_t r = 0; r < sizeof cases / sizeof cases[0]; r++) {
        const pt_model_config cfg = cfgs[cases[r].cfg];
        const int range[2] = { cases[r].first, cases[r].last };
        for (int v = 0; v < 8; v++) { /* recompute or not, two schedules, fp32 or bf16 (its stash) */
            const int rc = v & 1, bf16 = v >> 2, P = 2, M = 1 + (int)r % 3, B = 2, T = 32;
            const char *sched = scheds[(v >> 1) & 1];
            pt_device d = dev;
            pt_device_set_precision(&d, bf16, 1);
            pt_part_ctx *c = NULL;
            EXPECT(pt_part_ctx_create(&cfg, &d, &topo, NULL, P, 1, 1, B, M, T, sched, &c) == PT_OK);
            if (!c)
                continue;
            const int n_slots = c->inflight[0];
            const double pred = pt_part_chunk_mem(c, 0, range[0], range[1], rc);
            const double pred_slot = pt_part_chunk_slot_bytes(c, range[0], range[1], rc);
            pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = n_slots, .recompute = rc,
                                .fused_only = c->fused_only,
                                .precision = bf16 ? PT_PRECISION_BF16 : PT_PRECISION_FP32 };
            const size_t before = pt_backend_bytes_in_use();
            pt_mem_stats k0, k1;
            pt_backend_mem_stats(&k0);
            pt_model *m = NULL;
            EXPECT(pt_model_create(&cfg, range[0], range[1], &o, be, stream, &m) == PT_OK);
            if (m) {
                /* by kind, to the byte: the model allocates weights, gradients and activations */
                double kinds[PT_MEM_KINDS];
                EXPECT(pt_part_chunk_mem_kinds(c, 0, range[0], range[1], rc, kinds) == pred);
                pt_backend_mem_stats(&k1);
                for (int q = 0; q < PT_MEM_KINDS; q++) {
                    const double got_q = (double)(k1.kind_in_use[q] - k0.kind_in_use[q]);
                    const double want_q = q == PT_MEM_OPTIM ? 0.0 : kinds[q];
                    EXPECT(got_q == want_q);
                    if (got_q != want_q)
                        fprintf(stderr, "  %s layers %d..%d %s rc=%d bf16=%d: %s predicted %.0f, models/ %.0f\n",
                                cfg.name, range[0], range[1], sched, rc, bf16, pt_mem_kind_name(q), want_q, got_q);
                }
                EXPECT(kinds[PT_MEM_OPTIM] == 8.0 * (double)pt_model_n_params(m));
                const double got = (double)(pt_backend_bytes_in_use() - before);
                const double model_side = pred - 8.0 * (double)pt_model_n_params(m); /* less AdamW m, v */
                /* B*T = 64 tokens: every buffer is a multiple of the 256-byte alignment, so exact */
                EXPECT(model_side == got);
                EXPECT(pred_slot == (double)pt_model_slot_bytes(m));
                if (model_side != got)
                    fprintf(stderr, "  %s layers %d..%d %s rc=%d slots=%d: predicted %.0f bytes, models/ allocated %.0f\n",
                            cfg.name, range[0], range[1], sched, rc, n_slots, model_side, got);
                if (pred_slot != (double)pt_model_slot_bytes(m))
                    fprintf(stderr, "  %s layers %d..%d %s rc=%d: predicted slot %.0f bytes, models/ %zu\n", cfg.name,
                            range[0], range[1], sched, rc, pred_slot, pt_model_slot_bytes(m));
            }
            pt_model_destroy(m);
            pt_part_ctx_destroy(c);
        }
    }
    be->stream_destroy(stream);
}
#endif

#ifdef PT_TEST_HAVE_SCHEDULE
/* The memory model's in-flight micro-batches per chunk against the real schedules, generated with
 * unit and with random costs: walking each rank's actions (held from F until B, or until W with
 * split backward, as the runtime's slots), the peak per chunk never exceeds the model's count,
 * and equals it where the model says it is exact (all but zbv; the zero-bubble ones at unit costs). */
static void test_inflight_vs_schedules(void)
{
    static const struct {
        const char *name;
        int V;
    } gens[] = { { "gpipe", 1 }, { "1f1b", 1 }, { "interleaved", 2 }, { "interleaved", 3 }, { "looped-bfs", 2 },
                 { "zb-h1", 1 }, { "zb-h2", 1 }, { "zbv", 2 } };
    int n_checked = 0;
    for (size_t g = 0; g < sizeof gens / sizeof gens[0]; g++) {
        for (int P = 1; P <= 5; P++) {
            for (int M = 1; M <= 12; M++) {
                for (int with_costs = 0; with_costs <= 1; with_costs++) {
                    const int V = gens[g].V, S = P * V;
                    pt_sim_costs *costs = NULL;
                    EXPECT(pt_sim_costs_uniform(S, &costs) == PT_OK);
                    if (!costs)
                        return;
                    for (int k = 0; with_costs && k < S; k++) {
                        costs->f[k] = 0.1 + 5 * rand_unit();
                        costs->i[k] = 0.1 + 5 * rand_unit();
                        costs->w[k] = 0.1 + 5 * rand_unit();
                        costs->b[k] = costs->i[k] + costs->w[k];
                    }
                    pt_schedule *sc = NULL;
                    if (pt_sched_generate(gens[g].name, P, V, M, costs, &sc) != PT_OK) {
                        pt_clear_error(); /* a combination the generator does not make */
                        pt_sim_costs_destroy(costs);
                        continue;
                    }
                    int held[32] = { 0 }, peak[32] = { 0 }, model[32] = { 0 };
                    EXPECT(pt_part_inflight_counts(gens[g].name, P, V, M, model) == PT_OK);
                    for (int r = 0; r < P; r++) {
                        for (int i = 0; i < sc->n_actions[r]; i++) {
                            const pt_action *a = &sc->actions[r][i];
                            if (a->kind != PT_ACT_FORWARD && a->kind != PT_ACT_BACKWARD &&
                                a->kind != PT_ACT_BACKWARD_WEIGHT)
                                continue; /* communication, AR and STEP name no chunk */
                            const int k = sc->stage_of[r * V + a->chunk];
                            if (a->kind == PT_ACT_FORWARD && ++held[k] > peak[k])
                                peak[k] = held[k];
                            if (a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_WEIGHT)
                                held[k]--;
                        }
                    }
                    const int exact = strcmp(gens[g].name, "zbv") != 0 &&
                                      (!with_costs || strncmp(gens[g].name, "zb", 2) != 0);
                    for (int k = 0; k < S; k++) {
                        EXPECT(peak[k] <= model[k]);
                        if (exact)
                            EXPECT(peak[k] == model[k]);
                        if (peak[k] > model[k] || (exact && peak[k] != model[k]))
                            fprintf(stderr, "  %s P=%d V=%d M=%d stage %d: schedule holds %d, model says %d\n",
                                    gens[g].name, P, V, M, k, peak[k], model[k]);
                        n_checked++;
                    }
                    pt_sched_destroy(sc);
                    pt_sim_costs_destroy(costs);
                }
            }
        }
    }
    EXPECT(n_checked > 500);
}
#endif

/* ---- DP vs exhaustive search ---- */

typedef struct {
    pt_model_config cfg;
    pt_device dev;
    pt_topology topo;
    pt_layer_times *lt;
    int P, D, M;
    const char *sched;
} instance;

static void random_instance(instance *in)
{
    const int n_layer = rand_int(1, 10);
    in->cfg = make_cfg("rand", n_layer, 2, 16 * rand_int(1, 4), 64 * rand_int(1, 8), 0, 32);
    const int L = pt_model_n_layers(&in->cfg);
    EXPECT(pt_device_load("cpu", &in->dev) == PT_OK);
    in->P = rand_int(1, L < 5 ? L : 5);
    in->D = rand_int(1, 2);
    static const char *const scheds[] = { "gpipe", "1f1b", "zb-h1", "zb-h2" };
    in->sched = scheds[rand_int(0, 3)];
    in->M = rand_int(1, 8);
    /* a slow network (so boundary transfers matter) on 1..3 devices per node */
    in->dev.intra_bw_Bps = 1e6 * rand_int(1, 50);
    in->dev.inter_bw_Bps = in->dev.intra_bw_Bps / rand_int(1, 8);
    const int dpn = rand_int(1, 3);
    EXPECT(pt_topology_init(&in->topo, &in->dev, (in->P * in->D + dpn - 1) / dpn, dpn) == PT_OK);
    EXPECT(pt_layer_times_create(L, &in->lt) == PT_OK);
    in->lt->cfg = in->cfg;
    in->lt->micro_batch_size = 1;
    in->lt->seq_len = 32;
    for (int l = 0; l < L; l++) {
        in->lt->fwd_s[l] = rand_unit() * 1e-3;
        in->lt->bwd_input_s[l] = rand_unit() * 1e-3;
        in->lt->bwd_weight_s[l] = rand_unit() * 1e-3;
    }
}

/* The next split after cut (chunk k = [cut[k], cut[k+1]), cut[0] and cut[S] fixed) in the order
 * that advances the last movable inner cut; 0 when cut was the last. */
static int next_cuts(int *cut, int S)
{
    int k = S - 1;
    while (k >= 1 && cut[k] + 1 >= cut[k + 1])
        k--;
    if (k < 1)
        return 0;
    cut[k]++;
    for (int q = k + 1; q < S; q++)
        cut[q] = cut[q - 1] + 1;
    return 1;
}

/* Exhaustive search over every split of L layers into S chunks (and, with rc_choice, every
 * recomputation vector): the smallest max chunk time whose chunks all fit `cap` (<= 0: none).
 * INFINITY when nothing fits. */
static double brute_force(const pt_part_ctx *c, int rc_lo, int rc_hi, double cap)
{
    const int L = c->L, S = c->S;
    int cut[16]; /* chunk k = [cut[k], cut[k+1]) */
    double best = INFINITY;
    for (int k = 0; k <= S; k++)
        cut[k] = k;
    cut[S] = L;
    for (;;) {
        for (int mask = 0; mask < (1 << S); mask++) {
            double worst = 0;
            int ok = 1;
            for (int k = 0; k < S && ok; k++) {
                const int rc = (mask >> k) & 1;
                if (rc < rc_lo || rc > rc_hi) {
                    ok = 0;
                    break;
                }
                const double m = pt_part_chunk_mem(c, k, cut[k], cut[k + 1] - 1, rc);
                if (cap > 0 && m > cap)
                    ok = 0;
                const double t = pt_part_chunk_time(c, k, cut[k], cut[k + 1] - 1, rc);
                worst = t > worst ? t : worst;
            }
            if (ok && worst < best)
                best = worst;
        }
        if (!next_cuts(cut, S))
            break;
    }
    return best;
}

static double plan_max_time(const pt_plan *p)
{
    double m = 0;
    for (int k = 0; k < p->n_vstages; k++)
        m = p->pred_time_s[k] > m ? p->pred_time_s[k] : m;
    return m;
}

static void test_dp_vs_exhaustive(void)
{
    int n_mem_feasible = 0, n_mem_infeasible = 0;
    for (int trial = 0; trial < 150; trial++) {
        instance in;
        random_instance(&in);
        pt_part_ctx *c = NULL;
        EXPECT(pt_part_ctx_create(&in.cfg, &in.dev, &in.topo, in.lt, in.P, 1, in.D, 1, in.M, 32, in.sched, &c) ==
               PT_OK);
        if (!c) {
            pt_layer_times_destroy(in.lt);
            continue;
        }
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.n_devices = in.P * in.D;
        rq.n_stages = in.P;
        rq.schedule = in.sched;
        rq.n_microbatches = in.M;
        rq.seq_len = 32;

        /* time: no cap, no recomputation */
        rq.method = "time";
        rq.recompute = 0;
        rq.mem_cap_bytes = 1e18;
        pt_plan *p = NULL;
        EXPECT(pt_plan_make(&in.cfg, &in.dev, &in.topo, in.lt, &rq, &p) == PT_OK);
        const double bf_time = brute_force(c, 0, 0, 0);
        if (p) {
            const double got = plan_max_time(p);
            EXPECT(fabs(got - bf_time) <= 1e-12 * bf_time);
            if (fabs(got - bf_time) > 1e-12 * bf_time)
                fprintf(stderr, "  trial %d: time DP %.9g vs exhaustive %.9g (L=%d P=%d)\n", trial, got, bf_time, c->L,
                        in.P);
        }
        pt_plan_destroy(p);

        /* memory: a cap between the smallest and largest chunk need, recomputation per chunk */
        double lo = INFINITY, hi = 0;
        for (int k = 0; k < c->S; k++)
            for (int i = k; i < c->L; i++)
                for (int j = i; j < c->L; j++)
                    for (int rc = 0; rc <= 1; rc++) {
                        const double m = pt_part_chunk_mem(c, k, i, j, rc);
                        lo = m < lo ? m : lo;
                        hi = m > hi ? m : hi;
                    }
        const double cap = lo + (hi - lo) * rand_unit() * 0.7;
        rq.method = "memory";
        rq.recompute = -1;
        rq.mem_cap_bytes = cap;
        p = NULL;
        const pt_status st = pt_plan_make(&in.cfg, &in.dev, &in.topo, in.lt, &rq, &p);
        double comm = 0; /* the link's buffers come off the cap before the chunks share it */
        for (int r = 0; r < c->P; r++)
            comm = pt_part_rank_comm_bytes(c, r) > comm ? pt_part_rank_comm_bytes(c, r) : comm;
        const double bf_mem = brute_force(c, 0, 1, cap - comm);
        if (isfinite(bf_mem)) {
            n_mem_feasible++;
            EXPECT(st == PT_OK && p);
            if (p) {
                const double got = plan_max_time(p);
                EXPECT(fabs(got - bf_mem) <= 1e-12 * bf_mem);
                for (int r = 0; r < p->n_stages; r++)
                    EXPECT(p->pred_rank_mem_bytes[r] <= cap);
                EXPECT(pt_plan_check_memory(p, cap) == PT_OK);
            }
        } else {
            n_mem_infeasible++;
            EXPECT(st == PT_ENOMEM && !p);
            EXPECT(strstr(pt_last_error(), "GB per device") != NULL);
        }
        pt_plan_destroy(p);
        pt_part_ctx_destroy(c);
        pt_layer_times_destroy(in.lt);
    }
    /* the random caps exercise both outcomes */
    EXPECT(n_mem_feasible > 20 && n_mem_infeasible > 5);
}

/* With V = 2 the pace is the largest per-rank sum of chunk times. The planner's split must be no
 * worse than the chunk-minimax optimum it starts from, and no better than the exhaustive optimum. */
static double max_rank_time(const pt_part_ctx *c, const int *cut)
{
    double rt[8] = { 0 };
    for (int k = 0; k < c->S; k++)
        rt[k % c->P] += pt_part_chunk_time(c, k, cut[k], cut[k + 1] - 1, 0);
    double m = 0;
    for (int r = 0; r < c->P; r++)
        m = rt[r] > m ? rt[r] : m;
    return m;
}

static void test_dp_interleaved(void)
{
    int n_strictly_better = 0;
    for (int trial = 0; trial < 60; trial++) {
        instance in;
        random_instance(&in);
        const int L = pt_model_n_layers(&in.cfg);
        if (L < 4) {
            pt_layer_times_destroy(in.lt);
            continue;
        }
        in.P = rand_int(2, L / 2 < 3 ? L / 2 : 3);
        EXPECT(pt_topology_init(&in.topo, &in.dev, in.P * in.D, 1) == PT_OK);
        pt_part_ctx *c = NULL;
        EXPECT(pt_part_ctx_create(&in.cfg, &in.dev, &in.topo, in.lt, in.P, 2, in.D, 1, in.M, 32, "interleaved", &c) ==
               PT_OK);
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.n_devices = in.P * in.D;
        rq.n_stages = in.P;
        rq.schedule = "interleaved";
        rq.n_microbatches = in.M;
        rq.seq_len = 32;
        rq.recompute = 0;
        rq.mem_cap_bytes = 1e18;
        pt_plan *p = NULL;
        EXPECT(pt_plan_make(&in.cfg, &in.dev, &in.topo, in.lt, &rq, &p) == PT_OK);
        if (p && c) {
            EXPECT(p->n_chunks == 2 && p->n_vstages == 2 * in.P);
            /* exhaustive: the best max-rank time, the best max-chunk time, and the worst max-rank
             * time among splits achieving that best max-chunk time */
            const int S = c->S;
            int cut[16];
            for (int k = 0; k < S; k++)
                cut[k] = k;
            cut[S] = L;
            double best_rank = INFINITY, best_chunk = INFINITY, worst_rank_at_best_chunk = 0;
            for (int pass = 0; pass < 2; pass++) {
                for (int k = 0; k < S; k++)
                    cut[k] = k;
                for (;;) {
                    double mc = 0;
                    for (int k = 0; k < S; k++) {
                        const double t = pt_part_chunk_time(c, k, cut[k], cut[k + 1] - 1, 0);
                        mc = t > mc ? t : mc;
                    }
                    const double mr = max_rank_time(c, cut);
                    if (pass == 0) {
                        best_rank = mr < best_rank ? mr : best_rank;
                        best_chunk = mc < best_chunk ? mc : best_chunk;
                    } else if (mc == best_chunk && mr > worst_rank_at_best_chunk) {
                        worst_rank_at_best_chunk = mr;
                    }
                    if (!next_cuts(cut, S))
                        break;
                }
            }
            int pcut[16];
            for (int k = 0; k < S; k++)
                pcut[k] = p->first_layer[k];
            pcut[S] = L;
            const double got = max_rank_time(c, pcut);
            EXPECT(got >= best_rank * (1 - 1e-12));
            EXPECT(got <= worst_rank_at_best_chunk * (1 + 1e-12));
            if (got < worst_rank_at_best_chunk * (1 - 1e-9))
                n_strictly_better++;
        }
        pt_plan_destroy(p);
        pt_part_ctx_destroy(c);
        pt_layer_times_destroy(in.lt);
    }
    /* the refinement does something on some instances */
    EXPECT(n_strictly_better > 0);
}

/* ---- methods, infeasibility, auto ---- */

static void test_methods(void)
{
    pt_model_config c = make_cfg("gpt2", 12, 12, 768, 50257, 50304, 1024);
    pt_device dev;
    pt_topology topo;
    EXPECT(pt_device_load("h100", &dev) == PT_OK);
    EXPECT(pt_topology_init(&topo, &dev, 1, 4) == PT_OK);
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.n_devices = 4;
    rq.n_stages = 4;
    rq.n_microbatches = 8;
    rq.method = "uniform";
    pt_plan *p = NULL;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_OK);
    if (p) {
        /* 14 layers into 4: 4,4,3,3 */
        EXPECT(p->last_layer[0] == 3 && p->last_layer[1] == 7 && p->last_layer[2] == 10 && p->last_layer[3] == 13);
        EXPECT(p->n_params_total == 124439808);
        EXPECT(p->pred_bubble > 0 && p->pred_bubble < 1 && p->pred_tokens_per_s > 0);
        EXPECT(p->pred_mfu > 0 && p->pred_mfu < dev.efficiency + 1e-9);
    }
    pt_plan_destroy(p);
    /* params: the embedding's 39M parameters weigh as much as 5.5 blocks, so stage 0 has fewer blocks */
    rq.method = "params";
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_OK);
    if (p) {
        EXPECT(p->last_layer[0] - p->first_layer[0] + 1 < 4);
        int64_t mx = 0;
        for (int k = 0; k < 4; k++)
            mx = p->n_params[k] > mx ? p->n_params[k] : mx;
        EXPECT(mx < 124439808 / 4 + 2 * 7087872);
    }
    pt_plan_destroy(p);
    /* auto on 4 devices: a plan that fits and beats (or ties) plain 1f1b uniform */
    rq.method = "auto";
    rq.n_stages = 0;
    rq.n_microbatches = 0;
    rq.global_batch = 32;
    pt_plan_candidate cand[6];
    int n_cand = -1;
    rq.candidates = cand;
    rq.max_candidates = 6;
    rq.n_candidates = &n_cand;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_OK);
    EXPECT(n_cand == 6); /* one per schedule searched */
    if (p && n_cand > 0) {
        /* the first candidate is the plan returned; the fitting ones come fastest first */
        EXPECT(cand[0].fits && strcmp(cand[0].schedule, p->schedule) == 0);
        EXPECT(cand[0].pred_tokens_per_s == p->pred_tokens_per_s);
        for (int i = 1; i < n_cand; i++)
            EXPECT(!cand[i].fits || (cand[i - 1].fits && cand[i].pred_tokens_per_s <= cand[i - 1].pred_tokens_per_s));
    }
    if (p) {
        EXPECT(p->n_stages * p->n_replicas == 4);
        EXPECT(p->n_replicas * p->n_microbatches * p->micro_batch_size == 32);
        EXPECT(pt_plan_check_memory(p, dev.mem_bytes) == PT_OK);
        EXPECT(strcmp(p->method, "auto") == 0);
    }
    pt_plan_destroy(p);
}

static void test_infeasible(void)
{
    /* gpt2-xl needs ~28 GB of state: on 8 GB devices one stage cannot hold it */
    pt_model_config c = make_cfg("gpt2-xl", 48, 25, 1600, 50257, 50304, 1024);
    pt_device dev;
    pt_topology topo;
    pt_plan_request rq;
    h100_memory_request(1, 2, 2, 4, &dev, &topo, &rq);
    rq.mem_cap_bytes = 8e9;
    pt_plan *p = NULL;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_ENOMEM);
    EXPECT(!p);
    const char *msg = pt_last_error();
    EXPECT(strstr(msg, "needs at least") != NULL);
    EXPECT(strchr(msg, '\n') == NULL);
    /* the count it names does fit */
    int n_dev = 0;
    const char *at = strstr(msg, "needs at least ");
    if (at)
        n_dev = atoi(at + strlen("needs at least "));
    EXPECT(n_dev > 2);
    if (n_dev > 2) {
        pt_topology t2;
        EXPECT(pt_topology_init(&t2, &dev, 1, n_dev) == PT_OK);
        rq.n_devices = n_dev;
        rq.n_stages = n_dev;
        EXPECT(pt_plan_make(&c, &dev, &t2, NULL, &rq, &p) == PT_OK);
        pt_plan_destroy(p);
        p = NULL;
        /* and one fewer does not */
        rq.n_devices = n_dev - 1;
        rq.n_stages = n_dev - 1;
        EXPECT(pt_plan_make(&c, &dev, &t2, NULL, &rq, &p) == PT_ENOMEM);
        pt_plan_destroy(p);
    }
    /* a fixed split that does not fit, where a memory-aware one does, points to it */
    pt_topology t4;
    EXPECT(pt_topology_init(&t4, &dev, 1, 4) == PT_OK);
    rq.method = "uniform";
    rq.n_devices = 4;
    rq.n_stages = 4;
    rq.n_microbatches = 16;
    rq.micro_batch_size = 4;
    rq.mem_cap_bytes = 10e9; /* uniform (recomputing where needed) needs 10.4 GB, memory's split 9.5 GB */
    EXPECT(pt_plan_make(&c, &dev, &t4, NULL, &rq, &p) == PT_ENOMEM && !p);
    EXPECT(strstr(pt_last_error(), "--partition memory") != NULL);
    rq.method = "memory";
    EXPECT(pt_plan_make(&c, &dev, &t4, NULL, &rq, &p) == PT_OK && p);
    if (p)
        EXPECT(pt_plan_check_memory(p, rq.mem_cap_bytes) == PT_OK);
    pt_plan_destroy(p);
    p = NULL;
    rq.micro_batch_size = 0;
    rq.mem_cap_bytes = 8e9;
    rq.method = "memory";
    /* bad requests */
    rq.n_devices = 2;
    rq.n_stages = 3;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_EINVAL);
    rq.n_stages = 2;
    rq.method = "fastest";
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_EINVAL);
    rq.method = "time";
    rq.schedule = "zbv";
    rq.n_chunks = 3;
    EXPECT(pt_plan_make(&c, &dev, &topo, NULL, &rq, &p) == PT_EINVAL);
}

/* ---- manual layouts and JSON ---- */

static void test_layouts(void)
{
    pt_model_config c = make_cfg("gpt2-tiny", 4, 4, 128, 256, 256, 256);
    pt_plan *p = NULL;
    EXPECT(pt_plan_from_layout(&c, "3,3", 1, &p) == PT_OK);
    if (p) {
        EXPECT(p->n_stages == 2 && p->first_layer[1] == 3 && p->last_layer[1] == 5);
        pt_device dev;
        pt_topology topo;
        EXPECT(pt_device_load("cpu", &dev) == PT_OK);
        EXPECT(pt_topology_init(&topo, &dev, 1, 2) == PT_OK);
        p->micro_batch_size = 4;
        p->n_microbatches = 4;
        p->seq_len = 64;
        p->recompute[1] = 1;
        EXPECT(pt_plan_price(p, &c, &dev, &topo, NULL) == PT_OK);
        EXPECT(p->pred_step_time_s > 0 && p->pred_mem_bytes[0] > 0);
        /* 1f1b runs fused backward; zb-h1 keeps the split-backward gradients (stage 0 holds two
         * micro-batches under both) */
        EXPECT(strcmp(p->schedule, "1f1b") == 0 && pt_plan_fused_only(p) == 1);
        const double mem_fused = p->pred_mem_bytes[0];
        snprintf(p->schedule, sizeof p->schedule, "zb-h1");
        EXPECT(pt_plan_fused_only(p) == 0);
        EXPECT(pt_plan_price(p, &c, &dev, &topo, NULL) == PT_OK);
        EXPECT(p->pred_mem_bytes[0] > mem_fused);
        snprintf(p->schedule, sizeof p->schedule, "1f1b");
        EXPECT(pt_plan_price(p, &c, &dev, &topo, NULL) == PT_OK);
        EXPECT(p->pred_mem_bytes[0] == mem_fused);
        cJSON *j = NULL;
        EXPECT(pt_plan_to_json(p, &j) == PT_OK);
        char *text = cJSON_PrintUnformatted(j);
        cJSON *j2 = NULL;
        EXPECT(text && pt_json_parse(text, strlen(text), "plan", &j2) == PT_OK);
        pt_plan *q = NULL;
        EXPECT(j2 && pt_plan_from_json(j2, &q) == PT_OK);
        if (q) {
            EXPECT(q->n_stages == p->n_stages && q->n_chunks == p->n_chunks && q->n_replicas == p->n_replicas);
            for (int k = 0; k < p->n_vstages; k++) {
                EXPECT(q->first_layer[k] == p->first_layer[k] && q->last_layer[k] == p->last_layer[k]);
                EXPECT(q->recompute[k] == p->recompute[k] && q->n_params[k] == p->n_params[k]);
                EXPECT(near(q->pred_time_s[k], p->pred_time_s[k]) && near(q->pred_mem_bytes[k], p->pred_mem_bytes[k]));
            }
            EXPECT(q->micro_batch_size == 4 && q->n_microbatches == 4 && q->seq_len == 64);
            EXPECT(strcmp(q->schedule, p->schedule) == 0 && strcmp(q->method, "manual") == 0);
            EXPECT(near(q->pred_step_time_s, p->pred_step_time_s) && near(q->pred_mfu, p->pred_mfu));
            EXPECT(q->n_params_total == p->n_params_total);
        }
        pt_plan_destroy(q);
        cJSON_Delete(j2);
        free(text);
        /* a broken chunk list is refused */
        cJSON *list = cJSON_GetObjectItem(j, "chunk_list");
        cJSON_ReplaceItemInObject(cJSON_GetArrayItem(list, 1), "first_layer", cJSON_CreateNumber(2));
        q = NULL;
        EXPECT(pt_plan_from_json(j, &q) == PT_EINVAL && !q);
        cJSON_Delete(j);
    }
    pt_plan_destroy(p);
    p = NULL;
    EXPECT(pt_plan_from_layout(&c, "2,2,1,1", 2, &p) == PT_OK);
    if (p)
        EXPECT(p->n_stages == 2 && p->n_chunks == 2 && p->last_layer[2] == 4);
    pt_plan_destroy(p);
    p = NULL;
    EXPECT(pt_plan_from_layout(&c, "3,2", 1, &p) == PT_EINVAL && !p);
    EXPECT(strstr(pt_last_error(), "sum to 6") != NULL);
    EXPECT(pt_plan_from_layout(&c, "0,6", 1, &p) == PT_EINVAL);
    EXPECT(pt_plan_from_layout(&c, "3,x", 1, &p) == PT_EINVAL);
    EXPECT(pt_plan_from_layout(&c, "3;3", 1, &p) == PT_EINVAL);
    EXPECT(pt_plan_from_layout(&c, "1,2,3", 2, &p) == PT_EINVAL);
}

/* ---- the LM head split into vocabulary shards (head_split) ---- */

/* The request of the head_split tests: 2 cpu stages, 1f1b, time partition, 8 micro-batches of 4 x 64. */
static void small_request(pt_device *dev, pt_topology *topo, pt_plan_request *rq)
{
    EXPECT(pt_device_load("cpu", dev) == PT_OK);
    EXPECT(pt_topology_init(topo, dev, 1, 2) == PT_OK);
    pt_plan_request_init(rq);
    rq->method = "time";
    rq->n_devices = 2;
    rq->n_stages = 2;
    rq->schedule = "1f1b";
    rq->micro_batch_size = 4;
    rq->seq_len = 64;
    rq->n_microbatches = 8;
}

/* Plans gpt2-small (6 blocks, C=384, vocabulary 50304 padded: the head is most of the work) with
 * small_request and returns the plan (NULL on failure). */
static pt_plan *plan_small(int head_split)
{
    pt_model_config cfg = make_cfg("gpt2-small", 6, 6, 384, 50257, 50304, 1024);
    cfg.head_split = head_split;
    pt_device dev;
    pt_topology topo;
    pt_plan_request rq;
    small_request(&dev, &topo, &rq);
    pt_plan *p = NULL;
    EXPECT(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &p) == PT_OK);
    return p;
}

static double stage_balance(const pt_plan *p)
{
    const double a = p->pred_time_s[0], b = p->pred_time_s[1];
    return a < b ? a / b : b / a;
}

/* --head-split auto: the planner splits gpt2-small's head for 2 stages (with the predicted step it
 * reports), and keeps one head layer where a split buys nothing (one stage; gpt2-tiny's small head). */
static void test_head_split_auto(void)
{
    pt_device dev;
    pt_topology topo;
    pt_plan_request rq;
    small_request(&dev, &topo, &rq);
    pt_model_config small = make_cfg("gpt2-small", 6, 6, 384, 50257, 50304, 1024);
    int k = 0;
    double t_k = 0, t_1 = 0;
    EXPECT(pt_plan_best_head_split(&small, &dev, &topo, &rq, &k, &t_k, &t_1) == PT_OK);
    EXPECT(k > 1 && k <= PT_HEAD_SPLIT_AUTO_MAX && t_k <= 0.97 * t_1);
    pt_plan *p1 = plan_small(1), *pk = plan_small(k);
    EXPECT(p1 && pk && p1->pred_step_time_s == t_1 && pk->pred_step_time_s == t_k);
    for (int K = k + 1; K <= PT_HEAD_SPLIT_AUTO_MAX; K++) { /* no larger split beats its choice by 1% */
        pt_plan *p = plan_small(K);
        EXPECT(p && p->pred_step_time_s >= 0.99 * t_k);
        pt_plan_destroy(p);
    }
    pt_plan_destroy(p1);
    pt_plan_destroy(pk);
    printf("head_split auto: gpt2-small on 2 cpu stages -> %d layers, predicted step %.3f s (%.3f s unsplit)\n", k,
           t_k, t_1);
    pt_model_config tiny = make_cfg("gpt2-tiny", 4, 4, 128, 256, 256, 256);
    EXPECT(pt_plan_best_head_split(&tiny, &dev, &topo, &rq, &k, NULL, NULL) == PT_OK && k == 1);
    rq.n_devices = rq.n_stages = 1;
    EXPECT(pt_topology_init(&topo, &dev, 1, 1) == PT_OK);
    EXPECT(pt_plan_best_head_split(&small, &dev, &topo, &rq, &k, NULL, NULL) == PT_OK && k == 1);
}

static void test_head_split(void)
{
    /* With one head layer the boundary can only fall before the head, which has ~60% of the work;
     * with 4 shards it falls inside the head and the stages come within 10% of each other. */
    pt_plan *p1 = plan_small(1), *p4 = plan_small(4);
    if (p1 && p4) {
        EXPECT(p1->last_layer[0] == 6 && stage_balance(p1) < 0.7);
        EXPECT(p4->last_layer[0] >= 7 && p4->last_layer[0] < 10); /* both stages hold head shards */
        EXPECT(stage_balance(p4) >= 0.9);
        EXPECT(p4->pred_step_time_s < 0.85 * p1->pred_step_time_s);
        /* the plan file says which layering its ranges cut */
        cJSON *j = NULL;
        pt_plan *q = NULL;
        EXPECT(p4->head_split == 4 && p1->head_split == 1);
        EXPECT(pt_plan_to_json(p4, &j) == PT_OK && pt_plan_from_json(j, &q) == PT_OK && q && q->head_split == 4);
        pt_plan_destroy(q);
        cJSON_Delete(j);
        if (stage_balance(p1) >= 0.7 || stage_balance(p4) < 0.9)
            fprintf(stderr, "  gpt2-small on 2 stages: balance %.3f unsplit, %.3f with head_split 4\n",
                    stage_balance(p1), stage_balance(p4));
        /* 0 and 1 both mean one head layer: the same plan */
        pt_plan *p0 = plan_small(0);
        EXPECT(p0 && p0->pred_step_time_s == p1->pred_step_time_s && p0->pred_mem_bytes[1] == p1->pred_mem_bytes[1]);
        pt_plan_destroy(p0);
    }
    pt_plan_destroy(p1);
    pt_plan_destroy(p4);

    /* The shards' costs add up to the unsplit head's FLOPs; the other layers' costs do not change. */
    pt_model_config c1 = make_cfg("gpt2-small", 6, 6, 384, 50257, 50304, 1024), c4 = c1;
    c4.head_split = 4;
    pt_device dev;
    pt_topology topo;
    EXPECT(pt_device_load("cpu", &dev) == PT_OK);
    EXPECT(pt_topology_init(&topo, &dev, 1, 2) == PT_OK);
    pt_layer_cost l1[8], l4[11], lc_many[13];
    EXPECT(pt_cost_layers(&c1, 4, 64, &dev, NULL, l1) == PT_OK);
    EXPECT(pt_cost_layers(&c4, 4, 64, &dev, NULL, l4) == PT_OK);
    EXPECT(memcmp(l1, l4, 7 * sizeof l1[0]) == 0);
    double f = 0, params = 0;
    for (int k = 0; k < 4; k++) {
        f += l4[7 + k].fwd_flops;
        params += (double)l4[7 + k].n_params;
        EXPECT(l4[7 + k].bwd_input_flops == l4[7 + k].fwd_flops && l4[7 + k].bwd_weight_flops == l4[7 + k].fwd_flops);
        /* h|stats between shards, nothing after the last */
        EXPECT(l4[7 + k].out_bytes == (k < 3 ? 4.0 * 4 * 64 * (384 + PT_XENT_STATS) : 0));
    }
    EXPECT(f == l1[7].fwd_flops && params == (double)l1[7].n_params);
    /* shards of V rows when vocab_padded is unset; never more shards than rows */
    pt_model_config c3 = make_cfg("v", 1, 1, 8, 10, 0, 8);
    c3.head_split = 3;
    EXPECT(pt_cost_layers(&c3, 1, 8, &dev, NULL, l4) == PT_OK);
    EXPECT(l4[2].fwd_flops > 0 && l4[2].fwd_flops + l4[3].fwd_flops + l4[4].fwd_flops == 2.0 * 8 * 8 * 10);
    c3.head_split = 11;
    EXPECT(pt_cost_layers(&c3, 1, 8, &dev, NULL, lc_many) == PT_EINVAL);

    /* The tied wte is counted per chunk: one whole copy (weights, gradient, m, v) in a chunk of
     * shards without the embedding however many it holds, the fp32 twin beside the embedding. */
    const double wte = 50304.0 * 384, per_param = pt_part_state_bytes_per_param(&dev);
    pt_part_ctx *c = NULL;
    EXPECT(pt_part_ctx_create(&c4, &dev, &topo, NULL, 2, 1, 1, 4, 8, 64, "1f1b", &c) == PT_OK);
    if (c) {
        for (int i = 7; i <= 10; i++) {
            for (int j = i; j <= 10; j++) {
                /* a chunk of shards i..j: its memory less its slots and fixed buffers is its own
                 * state (lnf with shard 0) plus exactly one wte copy */
                const double rest = pt_part_chunk_mem(c, 1, i, j, 0) - c->inflight[1] * pt_part_chunk_slot_bytes(c, i, j, 0) -
                                    pt_part_chunk_fixed_bytes(&c4, 4, 64, dev.act_elem_bytes, i, j, 0, c->fused_only);
                EXPECT(rest == (i == 7 ? 2 * 384 * per_param : 0) + wte * per_param);
            }
        }
        int full = -1;
        EXPECT(pt_part_chunk_tied_elems(&c4, 0, 8, &full) == wte && full == 0);
        EXPECT(pt_part_chunk_tied_state_bytes(&c4, &dev, 0, 8) == 4 * wte);  /* the twin */
        EXPECT(pt_part_chunk_tied_state_bytes(&c4, &dev, 0, 10) == 4 * wte); /* one twin for all shards */
        EXPECT(pt_part_chunk_tied_state_bytes(&c4, &dev, 3, 9) == per_param * wte);
        EXPECT(pt_part_chunk_tied_elems(&c4, 0, 6, &full) == 0 && full == 0); /* no head layer */
        EXPECT(pt_part_chunk_tied_state_bytes(&c4, &dev, 2, 6) == 0);
        /* a chunk starting between shards carries h|stats in and dh|lse back, per slot */
        EXPECT(c->comm[0] > 0 && c->comm[0] == dev.intra_latency_s + 4.0 * 4 * 64 * (384 + PT_XENT_STATS) /
                                                                       dev.intra_bw_Bps);
    }
    pt_part_ctx_destroy(c);

    /* Data-parallel all-reduce and optimizer step count the copy of a chunk without the embedding,
     * not the twin beside it: with 2 replicas of one stage (embedding and head together) they move
     * the model's allocated parameters once. */
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.n_devices = 2;
    rq.n_stages = 1;
    rq.micro_batch_size = 4;
    rq.seq_len = 64;
    pt_topology t2;
    EXPECT(pt_topology_init(&t2, &dev, 1, 2) == PT_OK);
    for (int K = 1; K <= 4; K += 3) {
        pt_model_config cfg = c1;
        cfg.head_split = K;
        pt_plan *p = NULL;
        EXPECT(pt_plan_make(&cfg, &dev, &t2, NULL, &rq, &p) == PT_OK);
        /* wte (padded) + wpe + 6 blocks + lnf */
        const double n_alloc = wte + 1024.0 * 384 + 6.0 * (12.0 * 384 * 384 + 13 * 384) + 2 * 384;
        if (p) {
            EXPECT(fabs(p->pred_optim_s - n_alloc * 28.0 / dev.mem_bw_Bps) <= 1e-12 * p->pred_optim_s);
            EXPECT(fabs(p->pred_comm_s - (4.0 * n_alloc / dev.intra_bw_Bps + 2.0 * dev.intra_latency_s)) <=
                   1e-12 * p->pred_comm_s);
        }
        pt_plan_destroy(p);
    }
}

/* ---- files ---- */

static void test_files(void)
{
    char dir[] = "/tmp/pt_part_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/costs.json", dir);
    pt_layer_times *t = NULL;
    EXPECT(pt_layer_times_create(6, &t) == PT_OK);
    if (t) {
        t->cfg = make_cfg("gpt2-tiny", 4, 4, 128, 256, 256, 256);
        t->micro_batch_size = 4;
        t->seq_len = 64;
        t->n_threads = 2;
        snprintf(t->backend, sizeof t->backend, "cpu");
        for (int l = 0; l < 6; l++) {
            t->fwd_s[l] = 1e-4 * (l + 1);
            t->bwd_input_s[l] = 2e-4 * (l + 1);
            t->bwd_weight_s[l] = 3e-4 * (l + 1);
        }
        EXPECT(pt_layer_times_save(t, path) == PT_OK);
        cJSON *j = NULL;
        EXPECT(pt_json_read_file(path, &j) == PT_OK);
        EXPECT(j && !cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(j, "model"), "architecture") &&
               !cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(j, "model"), "n_kv_head"));
        cJSON_Delete(j);
        pt_layer_times *u = NULL;
        EXPECT(pt_layer_times_load(path, &u) == PT_OK);
        if (u) {
            EXPECT(u->n_layers == 6 && u->micro_batch_size == 4 && u->seq_len == 64 && u->cfg.n_embd == 128);
            EXPECT(u->cfg.arch == PT_ARCH_GPT2);
            for (int l = 0; l < 6; l++)
                EXPECT(near(u->fwd_s[l], t->fwd_s[l]) && near(u->bwd_weight_s[l], t->bwd_weight_s[l]));
            /* measured times replace the analytic ones, scaled by tokens */
            pt_device dev;
            EXPECT(pt_device_load("cpu", &dev) == PT_OK);
            pt_layer_cost lc[6];
            EXPECT(pt_cost_layers(&u->cfg, 8, 64, &dev, u, lc) == PT_OK);
            EXPECT(fabs(lc[2].t_fwd - 2 * 3e-4) < 1e-12);
            /* a different model is refused */
            pt_model_config other = make_cfg("x", 5, 4, 128, 256, 256, 256);
            pt_layer_cost lc7[7];
            EXPECT(pt_cost_layers(&other, 8, 64, &dev, u, lc7) == PT_EINVAL);
        }
        pt_layer_times_destroy(u);
    }
    pt_layer_times_destroy(t);
    /* a split head: the file keeps head_split and lists every shard; an unsplit head's file has no
     * head_split key (files written before it stay byte for byte what they were) */
    for (int K = 1; K <= 3; K += 2) {
        pt_model_config cfg = make_cfg("gpt2-tiny", 4, 4, 128, 256, 256, 256);
        cfg.head_split = K;
        const int L = pt_model_n_layers(&cfg);
        t = NULL;
        EXPECT(pt_layer_times_create(L, &t) == PT_OK);
        if (!t)
            continue;
        t->cfg = cfg;
        t->micro_batch_size = 2;
        t->seq_len = 32;
        snprintf(t->backend, sizeof t->backend, "cpu");
        for (int l = 0; l < L; l++) {
            t->fwd_s[l] = 1e-3 * (l + 1) / 3.0;
            t->bwd_input_s[l] = 2e-3 * (l + 1) / 7.0;
            t->bwd_weight_s[l] = 3e-3 * (l + 1) / 11.0;
        }
        EXPECT(pt_layer_times_save(t, path) == PT_OK);
        cJSON *j = NULL;
        EXPECT(pt_json_read_file(path, &j) == PT_OK);
        const cJSON *hs = j ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "model"), "head_split")
                            : NULL;
        EXPECT(K == 1 ? hs == NULL : cJSON_IsNumber(hs) && hs->valueint == K);
        EXPECT(j && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "layers")) == L);
        cJSON_Delete(j);
        pt_layer_times *u = NULL;
        EXPECT(pt_layer_times_load(path, &u) == PT_OK);
        if (u) {
            EXPECT(u->n_layers == L && pt_model_head_layers(&u->cfg) == K);
            for (int l = 0; l < L; l++)
                EXPECT(near(u->fwd_s[l], t->fwd_s[l]) && near(u->bwd_input_s[l], t->bwd_input_s[l]) &&
                       near(u->bwd_weight_s[l], t->bwd_weight_s[l]));
            pt_device dev;
            EXPECT(pt_device_load("cpu", &dev) == PT_OK);
            pt_layer_cost lc[8];
            EXPECT(pt_cost_layers(&cfg, 2, 32, &dev, u, lc) == PT_OK);
            EXPECT(lc[L - 1].t_bwd_weight == u->bwd_weight_s[L - 1]);
            /* the same model with the other head split is refused, naming it */
            pt_model_config other = cfg;
            other.head_split = K == 1 ? 3 : 1;
            EXPECT(pt_cost_layers(&other, 2, 32, &dev, u, lc) == PT_EINVAL);
            EXPECT(strstr(pt_last_error(), "--head-split") != NULL);
        }
        pt_layer_times_destroy(u);
        pt_layer_times_destroy(t);
    }
    /* a llama cost file names its architecture and shape, loads back with them, and is refused for
     * a model of other kv heads, MLP width or architecture; a gpt2 file has none of those keys */
    {
        pt_model_config cfg = make_llama("llama-tiny", 4, 4, 2, 128, 352, 256, 256, 256, 0);
        t = NULL;
        EXPECT(pt_layer_times_create(6, &t) == PT_OK);
        if (t) {
            t->cfg = cfg;
            t->micro_batch_size = 2;
            t->seq_len = 32;
            snprintf(t->backend, sizeof t->backend, "cpu");
            for (int l = 0; l < 6; l++)
                t->fwd_s[l] = t->bwd_input_s[l] = t->bwd_weight_s[l] = 1e-3 * (l + 1);
            EXPECT(pt_layer_times_save(t, path) == PT_OK);
            cJSON *j = NULL;
            EXPECT(pt_json_read_file(path, &j) == PT_OK);
            const cJSON *m = j ? cJSON_GetObjectItemCaseSensitive(j, "model") : NULL;
            const cJSON *arch = cJSON_GetObjectItemCaseSensitive(m, "architecture");
            EXPECT(cJSON_IsString(arch) && strcmp(arch->valuestring, "llama") == 0);
            cJSON_Delete(j);
            pt_layer_times *u = NULL;
            EXPECT(pt_layer_times_load(path, &u) == PT_OK);
            if (u) {
                EXPECT(u->cfg.arch == PT_ARCH_LLAMA && u->cfg.n_kv_head == 2 && u->cfg.intermediate_size == 352 &&
                       u->cfg.tie_word_embeddings == 0);
                pt_device dev;
                EXPECT(pt_device_load("cpu", &dev) == PT_OK);
                pt_layer_cost lc[6];
                EXPECT(pt_cost_layers(&cfg, 2, 32, &dev, u, lc) == PT_OK && lc[3].t_fwd == u->fwd_s[3]);
                pt_model_config other = cfg;
                other.n_kv_head = 4;
                EXPECT(pt_cost_layers(&other, 2, 32, &dev, u, lc) == PT_EINVAL);
                EXPECT(strstr(pt_last_error(), "kv heads") != NULL);
                other = cfg;
                other.intermediate_size = 384;
                EXPECT(pt_cost_layers(&other, 2, 32, &dev, u, lc) == PT_EINVAL);
                other = make_cfg("gpt2-tiny", 4, 4, 128, 256, 256, 256);
                EXPECT(pt_cost_layers(&other, 2, 32, &dev, u, lc) == PT_EINVAL);
            }
            pt_layer_times_destroy(u);
        }
        pt_layer_times_destroy(t);
    }
    /* head_split 3 but only the layers of an unsplit head */
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"format\":\"pipetrain-layer-costs\",\"version\":1,\"model\":{\"name\":\"m\",\"n_layer\":1,"
              "\"n_head\":1,\"n_embd\":8,\"vocab_size\":8,\"vocab_padded\":8,\"max_seq_len\":8,\"head_split\":3},"
              "\"micro_batch_size\":1,\"seq_len\":8,\"threads\":1,\"backend\":\"cpu\",\"layers\":["
              "{\"layer\":0,\"forward_s\":0,\"backward_input_s\":0,\"backward_weight_s\":0},"
              "{\"layer\":1,\"forward_s\":0,\"backward_input_s\":0,\"backward_weight_s\":0},"
              "{\"layer\":2,\"forward_s\":0,\"backward_input_s\":0,\"backward_weight_s\":0}]}",
              f);
        fclose(f);
    }
    t = NULL;
    EXPECT(pt_layer_times_load(path, &t) == PT_EFORMAT && !t);
    EXPECT(strstr(pt_last_error(), "all 5 layers") != NULL);
    /* a llama key in a file that does not say llama */
    f = fopen(path, "w");
    if (f) {
        fputs("{\"format\":\"pipetrain-layer-costs\",\"version\":1,\"model\":{\"name\":\"m\",\"n_layer\":1,"
              "\"n_head\":1,\"n_embd\":8,\"vocab_size\":8,\"vocab_padded\":8,\"max_seq_len\":8,\"n_kv_head\":1},"
              "\"micro_batch_size\":1,\"seq_len\":8,\"threads\":1,\"backend\":\"cpu\",\"layers\":[]}",
              f);
        fclose(f);
    }
    EXPECT(pt_layer_times_load(path, &t) == PT_EFORMAT && !t);
    EXPECT(strstr(pt_last_error(), "n_kv_head") != NULL);
    /* a corrupt cost file names the field */
    f = fopen(path, "w");
    if (f) {
        fputs("{\"format\":\"pipetrain-layer-costs\",\"version\":1,\"bogus\":1}", f);
        fclose(f);
    }
    pt_layer_times *u = NULL;
    EXPECT(pt_layer_times_load(path, &u) != PT_OK && !u);
    EXPECT(strstr(pt_last_error(), "bogus") != NULL);

    /* device files */
    snprintf(path, sizeof path, "%s/dev.json", dir);
    f = fopen(path, "w");
    if (f) {
        fputs("{\"name\":\"a100\",\"peak_tflops\":312,\"efficiency\":0.45,\"mem_gb\":40,\"inter_gbps\":25}", f);
        fclose(f);
    }
    pt_device d;
    EXPECT(pt_device_load(path, &d) == PT_OK);
    EXPECT(strcmp(d.name, "a100") == 0 && d.peak_flops == 312e12 && d.mem_bytes == 40e9 && d.inter_bw_Bps == 25e9);
    f = fopen(path, "w");
    if (f) {
        fputs("{\"name\":\"x\",\"peak_tflops\":-1,\"efficiency\":0.45,\"mem_gb\":40}", f);
        fclose(f);
    }
    EXPECT(pt_device_load(path, &d) == PT_EINVAL);
    EXPECT(pt_device_load("tpu9", &d) != PT_OK);
    EXPECT(pt_device_load("h200", &d) == PT_OK && d.mem_bytes == 141e9);
    unlink(path);
    snprintf(path, sizeof path, "%s/costs.json", dir);
    unlink(path);
    rmdir(dir);
}

/* ZeRO-1 in the planner: requests' zero reaches the plan, the moments cost ceil(n/D) elements a
 * replica (nothing with D = 1), nothing else changes, the kinds add up to each rank's total and
 * both survive the JSON round trip; a plan JSON without the keys reads as zero 0. */
static void test_zero(void)
{
    const pt_model_config cfg = make_cfg("z", 6, 4, 128, 1000, 1024, 64);
    pt_device dev;
    pt_topology topo;
    EXPECT(pt_device_load("cpu", &dev) == PT_OK);
    EXPECT(pt_topology_init(&topo, &dev, 1, 6) == PT_OK);
    pt_plan *p[2] = { NULL, NULL };
    for (int z = 0; z < 2; z++) {
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.n_devices = 6;
        rq.n_stages = 2;
        rq.n_microbatches = 4;
        rq.seq_len = 64;
        rq.zero = z;
        EXPECT(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &p[z]) == PT_OK);
    }
    if (!p[0] || !p[1]) {
        pt_plan_destroy(p[0]);
        pt_plan_destroy(p[1]);
        return;
    }
    EXPECT(p[0]->zero == 0 && p[1]->zero == 1 && p[1]->n_replicas == 3);
    for (int r = 0; r < 2; r++) {
        const double *k0 = p[0]->pred_rank_mem_kind + r * PT_MEM_KINDS, *k1 = p[1]->pred_rank_mem_kind + r * PT_MEM_KINDS;
        EXPECT(p[0]->first_layer[r] == p[1]->first_layer[r]);
        /* 8 bytes of moments per element: ceil(n / 3) of them with zero 1 */
        const double n = k0[PT_MEM_OPTIM] / 8.0;
        EXPECT(n > 0 && k1[PT_MEM_OPTIM] == 8.0 * ceil(n / 3.0));
        EXPECT(k0[PT_MEM_WEIGHTS] == 4.0 * n && k0[PT_MEM_GRADS] >= k0[PT_MEM_WEIGHTS]);
        for (int q = 0; q < PT_MEM_KINDS; q++)
            EXPECT(q == PT_MEM_OPTIM || k0[q] == k1[q]);
        EXPECT(k0[PT_MEM_COMM] > 0 && k0[PT_MEM_ACT] > 0 && k0[PT_MEM_OTHER] == 0);
        double sum = 0;
        for (int q = 0; q < PT_MEM_KINDS; q++)
            sum += k1[q];
        EXPECT(fabs(sum - p[1]->pred_rank_mem_bytes[r]) <= 1e-9 * sum);
    }
    /* the optimizer step is priced on the slice too */
    EXPECT(p[1]->pred_optim_s < p[0]->pred_optim_s);
    cJSON *j = NULL;
    pt_plan *back = NULL;
    EXPECT(pt_plan_to_json(p[1], &j) == PT_OK);
    EXPECT(j && pt_plan_from_json(j, &back) == PT_OK);
    if (back) {
        EXPECT(back->zero == 1);
        for (int i = 0; i < 2 * PT_MEM_KINDS; i++)
            EXPECT(back->pred_rank_mem_kind[i] == p[1]->pred_rank_mem_kind[i]);
    }
    pt_plan_destroy(back);
    back = NULL;
    cJSON_DeleteItemFromObject(j, "zero");
    cJSON_DeleteItemFromObject(j, "pred_rank_mem_by_kind");
    EXPECT(j && pt_plan_from_json(j, &back) == PT_OK && back && back->zero == 0 && back->pred_rank_mem_kind[0] == 0);
    pt_plan_destroy(back);
    back = NULL;
    cJSON_AddNumberToObject(j, "zero", 2);
    EXPECT(pt_plan_from_json(j, &back) != PT_OK && !back);
    cJSON_Delete(j);
    /* a bad request, and zero 1 with one replica: nothing to shard */
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.n_devices = 2;
    rq.n_stages = 2;
    rq.zero = 2;
    pt_plan *q = NULL;
    EXPECT(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &q) == PT_EINVAL && !q);
    rq.zero = 1;
    EXPECT(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &q) == PT_OK && q);
    rq.zero = 0;
    pt_plan *q0 = NULL;
    EXPECT(pt_plan_make(&cfg, &dev, &topo, NULL, &rq, &q0) == PT_OK && q0);
    if (q && q0)
        EXPECT(q->pred_rank_mem_bytes[0] == q0->pred_rank_mem_bytes[0] && q->zero == 1);
    pt_plan_destroy(q);
    pt_plan_destroy(q0);
    pt_plan_destroy(p[0]);
    pt_plan_destroy(p[1]);
}

/* Tensor parallelism (pt_cost_tp_split, pt_plan_check_tp, the search over T): one layer's cost at
 * T = 2 against T = 1 (compute halves, collectives added, weights halve, activations halve with
 * sequence parallelism only), a llama3-70b plan that fits 80 GB only with T > 1, the refusals,
 * the JSON round trip and the published table. */
static void test_tp(void)
{
    pt_device dev;
    EXPECT(pt_device_load("h100", &dev) == PT_OK);
    pt_topology topo;
    EXPECT(pt_topology_init(&topo, &dev, 2, 8) == PT_OK);
    const int B = 2, T = 64;
    const double N = (double)B * T, C = 256;
    pt_model_config g = make_cfg("g", 2, 8, 256, 1024, 1024, T);
    pt_model_config l = make_llama("l", 2, 8, 2, 256, 688, 1024, 1024, T, 0);
    pt_model_config *cfgs[] = { &g, &l };
    for (int m = 0; m < 2; m++) {
        const pt_model_config *c = cfgs[m];
        const int L = pt_model_n_layers(c);
        pt_layer_cost one[8], two[8], two_sp[8], same[8];
        EXPECT(L <= 8);
        EXPECT(pt_cost_layers(c, B, T, &dev, NULL, one) == PT_OK);
        memcpy(two, one, sizeof one);
        memcpy(two_sp, one, sizeof one);
        memcpy(same, one, sizeof one);
        EXPECT(pt_cost_tp_split(c, B, T, 2, 0, &dev, &topo, NULL, two) == PT_OK);
        EXPECT(pt_cost_tp_split(c, B, T, 2, 1, &dev, &topo, NULL, two_sp) == PT_OK);
        EXPECT(pt_cost_tp_split(c, B, T, 1, 0, &dev, &topo, NULL, same) == PT_OK);
        EXPECT(memcmp(same, one, sizeof(pt_layer_cost) * (size_t)L) == 0); /* T = 1: unchanged */
        /* a ring all-reduce of one (B,T,C) fp32 tensor over 2 ranks */
        const double ar = 2.0 * 1 / 2 * N * C * 4 / topo.intra_bw_Bps + 2.0 * topo.intra_latency_s;
        const pt_layer_cost *b1 = &one[1], *b2 = &two[1], *b2s = &two_sp[1];
        /* compute halves (kv heads 2 split over 2 ranks: every matrix halves) */
        EXPECT(fabs(b2->fwd_flops - b1->fwd_flops / 2) <= 1e-9 * b1->fwd_flops);
        EXPECT(fabs(b2->bwd_input_flops - b1->bwd_input_flops / 2) <= 1e-9 * b1->bwd_input_flops);
        EXPECT(fabs(b2->bwd_weight_flops - b1->bwd_weight_flops / 2) <= 1e-9 * b1->bwd_weight_flops);
        /* 2 all-reduces forward, 2 backward-input, on the critical path; none in backward-weight */
        EXPECT(fabs(b2->t_tp_fwd - 2 * ar) <= 1e-12 && fabs(b2->t_tp_bwd - 2 * ar) <= 1e-12);
        EXPECT(one[1].t_tp_fwd == 0 && one[1].t_tp_bwd == 0);
        EXPECT(b2->t_fwd - b2->t_tp_fwd < b1->t_fwd && b2->t_fwd - b2->t_tp_fwd > b1->t_fwd / 2.0 * 0.999);
        EXPECT(b2->t_bwd_weight < b1->t_bwd_weight);
        /* weights halve but for the replicated norms (and gpt2's row-parallel biases) */
        const double repl = m == 0 ? 6.0 * C + 7.0 * C / 2 - 13.0 * C / 2 : 2.0 * C / 2;
        EXPECT(fabs((double)b2->n_params_alloc - ((double)b1->n_params_alloc / 2 + repl)) <= 1);
        EXPECT(b2->n_params == b1->n_params); /* logical parameters stay the model's */
        EXPECT(b2->state_bytes < 0.51 * b1->state_bytes && b2->state_bytes > 0.5 * b1->state_bytes);
        /* the vocabulary-parallel embedding and head: rows / 2 */
        EXPECT(two[0].n_params_alloc * 2 == one[0].n_params_alloc || m == 0);
        EXPECT(fabs(two[L - 1].fwd_flops - one[L - 1].fwd_flops / 2) <= 1e-9 * one[L - 1].fwd_flops);
        EXPECT(two[0].t_tp_fwd > 0 && two[L - 1].t_tp_bwd > 0);
        /* activations: / T with sequence parallelism but for the split backward's kept gradients at
         * the norms' outputs (dln2, dres2, dln1: partial sums of all N rows) and the gathered
         * output gradient, as models/ keeps them: 4 NC instead of 3 NC / T (fp32 here); more
         * without sequence parallelism */
        const double kept = 4.0 * N * C * (4.0 - 3.0 / 2);
        EXPECT(b2->act_bytes > b1->act_bytes / 2 && b2->act_bytes < b1->act_bytes);
        EXPECT(b2s->act_bytes < b2->act_bytes);
        EXPECT(fabs(b2s->act_bytes - (b1->act_bytes / 2 + kept)) <= 1e-9 * b1->act_bytes);
        EXPECT(fabs(b2s->act_bytes_recompute - (b1->act_bytes_recompute / 2 + kept)) <= 1e-9 * b1->act_bytes_recompute);
        EXPECT(b2->out_bytes == b1->out_bytes && b2s->out_bytes == b1->out_bytes / 2);
        EXPECT(b2s->t_tp_fwd == b2->t_tp_fwd); /* all-gather + reduce-scatter: the all-reduce's bytes */
    }
    /* grouped kv heads fewer than T: one kv head replicated on each rank, so more than 1/4 */
    {
        pt_layer_cost one[8], four[8];
        EXPECT(pt_cost_layers(&l, B, T, &dev, NULL, one) == PT_OK);
        memcpy(four, one, sizeof one);
        EXPECT(pt_cost_tp_split(&l, B, T, 4, 0, &dev, &topo, NULL, four) == PT_OK);
        EXPECT(four[1].fwd_flops > one[1].fwd_flops / 4 && four[1].n_params_alloc > one[1].n_params_alloc / 4);
    }

    /* Refusals, one line each naming the value and the fix */
    EXPECT(pt_plan_check_tp(&g, 3, 8) == PT_EINVAL && strstr(pt_last_error(), "8 attention heads") &&
           strstr(pt_last_error(), "(1, 2, 4, 8)"));
    EXPECT(pt_plan_check_tp(&g, 8, 4) == PT_EINVAL && strstr(pt_last_error(), "node of 4 devices"));
    pt_model_config odd_vocab = make_cfg("v", 2, 8, 256, 1001, 0, T);
    EXPECT(pt_plan_check_tp(&odd_vocab, 2, 8) == PT_EINVAL && strstr(pt_last_error(), "padded vocabulary of 1001"));
    pt_model_config odd_mlp = make_llama("m", 2, 8, 8, 256, 100, 1024, 1024, T, 0);
    EXPECT(pt_plan_check_tp(&odd_mlp, 8, 8) == PT_EINVAL && strstr(pt_last_error(), "MLP width 100"));
    pt_model_config kv3 = make_llama("k", 2, 12, 3, 384, 1024, 1024, 1024, T, 0);
    EXPECT(pt_plan_check_tp(&kv3, 2, 8) == PT_EINVAL && strstr(pt_last_error(), "3 kv heads"));
    EXPECT(pt_plan_check_tp(&g, 0, 8) == PT_EINVAL);
    EXPECT(pt_plan_check_tp(&g, 8, 8) == PT_OK && pt_plan_check_tp(&l, 8, 0) == PT_OK);
    {
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.n_devices = 16;
        rq.n_tp = 16; /* more than a node's 8 */
        pt_plan *p = NULL;
        EXPECT(pt_plan_make(&g, &dev, &topo, NULL, &rq, &p) == PT_EINVAL && !p);
        rq.n_tp = 3;
        EXPECT(pt_plan_make(&g, &dev, &topo, NULL, &rq, &p) == PT_EINVAL && !p);
        rq.method = "auto";
        EXPECT(pt_plan_make(&g, &dev, &topo, NULL, &rq, &p) == PT_EINVAL && !p);
    }

    /* llama3-70b, 8 stages (one a node) on 64 H100 at T = 8192: each stage's 10 blocks (8.7B
     * parameters, 157 GB of state) fit 80 GB only split over T > 1 ranks */
    pt_model_config c70;
    EXPECT(pt_model_config_load("llama3-70b", &c70) == PT_OK);
    pt_topology t8;
    EXPECT(pt_topology_init(&t8, &dev, 8, 8) == PT_OK);
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.method = "auto";
    rq.n_devices = 64;
    rq.n_stages = 8;
    rq.schedule = "1f1b";
    rq.micro_batch_size = 1;
    rq.seq_len = 8192;
    rq.global_batch = 64;
    rq.n_tp = 1;
    pt_plan *p = NULL;
    EXPECT(pt_plan_make(&c70, &dev, &t8, NULL, &rq, &p) == PT_ENOMEM && !p);
    EXPECT(strstr(pt_last_error(), "tensor-parallel ranks (--tp") != NULL);
    rq.n_tp = 0; /* auto searches T */
    EXPECT(pt_plan_make(&c70, &dev, &t8, NULL, &rq, &p) == PT_OK && p);
    if (p) {
        EXPECT(p->n_tp > 1 && p->n_stages == 8 && p->n_stages * p->n_tp * p->n_replicas == 64);
        EXPECT(pt_plan_check_memory(p, dev.mem_bytes) == PT_OK);
        EXPECT(p->pred_tp_comm_s > 0 && p->pred_tp_comm_s < p->pred_step_time_s);
        EXPECT(p->pred_mfu > 0 && p->pred_mfu < dev.efficiency);
        /* a TP group is consecutive ranks in a node; 8 devices a node hold one stage's group(s) */
        for (int k = 0; k + 1 < p->n_vstages; k++) {
            int inter = 0;
            for (int d = 0; d < p->n_replicas; d++)
                inter |= (d * 8 + k) * p->n_tp / 8 != (d * 8 + k + 1) * p->n_tp / 8;
            EXPECT(p->boundary_inter[k] == inter);
        }
        /* JSON carries T and sp; plans without them have T = 1 */
        p->sp = 1;
        cJSON *j = NULL;
        pt_plan *q = NULL;
        EXPECT(pt_plan_to_json(p, &j) == PT_OK && j);
        EXPECT(cJSON_GetObjectItem(j, "n_tp") && cJSON_GetObjectItem(j, "n_tp")->valueint == p->n_tp);
        EXPECT(j && pt_plan_from_json(j, &q) == PT_OK && q && q->n_tp == p->n_tp && q->sp == 1);
        pt_plan_destroy(q);
        q = NULL;
        if (j) {
            cJSON_DeleteItemFromObject(j, "n_tp");
            cJSON_DeleteItemFromObject(j, "sp");
        }
        EXPECT(j && pt_plan_from_json(j, &q) == PT_OK && q && q->n_tp == 1 && q->sp == 0);
        pt_plan_destroy(q);
        cJSON_Delete(j);
        /* sequence parallelism only lowers the memory (same collective bytes) */
        rq.n_tp = p->n_tp;
        rq.sp = 1;
        pt_plan *s = NULL;
        EXPECT(pt_plan_make(&c70, &dev, &t8, NULL, &rq, &s) == PT_OK && s && s->sp == 1);
        if (s) {
            double ms = 0, mp = 0;
            for (int r = 0; r < 8; r++) {
                ms = s->pred_rank_mem_bytes[r] > ms ? s->pred_rank_mem_bytes[r] : ms;
                mp = p->pred_rank_mem_bytes[r] > mp ? p->pred_rank_mem_bytes[r] : mp;
            }
            EXPECT(s->pred_step_time_s <= p->pred_step_time_s * 1.0001 || ms < mp);
        }
        pt_plan_destroy(s);
    }
    pt_plan_destroy(p);

    /* the published table */
    const pt_published_config *pub = pt_published_find("llama3-405b", 16384);
    EXPECT(pub && pub->P == 16 && pub->T == 8 && pub->D == 128 && pub->P * pub->T * pub->D == pub->gpus);
    pub = pt_published_find("gpt3-175b", 1024);
    EXPECT(pub && pub->T == 8 && pub->P * pub->T * pub->D == 1024);
    EXPECT(pt_published_find("gpt3-175b", 1000) == NULL && pt_published_find(NULL, 1024) == NULL);
    int n = 0;
    const pt_published_config *tab = pt_published_table(&n);
    for (int i = 0; i < n; i++)
        EXPECT(tab[i].P * tab[i].T * tab[i].D == tab[i].gpus && tab[i].source && tab[i].source[0]);
}

/* The chunked head's costs (cfg head_chunk, --head-chunk): all three products in the forward, the
 * backward only the final norm's; no probabilities per slot but dlnf; one chunk of logits among
 * the chunk's fixed buffers; the other layers unchanged. Stage messages at bf16_messages' 2 bytes
 * an element on the wire, the head shards' statistics still 4. */
static void test_head_chunk_costs(void)
{
    pt_model_config c1 = make_cfg("gpt2-small", 6, 6, 384, 50257, 50304, 1024), hc = c1;
    hc.head_chunk = 100; /* 256 rows: 100, 100, 56 */
    pt_device dev;
    EXPECT(pt_device_load("cpu", &dev) == PT_OK);
    pt_layer_cost l1[8], lh[8];
    EXPECT(pt_cost_layers(&c1, 4, 64, &dev, NULL, l1) == PT_OK);
    EXPECT(pt_cost_layers(&hc, 4, 64, &dev, NULL, lh) == PT_OK);
    EXPECT(memcmp(l1, lh, 7 * sizeof l1[0]) == 0);
    const double N = 256, C = 384, Vp = 50304;
    EXPECT(lh[7].fwd_flops == 3 * l1[7].fwd_flops && lh[7].bwd_input_flops == 0 && lh[7].bwd_weight_flops == 0);
    EXPECT(lh[7].act_bytes == l1[7].act_bytes - 4 * N * Vp);
    EXPECT(lh[7].t_bwd_input < 0.01 * l1[7].t_bwd_input && lh[7].t_fwd > l1[7].t_fwd);
    for (int fo = 0; fo < 2; fo++) { /* fixed: 100 rows of logits for 16; fused_only shares no dlnf (it is per slot) */
        const double d = pt_part_chunk_fixed_bytes(&hc, 4, 64, 4, 7, 7, 0, fo) -
                         pt_part_chunk_fixed_bytes(&c1, 4, 64, 4, 7, 7, 0, fo);
        EXPECT(d == 4.0 * (100 - 16) * Vp - (fo ? 4.0 * N * C : 0.0));
    }
    /* bf16 stage messages: half the bytes on the wire; the head shards' row statistics stay fp32 */
    pt_device d2 = dev;
    d2.msg_elem_bytes = 2;
    pt_layer_cost m2[8], s4[11], s2[11];
    EXPECT(pt_cost_layers(&c1, 4, 64, &d2, NULL, m2) == PT_OK);
    for (int l = 0; l < 7; l++)
        EXPECT(m2[l].out_bytes == 0.5 * l1[l].out_bytes && m2[l].out_bytes == 2 * N * C);
    pt_model_config c4 = c1;
    c4.head_split = 4;
    EXPECT(pt_cost_layers(&c4, 4, 64, &dev, NULL, s4) == PT_OK);
    EXPECT(pt_cost_layers(&c4, 4, 64, &d2, NULL, s2) == PT_OK);
    EXPECT(s2[7].out_bytes == s4[7].out_bytes && s2[6].out_bytes == 0.5 * s4[6].out_bytes);
    EXPECT(dev.msg_elem_bytes == 4);
    pt_device h;
    EXPECT(pt_device_load("h100", &h) == PT_OK && h.msg_elem_bytes == 4);
    char dir[] = "/tmp/pt_part_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/dev.json", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"name\": \"x\", \"peak_tflops\": 100, \"efficiency\": 0.5, \"mem_gb\": 40, \"bf16_messages\": 1}", f);
        fclose(f);
    }
    EXPECT(pt_device_load(path, &h) == PT_OK && h.msg_elem_bytes == 2);
    remove(path);
    rmdir(dir);
}

int main(void)
{
    test_param_counts();
    test_head_chunk_costs();
    test_llama_params();
    test_llama_costs();
    test_llama_405b_plan();
    test_head_split_auto();
    test_flops();
#ifdef PT_TEST_HAVE_MODELS
    test_memory_matches_models();
#endif
#ifdef PT_TEST_HAVE_SCHEDULE
    test_inflight_vs_schedules();
#endif
    test_dp_vs_exhaustive();
    test_dp_interleaved();
    test_methods();
    test_infeasible();
    test_layouts();
    test_files();
    test_head_split();
    test_zero();
    test_tp();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("partition: all tests passed\n");
    return 0;
}
