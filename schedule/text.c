/* The text form of a schedule (docs/schedules.md):
 *
 *     # pipetrain-schedule v1 name=1f1b ranks=2 chunks=1 microbatches=2 stages=0,1
 *     rank0: F0.0 SA0.0>1 F1.0 SA1.0>1 RG0.0<1 B0.0 RG1.0<1 B1.0 AR STEP
 *     rank1: RA0.0<0 F0.0 B0.0 SG0.0>0 RA1.0<0 F1.0 B1.0 SG1.0>0 AR STEP
 *
 * The reader reports errors as "line L:C: ..." and checks ranges, not schedule rules (that is
 * the validator's job), so a user can load a broken file and be told what is wrong with it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

#define HEADER_MAGIC "# pipetrain-schedule"
#define NUM_MAX 999999999

/* ---- writer ---- */

pt_status pt_sched_format(const pt_schedule *s, char **text_out)
{
    pt_sbuf b = { 0 };
    pt_sbuf_printf(&b, "%s v1 name=%s ranks=%d chunks=%d microbatches=%d stages=", HEADER_MAGIC,
                   s->name[0] ? s->name : "unnamed", s->n_ranks, s->n_chunks, s->n_microbatches);
    for (int k = 0; k < s->n_ranks * s->n_chunks; k++)
        pt_sbuf_printf(&b, k ? ",%d" : "%d", s->stage_of[k]);
    pt_sbuf_puts(&b, "\n");
    char tok[64];
    for (int r = 0; r < s->n_ranks; r++) {
        pt_sbuf_printf(&b, "rank%d:", r);
        for (int i = 0; i < s->n_actions[r]; i++) {
            pt_action_format(&s->actions[r][i], tok, sizeof tok);
            pt_sbuf_printf(&b, " %s", tok);
        }
        pt_sbuf_puts(&b, "\n");
    }
    return pt_sbuf_finish(&b, "schedule text", text_out);
}

/* ---- reader ---- */

typedef struct reader {
    const char *line; /* start of the current line */
    const char *p;    /* cursor */
    int lineno;
} reader;

static int col_of(const reader *rd, const char *at)
{
    return (int)(at - rd->line) + 1;
}

#define RFAIL(rd, at, ...) rfail((rd), (at), __VA_ARGS__)

