/* tests/cuda/test_attention_flash.c — the tensor-core flash attention (kernels/cuda/attention_flash.cu,
 * chosen by PT_CUDA_ATTENTION=flash) against the CPU backend's attention (kernels/cpu/attention.c),
 * forward (out and the saved log-sum-exp) and backward (dq, dk, dv), causal, multi-head and
 * grouped-query, odd T, T not a multiple of the 64-row tile, head sizes 16 to 128.
 *
 * Built twice: as test_cuda_emu_flash (PT_CUDA_EMU_DRIVER) on the emulator's table, where the kernel
 * source runs on the CPU with the software WMMA of tests/cuda/emu/cuda_emu.h; and as test_cuda_flash
 * on the real CUDA backend (exits 77 without a GPU). The stream is created with
 * PT_CUDA_ATTENTION=flash, so the selection path of attention.cu is what is driven; a second stream
 * with the fp32 kernels runs their backward on the flash forward's saved state (the two
 * implementations share it).
 *
 * Tolerance. The CPU reference is fp32; the kernel rounds the inputs of its tile products to bf16
 * (unit roundoff u = 2^-9: |bf16(x) - x| <= u |x|) and accumulates in fp32. Each case runs twice:
 *   raw   inputs uniform in [-2, 2) (dout [-1, 1)): q, k, v, dO are rounded (u_in = u), and so are
 *         P and dS (u);
 *   exact the same inputs pre-rounded to bf16, so the kernel's input rounding is exact (u_in = 0)
 *         and only P and dS are rounded: a much tighter bound, which a masking or indexing slip
 *         far exceeds.
 * The bound of each element is first-order worst case, computed from the data in double
 * (bound_case), with a = scale sum_d |q_d k_d| the largest score magnitude of a row:
 *   score error <= 2 u_in a;  weight error of a row eta = 2 u_in a + u (the rounded P also sums l);
 *   |dO| <= (2 eta + u_in) max_j |v_jd|;  |dlse| <= eta;
 *   backward p = exp(s - lse): relative pi = 2 u_in a + eta;  |ddP_tj| <= 2 u_in sum_d |dO_td v_jd|;
 *   |dD_t| <= sum_d |dO_td| |dO error_td|;  |ddS_tj| <= (pi + u) |dS_tj| + p_tj (|ddP| + |dD_t|);
 *   dq_td <= scale sum_j (|ddS_tj| + u_in |dS_tj|) |k_jd|, dk likewise with q (summed over the
 *   group's heads), dv_jd <= sum_t p_tj (pi + u + u_in) |dO_td|;
 * times 1.1 (second-order terms), plus 4e-5 of the sum of the magnitudes of the terms of the
 * element (fp32 accumulation in another order, both sides) plus 1e-6. The report gives the largest
 * error and the largest error / bound ratio of each tensor. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"

#ifdef PT_CUDA_EMU_DRIVER
extern const pt_backend pt_backend_cuda_emu;
#endif
static const pt_backend *cpu, *gpu;
static pt_stream *cs, *gs, *gs32; /* gs: PT_CUDA_ATTENTION=flash, gs32: the fp32 kernels */
static int failures;
static uint64_t rng = 0x2545F4914F6CDD1Dull;
static const double U = 1.0 / 512.0; /* bf16 unit roundoff, 2^-9 */

static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* x rounded to the nearest bf16 (ties to even), as __float2bfloat16 does; x finite. */
static float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

static void die_if(pt_status st, const char *what)
{
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
        exit(1);
    }
}

static void *dev_from(const void *h, size_t bytes)
{
    void *d;
    die_if(pt_backend_alloc(gpu, &d, bytes), "alloc");
    die_if(gpu->memcpy_h2d(gs, d, h, bytes), "h2d");
    return d;
}

/* The bounds of one case (see the file comment), element by element, in the layouts of out (B,T,C),
 * lse (B,NH,T) and dqkv (B,T,W). */
