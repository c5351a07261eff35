/* comm/link_host.c — the "host memory" link kind: the backend computes in host memory (cpu), so
 * pt_comm moves its memory as it is. A send copies its source into a staging buffer first
 * (pt_comm_buf_alloc memory, so that a same-host receiver copies straight out of it; allocated at
 * first use and counted like backend memory against --mem-limit) and sends from there: the
 * transport completes a send only once the receiver has posted its buffer, and a send straight
 * from an activation slot would pin that slot. A receive lands in its destination directly.
 * With pt_link_opts.bf16_messages the staging copy packs the floats to bf16 (pipetrain/bf16.h), so
 * a message is half the bytes, and a receive lands in the upper half of its destination, which
 * recv_wait widens in place: lossless for the bf16-valued tensors of a bf16 run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_internal.h"
#include "pipetrain/bf16.h"

typedef struct host_link {
    pt_comm *comm;
    const pt_backend *be;
    pt_stream *compute;
    size_t msg_bytes;
    int n_send, n_recv;
    void **buf;              /* [n_send] staging buffers, NULL until first used */
    pt_comm_req **send_req;  /* [n_send] the buffer's send in flight */
    pt_comm_req **recv_req;  /* [n_recv] receive i in flight */
    pt_comm_group **groups;  /* [n_groups] borrowed */
    int bf16;                /* pt_link_opts.bf16_messages */
    void **recv_dst;         /* [n_recv] bf16: receive i's destination, widened at its wait */
    size_t *recv_n;          /* [n_recv] bf16: its floats */
} host_link;

static void host_destroy(void *p, int abort)
{
    (void)abort; /* pt_comm_destroy frees requests never waited for */
    host_link *h = p;
    if (h == NULL)
        return;
    for (int b = 0; h->buf != NULL && b < h->n_send; b++)
        if (h->buf[b] != NULL) {
            pt_comm_buf_free(h->buf[b]);
            pt_backend_account_kind(-(long long)h->msg_bytes, PT_MEM_COMM);
        }
    free(h->buf);
    free(h->send_req);
    free(h->recv_req);
    free(h->recv_dst);
    free(h->recv_n);
    free(h->groups);
    free(h);
}

