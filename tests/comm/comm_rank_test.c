/* tests/comm/comm_rank_test.c — one rank of a communication test, started by the launcher
 * (or by test scripts with the rank environment set by hand).
 *
 *   comm_rank_test single       one process, no environment: size 1 behaviour and bad input
 *   comm_rank_test p2p [MAX [direct]]
 *                               every pair exchanges many outstanding messages (1 B .. 1 MiB),
 *                               then ring neighbours exchange 4 MiB .. MAX (default 64 MiB);
 *                               content checked byte for byte. `direct`: every buffer comes from
 *                               pt_comm_buf_alloc (big ones at odd sizes and offsets), and the
 *                               direct path must have carried the big messages
 *   comm_rank_test coll         all-reduce (sizes 1, 7, 4097, 10^6) over groups of 1..N ranks
 *                               against the serial sum; broadcast, barrier, gatherv
 *   comm_rank_test mismatch [direct]
 *                               2 ranks: size disagreements on every path are errors naming both
 *   comm_rank_test hash         every rank uses its own config hash: the rendezvous refuses
 *   comm_rank_test kill         3 ranks: rank 2 dies mid-transfer; 0 and 1 must fail naming it
 *   comm_rank_test dead [N]     2 ranks exchange messages both ways; after N (default 20) rank 1
 *                               dies holding a lock in rank 0's shm region (fault injection,
 *                               see pthread_spin_unlock below) or, on other providers, just dies;
 *                               rank 0 must fail naming it within the timeout
 *   comm_rank_test chain        3 ranks, buffers from pt_comm_buf_alloc: rank 0 sends 48 MiB + 5 B
 *                               messages to rank 2, which sends its own to rank 1, until the
 *                               script kills rank 2; 0 and 1 must fail naming it
 *   comm_rank_test rendezvous   expects the rendezvous to fail naming the missing rank(s)
 *   comm_rank_test freeport     prints a free TCP port
 * Exits 0 on success, 1 on a failed check (printing what and where), 3 for an expected comm
 * error (kill, dead), 2 for bad usage. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/comm.h"
#include "pipetrain/timeutil.h"

#define KIND_SEND_ACT 4
#define KIND_RECV_ACT 5
#define KIND_SEND_GRAD 6
#define KIND_RECV_GRAD 7

static int g_rank = -1;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL rank %d %s:%d: ", g_rank, __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define OK(expr)                                                                          \
    do {                                                                                  \
        pt_status ok_st_ = (expr);                                                        \
        CHECK(ok_st_ == PT_OK, "%s -> %s: %s", #expr, pt_status_name(ok_st_), pt_last_error()); \
    } while (0)

static int64_t g_timeout_ms = 60000;
static int64_t dl(void) { return pt_deadline_after_ms(g_timeout_ms); }

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
}

static void check_fill(const uint8_t *p, size_t n, uint32_t seed, const char *what)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        CHECK(p[i] == (uint8_t)(x >> 24), "%s: byte %zu of %zu is %u, expected %u", what, i, n, p[i],
              (unsigned)(uint8_t)(x >> 24));
    }
}

static pt_comm *open_comm(uint64_t hash)
{
    pt_comm *c;
    pt_comm_opts o = { .provider = NULL, .timeout_ms = 0, .config_hash = hash };
    OK(pt_comm_create(&o, &c));
    g_rank = pt_comm_rank(c);
    g_timeout_ms = pt_comm_timeout_ms(c);
    return c;
}

/* ---------------------------------------------------------------- single */

