/* bench/gpu/attention_bench.c — `bench_cuda_attention [ITERS]`: the CUDA backend's causal attention,
 * forward and backward, with the fp32 CUDA-core kernels (attention.cu, the default) and with the
 * tensor-core flash kernels (attention_flash.cu, PT_CUDA_ATTENTION=flash), on the same inputs, for
 * the GPT-2, GPT-2 medium, Llama 3.2 1B and Llama 3 8B attention shapes at T = 1024. Prints one JSON
 * object per shape on stdout:
 *   {"bench":"attention", "shape":..., "B","T","NH","NKV","hs", "fp32_fwd_ms", "fp32_bwd_ms",
 *    "flash_fwd_ms", "flash_bwd_ms", "speedup_fwd", "speedup_bwd", "flash_fwd_tflops",
 *    "flash_bwd_tflops", "max_abs_diff_out" (flash vs fp32 output: bf16 rounding, a few 1e-3)}
 * Each time is the median of ITERS (default 20) calls after 3 warm-up calls, each call timed from
 * its launch to a stream synchronisation. FLOPs count the causal half: forward 2 products of
 * 2 T^2 hs / 2 per (batch, head), backward 2.5 times that (the usual flash-attention count).
 * Built with the CUDA backend (tests/cuda/CMakeLists.txt); exits 77 without a GPU. Called by
 * bench/gpu/run.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"
#include "pipetrain/timeutil.h"

#define MAX_ITERS 200

static void die_if(pt_status st, const char *what)
{
    if (st != PT_OK) {
        fprintf(stderr, "bench_cuda_attention: %s: %s\n", what, pt_last_error());
        exit(1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    float *qkv, *dout, *out, *lse, *dqkv, *scr;
} bufs;

/* Median ms of `iters` forward (bwd = 0) or backward (bwd = 1) calls on stream s. */
static double time_att(const pt_backend *be, pt_stream *s, bufs *d, int bwd, int iters, int B, int T, int C, int NH,
                       int NKV)
{
    double ms[MAX_ITERS];
    for (int i = -3; i < iters; i++) {
        int64_t t0 = pt_now_ns();
        if (bwd)
            die_if(be->attention_backward(s, d->dqkv, d->scr, d->dout, d->qkv, d->out, d->lse, B, T, C, NH, NKV),
                   "attention_backward");
        else
            die_if(be->attention_forward(s, d->out, d->lse, d->scr, d->qkv, B, T, C, NH, NKV), "attention_forward");
        die_if(be->stream_sync(s), "stream_sync");
        if (i >= 0)
            ms[i] = pt_seconds_between(t0, pt_now_ns()) * 1e3;
    }
    qsort(ms, (size_t)iters, sizeof ms[0], cmp_double);
    return ms[iters / 2];
}

