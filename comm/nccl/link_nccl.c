/* comm/nccl/link_nccl.c — the "nccl" link kind: device memory from GPU to GPU through NCCL, when
 * every rank has its own GPU. Compiled only where NCCL is built (comm/CMakeLists.txt).
 *
 * One 2-rank communicator and stream per pipe (sender, receiver, activation or gradient), then
 * one communicator per collective group, created in the job's global order (pt_link_opts). A send
 * copies its source into a device staging buffer on the compute stream (the source is free at
 * once) and ncclSend runs on the pipe's stream after an event on the compute stream. A receive is
 * posted with ncclRecv straight into its destination on the pipe's stream, after the compute
 * stream's work so far (the destination's last readers); recv_wait waits on the host for its event
 * and orders the compute stream after it. All-reduces are ncclAllReduce on the compute stream.
 *
 * Why one communicator per pipe and not ncclGroupStart/End. NCCL matches a send with a receive by
 * their order on a communicator, and runs the operations of one communicator one after another.
 * With one communicator for everything, a rank's operations execute in its list order, so a send
 * only completes once the peer has reached the matching receive in ITS list: rank 1
 * "SA>2 ... RG<2" against rank 2 "SG>1 ... RA<1" deadlocks unless each such pair is put in one
 * group, and which pairs need it depends on the schedule (a hand-written one included). The
 * validator guarantees something simpler: on each pipe the k-th send matches the k-th receive,
 * and the lists cannot deadlock when sends are buffered (never block the sender's list). One
 * communicator and stream per pipe gives exactly that: a send waits on its own pipe's stream,
 * never in front of the rank's other work, and each pipe's receives are posted in list order
 * (ordered_recvs: the caller stops posting ahead at the first receive it cannot post yet). The
 * pipes need no groups, and every schedule the validator accepts runs.
 *
 * Reduce-scatter and all-gather (ZeRO and the data-parallel gradient sum) keep pt_comm's bits:
 * member k's segment (pt_comm_segment) is x_0 + x_1 + ... + x_{p-1} summed left to right in float,
 * as pt_comm_reduce_scatter sums it, so on the same gradients the nccl kind and the host kinds
 * give the same bits, and --zero 0 and 1 agree (ncclReduceScatter sums in its own order and wants
 * equal segments). Piece by piece (at most
 * RS_PIECE_FLOATS of each segment): one NCCL group of sends (this member's piece of every other
 * member's segment) and receives (the others' pieces of its own segment into one half of a device
 * scratch of 2 x (p - 1) pieces, allocated once at create), on the compute stream; the next
 * piece's group is queued into the other half, then the host waits for this piece (deadline) and
 * queues the backend's add kernel, which sums it left to right into the segment on the compute
 * stream. The host wait is what lets the emulator (whose kernels run when queued) sum arrived
 * data; queueing the next group first keeps the device busy meanwhile, and stream order keeps a
 * half from being received into again before its sums have read it. All-gather: one group of
 * sends of this member's segment and receives of the others' straight into place (the segments
 * are uneven when p does not divide n, so not ncclAllGather).
 *
 * bf16 messages (pt_link_opts.bf16_messages, a bf16 run, when the backend has pack_bf16 and
 * unpack_bf16_upper): a send packs its source into the staging buffer instead of copying it (half
 * the bytes go to ncclSend); a receive takes the half-size message into the upper half of its
 * destination, and recv_wait widens it in place on the compute stream, after the receive's event.
 * Lossless: the floats of a bf16 run hold bf16 values. Collectives stay fp32.
 *
 * Uses only the pt_nccl_* calls that tests/cuda/emu/nccl_emu.c answers (create, destroy, abort,
 * group_begin, group_end, send, recv, allreduce, wait_event), so the emulated NCCL tests run this
 * file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../link_internal.h"
#include "pipetrain/cuda.h"
#include "pipetrain/nccl.h"

typedef struct nccl_comm {
    int peer;          /* pipes: the other world rank; -1 for a group */
    int sender;        /* pipes: 1 when this rank sends on it */
    int is_grad;       /* pipes: gradients */
    pt_stream *stream; /* pipes: owned; NULL for a group (its all-reduce runs on the compute stream) */
    pt_nccl *nc;       /* owned */
} nccl_comm;