static void bound_case(double *bo, double *bl, double *bd, const float *qkv, const float *dout, int B, int T, int C,
                       int NH, int NKV, double u_in)
{
    const int hs = C / NH, W = C + 2 * NKV * hs, G = NH / NKV;
    const double scale = 1.0 / sqrt((double)hs);
    memset(bd, 0, (size_t)B * T * W * sizeof *bd);
    double *p = malloc((size_t)T * sizeof *p), *dp = malloc((size_t)T * sizeof *dp);
    double *o = malloc((size_t)T * hs * sizeof *o), *oerr = malloc((size_t)T * hs * sizeof *oerr);
    double *eta = malloc((size_t)T * sizeof *eta), *a = malloc((size_t)T * sizeof *a);
    double *lse = malloc((size_t)T * sizeof *lse);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int g = h / G;
            const float *Q = qkv + (size_t)b * T * W + (size_t)h * hs;
            const float *K = qkv + (size_t)b * T * W + C + (size_t)g * hs, *V = K + (size_t)NKV * hs;
            const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
            double *dQb = bd + (size_t)b * T * W + (size_t)h * hs, *dKb = bd + (size_t)b * T * W + C + (size_t)g * hs;
            double *dVb = dKb + (size_t)NKV * hs;
            /* forward: exact p, O, lse; the row's a, eta and the bounds of out and lse */
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, at = 0.0;
                for (int j = 0; j <= t; j++) {
                    double s = 0.0, sa = 0.0;
                    for (int d = 0; d < hs; d++) {
                        s += (double)Q[(size_t)t * W + d] * K[(size_t)j * W + d];
                        sa += fabs((double)Q[(size_t)t * W + d] * K[(size_t)j * W + d]);
                    }
                    p[j] = s * scale;
                    at = fmax(at, sa * scale);
                    mx = fmax(mx, p[j]);
                }
                double l = 0.0;
                for (int j = 0; j <= t; j++)
                    l += (p[j] = exp(p[j] - mx));
                lse[t] = mx + log(l);
                a[t] = at;
                eta[t] = 2.0 * u_in * at + U;
                for (int d = 0; d < hs; d++) {
                    double acc = 0.0, vmax = 0.0;
                    for (int j = 0; j <= t; j++) {
                        acc += p[j] / l * V[(size_t)j * W + d];
                        vmax = fmax(vmax, fabs((double)V[(size_t)j * W + d]));
                    }
                    o[(size_t)t * hs + d] = acc;
                    oerr[(size_t)t * hs + d] = (2.0 * eta[t] + u_in) * vmax;
                    bo[((size_t)b * T + t) * C + (size_t)h * hs + d] = 1.1 * oerr[(size_t)t * hs + d] + 1e-6;
                }
                bl[((size_t)b * NH + h) * T + t] = 1.1 * eta[t] + 1e-6;
            }
            /* backward */
            for (int t = 0; t < T; t++) {
                double D = 0.0, dD = 0.0;
                for (int d = 0; d < hs; d++) {
                    D += (double)dO[(size_t)t * C + d] * o[(size_t)t * hs + d];
                    dD += fabs((double)dO[(size_t)t * C + d]) * oerr[(size_t)t * hs + d];
                }
                const double pi = 2.0 * u_in * a[t] + eta[t];
                for (int j = 0; j <= t; j++) {
                    double s = 0.0, dpv = 0.0, bt = 0.0;
                    for (int d = 0; d < hs; d++) {
                        s += (double)Q[(size_t)t * W + d] * K[(size_t)j * W + d];
                        dpv += (double)dO[(size_t)t * C + d] * V[(size_t)j * W + d];
                        bt += fabs((double)dO[(size_t)t * C + d] * V[(size_t)j * W + d]);
                    }
                    const double pj = exp(s * scale - lse[t]), ds = pj * (dpv - D);
                    const double E = (pi + U) * fabs(ds) + pj * (2.0 * u_in * bt + dD) + u_in * fabs(ds);
                    for (int d = 0; d < hs; d++) {
                        const double qd = fabs((double)Q[(size_t)t * W + d]), kd = fabs((double)K[(size_t)j * W + d]);
                        const double dod = fabs((double)dO[(size_t)t * C + d]);
                        /* bound and the fp32 slack on the element's term magnitudes */
                        dQb[(size_t)t * W + d] += scale * (1.1 * E + 4e-5 * fabs(ds)) * kd;
                        dKb[(size_t)j * W + d] += scale * (1.1 * E + 4e-5 * fabs(ds)) * qd;
                        dVb[(size_t)j * W + d] += pj * (1.1 * (pi + U + u_in) + 4e-5) * dod;
                    }
                    p[j] = pj;
                    dp[j] = dpv;
                }
            }
        }
    for (size_t i = 0; i < (size_t)B * T * W; i++)
        bd[i] += 1e-6;
    free(p);
    free(dp);
    free(o);
    free(oerr);
    free(eta);
    free(a);
    free(lse);
}

