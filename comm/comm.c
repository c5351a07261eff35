/* comm/comm.c — pt_comm life cycle: environment, rendezvous, endpoint, address exchange. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "pipetrain/timeutil.h"

static pt_status timeout_from_env(int64_t *out)
{
    const char *v = getenv("PT_COMM_TIMEOUT");
    *out = 300000;
    if (!v || !*v)
        return PT_OK;
    char *end;
    double s = strtod(v, &end);
    if (*end || !(s > 0) || s > 1e7)
        return pt_fail(PT_EINVAL, "PT_COMM_TIMEOUT=%s: expected a positive number of seconds", v);
    *out = (int64_t)(s * 1000.0);
    if (*out < 1)
        *out = 1;
    return PT_OK;
}

/* Every rank exchanges one byte with every other: connections (tcp) and peer mappings (shm)
 * are set up now, while nothing else is in flight, and a peer it cannot reach is named here.
 * The byte says whether the sender can map the receiver's buffers (it probed them at
 * rendezvous), which is what the receiver needs to know to send to it by the direct path.
 * Once every peer's byte is in, every peer has probed, and the probe buffer goes. */
static pt_status connect_all(pt_comm *c)
{
    int n = c->size;
    pt_comm_req **r = calloc((size_t)(2 * n), sizeof *r);
    char *in = calloc((size_t)n, 1), *out = calloc((size_t)n, 1);
    pt_status st = PT_OK;
    c->direct_to = calloc((size_t)n, 1);
    if (!r || !in || !out || !c->direct_to) {
        free(r);
        free(in);
        free(out);
        return pt_fail(PT_ENOMEM, "rank %d: out of memory", c->rank);
    }
    for (int i = 0; i < n; i++)
        out[i] = (char)(1 | (c->can_map && c->can_map[i] ? 2 : 0));
    uint64_t tag = (uint64_t)PT_COMM_KIND_COLL << PT_TAG_KIND_SHIFT | PT_TAG_SEQ_MASK; /* group id 0, last seq */
    for (int i = 0; i < n && st == PT_OK; i++)
        if (i != c->rank)
            st = pt_comm_irecv_tag(c, i, tag, "connection check", &in[i], 1, &r[i]);
    for (int i = 0; i < n && st == PT_OK; i++)
        if (i != c->rank)
            st = pt_comm_isend_tag(c, i, tag, "connection check", &out[i], 1, &r[n + i]);
    pt_status wst = pt_comm_waitall(c, r, 2 * n, st == PT_OK ? pt_deadline_after_ms(c->timeout_ms) : pt_now_ns());
    if (st == PT_OK)
        st = wst;
    if (st == PT_OK) {
        for (int i = 0; i < n; i++)
            c->direct_to[i] = i != c->rank && (in[i] & 2) != 0;
        pt_comm_buf_free(c->probe);
        c->probe = NULL;
    }
    free(r);
    free(in);
    free(out);
    return st;
}

/* The last step of making a communicator (pt_comm_create, pt_comm_dup): its world group, then
 * its connections to every other rank. */
static pt_status world_open(pt_comm *c)
{
    int *world = malloc(sizeof(int) * (size_t)c->size);
    if (!world)
        return pt_fail(PT_ENOMEM, "out of memory for the world group");
    for (int i = 0; i < c->size; i++)
        world[i] = i;
    pt_status st = pt_comm_group_create(c, world, c->size, &c->world);
    free(world);
    if (st == PT_OK && c->size > 1)
        st = connect_all(c);
    return st;
}

