/* comm/collectives.c — all-reduce (chunked ring), broadcast (binomial tree), barrier
 * (dissemination) and gatherv over the point-to-point transport.
 *
 * Every member runs the same sequence of exchanges, so a per-group message counter gives
 * each exchange a tag that both sides compute without talking; the group id in the tag keeps
 * overlapping groups apart. */
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "pipetrain/timeutil.h"

#define BUCKET_BYTES ((size_t)4 << 20)

static uint64_t coll_tag(const pt_comm_group *g, uint64_t seq)
{
    return ((uint64_t)PT_COMM_KIND_COLL << PT_TAG_KIND_SHIFT) | (g->id << PT_TAG_MB_SHIFT) | (seq & PT_TAG_SEQ_MASK);
}

/* One exchange: receive `rbytes` from `from` into rbuf while sending `sbytes` to `to`. */
static pt_status exchange(pt_comm *c, pt_comm_group *g, const char *what, int to, const void *sbuf, size_t sbytes,
                          int from, void *rbuf, size_t rbytes, int64_t deadline_ns)
{
    uint64_t tag = coll_tag(g, g->seq++);
    pt_comm_req *r[2] = { NULL, NULL };
    PT_CHECK(pt_comm_irecv_tag(c, from, tag, what, rbuf, rbytes, &r[0]));
    pt_status st = pt_comm_isend_tag(c, to, tag, what, sbuf, sbytes, &r[1]);
    if (st != PT_OK) {
        pt_comm_waitall(c, r, 1, pt_now_ns()); /* gives up on the receive */
        return st;
    }
    return pt_comm_waitall(c, r, 2, deadline_ns);
}

static pt_status scratch_reserve(pt_comm *c, size_t bytes)
{
    if (bytes < 64)
        bytes = 64;
    if (c->scratch_bytes >= bytes)
        return PT_OK;
    void *p = malloc(bytes);
    if (!p)
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for %zu bytes of collective scratch", c->rank, bytes);
    free(c->scratch);
    c->scratch = p;
    c->scratch_bytes = bytes;
    return PT_OK;
}

typedef void (*add_fn)(void *dst, const void *src, size_t n);

static void add_f32(void *dst, const void *src, size_t n)
{
    float *d = dst;
    const float *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] += s[i];
}

static void add_f64(void *dst, const void *src, size_t n)
{
    double *d = dst;
    const double *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] += s[i];
}

/* Ring all-reduce, bucket by bucket: reduce-scatter (p-1 steps), then all-gather (p-1 steps).
 * Segment k of a bucket is summed along the ring starting at member k, so each element's
 * summation order is fixed and every member ends with the same bits. */
static pt_status ring_allreduce(pt_comm *c, pt_comm_group *g, void *buf, size_t n, size_t es, add_fn add,
                                const char *what, int64_t deadline_ns)
{
    int p = g->n, me = g->me;
    if (p == 1 || n == 0)
        return PT_OK;
    if (!buf)
        return pt_fail(PT_EINVAL, "rank %d: %s of %zu elements from a NULL buffer", c->rank, what, n);
    size_t bucket = BUCKET_BYTES / es;
    size_t first = n < bucket ? n : bucket;
    PT_CHECK(scratch_reserve(c, ((first + (size_t)p - 1) / (size_t)p) * es));
    int left = g->ranks[(me - 1 + p) % p], right = g->ranks[(me + 1) % p];
    char *base = buf;
    for (size_t off = 0; off < n; off += bucket) {
        size_t m = n - off < bucket ? n - off : bucket;
        char *b = base + off * es;
#define SEG_START(k) ((m * (size_t)(k)) / (size_t)p)
#define SEG_LEN(k) (SEG_START((k) + 1) - SEG_START(k))
        for (int s = 0; s < p - 1; s++) {
            int sseg = (me - s + p) % p, rseg = (me - s - 1 + 2 * p) % p;
            PT_CHECK(exchange(c, g, what, right, b + SEG_START(sseg) * es, SEG_LEN(sseg) * es, left, c->scratch,
                              SEG_LEN(rseg) * es, deadline_ns));
            add(b + SEG_START(rseg) * es, c->scratch, SEG_LEN(rseg));
        }
        for (int s = 0; s < p - 1; s++) {
            int sseg = (me + 1 - s + p) % p, rseg = (me - s + p) % p;
            PT_CHECK(exchange(c, g, what, right, b + SEG_START(sseg) * es, SEG_LEN(sseg) * es, left,
                              b + SEG_START(rseg) * es, SEG_LEN(rseg) * es, deadline_ns));
        }
#undef SEG_START
#undef SEG_LEN
    }
    return PT_OK;
}

