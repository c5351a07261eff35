/* pipetrain/link.h — links: how backend memory (activations, their gradients, gradient
 * all-reduces) travels between the ranks of a job. The pipeline runtime sends, receives and
 * reduces through one pt_link and never asks how the bytes move.
 *
 * A *link kind* is one way of moving them: host memory through pt_comm ("host memory"), device
 * memory through pinned host buffers and pt_comm ("host-staged"), device memory through NCCL
 * ("nccl"). Each kind is a table of operations (pt_link_kind); comm/link.c lists the kinds in a
 * fixed order, like NCCL's transport table, and a job takes the first kind whose can_connect
 * accepts every pair of its ranks, from identities every rank exchanged at start-up, so every rank
 * takes the same decision (docs/transports.md says how to add a kind).
 *
 *     pt_link_opts o = { .comm = comm, .be = be, .compute = stream, .msg_bytes = max_msg,
 *                        .n_send_bufs = n_sends, .n_recv_ids = n_actions, .n_recv_bufs = n_recvs,
 *                        .channels = ch, .n_channels = n_ch, .groups = gr, .n_groups = n_gr };
 *     pt_link *l;
 *     PT_CHECK(pt_link_create(&o, &l));                        // collective over every rank
 *     PT_CHECK(pt_link_send_begin(l, 0, act, bytes, next, &id, 0));
 *     PT_CHECK(pt_link_recv_post(l, 7, slot, bytes, prev, &rid, 1, deadline));
 *     PT_CHECK(pt_link_recv_wait(l, 7, deadline, "RECV_GRAD mb 0 chunk 0 from rank 1"));
 *     PT_CHECK(pt_link_send_wait(l, 0, deadline, "SEND_ACT mb 0 chunk 0 to rank 1"));
 *     pt_link_destroy(l, 0);
 *
 * Memory: a send's source and a receive's destination are backend memory (host memory on the cpu
 * backend, device memory on cuda). Sends are buffered: send_begin copies the source into one of
 * the link's staging buffers, so the source may be overwritten once pt_link_send_fence returned
 * (at once for kinds without a fence). Every wait takes an absolute deadline (pt_now_ns units)
 * and names what it waited for. Not thread-safe: one link, one thread. Library code: nothing
 * here prints or exits.
 */
#ifndef PIPETRAIN_LINK_H
#define PIPETRAIN_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/comm.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether a rank may use NCCL (pt_link_peer.nccl). */
enum { PT_LINK_NCCL_NOT_BUILT = 0, PT_LINK_NCCL_OK = 1, PT_LINK_NCCL_OFF = 2 /* PT_NCCL=0 */ };

/* What the other ranks learn about a rank before a kind is chosen: exchanged at pt_link_create,
 * so it is plain data of a fixed size (ranks built differently still agree on it). */
typedef struct pt_link_peer {
    int rank;               /* world rank */
    int device_memory;      /* 1: the rank's backend keeps tensors in device memory */
    int nccl;               /* PT_LINK_NCCL_*: set by the NCCL kind where it is built */
    unsigned char uuid[16]; /* device memory: the GPU's UUID (equal UUIDs = the same GPU) */
    int device;             /* device memory: CUDA ordinal on its host */
    char host[64];          /* host name, for messages */
} pt_link_peer;

/* One pipe of the job: `sender` sends to `receiver` (world ranks) activations (is_grad 0) or
 * gradients (is_grad 1). The schedule validator guarantees that on each pipe the k-th send
 * matches the k-th receive. */
typedef struct pt_link_channel {
    int sender, receiver;
    int is_grad;
} pt_link_channel;

/* One collective group of the job (a tied embedding/head group, a data-parallel group). */
typedef struct pt_link_group {
    int n;                /* members */
    const int *members;   /* world ranks, n of them, borrowed */
    pt_comm_group *g;     /* this rank's pt_comm group for these members (borrowed), NULL when this
                             rank is not a member */
} pt_link_group;

typedef struct pt_link_opts {
    pt_comm *comm;          /* borrowed, must outlive the link */
    const pt_backend *be;   /* borrowed: the backend whose memory travels */
    pt_stream *compute;     /* borrowed: the stream the model computes on */
    size_t msg_bytes;       /* bytes of the largest message (the staging buffers' size) */
    int n_send_bufs;        /* staging buffers for sends, indices 0..n_send_bufs-1 */
    int n_recv_ids;         /* receive indices 0..n_recv_ids-1 (the runtime: its action indices) */
    int n_recv_bufs;        /* receives in flight at once, at most (host buffers of staged kinds) */
    size_t red_floats;      /* largest collective (all-reduce, reduce-scatter, all-gather), floats: sizes the
                               host buffers of staged kinds and the nccl kind's reduce-scatter scratch */
    /* Every pipe and every group of the JOB, in the same order on every rank: kinds with a
     * communicator per pipe or group create them in this order. Borrowed during create only. */
    const pt_link_channel *channels;
    int n_channels;
    const pt_link_group *groups;
    int n_groups;
    int64_t timeout_ms;     /* start-up waits (the identity exchange, communicators) */
    int bf16_messages;      /* 1: every send and receive is of floats holding bf16 values (a bf16 run,
                               model_config.h pt_precision): kinds that can (host memory) move them as
                               2-byte bf16, losslessly; the others move them as they are, and the
                               description says so. Collectives are untouched (fp32). Same on every rank. */
} pt_link_opts;

