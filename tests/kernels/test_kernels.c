/* tests/kernels/test_kernels.c — the CPU backend against naive double-precision references
 * (kernel_ref.c) and central finite differences of those references.
 *
 * Usage: test_kernels GROUP   (backend elementwise matmul layernorm gelu attention
 *                              attention_long embedding crossentropy xent_shard adamw
 *                              attention_decode rmsnorm rope swiglu embedding_range
 *                              xent_combine)
 * A failure prints the tensor, the first bad index and both values; the exit status is the
 * number of failed checks (capped). Every group also checks that the byte account of
 * pt_backend_alloc returns to zero. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h" /* the vectorisable exp/tanh the CPU kernels share */
#include "kernel_ref.h"
#include "pipetrain/backend.h"

static int g_fail;
static const pt_backend *be;

#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,        \
                    pt_last_error());                                                                    \
            g_fail++;                                                                                    \
        }                                                                                                \
    } while (0)

/* ---- helpers ---- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) /* [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 4503599627370496.0 - 1.0;
}

static float *fnew(size_t n)
{
    void *p = NULL;
    if (pt_backend_alloc(be, &p, n * sizeof(float)) != PT_OK) {
        fprintf(stderr, "allocation of %zu floats failed: %s\n", n, pt_last_error());
        exit(1);
    }
    return p;
}
static void ffree(float *p) { pt_backend_free(be, p); }

static float *frand_new(size_t n, double scale)
{
    float *x = fnew(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(urand() * scale);
    return x;
}

static double *dnew(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    if (p == NULL)
        exit(1);
    return p;
}

static double *to_double(const float *x, size_t n)
{
    double *d = dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static pt_stream *stream_new(int n_threads)
{
    pt_stream *s = NULL;
    if (be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = n_threads }, &s) != PT_OK) {
        fprintf(stderr, "stream_create failed: %s\n", pt_last_error());
        exit(1);
    }
    return s;
}

/* |got - ref| <= atol + rtol |ref| everywhere (NaN fails). */
static int check_close(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol)
{
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i]))) {
            if (bad++ == 0)
                first = i;
        }
        if (err > worst)
            worst = err;
    }
    if (bad) {
        fprintf(stderr, "%s: %zu of %zu values out of tolerance (atol %g, rtol %g); first bad index %zu: got %.9g, "
                        "want %.9g; largest abs error %.3g\n",
                what, bad, n, atol, rtol, first, (double)got[first], ref[first], worst);
        g_fail++;
    }
    return bad == 0;
}

static int check_bits(const char *what, const void *a, const void *b, size_t n_floats)
{
    const float *x = a, *y = b;
    for (size_t i = 0; i < n_floats; i++)
        if (memcmp(&x[i], &y[i], sizeof(float)) != 0) {
            fprintf(stderr, "%s: not bit-identical; first difference at index %zu: %.9g vs %.9g\n", what, i,
                    (double)x[i], (double)y[i]);
            g_fail++;
            return 0;
        }
    return 1;
}

/* Central differences of L = sum(out * R) in double, where `fwd` recomputes `out` from inputs
 * that include x. Returns dL/dx[i]. */
typedef void (*fwd_fn)(void *ctx, double *out);
static double fd_loss(fwd_fn f, void *ctx, double *out, const double *R, size_t n_out)
{
    f(ctx, out);
    double L = 0;
    for (size_t k = 0; k < n_out; k++)
        L += out[k] * R[k];
    return L;
}
static double fd_grad(fwd_fn f, void *ctx, double *x, size_t i, double *out, const double *R, size_t n_out)
{
    const double h = 1e-5;
    double save = x[i];
    x[i] = save + h;
    double lp = fd_loss(f, ctx, out, R, n_out);
    x[i] = save - h;
    double lm = fd_loss(f, ctx, out, R, n_out);
    x[i] = save;
    return (lp - lm) / (2 * h);
}

/* ---- backend: lookup and byte accounting ---- */

#define N_THREAD_ALLOCS 400
static void *alloc_worker(void *arg)
{
    int *ok = arg;
    void *p[16] = { 0 };
    for (int i = 0; i < N_THREAD_ALLOCS; i++) {
        int k = i % 16;
        pt_backend_free(be, p[k]);
        p[k] = NULL;
        if (pt_backend_alloc(be, &p[k], (size_t)(i % 7 + 1) * 1000) != PT_OK)
            *ok = 0;
    }
    for (int k = 0; k < 16; k++)
        pt_backend_free(be, p[k]);
    return NULL;
}

static void test_backend(void)
{
    const pt_backend *b = NULL;
    EXPECT(pt_backend_get("nope", &b) == PT_EINVAL && b == NULL);
    EXPECT(strstr(pt_last_error(), "nope") != NULL);
    EXPECT(pt_backend_get(NULL, &b) == PT_EINVAL);
    pt_status st = pt_backend_get("cuda", &b);
    EXPECT(st == PT_OK || (st == PT_ENOTSUP && strstr(pt_last_error(), "-DPT_CUDA=ON") != NULL));
    EXPECT(pt_backend_get("cpu", &b) == PT_OK && b == &pt_backend_cpu && strcmp(b->name, "cpu") == 0);

    /* every entry is filled: the name and function pointers come first, then the plain fields */
    const void *const *entries = (const void *const *)(const void *)&pt_backend_cpu;
    for (size_t i = 0; i < offsetof(pt_backend, device_memory) / sizeof(void *); i++)
        EXPECT(entries[i] != NULL);
    EXPECT(pt_backend_cpu.device_memory == 0); /* CPU tensors are host memory */
    /* and the entries added after it: generation's and the llama layers' */
    EXPECT(pt_backend_cpu.attention_decode != NULL);
    EXPECT(pt_backend_cpu.rmsnorm_forward && pt_backend_cpu.rmsnorm_backward_input &&
           pt_backend_cpu.rmsnorm_backward_weight && pt_backend_cpu.rmsnorm_backward);
    EXPECT(pt_backend_cpu.rope_forward && pt_backend_cpu.rope_backward);
    EXPECT(pt_backend_cpu.swiglu_forward && pt_backend_cpu.swiglu_backward);

    size_t base = pt_backend_bytes_in_use();
    EXPECT(base == 0);
    void *a = NULL, *c = NULL;
    EXPECT(pt_backend_alloc(be, &a, 1000) == PT_OK && ((uintptr_t)a % 256) == 0);
    EXPECT(pt_backend_alloc(be, &c, 1 << 20) == PT_OK && ((uintptr_t)c % 256) == 0);
    EXPECT(pt_backend_bytes_in_use() == 1000 + (1 << 20));
    EXPECT(pt_backend_bytes_peak() >= 1000 + (1 << 20));
    pt_backend_free(be, a);
    EXPECT(pt_backend_bytes_in_use() == (1 << 20));
    EXPECT(pt_backend_bytes_peak() >= 1000 + (1 << 20));
    pt_backend_reset_peak();
    EXPECT(pt_backend_bytes_peak() == (1 << 20));
    pt_backend_free(be, c);
    pt_backend_free(be, NULL);
    EXPECT(pt_backend_bytes_in_use() == 0);
    EXPECT(pt_backend_bytes_peak() == (1 << 20));
    /* memory allocated elsewhere (the runtime's shared send buffers) joins the same account */
    pt_backend_account(3 << 20);
    EXPECT(pt_backend_bytes_in_use() == (3 << 20) && pt_backend_bytes_peak() == (3 << 20));
    pt_backend_account(-(3LL << 20));
    EXPECT(pt_backend_bytes_in_use() == 0 && pt_backend_bytes_peak() == (3 << 20));

    /* many blocks (the size table grows), freed in a scrambled order; zero-byte blocks too */
    enum { MANY = 3000 };
    void **p = calloc(MANY, sizeof *p);
    size_t total = 0;
    pt_backend_reset_peak();
    for (int i = 0; i < MANY; i++) {
        size_t sz = (size_t)(i % 13) * 100;
        EXPECT(pt_backend_alloc(be, &p[i], sz) == PT_OK && p[i] != NULL);
        total += sz;
    }
    EXPECT(pt_backend_bytes_in_use() == total && pt_backend_bytes_peak() == total);
    for (int i = 0; i < MANY; i++)
        pt_backend_free(be, p[(size_t)i * 7 % MANY]); /* 7 is coprime with 3000: a permutation */
    EXPECT(pt_backend_bytes_in_use() == 0 && pt_backend_bytes_peak() == total);
    free(p);

    /* thread-safe accounting */
    pthread_t th[4];
    int ok = 1;
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, alloc_worker, &ok);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    EXPECT(ok);
    EXPECT(pt_backend_bytes_in_use() == 0);

#ifndef __SANITIZE_ADDRESS__ /* ASan aborts on absurd sizes instead of returning NULL */
    void *huge = (void *)1;
    EXPECT(pt_backend_alloc(be, &huge, SIZE_MAX / 2) == PT_ENOMEM && huge == NULL);
    EXPECT(strstr(pt_last_error(), "bytes") != NULL);
    EXPECT(pt_backend_bytes_in_use() == 0);
#endif

    /* streams and copies */
    pt_stream *s = stream_new(0);
    float *x = frand_new(1000, 1), *y = fnew(1000);
    float host[1000];
    EXPECT(be->memcpy_d2d(s, y, x, sizeof host) == PT_OK);
    EXPECT(be->memcpy_d2h(s, host, y, sizeof host) == PT_OK && memcmp(host, x, sizeof host) == 0);
    EXPECT(be->memset_zero(s, y, sizeof host) == PT_OK && y[0] == 0.0f && y[999] == 0.0f);
    EXPECT(be->memcpy_h2d(s, y, host, sizeof host) == PT_OK && memcmp(y, x, sizeof host) == 0);
    EXPECT(be->stream_sync(s) == PT_OK);
    ffree(x);
    ffree(y);
    be->stream_destroy(s);
    be->stream_destroy(NULL);
    pt_stream *bad = NULL;
    EXPECT(be->stream_create(&(pt_stream_opts){ .n_threads = 100000 }, &bad) == PT_EINVAL && bad == NULL);
}

/* ---- element-wise ---- */

static void test_elementwise(void)
{
    pt_stream *s = stream_new(2);
    const size_t n = 100003;
    float *a = frand_new(n, 3), *b = frand_new(n, 3), *o = fnew(n);
    double *ref = dnew(n);
    EXPECT(be->add(s, o, a, b, n) == PT_OK);
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)(a[i] + b[i]);
    check_close("add", o, ref, n, 0, 0);
    EXPECT(be->add(s, a, a, b, n) == PT_OK); /* out aliases a */
    check_close("add (aliased)", a, ref, n, 0, 0);
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)(a[i] * 0.37f);
    EXPECT(be->scale(s, a, 0.37f, n) == PT_OK);
    check_close("scale", a, ref, n, 0, 0);

    /* sum_squares: exact-ish against long double, and the same bits for 1, 2 and 3 threads */
    const size_t sizes[] = { 0, 1, 1000, 4097, 5000003 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t m = sizes[k];
        float *x = frand_new(m ? m : 1, 2);
        long double want = 0;
        for (size_t i = 0; i < m; i++)
            want += (long double)x[i] * x[i];
        double got[3];
        for (int t = 1; t <= 3; t++) {
            pt_stream *st = stream_new(t);
            EXPECT(be->sum_squares(st, &got[t - 1], x, m) == PT_OK);
            be->stream_destroy(st);
        }
        if (!(fabsl(got[0] - want) <= 1e-12L * want)) {
            fprintf(stderr, "sum_squares(n=%zu): got %.17g, want %.17Lg\n", m, got[0], want);
            g_fail++;
        }
        if (memcmp(&got[0], &got[1], sizeof(double)) != 0 || memcmp(&got[0], &got[2], sizeof(double)) != 0) {
            fprintf(stderr, "sum_squares(n=%zu) depends on the thread count: %.17g %.17g %.17g\n", m, got[0],
                    got[1], got[2]);
            g_fail++;
        }
        ffree(x);
    }

    /* the polynomial exp and the tanh built on it, over their whole range */
    double worst_exp = 0, worst_tanh = 0;
    float at_exp = 0, at_tanh = 0;
    for (double v = -87.0; v <= 88.0; v += 1e-4) {
        float f = (float)v;
        double want = exp((double)f), err = fabs(pt_cpu_expf(f) - want) / want;
        if (err > worst_exp) {
            worst_exp = err;
            at_exp = f;
        }
    }
    for (double v = -12.0; v <= 12.0; v += 1e-5) {
        float f = (float)v;
        double err = fabs(pt_cpu_tanhf(f) - tanh((double)f));
        if (err > worst_tanh) {
            worst_tanh = err;
            at_tanh = f;
        }
    }
    if (worst_exp > 2e-7 || worst_tanh > 3e-7) {
        fprintf(stderr, "pt_cpu_expf: worst relative error %.3g at %.9g; pt_cpu_tanhf: worst absolute error %.3g at "
                        "%.9g (limits 2e-7, 3e-7)\n", worst_exp, (double)at_exp, worst_tanh, (double)at_tanh);
        g_fail++;
    }
    EXPECT(isnan(pt_cpu_expf(NAN)) && pt_cpu_expf(-1000.0f) >= 0.0f && pt_cpu_expf(-1000.0f) < 1e-37f);
    EXPECT(pt_cpu_tanhf(1000.0f) == 1.0f && pt_cpu_tanhf(-1000.0f) == -1.0f && pt_cpu_tanhf(0.0f) == 0.0f);

    /* has_nonfinite */
    int flag = -1;
    float *x = frand_new(n, 1e30);
    x[5] = 3.0e38f;
    x[6] = 1e-40f; /* subnormal */
    EXPECT(be->has_nonfinite(s, &flag, x, n) == PT_OK && flag == 0);
    EXPECT(be->has_nonfinite(s, &flag, x, 0) == PT_OK && flag == 0);
    const float bads[] = { NAN, INFINITY, -INFINITY };
    const size_t where[] = { n - 1, n / 2, 0 };
    for (int k = 0; k < 3; k++) {
        float save = x[where[k]];
        x[where[k]] = bads[k];
        EXPECT(be->has_nonfinite(s, &flag, x, n) == PT_OK && flag == 1);
        EXPECT(be->has_nonfinite(s, &flag, x + where[k], 1) == PT_OK && flag == 1);
        x[where[k]] = save;
    }
    ffree(x);
    ffree(a);
    ffree(b);
    ffree(o);
    free(ref);
    be->stream_destroy(s);
}

