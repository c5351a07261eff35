/* src/runtime/rt_xfer.h — how a rank of the pipeline runtime moves stage-to-stage data and
 * gradient reductions when the backend's memory is device memory (the CUDA backend). Internal to
 * pt_runtime; see docs/cuda.md ("Transfers between ranks") for the rules.
 *
 * Three paths, chosen once per job by rt_path_select, the same way on every rank:
 *   RT_PATH_HOST    the backend's memory is host memory (cpu): pt_comm moves it directly, and
 *                   the runtime never creates an rt_xfer.
 *   RT_PATH_STAGED  device memory through pinned host buffers: device-to-host copies on a copy
 *                   stream, pt_comm (libfabric) between ranks, host-to-device copies back; the
 *                   gradient all-reduces through one pinned host buffer and pt_comm's ring.
 *   RT_PATH_NCCL    every rank has its own GPU: NCCL send/receive between device buffers, one
 *                   2-rank communicator and stream per link (sender, receiver, activation or
 *                   gradient), and NCCL all-reduces for the tied pair and data-parallel groups.
 *
 * Every host wait here has a deadline and names what it waited for. Not thread-safe: one
 * runtime, one thread. */
#ifndef PT_RUNTIME_RT_XFER_H
#define PT_RUNTIME_RT_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/comm.h"
#include "pipetrain/status.h"

typedef enum { RT_PATH_HOST = 0, RT_PATH_STAGED = 1, RT_PATH_NCCL = 2 } rt_path;

/* Which GPU a rank computes on. */
typedef struct rt_gpu_id {
    unsigned char uuid[16]; /* the device's UUID: equal UUIDs = the same GPU */
    int device;             /* CUDA ordinal on its host */
    char host[64];          /* host name, for messages */
    int no_nccl;            /* 1: that rank cannot or may not use NCCL (not built, PT_NCCL=0) */
} rt_gpu_id;

/* THE path selection, a pure function of its inputs (no environment, no device):
 *   device_memory 0                     -> RT_PATH_HOST
 *   nccl_built 0 or nccl_allowed 0      -> RT_PATH_STAGED
 *   n < 2, or no list                   -> RT_PATH_STAGED (nothing travels between GPUs)
 *   a rank with no_nccl set             -> RT_PATH_STAGED (every rank must take the same path)
 *   two ranks with the same GPU UUID    -> RT_PATH_STAGED (NCCL refuses two ranks on one GPU)
 *   otherwise                           -> RT_PATH_NCCL
 * ids: n entries in world rank order (may be NULL when device_memory is 0). `why` (cap bytes, may be
 * NULL) receives one phrase saying why, naming the first pair of ranks that share a GPU. */
rt_path rt_path_select(int device_memory, int nccl_built, int nccl_allowed, const rt_gpu_id *ids, int n, char *why,
                       size_t cap);

/* "host memory", "host-staged" or "nccl". */
const char *rt_path_name(rt_path p);

/* 1 when this build can use NCCL in the runtime (CUDA and NCCL were found). */
int rt_xfer_nccl_built(void);

/* A communicator the runtime wants in NCCL mode. Every rank lists ALL communicators of the job in
 * the same global order; rt_xfer_create creates those this rank is a member of, in that order. */
typedef enum { RT_XCOMM_LINK_ACT, RT_XCOMM_LINK_GRAD, RT_XCOMM_TIED, RT_XCOMM_DP } rt_xcomm_kind;
typedef struct rt_xcomm_spec {
    rt_xcomm_kind kind;
    int n;          /* members: 2 for links (ranks[0] sends, ranks[1] receives) */
    int ranks[2];   /* a link's world ranks */
    const int *members; /* world ranks of a tied or data-parallel group (n of them), borrowed */
} rt_xcomm_spec;

typedef struct rt_xfer_opts {
    pt_comm *comm;          /* borrowed; the job has more than one rank */
    const pt_backend *be;   /* borrowed; device memory */
    pt_stream *compute;     /* borrowed: the stream the model computes on */
    size_t msg_bytes;       /* bytes of the largest stage-to-stage message (the buffers' size) */
    int n_send_bufs;        /* staging buffers for sends (allocated here, once) */
    int n_recv_bufs;        /* host receive buffers (host-staged path) */
    int n_recv_slots;       /* receive events (NCCL path): one per action of the list */
    size_t red_floats;      /* largest gradient all-reduce, floats (host-staged path's buffer) */
    const rt_xcomm_spec *comms;
    int n_comms;
    int64_t timeout_ms;     /* start-up waits */
} rt_xfer_opts;

