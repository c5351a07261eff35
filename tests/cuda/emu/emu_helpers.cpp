/* tests/cuda/emu/emu_helpers.cpp — what kernels/cuda/cuda_backend.cu gives the kernel files,
 * for the emulated kernel test, which links no real CUDA code. (The emulated model test links
 * pt_models, whose pt_kernels brings the real cuda_backend.cu with these; their CUDA runtime
 * calls then land in cuda_emu.cpp's host versions.) */
#include <stdio.h>

#include "cuda_internal.h"

pt_status pt_cuda_fail(cudaError_t err, const char *what)
{
    return err == cudaSuccess ? PT_OK : pt_fail(PT_EBACKEND, "emulated CUDA %s failed", what);
}

pt_status pt_cuda_blas_fail(cublasStatus_t err, const char *what)
{
    return err == CUBLAS_STATUS_SUCCESS ? PT_OK : pt_fail(PT_EBACKEND, "emulated cuBLAS %s failed", what);
}

pt_status pt_cuda_launched(const char *) { return PT_OK; }

pt_status pt_cuda_scratch(pt_stream *s, size_t bytes, const char *what, void **out)
{
    if (bytes > s->workspace_bytes)
        return pt_fail(PT_ENOMEM, "%s needs %zu bytes of workspace", what, bytes);
    *out = s->workspace;
    return PT_OK;
}

extern "C" pt_status pt_cuda_device_count(int *n, char *why, size_t cap)
{
    *n = 1;
    if (why != NULL && cap > 0)
        why[0] = '\0';
    return PT_OK;
}

