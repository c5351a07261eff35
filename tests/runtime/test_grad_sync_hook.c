/* tests/runtime/test_grad_sync_hook.c — pt_model_set_grad_hook (model.h), what the overlapped
 * gradient reduction relies on: for chunks of gpt2-tiny, llama-tiny (untied head) and a model with
 * the head in 3 vocabulary shards (split-tiny.json), cut so that every kind of chunk occurs
 * (embedding + blocks, blocks, blocks + head, head only, head shards, the whole model), and for
 * the fused backward and backward_input + backward_weight:
 *   - the ranges one backward pass reports never overlap and cover every element of the flat
 *     gradients, except a chunk's separate head twin (not in the flat buffer);
 *   - a reported range is final: its gradients do not change during the rest of the pass;
 *   - layers come in backward order (non-increasing layer index).
 * One process, CPU backend. Exits 0 on success, 1 on a failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
            return 1;                                                             \
        }                                                                         \
    } while (0)
#define OK(expr) CHECK((expr) == PT_OK, "%s: %s", #expr, pt_last_error())

typedef struct rec {
    pt_model *m;
    const pt_backend *be;
    pt_stream *st;
    unsigned char *seen; /* [n_params] */
    float *snap;         /* [n_params]: each reported range's values when reported */
    size_t n;
    int last_layer, calls, bad;
    char why[256];
} rec;

static pt_status hook(void *ctx, int layer, size_t lo, size_t hi)
{
    rec *r = ctx;
    r->calls++;
    if (hi > r->n || lo >= hi || layer > r->last_layer) {
        snprintf(r->why, sizeof r->why, "layer %d range [%zu, %zu) of %zu after layer %d", layer, lo, hi, r->n,
                 r->last_layer);
        r->bad = 1;
        return PT_OK;
    }
    r->last_layer = layer;
    for (size_t i = lo; i < hi; i++) {
        if (r->seen[i]) {
            snprintf(r->why, sizeof r->why, "element %zu reported twice (layer %d)", i, layer);
            r->bad = 1;
            return PT_OK;
        }
        r->seen[i] = 1;
    }
    PT_CHECK(r->be->stream_sync(r->st));
    return r->be->memcpy_d2h(r->st, r->snap + lo, pt_model_grads(r->m) + lo, (hi - lo) * sizeof(float));
}