typedef struct nccl_link {
    const pt_backend *be;
    pt_stream *compute;
    pt_cuda_event *ev_compute; /* owned: "the compute stream so far", re-recorded each time */
    int me;
    int n_send;
    void **send_buf;           /* [n_send] device memory of msg_bytes, made at a buffer's first send (as the
                                  host link does: the runtime hands indices out on demand, so a rank
                                  holds what its schedule keeps in flight, not one per send of the
                                  step); counted as communication memory */
    size_t msg_bytes;
    pt_cuda_event **send_ev;   /* [n_send] the buffer's send */
    int *send_comm;            /* [n_send] communicator of the buffer's send, -1 none */
    int n_recv;
    pt_cuda_event **recv_ev;   /* [n_recv] receive i */
    int *recv_comm;            /* [n_recv] communicator of receive i, -1 none */
    nccl_comm *comms;          /* [n_comms] this rank's communicators, in the global order */
    int n_comms;
    int *group_comm;           /* [n_groups] communicator of group g, -1 when not a member */
    int *group_n, *group_me;   /* [n_groups] members, and this rank's index among them (-1: none) */
    int n_groups;
    size_t red_floats;         /* largest reduce-scatter / all-gather, floats (pt_link_opts) */
    float *rs_scratch;         /* device memory (counted as communication), rs_floats: 2 halves of p - 1 pieces */
    size_t rs_floats;
    pt_cuda_event *rs_ev[2];   /* owned: a half's receives done */
    int bf16;                  /* stage messages as bf16 (see the top) */
    float **recv_dst;          /* [n_recv] bf16: receive i's destination, widened at its wait */
    size_t *recv_n;            /* [n_recv] bf16: its floats (0: moved as it is) */
} nccl_link;

/* Largest piece of a segment reduced at once (floats): bounds the scratch; the bits do not
 * depend on it (each element is summed once, left to right). */
#define RS_PIECE_FLOATS ((size_t)512 * 1024)

static pt_status nccl_identify(const pt_link_opts *o, pt_link_peer *me)
{
    (void)o;
    const char *e = getenv("PT_NCCL");
    me->nccl = e != NULL && (strcmp(e, "0") == 0 || strcmp(e, "off") == 0) ? PT_LINK_NCCL_OFF : PT_LINK_NCCL_OK;
    return PT_OK;
}

static void nccl_link_destroy(void *p, int abort)
{
    nccl_link *x = p;
    if (x == NULL)
        return;
    for (int i = x->n_comms - 1; i >= 0; i--) {
        if (abort)
            pt_nccl_abort(x->comms[i].nc);
        pt_nccl_destroy(x->comms[i].nc);
    }
    /* Queued receives write the destinations: let them finish (a failed job's NCCL work was
     * aborted above). */
    for (int i = 0; x->comms != NULL && i < x->n_comms; i++)
        x->be->stream_destroy(x->comms[i].stream);
    if (x->compute != NULL)
        (void)x->be->stream_sync(x->compute);
    free(x->comms);
    for (int b = 0; x->send_buf != NULL && b < x->n_send; b++)
        pt_backend_free(x->be, x->send_buf[b]);
    pt_cuda_events_destroy(x->send_ev, x->send_ev ? x->n_send : 0);
    pt_cuda_events_destroy(x->recv_ev, x->recv_ev ? x->n_recv : 0);
    pt_cuda_event_destroy(x->ev_compute);
    pt_cuda_event_destroy(x->rs_ev[0]);
    pt_cuda_event_destroy(x->rs_ev[1]);
    pt_backend_free(x->be, x->rs_scratch);
    free(x->send_buf);
    free(x->recv_dst);
    free(x->recv_n);
    free(x->send_comm);
    free(x->recv_comm);
    free(x->group_comm);
    free(x->group_n);
    free(x->group_me);
    free(x);
}

/* Creates the communicator over ranks[0..n) when this rank is a member; *idx its index or -1. */
static pt_status comm_join(nccl_link *x, const pt_link_opts *o, const int *ranks, int n, int is_pipe, int is_grad,
                           int *idx)
{
    *idx = -1;
    int member = -1;
    for (int k = 0; k < n; k++)
        if (ranks[k] == x->me)
            member = k;
    if (member < 0)
        return PT_OK;
    nccl_comm *c = &x->comms[x->n_comms];
    memset(c, 0, sizeof *c);
    c->peer = -1;
    if (is_pipe) {
        c->sender = member == 0;
        c->peer = ranks[1 - member];
        c->is_grad = is_grad;
        PT_CHECK(pt_cuda_copy_stream_create(o->compute, &c->stream));
    }
    *idx = x->n_comms++;
    pt_status st = pt_nccl_create(o->comm, ranks, n, pt_cuda_stream_device(o->compute), &c->nc);
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: creating the NCCL communicator of %s failed", x->me,
                            is_pipe ? "a pipeline link" : "a collective group (tied embedding/head or data parallel)");
    return PT_OK;
}

