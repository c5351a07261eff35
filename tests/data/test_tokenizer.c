/* data.tokenizer: the tokenizers of pipetrain/tokenizer.h. Round trips on random bytes (invalid
 * UTF-8 included) for every built-in tokenizer, ids checked against the reference encoders
 * (gpt-3-encoder, js-tiktoken; taken with node when this test was written), special tokens only
 * with the flag, malformed files refused with PT_EFORMAT naming the file, a tiny tokenizer.json
 * written here, and threads encoding at once. Files are written into the working directory. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/tokenizer.h"

static int g_fail;
#define CHECK(c)                                                                       \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", __FILE__, __LINE__, #c, \
                    pt_last_error());                                                  \
            g_fail = 1;                                                                \
        }                                                                              \
    } while (0)

static uint64_t g_rng = 0x1234567887654321ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Random text mixing ASCII words, whitespace runs, UTF-8 of every length, invalid bytes. */
static size_t random_text(unsigned char *buf, size_t cap)
{
    static const char *const frag[] = { "the", " quick", "'s", "'LL", " 12345", "\n\n", "\t", "  ", "\r\n", "<|endoftext|>",
                                        "é", "\xe4\xbd\xa0\xe5\xa5\xbd", "\xf0\x9f\x98\x80", "e\xcc\x81", "\xef\xbb\xbf",
                                        "\xc2\x85", "\xc2\xa0", "!!", "();", "<|", "|>" };
    size_t n = 0, want = rnd() % cap;
    while (n < want) {
        unsigned k = (unsigned)(rnd() % 8);
        if (k < 4) {
            const char *f = frag[rnd() % (sizeof frag / sizeof *frag)];
            size_t l = strlen(f);
            if (n + l > cap)
                break;
            memcpy(buf + n, f, l);
            n += l;
        } else if (k < 6) {
            buf[n++] = (unsigned char)(rnd() & 0xFF); /* any byte: often invalid UTF-8 */
        } else if (k == 6) {
            size_t run = rnd() % 40;
            for (size_t i = 0; i < run && n < cap; i++)
                buf[n++] = " \n\t"[rnd() % 3];
        } else {
            buf[n++] = (unsigned char)('a' + rnd() % 26);
        }
    }
    return n;
}

static int roundtrip(pt_tokenizer *t, const void *text, size_t len, int flags)
{
    pt_tok_ids ids = { 0 };
    if (pt_tokenizer_encode(t, text, len, flags, &ids) != PT_OK)
        return 0;
    int ok = 1;
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= pt_tokenizer_vocab_size(t))
            ok = 0;
    char *back = NULL;
    size_t n = 0;
    if (ok && pt_tokenizer_decode(t, ids.ids, ids.n, &back, &n) != PT_OK)
        ok = 0;
    if (ok && (n != len || memcmp(back, text, len) != 0)) {
        fprintf(stderr, "round trip differs for %s (%zu bytes in, %zu out)\n", pt_tokenizer_name(t), len, n);
        ok = 0;
    }
    free(back);
    free(ids.ids);
    return ok;
}

/* Encodes and compares with the expected ids. */
static int encodes_as(pt_tokenizer *t, const char *text, int flags, const int32_t *want, size_t n_want)
{
    pt_tok_ids ids = { 0 };
    pt_status st = pt_tokenizer_encode(t, text, strlen(text), flags, &ids);
    int ok = st == PT_OK && ids.n == n_want && memcmp(ids.ids, want, n_want * sizeof *want) == 0;
    if (!ok) {
        fprintf(stderr, "%s: \"%s\" gave", pt_tokenizer_name(t), text);
        for (size_t i = 0; i < ids.n; i++)
            fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids.ids);
    return ok;
}
#define ENCODES_AS(t, text, flags, ...)                                                       \
    do {                                                                                      \
        static const int32_t want_[] = { __VA_ARGS__ };                                       \
        CHECK(encodes_as((t), (text), (flags), want_, sizeof want_ / sizeof *want_));         \
    } while (0)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* Opening must fail with PT_EFORMAT and a message naming `name` (and `also`, when given). */
