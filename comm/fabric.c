/* comm/fabric.c — the libfabric transport: one RDM endpoint per process, size-checked tagged
 * messages, an opt-in RMA-read rendezvous for large ones, a cache of memory registrations, and
 * completion handling with bounded, CPU-friendly waits.
 *
 * Protocol. Every tagged data message carries the sender's byte count as immediate data, so
 * the receiver compares it with what it expects before it accepts anything. With
 * PT_COMM_RMA_MIN set, a sender of at least that many bytes uses the RMA path instead:
 *   sender:   registers its buffer, posts a receive for the FIN (tag T|CTRL) and sends an
 *             "announce" (tag T, immediate data ANNOUNCE | size, payload: address and key);
 *   receiver: its one tagged receive (tag T) gets the announce; if the size is what it expects
 *             it fi_read()s the payload straight into its buffer and, once the read has
 *             completed, sends a zero-byte FIN (tag T|CTRL); if not, it fails naming both sizes
 *             and sends a NACK FIN carrying its own size, so the sender fails as well.
 * The receiver never has to know in advance which path the sender takes, no data moves before
 * the sizes agree, and the data is in place when the read completes (no remote completion or
 * ordering to rely on: writes with remote CQ data lost completions on libfabric 1.17's shm and
 * tcp;ofi_rxm when a rank talked to two peers at once). */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fi_errno.h>

#include "comm_internal.h"
#include "pipetrain/timeutil.h"

#define SPIN_NS 30000          /* busy-poll this long before sleeping on the CQ */
#define SREAD_MAX_MS 50        /* one blocking CQ read at most this long (re-checks the deadline) */
#define NAP_BIG_BYTES ((size_t)4 << 20) /* waits for messages this large nap at once (see nap()) */
#define CQ_BATCH 16
#define DIRECT_MIN_DEFAULT ((size_t)8 << 10) /* direct path from here: faster than tagged from 8 KiB (bench/results/comm.md) */
#define MR_ACCESS (FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE)

static const char *const kind_names[] = { "FORWARD", "BACKWARD", "BACKWARD_INPUT", "BACKWARD_WEIGHT",
                                          "SEND_ACT", "RECV_ACT", "SEND_GRAD", "RECV_GRAD",
                                          "REDUCE_GRADS", "OPTIMIZER_STEP" };

const char *pt_comm_kind_name(int kind)
{
    if (kind >= 0 && kind < (int)(sizeof kind_names / sizeof kind_names[0]))
        return kind_names[kind];
    return kind == PT_COMM_KIND_COLL ? "collective" : kind == PT_COMM_KIND_SNAPSHOT ? "snapshot copy" : "message";
}

/* "RECV_ACT mb 3 chunk 0 step 7" or the collective's name */
static void describe(const pt_comm_req *r, char *out, size_t cap)
{
    if (r->what)
        snprintf(out, cap, "%s message", r->what);
    else
        snprintf(out, cap, "%s mb %d chunk %d step %lld", pt_comm_kind_name(r->id.kind), r->id.microbatch,
                 r->id.chunk, (long long)r->id.step);
}

static void fi_fail_text(char *out, size_t cap, int err)
{
    snprintf(out, cap, "%s", fi_strerror(err < 0 ? -err : err));
}

/* ---------------------------------------------------------------- endpoint */

static pt_status fab_err(pt_comm *c, const char *what, int ret)
{
    return pt_fail(PT_ECOMM, "rank %d: libfabric %s failed for provider %s: %s (%d)", c->rank, what, c->provider,
                   fi_strerror(-ret), ret);
}

static struct fi_info *make_hints(const char *prov, int with_rma)
{
    struct fi_info *h = fi_allocinfo();
    if (!h)
        return NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_TAGGED | (with_rma ? FI_RMA : 0);
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    h->fabric_attr->prov_name = strdup(prov);
    return h;
}

