/* `pipetrain bench tokenize`: encode speed of the byte-level BPE tokenizers, per core and on every core.
 *
 * The corpus is bench/tokenize_corpus.h's (the same bytes as bench/tokenize_corpus.mjs, which feeds
 * the reference encoders in bench/tokenize_ref.mjs): documents of 1..32 KiB of generated text
 * (English-like words and made-up words, punctuation, numbers, contractions, whitespace runs, code,
 * CJK, emoji, combining marks, "<|endoftext|>" as plain text) until --mb MiB. Each document is
 * encoded alone (special tokens not recognised), as `prepare` does. One thread encodes them all in
 * order; N threads each take a contiguous chunk of documents (about equal bytes) and encode it into
 * their own id array. The ids of every run are hashed in document order (FNV-1a of little-endian
 * int32, as tokenize_ref.mjs does) and must equal the one-thread run's.
 *
 * MB here is 2^20 bytes (MiB), in --mb and in mb_per_s. Time is wall time of the encode calls only
 * (the tokenizer is opened and warmed up on one document first; its open time is reported apart);
 * mb_per_cpu_s divides by the encoding threads' CPU time instead, which holds up on a busy machine.
 * --reps R keeps the fastest of R runs. --input FILE benchmarks a file instead (documents separated
 * by NUL, the format --corpus-out writes), e.g. real text gathered by bench/tokenize.sh.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/tokenizer.h"
#include "tokenize_corpus.h"

typedef struct {
    const pt_tokenizer *tok;
    const char *text;
    const size_t *off; /* document i: [off[i], off[i+1] - 1) (a NUL follows each) */
    size_t d0, d1;     /* this worker's documents */
    pt_tok_ids ids;
    double cpu_s; /* this worker's CPU time in its last run */
    pt_status st;
    char err[256];
} bench_work;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *encode_docs(void *arg)
{
    bench_work *w = arg;
    double c0 = thread_cpu_s();
    w->ids.n = 0;
    w->st = PT_OK;
    for (size_t d = w->d0; d < w->d1 && w->st == PT_OK; d++)
        w->st = pt_tokenizer_encode(w->tok, w->text + w->off[d], w->off[d + 1] - 1 - w->off[d], 0, &w->ids);
    if (w->st != PT_OK)
        snprintf(w->err, sizeof w->err, "%s", pt_last_error());
    w->cpu_s = thread_cpu_s() - c0;
    return NULL;
}

/* Splits n_docs documents into k contiguous chunks of about equal bytes: chunk i is [cut[i], cut[i+1]). */
static void split_docs(const size_t *off, size_t n_docs, int k, size_t *cut)
{
    size_t total = off[n_docs];
    size_t d = 0;
    cut[0] = 0;
    for (int i = 1; i < k; i++) {
        size_t want = total / (size_t)k * (size_t)i;
        while (d < n_docs && off[d] < want)
            d++;
        cut[i] = d;
    }
    cut[k] = n_docs;
}

/* One timed run on k threads (k >= 1; k == 1 runs on the calling thread). */
static pt_status run_once(bench_work *w, int k, double *seconds, double *cpu_seconds)
{
    pthread_t th[256];
    int64_t t0 = pt_now_ns();
    if (k == 1)
        encode_docs(&w[0]);
    else {
        int started = 0;
        for (; started < k; started++)
            if (pthread_create(&th[started], NULL, encode_docs, &w[started]) != 0)
                break;
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (started < k)
            return pt_fail(PT_EIO, "cannot start %d encoding threads (started %d); try fewer --threads", k, started);
    }
    *seconds = pt_seconds_between(t0, pt_now_ns());
    *cpu_seconds = 0;
    for (int i = 0; i < k; i++)
        *cpu_seconds += w[i].cpu_s;
    for (int i = 0; i < k; i++)
        if (w[i].st != PT_OK)
            return pt_fail(w[i].st, "encoding thread %d: %s", i, w[i].err);
    return PT_OK;
}