pt_status pt_comm_allreduce(pt_comm *c, pt_comm_group *g, float *buf, size_t n, pt_reduce_op op, int64_t deadline_ns)
{
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_allreduce: no communicator");
    if (!g)
        g = c->world;
    if (op != PT_REDUCE_SUM && op != PT_REDUCE_MEAN)
        return pt_fail(PT_EINVAL, "rank %d: all-reduce: unknown operation %d", c->rank, (int)op);
    PT_CHECK(ring_allreduce(c, g, buf, n, sizeof(float), add_f32, "all-reduce", deadline_ns));
    if (op == PT_REDUCE_MEAN && g->n > 1) {
        float p = (float)g->n;
        for (size_t i = 0; i < n; i++)
            buf[i] /= p;
    }
    return PT_OK;
}

pt_status pt_comm_allreduce_f64(pt_comm *c, pt_comm_group *g, double *buf, size_t n, int64_t deadline_ns)
{
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_allreduce_f64: no communicator");
    return ring_allreduce(c, g ? g : c->world, buf, n, sizeof(double), add_f64, "all-reduce (f64)", deadline_ns);
}

void pt_comm_segment(size_t n, int p, int k, size_t *lo, size_t *hi)
{
    if (p < 1)
        p = 1;
    size_t q = n / (size_t)p, r = n % (size_t)p, kk = (size_t)k;
    *lo = q * kk + (kk < r ? kk : r);
    *hi = *lo + q + (kk < r ? 1 : 0);
}

/* Piece t (BUCKET_BYTES of floats at most) of member k's segment of n, within [ra, rb):
 * [*a, *a + returned length). */
static size_t seg_piece(size_t n, int p, int k, size_t ra, size_t rb, size_t t, size_t bucket, size_t *a)
{
    size_t lo, hi;
    pt_comm_segment(n, p, k, &lo, &hi);
    if (lo < ra)
        lo = ra;
    if (hi > rb)
        hi = rb;
    size_t start = lo + t * bucket;
    *a = start;
    if (start >= hi)
        return 0;
    return hi - start < bucket ? hi - start : bucket;
}

/* The longest member's part of [ra, rb): every member walks its pieces. */
static size_t range_longest(size_t n, int p, size_t ra, size_t rb)
{
    size_t longest = 0;
    for (int k = 0; k < p; k++) {
        size_t lo, hi;
        pt_comm_segment(n, p, k, &lo, &hi);
        lo = lo < ra ? ra : lo;
        hi = hi > rb ? rb : hi;
        if (hi > lo && hi - lo > longest)
            longest = hi - lo;
    }
    return longest;
}

/* The arguments of a range collective: *g the group (NULL: the world); *nothing = 1 when there is
 * nothing to move (one member, an empty range). */
static pt_status range_args(pt_comm *c, pt_comm_group **g, const char *what, const float *buf, size_t n, size_t ra,
                            size_t rb, int *nothing)
{
    *nothing = 1;
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm %s: no communicator", what);
    if (!*g)
        *g = c->world;
    if (ra > rb || rb > n)
        return pt_fail(PT_EINVAL, "rank %d: %s of elements [%zu, %zu) of a buffer of %zu", c->rank, what, ra, rb, n);
    if ((*g)->n == 1 || ra == rb)
        return PT_OK;
    if (!buf)
        return pt_fail(PT_EINVAL, "rank %d: %s of %zu floats with a NULL buffer", c->rank, what, n);
    *nothing = 0;
    return PT_OK;
}

