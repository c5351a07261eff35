/* Checkpoint geometry: which elements of a whole tensor an entry holds (a range of a box's
 * row-major values, as at most 3 rectangles of the tensor's 2-D view), how a tensor-parallel
 * rank's slice of a tensor maps onto such pieces, whether a tensor's entries hold a set of
 * elements exactly once, and the copy from a decoded entry into a rank's slice. Pure arithmetic:
 * no file is read here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_internal.h"

static uint64_t min_u(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max_u(uint64_t a, uint64_t b) { return a > b ? a : b; }

uint64_t pt_ckpt_entry_numel(const pt_ckpt_entry *e)
{
    uint64_t n = 1;
    for (int d = 0; d < e->ndim && d < PT_CKPT_MAX_DIMS; d++)
        n *= (uint64_t)e->shape[d];
    return n;
}

static uint64_t box_w(const pt_ckpt_box *b) { return b->c1 - b->c0; }
static uint64_t box_area(const pt_ckpt_box *b) { return (b->r1 - b->r0) * (b->c1 - b->c0); }

pt_ckpt_box pt_ckpt_view_box(int ndim, const int64_t *shape)
{
    uint64_t R, K;
    pt_ckpt_view(ndim, shape, &R, &K);
    return (pt_ckpt_box){ 0, R, 0, K };
}

int pt_ckpt_box_rects(pt_ckpt_box b, uint64_t lo, uint64_t hi, pt_ckpt_box out[3])
{
    uint64_t w = box_w(&b);
    if (lo >= hi || w == 0)
        return 0;
    uint64_t ra = b.r0 + lo / w, ca = lo % w;             /* first value: row ra, column ca of the box */
    uint64_t rz = b.r0 + (hi - 1) / w, cz = (hi - 1) % w + 1; /* last value's row; columns [0, cz) there */
    if (ra == rz) {
        out[0] = (pt_ckpt_box){ ra, ra + 1, b.c0 + ca, b.c0 + cz };
        return 1;
    }
    int n = 0;
    uint64_t full0 = ra, full1 = rz + 1;
    if (ca > 0) {
        out[n++] = (pt_ckpt_box){ ra, ra + 1, b.c0 + ca, b.c1 };
        full0 = ra + 1;
    }
    if (cz < w)
        full1 = rz;
    if (full0 < full1)
        out[n++] = (pt_ckpt_box){ full0, full1, b.c0, b.c1 };
    if (cz < w)
        out[n++] = (pt_ckpt_box){ rz, rz + 1, b.c0, b.c0 + cz };
    return n;
}

int pt_ckpt_entry_rects(const pt_ckpt_entry *e, pt_ckpt_box out[3])
{
    return pt_ckpt_box_rects(e->box, e->elem_lo, e->elem_hi, out);
}

int pt_ckpt_entry_is_box(const pt_ckpt_entry *e)
{
    uint64_t R, K;
    pt_ckpt_view(e->ndim, e->shape, &R, &K);
    return !(e->box.r0 == 0 && e->box.r1 == R && e->box.c0 == 0 && e->box.c1 == K);
}

int pt_ckpt_entry_is_piece(const pt_ckpt_entry *e)
{
    return pt_ckpt_entry_is_box(e) || e->elem_lo != 0 || e->elem_hi != pt_ckpt_entry_numel(e);
}

void pt_ckpt_box_canon(uint64_t rows, uint64_t cols, pt_ckpt_box *b, uint64_t *lo, uint64_t *hi)
{
    uint64_t w = box_w(b);
    if (w == 0 || *lo >= *hi)
        return;
    uint64_t skip = *lo / w; /* whole rows of the box before the first value */
    b->r0 += skip;
    *lo -= skip * w;
    *hi -= skip * w;
    b->r1 = b->r0 + (*hi + w - 1) / w;
    if (w == cols || b->r1 - b->r0 == 1) { /* the values are consecutive in the whole tensor */
        uint64_t first = b->r0 * cols + b->c0 + *lo, n = *hi - *lo;
        *b = (pt_ckpt_box){ 0, rows, 0, cols };
        *lo = first;
        *hi = first + n;
    }
}

