/* Checkpoint codec: blocks of values -> planes -> zstd or raw, with an XXH64 per block.
 *
 * Why planes: in a float the sign and exponent bits are highly predictable (trained weights
 * occupy a few binades) while the low mantissa bits are close to random. Compressing the bytes
 * as they are mixes both; storing each byte plane together lets zstd find the redundancy in the
 * exponent plane. EXPSPLIT rotates each value left by one bit first, so that the whole 8-bit
 * exponent lands in one byte plane (the top one) and the sign joins the lowest mantissa byte:
 * bf16 then splits into an exponent plane (~2.7 bits of entropy per value on N(0, 0.02)) and a
 * sign+mantissa plane that is stored raw because zstd cannot shrink it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ckpt_internal.h"

/* ---------------------------------------------------------------- names */

static const char *const kind_names[PT_CKPT_KIND_COUNT] = { "param", "adam_m", "adam_v" };
static const char *const dtype_names[PT_CKPT_DTYPE_COUNT] = { "f32", "bf16" };
static const size_t dtype_sizes[PT_CKPT_DTYPE_COUNT] = { 4, 2 };
static const char *const xform_names[PT_CKPT_XFORM_COUNT] = { "none", "bytes", "expsplit" };
_Static_assert(PT_CKPT_KIND_COUNT == 3, "kind_names must list every pt_ckpt_kind");
_Static_assert(PT_CKPT_DTYPE_COUNT == 2, "dtype tables must list every pt_ckpt_dtype");
_Static_assert(PT_CKPT_XFORM_COUNT == 3, "xform_names must list every pt_ckpt_transform");

const char *pt_ckpt_kind_name(pt_ckpt_kind k)
{
    return (unsigned)k < PT_CKPT_KIND_COUNT ? kind_names[k] : NULL;
}

const char *pt_ckpt_dtype_name(pt_ckpt_dtype d)
{
    return (unsigned)d < PT_CKPT_DTYPE_COUNT ? dtype_names[d] : NULL;
}

const char *pt_ckpt_transform_name(pt_ckpt_transform t)
{
    return (unsigned)t < PT_CKPT_XFORM_COUNT ? xform_names[t] : NULL;
}

size_t pt_ckpt_dtype_size(pt_ckpt_dtype d)
{
    return (unsigned)d < PT_CKPT_DTYPE_COUNT ? dtype_sizes[d] : 0;
}

int pt_ckpt_entry_planes(pt_ckpt_transform t, pt_ckpt_dtype d)
{
    return t == PT_CKPT_XFORM_NONE ? 1 : (int)pt_ckpt_dtype_size(d);
}

uint64_t pt_ckpt_block_values(const pt_ckpt_entry *e, int64_t b)
{
    uint64_t numel = e->raw_bytes / pt_ckpt_dtype_size(e->dtype);
    uint64_t first = (uint64_t)b * e->block_elems;
    uint64_t left = numel - first;
    return left < e->block_elems ? left : e->block_elems;
}

uint64_t pt_ckpt_plane_raw_bytes(pt_ckpt_transform t, pt_ckpt_dtype d, uint64_t nb)
{
    return t == PT_CKPT_XFORM_NONE ? nb * pt_ckpt_dtype_size(d) : nb;
}

void pt_ckpt_entry_clear(pt_ckpt_entry *e)
{
    if (!e)
        return;
    free(e->blocks);
    e->blocks = NULL;
}

/* ---------------------------------------------------------------- XXH64 */

#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only (x86-64, aarch64); the format is little-endian */
}

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t in)
{
    acc += in * XXH_P2;
    acc = rotl64(acc, 31);
    return acc * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= xxh_round(0, v);
    return acc * XXH_P1 + XXH_P4;
}

uint64_t pt_ckpt_xxh64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = xxh_round(v1, rd64(p));
            v2 = xxh_round(v2, rd64(p + 8));
            v3 = xxh_round(v3, rd64(p + 16));
            v4 = xxh_round(v4, rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + XXH_P5;
    }
    h += (uint64_t)n;
    while (p + 8 <= end) {
        h ^= xxh_round(0, rd64(p));
        h = rotl64(h, 27) * XXH_P1 + XXH_P4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)rd32(p) * XXH_P1;
        h = rotl64(h, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p) * XXH_P5;
        h = rotl64(h, 11) * XXH_P1;
        p++;
    }
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------------- parallel loop */

