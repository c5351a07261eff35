/* The layers: central finite differences (in double, from the float forward) for each layer
 * type's backward_input and backward_weight; split backward == fused, bit for bit; M micro-
 * batches of b == one batch of M*b (1e-6 relative); a model cut into chunks (activations and
 * gradients passed by hand, the tied wte or the untied lm_head copies reduced by hand) == the
 * whole model, bit for bit; recompute == no recompute, bit for bit; slot bytes as claimed;
 * initialisation depends only on (seed, name); HF export then import round-trips; misuse and bad
 * files give their errors. The model-level checks (finite differences, split/recompute/micro-
 * batches, chunks, the split head) run on GPT-2 and on three Llama configs: untied with
 * grouped-query attention (2 kv heads for 4), tied with one kv head and Llama 3.1 rope scaling,
 * and untied with a 3-shard head. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"
#include "pipetrain/bf16.h"
#include "test_common.h"

static const pt_backend *be;
static pt_stream *stream;

/* A tiny config with a padded vocabulary (the padded rows take part in the softmax). */
static const pt_model_config tiny = {
    .name = "layers-test", .n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 50, .vocab_padded = 64,
    .max_seq_len = 16,
};

/* The same model with its LM head as 3 vocabulary shards (21, 21 and 22 rows of wte; the last
 * holds the 14 padding rows). */
static const pt_model_config tiny_split = {
    .name = "layers-test-split", .n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 50, .vocab_padded = 64,
    .max_seq_len = 16, .head_split = 3,
};

/* Llama: untied LM head, grouped-query attention (4 query heads on 2 kv heads, head width 8),
 * SwiGLU width 40, padded vocabulary. */
static const pt_model_config llama_tiny = {
    .name = "layers-llama", .arch = PT_ARCH_LLAMA, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .n_embd = 32,
    .vocab_size = 50, .vocab_padded = 64, .max_seq_len = 16, .intermediate_size = 40, .rms_norm_eps = 1e-5f,
    .rope_theta = 10000.0, .tie_word_embeddings = 0,
};

/* Llama tied to wte, one kv head (multi-query), Llama 3.1 rope scaling whose bands all occur at
 * head width 8 (wavelengths 6.3, 63, 628, 6283 against 16 / 4 and 16 / 1). */
static const pt_model_config llama_tied = {
    .name = "layers-llama-tied", .arch = PT_ARCH_LLAMA, .n_layer = 2, .n_head = 4, .n_kv_head = 1, .n_embd = 32,
    .vocab_size = 50, .vocab_padded = 64, .max_seq_len = 16, .intermediate_size = 24, .rms_norm_eps = 1e-6f,
    .rope_theta = 10000.0, .tie_word_embeddings = 1, .rope_scaling_factor = 8.0, .rope_low_freq_factor = 1.0,
    .rope_high_freq_factor = 4.0, .rope_original_max_pos = 16,
};

/* llama_tiny with its (untied) LM head as 3 vocabulary shards. */
static const pt_model_config llama_split = {
    .name = "layers-llama-split", .arch = PT_ARCH_LLAMA, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .n_embd = 32,
    .vocab_size = 50, .vocab_padded = 64, .max_seq_len = 16, .intermediate_size = 40, .rms_norm_eps = 1e-5f,
    .rope_theta = 10000.0, .tie_word_embeddings = 0, .head_split = 3,
};

static uint64_t rng_state = 12345;
static double urand(void) /* [0, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)urand(); }

/* recompute: bit 0 = recompute, bit 1 = fused_only, bit 2 = no_stash (bf16: keep the floats) */
static pt_model *make_prec(const pt_model_config *c, int first, int last, int B, int T, int n_slots, int recompute,
                           pt_precision prec)
{
    pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = n_slots, .recompute = recompute & 1,
                        .fused_only = (recompute >> 1) & 1, .no_stash = (recompute >> 2) & 1, .precision = prec };
    pt_model *m = NULL;
    pt_status st = pt_model_create(c, first, last, &o, be, stream, &m);
    if (st != PT_OK) {
        fprintf(stderr, "pt_model_create(%d..%d): %s\n", first, last, pt_last_error());
        exit(1);
    }
    if (pt_model_init_weights(m, 7) != PT_OK || pt_model_zero_grads(m) != PT_OK) {
        fprintf(stderr, "init: %s\n", pt_last_error());
        exit(1);
    }
    return m;
}

static pt_model *make(const pt_model_config *c, int first, int last, int B, int T, int n_slots, int recompute)
{
    return make_prec(c, first, last, B, T, n_slots, recompute, PT_PRECISION_FP32);
}

static float *to_host(const float *dev, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h || be->memcpy_d2h(stream, h, dev, n * sizeof(float)) != PT_OK) {
        fprintf(stderr, "d2h: %s\n", pt_last_error());
        exit(1);
    }
    return h;
}

static void h2d(void *dev, const void *host, size_t bytes)
{
    if (be->memcpy_h2d(stream, dev, host, bytes) != PT_OK) {
        fprintf(stderr, "h2d: %s\n", pt_last_error());
        exit(1);
    }
}

/* Random tokens in [0, V) and next-token targets, one of them ignored (-1). */
static void make_batch(int N, int V, int32_t *tok, int32_t *tgt)
{
    for (int i = 0; i < N; i++) {
        tok[i] = (int32_t)(urand() * V);
        tgt[i] = (int32_t)(urand() * V);
    }
    tgt[N / 2] = -1;
}

/* Replaces every parameter with a random value (layernorm weights near 1), so no gradient is
 * trivially zero. Deterministic for a given tensor name. */
static void randomise_params(pt_model *m)
{
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        float *h = malloc(p->numel * sizeof(float));
        uint64_t save = rng_state;
        rng_state = 1;
        for (const char *c = p->name; *c; c++)
            rng_state = rng_state * 31 + (unsigned char)*c;
        int is_lnw = strstr(p->name, "ln") && strstr(p->name, ".weight");
        for (size_t k = 0; k < p->numel; k++)
            h[k] = is_lnw ? frand(0.7f, 1.3f) : frand(-0.25f, 0.25f);
        rng_state = save;
        h2d(pt_model_params(m) + p->offset, h, p->numel * sizeof(float));
        free(h);
    }
}

/* ---- finite differences ---- */

typedef struct fd_case {
    pt_model *m;
    int kind;           /* 0 embedding, 1 block, 2 head */
    const float *R;     /* (N,C) weights of the objective sum(y * R) for embedding and block */
    size_t N, C;
} fd_case;

/* The objective in double: sum(out * R), or for the head the sum of the per-token losses. */
static double fd_objective(fd_case *fc)
{
    double L = 0.0;
    if (fc->kind == 2) {
        int64_t n = 0;
        if (pt_model_forward(fc->m, 0) != PT_OK || pt_model_slot_loss(fc->m, 0, &L, &n) != PT_OK) {
            fprintf(stderr, "fd forward: %s\n", pt_last_error());
            exit(1);
        }
    } else {
        if (pt_model_forward(fc->m, 0) != PT_OK) {
            fprintf(stderr, "fd forward: %s\n", pt_last_error());
            exit(1);
        }
        float *y = to_host(pt_model_slot_output(fc->m, 0), fc->N * fc->C);
        for (size_t i = 0; i < fc->N * fc->C; i++)
            L += (double)y[i] * fc->R[i];
        free(y);
    }
    pt_model_slot_release(fc->m, 0);
    return L;
}

/* Central difference of the objective w.r.t. device float *x. */
static double fd_at(fd_case *fc, float *x, double h)
{
    float v0;
    if (be->memcpy_d2h(stream, &v0, x, sizeof(float)) != PT_OK)
        exit(1);
    float vp = (float)(v0 + h), vm = (float)(v0 - h);
    h2d(x, &vp, sizeof(float));
    double Lp = fd_objective(fc);
    h2d(x, &vm, sizeof(float));
    double Lm = fd_objective(fc);
    h2d(x, &v0, sizeof(float));
    return (Lp - Lm) / ((double)vp - (double)vm);
}

/* Checks analytic gradient `an` (host, n) of device tensor `x` at `n_check` random indices:
 * |fd - an| <= 1e-3 * max|an| + 1e-5. */