typedef struct rt_xfer rt_xfer;

/* Collective over every rank of o->comm: exchanges each rank's GPU identity, selects the path,
 * then allocates the copy stream, events and buffers (pinned host memory on the staged path,
 * device memory counted by pt_backend_alloc on the NCCL path) and creates the NCCL communicators.
 * Returns PT_OK, or the error of the exchange, the allocation or NCCL (naming this rank).
 * *out owned by the caller. */
pt_status rt_xfer_create(const rt_xfer_opts *o, rt_xfer **out);

/* Frees everything (accepts NULL). abort_nccl: the job failed, so NCCL communicators are aborted
 * rather than flushed (a flush would wait for peers that may be gone). */
void rt_xfer_destroy(rt_xfer *x, int abort_nccl);

rt_path rt_xfer_path(const rt_xfer *x);
/* The path and why, e.g. "host-staged (ranks 0 and 1 share GPU 0 on node7)". */
const char *rt_xfer_describe(const rt_xfer *x);

/* Send staging buffer b (pinned host memory, or device memory on the NCCL path) and host receive
 * buffer h (host-staged path). Owned by x. */
void *rt_xfer_send_buf(rt_xfer *x, int b);
void *rt_xfer_recv_buf(rt_xfer *x, int h);

/* Starts a send of `bytes` (<= msg_bytes) from device memory src with staging buffer b, behind everything
 * already queued on the compute stream. Host-staged: a device-to-host copy into buffer b on the
 * copy stream; the caller posts the pt_comm send once rt_xfer_send_test/wait says the copy is
 * done, and calls rt_xfer_compute_after_sends before the compute stream may write src's memory
 * again. NCCL: a device copy into b on the compute stream (src is free at once), then ncclSend
 * on the stream of the link (this rank -> peer_world, kind). Does not block. */
pt_status rt_xfer_send_begin(rt_xfer *x, int b, const void *src, size_t bytes, int peer_world, int is_grad);
/* Host-staged: makes the compute stream wait (on the device) until every send copy queued so far
 * has read its source. No-op on the NCCL path. Does not block the host. */
pt_status rt_xfer_compute_after_sends(rt_xfer *x);
/* *done = 1 when buffer b's copy (host-staged) or NCCL send has finished. Does not block. */
pt_status rt_xfer_send_test(rt_xfer *x, int b, int *done);
/* Waits for the same until deadline_ns; `what` names the action in errors. */
pt_status rt_xfer_send_wait(rt_xfer *x, int b, int64_t deadline_ns, const char *what);

/* NCCL path: queues a receive of `bytes` (<= msg_bytes) from peer_world into device memory dst (a slot) on the
 * link's stream, behind the compute stream's work queued so far (the slot's last readers). Receive
 * `i` (the action index) is then awaited with rt_xfer_recv_wait. Does not block. */
pt_status rt_xfer_recv_post(rt_xfer *x, int i, void *dst, size_t bytes, int peer_world, int is_grad);
/* Waits on the host for receive i until deadline_ns, then orders the compute stream after it. */
pt_status rt_xfer_recv_wait(rt_xfer *x, int i, int64_t deadline_ns, const char *what);

/* Host-staged path: queues the copy of `bytes` of host buffer h into device memory dst on the copy stream,
 * behind the compute stream's work so far; the compute stream waits for it. Does not block. */
pt_status rt_xfer_recv_copy_in(rt_xfer *x, int h, void *dst, size_t bytes);
/* Waits until host buffer h may be written again (its last copy to the device has finished). */
pt_status rt_xfer_recv_buf_wait(rt_xfer *x, int h, int64_t deadline_ns);

/* In-place SUM all-reduce of n floats of device memory over the tied pair (RT_XCOMM_TIED) or the
 * data-parallel group (RT_XCOMM_DP). NCCL path: ncclAllReduce on the compute stream, waited for
 * until deadline_ns, *handled = 1. Otherwise *handled = 0 and the caller reduces through
 * rt_xfer_red_buf and pt_comm. */
pt_status rt_xfer_allreduce(rt_xfer *x, rt_xcomm_kind kind, float *buf, size_t n, int64_t deadline_ns,
                            const char *what, int *handled);

/* The pinned host buffer for host-staged reductions (red_floats floats), or NULL when n is larger. */
float *rt_xfer_red_buf(rt_xfer *x, size_t n);

#endif