typedef struct par_state {
    pt_ckpt_job_fn fn;
    void *ctx;
    int64_t n_items;
    atomic_llong next;
    atomic_int failed;
    pthread_mutex_t mu;
    pt_status first_status;
    char first_msg[1024];
} par_state;

typedef struct par_arg {
    par_state *ps;
    int worker;
} par_arg;

static void par_run(par_state *ps, int worker)
{
    while (!atomic_load(&ps->failed)) {
        int64_t i = atomic_fetch_add(&ps->next, 1);
        if (i >= ps->n_items)
            break;
        pt_status st = ps->fn(ps->ctx, i, worker);
        if (st != PT_OK) {
            pthread_mutex_lock(&ps->mu);
            if (ps->first_status == PT_OK) {
                ps->first_status = st;
                snprintf(ps->first_msg, sizeof ps->first_msg, "%s", pt_last_error());
            }
            pthread_mutex_unlock(&ps->mu);
            atomic_store(&ps->failed, 1);
        }
    }
}

static void *par_thread(void *p)
{
    par_arg *a = p;
    par_run(a->ps, a->worker);
    return NULL;
}

pt_status pt_ckpt_parallel_for(int n_threads, int64_t n_items, pt_ckpt_job_fn fn, void *ctx)
{
    if (n_items <= 0)
        return PT_OK;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > n_items)
        n_threads = (int)n_items;
    par_state ps = { .fn = fn, .ctx = ctx, .n_items = n_items, .first_status = PT_OK };
    atomic_init(&ps.next, 0);
    atomic_init(&ps.failed, 0);
    pthread_mutex_init(&ps.mu, NULL);
    pthread_t tid[64];
    par_arg args[64];
    if (n_threads > 64)
        n_threads = 64;
    int started = 0;
    for (int w = 1; w < n_threads; w++) {
        args[w] = (par_arg){ &ps, w };
        if (pthread_create(&tid[w], NULL, par_thread, &args[w]) != 0)
            break; /* fewer threads: the remaining workers take the items */
        started = w;
    }
    par_run(&ps, 0);
    for (int w = 1; w <= started; w++)
        pthread_join(tid[w], NULL);
    pthread_mutex_destroy(&ps.mu);
    if (ps.first_status != PT_OK)
        return pt_fail(ps.first_status, "%s", ps.first_msg);
    return PT_OK;
}

/* ---------------------------------------------------------------- transforms */

/* values -> planes: plane k holds byte k (k = 0 least significant) of every value. */
static void planes_split32(const uint8_t *src, uint8_t *dst, uint64_t n, int rot)
{
    uint8_t *p0 = dst, *p1 = dst + n, *p2 = dst + 2 * n, *p3 = dst + 3 * n;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = rd32(src + 4 * i);
        if (rot)
            v = (v << 1) | (v >> 31);
        p0[i] = (uint8_t)v;
        p1[i] = (uint8_t)(v >> 8);
        p2[i] = (uint8_t)(v >> 16);
        p3[i] = (uint8_t)(v >> 24);
    }
}

static void planes_join32(uint8_t *const *pl, uint8_t *dst, uint64_t n, int rot)
{
    const uint8_t *p0 = pl[0], *p1 = pl[1], *p2 = pl[2], *p3 = pl[3];
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 | (uint32_t)p3[i] << 24;
        if (rot)
            v = (v >> 1) | (v << 31);
        memcpy(dst + 4 * i, &v, 4);
    }
}

static void planes_split16(const uint8_t *src, uint8_t *dst, uint64_t n, int rot)
{
    uint8_t *p0 = dst, *p1 = dst + n;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, src + 2 * i, 2);
        if (rot)
            v = (uint16_t)((v << 1) | (v >> 15));
        p0[i] = (uint8_t)v;
        p1[i] = (uint8_t)(v >> 8);
    }
}

