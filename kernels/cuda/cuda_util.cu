/* kernels/cuda/cuda_util.cu — what every file of the CUDA backend calls (cuda_internal.h): CUDA
 * and cuBLAS error conversion, the launch check, and the stream workspace as kernel scratch.
 * A leaf: it calls only the CUDA runtime, cuBLAS and core (pt_fail). */
#include "cuda_internal.h"

pt_status pt_cuda_fail(cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return PT_OK;
    (void)cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    pt_status code = err == cudaErrorMemoryAllocation ? PT_ENOMEM : PT_EBACKEND;
    return pt_fail(code, "CUDA %s failed: %s (%s); check the device with nvidia-smi", what,
                   cudaGetErrorString(err), cudaGetErrorName(err));
}

pt_status pt_cuda_blas_fail(cublasStatus_t err, const char *what)
{
    if (err == CUBLAS_STATUS_SUCCESS)
        return PT_OK;
    pt_status code = err == CUBLAS_STATUS_ALLOC_FAILED ? PT_ENOMEM : PT_EBACKEND;
    return pt_fail(code, "cuBLAS %s failed: %s (%s)", what, cublasGetStatusString(err), cublasGetStatusName(err));
}

pt_status pt_cuda_launched(const char *kernel)
{
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess)
        return PT_OK;
    return pt_fail(PT_EBACKEND, "CUDA kernel %s did not launch: %s; check the shapes and the device", kernel,
                   cudaGetErrorString(err));
}

pt_status pt_cuda_scratch(pt_stream *s, size_t bytes, const char *what, void **out)
{
    if (bytes > s->workspace_bytes)
        return pt_fail(PT_ENOMEM, "%s needs %zu bytes of CUDA stream workspace but it has %zu; set "
                                  "PT_CUDA_WORKSPACE_MB to at least %zu",
                       what, bytes, s->workspace_bytes, (bytes >> 20) + 1);
    *out = s->workspace;
    return PT_OK;
}
