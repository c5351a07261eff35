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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

/* XXH3 from libxxhash's header, compiled here (with -march=native it uses AVX2/AVX-512). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ckpt_internal.h"
#include "pipetrain/timeutil.h"

/* ---------------------------------------------------------------- names */

static const char *const kind_names[PT_CKPT_KIND_COUNT] = { "param", "adam_m", "adam_v" };
static const char *const dtype_names[PT_CKPT_DTYPE_COUNT] = { "f32", "bf16" };
static const size_t dtype_sizes[PT_CKPT_DTYPE_COUNT] = { 4, 2 };
static const char *const xform_names[PT_CKPT_XFORM_COUNT] = { "none", "bytes", "expsplit" };
static const char *const hash_names[PT_CKPT_HASH_COUNT] = { "xxh64", "xxh3" };
_Static_assert(PT_CKPT_HASH_COUNT == 2, "hash_names must list every pt_ckpt_hash");
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

const char *pt_ckpt_hash_name(pt_ckpt_hash h)
{
    return (unsigned)h < PT_CKPT_HASH_COUNT ? hash_names[h] : NULL;
}

/* The 2-D view of a shape every piece is a part of (ckpt_internal.h): here, below the geometry of
 * boxes.c and the manifest, which both use it. */
void pt_ckpt_view(int ndim, const int64_t *shape, uint64_t *rows, uint64_t *cols)
{
    *rows = ndim >= 1 ? (uint64_t)shape[0] : 1;
    uint64_t c = 1;
    for (int d = 1; d < ndim && d < PT_CKPT_MAX_DIMS; d++)
        c *= (uint64_t)shape[d];
    *cols = c;
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

uint64_t pt_ckpt_hash_bytes(pt_ckpt_hash h, const void *data, size_t n)
{
    return h == PT_CKPT_HASH_XXH3 ? (uint64_t)XXH3_64bits(data, n) : pt_ckpt_xxh64(data, n, 0);
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

/* fast_planes: zstd's parameters for the level, with a match search that finds almost nothing
 * (matches of 7+ bytes through a 64-entry table). Byte planes of floats are coded almost entirely
 * by zstd's Huffman stage; the search is what costs time (exponent planes of gpt2's weights and
 * moments: 340 -> 835 MB/s, ratio 2.81 -> 2.67; see docs/checkpoints.md). */
#define FAST_PLANES_MIN_MATCH 7
#define FAST_PLANES_HASH_LOG 6
/* Only at the fast levels: whoever asks for a higher one asks for zstd's own search. */
#define FAST_PLANES_MAX_LEVEL 3

typedef struct codec_worker {
    ZSTD_CCtx *cctx;       /* zstd_level as it is: plain zstd (transform NONE) */
    ZSTD_CCtx *cctx_plane; /* byte planes: zstd_level, with fast_planes' search; or cctx */
    ZSTD_DCtx *dctx;
    XXH3_state_t *hs; /* checksum of a block's stored planes, which need not be contiguous */
    uint8_t *scratch; /* planes of one block: block_elems * 4 bytes */
    uint8_t *sample;  /* SAMPLE_SLICES * SAMPLE_SLICE bytes, and zstd's output for them */
    size_t sample_cap;
} codec_worker;

/* One block on its way to a shard file (pt_ckpt_encode_write): its planes, its zstd frames, and
 * where each plane's stored bytes are (a raw plane is written from `scratch` as it is). */
typedef struct write_slot {
    uint8_t *scratch; /* block_elems * 4 bytes */
    uint8_t *out;     /* slot_out_cap bytes */
    int64_t unit;     /* the block it holds (index over all blocks of the call), -1 when free */
    int next_free;    /* free list */
    int n_seg;
    struct iovec seg[PT_CKPT_MAX_PLANES];
    size_t stored;
    uint64_t file_off;
} write_slot;

struct pt_ckpt_codec {
    pt_ckpt_codec_opts o;
    int n_workers;
    codec_worker *w;
    write_slot *slots; /* made by the first pt_ckpt_encode_write, reused by the next (warm pages) */
    int n_slots;
    size_t slot_out_cap;
};

pt_ckpt_codec_opts pt_ckpt_codec_default(int zstd_level, int n_threads)
{
    return (pt_ckpt_codec_opts){ .transform = PT_CKPT_XFORM_EXPSPLIT,
                                 .zstd_level = zstd_level,
                                 .raw_if_no_gain = 1,
                                 .choose_transform = 1,
                                 .block_elems = PT_CKPT_DEFAULT_BLOCK_ELEMS,
                                 .fast_planes = 1,
                                 .n_threads = n_threads };
}

void pt_ckpt_codec_destroy(pt_ckpt_codec *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_workers; i++) {
        if (c->w[i].cctx_plane != c->w[i].cctx)
            ZSTD_freeCCtx(c->w[i].cctx_plane);
        ZSTD_freeCCtx(c->w[i].cctx);
        ZSTD_freeDCtx(c->w[i].dctx);
        XXH3_freeState(c->w[i].hs);
        free(c->w[i].scratch);
        free(c->w[i].sample);
    }
    for (int i = 0; i < c->n_slots; i++) {
        free(c->slots[i].scratch);
        free(c->slots[i].out);
    }
    free(c->slots);
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
    if (!o->store_raw && (o->zstd_level < 1 || o->zstd_level > ZSTD_maxCLevel()))
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
        w->hs = XXH3_createState();
        w->scratch = malloc(be * 4);
        w->sample_cap = SAMPLE_SLICES * SAMPLE_SLICE + ZSTD_compressBound(SAMPLE_SLICES * SAMPLE_SLICE);
        w->sample = malloc(w->sample_cap);
        if (!w->cctx || !w->dctx || !w->hs || !w->scratch || !w->sample) {
            st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory for %d threads of %llu-value blocks",
                         c->n_workers, (unsigned long long)be);
            goto fail;
        }
        w->cctx_plane = o->fast_planes && o->zstd_level <= FAST_PLANES_MAX_LEVEL ? ZSTD_createCCtx() : w->cctx;
        if (!w->cctx_plane) {
            st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
            goto fail;
        }
        for (int q = 0; q < 1 + (w->cctx_plane != w->cctx); q++) {
            ZSTD_CCtx *cc = q ? w->cctx_plane : w->cctx;
            PT_TRY(zstd_param(cc, ZSTD_c_compressionLevel, o->store_raw ? 1 : o->zstd_level, "compression level"),
                   fail);
            PT_TRY(zstd_param(cc, ZSTD_c_checksumFlag, 1, "checksum flag"), fail);
            PT_TRY(zstd_param(cc, ZSTD_c_contentSizeFlag, 1, "content size flag"), fail);
            if (q) { /* explicit search parameters override the level's */
                PT_TRY(zstd_param(cc, ZSTD_c_minMatch, FAST_PLANES_MIN_MATCH, "min match"), fail);
                PT_TRY(zstd_param(cc, ZSTD_c_hashLog, FAST_PLANES_HASH_LOG, "hash log"), fail);
            }
        }
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

static int src_has_box(const pt_ckpt_src *s)
{
    return s->box.r0 || s->box.r1 || s->box.c0 || s->box.c1;
}

/* Values of the part of the view a source is from: its box's, or the whole tensor's. */
static uint64_t src_box_values(const pt_ckpt_src *s)
{
    return src_has_box(s) ? (s->box.r1 - s->box.r0) * (s->box.c1 - s->box.c0) : src_numel(s);
}

/* Values a source stores: its box's or tensor's, or its piece's. */
static uint64_t src_values(const pt_ckpt_src *s)
{
    return s->elem_hi ? s->elem_hi - s->elem_lo : src_box_values(s);
}

/* ---------------------------------------------------------------- encode */

/* The tensor holding block `unit` (unit_first[i] <= unit < unit_first[i + 1]). */
static int unit_tensor(const int64_t *unit_first, int n, int64_t unit)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (unit_first[mid] <= unit)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Encodes block b of e (its values at `raw`): splits the values into planes in `scratch` and
 * compresses each plane into `out` (out_cap >= block_bound), or keeps it raw. With `contiguous`,
 * raw planes are copied into `out` as well, so the block's stored bytes are out[0, *stored);
 * otherwise a raw plane stays where it is (in scratch, or `raw` itself for NONE). seg[k] says
 * where plane k's stored bytes are. Fills e->blocks[b], both checksums included. */
static pt_status encode_block_core(const pt_ckpt_codec *c, codec_worker *w, uint8_t *scratch, uint8_t *out,
                                   size_t out_cap, int contiguous, pt_ckpt_entry *e, int64_t b, const uint8_t *raw,
                                   struct iovec *seg, size_t *stored)
{
    size_t es = pt_ckpt_dtype_size(e->dtype);
    uint64_t nb = pt_ckpt_block_values(e, b);
    pt_ckpt_block *blk = &e->blocks[b];
    blk->hash = XXH3_64bits(raw, nb * es); /* this build writes format 2 only (entries_prepare) */

    const uint8_t *planes[PT_CKPT_MAX_PLANES];
    uint64_t plane_raw = pt_ckpt_plane_raw_bytes(e->transform, e->dtype, nb);
    if (e->transform == PT_CKPT_XFORM_NONE) {
        planes[0] = raw;
    } else {
        int rot = e->transform == PT_CKPT_XFORM_EXPSPLIT;
        if (es == 4)
            planes_split32(raw, scratch, nb, rot);
        else
            planes_split16(raw, scratch, nb, rot);
        for (int k = 0; k < e->n_planes; k++)
            planes[k] = scratch + (size_t)k * nb;
    }
    ZSTD_CCtx *cc = e->transform == PT_CKPT_XFORM_NONE ? w->cctx : w->cctx_plane;
    size_t pos = 0;
    for (int k = 0; k < e->n_planes && k < PT_CKPT_MAX_PLANES; k++) {
        int keep_raw = c->o.store_raw;
        if (!keep_raw && c->o.raw_if_no_gain && plane_raw >= SAMPLE_MIN_PLANE) {
            size_t n_in = SAMPLE_SLICES * SAMPLE_SLICE, stride = (size_t)(plane_raw - SAMPLE_SLICE) / (SAMPLE_SLICES - 1);
            for (int q = 0; q < SAMPLE_SLICES; q++)
                memcpy(w->sample + (size_t)q * SAMPLE_SLICE, planes[k] + (size_t)q * stride, SAMPLE_SLICE);
            size_t r = ZSTD_compress2(cc, w->sample + n_in, w->sample_cap - n_in, w->sample, n_in);
            keep_raw = !ZSTD_isError(r) && (double)r >= 0.99 * (double)n_in;
        }
        size_t r = 0;
        if (!keep_raw) {
            r = ZSTD_compress2(cc, out + pos, out_cap - pos, planes[k], (size_t)plane_raw);
            if (ZSTD_isError(r))
                return pt_fail(PT_EINTERNAL, "checkpoint codec: zstd failed on %s block %lld plane %d (%s)",
                               e->name ? e->name : "tensor", (long long)b, k, ZSTD_getErrorName(r));
            keep_raw = c->o.raw_if_no_gain && (double)r >= 0.99 * (double)plane_raw;
        }
        if (keep_raw) {
            blk->codec[k] = PT_CKPT_PLANE_RAW;
            blk->plane_bytes[k] = plane_raw;
            if (contiguous) {
                memcpy(out + pos, planes[k], (size_t)plane_raw);
                seg[k] = (struct iovec){ out + pos, (size_t)plane_raw };
                pos += (size_t)plane_raw;
            } else {
                seg[k] = (struct iovec){ (void *)planes[k], (size_t)plane_raw };
            }
        } else {
            blk->codec[k] = PT_CKPT_PLANE_ZSTD;
            blk->plane_bytes[k] = r;
            seg[k] = (struct iovec){ out + pos, r };
            pos += r;
        }
    }
    size_t total = 0;
    for (int k = 0; k < e->n_planes; k++)
        total += seg[k].iov_len;
    if (c->o.store_raw && e->transform == PT_CKPT_XFORM_NONE) { /* stored bytes = the values: one hash */
        blk->stored_hash = blk->hash;
    } else {
        XXH3_64bits_reset(w->hs);
        for (int k = 0; k < e->n_planes; k++)
            XXH3_64bits_update(w->hs, seg[k].iov_base, seg[k].iov_len);
        blk->stored_hash = XXH3_64bits_digest(w->hs);
    }
    *stored = total;
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
        size_t r = ZSTD_compress2(w->cctx_plane, w->sample, w->sample_cap, w->scratch + k * nb, (size_t)nb);
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

/* Fills e[0..n) from src (identity, sizes, blocks allocated, transform chosen) and
 * unit_first[0..n] (the first block of tensor i, counting the blocks of all tensors in order).
 * On failure every e[i].blocks is freed. */
static pt_status entries_prepare(pt_ckpt_codec *c, int n, const pt_ckpt_src *src, pt_ckpt_entry *e, int64_t *unit_first)
{
    pt_status st = PT_OK;
    memset(e, 0, (size_t)n * sizeof *e);
    unit_first[0] = 0;
    for (int i = 0; i < n; i++) {
        const pt_ckpt_src *s = &src[i];
        if ((unsigned)s->dtype >= PT_CKPT_DTYPE_COUNT || s->ndim < 0 || s->ndim > PT_CKPT_MAX_DIMS) {
            st = pt_fail(PT_EINVAL, "checkpoint codec: %s has an unknown dtype or %d dimensions",
                         s->name ? s->name : "tensor", s->ndim);
            goto fail;
        }
        for (int d = 0; d < s->ndim; d++)
            if (s->shape[d] < 0) {
                st = pt_fail(PT_EINVAL, "checkpoint codec: %s has a negative dimension", s->name ? s->name : "tensor");
                goto fail;
            }
        uint64_t vr, vc;
        pt_ckpt_view(s->ndim, s->shape, &vr, &vc);
        if (src_has_box(s) && !(s->box.r0 < s->box.r1 && s->box.r1 <= vr && s->box.c0 < s->box.c1 && s->box.c1 <= vc)) {
            st = pt_fail(PT_EINVAL, "checkpoint codec: %s: box rows [%llu, %llu) x columns [%llu, %llu) is not within "
                                    "its %llu x %llu",
                         s->name ? s->name : "tensor", (unsigned long long)s->box.r0, (unsigned long long)s->box.r1,
                         (unsigned long long)s->box.c0, (unsigned long long)s->box.c1, (unsigned long long)vr,
                         (unsigned long long)vc);
            goto fail;
        }
        uint64_t full = src_box_values(s);
        if ((s->elem_hi || s->elem_lo) && !(s->elem_lo < s->elem_hi && s->elem_hi <= full)) {
            st = pt_fail(PT_EINVAL, "checkpoint codec: %s: piece [%llu, %llu) is not within its %llu values",
                         s->name ? s->name : "tensor", (unsigned long long)s->elem_lo, (unsigned long long)s->elem_hi,
                         (unsigned long long)full);
            goto fail;
        }
        uint64_t numel = src_values(s);
        pt_ckpt_entry *en = &e[i];
        en->name = (char *)s->name;
        en->kind = s->kind;
        en->dtype = s->dtype;
        en->ndim = s->ndim;
        memcpy(en->shape, s->shape, sizeof en->shape);
        en->box = src_has_box(s) ? s->box : (pt_ckpt_box){ 0, vr, 0, vc };
        en->elem_lo = s->elem_hi ? s->elem_lo : 0;
        en->elem_hi = s->elem_hi ? s->elem_hi : full;
        en->raw_bytes = numel * pt_ckpt_dtype_size(s->dtype);
        en->transform = c->o.transform;
        en->block_elems = c->o.block_elems;
        en->n_planes = pt_ckpt_entry_planes(en->transform, en->dtype);
        en->n_blocks = (int64_t)((numel + en->block_elems - 1) / en->block_elems);
        en->hash = PT_CKPT_HASH_XXH3;
        if (en->n_blocks) {
            en->blocks = calloc((size_t)en->n_blocks, sizeof *en->blocks);
            if (!en->blocks) {
                st = pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
                goto fail;
            }
        }
        unit_first[i + 1] = unit_first[i] + en->n_blocks;
    }
    if (c->o.choose_transform && c->o.transform != PT_CKPT_XFORM_NONE) {
        choose_ctx cx = { c, src, e };
        PT_TRY(pt_ckpt_parallel_for(c->n_workers, n, choose_one, &cx), fail);
    }
    return PT_OK;
fail:
    for (int i = 0; i < n; i++)
        pt_ckpt_entry_clear(&e[i]);
    return st;
}

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

static pt_status encode_block(void *p, int64_t unit, int worker)
{
    enc_ctx *x = p;
    int i = unit_tensor(x->unit_first, x->n, unit);
    int64_t b = unit - x->unit_first[i];
    pt_ckpt_entry *e = &x->e[i];
    codec_worker *w = &x->c->w[worker];
    const uint8_t *raw = (const uint8_t *)x->src[i].data + (size_t)b * e->block_elems * pt_ckpt_dtype_size(e->dtype);
    size_t from = (size_t)b * x->slot_bytes[i], cap = x->slot_bytes[i];
    if (cap > x->dst_cap[i] - from) /* the last block may be short, and so may its slot */
        cap = x->dst_cap[i] - from;
    struct iovec seg[PT_CKPT_MAX_PLANES];
    size_t stored;
    return encode_block_core(x->c, w, w->scratch, x->dst[i] + from, cap, 1, e, b, raw, seg, &stored);
}

pt_status pt_ckpt_encode(pt_ckpt_codec *c, int n, const pt_ckpt_src *src, uint8_t *const *dst,
                         const size_t *dst_cap, pt_ckpt_entry *e)
{
    pt_status st = PT_OK;
    int64_t *unit_first = calloc((size_t)n + 1, sizeof *unit_first);
    size_t *slot = calloc((size_t)n + 1, sizeof *slot);
    if (!unit_first || !slot) {
        free(unit_first);
        free(slot);
        return pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
    }
    for (int i = 0; i < n && st == PT_OK; i++) {
        uint64_t numel = (unsigned)src[i].dtype < PT_CKPT_DTYPE_COUNT && src[i].ndim >= 0 &&
                                 src[i].ndim <= PT_CKPT_MAX_DIMS
                             ? src_values(&src[i])
                             : 0;
        if (dst_cap[i] < pt_ckpt_encode_bound(src[i].dtype, numel, c->o.block_elems))
            st = pt_fail(PT_EINVAL, "checkpoint codec: output buffer for %s is smaller than pt_ckpt_encode_bound",
                         src[i].name ? src[i].name : "tensor");
    }
    if (st == PT_OK)
        st = entries_prepare(c, n, src, e, unit_first);
    if (st != PT_OK) {
        free(unit_first);
        free(slot);
        return st;
    }
    for (int i = 0; i < n; i++)
        slot[i] = block_bound(e[i].transform, e[i].dtype, e[i].block_elems);
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

/* ---------------------------------------------------------------- encode while writing */

/* Makes the codec's write slots once: two per thread and one more, so that a thread can encode
 * its next block while its last one waits for an earlier block to be written. */
static pt_status ensure_slots(pt_ckpt_codec *c)
{
    if (c->slots)
        return PT_OK;
    uint64_t be = c->o.block_elems;
    size_t a = block_bound(PT_CKPT_XFORM_BYTES, PT_CKPT_F32, be), b = block_bound(PT_CKPT_XFORM_NONE, PT_CKPT_F32, be);
    c->slot_out_cap = a > b ? a : b;
    int n = 2 * c->n_workers + 1;
    c->slots = calloc((size_t)n, sizeof *c->slots);
    if (!c->slots)
        return pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
    c->n_slots = n;
    for (int i = 0; i < n; i++) {
        c->slots[i].scratch = malloc(be * 4);
        c->slots[i].out = malloc(c->slot_out_cap);
        if (!c->slots[i].scratch || !c->slots[i].out) {
            for (int k = 0; k <= i; k++) {
                free(c->slots[k].scratch);
                free(c->slots[k].out);
            }
            free(c->slots);
            c->slots = NULL;
            c->n_slots = 0;
            return pt_fail(PT_ENOMEM, "checkpoint codec: cannot allocate %d write buffers of %zu bytes", n,
                           (size_t)(be * 4) + c->slot_out_cap);
        }
    }
    return PT_OK;
}

static pt_status pwritev_all(int fd, const char *path, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0 && iov->iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return pt_fail(PT_EIO, "write %s: %s; check free space", path, strerror(errno));
        }
        if (w == 0)
            return pt_fail(PT_EIO, "write %s: no progress at offset %llu; check free space", path, (unsigned long long)off);
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return PT_OK;
}

typedef struct wr_ctx {
    pt_ckpt_codec *c;
    const pt_ckpt_src *src;
    pt_ckpt_entry *e;
    const int64_t *unit_first; /* [n+1] */
    int n;
    int64_t n_units;
    int fd;
    const char *path;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* a slot was freed, or a thread failed */
    int free_head;      /* free slots (write_slot.next_free), -1: none */
    int64_t next_unit;  /* the next block to encode */
    int64_t next_write; /* the first block without a file offset yet */
    int *ready;         /* [n_slots]: the slot of encoded block u (u >= next_write) at u % n_slots, or -1 */
    uint64_t file_off;  /* where block next_write goes */
    int failed;
    double encode_s, write_s; /* thread-seconds */
} wr_ctx;

static void slot_release_locked(wr_ctx *x, int si)
{
    x->c->slots[si].unit = -1;
    x->c->slots[si].next_free = x->free_head;
    x->free_head = si;
}

/* One thread of pt_ckpt_encode_write: takes the next block, encodes it into a free slot, and if
 * the blocks from next_write on are now encoded, gives them their file offsets (in order) and
 * writes them. Whoever finishes the block at next_write writes, so every block is written once,
 * the other thread keeps encoding meanwhile, and the buffers in use stay bounded by the slots.
 * Units in flight always lie in [next_write, next_write + n_slots): each holds a slot. */
static pt_status write_worker(void *p, int64_t item, int worker)
{
    (void)item;
    wr_ctx *x = p;
    pt_ckpt_codec *c = x->c;
    codec_worker *w = &c->w[worker];
    pt_status st = PT_OK;
    double enc_s = 0, wr_s = 0;
    int batch[2 * 64 + 1];
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->failed && x->next_unit < x->n_units && x->free_head < 0)
            pthread_cond_wait(&x->cv, &x->mu);
        if (x->failed || x->next_unit >= x->n_units)
            break;
        int si = x->free_head;
        write_slot *sl = &c->slots[si];
        x->free_head = sl->next_free;
        int64_t u = x->next_unit++;
        pthread_mutex_unlock(&x->mu);

        int i = unit_tensor(x->unit_first, x->n, u);
        int64_t b = u - x->unit_first[i];
        pt_ckpt_entry *e = &x->e[i];
        const uint8_t *raw = (const uint8_t *)x->src[i].data + (size_t)b * e->block_elems * pt_ckpt_dtype_size(e->dtype);
        int64_t t0 = pt_now_ns();
        st = encode_block_core(c, w, sl->scratch, sl->out, c->slot_out_cap, 0, e, b, raw, sl->seg, &sl->stored);
        sl->n_seg = e->n_planes;
        sl->unit = u;
        enc_s += pt_seconds_between(t0, pt_now_ns());

        pthread_mutex_lock(&x->mu);
        if (st != PT_OK) {
            slot_release_locked(x, si);
            x->failed = 1;
            break;
        }
        x->ready[u % c->n_slots] = si;
        int nb = 0;
        while (nb < c->n_slots) {
            int r = x->ready[x->next_write % c->n_slots];
            if (r < 0 || c->slots[r].unit != x->next_write)
                break;
            x->ready[x->next_write % c->n_slots] = -1;
            c->slots[r].file_off = x->file_off;
            x->file_off += c->slots[r].stored;
            x->next_write++;
            batch[nb++] = r;
        }
        if (nb == 0)
            continue;
        pthread_mutex_unlock(&x->mu);
        t0 = pt_now_ns();
        for (int q = 0; q < nb && st == PT_OK; q++) {
            write_slot *ws = &c->slots[batch[q]];
            st = pwritev_all(x->fd, x->path, ws->seg, ws->n_seg, ws->file_off);
            /* start writing it back now, so that the disk works while we encode and the final
             * fsync has little left to do (without this the kernel would wait for the fsync);
             * a no-op on tmpfs, and an error here shows again at the fsync */
            if (st == PT_OK && ws->stored)
                (void)sync_file_range(x->fd, (off_t)ws->file_off, (off_t)ws->stored, SYNC_FILE_RANGE_WRITE);
        }
        wr_s += pt_seconds_between(t0, pt_now_ns());
        pthread_mutex_lock(&x->mu);
        for (int q = 0; q < nb; q++)
            slot_release_locked(x, batch[q]);
        pthread_cond_broadcast(&x->cv);
        if (st != PT_OK) {
            x->failed = 1;
            break;
        }
    }
    x->encode_s += enc_s;
    x->write_s += wr_s;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return st;
}