/* ---- GELU ---- */

typedef struct gelu_ctx { double *x; int n; } gelu_ctx;
static void gelu_fwd(void *c, double *out) { ref_gelu(out, ((gelu_ctx *)c)->x, ((gelu_ctx *)c)->n); }

static void test_gelu(void)
{
    pt_stream *s = stream_new(2);
    const int n = 50001;
    float *x = frand_new(n, 6), *y = fnew(n);
    x[0] = 20;
    x[1] = -20;
    x[2] = 100;
    x[3] = -100;
    x[4] = 0;
    double *xd = to_double(x, n), *ref = dnew(n);
    EXPECT(be->gelu_forward(s, y, x, n) == PT_OK);
    ref_gelu(ref, xd, n);
    check_close("gelu_forward", y, ref, n, 1e-6, 1e-5);

    /* gradient: the derivative of the double reference by central differences */
    float *dout = frand_new(n, 1), *dx = fnew(n);
    EXPECT(be->gelu_backward(s, dx, x, dout, n) == PT_OK);
    double *g = dnew(n), one[1], r1[1] = { 1.0 };
    for (int i = 0; i < n; i++) {
        gelu_ctx c = { &xd[i], 1 };
        g[i] = fd_grad(gelu_fwd, &c, &xd[i], 0, one, r1, 1) * dout[i];
    }
    check_close("gelu_backward vs finite differences", dx, g, n, 1e-5, 1e-4);
    EXPECT(be->gelu_backward(s, dout, x, dout, n) == PT_OK); /* dinp aliases dout */
    check_bits("gelu_backward (aliased)", dout, dx, n);
    free(xd);
    free(ref);
    free(g);
    ffree(x);
    ffree(y);
    ffree(dout);
    ffree(dx);
    be->stream_destroy(s);
}

/* ---- matmul ---- */

typedef struct mm_ctx { double *inp, *w, *b; int N, C, OC; } mm_ctx;
static void mm_fwd(void *c_, double *out)
{
    mm_ctx *c = c_;
    ref_matmul(out, c->inp, c->w, c->b, c->N, c->C, c->OC);
}

static void matmul_case(pt_stream *s, int N, int C, int OC, int use_bias, int full_fd)
{
    char what[128];
    size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
    float *inp = frand_new(nin, 1), *w = frand_new(nw, 1), *b = use_bias ? frand_new(OC, 1) : NULL;
    float *out = fnew(nout), *dout = frand_new(nout, 1), *dinp = fnew(nin);
    float *dw = frand_new(nw, 1), *db = frand_new(OC, 1);
    double *dw0 = to_double(dw, nw), *db0 = to_double(db, OC);
    mm_ctx c = { to_double(inp, nin), to_double(w, nw), use_bias ? to_double(b, OC) : NULL, N, C, OC };
    double *ref = dnew(nout), *R = to_double(dout, nout);

    EXPECT(be->matmul_forward(s, out, inp, w, b, N, C, OC) == PT_OK);
    mm_fwd(&c, ref);
    snprintf(what, sizeof what, "matmul_forward N=%d C=%d OC=%d bias=%d", N, C, OC, use_bias);
    check_close(what, out, ref, nout, 1e-5, 1e-5);

    EXPECT(be->matmul_backward_input(s, dinp, dout, w, N, C, OC) == PT_OK);
    EXPECT(be->matmul_backward_weight(s, dw, use_bias ? db : NULL, dout, inp, N, C, OC) == PT_OK);
    double *gi = dnew(nin), *gw = dnew(nw), *gb = dnew(OC);
    if (full_fd) {
        for (size_t i = 0; i < nin; i++)
            gi[i] = fd_grad(mm_fwd, &c, c.inp, i, ref, R, nout);
        for (size_t i = 0; i < nw; i++)
            gw[i] = dw0[i] + fd_grad(mm_fwd, &c, c.w, i, ref, R, nout);
        for (int i = 0; i < OC; i++)
            gb[i] = db0[i] + (use_bias ? fd_grad(mm_fwd, &c, c.b, i, ref, R, nout) : 0.0);
    } else { /* large shapes: the analytic products in double */
        for (int n = 0; n < N; n++)
            for (int k = 0; k < C; k++) {
                double a = 0;
                for (int o = 0; o < OC; o++)
                    a += R[(size_t)n * OC + o] * c.w[(size_t)o * C + k];
                gi[(size_t)n * C + k] = a;
            }
        for (int o = 0; o < OC; o++) {
            for (int k = 0; k < C; k++) {
                double a = dw0[(size_t)o * C + k];
                for (int n = 0; n < N; n++)
                    a += R[(size_t)n * OC + o] * c.inp[(size_t)n * C + k];
                gw[(size_t)o * C + k] = a;
            }
            double a = db0[o];
            for (int n = 0; n < N && use_bias; n++)
                a += R[(size_t)n * OC + o];
            gb[o] = a;
        }
    }
    snprintf(what, sizeof what, "matmul_backward_input N=%d C=%d OC=%d", N, C, OC);
    check_close(what, dinp, gi, nin, 1e-4, 1e-4);
    snprintf(what, sizeof what, "matmul_backward_weight dweight N=%d C=%d OC=%d", N, C, OC);
    check_close(what, dw, gw, nw, 1e-4, 1e-4);
    snprintf(what, sizeof what, "matmul_backward_weight dbias N=%d C=%d OC=%d", N, C, OC);
    check_close(what, db, gb, OC, 1e-4, 1e-4);

    free(c.inp);
    free(c.w);
    free(c.b);
    free(ref);
    free(R);
    free(gi);
    free(gw);
    free(gb);
    free(dw0);
    free(db0);
    ffree(inp);
    ffree(w);
    ffree(b);
    ffree(out);
    ffree(dout);
    ffree(dinp);
    ffree(dw);
    ffree(db);
}

static void test_matmul(void)
{
    pt_stream *s1 = stream_new(1), *s2 = stream_new(2), *s3 = stream_new(3);
    matmul_case(s1, 5, 7, 3, 1, 1);
    matmul_case(s2, 33, 20, 17, 1, 1);
    matmul_case(s2, 9, 6, 4, 0, 1);
    matmul_case(s2, 256, 96, 200, 1, 0); /* split by rows across threads */
    matmul_case(s3, 64, 96, 700, 1, 0);  /* split by columns, uneven */
    matmul_case(s2, 130, 300, 130, 0, 0);
    matmul_case(s1, 1, 7, 5, 1, 1);       /* one row: the sgemv path */
    matmul_case(s3, 1, 300, 1000, 1, 0);  /* one row split over threads, uneven */
    { /* one row: the same bits on 1, 2 and 3 threads */
        const int C = 384, OC = 1000;
        float *x = frand_new(C, 1), *w = frand_new((size_t)OC * C, 0.1), *b = frand_new(OC, 1);
        float *o1 = fnew(OC), *o2 = fnew(OC), *o3 = fnew(OC);
        EXPECT(be->matmul_forward(s1, o1, x, w, b, 1, C, OC) == PT_OK);
        EXPECT(be->matmul_forward(s2, o2, x, w, b, 1, C, OC) == PT_OK);
        EXPECT(be->matmul_forward(s3, o3, x, w, b, 1, C, OC) == PT_OK);
        check_bits("matmul_forward N=1, 1 vs 2 threads", o1, o2, OC);
        check_bits("matmul_forward N=1, 1 vs 3 threads", o1, o3, OC);
        ffree(x), ffree(w), ffree(b), ffree(o1), ffree(o2), ffree(o3);
    }
    float dummy = 0;
    EXPECT(be->matmul_forward(s1, &dummy, &dummy, &dummy, NULL, 1, 0, 1) == PT_EINVAL);
    EXPECT(be->matmul_forward(s1, &dummy, &dummy, &dummy, NULL, 0, 1, 1) == PT_OK);
    be->stream_destroy(s1);
    be->stream_destroy(s2);
    be->stream_destroy(s3);
}

/* ---- layernorm ---- */

typedef struct ln_ctx { double *inp, *w, *b; int N, C; } ln_ctx;
static void ln_fwd(void *c_, double *out)
{
    ln_ctx *c = c_;
    ref_layernorm(out, c->inp, c->w, c->b, c->N, c->C);
}

static void test_layernorm(void)
{
    pt_stream *s = stream_new(2);
    /* forward, including mean and rstd, on a gpt2-sized row and an odd one */
    const int shapes[][2] = { { 7, 33 }, { 64, 768 } };
    for (int k = 0; k < 2; k++) {
        int N = shapes[k][0], C = shapes[k][1];
        float *x = frand_new((size_t)N * C, 2), *w = frand_new(C, 1), *b = frand_new(C, 1);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += 0.5f; /* a non-zero mean */
        float *y = fnew((size_t)N * C), *mean = fnew(N), *rstd = fnew(N);
        ln_ctx c = { to_double(x, (size_t)N * C), to_double(w, C), to_double(b, C), N, C };
        double *ref = dnew((size_t)N * C), *rm = dnew(N), *rr = dnew(N);
        EXPECT(be->layernorm_forward(s, y, mean, rstd, x, w, b, N, C) == PT_OK);
        ln_fwd(&c, ref);
        for (int n = 0; n < N; n++) {
            double m = 0, v = 0;
            for (int i = 0; i < C; i++)
                m += c.inp[(size_t)n * C + i];
            m /= C;
            for (int i = 0; i < C; i++)
                v += (c.inp[(size_t)n * C + i] - m) * (c.inp[(size_t)n * C + i] - m);
            rm[n] = m;
            rr[n] = 1 / sqrt(v / C + 1e-5);
        }
        check_close("layernorm_forward out", y, ref, (size_t)N * C, 1e-5, 1e-5);
        check_close("layernorm_forward mean", mean, rm, N, 1e-6, 1e-5);
        check_close("layernorm_forward rstd", rstd, rr, N, 1e-6, 1e-5);
        free(c.inp);
        free(c.w);
        free(c.b);
        free(ref);
        free(rm);
        free(rr);
        ffree(x);
        ffree(w);
        ffree(b);
        ffree(y);
        ffree(mean);
        ffree(rstd);
    }

    /* gradients by central differences; dw and db accumulate onto what was there */
    {
        const int N = 4, C = 37;
        size_t nx = (size_t)N * C;
        float *x = frand_new(nx, 2), *w = frand_new(C, 1), *b = frand_new(C, 1);
        float *y = fnew(nx), *mean = fnew(N), *rstd = fnew(N), *dout = frand_new(nx, 1), *dx = fnew(nx);
        float *dw = frand_new(C, 1), *db = frand_new(C, 1);
        double *dw0 = to_double(dw, C), *db0 = to_double(db, C);
        EXPECT(be->layernorm_forward(s, y, mean, rstd, x, w, b, N, C) == PT_OK);
        EXPECT(be->layernorm_backward(s, dx, dw, db, dout, x, w, mean, rstd, N, C) == PT_OK);
        ln_ctx c = { to_double(x, nx), to_double(w, C), to_double(b, C), N, C };
        double *R = to_double(dout, nx), *out = dnew(nx), *gx = dnew(nx), *gw = dnew(C), *gb = dnew(C);
        for (size_t i = 0; i < nx; i++)
            gx[i] = fd_grad(ln_fwd, &c, c.inp, i, out, R, nx);
        for (int i = 0; i < C; i++) {
            gw[i] = dw0[i] + fd_grad(ln_fwd, &c, c.w, i, out, R, nx);
            gb[i] = db0[i] + fd_grad(ln_fwd, &c, c.b, i, out, R, nx);
        }
        check_close("layernorm_backward dinp vs finite differences", dx, gx, nx, 1e-4, 1e-3);
        check_close("layernorm_backward dw vs finite differences", dw, gw, C, 1e-4, 1e-3);
        check_close("layernorm_backward db vs finite differences", db, gb, C, 1e-4, 1e-3);
        free(c.inp);
        free(c.w);
        free(c.b);
        free(R);
        free(out);
        free(gx);
        free(gw);
        free(gb);
        free(dw0);
        free(db0);
        ffree(x);
        ffree(w);
        ffree(b);
        ffree(y);
        ffree(mean);
        ffree(rstd);
        ffree(dout);
        ffree(dx);
        ffree(dw);
        ffree(db);
    }

    /* split (input, then weight) and fused backward give the same bits; dw/db also do not
     * depend on the thread count */
    {
        const int N = 300, C = 200;
        size_t nx = (size_t)N * C;
        float *x = frand_new(nx, 2), *w = frand_new(C, 1), *b = frand_new(C, 1), *dout = frand_new(nx, 1);
        float *y = fnew(nx), *mean = fnew(N), *rstd = fnew(N);
        float *dx1 = fnew(nx), *dx2 = fnew(nx), *dw1 = frand_new(C, 1), *db1 = frand_new(C, 1);
        float *dw2 = fnew(C), *db2 = fnew(C), *dw3 = fnew(C), *db3 = fnew(C);
        memcpy(dw2, dw1, C * sizeof(float));
        memcpy(db2, db1, C * sizeof(float));
        memcpy(dw3, dw1, C * sizeof(float));
        memcpy(db3, db1, C * sizeof(float));
        EXPECT(be->layernorm_forward(s, y, mean, rstd, x, w, b, N, C) == PT_OK);
        EXPECT(be->layernorm_backward_input(s, dx1, dout, x, w, mean, rstd, N, C) == PT_OK);
        EXPECT(be->layernorm_backward_weight(s, dw1, db1, dout, x, mean, rstd, N, C) == PT_OK);
        EXPECT(be->layernorm_backward(s, dx2, dw2, db2, dout, x, w, mean, rstd, N, C) == PT_OK);
        check_bits("layernorm split vs fused dinp", dx1, dx2, nx);
        check_bits("layernorm split vs fused dw", dw1, dw2, C);
        check_bits("layernorm split vs fused db", db1, db2, C);
        pt_stream *s3 = stream_new(3);
        EXPECT(be->layernorm_backward_weight(s3, dw3, db3, dout, x, mean, rstd, N, C) == PT_OK);
        check_bits("layernorm dw, 2 vs 3 threads", dw1, dw3, C);
        check_bits("layernorm db, 2 vs 3 threads", db1, db3, C);
        be->stream_destroy(s3);
        float *all[] = { x, w, b, dout, y, mean, rstd, dx1, dx2, dw1, db1, dw2, db2, dw3, db3 };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }
    float d = 0;
    EXPECT(be->layernorm_forward(s, &d, &d, &d, &d, &d, &d, 1, 0) == PT_EINVAL);
    be->stream_destroy(s);
}

