/* pipetrain/grad_sync.h — data-parallel gradient reduction overlapped with the backward.
 *
 * A pt_grad_sync owns a second communicator (pt_comm_dup of the runtime's) and a thread that
 * reduces the gradients of this rank's chunks in buckets over the data-parallel group while the
 * main thread still computes earlier layers' gradients. Each bucket is a range of one chunk's
 * flat gradient buffer; the thread runs pt_comm_reduce_scatter_range on it (and, with zero 0,
 * pt_comm_allgather_range), which gives the bits of one pt_comm_reduce_scatter (all-gather) on
 * the whole buffer whatever the buckets (comm.h), so overlapping changes no result.
 *
 *     pt_grad_sync *gs;
 *     PT_CHECK(pt_grad_sync_create(comm, dp_ranks, D, &(pt_grad_sync_opts){ .zero = 0 }, &gs));
 *     PT_CHECK(pt_grad_sync_add_chunk(gs, 0, grads0, n0));
 *     PT_CHECK(pt_grad_sync_add_bucket(gs, 0, lo, hi));   // ... in the order they become final
 *     PT_CHECK(pt_grad_sync_start(gs));
 *     // every step:
 *     PT_CHECK(pt_grad_sync_begin(gs, step));
 *     ... backward; when elements [lo, hi) of chunk 0 are final for the step:
 *     PT_CHECK(pt_grad_sync_ready(gs, 0, lo, hi));
 *     ... at REDUCE_GRADS:
 *     int64_t exposed;
 *     PT_CHECK(pt_grad_sync_finish(gs, pt_deadline_after_ms(t), &exposed));
 *     pt_grad_sync_destroy(gs);
 *
 * Order. pt_comm collectives are matched by sequence numbers, so every member of the group must
 * run the same collectives in the same order: the thread processes the buckets in the order they
 * were added (the same on every replica, since replicas of a stage have the same chunks and action
 * list), each as soon as it is ready, never in the order readiness arrives. Add them in the order
 * the backward finishes them, so no bucket waits behind one that is ready late.
 *
 * Memory. Buffers are host memory the thread reads and writes while the main thread computes:
 * a bucket's elements must not be touched by the main thread between ready and finish (the thread
 * writes the reduced segment there, and with zero 0 the gathered ones). Device memory is not
 * supported (a CUDA side stream and staging through pinned buffers are not built): the runtime
 * uses the engine only with backends whose memory is host memory.
 *
 * Failures. Every collective has a deadline (the comm's timeout, or opts.timeout_ms); a failure
 * names the rank, the step and the bucket (chunk, elements) and is returned by finish (and by
 * every later call: after a failed or abandoned step the replicas' sequence numbers no longer
 * agree, so the engine refuses further steps). A dead same-host peer is noticed by the dup's peer
 * watch at once; other peers by the deadline.
 *
 * Threading: every function is called from one thread (the one that owns the runtime); the
 * engine's own thread is internal. pt_comm c is used only by create (and must not be used by
 * another thread meanwhile). */
#ifndef PIPETRAIN_GRAD_SYNC_H
#define PIPETRAIN_GRAD_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/comm.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_grad_sync pt_grad_sync;

typedef struct pt_grad_sync_opts {
    int zero;           /* 0: each bucket is reduce-scattered then all-gathered (every replica ends with the
                           whole sum); 1: reduce-scattered only (each replica holds its segment's sum) */
    int64_t timeout_ms; /* deadline of each bucket's collectives; <= 0: pt_comm_timeout_ms(c) */
} pt_grad_sync_opts;

/* Makes the engine for the data-parallel group dp_ranks[0..D-1] (world ranks; this rank among
 * them; the same list in the same order on every member: member k owns segment k, comm.h's
 * pt_comm_segment). Collective over c's world: EVERY rank of the job calls it, in the same order
 * relative to c's other world collectives (it duplicates c; pt_comm_dup). The thread starts at
 * pt_grad_sync_start. o may be NULL (zero 0, the comm's timeout). *out owned by the caller. */