/* |got - ref| <= bound element by element; prints the worst error and error/bound ratio. */
static void check_bound(const char *what, const float *got, const float *ref, const double *bound, size_t n)
{
    double worst = 0.0, ratio = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        if (!(err <= bound[i])) {
            fprintf(stderr, "FAIL %s: index %zu got %.9g want %.9g (error %.3g, bound %.3g)\n", what, i, got[i],
                    ref[i], err, bound[i]);
            failures++;
            return;
        }
        worst = fmax(worst, err);
        ratio = fmax(ratio, err / bound[i]);
    }
    printf("ok   %-58s max err %.3g, max err/bound %.3f\n", what, worst, ratio);
}

/* One case: forward and backward against the CPU backend, on the raw inputs and on the inputs
 * rounded to bf16 beforehand. */
static void test_case(int B, int T, int C, int NH, int NKV)
{
    const int hs = C / NH, W = C + 2 * NKV * hs;
    const size_t nqkv = (size_t)B * T * W, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    const size_t nsc = cpu->attention_scratch_size(B, T, C, NH, NKV), nsg = gpu->attention_scratch_size(B, T, C, NH, NKV);
    if (gpu->attention_saved_size(B, T, C, NH, NKV) != nl || cpu->attention_saved_size(B, T, C, NH, NKV) != nl) {
        fprintf(stderr, "FAIL saved size is not (B,NH,T) floats\n");
        failures++;
        return;
    }
    float *qkv = malloc(nqkv * 4), *dout = malloc(no * 4), *out = malloc(no * 4), *lse = malloc(nl * 4);
    float *dqkv = malloc(nqkv * 4), *scr = malloc((nsc + 1) * 4), *got = malloc(nqkv * 4);
    double *bo = malloc(no * sizeof *bo), *bl = malloc(nl * sizeof *bl), *bd = malloc(nqkv * sizeof *bd);
    for (size_t i = 0; i < nqkv; i++)
        qkv[i] = 2.0f * frand();
    for (size_t i = 0; i < no; i++)
        dout[i] = frand();
    float *d_qkv, *d_dout, *d_out, *d_lse, *d_dqkv, *d_scr;
    die_if(pt_backend_alloc(gpu, (void **)&d_qkv, nqkv * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dout, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_lse, nl * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dqkv, nqkv * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_scr, (nsg + 1) * 4), "alloc");
    for (int exact = 0; exact < 2; exact++) {
        if (exact) {
            for (size_t i = 0; i < nqkv; i++)
                qkv[i] = bf16_round(qkv[i]);
            for (size_t i = 0; i < no; i++)
                dout[i] = bf16_round(dout[i]);
        }
        const char *kind = exact ? "bf16-exact inputs" : "raw inputs";
        char name[160];
        die_if(gpu->memcpy_h2d(gs, d_qkv, qkv, nqkv * 4), "h2d");
        die_if(gpu->memcpy_h2d(gs, d_dout, dout, no * 4), "h2d");
        die_if(gpu->memset_zero(gs, d_dqkv, nqkv * 4), "memset");
        bound_case(bo, bl, bd, qkv, dout, B, T, C, NH, NKV, exact ? 0.0 : U);
        die_if(cpu->attention_forward(cs, out, lse, scr, qkv, B, T, C, NH, NKV), "cpu attention_forward");
        die_if(gpu->attention_forward(gs, d_out, d_lse, d_scr, d_qkv, B, T, C, NH, NKV), "flash attention_forward");
        die_if(gpu->memcpy_d2h(gs, got, d_out, no * 4), "d2h");
        snprintf(name, sizeof name, "forward out  B%d T%d hs%d NH%d NKV%d, %s", B, T, hs, NH, NKV, kind);
        check_bound(name, got, out, bo, no);
        die_if(gpu->memcpy_d2h(gs, got, d_lse, nl * 4), "d2h");
        snprintf(name, sizeof name, "forward lse  B%d T%d hs%d NH%d NKV%d, %s", B, T, hs, NH, NKV, kind);
        check_bound(name, got, lse, bl, nl);
        die_if(cpu->attention_backward(cs, dqkv, scr, dout, qkv, out, lse, B, T, C, NH, NKV), "cpu attention_backward");
        die_if(gpu->attention_backward(gs, d_dqkv, d_scr, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, NKV),
               "flash attention_backward");
        die_if(gpu->memcpy_d2h(gs, got, d_dqkv, nqkv * 4), "d2h");
        snprintf(name, sizeof name, "backward dqkv B%d T%d hs%d NH%d NKV%d, %s", B, T, hs, NH, NKV, kind);
        check_bound(name, got, dqkv, bd, nqkv);
        /* the fp32 backward on the flash forward's out and saved lse (the two share the saved
         * state): within the same bounds (it rounds nothing itself) */
        die_if(gpu->memset_zero(gs32, d_dqkv, nqkv * 4), "memset");
        die_if(gpu->attention_backward(gs32, d_dqkv, d_scr, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, NKV),
               "fp32 attention_backward after the flash forward");
        die_if(gpu->memcpy_d2h(gs32, got, d_dqkv, nqkv * 4), "d2h");
        snprintf(name, sizeof name, "fp32 backward of the flash forward, %s", kind);
        check_bound(name, got, dqkv, bd, nqkv);
    }
    pt_backend_free(gpu, d_qkv);
    pt_backend_free(gpu, d_dout);
    pt_backend_free(gpu, d_out);
    pt_backend_free(gpu, d_lse);
    pt_backend_free(gpu, d_dqkv);
    pt_backend_free(gpu, d_scr);
    free(qkv);
    free(dout);
    free(out);
    free(lse);
    free(dqkv);
    free(scr);
    free(got);
    free(bo);
    free(bl);
    free(bd);
}