static int test_single(void)
{
    static const char *vars[] = { "RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS",
                                  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                                  "MASTER_ADDR", "MASTER_PORT", NULL };
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    /* what pt_comm_env_job reads: nothing set = not in a job; a launcher's variables = in one */
    int in_job = -1, er = -1, es = -1;
    OK(pt_comm_env_job(&in_job, &er, &es));
    CHECK(in_job == 0 && er == 0 && es == 1, "alone: in_job %d rank %d size %d", in_job, er, es);
    setenv("RANK", "2", 1);
    setenv("WORLD_SIZE", "4", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "29500", 1);
    OK(pt_comm_env_job(&in_job, &er, &es));
    CHECK(in_job == 1 && er == 2 && es == 4, "launched: in_job %d rank %d size %d", in_job, er, es);
    setenv("WORLD_SIZE", "four", 1);
    CHECK(pt_comm_env_job(&in_job, &er, &es) == PT_EINVAL && strstr(pt_last_error(), "WORLD_SIZE"),
          "malformed WORLD_SIZE accepted (%s)", pt_last_error());
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    pt_comm *c = open_comm(42);
    CHECK(pt_comm_size(c) == 1 && pt_comm_rank(c) == 0, "size %d rank %d", pt_comm_size(c), pt_comm_rank(c));
    CHECK(strcmp(pt_comm_provider(c), "self") == 0, "provider %s", pt_comm_provider(c));
    CHECK(pt_comm_clock_offset_ns(c) == 0, "offset");
    float f[3] = { 1, 2, 3 };
    OK(pt_comm_allreduce(c, NULL, f, 3, PT_REDUCE_MEAN, dl()));
    CHECK(f[0] == 1 && f[1] == 2 && f[2] == 3, "size-1 all-reduce changed data");
    double d = 5;
    OK(pt_comm_allreduce_f64(c, NULL, &d, 1, dl()));
    CHECK(d == 5, "f64");
    OK(pt_comm_broadcast(c, NULL, f, sizeof f, 0, dl()));
    OK(pt_comm_barrier(c, NULL, dl()));
    void *recv;
    size_t *sizes;
    OK(pt_comm_gatherv(c, 0, "abc", 3, &recv, &sizes, dl()));
    CHECK(sizes && sizes[0] == 3 && recv && memcmp(recv, "abc", 3) == 0, "gatherv to self");
    free(recv);
    free(sizes);
    pt_msg_id id = { KIND_SEND_ACT, 0, 0, 0 };
    pt_comm_req *r = NULL;
    CHECK(pt_comm_isend(c, 0, &id, f, 4, &r) == PT_EINVAL && r == NULL, "send to self must be refused");
    CHECK(strstr(pt_last_error(), "peer") != NULL, "message: %s", pt_last_error());
    CHECK(pt_comm_irecv(c, 1, &id, f, 4, &r) == PT_EINVAL, "receive from rank 1 of 1 must be refused");
    CHECK(pt_comm_broadcast(c, NULL, f, 4, 1, dl()) == PT_EINVAL, "root 1 must be refused");
    pt_comm_group *g;
    int bad[2] = { 0, 0 };
    CHECK(pt_comm_group_create(c, bad, 2, &g) == PT_EINVAL, "duplicate member");
    int other[1] = { 1 };
    CHECK(pt_comm_group_create(c, other, 1, &g) == PT_EINVAL, "non-member group");
    int self[1] = { 0 };
    OK(pt_comm_group_create(c, self, 1, &g));
    CHECK(pt_comm_group_size(g) == 1 && pt_comm_group_rank(g) == 0, "group");
    OK(pt_comm_allreduce(c, g, f, 3, PT_REDUCE_SUM, dl()));
    pt_comm_group_destroy(g);
    pt_comm_destroy(c);
    pt_comm_destroy(NULL);

    /* environments that must be refused before any network activity */
    struct { const char *k1, *v1, *k2, *v2, *k3, *v3, *expect; } bad_env[] = {
        { "RANK", "3", "WORLD_SIZE", "2", NULL, NULL, "not below the world size" },
        { "RANK", "1", NULL, NULL, NULL, NULL, "WORLD_SIZE" },
        { "RANK", "x", "WORLD_SIZE", "2", NULL, NULL, "integers" },
        { "RANK", "1", "WORLD_SIZE", "2", "MASTER_PORT", "99999", "MASTER_PORT" },
        { "OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "4", NULL, NULL, "MASTER_ADDR" },
        { "RANK", "0", "WORLD_SIZE", "1", "PT_COMM_TIMEOUT", "-1", "PT_COMM_TIMEOUT" },
    };
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        for (int j = 0; vars[j]; j++)
            unsetenv(vars[j]);
        unsetenv("PT_COMM_TIMEOUT");
        setenv(bad_env[i].k1, bad_env[i].v1, 1);
        if (bad_env[i].k2)
            setenv(bad_env[i].k2, bad_env[i].v2, 1);
        if (bad_env[i].k3)
            setenv(bad_env[i].k3, bad_env[i].v3, 1);
        pt_comm *x = NULL;
        pt_status st = pt_comm_create(NULL, &x);
        CHECK(st == PT_EINVAL && x == NULL, "env case %zu: got %s", i, pt_status_name(st));
        CHECK(strstr(pt_last_error(), bad_env[i].expect), "env case %zu: message '%s' lacks '%s'", i, pt_last_error(),
              bad_env[i].expect);
    }
    printf("single: ok\n");
    return 0;
}

/* ---------------------------------------------------------------- p2p */

static uint32_t seed_of(int src, int dst, int k) { return (uint32_t)(src * 7919 + dst * 104729 + k * 31); }

static void *buf_new(int direct, size_t bytes)
{
    void *p = NULL;
    if (direct)
        OK(pt_comm_buf_alloc(bytes, &p));
    else
        p = malloc(bytes);
    CHECK(p, "oom for %zu", bytes);
    return p;
}

static void buf_del(int direct, void *p)
{
    if (direct)
        pt_comm_buf_free(p);
    else
        free(p);
}

