/* src/runtime/rt_xfer.c — device-memory transfers of the pipeline runtime (rt_xfer.h).
 *
 * Streams and events. The model computes on the compute stream. The host-staged path copies on
 * one copy stream; the NCCL path gives each link its own stream (and communicator), so that a
 * send waiting for its receiver never holds up another link or the compute stream. Whenever
 * another stream must not start before the compute stream's work so far (the data to send, or a
 * slot's last readers before a receive overwrites it), an event recorded on the compute stream
 * orders it; whenever the compute stream must not run ahead of a copy or a receive, it waits for
 * the copy's or receive's event. The host itself waits only where the runtime needs a result
 * (a send finished, a receive arrived), always with a deadline.
 *
 * Why one NCCL communicator per link and not ncclGroupStart/End. NCCL matches a send with a
 * receive by their order on a communicator, and runs the operations of one communicator one
 * after another. With one communicator for everything, a rank's operations execute in its list
 * order, so a send only completes once the peer has reached the matching receive in ITS list:
 * rank 1 "SA>2 ... RG<2" against rank 2 "SG>1 ... RA<1" deadlocks unless each such pair is put
 * in one group, and which pairs need it depends on the schedule (a hand-written one included).
 * The validator guarantees something simpler: on each link (sender, receiver, activation or
 * gradient) the k-th send matches the k-th receive, and the lists cannot deadlock when sends are
 * buffered (never block the sender's list). One communicator and stream per link gives exactly
 * that: a send waits on its own link's stream, never in front of the rank's other work, and each
 * link's receives are posted in list order (the runtime stops posting ahead at the first receive
 * it cannot post yet). No groups are needed, and every schedule the validator accepts runs. */
#include "rt_xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/timeutil.h"
#ifdef PT_RUNTIME_CUDA
#include "pipetrain/cuda.h"
#endif
#ifdef PT_RUNTIME_NCCL
#include "pipetrain/nccl.h"
#endif

const char *rt_path_name(rt_path p)
{
    switch (p) {
    case RT_PATH_HOST:
        return "host memory";
    case RT_PATH_STAGED:
        return "host-staged";
    case RT_PATH_NCCL:
        return "nccl";
    }
    return "unknown";
}

rt_path rt_path_select(int device_memory, int nccl_built, int nccl_allowed, const rt_gpu_id *ids, int n, char *why,
                       size_t cap)
{
    char tmp[8];
    if (why == NULL || cap == 0) {
        why = tmp;
        cap = sizeof tmp;
    }
    if (!device_memory) {
        snprintf(why, cap, "the backend computes in host memory");
        return RT_PATH_HOST;
    }
    if (!nccl_built) {
        snprintf(why, cap, "this build has no NCCL");
        return RT_PATH_STAGED;
    }
    if (!nccl_allowed) {
        snprintf(why, cap, "NCCL turned off by PT_NCCL=0");
        return RT_PATH_STAGED;
    }
    if (n < 2) {
        snprintf(why, cap, "one rank: nothing travels between GPUs");
        return RT_PATH_STAGED;
    }
    if (ids == NULL) {
        snprintf(why, cap, "no list of the ranks' GPUs");
        return RT_PATH_STAGED;
    }
    for (int i = 0; i < n; i++)
        if (ids[i].no_nccl) {
            snprintf(why, cap, "rank %d cannot use NCCL: built without it, or PT_NCCL=0 there", i);
            return RT_PATH_STAGED;
        }
    for (int j = 1; j < n; j++)
        for (int i = 0; i < j; i++)
            if (memcmp(ids[i].uuid, ids[j].uuid, sizeof ids[i].uuid) == 0) {
                snprintf(why, cap, "ranks %d and %d share GPU %d on %.63s; NCCL needs one GPU per rank", i, j,
                         ids[i].device, ids[i].host);
                return RT_PATH_STAGED;
            }
    snprintf(why, cap, "every rank has its own GPU");
    return RT_PATH_NCCL;
}

int rt_xfer_nccl_built(void)
{
#ifdef PT_RUNTIME_NCCL
    return 1;
#else
    return 0;
#endif
}

#ifdef PT_RUNTIME_CUDA