pt_status pt_ckpt_encode_write(pt_ckpt_codec *c, int fd, const char *path, int n, const pt_ckpt_src *src,
                               pt_ckpt_entry *e, uint64_t *offset, double *encode_s, double *write_s)
{
    *encode_s = *write_s = 0;
    PT_CHECK(ensure_slots(c));
    int64_t *unit_first = calloc((size_t)n + 1, sizeof *unit_first);
    int *ready = malloc((size_t)c->n_slots * sizeof *ready);
    if (!unit_first || !ready) {
        free(unit_first);
        free(ready);
        return pt_fail(PT_ENOMEM, "checkpoint codec: out of memory");
    }
    pt_status st = entries_prepare(c, n, src, e, unit_first);
    if (st != PT_OK) {
        free(unit_first);
        free(ready);
        return st;
    }
    wr_ctx x = { .c = c, .src = src, .e = e, .unit_first = unit_first, .n = n, .n_units = unit_first[n], .fd = fd,
                 .path = path, .free_head = -1, .ready = ready, .file_off = *offset };
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cv, NULL);
    for (int i = 0; i < c->n_slots; i++) {
        ready[i] = -1;
        slot_release_locked(&x, i);
    }
    st = pt_ckpt_parallel_for(c->n_workers, c->n_workers, write_worker, &x);
    if (st == PT_OK && x.next_write != x.n_units)
        st = pt_fail(PT_EINTERNAL, "checkpoint codec: %lld of %lld blocks of %s were written", (long long)x.next_write,
                     (long long)x.n_units, path);
    pthread_cond_destroy(&x.cv);
    pthread_mutex_destroy(&x.mu);
    *encode_s = x.encode_s;
    *write_s = x.write_s;
    if (st == PT_OK) {
        /* blocks were written in order, back to back: each tensor starts where the last one ended */
        uint64_t off = *offset;
        for (int i = 0; i < n; i++) {
            uint64_t len = 0;
            for (int64_t b = 0; b < e[i].n_blocks; b++)
                for (int k = 0; k < e[i].n_planes; k++)
                    len += e[i].blocks[b].plane_bytes[k];
            e[i].offset = off;
            e[i].stored_bytes = len;
            off += len;
        }
        if (off != x.file_off)
            st = pt_fail(PT_EINTERNAL, "checkpoint codec: %s: blocks add up to %llu bytes, %llu were written", path,
                         (unsigned long long)(off - *offset), (unsigned long long)(x.file_off - *offset));
        *offset = off;
    }
    if (st != PT_OK)
        for (int i = 0; i < n; i++)
            pt_ckpt_entry_clear(&e[i]);
    free(unit_first);
    free(ready);
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
    int i = unit_tensor(x->unit_first, x->n, unit);
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
    uint64_t sh = pt_ckpt_hash_bytes(e->hash, in, stored);
    if (sh != blk->stored_hash)
        return pt_fail(PT_EFORMAT, "%s block %lld: stored bytes damaged (%s %016llx, manifest says %016llx)", e->name,
                       (long long)b, pt_ckpt_hash_name(e->hash), (unsigned long long)sh,
                       (unsigned long long)blk->stored_hash);
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
    uint64_t h = pt_ckpt_hash_bytes(e->hash, out, nb * es);
    if (h != blk->hash)
        return pt_fail(PT_EFORMAT, "%s block %lld: checksum mismatch (%s %016llx, manifest says %016llx)", e->name,
                       (long long)b, pt_ckpt_hash_name(e->hash), (unsigned long long)h, (unsigned long long)blk->hash);
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
