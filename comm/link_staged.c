/* comm/link_staged.c — the "host-staged" link kind: device memory (the cuda backend) through
 * pinned host buffers and pt_comm. Compiled only with the CUDA backend (comm/CMakeLists.txt).
 *
 * Streams and events. The model computes on the compute stream; this link copies on one copy
 * stream of its own. Whenever the copy stream must not start before the compute stream's work so
 * far (the data to send, or a destination's last readers before a receive overwrites it), an
 * event recorded on the compute stream orders it; whenever the compute stream must not run ahead
 * of a copy, it waits for the copy's event. The host waits only where a result is needed, always
 * with a deadline.
 *
 * A send queues its device-to-host copy into a pinned staging buffer and is *held* until the copy
 * is done; then its pt_comm message is posted (send_test sees the copy finish; send_post waits for
 * it, which the caller does before it blocks on a peer). The compute stream waits for the copies
 * only at send_fence. A receive lands in a pinned host buffer from a pool (one per receive in
 * flight) and is copied into its destination on the copy stream at recv_wait; the buffer is used
 * again only after that copy finished. An all-reduce copies to one pinned buffer, sums with
 * pt_comm's ring and copies back. With pt_link_opts.bf16_messages the bus and the wire carry 2
 * bytes an element: a send is packed to bf16 on the device (the backend's pack_bf16, on the copy
 * stream, into one device buffer of half a message that the in-order copy stream reuses) and
 * only the packed half is copied to the host; a receive lands packed in its host buffer, is
 * copied into the upper half of its destination and widened there on the device
 * (unpack_bf16_upper), still on the copy stream. A backend without those entries packs on the
 * host instead (the bus then carries fp32). Also fills the GPU identity (UUID, ordinal) every rank exchanges,
 * which the NCCL rule reads too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_internal.h"
#include "pipetrain/bf16.h"
#include "pipetrain/cuda.h"

typedef struct staged_link {
    pt_comm *comm;
    const pt_backend *be;
    pt_stream *compute;
    pt_stream *copy;             /* owned */
    pt_cuda_event *ev_compute;   /* owned: "the compute stream so far", re-recorded each time */
    size_t msg_bytes;
    int me;
    int n_send;
    void **send_buf;             /* [n_send] pt_comm_buf_alloc memory, pinned when the driver lets us */
    unsigned char *send_pinned;  /* [n_send] 1 when cudaHostRegister took the buffer */
    pt_cuda_event **send_ev;     /* [n_send] the buffer's copy to the host */
    unsigned char *held;         /* [n_send] copying: the message is posted once the copy is done */
    pt_comm_req **send_req;      /* [n_send] the posted message */
    int *send_peer;              /* [n_send] held sends: where to and what */
    pt_msg_id *send_id;
    size_t *send_bytes;
    int last_copy;               /* buffer of the latest send copy queued, -1 none */
    int n_recv;                  /* receive ids */
    pt_comm_req **recv_req;      /* [n_recv] */
    int *recv_host;              /* [n_recv] host buffer of receive i, -1 none */
    void **recv_dst;             /* [n_recv] its destination */
    size_t *recv_bytes;          /* [n_recv] */
    int n_hbuf;
    void **hbuf;                 /* [n_hbuf] pinned host receive buffers */
    pt_cuda_event **hbuf_ev;     /* [n_hbuf] the buffer's copy to the device */
    int *hfree;                  /* [n_hbuf] stack of free buffers */
    int n_hfree;
    float *red_buf;              /* pinned, red_floats */
    size_t red_floats;
    pt_comm_group **groups;      /* [n_groups] borrowed */
    int bf16;                    /* pt_link_opts.bf16_messages */
    uint16_t *dev_pack;          /* bf16 on the device: the send packing buffer (msg_bytes / 2), else NULL */
} staged_link;

static pt_status staged_identify(const pt_link_opts *o, pt_link_peer *me)
{
    if (!o->be->device_memory)
        return PT_OK;
    me->device = pt_cuda_stream_device(o->compute);
    return pt_cuda_device_uuid(me->device, me->uuid);
}

