/* comm/comm_internal.h — shared between the files of comm/ only (bootstrap, fabric transport,
 * collectives). Nothing here is public API. */
#ifndef PT_COMM_INTERNAL_H
#define PT_COMM_INTERNAL_H

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "pipetrain/comm.h"

/* ---- tag layout (64 bits) ----
 *   bit 63      control message (the RMA path's finished / nack, receiver -> sender)
 *   bits 59..62 kind: pt_action_kind of a point-to-point message, PT_COMM_KIND_COLL for collectives
 *   bits 47..58 sending rank
 *   p2p:  bits 31..46 micro-batch, 23..30 chunk, 0..22 step (low bits)
 *   coll: bits 31..46 group id (hash of the member list), 0..30 per-group message sequence */
#define PT_TAG_CTRL (UINT64_C(1) << 63)
#define PT_COMM_KIND_COLL 15
#define PT_TAG_KIND_SHIFT 59
#define PT_TAG_SRC_SHIFT 47
#define PT_TAG_MB_SHIFT 31
#define PT_TAG_CHUNK_SHIFT 23
#define PT_TAG_STEP_MASK ((UINT64_C(1) << 23) - 1)
#define PT_TAG_SEQ_MASK ((UINT64_C(1) << 31) - 1)

/* Immediate data of a tagged message: the sender's byte count, plus a flag for the RMA path's
 * "announce" (payload: a pt_rma_desc of the sender's buffer) and for its "finished" message
 * (receiver -> sender, zero bytes; NACK: the receiver refused the size it holds). */
#define PT_DATA_ANNOUNCE (UINT64_C(1) << 63)
#define PT_DATA_FIN (UINT64_C(1) << 62)
#define PT_DATA_NACK (UINT64_C(1) << 61)
/* With ANNOUNCE: the payload names a shared-memory segment for the direct path (shmbuf.c);
 * with NACK: the receiver could not map it (rather than a size disagreement). */
#define PT_DATA_DIRECT (UINT64_C(1) << 60)
#define PT_DATA_SIZE_MASK ((UINT64_C(1) << 48) - 1)

/* ---- bootstrap (bootstrap.c) ---- */
typedef struct pt_boot_env {
    int rank, size, local_rank, local_size;
    char master_addr[256];
    int master_port;
    const char *source; /* "launcher/torchrun", "srun", "mpirun", "none" */
} pt_boot_env;

/* Reads rank/size/master from the environment (see comm.h). size 1 when nothing is set. */
pt_status pt_boot_env_read(pt_boot_env *e);

/* Result of the rendezvous. */
typedef struct pt_boot {
    int fd_master;        /* rank != 0: socket to rank 0; -1 on rank 0 */
    int *fds;             /* rank 0: [size] sockets to each rank (fds[0] = -1) */
    char local_ip[64];    /* this rank's address as seen by its bootstrap socket */
    char provider[64];    /* provider rank 0 chose */
    char **hostnames;     /* [size], rank 0 only */
} pt_boot;

/* Meets every rank (see comm.h for the checks) and agrees on a provider; `provider_req` is
 * this rank's request (NULL: auto). Blocking until deadline_ns. */
pt_status pt_boot_rendezvous(const pt_boot_env *e, uint64_t config_hash, const char *provider_req,
                             int64_t deadline_ns, pt_boot *b);
/* Every rank sends its endpoint address (or, when addr == NULL, the error text `err`); rank 0
 * gathers them and sends all of them to every rank. *all is malloc'd: size * addr_len bytes.
 * Then rank 0 measures clock offsets; *offset_ns is this rank's. */
pt_status pt_boot_exchange(const pt_boot_env *e, pt_boot *b, const void *addr, size_t addr_len, const char *err,
                           void **all, int64_t *offset_ns, int64_t deadline_ns);
void pt_boot_close(pt_boot *b, int size);

/* ---- peer watch (peers.c) ---- */
/* Where a rank's probe buffer lives (shmbuf.c): its memfd number, inode and size; fd -1 none. */
typedef struct pt_probe_desc {
    int32_t fd;
    uint32_t pad;
    uint64_t ino;
    uint64_t bytes;
} pt_probe_desc;

