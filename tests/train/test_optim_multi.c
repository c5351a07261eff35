/* tests/train/test_optim_multi.c — pt_optim_step through the backend's multi-tensor AdamW (one
 * adamw_multi_update over the table of tensor parts made at creation) against the per-tensor path
 * (pt_optim_set_multi_tensor(o, 0): one adamw_update per tensor), bit for bit: parameters, m and v
 * after 4 steps with changing learning rates and clip scales, for the whole model and for ZeRO-1
 * slices cut inside tensors (and a slice inside one tensor, and an empty one), on 1 and 2 threads.
 * Also: the multi-tensor path is the default on the CPU backend; a backend table without the op
 * keeps the per-tensor path and refuses to switch (PT_ENOTSUP, naming the backend).
 *
 *     test_optim_multi     (exit 0: all equal) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"

static int failures;
#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,         \
                    pt_last_error());                                                                    \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)

static const pt_model_config cfg = { .name = "opt-multi", .n_layer = 2, .n_head = 2, .n_embd = 48,
                                     .vocab_size = 100, .vocab_padded = 128, .max_seq_len = 16 };
static const pt_adamw_cfg ac = { .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                 .grad_clip = 1.0f };

/* Runs 4 steps on a fresh model over slices cut[0..n_cut] with the multi-tensor path on or off;
 * returns params, then the slices' m, then their v (malloc'd: 3 n floats). */
static float *run(const pt_backend *be, int threads, const size_t *cut, int n_cut, int multi)
{
    pt_stream *s = NULL;
    pt_model *m = NULL;
    EXPECT(be->stream_create(&(pt_stream_opts){ .n_threads = threads }, &s) == PT_OK);
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 16, .n_slots = 1 };
    EXPECT(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, be, s, &m) == PT_OK);
    if (!m)
        exit(1);
    EXPECT(pt_model_init_weights(m, 11) == PT_OK);
    size_t n = pt_model_n_params(m);
    pt_optim *o[8] = { NULL };
    for (int k = 0; k < n_cut; k++) {
        EXPECT(pt_optim_create_range(m, &ac, cut[k], cut[k + 1], &o[k]) == PT_OK);
        if (!o[k])
            exit(1);
        EXPECT(pt_optim_multi_tensor(o[k]) == (be->adamw_multi_update != NULL));
        if (!multi)
            EXPECT(pt_optim_set_multi_tensor(o[k], 0) == PT_OK && pt_optim_multi_tensor(o[k]) == 0);
    }
    float *g = malloc(n * sizeof(float)), *out = malloc(3 * n * sizeof(float));
    for (int t = 1; t <= 4; t++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (float)sin(0.37 * (double)i + 1.3 * t) * (i % 7 == 0 ? 2.0f : 0.1f);
        EXPECT(be->memcpy_h2d(s, pt_model_grads(m), g, n * sizeof(float)) == PT_OK);
        for (int k = 0; k < n_cut; k++)
            EXPECT(pt_optim_step(o[k], 1e-2f / (float)t, t == 3 ? 0.3f : 1.0f) == PT_OK);
    }
    EXPECT(be->memcpy_d2h(s, out, pt_model_params(m), n * sizeof(float)) == PT_OK);
    float *mv = out + n;
    for (int k = 0; k < n_cut; k++) {
        size_t len = cut[k + 1] - cut[k];
        EXPECT(be->memcpy_d2h(s, mv + cut[k], pt_optim_m(o[k]), len * sizeof(float)) == PT_OK);
        EXPECT(be->memcpy_d2h(s, mv + n + cut[k], pt_optim_v(o[k]), len * sizeof(float)) == PT_OK);
        EXPECT(pt_optim_steps_done(o[k]) == 4);
        pt_optim_destroy(o[k]);
    }
    free(g);
    pt_model_destroy(m);
    be->stream_destroy(s);
    return out;
}

static void compare(const char *what, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < 3 * n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            fprintf(stderr, "FAIL %s: %s[%zu] %.9g vs %.9g\n", what, i < n ? "param" : i < 2 * n ? "m" : "v", i % n,
                    a[i], b[i]);
            failures++;
            return;
        }
    printf("ok   %s (%zu elements)\n", what, n);
}

int main(void)
{
    const pt_backend *cpu;
    EXPECT(pt_backend_get("cpu", &cpu) == PT_OK);
    EXPECT(cpu->adamw_multi_update != NULL);
    size_t n = 0;
    {
        pt_stream *s = NULL;
        pt_model *m = NULL;
        pt_model_opts mo = { .micro_batch = 1, .seq_len = 16, .n_slots = 1 };
        EXPECT(cpu->stream_create(&(pt_stream_opts){ .n_threads = 1 }, &s) == PT_OK);
        EXPECT(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, cpu, s, &m) == PT_OK);
        if (!m)
            return 1;
        n = pt_model_n_params(m);
        pt_model_destroy(m);
        cpu->stream_destroy(s);
    }
    const size_t whole[2] = { 0, n };
    /* ZeRO-1 style: 3 slices not on tensor boundaries, one inside a single tensor (wte), one empty */
    const size_t slices[6] = { 0, 5, 5, n / 3 + 7, 2 * n / 3 + 1, n };
    for (int threads = 1; threads <= 2; threads++) {
        char what[96];
        float *a = run(cpu, threads, whole, 1, 0), *b = run(cpu, threads, whole, 1, 1);
        snprintf(what, sizeof what, "whole model, %d thread(s): multi-tensor == per-tensor", threads);
        compare(what, a, b, n);
        float *c = run(cpu, threads, slices, 5, 0), *d = run(cpu, threads, slices, 5, 1);
        snprintf(what, sizeof what, "5 slices, %d thread(s): multi-tensor == per-tensor", threads);
        compare(what, c, d, n);
        snprintf(what, sizeof what, "5 slices == whole, %d thread(s)", threads);
        compare(what, b, d, n);
        free(a);
        free(b);
        free(c);
        free(d);
    }
    /* a backend without the op: per-tensor, and switching on is refused */
    pt_backend plain = *cpu;
    plain.name = "cpu-no-multi";
    plain.adamw_multi_update = NULL;
    float *a = run(&plain, 2, whole, 1, 0), *b = run(cpu, 2, whole, 1, 1);
    compare("backend without adamw_multi_update == multi-tensor", a, b, n);
    free(a);
    free(b);
    {
        pt_stream *s = NULL;
        pt_model *m = NULL;
        pt_optim *o = NULL;
        pt_model_opts mo = { .micro_batch = 1, .seq_len = 16, .n_slots = 1 };
        EXPECT(plain.stream_create(&(pt_stream_opts){ .n_threads = 1 }, &s) == PT_OK);
        EXPECT(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, &plain, s, &m) == PT_OK);
        EXPECT(m && pt_optim_create(m, &ac, &o) == PT_OK);
        if (o) {
            EXPECT(pt_optim_multi_tensor(o) == 0);
            EXPECT(pt_optim_set_multi_tensor(o, 1) == PT_ENOTSUP);
            EXPECT(strstr(pt_last_error(), "cpu-no-multi") != NULL);
            EXPECT(pt_optim_multi_tensor(o) == 0);
        }
        pt_optim_destroy(o);
        pt_model_destroy(m);
        plain.stream_destroy(s);
    }
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