static void refused(const char *path, const char *name, const char *also)
{
    pt_tokenizer *t = NULL;
    pt_status st = pt_tokenizer_open(path, &t);
    const char *msg = pt_last_error();
    int ok = st == PT_EFORMAT && t == NULL && strstr(msg, name) && (!also || strstr(msg, also));
    if (!ok)
        fprintf(stderr, "opening %s: status %d, message \"%s\" (wanted PT_EFORMAT naming %s%s%s)\n", path, (int)st,
                msg, name, also ? " and " : "", also ? also : "");
    CHECK(ok);
    pt_tokenizer_close(t);
}

static void test_builtin_ids(void)
{
    pt_tokenizer *g = NULL, *c = NULL, *o = NULL, *b = NULL;
    CHECK(pt_tokenizer_open("gpt2", &g) == PT_OK);
    CHECK(pt_tokenizer_open("cl100k", &c) == PT_OK);
    CHECK(pt_tokenizer_open("o200k", &o) == PT_OK);
    CHECK(pt_tokenizer_open("byte", &b) == PT_OK);
    if (!g || !c || !o || !b)
        exit(1);
    CHECK(pt_tokenizer_vocab_size(g) == 50257 && pt_tokenizer_eot(g) == 50256);
    CHECK(pt_tokenizer_vocab_size(c) == 100277 && pt_tokenizer_eot(c) == 100257);
    CHECK(pt_tokenizer_vocab_size(o) == 200019 && pt_tokenizer_eot(o) == 199999);
    CHECK(pt_tokenizer_vocab_size(b) == 256 && pt_tokenizer_eot(b) == -1);
    CHECK(strcmp(pt_tokenizer_name(g), "gpt2") == 0 && strcmp(pt_tokenizer_name(b), "byte") == 0);
    CHECK(pt_tokenizer_special_id(c, "<|endofprompt|>") == 100276 && pt_tokenizer_special_id(c, "hello") == -1);
    CHECK(pt_tokenizer_special_id(o, "<|endofprompt|>") == 200018);
    CHECK(pt_tokenizer_fingerprint(g) != pt_tokenizer_fingerprint(c) &&
          pt_tokenizer_fingerprint(c) != pt_tokenizer_fingerprint(o));

    /* from gpt-3-encoder 1.1.4 and js-tiktoken 1.0.21 */
    ENCODES_AS(g, "Hello world", 0, 15496, 995);
    ENCODES_AS(c, "Hello world", 0, 9906, 1917);
    ENCODES_AS(o, "Hello world", 0, 13225, 2375);
    const char *s1 = "I'm here, aren't you? 12345678";
    ENCODES_AS(g, s1, 0, 40, 1101, 994, 11, 3588, 470, 345, 30, 17031, 2231, 30924);
    ENCODES_AS(c, s1, 0, 40, 2846, 1618, 11, 7784, 956, 499, 30, 220, 4513, 10961, 2495);
    ENCODES_AS(o, s1, 0, 15390, 2105, 11, 23236, 481, 30, 220, 7633, 19354, 4388);
    const char *s2 = "  indented\n\n\tcode();  ";
    ENCODES_AS(g, s2, 0, 220, 773, 4714, 628, 197, 8189, 9783, 220, 220);
    ENCODES_AS(c, s2, 0, 220, 1280, 16243, 271, 44443, 2178, 256);
    ENCODES_AS(o, s2, 0, 220, 1383, 23537, 279, 86873, 4177, 256);
    const char *s3 = "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 e\xcc\x81";
    ENCODES_AS(g, s3, 0, 19526, 254, 25001, 121, 171, 120, 234, 10310, 244, 45911, 234, 30325, 222, 304, 136, 223);
    ENCODES_AS(c, s3, 0, 57668, 53901, 3922, 3574, 244, 98220, 91416, 384, 54939);
    ENCODES_AS(o, s3, 0, 177519, 979, 28428, 88038, 319, 13430);
    ENCODES_AS(g, "HTTPServer's URLs", 0, 6535, 28820, 18497, 338, 32336);
    ENCODES_AS(c, "HTTPServer's URLs", 0, 9412, 5592, 596, 36106);
    ENCODES_AS(o, "HTTPServer's URLs", 0, 17893, 6444, 885, 67852);
    ENCODES_AS(b, "Hi\xff", 0, 72, 105, 255);

    /* special tokens: only with the flag; otherwise their text is text */
    ENCODES_AS(g, "a<|endoftext|>b", PT_TOK_ALLOW_SPECIAL, 64, 50256, 65);
    ENCODES_AS(g, "a<|endoftext|>b", 0, 64, 27, 91, 437, 1659, 5239, 91, 29, 65);
    ENCODES_AS(c, "a<|endoftext|>b", PT_TOK_ALLOW_SPECIAL, 64, 100257, 65);
    ENCODES_AS(c, "<|fim_prefix|><|endofprompt|>", PT_TOK_ALLOW_SPECIAL, 100258, 100276);
    ENCODES_AS(o, "x<|endoftext|>", PT_TOK_ALLOW_SPECIAL, 87, 199999);
    ENCODES_AS(b, "<|endoftext|>", PT_TOK_ALLOW_SPECIAL, 60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124, 62);

    /* decode: tokens and an id outside the vocabulary */
    size_t l = 0;
    const char *tok = pt_tokenizer_token(g, 995, &l);
    CHECK(tok && l == 6 && memcmp(tok, " world", 6) == 0);
    CHECK(pt_tokenizer_token(g, 50257, &l) == NULL && pt_tokenizer_token(g, -1, &l) == NULL);
    CHECK(pt_tokenizer_token(c, 100256, &l) == NULL); /* a hole in cl100k */
    int32_t bad[] = { 15496, 50257 };
    char *txt = NULL;
    size_t n = 0;
    CHECK(pt_tokenizer_decode(g, bad, 2, &txt, &n) == PT_EINVAL && strstr(pt_last_error(), "50257"));
    int32_t eot = 50256;
    CHECK(pt_tokenizer_decode(g, &eot, 1, &txt, &n) == PT_OK && n == 13 && strcmp(txt, "<|endoftext|>") == 0);
    free(txt);

    /* round trips: random bytes (invalid UTF-8), with and without special tokens */
    pt_tokenizer *all[] = { b, g, c, o };
    static unsigned char buf[4096];
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 150; i++) {
            size_t len = random_text(buf, sizeof buf);
            CHECK(roundtrip(all[k], buf, len, i & 1 ? PT_TOK_ALLOW_SPECIAL : 0));
        }
    /* every single byte, and all bytes in a row */
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 256; i++) {
            unsigned char x = (unsigned char)i;
            CHECK(roundtrip(all[k], &x, 1, 0));
            buf[i] = x;
        }
        CHECK(roundtrip(all[k], buf, 256, 0));
        CHECK(roundtrip(all[k], "", 0, 0));
    }
    /* a long whitespace run and a long line of one "word" (heap merge path, JIT stack) */
    size_t big = 1 << 20;
    char *w = malloc(big);
    memset(w, ' ', big);
    w[big - 1] = 'x';
    for (int k = 1; k < 4; k++)
        CHECK(roundtrip(all[k], w, big, 0));
    for (size_t i = 0; i < big; i++)
        w[i] = (char)('a' + (i * 7 + i / 13) % 26);
    for (int k = 1; k < 4; k++)
        CHECK(roundtrip(all[k], w, 200000, 0));
    free(w);
    for (int k = 0; k < 4; k++)
        pt_tokenizer_close(all[k]);
}

