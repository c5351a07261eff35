/* Token files and data sets (pipetrain/data.h): the file format, its checks, the built-in
 * synthetic task and batches as a pure function of (seed, split, step, sample). */
#include "pipetrain/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- hashing: every random choice is a hash of its coordinates, never a stream state ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t sample_key(uint64_t seed, int split, int64_t step, int64_t sample)
{
    uint64_t h = splitmix64(seed ^ 0x7074646174615f31ull);
    h = splitmix64(h ^ (uint64_t)split);
    h = splitmix64(h ^ (uint64_t)step);
    return splitmix64(h ^ (uint64_t)sample);
}

/* A small counter-based generator seeded from a sample key. */
typedef struct {
    uint64_t key, ctr;
} rng_t;

static uint64_t rng_next(rng_t *r) { return splitmix64(r->key + 0x632BE59BD9B4E019ull * ++r->ctr); }
/* Uniform in [0, n) (n small: the modulo bias is below 2^-50). */
static int rng_below(rng_t *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }

static uint64_t fnv1a64(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}
#define FNV_OFFSET 0xCBF29CE484222325ull

/* ---- token files ---- */

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

static int width_for_vocab(int vocab) { return vocab <= 256 ? 1 : vocab <= 65536 ? 2 : 4; }

static void header_encode(unsigned char h[PT_TOKEN_FILE_HEADER_BYTES], int width, int vocab, uint64_t n,
                          uint64_t checksum)
{
    memcpy(h, PT_TOKEN_FILE_MAGIC, 8);
    put_u32(h + 8, PT_TOKEN_FILE_VERSION);
    put_u32(h + 12, (uint32_t)width);
    put_u32(h + 16, (uint32_t)vocab);
    put_u32(h + 20, 0);
    put_u64(h + 24, n);
    put_u64(h + 32, checksum);
}

static uint32_t token_at(const unsigned char *p, int width, size_t i)
{
    switch (width) {
    case 1: return p[i];
    case 2: return (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
    default: return get_u32(p + 4 * i);
    }
}

struct pt_token_writer {
    FILE *f;
    char *path, *tmp;
    int vocab, width;
    uint64_t n, checksum;
    unsigned char buf[1 << 16];
    size_t used;
};

static pt_status writer_flush(pt_token_writer *w)
{
    if (w->used && fwrite(w->buf, 1, w->used, w->f) != w->used)
        return pt_fail(PT_EIO, "%s: cannot write: %s; check free disk space", w->tmp, strerror(errno));
    w->checksum = fnv1a64(w->checksum, w->buf, w->used);
    w->used = 0;
    return PT_OK;
}

pt_status pt_token_writer_open(const char *path, int vocab_size, pt_token_writer **out)
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
    w->width = width_for_vocab(vocab_size);
    w->checksum = FNV_OFFSET;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        pt_status st = pt_fail(PT_EIO, "cannot create %s: %s; check the directory exists and is writable",
                               w->tmp, strerror(errno));
        free(w->path);
        free(w->tmp);
        free(w);
        return st;
    }
    unsigned char h[PT_TOKEN_FILE_HEADER_BYTES];
    header_encode(h, w->width, vocab_size, 0, 0); /* rewritten by commit */
    if (fwrite(h, 1, sizeof h, w->f) != sizeof h) {
        pt_status st = pt_fail(PT_EIO, "%s: cannot write: %s", w->tmp, strerror(errno));
        pt_token_writer_abort(w);
        return st;
    }
    *out = w;
    return PT_OK;
}

pt_status pt_token_writer_append(pt_token_writer *w, const int32_t *tokens, size_t n)
{
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
    unsigned char h[PT_TOKEN_FILE_HEADER_BYTES];
    header_encode(h, w->width, w->vocab, w->n, w->checksum);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h || fflush(w->f) != 0 ||
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

pt_status pt_token_file_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens)
{
    if (n_tokens < 0)
        return pt_fail(PT_EINVAL, "token file %s: negative token count %lld", path, (long long)n_tokens);
    pt_token_writer *w;
    PT_CHECK(pt_token_writer_open(path, vocab_size, &w));
    pt_status st = pt_token_writer_append(w, tokens, (size_t)n_tokens);
    if (st != PT_OK) {
        pt_fail_wrap(st, "token file %s", path);
        pt_token_writer_abort(w);
        return st;
    }
    return pt_token_writer_commit(w, NULL);
}

/* A checked, read-only mapping of a token file. */
typedef struct {
    void *map;
    size_t map_bytes;
    const unsigned char *tokens;
    int width, vocab;
    uint64_t n;
} token_map;