static int test_p2p(size_t max_big, int direct)
{
    pt_comm *c = open_comm(7);
    int me = pt_comm_rank(c), n = pt_comm_size(c);
    static const size_t small[] = { 0, 1, 7, 64, 4096, 4097, 65536, 262147, 1u << 20 };
    enum { N_SMALL = sizeof small / sizeof small[0], REPEAT = 3 };
    /* phase A: with every peer, all sizes x REPEAT outstanding at once, both directions */
    int n_msgs = (n - 1) * N_SMALL * REPEAT;
    uint8_t **sbuf = calloc((size_t)n_msgs, sizeof *sbuf), **rbuf = calloc((size_t)n_msgs, sizeof *rbuf);
    pt_comm_req **reqs = calloc((size_t)(2 * n_msgs), sizeof *reqs);
    CHECK(sbuf && rbuf && reqs, "oom");
    int k = 0;
    for (int peer = 0; peer < n; peer++) {
        if (peer == me)
            continue;
        for (int s = 0; s < N_SMALL; s++)
            for (int rep = 0; rep < REPEAT; rep++, k++) {
                rbuf[k] = buf_new(direct, small[s] + 1);
                pt_msg_id id = { KIND_RECV_ACT, s, rep, 1 };
                OK(pt_comm_irecv(c, peer, &id, rbuf[k], small[s], &reqs[n_msgs + k]));
            }
    }
    k = 0;
    for (int peer = 0; peer < n; peer++) {
        if (peer == me)
            continue;
        for (int s = 0; s < N_SMALL; s++)
            for (int rep = 0; rep < REPEAT; rep++, k++) {
                sbuf[k] = buf_new(direct, small[s] + 1);
                fill(sbuf[k], small[s], seed_of(me, peer, s * REPEAT + rep));
                pt_msg_id id = { KIND_SEND_ACT, s, rep, 1 };
                OK(pt_comm_isend(c, peer, &id, sbuf[k], small[s], &reqs[k]));
            }
    }
    /* complete with a mix of test and wait */
    int left = 2 * n_msgs;
    int64_t until = dl();
    while (left > 0 && pt_now_ns() < until) {
        for (int i = 0; i < 2 * n_msgs; i++) {
            if (!reqs[i])
                continue;
            int done = 0;
            OK(pt_comm_test(c, reqs[i], &done));
            if (done) {
                reqs[i] = NULL;
                left--;
            }
        }
    }
    OK(pt_comm_waitall(c, reqs, 2 * n_msgs, dl()));
    k = 0;
    for (int peer = 0; peer < n; peer++) {
        if (peer == me)
            continue;
        for (int s = 0; s < N_SMALL; s++)
            for (int rep = 0; rep < REPEAT; rep++, k++) {
                char what[96];
                snprintf(what, sizeof what, "%zu B from rank %d (repeat %d)", small[s], peer, rep);
                check_fill(rbuf[k], small[s], seed_of(peer, me, s * REPEAT + rep), what);
                buf_del(direct, rbuf[k]);
                buf_del(direct, sbuf[k]);
            }
    }
    free(sbuf);
    free(rbuf);
    free(reqs);
    /* phase B: big messages around the ring, sent twice from the same buffers (cached registrations) */
    int right = (me + 1) % n, leftp = (me - 1 + n) % n;
    uint64_t direct0 = pt_comm_direct_bytes(c), direct_want = 0;
    for (size_t big0 = 4u << 20; big0 <= max_big; big0 *= 4) {
        /* direct: sizes that are a multiple of nothing, sent from an odd offset in the buffer */
        size_t big = direct ? big0 - 4093 : big0, off = direct ? 3 : 0;
        uint8_t *s0 = buf_new(direct, big + off), *r = buf_new(direct, big);
        uint8_t *s = s0 + off;
        direct_want += 4 * (uint64_t)big;
        for (int rep = 0; rep < 2; rep++) {
            fill(s, big, seed_of(me, right, 1000 + rep));
            memset(r, 0, big);
            pt_msg_id id = { KIND_SEND_GRAD, 7, 1, (int64_t)big + rep }, rid = id;
            rid.kind = KIND_RECV_GRAD;
            pt_comm_req *q[2];
            OK(pt_comm_irecv(c, leftp, &rid, r, big, &q[0]));
            OK(pt_comm_isend(c, right, &id, s, big, &q[1]));
            OK(pt_comm_waitall(c, q, 2, dl()));
            char what[96];
            snprintf(what, sizeof what, "%zu B from rank %d (repeat %d)", big, leftp, rep);
            check_fill(r, big, seed_of(leftp, me, 1000 + rep), what);
        }
        buf_del(direct, s0);
        buf_del(direct, r);
    }
    if (direct) /* every big message went by the direct path, both ways */
        CHECK(pt_comm_direct_bytes(c) - direct0 == direct_want, "direct path carried %llu of the %llu big bytes",
              (unsigned long long)(pt_comm_direct_bytes(c) - direct0), (unsigned long long)direct_want);
    OK(pt_comm_barrier(c, NULL, dl()));
    printf("p2p: ok (%d ranks, provider %s, clock offset %lld ns, %llu bytes by the direct path)\n", n,
           pt_comm_provider(c), (long long)pt_comm_clock_offset_ns(c), (unsigned long long)pt_comm_direct_bytes(c));
    pt_comm_destroy(c);
    return 0;
}

/* ---------------------------------------------------------------- collectives */

static float ival(int rank, size_t i) { return (float)((rank * 31 + (int)(i % 977) * 7) % 1024 - 300); }

static void check_allreduce(pt_comm *c, pt_comm_group *g, const int *members, int p, size_t n)
{
    int me = pt_comm_rank(c);
    float *b = malloc(sizeof(float) * (n ? n : 1));
    double *d = malloc(sizeof(double) * (n ? n : 1));
    CHECK(b && d, "oom");
    for (size_t i = 0; i < n; i++) {
        b[i] = ival(me, i);
        d[i] = (double)ival(me, i) + 0.25 * me;
    }
    OK(pt_comm_allreduce(c, g, b, n, PT_REDUCE_SUM, dl()));
    OK(pt_comm_allreduce_f64(c, g, d, n, dl()));
    for (size_t i = 0; i < n; i++) {
        float want = 0; /* integers below 2^24: exact in any order */
        double wd = 0;
        for (int j = 0; j < p; j++) {
            want += ival(members[j], i);
            wd += (double)ival(members[j], i) + 0.25 * members[j];
        }
        CHECK(b[i] == want, "all-reduce n=%zu group of %d: element %zu is %g, serial sum %g", n, p, i, b[i], want);
        CHECK(d[i] == wd, "f64 all-reduce n=%zu group of %d: element %zu is %g, serial sum %g", n, p, i, d[i], wd);
    }
    for (size_t i = 0; i < n; i++)
        b[i] = ival(me, i);
    OK(pt_comm_allreduce(c, g, b, n, PT_REDUCE_MEAN, dl()));
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int j = 0; j < p; j++)
            want += ival(members[j], i);
        want /= (float)p;
        CHECK(b[i] == want, "mean n=%zu group of %d: element %zu is %g, expected %g", n, p, i, b[i], want);
    }
    free(b);
    free(d);
}

static float fval(int rank, size_t i) { return 1.0f / (float)(i + 1 + (size_t)rank * 3) + 1e-3f * (float)rank; }

/* Reduce-scatter then all-gather: every element is x_0 + x_1 + ... summed left to right in float
 * in group order (non-integer data, so another order would show), the same bits on every member. */
