/* `pipetrain prepare` as a library call (pipetrain/data.h, docs/data.md): text or JSON lines in,
 * llm.c shards and a sidecar out, streamed, encoded on every core, written in input order.
 *
 * The input is read as a sequence of units of about 1 MiB (opts->unit_bytes): whole JSON lines, or pieces of
 * one text document cut only where the tokenizer's pre-tokenizer never merges across (between a
 * '\n' that follows a visible ASCII character and an ASCII letter, for the byte, gpt2, cl100k and
 * o200k tokenizers; text_cut). A batch of units
 * is encoded by the worker threads at once (each unit by one thread) and the tokens are appended to
 * the shards in unit order, so the output does not depend on the thread count. Memory is a few
 * units per thread, whatever the corpus size (a single text document with no cut point, or one
 * JSON line, is held whole). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/tokenizer.h"

enum { PREP_UNIT_DEFAULT = 1 << 20, PREP_UNITS_PER_THREAD = 4 };
#define PREP_DEFAULT_SHARD_TOKENS 100000000LL
#define PREP_PROGRESS_MIN_BYTES (4LL << 20)

/* ---- inputs ---- */

typedef struct {
    char **path;
    int *jsonl;
    int64_t *size; /* -1: unknown (stdin) */
    int n, cap;
} prep_inputs;

static pt_status inputs_add(prep_inputs *in, const char *path, int format)
{
    if (in->n == in->cap) {
        int nc = in->cap ? 2 * in->cap : 16;
        char **p = realloc(in->path, (size_t)nc * sizeof *p);
        if (p)
            in->path = p;
        int *j = realloc(in->jsonl, (size_t)nc * sizeof *j);
        if (j)
            in->jsonl = j;
        int64_t *s = realloc(in->size, (size_t)nc * sizeof *s);
        if (s)
            in->size = s;
        if (!p || !j || !s)
            return pt_fail(PT_ENOMEM, "out of memory listing inputs");
        in->cap = nc;
    }
    in->path[in->n] = strdup(path);
    if (!in->path[in->n])
        return pt_fail(PT_ENOMEM, "out of memory listing inputs");
    int jsonl = format == PT_PREP_JSONL;
    if (format == PT_PREP_AUTO) {
        const char *dot = strrchr(path, '.');
        jsonl = dot && (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".ndjson") == 0 || strcmp(dot, ".json") == 0);
    }
    in->jsonl[in->n] = jsonl;
    struct stat sb;
    in->size[in->n] = strcmp(path, "-") != 0 && stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
    in->n++;
    return PT_OK;
}

static void inputs_free(prep_inputs *in)
{
    for (int i = 0; i < in->n; i++)
        free(in->path[i]);
    free(in->path);
    free(in->jsonl);
    free(in->size);
}

/* --output (FILE.bin, or the sidecar FILE.bin.json / DIR/dataset.json) must not be one of the
 * inputs: the tokens would replace the text they are made from. The same file by another name
 * (a hard link, ./x, a symlink) is caught by comparing st_dev/st_ino when the output exists. */
