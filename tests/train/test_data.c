/* Tests of token files, data sets, the LR schedule and clip scale (no model needed).
 *   test_data                      unit tests (run in the current directory; writes scratch files)
 *   test_data prepared TOK TEXT    checks that TOK (from `pipetrain prepare --tokenizer byte`) holds TEXT's bytes */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/data.h"
#include "pipetrain/optim.h"

static int failures;
#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,         \
                    pt_last_error());                                                                    \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)
/* The call fails with `code` and its message contains `needle`. */
#define EXPECT_FAIL(expr, code, needle)                                                                  \
    do {                                                                                                 \
        pt_status s_ = (expr);                                                                           \
        if (s_ != (code) || !strstr(pt_last_error(), (needle))) {                                        \
            fprintf(stderr, "%s:%d: %s gave %s '%s'; expected %s with '%s'\n", __FILE__, __LINE__, #expr, \
                    pt_status_name(s_), pt_last_error(), pt_status_name(code), needle);                  \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
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

static void spit(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static void test_roundtrip(void)
{
    const int vocabs[] = { 256, 50257, 100000 };
    const int widths[] = { 1, 2, 4 };
    for (int k = 0; k < 3; k++) {
        int32_t tok[1000];
        for (int i = 0; i < 1000; i++)
            tok[i] = (int32_t)((i * 7919u) % (unsigned)vocabs[k]);
        EXPECT(pt_token_file_write("rt.bin", vocabs[k], tok, 1000) == PT_OK);
        size_t n;
        unsigned char *raw = slurp("rt.bin", &n);
        EXPECT(raw && n == (size_t)(PT_TOKEN_FILE_HEADER_BYTES + 1000 * widths[k]));
        free(raw);
        int32_t *back = NULL;
        int64_t nb = 0;
        int vocab = 0;
        EXPECT(pt_token_file_read("rt.bin", &back, &nb, &vocab) == PT_OK);
        EXPECT(nb == 1000 && vocab == vocabs[k] && back && memcmp(back, tok, sizeof tok) == 0);
        free(back);
    }
    /* the writer refuses tokens outside the vocab, and leaves no file behind */
    int32_t bad[3] = { 1, 256, 2 };
    remove("bad.bin");
    EXPECT_FAIL(pt_token_file_write("bad.bin", 256, bad, 3), PT_EINVAL, "token 256 at index 1");
    FILE *f = fopen("bad.bin", "rb");
    EXPECT(f == NULL);
    if (f)
        fclose(f);
    EXPECT_FAIL(pt_token_file_write("nodir/x.bin", 256, bad, 1), PT_EIO, "nodir/x.bin");
}

/* Each way a token file can be broken gets its own message. */
static void test_corrupt(void)
{
    int32_t tok[100];
    for (int i = 0; i < 100; i++)
        tok[i] = i;
    EXPECT(pt_token_file_write("good.bin", 256, tok, 100) == PT_OK);
    size_t n;
    unsigned char *g = slurp("good.bin", &n);
    unsigned char *b = malloc(n + 16);
    int32_t *out;
    int64_t nt;
    int v;

    EXPECT_FAIL(pt_token_file_read("missing.bin", &out, &nt, &v), PT_EIO, "missing.bin");
    spit("c.bin", g, 10);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "truncated");
    memcpy(b, g, n);
    b[0] = 'X';
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "bad magic");
    memcpy(b, g, n);
    b[8] = 9;
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "newer than this build");
    memcpy(b, g, n);
    b[12] = 3;
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "bytes per token");
    memcpy(b, g, n);
    b[17] = 2; /* vocab 512 in 1-byte tokens */
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "does not fit");
    spit("c.bin", g, n - 7);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "truncated: the header says 100 tokens");
    memcpy(b, g, n);
    memcpy(b + n, "junk", 4);
    spit("c.bin", b, n + 4);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "trailing garbage");
    memcpy(b, g, n);
    b[PT_TOKEN_FILE_HEADER_BYTES + 50] ^= 1;
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "checksum mismatch");
    /* a token past the vocab with a consistent checksum: vocab lowered to 64 */
    memcpy(b, g, n);
    b[16] = 64;
    b[17] = 0;
    spit("c.bin", b, n);
    EXPECT_FAIL(pt_token_file_read("c.bin", &out, &nt, &v), PT_EFORMAT, "token 64 at index 64 (byte offset 104) is outside the vocab of 64");
    pt_dataset *d = NULL;
    EXPECT_FAIL(pt_dataset_open("c.bin", 1, &d), PT_EFORMAT, "outside the vocab");
    EXPECT(d == NULL);
    /* checksum recomputed over modified tokens is accepted (the check is the checksum, not luck) */
    memcpy(b, g, n);
    b[PT_TOKEN_FILE_HEADER_BYTES + 50] = 7;
    uint64_t h = fnv(b + PT_TOKEN_FILE_HEADER_BYTES, n - PT_TOKEN_FILE_HEADER_BYTES);
    for (int i = 0; i < 8; i++)
        b[32 + i] = (unsigned char)(h >> (8 * i));
    spit("c.bin", b, n);
    EXPECT(pt_token_file_read("c.bin", &out, &nt, &v) == PT_OK && out[50] == 7);
    free(out);
    free(b);
    free(g);
}