static pt_status waitall_or_drop(pt_comm *c, pt_comm_req **r, int n, pt_status st, int64_t deadline_ns)
{
    pt_status w = pt_comm_waitall(c, r, n, st == PT_OK ? deadline_ns : pt_now_ns());
    return st != PT_OK ? st : w;
}

/* Fixed-order reduce-scatter: member k's segment of buf becomes x_0 + x_1 + ... + x_{p-1} summed
 * left to right in float (x_i: member i's values), piece by piece. Each member sends every other
 * member its piece of that member's segment and receives the others' pieces of its own into
 * scratch ((p - 1) pieces), so no element's order depends on the pieces, the buckets or the ring. */
pt_status pt_comm_reduce_scatter(pt_comm *c, pt_comm_group *g, float *buf, size_t n, int64_t deadline_ns)
{
    return pt_comm_reduce_scatter_range(c, g, buf, n, 0, n, deadline_ns);
}

pt_status pt_comm_reduce_scatter_range(pt_comm *c, pt_comm_group *g, float *buf, size_t n, size_t ra, size_t rb,
                                       int64_t deadline_ns)
{
    int nothing;
    PT_CHECK(range_args(c, &g, "reduce-scatter", buf, n, ra, rb, &nothing));
    if (nothing)
        return PT_OK;
    int p = g->n, me = g->me;
    const size_t bucket = BUCKET_BYTES / sizeof(float);
    size_t longest = range_longest(n, p, ra, rb), iters = (longest + bucket - 1) / bucket;
    size_t slot = longest < bucket ? longest : bucket;
    PT_CHECK(scratch_reserve(c, (size_t)(p - 1) * slot * sizeof(float)));
    pt_comm_req **r = calloc((size_t)(2 * p), sizeof *r);
    const float **src = calloc((size_t)p, sizeof *src);
    if (!r || !src) {
        free(r);
        free(src);
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for a reduce-scatter over %d members", c->rank, p);
    }
    float *scr = c->scratch;
    pt_status st = PT_OK;
    for (size_t t = 0; t < iters && st == PT_OK; t++) {
        uint64_t tag = coll_tag(g, g->seq++);
        size_t mine_at, mine = seg_piece(n, p, me, ra, rb, t, bucket, &mine_at);
        int nr = 0;
        for (int j = 0; j < p && st == PT_OK; j++) {
            if (j == me)
                continue;
            float *into = scr + (size_t)(j < me ? j : j - 1) * slot;
            if (mine)
                st = pt_comm_irecv_tag(c, g->ranks[j], tag, "reduce-scatter", into, mine * sizeof(float), &r[nr++]);
            size_t at, len = seg_piece(n, p, j, ra, rb, t, bucket, &at);
            if (st == PT_OK && len)
                st = pt_comm_isend_tag(c, g->ranks[j], tag, "reduce-scatter", buf + at, len * sizeof(float),
                                       &r[nr++]);
        }
        st = waitall_or_drop(c, r, nr, st, deadline_ns);
        memset(r, 0, (size_t)(2 * p) * sizeof *r);
        if (st != PT_OK || !mine)
            continue;
        for (int j = 0; j < p; j++)
            src[j] = j == me ? buf + mine_at : scr + (size_t)(j < me ? j : j - 1) * slot;
        float *out = buf + mine_at;
        for (size_t e = 0; e < mine; e++) {
            float v = src[0][e];
            for (int j = 1; j < p; j++)
                v += src[j][e];
            out[e] = v;
        }
    }
    free(r);
    free(src);
    return st;
}

/* All-gather of the segments: member k sends its segment's pieces to every other member. */
pt_status pt_comm_allgather(pt_comm *c, pt_comm_group *g, float *buf, size_t n, int64_t deadline_ns)
{
    return pt_comm_allgather_range(c, g, buf, n, 0, n, deadline_ns);
}