static pt_status nccl_link_create(const pt_link_opts *o, void **out, char *note, size_t cap)
{
    *out = NULL;
    nccl_link *x = calloc(1, sizeof *x);
    if (x == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the NCCL link");
    pt_status st = PT_OK;
    x->be = o->be;
    x->compute = o->compute;
    x->me = pt_comm_rank(o->comm);
    x->n_send = o->n_send_bufs;
    x->n_recv = o->n_recv_ids;
    x->n_groups = o->n_groups;
    size_t ns = (size_t)(x->n_send > 0 ? x->n_send : 1), nr = (size_t)(x->n_recv > 0 ? x->n_recv : 1);
    x->send_buf = calloc(ns, sizeof *x->send_buf);
    x->send_comm = malloc(ns * sizeof *x->send_comm);
    x->recv_comm = malloc(nr * sizeof *x->recv_comm);
    x->recv_dst = calloc(nr, sizeof *x->recv_dst);
    x->recv_n = calloc(nr, sizeof *x->recv_n);
    size_t ng = (size_t)(o->n_groups > 0 ? o->n_groups : 1);
    x->group_comm = malloc(ng * sizeof *x->group_comm);
    x->group_n = calloc(ng, sizeof *x->group_n);
    x->group_me = malloc(ng * sizeof *x->group_me);
    x->comms = calloc((size_t)(o->n_channels + o->n_groups > 0 ? o->n_channels + o->n_groups : 1), sizeof *x->comms);
    if (!x->send_buf || !x->send_comm || !x->recv_comm || !x->group_comm || !x->group_n || !x->group_me ||
        !x->comms || !x->recv_dst || !x->recv_n) {
        st = pt_fail(PT_ENOMEM, "out of host memory for the NCCL link");
        goto fail;
    }
    for (int b = 0; b < x->n_send; b++)
        x->send_comm[b] = -1;
    for (int i = 0; i < x->n_recv; i++)
        x->recv_comm[i] = -1;
    PT_TRY(pt_cuda_event_create(&x->ev_compute), fail);
    PT_TRY(pt_cuda_events_create(&x->send_ev, x->n_send), fail);
    PT_TRY(pt_cuda_events_create(&x->recv_ev, x->n_recv), fail);
    x->msg_bytes = o->msg_bytes;
    x->bf16 = o->bf16_messages && o->be->pack_bf16 && o->be->unpack_bf16_upper;
    if (o->bf16_messages)
        snprintf(note, cap, "%s", x->bf16 ? "stage messages as bf16, 2 bytes an element"
                                          : "stage messages as fp32 (this backend cannot pack bf16)");
    int idx;
    for (int i = 0; i < o->n_channels; i++) {
        const int r[2] = { o->channels[i].sender, o->channels[i].receiver };
        PT_TRY(comm_join(x, o, r, 2, 1, o->channels[i].is_grad, &idx), fail);
    }
    for (int g = 0; g < o->n_groups; g++)
        PT_TRY(comm_join(x, o, o->groups[g].members, o->groups[g].n, 0, 0, &x->group_comm[g]), fail);
    /* The reduce-scatter scratch: two halves of p - 1 pieces for the largest group this rank is in,
     * a piece being a segment of red_floats (at most RS_PIECE_FLOATS). */
    x->red_floats = o->red_floats;
    for (int g = 0; g < o->n_groups; g++) {
        const pt_link_group *gr = &o->groups[g];
        x->group_n[g] = gr->n;
        x->group_me[g] = -1;
        for (int k = 0; k < gr->n; k++)
            if (gr->members[k] == x->me)
                x->group_me[g] = k;
        if (x->group_me[g] < 0 || gr->n < 2)
            continue;
        size_t seg = (o->red_floats + (size_t)gr->n - 1) / (size_t)gr->n,
               need = 2 * (size_t)(gr->n - 1) * (seg < RS_PIECE_FLOATS ? seg : RS_PIECE_FLOATS);
        if (need > x->rs_floats)
            x->rs_floats = need;
    }
    if (x->rs_floats > 0) {
        PT_TRY(pt_backend_alloc_kind(o->be, (void **)&x->rs_scratch, x->rs_floats * sizeof(float), PT_MEM_COMM), fail);
        PT_TRY(pt_cuda_event_create(&x->rs_ev[0]), fail);
        PT_TRY(pt_cuda_event_create(&x->rs_ev[1]), fail);
    }
    *out = x;
    return PT_OK;
fail:
    nccl_link_destroy(x, 1);
    return st;
}

static int pipe_comm(const nccl_link *x, int peer, int sender, int is_grad)
{
    for (int i = 0; i < x->n_comms; i++)
        if (x->comms[i].stream != NULL && x->comms[i].peer == peer && x->comms[i].sender == sender &&
            x->comms[i].is_grad == is_grad)
            return i;
    return -1;
}

/* Makes `s` wait for everything queued on the compute stream so far. */
static pt_status after_compute(nccl_link *x, pt_stream *s)
{
    PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
    return pt_cuda_stream_wait_event(s, x->ev_compute);
}

static pt_status nccl_send_begin(void *p, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                                 int is_grad)
{
    (void)id; /* NCCL matches by order on the pipe's communicator */
    nccl_link *x = p;
    int l = pipe_comm(x, peer, 1, is_grad);
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: no NCCL link to rank %d for %s; please report it", x->me, peer,
                       is_grad ? "gradients" : "activations");
    nccl_comm *c = &x->comms[l];
    if (!x->send_buf[b])
        PT_CHECK(pt_backend_alloc_kind(x->be, &x->send_buf[b], x->msg_bytes, PT_MEM_COMM));
    /* The source is free for the compute stream as soon as this copy (or packing) is queued on it. */
    if (x->bf16 && bytes % sizeof(float) == 0) {
        PT_CHECK(x->be->pack_bf16(x->compute, x->send_buf[b], src, bytes / sizeof(float)));
        bytes /= 2;
    } else {
        PT_CHECK(x->be->memcpy_d2d(x->compute, x->send_buf[b], src, bytes));
    }
    PT_CHECK(after_compute(x, c->stream));
    PT_CHECK(pt_nccl_send(c->nc, 1, x->send_buf[b], bytes, c->stream));
    PT_CHECK(pt_cuda_event_record(x->send_ev[b], c->stream));
    x->send_comm[b] = l;
    return PT_OK;
}

