/* pipetrain/comm.h — ranks, point-to-point messages and collectives between pipeline stages.
 *
 * A pt_comm is one process's view of the job: its rank, the world size, and a libfabric
 * reliable-datagram endpoint (provider `shm` when every rank is on one host, `tcp` otherwise,
 * or PT_FABRIC_PROVIDER) that carries activations, gradients and collective traffic.
 * Ranks find each other through a TCP rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 listens);
 * the environment of whatever started the process says who is who: pipetrain's own launcher
 * and torchrun (RANK, WORLD_SIZE, LOCAL_RANK), srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID)
 * and mpirun (OMPI_COMM_WORLD_*, PMI_RANK/PMI_SIZE). With none of these set the process is a
 * single rank (size 1) and nothing touches the network.
 *
 *     pt_comm *c;
 *     pt_comm_opts o = { .provider = NULL, .timeout_ms = 0, .config_hash = hash_of_run_config };
 *     PT_CHECK(pt_comm_create(&o, &c));
 *     pt_msg_id id = { PT_ACT_SEND_ACT, mb, chunk, step };
 *     pt_comm_req *r;
 *     PT_CHECK(pt_comm_isend(c, next_rank, &id, act, bytes, &r));
 *     ... compute ...
 *     PT_CHECK(pt_comm_wait(c, r, pt_deadline_after_ms(pt_comm_timeout_ms(c))));
 *     pt_comm_destroy(c);
 *
 * Messages are matched by (sender, pt_msg_id): a receive names the sending rank and the same
 * id the sender used (the kind may be the send or the receive kind of the pair: SEND_ACT and
 * RECV_ACT match, as do SEND_GRAD and RECV_GRAD). The receiver states the size it expects and
 * a message of any other size fails on both sides with both sizes named.
 *
 * Backend memory (activations, gradients, all-reduces of the pipeline runtime) travels through a
 * pt_link (pipetrain/link.h), whose kind (host memory, host-staged, NCCL) comm/ picks per job and
 * which uses pt_comm underneath where the kind does.
 *
 * Threading: a pt_comm and its requests belong to one thread at a time (no internal locks);
 * different pt_comm objects are independent. Every blocking call takes an absolute deadline in
 * pt_now_ns() units (see timeutil.h) and returns PT_ETIMEDOUT naming the peer and the message
 * when it passes. Library code: nothing here prints or exits.
 */
#ifndef PIPETRAIN_COMM_H
#define PIPETRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_comm pt_comm;
typedef struct pt_comm_req pt_comm_req;
typedef struct pt_comm_group pt_comm_group;

/* Largest world size the tag layout supports. */
#define PT_COMM_MAX_RANKS 4096

typedef struct pt_comm_opts {
    const char *provider;  /* libfabric provider ("shm", "tcp", "tcp;ofi_rxm", "verbs;ofi_rxm", ...);
                              NULL: PT_FABRIC_PROVIDER, else `shm` on one host and `tcp` across hosts */
    int64_t timeout_ms;    /* default deadline for waits; <= 0: PT_COMM_TIMEOUT (seconds) or 300000 */
    uint64_t config_hash;  /* ranks with different hashes are refused at rendezvous (0 is a value too) */
} pt_comm_opts;

/* Finds this process's rank and the world size from the environment, meets the other ranks at
 * the rendezvous (deadline: the timeout above), checks that every rank runs the same pipetrain
 * version and config_hash, chooses the provider, opens the endpoint, exchanges addresses and
 * measures each rank's clock offset against rank 0. `o` may be NULL (defaults).
 * Returns PT_OK; PT_EINVAL for an inconsistent environment or a version/config mismatch (naming
 * both ranks); PT_ETIMEDOUT naming the ranks that never arrived; PT_ECOMM for a socket or
 * libfabric failure. Blocking; *out is owned by the caller (pt_comm_destroy). */
pt_status pt_comm_create(const pt_comm_opts *o, pt_comm **out);

