/* data.golden_*: pipetrain's tokenizers give the reference encoders' ids, bit for bit.
 *
 *     test_golden TOKENIZER CORPUS_DIR GOLDEN_DIR [--longline]
 *
 * Without --longline: every file of CORPUS_DIR (tests/data/golden/corpus/) is encoded (special
 * tokens not recognised) and compared with GOLDEN_DIR/<file>.ids, made by the npm reference
 * encoders (tests/data/make_golden.sh: gpt-3-encoder and js-tiktoken). The first mismatch prints the
 * file, the id index, ours and the reference's ids with their bytes, and the text around it.
 * decode(encode(x)) == x byte for byte for every file.
 *
 * *.cases files hold many short strings separated by NUL (random code points where pre-tokenization
 * rules meet): each is encoded alone and compared with its golden entry, and round-trips.
 *
 * Invalid UTF-8 (*.bin): the references take strings, so they have no ids for invalid bytes. The
 * golden cuts the file into maximal valid runs (with the reference's ids of each run encoded alone)
 * and invalid-byte runs. Ours must be, in order, exactly each valid run's reference ids, then ids
 * whose bytes are exactly that invalid run: invalid bytes split the text like a boundary and never
 * change how the valid text beside them is tokenized. Plus the round trip.
 *
 * With --longline: the 10 MB line of bench/tokenize_corpus.h (the same generator as the .mjs that
 * made GOLDEN_DIR/longline.sum); its bytes must hash as the golden says (the generators agree), then
 * its id count, ids' FNV-1a, first and last 32 ids must equal the reference's, and it round-trips.
 * Exit status 0 when everything matched, 1 otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/tokenizer.h"
#include "tokenize_corpus.h"

static int failures;

static void fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "FAIL ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    failures++;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "FAIL cannot open %s: %s\n", path, strerror(errno));
        failures++;
        return NULL;
    }
    tc_buf b = { 0 };
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tc_put(&b, chunk, n)) {
            fclose(f);
            free(b.p);
            fprintf(stderr, "FAIL out of memory reading %s\n", path);
            failures++;
            return NULL;
        }
    fclose(f);
    if (!b.p && tc_put(&b, "", 0) != 0) /* an empty file: still a buffer */
        return NULL;
    *len = b.n;
    return b.p;
}

/* Prints n bytes with C escapes for anything but printable ASCII. */
static void print_bytes(FILE *f, const char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else
            fprintf(f, "\\x%02x", c);
    }
    fputc('"', f);
}

static void print_token(const pt_tokenizer *t, int32_t id)
{
    size_t len = 0;
    const char *p = id >= 0 ? pt_tokenizer_token(t, id, &len) : NULL;
    fprintf(stderr, "%d ", id);
    if (p)
        print_bytes(stderr, p, len);
    else
        fputs("(none)", stderr);
}

/* Byte offset in the text where ids[0..i) end (the sum of their lengths). */
static size_t bytes_before(const pt_tokenizer *t, const int32_t *ids, size_t i)
{
    size_t off = 0, len;
    for (size_t k = 0; k < i; k++)
        if (pt_tokenizer_token(t, ids[k], &len))
            off += len;
    return off;
}

/* Compares ours[0..n_ours) with ref[0..n_ref); prints the first difference. base: offset of ours[0]
 * in text (for the context shown). Returns 0 when equal. */
static int compare_ids(const pt_tokenizer *t, const char *what, const char *text, size_t text_len, size_t base,
                       const int32_t *ours, size_t n_ours, const int32_t *ref, size_t n_ref)
{
    size_t i = 0;
    while (i < n_ours && i < n_ref && ours[i] == ref[i])
        i++;
    if (i == n_ours && i == n_ref)
        return 0;
    size_t off = base + bytes_before(t, ref, i);
    fprintf(stderr, "FAIL %s: first mismatch at id %zu (byte %zu; %zu ids ours, %zu reference)\n  ours: ", what, i,
            off, n_ours, n_ref);
    if (i < n_ours)
        print_token(t, ours[i]);
    else
        fputs("(end)", stderr);
    fputs("\n  reference: ", stderr);
    if (i < n_ref)
        print_token(t, ref[i]);
    else
        fputs("(end)", stderr);
    size_t lo = off > 24 ? off - 24 : 0, hi = off + 40 < text_len ? off + 40 : text_len;
    fprintf(stderr, "\n  text [%zu, %zu): ", lo, hi);
    print_bytes(stderr, text + lo, hi - lo);
    fputc('\n', stderr);
    failures++;
    return 1;
}