/* One chunk [first, last] of cfg: forward + backward of 2 micro-batches in both modes. */
static int run_chunk(const pt_model_config *cfg, int first, int last, const pt_backend *be, pt_stream *st)
{
    const int B = 2, T = 8, C = cfg->n_embd;
    pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = 1 };
    pt_model *m;
    OK(pt_model_create(cfg, first, last, &o, be, st, &m));
    OK(pt_model_init_weights(m, 7));
    size_t n = pt_model_n_params(m), N = (size_t)B * T;
    rec r = { .m = m, .be = be, .st = st, .n = n };
    r.seen = calloc(n, 1);
    r.snap = malloc(n * sizeof(float));
    float *end = malloc(n * sizeof(float));
    int32_t *tok = malloc(N * sizeof(int32_t));
    size_t wmax = (size_t)pt_model_boundary_width(cfg, first > 0 ? first : 1);
    float *x = malloc(N * (wmax > (size_t)C ? wmax : (size_t)C) * sizeof(float));
    CHECK(r.seen && r.snap && end && tok && x, "out of memory");
    for (size_t i = 0; i < N; i++)
        tok[i] = (int32_t)((i * 37 + 5) % (size_t)cfg->vocab_size);
    pt_model_set_grad_hook(m, hook, &r);
    /* With head shards, a chunk's head matrix (its tied wte copy or lm_head) has rows only other
     * chunks' shards write: never touched here, so never reported (they stay 0). */
    size_t h_lo = 0, h_hi = 0;
    const pt_param *hp = pt_model_has_head_layers(m) && pt_model_head_layers(cfg) > 1
                             ? pt_model_find_tensor(m, pt_model_tied(cfg) ? "wte.weight" : "lm_head.weight")
                             : NULL;
    if (hp && (!pt_model_has_embedding(m) || !pt_model_tied(cfg))) {
        h_lo = hp->offset;
        h_hi = hp->offset + hp->numel;
    }
    for (int split = 0; split < 2; split++) {
        OK(pt_model_zero_grads(m));
        for (int mb = 0; mb < 2; mb++) {
            if (pt_model_has_embedding(m))
                OK(be->memcpy_h2d(st, pt_model_slot_tokens(m, 0), tok, N * sizeof(int32_t)));
            else {
                size_t w = (size_t)pt_model_boundary_width(cfg, first);
                for (size_t i = 0; i < N * w; i++)
                    x[i] = (float)((int)((i * 13 + (size_t)mb) % 17) - 8) * 0.05f;
                OK(be->memcpy_h2d(st, pt_model_slot_input(m, 0), x, N * w * sizeof(float)));
            }
            if (pt_model_has_head_layers(m))
                OK(be->memcpy_h2d(st, pt_model_slot_targets(m, 0), tok, N * sizeof(int32_t)));
            OK(pt_model_forward(m, 0));
            if (!pt_model_has_head(m)) {
                size_t w = (size_t)pt_model_boundary_width(cfg, last + 1);
                for (size_t i = 0; i < N * w; i++)
                    x[i] = (float)((int)((i * 7 + (size_t)mb) % 11) - 5) * 0.01f;
                OK(be->memcpy_h2d(st, pt_model_slot_doutput(m, 0), x, N * w * sizeof(float)));
            }
            memset(r.seen, 0, n);
            r.last_layer = last;
            r.calls = 0;
            if (split) {
                OK(pt_model_backward_input(m, 0, 1.0f / 64));
                CHECK(r.calls == 0, "backward_input reported %d ranges", r.calls);
                OK(pt_model_backward_weight(m, 0));
            } else {
                OK(pt_model_backward(m, 0, 1.0f / 64));
            }
            CHECK(!r.bad, "layers %d..%d (%s): %s", first, last, split ? "split" : "fused", r.why);
            OK(be->stream_sync(st));
            OK(be->memcpy_d2h(st, end, pt_model_grads(m), n * sizeof(float)));
            for (size_t i = 0; i < n; i++) {
                if (!r.seen[i] && i >= h_lo && i < h_hi) { /* rows of another chunk's head shards */
                    CHECK(end[i] == 0.0f, "layers %d..%d: unreported head-matrix element %zu is %g, not 0", first,
                          last, i, (double)end[i]);
                    continue;
                }
                CHECK(r.seen[i], "layers %d..%d (%s): element %zu of %zu never reported", first, last,
                      split ? "split" : "fused", i, n);
                CHECK(memcmp(&end[i], &r.snap[i], sizeof(float)) == 0,
                      "layers %d..%d (%s): element %zu changed after it was reported (%a -> %a)", first, last,
                      split ? "split" : "fused", i, (double)r.snap[i], (double)end[i]);
            }
        }
    }
    printf("layers %d..%d of %s: %zu gradient elements, every one reported once per pass and final\n", first, last,
           cfg->name, n);
    free(r.seen);
    free(r.snap);
    free(end);
    free(tok);
    free(x);
    pt_model_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    const pt_backend *be;
    pt_stream *st;
    OK(pt_backend_get("cpu", &be));
    OK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &st));
    const char *models[3] = { "gpt2-tiny", "llama-tiny", argc > 1 ? argv[1] : NULL };
    for (int k = 0; k < 3; k++) {
        if (!models[k])
            continue;
        pt_model_config cfg;
        OK(pt_model_config_load(models[k], &cfg));
        int L = pt_model_n_layers(&cfg); /* 0 embedding .. L-1 */
        const int cuts[][2] = { { 0, L - 1 }, { 0, 1 }, { 1, 2 }, { 2, L - 1 }, { L - 1, L - 1 }, { cfg.n_layer + 1, L - 1 },
                                { cfg.n_layer + 2, cfg.n_layer + 2 } };
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
            if (cuts[i][0] <= cuts[i][1] && cuts[i][1] <= L - 1 && run_chunk(&cfg, cuts[i][0], cuts[i][1], be, st))
                return 1;
    }
    be->stream_destroy(st);
    return 0;
}
