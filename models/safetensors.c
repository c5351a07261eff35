/* safetensors reader and writer (format: https://github.com/huggingface/safetensors):
 * u64 little-endian header length N, N bytes of JSON, then the data section. Offsets in the
 * header are relative to the data section. */
#include "pipetrain/bf16.h"
#include "pipetrain/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/json.h"

/* Headers larger than this are refused as corrupt (the format's own limit is 100 MB). */
#define PT_ST_MAX_HEADER_BYTES (100u * 1024u * 1024u)

static const char *const st_dtype_names[PT_ST_DTYPE_COUNT] = {
    [PT_ST_F32] = "F32", [PT_ST_F16] = "F16", [PT_ST_BF16] = "BF16", [PT_ST_F64] = "F64", [PT_ST_I64] = "I64",
    [PT_ST_I32] = "I32", [PT_ST_I16] = "I16", [PT_ST_I8] = "I8",     [PT_ST_U8] = "U8",   [PT_ST_BOOL] = "BOOL",
};
static const size_t st_dtype_sizes[PT_ST_DTYPE_COUNT] = {
    [PT_ST_F32] = 4, [PT_ST_F16] = 2, [PT_ST_BF16] = 2, [PT_ST_F64] = 8, [PT_ST_I64] = 8,
    [PT_ST_I32] = 4, [PT_ST_I16] = 2, [PT_ST_I8] = 1,   [PT_ST_U8] = 1,  [PT_ST_BOOL] = 1,
};
_Static_assert(sizeof(st_dtype_names) / sizeof(st_dtype_names[0]) == PT_ST_DTYPE_COUNT, "dtype name table");
_Static_assert(sizeof(st_dtype_sizes) / sizeof(st_dtype_sizes[0]) == PT_ST_DTYPE_COUNT, "dtype size table");

size_t pt_st_dtype_size(pt_st_dtype d) { return (unsigned)d < PT_ST_DTYPE_COUNT ? st_dtype_sizes[d] : 0; }

const char *pt_st_dtype_name(pt_st_dtype d) { return (unsigned)d < PT_ST_DTYPE_COUNT ? st_dtype_names[d] : "?"; }

