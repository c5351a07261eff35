/* Schedule generators.
 *
 * Each generator only decides the order of compute actions (F, B, I, W) on every rank; one
 * lowering pass (pt_sched_lower, lower.c) then inserts the sends and receives that the stage map
 * implies, and AR + STEP at the end of every list. So a generator cannot get communication
 * wrong, and a new generator is a compute order and nothing else.
 *
 *   gpipe        all forwards, then all backwards                       (V = 1)
 *   1f1b         P-1-r warm-up forwards, then one forward / one backward (V = 1)
 *   interleaved  Megatron's interleaved 1F1B over groups of P micro-batches; when the last
 *                group is smaller the same order runs ready-first, so any M >= 1 works
 *                                                                        (V >= 2)
 *   looped-bfs   every chunk's forwards breadth-first, then backwards    (any V)
 *   zb-h1/zb-h2  split backward; list scheduling by the costs: F when ready and within the
 *                memory budget, else I, else a deferred W. Budget: at most P (zb-h1) or
 *                2P-1 (zb-h2) micro-batches held until their W, and at most P-r (zb-h1) or
 *                2(P-r)-1 (zb-h2) forwards ahead of their I on rank r      (V = 1)
 *   zbv          the same on two chunks per rank in a V shape (chunk 0 = stage r,
 *                chunk 1 = stage 2P-1-r), budget 2P half-size chunks      (V = 2)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

static const char *const generator_names[] = { "gpipe", "1f1b", "interleaved", "looped-bfs", "zb-h1", "zb-h2", "zbv",
                                               NULL };

const char *const *pt_sched_generator_names(void)
{
    return generator_names;
}

int pt_sched_is_generator(const char *name)
{
    for (int i = 0; name && generator_names[i]; i++)
        if (strcmp(generator_names[i], name) == 0)
            return 1;
    return 0;
}

int pt_sched_default_chunks(const char *name)
{
    return name && (strcmp(name, "interleaved") == 0 || strcmp(name, "zbv") == 0) ? 2 : 1;
}

int pt_sched_forwards_first(const char *name)
{
    return name && (strcmp(name, "gpipe") == 0 || strcmp(name, "looped-bfs") == 0);
}

pt_status pt_sched_forward_only(const pt_schedule *placement, int M, pt_schedule **out)
{
    *out = NULL;
    int P = placement->n_ranks, V = placement->n_chunks, S = P * V;
    pt_schedule *c = NULL;
    PT_CHECK(pt_sched_create("forward", P, V, M, placement->stage_of, &c));
    pt_status st = PT_OK;
    for (int m = 0; m < M && st == PT_OK; m++)
        for (int v = 0; v < S && st == PT_OK; v++) {
            int r = 0, ch = 0;
            st = pt_sched_owner(c, v, &r, &ch);
            if (st == PT_OK)
                st = pt_sched_append(c, r, (pt_action){ PT_ACT_FORWARD, m, ch, -1 });
        }
    if (st == PT_OK)
        st = pt_sched_lower(c, out);
    pt_sched_destroy(c);
    if (st != PT_OK)
        return st;
    for (int r = 0; r < P; r++) { /* lowering ends every list with AR, STEP: an eval has neither */
        int n = (*out)->n_actions[r];
        if (n < 2 || (*out)->actions[r][n - 2].kind != PT_ACT_REDUCE_GRADS ||
            (*out)->actions[r][n - 1].kind != PT_ACT_OPTIMIZER_STEP) {
            pt_sched_destroy(*out);
            *out = NULL;
            return pt_fail(PT_EINTERNAL, "forward-only schedule: rank %d's lowered list does not end with AR, STEP",
                           r);
        }
        (*out)->n_actions[r] = n - 2;
    }
    return PT_OK;
}

/* ---- fixed-order generators ---- */