/* Where a row's window starts in tok (-1 if nowhere). */
static int find_window(const int32_t *tok, int n, const int32_t *row, int T)
{
    for (int s = 0; s + T <= n; s++)
        if (memcmp(&tok[s], row, (size_t)T * sizeof *row) == 0)
            return s;
    return -1;
}

static void test_text_dataset(void)
{
    enum { N = 1000 };
    int32_t tok[N];
    uint64_t h = 1;
    for (int i = 0; i < N; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)(h >> 56);
    }
    EXPECT(pt_token_file_write("text.bin", 256, tok, N) == PT_OK);
    pt_dataset *d;
    EXPECT(pt_dataset_open("text.bin", 5, &d) == PT_OK);
    EXPECT(pt_dataset_vocab(d) == 256 && !pt_dataset_is_task(d));
    int32_t x[4 * 16], y[4 * 16], x2[4 * 16], y2[4 * 16];
    EXPECT_FAIL(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 0, 4, 16, x, y), PT_EINVAL, "pt_dataset_set_batch");
    /* the train split (900 tokens) holds 56 sequences of 17: a global batch of 57 is refused */
    EXPECT_FAIL(pt_dataset_set_batch(d, 57, 0, 16), PT_EINVAL, "shorter than one batch");
    /* the eval split (the last 100 tokens) has no sequence of 101 */
    EXPECT_FAIL(pt_dataset_set_batch(d, 4, 2, 100), PT_EINVAL, "fewer than seq_len + 1");
    EXPECT(pt_dataset_set_batch(d, 4, 2, 16) == PT_OK);
    EXPECT(pt_dataset_sequences(d, PT_SPLIT_TRAIN) == 56 && pt_dataset_sequences(d, PT_SPLIT_EVAL) == 6);
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 0, 4, 16, x, y) == PT_OK);
    for (int b = 0; b < 4; b++) {
        /* train windows (T + 1 tokens) lie in the first 90% at multiples of T; targets are the next tokens */
        int pos = find_window(tok, N, x + b * 16, 16);
        EXPECT(pos >= 0 && pos + 17 <= 900 && pos % 16 == 0);
        EXPECT(pos >= 0 && memcmp(y + b * 16, tok + pos + 1, 16 * sizeof(int32_t)) == 0);
    }
    EXPECT_FAIL(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 0, 4, 8, x, y), PT_EINVAL, "was cut for 16");
    /* splitting the batch into micro-batches gives the same samples */
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 0, 2, 16, x2, y2) == PT_OK);
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 3, 2, 2, 16, x2 + 32, y2 + 32) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0);
    /* another step differs */
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 4, 0, 4, 16, x2, y2) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) != 0);
    /* the eval split is the last 100 tokens: 900..999 */
    int32_t e[2 * 16], et[2 * 16];
    EXPECT(pt_dataset_batch(d, PT_SPLIT_EVAL, 0, 0, 2, 16, e, et) == PT_OK);
    for (int i = 0; i < 2; i++)
        EXPECT(find_window(tok, N, e + i * 16, 16) >= 900);
    EXPECT_FAIL(pt_dataset_batch(d, 7, 0, 0, 1, 16, e, et), PT_EINVAL, "split 7");
    int64_t c, tot;
    int32_t pred[4 * 16];
    memcpy(pred, y, sizeof pred);
    pred[5] = -3;
    pt_dataset_score(d, y, pred, 4, 16, &c, &tot);
    EXPECT(tot == 64 && c == 63);
    pt_dataset_close(d);
}