/* Two runs of the same inputs give the same bits (fixed summation order, no atomics). */
static void test_determinism(int B, int T, int C, int NH, int NKV)
{
    const int hs = C / NH, W = C + 2 * NKV * hs;
    const size_t nqkv = (size_t)B * T * W, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    const size_t nsg = gpu->attention_scratch_size(B, T, C, NH, NKV);
    float *qkv = malloc(nqkv * 4), *dout = malloc(no * 4), *r[2];
    for (size_t i = 0; i < nqkv; i++)
        qkv[i] = 2.0f * frand();
    for (size_t i = 0; i < no; i++)
        dout[i] = frand();
    float *d_qkv = dev_from(qkv, nqkv * 4), *d_dout = dev_from(dout, no * 4), *d_out, *d_lse, *d_dqkv, *d_scr;
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_lse, nl * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_dqkv, nqkv * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_scr, (nsg + 1) * 4), "alloc");
    for (int k = 0; k < 2; k++) {
        r[k] = malloc((no + nqkv) * 4);
        die_if(gpu->attention_forward(gs, d_out, d_lse, d_scr, d_qkv, B, T, C, NH, NKV), "flash forward");
        die_if(gpu->attention_backward(gs, d_dqkv, d_scr, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, NKV),
               "flash backward");
        die_if(gpu->memcpy_d2h(gs, r[k], d_out, no * 4), "d2h");
        die_if(gpu->memcpy_d2h(gs, r[k] + no, d_dqkv, nqkv * 4), "d2h");
    }
    if (memcmp(r[0], r[1], (no + nqkv) * 4) != 0) {
        fprintf(stderr, "FAIL flash attention: two runs differ (B%d T%d C%d NH%d NKV%d)\n", B, T, C, NH, NKV);
        failures++;
    } else {
        printf("ok   %-58s bit-identical\n", "flash forward + backward, two runs");
    }
    pt_backend_free(gpu, d_qkv);
    pt_backend_free(gpu, d_dout);
    pt_backend_free(gpu, d_out);
    pt_backend_free(gpu, d_lse);
    pt_backend_free(gpu, d_dqkv);
    pt_backend_free(gpu, d_scr);
    free(qkv);
    free(dout);
    free(r[0]);
    free(r[1]);
}