typedef struct rt_xcomm {
    rt_xcomm_kind kind;
    int peer;          /* links: the other world rank */
    int sender;        /* links: 1 when this rank sends on it */
    pt_stream *stream; /* links: owned copy stream; NULL for the tied/dp communicators */
#ifdef PT_RUNTIME_NCCL
    pt_nccl *nc;       /* owned */
#endif
} rt_xcomm;

struct rt_xfer {
    rt_path path;
    char desc[320];
    pt_comm *comm;
    const pt_backend *be;
    pt_stream *compute;
    pt_stream *copy;            /* owned: host-staged copies */
    pt_cuda_event *ev_compute;  /* owned: "the compute stream so far", re-recorded each time */
    size_t msg_bytes;
    int n_send;
    void **send_buf;            /* [n_send] pinned pt_comm_buf_alloc memory (staged) or device (nccl) */
    pt_cuda_event **send_ev;    /* [n_send] the buffer's copy (staged) or send (nccl) */
    int *send_link;             /* [n_send] nccl: communicator of the buffer's send, -1 none */
    unsigned char *send_pinned; /* [n_send] staged: 1 when cudaHostRegister took the buffer */
    int last_copy;              /* staged: buffer of the latest send copy queued, -1 none */
    int n_recv;
    void **recv_buf;            /* [n_recv] staged: pinned host */
    pt_cuda_event **recv_buf_ev;/* [n_recv] staged: the buffer's copy to the device */
    int n_recv_ev;
    pt_cuda_event **recv_ev;    /* [n_recv_ev] nccl: receive i */
    int *recv_link;             /* [n_recv_ev] nccl: communicator of receive i, -1 none */
    float *red_buf;             /* staged: pinned host, red_floats */
    size_t red_floats;
    rt_xcomm *comms;            /* [n_comms] nccl: this rank's communicators */
    int n_comms;
    int me;
};

rt_path rt_xfer_path(const rt_xfer *x) { return x->path; }
const char *rt_xfer_describe(const rt_xfer *x) { return x->desc; }
void *rt_xfer_send_buf(rt_xfer *x, int b) { return x->send_buf[b]; }
void *rt_xfer_recv_buf(rt_xfer *x, int h) { return x->recv_buf[h]; }
float *rt_xfer_red_buf(rt_xfer *x, size_t n) { return n <= x->red_floats ? x->red_buf : NULL; }