static int check_round_trip(const pt_tokenizer *t, const char *what, const char *text, size_t len,
                            const pt_tok_ids *ids)
{
    char *back = NULL;
    size_t n = 0;
    pt_status st = pt_tokenizer_decode(t, ids->ids, ids->n, &back, &n);
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s: decode: %s\n", what, pt_last_error());
        failures++;
        return 1;
    }
    size_t i = 0;
    while (i < n && i < len && back[i] == text[i])
        i++;
    int bad = i != n || i != len;
    if (bad) {
        fprintf(stderr, "FAIL %s: decode(encode(x)) != x: %zu bytes back for %zu, first difference at byte %zu\n  x: ",
                what, n, len, i);
        size_t lo = i > 16 ? i - 16 : 0;
        print_bytes(stderr, text + lo, (len - lo) < 40 ? len - lo : 40);
        fputs("\n  back: ", stderr);
        print_bytes(stderr, back + (lo < n ? lo : n), lo < n ? ((n - lo) < 40 ? n - lo : 40) : 0);
        fputc('\n', stderr);
        failures++;
    }
    free(back);
    return bad;
}

/* The golden's words after '#' comments are dropped: a cursor over whitespace-separated tokens. */
typedef struct {
    char *p;
    const char *path;
} golden;

static const char *next_word(golden *g)
{
    for (;;) {
        while (*g->p == ' ' || *g->p == '\n' || *g->p == '\t' || *g->p == '\r')
            g->p++;
        if (*g->p == '#') {
            while (*g->p && *g->p != '\n')
                g->p++;
            continue;
        }
        if (!*g->p)
            return NULL;
        char *w = g->p;
        while (*g->p && *g->p != ' ' && *g->p != '\n' && *g->p != '\t' && *g->p != '\r')
            g->p++;
        if (*g->p)
            *g->p++ = 0;
        return w;
    }
}