static pt_status check_output_not_input(const prep_inputs *in, const char *output, int one_file)
{
    char sidecar[PATH_MAX];
    if (one_file)
        snprintf(sidecar, sizeof sidecar, "%s.json", output);
    else
        snprintf(sidecar, sizeof sidecar, "%s/dataset.json", output);
    const char *outs[2] = { one_file ? output : NULL, sidecar };
    for (int k = 0; k < 2; k++) {
        struct stat ob;
        if (!outs[k] || stat(outs[k], &ob) != 0)
            continue; /* not there yet: no input can be it */
        for (int i = 0; i < in->n; i++) {
            struct stat ib;
            if (strcmp(in->path[i], "-") == 0 || stat(in->path[i], &ib) != 0)
                continue;
            if (ib.st_dev != ob.st_dev || ib.st_ino != ob.st_ino)
                continue;
            if (k == 0)
                return pt_fail(PT_EINVAL, "--output %s is the input %s (the same file): the tokens would replace the "
                                          "text; give --output another path (NAME.bin beside it, or a folder)",
                               output, in->path[i]);
            return pt_fail(PT_EINVAL, "--output %s would write its sidecar %s over the input %s; give --output "
                                      "another path",
                           output, outs[k], in->path[i]);
        }
    }
    return PT_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Expands one --input: "-" (stdin), a folder (its regular files, sorted, hidden ones skipped), a
 * glob, or a file. */
static pt_status inputs_expand(prep_inputs *in, const char *arg, int format)
{
    struct stat sb;
    if (strcmp(arg, "-") == 0)
        return inputs_add(in, arg, format);
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *dir = opendir(arg);
        if (!dir)
            return pt_fail(PT_EIO, "cannot read folder %s: %s", arg, strerror(errno));
        char **names = NULL;
        int n = 0, cap = 0;
        pt_status st = PT_OK;
        struct dirent *e;
        while (st == PT_OK && (e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char full[PATH_MAX];
            snprintf(full, sizeof full, "%s/%s", arg, e->d_name);
            if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                char **nn = realloc(names, (size_t)cap * sizeof *nn);
                if (!nn) {
                    st = pt_fail(PT_ENOMEM, "out of memory listing %s", arg);
                    break;
                }
                names = nn;
            }
            if (!(names[n] = strdup(full)))
                st = pt_fail(PT_ENOMEM, "out of memory listing %s", arg);
            else
                n++;
        }
        closedir(dir);
        if (st == PT_OK && n == 0)
            st = pt_fail(PT_EINVAL, "input folder %s holds no files", arg);
        if (n > 1)
            qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int i = 0; i < n; i++) {
            if (st == PT_OK)
                st = inputs_add(in, names[i], format);
            free(names[i]);
        }
        free(names);
        return st;
    }
    if (strpbrk(arg, "*?[") && stat(arg, &sb) != 0) {
        glob_t g;
        int rc = glob(arg, 0, NULL, &g);
        if (rc == GLOB_NOMATCH)
            return pt_fail(PT_EINVAL, "no file matches --input %s; check the pattern", arg);
        if (rc != 0)
            return pt_fail(PT_EIO, "cannot expand --input %s (glob error %d)", arg, rc);
        pt_status st = PT_OK;
        for (size_t i = 0; i < g.gl_pathc && st == PT_OK; i++)
            if (stat(g.gl_pathv[i], &sb) == 0 && S_ISREG(sb.st_mode))
                st = inputs_add(in, g.gl_pathv[i], format);
        globfree(&g);
        return st;
    }
    if (stat(arg, &sb) != 0)
        return pt_fail(PT_EIO, "cannot open input %s: %s", arg, strerror(errno));
    return inputs_add(in, arg, format);
}

/* ---- units ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int file;
    int jsonl;
    int doc_start;   /* text: this unit starts a document (an eot goes first) */
    int64_t line;    /* jsonl: the line number of the unit's first line (1-based) */
    int64_t docs;    /* documents the unit holds (filled by the worker for jsonl) */
    pt_tok_ids ids;  /* the worker's output */
    char *scratch;   /* jsonl: the decoded text of a line */
    size_t scratch_cap;
    pt_status st;
    char err[512];
} prep_unit;

static pt_status unit_reserve(prep_unit *u, size_t need)
{
    if (need <= u->cap)
        return PT_OK;
    size_t nc = u->cap ? u->cap : need + 4096;
    while (nc < need)
        nc *= 2;
    char *b = realloc(u->buf, nc);
    if (!b)
        return pt_fail(PT_ENOMEM, "out of memory for a %zu-byte input piece", nc);
    u->buf = b;
    u->cap = nc;
    return PT_OK;
}

/* The reader: walks the inputs and fills units. */
typedef struct {
    const prep_inputs *in;
    int file;       /* the open file's index, or in->n when done */
    FILE *f;
    int at_doc_start;
    int64_t line;   /* jsonl: next line number */
    char *carry;    /* bytes read past the last unit's cut */
    size_t carry_len, carry_cap;
    int can_cut;    /* the tokenizer allows cutting text where text_cut says */
    size_t unit;    /* bytes a unit is read to before it is cut */
    int64_t bytes_read;
} prep_reader;

static pt_status reader_open_next(prep_reader *r)
{
    if (r->f && r->f != stdin)
        fclose(r->f);
    r->f = NULL;
    r->file++;
    if (r->file >= r->in->n)
        return PT_OK;
    const char *p = r->in->path[r->file];
    r->f = strcmp(p, "-") == 0 ? stdin : fopen(p, "rb");
    if (!r->f)
        return pt_fail(PT_EIO, "cannot open input %s: %s", p, strerror(errno));
    r->at_doc_start = 1;
    r->line = 1;
    r->carry_len = 0;
    return PT_OK;
}

/* Where a text unit of n bytes may end: the last i in [max(from, 2), n) with b[i-1] == '\n', b[i]
 * an ASCII letter and b[i-2] a visible ASCII character, or 0 (bytes before `from` were searched
 * already). There the '\n' is a whitespace run of its own in the whole text (GPT-2's \s+(?!\S)
 * would take "  \n" or "\n\n" whole at the end of a piece but not before a letter, hence the
 * visible character before it), and no pattern of gpt2, cl100k or o200k joins it to the letter. */
static size_t text_cut(const char *b, size_t from, size_t n)
{
    if (from < 2)
        from = 2;
    for (size_t i = n - 1; i >= from; i--)
        if (b[i - 1] == '\n' && ((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= 'A' && b[i] <= 'Z')) && b[i - 2] > ' ' &&
            b[i - 2] < 0x7F)
            return i;
    return 0;
}