static void check_reduce_scatter(pt_comm *c, pt_comm_group *g, const int *members, int p, size_t n)
{
    int me = pt_comm_rank(c), k = pt_comm_group_rank(g);
    float *b = malloc(sizeof(float) * (n ? n : 1));
    CHECK(b, "oom");
    for (size_t i = 0; i < n; i++)
        b[i] = fval(me, i);
    OK(pt_comm_reduce_scatter(c, g, b, n, dl()));
    size_t lo, hi, covered = 0;
    for (int j = 0; j < p; j++) {
        size_t a, z;
        pt_comm_segment(n, p, j, &a, &z);
        CHECK(a == covered && z >= a, "segment %d of %zu over %d is [%zu, %zu)", j, n, p, a, z);
        covered = z;
    }
    CHECK(covered == n, "the segments of %zu over %d cover %zu", n, p, covered);
    pt_comm_segment(n, p, k, &lo, &hi);
    for (size_t i = 0; i < n; i++) {
        float want = fval(members[0], i);
        for (int j = 1; j < p; j++)
            want += fval(members[j], i);
        if (i >= lo && i < hi)
            CHECK(memcmp(&b[i], &want, sizeof want) == 0,
                  "reduce-scatter n=%zu group of %d: element %zu is %.9g, left-to-right sum %.9g", n, p, i, b[i], want);
        else
            CHECK(b[i] == fval(me, i), "reduce-scatter n=%zu: element %zu outside this member's segment changed", n, i);
    }
    OK(pt_comm_allgather(c, g, b, n, dl()));
    if (n > 3) { /* the same in three uneven ranges, reduce-scattered and gathered one by one */
        float *r = malloc(sizeof(float) * n);
        CHECK(r, "oom");
        for (size_t i = 0; i < n; i++)
            r[i] = fval(me, i);
        size_t cut[4] = { 0, n / 5 + 1, n / 5 + 2, n };
        for (int k = 0; k < 3; k++)
            OK(pt_comm_reduce_scatter_range(c, g, r, n, cut[k], cut[k + 1], dl()));
        for (int k = 2; k >= 0; k--)
            OK(pt_comm_allgather_range(c, g, r, n, cut[k], cut[k + 1], dl()));
        CHECK(memcmp(r, b, sizeof(float) * n) == 0, "reduce-scatter in ranges differs from one call (n=%zu, %d)", n, p);
        CHECK(pt_comm_reduce_scatter_range(c, g, r, n, 2, n + 1, dl()) == PT_EINVAL, "a range past n was taken");
        free(r);
    }
    for (size_t i = 0; i < n; i++) {
        float want = fval(members[0], i);
        for (int j = 1; j < p; j++)
            want += fval(members[j], i);
        CHECK(memcmp(&b[i], &want, sizeof want) == 0, "all-gather n=%zu group of %d: element %zu is %.9g, want %.9g",
              n, p, i, b[i], want);
    }
    free(b);
}

static int test_coll(void)
{
    pt_comm *c = open_comm(9);
    int me = pt_comm_rank(c), n = pt_comm_size(c);
    static const size_t sizes[] = { 1, 7, 4097, 1000000 };
    /* groups: prefixes {0}, {0,1}, ..., all; and the reversed odd/even members (non-contiguous) */
    int members[64];
    for (int p = 1; p <= n; p++) {
        for (int i = 0; i < p; i++)
            members[i] = i;
        if (me >= p)
            continue;
        pt_comm_group *g;
        OK(pt_comm_group_create(c, members, p, &g));
        CHECK(pt_comm_group_rank(g) == me && pt_comm_group_size(g) == p, "group index");
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            check_allreduce(c, g, members, p, sizes[s]);
            check_reduce_scatter(c, g, members, p, sizes[s]);
        }
        if (p == 2) /* segments longer than one 4 MiB piece */
            check_reduce_scatter(c, g, members, p, 2500001);
        pt_comm_group_destroy(g);
    }
    int m = 0;
    for (int i = n - 1; i >= 0; i -= 2)
        members[m++] = i;
    if (me % 2 == (n - 1) % 2) {
        pt_comm_group *g;
        OK(pt_comm_group_create(c, members, m, &g));
        check_allreduce(c, g, members, m, 4097);
        check_reduce_scatter(c, g, members, m, 4097);
        /* broadcast from each member, in the group */
        for (int j = 0; j < m; j++) {
            int root = members[j];
            uint8_t buf[1000];
            if (me == root)
                fill(buf, sizeof buf, (uint32_t)root);
            else
                memset(buf, 0, sizeof buf);
            OK(pt_comm_broadcast(c, g, buf, sizeof buf, root, dl()));
            check_fill(buf, sizeof buf, (uint32_t)root, "group broadcast");
        }
        pt_comm_group_destroy(g);
    }
    /* repeated all-reduce of non-integer data gives the same bits every time and on every rank */
    size_t nr = 100003;
    float *a = malloc(sizeof(float) * nr), *a2 = malloc(sizeof(float) * nr);
    CHECK(a && a2, "oom");
    for (int rep = 0; rep < 2; rep++) {
        float *t = rep ? a2 : a;
        for (size_t i = 0; i < nr; i++)
            t[i] = 1.0f / (float)(i + 1 + (size_t)me * 3) + 1e-3f * (float)me;
        OK(pt_comm_allreduce(c, NULL, t, nr, PT_REDUCE_SUM, dl()));
    }
    CHECK(memcmp(a, a2, sizeof(float) * nr) == 0, "repeated all-reduce differs");
    for (size_t i = 0; i < nr; i += 997) {
        double want = 0;
        for (int j = 0; j < n; j++)
            want += 1.0 / (double)(i + 1 + (size_t)j * 3) + 1e-3 * j;
        CHECK(a[i] > want - 1e-5 * want && a[i] < want + 1e-5 * want, "element %zu: %g vs %g", i, a[i], want);
    }
    void *all;
    size_t *sz;
    OK(pt_comm_gatherv(c, 0, a, sizeof(float) * nr, &all, &sz, dl()));
    if (me == 0)
        for (int j = 0; j < n; j++)
            CHECK(sz[j] == sizeof(float) * nr && memcmp((char *)all + sz[j] * (size_t)j, a, sz[j]) == 0,
                  "rank %d's all-reduce result differs from rank 0's", j);
    if (me == 0) {
        free(all);
        free(sz);
    }
    free(a);
    free(a2);
    /* big broadcast (RMA path) from the last rank to all */
    size_t bb = 3u << 20;
    uint8_t *big = malloc(bb);
    CHECK(big, "oom");
    if (me == n - 1)
        fill(big, bb, 77);
    else
        memset(big, 0, bb);
    OK(pt_comm_broadcast(c, NULL, big, bb, n - 1, dl()));
    check_fill(big, bb, 77, "3 MiB broadcast");
    free(big);
    /* gatherv of different sizes (rank 0 sends none) to the last rank */
    size_t mine = (size_t)me * 1000 + (me ? 3 : 0);
    uint8_t *sb = malloc(mine + 1);
    CHECK(sb, "oom");
    fill(sb, mine, (uint32_t)(500 + me));
    OK(pt_comm_gatherv(c, n - 1, sb, mine, me == n - 1 ? &all : NULL, me == n - 1 ? &sz : NULL, dl()));
    if (me == n - 1) {
        size_t off = 0;
        for (int j = 0; j < n; j++) {
            size_t want = (size_t)j * 1000 + (j ? 3 : 0);
            CHECK(sz[j] == want, "gatherv size of rank %d: %zu, expected %zu", j, sz[j], want);
            check_fill((uint8_t *)all + off, want, (uint32_t)(500 + j), "gatherv");
            off += want;
        }
        free(all);
        free(sz);
    }
    free(sb);
    for (int i = 0; i < 3; i++)
        OK(pt_comm_barrier(c, NULL, dl()));
    printf("coll: ok (%d ranks, provider %s)\n", n, pt_comm_provider(c));
    pt_comm_destroy(c);
    return 0;
}