static int st_dtype_parse(const char *s, pt_st_dtype *out)
{
    for (int i = 0; i < PT_ST_DTYPE_COUNT; i++) {
        if (strcmp(s, st_dtype_names[i]) == 0) {
            *out = (pt_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

float pt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* Inf / NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal half: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float pt_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pt_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return (uint16_t)(pt_bf16_round_bits(bits) >> 16); /* pipetrain/bf16.h: the one rounding */
}

/* ---- reader ---- */

struct pt_safetensors {
    char *path;
    int fd;
    uint64_t file_bytes;
    int n;
    pt_safetensors_tensor *tensors;
    cJSON *metadata; /* the "__metadata__" object, detached from the header; may be NULL */
};

void pt_safetensors_close(pt_safetensors *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    cJSON_Delete(f->metadata);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}

static pt_status st_pread_all(int fd, void *dst, size_t bytes, uint64_t offset, const char *path)
{
    char *p = dst;
    while (bytes > 0) {
        ssize_t r = pread(fd, p, bytes, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return pt_fail(PT_EIO, "%s: read failed at byte %llu: %s", path, (unsigned long long)offset,
                           strerror(errno));
        if (r == 0)
            return pt_fail(PT_EFORMAT, "%s: file ends at byte %llu, before the data its header promises; the file "
                                       "is truncated, download or write it again",
                           path, (unsigned long long)offset);
        p += r;
        bytes -= (size_t)r;
        offset += (uint64_t)r;
    }
    return PT_OK;
}

static int st_cmp_offset(const void *a, const void *b)
{
    const pt_safetensors_tensor *x = *(const pt_safetensors_tensor *const *)a;
    const pt_safetensors_tensor *y = *(const pt_safetensors_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : 0;
}

/* Fills t from one header entry; data_start/data_bytes bound the data section. */
static pt_status st_parse_entry(const char *path, const cJSON *e, uint64_t data_start, uint64_t data_bytes,
                                pt_safetensors_tensor *t)
{
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return pt_fail(PT_EFORMAT, "%s: header entry \"%s\" is not an object; the file is corrupt", path, name);
    const char *allowed[] = { "dtype", "shape", "data_offsets", NULL };
    pt_status st = pt_json_check_keys(e, path, allowed);
    if (st != PT_OK)
        return pt_fail_wrap(PT_EFORMAT, "%s: tensor \"%s\"", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !st_dtype_parse(dt->valuestring, &t->dtype))
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has a missing or unknown dtype (%s); expected one of F32, F16, "
                                   "BF16, F64, I64, I32, I16, I8, U8, BOOL",
                       path, name, cJSON_IsString(dt) ? dt->valuestring : "none");
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > PT_ST_MAX_DIMS)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has a missing shape or more than %d dimensions", path, name,
                       PT_ST_MAX_DIMS);
    t->ndim = cJSON_GetArraySize(sh);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        const cJSON *x = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9.0e15 ||
            x->valuedouble != floor(x->valuedouble))
            return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" dimension %d is not a non-negative integer", path, name, d);
        t->shape[d] = (int64_t)x->valuedouble;
        if (t->shape[d] != 0 && numel > UINT64_MAX / 16 / (uint64_t)t->shape[d])
            return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" shape is absurdly large; the file is corrupt", path, name);
        numel *= (uint64_t)t->shape[d];
    }
    t->numel = (size_t)numel;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" needs data_offsets [begin, end]", path, name);
    double b = cJSON_GetArrayItem(of, 0)->valuedouble, en = cJSON_GetArrayItem(of, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(of, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(of, 1)) || b < 0 ||
        en < b || b != floor(b) || en != floor(en) || en > 1.8e19)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has invalid data_offsets", path, name);
    uint64_t begin = (uint64_t)b, end = (uint64_t)en;
    t->nbytes = numel * pt_st_dtype_size(t->dtype);
    if (end - begin != t->nbytes)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" spans %llu bytes but its dtype and shape need %llu; the file is "
                                   "corrupt",
                       path, name, (unsigned long long)(end - begin), (unsigned long long)t->nbytes);
    if (end > data_bytes)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" ends at data byte %llu but the file has only %llu data bytes; "
                                   "the file is truncated",
                       path, name, (unsigned long long)end, (unsigned long long)data_bytes);
    t->offset = data_start + begin;
    return PT_OK;
}

