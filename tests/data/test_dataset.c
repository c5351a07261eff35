/* Tests of llm.c shards, data sets of many shards, the sampling order and pt_prepare
 * (pipetrain/data.h). Runs in the current directory and writes scratch files there.
 *   test_dataset            every test
 *   test_dataset shards     shard formats and data sets only (no tokenizer files needed) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipetrain/data.h"
#include "pipetrain/tokenizer.h"

static int failures;
#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,         \
                    pt_last_error());                                                                    \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)
/* The call fails with `code` and its message contains `needle` (and `needle2` unless NULL). */
#define EXPECT_FAIL2(expr, code, needle, needle2)                                                        \
    do {                                                                                                 \
        pt_status s_ = (expr);                                                                           \
        if (s_ != (code) || !strstr(pt_last_error(), (needle)) ||                                        \
            ((needle2) && !strstr(pt_last_error(), (needle2) ? (needle2) : ""))) {                       \
            fprintf(stderr, "%s:%d: %s gave %s '%s'; expected %s with '%s'\n", __FILE__, __LINE__, #expr, \
                    pt_status_name(s_), pt_last_error(), pt_status_name(code), needle);                  \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)
#define EXPECT_FAIL(expr, code, needle) EXPECT_FAIL2(expr, code, needle, (const char *)NULL)

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

static void spit_s(const char *path, const char *text) { spit(path, text, strlen(text)); }

static int32_t get_i32(const unsigned char *p) { return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24); }

static uint64_t lcg(uint64_t *h)
{
    *h = *h * 6364136223846793005ull + 1442695040888963407ull;
    return *h >> 33;
}