static void test_task(const char *name, const char *prefix)
{
    pt_dataset *d, *d2, *other;
    EXPECT(pt_dataset_open(name, 11, &d) == PT_OK);
    EXPECT(pt_dataset_open(name, 11, &d2) == PT_OK);
    EXPECT(pt_dataset_open(name, 12, &other) == PT_OK);
    EXPECT(pt_dataset_is_task(d) && pt_dataset_vocab(d) == 256);
    enum { B = 8, T = 96 };
    int32_t x[B * T], y[B * T], x2[B * T], y2[B * T];
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 9, 16, B, T, x, y) == PT_OK);
    EXPECT(pt_dataset_batch(d2, PT_SPLIT_TRAIN, 9, 16, B, T, x2, y2) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0);
    EXPECT(pt_dataset_batch(other, PT_SPLIT_TRAIN, 9, 16, B, T, x2, y2) == PT_OK);
    EXPECT(memcmp(x, x2, sizeof x) != 0);
    /* sample k does not depend on the batch it is asked with */
    EXPECT(pt_dataset_batch(d, PT_SPLIT_TRAIN, 9, 19, 1, T, x2, y2) == PT_OK);
    EXPECT(memcmp(x + 3 * T, x2, T * sizeof(int32_t)) == 0 && memcmp(y + 3 * T, y2, T * sizeof(int32_t)) == 0);
    /* structure: rows start with a problem, targets are answer bytes ending in '\n' */
    int64_t n_targets = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *r = x + b * T, *t = y + b * T;
        EXPECT(memcmp(prefix, (char[]){ (char)r[0], (char)r[1], (char)r[2], (char)r[3] }, 4) == 0);
        for (int i = 0; i < T; i++) {
            EXPECT(r[i] >= 0 && r[i] < 256);
            if (t[i] >= 0) {
                n_targets++;
                EXPECT(i + 1 == T || r[i + 1] == t[i]);
                /* the first target of an answer sits on '=' */
                if (i == 0 || t[i - 1] < 0)
                    EXPECT(r[i] == '=');
                /* an answer ends with '\n' */
                if (i + 1 == T || t[i + 1] < 0)
                    EXPECT(t[i] == '\n');
            }
        }
    }
    EXPECT(n_targets > B * 10);
    /* exact match: perfect predictions score everything; one wrong byte costs one problem */
    int64_t c, tot;
    pt_dataset_score(d, y, y, B, T, &c, &tot);
    EXPECT(tot > B && c == tot);
    int32_t pred[B * T];
    memcpy(pred, y, sizeof pred);
    for (int i = 0; i < B * T; i++)
        if (y[i] >= 0) {
            pred[i] = 'z' + 1;
            break;
        }
    int64_t c2, tot2;
    pt_dataset_score(d, y, pred, B, T, &c2, &tot2);
    EXPECT(tot2 == tot && c2 == tot - 1);
    /* held out: no eval question appears in training rows (questions compared as whole lines) */
    enum { ROWS = 64 };
    static char train_q[ROWS * 16][32], eval_q[ROWS * 16][32];
    int n_train = 0, n_eval = 0;
    for (int split = 0; split < 2; split++)
        for (int s = 0; s < ROWS; s++) {
            EXPECT(pt_dataset_batch(d, split, s, 0, 1, T, x, y) == PT_OK);
            int start = 0;
            for (int i = 0; i < T; i++)
                if (x[i] == '=') {
                    char q[32];
                    int len = i - start < 31 ? i - start : 31;
                    for (int k = 0; k < len; k++)
                        q[k] = (char)x[start + k];
                    q[len] = 0;
                    if (split == 0 && n_train < ROWS * 16)
                        strcpy(train_q[n_train++], q);
                    if (split == 1 && n_eval < ROWS * 16)
                        strcpy(eval_q[n_eval++], q);
                } else if (x[i] == '\n') {
                    start = i + 1;
                }
        }
    EXPECT(n_train > ROWS && n_eval > ROWS);
    int overlap = 0;
    for (int i = 0; i < n_eval; i++)
        for (int j = 0; j < n_train; j++)
            overlap += strcmp(eval_q[i], train_q[j]) == 0;
    EXPECT(overlap == 0);
    EXPECT_FAIL(pt_dataset_batch(d, PT_SPLIT_TRAIN, 0, 0, 1, 8, x, y), PT_EINVAL, "--seq-len of at least");
    pt_dataset_close(d);
    pt_dataset_close(d2);
    pt_dataset_close(other);
}

