/* tests/cuda/test_cuda_kernels.c — every CUDA kernel against the CPU backend (the reference) on
 * random inputs: `test_cuda_kernels fp32` with PT_CUDA_MATMUL=fp32 and tight tolerances,
 * `test_cuda_kernels bf16` the matrix products in bf16 mode with the stated looser tolerance,
 * `test_cuda_kernels determinism` the same inputs twice give the same bits, `test_cuda_kernels tp`
 * the tensor-parallel vocabulary ops (range embedding, statistics combine), `test_cuda_kernels
 * round_bf16` round_bf16 against the CPU backend and the hand-worked bf16 cases, bit for bit.
 * Exits 77 (skipped) when this machine has no CUDA device; never passes without one.
 *
 * Built a second time with PT_CUDA_EMU_DRIVER as test_cuda_emu: the same comparisons, on smaller
 * shapes, of the CUDA kernels' source run by the CPU emulator in tests/cuda/emu/ (cuBLAS replaced
 * by a plain GEMM there, so the row-major to column-major mapping is what is checked). That one
 * runs everywhere. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/bf16_cases.h" /* the bf16 rounding cases of kernels.round_bf16 */
#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"

static const pt_backend *cpu, *gpu;
#ifdef PT_CUDA_EMU_DRIVER
extern const pt_backend pt_backend_cuda_emu;
#endif
static pt_stream *cs, *gs;
static int failures;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void fill(float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = amp * frand();
}

static void die_if(pt_status st, const char *what)
{
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
        exit(1);
    }
}

/* Device copy of n host bytes (freed by dev_free). */
static void *dev_from(const void *h, size_t bytes)
{
    void *d;
    die_if(pt_backend_alloc(gpu, &d, bytes), "alloc");
    die_if(gpu->memcpy_h2d(gs, d, h, bytes), "h2d");
    return d;
}

static void dev_free(void *d) { pt_backend_free(gpu, d); }

static void to_host(void *h, const void *d, size_t bytes) { die_if(gpu->memcpy_d2h(gs, h, d, bytes), "d2h"); }

/* |got - ref| <= atol + rtol * |ref| everywhere; prints the first bad index. */
static void check(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i]))) {
            fprintf(stderr, "FAIL %s: index %zu got %.9g want %.9g (atol %g rtol %g)\n", what, i, got[i], ref[i],
                    atol, rtol);
            failures++;
            return;
        }
        if (err > worst)
            worst = err;
    }
    printf("ok   %-44s n=%-9zu max abs err %.3g\n", what, n, worst);
}

static void check_bits(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof(float)) != 0) {
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                fprintf(stderr, "FAIL %s: index %zu differs between runs (%.9g vs %.9g)\n", what, i, a[i], b[i]);
                break;
            }
        failures++;
        return;
    }
    printf("ok   %-44s n=%zu bit-identical\n", what, n);
}

/* Absolute tolerance of a column sum over N rows of values of size ~1: the CPU adds the rows one
 * by one in float (error growing up to ~N ulps of the running sum), the GPU in a tree. */
static float colsum_atol(int N)
{
    return 1e-5f * sqrtf((float)N) + 1e-7f * (float)N;
}

static void test_elementwise(void)
{
    const size_t n = 300007;
    float *a = malloc(n * 4), *b = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    fill(a, n, 3.0f);
    fill(b, n, 3.0f);
    float *da = dev_from(a, n * 4), *db = dev_from(b, n * 4), *dout = dev_from(a, n * 4);
    die_if(cpu->add(cs, ref, a, b, n), "cpu add");
    die_if(gpu->add(gs, dout, da, db, n), "cuda add");
    to_host(got, dout, n * 4);
    check("add", got, ref, n, 0, 0);
    memcpy(ref, a, n * 4);
    die_if(cpu->scale(cs, ref, 0.37f, n), "cpu scale");
    die_if(gpu->scale(gs, da, 0.37f, n), "cuda scale");
    to_host(got, da, n * 4);
    check("scale", got, ref, n, 0, 0);
    die_if(cpu->gelu_forward(cs, ref, b, n), "cpu gelu");
    die_if(gpu->gelu_forward(gs, dout, db, n), "cuda gelu");
    to_host(got, dout, n * 4);
    check("gelu_forward", got, ref, n, 1e-6f, 1e-5f);
    die_if(cpu->gelu_backward(cs, ref, b, a, n), "cpu gelu bwd");
    float *da2 = dev_from(a, n * 4);
    die_if(gpu->gelu_backward(gs, da2, db, da2, n), "cuda gelu bwd (aliased)"); /* dinp may alias dout */
    to_host(got, da2, n * 4);
    /* 1 + tanh and 1 - tanh^2 cancel near x = -3: the CPU's tanh (abs error ~1e-7) shows at 1e-6 */
    check("gelu_backward (dinp aliases dout)", got, ref, n, 5e-6f, 1e-5f);
    double s_cpu, s_gpu;
    die_if(cpu->sum_squares(cs, &s_cpu, b, n), "cpu sumsq");
    die_if(gpu->sum_squares(gs, &s_gpu, db, n), "cuda sumsq");
    if (fabs(s_cpu - s_gpu) > 1e-12 * fabs(s_cpu)) {
        fprintf(stderr, "FAIL sum_squares: %.17g vs cpu %.17g\n", s_gpu, s_cpu);
        failures++;
    } else {
        printf("ok   %-44s %.17g\n", "sum_squares", s_gpu);
    }
    int bad = -1;
    die_if(gpu->has_nonfinite(gs, &bad, db, n), "cuda nonfinite");
    if (bad != 0) {
        fprintf(stderr, "FAIL has_nonfinite: finite data reported %d\n", bad);
        failures++;
    }
    const int failures_before = failures;
    const float specials[3] = { NAN, INFINITY, -INFINITY };
    for (int k = 0; k < 3; k++) {
        float v = b[n - 3];
        b[n - 3] = specials[k];
        die_if(gpu->memcpy_h2d(gs, db + n - 3, &b[n - 3], 4), "h2d");
        die_if(gpu->has_nonfinite(gs, &bad, db, n), "cuda nonfinite");
        if (bad != 1) {
            fprintf(stderr, "FAIL has_nonfinite: %g at %zu not found\n", specials[k], n - 3);
            failures++;
        }
        b[n - 3] = v;
        die_if(gpu->memcpy_h2d(gs, db + n - 3, &v, 4), "h2d");
    }
    if (failures == failures_before)
        printf("ok   %-44s NaN, +Inf, -Inf found; finite data clean\n", "has_nonfinite");
    dev_free(da);
    dev_free(db);
    dev_free(dout);
    dev_free(da2);
    free(a);
    free(b);
    free(ref);
    free(got);
}

static void test_adamw(void)
{
    const size_t n = 100003;
    float *p = malloc(n * 4), *g = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4), *got = malloc(n * 4);
    fill(p, n, 1.0f);
    fill(g, n, 0.1f);
    fill(m, n, 0.01f);
    for (size_t i = 0; i < n; i++)
        v[i] = 1e-4f * fabsf(frand());
    float *dp = dev_from(p, n * 4), *dg = dev_from(g, n * 4), *dm = dev_from(m, n * 4), *dv = dev_from(v, n * 4);
    for (int t = 1; t <= 3; t++) {
        die_if(cpu->adamw_update(cs, p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t), "cpu adamw");
        die_if(gpu->adamw_update(gs, dp, dg, dm, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t), "cuda adamw");
    }
    to_host(got, dp, n * 4);
    check("adamw_update param (3 steps)", got, p, n, 1e-7f, 1e-6f);
    to_host(got, dm, n * 4);
    check("adamw_update m", got, m, n, 1e-9f, 1e-6f);
    to_host(got, dv, n * 4);
    check("adamw_update v", got, v, n, 1e-12f, 1e-6f);
    if (gpu->adamw_update(gs, dp, dg, dm, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0) != PT_EINVAL) {
        fprintf(stderr, "FAIL adamw_update: t=0 accepted\n");
        failures++;
    }
    dev_free(dp);
    dev_free(dg);
    dev_free(dm);
    dev_free(dv);
    free(p);
    free(g);
    free(m);
    free(v);
    free(got);
}

/* Matrix products at (N,C,OC); atol_per_sqrtk scales with sqrt of the reduction length. */
static void test_matmul_shape(const char *mode, int N, int C, int OC, float atol_per_sqrtk, float rtol)
{
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *inp = malloc(ni * 4), *w = malloc(nw * 4), *bias = malloc(OC * 4), *dout = malloc(no * 4);
    float *out = malloc(no * 4), *dinp = malloc(ni * 4), *dw = malloc(nw * 4), *dbias = malloc(OC * 4);
    float *got = malloc((ni > nw ? (ni > no ? ni : no) : (nw > no ? nw : no)) * 4);
    fill(inp, ni, 1.0f);
    fill(w, nw, 1.0f);
    fill(bias, OC, 1.0f);
    fill(dout, no, 1.0f);
    fill(dw, nw, 1.0f); /* accumulated into */
    fill(dbias, OC, 1.0f);
    float *d_inp = dev_from(inp, ni * 4), *d_w = dev_from(w, nw * 4), *d_bias = dev_from(bias, OC * 4);
    float *d_dout = dev_from(dout, no * 4), *d_out = dev_from(out, no * 4), *d_dinp = dev_from(dinp, ni * 4);
    float *d_dw = dev_from(dw, nw * 4), *d_dbias = dev_from(dbias, OC * 4);
    char name[96];
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        die_if(cpu->matmul_forward(cs, out, inp, w, with_bias ? bias : NULL, N, C, OC), "cpu matmul");
        die_if(gpu->matmul_forward(gs, d_out, d_inp, d_w, with_bias ? d_bias : NULL, N, C, OC), "cuda matmul");
        to_host(got, d_out, no * 4);
        snprintf(name, sizeof name, "%s matmul_forward %dx%dx%d%s", mode, N, C, OC, with_bias ? " +bias" : "");
        check(name, got, out, no, atol_per_sqrtk * sqrtf((float)C), rtol);
    }
    die_if(cpu->matmul_backward_input(cs, dinp, dout, w, N, C, OC), "cpu matmul bwd in");
    die_if(gpu->matmul_backward_input(gs, d_dinp, d_dout, d_w, N, C, OC), "cuda matmul bwd in");
    to_host(got, d_dinp, ni * 4);
    snprintf(name, sizeof name, "%s matmul_backward_input %dx%dx%d", mode, N, C, OC);
    check(name, got, dinp, ni, atol_per_sqrtk * sqrtf((float)OC), rtol);
    die_if(cpu->matmul_backward_weight(cs, dw, dbias, dout, inp, N, C, OC), "cpu matmul bwd w");
    die_if(gpu->matmul_backward_weight(gs, d_dw, d_dbias, d_dout, d_inp, N, C, OC), "cuda matmul bwd w");
    to_host(got, d_dw, nw * 4);
    snprintf(name, sizeof name, "%s matmul_backward_weight dw += %dx%dx%d", mode, N, C, OC);
    check(name, got, dw, nw, atol_per_sqrtk * sqrtf((float)N), rtol);
    to_host(got, d_dbias, OC * 4);
    snprintf(name, sizeof name, "%s matmul_backward_weight dbias +=", mode);
    check(name, got, dbias, OC, colsum_atol(N), 1e-5f); /* fp32 sums in every mode */
    dev_free(d_inp);
    dev_free(d_w);
    dev_free(d_bias);
    dev_free(d_dout);
    dev_free(d_out);
    dev_free(d_dinp);
    dev_free(d_dw);
    dev_free(d_dbias);
    free(inp);
    free(w);
    free(bias);
    free(dout);
    free(out);
    free(dinp);
    free(dw);
    free(dbias);
    free(got);
}

