/* Byte-level BPE tokenizers (pipetrain/tokenizer.h): the tokenizer object, the BPE engine,
 * encode/decode, the byte tokenizer, and the GPT-2 (encoder.json + vocab.bpe) and tiktoken
 * rank-file loaders. tok_hf.c loads Hugging Face tokenizer.json files through the builder of
 * tok_internal.h; tok_open.c (pt_tokenizer_open) picks the loader for a name or a path.
 *
 * Encoding: split the text at special tokens (only with PT_TOK_ALLOW_SPECIAL), split each segment
 * into pieces with the model's regular expressions (PCRE2, UTF + UCP + MATCH_INVALID_UTF, JIT),
 * then merge each piece's bytes: the adjacent pair whose concatenation has the lowest merge rank
 * first, leftmost on ties (tiktoken's byte_pair_merge). Ranks: tiktoken files give them; for GPT-2
 * and tokenizer.json they are the merge list's order (the rank of a string is the first merge that
 * makes it). A piece that itself is a token is that token where the model says so (tiktoken,
 * ignore_merges). Hot path: a per-thread cache of recent pieces, no allocation per piece.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipetrain/json.h"
#include "data_internal.h"
#include "tok_internal.h"

#ifndef PT_TOKENIZER_DIR_DEFAULT
#define PT_TOKENIZER_DIR_DEFAULT "vocab"
#endif

/* ---- hashing ---- */

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t tok_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xD6E8FEB86659FD93ull);
    while (n >= 8) {
        h = (h ^ rd64(p)) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t t = 0;
    switch (n) {
    case 7: t |= (uint64_t)p[6] << 48; /* fall through */
    case 6: t |= (uint64_t)p[5] << 40; /* fall through */
    case 5: t |= (uint64_t)p[4] << 32; /* fall through */
    case 4: t |= (uint64_t)p[3] << 24; /* fall through */
    case 3: t |= (uint64_t)p[2] << 16; /* fall through */
    case 2: t |= (uint64_t)p[1] << 8; /* fall through */
    case 1: t |= (uint64_t)p[0]; /* fall through */
    default: break;
    }
    h = (h ^ t) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}


/* ---- tables: byte strings -> entries, open addressing; a slot is (hash << 32) | (index + 1) ---- */

typedef struct tok_ent {
    uint32_t off, len; /* bytes in the blob */
    int32_t id, rank;
    uint32_t hash;
} tok_ent;

/* A slot holds what a lookup needs (one cache miss): the key's first 8 bytes (zero-padded) when it
 * is that short, else its offset in the blob; its hash, length (0: empty), id and rank. */
typedef struct tok_slot {
    uint64_t k8;
    uint32_t hash, len;
    int32_t id, rank;
} tok_slot;

typedef struct tok_tab {
    tok_slot *slots;
    size_t mask, used;
} tok_tab;

static inline uint64_t load_k8(const unsigned char *p, size_t n)
{
    uint64_t t = 0;
    if (n == 8) {
        memcpy(&t, p, 8);
        return t;
    }
    switch (n) {
    case 7: t |= (uint64_t)p[6] << 48; /* fall through */
    case 6: t |= (uint64_t)p[5] << 40; /* fall through */
    case 5: t |= (uint64_t)p[4] << 32; /* fall through */
    case 4: t |= (uint64_t)p[3] << 24; /* fall through */
    case 3: t |= (uint64_t)p[2] << 16; /* fall through */
    case 2: t |= (uint64_t)p[1] << 8; /* fall through */
    case 1: t |= (uint64_t)p[0]; /* fall through */
    default: break;
    }
    return t;
}

static inline const tok_slot *tab_find(const tok_tab *t, const char *blob, const void *key, size_t n, uint32_t h)
{
    if (!t->slots)
        return NULL;
    const unsigned char *p = key;
    uint64_t k = n <= 8 ? load_k8(p, n) : 0;
    size_t i = h & t->mask;
    for (;;) {
        const tok_slot *s = &t->slots[i];
        if (!s->len)
            return NULL;
        if (s->hash == h && s->len == n && (n <= 8 ? s->k8 == k : memcmp(blob + s->k8, p, n) == 0))
            return s;
        i = (i + 1) & t->mask;
    }
}

static pt_status tab_reserve(tok_tab *t, size_t want)
{
    if (t->slots && (want + 1) * 2 <= t->mask + 1)
        return PT_OK;
    size_t cap = 1024;
    while (cap < (want + 1) * 2)
        cap *= 2;
    tok_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "tokenizer: cannot allocate a %zu-slot table", cap);
    if (t->slots) {
        for (size_t i = 0; i <= t->mask; i++) {
            if (!t->slots[i].len)
                continue;
            size_t j = t->slots[i].hash & (cap - 1);
            while (s[j].len)
                j = (j + 1) & (cap - 1);
            s[j] = t->slots[i];
        }
        free(t->slots);
    }
    t->slots = s;
    t->mask = cap - 1;
    return PT_OK;
}

/* Inserts entry `e` (bytes in the blob); the caller checked it is not present. */
static pt_status tab_insert(tok_tab *t, const char *blob, const tok_ent *e)
{
    PT_CHECK(tab_reserve(t, t->used + 1));
    size_t j = e->hash & t->mask;
    while (t->slots[j].len)
        j = (j + 1) & t->mask;
    tok_slot *s = &t->slots[j];
    s->k8 = e->len <= 8 ? load_k8((const unsigned char *)blob + e->off, e->len) : e->off;
    s->hash = e->hash;
    s->len = e->len;
    s->id = e->id;
    s->rank = e->rank;
    t->used++;
    return PT_OK;
}

/* ---- the tokenizer ---- */

enum { TOK_BYTE = 0, TOK_BPE = 1 };

#define CACHE_BITS 15
#define CACHE_BYTES 26
#define CACHE_IDS 8
typedef struct cache_ent {
    uint32_t hash;
    uint8_t len, n;
    char bytes[CACHE_BYTES];
    int32_t ids[CACHE_IDS];
} cache_ent;

/* Per-thread scratch of one tokenizer (pthread key), freed at close. */
typedef struct tok_scratch {
    struct tok_scratch *next_all;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    cache_ent *cache;
    size_t cap; /* of the arrays below, in parts */
    uint32_t *start;
    int32_t *rank;
    uint32_t *prev, *next;
    int32_t *pid, *mid; /* merge-list BPE: part ids, the id a merge with the next part makes */
    uint64_t *heap;
    unsigned char *nfc; /* NFC-normalized text */
    size_t nfc_cap;
} tok_scratch;

struct pt_tokenizer {
    char *name;
    int kind;
    int vocab;
    char *blob;
    size_t blob_len;
    tok_ent *ents;
    size_t n_ents;
    tok_tab tab;
    /* merge-list BPE (GPT-2 files, tokenizer.json): (left id, right id) -> rank, merged id. Empty:
     * tiktoken's rule, the rank of the concatenated bytes */
    struct tok_pair {
        uint64_t key; /* ((left << 32) | right) + 1; 0: empty */
        int32_t rank, merged;
    } *pairs;
    size_t pmask, pused;
    uint32_t *id_off, *id_len; /* id -> bytes (UINT32_MAX len: a hole) */
    int32_t byte_id[256];
    tok_ent *sp; /* special tokens (bytes in the blob) */
    size_t n_sp;
    tok_tab sp_tab;
    uint8_t sp_first[256];
    uint32_t sp_lens[64];
    int n_sp_lens;
    pcre2_code *re[TOK_MAX_PATTERNS];
    int re_jit[TOK_MAX_PATTERNS];
    char *pat[TOK_MAX_PATTERNS];
    int n_re;
    int shortcut;
    int nfc; /* NFC-normalize before pre-tokenization */
    size_t max_len; /* the longest token's bytes */
    int32_t eot;
    uint64_t fp;
    pthread_key_t key;
    int have_key;
    pthread_mutex_t mu;
    tok_scratch *scratches;
};

