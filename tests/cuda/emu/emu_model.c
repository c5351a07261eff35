/* tests/cuda/emu/emu_model.c — the whole model (models/) on the CUDA backend's kernels, run by the
 * emulator, against the CPU backend: `test_cuda_emu_model [MODEL]`, gpt2-tiny by default (4 blocks,
 * C=128, 4 heads, vocab 256) or llama-tiny (4 blocks, C=128, 4 query / 2 kv heads, SwiGLU 352,
 * untied head: RMSNorm, RoPE, grouped-query attention, no position table) on B=2, T=40
 * with one ignored target. The same weights (same seed) give the same loss (relative 1e-5) and
 * the same gradients (per tensor, relative L2 error 1e-4), fused and split backward. This is the
 * composition check that the per-kernel test cannot make: slot buffers, scratch sizes, aliasing
 * and the model's calling sequence on the CUDA entry points. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"

extern const pt_backend pt_backend_cuda_emu;

static int fail(const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
    return 1;
}

typedef struct side {
    const pt_backend *be;
    pt_stream *s;
    pt_model *m;
} side;

static int side_create(side *x, const pt_backend *be, const pt_model_config *cfg, const pt_model_opts *o)
{
    x->be = be;
    if (be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &x->s) != PT_OK ||
        pt_model_create(cfg, 0, cfg->n_layer + 1, o, be, x->s, &x->m) != PT_OK ||
        pt_model_init_weights(x->m, 42) != PT_OK)
        return fail(be->name);
    return 0;
}

/* forward + backward of one micro-batch; split = backward_input then backward_weight */
static int step(side *x, const int32_t *tok, const int32_t *tgt, size_t n, float scale, int split, double *loss)
{
    int64_t nt = 0;
    if (pt_model_zero_grads(x->m) != PT_OK ||
        x->be->memcpy_h2d(x->s, pt_model_slot_tokens(x->m, 0), tok, n * sizeof *tok) != PT_OK ||
        x->be->memcpy_h2d(x->s, pt_model_slot_targets(x->m, 0), tgt, n * sizeof *tgt) != PT_OK ||
        pt_model_forward(x->m, 0) != PT_OK || pt_model_slot_loss(x->m, 0, loss, &nt) != PT_OK)
        return fail("forward");
    pt_status st = split ? pt_model_backward_input(x->m, 0, scale) : pt_model_backward(x->m, 0, scale);
    if (st == PT_OK && split)
        st = pt_model_backward_weight(x->m, 0);
    if (st == PT_OK)
        st = x->be->stream_sync(x->s);
    return st == PT_OK ? 0 : fail("backward");
}

static int compare_grads(side *c, side *g, const char *what)
{
    size_t np = pt_model_n_params(c->m);
    float *gc = malloc(np * sizeof *gc), *gg = malloc(np * sizeof *gg);
    int bad = 0;
    if (!gc || !gg || c->be->memcpy_d2h(c->s, gc, pt_model_grads(c->m), np * 4) != PT_OK ||
        g->be->memcpy_d2h(g->s, gg, pt_model_grads(g->m), np * 4) != PT_OK) {
        free(gc);
        free(gg);
        return fail("grads to host");
    }
    double worst = 0;
    for (int i = 0; i < pt_model_n_tensors(c->m); i++) {
        const pt_param *p = pt_model_tensor(c->m, i);
        double num = 0, den = 0;
        for (size_t k = 0; k < p->numel; k++) {
            double d = (double)gg[p->offset + k] - gc[p->offset + k];
            num += d * d;
            den += (double)gc[p->offset + k] * gc[p->offset + k];
        }
        double rel = sqrt(num) / (sqrt(den) + 1e-30);
        if (!(rel <= 1e-4) && den > 0) {
            fprintf(stderr, "FAIL %s: gradient of %s differs: relative L2 error %.3g\n", what, p->name, rel);
            bad = 1;
        }
        if (rel > worst && den > 0)
            worst = rel;
    }
    if (!bad)
        printf("ok   %s: %d gradient tensors, worst relative L2 error %.3g\n", what, pt_model_n_tensors(c->m),
               worst);
    free(gc);
    free(gg);
    return bad;
}

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "gpt2-tiny";
    pt_model_config cfg;
    if (pt_model_config_load(model, &cfg) != PT_OK)
        return fail(model);
    printf("model %s\n", model);
    const int B = 2, T = 40;
    pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = 1, .recompute = 0, .fused_only = 0 };
    const pt_backend *cpu;
    if (pt_backend_get("cpu", &cpu) != PT_OK)
        return fail("cpu backend");
    side c = { 0 }, g = { 0 };
    if (side_create(&c, cpu, &cfg, &o) || side_create(&g, &pt_backend_cuda_emu, &cfg, &o))
        return 1;
    size_t n = (size_t)B * T;
    int32_t *tok = malloc(n * 4), *tgt = malloc(n * 4);
    uint64_t r = 7;
    for (size_t i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((r >> 33) % (uint64_t)cfg.vocab_size);
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tgt[i] = (int32_t)((r >> 33) % (uint64_t)cfg.vocab_size);
    }
    tgt[3] = -1;
    int bad = 0;
    for (int split = 0; split < 2 && !bad; split++) {
        double lc = 0, lg = 0;
        if (step(&c, tok, tgt, n, 1.0f / (float)(n - 1), split, &lc) ||
            step(&g, tok, tgt, n, 1.0f / (float)(n - 1), split, &lg)) {
            bad = 1;
            break;
        }
        if (!(fabs(lc - lg) <= 1e-5 * fabs(lc))) {
            fprintf(stderr, "FAIL loss: emulated CUDA %.9g, CPU %.9g\n", lg, lc);
            bad = 1;
        } else {
            printf("ok   loss sum %.9g (CPU %.9g, relative difference %.2g)\n", lg, lc, fabs(lc - lg) / fabs(lc));
        }
        bad |= compare_grads(&c, &g, split ? "split backward (input, then weight)" : "fused backward");
    }
    pt_model_destroy(g.m);
    pt_model_destroy(c.m);
    g.be->stream_destroy(g.s);
    c.be->stream_destroy(c.s);
    free(tok);
    free(tgt);
    return bad;
}
