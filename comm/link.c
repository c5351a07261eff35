/* comm/link.c — the link table, the rules of its kinds, the selection, and pt_link (link.h).
 *
 * The rules (each kind's can_connect) are pure functions of exchanged identities and compiled in
 * every build, so that every rank, whatever its build, answers them the same way. A kind's
 * transfer code (its pt_link_ops) is compiled only where it can work: comm/CMakeLists.txt
 * decides, and the registration below is the one place that says which ops this build has. */
#include "pipetrain/link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "link_internal.h"
#include "pipetrain/timeutil.h"

/* ---- the rules ---- */

static void why_set(char *why, size_t cap, const char *s)
{
    if (why != NULL && cap > 0)
        snprintf(why, cap, "%s", s);
}

/* Host memory: both ranks' backends compute in host memory, which pt_comm moves as it is. */
static int host_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    why_set(why, cap, "");
    return !a->device_memory && !b->device_memory;
}

/* NCCL: device memory on both ranks, NCCL usable on both, and two different GPUs (NCCL refuses
 * two ranks of one communicator on one GPU). */
static int nccl_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    why_set(why, cap, "");
    if (!a->device_memory || !b->device_memory)
        return 0;
    const pt_link_peer *r[2] = { a, b };
    for (int k = 0; k < 2; k++) {
        if (r[k]->nccl == PT_LINK_NCCL_OK)
            continue;
        if (why != NULL && cap > 0)
            snprintf(why, cap, "rank %d cannot use NCCL: %s", r[k]->rank,
                     r[k]->nccl == PT_LINK_NCCL_OFF ? "NCCL turned off by PT_NCCL=0 there" : "its build has no NCCL");
        return 0;
    }
    if (a->rank != b->rank && memcmp(a->uuid, b->uuid, sizeof a->uuid) == 0) {
        const pt_link_peer *lo = a->rank < b->rank ? a : b, *hi = a->rank < b->rank ? b : a;
        if (why != NULL && cap > 0)
            snprintf(why, cap, "ranks %d and %d share GPU %d on %.63s; NCCL needs one GPU per rank", lo->rank,
                     hi->rank, lo->device, lo->host);
        return 0;
    }
    return 1;
}

/* Host-staged: device memory on both ranks; nothing else is needed (pt_comm carries the bytes). */
static int staged_can_connect(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap)
{
    why_set(why, cap, "");
    if (a->device_memory && b->device_memory)
        return 1;
    if (a->device_memory != b->device_memory && why != NULL && cap > 0) {
        const pt_link_peer *dev = a->device_memory ? a : b, *host = a->device_memory ? b : a;
        snprintf(why, cap, "rank %d computes in device memory but rank %d in host memory; use one backend on every rank",
                 dev->rank, host->rank);
    }
    return 0;
}

/* ---- the registration point: which kinds' transfer code this build has ---- */

#ifdef PT_LINK_HAVE_CUDA
#define PT_LINK_STAGED_OPS (&pt_link_staged_ops)
#else
#define PT_LINK_STAGED_OPS NULL
#endif
#ifdef PT_LINK_HAVE_NCCL
#define PT_LINK_NCCL_OPS (&pt_link_nccl_ops)
#else
#define PT_LINK_NCCL_OPS NULL
#endif

static const pt_link_kind kind_host = { .name = "host memory", .can_connect = host_can_connect,
                                        .why_all = "the backend computes in host memory", .ops = &pt_link_host_ops };
static const pt_link_kind kind_nccl = { .name = "nccl", .can_connect = nccl_can_connect,
                                        .why_all = "every rank has its own GPU", .ops = PT_LINK_NCCL_OPS };
static const pt_link_kind kind_staged = { .name = "host-staged", .can_connect = staged_can_connect,
                                          .why_all = "device memory through pinned host buffers",
                                          .ops = PT_LINK_STAGED_OPS };

/* The order is the preference: host memory needs no copies; NCCL moves device memory directly;
 * host staging works for any two device-memory ranks. A new kind goes before the first kind it
 * should be preferred to (docs/transports.md). */
static const pt_link_kind *const kinds[] = { &kind_host, &kind_nccl, &kind_staged };

const pt_link_kind *const *pt_link_kinds(int *n)
{
    *n = (int)(sizeof kinds / sizeof kinds[0]);
    return kinds;
}

/* ---- selection ---- */

int pt_link_kind_for_pair(const pt_link_kind *const *ks, int n_kinds, const pt_link_peer *a, const pt_link_peer *b,
                          char *why, size_t cap)
{
    char first[256] = "", buf[256];
    for (int k = 0; k < n_kinds; k++) {
        buf[0] = '\0';
        if (ks[k]->can_connect(a, b, buf, sizeof buf)) {
            why_set(why, cap, first[0] ? first : ks[k]->why_all);
            return k;
        }
        if (!first[0] && buf[0])
            snprintf(first, sizeof first, "%s", buf);
    }
    why_set(why, cap, first[0] ? first : "no link kind connects them");
    return -1;
}