struct tok_builder {
    pt_tokenizer *t;
    size_t ents_cap, blob_cap, sp_cap;
    int32_t *id_ent; /* id -> index in ents, -1 none */
    size_t id_cap;
    int32_t max_id;
    uint64_t merge_fp;
};

static void scratch_free(tok_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
    free(s->cache);
    free(s->start);
    free(s->rank);
    free(s->prev);
    free(s->next);
    free(s->pid);
    free(s->mid);
    free(s->heap);
    free(s->nfc);
    free(s);
}

void pt_tokenizer_close(pt_tokenizer *t)
{
    if (!t)
        return;
    if (t->have_key) {
        pthread_key_delete(t->key);
        pthread_mutex_destroy(&t->mu);
    }
    for (tok_scratch *s = t->scratches, *n; s; s = n) {
        n = s->next_all;
        scratch_free(s);
    }
    for (int i = 0; i < t->n_re; i++) {
        pcre2_code_free(t->re[i]);
        free(t->pat[i]);
    }
    free(t->name);
    free(t->blob);
    free(t->ents);
    free(t->tab.slots);
    free(t->pairs);
    free(t->id_off);
    free(t->id_len);
    free(t->sp);
    free(t->sp_tab.slots);
    free(t);
}

const char *pt_tokenizer_name(const pt_tokenizer *t) { return t->name; }
int pt_tokenizer_vocab_size(const pt_tokenizer *t) { return t->vocab; }
uint64_t pt_tokenizer_fingerprint(const pt_tokenizer *t) { return t->fp; }
int pt_tokenizer_eot(const pt_tokenizer *t) { return t->eot; }

int pt_tokenizer_special_id(const pt_tokenizer *t, const char *text)
{
    if (!text || !t->n_sp)
        return -1;
    size_t n = strlen(text);
    const tok_slot *e = tab_find(&t->sp_tab, t->blob, text, n, tok_hash((const unsigned char *)text, n));
    return e ? e->id : -1;
}

const char *pt_tokenizer_token(const pt_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (t->kind == TOK_BYTE) {
        if (len)
            *len = 1;
        return t->blob + id;
    }
    if (t->id_len[id] == UINT32_MAX) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->id_len[id];
    return t->blob + t->id_off[id];
}

pt_status pt_tokenizer_decode(const pt_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!pt_tokenizer_token(t, ids[i], &l))
            return pt_fail(PT_EINVAL, "token id %ld (position %zu) is not in tokenizer %s (vocabulary %d%s)",
                           (long)ids[i], i, t->name, t->vocab,
                           ids[i] >= 0 && ids[i] < t->vocab ? ", an unused id" : "");
        total += l;
    }
    char *out = malloc(total + 1);
    if (!out)
        return pt_fail(PT_ENOMEM, "decode: cannot allocate %zu bytes", total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *b = pt_tokenizer_token(t, ids[i], &l);
        memcpy(out + o, b, l);
        o += l;
    }
    out[o] = '\0';
    *text = out;
    *len = o;
    return PT_OK;
}

/* ---- scratch ---- */

static tok_scratch *scratch_get(const pt_tokenizer *tc)
{
    pt_tokenizer *t = (pt_tokenizer *)tc; /* the scratch list is internal, guarded by mu */
    tok_scratch *s = pthread_getspecific(t->key);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    /* JIT stack: grows on demand up to 256 MB (address space only until used) */
    s->jit_stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, NULL);
    s->cache = calloc((size_t)1 << CACHE_BITS, sizeof *s->cache);
    if (!s->md || !s->mctx || !s->jit_stack || !s->cache) {
        scratch_free(s);
        return NULL;
    }
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    pcre2_set_match_limit(s->mctx, UINT32_MAX);
    pcre2_set_heap_limit(s->mctx, UINT32_MAX);
    if (pthread_setspecific(t->key, s) != 0) {
        scratch_free(s);
        return NULL;
    }
    pthread_mutex_lock(&t->mu);
    s->next_all = t->scratches;
    t->scratches = s;
    pthread_mutex_unlock(&t->mu);
    return s;
}

static int scratch_grow(tok_scratch *s, size_t parts)
{
    if (parts <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < parts)
        cap *= 2;
    uint32_t *a = realloc(s->start, cap * sizeof *a);
    if (a)
        s->start = a;
    int32_t *r = realloc(s->rank, cap * sizeof *r);
    if (r)
        s->rank = r;
    uint32_t *pv = realloc(s->prev, cap * sizeof *pv);
    if (pv)
        s->prev = pv;
    uint32_t *nx = realloc(s->next, cap * sizeof *nx);
    if (nx)
        s->next = nx;
    int32_t *pi = realloc(s->pid, cap * sizeof *pi);
    if (pi)
        s->pid = pi;
    int32_t *mi = realloc(s->mid, cap * sizeof *mi);
    if (mi)
        s->mid = mi;
    uint64_t *hp = realloc(s->heap, cap * 2 * sizeof *hp);
    if (hp)
        s->heap = hp;
    if (!a || !r || !pv || !nx || !pi || !mi || !hp)
        return -1;
    s->cap = cap;
    return 0;
}

/* ---- output ---- */

static int ids_reserve(pt_tok_ids *o, size_t extra)
{
    if (o->n + extra <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1024;
    while (cap < o->n + extra)
        cap *= 2;
    int32_t *p = realloc(o->ids, cap * sizeof *p);
    if (!p)
        return -1;
    o->ids = p;
    o->cap = cap;
    return 0;
}

/* ---- BPE ---- */

static inline int32_t rank_of(const pt_tokenizer *t, const unsigned char *p, size_t n)
{
    if (n > t->max_len)
        return TOK_NO_RANK;
    const tok_slot *e = tab_find(&t->tab, t->blob, p, n, tok_hash(p, n));
    return e ? e->rank : TOK_NO_RANK;
}

static inline int32_t id_of(const pt_tokenizer *t, const unsigned char *p, size_t n)
{
    if (n == 1)
        return t->byte_id[p[0]];
    const tok_slot *e = tab_find(&t->tab, t->blob, p, n, tok_hash(p, n));
    return e ? e->id : -1;
}

/* tiktoken's byte_pair_merge for short pieces (quadratic, tiny constants). Writes the part
 * boundaries to s->start[0..k] and returns k, the number of parts. */
static size_t bpe_small(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n)
{
    uint32_t *st = s->start;
    int32_t *rk = s->rank;
    size_t np = n + 1; /* boundaries */
    int32_t min_r = TOK_NO_RANK;
    size_t min_i = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        st[i] = (uint32_t)i;
        rk[i] = rank_of(t, p + i, 2);
        if (rk[i] < min_r) {
            min_r = rk[i];
            min_i = i;
        }
    }
    st[n - 1] = (uint32_t)(n - 1);
    rk[n - 1] = TOK_NO_RANK;
    st[n] = (uint32_t)n;
    rk[n] = TOK_NO_RANK;
    while (min_r != TOK_NO_RANK) {
        size_t i = min_i;
        /* ranks after removing boundary i+1: part i spans st[i]..st[i+3] */
        if (i > 0)
            rk[i - 1] = i + 2 < np ? rank_of(t, p + st[i - 1], st[i + 2] - st[i - 1]) : TOK_NO_RANK;
        rk[i] = i + 3 < np ? rank_of(t, p + st[i], st[i + 3] - st[i]) : TOK_NO_RANK;
        memmove(st + i + 1, st + i + 2, (np - i - 2) * sizeof *st);
        memmove(rk + i + 1, rk + i + 2, (np - i - 2) * sizeof *rk);
        np--;
        min_r = TOK_NO_RANK;
        for (size_t j = 0; j + 1 < np; j++)
            if (rk[j] < min_r) {
                min_r = rk[j];
                min_i = j;
            }
    }
    return np - 1;
}