static void fd_check(fd_case *fc, const char *what, float *x, const float *an, size_t n, int n_check)
{
    double amax = 0.0, worst = 0.0;
    size_t worst_i = 0;
    double worst_fd = 0;
    for (size_t i = 0; i < n; i++)
        amax = fabs(an[i]) > amax ? fabs(an[i]) : amax;
    for (int k = 0; k < n_check; k++) {
        size_t i = (size_t)(urand() * n);
        double fd = fd_at(fc, x + i, 1e-2);
        double err = fabs(fd - an[i]) / (1e-3 * amax + 1e-5);
        if (err > worst || isnan(err)) {
            worst = err;
            worst_i = i;
            worst_fd = fd;
        }
    }
    if (!(worst <= 1.0)) {
        fprintf(stderr, "finite differences: %s[%zu]: analytic %.6g, central difference %.6g (max |grad| %.3g)\n", what,
                worst_i, (double)an[worst_i], worst_fd, amax);
        failures++;
    }
    printf("  fd %-28s worst error / tolerance %.3f\n", what, worst);
}

/* Every layer of `one` (and the head of `split`, the same model with a sharded head) against
 * central differences. */
static void test_finite_differences(const pt_model_config *one, const pt_model_config *split)
{
    const int B = 2, T = 8, C = one->n_embd, L = one->n_layer;
    const size_t N = (size_t)B * T;
    int32_t tok[16], tgt[16];
    make_batch((int)N, one->vocab_size, tok, tgt);
    float *R = malloc(N * C * sizeof(float)), *xin = malloc(N * C * sizeof(float));
    for (size_t i = 0; i < N * C; i++) {
        R[i] = frand(-1, 1);
        xin[i] = frand(-1, 1);
    }
    const struct {
        int kind, first, last;
        const pt_model_config *cfg;
    } cases[] = { { 0, 0, 0, one }, { 1, 1, 1, one }, { 1, L, L, one }, { 2, L + 1, L + 1, one },
                  { 2, L + 1, L + 3, split } /* the three shards of the split head */ };
    printf("finite differences, %s:\n", one->name);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        if (!cases[c].cfg)
            continue;
        pt_model *m = make(cases[c].cfg, cases[c].first, cases[c].last, B, T, 1, 0);
        randomise_params(m);
        fd_case fc = { .m = m, .kind = cases[c].kind, .R = R, .N = N, .C = (size_t)C };
        if (pt_model_has_embedding(m))
            h2d(pt_model_slot_tokens(m, 0), tok, sizeof(tok));
        if (pt_model_has_head(m))
            h2d(pt_model_slot_targets(m, 0), tgt, sizeof(tgt));
        if (!pt_model_has_embedding(m))
            h2d(pt_model_slot_input(m, 0), xin, N * C * sizeof(float));
        /* analytic: d(objective)/d(input) and d/d(params) */
        EXPECT_OK(pt_model_forward(m, 0));
        if (!pt_model_has_head(m))
            h2d(pt_model_slot_doutput(m, 0), R, N * C * sizeof(float));
        EXPECT_OK(pt_model_backward_input(m, 0, 1.0f));
        EXPECT_OK(pt_model_backward_weight(m, 0));
        printf("layers %d..%d:\n", cases[c].first, cases[c].last);
        if (!pt_model_has_embedding(m)) {
            float *dx = to_host(pt_model_slot_dinput(m, 0), N * C);
            fd_check(&fc, "input", pt_model_slot_input(m, 0), dx, N * C, 24);
            free(dx);
        }
        float *g = to_host(pt_model_grads(m), pt_model_n_params(m));
        for (int i = 0; i < pt_model_n_tensors(m); i++) {
            const pt_param *p = pt_model_tensor(m, i);
            fd_check(&fc, p->name, pt_model_params(m) + p->offset, g + p->offset, p->numel, 12);
        }
        if (pt_model_has_head(m)) { /* a head-only chunk's twin is its own wte copy's (or lm_head's) gradient */
            const pt_param *hw = pt_model_find_tensor(m, pt_model_tied(one) ? "wte.weight" : "lm_head.weight");
            EXPECT(hw && pt_model_head_wte_grad(m) == pt_model_grads(m) + hw->offset);
        }
        free(g);
        pt_model_destroy(m);
    }
    free(R);
    free(xin);
}

/* ---- whole-model runs ---- */

/* Micro-batch j of (tok, tgt) forward in slot s; returns its loss. */
static double forward_micro_batch(pt_model *m, int s, int j, int B, int T, const int32_t *tok, const int32_t *tgt)
{
    h2d(pt_model_slot_tokens(m, s), tok + (size_t)j * B * T, (size_t)B * T * sizeof(int32_t));
    h2d(pt_model_slot_targets(m, s), tgt + (size_t)j * B * T, (size_t)B * T * sizeof(int32_t));
    EXPECT_OK(pt_model_forward(m, s));
    double ls = 0.0;
    int64_t nt = 0;
    EXPECT_OK(pt_model_slot_loss(m, s, &ls, &nt));
    return ls;
}

/* Runs one training step's forward and backward over `M` micro-batches of the global batch
 * (tok, tgt: M*B rows of T) on `m`; split: backward_input then backward_weight. */

static double run_step(pt_model *m, int M, int B, int T, const int32_t *tok, const int32_t *tgt, int split,
                       float scale)
{
    const int s = 0;
    double loss = 0.0;
    EXPECT_OK(pt_model_zero_grads(m));
    for (int j = 0; j < M; j++) {
        loss += forward_micro_batch(m, s, j, B, T, tok, tgt);
        if (split) {
            EXPECT_OK(pt_model_backward_input(m, s, scale));
            EXPECT_OK(pt_model_backward_weight(m, s));
        } else {
            EXPECT_OK(pt_model_backward(m, s, scale));
        }
    }
    EXPECT_OK(pt_model_reduce_tied_grads(m));
    return loss;
}

static int same_bits(pt_model *a, pt_model *b, const char *what)
{
    size_t n = pt_model_n_params(a);
    float *ga = to_host(pt_model_grads(a), n), *gb = to_host(pt_model_grads(b), n);
    int same = n == pt_model_n_params(b) && memcmp(ga, gb, n * sizeof(float)) == 0;
    if (!same) {
        fprintf(stderr, "%s: gradients differ\n", what);
        failures++;
    }
    free(ga);
    free(gb);
    return same;
}

/* The largest |gradient difference| between a and b (same parameter count), *mag a's largest |gradient|. */
static double grad_diff(pt_model *a, pt_model *b, double *mag)
{
    size_t n = pt_model_n_params(a);
    EXPECT(n == pt_model_n_params(b));
    float *ga = to_host(pt_model_grads(a), n), *gb = to_host(pt_model_grads(b), n);
    double err = 0;
    *mag = 0;
    for (size_t i = 0; i < n; i++) {
        *mag = fmax(*mag, fabs(ga[i]));
        err = fmax(err, fabs((double)ga[i] - gb[i]));
    }
    free(ga);
    free(gb);
    return err;
}