pt_status pt_comm_create(const pt_comm_opts *o, pt_comm **out)
{
    pt_comm_opts defaults = { 0 };
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_create: out is NULL");
    *out = NULL;
    if (!o)
        o = &defaults;
    pt_boot_env e;
    PT_CHECK(pt_boot_env_read(&e));
    pt_comm *c = calloc(1, sizeof *c);
    if (!c)
        return pt_fail(PT_ENOMEM, "out of memory for a communicator");
    c->rank = e.rank;
    c->size = e.size;
    c->local_rank = e.local_rank;
    c->local_size = e.local_size;
    c->dead_rank = -1;
    pt_status st = PT_OK;
    pt_boot b;
    memset(&b, 0, sizeof b);
    b.fd_master = -1;
    void *all = NULL;
    if (o->timeout_ms > 0)
        c->timeout_ms = o->timeout_ms;
    else
        PT_TRY(timeout_from_env(&c->timeout_ms), fail);
    if (c->size == 1) {
        snprintf(c->provider, sizeof c->provider, "self");
    } else {
        const char *req = o->provider ? o->provider : getenv("PT_FABRIC_PROVIDER");
        if (req && !*req)
            req = NULL;
        int64_t deadline = pt_deadline_after_ms(c->timeout_ms);
        PT_TRY(pt_boot_rendezvous(&e, o->config_hash, req, deadline, &b), fail);
        /* each rank sends [endpoint address | pt_peer_ident]; the identities feed the peer watch */
        char addr[256 + sizeof(pt_peer_ident)];
        size_t addr_len = 256;
        char err[512] = "";
        snprintf(c->local_ip, sizeof c->local_ip, "%s", b.local_ip);
        pt_status fst = pt_fabric_open(c, b.provider, b.local_ip);
        if (fst == PT_OK) {
            int ret = fi_getname(&c->ep->fid, addr, &addr_len);
            if (ret)
                fst = pt_fail(PT_ECOMM, "rank %d: libfabric fi_getname failed (provider %s): %s", c->rank,
                              c->provider, fi_strerror(-ret));
        }
        if (fst != PT_OK)
            snprintf(err, sizeof err, "%s", pt_last_error());
        pt_peer_ident self;
        if (fst == PT_OK && strcmp(c->provider, "shm") == 0 && c->info && c->info->src_addr &&
            strlen(c->info->src_addr) < sizeof c->own_region)
            snprintf(c->own_region, sizeof c->own_region, "%s", (const char *)c->info->src_addr);
        pt_peer_ident_self(&self, c->own_region[0] ? c->own_region : NULL);
        pt_probe_desc probe;
        if (fst == PT_OK && (fst = pt_shmbuf_probe_create(c, &self, &probe)) != PT_OK)
            snprintf(err, sizeof err, "%s", pt_last_error());
        if (fst == PT_OK)
            self.probe = probe;
        if (fst == PT_OK)
            memcpy(addr + addr_len, &self, sizeof self);
        size_t blob_len = addr_len + sizeof self;
        int64_t offset = 0;
        st = pt_boot_exchange(&e, &b, fst == PT_OK ? addr : NULL, blob_len, err, &all, &offset, deadline);
        if (st != PT_OK) {
            if (fst != PT_OK)
                st = pt_fail(fst, "%s", err);
            goto fail;
        }
        c->clock_offset_ns = offset;
        /* split the blobs: addresses packed for fi_av_insert, identities aside */
        pt_peer_ident *ids = malloc(sizeof *ids * (size_t)c->size);
        if (!ids) {
            st = pt_fail(PT_ENOMEM, "rank %d: out of memory for the peer identities", c->rank);
            goto fail;
        }
        for (int i = 0; i < c->size; i++) {
            char *blob = (char *)all + blob_len * (size_t)i;
            memcpy(&ids[i], blob + addr_len, sizeof ids[i]);
            memmove((char *)all + addr_len * (size_t)i, blob, addr_len);
        }
        st = pt_peers_watch(c, ids);
        free(ids);
        if (st != PT_OK)
            goto fail;
        PT_TRY(pt_fabric_insert(c, all, addr_len), fail);
        free(all);
        all = NULL;
        pt_boot_close(&b, c->size);
    }
    PT_TRY(world_open(c), fail);
    *out = c;
    return PT_OK;
fail:
    free(all);
    pt_boot_close(&b, c->size);
    pt_comm_destroy(c);
    return st;
}

/* What each rank sends the others when it makes a dup: its new endpoint's address and identity,
 * or why it has none. Plain bytes, the same size on every rank. */
typedef struct dup_blob {
    int32_t ok;
    uint32_t addr_len;
    char addr[256];
    pt_peer_ident ident;
    char err[384];
} dup_blob;

