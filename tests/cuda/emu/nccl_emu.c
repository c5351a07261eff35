/* tests/cuda/emu/nccl_emu.c — the pt_nccl_* calls the NCCL link makes (comm/nccl/link_nccl.c, pipetrain/nccl.h),
 * answered over pt_comm, for the emulated NCCL tests (cuda.emulated_pipeline_nccl_*,
 * cuda.emulated_link_nccl_rs*). Linked into the test program ahead of pt_comm_nccl, so comm/nccl/nccl.c is not used there: it defines
 * every pt_nccl_* function the link calls (create, destroy, abort, group_begin, group_end, send,
 * recv, allreduce, wait_event) and no other.
 *
 * What it keeps of NCCL: a communicator is created collectively by its members; a send and a
 * receive match by their ORDER on the communicator (the k-th send to a peer meets the k-th receive
 * from it: the pt_comm message id is (communicator, count), not the runtime's micro-batch), so a
 * runtime that posted a link's receives out of order would get the wrong tensors; operations
 * complete asynchronously, and an event recorded after them (cuda_runtime_emu.cpp) is done only
 * once they are. Groups (group_begin / group_end) nest as NCCL's do, and a wait inside an open
 * group is refused (NCCL queues a group's operations only at its end, so the wait would hang).
 * What it does not keep: a send is buffered (copied when queued) instead of waiting for its
 * receiver, so the operations of a group need no group to progress, and an all-reduce completes
 * when it is queued. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "pipetrain/nccl.h"
#include "pipetrain/timeutil.h"

/* The layout of pt_cuda_event in kernels/cuda/cuda_backend.cu. */
struct pt_cuda_event {
    cudaEvent_t ev;
};

/* cuda_runtime_emu.cpp */
extern uint64_t pt_emu_op_seq;
extern int (*pt_emu_ops_done)(uint64_t upto);
uint64_t pt_emu_event_seq(cudaEvent_t e);

enum { EMU_NCCL_KIND = 12 }; /* a pt_comm message kind no action uses */

typedef struct emu_op {
    pt_comm_req *req;
    uint64_t seq;
    void *copy; /* a send's buffered data */
} emu_op;

struct pt_nccl {
    pt_comm *c;
    pt_comm_group *g;
    int *ranks;
    int n, me, world_rank;
    int tag_mb, tag_chunk; /* this communicator in the message ids */
    int64_t *sent, *recvd; /* [n] messages so far per peer */
    emu_op *ops;
    int n_ops, cap_ops;
    int aborted;
    int64_t timeout_ms;
    struct pt_nccl *next;  /* every live communicator, for pt_emu_ops_done */
};

static struct pt_nccl *g_live;
static int g_group_depth; /* open groups (NCCL's are per thread, not per communicator) */
/* Communicators per member list so far: members create theirs in the same order, so the k-th
 * communicator over one list is the same one on every member. */
static struct {
    uint64_t hash;
    int count;
} g_lists[256];
static int g_n_lists;

static pt_status emu_progress(pt_nccl *nc)
{
    for (int i = 0; i < nc->n_ops;) {
        int done = 0;
        pt_status st = pt_comm_test(nc->c, nc->ops[i].req, &done);
        if (!done) {
            i++;
            continue;
        }
        free(nc->ops[i].copy);
        nc->ops[i] = nc->ops[--nc->n_ops];
        if (st != PT_OK)
            return st;
    }
    return PT_OK;
}

static int emu_ops_done(uint64_t upto)
{
    for (pt_nccl *nc = g_live; nc != NULL; nc = nc->next) {
        if (emu_progress(nc) != PT_OK)
            return 1; /* the error surfaces at the next wait */
        for (int i = 0; i < nc->n_ops; i++)
            if (nc->ops[i].seq <= upto)
                return 0;
    }
    return 1;
}

pt_status pt_nccl_create(pt_comm *c, const int *ranks, int n, int device, pt_nccl **out)
{
    (void)device;
    *out = NULL;
    pt_nccl *nc = calloc(1, sizeof *nc);
    if (nc == NULL)
        return pt_fail(PT_ENOMEM, "emulated NCCL communicator");
    nc->c = c;
    nc->n = n;
    nc->world_rank = pt_comm_rank(c);
    nc->timeout_ms = pt_comm_timeout_ms(c);
    nc->ranks = malloc((size_t)n * sizeof *nc->ranks);
    nc->sent = calloc((size_t)n, sizeof *nc->sent);
    nc->recvd = calloc((size_t)n, sizeof *nc->recvd);
    if (nc->ranks == NULL || nc->sent == NULL || nc->recvd == NULL) {
        pt_nccl_destroy(nc);
        return pt_fail(PT_ENOMEM, "emulated NCCL communicator");
    }
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        nc->ranks[i] = ranks[i];
        if (ranks[i] == nc->world_rank)
            nc->me = i;
        h = (h ^ (uint64_t)ranks[i]) * 1099511628211ull;
    }
    int k = 0;
    while (k < g_n_lists && g_lists[k].hash != h)
        k++;
    if (k == g_n_lists) {
        if (g_n_lists == 256) {
            pt_nccl_destroy(nc);
            return pt_fail(PT_EINTERNAL, "emulated NCCL: more than 256 member lists");
        }
        g_lists[g_n_lists++].hash = h;
    }
    nc->tag_mb = (int)(h & 0xffff);
    nc->tag_chunk = g_lists[k].count++ & 0xff;
    pt_status st = pt_comm_group_create(c, nc->ranks, n, &nc->g);
    if (st == PT_OK) /* members join together, as ncclCommInitRank does */
        st = pt_comm_barrier(c, nc->g, pt_deadline_after_ms(nc->timeout_ms));
    if (st != PT_OK) {
        pt_nccl_destroy(nc);
        return pt_fail_wrap(st, "rank %d: creating an emulated NCCL communicator failed", pt_comm_rank(c));
    }
    nc->next = g_live;
    g_live = nc;
    pt_emu_ops_done = emu_ops_done;
    *out = nc;
    return PT_OK;
}