/* Where a jsonl unit of n bytes may end: after its last '\n' in b[from, n), or 0. */
static size_t line_cut(const char *b, size_t from, size_t n)
{
    for (size_t i = n; i > from; i--)
        if (b[i - 1] == '\n')
            return i;
    return 0;
}

/* Fills u with the next unit (*got = 1), or sets *got = 0 when the inputs are done. */
static pt_status reader_next(prep_reader *r, prep_unit *u, int *got_unit)
{
    *got_unit = 0;
    u->len = 0;
    u->docs = 0;
    u->ids.n = 0;
    u->st = PT_OK;
    u->err[0] = 0;
    for (;;) {
        if (r->file >= r->in->n)
            return PT_OK;
        if (!r->f) {
            PT_CHECK(reader_open_next(r));
            continue;
        }
        u->file = r->file;
        u->jsonl = r->in->jsonl[r->file];
        u->doc_start = r->at_doc_start;
        u->line = r->line;
        PT_CHECK(unit_reserve(u, r->carry_len + r->unit));
        if (r->carry_len)
            memcpy(u->buf, r->carry, r->carry_len);
        u->len = r->carry_len;
        r->carry_len = 0;
        int eof = 0;
        size_t searched = 0; /* cut points before this were looked for already */
        for (;;) {
            while (!eof && u->len < r->unit) {
                PT_CHECK(unit_reserve(u, u->len + r->unit));
                size_t got = fread(u->buf + u->len, 1, r->unit - (u->len % r->unit), r->f);
                if (got == 0) {
                    if (ferror(r->f))
                        return pt_fail(PT_EIO, "cannot read %s: %s", r->in->path[r->file], strerror(errno));
                    eof = 1;
                }
                u->len += got;
                r->bytes_read += (int64_t)got;
            }
            if (eof)
                break;
            size_t cut = u->jsonl ? line_cut(u->buf, searched, u->len)
                         : r->can_cut ? text_cut(u->buf, searched, u->len)
                                      : 0;
            searched = u->len;
            if (cut > 0) {
                size_t rest = u->len - cut;
                if (rest > r->carry_cap) {
                    char *c = realloc(r->carry, rest);
                    if (!c)
                        return pt_fail(PT_ENOMEM, "out of memory reading %s", r->in->path[r->file]);
                    r->carry = c;
                    r->carry_cap = rest;
                }
                memcpy(r->carry, u->buf + cut, rest);
                r->carry_len = rest;
                u->len = cut;
                break;
            }
            /* no cut point yet: read on (the unit grows) */
            PT_CHECK(unit_reserve(u, u->len + r->unit));
            size_t got = fread(u->buf + u->len, 1, r->unit, r->f);
            if (got == 0) {
                if (ferror(r->f))
                    return pt_fail(PT_EIO, "cannot read %s: %s", r->in->path[r->file], strerror(errno));
                eof = 1;
                break;
            }
            u->len += got;
            r->bytes_read += (int64_t)got;
        }
        if (u->jsonl)
            for (size_t i = 0; i < u->len; i++)
                r->line += u->buf[i] == '\n';
        if (eof) {
            PT_CHECK(reader_open_next(r)); /* the next file starts a new document */
        } else {
            r->at_doc_start = u->jsonl; /* a text document goes on in the next unit */
        }
        /* a text file is one document, even an empty one; an empty jsonl piece is nothing */
        if (u->len > 0 || (!u->jsonl && u->doc_start)) {
            *got_unit = 1;
            return PT_OK;
        }
    }
}

/* ---- encoding (worker threads) ---- */

typedef struct {
    const pt_tokenizer *tok;
    int flags, eot;
    const prep_inputs *in;
    prep_unit *units;
} prep_work;

static pt_status push_eot(prep_work *w, pt_tok_ids *ids)
{
    if (w->eot < 0)
        return PT_OK;
    if (ids->n == ids->cap) {
        size_t nc = ids->cap ? 2 * ids->cap : 4096;
        int32_t *p = realloc(ids->ids, nc * sizeof *p);
        if (!p)
            return pt_fail(PT_ENOMEM, "out of memory encoding");
        ids->ids = p;
        ids->cap = nc;
    }
    ids->ids[ids->n++] = w->eot;
    return PT_OK;
}

/* ---- JSON lines: a small validating reader that decodes the top-level "text" string ----
 * (cJSON is not used here: its parser writes a global error state on every call, a data race
 * between the worker threads, and its strings stop at an escaped NUL.) */

typedef struct {
    const char *p, *end;
    char *key;         /* the current top-level key, decoded */
    size_t key_n, key_cap;
    char **text;       /* the "text" value, decoded (*text grows) */
    size_t *text_n, *text_cap;
    int found;         /* a "text" string was read */
    int text_not_string;
} jl_reader;