pt_status pt_grad_sync_create(pt_comm *c, const int *dp_ranks, int D, const pt_grad_sync_opts *o,
                              pt_grad_sync **out);

/* Registers chunk `chunk` (0 <= chunk < 256, each once) with its flat gradient buffer `grads` of n
 * floats (host memory, borrowed for the engine's life). Before start only. */
pt_status pt_grad_sync_add_chunk(pt_grad_sync *gs, int chunk, float *grads, size_t n);

/* Adds the bucket [lo, hi) of a registered chunk (lo < hi <= n, not overlapping the chunk's other
 * buckets). Buckets are reduced in the order they are added. Before start only. */
pt_status pt_grad_sync_add_bucket(pt_grad_sync *gs, int chunk, size_t lo, size_t hi);

/* Checks that the buckets of every registered chunk cover its n elements (PT_EINVAL naming the
 * chunk and the first element no bucket holds) and starts the thread. */
pt_status pt_grad_sync_start(pt_grad_sync *gs);

/* A new step: every bucket is not ready. Waits (until the deadline of a collective) for the
 * previous step's work, which finish normally already did. Returns the error of an earlier
 * failure, since the replicas cannot agree on the collectives after one. */
pt_status pt_grad_sync_begin(pt_grad_sync *gs, int64_t step);

/* Elements [lo, hi) of chunk's gradients are final for this step: the buckets they complete
 * become ready. Each element is marked once per step (PT_EINVAL naming the chunk and range when
 * marked twice, outside a step, or outside the chunk). Cheap: does not block on the network. */
pt_status pt_grad_sync_ready(pt_grad_sync *gs, int chunk, size_t lo, size_t hi);

/* Waits until every bucket of the step is reduced (and gathered, zero 0), at most until deadline_ns
 * (pt_now_ns units). *exposed_ns (optional) is how long it blocked: the communication the backward
 * did not hide. Returns the thread's error, or PT_ETIMEDOUT naming the rank, the step and the
 * bucket it was on (waiting for readiness, or in its collective); the step is then abandoned. A
 * bucket never marked ready is named (PT_EINVAL) when the deadline passes. */
pt_status pt_grad_sync_finish(pt_grad_sync *gs, int64_t deadline_ns, int64_t *exposed_ns);

/* Abandons the current step (the runtime's step failed): the thread stops waiting for readiness;
 * a collective already running ends by its deadline. The engine then refuses further steps. */
void pt_grad_sync_abort(pt_grad_sync *gs);

/* What the thread did with bucket b (in add order) in the last finished step, pt_now_ns units:
 * when it was marked ready, when its collectives began and ended (0 when it never began). */
typedef struct pt_grad_sync_bucket_info {
    int chunk;
    size_t lo, hi;
    int64_t ready_ns, start_ns, end_ns;
} pt_grad_sync_bucket_info;

int pt_grad_sync_n_buckets(const pt_grad_sync *gs);

/* The staging buffer (host memory shared with same-host peers, pt_comm_buf_alloc, the size of the
 * largest bucket, counted as PT_MEM_COMM in the backend's account (pt_backend_account_kind) from
 * start to destroy; 0 when it could not be had and buckets are reduced in place): each bucket is
 * copied into it so its transfers take the direct path, and its result copied back. Known after
 * start. And the bytes the engine's communicator has moved by the direct path so far
 * (pt_comm_direct_bytes; call between finish and the next begin). */
size_t pt_grad_sync_stage_bytes(const pt_grad_sync *gs);
uint64_t pt_grad_sync_direct_bytes(const pt_grad_sync *gs);
/* PT_EINVAL for b out of range; call between finish and the next begin. */
pt_status pt_grad_sync_bucket(const pt_grad_sync *gs, int b, pt_grad_sync_bucket_info *out);

/* Stops the thread (after abandoning a running step as pt_grad_sync_abort does; a collective in
 * progress ends by its deadline) and destroys the dup. Accepts NULL. */
void pt_grad_sync_destroy(pt_grad_sync *gs);

#ifdef __cplusplus
}
#endif
#endif
