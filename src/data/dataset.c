/* Data sets (pipetrain/data.h): token files of one or many shards with their sidecar, the built-in
 * synthetic task, and batches as a pure function of (seed, split, step, sample). */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "data_internal.h"
#include "pipetrain/json.h"

/* ---- hashing: every random choice is a hash of its coordinates, never a stream state ---- */

#define splitmix64 pt__splitmix64

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
    uint64_t h = pt__fnv1a64(PT_FNV_OFFSET, (const unsigned char *)p, (size_t)answer_at);
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

/* ---- token data sets ---- */

/* A run of tokens of one file that belongs to one split. */
typedef struct {
    const unsigned char *p; /* the first token of the run */
    int width, file;
    uint64_t n;
} ds_seg;

typedef struct {
    ds_seg *seg;
    int n_seg;
    uint64_t tokens;
    uint64_t *prefix; /* sequences before segment i (n_seg + 1 entries), after set_batch */
    uint64_t n_seq;
} ds_split;

struct pt_dataset {
    task_kind task;
    uint64_t seed;
    pt_token_map *maps;
    char **files;
    int n_files;
    ds_split split[2];
    int vocab, eot;
    uint64_t fingerprint;
    char tokenizer[256];
    int train_batch, eval_batch, T; /* set_batch; T == 0 before */
    char name[512];
};

static int has_glob_chars(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* llm.c names its validation shards NAME_val_000000.bin or NAME_val.bin. */
static int is_val_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return strstr(b, "_val_") || strstr(b, "_val.") || strncmp(b, "val_", 4) == 0 || strncmp(b, "val.", 4) == 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static pt_status ds_add_file(pt_dataset *d, const char *path, int *cap)
{
    if (d->n_files == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        char **f = realloc(d->files, (size_t)nc * sizeof *f);
        if (!f)
            return pt_fail(PT_ENOMEM, "out of memory listing shards");
        d->files = f;
        *cap = nc;
    }
    d->files[d->n_files] = strdup(path);
    if (!d->files[d->n_files])
        return pt_fail(PT_ENOMEM, "out of memory listing shards");
    d->n_files++;
    return PT_OK;
}

/* The sidecar's view of the data set (every field optional except the tokenizer). */
typedef struct {
    cJSON *root;
    const cJSON *shards; /* array of {file, split, tokens} or NULL */
    char path[PATH_MAX];
} ds_sidecar;

static pt_status sidecar_load(const char *path, pt_dataset *d, ds_sidecar *sc)
{
    snprintf(sc->path, sizeof sc->path, "%s", path);
    PT_CHECK(pt_json_read_file(path, &sc->root));
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(sc->root, "tokenizer");
    if (!cJSON_IsObject(tk))
        return pt_fail(PT_EFORMAT, "%s: no \"tokenizer\" object; re-create the data set with 'pipetrain prepare'", path);
    const char *name = NULL, *fp = NULL;
    long long vocab = 0, eot = -1;
    PT_CHECK(pt_json_get_string(tk, path, "name", &name));
    PT_CHECK(pt_json_get_int(tk, path, "vocab_size", 1, INT32_MAX - 1, &vocab));
    if (cJSON_HasObjectItem(tk, "eot"))
        PT_CHECK(pt_json_get_int(tk, path, "eot", -1, INT32_MAX - 1, &eot));
    if (cJSON_HasObjectItem(tk, "fingerprint")) {
        PT_CHECK(pt_json_get_string(tk, path, "fingerprint", &fp));
        char *end = NULL;
        d->fingerprint = strtoull(fp, &end, 16);
        if (!*fp || *end)
            return pt_fail(PT_EFORMAT, "%s: tokenizer fingerprint '%s' is not hexadecimal", path, fp);
    }
    snprintf(d->tokenizer, sizeof d->tokenizer, "%s", name);
    d->vocab = (int)vocab;
    d->eot = (int)eot;
    sc->shards = cJSON_GetObjectItemCaseSensitive(sc->root, "shards");
    if (sc->shards && !cJSON_IsArray(sc->shards))
        return pt_fail(PT_EFORMAT, "%s: \"shards\" is not an array", path);
    return PT_OK;
}

/* The sidecar's record of shard `file` (matched by base name), or NULL. */
static const cJSON *sidecar_shard(const ds_sidecar *sc, const char *file)
{
    if (!sc->shards)
        return NULL;
    const char *b = strrchr(file, '/');
    b = b ? b + 1 : file;
    const cJSON *s;
    cJSON_ArrayForEach(s, sc->shards)
    {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "file");
        if (cJSON_IsString(f) && strcmp(f->valuestring, b) == 0)
            return s;
    }
    return NULL;
}