static void token_map_close(token_map *tm)
{
    if (tm->map)
        munmap(tm->map, tm->map_bytes);
    memset(tm, 0, sizeof *tm);
}

static pt_status token_map_open(const char *path, token_map *tm)
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
    uint64_t size = (uint64_t)sb.st_size;
    if (size < PT_TOKEN_FILE_HEADER_BYTES) {
        close(fd);
        return pt_fail(PT_EFORMAT, "%s: truncated: %llu bytes, shorter than the %d-byte token file header", path,
                       (unsigned long long)size, PT_TOKEN_FILE_HEADER_BYTES);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return pt_fail(PT_EIO, "cannot map %s: %s", path, strerror(errno));
    tm->map = map;
    tm->map_bytes = (size_t)size;
    const unsigned char *h = map;
    pt_status st = PT_OK;
    uint32_t version = get_u32(h + 8), width = get_u32(h + 12), vocab = get_u32(h + 16);
    uint64_t n = get_u64(h + 24), checksum = get_u64(h + 32);
    if (memcmp(h, PT_TOKEN_FILE_MAGIC, 8) != 0)
        st = pt_fail(PT_EFORMAT, "%s is not a pipetrain token file (bad magic); make one with 'pipetrain prepare'",
                     path);
    else if (version > PT_TOKEN_FILE_VERSION)
        st = pt_fail(PT_EFORMAT, "%s: token file version %u is newer than this build (%d); upgrade pipetrain", path,
                     version, PT_TOKEN_FILE_VERSION);
    else if (version == 0)
        st = pt_fail(PT_EFORMAT, "%s: corrupt header (version 0); re-create it with 'pipetrain prepare'", path);
    else if (width != 1 && width != 2 && width != 4)
        st = pt_fail(PT_EFORMAT, "%s: corrupt header: %u bytes per token (expected 1, 2 or 4)", path, width);
    else if (vocab == 0 || vocab > (uint32_t)INT32_MAX - 1 || (width < 4 && vocab > (1u << (8 * width))))
        st = pt_fail(PT_EFORMAT, "%s: corrupt header: vocab size %u does not fit %u bytes per token", path, vocab,
                     width);
    else if (get_u32(h + 20) != 0)
        st = pt_fail(PT_EFORMAT, "%s: corrupt header: reserved field is not 0", path);
    else if (n > (size - PT_TOKEN_FILE_HEADER_BYTES) / width)
        st = pt_fail(PT_EFORMAT, "%s: truncated: the header says %llu tokens (%llu bytes) but the file holds %llu",
                     path, (unsigned long long)n, (unsigned long long)(PT_TOKEN_FILE_HEADER_BYTES + n * width),
                     (unsigned long long)size);
    else if (PT_TOKEN_FILE_HEADER_BYTES + n * width != size)
        st = pt_fail(PT_EFORMAT, "%s: %llu bytes of trailing garbage after %llu tokens", path,
                     (unsigned long long)(size - PT_TOKEN_FILE_HEADER_BYTES - n * width), (unsigned long long)n);
    if (st != PT_OK) {
        token_map_close(tm);
        return st;
    }
    const unsigned char *p = h + PT_TOKEN_FILE_HEADER_BYTES;
    if (fnv1a64(FNV_OFFSET, p, (size_t)(n * width)) != checksum) {
        token_map_close(tm);
        return pt_fail(PT_EFORMAT, "%s: checksum mismatch: the tokens are corrupt; re-create the file", path);
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t t = token_at(p, (int)width, (size_t)i);
        if (t >= vocab) {
            token_map_close(tm);
            return pt_fail(PT_EFORMAT, "%s: token %u at index %llu is outside the vocab of %u", path, t,
                           (unsigned long long)i, vocab);
        }
    }
    tm->tokens = p;
    tm->width = (int)width;
    tm->vocab = (int)vocab;
    tm->n = n;
    return PT_OK;
}

pt_status pt_token_file_read(const char *path, int32_t **tokens, int64_t *n_tokens, int *vocab_size)
{
    *tokens = NULL;
    token_map tm;
    PT_CHECK(token_map_open(path, &tm));
    int32_t *t = malloc((tm.n ? tm.n : 1) * sizeof *t);
    if (!t) {
        token_map_close(&tm);
        return pt_fail(PT_ENOMEM, "%s: out of memory reading %llu tokens", path, (unsigned long long)tm.n);
    }
    for (uint64_t i = 0; i < tm.n; i++)
        t[i] = (int32_t)token_at(tm.tokens, tm.width, (size_t)i);
    *tokens = t;
    *n_tokens = (int64_t)tm.n;
    *vocab_size = tm.vocab;
    token_map_close(&tm);
    return PT_OK;
}

