/* tests/models/test_generate.c — generation with the KV cache and the sampler (models/generate.c).
 *
 *   test_generate            the unit cases (random weights, CPU), for gpt2-tiny, llama-tiny
 *                            (untied LM head, 2 kv heads of 4) and a tied llama with one kv head
 *                            and Llama 3.1 rope scaling:
 *     greedy generation equals the argmax of the full forward pass at every position (one prompt
 *     and a batch of three), also with the head split into shards; a prompt fed in pieces equals
 *     it fed at once; the model cut into 2 and 3 stages (generators chunk to chunk, the hidden
 *     state passed on) gives the whole model's logits bit for bit; the sampler (seeded draws
 *     repeat, top-k 1 and a tiny top-p are greedy, top-k keeps the k best, frequencies follow the
 *     softmax); refusals.
 *   test_generate reference FILE
 *     a pipetrain-generate-1 file (tests/models/reference/gpt2-greedy.safetensors, made by
 *     make_generate_ref.py; reference/llama-greedy.safetensors, made by
 *     make_llama_generate_ref.py, metadata model "llama"): PyTorch's greedy ids are reproduced
 *     exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/generate.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"
#include "test_common.h"

static const pt_backend *be;
static pt_stream *stream;

/* Random weights with about unit-variance activations: pt_model_init_weights' N(0, 0.02) matrices
 * rescaled to N(0, 1/in) (a function of the tensor's shape, so every chunk of a config gets the
 * same weights). At 0.02 the attention is nearly uniform and positions hardly matter (a decode
 * step rotated at the wrong position changed 1 greedy id of 40); at this scale they steer the
 * logits. The parameters are host memory on the CPU backend. */
static void init_sharp(pt_model *m, uint64_t seed)
{
    EXPECT_OK(pt_model_init_weights(m, seed));
    float *w = pt_model_params(m);
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        if (p->ndim != 2)
            continue;
        const float f = 1.0f / (0.02f * sqrtf((float)p->shape[1]));
        for (size_t k = 0; k < p->numel; k++)
            w[p->offset + k] *= f;
    }
}

static pt_model *make_model(const pt_model_config *cfg, int B, int T, uint64_t seed)
{
    pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = 1, .fused_only = 1 };
    pt_model *m = NULL;
    EXPECT_OK(pt_model_create(cfg, 0, pt_model_n_layers(cfg) - 1, &o, be, stream, &m));
    if (m)
        init_sharp(m, seed);
    return m;
}

/* Generates n_new greedy tokens for B prompts of length P with the KV cache, then runs the full
 * forward over prompt + generated and checks each generated token against the argmax of the
 * position before it. A mismatch is accepted only where the two logits are within 1e-5 (a tie to
 * rounding); the count of such near-ties is printed. */
