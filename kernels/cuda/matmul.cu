/* kernels/cuda/matmul.cu — linear layers through cublasGemmEx on the fp32 tensors. weight is
 * (OC,C) as torch.nn.Linear, all row-major; cuBLAS is column-major, so each product is written
 * for the transposes (a row-major (R,K) buffer is a column-major (K,R) matrix):
 *   forward          out^T (OC,N)  = W (OC,C) inp^T (C,N):      gemm(T, N) m=OC n=N k=C
 *   backward_input   dinp^T (C,N)  = W^T (C,OC) dout^T (OC,N): gemm(N, N) m=C n=N k=OC
 *   backward_weight  dW^T (C,OC) += inp^T (C,N) dout (N,OC):    gemm(N, T) m=C n=OC k=N, beta 1
 * Precision (PT_CUDA_MATMUL, per stream): fp32 = CUBLAS_COMPUTE_32F with pedantic math; tf32 =
 * CUBLAS_COMPUTE_32F_FAST_TF32; bf16 = CUBLAS_COMPUTE_32F_FAST_16BF (inputs rounded to bf16 inside
 * cuBLAS, products accumulated in fp32, fp32 out). The bias is broadcast into `out` first and
 * the product added with beta 1. dbias is a deterministic column sum in two passes through the
 * stream workspace. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

static cublasComputeType_t pt_cuda_compute_type(const pt_stream *s)
{
    switch (s->mm_mode) {
    case PT_CUDA_MM_FP32:
        return CUBLAS_COMPUTE_32F_PEDANTIC;
    case PT_CUDA_MM_TF32:
        return CUBLAS_COMPUTE_32F_FAST_TF32;
    case PT_CUDA_MM_BF16:
        return CUBLAS_COMPUTE_32F_FAST_16BF;
    }
    return CUBLAS_COMPUTE_32F;
}

static pt_status pt_cuda_gemm(pt_stream *s, const char *what, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                              int ldc)
{
    const float alpha = 1.0f;
    cublasStatus_t err = cublasGemmEx(s->blas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                                      &beta, C, CUDA_R_32F, ldc, pt_cuda_compute_type(s), CUBLAS_GEMM_DEFAULT);
    return pt_cuda_blas_fail(err, what);
}

static pt_status pt_cuda_matmul_check(const char *what, int N, int C, int OC)
{
    if (N < 0 || C <= 0 || OC <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d OC=%d; sizes must be positive (N may be 0)", what, N, C, OC);
    return PT_OK;
}

__global__ void pt_k_bias_broadcast(float *out, const float *bias, int N, int OC)
{
    size_t n = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % OC];
}

pt_status pt_cuda_matmul_forward(pt_stream *s, float *out, const float *inp, const float *weight, const float *bias,
                                 int N, int C, int OC)
{
    PT_CHECK(pt_cuda_matmul_check("matmul_forward", N, C, OC));
    if (N == 0)
        return PT_OK;
    float beta = 0.0f;
    if (bias != NULL) {
        pt_k_bias_broadcast<<<pt_cuda_blocks((size_t)N * OC, 256), 256, 0, s->stream>>>(out, bias, N, OC);
        PT_CHECK(pt_cuda_launched("matmul_forward bias"));
        beta = 1.0f;
    }
    return pt_cuda_gemm(s, "matmul_forward", CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, beta, out, OC);
}

pt_status pt_cuda_matmul_backward_input(pt_stream *s, float *dinp, const float *dout, const float *weight, int N,
                                        int C, int OC)
{
    PT_CHECK(pt_cuda_matmul_check("matmul_backward_input", N, C, OC));
    if (N == 0)
        return PT_OK;
    return pt_cuda_gemm(s, "matmul_backward_input", CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, 0.0f,
                        dinp, C);
}

/* Column sums, pass 1: block (x, y) sums rows [y*rows, +rows) of columns [x*32, +32) with a
 * 32x8 thread tile (each thread a fixed stride of rows, then a fixed tree over the 8). */
