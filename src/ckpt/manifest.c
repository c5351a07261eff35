/* Checkpoint manifest: JSON in and out, and a complete check of everything a reader relies on.
 * The parser is fuzzed (tests/ckpt/fuzz_ckpt.c): every field is checked for type and range
 * before use, and sizes are checked to add up, so a damaged manifest is an error, never a crash. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ckpt_internal.h"
#include "pipetrain/json.h"

#define MANIFEST_FORMAT_NAME "pipetrain-checkpoint"

void pt_ckpt_shard_name(int rank, char *buf, size_t cap)
{
    snprintf(buf, cap, "shard-%d.ptz", rank);
}

void pt_ckpt_step_name(int64_t step, char *buf, size_t cap)
{
    snprintf(buf, cap, "step_%06lld", (long long)step);
}

/* ---------------------------------------------------------------- writing */

static pt_status oom(void)
{
    return pt_fail(PT_ENOMEM, "checkpoint manifest: out of memory");
}

/* Block checksum keys per pt_ckpt_hash: the value checksum and the stored-bytes checksum. */
static const char *const hash_keys[PT_CKPT_HASH_COUNT][2] = { { "xxh64", "stored_xxh64" }, { "xxh3", "stored_xxh3" } };
_Static_assert(PT_CKPT_HASH_COUNT == 2, "hash_keys must list every pt_ckpt_hash");