/* The operations of a kind, on its own state (`st`, made by create). Entries marked optional may
 * be NULL. None of them blocks unless it says so. Errors are pt_status with pt_fail's sentence
 * naming this rank. */
typedef struct pt_link_ops {
    /* Optional: fills this kind's fields of this rank's identity (e.g. its GPU, or whether it may
     * use NCCL) before the exchange. */
    pt_status (*identify)(const pt_link_opts *o, pt_link_peer *me);
    /* Allocates buffers, streams, events, communicators (collective when the kind's are).
     * `note` (cap bytes) may receive a phrase for the description ("2 of 5 send buffers could not
     * be pinned"). *st owned by the link (destroy). */
    pt_status (*create)(const pt_link_opts *o, void **st, char *note, size_t cap);
    /* Frees everything (accepts NULL). abort: the job failed, so peers may be gone: abandon
     * rather than flush. */
    void (*destroy)(void *st, int abort);
    /* Starts sending `bytes` (<= msg_bytes) of backend memory src through staging buffer b to
     * world rank peer, behind the compute stream's work so far; id (pt_comm's message id) and
     * is_grad name the message and its pipe. */
    pt_status (*send_begin)(void *st, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                            int is_grad);
    /* Optional: 1 while send b's message is held back by the link (its copy to the host still
     * running); send_post posts it, waiting (device work only) until deadline_ns. */
    int (*send_held)(void *st, int b);
    pt_status (*send_post)(void *st, int b, int64_t deadline_ns, const char *what);
    /* Optional: makes the compute stream wait (on the device) until every send begun so far has
     * read its source. NULL: send_begin is done with the source when it returns. */
    pt_status (*send_fence)(void *st);
    /* *done = 1 once send b has finished (its buffer is free again); makes progress. */
    pt_status (*send_test)(void *st, int b, int *done);
    /* Blocks until send b has finished or deadline_ns; `what` names it in errors. */
    pt_status (*send_wait)(void *st, int b, int64_t deadline_ns, const char *what);
    /* Posts receive i of `bytes` from world rank peer into backend memory dst (written until
     * recv_wait), behind the compute stream's work so far (dst's last readers). May wait until
     * deadline_ns for a host buffer to come free (device work only). */
    pt_status (*recv_post)(void *st, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                           int64_t deadline_ns);
    /* Blocks until receive i has arrived or deadline_ns; the compute stream is then ordered after
     * the data's arrival in dst. */
    pt_status (*recv_wait)(void *st, int i, int64_t deadline_ns, const char *what);
    /* In-place SUM all-reduce of n floats of backend memory over group `group` (an index into
     * pt_link_opts.groups that this rank is a member of). Blocks until done or deadline_ns. */
    pt_status (*allreduce)(void *st, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
    /* pt_comm_reduce_scatter's fixed-order reduce-scatter of n floats of backend memory over group
     * `group`: afterwards this member's segment (pt_comm_segment over the group's size, at its
     * index in the group) holds x_0 + ... + x_{n-1} left to right in float; the rest of x is
     * undefined. The same bits on every kind. Blocks until done or deadline_ns. */
    pt_status (*reduce_scatter)(void *st, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
    /* All-gather of the members' segments of n floats of backend memory (pt_comm_allgather). */
    pt_status (*allgather)(void *st, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
    /* Forgets every transfer in flight (a pass over an action list starts, or a step failed). */
    void (*reset)(void *st);
    /* 1: the receives of one pipe are matched in the order they are posted (NCCL), so the caller
     * must post them in list order and never let a later one overtake one it cannot post yet. */
    int ordered_recvs;
    /* 1: the kind honours pt_link_opts.bf16_messages (and says so in its note). */
    int packs_bf16;
} pt_link_ops;

/* A link kind: its name, the rule that says whether it can connect two ranks, and its
 * operations.
 *
 * can_connect(a, b, why, cap) is a pure function of the two identities (no environment, no
 * device): every rank evaluates it on the same exchanged data and so takes the same decision. It
 * must refuse when either rank lacks the kind (built without it, or turned off there), so that
 * ranks whose builds list fewer kinds still agree. On refusal it writes why (cap bytes) one phrase
 * naming the ranks, or leaves why empty when the refusal is not worth telling (a kind for another
 * kind of memory). It must accept a == b only where a rank may use the kind on its own. */
typedef struct pt_link_kind {
    const char *name;       /* "host memory", "nccl", "host-staged": the description's first word(s) */
    int (*can_connect)(const pt_link_peer *a, const pt_link_peer *b, char *why, size_t cap);
    const char *why_all;    /* why the kind was taken when no earlier kind explained a refusal */
    const pt_link_ops *ops; /* NULL: this build lacks the kind's transfer code (its rule still answers) */
} pt_link_kind;

/* The built-in table, in the order it is walked: host memory, nccl, host-staged. *n receives its
 * length. Static storage; thread-safe. */
const pt_link_kind *const *pt_link_kinds(int *n);

/* The per-pair walk: the index of the first of kinds[0..n_kinds) whose can_connect accepts (a, b),
 * or -1 when none does. why (cap bytes, may be NULL) receives the first refusal that explained
 * itself, or the chosen kind's why_all. Pure. */
int pt_link_kind_for_pair(const pt_link_kind *const *kinds, int n_kinds, const pt_link_peer *a,
                          const pt_link_peer *b, char *why, size_t cap);

/* THE selection of a job: the index of the first kind that connects every pair of ranks of
 * ids[0..n) (pairs in the order (0,1), (0,2), (1,2), (0,3), ...), so that every pair and every
 * collective group uses that one kind and every rank, walking the same table over the same
 * identities, takes the same decision. -1 when n < 2 (one rank: nothing travels), ids is NULL, or
 * no kind connects every pair. why (cap bytes, may be NULL) receives one phrase: the first
 * refusal of an earlier kind that explained itself (e.g. "ranks 0 and 1 share GPU 0 on node7;
 * NCCL needs one GPU per rank"), else the chosen kind's why_all. Pure. */
int pt_link_select(const pt_link_kind *const *kinds, int n_kinds, const pt_link_peer *ids, int n, char *why,
                   size_t cap);

typedef struct pt_link pt_link;

/* Collective over every rank of o->comm (size >= 2): fills this rank's identity (each kind's
 * identify), gathers every rank's to rank 0 and broadcasts them, selects the kind with
 * pt_link_select over the built-in table and creates it. Returns PT_OK; PT_ENOTSUP when no kind
 * connects the ranks or the chosen kind's code is not in this build (the message says how to
 * rebuild); the exchange's or the kind's error otherwise (naming this rank). *out owned by the
 * caller (pt_link_destroy). */
pt_status pt_link_create(const pt_link_opts *o, pt_link **out);

/* Frees the link (accepts NULL). abort: the job failed (peers may be gone), so communicators are
 * aborted rather than flushed. */
void pt_link_destroy(pt_link *l, int abort);

/* The kind's name and the reason it was chosen, e.g. "host-staged (ranks 0 and 1 share GPU 0 on
 * node7; NCCL needs one GPU per rank)". Borrowed from l. */
const char *pt_link_describe(const pt_link *l);

/* 1 when receives must be posted in list order (pt_link_ops.ordered_recvs). */
int pt_link_ordered_recvs(const pt_link *l);

/* The operations of the chosen kind (pt_link_ops says what each does). Optional operations the
 * kind lacks are no-ops here: pt_link_send_held answers 0, pt_link_send_post and
 * pt_link_send_fence return PT_OK. Out-of-range buffer or receive indices and messages larger than
 * msg_bytes are refused with PT_EINTERNAL (a caller bug). */
pt_status pt_link_send_begin(pt_link *l, int b, const void *src, size_t bytes, int peer, const pt_msg_id *id,
                             int is_grad);
int pt_link_send_held(pt_link *l, int b);
pt_status pt_link_send_post(pt_link *l, int b, int64_t deadline_ns, const char *what);
pt_status pt_link_send_fence(pt_link *l);
pt_status pt_link_send_test(pt_link *l, int b, int *done);
pt_status pt_link_send_wait(pt_link *l, int b, int64_t deadline_ns, const char *what);
pt_status pt_link_recv_post(pt_link *l, int i, void *dst, size_t bytes, int peer, const pt_msg_id *id, int is_grad,
                            int64_t deadline_ns);
pt_status pt_link_recv_wait(pt_link *l, int i, int64_t deadline_ns, const char *what);
pt_status pt_link_allreduce(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
pt_status pt_link_reduce_scatter(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
pt_status pt_link_allgather(pt_link *l, int group, float *x, size_t n, int64_t deadline_ns, const char *what);
void pt_link_reset(pt_link *l);

#ifdef __cplusplus
}
#endif
#endif
