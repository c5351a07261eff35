/* comm/nccl/nccl.c — NCCL communicators built over the pt_comm bootstrap, for device buffers.
 *
 * Communicators are created non-blocking (ncclConfig_t.blocking = 0) so that creation and every
 * wait can be given a deadline: NCCL calls may return ncclInProgress, and we poll
 * ncclCommGetAsyncError until the communicator settles, sleeping briefly between polls. On an
 * error or a passed deadline the communicator is aborted (ncclCommAbort), which is the only way
 * NCCL lets a rank stop waiting for a dead peer. */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipetrain/cuda.h"
#include "pipetrain/nccl.h"
#include "pipetrain/timeutil.h"

struct pt_nccl {
    ncclComm_t comm; /* owned */
    int rank, size;
    int world_rank;
    int aborted;     /* 1 after ncclCommAbort: comm is gone */
    int64_t timeout_ms;
};

static void pt_nccl_nap(void)
{
    struct timespec ts = { 0, 50 * 1000 };
    nanosleep(&ts, NULL);
}

pt_status pt_nccl_version(int *code, char *buf, size_t cap)
{
    *code = 0;
    int v = 0;
    ncclResult_t r = ncclGetVersion(&v);
    if (r != ncclSuccess)
        return pt_fail(PT_EBACKEND, "ncclGetVersion failed: %s; check the NCCL installation", ncclGetErrorString(r));
    *code = v;
    if (buf != NULL && cap > 0) {
        /* NCCL_VERSION(X,Y,Z): X*1000+Y*100+Z up to 2.8, X*10000+Y*100+Z after. */
        if (v >= 10000)
            snprintf(buf, cap, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
        else
            snprintf(buf, cap, "%d.%d.%d", v / 1000, v / 100 % 10, v % 100);
    }
    return PT_OK;
}

void pt_nccl_abort(pt_nccl *nc)
{
    if (nc != NULL && !nc->aborted && nc->comm != NULL) {
        ncclCommAbort(nc->comm);
        nc->aborted = 1;
    }
}

/* Waits until the communicator is no longer ncclInProgress, up to deadline_ns. */
static pt_status pt_nccl_settle(pt_nccl *nc, ncclResult_t r, const char *what, int64_t deadline_ns)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "NCCL %s on rank %d: the communicator was aborted after an earlier error; "
                                    "restart the run", what, nc->world_rank);
    while (r == ncclInProgress) {
        if (pt_deadline_passed(deadline_ns)) {
            pt_nccl_abort(nc);
            return pt_fail(PT_ETIMEDOUT, "NCCL %s on rank %d did not finish within %lld ms; check the other "
                                         "ranks' logs (a rank died or never called it)",
                           what, nc->world_rank, (long long)nc->timeout_ms);
        }
        pt_nccl_nap();
        ncclResult_t a = ncclCommGetAsyncError(nc->comm, &r);
        if (a != ncclSuccess)
            r = a;
    }
    if (r != ncclSuccess) {
        const char *last = ncclGetLastError(nc->comm);
        pt_status st = pt_fail(PT_EBACKEND, "NCCL %s on rank %d failed: %s (%s)%s", what, nc->world_rank,
                               ncclGetErrorString(r), last != NULL ? last : "",
                               last != NULL && strstr(last, "Duplicate GPU") != NULL
                                   ? "; ranks that share a GPU must transfer through pt_comm (host staging)"
                                   : "");
        pt_nccl_abort(nc);
        return st;
    }
    return PT_OK;
}

static pt_status pt_nccl_op(pt_nccl *nc, ncclResult_t r, const char *what)
{
    return pt_nccl_settle(nc, r, what, pt_deadline_after_ms(nc->timeout_ms));
}