static void test_layernorm(int N, int C)
{
    size_t n = (size_t)N * C;
    float *x = malloc(n * 4), *w = malloc(C * 4), *b = malloc(C * 4), *dy = malloc(n * 4), *y = malloc(n * 4);
    float *mean = malloc(N * 4), *rstd = malloc(N * 4), *dx = malloc(n * 4), *dw = malloc(C * 4),
          *db = malloc(C * 4), *got = malloc(n * 4);
    fill(x, n, 2.0f);
    for (size_t i = 0; i < n; i++)
        x[i] += 0.5f; /* a nonzero mean */
    fill(w, C, 1.0f);
    fill(b, C, 1.0f);
    fill(dy, n, 1.0f);
    fill(dw, C, 1.0f);
    fill(db, C, 1.0f);
    float *d_x = dev_from(x, n * 4), *d_w = dev_from(w, C * 4), *d_b = dev_from(b, C * 4), *d_dy = dev_from(dy, n * 4);
    float *d_y = dev_from(y, n * 4), *d_mean = dev_from(mean, N * 4), *d_rstd = dev_from(rstd, N * 4);
    float *d_dx = dev_from(dx, n * 4), *d_dw = dev_from(dw, C * 4), *d_db = dev_from(db, C * 4);
    float *d_dx2 = dev_from(dx, n * 4), *d_dw2 = dev_from(dw, C * 4), *d_db2 = dev_from(db, C * 4);
    char name[96];
    die_if(cpu->layernorm_forward(cs, y, mean, rstd, x, w, b, N, C), "cpu ln");
    die_if(gpu->layernorm_forward(gs, d_y, d_mean, d_rstd, d_x, d_w, d_b, N, C), "cuda ln");
    to_host(got, d_y, n * 4);
    snprintf(name, sizeof name, "layernorm_forward %dx%d", N, C);
    check(name, got, y, n, 2e-6f, 2e-5f);
    to_host(got, d_mean, N * 4);
    check("layernorm_forward mean", got, mean, N, 1e-6f, 1e-5f);
    to_host(got, d_rstd, N * 4);
    check("layernorm_forward rstd", got, rstd, N, 1e-6f, 1e-5f);
    /* Backward from the CPU's saved statistics, so only the backward is compared. */
    die_if(gpu->memcpy_h2d(gs, d_mean, mean, N * 4), "h2d");
    die_if(gpu->memcpy_h2d(gs, d_rstd, rstd, N * 4), "h2d");
    die_if(cpu->layernorm_backward(cs, dx, dw, db, dy, x, w, mean, rstd, N, C), "cpu ln bwd");
    die_if(gpu->layernorm_backward(gs, d_dx, d_dw, d_db, d_dy, d_x, d_w, d_mean, d_rstd, N, C), "cuda ln bwd");
    to_host(got, d_dx, n * 4);
    snprintf(name, sizeof name, "layernorm_backward dinp %dx%d", N, C);
    check(name, got, dx, n, 2e-5f, 1e-4f);
    to_host(got, d_dw, C * 4);
    check("layernorm_backward dw +=", got, dw, C, colsum_atol(N), 1e-5f);
    to_host(got, d_db, C * 4);
    check("layernorm_backward db +=", got, db, C, colsum_atol(N), 1e-5f);
    /* Split entries give the fused entry's bits. */
    die_if(gpu->layernorm_backward_input(gs, d_dx2, d_dy, d_x, d_w, d_mean, d_rstd, N, C), "cuda ln bwd in");
    die_if(gpu->layernorm_backward_weight(gs, d_dw2, d_db2, d_dy, d_x, d_mean, d_rstd, N, C), "cuda ln bwd w");
    float *got2 = malloc(n * 4);
    to_host(got, d_dx, n * 4);
    to_host(got2, d_dx2, n * 4);
    check_bits("layernorm split dinp == fused", got, got2, n);
    to_host(got, d_dw, C * 4);
    to_host(got2, d_dw2, C * 4);
    check_bits("layernorm split dw == fused", got, got2, C);
    to_host(got, d_db, C * 4);
    to_host(got2, d_db2, C * 4);
    check_bits("layernorm split db == fused", got, got2, C);
    free(got2);
    float *dev[] = { d_x, d_w, d_b, d_dy, d_y, d_mean, d_rstd, d_dx, d_dw, d_db, d_dx2, d_dw2, d_db2 };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        dev_free(dev[i]);
    float *host[] = { x, w, b, dy, y, mean, rstd, dx, dw, db, got };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

/* Grouped-query attention as multi-head attention: qkv (rows of W = C + 2*NKV*hs) expanded to
 * GPT-2's (rows of 3C), query head h given a copy of kv head h / (NH/NKV). The forward of the
 * expanded input equals the GQA forward; the GQA key/value gradient of kv head g is the sum of the
 * expanded gradients of its group's heads. So the CPU backend's multi-head kernels are a reference
 * for any NKV (NKV == NH: the identity). */
static void gqa_expand(float *e, const float *qkv, int rows, int C, int NH, int NKV)
{
    const int hs = C / NH, G = NH / NKV, W = C + 2 * NKV * hs;
    for (int r = 0; r < rows; r++) {
        const float *x = qkv + (size_t)r * W;
        float *y = e + (size_t)r * 3 * C;
        memcpy(y, x, (size_t)C * 4);
        for (int h = 0; h < NH; h++) {
            memcpy(y + C + (size_t)h * hs, x + C + (size_t)(h / G) * hs, (size_t)hs * 4);
            memcpy(y + 2 * C + (size_t)h * hs, x + C + (size_t)(NKV + h / G) * hs, (size_t)hs * 4);
        }
    }
}

static void gqa_reduce(float *d, const float *de, int rows, int C, int NH, int NKV)
{
    const int hs = C / NH, G = NH / NKV, W = C + 2 * NKV * hs;
    for (int r = 0; r < rows; r++) {
        const float *x = de + (size_t)r * 3 * C;
        float *y = d + (size_t)r * W;
        memcpy(y, x, (size_t)C * 4);
        for (int g = 0; g < NKV; g++)
            for (int i = 0; i < hs; i++) {
                float dk = 0.0f, dv = 0.0f;
                for (int k = 0; k < G; k++) {
                    dk += x[C + (size_t)(g * G + k) * hs + i];
                    dv += x[2 * C + (size_t)(g * G + k) * hs + i];
                }
                y[C + (size_t)g * hs + i] = dk;
                y[C + (size_t)(NKV + g) * hs + i] = dv;
            }
    }
}

static void test_attention(int B, int T, int C, int NH, int NKV)
{
    const int hs = C / NH, W = C + 2 * NKV * hs;
    size_t nqkv = (size_t)B * T * W, ne = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    size_t nsaved_c = cpu->attention_saved_size(B, T, C, NH, NH), nscr_c = cpu->attention_scratch_size(B, T, C, NH, NH);
    size_t nsaved_g = gpu->attention_saved_size(B, T, C, NH, NKV);
    size_t nscr_g = gpu->attention_scratch_size(B, T, C, NH, NKV);
    float *qkv = malloc(nqkv * 4), *qkve = malloc(ne * 4), *out = malloc(no * 4), *dout = malloc(no * 4);
    float *dqkve = malloc(ne * 4), *dqkv = malloc(nqkv * 4);
    float *saved = malloc(nsaved_c * 4), *scr = malloc(nscr_c * 4), *got = malloc(nqkv * 4);
    fill(qkv, nqkv, 2.0f);
    fill(dout, no, 1.0f);
    gqa_expand(qkve, qkv, B * T, C, NH, NKV);
    float *d_qkv = dev_from(qkv, nqkv * 4), *d_dout = dev_from(dout, no * 4), *d_out, *d_dqkv, *d_saved, *d_scr;
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dqkv, nqkv * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_saved, nsaved_g * 4 + 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_scr, nscr_g * 4 + 4), "alloc");
    die_if(gpu->memset_zero(gs, d_dqkv, nqkv * 4), "memset"); /* so a hole shows up as 0, not garbage */
    char name[112];
    die_if(cpu->attention_forward(cs, out, saved, scr, qkve, B, T, C, NH, NH), "cpu att");
    die_if(gpu->attention_forward(gs, d_out, d_saved, d_scr, d_qkv, B, T, C, NH, NKV), "cuda att");
    to_host(got, d_out, no * 4);
    snprintf(name, sizeof name, "attention_forward B%d T%d C%d NH%d NKV%d", B, T, C, NH, NKV);
    check(name, got, out, no, 1e-5f, 1e-4f);
    if (nsaved_c == nsaved_g) {
        to_host(got, d_saved, nsaved_g * 4);
        check("attention_forward saved log-sum-exp", got, saved, nsaved_g, 1e-5f, 1e-5f);
    }
    die_if(cpu->attention_backward(cs, dqkve, scr, dout, qkve, out, saved, B, T, C, NH, NH), "cpu att bwd");
    gqa_reduce(dqkv, dqkve, B * T, C, NH, NKV);
    die_if(gpu->attention_backward(gs, d_dqkv, d_scr, d_dout, d_qkv, d_out, d_saved, B, T, C, NH, NKV),
           "cuda att bwd");
    to_host(got, d_dqkv, nqkv * 4);
    snprintf(name, sizeof name, "attention_backward B%d T%d C%d NH%d NKV%d", B, T, C, NH, NKV);
    const float G = (float)(NH / NKV); /* a kv gradient sums G heads */
    check(name, got, dqkv, nqkv, 5e-5f * G, 5e-4f);
    if (NKV != NH) { /* and the CPU backend's own grouped-query kernels */
        float *out2 = malloc(no * 4), *saved2 = malloc(cpu->attention_saved_size(B, T, C, NH, NKV) * 4 + 4);
        float *scr2 = malloc(cpu->attention_scratch_size(B, T, C, NH, NKV) * 4 + 4);
        die_if(cpu->attention_forward(cs, out2, saved2, scr2, qkv, B, T, C, NH, NKV), "cpu att (GQA)");
        snprintf(name, sizeof name, "attention_forward NKV%d vs CPU GQA", NKV);
        to_host(got, d_out, no * 4);
        check(name, got, out2, no, 1e-5f, 1e-4f);
        die_if(cpu->attention_backward(cs, dqkv, scr2, dout, qkv, out2, saved2, B, T, C, NH, NKV),
               "cpu att bwd (GQA)");
        snprintf(name, sizeof name, "attention_backward NKV%d vs CPU GQA", NKV);
        to_host(got, d_dqkv, nqkv * 4);
        check(name, got, dqkv, nqkv, 5e-5f * G, 5e-4f);
        free(out2);
        free(saved2);
        free(scr2);
    }
    dev_free(d_qkv);
    dev_free(d_dout);
    dev_free(d_out);
    dev_free(d_dqkv);
    dev_free(d_saved);
    dev_free(d_scr);
    free(qkv);
    free(qkve);
    free(out);
    free(dout);
    free(dqkv);
    free(dqkve);
    free(saved);
    free(scr);
    free(got);
}

/* attention_decode (generation): rows t0..t0+n-1 of a KV cache of Tcap rows per sequence. */
static void test_attention_decode(int B, int Tcap, int t0, int n, int C, int NH, int NKV)
{
    const int W = C + 2 * NKV * (C / NH);
    size_t nc = (size_t)B * Tcap * W, ne = (size_t)B * Tcap * 3 * C, no = (size_t)B * n * C;
    float *cache = malloc(nc * 4), *cachee = malloc(ne * 4), *out = malloc(no * 4), *got = malloc(no * 4);
    fill(cache, nc, 2.0f);
    gqa_expand(cachee, cache, B * Tcap, C, NH, NKV);
    float *d_cache = dev_from(cache, nc * 4), *d_out;
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(cpu->attention_decode(cs, out, cachee, B, Tcap, t0, n, C, NH, NH), "cpu att decode");
    die_if(gpu->attention_decode(gs, d_out, d_cache, B, Tcap, t0, n, C, NH, NKV), "cuda att decode");
    to_host(got, d_out, no * 4);
    char name[112];
    snprintf(name, sizeof name, "attention_decode B%d Tcap%d t0 %d n%d C%d NH%d NKV%d", B, Tcap, t0, n, C, NH, NKV);
    check(name, got, out, no, 1e-5f, 1e-4f);
    if (NKV != NH) { /* and the CPU backend's own grouped-query decode */
        die_if(cpu->attention_decode(cs, out, cache, B, Tcap, t0, n, C, NH, NKV), "cpu att decode (GQA)");
        snprintf(name, sizeof name, "attention_decode NKV%d vs CPU GQA", NKV);
        check(name, got, out, no, 1e-5f, 1e-4f);
    }
    dev_free(d_cache);
    dev_free(d_out);
    free(cache);
    free(cachee);
    free(out);
    free(got);
}

