/* CSV import/export in the layout of PyTorch's torch.distributed.pipelining schedules
 * (_dump_csv / _load_csv): one row per rank, each cell "<stage><type><microbatch>" such as
 * 0F0, 1B3, 2I0, 2W0, 0SEND_F1, 1RECV_F1, 1SEND_B0, 0RECV_B0, 1REDUCE_GRAD. The stage is the
 * virtual stage (the rank is the row); a send names the sending stage and a receive the
 * receiving stage, so peers follow from the stage map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

enum csv_type { CT_F, CT_B, CT_I, CT_W, CT_SEND_F, CT_RECV_F, CT_SEND_B, CT_RECV_B, CT_REDUCE, CT_SKIP, CT_COUNT };

static const struct {
    const char *text;
    int has_mb;
} csv_types[CT_COUNT] = {
    [CT_F] = { "F", 1 },           [CT_B] = { "B", 1 },           [CT_I] = { "I", 1 },
    [CT_W] = { "W", 1 },           [CT_SEND_F] = { "SEND_F", 1 }, [CT_RECV_F] = { "RECV_F", 1 },
    [CT_SEND_B] = { "SEND_B", 1 }, [CT_RECV_B] = { "RECV_B", 1 }, [CT_REDUCE] = { "REDUCE_GRAD", 0 },
    [CT_SKIP] = { NULL, 0 },
};

pt_status pt_sched_to_csv(const pt_schedule *s, char **text_out)
{
    pt_sbuf b = { 0 };
    int V = s->n_chunks;
    for (int r = 0; r < s->n_ranks; r++) {
        int first = 1;
        for (int i = 0; i < s->n_actions[r]; i++) {
            const pt_action *a = &s->actions[r][i];
            const char *t = NULL;
            switch (a->kind) {
            case PT_ACT_FORWARD: t = "F"; break;
            case PT_ACT_BACKWARD: t = "B"; break;
            case PT_ACT_BACKWARD_INPUT: t = "I"; break;
            case PT_ACT_BACKWARD_WEIGHT: t = "W"; break;
            case PT_ACT_SEND_ACT: t = "SEND_F"; break;
            case PT_ACT_RECV_ACT: t = "RECV_F"; break;
            case PT_ACT_SEND_GRAD: t = "SEND_B"; break;
            case PT_ACT_RECV_GRAD: t = "RECV_B"; break;
            case PT_ACT_REDUCE_GRADS: {
                /* one REDUCE_GRAD per chunk, in stage order */
                int done_below = -1;
                for (int n = 0; n < V; n++) {
                    int best = -1;
                    for (int c = 0; c < V; c++) {
                        int v = s->stage_of[r * V + c];
                        if (v > done_below && (best < 0 || v < best))
                            best = v;
                    }
                    pt_sbuf_printf(&b, "%s%dREDUCE_GRAD", first ? "" : ",", best);
                    first = 0;
                    done_below = best;
                }
                continue;
            }
            case PT_ACT_OPTIMIZER_STEP: continue; /* no PyTorch form */
            case PT_ACT_KIND_COUNT: continue;
            }
            if ((unsigned)a->chunk >= (unsigned)V) {
                free(b.p);
                return pt_fail(PT_EINVAL, "CSV export: rank %d action %d has chunk %d outside 0..%d; validate first",
                               r, i, a->chunk, V - 1);
            }
            pt_sbuf_printf(&b, "%s%d%s%d", first ? "" : ",", s->stage_of[r * V + a->chunk], t, a->microbatch);
            first = 0;
        }
        pt_sbuf_puts(&b, "\n");
    }
    return pt_sbuf_finish(&b, "schedule CSV", text_out);
}

typedef struct cell {
    int stage, type, mb;
} cell;

typedef struct csv_row {
    cell *cells;
    int n, cap;
} csv_row;

static void free_rows(csv_row *rows, int n)
{
    for (int i = 0; i < n; i++)
        free(rows[i].cells);
    free(rows);
}