/* The same merge order for long pieces in O(n log n): a linked list of parts and a heap of
 * (rank, start) with stale entries skipped. Parts are named by their start byte. */
static inline void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = v;
    return top;
}

static size_t bpe_large(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n)
{
    /* node i: part starting at byte i; next[i] its successor's start (n: none); rank[i]: rank of
     * merging it with its successor; prev[i]; start[i] = 1 while alive */
    uint32_t *nx = s->next, *pv = s->prev, *alive = s->start;
    int32_t *rk = s->rank;
    uint64_t *heap = s->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nx[i] = (uint32_t)(i + 1);
        pv[i] = (uint32_t)(i ? i - 1 : UINT32_MAX);
        alive[i] = 1;
        rk[i] = i + 1 < n ? rank_of(t, p + i, 2) : TOK_NO_RANK;
        if (rk[i] != TOK_NO_RANK)
            heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[i] << 32) | i);
    }
    size_t parts = n;
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t i = (uint32_t)top;
        int32_t r = (int32_t)(top >> 32);
        if (!alive[i] || rk[i] != r)
            continue;
        uint32_t j = nx[i]; /* merge j into i */
        alive[j] = 0;
        nx[i] = nx[j];
        if (nx[j] < n)
            pv[nx[j]] = i;
        parts--;
        uint32_t e = nx[i];
        if (e < n) {
            uint32_t e2 = nx[e];
            rk[i] = rank_of(t, p + i, e2 - i);
        } else {
            rk[i] = TOK_NO_RANK;
        }
        if (rk[i] != TOK_NO_RANK)
            heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[i] << 32) | i);
        if (pv[i] != UINT32_MAX) {
            uint32_t q = pv[i];
            rk[q] = rank_of(t, p + q, nx[i] - q);
            if (rk[q] != TOK_NO_RANK)
                heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[q] << 32) | q);
        }
    }
    /* boundaries into start[] (alive[] is start[]: compact in place, reading ahead of writing) */
    size_t k = 0;
    for (uint32_t i = 0; i < n; i = nx[i])
        alive[k++] = i; /* k <= i always, so this never overwrites an unread flag */
    alive[k] = (uint32_t)n;
    (void)parts;
    return k;
}

/* ---- merge-list BPE: ranks of (left id, right id) pairs, as GPT-2's encoder.py and Hugging Face
 * do (the lowest-rank pair first, leftmost on ties) ---- */

static inline int32_t pair_rank(const pt_tokenizer *t, int32_t a, int32_t b, int32_t *merged)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->pmask;
    for (;;) {
        const struct tok_pair *e = &t->pairs[i];
        if (e->key == key) {
            *merged = e->merged;
            return e->rank;
        }
        if (!e->key)
            return TOK_NO_RANK;
        i = (i + 1) & t->pmask;
    }
}

/* Parts' ids to s->pid[0..k); returns k. */
static size_t bpe_pair_small(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n)
{
    int32_t *id = s->pid, *mid = s->mid, *rk = s->rank;
    for (size_t i = 0; i < n; i++)
        id[i] = t->byte_id[p[i]];
    size_t k = n;
    for (size_t i = 0; i + 1 < k; i++)
        rk[i] = pair_rank(t, id[i], id[i + 1], &mid[i]);
    for (;;) {
        int32_t min_r = TOK_NO_RANK;
        size_t i = 0;
        for (size_t j = 0; j + 1 < k; j++)
            if (rk[j] < min_r) {
                min_r = rk[j];
                i = j;
            }
        if (min_r == TOK_NO_RANK)
            break;
        id[i] = mid[i];
        memmove(id + i + 1, id + i + 2, (k - i - 2) * sizeof *id);
        if (i + 3 < k) { /* rk and mid hold k - 1 pairs */
            memmove(rk + i + 1, rk + i + 2, (k - i - 3) * sizeof *rk);
            memmove(mid + i + 1, mid + i + 2, (k - i - 3) * sizeof *mid);
        }
        k--;
        if (i > 0)
            rk[i - 1] = pair_rank(t, id[i - 1], id[i], &mid[i - 1]);
        rk[i] = i + 1 < k ? pair_rank(t, id[i], id[i + 1], &mid[i]) : TOK_NO_RANK;
    }
    return k;
}

static size_t bpe_pair_large(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n)
{
    uint32_t *nx = s->next, *pv = s->prev, *alive = s->start;
    int32_t *rk = s->rank, *id = s->pid, *mid = s->mid;
    uint64_t *heap = s->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++)
        id[i] = t->byte_id[p[i]];
    for (size_t i = 0; i < n; i++) {
        nx[i] = (uint32_t)(i + 1);
        pv[i] = (uint32_t)(i ? i - 1 : UINT32_MAX);
        alive[i] = 1;
        rk[i] = i + 1 < n ? pair_rank(t, id[i], id[i + 1], &mid[i]) : TOK_NO_RANK;
        if (rk[i] != TOK_NO_RANK)
            heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[i] << 32) | i);
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t i = (uint32_t)top;
        int32_t r = (int32_t)(top >> 32);
        if (!alive[i] || rk[i] != r)
            continue;
        uint32_t j = nx[i];
        alive[j] = 0;
        id[i] = mid[i];
        nx[i] = nx[j];
        if (nx[j] < n)
            pv[nx[j]] = i;
        rk[i] = nx[i] < n ? pair_rank(t, id[i], id[nx[i]], &mid[i]) : TOK_NO_RANK;
        if (rk[i] != TOK_NO_RANK)
            heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[i] << 32) | i);
        if (pv[i] != UINT32_MAX) {
            uint32_t q = pv[i];
            rk[q] = pair_rank(t, id[q], id[i], &mid[q]);
            if (rk[q] != TOK_NO_RANK)
                heap_push(heap, &hn, ((uint64_t)(uint32_t)rk[q] << 32) | q);
        }
    }
    size_t k = 0;
    for (uint32_t i = 0; i < n; i = nx[i])
        id[k++] = id[i]; /* k <= i */
    return k;
}

#define BPE_SMALL_MAX 64