/* This rank's new endpoint (on d) described in *me; a failure is recorded in me->err. */
static void dup_open(pt_comm *d, const pt_comm *c, dup_blob *me)
{
    memset(me, 0, sizeof *me);
    char prov[64];
    snprintf(prov, sizeof prov, "%s", c->provider);
    size_t addr_len = sizeof me->addr;
    pt_status st = pt_fabric_open(d, prov, c->local_ip);
    if (st == PT_OK) {
        int ret = fi_getname(&d->ep->fid, me->addr, &addr_len);
        if (ret)
            st = pt_fail(PT_ECOMM, "rank %d: libfabric fi_getname failed (provider %s): %s", d->rank, d->provider,
                         fi_strerror(-ret));
    }
    if (st == PT_OK && strcmp(d->provider, "shm") == 0 && d->info && d->info->src_addr &&
        strlen(d->info->src_addr) < sizeof d->own_region)
        snprintf(d->own_region, sizeof d->own_region, "%s", (const char *)d->info->src_addr);
    pt_peer_ident_self(&me->ident, d->own_region[0] ? d->own_region : NULL);
    pt_probe_desc probe;
    if (st == PT_OK && (st = pt_shmbuf_probe_create(d, &me->ident, &probe)) == PT_OK)
        me->ident.probe = probe;
    if (st != PT_OK) {
        snprintf(me->err, sizeof me->err, "%s", pt_last_error());
        return;
    }
    me->ok = 1;
    me->addr_len = (uint32_t)addr_len;
}

pt_status pt_comm_dup(pt_comm *c, int64_t deadline_ns, pt_comm **out)
{
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_dup: out is NULL");
    *out = NULL;
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_dup: no communicator");
    pt_comm *d = calloc(1, sizeof *d);
    if (!d)
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for a second communicator", c->rank);
    d->rank = c->rank;
    d->size = c->size;
    d->local_rank = c->local_rank;
    d->local_size = c->local_size;
    d->timeout_ms = c->timeout_ms;
    d->clock_offset_ns = c->clock_offset_ns;
    d->dead_rank = -1;
    atomic_store(&d->dead_async, -1);
    d->monitor_stop[0] = d->monitor_stop[1] = -1;
    snprintf(d->provider, sizeof d->provider, "%s", c->provider);
    snprintf(d->local_ip, sizeof d->local_ip, "%s", c->local_ip);
    pt_status st = PT_OK;
    dup_blob *all = NULL;
    size_t *sizes = NULL;
    pt_peer_ident *ids = NULL;
    char *addrs = NULL;
    if (c->size > 1) {
        dup_blob me;
        dup_open(d, c, &me);
        /* every rank's blob to rank 0, then all of them to everyone: a rank that failed to open
         * its endpoint still takes part, so every rank learns who failed and why */
        void *got = NULL;
        PT_TRY(pt_comm_gatherv(c, 0, &me, sizeof me, &got, &sizes, deadline_ns), fail);
        if (c->rank == 0) {
            all = got;
            for (int i = 0; i < c->size; i++)
                if (sizes[i] != sizeof me) {
                    st = pt_fail(PT_EINTERNAL, "rank 0: pt_comm_dup: rank %d sent %zu bytes, expected %zu; every rank "
                                               "must run the same pipetrain build",
                                 i, sizes[i], sizeof me);
                    goto fail;
                }
        } else {
            all = malloc(sizeof me * (size_t)c->size);
            if (!all) {
                st = pt_fail(PT_ENOMEM, "rank %d: out of memory for the peers' addresses", c->rank);
                goto fail;
            }
        }
        PT_TRY(pt_comm_broadcast(c, NULL, all, sizeof me * (size_t)c->size, 0, deadline_ns), fail);
        for (int i = 0; i < c->size; i++) {
            all[i].err[sizeof all[i].err - 1] = 0;
            if (!all[i].ok) {
                st = i == c->rank ? pt_fail(PT_ECOMM, "%s", all[i].err)
                                  : pt_fail(PT_ECOMM, "rank %d: pt_comm_dup: rank %d could not open a second endpoint: %s",
                                            c->rank, i, all[i].err);
                goto fail;
            }
            if (all[i].addr_len != all[0].addr_len || all[i].addr_len > sizeof all[i].addr) {
                st = pt_fail(PT_ECOMM, "rank %d: pt_comm_dup: rank %d's address is %u bytes, rank 0's %u (provider %s)",
                             c->rank, i, all[i].addr_len, all[0].addr_len, d->provider);
                goto fail;
            }
        }
        size_t al = all[0].addr_len;
        ids = malloc(sizeof *ids * (size_t)c->size);
        addrs = malloc(al * (size_t)(unsigned)c->size);
        if (!ids || !addrs) {
            st = pt_fail(PT_ENOMEM, "rank %d: out of memory for the peers' addresses", c->rank);
            goto fail;
        }
        for (int i = 0; i < c->size; i++) {
            ids[i] = all[i].ident;
            memcpy(addrs + al * (size_t)i, all[i].addr, al);
        }
        PT_TRY(pt_peers_watch(d, ids), fail);
        PT_TRY(pt_fabric_insert(d, addrs, al), fail);
    } else {
        snprintf(d->provider, sizeof d->provider, "self");
    }
    PT_TRY(world_open(d), fail);
    free(all);
    free(sizes);
    free(ids);
    free(addrs);
    *out = d;
    return PT_OK;
fail:
    free(all);
    free(sizes);
    free(ids);
    free(addrs);
    pt_comm_destroy(d);
    return st;
}

