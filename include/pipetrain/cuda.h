/* pipetrain/cuda.h — what the CUDA backend offers beyond the pt_backend table: the raw CUDA
 * stream of a pt_stream (for NCCL and for events between streams) and device discovery. Only in
 * builds with the CUDA backend (PT_HAVE_CUDA); the table itself is reached through
 * pt_backend_get("cuda").
 *
 *     int n;
 *     if (pt_cuda_device_count(&n) == PT_OK && n > 0) { ... pt_backend_get("cuda", &be) ... }
 *
 * Matrix product precision is chosen per stream at creation from the environment variable
 * PT_CUDA_MATMUL: "bf16" (default, or fp32 when pt_stream_opts.fp32_products: inputs rounded to bf16 inside cuBLAS, fp32 accumulate, fp32
 * output), "tf32", or "fp32" (CUBLAS_COMPUTE_32F, for comparisons with the CPU backend).
 * PT_CUDA_WORKSPACE_MB sets the per-stream scratch (default 64).
 */
#ifndef PIPETRAIN_CUDA_H
#define PIPETRAIN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA backend's table (also returned by pt_backend_get("cuda")). */
extern const pt_backend pt_backend_cuda;

/* Number of usable CUDA devices in *n. No driver or no device is not an error: *n = 0 and PT_OK,
 * and `why` (may be NULL; cap bytes) receives CUDA's reason. Thread-safe; does not block. */
pt_status pt_cuda_device_count(int *n, char *why, size_t cap);

/* The compute capability of CUDA device `device` (8.0: Ampere, 9.0: Hopper). PT_EINVAL for a bad
 * ordinal, PT_EBACKEND naming CUDA's error. Thread-safe; does not block. */
pt_status pt_cuda_device_capability(int device, int *major, int *minor);

/* The cudaStream_t a CUDA pt_stream queues on, as void * (so C callers need no CUDA headers).
 * Borrowed: valid until the stream is destroyed. NULL for NULL. */
void *pt_cuda_stream_handle(pt_stream *s);

/* The device ordinal the stream was created on. */
int pt_cuda_stream_device(const pt_stream *s);

/* ---- what the pipeline runtime needs to move data between ranks (src/runtime) ---- */

/* The 16-byte UUID of CUDA device `device` (as nvidia-smi -L shows it): two ranks hold the same
 * GPU exactly when their UUIDs are equal. PT_EINVAL for a bad ordinal, PT_EBACKEND naming CUDA's
 * error. Thread-safe; does not block. */
pt_status pt_cuda_device_uuid(int device, unsigned char uuid[16]);

/* Page-locked (pinned) host memory, portable across devices (cudaHostAlloc): copies between it and
 * the device run asynchronously and at full bus speed. Meant for buffers allocated once at
 * start-up (pinning is slow). *ptr owned by the caller, freed with pt_cuda_host_free (accepts
 * NULL). PT_ENOMEM naming the size. */
pt_status pt_cuda_host_alloc(void **ptr, size_t bytes);
void pt_cuda_host_free(void *ptr);

/* Pins `bytes` of existing host memory at ptr (cudaHostRegister, portable) so that copies to and
 * from it are asynchronous and at full bus speed, e.g. pt_comm_buf_alloc buffers that same-host
 * peers also read. Undo with pt_cuda_host_unregister before freeing it. PT_ENOMEM naming the
 * size when the memory cannot be pinned. */
pt_status pt_cuda_host_register(void *ptr, size_t bytes);
void pt_cuda_host_unregister(void *ptr);

/* A copy stream: a second queue on the device of `like`, without cuBLAS handle or workspace, so
 * that transfers overlap the compute stream. Only the memcpy/memset entries of pt_backend_cuda,
 * the functions below and NCCL may be used on it. Destroyed with pt_backend_cuda.stream_destroy.
 * *out owned by the caller. */
pt_status pt_cuda_copy_stream_create(const pt_stream *like, pt_stream **out);

/* Queues a device-to-host copy on s and returns at once (pt_backend_cuda.memcpy_d2h waits). dst
 * should be pinned (pt_cuda_host_alloc); it must not be read before the copy is known done (an
 * event recorded after it). */
pt_status pt_cuda_memcpy_d2h_async(pt_stream *s, void *dst, const void *src, size_t bytes);

/* An event orders work between streams and tells the host when queued work has finished
 * (cudaEvent_t without timing). create/destroy pair; destroy accepts NULL. */
typedef struct pt_cuda_event pt_cuda_event;
pt_status pt_cuda_event_create(pt_cuda_event **out);
void pt_cuda_event_destroy(pt_cuda_event *e);
/* n events in a malloc'd array (at least one slot). On an error *out holds the events made so far
 * (the rest NULL): pt_cuda_events_destroy(*out, n) frees it either way (accepts NULL). */
pt_status pt_cuda_events_create(pt_cuda_event ***out, int n);
void pt_cuda_events_destroy(pt_cuda_event **ev, int n);
/* Captures everything queued on s so far. Does not block. */
pt_status pt_cuda_event_record(pt_cuda_event *e, pt_stream *s);
/* *done = 1 when the work captured by the last record has finished (or e was never recorded),
 * else 0. Does not block. PT_EBACKEND when that work failed. */
pt_status pt_cuda_event_query(pt_cuda_event *e, int *done);
/* Makes s wait, on the device, for the work captured by e's last record; the host does not wait. */
pt_status pt_cuda_stream_wait_event(pt_stream *s, pt_cuda_event *e);
/* Waits on the host until e is done, polling with 50 us naps so a waiting rank leaves the CPU to
 * others, until deadline_ns (absolute, pt_now_ns units). PT_ETIMEDOUT naming `what` (e.g. "the copy
 * of SEND_ACT mb 3 to the host"); PT_EBACKEND when the work failed. */
pt_status pt_cuda_event_wait(pt_cuda_event *e, int64_t deadline_ns, const char *what);

#ifdef __cplusplus
}
#endif
#endif
