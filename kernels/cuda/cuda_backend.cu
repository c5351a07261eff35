/* kernels/cuda/cuda_backend.cu — the CUDA backend's table, streams, memory, events. The table
 * refers to every kernel file; the kernel files call only cuda_util.cu (error conversion, the
 * stream workspace), never this file.
 *
 * A pt_stream owns one non-blocking cudaStream_t, one cuBLAS handle bound to it (with its own
 * workspace, so cuBLAS never allocates in a step and picks the same algorithms every time), a
 * scratch workspace for the kernels' temporaries, and two pinned host words for the results of
 * the synchronising reductions. All of it is allocated here, once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"
extern "C" {
#include "pipetrain/timeutil.h"
}

extern "C" pt_status pt_cuda_device_count(int *n, char *why, size_t cap)
{
    *n = 0;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        /* Without a driver (35, cudaErrorInsufficientDriver) or a device (100, cudaErrorNoDevice)
         * there is nothing to use; both mean "no GPU here", not a failure. */
        (void)cudaGetLastError();
        if (why != NULL && cap > 0)
            snprintf(why, cap, "cudaGetDeviceCount: %s", cudaGetErrorString(err));
        return PT_OK;
    }
    if (count == 0 && why != NULL && cap > 0)
        snprintf(why, cap, "cudaGetDeviceCount: no CUDA device");
    *n = count;
    return PT_OK;
}

extern "C" pt_status pt_cuda_device_capability(int device, int *major, int *minor)
{
    *major = *minor = 0;
    int n = 0;
    PT_CHECK(pt_cuda_device_count(&n, NULL, 0));
    if (device < 0 || device >= n)
        return pt_fail(PT_EINVAL, "CUDA device %d does not exist (this process sees %d)", device, n);
    PT_CUDA_CHECK(cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    PT_CUDA_CHECK(cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    return PT_OK;
}

extern "C" void *pt_cuda_stream_handle(pt_stream *s)
{
    return s != NULL ? (void *)s->stream : NULL;
}

extern "C" int pt_cuda_stream_device(const pt_stream *s)
{
    return s->device;
}

extern "C" pt_status pt_cuda_device_uuid(int device, unsigned char uuid[16])
{
    memset(uuid, 0, 16);
    int n = 0;
    PT_CHECK(pt_cuda_device_count(&n, NULL, 0));
    if (device < 0 || device >= n)
        return pt_fail(PT_EINVAL, "CUDA device %d does not exist; this machine has %d", device, n);
    cudaDeviceProp prop;
    PT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    memcpy(uuid, prop.uuid.bytes, 16);
    return PT_OK;
}

extern "C" pt_status pt_cuda_host_alloc(void **ptr, size_t bytes)
{
    *ptr = NULL;
    cudaError_t err = cudaHostAlloc(ptr, bytes ? bytes : 1, cudaHostAllocPortable);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return pt_fail(PT_ENOMEM, "cudaHostAlloc of %zu bytes of pinned host memory failed: %s; raise the locked "
                                  "memory limit (ulimit -l) or use fewer micro-batches",
                       bytes, cudaGetErrorString(err));
    }
    return PT_OK;
}

extern "C" void pt_cuda_host_free(void *ptr)
{
    if (ptr != NULL)
        cudaFreeHost(ptr);
}

extern "C" pt_status pt_cuda_host_register(void *ptr, size_t bytes)
{
    cudaError_t err = cudaHostRegister(ptr, bytes, cudaHostRegisterPortable);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return pt_fail(PT_ENOMEM, "cudaHostRegister of %zu bytes of host memory failed: %s; raise the locked "
                                  "memory limit (ulimit -l) or use fewer micro-batches",
                       bytes, cudaGetErrorString(err));
    }
    return PT_OK;
}

extern "C" void pt_cuda_host_unregister(void *ptr)
{
    if (ptr != NULL && cudaHostUnregister(ptr) != cudaSuccess)
        (void)cudaGetLastError();
}