/* Closes the endpoint and frees everything, including requests never waited for (their
 * transfers are abandoned). Accepts NULL. Does not wait for other ranks. */
void pt_comm_destroy(pt_comm *c);

/* A second communicator over the same ranks, for another thread: every rank opens a new endpoint
 * of c's provider (on the same local address), the ranks exchange the new addresses through c
 * (a collective of c's world: every rank calls it, in the same order relative to c's other
 * world collectives), connect, and start watching their same-host peers on it. The dup has the
 * same rank, size, timeout and clock offset as c and its own world group, message sequence
 * numbers, registrations and requests, so one thread may use it while another uses c (each
 * pt_comm still belongs to one thread at a time). Groups for it are made with
 * pt_comm_group_create on the dup. With size 1 it is a "self" communicator like c. Blocking until
 * deadline_ns; PT_ETIMEDOUT / PT_ECOMM naming the rank that failed (a rank that cannot open its
 * endpoint is named on every rank). *out owned by the caller (pt_comm_destroy, independent of c). */
pt_status pt_comm_dup(pt_comm *c, int64_t deadline_ns, pt_comm **out);

/* Makes c's waits patient (a background thread's communicator, whose waits are not latency-critical):
 * where the completion queue has no wait object (shm), a wait naps at once instead of spinning and
 * yielding first, and its naps double from 50 us up to max_nap_ns as it goes on, so a thread
 * waiting for a late peer leaves the CPU to the threads computing. max_nap_ns <= 0 restores the
 * default (spin, yield, 50 us naps). Call it from the thread that owns c. */
void pt_comm_set_patient(pt_comm *c, int64_t max_nap_ns);

/* Reads, without any network activity, what the environment says about this process: when a
 * launcher (pipetrain's, torchrun, srun, mpirun/PMI) started it as one rank of a job, *rank and
 * *size are set from it and *in_job is 1; otherwise *in_job is 0, *rank 0 and *size 1. The same
 * rules pt_comm_create uses. PT_EINVAL naming the variable when it is malformed or incomplete (a
 * multi-rank job without MASTER_ADDR/MASTER_PORT). Thread-safe. */
pt_status pt_comm_env_job(int *in_job, int *rank, int *size);

/* Which attempt of a restarted job this process belongs to (0: the first), and the launcher that
 * says so: PT_RESTART_COUNT (pipetrain's, `launch/train --max-restarts`), else
 * TORCHELASTIC_RESTART_COUNT (torchrun --max-restarts), else SLURM_RESTART_COUNT (a requeued SLURM
 * job); *from is NULL when none is set. The ranks' rendezvous refuses a rank of another attempt. */
int pt_comm_env_restart_count(const char **from);

/* This rank (0..size-1), the world size, the rank's index among ranks on its host. */
int pt_comm_rank(const pt_comm *c);
int pt_comm_size(const pt_comm *c);
int pt_comm_local_rank(const pt_comm *c);

/* The default wait in ms chosen at create (see pt_comm_opts.timeout_ms). */
int64_t pt_comm_timeout_ms(const pt_comm *c);

/* Add to pt_now_ns() on this rank to get rank 0's clock (0 on rank 0). Measured at create as
 * the offset of the ping-pong with the smallest round trip over the bootstrap socket. */
int64_t pt_comm_clock_offset_ns(const pt_comm *c);

/* The libfabric provider in use ("shm", "tcp;ofi_rxm", ...; "self" for a single rank). Borrowed. */
const char *pt_comm_provider(const pt_comm *c);

/* Identity of a point-to-point message. kind: a pt_action_kind value (schedule.h) below 15;
 * microbatch 0..65535, chunk 0..255; only the low 23 bits of step take part in matching. */
/* The one message kind outside the schedule's actions: the copies of in-memory snapshots between
 * ranks (pipetrain/snapshot.h), on a communicator of their own or before training starts. */
#define PT_COMM_KIND_SNAPSHOT 14