static void test_split_recompute_microbatch(const pt_model_config *cfg)
{
    const int B = 2, T = 8, M = 3;
    const size_t N = (size_t)B * T;
    int32_t tok[3 * 16], tgt[3 * 16];
    make_batch((int)(M * N), cfg->vocab_size, tok, tgt);
    int n_tok = 0;
    for (size_t i = 0; i < M * N; i++)
        n_tok += tgt[i] >= 0;
    const float scale = 1.0f / (float)n_tok;
    const int last = pt_model_n_layers(cfg) - 1;

    printf("%s:\n", cfg->name);
    pt_model *fused = make(cfg, 0, last, B, T, 1, 0), *split = make(cfg, 0, last, B, T, 1, 0);
    pt_model *rec = make(cfg, 0, last, B, T, 1, 1), *rec_split = make(cfg, 0, last, B, T, 1, 1);
    run_step(fused, M, B, T, tok, tgt, 0, scale);
    run_step(split, M, B, T, tok, tgt, 1, scale);
    run_step(rec, M, B, T, tok, tgt, 0, scale);
    run_step(rec_split, M, B, T, tok, tgt, 1, scale);
    printf("split == fused: %s\n", same_bits(fused, split, "split vs fused") ? "bit-identical" : "DIFFERENT");
    printf("recompute == keep: %s\n", same_bits(fused, rec, "recompute vs keep") ? "bit-identical" : "DIFFERENT");
    printf("recompute split == keep: %s\n",
           same_bits(fused, rec_split, "recompute split vs keep") ? "bit-identical" : "DIFFERENT");
    pt_model *fo = make(cfg, 0, last, B, T, 1, 2), *fo_rec = make(cfg, 0, last, B, T, 1, 3);
    run_step(fo, M, B, T, tok, tgt, 0, scale);
    run_step(fo_rec, M, B, T, tok, tgt, 0, scale);
    printf("fused_only == keep: %s\n", same_bits(fused, fo, "fused_only vs keep") ? "bit-identical" : "DIFFERENT");
    printf("fused_only recompute == keep: %s\n",
           same_bits(fused, fo_rec, "fused_only recompute vs keep") ? "bit-identical" : "DIFFERENT");
    EXPECT(pt_model_backward_input(fo, 0, scale) == PT_EINVAL && strstr(pt_last_error(), "fused_only"));
    EXPECT(pt_model_slot_bytes(rec) < pt_model_slot_bytes(fused));
    EXPECT(pt_model_slot_bytes(fo) < pt_model_slot_bytes(fused));
    EXPECT(pt_model_slot_bytes(fo_rec) < pt_model_slot_bytes(fo) && pt_model_slot_bytes(fo_rec) < pt_model_slot_bytes(rec));
    printf("slot bytes: %zu kept, %zu recompute, %zu fused_only, %zu both\n", pt_model_slot_bytes(fused),
           pt_model_slot_bytes(rec), pt_model_slot_bytes(fo), pt_model_slot_bytes(fo_rec));
    pt_model_destroy(fo_rec);
    pt_model_destroy(fo);

    /* M micro-batches of B == one batch of M*B */
    pt_model *big = make(cfg, 0, last, M * B, T, 1, 0);
    run_step(big, 1, M * B, T, tok, tgt, 0, scale);
    size_t n = pt_model_n_params(big);
    float *ga = to_host(pt_model_grads(big), n), *gb = to_host(pt_model_grads(fused), n);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < pt_model_n_tensors(big); i++) {
        const pt_param *p = pt_model_tensor(big, i);
        double mag = 0.0, err = 0.0;
        for (size_t k = 0; k < p->numel; k++) {
            mag = fmax(mag, fabs(ga[p->offset + k]));
            err = fmax(err, fabs((double)ga[p->offset + k] - gb[p->offset + k]));
        }
        if (mag > 0 && err / mag > worst) {
            worst = err / mag;
            worst_name = p->name;
        }
    }
    printf("%d micro-batches of %d vs one batch of %d: max rel diff %.3g (%s)\n", M, B, M * B, worst, worst_name);
    EXPECT(worst <= 1e-6);
    free(ga);
    free(gb);
    pt_model_destroy(big);
    pt_model_destroy(rec_split);
    pt_model_destroy(rec);
    pt_model_destroy(split);
    pt_model_destroy(fused);
}

/* Two micro-batches in two slots, their passes interleaved so that a model sharing one block area
 * between slots (recompute, the bf16 stash) rewrites it between a slot's passes: F0 F1, then
 * B1 B0 W1 W0 (split) or BW1 BW0 (fused). Returns the two losses' sum. */
static double run_two_slots(pt_model *m, int B, int T, const int32_t *tok, const int32_t *tgt, int split, float scale)
{
    double loss = 0.0;
    EXPECT_OK(pt_model_zero_grads(m));
    for (int s = 0; s < 2; s++)
        loss += forward_micro_batch(m, s, s, B, T, tok, tgt);
    if (split) {
        EXPECT_OK(pt_model_backward_input(m, 1, scale));
        EXPECT_OK(pt_model_backward_input(m, 0, scale));
        EXPECT_OK(pt_model_backward_weight(m, 1));
        EXPECT_OK(pt_model_backward_weight(m, 0));
    } else {
        EXPECT_OK(pt_model_backward(m, 1, scale));
        EXPECT_OK(pt_model_backward(m, 0, scale));
    }
    EXPECT_OK(pt_model_reduce_tied_grads(m));
    return loss;
}

/* The bf16 stash: a bf16 model keeping its blocks' rounded internals (and, with split backward,
 * its kept rounded gradients) packed to 2 bytes gives the bits (losses and gradients) of keeping
 * the floats (no_stash), as recomputing does, with the slots' passes interleaved, split and
 * fused, whole and a chunk of blocks alone; its slot is smaller than the fp32 model's by exactly
 * half those tensors' bytes. */
static void test_bf16_stash(const pt_model_config *cfg)
{
    const int B = 2, T = 8, N = B * T;
    int32_t tok[2 * 16], tgt[2 * 16];
    make_batch(2 * N, cfg->vocab_size, tok, tgt);
    const float scale = 1.0f / (float)(2 * N);
    const int last = pt_model_n_layers(cfg) - 1;
    for (int split = 0; split < 2; split++) {
        pt_model *fl = make_prec(cfg, 0, last, B, T, 2, 4, PT_PRECISION_BF16);
        pt_model *st = make_prec(cfg, 0, last, B, T, 2, 0, PT_PRECISION_BF16);
        pt_model *rc = make_prec(cfg, 0, last, B, T, 2, 1, PT_PRECISION_BF16);
        const double lf = run_two_slots(fl, B, T, tok, tgt, split, scale);
        const double ls = run_two_slots(st, B, T, tok, tgt, split, scale);
        const double lr = run_two_slots(rc, B, T, tok, tgt, split, scale);
        EXPECT(ls == lf && lr == lf);
        int same = same_bits(fl, st, "bf16 stash vs floats");
        same &= same_bits(fl, rc, "bf16 recompute (its gradients stashed) vs floats");
        printf("%s bf16 stash (%s) == floats == recompute: %s\n", cfg->name, split ? "split" : "fused",
               same && ls == lf && lr == lf ? "bit-identical" : "DIFFERENT");
        pt_model_destroy(rc);
        pt_model_destroy(st);
        pt_model_destroy(fl);
    }
    /* a chunk of blocks alone (its internals packed, its head-less output) */
    pt_model *st = make_prec(cfg, 1, 2, B, T, 2, 0, PT_PRECISION_BF16);
    pt_model *rc = make_prec(cfg, 1, 2, B, T, 2, 4, PT_PRECISION_BF16);
    const size_t NC = (size_t)N * cfg->n_embd;
    float *x = malloc(2 * NC * sizeof(float)), *dy = malloc(2 * NC * sizeof(float));
    for (size_t i = 0; i < 2 * NC; i++) {
        x[i] = pt_bf16_round(frand(-1.0f, 1.0f));
        dy[i] = pt_bf16_round(frand(-1e-2f, 1e-2f));
    }
    pt_model *ms[2] = { st, rc };
    for (int k = 0; k < 2; k++) {
        EXPECT_OK(pt_model_zero_grads(ms[k]));
        for (int s = 0; s < 2; s++) {
            h2d(pt_model_slot_input(ms[k], s), x + s * NC, NC * sizeof(float));
            EXPECT_OK(pt_model_forward(ms[k], s));
        }
        for (int s = 1; s >= 0; s--) {
            h2d(pt_model_slot_doutput(ms[k], s), dy + s * NC, NC * sizeof(float));
            EXPECT_OK(pt_model_backward_input(ms[k], s, scale));
        }
        for (int s = 1; s >= 0; s--)
            EXPECT_OK(pt_model_backward_weight(ms[k], s));
    }
    float *di0 = to_host(pt_model_slot_dinput(st, 0), NC), *di1 = to_host(pt_model_slot_dinput(rc, 0), NC);
    EXPECT(memcmp(di0, di1, NC * sizeof(float)) == 0);
    printf("%s bf16 stash, blocks alone == floats: %s\n", cfg->name,
           same_bits(st, rc, "bf16 stash chunk vs floats") ? "bit-identical" : "DIFFERENT");
    free(di0);
    free(di1);
    free(x);
    free(dy);
    pt_model_destroy(rc);
    pt_model_destroy(st);

    /* the slot: the rounded internals and kept gradients at 2 bytes instead of 4 (every buffer here
     * a multiple of the 256-byte alignment); fused_only keeps no gradients in the slot */
    pt_model *s16 = make_prec(cfg, 0, last, B, T, 1, 0, PT_PRECISION_BF16), *s32 = make(cfg, 0, last, B, T, 1, 0);
    pt_model *f16 = make_prec(cfg, 0, last, B, T, 1, 2, PT_PRECISION_BF16), *f32 = make(cfg, 0, last, B, T, 1, 2);
    const int C = cfg->n_embd, hs = C / cfg->n_head;
    const int W = C + 2 * pt_model_kv_heads(cfg) * hs;
    const int FW = cfg->arch == PT_ARCH_LLAMA ? 2 * cfg->intermediate_size : 4 * C;
    const int AW = cfg->arch == PT_ARCH_LLAMA ? cfg->intermediate_size : 4 * C;
    const size_t rounded = (size_t)N * (3 * C + C + W + FW + AW); /* ln1, res2, ln2; atty; qkv; fch; fch_gelu */
    const size_t grads = (size_t)N * (FW + C + W);                 /* dfch, dres2, dqkv */
    EXPECT(pt_model_slot_bytes(s32) - pt_model_slot_bytes(s16) == (size_t)cfg->n_layer * (rounded + grads) * 2);
    EXPECT(pt_model_slot_bytes(f32) - pt_model_slot_bytes(f16) == (size_t)cfg->n_layer * rounded * 2);
    printf("%s slot bytes: fp32 %zu, bf16 stash %zu; fused_only %zu, %zu\n", cfg->name, pt_model_slot_bytes(s32),
           pt_model_slot_bytes(s16), pt_model_slot_bytes(f32), pt_model_slot_bytes(f16));
    pt_model_destroy(f32);
    pt_model_destroy(f16);
    pt_model_destroy(s32);
    pt_model_destroy(s16);
}