/* ---- RMSNorm (llama) ---- */

typedef struct rms_ctx { double *inp, *w; int N, C; double eps; } rms_ctx;
static void rms_fwd(void *c_, double *out)
{
    rms_ctx *c = c_;
    ref_rmsnorm(out, c->inp, c->w, c->N, c->C, c->eps);
}

static void test_rmsnorm(void)
{
    pt_stream *s = stream_new(2);
    /* forward, including rstd, on odd, gpt2-sized and llama-sized rows; eps of Llama 2 and 3 */
    const int shapes[][2] = { { 7, 33 }, { 64, 768 }, { 3, 2048 } };
    const float epss[] = { 1e-5f, 1e-6f, 1e-5f };
    for (int k = 0; k < 3; k++) {
        int N = shapes[k][0], C = shapes[k][1];
        size_t nx = (size_t)N * C;
        float *x = frand_new(nx, 2), *w = frand_new(C, 1), *y = fnew(nx), *rstd = fnew(N);
        for (size_t i = 0; i < nx; i++)
            x[i] += 0.5f; /* a non-zero mean: the norm does not subtract it */
        x[0] = 0.0f;
        rms_ctx c = { to_double(x, nx), to_double(w, C), N, C, epss[k] };
        double *ref = dnew(nx), *rr = dnew(N);
        EXPECT(be->rmsnorm_forward(s, y, rstd, x, w, N, C, epss[k]) == PT_OK);
        rms_fwd(&c, ref);
        for (int n = 0; n < N; n++) {
            double ss = 0;
            for (int i = 0; i < C; i++)
                ss += c.inp[(size_t)n * C + i] * c.inp[(size_t)n * C + i];
            rr[n] = 1 / sqrt(ss / C + (double)epss[k]);
        }
        char what[96];
        snprintf(what, sizeof what, "rmsnorm_forward out N=%d C=%d", N, C);
        check_close(what, y, ref, nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "rmsnorm_forward rstd N=%d C=%d", N, C);
        check_close(what, rstd, rr, N, 0, 1e-6);
        /* Hugging Face's order: (x * rstd) * w, each product rounded to fp32 */
        size_t bad = 0;
        for (size_t i = 0; i < nx; i++) {
            float want = (x[i] * rstd[i / C]) * w[i % C];
            bad += memcmp(&want, &y[i], sizeof want) != 0;
        }
        if (bad) {
            fprintf(stderr, "rmsnorm_forward N=%d C=%d: %zu outputs differ from (x * rstd) * w in fp32\n", N, C, bad);
            g_fail++;
        }
        free(c.inp), free(c.w), free(ref), free(rr);
        ffree(x), ffree(w), ffree(y), ffree(rstd);
    }

    /* gradients by central differences; dw accumulates onto what was there */
    {
        const int N = 4, C = 37;
        const float eps = 1e-5f;
        size_t nx = (size_t)N * C;
        float *x = frand_new(nx, 2), *w = frand_new(C, 1), *y = fnew(nx), *rstd = fnew(N);
        float *dout = frand_new(nx, 1), *dx = fnew(nx), *dw = frand_new(C, 1);
        double *dw0 = to_double(dw, C);
        EXPECT(be->rmsnorm_forward(s, y, rstd, x, w, N, C, eps) == PT_OK);
        EXPECT(be->rmsnorm_backward(s, dx, dw, dout, x, w, rstd, N, C) == PT_OK);
        rms_ctx c = { to_double(x, nx), to_double(w, C), N, C, eps };
        double *R = to_double(dout, nx), *out = dnew(nx), *gx = dnew(nx), *gw = dnew(C);
        for (size_t i = 0; i < nx; i++)
            gx[i] = fd_grad(rms_fwd, &c, c.inp, i, out, R, nx);
        for (int i = 0; i < C; i++)
            gw[i] = dw0[i] + fd_grad(rms_fwd, &c, c.w, i, out, R, nx);
        check_close("rmsnorm_backward dinp vs finite differences", dx, gx, nx, 1e-4, 1e-3);
        check_close("rmsnorm_backward dw vs finite differences", dw, gw, C, 1e-4, 1e-3);
        free(c.inp), free(c.w), free(R), free(out), free(gx), free(gw), free(dw0);
        float *all[] = { x, w, y, rstd, dout, dx, dw };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }

    /* split (input, then weight) and fused backward give the same bits; neither depends on the
     * thread count (1, 2, 3) */
    {
        const int N = 300, C = 200;
        size_t nx = (size_t)N * C;
        float *x = frand_new(nx, 2), *w = frand_new(C, 1), *dout = frand_new(nx, 1);
        float *y = fnew(nx), *y1 = fnew(nx), *rstd = fnew(N), *rstd1 = fnew(N);
        float *dx1 = fnew(nx), *dx2 = fnew(nx), *dx3 = fnew(nx), *dw1 = frand_new(C, 1);
        float *dw2 = fnew(C), *dw3 = fnew(C), *dw4 = fnew(C);
        memcpy(dw2, dw1, C * sizeof(float));
        memcpy(dw3, dw1, C * sizeof(float));
        memcpy(dw4, dw1, C * sizeof(float));
        pt_stream *s1 = stream_new(1), *s3 = stream_new(3);
        EXPECT(be->rmsnorm_forward(s, y, rstd, x, w, N, C, 1e-5f) == PT_OK);
        EXPECT(be->rmsnorm_forward(s1, y1, rstd1, x, w, N, C, 1e-5f) == PT_OK);
        check_bits("rmsnorm_forward out, 1 vs 2 threads", y, y1, nx);
        check_bits("rmsnorm_forward rstd, 1 vs 2 threads", rstd, rstd1, N);
        EXPECT(be->rmsnorm_backward_input(s, dx1, dout, x, w, rstd, N, C) == PT_OK);
        EXPECT(be->rmsnorm_backward_weight(s, dw1, dout, x, rstd, N, C) == PT_OK);
        EXPECT(be->rmsnorm_backward(s, dx2, dw2, dout, x, w, rstd, N, C) == PT_OK);
        check_bits("rmsnorm split vs fused dinp", dx1, dx2, nx);
        check_bits("rmsnorm split vs fused dw", dw1, dw2, C);
        EXPECT(be->rmsnorm_backward_weight(s3, dw3, dout, x, rstd, N, C) == PT_OK);
        check_bits("rmsnorm dw, 2 vs 3 threads", dw1, dw3, C);
        EXPECT(be->rmsnorm_backward(s1, dx3, dw4, dout, x, w, rstd, N, C) == PT_OK);
        check_bits("rmsnorm fused dinp, 2 vs 1 threads", dx2, dx3, nx);
        check_bits("rmsnorm fused dw, 2 vs 1 threads", dw2, dw4, C);
        be->stream_destroy(s1);
        be->stream_destroy(s3);
        float *all[] = { x, w, dout, y, y1, rstd, rstd1, dx1, dx2, dx3, dw1, dw2, dw3, dw4 };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }
    float d = 0;
    EXPECT(be->rmsnorm_forward(s, &d, &d, &d, &d, 1, 0, 1e-5f) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "rmsnorm_forward") != NULL);
    EXPECT(be->rmsnorm_forward(s, &d, &d, &d, &d, 1, 1, -1.0f) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "eps") != NULL);
    EXPECT(be->rmsnorm_backward(s, &d, &d, &d, &d, &d, &d, -1, 4) == PT_EINVAL);
    EXPECT(be->rmsnorm_forward(s, &d, &d, &d, &d, 0, 4, 1e-5f) == PT_OK); /* no rows: nothing to do */
    be->stream_destroy(s);
}

/* ---- rotary position embedding (llama) ---- */

/* cos, sin (max_pos, hs/2) in fp32 as models/ fills them: angle p * theta^(-2i/hs). */
static void rope_tables(float *cos_t, float *sin_t, int max_pos, int hs, double theta)
{
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < hs / 2; i++) {
            double a = p * pow(theta, -2.0 * i / hs);
            cos_t[(size_t)p * (hs / 2) + i] = (float)cos(a);
            sin_t[(size_t)p * (hs / 2) + i] = (float)sin(a);
        }
}

typedef struct rope_ctx { double *x, *cos, *sin; int B, T, NH, NKV, hs, pos0; size_t n; } rope_ctx;
static void rope_fwd(void *c_, double *out)
{
    rope_ctx *c = c_;
    memcpy(out, c->x, c->n * sizeof(double));
    ref_rope(out, c->cos, c->sin, c->B, c->T, c->NH, c->NKV, c->hs, c->pos0);
}

/* Forward against the reference, v heads untouched, backward against central differences (all
 * entries: the v entries' gradient is dout itself), forward then backward = identity. */
static void rope_case(pt_stream *s, int B, int T, int NH, int NKV, int hs, int pos0)
{
    const int max_pos = pos0 + T + 3, half = hs / 2;
    const size_t W = (size_t)(NH + 2 * NKV) * hs, n = (size_t)B * T * W, nt = (size_t)max_pos * half;
    float *cos_t = fnew(nt), *sin_t = fnew(nt);
    rope_tables(cos_t, sin_t, max_pos, hs, 10000.0);
    float *x0 = frand_new(n, 2), *x = fnew(n), *d = frand_new(n, 1), *d0 = fnew(n);
    memcpy(x, x0, n * sizeof(float));
    memcpy(d0, d, n * sizeof(float));
    rope_ctx c = { to_double(x0, n), to_double(cos_t, nt), to_double(sin_t, nt), B, T, NH, NKV, hs, pos0, n };
    double *ref = dnew(n);
    rope_fwd(&c, ref);
    char what[128];
    snprintf(what, sizeof what, "rope_forward B=%d T=%d NH=%d NKV=%d hs=%d pos0=%d", B, T, NH, NKV, hs, pos0);
    EXPECT(be->rope_forward(s, x, cos_t, sin_t, B, T, NH, NKV, hs, pos0) == PT_OK);
    check_close(what, x, ref, n, 1e-6, 1e-6);
    for (size_t r = 0; r < (size_t)B * T; r++) { /* the v heads keep their bits */
        size_t v0 = r * W + (size_t)(NH + NKV) * hs;
        if (memcmp(x + v0, x0 + v0, (size_t)NKV * hs * sizeof(float)) != 0) {
            fprintf(stderr, "%s: row %zu's v heads changed\n", what, r);
            g_fail++;
            break;
        }
    }
    /* backward: d(sum(rope(x) * dout))/dx */
    double *R = to_double(d, n), *tmp = dnew(n), *g = dnew(n);
    for (size_t i = 0; i < n; i++)
        g[i] = fd_grad(rope_fwd, &c, c.x, i, tmp, R, n);
    EXPECT(be->rope_backward(s, d, cos_t, sin_t, B, T, NH, NKV, hs, pos0) == PT_OK);
    snprintf(what, sizeof what, "rope_backward vs finite differences B=%d T=%d NH=%d NKV=%d hs=%d pos0=%d", B, T, NH,
             NKV, hs, pos0);
    check_close(what, d, g, n, 1e-6, 1e-5);
    /* a rotation's transpose is its inverse: backward(forward(x)) = x up to rounding */
    EXPECT(be->rope_backward(s, x, cos_t, sin_t, B, T, NH, NKV, hs, pos0) == PT_OK);
    snprintf(what, sizeof what, "rope_backward(rope_forward(x)) = x, B=%d T=%d NH=%d NKV=%d hs=%d", B, T, NH, NKV, hs);
    check_close(what, x, c.x, n, 1e-6, 1e-6);
    free(c.x), free(c.cos), free(c.sin), free(ref), free(R), free(tmp), free(g);
    float *all[] = { cos_t, sin_t, x0, x, d, d0 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
}

static void test_rope(void)
{
    pt_stream *s1 = stream_new(1), *s2 = stream_new(2);
    rope_case(s2, 2, 5, 4, 2, 6, 0);  /* grouped-query, hs 6 */
    rope_case(s1, 1, 3, 2, 2, 4, 7);  /* multi-head, later positions (a KV-cache step) */
    rope_case(s2, 3, 4, 3, 1, 2, 1);  /* multi-query, one pair per head */
    rope_case(s2, 1, 2, 4, 4, 16, 900); /* large angles */

    /* the same bits on 1 and 2 threads (large enough to use the team) */
    {
        const int B = 4, T = 256, NH = 4, NKV = 2, hs = 32, half = hs / 2;
        const size_t n = (size_t)B * T * (NH + 2 * NKV) * hs, nt = (size_t)T * half;
        float *cos_t = fnew(nt), *sin_t = fnew(nt), *a = frand_new(n, 1), *b = fnew(n);
        rope_tables(cos_t, sin_t, T, hs, 500000.0);
        memcpy(b, a, n * sizeof(float));
        EXPECT(be->rope_forward(s1, a, cos_t, sin_t, B, T, NH, NKV, hs, 0) == PT_OK);
        EXPECT(be->rope_forward(s2, b, cos_t, sin_t, B, T, NH, NKV, hs, 0) == PT_OK);
        check_bits("rope_forward, 1 vs 2 threads", a, b, n);
        EXPECT(be->rope_backward(s1, a, cos_t, sin_t, B, T, NH, NKV, hs, 0) == PT_OK);
        EXPECT(be->rope_backward(s2, b, cos_t, sin_t, B, T, NH, NKV, hs, 0) == PT_OK);
        check_bits("rope_backward, 1 vs 2 threads", a, b, n);
        ffree(cos_t), ffree(sin_t), ffree(a), ffree(b);
    }

    /* refusals: an odd head width, NKV not dividing NH, a negative position */
    float buf[64] = { 0 }, tab[64] = { 0 };
    EXPECT(be->rope_forward(s1, buf, tab, tab, 1, 1, 2, 2, 5, 0) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "hs=5") != NULL && strstr(pt_last_error(), "even") != NULL);
    EXPECT(be->rope_backward(s1, buf, tab, tab, 1, 1, 2, 2, 3, 0) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "rope_backward") != NULL);
    EXPECT(be->rope_forward(s1, buf, tab, tab, 1, 1, 4, 3, 2, 0) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "NKV=3") != NULL);
    EXPECT(be->rope_forward(s1, buf, tab, tab, 1, 1, 2, 2, 2, -1) == PT_EINVAL);
    EXPECT(be->rope_forward(s1, buf, tab, tab, 0, 1, 2, 2, 2, 0) == PT_EINVAL);
    be->stream_destroy(s1);
    be->stream_destroy(s2);
}