pt_status pt_fabric_open(pt_comm *c, const char *provider, const char *local_ip)
{
    char prov[64];
    if (strcmp(provider, "tcp") == 0 || strcmp(provider, "verbs") == 0)
        snprintf(prov, sizeof prov, "%s;ofi_rxm", provider);
    else
        snprintf(prov, sizeof prov, "%s", provider);
    snprintf(c->provider, sizeof c->provider, "%s", prov);
    int is_shm = strcmp(prov, "shm") == 0;
    const char *node = (!is_shm && local_ip && *local_ip) ? local_ip : NULL;
    int ret = -FI_ENODATA;
    c->rma_ok = 0;
    for (int attempt = 0; attempt < 4 && ret; attempt++) {
        int with_rma = attempt < 2;
        const char *n = (attempt % 2 == 0) ? node : NULL;
        if (attempt % 2 == 1 && !node)
            continue;
        struct fi_info *h = make_hints(prov, with_rma);
        if (!h)
            return pt_fail(PT_ENOMEM, "rank %d: out of memory for libfabric hints", c->rank);
        ret = fi_getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), n, NULL, n ? FI_SOURCE : 0, h, &c->info);
        fi_freeinfo(h);
        if (ret == 0)
            c->rma_ok = with_rma;
    }
    if (ret)
        return pt_fail(PT_ECOMM, "rank %d: libfabric has no reliable-datagram endpoint with tagged messages for provider "
                                 "'%s' (%s); run `fi_info -t FI_EP_RDM` to list providers and set PT_FABRIC_PROVIDER",
                       c->rank, prov, fi_strerror(-ret));
    if (c->info->domain_attr->cq_data_size < 8)
        c->rma_ok = 0; /* the size check and RMA ids need 8 bytes of immediate data */
    if (c->info->domain_attr->cq_data_size < 6)
        return pt_fail(PT_ENOTSUP, "rank %d: provider %s carries only %zu bytes of immediate data (pipetrain needs 6); "
                                   "choose another PT_FABRIC_PROVIDER", c->rank, prov,
                       c->info->domain_attr->cq_data_size);
    if (is_shm) {
        /* shm names its /dev/shm region after the pid by default; a region left by a killed
         * process whose pid comes round again makes fi_enable fail with EBUSY. The name, and so
         * the endpoint address, has one length whatever the pid's digits (the rendezvous needs
         * every rank's address to be as long as rank 0's): the hex part takes up what the pid
         * leaves of 24 characters, and pipetrain-PID- stays the prefix the launcher removes. */
        char name[64], pid_s[16];
        int pl = snprintf(pid_s, sizeof pid_s, "%d", (int)getpid());
        snprintf(name, sizeof name, "pipetrain-%s-%0*llx", pid_s, 24 - pl, (unsigned long long)pt_now_ns());
        char *dup = strdup(name);
        if (!dup)
            return pt_fail(PT_ENOMEM, "rank %d: out of memory", c->rank);
        free(c->info->src_addr);
        c->info->src_addr = dup;
        c->info->src_addrlen = strlen(dup) + 1;
    }
    c->mr_mode = (uint64_t)c->info->domain_attr->mr_mode;
    c->inject_size = c->info->tx_attr->inject_size;
    if (c->info->fabric_attr->prov_name)
        snprintf(c->provider, sizeof c->provider, "%s", c->info->fabric_attr->prov_name);
    if ((ret = fi_fabric(c->info->fabric_attr, &c->fabric, NULL)))
        return fab_err(c, "fi_fabric", ret);
    if ((ret = fi_domain(c->fabric, c->info, &c->domain, NULL)))
        return fab_err(c, "fi_domain", ret);
    struct fi_av_attr av_attr = { .type = FI_AV_TABLE, .count = (size_t)c->size };
    if ((ret = fi_av_open(c->domain, &av_attr, &c->av, NULL)))
        return fab_err(c, "fi_av_open", ret);
    /* Only a file-descriptor wait object is a real sleep that wakes on arrival (shm's default
     * "yield" wait neither progresses nor honours the timeout here); without one, waits
     * yield and nap in pt_comm_wait instead. */
    struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_FD };
    c->cq_waitable = 1;
    if (fi_cq_open(c->domain, &cq_attr, &c->cq, NULL) != 0) {
        cq_attr.wait_obj = FI_WAIT_NONE; /* no wait object: waits yield the CPU instead */
        c->cq_waitable = 0;
        if ((ret = fi_cq_open(c->domain, &cq_attr, &c->cq, NULL)))
            return fab_err(c, "fi_cq_open", ret);
    }
    if ((ret = fi_endpoint(c->domain, c->info, &c->ep, NULL)))
        return fab_err(c, "fi_endpoint", ret);
    if ((ret = fi_ep_bind(c->ep, &c->av->fid, 0)))
        return fab_err(c, "fi_ep_bind(av)", ret);
    if ((ret = fi_ep_bind(c->ep, &c->cq->fid, FI_TRANSMIT | FI_RECV)))
        return fab_err(c, "fi_ep_bind(cq)", ret);
    if ((ret = fi_enable(c->ep)))
        return fab_err(c, "fi_enable", ret);
    c->rma_min = SIZE_MAX; /* RMA path is opt-in: see docs/comm.md */
    const char *env = getenv("PT_COMM_RMA_MIN");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (strcmp(env, "off") == 0 || strcmp(env, "never") == 0)
            c->rma_min = SIZE_MAX;
        else if (*end == 0)
            c->rma_min = (size_t)v;
        else
            return pt_fail(PT_EINVAL, "PT_COMM_RMA_MIN=%s: expected a byte count or 'off'", env);
    }
    if (!c->rma_ok)
        c->rma_min = SIZE_MAX;
    c->direct_min = DIRECT_MIN_DEFAULT;
    env = getenv("PT_COMM_DIRECT_MIN");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (strcmp(env, "off") == 0 || strcmp(env, "never") == 0)
            c->direct_min = SIZE_MAX;
        else if (*end == 0)
            c->direct_min = (size_t)v;
        else
            return pt_fail(PT_EINVAL, "PT_COMM_DIRECT_MIN=%s: expected a byte count or 'off'", env);
    }
    if (c->info->domain_attr->cq_data_size < 8)
        c->direct_min = SIZE_MAX; /* the announce's flags need 8 bytes of immediate data */
    if (!(c->mr_mode & FI_MR_LOCAL) && c->info->rx_attr->iov_limit >= 2) {
        size_t sink = (size_t)1 << 30;
        void *p = mmap(NULL, sink, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            c->sink = p;
            c->sink_bytes = sink;
        }
    }
    c->addrs = calloc((size_t)c->size, sizeof *c->addrs);
    if (!c->addrs)
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for %d addresses", c->rank, c->size);
    return PT_OK;
}

pt_status pt_fabric_insert(pt_comm *c, const void *all, size_t addr_len)
{
    (void)addr_len;
    int n = fi_av_insert(c->av, all, (size_t)c->size, c->addrs, 0, NULL);
    if (n != c->size)
        return pt_fail(PT_ECOMM, "rank %d: libfabric fi_av_insert took %d of %d addresses (provider %s): %s", c->rank,
                       n, c->size, c->provider, n < 0 ? fi_strerror(-n) : "some were refused");
    return PT_OK;
}

static void req_free_all(pt_comm *c);

void pt_fabric_close(pt_comm *c)
{
    /* After an escape (peers.c) the provider's objects are left as they are: closing them could
     * spin on the dead peer's lock again. Only the name of our shm region goes. */
    sigjmp_buf env;
    sigjmp_buf *prev = pt_escape_push(&env);
    if (sigsetjmp(env, 0) != 0)
        pt_peers_escaped(c, prev, NULL);
    if (c->escaped) {
        if (c->own_region[0])
            (void)shm_unlink(c->own_region);
        c->ep = NULL;
        c->cq = NULL;
        c->av = NULL;
        c->domain = NULL;
        c->fabric = NULL;
        for (int i = 0; i < c->n_mrs; i++)
            c->mrs[i].mr = NULL;
    }
    if (c->ep)
        PT_FI(c, fi_close(&c->ep->fid));
    c->ep = NULL;
    for (int i = 0; i < c->n_mrs; i++)
        if (c->mrs[i].mr)
            PT_FI(c, fi_close(&c->mrs[i].mr->fid));
    free(c->mrs);
    c->mrs = NULL;
    c->n_mrs = c->cap_mrs = 0;
    if (!c->escaped)
        req_free_all(c);
    if (c->cq)
        PT_FI(c, fi_close(&c->cq->fid));
    if (c->av)
        PT_FI(c, fi_close(&c->av->fid));
    if (c->domain)
        PT_FI(c, fi_close(&c->domain->fid));
    if (c->fabric)
        PT_FI(c, fi_close(&c->fabric->fid));
    pt_escape_pop(prev);
    c->cq = NULL;
    c->av = NULL;
    c->domain = NULL;
    c->fabric = NULL;
    if (c->info)
        fi_freeinfo(c->info);
    c->info = NULL;
    free(c->addrs);
    c->addrs = NULL;
    if (c->sink)
        munmap(c->sink, c->sink_bytes);
    c->sink = NULL;
}