static pt_status nccl_send_test(void *p, int b, int *done)
{
    nccl_link *x = p;
    return pt_cuda_event_query(x->send_ev[b], done);
}

static pt_status nccl_send_wait(void *p, int b, int64_t deadline_ns, const char *what)
{
    nccl_link *x = p;
    int l = x->send_comm[b];
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: %s was never sent through NCCL; please report it", x->me, what);
    return pt_nccl_wait_event(x->comms[l].nc, x->send_ev[b], deadline_ns, what);
}

static pt_status nccl_recv_post(void *p, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                                int64_t deadline_ns)
{
    (void)id, (void)deadline_ns;
    nccl_link *x = p;
    int l = pipe_comm(x, peer, 0, is_grad);
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: no NCCL link from rank %d for %s; please report it", x->me, peer,
                       is_grad ? "gradients" : "activations");
    nccl_comm *c = &x->comms[l];
    PT_CHECK(after_compute(x, c->stream));
    x->recv_n[i] = 0;
    if (x->bf16 && bytes % sizeof(float) == 0) { /* the packed message into the upper half */
        x->recv_dst[i] = dst;
        x->recv_n[i] = bytes / sizeof(float);
        bytes /= 2;
        dst = (char *)dst + bytes;
    }
    PT_CHECK(pt_nccl_recv(c->nc, 0, dst, bytes, c->stream));
    PT_CHECK(pt_cuda_event_record(x->recv_ev[i], c->stream));
    x->recv_comm[i] = l;
    return PT_OK;
}