static cJSON *block_to_json(const pt_ckpt_block *b, int n_planes, pt_ckpt_hash hash)
{
    if ((unsigned)hash >= PT_CKPT_HASH_COUNT)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char hex[17], shex[17], codecs[PT_CKPT_MAX_PLANES + 1];
    snprintf(hex, sizeof hex, "%016" PRIx64, b->hash);
    snprintf(shex, sizeof shex, "%016" PRIx64, b->stored_hash);
    double sizes[PT_CKPT_MAX_PLANES];
    for (int k = 0; k < n_planes; k++) {
        codecs[k] = b->codec[k] == PT_CKPT_PLANE_ZSTD ? 'z' : 'r';
        sizes[k] = (double)b->plane_bytes[k];
    }
    codecs[n_planes] = 0;
    if (!cJSON_AddStringToObject(o, hash_keys[hash][0], hex) || !cJSON_AddStringToObject(o, hash_keys[hash][1], shex) ||
        !cJSON_AddStringToObject(o, "codecs", codecs) ||
        !cJSON_AddItemToObject(o, "sizes", cJSON_CreateDoubleArray(sizes, n_planes))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *entry_to_json(const pt_ckpt_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char shard[32];
    pt_ckpt_shard_name(e->rank, shard, sizeof shard);
    double shape[PT_CKPT_MAX_DIMS];
    for (int d = 0; d < e->ndim; d++)
        shape[d] = (double)e->shape[d];
    cJSON *blocks = cJSON_CreateArray();
    int ok = blocks != NULL;
    for (int64_t b = 0; ok && b < e->n_blocks; b++) {
        cJSON *bj = block_to_json(&e->blocks[b], e->n_planes, e->hash);
        ok = bj && cJSON_AddItemToArray(blocks, bj);
    }
    ok = ok && cJSON_AddStringToObject(o, "name", e->name) &&
         cJSON_AddStringToObject(o, "kind", pt_ckpt_kind_name(e->kind)) &&
         cJSON_AddStringToObject(o, "dtype", pt_ckpt_dtype_name(e->dtype)) &&
         cJSON_AddItemToObject(o, "shape", cJSON_CreateDoubleArray(shape, e->ndim)) &&
         cJSON_AddStringToObject(o, "shard", shard) && cJSON_AddNumberToObject(o, "offset", (double)e->offset) &&
         cJSON_AddNumberToObject(o, "bytes", (double)e->stored_bytes) &&
         cJSON_AddNumberToObject(o, "raw_bytes", (double)e->raw_bytes) &&
         cJSON_AddStringToObject(o, "transform", pt_ckpt_transform_name(e->transform)) &&
         cJSON_AddNumberToObject(o, "block_elems", (double)e->block_elems);
    /* "box" absent: the whole view (formats 1-3 have none); "range" absent: all of the box's values */
    int is_box = pt_ckpt_entry_is_box(e);
    if (ok && is_box) {
        double rows[2] = { (double)e->box.r0, (double)e->box.r1 }, cols[2] = { (double)e->box.c0, (double)e->box.c1 };
        cJSON *bj = cJSON_CreateObject();
        ok = bj && cJSON_AddItemToObject(o, "box", bj) &&
             cJSON_AddItemToObject(bj, "rows", cJSON_CreateDoubleArray(rows, 2)) &&
             cJSON_AddItemToObject(bj, "cols", cJSON_CreateDoubleArray(cols, 2));
        if (!bj)
            ok = 0;
    }
    uint64_t all = is_box ? (e->box.r1 - e->box.r0) * (e->box.c1 - e->box.c0) : pt_ckpt_entry_numel(e);
    if (ok && (e->elem_lo != 0 || e->elem_hi != all)) {
        double range[2] = { (double)e->elem_lo, (double)e->elem_hi };
        ok = cJSON_AddItemToObject(o, "range", cJSON_CreateDoubleArray(range, 2)) != 0;
    }
    if (ok) {
        ok = cJSON_AddItemToObject(o, "blocks", blocks);
        blocks = NULL;
    }
    cJSON_Delete(blocks);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int pt_ckpt_format_for(const pt_ckpt_entry *e, int n)
{
    int v = PT_CKPT_FORMAT_WHOLE;
    for (int i = 0; i < n; i++) {
        if (pt_ckpt_entry_is_box(&e[i]))
            return PT_CKPT_FORMAT_VERSION;
        if (pt_ckpt_entry_is_piece(&e[i]))
            v = PT_CKPT_FORMAT_PIECES;
    }
    return v;
}

pt_status pt_ckpt_entries_to_json(const pt_ckpt_entry *e, int n, cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return oom();
    for (int i = 0; i < n; i++) {
        cJSON *ej = entry_to_json(&e[i]);
        if (!ej || !cJSON_AddItemToArray(arr, ej)) {
            cJSON_Delete(ej);
            cJSON_Delete(arr);
            return oom();
        }
    }
    *out = arr;
    return PT_OK;
}

pt_status pt_ckpt_manifest_to_json(const pt_ckpt_manifest *m, cJSON **out)
{
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return oom();
    pt_status st = PT_OK;
    cJSON *run = NULL, *tensors = NULL;
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, m->seed);
    int version = pt_ckpt_format_for(m->entries, m->n_entries);
    if (m->version > version)
        version = m->version;
    if (!cJSON_AddStringToObject(root, "format", MANIFEST_FORMAT_NAME) ||
        !cJSON_AddNumberToObject(root, "version", version) || !cJSON_AddNumberToObject(root, "step", (double)m->step) ||
        !cJSON_AddNumberToObject(root, "data_step", (double)m->data_step) ||
        !cJSON_AddStringToObject(root, "seed", seed) || !cJSON_AddNumberToObject(root, "n_ranks", m->n_ranks)) {
        st = oom();
        goto fail;
    }
    const char *rj = m->run_json ? m->run_json : "{}";
    run = cJSON_Parse(rj);
    if (run && !cJSON_IsObject(run)) {
        cJSON_Delete(run);
        st = pt_fail(PT_EINVAL, "checkpoint: the run description must be a JSON object, not \"%.40s\"", rj);
        goto fail;
    }
    if (!run) {
        st = pt_fail(PT_EINVAL, "checkpoint: the run description is not valid JSON (near \"%.40s\"); pass a JSON object",
                     cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : rj);
        goto fail;
    }
    if (!cJSON_AddItemToObject(root, "run", run)) {
        cJSON_Delete(run);
        st = oom();
        goto fail;
    }
    PT_TRY(pt_ckpt_entries_to_json(m->entries, m->n_entries, &tensors), fail);
    if (!cJSON_AddItemToObject(root, "tensors", tensors)) {
        cJSON_Delete(tensors);
        st = oom();
        goto fail;
    }
    *out = root;
    return PT_OK;
fail:
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- reading */

static pt_status bad(const char *what, const char *fmt, const char *field)
{
    return pt_fail(PT_EFORMAT, "%s: %s '%s'; the checkpoint is damaged or not a pipetrain checkpoint", what, fmt, field);
}

/* A non-negative integer field within [lo, hi]. */
static pt_status get_u(const cJSON *o, const char *what, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return bad(what, "missing field", key);
    if (!cJSON_IsNumber(v))
        return bad(what, "not a number:", key);
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d)
        return pt_fail(PT_EFORMAT, "%s: field '%s' = %g is not an integer in [%lld, %lld]; the checkpoint is damaged",
                       what, key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return PT_OK;
}

static pt_status get_s(const cJSON *o, const char *what, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return bad(what, "missing field", key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad(what, "not a string:", key);
    *out = v->valuestring;
    return PT_OK;
}

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static pt_status parse_shard_name(const char *s, int n_ranks, const char *what, int *rank)
{
    /* exactly "shard-<decimal>.ptz": never a path */
    if (strncmp(s, "shard-", 6) != 0)
        return bad(what, "bad shard name", s);
    const char *p = s + 6;
    int r = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7) {
        r = r * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || strcmp(p, ".ptz") != 0 || (digits > 1 && s[6] == '0'))
        return bad(what, "bad shard name", s);
    if (r >= n_ranks)
        return pt_fail(PT_EFORMAT, "%s: shard '%s' but the manifest has %d ranks; the checkpoint is damaged", what, s,
                       n_ranks);
    *rank = r;
    return PT_OK;
}

void pt_ckpt_entries_free(pt_ckpt_entry *e, int n)
{
    if (!e)
        return;
    for (int i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].blocks);
    }
    free(e);
}

static pt_status parse_block(const cJSON *bj, pt_ckpt_entry *e, int64_t b, const char *what)
{
    if (!cJSON_IsObject(bj))
        return pt_fail(PT_EFORMAT, "%s: block %lld is not an object; the checkpoint is damaged", what, (long long)b);
    const char *hex = NULL, *shex = NULL, *codecs = NULL;
    /* the checksum keys name the function; every block of a tensor uses the first block's */
    if (b == 0)
        e->hash = cJSON_GetObjectItemCaseSensitive(bj, hash_keys[PT_CKPT_HASH_XXH3][0]) ? PT_CKPT_HASH_XXH3
                                                                                        : PT_CKPT_HASH_XXH64;
    PT_CHECK(get_s(bj, what, hash_keys[e->hash][0], &hex));
    PT_CHECK(get_s(bj, what, hash_keys[e->hash][1], &shex));
    PT_CHECK(get_s(bj, what, "codecs", &codecs));
    pt_ckpt_block *blk = &e->blocks[b];
    if (strlen(hex) != 16 || strspn(hex, "0123456789abcdef") != 16)
        return bad(what, "bad checksum", hex);
    if (strlen(shex) != 16 || strspn(shex, "0123456789abcdef") != 16)
        return bad(what, "bad checksum", shex);
    blk->hash = strtoull(hex, NULL, 16);
    blk->stored_hash = strtoull(shex, NULL, 16);
    if ((int)strlen(codecs) != e->n_planes)
        return pt_fail(PT_EFORMAT, "%s: block %lld has %zu plane codecs, expected %d; the checkpoint is damaged", what,
                       (long long)b, strlen(codecs), e->n_planes);
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(bj, "sizes");
    if (!cJSON_IsArray(sizes) || cJSON_GetArraySize(sizes) != e->n_planes)
        return pt_fail(PT_EFORMAT, "%s: block %lld needs %d plane sizes; the checkpoint is damaged", what, (long long)b,
                       e->n_planes);
    uint64_t nb = pt_ckpt_block_values(e, b);
    uint64_t plane_raw = pt_ckpt_plane_raw_bytes(e->transform, e->dtype, nb);
    int k = 0;
    const cJSON *sz;
    cJSON_ArrayForEach(sz, sizes)
    {
        double d = cJSON_IsNumber(sz) ? sz->valuedouble : -1;
        if (codecs[k] == 'r') {
            blk->codec[k] = PT_CKPT_PLANE_RAW;
            if (d != (double)plane_raw)
                return pt_fail(PT_EFORMAT, "%s: block %lld plane %d is raw but %g bytes, expected %llu", what,
                               (long long)b, k, d, (unsigned long long)plane_raw);
        } else if (codecs[k] == 'z') {
            blk->codec[k] = PT_CKPT_PLANE_ZSTD;
            if (!(d >= 1 && d <= (double)ZSTD_compressBound((size_t)plane_raw)) || d != (double)(int64_t)d)
                return pt_fail(PT_EFORMAT, "%s: block %lld plane %d has an impossible size %g; the checkpoint is damaged",
                               what, (long long)b, k, d);
        } else {
            return pt_fail(PT_EFORMAT, "%s: block %lld has unknown plane codec '%c' (known: z, r)", what, (long long)b,
                           codecs[k]);
        }
        blk->plane_bytes[k] = (uint64_t)d;
        k++;
    }
    return PT_OK;
}

static pt_status parse_entry(const cJSON *ej, int n_ranks, const char *manifest_what, int idx, pt_ckpt_entry *e)
{
    char what[512];
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(ej, "name");
    if (!cJSON_IsObject(ej))
        return pt_fail(PT_EFORMAT, "%s: tensor %d is not an object; the checkpoint is damaged", manifest_what, idx);
    snprintf(what, sizeof what, "%s: tensor %d (%.200s)", manifest_what, idx,
             cJSON_IsString(nm) && nm->valuestring ? nm->valuestring : "?");
    const char *name = NULL, *kind = NULL, *dtype = NULL, *shard = NULL, *xform = NULL;
    PT_CHECK(get_s(ej, what, "name", &name));
    if (!name[0] || strlen(name) > 255)
        return bad(what, "bad tensor name", name);
    PT_CHECK(get_s(ej, what, "kind", &kind));
    PT_CHECK(get_s(ej, what, "dtype", &dtype));
    PT_CHECK(get_s(ej, what, "shard", &shard));
    PT_CHECK(get_s(ej, what, "transform", &xform));
    static const char *const kinds[] = { "param", "adam_m", "adam_v" };
    static const char *const dtypes[] = { "f32", "bf16" };
    static const char *const xforms[] = { "none", "bytes", "expsplit" };
    int ki = name_index(kind, kinds, 3), di = name_index(dtype, dtypes, 2), xi = name_index(xform, xforms, 3);
    if (ki < 0)
        return bad(what, "unknown kind", kind);
    if (di < 0)
        return bad(what, "unknown dtype", dtype);
    if (xi < 0)
        return bad(what, "unknown transform", xform);
    e->kind = (pt_ckpt_kind)ki;
    e->dtype = (pt_ckpt_dtype)di;
    e->transform = (pt_ckpt_transform)xi;
    PT_CHECK(parse_shard_name(shard, n_ranks, what, &e->rank));
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(ej, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > PT_CKPT_MAX_DIMS)
        return bad(what, "shape must be an array of at most 4 dimensions:", "shape");
    e->ndim = cJSON_GetArraySize(shape);
    uint64_t numel = 1;
    const cJSON *dj;
    int d = 0;
    cJSON_ArrayForEach(dj, shape)
    {
        if (!cJSON_IsNumber(dj) || !(dj->valuedouble >= 0 && dj->valuedouble <= (double)(1LL << 40)) ||
            dj->valuedouble != (double)(int64_t)dj->valuedouble)
            return bad(what, "bad dimension in", "shape");
        e->shape[d] = (int64_t)dj->valuedouble;
        numel *= (uint64_t)e->shape[d];
        if (numel > ((uint64_t)1 << 44))
            return bad(what, "tensor too large:", "shape");
        d++;
    }
    /* "box": {"rows": [r0, r1], "cols": [c0, c1]} of the tensor's 2-D view (format 4); absent: all of it */
    uint64_t vr, vc;
    pt_ckpt_view(e->ndim, e->shape, &vr, &vc);
    e->box = (pt_ckpt_box){ 0, vr, 0, vc };
    const cJSON *box = cJSON_GetObjectItemCaseSensitive(ej, "box");
    if (box) {
        uint64_t lim[2] = { vr, vc }, got[2][2];
        static const char *const keys[2] = { "rows", "cols" };
        for (int k = 0; k < 2; k++) {
            const cJSON *a = cJSON_IsObject(box) ? cJSON_GetObjectItemCaseSensitive(box, keys[k]) : NULL;
            const cJSON *lo = cJSON_IsArray(a) && cJSON_GetArraySize(a) == 2 ? cJSON_GetArrayItem(a, 0) : NULL;
            const cJSON *hi = lo ? cJSON_GetArrayItem(a, 1) : NULL;
            if (!cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) || !(lo->valuedouble >= 0) ||
                lo->valuedouble != (double)(int64_t)lo->valuedouble ||
                hi->valuedouble != (double)(int64_t)hi->valuedouble || !(lo->valuedouble < hi->valuedouble) ||
                !(hi->valuedouble <= (double)lim[k]))
                return pt_fail(PT_EFORMAT, "%s: 'box' must be {\"rows\": [r0, r1], \"cols\": [c0, c1]} within the "
                                           "tensor's %llu x %llu (r0 < r1, c0 < c1); the checkpoint is damaged",
                               what, (unsigned long long)vr, (unsigned long long)vc);
            got[k][0] = (uint64_t)lo->valuedouble;
            got[k][1] = (uint64_t)hi->valuedouble;
        }
        e->box = (pt_ckpt_box){ got[0][0], got[0][1], got[1][0], got[1][1] };
    }
    /* "range": [lo, hi), a piece of the box's row-major values (format 3: of the tensor's flattened
     * values); absent: all of them */
    uint64_t in_box = (e->box.r1 - e->box.r0) * (e->box.c1 - e->box.c0);
    e->elem_lo = 0;
    e->elem_hi = in_box;
    const cJSON *range = cJSON_GetObjectItemCaseSensitive(ej, "range");
    if (range) {
        const cJSON *lo = cJSON_IsArray(range) && cJSON_GetArraySize(range) == 2 ? cJSON_GetArrayItem(range, 0) : NULL;
        const cJSON *hi = lo ? cJSON_GetArrayItem(range, 1) : NULL;
        if (!cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) || !(lo->valuedouble >= 0) ||
            lo->valuedouble != (double)(int64_t)lo->valuedouble || hi->valuedouble != (double)(int64_t)hi->valuedouble ||
            !(lo->valuedouble < hi->valuedouble) || !(hi->valuedouble <= (double)in_box))
            return pt_fail(PT_EFORMAT, "%s: 'range' must be [lo, hi] with 0 <= lo < hi <= %llu (the %s values); "
                                       "the checkpoint is damaged",
                           what, (unsigned long long)in_box, box ? "box's" : "tensor's");
        e->elem_lo = (uint64_t)lo->valuedouble;
        e->elem_hi = (uint64_t)hi->valuedouble;
    }
    uint64_t values = e->elem_hi - e->elem_lo;
    int64_t offset, bytes, raw, be;
    PT_CHECK(get_u(ej, what, "offset", PT_CKPT_SHARD_HEADER_BYTES, PT_CKPT_JSON_INT_MAX, &offset));
    PT_CHECK(get_u(ej, what, "bytes", 0, PT_CKPT_JSON_INT_MAX, &bytes));
    PT_CHECK(get_u(ej, what, "raw_bytes", 0, PT_CKPT_JSON_INT_MAX, &raw));
    PT_CHECK(get_u(ej, what, "block_elems", 1, (int64_t)1 << 28, &be));
    if ((uint64_t)raw != values * pt_ckpt_dtype_size(e->dtype))
        return pt_fail(PT_EFORMAT, "%s: raw_bytes %lld does not match %s and dtype (%llu); the checkpoint is damaged",
                       what, (long long)raw, range ? "range" : "shape",
                       (unsigned long long)(values * pt_ckpt_dtype_size(e->dtype)));
    e->offset = (uint64_t)offset;
    e->stored_bytes = (uint64_t)bytes;
    e->raw_bytes = (uint64_t)raw;
    e->block_elems = (uint64_t)be;
    e->n_planes = pt_ckpt_entry_planes(e->transform, e->dtype);
    e->n_blocks = (int64_t)((values + e->block_elems - 1) / e->block_elems);
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(ej, "blocks");
    if (!cJSON_IsArray(blocks) || cJSON_GetArraySize(blocks) != e->n_blocks)
        return pt_fail(PT_EFORMAT, "%s: needs %lld blocks in 'blocks'; the checkpoint is damaged", what,
                       (long long)e->n_blocks);
    e->name = strdup(name);
    if (!e->name || (e->n_blocks && !(e->blocks = calloc((size_t)e->n_blocks, sizeof *e->blocks))))
        return oom();
    int64_t b = 0;
    uint64_t sum = 0;
    const cJSON *bj;
    cJSON_ArrayForEach(bj, blocks)
    {
        PT_CHECK(parse_block(bj, e, b, what));
        for (int k = 0; k < e->n_planes; k++)
            sum += e->blocks[b].plane_bytes[k];
        b++;
    }
    if (sum != e->stored_bytes)
        return pt_fail(PT_EFORMAT, "%s: blocks add up to %llu bytes but 'bytes' is %llu; the checkpoint is damaged", what,
                       (unsigned long long)sum, (unsigned long long)e->stored_bytes);
    return PT_OK;
}