__global__ void pt_k_colsum_partial(float *partial, const float *x, int N, int OC, int rows)
{
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows, r1 = min(r0 + rows, N);
    float acc = 0.0f;
    if (col < OC)
        for (int r = r0 + threadIdx.y; r < r1; r += 8)
            acc += x[(size_t)r * OC + col];
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < OC) {
        float t = ((sh[0][threadIdx.x] + sh[1][threadIdx.x]) + (sh[2][threadIdx.x] + sh[3][threadIdx.x])) +
                  ((sh[4][threadIdx.x] + sh[5][threadIdx.x]) + (sh[6][threadIdx.x] + sh[7][threadIdx.x]));
        partial[(size_t)blockIdx.y * OC + col] = t;
    }
}

/* Pass 2: out[c] += sum over the row blocks in order. */
__global__ void pt_k_colsum_final(float *out, const float *partial, int n_parts, int OC)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= OC)
        return;
    float acc = 0.0f;
    for (int p = 0; p < n_parts; p++)
        acc += partial[(size_t)p * OC + col];
    out[col] += acc;
}

/* out (OC) += column sums of x (N,OC), deterministic. Used for dbias (and shared with others
 * through pt_cuda_colsum_add in this file only). */
static pt_status pt_cuda_colsum_add(pt_stream *s, float *out, const float *x, int N, int OC, const char *what)
{
    int n_parts, rows;
    pt_cuda_row_parts(N, &n_parts, &rows);
    void *ws;
    PT_CHECK(pt_cuda_scratch(s, (size_t)n_parts * OC * sizeof(float), what, &ws));
    dim3 grid((OC + 31) / 32, n_parts), block(32, 8);
    pt_k_colsum_partial<<<grid, block, 0, s->stream>>>((float *)ws, x, N, OC, rows);
    PT_CHECK(pt_cuda_launched(what));
    pt_k_colsum_final<<<(OC + 255) / 256, 256, 0, s->stream>>>(out, (const float *)ws, n_parts, OC);
    return pt_cuda_launched(what);
}

pt_status pt_cuda_matmul_backward_weight(pt_stream *s, float *dweight, float *dbias, const float *dout,
                                         const float *inp, int N, int C, int OC)
{
    PT_CHECK(pt_cuda_matmul_check("matmul_backward_weight", N, C, OC));
    if (N == 0)
        return PT_OK;
    PT_CHECK(pt_cuda_gemm(s, "matmul_backward_weight", CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, 1.0f,
                          dweight, C));
    if (dbias != NULL)
        PT_CHECK(pt_cuda_colsum_add(s, dbias, dout, N, OC, "matmul_backward_weight bias"));
    return PT_OK;
}

pt_status pt_cuda_matmul_mode_env(int device, int default_fp32, pt_cuda_mm_mode *mode)
{
    *mode = PT_CUDA_MM_BF16;
    const char *e = getenv("PT_CUDA_MATMUL");
    const int given = e != NULL && *e != '\0';
    if ((given && strcmp(e, "fp32") == 0) || (!given && default_fp32)) {
        *mode = PT_CUDA_MM_FP32;
        return PT_OK;
    }
    if (given && strcmp(e, "tf32") == 0)
        *mode = PT_CUDA_MM_TF32;
    else if (given && strcmp(e, "bf16") != 0)
        return pt_fail(PT_EINVAL, "PT_CUDA_MATMUL is \"%s\"; use bf16, tf32 or fp32", e);
    int major = 0, minor = 0;
    PT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    PT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    if (major >= 8)
        return PT_OK;
    if (given)
        return pt_fail(PT_ENOTSUP, "PT_CUDA_MATMUL=%s needs a GPU of compute capability 8.0 (Ampere) or newer, and "
                                   "CUDA device %d is %d.%d; use PT_CUDA_MATMUL=fp32",
                       e, device, major, minor);
    *mode = PT_CUDA_MM_FP32; /* the default on an older GPU: fp32 products (docs/cuda.md) */
    return PT_OK;
}