extern "C" pt_status pt_cuda_copy_stream_create(const pt_stream *like, pt_stream **out)
{
    *out = NULL;
    pt_stream *s = (pt_stream *)calloc(1, sizeof *s);
    if (s == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory creating a CUDA copy stream");
    s->device = like->device;
    s->mm_mode = like->mm_mode;
    pt_status st = pt_cuda_fail(cudaSetDevice(s->device), "cudaSetDevice");
    if (st == PT_OK)
        st = pt_cuda_fail(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate (copy)");
    if (st != PT_OK) {
        pt_cuda_stream_destroy(s);
        return st;
    }
    *out = s;
    return PT_OK;
}

extern "C" pt_status pt_cuda_memcpy_d2h_async(pt_stream *s, void *dst, const void *src, size_t bytes)
{
    PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->stream), "memcpy device to host");
    return PT_OK;
}

struct pt_cuda_event {
    cudaEvent_t ev;
};

extern "C" pt_status pt_cuda_event_create(pt_cuda_event **out)
{
    *out = NULL;
    pt_cuda_event *e = (pt_cuda_event *)calloc(1, sizeof *e);
    if (e == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory creating a CUDA event");
    pt_status st = pt_cuda_fail(cudaEventCreateWithFlags(&e->ev, cudaEventDisableTiming), "cudaEventCreate");
    if (st != PT_OK) {
        free(e);
        return st;
    }
    *out = e;
    return PT_OK;
}

extern "C" void pt_cuda_event_destroy(pt_cuda_event *e)
{
    if (e == NULL)
        return;
    cudaEventDestroy(e->ev);
    free(e);
}

extern "C" pt_status pt_cuda_events_create(pt_cuda_event ***out, int n)
{
    *out = (pt_cuda_event **)calloc((size_t)(n > 0 ? n : 1), sizeof **out);
    if (*out == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for %d CUDA events", n);
    for (int i = 0; i < n; i++)
        PT_CHECK(pt_cuda_event_create(&(*out)[i]));
    return PT_OK;
}

extern "C" void pt_cuda_events_destroy(pt_cuda_event **ev, int n)
{
    for (int i = 0; ev != NULL && i < n; i++)
        pt_cuda_event_destroy(ev[i]);
    free(ev);
}

extern "C" pt_status pt_cuda_event_record(pt_cuda_event *e, pt_stream *s)
{
    PT_CUDA_CHECK(cudaEventRecord(e->ev, s->stream), "cudaEventRecord");
    return PT_OK;
}

extern "C" pt_status pt_cuda_event_query(pt_cuda_event *e, int *done)
{
    *done = 0;
    cudaError_t err = cudaEventQuery(e->ev);
    if (err == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return PT_OK;
    }
    PT_CUDA_CHECK(err, "queued work (event query)");
    *done = 1;
    return PT_OK;
}

extern "C" pt_status pt_cuda_stream_wait_event(pt_stream *s, pt_cuda_event *e)
{
    PT_CUDA_CHECK(cudaStreamWaitEvent(s->stream, e->ev, 0), "cudaStreamWaitEvent");
    return PT_OK;
}

extern "C" pt_status pt_cuda_event_wait(pt_cuda_event *e, int64_t deadline_ns, const char *what)
{
    for (;;) {
        int done = 0;
        PT_CHECK(pt_cuda_event_query(e, &done));
        if (done)
            return PT_OK;
        if (pt_deadline_passed(deadline_ns))
            return pt_fail(PT_ETIMEDOUT, "%s did not finish by the deadline; check the device with nvidia-smi",
                           what);
        struct timespec ts = { 0, 50 * 1000 };
        nanosleep(&ts, NULL);
    }
}

/* Timeline markers: timing events (pt_cuda_event's are created without timing, to stay cheap). */
struct pt_marker {
    cudaEvent_t ev;
};

extern "C" pt_status pt_cuda_marker_create(pt_marker **out)
{
    *out = NULL;
    pt_marker *m = (pt_marker *)calloc(1, sizeof *m);
    if (m == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory creating a timeline marker");
    pt_status st = pt_cuda_fail(cudaEventCreateWithFlags(&m->ev, cudaEventDefault), "cudaEventCreate (timing)");
    if (st != PT_OK) {
        free(m);
        return st;
    }
    *out = m;
    return PT_OK;
}

extern "C" void pt_cuda_marker_destroy(pt_marker *m)
{
    if (m == NULL)
        return;
    cudaEventDestroy(m->ev);
    free(m);
}

extern "C" pt_status pt_cuda_marker_record(pt_stream *s, pt_marker *m)
{
    PT_CUDA_CHECK(cudaEventRecord(m->ev, s->stream), "cudaEventRecord (timeline marker)");
    return PT_OK;
}

extern "C" pt_status pt_cuda_marker_elapsed_ns(const pt_marker *from, const pt_marker *to, int64_t *ns)
{
    float ms = 0.0f;
    PT_CUDA_CHECK(cudaEventElapsedTime(&ms, from->ev, to->ev), "cudaEventElapsedTime (timeline markers)");
    *ns = (int64_t)((double)ms * 1e6 + (ms >= 0.0f ? 0.5 : -0.5));
    return PT_OK;
}

static pt_status pt_cuda_workspace_env(size_t *bytes)
{
    const char *e = getenv("PT_CUDA_WORKSPACE_MB");
    long mb = 64;
    if (e != NULL && *e != '\0') {
        char *end;
        mb = strtol(e, &end, 10);
        if (*end != '\0' || mb < 1 || mb > (1l << 20))
            return pt_fail(PT_EINVAL, "PT_CUDA_WORKSPACE_MB is \"%s\"; give a whole number of MiB from 1", e);
    }
    *bytes = (size_t)mb << 20;
    return PT_OK;
}

pt_status pt_cuda_stream_create(const pt_stream_opts *opts, pt_stream **out)
{
    *out = NULL;
    int n = 0;
    char why[160] = "";
    PT_CHECK(pt_cuda_device_count(&n, why, sizeof why));
    if (n == 0)
        return pt_fail(PT_ENOTSUP, "no CUDA device (%s); use --backend cpu", why);
    int device = opts != NULL ? opts->device : 0;
    if (device < 0 || device >= n)
        return pt_fail(PT_EINVAL, "CUDA device %d does not exist; this machine has %d (0..%d)", device, n, n - 1);
    pt_status st;
    pt_cuda_mm_mode mode = PT_CUDA_MM_BF16;
    PT_CHECK(pt_cuda_matmul_mode_env(device, opts != NULL && opts->fp32_products, &mode)); /* against the device */
    size_t ws_bytes = 0;
    PT_CHECK(pt_cuda_workspace_env(&ws_bytes));
    pt_stream *s = (pt_stream *)calloc(1, sizeof *s);
    if (s == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory creating a CUDA stream");
    s->device = device;
    s->mm_mode = mode;
    s->workspace_bytes = ws_bytes;
    PT_TRY(pt_cuda_fail(cudaSetDevice(device), "cudaSetDevice"), fail);

    PT_TRY(pt_cuda_attention_mode_env(device, &s->att_mode), fail); /* PT_CUDA_ATTENTION */
    PT_TRY(pt_cuda_fail(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate"), fail);
    PT_TRY(pt_cuda_fail(cudaMalloc(&s->workspace, ws_bytes), "cudaMalloc of the stream workspace"), fail);
    PT_TRY(pt_cuda_fail(cudaMalloc(&s->blas_workspace, PT_CUDA_BLAS_WORKSPACE), "cudaMalloc of the cuBLAS workspace"),
           fail);
    PT_TRY(pt_cuda_fail(cudaMallocHost((void **)&s->host_double, sizeof(double)), "cudaMallocHost"), fail);
    PT_TRY(pt_cuda_fail(cudaMallocHost((void **)&s->host_int, sizeof(int)), "cudaMallocHost"), fail);
    PT_TRY(pt_cuda_blas_fail(cublasCreate(&s->blas), "cublasCreate"), fail);
    PT_TRY(pt_cuda_blas_fail(cublasSetStream(s->blas, s->stream), "cublasSetStream"), fail);
    PT_TRY(pt_cuda_blas_fail(cublasSetWorkspace(s->blas, s->blas_workspace, PT_CUDA_BLAS_WORKSPACE),
                             "cublasSetWorkspace"),
           fail);
    /* fp32 mode must not drift into TF32: pedantic math keeps CUBLAS_COMPUTE_32F exact. */
    PT_TRY(pt_cuda_blas_fail(cublasSetMathMode(s->blas, mode == PT_CUDA_MM_FP32 ? CUBLAS_PEDANTIC_MATH
                                                                                : CUBLAS_DEFAULT_MATH),
                             "cublasSetMathMode"),
           fail);
    *out = s;
    return PT_OK;
fail:
    pt_cuda_stream_destroy(s);
    return st;
}

void pt_cuda_stream_destroy(pt_stream *s)
{
    if (s == NULL)
        return;
    if (s->stream != NULL)
        (void)cudaStreamSynchronize(s->stream);
    if (s->blas != NULL)
        cublasDestroy(s->blas);
    cudaFreeHost(s->host_int);
    cudaFreeHost(s->host_double);
    cudaFree(s->blas_workspace);
    cudaFree(s->workspace);
    if (s->stream != NULL)
        cudaStreamDestroy(s->stream);
    (void)cudaGetLastError();
    free(s);
}

pt_status pt_cuda_stream_sync(pt_stream *s)
{
    PT_CUDA_CHECK(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize (a queued kernel failed)");
    return PT_OK;
}

pt_status pt_cuda_alloc(void **ptr, size_t bytes)
{
    *ptr = NULL;
    cudaError_t err = cudaMalloc(ptr, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        *ptr = NULL;
        return pt_fail(PT_ENOMEM, "cudaMalloc of %zu bytes failed: %s (%zu of %zu bytes free); use fewer "
                                  "micro-batches in flight, recomputation or more stages",
                       bytes, cudaGetErrorString(err), free_b, total_b);
    }
    return PT_OK;
}

void pt_cuda_free(void *ptr)
{
    if (ptr != NULL)
        cudaFree(ptr);
}

pt_status pt_cuda_memcpy_h2d(pt_stream *s, void *dst, const void *src, size_t bytes)
{
    PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->stream), "memcpy host to device");
    return PT_OK;
}

pt_status pt_cuda_memcpy_d2h(pt_stream *s, void *dst, const void *src, size_t bytes)
{
    PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->stream), "memcpy device to host");
    PT_CUDA_CHECK(cudaStreamSynchronize(s->stream), "memcpy device to host (stream synchronise)");
    return PT_OK;
}

pt_status pt_cuda_memcpy_d2d(pt_stream *s, void *dst, const void *src, size_t bytes)
{
    PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s->stream), "memcpy device to device");
    return PT_OK;
}

pt_status pt_cuda_memset_zero(pt_stream *s, void *dst, size_t bytes)
{
    PT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s->stream), "memset");
    return PT_OK;
}

extern "C" const pt_backend pt_backend_cuda = {
    .name = "cuda",
    .stream_create = pt_cuda_stream_create,
    .stream_destroy = pt_cuda_stream_destroy,
    .stream_sync = pt_cuda_stream_sync,
    .alloc = pt_cuda_alloc,
    .free = pt_cuda_free,
    .memcpy_h2d = pt_cuda_memcpy_h2d,
    .memcpy_d2h = pt_cuda_memcpy_d2h,
    .memcpy_d2d = pt_cuda_memcpy_d2d,
    .memset_zero = pt_cuda_memset_zero,
    PT_CUDA_KERNEL_ENTRIES,
    .device_memory = 1,
    PT_CUDA_KERNEL_ENTRIES_LATE,
    /* the timeline markers live here, with the streams (the emulator's kernel table has none) */
    .marker_create = pt_cuda_marker_create,
    .marker_destroy = pt_cuda_marker_destroy,
    .marker_record = pt_cuda_marker_record,
    .marker_elapsed_ns = pt_cuda_marker_elapsed_ns,
};