/* ---------------------------------------------------------------- memory registration cache */

/* Finds or makes a registration covering [buf, buf+bytes); returns its index (a reference is
 * held until mr_put) or -1 with the error recorded. Registrations are kept (LRU, evicted only
 * when unused) because the runtime sends from and receives into the same buffers every step. */
static int mr_get(pt_comm *c, const void *buf, size_t bytes)
{
    uintptr_t a = (uintptr_t)buf;
    int lru = -1;
    for (int i = 0; i < c->n_mrs; i++) {
        pt_mr_entry *m = &c->mrs[i];
        if (m->mr && m->base <= a && a + bytes <= m->base + m->len) {
            m->refs++;
            m->last_use = ++c->use_clock;
            return i;
        }
        if (m->refs == 0 && (lru < 0 || !m->mr || m->last_use < c->mrs[lru].last_use))
            lru = i;
    }
    int slot = lru;
    if (slot < 0 || (c->n_mrs < 64 && c->mrs[slot].mr)) {
        if (c->n_mrs == c->cap_mrs) {
            int cap = c->cap_mrs ? 2 * c->cap_mrs : 16;
            pt_mr_entry *n = realloc(c->mrs, sizeof *n * (size_t)cap);
            if (!n) {
                pt_fail(PT_ENOMEM, "rank %d: out of memory for memory registrations", c->rank);
                return -1;
            }
            c->mrs = n;
            c->cap_mrs = cap;
        }
        slot = c->n_mrs++;
        memset(&c->mrs[slot], 0, sizeof c->mrs[slot]);
    }
    pt_mr_entry *m = &c->mrs[slot];
    if (m->mr)
        fi_close(&m->mr->fid);
    memset(m, 0, sizeof *m);
    struct fid_mr *mr;
    uint64_t key = (c->mr_mode & FI_MR_PROV_KEY) ? 0 : ++c->next_key;
    int ret = fi_mr_reg(c->domain, buf, bytes ? bytes : 1, MR_ACCESS, 0, key, 0, &mr, NULL);
    if (ret == 0 && (c->mr_mode & FI_MR_ENDPOINT)) {
        ret = fi_mr_bind(mr, &c->ep->fid, 0);
        if (ret == 0)
            ret = fi_mr_enable(mr);
        if (ret)
            fi_close(&mr->fid);
    }
    if (ret) {
        pt_fail(PT_ECOMM, "rank %d: libfabric fi_mr_reg of %zu bytes failed (provider %s): %s", c->rank, bytes,
                c->provider, fi_strerror(-ret));
        return -1;
    }
    m->base = a;
    m->len = bytes ? bytes : 1;
    m->mr = mr;
    m->desc = fi_mr_desc(mr);
    m->key = fi_mr_key(mr);
    m->refs = 1;
    m->last_use = ++c->use_clock;
    return slot;
}

static void mr_put(pt_comm *c, int idx)
{
    if (idx >= 0 && idx < c->n_mrs && c->mrs[idx].refs > 0)
        c->mrs[idx].refs--;
}

/* ---------------------------------------------------------------- requests */

static void req_free_all(pt_comm *c)
{
    pt_comm_req *r = c->all_reqs;
    while (r) {
        pt_comm_req *n = r->all_next;
        if (r->ann_mr)
            fi_close(&r->ann_mr->fid);
        free(r);
        r = n;
    }
    c->all_reqs = c->free_reqs = c->post_queue = c->zombies = NULL;
}

static pt_comm_req *req_get(pt_comm *c)
{
    pt_comm_req *r = c->free_reqs;
    if (r) {
        c->free_reqs = r->next;
    } else {
        r = calloc(1, sizeof *r);
        if (!r) {
            pt_fail(PT_ENOMEM, "rank %d: out of memory for a request", c->rank);
            return NULL;
        }
        r->all_next = c->all_reqs;
        c->all_reqs = r;
        if (c->mr_mode & FI_MR_LOCAL) {
            int ret = fi_mr_reg(c->domain, &r->ann, sizeof r->ann, MR_ACCESS, 0,
                                (c->mr_mode & FI_MR_PROV_KEY) ? 0 : ++c->next_key, 0, &r->ann_mr, NULL);
            if (ret == 0 && (c->mr_mode & FI_MR_ENDPOINT) && (ret = fi_mr_bind(r->ann_mr, &c->ep->fid, 0)) == 0)
                ret = fi_mr_enable(r->ann_mr);
            if (ret) {
                if (r->ann_mr)
                    fi_close(&r->ann_mr->fid);
                r->ann_mr = NULL;
                pt_fail(PT_ECOMM, "rank %d: libfabric fi_mr_reg of a control buffer failed: %s", c->rank,
                        fi_strerror(-ret));
                return NULL; /* stays on all_reqs, freed at destroy */
            }
            r->ann_desc = fi_mr_desc(r->ann_mr);
        }
    }
    struct fid_mr *keep_mr = r->ann_mr;
    void *keep_desc = r->ann_desc;
    pt_comm_req *keep_all = r->all_next;
    memset(r, 0, sizeof *r);
    r->ann_mr = keep_mr;
    r->ann_desc = keep_desc;
    r->all_next = keep_all;
    r->mr_idx = -1;
    for (int i = 0; i < PT_N_OPS; i++) {
        r->ops[i].req = r;
        r->ops[i].which = i;
    }
    return r;
}

static void req_put(pt_comm *c, pt_comm_req *r)
{
    mr_put(c, r->mr_idx);
    r->mr_idx = -1;
    r->next = c->free_reqs;
    c->free_reqs = r;
}

static void list_remove(pt_comm_req **head, pt_comm_req *r)
{
    for (pt_comm_req **p = head; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            r->next = NULL;
            return;
        }
}

/* Records the first error of a request (the message goes to r->err: other completions may be
 * handled before its owner looks). */