static void planes_join16(uint8_t *const *pl, uint8_t *dst, uint64_t n, int rot)
{
    const uint8_t *p0 = pl[0], *p1 = pl[1];
    for (uint64_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)(p0[i] | p1[i] << 8);
        if (rot)
            v = (uint16_t)((v >> 1) | (v << 15));
        memcpy(dst + 2 * i, &v, 2);
    }
}

/* ---------------------------------------------------------------- codec object */

/* Planes larger than this are first tried on a sample: SAMPLE_SLICES slices of SAMPLE_SLICE
 * bytes spread over the plane. A sample zstd cannot shrink by 1% means the plane is stored raw
 * without compressing all of it (the low mantissa planes of weights are noise). */
#ifndef SAMPLE_MIN_PLANE
#define SAMPLE_MIN_PLANE (256 * 1024)
#endif
#define SAMPLE_SLICE (16 * 1024)
#define SAMPLE_SLICES 4

typedef struct codec_worker {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *scratch; /* planes of one block: block_elems * 4 bytes */
    uint8_t *sample;  /* SAMPLE_SLICES * SAMPLE_SLICE bytes, and zstd's output for them */
    size_t sample_cap;
} codec_worker;

struct pt_ckpt_codec {
    pt_ckpt_codec_opts o;
    int n_workers;
    codec_worker *w;
};

pt_ckpt_codec_opts pt_ckpt_codec_default(int zstd_level, int n_threads)
{
    return (pt_ckpt_codec_opts){ .transform = PT_CKPT_XFORM_EXPSPLIT,
                                 .zstd_level = zstd_level,
                                 .raw_if_no_gain = 1,
                                 .choose_transform = 1,
                                 .block_elems = PT_CKPT_DEFAULT_BLOCK_ELEMS,
                                 .n_threads = n_threads };
}

void pt_ckpt_codec_destroy(pt_ckpt_codec *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_workers; i++) {
        ZSTD_freeCCtx(c->w[i].cctx);
        ZSTD_freeDCtx(c->w[i].dctx);
        free(c->w[i].scratch);
        free(c->w[i].sample);
    }
    free(c->w);
    free(c);
}

static pt_status zstd_param(ZSTD_CCtx *cc, ZSTD_cParameter p, int v, const char *what)
{
    size_t r = ZSTD_CCtx_setParameter(cc, p, v);
    if (ZSTD_isError(r))
        return pt_fail(PT_EINVAL, "checkpoint codec: zstd rejects %s = %d (%s)", what, v, ZSTD_getErrorName(r));
    return PT_OK;
}

pt_status pt_ckpt_codec_create(const pt_ckpt_codec_opts *o, pt_ckpt_codec **out)
{
    *out = NULL;
    if ((unsigned)o->transform >= PT_CKPT_XFORM_COUNT)
        return pt_fail(PT_EINVAL, "checkpoint codec: unknown transform %d", (int)o->transform);
    if (o->zstd_level < 1 || o->zstd_level > ZSTD_maxCLevel())
        return pt_fail(PT_EINVAL, "checkpoint codec: zstd level %d is out of range; use 1..%d (1 is best for weights)",
                       o->zstd_level, ZSTD_maxCLevel());
    uint64_t be = o->block_elems ? o->block_elems : PT_CKPT_DEFAULT_BLOCK_ELEMS;
    if (be > ((uint64_t)1 << 28))
        return pt_fail(PT_EINVAL, "checkpoint codec: block of %llu values is too large; use at most 2^28",
                       (unsigned long long)be);
    pt_ckpt_codec *c = calloc(1, sizeof *c);
    if (!c)
        return pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
    c->o = *o;
    c->o.block_elems = be;
    c->n_workers = o->n_threads < 1 ? 1 : (o->n_threads > 64 ? 64 : o->n_threads);
    c->o.n_threads = c->n_workers;
    c->w = calloc((size_t)c->n_workers, sizeof *c->w);
    pt_status st = PT_OK;
    if (!c->w) {
        st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_workers; i++) {
        codec_worker *w = &c->w[i];
        w->cctx = ZSTD_createCCtx();
        w->dctx = ZSTD_createDCtx();
        w->scratch = malloc(be * 4);
        w->sample_cap = SAMPLE_SLICES * SAMPLE_SLICE + ZSTD_compressBound(SAMPLE_SLICES * SAMPLE_SLICE);
        w->sample = malloc(w->sample_cap);
        if (!w->cctx || !w->dctx || !w->scratch || !w->sample) {
            st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory for %d threads of %llu-value blocks",
                         c->n_workers, (unsigned long long)be);
            goto fail;
        }
        PT_TRY(zstd_param(w->cctx, ZSTD_c_compressionLevel, o->zstd_level, "compression level"), fail);
        PT_TRY(zstd_param(w->cctx, ZSTD_c_checksumFlag, 1, "checksum flag"), fail);
        PT_TRY(zstd_param(w->cctx, ZSTD_c_contentSizeFlag, 1, "content size flag"), fail);
    }
    *out = c;
    return PT_OK;
