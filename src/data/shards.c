/* Token files (pipetrain/data.h, docs/data.md): llm.c's shards (uint16 and uint32) and pipetrain's
 * older PTTOKENS files — writing them through tmp + fsync + rename, mapping them, checking them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"

uint64_t pt__splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}


static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- writing ---- */

struct pt_token_writer {
    FILE *f;
    char *path, *tmp;
    int kind, vocab, width;
    uint64_t n, checksum;
    unsigned char buf[1 << 16];
    size_t used;
};

/* The header of a file of w's kind holding n tokens. */
static void header_encode(const pt_token_writer *w, unsigned char *h, uint64_t n)
{
    memset(h, 0, (size_t)pt__tf_header_bytes(w->kind));
    if (w->kind == PT_TF_PTTOKENS) {
        memcpy(h, PT_TOKEN_FILE_MAGIC, 8);
        put_u32(h + 8, PT_TOKEN_FILE_VERSION);
        put_u32(h + 12, (uint32_t)w->width);
        put_u32(h + 16, (uint32_t)w->vocab);
        put_u64(h + 24, n);
        put_u64(h + 32, w->checksum);
    } else {
        int u32 = w->kind == PT_TF_LLMC32;
        put_u32(h, u32 ? PT_SHARD_MAGIC_U32 : PT_SHARD_MAGIC);
        put_u32(h + 4, u32 ? PT_SHARD_VERSION_U32 : PT_SHARD_VERSION);
        put_u32(h + 8, (uint32_t)n);
    }
}

static pt_status writer_flush(pt_token_writer *w)
{
    if (w->used && fwrite(w->buf, 1, w->used, w->f) != w->used)
        return pt_fail(PT_EIO, "%s: cannot write: %s; check free disk space", w->tmp, strerror(errno));
    if (w->kind == PT_TF_PTTOKENS)
        w->checksum = pt__fnv1a64(w->checksum, w->buf, w->used);
    w->used = 0;
    return PT_OK;
}

static pt_status writer_open(const char *path, int kind, int vocab_size, pt_token_writer **out)
{
    *out = NULL;
    if (vocab_size < 1 || vocab_size > INT32_MAX - 1)
        return pt_fail(PT_EINVAL, "token file %s: vocab size %d is not in [1, 2^31-1)", path, vocab_size);
    pt_token_writer *w = calloc(1, sizeof *w);
    if (!w)
        return pt_fail(PT_ENOMEM, "out of memory opening token file %s", path);
    size_t len = strlen(path);
    w->path = malloc(len + 1);
    w->tmp = malloc(len + 5);
    if (!w->path || !w->tmp) {
        pt_token_writer_abort(w);
        return pt_fail(PT_ENOMEM, "out of memory opening token file %s", path);
    }
    memcpy(w->path, path, len + 1);
    snprintf(w->tmp, len + 5, "%s.tmp", path);
    w->vocab = vocab_size;
    if (kind == PT_TF_PTTOKENS) {
        w->kind = kind;
        w->width = vocab_size <= 256 ? 1 : vocab_size <= 65536 ? 2 : 4;
    } else {
        w->kind = vocab_size <= 65536 ? PT_TF_LLMC16 : PT_TF_LLMC32;
        w->width = w->kind == PT_TF_LLMC16 ? 2 : 4;
    }
    w->checksum = PT_FNV_OFFSET;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        pt_status st = pt_fail(PT_EIO, "cannot create %s: %s; check the directory exists and is writable",
                               w->tmp, strerror(errno));
        free(w->path);
        free(w->tmp);
        free(w);
        return st;
    }
    unsigned char h[PT_SHARD_HEADER_BYTES];
    header_encode(w, h, 0); /* rewritten by commit */
    size_t hb = (size_t)pt__tf_header_bytes(w->kind);
    if (fwrite(h, 1, hb, w->f) != hb) {
        pt_status st = pt_fail(PT_EIO, "%s: cannot write: %s", w->tmp, strerror(errno));
        pt_token_writer_abort(w);
        return st;
    }
    *out = w;
    return PT_OK;
}

