/* tests/cuda/emu/cuda_runtime_emu.cpp — host versions of the CUDA runtime and cuBLAS handle calls
 * that kernels/cuda/cuda_backend.cu makes (device count, streams, memory, handles), so the REAL
 * backend table and its stream/memory code run on the emulator in test_cuda_emu_train. Defined
 * in the executable, they take precedence over libcudart/libcublas. One pretend device; device
 * memory is host memory filled with NaN bytes (0xFF), as a read of never-written memory must not
 * go unnoticed. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

extern "C" {
cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int)
{
    static int token;
    *s = (cudaStream_t)&token;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t size)
{
    size_t n = (size + 255) / 256 * 256;
    *p = aligned_alloc(256, n ? n : 256);
    if (*p == NULL)
        return cudaErrorMemoryAllocation;
    memset(*p, 0xFF, n);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t size) { return cudaMalloc(p, size); }
cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    *free_b = *total_b = 0;
    return cudaSuccess;
}
const char *cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int) { return cudaMalloc(p, size); }
cudaError_t cudaHostRegister(void *, size_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaHostUnregister(void *) { return cudaSuccess; }
/* The one pretend device: every rank that asks gets the same UUID, so ranks share it (as two
 * stages on a one-GPU machine do) and the runtime takes the host-staged path. */
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (device != 0)
        return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    strcpy(prop->name, "pt emulated device");
    memcpy(prop->uuid.bytes, "pt-emulated-gpu0", 16);
    return cudaSuccess;
}
/* Emulated work runs when it is queued: an event is always complete and a wait never waits. */
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int)
{
    static int token;
    *e = (cudaEvent_t)&token;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }

cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
    static int token;
    *h = (cublasHandle_t)&token;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS error"; }
const char *cublasGetStatusName(cublasStatus_t) { return "CUBLAS_STATUS_EMULATED"; }
}