/* pos 0: no position table (wpe and dwpe NULL, llama). */
static void test_embedding(int B, int T, int C, int V, int pos)
{
    size_t n = (size_t)B * T * C;
    int32_t *tok = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) % V;
    tok[0] = tok[B * T - 1]; /* at least one repeat */
    float *wte = malloc((size_t)V * C * 4), *wpe = malloc((size_t)T * C * 4), *out = malloc(n * 4),
          *dout = malloc(n * 4), *got = malloc((n > (size_t)V * C ? n : (size_t)V * C) * 4);
    fill(wte, (size_t)V * C, 1.0f);
    fill(wpe, (size_t)T * C, 1.0f);
    fill(dout, n, 1.0f);
    int32_t *d_tok = dev_from(tok, (size_t)B * T * 4);
    float *d_wte = dev_from(wte, (size_t)V * C * 4), *d_wpe = dev_from(wpe, (size_t)T * C * 4);
    float *d_out = dev_from(out, n * 4), *d_dout = dev_from(dout, n * 4);
    die_if(cpu->embedding_forward(cs, out, tok, wte, pos ? wpe : NULL, B, T, C), "cpu emb");
    die_if(gpu->embedding_forward(gs, d_out, d_tok, d_wte, pos ? d_wpe : NULL, B, T, C), "cuda emb");
    to_host(got, d_out, n * 4);
    check(pos ? "embedding_forward" : "embedding_forward, wpe NULL", got, out, n, 0, 0);
    /* gradients are added to the weights themselves here (any starting values do) */
    die_if(cpu->embedding_backward(cs, wte, pos ? wpe : NULL, dout, tok, B, T, C), "cpu emb bwd");
    die_if(gpu->embedding_backward(gs, d_wte, pos ? d_wpe : NULL, d_dout, d_tok, B, T, C), "cuda emb bwd");
    to_host(got, d_wte, (size_t)V * C * 4);
    check(pos ? "embedding_backward dwte +=" : "embedding_backward dwte +=, dwpe NULL", got, wte, (size_t)V * C,
          1e-6f * B * T, 1e-6f);
    to_host(got, d_wpe, (size_t)T * C * 4);
    check(pos ? "embedding_backward dwpe +=" : "embedding_backward wpe untouched (dwpe NULL)", got, wpe,
          (size_t)T * C, pos ? 1e-6f * B : 0.0f, pos ? 1e-6f : 0.0f);
    dev_free(d_tok);
    dev_free(d_wte);
    dev_free(d_wpe);
    dev_free(d_out);
    dev_free(d_dout);
    free(tok);
    free(wte);
    free(wpe);
    free(out);
    free(dout);
    free(got);
}

static void test_crossentropy(int N, int V)
{
    size_t n = (size_t)N * V;
    float *logits = malloc(n * 4), *probs = malloc(n * 4), *losses = malloc(N * 4), *dl = malloc(n * 4),
          *got = malloc(n * 4);
    int32_t *tgt = malloc(N * 4);
    fill(logits, n, 8.0f);
    for (int i = 0; i < N; i++)
        tgt[i] = (int32_t)(fabsf(frand()) * (V - 1));
    tgt[1 % N] = -1; /* ignored position */
    int32_t *d_tgt = dev_from(tgt, N * 4);
    float *d_logits = dev_from(logits, n * 4), *d_losses = dev_from(losses, N * 4);
    die_if(cpu->crossentropy_forward(cs, losses, probs, logits, tgt, N, V, 0), "cpu ce");
    /* probs aliases logits on the GPU: the harder case */
    die_if(gpu->crossentropy_forward(gs, d_losses, d_logits, d_logits, d_tgt, N, V, 0), "cuda ce");
    to_host(got, d_losses, N * 4);
    check("crossentropy_forward losses (probs alias logits)", got, losses, N, 1e-5f, 1e-5f);
    to_host(got, d_logits, n * 4);
    check("crossentropy_forward probs", got, probs, n, 1e-7f, 1e-5f);
    float dloss = 1.0f / N;
    die_if(cpu->crossentropy_backward(cs, dl, probs, tgt, dloss, N, V, 0), "cpu ce bwd");
    die_if(gpu->crossentropy_backward(gs, d_logits, d_logits, d_tgt, dloss, N, V, 0), "cuda ce bwd (aliased)");
    to_host(got, d_logits, n * 4);
    check("crossentropy_backward (dlogits alias probs)", got, dl, n, 1e-8f, 1e-5f);
    dev_free(d_tgt);
    dev_free(d_logits);
    dev_free(d_losses);
    free(logits);
    free(probs);
    free(losses);
    free(dl);
    free(got);
    free(tgt);
}

/* The shard path (xent_shard_*) over the vocabulary cut at bounds[0] = 0 < ... < bounds[K] = V,
 * against the CPU backend shard by shard. On the GPU exps and dlogits alias the shard's logits
 * and stats_out aliases stats_in (the harder cases). Ties for the maximum are planted across a
 * shard boundary, across the threads of one block, and in padding columns (>= n_valid). */
static void test_xent_shard(int N, int V, int n_valid, int K, const int *bounds)
{
    size_t n = (size_t)N * V;
    float *logits = malloc(n * 4), *got = malloc(n * 4), *x = malloc(n * 4), *dl = malloc(n * 4);
    float *st = malloc((size_t)N * PT_XENT_STATS * 4), *st_got = malloc((size_t)N * PT_XENT_STATS * 4);
    float *rmax = malloc(N * 4), *loss = malloc(N * 4), *lse = malloc(N * 4);
    int32_t *tgt = malloc(N * 4);
    fill(logits, n, 8.0f);
    for (int i = 0; i < N; i++)
        tgt[i] = (int32_t)(fabsf(frand()) * (V - 1));
    tgt[1 % N] = -1;
    float *row = logits;
    if (K > 1)
        row[bounds[1] - 1] = row[bounds[1]] = 20.0f; /* equal maxima either side of the first cut */
    row = logits + (size_t)(1 % N) * V;
    row[V / 2] = row[V / 2 + 1] = row[V / 2 - 37] = 20.0f; /* equal maxima in different threads */
    row = logits + (size_t)(2 % N) * V;
    row[V - 1] = 30.0f; /* the row's maximum in the last column (padding when n_valid < V) */
    if (N > 3) {
        row = logits + (size_t)3 * V;
        for (int i = 0; i < V; i++)
            row[i] = 1.5f; /* every column equal: the first valid one */
    }
    int32_t *d_tgt = dev_from(tgt, N * 4);
    float *d_st = dev_from(st, (size_t)N * PT_XENT_STATS * 4), *d_lse = dev_from(lse, N * 4),
          *d_loss = dev_from(loss, N * 4);
    float *d_x[8], *d_rmax[8], *c_e[8], *c_rmax[8];
    char what[96];
    int stats_bad = 0;
    for (int k = 0; k < K; k++) { /* forward, shard by shard */
        int v0 = bounds[k], vk = bounds[k + 1] - v0;
        size_t nk = (size_t)N * vk;
        for (int r = 0; r < N; r++)
            memcpy(x + (size_t)r * vk, logits + (size_t)r * V + v0, (size_t)vk * 4);
        c_e[k] = malloc(nk * 4);
        c_rmax[k] = malloc(N * 4);
        d_x[k] = dev_from(x, nk * 4);
        d_rmax[k] = dev_from(rmax, N * 4);
        die_if(cpu->xent_shard_forward(cs, st, c_e[k], c_rmax[k], k ? st : NULL, x, tgt, N, vk, v0, n_valid),
               "cpu xent fwd");
        die_if(gpu->xent_shard_forward(gs, d_st, d_x[k], d_rmax[k], k ? d_st : NULL, d_x[k], d_tgt, N, vk, v0,
                                       n_valid),
               "cuda xent fwd (exps alias logits)");
        to_host(got, d_x[k], nk * 4);
        snprintf(what, sizeof what, "xent_shard_forward exps, shard %d of %d", k, K);
        check(what, got, c_e[k], nk, 1e-7f, 1e-5f);
        to_host(got, d_rmax[k], N * 4);
        check("xent_shard_forward row_max", got, c_rmax[k], N, 0, 0);
        to_host(st_got, d_st, (size_t)N * PT_XENT_STATS * 4);
        for (int r = 0; r < N && !stats_bad; r++) {
            const float *a = st_got + (size_t)r * PT_XENT_STATS, *b = st + (size_t)r * PT_XENT_STATS;
            /* max, target logit and argmax exact; the sum within float rounding of the order */
            if (a[0] != b[0] || !(fabsf(a[1] - b[1]) <= 1e-5f * fabsf(b[1])) || a[2] != b[2] || a[3] != b[3] ||
                a[4] != b[4]) {
                fprintf(stderr, "FAIL xent_shard_forward stats, shard %d row %d: {%.9g %.9g %.9g %.9g %g}, cpu "
                                "{%.9g %.9g %.9g %.9g %g}\n",
                        k, r, a[0], a[1], a[2], a[3], a[4], b[0], b[1], b[2], b[3], b[4]);
                failures++;
                stats_bad = 1;
            }
        }
    }
    if (!stats_bad)
        printf("ok   %-44s K=%d\n", "xent_shard_forward stats (argmax exact)", K);
    die_if(cpu->xent_shard_finish(cs, loss, lse, st, tgt, N, V), "cpu xent finish");
    die_if(gpu->xent_shard_finish(gs, d_loss, d_lse, d_st, d_tgt, N, V), "cuda xent finish");
    to_host(got, d_loss, N * 4);
    check("xent_shard_finish losses", got, loss, N, 1e-5f, 1e-5f);
    to_host(got, d_lse, N * 4);
    check("xent_shard_finish lse", got, lse, N, 1e-5f, 1e-5f);
    /* backward on the CPU's lse, so that only the kernel is compared */
    die_if(gpu->memcpy_h2d(gs, d_lse, lse, N * 4), "h2d");
    float dloss = 1.0f / N;
    for (int k = 0; k < K; k++) {
        int v0 = bounds[k], vk = bounds[k + 1] - v0;
        size_t nk = (size_t)N * vk;
        die_if(cpu->xent_shard_backward(cs, dl, c_e[k], c_rmax[k], lse, tgt, dloss, N, vk, v0), "cpu xent bwd");
        /* the GPU's own exps of this shard, the CPU's row_max */
        die_if(gpu->memcpy_h2d(gs, d_rmax[k], c_rmax[k], N * 4), "h2d");
        die_if(gpu->xent_shard_backward(gs, d_x[k], d_x[k], d_rmax[k], d_lse, d_tgt, dloss, N, vk, v0),
               "cuda xent bwd (dlogits alias exps)");
        to_host(got, d_x[k], nk * 4);
        snprintf(what, sizeof what, "xent_shard_backward, shard %d of %d", k, K);
        check(what, got, dl, nk, 1e-8f, 1e-5f);
    }
    /* a target past the vocabulary: NaN loss on the GPU (it cannot refuse without a sync) */
    tgt[0] = V;
    die_if(gpu->memcpy_h2d(gs, d_tgt, tgt, N * 4), "h2d");
    die_if(gpu->xent_shard_finish(gs, d_loss, d_lse, d_st, d_tgt, N, V), "cuda xent finish (bad target)");
    to_host(got, d_loss, N * 4);
    if (!isnan(got[0]) || (N > 1 && got[1 % N] != 0.0f)) {
        fprintf(stderr, "FAIL xent_shard_finish: target V gave loss %g (want NaN), ignored row %g\n", got[0],
                N > 1 ? got[1] : 0.0f);
        failures++;
    } else {
        printf("ok   %-44s\n", "xent_shard_finish target >= V gives NaN");
    }
    for (int k = 0; k < K; k++) {
        dev_free(d_x[k]);
        dev_free(d_rmax[k]);
        free(c_e[k]);
        free(c_rmax[k]);
    }
    dev_free(d_tgt);
    dev_free(d_st);
    dev_free(d_lse);
    dev_free(d_loss);
    free(logits);
    free(got);
    free(x);
    free(dl);
    free(st);
    free(st_got);
    free(rmax);
    free(loss);
    free(lse);
    free(tgt);
}

/* ---- tensor parallelism: the vocabulary-range embedding and the statistics combine ---- */

/* The table (Vp, C) cut into n_ranks equal row ranges: each rank's range forward and backward
 * against the CPU's, and on the GPU itself the sum over the ranks (wpe on rank 0) against
 * embedding_forward and each rank's gradient rows against embedding_backward's, bit for bit.
 * pos 0: no position table. */