static int jl_put(char **buf, size_t *n, size_t *cap, const char *src, size_t len)
{
    if (*n + len + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (*n + len + 1 > nc)
            nc *= 2;
        char *b = realloc(*buf, nc);
        if (!b)
            return -1;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *n, src, len);
    *n += len;
    return 0;
}

static void jl_ws(jl_reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
        r->p++;
}

static int jl_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A string at r->p (the opening quote); decoded into (buf, n, cap) unless buf is NULL. Raw bytes
 * are kept as they are (invalid UTF-8 too); a lone surrogate escape becomes U+FFFD. */
static int jl_string(jl_reader *r, char **buf, size_t *n, size_t *cap)
{
    r->p++;
    for (;;) {
        const char *q = r->p;
        while (q < r->end && *q != '"' && *q != '\\')
            q++;
        if (buf && jl_put(buf, n, cap, r->p, (size_t)(q - r->p)) != 0)
            return -2;
        r->p = q;
        if (q >= r->end)
            return -1;
        if (*q == '"') {
            r->p++;
            return 0;
        }
        if (q + 1 >= r->end)
            return -1;
        char c = q[1], one = 0;
        r->p = q + 2;
        switch (c) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u': {
            unsigned u;
            if (r->end - r->p < 4 || jl_hex4(r->p, &u) != 0)
                return -1;
            r->p += 4;
            if (u >= 0xD800 && u <= 0xDBFF && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
                unsigned lo;
                if (jl_hex4(r->p + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    r->p += 6;
                }
            }
            if (u >= 0xD800 && u <= 0xDFFF)
                u = 0xFFFD;
            char e[4];
            size_t k;
            if (u < 0x80) {
                e[0] = (char)u;
                k = 1;
            } else if (u < 0x800) {
                e[0] = (char)(0xC0 | (u >> 6));
                e[1] = (char)(0x80 | (u & 0x3F));
                k = 2;
            } else if (u < 0x10000) {
                e[0] = (char)(0xE0 | (u >> 12));
                e[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                e[2] = (char)(0x80 | (u & 0x3F));
                k = 3;
            } else {
                e[0] = (char)(0xF0 | (u >> 18));
                e[1] = (char)(0x80 | ((u >> 12) & 0x3F));
                e[2] = (char)(0x80 | ((u >> 6) & 0x3F));
                e[3] = (char)(0x80 | (u & 0x3F));
                k = 4;
            }
            if (buf && jl_put(buf, n, cap, e, k) != 0)
                return -2;
            continue;
        }
        default: return -1;
        }
        if (buf && jl_put(buf, n, cap, &one, 1) != 0)
            return -2;
    }
}

static int jl_value(jl_reader *r, int depth);

static int jl_container(jl_reader *r, int depth, int top)
{
    char close = *r->p == '{' ? '}' : ']';
    int object = close == '}';
    if (depth > 1000)
        return -1;
    r->p++;
    jl_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return 0;
    }
    for (;;) {
        int is_text = 0;
        if (object) {
            if (r->p >= r->end || *r->p != '"')
                return -1;
            r->key_n = 0;
            int rc = jl_string(r, top ? &r->key : NULL, &r->key_n, &r->key_cap);
            if (rc)
                return rc;
            is_text = top && r->key_n == 4 && memcmp(r->key, "text", 4) == 0 && !r->found && !r->text_not_string;
            jl_ws(r);
            if (r->p >= r->end || *r->p != ':')
                return -1;
            r->p++;
            jl_ws(r);
        }
        if (is_text && r->p < r->end && *r->p == '"') {
            int rc = jl_string(r, r->text, r->text_n, r->text_cap);
            if (rc)
                return rc;
            r->found = 1;
        } else {
            if (is_text)
                r->text_not_string = 1;
            int rc = jl_value(r, depth + 1);
            if (rc)
                return rc;
        }
        jl_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            jl_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return 0;
        }
        return -1;
    }
}

static int jl_value(jl_reader *r, int depth)
{
    if (r->p >= r->end)
        return -1;
    char c = *r->p;
    if (c == '{' || c == '[')
        return jl_container(r, depth, 0);
    if (c == '"')
        return jl_string(r, NULL, NULL, NULL);
    static const char *const lit[3] = { "true", "false", "null" };
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lit[i]);
        if ((size_t)(r->end - r->p) >= n && memcmp(r->p, lit[i], n) == 0) {
            r->p += n;
            return 0;
        }
    }
    const char *p = r->p;
    if (p < r->end && *p == '-')
        p++;
    if (p >= r->end || !(*p >= '0' && *p <= '9'))
        return -1;
    if (*p == '0')
        p++;
    else
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    if (p < r->end && *p == '.') {
        p++;
        if (p >= r->end || !(*p >= '0' && *p <= '9'))
            return -1;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= r->end || !(*p >= '0' && *p <= '9'))
            return -1;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    r->p = p;
    return 0;
}