static pt_status gen_gpipe(pt_schedule *s)
{
    for (int r = 0; r < s->n_ranks; r++) {
        for (int m = 0; m < s->n_microbatches; m++)
            PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, m, 0));
        for (int m = 0; m < s->n_microbatches; m++)
            PT_CHECK(pt_sched_add(s, r, PT_ACT_BACKWARD, m, 0));
    }
    return PT_OK;
}

static pt_status gen_1f1b(pt_schedule *s)
{
    int P = s->n_ranks, M = s->n_microbatches;
    for (int r = 0; r < P; r++) {
        int warm = P - 1 - r < M ? P - 1 - r : M, f = 0;
        while (f < warm)
            PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, f++, 0));
        for (int b = 0; b < M; b++) {
            if (f < M)
                PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, f++, 0));
            PT_CHECK(pt_sched_add(s, r, PT_ACT_BACKWARD, b, 0));
        }
    }
    return PT_OK;
}

/* Megatron's order of (micro-batch, chunk) units: groups of P micro-batches (the last may be
 * smaller); within a group all of chunk 0, then chunk 1, ... (backward: chunks reversed). */
static void interleaved_order(int P, int V, int M, int backward, int *mb, int *chunk)
{
    int k = 0;
    for (int g = 0; g < M; g += P) {
        int n = M - g < P ? M - g : P;
        for (int cc = 0; cc < V; cc++) {
            int c = backward ? V - 1 - cc : cc;
            for (int j = 0; j < n; j++) {
                mb[k] = g + j;
                chunk[k] = c;
                k++;
            }
        }
    }
}

/* Time at which unit (mb, chunk) may start on rank r under unit costs and instant links:
 * forward (bwd = 0) or fused backward (bwd = 1); INFINITY when its input is not made yet.
 * done_f, done_b: [vstage * M + mb] finish times, -1 = not yet. */
static double unit_ready(const pt_schedule *s, const double *done_f, const double *done_b, int r, int mb, int chunk,
                         int bwd)
{
    int M = s->n_microbatches, S = s->n_ranks * s->n_chunks;
    int v = s->stage_of[r * s->n_chunks + chunk];
    if (!bwd) {
        if (v == 0)
            return 0.0;
        double t = done_f[(size_t)(v - 1) * M + mb];
        return t < 0 ? INFINITY : t;
    }
    double t = done_f[(size_t)v * M + mb];
    if (t < 0)
        return INFINITY;
    if (v + 1 < S) {
        double g = done_b[(size_t)(v + 1) * M + mb];
        if (g < 0)
            return INFINITY;
        t = g > t ? g : t;
    }
    return t;
}

/* Megatron's static interleaved order: warm-up forwards, then one forward / one backward. It is
 * deadlock-free when every group is full (M a multiple of P) or there is one group (M <= P). */
static pt_status gen_interleaved_static(pt_schedule *s, const int *fm, const int *fc, const int *bm, const int *bc,
                                        const int *warm)
{
    int N = s->n_chunks * s->n_microbatches;
    for (int r = 0; r < s->n_ranks; r++) {
        int f = 0;
        while (f < warm[r]) {
            PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, fm[f], fc[f]));
            f++;
        }
        for (int b = 0; b < N; b++) {
            if (f < N) {
                PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, fm[f], fc[f]));
                f++;
            }
            PT_CHECK(pt_sched_add(s, r, PT_ACT_BACKWARD, bm[b], bc[b]));
        }
    }
    return PT_OK;
}

/* Interleaved 1F1B. Every rank takes its forwards and backwards in Megatron's order and does
 * Megatron's warm-up forwards first; after that it runs a backward when one is ready, else a
 * forward, as a run with unit costs (F=1, B=2) would. With full groups of P micro-batches this
 * is exactly Megatron's static schedule; with a smaller last group, where the static order
 * deadlocks, it still makes progress, so any M >= 1 works. */