/* llm.c's format exactly: 256 int32 (magic, version, count, zeros), then the tokens. */
static void test_shard_roundtrip(void)
{
    const int vocabs[] = { 50257, 100000 };
    const int magic[] = { 20240520, 20240801 }, version[] = { 1, 7 }, width[] = { 2, 4 };
    for (int k = 0; k < 2; k++) {
        enum { N = 777 };
        int32_t tok[N];
        uint64_t h = (uint64_t)k + 1;
        for (int i = 0; i < N; i++)
            tok[i] = (int32_t)(lcg(&h) % (uint64_t)vocabs[k]);
        tok[0] = vocabs[k] - 1;
        EXPECT(pt_shard_write("rt_shard.bin", vocabs[k], tok, N) == PT_OK);
        size_t n;
        unsigned char *raw = slurp("rt_shard.bin", &n);
        EXPECT(raw && n == (size_t)(1024 + N * width[k]));
        EXPECT(raw && get_i32(raw) == magic[k] && get_i32(raw + 4) == version[k] && get_i32(raw + 8) == N);
        int zeros = 1;
        for (int i = 12; raw && i < 1024; i++)
            zeros &= raw[i] == 0;
        EXPECT(zeros);
        /* tokens little-endian, in order */
        EXPECT(raw && (raw[1024] | raw[1025] << 8) == (tok[0] & 0xFFFF));
        free(raw);
        int32_t *back = NULL;
        int64_t nb = 0;
        int v = 0;
        EXPECT(pt_token_file_read("rt_shard.bin", &back, &nb, &v) == PT_OK);
        EXPECT(nb == N && back && memcmp(back, tok, sizeof tok) == 0);
        EXPECT(v == (k == 0 ? 65536 : INT32_MAX));
        free(back);
    }
    /* the streaming writer gives the same bytes as the one-shot writer */
    int32_t tok[300];
    for (int i = 0; i < 300; i++)
        tok[i] = i * 37 % 50257;
    pt_token_writer *w;
    EXPECT(pt_shard_writer_open("rt_stream.bin", 50257, &w) == PT_OK);
    EXPECT(pt_token_writer_append(w, tok, 100) == PT_OK && pt_token_writer_append(w, tok + 100, 200) == PT_OK);
    EXPECT(pt_token_writer_count(w) == 300);
    EXPECT(pt_token_writer_commit(w, NULL) == PT_OK);
    EXPECT(pt_shard_write("rt_once.bin", 50257, tok, 300) == PT_OK);
    size_t n1, n2;
    unsigned char *a = slurp("rt_stream.bin", &n1), *b = slurp("rt_once.bin", &n2);
    EXPECT(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    free(a);
    free(b);
    int32_t bad[2] = { 5, 50257 };
    EXPECT_FAIL(pt_shard_write("rt_bad.bin", 50257, bad, 2), PT_EINVAL, "token 50257 at index 1");
    struct stat sb;
    EXPECT(stat("rt_bad.bin", &sb) != 0 && stat("rt_bad.bin.tmp", &sb) != 0);
}

/* Bad magic, truncated body, token >= vocab, too short: one line naming the file (and offset). */
static void test_bad_shards(void)
{
    int32_t tok[2000];
    for (int i = 0; i < 2000; i++)
        tok[i] = i % 1000;
    EXPECT(pt_shard_write("good_shard.bin", 50257, tok, 2000) == PT_OK);
    size_t n;
    unsigned char *g = slurp("good_shard.bin", &n), *b = malloc(n);
    pt_dataset *d = NULL;
    memcpy(b, g, n);
    b[0] ^= 0x55;
    spit("bad_magic.bin", b, n);
    EXPECT_FAIL2(pt_dataset_open("bad_magic.bin", 1, &d), PT_EFORMAT, "bad_magic.bin", "bad magic");
    spit("truncated.bin", g, n - 3);
    EXPECT_FAIL2(pt_dataset_open("truncated.bin", 1, &d), PT_EFORMAT, "truncated.bin", "truncated");
    spit("short_header.bin", g, 500);
    EXPECT_FAIL2(pt_dataset_open("short_header.bin", 1, &d), PT_EFORMAT, "short_header.bin", "truncated");
    memcpy(b, g, n);
    b[4] = 3; /* version 3 */
    spit("bad_version.bin", b, n);
    EXPECT_FAIL2(pt_dataset_open("bad_version.bin", 1, &d), PT_EFORMAT, "bad_version.bin", "version 3");
    /* token 60000 at index 1234: uint16 shards without a sidecar are GPT-2's 50257 ids */
    memcpy(b, g, n);
    b[1024 + 2 * 1234] = 60000 & 0xFF;
    b[1024 + 2 * 1234 + 1] = 60000 >> 8;
    spit("big_token.bin", b, n);
    remove("big_token.bin.json"); /* from an earlier run */
    EXPECT_FAIL2(pt_dataset_open("big_token.bin", 1, &d), PT_EFORMAT, "big_token.bin",
                 "token 60000 at index 1234 (byte offset 3492) is outside the vocab of 50257");
    EXPECT(d == NULL);
    /* the same file with a sidecar naming a 65536-id tokenizer is fine */
    spit_s("big_token.bin.json", "{\"tokenizer\": {\"name\": \"wide\", \"vocab_size\": 65536, \"eot\": 0}}");
    EXPECT(pt_dataset_open("big_token.bin", 1, &d) == PT_OK);
    EXPECT(d && pt_dataset_vocab(d) == 65536 && strcmp(pt_dataset_tokenizer(d), "wide") == 0);
    pt_dataset_close(d);
    d = NULL;
    /* a sidecar whose count disagrees with the shard */
    spit_s("good_shard.bin.json", "{\"tokenizer\": {\"name\": \"gpt2\", \"vocab_size\": 50257}, \"shards\": [{\"file\": \"good_shard.bin\", "
         "\"tokens\": 1999}]}");
    EXPECT_FAIL2(pt_dataset_open("good_shard.bin", 1, &d), PT_EFORMAT, "good_shard.bin", "1999");
    remove("good_shard.bin.json");
    /* too short: 1800 train tokens (the last tenth is eval) hold 28 sequences of 65 */
    EXPECT(pt_dataset_open("good_shard.bin", 1, &d) == PT_OK);
    EXPECT(d && strcmp(pt_dataset_tokenizer(d), "gpt2") == 0 && pt_dataset_vocab(d) == 50257);
    EXPECT_FAIL2(pt_dataset_set_batch(d, 29, 1, 64), PT_EINVAL, "1800 tokens (28 sequences", "at least 1857");
    EXPECT(pt_dataset_set_batch(d, 28, 1, 64) == PT_OK);
    pt_dataset_close(d);
    free(b);
    free(g);
}

/* A folder of shards (no sidecar): *_val_* files are the eval split; sequences stay in a shard. */
static void test_dir_and_order(void)
{
    mkdir("ds_dir", 0777);
    /* three train shards of 1000, 701, 333 tokens; token value = global position mod 50000 + shard tag */
    const int sizes[3] = { 1000, 701, 333 };
    int32_t *all[3];
    char path[64];
    for (int s = 0; s < 3; s++) {
        all[s] = malloc(sizeof(int32_t) * (size_t)sizes[s]);
        for (int i = 0; i < sizes[s]; i++)
            all[s][i] = s * 10000 + i;
        snprintf(path, sizeof path, "ds_dir/x_train_%06d.bin", s + 1);
        EXPECT(pt_shard_write(path, 50257, all[s], sizes[s]) == PT_OK);
    }
    int32_t val[200];
    for (int i = 0; i < 200; i++)
        val[i] = 40000 + i;
    EXPECT(pt_shard_write("ds_dir/x_val_000000.bin", 50257, val, 200) == PT_OK);
    spit_s("ds_dir/notes.txt", "not a shard");
    const int T = 16;
    pt_dataset *d = NULL, *g = NULL;
    EXPECT(pt_dataset_open("ds_dir", 7, &d) == PT_OK);
    EXPECT(pt_dataset_open("ds_dir/x_train_*.bin", 7, &g) == PT_OK);
    if (!d || !g)
        return;
    EXPECT(pt_dataset_tokens(d, PT_SPLIT_TRAIN) == 2034 && pt_dataset_tokens(d, PT_SPLIT_EVAL) == 200);
    /* the glob has no val file: its last tenth (203 tokens of the last shard) is eval */
    EXPECT(pt_dataset_tokens(g, PT_SPLIT_TRAIN) == 2034 - 203 && pt_dataset_tokens(g, PT_SPLIT_EVAL) == 203);
    const int G = 8; /* global batch: 2 replicas x 2 micro-batches x 2 */
    EXPECT(pt_dataset_set_batch(d, G, 4, T) == PT_OK);
    /* (1000-1)/16 + (701-1)/16 + (333-1)/16 = 62 + 43 + 20 */
    const int64_t N = 125;
    EXPECT(pt_dataset_sequences(d, PT_SPLIT_TRAIN) == N && pt_dataset_sequences(d, PT_SPLIT_EVAL) == 12);
    /* one epoch (g = 0 .. N-1) visits every sequence once; the next epoch in another order */
    char *seen = calloc((size_t)N, 1);
    int64_t first_epoch[125], same = 0;
    for (int64_t q = 0; q < N; q++) {
        int64_t seq = -1, ep = -1;
        EXPECT(pt_dataset_sequence_of(d, PT_SPLIT_TRAIN, q / G, q % G, &seq, &ep) == PT_OK);
        EXPECT(ep == 0 && seq >= 0 && seq < N);
        if (seq >= 0 && seq < N) {
            EXPECT(!seen[seq]);
            seen[seq] = 1;
        }
        first_epoch[q] = seq;
    }
    for (int64_t q = N; q < 2 * N; q++) {
        int64_t seq = -1, ep = -1;
        EXPECT(pt_dataset_sequence_of(d, PT_SPLIT_TRAIN, q / G, q % G, &seq, &ep) == PT_OK);
        EXPECT(ep == 1);
        same += seq == first_epoch[q - N];
    }
    EXPECT(same < 10); /* a fresh permutation, not the same order again */
    free(seen);
    /* a step's replicas read disjoint sequences: replica r, micro-batch j holds [(r*2 + j)*2, +2) */
    for (int64_t step = 0; step < 15; step++) {
        int64_t s[8];
        for (int k = 0; k < G; k++)
            EXPECT(pt_dataset_sequence_of(d, PT_SPLIT_TRAIN, step, k, &s[k], NULL) == PT_OK);
        for (int a = 0; a < 4; a++)     /* replica 0: samples 0..3 */
            for (int b = 4; b < 8; b++) /* replica 1: samples 4..7 */
                EXPECT(s[a] != s[b]);
    }
    /* every row is T + 1 consecutive tokens of one shard starting at a multiple of T */
    int32_t x[8 * 16], y[8 * 16];
    for (int64_t step = 0; step < 20; step++) {
        EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, step, 0, G, T, x, y) == PT_OK);
        for (int b = 0; b < G; b++) {
            int32_t v0 = x[b * T];
            int shard = v0 / 10000, off = v0 % 10000;
            EXPECT(shard >= 0 && shard < 3 && off % T == 0 && off + T < sizes[shard < 3 ? shard : 0]);
            for (int t = 0; t < T; t++) {
                EXPECT(x[b * T + t] == v0 + t);
                EXPECT(y[b * T + t] == v0 + t + 1);
            }
        }
    }
    /* same seed, same batch; another seed, another order; the eval split is the val file, in order */
    int32_t x2[8 * 16], y2[8 * 16];
    EXPECT(pt_dataset_set_batch(g, G, 4, T) == PT_OK);
    pt_dataset *d2 = NULL;
    EXPECT(pt_dataset_open("ds_dir", 7, &d2) == PT_OK && pt_dataset_set_batch(d2, G, 4, T) == PT_OK);
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 0, G, T, x, y) == PT_OK);
    EXPECT(pt_dataset_batch(d2, PT_SPLIT_TRAIN, 3, 0, G, T, x2, y2) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0);
    pt_dataset_set_seed(d2, 8);
    EXPECT(pt_dataset_batch(d2, PT_SPLIT_TRAIN, 3, 0, G, T, x2, y2) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) != 0);
    EXPECT(pt_dataset_batch(d, PT_SPLIT_EVAL, 1, 0, 4, T, x, y) == PT_OK);
    for (int b = 0; b < 4; b++)
        EXPECT(x[b * T] == 40000 + (4 + b) * T);
    /* describe: the run JSON names the tokenizer; a run of another tokenizer is refused naming both */
    EXPECT(pt_dataset_check_run(d, "{\"data_tokenizer\": \"gpt2\"}", "ckpt/step_000003") == PT_OK);
    EXPECT_FAIL2(pt_dataset_check_run(d, "{\"data_tokenizer\": \"cl100k\"}", "ckpt/step_000003"), PT_EINVAL,
                 "ckpt/step_000003 was trained on data of tokenizer cl100k", "made with gpt2");
    EXPECT(pt_dataset_check_run(d, "{\"model\": \"old\"}", "ckpt") == PT_OK);
    pt_model_config cfg = { .name = "gpt2-tiny", .vocab_size = 256, .vocab_padded = 256 };
    char note[256];
    pt_dataset_fit_model(d, &cfg, note, sizeof note);
    EXPECT(cfg.vocab_size == 50257 && cfg.vocab_padded == 50304 && strstr(note, "50257"));
    pt_dataset_fit_model(d, &cfg, note, sizeof note);
    EXPECT(cfg.vocab_size == 50257 && note[0] == 0);
    pt_dataset_close(d);
    pt_dataset_close(d2);
    pt_dataset_close(g);
    EXPECT_FAIL(pt_dataset_open("ds_dir/nothing_*.bin", 1, &d), PT_EIO, "no file matches");
    for (int s = 0; s < 3; s++)
        free(all[s]);
}