/* Encodes one piece (n >= 1 bytes) and appends its ids. Room for n ids is reserved by the caller. */
static pt_status encode_piece(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n, pt_tok_ids *o)
{
    if (n == 1) {
        o->ids[o->n++] = t->byte_id[p[0]];
        return PT_OK;
    }
    uint32_t h = tok_hash(p, n);
    if (t->shortcut) {
        const tok_slot *e = tab_find(&t->tab, t->blob, p, n, h);
        if (e) {
            o->ids[o->n++] = e->id;
            return PT_OK;
        }
    }
    cache_ent *c = NULL;
    if (n <= CACHE_BYTES) {
        c = &s->cache[h & (((uint32_t)1 << CACHE_BITS) - 1)];
        if (c->len == n && c->hash == h && memcmp(c->bytes, p, n) == 0) {
            memcpy(o->ids + o->n, c->ids, c->n * sizeof(int32_t));
            o->n += c->n;
            return PT_OK;
        }
    }
    if (scratch_grow(s, n + 2) != 0)
        return pt_fail(PT_ENOMEM, "tokenizer: cannot allocate scratch for a %zu-byte piece", n);
    size_t n0 = o->n, k;
    if (t->pairs) {
        k = n <= BPE_SMALL_MAX ? bpe_pair_small(t, s, p, n) : bpe_pair_large(t, s, p, n);
        memcpy(o->ids + o->n, s->pid, k * sizeof(int32_t));
        o->n += k;
    } else {
        k = n <= BPE_SMALL_MAX ? bpe_small(t, s, p, n) : bpe_large(t, s, p, n);
    }
    for (size_t i = 0; i < k && !t->pairs; i++) {
        int32_t id = id_of(t, p + s->start[i], s->start[i + 1] - s->start[i]);
        if (id < 0)
            return pt_fail(PT_EINTERNAL, "tokenizer %s: merged piece of %u bytes has no id", t->name,
                           s->start[i + 1] - s->start[i]);
        o->ids[o->n++] = id;
    }
    if (c && k <= CACHE_IDS) {
        c->hash = h;
        c->len = (uint8_t)n;
        c->n = (uint8_t)k;
        memcpy(c->bytes, p, n);
        memcpy(c->ids, o->ids + n0, k * sizeof(int32_t));
    }
    return PT_OK;
}

static pt_status regex_error(const pt_tokenizer *t, int rc)
{
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return pt_fail(rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_JIT_STACKLIMIT ? PT_ENOMEM : PT_EINTERNAL,
                   "tokenizer %s: pre-tokenization failed (PCRE2: %s)", t->name, (const char *)msg);
}

static inline int re_match(const pt_tokenizer *t, tok_scratch *s, int level, const unsigned char *p, size_t n,
                           size_t pos, uint32_t opts)
{
    if (t->re_jit[level] && !(opts & PCRE2_ANCHORED))
        return pcre2_jit_match(t->re[level], p, n, pos, opts, s->md, s->mctx);
    return pcre2_match(t->re[level], p, n, pos, opts | PCRE2_NO_UTF_CHECK, s->md, s->mctx);
}

/* Splits p[0..n) by pattern `level` (matches and the gaps between them are pieces) and passes
 * each piece to the next level; past the last level, pieces are merged. */
static pt_status split_level(const pt_tokenizer *t, tok_scratch *s, int level, const unsigned char *p, size_t n,
                             pt_tok_ids *o)
{
    if (n == 0)
        return PT_OK;
    if (level == t->n_re)
        return encode_piece(t, s, p, n, o);
    size_t pos = 0, gap = 0;
    uint32_t opts = 0;
    while (pos <= n) {
        int rc = re_match(t, s, level, p, n, pos, opts);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (!opts)
                break;
            /* no non-empty match at pos: step one character */
            opts = 0;
            pos++;
            while (pos < n && (p[pos] & 0xC0) == 0x80)
                pos++;
            continue;
        }
        if (rc < 0)
            return regex_error(t, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: look for a non-empty one here, else move on */
            if (ms >= n)
                break;
            pos = ms;
            opts = PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
            continue;
        }
        opts = 0;
        if (ms > gap)
            PT_CHECK(split_level(t, s, level + 1, p + gap, ms - gap, o));
        PT_CHECK(split_level(t, s, level + 1, p + ms, me - ms, o));
        gap = pos = me;
    }
    if (gap < n)
        PT_CHECK(split_level(t, s, level + 1, p + gap, n - gap, o));
    return PT_OK;
}

/* The earliest special token in p[from..n) (longest at that position): its start, or n. */
static size_t find_special(const pt_tokenizer *t, const unsigned char *p, size_t n, size_t from, const tok_slot **hit)
{
    for (size_t i = from; i < n; i++) {
        if (!t->sp_first[p[i]])
            continue;
        for (int k = 0; k < t->n_sp_lens; k++) {
            size_t l = t->sp_lens[k];
            if (i + l > n)
                continue;
            const tok_slot *e = tab_find(&t->sp_tab, t->blob, p + i, l, tok_hash(p + i, l));
            if (e) {
                *hit = e;
                return i;
            }
        }
    }
    return n;
}

/* Encodes a segment without special tokens: normalized when the tokenizer says so, then split. */
static pt_status encode_segment(const pt_tokenizer *t, tok_scratch *s, const unsigned char *p, size_t n,
                                pt_tok_ids *out)
{
    if (!t->nfc || !tok_nfc_needed(p, n))
        return split_level(t, s, 0, p, n, out);
    size_t m;
    if (tok_nfc(p, n, &s->nfc, &s->nfc_cap, &m) != 0)
        return pt_fail(PT_ENOMEM, "tokenizer %s: cannot allocate NFC scratch for %zu bytes", t->name, n);
    if (m > n && ids_reserve(out, m) != 0)
        return pt_fail(PT_ENOMEM, "encode: cannot allocate %zu token ids", out->n + m);
    return split_level(t, s, 0, s->nfc, m, out);
}

pt_status pt_tokenizer_encode(const pt_tokenizer *t, const char *text, size_t len, int flags, pt_tok_ids *out)
{
    const unsigned char *p = (const unsigned char *)text;
    if (len == 0)
        return PT_OK;
    size_t n0 = out->n;
    /* every byte makes at most one id */
    if (ids_reserve(out, len) != 0)
        return pt_fail(PT_ENOMEM, "encode: cannot allocate %zu token ids", out->n + len);
    if (t->kind == TOK_BYTE) {
        for (size_t i = 0; i < len; i++)
            out->ids[out->n + i] = p[i];
        out->n += len;
        return PT_OK;
    }
    tok_scratch *s = scratch_get(t);
    if (!s)
        return pt_fail(PT_ENOMEM, "tokenizer %s: cannot allocate per-thread scratch", t->name);
    pt_status st = PT_OK;
    if ((flags & PT_TOK_ALLOW_SPECIAL) && t->n_sp) {
        size_t at = 0;
        while (at < len && st == PT_OK) {
            const tok_slot *hit = NULL;
            size_t sp = find_special(t, p, len, at, &hit);
            st = encode_segment(t, s, p + at, sp - at, out);
            if (st == PT_OK && hit) {
                if (ids_reserve(out, 1) != 0)
                    st = pt_fail(PT_ENOMEM, "encode: cannot allocate %zu token ids", out->n + 1);
            }
            if (st == PT_OK && hit) {
                out->ids[out->n++] = hit->id;
                sp += hit->len;
            }
            at = sp;
        }
    } else {
        st = encode_segment(t, s, p, len, out);
    }
    if (st != PT_OK)
        out->n = n0;
    if (s->cap > ((size_t)1 << 20)) { /* a huge piece was here: give its scratch back */
        free(s->start);
        free(s->rank);
        free(s->prev);
        free(s->next);
        free(s->pid);
        free(s->mid);
        free(s->heap);
        s->start = s->prev = s->next = NULL;
        s->rank = s->pid = s->mid = NULL;
        s->heap = NULL;
        s->cap = 0;
    }
    return st;
}