/* Lists the data set's files and finds its sidecar (sc->root NULL when there is none). */
static pt_status ds_list(pt_dataset *d, const char *path, ds_sidecar *sc)
{
    int cap = 0;
    char side[PATH_MAX];
    if (is_dir(path)) {
        snprintf(side, sizeof side, "%s/dataset.json", path);
        if (file_exists(side)) {
            PT_CHECK(sidecar_load(side, d, sc));
            if (!sc->shards || cJSON_GetArraySize(sc->shards) == 0)
                return pt_fail(PT_EFORMAT, "%s lists no shards; re-create the data set with 'pipetrain prepare'", side);
            const cJSON *s;
            cJSON_ArrayForEach(s, sc->shards)
            {
                const char *f = NULL;
                PT_CHECK(pt_json_get_string(s, side, "file", &f));
                char full[PATH_MAX];
                snprintf(full, sizeof full, "%s/%s", path, f);
                PT_CHECK(ds_add_file(d, full, &cap));
            }
            return PT_OK;
        }
        DIR *dir = opendir(path);
        if (!dir)
            return pt_fail(PT_EIO, "cannot read folder %s: %s", path, strerror(errno));
        struct dirent *e;
        pt_status st = PT_OK;
        while (st == PT_OK && (e = readdir(dir)) != NULL) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 4, ".bin") != 0)
                continue;
            char full[PATH_MAX];
            snprintf(full, sizeof full, "%s/%s", path, e->d_name);
            if (file_exists(full))
                st = ds_add_file(d, full, &cap);
        }
        closedir(dir);
        PT_CHECK(st);
        if (d->n_files == 0)
            return pt_fail(PT_EIO, "folder %s holds no *.bin token files; make them with 'pipetrain prepare'", path);
        qsort(d->files, (size_t)d->n_files, sizeof *d->files, cmp_str);
        return PT_OK;
    }
    if (has_glob_chars(path) && !file_exists(path)) {
        glob_t g;
        int rc = glob(path, 0, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
            if (rc == 0)
                globfree(&g);
            return pt_fail(PT_EIO, "no file matches %s; check the pattern (quote it in a shell)", path);
        }
        if (rc != 0)
            return pt_fail(PT_EIO, "cannot expand %s (glob error %d)", path, rc);
        pt_status st = PT_OK;
        for (size_t i = 0; i < g.gl_pathc && st == PT_OK; i++)
            if (file_exists(g.gl_pathv[i]))
                st = ds_add_file(d, g.gl_pathv[i], &cap);
        globfree(&g);
        PT_CHECK(st);
        if (d->n_files == 0)
            return pt_fail(PT_EIO, "%s matches no regular file", path);
        const char *slash = strrchr(d->files[0], '/');
        if (slash)
            snprintf(side, sizeof side, "%.*s/dataset.json", (int)(slash - d->files[0]), d->files[0]);
        else
            snprintf(side, sizeof side, "dataset.json");
        if (file_exists(side))
            PT_CHECK(sidecar_load(side, d, sc));
        return PT_OK;
    }
    PT_CHECK(ds_add_file(d, path, &cap));
    snprintf(side, sizeof side, "%s.json", path);
    if (file_exists(side))
        PT_CHECK(sidecar_load(side, d, sc));
    return PT_OK;
}

static pt_status split_push(ds_split *s, const ds_seg *g)
{
    ds_seg *n = realloc(s->seg, (size_t)(s->n_seg + 1) * sizeof *n);
    if (!n)
        return pt_fail(PT_ENOMEM, "out of memory opening a data set");
    s->seg = n;
    s->seg[s->n_seg++] = *g;
    s->tokens += g->n;
    return PT_OK;
}