/* Who a rank is, sent at rendezvous next to its endpoint address (fixed size, plain bytes). */
typedef struct pt_peer_ident {
    uint32_t magic;
    int32_t pid;
    uint64_t start_time;  /* /proc/self/stat starttime (clock ticks since boot) */
    char boot_id[48];     /* /proc/sys/kernel/random/boot_id: same value = same kernel = same host */
    char shm_region[64];  /* shm provider: the name of its /dev/shm region ("" otherwise) */
    pt_probe_desc probe;  /* its probe buffer, for the direct path (shmbuf.c) */
} pt_peer_ident;

/* Fills this process's identity; `shm_region`: this rank's shm region name or NULL. */
void pt_peer_ident_self(pt_peer_ident *id, const char *shm_region);
/* Starts watching the same-host peers among ids[size] (others keep only the deadline). */
pt_status pt_peers_watch(pt_comm *c, const pt_peer_ident *ids);
/* A watched peer that has exited (its rank), or -1. Reads the monitor's record (or, without a
 * monitor, polls the pidfds); once a peer is seen dead the answer stays, and the dead peer's
 * shm region name is unlinked (it could not). Called from the comm's thread only. */
int pt_peers_dead(pt_comm *c);
/* 1 when `peer` is a watched peer that has ended, asking its pidfd at once when the monitor has
 * not said so yet (then recording it as pt_peers_dead would). Comm's thread only. */
int pt_peers_exited(pt_comm *c, int peer);
/* 1 when the watched `peer` has ended, whatever was recorded before (asks its pidfd; records
 * nothing): after one peer died, its launcher stops the others of its node, and a wait on one of
 * those must end too, not at its deadline. Comm's thread only. */
int pt_peers_gone(pt_comm *c, int peer);
/* Records (pt_fail, PT_ECOMM) "rank D (pid P) exited while rank R <waiting_for>" and returns it. */
pt_status pt_peers_fail(pt_comm *c, const char *waiting_for);
/* Stops the monitor thread (joins it) and closes the pidfds. */
void pt_peers_close(pt_comm *c);

/* Getting out of a libfabric call that a dead peer's lock holds forever. Public entry points
 * that call into libfabric run their body under PT_FAB_GUARDED (fabric.c): a jump buffer is
 * pushed, and every libfabric call is made through PT_FI, which lets the monitor's signal jump
 * back out of a call stuck after a peer died. The entry point then returns PT_ECOMM naming the
 * dead rank, and the comm never enters libfabric again (PT_FI jumps back at once, and
 * pt_fabric_close leaves the provider's objects alone). */
sigjmp_buf *pt_escape_push(sigjmp_buf *env);
void pt_escape_pop(sigjmp_buf *prev);
void pt_fab_enter(pt_comm *c);
ssize_t pt_fab_leave(pt_comm *c, ssize_t ret);
/* After the jump: pops `prev`, re-enables the signal, marks the comm escaped, and records the
 * dead-peer error (not when waiting_for is NULL). Returns PT_ECOMM. */
pt_status pt_peers_escaped(pt_comm *c, sigjmp_buf *prev, const char *waiting_for);

#define PT_FI(c, expr) (pt_fab_enter(c), pt_fab_leave((c), (ssize_t)(expr)))

/* ---- fabric (fabric.c) ---- */
typedef struct pt_mr_entry {
    uintptr_t base;
    size_t len;
    struct fid_mr *mr;
    void *desc;
    uint64_t key;
    int refs;
    uint64_t last_use;
} pt_mr_entry;

enum { PT_OP_SEND, PT_OP_RECV, PT_OP_CTRL_SEND, PT_OP_CTRL_RECV, PT_OP_READ, PT_N_OPS };

/* The announce payload of the RMA and direct paths (sender -> receiver): where the receiver
 * reads from. One layout for both, so the receiver checks one descriptor size. */
typedef struct pt_rma_desc {
    uint64_t addr;      /* RMA: remote address (virtual address or offset into the MR, per mr_mode);
                           direct: offset of the message in the segment */
    uint64_t key;       /* RMA: MR key; direct: 0 */
    uint64_t bytes;     /* the sender's size */
    uint64_t seg_ino;   /* direct: the segment's inode (checks the descriptor taken) */
    uint64_t seg_bytes; /* direct: the segment's size */
    int32_t seg_fd;     /* direct: the segment's memfd number in the sender; RMA: -1 */
    uint32_t pad;
} pt_rma_desc;

