/* tests/runtime/test_grad_sync.c — the overlapped gradient reduction engine (pipetrain/grad_sync.h)
 * on its own, every rank of the launch one data-parallel replica.
 *
 *   test_grad_sync zero0|zero1   two chunks (100003 and 2500001 floats: several 4 MiB pieces,
 *                                uneven segments) in 11 buckets; for 3 steps the main thread fills
 *                                the gradients with fractional values (so a different summation
 *                                order would change bits), computes the reference on the main
 *                                communicator (pt_comm_reduce_scatter, and with zero0
 *                                pt_comm_allgather, on a copy of the whole buffers) WHILE the
 *                                engine's thread is reducing, and marks "layer" ranges ready in a
 *                                scrambled order that differs on every rank (ranges that split and
 *                                straddle buckets); the engine's result must equal the reference
 *                                bit for bit. Also: an element marked twice, a bucket gap, an
 *                                overlap and ready outside a step are refused naming the range;
 *                                begin after abort is refused; destroy during a step returns.
 *   test_grad_sync dead          step 0 as above; in step 1 the last rank exits without marking
 *                                anything: every other rank's finish fails naming the step and a
 *                                bucket, within the timeout, and destroy returns.
 * Exits 0 on success, 1 on a failed check. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/comm.h"
#include "pipetrain/grad_sync.h"
#include "pipetrain/timeutil.h"

static int g_rank = -1;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", g_rank, __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            return 1;                                                                          \
        }                                                                                      \
    } while (0)
#define OK(expr) CHECK((expr) == PT_OK, "%s: %s", #expr, pt_last_error())

static int64_t dl(void) { return pt_deadline_after_ms(60000); }

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define NCH 2
static const size_t g_n[NCH] = { 100003, 2500001 };
/* Bucket boundaries per chunk (added last bucket first, chunk 1 first: the backward's order). */
static const size_t g_cut0[] = { 0, 40000, 99999, 100003 };
static const size_t g_cut1[] = { 0, 7, 300000, 1000000, 1048577, 1600000, 2000000, 2499999, 2500001 };
/* "Layer" ranges the main thread marks ready: different cuts, so they split and straddle buckets. */
static const size_t g_lay0[] = { 0, 12345, 40001, 70000, 100003 };
static const size_t g_lay1[] = { 0, 1, 8, 250000, 300001, 999999, 1048576, 1048578, 1700000, 2400000, 2500001 };

typedef struct range {
    int chunk;
    size_t lo, hi;
} range;