void pt_nccl_abort(pt_nccl *nc)
{
    if (nc != NULL)
        nc->aborted = 1;
}

void pt_nccl_destroy(pt_nccl *nc)
{
    if (nc == NULL)
        return;
    for (pt_nccl **p = &g_live; *p != NULL; p = &(*p)->next)
        if (*p == nc) {
            *p = nc->next;
            break;
        }
    if (!nc->aborted) {
        int64_t deadline = pt_deadline_after_ms(nc->timeout_ms);
        for (int i = 0; i < nc->n_ops; i++) {
            (void)pt_comm_wait(nc->c, nc->ops[i].req, deadline);
            free(nc->ops[i].copy);
        }
    } /* aborted: pt_comm_destroy frees the requests; a buffered copy may still be read, so it stays */
    pt_comm_group_destroy(nc->g);
    free(nc->ops);
    free(nc->ranks);
    free(nc->sent);
    free(nc->recvd);
    free(nc);
}

static pt_status emu_push(pt_nccl *nc, pt_comm_req *req, void *copy)
{
    if (nc->n_ops == nc->cap_ops) {
        int cap = nc->cap_ops ? 2 * nc->cap_ops : 16;
        emu_op *ops = realloc(nc->ops, (size_t)cap * sizeof *ops);
        if (ops == NULL)
            return pt_fail(PT_ENOMEM, "emulated NCCL operation list");
        nc->ops = ops;
        nc->cap_ops = cap;
    }
    nc->ops[nc->n_ops++] = (emu_op){ req, ++pt_emu_op_seq, copy };
    return PT_OK;
}

static pt_status emu_peer(const pt_nccl *nc, int peer, const char *what)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "emulated NCCL %s on rank %d: the communicator was aborted", what, nc->world_rank);
    if (peer < 0 || peer >= nc->n || peer == nc->me)
        return pt_fail(PT_EINVAL, "emulated NCCL %s: peer %d is not another member of this %d-rank communicator", what,
                       peer, nc->n);
    return PT_OK;
}

pt_status pt_nccl_group_begin(pt_nccl *nc)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "emulated NCCL group start on rank %d: the communicator was aborted",
                       nc->world_rank);
    g_group_depth++;
    return PT_OK;
}

pt_status pt_nccl_group_end(pt_nccl *nc)
{
    if (g_group_depth == 0)
        return pt_fail(PT_EINTERNAL, "emulated NCCL on rank %d: group end without a group start", nc->world_rank);
    g_group_depth--;
    return PT_OK;
}

pt_status pt_nccl_send(pt_nccl *nc, int peer, const void *buf, size_t bytes, pt_stream *s)
{
    (void)s;
    PT_CHECK(emu_peer(nc, peer, "send"));
    void *copy = malloc(bytes ? bytes : 1);
    if (copy == NULL)
        return pt_fail(PT_ENOMEM, "emulated NCCL send buffer");
    memcpy(copy, buf, bytes);
    pt_msg_id id = { EMU_NCCL_KIND, nc->tag_mb, nc->tag_chunk, nc->sent[peer]++ };
    pt_comm_req *req = NULL;
    pt_status st = pt_comm_isend(nc->c, nc->ranks[peer], &id, copy, bytes, &req);
    if (st == PT_OK)
        st = emu_push(nc, req, copy);
    else
        free(copy);
    return st;
}

pt_status pt_nccl_recv(pt_nccl *nc, int peer, void *buf, size_t bytes, pt_stream *s)
{
    (void)s;
    PT_CHECK(emu_peer(nc, peer, "recv"));
    pt_msg_id id = { EMU_NCCL_KIND, nc->tag_mb, nc->tag_chunk, nc->recvd[peer]++ };
    pt_comm_req *req = NULL;
    PT_CHECK(pt_comm_irecv(nc->c, nc->ranks[peer], &id, buf, bytes, &req));
    return emu_push(nc, req, NULL);
}

pt_status pt_nccl_allreduce(pt_nccl *nc, float *buf, size_t n, pt_reduce_op op, pt_stream *s)
{
    (void)s;
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "emulated NCCL all-reduce on rank %d: the communicator was aborted",
                       nc->world_rank);
    ++pt_emu_op_seq;
    return pt_comm_allreduce(nc->c, nc->g, buf, n, op, pt_deadline_after_ms(nc->timeout_ms));
}

pt_status pt_nccl_wait_event(pt_nccl *nc, pt_cuda_event *e, int64_t deadline_ns, const char *what)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "emulated NCCL %s on rank %d: the communicator was aborted", what, nc->world_rank);
    if (g_group_depth > 0)
        return pt_fail(PT_EINTERNAL, "emulated NCCL %s on rank %d: waited inside an open group, whose operations "
                                     "NCCL has not queued yet (it would hang)", what, nc->world_rank);
    const uint64_t upto = pt_emu_event_seq(e->ev);
    for (int i = 0; i < nc->n_ops;) {
        if (nc->ops[i].seq > upto) {
            i++;
            continue;
        }
        pt_status st = pt_comm_wait(nc->c, nc->ops[i].req, deadline_ns);
        free(nc->ops[i].copy);
        nc->ops[i] = nc->ops[--nc->n_ops];
        if (st != PT_OK) {
            nc->aborted = 1;
            return pt_fail_wrap(st, "rank %d: emulated NCCL %s failed, communicator aborted", nc->world_rank, what);
        }
    }
    return PT_OK;
}
