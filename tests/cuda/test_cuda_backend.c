/* tests/cuda/test_cuda_backend.c — the CUDA backend's table and its behaviour without a GPU.
 * Runs on every machine: the table is complete; without a device, stream_create refuses with
 * PT_ENOTSUP and the message names CUDA's reason; with one, a stream is created and a
 * non-existent device ordinal is refused with PT_EINVAL, and a bad PT_CUDA_MATMUL too.
 * `test_cuda_backend gpus N` exits 0 with at least N devices, else 77 (for the scripts). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "gpus") == 0) { /* for scripts: 0 with >= N devices, else 77 */
        int have = 0;
        char why[160] = "";
        if (pt_cuda_device_count(&have, why, sizeof why) != PT_OK || have < atoi(argv[2])) {
            printf("SKIP: %d CUDA device(s), need %s (%s)\n", have, argv[2], why);
            return 77;
        }
        return 0;
    }
    const pt_backend *be = NULL;
    if (pt_backend_get("cuda", &be) != PT_OK || be != &pt_backend_cuda || strcmp(be->name, "cuda") != 0) {
        fprintf(stderr, "FAIL: pt_backend_get(\"cuda\") does not return pt_backend_cuda: %s\n", pt_last_error());
        return 1;
    }
    /* Every entry between the name and the plain fields is a function pointer; none is optional. */
    const void *const *fns = (const void *const *)((const char *)be + sizeof(const char *));
    size_t n_fns = (offsetof(pt_backend, device_memory) - sizeof(const char *)) / sizeof(void *);
    if (be->device_memory != 1) {
        fprintf(stderr, "FAIL: pt_backend_cuda.device_memory is %d; CUDA memory is device memory\n", be->device_memory);
        return 1;
    }
    for (size_t i = 0; i < n_fns; i++)
        if (fns[i] == NULL) {
            fprintf(stderr, "FAIL: entry %zu of pt_backend_cuda is NULL\n", i);
            return 1;
        }
    printf("ok   pt_backend_cuda has all %zu entries\n", n_fns);
    int n = -1;
    char why[160] = "";
    if (pt_cuda_device_count(&n, why, sizeof why) != PT_OK || n < 0) {
        fprintf(stderr, "FAIL: pt_cuda_device_count: %s\n", pt_last_error());
        return 1;
    }
    pt_stream *s = NULL;
    if (n == 0) {
        pt_status st = be->stream_create(&(pt_stream_opts){ .device = 0 }, &s);
        const char *msg = pt_last_error();
        if (st != PT_ENOTSUP || s != NULL || strstr(msg, "no CUDA device (cudaGetDeviceCount: ") == NULL) {
            fprintf(stderr, "FAIL: without a GPU stream_create gave %s \"%s\"; want PT_ENOTSUP naming "
                            "cudaGetDeviceCount's reason\n", pt_status_name(st), msg);
            return 1;
        }
        printf("ok   no GPU: stream_create refuses: %s\n", msg);
        return 0;
    }
    if (be->stream_create(&(pt_stream_opts){ .device = n }, &s) != PT_EINVAL || s != NULL) {
        fprintf(stderr, "FAIL: device %d of %d was not refused\n", n, n);
        return 1;
    }
    setenv("PT_CUDA_MATMUL", "fp16", 1);
    if (be->stream_create(&(pt_stream_opts){ .device = 0 }, &s) != PT_EINVAL || s != NULL) {
        fprintf(stderr, "FAIL: PT_CUDA_MATMUL=fp16 was not refused\n");
        return 1;
    }
    unsetenv("PT_CUDA_MATMUL");
    if (be->stream_create(&(pt_stream_opts){ .device = 0 }, &s) != PT_OK || pt_cuda_stream_handle(s) == NULL ||
        pt_cuda_stream_device(s) != 0) {
        fprintf(stderr, "FAIL: stream on device 0: %s\n", pt_last_error());
        return 1;
    }
    be->stream_destroy(s);
    printf("ok   %d GPU(s): stream created; bad ordinal and bad PT_CUDA_MATMUL refused\n", n);
    return 0;
}