/* ---- the built-in task ---- */

typedef enum { TASK_NONE, TASK_SORT, TASK_ADD } task_kind;

/* Problem sizes: small enough that gpt2-tiny learns a visible share within a minute on 2 cores,
 * and mixed in difficulty so accuracy climbs step by step rather than all at once. */
enum { SORT_MIN_LEN = 2, SORT_MAX_LEN = 7, SORT_ALPHABET = 10, ADD_MAX_DIGITS = 3 };
/* One problem in EVAL_ONE_IN belongs to the held-out split. */
enum { EVAL_ONE_IN = 8, MAX_PROBLEM = 64 };

/* Writes one problem into p (NUL-free, ends with '\n'); *answer_at is the index of the first answer
 * byte (just after '='). Returns its length. */
static int task_problem(task_kind kind, rng_t *r, char *p, int *answer_at)
{
    int n = 0;
    if (kind == TASK_SORT) {
        int len = SORT_MIN_LEN + rng_below(r, SORT_MAX_LEN - SORT_MIN_LEN + 1);
        char q[SORT_MAX_LEN];
        int count[SORT_ALPHABET] = { 0 };
        for (int i = 0; i < len; i++) {
            int c = rng_below(r, SORT_ALPHABET);
            q[i] = (char)('a' + c);
            count[c]++;
        }
        n += sprintf(p, "sort:%.*s=", len, q);
        *answer_at = n;
        for (int c = 0; c < SORT_ALPHABET; c++)
            for (int k = 0; k < count[c]; k++)
                p[n++] = (char)('a' + c);
    } else {
        int da = 1 + rng_below(r, ADD_MAX_DIGITS), db = 1 + rng_below(r, ADD_MAX_DIGITS);
        int lim_a = da == 1 ? 10 : da == 2 ? 100 : 1000, lim_b = db == 1 ? 10 : db == 2 ? 100 : 1000;
        int a = rng_below(r, lim_a), b = rng_below(r, lim_b);
        n += sprintf(p, "add:%d+%d=", a, b);
        *answer_at = n;
        n += sprintf(p + n, "%d", a + b);
    }
    p[n++] = '\n';
    return n;
}

/* Which split a problem belongs to: a hash of its question (independent of the seed), so a
 * held-out problem is held out in every run. */
static int task_split_of(const char *p, int answer_at)
{
    uint64_t h = fnv1a64(FNV_OFFSET, (const unsigned char *)p, (size_t)answer_at);
    return splitmix64(h) % EVAL_ONE_IN == 0 ? PT_SPLIT_EVAL : PT_SPLIT_TRAIN;
}

/* Fills one row: problems of `split` packed back to back, '\n' padding (no targets) at the end. */
static void task_row(task_kind kind, uint64_t key, int split, int T, int32_t *tokens, int32_t *targets)
{
    rng_t r = { key, 0 };
    /* seq holds T + 1 bytes: inputs are seq[0..T-1], targets seq[1..T] where they are answer bytes */
    int pos = 0;
    for (int t = 0; t < T; t++)
        targets[t] = -1;
    for (;;) {
        char p[MAX_PROBLEM];
        int answer_at = 0, len = task_problem(kind, &r, p, &answer_at);
        if (task_split_of(p, answer_at) != split)
            continue;
        if (pos + len > T + 1)
            break;
        for (int i = 0; i < len; i++) {
            int at = pos + i;
            if (at < T)
                tokens[at] = (unsigned char)p[i];
            if (i >= answer_at && at >= 1)
                targets[at - 1] = (unsigned char)p[i];
        }
        pos += len;
    }
    for (int t = pos; t < T; t++)
        tokens[t] = '\n';
}

/* Shortest row length that holds the longest problem. */
static int task_min_seq(task_kind kind)
{
    return kind == TASK_SORT ? 5 + 2 * SORT_MAX_LEN + 2 : 4 + 2 * ADD_MAX_DIGITS + 2 + ADD_MAX_DIGITS + 1 + 1;
}

/* ---- data sets ---- */

struct pt_dataset {
    task_kind task;
    uint64_t seed;
    token_map tm;       /* token files */
    uint64_t eval_from; /* first token of the eval split */
    char name[512];
};