/* Maps and checks every file, then cuts the splits. */
static pt_status ds_open_files(pt_dataset *d, const char *path)
{
    ds_sidecar sc = { 0 };
    pt_status st = ds_list(d, path, &sc);
    if (st == PT_OK && !(d->maps = calloc((size_t)d->n_files, sizeof *d->maps)))
        st = pt_fail(PT_ENOMEM, "out of memory opening a data set");
    for (int i = 0; st == PT_OK && i < d->n_files; i++)
        st = pt__token_map_open(d->files[i], &d->maps[i]);
    /* the vocabulary: the sidecar's, else what the files say */
    if (st == PT_OK && !sc.root) {
        int kind = d->maps[0].kind, vocab = 0;
        for (int i = 0; st == PT_OK && i < d->n_files; i++) {
            if ((d->maps[i].kind == PT_TF_PTTOKENS) != (kind == PT_TF_PTTOKENS) ||
                (kind != PT_TF_PTTOKENS && d->maps[i].kind != kind))
                st = pt_fail(PT_EFORMAT, "%s and %s have different formats; a data set is files of one format",
                             d->files[0], d->files[i]);
            else if (d->maps[i].vocab > vocab)
                vocab = d->maps[i].vocab;
        }
        if (kind == PT_TF_PTTOKENS) {
            d->vocab = vocab;
            snprintf(d->tokenizer, sizeof d->tokenizer, "%s", vocab == 256 ? "byte" : "unknown");
        } else if (kind == PT_TF_LLMC16) {
            d->vocab = 50257; /* llm.c's uint16 shards are GPT-2 tokens */
            snprintf(d->tokenizer, sizeof d->tokenizer, "gpt2");
            d->eot = 50256;
        } else {
            d->vocab = 128256; /* llm.c's uint32 shards are Llama 3 tokens */
            snprintf(d->tokenizer, sizeof d->tokenizer, "llama3");
            d->eot = 128001;
        }
    }
    for (int i = 0; st == PT_OK && i < d->n_files; i++) {
        const pt_token_map *tm = &d->maps[i];
        if (tm->kind == PT_TF_PTTOKENS && tm->vocab > d->vocab)
            st = pt_fail(PT_EFORMAT, "%s: its header's vocab (%d) is larger than the tokenizer's (%s, %d) in %s",
                         d->files[i], tm->vocab, d->tokenizer, d->vocab, sc.path);
        else if (tm->kind == PT_TF_LLMC16 && d->vocab > 65536)
            st = pt_fail(PT_EFORMAT, "%s holds uint16 tokens but the tokenizer %s has %d ids; re-create it", d->files[i],
                         d->tokenizer, d->vocab);
        const cJSON *rec = st == PT_OK && sc.root ? sidecar_shard(&sc, d->files[i]) : NULL;
        if (rec) {
            long long n = 0;
            st = pt_json_get_int(rec, sc.path, "tokens", 0, INT64_MAX, &n);
            if (st == PT_OK && (uint64_t)n != tm->n)
                st = pt_fail(PT_EFORMAT, "%s holds %llu tokens but %s says %lld; the data set changed: re-run prepare",
                             d->files[i], (unsigned long long)tm->n, sc.path, n);
        }
        if (st == PT_OK)
            st = pt__token_map_check(tm, d->files[i], d->vocab);
        if (st == PT_OK) {
            const cJSON *sp = rec ? cJSON_GetObjectItemCaseSensitive(rec, "split") : NULL;
            int val = cJSON_IsString(sp) ? strcmp(sp->valuestring, "val") == 0 : is_val_name(d->files[i]);
            ds_seg g = { tm->tokens, tm->width, i, tm->n };
            if (tm->n > 0)
                st = split_push(&d->split[val ? PT_SPLIT_EVAL : PT_SPLIT_TRAIN], &g);
        }
    }
    cJSON_Delete(sc.root);
    PT_CHECK(st);
    ds_split *tr = &d->split[PT_SPLIT_TRAIN], *ev = &d->split[PT_SPLIT_EVAL];
    if (tr->n_seg == 0)
        return pt_fail(PT_EINVAL, "%s holds no train tokens (only %s); add train shards", path,
                       ev->n_seg ? "val shards" : "empty files");
    if (ev->n_seg == 0) {
        /* no val file: the last tenth of the tokens, as older pipetrain did with one file */
        uint64_t want = tr->tokens / 10;
        while (want > 0) {
            ds_seg *last = &tr->seg[tr->n_seg - 1];
            uint64_t take = last->n < want ? last->n : want;
            ds_seg g = { last->p + (last->n - take) * (uint64_t)last->width, last->width, last->file, take };
            PT_CHECK(split_push(ev, &g));
            last->n -= take;
            tr->tokens -= take;
            want -= take;
            if (last->n == 0)
                tr->n_seg--;
        }
        /* the eval runs were pushed last-first: put them back in file order */
        for (int i = 0; i < ev->n_seg / 2; i++) {
            ds_seg t = ev->seg[i];
            ev->seg[i] = ev->seg[ev->n_seg - 1 - i];
            ev->seg[ev->n_seg - 1 - i] = t;
        }
    }
    return PT_OK;
}