/* Reads "N" then N ids into out (replacing its contents). */
static int read_ids(golden *g, pt_tok_ids *out)
{
    const char *w = next_word(g);
    char *end;
    long long n = w ? strtoll(w, &end, 10) : -1;
    if (!w || *end || n < 0) {
        fprintf(stderr, "FAIL %s: malformed golden (expected an id count)\n", g->path);
        failures++;
        return 1;
    }
    out->n = 0;
    if ((size_t)n > out->cap) {
        int32_t *p = realloc(out->ids, (size_t)n * sizeof *p);
        if (!p)
            return 1;
        out->ids = p;
        out->cap = (size_t)n;
    }
    for (long long i = 0; i < n; i++) {
        w = next_word(g);
        long v = w ? strtol(w, &end, 10) : -1;
        if (!w || *end || v < 0) {
            fprintf(stderr, "FAIL %s: malformed golden (id %lld of %lld)\n", g->path, i, n);
            failures++;
            return 1;
        }
        out->ids[out->n++] = (int32_t)v;
    }
    return 0;
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static void check_file(const pt_tokenizer *t, const char *corpus_dir, const char *golden_dir, const char *name)
{
    char path[4096], gpath[4096];
    snprintf(path, sizeof path, "%s/%s", corpus_dir, name);
    const char *dot = strrchr(name, '.');
    int is_bin = strcmp(dot, ".bin") == 0, is_cases = strcmp(dot, ".cases") == 0;
    snprintf(gpath, sizeof gpath, "%s/%.*s.ids", golden_dir, (int)(dot - name), name);
    size_t len = 0, glen = 0;
    char *text = read_all(path, &len);
    char *gtext = text ? read_all(gpath, &glen) : NULL;
    pt_tok_ids ours = { 0 }, ref = { 0 };
    if (!text || !gtext)
        goto done;
    int before = failures;
    golden g = { gtext, gpath };
    if (is_cases) {
        /* NUL-separated strings, each encoded alone and compared with the next "valid" entry */
        size_t n_cases = 0, start = 0;
        for (size_t i = 0; i <= len && failures == before; i++) {
            if (i < len && text[i] != 0)
                continue;
            const char *w = next_word(&g);
            char what[4200];
            snprintf(what, sizeof what, "%s case %zu (bytes %zu..%zu)", path, n_cases, start, i);
            if (!w || strcmp(w, "valid") != 0 || read_ids(&g, &ref)) {
                fail("%s: malformed golden (no entry for %s)", gpath, what);
                break;
            }
            ours.n = 0;
            if (pt_tokenizer_encode(t, text + start, i - start, 0, &ours) != PT_OK) {
                fail("%s: encode: %s", what, pt_last_error());
                break;
            }
            if (compare_ids(t, what, text + start, i - start, 0, ours.ids, ours.n, ref.ids, ref.n) == 0)
                check_round_trip(t, what, text + start, i - start, &ours);
            n_cases++;
            start = i + 1;
        }
        if (failures == before && next_word(&g))
            fail("%s: more entries than the %s cases", gpath, path);
        if (failures == before)
            printf("ok %s %s: %zu bytes, %zu cases\n", pt_tokenizer_name(t), name, len, n_cases);
        goto done;
    }
    if (pt_tokenizer_encode(t, text, len, 0, &ours) != PT_OK) {
        fail("%s: encode: %s", path, pt_last_error());
        goto done;
    }
    check_round_trip(t, path, text, len, &ours);
    if (!is_bin) {
        const char *w = next_word(&g);
        if (!w || strcmp(w, "ids") != 0) {
            fail("%s: malformed golden (no \"ids\")%s", gpath, "");
            goto done;
        }
        if (read_ids(&g, &ref) == 0)
            compare_ids(t, path, text, len, 0, ours.ids, ours.n, ref.ids, ref.n);
    }
    else {
        /* valid runs: the reference's ids of that run alone; invalid runs: ids spelling exactly its bytes */
        size_t pos = 0, off = 0; /* next id of ours, its byte offset in text */
        const char *w;
        while ((w = next_word(&g)) != NULL) {
            if (strcmp(w, "valid") == 0) {
                if (read_ids(&g, &ref))
                    break;
                size_t n = ours.n - pos < ref.n ? ours.n - pos : ref.n;
                if (compare_ids(t, path, text, len, off, ours.ids + pos, n, ref.ids, ref.n))
                    break;
                off += bytes_before(t, ref.ids, ref.n);
                pos += ref.n;
            }
            else if (strcmp(w, "invalid") == 0) {
                const char *hex = next_word(&g);
                size_t nb = hex ? strlen(hex) / 2 : 0, got = 0;
                int bad = !hex || nb == 0;
                for (size_t i = 0; !bad && i < nb; i++) {
                    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
                    bad = hi < 0 || lo < 0 || off + i >= len || (unsigned char)text[off + i] != (hi << 4 | lo);
                }
                if (bad) {
                    fail("%s: malformed golden (invalid run does not match the corpus file %s)", gpath, path);
                    break;
                }
                size_t start = pos;
                while (got < nb && pos < ours.n) {
                    size_t tl = 0;
                    pt_tokenizer_token(t, ours.ids[pos++], &tl);
                    got += tl;
                }
                if (got != nb) {
                    fprintf(stderr,
                            "FAIL %s: the invalid bytes at [%zu, %zu) are not tokens of their own: ids %zu..%zu "
                            "cover %zu bytes\n  text: ",
                            path, off, off + nb, start, pos, got);
                    size_t lo = off > 16 ? off - 16 : 0, hi = off + nb + 16 < len ? off + nb + 16 : len;
                    print_bytes(stderr, text + lo, hi - lo);
                    fputs("\n  ours:", stderr);
                    for (size_t k = start; k < pos; k++) {
                        fputc(' ', stderr);
                        print_token(t, ours.ids[k]);
                    }
                    fputc('\n', stderr);
                    failures++;
                    break;
                }
                off += nb;
            }
            else {
                fail("%s: malformed golden (unexpected \"%s\")", gpath, w);
                break;
            }
        }
        if (failures == before && (pos != ours.n || off != len))
            fail("%s: %s ids beyond the golden's runs", path, "extra");
    }
    if (failures == before)
        printf("ok %s %s: %zu bytes, %zu ids\n", pt_tokenizer_name(t), name, len, ours.n);
done:
    free(ours.ids);
    free(ref.ids);
    free(text);
    free(gtext);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void check_corpus(const pt_tokenizer *t, const char *corpus_dir, const char *golden_dir)
{
    DIR *d = opendir(corpus_dir);
    if (!d) {
        fail("cannot open the corpus folder %s: %s", corpus_dir, strerror(errno));
        return;
    }
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if ((l > 4 && (strcmp(e->d_name + l - 4, ".txt") == 0 || strcmp(e->d_name + l - 4, ".bin") == 0)) ||
            (l > 6 && strcmp(e->d_name + l - 6, ".cases") == 0))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    if (n < 10)
        fail("%s: only a few corpus files%s (expected the 16 of make_corpus.py)", corpus_dir, "");
    for (size_t i = 0; i < n; i++) {
        check_file(t, corpus_dir, golden_dir, names[i]);
        free(names[i]);
    }
}

/* key value lines of longline.sum */
static const char *sum_value(golden *g, const char *key)
{
    const char *w = next_word(g);
    if (!w || strcmp(w, key) != 0) {
        fail("%s: malformed golden (expected \"%s\")", g->path, key);
        return NULL;
    }
    return next_word(g);
}

static void check_longline(const pt_tokenizer *t, const char *golden_dir)
{
    char gpath[4096];
    snprintf(gpath, sizeof gpath, "%s/longline.sum", golden_dir);
    size_t glen;
    char *gtext = read_all(gpath, &glen);
    if (!gtext)
        return;
    golden g = { gtext, gpath };
    tc_buf b = { 0 };
    tc_rng r = tc_rng_seed(TC_LONGLINE_SEED);
    pt_tok_ids ours = { 0 }, first = { 0 }, last = { 0 };
    if (tc_gen_text(&r, TC_LONGLINE_BYTES, 0, &b) != 0) {
        fail("out of memory for the 10 MB line%s%s", "", "");
        goto done;
    }
    const char *v_bytes = sum_value(&g, "bytes");
    const char *v_tfnv = v_bytes ? sum_value(&g, "text_fnv1a64") : NULL;
    const char *v_count = v_tfnv ? sum_value(&g, "count") : NULL;
    const char *v_ifnv = v_count ? sum_value(&g, "ids_fnv1a64") : NULL;
    const char *w = v_ifnv ? next_word(&g) : NULL;
    if (!w || strcmp(w, "first") != 0 || read_ids(&g, &first) || !(w = next_word(&g)) || strcmp(w, "last") != 0 ||
        read_ids(&g, &last)) {
        fail("%s: malformed golden%s", gpath, "");
        goto done;
    }
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tc_fnv1a64(TC_FNV_OFFSET, b.p, b.n));
    if (strtoull(v_bytes, NULL, 10) != b.n || strcmp(hex, v_tfnv) != 0) {
        fprintf(stderr,
                "FAIL the 10 MB line of bench/tokenize_corpus.h (%zu bytes, FNV %s) is not the one %s was made from "
                "(%s bytes, FNV %s): the C and JS generators differ\n",
                b.n, hex, gpath, v_bytes, v_tfnv);
        failures++;
        goto done;
    }
    if (pt_tokenizer_encode(t, b.p, b.n, 0, &ours) != PT_OK) {
        fail("the 10 MB line: encode: %s%s", pt_last_error(), "");
        goto done;
    }
    int before = failures;
    size_t n_ref = strtoull(v_count, NULL, 10);
    compare_ids(t, "the 10 MB line (first 32 ids)", b.p, b.n, 0, ours.ids, ours.n < 32 ? ours.n : 32, first.ids,
                first.n);
    if (ours.n >= last.n) {
        size_t k = ours.n - last.n;
        size_t off = bytes_before(t, ours.ids, k);
        compare_ids(t, "the 10 MB line (last 32 ids)", b.p, b.n, off, ours.ids + k, last.n, last.ids, last.n);
    }
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tc_fnv_ids(TC_FNV_OFFSET, ours.ids, ours.n));
    if (ours.n != n_ref || strcmp(hex, v_ifnv) != 0) {
        fprintf(stderr, "FAIL the 10 MB line: %zu ids (FNV %s), the reference %zu (FNV %s)\n", ours.n, hex, n_ref,
                v_ifnv);
        failures++;
    }
    check_round_trip(t, "the 10 MB line", b.p, b.n, &ours);
    if (failures == before)
        printf("ok %s the 10 MB line: %zu bytes, %zu ids, FNV %s\n", pt_tokenizer_name(t), b.n, ours.n, hex);
done:
    free(ours.ids);
    free(first.ids);
    free(last.ids);
    free(b.p);
    free(gtext);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "--longline") != 0)) {
        fprintf(stderr, "usage: test_golden TOKENIZER CORPUS_DIR GOLDEN_DIR [--longline]\n");
        return 2;
    }
    pt_tokenizer *t = NULL;
    if (pt_tokenizer_open(argv[1], &t) != PT_OK) {
        fprintf(stderr, "FAIL tokenizer %s: %s\n", argv[1], pt_last_error());
        return 1;
    }
    if (argc == 5)
        check_longline(t, argv[3]);
    else
        check_corpus(t, argv[2], argv[3]);
    pt_tokenizer_close(t);
    if (failures)
        fprintf(stderr, "%d failure(s) for %s\n", failures, argv[1]);
    return failures ? 1 : 0;
}