/* ---- SwiGLU (llama) ---- */

typedef struct swiglu_ctx { double *gu; int N, H; } swiglu_ctx;
static void swiglu_fwd(void *c_, double *out)
{
    swiglu_ctx *c = c_;
    ref_swiglu(out, c->gu, c->N, c->H);
}

static void test_swiglu(void)
{
    pt_stream *s = stream_new(2);
    {   /* forward against the reference, with extreme gates */
        const int N = 7, H = 33;
        size_t ng = (size_t)N * 2 * H, no = (size_t)N * H;
        float *gu = frand_new(ng, 4), *out = fnew(no);
        const float extreme[] = { 100.0f, -100.0f, 0.0f, -20.0f, 20.0f, 1e-8f };
        for (int i = 0; i < 6; i++)
            gu[(size_t)2 * 2 * H + i] = extreme[i]; /* row 2's first gates */
        double *gd = to_double(gu, ng), *ref = dnew(no);
        ref_swiglu(ref, gd, N, H);
        EXPECT(be->swiglu_forward(s, out, gu, N, H) == PT_OK);
        check_close("swiglu_forward", out, ref, no, 1e-6, 1e-5);
        EXPECT(out[(size_t)2 * H + 0] == 100.0f * gu[(size_t)2 * 2 * H + H]); /* silu(100) = 100 */
        EXPECT(out[(size_t)2 * H + 2] == 0.0f);
        free(gd), free(ref);
        ffree(gu), ffree(out);
    }
    {   /* backward by central differences (dgu overwritten) */
        const int N = 4, H = 9;
        size_t ng = (size_t)N * 2 * H, no = (size_t)N * H;
        float *gu = frand_new(ng, 3), *dout = frand_new(no, 1), *dgu = frand_new(ng, 1);
        swiglu_ctx c = { to_double(gu, ng), N, H };
        double *R = to_double(dout, no), *tmp = dnew(no), *g = dnew(ng);
        for (size_t i = 0; i < ng; i++)
            g[i] = fd_grad(swiglu_fwd, &c, c.gu, i, tmp, R, no);
        EXPECT(be->swiglu_backward(s, dgu, dout, gu, N, H) == PT_OK);
        check_close("swiglu_backward vs finite differences", dgu, g, ng, 1e-6, 1e-5);
        free(c.gu), free(R), free(tmp), free(g);
        ffree(gu), ffree(dout), ffree(dgu);
    }
    {   /* the same bits on 1 and 2 threads (llama-tiny's H) */
        const int N = 64, H = 352;
        size_t ng = (size_t)N * 2 * H, no = (size_t)N * H;
        float *gu = frand_new(ng, 3), *dout = frand_new(no, 1);
        float *o1 = fnew(no), *o2 = fnew(no), *d1 = fnew(ng), *d2 = fnew(ng);
        pt_stream *s1 = stream_new(1);
        EXPECT(be->swiglu_forward(s1, o1, gu, N, H) == PT_OK);
        EXPECT(be->swiglu_forward(s, o2, gu, N, H) == PT_OK);
        EXPECT(be->swiglu_backward(s1, d1, dout, gu, N, H) == PT_OK);
        EXPECT(be->swiglu_backward(s, d2, dout, gu, N, H) == PT_OK);
        check_bits("swiglu_forward, 1 vs 2 threads", o1, o2, no);
        check_bits("swiglu_backward, 1 vs 2 threads", d1, d2, ng);
        be->stream_destroy(s1);
        float *all[] = { gu, dout, o1, o2, d1, d2 };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }
    float d = 0;
    EXPECT(be->swiglu_forward(s, &d, &d, 1, 0) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "swiglu_forward") != NULL);
    EXPECT(be->swiglu_backward(s, &d, &d, &d, -1, 3) == PT_EINVAL);
    be->stream_destroy(s);
}

/* ---- attention ---- */

typedef struct att_ctx { double *qkv; int B, T, C, NH, NKV; } att_ctx;
static void att_fwd(void *c_, double *out)
{
    att_ctx *c = c_;
    ref_attention(out, c->qkv, c->B, c->T, c->C, c->NH, c->NKV);
}

/* Floats of one token's qkv row: NH query heads, NKV key heads, NKV value heads. */
static size_t att_width(int C, int NH, int NKV) { return (size_t)C + 2 * (size_t)NKV * (C / NH); }

/* Forward against the reference (all rows, or `n_rows` sampled rows when > 0) and the input
 * gradient against central differences (all entries, or `n_fd` sampled ones when > 0);
 * NKV key/value heads (NKV == NH: multi-head). */
static void attention_case(pt_stream *s, int B, int T, int C, int NH, int NKV, int n_rows, int n_fd)
{
    char what[160];
    const size_t W = att_width(C, NH, NKV);
    size_t nqkv = (size_t)B * T * W, nout = (size_t)B * T * C;
    float *qkv = frand_new(nqkv, 1.5), *out = fnew(nout), *dout = frand_new(nout, 1), *dqkv = fnew(nqkv);
    float *saved = fnew(be->attention_saved_size(B, T, C, NH, NKV));
    float *scratch = fnew(be->attention_scratch_size(B, T, C, NH, NKV));
    EXPECT(be->attention_forward(s, out, saved, scratch, qkv, B, T, C, NH, NKV) == PT_OK);
    EXPECT(be->attention_backward(s, dqkv, scratch, dout, qkv, out, saved, B, T, C, NH, NKV) == PT_OK);
    att_ctx c = { to_double(qkv, nqkv), B, T, C, NH, NKV };
    const int hs = C / NH;

    snprintf(what, sizeof what, "attention_forward B=%d T=%d C=%d NH=%d NKV=%d", B, T, C, NH, NKV);
    if (n_rows <= 0) {
        double *ref = dnew(nout);
        att_fwd(&c, ref);
        check_close(what, out, ref, nout, 1e-5, 1e-4);
        free(ref);
    } else {
        double *row = dnew(hs);
        for (int k = 0; k < n_rows; k++) {
            int b = (int)((urand() + 1) / 2 * B), h = (int)((urand() + 1) / 2 * NH);
            int t = k == 0 ? 0 : k == 1 ? T - 1 : k == 2 ? 64 : (int)((urand() + 1) / 2 * T);
            if (t >= T)
                t = T - 1;
            ref_attention_row(row, c.qkv, b, t, h, T, C, NH, NKV);
            check_close(what, out + ((size_t)b * T + t) * C + (size_t)h * hs, row, hs, 1e-5, 1e-4);
        }
        free(row);
    }

    double *R = to_double(dout, nout), *tmp = dnew(nout);
    size_t n_check = n_fd > 0 ? (size_t)n_fd : nqkv;
    float *got = fnew(n_check);
    double *want = dnew(n_check);
    for (size_t k = 0; k < n_check; k++) {
        size_t i = n_fd > 0 ? (size_t)((urand() + 1) / 2 * nqkv) % nqkv : k;
        if (n_fd > 0 && k < 3) /* always include a q, a k and a v entry of the last token */
            i = nqkv - W + (k == 0 ? 0 : k == 1 ? (size_t)C : (size_t)C + (size_t)NKV * hs) + 1;
        got[k] = dqkv[i];
        want[k] = fd_grad(att_fwd, &c, c.qkv, i, tmp, R, nout);
    }
    snprintf(what, sizeof what, "attention_backward dqkv vs finite differences B=%d T=%d C=%d NH=%d NKV=%d (%s)", B,
             T, C, NH, NKV, n_fd > 0 ? "sampled entries" : "all entries");
    check_close(what, got, want, n_check, 2e-5, 1e-3);
    free(R);
    free(tmp);
    free(want);
    free(c.qkv);
    ffree(got);
    ffree(qkv);
    ffree(out);
    ffree(dout);
    ffree(dqkv);
    ffree(saved);
    ffree(scratch);
}

/* Runs forward and backward of one shape on stream s into out, dqkv (saved, scratch allocated here). */
static void attention_run(pt_stream *s, float *out, float *dqkv, const float *qkv, const float *dout, int B, int T,
                          int C, int NH, int NKV)
{
    float *sv = fnew(be->attention_saved_size(B, T, C, NH, NKV)), *sc = fnew(be->attention_scratch_size(B, T, C, NH, NKV));
    EXPECT(be->attention_forward(s, out, sv, sc, qkv, B, T, C, NH, NKV) == PT_OK);
    EXPECT(be->attention_backward(s, dqkv, sc, dout, qkv, out, sv, B, T, C, NH, NKV) == PT_OK);
    ffree(sv);
    ffree(sc);
}

/* Grouped-query attention is multi-head attention whose key and value heads are copied across
 * each group: on the copied input the outputs and query gradients are the same bits, and each kv
 * head's gradient is the sum of its group's heads' gradients, added in head order (the order the
 * kernel promises), again the same bits. */
static void attention_gqa_vs_mha(pt_stream *s, int B, int T, int C, int NH, int NKV)
{
    const int hs = C / NH, G = NH / NKV;
    const size_t Wg = att_width(C, NH, NKV), Wm = att_width(C, NH, NH);
    const size_t ng = (size_t)B * T * Wg, nm = (size_t)B * T * Wm, nout = (size_t)B * T * C;
    float *qg = frand_new(ng, 1.5), *qm = fnew(nm), *dout = frand_new(nout, 1);
    for (size_t r = 0; r < (size_t)B * T; r++) {
        const float *src = qg + r * Wg;
        float *dst = qm + r * Wm;
        memcpy(dst, src, (size_t)C * sizeof(float));
        for (int h = 0; h < NH; h++) {
            memcpy(dst + C + (size_t)h * hs, src + C + (size_t)(h / G) * hs, (size_t)hs * sizeof(float));
            memcpy(dst + 2 * C + (size_t)h * hs, src + C + (size_t)(NKV + h / G) * hs, (size_t)hs * sizeof(float));
        }
    }
    float *og = fnew(nout), *om = fnew(nout), *dg = fnew(ng), *dm = fnew(nm), *want = fnew(ng);
    attention_run(s, og, dg, qg, dout, B, T, C, NH, NKV);
    attention_run(s, om, dm, qm, dout, B, T, C, NH, NH);
    for (size_t r = 0; r < (size_t)B * T; r++) {
        const float *m = dm + r * Wm;
        float *w = want + r * Wg;
        memcpy(w, m, (size_t)C * sizeof(float));
        for (int kv = 0; kv < NKV; kv++)
            for (int d = 0; d < hs; d++) {
                float k = m[C + (size_t)(kv * G) * hs + d], v = m[2 * C + (size_t)(kv * G) * hs + d];
                for (int g = 1; g < G; g++) {
                    k += m[C + (size_t)(kv * G + g) * hs + d];
                    v += m[2 * C + (size_t)(kv * G + g) * hs + d];
                }
                w[C + (size_t)kv * hs + d] = k;
                w[C + (size_t)(NKV + kv) * hs + d] = v;
            }
    }
    char what[128];
    snprintf(what, sizeof what, "attention_forward NKV=%d vs NH=%d on copied kv heads (B=%d T=%d C=%d)", NKV, NH, B,
             T, C);
    check_bits(what, og, om, nout);
    snprintf(what, sizeof what, "attention_backward NKV=%d vs NH=%d summed over groups (B=%d T=%d C=%d)", NKV, NH, B,
             T, C);
    check_bits(what, dg, want, ng);
    float *all[] = { qg, qm, dout, og, om, dg, dm, want };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
}

static void test_attention(void)
{
    pt_stream *s1 = stream_new(1), *s2 = stream_new(2);
    attention_case(s2, 2, 5, 8, 2, 2, 0, 0);
    attention_case(s1, 1, 1, 4, 1, 1, 0, 0);
    attention_case(s2, 1, 70, 12, 3, 3, 0, 150); /* two query blocks, the second partial */
    /* grouped-query: multi-query (NKV 1), groups of 2 and 3, odd head widths, T > 64 */
    attention_case(s2, 2, 5, 8, 2, 1, 0, 0);
    attention_case(s2, 3, 7, 12, 4, 2, 0, 0);  /* hs 3 */
    attention_case(s1, 2, 6, 30, 6, 2, 0, 0);  /* hs 5, groups of 3 */
    attention_case(s2, 1, 9, 20, 4, 1, 0, 0);  /* hs 5, one kv head for four queries */
    attention_case(s2, 2, 70, 16, 4, 2, 0, 200); /* two query blocks */
    attention_case(s2, 1, 130, 12, 4, 1, 10, 120); /* three blocks, hs 3 */

    /* the same bits whatever the thread count (one task per batch and head; the group sums in
     * head order), for multi-head and grouped-query layouts */
    const int B = 2, T = 130, C = 32, NH = 4;
    const int nkvs[] = { NH, 2, 1 };
    for (int k = 0; k < 3; k++) {
        const int NKV = nkvs[k];
        size_t nqkv = (size_t)B * T * att_width(C, NH, NKV), nout = (size_t)B * T * C;
        float *qkv = frand_new(nqkv, 1), *dout = frand_new(nout, 1);
        float *o1 = fnew(nout), *o2 = fnew(nout), *d1 = fnew(nqkv), *d2 = fnew(nqkv);
        pt_stream *s3 = stream_new(3);
        attention_run(s1, o1, d1, qkv, dout, B, T, C, NH, NKV);
        attention_run(s2, o2, d2, qkv, dout, B, T, C, NH, NKV);
        char what[96];
        snprintf(what, sizeof what, "attention_forward NKV=%d, 1 vs 2 threads", NKV);
        check_bits(what, o1, o2, nout);
        snprintf(what, sizeof what, "attention_backward NKV=%d, 1 vs 2 threads", NKV);
        check_bits(what, d1, d2, nqkv);
        attention_run(s3, o2, d2, qkv, dout, B, T, C, NH, NKV);
        snprintf(what, sizeof what, "attention_backward NKV=%d, 1 vs 3 threads", NKV);
        check_bits(what, d1, d2, nqkv);
        be->stream_destroy(s3);
        EXPECT(be->attention_saved_size(B, T, C, NH, NKV) == (size_t)B * NH * T);
        float *all[] = { qkv, dout, o1, o2, d1, d2 };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }
    /* grouped-query scratch holds the per-head dK, dV partials on top of multi-head's */
    EXPECT(be->attention_scratch_size(B, T, C, NH, 2) ==
           be->attention_scratch_size(B, T, C, NH, NH) + (size_t)B * NH * 2 * T * (C / NH));
    attention_gqa_vs_mha(s2, 2, 70, 16, 4, 2);
    attention_gqa_vs_mha(s2, 1, 9, 24, 6, 1);
    attention_gqa_vs_mha(s1, 3, 5, 18, 6, 3);

    /* refusals: the shape, and NKV not dividing NH */
    float *qkv = fnew(4 * 30), *o = fnew(4 * 10), *sv = fnew(64), *sc = fnew(4096);
    EXPECT(be->attention_forward(s1, o, sv, sc, qkv, 1, 4, 10, 3, 3) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "NH") != NULL);
    const int bad_nkv[] = { 0, 3, 5, -1 };
    for (int k = 0; k < 4; k++) {
        EXPECT(be->attention_forward(s1, o, sv, sc, qkv, 1, 4, 8, 4, bad_nkv[k]) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "NKV") != NULL && strstr(pt_last_error(), "divide NH") != NULL);
        EXPECT(be->attention_backward(s1, qkv, sc, o, qkv, o, sv, 1, 4, 8, 4, bad_nkv[k]) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "attention_backward") != NULL);
        EXPECT(be->attention_decode(s1, o, qkv, 1, 4, 0, 1, 8, 4, bad_nkv[k]) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "NKV") != NULL);
    }
    ffree(qkv), ffree(o), ffree(sv), ffree(sc);
    be->stream_destroy(s1);
    be->stream_destroy(s2);
}