pt_status pt_nccl_create(pt_comm *c, const int *ranks, int n, int device, pt_nccl **out)
{
    *out = NULL;
    int n_dev = 0;
    char why[160] = "";
    PT_CHECK(pt_cuda_device_count(&n_dev, why, sizeof why));
    if (n_dev == 0)
        return pt_fail(PT_ENOTSUP, "NCCL needs a CUDA device and there is none (%s)", why);
    if (device < 0 || device >= n_dev)
        return pt_fail(PT_EINVAL, "CUDA device %d does not exist; this machine has %d", device, n_dev);
    const int world = pt_comm_size(c), me = pt_comm_rank(c);
    int *all = NULL;
    if (ranks == NULL) {
        all = malloc((size_t)world * sizeof *all);
        if (all == NULL)
            return pt_fail(PT_ENOMEM, "out of host memory creating an NCCL communicator");
        for (int i = 0; i < world; i++)
            all[i] = i;
        ranks = all;
        n = world;
    }
    pt_status st = PT_OK;
    pt_comm_group *g = NULL;
    pt_nccl *nc = calloc(1, sizeof *nc);
    if (nc == NULL) {
        st = pt_fail(PT_ENOMEM, "out of host memory creating an NCCL communicator");
        goto out;
    }
    nc->world_rank = me;
    nc->size = n;
    nc->timeout_ms = pt_comm_timeout_ms(c);
    PT_TRY(pt_comm_group_create(c, ranks, n, &g), out);
    nc->rank = pt_comm_group_rank(g);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (nc->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) {
            st = pt_fail(PT_EBACKEND, "ncclGetUniqueId on rank %d failed: %s", me, ncclGetErrorString(r));
            /* the others still wait in the broadcast: they time out naming this rank */
            goto out;
        }
    }
    const int64_t deadline = pt_deadline_after_ms(nc->timeout_ms);
    PT_TRY(pt_comm_broadcast(c, g, &id, sizeof id, ranks[0], deadline), out);
    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess) {
        st = pt_fail(PT_EBACKEND, "cudaSetDevice(%d) on rank %d failed: %s", device, me, cudaGetErrorString(ce));
        goto out;
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&nc->comm, n, id, nc->rank, &config);
    if (nc->comm == NULL && r != ncclSuccess && r != ncclInProgress) {
        st = pt_fail(PT_EBACKEND, "ncclCommInitRank on rank %d failed: %s", me, ncclGetErrorString(r));
        goto out;
    }
    PT_TRY(pt_nccl_settle(nc, r, "communicator creation", deadline), out);
    *out = nc;
    nc = NULL;
out:
    pt_comm_group_destroy(g);
    pt_nccl_destroy(nc);
    free(all);
    return st;
}

void pt_nccl_destroy(pt_nccl *nc)
{
    if (nc == NULL)
        return;
    if (nc->comm != NULL && !nc->aborted) {
        /* Finalize flushes queued work (non-blocking: poll with the comm's timeout), then
         * destroy; a communicator that will not finish in time is aborted instead. */
        ncclResult_t r = ncclCommFinalize(nc->comm);
        if (pt_nccl_settle(nc, r, "communicator finalize", pt_deadline_after_ms(nc->timeout_ms)) == PT_OK)
            ncclCommDestroy(nc->comm);
        else
            pt_nccl_abort(nc);
    }
    free(nc);
}

int pt_nccl_rank(const pt_nccl *nc) { return nc->rank; }
int pt_nccl_size(const pt_nccl *nc) { return nc->size; }

pt_status pt_nccl_group_begin(pt_nccl *nc)
{
    return pt_nccl_op(nc, ncclGroupStart(), "group start");
}

pt_status pt_nccl_group_end(pt_nccl *nc)
{
    return pt_nccl_op(nc, ncclGroupEnd(), "group end");
}

static pt_status pt_nccl_peer_check(const pt_nccl *nc, int peer, const char *what)
{
    if (peer < 0 || peer >= nc->size || peer == nc->rank)
        return pt_fail(PT_EINVAL, "NCCL %s: peer %d is not another member of this %d-rank communicator", what, peer,
                       nc->size);
    return PT_OK;
}