/* Threads sharing one tokenizer give the ids one thread gives. */
typedef struct {
    pt_tokenizer *t;
    const unsigned char *text;
    size_t len;
    pt_tok_ids ids;
    pt_status st;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->st = PT_OK;
    for (int r = 0; r < 3 && j->st == PT_OK; r++) {
        j->ids.n = 0;
        j->st = pt_tokenizer_encode(j->t, (const char *)j->text, j->len, 0, &j->ids);
    }
    return NULL;
}

static void test_threads(void)
{
    pt_tokenizer *t = NULL;
    CHECK(pt_tokenizer_open("cl100k", &t) == PT_OK);
    if (!t)
        return;
    size_t len = 200000;
    unsigned char *text = malloc(len);
    size_t n = 0;
    while (n < len)
        n += random_text(text + n, len - n < 512 ? len - n : 512);
    job one = { t, text, len, { 0 }, PT_OK };
    run_job(&one);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){ t, text, len, { 0 }, PT_OK };
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == PT_OK && jobs[i].ids.n == one.ids.n &&
              memcmp(jobs[i].ids.ids, one.ids.ids, one.ids.n * sizeof(int32_t)) == 0);
        free(jobs[i].ids.ids);
    }
    free(one.ids.ids);
    free(text);
    pt_tokenizer_close(t);
}