fail:
    pt_ckpt_codec_destroy(c);
    return st;
}

uint64_t pt_ckpt_codec_block_elems(const pt_ckpt_codec *c)
{
    return c->o.block_elems;
}

static size_t block_bound(pt_ckpt_transform t, pt_ckpt_dtype dt, uint64_t nb)
{
    int np = pt_ckpt_entry_planes(t, dt);
    return (size_t)np * ZSTD_compressBound((size_t)pt_ckpt_plane_raw_bytes(t, dt, nb));
}

size_t pt_ckpt_encode_bound(pt_ckpt_dtype dt, uint64_t n, uint64_t block_elems)
{
    if (block_elems == 0)
        block_elems = PT_CKPT_DEFAULT_BLOCK_ELEMS;
    if (n == 0)
        return 0;
    uint64_t full = n / block_elems, last = n - full * block_elems;
    /* every transform's bound is <= the 1-byte-plane bound, which is the larger one */
    size_t b = (size_t)full * block_bound(PT_CKPT_XFORM_BYTES, dt, block_elems);
    size_t b_none = (size_t)full * block_bound(PT_CKPT_XFORM_NONE, dt, block_elems);
    if (last) {
        b += block_bound(PT_CKPT_XFORM_BYTES, dt, last);
        b_none += block_bound(PT_CKPT_XFORM_NONE, dt, last);
    }
    return b > b_none ? b : b_none;
}

static uint64_t src_numel(const pt_ckpt_src *s)
{
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= (uint64_t)s->shape[d];
    return n;
}

/* ---------------------------------------------------------------- encode */

typedef struct enc_ctx {
    pt_ckpt_codec *c;
    const pt_ckpt_src *src;
    uint8_t *const *dst;
    const size_t *dst_cap;
    pt_ckpt_entry *e;
    int64_t *unit_first; /* [n+1]: first unit of tensor i */
    size_t *slot_bytes;  /* [n]: region reserved per block in dst[i] */
    int n;
} enc_ctx;

/* Plane k of a block stored as it is; returns its size. */
static size_t store_raw(pt_ckpt_block *blk, int k, uint8_t *dst, const uint8_t *plane, uint64_t bytes)
{
    memcpy(dst, plane, (size_t)bytes);
    blk->codec[k] = PT_CKPT_PLANE_RAW;
    blk->plane_bytes[k] = bytes;
    return (size_t)bytes;
}

