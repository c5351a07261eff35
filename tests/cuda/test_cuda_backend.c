/* tests/cuda/test_cuda_backend.c — the CUDA backend's table and its behaviour without a GPU.
 * Runs on every machine: the table is complete; without a device, stream_create refuses with
 * PT_ENOTSUP and the message names CUDA's reason; with one, a stream is created and a
 * non-existent device ordinal is refused with PT_EINVAL, and a bad PT_CUDA_MATMUL too, and the
 * pieces the pipeline runtime moves data with work: device UUIDs (distinct per GPU), pinned and
 * registered host memory, a copy stream ordered after the compute stream by an event, an
 * asynchronous device-to-host copy awaited through its event.
 * `test_cuda_backend gpus N` exits 0 with at least N devices, else 77 (for the scripts). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/cuda.h"
#include "pipetrain/timeutil.h"

#define CHECK(cond, ...)                                                                                         \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "FAIL: " __VA_ARGS__);                                                               \
            fprintf(stderr, " (%s)\n", pt_last_error());                                                         \
            return 1;                                                                                            \
        }                                                                                                        \
    } while (0)

/* Compute stream: upload, scale by 2; copy stream: after an event, download into pinned memory
 * and into registered memory; the host waits for the copy's event and checks every value. */
static int check_transfers(const pt_backend *be, int n_dev)
{
    unsigned char u0[16], u1[16], zero[16] = { 0 };
    CHECK(pt_cuda_device_uuid(0, u0) == PT_OK && memcmp(u0, zero, 16) != 0, "device 0 has no UUID");
    if (n_dev >= 2) {
        CHECK(pt_cuda_device_uuid(1, u1) == PT_OK, "UUID of device 1");
        CHECK(memcmp(u0, u1, 16) != 0, "devices 0 and 1 report the same UUID");
    }
    CHECK(pt_cuda_device_uuid(n_dev, u1) == PT_EINVAL, "UUID of device %d (does not exist) was not refused", n_dev);
    const size_t n = (size_t)1 << 20, bytes = n * sizeof(float);
    pt_stream *s = NULL, *cs = NULL;
    pt_cuda_event *ev = NULL, *done = NULL;
    float *src = NULL, *pinned = NULL, *reg = NULL, *d = NULL;
    CHECK(be->stream_create(&(pt_stream_opts){ .device = 0 }, &s) == PT_OK, "stream");
    CHECK(pt_cuda_copy_stream_create(s, &cs) == PT_OK && pt_cuda_stream_device(cs) == 0, "copy stream");
    CHECK(pt_cuda_event_create(&ev) == PT_OK && pt_cuda_event_create(&done) == PT_OK, "events");
    int ready = 0;
    CHECK(pt_cuda_event_query(done, &ready) == PT_OK && ready == 1, "an event never recorded is not done");
    CHECK(pt_cuda_host_alloc((void **)&src, bytes) == PT_OK && pt_cuda_host_alloc((void **)&pinned, bytes) == PT_OK,
          "pinned memory");
    CHECK(posix_memalign((void **)&reg, 4096, bytes) == 0 && pt_cuda_host_register(reg, bytes) == PT_OK,
          "registered memory");
    CHECK(pt_backend_alloc(be, (void **)&d, bytes) == PT_OK, "device memory");
    for (size_t i = 0; i < n; i++)
        src[i] = (float)(i % 977) - 300.0f;
    CHECK(be->memcpy_h2d(s, d, src, bytes) == PT_OK && be->scale(s, d, 2.0f, n) == PT_OK, "upload and scale");
    CHECK(pt_cuda_event_record(ev, s) == PT_OK && pt_cuda_stream_wait_event(cs, ev) == PT_OK, "order copy stream");
    CHECK(pt_cuda_memcpy_d2h_async(cs, pinned, d, bytes) == PT_OK && pt_cuda_memcpy_d2h_async(cs, reg, d, bytes) == PT_OK,
          "asynchronous downloads");
    CHECK(pt_cuda_event_record(done, cs) == PT_OK, "record on the copy stream");
    CHECK(pt_cuda_event_wait(done, pt_deadline_after_ms(60000), "the test's download") == PT_OK, "event wait");
    for (size_t i = 0; i < n; i++)
        CHECK(pinned[i] == 2.0f * src[i] && reg[i] == 2.0f * src[i], "element %zu: pinned %g registered %g, want %g",
              i, pinned[i], reg[i], 2.0f * src[i]);
    pt_backend_free(be, d);
    pt_cuda_host_unregister(reg);
    free(reg);
    pt_cuda_host_free(pinned);
    pt_cuda_host_free(src);
    pt_cuda_event_destroy(done);
    pt_cuda_event_destroy(ev);
    be->stream_destroy(cs);
    be->stream_destroy(s);
    printf("ok   UUIDs, pinned and registered memory, copy stream after an event, async download (%zu floats)\n", n);
    return 0;
}

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
    /* ... and so is every entry after device_memory (attention_decode, the Llama layers). */
    const size_t late0 = offsetof(pt_backend, attention_decode);
    const void *const *late = (const void *const *)((const char *)be + late0);
    size_t n_late = (sizeof(pt_backend) - late0) / sizeof(void *);
    for (size_t i = 0; i < n_late; i++)
        if (late[i] == NULL) {
            fprintf(stderr, "FAIL: entry %zu after device_memory of pt_backend_cuda is NULL\n", i);
            return 1;
        }
    printf("ok   pt_backend_cuda has all %zu entries\n", n_fns + n_late);
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
        unsigned char uuid[16];
        if (pt_cuda_device_uuid(0, uuid) != PT_EINVAL) {
            fprintf(stderr, "FAIL: without a GPU pt_cuda_device_uuid(0) was not refused\n");
            return 1;
        }
        printf("ok   no GPU: pt_cuda_device_uuid refuses: %s\n", pt_last_error());
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
    return check_transfers(be, n);
}