pt_status pt_safetensors_open(const char *path, pt_safetensors **out)
{
    *out = NULL;
    pt_status st = PT_OK;
    char *hdr = NULL;
    cJSON *root = NULL;
    pt_safetensors_tensor **sorted = NULL;
    pt_safetensors *f = calloc(1, sizeof(*f));
    if (!f)
        return pt_fail(PT_ENOMEM, "out of memory opening %s", path);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) {
        st = pt_fail(PT_ENOMEM, "out of memory opening %s", path);
        goto fail;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        st = pt_fail(PT_EIO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) {
        st = pt_fail(PT_EIO, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    f->file_bytes = (uint64_t)sb.st_size;
    if (f->file_bytes < 8) {
        st = pt_fail(PT_EFORMAT, "%s: %llu bytes is too short for a safetensors file (8-byte header length); the "
                                 "file is truncated or not safetensors",
                     path, (unsigned long long)f->file_bytes);
        goto fail;
    }
    unsigned char lenbuf[8];
    PT_TRY(st_pread_all(f->fd, lenbuf, 8, 0, path), fail);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenbuf[i];
    if (hlen < 2 || hlen > PT_ST_MAX_HEADER_BYTES || hlen > f->file_bytes - 8) {
        st = pt_fail(PT_EFORMAT, "%s: header length %llu does not fit the file (%llu bytes); the file is corrupt, "
                                 "truncated or not safetensors",
                     path, (unsigned long long)hlen, (unsigned long long)f->file_bytes);
        goto fail;
    }
    hdr = malloc(hlen);
    if (!hdr) {
        st = pt_fail(PT_ENOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hlen);
        goto fail;
    }
    PT_TRY(st_pread_all(f->fd, hdr, hlen, 8, path), fail);
    st = pt_json_parse(hdr, hlen, path, &root);
    if (st != PT_OK)
        goto fail;
    if (!cJSON_IsObject(root)) {
        st = pt_fail(PT_EFORMAT, "%s: header is not a JSON object; the file is corrupt", path);
        goto fail;
    }
    uint64_t data_start = 8 + hlen, data_bytes = f->file_bytes - data_start;
    int n_entries = cJSON_GetArraySize(root);
    f->tensors = calloc(n_entries > 0 ? (size_t)n_entries : 1, sizeof(*f->tensors));
    if (!f->tensors) {
        st = pt_fail(PT_ENOMEM, "%s: out of memory for %d header entries", path, n_entries);
        goto fail;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        pt_safetensors_tensor *t = &f->tensors[f->n];
        t->name = strdup(e->string);
        if (!t->name) {
            st = pt_fail(PT_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        f->n++;
        PT_TRY(st_parse_entry(path, e, data_start, data_bytes, t), fail);
    }
    cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    if (meta) {
        f->metadata = meta;
        if (!cJSON_IsObject(meta)) {
            st = pt_fail(PT_EFORMAT, "%s: __metadata__ is not an object of strings; the file is corrupt", path);
            goto fail;
        }
        cJSON_ArrayForEach(e, meta)
        {
            if (!cJSON_IsString(e)) {
                st = pt_fail(PT_EFORMAT, "%s: __metadata__ value \"%s\" is not a string; the file is corrupt", path,
                             e->string);
                goto fail;
            }
        }
    }
    /* No two tensors may share bytes. */
    sorted = malloc((f->n > 0 ? (size_t)f->n : 1) * sizeof(*sorted));
    if (!sorted) {
        st = pt_fail(PT_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < f->n; i++)
        sorted[i] = &f->tensors[i];
    qsort(sorted, (size_t)f->n, sizeof(*sorted), st_cmp_offset);
    for (int i = 1; i < f->n; i++) {
        if (sorted[i]->offset < sorted[i - 1]->offset + sorted[i - 1]->nbytes) {
            st = pt_fail(PT_EFORMAT, "%s: tensors \"%s\" and \"%s\" overlap; the file is corrupt", path,
                         sorted[i - 1]->name, sorted[i]->name);
            goto fail;
        }
    }
    for (int i = 0; i < f->n; i++) {
        for (int j = 0; j < i; j++) {
            if (strcmp(f->tensors[i].name, f->tensors[j].name) == 0) {
                st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" appears twice; the file is corrupt", path,
                             f->tensors[i].name);
                goto fail;
            }
        }
    }
    free(sorted);
    cJSON_Delete(root);
    free(hdr);
    *out = f;
    return PT_OK;
fail:
    free(sorted);
    cJSON_Delete(root);
    free(hdr);
    pt_safetensors_close(f);
    return st;
}

int pt_safetensors_n_tensors(const pt_safetensors *f) { return f->n; }

const pt_safetensors_tensor *pt_safetensors_tensor_at(const pt_safetensors *f, int i)
{
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const pt_safetensors_tensor *pt_safetensors_find(const pt_safetensors *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *pt_safetensors_metadata(const pt_safetensors *f, const char *key)
{
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

pt_status pt_safetensors_read(pt_safetensors *f, const pt_safetensors_tensor *t, void *dst, size_t cap_bytes)
{
    if (t->nbytes > cap_bytes)
        return pt_fail(PT_EINVAL, "%s: tensor \"%s\" has %llu bytes but the destination holds %zu", f->path, t->name,
                       (unsigned long long)t->nbytes, cap_bytes);
    return st_pread_all(f->fd, dst, t->nbytes, t->offset, f->path);
}

/* Reads the tensor in pieces of at most this many elements into a bounce buffer. */
#define PT_ST_CHUNK_ELEMS ((size_t)1 << 20)

/* Converts k elements of the file's dtype at src into dst (element i0 onwards); PT_EFORMAT when one
 * does not fit the destination type. */
typedef pt_status (*st_convert_fn)(pt_safetensors *f, const pt_safetensors_tensor *t, const unsigned char *src,
                                   size_t k, size_t i0, void *dst);

static pt_status st_to_f32(pt_safetensors *f, const pt_safetensors_tensor *t, const unsigned char *src, size_t k,
                           size_t i0, void *dst)
{
    (void)f;
    float *out = (float *)dst + i0;
    size_t es = pt_st_dtype_size(t->dtype);
    for (size_t i = 0; i < k; i++) {
        const unsigned char *p = src + i * es;
        if (t->dtype == PT_ST_F64) {
            double d;
            memcpy(&d, p, 8);
            out[i] = (float)d;
        } else {
            uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
            out[i] = t->dtype == PT_ST_F16 ? pt_f16_to_f32(h) : pt_bf16_to_f32(h);
        }
    }
    return PT_OK;
}

static pt_status st_to_i32(pt_safetensors *f, const pt_safetensors_tensor *t, const unsigned char *src, size_t k,
                           size_t i0, void *dst)
{
    int32_t *out = (int32_t *)dst + i0;
    size_t es = pt_st_dtype_size(t->dtype);
    for (size_t i = 0; i < k; i++) {
        const unsigned char *p = src + i * es;
        int64_t v;
        if (t->dtype == PT_ST_I64) {
            memcpy(&v, p, 8);
        } else if (t->dtype == PT_ST_I16) {
            int16_t s;
            memcpy(&s, p, 2);
            v = s;
        } else if (t->dtype == PT_ST_I8) {
            v = (int8_t)p[0];
        } else {
            v = p[0];
        }
        if (v < INT32_MIN || v > INT32_MAX)
            return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" element %zu (%lld) does not fit in int32", f->path, t->name,
                           i0 + i, (long long)v);
        out[i] = (int32_t)v;
    }
    return PT_OK;
}

/* Reads tensor t into dst (n elements of 4 bytes): straight when the file's dtype is the
 * destination's (`same`), else in chunks through `conv` when the dtype is one of `accept`
 * (kind names the family in the error). */
static pt_status st_read_as(pt_safetensors *f, const pt_safetensors_tensor *t, void *dst, size_t n, pt_st_dtype same,
                            const pt_st_dtype *accept, int n_accept, const char *kind, st_convert_fn conv)
{
    if (t->numel > n)
        return pt_fail(PT_EINVAL, "%s: tensor \"%s\" has %zu elements but the destination holds %zu", f->path,
                       t->name, t->numel, n);
    if (t->dtype == same)
        return st_pread_all(f->fd, dst, t->nbytes, t->offset, f->path);
    int ok = 0;
    for (int i = 0; i < n_accept; i++)
        ok |= t->dtype == accept[i];
    if (!ok)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" is %s, not %s tensor", f->path, t->name,
                       pt_st_dtype_name(t->dtype), kind);
    size_t es = pt_st_dtype_size(t->dtype);
    unsigned char *buf = malloc(PT_ST_CHUNK_ELEMS * es);
    if (!buf)
        return pt_fail(PT_ENOMEM, "out of memory reading %s", t->name);
    pt_status st = PT_OK;
    for (size_t i0 = 0; i0 < t->numel && st == PT_OK; i0 += PT_ST_CHUNK_ELEMS) {
        size_t k = t->numel - i0 < PT_ST_CHUNK_ELEMS ? t->numel - i0 : PT_ST_CHUNK_ELEMS;
        st = st_pread_all(f->fd, buf, k * es, t->offset + i0 * es, f->path);
        if (st == PT_OK)
            st = conv(f, t, buf, k, i0, dst);
    }
    free(buf);
    return st;
}

pt_status pt_safetensors_read_f32(pt_safetensors *f, const pt_safetensors_tensor *t, float *dst, size_t n)
{
    static const pt_st_dtype accept[] = { PT_ST_F16, PT_ST_BF16, PT_ST_F64 };
    return st_read_as(f, t, dst, n, PT_ST_F32, accept, 3, "a floating-point", st_to_f32);
}

pt_status pt_safetensors_read_i32(pt_safetensors *f, const pt_safetensors_tensor *t, int32_t *dst, size_t n)
{
    static const pt_st_dtype accept[] = { PT_ST_I64, PT_ST_I16, PT_ST_I8, PT_ST_U8 };
    return st_read_as(f, t, dst, n, PT_ST_I32, accept, 4, "an integer", st_to_i32);
}

/* ---- writer ---- */

typedef struct st_decl {
    char *name;
    pt_st_dtype dtype;
    int ndim;
    int64_t shape[PT_ST_MAX_DIMS];
    uint64_t nbytes;
} st_decl;

struct pt_safetensors_writer {
    char *path, *tmp_path;
    FILE *fp;
    cJSON *metadata;
    st_decl *decls;
    int n, cap;
    int header_written;
    uint64_t total_bytes, written_bytes;
    int failed, finished;
};

pt_status pt_safetensors_writer_create(const char *path, pt_safetensors_writer **out)
{
    *out = NULL;
    pt_safetensors_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return pt_fail(PT_ENOMEM, "out of memory writing %s", path);
    size_t len = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(len + 5);
    w->metadata = cJSON_CreateObject();
    if (!w->path || !w->tmp_path || !w->metadata) {
        pt_safetensors_writer_destroy(w);
        return pt_fail(PT_ENOMEM, "out of memory writing %s", path);
    }
    memcpy(w->tmp_path, path, len);
    memcpy(w->tmp_path + len, ".tmp", 5);
    w->fp = fopen(w->tmp_path, "wb");
    if (!w->fp) {
        pt_status st = pt_fail(PT_EIO, "cannot create %s: %s; check the directory exists and is writable",
                               w->tmp_path, strerror(errno));
        pt_safetensors_writer_destroy(w);
        return st;
    }
    *out = w;
    return PT_OK;
}

void pt_safetensors_writer_destroy(pt_safetensors_writer *w)
{
    if (!w)
        return;
    if (w->fp)
        fclose(w->fp);
    if (!w->finished && w->tmp_path)
        unlink(w->tmp_path);
    for (int i = 0; i < w->n; i++)
        free(w->decls[i].name);
    free(w->decls);
    cJSON_Delete(w->metadata);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

pt_status pt_safetensors_writer_set_metadata(pt_safetensors_writer *w, const char *key, const char *value)
{
    if (w->header_written)
        return pt_fail(PT_EINVAL, "%s: metadata \"%s\" set after data was written; set metadata first", w->path, key);
    cJSON_DeleteItemFromObjectCaseSensitive(w->metadata, key);
    if (!cJSON_AddStringToObject(w->metadata, key, value))
        return pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
    return PT_OK;
}

pt_status pt_safetensors_writer_declare(pt_safetensors_writer *w, const char *name, pt_st_dtype dtype, int ndim,
                                        const int64_t *shape)
{
    if (w->header_written)
        return pt_fail(PT_EINVAL, "%s: tensor \"%s\" declared after data was written; declare all tensors first",
                       w->path, name);
    if ((unsigned)dtype >= PT_ST_DTYPE_COUNT || ndim < 0 || ndim > PT_ST_MAX_DIMS || !name[0] ||
        strcmp(name, "__metadata__") == 0)
        return pt_fail(PT_EINVAL, "%s: tensor \"%s\" has an invalid name, dtype or rank (%d)", w->path, name, ndim);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->decls[i].name, name) == 0)
            return pt_fail(PT_EINVAL, "%s: tensor \"%s\" declared twice", w->path, name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_decl *d = realloc(w->decls, (size_t)cap * sizeof(*d));
        if (!d)
            return pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
        w->decls = d;
        w->cap = cap;
    }
    st_decl *d = &w->decls[w->n];
    memset(d, 0, sizeof(*d));
    d->name = strdup(name);
    if (!d->name)
        return pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
    d->dtype = dtype;
    d->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            free(d->name);
            return pt_fail(PT_EINVAL, "%s: tensor \"%s\" has negative dimension %d", w->path, name, i);
        }
        d->shape[i] = shape[i];
        numel *= (uint64_t)shape[i];
    }
    d->nbytes = numel * pt_st_dtype_size(dtype);
    w->total_bytes += d->nbytes;
    w->n++;
    return PT_OK;
}

static pt_status st_write_header(pt_safetensors_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
    pt_status st = PT_OK;
    char *text = NULL;
    if (cJSON_GetArraySize(w->metadata) > 0) {
        cJSON *m = cJSON_Duplicate(w->metadata, 1);
        if (!m || !cJSON_AddItemToObject(root, "__metadata__", m)) {
            cJSON_Delete(m);
            st = pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
            goto done;
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_decl *d = &w->decls[i];
        cJSON *e = cJSON_AddObjectToObject(root, d->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!e || !shape || !offs || !cJSON_AddStringToObject(e, "dtype", pt_st_dtype_name(d->dtype))) {
            st = pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
            goto done;
        }
        for (int k = 0; k < d->ndim; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)d->shape[k]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + d->nbytes)));
        off += d->nbytes;
    }
    text = cJSON_PrintUnformatted(root);
    if (!text) {
        st = pt_fail(PT_ENOMEM, "out of memory writing %s", w->path);
        goto done;
    }
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7; /* data section 8-byte aligned */
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (fwrite(lenbuf, 1, 8, w->fp) != 8 || fwrite(text, 1, len, w->fp) != len)
        st = pt_fail(PT_EIO, "cannot write %s: %s", w->tmp_path, strerror(errno));
    for (size_t i = len; st == PT_OK && i < padded; i++)
        if (fputc(' ', w->fp) == EOF)
            st = pt_fail(PT_EIO, "cannot write %s: %s", w->tmp_path, strerror(errno));
    w->header_written = 1;
done:
    free(text);
    cJSON_Delete(root);
    return st;
}