pt_status pt_nccl_send(pt_nccl *nc, int peer, const void *buf, size_t bytes, pt_stream *s)
{
    PT_CHECK(pt_nccl_peer_check(nc, peer, "send"));
    return pt_nccl_op(nc, ncclSend(buf, bytes, ncclUint8, peer, nc->comm, (cudaStream_t)pt_cuda_stream_handle(s)),
                      "send");
}

pt_status pt_nccl_recv(pt_nccl *nc, int peer, void *buf, size_t bytes, pt_stream *s)
{
    PT_CHECK(pt_nccl_peer_check(nc, peer, "recv"));
    return pt_nccl_op(nc, ncclRecv(buf, bytes, ncclUint8, peer, nc->comm, (cudaStream_t)pt_cuda_stream_handle(s)),
                      "recv");
}

pt_status pt_nccl_allreduce(pt_nccl *nc, float *buf, size_t n, pt_reduce_op op, pt_stream *s)
{
    ncclRedOp_t nop = op == PT_REDUCE_MEAN ? ncclAvg : ncclSum;
    return pt_nccl_op(nc, ncclAllReduce(buf, buf, n, ncclFloat32, nop, nc->comm,
                                        (cudaStream_t)pt_cuda_stream_handle(s)),
                      "all-reduce");
}

pt_status pt_nccl_wait(pt_nccl *nc, pt_stream *s, int64_t deadline_ns)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "NCCL wait on rank %d: the communicator was aborted after an earlier error; "
                                    "restart the run", nc->world_rank);
    cudaStream_t cs = (cudaStream_t)pt_cuda_stream_handle(s);
    for (;;) {
        cudaError_t ce = cudaStreamQuery(cs);
        if (ce == cudaSuccess)
            return PT_OK;
        if (ce != cudaErrorNotReady) {
            pt_nccl_abort(nc);
            return pt_fail(PT_EBACKEND, "CUDA stream on rank %d failed while waiting for NCCL: %s", nc->world_rank,
                           cudaGetErrorString(ce));
        }
        ncclResult_t state = ncclSuccess;
        if (ncclCommGetAsyncError(nc->comm, &state) == ncclSuccess && state != ncclSuccess &&
            state != ncclInProgress)
            return pt_nccl_settle(nc, state, "wait", deadline_ns);
        if (pt_deadline_passed(deadline_ns)) {
            pt_nccl_abort(nc);
            return pt_fail(PT_ETIMEDOUT, "NCCL transfers on rank %d did not finish by the deadline; check the "
                                         "other ranks' logs (a rank died or posted a different transfer)",
                           nc->world_rank);
        }
        pt_nccl_nap();
    }
}

pt_status pt_nccl_wait_event(pt_nccl *nc, pt_cuda_event *e, int64_t deadline_ns, const char *what)
{
    if (nc->aborted)
        return pt_fail(PT_EBACKEND, "NCCL %s on rank %d: the communicator was aborted after an earlier error; "
                                    "restart the run", what, nc->world_rank);
    for (;;) {
        int done = 0;
        pt_status st = pt_cuda_event_query(e, &done);
        if (st != PT_OK) {
            pt_nccl_abort(nc);
            return pt_fail_wrap(st, "rank %d: NCCL %s failed on the device", nc->world_rank, what);
        }
        if (done)
            return PT_OK;
        ncclResult_t state = ncclSuccess;
        if (ncclCommGetAsyncError(nc->comm, &state) == ncclSuccess && state != ncclSuccess &&
            state != ncclInProgress)
            return pt_nccl_settle(nc, state, what, deadline_ns);
        if (pt_deadline_passed(deadline_ns)) {
            pt_nccl_abort(nc);
            return pt_fail(PT_ETIMEDOUT, "rank %d: NCCL %s did not finish by the deadline (%lld ms), communicator aborted; "
                                         "check the peer's log (it died or posted a different transfer)",
                           nc->world_rank, what, (long long)nc->timeout_ms);
        }
        pt_nccl_nap();
    }
}