/* ---- GPT-2's byte alphabet ---- */

static uint32_t g_b2u[256];
static int16_t g_u2b[512];
static pthread_once_t g_alpha_once = PTHREAD_ONCE_INIT;

static void alpha_init(void)
{
    for (int i = 0; i < 512; i++)
        g_u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        g_b2u[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        g_u2b[g_b2u[b]] = (int16_t)b;
    }
}

uint32_t tok_gpt2_byte_to_cp(uint8_t b)
{
    pthread_once(&g_alpha_once, alpha_init);
    return g_b2u[b];
}

int tok_gpt2_cp_to_byte(uint32_t cp)
{
    pthread_once(&g_alpha_once, alpha_init);
    return cp < 512 ? g_u2b[cp] : -1;
}

long tok_gpt2_str_to_bytes(const char *str, size_t len, unsigned char *dst)
{
    pthread_once(&g_alpha_once, alpha_init);
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < len && (s[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1; /* every character of the alphabet is below U+0800 */
        }
        if (cp >= 512 || g_u2b[cp] < 0)
            return -1;
        dst[o++] = (unsigned char)g_u2b[cp];
    }
    return (long)o;
}

const char tok_pattern_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* js-tiktoken's pat_str (the same as tiktoken's openai_public.py, with the contractions' case
 * spelled out instead of (?i:...)). */
static const char pattern_cl100k[] =
    "('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_o200k[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+('s|'S|'t|'T|'re|'rE|"
    "'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}"
    "\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|"
    "'d|'D)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Meta's Llama 3 tokenizer.py */
static const char pattern_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- the builder ---- */

pt_status tok_builder_create(const char *name, tok_builder **out)
{
    tok_builder *b = calloc(1, sizeof *b);
    pt_tokenizer *t = calloc(1, sizeof *t);
    char *nm = strdup(name);
    if (!b || !t || !nm) {
        free(b);
        free(t);
        free(nm);
        return pt_fail(PT_ENOMEM, "tokenizer %s: out of memory", name);
    }
    t->name = nm;
    t->kind = TOK_BPE;
    t->eot = -1;
    b->t = t;
    b->max_id = -1;
    *out = b;
    return PT_OK;
}

void tok_builder_destroy(tok_builder *b)
{
    if (!b)
        return;
    pt_tokenizer_close(b->t);
    free(b->id_ent);
    free(b);
}

static pt_status blob_append(tok_builder *b, const void *p, size_t n, uint32_t *off)
{
    pt_tokenizer *t = b->t;
    if (t->blob_len + n + 1 > b->blob_cap) {
        size_t cap = b->blob_cap ? b->blob_cap : 1 << 16;
        while (cap < t->blob_len + n + 1)
            cap *= 2;
        if (cap > UINT32_MAX)
            return pt_fail(PT_EFORMAT, "tokenizer %s: vocabulary holds more than 4 GB of token bytes", t->name);
        char *nb = realloc(t->blob, cap);
        if (!nb)
            return pt_fail(PT_ENOMEM, "tokenizer %s: out of memory", t->name);
        t->blob = nb;
        b->blob_cap = cap;
    }
    memcpy(t->blob + t->blob_len, p, n);
    *off = (uint32_t)t->blob_len;
    t->blob_len += n;
    return PT_OK;
}

#define TOK_MAX_ID (1 << 24)

static pt_status id_slot(tok_builder *b, int32_t id, const char *what)
{
    if (id < 0 || id >= TOK_MAX_ID)
        return pt_fail(PT_EFORMAT, "%s: token id %ld is out of range (0 to %d)", what, (long)id, TOK_MAX_ID - 1);
    if ((size_t)id >= b->id_cap) {
        size_t cap = b->id_cap ? b->id_cap : 1024;
        while (cap <= (size_t)id)
            cap *= 2;
        int32_t *m = realloc(b->id_ent, cap * sizeof *m);
        if (!m)
            return pt_fail(PT_ENOMEM, "tokenizer: out of memory");
        for (size_t i = b->id_cap; i < cap; i++)
            m[i] = -1;
        b->id_ent = m;
        b->id_cap = cap;
    }
    if (id > b->max_id)
        b->max_id = id;
    return PT_OK;
}

static void show_bytes(char *dst, size_t cap, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"' && s[i] != '\\')
            dst[o++] = (char)s[i];
        else
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", s[i]);
    }
    if (o >= cap)
        o = cap - 1;
    dst[o] = '\0';
}

/* Appends an entry (bytes copied into the blob) to a growing entry array (*arr, *n of *cap; the
 * first allocation holds first_cap) and to its lookup table: the one way ordinary and special tokens
 * are added. */
static pt_status ents_push(tok_builder *b, tok_ent **arr, size_t *n, size_t *cap, size_t first_cap, tok_tab *tab,
                           const void *bytes, size_t len, int32_t id, int32_t rank, uint32_t h)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : first_cap;
        tok_ent *e = realloc(*arr, c * sizeof *e);
        if (!e)
            return pt_fail(PT_ENOMEM, "tokenizer: out of memory");
        *arr = e;
        *cap = c;
    }
    tok_ent *e = &(*arr)[*n];
    PT_CHECK(blob_append(b, bytes, len, &e->off));
    e->len = (uint32_t)len;
    e->id = id;
    e->rank = rank;
    e->hash = h;
    PT_CHECK(tab_insert(tab, b->t->blob, e));
    (*n)++;
    return PT_OK;
}

pt_status tok_builder_add(tok_builder *b, int32_t id, const void *bytes, size_t len, int32_t rank, const char *what)
{
    pt_tokenizer *t = b->t;
    if (len == 0)
        return pt_fail(PT_EFORMAT, "%s: token %ld has no bytes", what, (long)id);
    PT_CHECK(id_slot(b, id, what));
    if (b->id_ent[id] >= 0)
        return pt_fail(PT_EFORMAT, "%s: token id %ld appears twice", what, (long)id);
    uint32_t h = tok_hash(bytes, len);
    const tok_slot *dup = tab_find(&t->tab, t->blob, bytes, len, h);
    if (dup) {
        char s[64];
        show_bytes(s, sizeof s, bytes, len);
        return pt_fail(PT_EFORMAT, "%s: token \"%s\" appears twice (ids %ld and %ld)", what, s, (long)dup->id,
                       (long)id);
    }
    PT_CHECK(ents_push(b, &t->ents, &t->n_ents, &b->ents_cap, 4096, &t->tab, bytes, len, id, rank, h));
    b->id_ent[id] = (int32_t)(t->n_ents - 1);
    return PT_OK;
}