static void test_embedding_range(int B, int T, int C, int Vp, int n_ranks, int pos)
{
    size_t n = (size_t)B * T * C, nte = (size_t)Vp * C, npe = (size_t)T * C;
    const int V = Vp / n_ranks;
    int32_t *tok = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) % Vp;
    tok[0] = tok[B * T - 1]; /* at least one repeat */
    float *wte = malloc(nte * 4), *wpe = malloc(npe * 4), *dout = malloc(n * 4), *out = malloc(n * 4),
          *sum = malloc(n * 4), *full = malloc(n * 4), *got = malloc((n > nte ? n : nte) * 4),
          *dte = malloc(nte * 4), *dpe = malloc(npe * 4), *g_full = malloc(nte * 4), *g_pe = malloc(npe * 4);
    fill(wte, nte, 1.0f);
    fill(wpe, npe, 1.0f);
    fill(dout, n, 1.0f);
    fill(dte, nte, 1.0f);
    fill(dpe, npe, 1.0f);
    int32_t *d_tok = dev_from(tok, (size_t)B * T * 4);
    float *d_wte = dev_from(wte, nte * 4), *d_wpe = dev_from(wpe, npe * 4), *d_dout = dev_from(dout, n * 4),
          *d_out = dev_from(out, n * 4), *d_full = dev_from(out, n * 4), *d_gte = dev_from(dte, nte * 4),
          *d_gpe = dev_from(dpe, npe * 4);
    char what[112];
    /* the GPU's whole-table forward and backward, the bits the ranks must give */
    die_if(gpu->embedding_forward(gs, d_full, d_tok, d_wte, pos ? d_wpe : NULL, B, T, C), "cuda emb");
    to_host(full, d_full, n * 4);
    die_if(gpu->embedding_backward(gs, d_gte, pos ? d_gpe : NULL, d_dout, d_tok, B, T, C), "cuda emb bwd");
    to_host(g_full, d_gte, nte * 4);
    to_host(g_pe, d_gpe, npe * 4);
    for (int r = 0; r < n_ranks; r++) {
        const int v0 = r * V;
        const float *pe = pos && r == 0 ? wpe : NULL;
        die_if(cpu->embedding_range_forward(cs, out, tok, wte + (size_t)v0 * C, pe, v0, V, B, T, C), "cpu range");
        die_if(gpu->embedding_range_forward(gs, d_out, d_tok, d_wte + (size_t)v0 * C, pe ? d_wpe : NULL, v0, V, B,
                                            T, C),
               "cuda range");
        to_host(got, d_out, n * 4);
        snprintf(what, sizeof what, "embedding_range_forward rank %d/%d%s", r, n_ranks, pos ? "" : ", wpe NULL");
        check_bits(what, got, out, n);
        if (r == 0)
            memcpy(sum, got, n * 4);
        else
            for (size_t i = 0; i < n; i++)
                sum[i] += got[i];
        /* backward into copies of the starting gradients (dpe on every rank) */
        float *c_te = malloc((size_t)V * C * 4), *c_pe = malloc(npe * 4);
        memcpy(c_te, dte + (size_t)v0 * C, (size_t)V * C * 4);
        memcpy(c_pe, dpe, npe * 4);
        float *d_te = dev_from(c_te, (size_t)V * C * 4), *d_pe = dev_from(c_pe, npe * 4);
        die_if(cpu->embedding_range_backward(cs, c_te, pos ? c_pe : NULL, dout, tok, v0, V, B, T, C),
               "cpu range bwd");
        die_if(gpu->embedding_range_backward(gs, d_te, pos ? d_pe : NULL, d_dout, d_tok, v0, V, B, T, C),
               "cuda range bwd");
        to_host(got, d_te, (size_t)V * C * 4);
        snprintf(what, sizeof what, "embedding_range_backward dwte rank %d/%d", r, n_ranks);
        check(what, got, c_te, (size_t)V * C, 1e-6f * B * T, 1e-6f);
        snprintf(what, sizeof what, "embedding_range_backward dwte rank %d/%d vs whole", r, n_ranks);
        check_bits(what, got, g_full + (size_t)v0 * C, (size_t)V * C);
        to_host(got, d_pe, npe * 4);
        if (pos) {
            check("embedding_range_backward dwpe", got, c_pe, npe, 1e-6f * B, 1e-6f);
            check_bits("embedding_range_backward dwpe vs whole", got, g_pe, npe);
        } else {
            check_bits("embedding_range_backward dwpe NULL: untouched", got, dpe, npe);
        }
        dev_free(d_te);
        dev_free(d_pe);
        free(c_te);
        free(c_pe);
    }
    snprintf(what, sizeof what, "embedding_range_forward sum of %d ranks vs whole", n_ranks);
    check_bits(what, sum, full, n);
    void *d[] = { d_tok, d_wte, d_wpe, d_dout, d_out, d_full, d_gte, d_gpe };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        dev_free(d[i]);
    float *h[] = { wte, wpe, dout, out, sum, full, got, dte, dpe, g_full, g_pe };
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        free(h[i]);
    free(tok);
}

/* The vocabulary cut at bounds[0] = 0 < ... < bounds[K] = V, each range's statistics made on its
 * own (stats_in NULL, as a rank makes them), then combined: on the GPU bit for bit the chained
 * xent_shard_forward; against the CPU's combine of the CPU's parts, max, target logit and argmax
 * exact and the sum within rounding. Ties are planted across a cut and in padding columns. */
static void test_xent_combine(int N, int V, int n_valid, int K, const int *bounds)
{
    size_t n = (size_t)N * V, ns = (size_t)N * PT_XENT_STATS;
    float *logits = malloc(n * 4), *x = malloc(n * 4), *e = malloc(n * 4), *rmax = malloc(N * 4);
    float *parts = malloc(K * ns * 4), *comb = malloc(ns * 4), *got = malloc(ns * 4), *chain = malloc(ns * 4);
    int32_t *tgt = malloc(N * 4);
    fill(logits, n, 8.0f);
    for (int i = 0; i < N; i++)
        tgt[i] = (int32_t)(fabsf(frand()) * (V - 1));
    tgt[1 % N] = -1;
    if (K > 1)
        logits[bounds[1] - 1] = logits[bounds[1]] = 20.0f; /* row 0: equal maxima either side of the first cut */
    logits[(size_t)(2 % N) * V + V - 1] = 30.0f;          /* the row's maximum in the last (padding) column */
    int32_t *d_tgt = dev_from(tgt, N * 4);
    float *d_parts = dev_from(parts, K * ns * 4), *d_comb = dev_from(comb, ns * 4), *d_st = dev_from(comb, ns * 4),
          *d_x[8], *d_rmax = dev_from(rmax, N * 4);
    for (int k = 0; k < K; k++) {
        int v0 = bounds[k], vk = bounds[k + 1] - v0;
        for (int r = 0; r < N; r++)
            memcpy(x + (size_t)r * vk, logits + (size_t)r * V + v0, (size_t)vk * 4);
        d_x[k] = dev_from(x, (size_t)N * vk * 4);
        die_if(cpu->xent_shard_forward(cs, parts + k * ns, e, rmax, NULL, x, tgt, N, vk, v0, n_valid), "cpu part");
        die_if(gpu->xent_shard_forward(gs, d_parts + k * ns, d_x[k], d_rmax, NULL, d_x[k], d_tgt, N, vk, v0,
                                       n_valid),
               "cuda part");
        /* the chain runs on copies: the parts' exps overwrote d_x[k] */
        dev_free(d_x[k]);
        d_x[k] = dev_from(x, (size_t)N * vk * 4);
        die_if(gpu->xent_shard_forward(gs, d_st, d_x[k], d_rmax, k ? d_st : NULL, d_x[k], d_tgt, N, vk, v0, n_valid),
               "cuda chain");
    }
    die_if(cpu->xent_stats_combine(cs, comb, parts, K, N), "cpu combine");
    die_if(gpu->xent_stats_combine(gs, d_comb, d_parts, K, N), "cuda combine");
    to_host(got, d_comb, ns * 4);
    to_host(chain, d_st, ns * 4);
    char what[96];
    snprintf(what, sizeof what, "xent_stats_combine K=%d vs chained shards", K);
    check_bits(what, got, chain, ns);
    int bad = 0;
    for (int r = 0; r < N && !bad; r++) {
        const float *a = got + (size_t)r * PT_XENT_STATS, *b = comb + (size_t)r * PT_XENT_STATS;
        if (a[0] != b[0] || !(fabsf(a[1] - b[1]) <= 1e-5f * fabsf(b[1])) || a[2] != b[2] || a[3] != b[3] ||
            a[4] != b[4]) {
            fprintf(stderr, "FAIL xent_stats_combine row %d: {%.9g %.9g %.9g %.9g %g}, cpu {%.9g %.9g %.9g %.9g %g}\n",
                    r, a[0], a[1], a[2], a[3], a[4], b[0], b[1], b[2], b[3], b[4]);
            failures++;
            bad = 1;
        }
    }
    if (!bad)
        printf("ok   %-44s K=%d\n", "xent_stats_combine vs cpu (argmax exact)", K);
    for (int k = 0; k < K; k++)
        dev_free(d_x[k]);
    void *d[] = { d_tgt, d_parts, d_comb, d_st, d_rmax };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        dev_free(d[i]);
    float *h[] = { logits, x, e, rmax, parts, comb, got, chain };
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        free(h[i]);
    free(tgt);
}

/* ---- Llama layers, against the CPU backend ---- */
static void test_rmsnorm(int N, int C)
{
    size_t n = (size_t)N * C;
    const float eps = 1e-5f;
    float *x = malloc(n * 4), *w = malloc(C * 4), *dy = malloc(n * 4), *y = malloc(n * 4), *rstd = malloc(N * 4);
    float *dx = malloc(n * 4), *dw = malloc(C * 4), *got = malloc(n * 4), *got2 = malloc(n * 4);
    fill(x, n, 2.0f);
    for (size_t i = 0; i < n; i++)
        x[i] += 0.5f;
    fill(w, C, 1.0f);
    fill(dy, n, 1.0f);
    fill(dw, C, 1.0f); /* accumulated into */
    float *d_x = dev_from(x, n * 4), *d_w = dev_from(w, C * 4), *d_dy = dev_from(dy, n * 4);
    float *d_y = dev_from(y, n * 4), *d_rstd = dev_from(rstd, N * 4), *d_dx = dev_from(dx, n * 4);
    float *d_dw = dev_from(dw, C * 4), *d_dx2 = dev_from(dx, n * 4), *d_dw2 = dev_from(dw, C * 4);
    char name[112];
    die_if(cpu->rmsnorm_forward(cs, y, rstd, x, w, N, C, eps), "cpu rmsnorm");
    die_if(gpu->rmsnorm_forward(gs, d_y, d_rstd, d_x, d_w, N, C, eps), "cuda rmsnorm");
    to_host(got, d_y, n * 4);
    snprintf(name, sizeof name, "rmsnorm_forward %dx%d", N, C);
    check(name, got, y, n, 2e-6f, 2e-5f);
    to_host(got, d_rstd, N * 4);
    check("rmsnorm_forward rstd", got, rstd, N, 1e-6f, 1e-5f);
    /* backward from the CPU's rstd, so only the backward is compared */
    die_if(gpu->memcpy_h2d(gs, d_rstd, rstd, N * 4), "h2d");
    die_if(cpu->rmsnorm_backward(cs, dx, dw, dy, x, w, rstd, N, C), "cpu rmsnorm bwd");
    die_if(gpu->rmsnorm_backward(gs, d_dx, d_dw, d_dy, d_x, d_w, d_rstd, N, C), "cuda rmsnorm bwd");
    to_host(got, d_dx, n * 4);
    snprintf(name, sizeof name, "rmsnorm_backward dinp %dx%d", N, C);
    check(name, got, dx, n, 2e-5f, 1e-4f);
    to_host(got, d_dw, C * 4);
    check("rmsnorm_backward dw +=", got, dw, C, colsum_atol(N), 1e-5f);
    /* split entries give the fused entry's bits */
    die_if(gpu->rmsnorm_backward_input(gs, d_dx2, d_dy, d_x, d_w, d_rstd, N, C), "cuda rmsnorm bwd in");
    die_if(gpu->rmsnorm_backward_weight(gs, d_dw2, d_dy, d_x, d_rstd, N, C), "cuda rmsnorm bwd w");
    to_host(got, d_dx, n * 4);
    to_host(got2, d_dx2, n * 4);
    check_bits("rmsnorm split dinp == fused", got, got2, n);
    to_host(got, d_dw, C * 4);
    to_host(got2, d_dw2, C * 4);
    check_bits("rmsnorm split dw == fused", got, got2, C);
    float *dev[] = { d_x, d_w, d_dy, d_y, d_rstd, d_dx, d_dw, d_dx2, d_dw2 };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        dev_free(dev[i]);
    float *host[] = { x, w, dy, y, rstd, dx, dw, got, got2 };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

static void test_rope(int B, int T, int NH, int NKV, int hs, int pos0)
{
    const int h2 = hs / 2, W = (NH + 2 * NKV) * hs, max_pos = pos0 + T + 3;
    size_t n = (size_t)B * T * W, nt = (size_t)max_pos * h2;
    float *qkv = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4), *cs_ = malloc(nt * 4),
          *sn_ = malloc(nt * 4);
    fill(qkv, n, 2.0f);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < h2; i++) { /* Llama's tables: theta 500000 */
            float inv = (float)(1.0 / pow(500000.0, (double)(2 * i) / hs));
            cs_[(size_t)p * h2 + i] = cosf((float)p * inv);
            sn_[(size_t)p * h2 + i] = sinf((float)p * inv);
        }
    float *d_qkv = dev_from(qkv, n * 4), *d_c = dev_from(cs_, nt * 4), *d_s = dev_from(sn_, nt * 4);
    char name[112];
    for (int dir = 1; dir >= -1; dir -= 2) {
        memcpy(ref, qkv, n * 4);
        die_if(gpu->memcpy_h2d(gs, d_qkv, qkv, n * 4), "h2d");
        if (dir > 0) {
            die_if(cpu->rope_forward(cs, ref, cs_, sn_, B, T, NH, NKV, hs, pos0), "cpu rope");
            die_if(gpu->rope_forward(gs, d_qkv, d_c, d_s, B, T, NH, NKV, hs, pos0), "cuda rope");
        } else {
            die_if(cpu->rope_backward(cs, ref, cs_, sn_, B, T, NH, NKV, hs, pos0), "cpu rope bwd");
            die_if(gpu->rope_backward(gs, d_qkv, d_c, d_s, B, T, NH, NKV, hs, pos0), "cuda rope bwd");
        }
        to_host(got, d_qkv, n * 4);
        snprintf(name, sizeof name, "rope_%s B%d T%d NH%d NKV%d hs%d pos0 %d", dir > 0 ? "forward" : "backward", B,
                 T, NH, NKV, hs, pos0);
        check(name, got, ref, n, 1e-6f, 1e-5f);
        int v_ok = 1; /* the value heads are untouched, to the bit */
        const size_t v0 = (size_t)(NH + NKV) * hs;
        for (int bt = 0; bt < B * T && v_ok; bt++)
            v_ok = memcmp(got + (size_t)bt * W + v0, qkv + (size_t)bt * W + v0, (size_t)NKV * hs * 4) == 0;
        if (!v_ok) {
            fprintf(stderr, "FAIL %s: a value head changed\n", name);
            failures++;
        }
    }
    /* the backward is the transpose of an orthogonal map: it undoes the forward */
    die_if(gpu->memcpy_h2d(gs, d_qkv, qkv, n * 4), "h2d");
    die_if(gpu->rope_forward(gs, d_qkv, d_c, d_s, B, T, NH, NKV, hs, pos0), "cuda rope");
    die_if(gpu->rope_backward(gs, d_qkv, d_c, d_s, B, T, NH, NKV, hs, pos0), "cuda rope bwd");
    to_host(got, d_qkv, n * 4);
    check("rope_backward(rope_forward(x)) == x", got, qkv, n, 2e-6f, 1e-5f);
    if (gpu->rope_forward(gs, d_qkv, d_c, d_s, B, T, NH, NKV, hs + 1, pos0) != PT_EINVAL) {
        fprintf(stderr, "FAIL rope_forward: odd head size accepted\n");
        failures++;
    }
    dev_free(d_qkv);
    dev_free(d_c);
    dev_free(d_s);
    free(qkv);
    free(ref);
    free(got);
    free(cs_);
    free(sn_);
}