/* A GPT-2-format vocabulary of the 256 bytes plus `extra` (JSON members), merges `merges`. */
static void write_gpt2(const char *dir, const char *extra, const char *merges)
{
    char path[256];
    snprintf(path, sizeof path, "mkdir -p %s", dir);
    if (system(path) != 0)
        exit(1);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    FILE *f = fopen(path, "wb");
    fputs("{", f);
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        static int n;
        if (b == 0)
            n = 0;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)n++;
        if (cp == '"' || cp == '\\')
            fprintf(f, "\"\\%c\": %d,", (char)cp, b);
        else
            fprintf(f, "\"\\u%04x\": %d,", cp, b);
    }
    fprintf(f, "%s}", extra);
    fclose(f);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    write_file(path, merges);
}

static void test_small_files(void)
{
    /* a valid tiny GPT-2 vocabulary: "ab" (256), "abc" (257), ranks by merge order */
    write_gpt2("tiny", "\"ab\": 256, \"abc\": 257, \"bc\": 258", "#version: 0.2\nb c\na b\nab c\n");
    pt_tokenizer *t = NULL;
    CHECK(pt_tokenizer_open("tiny/encoder.json", &t) == PT_OK);
    if (t) {
        CHECK(pt_tokenizer_vocab_size(t) == 259 && pt_tokenizer_eot(t) == -1);
        ENCODES_AS(t, "abc", 0, 97, 258); /* "b c" has the lowest rank: a + bc; "abc" is unreachable */
        ENCODES_AS(t, "ab", 0, 256);
        ENCODES_AS(t, "ab abc", 0, 256, 32, 97, 258);
        pt_tokenizer_close(t);
    }
    CHECK(pt_tokenizer_open("tiny", &t) == PT_OK); /* the folder */
    pt_tokenizer_close(t);

    /* malformed GPT-2 files */
    write_gpt2("bad1", "\"ab\": 256", "#version: 0.2\na b\nab\n");
    refused("bad1/encoder.json", "bad1/vocab.bpe", "line 3");
    write_gpt2("bad2", "\"ab\": 256", "#version: 0.2\na b\nx y\n");
    refused("bad2/encoder.json", "bad2/vocab.bpe", "line 3");
    write_gpt2("bad3", "\"ab\": 256, \"cd\": 256", "a b\n");
    refused("bad3/encoder.json", "bad3/encoder.json", "twice");
    write_gpt2("bad4", "\"ab\": \"x\"", "a b\n");
    refused("bad4/encoder.json", "bad4/encoder.json", "\"ab\"");
    write_gpt2("bad5", "\"a b\": 256", "a b\n"); /* a space is not in the byte alphabet */
    refused("bad5/encoder.json", "bad5/encoder.json", "alphabet");
    write_gpt2("bad6", "\"ab\": 256,", "a b\n"); /* not JSON */
    refused("bad6/encoder.json", "bad6/encoder.json", NULL);
    write_file("bad7.json", "[1, 2, 3]");
    write_file("vocab.bpe", "a b\n");
    refused("bad7.json", "bad7.json", NULL);

    /* tiktoken rank files */
    write_file("tiny.tiktoken", "");
    refused("tiny.tiktoken", "tiny.tiktoken", "empty");
    {
        FILE *f = fopen("ok.tiktoken", "wb");
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int b = 0; b < 256; b++)
            fprintf(f, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
        fprintf(f, "YWI= 256\n"); /* "ab" */
        fclose(f);
        CHECK(pt_tokenizer_open("ok.tiktoken", &t) == PT_OK);
        if (t) {
            ENCODES_AS(t, "abab", 0, 256, 256);
            CHECK(pt_tokenizer_vocab_size(t) == 257 && pt_tokenizer_eot(t) == -1);
            pt_tokenizer_close(t);
        }
    }
    write_file("bad1.tiktoken", "IQ== 0\nIg==\n");
    refused("bad1.tiktoken", "bad1.tiktoken", "line 2");
    write_file("bad2.tiktoken", "IQ== 0\n!!!! 1\n");
    refused("bad2.tiktoken", "bad2.tiktoken", "line 2");
    write_file("bad3.tiktoken", "IQ== 0\nIg== x1\n");
    refused("bad3.tiktoken", "bad3.tiktoken", "line 2");
    write_file("bad4.tiktoken", "IQ== 0\nIQ== 1\n");
    refused("bad4.tiktoken", "bad4.tiktoken", "twice");
    write_file("bad5.tiktoken", "IQ== 0\nIg== 1\n"); /* most bytes missing */
    refused("bad5.tiktoken", "bad5.tiktoken", "byte 0x00");

    /* unknown names and missing files */
    CHECK(pt_tokenizer_open("gpt5", &t) == PT_EINVAL && strstr(pt_last_error(), "gpt2") && t == NULL);
    CHECK(pt_tokenizer_open("nofolder/encoder.json", &t) == PT_EINVAL && t == NULL);
}

