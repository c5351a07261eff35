/* Which optional modules this build has (pipetrain/modules.h): the one file with the build's
 * module switches (PT_MODULES_HAVE_CUDA, PT_MODULES_HAVE_NCCL, set on this file alone by
 * src/runtime/CMakeLists.txt). */
#include "pipetrain/modules.h"

#include <stdio.h>

#ifdef PT_MODULES_HAVE_CUDA
#include "pipetrain/cuda.h"
#define HAVE_CUDA 1
#else
#define HAVE_CUDA 0
#endif
#ifdef PT_MODULES_HAVE_NCCL
#define HAVE_NCCL 1
#else
#define HAVE_NCCL 0
#endif

int pt_modules_cuda(void) { return HAVE_CUDA; }

int pt_modules_nccl(void) { return HAVE_NCCL; }

pt_status pt_modules_gpu_count(int *n, char *why, size_t why_cap)
{
    *n = 0;
#ifdef PT_MODULES_HAVE_CUDA
    return pt_cuda_device_count(n, why, why_cap);
#else
    if (why && why_cap > 0)
        snprintf(why, why_cap, "this build has no CUDA backend; rebuild with -DPT_CUDA=ON");
    return PT_OK;
#endif
}

pt_status pt_modules_gpu_capability(int device, int *major, int *minor)
{
    *major = *minor = 0;
#ifdef PT_MODULES_HAVE_CUDA
    return pt_cuda_device_capability(device, major, minor);
#else
    (void)device;
    return pt_fail(PT_ENOTSUP, "this build has no CUDA backend; rebuild with -DPT_CUDA=ON");
#endif
}

const char *pt_modules_describe(void) { return HAVE_NCCL ? "cpu cuda nccl" : HAVE_CUDA ? "cpu cuda" : "cpu"; }