/* ---- prepare ---- */

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    int eq = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    if (!eq)
        fprintf(stderr, "%s and %s differ (%zu and %zu bytes)\n", a, b, na, nb);
    free(pa);
    free(pb);
    return eq;
}

/* A text with every kind of line edge the cut rule meets: '\n' before letters, digits, spaces,
 * punctuation, '\r\n', blank lines, trailing spaces, non-ASCII letters, contractions. */
static size_t make_text(char *buf, size_t cap, uint64_t seed)
{
    static const char *parts[] = { "Hello", " world", "\n", "\n\n", "  \n", "\r\n", "'s", " don't", "12345",
                                   " 3.14", "\t", "    ", "über", " 日本語", "😀", "x", "Ab", "\n ", "!!", "\xff",
                                   "<|endoftext|>", " the", "e\xcc\x81", "\n\tdef f():", "   ", "\nA" };
    const int np = (int)(sizeof parts / sizeof parts[0]);
    size_t n = 0;
    uint64_t h = seed;
    while (n + 32 < cap) {
        const char *p = parts[lcg(&h) % (uint64_t)np];
        size_t l = strlen(p);
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static void test_prepare(void)
{
    /* cut pieces encode as the whole document does (every tokenizer whose text prepare cuts) */
    enum { TEXT = 300000 };
    char *text = malloc(TEXT);
    size_t tn = make_text(text, TEXT, 42);
    spit("prep_doc.txt", text, tn);
    const char *toks[] = { "gpt2", "cl100k", "o200k" };
    for (int k = 0; k < 3; k++) {
        pt_tokenizer *tok = NULL;
        EXPECT(pt_tokenizer_open(toks[k], &tok) == PT_OK);
        if (!tok)
            continue;
        pt_tok_ids whole = { 0 };
        EXPECT(pt_tokenizer_encode(tok, text, tn, 0, &whole) == PT_OK);
        const char *in[] = { "prep_doc.txt" };
        pt_prepare_opts o = { .tokenizer = toks[k], .inputs = in, .n_inputs = 1, .output = "prep_doc.bin",
                              .val_tokens = -1, .threads = 2, .unit_bytes = 4096 };
        pt_prepare_result r;
        EXPECT(pt_prepare(&o, &r) == PT_OK);
        EXPECT(r.documents == 1 && r.bytes == (int64_t)tn && r.tokens == (int64_t)whole.n + 1);
        if (r.tokens != (int64_t)whole.n + 1 || r.documents != 1 || r.bytes != (int64_t)tn)
            fprintf(stderr, "%s: %lld documents, %lld bytes (of %zu), %lld tokens (whole: %zu + 1)\n", toks[k],
                    (long long)r.documents, (long long)r.bytes, tn, (long long)r.tokens, whole.n);
        int32_t *ids = NULL;
        int64_t n = 0;
        EXPECT(pt_token_file_read("prep_doc.bin", &ids, &n, NULL) == PT_OK);
        EXPECT(n == (int64_t)whole.n + 1 && ids && ids[0] == pt_tokenizer_eot(tok));
        if (ids && n == (int64_t)whole.n + 1) {
            int64_t bad = -1;
            for (int64_t i = 0; i < (int64_t)whole.n && bad < 0; i++)
                if (ids[i + 1] != whole.ids[i])
                    bad = i;
            if (bad >= 0)
                fprintf(stderr, "%s: prepare's token %lld is %d, the whole document's %d\n", toks[k], (long long)bad,
                        ids[bad + 1], whole.ids[bad]);
            EXPECT(bad < 0);
        }
        free(ids);
        free(whole.ids);
        pt_tokenizer_close(tok);
    }

    /* a folder of text files, a glob, JSON lines; --threads 1 and 2 give the same bytes */
    mkdir("prep_in", 0777);
    char name[64];
    for (int i = 0; i < 5; i++) {
        size_t n = make_text(text, 20000 + 7000 * (size_t)i, (uint64_t)i + 100);
        snprintf(name, sizeof name, "prep_in/doc%d.txt", i);
        spit(name, text, n);
    }
    spit_s("prep_in/.hidden", "skip me");
    FILE *f = fopen("prep_lines.jsonl", "wb");
    for (int i = 0; i < 400; i++)
        fprintf(f, "{\"id\": %d, \"text\": \"line %d says \\\"hi\\\"\\n and \\u00e9 %s\"}\n%s", i, i,
                i % 3 ? "more" : "", i % 50 == 0 ? "\n" : "");
    fclose(f);
    const char *ins[] = { "prep_in", "prep_lines.jsonl" };
    for (int th = 1; th <= 2; th++) {
        char out[32];
        snprintf(out, sizeof out, "prep_t%d", th);
        mkdir(out, 0777);
        snprintf(out, sizeof out, "prep_t%d/set", th); /* the same shard names in both */
        pt_prepare_opts o = { .tokenizer = "gpt2", .inputs = ins, .n_inputs = 2, .output = out,
                              .shard_tokens = 20000, .val_tokens = 5000, .threads = th, .unit_bytes = 8192 };
        pt_prepare_result r;
        EXPECT(pt_prepare(&o, &r) == PT_OK);
        EXPECT(r.documents == 405 && r.val_tokens == 5000 && r.train_tokens == r.tokens - 5000);
        EXPECT(r.shards == 1 + (int)((r.train_tokens + 19999) / 20000));
    }
    char a[96], b[96];
    EXPECT(files_equal("prep_t1/set/dataset.json", "prep_t2/set/dataset.json"));
    EXPECT(files_equal("prep_t1/set/set_val_000000.bin", "prep_t2/set/set_val_000000.bin"));
    for (int s = 1; s < 8; s++) {
        snprintf(a, sizeof a, "prep_t1/set/set_train_%06d.bin", s);
        snprintf(b, sizeof b, "prep_t2/set/set_train_%06d.bin", s);
        struct stat sb;
        if (stat(a, &sb) != 0)
            break;
        EXPECT(files_equal(a, b));
    }
    /* the shards: val = the first 5000 tokens, train shards of 20000 but the last */
    pt_dataset *d = NULL;
    EXPECT(pt_dataset_open("prep_t2/set", 1, &d) == PT_OK);
    if (d) {
        EXPECT(pt_dataset_tokens(d, PT_SPLIT_EVAL) == 5000 && strcmp(pt_dataset_tokenizer(d), "gpt2") == 0);
        EXPECT(pt_dataset_eot(d) == 50256 && pt_dataset_fingerprint(d) != 0);
        pt_dataset_close(d);
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    EXPECT(pt_token_file_read("prep_t1/set/set_train_000001.bin", &ids, &n, NULL) == PT_OK && n == 20000);
    free(ids);
    EXPECT(pt_token_file_read("prep_t1/set/set_val_000000.bin", &ids, &n, NULL) == PT_OK && n == 5000);
    EXPECT(ids && ids[0] == 50256); /* eot before the first document */
    free(ids);
    /* a glob input and the byte tokenizer: the bytes themselves, no separator */
    const char *gl[] = { "prep_in/doc[0-1].txt" };
    pt_prepare_opts o = { .tokenizer = "byte", .inputs = gl, .n_inputs = 1, .output = "prep_glob.bin",
                          .val_tokens = -1, .threads = 2 };
    pt_prepare_result r;
    EXPECT(pt_prepare(&o, &r) == PT_OK);
    size_t n0, n1;
    unsigned char *t0 = slurp("prep_in/doc0.txt", &n0), *t1 = slurp("prep_in/doc1.txt", &n1);
    EXPECT(r.documents == 2 && r.tokens == (int64_t)(n0 + n1));
    EXPECT(pt_token_file_read("prep_glob.bin", &ids, &n, NULL) == PT_OK && n == (int64_t)(n0 + n1));
    int same = ids && t0 && t1;
    for (size_t i = 0; same && i < n0 + n1; i++)
        same = ids[i] == (i < n0 ? t0[i] : t1[i - n0]);
    EXPECT(same);
    free(ids);
    free(t0);
    free(t1);
    struct stat sb;
    EXPECT(stat("prep_glob.bin.json", &sb) == 0);
    /* bad JSON names the file and the line; a line without "text" too; --val-tokens with FILE.bin */
    spit_s("prep_bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \"broken\n{\"text\": \"x\"}\n");
    const char *bad[] = { "prep_bad.jsonl" };
    o = (pt_prepare_opts){ .tokenizer = "gpt2", .inputs = bad, .n_inputs = 1, .output = "prep_bad", .val_tokens = -1 };
    EXPECT_FAIL2(pt_prepare(&o, &r), PT_EFORMAT, "prep_bad.jsonl:3:", "not valid JSON");
    spit_s("prep_notext.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n");
    bad[0] = "prep_notext.jsonl";
    EXPECT_FAIL2(pt_prepare(&o, &r), PT_EFORMAT, "prep_notext.jsonl:2:", "\"text\"");
    spit_s("prep_trail.jsonl", "{\"text\": \"a\"} x\n");
    bad[0] = "prep_trail.jsonl";
    EXPECT_FAIL2(pt_prepare(&o, &r), PT_EFORMAT, "prep_trail.jsonl:1:", "at byte 15");
    spit_s("prep_array.jsonl", "[\"text\"]\n");
    bad[0] = "prep_array.jsonl";
    EXPECT_FAIL2(pt_prepare(&o, &r), PT_EFORMAT, "prep_array.jsonl:1:", "not valid JSON");
    /* escapes decode as JSON says (a pair of surrogates, an escaped NUL); only the top-level "text" counts */
    spit_s("prep_esc.jsonl", "{\"meta\": {\"text\": \"no\"}, \"list\": [1, -2.5e3, true, null, {}, []], \"te\\u0078t\": "
                             "\"a\\u00e9\\ud83d\\ude00\\u0000b\\n\\\"q\\\"\\\\\\/\\t\", \"text\": \"second\"}\n");
    const char *esc[] = { "prep_esc.jsonl" };
    o = (pt_prepare_opts){ .tokenizer = "byte", .inputs = esc, .n_inputs = 1, .output = "prep_esc.bin", .val_tokens = -1 };
    EXPECT(pt_prepare(&o, &r) == PT_OK && r.documents == 1);
    static const char want[] = "a\xc3\xa9\xf0\x9f\x98\x80\0b\n\"q\"\\/\t";
    EXPECT(pt_token_file_read("prep_esc.bin", &ids, &n, NULL) == PT_OK && n == (int64_t)sizeof want - 1);
    int esc_ok = ids != NULL && n == (int64_t)sizeof want - 1;
    for (int64_t i = 0; esc_ok && i < n; i++)
        esc_ok = ids[i] == (unsigned char)want[i];
    EXPECT(esc_ok);
    free(ids);
    o = (pt_prepare_opts){ .tokenizer = "byte", .inputs = gl, .n_inputs = 1, .output = "x.bin", .val_tokens = 10 };
    EXPECT_FAIL(pt_prepare(&o, &r), PT_EINVAL, "--val-tokens");
    o = (pt_prepare_opts){ .tokenizer = "byte", .inputs = gl, .n_inputs = 1, .output = "prep_allval", .val_tokens = 1 << 30 };
    EXPECT_FAIL(pt_prepare(&o, &r), PT_EINVAL, "validation split");
    const char *missing[] = { "prep_missing.txt" };
    o = (pt_prepare_opts){ .tokenizer = "byte", .inputs = missing, .n_inputs = 1, .output = "m.bin", .val_tokens = -1 };
    EXPECT_FAIL(pt_prepare(&o, &r), PT_EIO, "prep_missing.txt");
    free(text);
}

int main(int argc, char **argv)
{
    test_shard_roundtrip();
    test_bad_shards();
    test_dir_and_order();
    if (!(argc > 1 && strcmp(argv[1], "shards") == 0))
        test_prepare();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