static void check_greedy_vs_forward(pt_model_config cfg, int B, int P, int n_new, uint64_t seed, int32_t *ids_out)
{
    const int T = P + n_new, V = cfg.vocab_size, Vp = cfg.vocab_padded;
    pt_model *gm = make_model(&cfg, 1, 1, seed);
    pt_model_config full_cfg = cfg;
    full_cfg.head_split = 0;
    pt_model *fm = make_model(&full_cfg, B, T, seed);
    if (!gm || !fm)
        goto out;
    pt_generator *g = NULL;
    pt_sampler *s = NULL;
    EXPECT_OK(pt_generator_create(gm, B, T, &g));
    EXPECT_OK(pt_sampler_create(&(pt_sample_opts){ .temperature = 0 }, V, &s));
    int32_t *prompt = malloc((size_t)B * P * 4), *gen = malloc((size_t)B * n_new * 4), *seq = malloc((size_t)B * T * 4);
    int32_t *tgt = malloc((size_t)B * T * 4), *pred = malloc((size_t)B * T * 4);
    float *logits = malloc((size_t)B * T * Vp * 4);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            prompt[b * P + t] = (int32_t)((b * 37 + t * 11 + 3) % V);
    pt_generate_stats st;
    if (g && s)
        EXPECT_OK(pt_generate(g, s, prompt, P, n_new, gen, NULL, NULL, &st));
    EXPECT(st.n_new == n_new && st.n_prompt == P);
    for (int b = 0; b < B; b++) {
        memcpy(seq + b * T, prompt + b * P, (size_t)P * 4);
        memcpy(seq + b * T + P, gen + b * n_new, (size_t)n_new * 4);
    }
    for (int i = 0; i < B * T; i++)
        tgt[i] = 0;
    EXPECT_OK(be->memcpy_h2d(stream, pt_model_slot_tokens(fm, 0), seq, (size_t)B * T * 4));
    EXPECT_OK(be->memcpy_h2d(stream, pt_model_slot_targets(fm, 0), tgt, (size_t)B * T * 4));
    EXPECT_OK(pt_model_forward(fm, 0));
    EXPECT_OK(pt_model_slot_predict(fm, 0, pred));
    EXPECT_OK(pt_model_slot_logits(fm, 0, logits));
    int exact = 0, near = 0, bad = 0;
    for (int b = 0; b < B; b++)
        for (int t = P - 1; t < T - 1; t++) {
            int32_t want = seq[b * T + t + 1], got = pred[b * T + t];
            const float *row = logits + ((size_t)b * T + t) * Vp;
            if (want == got)
                exact++;
            else if (fabsf(row[want] - row[got]) <= 1e-5f)
                near++;
            else {
                if (bad++ < 5)
                    fprintf(stderr, "  seq %d position %d: generated %d (logit %.7f) but the forward's argmax is %d "
                                    "(logit %.7f)\n", b, t, want, row[want], got, row[got]);
            }
        }
    EXPECT(bad == 0);
    /* the logits themselves: the prompt, then the generated tokens one at a time (attention_decode),
     * against the full forward's rows P-1 .. T-2 */
    double worst = 0, scale = 1;
    float *step = malloc((size_t)B * V * 4);
    int32_t *col = malloc((size_t)B * 4);
    pt_generator_reset(g);
    for (int t = P - 1; g && t < T - 1; t++) {
        if (t == P - 1) {
            EXPECT_OK(pt_generator_forward(g, prompt, NULL, P, step));
        } else {
            for (int b = 0; b < B; b++)
                col[b] = seq[b * T + t];
            EXPECT_OK(pt_generator_forward(g, col, NULL, 1, step));
        }
        for (int b = 0; b < B; b++)
            for (int v = 0; v < V; v++) {
                const double f = logits[((size_t)b * T + t) * Vp + v];
                worst = fmax(worst, fabs(f - step[(size_t)b * V + v]));
                scale = fmax(scale, fabs(f));
            }
    }
    EXPECT(worst <= 1e-5 * scale);
    printf("greedy vs forward (B=%d, P=%d, %d new, head_split %d): %d exact, %d near-ties; max |logit diff| %.3g "
           "(logits up to %.3g)\n", B, P, n_new, cfg.head_split, exact, near, worst, scale);
    free(step), free(col);
    if (ids_out)
        memcpy(ids_out, gen, (size_t)B * n_new * 4);
    free(prompt), free(gen), free(seq), free(tgt), free(pred), free(logits);
    pt_sampler_destroy(s);
    pt_generator_destroy(g);
out:
    pt_model_destroy(gm);
    pt_model_destroy(fm);
}

/* Feeding a prompt in pieces (the decode kernel over several new rows) equals feeding it at once. */
static void check_pieces(const pt_model_config *cfg)
{
    pt_model *m = make_model(cfg, 1, 1, 3);
    pt_generator *g = NULL;
    EXPECT_OK(pt_generator_create(m, 2, 16, &g));
    if (!g) {
        pt_model_destroy(m);
        return;
    }
    const int V = cfg->vocab_size;
    int32_t ids[2 * 9];
    for (int i = 0; i < 18; i++)
        ids[i] = (i * 29 + 5) % V;
    float *a = malloc((size_t)2 * V * 4), *b = malloc((size_t)2 * V * 4);
    EXPECT_OK(pt_generator_forward(g, ids, NULL, 9, a));
    EXPECT(pt_generator_pos(g) == 9);
    pt_generator_reset(g);
    int32_t p1[2 * 4], p2[2 * 5];
    for (int s = 0; s < 2; s++) {
        memcpy(p1 + s * 4, ids + s * 9, 16);
        memcpy(p2 + s * 5, ids + s * 9 + 4, 20);
    }
    EXPECT_OK(pt_generator_forward(g, p1, NULL, 4, b));
    EXPECT_OK(pt_generator_forward(g, p2, NULL, 5, b));
    double worst = 0;
    for (int i = 0; i < 2 * V; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    printf("prompt in pieces vs at once: max |logit diff| %.3g\n", worst);
    EXPECT(worst < 1e-4);
    /* refusals: past the length, an id outside the vocabulary */
    int32_t one[2] = { 1, 2 };
    float *junk = malloc((size_t)2 * V * 4);
    for (int i = 0; i < 7; i++)
        EXPECT_OK(pt_generator_forward(g, one, NULL, 1, junk));
    EXPECT(pt_generator_forward(g, one, NULL, 1, junk) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "length 16") != NULL);
    pt_generator_reset(g);
    int32_t badid[2] = { 0, V };
    EXPECT(pt_generator_forward(g, badid, NULL, 1, junk) == PT_EINVAL);
    free(a), free(b), free(junk);
    pt_generator_destroy(g);
    pt_model_destroy(m);
}