int main(int argc, char **argv)
{
    const int iters = argc > 1 ? atoi(argv[1]) : 20;
    if (iters < 1 || iters > MAX_ITERS) {
        fprintf(stderr, "usage: bench_cuda_attention [ITERS 1..%d]\n", MAX_ITERS);
        return 2;
    }
    int n_dev = 0;
    char why[160] = "";
    die_if(pt_cuda_device_count(&n_dev, why, sizeof why), "device count");
    if (n_dev == 0) {
        printf("{\"bench\":\"attention\",\"skipped\":\"no CUDA device (%s)\"}\n", why);
        return 77;
    }
    const pt_backend *be;
    die_if(pt_backend_get("cuda", &be), "cuda backend");
    pt_stream *s_fp32, *s_flash;
    setenv("PT_CUDA_ATTENTION", "fp32", 1);
    die_if(be->stream_create(&(pt_stream_opts){ .device = 0 }, &s_fp32), "stream (fp32 attention)");
    setenv("PT_CUDA_ATTENTION", "flash", 1);
    die_if(be->stream_create(&(pt_stream_opts){ .device = 0 }, &s_flash), "stream (PT_CUDA_ATTENTION=flash)");
    static const struct {
        const char *name;
        int B, T, NH, NKV, hs;
    } shapes[] = {
        { "gpt2", 8, 1024, 12, 12, 64 },
        { "gpt2-medium", 8, 1024, 16, 16, 64 },
        { "llama3.2-1b", 4, 1024, 32, 8, 64 },
        { "llama3-8b", 4, 1024, 32, 8, 128 },
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int B = shapes[k].B, T = shapes[k].T, NH = shapes[k].NH, NKV = shapes[k].NKV, hs = shapes[k].hs;
        const int C = NH * hs, W = C + 2 * NKV * hs;
        const size_t nqkv = (size_t)B * T * W, no = (size_t)B * T * C;
        const size_t nl = be->attention_saved_size(B, T, C, NH, NKV), ns = be->attention_scratch_size(B, T, C, NH, NKV);
        float *h = malloc(nqkv * 4), *o1 = malloc(no * 4), *o2 = malloc(no * 4);
        uint64_t r = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < nqkv; i++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            h[i] = (float)((r >> 40) * (2.0 / 16777216.0)) - 1.0f;
        }
        bufs d;
        die_if(pt_backend_alloc(be, (void **)&d.qkv, nqkv * 4), "alloc qkv");
        die_if(pt_backend_alloc(be, (void **)&d.dqkv, nqkv * 4), "alloc dqkv");
        die_if(pt_backend_alloc(be, (void **)&d.out, no * 4), "alloc out");
        die_if(pt_backend_alloc(be, (void **)&d.dout, no * 4), "alloc dout");
        die_if(pt_backend_alloc(be, (void **)&d.lse, nl * 4 + 4), "alloc saved");
        die_if(pt_backend_alloc(be, (void **)&d.scr, ns * 4 + 4), "alloc scratch");
        die_if(be->memcpy_h2d(s_fp32, d.qkv, h, nqkv * 4), "h2d");
        die_if(be->memcpy_h2d(s_fp32, d.dout, h, no * 4), "h2d"); /* any values of amplitude 1 */
        die_if(be->stream_sync(s_fp32), "sync");
        double f_fwd = time_att(be, s_fp32, &d, 0, iters, B, T, C, NH, NKV);
        die_if(be->memcpy_d2h(s_fp32, o1, d.out, no * 4), "d2h");
        double f_bwd = time_att(be, s_fp32, &d, 1, iters, B, T, C, NH, NKV);
        double x_fwd = time_att(be, s_flash, &d, 0, iters, B, T, C, NH, NKV);
        die_if(be->memcpy_d2h(s_flash, o2, d.out, no * 4), "d2h");
        double x_bwd = time_att(be, s_flash, &d, 1, iters, B, T, C, NH, NKV);
        double diff = 0.0;
        for (size_t i = 0; i < no; i++)
            diff = fmax(diff, fabs((double)o1[i] - o2[i]));
        const double fwd_flops = 2.0 * B * NH * (double)T * T * hs; /* 2 products x 2 T^2 hs, causal half */
        printf("{\"bench\":\"attention\",\"shape\":\"%s\",\"B\":%d,\"T\":%d,\"NH\":%d,\"NKV\":%d,\"hs\":%d,"
               "\"fp32_fwd_ms\":%.3f,\"fp32_bwd_ms\":%.3f,\"flash_fwd_ms\":%.3f,\"flash_bwd_ms\":%.3f,"
               "\"speedup_fwd\":%.2f,\"speedup_bwd\":%.2f,\"flash_fwd_tflops\":%.1f,\"flash_bwd_tflops\":%.1f,"
               "\"max_abs_diff_out\":%.3g}\n",
               shapes[k].name, B, T, NH, NKV, hs, f_fwd, f_bwd, x_fwd, x_bwd, f_fwd / x_fwd, f_bwd / x_bwd,
               fwd_flops / (x_fwd * 1e-3) / 1e12, 2.5 * fwd_flops / (x_bwd * 1e-3) / 1e12, diff);
        fflush(stdout);
        pt_backend_free(be, d.qkv);
        pt_backend_free(be, d.dqkv);
        pt_backend_free(be, d.out);
        pt_backend_free(be, d.dout);
        pt_backend_free(be, d.lse);
        pt_backend_free(be, d.scr);
        free(h);
        free(o1);
        free(o2);
    }
    be->stream_destroy(s_fp32);
    be->stream_destroy(s_flash);
    return 0;
}