pt_status pt_dataset_open(const char *path, uint64_t seed, pt_dataset **out)
{
    *out = NULL;
    pt_dataset *d = calloc(1, sizeof *d);
    if (!d)
        return pt_fail(PT_ENOMEM, "out of memory opening a data set");
    d->seed = seed;
    if (!path || strcmp(path, "builtin") == 0 || strcmp(path, "builtin:sort") == 0) {
        d->task = TASK_SORT;
        snprintf(d->name, sizeof d->name, "builtin:sort");
    } else if (strcmp(path, "builtin:add") == 0) {
        d->task = TASK_ADD;
        snprintf(d->name, sizeof d->name, "builtin:add");
    } else if (strncmp(path, "builtin:", 8) == 0) {
        free(d);
        return pt_fail(PT_EINVAL, "unknown built-in data set '%s'; use builtin:sort or builtin:add", path);
    } else {
        pt_status st = token_map_open(path, &d->tm);
        if (st != PT_OK) {
            free(d);
            return st;
        }
        d->eval_from = d->tm.n - d->tm.n / 10;
        snprintf(d->name, sizeof d->name, "%s (%llu tokens)", path, (unsigned long long)d->tm.n);
    }
    *out = d;
    return PT_OK;
}

void pt_dataset_close(pt_dataset *d)
{
    if (!d)
        return;
    token_map_close(&d->tm);
    free(d);
}

int pt_dataset_vocab(const pt_dataset *d) { return d->task != TASK_NONE ? 256 : d->tm.vocab; }
int pt_dataset_is_task(const pt_dataset *d) { return d->task != TASK_NONE; }
const char *pt_dataset_name(const pt_dataset *d) { return d->name; }

pt_status pt_dataset_batch(pt_dataset *d, int split, int64_t step, int64_t first_sample, int B, int T,
                           int32_t *tokens, int32_t *targets)
{
    if (split != PT_SPLIT_TRAIN && split != PT_SPLIT_EVAL)
        return pt_fail(PT_EINVAL, "data split %d is neither train (0) nor eval (1)", split);
    if (B < 1 || T < 1 || step < 0 || first_sample < 0)
        return pt_fail(PT_EINVAL, "bad batch request: B=%d T=%d step=%lld sample=%lld", B, T, (long long)step,
                       (long long)first_sample);
    if (d->task != TASK_NONE) {
        if (T + 1 < task_min_seq(d->task))
            return pt_fail(PT_EINVAL, "%s needs --seq-len of at least %d (got %d)", d->name,
                           task_min_seq(d->task) - 1, T);
        for (int b = 0; b < B; b++)
            task_row(d->task, sample_key(d->seed, split, step, first_sample + b), split, T,
                     tokens + (size_t)b * T, targets + (size_t)b * T);
        return PT_OK;
    }
    uint64_t lo = split == PT_SPLIT_TRAIN ? 0 : d->eval_from;
    uint64_t hi = split == PT_SPLIT_TRAIN ? d->eval_from : d->tm.n;
    if (hi - lo < (uint64_t)T + 1)
        return pt_fail(PT_EINVAL,
                       "%s: the %s split holds %llu tokens, fewer than --seq-len + 1 = %d; use a larger "
                       "file or a shorter --seq-len",
                       d->name, split == PT_SPLIT_TRAIN ? "train" : "eval (last 10%)",
                       (unsigned long long)(hi - lo), T + 1);
    uint64_t n_starts = hi - lo - (uint64_t)T;
    for (int b = 0; b < B; b++) {
        uint64_t start = lo + sample_key(d->seed, split, step, first_sample + b) % n_starts;
        for (int t = 0; t < T; t++) {
            tokens[(size_t)b * T + t] = (int32_t)token_at(d->tm.tokens, d->tm.width, (size_t)(start + t));
            targets[(size_t)b * T + t] = (int32_t)token_at(d->tm.tokens, d->tm.width, (size_t)(start + t + 1));
        }
    }
    return PT_OK;
}

void pt_dataset_score(const pt_dataset *d, const int32_t *targets, const int32_t *pred, int B, int T,
                      int64_t *n_correct, int64_t *n_total)
{
    int64_t correct = 0, total = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *tg = targets + (size_t)b * T, *pr = pred + (size_t)b * T;
        if (d->task == TASK_NONE) {
            for (int t = 0; t < T; t++)
                if (tg[t] >= 0) {
                    total++;
                    correct += pr[t] == tg[t];
                }
            continue;
        }
        for (int t = 0; t < T;) {
            if (tg[t] < 0) {
                t++;
                continue;
            }
            int ok = 1;
            for (; t < T && tg[t] >= 0; t++)
                ok &= pr[t] == tg[t];
            total++;
            correct += ok;
        }
    }
    *n_correct = correct;
    *n_total = total;
}