/* A tokenizer.json: the 256 byte tokens (GPT-2's alphabet) plus `vocab` members, `merges`,
 * `added` and `pre` (JSON texts). */
static void write_hf(const char *path, const char *model_type, const char *vocab, const char *merges, const char *added,
                     const char *pre, const char *normalizer)
{
    FILE *f = fopen(path, "wb");
    fprintf(f, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [%s],\n"
               "\"normalizer\": %s, \"pre_tokenizer\": %s, \"post_processor\": null,\n"
               "\"decoder\": {\"type\": \"ByteLevel\"},\n"
               "\"model\": {\"type\": \"%s\", \"dropout\": null, \"unk_token\": null, \"fuse_unk\": false,\n"
               "\"byte_fallback\": false, \"vocab\": {",
            added, normalizer, pre, model_type);
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)n++;
        if (cp == '"' || cp == '\\')
            fprintf(f, "\"\\%c\": %d, ", (char)cp, b);
        else
            fprintf(f, "\"\\u%04x\": %d, ", cp, b);
    }
    fprintf(f, "%s}, \"merges\": [%s]}}\n", vocab, merges);
    fclose(f);
}

static void test_hf(void)
{
    static const char *const bytelevel = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": "
                                         "true, \"use_regex\": true}";
    /* "\u0120" is GPT-2's alphabet for the space byte */
    write_hf("hf_tiny.json", "BPE", "\"ab\": 256, \"abc\": 257, \"\\u0120ab\": 258",
             "\"a b\", [\"ab\", \"c\"], \"\\u0120 ab\"", "{\"id\": 259, \"content\": \"<|end|>\", \"special\": true}",
             bytelevel, "null");
    pt_tokenizer *t = NULL;
    CHECK(pt_tokenizer_open("hf_tiny.json", &t) == PT_OK);
    if (t) {
        CHECK(pt_tokenizer_vocab_size(t) == 260 && pt_tokenizer_special_id(t, "<|end|>") == 259);
        ENCODES_AS(t, "abc ab", 0, 257, 258);
        ENCODES_AS(t, "abc abc", 0, 257, 32, 257);
        ENCODES_AS(t, "ab<|end|>", PT_TOK_ALLOW_SPECIAL, 256, 259);
        ENCODES_AS(t, "ab<|end|>", 0, 256, 60, 124, 101, 110, 100, 124, 62);
        CHECK(roundtrip(t, "x\xff\xfe <|end|> abcabc", sizeof "x\xff\xfe <|end|> abcabc" - 1, PT_TOK_ALLOW_SPECIAL));
        pt_tokenizer_close(t);
    }
    /* Llama 3 / Qwen2 style: Sequence of Split (Isolated) and ByteLevel without its regex */
    write_hf("hf_seq.json", "BPE", "\"ab\": 256", "\"a b\"", "{\"id\": 300, \"content\": \"<|end_of_text|>\", \"special\": true}",
             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[0-9]\"}, "
             "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
             "\"use_regex\": false}]}",
             "null");
    CHECK(pt_tokenizer_open("hf_seq.json", &t) == PT_OK);
    if (t) {
        ENCODES_AS(t, "a1b ab", 0, 97, 49, 98, 32, 256); /* " ab" is one piece: b a space, then ab */
        ENCODES_AS(t, "ab2ab", 0, 256, 50, 256);
        CHECK(pt_tokenizer_eot(t) == 300 && pt_tokenizer_vocab_size(t) == 301);
        pt_tokenizer_close(t);
    }
    /* Split by a literal String */
    write_hf("hf_str.json", "BPE", "\"ab\": 256", "\"a b\"", "",
             "{\"type\": \"Split\", \"pattern\": {\"String\": \"a.\"}, \"behavior\": \"Isolated\"}", "null");
    CHECK(pt_tokenizer_open("hf_str.json", &t) == PT_OK);
    if (t) {
        ENCODES_AS(t, "aba.b", 0, 256, 97, 46, 98); /* "ab" "a." "b": the dot is literal */
        pt_tokenizer_close(t);
    }
    /* an NFC normalizer (Qwen2): text is composed before pre-tokenization, special tokens are not */
    write_hf("hf_nfc.json", "BPE", "\"ab\": 256", "\"a b\"", "{\"id\": 257, \"content\": \"<e\\u0301>\", \"special\": true}",
             "null", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}");
    CHECK(pt_tokenizer_open("hf_nfc.json", &t) == PT_OK);
    if (t) {
        ENCODES_AS(t, "e\xcc\x81", 0, 0xC3, 0xA9);                            /* e + U+0301 -> U+00E9 */
        ENCODES_AS(t, "\xe1\x84\x80\xe1\x85\xa1", 0, 0xEA, 0xB0, 0x80);      /* U+1100 U+1161 -> U+AC00 */
        ENCODES_AS(t, "a\xcc\xa3\xcc\x87", 0, 0xE1, 0xBA, 0xA1, 0xCC, 0x87); /* ordering, then a + dot below */
        ENCODES_AS(t, "e\xff\xcc\x81", 0, 0x65, 0xFF, 0xCC, 0x81);           /* an invalid byte blocks it */
        ENCODES_AS(t, "ab<e\xcc\x81>e\xcc\x81", PT_TOK_ALLOW_SPECIAL, 256, 257, 0xC3, 0xA9);
        ENCODES_AS(t, "\xe2\x84\xab", 0, 0xC3, 0x85);                         /* U+212B ANGSTROM -> U+00C5 */
        pt_tokenizer_close(t);
    }
    /* refusals, each naming the file and the key */
    write_hf("hf_bad1.json", "WordPiece", "\"ab\": 256", "", "", bytelevel, "null");
    refused("hf_bad1.json", "hf_bad1.json", "WordPiece");
    write_hf("hf_bad2.json", "BPE", "\"ab\": 256", "", "", "{\"type\": \"Whitespace\"}", "null");
    refused("hf_bad2.json", "hf_bad2.json", "Whitespace");
    write_hf("hf_bad3.json", "BPE", "\"ab\": 256", "\"a b\", \"a\"", "", bytelevel, "null");
    refused("hf_bad3.json", "hf_bad3.json", "model.merges[1]");
    write_hf("hf_bad4.json", "BPE", "\"ab\": 256", "\"a c\"", "", bytelevel, "null");
    refused("hf_bad4.json", "hf_bad4.json", "model.merges[0]");
    write_hf("hf_bad5.json", "BPE", "\"ab\": 256", "", "", bytelevel, "{\"type\": \"NFKC\"}");
    refused("hf_bad5.json", "hf_bad5.json", "NFKC");
    write_hf("hf_bad6.json", "BPE", "\"ab\": 256", "", "",
             "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}", "null");
    refused("hf_bad6.json", "hf_bad6.json", "pattern");
    write_hf("hf_bad7.json", "BPE", "\"ab\": 256", "", "",
             "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x\"}, \"behavior\": \"Removed\"}", "null");
    refused("hf_bad7.json", "hf_bad7.json", "Removed");
    write_hf("hf_bad8.json", "BPE", "\"ab\": 256", "", "{\"id\": 256, \"content\": \"<x>\", \"special\": true}",
             bytelevel, "null");
    refused("hf_bad8.json", "hf_bad8.json", "added_tokens[0]");
    write_file("hf_bad9.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [}}");
    refused("hf_bad9.json", "hf_bad9.json", NULL);
}