static pt_status gen_interleaved(pt_schedule *s)
{
    int P = s->n_ranks, V = s->n_chunks, M = s->n_microbatches, N = V * M, S = P * V;
    size_t SM = (size_t)S * M;
    int *fm = malloc((size_t)N * sizeof *fm), *fc = malloc((size_t)N * sizeof *fc);
    int *bm = malloc((size_t)N * sizeof *bm), *bc = malloc((size_t)N * sizeof *bc);
    int *fp = calloc((size_t)P, sizeof *fp), *bp = calloc((size_t)P, sizeof *bp), *warm = malloc((size_t)P * sizeof *warm);
    double *done_f = malloc(SM * sizeof *done_f), *done_b = malloc(SM * sizeof *done_b);
    double *free_at = calloc((size_t)P, sizeof *free_at);
    int *last_b = calloc((size_t)P, sizeof *last_b);
    pt_status st = PT_OK;
    if (!fm || !fc || !bm || !bc || !fp || !bp || !warm || !done_f || !done_b || !free_at || !last_b) {
        st = pt_fail(PT_ENOMEM, "interleaved: out of memory for %d units", N);
        goto done;
    }
    interleaved_order(P, V, M, 0, fm, fc);
    interleaved_order(P, V, M, 1, bm, bc);
    for (size_t k = 0; k < SM; k++)
        done_f[k] = done_b[k] = -1.0;
    int group = M < P ? M : P;
    for (int r = 0; r < P; r++) {
        last_b[r] = 1; /* the steady phase starts with a forward */
        /* Megatron's warm-up: enough forwards that the first backward's gradient can arrive */
        warm[r] = (P - r - 1) * 2 + (V - 1) * group;
        if (warm[r] > N)
            warm[r] = N;
    }
    if (M % P == 0 || M <= P) {
        st = gen_interleaved_static(s, fm, fc, bm, bc, warm);
        goto done;
    }
    /* a smaller last group: keep the order, alternate F and B, but let whichever is ready go */
    for (long long left = 2LL * N * P; left > 0; left--) {
        int br = -1, bwd = 0;
        double best = INFINITY;
        for (int r = 0; r < P; r++) {
            double now = free_at[r];
            double tf = INFINITY, tb = INFINITY;
            if (fp[r] < N)
                tf = fmax(now, unit_ready(s, done_f, done_b, r, fm[fp[r]], fc[fp[r]], 0));
            if (fp[r] >= warm[r] && bp[r] < N)
                tb = fmax(now, unit_ready(s, done_f, done_b, r, bm[bp[r]], bc[bp[r]], 1));
            int prefer_b = last_b[r] == 0;
            int pick_b = prefer_b ? (tb <= now || (tf > now && tb <= tf)) : !(tf <= now || (tb > now && tf <= tb));
            double t = pick_b ? tb : tf;
            if (t < best) {
                best = t;
                br = r;
                bwd = pick_b;
            }
        }
        if (br < 0) {
            st = pt_fail(PT_EINTERNAL, "interleaved: stalled with %lld units left (P=%d V=%d M=%d); please report",
                         left, P, V, M);
            goto done;
        }
        if (fp[br] >= warm[br])
            last_b[br] = bwd;
        int k = bwd ? bp[br]++ : fp[br]++;
        int mb = bwd ? bm[k] : fm[k], c = bwd ? bc[k] : fc[k];
        int v = s->stage_of[br * V + c];
        free_at[br] = best + (bwd ? 2.0 : 1.0);
        (bwd ? done_b : done_f)[(size_t)v * M + mb] = free_at[br];
        PT_TRY(pt_sched_add(s, br, bwd ? PT_ACT_BACKWARD : PT_ACT_FORWARD, mb, c), done);
    }
done:
    free(fm);
    free(fc);
    free(bm);
    free(bc);
    free(fp);
    free(bp);
    free(warm);
    free(done_f);
    free(done_b);
    free(free_at);
    free(last_b);
    return st;
}