/* A pipeline by hand: chunks [cuts[k], cuts[k+1]-1] of `cfg`, activations forward, gradients back. */
static void test_chunks(const pt_model_config *cfg, const int *cuts, int n_chunks, int split, int recompute)
{
    const int B = 2, T = 8, C = cfg->n_embd, M = 2;
    const size_t N = (size_t)B * T;
    const int last = pt_model_n_layers(cfg) - 1;
    int32_t tok[2 * 16], tgt[2 * 16];
    uint64_t save = rng_state;
    rng_state = 99;
    make_batch((int)(M * N), cfg->vocab_size, tok, tgt);
    rng_state = save;
    const float scale = 1.0f / (float)(M * N - 1); /* one target is ignored */
    pt_model *whole = make(cfg, 0, last, B, T, 1, 0);
    const double whole_loss = run_step(whole, M, B, T, tok, tgt, 0, scale);
    double chunk_loss = 0;
    int64_t chunk_n = 0;

    pt_model *ch[4] = { 0 };
    for (int k = 0; k < n_chunks; k++) {
        ch[k] = make(cfg, cuts[k], cuts[k + 1] - 1, B, T, M, recompute);
        /* initialisation depends only on (seed, name): every tensor equals the whole model's */
        float *pc = to_host(pt_model_params(ch[k]), pt_model_n_params(ch[k]));
        float *pw = to_host(pt_model_params(whole), pt_model_n_params(whole));
        for (int i = 0; i < pt_model_n_tensors(ch[k]); i++) {
            const pt_param *p = pt_model_tensor(ch[k], i), *q = pt_model_find_tensor(whole, p->name);
            EXPECT(q && q->numel == p->numel && memcmp(pc + p->offset, pw + q->offset, p->numel * 4) == 0);
        }
        free(pc);
        free(pw);
    }
    /* all forwards first (micro-batches in different slots), then all backwards, like GPipe */
    for (int j = 0; j < M; j++) {
        for (int k = 0; k < n_chunks; k++) {
            if (pt_model_has_embedding(ch[k]))
                h2d(pt_model_slot_tokens(ch[k], j), tok + j * N, N * sizeof(int32_t));
            else
                EXPECT_OK(be->memcpy_d2d(stream, pt_model_slot_input(ch[k], j), pt_model_slot_output(ch[k - 1], j),
                                         N * pt_model_boundary_width(cfg, cuts[k]) * sizeof(float)));
            if (pt_model_has_head_layers(ch[k]))
                h2d(pt_model_slot_targets(ch[k], j), tgt + j * N, N * sizeof(int32_t));
            EXPECT_OK(pt_model_forward(ch[k], j));
        }
        double ls = 0;
        int64_t nt = 0;
        EXPECT_OK(pt_model_slot_loss(ch[n_chunks - 1], j, &ls, &nt));
        chunk_loss += ls;
        chunk_n += nt;
    }
    for (int j = 0; j < M; j++) {
        for (int k = n_chunks - 1; k >= 0; k--) {
            if (!pt_model_has_head(ch[k]))
                EXPECT_OK(be->memcpy_d2d(stream, pt_model_slot_doutput(ch[k], j), pt_model_slot_dinput(ch[k + 1], j),
                                         N * pt_model_boundary_width(cfg, cuts[k + 1]) * sizeof(float)));
            if (split) {
                EXPECT_OK(pt_model_backward_input(ch[k], j, scale));
                EXPECT_OK(pt_model_backward_weight(ch[k], j));
            } else {
                EXPECT_OK(pt_model_backward(ch[k], j, scale));
            }
        }
    }
    EXPECT(chunk_n == (int64_t)(M * N - 1) && chunk_loss == whole_loss);
    /* the tied wte: embedding's gradient + the head's, as the whole model does; with a split head
     * each row has one head layer's share, the other chunks' twins hold exact zeros there. Untied:
     * the first chunk with head layers sums the lm_head copies of the others (their twins). */
    pt_model *emb = ch[0];
    const pt_param *we = pt_model_find_tensor(emb, "wte.weight");
    size_t nw = (size_t)cfg->vocab_padded * C;
    int k_head = -1;
    EXPECT_OK(pt_model_reduce_tied_grads(emb));
    for (int k = 0; k < n_chunks; k++) {
        if (!pt_model_has_head_layers(ch[k]))
            continue;
        if (pt_model_tied(cfg) && k > 0)
            EXPECT_OK(be->add(stream, pt_model_grads(emb) + we->offset, pt_model_grads(emb) + we->offset,
                              pt_model_head_wte_grad(ch[k]), nw));
        else if (!pt_model_tied(cfg) && k_head < 0)
            k_head = k;
        else if (!pt_model_tied(cfg))
            EXPECT_OK(be->add(stream, pt_model_head_wte_grad(ch[k_head]), pt_model_head_wte_grad(ch[k_head]),
                              pt_model_head_wte_grad(ch[k]), nw));
    }
    int same = 1;
    float *gw = to_host(pt_model_grads(whole), pt_model_n_params(whole));
    for (int k = 0; k < n_chunks; k++) {
        float *gc = to_host(pt_model_grads(ch[k]), pt_model_n_params(ch[k]));
        for (int i = 0; i < pt_model_n_tensors(ch[k]); i++) {
            const pt_param *p = pt_model_tensor(ch[k], i), *q = pt_model_find_tensor(whole, p->name);
            if (k > 0 && strcmp(p->name, "wte.weight") == 0)
                continue; /* the head's copy holds only the head's share */
            if (k != k_head && strcmp(p->name, "lm_head.weight") == 0)
                continue; /* untied: a further head chunk's copy holds only its shards' rows */
            if (!q || memcmp(gc + p->offset, gw + q->offset, p->numel * sizeof(float)) != 0) {
                fprintf(stderr, "chunked model: gradient of %s differs from the whole model's\n", p->name);
                same = 0;
            }
        }
        free(gc);
    }
    free(gw);
    EXPECT(same);
    printf("%s chunks", cfg->name);
    for (int k = 0; k <= n_chunks; k++)
        printf("%s%d", k ? "," : " ", cuts[k]);
    printf(" (%s%s%s): %s\n", split ? "split" : "fused", recompute & 1 ? ", recompute" : "",
           recompute & 2 ? ", fused_only" : "",
           same ? "bit-identical to the whole model" : "DIFFERENT");
    for (int k = 0; k < n_chunks; k++)
        pt_model_destroy(ch[k]);
    pt_model_destroy(whole);
}

/* The split head computes the same function: loss and gradients of tiny_split equal tiny's up to
 * rounding, and the greedy predictions are the same. */
