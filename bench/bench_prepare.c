/* `pipetrain bench prepare`: `prepare` speed (input MB/s) on one thread and on every core, on the
 * same generated corpus, with the outputs checked byte for byte.
 *
 * The corpus is bench/tokenize_corpus.h's documents (1..32 KiB of generated text each: words,
 * punctuation, numbers, whitespace runs, code, CJK, emoji...) until --mb MiB, written to --dir in
 * two forms: corpus.txt (the documents joined by "\n\n": one big document, which prepare cuts into
 * pieces) and corpus.jsonl (one {"text": ...} line per document). Each form is prepared with
 * --threads 1 and with --threads N (default: every core) into gpt2 shards; the time is pt_prepare's
 * wall time (reading, encoding, writing, fsync), the fastest of --reps runs, and MB/s is input
 * bytes / 1e6 per second. cpu_s is the process's user + system CPU time over that run (getrusage):
 * on a machine shared with other work, wall time shows the share of the cores the run got, and
 * cpu_s / seconds how many cores it kept busy. The shards and sidecar of the N-thread run must
 * equal the 1-thread run's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/data.h"
#include "pipetrain/json.h"
#include "tokenize_corpus.h"

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
    if (p)
        *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

/* This process's user + system CPU time. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* PT_OK when the two prepared folders hold the same sidecar and shards (byte for byte). */
static pt_status same_output(const char *a, const char *b)
{
    char pa[8704], pb[8704]; /* two paths of up to 4 KiB each and a separator */
    snprintf(pa, sizeof pa, "%s/dataset.json", a);
    cJSON *side = NULL;
    PT_CHECK(pt_json_read_file(pa, &side));
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(side, "shards"), *s;
    pt_status st = PT_OK;
    const char *names[1024];
    int n = 0;
    names[n++] = "dataset.json";
    cJSON_ArrayForEach(s, shards)
    {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "file");
        if (cJSON_IsString(f) && n < 1024)
            names[n++] = f->valuestring;
    }
    for (int i = 0; i < n && st == PT_OK; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, names[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, names[i]);
        size_t na, nb;
        unsigned char *xa = slurp(pa, &na), *xb = slurp(pb, &nb);
        if (!xa || !xb || na != nb || memcmp(xa, xb, na) != 0)
            st = pt_fail(PT_EINTERNAL, "prepare's output differs between thread counts: %s and %s", pa, pb);
        free(xa);
        free(xb);
    }
    cJSON_Delete(side);
    return st;
}

static pt_status write_corpus(const char *dir, const tc_buf *b, const size_t *off, size_t n_docs, char *txt,
                              char *jsonl, size_t cap)
{
    snprintf(txt, cap, "%s/corpus.txt", dir);
    snprintf(jsonl, cap, "%s/corpus.jsonl", dir);
    FILE *ft = fopen(txt, "wb"), *fj = fopen(jsonl, "wb");
    if (!ft || !fj) {
        if (ft)
            fclose(ft);
        if (fj)
            fclose(fj);
        return pt_fail(PT_EIO, "cannot write the corpus in %s; give a writable --dir", dir);
    }
    for (size_t d = 0; d < n_docs; d++) {
        const unsigned char *p = (const unsigned char *)b->p + off[d];
        size_t len = off[d + 1] - 1 - off[d];
        if (d)
            fputs("\n\n", ft);
        fwrite(p, 1, len, ft);
        fputs("{\"text\": \"", fj);
        for (size_t i = 0; i < len; i++) {
            unsigned c = p[i];
            if (c == '"' || c == '\\')
                fprintf(fj, "\\%c", c);
            else if (c < 0x20)
                fprintf(fj, "\\u%04x", c);
            else
                fputc((int)c, fj);
        }
        fputs("\"}\n", fj);
    }
    int bad = ferror(ft) || ferror(fj);
    bad |= fclose(ft) != 0;
    bad |= fclose(fj) != 0;
    return bad ? pt_fail(PT_EIO, "cannot write the corpus in %s; check free disk space", dir) : PT_OK;
}