static int pairs_grow(pt_tokenizer *t)
{
    size_t cap = t->pairs ? (t->pmask + 1) * 2 : 1 << 16;
    struct tok_pair *np = calloc(cap, sizeof *np);
    if (!np)
        return -1;
    for (size_t i = 0; t->pairs && i <= t->pmask; i++) {
        if (!t->pairs[i].key)
            continue;
        size_t j = (size_t)((t->pairs[i].key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
        while (np[j].key)
            j = (j + 1) & (cap - 1);
        np[j] = t->pairs[i];
    }
    free(t->pairs);
    t->pairs = np;
    t->pmask = cap - 1;
    return 0;
}

int tok_builder_add_merge(tok_builder *b, int32_t left, int32_t right, int32_t rank)
{
    pt_tokenizer *t = b->t;
    int32_t li = left >= 0 && (size_t)left < b->id_cap ? b->id_ent[left] : -1;
    int32_t ri = right >= 0 && (size_t)right < b->id_cap ? b->id_ent[right] : -1;
    if (li < 0 || ri < 0)
        return -1;
    const tok_ent *a = &t->ents[li], *c = &t->ents[ri];
    size_t n = (size_t)a->len + c->len;
    unsigned char small[256];
    unsigned char *cat = n <= sizeof small ? small : malloc(n);
    if (!cat)
        return -2;
    memcpy(cat, t->blob + a->off, a->len);
    memcpy(cat + a->len, t->blob + c->off, c->len);
    int32_t merged = tok_builder_find(b, cat, n);
    if (cat != small)
        free(cat);
    if (merged < 0)
        return -1;
    if ((!t->pairs || (t->pused + 1) * 2 > t->pmask + 1) && pairs_grow(t) != 0)
        return -2;
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->pmask;
    while (t->pairs[i].key && t->pairs[i].key != key)
        i = (i + 1) & t->pmask;
    if (t->pairs[i].key)
        return 0; /* a repeated merge: the first (lowest) rank stays */
    t->pairs[i].key = key;
    t->pairs[i].rank = rank;
    t->pairs[i].merged = merged;
    t->pused++;
    int32_t v[4] = { left, right, rank, merged };
    b->merge_fp = pt__fnv1a64(b->merge_fp ? b->merge_fp : PT_FNV_OFFSET, v, sizeof v);
    return 0;
}

int32_t tok_builder_find(const tok_builder *b, const void *bytes, size_t len)
{
    const pt_tokenizer *t = b->t;
    const tok_slot *e = tab_find(&t->tab, t->blob, bytes, len, tok_hash(bytes, len));
    return e ? e->id : -1;
}

pt_status tok_builder_add_special(tok_builder *b, const char *text, size_t len, int32_t id, const char *what)
{
    pt_tokenizer *t = b->t;
    if (len == 0)
        return pt_fail(PT_EFORMAT, "%s: special token %ld is empty", what, (long)id);
    PT_CHECK(id_slot(b, id, what));
    uint32_t h = tok_hash((const unsigned char *)text, len);
    if (tab_find(&t->sp_tab, t->blob, text, len, h))
        return pt_fail(PT_EFORMAT, "%s: special token \"%.*s\" appears twice", what, (int)(len > 60 ? 60 : len),
                       text);
    for (size_t i = 0; i < t->n_sp; i++)
        if (t->sp[i].id == id)
            return pt_fail(PT_EFORMAT, "%s: special token id %ld appears twice", what, (long)id);
    int32_t ent = b->id_ent[id];
    if (ent >= 0) { /* an ordinary token too (GPT-2's <|endoftext|>): the same bytes or refused */
        const tok_ent *o = &t->ents[ent];
        if (o->len != len || memcmp(t->blob + o->off, text, len) != 0)
            return pt_fail(PT_EFORMAT, "%s: special token \"%.*s\" has id %ld, which is another token", what,
                           (int)(len > 60 ? 60 : len), text, (long)id);
    }
    return ents_push(b, &t->sp, &t->n_sp, &b->sp_cap, 16, &t->sp_tab, text, len, id, TOK_NO_RANK, h);
}

/* JavaScript's \s (ECMAScript WhiteSpace and LineTerminator): PCRE2's \s with UCP also takes
 * U+0085 and lacks U+FEFF. */
#define JS_SPACE "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

/* Rewrites \s and \S to mean JavaScript's (the reference encoders' regular expressions are
 * JavaScript's: gpt-3-encoder, js-tiktoken). */
static char *js_space(const char *pat)
{
    size_t n = strlen(pat);
    char *o = malloc(n * 64 + 1); /* \\s grows to under 100 bytes from 2 */
    if (!o)
        return NULL;
    size_t j = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[i + 1];
            if (d == 's') {
                j += (size_t)sprintf(o + j, in_class ? "%s" : "[%s]", JS_SPACE);
            } else if (d == 'S' && !in_class) {
                j += (size_t)sprintf(o + j, "[^%s]", JS_SPACE);
            } else {
                o[j++] = c;
                o[j++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[j++] = c;
            if (i + 1 < n && pat[i + 1] == '^')
                o[j++] = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']')
                o[j++] = pat[++i];
            continue;
        }
        if (c == ']' && in_class)
            in_class = 0;
        o[j++] = c;
    }
    o[j] = '\0';
    return o;
}

pt_status tok_builder_add_pattern(tok_builder *b, const char *pattern, int literal, int js, const char *what)
{
    pt_tokenizer *t = b->t;
    if (t->n_re == TOK_MAX_PATTERNS)
        return pt_fail(PT_EFORMAT, "%s: more than %d pre-tokenization patterns", what, TOK_MAX_PATTERNS);
    char *src = js && !literal ? js_space(pattern) : strdup(pattern);
    if (!src)
        return pt_fail(PT_ENOMEM, "tokenizer: out of memory");
    int err;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_NO_AUTO_CAPTURE;
    if (literal)
        opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_LITERAL;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        pt_status st = pt_fail(PT_EFORMAT, "%s: pre-tokenization pattern \"%.80s\" does not compile at offset %zu: %s",
                               what, pattern, (size_t)eoff, (const char *)msg);
        free(src);
        return st;
    }
    t->re_jit[t->n_re] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    t->re[t->n_re] = re;
    t->pat[t->n_re] = src;
    t->n_re++;
    return PT_OK;
}

void tok_builder_set_nfc(tok_builder *b) { b->t->nfc = 1; }

void tok_builder_set_options(tok_builder *b, int whole_piece_shortcut, int32_t eot)
{
    b->t->shortcut = whole_piece_shortcut;
    b->t->eot = eot;
}