static void test_head_split_matches(const pt_model_config *c1, const pt_model_config *c3)
{
    const int B = 2, T = 8, M = 2;
    const size_t N = (size_t)B * T;
    int32_t tok[2 * 16], tgt[2 * 16];
    make_batch((int)(M * N), c1->vocab_size, tok, tgt);
    const float scale = 1.0f / (float)(M * N - 1);
    pt_model *one = make(c1, 0, pt_model_n_layers(c1) - 1, B, T, 1, 0);
    pt_model *sp = make(c3, 0, pt_model_n_layers(c3) - 1, B, T, 1, 0);
    EXPECT(pt_model_n_params(one) == pt_model_n_params(sp));
    randomise_params(one);
    randomise_params(sp);
    double l1 = run_step(one, M, B, T, tok, tgt, 0, scale), l3 = run_step(sp, M, B, T, tok, tgt, 1, scale);
    double mag = 0, err = grad_diff(one, sp, &mag);
    printf("%s: head_split 3 vs 1: loss %.9g vs %.9g, max gradient difference %.3g (max |grad| %.3g)\n", c1->name, l3, l1, err, mag);
    EXPECT(fabs(l1 - l3) <= 1e-5 * fabs(l1));
    EXPECT(err <= 1e-5 * mag);
    int32_t p1[16], p3[16];
    h2d(pt_model_slot_tokens(one, 0), tok, sizeof(p1));
    h2d(pt_model_slot_targets(one, 0), tgt, sizeof(p1));
    h2d(pt_model_slot_tokens(sp, 0), tok, sizeof(p1));
    h2d(pt_model_slot_targets(sp, 0), tgt, sizeof(p1));
    EXPECT_OK(pt_model_forward(one, 0));
    EXPECT_OK(pt_model_forward(sp, 0));
    EXPECT_OK(pt_model_slot_predict(one, 0, p1));
    EXPECT_OK(pt_model_slot_predict(sp, 0, p3));
    int same = memcmp(p1, p3, sizeof(p1)) == 0, in_range = 1;
    EXPECT(same && in_range);
    EXPECT(pt_model_slot_probs(sp, 0) == NULL);
    float lg[16 * 64];
    EXPECT(pt_model_slot_logits(sp, 0, lg) == PT_EINVAL && strstr(pt_last_error(), "head_split"));
    pt_model_destroy(sp);
    pt_model_destroy(one);
}

/* ---- the chunked head (cfg head_chunk) ---- */

/* The head run 5 rows at a time (16 rows: chunks of 5, 5, 5 and 1) against the whole head:
 * losses and gradients equal up to rounding (the head's dW is a sum over the chunks);
 * pt_model_forward_train (the loss gradient made in the forward) gives the bits of forward then
 * backward (the backward runs the chunks again), fused and split, fp32 and bf16; the same
 * predictions and logits; no probabilities kept, so a smaller slot; a loss scale other than the
 * forward's, a split head or tensor parallelism with head_chunk refused. */
static void test_head_chunk(const pt_model_config *c1)
{
    const int B = 2, T = 8, M = 2;
    const size_t N = (size_t)B * T;
    pt_model_config hc = *c1;
    hc.head_chunk = 5;
    int32_t tok[2 * 16], tgt[2 * 16];
    make_batch((int)(M * N), c1->vocab_size, tok, tgt);
    const float scale = 1.0f / (float)(M * N - 1);
    const int last = pt_model_n_layers(c1) - 1;
    pt_model *one = make(c1, 0, last, B, T, 1, 0), *ch = make(&hc, 0, last, B, T, 1, 0);
    randomise_params(one);
    randomise_params(ch);
    double l1 = run_step(one, M, B, T, tok, tgt, 0, scale), lc = run_step(ch, M, B, T, tok, tgt, 1, scale);
    double mag = 0, err = grad_diff(one, ch, &mag);
    printf("%s: head in chunks of 5 rows vs whole: loss %.9g vs %.9g, max gradient difference %.3g (max |grad| "
           "%.3g)\n", c1->name, lc, l1, err, mag);
    EXPECT(fabs(l1 - lc) <= 1e-6 * fabs(l1));
    EXPECT(err <= 1e-5 * mag && err > 0.0); /* another order of the dW sum: close, and not the same bits */
    {   /* one chunk of all 16 rows: the whole head's products, so its bits */
        pt_model_config whole = *c1;
        whole.head_chunk = 16;
        pt_model *w = make(&whole, 0, last, B, T, 1, 0);
        randomise_params(w);
        EXPECT(run_step(w, M, B, T, tok, tgt, 0, scale) == l1);
        if (same_bits(one, w, "head_chunk 16 of 16 rows == head_chunk 0"))
            printf("%s: one chunk of all rows: the bits of the whole head\n", c1->name);
        pt_model_destroy(w);
    }
    /* forward_train == forward + backward, bit for bit: fused (1 slot, fused_only) and split */
    for (int prec = 0; prec < 2; prec++) {
        for (int split = 0; split < 2; split++) {
            pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = 2, .fused_only = !split,
                                .precision = prec ? PT_PRECISION_BF16 : PT_PRECISION_FP32 };
            pt_model *a = NULL, *b = NULL;
            EXPECT_OK(pt_model_create(&hc, 0, last, &o, be, stream, &a));
            EXPECT_OK(pt_model_create(&hc, 0, last, &o, be, stream, &b));
            if (!a || !b)
                return;
            randomise_params(a);
            randomise_params(b);
            EXPECT_OK(pt_model_zero_grads(a));
            EXPECT_OK(pt_model_zero_grads(b));
            double la = 0, lb = 0;
            for (int j = 0; j < M; j++) { /* both forwards first (as GPipe), then both backwards */
                for (int k = 0; k < 2; k++) {
                    pt_model *m = k ? b : a;
                    h2d(pt_model_slot_tokens(m, j), tok + (size_t)j * N, N * sizeof(int32_t));
                    h2d(pt_model_slot_targets(m, j), tgt + (size_t)j * N, N * sizeof(int32_t));
                }
                EXPECT_OK(pt_model_forward_train(a, j, scale));
                EXPECT_OK(pt_model_forward(b, j));
                double ls;
                int64_t nt;
                EXPECT_OK(pt_model_slot_loss(a, j, &ls, &nt));
                la += ls;
                EXPECT_OK(pt_model_slot_loss(b, j, &ls, &nt));
                lb += ls;
            }
            EXPECT(pt_model_backward(a, 0, scale * 2.0f) == PT_EINVAL && strstr(pt_last_error(), "loss scale"));
            for (int j = 0; j < M; j++) {
                for (int k = 0; k < 2; k++) {
                    pt_model *m = k ? b : a;
                    if (split) {
                        EXPECT_OK(pt_model_backward_input(m, j, scale));
                        EXPECT_OK(pt_model_backward_weight(m, j));
                    } else {
                        EXPECT_OK(pt_model_backward(m, j, scale));
                    }
                }
            }
            EXPECT_OK(pt_model_reduce_tied_grads(a));
            EXPECT_OK(pt_model_reduce_tied_grads(b));
            char what[160];
            snprintf(what, sizeof what, "%s head_chunk 5 %s %s: forward_train == forward + backward", c1->name,
                     prec ? "bf16" : "fp32", split ? "split" : "fused");
            EXPECT(la == lb);
            if (same_bits(a, b, what))
                printf("%s\n", what);
            pt_model_destroy(a);
            pt_model_destroy(b);
        }
    }
    /* predictions and logits as the whole head's; no probabilities; a smaller slot */
    h2d(pt_model_slot_tokens(one, 0), tok, N * sizeof(int32_t));
    h2d(pt_model_slot_targets(one, 0), tgt, N * sizeof(int32_t));
    h2d(pt_model_slot_tokens(ch, 0), tok, N * sizeof(int32_t));
    h2d(pt_model_slot_targets(ch, 0), tgt, N * sizeof(int32_t));
    EXPECT_OK(pt_model_forward(one, 0));
    EXPECT_OK(pt_model_forward(ch, 0));
    int32_t p1[16], pc[16];
    EXPECT_OK(pt_model_slot_predict(one, 0, p1));
    EXPECT_OK(pt_model_slot_predict(ch, 0, pc));
    EXPECT(memcmp(p1, pc, sizeof p1) == 0);
    EXPECT(pt_model_slot_probs(ch, 0) == NULL && pt_model_slot_probs(one, 0) != NULL);
    const size_t Vp = (size_t)c1->vocab_padded;
    float *lg1 = malloc(N * Vp * sizeof(float)), *lgc = malloc(N * Vp * sizeof(float));
    EXPECT_OK(pt_model_slot_logits(one, 0, lg1));
    EXPECT_OK(pt_model_slot_logits(ch, 0, lgc));
    EXPECT(memcmp(lg1, lgc, N * Vp * sizeof(float)) == 0); /* the same weights, the same 16-row products */
    free(lg1);
    free(lgc);
    EXPECT_OK(pt_model_slot_release(one, 0));
    EXPECT_OK(pt_model_slot_release(ch, 0));
    EXPECT(pt_model_slot_bytes(ch) + N * Vp * sizeof(float) - N * c1->n_embd * sizeof(float) <=
           pt_model_slot_bytes(one) + 2 * 256);
    pt_model_destroy(ch);
    pt_model_destroy(one);
    /* refused: with a split head; a negative row count */
    pt_model_config bad = hc;
    bad.head_split = 3;
    EXPECT(pt_model_config_validate(&bad) == PT_EINVAL && strstr(pt_last_error(), "head_split"));
    bad = hc;
    bad.head_chunk = -2;
    EXPECT(pt_model_config_validate(&bad) == PT_EINVAL && strstr(pt_last_error(), "head_chunk"));
    /* auto: about 256 MiB of logits a chunk, at least 1024 rows; off for a split head */
    pt_model_config big = *c1;
    big.vocab_size = big.vocab_padded = 50304;
    EXPECT(pt_model_head_chunk_auto(&big, 1) == 1280);
    EXPECT(pt_model_head_chunk_auto(&big, 2) == 0);
    big.vocab_size = big.vocab_padded = 128256;
    EXPECT(pt_model_head_chunk_auto(&big, 1) == 1024);
    big.head_split = 4;
    EXPECT(pt_model_head_chunk_auto(&big, 1) == 0);
    EXPECT(pt_model_head_chunk_auto(c1, 1) == 1 << 20); /* 64 rows of wte: 256 B a row */
}