pt_status pt_safetensors_writer_write(pt_safetensors_writer *w, const void *data, size_t bytes)
{
    if (w->failed)
        return pt_fail(PT_EINVAL, "%s: an earlier write failed; start again", w->path);
    if (!w->header_written) {
        pt_status st = st_write_header(w);
        if (st != PT_OK) {
            w->failed = 1;
            return st;
        }
    }
    if (bytes > w->total_bytes - w->written_bytes) {
        w->failed = 1;
        return pt_fail(PT_EINVAL, "%s: %zu more bytes written than the %llu declared", w->path,
                       bytes - (size_t)(w->total_bytes - w->written_bytes), (unsigned long long)w->total_bytes);
    }
    if (bytes && fwrite(data, 1, bytes, w->fp) != bytes) {
        w->failed = 1;
        return pt_fail(PT_EIO, "cannot write %s: %s", w->tmp_path, strerror(errno));
    }
    w->written_bytes += bytes;
    return PT_OK;
}

pt_status pt_safetensors_writer_finish(pt_safetensors_writer *w)
{
    if (!w->header_written) {
        pt_status st = pt_safetensors_writer_write(w, NULL, 0);
        if (st != PT_OK)
            return st;
    }
    if (w->failed)
        return pt_fail(PT_EINVAL, "%s: an earlier write failed; start again", w->path);
    if (w->written_bytes != w->total_bytes)
        return pt_fail(PT_EINVAL, "%s: %llu of %llu declared bytes written; write every declared tensor", w->path,
                       (unsigned long long)w->written_bytes, (unsigned long long)w->total_bytes);
    int bad = fflush(w->fp) != 0 || fsync(fileno(w->fp)) != 0;
    int err = errno;
    bad |= fclose(w->fp) != 0;
    w->fp = NULL;
    if (bad)
        return pt_fail(PT_EIO, "cannot write %s: %s", w->tmp_path, strerror(err ? err : errno));
    if (rename(w->tmp_path, w->path) != 0)
        return pt_fail(PT_EIO, "cannot rename %s to %s: %s", w->tmp_path, w->path, strerror(errno));
    w->finished = 1;
    return PT_OK;
}