static pt_status nccl_recv_wait(void *p, int i, int64_t deadline_ns, const char *what)
{
    nccl_link *x = p;
    int l = x->recv_comm[i];
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: %s was never posted to NCCL; please report it", x->me, what);
    x->recv_comm[i] = -1;
    PT_CHECK(pt_nccl_wait_event(x->comms[l].nc, x->recv_ev[i], deadline_ns, what));
    PT_CHECK(pt_cuda_stream_wait_event(x->compute, x->recv_ev[i]));
    if (x->recv_n[i] > 0) /* after the receive, before any reader: both on the compute stream */
        PT_CHECK(x->be->unpack_bf16_upper(x->compute, x->recv_dst[i], x->recv_n[i]));
    return PT_OK;
}

static pt_status nccl_allreduce(void *p, int group, float *buf, size_t n, int64_t deadline_ns, const char *what)
{
    nccl_link *x = p;
    int l = group >= 0 && group < x->n_groups ? x->group_comm[group] : -1;
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: no NCCL communicator for %s; please report it", x->me, what);
    PT_CHECK(pt_nccl_allreduce(x->comms[l].nc, buf, n, PT_REDUCE_SUM, x->compute));
    PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
    return pt_nccl_wait_event(x->comms[l].nc, x->ev_compute, deadline_ns, what);
}

