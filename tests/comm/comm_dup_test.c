/* tests/comm/comm_dup_test.c — pt_comm_dup: a second communicator used by a second thread while
 * the first thread keeps using the original, started as N ranks by the launcher.
 *
 *   comm_dup_test [ROUNDS]   every rank makes c, dups it (twice: the second dup is destroyed at
 *                            once), then for ROUNDS rounds (default 20) at the same time
 *                            - the main thread, on c: ring messages (1 KiB .. 1 MiB, both
 *                              directions) and an all-reduce over the world, checked;
 *                            - a second thread, on the dup: a fixed-order reduce-scatter and
 *                              all-gather over a group made on the dup (every rank but the last
 *                              when N > 2, else all), range by range, and an all-reduce over the
 *                              dup's world, checked against the serial sums;
 *                            then both destroy cleanly (dup first).
 *   comm_dup_test single     one process: the dup is a "self" communicator, collectives no-ops.
 * Exits 0 on success, 1 on a failed check (printing what and where). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/comm.h"
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

/* Member i's value at element e, round r: small integers, so float sums are exact in any order. */
static float val(int i, size_t e, int r) { return (float)((int)((e * 7 + (size_t)i * 13 + (size_t)r) % 61) - 30); }

typedef struct side {
    pt_comm *d;
    int rounds, result;
    char err[512];
} side;

static int side_run(side *s)
{
    pt_comm *d = s->d;
    int n = pt_comm_size(d), me = pt_comm_rank(d);
    int gn = n > 2 ? n - 1 : n; /* a proper subgroup when there is room for one */
    int *ranks = malloc(sizeof(int) * (size_t)gn);
    CHECK(ranks, "out of memory");
    for (int i = 0; i < gn; i++)
        ranks[i] = i;
    pt_comm_group *g = NULL;
    if (me < gn)
        OK(pt_comm_group_create(d, ranks, gn, &g));
    free(ranks);
    const size_t N = 300007; /* uneven segments, several ranges */
    float *buf = malloc(N * sizeof(float)), *w = malloc(4099 * sizeof(float));
    CHECK(buf && w, "out of memory");
    for (int r = 0; r < s->rounds; r++) {
        if (g) {
            int gr = pt_comm_group_rank(g);
            for (size_t e = 0; e < N; e++)
                buf[e] = val(gr, e, r);
            const size_t cuts[] = { 0, 1000, 1001, 150000, 299999, N };
            for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++)
                OK(pt_comm_reduce_scatter_range(d, g, buf, N, cuts[k], cuts[k + 1], dl()));
            for (size_t k = sizeof cuts / sizeof cuts[0] - 1; k > 0; k--) /* any order of whole ranges */
                OK(pt_comm_allgather_range(d, g, buf, N, cuts[k - 1], cuts[k], dl()));
            for (size_t e = 0; e < N; e++) {
                float want = 0;
                for (int i = 0; i < gn; i++)
                    want += val(i, e, r);
                CHECK(buf[e] == want, "dup round %d: reduce-scatter + all-gather element %zu is %g, want %g", r, e,
                      (double)buf[e], (double)want);
            }
        }
        for (size_t e = 0; e < 4099; e++)
            w[e] = val(me, e, r + 1);
        OK(pt_comm_allreduce(d, NULL, w, 4099, PT_REDUCE_SUM, dl()));
        for (size_t e = 0; e < 4099; e++) {
            float want = 0;
            for (int i = 0; i < n; i++)
                want += val(i, e, r + 1);
            CHECK(w[e] == want, "dup round %d: all-reduce element %zu is %g, want %g", r, e, (double)w[e],
                  (double)want);
        }
    }
    OK(pt_comm_barrier(d, NULL, dl()));
    pt_comm_group_destroy(g);
    free(buf);
    free(w);
    return 0;
}

static void *side_main(void *arg)
{
    side *s = arg;
    s->result = side_run(s);
    if (s->result)
        snprintf(s->err, sizeof s->err, "%s", pt_last_error());
    return NULL;
}