void pt_ckpt_part_text(const pt_ckpt_box *b, uint64_t lo, uint64_t hi, uint64_t rows, uint64_t cols, char *buf,
                       size_t cap)
{
    if (b->r0 == 0 && b->r1 == rows && b->c0 == 0 && b->c1 == cols) {
        snprintf(buf, cap, "[%llu, %llu)", (unsigned long long)lo, (unsigned long long)hi);
        return;
    }
    int n = snprintf(buf, cap, "rows [%llu, %llu) x columns [%llu, %llu)", (unsigned long long)b->r0,
                     (unsigned long long)b->r1, (unsigned long long)b->c0, (unsigned long long)b->c1);
    if ((lo != 0 || hi != box_area(b)) && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " values [%llu, %llu)", (unsigned long long)lo, (unsigned long long)hi);
}

void pt_ckpt_entry_where(const pt_ckpt_entry *e, char *buf, size_t cap)
{
    if (!pt_ckpt_entry_is_piece(e)) {
        snprintf(buf, cap, "all");
        return;
    }
    if (!pt_ckpt_entry_is_box(e)) {
        snprintf(buf, cap, "%llu:%llu", (unsigned long long)e->elem_lo, (unsigned long long)e->elem_hi);
        return;
    }
    int n = snprintf(buf, cap, "rows %llu:%llu cols %llu:%llu", (unsigned long long)e->box.r0,
                     (unsigned long long)e->box.r1, (unsigned long long)e->box.c0, (unsigned long long)e->box.c1);
    if ((e->elem_lo != 0 || e->elem_hi != box_area(&e->box)) && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " values %llu:%llu", (unsigned long long)e->elem_lo,
                 (unsigned long long)e->elem_hi);
}

/* ---------------------------------------------------------------- overlaps */

static int rects_meet(const pt_ckpt_box *a, const pt_ckpt_box *b, pt_ckpt_box *x)
{
    x->r0 = max_u(a->r0, b->r0);
    x->r1 = min_u(a->r1, b->r1);
    x->c0 = max_u(a->c0, b->c0);
    x->c1 = min_u(a->c1, b->c1);
    return x->r0 < x->r1 && x->c0 < x->c1;
}

uint64_t pt_ckpt_parts_shared(const pt_ckpt_part *a, const pt_ckpt_part *b)
{
    pt_ckpt_box ra[3], rb[3], x;
    int na = pt_ckpt_box_rects(a->box, a->lo, a->hi, ra), nb = pt_ckpt_box_rects(b->box, b->lo, b->hi, rb);
    uint64_t n = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (rects_meet(&ra[i], &rb[j], &x))
                n += box_area(&x);
    return n;
}

pt_ckpt_part pt_ckpt_entry_part(const pt_ckpt_entry *e)
{
    return (pt_ckpt_part){ e->box, e->elem_lo, e->elem_hi };
}

/* ---------------------------------------------------------------- tensor-parallel slices */

int pt_ckpt_param_whole_shape(const pt_param *p, int64_t shape[PT_CKPT_MAX_DIMS])
{
    memset(shape, 0, PT_CKPT_MAX_DIMS * sizeof *shape);
    for (int d = 0; d < p->ndim && d < PT_CKPT_MAX_DIMS; d++)
        shape[d] = p->tp_dim >= 0 && d < 2 ? p->gshape[d] : p->shape[d];
    return p->ndim;
}