static pt_status gen_looped_bfs(pt_schedule *s)
{
    int V = s->n_chunks, M = s->n_microbatches;
    for (int r = 0; r < s->n_ranks; r++) {
        for (int c = 0; c < V; c++)
            for (int m = 0; m < M; m++)
                PT_CHECK(pt_sched_add(s, r, PT_ACT_FORWARD, m, c));
        for (int c = V - 1; c >= 0; c--)
            for (int m = 0; m < M; m++)
                PT_CHECK(pt_sched_add(s, r, PT_ACT_BACKWARD, m, c));
    }
    return PT_OK;
}

/* ---- zero-bubble generators: list scheduling over the costs ----
 *
 * A small discrete-event pass: every rank, when free, starts the best action that is ready
 * (inputs arrived): a forward F if the memory budget allows it (this keeps the pipeline fed,
 * as 1F1B's steady phase does), else a backward-input I (it unblocks the ranks before it),
 * else a deferred backward-weight W (it fills what would be bubbles). The rank that can start
 * earliest goes first, so the result is the order a run with these costs would take. With
 * F = I = W this gives ZB-H1's (P-1)(F+I-W) bubble, a third of 1F1B's. */

typedef struct zb_pick {
    int kind; /* 0 F, 1 I, 2 W, -1 none */
    int chunk, mb;
    double start;
} zb_pick;

typedef struct zb_ctx {
    const pt_schedule *s;
    const pt_sim_costs *c;
    int P, V, M, S;
    int *owner_rank, *owner_chunk;  /* [vstage] */
    double *f_done, *i_done;        /* [vstage * M + mb] finish time, -1 = not yet */
    int *next_f, *next_i;           /* [rank * V + chunk] next micro-batch to run */
    int *wq, *wq_head, *wq_tail;    /* per rank FIFO of (mb * V + chunk) awaiting W; [rank * V*M] */
    int *held;                      /* [rank] activations held (F done, W not yet) */
    int *ahead;                     /* [rank] forwards whose backward-input has not run */
    int *ahead_limit;               /* [rank] most forwards ahead of their I before the next F waits */
    double *free_at;                /* [rank] */
    zb_pick *pick;                  /* [rank] cached next action */
    char *dirty;                    /* [rank] 1: pick must be recomputed */
    int budget;
} zb_ctx;

static double zb_xfer(const zb_ctx *z, int from_stage, int to_stage)
{
    if (z->owner_rank[from_stage] == z->owner_rank[to_stage])
        return 0.0;
    int b = from_stage < to_stage ? from_stage : to_stage;
    double bytes = z->c->boundary_bytes ? z->c->boundary_bytes[b] : 0.0;
    double t = z->c->link_latency_s;
    if (z->c->link_bandwidth_Bps > 0)
        t += bytes / z->c->link_bandwidth_Bps;
    return t;
}

/* Time at which F (kind 0) or I (kind 1) of (mb, chunk) on rank r may start; INFINITY if its
 * input is not produced yet. */
static double zb_ready(const zb_ctx *z, int r, int chunk, int mb, int kind)
{
    int v = z->s->stage_of[r * z->V + chunk];
    if (kind == 0) {
        if (v == 0)
            return 0.0;
        double t = z->f_done[(size_t)(v - 1) * z->M + mb];
        return t < 0 ? INFINITY : t + zb_xfer(z, v - 1, v);
    }
    double t = z->f_done[(size_t)v * z->M + mb];
    if (t < 0)
        return INFINITY;
    if (v == z->S - 1)
        return t;
    double g = z->i_done[(size_t)(v + 1) * z->M + mb];
    return g < 0 ? INFINITY : (g + zb_xfer(z, v + 1, v) > t ? g + zb_xfer(z, v + 1, v) : t);
}