int pt_link_select(const pt_link_kind *const *ks, int n_kinds, const pt_link_peer *ids, int n, char *why, size_t cap)
{
    if (n < 2) {
        why_set(why, cap, "one rank: nothing travels between ranks");
        return -1;
    }
    if (ids == NULL) {
        why_set(why, cap, "no list of the ranks' identities");
        return -1;
    }
    char first[256] = "", buf[256];
    for (int k = 0; k < n_kinds; k++) {
        int ok = 1;
        for (int j = 1; j < n && ok; j++)
            for (int i = 0; i < j && ok; i++) {
                buf[0] = '\0';
                if (!ks[k]->can_connect(&ids[i], &ids[j], buf, sizeof buf)) {
                    ok = 0;
                    if (!first[0] && buf[0])
                        snprintf(first, sizeof first, "%s", buf);
                }
            }
        if (ok) {
            why_set(why, cap, first[0] ? first : ks[k]->why_all);
            return k;
        }
    }
    why_set(why, cap, first[0] ? first : "no link kind connects every pair of ranks");
    return -1;
}

/* ---- pt_link ---- */

struct pt_link {
    const pt_link_kind *kind;
    const pt_link_ops *ops;
    void *st;
    char desc[512];
    size_t msg_bytes;
    int n_send, n_recv_ids;
    int me;
};

