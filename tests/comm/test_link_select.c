/* tests/comm/test_link_select.c — the link table and its selection (pipetrain/link.h): the
 * built-in kinds' rules on made-up rank identities (host memory / host-staged / NCCL; no device
 * needed, every build answers alike), the per-pair walk, and the walk itself on a made-up table
 * (order, first yes wins, refusal reasons, every pair of the job). */
#include <stdio.h>
#include <string.h>

#include "pipetrain/link.h"

static int n_fail;

static pt_link_peer gpu(int rank, const char *host, int device, unsigned char tag)
{
    pt_link_peer g;
    memset(&g, 0, sizeof g);
    g.rank = rank;
    g.device_memory = 1;
    g.nccl = PT_LINK_NCCL_OK;
    memset(g.uuid, tag, sizeof g.uuid);
    g.device = device;
    snprintf(g.host, sizeof g.host, "%s", host);
    return g;
}

static pt_link_peer cpu(int rank)
{
    pt_link_peer g;
    memset(&g, 0, sizeof g);
    g.rank = rank;
    g.nccl = PT_LINK_NCCL_OK;
    snprintf(g.host, sizeof g.host, "a");
    return g;
}

static const pt_link_kind *const *g_kinds;
static int g_n_kinds;

static const char *kind_name(const pt_link_kind *const *ks, int k) { return k < 0 ? "none" : ks[k]->name; }

static void check(const char *name, int ok, const char *got, const char *why, const char *want, const char *why_has)
{
    printf("%s %s: %s (%s)\n", ok ? "ok  " : "FAIL", name, got, why);
    if (!ok) {
        printf("     want %s%s%s\n", want, why_has ? " with a reason containing " : "", why_has ? why_has : "");
        n_fail++;
    }
}

/* The job's selection over the built-in table. */
static void expect(const char *name, const pt_link_peer *ids, int n, const char *want, const char *why_has)
{
    char why[256] = "";
    int k = pt_link_select(g_kinds, g_n_kinds, ids, n, why, sizeof why);
    const char *got = kind_name(g_kinds, k);
    check(name, strcmp(got, want) == 0 && (why_has == NULL || strstr(why, why_has) != NULL), got, why, want, why_has);
}

static void expect_pair(const char *name, const pt_link_peer *a, const pt_link_peer *b, const char *want,
                        const char *why_has)
{
    char why[256] = "";
    int k = pt_link_kind_for_pair(g_kinds, g_n_kinds, a, b, why, sizeof why);
    const char *got = kind_name(g_kinds, k);
    check(name, strcmp(got, want) == 0 && (why_has == NULL || strstr(why, why_has) != NULL), got, why, want, why_has);
}

/* ---- a made-up table for the walk: kinds that accept by rank parity ---- */

static int n_calls;

/* "even": both ranks even; refuses with a reason naming the pair. */
static int even_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    n_calls++;
    if (a->rank % 2 == 0 && b->rank % 2 == 0)
        return 1;
    snprintf(why, cap, "ranks %d and %d are not both even", a->rank, b->rank);
    return 0;
}

/* "quiet": refuses everything without a reason (a kind for another kind of memory). */
static int quiet_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    (void)a, (void)b, (void)why, (void)cap;
    n_calls++;
    return 0;
}

/* "any": accepts everything. */
static int any_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    (void)a, (void)b, (void)why, (void)cap;
    n_calls++;
    return 1;
}

static const pt_link_kind k_quiet = { .name = "quiet", .can_connect = quiet_can_connect, .why_all = "quiet says so" };
static const pt_link_kind k_even = { .name = "even", .can_connect = even_can_connect, .why_all = "all even" };
static const pt_link_kind k_any = { .name = "any", .can_connect = any_can_connect, .why_all = "anything goes" };

static void expect_walk(const char *name, const pt_link_kind *const *ks, int nk, const pt_link_peer *ids, int n,
                        const char *want, const char *why_want)
{
    char why[256] = "";
    int k = pt_link_select(ks, nk, ids, n, why, sizeof why);
    const char *got = kind_name(ks, k);
    check(name, strcmp(got, want) == 0 && strcmp(why, why_want) == 0, got, why, want, why_want);
}