void pt_comm_destroy(pt_comm *c)
{
    if (!c)
        return;
    pt_comm_group_destroy(c->world);
    pt_fabric_close(c);
    pt_shmbuf_close(c);
    pt_peers_close(c);
    free(c->scratch);
    free(c);
}

int pt_comm_rank(const pt_comm *c) { return c->rank; }
int pt_comm_size(const pt_comm *c) { return c->size; }
int pt_comm_local_rank(const pt_comm *c) { return c->local_rank; }

pt_status pt_comm_env_job(int *in_job, int *rank, int *size)
{
    pt_boot_env e;
    PT_CHECK(pt_boot_env_read(&e));
    *in_job = strcmp(e.source, "none") != 0;
    *rank = e.rank;
    *size = e.size;
    return PT_OK;
}
int64_t pt_comm_timeout_ms(const pt_comm *c) { return c->timeout_ms; }
int64_t pt_comm_clock_offset_ns(const pt_comm *c) { return c->clock_offset_ns; }
uint64_t pt_comm_direct_bytes(const pt_comm *c) { return c ? c->direct_bytes : 0; }
const char *pt_comm_provider(const pt_comm *c) { return c->provider; }

pt_status pt_comm_group_create(pt_comm *c, const int *ranks, int n, pt_comm_group **out)
{
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_group_create: out is NULL");
    *out = NULL;
    if (!c || !ranks || n < 1 || n > c->size)
        return pt_fail(PT_EINVAL, "a group needs 1..%d ranks (got %d)", c ? c->size : 0, n);
    int me = -1;
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the member list: the same on every member */
    for (int i = 0; i < n; i++) {
        if (ranks[i] < 0 || ranks[i] >= c->size)
            return pt_fail(PT_EINVAL, "rank %d: group member %d is not a rank (0..%d)", c->rank, ranks[i],
                           c->size - 1);
        for (int j = 0; j < i; j++)
            if (ranks[j] == ranks[i])
                return pt_fail(PT_EINVAL, "rank %d: rank %d appears twice in a group", c->rank, ranks[i]);
        if (ranks[i] == c->rank)
            me = i;
        for (int k = 0; k < 4; k++) {
            h ^= (uint64_t)((ranks[i] >> (8 * k)) & 0xff);
            h *= 1099511628211ull;
        }
    }
    if (me < 0)
        return pt_fail(PT_EINVAL, "rank %d: cannot create a group it is not a member of", c->rank);
    pt_comm_group *g = calloc(1, sizeof *g);
    int *r = malloc(sizeof(int) * (size_t)n);
    if (!g || !r) {
        free(g);
        free(r);
        return pt_fail(PT_ENOMEM, "out of memory for a group");
    }
    memcpy(r, ranks, sizeof(int) * (size_t)n);
    g->c = c;
    g->ranks = r;
    g->n = n;
    g->me = me;
    g->id = (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) & 0xffff;
    *out = g;
    return PT_OK;
}

void pt_comm_group_destroy(pt_comm_group *g)
{
    if (!g)
        return;
    free(g->ranks);
    free(g);
}

int pt_comm_group_rank(const pt_comm_group *g) { return g->me; }
int pt_comm_group_size(const pt_comm_group *g) { return g->n; }