static void emit(int json, const char *tok_name, int threads, size_t bytes, size_t docs, size_t tokens, double s,
                 double cpu_s, uint64_t fnv, int same, double open_ms, int vocab)
{
    double mbs = (double)bytes / 1048576.0 / s;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "bench", "tokenize");
        cJSON_AddStringToObject(o, "impl", "pipetrain");
        cJSON_AddStringToObject(o, "tokenizer", tok_name);
        cJSON_AddNumberToObject(o, "vocab", vocab);
        cJSON_AddNumberToObject(o, "threads", threads);
        cJSON_AddNumberToObject(o, "bytes", (double)bytes);
        cJSON_AddNumberToObject(o, "docs", (double)docs);
        cJSON_AddNumberToObject(o, "tokens", (double)tokens);
        cJSON_AddNumberToObject(o, "ms", s * 1e3);
        cJSON_AddNumberToObject(o, "mb_per_s", mbs);
        cJSON_AddNumberToObject(o, "mb_per_s_per_thread", mbs / threads);
        cJSON_AddNumberToObject(o, "tokens_per_s", (double)tokens / s);
        cJSON_AddNumberToObject(o, "cpu_ms", cpu_s * 1e3);
        cJSON_AddNumberToObject(o, "mb_per_cpu_s", (double)bytes / 1048576.0 / cpu_s);
        cJSON_AddStringToObject(o, "ids_fnv1a64", hex);
        cJSON_AddBoolToObject(o, "same_as_1_thread", same);
        cJSON_AddNumberToObject(o, "open_ms", open_ms);
        char *line = cJSON_PrintUnformatted(o);
        if (line)
            printf("%s\n", line);
        free(line);
        cJSON_Delete(o);
    }
    else
        printf("%-7s %3d %10zu %9.1f %8.2f %8.2f %9.2f %16s %s\n", tok_name, threads, tokens, s * 1e3, mbs,
               mbs / threads, (double)bytes / 1048576.0 / cpu_s, hex, same ? "yes" : "NO");
    fflush(stdout);
}

static pt_status bench_tokenizer(const char *name, int json, const int *thread_list, int n_thr, int repeat,
                                 const tc_buf *corpus, const size_t *off, size_t n_docs)
{
    pt_tokenizer *tok;
    int64_t t0 = pt_now_ns();
    PT_CHECK(pt_tokenizer_open(name, &tok));
    double open_ms = pt_seconds_between(t0, pt_now_ns()) * 1e3;
    size_t bytes = off[n_docs] - n_docs; /* without the NULs */
    int max_k = 1;
    for (int i = 0; i < n_thr; i++)
        max_k = thread_list[i] > max_k ? thread_list[i] : max_k;
    bench_work *w = calloc((size_t)max_k, sizeof *w);
    size_t *cut = malloc(((size_t)max_k + 1) * sizeof *cut);
    pt_status st = PT_OK;
    if (!w || !cut) {
        st = pt_fail(PT_ENOMEM, "out of memory for %d benchmark threads", max_k);
        goto done;
    }
    /* room for every id up front (bytes/2 is above the ids of any of the three vocabularies' text),
     * so growing the arrays is not timed */
    for (int i = 0; i < max_k; i++) {
        w[i].tok = tok;
        w[i].text = corpus->p;
        w[i].off = off;
        w[i].ids.cap = bytes / 2 / (size_t)(i == 0 ? 1 : max_k) + 1024;
        w[i].ids.ids = malloc(w[i].ids.cap * sizeof(int32_t));
        if (!w[i].ids.ids) {
            st = pt_fail(PT_ENOMEM, "out of memory for %zu benchmark ids", w[i].ids.cap);
            goto done;
        }
    }
    /* warm-up: one document per worker (per-thread scratch, page faults of the id arrays' first pages) */
    w[0].d0 = 0;
    w[0].d1 = n_docs ? 1 : 0;
    encode_docs(&w[0]);
    if ((st = w[0].st) != PT_OK) {
        st = pt_fail(st, "%s: %s", name, w[0].err);
        goto done;
    }
    uint64_t fnv1 = 0;
    for (int t = 0; t < n_thr && st == PT_OK; t++) {
        int k = thread_list[t];
        split_docs(off, n_docs, k, cut);
        for (int i = 0; i < k; i++) {
            w[i].d0 = cut[i];
            w[i].d1 = cut[i + 1];
        }
        double best = 0, best_cpu = 0;
        for (int r = 0; r < repeat && st == PT_OK; r++) {
            double s = 0, c = 0;
            st = run_once(w, k, &s, &c);
            if (st == PT_OK && (r == 0 || s < best)) {
                best = s;
                best_cpu = c;
            }
        }
        if (st != PT_OK)
            break;
        uint64_t fnv = TC_FNV_OFFSET;
        size_t tokens = 0;
        for (int i = 0; i < k; i++) {
            fnv = tc_fnv_ids(fnv, w[i].ids.ids, w[i].ids.n);
            tokens += w[i].ids.n;
        }
        if (t == 0)
            fnv1 = fnv;
        int same = fnv == fnv1;
        emit(json, pt_tokenizer_name(tok), k, bytes, n_docs, tokens, best, best_cpu, fnv, same, open_ms,
             pt_tokenizer_vocab_size(tok));
        if (!same)
            st = pt_fail(PT_EINVAL, "%s on %d threads: ids differ from one thread's (FNV %016llx vs %016llx)", name, k,
                         (unsigned long long)fnv, (unsigned long long)fnv1);
    }
done:
    if (w)
        for (int i = 0; i < max_k; i++)
            free(w[i].ids.ids);
    free(w);
    free(cut);
    pt_tokenizer_close(tok);
    return st;
}