int main(void)
{
    g_kinds = pt_link_kinds(&g_n_kinds);
    /* The built-in order: host memory, then NCCL, then host staging. */
    if (g_n_kinds != 3 || strcmp(g_kinds[0]->name, "host memory") != 0 || strcmp(g_kinds[1]->name, "nccl") != 0 ||
        strcmp(g_kinds[2]->name, "host-staged") != 0) {
        printf("FAIL the built-in table is not host memory, nccl, host-staged\n");
        n_fail++;
    }
    pt_link_peer own[4] = { gpu(0, "a", 0, 1), gpu(1, "a", 1, 2), gpu(2, "b", 0, 3), gpu(3, "b", 1, 4) };
    /* ranks 1 and 3 on the same GPU (two stages on one device of host a) */
    pt_link_peer shared[4] = { gpu(0, "a", 0, 1), gpu(1, "a", 1, 2), gpu(2, "a", 2, 3), gpu(3, "a", 1, 2) };
    /* the same device ordinal on two hosts is two GPUs */
    pt_link_peer two_hosts[2] = { gpu(0, "a", 0, 1), gpu(1, "b", 0, 2) };
    pt_link_peer one_gpu[2] = { gpu(0, "a", 0, 7), gpu(1, "a", 0, 7) };
    /* rank 2 was started with PT_NCCL=0: nobody may use NCCL (every rank must take the same kind) */
    pt_link_peer one_off[4] = { gpu(0, "a", 0, 1), gpu(1, "a", 1, 2), gpu(2, "b", 0, 3), gpu(3, "b", 1, 4) };
    one_off[2].nccl = PT_LINK_NCCL_OFF;
    /* rank 3's build has no NCCL */
    pt_link_peer one_unbuilt[4] = { gpu(0, "a", 0, 1), gpu(1, "a", 1, 2), gpu(2, "b", 0, 3), gpu(3, "b", 1, 4) };
    one_unbuilt[3].nccl = PT_LINK_NCCL_NOT_BUILT;
    /* no NCCL anywhere (a build without it), and NCCL off everywhere */
    pt_link_peer unbuilt[4], off[4];
    for (int i = 0; i < 4; i++) {
        unbuilt[i] = own[i];
        unbuilt[i].nccl = PT_LINK_NCCL_NOT_BUILT;
        off[i] = own[i];
        off[i].nccl = PT_LINK_NCCL_OFF;
    }
    pt_link_peer cpus[4] = { cpu(0), cpu(1), cpu(2), cpu(3) };
    /* a GPU list on host-memory ranks is ignored */
    pt_link_peer cpus_gpu[4];
    for (int i = 0; i < 4; i++) {
        cpus_gpu[i] = own[i];
        cpus_gpu[i].device_memory = 0;
    }
    pt_link_peer mixed[2] = { cpu(0), gpu(1, "a", 0, 1) };

    expect("cpu backend", cpus, 4, "host memory", "host memory");
    expect("cpu backend, GPU list ignored", cpus_gpu, 4, "host memory", NULL);
    expect("own GPUs", own, 4, "nccl", "own GPU");
    expect("same ordinal on two hosts", two_hosts, 2, "nccl", NULL);
    expect("two ranks share a GPU", shared, 4, "host-staged", "ranks 1 and 3 share GPU 1 on a");
    expect("one GPU machine", one_gpu, 2, "host-staged", "ranks 0 and 1 share GPU 0");
    expect("no NCCL in the build", unbuilt, 4, "host-staged", "no NCCL");
    expect("PT_NCCL=0", off, 4, "host-staged", "PT_NCCL=0");
    expect("a rank without NCCL (PT_NCCL=0 there)", one_off, 4, "host-staged", "rank 2 cannot use NCCL");
    expect("a rank built without NCCL", one_unbuilt, 4, "host-staged", "rank 3 cannot use NCCL");
    expect("one rank: nothing travels", own, 1, "none", "one rank");
    expect("no list", NULL, 4, "none", "no list");
    expect("host and device memory mixed", mixed, 2, "none", "rank 1 computes in device memory but rank 0");
    /* a NULL reason buffer is allowed */
    if (pt_link_select(g_kinds, g_n_kinds, own, 4, NULL, 0) != 1) {
        printf("FAIL NULL reason buffer\n");
        n_fail++;
    }

    /* The per-pair walk: the first kind that connects the two. */
    expect_pair("pair on two GPUs", &own[0], &own[1], "nccl", "own GPU");
    expect_pair("pair on one GPU", &shared[1], &shared[3], "host-staged", "ranks 1 and 3 share GPU 1");
    expect_pair("pair on one GPU, order of the arguments", &shared[3], &shared[1], "host-staged",
                "ranks 1 and 3 share GPU 1");
    expect_pair("pair that does not share, in a job that does", &shared[0], &shared[1], "nccl", NULL);
    expect_pair("pair of host-memory ranks", &cpus[0], &cpus[3], "host memory", "host memory");

    /* The walk on a made-up table. */
    pt_link_peer r[4] = { cpu(0), cpu(1), cpu(2), cpu(3) };
    pt_link_peer evens[2] = { cpu(0), cpu(2) };
    const pt_link_kind *t1[] = { &k_quiet, &k_even, &k_any };
    expect_walk("first yes wins", t1, 3, evens, 2, "even", "all even");
    expect_walk("a refusal with a reason is the reason", t1, 3, r, 4, "any", "ranks 0 and 1 are not both even");
    const pt_link_kind *t2[] = { &k_any, &k_even };
    expect_walk("order is preference", t2, 2, evens, 2, "any", "anything goes");
    const pt_link_kind *t3[] = { &k_quiet, &k_even };
    expect_walk("no kind connects every pair", t3, 2, r, 4, "none", "ranks 0 and 1 are not both even");
    /* Every pair counts, not only neighbours: ranks 0, 2 even, rank 3 odd is refused at (0,3). */
    pt_link_peer late[3] = { cpu(0), cpu(2), cpu(3) };
    late[2].rank = 3;
    expect_walk("a late pair refuses", t1, 3, late, 3, "any", "ranks 0 and 3 are not both even");
    n_calls = 0;
    pt_link_peer six[6] = { cpu(0), cpu(2), cpu(4), cpu(6), cpu(8), cpu(10) };
    for (int i = 0; i < 6; i++)
        six[i].rank = 2 * i;
    const pt_link_kind *t4[] = { &k_even };
    expect_walk("six even ranks", t4, 1, six, 6, "even", "all even");
    if (n_calls != 15) {
        printf("FAIL the walk asked %d pairs of 6 ranks, want 15\n", n_calls);
        n_fail++;
    }
    printf("%s\n", n_fail ? "FAILED" : "all passed");
    return n_fail != 0;
}
