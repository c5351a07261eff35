/* tests/kernels/test_adamw_multi.c — the CPU backend's multi-tensor AdamW (adamw_multi_update,
 * kernels/cpu/adamw.c) against one adamw_update per segment: the same bits for param, m and v.
 *
 * Cases: random tables of segments with sizes 0 (empty, first, last and between others), 1, odd
 * sizes and sizes past the single-thread threshold (PT_CPU_PAR_MIN, so the team splits inside
 * segments and across their boundaries), weight decay 0 and not, several steps t (1, 2, 7, 1000),
 * gradient scales 1 and not; streams of 1, 2 and 3 threads, all giving the same bits. The segments
 * lie in one buffer in a shuffled order with gaps (so a kernel that assumed contiguous segments in
 * table order would write the gaps, which are checked untouched). Refusals: t = 0, a start that is
 * not the sum before it, a total that is not the sum.
 *
 *     test_adamw_multi        (exit 0: all equal; 1: the first mismatch is printed)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"

static int failures;
static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float frand(void) { return (float)((next_u64() >> 40) * (1.0 / 8388608.0)) - 1.0f; } /* [-1, 1) */

#define EXPECT(c)                                                                                            \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);                                     \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

static void die_if(pt_status st, const char *what)
{
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s: %s\n", what, pt_last_error());
        exit(1);
    }
}

/* Four arrays (param, grad, m, v) of `cap` floats each, in one allocation. */
typedef struct state {
    float *p, *g, *m, *v;
    size_t cap;
} state;

static void state_make(state *s, size_t cap)
{
    s->cap = cap;
    s->p = malloc(4 * cap * sizeof(float));
    if (!s->p) {
        fprintf(stderr, "FAIL out of memory\n");
        exit(1);
    }
    s->g = s->p + cap;
    s->m = s->g + cap;
    s->v = s->m + cap;
}

static void state_copy(state *dst, const state *src) { memcpy(dst->p, src->p, 4 * src->cap * sizeof(float)); }

/* First differing element of the four arrays, or -1. */
static long state_diff(const state *a, const state *b, const char **which)
{
    static const char *names[4] = { "param", "grad", "m", "v" };
    for (size_t i = 0; i < 4 * a->cap; i++)
        if (memcmp(&a->p[i], &b->p[i], sizeof(float)) != 0) {
            *which = names[i / a->cap];
            return (long)(i % a->cap);
        }
    return -1;
}

/* A table of n segments over a state: segment sizes from `sizes`, placed in the buffer in a shuffled
 * order with gaps of 0 to 3 elements; start = the running sum in table order. Returns the total. */
static size_t make_table(pt_adamw_seg *segs, const size_t *sizes, int n, state *st, float wd, size_t *need)
{
    int order[64];
    for (int k = 0; k < n; k++)
        order[k] = k;
    for (int k = n - 1; k > 0; k--) {
        int j = (int)(next_u64() % (uint64_t)(k + 1)), x = order[k];
        order[k] = order[j];
        order[j] = x;
    }
    size_t off[64], at = 0;
    for (int q = 0; q < n; q++) {
        at += next_u64() % 4;
        off[order[q]] = at;
        at += sizes[order[q]];
    }
    *need = at + 3;
    size_t start = 0;
    for (int k = 0; k < n; k++) {
        segs[k] = (pt_adamw_seg){ .param = st ? st->p + off[k] : NULL, .grad = st ? st->g + off[k] : NULL,
                                  .m = st ? st->m + off[k] : NULL, .v = st ? st->v + off[k] : NULL, .n = sizes[k],
                                  .start = start, .weight_decay = (k % 3 == 1) ? 0.0f : wd };
        start += sizes[k];
    }
    return start;
}

/* One case: `steps` updates starting from step t0 through the per-tensor op (reference) and the
 * multi-tensor op on 1, 2 and 3 threads; every result must be the reference's bits. */