/* ---------------------------------------------------------------- mismatch */

static void expect_mismatch(pt_status st, const char *what, const char *must1, const char *must2)
{
    CHECK(st == PT_ECOMM, "%s: expected a communication error, got %s (%s)", what, pt_status_name(st),
          pt_last_error());
    CHECK(strstr(pt_last_error(), must1) && strstr(pt_last_error(), must2), "%s: message '%s' lacks '%s' or '%s'",
          what, pt_last_error(), must1, must2);
}

static int test_mismatch(int direct)
{
    pt_comm *c = open_comm(11);
    int me = pt_comm_rank(c);
    CHECK(pt_comm_size(c) == 2, "mismatch runs with 2 ranks");
    int peer = 1 - me;
    struct { size_t sent, expected; int sender_fails; } cases[] = {
        { 100, 200, 0 },               /* tagged, short */
        { 300, 200, 0 },               /* tagged, truncated */
        { 1u << 20, 2u << 20, 1 },     /* RMA both sides */
        { 2u << 20, 1u << 20, 1 },
        { 1u << 20, 1000, 1 },         /* sender RMA, receiver tagged */
        { 1000, 1u << 20, 0 },         /* sender tagged, receiver RMA */
    };
    uint8_t *buf = buf_new(direct, 2u << 20);
    memset(buf, 0, 2u << 20);
    /* large messages take the RMA path only when PT_COMM_RMA_MIN asks for it (<= 1 MiB here), the
     * direct path when they leave from a shared buffer and PT_COMM_DIRECT_MIN is <= 1 MiB */
    const char *rm = getenv("PT_COMM_RMA_MIN"), *dm = getenv("PT_COMM_DIRECT_MIN");
    int rma = rm && strtoull(rm, NULL, 10) > 0 && strtoull(rm, NULL, 10) <= (1u << 20);
    if (direct) {
        CHECK(dm && strtoull(dm, NULL, 10) > 0 && strtoull(dm, NULL, 10) <= (1u << 20),
              "mismatch direct needs PT_COMM_DIRECT_MIN <= 1 MiB");
        rma = 1;
    }
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        cases[i].sender_fails &= rma;
        pt_msg_id id = { KIND_SEND_ACT, 3, 0, i };
        char e1[64], e2[64], what[64];
        snprintf(what, sizeof what, "case %d (%zu B sent, %zu B expected)", i, cases[i].sent, cases[i].expected);
        snprintf(e1, sizeof e1, cases[i].sent > cases[i].expected ? "rank 0 sent" : "sent %zu B", cases[i].sent);
        snprintf(e2, sizeof e2, "expected %zu B", cases[i].expected);
        pt_comm_req *r;
        if (me == 0) {
            OK(pt_comm_isend(c, peer, &id, buf, cases[i].sent, &r));
            pt_status st = pt_comm_wait(c, r, pt_deadline_after_ms(cases[i].sender_fails ? 20000 : 3000));
            if (cases[i].sender_fails) {
                snprintf(e1, sizeof e1, "sends %zu B", cases[i].sent);
                expect_mismatch(st, what, e1, e2);
            } else {
                /* on the tagged path the receiver reports; a provider may also never complete a
                 * send the receiver truncated (shm), which then times out naming the peer */
                CHECK(st == PT_OK || (st == PT_ETIMEDOUT && strstr(pt_last_error(), "rank 1")), "%s: sender: %s",
                      what, pt_last_error());
            }
        } else {
            id.kind = KIND_RECV_ACT;
            OK(pt_comm_irecv(c, peer, &id, buf, cases[i].expected, &r));
            expect_mismatch(pt_comm_wait(c, r, pt_deadline_after_ms(20000)), what, e1, e2);
            CHECK(strstr(pt_last_error(), "RECV_ACT mb 3"), "message names the message: %s", pt_last_error());
        }
        fprintf(stderr, "rank %d: %s: ok\n", me, what);
        OK(pt_comm_barrier(c, NULL, dl()));
    }
    /* the endpoint still works afterwards */
    fill(buf, 5000, 3);
    pt_msg_id id = { KIND_SEND_ACT, 9, 0, 0 };
    pt_comm_req *r;
    if (me == 0)
        OK(pt_comm_isend(c, 1, &id, buf, 5000, &r));
    else
        OK(pt_comm_irecv(c, 0, &id, buf, 5000, &r));
    OK(pt_comm_wait(c, r, dl()));
    check_fill(buf, 5000, 3, "after mismatches");
    if (direct) { /* and the direct path too: 1 MiB + 1 */
        size_t big = (1u << 20) + 1;
        fill(buf, big, 4);
        id.microbatch = 10;
        if (me == 0)
            OK(pt_comm_isend(c, 1, &id, buf, big, &r));
        else
            OK(pt_comm_irecv(c, 0, &id, buf, big, &r));
        OK(pt_comm_wait(c, r, dl()));
        check_fill(buf, big, 4, "direct after mismatches");
        CHECK(pt_comm_direct_bytes(c) >= big, "the last message did not go by the direct path");
    }
    buf_del(direct, buf);
    OK(pt_comm_barrier(c, NULL, dl()));
    printf("mismatch: ok\n");
    pt_comm_destroy(c);
    return 0;
}