static void test_attention_long(void)
{
    pt_stream *s = stream_new(2);
    attention_case(s, 1, 1024, 16, 2, 2, 12, 12);
    attention_case(s, 1, 300, 32, 8, 2, 8, 12); /* grouped-query, five blocks */
    be->stream_destroy(s);
}

/* ---- embedding ---- */

typedef struct emb_ctx { const int32_t *tok; double *wte, *wpe; int B, T, C; } emb_ctx;
static void emb_fwd(void *c_, double *out)
{
    emb_ctx *c = c_;
    ref_embedding(out, c->tok, c->wte, c->wpe, c->B, c->T, c->C);
}

static void test_embedding(void)
{
    const int B = 3, T = 7, C = 130, V = 5, maxT = 9;
    size_t nout = (size_t)B * T * C;
    int32_t tok[3 * 7];
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((urand() + 1) / 2 * V) % V; /* repeats */
    tok[0] = tok[1] = tok[B * T - 1];
    float *wte = frand_new((size_t)V * C, 1), *wpe = frand_new((size_t)maxT * C, 1), *out = fnew(nout);
    pt_stream *s = stream_new(2);
    EXPECT(be->embedding_forward(s, out, tok, wte, wpe, B, T, C) == PT_OK);
    emb_ctx c = { tok, to_double(wte, (size_t)V * C), to_double(wpe, (size_t)maxT * C), B, T, C };
    double *ref = dnew(nout);
    emb_fwd(&c, ref);
    check_close("embedding_forward", out, ref, nout, 0, 1e-7);

    float *dout = frand_new(nout, 1);
    float *dwte = frand_new((size_t)V * C, 1), *dwpe = frand_new((size_t)maxT * C, 1);
    double *gte = to_double(dwte, (size_t)V * C), *gpe = to_double(dwpe, (size_t)maxT * C), *R = to_double(dout, nout);
    float *dwte_b = fnew((size_t)V * C), *dwpe_b = fnew((size_t)maxT * C);
    memcpy(dwte_b, dwte, (size_t)V * C * sizeof(float));
    memcpy(dwpe_b, dwpe, (size_t)maxT * C * sizeof(float));
    EXPECT(be->embedding_backward(s, dwte, dwpe, dout, tok, B, T, C) == PT_OK);
    for (size_t i = 0; i < (size_t)V * C; i++)
        gte[i] += fd_grad(emb_fwd, &c, c.wte, i, ref, R, nout);
    for (size_t i = 0; i < (size_t)maxT * C; i++)
        gpe[i] += fd_grad(emb_fwd, &c, c.wpe, i, ref, R, nout);
    check_close("embedding_backward dwte vs finite differences", dwte, gte, (size_t)V * C, 1e-5, 1e-5);
    check_close("embedding_backward dwpe vs finite differences", dwpe, gpe, (size_t)maxT * C, 1e-5, 1e-5);
    pt_stream *s3 = stream_new(3);
    EXPECT(be->embedding_backward(s3, dwte_b, dwpe_b, dout, tok, B, T, C) == PT_OK);
    check_bits("embedding_backward dwte, 2 vs 3 threads", dwte, dwte_b, (size_t)V * C);
    check_bits("embedding_backward dwpe, 2 vs 3 threads", dwpe, dwpe_b, (size_t)maxT * C);
    be->stream_destroy(s3);

    tok[4] = -1;
    EXPECT(be->embedding_forward(s, out, tok, wte, wpe, B, T, C) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "position 4") != NULL);
    free(c.wte);
    free(c.wpe);
    free(ref);
    free(gte);
    free(gpe);
    free(R);
    float *all[] = { wte, wpe, out, dout, dwte, dwpe, dwte_b, dwpe_b };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
    be->stream_destroy(s);
}

/* ---- the vocabulary-range embedding (tensor parallelism) ---- */

/* Every rank's embedding_range_forward over the table cut into n_ranks equal row ranges (wpe on
 * rank 0 only), summed in rank order, against embedding_forward; each rank's backward against
 * the rows of embedding_backward. Both bit for bit: one non-zero table term per element, and the
 * gradient rows get the same additions in the same order. */
static void emb_range_ranks(pt_stream *s, pt_stream *s3, const int32_t *tok, const float *wte, const float *wpe,
                            const float *dout, int Vp, int n_ranks, int B, int T, int C, int maxT)
{
    size_t nout = (size_t)B * T * C, nte = (size_t)Vp * C, npe = (size_t)maxT * C;
    float *full = fnew(nout), *sum = fnew(nout), *out = fnew(nout);
    /* g_*: embedding_backward's gradients; r_*: the ranks' (r_pe0: the starting dwpe of every rank) */
    float *g_te = fnew(nte), *g_pe = fnew(npe), *g_te0 = fnew(nte), *r_te = fnew(nte), *r_pe0 = fnew(npe),
          *r_te3 = fnew(nte);
    double *ref = dnew(nout), *wte_d = to_double(wte, nte), *wpe_d = to_double(wpe, npe);
    char what[112];
    EXPECT(be->embedding_forward(s, full, tok, wte, wpe, B, T, C) == PT_OK);
    for (size_t i = 0; i < nte; i++)
        g_te[i] = g_te0[i] = r_te[i] = r_te3[i] = (float)urand();
    for (size_t i = 0; i < npe; i++)
        g_pe[i] = r_pe0[i] = (float)urand();
    float *g_te_nopos = fnew(nte);
    memcpy(g_te_nopos, g_te0, nte * sizeof(float));
    EXPECT(be->embedding_backward(s, g_te, g_pe, dout, tok, B, T, C) == PT_OK);
    EXPECT(be->embedding_backward(s, g_te_nopos, NULL, dout, tok, B, T, C) == PT_OK);
    const int V = Vp / n_ranks;
    for (int r = 0; r < n_ranks; r++) {
        const int v0 = r * V;
        const float *pe = r == 0 ? wpe : NULL;
        EXPECT(be->embedding_range_forward(s, out, tok, wte + (size_t)v0 * C, pe, v0, V, B, T, C) == PT_OK);
        ref_embedding_range(ref, tok, wte_d + (size_t)v0 * C, r == 0 ? wpe_d : NULL, v0, V, B, T, C);
        snprintf(what, sizeof what, "embedding_range_forward rank %d of %d", r, n_ranks);
        check_close(what, out, ref, nout, 0, 1e-7);
        for (size_t i = 0; i < (size_t)B * T; i++) /* another rank's token: a zero row (wpe NULL) */
            if (r > 0 && !(tok[i] >= v0 && tok[i] < v0 + V))
                for (int c = 0; c < C; c++)
                    if (memcmp(&out[i * C + c], &(float){ 0.0f }, sizeof(float)) != 0) {
                        fprintf(stderr, "%s: position %zu (token %d) channel %d is %g, want +0\n", what, i, tok[i],
                                c, (double)out[i * C + c]);
                        g_fail++;
                        c = C;
                    }
        if (r == 0)
            memcpy(sum, out, nout * sizeof(float));
        else
            for (size_t i = 0; i < nout; i++)
                sum[i] += out[i];
        /* backward: this rank's rows of dwte; dwpe on every rank (the caller decides who keeps it) */
        float *te = r_te + (size_t)v0 * C;
        float *pe_r = fnew(npe), *pe_r3 = fnew(npe);
        for (size_t i = 0; i < npe; i++)
            pe_r[i] = pe_r3[i] = r_pe0[i];
        EXPECT(be->embedding_range_backward(s, te, pe_r, dout, tok, v0, V, B, T, C) == PT_OK);
        EXPECT(be->embedding_range_backward(s3, r_te3 + (size_t)v0 * C, pe_r3, dout, tok, v0, V, B, T, C) == PT_OK);
        snprintf(what, sizeof what, "embedding_range_backward dwte rank %d of %d", r, n_ranks);
        check_bits(what, te, g_te + (size_t)v0 * C, (size_t)V * C);
        snprintf(what, sizeof what, "embedding_range_backward dwpe rank %d of %d", r, n_ranks);
        check_bits(what, pe_r, g_pe, npe);
        check_bits("embedding_range_backward, 2 vs 3 threads", te, r_te3 + (size_t)v0 * C, (size_t)V * C);
        check_bits("embedding_range_backward dwpe, 2 vs 3 threads", pe_r, pe_r3, npe);
        /* dwpe NULL: the dwte rows alone, those of embedding_backward with dwpe NULL */
        float *te_np = fnew((size_t)V * C);
        memcpy(te_np, g_te0 + (size_t)v0 * C, (size_t)V * C * sizeof(float));
        EXPECT(be->embedding_range_backward(s, te_np, NULL, dout, tok, v0, V, B, T, C) == PT_OK);
        check_bits("embedding_range_backward dwte, dwpe NULL", te_np, g_te_nopos + (size_t)v0 * C, (size_t)V * C);
        ffree(te_np);
        ffree(pe_r);
        ffree(pe_r3);
    }
    snprintf(what, sizeof what, "embedding_range_forward summed over %d ranks vs embedding_forward", n_ranks);
    check_bits(what, sum, full, nout);
    free(ref);
    free(wte_d);
    free(wpe_d);
    float *all[] = { full, sum, out, g_te, g_pe, g_te0, r_te, r_pe0, r_te3, g_te_nopos };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
}

static void test_embedding_range(void)
{
    const int B = 3, T = 7, C = 130, Vp = 12, maxT = 9;
    size_t nout = (size_t)B * T * C;
    int32_t tok[3 * 7];
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((urand() + 1) / 2 * Vp) % Vp;
    tok[0] = tok[1] = tok[B * T - 1]; /* repeats */
    tok[2] = 0;
    tok[3] = Vp - 1; /* both ends of the table */
    float *wte = frand_new((size_t)Vp * C, 1), *wpe = frand_new((size_t)maxT * C, 1), *dout = frand_new(nout, 1);
    pt_stream *s = stream_new(2), *s3 = stream_new(3);
    for (int n_ranks = 1; n_ranks <= 4; n_ranks++)
        if (Vp % n_ranks == 0)
            emb_range_ranks(s, s3, tok, wte, wpe, dout, Vp, n_ranks, B, T, C, maxT);

    { /* a range not at a rank boundary, wpe NULL; backward against the double sums */
        const int v0 = 5, V = 3;
        float *out = fnew(nout), *dte = frand_new((size_t)V * C, 1);
        double *ref = dnew(nout), *wd = to_double(wte + (size_t)v0 * C, (size_t)V * C),
               *gref = to_double(dte, (size_t)V * C);
        EXPECT(be->embedding_range_forward(s, out, tok, wte + (size_t)v0 * C, NULL, v0, V, B, T, C) == PT_OK);
        ref_embedding_range(ref, tok, wd, NULL, v0, V, B, T, C);
        check_close("embedding_range_forward v0=5 V=3, wpe NULL", out, ref, nout, 0, 0);
        EXPECT(be->embedding_range_backward(s, dte, NULL, dout, tok, v0, V, B, T, C) == PT_OK);
        for (int i = 0; i < B * T; i++)
            if (tok[i] >= v0 && tok[i] < v0 + V)
                for (int c = 0; c < C; c++)
                    gref[(size_t)(tok[i] - v0) * C + c] += dout[(size_t)i * C + c];
        check_close("embedding_range_backward v0=5 V=3 vs the sum of its rows", dte, gref, (size_t)V * C, 1e-6,
                    1e-6);
        /* refusals: an empty or negative range, a negative token */
        EXPECT(be->embedding_range_forward(s, out, tok, wte, NULL, 0, 0, B, T, C) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "V=0") != NULL);
        EXPECT(be->embedding_range_forward(s, out, tok, wte, NULL, -1, V, B, T, C) == PT_EINVAL);
        EXPECT(be->embedding_range_backward(s, dte, NULL, dout, tok, 0, -3, B, T, C) == PT_EINVAL);
        tok[4] = -1;
        EXPECT(be->embedding_range_forward(s, out, tok, wte, wpe, 0, Vp, B, T, C) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "position 4") != NULL);
        EXPECT(be->embedding_range_backward(s, dte, NULL, dout, tok, v0, V, B, T, C) == PT_EINVAL);
        free(ref);
        free(wd);
        free(gref);
        ffree(out);
        ffree(dte);
    }
    ffree(wte);
    ffree(wpe);
    ffree(dout);
    be->stream_destroy(s);
    be->stream_destroy(s3);
}