static void check_sampler(void)
{
    enum { V = 50, DRAWS = 200 };
    float lg[V];
    for (int v = 0; v < V; v++)
        lg[v] = sinf((float)v * 1.7f);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (lg[v] > lg[best])
            best = v;
    pt_sampler *a = NULL, *b = NULL, *c = NULL;
    pt_sample_opts o = { .temperature = 1.0f, .seed = 42 };
    EXPECT_OK(pt_sampler_create(&o, V, &a));
    EXPECT_OK(pt_sampler_create(&o, V, &b));
    o.seed = 43;
    EXPECT_OK(pt_sampler_create(&o, V, &c));
    int same = 1, differ = 0;
    for (int i = 0; i < DRAWS; i++) {
        int32_t x = pt_sampler_next(a, lg), y = pt_sampler_next(b, lg), z = pt_sampler_next(c, lg);
        same &= x == y;
        differ += x != z;
        EXPECT(x >= 0 && x < V);
    }
    EXPECT(same);
    EXPECT(differ > 0);
    pt_sampler_destroy(a), pt_sampler_destroy(b), pt_sampler_destroy(c);

    /* top-k 1 and a tiny top-p are greedy; ties go to the lower id */
    pt_sample_opts greedy_like[] = { { .temperature = 1.5f, .top_k = 1, .seed = 1 },
                                     { .temperature = 1.5f, .top_p = 1e-6f, .seed = 1 },
                                     { .temperature = 0.0f, .seed = 1 } };
    for (int k = 0; k < 3; k++) {
        pt_sampler *s = NULL;
        EXPECT_OK(pt_sampler_create(&greedy_like[k], V, &s));
        for (int i = 0; s && i < 20; i++)
            EXPECT(pt_sampler_next(s, lg) == best);
        float tie[4] = { 0.5f, 2.0f, 2.0f, 1.0f };
        pt_sampler *t = NULL;
        EXPECT_OK(pt_sampler_create(&greedy_like[k], 4, &t));
        if (t)
            EXPECT(pt_sampler_next(t, tie) == 1);
        pt_sampler_destroy(s);
        pt_sampler_destroy(t);
    }

    /* top-k 3 draws only the three best; top-p 0.5 of a 0.4/0.3/0.2/0.1 row only the first two */
    pt_sampler *k3 = NULL, *p5 = NULL, *f = NULL;
    EXPECT_OK(pt_sampler_create(&(pt_sample_opts){ .temperature = 1.0f, .top_k = 3, .seed = 5 }, V, &k3));
    int order[V];
    for (int v = 0; v < V; v++)
        order[v] = v;
    for (int i = 0; i < 3; i++) /* the three best ids by selection */
        for (int j = i + 1; j < V; j++)
            if (lg[order[j]] > lg[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int hit[3] = { 0 };
    for (int i = 0; k3 && i < 3000; i++) {
        int32_t x = pt_sampler_next(k3, lg);
        int in = 0;
        for (int j = 0; j < 3; j++)
            if (x == order[j]) {
                in = 1;
                hit[j]++;
            }
        EXPECT(in);
    }
    EXPECT(hit[0] > 0 && hit[1] > 0 && hit[2] > 0);
    float four[4] = { logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f) };
    EXPECT_OK(pt_sampler_create(&(pt_sample_opts){ .temperature = 1.0f, .top_p = 0.5f, .seed = 9 }, 4, &p5));
    EXPECT_OK(pt_sampler_create(&(pt_sample_opts){ .temperature = 1.0f, .seed = 9 }, 4, &f));
    int cnt[4] = { 0 }, fcnt[4] = { 0 };
    for (int i = 0; p5 && f && i < 20000; i++) {
        cnt[pt_sampler_next(p5, four)]++;
        fcnt[pt_sampler_next(f, four)]++;
    }
    EXPECT(cnt[0] == 0 && cnt[2] == 0 && cnt[1] > 0 && cnt[3] > 0);
    /* plain sampling follows the softmax: 0.1 0.4 0.2 0.3 within 0.015 over 20000 draws */
    const double want[4] = { 0.1, 0.4, 0.2, 0.3 };
    for (int v = 0; v < 4; v++)
        EXPECT(fabs(fcnt[v] / 20000.0 - want[v]) < 0.015);
    /* top-p 0.5 keeps 0.4 and 0.3: 4/7 and 3/7 */
    EXPECT(fabs(cnt[1] / 20000.0 - 4.0 / 7) < 0.015);
    pt_sampler_destroy(k3), pt_sampler_destroy(p5), pt_sampler_destroy(f);

    /* bad options */
    pt_sampler *bad = NULL;
    EXPECT(pt_sampler_create(&(pt_sample_opts){ .temperature = -1 }, V, &bad) == PT_EINVAL);
    EXPECT(pt_sampler_create(&(pt_sample_opts){ .temperature = 1, .top_k = -2 }, V, &bad) == PT_EINVAL);
    EXPECT(pt_sampler_create(&(pt_sample_opts){ .temperature = 1, .top_p = -0.5f }, V, &bad) == PT_EINVAL);
    EXPECT(bad == NULL);
}

/* pt_generate_fn: stop at the id *ctx (as sample does at the end-of-text token). */
static int stop_at(void *ctx, const int32_t *ids, int step)
{
    (void)step;
    return ids[0] == *(const int32_t *)ctx;
}

/* Seeded generation repeats; a callback's stop ends it after that token (the ids before are the
 * unstopped run's); a too-long request is refused naming the limit. */
static void check_generate_refusals(const pt_model_config *cfg)
{
    pt_model *m = make_model(cfg, 1, 1, 11);
    pt_generator *g = NULL;
    pt_sampler *s1 = NULL, *s2 = NULL;
    EXPECT_OK(pt_generator_create(m, 1, cfg->max_seq_len, &g));
    pt_sample_opts o = { .temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .seed = 1234 };
    EXPECT_OK(pt_sampler_create(&o, cfg->vocab_size, &s1));
    EXPECT_OK(pt_sampler_create(&o, cfg->vocab_size, &s2));
    if (!g || !s1 || !s2)
        goto out;
    int32_t prompt[3] = { 10, 20, 30 }, a[32], b[32];
    EXPECT_OK(pt_generate(g, s1, prompt, 3, 32, a, NULL, NULL, NULL));
    EXPECT_OK(pt_generate(g, s2, prompt, 3, 32, b, NULL, NULL, NULL));
    EXPECT(memcmp(a, b, sizeof a) == 0);
    {
        int32_t stop = a[5], c[32];
        int j = 0;
        while (a[j] != stop)
            j++;
        pt_sampler *s3 = NULL;
        pt_generate_stats gs = { 0 };
        EXPECT_OK(pt_sampler_create(&o, cfg->vocab_size, &s3));
        if (s3) {
            EXPECT_OK(pt_generate(g, s3, prompt, 3, 32, c, stop_at, &stop, &gs));
            EXPECT(gs.n_new == j + 1);
            EXPECT(memcmp(a, c, (size_t)(j + 1) * sizeof(int32_t)) == 0);
        }
        pt_sampler_destroy(s3);
    }
    int32_t big[8];
    EXPECT(pt_generate(g, s1, prompt, 3, cfg->max_seq_len, big, NULL, NULL, NULL) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "context") != NULL);
    EXPECT(pt_generate(g, s1, prompt, 0, 1, big, NULL, NULL, NULL) == PT_EINVAL);
    EXPECT(pt_generator_create(m, 1, cfg->max_seq_len + 1, &(pt_generator *){ NULL }) == PT_EINVAL);
out:
    pt_sampler_destroy(s1), pt_sampler_destroy(s2);
    pt_generator_destroy(g);
    pt_model_destroy(m);
}