static void fill(float *x, size_t n, int rank, int64_t step, int chunk)
{
    uint64_t s = (uint64_t)rank * 1000003u + (uint64_t)step * 7919u + (uint64_t)chunk * 104729u + 1;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(splitmix64(&s) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * 1e-3f; /* fractional */
}

static pt_status add_buckets(pt_grad_sync *gs, float **g)
{
    for (int c = 0; c < NCH; c++)
        PT_CHECK(pt_grad_sync_add_chunk(gs, c, g[c], g_n[c]));
    const size_t *cuts[NCH] = { g_cut0, g_cut1 };
    const size_t ncut[NCH] = { sizeof g_cut0 / sizeof g_cut0[0], sizeof g_cut1 / sizeof g_cut1[0] };
    for (int c = NCH - 1; c >= 0; c--)
        for (size_t k = ncut[c] - 1; k > 0; k--)
            PT_CHECK(pt_grad_sync_add_bucket(gs, c, cuts[c][k - 1], cuts[c][k]));
    return PT_OK;
}

static int n_layers(range *out)
{
    int n = 0;
    const size_t *lay[NCH] = { g_lay0, g_lay1 };
    const size_t nl[NCH] = { sizeof g_lay0 / sizeof g_lay0[0], sizeof g_lay1 / sizeof g_lay1[0] };
    for (int c = 0; c < NCH; c++)
        for (size_t k = 0; k + 1 < nl[c]; k++)
            out[n++] = (range){ c, lay[c][k], lay[c][k + 1] };
    return n;
}

/* Bad input on an engine that never starts a step (every rank does the same). */
static int bad_input(pt_comm *c, const int *dp, int D, float **g)
{
    pt_grad_sync *gs;
    OK(pt_grad_sync_create(c, dp, D, NULL, &gs));
    OK(pt_grad_sync_add_chunk(gs, 0, g[0], g_n[0]));
    CHECK(pt_grad_sync_add_chunk(gs, 0, g[0], g_n[0]) == PT_EINVAL, "a chunk registered twice");
    OK(pt_grad_sync_add_bucket(gs, 0, 0, 1000));
    CHECK(pt_grad_sync_add_bucket(gs, 0, 999, 2000) == PT_EINVAL && strstr(pt_last_error(), "overlaps"),
          "an overlapping bucket: %s", pt_last_error());
    CHECK(pt_grad_sync_add_bucket(gs, 1, 0, 10) == PT_EINVAL, "a bucket of an unregistered chunk");
    CHECK(pt_grad_sync_add_bucket(gs, 0, 2000, g_n[0] + 1) == PT_EINVAL, "a bucket past the end");
    OK(pt_grad_sync_add_bucket(gs, 0, 2000, g_n[0]));
    CHECK(pt_grad_sync_start(gs) == PT_EINVAL && strstr(pt_last_error(), "element 1000 is in none"),
          "a gap in the buckets: %s", pt_last_error());
    OK(pt_grad_sync_add_bucket(gs, 0, 1000, 2000));
    CHECK(pt_grad_sync_ready(gs, 0, 0, 10) == PT_EINVAL, "ready before start");
    OK(pt_grad_sync_start(gs));
    CHECK(pt_grad_sync_ready(gs, 0, 0, 10) == PT_EINVAL && strstr(pt_last_error(), "outside a step"),
          "ready outside a step: %s", pt_last_error());
    /* a step abandoned before anything is ready: the engine refuses the next one; destroy returns */
    OK(pt_grad_sync_begin(gs, 7));
    OK(pt_grad_sync_ready(gs, 0, 1500, 1600));
    pt_grad_sync_abort(gs);
    CHECK(pt_grad_sync_begin(gs, 8) != PT_OK && strstr(pt_last_error(), "abandoned"),
          "begin after an abandoned step: %s", pt_last_error());
    pt_grad_sync_destroy(gs);
    /* destroy in the middle of a step */
    OK(pt_grad_sync_create(c, dp, D, NULL, &gs));
    OK(pt_grad_sync_add_chunk(gs, 0, g[0], g_n[0]));
    OK(pt_grad_sync_add_bucket(gs, 0, 0, g_n[0]));
    OK(pt_grad_sync_start(gs));
    OK(pt_grad_sync_begin(gs, 0));
    pt_grad_sync_destroy(gs);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "zero0";
    int dead = strcmp(mode, "dead") == 0, zero = strcmp(mode, "zero1") == 0;
    if (!dead && strcmp(mode, "zero0") != 0 && !zero) {
        fprintf(stderr, "usage: test_grad_sync zero0|zero1|dead\n");
        return 2;
    }
    pt_comm *c;
    OK(pt_comm_create(NULL, &c));
    g_rank = pt_comm_rank(c);
    int D = pt_comm_size(c);
    CHECK(D >= 2, "start 2 or more ranks with the launcher");
    int *dp = malloc(sizeof(int) * (size_t)D);
    CHECK(dp, "out of memory");
    for (int i = 0; i < D; i++)
        dp[D - 1 - i] = i; /* the group's order is not the world's: member k = world rank D-1-k */
    pt_comm_group *grp;
    OK(pt_comm_group_create(c, dp, D, &grp));
    float *g[NCH], *ref[NCH];
    for (int k = 0; k < NCH; k++) {
        g[k] = malloc(g_n[k] * sizeof(float));
        ref[k] = malloc(g_n[k] * sizeof(float));
        CHECK(g[k] && ref[k], "out of memory");
    }
    if (!dead && bad_input(c, dp, D, g))
        return 1;
    pt_grad_sync *gs;
    pt_grad_sync_opts o = { .zero = zero, .timeout_ms = dead ? 2000 : 0 };
    OK(pt_grad_sync_create(c, dp, D, &o, &gs));
    OK(add_buckets(gs, g));
    OK(pt_grad_sync_start(gs));
    CHECK(pt_grad_sync_n_buckets(gs) == 11, "11 buckets, got %d", pt_grad_sync_n_buckets(gs));
    range lay[32];
    int nl = n_layers(lay);
    uint64_t seed = 0x5eed + (uint64_t)g_rank * 977;
    for (int64_t step = 0; step < 3; step++) {
        for (int k = 0; k < NCH; k++) {
            fill(g[k], g_n[k], g_rank, step, k);
            memcpy(ref[k], g[k], g_n[k] * sizeof(float));
        }
        OK(pt_grad_sync_begin(gs, step));
        if (dead && step == 1 && g_rank == D - 1) {
            printf("rank %d: exiting in step 1 without marking anything\n", g_rank);
            fflush(stdout);
            _exit(0);
        }
        for (int i = nl - 1; i > 0; i--) { /* this rank's own order */
            int j = (int)(splitmix64(&seed) % (uint64_t)(i + 1));
            range t = lay[i];
            lay[i] = lay[j];
            lay[j] = t;
        }
        for (int i = 0; i < nl; i++) {
            OK(pt_grad_sync_ready(gs, lay[i].chunk, lay[i].lo, lay[i].hi));
            if (i == nl / 2 && !(dead && step == 1)) /* "compute" on the main comm while the thread reduces */
                for (int k = 0; k < NCH; k++) {
                    OK(pt_comm_reduce_scatter(c, grp, ref[k], g_n[k], dl()));
                    if (!zero)
                        OK(pt_comm_allgather(c, grp, ref[k], g_n[k], dl()));
                }
            volatile double spin = 0;
            for (int w = 0; w < 20000; w++)
                spin += w * 1e-9;
        }
        if (!dead && step == 2) {
            CHECK(pt_grad_sync_ready(gs, 1, 1048576, 1048578) == PT_EINVAL && strstr(pt_last_error(), "twice"),
                  "an element marked twice: %s", pt_last_error());
            CHECK(pt_grad_sync_ready(gs, 0, 0, g_n[0] + 1) == PT_EINVAL, "a range past the chunk");
        }
        int64_t exposed = -1, t0 = pt_now_ns();
        pt_status st = pt_grad_sync_finish(gs, dl(), &exposed);
        if (dead && step == 1) {
            const char *e = pt_last_error();
            CHECK(st != PT_OK, "finish succeeded with a replica gone");
            CHECK(strstr(e, "step 1") && strstr(e, "bucket ") && strstr(e, "chunk 1"),
                  "the error names the step and the bucket: %s", e);
            CHECK(pt_now_ns() - t0 < 30000000000LL, "the failure took %.1f s", (double)(pt_now_ns() - t0) * 1e-9);
            printf("rank %d: dead replica reported in %.2f s: %s\n", g_rank, (double)(pt_now_ns() - t0) * 1e-9, e);
            CHECK(pt_grad_sync_begin(gs, 2) != PT_OK, "begin after a failed step");
            pt_grad_sync_destroy(gs);
            pt_comm_group_destroy(grp);
            pt_comm_destroy(c);
            for (int k = 0; k < NCH; k++) {
                free(g[k]);
                free(ref[k]);
            }
            free(dp);
            return 0;
        }
        CHECK(st == PT_OK, "finish: %s", pt_last_error());
        CHECK(exposed >= 0, "exposed time %lld", (long long)exposed);
        for (int k = 0; k < NCH; k++)
            for (size_t i = 0; i < g_n[k]; i++)
                CHECK(memcmp(&g[k][i], &ref[k][i], sizeof(float)) == 0,
                      "step %lld chunk %d element %zu: engine %a, whole-buffer call %a", (long long)step, k, i,
                      (double)g[k][i], (double)ref[k][i]);
        for (int b = 0; b < pt_grad_sync_n_buckets(gs); b++) {
            pt_grad_sync_bucket_info bi;
            OK(pt_grad_sync_bucket(gs, b, &bi));
            CHECK(bi.ready_ns > 0 && bi.start_ns >= bi.ready_ns && bi.end_ns >= bi.start_ns,
                  "bucket %d's times: ready %lld start %lld end %lld", b, (long long)bi.ready_ns,
                  (long long)bi.start_ns, (long long)bi.end_ns);
        }
        CHECK(pt_grad_sync_stage_bytes(gs) == 700000 * sizeof(float), "staging buffer of %zu bytes, want the largest "
              "bucket's", pt_grad_sync_stage_bytes(gs));
        CHECK(pt_grad_sync_direct_bytes(gs) > 0, "no byte of the staged buckets took the direct path");
        printf("rank %d: %s step %lld bitwise equal to the whole-buffer calls; finish blocked %.3f ms; %.1f MB by the "
               "direct path so far\n", g_rank, mode, (long long)step, (double)exposed * 1e-6,
               (double)pt_grad_sync_direct_bytes(gs) * 1e-6);
    }
    pt_grad_sync_destroy(gs);
    pt_comm_group_destroy(grp);
    OK(pt_comm_barrier(c, NULL, dl()));
    pt_comm_destroy(c);
    for (int k = 0; k < NCH; k++) {
        free(g[k]);
        free(ref[k]);
    }
    free(dp);
    return 0;
}