static pt_status encode_block(void *p, int64_t unit, int worker)
{
    enc_ctx *x = p;
    int i = 0;
    while (x->unit_first[i + 1] <= unit) /* few tensors per call; linear is fine */
        i++;
    int64_t b = unit - x->unit_first[i];
    pt_ckpt_entry *e = &x->e[i];
    codec_worker *w = &x->c->w[worker];
    size_t es = pt_ckpt_dtype_size(e->dtype);
    uint64_t nb = pt_ckpt_block_values(e, b);
    const uint8_t *raw = (const uint8_t *)x->src[i].data + (size_t)b * e->block_elems * es;
    pt_ckpt_block *blk = &e->blocks[b];
    blk->xxh64 = pt_ckpt_xxh64(raw, nb * es, 0);

    const uint8_t *planes[PT_CKPT_MAX_PLANES];
    uint64_t plane_raw = pt_ckpt_plane_raw_bytes(e->transform, e->dtype, nb);
    if (e->transform == PT_CKPT_XFORM_NONE) {
        planes[0] = raw;
    } else {
        int rot = e->transform == PT_CKPT_XFORM_EXPSPLIT;
        if (es == 4)
            planes_split32(raw, w->scratch, nb, rot);
        else
            planes_split16(raw, w->scratch, nb, rot);
        for (int k = 0; k < e->n_planes; k++)
            planes[k] = w->scratch + (size_t)k * nb;
    }
    size_t from = (size_t)b * x->slot_bytes[i];
    uint8_t *out = x->dst[i] + from;
    size_t pos = 0, cap = x->slot_bytes[i];
    if (cap > x->dst_cap[i] - from) /* the last block may be short, and so may its slot */
        cap = x->dst_cap[i] - from;
    for (int k = 0; k < e->n_planes; k++) {
        if (x->c->o.raw_if_no_gain && plane_raw >= SAMPLE_MIN_PLANE) {
            size_t n_in = SAMPLE_SLICES * SAMPLE_SLICE, stride = (size_t)(plane_raw - SAMPLE_SLICE) / (SAMPLE_SLICES - 1);
            for (int q = 0; q < SAMPLE_SLICES; q++)
                memcpy(w->sample + (size_t)q * SAMPLE_SLICE, planes[k] + (size_t)q * stride, SAMPLE_SLICE);
            size_t r = ZSTD_compress2(w->cctx, w->sample + n_in, w->sample_cap - n_in, w->sample, n_in);
            if (!ZSTD_isError(r) && (double)r >= 0.99 * (double)n_in) {
                pos += store_raw(blk, k, out + pos, planes[k], plane_raw);
                continue;
            }
        }
        size_t r = ZSTD_compress2(w->cctx, out + pos, cap - pos, planes[k], (size_t)plane_raw);
        if (ZSTD_isError(r))
            return pt_fail(PT_EINTERNAL, "checkpoint codec: zstd failed on %s block %lld plane %d (%s)",
                           e->name ? e->name : "tensor", (long long)b, k, ZSTD_getErrorName(r));
        if (x->c->o.raw_if_no_gain && (double)r >= 0.99 * (double)plane_raw) {
            pos += store_raw(blk, k, out + pos, planes[k], plane_raw);
        } else {
            blk->codec[k] = PT_CKPT_PLANE_ZSTD;
            blk->plane_bytes[k] = r;
            pos += r;
        }
    }
    blk->stored_xxh64 = pt_ckpt_xxh64(out, pos, 0);
    return PT_OK;
}

/* Stored bytes of `nb` values at `raw` under transform t (planes zstd'd, or raw where that is not
 * 1% smaller when raw_if_no_gain). Uses the worker's scratch and sample buffers. */
static pt_status trial_size(pt_ckpt_codec *c, codec_worker *w, pt_ckpt_transform t, pt_ckpt_dtype dt,
                            const uint8_t *raw, uint64_t nb, uint64_t *out)
{
    size_t es = pt_ckpt_dtype_size(dt);
    int rot = t == PT_CKPT_XFORM_EXPSPLIT;
    if (es == 4)
        planes_split32(raw, w->scratch, nb, rot);
    else
        planes_split16(raw, w->scratch, nb, rot);
    uint64_t total = 0;
    for (size_t k = 0; k < es; k++) {
        size_t r = ZSTD_compress2(w->cctx, w->sample, w->sample_cap, w->scratch + k * nb, (size_t)nb);
        if (ZSTD_isError(r))
            return pt_fail(PT_EINTERNAL, "checkpoint codec: zstd failed on a sample (%s)", ZSTD_getErrorName(r));
        total += c->o.raw_if_no_gain && (double)r >= 0.99 * (double)nb ? nb : r;
    }
    *out = total;
    return PT_OK;
}

#define CHOOSE_SAMPLE_VALUES (16 * 1024)

typedef struct choose_ctx {
    pt_ckpt_codec *c;
    const pt_ckpt_src *src;
    pt_ckpt_entry *e;
} choose_ctx;