pt_status pt_token_writer_open(const char *path, int vocab_size, pt_token_writer **out)
{
    return writer_open(path, PT_TF_PTTOKENS, vocab_size, out);
}

pt_status pt_shard_writer_open(const char *path, int vocab_size, pt_token_writer **out)
{
    return writer_open(path, PT_TF_LLMC16, vocab_size, out);
}

pt_status pt_token_writer_append(pt_token_writer *w, const int32_t *tokens, size_t n)
{
    if (w->kind != PT_TF_PTTOKENS && w->n + n > (uint64_t)PT_SHARD_MAX_TOKENS)
        return pt_fail(PT_EINVAL, "%s: more than %d tokens do not fit one llm.c shard (its count is an int32); use "
                                  "a smaller --shard-tokens",
                       w->path, PT_SHARD_MAX_TOKENS);
    for (size_t i = 0; i < n; i++) {
        int32_t t = tokens[i];
        if (t < 0 || t >= w->vocab)
            return pt_fail(PT_EINVAL, "token %d at index %llu is outside the vocab of %d", (int)t,
                           (unsigned long long)(w->n + i), w->vocab);
        if (w->used + 4 > sizeof w->buf)
            PT_CHECK(writer_flush(w));
        uint32_t u = (uint32_t)t;
        for (int b = 0; b < w->width; b++)
            w->buf[w->used++] = (unsigned char)(u >> (8 * b));
    }
    w->n += n;
    return PT_OK;
}

int64_t pt_token_writer_count(const pt_token_writer *w) { return (int64_t)w->n; }

void pt_token_writer_abort(pt_token_writer *w)
{
    if (!w)
        return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp);
    }
    free(w->path);
    free(w->tmp);
    free(w);
}

pt_status pt_token_writer_commit(pt_token_writer *w, int64_t *n_tokens_out)
{
    pt_status st = writer_flush(w);
    if (st != PT_OK) {
        pt_token_writer_abort(w);
        return st;
    }
    unsigned char h[PT_SHARD_HEADER_BYTES];
    header_encode(w, h, w->n);
    size_t hb = (size_t)pt__tf_header_bytes(w->kind);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, hb, w->f) != hb || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0) {
        st = pt_fail(PT_EIO, "%s: cannot write: %s; check free disk space", w->tmp, strerror(errno));
        pt_token_writer_abort(w);
        return st;
    }
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0 || rename(w->tmp, w->path) != 0) {
        st = pt_fail(PT_EIO, "cannot finish %s: %s", w->path, strerror(errno));
        unlink(w->tmp);
        pt_token_writer_abort(w);
        return st;
    }
    if (n_tokens_out)
        *n_tokens_out = (int64_t)w->n;
    pt_token_writer_abort(w);
    return PT_OK;
}

static pt_status write_all(const char *path, int kind, int vocab_size, const int32_t *tokens, int64_t n_tokens)
{
    if (n_tokens < 0)
        return pt_fail(PT_EINVAL, "token file %s: negative token count %lld", path, (long long)n_tokens);
    pt_token_writer *w;
    PT_CHECK(writer_open(path, kind, vocab_size, &w));
    pt_status st = pt_token_writer_append(w, tokens, (size_t)n_tokens);
    if (st != PT_OK) {
        pt_fail_wrap(st, "token file %s", path);
        pt_token_writer_abort(w);
        return st;
    }
    return pt_token_writer_commit(w, NULL);
}

pt_status pt_token_file_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens)
{
    return write_all(path, PT_TF_PTTOKENS, vocab_size, tokens, n_tokens);
}

pt_status pt_shard_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens)
{
    return write_all(path, PT_TF_LLMC16, vocab_size, tokens, n_tokens);
}

/* ---- reading ---- */

void pt__token_map_close(pt_token_map *tm)
{
    if (tm->map)
        munmap(tm->map, tm->map_bytes);
    memset(tm, 0, sizeof *tm);
}

