/* tests/cuda/emu/emu_generate.c — generation with the KV cache (models/generate.c) on the CUDA
 * backend's kernels, run by the emulator, against the CPU backend: `test_cuda_emu_generate [MODEL]`
 * (gpt2-tiny by default; llama-tiny: RoPE at the cached positions, grouped-query decode) with the
 * same random weights, batches of 1 and 2 prompts, a prompt fed whole (attention_forward) and in pieces
 * (attention_decode over several rows), then 30 greedy tokens (one-row attention_decode). The
 * greedy ids must be equal and the last logits within 1e-4. This checks the generator's calling
 * sequence on the CUDA entry points (device pointers offset into wpe and the cache, the per-sequence
 * cache copies of a batch), which the per-kernel test cannot. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/generate.h"
#include "pipetrain/model.h"

extern const pt_backend pt_backend_cuda_emu;

typedef struct side {
    const pt_backend *be;
    pt_stream *s;
    pt_model *m;
    pt_generator *g;
} side;

static int side_create(side *x, const pt_backend *be, const pt_model_config *cfg, int B, int T)
{
    x->be = be;
    pt_model_opts o = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .fused_only = 1 };
    if (be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &x->s) != PT_OK ||
        pt_model_create(cfg, 0, pt_model_n_layers(cfg) - 1, &o, be, x->s, &x->m) != PT_OK ||
        pt_model_init_weights(x->m, 42) != PT_OK || pt_generator_create(x->m, B, T, &x->g) != PT_OK) {
        fprintf(stderr, "FAIL %s: %s\n", be->name, pt_last_error());
        return 1;
    }
    return 0;
}

static void side_destroy(side *x)
{
    pt_generator_destroy(x->g);
    pt_model_destroy(x->m);
    if (x->s)
        x->be->stream_destroy(x->s);
}

static int run(const pt_model_config *cfg, int B, int pieces)
{
    enum { P = 9, N = 30 };
    const int V = cfg->vocab_size;
    side c = { 0 }, g = { 0 };
    int bad = side_create(&c, &pt_backend_cpu, cfg, B, P + N) || side_create(&g, &pt_backend_cuda_emu, cfg, B, P + N);
    int32_t prompt[2 * P], ids_c[2 * N], ids_g[2 * N], tok_c[2], tok_g[2];
    float *lc = malloc((size_t)B * V * 4), *lg = malloc((size_t)B * V * 4);
    for (int i = 0; i < B * P; i++)
        prompt[i] = (i * 53 + 7) % V;
    double worst = 0;
    for (int k = 0; !bad && k < N; k++) {
        if (k == 0 && pieces) { /* rows 0..3, then 4..8 of every sequence */
            int32_t a[2 * 4], b[2 * 5];
            for (int s = 0; s < B; s++) {
                memcpy(a + s * 4, prompt + s * P, 4 * 4);
                memcpy(b + s * 5, prompt + s * P + 4, 5 * 4);
            }
            bad |= pt_generator_forward(c.g, a, NULL, 4, lc) != PT_OK || pt_generator_forward(g.g, a, NULL, 4, lg) != PT_OK;
            bad |= pt_generator_forward(c.g, b, NULL, 5, lc) != PT_OK || pt_generator_forward(g.g, b, NULL, 5, lg) != PT_OK;
        } else if (k == 0) {
            bad |= pt_generator_forward(c.g, prompt, NULL, P, lc) != PT_OK ||
                   pt_generator_forward(g.g, prompt, NULL, P, lg) != PT_OK;
        } else {
            bad |= pt_generator_forward(c.g, tok_c, NULL, 1, lc) != PT_OK ||
                   pt_generator_forward(g.g, tok_g, NULL, 1, lg) != PT_OK;
        }
        if (bad) {
            fprintf(stderr, "FAIL forward %d: %s\n", k, pt_last_error());
            break;
        }
        for (int s = 0; s < B; s++) {
            int bc = 0, bg = 0;
            for (int v = 0; v < V; v++) {
                worst = fmax(worst, fabs((double)lc[s * V + v] - lg[s * V + v]));
                bc = lc[s * V + v] > lc[s * V + bc] ? v : bc;
                bg = lg[s * V + v] > lg[s * V + bg] ? v : bg;
            }
            tok_c[s] = ids_c[s * N + k] = bc;
            tok_g[s] = ids_g[s * N + k] = bg;
        }
    }
    if (!bad && memcmp(ids_c, ids_g, (size_t)B * N * 4) != 0) {
        fprintf(stderr, "FAIL B=%d%s: greedy ids differ between the CPU and the emulated CUDA backend\n", B,
                pieces ? " (prompt in pieces)" : "");
        bad = 1;
    }
    if (!bad && worst > 1e-4) {
        fprintf(stderr, "FAIL B=%d: logits differ by %.3g (> 1e-4)\n", B, worst);
        bad = 1;
    }
    if (!bad)
        printf("ok   generation B=%d%s: %d greedy ids equal, max |logit diff| %.3g\n", B,
               pieces ? " (prompt in pieces)" : "", N, worst);
    free(lc);
    free(lg);
    side_destroy(&c);
    side_destroy(&g);
    return bad;
}

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "gpt2-tiny";
    pt_model_config cfg;
    printf("model %s\n", model);
    if (pt_model_config_load(model, &cfg) != PT_OK) {
        fprintf(stderr, "FAIL config: %s\n", pt_last_error());
        return 1;
    }
    int bad = run(&cfg, 1, 0) + run(&cfg, 2, 0) + run(&cfg, 2, 1);
    printf("%s\n", bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