pt_status pt_ckpt_entries_from_json(const cJSON *arr, const char *what, int n_ranks, pt_ckpt_entry **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!cJSON_IsArray(arr))
        return bad(what, "not an array:", "tensors");
    int n = cJSON_GetArraySize(arr);
    pt_ckpt_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e)
        return oom();
    int i = 0;
    const cJSON *ej;
    cJSON_ArrayForEach(ej, arr)
    {
        pt_status st = parse_entry(ej, n_ranks, what, i, &e[i]);
        if (st != PT_OK) {
            pt_ckpt_entries_free(e, i + 1);
            return st;
        }
        i++;
    }
    *out = e;
    *n_out = n;
    return PT_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    const pt_ckpt_entry *x = *(pt_ckpt_entry *const *)a, *y = *(pt_ckpt_entry *const *)b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    const uint64_t kx[6] = { x->box.r0, x->box.c0, x->box.r1, x->box.c1, x->elem_lo, x->elem_hi };
    const uint64_t ky[6] = { y->box.r0, y->box.c0, y->box.r1, y->box.c1, y->elem_lo, y->elem_hi };
    for (int i = 0; i < 6; i++)
        if (kx[i] != ky[i])
            return kx[i] < ky[i] ? -1 : 1;
    return 0;
}

pt_status pt_ckpt_manifest_parse(const char *text, size_t len, const char *what, pt_ckpt_manifest **out)
{
    *out = NULL;
    cJSON *root = NULL;
    pt_status st = pt_json_parse(text, len, what, &root);
    if (st != PT_OK)
        return pt_fail_wrap(PT_EFORMAT, "checkpoint manifest");
    pt_ckpt_manifest *m = calloc(1, sizeof *m);
    pt_ckpt_entry **sorted = NULL;
    if (!m) {
        st = oom();
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        st = pt_fail(PT_EFORMAT, "%s: not a JSON object; the checkpoint is damaged", what);
        goto fail;
    }
    const char *format = NULL, *seed = NULL;
    PT_TRY(get_s(root, what, "format", &format), fail);
    if (strcmp(format, MANIFEST_FORMAT_NAME) != 0) {
        st = pt_fail(PT_EFORMAT, "%s: format '%.60s' is not '%s'; this is not a pipetrain checkpoint", what, format,
                     MANIFEST_FORMAT_NAME);
        goto fail;
    }
    int64_t v;
    PT_TRY(get_u(root, what, "version", 1, 1 << 20, &v), fail);
    if (v > PT_CKPT_FORMAT_VERSION) {
        st = pt_fail(PT_EFORMAT, "%s: format %lld is newer than this build (%d); upgrade pipetrain", what, (long long)v,
                     PT_CKPT_FORMAT_VERSION);
        goto fail;
    }
    m->version = (int)v;
    PT_TRY(get_u(root, what, "step", 0, PT_CKPT_JSON_INT_MAX, &m->step), fail);
    PT_TRY(get_u(root, what, "data_step", 0, PT_CKPT_JSON_INT_MAX, &m->data_step), fail);
    PT_TRY(get_u(root, what, "n_ranks", 1, 1 << 20, &v), fail);
    m->n_ranks = (int)v;
    PT_TRY(get_s(root, what, "seed", &seed), fail);
    char *end = NULL;
    errno = 0;
    m->seed = strtoull(seed, &end, 10);
    if (!seed[0] || *end || errno || seed[0] == '-') {
        st = bad(what, "bad seed", seed);
        goto fail;
    }
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
    if (!cJSON_IsObject(run)) {
        st = bad(what, "missing or non-object field", "run");
        goto fail;
    }
    m->run_json = cJSON_PrintUnformatted(run);
    if (!m->run_json) {
        st = oom();
        goto fail;
    }
    PT_TRY(pt_ckpt_entries_from_json(cJSON_GetObjectItemCaseSensitive(root, "tensors"), what, m->n_ranks, &m->entries,
                                     &m->n_entries),
           fail);
    for (int i = 0; i < m->n_entries; i++)
        if (m->version < PT_CKPT_FORMAT_VERSION && pt_ckpt_entry_is_box(&m->entries[i])) {
            st = pt_fail(PT_EFORMAT, "%s: tensor %.200s has a 'box', which format %d does not have (boxes came with "
                                     "format %d); the checkpoint is damaged",
                         what, m->entries[i].name, m->version, PT_CKPT_FORMAT_VERSION);
            goto fail;
        }
    /* (name, kind, box, range) must be unique: a reader picks tensors by it. Pieces that overlap or leave
     * gaps are found where they matter (pt_ckpt_manifest_cover: loading, ckpt verify), so that the
     * weights of a checkpoint whose moments lack a piece can still be read (export). */
    sorted = malloc(((size_t)m->n_entries + 1) * sizeof *sorted);
    if (!sorted) {
        st = oom();
        goto fail;
    }
    for (int i = 0; i < m->n_entries; i++)
        sorted[i] = &m->entries[i];
    qsort(sorted, (size_t)m->n_entries, sizeof *sorted, entry_cmp);
    for (int i = 1; i < m->n_entries; i++)
        if (entry_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            st = pt_fail(PT_EFORMAT, "%s: tensor %.200s (%s)%s appears twice; the checkpoint is damaged", what,
                         sorted[i]->name, pt_ckpt_kind_name(sorted[i]->kind),
                         pt_ckpt_entry_is_piece(sorted[i]) ? " piece" : "");
            goto fail;
        }
    free(sorted);
    cJSON_Delete(root);
    *out = m;
    return PT_OK;
fail:
    free(sorted);
    cJSON_Delete(root);
    pt_ckpt_manifest_destroy(m);
    return st;
}