/* ---------------------------------------------------------------- failures */

static int test_hash(void)
{
    const char *r = getenv("RANK");
    pt_comm *c = NULL;
    pt_comm_opts o = { .config_hash = (uint64_t)(r ? atoi(r) : 0) + 100 };
    pt_status st = pt_comm_create(&o, &c);
    CHECK(st != PT_OK && c == NULL, "ranks with different config hashes were accepted");
    CHECK(strstr(pt_last_error(), "configuration hash") && strstr(pt_last_error(), "rank 0"),
          "message '%s' should name the hashes and both ranks", pt_last_error());
    printf("hash: refused: %s\n", pt_last_error());
    return 0;
}

static int test_rendezvous(void)
{
    pt_comm *c = NULL;
    pt_status st = pt_comm_create(NULL, &c);
    CHECK(st != PT_OK && c == NULL, "rendezvous succeeded without every rank");
    const char *want = getenv("EXPECT_MISSING");
    CHECK(want && strstr(pt_last_error(), want), "message '%s' should contain '%s'", pt_last_error(),
          want ? want : "(EXPECT_MISSING unset)");
    printf("rendezvous: failed as expected: %s\n", pt_last_error());
    return 0;
}

static int test_kill(void)
{
    pt_comm *c = open_comm(13);
    int me = pt_comm_rank(c);
    CHECK(pt_comm_size(c) == 3, "kill runs with 3 ranks");
    size_t big = 32u << 20;
    uint8_t *buf = calloc(big, 1);
    CHECK(buf, "oom");
    OK(pt_comm_barrier(c, NULL, dl()));
    pt_msg_id id = { KIND_SEND_ACT, 1, 0, 5 };
    pt_comm_req *r;
    if (me == 2) {
        /* start a large send to rank 0 (waits for its ready-to-receive), then die */
        OK(pt_comm_isend(c, 0, &id, buf, big, &r));
        int done = 0;
        OK(pt_comm_test(c, r, &done));
        fprintf(stderr, "rank 2: dying now\n");
        raise(SIGKILL);
    }
    /* 0 receives the big message from 2; 1 waits for a small one from 2. The wait ends on the death
     * (shm: the same-host peer watch) or, over tcp, at KILL_WAIT_S (default: the comm timeout):
     * the start-up keeps PT_COMM_TIMEOUT, so a loaded machine's slow rendezvous is no failure. */
    id.kind = KIND_RECV_ACT;
    int64_t wait_ms = getenv("KILL_WAIT_S") ? (int64_t)(atof(getenv("KILL_WAIT_S")) * 1000) : pt_comm_timeout_ms(c);
    int64_t t0 = pt_now_ns();
    pt_status st = pt_comm_irecv(c, 2, &id, buf, me == 0 ? big : 64, &r); /* may already see the dead peer */
    if (st == PT_OK)
        st = pt_comm_wait(c, r, pt_deadline_after_ms(wait_ms));
    if (st == PT_OK) { /* the big message got out before rank 2 died; the next one never will */
        id.microbatch = 2;
        st = pt_comm_irecv(c, 2, &id, buf, 64, &r);
        if (st == PT_OK)
            st = pt_comm_wait(c, r, pt_deadline_after_ms(wait_ms));
    }
    CHECK(st != PT_OK, "receive from a dead rank succeeded");
    CHECK(strstr(pt_last_error(), "rank 2"), "error '%s' should name rank 2", pt_last_error());
    fprintf(stderr, "rank %d: error after %.1f s: %s\n", me, pt_seconds_between(t0, pt_now_ns()), pt_last_error());
    pt_comm_destroy(c);
    free(buf);
    return 3;
}

/* ---------------------------------------------------------------- second death */

/* Rank 2 dies; rank 1 sees it and ends too (as its launcher stops a node's ranks after one died);
 * rank 0, which saw rank 2 die first, then waits for a message of rank 1 with a deadline of a
 * minute: the wait must end on rank 1's exit, naming it, not at the deadline. */