/* Checks the header of a mapped file of `size` bytes and fills tm's fields. */
static pt_status header_check(const char *path, const unsigned char *h, uint64_t size, pt_token_map *tm)
{
    uint32_t magic = get_u32(h);
    if (size >= 8 && memcmp(h, PT_TOKEN_FILE_MAGIC, 8) == 0) {
        if (size < PT_TOKEN_FILE_HEADER_BYTES)
            return pt_fail(PT_EFORMAT, "%s: truncated: %llu bytes, shorter than the %d-byte token file header",
                           path, (unsigned long long)size, PT_TOKEN_FILE_HEADER_BYTES);
        uint32_t version = get_u32(h + 8), width = get_u32(h + 12), vocab = get_u32(h + 16);
        if (version > PT_TOKEN_FILE_VERSION)
            return pt_fail(PT_EFORMAT, "%s: token file version %u is newer than this build (%d); upgrade pipetrain",
                           path, version, PT_TOKEN_FILE_VERSION);
        if (version == 0)
            return pt_fail(PT_EFORMAT, "%s: corrupt header (version 0); re-create it with 'pipetrain prepare'", path);
        if (width != 1 && width != 2 && width != 4)
            return pt_fail(PT_EFORMAT, "%s: corrupt header: %u bytes per token (expected 1, 2 or 4)", path, width);
        if (vocab == 0 || vocab > (uint32_t)INT32_MAX - 1 || (width < 4 && vocab > (1u << (8 * width))))
            return pt_fail(PT_EFORMAT, "%s: corrupt header: vocab size %u does not fit %u bytes per token", path,
                           vocab, width);
        if (get_u32(h + 20) != 0)
            return pt_fail(PT_EFORMAT, "%s: corrupt header: reserved field is not 0", path);
        tm->kind = PT_TF_PTTOKENS;
        tm->width = (int)width;
        tm->vocab = (int)vocab;
        tm->n = get_u64(h + 24);
        tm->checksum = get_u64(h + 32);
    } else if (size >= 8 && (magic == PT_SHARD_MAGIC || magic == PT_SHARD_MAGIC_U32)) {
        uint32_t version = get_u32(h + 4);
        int u32 = magic == PT_SHARD_MAGIC_U32;
        if (version != (u32 ? PT_SHARD_VERSION_U32 : PT_SHARD_VERSION))
            return pt_fail(PT_EFORMAT,
                           "%s: llm.c shard with magic %u has version %u; this build reads version %d (%s tokens)",
                           path, magic, version, u32 ? PT_SHARD_VERSION_U32 : PT_SHARD_VERSION,
                           u32 ? "uint32" : "uint16");
        if (size < PT_SHARD_HEADER_BYTES)
            return pt_fail(PT_EFORMAT, "%s: truncated: %llu bytes, shorter than the %d-byte llm.c shard header",
                           path, (unsigned long long)size, PT_SHARD_HEADER_BYTES);
        int32_t n = (int32_t)get_u32(h + 8);
        if (n < 0)
            return pt_fail(PT_EFORMAT, "%s: corrupt llm.c shard header: negative token count %d", path, (int)n);
        tm->kind = u32 ? PT_TF_LLMC32 : PT_TF_LLMC16;
        tm->width = u32 ? 4 : 2;
        tm->n = (uint64_t)n;
    } else {
        return pt_fail(PT_EFORMAT,
                       "%s is not a token file (bad magic %u; expected llm.c's %d or %d, or PTTOKENS); make one with "
                       "'pipetrain prepare'",
                       path, size >= 4 ? magic : 0u, PT_SHARD_MAGIC, PT_SHARD_MAGIC_U32);
    }
    uint64_t hb = (uint64_t)pt__tf_header_bytes(tm->kind), w = (uint64_t)tm->width;
    if (tm->n > (size - hb) / w)
        return pt_fail(PT_EFORMAT,
                       "%s: truncated: the header says %llu tokens (%llu bytes) but the file holds %llu bytes; "
                       "re-create it",
                       path, (unsigned long long)tm->n, (unsigned long long)(hb + tm->n * w),
                       (unsigned long long)size);
    if (hb + tm->n * w != size)
        return pt_fail(PT_EFORMAT, "%s: %llu bytes of trailing garbage after %llu tokens", path,
                       (unsigned long long)(size - hb - tm->n * w), (unsigned long long)tm->n);
    return PT_OK;
}