/* Reads one JSON line (an object) and decodes its top-level "text" string into the scratch. */
static pt_status jl_line(prep_work *w, prep_unit *u, const char *line, size_t len, int64_t lineno, char **key,
                         size_t *key_cap, size_t *text_n)
{
    const char *path = w->in->path[u->file];
    jl_reader r = { .p = line, .end = line + len, .key = *key, .key_cap = *key_cap, .text = &u->scratch,
                    .text_n = text_n, .text_cap = &u->scratch_cap };
    *text_n = 0;
    jl_ws(&r);
    int rc = r.p < r.end && *r.p == '{' ? jl_container(&r, 0, 1) : -1;
    if (rc == 0) {
        jl_ws(&r);
        if (r.p != r.end)
            rc = -1;
    }
    *key = r.key;
    *key_cap = r.key_cap;
    if (rc == -2)
        return pt_fail(PT_ENOMEM, "%s:%lld: out of memory decoding the line", path, (long long)lineno);
    if (rc != 0)
        return pt_fail(PT_EFORMAT, "%s:%lld: not valid JSON (at byte %lld of the line); each line must be one object "
                                   "with a \"text\" string",
                       path, (long long)lineno, (long long)(r.p - line) + 1);
    if (!r.found)
        return pt_fail(PT_EFORMAT, "%s:%lld: no \"text\" string in this JSON line; use --format text for plain text",
                       path, (long long)lineno);
    return PT_OK;
}

static pt_status encode_jsonl(prep_work *w, prep_unit *u)
{
    int64_t line = u->line;
    size_t i = 0, text_n = 0;
    char *key = NULL;
    size_t key_cap = 0;
    pt_status st = PT_OK;
    while (i < u->len && st == PT_OK) {
        size_t j = i;
        while (j < u->len && u->buf[j] != '\n')
            j++;
        size_t k = i;
        while (k < j && isspace((unsigned char)u->buf[k]))
            k++;
        if (k < j) {
            st = jl_line(w, u, u->buf + i, j - i, line, &key, &key_cap, &text_n);
            if (st == PT_OK)
                st = push_eot(w, &u->ids);
            if (st == PT_OK)
                st = pt_tokenizer_encode(w->tok, u->scratch ? u->scratch : "", text_n, w->flags, &u->ids);
            u->docs++;
        }
        line++;
        i = j + 1;
    }
    free(key);
    return st;
}

static void encode_unit(prep_work *w, prep_unit *u)
{
    pt_status st = PT_OK;
    if (u->jsonl) {
        st = encode_jsonl(w, u);
    } else {
        if (u->doc_start) {
            st = push_eot(w, &u->ids);
            u->docs = 1;
        }
        if (st == PT_OK && u->len)
            st = pt_tokenizer_encode(w->tok, u->buf, u->len, w->flags, &u->ids);
    }
    if (st != PT_OK) {
        u->st = st;
        snprintf(u->err, sizeof u->err, "%s", pt_last_error());
    }
}

/* The pipeline: a ring of K unit slots. The main thread reads units into free slots (sequence
 * numbers q = 0, 1, ...; slot q mod K) and writes encoded ones in order; the worker threads
 * (started once, so the tokenizer's per-thread caches stay warm) take filled units in order and
 * encode them. Which thread encodes a unit never changes its tokens. */
enum { SLOT_FREE = 0, SLOT_FILLED, SLOT_ENCODED };

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    prep_work *w;
    int *state;       /* per slot */
    int K;
    int64_t filled;   /* units < filled are filled (or encoded, or written) */
    int64_t taken;    /* the next unit a worker takes */
    int quit, n;
    pthread_t tid[256];
} prep_pipe;

static void *pipe_worker(void *arg)
{
    prep_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->taken >= p->filled)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->quit)
            break;
        int64_t q = p->taken++;
        pthread_mutex_unlock(&p->mu);
        encode_unit(p->w, &p->w->units[q % p->K]);
        pthread_mutex_lock(&p->mu);
        p->state[q % p->K] = SLOT_ENCODED;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts n workers (at least one, or 0 when none could start: the caller then encodes). */
static void pipe_start(prep_pipe *p, prep_work *w, int *state, int K, int n)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->w = w;
    p->state = state;
    p->K = K;
    for (p->n = 0; p->n < n && p->n < 256; p->n++)
        if (pthread_create(&p->tid[p->n], NULL, pipe_worker, p) != 0)
            break; /* fewer threads: slower, same output */
}

/* Hands unit q (just read into its slot) to the workers. */
static void pipe_push(prep_pipe *p, int64_t q)
{
    pthread_mutex_lock(&p->mu);
    p->state[q % p->K] = SLOT_FILLED;
    p->filled = q + 1;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    if (p->n == 0) { /* no worker thread: encode here */
        p->taken = q + 1;
        encode_unit(p->w, &p->w->units[q % p->K]);
        p->state[q % p->K] = SLOT_ENCODED;
    }
}

