/* kernels/cpu/matmul.c — linear layers through cblas_sgemm. weight is (OC,C) as in
 * torch.nn.Linear, all row-major:
 *   forward          out (N,OC)  = inp (N,C) @ weight^T (+ bias)     sgemm(N, T)
 *   backward_input   dinp (N,C)  = dout (N,OC) @ weight              sgemm(N, N)
 *   backward_weight  dw (OC,C)  += dout^T @ inp                      sgemm(T, N), beta 1
 * The bias is written into `out` first and the product added with beta = 1: OpenBLAS makes a
 * separate pass over C whenever beta != 1, so this costs nothing over beta = 0.
 * A forward of one row (N = 1, each step of generation) goes through sgemv instead: sgemm packs
 * the whole weight before multiplying, which for one row costs more than the product. */
#include <cblas.h>

#include "cpu_internal.h"

/* out (OC) = weight (OC,C) @ x (C) + beta * out, in slices of rows rounded to 64 (so each row is
 * computed by the same code path whatever the thread count: the bits do not depend on it). */
static void pt_cpu_gemv_rows(int n_threads, float *out, const float *x, const float *weight, float beta, int C, int OC)
{
    pt_cpu_blas_single();
    const int align = 64;
    int n_parts = n_threads;
    if (n_parts > (OC + align - 1) / align)
        n_parts = (OC + align - 1) / align;
    if ((double)OC * C < 1e5)
        n_parts = 1;
    int chunk = (OC + n_parts - 1) / n_parts;
    chunk = (chunk + align - 1) / align * align;
#pragma omp parallel for num_threads(n_parts) schedule(static, 1) if (n_parts > 1)
    for (int p = 0; p < n_parts; p++) {
        int lo = p * chunk, hi = lo + chunk < OC ? lo + chunk : OC;
        if (lo < hi)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, C, 1.0f, weight + (size_t)lo * C, C, x, 1, beta, out + lo, 1);
    }
}

static pt_status pt_cpu_matmul_check(const char *what, int N, int C, int OC)
{
    if (N < 0 || C <= 0 || OC <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d OC=%d; sizes must be positive (N may be 0)", what, N, C, OC);
    return PT_OK;
}

pt_status pt_cpu_matmul_forward(pt_stream *s, float *out, const float *inp, const float *weight, const float *bias,
                                int N, int C, int OC)
{
    PT_CHECK(pt_cpu_matmul_check("matmul_forward", N, C, OC));
    if (N == 0)
        return PT_OK;
    float beta = 0.0f;
    if (bias != NULL) {
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * OC >= PT_CPU_PAR_MIN) schedule(static)
        for (int n = 0; n < N; n++) {
            float *row = out + (size_t)n * OC;
#pragma omp simd
            for (int o = 0; o < OC; o++)
                row[o] = bias[o];
        }
        beta = 1.0f;
    }
    if (N == 1) { /* one row (generation): sgemv reads the weight once; sgemm would first pack all of it */
        pt_cpu_gemv_rows(s->n_threads, out, inp, weight, beta, C, OC);
        return PT_OK;
    }
    pt_cpu_sgemm(s->n_threads, 0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
    return PT_OK;
}

pt_status pt_cpu_matmul_backward_input(pt_stream *s, float *dinp, const float *dout, const float *weight, int N,
                                       int C, int OC)
{
    PT_CHECK(pt_cpu_matmul_check("matmul_backward_input", N, C, OC));
    if (N == 0)
        return PT_OK;
    pt_cpu_sgemm(s->n_threads, 0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
    return PT_OK;
}

/* Columns of dbias per work item: a multiple of the cache line so threads never share one. */
#define PT_BIAS_BLOCK 256

pt_status pt_cpu_matmul_backward_weight(pt_stream *s, float *dweight, float *dbias, const float *dout,
                                        const float *inp, int N, int C, int OC)
{
    PT_CHECK(pt_cpu_matmul_check("matmul_backward_weight", N, C, OC));
    if (N == 0)
        return PT_OK;
    pt_cpu_sgemm(s->n_threads, 1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias != NULL) {
        /* Each column is summed over rows 0..N-1 in order, by one thread: the bits do not
         * depend on the thread count. */
        int n_blocks = (OC + PT_BIAS_BLOCK - 1) / PT_BIAS_BLOCK;
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * OC >= PT_CPU_PAR_MIN) schedule(static)
        for (int blk = 0; blk < n_blocks; blk++) {
            int lo = blk * PT_BIAS_BLOCK, hi = lo + PT_BIAS_BLOCK < OC ? lo + PT_BIAS_BLOCK : OC;
            float acc[PT_BIAS_BLOCK];
            for (int o = lo; o < hi; o++)
                acc[o - lo] = dbias[o];
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC;
#pragma omp simd
                for (int o = lo; o < hi; o++)
                    acc[o - lo] += row[o];
            }
            for (int o = lo; o < hi; o++)
                dbias[o] = acc[o - lo];
        }
    }
    return PT_OK;
}