/* A head size the flash kernel does not take (not a multiple of 16) runs the fp32 kernels:
 * within the fp32 test's 1e-5 + 1e-4 |ref| of the CPU. */
static void test_fallback(void)
{
    const int B = 1, T = 33, NH = 3, NKV = 3, C = 18, W = 3 * C;
    const size_t nqkv = (size_t)B * T * W, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = malloc(nqkv * 4), *out = malloc(no * 4), *lse = malloc(nl * 4), *got = malloc(no * 4);
    float *scr = malloc((cpu->attention_scratch_size(B, T, C, NH, NKV) + 1) * 4);
    for (size_t i = 0; i < nqkv; i++)
        qkv[i] = 2.0f * frand();
    float *d_qkv = dev_from(qkv, nqkv * 4), *d_out, *d_lse, *d_scr;
    die_if(pt_backend_alloc(gpu, (void **)&d_out, no * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_lse, nl * 4), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d_scr, (gpu->attention_scratch_size(B, T, C, NH, NKV) + 1) * 4), "alloc");
    die_if(cpu->attention_forward(cs, out, lse, scr, qkv, B, T, C, NH, NKV), "cpu forward");
    die_if(gpu->attention_forward(gs, d_out, d_lse, d_scr, d_qkv, B, T, C, NH, NKV), "forward hs 6");
    die_if(gpu->memcpy_d2h(gs, got, d_out, no * 4), "d2h");
    double worst = 0.0;
    for (size_t i = 0; i < no; i++) {
        double err = fabs((double)got[i] - out[i]);
        if (!(err <= 1e-5 + 1e-4 * fabs(out[i]))) {
            fprintf(stderr, "FAIL head size 6 with PT_CUDA_ATTENTION=flash: index %zu got %.9g want %.9g\n", i, got[i],
                    out[i]);
            failures++;
            break;
        }
        worst = fmax(worst, err);
    }
    printf("ok   %-58s max err %.3g\n", "head size 6 under flash: the fp32 kernels (1e-5)", worst);
    pt_backend_free(gpu, d_qkv);
    pt_backend_free(gpu, d_out);
    pt_backend_free(gpu, d_lse);
    pt_backend_free(gpu, d_scr);
    free(qkv);
    free(out);
    free(lse);
    free(got);
    free(scr);
}

/* PT_CUDA_ATTENTION is checked when a stream is created: a bad value (and, on the emulator, flash
 * on a pretend pre-Ampere GPU) is refused with a line naming the variable. */
static void test_bad_env(void)
{
    struct {
        const char *value, *cc, *want;
        pt_status st;
    } cases[] = {
        { "flashy", NULL, "PT_CUDA_ATTENTION is \"flashy\"", PT_EINVAL },
#ifdef PT_CUDA_EMU_DRIVER
        { "flash", "7.5", "compute capability 8.0", PT_ENOTSUP },
#endif
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("PT_CUDA_ATTENTION", cases[i].value, 1);
        if (cases[i].cc != NULL)
            setenv("PT_EMU_CC", cases[i].cc, 1);
        pt_stream *s = NULL;
        pt_status st = gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &s);
        unsetenv("PT_EMU_CC");
        if (st != cases[i].st || strstr(pt_last_error(), cases[i].want) == NULL) {
            fprintf(stderr, "FAIL PT_CUDA_ATTENTION=%s: status %d, message \"%s\"\n", cases[i].value, (int)st,
                    st == PT_OK ? "" : pt_last_error());
            failures++;
            if (s != NULL)
                gpu->stream_destroy(s);
            continue;
        }
        printf("ok   PT_CUDA_ATTENTION=%s%s%s refused: %s\n", cases[i].value, cases[i].cc ? " on compute " : "",
               cases[i].cc ? cases[i].cc : "", pt_last_error());
    }
    setenv("PT_CUDA_ATTENTION", "flash", 1);