static void test_swiglu(int N, int H)
{
    size_t n = (size_t)N * H;
    float *gu = malloc(2 * n * 4), *dout = malloc(n * 4), *out = malloc(n * 4), *dgu = malloc(2 * n * 4),
          *got = malloc(2 * n * 4);
    fill(gu, 2 * n, 6.0f);
    if (n > 2) {
        gu[0] = -120.0f; /* exp(-g) overflows: silu -> -0 */
        gu[1] = 95.0f;
    }
    fill(dout, n, 1.0f);
    float *d_gu = dev_from(gu, 2 * n * 4), *d_dout = dev_from(dout, n * 4), *d_out, *d_dgu;
    die_if(pt_backend_alloc(gpu, (void **)&d_out, n * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dgu, 2 * n * 4), "alloc");
    die_if(cpu->swiglu_forward(cs, out, gu, N, H), "cpu swiglu");
    die_if(cpu->swiglu_backward(cs, dgu, dout, gu, N, H), "cpu swiglu bwd");
    die_if(gpu->swiglu_forward(gs, d_out, d_gu, N, H), "cuda swiglu");
    die_if(gpu->swiglu_backward(gs, d_dgu, d_dout, d_gu, N, H), "cuda swiglu bwd");
    char name[112];
    to_host(got, d_out, n * 4);
    snprintf(name, sizeof name, "swiglu_forward %dx%d", N, H);
    check(name, got, out, n, 1e-6f, 1e-5f);
    to_host(got, d_dgu, 2 * n * 4);
    snprintf(name, sizeof name, "swiglu_backward %dx%d", N, H);
    check(name, got, dgu, 2 * n, 1e-6f, 1e-5f);
    dev_free(d_gu);
    dev_free(d_dout);
    dev_free(d_out);
    dev_free(d_dgu);
    free(gu);
    free(dout);
    free(out);
    free(dgu);
    free(got);
}

/* pack_bf16 and unpack_bf16_upper (the nccl link's bf16 messages) on the device against the CPU
 * backend, bit for bit: n random floats packed (each the upper half of round_bf16's bits), the
 * packed words put in the upper half of an n-float buffer, widened in place there to exactly the
 * rounded floats (n = 1 and n below, at and past the 4096-float tail, and past a million: the
 * passes), a guard past the end untouched. */
static void test_pack_bf16(size_t n)
{
    float *x = malloc(n * 4), *ref = malloc(n * 4), *got = malloc((n + 1) * 4);
    uint16_t *pc = malloc(n * 2), *pg = malloc(n * 2);
    if (!x || !ref || !got || !pc || !pg) {
        fprintf(stderr, "FAIL pack_bf16: out of memory\n");
        exit(1);
    }
    if (!gpu->pack_bf16 || !gpu->unpack_bf16_upper || !cpu->pack_bf16 || !cpu->unpack_bf16_upper) {
        fprintf(stderr, "FAIL pack_bf16: missing from a backend table\n");
        failures++;
        return;
    }
    uint64_t st = 0x9e3779b97f4a7c15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = bf16_bits_to_float((uint32_t)(st >> 32) & 0xbfffffffu); /* finite-ish, both signs */
    }
    die_if(cpu->round_bf16(cs, ref, x, n), "cpu round_bf16");
    die_if(cpu->pack_bf16(cs, pc, x, n), "cpu pack_bf16");
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += (uint32_t)pc[i] << 16 != bf16_float_bits(ref[i]);
    float *dx = dev_from(x, n * 4), *dbuf;
    uint16_t *dp;
    die_if(pt_backend_alloc(gpu, (void **)&dp, n * 2), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&dbuf, (n + 1) * 4), "alloc");
    die_if(gpu->pack_bf16(gs, dp, dx, n), "cuda pack_bf16");
    const float guard = bf16_bits_to_float(0x12345678u);
    die_if(gpu->memcpy_h2d(gs, dbuf + n, &guard, 4), "h2d guard");
    die_if(gpu->memcpy_d2d(gs, (char *)dbuf + 2 * n, dp, n * 2), "d2d packed");
    die_if(gpu->unpack_bf16_upper(gs, dbuf, n), "cuda unpack_bf16_upper");
    to_host(pg, dp, n * 2);
    to_host(got, dbuf, (n + 1) * 4);
    die_if(gpu->stream_sync(gs), "cuda sync");
    for (size_t i = 0; i < n; i++) {
        int b = pg[i] != pc[i] || bf16_float_bits(got[i]) != bf16_float_bits(ref[i]);
        if (b && bad < 5)
            fprintf(stderr, "FAIL pack/unpack_bf16 n=%zu: element %zu: cpu 0x%04x, %s packed 0x%04x widened 0x%08x\n", n,
                    i, pc[i], gpu->name, pg[i], bf16_float_bits(got[i]));
        bad += b;
    }
    /* the CPU's in-place widening too */
    memcpy((char *)got + 2 * n, pc, n * 2);
    die_if(cpu->unpack_bf16_upper(cs, got, n), "cpu unpack_bf16_upper");
    for (size_t i = 0; i < n; i++)
        bad += bf16_float_bits(got[i]) != bf16_float_bits(ref[i]);
    /* unpack_bf16 (the bf16 activation stash) into a separate buffer, and round_pack_bf16 (a rounding
     * pass that packs too), on both backends */
    if (!gpu->unpack_bf16 || !cpu->unpack_bf16 || !gpu->round_pack_bf16 || !cpu->round_pack_bf16) {
        fprintf(stderr, "FAIL unpack_bf16 / round_pack_bf16: missing from a backend table\n");
        bad++;
    } else {
        die_if(gpu->memcpy_h2d(gs, dbuf + n, &guard, 4), "h2d guard");
        die_if(gpu->unpack_bf16(gs, dbuf, dp, n), "cuda unpack_bf16");
        to_host(got, dbuf, (n + 1) * 4);
        die_if(gpu->stream_sync(gs), "cuda sync");
        size_t wrong = bf16_float_bits(got[n]) != 0x12345678u;
        for (size_t i = 0; i < n; i++)
            wrong += bf16_float_bits(got[i]) != bf16_float_bits(ref[i]);
        die_if(cpu->unpack_bf16(cs, got, pc, n), "cpu unpack_bf16");
        for (size_t i = 0; i < n; i++)
            wrong += bf16_float_bits(got[i]) != bf16_float_bits(ref[i]);
        if (wrong)
            fprintf(stderr, "FAIL unpack_bf16 n=%zu: %zu elements wrong (or past the end)\n", n, wrong);
        bad += wrong;
        /* round_pack: x rounded in place (as round_bf16) and packed (as pack_bf16) */
        uint16_t *p2 = malloc(n * 2);
        if (!p2) {
            fprintf(stderr, "FAIL round_pack_bf16: out of memory\n");
            exit(1);
        }
        die_if(gpu->memset_zero(gs, dp, n * 2), "memset");
        die_if(gpu->round_pack_bf16(gs, dx, dp, n), "cuda round_pack_bf16");
        to_host(got, dx, n * 4);
        to_host(p2, dp, n * 2);
        die_if(gpu->stream_sync(gs), "cuda sync");
        wrong = 0;
        for (size_t i = 0; i < n; i++)
            wrong += bf16_float_bits(got[i]) != bf16_float_bits(ref[i]) || p2[i] != pc[i];
        memcpy(got, x, n * 4);
        die_if(cpu->round_pack_bf16(cs, got, p2, n), "cpu round_pack_bf16");
        for (size_t i = 0; i < n; i++)
            wrong += bf16_float_bits(got[i]) != bf16_float_bits(ref[i]) || p2[i] != pc[i];
        if (wrong)
            fprintf(stderr, "FAIL round_pack_bf16 n=%zu: %zu elements wrong\n", n, wrong);
        bad += wrong;
        free(p2);
    }
    if (bf16_float_bits(guard) != 0x12345678u)
        bad++;
    float tail;
    to_host(&tail, dbuf + n, 4);
    die_if(gpu->stream_sync(gs), "cuda sync");
    if (bf16_float_bits(tail) != 0x12345678u) {
        fprintf(stderr, "FAIL unpack_bf16_upper n=%zu: wrote past the end\n", n);
        bad++;
    }
    if (bad) {
        fprintf(stderr, "FAIL pack/unpack_bf16 n=%zu: %zu elements wrong\n", n, bad);
        failures++;
    } else {
        printf("ok   %-44s n=%-9zu bits equal the cpu backend's\n", "pack_bf16, unpack_bf16(_upper), round_pack", n);
    }
    dev_free(dx);
    dev_free(dp);
    dev_free(dbuf);
    free(x);
    free(ref);
    free(got);
    free(pc);
    free(pg);
}

/* round_bf16 on the device against the CPU backend, bit for bit: bf16_cases.h's hand-worked
 * cases (ties, FLT_MAX to Inf, signed zeros, infinities, signalling NaNs, subnormals) then n_random
 * random bit patterns (n not a multiple of the block size), out separate and in place, and from an
 * odd element; the CPU's bits also against the hand-worked table. A guard float past the end must
 * stay. */
static void test_round_bf16(size_t n_random)
{
    const size_t cap = BF16_N_CASES + n_random;
    float *x = malloc(cap * 4), *ref = malloc(cap * 4), *got = malloc((cap + 1) * 4);
    if (!x || !ref || !got) {
        fprintf(stderr, "FAIL round_bf16: out of memory\n");
        exit(1);
    }
    const size_t n = bf16_case_fill(x, n_random);
    if (gpu->round_bf16 == NULL || cpu->round_bf16 == NULL) {
        fprintf(stderr, "FAIL round_bf16: missing from the %s backend table\n",
                gpu->round_bf16 == NULL ? gpu->name : cpu->name);
        failures++;
        return;
    }
    die_if(cpu->round_bf16(cs, ref, x, n), "cpu round_bf16");
    die_if(cpu->stream_sync(cs), "cpu sync");
    for (size_t i = 0; i < BF16_N_CASES; i++)
        if (bf16_float_bits(ref[i]) != (uint32_t)bf16_cases[i].out << 16) {
            fprintf(stderr, "FAIL round_bf16 cpu: case 0x%08x (%s): want 0x%04x0000 got 0x%08x\n", bf16_cases[i].in,
                    bf16_cases[i].what, bf16_cases[i].out, bf16_float_bits(ref[i]));
            failures++;
        }
    const float guard = bf16_bits_to_float(0x12345678u);
    float *dx = dev_from(x, n * 4), *dout;
    die_if(pt_backend_alloc(gpu, (void **)&dout, (n + 1) * 4), "alloc");
    die_if(gpu->memcpy_h2d(gs, dout + n, &guard, 4), "h2d guard");
    for (int pass = 0; pass < 3; pass++) {
        /* 0: out separate; 1: in place; 2: in place from element 3 */
        const char *what = pass == 0 ? "round_bf16 out separate" : pass == 1 ? "round_bf16 in place"
                                                                           : "round_bf16 in place from element 3";
        size_t off = pass == 2 ? 3 : 0;
        if (pass == 0) {
            die_if(gpu->round_bf16(gs, dout, dx, n), "cuda round_bf16");
        } else {
            die_if(gpu->memcpy_h2d(gs, dout, x, n * 4), "h2d");
            die_if(gpu->round_bf16(gs, dout + off, dout + off, n - off), "cuda round_bf16 in place");
        }
        to_host(got, dout, (n + 1) * 4);
        die_if(gpu->stream_sync(gs), "cuda sync");
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t g = bf16_float_bits(got[i]), w = bf16_float_bits(i < off ? x[i] : ref[i]);
            if (g != w && bad++ < 5)
                fprintf(stderr, "FAIL %s: element %zu of %zu: input 0x%08x, cpu 0x%08x, %s 0x%08x\n", what, i, n,
                        bf16_float_bits(x[i]), w, gpu->name, g);
        }
        if (bf16_float_bits(got[n]) != 0x12345678u) {
            fprintf(stderr, "FAIL %s: wrote past element %zu (0x%08x)\n", what, n, bf16_float_bits(got[n]));
            bad++;
        }
        if (bad) {
            fprintf(stderr, "FAIL %s: %zu of %zu elements differ from the cpu backend\n", what, bad, n);
            failures++;
        } else {
            printf("ok   %-44s n=%-9zu bits equal the cpu backend's\n", what, n - off);
        }
    }
    dev_free(dx);
    dev_free(dout);
    free(x);
    free(ref);
    free(got);
}