/* ---- initialisation ---- */

/* GPT-2's scheme: N(0, 0.02), residual projections (attn.proj, mlp.proj, llama's mlp.down)
 * N(0, 0.02/sqrt(2 n_layer)), biases 0, layernorm and RMSNorm weights 1; a different seed gives
 * different weights. */
static void test_init(const pt_model_config *base)
{
    pt_model_config c = *base;
    c.n_embd = 64;
    pt_model *m = make(&c, 0, pt_model_n_layers(&c) - 1, 1, 4, 1, 0);
    float *p = to_host(pt_model_params(m), pt_model_n_params(m));
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *t = pt_model_tensor(m, i);
        double sum = 0, sq = 0;
        for (size_t k = 0; k < t->numel; k++) {
            sum += p[t->offset + k];
            sq += (double)p[t->offset + k] * p[t->offset + k];
        }
        double mean = sum / t->numel, sd = sqrt(sq / t->numel - mean * mean);
        int residual = strstr(t->name, "proj.weight") || strstr(t->name, "mlp.down.weight");
        double want_sd = residual ? 0.02 / sqrt(2.0 * c.n_layer) : 0.02;
        if (t->ndim == 2)
            EXPECT(fabs(mean) < 0.1 * want_sd && fabs(sd - want_sd) < 0.05 * want_sd);
        else if (strstr(t->name, "ln") && strstr(t->name, ".weight"))
            EXPECT(mean == 1.0 && sd == 0.0);
        else
            EXPECT(mean == 0.0 && sd == 0.0);
    }
    EXPECT_OK(pt_model_init_weights(m, 8));
    float *q = to_host(pt_model_params(m), pt_model_n_params(m));
    const pt_param *w = pt_model_find_tensor(m, "wte.weight");
    EXPECT(memcmp(p + w->offset, q + w->offset, w->numel * sizeof(float)) != 0);
    free(q);
    free(p);
    pt_model_destroy(m);
}

/* A llama chunk's tensors: names, shapes (issue 15's layout: q, k, v rows stacked; gate rows then
 * up rows), layers, weight decay on matrices only; no position table; lm_head.weight only untied;
 * the element count the config reports plus the padding rows of each vocabulary matrix. */
static void test_llama_tensors(const pt_model_config *c)
{
    const int last = pt_model_n_layers(c) - 1, C = c->n_embd, hs = C / c->n_head, H = c->intermediate_size;
    const int kv = pt_model_kv_heads(c), untied = !pt_model_tied(c);
    pt_model *m = make(c, 0, last, 2, 8, 1, 0);
    EXPECT(pt_model_n_tensors(m) == 1 + 6 * c->n_layer + 1 + untied);
    EXPECT(pt_model_n_params(m) == (size_t)pt_model_config_n_params(c) +
                                       (size_t)(1 + untied) * (size_t)(c->vocab_padded - c->vocab_size) * C);
    EXPECT(pt_model_find_tensor(m, "wpe.weight") == NULL && pt_model_find_tensor(m, "lnf.bias") == NULL);
    EXPECT((pt_model_find_tensor(m, "lm_head.weight") != NULL) == untied);
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        int rows = -1, cols = -1, layer = -1, b = -1, used = 0;
        const char *rest = sscanf(p->name, "blocks.%d.%n", &b, &used) == 1 && used > 0 ? p->name + used : "";
        if (strcmp(p->name, "wte.weight") == 0)
            rows = c->vocab_padded, cols = C, layer = 0;
        else if (strcmp(p->name, "lnf.weight") == 0)
            rows = C, layer = last;
        else if (strcmp(p->name, "lm_head.weight") == 0)
            rows = c->vocab_padded, cols = C, layer = last;
        else if (strcmp(rest, "ln1.weight") == 0 || strcmp(rest, "ln2.weight") == 0)
            rows = C, layer = b + 1;
        else if (strcmp(rest, "attn.qkv.weight") == 0)
            rows = (c->n_head + 2 * kv) * hs, cols = C, layer = b + 1;
        else if (strcmp(rest, "attn.proj.weight") == 0)
            rows = C, cols = C, layer = b + 1;
        else if (strcmp(rest, "mlp.gate_up.weight") == 0)
            rows = 2 * H, cols = C, layer = b + 1;
        else if (strcmp(rest, "mlp.down.weight") == 0)
            rows = C, cols = H, layer = b + 1;
        int ok = rows > 0 && p->ndim == (cols > 0 ? 2 : 1) && p->shape[0] == rows &&
                 (cols < 0 || p->shape[1] == cols) && p->layer == layer && p->decay == (p->ndim >= 2);
        if (!ok) {
            fprintf(stderr, "%s: tensor %s: ndim %d, shape %d x %d, layer %d, decay %d (expected %d x %d, layer %d)\n",
                    c->name, p->name, p->ndim, p->shape[0], p->ndim > 1 ? p->shape[1] : 1, p->layer, p->decay, rows,
                    cols, layer);
            failures++;
        }
    }
    pt_model_destroy(m);
    printf("%s: %d tensors, %zu parameters, layout as Hugging Face's\n", c->name, 1 + 6 * c->n_layer + 1 + untied,
           (size_t)pt_model_config_n_params(c));
}

/* ---- misuse, files ---- */

/* Copies safetensors file src to dst with `prefix` before every name, as BF16 when bf16. */
static void rewrite(const char *src, const char *dst, const char *prefix, int bf16)
{
    pt_safetensors *f = NULL;
    pt_safetensors_writer *w = NULL;
    EXPECT_OK(pt_safetensors_open(src, &f));
    EXPECT_OK(pt_safetensors_writer_create(dst, &w));
    if (!f || !w)
        exit(1);
    for (int i = 0; i < pt_safetensors_n_tensors(f); i++) {
        const pt_safetensors_tensor *t = pt_safetensors_tensor_at(f, i);
        char name[160];
        snprintf(name, sizeof(name), "%s%s", prefix, t->name);
        EXPECT_OK(pt_safetensors_writer_declare(w, name, bf16 ? PT_ST_BF16 : PT_ST_F32, t->ndim, t->shape));
    }
    for (int i = 0; i < pt_safetensors_n_tensors(f); i++) {
        const pt_safetensors_tensor *t = pt_safetensors_tensor_at(f, i);
        float *v = malloc(t->numel * sizeof(float));
        uint16_t *h = malloc(t->numel * sizeof(uint16_t));
        EXPECT_OK(pt_safetensors_read_f32(f, t, v, t->numel));
        for (size_t k = 0; k < t->numel; k++)
            h[k] = pt_f32_to_bf16(v[k]);
        EXPECT_OK(pt_safetensors_writer_write(w, bf16 ? (void *)h : (void *)v, t->numel * (bf16 ? 2 : 4)));
        free(h);
        free(v);
    }
    EXPECT_OK(pt_safetensors_writer_finish(w));
    pt_safetensors_writer_destroy(w);
    pt_safetensors_close(f);
}

/* Slot bytes as models/model.c's header claims: with recompute and fused_only a slot keeps x at
 * each boundary (one (B,T,C) buffer a block, plus the chunk's output) and the two external
 * gradients share the input's and the output's buffers, so a middle chunk of k blocks holds
 * exactly (k+1) B*T*C floats; with recompute and split backward, 12 B*T*C a block (x, dx and the
 * ten kept between backward_input and backward_weight) plus the input and its gradient. The shared areas are allocated once per
 * chunk: one more slot costs exactly pt_model_slot_bytes. B*T*C*4 = 2048 and B*T*4 = 64 bytes,
 * so each (B,T,C) buffer is a whole number of 256-byte alignment units and each (B,T) one is one. */