/* ---- shared-memory buffers and the direct path (shmbuf.c) ---- */
/* Where a buffer from pt_comm_buf_alloc lies. */
typedef struct pt_shm_ref {
    int fd;
    uint64_t ino;
    size_t seg_bytes, offset;
} pt_shm_ref;

/* A peer's segment mapped here (read-only), cached per communicator. */
typedef struct pt_peer_map {
    void *base;          /* NULL: free slot */
    size_t len;
    int peer;
    int32_t fd;          /* the segment's descriptor number in the peer */
    uint64_t ino;
    uint64_t last_use;
} pt_peer_map;
#define PT_PEER_MAPS 64

struct pt_comm;
/* 1 and *ref filled when [buf, buf+bytes) lies inside one shareable pt_comm_buf_alloc buffer.
 * Thread-safe. */
int pt_shmbuf_find(const void *buf, size_t bytes, pt_shm_ref *ref);
/* The address, in this process, of the message a direct announce `d` from `peer` names
 * (mapping the segment, or reusing the cached mapping); NULL with the reason in `why`. */
const void *pt_shmbuf_peer_map(struct pt_comm *c, int peer, const pt_rma_desc *d, char *why, size_t why_cap);
/* Allocates this rank's probe buffer, copies `self` into it and fills *out (fd -1: none). */
pt_status pt_shmbuf_probe_create(struct pt_comm *c, const pt_peer_ident *self, pt_probe_desc *out);
/* 1 when this rank can map `peer`'s buffers: its probe maps and reads back its identity. */
int pt_shmbuf_probe_peer(struct pt_comm *c, int peer, const pt_peer_ident *id);
/* Unmaps every cached mapping and frees the probe and direct_to. */
void pt_shmbuf_close(struct pt_comm *c);

struct pt_comm_req;
typedef struct pt_comm_op {
    struct fi_context2 ctx; /* must be first: libfabric hands back &ctx */
    struct pt_comm_req *req;
    int which;
} pt_comm_op;

struct pt_comm_req {
    pt_comm_op ops[PT_N_OPS];
    struct pt_comm_req *next;      /* free list / pending-post list / rma list */
    int is_send, peer, rma, abandoned, n_pending;
    int direct;                    /* rma == 1 by the direct path: the receiver memcpy's from shared memory */
    pt_msg_id id;
    const char *what;              /* collective name, or NULL for p2p */
    uint64_t tag;
    void *buf;
    size_t bytes;
    int mr_idx;                    /* registration held in c->mrs (RMA recv / FI_MR_LOCAL), -1 none */
    struct fid_mr *ann_mr;         /* FI_MR_LOCAL: registration of `ann` (kept while recycled) */
    void *ann_desc;
    struct pt_comm_req *all_next;  /* every request the comm ever allocated (freed at destroy) */
    int stage;                     /* RMA receive: 1 read (direct: copy) to post, 2 reading, 3 FIN to post,
                                      4 done */
    int done;
    pt_rma_desc ann;               /* send: the announce payload; recv: the sender's buffer */
    int post_pending;              /* RMA receive: stage 1 or 3 waits in post_queue (-FI_EAGAIN) */
    pt_status st;
    char err[320];
};

struct pt_comm_group {
    pt_comm *c;
    int *ranks;
    int n, me;
    uint64_t id;      /* 16-bit hash of the member list */
    uint64_t seq;     /* next message sequence number */
};

