/* tests/cuda/test_adamw_multi.c — the CUDA multi-tensor AdamW (adamw_multi_update, one launch over a
 * device table of segments, kernels/cuda/elementwise.cu) against
 *   - the CUDA per-tensor op (adamw_update once per segment): the same bits, always;
 *   - the CPU backend's per-tensor op: the same bits on the emulator (host arithmetic, no FMA
 *     contraction on either side); on a GPU, within 1e-7 + 1e-6 |x| (nvcc may fuse the moment
 *     updates into FMAs), with the count of differing elements printed.
 * Tables: empty segments (first, last, between), 1 element, odd sizes, segments shorter than the
 * kernel's 4096-element chunk and longer, starting and ending inside chunks, weight decay 0 and not,
 * steps t 1 to 3 and 1000, gradient scale 1 and 0.6. The segments sit in one buffer in a shuffled
 * order with gaps, which must stay untouched.
 *
 * Built twice: test_cuda_emu_adamw (PT_CUDA_EMU_DRIVER) on the emulator's table, everywhere; and
 * test_cuda_adamw on the real CUDA backend (exits 77 without a GPU). */
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
static pt_stream *cs, *gs;
static int failures;
static uint64_t rng = 0x13198A2E03707344ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float frand(void) { return (float)((next_u64() >> 40) * (1.0 / 8388608.0)) - 1.0f; } /* [-1, 1) */

static void die_if(pt_status st, const char *what)
{
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
        exit(1);
    }
}

#define MAX_SEGS 64

/* One case. The host state h (4 arrays of `need` floats: param, grad, m, v) is run through the CPU
 * per-tensor op; copies on the device through the CUDA per-tensor op (d1) and the multi op (d2). */
static void run_case(const size_t *sizes, int n, float wd, float gs_, int t0, int steps, const char *what)
{
    int order[MAX_SEGS];
    size_t off[MAX_SEGS], at = 0;
    for (int k = 0; k < n; k++)
        order[k] = k;
    for (int k = n - 1; k > 0; k--) {
        int j = (int)(next_u64() % (uint64_t)(k + 1)), x = order[k];
        order[k] = order[j];
        order[j] = x;
    }
    for (int q = 0; q < n; q++) {
        at += next_u64() % 4;
        off[order[q]] = at;
        at += sizes[order[q]];
    }
    const size_t need = at + 3, bytes = 4 * need * sizeof(float);
    float *h = malloc(bytes), *init = malloc(bytes), *g1 = malloc(bytes), *g2 = malloc(bytes);
    if (!h || !init || !g1 || !g2) {
        fprintf(stderr, "FAIL out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < need; i++) {
        init[i] = frand();
        init[need + i] = 0.5f * frand();
        init[2 * need + i] = 0.01f * frand();
        init[3 * need + i] = 1e-4f * fabsf(frand());
    }
    memcpy(h, init, bytes);
    float *d1, *d2;
    die_if(pt_backend_alloc(gpu, (void **)&d1, bytes), "alloc");
    die_if(pt_backend_alloc(gpu, (void **)&d2, bytes), "alloc");
    die_if(gpu->memcpy_h2d(gs, d1, init, bytes), "h2d");
    die_if(gpu->memcpy_h2d(gs, d2, init, bytes), "h2d");
    pt_adamw_seg hs[MAX_SEGS], ds1[MAX_SEGS], ds2[MAX_SEGS];
    size_t start = 0;
    for (int k = 0; k < n; k++) {
        float decay = (k % 3 == 1) ? 0.0f : wd;
        float *bases[3] = { h, d1, d2 };
        pt_adamw_seg *tabs[3] = { hs, ds1, ds2 };
        for (int q = 0; q < 3; q++)
            tabs[q][k] = (pt_adamw_seg){ .param = bases[q] + off[k], .grad = bases[q] + need + off[k],
                                         .m = bases[q] + 2 * need + off[k], .v = bases[q] + 3 * need + off[k],
                                         .n = sizes[k], .start = start, .weight_decay = decay };
        start += sizes[k];
    }
    pt_adamw_seg *dtab;
    die_if(pt_backend_alloc(gpu, (void **)&dtab, (n ? (size_t)n : 1) * sizeof *dtab), "alloc table");
    die_if(gpu->memcpy_h2d(gs, dtab, ds2, (n ? (size_t)n : 1) * sizeof *dtab), "h2d table");
    const float lr = 6e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < n; k++) {
            die_if(cpu->adamw_update(cs, hs[k].param, hs[k].grad, hs[k].m, hs[k].v, hs[k].n, lr, b1, b2, eps,
                                     hs[k].weight_decay, gs_, t0 + s),
                   "cpu adamw_update");
            die_if(gpu->adamw_update(gs, ds1[k].param, ds1[k].grad, ds1[k].m, ds1[k].v, ds1[k].n, lr, b1, b2, eps,
                                     ds1[k].weight_decay, gs_, t0 + s),
                   "cuda adamw_update");
        }
        die_if(gpu->adamw_multi_update(gs, dtab, n, start, lr, b1, b2, eps, gs_, t0 + s), "cuda adamw_multi_update");
    }
    die_if(gpu->memcpy_d2h(gs, g1, d1, bytes), "d2h");
    die_if(gpu->memcpy_d2h(gs, g2, d2, bytes), "d2h");
    size_t vs_tensor = 0, vs_cpu = 0, bad_cpu = 0;
    double worst = 0;
    for (size_t i = 0; i < 4 * need; i++) {
        if (memcmp(&g2[i], &g1[i], sizeof(float)) != 0) {
            if (vs_tensor++ == 0)
                fprintf(stderr, "FAIL %s: element %zu of array %zu: multi %.9g, per-tensor %.9g\n", what, i % need,
                        i / need, g2[i], g1[i]);
        }
        if (memcmp(&g2[i], &h[i], sizeof(float)) != 0) {
            vs_cpu++;
            double err = fabs((double)g2[i] - h[i]);
            worst = err > worst ? err : worst;
            if (!(err <= 1e-7 + 1e-6 * fabs(h[i])) && bad_cpu++ == 0)
                fprintf(stderr, "FAIL %s: element %zu of array %zu: multi %.9g, cpu %.9g\n", what, i % need, i / need,
                        g2[i], h[i]);
        }
    }