/* Every rank's GPU, gathered to rank 0 and broadcast, in world rank order. */
static pt_status xfer_exchange_ids(pt_comm *c, pt_stream *compute, int no_nccl, int64_t timeout_ms, rt_gpu_id **out)
{
    *out = NULL;
    int n = pt_comm_size(c), me = pt_comm_rank(c);
    rt_gpu_id mine;
    memset(&mine, 0, sizeof mine);
    mine.device = pt_cuda_stream_device(compute);
    mine.no_nccl = no_nccl;
    PT_CHECK(pt_cuda_device_uuid(mine.device, mine.uuid));
    if (gethostname(mine.host, sizeof mine.host - 1) != 0)
        snprintf(mine.host, sizeof mine.host, "host of rank %d", me);
    rt_gpu_id *all = calloc((size_t)n, sizeof *all);
    if (all == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the GPU list");
    void *recv = NULL;
    size_t *sizes = NULL;
    pt_status st = pt_comm_gatherv(c, 0, &mine, sizeof mine, &recv, &sizes, pt_deadline_after_ms(timeout_ms));
    if (st == PT_OK && me == 0) {
        for (int r = 0; r < n && st == PT_OK; r++)
            if (sizes[r] != sizeof mine)
                st = pt_fail(PT_EINVAL, "rank %d sent a %zu-byte GPU identity, expected %zu; run the same pipetrain "
                                        "build on every rank",
                             r, sizes[r], sizeof mine);
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
        return pt_fail_wrap(st, "rank %d: exchanging GPU identities at start-up failed", me);
    }
    *out = all;
    return PT_OK;
}

static int xfer_nccl_allowed(void)
{
    const char *e = getenv("PT_NCCL");
    return !(e != NULL && (strcmp(e, "0") == 0 || strcmp(e, "off") == 0));
}

#ifdef PT_RUNTIME_NCCL
/* Creates the communicators of `specs` this rank belongs to, in the given (global) order. */
static pt_status xfer_nccl_create(rt_xfer *x, const rt_xfer_opts *o)
{
    x->comms = calloc((size_t)(o->n_comms > 0 ? o->n_comms : 1), sizeof *x->comms);
    if (x->comms == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for NCCL communicators");
    const int device = pt_cuda_stream_device(o->compute);
    for (int i = 0; i < o->n_comms; i++) {
        const rt_xcomm_spec *sp = &o->comms[i];
        const int *ranks = sp->members ? sp->members : sp->ranks;
        int member = -1;
        for (int k = 0; k < sp->n; k++)
            if (ranks[k] == x->me)
                member = k;
        if (member < 0)
            continue;
        rt_xcomm *xc = &x->comms[x->n_comms];
        memset(xc, 0, sizeof *xc);
        xc->kind = sp->kind;
        if (sp->kind == RT_XCOMM_LINK_ACT || sp->kind == RT_XCOMM_LINK_GRAD) {
            xc->sender = member == 0;
            xc->peer = ranks[1 - member];
            PT_CHECK(pt_cuda_copy_stream_create(o->compute, &xc->stream));
        }
        x->n_comms++;
        pt_status st = pt_nccl_create(o->comm, ranks, sp->n, device, &xc->nc);
        if (st != PT_OK)
            return pt_fail_wrap(st, "rank %d: creating the NCCL communicator of %s failed", x->me,
                                sp->kind == RT_XCOMM_TIED ? "the tied embedding/head pair"
                                : sp->kind == RT_XCOMM_DP ? "the data-parallel group"
                                                          : "a pipeline link");
    }
    return PT_OK;
}

static int xfer_link(const rt_xfer *x, int peer, int sender, int is_grad)
{
    rt_xcomm_kind k = is_grad ? RT_XCOMM_LINK_GRAD : RT_XCOMM_LINK_ACT;
    for (int i = 0; i < x->n_comms; i++)
        if (x->comms[i].kind == k && x->comms[i].peer == peer && x->comms[i].sender == sender)
            return i;
    return -1;
}
#endif

static pt_status xfer_events(pt_cuda_event ***ev, int n)
{
    *ev = calloc((size_t)(n > 0 ? n : 1), sizeof **ev);
    if (*ev == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for CUDA events");
    for (int i = 0; i < n; i++)
        PT_CHECK(pt_cuda_event_create(&(*ev)[i]));
    return PT_OK;
}

pt_status rt_xfer_create(const rt_xfer_opts *o, rt_xfer **out)
{
    *out = NULL;
    rt_xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the runtime's transfers");
    pt_status st = PT_OK;
    rt_gpu_id *ids = NULL;
    x->comm = o->comm;
    x->be = o->be;
    x->compute = o->compute;
    x->msg_bytes = o->msg_bytes;
    x->me = pt_comm_rank(o->comm);
    x->last_copy = -1;
    const int nccl_built = rt_xfer_nccl_built(), nccl_allowed = xfer_nccl_allowed();
    PT_TRY(xfer_exchange_ids(o->comm, o->compute, !nccl_built || !nccl_allowed, o->timeout_ms, &ids), fail);
    char why[256];
    x->path = rt_path_select(o->be->device_memory, nccl_built, nccl_allowed, ids, pt_comm_size(o->comm), why,
                             sizeof why);
    snprintf(x->desc, sizeof x->desc, "%s (%s)", rt_path_name(x->path), why);
    free(ids);
    ids = NULL;

    PT_TRY(pt_cuda_event_create(&x->ev_compute), fail);
    x->n_send = o->n_send_bufs;
    x->send_buf = calloc((size_t)(x->n_send > 0 ? x->n_send : 1), sizeof *x->send_buf);
    x->send_link = malloc((size_t)(x->n_send > 0 ? x->n_send : 1) * sizeof *x->send_link);
    x->send_pinned = calloc((size_t)(x->n_send > 0 ? x->n_send : 1), 1);
    if (x->send_buf == NULL || x->send_link == NULL || x->send_pinned == NULL) {
        st = pt_fail(PT_ENOMEM, "out of host memory for send buffers");
        goto fail;
    }
    for (int b = 0; b < x->n_send; b++)
        x->send_link[b] = -1;
    PT_TRY(xfer_events(&x->send_ev, x->n_send), fail);
    if (x->path == RT_PATH_NCCL) {
#ifdef PT_RUNTIME_NCCL
        for (int b = 0; b < x->n_send; b++)
            PT_TRY(pt_backend_alloc(o->be, &x->send_buf[b], o->msg_bytes), fail);
        x->n_recv_ev = o->n_recv_slots;
        x->recv_link = malloc((size_t)(x->n_recv_ev > 0 ? x->n_recv_ev : 1) * sizeof *x->recv_link);
        if (x->recv_link == NULL) {
            st = pt_fail(PT_ENOMEM, "out of host memory for receive events");
            goto fail;
        }
        for (int i = 0; i < x->n_recv_ev; i++)
            x->recv_link[i] = -1;
        PT_TRY(xfer_events(&x->recv_ev, x->n_recv_ev), fail);
        PT_TRY(xfer_nccl_create(x, o), fail);
#endif
    } else {
        PT_TRY(pt_cuda_copy_stream_create(o->compute, &x->copy), fail);
        /* pt_comm's shared buffers, so that a same-host receiver copies straight out of them,
         * pinned so that the device copies into them asynchronously. Memory the driver will not
         * pin still works (each copy then waits for itself): the description says so. */
        int unpinned = 0;
        for (int b = 0; b < x->n_send; b++) {
            PT_TRY(pt_comm_buf_alloc(o->msg_bytes, &x->send_buf[b]), fail);
            if (pt_cuda_host_register(x->send_buf[b], o->msg_bytes) == PT_OK) {
                x->send_pinned[b] = 1;
            } else {
                pt_clear_error();
                unpinned++;
            }
        }
        if (unpinned > 0) {
            size_t len = strlen(x->desc);
            snprintf(x->desc + len, sizeof x->desc - len, "; %d of %d send buffers could not be pinned", unpinned,
                     x->n_send);
        }
        x->n_recv = o->n_recv_bufs;
        x->recv_buf = calloc((size_t)(x->n_recv > 0 ? x->n_recv : 1), sizeof *x->recv_buf);
        if (x->recv_buf == NULL) {
            st = pt_fail(PT_ENOMEM, "out of host memory for receive buffers");
            goto fail;
        }
        for (int h = 0; h < x->n_recv; h++)
            PT_TRY(pt_cuda_host_alloc(&x->recv_buf[h], o->msg_bytes), fail);
        PT_TRY(xfer_events(&x->recv_buf_ev, x->n_recv), fail);
        if (o->red_floats > 0) {
            PT_TRY(pt_cuda_host_alloc((void **)&x->red_buf, o->red_floats * sizeof(float)), fail);
            x->red_floats = o->red_floats;
        }
    }
    *out = x;
    return PT_OK;
fail:
    free(ids);
    rt_xfer_destroy(x, 1);
    return st;
}

static void xfer_events_free(pt_cuda_event **ev, int n)
{
    for (int i = 0; ev != NULL && i < n; i++)
        pt_cuda_event_destroy(ev[i]);
    free(ev);
}

void rt_xfer_destroy(rt_xfer *x, int abort_nccl)
{
    if (x == NULL)
        return;
#ifdef PT_RUNTIME_NCCL
    for (int i = x->n_comms - 1; i >= 0; i--) {
        if (abort_nccl)
            pt_nccl_abort(x->comms[i].nc);
        pt_nccl_destroy(x->comms[i].nc);
    }
#else
    (void)abort_nccl;
#endif
    /* Queued copies and receives read and write the buffers: let them finish (a failed job's
     * NCCL work was aborted above). */
    for (int i = 0; x->comms != NULL && i < x->n_comms; i++)
        x->be->stream_destroy(x->comms[i].stream);
    x->be->stream_destroy(x->copy);
    if (x->compute != NULL)
        (void)x->be->stream_sync(x->compute);
    free(x->comms);
    for (int b = 0; x->send_buf != NULL && b < x->n_send; b++) {
        if (x->path == RT_PATH_NCCL) {
            pt_backend_free(x->be, x->send_buf[b]);
        } else if (x->send_buf[b] != NULL) {
            if (x->send_pinned[b])
                pt_cuda_host_unregister(x->send_buf[b]);
            pt_comm_buf_free(x->send_buf[b]);
        }
    }
    for (int h = 0; x->recv_buf != NULL && h < x->n_recv; h++)
        pt_cuda_host_free(x->recv_buf[h]);
    pt_cuda_host_free(x->red_buf);
    xfer_events_free(x->send_ev, x->send_ev ? x->n_send : 0);
    xfer_events_free(x->recv_buf_ev, x->recv_buf_ev ? x->n_recv : 0);
    xfer_events_free(x->recv_ev, x->recv_ev ? x->n_recv_ev : 0);
    pt_cuda_event_destroy(x->ev_compute);
    free(x->send_buf);
    free(x->send_link);
    free(x->send_pinned);
    free(x->recv_buf);
    free(x->recv_link);
    free(x);
}

/* Makes `s` wait for everything queued on the compute stream so far. */
static pt_status xfer_after_compute(rt_xfer *x, pt_stream *s)
{
    PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
    return pt_cuda_stream_wait_event(s, x->ev_compute);
}

/* A message larger than the buffers would overrun them: a runtime bug, refused. */
static pt_status xfer_size_check(const rt_xfer *x, size_t bytes)
{
    if (bytes > x->msg_bytes)
        return pt_fail(PT_EINTERNAL, "rank %d: a %zu-byte message exceeds the %zu-byte transfer buffers; please report it",
                       x->me, bytes, x->msg_bytes);
    return PT_OK;
}

pt_status rt_xfer_send_begin(rt_xfer *x, int b, const void *src, size_t bytes, int peer_world, int is_grad)
{
    if (b < 0 || b >= x->n_send)
        return pt_fail(PT_EINTERNAL, "rank %d: send buffer %d of %d; please report it", x->me, b, x->n_send);
    PT_CHECK(xfer_size_check(x, bytes));
    if (x->path == RT_PATH_NCCL) {
#ifdef PT_RUNTIME_NCCL
        int l = xfer_link(x, peer_world, 1, is_grad);
        if (l < 0)
            return pt_fail(PT_EINTERNAL, "rank %d: no NCCL link to rank %d for %s; please report it", x->me,
                           peer_world, is_grad ? "gradients" : "activations");
        rt_xcomm *xc = &x->comms[l];
        /* The slot is free for the compute stream as soon as this copy is queued on it. */
        PT_CHECK(x->be->memcpy_d2d(x->compute, x->send_buf[b], src, bytes));
        PT_CHECK(xfer_after_compute(x, xc->stream));
        PT_CHECK(pt_nccl_send(xc->nc, 1, x->send_buf[b], bytes, xc->stream));
        PT_CHECK(pt_cuda_event_record(x->send_ev[b], xc->stream));
        x->send_link[b] = l;
        return PT_OK;
#endif
    }
    (void)peer_world;
    (void)is_grad;
    PT_CHECK(xfer_after_compute(x, x->copy));
    PT_CHECK(pt_cuda_memcpy_d2h_async(x->copy, x->send_buf[b], src, bytes));
    PT_CHECK(pt_cuda_event_record(x->send_ev[b], x->copy));
    x->last_copy = b;
    return PT_OK;
}

pt_status rt_xfer_compute_after_sends(rt_xfer *x)
{
    if (x->path == RT_PATH_NCCL || x->last_copy < 0)
        return PT_OK;
    /* The copy stream runs in order: the latest send copy's event covers every earlier one. */
    return pt_cuda_stream_wait_event(x->compute, x->send_ev[x->last_copy]);
}

pt_status rt_xfer_send_test(rt_xfer *x, int b, int *done)
{
    return pt_cuda_event_query(x->send_ev[b], done);
}

pt_status rt_xfer_send_wait(rt_xfer *x, int b, int64_t deadline_ns, const char *what)
{
#ifdef PT_RUNTIME_NCCL
    if (x->path == RT_PATH_NCCL && x->send_link[b] >= 0)
        return pt_nccl_wait_event(x->comms[x->send_link[b]].nc, x->send_ev[b], deadline_ns, what);
#endif
    char msg[256];
    snprintf(msg, sizeof msg, "rank %d: the copy of %s to the host", x->me, what);
    return pt_cuda_event_wait(x->send_ev[b], deadline_ns, msg);
}

pt_status rt_xfer_recv_post(rt_xfer *x, int i, void *dst, size_t bytes, int peer_world, int is_grad)
{
    PT_CHECK(xfer_size_check(x, bytes));
#ifdef PT_RUNTIME_NCCL
    if (x->path == RT_PATH_NCCL && i >= 0 && i < x->n_recv_ev) {
        int l = xfer_link(x, peer_world, 0, is_grad);
        if (l < 0)
            return pt_fail(PT_EINTERNAL, "rank %d: no NCCL link from rank %d for %s; please report it", x->me,
                           peer_world, is_grad ? "gradients" : "activations");
        rt_xcomm *xc = &x->comms[l];
        PT_CHECK(xfer_after_compute(x, xc->stream));
        PT_CHECK(pt_nccl_recv(xc->nc, 0, dst, bytes, xc->stream));
        PT_CHECK(pt_cuda_event_record(x->recv_ev[i], xc->stream));
        x->recv_link[i] = l;
        return PT_OK;
    }
#endif
    (void)dst;
    (void)peer_world;
    (void)is_grad;
    return pt_fail(PT_EINTERNAL, "rank %d: NCCL receive %d posted on the %s path; please report it", x->me, i,
                   rt_path_name(x->path));
}

pt_status rt_xfer_recv_wait(rt_xfer *x, int i, int64_t deadline_ns, const char *what)
{
#ifdef PT_RUNTIME_NCCL
    if (x->path == RT_PATH_NCCL && i >= 0 && i < x->n_recv_ev && x->recv_link[i] >= 0) {
        int l = x->recv_link[i];
        x->recv_link[i] = -1;
        PT_CHECK(pt_nccl_wait_event(x->comms[l].nc, x->recv_ev[i], deadline_ns, what));
        return pt_cuda_stream_wait_event(x->compute, x->recv_ev[i]);
    }
#endif
    (void)deadline_ns;
    return pt_fail(PT_EINTERNAL, "rank %d: %s was never posted to NCCL; please report it", x->me, what);
}

pt_status rt_xfer_recv_copy_in(rt_xfer *x, int h, void *dst, size_t bytes)
{
    PT_CHECK(xfer_size_check(x, bytes));
    if (x->copy == NULL || h < 0 || h >= x->n_recv)
        return pt_fail(PT_EINTERNAL, "rank %d: host receive buffer %d of %d on the %s path; please report it",
                       x->me, h, x->n_recv, rt_path_name(x->path));
    PT_CHECK(xfer_after_compute(x, x->copy));
    PT_CHECK(x->be->memcpy_h2d(x->copy, dst, x->recv_buf[h], bytes));
    PT_CHECK(pt_cuda_event_record(x->recv_buf_ev[h], x->copy));
    return pt_cuda_stream_wait_event(x->compute, x->recv_buf_ev[h]);
}

pt_status rt_xfer_recv_buf_wait(rt_xfer *x, int h, int64_t deadline_ns)
{
    char msg[128];
    snprintf(msg, sizeof msg, "rank %d: the copy of a received message to the device", x->me);
    return pt_cuda_event_wait(x->recv_buf_ev[h], deadline_ns, msg);
}

pt_status rt_xfer_allreduce(rt_xfer *x, rt_xcomm_kind kind, float *buf, size_t n, int64_t deadline_ns,
                            const char *what, int *handled)
{
    *handled = 0;
#ifdef PT_RUNTIME_NCCL
    if (x->path != RT_PATH_NCCL)
        return PT_OK;
    for (int i = 0; i < x->n_comms; i++) {
        if (x->comms[i].kind != kind)
            continue;
        PT_CHECK(pt_nccl_allreduce(x->comms[i].nc, buf, n, PT_REDUCE_SUM, x->compute));
        PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
        PT_CHECK(pt_nccl_wait_event(x->comms[i].nc, x->ev_compute, deadline_ns, what));
        *handled = 1;
        return PT_OK;
    }
    return pt_fail(PT_EINTERNAL, "rank %d: no NCCL communicator for %s; please report it", x->me, what);
#else
    (void)kind;
    (void)buf;
    (void)n;
    (void)deadline_ns;
    (void)what;
    return PT_OK;
#endif
}

#else /* no CUDA in this build: no backend has device memory, so rt_xfer_create always refuses and
       * the runtime never holds an rt_xfer; the operations below answer PT_ENOTSUP. */

struct rt_xfer {
    rt_path path;
};

static pt_status xfer_no_cuda(void)
{
    return pt_fail(PT_ENOTSUP, "device-memory transfers need a build with CUDA; rebuild with -DPT_CUDA=ON");
}

pt_status rt_xfer_create(const rt_xfer_opts *o, rt_xfer **out)
{
    *out = NULL;
    return pt_fail(PT_ENOTSUP, "backend %s keeps tensors in device memory, but this build has no CUDA support for "
                               "moving them between ranks; rebuild with -DPT_CUDA=ON",
                   o->be->name);
}

void rt_xfer_destroy(rt_xfer *x, int abort_nccl)
{
    (void)abort_nccl;
    free(x);
}

rt_path rt_xfer_path(const rt_xfer *x) { return x->path; }
const char *rt_xfer_describe(const rt_xfer *x) { return rt_path_name(x->path); }
void *rt_xfer_send_buf(rt_xfer *x, int b) { return (void)x, (void)b, NULL; }
void *rt_xfer_recv_buf(rt_xfer *x, int h) { return (void)x, (void)h, NULL; }
float *rt_xfer_red_buf(rt_xfer *x, size_t n) { return (void)x, (void)n, NULL; }

pt_status rt_xfer_send_begin(rt_xfer *x, int b, const void *src, size_t bytes, int peer_world, int is_grad)
{
    (void)x, (void)b, (void)src, (void)bytes, (void)peer_world, (void)is_grad;
    return xfer_no_cuda();
}

pt_status rt_xfer_send_test(rt_xfer *x, int b, int *done)
{
    (void)x, (void)b;
    *done = 0;
    return xfer_no_cuda();
}

pt_status rt_xfer_compute_after_sends(rt_xfer *x)
{
    (void)x;
    return xfer_no_cuda();
}

pt_status rt_xfer_send_wait(rt_xfer *x, int b, int64_t deadline_ns, const char *what)
{
    (void)x, (void)b, (void)deadline_ns, (void)what;
    return xfer_no_cuda();
}

pt_status rt_xfer_recv_post(rt_xfer *x, int i, void *dst, size_t bytes, int peer_world, int is_grad)
{
    (void)x, (void)i, (void)dst, (void)bytes, (void)peer_world, (void)is_grad;
    return xfer_no_cuda();
}

pt_status rt_xfer_recv_wait(rt_xfer *x, int i, int64_t deadline_ns, const char *what)
{
    (void)x, (void)i, (void)deadline_ns, (void)what;
    return xfer_no_cuda();
}

pt_status rt_xfer_recv_copy_in(rt_xfer *x, int h, void *dst, size_t bytes)
{
    (void)x, (void)h, (void)dst, (void)bytes;
    return xfer_no_cuda();
}

pt_status rt_xfer_recv_buf_wait(rt_xfer *x, int h, int64_t deadline_ns)
{
    (void)x, (void)h, (void)deadline_ns;
    return xfer_no_cuda();
}

pt_status rt_xfer_allreduce(rt_xfer *x, rt_xcomm_kind kind, float *buf, size_t n, int64_t deadline_ns,
                            const char *what, int *handled)
{
    (void)x, (void)kind, (void)buf, (void)n, (void)deadline_ns, (void)what;
    *handled = 0;
    return xfer_no_cuda();
}

#endif