/* The model cut into P contiguous chunks of near-equal layer counts (as sample --stages cuts it),
 * one generator per chunk, the hidden state handed chunk to chunk: a prompt and greedy decode steps
 * give the whole model's logits bit for bit (same kernels on the same shapes). */
static void check_stages(const pt_model_config *cfg, int P)
{
    enum { PROMPT = 7, STEPS = 6 };
    const int n_layers = pt_model_n_layers(cfg), V = cfg->vocab_size, C = cfg->n_embd;
    pt_model *whole = make_model(cfg, 1, 1, 21), *chunk[4] = { NULL };
    pt_generator *gw = NULL, *gc[4] = { NULL };
    float *lw = malloc((size_t)V * 4), *lc = malloc((size_t)V * 4);
    float *h[2] = { malloc((size_t)PROMPT * C * 4), malloc((size_t)PROMPT * C * 4) };
    if (whole)
        EXPECT_OK(pt_generator_create(whole, 1, PROMPT + STEPS, &gw));
    for (int r = 0; r < P; r++) {
        const int base = n_layers / P, rem = n_layers % P, first = r * base + (r < rem ? r : rem);
        const int last = first + base + (r < rem) - 1;
        pt_model_opts o = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .fused_only = 1 };
        EXPECT_OK(pt_model_create(cfg, first, last, &o, be, stream, &chunk[r]));
        if (chunk[r])
            init_sharp(chunk[r], 21); /* the whole model's weights: init depends on the name and shape */
        if (chunk[r])
            EXPECT_OK(pt_generator_create(chunk[r], 1, PROMPT + STEPS, &gc[r]));
    }
    int ok = gw != NULL;
    for (int r = 0; r < P; r++)
        ok &= gc[r] != NULL;
    int32_t ids[PROMPT];
    for (int t = 0; t < PROMPT; t++)
        ids[t] = (t * 53 + 9) % V;
    int equal = 1;
    for (int k = 0; ok && k <= STEPS; k++) {
        const int n = k == 0 ? PROMPT : 1;
        EXPECT_OK(pt_generator_forward(gw, ids, NULL, n, lw));
        for (int r = 0; r < P; r++)
            EXPECT_OK(pt_generator_forward(gc[r], r == 0 ? ids : NULL, r == 0 ? NULL : h[(r - 1) % 2], n,
                                           r == P - 1 ? lc : h[r % 2]));
        equal &= memcmp(lw, lc, (size_t)V * 4) == 0;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lw[v] > lw[best])
                best = v;
        ids[0] = best;
    }
    EXPECT(ok && equal);
    printf("%s in %d stages: the logits of a %d-token prompt and %d decode steps equal the whole model's: %s\n",
           cfg->name, P, PROMPT, STEPS, ok && equal ? "yes" : "NO");
    for (int r = 0; r < P; r++) {
        pt_generator_destroy(gc[r]);
        pt_model_destroy(chunk[r]);
    }
    pt_generator_destroy(gw);
    pt_model_destroy(whole);
    free(lw), free(lc), free(h[0]), free(h[1]);
}