typedef struct pt_msg_id {
    int kind;
    int microbatch;
    int chunk;
    int64_t step;
} pt_msg_id;

/* Allocates `bytes` (rounded up to whole pages; 0 gives one page) of page-aligned, uninitialised
 * host memory that same-host ranks can map: a message sent from it to a same-host peer (from
 * PT_COMM_DIRECT_MIN bytes, default 8 KiB) is copied by the receiver straight out of it with
 * one memcpy (the "direct" path, docs/comm.md) instead of going through the provider. Use it for
 * send buffers that are reused (the runtime's send staging); any memory can still be sent.
 * The memory is an anonymous memfd: it has no name in /dev/shm and is released by the kernel
 * however the process ends. Not tied to a pt_comm (it may outlive one). Returns PT_ENOMEM when
 * no memory can be had. Thread-safe. *out is owned by the caller (pt_comm_buf_free). */
pt_status pt_comm_buf_alloc(size_t bytes, void **out);

/* Frees a buffer from pt_comm_buf_alloc. NULL, and pointers that did not come from it, are
 * ignored. No send from it may be in flight. Thread-safe. */
void pt_comm_buf_free(void *buf);

/* The copy the direct path makes: memcpy, except that from 4 MiB on x86-64 it stores around the
 * caches (non-temporal stores), which moves large messages faster than glibc's memcpy here.
 * `dst` and `src` must not overlap. Thread-safe; exposed so benchmarks can measure it alone. */
void pt_comm_memcpy(void *dst, const void *src, size_t n);

/* Bytes this rank has sent and received by the direct path so far (completed messages only);
 * lets tests and benchmarks see which path their messages took. */
uint64_t pt_comm_direct_bytes(const pt_comm *c);

/* Starts sending `bytes` of `buf` to rank `peer`. `buf` is borrowed and must stay unchanged until
 * the request completes. Messages go as tagged messages; from PT_COMM_DIRECT_MIN bytes, when
 * `buf` lies in a pt_comm_buf_alloc buffer and `peer` is on this host, by the receiver copying
 * them out of shared memory; otherwise, from PT_COMM_RMA_MIN bytes, by the receiver reading them
 * straight from `buf` (registered and cached; docs/comm.md). Does not block (beyond making
 * progress). Returns PT_EINVAL for a bad peer or id, PT_ECOMM naming the peer on a transport
 * error. *out must be completed with pt_comm_test or pt_comm_wait. */
pt_status pt_comm_isend(pt_comm *c, int peer, const pt_msg_id *id, const void *buf, size_t bytes,
                        pt_comm_req **out);

/* Starts receiving exactly `bytes` into `buf` (borrowed, written until completion) from rank
 * `peer`. Buffers of receives outstanding at the same time must not overlap. A message of
 * another size completes the request with PT_ECOMM naming both sizes. */
pt_status pt_comm_irecv(pt_comm *c, int peer, const pt_msg_id *id, void *buf, size_t bytes, pt_comm_req **out);

/* Makes progress on all transfers; *done = 1 when `r` has completed, and then `r` is freed and
 * its status returned (the request's error, if it failed). *done = 0: still running, PT_OK. */
pt_status pt_comm_test(pt_comm *c, pt_comm_req *r, int *done);

/* Waits for `r` until deadline_ns (absolute, pt_now_ns units; INT64_MAX: no limit), making
 * progress; spins briefly, then sleeps on the completion queue so waiting ranks leave the CPU
 * to others. Frees `r` in every case. Returns its status, or PT_ETIMEDOUT naming the peer rank
 * and the message id (the transfer is then abandoned). */
pt_status pt_comm_wait(pt_comm *c, pt_comm_req *r, int64_t deadline_ns);

/* Waits for n requests (NULL entries are skipped); frees all of them whatever happens and
 * returns the first error. */
pt_status pt_comm_waitall(pt_comm *c, pt_comm_req **r, int n, int64_t deadline_ns);