static pt_status parse_cell(const char *p, size_t len, int row, int col, cell *out)
{
    const char *end = p + len;
    const char *q = p;
    long v = 0;
    int nd = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (++nd > 9)
            return pt_fail(PT_EFORMAT, "row %d, cell %d: stage number is too large", row, col);
        v = v * 10 + (*q++ - '0');
    }
    if (nd == 0)
        return pt_fail(PT_EFORMAT, "row %d, cell %d: \"%.*s\" does not start with a stage number (like 0F3)", row,
                       col, (int)(len > 32 ? 32 : len), p);
    if (v >= PT_SCHED_MAX_VSTAGES)
        return pt_fail(PT_EFORMAT, "row %d, cell %d: stage %ld is out of range (at most %d)", row, col, v,
                       PT_SCHED_MAX_VSTAGES - 1);
    out->stage = (int)v;
    out->type = -1;
    size_t best = 0;
    for (int t = 0; t < CT_SKIP; t++) {
        size_t n = strlen(csv_types[t].text);
        if ((size_t)(end - q) >= n && strncmp(q, csv_types[t].text, n) == 0 && n > best) {
            best = n;
            out->type = t;
        }
    }
    static const char *const skipped[] = { "UNSHARD", "RESHARD" };
    for (size_t k = 0; k < 2; k++) {
        size_t n = strlen(skipped[k]);
        if ((size_t)(end - q) == n && strncmp(q, skipped[k], n) == 0) {
            out->type = CT_SKIP;
            out->mb = -1;
            return PT_OK;
        }
    }
    if (out->type < 0)
        return pt_fail(PT_EFORMAT,
                       "row %d, cell %d: unknown action \"%.*s\"; expected F, B, I, W, SEND_F, RECV_F, SEND_B, "
                       "RECV_B or REDUCE_GRAD after the stage",
                       row, col, (int)(len > 32 ? 32 : len), p);
    q += best;
    out->mb = -1;
    if (csv_types[out->type].has_mb) {
        v = 0;
        nd = 0;
        while (q < end && *q >= '0' && *q <= '9') {
            if (++nd > 9)
                return pt_fail(PT_EFORMAT, "row %d, cell %d: micro-batch number is too large", row, col);
            v = v * 10 + (*q++ - '0');
        }
        if (nd == 0)
            return pt_fail(PT_EFORMAT, "row %d, cell %d: %s needs a micro-batch number after it", row, col,
                           csv_types[out->type].text);
        if (v >= PT_SCHED_MAX_MICROBATCHES)
            return pt_fail(PT_EFORMAT, "row %d, cell %d: micro-batch %ld is out of range (at most %d)", row, col, v,
                           PT_SCHED_MAX_MICROBATCHES - 1);
        out->mb = (int)v;
    }
    if (q != end)
        return pt_fail(PT_EFORMAT, "row %d, cell %d: unexpected \"%.*s\" at the end of \"%.*s\"", row, col,
                       (int)(end - q > 16 ? 16 : end - q), q, (int)(len > 32 ? 32 : len), p);
    return PT_OK;
}