#ifdef PT_CUDA_EMU_DRIVER
    bad_cpu += vs_cpu; /* the emulator's host arithmetic must give the CPU's bits */
#endif
    if (vs_tensor || bad_cpu)
        failures++;
    printf("%s %-46s %2d segs %7zu elems: vs per-tensor cuda %zu differ; vs cpu %zu differ (max %.3g)\n",
           vs_tensor || bad_cpu ? "FAIL" : "ok  ", what, n, start, vs_tensor, vs_cpu, worst);
    pt_backend_free(gpu, dtab);
    pt_backend_free(gpu, d1);
    pt_backend_free(gpu, d2);
    free(h);
    free(init);
    free(g1);
    free(g2);
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
    die_if(gpu->stream_create(&(pt_stream_opts){ .device = 0 }, &gs), "cuda stream");
    if (gpu->adamw_multi_update == NULL) {
        fprintf(stderr, "FAIL the %s backend has no adamw_multi_update\n", gpu->name);
        return 1;
    }
    static const size_t t1[] = { 0, 7, 0, 0, 1, 33, 0 };
    static const size_t t2[] = { 4095, 1, 4097, 0, 3000, 9001, 5 }; /* boundaries inside chunks */
    static const size_t t3[] = { 0 };
    run_case(t1, 7, 0.1f, 1.0f, 1, 3, "small, empties, wd 0.1, t 1..3");
    run_case(t2, 7, 0.1f, 0.6f, 1, 2, "chunk boundaries, wd 0.1, scale 0.6, t 1..2");
    run_case(t2, 7, 0.0f, 1.0f, 1000, 1, "chunk boundaries, wd 0, t 1000");
    run_case(t3, 1, 0.1f, 1.0f, 1, 1, "one empty segment");
    run_case(t3, 0, 0.1f, 1.0f, 1, 1, "no segments");
    for (int c = 0; c < 3; c++) {
        size_t sizes[MAX_SEGS];
        int n = 1 + (int)(next_u64() % 30);
        for (int k = 0; k < n; k++) {
            uint64_t r = next_u64() % 8;
            sizes[k] = r == 0 ? 0 : r < 5 ? 1 + next_u64() % 300 : 1 + next_u64() % 6000;
        }
        char what[64];
        snprintf(what, sizeof what, "random table %d, wd %s, t 2..3", c, c == 1 ? "0" : "0.1");
        run_case(sizes, n, c == 1 ? 0.0f : 0.1f, 1.0f, 2, 2, what);
    }
    if (big) { /* on a GPU: gpt2-small's 148 tensors' sizes (124M elements) */
        size_t sizes[MAX_SEGS];
        static const size_t block[12] = { 768, 768, 768 * 2304, 2304, 768 * 768, 768, 768, 768, 768 * 3072, 3072,
                                          3072 * 768, 768 };
        for (int k = 0; k < 48; k++)
            sizes[k] = block[k % 12];
        run_case(sizes, 48, 0.1f, 1.0f, 1, 2, "gpt2 block tensor sizes, 4 blocks");
    }
    /* refusals */
    if (gpu->adamw_multi_update(gs, NULL, 1, 0, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 1) != PT_EINVAL ||
        gpu->adamw_multi_update(gs, NULL, 0, 0, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 0) != PT_EINVAL) {
        fprintf(stderr, "FAIL adamw_multi_update accepted a NULL table or t=0\n");
        failures++;
    }
    gpu->stream_destroy(gs);
    cpu->stream_destroy(cs);
    if (pt_backend_bytes_in_use() != 0) {
        fprintf(stderr, "FAIL %zu bytes still allocated\n", pt_backend_bytes_in_use());
        failures++;
    }
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