/* A group of ranks for collectives, in the order given (ranks distinct, each in 0..size-1,
 * this rank among them). Every member must create the group with the same list, in the same
 * order relative to its other groups (groups are numbered by creation order). Returns
 * PT_EINVAL for a bad list. *out owned by caller. */
pt_status pt_comm_group_create(pt_comm *c, const int *ranks, int n, pt_comm_group **out);
void pt_comm_group_destroy(pt_comm_group *g);
/* This rank's index in the group, and the group's size. */
int pt_comm_group_rank(const pt_comm_group *g);
int pt_comm_group_size(const pt_comm_group *g);

typedef enum { PT_REDUCE_SUM, PT_REDUCE_MEAN } pt_reduce_op;

/* Collectives. g == NULL means all ranks. Every member must call the same collectives in the
 * same order with the same n / bytes / root. Blocking until deadline_ns; PT_ETIMEDOUT names
 * the rank being waited for.
 *
 * All-reduce is a chunked ring (reduce-scatter then all-gather) processed in buckets of at
 * most 4 MiB, so any n works with any group size (1 and non-powers of two included). The
 * summation order of each element is fixed by the group, so repeated calls on the same inputs
 * give bit-identical results on every member. MEAN divides the sum by the group size. */
pt_status pt_comm_allreduce(pt_comm *c, pt_comm_group *g, float *buf, size_t n, pt_reduce_op op, int64_t deadline_ns);
/* Same, double precision, sum. */
pt_status pt_comm_allreduce_f64(pt_comm *c, pt_comm_group *g, double *buf, size_t n, int64_t deadline_ns);
/* Member k's segment of n elements split over p members: [*lo, *hi), the
 * first n % p members one element longer than the rest (n / p).
 * Pure; the one rule every sharded thing (reduce-scatter, the ZeRO-1 optimizer slices, their
 * checkpoint pieces) uses. */
void pt_comm_segment(size_t n, int p, int k, size_t *lo, size_t *hi);
/* Fixed-order reduce-scatter of n floats: afterwards member k's segment (pt_comm_segment) of buf
 * holds, on member k, x_0 + x_1 + ... + x_{p-1} summed left to right in float, where x_i is member
 * i's buf; the other segments are left as they were. The order does not depend on n's split into
 * 4 MiB pieces or on p's parity, so reduce-scatter then all-gather gives the same bits as any other
 * split of the same sum (ZeRO-1 equals plain data parallelism bit for bit). Member k sends each
 * other member its piece of that member's segment directly (p - 1 messages per piece). */
pt_status pt_comm_reduce_scatter(pt_comm *c, pt_comm_group *g, float *buf, size_t n, int64_t deadline_ns);
/* All-gather of n floats: afterwards every member's buf holds member k's segment k, for every k
 * (each member's own segment is sent to every other member, in pieces of 4 MiB at most). */
pt_status pt_comm_allgather(pt_comm *c, pt_comm_group *g, float *buf, size_t n, int64_t deadline_ns);
/* The same on elements [ra, rb) of the n only (a bucket of a gradient buffer reduced as soon as its
 * layers' gradients are ready): each element still goes to, or comes from, the owner of its
 * segment of n, in the same order, so any split of [0, n) into ranges gives the bits of one call
 * on [0, n). PT_EINVAL when the range is not within n. */
pt_status pt_comm_reduce_scatter_range(pt_comm *c, pt_comm_group *g, float *buf, size_t n, size_t ra, size_t rb,
                                       int64_t deadline_ns);
pt_status pt_comm_allgather_range(pt_comm *c, pt_comm_group *g, float *buf, size_t n, size_t ra, size_t rb,
                                  int64_t deadline_ns);
