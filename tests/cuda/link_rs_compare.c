/* tests/cuda/link_rs_compare.c — the nccl link kind's reduce-scatter and all-gather
 * (comm/nccl/link_nccl.c) against pt_comm_reduce_scatter / pt_comm_allgather, bit for bit. Built
 * twice by tests/cuda/CMakeLists.txt: on the emulator (test_cuda_emu_link_rs: the real link code
 * and CUDA backend table, the CUDA runtime answered by emu/cuda_runtime_emu.cpp, the add kernel's
 * own source run by the fiber emulator, NCCL answered by emu/nccl_emu.c over pt_comm) and against
 * the real CUDA runtime and NCCL (test_link_rs, label gpu: one GPU per rank).
 *
 *   link_rs_compare P      P ranks (2 or more); exit 0 = pass
 *
 * Started without RANK it re-launches itself as P local ranks through pt_launch with
 * PT_EMU_GPU_PER_RANK=1 (on the emulator: each rank its own pretend GPU); rank r uses CUDA device
 * r modulo the device count, so with a GPU per rank pt_link_create must pick "nccl". Every
 * rank fills n floats from (rank, index) with values over a wide range of magnitudes and both
 * signs, so a sum in another order gives other bits, for n = 1, 7 (members with empty or uneven
 * segments), 1000, and BIG (n % P = P - 1; every segment spans more than two of the link's pieces,
 * so both scratch halves are used and reused). For each n:
 *  - the reference: the same data in host memory through pt_comm_reduce_scatter, then
 *    pt_comm_allgather (the host kinds' collectives);
 *  - the link: the data in device memory, pt_link_reduce_scatter, then this member's segment
 *    copied back must equal the reference's to the bit; pt_link_allgather, then the whole buffer
 *    must equal the reference's all-gathered buffer to the bit;
 *  - both also against a left-to-right sum computed here from every member's data (each rank can
 *    make them all), and with P >= 3 the test shows it can fail: the reversed order (x_{P-1} +
 *    ... + x_0) differs from it in some elements of BIG.
 * Then a reduce-scatter of more floats than the link was created for must be refused, not
 * overrun its scratch. Prints one line per case; rank 0 prints the time of BIG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/backend.h"
#include "pipetrain/comm.h"
#include "pipetrain/cuda.h"
#include "pipetrain/link.h"
#include "pipetrain/timeutil.h"

/* link_nccl.c's RS_PIECE_FLOATS (a segment piece reduced at once). */
#define PIECE ((size_t)512 * 1024)

static int g_rank;

#define CHECK(cond, ...)                                                                                            \
    do {                                                                                                            \
        if (!(cond)) {                                                                                              \
            fprintf(stderr, "FAIL rank %d: ", g_rank);                                                              \
            fprintf(stderr, __VA_ARGS__);                                                                           \
            fprintf(stderr, "\n");                                                                                  \
            return 1;                                                                                               \
        }                                                                                                           \
    } while (0)
#define OK(call) CHECK((call) == PT_OK, "%s: %s", #call, pt_last_error())

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Member r's value at index i: +-[1, 2) x 2^e, e in [-12, 12]. */
static float value(int r, size_t i)
{
    uint64_t h = mix(((uint64_t)r << 40) ^ (uint64_t)i);
    float m = 1.0f + (float)(h & 0xffffff) / 16777216.0f;
    int e = (int)((h >> 24) % 25) - 12;
    float v = m;
    for (; e > 0; e--)
        v *= 2.0f;
    for (; e < 0; e++)
        v *= 0.5f;
    return (h >> 40) & 1 ? -v : v;
}

static int same_bits(const float *a, const float *b, size_t n, size_t *first)
{
    if (memcmp(a, b, n * sizeof(float)) == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            *first = i;
            break;
        }
    return 0;
}