#ifdef PT_CUDA_EMU_DRIVER
    /* bf16 matrix products asked for on a pretend pre-Ampere GPU: refused, naming the variable; the
     * default there (PT_CUDA_MATMUL unset) falls back to fp32 and creates the stream */
    unsetenv("PT_CUDA_ATTENTION");
    setenv("PT_EMU_CC", "7.0", 1);
    setenv("PT_CUDA_MATMUL", "bf16", 1);
    pt_stream *s = NULL;
    pt_status st = gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &s);
    if (st != PT_ENOTSUP || strstr(pt_last_error(), "PT_CUDA_MATMUL=bf16 needs a GPU of compute capability 8.0") == NULL) {
        fprintf(stderr, "FAIL PT_CUDA_MATMUL=bf16 on 7.0: status %d, message \"%s\"\n", (int)st,
                st == PT_OK ? "" : pt_last_error());
        failures++;
    } else
        printf("ok   PT_CUDA_MATMUL=bf16 on compute 7.0 refused: %s\n", pt_last_error());
    if (s != NULL)
        gpu->stream_destroy(s);
    s = NULL;
    unsetenv("PT_CUDA_MATMUL");
    st = gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &s);
    if (st != PT_OK) {
        fprintf(stderr, "FAIL the default matmul precision on 7.0: %s\n", pt_last_error());
        failures++;
    } else
        printf("ok   the default matmul precision on compute 7.0: a stream (fp32 products)\n");
    if (s != NULL)
        gpu->stream_destroy(s);
    unsetenv("PT_EMU_CC");
    setenv("PT_CUDA_ATTENTION", "flash", 1);
#endif
}

int main(int argc, char **argv)
{
    const int big = argc > 1 && strcmp(argv[1], "big") == 0;
    die_if(pt_backend_get("cpu", &cpu), "cpu backend");
#ifdef PT_CUDA_EMU_DRIVER
    gpu = &pt_backend_cuda_emu;
#else
    int n_dev = 0;
    char why[160] = "";
    die_if(pt_cuda_device_count(&n_dev, why, sizeof why), "device count");
    if (n_dev == 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    die_if(pt_backend_get("cuda", &gpu), "cuda backend");
#endif
    die_if(cpu->stream_create(&(pt_stream_opts){ .n_threads = 0 }, &cs), "cpu stream");
    test_bad_env();
    setenv("PT_CUDA_ATTENTION", "flash", 1);
    die_if(gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &gs), "stream with PT_CUDA_ATTENTION=flash");
    setenv("PT_CUDA_ATTENTION", "fp32", 1);
    die_if(gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &gs32), "stream with PT_CUDA_ATTENTION=fp32");
    test_case(1, 1, 64, 1, 1);     /* one row, one key */
    test_case(2, 37, 128, 2, 2);   /* hs 64, odd T inside one tile, rows past T in the block */
    test_case(1, 129, 256, 4, 2);  /* hs 64, GQA groups of 2, three row blocks, the last one row */
    test_case(1, 77, 256, 2, 1);   /* hs 128, one kv head for both (multi-query), odd T */
    test_case(1, 100, 512, 4, 2);  /* hs 128, GQA, two row blocks (the second partial) */
    test_case(2, 45, 96, 3, 3);    /* hs 32 (gpt2-tiny and llama-tiny's), multi-head */
    test_case(1, 33, 48, 3, 1);    /* hs 16, groups of 3 */
    test_case(1, 70, 240, 3, 3);   /* hs 80 (gpt3-2.7b's) */
    if (big) { /* on a GPU: the GPT-2 and Llama 3.2 1B shapes */
        test_case(1, 1024, 768, 12, 12);
        test_case(1, 1024, 2048, 32, 8);
        test_case(2, 333, 1024, 8, 2); /* hs 128 */
    }
    test_determinism(2, 100, 256, 4, 2);
    test_fallback();
    gpu->stream_destroy(gs);
    gpu->stream_destroy(gs32);
    cpu->stream_destroy(cs);
    if (pt_backend_bytes_in_use() != 0) {
        fprintf(stderr, "FAIL: %zu bytes still allocated at exit\n", pt_backend_bytes_in_use());
        failures++;
    }
    printf("flash attention: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
