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

/* The RMA path's announce payload (sender -> receiver): where the receiver reads from. */
typedef struct pt_rma_desc {
    uint64_t addr;   /* remote address (virtual address or offset into the MR, per mr_mode) */
    uint64_t key;    /* MR key */
    uint64_t bytes;  /* the sender's size */
} pt_rma_desc;

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
    pt_msg_id id;
    const char *what;              /* collective name, or NULL for p2p */
    uint64_t tag;
    void *buf;
    size_t bytes;
    int mr_idx;                    /* registration held in c->mrs (RMA recv / FI_MR_LOCAL), -1 none */
    struct fid_mr *ann_mr;         /* FI_MR_LOCAL: registration of `ann` (kept while recycled) */
    void *ann_desc;
    struct pt_comm_req *all_next;  /* every request the comm ever allocated (freed at destroy) */
    int stage;                     /* RMA receive: 1 read to post, 2 reading, 3 FIN to post, 4 done */
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
