/* kernels/cpu/sgemm.c — the sgemm driver that splits a matrix product across our OpenMP team
 * (cpu_internal.h: pt_cpu_sgemm, pt_cpu_sgemm1, pt_cpu_blas_single). A leaf of the CPU backend:
 * matmul.c, attention.c, llama.c and the stream (cpu_backend.c) call it; it calls only OpenBLAS. */
#include <cblas.h>

#include "cpu_internal.h"

void pt_cpu_blas_single(void)
{
    /* OpenBLAS's own pool would compete with our OpenMP team for the same cores; we split
     * products ourselves and let each OpenBLAS call run in its calling thread. */
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

void pt_cpu_sgemm1(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void pt_cpu_sgemm(int n_threads, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    pt_cpu_blas_single();
    /* Slices narrower than this waste the micro-kernel; tiny products run on one thread. */
    const int align = 64;
    int split_rows = M >= N;
    int dim = split_rows ? M : N;
    int n_parts = n_threads;
    if (n_parts > (dim + align - 1) / align)
        n_parts = (dim + align - 1) / align;
    if ((double)M * N * K < 2e6)
        n_parts = 1;
    if (n_parts <= 1) {
        pt_cpu_sgemm1(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Equal slices rounded to `align` so every thread gets full micro-kernel tiles. */
    int chunk = (dim + n_parts - 1) / n_parts;
    chunk = (chunk + align - 1) / align * align;
#pragma omp parallel for num_threads(n_parts) schedule(static, 1)
    for (int p = 0; p < n_parts; p++) {
        int lo = p * chunk;
        int hi = lo + chunk < dim ? lo + chunk : dim;
        if (lo >= hi)
            continue;
        if (split_rows) {
            const float *a = trans_a ? A + lo : A + (size_t)lo * lda;
            pt_cpu_sgemm1(trans_a, trans_b, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
        } else {
            const float *b = trans_b ? B + (size_t)lo * ldb : B + lo;
            pt_cpu_sgemm1(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
        }
    }
}