/* ---- softmax + cross-entropy ---- */

typedef struct ce_ctx { double *logits; const int32_t *tgt; int N, V; } ce_ctx;
static void ce_fwd(void *c_, double *out)
{
    ce_ctx *c = c_;
    ref_crossentropy(out, c->logits, c->tgt, c->N, c->V);
}

/* d(dloss * sum of the rows' losses)/d(logits) (N,V) by central differences of the double
 * reference (caller frees). */
static double *ce_fd_grads(const float *logits, const int32_t *tgt, int N, int V, float dloss)
{
    size_t n = (size_t)N * V;
    ce_ctx c = { to_double(logits, n), tgt, N, V };
    double *R = dnew(N), *tmp = dnew(N), *g = dnew(n);
    for (int i = 0; i < N; i++)
        R[i] = dloss;
    for (size_t i = 0; i < n; i++)
        g[i] = fd_grad(ce_fwd, &c, c.logits, i, tmp, R, N);
    free(c.logits);
    free(R);
    free(tmp);
    return g;
}

static void test_crossentropy(void)
{
    pt_stream *s = stream_new(2);
    {   /* forward on a wide vocabulary, with ignored rows and extreme logits */
        const int N = 6, V = 50257;
        int32_t tgt[6] = { 3, -1, V - 1, 0, -100, 17 };
        float *logits = frand_new((size_t)N * V, 4), *probs = fnew((size_t)N * V), *loss = fnew(N);
        logits[(size_t)3 * V + 5] = 1000.0f;
        logits[(size_t)3 * V + 6] = -1000.0f;
        double *ld = to_double(logits, (size_t)N * V), *ref = dnew(N), *pref = dnew((size_t)N * V);
        ref_crossentropy(ref, ld, tgt, N, V);
        for (int n = 0; n < N; n++) {
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < V; i++)
                mx = fmax(mx, ld[(size_t)n * V + i]);
            for (int i = 0; i < V; i++)
                sum += exp(ld[(size_t)n * V + i] - mx);
            for (int i = 0; i < V; i++)
                pref[(size_t)n * V + i] = exp(ld[(size_t)n * V + i] - mx) / sum;
        }
        EXPECT(be->crossentropy_forward(s, loss, probs, logits, tgt, N, V, 0) == PT_OK);
        check_close("crossentropy_forward losses", loss, ref, N, 1e-5, 1e-5);
        check_close("crossentropy_forward probs", probs, pref, (size_t)N * V, 1e-9, 1e-5);
        EXPECT(loss[1] == 0.0f && loss[4] == 0.0f);
        EXPECT(be->crossentropy_forward(s, loss, logits, logits, tgt, N, V, 0) == PT_OK); /* probs aliases logits */
        check_bits("crossentropy_forward probs (aliased)", logits, probs, (size_t)N * V);
        check_close("crossentropy_forward losses (aliased)", loss, ref, N, 1e-5, 1e-5);
        tgt[2] = V;
        EXPECT(be->crossentropy_forward(s, loss, probs, logits, tgt, N, V, 0) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "row 2") != NULL);
        free(ld);
        free(ref);
        free(pref);
        ffree(logits);
        ffree(probs);
        ffree(loss);
    }
    {   /* backward: L = dloss * sum of losses, by central differences */
        const int N = 5, V = 11;
        const int32_t tgt[5] = { 2, -1, 10, 0, 7 };
        const float dloss = 0.25f;
        size_t n = (size_t)N * V;
        float *logits = frand_new(n, 3), *probs = fnew(n), *loss = fnew(N), *dl = fnew(n);
        EXPECT(be->crossentropy_forward(s, loss, probs, logits, tgt, N, V, 0) == PT_OK);
        EXPECT(be->crossentropy_backward(s, dl, probs, tgt, dloss, N, V, 0) == PT_OK);
        double *g = ce_fd_grads(logits, tgt, N, V, dloss);
        check_close("crossentropy_backward vs finite differences", dl, g, n, 1e-6, 1e-4);
        for (int i = 0; i < V; i++)
            EXPECT(dl[(size_t)1 * V + i] == 0.0f);
        EXPECT(be->crossentropy_backward(s, probs, probs, tgt, dloss, N, V, 0) == PT_OK); /* aliased */
        check_bits("crossentropy_backward (aliased)", probs, dl, n);
        free(g);
        ffree(logits);
        ffree(probs);
        ffree(loss);
        ffree(dl);
    }
    be->stream_destroy(s);
}

/* ---- cross-entropy over vocabulary shards (xent_shard_*) ---- */

/* One pass of the shard path over a row-major (N,V) logits matrix cut at bounds[0] = 0 <
 * bounds[1] < ... < bounds[K] = V: each shard's columns copied to their own (N,V_k) buffer,
 * forward in order, finish, then (dl != NULL) backward, the shards' gradients put back side by
 * side in dl (N,V). alias: exps and dlogits are the shard's logits buffer and stats_out is
 * stats_in; otherwise all separate. stats (N,PT_XENT_STATS) gets the final statistics. Returns
 * finish's status (forward and backward must succeed). */
static pt_status xent_run(pt_stream *s, const float *logits, const int32_t *tgt, int N, int V, int n_valid,
                          const int *bounds, int K, int alias, float dloss, float *loss, float *lse, float *stats,
                          float *dl)
{
    float *x[8], *e[8], *rmax[8];
    float *st_a = fnew((size_t)N * PT_XENT_STATS), *st_b = alias ? st_a : fnew((size_t)N * PT_XENT_STATS);
    for (int k = 0; k < K; k++) {
        int v0 = bounds[k], vk = bounds[k + 1] - bounds[k];
        x[k] = fnew((size_t)N * vk);
        e[k] = alias ? x[k] : fnew((size_t)N * vk);
        rmax[k] = fnew(N);
        for (int n = 0; n < N; n++)
            memcpy(x[k] + (size_t)n * vk, logits + (size_t)n * V + v0, (size_t)vk * sizeof(float));
    }
    float *in = NULL, *out = st_a;
    for (int k = 0; k < K; k++) {
        EXPECT(be->xent_shard_forward(s, out, e[k], rmax[k], in, x[k], tgt, N, bounds[k + 1] - bounds[k], bounds[k],
                                      n_valid) == PT_OK);
        in = out;
        out = out == st_a ? st_b : st_a;
    }
    memcpy(stats, in, (size_t)N * PT_XENT_STATS * sizeof(float));
    pt_status st = be->xent_shard_finish(s, loss, lse, in, tgt, N, V);
    for (int k = 0; k < K && dl != NULL && st == PT_OK; k++) {
        int v0 = bounds[k], vk = bounds[k + 1] - bounds[k];
        float *d = alias ? e[k] : fnew((size_t)N * vk);
        EXPECT(be->xent_shard_backward(s, d, e[k], rmax[k], lse, tgt, dloss, N, vk, v0) == PT_OK);
        for (int n = 0; n < N; n++)
            memcpy(dl + (size_t)n * V + v0, d + (size_t)n * vk, (size_t)vk * sizeof(float));
        if (!alias)
            ffree(d);
    }
    for (int k = 0; k < K; k++) {
        if (!alias)
            ffree(e[k]);
        ffree(x[k]);
        ffree(rmax[k]);
    }
    if (!alias)
        ffree(st_b);
    ffree(st_a);
    return st;
}

static void test_xent_shard(void)
{
    pt_stream *s = stream_new(2);
    {   /* forward against double references, backward against crossentropy_* on whole rows */
        const int N = 7, V = 997, n_valid = 990;
        const int cuts[][5] = { { 0, 997 }, { 0, 400, 997 }, { 0, 1, 600, 997 }, { 0, 123, 990, 997 },
                                { 0, 400, 401, 990, 997 } };
        const int n_cuts[] = { 1, 2, 3, 3, 4 };
        int32_t tgt[7] = { 17, -1, 399, 600, 995, V - 1, 0 };
        float *logits = frand_new((size_t)N * V, 4);
        float *row = logits + (size_t)2 * V; /* a three-way tie across the boundaries at 400 and 401 */
        row[399] = row[400] = row[401] = 7.0f;
        row = logits + (size_t)3 * V; /* ties across the boundaries at 1 and 600 */
        row[0] = row[1] = row[600] = 6.0f;
        row = logits + (size_t)4 * V; /* the row's max in a padding column, the valid max after a shard cut */
        row[995] = 9.0f;
        row[993] = 9.0f;
        row[700] = 5.0f;
        row = logits + (size_t)5 * V; /* extreme logits */
        row[5] = 1000.0f;
        row[6] = -1000.0f;
        row = logits + (size_t)6 * V; /* the maximum at both ends of the valid columns */
        row[0] = row[989] = 8.0f;
        double *ld = to_double(logits, (size_t)N * V), *ref = dnew(N), *ref_lse = dnew(N);
        int ref_j[7];
        ref_crossentropy(ref, ld, tgt, N, V);
        for (int n = 0; n < N; n++) {
            const double *x = ld + (size_t)n * V;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < V; i++)
                mx = fmax(mx, x[i]);
            for (int i = 0; i < V; i++)
                sum += exp(x[i] - mx);
            ref_lse[n] = mx + log(sum);
            ref_j[n] = 0;
            for (int i = 1; i < n_valid; i++)
                if (x[i] > x[ref_j[n]])
                    ref_j[n] = i;
        }
        EXPECT(ref_j[2] == 399 && ref_j[3] == 0 && ref_j[4] == 700 && ref_j[6] == 0);

        /* the whole-row kernels, the reference of the shard gradients */
        const float dloss = 1.0f / N;
        float *probs = fnew((size_t)N * V), *dl_ref = fnew((size_t)N * V), *ce_loss = fnew(N);
        EXPECT(be->crossentropy_forward(s, ce_loss, probs, logits, tgt, N, V, 0) == PT_OK);
        EXPECT(be->crossentropy_backward(s, dl_ref, probs, tgt, dloss, N, V, 0) == PT_OK);
        double *dl_refd = to_double(dl_ref, (size_t)N * V);

        float *loss = fnew(N), *lse = fnew(N), *stats = fnew((size_t)N * PT_XENT_STATS), *dl = fnew((size_t)N * V);
        float *loss2 = fnew(N), *lse2 = fnew(N), *stats2 = fnew((size_t)N * PT_XENT_STATS),
              *dl2 = fnew((size_t)N * V);
        for (size_t c = 0; c < sizeof n_cuts / sizeof n_cuts[0]; c++) {
            char what[96];
            snprintf(what, sizeof what, "xent_shard K=%d (cut %zu)", n_cuts[c], c);
            EXPECT(xent_run(s, logits, tgt, N, V, n_valid, cuts[c], n_cuts[c], 0, dloss, loss, lse, stats, dl) ==
                   PT_OK);
            check_close(what, loss, ref, N, 1e-6, 1e-5);
            check_close(what, lse, ref_lse, N, 1e-6, 1e-5);
            EXPECT(loss[1] == 0.0f);
            for (int n = 0; n < N; n++) {
                const float *st = stats + (size_t)n * PT_XENT_STATS;
                if (st[4] != (float)ref_j[n] || st[3] != logits[(size_t)n * V + ref_j[n]]) {
                    fprintf(stderr, "%s: row %d argmax %g (logit %g), want the first maximum %d (logit %g)\n", what,
                            n, (double)st[4], (double)st[3], ref_j[n], (double)logits[(size_t)n * V + ref_j[n]]);
                    g_fail++;
                }
            }
            check_close(what, dl, dl_refd, (size_t)N * V, 1e-6, 1e-5);
            for (int i = 0; i < V; i++)
                EXPECT(dl[(size_t)1 * V + i] == 0.0f);
            /* exps == logits, dlogits == exps, stats_out == stats_in: the same bits */
            EXPECT(xent_run(s, logits, tgt, N, V, n_valid, cuts[c], n_cuts[c], 1, dloss, loss2, lse2, stats2, dl2) ==
                   PT_OK);
            check_bits("xent_shard losses (aliased)", loss, loss2, N);
            check_bits("xent_shard lse (aliased)", lse, lse2, N);
            check_bits("xent_shard stats (aliased)", stats, stats2, (size_t)N * PT_XENT_STATS);
            check_bits("xent_shard dlogits (aliased)", dl, dl2, (size_t)N * V);
        }
        /* one shard, all columns valid: the argmax may land anywhere */
        const int whole[2] = { 0, V };
        EXPECT(xent_run(s, logits, tgt, N, V, V, whole, 1, 0, dloss, loss, lse, stats, NULL) == PT_OK);
        EXPECT(stats[(size_t)4 * PT_XENT_STATS + 4] == 993.0f); /* first of 993 and 995 */
        /* a target outside the vocabulary: refused by finish, nothing written */
        tgt[2] = V;
        for (int n = 0; n < N; n++)
            loss[n] = lse[n] = -7.0f;
        EXPECT(xent_run(s, logits, tgt, N, V, n_valid, cuts[2], n_cuts[2], 0, dloss, loss, lse, stats, NULL) ==
               PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "row 2") != NULL);
        for (int n = 0; n < N; n++)
            EXPECT(loss[n] == -7.0f && lse[n] == -7.0f);
        EXPECT(be->xent_shard_forward(s, stats, probs, lse, NULL, logits, tgt, N, 0, 0, n_valid) == PT_EINVAL);
        EXPECT(be->xent_shard_forward(s, stats, probs, lse, NULL, logits, tgt, N, V, -1, n_valid) == PT_EINVAL);
        EXPECT(be->xent_shard_backward(s, dl, probs, lse, lse, tgt, dloss, -1, V, 0) == PT_EINVAL);
        free(ld);
        free(ref);
        free(ref_lse);
        free(dl_refd);
        float *all[] = { logits, probs, dl_ref, ce_loss, loss, lse, stats, dl, loss2, lse2, stats2, dl2 };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            ffree(all[i]);
    }
    {   /* d(mean loss)/d(logits) through three shards, by central differences of the double loss */
        const int N = 4, V = 13, cut[4] = { 0, 5, 6, 13 };
        const int32_t tgt[4] = { 3, -1, 12, 5 };
        const float dloss = 1.0f / N;
        size_t n = (size_t)N * V;
        float *logits = frand_new(n, 3), *loss = fnew(N), *lse = fnew(N), *stats = fnew((size_t)N * PT_XENT_STATS),
              *dl = fnew(n);
        EXPECT(xent_run(s, logits, tgt, N, V, 12, cut, 3, 1, dloss, loss, lse, stats, dl) == PT_OK);
        double *g = ce_fd_grads(logits, tgt, N, V, dloss);
        check_close("xent_shard backward vs finite differences", dl, g, n, 1e-6, 1e-4);
        free(g);
        ffree(logits);
        ffree(loss);
        ffree(lse);
        ffree(stats);
        ffree(dl);
    }
    be->stream_destroy(s);
}

