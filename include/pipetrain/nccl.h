/* pipetrain/nccl.h — NCCL for device buffers: point-to-point transfers between pipeline stages,
 * grouped sends and receives (the nccl link's fixed-order reduce-scatter and all-gather of
 * data-parallel gradients and parameters) and all-reduce for tied-weight gradients, on a CUDA
 * pt_stream. Only in
 * builds with the CUDA backend (library pt_comm_nccl). The NCCL unique id travels through the
 * pt_comm bootstrap (pt_comm_broadcast), so whatever started the ranks (pipetrain launch, srun,
 * torchrun) also starts NCCL.
 *
 *     pt_nccl *nc;
 *     PT_CHECK(pt_nccl_create(comm, NULL, 0, pt_cuda_stream_device(s), &nc));  // all ranks
 *     PT_CHECK(pt_nccl_group_begin(nc));
 *     PT_CHECK(pt_nccl_send(nc, next, act, bytes, s));
 *     PT_CHECK(pt_nccl_recv(nc, prev, grad, bytes, s));
 *     PT_CHECK(pt_nccl_group_end(nc));
 *     PT_CHECK(pt_nccl_wait(nc, s, pt_deadline_after_ms(pt_comm_timeout_ms(comm))));
 *
 * Operations are queued on the stream like kernels and return without waiting; pt_nccl_wait
 * (or any synchronising call on the stream) observes their completion. Every wait has a
 * deadline: a communicator that does not finish in time is aborted, and the error names it.
 * NCCL refuses two ranks of one communicator on the same GPU: stages that share a GPU (a
 * one-GPU machine running a pipeline) transfer through pt_comm with host staging instead, and
 * pt_nccl_create says so when asked.
 */
#ifndef PIPETRAIN_NCCL_H
#define PIPETRAIN_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/comm.h"
#include "pipetrain/cuda.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_nccl pt_nccl;

/* The NCCL version linked into this program as NCCL_VERSION_CODE (e.g. 22809 for 2.28.9) in
 * *code, and as "2.28.9" in buf (cap bytes; may be NULL). Needs no GPU. PT_EBACKEND if NCCL
 * cannot answer. Thread-safe. */
pt_status pt_nccl_version(int *code, char *buf, size_t cap);

/* Creates an NCCL communicator over world ranks ranks[0..n) (NULL, 0: all ranks of c, in rank
 * order); NCCL rank i is ranks[i]. Collective: every member calls it with the same list, in the
 * same order relative to its pt_comm groups (it creates one, to broadcast the NCCL unique id from
 * ranks[0]). `device` is this rank's CUDA ordinal. Blocks until every member has joined or
 * pt_comm_timeout_ms(c) has passed (then PT_ETIMEDOUT and the communicator is aborted).
 * PT_ENOTSUP without a CUDA device; PT_EBACKEND naming NCCL's error otherwise (two members on one
 * GPU: the message says to use the host-staged pt_comm path). *out owned by caller; c borrowed
 * and must outlive it. Not thread-safe with other calls on c. */
pt_status pt_nccl_create(pt_comm *c, const int *ranks, int n, int device, pt_nccl **out);

/* Destroys the communicator (accepts NULL). Waits for queued operations only until the comm's
 * timeout; after that it aborts them. */
void pt_nccl_destroy(pt_nccl *nc);

/* This rank's index in the communicator and its size. */
int pt_nccl_rank(const pt_nccl *nc);
int pt_nccl_size(const pt_nccl *nc);

/* Brackets sends and receives that must progress together (a stage that sends to its next
 * stage and receives from it in the same step): between begin and end nothing is queued; end
 * queues all of them at once, so two ranks sending to each other cannot deadlock. Nest as NCCL
 * groups do. */
pt_status pt_nccl_group_begin(pt_nccl *nc);
pt_status pt_nccl_group_end(pt_nccl *nc);

/* Queues sending `bytes` of device memory buf (borrowed until complete) to communicator rank
 * `peer` on stream s (a CUDA pt_stream). The receiver must post a pt_nccl_recv of the same
 * size. PT_EINVAL for a bad peer; PT_EBACKEND naming NCCL's error. */
pt_status pt_nccl_send(pt_nccl *nc, int peer, const void *buf, size_t bytes, pt_stream *s);
/* Queues receiving exactly `bytes` into device memory buf from communicator rank `peer`. */
pt_status pt_nccl_recv(pt_nccl *nc, int peer, void *buf, size_t bytes, pt_stream *s);

/* Queues an in-place all-reduce of n floats of device memory over every member (SUM, or MEAN =
 * sum / size, ncclAvg). Every member calls it in the same order with the same n. NCCL's ring
 * and tree reductions are deterministic for a fixed communicator, size and n. */
pt_status pt_nccl_allreduce(pt_nccl *nc, float *buf, size_t n, pt_reduce_op op, pt_stream *s);

/* Waits until everything queued on s has finished, up to deadline_ns (absolute, pt_now_ns
 * units), polling the stream and the communicator (sleeping 50 us between polls, so a waiting
 * rank leaves the CPU to others). On an asynchronous NCCL error or at the deadline the
 * communicator is aborted (it cannot be used again) and PT_EBACKEND / PT_ETIMEDOUT is returned,
 * naming this rank. */
pt_status pt_nccl_wait(pt_nccl *nc, pt_stream *s, int64_t deadline_ns);

/* Waits on the host until the work captured by event e (recorded after operations of nc) has
 * finished, up to deadline_ns, polling the event and the communicator's asynchronous error with
 * 50 us naps. At the deadline or on an NCCL error the communicator is aborted and PT_ETIMEDOUT /
 * PT_EBACKEND names this rank and `what` (the transfer, e.g. "SEND_ACT mb 3 chunk 0 to rank 1"). */
pt_status pt_nccl_wait_event(pt_nccl *nc, pt_cuda_event *e, int64_t deadline_ns, const char *what);

/* Aborts the communicator (ncclCommAbort): queued operations stop, and nothing but
 * pt_nccl_destroy may follow. For a rank whose job has already failed, so that tearing down does
 * not wait for peers that will never answer. Accepts NULL. */
void pt_nccl_abort(pt_nccl *nc);

#ifdef __cplusplus
}
#endif
#endif
