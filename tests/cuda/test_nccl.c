/* tests/cuda/test_nccl.c — NCCL behind pt_comm.
 *   test_nccl version   the linked NCCL answers and matches the header it was built with (no GPU)
 *   test_nccl gpus N    exits 0 when this machine has at least N CUDA devices, else 77
 *   test_nccl single    one rank: communicator from the bootstrap, all-reduce SUM and MEAN (GPU)
 *   test_nccl pair      under `pipetrain launch --nproc 2` (one GPU per rank): send/recv both
 *                       ways in one group, all-reduce SUM and MEAN against the expected values */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/comm.h"
#include "pipetrain/cuda.h"
#include "pipetrain/nccl.h"
#include "pipetrain/timeutil.h"

static int fail(const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
    return 1;
}

static int n_gpus(char *why, size_t cap)
{
    int n = 0;
    if (pt_cuda_device_count(&n, why, cap) != PT_OK)
        return 0;
    return n;
}

/* Checks buf (n floats, device) against want(i) after an operation. */
static int expect(const pt_backend *be, pt_stream *s, const float *dbuf, size_t n, float base, float step,
                  const char *what)
{
    float *h = malloc(n * sizeof *h);
    if (h == NULL || be->memcpy_d2h(s, h, dbuf, n * sizeof *h) != PT_OK) {
        free(h);
        return fail(what);
    }
    for (size_t i = 0; i < n; i++) {
        float want = base + step * (float)(i % 1000);
        if (h[i] != want) {
            fprintf(stderr, "FAIL %s: element %zu is %g, want %g\n", what, i, h[i], want);
            free(h);
            return 1;
        }
    }
    free(h);
    printf("ok   %s (%zu floats)\n", what, n);
    return 0;
}

static int fill_dev(const pt_backend *be, pt_stream *s, float *dbuf, size_t n, float base, float step)
{
    float *h = malloc(n * sizeof *h);
    if (h == NULL)
        return 1;
    for (size_t i = 0; i < n; i++)
        h[i] = base + step * (float)(i % 1000);
    pt_status st = be->memcpy_h2d(s, dbuf, h, n * sizeof *h);
    if (st == PT_OK)
        st = be->stream_sync(s);
    free(h);
    return st != PT_OK;
}

static int run_ranks(int pair)
{
    char why[160] = "";
    if (n_gpus(why, sizeof why) < 1) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    pt_comm *c = NULL;
    if (pt_comm_create(NULL, &c) != PT_OK)
        return fail("pt_comm_create");
    int rank = pt_comm_rank(c), size = pt_comm_size(c);
    if (pair && size != 2) {
        fprintf(stderr, "FAIL pair: run under pipetrain launch --nproc 2 (world size is %d)\n", size);
        pt_comm_destroy(c);
        return 1;
    }
    const pt_backend *be;
    pt_stream *s = NULL;
    pt_nccl *nc = NULL;
    float *a = NULL, *b = NULL;
    const size_t n = 3 << 20; /* 12 MiB: several NCCL chunks */
    int bad = 1;
    int device = pair ? pt_comm_local_rank(c) : 0;
    if (pt_backend_get("cuda", &be) != PT_OK ||
        be->stream_create(&(pt_stream_opts){ .device = device }, &s) != PT_OK) {
        fail("cuda stream");
        goto out;
    }
    if (pt_nccl_create(c, NULL, 0, device, &nc) != PT_OK) {
        fail("pt_nccl_create");
        goto out;
    }
    if (pt_nccl_rank(nc) != rank || pt_nccl_size(nc) != size) {
        fprintf(stderr, "FAIL: NCCL rank %d of %d, world rank %d of %d\n", pt_nccl_rank(nc), pt_nccl_size(nc), rank,
                size);
        goto out;
    }
    if (pt_backend_alloc(be, (void **)&a, n * sizeof(float)) != PT_OK ||
        pt_backend_alloc(be, (void **)&b, n * sizeof(float)) != PT_OK) {
        fail("alloc");
        goto out;
    }
    int64_t deadline = pt_deadline_after_ms(60000);
    if (pair) {
        /* Both ranks send to each other in one group: no deadlock, each gets the other's data. */
        int peer = 1 - rank;
        if (fill_dev(be, s, a, n, 100.0f * rank, 1.0f) || pt_nccl_group_begin(nc) != PT_OK ||
            pt_nccl_send(nc, peer, a, n * sizeof(float), s) != PT_OK ||
            pt_nccl_recv(nc, peer, b, n * sizeof(float), s) != PT_OK || pt_nccl_group_end(nc) != PT_OK ||
            pt_nccl_wait(nc, s, deadline) != PT_OK) {
            fail("send/recv");
            goto out;
        }
        if (expect(be, s, b, n, 100.0f * peer, 1.0f, "send/recv both ways in one group"))
            goto out;
    }
    /* all-reduce SUM of (rank + 1) * (1 + i%1000 / 1000-ish): exact in fp32 for these sizes */
    if (fill_dev(be, s, a, n, (float)(rank + 1), (float)(rank + 1)) ||
        pt_nccl_allreduce(nc, a, n, PT_REDUCE_SUM, s) != PT_OK || pt_nccl_wait(nc, s, deadline) != PT_OK) {
        fail("all-reduce sum");
        goto out;
    }
    float tri = (float)(size * (size + 1) / 2);
    if (expect(be, s, a, n, tri, tri, "all-reduce SUM"))
        goto out;
    if (fill_dev(be, s, a, n, 2.0f * (rank + 1), 0.0f) || pt_nccl_allreduce(nc, a, n, PT_REDUCE_MEAN, s) != PT_OK ||
        pt_nccl_wait(nc, s, deadline) != PT_OK) {
        fail("all-reduce mean");
        goto out;
    }
    if (expect(be, s, a, n, (float)(size + 1), 0.0f, "all-reduce MEAN"))
        goto out;
    if (pt_nccl_send(nc, rank, a, 4, s) != PT_EINVAL) {
        fprintf(stderr, "FAIL: a send to itself was accepted\n");
        goto out;
    }
    bad = 0;
out:
    pt_backend_free(be, b);
    pt_backend_free(be, a);
    pt_nccl_destroy(nc);
    if (s != NULL)
        be->stream_destroy(s);
    pt_comm_destroy(c);
    return bad;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "version") == 0) {
        int code = 0;
        char buf[32];
        if (pt_nccl_version(&code, buf, sizeof buf) != PT_OK)
            return fail("pt_nccl_version");
        char want[32];
        snprintf(want, sizeof want, "%d.%d.%d", NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
        if (code != NCCL_VERSION_CODE || strcmp(buf, want) != 0) {
            fprintf(stderr, "FAIL: linked NCCL %s (%d) but built against %s (%d); the library path picks another "
                            "NCCL\n", buf, code, want, NCCL_VERSION_CODE);
            return 1;
        }
        printf("ok   NCCL %s (code %d) linked and answering without a GPU\n", buf, code);
        return 0;
    }
    if (strcmp(mode, "gpus") == 0 && argc == 3) {
        char why[160] = "";
        int have = n_gpus(why, sizeof why), need = atoi(argv[2]);
        if (have < need) {
            printf("SKIP: %d CUDA device(s), need %d (%s)\n", have, need, why);
            return 77;
        }
        return 0;
    }
    if (strcmp(mode, "single") == 0)
        return run_ranks(0);
    if (strcmp(mode, "pair") == 0)
        return run_ranks(1);
    fprintf(stderr, "usage: test_nccl version | gpus N | single | pair\n");
    return 2;
}