pt_status pt_ckpt_param_check(const pt_param *p)
{
    if (p->ndim < 0 || p->ndim > PT_CKPT_MAX_DIMS)
        return pt_fail(PT_EINVAL, "checkpoint: tensor %s has %d dimensions (at most %d)", p->name, p->ndim,
                       PT_CKPT_MAX_DIMS);
    if (p->rep_n > 1 && !(p->rep_lo <= p->rep_hi && p->rep_hi <= p->numel))
        return pt_fail(PT_EINVAL, "checkpoint: tensor %s: replicated elements [%zu, %zu) are not within its %zu",
                       p->name, p->rep_lo, p->rep_hi, p->numel);
    if (p->tp_dim < 0)
        return PT_OK;
    if (p->tp_dim > 1 || p->ndim < 1 || p->ndim > 2 || (p->tp_dim == 1 && p->ndim != 2))
        return pt_fail(PT_EINVAL, "checkpoint: tensor %s (%d-D) is split along dimension %d; checkpoints take rows "
                                  "of 1-D and 2-D tensors and columns of 2-D ones",
                       p->name, p->ndim, p->tp_dim);
    if (p->tp_nseg < 1 || p->tp_nseg > 3 || (p->tp_dim == 1 && p->tp_nseg != 1))
        return pt_fail(PT_EINVAL, "checkpoint: tensor %s is split into %d %s segment(s); checkpoints take 1 to 3 row "
                                  "segments or 1 column segment",
                       p->name, p->tp_nseg, p->tp_dim ? "column" : "row");
    int len = 0;
    for (int i = 0; i < p->tp_nseg; i++) {
        if (!(p->tp_lo[i] >= 0 && p->tp_lo[i] < p->tp_hi[i] && p->tp_hi[i] <= p->gshape[p->tp_dim]))
            return pt_fail(PT_EINVAL, "checkpoint: tensor %s: segment [%d, %d) is not within its %d %s", p->name,
                           p->tp_lo[i], p->tp_hi[i], p->gshape[p->tp_dim], p->tp_dim ? "columns" : "rows");
        len += p->tp_hi[i] - p->tp_lo[i];
    }
    int other = 1 - p->tp_dim;
    if (len != p->shape[p->tp_dim] || (p->ndim == 2 && p->shape[other] != p->gshape[other]))
        return pt_fail(PT_EINVAL, "checkpoint: tensor %s: its segments (%d %s) do not make its local shape", p->name,
                       len, p->tp_dim ? "columns" : "rows");
    return PT_OK;
}

int pt_ckpt_param_pieces(const pt_param *p, size_t a, size_t b, pt_ckpt_tp_piece out[PT_CKPT_TP_MAX_PIECES])
{
    int64_t shape[PT_CKPT_MAX_DIMS];
    int ndim = pt_ckpt_param_whole_shape(p, shape);
    uint64_t R, K;
    pt_ckpt_view(ndim, shape, &R, &K);
    if (a >= b)
        return 0;
    int n = 0;
    if (p->tp_dim < 0) {
        out[n++] = (pt_ckpt_tp_piece){ { { 0, R, 0, K }, a, b }, a };
    } else if (p->tp_dim == 0) {
        uint64_t cum = 0; /* local rows before segment i */
        for (int i = 0; i < p->tp_nseg; i++) {
            uint64_t h = (uint64_t)(p->tp_hi[i] - p->tp_lo[i]), s_lo = cum * K, s_hi = (cum + h) * K;
            uint64_t x = max_u(a, s_lo), y = min_u(b, s_hi);
            if (x < y)
                out[n++] = (pt_ckpt_tp_piece){
                    { { (uint64_t)p->tp_lo[i], (uint64_t)p->tp_hi[i], 0, K }, x - s_lo, y - s_lo }, x
                };
            cum += h;
        }
    } else { /* one column segment: the local tensor is the box */
        out[n++] = (pt_ckpt_tp_piece){ { { 0, R, (uint64_t)p->tp_lo[0], (uint64_t)p->tp_hi[0] }, a, b }, a };
    }
    for (int i = 0; i < n; i++)
        pt_ckpt_box_canon(R, K, &out[i].part.box, &out[i].part.lo, &out[i].part.hi);
    return n;
}

/* ---------------------------------------------------------------- coverage */