/* Waits until unit q is encoded. */
static void pipe_wait(prep_pipe *p, int64_t q)
{
    pthread_mutex_lock(&p->mu);
    while (p->state[q % p->K] != SLOT_ENCODED)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void pipe_stop(prep_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
}

/* ---- output ---- */

typedef struct {
    const char *out;   /* DIR or FILE.bin */
    int one_file;
    char name[256];    /* shard name prefix (the folder's name) */
    int vocab;
    int64_t shard_tokens, val_tokens; /* val_tokens < 0: not known yet */
    pt_token_writer *w;
    int w_val;
    int index;         /* next shard index */
    cJSON *shards;
    int64_t val_done, train_done;
} prep_sink;

static pt_status sink_open(prep_sink *s, int val)
{
    char path[PATH_MAX];
    if (s->one_file)
        snprintf(path, sizeof path, "%s", s->out);
    else
        snprintf(path, sizeof path, "%s/%s_%s_%06d.bin", s->out, s->name, val ? "val" : "train", s->index);
    PT_CHECK(pt_shard_writer_open(path, s->vocab, &s->w));
    s->w_val = val;
    return PT_OK;
}

static pt_status sink_close(prep_sink *s)
{
    if (!s->w)
        return PT_OK;
    int64_t n = 0;
    pt_token_writer *w = s->w;
    s->w = NULL;
    PT_CHECK(pt_token_writer_commit(w, &n));
    char file[PATH_MAX];
    if (s->one_file) {
        const char *b = strrchr(s->out, '/');
        snprintf(file, sizeof file, "%s", b ? b + 1 : s->out);
    } else {
        snprintf(file, sizeof file, "%s_%s_%06d.bin", s->name, s->w_val ? "val" : "train", s->index);
    }
    s->index++;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "file", file) ||
        !cJSON_AddStringToObject(o, "split", s->one_file ? "all" : s->w_val ? "val" : "train") ||
        !cJSON_AddNumberToObject(o, "tokens", (double)n)) {
        cJSON_Delete(o);
        return pt_fail(PT_ENOMEM, "out of memory writing the sidecar");
    }
    cJSON_AddItemToArray(s->shards, o);
    return PT_OK;
}

static pt_status sink_append(prep_sink *s, const int32_t *t, size_t n)
{
    while (n > 0) {
        if (s->one_file) {
            if (!s->w)
                PT_CHECK(sink_open(s, 0));
            PT_CHECK(pt_token_writer_append(s->w, t, n));
            s->train_done += (int64_t)n;
            return PT_OK;
        }
        int val = s->val_done < s->val_tokens;
        if (s->w && s->w_val != val)
            PT_CHECK(sink_close(s));
        if (!s->w)
            PT_CHECK(sink_open(s, val));
        int64_t room = s->shard_tokens - pt_token_writer_count(s->w);
        if (val && s->val_tokens - s->val_done < room)
            room = s->val_tokens - s->val_done;
        size_t take = (int64_t)n < room ? n : (size_t)room;
        PT_CHECK(pt_token_writer_append(s->w, t, take));
        if (val)
            s->val_done += (int64_t)take;
        else
            s->train_done += (int64_t)take;
        t += take;
        n -= take;
        if (pt_token_writer_count(s->w) >= s->shard_tokens || (val && s->val_done >= s->val_tokens))
            PT_CHECK(sink_close(s));
    }
    return PT_OK;
}

/* The default validation split: 1% of the estimated tokens, at least min(10%, 32768) (llm.c's
 * tinyshakespeare split) and at most 10M. */
static int64_t default_val_tokens(int64_t est)
{
    int64_t v = est / 100, floor_ = est / 10 < 32768 ? est / 10 : 32768;
    if (v < floor_)
        v = floor_;
    return v > 10000000 ? 10000000 : v;
}