/* Every unit case on one config; prints which. */
static void run_cases(const pt_model_config *cfg)
{
    printf("-- %s (%s, %d heads, %d kv heads, %s head)\n", cfg->name, pt_model_arch_name(cfg->arch), cfg->n_head,
           pt_model_kv_heads(cfg), pt_model_tied(cfg) ? "tied" : "untied");
    pt_model *probe = make_model(cfg, 1, 1, 1); /* a backend without the kernels fails here, once */
    if (!probe)
        return;
    pt_model_destroy(probe);
    int32_t one[40], split[40];
    check_greedy_vs_forward(*cfg, 1, 5, 40, 7, one);
    check_greedy_vs_forward(*cfg, 3, 6, 24, 8, NULL);
    pt_model_config hs = *cfg;
    EXPECT_OK(pt_model_config_set_head_split(&hs, 2));
    check_greedy_vs_forward(hs, 1, 5, 40, 7, split);
    EXPECT(memcmp(one, split, sizeof one) == 0);
    check_pieces(cfg);
    check_stages(cfg, 2);
    check_stages(cfg, 3);
    check_generate_refusals(cfg);
}

/* ---- the PyTorch reference ---- */

static int meta_int(pt_safetensors *f, const char *key)
{
    const char *v = pt_safetensors_metadata(f, key);
    return v ? atoi(v) : 0;
}