static void test_schedule(void)
{
    /* warmup 10 to 1e-3, cosine to 1e-4 at step 110 */
    EXPECT(fabs(pt_lr_at(0, 10, 110, 1e-3, 1e-4) - 1e-4) < 1e-15);
    EXPECT(fabs(pt_lr_at(4, 10, 110, 1e-3, 1e-4) - 5e-4) < 1e-15);
    EXPECT(fabs(pt_lr_at(9, 10, 110, 1e-3, 1e-4) - 1e-3) < 1e-15);
    EXPECT(fabs(pt_lr_at(10, 10, 110, 1e-3, 1e-4) - 1e-3) < 1e-15);
    EXPECT(fabs(pt_lr_at(60, 10, 110, 1e-3, 1e-4) - 5.5e-4) < 1e-15);
    EXPECT(fabs(pt_lr_at(35, 10, 110, 1e-3, 1e-4) - (1e-4 + 0.45e-3 * (1 + cos(M_PI / 4)))) < 1e-15);
    EXPECT(fabs(pt_lr_at(110, 10, 110, 1e-3, 1e-4) - 1e-4) < 1e-15);
    EXPECT(fabs(pt_lr_at(500, 10, 110, 1e-3, 1e-4) - 1e-4) < 1e-15);
    EXPECT(pt_lr_at(0, 0, 100, 2e-3, 0) == 2e-3);
    for (int s = 10; s < 110; s++)
        EXPECT(pt_lr_at(s + 1, 10, 110, 1e-3, 1e-4) <= pt_lr_at(s, 10, 110, 1e-3, 1e-4));
    EXPECT(pt_clip_scale(0.5, 1.0f) == 1.0f);
    EXPECT(fabsf(pt_clip_scale(4.0, 1.0f) - (float)(1.0 / (4.0 + 1e-6))) == 0.0f);
    EXPECT(pt_clip_scale(1e9, 0.0f) == 1.0f && pt_clip_scale(1e9, -1.0f) == 1.0f);
}

static int check_prepared(const char *tok_path, const char *text_path)
{
    size_t n;
    unsigned char *text = slurp(text_path, &n);
    int32_t *tok = NULL;
    int64_t nt = 0;
    int vocab = 0;
    EXPECT(text != NULL);
    EXPECT(pt_token_file_read(tok_path, &tok, &nt, &vocab) == PT_OK);
    EXPECT(nt == (int64_t)n); /* byte tokens: one per input byte, no separator */
    for (size_t i = 0; tok && text && i < n && (int64_t)i < nt; i++)
        if (tok[i] != text[i]) {
            fprintf(stderr, "token %zu is %d, byte is %d\n", i, tok[i], text[i]);
            failures++;
            break;
        }
    free(tok);
    free(text);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "prepared") == 0)
        return check_prepared(argv[2], argv[3]);
    test_roundtrip();
    test_corrupt();
    test_text_dataset();
    test_task("builtin", "sort");
    test_task("builtin:add", "add:");
    pt_dataset *d = NULL;
    EXPECT_FAIL(pt_dataset_open("builtin:chess", 1, &d), PT_EINVAL, "builtin:sort");
    test_schedule();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