pt_status tok_builder_finish(tok_builder *b, const char *what, pt_tokenizer **out)
{
    pt_tokenizer *t = b->t;
    pt_status st = PT_OK;
    if (t->n_ents == 0) {
        st = pt_fail(PT_EFORMAT, "%s: the vocabulary is empty", what);
        goto fail;
    }
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        int32_t id = tok_builder_find(b, &byte, 1);
        if (id < 0) {
            st = pt_fail(PT_EFORMAT,
                         "%s: byte 0x%02x has no token; a byte-level BPE vocabulary needs one for each of the 256 bytes",
                         what, c);
            goto fail;
        }
        t->byte_id[c] = id;
    }
    t->vocab = b->max_id + 1;
    t->id_off = malloc((size_t)t->vocab * sizeof *t->id_off);
    t->id_len = malloc((size_t)t->vocab * sizeof *t->id_len);
    if (!t->id_off || !t->id_len) {
        st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
        goto fail;
    }
    for (int i = 0; i < t->vocab; i++)
        t->id_len[i] = UINT32_MAX;
    for (size_t i = 0; i < t->n_ents; i++) {
        if (t->ents[i].len > t->max_len)
            t->max_len = t->ents[i].len;
        t->id_off[t->ents[i].id] = t->ents[i].off;
        t->id_len[t->ents[i].id] = t->ents[i].len;
    }
    for (size_t i = 0; i < t->n_sp; i++) {
        const tok_ent *e = &t->sp[i];
        if (t->id_len[e->id] == UINT32_MAX) {
            t->id_off[e->id] = e->off;
            t->id_len[e->id] = e->len;
        }
        t->sp_first[(unsigned char)t->blob[e->off]] = 1;
        int k;
        for (k = 0; k < t->n_sp_lens && t->sp_lens[k] != e->len; k++)
            ;
        if (k == t->n_sp_lens) {
            if (t->n_sp_lens == 64) {
                st = pt_fail(PT_EFORMAT, "%s: special tokens of more than 64 different lengths", what);
                goto fail;
            }
            t->sp_lens[t->n_sp_lens++] = e->len;
        }
    }
    /* longest first: at one position the longest special token wins */
    for (int i = 1; i < t->n_sp_lens; i++)
        for (int j = i; j > 0 && t->sp_lens[j] > t->sp_lens[j - 1]; j--) {
            uint32_t x = t->sp_lens[j];
            t->sp_lens[j] = t->sp_lens[j - 1];
            t->sp_lens[j - 1] = x;
        }
    if (t->eot >= t->vocab)
        t->eot = -1;
    /* fingerprint: every (id, bytes, rank), every special token, the patterns, the options */
    uint64_t h = pt__fnv1a64(PT_FNV_OFFSET, "pt-bpe-1", 8);
    for (int i = 0; i < t->vocab; i++) {
        if (b->id_ent[i] < 0)
            continue;
        const tok_ent *e = &t->ents[b->id_ent[i]];
        int32_t v[3] = { e->id, (int32_t)e->len, e->rank };
        h = pt__fnv1a64(h, v, sizeof v);
        h = pt__fnv1a64(h, t->blob + e->off, e->len);
    }
    for (size_t i = 0; i < t->n_sp; i++) {
        int32_t v[2] = { t->sp[i].id, (int32_t)t->sp[i].len };
        h = pt__fnv1a64(h, v, sizeof v);
        h = pt__fnv1a64(h, t->blob + t->sp[i].off, t->sp[i].len);
    }
    for (int i = 0; i < t->n_re; i++)
        h = pt__fnv1a64(h, t->pat[i], strlen(t->pat[i]) + 1);
    int32_t opt[3] = { t->shortcut, t->eot, t->nfc };
    h = pt__fnv1a64(h, &b->merge_fp, sizeof b->merge_fp);
    t->fp = pt__fnv1a64(h, opt, sizeof opt);
    if (pthread_key_create(&t->key, NULL) != 0) {
        st = pt_fail(PT_ENOMEM, "tokenizer %s: no thread-local key left (too many open tokenizers)", t->name);
        goto fail;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->have_key = 1;
    b->t = NULL;
    tok_builder_destroy(b);
    *out = t;
    return PT_OK;
fail:
    tok_builder_destroy(b);
    return st;
}

/* ---- files ---- */

static pt_status read_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap + 1);
    for (;;) {
        if (!b) {
            fclose(f);
            return pt_fail(PT_ENOMEM, "%s: out of memory reading the file", path);
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb)
            free(b);
        b = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return pt_fail(PT_EIO, "%s: read error (%s)", path, strerror(errno));
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return PT_OK;
}

/* GPT-2: encoder.json (token string -> id, strings in the byte alphabet) + vocab.bpe (merges). */
pt_status tok_load_gpt2(const char *enc_path, const char *bpe_path, const char *name, pt_tokenizer **out)
{
    tok_builder *b;
    PT_CHECK(tok_builder_create(name, &b));
    cJSON *root = NULL;
    char *bpe = NULL, *what = NULL;
    unsigned char *tmp = NULL;
    pt_status st = pt_json_read_file(enc_path, &root);
    if (st != PT_OK)
        goto done;
    if (!cJSON_IsObject(root)) {
        st = pt_fail(PT_EFORMAT, "%s: not a GPT-2 encoder.json (the top level must be an object of token -> id)",
                     enc_path);
        goto done;
    }
    size_t wcap = strlen(enc_path) + strlen(bpe_path) + 64;
    what = malloc(wcap);
    tmp = malloc(1 << 16);
    if (!what || !tmp) {
        st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *key = it->string;
        size_t kl = strlen(key);
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int32_t)it->valuedouble) {
            st = pt_fail(PT_EFORMAT, "%s: key \"%.60s\": the id must be an integer", enc_path, key);
            goto done;
        }
        if (kl >= (1 << 16)) {
            st = pt_fail(PT_EFORMAT, "%s: key \"%.60s...\" is longer than 64 KB", enc_path, key);
            goto done;
        }
        long nb = tok_gpt2_str_to_bytes(key, kl, tmp);
        if (nb < 0) {
            st = pt_fail(PT_EFORMAT,
                         "%s: key \"%.60s\" has a character outside GPT-2's byte alphabet (bytes_to_unicode); "
                         "not a GPT-2 encoder.json",
                         enc_path, key);
            goto done;
        }
        snprintf(what, wcap, "%s: key \"%.60s\"", enc_path, key);
        st = tok_builder_add(b, (int32_t)it->valuedouble, tmp, (size_t)nb, TOK_NO_RANK, what);
        if (st != PT_OK)
            goto done;
    }
    size_t bl;
    st = read_all(bpe_path, &bpe, &bl);
    if (st != PT_OK)
        goto done;
    size_t line = 0;
    int32_t rank = 0;
    for (char *p = bpe, *end = bpe + bl; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        char *q = p;
        p = nl ? nl + 1 : end;
        if (le > q && le[-1] == '\r')
            le--;
        if (line == 1 && le - q >= 1 && q[0] == '#')
            continue; /* "#version: 0.2" */
        if (le == q)
            continue;
        char *sp = memchr(q, ' ', (size_t)(le - q));
        if (!sp || sp == q || sp + 1 >= le || memchr(sp + 1, ' ', (size_t)(le - sp - 1))) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: \"%.*s\" is not a merge (two tokens separated by one space)",
                         bpe_path, line, (int)(le - q > 60 ? 60 : le - q), q);
            goto done;
        }
        if (le - q >= (1 << 16)) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: longer than 64 KB", bpe_path, line);
            goto done;
        }
        long na = tok_gpt2_str_to_bytes(q, (size_t)(sp - q), tmp);
        long nbb = na < 0 ? -1 : tok_gpt2_str_to_bytes(sp + 1, (size_t)(le - sp - 1), tmp + na);
        if (na < 0 || nbb < 0) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: \"%.*s\" has a character outside GPT-2's byte alphabet", bpe_path,
                         line, (int)(le - q > 60 ? 60 : le - q), q);
            goto done;
        }
        int32_t left = tok_builder_find(b, tmp, (size_t)na), right = tok_builder_find(b, tmp + na, (size_t)nbb);
        if (left < 0 || right < 0) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: merge \"%.*s\" joins a token that %s lacks", bpe_path, line,
                         (int)(le - q > 60 ? 60 : le - q), q, enc_path);
            goto done;
        }
        int rc = tok_builder_add_merge(b, left, right, rank);
        if (rc == -2) {
            st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
            goto done;
        }
        if (rc != 0) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: merge \"%.*s\" makes a token that %s lacks", bpe_path, line,
                         (int)(le - q > 60 ? 60 : le - q), q, enc_path);
            goto done;
        }
        rank++;
    }
    int32_t eot = tok_builder_find(b, "<|endoftext|>", 13);
    if (eot >= 0) {
        st = tok_builder_add_special(b, "<|endoftext|>", 13, eot, enc_path);
        if (st != PT_OK)
            goto done;
    }
    st = tok_builder_add_pattern(b, tok_pattern_gpt2, 0, 1, enc_path);
    if (st != PT_OK)
        goto done;
    tok_builder_set_options(b, 0, eot);
    st = tok_builder_finish(b, enc_path, out);
    b = NULL;