static int test_second_death(void)
{
    pt_comm *c = open_comm(23);
    int me = pt_comm_rank(c);
    CHECK(pt_comm_size(c) == 3, "second runs with 3 ranks");
    uint8_t buf[64];
    OK(pt_comm_barrier(c, NULL, dl()));
    if (me == 2) {
        fprintf(stderr, "rank 2: dying now\n");
        raise(SIGKILL);
    }
    pt_msg_id id = { KIND_RECV_ACT, 1, 0, 5 };
    pt_comm_req *r;
    pt_status st = pt_comm_irecv(c, 2, &id, buf, sizeof buf, &r);
    if (st == PT_OK)
        st = pt_comm_wait(c, r, pt_deadline_after_ms(pt_comm_timeout_ms(c)));
    CHECK(st != PT_OK && strstr(pt_last_error(), "rank 2"), "rank %d: the wait on dead rank 2 did not fail naming it",
          me);
    if (me == 1) {
        fprintf(stderr, "rank 1: saw rank 2 die; ending\n");
        _exit(4);
    }
    id.microbatch = 2;
    int64_t t0 = pt_now_ns();
    st = pt_comm_irecv(c, 1, &id, buf, sizeof buf, &r);
    if (st == PT_OK)
        st = pt_comm_wait(c, r, pt_deadline_after_ms(60000));
    CHECK(st != PT_OK, "a receive from rank 1, which exited, succeeded");
    /* "rank 1 (same host) exited ..., after rank 2 had exited", or, when the watch saw rank 1 end
     * first, "rank 1 (pid P, same host) exited ...": either way not the deadline's "no message" */
    CHECK(strstr(pt_last_error(), "rank 1 (") && strstr(pt_last_error(), "exited while rank 0 waited"),
          "error '%s' should say rank 1 exited", pt_last_error());
    fprintf(stderr, "rank 0: error after %.1f s: %s\n", pt_seconds_between(t0, pt_now_ns()), pt_last_error());
    pt_comm_destroy(c);
    return 3;
}

/* ---------------------------------------------------------------- chain (killed mid direct transfer) */

/* Rank 0 sends to rank 2, rank 2 sends to rank 1, 48 MiB + 5 B at a time from shared buffers, until
 * the script kills rank 2 (most likely in the middle of a copy: copies are most of the time). Rank
 * 0 then waits for 2's finished message, rank 1 for 2's next announce; both must fail naming rank 2
 * (they never talk to each other, so nothing else can be named). */
static int test_chain(void)
{
    pt_comm *c = open_comm(19);
    int me = pt_comm_rank(c);
    CHECK(pt_comm_size(c) == 3, "chain runs with 3 ranks");
    size_t big = (48u << 20) + 5;
    uint8_t *buf = buf_new(1, big);
    fill(buf, big, (uint32_t)(900 + me));
    OK(pt_comm_barrier(c, NULL, dl()));
    int64_t t0 = pt_now_ns();
    pt_status st = PT_OK;
    long i;
    for (i = 0; st == PT_OK; i++) {
        pt_msg_id sid = { KIND_SEND_ACT, 1, 0, i & 0x7fffff }, rid = { KIND_RECV_ACT, 1, 0, i & 0x7fffff };
        pt_comm_req *r[2] = { NULL, NULL };
        int64_t d = pt_deadline_after_ms(pt_comm_timeout_ms(c));
        if (me == 0) {
            st = pt_comm_isend(c, 2, &sid, buf, big, &r[0]);
        } else if (me == 1) {
            st = pt_comm_irecv(c, 2, &rid, buf, big, &r[0]);
        } else {
            uint8_t *in = buf_new(1, big); /* fresh each time: unmapped segments, new descriptors */
            st = pt_comm_irecv(c, 0, &rid, in, big, &r[0]);
            if (st == PT_OK)
                st = pt_comm_isend(c, 1, &sid, buf, big, &r[1]);
            if (st == PT_OK)
                st = pt_comm_waitall(c, r, 2, d);
            if (st == PT_OK && i < 2)
                check_fill(in, big, 900, "chain: from rank 0");
            buf_del(1, in);
            if (i == 1) {
                fprintf(stderr, "rank 2: looping\n");
                fflush(stderr);
            }
            continue;
        }
        if (st == PT_OK)
            st = pt_comm_wait(c, r[0], d);
        if (st == PT_OK && me == 1 && i < 2)
            check_fill(buf, big, 902, "chain: from rank 2");
    }
    CHECK(me != 2, "rank 2: failed before it was killed: %s", pt_last_error());
    CHECK(strstr(pt_last_error(), "rank 2"), "error '%s' should name rank 2", pt_last_error());
    CHECK(pt_comm_direct_bytes(c) >= big, "rank %d: nothing went by the direct path", me);
    fprintf(stderr, "rank %d: error after %ld transfers (%llu bytes direct), %.1f s: %s\n", me, i,
            (unsigned long long)pt_comm_direct_bytes(c), pt_seconds_between(t0, pt_now_ns()), pt_last_error());
    pt_comm_destroy(c);
    buf_del(1, buf);
    return 3;
}

/* ---------------------------------------------------------------- dead (fault injection) */

/* Fault injection for `dead`: this program's pthread_spin_unlock stands in for glibc's in
 * libfabric (the executable's definition comes first in symbol lookup). Once armed, the first
 * release of a lock that lies inside another rank's shared-memory region (a mapping of
 * /dev/shm/pipetrain-* not named after our pid) does not happen: the process dies by SIGKILL
 * holding it, its update to that region done. The survivor's shm provider then spins on that
 * lock inside fi_cq_read forever, so pipetrain must notice the death before entering it. */
static int g_die_in_lock;
static uintptr_t g_peer_lo, g_peer_hi; /* the other rank's region, from /proc/self/maps */

