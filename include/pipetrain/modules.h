/* pipetrain/modules.h — which optional modules this build of the library has.
 *
 * The one place that asks the build: src/runtime/rt_modules.c is compiled with CMake's
 * PT_MODULES_HAVE_* definitions, and every other file of src/ asks these functions instead of
 * carrying an #if of its own (comm/ keeps its link registration point, comm/link.c, below this
 * floor; the program's subcommands and benchmarks are the files present, src/cli/commands.c).
 *
 *     if (pt_modules_cuda()) { int n; char why[128]; PT_CHECK(pt_modules_gpu_count(&n, why, sizeof why)); }
 *
 * Thread-safe; nothing here allocates.
 */
#ifndef PIPETRAIN_MODULES_H
#define PIPETRAIN_MODULES_H

#include <stddef.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the CUDA backend (kernels/cuda, pt_backend_get("cuda")) is built, else 0. */
int pt_modules_cuda(void);

/* 1 when NCCL links between GPUs (comm/nccl) are built, else 0. */
int pt_modules_nccl(void);

/* GPUs this process can use: with the CUDA backend, pt_cuda_device_count's answer (0 with the
 * reason in why, when given); without it *n = 0 and why says the build lacks CUDA. Returns PT_OK,
 * or the CUDA runtime's error. */
pt_status pt_modules_gpu_count(int *n, char *why, size_t why_cap);

/* The compute capability of GPU `device` (pt_cuda_device_capability); PT_ENOTSUP without the CUDA
 * backend. */
pt_status pt_modules_gpu_capability(int device, int *major, int *minor);

/* "cpu" or "cpu cuda" or "cpu cuda nccl": the optional parts built, for `pipetrain version`.
 * Static storage. */
const char *pt_modules_describe(void);

#ifdef __cplusplus
}
#endif
#endif