done:
    tok_builder_destroy(b);
    cJSON_Delete(root);
    free(bpe);
    free(what);
    free(tmp);
    return st;
}

/* ---- tiktoken rank files ---- */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes standard base64 (padding optional). Returns the byte count or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *dst)
{
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

static const char *const cl100k_specials[] = { "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>",
                                               "<|fim_suffix|>", "<|endofprompt|>" };
static const int32_t cl100k_special_ids[] = { 100257, 100258, 100259, 100260, 100276 };

pt_status tok_load_tiktoken(const char *path, const char *name, int flavour_o200k, pt_tokenizer **out)
{
    char *buf = NULL, *what = NULL;
    size_t len;
    PT_CHECK(read_all(path, &buf, &len));
    tok_builder *b = NULL;
    pt_status st = tok_builder_create(name, &b);
    unsigned char tmp[1024];
    size_t wcap = strlen(path) + 64;
    what = malloc(wcap);
    if (st != PT_OK || !what) {
        if (st == PT_OK)
            st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    size_t line = 0, n_ranks = 0;
    for (char *p = buf, *end = buf + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        char *q = p;
        p = nl ? nl + 1 : end;
        while (le > q && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
            le--;
        if (le == q)
            continue;
        char *te = memchr(q, ' ', (size_t)(le - q)), *sp = te; /* token end; the space before the rank */
        while (sp && sp + 1 < le && sp[1] == ' ')
            sp++;
        if (!sp || te == q || sp + 1 >= le) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: \"%.*s\" is not \"BASE64-TOKEN RANK\" (a tiktoken rank file)", path,
                         line, (int)(le - q > 60 ? 60 : le - q), q);
            goto done;
        }
        long nb = (size_t)(te - q) > sizeof tmp / 3 * 4 ? -1 : b64_decode(q, (size_t)(te - q), tmp);
        if (nb <= 0) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: \"%.*s\" is not a base64 token", path, line,
                         (int)(te - q > 60 ? 60 : te - q), q);
            goto done;
        }
        long long r = 0;
        char *d = sp + 1;
        for (; d < le && *d >= '0' && *d <= '9' && r < TOK_MAX_ID; d++)
            r = r * 10 + (*d - '0');
        if (d != le || r >= TOK_MAX_ID) {
            st = pt_fail(PT_EFORMAT, "%s line %zu: rank \"%.*s\" is not an integer from 0 to %d", path, line,
                         (int)(le - sp - 1 > 30 ? 30 : le - sp - 1), sp + 1, TOK_MAX_ID - 1);
            goto done;
        }
        snprintf(what, wcap, "%s line %zu", path, line);
        st = tok_builder_add(b, (int32_t)r, tmp, (size_t)nb, (int32_t)r, what);
        if (st != PT_OK)
            goto done;
        n_ranks++;
    }
    int32_t eot = -1;
    const char *pattern = flavour_o200k ? pattern_o200k : pattern_cl100k;
    if (flavour_o200k) {
        if (n_ranks == 199998) {
            st = tok_builder_add_special(b, "<|endoftext|>", 13, 199999, path);
            if (st == PT_OK)
                st = tok_builder_add_special(b, "<|endofprompt|>", 15, 200018, path);
            eot = 199999;
        }
    } else if (n_ranks == 100256) {
        for (size_t i = 0; i < sizeof cl100k_special_ids / sizeof *cl100k_special_ids && st == PT_OK; i++)
            st = tok_builder_add_special(b, cl100k_specials[i], strlen(cl100k_specials[i]), cl100k_special_ids[i],
                                         path);
        eot = 100257;
    } else if (n_ranks == 128000) {
        /* Llama 3 (Meta's tokenizer.py, Llama 3.1 names): 256 special tokens from 128000 */
        static const char *const named[] = { "<|begin_of_text|>",
                                             "<|end_of_text|>",
                                             "<|reserved_special_token_0|>",
                                             "<|reserved_special_token_1|>",
                                             "<|finetune_right_pad_id|>",
                                             "<|step_id|>",
                                             "<|start_header_id|>",
                                             "<|end_header_id|>",
                                             "<|eom_id|>",
                                             "<|eot_id|>",
                                             "<|python_tag|>" };
        char sname[64];
        for (int i = 0; i < 256 && st == PT_OK; i++) {
            const char *s = sname;
            if (i < (int)(sizeof named / sizeof *named))
                s = named[i];
            else
                snprintf(sname, sizeof sname, "<|reserved_special_token_%d|>", i - (int)(sizeof named / sizeof *named) + 2);
            st = tok_builder_add_special(b, s, strlen(s), 128000 + i, path);
        }
        eot = 128001;
        pattern = pattern_llama3;
    }
    if (st != PT_OK)
        goto done;
    /* Meta's pattern is Python's (tiktoken's Rust regex); the others are js-tiktoken's */
    st = tok_builder_add_pattern(b, pattern, 0, pattern != pattern_llama3, path);
    if (st != PT_OK)
        goto done;
    tok_builder_set_options(b, 1, eot);
    st = tok_builder_finish(b, path, out);
    b = NULL;
done:
    tok_builder_destroy(b);
    free(buf);
    free(what);
    return st;
}

/* ---- the byte tokenizer ---- */

pt_status tok_open_byte(pt_tokenizer **out)
{
    pt_tokenizer *t = calloc(1, sizeof *t);
    char *blob = malloc(256);
    char *nm = strdup("byte");
    if (!t || !blob || !nm) {
        free(t);
        free(blob);
        free(nm);
        return pt_fail(PT_ENOMEM, "tokenizer: out of memory");
    }
    for (int i = 0; i < 256; i++) {
        blob[i] = (char)i;
        t->byte_id[i] = i;
    }
    t->blob = blob;
    t->name = nm;
    t->kind = TOK_BYTE;
    t->vocab = 256;
    t->eot = -1;
    t->fp = pt__fnv1a64(PT_FNV_OFFSET, "pt-byte-1", 9);
    *out = t;
    return PT_OK;
}