static pt_status __attribute__((format(printf, 3, 4))) rfail(const reader *rd, const char *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pt_fail(PT_EFORMAT, "line %d:%d: %s", rd->lineno, col_of(rd, at), msg);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Reads an unsigned decimal number of at most 9 digits at rd->p. */
static pt_status read_num(reader *rd, const char *what, int *out)
{
    const char *start = rd->p;
    long v = 0;
    int n = 0;
    while (*rd->p >= '0' && *rd->p <= '9') {
        if (++n > 9)
            return RFAIL(rd, start, "%s is too large (at most %d)", what, NUM_MAX);
        v = v * 10 + (*rd->p - '0');
        rd->p++;
    }
    if (n == 0)
        return RFAIL(rd, start, "expected a number (%s) here", what);
    *out = (int)v;
    return PT_OK;
}

/* The word at rd->p ends at a blank, end of line or end of text. */
static int at_word_end(const reader *rd)
{
    return *rd->p == '\0' || *rd->p == '\n' || is_blank(*rd->p);
}

typedef struct header {
    char name[32];
    int P, V, M;
    int *stage_of; /* malloc'd, or NULL for the default */
    int n_stage_of;
} header;

static pt_status parse_header(reader *rd, header *h)
{
    rd->p += strlen(HEADER_MAGIC);
    int have_name = 0, have_p = 0, have_v = 0, have_m = 0, have_version = 0;
    for (;;) {
        while (is_blank(*rd->p))
            rd->p++;
        if (*rd->p == '\0' || *rd->p == '\n')
            break;
        const char *key = rd->p;
        if (!have_version) {
            if (strncmp(rd->p, "v1", 2) != 0 || !(is_blank(rd->p[2]) || rd->p[2] == '\n' || rd->p[2] == '\0'))
                return RFAIL(rd, key, "unknown format version; this build reads \"v1\" right after \"%s\"",
                             HEADER_MAGIC);
            rd->p += 2;
            have_version = 1;
            continue;
        }
        const char *eq = rd->p;
        while (*eq && *eq != '=' && *eq != '\n' && !is_blank(*eq))
            eq++;
        if (*eq != '=')
            return RFAIL(rd, key, "expected key=value in the header (name, ranks, chunks, microbatches, stages)");
        size_t klen = (size_t)(eq - key);
        rd->p = eq + 1;
        if (klen == 4 && strncmp(key, "name", 4) == 0) {
            const char *v = rd->p;
            while (!at_word_end(rd))
                rd->p++;
            size_t n = (size_t)(rd->p - v);
            if (n == 0 || n >= sizeof h->name)
                return RFAIL(rd, v, "name must have 1..%zu characters", sizeof h->name - 1);
            memcpy(h->name, v, n);
            h->name[n] = '\0';
            have_name = 1;
        } else if (klen == 5 && strncmp(key, "ranks", 5) == 0) {
            const char *v = rd->p;
            PT_CHECK(read_num(rd, "ranks", &h->P));
            if (h->P < 1 || h->P > PT_SCHED_MAX_RANKS)
                return RFAIL(rd, v, "ranks=%d is out of range 1..%d", h->P, PT_SCHED_MAX_RANKS);
            have_p = 1;
        } else if (klen == 6 && strncmp(key, "chunks", 6) == 0) {
            const char *v = rd->p;
            PT_CHECK(read_num(rd, "chunks", &h->V));
            if (h->V < 1 || h->V > PT_SCHED_MAX_CHUNKS)
                return RFAIL(rd, v, "chunks=%d is out of range 1..%d", h->V, PT_SCHED_MAX_CHUNKS);
            have_v = 1;
        } else if (klen == 12 && strncmp(key, "microbatches", 12) == 0) {
            const char *v = rd->p;
            PT_CHECK(read_num(rd, "microbatches", &h->M));
            if (h->M < 1 || h->M > PT_SCHED_MAX_MICROBATCHES)
                return RFAIL(rd, v, "microbatches=%d is out of range 1..%d", h->M, PT_SCHED_MAX_MICROBATCHES);
            have_m = 1;
        } else if (klen == 6 && strncmp(key, "stages", 6) == 0) {
            if (h->stage_of)
                return RFAIL(rd, key, "stages= is given twice");
            int cap = 16;
            h->stage_of = malloc((size_t)cap * sizeof *h->stage_of);
            if (!h->stage_of)
                return pt_fail(PT_ENOMEM, "schedule text: out of memory");
            for (;;) {
                if (h->n_stage_of == PT_SCHED_MAX_VSTAGES)
                    return RFAIL(rd, rd->p, "stages= has more than %d entries", PT_SCHED_MAX_VSTAGES);
                if (h->n_stage_of == cap) {
                    cap *= 2;
                    int *q = realloc(h->stage_of, (size_t)cap * sizeof *q);
                    if (!q)
                        return pt_fail(PT_ENOMEM, "schedule text: out of memory");
                    h->stage_of = q;
                }
                PT_CHECK(read_num(rd, "virtual stage", &h->stage_of[h->n_stage_of]));
                h->n_stage_of++;
                if (*rd->p != ',')
                    break;
                rd->p++;
            }
        } else {
            return RFAIL(rd, key, "unknown header key \"%.*s\"; keys are name, ranks, chunks, microbatches, stages",
                         (int)(klen > 32 ? 32 : klen), key);
        }
        if (!at_word_end(rd))
            return RFAIL(rd, rd->p, "unexpected character '%c' in the header", *rd->p);
    }
    if (!have_version)
        return RFAIL(rd, rd->p, "the header needs a version (\"v1\")");
    if (!have_name || !have_p || !have_v || !have_m)
        return RFAIL(rd, rd->line, "the header needs name=, ranks=, chunks= and microbatches=");
    if ((long long)h->P * h->V > PT_SCHED_MAX_VSTAGES)
        return RFAIL(rd, rd->line, "ranks x chunks = %lld is more than %d virtual stages", (long long)h->P * h->V,
                     PT_SCHED_MAX_VSTAGES);
    if (h->stage_of && h->n_stage_of != h->P * h->V)
        return RFAIL(rd, rd->line, "stages= has %d entries; it needs ranks x chunks = %d", h->n_stage_of,
                     h->P * h->V);
    return PT_OK;
}

/* Parses one action token at rd->p for a rank of schedule s. */
static pt_status parse_token(reader *rd, const pt_schedule *s, pt_action *a)
{
    const char *start = rd->p;
    const char *p = rd->p;
    a->microbatch = a->chunk = a->peer = -1;
    int kind = -1;
    if (strncmp(p, "STEP", 4) == 0) {
        kind = PT_ACT_OPTIMIZER_STEP;
        rd->p += 4;
    } else if (strncmp(p, "AR", 2) == 0) {
        kind = PT_ACT_REDUCE_GRADS;
        rd->p += 2;
    } else {
        static const struct {
            const char *t;
            pt_action_kind k;
        } pre[] = {
            { "SA", PT_ACT_SEND_ACT }, { "RA", PT_ACT_RECV_ACT }, { "SG", PT_ACT_SEND_GRAD }, { "RG", PT_ACT_RECV_GRAD },
            { "F", PT_ACT_FORWARD },   { "B", PT_ACT_BACKWARD },  { "I", PT_ACT_BACKWARD_INPUT },
            { "W", PT_ACT_BACKWARD_WEIGHT },
        };
        for (size_t k = 0; k < sizeof pre / sizeof pre[0]; k++) {
            size_t n = strlen(pre[k].t);
            if (strncmp(p, pre[k].t, n) == 0 && p[n] >= '0' && p[n] <= '9') {
                kind = (int)pre[k].k;
                rd->p += n;
                break;
            }
        }
        if (kind < 0) {
            const char *e = p;
            while (*e && *e != '\n' && !is_blank(*e) && e - p < 24)
                e++;
            return RFAIL(rd, start,
                         "unknown token \"%.*s\"; expected F/B/I/W<mb>.<chunk>, SA/SG<mb>.<chunk>>peer, "
                         "RA/RG<mb>.<chunk><peer, AR or STEP",
                         (int)(e - p), p);
        }
        const char *at = rd->p;
        PT_CHECK(read_num(rd, "micro-batch", &a->microbatch));
        if (a->microbatch >= s->n_microbatches)
            return RFAIL(rd, at, "micro-batch %d is out of range 0..%d (microbatches=%d)", a->microbatch,
                         s->n_microbatches - 1, s->n_microbatches);
        if (*rd->p != '.')
            return RFAIL(rd, rd->p, "expected '.' and a chunk after the micro-batch");
        rd->p++;
        at = rd->p;
        PT_CHECK(read_num(rd, "chunk", &a->chunk));
        if (a->chunk >= s->n_chunks)
            return RFAIL(rd, at, "chunk %d is out of range 0..%d (chunks=%d)", a->chunk, s->n_chunks - 1,
                         s->n_chunks);
        if (kind == PT_ACT_SEND_ACT || kind == PT_ACT_SEND_GRAD || kind == PT_ACT_RECV_ACT ||
            kind == PT_ACT_RECV_GRAD) {
            char dir = (kind == PT_ACT_SEND_ACT || kind == PT_ACT_SEND_GRAD) ? '>' : '<';
            if (*rd->p != dir)
                return RFAIL(rd, rd->p, "expected '%c' and the peer rank after %s%d.%d", dir,
                             pt_sched_kind_tokens[kind], a->microbatch, a->chunk);
            rd->p++;
            at = rd->p;
            PT_CHECK(read_num(rd, "peer rank", &a->peer));
            if (a->peer >= s->n_ranks)
                return RFAIL(rd, at, "peer rank %d is out of range 0..%d (ranks=%d)", a->peer, s->n_ranks - 1,
                             s->n_ranks);
        }
    }
    a->kind = (pt_action_kind)kind;
    if (!at_word_end(rd))
        return RFAIL(rd, rd->p, "unexpected character '%c' after %s", *rd->p, pt_sched_kind_tokens[kind]);
    return PT_OK;
}

pt_status pt_sched_parse(const char *text, pt_schedule **out)
{
    *out = NULL;
    reader rd = { .line = text, .p = text, .lineno = 1 };
    header h = { .P = 0 };
    pt_schedule *s = NULL;
    pt_status st = PT_OK;
    int next_rank = 0;
    long long work = 0;
    for (;;) {
        rd.p = rd.line;
        while (is_blank(*rd.p))
            rd.p++;
        if (*rd.p == '\0' || *rd.p == '\n') {
            /* blank line */
        } else if (!s && strncmp(rd.p, HEADER_MAGIC, strlen(HEADER_MAGIC)) == 0) {
            PT_TRY(parse_header(&rd, &h), done);
            PT_TRY(pt_sched_create(h.name, h.P, h.V, h.M, h.stage_of, &s), bad_create);
        } else if (*rd.p == '#') {
            /* comment */
        } else if (!s) {
            st = RFAIL(&rd, rd.p, "expected the header \"%s v1 name=... ranks=P chunks=V microbatches=M "
                                  "stages=...\" before any rank line",
                       HEADER_MAGIC);
            goto done;
        } else {
            const char *at = rd.p;
            int r = -1;
            if (strncmp(rd.p, "rank", 4) != 0) {
                st = RFAIL(&rd, at, "expected \"rank%d:\" at the start of the line", next_rank);
                goto done;
            }
            rd.p += 4;
            PT_TRY(read_num(&rd, "rank", &r), done);
            if (*rd.p != ':') {
                st = RFAIL(&rd, rd.p, "expected ':' after rank%d", r);
                goto done;
            }
            rd.p++;
            if (next_rank >= s->n_ranks) {
                st = RFAIL(&rd, at, "more rank lines than ranks=%d", s->n_ranks);
                goto done;
            }
            if (r != next_rank) {
                st = RFAIL(&rd, at, "expected rank%d here, found rank%d (one line per rank, in order)", next_rank, r);
                goto done;
            }
            for (;;) {
                while (is_blank(*rd.p))
                    rd.p++;
                if (*rd.p == '\0' || *rd.p == '\n')
                    break;
                pt_action a;
                PT_TRY(parse_token(&rd, s, &a), done);
                if (a.kind == PT_ACT_FORWARD && ++work > PT_SCHED_MAX_WORK) {
                    st = RFAIL(&rd, rd.p, "more than %d forward actions; schedules this large are refused",
                               PT_SCHED_MAX_WORK);
                    goto done;
                }
                if (s->n_actions[r] >= 4 * PT_SCHED_MAX_WORK) {
                    st = RFAIL(&rd, rd.p, "rank%d has more than %d actions", r, 4 * PT_SCHED_MAX_WORK);
                    goto done;
                }
                PT_TRY(pt_sched_append(s, r, a), done);
            }
            next_rank++;
        }
        const char *nl = strchr(rd.line, '\n');
        if (!nl)
            break;
        rd.line = nl + 1;
        rd.lineno++;
    }
    rd.p = rd.line + strlen(rd.line);
    if (!s) {
        st = RFAIL(&rd, rd.p, "no \"%s\" header found; is this a pipetrain schedule file?", HEADER_MAGIC);
        goto done;
    }
    if (next_rank != s->n_ranks) {
        st = RFAIL(&rd, rd.p, "found %d rank lines; ranks=%d needs one line per rank", next_rank, s->n_ranks);
        goto done;
    }
    *out = s;
    s = NULL;
    goto done;
bad_create:
    st = pt_fail_wrap(st, "line %d", rd.lineno);
done:
    free(h.stage_of);
    pt_sched_destroy(s);
    return st;
}

/* ---- files ---- */

static int ends_with_csv(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".csv") == 0;
}