/* Tensor i: the transform that stores a sample from its middle in fewer bytes. */
static pt_status choose_one(void *p, int64_t i, int worker)
{
    choose_ctx *x = p;
    pt_ckpt_entry *e = &x->e[i];
    codec_worker *w = &x->c->w[worker];
    size_t es = pt_ckpt_dtype_size(e->dtype);
    uint64_t numel = e->raw_bytes / es;
    uint64_t nb = numel < CHOOSE_SAMPLE_VALUES ? numel : CHOOSE_SAMPLE_VALUES;
    if (nb > x->c->o.block_elems)
        nb = x->c->o.block_elems; /* the scratch holds one block */
    if (nb * es > SAMPLE_SLICES * SAMPLE_SLICE)
        nb = SAMPLE_SLICES * SAMPLE_SLICE / es;
    if (nb == 0)
        return PT_OK;
    const uint8_t *raw = (const uint8_t *)x->src[i].data + (size_t)((numel - nb) / 2) * es;
    uint64_t bytes_size, exp_size;
    PT_CHECK(trial_size(x->c, w, PT_CKPT_XFORM_BYTES, e->dtype, raw, nb, &bytes_size));
    PT_CHECK(trial_size(x->c, w, PT_CKPT_XFORM_EXPSPLIT, e->dtype, raw, nb, &exp_size));
    if (bytes_size != exp_size)
        e->transform = bytes_size < exp_size ? PT_CKPT_XFORM_BYTES : PT_CKPT_XFORM_EXPSPLIT;
    e->n_planes = pt_ckpt_entry_planes(e->transform, e->dtype);
    return PT_OK;
}

pt_status pt_ckpt_encode(pt_ckpt_codec *c, int n, const pt_ckpt_src *src, uint8_t *const *dst,
                         const size_t *dst_cap, pt_ckpt_entry *e)
{
    pt_status st = PT_OK;
    int64_t *unit_first = calloc((size_t)n + 1, sizeof *unit_first);
    size_t *slot = calloc((size_t)n + 1, sizeof *slot);
    if (!unit_first || !slot) {
        st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const pt_ckpt_src *s = &src[i];
        if ((unsigned)s->dtype >= PT_CKPT_DTYPE_COUNT || s->ndim < 0 || s->ndim > PT_CKPT_MAX_DIMS) {
            st = pt_fail(PT_EINVAL, "checkpoint codec: %s has an unknown dtype or %d dimensions",
                         s->name ? s->name : "tensor", s->ndim);
            goto done;
        }
        for (int d = 0; d < s->ndim; d++)
            if (s->shape[d] < 0) {
                st = pt_fail(PT_EINVAL, "checkpoint codec: %s has a negative dimension", s->name ? s->name : "tensor");
                goto done;
            }
        uint64_t numel = src_numel(s);
        pt_ckpt_entry *en = &e[i];
        memset(en, 0, sizeof *en);
        en->name = (char *)s->name;
        en->kind = s->kind;
        en->dtype = s->dtype;
        en->ndim = s->ndim;
        memcpy(en->shape, s->shape, sizeof en->shape);
        en->raw_bytes = numel * pt_ckpt_dtype_size(s->dtype);
        en->transform = c->o.transform;
        en->block_elems = c->o.block_elems;
        en->n_planes = pt_ckpt_entry_planes(en->transform, en->dtype);
        en->n_blocks = (int64_t)((numel + en->block_elems - 1) / en->block_elems);
        slot[i] = block_bound(en->transform, en->dtype, en->block_elems);
        if (dst_cap[i] < pt_ckpt_encode_bound(s->dtype, numel, en->block_elems)) {
            st = pt_fail(PT_EINVAL, "checkpoint codec: output buffer for %s is smaller than pt_ckpt_encode_bound",
                         s->name ? s->name : "tensor");
            goto done;
        }
        if (en->n_blocks) {
            en->blocks = calloc((size_t)en->n_blocks, sizeof *en->blocks);
            if (!en->blocks) {
                st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
                goto done;
            }
        }
        unit_first[i + 1] = unit_first[i] + en->n_blocks;
    }
    if (c->o.choose_transform && c->o.transform != PT_CKPT_XFORM_NONE) {
        choose_ctx cx = { c, src, e };
        PT_TRY(pt_ckpt_parallel_for(c->n_workers, n, choose_one, &cx), done);
    }
    enc_ctx x = { c, src, dst, dst_cap, e, unit_first, slot, n };
    PT_TRY(pt_ckpt_parallel_for(c->n_workers, unit_first[n], encode_block, &x), done);
    /* Blocks were written at fixed slots; close the gaps. */
    for (int i = 0; i < n; i++) {
        size_t pos = 0;
        for (int64_t b = 0; b < e[i].n_blocks; b++) {
            size_t len = 0;
            for (int k = 0; k < e[i].n_planes; k++)
                len += (size_t)e[i].blocks[b].plane_bytes[k];
            size_t from = (size_t)b * slot[i];
            if (from != pos)
                memmove(dst[i] + pos, dst[i] + from, len);
            pos += len;
        }
        e[i].stored_bytes = pos;
    }
done:
    if (st != PT_OK)
        for (int i = 0; i < n; i++)
            pt_ckpt_entry_clear(&e[i]);
    free(unit_first);
    free(slot);
    return st;
}