pt_status pt_dataset_open(const char *path, uint64_t seed, pt_dataset **out)
{
    *out = NULL;
    pt_dataset *d = calloc(1, sizeof *d);
    if (!d)
        return pt_fail(PT_ENOMEM, "out of memory opening a data set");
    d->seed = seed;
    d->eot = -1;
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
        pt_status st = ds_open_files(d, path);
        if (st != PT_OK) {
            pt_dataset_close(d);
            return st;
        }
        uint64_t n = d->split[0].tokens + d->split[1].tokens;
        if (d->n_files == 1)
            snprintf(d->name, sizeof d->name, "%s (%llu tokens)", path, (unsigned long long)n);
        else
            snprintf(d->name, sizeof d->name, "%s (%d shards, %llu tokens)", path, d->n_files, (unsigned long long)n);
    }
    if (d->task != TASK_NONE)
        snprintf(d->tokenizer, sizeof d->tokenizer, "byte");
    *out = d;
    return PT_OK;
}

void pt_dataset_close(pt_dataset *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n_files; i++) {
        if (d->maps)
            pt__token_map_close(&d->maps[i]);
        free(d->files[i]);
    }
    free(d->maps);
    free(d->files);
    for (int s = 0; s < 2; s++) {
        free(d->split[s].seg);
        free(d->split[s].prefix);
    }
    free(d);
}

int pt_dataset_vocab(const pt_dataset *d) { return d->task != TASK_NONE ? 256 : d->vocab; }
int pt_dataset_is_task(const pt_dataset *d) { return d->task != TASK_NONE; }
const char *pt_dataset_name(const pt_dataset *d) { return d->name; }
const char *pt_dataset_tokenizer(const pt_dataset *d) { return d->tokenizer; }
uint64_t pt_dataset_fingerprint(const pt_dataset *d) { return d->fingerprint; }
int pt_dataset_eot(const pt_dataset *d) { return d->eot; }

int64_t pt_dataset_tokens(const pt_dataset *d, int split)
{
    return d->task != TASK_NONE || (split != PT_SPLIT_TRAIN && split != PT_SPLIT_EVAL)
               ? 0
               : (int64_t)d->split[split].tokens;
}

int64_t pt_dataset_sequences(const pt_dataset *d, int split)
{
    return d->task != TASK_NONE || (split != PT_SPLIT_TRAIN && split != PT_SPLIT_EVAL) || !d->T
               ? 0
               : (int64_t)d->split[split].n_seq;
}

static const char *split_word(int split) { return split == PT_SPLIT_TRAIN ? "train" : "eval"; }