/* The action rank r would start next, and when. */
static zb_pick zb_choose(const zb_ctx *z, int r)
{
    zb_pick best = { -1, 0, 0, INFINITY };
    double now = z->free_at[r];
    int V = z->V;
    /* candidates: the next I and next F of every chunk, and the oldest pending W */
    double t_i = INFINITY, t_f = INFINITY;
    int ci = -1, cf = -1;
    for (int c = 0; c < V; c++) {
        int m = z->next_i[r * V + c];
        if (m < z->M && m < z->next_f[r * V + c]) {
            double t = zb_ready(z, r, c, m, 1);
            t = t > now ? t : now;
            /* ties: the older micro-batch, then the lower stage (nearer the end of backward) */
            if (t < t_i || (t == t_i && ci >= 0 &&
                            (m < z->next_i[r * V + ci] ||
                             (m == z->next_i[r * V + ci] &&
                              z->s->stage_of[r * V + c] < z->s->stage_of[r * V + ci])))) {
                t_i = t;
                ci = c;
            }
        }
        m = z->next_f[r * V + c];
        if (m < z->M) {
            double t = zb_ready(z, r, c, m, 0);
            t = t > now ? t : now;
            /* the budget binds the first chunk only: later chunks finish work already admitted,
             * and refusing them could leave every rank waiting for the others */
            int v = z->s->stage_of[r * V + c];
            int first = 1;
            for (int c2 = 0; c2 < V; c2++)
                if (z->s->stage_of[r * V + c2] < v)
                    first = 0;
            if (first && (z->held[r] >= z->budget || z->ahead[r] >= z->ahead_limit[r]))
                t = INFINITY;
            /* ties: the higher stage (finishes a micro-batch sooner) */
            if (t < t_f || (t == t_f && cf >= 0 && v > z->s->stage_of[r * V + cf])) {
                t_f = t;
                cf = c;
            }
        }
    }
    int have_w = z->wq_head[r] != z->wq_tail[r];
    if (cf >= 0 && t_f <= now) {
        best = (zb_pick){ 0, cf, z->next_f[r * V + cf], now };
    } else if (ci >= 0 && t_i <= now) {
        best = (zb_pick){ 1, ci, z->next_i[r * V + ci], now };
    } else if (have_w) {
        int p = z->wq[(size_t)r * V * z->M + z->wq_head[r]];
        best = (zb_pick){ 2, p % V, p / V, now };
    } else if (ci >= 0 && t_i <= t_f && t_i < INFINITY) {
        best = (zb_pick){ 1, ci, z->next_i[r * V + ci], t_i };
    } else if (cf >= 0 && t_f < INFINITY) {
        best = (zb_pick){ 0, cf, z->next_f[r * V + cf], t_f };
    }
    return best;
}

static double zb_cost(const zb_ctx *z, int kind, int v)
{
    return kind == 0 ? z->c->f[v] : kind == 1 ? z->c->i[v] : z->c->w[v];
}