static double meta_double(pt_safetensors *f, const char *key)
{
    const char *v = pt_safetensors_metadata(f, key);
    return v ? strtod(v, NULL) : 0.0;
}

static int run_reference(const char *path)
{
    pt_safetensors *f = NULL;
    if (pt_safetensors_open(path, &f) != PT_OK) {
        fprintf(stderr, "FAIL: cannot read the greedy reference %s (%s); make it with "
                        "/usr/bin/python3 tests/models/make_generate_ref.py --out %s\n", path, pt_last_error(), path);
        return 1;
    }
    const char *fmt = pt_safetensors_metadata(f, "format");
    const pt_safetensors_tensor *tp = pt_safetensors_find(f, "prompt_ids"),
                                *te = pt_safetensors_find(f, "expected.greedy_ids");
    if (!fmt || strcmp(fmt, "pipetrain-generate-1") != 0 || !tp || !te) {
        fprintf(stderr, "FAIL: %s is not a pipetrain-generate-1 file (format, prompt_ids, expected.greedy_ids)\n", path);
        pt_safetensors_close(f);
        return 1;
    }
    pt_model_config cfg = { .n_layer = meta_int(f, "n_layer"), .n_head = meta_int(f, "n_head"),
                            .n_embd = meta_int(f, "n_embd"), .vocab_size = meta_int(f, "vocab_size"),
                            .max_seq_len = meta_int(f, "n_ctx") };
    cfg.vocab_padded = cfg.vocab_size;
    const char *arch = pt_safetensors_metadata(f, "model");
    const int llama = arch && strcmp(arch, "llama") == 0;
    if (llama) { /* make_llama_generate_ref.py: the llama keys, the tensors in pipetrain's names */
        cfg.arch = PT_ARCH_LLAMA;
        cfg.n_kv_head = meta_int(f, "n_kv_head");
        cfg.intermediate_size = meta_int(f, "intermediate_size");
        cfg.rms_norm_eps = (float)meta_double(f, "rms_norm_eps");
        cfg.rope_theta = meta_double(f, "rope_theta");
        const char *tie = pt_safetensors_metadata(f, "tie_word_embeddings");
        cfg.tie_word_embeddings = tie && strcmp(tie, "true") == 0;
        cfg.rope_scaling_factor = meta_double(f, "rope_scaling_factor");
        cfg.rope_low_freq_factor = meta_double(f, "rope_scaling_low_freq_factor");
        cfg.rope_high_freq_factor = meta_double(f, "rope_scaling_high_freq_factor");
        cfg.rope_original_max_pos = meta_int(f, "rope_scaling_original_max_position_embeddings");
    }
    snprintf(cfg.name, sizeof cfg.name, "greedy-reference");
    const int P = (int)tp->numel, N = (int)te->numel;
    int32_t *prompt = malloc((size_t)P * 4), *want = malloc((size_t)N * 4), *got = malloc((size_t)N * 4);
    EXPECT_OK(pt_model_config_validate(&cfg));
    EXPECT_OK(pt_safetensors_read_i32(f, tp, prompt, (size_t)P));
    EXPECT_OK(pt_safetensors_read_i32(f, te, want, (size_t)N));
    pt_model *m = NULL;
    pt_generator *g = NULL;
    pt_sampler *s = NULL;
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .fused_only = 1 };
    EXPECT_OK(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, be, stream, &m));
    if (m && llama) /* every tensor by its pipetrain name (the CPU backend's parameters are host memory) */
        for (int i = 0; i < pt_model_n_tensors(m); i++) {
            const pt_param *p = pt_model_tensor(m, i);
            const pt_safetensors_tensor *t = pt_safetensors_find(f, p->name);
            EXPECT(t && t->numel == p->numel);
            if (t && t->numel == p->numel)
                EXPECT_OK(pt_safetensors_read_f32(f, t, pt_model_params(m) + p->offset, p->numel));
        }
    else if (m)
        EXPECT_OK(pt_model_load_hf_safetensors(m, path));
    pt_safetensors_close(f);
    if (m)
        EXPECT_OK(pt_generator_create(m, 1, cfg.max_seq_len, &g));
    EXPECT_OK(pt_sampler_create(&(pt_sample_opts){ .temperature = 0 }, cfg.vocab_size, &s));
    if (g && s && failures == 0) {
        EXPECT_OK(pt_generate(g, s, prompt, P, N, got, NULL, NULL, NULL));
        int first_bad = -1;
        for (int i = 0; i < N && first_bad < 0; i++)
            if (got[i] != want[i])
                first_bad = i;
        if (first_bad >= 0)
            fprintf(stderr, "FAIL: %s: token %d of %d is %d, PyTorch's greedy loop chose %d\n", path, first_bad, N,
                    got[first_bad], want[first_bad]);
        EXPECT(first_bad < 0);
        if (first_bad < 0)
            printf("%s: the %d greedy ids after a %d-token prompt equal PyTorch's\n", path, N, P);
    }
    pt_sampler_destroy(s);
    pt_generator_destroy(g);
    pt_model_destroy(m);
    free(prompt), free(want), free(got);
    return failures ? 1 : 0;
}