pt_status pt_dataset_set_batch(pt_dataset *d, int train_batch, int eval_batch, int seq_len)
{
    if (train_batch < 1 || eval_batch < 0 || seq_len < 1)
        return pt_fail(PT_EINVAL, "bad batch geometry: train batch %d, eval batch %d, seq_len %d", train_batch,
                       eval_batch, seq_len);
    if (d->task != TASK_NONE)
        return PT_OK;
    for (int s = 0; s < 2; s++) {
        ds_split *sp = &d->split[s];
        uint64_t *pre = realloc(sp->prefix, (size_t)(sp->n_seg + 1) * sizeof *pre);
        if (!pre)
            return pt_fail(PT_ENOMEM, "out of memory opening a data set");
        sp->prefix = pre;
        pre[0] = 0;
        for (int i = 0; i < sp->n_seg; i++)
            pre[i + 1] = pre[i] + (sp->seg[i].n > 0 ? (sp->seg[i].n - 1) / (uint64_t)seq_len : 0);
        sp->n_seq = pre[sp->n_seg];
    }
    d->T = 0;
    const ds_split *tr = &d->split[PT_SPLIT_TRAIN], *ev = &d->split[PT_SPLIT_EVAL];
    if (tr->n_seq < (uint64_t)train_batch)
        return pt_fail(PT_EINVAL,
                       "data set %s is shorter than one batch: its train split holds %llu tokens (%llu sequences "
                       "of seq_len + 1 = %d) but a global batch of %d sequences needs at least %llu; use more data "
                       "or a smaller batch / --seq-len",
                       d->name, (unsigned long long)tr->tokens, (unsigned long long)tr->n_seq, seq_len + 1,
                       train_batch, (unsigned long long)train_batch * (uint64_t)seq_len + 1);
    if (eval_batch > 0 && ev->n_seq == 0)
        return pt_fail(PT_EINVAL,
                       "data set %s: its eval split holds %llu tokens, fewer than seq_len + 1 = %d; prepare with a "
                       "larger --val-tokens, use a shorter --seq-len, or --eval-batches 0",
                       d->name, (unsigned long long)ev->tokens, seq_len + 1);
    d->train_batch = train_batch;
    d->eval_batch = eval_batch > 0 ? eval_batch : 1;
    d->T = seq_len;
    return PT_OK;
}

/* A Feistel network on 2*half bits: a bijection of [0, 2^(2 half)) chosen by key. */
static uint64_t feistel(uint64_t key, uint64_t x, int half)
{
    const uint64_t mask = (1ull << half) - 1;
    uint64_t l = x >> half, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = splitmix64(key ^ splitmix64(r + (round << 56))) & mask;
        uint64_t nl = r;
        r = l ^ f;
        l = nl;
    }
    return (l << half) | r;
}

/* Element i of a permutation of [0, n) chosen by key: the Feistel bijection on the smallest
 * even-bit power of two >= n, cycle-walked back into [0, n) (at most 4 steps expected). */
static uint64_t permute(uint64_t key, uint64_t i, uint64_t n)
{
    if (n <= 1)
        return 0;
    int bits = 64 - __builtin_clzll(n - 1);
    int half = (bits + 1) / 2;
    uint64_t x = i;
    do
        x = feistel(key, x, half);
    while (x >= n);
    return x;
}

static void seq_of(const pt_dataset *d, int split, int64_t step, int64_t sample, uint64_t *seq, uint64_t *epoch)
{
    const ds_split *sp = &d->split[split];
    if (split == PT_SPLIT_EVAL) {
        uint64_t g = (uint64_t)step * (uint64_t)d->eval_batch + (uint64_t)sample;
        *seq = g % sp->n_seq;
        *epoch = g / sp->n_seq;
        return;
    }
    uint64_t g = (uint64_t)step * (uint64_t)d->train_batch + (uint64_t)sample;
    uint64_t e = g / sp->n_seq;
    uint64_t key = splitmix64(splitmix64(d->seed ^ 0x7065726d75746531ull) ^ e);
    *seq = permute(key, g % sp->n_seq, sp->n_seq);
    *epoch = e;
}