static void test_slot_bytes(void)
{
    const pt_model_config c4 = { .name = "slot-bytes", .n_layer = 4, .n_head = 2, .n_embd = 32, .vocab_size = 50,
                                 .vocab_padded = 64, .max_seq_len = 16 };
    const int B = 2, T = 8;
    const size_t nc = (size_t)B * T * c4.n_embd * sizeof(float), n = 256;
    for (int k = 1; k <= 4; k++) { /* a middle chunk: blocks 1..k, neither embedding nor head */
        pt_model *fr = make(&c4, 1, k, B, T, 1, 3), *r = make(&c4, 1, k, B, T, 1, 1);
        pt_model *f = make(&c4, 1, k, B, T, 1, 2), *none = make(&c4, 1, k, B, T, 1, 0);
        EXPECT(pt_model_slot_bytes(fr) == (size_t)(k + 1) * nc); /* x at k+1 boundaries */
        EXPECT(pt_model_slot_bytes(r) == (size_t)(12 * k + 2) * nc);
        EXPECT(pt_model_slot_dinput(fr, 0) == pt_model_slot_input(fr, 0) &&
               pt_model_slot_doutput(fr, 0) == pt_model_slot_output(fr, 0));
        EXPECT(pt_model_slot_dinput(r, 0) != pt_model_slot_input(r, 0) &&
               pt_model_slot_doutput(r, 0) != pt_model_slot_output(r, 0));
        /* without recompute both keep the same block internals on top */
        EXPECT(pt_model_slot_bytes(f) - pt_model_slot_bytes(fr) == pt_model_slot_bytes(none) - pt_model_slot_bytes(r));
        EXPECT(pt_model_slot_bytes(f) < pt_model_slot_bytes(none));
        if (k == 4)
            printf("slot bytes of 4 blocks (B*T*C*4 = %zu): %zu recompute+fused_only, %zu recompute, %zu fused_only, "
                   "%zu neither\n", nc, pt_model_slot_bytes(fr), pt_model_slot_bytes(r), pt_model_slot_bytes(f),
                   pt_model_slot_bytes(none));
        pt_model_destroy(none);
        pt_model_destroy(f);
        pt_model_destroy(r);
        pt_model_destroy(fr);
    }
    /* the whole model, recompute + fused_only: token ids, targets, x at the 5 block and head inputs,
     * the head's layernorm output, mean, rstd, probabilities (B*T x 64) and losses; no gradients */
    pt_model *w = make(&c4, 0, 5, B, T, 1, 3);
    EXPECT(pt_model_slot_bytes(w) == 6 * nc + 5 * n + (size_t)B * T * 64 * sizeof(float));
    pt_model_destroy(w);
    /* a head-only chunk keeps its input gradient apart (its layernorm reads x while writing dx) */
    pt_model *h = make(&c4, 5, 5, B, T, 1, 3);
    EXPECT(pt_model_slot_dinput(h, 0) != pt_model_slot_input(h, 0));
    EXPECT(pt_model_slot_bytes(h) == 3 * nc + 4 * n + (size_t)B * T * 64 * sizeof(float));
    pt_model_destroy(h);
    /* shared areas once per chunk: two more slots cost two slot sizes, in every mode */
    for (int mode = 0; mode < 4; mode++) {
        size_t before = pt_backend_bytes_in_use();
        pt_model *one = make(&c4, 0, 5, B, T, 1, mode);
        size_t bytes_one = pt_backend_bytes_in_use() - before;
        before = pt_backend_bytes_in_use();
        pt_model *three = make(&c4, 0, 5, B, T, 3, mode);
        size_t bytes_three = pt_backend_bytes_in_use() - before;
        EXPECT(bytes_three - bytes_one == 2 * pt_model_slot_bytes(one));
        pt_model_destroy(three);
        pt_model_destroy(one);
    }
}

static void test_errors_and_files(void)
{
    const int last = pt_model_n_layers(&tiny) - 1;
    pt_model_opts o = { .micro_batch = 2, .seq_len = 8, .n_slots = 1 };
    pt_model *m = NULL;
    EXPECT(pt_model_create(&tiny, 2, 1, &o, be, stream, &m) == PT_EINVAL && !m);
    EXPECT(pt_model_create(&tiny, 0, last + 1, &o, be, stream, &m) == PT_EINVAL && !m);
    o.seq_len = 17;
    EXPECT(pt_model_create(&tiny, 0, last, &o, be, stream, &m) == PT_EINVAL && strstr(pt_last_error(), "max_seq_len"));
    o.seq_len = 8;
    o.n_slots = 0;
    EXPECT(pt_model_create(&tiny, 0, last, &o, be, stream, &m) == PT_EINVAL && strstr(pt_last_error(), "n_slots"));
    o.n_slots = 1;
    pt_model_config wide = tiny;
    wide.max_seq_len = 32;
    pt_model_opts huge = { .micro_batch = 1 << 20, .seq_len = 32, .n_slots = 1 };
    EXPECT(pt_model_create(&wide, 0, last, &huge, be, stream, &m) == PT_EINVAL && strstr(pt_last_error(), "tokens"));
    pt_model_config bad = tiny;
    bad.n_head = 3;
    EXPECT(pt_model_create(&bad, 0, last, &o, be, stream, &m) == PT_EINVAL && strstr(pt_last_error(), "n_head"));

    m = make(&tiny, 0, last, 2, 8, 1, 0);
    EXPECT(pt_model_n_tensors(m) == 2 + 12 * tiny.n_layer + 2);
    EXPECT(pt_model_n_params(m) == (size_t)pt_model_config_n_params(&tiny) +
                                       (size_t)(tiny.vocab_padded - tiny.vocab_size) * tiny.n_embd);
    const pt_param *qkv = pt_model_find_tensor(m, "blocks.1.attn.qkv.weight");
    EXPECT(qkv && qkv->shape[0] == 3 * tiny.n_embd && qkv->shape[1] == tiny.n_embd && qkv->decay && qkv->layer == 2);
    EXPECT(pt_model_find_tensor(m, "blocks.2.ln1.weight") == NULL);
    EXPECT(pt_model_backward(m, 0, 1.0f) == PT_EINVAL && strstr(pt_last_error(), "forward"));
    EXPECT(pt_model_backward_weight(m, 0) == PT_EINVAL && strstr(pt_last_error(), "backward_input"));
    EXPECT(pt_model_forward(m, 1) == PT_EINVAL && strstr(pt_last_error(), "slot 1"));
    int32_t tok[16], tgt[16];
    make_batch(16, tiny.vocab_size, tok, tgt);
    h2d(pt_model_slot_tokens(m, 0), tok, sizeof(tok));
    h2d(pt_model_slot_targets(m, 0), tgt, sizeof(tgt));
    EXPECT_OK(pt_model_forward(m, 0));
    EXPECT(pt_model_forward(m, 0) == PT_EINVAL && strstr(pt_last_error(), "slot_release"));
    /* the probabilities of each row sum to one over the padded vocabulary */
    float *probs = to_host(pt_model_slot_probs(m, 0), 16 * (size_t)tiny.vocab_padded);
    double row = 0;
    for (int v = 0; v < tiny.vocab_padded; v++)
        row += probs[v];
    EXPECT(fabs(row - 1.0) < 1e-5);
    free(probs);
    EXPECT_OK(pt_model_slot_release(m, 0));
    EXPECT_OK(pt_model_forward(m, 0));
    EXPECT(pt_model_backward(m, 0, NAN) == PT_EINVAL);
    EXPECT_OK(pt_model_backward(m, 0, 1.0f / 15));

    /* export, then import into a two-chunk split: the same weights, bit for bit */
    randomise_params(m);
    EXPECT_OK(pt_model_export_hf_safetensors(&m, 1, "layers_export.safetensors"));
    pt_model *a = make(&tiny, 0, 1, 2, 8, 1, 0), *b = make(&tiny, 2, last, 2, 8, 1, 0);
    EXPECT_OK(pt_model_load_hf_safetensors(a, "layers_export.safetensors"));
    EXPECT_OK(pt_model_load_hf_safetensors(b, "layers_export.safetensors"));
    float *pw = to_host(pt_model_params(m), pt_model_n_params(m));
    pt_model *parts[2] = { a, b };
    for (int k = 0; k < 2; k++) {
        float *pc = to_host(pt_model_params(parts[k]), pt_model_n_params(parts[k]));
        for (int i = 0; i < pt_model_n_tensors(parts[k]); i++) {
            const pt_param *p = pt_model_tensor(parts[k], i), *q = pt_model_find_tensor(m, p->name);
            EXPECT(q && memcmp(pc + p->offset, pw + q->offset, p->numel * sizeof(float)) == 0);
        }
        free(pc);
    }
    free(pw);
    pt_safetensors *f = NULL;
    EXPECT_OK(pt_safetensors_open("layers_export.safetensors", &f));
    if (f) {
        const pt_safetensors_tensor *t = pt_safetensors_find(f, "h.1.mlp.c_fc.weight"); /* [in, out] */
        EXPECT(t && t->shape[0] == tiny.n_embd && t->shape[1] == 4 * tiny.n_embd);
        t = pt_safetensors_find(f, "wte.weight");
        EXPECT(t && t->shape[0] == tiny.vocab_padded);
        EXPECT(pt_safetensors_metadata(f, "n_layer") && strcmp(pt_safetensors_metadata(f, "n_layer"), "2") == 0);
        EXPECT(pt_safetensors_n_tensors(f) == 2 + 12 * tiny.n_layer + 2); /* the tied wte once */
        pt_safetensors_close(f);
    }
    /* names prefixed "transformer." (whole GPT2LMHeadModel files) and BF16 weights load too */
    rewrite("layers_export.safetensors", "layers_bf16.safetensors", "transformer.", 1);
    pt_model *c16 = make(&tiny, 0, last, 2, 8, 1, 0);
    EXPECT_OK(pt_model_load_hf_safetensors(c16, "layers_bf16.safetensors"));
    float *p16 = to_host(pt_model_params(c16), pt_model_n_params(c16));
    float *p32 = to_host(pt_model_params(m), pt_model_n_params(m));
    int bf16_ok = 1;
    for (size_t k = 0; k < pt_model_n_params(m); k++)
        bf16_ok &= p16[k] == pt_bf16_to_f32(pt_f32_to_bf16(p32[k]));
    EXPECT(bf16_ok);
    free(p16);
    free(p32);
    pt_model_destroy(c16);
    remove("layers_bf16.safetensors");
    /* the two chunks export the same file content (each tensor once) */
    EXPECT_OK(pt_model_export_hf_safetensors(parts, 2, "layers_export2.safetensors"));
    EXPECT(same_file("layers_export.safetensors", "layers_export2.safetensors"));
    /* a chunk set missing a layer, and files that do not fit, are refused */
    EXPECT(pt_model_export_hf_safetensors(&a, 1, "layers_bad.safetensors") == PT_EINVAL &&
           strstr(pt_last_error(), "layer 2"));
    pt_model_config other = tiny;
    other.n_embd = 64;
    pt_model *o2 = make(&other, 0, 0, 2, 8, 1, 0);
    EXPECT(pt_model_load_hf_safetensors(o2, "layers_export.safetensors") == PT_EFORMAT &&
           strstr(pt_last_error(), "wte.weight"));
    pt_model_destroy(o2);
    other = tiny;
    other.n_layer = 3;
    o2 = make(&other, 3, 3, 2, 8, 1, 0);
    EXPECT(pt_model_load_hf_safetensors(o2, "layers_export.safetensors") == PT_EFORMAT &&
           strstr(pt_last_error(), "h.2.ln_1.weight"));
    pt_model_destroy(o2);
    other = tiny;
    other.vocab_padded = tiny.vocab_size; /* the file has 64 rows, this model 50 */
    o2 = make(&other, 0, 0, 2, 8, 1, 0);
    EXPECT(pt_model_load_hf_safetensors(o2, "layers_export.safetensors") == PT_EFORMAT);
    pt_model_destroy(o2);
    EXPECT(pt_model_load_hf_safetensors(a, "no-such-file.safetensors") == PT_EIO);
    char hf[64];
    int tr = 0;
    EXPECT(pt_model_hf_name("blocks.11.attn.proj.weight", hf, sizeof(hf), &tr) == PT_OK &&
           strcmp(hf, "h.11.attn.c_proj.weight") == 0 && tr == 1);
    EXPECT(pt_model_hf_name("lnf.bias", hf, sizeof(hf), &tr) == PT_OK && strcmp(hf, "ln_f.bias") == 0 && tr == 0);
    EXPECT(pt_model_hf_name("blocks.1.attn.bias", hf, sizeof(hf), &tr) == PT_EINVAL);
    remove("layers_export.safetensors");
    remove("layers_export2.safetensors");
    pt_model_destroy(b);
    pt_model_destroy(a);
    pt_model_destroy(m);
}