static pt_status gen_zero_bubble(pt_schedule *s, const pt_sim_costs *costs, int budget, int h2)
{
    int P = s->n_ranks, V = s->n_chunks, M = s->n_microbatches, S = P * V;
    zb_ctx z = { .s = s, .c = costs, .P = P, .V = V, .M = M, .S = S, .budget = budget };
    pt_status st = PT_OK;
    size_t SM = (size_t)S * M;
    z.owner_rank = malloc((size_t)S * sizeof(int));
    z.owner_chunk = malloc((size_t)S * sizeof(int));
    z.f_done = malloc(SM * sizeof(double));
    z.i_done = malloc(SM * sizeof(double));
    z.next_f = calloc((size_t)S, sizeof(int));
    z.next_i = calloc((size_t)S, sizeof(int));
    z.wq = malloc(SM * sizeof(int));
    z.wq_head = calloc((size_t)P, sizeof(int));
    z.wq_tail = calloc((size_t)P, sizeof(int));
    z.held = calloc((size_t)P, sizeof(int));
    z.ahead = calloc((size_t)P, sizeof(int));
    z.ahead_limit = malloc((size_t)P * sizeof(int));
    z.free_at = calloc((size_t)P, sizeof(double));
    z.pick = malloc((size_t)P * sizeof *z.pick);
    z.dirty = malloc((size_t)P);
    if (!z.owner_rank || !z.owner_chunk || !z.f_done || !z.i_done || !z.next_f || !z.next_i || !z.wq || !z.wq_head ||
        !z.wq_tail || !z.held || !z.ahead || !z.ahead_limit || !z.free_at ||
        !z.pick || !z.dirty) {
        st = pt_fail(PT_ENOMEM, "%s: out of memory for %d stages x %d micro-batches", s->name, S, M);
        goto done;
    }
    for (int k = 0; k < S; k++) {
        z.owner_rank[s->stage_of[k]] = k / V;
        z.owner_chunk[s->stage_of[k]] = k % V;
    }
    for (size_t k = 0; k < SM; k++)
        z.f_done[k] = z.i_done[k] = -1.0;
    for (int r = 0; r < P; r++)
        z.ahead_limit[r] = V > 1 ? budget : h2 ? 2 * (P - r) - 1 : P - r;
    /* Each rank's next pick is cached; an action changes only its own rank's pick and those of
     * the ranks holding the neighbour stages (their inputs became ready). */
    for (int r = 0; r < P; r++) {
        z.pick[r] = zb_choose(&z, r);
        z.dirty[r] = 0;
    }
    long long left = 3LL * S * M;
    while (left > 0) {
        int br = -1;
        zb_pick bp = { -1, 0, 0, INFINITY };
        for (int r = 0; r < P; r++) {
            if (z.dirty[r]) {
                z.pick[r] = zb_choose(&z, r);
                z.dirty[r] = 0;
            }
            if (z.pick[r].kind >= 0 && z.pick[r].start < bp.start) {
                bp = z.pick[r];
                br = r;
            }
        }
        if (br < 0) {
            st = pt_fail(PT_EINTERNAL, "%s: list scheduling stalled with %lld actions left (P=%d V=%d M=%d); please "
                                       "report this",
                         s->name, left, P, V, M);
            goto done;
        }
        int v = s->stage_of[br * V + bp.chunk];
        double end = bp.start + zb_cost(&z, bp.kind, v);
        z.free_at[br] = end;
        z.dirty[br] = 1;
        if (v > 0)
            z.dirty[z.owner_rank[v - 1]] = 1;
        if (v + 1 < S)
            z.dirty[z.owner_rank[v + 1]] = 1;
        size_t key = (size_t)v * M + bp.mb;
        if (bp.kind == 0) {
            z.f_done[key] = end;
            z.next_f[br * V + bp.chunk]++;
            z.held[br]++;
            z.ahead[br]++;
            PT_TRY(pt_sched_add(s, br, PT_ACT_FORWARD, bp.mb, bp.chunk), done);
        } else if (bp.kind == 1) {
            z.i_done[key] = end;
            z.next_i[br * V + bp.chunk]++;
            z.wq[(size_t)br * V * M + z.wq_tail[br]++] = bp.mb * V + bp.chunk;
            z.ahead[br]--;
            PT_TRY(pt_sched_add(s, br, PT_ACT_BACKWARD_INPUT, bp.mb, bp.chunk), done);
        } else {
            z.wq_head[br]++;
            z.held[br]--;
            PT_TRY(pt_sched_add(s, br, PT_ACT_BACKWARD_WEIGHT, bp.mb, bp.chunk), done);
        }
        left--;
    }
done:
    free(z.owner_rank);
    free(z.owner_chunk);
    free(z.f_done);
    free(z.i_done);
    free(z.next_f);
    free(z.next_i);
    free(z.wq);
    free(z.wq_head);
    free(z.wq_tail);
    free(z.held);
    free(z.ahead);
    free(z.ahead_limit);
    free(z.free_at);
    free(z.pick);
    free(z.dirty);
    return st;
}