int pthread_spin_unlock(pthread_spinlock_t *l)
{
    static int (*real)(pthread_spinlock_t *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_spin_unlock");
    if (g_die_in_lock && (uintptr_t)l >= g_peer_lo && (uintptr_t)l < g_peer_hi) {
        static const char msg[] = "rank 1: dying while holding a lock in rank 0's shm region\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        raise(SIGKILL);
    }
    return real(l);
}

/* Finds the other rank's shm region among this process's mappings; 0 when there is none
 * (another provider). */
static int find_peer_region(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return 0;
    char line[512], mine[64];
    snprintf(mine, sizeof mine, "/pipetrain-%d-", (int)getpid());
    unsigned long lo, hi;
    while (fgets(line, sizeof line, f)) {
        char *name = strstr(line, "/dev/shm/pipetrain-");
        if (!name || strstr(line, mine) || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        if (!g_peer_lo || lo < g_peer_lo)
            g_peer_lo = lo;
        if (hi > g_peer_hi)
            g_peer_hi = hi;
    }
    fclose(f);
    return g_peer_lo != 0;
}

/* 2 ranks exchange messages of 8 B .. 1 MiB both ways; after `after` exchanges rank 1 dies
 * (holding rank 0's shm lock where there is one); rank 0 must fail naming rank 1. */
static int test_dead(long after)
{
    pt_comm *c = open_comm(17);
    int me = pt_comm_rank(c), peer = 1 - me;
    CHECK(pt_comm_size(c) == 2, "dead runs with 2 ranks");
    static const size_t sizes[] = { 8, 4096, 65536, 1u << 20 };
    uint8_t *sbuf = calloc(1u << 20, 1), *rbuf = calloc(1u << 20, 1);
    CHECK(sbuf && rbuf, "oom");
    OK(pt_comm_barrier(c, NULL, dl()));
    int64_t t0 = pt_now_ns();
    pt_status st = PT_OK;
    long i;
    for (i = 0; st == PT_OK && i < 1000000; i++) {
        if (me == 1 && i == after) {
            if (!find_peer_region()) {
                fprintf(stderr, "rank 1: no shm region of rank 0 mapped (provider %s): dying now\n",
                        pt_comm_provider(c));
                raise(SIGKILL);
            }
            g_die_in_lock = 1;
        }
        size_t n = sizes[i % 4];
        pt_msg_id sid = { KIND_SEND_ACT, (int)(i & 0xffff), 0, i & 0x7fffff };
        pt_msg_id rid = { KIND_RECV_ACT, (int)(i & 0xffff), 0, i & 0x7fffff };
        pt_comm_req *r[2] = { NULL, NULL };
        st = pt_comm_irecv(c, peer, &rid, rbuf, n, &r[0]);
        if (st == PT_OK)
            st = pt_comm_isend(c, peer, &sid, sbuf, n, &r[1]);
        if (st == PT_OK)
            st = pt_comm_waitall(c, r, 2, pt_deadline_after_ms(pt_comm_timeout_ms(c)));
        else if (r[0])
            pt_comm_waitall(c, r, 1, pt_now_ns());
    }
    CHECK(me == 0, "rank 1: still alive after %ld exchanges (%s)", i, pt_last_error());
    CHECK(st != PT_OK, "rank 0: %ld exchanges with a rank that should have died succeeded", i);
    CHECK(strstr(pt_last_error(), "rank 1"), "error '%s' should name rank 1", pt_last_error());
    fprintf(stderr, "rank 0: error after %ld exchanges, %.1f s: %s\n", i, pt_seconds_between(t0, pt_now_ns()),
            pt_last_error());
    pt_comm_destroy(c);
    free(sbuf);
    free(rbuf);
    return 3;
}

/* Prints a TCP port that was free a moment ago (for the scripts' rendezvous). */
static int print_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &sl) == 0, "cannot find a free port");
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

/* ---------------------------------------------------------------- last message before a normal exit */

/* Rank 1 sends one message and exits normally; rank 0 posts its receive only after rank 1 is gone
 * (as the end of a profile gather can). The message was delivered, so the receive must get it, not
 * fail because its sender has exited. */
static int test_last_message(void)
{
    pt_comm *c = open_comm(7);
    CHECK(pt_comm_size(c) == 2, "needs 2 ranks");
    uint8_t buf[4096];
    pt_msg_id id = { KIND_SEND_ACT, 1, 0, 3 };
    pt_comm_req *r = NULL;
    if (g_rank == 1) {
        fill(buf, sizeof buf, 99);
        OK(pt_comm_isend(c, 0, &id, buf, sizeof buf, &r));
        OK(pt_comm_wait(c, r, dl()));
        fflush(stdout);
        _exit(0); /* normally, without saying goodbye */
    }
    usleep(300 * 1000); /* rank 1 has exited by now (its send completed before it did), and the
                           same-host peer watch has seen it go */
    memset(buf, 0, sizeof buf);
    OK(pt_comm_irecv(c, 1, &id, buf, sizeof buf, &r));
    OK(pt_comm_wait(c, r, dl()));
    check_fill(buf, sizeof buf, 99, "the last message of an exited rank");
    printf("rank 0 received the last message of rank 1 after it exited\n");
    pt_comm_destroy(c); /* closes the endpoint: its /dev/shm region goes */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: comm_rank_test single|p2p [MAX [direct]]|coll|mismatch [direct]|hash|kill|chain|dead [N]|rendezvous\n");
        return 2;
    }
    const char *r = getenv("RANK");
    g_rank = r ? atoi(r) : 0;
    if (strcmp(argv[1], "single") == 0)
        return test_single();
    if (strcmp(argv[1], "freeport") == 0)
        return print_free_port();
    int direct = argc > 3 && strcmp(argv[3], "direct") == 0;
    if (strcmp(argv[1], "p2p") == 0)
        return test_p2p(argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : (64u << 20), direct);
    if (strcmp(argv[1], "chain") == 0)
        return test_chain();
    if (strcmp(argv[1], "coll") == 0)
        return test_coll();
    if (strcmp(argv[1], "mismatch") == 0)
        return test_mismatch(argc > 2 && strcmp(argv[2], "direct") == 0);
    if (strcmp(argv[1], "hash") == 0)
        return test_hash();
    if (strcmp(argv[1], "kill") == 0)
        return test_kill();
    if (strcmp(argv[1], "second") == 0)
        return test_second_death();
    if (strcmp(argv[1], "dead") == 0)
        return test_dead(argc > 2 ? atol(argv[2]) : 20);
    if (strcmp(argv[1], "last") == 0)
        return test_last_message();
    if (strcmp(argv[1], "rendezvous") == 0)
        return test_rendezvous();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