static pt_status write_sidecar(const pt_prepare_opts *o, const pt_tokenizer *tok, prep_sink *s,
                               const pt_prepare_result *r, char *path, size_t cap)
{
    if (s->one_file)
        snprintf(path, cap, "%s.json", o->output);
    else
        snprintf(path, cap, "%s/dataset.json", o->output);
    cJSON *root = cJSON_CreateObject(), *tk = cJSON_CreateObject();
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)pt_tokenizer_fingerprint(tok));
    int ok = root && tk && cJSON_AddStringToObject(root, "format", "pipetrain-dataset") &&
             cJSON_AddNumberToObject(root, "version", 1) && cJSON_AddStringToObject(tk, "name", pt_tokenizer_name(tok)) &&
             cJSON_AddNumberToObject(tk, "vocab_size", pt_tokenizer_vocab_size(tok)) &&
             cJSON_AddStringToObject(tk, "fingerprint", fp) &&
             cJSON_AddNumberToObject(tk, "eot", pt_tokenizer_eot(tok)) &&
             cJSON_AddStringToObject(root, "shard_format",
                                     s->vocab <= 65536 ? "llm.c uint16 (magic 20240520, version 1)"
                                                       : "llm.c uint32 (magic 20240801, version 7)") &&
             cJSON_AddNumberToObject(root, "documents", (double)r->documents) &&
             cJSON_AddNumberToObject(root, "input_bytes", (double)r->bytes) &&
             cJSON_AddNumberToObject(root, "tokens", (double)r->tokens) &&
             cJSON_AddNumberToObject(root, "val_tokens", (double)r->val_tokens) &&
             cJSON_AddNumberToObject(root, "train_tokens", (double)r->train_tokens);
    if (!ok) {
        cJSON_Delete(root);
        cJSON_Delete(tk);
        return pt_fail(PT_ENOMEM, "out of memory writing the sidecar");
    }
    cJSON_AddItemToObject(root, "tokenizer", tk);
    cJSON_AddItemToObject(root, "shards", s->shards);
    s->shards = NULL;
    pt_status st = pt_json_write_file(path, root, 0);
    cJSON_Delete(root);
    return st;
}

static void progress(const pt_prepare_opts *o, int64_t done, int64_t total, int64_t t0, int final)
{
    if (!o->progress || total < PREP_PROGRESS_MIN_BYTES)
        return;
    double s = pt_seconds_between(t0, pt_now_ns());
    double mbs = s > 0 ? (double)done / 1e6 / s : 0;
    double eta = mbs > 0 ? (double)(total - done) / 1e6 / mbs : 0;
    fprintf(stderr, "\rprepare: %5.1f%% of %.1f MB, %.1f MB/s, ETA %.0f s   %s", 100.0 * (double)done / (double)total,
            (double)total / 1e6, mbs, eta < 0 ? 0 : eta, final ? "\n" : "");
    fflush(stderr);
}