pt_status pt_comm_allgather_range(pt_comm *c, pt_comm_group *g, float *buf, size_t n, size_t ra, size_t rb,
                                  int64_t deadline_ns)
{
    int nothing;
    PT_CHECK(range_args(c, &g, "all-gather", buf, n, ra, rb, &nothing));
    if (nothing)
        return PT_OK;
    int p = g->n, me = g->me;
    const size_t bucket = BUCKET_BYTES / sizeof(float);
    size_t iters = (range_longest(n, p, ra, rb) + bucket - 1) / bucket;
    pt_comm_req **r = calloc((size_t)(2 * p), sizeof *r);
    if (!r)
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for an all-gather over %d members", c->rank, p);
    pt_status st = PT_OK;
    for (size_t t = 0; t < iters && st == PT_OK; t++) {
        uint64_t tag = coll_tag(g, g->seq++);
        size_t mine_at, mine = seg_piece(n, p, me, ra, rb, t, bucket, &mine_at);
        int nr = 0;
        for (int j = 0; j < p && st == PT_OK; j++) {
            if (j == me)
                continue;
            size_t at, len = seg_piece(n, p, j, ra, rb, t, bucket, &at);
            if (len)
                st = pt_comm_irecv_tag(c, g->ranks[j], tag, "all-gather", buf + at, len * sizeof(float), &r[nr++]);
            if (st == PT_OK && mine)
                st = pt_comm_isend_tag(c, g->ranks[j], tag, "all-gather", buf + mine_at, mine * sizeof(float),
                                       &r[nr++]);
        }
        st = waitall_or_drop(c, r, nr, st, deadline_ns);
        memset(r, 0, (size_t)(2 * p) * sizeof *r);
    }
    free(r);
    return st;
}

pt_status pt_comm_broadcast(pt_comm *c, pt_comm_group *g, void *buf, size_t bytes, int root, int64_t deadline_ns)
{
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_broadcast: no communicator");
    if (!g)
        g = c->world;
    int p = g->n, ri = -1;
    for (int i = 0; i < p; i++)
        if (g->ranks[i] == root)
            ri = i;
    if (ri < 0)
        return pt_fail(PT_EINVAL, "rank %d: broadcast root %d is not a member of the group", c->rank, root);
    if (p == 1)
        return PT_OK;
    if (bytes && !buf)
        return pt_fail(PT_EINVAL, "rank %d: broadcast of %zu bytes with a NULL buffer", c->rank, bytes);
    uint64_t tag = coll_tag(g, g->seq++);
    int v = (g->me - ri + p) % p, mask = 1;
    while (mask < p) {
        if (v & mask) {
            int from = g->ranks[(v - mask + ri) % p];
            pt_comm_req *r;
            PT_CHECK(pt_comm_irecv_tag(c, from, tag, "broadcast", buf, bytes, &r));
            PT_CHECK(pt_comm_wait(c, r, deadline_ns));
            break;
        }
        mask <<= 1;
    }
    pt_comm_req *sends[32];
    int n_sends = 0;
    for (mask >>= 1; mask > 0; mask >>= 1) {
        if (v + mask < p) {
            pt_status st = pt_comm_isend_tag(c, g->ranks[(v + mask + ri) % p], tag, "broadcast", buf, bytes,
                                             &sends[n_sends]);
            if (st != PT_OK) {
                pt_comm_waitall(c, sends, n_sends, deadline_ns);
                return st;
            }
            n_sends++;
        }
    }
    return pt_comm_waitall(c, sends, n_sends, deadline_ns);
}

pt_status pt_comm_barrier(pt_comm *c, pt_comm_group *g, int64_t deadline_ns)
{
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_barrier: no communicator");
    if (!g)
        g = c->world;
    int p = g->n;
    for (int k = 1; k < p; k <<= 1) {
        char sb = 0, rb = 0;
        PT_CHECK(exchange(c, g, "barrier", g->ranks[(g->me + k) % p], &sb, 1, g->ranks[(g->me - k + p) % p], &rb, 1,
                          deadline_ns));
    }
    return PT_OK;
}