static int print_file_part(const char *what, const char *path, const char *key)
{
    pt_safetensors *f = NULL;
    if (pt_safetensors_open(path, &f) != PT_OK) {
        fprintf(stderr, "%s\n", pt_last_error());
        return 1;
    }
    int rc = 1;
    if (strcmp(what, "meta") == 0) {
        const char *v = pt_safetensors_metadata(f, key);
        if (v) {
            printf("%s", v);
            rc = 0;
        }
    } else {
        const pt_safetensors_tensor *t = pt_safetensors_find(f, key);
        int32_t *ids = t ? malloc(t->numel * sizeof(int32_t)) : NULL;
        if (ids && pt_safetensors_read_i32(f, t, ids, t->numel) == PT_OK) {
            for (size_t i = 0; i < t->numel; i++)
                printf("%s%d", i ? " " : "", ids[i]);
            printf("\n");
            rc = 0;
        }
        free(ids);
    }
    if (rc)
        fprintf(stderr, "%s has no %s %s\n", path, what, key);
    pt_safetensors_close(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (pt_backend_get("cpu", &be) != PT_OK || be->stream_create(&(pt_stream_opts){ .n_threads = 2 }, &stream) != PT_OK) {
        fprintf(stderr, "no CPU backend: %s\n", pt_last_error());
        return 1;
    }
    int rc;
    if (argc == 4 && (strcmp(argv[1], "ids") == 0 || strcmp(argv[1], "meta") == 0)) {
        /* for the CLI test: an int tensor as space-separated ids, or a metadata string */
        rc = print_file_part(argv[1], argv[2], argv[3]);
    } else if (argc == 3 && strcmp(argv[1], "reference") == 0) {
        rc = run_reference(argv[2]);
    } else {
        pt_model_config cfg, llama, tied;
        EXPECT_OK(pt_model_config_load("gpt2-tiny", &cfg));
        run_cases(&cfg);
        check_sampler();
        EXPECT_OK(pt_model_config_load("llama-tiny", &llama));
        run_cases(&llama);
        /* tied, one kv head for all four query heads, Llama 3.1 rope scaling (over 64 positions, so
         * the low frequencies are scaled within the prompts) */
        tied = llama;
        snprintf(tied.name, sizeof tied.name, "llama-tiny-tied-mqa");
        tied.n_kv_head = 1;
        tied.tie_word_embeddings = 1;
        tied.rope_scaling_factor = 8.0;
        tied.rope_low_freq_factor = 1.0;
        tied.rope_high_freq_factor = 4.0;
        tied.rope_original_max_pos = 64;
        EXPECT_OK(pt_model_config_validate(&tied));
        run_cases(&tied);
        rc = failures ? 1 : 0;
        printf("%s: %d failure(s)\n", rc ? "FAIL" : "ok", failures);
    }
    be->stream_destroy(stream);
    return rc;
}