/* A rank file of 128000 ranks is Llama 3's tokenizer.model: its 256 special tokens come with it. */
static void test_llama3_ranks(void)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (system("mkdir -p llama3") != 0)
        exit(1);
    FILE *f = fopen("llama3/tokenizer.model", "wb");
    for (int r = 0; r < 128000; r++) {
        unsigned char t[3];
        int n;
        if (r < 256) {
            t[0] = (unsigned char)r;
            n = 1;
        } else if (r < 256 + 65536) {
            t[0] = (unsigned char)((r - 256) >> 8);
            t[1] = (unsigned char)(r - 256);
            n = 2;
        } else {
            t[0] = 'z';
            t[1] = (unsigned char)((r - 65792) >> 8);
            t[2] = (unsigned char)(r - 65792);
            n = 3;
        }
        uint32_t v = (uint32_t)t[0] << 16 | (n > 1 ? (uint32_t)t[1] << 8 : 0) | (n > 2 ? t[2] : 0);
        char out[5] = { b64[v >> 18], b64[(v >> 12) & 63], n > 1 ? b64[(v >> 6) & 63] : '=', n > 2 ? b64[v & 63] : '=', 0 };
        fprintf(f, "%s %d\n", out, r);
    }
    fclose(f);
    pt_tokenizer *t = NULL;
    CHECK(pt_tokenizer_open("llama3", &t) == PT_OK);
    if (!t)
        return;
    CHECK(pt_tokenizer_vocab_size(t) == 128256 && pt_tokenizer_eot(t) == 128001);
    CHECK(pt_tokenizer_special_id(t, "<|begin_of_text|>") == 128000);
    CHECK(pt_tokenizer_special_id(t, "<|eot_id|>") == 128009);
    CHECK(pt_tokenizer_special_id(t, "<|reserved_special_token_2|>") == 128011);
    CHECK(pt_tokenizer_special_id(t, "<|reserved_special_token_246|>") == 128255);
    ENCODES_AS(t, "<|begin_of_text|>ab", PT_TOK_ALLOW_SPECIAL, 128000, 256 + ('a' << 8 | 'b'));
    CHECK(roundtrip(t, "<|eot_id|> x\xff<|end_of_text|>", sizeof "<|eot_id|> x\xff<|end_of_text|>" - 1, PT_TOK_ALLOW_SPECIAL));
    pt_tokenizer_close(t);
}