/* Reads FILE as the corpus: documents separated by NUL bytes (as --corpus-out writes them). */
static pt_status read_corpus(const char *path, tc_buf *b, size_t **offsets, size_t *n_docs)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "--input %s: cannot open the file; check the path", path);
    char chunk[1 << 16];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        bad = tc_put(b, chunk, n) != 0;
    bad |= ferror(f) != 0;
    fclose(f);
    if (bad || tc_put(b, "", 1) != 0)
        return pt_fail(bad ? PT_EIO : PT_ENOMEM, "--input %s: cannot read the whole file (out of memory or a read error)",
                       path);
    size_t count = 0;
    for (size_t i = 0; i < b->n; i++)
        count += b->p[i] == 0;
    size_t *off = malloc((count + 1) * sizeof *off);
    if (!off)
        return pt_fail(PT_ENOMEM, "--input %s: out of memory for %zu document offsets", path, count);
    size_t d = 0;
    off[d++] = 0;
    for (size_t i = 0; i + 1 < b->n; i++)
        if (b->p[i] == 0)
            off[d++] = i + 1;
    off[d] = b->n;
    *offsets = off;
    *n_docs = count;
    return PT_OK;
}

static pt_status write_corpus(const char *path, const tc_buf *corpus)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pt_fail(PT_EINVAL, "--corpus-out %s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return pt_fail(PT_EIO, "--corpus-out %s: cannot create the file; check the folder exists and is writable", path);
    size_t n = corpus->n ? corpus->n - 1 : 0; /* no NUL after the last document */
    int ok = fwrite(corpus->p, 1, n, f) == n;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return pt_fail(PT_EIO, "--corpus-out %s: write failed (disk full?)", path);
    }
    return PT_OK;
}

