/* pipetrain/cuda.h — what the CUDA backend offers beyond the pt_backend table: the raw CUDA
 * stream of a pt_stream (for NCCL and for events between streams) and device discovery. Only in
 * builds with the CUDA backend (PT_HAVE_CUDA); the table itself is reached through
 * pt_backend_get("cuda").
 *
 *     int n;
 *     if (pt_cuda_device_count(&n) == PT_OK && n > 0) { ... pt_backend_get("cuda", &be) ... }
 *
 * Matrix product precision is chosen per stream at creation from the environment variable
 * PT_CUDA_MATMUL: "bf16" (default: inputs rounded to bf16 inside cuBLAS, fp32 accumulate, fp32
 * output), "tf32", or "fp32" (CUBLAS_COMPUTE_32F, for comparisons with the CPU backend).
 * PT_CUDA_WORKSPACE_MB sets the per-stream scratch (default 64).
 */
#ifndef PIPETRAIN_CUDA_H
#define PIPETRAIN_CUDA_H

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

/* The cudaStream_t a CUDA pt_stream queues on, as void * (so C callers need no CUDA headers).
 * Borrowed: valid until the stream is destroyed. NULL for NULL. */
void *pt_cuda_stream_handle(pt_stream *s);

/* The device ordinal the stream was created on. */
int pt_cuda_stream_device(const pt_stream *s);

#ifdef __cplusplus
}
#endif
#endif