static void staged_destroy(void *p, int abort)
{
    (void)abort;
    staged_link *x = p;
    if (x == NULL)
        return;
    /* Queued copies read and write the buffers: let them finish. */
    x->be->stream_destroy(x->copy);
    if (x->compute != NULL)
        (void)x->be->stream_sync(x->compute);
    pt_backend_free(x->be, x->dev_pack);
    for (int b = 0; x->send_buf != NULL && b < x->n_send; b++)
        if (x->send_buf[b] != NULL) {
            if (x->send_pinned[b])
                pt_cuda_host_unregister(x->send_buf[b]);
            pt_comm_buf_free(x->send_buf[b]);
        }
    for (int h = 0; x->hbuf != NULL && h < x->n_hbuf; h++)
        pt_cuda_host_free(x->hbuf[h]);
    pt_cuda_host_free(x->red_buf);
    pt_cuda_events_destroy(x->send_ev, x->send_ev ? x->n_send : 0);
    pt_cuda_events_destroy(x->hbuf_ev, x->hbuf_ev ? x->n_hbuf : 0);
    pt_cuda_event_destroy(x->ev_compute);
    free(x->send_buf);
    free(x->send_pinned);
    free(x->held);
    free(x->send_req);
    free(x->send_peer);
    free(x->send_id);
    free(x->send_bytes);
    free(x->recv_req);
    free(x->recv_host);
    free(x->recv_dst);
    free(x->recv_bytes);
    free(x->hbuf);
    free(x->hfree);
    free(x->groups);
    free(x);
}

static void staged_reset(void *p)
{
    staged_link *x = p;
    memset(x->held, 0, (size_t)x->n_send);
    memset(x->send_req, 0, (size_t)x->n_send * sizeof *x->send_req);
    memset(x->recv_req, 0, (size_t)x->n_recv * sizeof *x->recv_req);
    for (int i = 0; i < x->n_recv; i++)
        x->recv_host[i] = -1;
    x->n_hfree = x->n_hbuf;
    for (int h = 0; h < x->n_hbuf; h++)
        x->hfree[h] = h;
}