pt_status pt_comm_gatherv(pt_comm *c, int root, const void *send, size_t bytes, void **recv, size_t **sizes,
                          int64_t deadline_ns)
{
    if (!c)
        return pt_fail(PT_EINVAL, "pt_comm_gatherv: no communicator");
    if (recv)
        *recv = NULL;
    if (sizes)
        *sizes = NULL;
    if (root < 0 || root >= c->size)
        return pt_fail(PT_EINVAL, "rank %d: gatherv root %d is not a rank (0..%d)", c->rank, root, c->size - 1);
    if (bytes && !send)
        return pt_fail(PT_EINVAL, "rank %d: gatherv of %zu bytes from a NULL buffer", c->rank, bytes);
    pt_comm_group *g = c->world;
    uint64_t tag_size = coll_tag(g, g->seq++), tag_data = coll_tag(g, g->seq++);
    if (c->rank != root) {
        uint64_t sz = bytes;
        pt_comm_req *r[2] = { NULL, NULL };
        PT_CHECK(pt_comm_isend_tag(c, root, tag_size, "gatherv", &sz, sizeof sz, &r[0]));
        pt_status st = pt_comm_wait(c, r[0], deadline_ns);
        if (st == PT_OK && bytes) {
            PT_CHECK(pt_comm_isend_tag(c, root, tag_data, "gatherv", send, bytes, &r[1]));
            st = pt_comm_wait(c, r[1], deadline_ns);
        }
        return st;
    }
    if (!recv || !sizes)
        return pt_fail(PT_EINVAL, "rank %d: gatherv root needs recv and sizes", c->rank);
    int p = c->size;
    uint64_t *sz = calloc((size_t)p, sizeof *sz);
    size_t *out_sizes = calloc((size_t)p, sizeof *out_sizes);
    pt_comm_req **r = calloc((size_t)p, sizeof *r);
    char *data = NULL;
    pt_status st = PT_OK;
    if (!sz || !out_sizes || !r) {
        st = pt_fail(PT_ENOMEM, "rank %d: out of memory for gatherv over %d ranks", c->rank, p);
        goto out;
    }
    for (int i = 0; i < p && st == PT_OK; i++)
        if (i != root)
            st = pt_comm_irecv_tag(c, i, tag_size, "gatherv", &sz[i], sizeof sz[i], &r[i]);
    pt_status wst = pt_comm_waitall(c, r, p, st == PT_OK ? deadline_ns : pt_now_ns());
    if (st == PT_OK)
        st = wst;
    if (st != PT_OK)
        goto out;
    sz[root] = bytes;
    size_t total = 0;
    for (int i = 0; i < p; i++) {
        out_sizes[i] = (size_t)sz[i];
        total += (size_t)sz[i];
    }
    if (total) {
        data = malloc(total);
        if (!data) {
            st = pt_fail(PT_ENOMEM, "rank %d: out of memory for %zu gathered bytes", c->rank, total);
            goto out;
        }
        size_t off = 0;
        for (int i = 0; i < p && st == PT_OK; i++) {
            if (i == root) {
                if (bytes)
                    memcpy(data + off, send, bytes);
            } else if (sz[i]) {
                st = pt_comm_irecv_tag(c, i, tag_data, "gatherv", data + off, (size_t)sz[i], &r[i]);
            }
            off += (size_t)sz[i];
        }
        wst = pt_comm_waitall(c, r, p, st == PT_OK ? deadline_ns : pt_now_ns());
        if (st == PT_OK)
            st = wst;
        if (st != PT_OK)
            goto out;
    }
    *recv = data;
    *sizes = out_sizes;
    data = NULL;
    out_sizes = NULL;
out:
    free(data);
    free(out_sizes);
    free(sz);
    free(r);
    return st;
}