/* Group `group`'s communicator, size and this rank's index, for a collective named `what`. */
static pt_status group_of(nccl_link *x, int group, size_t n, const char *what, nccl_comm **c, int *p, int *me)
{
    int l = group >= 0 && group < x->n_groups ? x->group_comm[group] : -1;
    if (l < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: no NCCL communicator for %s; please report it", x->me, what);
    if (n > x->red_floats)
        return pt_fail(PT_EINTERNAL, "rank %d: %s of %zu floats but the link was sized for %zu; please report it",
                       x->me, what, n, x->red_floats);
    *c = &x->comms[l];
    *p = x->group_n[group];
    *me = x->group_me[group];
    return PT_OK;
}

/* Piece t (at most RS_PIECE_FLOATS) of member k's segment of n: [*at, *at + returned length). */
static size_t seg_piece(size_t n, int p, int k, size_t t, size_t *at)
{
    size_t lo, hi;
    pt_comm_segment(n, p, k, &lo, &hi);
    *at = lo + t * RS_PIECE_FLOATS;
    if (*at >= hi)
        return 0;
    return hi - *at < RS_PIECE_FLOATS ? hi - *at : RS_PIECE_FLOATS;
}

/* Queues piece t's exchange on the compute stream: this member's piece of every other member's
 * segment out, the others' pieces of its own segment into scratch slots [0, p-1) of `half`
 * (stride `slot` floats; member j's in slot j or j - 1 past this member). Then records ev. */
static pt_status rs_exchange(nccl_link *x, nccl_comm *c, int p, int me, float *buf, size_t n, size_t t, float *half,
                             size_t slot, pt_cuda_event *ev)
{
    size_t mine_at, mine = seg_piece(n, p, me, t, &mine_at);
    PT_CHECK(pt_nccl_group_begin(c->nc));
    pt_status st = PT_OK;
    for (int j = 0; j < p && st == PT_OK; j++) {
        if (j == me)
            continue;
        size_t at, len = seg_piece(n, p, j, t, &at);
        if (len)
            st = pt_nccl_send(c->nc, j, buf + at, len * sizeof(float), x->compute);
        if (st == PT_OK && mine)
            st = pt_nccl_recv(c->nc, j, half + (size_t)(j < me ? j : j - 1) * slot, mine * sizeof(float), x->compute);
    }
    pt_status e = pt_nccl_group_end(c->nc);
    if (st == PT_OK)
        st = e;
    if (st == PT_OK)
        st = pt_cuda_event_record(ev, x->compute);
    return st;
}

/* Queues piece t's sum on the compute stream: segment piece = x_0 + x_1 + ... + x_{p-1}, left to
 * right (x_me in place, the others in the half's slots). Float addition is commutative, so each
 * add(out, a, b) gives the bits of the running sum plus the next term whichever side it is on. */
static pt_status rs_sum(nccl_link *x, int p, int me, float *buf, size_t n, size_t t, float *half, size_t slot)
{
    size_t at, len = seg_piece(n, p, me, t, &at);
    if (len == 0)
        return PT_OK;
    float *seg = buf + at;
    /* The running sum lives in slot 0 (x_0) until this member's term is added into the segment. */
    float *acc = me == 0 ? seg : half;
    for (int j = 1; j < p; j++) {
        if (j == me) {
            PT_CHECK(x->be->add(x->compute, seg, acc, seg, len));
            acc = seg;
        } else {
            PT_CHECK(x->be->add(x->compute, acc, acc, half + (size_t)(j < me ? j : j - 1) * slot, len));
        }
    }
    return PT_OK;
}

static pt_status nccl_reduce_scatter(void *p_, int group, float *buf, size_t n, int64_t deadline_ns,
                                     const char *what)
{
    nccl_link *x = p_;
    nccl_comm *c = NULL;
    int p = 0, me = -1;
    PT_CHECK(group_of(x, group, n, what, &c, &p, &me));
    if (p < 2 || n == 0)
        return PT_OK;
    size_t longest = (n + (size_t)p - 1) / (size_t)p; /* the first member's segment */
    size_t slot = longest < RS_PIECE_FLOATS ? longest : RS_PIECE_FLOATS,
           iters = (longest + RS_PIECE_FLOATS - 1) / RS_PIECE_FLOATS;
    if (2 * (size_t)(p - 1) * slot > x->rs_floats)
        return pt_fail(PT_EINTERNAL, "rank %d: %s needs %zu floats of scratch but the link has %zu; please report it",
                       x->me, what, 2 * (size_t)(p - 1) * slot, x->rs_floats);
    float *halves[2] = { x->rs_scratch, x->rs_scratch + (size_t)(p - 1) * slot };
    PT_CHECK(rs_exchange(x, c, p, me, buf, n, 0, halves[0], slot, x->rs_ev[0]));
    for (size_t t = 0; t < iters; t++) {
        if (t + 1 < iters)
            PT_CHECK(rs_exchange(x, c, p, me, buf, n, t + 1, halves[(t + 1) % 2], slot, x->rs_ev[(t + 1) % 2]));
        PT_CHECK(pt_nccl_wait_event(c->nc, x->rs_ev[t % 2], deadline_ns, what));
        PT_CHECK(rs_sum(x, p, me, buf, n, t, halves[t % 2], slot));
    }
    /* Done means summed (pt_link_ops): the last piece's sums too. */
    PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
    return pt_nccl_wait_event(c->nc, x->ev_compute, deadline_ns, what);
}

static pt_status nccl_allgather(void *p_, int group, float *buf, size_t n, int64_t deadline_ns, const char *what)
{
    nccl_link *x = p_;
    nccl_comm *c = NULL;
    int p = 0, me = -1;
    PT_CHECK(group_of(x, group, n, what, &c, &p, &me));
    if (p < 2 || n == 0)
        return PT_OK;
    size_t mlo, mhi;
    pt_comm_segment(n, p, me, &mlo, &mhi);
    PT_CHECK(pt_nccl_group_begin(c->nc));
    pt_status st = PT_OK;
    for (int j = 0; j < p && st == PT_OK; j++) {
        if (j == me)
            continue;
        size_t lo, hi;
        pt_comm_segment(n, p, j, &lo, &hi);
        if (mhi > mlo)
            st = pt_nccl_send(c->nc, j, buf + mlo, (mhi - mlo) * sizeof(float), x->compute);
        if (st == PT_OK && hi > lo)
            st = pt_nccl_recv(c->nc, j, buf + lo, (hi - lo) * sizeof(float), x->compute);
    }
    pt_status e = pt_nccl_group_end(c->nc);
    if (st == PT_OK)
        st = e;
    if (st == PT_OK)
        st = pt_cuda_event_record(x->ev_compute, x->compute);
    if (st == PT_OK)
        st = pt_nccl_wait_event(c->nc, x->ev_compute, deadline_ns, what);
    return st;
}

static void nccl_reset(void *p)
{
    nccl_link *x = p;
    for (int i = 0; i < x->n_recv; i++)
        x->recv_comm[i] = -1;
}

const pt_link_ops pt_link_nccl_ops = {
    .identify = nccl_identify,
    .create = nccl_link_create,
    .destroy = nccl_link_destroy,
    .send_begin = nccl_send_begin,
    .send_test = nccl_send_test,
    .send_wait = nccl_send_wait,
    .recv_post = nccl_recv_post,
    .recv_wait = nccl_recv_wait,
    .allreduce = nccl_allreduce,
    .reduce_scatter = nccl_reduce_scatter,
    .allgather = nccl_allgather,
    .reset = nccl_reset,
    .ordered_recvs = 1,
    .packs_bf16 = 1,
};