/* Runs the order-sensitive kernels twice on the same inputs and compares bits. */
static void test_determinism(void)
{
    const int B = 2, T = 96, C = 128, NH = 2, V = 50;
    size_t nqkv = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = malloc(nqkv * 4), *dout = malloc(no * 4), *a = malloc(nqkv * 4), *b = malloc(nqkv * 4);
    int32_t tok[2 * 96];
    for (int i = 0; i < B * T; i++)
        tok[i] = i % 7; /* heavy repetition */
    fill(qkv, nqkv, 2.0f);
    fill(dout, no, 1.0f);
    float *d_qkv = dev_from(qkv, nqkv * 4), *d_dout = dev_from(dout, no * 4), *d_out, *d_saved, *d_scr, *d_dqkv;
    int32_t *d_tok = dev_from(tok, sizeof tok);
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dqkv, nqkv * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_saved, gpu->attention_saved_size(B, T, C, NH, NH) * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_scr, gpu->attention_scratch_size(B, T, C, NH, NH) * 4), "alloc");
    float *d_dwte, *d_dwpe, *d_dw, *d_db;
    die_if(pt_backend_alloc(gpu, (void **)&d_dwte, (size_t)V * C * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dwpe, (size_t)T * C * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dw, (size_t)3 * C * C * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_db, (size_t)3 * C * 4), "alloc");
    const char *names[4] = { "attention_backward", "embedding_backward dwte", "matmul_backward_weight dw",
                             "matmul_backward_weight dbias" };
    const float *bufs[4] = { d_dqkv, d_dwte, d_dw, d_db };
    size_t sizes[4] = { nqkv, (size_t)V * C, (size_t)3 * C * C, (size_t)3 * C };
    float *first[4];
    for (int run = 0; run < 2; run++) {
        die_if(gpu->memset_zero(gs, d_dwte, (size_t)V * C * 4), "memset");
        die_if(gpu->memset_zero(gs, d_dwpe, (size_t)T * C * 4), "memset");
        die_if(gpu->memset_zero(gs, d_dw, (size_t)3 * C * C * 4), "memset");
        die_if(gpu->memset_zero(gs, d_db, (size_t)3 * C * 4), "memset");
        die_if(gpu->attention_forward(gs, d_out, d_saved, d_scr, d_qkv, B, T, C, NH, NH), "att");
        die_if(gpu->attention_backward(gs, d_dqkv, d_scr, d_dout, d_qkv, d_out, d_saved, B, T, C, NH, NH), "att bwd");
        die_if(gpu->embedding_backward(gs, d_dwte, d_dwpe, d_dout, d_tok, B, T, C), "emb bwd");
        die_if(gpu->matmul_backward_weight(gs, d_dw, d_db, d_qkv, d_dout, B * T, C, 3 * C), "mm bwd");
        for (int k = 0; k < 4; k++) {
            float *h = malloc(sizes[k] * 4);
            to_host(h, bufs[k], sizes[k] * 4);
            if (run == 0) {
                first[k] = h;
            } else {
                check_bits(names[k], first[k], h, sizes[k]);
                free(first[k]);
                free(h);
            }
        }
    }
    { /* the shard cross-entropy's statistics (sums and argmax through the block trees), two shards */
        const int N = 3, V0 = 1700, V1 = 1300;
        float *x0 = malloc((size_t)N * V0 * 4), *x1 = malloc((size_t)N * V1 * 4);
        float *st[2] = { malloc((size_t)N * PT_XENT_STATS * 4), malloc((size_t)N * PT_XENT_STATS * 4) };
        int32_t t3[3] = { 5, 1800, -1 };
        fill(x0, (size_t)N * V0, 8.0f);
        fill(x1, (size_t)N * V1, 8.0f);
        float *d_x0 = dev_from(x0, (size_t)N * V0 * 4), *d_x1 = dev_from(x1, (size_t)N * V1 * 4);
        float *d_e0, *d_e1, *d_rm, *d_st;
        int32_t *d_t3 = dev_from(t3, sizeof t3);
        die_if(pt_backend_alloc(gpu, (void **)&d_e0, (size_t)N * V0 * 4), "alloc");
        die_if(pt_backend_alloc(gpu, (void **)&d_e1, (size_t)N * V1 * 4), "alloc");
        die_if(pt_backend_alloc(gpu, (void **)&d_rm, (size_t)N * 4), "alloc");
        die_if(pt_backend_alloc(gpu, (void **)&d_st, (size_t)N * PT_XENT_STATS * 4), "alloc");
        for (int run = 0; run < 2; run++) {
            die_if(gpu->xent_shard_forward(gs, d_st, d_e0, d_rm, NULL, d_x0, d_t3, N, V0, 0, V0 + V1), "xent");
            die_if(gpu->xent_shard_forward(gs, d_st, d_e1, d_rm, d_st, d_x1, d_t3, N, V1, V0, V0 + V1), "xent");
            to_host(st[run], d_st, (size_t)N * PT_XENT_STATS * 4);
        }
        check_bits("xent_shard_forward stats", st[0], st[1], (size_t)N * PT_XENT_STATS);
        float *d[] = { d_x0, d_x1, d_e0, d_e1, d_rm, d_st };
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
            dev_free(d[i]);
        dev_free(d_t3);
        free(x0);
        free(x1);
        free(st[0]);
        free(st[1]);
    }
    { /* grouped-query attention backward (kv gradients summed over groups of 2) and RMSNorm's dw */
        const int NKV = 1, W = C + 2 * NKV * (C / NH), N = 3000, CR = 40;
        size_t ng = (size_t)B * T * W, nr = (size_t)N * CR;
        float *q = malloc(ng * 4), *x = malloc(nr * 4), *dy = malloc(nr * 4), *rs = malloc(N * 4);
        float *h[2][2];
        fill(q, ng, 2.0f);
        fill(x, nr, 1.0f);
        fill(dy, nr, 1.0f);
        for (int i = 0; i < N; i++)
            rs[i] = 1.0f + 0.5f * frand();
        float *d_q = dev_from(q, ng * 4), *d_x = dev_from(x, nr * 4), *d_dy = dev_from(dy, nr * 4),
              *d_rs = dev_from(rs, N * 4), *d_dq, *d_dwr;
        die_if(pt_backend_alloc(gpu, (void **)&d_dq, ng * 4), "alloc");
        die_if(pt_backend_alloc(gpu, (void **)&d_dwr, CR * 4), "alloc");
        for (int run = 0; run < 2; run++) {
            die_if(gpu->memset_zero(gs, d_dwr, CR * 4), "memset");
            die_if(gpu->attention_forward(gs, d_out, d_saved, d_scr, d_q, B, T, C, NH, NKV), "att gqa");
            die_if(gpu->attention_backward(gs, d_dq, d_scr, d_dout, d_q, d_out, d_saved, B, T, C, NH, NKV),
                   "att gqa bwd");
            die_if(gpu->rmsnorm_backward_weight(gs, d_dwr, d_dy, d_x, d_rs, N, CR), "rmsnorm bwd w");
            h[run][0] = malloc(ng * 4);
            h[run][1] = malloc(CR * 4);
            to_host(h[run][0], d_dq, ng * 4);
            to_host(h[run][1], d_dwr, CR * 4);
        }
        check_bits("attention_backward NKV 1 (group sums)", h[0][0], h[1][0], ng);
        check_bits("rmsnorm_backward_weight dw", h[0][1], h[1][1], CR);
        float *d[] = { d_q, d_x, d_dy, d_rs, d_dq, d_dwr };
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
            dev_free(d[i]);
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 2; k++)
                free(h[r][k]);
        free(q);
        free(x);
        free(dy);
        free(rs);
    }
    (void)a;
    (void)b;
    float *dev[] = { d_qkv, d_dout, d_out, d_saved, d_scr, d_dqkv, d_dwte, d_dwpe, d_dw, d_db };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        dev_free(dev[i]);
    dev_free(d_tok);
    free(qkv);
    free(dout);
    free(a);
    free(b);
}

/* The fused forms (pipetrain/backend.h): each against the same backend's split calls, bit for
 * bit, and against the CPU's fused entry within the split kernels' bounds (a bf16 rounding may
 * land one bf16 step, 2^-8 relative, apart where the fp32 values differ in the last bits). */
static float *dev_copy_of(const float *d, size_t n)
{
    float *c;
    die_if(pt_backend_alloc(gpu, (void **)&c, n * 4), "alloc");
    die_if(gpu->memcpy_d2d(gs, c, d, n * 4), "d2d");
    return c;
}

static void expect_bits_dev(const char *what, const float *d_a, const float *d_b, size_t n)
{
    float *a = malloc(n * 4), *b = malloc(n * 4);
    to_host(a, d_a, n * 4);
    to_host(b, d_b, n * 4);
    check_bits(what, a, b, n);
    free(a);
    free(b);
}

static void expect_close_dev(const char *what, const float *d_got, const float *ref, size_t n, float atol, float rtol)
{
    float *got = malloc(n * 4);
    to_host(got, d_got, n * 4);
    check(what, got, ref, n, atol, rtol);
    free(got);
}

/* The fused residual add + norm of backend `be`: add_rmsnorm_forward (rms, no mean or bias) or
 * add_layernorm_forward. */
static pt_status fused_norm(const pt_backend *be, pt_stream *st, int rms, float *res, float *out, float *mean,
                            float *rstd, const float *a, const float *b, const float *w, const float *bias, int N,
                            int C, float eps, int rnd)
{
    return rms ? be->add_rmsnorm_forward(st, res, out, rstd, a, b, w, N, C, eps, rnd)
               : be->add_layernorm_forward(st, res, out, mean, rstd, a, b, w, bias, N, C, rnd);
}