int pt_bench_tokenize(int argc, char **argv)
{
    int json = 0, threads = 0, repeat = 1;
    double mb = 100;
    const char *only = NULL, *corpus_out = NULL, *input = NULL;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per tokenizer and thread count", 0 },
        { "mb", PT_OPT_DOUBLE, &mb, "N", "corpus size in MiB", 0 },
        { "tokenizer", PT_OPT_STRING, &only, "NAME", "only this tokenizer: gpt2, cl100k, o200k or a FILE (default: the three)", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "threads of the parallel run (0: one per core); one thread always runs first", 0 },
        { "reps", PT_OPT_INT, &repeat, "R", "timed runs per configuration; the fastest is reported", 0, "repeat" },
        { "corpus-out", PT_OPT_STRING, &corpus_out, "FILE", "also write the corpus there (documents joined by NUL), for bench/tokenize_ref.mjs", 0 },
        { "input", PT_OPT_STRING, &input, "FILE", "encode this file instead of the generated corpus (documents separated by NUL)", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain bench tokenize [--json] [--mb N] [--tokenizer gpt2|cl100k|o200k] [--threads N]",
        "Encode speed of the byte-level BPE tokenizers on a generated corpus of --mb MiB (documents of 1..32\n"
        "KiB, each encoded alone, special tokens as plain text): one thread, then --threads threads on\n"
        "contiguous chunks of documents. Reports MiB/s (in all and per thread), tokens, ms, and the FNV-1a of\n"
        "the ids in document order, which must be the same on every thread count. The corpus is the one\n"
        "bench/tokenize_ref.mjs gives the reference encoders (js-tiktoken, gpt-3-encoder).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "against the references on the same corpus: bench/tokenize.sh [MB]",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (!(mb > 0) || mb > 65536 || threads < 0 || threads > 256 || repeat < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--mb must be in (0, 65536], --threads in [0, 256], --reps >= 1"));
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (n > 256 ? 256 : (int)n) : 1;
    }

    tc_buf corpus = { 0 };
    size_t *off = NULL, n_docs = 0;
    int64_t t0 = pt_now_ns();
    if (input) {
        st = read_corpus(input, &corpus, &off, &n_docs);
        if (st != PT_OK) {
            free(corpus.p);
            return pt_cli_finish(st);
        }
    }
    else if (tc_gen_corpus(mb, &corpus, &off, &n_docs) != 0) {
        free(corpus.p);
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory generating a %.0f MiB corpus; try a smaller --mb", mb));
    }
    double gen_s = pt_seconds_between(t0, pt_now_ns());
    size_t bytes = off[n_docs] - n_docs;
    uint64_t cfnv = tc_fnv1a64(TC_FNV_OFFSET, corpus.p, corpus.n ? corpus.n - 1 : 0);
    if (corpus_out)
        st = write_corpus(corpus_out, &corpus);
    if (st == PT_OK) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)cfnv);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bench", "tokenize_corpus");
            cJSON_AddStringToObject(o, "impl", "pipetrain");
            if (input)
                cJSON_AddStringToObject(o, "input", input);
            cJSON_AddNumberToObject(o, "bytes", (double)bytes);
            cJSON_AddNumberToObject(o, "docs", (double)n_docs);
            cJSON_AddStringToObject(o, "corpus_fnv1a64", hex);
            cJSON_AddNumberToObject(o, "generate_ms", gen_s * 1e3);
            char *line = cJSON_PrintUnformatted(o);
            if (line)
                printf("%s\n", line);
            free(line);
            cJSON_Delete(o);
        }
        else {
            printf("corpus: %zu bytes (%.1f MiB) in %zu documents, FNV-1a %s (generated in %.0f ms)\n", bytes,
                   bytes / 1048576.0, n_docs, hex, gen_s * 1e3);
            printf("%-7s %3s %10s %9s %8s %8s %9s %16s %s\n", "tok", "thr", "tokens", "ms", "MiB/s", "/thread",
                   "MiB/cpu-s", "ids FNV-1a", "same");
        }
        fflush(stdout);
    }
    const char *all[] = { "gpt2", "cl100k", "o200k" };
    int thread_list[2] = { 1, threads }, n_thr = threads > 1 ? 2 : 1;
    for (int i = 0; i < 3 && st == PT_OK; i++) {
        if (only && i > 0)
            break;
        st = bench_tokenizer(only ? only : all[i], json, thread_list, n_thr, repeat, &corpus, off, n_docs);
    }
    free(off);
    free(corpus.p);
    return pt_cli_finish(st);
}