static void req_error(pt_comm_req *r, pt_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void req_error(pt_comm_req *r, pt_status st, const char *fmt, ...)
{
    if (r->st != PT_OK)
        return;
    r->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

static void mismatch(pt_comm *c, pt_comm_req *r, unsigned long long sent)
{
    char d[128];
    describe(r, d, sizeof d);
    if (r->is_send)
        req_error(r, PT_ECOMM, "rank %d sends %zu B for %s, rank %d expected %llu B; both sides must agree on the "
                               "shapes (same micro-batch size, sequence length, model and plan)",
                  c->rank, r->bytes, d, r->peer, sent);
    else
        req_error(r, PT_ECOMM, "rank %d sent %llu B for %s, rank %d expected %zu B; both sides must agree on the "
                               "shapes (same micro-batch size, sequence length, model and plan)",
                  r->peer, sent, d, c->rank, r->bytes);
}

static void update_done(pt_comm *c, pt_comm_req *r)
{
    if (r->n_pending > 0 || r->done)
        return;
    if (!r->abandoned && r->st == PT_OK && r->rma && !r->is_send && r->stage != 4)
        return;
    if (r->post_pending) {
        list_remove(&c->post_queue, r);
        r->post_pending = 0;
    }
    r->done = 1;
    if (r->abandoned) {
        list_remove(&c->zombies, r);
        req_put(c, r);
    }
}

static pt_status progress(pt_comm *c);

/* Runs `call` (a pt_status expression) as a public entry point's body: a libfabric call inside
 * it that a dead peer's lock holds comes back here (peers.c) and the entry point returns
 * PT_ECOMM naming the dead rank. Returns from the enclosing function. */
#define PT_FAB_GUARDED(c, waiting_for, call)                                                      \
    do {                                                                                          \
        sigjmp_buf env_;                                                                          \
        sigjmp_buf *prev_ = pt_escape_push(&env_);                                                \
        if (sigsetjmp(env_, 0) != 0)                                                              \
            return pt_peers_escaped((c), prev_, (waiting_for));                                   \
        pt_status st_ = (call);                                                                   \
        pt_escape_pop(prev_);                                                                     \
        return st_;                                                                               \
    } while (0)

/* Zero-byte FIN (or NACK) from receiver to sender on tag T|CTRL. Returns the libfabric code. */
static ssize_t send_fin(pt_comm *c, pt_comm_req *r, uint64_t data)
{
    if (c->inject_size > 0)
        return PT_FI(c, fi_tinjectdata(c->ep, NULL, 0, data, c->addrs[r->peer], r->tag | PT_TAG_CTRL));
    ssize_t ret = PT_FI(c, fi_tsenddata(c->ep, NULL, 0, NULL, data, c->addrs[r->peer], r->tag | PT_TAG_CTRL,
                                        &r->ops[PT_OP_CTRL_SEND]));
    if (ret == 0)
        r->n_pending++;
    return ret;
}

/* Moves an RMA receive on: posts its read (stage 1) or its FIN (stage 3). Called from completion
 * handling, so -FI_EAGAIN queues it for the next progress call instead of looping. */
static void receiver_advance(pt_comm *c, pt_comm_req *r)
{
    ssize_t ret;
    if (r->stage == 1 && r->direct) {
        /* the direct path: one memcpy out of the sender's shared buffer, then the FIN */
        char why[200];
        const void *src = pt_shmbuf_peer_map(c, r->peer, &r->ann, why, sizeof why);
        if (!src) {
            char d[128];
            describe(r, d, sizeof d);
            if (pt_peers_exited(c, r->peer)) { /* its buffer went with it before we mapped it */
                char w[200];
                snprintf(w, sizeof w, "was taking %s from its shared buffer", d);
                pt_status st = pt_peers_fail(c, w);
                req_error(r, st, "%s", pt_last_error());
                return;
            }
            req_error(r, PT_ECOMM, "rank %d: cannot read %s from rank %d's shared buffer: %s; set "
                                   "PT_COMM_DIRECT_MIN=off on every rank to send without it", c->rank, d, r->peer, why);
            send_fin(c, r, PT_DATA_NACK | PT_DATA_DIRECT | (uint64_t)r->bytes); /* best effort */
            return;
        }
        pt_comm_memcpy(r->buf, src, r->bytes);
        c->direct_bytes += r->bytes;
        r->stage = 3;
        if (pt_peers_dead(c) == r->peer) { /* the data is here; nobody is left to tell */
            r->stage = 4;
            return;
        }
    }
    if (r->stage == 1) {
        void *desc = NULL;
        if ((c->mr_mode & FI_MR_LOCAL) && r->mr_idx < 0) {
            r->mr_idx = mr_get(c, r->buf, r->bytes);
            if (r->mr_idx < 0) {
                req_error(r, PT_ECOMM, "%s", pt_last_error());
                return;
            }
        }
        if (r->mr_idx >= 0)
            desc = c->mrs[r->mr_idx].desc;
        ret = PT_FI(c, fi_read(c->ep, r->buf, r->bytes, desc, c->addrs[r->peer], r->ann.addr, r->ann.key,
                               &r->ops[PT_OP_READ]));
        if (ret == 0) {
            r->n_pending++;
            r->stage = 2;
        }
    } else if (r->stage == 3) {
        ret = send_fin(c, r, PT_DATA_FIN | (uint64_t)r->bytes);
        if (ret == 0)
            r->stage = 4;
    } else {
        return;
    }
    if (ret == -FI_EAGAIN) {
        if (!r->post_pending) {
            r->post_pending = 1;
            r->next = c->post_queue;
            c->post_queue = r;
        }
        return;
    }
    if (r->post_pending) {
        list_remove(&c->post_queue, r);
        r->post_pending = 0;
    }
    if (ret) {
        char d[128];
        describe(r, d, sizeof d);
        req_error(r, PT_ECOMM, "rank %d: RMA %s of %s from rank %d failed: %s; check rank %d's log", c->rank,
                  r->stage == 1 ? "read" : "completion message", d, r->peer, fi_strerror((int)-ret), r->peer);
    }
}

static void on_completion(pt_comm *c, const struct fi_cq_tagged_entry *e)
{
    if (e->flags & FI_REMOTE_WRITE)
        return; /* nothing of ours writes remotely with completion data */
    pt_comm_op *op = e->op_context;
    if (!op)
        return;
    pt_comm_req *r = op->req;
    r->n_pending--;
    int has_data = (e->flags & FI_REMOTE_CQ_DATA) != 0;
    switch (op->which) {
    case PT_OP_RECV: {
        uint64_t sent = has_data ? (e->data & PT_DATA_SIZE_MASK) : e->len;
        if (has_data && (e->data & PT_DATA_ANNOUNCE)) {
            if (sent != r->bytes || e->len != sizeof r->ann) {
                if (sent != r->bytes) {
                    mismatch(c, r, sent);
                } else {
                    char d[128];
                    describe(r, d, sizeof d);
                    req_error(r, PT_ECOMM, "rank %d: rank %d announced %s with a malformed %zu-byte descriptor; run "
                                           "the same build on every rank", c->rank, r->peer, d, (size_t)e->len);
                }
                send_fin(c, r, PT_DATA_NACK | (uint64_t)r->bytes); /* best effort: else the sender times out */
            } else if (!r->abandoned) {
                memcpy(&r->ann, r->buf, sizeof r->ann); /* the payload landed in the buffer; the read overwrites it */
                if (r->ann.bytes != r->bytes) { /* overwritten before we looked: overlapping receive buffers */
                    char d[128];
                    describe(r, d, sizeof d);
                    req_error(r, PT_ECOMM, "rank %d: the RMA descriptor of %s from rank %d was overwritten in the "
                                           "receive buffer; outstanding receives must not share buffers",
                              c->rank, d, r->peer);
                    send_fin(c, r, PT_DATA_NACK | (uint64_t)r->bytes);
                } else if ((e->data & PT_DATA_DIRECT) && r->ann.seg_fd < 0) {
                    char d[128];
                    describe(r, d, sizeof d);
                    req_error(r, PT_ECOMM, "rank %d: rank %d announced %s by the direct path without a buffer; run "
                                           "the same build on every rank", c->rank, r->peer, d);
                    send_fin(c, r, PT_DATA_NACK | PT_DATA_DIRECT | (uint64_t)r->bytes);
                } else {
                    r->rma = 1;
                    r->direct = (e->data & PT_DATA_DIRECT) != 0;
                    r->stage = 1;
                    receiver_advance(c, r);
                }
            }
        } else if (sent != r->bytes || e->len != r->bytes) {
            mismatch(c, r, sent);
        }
        break;
    }
    case PT_OP_READ:
        if (r->st == PT_OK && !r->abandoned) {
            r->stage = 3;
            receiver_advance(c, r);
        }
        break;
    case PT_OP_CTRL_RECV: /* sender: the receiver's FIN or NACK */
        if (has_data && (e->data & PT_DATA_NACK) && (e->data & PT_DATA_DIRECT)) {
            char d[128];
            describe(r, d, sizeof d);
            req_error(r, PT_ECOMM, "rank %d: rank %d could not read %s from this rank's shared buffer; rank %d's "
                                   "log says why", c->rank, r->peer, d, r->peer);
        } else if (!has_data || (e->data & PT_DATA_NACK)) {
            mismatch(c, r, has_data ? (e->data & PT_DATA_SIZE_MASK) : 0);
        } else if (r->direct) {
            c->direct_bytes += r->bytes;
        }
        break;
    case PT_OP_SEND:
    case PT_OP_CTRL_SEND:
    default:
        break;
    }
    update_done(c, r);
}

static void on_error(pt_comm *c)
{
    struct fi_cq_err_entry e;
    memset(&e, 0, sizeof e);
    if (PT_FI(c, fi_cq_readerr(c->cq, &e, 0)) <= 0)
        return;
    pt_comm_op *op = e.op_context;
    if (!op)
        return;
    pt_comm_req *r = op->req;
    r->n_pending--;
    if (e.err < 0)
        e.err = -e.err; /* providers differ in the sign */
    if (e.err == FI_ECANCELED) {
        /* our own cancel of an abandoned request */
    } else if (e.err == FI_ETRUNC && op->which == PT_OP_RECV) {
        unsigned long long sent = (e.flags & FI_REMOTE_CQ_DATA) ? (e.data & PT_DATA_SIZE_MASK)
                                                                : (unsigned long long)(e.len + e.olen);
        if (sent > r->bytes) {
            mismatch(c, r, sent);
        } else { /* the provider did not say how much was sent */
            char d[128];
            describe(r, d, sizeof d);
            req_error(r, PT_ECOMM, "rank %d sent more than %zu B for %s, rank %d expected %zu B; both sides must "
                                   "agree on the shapes (same micro-batch size, sequence length, model and plan)",
                      r->peer, r->bytes, d, c->rank, r->bytes);
        }
    } else if (e.err == FI_ETRUNC && op->which == PT_OP_CTRL_RECV) {
        char d[128];
        describe(r, d, sizeof d);
        req_error(r, PT_ECOMM, "rank %d: rank %d answered %s with a malformed RMA completion message; run the same "
                               "build on every rank", c->rank, r->peer, d);
    } else {
        char d[128], pe[160];
        describe(r, d, sizeof d);
        pe[0] = 0;
        const char *ps = e.prov_errno ? fi_cq_strerror(c->cq, e.prov_errno, e.err_data, NULL, 0) : NULL;
        if (ps && strcmp(ps, fi_strerror(e.err)) != 0)
            snprintf(pe, sizeof pe, " (%s)", ps);
        static const char *const opn[] = { "send", "receive", "RMA completion send", "RMA completion receive",
                                           "RMA read" };
        char fe[96];
        fi_fail_text(fe, sizeof fe, e.err);
        req_error(r, PT_ECOMM, "rank %d: %s of %s with rank %d failed: %s%s; check rank %d's log", c->rank,
                  opn[op->which], d, r->peer, fe, pe, r->peer);
    }
    update_done(c, r);
}

static pt_status handle_cq_ret(pt_comm *c, ssize_t n, struct fi_cq_tagged_entry *ents)
{
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            on_completion(c, &ents[i]);
        return PT_OK;
    }
    if (n == -FI_EAGAIN || n == 0)
        return PT_OK;
    if (n == -FI_EAVAIL) {
        on_error(c);
        return PT_OK;
    }
    return pt_fail(PT_ECOMM, "rank %d: libfabric completion queue read failed (provider %s): %s", c->rank,
                   c->provider, fi_strerror((int)-n));
}

/* Refuses to start an operation with a peer seen dead (peers.c). */
static pt_status check_peer_alive(pt_comm *c, int peer, const char *doing)
{
    if (pt_peers_dead(c) != peer)
        return PT_OK;
    char w[96];
    snprintf(w, sizeof w, "was starting a %s with it", doing);
    return pt_peers_fail(c, w);
}

static pt_status progress(pt_comm *c)
{
    struct fi_cq_tagged_entry ents[CQ_BATCH];
    for (int round = 0; round < 64; round++) {
        ssize_t n = PT_FI(c, fi_cq_read(c->cq, ents, CQ_BATCH));
        PT_CHECK(handle_cq_ret(c, n, ents));
        if (n != CQ_BATCH && n != -FI_EAVAIL)
            break;
    }
    for (pt_comm_req *r = c->post_queue, *next; r; r = next) {
        next = r->next;
        receiver_advance(c, r);
        update_done(c, r);
    }
    return PT_OK;
}

/* ---------------------------------------------------------------- point to point */

static pt_status check_peer(pt_comm *c, int peer, const char *what)
{
    if (!c)
        return pt_fail(PT_EINVAL, "%s: no communicator", what);
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return pt_fail(PT_EINVAL, "rank %d: %s with rank %d: the peer must be another rank in 0..%d", c->rank, what,
                       peer, c->size - 1);
    return PT_OK;
}

static pt_status p2p_tag(pt_comm *c, const pt_msg_id *id, uint64_t *tag)
{
    if (!id)
        return pt_fail(PT_EINVAL, "rank %d: a message needs an id", c->rank);
    int kind = id->kind;
    if (kind == 5 || kind == 7) /* RECV_ACT, RECV_GRAD match SEND_ACT, SEND_GRAD */
        kind--;
    if (kind < 0 || kind >= PT_COMM_KIND_COLL || id->microbatch < 0 || id->microbatch > 65535 || id->chunk < 0 ||
        id->chunk > 255 || id->step < 0)
        return pt_fail(PT_EINVAL, "rank %d: message id kind %d mb %d chunk %d step %lld is out of range (kind 0..14, "
                                  "mb 0..65535, chunk 0..255, step >= 0)",
                       c->rank, id->kind, id->microbatch, id->chunk, (long long)id->step);
    *tag = ((uint64_t)kind << PT_TAG_KIND_SHIFT) | ((uint64_t)id->microbatch << PT_TAG_MB_SHIFT) |
           ((uint64_t)id->chunk << PT_TAG_CHUNK_SHIFT) | ((uint64_t)id->step & PT_TAG_STEP_MASK);
    return PT_OK;
}

/* The checks and fields every send and receive start with: a request for `bytes` at `buf` with
 * peer, id, tag (the source rank's bits added: this rank for a send, the peer for a receive). */
static pt_status req_begin(pt_comm *c, int is_send, int peer, uint64_t tag, const pt_msg_id *id, const char *what,
                           const void *buf, size_t bytes, pt_comm_req **out)
{
    if (bytes > PT_DATA_SIZE_MASK)
        return pt_fail(PT_EINVAL, "rank %d: a %zu-byte message is too large; split it", c->rank, bytes);
    if (bytes && !buf)
        return pt_fail(PT_EINVAL, "rank %d: %s of %zu bytes %s a NULL buffer", c->rank, is_send ? "send" : "receive",
                       bytes, is_send ? "from" : "into");
    pt_comm_req *r = req_get(c);
    if (!r)
        return PT_ENOMEM;
    r->is_send = is_send;
    r->peer = peer;
    if (id)
        r->id = *id;
    r->what = what;
    r->tag = tag | ((uint64_t)(is_send ? c->rank : peer) << PT_TAG_SRC_SHIFT);
    r->buf = (void *)buf;
    r->bytes = bytes;
    *out = r;
    return PT_OK;
}

/* How a send or receive start ends: on success the request is handed out (*out); on failure it is
 * returned to the pool, or, when something of it is still posted, its operation `cancel_op` is
 * cancelled and it waits among the zombies until the provider lets go of it. */
static pt_status req_end(pt_comm *c, pt_comm_req *r, pt_status st, int cancel_op, pt_comm_req **out)
{
    if (st != PT_OK) {
        if (r->n_pending > 0) {
            PT_FI(c, fi_cancel(&c->ep->fid, &r->ops[cancel_op]));
            r->abandoned = 1;
            r->next = c->zombies;
            c->zombies = r;
        } else {
            req_put(c, r);
        }
        return st;
    }
    update_done(c, r);
    *out = r;
    return PT_OK;
}

static pt_status start_send(pt_comm *c, int peer, uint64_t tag, const pt_msg_id *id, const char *what,
                            const void *buf, size_t bytes, pt_comm_req **out)
{
    *out = NULL;
    PT_CHECK(check_peer_alive(c, peer, "send"));
    pt_comm_req *r = NULL;
    PT_CHECK(req_begin(c, 1, peer, tag, id, what, buf, bytes, &r));
    /* Direct (a shared buffer to a peer that maps it) from direct_min, else RMA from rma_min;
     * never below the announce's size (the receiver's buffer holds it) */
    pt_shm_ref ref;
    r->direct = bytes >= c->direct_min && bytes >= sizeof(pt_rma_desc) && c->direct_to && c->direct_to[peer] &&
                pt_shmbuf_find(buf, bytes, &ref);
    r->rma = r->direct || (bytes >= c->rma_min && bytes >= sizeof(pt_rma_desc));
    pt_status st = PT_OK;
    if (!r->direct && (r->rma || (c->mr_mode & FI_MR_LOCAL))) {
        r->mr_idx = mr_get(c, buf, bytes);
        if (r->mr_idx < 0) {
            req_put(c, r);
            return PT_ECOMM;
        }
    }
    void *desc = r->mr_idx >= 0 ? c->mrs[r->mr_idx].desc : NULL;
    if (r->rma) {
        ssize_t ret;
        if (r->direct) {
            r->ann = (pt_rma_desc){ .addr = ref.offset, .key = 0, .bytes = bytes, .seg_ino = ref.ino,
                                    .seg_bytes = ref.seg_bytes, .seg_fd = ref.fd };
        } else {
            pt_mr_entry *m = &c->mrs[r->mr_idx];
            r->ann = (pt_rma_desc){ .addr = (c->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf
                                                                            : (uint64_t)((uintptr_t)buf - m->base),
                                    .key = m->key, .bytes = bytes, .seg_fd = -1 };
        }
        r->n_pending++;
        int64_t dl = pt_deadline_after_ms(c->timeout_ms);
        while ((ret = PT_FI(c, fi_trecv(c->ep, NULL, 0, NULL, FI_ADDR_UNSPEC, r->tag | PT_TAG_CTRL, 0,
                                        &r->ops[PT_OP_CTRL_RECV]))) == -FI_EAGAIN &&
               !pt_deadline_passed(dl))
            if ((st = progress(c)) != PT_OK)
                break;
        if (st == PT_OK && ret) {
            r->n_pending--;
            st = pt_fail(PT_ECOMM, "rank %d: libfabric fi_trecv (RMA completion) from rank %d failed: %s", c->rank,
                         peer, fi_strerror((int)-ret));
        }
        if (st == PT_OK) {
            uint64_t data = PT_DATA_ANNOUNCE | (r->direct ? PT_DATA_DIRECT : 0) | (uint64_t)bytes;
            int inject = sizeof r->ann <= c->inject_size;
            if (!inject)
                r->n_pending++;
            while ((ret = inject ? PT_FI(c, fi_tinjectdata(c->ep, &r->ann, sizeof r->ann, data, c->addrs[peer],
                                                           r->tag))
                                 : PT_FI(c, fi_tsenddata(c->ep, &r->ann, sizeof r->ann, r->ann_desc, data,
                                                         c->addrs[peer], r->tag, &r->ops[PT_OP_SEND]))) ==
                       -FI_EAGAIN &&
                   !pt_deadline_passed(dl))
                if ((st = progress(c)) != PT_OK)
                    break;
            if (st == PT_OK && ret) {
                if (!inject)
                    r->n_pending--;
                st = pt_fail(PT_ECOMM, "rank %d: libfabric send of the RMA announce to rank %d failed: %s", c->rank,
                             peer, fi_strerror((int)-ret));
            }
        }
    } else if (bytes <= c->inject_size) {
        ssize_t ret;
        int64_t dl = pt_deadline_after_ms(c->timeout_ms);
        while ((ret = PT_FI(c, fi_tinjectdata(c->ep, buf, bytes, (uint64_t)bytes, c->addrs[peer], r->tag))) ==
                   -FI_EAGAIN &&
               !pt_deadline_passed(dl))
            if ((st = progress(c)) != PT_OK)
                break;
        if (st == PT_OK && ret)
            st = pt_fail(PT_ECOMM, "rank %d: libfabric fi_tinjectdata to rank %d failed: %s", c->rank, peer,
                         fi_strerror((int)-ret));
    } else {
        ssize_t ret;
        int64_t dl = pt_deadline_after_ms(c->timeout_ms);
        r->n_pending++;
        while ((ret = PT_FI(c, fi_tsenddata(c->ep, buf, bytes, desc, (uint64_t)bytes, c->addrs[peer], r->tag,
                                            &r->ops[PT_OP_SEND]))) == -FI_EAGAIN &&
               !pt_deadline_passed(dl))
            if ((st = progress(c)) != PT_OK)
                break;
        if (st == PT_OK && ret) {
            r->n_pending--;
            st = pt_fail(PT_ECOMM, "rank %d: libfabric fi_tsenddata to rank %d failed: %s", c->rank, peer,
                         fi_strerror((int)-ret));
        }
    }
    return req_end(c, r, st, PT_OP_CTRL_RECV, out);
}

static pt_status start_recv(pt_comm *c, int peer, uint64_t tag, const pt_msg_id *id, const char *what, void *buf,
                            size_t bytes, pt_comm_req **out)
{
    *out = NULL;
    /* No check_peer_alive here: a peer that sent its last message and exited normally (the end of a
     * gather, say) may already have delivered what this receive asks for. The wait collects it, and
     * fails naming the dead rank only when it never arrived. */
    pt_comm_req *r = NULL;
    PT_CHECK(req_begin(c, 0, peer, tag, id, what, buf, bytes, &r));
    r->rma = 0; /* becomes 1 when the sender's announce arrives */
    if (c->mr_mode & FI_MR_LOCAL) {
        r->mr_idx = mr_get(c, buf, bytes);
        if (r->mr_idx < 0) {
            req_put(c, r);
            return PT_ECOMM;
        }
    }
    pt_status st = PT_OK;
    void *desc = r->mr_idx >= 0 ? c->mrs[r->mr_idx].desc : NULL;
    int64_t dl = pt_deadline_after_ms(c->timeout_ms);
    ssize_t ret;
    r->n_pending++;
    struct iovec iov[2] = { { buf, bytes }, { c->sink, c->sink_bytes } };
    void *descs[2] = { desc, NULL };
    for (;;) {
        if (c->sink)
            ret = PT_FI(c, fi_trecvv(c->ep, iov, descs, 2, FI_ADDR_UNSPEC, r->tag, 0, &r->ops[PT_OP_RECV]));
        else
            ret = PT_FI(c, fi_trecv(c->ep, buf, bytes, desc, FI_ADDR_UNSPEC, r->tag, 0, &r->ops[PT_OP_RECV]));
        if (ret != -FI_EAGAIN || pt_deadline_passed(dl))
            break;
        if ((st = progress(c)) != PT_OK)
            break;
    }
    if (st == PT_OK && ret) {
        r->n_pending--;
        st = pt_fail(PT_ECOMM, "rank %d: libfabric fi_trecv from rank %d failed: %s", c->rank, peer,
                     fi_strerror((int)-ret));
    }
    return req_end(c, r, st, PT_OP_RECV, out);
}

pt_status pt_comm_isend(pt_comm *c, int peer, const pt_msg_id *id, const void *buf, size_t bytes, pt_comm_req **out)
{
    uint64_t tag = 0;
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_isend: out is NULL");
    *out = NULL;
    PT_CHECK(check_peer(c, peer, "send"));
    PT_CHECK(p2p_tag(c, id, &tag));
    PT_FAB_GUARDED(c, "was starting a send", start_send(c, peer, tag, id, NULL, buf, bytes, out));
}

pt_status pt_comm_irecv(pt_comm *c, int peer, const pt_msg_id *id, void *buf, size_t bytes, pt_comm_req **out)
{
    uint64_t tag = 0;
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_irecv: out is NULL");
    *out = NULL;
    PT_CHECK(check_peer(c, peer, "receive"));
    PT_CHECK(p2p_tag(c, id, &tag));
    PT_FAB_GUARDED(c, "was starting a receive", start_recv(c, peer, tag, id, NULL, buf, bytes, out));
}

pt_status pt_comm_isend_tag(pt_comm *c, int peer, uint64_t tag, const char *what, const void *buf, size_t bytes,
                            pt_comm_req **out)
{
    PT_CHECK(check_peer(c, peer, what));
    PT_FAB_GUARDED(c, "was starting a send", start_send(c, peer, tag, NULL, what, buf, bytes, out));
}

pt_status pt_comm_irecv_tag(pt_comm *c, int peer, uint64_t tag, const char *what, void *buf, size_t bytes,
                            pt_comm_req **out)
{
    PT_CHECK(check_peer(c, peer, what));
    PT_FAB_GUARDED(c, "was starting a receive", start_recv(c, peer, tag, NULL, what, buf, bytes, out));
}

/* Gives up on r: cancels what it has posted and keeps it (as a zombie) until the provider has
 * let go of its contexts, so late completions never touch freed memory. */
static void abandon(pt_comm *c, pt_comm_req *r)
{
    if (r->post_pending) {
        list_remove(&c->post_queue, r);
        r->post_pending = 0;
    }
    if (r->n_pending == 0) {
        req_put(c, r);
        return;
    }
    r->abandoned = 1;
    PT_FI(c, fi_cancel(&c->ep->fid, &r->ops[PT_OP_RECV]));
    PT_FI(c, fi_cancel(&c->ep->fid, &r->ops[PT_OP_CTRL_RECV]));
    r->next = c->zombies;
    c->zombies = r;
}

static pt_status finish(pt_comm *c, pt_comm_req *r)
{
    pt_status st = r->st;
    if (st != PT_OK)
        pt_fail(st, "%s", r->err);
    req_put(c, r);
    return st;
}

static pt_status test_impl(pt_comm *c, pt_comm_req *r, int *done)
{
    *done = 0;
    if (!r) {
        *done = 1;
        return PT_OK;
    }
    pt_status st = progress(c);
    if (st != PT_OK)
        return st;
    if (!r->done)
        return PT_OK;
    *done = 1;
    return finish(c, r);
}

static void nap(int64_t waited_ns)
{
    if (waited_ns < 1000000) {
        sched_yield();
        return;
    }
    struct timespec ts = { 0, 50 * 1000 };
    nanosleep(&ts, NULL);
}

void pt_comm_set_patient(pt_comm *c, int64_t max_nap_ns)
{
    if (c)
        c->patient_nap_ns = max_nap_ns > 0 ? max_nap_ns : 0;
}

static pt_status wait_impl(pt_comm *c, pt_comm_req *r, int64_t deadline_ns)
{
    if (!r)
        return PT_OK;
    int64_t start = pt_now_ns(), patient_nap = 50000;
    struct fi_cq_tagged_entry ents[CQ_BATCH];
    for (;;) {
        int dead = pt_peers_dead(c); /* read before progress: what the dead rank delivered is seen */
        pt_status st = progress(c);
        if (st != PT_OK) {
            abandon(c, r);
            return st;
        }
        if (r->done)
            return finish(c, r);
        if (dead >= 0 && dead == r->peer) {
            char d[128], w[200];
            describe(r, d, sizeof d);
            snprintf(w, sizeof w, r->is_send ? "waited to send %s to it" : "waited for %s from it", d);
            st = pt_peers_fail(c, w);
            abandon(c, r);
            return st;
        }
        if (dead >= 0 && pt_peers_gone(c, r->peer)) { /* a second death: stopped by its launcher, say */
            char d[128], w[200];
            describe(r, d, sizeof d);
            snprintf(w, sizeof w, r->is_send ? "waited to send %s to it" : "waited for %s from it", d);
            st = pt_fail(PT_ECOMM, "rank %d: rank %d (same host) exited while rank %d %s, after rank %d had exited; "
                                   "check rank %d's log for why it ended",
                         c->rank, r->peer, c->rank, w, dead, dead);
            abandon(c, r);
            return st;
        }
        int64_t now = pt_now_ns();
        if (deadline_ns != INT64_MAX && now >= deadline_ns) {
            char d[128];
            describe(r, d, sizeof d);
            double waited = pt_seconds_between(start, now);
            int peer = r->peer;
            if (r->is_send)
                st = pt_fail(PT_ETIMEDOUT, "rank %d: %s to rank %d not delivered after %.1f s (rank %d has not taken "
                                           "it); check rank %d's log", c->rank, d, peer, waited, peer, peer);
            else
                st = pt_fail(PT_ETIMEDOUT, "rank %d: no %s from rank %d after %.1f s; check rank %d's log", c->rank,
                             d, peer, waited, peer);
            abandon(c, r);
            return st;
        }
        if (now - start < SPIN_NS && !(c->patient_nap_ns > 0 && !c->cq_waitable))
            continue;
        if (c->patient_nap_ns > 0 && !c->cq_waitable) {
            struct timespec ts = { 0, (long)patient_nap };
            nanosleep(&ts, NULL);
            patient_nap = 2 * patient_nap < c->patient_nap_ns ? 2 * patient_nap : c->patient_nap_ns;
            continue;
        }
        if (c->cq_waitable && dead < 0) {
            int64_t left_ms = deadline_ns == INT64_MAX ? SREAD_MAX_MS : (deadline_ns - now) / 1000000 + 1;
            int ms = left_ms < SREAD_MAX_MS ? (int)left_ms : SREAD_MAX_MS;
            ssize_t n = PT_FI(c, fi_cq_sread(c->cq, ents, CQ_BATCH, NULL, ms));
            if (n == -FI_ETIMEDOUT)
                continue;
            st = handle_cq_ret(c, n, ents);
            if (st != PT_OK) {
                abandon(c, r);
                return st;
            }
        } else {
            /* A message of several MiB takes hundreds of µs whichever path it takes: the yield
             * phase would only take CPU from the peer doing the copy (with two ranks on one
             * core it halved the direct path's bandwidth), so such waits nap at once. */
            nap(r->bytes >= NAP_BIG_BYTES ? INT64_MAX : now - start);
        }
    }
}

pt_status pt_comm_test(pt_comm *c, pt_comm_req *r, int *done)
{
    if (!c || !r)
        return test_impl(c, r, done);
    PT_FAB_GUARDED(c, "was testing a message with it", test_impl(c, r, done));
}

pt_status pt_comm_wait(pt_comm *c, pt_comm_req *r, int64_t deadline_ns)
{
    if (!r)
        return PT_OK;
    sigjmp_buf env;
    sigjmp_buf *prev = pt_escape_push(&env);
    if (sigsetjmp(env, 0) != 0) {
        char d[128], w[200];
        describe(r, d, sizeof d);
        snprintf(w, sizeof w, r->is_send ? "waited to send %s to rank %d" : "waited for %s from rank %d", d,
                 r->peer);
        return pt_peers_escaped(c, prev, w);
    }
    pt_status st = wait_impl(c, r, deadline_ns);
    pt_escape_pop(prev);
    return st;
}

pt_status pt_comm_waitall(pt_comm *c, pt_comm_req **r, int n, int64_t deadline_ns)
{
    pt_status first = PT_OK;
    char msg[512] = "";
    for (int i = 0; i < n; i++) {
        if (!r[i])
            continue;
        pt_status st = pt_comm_wait(c, r[i], deadline_ns);
        r[i] = NULL;
        if (st != PT_OK && first == PT_OK) {
            first = st;
            snprintf(msg, sizeof msg, "%s", pt_last_error());
        }
    }
    if (first != PT_OK)
        pt_fail(first, "%s", msg);
    return first;
}