pt_status pt_dataset_sequence_of(const pt_dataset *d, int split, int64_t step, int64_t sample, int64_t *seq,
                                 int64_t *epoch)
{
    if (d->task != TASK_NONE || !d->T)
        return pt_fail(PT_EINVAL, "pt_dataset_sequence_of needs a token data set after pt_dataset_set_batch");
    if ((split != PT_SPLIT_TRAIN && split != PT_SPLIT_EVAL) || step < 0 || sample < 0 || !d->split[split].n_seq)
        return pt_fail(PT_EINVAL, "bad sequence request: split %d, step %lld, sample %lld", split, (long long)step,
                       (long long)sample);
    uint64_t s, e;
    seq_of(d, split, step, sample, &s, &e);
    *seq = (int64_t)s;
    if (epoch)
        *epoch = (int64_t)e;
    return PT_OK;
}

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
    if (!d->T)
        return pt_fail(PT_EINVAL, "%s: pt_dataset_set_batch was not called (or failed) before pt_dataset_batch",
                       d->name);
    if (T != d->T)
        return pt_fail(PT_EINVAL, "%s: batch of seq_len %d requested but the data set was cut for %d", d->name, T,
                       d->T);
    const ds_split *sp = &d->split[split];
    if (sp->n_seq == 0)
        return pt_fail(PT_EINVAL, "%s: the %s split holds %llu tokens, fewer than --seq-len + 1 = %d", d->name,
                       split_word(split), (unsigned long long)sp->tokens, T + 1);
    for (int b = 0; b < B; b++) {
        uint64_t s, e;
        seq_of(d, split, step, first_sample + b, &s, &e);
        /* the segment holding sequence s: the last i with prefix[i] <= s */
        int lo = 0, hi = sp->n_seg - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (sp->prefix[mid] <= s)
                lo = mid;
            else
                hi = mid - 1;
        }
        const ds_seg *g = &sp->seg[lo];
        size_t start = (size_t)((s - sp->prefix[lo]) * (uint64_t)T);
        int32_t *x = tokens + (size_t)b * T, *y = targets + (size_t)b * T;
        for (int t = 0; t < T; t++)
            x[t] = (int32_t)pt__token_at(g->p, g->width, start + (size_t)t);
        for (int t = 0; t < T; t++)
            y[t] = (int32_t)pt__token_at(g->p, g->width, start + (size_t)t + 1);
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

void pt_dataset_set_seed(pt_dataset *d, uint64_t seed) { d->seed = seed; }

void pt_dataset_fit_model(const pt_dataset *d, pt_model_config *cfg, char *note, size_t cap)
{
    if (note && cap)
        note[0] = 0;
    int v = pt_dataset_vocab(d);
    if (v <= cfg->vocab_size)
        return;
    int old = cfg->vocab_size, padded = (int)(((int64_t)v + 127) / 128 * 128);
    cfg->vocab_size = v;
    if (cfg->vocab_padded < padded)
        cfg->vocab_padded = padded;
    if (note && cap)
        snprintf(note, cap, "the data's tokenizer (%s) has %d ids: the model's vocab_size is %d (padded to %d), not "
                 "%s's %d",
                 d->tokenizer, v, v, cfg->vocab_padded, cfg->name[0] ? cfg->name : "the config", old);
}

pt_status pt_dataset_describe(const pt_dataset *d, cJSON *run)
{
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)d->fingerprint);
    int ok = cJSON_AddStringToObject(run, "data_tokenizer", d->tokenizer) != NULL &&
             (!d->fingerprint || cJSON_AddStringToObject(run, "data_tokenizer_fingerprint", fp) != NULL) &&
             cJSON_AddNumberToObject(run, "data_vocab", pt_dataset_vocab(d)) != NULL &&
             (!d->T || cJSON_AddNumberToObject(run, "data_tokens_per_step", (double)d->train_batch * d->T) != NULL);
    return ok ? PT_OK : pt_fail(PT_ENOMEM, "out of memory describing the data set");
}

pt_status pt_dataset_check_run(const pt_dataset *d, const char *run_json, const char *what)
{
    if (!run_json)
        return PT_OK;
    cJSON *root = cJSON_Parse(run_json);
    if (!root)
        return PT_OK; /* not ours to judge: the checkpoint module checks its own files */
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "data_tokenizer");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(root, "data_tokenizer_fingerprint");
    pt_status st = PT_OK;
    if (cJSON_IsString(name)) {
        uint64_t f = cJSON_IsString(fp) ? strtoull(fp->valuestring, NULL, 16) : 0;
        int differ = f && d->fingerprint ? f != d->fingerprint : strcmp(name->valuestring, d->tokenizer) != 0;
        if (differ) {
            char mine[64] = "", theirs[64] = "";
            if (d->fingerprint)
                snprintf(mine, sizeof mine, " (fingerprint %016llx)", (unsigned long long)d->fingerprint);
            if (f)
                snprintf(theirs, sizeof theirs, " (fingerprint %016llx)", (unsigned long long)f);
            st = pt_fail(PT_EINVAL,
                         "%s was trained on data of tokenizer %s%s but %s was made with %s%s; prepare the data with "
                         "--tokenizer %s, or start a new run",
                         what, name->valuestring, theirs, d->name, d->tokenizer, mine, name->valuestring);
        }
    }
    cJSON_Delete(root);
    return st;
}