static pt_status staged_create(const pt_link_opts *o, void **out, char *note, size_t cap)
{
    *out = NULL;
    staged_link *x = calloc(1, sizeof *x);
    if (x == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the host-staged link");
    pt_status st = PT_OK;
    x->comm = o->comm;
    x->be = o->be;
    x->compute = o->compute;
    x->msg_bytes = o->msg_bytes;
    x->me = pt_comm_rank(o->comm);
    x->last_copy = -1;
    x->n_send = o->n_send_bufs;
    x->n_recv = o->n_recv_ids;
    x->n_hbuf = o->n_recv_bufs;
    size_t ns = (size_t)(x->n_send > 0 ? x->n_send : 1), nr = (size_t)(x->n_recv > 0 ? x->n_recv : 1),
           nh = (size_t)(x->n_hbuf > 0 ? x->n_hbuf : 1);
    x->send_buf = calloc(ns, sizeof *x->send_buf);
    x->send_pinned = calloc(ns, 1);
    x->held = calloc(ns, 1);
    x->send_req = calloc(ns, sizeof *x->send_req);
    x->send_peer = calloc(ns, sizeof *x->send_peer);
    x->send_id = calloc(ns, sizeof *x->send_id);
    x->send_bytes = calloc(ns, sizeof *x->send_bytes);
    x->recv_req = calloc(nr, sizeof *x->recv_req);
    x->recv_host = calloc(nr, sizeof *x->recv_host);
    x->recv_dst = calloc(nr, sizeof *x->recv_dst);
    x->recv_bytes = calloc(nr, sizeof *x->recv_bytes);
    x->hbuf = calloc(nh, sizeof *x->hbuf);
    x->hfree = calloc(nh, sizeof *x->hfree);
    x->groups = pt_link_groups_copy(o);
    if (!x->send_buf || !x->send_pinned || !x->held || !x->send_req || !x->send_peer || !x->send_id ||
        !x->send_bytes || !x->recv_req || !x->recv_host || !x->recv_dst || !x->recv_bytes || !x->hbuf || !x->hfree ||
        !x->groups) {
        st = pt_fail(PT_ENOMEM, "out of host memory for the host-staged link");
        goto fail;
    }
    PT_TRY(pt_cuda_event_create(&x->ev_compute), fail);
    PT_TRY(pt_cuda_events_create(&x->send_ev, x->n_send), fail);
    PT_TRY(pt_cuda_copy_stream_create(o->compute, &x->copy), fail);
    /* pt_comm's shared buffers, so that a same-host receiver copies straight out of them, pinned
     * so that the device copies into them asynchronously. Memory the driver will not pin still
     * works (each copy then waits for itself): the description says so. */
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
    x->bf16 = o->bf16_messages != 0;
    if (x->bf16 && o->be->device_memory && o->be->pack_bf16 && o->be->unpack_bf16_upper && o->msg_bytes >= 4)
        PT_TRY(pt_backend_alloc_kind(o->be, (void **)&x->dev_pack, o->msg_bytes / 2, PT_MEM_COMM), fail);
    int nn = 0;
    if (unpinned > 0)
        nn = snprintf(note, cap, "%d of %d send buffers could not be pinned", unpinned, x->n_send);
    if (x->bf16 && nn >= 0 && (size_t)nn < cap)
        snprintf(note + nn, cap - (size_t)nn, "%sstage messages as bf16, 2 bytes an element (%s)", nn > 0 ? "; " : "",
                 x->dev_pack ? "packed on the device: half the bytes over the bus too" : "packed on the host");
    for (int h = 0; h < x->n_hbuf; h++)
        PT_TRY(pt_cuda_host_alloc(&x->hbuf[h], o->msg_bytes), fail);
    PT_TRY(pt_cuda_events_create(&x->hbuf_ev, x->n_hbuf), fail);
    if (o->red_floats > 0) {
        PT_TRY(pt_cuda_host_alloc((void **)&x->red_buf, o->red_floats * sizeof(float)), fail);
        x->red_floats = o->red_floats;
    }
    staged_reset(x);
    *out = x;
    return PT_OK;
fail:
    staged_destroy(x, 1);
    return st;
}

/* Makes `s` wait for everything queued on the compute stream so far. */
static pt_status after_compute(staged_link *x, pt_stream *s)
{
    PT_CHECK(pt_cuda_event_record(x->ev_compute, x->compute));
    return pt_cuda_stream_wait_event(s, x->ev_compute);
}

static pt_status staged_send_begin(void *p, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                                   int is_grad)
{
    (void)is_grad;
    staged_link *x = p;
    PT_CHECK(after_compute(x, x->copy));
    if (x->dev_pack != NULL && bytes % sizeof(float) == 0) { /* pack, then copy the packed half */
        PT_CHECK(x->be->pack_bf16(x->copy, x->dev_pack, src, bytes / sizeof(float)));
        PT_CHECK(pt_cuda_memcpy_d2h_async(x->copy, x->send_buf[b], x->dev_pack, bytes / 2));
    } else {
        PT_CHECK(pt_cuda_memcpy_d2h_async(x->copy, x->send_buf[b], src, bytes));
    }
    PT_CHECK(pt_cuda_event_record(x->send_ev[b], x->copy));
    x->last_copy = b;
    x->held[b] = 1;
    x->send_req[b] = NULL;
    x->send_peer[b] = peer;
    x->send_id[b] = *id;
    x->send_bytes[b] = bytes;
    return PT_OK;
}

static int staged_send_held(void *p, int b) { return ((staged_link *)p)->held[b]; }

/* The copy of held send b is done: post its message. */
static pt_status post_copied(staged_link *x, int b, const char *what)
{
    size_t bytes = x->send_bytes[b];
    if (x->bf16 && bytes % sizeof(float) == 0) {
        if (x->dev_pack == NULL) /* on the host, in place, front to back (bf16.h) */
            pt_bf16_pack(x->send_buf[b], x->send_buf[b], bytes / sizeof(float));
        bytes /= 2;
    }
    pt_status st = pt_comm_isend(x->comm, x->send_peer[b], &x->send_id[b], x->send_buf[b], bytes, &x->send_req[b]);
    if (st != PT_OK) {
        x->send_req[b] = NULL;
        return pt_fail_wrap(st, "rank %d: starting %s failed", x->me, what ? what : "a send");
    }
    x->held[b] = 0;
    return PT_OK;
}

static pt_status staged_send_post(void *p, int b, int64_t deadline_ns, const char *what)
{
    staged_link *x = p;
    if (!x->held[b])
        return PT_OK;
    char msg[256];
    snprintf(msg, sizeof msg, "rank %d: the copy of %s to the host", x->me, what);
    PT_CHECK(pt_cuda_event_wait(x->send_ev[b], deadline_ns, msg));
    return post_copied(x, b, what);
}

static pt_status staged_send_fence(void *p)
{
    staged_link *x = p;
    if (x->last_copy < 0)
        return PT_OK;
    /* The copy stream runs in order: the latest send copy's event covers every earlier one. */
    return pt_cuda_stream_wait_event(x->compute, x->send_ev[x->last_copy]);
}

static pt_status staged_send_test(void *p, int b, int *done)
{
    staged_link *x = p;
    *done = 0;
    if (x->held[b]) {
        int copied = 0;
        PT_CHECK(pt_cuda_event_query(x->send_ev[b], &copied));
        if (!copied)
            return PT_OK;
        PT_CHECK(post_copied(x, b, NULL));
    }
    pt_status st = pt_comm_test(x->comm, x->send_req[b], done);
    if (!*done)
        return PT_OK; /* an error before completion comes back from the wait */
    x->send_req[b] = NULL;
    return st;
}

static pt_status staged_send_wait(void *p, int b, int64_t deadline_ns, const char *what)
{
    staged_link *x = p;
    PT_CHECK(staged_send_post(x, b, deadline_ns, what));
    pt_comm_req *r = x->send_req[b];
    x->send_req[b] = NULL;
    return pt_comm_wait(x->comm, r, deadline_ns);
}

static pt_status staged_recv_post(void *p, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                                  int64_t deadline_ns)
{
    (void)is_grad;
    staged_link *x = p;
    /* One host buffer per receive the caller may have in flight: the pool never runs dry. A
     * buffer is free again once its copy to the device has finished (normally long ago; the wait
     * is on this rank's own device). */
    if (x->n_hfree == 0)
        return pt_fail(PT_EINTERNAL, "rank %d: more receives posted than host buffers (%d); please report it", x->me,
                       x->n_hbuf);
    int h = x->hfree[--x->n_hfree];
    char msg[128];
    snprintf(msg, sizeof msg, "rank %d: the copy of a received message to the device", x->me);
    pt_status st = pt_cuda_event_wait(x->hbuf_ev[h], deadline_ns, msg);
    /* Packed: at the buffer's start when the device widens it, else into its upper half for the
     * host to widen at the wait. */
    const int packed = x->bf16 && bytes % sizeof(float) == 0;
    char *land = packed && x->dev_pack == NULL ? (char *)x->hbuf[h] + bytes / 2 : (char *)x->hbuf[h];
    if (st == PT_OK)
        st = pt_comm_irecv(x->comm, peer, id, land, packed ? bytes / 2 : bytes, &x->recv_req[i]);
    if (st != PT_OK) {
        x->recv_req[i] = NULL;
        x->hfree[x->n_hfree++] = h;
        return st;
    }
    x->recv_host[i] = h;
    x->recv_dst[i] = dst;
    x->recv_bytes[i] = bytes;
    return PT_OK;
}

static pt_status staged_recv_wait(void *p, int i, int64_t deadline_ns, const char *what)
{
    (void)what;
    staged_link *x = p;
    pt_comm_req *r = x->recv_req[i];
    x->recv_req[i] = NULL;
    pt_status st = pt_comm_wait(x->comm, r, deadline_ns);
    int h = x->recv_host[i];
    x->recv_host[i] = -1;
    if (h < 0)
        return st;
    if (st == PT_OK) {
        /* Into the destination on the copy stream, behind its last readers; the compute stream
         * waits for it, and the host buffer is reused only after it (recv_post). */
        const size_t bytes = x->recv_bytes[i];
        const int packed = x->bf16 && bytes % sizeof(float) == 0;
        if (packed && x->dev_pack == NULL)
            pt_bf16_unpack_upper(x->hbuf[h], bytes / sizeof(float));
        st = after_compute(x, x->copy);
        if (st == PT_OK && packed && x->dev_pack != NULL) {
            st = x->be->memcpy_h2d(x->copy, (char *)x->recv_dst[i] + bytes / 2, x->hbuf[h], bytes / 2);
            if (st == PT_OK)
                st = x->be->unpack_bf16_upper(x->copy, x->recv_dst[i], bytes / sizeof(float));
        } else if (st == PT_OK) {
            st = x->be->memcpy_h2d(x->copy, x->recv_dst[i], x->hbuf[h], bytes);
        }
        if (st == PT_OK)
            st = pt_cuda_event_record(x->hbuf_ev[h], x->copy);
        if (st == PT_OK)
            st = pt_cuda_stream_wait_event(x->compute, x->hbuf_ev[h]);
        if (st != PT_OK)
            st = pt_fail_wrap(st, "rank %d: copying a received message to the device failed", x->me);
    }
    x->hfree[x->n_hfree++] = h;
    return st;
}

/* A collective of n floats must fit the pinned reduction buffer the link was made with. */
static pt_status red_fits(const staged_link *x, size_t n, const char *what)
{
    if (n > x->red_floats)
        return pt_fail(PT_EINTERNAL, "rank %d: %zu floats for %s but the reduction buffer holds %zu; please report it",
                       x->me, n, what, x->red_floats);
    return PT_OK;
}

static pt_status staged_allreduce(void *p, int group, float *buf, size_t n, int64_t deadline_ns, const char *what)
{
    staged_link *x = p;
    PT_CHECK(red_fits(x, n, what));
    PT_CHECK(x->be->memcpy_d2h(x->compute, x->red_buf, buf, n * sizeof(float))); /* synchronises */
    PT_CHECK(pt_comm_allreduce(x->comm, x->groups[group], x->red_buf, n, PT_REDUCE_SUM, deadline_ns));
    /* The sync keeps the buffer from being reused before the copy read it. */
    PT_CHECK(x->be->memcpy_h2d(x->compute, buf, x->red_buf, n * sizeof(float)));
    return x->be->stream_sync(x->compute);
}

/* The group's segment of this member (pt_comm_segment), for copying back only what changed. */
static void my_segment(staged_link *x, int group, size_t n, size_t *lo, size_t *hi)
{
    pt_comm_group *g = x->groups[group];
    pt_comm_segment(n, pt_comm_group_size(g), pt_comm_group_rank(g), lo, hi);
}

static pt_status staged_reduce_scatter(void *p, int group, float *buf, size_t n, int64_t deadline_ns,
                                       const char *what)
{
    staged_link *x = p;
    PT_CHECK(red_fits(x, n, what));
    PT_CHECK(x->be->memcpy_d2h(x->compute, x->red_buf, buf, n * sizeof(float))); /* synchronises */
    PT_CHECK(pt_comm_reduce_scatter(x->comm, x->groups[group], x->red_buf, n, deadline_ns));
    size_t lo, hi;
    my_segment(x, group, n, &lo, &hi);
    PT_CHECK(x->be->memcpy_h2d(x->compute, buf + lo, x->red_buf + lo, (hi - lo) * sizeof(float)));
    return x->be->stream_sync(x->compute);
}

static pt_status staged_allgather(void *p, int group, float *buf, size_t n, int64_t deadline_ns, const char *what)
{
    staged_link *x = p;
    PT_CHECK(red_fits(x, n, what));
    size_t lo, hi;
    my_segment(x, group, n, &lo, &hi);
    PT_CHECK(x->be->memcpy_d2h(x->compute, x->red_buf + lo, buf + lo, (hi - lo) * sizeof(float)));
    PT_CHECK(pt_comm_allgather(x->comm, x->groups[group], x->red_buf, n, deadline_ns));
    PT_CHECK(x->be->memcpy_h2d(x->compute, buf, x->red_buf, n * sizeof(float)));
    return x->be->stream_sync(x->compute);
}

const pt_link_ops pt_link_staged_ops = {
    .identify = staged_identify,
    .create = staged_create,
    .destroy = staged_destroy,
    .send_begin = staged_send_begin,
    .send_held = staged_send_held,
    .send_post = staged_send_post,
    .send_fence = staged_send_fence,
    .send_test = staged_send_test,
    .send_wait = staged_send_wait,
    .recv_post = staged_recv_post,
    .recv_wait = staged_recv_wait,
    .allreduce = staged_allreduce,
    .reduce_scatter = staged_reduce_scatter,
    .allgather = staged_allgather,
    .reset = staged_reset,
    .packs_bf16 = 1,
};