static int one_case(pt_comm *c, pt_comm_group *g, const pt_backend *be, pt_stream *s, pt_link *l, float *dev,
                    size_t n)
{
    const int p = pt_comm_size(c), me = pt_comm_rank(c);
    const int64_t dl = pt_deadline_after_ms(120000);
    float *ref = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float)), *ltr = malloc(n * sizeof(float));
    CHECK(ref && out && ltr, "out of memory for %zu floats", n);
    for (size_t i = 0; i < n; i++)
        ref[i] = value(me, i);
    OK(be->memcpy_h2d(s, dev, ref, n * sizeof(float)));
    OK(be->stream_sync(s));
    size_t lo, hi, diff_rev = 0, first = 0;
    pt_comm_segment(n, p, me, &lo, &hi);
    for (size_t i = 0; i < n; i++) {
        float v = value(0, i), w = value(p - 1, i);
        for (int j = 1; j < p; j++)
            v += value(j, i);
        for (int j = p - 2; j >= 0; j--)
            w += value(j, i);
        ltr[i] = v;
        diff_rev += memcmp(&v, &w, sizeof v) != 0;
    }
    /* The reference: the host kinds' collectives. */
    OK(pt_comm_reduce_scatter(c, g, ref, n, dl));
    CHECK(same_bits(ref + lo, ltr + lo, hi - lo, &first), "n %zu: pt_comm_reduce_scatter is not the left-to-right "
          "sum at element %zu", n, lo + first);
    OK(pt_comm_allgather(c, g, ref, n, dl));
    CHECK(same_bits(ref, ltr, n, &first), "n %zu: pt_comm_allgather's element %zu is not the sum", n, first);

    int64_t t0 = pt_now_ns();
    OK(pt_link_reduce_scatter(l, 0, dev, n, dl, "the test's reduce-scatter"));
    int64_t t1 = pt_now_ns();
    if (hi > lo)
        OK(be->memcpy_d2h(s, out + lo, dev + lo, (hi - lo) * sizeof(float)));
    CHECK(same_bits(out + lo, ref + lo, hi - lo, &first), "n %zu: the nccl reduce-scatter's segment [%zu, %zu) "
          "differs from pt_comm_reduce_scatter's at element %zu: %.9g vs %.9g", n, lo, hi, lo + first,
          (double)out[lo + first], (double)ref[lo + first]);
    int64_t t2 = pt_now_ns();
    OK(pt_link_allgather(l, 0, dev, n, dl, "the test's all-gather"));
    int64_t t3 = pt_now_ns();
    OK(be->memcpy_d2h(s, out, dev, n * sizeof(float)));
    CHECK(same_bits(out, ref, n, &first), "n %zu: the nccl all-gather differs from pt_comm_allgather's at element "
          "%zu: %.9g vs %.9g", n, first, (double)out[first], (double)ref[first]);
    printf("ok   rank %d of %d: n %zu, segment [%zu, %zu): reduce-scatter and all-gather bits equal pt_comm's "
           "(%zu elements of %zu differ in reversed order) in %.3f s + %.3f s\n",
           me, p, n, lo, hi, diff_rev, n, pt_seconds_between(t0, t1), pt_seconds_between(t2, t3));
    free(ref);
    free(out);
    free(ltr);
    if (p >= 3 && n > 2 * p * PIECE)
        CHECK(diff_rev > 0, "n %zu: the reversed sum gave the same bits everywhere; the data cannot tell orders apart",
              n);
    return 0;
}

static int run_rank(void)
{
    pt_comm *c = NULL;
    OK(pt_comm_create(NULL, &c));
    const int p = pt_comm_size(c);
    g_rank = pt_comm_rank(c);
    const pt_backend *be;
    OK(pt_backend_get("cuda", &be));
    int n_dev = 0;
    char why[256] = "";
    OK(pt_cuda_device_count(&n_dev, why, sizeof why));
    CHECK(n_dev > 0, "no CUDA device (%s)", why);
    pt_stream *s = NULL;
    OK(be->stream_create(&(pt_stream_opts){ .device = pt_comm_local_rank(c) % n_dev, .n_threads = 1 }, &s));
    int *ranks = malloc((size_t)p * sizeof *ranks);
    CHECK(ranks, "out of memory");
    for (int i = 0; i < p; i++)
        ranks[i] = i;
    pt_comm_group *g = NULL;
    OK(pt_comm_group_create(c, ranks, p, &g));
    const size_t big = (size_t)p * (2 * PIECE + 1000) + (size_t)p - 1;
    pt_link_group grp = { .n = p, .members = ranks, .g = g };
    pt_link_opts lo = { .comm = c, .be = be, .compute = s, .msg_bytes = 64, .red_floats = big, .groups = &grp,
                        .n_groups = 1, .timeout_ms = 120000 };
    pt_link *l = NULL;
    OK(pt_link_create(&lo, &l));
    CHECK(strncmp(pt_link_describe(l), "nccl", 4) == 0, "the link is \"%s\", want nccl (one GPU per rank)",
          pt_link_describe(l));
    if (g_rank == 0)
        printf("link: %s\n", pt_link_describe(l));
    float *dev = NULL;
    OK(pt_backend_alloc(be, (void **)&dev, (big + 1) * sizeof(float)));
    const size_t ns[] = { 1, 7, 1000, big };
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
        if (one_case(c, g, be, s, l, dev, ns[k]))
            return 1;
    pt_status st = pt_link_reduce_scatter(l, 0, dev, big + 1, pt_deadline_after_ms(10000), "an oversized one");
    CHECK(st == PT_EINTERNAL && strstr(pt_last_error(), "sized for"),
          "a reduce-scatter of %zu floats on a link sized for %zu: %s (%s), want PT_EINTERNAL naming the size", big + 1,
          big, pt_status_name(st), pt_last_error());
    pt_clear_error();
    OK(pt_comm_barrier(c, NULL, pt_deadline_after_ms(60000)));
    pt_backend_free(be, dev);
    pt_link_destroy(l, 0);
    pt_comm_group_destroy(g);
    free(ranks);
    be->stream_destroy(s);
    pt_comm_destroy(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) < 2) {
        fprintf(stderr, "usage: %s P   (P >= 2 ranks)\n", argv[0]);
        return 2;
    }
    if (getenv("RANK"))
        return run_rank();
    setenv("PT_EMU_GPU_PER_RANK", "1", 1);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 1;
    self[len] = '\0';
    char *av[] = { self, argv[1], NULL };
    pt_launch_opts lo = { .nproc = atoi(argv[1]), .nodes = 1, .node_rank = 0, .master = NULL };
    int code = 0;
    pt_status st = pt_launch(&lo, av, &code);
    if (st != PT_OK)
        fprintf(stderr, "link_rs_compare: %s\n", pt_last_error());
    return code ? code : st != PT_OK;
}