/* Every rank's identity, gathered to rank 0 and broadcast, in world rank order. */
static pt_status link_exchange(pt_comm *c, const pt_link_peer *mine, int64_t timeout_ms, pt_link_peer **out)
{
    *out = NULL;
    int n = pt_comm_size(c), me = pt_comm_rank(c);
    pt_link_peer *all = calloc((size_t)n, sizeof *all);
    if (all == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the ranks' identities");
    void *recv = NULL;
    size_t *sizes = NULL;
    pt_status st = pt_comm_gatherv(c, 0, mine, sizeof *mine, &recv, &sizes, pt_deadline_after_ms(timeout_ms));
    if (st == PT_OK && me == 0) {
        for (int r = 0; r < n && st == PT_OK; r++)
            if (sizes[r] != sizeof *mine)
                st = pt_fail(PT_EINVAL, "rank %d sent a %zu-byte identity, expected %zu; run the same pipetrain "
                                        "build on every rank",
                             r, sizes[r], sizeof *mine);
        if (st == PT_OK)
            memcpy(all, recv, (size_t)n * sizeof *all);
    }
    free(recv);
    free(sizes);
    /* Rank 0 broadcasts even after an error (zeros) so nobody waits for it; the error stays its own. */
    pt_status bst = pt_comm_broadcast(c, NULL, all, (size_t)n * sizeof *all, 0, pt_deadline_after_ms(timeout_ms));
    if (st == PT_OK)
        st = bst;
    if (st != PT_OK) {
        free(all);
        return pt_fail_wrap(st, "rank %d: exchanging link identities at start-up failed", me);
    }
    *out = all;
    return PT_OK;
}

pt_status pt_link_create(const pt_link_opts *o, pt_link **out)
{
    *out = NULL;
    if (o == NULL || o->comm == NULL || o->be == NULL || pt_comm_size(o->comm) < 2)
        return pt_fail(PT_EINVAL, "pt_link_create: a job of two or more ranks and a backend are required");
    const int me = pt_comm_rank(o->comm);
    int n_kinds = 0;
    const pt_link_kind *const *ks = pt_link_kinds(&n_kinds);
    pt_link_peer mine;
    memset(&mine, 0, sizeof mine);
    mine.rank = me;
    mine.device_memory = o->be->device_memory != 0;
    mine.nccl = PT_LINK_NCCL_NOT_BUILT;
    if (gethostname(mine.host, sizeof mine.host - 1) != 0)
        snprintf(mine.host, sizeof mine.host, "host of rank %d", me);
    for (int k = 0; k < n_kinds; k++)
        if (ks[k]->ops != NULL && ks[k]->ops->identify != NULL)
            PT_CHECK(ks[k]->ops->identify(o, &mine));
    pt_link_peer *ids = NULL;
    PT_CHECK(link_exchange(o->comm, &mine, o->timeout_ms, &ids));
    char why[256];
    int k = pt_link_select(ks, n_kinds, ids, pt_comm_size(o->comm), why, sizeof why);
    free(ids);
    if (k < 0)
        return pt_fail(PT_ENOTSUP, "rank %d: no link kind can move backend %s's memory between the ranks (%s)", me,
                       o->be->name, why);
    if (ks[k]->ops == NULL)
        return pt_fail(PT_ENOTSUP, "rank %d: backend %s keeps tensors in device memory, but this build has no %s "
                                   "link to move them between ranks; rebuild with -DPT_CUDA=ON",
                       me, o->be->name, ks[k]->name);
    pt_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the link");
    l->kind = ks[k];
    l->ops = ks[k]->ops;
    l->msg_bytes = o->msg_bytes;
    l->n_send = o->n_send_bufs;
    l->n_recv_ids = o->n_recv_ids;
    l->me = me;
    char note[128] = "";
    pt_status st = l->ops->create(o, &l->st, note, sizeof note);
    if (st != PT_OK) {
        free(l);
        return st;
    }
    if (o->bf16_messages && !l->ops->packs_bf16 && !note[0])
        snprintf(note, sizeof note, "stage messages as fp32 (this kind does not pack bf16)");
    snprintf(l->desc, sizeof l->desc, "%s (%s)%s%s", l->kind->name, why, note[0] ? "; " : "", note);
    *out = l;
    return PT_OK;
}

void pt_link_destroy(pt_link *l, int abort)
{
    if (l == NULL)
        return;
    l->ops->destroy(l->st, abort);
    free(l);
}

const char *pt_link_describe(const pt_link *l) { return l->desc; }
int pt_link_ordered_recvs(const pt_link *l) { return l->ops->ordered_recvs; }

/* A message larger than the buffers, or a buffer or receive index out of range, is a caller bug. */
static pt_status link_check(const pt_link *l, const char *what, int i, int n, size_t bytes)
{
    if (i < 0 || i >= n)
        return pt_fail(PT_EINTERNAL, "rank %d: %s %d of %d on the %s link; please report it", l->me, what, i, n,
                       l->kind->name);
    if (bytes > l->msg_bytes)
        return pt_fail(PT_EINTERNAL, "rank %d: a %zu-byte message exceeds the %zu-byte link buffers; please report it",
                       l->me, bytes, l->msg_bytes);
    return PT_OK;
}

pt_status pt_link_send_begin(pt_link *l, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                             int is_grad)
{
    PT_CHECK(link_check(l, "send buffer", b, l->n_send, bytes));
    return l->ops->send_begin(l->st, b, src, bytes, peer, id, is_grad);
}

int pt_link_send_held(pt_link *l, int b) { return l->ops->send_held != NULL && l->ops->send_held(l->st, b); }

pt_status pt_link_send_post(pt_link *l, int b, int64_t deadline_ns, const char *what)
{
    return l->ops->send_post != NULL ? l->ops->send_post(l->st, b, deadline_ns, what) : PT_OK;
}

pt_status pt_link_send_fence(pt_link *l) { return l->ops->send_fence != NULL ? l->ops->send_fence(l->st) : PT_OK; }

pt_status pt_link_send_test(pt_link *l, int b, int *done) { return l->ops->send_test(l->st, b, done); }

pt_status pt_link_send_wait(pt_link *l, int b, int64_t deadline_ns, const char *what)
{
    return l->ops->send_wait(l->st, b, deadline_ns, what);
}

pt_status pt_link_recv_post(pt_link *l, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                            int64_t deadline_ns)
{
    PT_CHECK(link_check(l, "receive", i, l->n_recv_ids, bytes));
    return l->ops->recv_post(l->st, i, dst, bytes, peer, id, is_grad, deadline_ns);
}

pt_status pt_link_recv_wait(pt_link *l, int i, int64_t deadline_ns, const char *what)
{
    PT_CHECK(link_check(l, "receive", i, l->n_recv_ids, 0));
    return l->ops->recv_wait(l->st, i, deadline_ns, what);
}

pt_status pt_link_allreduce(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    return l->ops->allreduce(l->st, group, x, n, deadline_ns, what);
}

pt_status pt_link_reduce_scatter(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    if (!l->ops->reduce_scatter)
        return pt_fail(PT_ENOTSUP, "the %s link has no fixed-order reduce-scatter yet (for %s); run with --zero 0",
                       pt_link_describe(l), what);
    return l->ops->reduce_scatter(l->st, group, x, n, deadline_ns, what);
}

pt_status pt_link_allgather(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    if (!l->ops->allgather)
        return pt_fail(PT_ENOTSUP, "the %s link has no all-gather yet (for %s); run with --zero 0",
                       pt_link_describe(l), what);
    return l->ops->allgather(l->st, group, x, n, deadline_ns, what);
}

void pt_link_reset(pt_link *l)
{
    if (l != NULL)
        l->ops->reset(l->st);
}
