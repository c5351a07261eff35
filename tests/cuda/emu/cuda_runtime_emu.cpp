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
#include "pipetrain/timeutil.h"
}

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
/* The one pretend device. Every rank that asks gets the same UUID, so ranks share it (as two
 * stages on a one-GPU machine do) and the runtime takes the host-staged path; with
 * PT_EMU_GPU_PER_RANK=1 the UUID carries LOCAL_RANK, so each rank seems to have its own GPU and
 * the runtime takes the NCCL path (answered by nccl_emu.c). */
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (device != 0)
        return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    strcpy(prop->name, "pt emulated device");
    memcpy(prop->uuid.bytes, "pt-emulated-gpu-", 16);
    const char *per_rank = getenv("PT_EMU_GPU_PER_RANK"), *lr = getenv("LOCAL_RANK");
    if (per_rank != NULL && strcmp(per_rank, "1") == 0 && lr != NULL)
        prop->uuid.bytes[15] = (char)atoi(lr);
    return cudaSuccess;
}

/* Emulated kernels and copies run when they are queued, so an event is complete once recorded,
 * except for emulated NCCL operations (nccl_emu.c), which are pt_comm requests: operations are
 * numbered in the order they are queued (pt_emu_op_seq), an event remembers the number at its
 * record, and it is done when pt_emu_ops_done says every operation up to it has finished. */
uint64_t pt_emu_op_seq;
int (*pt_emu_ops_done)(uint64_t upto);

struct emu_event {
    uint64_t seq;
    int64_t t_ns; /* the host clock at the record: the work queued before it has run by then */
};

uint64_t pt_emu_event_seq(cudaEvent_t e) { return ((emu_event *)e)->seq; }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int)
{
    emu_event *ev = (emu_event *)calloc(1, sizeof *ev);
    if (ev == NULL)
        return cudaErrorMemoryAllocation;
    *e = (cudaEvent_t)ev;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    free(e);
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
    ((emu_event *)e)->seq = pt_emu_op_seq;
    ((emu_event *)e)->t_ns = pt_now_ns();
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    *ms = (float)((double)(((emu_event *)end)->t_ns - ((emu_event *)start)->t_ns) / 1e6);
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e)
{
    if (pt_emu_ops_done != NULL && !pt_emu_ops_done(((emu_event *)e)->seq))
        return cudaErrorNotReady;
    return cudaSuccess;
}
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