static pt_status read_text_file(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "%s: cannot open (%s); check the path", path, strerror(errno));
    pt_sbuf b = { 0 };
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
        buf[n] = '\0';
        if (memchr(buf, '\0', n)) {
            fclose(f);
            free(b.p);
            return pt_fail(PT_EFORMAT, "%s: holds a NUL byte; a schedule file is text", path);
        }
        pt_sbuf_puts(&b, buf);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b.p);
        return pt_fail(PT_EIO, "%s: read error; check the file", path);
    }
    return pt_sbuf_finish(&b, path, out);
}

pt_status pt_sched_load(const char *path, pt_schedule **out)
{
    *out = NULL;
    char *text;
    PT_CHECK(read_text_file(path, &text));
    pt_status st;
    if (ends_with_csv(path)) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 4), base);
        for (char *c = name; *c; c++)
            if (is_blank(*c))
                *c = '_';
        st = pt_sched_from_csv(text, name[0] ? name : "csv", out);
    } else {
        st = pt_sched_parse(text, out);
    }
    free(text);
    if (st != PT_OK)
        return pt_fail_wrap(st, "%s", path);
    return PT_OK;
}

pt_status pt_sched_save(const pt_schedule *s, const char *path)
{
    char *text;
    PT_CHECK(ends_with_csv(path) ? pt_sched_to_csv(s, &text) : pt_sched_format(s, &text));
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(text);
        return pt_fail(PT_EIO, "%s: cannot create (%s); check the directory", path, strerror(errno));
    }
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fclose(f) != 0;
    free(text);
    if (bad)
        return pt_fail(PT_EIO, "%s: write failed (%s); check free space", path, strerror(errno));
    return PT_OK;
}