static void test_fused_norm(int N, int C, int rms, int rnd)
{
    size_t n = (size_t)N * C;
    const float eps = 1e-5f, rt = rnd ? 8e-3f : 2e-5f, rtb = rnd ? 8e-3f : 1e-4f;
    char name[128];
    const char *nm = rms ? "add_rmsnorm" : "add_layernorm";
    float *a = malloc(n * 4), *b = malloc(n * 4), *w = malloc(C * 4), *bias = malloc(C * 4), *dout = malloc(n * 4),
          *resid = malloc(n * 4);
    float *res = malloc(n * 4), *out = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4), *dx = malloc(n * 4);
    fill(a, n, 2.0f);
    fill(b, n, 1.0f);
    fill(w, C, 1.0f);
    fill(bias, C, 1.0f);
    fill(dout, n, 1.0f);
    fill(resid, n, 1.0f);
    float *d_a = dev_from(a, n * 4), *d_b = dev_from(b, n * 4), *d_w = dev_from(w, C * 4);
    float *d_bias = dev_from(bias, C * 4);
    float *d_dout = dev_from(dout, n * 4), *d_resid = dev_from(resid, n * 4);
    float *d_res = dev_from(a, n * 4), *d_out = dev_from(a, n * 4), *d_res_r = dev_from(a, n * 4);
    float *d_out_r = dev_from(a, n * 4);
    float *d_mean = dev_from(mean, N * 4), *d_rstd = dev_from(rstd, N * 4), *d_mean_r = dev_from(mean, N * 4),
          *d_rstd_r = dev_from(rstd, N * 4), *d_dx = dev_from(a, n * 4), *d_dx_r = dev_from(a, n * 4);
    /* forward: add, round, norm, round on the device against the fused entry */
    die_if(gpu->add(gs, d_res_r, d_a, d_b, n), "add");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_res_r, d_res_r, n), "round");
    if (rms)
        die_if(gpu->rmsnorm_forward(gs, d_out_r, d_rstd_r, d_res_r, d_w, N, C, eps), "rms");
    else
        die_if(gpu->layernorm_forward(gs, d_out_r, d_mean_r, d_rstd_r, d_res_r, d_w, d_bias, N, C), "ln");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_out_r, d_out_r, n), "round");
    die_if(fused_norm(gpu, gs, rms, d_res, d_out, d_mean, d_rstd, d_a, d_b, d_w, d_bias, N, C, eps, rnd), "fused norm");
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d res == split", nm, N, C, rnd);
    expect_bits_dev(name, d_res, d_res_r, n);
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d out == split", nm, N, C, rnd);
    expect_bits_dev(name, d_out, d_out_r, n);
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d rstd == split", nm, N, C, rnd);
    expect_bits_dev(name, d_rstd, d_rstd_r, N);
    /* res over its first operand */
    float *d_a2 = dev_copy_of(d_a, n);
    die_if(fused_norm(gpu, gs, rms, d_a2, d_out, d_mean, d_rstd, d_a2, d_b, d_w, d_bias, N, C, eps, rnd), "fused norm");
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d res aliasing a", nm, N, C, rnd);
    expect_bits_dev(name, d_a2, d_res_r, n);
    /* b NULL: the norm of the sum alone, rounded, against the split norm + round of the same rows */
    if (rms)
        die_if(gpu->rmsnorm_forward(gs, d_out_r, d_rstd_r, d_res_r, d_w, N, C, eps), "rms");
    else
        die_if(gpu->layernorm_forward(gs, d_out_r, d_mean_r, d_rstd_r, d_res_r, d_w, d_bias, N, C), "ln");
    die_if(fused_norm(gpu, gs, rms, NULL, d_out, d_mean, d_rstd, d_res_r, NULL, d_w, d_bias, N, C, eps, rnd),
           "fused norm");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_out_r, d_out_r, n), "round");
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d b NULL == split", nm, N, C, rnd);
    expect_bits_dev(name, d_out, d_out_r, n);
    /* against the CPU's fused entry */
    die_if(fused_norm(cpu, cs, rms, res, out, mean, rstd, a, b, w, bias, N, C, eps, rnd), "cpu fused norm");
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d res vs CPU", nm, N, C, rnd);
    expect_close_dev(name, d_res, res, n, 0.0f, 0.0f); /* a sum and a rounding: exact on both */
    snprintf(name, sizeof name, "%s_forward %dx%d rnd %d out vs CPU", nm, N, C, rnd);
    expect_close_dev(name, d_out, out, n, 2e-6f, rt);
    /* backward from the CPU's statistics and sums, so only the backward is compared with it */
    die_if(gpu->memcpy_h2d(gs, d_res, res, n * 4), "h2d");
    die_if(gpu->memcpy_h2d(gs, d_rstd, rstd, N * 4), "h2d");
    if (!rms)
        die_if(gpu->memcpy_h2d(gs, d_mean, mean, N * 4), "h2d");
    if (rms)
        die_if(gpu->rmsnorm_backward_input(gs, d_dx_r, d_dout, d_res, d_w, d_rstd, N, C), "rms bwd");
    else
        die_if(gpu->layernorm_backward_input(gs, d_dx_r, d_dout, d_res, d_w, d_mean, d_rstd, N, C), "ln bwd");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_dx_r, d_dx_r, n), "round");
    die_if(gpu->add(gs, d_dx_r, d_dx_r, d_resid, n), "add");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_dx_r, d_dx_r, n), "round");
    if (rms)
        die_if(gpu->rmsnorm_backward_input_add(gs, d_dx, d_dout, d_res, d_w, d_rstd, d_resid, N, C, rnd), "fused");
    else
        die_if(gpu->layernorm_backward_input_add(gs, d_dx, d_dout, d_res, d_w, d_mean, d_rstd, d_resid, N, C, rnd),
               "fused");
    snprintf(name, sizeof name, "%s backward_input_add %dx%d rnd %d == split", rms ? "rmsnorm" : "layernorm", N, C,
             rnd);
    expect_bits_dev(name, d_dx, d_dx_r, n);
    if (rms)
        die_if(cpu->rmsnorm_backward_input_add(cs, dx, dout, res, w, rstd, resid, N, C, rnd), "cpu fused");
    else
        die_if(cpu->layernorm_backward_input_add(cs, dx, dout, res, w, mean, rstd, resid, N, C, rnd), "cpu fused");
    snprintf(name, sizeof name, "%s backward_input_add %dx%d rnd %d vs CPU", rms ? "rmsnorm" : "layernorm", N, C,
             rnd);
    expect_close_dev(name, d_dx, dx, n, 2e-5f, rtb);
    float *dev[] = { d_a, d_b, d_w, d_bias, d_dout, d_resid, d_res, d_out, d_res_r, d_out_r, d_mean, d_rstd,
                     d_mean_r, d_rstd_r, d_dx, d_dx_r, d_a2 };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        dev_free(dev[i]);
    float *host[] = { a, b, w, bias, dout, resid, res, out, mean, rstd, dx };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

static void test_fused_gelu(int N, int F, int rnd, int with_bias)
{
    size_t n = (size_t)N * F;
    char name[128];
    float *x = malloc(n * 4), *xb = malloc(n * 4), *bias = malloc(F * 4), *dout = malloc(n * 4), *out = malloc(n * 4),
          *dx = malloc(n * 4);
    fill(x, n, 4.0f);
    fill(bias, F, 1.0f);
    fill(dout, n, 1.0f);
    for (size_t i = 0; i < n; i++)
        xb[i] = with_bias ? x[i] + bias[i % F] : x[i]; /* the bias after the product, as on the CPU */
    float *d_x = dev_from(x, n * 4), *d_xr = dev_from(xb, n * 4), *d_bias = dev_from(bias, F * 4);
    float *d_out = dev_from(x, n * 4), *d_out_r = dev_from(x, n * 4), *d_dout = dev_from(dout, n * 4);
    float *d_dd = dev_from(dout, n * 4), *d_dx = dev_from(x, n * 4), *d_dx_r = dev_from(x, n * 4);
    if (rnd)
        die_if(gpu->round_bf16(gs, d_xr, d_xr, n), "round");
    die_if(gpu->gelu_forward(gs, d_out_r, d_xr, n), "gelu");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_out_r, d_out_r, n), "round");
    die_if(gpu->bias_gelu_forward(gs, d_x, d_out, with_bias ? d_bias : NULL, N, F, rnd), "bias_gelu");
    snprintf(name, sizeof name, "bias_gelu_forward %dx%d rnd %d bias %d x == split", N, F, rnd, with_bias);
    expect_bits_dev(name, d_x, d_xr, n);
    snprintf(name, sizeof name, "bias_gelu_forward %dx%d rnd %d bias %d out == split", N, F, rnd, with_bias);
    expect_bits_dev(name, d_out, d_out_r, n);
    die_if(cpu->bias_gelu_forward(cs, x, out, with_bias ? bias : NULL, N, F, rnd), "cpu bias_gelu");
    snprintf(name, sizeof name, "bias_gelu_forward %dx%d rnd %d x vs CPU", N, F, rnd);
    expect_close_dev(name, d_x, x, n, 0.0f, 0.0f);
    snprintf(name, sizeof name, "bias_gelu_forward %dx%d rnd %d out vs CPU", N, F, rnd);
    expect_close_dev(name, d_out, out, n, 1e-6f, rnd ? 8e-3f : 1e-5f);
    /* gradient: round, gelu_backward, round; then in place over dout */
    if (rnd)
        die_if(gpu->round_bf16(gs, d_dd, d_dd, n), "round");
    die_if(gpu->gelu_backward(gs, d_dx_r, d_x, d_dd, n), "gelu bwd");
    if (rnd)
        die_if(gpu->round_bf16(gs, d_dx_r, d_dx_r, n), "round");
    die_if(gpu->gelu_backward_round(gs, d_dx, d_x, d_dout, n, rnd), "gelu bwd round");
    snprintf(name, sizeof name, "gelu_backward_round n %zu rnd %d == split", n, rnd);
    expect_bits_dev(name, d_dx, d_dx_r, n);
    die_if(gpu->gelu_backward_round(gs, d_dout, d_x, d_dout, n, rnd), "gelu bwd round aliased");
    snprintf(name, sizeof name, "gelu_backward_round n %zu rnd %d aliased", n, rnd);
    expect_bits_dev(name, d_dout, d_dx_r, n);
    die_if(cpu->gelu_backward_round(cs, dx, x, dout, n, rnd), "cpu gelu bwd round");
    snprintf(name, sizeof name, "gelu_backward_round n %zu rnd %d vs CPU", n, rnd);
    expect_close_dev(name, d_dx, dx, n, 1e-5f, rnd ? 8e-3f : 1e-4f);
    float *dev[] = { d_x, d_xr, d_bias, d_out, d_out_r, d_dout, d_dd, d_dx, d_dx_r };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        dev_free(dev[i]);
    float *host[] = { x, xb, bias, dout, out, dx };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

/* crossentropy with rnd against round_bf16 + the fp32 entry, bit for bit (in place, as the head
 * calls it), and the CPU's within the split kernels' bounds */
static void test_fused_xent(int N, int V)
{
    size_t n = (size_t)N * V;
    char name[128];
    float *logits = malloc(n * 4), *loss = malloc(N * 4), *probs = malloc(n * 4), *dl = malloc(n * 4);
    int32_t *tgt = malloc(N * sizeof *tgt);
    fill(logits, n, 8.0f);
    for (int i = 0; i < N; i++)
        tgt[i] = i % 5 == 4 ? -1 : (int32_t)((unsigned)(i * 7919) % (unsigned)V);
    const float dloss = 1.0f / (float)N;
    float *d_lg = dev_from(logits, n * 4), *d_lr = dev_from(logits, n * 4), *d_loss = dev_from(loss, N * 4),
          *d_loss_r = dev_from(loss, N * 4), *d_dl_r = dev_from(logits, n * 4);
    int32_t *d_tgt = dev_from(tgt, N * sizeof *tgt);
    die_if(gpu->round_bf16(gs, d_lr, d_lr, n), "round");
    die_if(gpu->crossentropy_forward(gs, d_loss_r, d_lr, d_lr, d_tgt, N, V, 0), "ce");
    die_if(gpu->crossentropy_forward(gs, d_loss, d_lg, d_lg, d_tgt, N, V, 1), "ce rnd");
    snprintf(name, sizeof name, "crossentropy_forward rnd %dx%d losses == split", N, V);
    expect_bits_dev(name, d_loss, d_loss_r, N);
    snprintf(name, sizeof name, "crossentropy_forward rnd %dx%d probs == split", N, V);
    expect_bits_dev(name, d_lg, d_lr, n);
    die_if(gpu->crossentropy_backward(gs, d_dl_r, d_lr, d_tgt, dloss, N, V, 0), "ce bwd");
    die_if(gpu->round_bf16(gs, d_dl_r, d_dl_r, n), "round");
    die_if(gpu->crossentropy_backward(gs, d_lg, d_lg, d_tgt, dloss, N, V, 1), "ce bwd rnd");
    snprintf(name, sizeof name, "crossentropy_backward rnd %dx%d == split", N, V);
    expect_bits_dev(name, d_lg, d_dl_r, n);
    die_if(cpu->crossentropy_forward(cs, loss, probs, logits, tgt, N, V, 1), "cpu ce rnd");
    die_if(cpu->crossentropy_backward(cs, dl, probs, tgt, dloss, N, V, 1), "cpu ce bwd rnd");
    snprintf(name, sizeof name, "crossentropy_forward rnd %dx%d losses vs CPU", N, V);
    expect_close_dev(name, d_loss, loss, N, 1e-5f, 1e-5f);
    snprintf(name, sizeof name, "crossentropy_backward rnd %dx%d vs CPU", N, V);
    expect_close_dev(name, d_lg, dl, n, 1e-9f, 8e-3f);
    dev_free(d_lg);
    dev_free(d_lr);
    dev_free(d_loss);
    dev_free(d_loss_r);
    dev_free(d_dl_r);
    dev_free(d_tgt);
    free(logits);
    free(loss);
    free(probs);
    free(dl);
    free(tgt);
}

static void test_fused(void)
{
    const int shapes[][2] = { { 1, 7 }, { 37, 100 }, { 9, 1030 } }; /* a lane with one element, uneven lanes */
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int rnd = 0; rnd < 2; rnd++) {
            test_fused_norm(shapes[k][0], shapes[k][1], 0, rnd);
            test_fused_norm(shapes[k][0], shapes[k][1], 1, rnd);
            test_fused_gelu(shapes[k][0], 4 * shapes[k][1], rnd, 1);
            test_fused_gelu(shapes[k][0], shapes[k][1], rnd, 0);
        }
    test_fused_xent(1, 1);
    test_fused_xent(13, 1001);
}