pt_status pt_ckpt_manifest_read(const char *step_dir, pt_ckpt_manifest **out)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", step_dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(errno == ENOENT ? PT_EFORMAT : PT_EIO, "%s: %s; the checkpoint is incomplete or the path is wrong",
                       path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    pt_status st = PT_OK;
    for (;;) {
        if (len + 65536 > cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, nc);
            if (!nb) {
                st = oom();
                goto done;
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        st = pt_fail(PT_EIO, "%s: read error; check the disk", path);
        goto done;
    }
    st = pt_ckpt_manifest_parse(buf, len, path, out);
done:
    fclose(f);
    free(buf);
    return st;
}

void pt_ckpt_manifest_destroy(pt_ckpt_manifest *m)
{
    if (!m)
        return;
    pt_ckpt_entries_free(m->entries, m->n_entries);
    free(m->run_json);
    free(m);
}

const pt_ckpt_entry *pt_ckpt_manifest_find(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind)
{
    for (int i = 0; i < m->n_entries; i++)
        if (m->entries[i].kind == kind && strcmp(m->entries[i].name, name) == 0)
            return &m->entries[i];
    return NULL;
}

static int piece_cmp(const void *a, const void *b)
{
    const pt_ckpt_entry *x = *(const pt_ckpt_entry *const *)a, *y = *(const pt_ckpt_entry *const *)b;
    const uint64_t kx[6] = { x->box.r0, x->box.c0, x->box.r1, x->box.c1, x->elem_lo, x->elem_hi };
    const uint64_t ky[6] = { y->box.r0, y->box.c0, y->box.r1, y->box.c1, y->elem_lo, y->elem_hi };
    for (int i = 0; i < 6; i++)
        if (kx[i] != ky[i])
            return kx[i] < ky[i] ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

pt_status pt_ckpt_manifest_pieces(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind,
                                  const pt_ckpt_entry ***out, int *n)
{
    *out = NULL;
    *n = 0;
    int cnt = 0;
    for (int i = 0; i < m->n_entries; i++)
        cnt += m->entries[i].kind == kind && strcmp(m->entries[i].name, name) == 0;
    if (cnt == 0)
        return PT_OK;
    const pt_ckpt_entry **v = malloc((size_t)cnt * sizeof *v);
    if (!v)
        return oom();
    int k = 0;
    for (int i = 0; i < m->n_entries; i++)
        if (m->entries[i].kind == kind && strcmp(m->entries[i].name, name) == 0)
            v[k++] = &m->entries[i];
    qsort(v, (size_t)cnt, sizeof *v, piece_cmp);
    *out = v;
    *n = cnt;
    return PT_OK;
}

pt_status pt_ckpt_manifest_cover(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind, uint64_t lo,
                                 uint64_t hi, const char *what)
{
    const pt_ckpt_entry **v;
    int n;
    PT_CHECK(pt_ckpt_manifest_pieces(m, name, kind, &v, &n));
    uint64_t rows = 1, cols = hi;
    if (n)
        pt_ckpt_view(v[0]->ndim, v[0]->shape, &rows, &cols);
    pt_ckpt_part need = { { 0, rows, 0, cols }, lo, hi };
    pt_status st = pt_ckpt_cover_check(v, n, name, kind, rows, cols, &need, lo < hi, what);
    free(v);
    return st;
}