/* ---- the statistics of vocabulary ranges computed apart, combined (xent_stats_combine) ---- */

static void test_xent_combine(void)
{
    pt_stream *s = stream_new(2);
    const int N = 8, V = 997, n_valid = 990;
    /* equal ranks' ranges would need V % n == 0; the combine takes any consecutive ranges */
    const int cuts[][6] = { { 0, 997 }, { 0, 400, 997 }, { 0, 1, 600, 997 }, { 0, 123, 990, 997 },
                            { 0, 400, 401, 990, 997 }, { 0, 250, 500, 750, 997 }, { 0, 993, 995, 996, 997 } };
    const int n_cuts[] = { 1, 2, 3, 3, 4, 4, 4 };
    int32_t tgt[8] = { 17, -1, 399, 600, 995, V - 1, 0, -100 };
    float *logits = frand_new((size_t)N * V, 4);
    float *row = logits + (size_t)2 * V; /* a three-way tie across the cuts at 400 and 401 */
    row[399] = row[400] = row[401] = 7.0f;
    row = logits + (size_t)3 * V; /* ties across the cuts at 1 and 600 */
    row[0] = row[1] = row[600] = 6.0f;
    row = logits + (size_t)4 * V; /* the row's max in padding columns, the valid max after a cut */
    row[995] = 9.0f;
    row[993] = 9.0f;
    row[700] = 5.0f;
    row = logits + (size_t)5 * V; /* extreme logits */
    row[5] = 1000.0f;
    row[6] = -1000.0f;
    row = logits + (size_t)6 * V; /* the maximum at both ends of the valid columns */
    row[0] = row[989] = 8.0f;
    row = logits + (size_t)7 * V; /* every column equal: the first */
    for (int i = 0; i < V; i++)
        row[i] = 1.5f;
    double *ld = to_double(logits, (size_t)N * V), *ref = dnew((size_t)N * PT_XENT_STATS);
    float *parts = fnew((size_t)4 * N * PT_XENT_STATS), *comb = fnew((size_t)N * PT_XENT_STATS),
          *chain = fnew((size_t)N * PT_XENT_STATS), *x = fnew((size_t)N * V), *e = fnew((size_t)N * V),
          *rmax = fnew(N), *loss = fnew(N), *lse = fnew(N), *loss2 = fnew(N), *lse2 = fnew(N);
    char what[112];
    for (size_t c = 0; c < sizeof n_cuts / sizeof n_cuts[0]; c++) {
        const int K = n_cuts[c], *b = cuts[c];
        for (int k = 0; k < K; k++) { /* each range on its own, as a rank computes it */
            int v0 = b[k], vk = b[k + 1] - v0;
            for (int n = 0; n < N; n++)
                memcpy(x + (size_t)n * vk, logits + (size_t)n * V + v0, (size_t)vk * sizeof(float));
            float *p = parts + (size_t)k * N * PT_XENT_STATS;
            EXPECT(be->xent_shard_forward(s, p, e, rmax, NULL, x, tgt, N, vk, v0, n_valid) == PT_OK);
            ref_xent_stats(ref, ld, tgt, N, V, v0, b[k + 1], n_valid);
            for (int n = 0; n < N; n++) { /* the part against the reference: all exact but the sum */
                const float *st = p + (size_t)n * PT_XENT_STATS;
                const double *rs = ref + (size_t)n * PT_XENT_STATS;
                if (st[0] != rs[0] || !(fabs(st[1] - rs[1]) <= 1e-5 * rs[1]) || st[2] != rs[2] || st[3] != rs[3] ||
                    st[4] != rs[4]) {
                    fprintf(stderr, "xent_shard_forward part %d of cut %zu row %d: {%.9g %.9g %.9g %.9g %g}, "
                                    "reference {%.9g %.9g %.9g %.9g %g}\n", k, c, n, (double)st[0], (double)st[1],
                            (double)st[2], (double)st[3], (double)st[4], rs[0], rs[1], rs[2], rs[3], rs[4]);
                    g_fail++;
                }
            }
        }
        EXPECT(be->xent_stats_combine(s, comb, parts, K, N) == PT_OK);
        EXPECT(xent_run(s, logits, tgt, N, V, n_valid, b, K, 0, 1.0f, loss, lse, chain, NULL) == PT_OK);
        snprintf(what, sizeof what, "xent_stats_combine of %d parts vs the chained shards (cut %zu)", K, c);
        check_bits(what, comb, chain, (size_t)N * PT_XENT_STATS);
        /* the whole row's statistics from the reference: the same argmax rule, padding and all */
        ref_xent_stats(ref, ld, tgt, N, V, 0, V, n_valid);
        for (int n = 0; n < N; n++) {
            const float *st = comb + (size_t)n * PT_XENT_STATS;
            const double *rs = ref + (size_t)n * PT_XENT_STATS;
            if (st[0] != rs[0] || !(fabs(st[1] - rs[1]) <= 1e-5 * rs[1]) || st[2] != rs[2] || st[3] != rs[3] ||
                st[4] != rs[4]) {
                fprintf(stderr, "%s: row %d {%.9g %.9g %.9g %.9g %g}, reference {%.9g %.9g %.9g %.9g %g}\n", what,
                        n, (double)st[0], (double)st[1], (double)st[2], (double)st[3], (double)st[4], rs[0], rs[1],
                        rs[2], rs[3], rs[4]);
                g_fail++;
            }
        }
        EXPECT(be->xent_shard_finish(s, loss2, lse2, comb, tgt, N, V) == PT_OK);
        check_bits("xent_shard_finish on combined statistics: losses", loss2, loss, N);
        check_bits("xent_shard_finish on combined statistics: lse", lse2, lse, N);
        EXPECT(loss2[1] == 0.0f && loss2[7] == 0.0f); /* targets < 0 */
    }
    EXPECT(comb[(size_t)4 * PT_XENT_STATS + 4] == 700.0f && comb[(size_t)2 * PT_XENT_STATS + 4] == 399.0f &&
           comb[(size_t)3 * PT_XENT_STATS + 4] == 0.0f && comb[(size_t)7 * PT_XENT_STATS + 4] == 0.0f);
    /* a part that is all padding (cut { 0, 993, 995, 996, 997 } above has three) has no argmax */
    EXPECT(parts[(size_t)3 * N * PT_XENT_STATS + 4] == -1.0f);
    EXPECT(be->xent_stats_combine(s, comb, parts, 0, N) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "n=0") != NULL);
    EXPECT(be->xent_stats_combine(s, comb, parts, 2, -1) == PT_EINVAL);
    EXPECT(be->xent_stats_combine(s, comb, parts, 2, 0) == PT_OK);
    free(ld);
    free(ref);
    float *all[] = { logits, parts, comb, chain, x, e, rmax, loss, lse, loss2, lse2 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
    be->stream_destroy(s);
}

/* ---- AdamW ---- */

static void test_adamw(void)
{
    const size_t n = 100003;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p = frand_new(n, 1), *m = fnew(n), *v = fnew(n), *g = fnew(n);
    double *pd = to_double(p, n), *md = dnew(n), *vd = dnew(n);
    memset(m, 0, n * sizeof(float));
    memset(v, 0, n * sizeof(float));
    pt_stream *s = stream_new(2);
    for (int t = 1; t <= 3; t++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (float)(urand() * (i % 3 == 0 ? 1e-4 : 1.0));
        EXPECT(be->adamw_update(s, p, g, m, v, n, lr, b1, b2, eps, wd, gs, t) == PT_OK);
        /* textbook AdamW with decoupled decay, in double */
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i] * gs;
            md[i] = b1 * md[i] + (1 - (double)b1) * gi;
            vd[i] = b2 * vd[i] + (1 - (double)b2) * gi * gi;
            double mhat = md[i] / (1 - pow(b1, t)), vhat = vd[i] / (1 - pow(b2, t));
            pd[i] -= lr * (mhat / (sqrt(vhat) + eps) + wd * pd[i]);
        }
    }
    check_close("adamw param after 3 steps", p, pd, n, 1e-7, 1e-5);
    check_close("adamw m after 3 steps", m, md, n, 5e-8, 1e-5); /* m can cancel to ~0 */
    check_close("adamw v after 3 steps", v, vd, n, 1e-12, 1e-5);

    /* a hand-computed step: m = v = 0, g = 1, t = 1: mhat = vhat = 1, so
     * p -= lr * (1 / (1 + eps) + wd * p) */
    float p1 = 2.0f, g1 = 1.0f, m1 = 0, v1 = 0;
    EXPECT(be->adamw_update(s, &p1, &g1, &m1, &v1, 1, lr, b1, b2, eps, wd, 1.0f, 1) == PT_OK);
    double want = 2.0 - 1e-3 * (1 / (1 + 1e-8) + 0.1 * 2.0);
    EXPECT(fabs(p1 - want) < 1e-6 && fabs(m1 - 0.1) < 1e-7 && fabs(v1 - 0.05) < 1e-7);

    /* the same bits on 1 and 2 threads */
    float *p2 = fnew(n), *m2 = fnew(n), *v2 = fnew(n);
    memcpy(p2, p, n * sizeof(float));
    memcpy(m2, m, n * sizeof(float));
    memcpy(v2, v, n * sizeof(float));
    pt_stream *s1 = stream_new(1);
    EXPECT(be->adamw_update(s, p, g, m, v, n, lr, b1, b2, eps, wd, gs, 4) == PT_OK);
    EXPECT(be->adamw_update(s1, p2, g, m2, v2, n, lr, b1, b2, eps, wd, gs, 4) == PT_OK);
    check_bits("adamw param, 1 vs 2 threads", p, p2, n);
    EXPECT(be->adamw_update(s, p, g, m, v, n, lr, b1, b2, eps, wd, gs, 0) == PT_EINVAL);
    be->stream_destroy(s1);
    be->stream_destroy(s);
    free(pd);
    free(md);
    free(vd);
    float *all[] = { p, m, v, g, p2, m2, v2 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
}

/* attention_decode (generation): rows t0..t0+n-1 against a KV cache of Tcap rows per sequence, vs
 * the reference row by row (keys 0..t0+i only: later cache rows hold junk that must not count),
 * vs attention_forward's rows, the same bits on 1 and 2 threads, and the shape refusal; multi-head
 * and grouped-query layouts. */
static void test_attention_decode(void)
{
    pt_stream *s1 = stream_new(1), *s2 = stream_new(2);
    static const struct { int B, Tcap, t0, n, C, NH, NKV; } cases[] = {
        { 1, 8, 0, 1, 4, 1, 1 },     { 2, 16, 5, 1, 8, 2, 2 },    { 3, 40, 17, 4, 12, 3, 3 },
        { 1, 300, 299, 1, 32, 4, 4 }, { 2, 200, 0, 130, 16, 2, 2 }, { 2, 16, 5, 1, 8, 2, 1 },
        { 3, 40, 17, 4, 24, 6, 2 },  { 1, 300, 299, 1, 32, 4, 1 }, { 2, 200, 0, 130, 16, 4, 2 },
        { 1, 90, 0, 70, 30, 6, 3 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int B = cases[k].B, Tc = cases[k].Tcap, t0 = cases[k].t0, n = cases[k].n, C = cases[k].C,
                  NH = cases[k].NH, NKV = cases[k].NKV, hs = C / NH;
        const size_t W = att_width(C, NH, NKV);
        size_t ncache = (size_t)B * Tc * W, nout = (size_t)B * n * C;
        float *cache = frand_new(ncache, 1.5), *o1 = fnew(nout), *o2 = fnew(nout);
        EXPECT(be->attention_decode(s1, o1, cache, B, Tc, t0, n, C, NH, NKV) == PT_OK);
        EXPECT(be->attention_decode(s2, o2, cache, B, Tc, t0, n, C, NH, NKV) == PT_OK);
        char what[160];
        snprintf(what, sizeof what, "attention_decode B=%d Tcap=%d t0=%d n=%d C=%d NH=%d NKV=%d", B, Tc, t0, n, C, NH,
                 NKV);
        double *qd = to_double(cache, ncache), *row = dnew(hs);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++)
                for (int h = 0; h < NH; h++) {
                    ref_attention_row(row, qd, b, t0 + i, h, Tc, C, NH, NKV);
                    check_close(what, o1 + ((size_t)b * n + i) * C + (size_t)h * hs, row, hs, 1e-5, 1e-4);
                }
        check_bits("attention_decode, 1 vs 2 threads", o1, o2, nout);
        if (t0 == 0) { /* the prompt: equal to attention_forward on the first n rows */
            size_t nq = (size_t)B * n * W;
            float *qkv = fnew(nq), *of = fnew(nout);
            float *sv = fnew(be->attention_saved_size(B, n, C, NH, NKV)),
                  *sc = fnew(be->attention_scratch_size(B, n, C, NH, NKV));
            for (int b = 0; b < B; b++)
                memcpy(qkv + (size_t)b * n * W, cache + (size_t)b * Tc * W, (size_t)n * W * sizeof(float));
            EXPECT(be->attention_forward(s2, of, sv, sc, qkv, B, n, C, NH, NKV) == PT_OK);
            double *ofd = to_double(of, nout);
            snprintf(what, sizeof what, "attention_decode vs attention_forward B=%d n=%d C=%d NH=%d NKV=%d", B, n, C,
                     NH, NKV);
            check_close(what, o1, ofd, nout, 1e-5, 1e-4);
            free(ofd);
            ffree(qkv), ffree(of), ffree(sv), ffree(sc);
        }
        free(qd);
        free(row);
        ffree(cache), ffree(o1), ffree(o2);
    }
    float *c = fnew(4 * 3 * 8), *o = fnew(8);
    EXPECT(be->attention_decode(s1, o, c, 1, 4, 4, 1, 8, 2, 2) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "Tcap") != NULL);
    EXPECT(be->attention_decode(s1, o, c, 1, 4, 0, 1, 8, 3, 3) == PT_EINVAL);
    EXPECT(be->attention_decode(s1, o, c, 1, 4, 0, 1, 8, 2, 3) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "NKV=3") != NULL);
    ffree(c), ffree(o);
    be->stream_destroy(s1);
    be->stream_destroy(s2);
}