/* "[0, 4096) in shard-0.ptz, rows [0, 8) x columns [4, 8) in shard-1.ptz" (the first few) into buf. */
static void pieces_text(const pt_ckpt_entry *const *v, int n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len + 1 < cap; i++) {
        if (i == 6) {
            snprintf(buf + len, cap - len, ", ... (%d pieces)", n);
            return;
        }
        uint64_t R, K;
        pt_ckpt_view(v[i]->ndim, v[i]->shape, &R, &K);
        char t[160];
        pt_ckpt_part_text(&v[i]->box, v[i]->elem_lo, v[i]->elem_hi, R, K, t, sizeof t);
        int w = snprintf(buf + len, cap - len, "%s%s in shard-%d.ptz", i ? ", " : "", t, v[i]->rank);
        len += w > 0 ? (size_t)w : 0;
    }
    if (n == 0)
        snprintf(buf, cap, "none");
}

static const char *const damaged_fix = "the checkpoint is damaged: use another checkpoint (pipetrain ckpt verify "
                                       "ROOT --all lists the good ones)";

/* Formats 1-3: every entry a flat piece. Overlaps anywhere (check_overlap), then the first element of
 * [lo, hi) that no entry holds. v sorted by elem_lo. */
static pt_status cover_flat(const pt_ckpt_entry *const *v, int n, const char *name, pt_ckpt_kind kind, uint64_t lo,
                            uint64_t hi, int check_overlap, const char *what)
{
    char have[600];
    char of[48] = "";
    if (n)
        snprintf(of, sizeof of, " of its %llu", (unsigned long long)pt_ckpt_entry_numel(v[0]));
    for (int i = 1; check_overlap && i < n; i++)
        if (v[i]->elem_lo < v[i - 1]->elem_hi) {
            uint64_t end = min_u(v[i]->elem_hi, v[i - 1]->elem_hi);
            return pt_fail(PT_EFORMAT,
                           "%s: tensor %s (%s): pieces [%llu, %llu) in shard-%d.ptz and [%llu, %llu) in shard-%d.ptz "
                           "overlap in elements [%llu, %llu); %s",
                           what, name, pt_ckpt_kind_name(kind), (unsigned long long)v[i - 1]->elem_lo,
                           (unsigned long long)v[i - 1]->elem_hi, v[i - 1]->rank, (unsigned long long)v[i]->elem_lo,
                           (unsigned long long)v[i]->elem_hi, v[i]->rank, (unsigned long long)v[i]->elem_lo,
                           (unsigned long long)end, damaged_fix);
        }
    uint64_t at = lo;
    for (int i = 0; i < n && at < hi; i++) {
        if (v[i]->elem_hi <= at)
            continue;
        if (v[i]->elem_lo > at)
            break;
        at = v[i]->elem_hi;
    }
    if (at >= hi)
        return PT_OK;
    uint64_t gap_end = hi;
    for (int i = 0; i < n; i++)
        if (v[i]->elem_lo > at && v[i]->elem_lo < gap_end)
            gap_end = v[i]->elem_lo;
    pieces_text(v, n, have, sizeof have);
    return pt_fail(PT_EFORMAT,
                   "%s: tensor %s (%s): no piece holds elements [%llu, %llu)%s (the checkpoint has %s); "
                   "a replica's optimizer slice is missing (a shard of a rank that did not save, or a checkpoint "
                   "assembled from another run): use another checkpoint (pipetrain ckpt verify ROOT --all lists "
                   "the complete ones)",
                   what, name, pt_ckpt_kind_name(kind), (unsigned long long)at, (unsigned long long)gap_end, of, have);
}

typedef struct owned_rect {
    pt_ckpt_box r;
    int owner; /* index into v */
} owned_rect;