/* ---- entry point ---- */

pt_status pt_sched_generate(const char *name, int P, int V, int M, const pt_sim_costs *costs, pt_schedule **out)
{
    *out = NULL;
    if (!name)
        return pt_fail(PT_EINVAL, "schedule: no generator name; use one of gpipe, 1f1b, interleaved, looped-bfs, "
                                  "zb-h1, zb-h2, zbv");
    int which = -1;
    for (int k = 0; generator_names[k]; k++)
        if (strcmp(name, generator_names[k]) == 0)
            which = k;
    if (which < 0)
        return pt_fail(PT_EINVAL, "schedule: unknown generator \"%s\"; use one of gpipe, 1f1b, interleaved, "
                                  "looped-bfs, zb-h1, zb-h2, zbv (or a schedule file)",
                       name);
    int want_v = (which <= 1 || which == 4 || which == 5) ? 1 : which == 6 ? 2 : 0;
    if (want_v && V != want_v)
        return pt_fail(PT_EINVAL, "%s: takes %d chunk%s per rank, not %d; use --chunks %d", name, want_v,
                       want_v > 1 ? "s" : "", V, want_v);
    if (which == 2 && V < 2)
        return pt_fail(PT_EINVAL, "interleaved: needs 2 or more chunks per rank, not %d; use --chunks 2 (or 1f1b)", V);
    if (V < 1 || P < 1 || M < 1)
        return pt_fail(PT_EINVAL, "%s: ranks (%d), chunks (%d) and micro-batches (%d) must all be >= 1", name, P, V, M);
    if ((long long)P * V * M > PT_SCHED_MAX_WORK)
        return pt_fail(PT_EINVAL, "%s: %d ranks x %d chunks x %d micro-batches is too large (at most %d)", name, P, V,
                       M, PT_SCHED_MAX_WORK);
    int *stage_of = NULL;
    if (which == 6) {
        stage_of = malloc((size_t)P * 2 * sizeof *stage_of);
        if (!stage_of)
            return pt_fail(PT_ENOMEM, "zbv: out of memory");
        for (int r = 0; r < P; r++) {
            stage_of[r * 2] = r;
            stage_of[r * 2 + 1] = 2 * P - 1 - r;
        }
    }
    pt_schedule *compute = NULL;
    pt_sim_costs *unit = NULL;
    pt_status st = pt_sched_create(name, P, V, M, stage_of, &compute);
    free(stage_of);
    if (st != PT_OK)
        return st;
    if (which >= 4) {
        if (!costs) {
            PT_TRY(pt_sim_costs_uniform(P * V, &unit), done);
            costs = unit;
        }
        if (costs->n_vstages != P * V) {
            st = pt_fail(PT_EINVAL, "%s: the costs cover %d stages but the schedule has %d (P=%d x V=%d)", name,
                         costs->n_vstages, P * V, P, V);
            goto done;
        }
    }
    switch (which) {
    case 0: PT_TRY(gen_gpipe(compute), done); break;
    case 1: PT_TRY(gen_1f1b(compute), done); break;
    case 2: PT_TRY(gen_interleaved(compute), done); break;
    case 3: PT_TRY(gen_looped_bfs(compute), done); break;
    case 4: PT_TRY(gen_zero_bubble(compute, costs, P, 0), done); break;
    case 5: PT_TRY(gen_zero_bubble(compute, costs, 2 * P - 1, 1), done); break;
    default: PT_TRY(gen_zero_bubble(compute, costs, 2 * P, 0), done); break;
    }
    st = pt_sched_lower(compute, out);
done:
    pt_sim_costs_destroy(unit);
    pt_sched_destroy(compute);
    return st;
}