int main(void)
{
    if (pt_backend_get("cpu", &be) != PT_OK ||
        be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 2 }, &stream) != PT_OK) {
        fprintf(stderr, "cpu backend: %s\n", pt_last_error());
        return 1;
    }
    test_init(&tiny);
    test_init(&llama_tiny);
    test_llama_tensors(&llama_tiny);
    test_llama_tensors(&llama_tied);
    test_finite_differences(&tiny, &tiny_split);
    test_finite_differences(&llama_tiny, &llama_split);
    test_finite_differences(&llama_tied, NULL);
    test_split_recompute_microbatch(&tiny);
    test_split_recompute_microbatch(&llama_tiny);
    test_split_recompute_microbatch(&llama_tied);
    test_bf16_stash(&tiny);
    test_bf16_stash(&llama_tiny);
    test_bf16_stash(&llama_tied);
    const int L1 = tiny.n_layer + 1;
    const int three[4] = { 0, 2, 3, L1 + 1 }, two[3] = { 0, 1, L1 + 1 }, head_alone[3] = { 0, L1, L1 + 1 };
    test_chunks(&tiny, three, 3, 0, 0);
    test_chunks(&tiny, three, 3, 1, 1);
    test_chunks(&tiny, two, 2, 1, 0);
    test_chunks(&tiny, head_alone, 2, 0, 1);
    test_chunks(&tiny, three, 3, 0, 3); /* fused_only + recompute */
    test_chunks(&tiny, two, 2, 0, 2);   /* fused_only: 3 inner boundaries, both shared dx buffers */
    test_chunks(&tiny, three, 3, 0, 2); /* fused_only: a one-block middle chunk, gradients in place */
    test_chunks(&tiny, head_alone, 2, 0, 3);
    /* the split head cut between chunks: after shard 0 (lnf), between shards, shards with blocks */
    const int S = pt_model_n_layers(&tiny_split);
    const int sp_a[4] = { 0, L1 + 1, L1 + 2, S }, sp_b[3] = { 0, L1 + 2, S }, sp_c[4] = { 0, 2, L1 + 1, S };
    test_chunks(&tiny_split, sp_a, 3, 0, 0);
    test_chunks(&tiny_split, sp_a, 3, 1, 0);
    test_chunks(&tiny_split, sp_b, 2, 0, 2); /* fused_only */
    test_chunks(&tiny_split, sp_c, 3, 1, 1);
    test_chunks(&tiny_split, sp_c, 3, 0, 3);
    /* Llama, untied and tied (the layer count is the same as tiny's) */
    test_chunks(&llama_tiny, three, 3, 0, 0);
    test_chunks(&llama_tiny, three, 3, 1, 1);
    test_chunks(&llama_tiny, head_alone, 2, 0, 3);
    test_chunks(&llama_tied, two, 2, 1, 0);
    test_chunks(&llama_tied, head_alone, 2, 0, 1);
    test_chunks(&llama_tied, three, 3, 0, 2);
    test_chunks(&llama_split, sp_a, 3, 1, 0);
    test_chunks(&llama_split, sp_b, 2, 0, 2);
    test_chunks(&llama_split, sp_c, 3, 1, 1);
    test_head_split_matches(&tiny, &tiny_split);
    test_head_split_matches(&llama_tiny, &llama_split);
    test_head_chunk(&tiny);
    test_head_chunk(&llama_tiny);
    {   /* the chunked head under the model-level checks: finite differences, split / recompute /
         * micro-batches, and cut into pipeline chunks (its own, and with blocks) */
        pt_model_config tiny_hc = tiny, llama_hc = llama_tied;
        tiny_hc.head_chunk = llama_hc.head_chunk = 5;
        test_finite_differences(&tiny_hc, NULL);
        test_finite_differences(&llama_hc, NULL);
        test_split_recompute_microbatch(&tiny_hc);
        test_chunks(&tiny_hc, three, 3, 0, 0);
        test_chunks(&tiny_hc, head_alone, 2, 1, 1);
        test_chunks(&tiny_hc, head_alone, 2, 0, 3);
        test_chunks(&llama_hc, two, 2, 0, 2);
    }
    test_slot_bytes();
    test_errors_and_files();
    be->stream_destroy(stream);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