static int rect_cmp(const void *a, const void *b)
{
    const owned_rect *x = a, *y = b;
    if (x->r.r0 != y->r.r0)
        return x->r.r0 < y->r.r0 ? -1 : 1;
    return (x->r.c0 > y->r.c0) - (x->r.c0 < y->r.c0);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int ival_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* "elements [a, b)" when the rectangle is whole rows of the view, else "rows [..) x columns [..)". */
static void rect_text(const pt_ckpt_box *x, uint64_t K, char *buf, size_t cap)
{
    if (x->c0 == 0 && x->c1 == K)
        snprintf(buf, cap, "elements [%llu, %llu)", (unsigned long long)(x->r0 * K), (unsigned long long)(x->r1 * K));
    else
        snprintf(buf, cap, "rows [%llu, %llu) x columns [%llu, %llu)", (unsigned long long)x->r0,
                 (unsigned long long)x->r1, (unsigned long long)x->c0, (unsigned long long)x->c1);
}

/* The first part of need rectangle N that none of rects[0..n) holds (they do not overlap and
 * hold less than all of N): a band of rows between rectangle edges, and the first gap in it. */
static pt_ckpt_box find_gap(const pt_ckpt_box *N, const owned_rect *rects, int n)
{
    uint64_t *ys = malloc(((size_t)n * 2 + 2) * sizeof *ys), *iv = malloc(((size_t)n + 1) * 2 * sizeof *iv);
    pt_ckpt_box gap = *N;
    if (!ys || !iv)
        goto done;
    int ny = 0;
    ys[ny++] = N->r0;
    ys[ny++] = N->r1;
    for (int i = 0; i < n; i++) {
        pt_ckpt_box x;
        if (!rects_meet(N, &rects[i].r, &x))
            continue;
        ys[ny++] = x.r0;
        ys[ny++] = x.r1;
    }
    qsort(ys, (size_t)ny, sizeof *ys, u64_cmp);
    for (int k = 0; k + 1 < ny; k++) {
        if (ys[k] == ys[k + 1])
            continue;
        pt_ckpt_box band = { ys[k], ys[k + 1], N->c0, N->c1 }, x;
        int ni = 0;
        for (int i = 0; i < n; i++)
            if (rects_meet(&band, &rects[i].r, &x)) {
                iv[2 * ni] = x.c0;
                iv[2 * ni + 1] = x.c1;
                ni++;
            }
        qsort(iv, (size_t)ni, 2 * sizeof *iv, ival_cmp);
        uint64_t at = N->c0;
        int i = 0;
        for (; i < ni && iv[2 * i] <= at; i++)
            at = max_u(at, iv[2 * i + 1]);
        if (at < N->c1) {
            gap = (pt_ckpt_box){ band.r0, band.r1, at, i < ni ? iv[2 * i] : N->c1 };
            break;
        }
    }
done:
    free(ys);
    free(iv);
    return gap;
}

/* Any entries: as rectangles of the view. */
static pt_status cover_rects(const pt_ckpt_entry *const *v, int n, const char *name, pt_ckpt_kind kind, uint64_t R,
                             uint64_t K, const pt_ckpt_part *need, int n_need, const char *what)
{
    owned_rect *rects = malloc(((size_t)n * 3 + 1) * sizeof *rects);
    if (!rects)
        return pt_fail(PT_ENOMEM, "checkpoint: out of memory checking tensor %s", name);
    int nr = 0;
    for (int i = 0; i < n; i++) {
        pt_ckpt_box r[3];
        int k = pt_ckpt_entry_rects(v[i], r);
        for (int j = 0; j < k; j++)
            rects[nr++] = (owned_rect){ r[j], i };
    }
    qsort(rects, (size_t)nr, sizeof *rects, rect_cmp);
    pt_status st = PT_OK;
    char ta[160], tb[160], tx[160], have[600];
    for (int i = 0; i < nr && st == PT_OK; i++)
        for (int j = i + 1; j < nr && rects[j].r.r0 < rects[i].r.r1 && st == PT_OK; j++) {
            pt_ckpt_box x;
            if (rects[j].owner == rects[i].owner || !rects_meet(&rects[i].r, &rects[j].r, &x))
                continue;
            const pt_ckpt_entry *a = v[rects[i].owner], *b = v[rects[j].owner];
            pt_ckpt_part_text(&a->box, a->elem_lo, a->elem_hi, R, K, ta, sizeof ta);
            pt_ckpt_part_text(&b->box, b->elem_lo, b->elem_hi, R, K, tb, sizeof tb);
            rect_text(&x, K, tx, sizeof tx);
            st = pt_fail(PT_EFORMAT, "%s: tensor %s (%s): pieces %s in shard-%d.ptz and %s in shard-%d.ptz overlap in %s; %s",
                         what, name, pt_ckpt_kind_name(kind), ta, a->rank, tb, b->rank, tx, damaged_fix);
        }
    for (int q = 0; q < n_need && st == PT_OK; q++) {
        pt_ckpt_box nrect[3];
        int k = pt_ckpt_box_rects(need[q].box, need[q].lo, need[q].hi, nrect);
        for (int j = 0; j < k && st == PT_OK; j++) {
            uint64_t held = 0;
            for (int i = 0; i < nr; i++) {
                pt_ckpt_box x;
                if (rects_meet(&nrect[j], &rects[i].r, &x))
                    held += box_area(&x);
            }
            if (held == box_area(&nrect[j]))
                continue;
            pt_ckpt_box gap = find_gap(&nrect[j], rects, nr);
            rect_text(&gap, K, tx, sizeof tx);
            pieces_text(v, n, have, sizeof have);
            st = pt_fail(PT_EFORMAT,
                         "%s: tensor %s (%s): no piece holds %s of its %llux%llu (the checkpoint has %s); a rank's "
                         "slice is missing (a shard of a tensor-parallel rank or replica that did not save, or a "
                         "checkpoint assembled from another run): use another checkpoint (pipetrain ckpt verify "
                         "ROOT --all lists the complete ones)",
                         what, name, pt_ckpt_kind_name(kind), tx, (unsigned long long)R, (unsigned long long)K, have);
        }
    }
    free(rects);
    return st;
}

pt_status pt_ckpt_cover_check(const pt_ckpt_entry *const *v, int n, const char *name, pt_ckpt_kind kind, uint64_t rows,
                              uint64_t cols, const pt_ckpt_part *need, int n_need, const char *what)
{
    int flat = 1;
    for (int i = 0; i < n && flat; i++)
        flat = !pt_ckpt_entry_is_box(v[i]);
    for (int q = 0; q < n_need && flat; q++)
        flat = need[q].box.r0 == 0 && need[q].box.r1 == rows && need[q].box.c0 == 0 && need[q].box.c1 == cols;
    if (!flat)
        return cover_rects(v, n, name, kind, rows, cols, need, n_need, what);
    if (n_need == 0)
        return cover_flat(v, n, name, kind, 0, 0, 1, what);
    for (int q = 0; q < n_need; q++)
        PT_CHECK(cover_flat(v, n, name, kind, need[q].lo, need[q].hi, q == 0, what));
    return PT_OK;
}

/* ---------------------------------------------------------------- copying */

void pt_ckpt_copy_part(const pt_ckpt_entry *e, const void *src, const pt_ckpt_part *dst_part, void *dst)
{
    size_t es = pt_ckpt_dtype_size(e->dtype);
    pt_ckpt_box re[3], rd[3], x;
    int ne = pt_ckpt_entry_rects(e, re), nd = pt_ckpt_box_rects(dst_part->box, dst_part->lo, dst_part->hi, rd);
    uint64_t we = box_w(&e->box), wd = box_w(&dst_part->box);
    for (int i = 0; i < ne; i++)
        for (int j = 0; j < nd; j++) {
            if (!rects_meet(&re[i], &rd[j], &x))
                continue;
            uint64_t cols = x.c1 - x.c0;
            uint64_t si = (x.r0 - e->box.r0) * we + (x.c0 - e->box.c0) - e->elem_lo;
            uint64_t di = (x.r0 - dst_part->box.r0) * wd + (x.c0 - dst_part->box.c0) - dst_part->lo;
            if (cols == we && cols == wd) { /* whole rows of both: one run */
                memcpy((uint8_t *)dst + di * es, (const uint8_t *)src + si * es, (size_t)(box_area(&x) * es));
                continue;
            }
            for (uint64_t r = x.r0; r < x.r1; r++, si += we, di += wd)
                memcpy((uint8_t *)dst + di * es, (const uint8_t *)src + si * es, (size_t)(cols * es));
        }
}