static pt_status read_rows(const char *text, csv_row **rows_out, int *n_rows_out)
{
    csv_row *rows = NULL;
    int n_rows = 0, cap_rows = 0;
    long long n_cells = 0;
    const char *line = text;
    pt_status st = PT_OK;
    while (*line) {
        const char *nl = strchr(line, '\n');
        const char *lend = nl ? nl : line + strlen(line);
        if (n_rows == PT_SCHED_MAX_RANKS) {
            st = pt_fail(PT_EFORMAT, "row %d: more than %d rows (ranks)", n_rows + 1, PT_SCHED_MAX_RANKS);
            goto fail;
        }
        if (n_rows == cap_rows) {
            int cap = cap_rows ? cap_rows * 2 : 8;
            csv_row *q = realloc(rows, (size_t)cap * sizeof *q);
            if (!q) {
                st = pt_fail(PT_ENOMEM, "schedule CSV: out of memory");
                goto fail;
            }
            memset(q + cap_rows, 0, (size_t)(cap - cap_rows) * sizeof *q);
            rows = q;
            cap_rows = cap;
        }
        csv_row *row = &rows[n_rows++];
        int col = 0;
        const char *p = line;
        while (p <= lend) {
            const char *comma = memchr(p, ',', (size_t)(lend - p));
            const char *cend = comma ? comma : lend;
            col++;
            const char *a = p, *b = cend;
            while (a < b && (*a == ' ' || *a == '\t' || *a == '\r' || *a == '"'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r' || b[-1] == '"'))
                b--;
            if (b > a) {
                cell c;
                PT_TRY(parse_cell(a, (size_t)(b - a), n_rows, col, &c), fail);
                if (c.type != CT_SKIP) {
                    if (++n_cells > 4LL * PT_SCHED_MAX_WORK) {
                        st = pt_fail(PT_EFORMAT, "row %d: more than %d actions in all; refused", n_rows,
                                     4 * PT_SCHED_MAX_WORK);
                        goto fail;
                    }
                    if (row->n == row->cap) {
                        int cap = row->cap ? row->cap * 2 : 16;
                        cell *q = realloc(row->cells, (size_t)cap * sizeof *q);
                        if (!q) {
                            st = pt_fail(PT_ENOMEM, "schedule CSV: out of memory");
                            goto fail;
                        }
                        row->cells = q;
                        row->cap = cap;
                    }
                    row->cells[row->n++] = c;
                }
            }
            if (!comma)
                break;
            p = comma + 1;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    /* a trailing empty line is the file's last newline, not a rank */
    while (n_rows > 0 && rows[n_rows - 1].n == 0)
        n_rows--;
    *rows_out = rows;
    *n_rows_out = n_rows;
    return PT_OK;
fail:
    free_rows(rows, cap_rows);
    return st;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

pt_status pt_sched_from_csv(const char *text, const char *name, pt_schedule **out)
{
    *out = NULL;
    csv_row *rows = NULL;
    int P = 0;
    PT_CHECK(read_rows(text, &rows, &P));
    pt_status st = PT_OK;
    int *stage_of = NULL, *owner = NULL, *n_have = NULL;
    pt_schedule *s = NULL, *lowered = NULL;
    if (P == 0) {
        st = pt_fail(PT_EFORMAT, "row 1: the CSV has no actions; expect one row of actions per rank");
        goto done;
    }
    int S = 0, M = 0, any_comm = 0;
    for (int r = 0; r < P; r++)
        for (int k = 0; k < rows[r].n; k++) {
            const cell *c = &rows[r].cells[k];
            if (c->stage + 1 > S)
                S = c->stage + 1;
            if (c->mb + 1 > M)
                M = c->mb + 1;
            any_comm |= c->type >= CT_SEND_F && c->type <= CT_RECV_B;
        }
    if (S % P != 0) {
        st = pt_fail(PT_EFORMAT, "CSV: %d stages on %d rows (ranks); every rank must hold the same number of stages",
                     S, P);
        goto done;
    }
    if (M == 0) {
        st = pt_fail(PT_EFORMAT, "CSV: no action names a micro-batch; expect cells like 0F0");
        goto done;
    }
    int V = S / P;
    stage_of = malloc((size_t)S * sizeof *stage_of);
    owner = malloc((size_t)S * sizeof *owner);
    n_have = calloc((size_t)P, sizeof *n_have);
    if (!stage_of || !owner || !n_have) {
        st = pt_fail(PT_ENOMEM, "schedule CSV: out of memory");
        goto done;
    }
    for (int v = 0; v < S; v++)
        owner[v] = -1;
    for (int r = 0; r < P; r++)
        for (int k = 0; k < rows[r].n; k++) {
            int v = rows[r].cells[k].stage;
            if (owner[v] == r)
                continue;
            if (owner[v] >= 0) {
                st = pt_fail(PT_EFORMAT, "row %d, cell %d: stage %d also appears on row %d; a stage lives on one rank",
                             r + 1, k + 1, v, owner[v] + 1);
                goto done;
            }
            if (n_have[r] == V) {
                st = pt_fail(PT_EFORMAT, "row %d, cell %d: this rank uses more than %d stages (%d stages / %d ranks)",
                             r + 1, k + 1, V, S, P);
                goto done;
            }
            owner[v] = r;
            stage_of[r * V + n_have[r]++] = v;
        }
    for (int r = 0; r < P; r++) {
        if (n_have[r] != V) {
            st = pt_fail(PT_EFORMAT, "row %d: this rank uses %d stages; every rank needs %d (%d stages / %d ranks)",
                         r + 1, n_have[r], V, S, P);
            goto done;
        }
        qsort(stage_of + r * V, (size_t)V, sizeof *stage_of, cmp_int);
    }
    PT_TRY(pt_sched_create(name ? name : "csv", P, V, M, stage_of, &s), done);
    for (int r = 0; r < P; r++) {
        int have_ar = 0, last_ar = 0;
        for (int k = 0; k < rows[r].n; k++) {
            const cell *c = &rows[r].cells[k];
            int chunk = 0;
            while (stage_of[r * V + chunk] != c->stage)
                chunk++;
            pt_action a = { .microbatch = c->mb, .chunk = chunk, .peer = -1 };
            int peer_stage = -2;
            switch ((enum csv_type)c->type) {
            case CT_F: a.kind = PT_ACT_FORWARD; break;
            case CT_B: a.kind = PT_ACT_BACKWARD; break;
            case CT_I: a.kind = PT_ACT_BACKWARD_INPUT; break;
            case CT_W: a.kind = PT_ACT_BACKWARD_WEIGHT; break;
            case CT_SEND_F: a.kind = PT_ACT_SEND_ACT; peer_stage = c->stage + 1; break;
            case CT_RECV_F: a.kind = PT_ACT_RECV_ACT; peer_stage = c->stage - 1; break;
            case CT_SEND_B: a.kind = PT_ACT_SEND_GRAD; peer_stage = c->stage - 1; break;
            case CT_RECV_B: a.kind = PT_ACT_RECV_GRAD; peer_stage = c->stage + 1; break;
            case CT_REDUCE:
                if (!last_ar)
                    PT_TRY(pt_sched_append(s, r, (pt_action){ PT_ACT_REDUCE_GRADS, -1, -1, -1 }), done);
                have_ar = last_ar = 1;
                continue;
            case CT_SKIP:
            case CT_COUNT: continue;
            }
            last_ar = 0;
            if (peer_stage != -2) {
                if (peer_stage < 0 || peer_stage >= S) {
                    st = pt_fail(PT_EFORMAT, "row %d, cell %d: stage %d has no neighbour stage %d to talk to", r + 1,
                                 k + 1, c->stage, peer_stage);
                    goto done;
                }
                a.peer = owner[peer_stage];
            }
            PT_TRY(pt_sched_append(s, r, a), done);
        }
        if (!have_ar)
            PT_TRY(pt_sched_append(s, r, (pt_action){ PT_ACT_REDUCE_GRADS, -1, -1, -1 }), done);
        PT_TRY(pt_sched_append(s, r, (pt_action){ PT_ACT_OPTIMIZER_STEP, -1, -1, -1 }), done);
    }
    if (!any_comm) {
        PT_TRY(pt_sched_lower(s, &lowered), done);
        pt_sched_destroy(s);
        s = lowered;
    }
    *out = s;
    s = NULL;
done:
    pt_sched_destroy(s);
    free(n_have);
    free(owner);
    free(stage_of);
    free_rows(rows, P > 0 ? P : 0);
    return st;
}