struct pt_comm {
    int rank, size, local_rank, local_size;
    int64_t timeout_ms;
    int64_t clock_offset_ns;
    char provider[64];
    char local_ip[64];        /* the address the endpoint was opened on (tcp-like providers; pt_comm_dup) */
    int64_t patient_nap_ns;   /* pt_comm_set_patient: > 0, waits nap at once, up to this long; 0: default */
    /* libfabric */
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_av *av;
    struct fid_cq *cq;
    struct fid_ep *ep;
    fi_addr_t *addrs;         /* [size] */
    int cq_waitable;          /* CQ has a wait object (fi_cq_sread) */
    uint64_t mr_mode;
    size_t inject_size;
    size_t rma_min;           /* messages of at least this size go by RMA read; SIZE_MAX: never */
    size_t direct_min;        /* messages of at least this size from a pt_comm_buf_alloc buffer go by
                                 the direct path to peers in direct_to; SIZE_MAX: never */
    uint64_t next_key, use_clock;
    pt_mr_entry *mrs;
    int n_mrs, cap_mrs;
    pt_comm_req *free_reqs;   /* recycled requests */
    pt_comm_req *all_reqs;    /* every request allocated (chained through all_next) */
    int rma_ok;               /* the provider offers FI_RMA with remote CQ data */
    pt_comm_req *post_queue;  /* RMA receives whose read or FIN waits to be posted (-FI_EAGAIN) */
    pt_comm_req *zombies;     /* abandoned requests with operations still in the provider */
    pt_comm_group *world;
    /* Overflow sink: tagged receives get it as a second iov entry so a sender with more
     * bytes than expected (by up to sink_bytes) does not truncate (which some providers turn
     * into a hang or a broken connection) and its real size can be reported. Reserved, never
     * read; pages are only touched by such a faulty sender. NULL when the provider cannot. */
    void *sink;
    size_t sink_bytes;
    /* same-host peer watch (peers.c) */
    struct pollfd *peer_poll; /* [n_watched] pidfds of the watched peers */
    int *peer_poll_rank;      /* [n_watched] their ranks */
    int *peer_pid;            /* [size] every rank's pid as it reported it (0: unknown) */
    char (*peer_region)[64];  /* [size] each rank's shm region name ("" none) */
    int n_watched;
    int dead_rank;            /* a watched peer seen exited, -1 none; then libfabric is not entered */
    char own_region[64];      /* this rank's shm region name ("" none) */
    int *peer_pidfd;          /* [size] pidfd of each watched peer, -1 otherwise (owned by peer_poll) */
    /* the direct path (shmbuf.c) */
    unsigned char *direct_to; /* [size] 1: that peer maps our buffers (it said so at connection) */
    unsigned char *can_map;   /* [size] 1: we can map that peer's buffers (probed at rendezvous) */
    void *probe;              /* this rank's probe buffer until every peer has probed it */
    pt_peer_map maps[PT_PEER_MAPS];
    uint64_t map_clock;
    uint64_t direct_bytes;    /* sent and received by the direct path (pt_comm_direct_bytes) */
    /* the monitor thread (peers.c): sleeps in poll() on the pidfds; on a death it stores the
     * rank in dead_async and, if this comm's thread is inside libfabric, signals it out */
    int monitor_on;
    pthread_t monitor;
    int monitor_stop[2];      /* pipe: closing the write end stops the monitor */
    _Atomic int dead_async;   /* rank seen dead by the monitor, -1 none */
    _Atomic int in_fabric;    /* the comm's thread is inside a libfabric call */
    _Atomic uint64_t fab_seq; /* libfabric calls entered so far */
    int escaped;              /* a call was interrupted: libfabric is never entered again */
    pthread_t fabric_thread;  /* that thread (written before in_fabric is set) */
    /* collective scratch (grown once, reused) */
    void *scratch;
    size_t scratch_bytes;
};

/* Name of a message kind for errors ("SEND_ACT", "all-reduce", ...). */
const char *pt_comm_kind_name(int kind);

/* Internal point-to-point with a ready-made tag (collectives). `what` names the operation. */
pt_status pt_comm_isend_tag(pt_comm *c, int peer, uint64_t tag, const char *what, const void *buf, size_t bytes,
                            pt_comm_req **out);
pt_status pt_comm_irecv_tag(pt_comm *c, int peer, uint64_t tag, const char *what, void *buf, size_t bytes,
                            pt_comm_req **out);

/* Opens the endpoint for `provider` (node: local IP for tcp-like providers). */
pt_status pt_fabric_open(pt_comm *c, const char *provider, const char *local_ip);
/* Inserts the peers' addresses (size * addr_len bytes). */
pt_status pt_fabric_insert(pt_comm *c, const void *all, size_t addr_len);
void pt_fabric_close(pt_comm *c);

#endif