/* ---------------------------------------------------------------- decode */

typedef struct dec_ctx {
    pt_ckpt_codec *c;
    const pt_ckpt_entry *const *e;
    const uint8_t *const *src;
    void *const *dst;
    int64_t *unit_first;  /* [n+1] */
    uint64_t **block_off; /* [n][n_blocks]: byte offset of each block in src[i] */
    int n;
    atomic_int failed;    /* index of the first tensor that failed, or -1 */
} dec_ctx;

static pt_status decode_block_one(dec_ctx *x, int i, int64_t b, int worker);

static pt_status decode_block(void *p, int64_t unit, int worker)
{
    dec_ctx *x = p;
    int i = 0;
    while (x->unit_first[i + 1] <= unit)
        i++;
    pt_status st = decode_block_one(x, i, unit - x->unit_first[i], worker);
    if (st != PT_OK) {
        int expected = -1;
        atomic_compare_exchange_strong(&x->failed, &expected, i);
    }
    return st;
}

static pt_status decode_block_one(dec_ctx *x, int i, int64_t b, int worker)
{
    const pt_ckpt_entry *e = x->e[i];
    codec_worker *w = &x->c->w[worker];
    size_t es = pt_ckpt_dtype_size(e->dtype);
    uint64_t nb = pt_ckpt_block_values(e, b);
    if (nb > x->c->o.block_elems && e->transform != PT_CKPT_XFORM_NONE)
        return pt_fail(PT_EINVAL, "checkpoint codec: %s uses %llu-value blocks, larger than this reader's %llu",
                       e->name, (unsigned long long)e->block_elems, (unsigned long long)x->c->o.block_elems);
    uint8_t *out = (uint8_t *)x->dst[i] + (size_t)b * e->block_elems * es;
    const uint8_t *in = x->src[i] + x->block_off[i][b];
    const pt_ckpt_block *blk = &e->blocks[b];
    uint64_t plane_raw = pt_ckpt_plane_raw_bytes(e->transform, e->dtype, nb);
    uint8_t *planes[PT_CKPT_MAX_PLANES];
    size_t stored = 0;
    for (int k = 0; k < e->n_planes; k++)
        stored += (size_t)blk->plane_bytes[k];
    uint64_t sh = pt_ckpt_xxh64(in, stored, 0);
    if (sh != blk->stored_xxh64)
        return pt_fail(PT_EFORMAT, "%s block %lld: stored bytes damaged (xxh64 %016llx, manifest says %016llx)", e->name,
                       (long long)b, (unsigned long long)sh, (unsigned long long)blk->stored_xxh64);
    size_t pos = 0;
    for (int k = 0; k < e->n_planes; k++) {
        uint8_t *target = e->transform == PT_CKPT_XFORM_NONE ? out : w->scratch + (size_t)k * nb;
        size_t len = (size_t)blk->plane_bytes[k];
        if (blk->codec[k] == PT_CKPT_PLANE_RAW) {
            if (len != plane_raw)
                return pt_fail(PT_EFORMAT, "%s block %lld plane %d: raw plane of %zu bytes, expected %llu", e->name,
                               (long long)b, k, len, (unsigned long long)plane_raw);
            if (e->transform == PT_CKPT_XFORM_NONE)
                memcpy(out, in + pos, len);
            else
                target = (uint8_t *)(in + pos); /* read in place; join does not write to it */
        } else {
            size_t fsz = ZSTD_findFrameCompressedSize(in + pos, len);
            if (ZSTD_isError(fsz) || fsz != len)
                return pt_fail(PT_EFORMAT, "%s block %lld plane %d: damaged zstd frame (%s)", e->name, (long long)b, k,
                               ZSTD_isError(fsz) ? ZSTD_getErrorName(fsz) : "wrong length");
            size_t r = ZSTD_decompressDCtx(w->dctx, target, (size_t)plane_raw, in + pos, len);
            if (ZSTD_isError(r))
                return pt_fail(PT_EFORMAT, "%s block %lld plane %d: %s", e->name, (long long)b, k,
                               ZSTD_getErrorName(r));
            if (r != plane_raw)
                return pt_fail(PT_EFORMAT, "%s block %lld plane %d: decompressed to %zu bytes, expected %llu", e->name,
                               (long long)b, k, r, (unsigned long long)plane_raw);
        }
        planes[k] = target;
        pos += len;
    }
    if (e->transform != PT_CKPT_XFORM_NONE) {
        int rot = e->transform == PT_CKPT_XFORM_EXPSPLIT;
        if (es == 4)
            planes_join32(planes, out, nb, rot);
        else
            planes_join16(planes, out, nb, rot);
    }
    uint64_t h = pt_ckpt_xxh64(out, nb * es, 0);
    if (h != blk->xxh64)
        return pt_fail(PT_EFORMAT, "%s block %lld: checksum mismatch (xxh64 %016llx, manifest says %016llx)", e->name,
                       (long long)b, (unsigned long long)h, (unsigned long long)blk->xxh64);
    return PT_OK;
}