pt_status pt_prepare(const pt_prepare_opts *o, pt_prepare_result *r)
{
    memset(r, 0, sizeof *r);
    if (!o->output || !o->n_inputs)
        return pt_fail(PT_EINVAL, "prepare needs --input and --output");
    size_t olen = strlen(o->output);
    int one_file = olen > 4 && strcmp(o->output + olen - 4, ".bin") == 0;
    if (one_file && o->val_tokens >= 0)
        return pt_fail(PT_EINVAL, "--val-tokens needs a folder --output (shards NAME_val_*.bin); a single FILE.bin "
                                  "keeps its last tenth for eval");
    int64_t shard_tokens = o->shard_tokens > 0 ? o->shard_tokens : PREP_DEFAULT_SHARD_TOKENS;
    if (shard_tokens > PT_SHARD_MAX_TOKENS)
        return pt_fail(PT_EINVAL, "--shard-tokens %lld is more than an llm.c shard holds (%d)", (long long)shard_tokens,
                       PT_SHARD_MAX_TOKENS);
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    if (threads > 256)
        threads = 256;

    int64_t t0 = pt_now_ns();
    pt_status st = PT_OK;
    pt_tokenizer *tok = NULL;
    prep_inputs in = { 0 };
    prep_unit *units = NULL;
    prep_pipe *pipe = NULL;
    int *state = NULL;
    int pipe_on = 0;
    prep_reader rd = { 0 };
    prep_sink sink = { 0 };
    int n_units = threads * PREP_UNITS_PER_THREAD;
    PT_TRY(pt_tokenizer_open(o->tokenizer ? o->tokenizer : "byte", &tok), out);
    for (int i = 0; i < o->n_inputs; i++)
        PT_TRY(inputs_expand(&in, o->inputs[i], o->format), out);
    PT_TRY(check_output_not_input(&in, o->output, one_file), out);
    int64_t total = 0;
    int known = 1;
    for (int i = 0; i < in.n; i++) {
        if (in.size[i] < 0)
            known = 0;
        else
            total += in.size[i];
    }
    if (!one_file) {
        struct stat sb;
        if (stat(o->output, &sb) != 0 && (st = pt_mkdirs(o->output)) != PT_OK)
            goto out;
        if (stat(o->output, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            st = pt_fail(PT_EINVAL, "--output %s is not a folder; give a folder, or FILE.bin for one file", o->output);
            goto out;
        }
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", o->output);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/')
            tmp[--n] = 0;
        const char *b = strrchr(tmp, '/');
        snprintf(sink.name, sizeof sink.name, "%s", b ? b + 1 : tmp);
        if (!sink.name[0] || strcmp(sink.name, ".") == 0 || strcmp(sink.name, "..") == 0)
            snprintf(sink.name, sizeof sink.name, "data");
    }
    const char *tname = pt_tokenizer_name(tok);
    rd.in = &in;
    rd.file = -1;
    rd.unit = o->unit_bytes > 0 ? o->unit_bytes : PREP_UNIT_DEFAULT;
    rd.can_cut = strcmp(tname, "byte") == 0 || strcmp(tname, "gpt2") == 0 || strcmp(tname, "cl100k") == 0 ||
                 strcmp(tname, "o200k") == 0;
    sink.out = o->output;
    sink.one_file = one_file;
    sink.vocab = pt_tokenizer_vocab_size(tok);
    sink.shard_tokens = shard_tokens;
    sink.val_tokens = o->val_tokens; /* < 0: set from the first unit */
    sink.shards = cJSON_CreateArray();
    units = calloc((size_t)n_units, sizeof *units);
    pipe = calloc(1, sizeof *pipe);
    state = calloc((size_t)n_units, sizeof *state);
    if (!units || !pipe || !state || !sink.shards) {
        st = pt_fail(PT_ENOMEM, "out of memory starting prepare");
        goto out;
    }
    prep_work w = { .tok = tok, .flags = o->allow_special ? PT_TOK_ALLOW_SPECIAL : 0, .eot = pt_tokenizer_eot(tok),
                    .in = &in, .units = units };
    int64_t last_progress = t0;
    pipe_start(pipe, &w, state, n_units, threads);
    pipe_on = 1;
    int64_t q_fill = 0, q_write = 0;
    int eof = 0;
    for (;;) {
        /* read ahead into every free slot */
        while (!eof && q_fill - q_write < n_units) {
            int got = 0;
            PT_TRY(reader_next(&rd, &units[q_fill % n_units], &got), out);
            if (!got) {
                eof = 1;
                break;
            }
            pipe_push(pipe, q_fill++);
        }
        if (q_write == q_fill)
            break;
        /* write the oldest unit once it is encoded */
        pipe_wait(pipe, q_write);
        prep_unit *u = &units[q_write % n_units];
        if (u->st != PT_OK) {
            st = pt_fail(u->st, "%s", u->err);
            goto out;
        }
        if (q_write == 0 && sink.val_tokens < 0) {
            /* estimate the corpus' tokens from the first unit's tokens per byte (the whole corpus
             * when it is that unit: the read-ahead has seen the end by now, n_units >= 4) */
            int64_t est = eof && q_fill == 1 ? (int64_t)u->ids.n
                          : known && u->len > 0 ? (int64_t)((double)total * (double)u->ids.n / (double)u->len)
                                                : 100000000;
            sink.val_tokens = one_file ? 0 : default_val_tokens(est);
        }
        PT_TRY(sink_append(&sink, u->ids.ids, u->ids.n), out);
        r->documents += u->docs;
        r->tokens += (int64_t)u->ids.n;
        state[q_write % n_units] = SLOT_FREE; /* only the main thread touches a written slot */
        q_write++;
        int64_t now = pt_now_ns();
        if (pt_seconds_between(last_progress, now) >= 0.5) {
            progress(o, rd.bytes_read, total, t0, 0);
            last_progress = now;
        }
    }
    if (!one_file && r->tokens == 0) {
        st = pt_fail(PT_EINVAL, "the inputs hold no text (0 tokens); check --input");
        goto out;
    }
    if (!one_file && sink.train_done == 0) {
        st = pt_fail(PT_EINVAL,
                     "all %lld tokens went to the validation split (--val-tokens %lld); give more input or a smaller "
                     "--val-tokens",
                     (long long)r->tokens, (long long)sink.val_tokens);
        goto out;
    }
    if (one_file && !sink.w)
        PT_TRY(sink_open(&sink, 0), out); /* an empty corpus is an empty file */
    PT_TRY(sink_close(&sink), out);
    r->bytes = rd.bytes_read;
    r->val_tokens = sink.val_done;
    r->train_tokens = sink.train_done;
    r->shards = sink.index;
    r->threads = threads;
    PT_TRY(write_sidecar(o, tok, &sink, r, r->sidecar, sizeof r->sidecar), out);
    r->seconds = pt_seconds_between(t0, pt_now_ns());
    if (known)
        progress(o, rd.bytes_read, total, t0, 1);
out:
    if (pipe_on)
        pipe_stop(pipe); /* before the units go: a worker may still be encoding one */
    if (sink.w)
        pt_token_writer_abort(sink.w);
    cJSON_Delete(sink.shards);
    if (rd.f && rd.f != stdin)
        fclose(rd.f);
    free(rd.carry);
    for (int i = 0; units && i < n_units; i++) {
        free(units[i].buf);
        free(units[i].ids.ids);
        free(units[i].scratch);
    }
    free(units);
    free(pipe);
    free(state);
    inputs_free(&in);
    pt_tokenizer_close(tok);
    return st;
}