/* ---- fused forms: each against the split calls it stands for, bit for bit ---- */

static float *fcopy(const float *x, size_t n)
{
    float *y = fnew(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void fused_norm_case(pt_stream *s, int N, int C, int rnd, int rms)
{
    size_t n = (size_t)N * C;
    char what[128];
    float *a = frand_new(n, 3), *b = frand_new(n, 1), *w = frand_new(C, 1), *bias = frand_new(C, 1);
    float *res = fnew(n), *out = fnew(n), *mean = fnew(N), *rstd = fnew(N);
    float *res_r = fnew(n), *out_r = fnew(n), *mean_r = fnew(N), *rstd_r = fnew(N);
    const float eps = 1e-5f;
    /* the split sequence: add, round, norm, round */
    EXPECT(be->add(s, res_r, a, b, n) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, res_r, res_r, n) == PT_OK);
    if (rms)
        EXPECT(be->rmsnorm_forward(s, out_r, rstd_r, res_r, w, N, C, eps) == PT_OK);
    else
        EXPECT(be->layernorm_forward(s, out_r, mean_r, rstd_r, res_r, w, bias, N, C) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, out_r, out_r, n) == PT_OK);
    if (rms)
        EXPECT(be->add_rmsnorm_forward(s, res, out, rstd, a, b, w, N, C, eps, rnd) == PT_OK);
    else
        EXPECT(be->add_layernorm_forward(s, res, out, mean, rstd, a, b, w, bias, N, C, rnd) == PT_OK);
    const char *nm = rms ? "add_rmsnorm_forward" : "add_layernorm_forward";
    snprintf(what, sizeof what, "%s %dx%d rnd %d: res", nm, N, C, rnd);
    check_bits(what, res, res_r, n);
    snprintf(what, sizeof what, "%s %dx%d rnd %d: out", nm, N, C, rnd);
    check_bits(what, out, out_r, n);
    snprintf(what, sizeof what, "%s %dx%d rnd %d: rstd", nm, N, C, rnd);
    check_bits(what, rstd, rstd_r, N);
    if (!rms) {
        snprintf(what, sizeof what, "%s %dx%d rnd %d: mean", nm, N, C, rnd);
        check_bits(what, mean, mean_r, N);
    }
    if (rnd) /* rounded means rounded: the low halves are zero */
        for (size_t i = 0; i < n; i++)
            if (pt_bf16_round(out[i]) != out[i] || pt_bf16_round(res[i]) != res[i]) {
                fprintf(stderr, "%s %dx%d: value %zu not a bf16\n", nm, N, C, i);
                g_fail++;
                break;
            }
    /* res may be a: the sum written over its first operand */
    float *a2 = fcopy(a, n);
    if (rms)
        EXPECT(be->add_rmsnorm_forward(s, a2, out, rstd, a2, b, w, N, C, eps, rnd) == PT_OK);
    else
        EXPECT(be->add_layernorm_forward(s, a2, out, mean, rstd, a2, b, w, bias, N, C, rnd) == PT_OK);
    snprintf(what, sizeof what, "%s %dx%d rnd %d: res aliasing a", nm, N, C, rnd);
    check_bits(what, a2, res_r, n);
    check_bits(what, out, out_r, n);
    /* b NULL: the norm of a alone, rounded (res untouched) */
    float *out1 = fnew(n), *out1_r = fnew(n), *rstd1 = fnew(N), *mean1 = fnew(N);
    if (rms) {
        EXPECT(be->rmsnorm_forward(s, out1_r, rstd_r, res_r, w, N, C, eps) == PT_OK);
        EXPECT(be->add_rmsnorm_forward(s, NULL, out1, rstd1, res_r, NULL, w, N, C, eps, rnd) == PT_OK);
    } else {
        EXPECT(be->layernorm_forward(s, out1_r, mean_r, rstd_r, res_r, w, bias, N, C) == PT_OK);
        EXPECT(be->add_layernorm_forward(s, NULL, out1, mean1, rstd1, res_r, NULL, w, bias, N, C, rnd) == PT_OK);
    }
    if (rnd)
        EXPECT(be->round_bf16(s, out1_r, out1_r, n) == PT_OK);
    snprintf(what, sizeof what, "%s %dx%d rnd %d: no residual (b NULL)", nm, N, C, rnd);
    check_bits(what, out1, out1_r, n);
    check_bits(what, rstd1, rstd_r, N);
    ffree(out1);
    ffree(out1_r);
    ffree(rstd1);
    ffree(mean1);

    /* backward: the input gradient, round, add the residual gradient, round */
    float *dout = frand_new(n, 1), *resid = frand_new(n, 1), *dx = fnew(n), *dx_r = fnew(n);
    if (rms)
        EXPECT(be->rmsnorm_backward_input(s, dx_r, dout, res_r, w, rstd_r, N, C) == PT_OK);
    else
        EXPECT(be->layernorm_backward_input(s, dx_r, dout, res_r, w, mean_r, rstd_r, N, C) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, dx_r, dx_r, n) == PT_OK);
    EXPECT(be->add(s, dx_r, dx_r, resid, n) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, dx_r, dx_r, n) == PT_OK);
    if (rms)
        EXPECT(be->rmsnorm_backward_input_add(s, dx, dout, res_r, w, rstd_r, resid, N, C, rnd) == PT_OK);
    else
        EXPECT(be->layernorm_backward_input_add(s, dx, dout, res_r, w, mean_r, rstd_r, resid, N, C, rnd) == PT_OK);
    snprintf(what, sizeof what, "%s %dx%d rnd %d", rms ? "rmsnorm_backward_input_add" : "layernorm_backward_input_add",
             N, C, rnd);
    check_bits(what, dx, dx_r, n);
    float *bufs[] = { a, b, w, bias, res, out, mean, rstd, res_r, out_r, mean_r, rstd_r, a2, dout, resid, dx, dx_r };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ffree(bufs[i]);
}

static void fused_gelu_case(pt_stream *s, int N, int F, int rnd, int with_bias)
{
    size_t n = (size_t)N * F;
    char what[128];
    float *x0 = frand_new(n, 4), *bias = with_bias ? frand_new(F, 1) : NULL;
    float *x = fcopy(x0, n), *xr = fcopy(x0, n), *out = fnew(n), *out_r = fnew(n);
    /* the split sequence: the bias after the product, round, gelu, round */
    if (bias)
        for (int r = 0; r < N; r++)
            for (int c = 0; c < F; c++)
                xr[(size_t)r * F + c] += bias[c];
    if (rnd)
        EXPECT(be->round_bf16(s, xr, xr, n) == PT_OK);
    EXPECT(be->gelu_forward(s, out_r, xr, n) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, out_r, out_r, n) == PT_OK);
    EXPECT(be->bias_gelu_forward(s, x, out, bias, N, F, rnd) == PT_OK);
    snprintf(what, sizeof what, "bias_gelu_forward %dx%d rnd %d bias %d: x", N, F, rnd, with_bias);
    check_bits(what, x, xr, n);
    snprintf(what, sizeof what, "bias_gelu_forward %dx%d rnd %d bias %d: out", N, F, rnd, with_bias);
    check_bits(what, out, out_r, n);
    /* gelu_backward_round: round dout, gelu_backward, round; dinp may be dout */
    float *dout = frand_new(n, 1), *dd = fcopy(dout, n), *dx_r = fnew(n), *dx = fnew(n);
    if (rnd)
        EXPECT(be->round_bf16(s, dd, dd, n) == PT_OK);
    EXPECT(be->gelu_backward(s, dx_r, x, dd, n) == PT_OK);
    if (rnd)
        EXPECT(be->round_bf16(s, dx_r, dx_r, n) == PT_OK);
    EXPECT(be->gelu_backward_round(s, dx, x, dout, n, rnd) == PT_OK);
    snprintf(what, sizeof what, "gelu_backward_round n %zu rnd %d", n, rnd);
    check_bits(what, dx, dx_r, n);
    EXPECT(be->gelu_backward_round(s, dout, x, dout, n, rnd) == PT_OK);
    snprintf(what, sizeof what, "gelu_backward_round n %zu rnd %d (dinp aliasing dout)", n, rnd);
    check_bits(what, dout, dx_r, n);
    float *bufs[] = { x0, x, xr, out, out_r, dout, dd, dx_r, dx };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ffree(bufs[i]);
    if (bias)
        ffree(bias);
}

/* crossentropy with rnd: the logits read as their bf16 rounding, dlogits rounded as written */
static void fused_xent_case(pt_stream *s, int N, int V)
{
    size_t n = (size_t)N * V;
    char what[128];
    float *logits = frand_new(n, 8), *lr = fcopy(logits, n), *probs = fnew(n), *probs_r = fnew(n);
    float *loss = fnew(N), *loss_r = fnew(N), *dl = fnew(n), *dl_r = fnew(n);
    int32_t *tgt = malloc((size_t)N * sizeof *tgt);
    for (int i = 0; i < N; i++)
        tgt[i] = i % 5 == 4 ? -1 : (int32_t)((unsigned)(i * 7919) % (unsigned)V);
    const float dloss = 1.0f / (float)N;
    EXPECT(be->round_bf16(s, lr, lr, n) == PT_OK);
    EXPECT(be->crossentropy_forward(s, loss_r, probs_r, lr, tgt, N, V, 0) == PT_OK);
    EXPECT(be->crossentropy_forward(s, loss, probs, logits, tgt, N, V, 1) == PT_OK);
    snprintf(what, sizeof what, "crossentropy_forward rnd %dx%d: losses", N, V);
    check_bits(what, loss, loss_r, N);
    snprintf(what, sizeof what, "crossentropy_forward rnd %dx%d: probs", N, V);
    check_bits(what, probs, probs_r, n);
    EXPECT(be->crossentropy_forward(s, loss, logits, logits, tgt, N, V, 1) == PT_OK); /* in place, as the head */
    snprintf(what, sizeof what, "crossentropy_forward rnd %dx%d: probs over the logits", N, V);
    check_bits(what, logits, probs_r, n);
    EXPECT(be->crossentropy_backward(s, dl_r, probs_r, tgt, dloss, N, V, 0) == PT_OK);
    EXPECT(be->round_bf16(s, dl_r, dl_r, n) == PT_OK);
    EXPECT(be->crossentropy_backward(s, dl, probs_r, tgt, dloss, N, V, 1) == PT_OK);
    snprintf(what, sizeof what, "crossentropy_backward rnd %dx%d", N, V);
    check_bits(what, dl, dl_r, n);
    EXPECT(be->crossentropy_backward(s, probs_r, probs_r, tgt, dloss, N, V, 1) == PT_OK);
    check_bits(what, probs_r, dl_r, n);
    float *bufs[] = { logits, lr, probs, probs_r, loss, loss_r, dl, dl_r };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ffree(bufs[i]);
    free(tgt);
}

static void test_fused(void)
{
    /* 1 thread, and 3 on rows that split unevenly; shapes from one value to gpt2-small rows */
    const int shapes[][2] = { { 1, 1 }, { 7, 33 }, { 65, 768 }, { 130, 1000 }, { 3, 4099 } };
    const int threads[] = { 1, 3 };
    for (int t = 0; t < 2; t++) {
        pt_stream *s = stream_new(threads[t]);
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
            for (int rnd = 0; rnd < 2; rnd++) {
                fused_norm_case(s, shapes[k][0], shapes[k][1], rnd, 0);
                fused_norm_case(s, shapes[k][0], shapes[k][1], rnd, 1);
                fused_gelu_case(s, shapes[k][0], 4 * shapes[k][1], rnd, 1);
                fused_gelu_case(s, shapes[k][0], shapes[k][1], rnd, 0);
            }
        fused_xent_case(s, 1, 1);
        fused_xent_case(s, 13, 1001);
        fused_xent_case(s, 5, 50304);
        be->stream_destroy(s);
    }
    /* bad shapes are refused, nothing written */
    pt_stream *s = stream_new(1);
    float v[4] = { 1, 2, 3, 4 };
    EXPECT(be->bias_gelu_forward(s, v, v + 2, NULL, 1, 0, 0) == PT_EINVAL);
    EXPECT(be->add_layernorm_forward(s, v, v + 1, v + 2, v + 3, v, v, v, v, 1, 0, 0) == PT_EINVAL);
    EXPECT(be->add_rmsnorm_forward(s, v, v + 1, v + 2, v, v, v, 1, 1, -1.0f, 0) == PT_EINVAL);
    EXPECT(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    be->stream_destroy(s);
}

int main(int argc, char **argv)
{
    static const struct { const char *name; void (*fn)(void); } groups[] = {
        { "backend", test_backend },       { "elementwise", test_elementwise },
        { "matmul", test_matmul },         { "layernorm", test_layernorm },
        { "gelu", test_gelu },             { "attention", test_attention },
        { "attention_long", test_attention_long }, { "embedding", test_embedding },
        { "crossentropy", test_crossentropy }, { "xent_shard", test_xent_shard },
        { "embedding_range", test_embedding_range }, { "xent_combine", test_xent_combine },
        { "adamw", test_adamw },           { "attention_decode", test_attention_decode },
        { "rmsnorm", test_rmsnorm },       { "rope", test_rope },
        { "swiglu", test_swiglu },         { "fused", test_fused },
    };
    if (pt_backend_get("cpu", &be) != PT_OK) {
        fprintf(stderr, "%s\n", pt_last_error());
        return 1;
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (argc < 2 || strcmp(argv[1], groups[i].name) == 0) {
            groups[i].fn();
            ran++;
        }
    if (ran == 0) {
        fprintf(stderr, "usage: %s [GROUP]; unknown group \"%s\"\n", argv[0], argv[1]);
        return 2;
    }
    if (pt_backend_bytes_in_use() != 0) {
        fprintf(stderr, "%zu bytes still allocated through pt_backend_alloc at exit\n", pt_backend_bytes_in_use());
        g_fail++;
    }
    if (g_fail)
        fprintf(stderr, "%d check(s) failed\n", g_fail);
    return g_fail > 100 ? 100 : g_fail;
}