pt_status pt_ckpt_decode(pt_ckpt_codec *c, int n, const pt_ckpt_entry *const *e, const uint8_t *const *src,
                         const size_t *src_len, void *const *dst)
{
    int failed;
    return pt_ckpt_decode_at(c, n, e, src, src_len, dst, &failed);
}

pt_status pt_ckpt_decode_at(pt_ckpt_codec *c, int n, const pt_ckpt_entry *const *e, const uint8_t *const *src,
                            const size_t *src_len, void *const *dst, int *failed)
{
    *failed = -1;
    pt_status st = PT_OK;
    int64_t *unit_first = calloc((size_t)n + 1, sizeof *unit_first);
    uint64_t **off = calloc((size_t)n + 1, sizeof *off);
    if (!unit_first || !off) {
        st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const pt_ckpt_entry *en = e[i];
        if (en->n_blocks > 0) {
            off[i] = malloc((size_t)en->n_blocks * sizeof **off);
            if (!off[i]) {
                st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
                goto done;
            }
        }
        uint64_t pos = 0;
        for (int64_t b = 0; b < en->n_blocks; b++) {
            off[i][b] = pos;
            for (int k = 0; k < en->n_planes; k++)
                pos += en->blocks[b].plane_bytes[k];
        }
        if (pos != en->stored_bytes || pos > src_len[i]) {
            *failed = i;
            st = pt_fail(PT_EFORMAT, "%s: blocks hold %llu bytes but %llu are recorded and %zu are available",
                         en->name, (unsigned long long)pos, (unsigned long long)en->stored_bytes, src_len[i]);
            goto done;
        }
        unit_first[i + 1] = unit_first[i] + en->n_blocks;
    }
    dec_ctx x = { c, e, src, dst, unit_first, off, n, -1 };
    st = pt_ckpt_parallel_for(c->n_workers, unit_first[n], decode_block, &x);
    if (st != PT_OK)
        *failed = atomic_load(&x.failed);
done:
    if (off)
        for (int i = 0; i < n; i++)
            free(off[i]);
    free(off);
    free(unit_first);
    return st;
}