static void run_case(const pt_backend *be, pt_stream *const st[3], const size_t *sizes, int n, float wd, float gs,
                     int t0, int steps, const char *what)
{
    pt_adamw_seg segs[64];
    size_t need;
    uint64_t keep = rng;
    make_table(segs, sizes, n, NULL, wd, &need); /* the layout's size first */
    rng = keep;
    state ref, got, init;
    state_make(&ref, need);
    state_make(&got, need);
    state_make(&init, need);
    for (size_t i = 0; i < need; i++) {
        init.p[i] = frand();
        init.g[i] = 0.5f * frand();
        init.m[i] = 0.01f * frand();
        init.v[i] = 1e-4f * fabsf(frand());
    }
    init.g[0] = 0.0f; /* a zero gradient on a zero moment */
    init.m[0] = init.v[0] = 0.0f;
    const float lr = 6e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    uint64_t after = rng;
    state_copy(&ref, &init);
    rng = keep;
    size_t total = make_table(segs, sizes, n, &ref, wd, &need);
    for (int s = 0; s < steps; s++)
        for (int k = 0; k < n; k++)
            die_if(be->adamw_update(st[0], segs[k].param, segs[k].grad, segs[k].m, segs[k].v, segs[k].n, lr, b1, b2,
                                    eps, segs[k].weight_decay, gs, t0 + s),
                   "adamw_update");
    for (int th = 0; th < 3; th++) {
        state_copy(&got, &init);
        rng = keep;
        make_table(segs, sizes, n, &got, wd, &need);
        for (int s = 0; s < steps; s++)
            die_if(be->adamw_multi_update(st[th], segs, n, total, lr, b1, b2, eps, gs, t0 + s), "adamw_multi_update");
        const char *which = "";
        long at = state_diff(&got, &ref, &which);
        if (at >= 0) {
            fprintf(stderr, "FAIL %s, %d thread(s): %s[%ld] differs from the per-tensor op\n", what, th + 1, which,
                    at);
            failures++;
        }
    }
    rng = after;
    printf("ok   %-52s %2d segments, %8zu elements\n", what, n, total);
    free(ref.p);
    free(got.p);
    free(init.p);
}

int main(void)
{
    const pt_backend *be;
    die_if(pt_backend_get("cpu", &be), "cpu backend");
    EXPECT(be->adamw_multi_update != NULL);
    pt_stream *st[3];
    for (int i = 0; i < 3; i++)
        die_if(be->stream_create(&(pt_stream_opts){ .n_threads = i + 1 }, &st[i]), "stream");

    /* hand-picked tables: empties at the ends and in the middle, odd sizes, one past the threshold */
    static const size_t t1[] = { 0, 7, 0, 0, 1, 33, 0 };
    static const size_t t2[] = { 40001, 3, 0, 20000, 1, 65537, 0 };
    static const size_t t3[] = { 0 };
    static const size_t t4[] = { 100003 };
    run_case(be, st, t1, 7, 0.1f, 1.0f, 1, 3, "small, empties, wd 0.1, t 1..3");
    run_case(be, st, t2, 7, 0.1f, 0.37f, 1, 2, "past the threshold, wd 0.1, scale 0.37, t 1..2");
    run_case(be, st, t2, 7, 0.0f, 1.0f, 7, 2, "past the threshold, wd 0, t 7..8");
    run_case(be, st, t3, 1, 0.1f, 1.0f, 1, 1, "one empty segment");
    run_case(be, st, t4, 1, 0.05f, 1.0f, 1000, 1, "one odd segment, t 1000");
    run_case(be, st, t4, 0, 0.05f, 1.0f, 1, 1, "no segments");
    /* random tables */
    for (int c = 0; c < 8; c++) {
        size_t sizes[64];
        int n = 1 + (int)(next_u64() % 40);
        for (int k = 0; k < n; k++) {
            uint64_t r = next_u64() % 10;
            sizes[k] = r == 0 ? 0 : r < 5 ? 1 + next_u64() % 97 : r < 9 ? 1 + next_u64() % 5000 : 1 + next_u64() % 70000;
        }
        static const int ts[4] = { 1, 2, 7, 1000 };
        char what[96];
        float wd = (c & 1) ? 0.0f : 0.1f;
        snprintf(what, sizeof what, "random table %d, wd %g, t %d..%d", c, (double)wd, ts[c % 4], ts[c % 4] + 1);
        run_case(be, st, sizes, n, wd, (c & 2) ? 0.8f : 1.0f, ts[c % 4], 2, what);
    }

    /* refusals */
    float x[8] = { 0 };
    pt_adamw_seg bad[2] = { { .param = x, .grad = x + 2, .m = x + 4, .v = x + 6, .n = 2, .start = 0 },
                            { .param = x + 2, .grad = x + 2, .m = x + 4, .v = x + 6, .n = 0, .start = 1 } };
    EXPECT(be->adamw_multi_update(st[0], bad, 1, 2, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 0) == PT_EINVAL);
    EXPECT(be->adamw_multi_update(st[0], bad, 2, 2, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 1) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "segment 1 starts at element 1") != NULL);
    EXPECT(be->adamw_multi_update(st[0], bad, 1, 3, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 1) == PT_EINVAL);
    EXPECT(be->adamw_multi_update(st[0], NULL, -1, 0, 1e-3f, 0.9f, 0.95f, 1e-8f, 1.0f, 1) == PT_EINVAL);
    for (int i = 0; i < 8; i++)
        EXPECT(x[i] == 0.0f); /* nothing written by a refused call */

    for (int i = 0; i < 3; i++)
        be->stream_destroy(st[i]);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