/* Copies `bytes` of buf from the member whose world rank is `root` to every member. */
pt_status pt_comm_broadcast(pt_comm *c, pt_comm_group *g, void *buf, size_t bytes, int root, int64_t deadline_ns);
/* Returns once every member has entered it. */
pt_status pt_comm_barrier(pt_comm *c, pt_comm_group *g, int64_t deadline_ns);
/* All ranks: world rank `root` receives every rank's `bytes` (sizes may differ) concatenated in
 * rank order. At root *recv (malloc'd, caller frees; NULL if the total is 0) and *sizes (malloc'd
 * array of size entries) are set; elsewhere both are set to NULL. recv/sizes may be NULL off root. */
pt_status pt_comm_gatherv(pt_comm *c, int root, const void *send, size_t bytes, void **recv, size_t **sizes,
                          int64_t deadline_ns);

/* ---- launcher (`pipetrain launch`, `pipetrain train --nproc N`) ---- */
/* The first rank of a launch that failed (pt_launch_opts.failure). */
typedef struct pt_launch_failure {
    int rank;        /* world rank; -1 when no rank failed */
    int exit_status; /* its exit status, or -1 when a signal ended it */
    int signal;      /* the signal that ended it, or 0 */
    int64_t at_ns;   /* when the launcher saw it end (pt_now_ns) */
    int after_signal; /* 1: the launcher had forwarded SIGINT/SIGTERM to the ranks before */
    int stopped;      /* 1: no rank failed, but on_watch asked to stop the ranks (rank is -1) */
} pt_launch_failure;

typedef struct pt_launch_opts {
    int nproc;           /* ranks on this node (>= 1) */
    int nodes;           /* nodes in the job (<= 0: 1) */
    int node_rank;       /* this node's index (0..nodes-1) */
    const char *master;  /* "ADDR:PORT" of rank 0's rendezvous; NULL: 127.0.0.1 and a free port
                            (required when nodes > 1) */
    int kill_on_failure; /* 1: when a rank fails, SIGKILL the others at once instead of SIGTERM and a
                            grace period (a job about to be restarted from its checkpoint) */
    pt_launch_failure *failure; /* optional out: the first failing rank (rank -1 when none failed) */
    /* Optional: file descriptors watched while the ranks run (a node agent's sockets): when one is
     * readable on_watch(watch_ctx, fd) is called (it reads what came); it returns a bit mask:
     * 1 = SIGKILL the ranks now (pt_launch then returns PT_ECOMM, failure->stopped = 1, exit code
     * 137, unless a rank had failed first), 2 = stop watching this fd. */
    const int *watch_fds;
    int n_watch;
    int (*on_watch)(void *ctx, int fd);
    void *watch_ctx;
} pt_launch_opts;

/* Starts nproc copies of argv (argv[0] looked up in PATH; NULL-terminated) with RANK,
 * WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT and IPATH_NO_BACKTRACE=1
 * set, copies their stdout and stderr line by line with a "[rank R] " prefix to its own stdout
 * and stderr, forwards SIGINT and SIGTERM, and waits. When a rank fails (non-zero exit or
 * signal) the others get SIGTERM, then SIGKILL after a 5 s grace period; children also die
 * with the launcher (PR_SET_PDEATHSIG). Sets *exit_code to 0 when every rank exited 0, else
 * to the first failing rank's exit status (128 + signal for a signal), and then returns
 * PT_ECOMM naming that rank and its status.
 * Stopping on a signal: a forwarded SIGINT/SIGTERM sets no deadline until a rank has ended (then
 * the rest get 60 s); a rank exiting 130 or 143 (128 + SIGINT/SIGTERM) has stopped, not failed,
 * and when no rank failed pt_launch returns PT_OK with *exit_code that status. A second signal, a
 * second or more after the first, SIGKILLs the ranks: PT_ECOMM saying so, *exit_code 128 + the
 * first signal. Once the ranks are reaped, removes the /dev/shm
 * regions of the shm provider that ranks killed by a signal could not. Blocking; installs
 * SIGINT/SIGTERM/SIGCHLD handlers for its duration. Not thread-safe (one launch per process at a
 * time). */
pt_status pt_launch(const pt_launch_opts *o, char *const argv[], int *exit_code);

#ifdef __cplusplus
}
#endif
#endif