static pt_status host_create(const pt_link_opts *o, void **out, char *note, size_t cap)
{
    *out = NULL;
    host_link *h = calloc(1, sizeof *h);
    if (h == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory for the host-memory link");
    h->comm = o->comm;
    h->be = o->be;
    h->compute = o->compute;
    h->msg_bytes = o->msg_bytes;
    h->n_send = o->n_send_bufs;
    h->n_recv = o->n_recv_ids;
    h->buf = calloc((size_t)(h->n_send > 0 ? h->n_send : 1), sizeof *h->buf);
    h->send_req = calloc((size_t)(h->n_send > 0 ? h->n_send : 1), sizeof *h->send_req);
    h->recv_req = calloc((size_t)(h->n_recv > 0 ? h->n_recv : 1), sizeof *h->recv_req);
    h->groups = pt_link_groups_copy(o);
    h->bf16 = o->bf16_messages != 0;
    h->recv_dst = calloc((size_t)(h->n_recv > 0 ? h->n_recv : 1), sizeof *h->recv_dst);
    h->recv_n = calloc((size_t)(h->n_recv > 0 ? h->n_recv : 1), sizeof *h->recv_n);
    if (h->buf == NULL || h->send_req == NULL || h->recv_req == NULL || h->groups == NULL || h->recv_dst == NULL ||
        h->recv_n == NULL) {
        host_destroy(h, 0);
        return pt_fail(PT_ENOMEM, "out of host memory for the host-memory link");
    }
    if (h->bf16)
        snprintf(note, cap, "stage messages as bf16, 2 bytes an element");
    *out = h;
    return PT_OK;
}

static pt_status host_send_begin(void *p, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                                 int is_grad)
{
    (void)is_grad;
    host_link *h = p;
    if (h->buf[b] == NULL) {
        PT_CHECK(pt_comm_buf_alloc(h->msg_bytes, &h->buf[b]));
        pt_backend_account_kind((long long)h->msg_bytes, PT_MEM_COMM); /* counted against --mem-limit too */
    }
    /* The source is complete once the compute stream has finished; the copy makes it free again. */
    PT_CHECK(h->be->stream_sync(h->compute));
    if (h->bf16 && bytes % sizeof(float) == 0) {
        pt_bf16_pack(h->buf[b], src, bytes / sizeof(float)); /* host memory: this kind's backends */
        bytes /= 2;
    } else {
        PT_CHECK(h->be->memcpy_d2d(h->compute, h->buf[b], src, bytes));
        PT_CHECK(h->be->stream_sync(h->compute));
    }
    pt_status st = pt_comm_isend(h->comm, peer, id, h->buf[b], bytes, &h->send_req[b]);
    if (st != PT_OK)
        h->send_req[b] = NULL;
    return st;
}

static pt_status host_send_test(void *p, int b, int *done)
{
    host_link *h = p;
    *done = 0;
    pt_status st = pt_comm_test(h->comm, h->send_req[b], done);
    if (!*done)
        return PT_OK; /* an error before completion comes back from the wait */
    h->send_req[b] = NULL;
    return st;
}

static pt_status host_send_wait(void *p, int b, int64_t deadline_ns, const char *what)
{
    (void)what; /* pt_comm names the peer and the message */
    host_link *h = p;
    pt_comm_req *r = h->send_req[b];
    h->send_req[b] = NULL;
    return pt_comm_wait(h->comm, r, deadline_ns);
}

static pt_status host_recv_post(void *p, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                                int64_t deadline_ns)
{
    (void)is_grad, (void)deadline_ns;
    host_link *h = p;
    h->recv_dst[i] = NULL;
    if (h->bf16 && bytes % sizeof(float) == 0) { /* the packed message into the upper half */
        h->recv_dst[i] = dst;
        h->recv_n[i] = bytes / sizeof(float);
        dst = (char *)dst + bytes / 2;
        bytes /= 2;
    }
    pt_status st = pt_comm_irecv(h->comm, peer, id, dst, bytes, &h->recv_req[i]);
    if (st != PT_OK)
        h->recv_req[i] = NULL;
    return st;
}

static pt_status host_recv_wait(void *p, int i, int64_t deadline_ns, const char *what)
{
    (void)what;
    host_link *h = p;
    pt_comm_req *r = h->recv_req[i];
    h->recv_req[i] = NULL;
    PT_CHECK(pt_comm_wait(h->comm, r, deadline_ns));
    if (h->recv_dst[i]) {
        pt_bf16_unpack_upper(h->recv_dst[i], h->recv_n[i]);
        h->recv_dst[i] = NULL;
    }
    return PT_OK;
}

static pt_status host_allreduce(void *p, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    (void)what;
    host_link *h = p;
    return pt_comm_allreduce(h->comm, h->groups[group], x, n, PT_REDUCE_SUM, deadline_ns);
}

static pt_status host_reduce_scatter(void *p, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    (void)what;
    host_link *h = p;
    return pt_comm_reduce_scatter(h->comm, h->groups[group], x, n, deadline_ns);
}

static pt_status host_allgather(void *p, int group, float *x, size_t n, int64_t deadline_ns, const char *what)
{
    (void)what;
    host_link *h = p;
    return pt_comm_allgather(h->comm, h->groups[group], x, n, deadline_ns);
}

static void host_reset(void *p)
{
    host_link *h = p;
    memset(h->send_req, 0, (size_t)h->n_send * sizeof *h->send_req);
    memset(h->recv_req, 0, (size_t)h->n_recv * sizeof *h->recv_req);
    memset(h->recv_dst, 0, (size_t)h->n_recv * sizeof *h->recv_dst);
}

const pt_link_ops pt_link_host_ops = {
    .create = host_create,
    .destroy = host_destroy,
    .send_begin = host_send_begin,
    .send_test = host_send_test,
    .send_wait = host_send_wait,
    .recv_post = host_recv_post,
    .recv_wait = host_recv_wait,
    .allreduce = host_allreduce,
    .reduce_scatter = host_reduce_scatter,
    .allgather = host_allgather,
    .reset = host_reset,
    .packs_bf16 = 1,
};