/* The built-in GPT-2 files rewritten as a tokenizer.json (vocab = encoder.json, merges from vocab.bpe
 * as ["a", "b"] arrays, ByteLevel) must encode like "gpt2" (text without U+0085 / U+FEFF, where the
 * built-in pattern's JavaScript \s differs from PCRE2's). */
static void test_hf_gpt2(void)
{
    const char *dir = getenv("PT_TOKENIZER_DIR");
    char enc[1024], bpe[1024];
    snprintf(enc, sizeof enc, "%s/gpt2/encoder.json", dir && *dir ? dir : PT_TEST_VOCAB_DIR);
    snprintf(bpe, sizeof bpe, "%s/gpt2/vocab.bpe", dir && *dir ? dir : PT_TEST_VOCAB_DIR);
    FILE *fe = fopen(enc, "rb"), *fb = fopen(bpe, "rb"), *out = fopen("hf_gpt2.json", "wb");
    CHECK(fe && fb && out);
    if (!fe || !fb || !out)
        return;
    fputs("{\"added_tokens\": [{\"id\": 50256, \"content\": \"<|endoftext|>\", \"special\": true}], \"normalizer\": "
          "null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}, "
          "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": ",
          out);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fe)) > 0)
        fwrite(buf, 1, n, out);
    fputs(", \"merges\": [", out);
    int first = 1, line = 0;
    while (fgets(buf, sizeof buf, fb)) {
        if (line++ == 0 && buf[0] == '#')
            continue;
        buf[strcspn(buf, "\r\n")] = '\0';
        char *sp = strchr(buf, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        fprintf(out, "%s[\"", first ? "" : ",");
        for (char *c = buf; *c; c++)
            fprintf(out, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
        fputs("\",\"", out);
        for (char *c = sp + 1; *c; c++)
            fprintf(out, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
        fputs("\"]", out);
        first = 0;
    }
    fputs("]}}\n", out);
    fclose(fe);
    fclose(fb);
    fclose(out);
    pt_tokenizer *h = NULL, *g = NULL;
    CHECK(pt_tokenizer_open("hf_gpt2.json", &h) == PT_OK);
    CHECK(pt_tokenizer_open("gpt2", &g) == PT_OK);
    if (!h || !g) {
        pt_tokenizer_close(h);
        pt_tokenizer_close(g);
        return;
    }
    CHECK(pt_tokenizer_vocab_size(h) == 50257 && pt_tokenizer_eot(h) == 50256);
    static unsigned char text[1 << 16];
    size_t len = 0;
    while (len + 600 < sizeof text) {
        size_t k = random_text(text + len, 512);
        for (size_t i = 0; i < k; i++) /* keep out U+0085 (C2 85) and U+FEFF (EF BB BF) */
            if (text[len + i] == 0x85 || text[len + i] == 0xBB)
                text[len + i] = 'x';
        len += k;
    }
    for (int flags = 0; flags <= PT_TOK_ALLOW_SPECIAL; flags += PT_TOK_ALLOW_SPECIAL) {
        pt_tok_ids a = { 0 }, b = { 0 };
        CHECK(pt_tokenizer_encode(h, (const char *)text, len, flags, &a) == PT_OK);
        CHECK(pt_tokenizer_encode(g, (const char *)text, len, flags, &b) == PT_OK);
        CHECK(a.n == b.n && a.n > 0 && memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0);
        free(a.ids);
        free(b.ids);
    }
    ENCODES_AS(h, "Hello world", 0, 15496, 995);
    pt_tokenizer_close(h);
    pt_tokenizer_close(g);
}

int main(void)
{
    test_builtin_ids();
    test_threads();
    test_small_files();
    test_hf();
    test_llama3_ranks();
    test_hf_gpt2();
    if (g_fail) {
        fprintf(stderr, "data.tokenizer: FAILED\n");
        return 1;
    }
    printf("data.tokenizer: ok\n");
    return 0;
}