static int main_traffic(pt_comm *c, int rounds)
{
    int n = pt_comm_size(c), me = pt_comm_rank(c);
    int right = (me + 1) % n, left = (me - 1 + n) % n;
    size_t big = (size_t)1 << 20;
    unsigned char *sb = malloc(big), *rb = malloc(big);
    float *a = malloc(10007 * sizeof(float));
    CHECK(sb && rb && a, "out of memory");
    for (int r = 0; r < rounds; r++) {
        for (size_t bytes = 1024; n > 1 && bytes <= big; bytes *= 8) {
            for (size_t i = 0; i < bytes; i++)
                sb[i] = (unsigned char)(i * 31 + (size_t)me + (size_t)r);
            pt_msg_id id = { 4 /* SEND_ACT */, r, (int)(bytes % 200), r };
            pt_comm_req *q[2];
            OK(pt_comm_irecv(c, left, &id, rb, bytes, &q[0]));
            OK(pt_comm_isend(c, right, &id, sb, bytes, &q[1]));
            OK(pt_comm_waitall(c, q, 2, dl()));
            for (size_t i = 0; i < bytes; i++)
                CHECK(rb[i] == (unsigned char)(i * 31 + (size_t)left + (size_t)r),
                      "round %d: byte %zu of a %zu-byte message from rank %d", r, i, bytes, left);
        }
        for (size_t e = 0; e < 10007; e++)
            a[e] = val(me, e, 2 * r);
        OK(pt_comm_allreduce(c, NULL, a, 10007, PT_REDUCE_SUM, dl()));
        for (size_t e = 0; e < 10007; e++) {
            float want = 0;
            for (int i = 0; i < n; i++)
                want += val(i, e, 2 * r);
            CHECK(a[e] == want, "main round %d: all-reduce element %zu is %g, want %g", r, e, (double)a[e],
                  (double)want);
        }
    }
    free(sb);
    free(rb);
    free(a);
    return 0;
}

int main(int argc, char **argv)
{
    int single = argc > 1 && strcmp(argv[1], "single") == 0;
    int rounds = argc > 1 && !single ? atoi(argv[1]) : 20;
    pt_comm *c = NULL, *d = NULL, *d2 = NULL;
    OK(pt_comm_create(NULL, &c));
    g_rank = pt_comm_rank(c);
    CHECK(!single || pt_comm_size(c) == 1, "single: run without a launcher");
    OK(pt_comm_dup(c, dl(), &d));
    CHECK(pt_comm_rank(d) == pt_comm_rank(c) && pt_comm_size(d) == pt_comm_size(c), "the dup's rank and size");
    CHECK(strcmp(pt_comm_provider(d), pt_comm_provider(c)) == 0, "the dup's provider is %s, c's %s",
          pt_comm_provider(d), pt_comm_provider(c));
    CHECK(pt_comm_timeout_ms(d) == pt_comm_timeout_ms(c), "the dup's timeout");
    OK(pt_comm_dup(c, dl(), &d2)); /* a second dup, destroyed unused */
    pt_comm_destroy(d2);
    CHECK(pt_comm_dup(c, dl(), NULL) == PT_EINVAL, "a NULL out is refused");
    side s = { .d = d, .rounds = single ? 2 : rounds };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, side_main, &s) == 0, "pthread_create");
    int rc = main_traffic(c, single ? 2 : rounds);
    pthread_join(t, NULL);
    CHECK(s.result == 0, "the dup's thread failed: %s", s.err);
    if (rc)
        return rc;
    OK(pt_comm_barrier(c, NULL, dl()));
    pt_comm_destroy(d);
    OK(pt_comm_barrier(c, NULL, dl())); /* c still works once the dup is gone */
    pt_comm_destroy(c);
    printf("rank %d: comm_dup ok (%s)\n", g_rank, single ? "single" : "threads");
    return 0;
}