pt_status pt__token_map_open(const char *path, pt_token_map *tm)
{
    memset(tm, 0, sizeof *tm);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return pt_fail(PT_EIO, "cannot open token file %s: %s; make one with 'pipetrain prepare'", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return pt_fail(PT_EIO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return pt_fail(PT_EIO, "%s is not a regular file; give a token file, a folder of shards or a glob", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return pt_fail(PT_EFORMAT, "%s: truncated: %llu bytes, shorter than any token file header", path,
                       (unsigned long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return pt_fail(PT_EIO, "cannot map %s: %s", path, strerror(errno));
    tm->map = map;
    tm->map_bytes = (size_t)size;
    pt_status st = header_check(path, map, size, tm);
    if (st != PT_OK) {
        pt__token_map_close(tm);
        return st;
    }
    tm->tokens = (const unsigned char *)map + pt__tf_header_bytes(tm->kind);
    return PT_OK;
}

pt_status pt__token_map_check(const pt_token_map *tm, const char *path, int vocab)
{
    if (tm->kind == PT_TF_PTTOKENS && pt__fnv1a64(PT_FNV_OFFSET, tm->tokens, (size_t)(tm->n * tm->width)) != tm->checksum)
        return pt_fail(PT_EFORMAT, "%s: checksum mismatch: the tokens are corrupt; re-create the file", path);
    uint32_t v = (uint32_t)vocab;
    const uint64_t n = tm->n;
    const unsigned char *p = tm->tokens;
    uint64_t bad = n;
    if (tm->width == 2) {
        for (uint64_t i = 0; i < n; i++)
            if (((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) >= v) {
                bad = i;
                break;
            }
    } else {
        for (uint64_t i = 0; i < n; i++)
            if (pt__token_at(p, tm->width, (size_t)i) >= v) {
                bad = i;
                break;
            }
    }
    if (bad < n)
        return pt_fail(PT_EFORMAT,
                       "%s: token %u at index %llu (byte offset %llu) is outside the vocab of %d; the file does not "
                       "belong to this tokenizer or is corrupt",
                       path, pt__token_at(p, tm->width, (size_t)bad), (unsigned long long)bad,
                       (unsigned long long)(pt__tf_header_bytes(tm->kind) + bad * (uint64_t)tm->width), vocab);
    return PT_OK;
}

pt_status pt_token_file_read(const char *path, int32_t **tokens, int64_t *n_tokens, int *vocab_size)
{
    *tokens = NULL;
    pt_token_map tm;
    PT_CHECK(pt__token_map_open(path, &tm));
    int vocab = tm.kind == PT_TF_PTTOKENS ? tm.vocab : tm.kind == PT_TF_LLMC16 ? 65536 : INT32_MAX;
    pt_status st = pt__token_map_check(&tm, path, vocab);
    if (st != PT_OK) {
        pt__token_map_close(&tm);
        return st;
    }
    int32_t *t = malloc((tm.n ? tm.n : 1) * sizeof *t);
    if (!t) {
        pt__token_map_close(&tm);
        return pt_fail(PT_ENOMEM, "%s: out of memory reading %llu tokens", path, (unsigned long long)tm.n);
    }
    for (uint64_t i = 0; i < tm.n; i++)
        t[i] = (int32_t)pt__token_at(tm.tokens, tm.width, (size_t)i);
    *tokens = t;
    *n_tokens = (int64_t)tm.n;
    if (vocab_size)
        *vocab_size = vocab;
    pt__token_map_close(&tm);
    return PT_OK;
}