int main(int argc, char **argv)
{
    const char *group = argc > 1 ? argv[1] : "fp32";
    if (strcmp(group, "fp32") != 0 && strcmp(group, "bf16") != 0 && strcmp(group, "determinism") != 0 &&
        strcmp(group, "llama") != 0 && strcmp(group, "tp") != 0 && strcmp(group, "round_bf16") != 0 &&
        strcmp(group, "fused") != 0) {
        fprintf(stderr, "usage: test_cuda_kernels fp32|bf16|determinism|llama|tp|round_bf16|fused\n");
        return 2;
    }
#ifdef PT_CUDA_EMU_DRIVER
    if (strcmp(group, "bf16") == 0) {
        fprintf(stderr, "bf16 rounding happens inside cuBLAS, which the emulator replaces by an fp32 GEMM\n");
        return 2;
    }
    die_if(pt_backend_get("cpu", &cpu), "cpu backend");
    gpu = &pt_backend_cuda_emu;
    die_if(cpu->stream_create(&(pt_stream_opts){ .n_threads = 0 }, &cs), "cpu stream");
    die_if(gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &gs), "emulated stream");
    if (strcmp(group, "fp32") == 0) {
        test_elementwise();
        test_adamw();
        test_matmul_shape("emulated", 1, 1, 1, 5e-6f, 1e-5f);
        test_matmul_shape("emulated", 37, 24, 19, 5e-6f, 1e-5f);
        test_matmul_shape("emulated", 270001, 3, 5, 5e-6f, 1e-5f); /* bias sums over wide row blocks */
        test_layernorm(1, 7);
        test_layernorm(70, 100);
        test_layernorm(5000, 40); /* 20 row blocks of the weight-gradient sums */
        test_attention(1, 1, 32, 1, 1);
        test_attention(2, 37, 96, 3, 3);  /* hs 32, T not a tile multiple, warps past T */
        test_attention(1, 70, 128, 2, 2); /* hs 64, three row blocks */
        test_attention(2, 300, 256, 4, 4); /* hs 64, ten key tiles */
        test_attention(1, 40, 256, 2, 2); /* hs 128: more than 48 KiB of shared memory */
        test_attention(1, 33, 48, 3, 3);  /* hs 16 */
        test_attention(2, 35, 18, 3, 3);  /* hs 6: the scalar (not float4) dot products */
        test_attention_decode(1, 8, 0, 1, 32, 1, 1);
        test_attention_decode(2, 300, 257, 3, 96, 3, 3); /* three key tiles, the last partial */
        test_attention_decode(1, 64, 10, 1, 18, 3, 3);   /* hs 6 */
        test_embedding(2, 24, 40, 9, 1);
        test_embedding(1, 5, 2100, 3, 1); /* more channels than one pass */
        test_embedding(4, 256, 40, 3, 1);   /* N = 1024 positions, 3 tokens: ~340 of each */
        test_embedding(3, 77, 24, 1, 1);    /* one token everywhere: a single owner sums all 231 */
        test_embedding(2, 333, 16, 500, 1); /* N = 666, not a power of two: a partial last merge run */
        test_crossentropy(5, 1000);
        test_crossentropy(3, 50257);
        test_xent_shard(5, 1000, 1000, 1, (const int[]){ 0, 1000 });
        test_xent_shard(5, 1000, 990, 3, (const int[]){ 0, 1, 600, 1000 }); /* one-column shard, padding */
        test_xent_shard(4, 2100, 2050, 2, (const int[]){ 0, 1300, 2100 });   /* several columns per thread */
    } else if (strcmp(group, "llama") == 0) {
        test_attention(2, 37, 128, 4, 1);  /* hs 32, one kv head for all (multi-query) */
        test_attention(1, 70, 256, 4, 2);  /* hs 64, groups of 2, three row blocks */
        test_attention(2, 45, 96, 6, 3);   /* hs 16, groups of 2 */
        test_attention(1, 40, 256, 2, 1);  /* hs 128: more than 48 KiB of shared memory */
        test_attention(1, 33, 36, 6, 2);   /* hs 6: the scalar dot products, groups of 3 */
        test_attention(2, 37, 128, 4, 4);  /* NKV == NH through the same path */
        test_attention_decode(2, 300, 257, 3, 128, 4, 1);
        test_attention_decode(1, 64, 10, 2, 256, 4, 2);
        test_attention_decode(2, 20, 0, 5, 36, 6, 3); /* hs 6 */
        test_rmsnorm(1, 7);
        test_rmsnorm(70, 100);
        test_rmsnorm(5000, 40); /* 20 row blocks of the weight-gradient sums */
        test_rope(2, 37, 4, 2, 32, 0);
        test_rope(1, 5, 3, 1, 6, 250); /* pos0 > 0 (decode), hs 6 */
        test_rope(3, 16, 2, 2, 128, 7);
        test_swiglu(1, 1);
        test_swiglu(37, 352);
        test_swiglu(3, 100003); /* more elements than one block's grid stride */
        test_embedding(2, 24, 40, 9, 0);
        test_embedding(4, 256, 40, 3, 0);
    } else if (strcmp(group, "round_bf16") == 0) {
        test_round_bf16(((size_t)1 << 20) + 6);
        const size_t ns[] = { 1, 2, 3, 4095, 4096, 4097, 8193, ((size_t)1 << 20) + 7 };
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
            test_pack_bf16(ns[k]);
    } else if (strcmp(group, "fused") == 0) {
        test_fused();
    } else if (strcmp(group, "tp") == 0) {
        test_embedding_range(2, 24, 40, 12, 2, 1);
        test_embedding_range(2, 24, 40, 12, 3, 0);
        test_embedding_range(4, 100, 2100, 8, 4, 1); /* more channels than one pass, ~50 of each token */
        test_embedding_range(2, 333, 16, 500, 4, 1); /* N = 666: a partial last merge run */
        test_xent_combine(5, 1000, 990, 1, (const int[]){ 0, 1000 });
        test_xent_combine(5, 1000, 990, 4, (const int[]){ 0, 250, 500, 750, 1000 }); /* ranks, padded */
        test_xent_combine(4, 2100, 2050, 3, (const int[]){ 0, 1, 2049, 2100 }); /* a padding-only part */
    } else {
        test_determinism();
    }
#else
    int n_dev = 0;
    char why[160] = "";
    die_if(pt_cuda_device_count(&n_dev, why, sizeof why), "device count");
    if (n_dev == 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    setenv("PT_CUDA_MATMUL", strcmp(group, "bf16") == 0 ? "bf16" : "fp32", 1);
    die_if(pt_backend_get("cpu", &cpu), "cpu backend");
    die_if(pt_backend_get("cuda", &gpu), "cuda backend");
    die_if(cpu->stream_create(&(pt_stream_opts){ .n_threads = 0 }, &cs), "cpu stream");
    die_if(gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &gs), "cuda stream");
    if (strcmp(group, "fp32") == 0) {
        test_elementwise();
        test_adamw();
        test_matmul_shape("fp32", 1, 1, 1, 5e-6f, 1e-5f);
        test_matmul_shape("fp32", 257, 192, 77, 5e-6f, 1e-5f);
        test_matmul_shape("fp32", 512, 768, 2304, 5e-6f, 1e-5f);
        test_matmul_shape("fp32", 300001, 8, 8, 5e-6f, 1e-5f); /* bias sums over wide row blocks */
        test_layernorm(1, 7);
        test_layernorm(333, 768);
        test_layernorm(600, 1600);  /* two row blocks and a partial one */
        test_layernorm(300001, 8);  /* more than 1024 row blocks of 256: wider blocks */
        test_attention(1, 1, 32, 1, 1);
        test_attention(2, 37, 96, 3, 3);   /* hs 32, T not a tile multiple */
        test_attention(2, 130, 256, 4, 4); /* hs 64 */
        test_attention(1, 70, 256, 2, 2);  /* hs 128 */
        test_attention(2, 35, 18, 3, 3);   /* hs 6: the scalar (not float4) dot products */
        test_attention(1, 1024, 768, 12, 12); /* GPT-2 shape */
        test_attention_decode(1, 8, 0, 1, 32, 1, 1);
        test_attention_decode(2, 300, 257, 3, 96, 3, 3);
        test_attention_decode(4, 1024, 1000, 1, 768, 12, 12); /* GPT-2 shape, one new token */
        test_embedding(2, 64, 96, 40, 1);
        test_embedding(3, 50, 2100, 9, 1); /* more channels than one pass */
        test_embedding(8, 1024, 768, 50257, 1); /* GPT-2 shape */
        test_embedding(8, 1024, 64, 2, 1);      /* 8192 positions, 2 tokens */
        test_crossentropy(7, 50257);
        test_crossentropy(64, 256);
        test_xent_shard(7, 50304, 50257, 4, (const int[]){ 0, 12576, 25152, 37728, 50304 }); /* GPT-2, padded */
        test_xent_shard(64, 256, 256, 3, (const int[]){ 0, 1, 100, 256 });
        test_xent_shard(5, 1000, 990, 1, (const int[]){ 0, 1000 });
    } else if (strcmp(group, "llama") == 0) {
        test_attention(2, 37, 128, 4, 1);
        test_attention(2, 130, 512, 8, 2);    /* hs 64 */
        test_attention(1, 70, 256, 2, 1);     /* hs 128 */
        test_attention(1, 33, 36, 6, 2);      /* hs 6 */
        test_attention(1, 1024, 2048, 32, 8); /* Llama 3.2 1B shape */
        test_attention_decode(2, 300, 257, 3, 128, 4, 1);
        test_attention_decode(4, 1024, 1000, 1, 2048, 32, 8); /* Llama 3.2 1B, one new token */
        test_rmsnorm(1, 7);
        test_rmsnorm(333, 2048);
        test_rmsnorm(300001, 8); /* more than 1024 row blocks of 256: wider blocks */
        test_rope(2, 37, 4, 2, 32, 0);
        test_rope(1, 5, 3, 1, 6, 250);
        test_rope(4, 1024, 32, 8, 64, 0); /* Llama 3.2 1B */
        test_swiglu(37, 352);
        test_swiglu(1024, 8192); /* Llama 3.2 1B intermediate */
        test_embedding(8, 1024, 512, 128256, 0); /* Llama 3 vocabulary, no position table */
    } else if (strcmp(group, "round_bf16") == 0) {
        test_round_bf16(((size_t)1 << 20) + 6);
        const size_t ns[] = { 1, 2, 3, 4095, 4096, 4097, 8193, ((size_t)1 << 20) + 7 };
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
            test_pack_bf16(ns[k]);
    } else if (strcmp(group, "fused") == 0) {
        test_fused();
        test_fused_norm(8192, 768, 0, 1);  /* gpt2-small rows of a 8 x 1024 micro-batch */
        test_fused_norm(4096, 2048, 1, 1); /* Llama 3.2 1B */
        test_fused_gelu(8192, 3072, 1, 1);
        test_fused_xent(1280, 50304); /* a chunk of gpt2's LM head */
    } else if (strcmp(group, "tp") == 0) {
        test_embedding_range(8, 1024, 768, 50304, 4, 1); /* GPT-2, 4 ranks */
        test_embedding_range(2, 1024, 512, 128256, 8, 0); /* Llama 3 vocabulary, 8 ranks */
        test_embedding_range(8, 1024, 64, 8, 2, 1);       /* 8192 positions, 4 tokens per rank */
        test_xent_combine(7, 50304, 50257, 4, (const int[]){ 0, 12576, 25152, 37728, 50304 }); /* GPT-2, 4 ranks */
        test_xent_combine(64, 256, 256, 8, (const int[]){ 0, 32, 64, 96, 128, 160, 192, 224, 256 });
        test_xent_combine(5, 1000, 990, 1, (const int[]){ 0, 1000 });
    } else if (strcmp(group, "bf16") == 0) {
        /* bf16 mode: inputs rounded to 8 mantissa bits, fp32 accumulate; stated tolerance
         * |err| <= 1e-2 * sqrt(K) * amp^2 + 1e-2 * |ref| for inputs of amplitude 1. */
        test_matmul_shape("bf16", 257, 192, 77, 1e-2f, 1e-2f);
        test_matmul_shape("bf16", 1024, 768, 3072, 1e-2f, 1e-2f);
    } else {
        test_determinism();
    }
#endif
    gpu->stream_destroy(gs);
    cpu->stream_destroy(cs);
    if (pt_backend_bytes_in_use() != 0) {
        fprintf(stderr, "FAIL: %zu bytes still allocated at exit\n", pt_backend_bytes_in_use());
        failures++;
    }
    printf("%s: %d failure(s)\n", group, failures);
    return failures ? 1 : 0;
}