int pt_bench_prepare(int argc, char **argv)
{
    double mb = 50;
    int threads = 0, repeat = 1, json = 0;
    const char *dir = NULL, *tokenizer = "gpt2";
    pt_opt opts[] = {
        { "mb", PT_OPT_DOUBLE, &mb, "MIB", "corpus size in MiB", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "threads of the parallel run (0: every core)", 0 },
        { "reps", PT_OPT_INT, &repeat, "R", "keep the fastest of R runs", 0, "repeat" },
        { "tokenizer", PT_OPT_STRING, &tokenizer, "NAME|FILE", "the tokenizer", 0 },
        { "dir", PT_OPT_STRING, &dir, "DIR", "scratch folder for the corpus and shards (default: $TMPDIR or /tmp)", 0 },
        { "json", PT_OPT_FLAG, &json, NULL, "print results as JSON lines", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench prepare [--mb 50] [--threads N] [--reps R]",
                         "prepare's MB/s on one thread and on every core (same corpus, outputs compared).", opts,
                         (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (mb <= 0 || repeat < 1 || threads < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--mb, --reps must be positive and --threads >= 0"));
    if (threads == 0)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char base[4096];
    const char *tmp = getenv("TMPDIR");
    if (dir)
        snprintf(base, sizeof base, "%s", dir);
    else
        snprintf(base, sizeof base, "%s/pipetrain-bench-prepare-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    mkdir(base, 0777);
    tc_buf b = { 0 };
    size_t *off = NULL, n_docs = 0;
    if (tc_gen_corpus(mb, &b, &off, &n_docs) != 0)
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory generating %.0f MiB", mb));
    char txt[4200], jsonl[4200];
    st = write_corpus(base, &b, off, n_docs, txt, jsonl, sizeof txt);
    free(b.p);
    free(off);
    if (st != PT_OK)
        return pt_cli_finish(st);
    const char *forms[2] = { txt, jsonl }, *form_name[2] = { "text", "jsonl" };
    if (!json)
        printf("prepare, %s, %.0f MiB generated corpus (%zu documents), fastest of %d\n", tokenizer, mb, n_docs,
               repeat);
    for (int f = 0; f < 2 && st == PT_OK; f++) {
        double best[2] = { 0, 0 }, cpu[2] = { 0, 0 };
        pt_prepare_result res[2];
        char out[2][4300];
        const int th[2] = { 1, threads };
        for (int k = 0; k < 2 && st == PT_OK; k++) {
            char parent[4250];
            snprintf(parent, sizeof parent, "%s/%s_t%d", base, form_name[f], th[k]);
            mkdir(parent, 0777);
            snprintf(out[k], sizeof out[k], "%s/set", parent);
            for (int r = 0; r < repeat && st == PT_OK; r++) {
                const char *in[1] = { forms[f] };
                pt_prepare_opts o = { .tokenizer = tokenizer, .inputs = in, .n_inputs = 1, .output = out[k],
                                      .shard_tokens = 0, .val_tokens = -1, .threads = th[k] };
                double c0 = cpu_seconds();
                st = pt_prepare(&o, &res[k]);
                double c = cpu_seconds() - c0;
                if (st == PT_OK && (r == 0 || res[k].seconds < best[k])) {
                    best[k] = res[k].seconds;
                    cpu[k] = c;
                }
            }
        }
        if (st == PT_OK)
            st = same_output(out[0], out[1]);
        if (st != PT_OK)
            break;
        double mbs1 = (double)res[0].bytes / 1e6 / best[0], mbsn = (double)res[1].bytes / 1e6 / best[1];
        if (json)
            for (int k = 0; k < 2; k++)
                printf("{\"bench\":\"prepare\",\"tokenizer\":\"%s\",\"format\":\"%s\",\"threads\":%d,\"bytes\":%lld,"
                       "\"tokens\":%lld,\"documents\":%lld,\"seconds\":%.4f,\"cpu_s\":%.4f,\"mb_per_s\":%.2f,"
                       "\"same_output\":true}\n",
                       tokenizer, form_name[f], th[k], (long long)res[k].bytes, (long long)res[k].tokens,
                       (long long)res[k].documents, best[k], cpu[k], k ? mbsn : mbs1);
        else
            printf("  %-5s %6.1f MB -> %9lld tokens: 1 thread %.2f s (%.1f MB/s, %.2f s CPU), %d threads %.2f s "
                   "(%.1f MB/s, %.2f s CPU), x%.2f, same output\n",
                   form_name[f], (double)res[0].bytes / 1e6, (long long)res[0].tokens, best[0], mbs1, cpu[0],
                   threads, best[1], mbsn, cpu[1], best[0] / best[1]);
    }
    if (!dir && st == PT_OK) {
        char cmd[8400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", base);
    }
    return pt_cli_finish(st);
}
